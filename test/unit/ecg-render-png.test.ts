import sharp from 'sharp';
import { describe, expect, test } from 'vitest';
import type { Ecg } from '../../src/formats/ecg/ecg.js';
import { DEFAULT_ECG_IMAGE_WIDTH, renderEcg, renderEcgPng } from '../../src/imaging/render-ecg.js';
import { TWELVE } from '../helpers/ecg-synthetic.js';

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
    // Three 10 s strips of both leads: 6 rows of 40 mm + header + margin = 260 mm.
    expect(image.height).toBe(Math.round((800 * 260) / 275));
  });

  test('pages rendered at the same time (sharing the spare pixel buffers) come out as when rendered alone', async () => {
    const a = sineEcg(TWELVE, 10);
    const b = sineEcg(TWELVE, 10);
    for (const lead of b.leads) lead.samplesUv = lead.samplesUv.map((v) => -2 * v);
    const pixels = (image: { data: Buffer }) => sharp(image.data).raw().toBuffer();
    const same = async (x: { data: Buffer }, y: { data: Buffer }) =>
      (await pixels(x)).equals(await pixels(y));
    const alone = [await renderEcgPng(a), await renderEcgPng(b)];
    const together = await Promise.all([renderEcgPng(a), renderEcgPng(b), renderEcgPng(a)]);
    expect(await same(together[0]!, alone[0]!)).toBe(true);
    expect(await same(together[1]!, alone[1]!)).toBe(true);
    expect(await same(together[2]!, alone[0]!)).toBe(true);
    expect(await same(alone[0]!, alone[1]!)).toBe(false);
  });

  test('renderEcg lays out once and returns the SVG and the thumbnail of the same page', async () => {
    const { svg, image } = await renderEcg(sineEcg(TWELVE, 10), { width: 800 });
    expect(svg).toMatch(/^<svg[^>]*width="800" height="640"/);
    expect([image.width, image.height]).toEqual([800, 640]);
  });

  test('in the thumbnail the 1 mV calibration pulse is 10 mm tall in pixels and the grid pitch is width/275', async () => {
    const width = 1100; // 4 px per mm
    const flat = sineEcg(TWELVE, 10);
    for (const lead of flat.leads) lead.samplesUv.fill(0);
    const image = await renderEcgPng(flat, { width });
    const { data, info } = await sharp(image.data).raw().toBuffer({ resolveWithObject: true });
    const pxPerMm = width / 275;
    const dark = (x: number, y: number) => data[(y * info.width + x) * info.channels]! < 110;
    // The pulse's rising edge is 2.5 mm into the first row's 10 mm calibration area (x = 5 + 2.5 mm).
    const x = Math.round((5 + 2.5) * pxPerMm);
    const column = Array.from(
      { length: info.height },
      (_, y) => dark(x, y) || dark(x + 1, y) || dark(x - 1, y),
    );
    // Below the header and the first row's lead label.
    const first = column.indexOf(true, Math.round(22 * pxPerMm));
    let last = first;
    while (column[last + 1]) last++;
    expect(last - first).toBeGreaterThanOrEqual(Math.round(10 * pxPerMm) - 1);
    expect(last - first).toBeLessThanOrEqual(Math.round(10 * pxPerMm) + 1);
    // Grid: pink major lines every 5 mm along a grid row clear of labels and traces (12.5 mm into the first
    // row), i.e. every 20 px at 4 px/mm.
    const y = Math.round((15 + 12.5) * pxPerMm);
    const majors: number[] = [];
    for (let gx = 0; gx < info.width; gx++) {
      const i = (y * info.width + gx) * info.channels;
      if (data[i]! > 200 && data[i + 1]! < 160 && data[i + 1]! > 120) majors.push(gx);
    }
    const pitches = majors.slice(1).map((v, i) => v - majors[i]!);
    expect(pitches.length).toBeGreaterThan(40);
    expect(new Set(pitches)).toEqual(new Set([5 * pxPerMm]));
  });
});
