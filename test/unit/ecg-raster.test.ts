import { describe, expect, test } from 'vitest';
import type { Ecg } from '../../src/formats/ecg/ecg.js';
import { COLORS, type EcgPage, type EcgPageOptions, layoutEcgPage } from '../../src/formats/ecg/ecg-page.js';
import { rasterizeEcgPage } from '../../src/formats/ecg/ecg-raster.js';
import { syntheticEcg, TWELVE } from '../helpers/ecg-synthetic.js';

/**
 * The painter as it was before grid rows were copied from patterns and lines drawn without per-pixel closures:
 * every grid line stroked pixel by pixel onto white paper (minor lines first, then major), then Wu lines. Kept
 * as the reference the faster painter must match byte for byte.
 */
function referencePaint(page: EcgPage): Uint8Array {
  const { widthPx: width, heightPx: height, pxPerMm: k } = page;
  const data = new Uint8Array(width * height * 3).fill(255);
  const rgb = (hex: string): [number, number, number] => {
    const h = hex.length === 4 ? hex.replace(/^#(.)(.)(.)$/, '#$1$1$2$2$3$3') : hex;
    return [1, 3, 5].map((i) => Number.parseInt(h.slice(i, i + 2), 16)) as [number, number, number];
  };
  const put = (x: number, y: number, c: [number, number, number]) => {
    const i = (y * width + x) * 3;
    data[i] = c[0];
    data[i + 1] = c[1];
    data[i + 2] = c[2];
  };
  const blend = (x: number, y: number, c: [number, number, number], alpha: number) => {
    if (x < 0 || y < 0 || x >= width || y >= height || alpha <= 0) return;
    const i = (y * width + x) * 3;
    const a = Math.min(alpha, 1);
    for (let ch = 0; ch < 3; ch++) data[i + ch] = data[i + ch]! + (c[ch]! - data[i + ch]!) * a;
  };
  const vline = (x: number, y0: number, y1: number, c: [number, number, number]) => {
    if (x < 0 || x >= width) return;
    for (let y = Math.max(0, y0); y <= Math.min(height - 1, y1); y++) put(x, y, c);
  };
  const hline = (y: number, x0: number, x1: number, c: [number, number, number]) => {
    if (y < 0 || y >= height) return;
    for (let x = Math.max(0, x0); x <= Math.min(width - 1, x1); x++) put(x, y, c);
  };
  const line = (
    x0: number,
    y0: number,
    x1: number,
    y1: number,
    c: [number, number, number],
    extra: number,
  ) => {
    const steep = Math.abs(y1 - y0) > Math.abs(x1 - x0);
    if (steep) {
      [x0, y0] = [y0, x0];
      [x1, y1] = [y1, x1];
    }
    if (x0 > x1) {
      [x0, x1] = [x1, x0];
      [y0, y1] = [y1, y0];
    }
    const dx = x1 - x0;
    const gradient = dx === 0 ? 0 : (y1 - y0) / dx;
    const plot = (a: number, b: number, cov: number) => (steep ? blend(b, a, c, cov) : blend(a, b, c, cov));
    const start = Math.round(x0);
    const end = Math.round(x1);
    let y = y0 + gradient * (start - x0);
    for (let x = start; x <= end; x++) {
      const base = Math.floor(y);
      const frac = y - base;
      plot(x, base, 1 - frac + extra * frac);
      plot(x, base + 1, frac + extra * (1 - frac));
      y += gradient;
    }
  };
  const minor = rgb(COLORS.gridMinor);
  const major = rgb(COLORS.gridMajor);
  const ink = rgb(COLORS.trace);
  const { x, y, width: gw, height: gh } = page.grid;
  const px0 = Math.round(x * k);
  const px1 = Math.round((x + gw) * k);
  const py0 = Math.round(y * k);
  const py1 = Math.round((y + gh) * k);
  for (const pass of [1, 0]) {
    const color = pass === 1 ? minor : major;
    for (let i = 0; i <= Math.round(gw); i++) {
      if ((i % 5 === 0 ? 0 : 1) === pass) vline(Math.round((x + i) * k), py0, py1, color);
    }
    for (let j = 0; j <= Math.round(gh); j++) {
      if ((j % 5 === 0 ? 0 : 1) === pass) hline(Math.round((y + j) * k), px0, px1, color);
    }
  }
  const extra = Math.max(0, Math.min(1, 0.3 * k - 1));
  const stroke = (points: Float32Array) => {
    for (let i = 0; i + 3 < points.length; i += 2) {
      const ax = points[i]!;
      const bx = points[i + 2]!;
      if (Number.isNaN(ax) || Number.isNaN(bx)) continue;
      line(ax * k, points[i + 1]! * k, bx * k, points[i + 3]! * k, ink, extra);
    }
  };
  for (const pulse of page.calibration) stroke(pulse);
  for (const trace of page.traces) stroke(trace.points);
  for (const [sx, sy0, sy1] of page.separators) stroke(Float32Array.from([sx, sy0, sx, sy1]));
  return data;
}

function differingBytes(a: Uint8Array, b: Uint8Array): number {
  if (a.length !== b.length) return Math.max(a.length, b.length);
  let n = 0;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) n++;
  return n;
}

