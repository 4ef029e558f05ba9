/**
 * WFDB annotation files in MIT format (.atr, .qrs, .gqrsh …; annotation(5) of the WFDB Applications Guide).
 * Pure. Used for reference beat labels (MIT-BIH .atr) and to compare detectors.
 *
 * A stream of 16-bit little-endian words: the top 6 bits are the annotation code, the low 10 bits the time
 * increment in samples. Pseudo-codes: 59 SKIP (a 32-bit interval follows, high word first), 60 NUM, 61 SUB,
 * 62 CHN and 63 AUX (a byte string of the given length follows, padded to an even length) modify the annotation
 * just before them, as WFDB's putann writes them; NUM and CHN carry over to later annotations. A zero word ends
 * the file.
 */
import { corrupt } from './ecg-input.js';

export interface WfdbAnnotation {
  /** Sample number (at the record's frame rate). */
  sample: number;
  /** Annotation code (1 NORMAL, 5 PVC, 28 RHYTHM …). */
  code: number;
  subtype: number;
  channel: number;
  num: number;
  aux?: string;
}

const SKIP = 59;
const NUM = 60;
const SUB = 61;
const CHN = 62;
const AUX = 63;

/** Annotation codes that mark a beat (WFDB's isqrs): N L R a V F J A S E j / Q B e n f r. */
export const BEAT_CODES: ReadonlySet<number> = new Set([
  1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 25, 34, 35, 38, 41,
]);
/** Ventricular flutter/fibrillation episode start and end ('[' and ']'): EC57 leaves these spans out. */
export const VF_ON = 32;
export const VF_OFF = 33;

/** Decodes an MIT-format annotation file. Bounded by the input: every word read advances the offset. */
export function parseWfdbAnnotations(bytes: Uint8Array): WfdbAnnotation[] {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const out: WfdbAnnotation[] = [];
  let offset = 0;
  let time = 0;
  let channel = 0;
  let num = 0;
  while (offset + 2 <= bytes.length) {
    const word = view.getUint16(offset, true);
    offset += 2;
    const code = word >>> 10;
    const value = word & 0x3ff;
    if (word === 0) break;
    switch (code) {
      case SKIP: {
        if (offset + 4 > bytes.length)
          throw corrupt(`WFDB annotations: SKIP at byte ${offset - 2} is cut short`);
        // PDP-11 long: high 16-bit word first, each word little-endian.
        const interval = (view.getInt16(offset, true) * 65536 + view.getUint16(offset + 2, true)) | 0;
        offset += 4;
        time += interval;
        break;
      }
      case NUM:
        num = value;
        if (out.length > 0) out[out.length - 1]!.num = value;
        break;
      case SUB:
        if (out.length > 0) out[out.length - 1]!.subtype = value;
        break;
      case CHN:
        channel = value;
        if (out.length > 0) out[out.length - 1]!.channel = value;
        break;
      case AUX: {
        if (offset + value > bytes.length)
          throw corrupt(`WFDB annotations: AUX at byte ${offset - 2} runs past the end`);
        const text = new TextDecoder('latin1')
          .decode(bytes.subarray(offset, offset + value))
          .replace(/\0+$/, '');
        offset += value + (value & 1);
        const last = out[out.length - 1];
        if (last) last.aux = text;
        break;
      }
      default: {
        time += value;
        out.push({ sample: time, code, subtype: 0, channel, num });
      }
    }
  }
  return out;
}
