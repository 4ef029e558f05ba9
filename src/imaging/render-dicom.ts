/**
 * One DICOM frame → a display image: decode → modality LUT (rescale) → VOI (window, VOI LUT, or a percentile
 * window) → MONOCHROME1 inversion → 8 bits → resize to the pixel aspect → encode. Decoders are registered per
 * transfer syntax UID. Native, RLE and deflated frames are decoded by the pure formats layer; compressed ones by
 * maintained codecs (sharp's libjpeg-turbo, OpenJPEG, OpenJPH, CharLS, DCMTK's IJG, jpeg-lossless-decoder-js),
 * large frames on worker threads so the event loop keeps running.
 */
import sharp, { type OutputInfo } from 'sharp';
import { AppError, isAppError } from '../errors.js';
import { asRgbJpeg } from '../formats/dicom/as-rgb-jpeg.js';
import {
  type LookupTable,
  lookUp,
  readModalityLut,
  readVoiLut,
  readVoiLutFunction,
  type VoiLutFunction,
} from '../formats/dicom/lookup-table.js';
import { overlayCoverage, overlayExtent, readOverlayPlanes } from '../formats/dicom/overlay.js';
import { readPaletteColorLut } from '../formats/dicom/palette.js';
import { type DicomInstance, instanceForFrame } from '../formats/dicom/parse-dicom.js';
import {
  describePixels,
  type Frame,
  frameFromDecodedSamples,
  getEncapsulatedFrame,
  getFrame,
  getUnmaskedFrameWords,
  type PixelAspect,
  type PixelDescription,
  readPixelAspect,
  roundToByte,
  ybrFullToRgb,
  ybrPartialToRgb,
} from '../formats/dicom/pixel-data.js';
import { TAG } from '../formats/dicom/tags.js';
import { describeTransferSyntax, type PixelCodec } from '../formats/dicom/transfer-syntax.js';
import { checkCodestreamFits } from './codecs/codestream-size.js';
import {
  type CompressedCodec,
  type CompressedFrameJob,
  decodeCompressedFrame,
} from './codecs/decode-compressed-frame.js';
import { readJpegFrameHeader } from './codecs/jpeg-frame-header.js';
import { decodeInPool, resampleInPool } from './decode-pool.js';
import { type EncodedImage, encodeImage, type ImageFormat } from './encode.js';
import { type ResampleOptions, resampleArea, resampleStored } from './resample-area.js';

export interface VoiWindow {
  center: number;
  width: number;
}

export interface RenderDicomOptions {
  /** Zero-based; defaults to the middle frame, the most representative of a multi-frame series. */
  frame?: number;
  /** Longest side in pixels (default 256); never enlarged, except that non-square pixels are stretched. */
  size?: number;
  format?: ImageFormat;
  /** Overrides the file's window; in modality units (after rescale), as WindowCenter/Width are. */
  window?: VoiWindow;
  /** Draw the overlay planes (60xx) over grayscale frames; default true, as DCMTK and most viewers show them. */
  overlays?: boolean;
}

export interface DecodeFrameOptions {
  /** The longest side the frame will be shown at. A decoder may then return a smaller frame (a lower JPEG 2000
   * resolution level) that still covers it. */
  maxSize?: number;
}

export type FrameDecoder = (
  instance: DicomInstance,
  frameIndex: number,
  options: DecodeFrameOptions,
) => Promise<Frame>;

const frameDecoders = new Map<string, FrameDecoder>();

/** Adds or replaces the decoder for one transfer syntax. */
export function registerFrameDecoder(transferSyntaxUid: string, decoder: FrameDecoder): void {
  frameDecoders.set(transferSyntaxUid, decoder);
}

const decodeInPureLayer: FrameDecoder = async (instance, frameIndex) => getFrame(instance, frameIndex);

/** Samples per frame above which a codec runs on a worker thread. Below, posting the frame to a worker would
 * cost more than the decode blocks (a 512² JPEG-LS CT decodes in ~5 ms; JPEG 2000 is several times slower). */
const IN_THREAD_SAMPLES: Record<CompressedCodec, number> = {
  jpeg: 512 * 1024,
  'jpeg-ls': 1024 * 1024,
  'jpeg-2000': 128 * 128,
  htj2k: 256 * 256,
};

function runCompressed(job: CompressedFrameJob): Promise<Frame> {
  const samples = job.pixel.rows * job.pixel.columns * job.pixel.samplesPerPixel;
  return samples > IN_THREAD_SAMPLES[job.codec] ? decodeInPool(job) : decodeCompressedFrame(job);
}

/**
 * Decoders size their output from the codestream's header, not from Rows and Columns: four bytes of a SOF header
 * can claim 65535×65535 pixels, and the decoder then allocates gigabytes and spends seconds filling them on the
 * calling thread (whose choice was made from Rows and Columns). A frame bigger than the instance is refused.
 */
