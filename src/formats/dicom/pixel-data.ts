/**
 * Frames out of Pixel Data (7FE0,0010), Float Pixel Data (7FE0,0008) and Double Float Pixel Data (7FE0,0009):
 * native encodings of every byte order and bit depth, RLE Lossless (PS3.5 annex G), Deflated Image Frame
 * Compression, and the compressed bytes of one frame for codecs that live outside this pure layer (with
 * frameFromDecodedSamples to turn what a codec wrote back into a Frame).
 */
import { inflateRawSync } from 'node:zlib';
import type { DataSet, Element } from 'dicom-parser';
import dicomParser from 'dicom-parser';
import { AppError } from '../../errors.js';
import { type DicomInstance, functionalGroupItems, functionalGroupsOf } from './parse-dicom.js';
import { TAG } from './tags.js';
import { describeTransferSyntax, type PixelCodec } from './transfer-syntax.js';
import { swapBytes } from './vr.js';

export type PixelArray =
  | Uint8Array
  | Int8Array
  | Uint16Array
  | Int16Array
  | Uint32Array
  | Int32Array
  | Float32Array
  | Float64Array;

/** One decoded frame. Samples are pixel-interleaved (planar data is interleaved on read), masked to BitsStored
 * and sign-extended. `pixels` may share memory with the file's bytes: treat it as read-only. */
export interface Frame {
  rows: number;
  columns: number;
  samplesPerPixel: number;
  /** What the samples are now: YBR_FULL_422 is expanded to YBR_FULL (and the retired YBR_PARTIAL_422 to
   * YBR_PARTIAL, one chroma pair per pixel), and codecs that convert colour (JPEG) report RGB. */
  photometricInterpretation: string;
  /** Bits per element of `pixels` (1-bit data is unpacked to 8). */
  bitsAllocated: number;
  bitsStored: number;
  pixelRepresentation: number;
  pixels: PixelArray;
}

/** The image pixel module values a frame decoder needs, validated. */
export interface PixelDescription {
  rows: number;
  columns: number;
  samplesPerPixel: number;
  bitsAllocated: number;
  bitsStored: number;
  highBit: number;
  pixelRepresentation: number;
  planarConfiguration: number;
  photometricInterpretation: string;
  numberOfFrames: number;
  /** 'float' for Float Pixel Data (32-bit) and Double Float Pixel Data (64-bit). */
  sampleFormat: 'integer' | 'float';
}

function corrupt(message: string, details?: Record<string, unknown>): AppError {
  return new AppError('CORRUPT_FILE', message, { retryable: false, details });
}

function unsupported(message: string, details?: Record<string, unknown>): AppError {
  return new AppError('UNSUPPORTED_FORMAT', message, { retryable: false, details });
}

/** Validates the Image Pixel module. Throws UNSUPPORTED_FORMAT for objects without pixels (SR, waveforms) or
 * with pixels of a kind not rendered yet, CORRUPT_FILE for missing or impossible values. */
export function describePixels(instance: DicomInstance): PixelDescription {
  const floatElement = floatPixelDataElement(instance);
  if (!instance.hasPixelData && !floatElement) {
    throw unsupported(`no pixel data to render (SOP class ${instance.sopClassUid ?? 'unknown'})`);
  }
  const { rows, columns } = instance;
  if (!rows || !columns) throw corrupt('pixel data without Rows (0028,0010) and Columns (0028,0011)');
  const samplesPerPixel = instance.samplesPerPixel ?? 1;
  if (samplesPerPixel !== 1 && samplesPerPixel !== 3) {
    throw unsupported(`SamplesPerPixel (0028,0002) ${samplesPerPixel} is not supported`);
  }
  const photometricInterpretation =
    instance.photometricInterpretation ?? (samplesPerPixel === 3 ? 'RGB' : 'MONOCHROME2');
  if (floatElement) {
    // The element says the width: OF holds 32-bit floats, OD 64-bit, whatever BitsAllocated claims.
    const bits = floatElement.tag === TAG.DoubleFloatPixelData ? 64 : 32;
    return {
      rows,
      columns,
      samplesPerPixel,
      bitsAllocated: bits,
      bitsStored: bits,
      highBit: bits - 1,
      pixelRepresentation: 1,
      planarConfiguration: instance.planarConfiguration === 1 ? 1 : 0,
      photometricInterpretation,
      numberOfFrames: instance.numberOfFrames,
      sampleFormat: 'float',
    };
  }
  const bitsAllocated = instance.bitsAllocated;
  if (bitsAllocated === undefined) throw corrupt('pixel data without BitsAllocated (0028,0100)');
  // Other widths (ACR-NEMA's 12) are packed bit streams, which only uncompressed pixel data can hold.
  const ts = describeTransferSyntax(instance.transferSyntaxUid);
  const nativeStream = ts.codec === 'native' && !ts.encapsulated;
  if (bitsAllocated !== 1 && !WORD_WIDTHS.has(bitsAllocated) && !(isPacked(bitsAllocated) && nativeStream)) {
    throw unsupported(`BitsAllocated (0028,0100) ${bitsAllocated} is not supported`);
  }
  let bitsStored = instance.bitsStored ?? bitsAllocated;
  if (bitsStored < 1 || bitsStored > bitsAllocated) bitsStored = bitsAllocated;
  let highBit = instance.highBit ?? bitsStored - 1;
  if (highBit < bitsStored - 1 || highBit >= bitsAllocated) highBit = bitsStored - 1;
  return {
    rows,
    columns,
    samplesPerPixel,
    bitsAllocated,
    bitsStored,
    highBit,
    pixelRepresentation: instance.pixelRepresentation === 1 ? 1 : 0,
    planarConfiguration: instance.planarConfiguration === 1 ? 1 : 0,
    photometricInterpretation,
    numberOfFrames: instance.numberOfFrames,
    sampleFormat: 'integer',
  };
}

