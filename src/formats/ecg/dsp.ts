/**
 * The signal processing the ECG normalizer and QRS detector share: biquad filters run forward and backward
 * (zero phase), and band-limited resampling. Pure, allocation-light, O(n) per pass except resampling
 * (O(n × kernel)).
 */

/** Coefficients of one second-order section, normalised so a0 = 1. */
export interface Biquad {
  b0: number;
  b1: number;
  b2: number;
  a1: number;
  a2: number;
}

/** Butterworth (Q = 1/√2) low-pass or high-pass, and a notch, from the RBJ audio-EQ cookbook formulas. */
export function biquad(
  kind: 'lowpass' | 'highpass' | 'notch',
  cutoffHz: number,
  fs: number,
  q = Math.SQRT1_2,
): Biquad {
  const w0 = (2 * Math.PI * Math.min(cutoffHz, fs * 0.499)) / fs;
  const cos = Math.cos(w0);
  const alpha = Math.sin(w0) / (2 * q);
  const a0 = 1 + alpha;
  let b0: number;
  let b1: number;
  let b2: number;
  if (kind === 'lowpass') {
    b0 = (1 - cos) / 2;
    b1 = 1 - cos;
    b2 = (1 - cos) / 2;
  } else if (kind === 'highpass') {
    b0 = (1 + cos) / 2;
    b1 = -(1 + cos);
    b2 = (1 + cos) / 2;
  } else {
    b0 = 1;
    b1 = -2 * cos;
    b2 = 1;
  }
  return { b0: b0 / a0, b1: b1 / a0, b2: b2 / a0, a1: (-2 * cos) / a0, a2: (1 - alpha) / a0 };
}

/** Runs one biquad over `x` in place, forward (direct form II transposed). The state starts as if the signal
 * had been at `x[0]` forever, so a DC offset does not ring at the start. */
function runForward(f: Biquad, x: Float64Array): void {
  const n = x.length;
  if (n === 0) return;
  const dcGain = (f.b0 + f.b1 + f.b2) / (1 + f.a1 + f.a2);
  const x0 = x[0]!;
  const y0 = x0 * dcGain;
  let z1 = y0 - f.b0 * x0;
  let z2 = f.b2 * x0 - f.a2 * y0;
  for (let i = 0; i < n; i++) {
    const xi = x[i]!;
    const yi = f.b0 * xi + z1;
    z1 = f.b1 * xi - f.a1 * yi + z2;
    z2 = f.b2 * xi - f.a2 * yi;
    x[i] = yi;
  }
}

function runBackward(f: Biquad, x: Float64Array): void {
  const n = x.length;
  if (n === 0) return;
  const dcGain = (f.b0 + f.b1 + f.b2) / (1 + f.a1 + f.a2);
  const xn = x[n - 1]!;
  const yn = xn * dcGain;
  let z1 = yn - f.b0 * xn;
  let z2 = f.b2 * xn - f.a2 * yn;
  for (let i = n - 1; i >= 0; i--) {
    const xi = x[i]!;
    const yi = f.b0 * xi + z1;
    z1 = f.b1 * xi - f.a1 * yi + z2;
    z2 = f.b2 * xi - f.a2 * yi;
    x[i] = yi;
  }
}

/** Forward then backward through each section: zero phase, magnitude squared (so a 2nd-order Butterworth
 * high-pass becomes a 4th-order response with its −6 dB point at the cutoff). In place. */
export function filtfilt(sections: Biquad[], x: Float64Array): Float64Array {
  for (const f of sections) runForward(f, x);
  for (let k = sections.length - 1; k >= 0; k--) runBackward(sections[k]!, x);
  return x;
}

/**
 * `runForward` (step 1) or `runBackward` (step −1) over two signals of the same length at once. Each output
 * sample of a recursive filter waits on the one before it, so a single signal leaves the CPU idle between
 * steps; two independent recursions in one loop fill that time and run in about half the time per signal.
 * Each signal sees exactly the arithmetic `runForward`/`runBackward` would do, so the results are identical.
 */
