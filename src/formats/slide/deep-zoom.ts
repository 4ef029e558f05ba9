/**
 * Deep Zoom (DZI) geometry over a slide pyramid. Deep Zoom halves the image from level `maxLevel` (full size)
 * down to level 0 (one pixel); a viewer asks for tile (col, row) of some level, and the tile is cut from
 * the stored pyramid level whose resolution is the nearest at or above the one asked for, so no pyramid is
 * generated up front. Pure arithmetic: no I/O.
 */
import { AppError } from '../../errors.js';
import type { SlideInfo, SlideLevel } from './describe-slide.js';

export type DziFormat = 'jpeg' | 'png';

export interface DziOptions {
  /** Tile side without overlap (default 254, so that a tile with overlap on both sides is 256). */
  tileSize?: number;
  /** Pixels each tile repeats from its neighbours on every inner edge (default 1). */
  overlap?: number;
  format?: DziFormat;
}

export interface DziLevel {
  level: number;
  width: number;
  height: number;
  cols: number;
  rows: number;
  /** Level-0 pixels per pixel of this level: 2^(maxLevel − level). */
  scale: number;
}

export interface DziLayout {
  width: number;
  height: number;
  tileSize: number;
  overlap: number;
  format: DziFormat;
  maxLevel: number;
  /** Index = DZI level. */
  levels: DziLevel[];
}

export interface DziTileRegion {
  level: number;
  col: number;
  row: number;
  /** Size of the tile image, overlap included. */
  width: number;
  height: number;
  /** Index into `SlideInfo.levels` of the pyramid level the tile is cut from. */
  sourceLevel: number;
  /** Rectangle of that level to read (whole pixels, inside the level), resized to width × height. */
  x: number;
  y: number;
  sourceWidth: number;
  sourceHeight: number;
}

const DEFAULT_TILE_SIZE = 254;
const DEFAULT_OVERLAP = 1;
/** A level whose downsample exceeds the one asked for by this little still serves it: pyramids written as
 * floor(w / 2) make level 3 of a 300-pixel slide 37 pixels wide, a downsample of 8.1 rather than 8. */
const DOWNSAMPLE_TOLERANCE = 1.02;

function notFound(message: string, details: Record<string, unknown>): AppError {
  return new AppError('NOT_FOUND', message, { retryable: false, details });
}

function checkOptions(opts: DziOptions): Required<DziOptions> {
  const tileSize = opts.tileSize ?? DEFAULT_TILE_SIZE;
  const overlap = opts.overlap ?? DEFAULT_OVERLAP;
  if (!Number.isInteger(tileSize) || tileSize < 1 || tileSize > 4096) {
    throw new AppError('VALIDATION_FAILED', `DZI tile size ${tileSize} must be an integer from 1 to 4096`, {
      retryable: false,
    });
  }
  if (!Number.isInteger(overlap) || overlap < 0 || overlap >= tileSize) {
    throw new AppError(
      'VALIDATION_FAILED',
      `DZI overlap ${overlap} must be an integer from 0 to the tile size`,
      {
        retryable: false,
      },
    );
  }
  return { tileSize, overlap, format: opts.format ?? 'jpeg' };
}

/** The DZI pyramid of a width × height image. */
export function dziLayout(width: number, height: number, opts: DziOptions = {}): DziLayout {
  const { tileSize, overlap, format } = checkOptions(opts);
  if (!Number.isInteger(width) || !Number.isInteger(height) || width < 1 || height < 1) {
    throw new AppError('CORRUPT_FILE', `slide size ${width}x${height} cannot be tiled`, { retryable: false });
  }
  const maxLevel = Math.ceil(Math.log2(Math.max(width, height)));
  const levels: DziLevel[] = [];
  for (let level = 0; level <= maxLevel; level++) {
    const scale = 2 ** (maxLevel - level);
    const w = Math.ceil(width / scale);
    const h = Math.ceil(height / scale);
    levels.push({
      level,
      width: w,
      height: h,
      cols: Math.ceil(w / tileSize),
      rows: Math.ceil(h / tileSize),
      scale,
    });
  }
  return { width, height, tileSize, overlap, format, maxLevel, levels };
}

