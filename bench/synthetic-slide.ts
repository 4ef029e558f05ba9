/**
 * The synthetic slide of ANCHORS §4 (big.tif): 40000 × 30000 RGB, 256 px JPEG Q80 tiles, a full pyramid
 * (9 pages), written by Debian's vips CLI (`tiffsave --tile --pyramid --compression jpeg`) in a temporary
 * folder that the benchmark's clean-up removes.
 */
import path from 'node:path';
import { check, msSince, run } from './lib.js';

export const SLIDE_WIDTH = 40_000;
export const SLIDE_HEIGHT = 30_000;
const TEXTURE = 2000;

/**
 * Blurred noise tinted pink and purple, replicated 20 × 15 straight into the pyramidal TIFF, so no
 * full-size intermediate is ever written. The 2000 px texture repeats, so entropy is lower than real tissue
 * (ANCHORS caveat), but every tile is still a real JPEG to decode.
 */
export async function buildSlide(dir: string): Promise<{ file: string; seconds: number }> {
  const started = process.hrtime.bigint();
  const noise = path.join(dir, 'noise.v');
  const blur = path.join(dir, 'blur.v');
  const tile = path.join(dir, 'tile.v');
  const file = path.join(dir, 'big.tif');
  const steps: Array<[string, string[]]> = [
    ['gaussnoise', [noise, String(TEXTURE), String(TEXTURE), '--mean', '128', '--sigma', '40']],
    ['gaussblur', [noise, blur, '1.5']],
    ['linear', [blur, tile, '0.85 0.55 0.8', '60 20 70', '--uchar']],
    // `vips replicate IN OUT[tiffsave options]` is `vips tiffsave` of the replicated image, streamed.
    [
      'replicate',
      [
        tile,
        `${file}[tile,pyramid,compression=jpeg,Q=80,tile-width=256,tile-height=256]`,
        String(SLIDE_WIDTH / TEXTURE),
        String(SLIDE_HEIGHT / TEXTURE),
      ],
    ],
  ];
  for (const [op, args] of steps) {
    check(await run('vips', [op, ...args], { timeoutMs: 120_000 }), `vips ${op}`);
  }
  return { file, seconds: msSince(started) / 1000 };
}