function checkCodestreamSize(
  codec: CompressedCodec,
  bytes: Uint8Array,
  pixel: PixelDescription,
  frameIndex: number,
) {
  checkCodestreamFits(
    codec,
    bytes,
    pixel,
    (declared, name) =>
      `${name} frame ${frameIndex + 1} of ${pixel.numberOfFrames} declares ${declared.columns}×${declared.rows} pixels in its header, more than Columns (0028,0011) × Rows (0028,0010) = ${pixel.columns}×${pixel.rows}`,
    { frameIndex },
  );
}

function compressedDecoder(codec: CompressedCodec): FrameDecoder {
  return async (instance, frameIndex, options) => {
    const pixel = describePixels(instance);
    const bytes = getEncapsulatedFrame(instance, frameIndex);
    checkCodestreamSize(codec, bytes, pixel, frameIndex);
    return runCompressed({ codec, bytes, pixel, frameIndex, maxSize: options.maxSize });
  };
}

/** The JPEG processes share one entry: 8-bit DCT goes to sharp (libjpeg-turbo, off the event loop on libuv's
 * pool), 12-bit DCT and lossless to the codecs, chosen by the frame header rather than the transfer syntax. */
const decodeJpegFamily: FrameDecoder = async (instance, frameIndex, options) => {
  const pixel = describePixels(instance);
  const bytes = getEncapsulatedFrame(instance, frameIndex);
  const header = readJpegFrameHeader(bytes);
  if (!header) {
    throw new AppError(
      'CORRUPT_FILE',
      `JPEG frame ${frameIndex + 1} of ${pixel.numberOfFrames} has no start-of-frame header`,
      { retryable: false, details: { frameIndex } },
    );
  }
  checkCodestreamSize('jpeg', bytes, pixel, frameIndex);
  // ISO 10918-1 gives DCT processes 8- or 12-bit samples only. IJG hands back a black frame for anything else
  // (GDCM writes 16-bit DCT when asked for lossy JPEG of 16-bit data; DCMTK refuses it too).
  if (!header.lossless && header.precision !== 8 && header.precision !== 12) {
    throw new AppError(
      'CORRUPT_FILE',
      `JPEG frame ${frameIndex + 1} of ${pixel.numberOfFrames} is a DCT (lossy) JPEG with ${header.precision}-bit samples; the standard allows 8 or 12`,
      { retryable: false, details: { frameIndex, precision: header.precision } },
    );
  }
  if (!header.lossless && header.precision === 8) return decodeWithSharp(bytes, pixel, frameIndex);
  return runCompressed({ codec: 'jpeg', bytes, pixel, frameIndex, maxSize: options.maxSize });
};

/** sharp applies the JPEG colour transform, so colour frames come back as RGB whatever PhotometricInterpretation
 * says; a frame declared RGB has its components renamed so that libjpeg does not convert it. */
async function decodeWithSharp(stored: Uint8Array, description: PixelDescription, frameIndex: number) {
  const jpeg =
    description.photometricInterpretation === 'RGB' && description.samplesPerPixel === 3
      ? asRgbJpeg(stored)
      : stored;
  let decoded: { data: Buffer; info: OutputInfo };
  try {
    // sharp widens one band to sRGB unless told otherwise; the pixel module says how many samples there are.
    decoded = await sharp(jpeg, { failOn: 'error' })
      .toColourspace(description.samplesPerPixel === 1 ? 'b-w' : 'srgb')
      .raw()
      .toBuffer({ resolveWithObject: true });
  } catch (err) {
    throw new AppError(
      'CORRUPT_FILE',
      `JPEG frame ${frameIndex + 1} of ${description.numberOfFrames} cannot be decoded: ${err instanceof Error ? err.message : String(err)}`,
      { retryable: false, cause: err, details: { frameIndex } },
    );
  }
  const { width, height, channels } = decoded.info;
  if (channels !== 1 && channels !== 3) {
    throw new AppError('UNSUPPORTED_FORMAT', `JPEG frame with ${channels} components is not supported`, {
      retryable: false,
    });
  }
  // Through the same reconciliation as the codecs' output: GDCM, among others, writes signed 8-bit data as its
  // two's complement bytes, which PixelRepresentation 1 turns back into negative values (as DCMTK reads them).
  return frameFromDecodedSamples(
    {
      data: new Uint8Array(decoded.data.buffer, decoded.data.byteOffset, width * height * channels),
      rows: height,
      columns: width,
      samplesPerPixel: channels,
      bytesPerSample: 1,
      planar: false,
      signed: false,
      precision: 8,
      photometricInterpretation: channels === 3 ? 'RGB' : description.photometricInterpretation,
    },
    description,
  );
}

/** Private transfer syntaxes: native pixel data is read as such; encapsulated frames are recognised by their
 * first bytes (JPEG SOI, JPEG 2000 SOC or the JP2 signature box). */
