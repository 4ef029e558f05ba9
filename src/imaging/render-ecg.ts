/**
 * ECG page → raster image. The page itself is drawn as SVG by the pure renderer; librsvg (inside sharp)
 * rasterises it.
 */
import sharp from 'sharp';
import { AppError } from '../errors.js';
import type { Ecg } from '../formats/ecg/ecg.js';
import { type EcgSvgOptions, renderEcgSvg } from '../formats/ecg/ecg-svg.js';

export interface RenderEcgOptions extends Omit<EcgSvgOptions, 'width'> {
  /** Output width in pixels; the height follows from the page layout. */
  width?: number;
  format?: 'png' | 'webp';
}

export interface RenderedImage {
  data: Buffer;
  contentType: string;
  width: number;
  height: number;
}

/** Thumbnail width used when the caller does not ask for one. */
export const DEFAULT_ECG_IMAGE_WIDTH = 1024;

export async function renderEcgPng(ecg: Ecg, options: RenderEcgOptions = {}): Promise<RenderedImage> {
  const { format = 'png', width = DEFAULT_ECG_IMAGE_WIDTH, ...svgOptions } = options;
  const svg = renderEcgSvg(ecg, { ...svgOptions, width });
  // The page is opaque, so the alpha channel is dropped: a quarter less to compress, same pixels.
  const image = sharp(Buffer.from(svg), { density: 72 }).removeAlpha();
  try {
    // WebP effort 2 halves the encode time of the default (4) for a few percent more bytes on line art.
    const encoded =
      format === 'webp' ? image.webp({ quality: 90, effort: 2 }) : image.png({ compressionLevel: 6 });
    const { data, info } = await encoded.toBuffer({
      resolveWithObject: true,
    });
    return { data, contentType: `image/${format}`, width: info.width, height: info.height };
  } catch (err) {
    throw new AppError('INTERNAL', `rendering the ECG page failed: ${(err as Error).message}`, {
      cause: err,
      retryable: false,
    });
  }
}
