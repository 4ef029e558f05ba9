import { describe, expect, test } from 'vitest';
import { resample } from '../../src/formats/ecg/dsp.js';
import type { Ecg } from '../../src/formats/ecg/ecg.js';
import { measureRhythm, triageEcg } from '../../src/formats/ecg/measure.js';
import { normalizeEcg } from '../../src/formats/ecg/normalize.js';
import { detectQrs } from '../../src/formats/ecg/qrs.js';
import { random, regularBeats, syntheticEcg, syntheticLead, TWELVE } from '../helpers/ecg-synthetic.js';

function amplitudeAt(x: ArrayLike<number>, f: number, fs: number, from = 0, to = x.length): number {
  let re = 0;
  let im = 0;
  for (let i = from; i < to; i++) {
    re += x[i]! * Math.cos((2 * Math.PI * f * i) / fs);
    im += x[i]! * Math.sin((2 * Math.PI * f * i) / fs);
  }
  return (2 * Math.hypot(re, im)) / (to - from);
}

const sine = (f: number, fs: number, seconds: number, amp = 1000) =>
  Float64Array.from({ length: fs * seconds }, (_, i) => amp * Math.sin((2 * Math.PI * f * i) / fs));

describe('resampling', () => {
  test('1000 → 500 Hz keeps 10 Hz and removes 300 Hz (anti-aliasing, no fold-down to 200 Hz)', () => {
    const x = sine(10, 1000, 4);
    const alias = sine(300, 1000, 4);
    const y = resample(
      Float64Array.from(x, (v, i) => v + alias[i]!),
      1000,
      500,
    );
    expect(y).toHaveLength(2000);
    expect(amplitudeAt(y, 10, 500, 200, 1800)).toBeCloseTo(1000, -1);
    expect(amplitudeAt(y, 200, 500, 200, 1800)).toBeLessThan(5);
  });

  test('360 → 500 Hz keeps a 20 Hz tone at its amplitude', () => {
    const y = resample(sine(20, 360, 4), 360, 500);
    expect(y).toHaveLength(2000);
    expect(amplitudeAt(y, 20, 500, 200, 1800)).toBeCloseTo(1000, -1);
  });
});