const decodeUnknownSyntax: FrameDecoder = async (instance, frameIndex, options) => {
  if (!instance.dataSet.elements[TAG.PixelData]?.encapsulatedPixelData) return getFrame(instance, frameIndex);
  const bytes = getEncapsulatedFrame(instance, frameIndex);
  if (bytes[0] === 0xff && bytes[1] === 0xd8) return decodeJpegFamily(instance, frameIndex, options);
  const j2kCodestream = bytes[0] === 0xff && bytes[1] === 0x4f && bytes[2] === 0xff && bytes[3] === 0x51;
  const jp2 = bytes[4] === 0x6a && bytes[5] === 0x50 && bytes[6] === 0x20 && bytes[7] === 0x20;
  if (j2kCodestream || jp2) return compressedDecoder('jpeg-2000')(instance, frameIndex, options);
  throw new AppError(
    'UNSUPPORTED_FORMAT',
    `transfer syntax ${instance.transferSyntaxUid} is unknown and its frames are neither JPEG nor JPEG 2000`,
    { retryable: false, details: { transferSyntaxUid: instance.transferSyntaxUid } },
  );
};

const DECODER_FOR_CODEC: Partial<Record<PixelCodec, FrameDecoder>> = {
  native: decodeInPureLayer,
  rle: decodeInPureLayer,
  'deflated-frame': decodeInPureLayer,
  'jpeg-baseline': decodeJpegFamily,
  'jpeg-extended': decodeJpegFamily,
  'jpeg-lossless': decodeJpegFamily,
  'jpeg-ls': compressedDecoder('jpeg-ls'),
  'jpeg-2000': compressedDecoder('jpeg-2000'),
  htj2k: compressedDecoder('htj2k'),
  unknown: decodeUnknownSyntax,
};

function decoderFor(transferSyntaxUid: string): FrameDecoder | undefined {
  const ts = describeTransferSyntax(transferSyntaxUid);
  return frameDecoders.get(ts.uid) ?? DECODER_FOR_CODEC[ts.codec];
}

/** Whether frames of this transfer syntax can be decoded at all (a given file may still be corrupt). Only the
 * video syntaxes cannot. */
export function canDecodeTransferSyntax(transferSyntaxUid: string): boolean {
  return decoderFor(transferSyntaxUid) !== undefined;
}

/** Decodes one frame with the decoder registered for the instance's transfer syntax. */
export async function decodeDicomFrame(
  instance: DicomInstance,
  frameIndex: number,
  options: DecodeFrameOptions = {},
): Promise<Frame> {
  const ts = describeTransferSyntax(instance.transferSyntaxUid);
  const decoder = decoderFor(ts.uid);
  if (!decoder) {
    throw new AppError('UNSUPPORTED_FORMAT', `transfer syntax ${ts.uid} (${ts.name}) cannot be decoded`, {
      retryable: false,
      details: { transferSyntaxUid: ts.uid },
    });
  }
  // Float pixel data is never encapsulated, whatever the transfer syntax.
  if (describePixels(instance).sampleFormat === 'float') return getFrame(instance, frameIndex);
  return decoder(instance, frameIndex, options);
}

export async function renderDicomFrame(
  input: DicomInstance,
  opts: RenderDicomOptions = {},
): Promise<EncodedImage> {
  const description = describePixels(input);
  const frameIndex = opts.frame ?? Math.floor(description.numberOfFrames / 2);
  const size = opts.size ?? 256;
  const frame = await decodeDicomFrame(input, frameIndex, { maxSize: size });
  // Enhanced objects may give this frame its own rescale, window and pixel spacing.
  const instance = instanceForFrame(input, frameIndex);
  const target = displaySize(description.rows, description.columns, readPixelAspect(instance), size);
  const display = await displayPixelsForRender(frame, instance, opts.window, target);
  if (display.channels === 1 && opts.overlays !== false) {
    drawOverlays(display.data, target, input, frameIndex, description);
  }
  try {
    return await encodeImage(
      { data: display.data, width: target.width, height: target.height, channels: display.channels },
      { format: opts.format ?? 'png' },
    );
  } catch (err) {
    if (isAppError(err)) throw err;
    throw new AppError('INTERNAL', `encoding the rendered frame failed: ${(err as Error).message}`, {
      cause: err,
    });
  }
}

export interface DisplaySize {
  width: number;
  height: number;
}

/** The output size: columns × rows stretched to the pixel aspect (the coarser axis grows, as viewers do), the
 * longest side shrunk to `size`, and the other side derived from it and rounded down, as DCMTK's scaling does. */
export function displaySize(
  rows: number,
  columns: number,
  aspect: PixelAspect | undefined,
  size: number,
): DisplaySize {
  const vertical = aspect?.vertical ?? 1;
  const horizontal = aspect?.horizontal ?? 1;
  const naturalWidth = horizontal > vertical ? (columns * horizontal) / vertical : columns;
  const naturalHeight = vertical > horizontal ? (rows * vertical) / horizontal : rows;
  const ratio = naturalHeight / naturalWidth;
  const down = (v: number) => Math.max(1, Math.floor(v + 1e-6));
  if (ratio <= 1) {
    const width = Math.min(size, down(naturalWidth));
    return { width, height: down(width * ratio) };
  }
  const height = Math.min(size, down(naturalHeight));
  return { width: down(height / ratio), height };
}