/** Float Pixel Data or Double Float Pixel Data, when the instance has no integer Pixel Data. */
function floatPixelDataElement(instance: DicomInstance): Element | undefined {
  if (instance.hasPixelData) return undefined;
  const ds = instance.dataSet;
  return ds.elements[TAG.FloatPixelData] ?? ds.elements[TAG.DoubleFloatPixelData];
}

/** Whether the instance holds an image at all (integer, float or double float pixel data). */
export function hasAnyPixelData(instance: DicomInstance): boolean {
  return instance.hasPixelData || floatPixelDataElement(instance) !== undefined;
}

function checkFrameIndex(description: PixelDescription, frameIndex: number): void {
  if (!Number.isInteger(frameIndex) || frameIndex < 0 || frameIndex >= description.numberOfFrames) {
    throw new AppError(
      'VALIDATION_FAILED',
      `frame ${frameIndex + 1} does not exist (the instance has ${description.numberOfFrames})`,
      { retryable: false },
    );
  }
}

function pixelDataElement(instance: DicomInstance): Element {
  const element = instance.dataSet.elements[TAG.PixelData];
  if (!element) throw corrupt('pixel data (7FE0,0010) is cut short before its first byte');
  return element;
}

/** Decodes one frame of a native, RLE or Deflated Image Frame transfer syntax, and float pixel data. Other
 * syntaxes throw UNSUPPORTED_FORMAT; their compressed bytes come from getEncapsulatedFrame. */
export function getFrame(instance: DicomInstance, frameIndex: number): Frame {
  const description = describePixels(instance);
  checkFrameIndex(description, frameIndex);
  const ts = describeTransferSyntax(instance.transferSyntaxUid);
  if (description.sampleFormat === 'float') {
    return decodeStoredFrame(instance, floatPixelDataElement(instance)!, frameIndex, description);
  }
  const element = pixelDataElement(instance);
  if (ts.codec === 'rle') {
    return decodeRleFrame(getEncapsulatedFrame(instance, frameIndex), description);
  }
  if (ts.codec === 'deflated-frame') {
    return decodeNativeFrame(inflateFrame(instance, frameIndex), 0, description, true, false);
  }
  if (ts.codec === 'native' && element.encapsulatedPixelData) {
    return decodeNativeFrame(getEncapsulatedFrame(instance, frameIndex), 0, description, true, false);
  }
  if (holdsStoredSamples(ts.codec, element))
    return decodeStoredFrame(instance, element, frameIndex, description);
  throw unsupported(`transfer syntax ${ts.uid} (${ts.name}) cannot be decoded yet`, {
    transferSyntaxUid: ts.uid,
  });
}

/**
 * A native 16-bit frame's stored words before they are masked to BitsStored: retired embedded overlay planes
 * live in the bits above HighBit. Undefined for other data (encapsulated, packed, 8 or 32 bits, float), which
 * cannot hold such planes.
 */
export function getUnmaskedFrameWords(instance: DicomInstance, frameIndex: number): PixelArray | undefined {
  const d = describePixels(instance);
  if (d.bitsAllocated !== 16 || d.sampleFormat === 'float') return undefined;
  const element = pixelDataElement(instance);
  if (!holdsStoredSamples(describeTransferSyntax(instance.transferSyntaxUid).codec, element))
    return undefined;
  checkFrameIndex(d, frameIndex);
  const whole = { ...d, bitsStored: 16, highBit: 15, pixelRepresentation: 0 };
  return decodeStoredFrame(instance, element, frameIndex, whole).pixels;
}

/** Pixel Data that holds its samples as they are: uncompressed and not encapsulated (a private syntax's too). */
function holdsStoredSamples(codec: PixelCodec, element: Element): boolean {
  return !element.encapsulatedPixelData && (codec === 'native' || codec === 'unknown');
}

/** Frame `frameIndex` of such Pixel Data (or of Float Pixel Data), read through `d` in the data set's byte
 * order. */
function decodeStoredFrame(
  instance: DicomInstance,
  element: Element,
  frameIndex: number,
  d: PixelDescription,
): Frame {
  const ds = instance.dataSet;
  const littleEndian = ds.byteArrayParser === dicomParser.littleEndianByteArrayParser;
  return decodeNativeFrame(elementBytes(ds, element), frameIndex, d, littleEndian, element.vr === 'OW');
}

function elementBytes(ds: DataSet, element: Element): Uint8Array {
  const available = Math.min(element.length, ds.byteArray.length - element.dataOffset);
  return ds.byteArray.subarray(element.dataOffset, element.dataOffset + Math.max(0, available));
}

/** Deflated Image Frame Compression (1.2.840.10008.1.2.8.1): each frame is a raw deflate stream of its native
 * little endian bytes, so a frame starts on a byte boundary even when it is 1-bit. */
function inflateFrame(instance: DicomInstance, frameIndex: number): Uint8Array {
  const compressed = getEncapsulatedFrame(instance, frameIndex);
  const d = describePixels(instance);
  try {
    return inflateRawSync(compressed, { maxOutputLength: nativeFrameLength(d) + 16 });
  } catch (err) {
    throw corrupt(
      `deflated frame ${frameIndex + 1} of ${d.numberOfFrames} cannot be inflated: ${err instanceof Error ? err.message : String(err)}`,
      { tag: '(7FE0,0010)', frameIndex },
    );
  }
}

/** Two luminance samples per chroma pair (PS3.3 C.7.6.3.1.2): YBR_FULL_422, and the retired YBR_PARTIAL_422 that
 * old ultrasound writes; the pairs expand to these. */
