import sharp from 'sharp';
import { describe, expect, test } from 'vitest';
import type { Ecg } from '../../src/formats/ecg/ecg.js';
import { DEFAULT_ECG_IMAGE_WIDTH, renderEcgPng } from '../../src/imaging/render-ecg.js';

const FS = 1000;

function sineEcg(names: string[], seconds: number): Ecg {
  return {
    leads: names.map((name, i) => ({
      name,
      samplesUv: Float32Array.from(
        { length: seconds * FS },
        (_, s) => 800 * Math.sin((2 * Math.PI * s) / FS + i),
      ),
    })),
    samplingFrequency: FS,
    sampleCount: seconds * FS,
    durationSeconds: seconds,
    acquisition: {},
    patient: {},
    source: { format: 'test' },
  };
}

const TWELVE = ['I', 'II', 'III', 'aVR', 'aVL', 'aVF', 'V1', 'V2', 'V3', 'V4', 'V5', 'V6'];

describe('renderEcgPng', () => {
  test('12-lead page at 1250 px is 1250 × 1000, a real PNG with ink on it', async () => {
    const image = await renderEcgPng(sineEcg(TWELVE, 10), { width: 1250 });
    expect(image.contentType).toBe('image/png');
    expect([image.width, image.height]).toEqual([1250, 1000]);
    const meta = await sharp(image.data).metadata();
    expect([meta.format, meta.width, meta.height]).toEqual(['png', 1250, 1000]);
    // White paper, pink grid, black trace: the darkest channel value must be (near) black.
    const stats = await sharp(image.data).stats();
    expect(stats.channels[0]!.min).toBeLessThan(40);
    expect(stats.channels[0]!.max).toBe(255);
  });

  test('defaults to the thumbnail width', async () => {
    const image = await renderEcgPng(sineEcg(TWELVE, 10));
    expect(image.width).toBe(DEFAULT_ECG_IMAGE_WIDTH);
    expect(image.height).toBe(Math.round((DEFAULT_ECG_IMAGE_WIDTH * 220) / 275));
  });

  test('WebP output for a two-lead strip page', async () => {
    const image = await renderEcgPng(sineEcg(['MLII', 'V5'], 30), { width: 800, format: 'webp' });
    expect(image.contentType).toBe('image/webp');
    const meta = await sharp(image.data).metadata();
    expect([meta.format, meta.width, meta.height]).toEqual(['webp', 800, image.height]);
    expect(image.height).toBe(Math.round((800 * 100) / 275));
  });
});