/**
 * Overlay planes over a grayscale display, as DCMTK shows them by default (dcmj2pnm without -O; checked on each
 * case by dicom-overlay.test.ts): a graphics plane turns its pixels white, after any inversion; a region of
 * interest keeps its pixels and dims the rest of its rectangle to 1/16. Colour images get none, as in DCMTK.
 * At another size the planes are scaled as DCMTK scales them, one bit deep (overlayCoverage).
 */
function drawOverlays(
  display: Uint8Array,
  size: DisplaySize,
  instance: DicomInstance,
  frameIndex: number,
  image: Pick<PixelDescription, 'rows' | 'columns'>,
): void {
  const planes = readOverlayPlanes(instance);
  if (planes.length === 0) return;
  const { rows, columns } = image;
  const extent = overlayExtent(planes);
  let words: ArrayLike<number> | undefined;
  for (const plane of planes) {
    // Embedded planes need the pixel words before masking; compressed frames cannot hold them.
    if (!plane.data) words ??= getUnmaskedFrameWords(instance, frameIndex);
    if (!plane.data && !words) continue;
    const coverage = overlayCoverage(
      plane,
      frameIndex,
      rows,
      columns,
      size.width,
      size.height,
      words,
      extent,
    );
    if (!coverage) continue;
    for (let i = 0; i < display.length; i++) {
      if (coverage[i] === 0) continue;
      display[i] = plane.type === 'G' ? 255 : display[i]! >> 4;
    }
  }
}

interface DisplayPixels {
  data: Uint8Array;
  channels: 1 | 3;
}

/** Frame samples → 8-bit display samples, at `size` when given (else at the frame's own size). Exported for
 * tests and for callers that encode themselves. */
export function toDisplayPixels(
  frame: Frame,
  instance: DicomInstance,
  window?: VoiWindow,
  size?: DisplaySize,
): DisplayPixels {
  const target = size ?? { width: frame.columns, height: frame.rows };
  const pi = frame.photometricInterpretation;
  if (frame.samplesPerPixel === 1) {
    if (pi === 'MONOCHROME1' || pi === 'MONOCHROME2') {
      return {
        data: renderGrayscale(frame, instance, window, displayInverted(instance), target),
        channels: 1,
      };
    }
    if (pi === 'PALETTE COLOR')
      return { data: resizeColour(renderPalette(frame, instance), frame, target), channels: 3 };
  } else if (frame.samplesPerPixel === 3) {
    if (pi === 'RGB') return { data: resizeColour(colourBytes(frame), frame, target), channels: 3 };
    if (pi === 'YBR_FULL')
      return { data: resizeColour(ybrFullToRgb(colourBytes(frame)), frame, target), channels: 3 };
    if (pi === 'YBR_PARTIAL')
      return { data: resizeColour(ybrPartialToRgb(colourBytes(frame)), frame, target), channels: 3 };
  }
  throw new AppError(
    'UNSUPPORTED_FORMAT',
    `photometric interpretation ${pi} with ${frame.samplesPerPixel} samples per pixel cannot be rendered`,
    { retryable: false },
  );
}

/**
 * Whether the lowest value shows white. The Presentation LUT Shape (2050,0020) decides when the file has one:
 * INVERSE shows even MONOCHROME2 negative (X-ray angiography often asks for this) and IDENTITY shows MONOCHROME1
 * as stored; otherwise MONOCHROME1 inverts. This is DCMTK's reading too (dcmj2pnm, checked on both cases).
 */
export function displayInverted(instance: DicomInstance): boolean {
  if (instance.presentationLutShape === 'INVERSE') return true;
  if (instance.presentationLutShape === 'IDENTITY') return false;
  return instance.photometricInterpretation === 'MONOCHROME1';
}

function sameSize(frame: Frame, size: DisplaySize): boolean {
  return frame.columns === size.width && frame.rows === size.height;
}

function resizeColour(rgb: Uint8Array, frame: Frame, size: DisplaySize): Uint8Array {
  if (sameSize(frame, size)) return rgb;
  const width = frame.columns;
  // 8-bit samples: DCMTK's pbmplus algorithm, rounding after each pass (see resample-area.ts).
  const resampled = resampleArea(
    width,
    frame.rows,
    3,
    size.width,
    size.height,
    (y, row) => {
      const offset = y * width * 3;
      for (let i = 0; i < row.length; i++) row[i] = rgb[offset + i]!;
    },
    { method: 'pbmplus', round: true },
  );
  const out = new Uint8Array(resampled.length);
  for (let i = 0; i < out.length; i++) out[i] = roundToByte(resampled[i]!);
  return out;
}

// ---- VOI -------------------------------------------------------------------------------------------------