const SUBSAMPLED_422: ReadonlyMap<string, string> = new Map([
  ['YBR_FULL_422', 'YBR_FULL'],
  ['YBR_PARTIAL_422', 'YBR_PARTIAL'],
]);

/** Bytes one native frame occupies. The 4:2:2 interpretations store two luminance samples per chroma pair. */
export function nativeFrameLength(
  d: Pick<
    PixelDescription,
    'rows' | 'columns' | 'samplesPerPixel' | 'bitsAllocated' | 'photometricInterpretation'
  >,
): number {
  const samples = d.rows * d.columns * d.samplesPerPixel;
  if (isPacked(d.bitsAllocated) || d.bitsAllocated === 1) return Math.ceil((samples * d.bitsAllocated) / 8);
  if (SUBSAMPLED_422.has(d.photometricInterpretation) && d.samplesPerPixel === 3) {
    return d.rows * d.columns * 2 * (d.bitsAllocated / 8);
  }
  return samples * (d.bitsAllocated / 8);
}

/**
 * The bytes of Pixel Data's value that frame `frameIndex` of native data occupies, [start, end): whole bytes
 * around a bit-packed frame, and even bounds so that big endian words can be swapped. A reader by byte range
 * (read-frame-by-range.ts) fetches just these.
 */
export function nativeFrameByteRange(d: PixelDescription, frameIndex: number): [start: number, end: number] {
  const samples = d.rows * d.columns * d.samplesPerPixel;
  const bitPacked = d.bitsAllocated === 1 || isPacked(d.bitsAllocated);
  const frameBits = bitPacked ? samples * d.bitsAllocated : nativeFrameLength(d) * 8;
  const start = Math.floor((frameIndex * frameBits) / 8);
  const end = Math.ceil(((frameIndex + 1) * frameBits) / 8);
  return [start - (start % 2), end + (end % 2)];
}

function decodeNativeFrame(
  bytes: Uint8Array,
  frameIndex: number,
  d: PixelDescription,
  littleEndian: boolean,
  wordSwapped: boolean,
): Frame {
  if (!littleEndian && wordSwapped) return decodeBigEndianWords(bytes, frameIndex, d);
  const pixelCount = d.rows * d.columns;
  const samples = pixelCount * d.samplesPerPixel;
  if (d.bitsAllocated === 1) {
    const startBit = frameIndex * samples;
    const endByte = Math.ceil((startBit + samples) / 8);
    if (endByte > bytes.length)
      throw frameTooShort(bytes.length, frameIndex, d, Math.floor(startBit / 8), endByte);
    return frame(d, unpackBits(bytes, startBit, samples), 8, 1, 0);
  }
  if (isPacked(d.bitsAllocated)) {
    // Packed: frames follow one another in the bit stream, as in the 1-bit case.
    const startBit = frameIndex * samples * d.bitsAllocated;
    const endByte = Math.ceil((startBit + samples * d.bitsAllocated) / 8);
    if (endByte > bytes.length)
      throw frameTooShort(bytes.length, frameIndex, d, Math.floor(startBit / 8), endByte);
    // A little endian bit stream: big endian OW was unswapped above, and OB has no byte order.
    let pixels = unpackSamples(bytes, startBit, samples, d);
    if (d.samplesPerPixel === 3 && d.planarConfiguration === 1) pixels = interleavePlanes(pixels, pixelCount);
    const width = d.bitsAllocated <= 16 ? 16 : 32;
    return frame(d, pixels, width, d.bitsStored, d.pixelRepresentation);
  }
  const frameLength = nativeFrameLength(d);
  const start = frameIndex * frameLength;
  if (start + frameLength > bytes.length)
    throw frameTooShort(bytes.length, frameIndex, d, start, start + frameLength);
  const raw = bytes.subarray(start, start + frameLength);
  const bytesPerSample = d.bitsAllocated / 8;
  // Big endian OB, OF and OD: each sample in the transfer syntax's byte order (OW was unswapped above).
  let pixels = typedView(raw, d, littleEndian ? 1 : bytesPerSample);
  pixels = maskToBitsStored(pixels, d);

  const expanded = SUBSAMPLED_422.get(d.photometricInterpretation);
  if (expanded && d.samplesPerPixel === 3) {
    return frame(
      d,
      expandYbr422(pixels, pixelCount),
      d.bitsAllocated,
      d.bitsStored,
      d.pixelRepresentation,
      expanded,
    );
  }
  if (d.samplesPerPixel === 3 && d.planarConfiguration === 1) pixels = interleavePlanes(pixels, pixelCount);
  return frame(d, pixels, d.bitsAllocated, d.bitsStored, d.pixelRepresentation);
}

function frame(
  d: PixelDescription,
  pixels: PixelArray,
  bitsAllocated: number,
  bitsStored: number,
  pixelRepresentation: number,
  photometricInterpretation = d.photometricInterpretation,
): Frame {
  return {
    rows: d.rows,
    columns: d.columns,
    samplesPerPixel: d.samplesPerPixel,
    photometricInterpretation,
    bitsAllocated,
    bitsStored,
    pixelRepresentation,
    pixels,
  };
}

function frameTooShort(
  length: number,
  frameIndex: number,
  d: PixelDescription,
  start: number,
  end: number,
): AppError {
  const tag =
    d.sampleFormat === 'float' ? (d.bitsAllocated === 64 ? '(7FE0,0009)' : '(7FE0,0008)') : '(7FE0,0010)';
  return corrupt(
    `pixel data ${tag} holds ${length} bytes; frame ${frameIndex + 1} of ${d.numberOfFrames} needs bytes ${start} to ${end}`,
    { tag, frameIndex, available: length, needed: end },
  );
}

