/**
 * One compressed frame → a Frame, through the maintained codec for its kind. Everything here takes and returns
 * plain data (no DicomInstance), so the same function runs on the calling thread and in a decode worker.
 */
import { AppError, isAppError } from '../../errors.js';
import {
  type DecodedSamples,
  type Frame,
  frameFromDecodedSamples,
  type PixelDescription,
} from '../../formats/dicom/pixel-data.js';
import { type J2kMainHeader, readJ2kMainHeader } from './j2k-header.js';
import { readJpegFrameHeader } from './jpeg-frame-header.js';
import {
  createLosslessJpegDecoder,
  type HtJ2kDecoder,
  type J2kDecoder,
  type LoadedCodec,
  loadCharls,
  loadDcmjsCodecs,
  loadOpenJpeg,
  loadOpenJph,
} from './load-codecs.js';

/** 'jpeg' covers the JPEG processes sharp cannot decode: 12-bit DCT and lossless. */
export type CompressedCodec = 'jpeg' | 'jpeg-ls' | 'jpeg-2000' | 'htj2k';

export interface CompressedFrameJob {
  codec: CompressedCodec;
  /** The frame's compressed bytes, fragments joined. */
  bytes: Uint8Array;
  pixel: PixelDescription;
  /** Zero-based; for messages. */
  frameIndex: number;
  /** The longest side the caller will show. JPEG 2000 and HTJ2K frames are then decoded only to the
   * resolution level that still covers it, which for a thumbnail of a large image skips most of the work. */
  maxSize?: number;
}

const CODEC_NAMES: Record<CompressedCodec, string> = {
  jpeg: 'JPEG',
  'jpeg-ls': 'JPEG-LS',
  'jpeg-2000': 'JPEG 2000',
  htj2k: 'HTJ2K',
};

export async function decodeCompressedFrame(job: CompressedFrameJob): Promise<Frame> {
  try {
    const samples = await decodeSamples(job);
    return frameFromDecodedSamples(samples, job.pixel);
  } catch (err) {
    if (isAppError(err)) throw err;
    throw new AppError(
      'CORRUPT_FILE',
      `${CODEC_NAMES[job.codec]} frame ${job.frameIndex + 1} of ${job.pixel.numberOfFrames} cannot be decoded: ${describe(err)}`,
      { retryable: false, cause: err, details: { frameIndex: job.frameIndex } },
    );
  }
}

function decodeSamples(job: CompressedFrameJob): Promise<DecodedSamples> {
  switch (job.codec) {
    case 'jpeg':
      return decodeJpeg(job);
    case 'jpeg-ls':
      return decodeJpegLs(job);
    case 'jpeg-2000':
      return decodeJpeg2000(job);
    case 'htj2k':
      return decodeHtj2k(job);
  }
}

/** Emscripten throws numbers (C++ exception pointers) or strings as well as Errors. */
function describe(err: unknown): string {
  if (err instanceof Error) return err.message;
  // A C++ exception thrown through WebAssembly arrives as a bare pointer, without its message.
  if (typeof err === 'number') return 'the decoder rejected the codestream';
  return String(err);
}

function bytesPerSampleFor(length: number, pixelCount: number, components: number): 1 | 2 | 4 {
  if (pixelCount === 0 || components === 0) throw new Error('the decoder produced no image');
  const width = length / (pixelCount * components);
  if (width === 1 || width === 2 || width === 4) return width;
  throw new Error(`the codec wrote ${length} bytes for ${pixelCount} pixels of ${components} samples`);
}

/** What a JPEG 2000, HTJ2K or JPEG-LS decoder hands back: JPEG 2000's reversible and irreversible component
 * transforms are undone (RGB), and subsampled YCbCr comes back at full resolution (YBR_FULL). */
function afterComponentTransform(photometricInterpretation: string): string {
  if (photometricInterpretation === 'YBR_RCT' || photometricInterpretation === 'YBR_ICT') return 'RGB';
  if (photometricInterpretation === 'YBR_FULL_422') return 'YBR_FULL';
  return photometricInterpretation;
}

/** Runs a WASM decoder and copies its output out of the WebAssembly heap, which the next decode reuses. */
async function withWasmDecoder<D extends { getEncodedBuffer(n: number): Uint8Array; delete(): void }>(
  load: () => Promise<LoadedCodec<D>>,
  bytes: Uint8Array,
  run: (decoder: D) => DecodedSamples,
): Promise<DecodedSamples> {
  const codec = await load();
  codec.messages.length = 0;
  const decoder = codec.createDecoder();
  try {
    decoder.getEncodedBuffer(bytes.length).set(bytes);
    return run(decoder);
  } catch (err) {
    const said = codec.messages.filter((m) => /error|warn/i.test(m)).slice(-3);
    throw said.length ? new Error(`${describe(err)} (${said.join('; ')})`, { cause: err }) : err;
  } finally {
    decoder.delete();
  }
}

