import { describe, expect, test } from 'vitest';
import { biquad, extremeKth, filtfilt, filtfiltEach, quantiles } from '../../src/formats/ecg/dsp.js';
import { random } from '../helpers/ecg-synthetic.js';

function noisySignal(length: number, seed: number): Float64Array {
  const rnd = random(seed);
  return Float64Array.from(
    { length },
    (_, i) => 800 * Math.sin(i / 37) + 300 * Math.sin(i / 3.1) + 200 * (rnd() - 0.5) + 1500,
  );
}

describe('filtfiltEach', () => {
  const sections = [biquad('highpass', 0.5, 500), biquad('lowpass', 15, 500), biquad('notch', 50, 500, 30)];

  test('gives each signal exactly what filtfilt gives it, paired or not', () => {
    // Two pairs of equal length, one signal left over, one empty, one of a single sample.
    const lengths = [5000, 3000, 5000, 3000, 777, 0, 1];
    const signals = lengths.map((n, i) => noisySignal(n, i + 1));
    const expected = signals.map((x) => filtfilt(sections, x.slice()));
    filtfiltEach(sections, signals);
    signals.forEach((x, i) => {
      expect(x.length).toBe(lengths[i]);
      // Bit for bit: the pairing must not change any rounding.
      expect(Buffer.from(x.buffer).equals(Buffer.from(expected[i]!.buffer))).toBe(true);
    });
  });
});

describe('extreme quantiles', () => {
  test.each([
    ['distinct values', (r: () => number) => r() * 1000 - 500],
    ['many ties', (r: () => number) => Math.floor(r() * 4) - 2],
  ])('extremeKth matches a full sort (%s)', (_name, draw) => {
    const rnd = random(11);
    for (let trial = 0; trial < 300; trial++) {
      const count = 1 + Math.floor(rnd() * 3000);
      const values = Float64Array.from({ length: count }, () => draw(rnd));
      const sorted = values.slice().sort();
      const before = values.slice();
      const near = Math.floor(rnd() * Math.min(count, 60));
      for (const k of [near, count - 1 - near]) expect(extremeKth(values, count, k)).toBe(sorted[k]);
      expect(Buffer.from(values.buffer).equals(Buffer.from(before.buffer))).toBe(true);
    }
  });

  test('quantiles at the ends and in the middle match a full sort of the sampled values', () => {
    const x = noisySignal(5000, 5);
    // 5000 values are sampled every second one (at most ~2000 are kept).
    const sampled = Float64Array.from({ length: 2500 }, (_, i) => x[2 * i]!).sort();
    const qs = [0, 0.01, 0.5, 0.98, 0.99, 1];
    const expected = qs.map((q) => sampled[Math.round(q * (sampled.length - 1))]!);
    expect(quantiles(x, qs)).toEqual(expected);
  });
});