/** The VOI transformation a grayscale frame is shown with. Windows are in modality units. */
export type VoiChoice =
  | {
      kind: 'window';
      center: number;
      width: number;
      function: VoiLutFunction;
      source: 'request' | 'file' | 'percentile';
    }
  | { kind: 'lut'; table: LookupTable };

function isFloat(frame: Frame): boolean {
  return frame.pixels instanceof Float32Array || frame.pixels instanceof Float64Array;
}

/** LINEAR's half-pixel offsets assume integer values; float pixel data (parametric maps, whose windows are
 * typically 0.5/1.0) is windowed exactly instead. */
function effectiveFunction(fn: VoiLutFunction, frame: Frame): VoiLutFunction {
  return fn === 'LINEAR' && isFloat(frame) ? 'LINEAR_EXACT' : fn;
}

function usableWindow(w: VoiWindow | undefined, fn: VoiLutFunction): VoiWindow | undefined {
  if (!w || !Number.isFinite(w.center) || !Number.isFinite(w.width)) return undefined;
  if (fn === 'LINEAR' ? w.width < 1 : w.width <= 0) return undefined;
  return w;
}

/** Chooses the VOI as PS3.4 N.2.1.1 orders it: a requested window, else the file's first window, else its first
 * VOI LUT, else a robust 1st–99th percentile window of the frame's modality values. Exported so that tests can
 * give another renderer the same window. */
export function resolveVoi(frame: Frame, instance: DicomInstance, window?: VoiWindow): VoiChoice {
  const fn = effectiveFunction(readVoiLutFunction(instance), frame);
  const requested = usableWindow(window, fn);
  if (requested) return { kind: 'window', ...requested, function: fn, source: 'request' };
  const fileWindow =
    instance.windowCenter !== undefined && instance.windowWidth !== undefined
      ? usableWindow({ center: instance.windowCenter, width: instance.windowWidth }, fn)
      : undefined;
  if (fileWindow) return { kind: 'window', ...fileWindow, function: fn, source: 'file' };
  const table = readVoiLut(instance);
  if (table) return { kind: 'lut', table };
  const { lower, upper } = percentileInterval(frame, modalityFunction(instance), paddingRange(instance));
  const exact = isFloat(frame);
  // The window whose LINEAR (or, for floats, LINEAR_EXACT) mapping has exactly this interval.
  const width = exact ? upper - lower : upper - lower + 1;
  const center = exact ? (upper + lower) / 2 : lower + 0.5 + (width - 1) / 2;
  return { kind: 'window', center, width, function: exact ? 'LINEAR_EXACT' : 'LINEAR', source: 'percentile' };
}

type ValueFunction = (value: number) => number;

/** Stored value → modality value: the Modality LUT when present, else rescale slope and intercept. */
function modalityFunction(instance: DicomInstance): ValueFunction {
  const table = readModalityLut(instance);
  if (table) return (v) => lookUp(table, v);
  const slope = instance.rescaleSlope || 1;
  const intercept = instance.rescaleIntercept ?? 0;
  if (slope === 1 && intercept === 0) return (v) => v;
  return (v) => v * slope + intercept;
}

/** Modality value → 0…255 (PS3.3 C.11.2.1.2 and C.11.2.1.3), inverted for MONOCHROME1. The fraction is cut
 * off, not rounded, as DCMTK casts it (dimoopxt.h): window 40/401 puts HU 40 at 127, as dcmj2pnm does, not 128;
 * the same for VOI LUTs and SIGMOID, checked against dcmj2pnm. */
function voiFunction(choice: VoiChoice, invert: boolean): ValueFunction {
  // Inverted before the cut, as DCMTK inverts by swapping the output range's ends (255 - 12.3 cuts to 242).
  const out = (y: number) => {
    const v = invert ? 255 - y : y;
    return v <= 0 ? 0 : v >= 255 ? 255 : v | 0;
  };
  if (choice.kind === 'lut') {
    const table = choice.table;
    const scale = 255 / (2 ** table.bitsPerEntry - 1);
    return (x) => out(lookUp(table, x) * scale);
  }
  const { center: c, width: w } = choice;
  if (choice.function === 'SIGMOID') return (x) => out(255 / (1 + Math.exp((-4 * (x - c)) / w)));
  if (choice.function === 'LINEAR_EXACT') {
    // Rounded here: dcmj2pnm puts 25/100 of the way at 64 and 75/100 at 193, nearer rounding than the cut.
    const lower = c - w / 2;
    return (x) => {
      const level = cut(((x - lower) / w) * 255 + 0.5);
      return invert ? 255 - level : level;
    };
  }
  const { lower, upper, low, high, offset, gradient } = linearWindow(c, w, invert);
  return (x) => (x <= lower ? low : x > upper ? high : cut(offset + x * gradient));
}

/** A level of 0…255 with its fraction cut off, as DCMTK casts it. */
function cut(y: number): number {
  return y <= 0 ? 0 : y >= 255 ? 255 : y | 0;
}