/** Output pixels each decoded pixel side must cover at least: 4 source pixels per output pixel on each axis. */
const KEPT_RESOLUTION = 4;

/** The number of halvings that keep the longest side at KEPT_RESOLUTION × maxSize or more. A resolution level is
 * the wavelet's low-pass image, not an average of the pixels it replaces: it keeps detail (and aliasing) an area
 * average removes. Keeping twice the output size was not enough for textured images: lossless J2K and HTJ2K
 * transcodes of corpus files (GDCM's encoder) rendered at 0.977–0.987 correlation with DCMTK's render of the same
 * pixels, against 0.999–1.000 decoded in full. Four times the output size, then the area average
 * (resample-area.ts), put every one of them at ≥ 0.999 except a 4664-pixel mammogram at 0.990 (0.992 in full). */
function reductionLevel(columns: number, rows: number, maxSize: number | undefined, limit: number): number {
  if (!maxSize || maxSize <= 0) return 0;
  let level = 0;
  let longest = Math.max(columns, rows);
  while (level < limit && Math.ceil(longest / 2) >= KEPT_RESOLUTION * maxSize) {
    longest = Math.ceil(longest / 2);
    level++;
  }
  return level;
}

/** Whether the image starts off the reference grid's origin. Both codec builds size a resolution level by
 * halving Columns and Rows, but a level of an image at (x0, y0) is ⌈(x0 + w) / 2ʳ⌉ − ⌈x0 / 2ʳ⌉ wide: OpenJPEG's
 * build then reads its rows with the wrong stride, and OpenJPH's pulls rows that are not there and never
 * returns. Such frames are decoded in full. */
function startsOffOrigin(header: J2kMainHeader | undefined): boolean {
  return header !== undefined && (header.imageOffset.x !== 0 || header.imageOffset.y !== 0);
}

/**
 * Decodes a JPEG 2000 codestream with OpenJPEG at 1/2^`wanted` of its size where it can, in full otherwise, and
 * returns the level it decoded at. The build's own level count (readHeader, getNumDecompositions) stays 0, and
 * asked for more halvings than the codestream has it does not throw: it prints OpenJPEG's error and leaves an
 * empty image. So the levels come from the main header, and an empty result (a tile with fewer) decodes in full.
 * DICOM frames and slide tiles both decode through here.
 */
export function decodeOpenJpegReduced(decoder: J2kDecoder, bytes: Uint8Array, wanted: number): number {
  const header = readJ2kMainHeader(bytes);
  const level = header && !startsOffOrigin(header) ? Math.min(wanted, header.decompositions) : 0;
  if (level > 0) {
    try {
      decoder.decodeSubResolution(level, 0);
      if (decoder.getDecodedBuffer().length > 0) return level;
    } catch {
      // Decoded in full below.
    }
  }
  decoder.decode();
  return 0;
}

function decodeJpeg2000(job: CompressedFrameJob): Promise<DecodedSamples> {
  return withWasmDecoder(loadOpenJpeg, job.bytes, (decoder) => {
    const { columns, rows } = job.pixel;
    const level = decodeOpenJpegReduced(
      decoder,
      job.bytes,
      reductionLevel(columns, rows, job.maxSize, Number.POSITIVE_INFINITY),
    );
    return j2kSamples(job, decoder, decoder.calculateSizeAtDecompositionLevel(level));
  });
}

function decodeHtj2k(job: CompressedFrameJob): Promise<DecodedSamples> {
  const header = readJ2kMainHeader(job.bytes);
  // Without the colour transform, the OpenJPH build (@cornerstonejs/codec-openjph 2.4) has OpenJPH hand back
  // lines component by component (all of R, then G, then B) but writes each line it pulls into the next
  // sample of an interleaved row, scrambling the image. OpenJPEG reads Part 15 codestreams as well.
  if (header && header.components >= 3 && !header.colourTransform) return decodeJpeg2000(job);
  return withWasmDecoder(loadOpenJph, job.bytes, (decoder) => {
    decoder.readHeader();
    const { columns, rows } = job.pixel;
    const level = startsOffOrigin(header)
      ? 0
      : reductionLevel(columns, rows, job.maxSize, decoder.getNumDecompositions());
    if (level > 0) decoder.decodeSubResolution(level);
    else decoder.decode();
    const size = decoder.calculateSizeAtDecompositionLevel(level);
    return j2kSamples(job, decoder, size);
  });
}

