/**
 * Paints the ECG page (ecg-page.ts) into an RGB pixel buffer: paper, grid, calibration pulses and traces.
 * Text is not painted here (src/imaging/render-ecg.ts lays the page's text over it). Pure and fast: grid lines
 * are single pixel columns and rows snapped to the nearest pixel, traces are anti-aliased (Wu) lines, so a
 * 12-lead thumbnail paints in about a millisecond, where a general SVG rasteriser needs tens.
 */
import { COLORS, type EcgPage } from './ecg-page.js';

export interface RgbImage {
  /** width × height × 3 bytes, row by row. */
  data: Uint8Array;
  width: number;
  height: number;
}

function rgb(hex: string): [number, number, number] {
  const h = hex.length === 4 ? hex.replace(/^#(.)(.)(.)$/, '#$1$1$2$2$3$3') : hex;
  return [
    Number.parseInt(h.slice(1, 3), 16),
    Number.parseInt(h.slice(3, 5), 16),
    Number.parseInt(h.slice(5, 7), 16),
  ];
}

class Canvas {
  readonly data: Uint8Array;
  constructor(
    readonly width: number,
    readonly height: number,
  ) {
    this.data = new Uint8Array(width * height * 3).fill(255);
  }

  /** Blends `color` over the pixel with coverage `alpha` (0..1). */
  blend(x: number, y: number, color: [number, number, number], alpha: number): void {
    if (x < 0 || y < 0 || x >= this.width || y >= this.height || alpha <= 0) return;
    const i = (y * this.width + x) * 3;
    const a = Math.min(alpha, 1);
    const d = this.data;
    d[i] = d[i]! + (color[0] - d[i]!) * a;
    d[i + 1] = d[i + 1]! + (color[1] - d[i + 1]!) * a;
    d[i + 2] = d[i + 2]! + (color[2] - d[i + 2]!) * a;
  }

  vline(x: number, y0: number, y1: number, color: [number, number, number]): void {
    if (x < 0 || x >= this.width) return;
    const d = this.data;
    for (let y = Math.max(0, y0); y <= Math.min(this.height - 1, y1); y++) {
      const i = (y * this.width + x) * 3;
      d[i] = color[0];
      d[i + 1] = color[1];
      d[i + 2] = color[2];
    }
  }

  hline(y: number, x0: number, x1: number, color: [number, number, number]): void {
    if (y < 0 || y >= this.height) return;
    const d = this.data;
    for (let x = Math.max(0, x0); x <= Math.min(this.width - 1, x1); x++) {
      const i = (y * this.width + x) * 3;
      d[i] = color[0];
      d[i + 1] = color[1];
      d[i + 2] = color[2];
    }
  }

  /** Xiaolin Wu's anti-aliased line, widened by `extra` (0..1) of a pixel on the minor axis for strokes a bit
   * heavier than one pixel. Coordinates in pixels. */
  line(x0: number, y0: number, x1: number, y1: number, color: [number, number, number], extra: number): void {
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
    const plot = steep
      ? (a: number, b: number, c: number) => this.blend(b, a, color, c)
      : (a: number, b: number, c: number) => this.blend(a, b, color, c);
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
  }
}

/** Paints paper, grid, calibration and traces at the page's pixel size. */
export function rasterizeEcgPage(page: EcgPage): RgbImage {
  const { widthPx: width, heightPx: height, pxPerMm: k } = page;
  const canvas = new Canvas(width, height);
  const minor = rgb(COLORS.gridMinor);
  const major = rgb(COLORS.gridMajor);
  const ink = rgb(COLORS.trace);
  const { x, y, width: gw, height: gh } = page.grid;
  const px0 = Math.round(x * k);
  const px1 = Math.round((x + gw) * k);
  const py0 = Math.round(y * k);
  const py1 = Math.round((y + gh) * k);
  // Minor lines first so major ones win where they coincide.
  for (const pass of [1, 0]) {
    const color = pass === 1 ? minor : major;
    for (let i = 0; i <= Math.round(gw); i++) {
      if ((i % 5 === 0 ? 0 : 1) === pass) canvas.vline(Math.round((x + i) * k), py0, py1, color);
    }
    for (let j = 0; j <= Math.round(gh); j++) {
      if ((j % 5 === 0 ? 0 : 1) === pass) canvas.hline(Math.round((y + j) * k), px0, px1, color);
    }
  }
  // A 0.3 mm pen: one anti-aliased pixel plus whatever width is left over.
  const extra = Math.max(0, Math.min(1, 0.3 * k - 1));
  const stroke = (points: Float32Array): void => {
    for (let i = 0; i + 3 < points.length; i += 2) {
      const ax = points[i]!;
      const bx = points[i + 2]!;
      if (Number.isNaN(ax) || Number.isNaN(bx)) continue;
      canvas.line(ax * k, points[i + 1]! * k, bx * k, points[i + 3]! * k, ink, extra);
    }
  };
  for (const pulse of page.calibration) stroke(pulse);
  for (const trace of page.traces) stroke(trace.points);
  for (const [sx, sy0, sy1] of page.separators) stroke(Float32Array.from([sx, sy0, sx, sy1]));
  return { data: canvas.data, width, height };
}
