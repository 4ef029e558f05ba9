/**
 * QRS detection: the Pan–Tompkins method (IEEE Trans Biomed Eng 1985) on several leads at once. Pure.
 *
 * Per lead: 5–15 Hz band-pass, five-point derivative, squaring; each lead's energy is scaled by its own
 * typical beat energy, and the usable leads are summed, so one noisy or lost lead does not hide beats the
 * others show. A moving-window integral of 150 ms gives one hump per QRS. Humps are classified with the
 * published adaptive logic: signal and noise peak levels (SPKI, NPKI) set two thresholds; a 200 ms refractory
 * period; a candidate within 360 ms of the previous beat whose slope is under half of that beat's is a T wave;
 * when no beat comes within 1.66 × the recent mean RR, the largest hump since the last beat that passes the
 * lower threshold is taken (search-back). Filters run forward and backward (zero phase), so each hump is
 * centred on its QRS; the beat time is then the largest band-passed deflection within ±75 ms.
 */

import { biquad, bridgeGaps, filtfiltEach, quantile } from './dsp.js';
import type { Ecg } from './ecg.js';
import type { LeadQuality } from './normalize.js';

export interface QrsOptions {
  /** Leads to use (by name); default: every lead `quality` calls usable, else every lead with a signal. */
  leads?: string[];
  quality?: LeadQuality[];
}

export interface QrsDetection {
  /** R-peak sample numbers at `samplingFrequency`, ascending. */
  samples: number[];
  /** The same in seconds from the record start. */
  times: number[];
  samplingFrequency: number;
  leadsUsed: string[];
}

const BAND_LOW = 5;
const BAND_HIGH = 15;

function chooseLeads(ecg: Ecg, options: QrsOptions): string[] {
  if (options.leads) return options.leads.filter((name) => ecg.leads.some((l) => l.name === name));
  const recorded = ecg.leads.filter((l) => !l.derived);
  const candidates = recorded.length > 0 ? recorded : ecg.leads;
  if (options.quality) {
    const usable = new Set(options.quality.filter((q) => q.usable).map((q) => q.lead));
    const chosen = candidates.filter((l) => usable.has(l.name)).map((l) => l.name);
    if (chosen.length > 0) return chosen;
    // No lead is clean: use those that at least carry a signal rather than report no beats at all.
    const carrying = new Set(
      options.quality
        .filter((q) => !q.problems.includes('lead-off') && !q.problems.includes('flat'))
        .map((q) => q.lead),
    );
    return candidates.filter((l) => carrying.has(l.name)).map((l) => l.name);
  }
  return candidates.filter((l) => l.samplesUv.some((v) => Number.isFinite(v) && v !== 0)).map((l) => l.name);
}

/** Centred five-point derivative (Pan–Tompkins' H(z) = (−z⁻² − 2z⁻¹ + 2z + z²)/8, made symmetric). */
function derivative(x: Float64Array): Float64Array {
  const n = x.length;
  const d = new Float64Array(n);
  for (let i = 2; i < n - 2; i++) d[i] = (2 * x[i + 2]! + x[i + 1]! - x[i - 1]! - 2 * x[i - 2]!) / 8;
  return d;
}

/** Centred moving average of `width` samples, O(n) with a running sum. */
function movingAverage(x: Float64Array, width: number): Float64Array {
  const n = x.length;
  const out = new Float64Array(n);
  const half = width >> 1;
  let sum = 0;
  let count = 0;
  let lo = 0;
  let hi = 0; // window is [lo, hi)
  for (let i = 0; i < n; i++) {
    const wantLo = Math.max(0, i - half);
    const wantHi = Math.min(n, i + half + 1);
    while (hi < wantHi) {
      sum += x[hi++]!;
      count++;
    }
    while (lo < wantLo) {
      sum -= x[lo++]!;
      count--;
    }
    out[i] = count > 0 ? sum / count : 0;
  }
  return out;
}

/** Indices that are the maximum of `x` within ±`radius` (ties: the first). */
function localMaxima(x: Float64Array, radius: number): number[] {
  const peaks: number[] = [];
  const n = x.length;
  let i = 0;
  while (i < n) {
    // Walk to the top of the current rise.
    while (i + 1 < n && x[i + 1]! >= x[i]!) i++;
    const top = i;
    let isMax = x[top]! > 0;
    for (let k = Math.max(0, top - radius); isMax && k <= Math.min(n - 1, top + radius); k++) {
      if (x[k]! > x[top]! || (x[k]! === x[top]! && k < top)) isMax = false;
    }
    if (isMax) peaks.push(top);
    // Walk down the fall.
    while (i + 1 < n && x[i + 1]! < x[i]!) i++;
    i++;
  }
  return peaks;
}

/**
 * Detects QRS complexes. Works at the Ecg's own rate (any rate from about 100 Hz); feed it the normalized Ecg
 * (or the raw one: the band-pass removes baseline and mains). Returns no beats when no lead carries a signal.
 */
