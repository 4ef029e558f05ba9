/**
 * Slide thumbnails through the pyramid. Decoding level 0 of a 40k × 30k slide takes seconds and hundreds
 * of MB; the smallest level that is still big enough takes a fraction of a second (ANCHORS §4), so the
 * level is always chosen here and never left to libvips.
 *
 * Pages libvips opens (JPEG, LZW, deflate, WebP … TIFF) are shrunk by sharp straight from the file. Pages it
 * cannot open (Aperio JPEG 2000) and DICOM WSI levels are composed tile by tile: each source tile is
 * decoded (at 1/2 to 1/8 scale when its codec can), averaged into the output and dropped, so memory is the
 * thumbnail plus a few tiles whatever the level's size.
 */
import { open } from 'node:fs/promises';
import sharp from 'sharp';
import { AppError, isAppError } from '../errors.js';
import type { SlideImageRef, SlideInfo } from '../formats/slide/describe-slide.js';
import { readTiff, readTileTable } from '../formats/slide/tiff.js';
import type { ByteSource } from '../formats/types.js';
import { encodeImage } from './encode.js';
import {
  canDecodeTiffCompression,
  createRawTileCache,
  openTiffSlide,
  type SlideTileReader,
} from './slide-tiles.js';

export type SlideThumbnailFormat = 'png' | 'webp' | 'jpeg';

export interface RenderSlideOptions {
  /** Longest side of the thumbnail in pixels (default 512). */
  size?: number;
  format?: SlideThumbnailFormat;
  /** libvips gives up after this long (default 120 s), so one pathological file cannot hold a worker. */
  timeoutSeconds?: number;
}

export interface RenderedSlide {
  data: Buffer;
  contentType: string;
  width: number;
  height: number;
}

/**
 * Compressions the bundled libtiff decodes. ZSTD is missing from sharp's build ("ZSTD compression support
 * is not configured"), JPEG 2000 (34712, Aperio 33003/33005) has no codec, old-style JPEG (6) is refused.
 */
const DECODABLE_COMPRESSIONS = new Set([1, 2, 3, 4, 5, 7, 8, 32773, 32946, 50001]);

const CONTENT_TYPES: Record<SlideThumbnailFormat, string> = {
  png: 'image/png',
  webp: 'image/webp',
  jpeg: 'image/jpeg',
};

/** DICOM WSI frame encodings the tile reader decodes. */
const DECODABLE_DICOM_CODECS = new Set([
  'jpeg-baseline',
  'jpeg-extended',
  'jpeg-2000',
  'jpeg-ls',
  'native',
  'rle',
]);

/** Whether libvips can open this page of the file itself. */
function sharpCanOpen(image: SlideImageRef): boolean {
  return image.transferSyntaxUid === undefined && DECODABLE_COMPRESSIONS.has(image.compressionCode);
}

/** Whether the image can be decoded at all: by sharp from the file, or tile by tile. */
export function canDecodeSlideImage(image: SlideImageRef): boolean {
  if (image.transferSyntaxUid !== undefined) return DECODABLE_DICOM_CODECS.has(image.compression);
  return sharpCanOpen(image) || canDecodeTiffCompression(image.compressionCode);
}

function longestSide(image: SlideImageRef): number {
  return Math.max(image.width, image.height);
}

function area(image: SlideImageRef): number {
  return image.width * image.height;
}

/**
 * The smallest decodable picture of the whole slide whose longest side reaches `size`: a pyramid level or,
 * for Aperio, the stored thumbnail. When none is that large, the largest one (the result is then smaller
 * than asked, never upscaled). Levels win ties, so a broken level is not hidden behind a healthy thumbnail.
 */
export function pickThumbnailSource(info: SlideInfo, size: number, levelsOnly = false): SlideImageRef {
  const wholeSlide: SlideImageRef[] = [
    ...info.levels,
    ...(levelsOnly ? [] : info.associated.filter((image) => image.name === 'thumbnail')),
  ];
  const candidates = wholeSlide.filter(canDecodeSlideImage);
  if (candidates.length === 0) {
    const compressions = [...new Set(wholeSlide.map((image) => image.compression))].join(', ');
    throw new AppError('UNSUPPORTED_FORMAT', `slide compression ${compressions} cannot be decoded`, {
      retryable: false,
      details: { format: info.format, compressions },
    });
  }
  const bigEnough = candidates.filter((image) => longestSide(image) >= size);
  if (bigEnough.length > 0) {
    return bigEnough.reduce((best, image) => (area(image) < area(best) ? image : best));
  }
  return candidates.reduce((best, image) => (area(image) > area(best) ? image : best));
}