/**
 * PS3.3's LINEAR window as DCMTK evaluates it (dimoopxt.h): from `low` to `high` (255 to 0 when inverted),
 * offset + x × gradient in that order, so that the level cut from it is DCMTK's to the last bit (255 − 1e-13
 * cuts to 254, where the textbook order gives 255; an inverted 12.3 gives 242, not 255 − 12).
 */
function linearWindow(c: number, w: number, invert: boolean) {
  const low = invert ? 255 : 0;
  const high = invert ? 0 : 255;
  return {
    lower: c - 0.5 - (w - 1) / 2,
    upper: c - 0.5 + (w - 1) / 2,
    low,
    high,
    offset: high - ((c - 0.5) / (w - 1) + 0.5) * (high - low),
    gradient: (high - low) / (w - 1),
  };
}

interface GrayscalePlan {
  /** Modality value → display value. */
  display: ValueFunction;
  modality: ValueFunction;
  /** What `display` does, for the loops that inline a linear window. */
  voi: VoiChoice;
  invert: boolean;
  /** The file's Modality LUT applies (rather than a rescale, which is linear and so can wait until after the
   * averaging). */
  modalityLut: boolean;
  rescale: { slope: number; intercept: number };
  /** How DCMTK would shrink these modality values (see dcmtkScaling). */
  scaling: ResampleOptions;
}

function planGrayscale(
  frame: Frame,
  instance: DicomInstance,
  window: VoiWindow | undefined,
  invert: boolean,
): GrayscalePlan {
  const modality = modalityFunction(instance);
  const voi = resolveVoi(frame, instance, window);
  const display = voiFunction(voi, invert);
  const rescale = { slope: instance.rescaleSlope || 1, intercept: instance.rescaleIntercept ?? 0 };
  const modalityLut = !!readModalityLut(instance);
  const integral = modalityLut || (Number.isInteger(rescale.slope) && Number.isInteger(rescale.intercept));
  const scaling = dcmtkScaling(frame, integral);
  return { display, modality, voi, invert, modalityLut, rescale, scaling };
}

/**
 * The scaling DCMTK applies to a grayscale frame's modality values (discalet.h): pbmplus for stored values of up
 * to 16 bits, the exact area for wider and float data. Whole-number modality values (a Modality LUT's entries,
 * or an integral rescale) round after each pass, as DCMTK's integer intermediate does. With the window's
 * fraction cut off as DCMTK cuts it, that drew the corpus's CTs, mammogram, radiograph and 1-bit segmentation
 * at 256 px identical to dcmj2pnm, pixel for pixel.
 */
function dcmtkScaling(frame: Frame, integralModality: boolean): ResampleOptions {
  if (isFloat(frame) || frame.bitsStored > 16) return { method: 'area' };
  return { method: 'pbmplus', round: integralModality };
}

/** Modality values over the frame's stored range, for stored values of up to 16 bits: a few thousand entries
 * cost less than the modality arithmetic per pixel. */
function modalityTable(
  frame: Frame,
  modality: ValueFunction,
): { min: number; values: Float32Array } | undefined {
  if (frame.bitsStored > 16 || isFloat(frame)) return undefined;
  const { min, size } = storedRange(frame);
  const values = new Float32Array(size);
  for (let k = 0; k < size; k++) values[k] = modality(k + min);
  return { min, values };
}

function renderGrayscale(
  frame: Frame,
  instance: DicomInstance,
  window: VoiWindow | undefined,
  invert: boolean,
  size: DisplaySize,
): Uint8Array {
  const plan = planGrayscale(frame, instance, window, invert);
  const { display, modality } = plan;
  const pixels = frame.pixels;
  if (sameSize(frame, size)) {
    const n = frame.rows * frame.columns;
    const out = new Uint8Array(n);
    const table = modalityTable(frame, modality);
    if (table) {
      const lut = new Uint8Array(table.values.length);
      for (let k = 0; k < lut.length; k++) lut[k] = display(table.values[k]!);
      for (let i = 0; i < n; i++) out[i] = lut[pixels[i]! - table.min]!;
    } else {
      for (let i = 0; i < n; i++) out[i] = display(modality(pixels[i]!));
    }
    return out;
  }
  // Resized: average modality values, then window the averages (see resample-area.ts).
  const columns = frame.columns;
  const job = {
    pixels,
    width: columns,
    height: frame.rows,
    newWidth: size.width,
    newHeight: size.height,
    ...plan.scaling,
  };
  if (!plan.modalityLut) return windowed(resampleStored({ ...job, rescale: plan.rescale }), plan);
  const table = modalityTable(frame, modality);
  const averaged = table
    ? resampleStored({ ...job, table })
    : resampleArea(
        columns,
        frame.rows,
        1,
        size.width,
        size.height,
        (y, row) => {
          const offset = y * columns;
          for (let x = 0; x < columns; x++) row[x] = modality(pixels[offset + x]!);
        },
        plan.scaling,
      );
  return windowed(averaged, plan);
}