/** A JPEG 2000 or HTJ2K decoder's output at `size` (the resolution level it decoded). */
function j2kSamples(
  job: CompressedFrameJob,
  decoder: J2kDecoder | HtJ2kDecoder,
  size: { width: number; height: number },
): DecodedSamples {
  const info = decoder.getFrameInfo();
  const decoded = decoder.getDecodedBuffer();
  const components = info.componentCount;
  const pixelCount = size.width * size.height;
  return {
    data: new Uint8Array(decoded),
    rows: size.height,
    columns: size.width,
    samplesPerPixel: components,
    bytesPerSample: bytesPerSampleFor(decoded.length, pixelCount, components),
    planar: false,
    signed: !!info.isSigned,
    precision: info.bitsPerSample,
    photometricInterpretation: afterComponentTransform(job.pixel.photometricInterpretation),
  };
}

function decodeJpegLs(job: CompressedFrameJob): Promise<DecodedSamples> {
  return withWasmDecoder(loadCharls, job.bytes, (decoder) => {
    decoder.decode();
    const info = decoder.getFrameInfo();
    const decoded = decoder.getDecodedBuffer();
    const pixelCount = info.width * info.height;
    return {
      data: new Uint8Array(decoded),
      rows: info.height,
      columns: info.width,
      samplesPerPixel: info.componentCount,
      bytesPerSample: bytesPerSampleFor(decoded.length, pixelCount, info.componentCount),
      // CharLS writes interleave mode "none" (0) plane by plane; line and sample interleaving pixel by pixel.
      planar: info.componentCount > 1 && decoder.getInterleaveMode() === 0,
      // JPEG-LS has no notion of sign: signed data is stored as its bit pattern.
      signed: false,
      precision: info.bitsPerSample,
      photometricInterpretation: afterComponentTransform(job.pixel.photometricInterpretation),
    };
  });
}

async function decodeJpeg(job: CompressedFrameJob): Promise<DecodedSamples> {
  const header = readJpegFrameHeader(job.bytes);
  if (!header) throw new Error('no JPEG start-of-frame header');
  // DCMTK's IJG build decodes lossless JPEG (process 14) 2–4× faster than the JS decoder and bit-identically
  // on the corpus; the JS decoder stays as the fallback for a stream IJG refuses.
  if (header.lossless) {
    try {
      return await decodeJpegWithIjg(job, header);
    } catch {
      return decodeLosslessJpeg(job, header.precision);
    }
  }
  return decodeJpegWithIjg(job, header);
}

async function decodeJpegWithIjg(
  job: CompressedFrameJob,
  header: NonNullable<ReturnType<typeof readJpegFrameHeader>>,
): Promise<DecodedSamples> {
  const { Context, NativeCodecs } = await loadDcmjsCodecs();
  const { pixel } = job;
  const colour = header.components === 3;
  const context = new Context({
    width: header.columns,
    height: header.rows,
    bitsAllocated: header.precision > 8 ? 16 : 8,
    bitsStored: header.precision,
    samplesPerPixel: header.components,
    pixelRepresentation: 0,
    planarConfiguration: 0,
    photometricInterpretation: pixel.photometricInterpretation,
    encodedBuffer: job.bytes,
  });
  // As DCMTK's default (+cp): YCbCr is converted when the photometric interpretation says so.
  const converts = colour && pixel.photometricInterpretation.startsWith('YBR');
  const decoded = NativeCodecs.decodeJpeg(context, { convertColorspaceToRgb: converts }).getDecodedBuffer();
  if (!decoded) throw new Error('the IJG decoder returned no pixels');
  const pixelCount = header.columns * header.rows;
  return {
    data: new Uint8Array(decoded),
    rows: header.rows,
    columns: header.columns,
    samplesPerPixel: header.components,
    bytesPerSample: bytesPerSampleFor(decoded.length, pixelCount, header.components),
    planar: false,
    signed: false,
    precision: header.precision,
    photometricInterpretation: converts ? 'RGB' : pixel.photometricInterpretation,
  };
}

function decodeLosslessJpeg(job: CompressedFrameJob, precision: number): DecodedSamples {
  const decoder = createLosslessJpegDecoder();
  // The decoder reads the ArrayBuffer from the offset it is given, so hand it one that holds just this frame
  // (a copy: Buffer#slice would only make another view of the whole file).
  const own = new Uint8Array(job.bytes);
  const decoded = decoder.decode(own.buffer, 0, own.length);
  const data = new Uint8Array(decoded.buffer, decoded.byteOffset, decoded.byteLength);
  const components = decoder.numComp || 1;
  const pixelCount = decoder.xDim * decoder.yDim;
  return {
    data,
    rows: decoder.yDim,
    columns: decoder.xDim,
    samplesPerPixel: components,
    bytesPerSample: bytesPerSampleFor(data.length, pixelCount, components),
    planar: false,
    signed: false,
    precision: decoder.precision ?? precision,
    photometricInterpretation: job.pixel.photometricInterpretation,
  };
}