function runPair(f: Biquad, a: Float64Array, b: Float64Array, step: 1 | -1): void {
  const n = a.length;
  if (n === 0) return;
  const { b0, b1, b2, a1, a2 } = f;
  const dcGain = (b0 + b1 + b2) / (1 + a1 + a2);
  const first = step === 1 ? 0 : n - 1;
  const xa = a[first]!;
  const xb = b[first]!;
  const ya = xa * dcGain;
  const yb = xb * dcGain;
  let za1 = ya - b0 * xa;
  let za2 = b2 * xa - a2 * ya;
  let zb1 = yb - b0 * xb;
  let zb2 = b2 * xb - a2 * yb;
  for (let k = 0, i = first; k < n; k++, i += step) {
    const ai = a[i]!;
    const bi = b[i]!;
    const yai = b0 * ai + za1;
    const ybi = b0 * bi + zb1;
    za1 = b1 * ai - a1 * yai + za2;
    zb1 = b1 * bi - a1 * ybi + zb2;
    za2 = b2 * ai - a2 * yai;
    zb2 = b2 * bi - a2 * ybi;
    a[i] = yai;
    b[i] = ybi;
  }
}

/** `filtfilt` on each signal, in place, two signals of the same length at a time (see `runPair`); the results
 * are those of `filtfilt` on each. */
export function filtfiltEach(sections: Biquad[], signals: Float64Array[]): void {
  const pending: Float64Array[] = [];
  for (const x of signals) {
    const mate = pending.findIndex((p) => p.length === x.length);
    if (mate < 0) {
      pending.push(x);
      continue;
    }
    const a = pending.splice(mate, 1)[0]!;
    for (const f of sections) runPair(f, a, x, 1);
    for (let k = sections.length - 1; k >= 0; k--) runPair(sections[k]!, a, x, -1);
  }
  for (const x of pending) filtfilt(sections, x);
}

/** Replaces NaN runs by straight lines between their neighbours (or the nearest value at the ends), so filters
 * can run through gaps; returns whether any sample was NaN. */
export function bridgeGaps(x: Float64Array): boolean {
  const n = x.length;
  let i = 0;
  let any = false;
  while (i < n) {
    if (!Number.isNaN(x[i]!)) {
      i++;
      continue;
    }
    any = true;
    const start = i;
    while (i < n && Number.isNaN(x[i]!)) i++;
    const before = start > 0 ? x[start - 1]! : undefined;
    const after = i < n ? x[i]! : undefined;
    const a = before ?? after ?? 0;
    const b = after ?? before ?? 0;
    const span = i - start + 1;
    for (let k = start; k < i; k++) x[k] = a + ((b - a) * (k - start + 1)) / span;
  }
  return any;
}

/**
 * Resamples `x` (at `fsIn`) to `fsOut` with a Kaiser-windowed sinc kernel whose cutoff is 0.45 × the lower of
 * the two rates: downsampling is anti-aliased, upsampling band-limited. Kernel half-width is 12 zero crossings
 * of the cutoff, so the cost is about 24 × max(1, fsIn/fsOut) multiply-adds per output sample. NaN input must be
 * bridged first.
 */
export function resample(x: Float64Array, fsIn: number, fsOut: number): Float64Array {
  const outLength = Math.floor((x.length * fsOut) / fsIn);
  const out = new Float64Array(outLength);
  if (x.length === 0 || outLength === 0) return out;
  const cutoff = (0.45 * Math.min(fsIn, fsOut)) / fsIn; // cycles per input sample
  const zeroCrossings = 12;
  const halfWidth = zeroCrossings / (2 * cutoff); // input samples
  const beta = 8;
  const i0 = (v: number): number => {
    let sum = 1;
    let term = 1;
    for (let k = 1; k < 30; k++) {
      term *= (v / (2 * k)) ** 2;
      sum += term;
      if (term < 1e-12 * sum) break;
    }
    return sum;
  };
  // Tabulate the kernel finely once; each tap is then a table lookup with linear interpolation.
  const steps = 256;
  const tableLength = Math.ceil(halfWidth * steps) + 2;
  const table = new Float64Array(tableLength);
  const norm = i0(beta);
  for (let j = 0; j < tableLength; j++) {
    const t = j / steps;
    const r = t / halfWidth;
    if (r >= 1) continue;
    const sinc = t === 0 ? 1 : Math.sin(2 * Math.PI * cutoff * t) / (2 * Math.PI * cutoff * t);
    table[j] = 2 * cutoff * sinc * (i0(beta * Math.sqrt(1 - r * r)) / norm);
  }
  const ratio = fsIn / fsOut;
  const last = x.length - 1;
  for (let n = 0; n < outLength; n++) {
    const center = n * ratio;
    const from = Math.ceil(center - halfWidth);
    const to = Math.floor(center + halfWidth);
    let sum = 0;
    let weight = 0;
    for (let k = from; k <= to; k++) {
      const pos = Math.abs(k - center) * steps;
      const j = Math.floor(pos);
      const frac = pos - j;
      const w = table[j]! + frac * (table[j + 1]! - table[j]!);
      // Past either end the end sample is held.
      const v = x[k < 0 ? 0 : Math.min(k, last)]!;
      sum += w * v;
      weight += w;
    }
    out[n] = weight !== 0 ? sum / weight : 0;
  }
  return out;
}

