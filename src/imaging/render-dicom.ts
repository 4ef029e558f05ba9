/**
 * One DICOM frame → a display image: decode → modality LUT (rescale) → VOI window → MONOCHROME1 inversion →
 * 8 bits → resize → encode. Decoders are registered per transfer syntax UID; codecs that need sharp (JPEG) or,
 * later, WASM live here, while native and RLE decoding stay in the pure formats layer.
 */
import sharp, { type OutputInfo } from 'sharp';
import { AppError, isAppError } from '../errors.js';
import { asRgbJpeg } from '../formats/dicom/as-rgb-jpeg.js';
import { type LookupTable, lookUp, readModalityLut, readVoiLut } from '../formats/dicom/lookup-table.js';
import { readPaletteColorLut } from '../formats/dicom/palette.js';
import type { DicomInstance } from '../formats/dicom/parse-dicom.js';
import { describePixels, type Frame, getEncapsulatedFrame, getFrame } from '../formats/dicom/pixel-data.js';
import { describeTransferSyntax, JPEG_BASELINE } from '../formats/dicom/transfer-syntax.js';
import { type EncodedImage, encodeImage, type ImageFormat } from './encode.js';

export interface VoiWindow {
  center: number;
  width: number;
}

export interface RenderDicomOptions {
  /** Zero-based; defaults to the middle frame, the most representative of a multi-frame series. */
  frame?: number;
  /** Longest side in pixels (default 256); never enlarged. */
  size?: number;
  format?: ImageFormat;
  /** Overrides the file's window; in modality units (after rescale), as WindowCenter/Width are. */
  window?: VoiWindow;
}

export type FrameDecoder = (instance: DicomInstance, frameIndex: number) => Promise<Frame>;

const frameDecoders = new Map<string, FrameDecoder>();

/** Adds or replaces the decoder for one transfer syntax. */
export function registerFrameDecoder(transferSyntaxUid: string, decoder: FrameDecoder): void {
  frameDecoders.set(transferSyntaxUid, decoder);
}

const decodeInPureLayer: FrameDecoder = async (instance, frameIndex) => getFrame(instance, frameIndex);

/** JPEG Baseline is 8-bit only, which is what sharp's libjpeg-turbo decodes; it also applies the JPEG colour
 * transform, so colour frames come back as RGB whatever PhotometricInterpretation says. */
const decodeJpegBaseline: FrameDecoder = async (instance, frameIndex) => {
  const description = describePixels(instance);
  const stored = getEncapsulatedFrame(instance, frameIndex);
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
      `JPEG frame ${frameIndex + 1} of ${instance.numberOfFrames} cannot be decoded: ${err instanceof Error ? err.message : String(err)}`,
      { retryable: false, cause: err, details: { frameIndex } },
    );
  }
  const { width, height, channels } = decoded.info;
  if (channels !== 1 && channels !== 3) {
    throw new AppError('UNSUPPORTED_FORMAT', `JPEG frame with ${channels} components is not supported`, {
      retryable: false,
    });
  }
  const pixels = new Uint8Array(decoded.data.buffer, decoded.data.byteOffset, width * height * channels);
  return {
    rows: height,
    columns: width,
    samplesPerPixel: channels,
    photometricInterpretation: channels === 3 ? 'RGB' : description.photometricInterpretation,
    bitsAllocated: 8,
    bitsStored: 8,
    pixelRepresentation: 0,
    pixels,
  };
};

registerFrameDecoder(JPEG_BASELINE, decodeJpegBaseline);

function decoderFor(transferSyntaxUid: string): FrameDecoder | undefined {
  const ts = describeTransferSyntax(transferSyntaxUid);
  return (
    frameDecoders.get(ts.uid) ??
    (ts.codec === 'native' || ts.codec === 'rle' || ts.codec === 'unknown' ? decodeInPureLayer : undefined)
  );
}

/** Whether frames of this transfer syntax can be decoded at all (a given file may still be corrupt). Unknown
 * syntaxes count: their pixel data is decoded when it turns out not to be encapsulated. */
export function canDecodeTransferSyntax(transferSyntaxUid: string): boolean {
  return decoderFor(transferSyntaxUid) !== undefined;
}

/** Decodes one frame with the decoder registered for the instance's transfer syntax. Native and RLE syntaxes
 * (and unknown ones whose pixel data is not encapsulated) are decoded by the pure layer. */
export async function decodeDicomFrame(instance: DicomInstance, frameIndex: number): Promise<Frame> {
  const ts = describeTransferSyntax(instance.transferSyntaxUid);
  const decoder = decoderFor(ts.uid);
  if (!decoder) {
    throw new AppError('UNSUPPORTED_FORMAT', `transfer syntax ${ts.uid} (${ts.name}) cannot be decoded yet`, {
      retryable: false,
      details: { transferSyntaxUid: ts.uid },
    });
  }
  return decoder(instance, frameIndex);
}