/** Modality values → display values. The usual LINEAR window is written out in the loop: a call through the
 * VOI closures per output pixel costs several times the arithmetic. */
function windowed(averaged: Float32Array, plan: GrayscalePlan): Uint8Array {
  const out = new Uint8Array(averaged.length);
  const voi = plan.voi;
  if (voi.kind !== 'window' || voi.function !== 'LINEAR') {
    for (let i = 0; i < out.length; i++) out[i] = plan.display(averaged[i]!);
    return out;
  }
  // The same expressions as voiFunction's LINEAR branch, so that both cut the fraction alike.
  const { lower, upper, low, high, offset, gradient } = linearWindow(voi.center, voi.width, plan.invert);
  for (let i = 0; i < out.length; i++) {
    const x = averaged[i]!;
    out[i] = x <= lower ? low : x > upper ? high : cut(offset + x * gradient);
  }
  return out;
}

/** Frames above this many pixels are shrunk on a decode worker: averaging a 3064 × 4664 mammogram takes
 * ~150 ms, which the event loop should not wait for. */
const IN_THREAD_RESAMPLE_PIXELS = 2 * 1024 * 1024;

/** toDisplayPixels, with the shrinking of large grayscale frames moved off the event loop. The frame's pixels
 * may be handed to the worker: do not use the frame afterwards. */
async function displayPixelsForRender(
  frame: Frame,
  instance: DicomInstance,
  window: VoiWindow | undefined,
  size: DisplaySize,
): Promise<DisplayPixels> {
  const pi = frame.photometricInterpretation;
  const large = frame.rows * frame.columns > IN_THREAD_RESAMPLE_PIXELS;
  if (!large || sameSize(frame, size) || frame.samplesPerPixel !== 1) {
    return toDisplayPixels(frame, instance, window, size);
  }
  if (pi !== 'MONOCHROME1' && pi !== 'MONOCHROME2') return toDisplayPixels(frame, instance, window, size);
  const plan = planGrayscale(frame, instance, window, displayInverted(instance));
  const table = plan.modalityLut ? modalityTable(frame, plan.modality) : undefined;
  // A Modality LUT on wide samples has no table to send; such frames stay on this thread.
  if (plan.modalityLut && !table) return toDisplayPixels(frame, instance, window, size);
  const averaged = await resampleInPool({
    pixels: frame.pixels,
    width: frame.columns,
    height: frame.rows,
    newWidth: size.width,
    newHeight: size.height,
    ...plan.scaling,
    ...(table ? { table } : { rescale: plan.rescale }),
  });
  return { data: windowed(averaged, plan), channels: 1 };
}

const storedRanges = new WeakMap<Frame, { min: number; size: number }>();

/** The stored values a frame of up to 16 bits can hold, as the tables over them need. For frames up to 512²
 * that is the values actually present: a CT slice uses a few thousand of the 65 536 its pixel module allows,
 * and its tables are that much cheaper to fill. Larger frames take the whole declared range rather than pay for
 * a pass over millions of pixels. */
function storedRange(frame: Frame): { min: number; size: number } {
  const known = storedRanges.get(frame);
  if (known) return known;
  const n = frame.rows * frame.columns;
  let range: { min: number; size: number };
  if (n > 512 * 512) {
    const min = frame.pixelRepresentation === 1 ? -(2 ** (frame.bitsStored - 1)) : 0;
    range = { min, size: 2 ** frame.bitsStored };
  } else {
    const pixels = frame.pixels;
    let min = Number.POSITIVE_INFINITY;
    let max = Number.NEGATIVE_INFINITY;
    for (let i = 0; i < n; i++) {
      const v = pixels[i]!;
      if (v < min) min = v;
      if (v > max) max = v;
    }
    range = n === 0 ? { min: 0, size: 1 } : { min, size: max - min + 1 };
  }
  storedRanges.set(frame, range);
  return range;
}

/** Stored values that are padding, not image: Pixel Padding Value alone, or through Pixel Padding Range Limit. */
type PaddingRange = readonly [low: number, high: number] | undefined;

function paddingRange(instance: DicomInstance): PaddingRange {
  const value = instance.pixelPaddingValue;
  if (value === undefined) return undefined;
  const limit = instance.pixelPaddingRangeLimit ?? value;
  return [Math.min(value, limit), Math.max(value, limit)];
}

/** The 1st–99th percentile of the frame's values in modality units, padding left out (a CT's corners outside
 * the field of view would otherwise stretch the window down to the padding value), widened to the full range
 * when that is degenerate (a mask that is 99 % background would otherwise render blank). */
function percentileInterval(
  frame: Frame,
  modality: ValueFunction,
  padding: PaddingRange,
): { lower: number; upper: number } {
  const n = frame.rows * frame.columns;
  const [low, high] =
    frame.bitsStored <= 16 && !isFloat(frame)
      ? histogramPercentiles(frame, n, padding)
      : sampledPercentiles(frame.pixels, n, padding);
  let a = modality(low);
  let b = modality(high);
  if (a > b) [a, b] = [b, a];
  // A constant frame: put its value mid-way so it renders grey rather than black.
  if (a === b) return { lower: a - 0.5, upper: a + 0.5 };
  return { lower: a, upper: b };
}

