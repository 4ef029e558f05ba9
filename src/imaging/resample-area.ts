/**
 * Area-averaging resampling: every output pixel is the mean of the input area it covers, fractional pixels
 * weighted by how much of them it covers. This is the pbmplus (pnmscale) algorithm DCMTK scales with by default,
 * so thumbnails match what dcmj2pnm draws. Grayscale frames are resampled as modality values, before the VOI
 * window, again as DCMTK does: averaging first keeps a narrow window from turning fine detail into noise.
 */
import type { PixelArray } from '../formats/dicom/pixel-data.js';

interface Contributions {
  /** First input index for each output index. */
  first: Int32Array;
  /** Number of input indices for each output index. */
  count: Int32Array;
  /** Weights, `maxCount` per output index. */
  weights: Float64Array;
  maxCount: number;
}

function contributions(inputLength: number, outputLength: number): Contributions {
  const scale = inputLength / outputLength;
  const maxCount = Math.ceil(scale) + 1;
  const first = new Int32Array(outputLength);
  const count = new Int32Array(outputLength);
  const weights = new Float64Array(outputLength * maxCount);
  for (let j = 0; j < outputLength; j++) {
    const start = j * scale;
    const end = Math.min(inputLength, (j + 1) * scale);
    const i0 = Math.min(inputLength - 1, Math.floor(start));
    const i1 = Math.min(inputLength, Math.ceil(end - 1e-9));
    first[j] = i0;
    let n = 0;
    for (let i = i0; i < i1 && n < maxCount; i++) {
      const w = (Math.min(end, i + 1) - Math.max(start, i)) / scale;
      weights[j * maxCount + n] = w;
      n++;
    }
    count[j] = Math.max(1, n);
    if (n === 0) weights[j * maxCount] = 1;
  }
  return { first, count, weights, maxCount };
}

/**
 * Resamples a width × height image of `channels` interleaved samples to newWidth × newHeight. Rows are read one
 * at a time through `readRow` (which fills `width * channels` values), so a caller can convert stored pixel
 * values on the fly without materialising the full-size image in floating point.
 */
export function resampleArea(
  width: number,
  height: number,
  channels: number,
  newWidth: number,
  newHeight: number,
  readRow: (y: number, row: Float32Array) => void,
): Float32Array {
  const cols = contributions(width, newWidth);
  const rows = contributions(height, newHeight);
  const row = new Float32Array(width * channels);
  // Horizontal pass into newWidth × height, then vertical into newWidth × newHeight.
  const narrow = new Float32Array(newWidth * height * channels);
  const { first, count, weights, maxCount } = cols;
  const factor = width % newWidth === 0 ? width / newWidth : 0;
  for (let y = 0; y < height; y++) {
    readRow(y, row);
    let o = y * newWidth * channels;
    if (channels === 1 && factor > 0) {
      // Whole-number shrink (512 → 256): a plain box average, without the weight lookups.
      const inverse = 1 / factor;
      let s = 0;
      for (let x = 0; x < newWidth; x++) {
        let sum = 0;
        for (let k = 0; k < factor; k++) sum += row[s++]!;
        narrow[o++] = sum * inverse;
      }
      continue;
    }
    if (channels === 1) {
      for (let x = 0; x < newWidth; x++) {
        const start = first[x]!;
        const w0 = x * maxCount;
        let sum = 0;
        for (let k = 0, n = count[x]!; k < n; k++) sum += row[start + k]! * weights[w0 + k]!;
        narrow[o++] = sum;
      }
      continue;
    }
    for (let x = 0; x < newWidth; x++) {
      const start = first[x]! * channels;
      const w0 = x * maxCount;
      const n = count[x]!;
      for (let c = 0; c < channels; c++) {
        let sum = 0;
        for (let k = 0; k < n; k++) sum += row[start + k * channels + c]! * weights[w0 + k]!;
        narrow[o++] = sum;
      }
    }
  }
  const out = new Float32Array(newWidth * newHeight * channels);
  const stride = newWidth * channels;
  for (let y = 0; y < newHeight; y++) {
    const first = rows.first[y]!;
    const n = rows.count[y]!;
    const w0 = y * rows.maxCount;
    const o = y * stride;
    for (let k = 0; k < n; k++) {
      const w = rows.weights[w0 + k]!;
      const from = (first + k) * stride;
      for (let i = 0; i < stride; i++) out[o + i]! += narrow[from + i]! * w;
    }
  }
  return out;
}

/** A grayscale frame to shrink as modality values: stored values map through `table` (stored value `min + k`
 * → `values[k]`) or a linear rescale. Plain data, so it can run on a decode worker. */
export interface ResampleStoredJob {
  pixels: PixelArray;
  width: number;
  height: number;
  newWidth: number;
  newHeight: number;
  table?: { min: number; values: Float32Array };
  rescale?: { slope: number; intercept: number };
}

export function resampleStored(job: ResampleStoredJob): Float32Array {
  const { pixels, width, height, newWidth, newHeight, table } = job;
  if (table) {
    const { min, values } = table;
    return resampleArea(width, height, 1, newWidth, newHeight, (y, row) => {
      const offset = y * width;
      for (let x = 0; x < width; x++) row[x] = values[pixels[offset + x]! - min]!;
    });
  }
  // A rescale is linear, so it is applied to the averages rather than to every stored value: a quarter (or
  // less) of the multiplications, and no table over the stored range to fill first.
  const slope = job.rescale?.slope ?? 1;
  const intercept = job.rescale?.intercept ?? 0;
  const out =
    width % newWidth === 0 && height % newHeight === 0
      ? boxAverage(pixels, width, height, width / newWidth, height / newHeight)
      : resampleArea(width, height, 1, newWidth, newHeight, (y, row) => {
          const offset = y * width;
          for (let x = 0; x < width; x++) row[x] = pixels[offset + x]!;
        });
  if (slope !== 1 || intercept !== 0) {
    for (let i = 0; i < out.length; i++) out[i] = out[i]! * slope + intercept;
  }
  return out;
}

/** Whole-number shrinks in both directions (512² → 256², the usual CT and MR thumbnail): each output is the plain
 * mean of its fx × fy block, which is what the weighted passes compute for such factors, read straight from the
 * samples in one pass. */
function boxAverage(
  pixels: ResampleStoredJob['pixels'],
  width: number,
  height: number,
  fx: number,
  fy: number,
): Float32Array {
  const newWidth = width / fx;
  const newHeight = height / fy;
  const out = new Float32Array(newWidth * newHeight);
  const inverse = 1 / (fx * fy);
  let o = 0;
  if (fx === 2 && fy === 2) {
    for (let y = 0; y < newHeight; y++) {
      let i = 2 * y * width;
      for (let x = 0; x < newWidth; x++, i += 2) {
        out[o++] = (pixels[i]! + pixels[i + 1]! + pixels[i + width]! + pixels[i + width + 1]!) * inverse;
      }
    }
    return out;
  }
  for (let y = 0; y < newHeight; y++) {
    const top = y * fy * width;
    for (let x = 0; x < newWidth; x++) {
      let sum = 0;
      for (let dy = 0, row = top + x * fx; dy < fy; dy++, row += width) {
        for (let dx = 0; dx < fx; dx++) sum += pixels[row + dx]!;
      }
      out[o++] = sum * inverse;
    }
  }
  return out;
}