function slideSize(info: SlideInfo): SlideLevel {
  const base = info.levels[0];
  if (!base) throw new AppError('CORRUPT_FILE', 'slide has no pyramid level', { retryable: false });
  return base;
}

/** The `.dzi` descriptor OpenSeadragon loads. */
export function dziDescriptor(info: SlideInfo, opts: DziOptions = {}): string {
  const base = slideSize(info);
  const { tileSize, overlap, format } = dziLayout(base.width, base.height, opts);
  return (
    '<?xml version="1.0" encoding="UTF-8"?>\n' +
    `<Image xmlns="http://schemas.microsoft.com/deepzoom/2008" Format="${format}" Overlap="${overlap}" TileSize="${tileSize}">` +
    `<Size Width="${base.width}" Height="${base.height}"/></Image>\n`
  );
}

/**
 * The pyramid level to read for a wanted downsample: the most reduced one that still has at least the
 * resolution asked for (OpenSlide's get_best_level_for_downsample, with a little tolerance for levels
 * rounded down when halved).
 */
export function pickLevelForDownsample(levels: readonly SlideLevel[], downsample: number): number {
  let best = 0;
  levels.forEach((level, index) => {
    if (
      level.downsample <= downsample * DOWNSAMPLE_TOLERANCE &&
      level.downsample > levels[best]!.downsample
    ) {
      best = index;
    }
  });
  return best;
}

/**
 * Where DZI tile (col, row) of `level` comes from. Throws NOT_FOUND for a level or tile outside the grid:
 * viewers ask for tiles by URL, and a wrong URL is a missing resource, not a server fault.
 */
export function dziTileRegion(
  info: SlideInfo,
  level: number,
  col: number,
  row: number,
  opts: DziOptions = {},
): DziTileRegion {
  const base = slideSize(info);
  const layout = dziLayout(base.width, base.height, opts);
  const dz = Number.isInteger(level) ? layout.levels[level] : undefined;
  if (!dz) {
    throw notFound(`DZI level ${level} does not exist (levels 0 to ${layout.maxLevel})`, { level });
  }
  if (
    !Number.isInteger(col) ||
    !Number.isInteger(row) ||
    col < 0 ||
    row < 0 ||
    col >= dz.cols ||
    row >= dz.rows
  ) {
    throw notFound(`DZI tile ${col}_${row} is outside level ${level} (${dz.cols}x${dz.rows} tiles)`, {
      level,
      col,
      row,
    });
  }
  const { tileSize, overlap } = layout;
  // Overlap is added on inner edges only, as OpenSeadragon and libvips dzsave expect.
  const left = col * tileSize - (col > 0 ? overlap : 0);
  const top = row * tileSize - (row > 0 ? overlap : 0);
  const right = Math.min(dz.width, (col + 1) * tileSize + overlap);
  const bottom = Math.min(dz.height, (row + 1) * tileSize + overlap);

  const sourceLevel = pickLevelForDownsample(info.levels, dz.scale);
  const src = info.levels[sourceLevel]!;
  // Per axis, from the sizes: Philips and rounded pyramids do not halve exactly.
  const fx = src.width / base.width;
  const fy = src.height / base.height;
  const x0 = Math.floor(left * dz.scale * fx);
  const y0 = Math.floor(top * dz.scale * fy);
  const x1 = Math.min(src.width, Math.max(x0 + 1, Math.ceil(Math.min(base.width, right * dz.scale) * fx)));
  const y1 = Math.min(src.height, Math.max(y0 + 1, Math.ceil(Math.min(base.height, bottom * dz.scale) * fy)));
  return {
    level,
    col,
    row,
    width: right - left,
    height: bottom - top,
    sourceLevel,
    x: Math.min(x0, src.width - 1),
    y: Math.min(y0, src.height - 1),
    sourceWidth: x1 - Math.min(x0, src.width - 1),
    sourceHeight: y1 - Math.min(y0, src.height - 1),
  };
}