export function detectQrs(ecg: Ecg, options: QrsOptions = {}): QrsDetection {
  const fs = ecg.samplingFrequency;
  const n = ecg.sampleCount;
  const names = chooseLeads(ecg, options);
  const result: QrsDetection = { samples: [], times: [], samplingFrequency: fs, leadsUsed: names };
  if (n < fs * 0.5 || names.length === 0 || !(fs > 0)) return result;

  const band = [biquad('highpass', BAND_LOW, fs), biquad('lowpass', BAND_HIGH, fs)];
  const energy = new Float64Array(n);
  const bandSum = new Float64Array(n);
  const filtered = names.map((name) => {
    const x = new Float64Array(ecg.leads.find((l) => l.name === name)!.samplesUv.subarray(0, n));
    bridgeGaps(x);
    return x;
  });
  filtfiltEach(band, filtered);
  for (const x of filtered) {
    const d = derivative(x);
    for (let i = 0; i < n; i++) d[i] = d[i]! * d[i]!;
    // A lead's typical QRS energy: a high quantile of its squared slope. Dividing by it lets a 0.3 mV lead and
    // a 3 mV lead vote equally.
    const scale = quantile(d, 0.98) || 1;
    const amplitude = Math.sqrt(scale) || 1;
    for (let i = 0; i < n; i++) {
      energy[i] = energy[i]! + Math.min(d[i]! / scale, 50);
      bandSum[i] = bandSum[i]! + Math.abs(x[i]!) / amplitude;
    }
  }
  const mwi = movingAverage(energy, Math.max(1, Math.round(0.15 * fs)));
  // Slope for the T-wave test: the derivative of the summed band-passed signal.
  const slope = derivative(bandSum);

  const refractory = Math.round(0.2 * fs);
  const tWindow = Math.round(0.36 * fs);
  const peaks = localMaxima(mwi, Math.round(0.075 * fs));
  if (peaks.length === 0) return result;

  // Learning phase: the first 2 s set the initial levels.
  const learn = Math.min(n, Math.round(2 * fs));
  let learnMax = 0;
  let learnSum = 0;
  for (let i = 0; i < learn; i++) {
    learnMax = Math.max(learnMax, mwi[i]!);
    learnSum += mwi[i]!;
  }
  let spki = 0.25 * learnMax;
  let npki = 0.5 * (learnSum / learn);
  let threshold1 = npki + 0.25 * (spki - npki);
  const maxSlopeNear = (i: number): number => {
    let m = 0;
    const r = Math.round(0.075 * fs);
    for (let k = Math.max(0, i - r); k <= Math.min(n - 1, i + r); k++) m = Math.max(m, Math.abs(slope[k]!));
    return m;
  };

  const beats: number[] = [];
  const beatSlopes: number[] = [];
  const rr: number[] = [];
  const updateThresholds = () => {
    threshold1 = npki + 0.25 * (spki - npki);
  };
  const accept = (peak: number, searchBack: boolean) => {
    const value = mwi[peak]!;
    spki = searchBack ? 0.25 * value + 0.75 * spki : 0.125 * value + 0.875 * spki;
    const previous = beats[beats.length - 1];
    if (previous !== undefined) {
      rr.push(peak - previous);
      if (rr.length > 8) rr.shift();
    }
    beats.push(peak);
    beatSlopes.push(maxSlopeNear(peak));
    updateThresholds();
  };
  const meanRr = () => (rr.length > 0 ? rr.reduce((a, b) => a + b, 0) / rr.length : fs);

  // Index (in `peaks`) just after the last accepted beat: search-back looks from there.
  let sinceBeat = 0;
  let p = 0;
  while (p < peaks.length) {
    const peak = peaks[p]!;
    const last = beats[beats.length - 1];
    // Search-back: no beat for 1.66 RR; take the biggest skipped hump above threshold 2 (if any). Each
    // acceptance moves the last beat forward, so this repeats at most once per skipped hump.
    if (last !== undefined && peak - last > 1.66 * meanRr()) {
      const threshold2 = 0.5 * threshold1;
      let best = -1;
      for (let q = sinceBeat; q < p; q++) {
        const candidate = peaks[q]!;
        if (candidate - last < refractory || peak - candidate < refractory) continue;
        if (mwi[candidate]! > threshold2 && (best < 0 || mwi[candidate]! > mwi[peaks[best]!]!)) best = q;
      }
      if (best >= 0) {
        accept(peaks[best]!, true);
        sinceBeat = best + 1;
        continue;
      }
    }
    const value = mwi[peak]!;
    const sinceLast = last === undefined ? Number.POSITIVE_INFINITY : peak - last;
    if (value > threshold1 && sinceLast >= refractory) {
      const isTWave =
        sinceLast < tWindow &&
        beatSlopes.length > 0 &&
        maxSlopeNear(peak) < 0.5 * beatSlopes[beatSlopes.length - 1]!;
      if (isTWave) {
        npki = 0.125 * value + 0.875 * npki;
        updateThresholds();
      } else {
        accept(peak, false);
        sinceBeat = p + 1;
      }
    } else {
      npki = 0.125 * value + 0.875 * npki;
      updateThresholds();
    }
    p++;
  }

  // The R peak: the largest band-passed deflection (summed over leads) near each hump.
  const radius = Math.round(0.075 * fs);
  const samples: number[] = [];
  for (const beat of beats) {
    let best = beat;
    for (let k = Math.max(0, beat - radius); k <= Math.min(n - 1, beat + radius); k++) {
      if (bandSum[k]! > bandSum[best]!) best = k;
    }
    if (samples.length === 0 || best - samples[samples.length - 1]! >= refractory) samples.push(best);
  }
  result.samples = samples;
  result.times = samples.map((s) => s / fs);
  return result;
}
