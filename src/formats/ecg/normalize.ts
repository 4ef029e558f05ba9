/**
 * Normalization of an Ecg for display and measurement: one sampling rate (500 Hz), baseline wander removed,
 * mains interference notched out, and a quality verdict per lead. Pure: returns a new Ecg; the parsed original
 * (and the stored file) stay untouched.
 *
 * - Resampling: Kaiser-windowed sinc, cutoff 0.45 × the lower rate (anti-aliasing when going down).
 * - Baseline: 2nd-order Butterworth high-pass at 0.5 Hz run forward and backward (zero phase, so ST segments
 *   are not shifted in time; −6 dB at 0.5 Hz).
 * - Mains: a notch (Q 30, also zero phase) at the site's 50 or 60 Hz; from the caller, else from what the file
 *   says about its mains or notch setting, else detected when one of the two lines stands out.
 * - Quality per lead: lead-off (mostly missing samples or a constant line), flat (no ECG-sized deflection),
 *   saturation (the signal sits at its extreme value for runs of samples), high noise (broadband noise above
 *   35 Hz or huge excursions).
 */

import { biquad, bridgeGaps, filtfiltEach, quantiles, resample, selectKth } from './dsp.js';
import type { Ecg, EcgLead } from './ecg.js';

export const NORMALIZED_SAMPLING_FREQUENCY = 500;

export interface NormalizeOptions {
  /** Output rate; 500 Hz unless given. */
  samplingFrequency?: number;
  /** Baseline high-pass corner; 0 disables. */
  highPassHz?: number;
  /** The site's mains frequency; 0 disables the notch; undefined: from the file, else detected. */
  mainsFrequency?: 50 | 60 | 0;
}

export type LeadProblem = 'lead-off' | 'flat' | 'saturated' | 'noisy';

export interface LeadQuality {
  lead: string;
  usable: boolean;
  problems: LeadProblem[];
  /** Robust peak-to-peak (1st to 99th percentile) after filtering, µV. */
  peakToPeakUv: number;
  /** Broadband noise above 35 Hz (robust standard deviation), µV. */
  noiseUv: number;
}

export interface EcgQuality {
  /** good: every lead usable; acceptable: most leads usable; poor: fewer than half usable or none. */
  overall: 'good' | 'acceptable' | 'poor';
  leads: LeadQuality[];
}

export interface NormalizedEcg {
  ecg: Ecg;
  quality: EcgQuality;
  /** The notch applied, or null. */
  mainsFrequency: 50 | 60 | null;
}

const FLAT_UV = 30;
const NOISE_UV = 50;
const HUGE_UV = 8000;

/** Power of `x` at `f` − 3.5, `f` and `f` + 3.5 Hz (Goertzel), over at most 20 s. The three recursions share
 * one loop: each step waits on the one before, so three independent ones cost little more than one. */
function goertzelAround(x: Float64Array, f: number, fs: number): [below: number, at: number, above: number] {
  const n = Math.min(x.length, Math.round(20 * fs));
  const cb = 2 * Math.cos((2 * Math.PI * (f - 3.5)) / fs);
  const cf = 2 * Math.cos((2 * Math.PI * f) / fs);
  const ca = 2 * Math.cos((2 * Math.PI * (f + 3.5)) / fs);
  let b1 = 0;
  let b2 = 0;
  let f1 = 0;
  let f2 = 0;
  let a1 = 0;
  let a2 = 0;
  for (let i = 0; i < n; i++) {
    const xi = x[i]!;
    const b0 = xi + cb * b1 - b2;
    const f0 = xi + cf * f1 - f2;
    const a0 = xi + ca * a1 - a2;
    b2 = b1;
    b1 = b0;
    f2 = f1;
    f1 = f0;
    a2 = a1;
    a1 = a0;
  }
  return [
    b1 * b1 + b2 * b2 - cb * b1 * b2,
    f1 * f1 + f2 * f2 - cf * f1 * f2,
    a1 * a1 + a2 * a2 - ca * a1 * a2,
  ];
}