describe('normalizeEcg', () => {
  test('removes baseline wander and mains hum, keeps the QRS, resamples to 500 Hz', () => {
    const clean = syntheticEcg(['II'], { fs: 1000 });
    const dirty = syntheticEcg(['II'], { fs: 1000, wanderUv: 800, humUv: 200, humHz: 50 });
    const out = normalizeEcg(dirty, { mainsFrequency: 50 });
    expect(out.ecg.samplingFrequency).toBe(500);
    expect(out.ecg.sampleCount).toBe(5000);
    expect(out.mainsFrequency).toBe(50);
    const y = out.ecg.leads[0]!.samplesUv;
    expect(amplitudeAt(y, 50, 500, 500, 4500)).toBeLessThan(10);
    expect(amplitudeAt(y, 0.3, 500, 0, 5000)).toBeLessThan(120);
    // R peaks keep their 1.2 mV up to what is left of the wander: a 0.5 Hz high-pass (−6 dB there, run twice)
    // keeps about 12 % of a 0.3 Hz wave, so ~100 µV of the 800 µV wander remains.
    const reference = normalizeEcg(clean, { mainsFrequency: 0 }).ecg.leads[0]!.samplesUv;
    const peak = (a: Float32Array) => a.subarray(500, 4500).reduce((m, v) => Math.max(m, v), 0);
    expect(Math.abs(peak(y) - peak(reference))).toBeLessThan(120);
    expect(peak(y)).toBeGreaterThan(1000);
  });

  test('mains is taken from the file or detected when not given', () => {
    const humming = syntheticEcg(['II'], { fs: 500, humUv: 300, humHz: 60 });
    expect(normalizeEcg(humming).mainsFrequency).toBe(60);
    const quiet = syntheticEcg(['II'], { fs: 500 });
    expect(normalizeEcg(quiet).mainsFrequency).toBe(null);
    expect(normalizeEcg({ ...quiet, acquisition: { mainsFrequency: 50 } }).mainsFrequency).toBe(50);
  });

  test('leaves the original untouched and keeps NaN gaps where they were', () => {
    const ecg = syntheticEcg(['I', 'II'], { fs: 500 });
    ecg.leads[0]!.samplesUv.fill(Number.NaN, 1000, 1100);
    const before = Array.from(ecg.leads[1]!.samplesUv.subarray(0, 50));
    const out = normalizeEcg(ecg);
    expect(Array.from(ecg.leads[1]!.samplesUv.subarray(0, 50))).toEqual(before);
    expect(Number.isNaN(out.ecg.leads[0]!.samplesUv[1050]!)).toBe(true);
    expect(Number.isNaN(out.ecg.leads[0]!.samplesUv[900]!)).toBe(false);
  });

  test.each([
    ['lead off (all missing)', (x: Float32Array) => x.fill(Number.NaN), 'lead-off'],
    ['lead off (constant)', (x: Float32Array) => x.fill(1234), 'lead-off'],
    [
      'flat (only tiny noise)',
      (x: Float32Array) => {
        for (let i = 0; i < x.length; i++) x[i] = Math.sin(i) * 5;
      },
      'flat',
    ],
    [
      'saturated (clipped at the rail)',
      (x: Float32Array) => {
        for (let i = 0; i < x.length; i++) x[i] = Math.min(x[i]!, 300);
      },
      'saturated',
    ],
    [
      'noisy (EMG-like broadband noise)',
      (x: Float32Array) => {
        const r = random(7);
        for (let i = 0; i < x.length; i++) x[i] = x[i]! + (r() - 0.5) * 600;
      },
      'noisy',
    ],
  ])('quality: %s', (_label, damage, problem) => {
    const ecg = syntheticEcg(['I', 'II', 'V2'], { fs: 500 });
    damage(ecg.leads[0]!.samplesUv);
    const { quality } = normalizeEcg(ecg);
    expect(quality.leads[0]!.problems).toContain(problem);
    expect(quality.leads[0]!.usable).toBe(false);
    expect(quality.leads[1]!.usable).toBe(true);
    expect(quality.overall).toBe('acceptable');
  });
});

describe('detectQrs', () => {
  test.each([30, 45, 72, 120, 180, 220])('regular rhythm at %i/min on a 12-lead finds every beat', (bpm) => {
    const seconds = 20;
    const beats = regularBeats(bpm, seconds);
    const ecg = normalizeEcg(syntheticEcg(TWELVE, { seconds, bpm, noiseUv: 15, wanderUv: 300 }));
    const found = detectQrs(ecg.ecg, { quality: ecg.quality.leads }).times;
    expect(found).toHaveLength(beats.length);
    found.forEach((t, i) => {
      expect(Math.abs(t - beats[i]!)).toBeLessThan(0.03);
    });
  });

  test('works at 250 and 1000 Hz, and with one lead lost', () => {
    for (const fs of [250, 1000]) {
      const ecg = syntheticEcg(['I', 'II', 'V1'], { fs, seconds: 10, bpm: 80 });
      ecg.leads[1]!.samplesUv.fill(Number.NaN);
      const n = normalizeEcg(ecg);
      expect(detectQrs(n.ecg, { quality: n.quality.leads }).times).toHaveLength(regularBeats(80, 10).length);
    }
  });

  test('irregular rhythm with tall T waves: no T wave counted as a beat', () => {
    const r = random(3);
    const beats: number[] = [];
    for (let t = 0.4; t < 29.5; t += 0.45 + r() * 0.6) beats.push(t);
    const ecg = syntheticEcg(['II'], { seconds: 30, beats, noiseUv: 10 });
    expect(detectQrs(ecg).times).toHaveLength(beats.length);
  });

  test('no signal, no beats', () => {
    const ecg = syntheticEcg(['II'], { seconds: 10, beats: [] });
    expect(detectQrs(ecg).times).toEqual([]);
  });
});

function withBeats(beats: number[], seconds: number, names = ['I', 'II', 'V2']): Ecg {
  return syntheticEcg(names, { seconds, beats, noiseUv: 8 });
}