type SampleKind = 'unsigned' | 'signed' | 'float';

function sampleKind(d: PixelDescription): SampleKind {
  if (d.sampleFormat === 'float') return 'float';
  return d.pixelRepresentation === 1 ? 'signed' : 'unsigned';
}

/** Views (or, when unaligned or byte-swapped, copies) raw bytes as the typed array the pixel module implies. */
function typedView(raw: Uint8Array, d: PixelDescription, swapWidth: number): PixelArray {
  return viewSamples(raw, d.bitsAllocated / 8, sampleKind(d), swapWidth);
}

function viewSamples(raw: Uint8Array, width: number, kind: SampleKind, swapWidth: number): PixelArray {
  let source = raw;
  if (swapWidth > 1) {
    source = new Uint8Array(raw.length);
    const whole = raw.length - (raw.length % swapWidth);
    for (let i = 0; i < whole; i += swapWidth) {
      for (let k = 0; k < swapWidth; k++) source[i + k] = raw[i + swapWidth - 1 - k]!;
    }
  } else if (width > 1 && source.byteOffset % width !== 0) {
    // A copy starts at offset 0 of a fresh buffer (Buffer#slice would only make another view).
    source = new Uint8Array(raw);
  }
  const count = Math.floor(source.length / width);
  const { buffer, byteOffset } = source;
  // Plain typed arrays even when the file came as a Buffer, whose subarrays are Buffers too.
  if (kind === 'float') {
    return width === 8
      ? new Float64Array(buffer, byteOffset, count)
      : new Float32Array(buffer, byteOffset, count);
  }
  const signed = kind === 'signed';
  if (width === 1)
    return signed ? new Int8Array(buffer, byteOffset, count) : new Uint8Array(buffer, byteOffset, count);
  if (width === 2) {
    return signed ? new Int16Array(buffer, byteOffset, count) : new Uint16Array(buffer, byteOffset, count);
  }
  return signed ? new Int32Array(buffer, byteOffset, count) : new Uint32Array(buffer, byteOffset, count);
}

/** Keeps bits highBit-bitsStored+1 … highBit (the rest may hold overlays or garbage) and sign-extends. Returns
 * the input untouched when all allocated bits are stored. */
function maskToBitsStored(pixels: PixelArray, d: PixelDescription): PixelArray {
  if (d.bitsStored === d.bitsAllocated) return pixels;
  const shift = d.highBit + 1 - d.bitsStored;
  // Most writers leave the unused bits clear (or sign-extended): a read-only check is then all it takes.
  if (shift === 0 && fitsBitsStored(pixels, d)) return pixels;
  const out = allocLike(pixels, pixels.length);
  const n = pixels.length;
  if (d.bitsAllocated === 32) {
    // 32-bit: stay in floating point to avoid sign trouble with >>> on the top bit.
    const range = 2 ** d.bitsStored;
    const half = range / 2;
    for (let i = 0; i < n; i++) {
      const unsigned = pixels[i]! >>> 0;
      let v = Math.floor(unsigned / 2 ** shift) % range;
      if (d.pixelRepresentation === 1 && v >= half) v -= range;
      out[i] = v;
    }
    return out;
  }
  const mask = (1 << d.bitsStored) - 1;
  const unsignedMask = (1 << d.bitsAllocated) - 1;
  if (d.pixelRepresentation === 1) {
    const sign = 1 << (d.bitsStored - 1);
    for (let i = 0; i < n; i++) {
      const v = ((pixels[i]! & unsignedMask) >> shift) & mask;
      out[i] = (v ^ sign) - sign;
    }
  } else {
    for (let i = 0; i < n; i++) out[i] = (pixels[i]! >> shift) & mask;
  }
  return out;
}

/** Whether every sample already holds just its stored bits: unsigned below 2^BitsStored, signed within its
 * two's complement range. */
function fitsBitsStored(pixels: PixelArray, d: PixelDescription): boolean {
  const n = pixels.length;
  if (d.pixelRepresentation === 1) {
    const half = 2 ** (d.bitsStored - 1);
    for (let i = 0; i < n; i++) {
      const v = pixels[i]!;
      if (v < -half || v >= half) return false;
    }
    return true;
  }
  const limit = 2 ** d.bitsStored;
  let from = 0;
  if (d.bitsAllocated <= 16 && pixels.byteOffset % 4 === 0) {
    // Four bytes at a time: one test covers two 16-bit or four 8-bit samples.
    const lane = d.bitsAllocated === 8 ? 0x01010101 : 0x00010001;
    const high = (((2 ** d.bitsAllocated - 1) & ~(limit - 1)) * lane) | 0;
    const words = new Int32Array(pixels.buffer, pixels.byteOffset, pixels.byteLength >> 2);
    let any = 0;
    for (let i = 0; i < words.length; i++) any |= words[i]! & high;
    if (any !== 0) return false;
    from = (words.length * 4) / pixels.BYTES_PER_ELEMENT;
  }
  for (let i = from; i < n; i++) {
    const v = pixels[i]!;
    if (v < 0 || v >= limit) return false;
  }
  return true;
}

function allocLike(pixels: PixelArray, length: number): PixelArray {
  if (pixels instanceof Float32Array) return new Float32Array(length);
  if (pixels instanceof Float64Array) return new Float64Array(length);
  if (pixels instanceof Int8Array) return new Int8Array(length);
  if (pixels instanceof Uint16Array) return new Uint16Array(length);
  if (pixels instanceof Int16Array) return new Int16Array(length);
  if (pixels instanceof Uint32Array) return new Uint32Array(length);
  if (pixels instanceof Int32Array) return new Int32Array(length);
  return new Uint8Array(length);
}