/** 50 or 60 when that line stands 10× above its neighbourhood in the given (high-passed) leads. */
function detectMains(leads: Float64Array[], fs: number): 50 | 60 | null {
  if (fs < 130) return null;
  let best: 50 | 60 | null = null;
  let bestRatio = 10;
  for (const f of [50, 60] as const) {
    let line = 0;
    let around = 0;
    for (const x of leads) {
      const [below, at, above] = goertzelAround(x, f, fs);
      line += at;
      around += (below + above) / 2;
    }
    const ratio = line / Math.max(around, 1e-9);
    if (ratio > bestRatio) {
      bestRatio = ratio;
      best = f;
    }
  }
  return best;
}

function mainsFromFile(ecg: Ecg): 50 | 60 | undefined {
  for (const key of ['mainsFrequency', 'notchFilterFrequency']) {
    const v = Number(ecg.acquisition[key]);
    if (v === 50 || v === 60) return v;
  }
  return undefined;
}

/** Samples sitting at the lead's own extreme value in runs of ≥ 10 ms, as a fraction of the lead. */
function saturatedFraction(raw: Float32Array, fs: number): number {
  const n = raw.length;
  let min = Number.POSITIVE_INFINITY;
  let max = Number.NEGATIVE_INFINITY;
  for (let i = 0; i < n; i++) {
    const v = raw[i]!;
    if (v < min) min = v;
    if (v > max) max = v;
  }
  if (!(max > min)) return 0;
  const minRun = Math.max(3, Math.round(0.01 * fs));
  let stuck = 0;
  let i = 0;
  while (i < n) {
    const v = raw[i]!;
    if (v !== min && v !== max) {
      i++;
      continue;
    }
    let end = i + 1;
    while (end < n && raw[end] === v) end++;
    if (end - i >= minRun) stuck += end - i;
    i = end;
  }
  return stuck / n;
}

/** Robust broadband noise: per second, the median |x| of the >35 Hz residual; the median over seconds,
 * scaled to a standard deviation. QRS complexes are a small part of each second, so they barely move it.
 * No residual (rates under 100 Hz have nothing above 35 Hz worth measuring): 0. */
function noiseLevel(residual: Float64Array | null, fs: number): number {
  if (!residual) return 0;
  const window = Math.max(1, Math.round(fs));
  const medians: number[] = [];
  const abs = new Float64Array(window);
  for (let start = 0; start + window <= residual.length; start += window) {
    for (let i = 0; i < window; i++) abs[i] = Math.abs(residual[start + i]!);
    medians.push(selectKth(abs, window >> 1));
  }
  if (medians.length === 0) return 0;
  medians.sort((a, b) => a - b);
  return medians[medians.length >> 1]! * 1.4826;
}

function assessLead(
  name: string,
  raw: Float32Array,
  filtered: Float64Array,
  nanFraction: number,
  fs: number,
  residual: Float64Array | null,
): LeadQuality {
  const problems: LeadProblem[] = [];
  // Constant: every sample that is not NaN has the first such sample's value.
  let constant = true;
  let first = Number.NaN;
  for (let i = 0; i < raw.length; i++) {
    const v = raw[i]!;
    if (Number.isNaN(v)) continue;
    if (Number.isNaN(first)) first = v;
    else if (v !== first) {
      constant = false;
      break;
    }
  }
  const [low, high] = quantiles(filtered, [0.01, 0.99]);
  const peakToPeakUv = high! - low!;
  const noiseUv = noiseLevel(residual, fs);
  if (nanFraction > 0.5 || constant) problems.push('lead-off');
  else if (!(peakToPeakUv >= FLAT_UV)) problems.push('flat');
  if (!problems.includes('lead-off') && saturatedFraction(raw, fs) > 0.01) problems.push('saturated');
  if (noiseUv > NOISE_UV || peakToPeakUv > HUGE_UV) problems.push('noisy');
  return {
    lead: name,
    usable: problems.length === 0,
    problems,
    peakToPeakUv: Number.isFinite(peakToPeakUv) ? Math.round(peakToPeakUv) : 0,
    noiseUv: Math.round(noiseUv * 10) / 10,
  };
}

/** Overall verdict from the per-lead ones; derived leads (computed from others) do not count twice. */
export function overallQuality(leads: LeadQuality[]): EcgQuality['overall'] {
  if (leads.length === 0) return 'poor';
  const usable = leads.filter((l) => l.usable).length;
  if (usable === leads.length) return 'good';
  return usable * 2 >= leads.length && usable > 0 ? 'acceptable' : 'poor';
}

