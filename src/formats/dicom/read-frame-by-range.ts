/**
 * One frame of a large DICOM instance, read by byte range: a 1,200-frame cine loop or a tomosynthesis volume of
 * gigabytes is shown one frame at a time, and reading all of it (then holding it twice while parsing) for each
 * frame a reader scrolls to would cost the file's size in memory and time on every request.
 *
 * The instance is parsed from a buffer the size of the file in which only what is needed has been read in: the
 * header up to Pixel Data, the item headers of encapsulated pixel data (so the fragment list is the file's own),
 * the Basic Offset Table, whatever follows Pixel Data, and the bytes of the one frame. The rest stays zero and is
 * never touched: a zero-filled ArrayBuffer of that size is only address space until written (the kernel maps
 * pages on first write), so memory is the header plus the frame. Everything downstream (parseDicom, frame
 * extraction, decoders, overlays) then works unchanged and reads only the frame's bytes.
 *
 * Files small enough to read whole are read whole, and so is any file this reader cannot vouch for (a header
 * longer than 64 MiB, a deflated data set, item headers that do not add up, frames that only JPEG markers
 * inside the fragments can tell apart): the ordinary path then gives its usual errors.
 */
import { AppError, isAppError } from '../../errors.js';
import type { ByteSource } from '../types.js';
import { type DicomInstance, parseDicom } from './parse-dicom.js';
import { describePixels, fragmentsOfFrameFromTables, nativeFrameByteRange } from './pixel-data.js';
import { describeTransferSyntax } from './transfer-syntax.js';

/** At or below this size a file is read whole: one read, and nothing to gain. */
export const WHOLE_READ_BYTES = 64 * 1024 * 1024;
/** The first read: the header before Pixel Data almost always fits. */
const HEAD_BYTES = 1024 * 1024;
/** Elements after Pixel Data (padding, digital signatures) are small; more than this is not a usual file. */
const MAX_TRAILER_BYTES = 16 * 1024 * 1024;
/** Typed arrays in Node 20 hold at most 4 GiB, as DICOM's 32-bit lengths do for native pixel data. */
const MAX_SPARSE_BYTES = 2 ** 32;
/** A file that must be read whole (see above) and is larger than this is refused rather than held in memory. */
export const MAX_WHOLE_READ_BYTES = 1024 * 1024 * 1024;

const ITEM = 0xfffee000;
const SEQUENCE_DELIMITER = 0xfffee0dd;
const UNDEFINED_LENGTH = 0xffffffff;
/** VRs whose explicit header is 12 bytes (tag, VR, two reserved bytes, 32-bit length) and that Pixel Data takes. */
const LONG_PIXEL_VRS = new Set(['OB', 'OW', 'UN', 'OF', 'OD', 'OL', 'OV']);

export interface RangeReadLimits {
  /** Files up to this size are read whole. */
  wholeReadBytes?: number;
  /** The first read, which must hold the header before Pixel Data. */
  headBytes?: number;
}

export interface InstanceWithFrame {
  instance: DicomInstance;
  /** The frame whose bytes were read: the one asked for, else the middle one (what thumbnails show). */
  frame: number;
  /** The file's bytes as read: all of them when `whole`, else a buffer of the file's size holding what was read
   * (the instance's data set reads from it). */
  bytes: Uint8Array;
  /** Whether the file was read whole. */
  whole: boolean;
  /** When it was not: the span of Pixel Data's value, [start, end) in the file, of which only the item
   * headers, the offset table and the frame were read; the buffer holds zeros for the rest. */
  pixelValue?: { start: number; end: number };
}

/**
 * Reads what it takes to parse the instance and decode frame `frame` (0-based; the middle frame when undefined).
 * A frame outside the instance (past the last, or -1) is left unread: the caller's check against numberOfFrames
 * reports it.
 */
export async function readInstanceForFrame(
  source: ByteSource,
  frame?: number,
  /** Tests lower these to take the ranged path on small files. */
  { wholeReadBytes = WHOLE_READ_BYTES, headBytes = HEAD_BYTES }: RangeReadLimits = {},
): Promise<InstanceWithFrame> {
  const whole = async (): Promise<InstanceWithFrame> => {
    if (source.size > MAX_WHOLE_READ_BYTES) {
      throw new AppError(
        'PAYLOAD_TOO_LARGE',
        `the instance (${source.size} bytes) cannot be read by range (a deflated data set, a header over 64 MiB, or pixel data whose frames cannot be told apart) and is over the ${MAX_WHOLE_READ_BYTES} bytes read whole`,
        { retryable: false },
      );
    }
    const bytes = await readRange(source, 0, source.size);
    const instance = parseDicom(bytes);
    return { instance, frame: frame ?? middleFrame(instance), bytes, whole: true };
  };
  if (source.size <= wholeReadBytes || source.size > MAX_SPARSE_BYTES) return whole();
  const found = await readHeader(source, headBytes);
  if (!found) return whole();
  const { head, header } = found;
  const at = header.truncatedPixelDataOffset;
  const syntax = describeTransferSyntax(header.transferSyntaxUid);
  if (at === undefined || syntax.deflated) return whole();

  const sparse = new Uint8Array(source.size);
  sparse.set(head, 0);
  const { littleEndian } = syntax;
  const element = await readPixelDataHeader(source, at, littleEndian);
  sparse.set(element.bytes, at);
  const layout = element.encapsulated
    ? await readItemHeaders(source, sparse, element.valueStart, littleEndian)
    : nativeLayout(element.valueStart, element.length, source.size);
  if (!layout || source.size - layout.end > MAX_TRAILER_BYTES) return whole();
  sparse.set(await readRange(source, layout.end, source.size - layout.end), layout.end);

  const instance = parseDicom(sparse);
  const chosen = frame ?? middleFrame(instance);
  const pixelValue = { start: element.valueStart, end: layout.end };
  const read: InstanceWithFrame = { instance, frame: chosen, bytes: sparse, whole: false, pixelValue };
  if (chosen < 0 || chosen >= instance.numberOfFrames) return read;
  if (element.encapsulated) {
    const range = fragmentsOfFrameFromTables(instance, chosen);
    if (!range) return whole();
    const fragments = instance.dataSet.elements.x7fe00010!.fragments!;
    for (let k = range[0]; k < range[0] + range[1]; k++) {
      const f = fragments[k]!;
      await fill(source, sparse, f.position, f.length);
    }
  } else {
    const [start, end] = nativeFrameByteRange(describePixels(instance), chosen);
    const from = element.valueStart + start;
    await fill(
      source,
      sparse,
      from,
      Math.min(element.valueStart + element.length, element.valueStart + end) - from,
    );
  }
  return read;
}