export async function renderDicomFrame(
  input: DicomInstance,
  opts: RenderDicomOptions = {},
): Promise<EncodedImage> {
  const description = describePixels(input);
  const frameIndex = opts.frame ?? Math.floor(description.numberOfFrames / 2);
  const frame = await decodeDicomFrame(input, frameIndex);
  const display = toDisplayPixels(frame, input, opts.window);
  try {
    return await encodeImage(
      { data: display.data, width: frame.columns, height: frame.rows, channels: display.channels },
      { format: opts.format ?? 'png', size: opts.size ?? 256 },
    );
  } catch (err) {
    if (isAppError(err)) throw err;
    throw new AppError('INTERNAL', `encoding the rendered frame failed: ${(err as Error).message}`, {
      cause: err,
    });
  }
}

interface DisplayPixels {
  data: Uint8Array;
  channels: 1 | 3;
}

/** Frame samples → 8-bit display samples. Exported for tests and for callers that encode themselves. */
export function toDisplayPixels(frame: Frame, instance: DicomInstance, window?: VoiWindow): DisplayPixels {
  const pi = frame.photometricInterpretation;
  if (frame.samplesPerPixel === 1) {
    if (pi === 'MONOCHROME1' || pi === 'MONOCHROME2') {
      return { data: renderGrayscale(frame, instance, window, pi === 'MONOCHROME1'), channels: 1 };
    }
    if (pi === 'PALETTE COLOR') return { data: renderPalette(frame, instance), channels: 3 };
  } else if (frame.samplesPerPixel === 3) {
    if (pi === 'RGB') return { data: renderRgb(frame), channels: 3 };
    if (pi === 'YBR_FULL') return { data: renderYbrFull(frame), channels: 3 };
  }
  throw new AppError(
    'UNSUPPORTED_FORMAT',
    `photometric interpretation ${pi} with ${frame.samplesPerPixel} samples per pixel cannot be rendered yet`,
    { retryable: false },
  );
}

/** VOI LUT function LINEAR (PS3.3 C.11.2.1.2.1) as the interval (lower, upper]: at or below → 0, above → 255. */
interface Interval {
  lower: number;
  upper: number;
}

function intervalFromWindow(w: VoiWindow): Interval {
  const half = (w.width - 1) / 2;
  return { lower: w.center - 0.5 - half, upper: w.center - 0.5 + half };
}

function usableWindow(w: VoiWindow | undefined): VoiWindow | undefined {
  if (!w || !Number.isFinite(w.center) || !Number.isFinite(w.width) || w.width < 1) return undefined;
  return w;
}

function renderGrayscale(
  frame: Frame,
  instance: DicomInstance,
  window: VoiWindow | undefined,
  invert: boolean,
) {
  const modality = modalityFunction(instance);
  const fileWindow =
    instance.windowCenter !== undefined && instance.windowWidth !== undefined
      ? { center: instance.windowCenter, width: instance.windowWidth }
      : undefined;
  const chosen = usableWindow(window) ?? usableWindow(fileWindow);
  const voiLut = chosen ? undefined : readVoiLut(instance);
  const pixels = frame.pixels;
  const n = frame.rows * frame.columns;
  const out = new Uint8Array(n);

  if (frame.bitsStored <= 16) {
    // Every stored value maps through one table: a 16-bit frame costs a 64 Ki-entry table plus one lookup per
    // pixel instead of the modality and VOI arithmetic per pixel.
    const min = frame.pixelRepresentation === 1 ? -(2 ** (frame.bitsStored - 1)) : 0;
    const size = 2 ** frame.bitsStored;
    const display = voiLut
      ? voiLutFunction(voiLut, invert)
      : linearFunction(
          chosen
            ? intervalFromWindow(chosen)
            : percentileInterval(histogram(pixels, n, min, size), n, min, modality),
          invert,
        );
    const lut = new Uint8Array(size);
    for (let k = 0; k < size; k++) lut[k] = display(modality(k + min));
    for (let i = 0; i < n; i++) out[i] = lut[pixels[i]! - min]!;
    return out;
  }

  const display = voiLut
    ? voiLutFunction(voiLut, invert)
    : linearFunction(chosen ? intervalFromWindow(chosen) : sampledInterval(pixels, n, modality), invert);
  for (let i = 0; i < n; i++) out[i] = display(modality(pixels[i]!));
  return out;
}

type ValueFunction = (value: number) => number;