/**
 * Resamples, filters and assesses every lead, keeping the source's lead order. NaN (missing) samples stay NaN
 * at the same times. The median beat, if any, is passed through unchanged.
 */
export function normalizeEcg(ecg: Ecg, options: NormalizeOptions = {}): NormalizedEcg {
  const fsIn = ecg.samplingFrequency;
  const fs = options.samplingFrequency ?? NORMALIZED_SAMPLING_FREQUENCY;
  const highPass = options.highPassHz ?? 0.5;
  const outLength = fsIn === fs ? ecg.sampleCount : Math.floor((ecg.sampleCount * fs) / fsIn);

  const bridged: { lead: EcgLead; signal: Float64Array; missing: Uint8Array | null; nanFraction: number }[] =
    [];
  for (const lead of ecg.leads) {
    const x = new Float64Array(lead.samplesUv.subarray(0, ecg.sampleCount));
    const any = bridgeGaps(x);
    let nan = 0;
    let missing: Uint8Array | null = null;
    if (any) {
      for (let i = 0; i < x.length; i++) if (Number.isNaN(lead.samplesUv[i]!)) nan++;
      missing = new Uint8Array(outLength);
      for (let i = 0; i < outLength; i++) {
        const src = Math.min(lead.samplesUv.length - 1, Math.round((i * fsIn) / fs));
        missing[i] = Number.isNaN(lead.samplesUv[src]!) ? 1 : 0;
      }
    }
    const signal = fsIn === fs ? x : resample(x, fsIn, fs);
    bridged.push({ lead, signal, missing, nanFraction: x.length > 0 ? nan / x.length : 1 });
  }

  const signals = bridged.map((b) => b.signal);
  if (highPass > 0) filtfiltEach([biquad('highpass', highPass, fs)], signals);

  let mains: 50 | 60 | null;
  if (options.mainsFrequency !== undefined)
    mains = options.mainsFrequency === 0 ? null : options.mainsFrequency;
  else
    mains =
      mainsFromFile(ecg) ??
      detectMains(
        bridged.slice(0, 3).map((b) => b.signal),
        fs,
      );
  if (mains !== null && mains < fs / 2) {
    filtfiltEach([biquad('notch', mains, fs, 30)], signals);
  }

  // The >35 Hz residual of every assessed lead, for its noise level.
  const residuals = bridged.map((b) => (!b.lead.derived && fs >= 100 ? b.signal.slice() : null));
  filtfiltEach(
    [biquad('highpass', 35, fs)],
    residuals.filter((r) => r !== null),
  );
  const quality: LeadQuality[] = [];
  const leads: EcgLead[] = bridged.map(({ lead, signal, missing, nanFraction }, index) => {
    const samplesUv = new Float32Array(outLength);
    if (missing) {
      for (let i = 0; i < outLength; i++) samplesUv[i] = missing[i] ? Number.NaN : signal[i]!;
    } else {
      samplesUv.set(signal.subarray(0, outLength));
      // A lead shorter than the record ends in missing samples.
      if (signal.length < outLength) samplesUv.fill(Number.NaN, signal.length);
    }
    if (!lead.derived) {
      quality.push(assessLead(lead.name, lead.samplesUv, signal, nanFraction, fs, residuals[index] ?? null));
    }
    const out: EcgLead = { name: lead.name, samplesUv };
    if (lead.derived) out.derived = true;
    return out;
  });

  const acquisition: Record<string, string | number> = { ...ecg.acquisition };
  acquisition.normalization = [
    fsIn === fs ? `${fs} Hz` : `resampled ${fsIn} → ${fs} Hz`,
    highPass > 0 ? `${highPass} Hz zero-phase high-pass` : 'no high-pass',
    mains ? `${mains} Hz notch` : 'no notch',
  ].join('; ');
  const normalized: Ecg = {
    ...ecg,
    leads,
    samplingFrequency: fs,
    sampleCount: outLength,
    durationSeconds: outLength / fs,
    acquisition,
  };
  return {
    ecg: normalized,
    quality: { overall: overallQuality(quality), leads: quality },
    mainsFrequency: mains,
  };
}