function interleavePlanes(pixels: PixelArray, pixelCount: number): PixelArray {
  const out = allocLike(pixels, pixels.length);
  for (let s = 0; s < 3; s++) {
    const plane = s * pixelCount;
    for (let i = 0; i < pixelCount; i++) out[i * 3 + s] = pixels[plane + i]!;
  }
  return out;
}

/** YBR_FULL_422 (PS3.3 C.7.6.3.1.2): each pair of pixels is stored Y1 Y2 Cb Cr. */
function expandYbr422(pixels: PixelArray, pixelCount: number): PixelArray {
  const out = allocLike(pixels, pixelCount * 3);
  let o = 0;
  const pairs = Math.floor(pixelCount / 2);
  for (let p = 0; p < pairs; p++) {
    const i = p * 4;
    const cb = pixels[i + 2]!;
    const cr = pixels[i + 3]!;
    out[o++] = pixels[i]!;
    out[o++] = cb;
    out[o++] = cr;
    out[o++] = pixels[i + 1]!;
    out[o++] = cb;
    out[o++] = cr;
  }
  return out;
}

/** Sample widths that are whole typed-array elements. */
const WORD_WIDTHS: ReadonlySet<number> = new Set([8, 16, 32]);

/** BitsAllocated of samples packed into a bit stream: any width from 2 to 31 but 8 and 16 (12, 24 …). */
function isPacked(bitsAllocated: number): boolean {
  return bitsAllocated > 1 && bitsAllocated < 32 && !WORD_WIDTHS.has(bitsAllocated);
}

/**
 * Samples packed at a width that is not a typed-array element (ACR-NEMA's 12-bit: two samples in three
 * bytes). The pixel data is one little-endian bit stream, each sample's bits lowest first, which is how DCMTK
 * reads it. Returns 16- or 32-bit samples holding just the stored bits (sign-extended when signed).
 */
function unpackSamples(bytes: Uint8Array, startBit: number, count: number, d: PixelDescription): PixelArray {
  const width = d.bitsAllocated;
  const signed = d.pixelRepresentation === 1;
  const out: PixelArray =
    width <= 16
      ? signed
        ? new Int16Array(count)
        : new Uint16Array(count)
      : signed
        ? new Int32Array(count)
        : new Uint32Array(count);
  const below = 2 ** (d.highBit + 1 - d.bitsStored);
  const range = 2 ** d.bitsStored;
  for (let i = 0; i < count; i++) {
    let bit = startBit + i * width;
    let value = 0;
    for (let got = 0; got < width; ) {
      const offset = bit & 7;
      const take = Math.min(8 - offset, width - got);
      value += ((bytes[bit >> 3]! >> offset) & ((1 << take) - 1)) * 2 ** got;
      got += take;
      bit += take;
    }
    let stored = Math.floor(value / below) % range;
    if (signed && stored >= range / 2) stored -= range;
    out[i] = stored;
  }
  return out;
}

/** A copy with the bytes of each 16-bit word swapped: OW read in big endian. An odd last byte (a value cut
 * short) is kept as it is. */
export function swapWords(bytes: Uint8Array): Uint8Array {
  return swapBytes(bytes, 2);
}

/**
 * Native OW pixel data in big endian. OW is a stream of 16-bit words, so the transfer syntax swaps the bytes of
 * each word, whatever BitsAllocated says: unswapped, the words give back the little endian byte stream, in which
 * 8-bit samples run in order and a 32-bit sample is two words, the less significant first. DCMTK reads and
 * writes it so (dcmconv +tb). The words run across frame boundaries (an odd-sized 8-bit frame ends inside
 * one) and into the value's padding byte, so the words around the frame are unswapped before it is cut out.
 */
function decodeBigEndianWords(bytes: Uint8Array, frameIndex: number, d: PixelDescription): Frame {
  if (d.bitsAllocated === 1 || isPacked(d.bitsAllocated)) {
    // Bit streams: frames start anywhere, and these values are small.
    return decodeNativeFrame(swapWords(bytes), frameIndex, d, true, false);
  }
  const frameLength = nativeFrameLength(d);
  const start = frameIndex * frameLength;
  const end = start + frameLength;
  // Too short: the little endian path names the frame and the offsets.
  if (end > bytes.length) return decodeNativeFrame(bytes, frameIndex, d, true, false);
  const from = start - (start % 2);
  const to = Math.min(bytes.length, end + (end % 2));
  return decodeNativeFrame(swapWords(bytes.subarray(from, to)).subarray(start - from), 0, d, true, false);
}

/** 1-bit pixels are packed least significant bit first and run on across frames without byte alignment. */
function unpackBits(bytes: Uint8Array, startBit: number, count: number): Uint8Array {
  const out = new Uint8Array(count);
  for (let i = 0; i < count; i++) {
    const bit = startBit + i;
    out[i] = (bytes[bit >> 3]! >> (bit & 7)) & 1;
  }
  return out;
}

// ---- RLE Lossless (PS3.5 annex G) ----------------------------------------------------------------------

/** Decodes one RLE Lossless frame: a 64-byte header of segment offsets, then one PackBits segment per byte
 * plane, most significant byte first, sample by sample. */
