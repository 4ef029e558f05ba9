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

type Rgb = [number, number, number];

function rgb(hex: string): Rgb {
  const h = hex.length === 4 ? hex.replace(/^#(.)(.)(.)$/, '#$1$1$2$2$3$3') : hex;
  return [
    Number.parseInt(h.slice(1, 3), 16),
    Number.parseInt(h.slice(3, 5), 16),
    Number.parseInt(h.slice(5, 7), 16),
  ];
}

const NONE = 0;
const MINOR = 1;
const MAJOR = 2;

/**
 * Paper and grid, a row at a time. The grid is minor lines every millimetre and major ones every 5 mm, each
 * a pixel column (over the grid's rows) or a pixel row (over its columns), major over minor where they meet.
 * A pixel row is then one of at most six patterns (inside or outside the grid's rows × no, minor or major
 * horizontal line), so each pattern is built once and copied: a per-line painter wrote every grid pixel
 * again for each of the ~470 lines.
 */
function paintGrid(page: EcgPage, data: Uint8Array, width: number, height: number): void {
  const k = page.pxPerMm;
  const minor = rgb(COLORS.gridMinor);
  const major = rgb(COLORS.gridMajor);
  const { x, y, width: gw, height: gh } = page.grid;
  const px0 = Math.max(0, Math.round(x * k));
  const px1 = Math.min(width - 1, Math.round((x + gw) * k));
  const py0 = Math.max(0, Math.round(y * k));
  const py1 = Math.min(height - 1, Math.round((y + gh) * k));
  const columns = new Uint8Array(width);
  for (let i = 0; i <= Math.round(gw); i++) {
    const px = Math.round((x + i) * k);
    if (px < 0 || px >= width) continue;
    const kind = i % 5 === 0 ? MAJOR : MINOR;
    if (kind > columns[px]!) columns[px] = kind;
  }
  const rows = new Uint8Array(height);
  for (let j = 0; j <= Math.round(gh); j++) {
    const py = Math.round((y + j) * k);
    if (py < 0 || py >= height) continue;
    const kind = j % 5 === 0 ? MAJOR : MINOR;
    if (kind > rows[py]!) rows[py] = kind;
  }
  const stride = width * 3;
  const patterns = new Map<number, Uint8Array>();
  const pattern = (inside: boolean, line: number): Uint8Array => {
    const key = (inside ? 3 : 0) + line;
    let row = patterns.get(key);
    if (row) return row;
    row = new Uint8Array(stride).fill(255);
    for (let px = 0; px < width; px++) {
      const onLine = px >= px0 && px <= px1;
      // Later strokes win: minor columns, minor rows, major columns, major rows.
      const kind =
        line === MAJOR && onLine
          ? MAJOR
          : inside && columns[px] === MAJOR
            ? MAJOR
            : line === MINOR && onLine
              ? MINOR
              : inside && columns[px] === MINOR
                ? MINOR
                : NONE;
      if (kind === NONE) continue;
      const color = kind === MAJOR ? major : minor;
      row[px * 3] = color[0];
      row[px * 3 + 1] = color[1];
      row[px * 3 + 2] = color[2];
    }
    patterns.set(key, row);
    return row;
  };
  for (let py = 0; py < height; py++) {
    data.set(pattern(py >= py0 && py <= py1, rows[py]!), py * stride);
  }
}

/**
 * Xiaolin Wu's anti-aliased line, widened by `extra` (0..1) of a pixel on the minor axis for strokes a bit
 * heavier than one pixel. Coordinates in pixels.
 */
function line(
  data: Uint8Array,
  width: number,
  height: number,
  ax: number,
  ay: number,
  bx: number,
  by: number,
  color: Rgb,
  extra: number,
): void {
  const steep = Math.abs(by - ay) > Math.abs(bx - ax);
  // Walk along the major axis (u), stepping the minor one (v).
  let u0 = steep ? ay : ax;
  let v0 = steep ? ax : ay;
  let u1 = steep ? by : bx;
  let v1 = steep ? bx : by;
  if (u0 > u1) {
    const u = u0;
    u0 = u1;
    u1 = u;
    const v = v0;
    v0 = v1;
    v1 = v;
  }
  const du = u1 - u0;
  const gradient = du === 0 ? 0 : (v1 - v0) / du;
  const start = Math.round(u0);
  const end = Math.round(u1);
  const [r, g, b] = color;
  // The pixel step along u and along v, and how far each axis may go.
  const uStep = steep ? width * 3 : 3;
  const vStep = steep ? 3 : width * 3;
  const uLimit = steep ? height : width;
  const vLimit = steep ? width : height;
  let v = v0 + gradient * (start - u0);
  for (let u = start; u <= end; u++) {
    const base = Math.floor(v);
    const frac = v - base;
    if (u >= 0 && u < uLimit) {
      // Coverage of the pixel at `base` and of the one after it on the minor axis.
      for (let side = 0; side < 2; side++) {
        const at = base + side;
        const alpha = side === 0 ? 1 - frac + extra * frac : frac + extra * (1 - frac);
        if (at < 0 || at >= vLimit || alpha <= 0) continue;
        const a = Math.min(alpha, 1);
        const i = u * uStep + at * vStep;
        data[i] = data[i]! + (r - data[i]!) * a;
        data[i + 1] = data[i + 1]! + (g - data[i + 1]!) * a;
        data[i + 2] = data[i + 2]! + (b - data[i + 2]!) * a;
      }
    }
    v += gradient;
  }
}

/**
 * Paints paper, grid, calibration and traces at the page's pixel size. `into` (at least width × height × 3
 * bytes) lets a caller reuse one buffer across pages; every byte of the image is written, so it need not be
 * cleared.
 */
export function rasterizeEcgPage(page: EcgPage, into?: Uint8Array): RgbImage {
  const { widthPx: width, heightPx: height, pxPerMm: k } = page;
  const size = width * height * 3;
  const data = into && into.length >= size ? into.subarray(0, size) : new Uint8Array(size);
  paintGrid(page, data, width, height);
  const ink = rgb(COLORS.trace);
  // A 0.3 mm pen: one anti-aliased pixel plus whatever width is left over.
  const extra = Math.max(0, Math.min(1, 0.3 * k - 1));
  const stroke = (points: ArrayLike<number>): void => {
    for (let i = 0; i + 3 < points.length; i += 2) {
      const ax = points[i]!;
      const bx = points[i + 2]!;
      if (Number.isNaN(ax) || Number.isNaN(bx)) continue;
      line(data, width, height, ax * k, points[i + 1]! * k, bx * k, points[i + 3]! * k, ink, extra);
    }
  };
  for (const pulse of page.calibration) stroke(pulse);
  for (const trace of page.traces) stroke(trace.points);
  // Separators are millimetres like the traces, held at single precision as the trace points are.
  for (const [sx, sy0, sy1] of page.separators) stroke(Float32Array.of(sx, sy0, sx, sy1));
  return { data, width, height };
}
