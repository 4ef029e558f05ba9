/**
 * Sequences and items whose declared length runs past the end of the file.
 *
 * DCMTK reads a file that ends on an element boundary inside a defined-length sequence item as if the item (and
 * every sequence around it) ended there: dcmdump prints what was read and exits 0. A DICOMDIR whose last
 * directory record is a few bytes short is the usual case. dicom-parser instead refuses the whole sequence
 * (its maxPosition check), so such a file would not parse at all. This walker finds those lengths and returns a
 * copy of the bytes with each one cut to the end of its container; dicom-parser then reads the same elements
 * DCMTK does. A value cut mid-way is left alone: that file is truncated inside an element, which DCMTK rejects.
 */
import { LONG_LENGTH_VRS } from './vr.js';

const UNDEFINED = 0xffffffff;
const ITEM = 0xfffee000;
const ITEM_DELIMITER = 0xfffee00d;
const SEQUENCE_DELIMITER = 0xfffee0dd;
/** Deeper nesting than this is hostile; the walk stops and the caller keeps its original error. */
const MAX_DEPTH = 64;

interface Walk {
  readonly bytes: Uint8Array;
  readonly view: DataView;
  readonly littleEndian: boolean;
  readonly explicitVr: boolean;
  /** Offsets of 32-bit length fields and the values to write there. */
  readonly patches: Array<{ at: number; length: number }>;
  /** Set when an element's value runs past its container: the file is cut inside an element. */
  cutInsideElement: boolean;
}

function tagAt(w: Walk, at: number): number {
  return ((w.view.getUint16(at, w.littleEndian) << 16) | w.view.getUint16(at + 2, w.littleEndian)) >>> 0;
}

/**
 * Returns a copy of `bytes` in which every defined sequence or item length that overruns its container, in the
 * elements from `start` to the end, is cut to end with the container (the end of the data at the top); undefined
 * if there is no such length, or if the data is cut inside an element (which no length can mend).
 */
export function clampOverrunningLengths(
  bytes: Uint8Array,
  start: number,
  encoding: { explicitVr: boolean; littleEndian: boolean },
): Uint8Array | undefined {
  const w: Walk = {
    bytes,
    view: new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength),
    littleEndian: encoding.littleEndian,
    explicitVr: encoding.explicitVr,
    patches: [],
    cutInsideElement: false,
  };
  try {
    let at = start;
    while (at + 8 <= bytes.length) at = walkElement(w, at, bytes.length, 0);
  } catch (err) {
    if (!(err instanceof RangeError)) throw err;
    w.cutInsideElement = true; // a header cut short
  }
  if (w.patches.length === 0 || w.cutInsideElement) return undefined;
  const copy = new Uint8Array(bytes);
  const view = new DataView(copy.buffer);
  for (const p of w.patches) view.setUint32(p.at, p.length, w.littleEndian);
  return copy;
}

/** Walks one element at `at` inside a container ending at `end`; returns where the next element starts. */
function walkElement(w: Walk, at: number, end: number, depth: number): number {
  let lengthAt: number;
  let valueAt: number;
  let sequence: boolean;
  if (w.explicitVr) {
    const vr = String.fromCharCode(w.bytes[at + 4]!, w.bytes[at + 5]!);
    if (!LONG_LENGTH_VRS.has(vr)) return at + 8 + w.view.getUint16(at + 6, w.littleEndian);
    lengthAt = at + 8;
    valueAt = at + 12;
    // An undefined-length UN holds a sequence (CP-246).
    sequence = vr === 'SQ' || (vr === 'UN' && w.view.getUint32(lengthAt, w.littleEndian) === UNDEFINED);
  } else {
    lengthAt = at + 4;
    valueAt = at + 8;
    const length = w.view.getUint32(lengthAt, w.littleEndian);
    // Without a VR, a sequence shows itself by an undefined length or a first item tag (as dicom-parser guesses).
    sequence = length === UNDEFINED || (valueAt + 4 <= end && tagAt(w, valueAt) === ITEM);
  }
  const length = w.view.getUint32(lengthAt, w.littleEndian);
  if (!sequence || depth >= MAX_DEPTH) return length === UNDEFINED ? end : valueAt + length;
  return walkSequence(w, lengthAt, valueAt, end, depth + 1);
}

/**
 * Where a sequence or item whose length field is at `lengthAt` ends inside a container ending at `end`: its
 * declared end, cut to `end` (and the cut noted) when it runs past, or `end` for an undefined length.
 */
function boundedEnd(w: Walk, lengthAt: number, valueAt: number, end: number): number {
  const declared = w.view.getUint32(lengthAt, w.littleEndian);
  if (declared === UNDEFINED) return end;
  if (valueAt + declared <= end) return valueAt + declared;
  w.patches.push({ at: lengthAt, length: end - valueAt });
  return end;
}

/** Walks the items of a sequence or the elements of an item from `valueAt` to `containerEnd`; `step` reads one
 * at `at` and returns where the next starts, or undefined at a delimiter (the returned end is then after it). */
function walkContents(
  w: Walk,
  valueAt: number,
  containerEnd: number,
  step: (at: number) => number | { delimiterEnd: number },
): number {
  let at = valueAt;
  while (at < containerEnd) {
    if (at + 8 > containerEnd) {
      w.cutInsideElement = true;
      break;
    }
    const next = step(at);
    if (typeof next !== 'number') return next.delimiterEnd;
    if (next > containerEnd) w.cutInsideElement = true;
    at = next;
  }
  return containerEnd;
}

function walkSequence(w: Walk, lengthAt: number, valueAt: number, end: number, depth: number): number {
  const sequenceEnd = boundedEnd(w, lengthAt, valueAt, end);
  return walkContents(w, valueAt, sequenceEnd, (at) => {
    const tag = tagAt(w, at);
    if (tag === SEQUENCE_DELIMITER) return { delimiterEnd: at + 8 };
    if (tag !== ITEM) return { delimiterEnd: sequenceEnd }; // not an item: left to the parser's own error
    return walkItem(w, at + 4, at + 8, sequenceEnd, depth);
  });
}

function walkItem(w: Walk, lengthAt: number, valueAt: number, end: number, depth: number): number {
  const undefinedLength = w.view.getUint32(lengthAt, w.littleEndian) === UNDEFINED;
  const itemEnd = boundedEnd(w, lengthAt, valueAt, end);
  return walkContents(w, valueAt, itemEnd, (at) =>
    undefinedLength && tagAt(w, at) === ITEM_DELIMITER
      ? { delimiterEnd: at + 8 }
      : walkElement(w, at, itemEnd, depth),
  );
}