/** A noisy 12-lead with wander, plus a lead with a gap (NaN samples lift the pen). */
function twelveLead(extra: string[] = []): Ecg {
  const ecg = syntheticEcg([...TWELVE, ...extra], { fs: 500, noiseUv: 25, wanderUv: 300, bpm: 95, seed: 7 });
  ecg.leads[4]!.samplesUv.fill(Number.NaN, 1200, 1900);
  return ecg;
}

const cases: [string, () => Ecg, EcgPageOptions][] = [
  ['12-lead at the smallest width', () => twelveLead(), { width: 64 }],
  ['12-lead below 1 px/mm', () => twelveLead(), { width: 200 }],
  ['12-lead at an odd width', () => twelveLead(), { width: 333 }],
  ['12-lead at the stored 800 px', () => twelveLead(), { width: 800 }],
  ['12-lead at 4 px/mm', () => twelveLead(), { width: 1100 }],
  ['12-lead at 1250 px, gain 20', () => twelveLead(), { width: 1250, gain: 20 }],
  ['12-lead at 2000 px, 50 mm/s', () => twelveLead(), { width: 2000, paperSpeed: 50 }],
  ['15-lead (extra rows)', () => twelveLead(['V4R', 'V7', 'V8']), { width: 1250 }],
  [
    'two-lead strips at 1000 Hz',
    () => syntheticEcg(['MLII', 'V5'], { fs: 1000, seconds: 30, noiseUv: 40 }),
    {},
  ],
  [
    'five strips, gain 5',
    () => syntheticEcg(['A', 'B', 'C', 'D', 'E'], { fs: 250, noiseUv: 10 }),
    { gain: 5 },
  ],
];

describe('rasterizeEcgPage', () => {
  test.each(cases)('%s: the same bytes as the per-line reference painter', (_name, make, options) => {
    const page = layoutEcgPage(make(), options);
    const painted = rasterizeEcgPage(page);
    expect([painted.width, painted.height]).toEqual([page.widthPx, page.heightPx]);
    expect(differingBytes(painted.data, referencePaint(page))).toBe(0);
  });

  test('painting into a used buffer gives the same bytes as a fresh one', () => {
    const first = layoutEcgPage(twelveLead(), { width: 800, gain: 20 });
    const second = layoutEcgPage(syntheticEcg(TWELVE, { noiseUv: 60, seed: 3 }), { width: 800 });
    const buffer = new Uint8Array(first.widthPx * first.heightPx * 3 + 99);
    rasterizeEcgPage(first, buffer);
    const reused = rasterizeEcgPage(second, buffer);
    expect(reused.data.buffer).toBe(buffer.buffer);
    expect(differingBytes(reused.data, rasterizeEcgPage(second).data)).toBe(0);
  });

  test('a buffer too small for the page is not used', () => {
    const page = layoutEcgPage(twelveLead(), { width: 400 });
    const small = new Uint8Array(16);
    const painted = rasterizeEcgPage(page, small);
    expect(painted.data.buffer).not.toBe(small.buffer);
    expect(differingBytes(painted.data, referencePaint(page))).toBe(0);
  });
});
