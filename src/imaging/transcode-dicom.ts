/**
 * An instance as Explicit VR Little Endian, streamed: the header and native pixel data from
 * formats/dicom/transcode.ts, with encapsulated frames decoded one at a time by the same decoders that render
 * them (so a 1,000-frame JPEG cine is never held decoded whole). The first frame is decoded before anything is
 * returned: what it decodes to (RGB for a YBR JPEG, 8 or 16 bits) goes into the header, and a file whose frames
 * cannot be decoded fails before a byte is sent.
 */
import { AppError } from '../errors.js';
import { parseDicom } from '../formats/dicom/parse-dicom.js';
import { describePixels, type Frame } from '../formats/dicom/pixel-data.js';
import {
  isPart10ExplicitLittleEndian,
  needsDecoding,
  toExplicitLittleEndian,
} from '../formats/dicom/transcode.js';
import { EXPLICIT_VR_LITTLE_ENDIAN } from '../formats/dicom/transfer-syntax.js';
import { canDecodeTransferSyntax, decodeDicomFrame } from './render-dicom.js';

export interface TranscodedInstance {
  length: number;
  chunks: AsyncIterable<Uint8Array>;
}

/** A decoded frame's samples as little-endian bytes of its element size: the typed array's own bytes, since the
 * pixel readers view little-endian file bytes as typed arrays too (pixel-data.ts), which holds on every host
 * Node runs on here. */
export function frameBytes(frame: Frame): Uint8Array {
  const p = frame.pixels;
  return new Uint8Array(p.buffer, p.byteOffset, p.byteLength);
}

/** Packs samples of 0 and 1 into bits, carrying a part byte from one frame to the next. */
class BitPacker {
  private carry = 0;
  private used = 0;

  push(samples: ArrayLike<number>): Uint8Array {
    const out = new Uint8Array(Math.floor((this.used + samples.length) / 8));
    let at = 0;
    for (let i = 0; i < samples.length; i++) {
      if (samples[i]! & 1) this.carry |= 1 << this.used;
      if (++this.used === 8) {
        out[at++] = this.carry;
        this.carry = 0;
        this.used = 0;
      }
    }
    return out;
  }

  flush(): Uint8Array {
    return this.used > 0 ? Uint8Array.of(this.carry) : new Uint8Array(0);
  }
}

/** One frame's samples of 0 and 1 packed from a byte boundary (WADO-RS frames). */
export function packBits(samples: ArrayLike<number>): Uint8Array {
  const bits = new BitPacker();
  const whole = bits.push(samples);
  const rest = bits.flush();
  if (rest.length === 0) return whole;
  const out = new Uint8Array(whole.length + rest.length);
  out.set(whole);
  out.set(rest, whole.length);
  return out;
}

function sameShape(a: Frame, b: Frame): boolean {
  return (
    a.rows === b.rows &&
    a.columns === b.columns &&
    a.samplesPerPixel === b.samplesPerPixel &&
    a.bitsAllocated === b.bitsAllocated &&
    a.photometricInterpretation === b.photometricInterpretation &&
    a.pixels.byteLength === b.pixels.byteLength
  );
}

/** Whether an instance in this transfer syntax can be sent as Explicit VR Little Endian (video cannot). */
export function canTranscodeToExplicitLittleEndian(transferSyntaxUid: string): boolean {
  return !needsDecoding(transferSyntaxUid) || canDecodeTransferSyntax(transferSyntaxUid);
}

/**
 * `bytes` (a Part 10 file or bare data set) as Explicit VR Little Endian. An input already in it is returned as it
 * is. Throws CORRUPT_FILE or UNSUPPORTED_FORMAT (a frame that does not decode, video).
 */
export async function transcodeToExplicitLittleEndian(
  bytes: Uint8Array,
  transferSyntaxUid: string,
): Promise<TranscodedInstance> {
  if (transferSyntaxUid === EXPLICIT_VR_LITTLE_ENDIAN && isPart10ExplicitLittleEndian(bytes)) {
    return {
      length: bytes.length,
      chunks: (async function* () {
        yield bytes;
      })(),
    };
  }
  if (!needsDecoding(transferSyntaxUid)) {
    const copy = toExplicitLittleEndian(bytes);
    const parts = [...copy.head, ...(copy.pixels ?? []), ...copy.tail];
    return {
      length: copy.length,
      chunks: (async function* () {
        yield* parts;
      })(),
    };
  }
  const instance = parseDicom(bytes);
  const description = describePixels(instance);
  const first = await decodeDicomFrame(instance, 0);
  const frames = description.numberOfFrames;
  // 1-bit frames (segmentations) come back one byte per sample, and go back packed: eight samples a byte, the
  // first in the lowest bit, running on across frame boundaries (PS3.5 8.1.1).
  const packed = description.bitsAllocated === 1;
  const byteLength = packed
    ? Math.ceil((first.pixels.length * frames) / 8)
    : first.pixels.byteLength * frames;
  const copy = toExplicitLittleEndian(bytes, {
    photometricInterpretation: first.photometricInterpretation,
    bitsAllocated: packed ? 1 : first.bitsAllocated,
    pixelRepresentation: first.pixelRepresentation,
    byteLength,
  });
  const bits = new BitPacker();
  const encode = (frame: Frame) => (packed ? bits.push(frame.pixels) : frameBytes(frame));
  async function* chunks(): AsyncGenerator<Uint8Array> {
    yield* copy.head;
    yield encode(first);
    for (let i = 1; i < frames; i++) {
      const frame = await decodeDicomFrame(instance, i);
      if (!sameShape(first, frame)) {
        throw new AppError(
          'CORRUPT_FILE',
          `frame ${i + 1} of ${frames} decodes to ${frame.columns}×${frame.rows}×${frame.samplesPerPixel} ${frame.photometricInterpretation} at ${frame.bitsAllocated} bits, unlike frame 1`,
          { retryable: false, details: { frameIndex: i } },
        );
      }
      yield encode(frame);
    }
    if (packed) yield bits.flush();
    if (byteLength % 2 === 1) yield new Uint8Array(1); // to even length
    yield* copy.tail;
  }
  return { length: copy.length, chunks: chunks() };
}