export function decodeRleFrame(data: Uint8Array, d: PixelDescription): Frame {
  if (d.bitsAllocated === 1) throw unsupported('RLE Lossless with BitsAllocated 1 is not supported');
  if (data.length < 64) throw corrupt(`RLE frame of ${data.length} bytes is shorter than its 64-byte header`);
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  const segmentCount = view.getUint32(0, true);
  const bytesPerSample = d.bitsAllocated / 8;
  const expected = d.samplesPerPixel * bytesPerSample;
  if (segmentCount !== expected) {
    throw corrupt(`RLE header lists ${segmentCount} segments; ${expected} expected for this pixel module`);
  }
  const pixelCount = d.rows * d.columns;
  const stride = d.samplesPerPixel * bytesPerSample;
  const out = new Uint8Array(pixelCount * stride);
  for (let segment = 0; segment < segmentCount; segment++) {
    const start = view.getUint32(4 + segment * 4, true);
    const end = segment + 1 < segmentCount ? view.getUint32(8 + segment * 4, true) : data.length;
    if (start < 64 || end > data.length || start > end) {
      throw corrupt(
        `RLE segment ${segment + 1} has offsets ${start} to ${end} outside the ${data.length}-byte frame`,
      );
    }
    const sample = Math.floor(segment / bytesPerSample);
    const byteInSample = segment % bytesPerSample;
    // Segments are most significant byte first; typed arrays read little endian on every platform Node runs on.
    const outOffset = sample * bytesPerSample + (bytesPerSample - 1 - byteInSample);
    const written = unpackBitsSegment(data, start, end, out, outOffset, stride, pixelCount);
    if (written < pixelCount) {
      throw corrupt(`RLE segment ${segment + 1} decodes to ${written} bytes; ${pixelCount} expected`, {
        segment,
      });
    }
  }
  const pixels = maskToBitsStored(typedView(out, d, 1), d);
  return frame(d, pixels, d.bitsAllocated, d.bitsStored, d.pixelRepresentation);
}

/** PackBits: a header byte n < 128 copies the next n+1 bytes; n > 128 repeats the next byte 257-n times; 128
 * is a no-op. Output is written every `stride` bytes. Returns how many bytes were produced. */
function unpackBitsSegment(
  src: Uint8Array,
  start: number,
  end: number,
  out: Uint8Array,
  outOffset: number,
  stride: number,
  count: number,
): number {
  let i = start;
  let o = 0;
  let pos = outOffset;
  while (i < end && o < count) {
    const header = src[i++]!;
    if (header < 128) {
      const n = Math.min(header + 1, end - i, count - o);
      for (let k = 0; k < n; k++) {
        out[pos] = src[i + k]!;
        pos += stride;
      }
      i += header + 1;
      o += n;
    } else if (header > 128) {
      if (i >= end) break;
      const value = src[i++]!;
      const n = Math.min(257 - header, count - o);
      for (let k = 0; k < n; k++) {
        out[pos] = value;
        pos += stride;
      }
      o += n;
    }
  }
  return o;
}

// ---- encapsulated frames -------------------------------------------------------------------------------

interface Fragment {
  offset: number;
  position: number;
  length: number;
}

/** The compressed bytes of one frame of encapsulated pixel data, its fragments joined. Frame boundaries come
 * from the Basic Offset Table, else one fragment per frame, else JPEG end-of-image markers. */
export function getEncapsulatedFrame(instance: DicomInstance, frameIndex: number): Uint8Array {
  const frames = instance.numberOfFrames;
  if (!Number.isInteger(frameIndex) || frameIndex < 0 || frameIndex >= frames) {
    throw new AppError(
      'VALIDATION_FAILED',
      `frame ${frameIndex + 1} does not exist (the instance has ${frames})`,
      {
        retryable: false,
      },
    );
  }
  const ds = instance.dataSet;
  const element = pixelDataElement(instance);
  if (!element.encapsulatedPixelData) {
    throw corrupt(
      `pixel data (7FE0,0010) is not encapsulated although transfer syntax ${instance.transferSyntaxUid} requires it`,
    );
  }
  const fragments = (element.fragments ?? []) as Fragment[];
  if (fragments.length === 0) throw corrupt('encapsulated pixel data (7FE0,0010) has no fragments');
  const [first, count] = fragmentsOfFrame(ds, element, fragments, frameIndex, frames);
  return joinFragments(ds.byteArray, fragments, first, count, frameIndex);
}

/**
 * Which fragments hold frame `frameIndex` (first, count), as far as the offset tables and the counts tell without
 * reading any fragment's bytes; undefined when only the JPEG markers inside them could. A reader by byte range
 * (read-frame-by-range.ts) fetches just these.
 */
export function fragmentsOfFrameFromTables(
  instance: DicomInstance,
  frameIndex: number,
): [first: number, count: number] | undefined {
  const element = instance.dataSet.elements[TAG.PixelData];
  const fragments = (element?.fragments ?? []) as Fragment[];
  if (!element || fragments.length === 0) return undefined;
  return rangeFromTables(instance.dataSet, element, fragments, frameIndex, instance.numberOfFrames);
}

function rangeFromTables(
  ds: DataSet,
  element: Element,
  fragments: Fragment[],
  frameIndex: number,
  frames: number,
): [first: number, count: number] | undefined {
  const extended = extendedOffsetTable(ds, frames);
  if (extended) {
    const range = rangeFromOffsetTable(fragments, extended, frameIndex);
    if (range) return range;
  }
  const table = element.basicOffsetTable ?? [];
  if (table.length === frames) {
    const range = rangeFromOffsetTable(fragments, table, frameIndex);
    if (range) return range;
  }
  if (frames === 1) return [0, fragments.length];
  if (fragments.length === frames) return [frameIndex, 1];
  return undefined;
}

function fragmentsOfFrame(
  ds: DataSet,
  element: Element,
  fragments: Fragment[],
  frameIndex: number,
  frames: number,
): [first: number, count: number] {
  const fromTables = rangeFromTables(ds, element, fragments, frameIndex, frames);
  if (fromTables) return fromTables;
  let jpegTable: number[] = [];
  try {
    jpegTable = dicomParser.createJPEGBasicOffsetTable(ds, element);
  } catch {
    // Falls through to the error below: the table is only a heuristic.
  }
  if (jpegTable.length === frames) {
    const range = rangeFromOffsetTable(fragments, jpegTable, frameIndex);
    if (range) return range;
  }
  throw corrupt(
    `cannot tell which of ${fragments.length} pixel data fragments hold frame ${frameIndex + 1} of ${frames}`,
    { fragments: fragments.length, frames },
  );
}