/** The parsed instance without any frame's bytes (its attributes, for `inspect`). */
export async function readInstanceByRange(source: ByteSource): Promise<DicomInstance> {
  return (await readInstanceForFrame(source, -1)).instance;
}

function middleFrame(instance: DicomInstance): number {
  return Math.floor(instance.numberOfFrames / 2);
}

/**
 * The file's start, read until it holds the whole header before Pixel Data: `headBytes` first, then 8 and 64
 * times as much (private headers of a few megabytes exist). Undefined when none parses as a header cut inside
 * Pixel Data.
 */
async function readHeader(
  source: ByteSource,
  headBytes: number,
): Promise<{ head: Uint8Array; header: DicomInstance } | undefined> {
  for (const size of [headBytes, headBytes * 8, headBytes * 64]) {
    if (size >= source.size) return undefined;
    const head = await readRange(source, 0, size);
    try {
      const header = parseDicom(head);
      return header.truncatedPixelDataOffset === undefined ? undefined : { head, header };
    } catch (err) {
      // Not DICOM at all: no longer read will make it so.
      if (isAppError(err) && err.code === 'UNSUPPORTED_FORMAT') throw err;
      // Cut inside an element before Pixel Data: read further.
    }
  }
  return undefined;
}

/** Up to `length` bytes from `offset`, never past the end. */
function readRange(source: ByteSource, offset: number, length: number): Promise<Uint8Array> {
  return source.read(offset, Math.max(0, Math.min(length, source.size - offset)));
}

async function fill(source: ByteSource, sparse: Uint8Array, offset: number, length: number): Promise<void> {
  if (length <= 0) return;
  sparse.set(await readRange(source, offset, length), offset);
}

interface PixelDataHeader {
  bytes: Uint8Array;
  valueStart: number;
  length: number;
  encapsulated: boolean;
}

/** The Pixel Data element's header at `at`: explicit VR when a VR stands after the tag, as DCMTK decides. */
async function readPixelDataHeader(
  source: ByteSource,
  at: number,
  littleEndian: boolean,
): Promise<PixelDataHeader> {
  const bytes = await readRange(source, at, 12);
  if (bytes.length < 8)
    throw new AppError('CORRUPT_FILE', `pixel data (7FE0,0010) at offset ${at} is cut short`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.length);
  const vr = String.fromCharCode(bytes[4]!, bytes[5]!);
  const explicit = LONG_PIXEL_VRS.has(vr) && bytes.length === 12;
  const headerLength = explicit ? 12 : 8;
  const length = view.getUint32(explicit ? 8 : 4, littleEndian);
  return {
    bytes: bytes.subarray(0, headerLength),
    valueStart: at + headerLength,
    length,
    encapsulated: length === UNDEFINED_LENGTH,
  };
}

function nativeLayout(valueStart: number, length: number, size: number): { end: number } | undefined {
  // A value running past the end of the file is the ordinary path's to report.
  return valueStart + length <= size ? { end: valueStart + length } : undefined;
}

/**
 * Walks the items of encapsulated pixel data from `start`, writing each item header into `sparse` and reading the
 * first item (the Basic Offset Table) whole. Returns where the data after the sequence delimiter starts, or
 * undefined when the headers do not add up (the ordinary path reports what is wrong).
 */
async function readItemHeaders(
  source: ByteSource,
  sparse: Uint8Array,
  start: number,
  littleEndian: boolean,
): Promise<{ end: number } | undefined> {
  let pos = start;
  for (let item = 0; pos + 8 <= source.size; item++) {
    const header = await readRange(source, pos, 8);
    const view = new DataView(header.buffer, header.byteOffset, 8);
    const tag = ((view.getUint16(0, littleEndian) << 16) | view.getUint16(2, littleEndian)) >>> 0;
    const length = view.getUint32(4, littleEndian);
    sparse.set(header, pos);
    if (tag === SEQUENCE_DELIMITER) return { end: pos + 8 };
    if (tag !== ITEM || length === UNDEFINED_LENGTH || pos + 8 + length > source.size) return undefined;
    if (item === 0) await fill(source, sparse, pos + 8, length);
    pos += 8 + length;
  }
  return undefined;
}
