/**
 * Synthetic ECGs for tests: P, QRS and T as Gaussians at chosen beat times, per-lead gains like a normal
 * 12-lead, optional baseline wander, mains hum and noise (seeded, so runs repeat).
 */
import type { Ecg } from '../../src/formats/ecg/ecg.js';

/** Each lead's share of the heart vector (QRS, P/T), roughly as on a normal 12-lead ECG. */
export const LEAD_GAIN: Record<string, [number, number]> = {
  I: [0.6, 0.3],
  II: [1, 0.4],
  III: [0.5, 0.2],
  aVR: [-0.8, -0.3],
  aVL: [0.3, 0.15],
  aVF: [0.8, 0.3],
  V1: [-0.6, 0.2],
  V2: [0.9, 0.5],
  V3: [1.2, 0.5],
  V4: [1.4, 0.45],
  V5: [1.2, 0.4],
  V6: [0.9, 0.3],
};

export interface SyntheticOptions {
  fs?: number;
  seconds?: number;
  /** Beat times in seconds; default: regular at `bpm`. */
  beats?: number[];
  bpm?: number;
  /** µV peak of 0.3 Hz baseline wander. */
  wanderUv?: number;
  /** µV peak of mains hum and its frequency. */
  humUv?: number;
  humHz?: number;
  /** µV standard deviation of white noise. */
  noiseUv?: number;
  seed?: number;
}

/** A deterministic pseudo-random generator (mulberry32). */
export function random(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export function regularBeats(bpm: number, seconds: number, first = 0.3): number[] {
  const beats: number[] = [];
  for (let t = first; t < seconds - 0.05; t += 60 / bpm) beats.push(t);
  return beats;
}

/** One lead's samples (µV) for beats at the given times. */
export function syntheticLead(name: string, options: SyntheticOptions = {}): Float32Array {
  const fs = options.fs ?? 500;
  const seconds = options.seconds ?? 10;
  const beats = options.beats ?? regularBeats(options.bpm ?? 72, seconds);
  const [qrsGain, waveGain] = LEAD_GAIN[name] ?? [1, 0.3];
  const n = Math.round(fs * seconds);
  const out = new Float32Array(n);
  const rnd = random(options.seed ?? 1);
  const gauss = () => {
    const u = Math.max(1e-12, rnd());
    return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * rnd());
  };
  const g = (t: number, centre: number, width: number, height: number) =>
    height * Math.exp(-((t - centre) ** 2) / (2 * width * width));
  for (const beat of beats) {
    const from = Math.max(0, Math.floor((beat - 0.3) * fs));
    const to = Math.min(n, Math.ceil((beat + 0.45) * fs));
    for (let i = from; i < to; i++) {
      const t = i / fs;
      out[i] =
        out[i]! +
        g(t, beat - 0.14, 0.025, 120) * waveGain +
        (g(t, beat - 0.02, 0.008, -150) + g(t, beat, 0.01, 1200) + g(t, beat + 0.02, 0.009, -250)) * qrsGain +
        g(t, beat + 0.24, 0.045, 300) * waveGain;
    }
  }
  for (let i = 0; i < n; i++) {
    const t = i / fs;
    let v = out[i]!;
    if (options.wanderUv) v += options.wanderUv * Math.sin(2 * Math.PI * 0.3 * t);
    if (options.humUv) v += options.humUv * Math.sin(2 * Math.PI * (options.humHz ?? 50) * t);
    if (options.noiseUv) v += options.noiseUv * gauss();
    out[i] = v;
  }
  return out;
}

export function syntheticEcg(names: string[], options: SyntheticOptions = {}): Ecg {
  const fs = options.fs ?? 500;
  const seconds = options.seconds ?? 10;
  const leads = names.map((name, i) => ({
    name,
    samplesUv: syntheticLead(name, { ...options, seed: (options.seed ?? 1) + i }),
  }));
  const sampleCount = leads[0]?.samplesUv.length ?? Math.round(fs * seconds);
  return {
    leads,
    samplingFrequency: fs,
    sampleCount,
    durationSeconds: sampleCount / fs,
    acquisition: {},
    patient: {},
    source: { format: 'test' },
  };
}

export const TWELVE = ['I', 'II', 'III', 'aVR', 'aVL', 'aVF', 'V1', 'V2', 'V3', 'V4', 'V5', 'V6'];