const EXTENDED_OFFSET_TABLE = 'x7fe00001';

/** Extended Offset Table (7FE0,0001): 64-bit offsets, one per frame, for pixel data too large for the 32-bit
 * Basic Offset Table (which is then empty). Offsets count from the first fragment's item tag, as in the basic
 * table. */
function extendedOffsetTable(ds: DataSet, frames: number): number[] | undefined {
  const element = ds.elements[EXTENDED_OFFSET_TABLE];
  if (
    !element ||
    element.length !== frames * 8 ||
    element.dataOffset + element.length > ds.byteArray.length
  ) {
    return undefined;
  }
  const view = new DataView(
    ds.byteArray.buffer,
    ds.byteArray.byteOffset + element.dataOffset,
    element.length,
  );
  const littleEndian = ds.byteArrayParser === dicomParser.littleEndianByteArrayParser;
  const offsets: number[] = [];
  for (let k = 0; k < frames; k++) offsets.push(Number(view.getBigUint64(k * 8, littleEndian)));
  return offsets;
}

function rangeFromOffsetTable(
  fragments: Fragment[],
  table: readonly number[],
  frameIndex: number,
): [number, number] | undefined {
  const startOffset = table[frameIndex]!;
  const endOffset = frameIndex + 1 < table.length ? table[frameIndex + 1]! : Number.POSITIVE_INFINITY;
  const first = fragments.findIndex((f) => f.offset === startOffset);
  if (first < 0) return undefined;
  let count = 0;
  while (first + count < fragments.length && fragments[first + count]!.offset < endOffset) count++;
  return count > 0 ? [first, count] : undefined;
}

function joinFragments(
  byteArray: Uint8Array,
  fragments: Fragment[],
  first: number,
  count: number,
  frameIndex: number,
): Uint8Array {
  let total = 0;
  for (let k = first; k < first + count; k++) {
    const f = fragments[k]!;
    if (f.position + f.length > byteArray.length) {
      throw corrupt(
        `pixel data fragment ${k + 1} (frame ${frameIndex + 1}) at offset ${f.position} declares ${f.length} bytes but only ${Math.max(0, byteArray.length - f.position)} remain`,
        { tag: '(7FE0,0010)', offset: f.position, frameIndex },
      );
    }
    total += f.length;
  }
  if (count === 1) {
    const f = fragments[first]!;
    return byteArray.subarray(f.position, f.position + f.length);
  }
  const out = new Uint8Array(total);
  let o = 0;
  for (let k = first; k < first + count; k++) {
    const f = fragments[k]!;
    out.set(byteArray.subarray(f.position, f.position + f.length), o);
    o += f.length;
  }
  return out;
}

// ---- frames from codecs ----------------------------------------------------------------------------------

/** What a codec (JPEG, JPEG-LS, JPEG 2000 …) wrote for one frame, in its own terms. */
export interface DecodedSamples {
  /** Samples in the platform's (little endian) byte order. */
  data: Uint8Array;
  rows: number;
  columns: number;
  samplesPerPixel: number;
  bytesPerSample: 1 | 2 | 4;
  /** All of the first sample, then all of the second …, rather than pixel by pixel. */
  planar: boolean;
  /** Whether the codestream itself says its samples are signed. */
  signed: boolean;
  /** Bits per sample the codestream declares. */
  precision: number;
  /** What the samples are: a codec that undid a colour transform reports RGB. */
  photometricInterpretation: string;
}

/** A frame from a codec's output, reconciled with the pixel module. JPEG, JPEG-LS and many JPEG 2000 writers
 * store signed samples as unsigned bit patterns; as pydicom and DCMTK do, PixelRepresentation 1 then turns the
 * codestream's precision bits into two's complement. A codestream that says signed is believed. */
export function frameFromDecodedSamples(s: DecodedSamples, d: PixelDescription): Frame {
  const pixelCount = s.rows * s.columns;
  const sampleCount = pixelCount * s.samplesPerPixel;
  const needed = sampleCount * s.bytesPerSample;
  if (s.data.length < needed) {
    throw corrupt(
      `the codec produced ${s.data.length} bytes for a ${s.columns}×${s.rows} frame that needs ${needed}`,
    );
  }
  const containerBits = s.bytesPerSample * 8;
  const precision = Math.min(containerBits, Math.max(1, s.precision || d.bitsStored));
  const reinterpret = !s.signed && d.pixelRepresentation === 1;
  const signed = s.signed || reinterpret;
  let pixels = viewSamples(s.data.subarray(0, needed), s.bytesPerSample, signed ? 'signed' : 'unsigned', 1);
  // A codestream wider than BitsStored holds whole words (DCMTK's lossless encoders write all 16 bits): DCMTK
  // reads its output as native pixel data, through HighBit and BitsStored, so stored bits at the top of the
  // word are shifted down, an overlay in the unused bits stays out of the image, and a signed value's sign is
  // its HighBit, whether or not the writer extended it.
  const wholeWords = !s.signed && precision > d.bitsStored && containerBits === d.bitsAllocated;
  if (wholeWords) pixels = maskToBitsStored(pixels, d);
  else if (reinterpret && precision < containerBits) pixels = signExtend(pixels, precision);
  if (s.samplesPerPixel === 3 && s.planar) pixels = interleavePlanes(pixels, pixelCount);
  return {
    rows: s.rows,
    columns: s.columns,
    samplesPerPixel: s.samplesPerPixel,
    photometricInterpretation: s.photometricInterpretation,
    bitsAllocated: containerBits,
    bitsStored: wholeWords ? d.bitsStored : precision,
    pixelRepresentation: signed ? 1 : 0,
    pixels,
  };
}

