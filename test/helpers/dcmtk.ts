/**
 * DCMTK as a reference renderer: dcmj2pnm (dcml2pnm for JPEG-LS) writes a PNG of one frame with a given VOI and
 * width, and images are compared as 8-bit grayscale by Pearson correlation.
 */
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import sharp from 'sharp';

const run = promisify(execFile);

export function onPath(tool: string): boolean {
  const dirs = (process.env.PATH ?? '').split(path.delimiter);
  return dirs.some((dir) => dir !== '' && existsSync(path.join(dir, tool)));
}

export const hasDcmj2pnm = onPath('dcmj2pnm');
export const hasDcml2pnm = onPath('dcml2pnm');

export interface GrayImage {
  data: Uint8Array;
  width: number;
  height: number;
}

export type DcmtkVoi = { window: { center: number; width: number } } | { voiLut: number } | 'none';

export interface DcmtkRenderOptions {
  tool: 'dcmj2pnm' | 'dcml2pnm';
  /** Zero-based. */
  frame: number;
  voi: DcmtkVoi;
  /** Scales the longer axis to this many pixels (DCMTK derives the other from the pixel aspect). */
  width: number;
  height: number;
}

/** Renders one frame with DCMTK into a temporary directory and returns it as grayscale. Overlay planes are
 * drawn, as dcmj2pnm draws them by default and as Teleread does. */
export async function renderWithDcmtk(file: string, options: DcmtkRenderOptions): Promise<GrayImage> {
  const dir = await mkdtemp(path.join(tmpdir(), 'teleread-dcmtk-'));
  try {
    const out = path.join(dir, 'frame');
    const voi =
      options.voi === 'none'
        ? []
        : 'window' in options.voi
          ? ['+Ww', String(options.voi.window.center), String(options.voi.window.width)]
          : ['+Wl', String(options.voi.voiLut)];
    const scale =
      options.width >= options.height ? ['+Sxv', String(options.width)] : ['+Syv', String(options.height)];
    // DCMTK finds a later frame of fragments without an offset table only when it decodes them all (+Fa),
    // which names the outputs frame.0.png, frame.1.png …
    const frames = options.frame === 0 ? ['+F', '1'] : ['+Fa'];
    await run(options.tool, ['-q', ...frames, ...voi, ...scale, '+on', file, out], {
      timeout: 120_000,
    });
    const written = options.frame === 0 ? out : `${out}.${options.frame}.png`;
    return await toGray(await readFile(written));
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** Any image sharp reads → 8-bit luma (ITU-R BT.601 weights, the same for both images compared). */
export async function toGray(
  image: Uint8Array,
  size?: { width: number; height: number },
): Promise<GrayImage> {
  let pipeline = sharp(image).removeAlpha().toColourspace('srgb');
  if (size) pipeline = pipeline.resize({ width: size.width, height: size.height, fit: 'fill' });
  const { data, info } = await pipeline.raw().toBuffer({ resolveWithObject: true });
  const out = new Uint8Array(info.width * info.height);
  for (let i = 0, o = 0; o < out.length; i += info.channels, o++) {
    out[o] = Math.round(0.299 * data[i]! + 0.587 * data[i + 1]! + 0.114 * data[i + 2]!);
  }
  return { data: out, width: info.width, height: info.height };
}

/** Resizes a grayscale image (to bring a reference to the size of the image under test). */
export async function resizeGray(image: GrayImage, width: number, height: number): Promise<GrayImage> {
  if (image.width === width && image.height === height) return image;
  const { data } = await sharp(image.data, { raw: { width: image.width, height: image.height, channels: 1 } })
    .resize({ width, height, fit: 'fill' })
    .toColourspace('b-w')
    .raw()
    .toBuffer({ resolveWithObject: true });
  return { data: new Uint8Array(data.buffer, data.byteOffset, width * height), width, height };
}

/** Pearson correlation of two equally sized images. Two flat images correlate 1 when equal, else 0. */
export function pearson(a: Uint8Array, b: Uint8Array): number {
  if (a.length !== b.length) throw new Error(`images differ in size: ${a.length} and ${b.length} pixels`);
  const n = a.length;
  let sa = 0;
  let sb = 0;
  for (let i = 0; i < n; i++) {
    sa += a[i]!;
    sb += b[i]!;
  }
  const ma = sa / n;
  const mb = sb / n;
  let cov = 0;
  let va = 0;
  let vb = 0;
  for (let i = 0; i < n; i++) {
    const da = a[i]! - ma;
    const db = b[i]! - mb;
    cov += da * db;
    va += da * da;
    vb += db * db;
  }
  if (va === 0 || vb === 0) {
    let maxDiff = 0;
    for (let i = 0; i < n; i++) maxDiff = Math.max(maxDiff, Math.abs(a[i]! - b[i]!));
    return maxDiff <= 2 ? 1 : 0;
  }
  return cov / Math.sqrt(va * vb);
}

/** Spread of an image's grey levels. */
export function standardDeviation(data: Uint8Array): number {
  let sum = 0;
  for (const v of data) sum += v;
  const mean = sum / data.length;
  let squares = 0;
  for (const v of data) squares += (v - mean) ** 2;
  return Math.sqrt(squares / data.length);
}