describe('triageEcg', () => {
  test.each([
    ['normal sinus rhythm', regularBeats(72, 10), 10, [], null],
    ['bradycardia 35/min', regularBeats(35, 12), 12, ['BRADYCARDIA'], 'stat'],
    ['tachycardia 180/min', regularBeats(180, 10), 10, ['TACHYCARDIA'], 'stat'],
    ['a 3.5 s pause', [0.5, 1.3, 2.1, 2.9, 6.4, 7.2, 8.0, 8.8, 9.6], 10, ['PAUSE'], 'stat'],
    ['asystole after three beats', [0.5, 1.3, 2.1], 10, ['ASYSTOLE'], 'stat'],
  ] as const)('%s', (_label, beats, seconds, codes, priority) => {
    const triage = triageEcg(withBeats([...beats], seconds));
    expect(triage.flags.map((f) => f.code)).toEqual(codes);
    expect(triage.priority).toBe(priority);
    if (priority) expect(triage.reason).toMatch(/./);
    else expect(triage.reason).toBe(null);
  });

  test('heart rate and RR intervals', () => {
    const triage = triageEcg(withBeats(regularBeats(75, 10), 10));
    expect(triage.heartRate).toBe(75);
    expect(triage.rr.meanMs).toBe(800);
    expect(triage.rr.intervalsMs.every((v) => Math.abs(v - 800) <= 4)).toBe(true);
    expect(triage.quality.overall).toBe('good');
  });

  test('irregularly irregular RR → possible AF flag, not stat at a normal rate', () => {
    const r = random(11);
    const beats: number[] = [];
    for (let t = 0.4; t < 19.5; t += 0.5 + r() * 0.5) beats.push(t);
    const triage = triageEcg(withBeats(beats, 20));
    expect(triage.rr.irregular).toBe(true);
    expect(triage.flags.map((f) => f.code)).toEqual(['IRREGULAR_RHYTHM']);
    expect(triage.priority).toBe(null);
  });

  test('sinus arrhythmia (smooth RR change) is not called irregular', () => {
    const beats: number[] = [];
    for (let t = 0.4, k = 0; t < 19.5; k++) {
      beats.push(t);
      t += 0.85 + 0.12 * Math.sin(k / 2);
    }
    expect(measureRhythm(beats, 20).rr.irregular).toBe(false);
  });

  test('every lead flat: asystole flagged as such, with the leads-off caveat', () => {
    const ecg = withBeats([], 10);
    for (const lead of ecg.leads) lead.samplesUv.fill(0);
    const triage = triageEcg(ecg);
    expect(triage.priority).toBe('stat');
    expect(triage.flags[0]).toMatchObject({ code: 'ASYSTOLE', critical: true });
    expect(triage.flags[0]!.message).toMatch(/leads off/);
    expect(triage.flags.map((f) => f.code)).toContain('POOR_QUALITY');
  });

  test('a long Holter record: a tachycardia run is found even when the mean rate is normal', () => {
    const beats = [
      ...regularBeats(70, 120),
      ...regularBeats(170, 20).map((t) => t + 120),
      ...regularBeats(70, 60).map((t) => t + 140),
    ];
    const triage = triageEcg(syntheticEcg(['II'], { seconds: 200, beats, fs: 250 }));
    expect(triage.heartRate).toBeLessThan(100);
    expect(triage.flags.map((f) => f.code)).toContain('TACHYCARDIA');
  });

  test('a CSV-style assumed scale is flagged', () => {
    const ecg = withBeats(regularBeats(72, 10), 10);
    ecg.acquisition.assumptions = 'sampling frequency not stated: 500 Hz assumed';
    expect(triageEcg(ecg).flags.map((f) => f.code)).toEqual(['ASSUMED_SCALE']);
  });

  test('one beat of RR measures is null, not NaN', () => {
    const m = measureRhythm([1], 2);
    expect(m.heartRate).toBe(null);
    expect(m.rr.meanMs).toBe(null);
    expect(syntheticLead('II', { seconds: 1 })).toHaveLength(500);
  });
});