/** Percentiles from a histogram of stored values; frames of more than a million pixels are sampled on a stride,
 * which keeps the cost bounded and the percentiles within a fraction of a percent. */
function histogramPercentiles(frame: Frame, n: number, padding: PaddingRange): [number, number] {
  const { min, size } = storedRange(frame);
  const counts = new Uint32Array(size);
  const pixels = frame.pixels;
  const step = Math.max(1, Math.floor(n / (1 << 20)));
  let counted = 0;
  for (let i = 0; i < n; i += step) {
    const k = pixels[i]! - min;
    // Values outside the declared range (a codec's stray high bits) are left out rather than miscounted.
    if (k >= 0 && k < size) {
      counts[k]!++;
      counted++;
    }
  }
  if (padding) {
    const from = Math.max(0, padding[0] - min);
    const to = Math.min(size - 1, padding[1] - min);
    for (let k = from; k <= to; k++) {
      counted -= counts[k]!;
      counts[k] = 0;
    }
    // A frame of nothing but padding keeps its values, so that it still renders as what it is.
    if (counted === 0) return histogramPercentiles(frame, n, undefined);
  }
  const lowTarget = Math.max(1, Math.ceil(counted * 0.01));
  const highTarget = Math.max(1, Math.ceil(counted * 0.99));
  let cumulative = 0;
  let low = -1;
  let high = -1;
  let first = -1;
  let last = -1;
  for (let k = 0; k < size; k++) {
    const c = counts[k]!;
    if (c === 0) continue;
    if (first < 0) first = k;
    last = k;
    cumulative += c;
    if (low < 0 && cumulative >= lowTarget) low = k;
    if (high < 0 && cumulative >= highTarget) high = k;
  }
  if (low < 0 || high <= low) {
    low = first;
    high = last;
  }
  return [low + min, high + min];
}

/** Wide (32-bit and float) frames: percentiles from a strided sample, so the cost stays bounded. Values that
 * are not finite (NaN marks missing data in parametric maps) are left out. */
function sampledPercentiles(pixels: Frame['pixels'], n: number, padding: PaddingRange): [number, number] {
  const step = Math.max(1, Math.floor(n / 65536));
  const sample: number[] = [];
  for (let i = 0; i < n; i += step) {
    const v = pixels[i]!;
    if (Number.isFinite(v) && !(padding && v >= padding[0] && v <= padding[1])) sample.push(v);
  }
  if (sample.length === 0) return padding ? sampledPercentiles(pixels, n, undefined) : [0, 0];
  sample.sort((a, b) => a - b);
  let low = sample[Math.floor((sample.length - 1) * 0.01)]!;
  let high = sample[Math.floor((sample.length - 1) * 0.99)]!;
  if (high <= low) {
    low = sample[0]!;
    high = sample[sample.length - 1]!;
  }
  return [low, high];
}

// ---- colour ----------------------------------------------------------------------------------------------

/** The frame's colour samples, 8 bits each. */
function colourBytes(frame: Frame): Uint8Array {
  const pixels = frame.pixels;
  if (pixels instanceof Uint8Array) return pixels;
  return to8Bit(pixels, frame.bitsStored, frame.pixelRepresentation === 1);
}

/** Samples → 8 bits by their top bits. Signed samples (a colour image with PixelRepresentation 1, which some
 * writers set) are offset by half their range first, as DCMTK shows them: −128 … 127 as 0 … 255. */
function to8Bit(pixels: Frame['pixels'], bitsStored: number, signed: boolean): Uint8Array {
  const shift = Math.max(0, bitsStored - 8);
  const scale = 2 ** shift;
  const offset = signed ? 2 ** (bitsStored - 1) : 0;
  const out = new Uint8Array(pixels.length);
  for (let i = 0; i < pixels.length; i++) {
    const v = Math.floor((pixels[i]! + offset) / scale);
    out[i] = Math.max(0, Math.min(255, v));
  }
  return out;
}

function renderPalette(frame: Frame, instance: DicomInstance): Uint8Array {
  const { firstMapped, red, green, blue } = readPaletteColorLut(instance);
  const pixels = frame.pixels;
  const n = frame.rows * frame.columns;
  const last = red.length - 1;
  const out = new Uint8Array(n * 3);
  for (let i = 0; i < n; i++) {
    let index = pixels[i]! - firstMapped;
    if (index < 0) index = 0;
    else if (index > last) index = last;
    const o = i * 3;
    out[o] = red[index]!;
    out[o + 1] = green[Math.min(index, green.length - 1)]!;
    out[o + 2] = blue[Math.min(index, blue.length - 1)]!;
  }
  return out;
}
