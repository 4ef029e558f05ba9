/**
 * Slide thumbnails through the pyramid. Decoding level 0 of a 40k × 30k slide takes seconds and hundreds
 * of MB; the smallest level that is still big enough takes a fraction of a second (ANCHORS §4), so the
 * level is always chosen here and never left to libvips.
 */
import { open } from 'node:fs/promises';
import sharp from 'sharp';
import { AppError, isAppError } from '../errors.js';
import type { SlideImageRef, SlideInfo } from '../formats/slide/describe-slide.js';
import { readTiff, readTileTable } from '../formats/slide/tiff.js';
import type { ByteSource } from '../formats/types.js';

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

export function canDecodeSlideImage(image: SlideImageRef): boolean {
  return DECODABLE_COMPRESSIONS.has(image.compressionCode);
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
export function pickThumbnailSource(info: SlideInfo, size: number): SlideImageRef {
  const wholeSlide: SlideImageRef[] = [
    ...info.levels,
    ...info.associated.filter((image) => image.name === 'thumbnail'),
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
async function checkTilesInsideFile(filePath: string, source: SlideImageRef): Promise<void> {
  const handle = await open(filePath, 'r');
  try {
    const { size } = await handle.stat();
    const bytes: ByteSource = {
      size,
      async read(offset, length) {
        const buffer = new Uint8Array(Math.max(0, Math.min(length, size - offset)));
        const { bytesRead } = await handle.read(buffer, 0, buffer.byteLength, offset);
        return buffer.subarray(0, bytesRead);
      },
    };
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
  const size = opts.size ?? 512;
  const format = opts.format ?? 'png';
  if (!Number.isInteger(size) || size < 1 || size > 8192) {
    throw new AppError('VALIDATION_FAILED', `thumbnail size ${size} must be an integer from 1 to 8192`, {
      retryable: false,
    });
  }
  const source = pickThumbnailSource(info, size);
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