function sharpError(err: unknown, source: SlideImageRef): AppError {
  if (isAppError(err)) return err;
  const message = err instanceof Error ? err.message : String(err);
  const details = { page: source.ifd, subifd: source.subifd, compression: source.compression };
  if (
    /not configured|not implemented|not supported|unsupported|subsampled|unknown pseudo-tag/i.test(message)
  ) {
    return new AppError('UNSUPPORTED_FORMAT', `slide page ${source.ifd}: ${message}`, {
      cause: err,
      retryable: false,
      details,
    });
  }
  if (/timeout|input file is missing/i.test(message)) {
    return new AppError('INTERNAL', `slide page ${source.ifd}: ${message}`, { cause: err, details });
  }
  return new AppError('CORRUPT_FILE', `slide page ${source.ifd} cannot be decoded: ${message}`, {
    cause: err,
    retryable: false,
    details,
  });
}

/**
 * libtiff fills tiles that lie past the end of a truncated file with grey instead of failing, so the tile
 * table of the page about to be decoded is checked against the file size first.
 */
async function fileSource(handle: Awaited<ReturnType<typeof open>>): Promise<ByteSource> {
  const { size } = await handle.stat();
  return {
    size,
    async read(offset, length) {
      const buffer = new Uint8Array(Math.max(0, Math.min(length, size - offset)));
      const { bytesRead } = await handle.read(buffer, 0, buffer.byteLength, offset);
      return buffer.subarray(0, bytesRead);
    },
  };
}

function checkSize(size: number): number {
  if (!Number.isInteger(size) || size < 1 || size > 8192) {
    throw new AppError('VALIDATION_FAILED', `thumbnail size ${size} must be an integer from 1 to 8192`, {
      retryable: false,
    });
  }
  return size;
}

async function checkTilesInsideFile(filePath: string, source: SlideImageRef): Promise<void> {
  const handle = await open(filePath, 'r');
  try {
    const bytes = await fileSource(handle);
    const tiff = await readTiff(bytes);
    const page = tiff.ifds[source.ifd];
    const ifd = source.subifd === undefined ? page : page?.subIfds[source.subifd];
    if (!ifd || ifd.width !== source.width || ifd.height !== source.height) {
      throw new AppError(
        'CORRUPT_FILE',
        `slide page ${source.ifd} is not the ${source.width}x${source.height} image described`,
        {
          retryable: false,
          details: { page: source.ifd, subifd: source.subifd },
        },
      );
    }
    await readTileTable(bytes, ifd);
  } finally {
    await handle.close();
  }
}

/**
 * Renders a thumbnail of a TIFF-based slide described by `describeSlide`. Throws UNSUPPORTED_FORMAT when the
 * pyramid's compression has no decoder here and CORRUPT_FILE when the chosen page does not decode.
 */
export async function renderSlideThumbnail(
  filePath: string,
  info: SlideInfo,
  opts: RenderSlideOptions = {},
): Promise<RenderedSlide> {
  const size = checkSize(opts.size ?? 512);
  const format = opts.format ?? 'png';
  let source = pickThumbnailSource(info, size);
  // A thumbnail page in a codec libvips lacks is not worth composing: the levels are.
  if (!sharpCanOpen(source) && !(info.levels as SlideImageRef[]).includes(source)) {
    source = pickThumbnailSource(info, size, true);
  }
  if (!sharpCanOpen(source)) {
    const level = (info.levels as SlideImageRef[]).indexOf(source);
    const handle = await open(filePath, 'r');
    try {
      const reader = await openTiffSlide(await fileSource(handle), {
        info,
        tileCache: createRawTileCache(COMPOSE_CACHE_BYTES),
      });
      return await composeThumbnail(reader, level, size, format);
    } finally {
      await handle.close();
    }
  }
  await checkTilesInsideFile(filePath, source);
  try {
    let image = sharp(filePath, {
      page: source.ifd,
      ...(source.subifd === undefined ? {} : { subifd: source.subifd }),
      limitInputPixels: false,
      // 'warning' would reject every NDPI: libtiff warns about Hamamatsu's private tags.
      failOn: 'error',
    })
      .timeout({ seconds: opts.timeoutSeconds ?? 120 })
      .resize(size, size, { fit: 'inside', withoutEnlargement: true });
    // 16-bit fluorescence and signed or float samples would come out black or clipped when cast to 8 bits.
    if (source.bitsPerSample > 8) image = image.normalise();
    image = image.toColourspace(source.samplesPerPixel >= 3 ? 'srgb' : 'b-w');
    image =
      format === 'png'
        ? image.png({ compressionLevel: 6 })
        : format === 'webp'
          ? image.webp({ quality: 80 })
          : image.jpeg({ quality: 80, mozjpeg: false });
    const { data, info: out } = await image.toBuffer({ resolveWithObject: true });
    return { data, contentType: CONTENT_TYPES[format], width: out.width, height: out.height };
  } catch (err) {
    throw sharpError(err, source);
  }
}