/** Rearranges `a[from..to]` so that a[k] holds the value a full sort would put there (Hoare's quickselect,
 * median-of-three pivots); expected O(n). */
export function selectKth(a: Float64Array, k: number, from = 0, to = a.length - 1): number {
  let lo = from;
  let hi = to;
  while (hi > lo) {
    const mid = (lo + hi) >>> 1;
    // Median of three as the pivot keeps sorted and reversed input linear.
    const x = a[lo]!;
    const y = a[mid]!;
    const z = a[hi]!;
    const pivot = x < y ? (y < z ? y : Math.max(x, z)) : x < z ? x : Math.max(y, z);
    let i = lo;
    let j = hi;
    while (i <= j) {
      while (a[i]! < pivot) i++;
      while (a[j]! > pivot) j--;
      if (i <= j) {
        const t = a[i]!;
        a[i] = a[j]!;
        a[j] = t;
        i++;
        j--;
      }
    }
    if (k <= j) hi = j;
    else if (k >= i) lo = i;
    else break;
  }
  return a[k]!;
}

/** Quantiles (each 0..1) of the finite values of `x`, from at most ~2000 evenly spaced values. */
export function quantiles(x: ArrayLike<number>, qs: number[]): number[] {
  const stride = Math.max(1, Math.floor(x.length / 2000));
  const values = new Float64Array(Math.ceil(x.length / stride));
  let count = 0;
  for (let i = 0; i < x.length; i += stride) {
    const v = x[i]!;
    if (Number.isFinite(v)) values[count++] = v;
  }
  if (count === 0) return qs.map(() => Number.NaN);
  return qs.map((q) => {
    const k = Math.min(count - 1, Math.max(0, Math.round(q * (count - 1))));
    const kept = Math.min(k + 1, count - k);
    return kept * 16 <= count ? extremeKth(values, count, k) : selectKth(values, k, 0, count - 1);
  });
}

/**
 * The k-th smallest of `a[0..count)` for a k near either end (the 1st or 99th percentile): one pass keeps the
 * k + 1 smallest (or count − k largest) values in a binary heap whose top is the answer. Nearly every value
 * costs one comparison with the top, which the CPU predicts, where quickselect's partitioning mispredicts
 * about every other comparison. `a` is left as it was.
 */
export function extremeKth(a: Float64Array, count: number, k: number): number {
  const low = k < count - k;
  const size = low ? k + 1 : count - k;
  // A max-heap of the k + 1 smallest; for the high end the same heap over negated values keeps the largest.
  const sign = low ? 1 : -1;
  const heap = new Float64Array(size);
  for (let i = 0; i < size; i++) heap[i] = sign * a[i]!;
  for (let i = (size >> 1) - 1; i >= 0; i--) siftDown(heap, i, size);
  for (let i = size; i < count; i++) {
    const v = sign * a[i]!;
    if (v < heap[0]!) {
      heap[0] = v;
      siftDown(heap, 0, size);
    }
  }
  return sign * heap[0]!;
}

/** Restores the max-heap order below `i` in `heap[0..size)`. */
function siftDown(heap: Float64Array, i: number, size: number): void {
  const v = heap[i]!;
  let at = i;
  for (;;) {
    let child = 2 * at + 1;
    if (child >= size) break;
    if (child + 1 < size && heap[child + 1]! > heap[child]!) child++;
    if (heap[child]! <= v) break;
    heap[at] = heap[child]!;
    at = child;
  }
  heap[at] = v;
}

/** The q-quantile (0..1) of the finite values of `x` (see `quantiles`). */
export function quantile(x: ArrayLike<number>, q: number): number {
  return quantiles(x, [q])[0]!;
}