/** Stored value → modality value: the Modality LUT when present, else rescale slope and intercept. */
function modalityFunction(instance: DicomInstance): ValueFunction {
  const table = readModalityLut(instance);
  if (table) return (v) => lookUp(table, v);
  const slope = instance.rescaleSlope || 1;
  const intercept = instance.rescaleIntercept ?? 0;
  return (v) => v * slope + intercept;
}

function linearFunction(interval: Interval, invert: boolean): ValueFunction {
  return (x) => voi(x, interval, invert);
}

function voiLutFunction(table: LookupTable, invert: boolean): ValueFunction {
  const scale = 255 / (2 ** table.bitsPerEntry - 1);
  return (x) => {
    const y = Math.min(255, (lookUp(table, x) * scale + 0.5) | 0);
    return invert ? 255 - y : y;
  };
}

function voi(x: number, { lower, upper }: Interval, invert: boolean): number {
  let y: number;
  if (x <= lower) y = 0;
  else if (x > upper) y = 255;
  else y = ((x - lower) / (upper - lower)) * 255;
  const rounded = (y + 0.5) | 0;
  return invert ? 255 - rounded : rounded;
}

function histogram(pixels: Frame['pixels'], n: number, min: number, size: number): Uint32Array {
  const counts = new Uint32Array(size);
  for (let i = 0; i < n; i++) counts[pixels[i]! - min]!++;
  return counts;
}

/** The 1st–99th percentile of the frame's values, widened to the full range when that is degenerate (a mask
 * that is 99 % background would otherwise render blank). */
function percentileInterval(counts: Uint32Array, n: number, min: number, modality: ValueFunction): Interval {
  const lowTarget = Math.max(1, Math.ceil(n * 0.01));
  const highTarget = Math.max(1, Math.ceil(n * 0.99));
  let cumulative = 0;
  let low = -1;
  let high = -1;
  let first = -1;
  let last = -1;
  for (let k = 0; k < counts.length; k++) {
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
  return modalityInterval(modality(low + min), modality(high + min));
}

/** Wide (32-bit) frames: percentiles from a strided sample, so the cost stays bounded. */
function sampledInterval(pixels: Frame['pixels'], n: number, modality: ValueFunction): Interval {
  const step = Math.max(1, Math.floor(n / 65536));
  const sample: number[] = [];
  for (let i = 0; i < n; i += step) sample.push(pixels[i]!);
  sample.sort((a, b) => a - b);
  let low = sample[Math.floor((sample.length - 1) * 0.01)] ?? 0;
  let high = sample[Math.floor((sample.length - 1) * 0.99)] ?? 0;
  if (high <= low) {
    low = sample[0] ?? 0;
    high = sample[sample.length - 1] ?? 0;
  }
  return modalityInterval(modality(low), modality(high));
}

/** Two modality values → an interval whose lower end maps to black and upper end to white. */
function modalityInterval(low: number, high: number): Interval {
  let a = low;
  let b = high;
  if (a > b) [a, b] = [b, a];
  // A constant frame: put its value mid-way so it renders grey rather than black.
  if (a === b) return { lower: a - 0.5, upper: a + 0.5 };
  return { lower: a, upper: b };
}

function renderRgb(frame: Frame): Uint8Array {
  const pixels = frame.pixels;
  if (pixels instanceof Uint8Array) return pixels;
  return to8Bit(pixels, frame.bitsStored);
}

function to8Bit(pixels: Frame['pixels'], bitsStored: number): Uint8Array {
  const shift = Math.max(0, bitsStored - 8);
  const scale = 2 ** shift;
  const out = new Uint8Array(pixels.length);
  for (let i = 0; i < pixels.length; i++) {
    const v = Math.floor(pixels[i]! / scale);
    out[i] = Math.max(0, Math.min(255, v));
  }
  return out;
}

/** YBR_FULL → RGB with the full-range equations of PS3.3 C.7.6.3.1.2. */
function renderYbrFull(frame: Frame): Uint8Array {
  const src = frame.pixels instanceof Uint8Array ? frame.pixels : to8Bit(frame.pixels, frame.bitsStored);
  const out = new Uint8Array(src.length);
  for (let i = 0; i < src.length; i += 3) {
    const y = src[i]!;
    const cb = src[i + 1]! - 128;
    const cr = src[i + 2]! - 128;
    out[i] = clamp255(y + 1.402 * cr);
    out[i + 1] = clamp255(y - 0.344136 * cb - 0.714136 * cr);
    out[i + 2] = clamp255(y + 1.772 * cb);
  }
  return out;
}

function clamp255(v: number): number {
  return v <= 0 ? 0 : v >= 255 ? 255 : (v + 0.5) | 0;
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