/** Decoded tiles a composition keeps: enough for the few decodes in flight, never a level. */
const COMPOSE_CACHE_BYTES = 16 * 1024 * 1024;
/** Tiles decoded at once while composing: sharp decodes on libuv threads, so a few in flight keep them busy. */
const COMPOSE_CONCURRENCY = 4;

/**
 * A thumbnail of a slide opened as a tile reader (DICOM WSI series, or TIFF over object storage): the
 * smallest pyramid level at least `size` on its longest side, composed tile by tile.
 */
export async function renderSlideThumbnailFromReader(
  reader: SlideTileReader,
  opts: RenderSlideOptions = {},
): Promise<RenderedSlide> {
  const size = checkSize(opts.size ?? 512);
  const source = pickThumbnailSource(reader.info, size, true);
  const level = (reader.info.levels as SlideImageRef[]).indexOf(source);
  return composeThumbnail(reader, level, size, opts.format ?? 'png');
}

/**
 * Area-averages a whole level into a thumbnail fitting `size`, one source tile at a time. Each tile is
 * decoded reduced (1/2 … 1/8) where that still leaves two source pixels per output pixel, then every pixel
 * is added to the output pixel its centre falls in.
 */
async function composeThumbnail(
  reader: SlideTileReader,
  level: number,
  size: number,
  format: SlideThumbnailFormat,
): Promise<RenderedSlide> {
  const grid = reader.grid(level);
  const scale = Math.min(1, size / Math.max(grid.width, grid.height));
  const outWidth = Math.max(1, Math.round(grid.width * scale));
  const outHeight = Math.max(1, Math.round(grid.height * scale));
  const c = reader.channels;
  const sums = new Float32Array(outWidth * outHeight * c);
  const weights = new Float32Array(outWidth * outHeight);
  const downsample = grid.width / outWidth;
  const reduce = Math.max(0, Math.min(3, Math.floor(Math.log2(downsample)) - 1));

  const addTile = async (col: number, row: number): Promise<void> => {
    const tile = await reader.readTile(level, col, row, reduce);
    if (!tile) return;
    // Source pixels per decoded pixel, from the sizes (a reduced tile is ceil(size / 2^reduce)).
    const fx = grid.tileWidth / tile.width;
    const fy = grid.tileHeight / tile.height;
    const xs = new Int32Array(tile.width);
    for (let i = 0; i < tile.width; i++) {
      const x = col * grid.tileWidth + (i + 0.5) * fx;
      xs[i] = x < grid.width ? Math.min(outWidth - 1, Math.floor((x * outWidth) / grid.width)) : -1;
    }
    for (let j = 0; j < tile.height; j++) {
      const y = row * grid.tileHeight + (j + 0.5) * fy;
      if (y >= grid.height) break;
      const oy = Math.min(outHeight - 1, Math.floor((y * outHeight) / grid.height));
      const rowBase = oy * outWidth;
      let src = j * tile.width * c;
      for (let i = 0; i < tile.width; i++, src += c) {
        const ox = xs[i]!;
        if (ox < 0) continue;
        const o = rowBase + ox;
        weights[o]! += 1;
        const so = o * c;
        for (let k = 0; k < c; k++) sums[so + k]! += tile.data[src + k]!;
      }
    }
  };

  const tiles: Array<[number, number]> = [];
  for (let row = 0; row < grid.rows; row++) for (let col = 0; col < grid.cols; col++) tiles.push([col, row]);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < tiles.length) {
      const [col, row] = tiles[next++]!;
      await addTile(col, row);
    }
  };
  await Promise.all(Array.from({ length: Math.min(COMPOSE_CONCURRENCY, tiles.length) }, worker));

  const pixels = new Uint8Array(outWidth * outHeight * c);
  for (let o = 0; o < weights.length; o++) {
    const w = weights[o]!;
    for (let k = 0; k < c; k++) pixels[o * c + k] = w > 0 ? Math.round(sums[o * c + k]! / w) : 255;
  }
  try {
    return await encodeImage(
      { data: pixels, width: outWidth, height: outHeight, channels: c },
      { format, quality: 80 },
    );
  } catch (err) {
    if (isAppError(err)) throw err;
    throw new AppError('INTERNAL', `encoding the slide thumbnail failed: ${(err as Error).message}`, {
      cause: err,
    });
  }
}