/** Two's complement of the low `bits` bits of each sample (the view is signed, so it is copied first). */
function signExtend(pixels: PixelArray, bits: number): PixelArray {
  const out = allocLike(pixels, pixels.length);
  const mask = (2 ** bits - 1) >>> 0;
  const sign = 2 ** (bits - 1);
  for (let i = 0; i < pixels.length; i++) {
    const v = (pixels[i]! & mask) >>> 0;
    out[i] = v >= sign ? v - 2 ** bits : v;
  }
  return out;
}

/** The ITU-R BT.601 YCbCr → RGB equations: Y' = yScale × (Y − yOffset), then R = Y' + crR·Cr,
 * G = Y' − cbG·Cb − crG·Cr, B = Y' + cbB·Cb, with Cb and Cr centred on 128. */
interface YbrEquations {
  yOffset: number;
  yScale: number;
  crR: number;
  cbG: number;
  crG: number;
  cbB: number;
}

/** Full range, PS3.3 C.7.6.3.1.2 (JFIF's too). */
const FULL_RANGE: YbrEquations = {
  yOffset: 0,
  yScale: 1,
  crR: 1.402,
  cbG: 0.344136,
  crG: 0.714136,
  cbB: 1.772,
};
/** Partial (studio) range: Y 16–235, chroma 16–240. */
const PARTIAL_RANGE: YbrEquations = {
  yOffset: 16,
  yScale: 255 / 219,
  crR: (255 / 224) * 1.402,
  cbG: (255 / 224) * 0.344136,
  crG: (255 / 224) * 0.714136,
  cbB: (255 / 224) * 1.772,
};

function ybrToRgb(ybr: Uint8Array, e: YbrEquations): Uint8Array {
  const { yOffset, yScale, crR, cbG, crG, cbB } = e;
  const out = new Uint8Array(ybr.length);
  for (let i = 0; i + 2 < ybr.length; i += 3) {
    const y = yScale * (ybr[i]! - yOffset);
    const cb = ybr[i + 1]! - 128;
    const cr = ybr[i + 2]! - 128;
    out[i] = roundToByte(y + crR * cr);
    out[i + 1] = roundToByte(y - cbG * cb - crG * cr);
    out[i + 2] = roundToByte(y + cbB * cb);
  }
  return out;
}

/** YBR_FULL → RGB. */
export function ybrFullToRgb(ybr: Uint8Array): Uint8Array {
  return ybrToRgb(ybr, FULL_RANGE);
}

/** YCbCr in the partial range (the retired YBR_PARTIAL_422 once its chroma pairs are expanded) → RGB. */
export function ybrPartialToRgb(ybr: Uint8Array): Uint8Array {
  return ybrToRgb(ybr, PARTIAL_RANGE);
}

/** Rounds to the nearest 0–255 value (NaN → 0). */
export function roundToByte(v: number): number {
  return v <= 0 ? 0 : v >= 255 ? 255 : (v + 0.5) | 0;
}

// ---- pixel aspect ----------------------------------------------------------------------------------------

/** The physical height and width of a pixel, in any unit: only their ratio matters. */
export interface PixelAspect {
  vertical: number;
  horizontal: number;
}

const PIXEL_SPACING = 'x00280030';
const IMAGER_PIXEL_SPACING = 'x00181164';
const NOMINAL_SCANNED_PIXEL_SPACING = 'x00182010';
const PIXEL_ASPECT_RATIO = 'x00280034';

function readPair(ds: DataSet | undefined, tag: string): PixelAspect | undefined {
  const element = ds?.elements[tag];
  if (!ds || !element || element.length <= 0 || element.dataOffset + element.length > ds.byteArray.length) {
    return undefined;
  }
  const text = new TextDecoder('latin1').decode(
    ds.byteArray.subarray(element.dataOffset, element.dataOffset + element.length),
  );
  const [first, second] = text.split('\\').map((v) => Math.abs(Number.parseFloat(v)));
  if (first === undefined || !Number.isFinite(first) || first === 0) return undefined;
  const other = second !== undefined && Number.isFinite(second) && second > 0 ? second : first;
  return { vertical: first, horizontal: other };
}

/** Where the pixel shape comes from, in DCMTK's order: Pixel Spacing (top level, then the Pixel Measures of
 * enhanced objects: the frame's own, then the shared one), Imager Pixel Spacing, Nominal Scanned Pixel Spacing,
 * then Pixel Aspect Ratio. Undefined means square pixels. Ratios beyond 16:1 are taken for garbage and ignored. */
export function readPixelAspect(instance: DicomInstance): PixelAspect | undefined {
  const ds = instance.dataSet;
  const measures = functionalGroupItems(
    functionalGroupsOf(ds, instance.frameIndex),
    TAG.PixelMeasuresSequence,
  );
  const aspect =
    readPair(ds, PIXEL_SPACING) ??
    measures.reduce<PixelAspect | undefined>(
      (found, item) => found ?? readPair(item, PIXEL_SPACING),
      undefined,
    ) ??
    readPair(ds, IMAGER_PIXEL_SPACING) ??
    readPair(ds, NOMINAL_SCANNED_PIXEL_SPACING) ??
    readPair(ds, PIXEL_ASPECT_RATIO);
  if (!aspect) return undefined;
  const ratio = aspect.vertical / aspect.horizontal;
  if (ratio > 16 || ratio < 1 / 16) return undefined;
  return aspect;
}
