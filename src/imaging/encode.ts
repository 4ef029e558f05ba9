/**
 * Raw 8-bit pixels → PNG, WebP or JPEG, optionally shrunk to fit a square box. Shared by the DICOM, ECG and
 * slide renderers so that every thumbnail is encoded the same way.
 */
import sharp from 'sharp';
import { AppError } from '../errors.js';

export type ImageFormat = 'png' | 'webp' | 'jpeg';

export interface RawImage {
  /** Row-major, channel-interleaved 8-bit samples. */
  data: Uint8Array;
  width: number;
  height: number;
  channels: 1 | 2 | 3 | 4;
}

export interface EncodeOptions {
  format?: ImageFormat;
  /** Longest side in pixels; the image is shrunk to fit, never enlarged. */
  size?: number;
  /** Lossy quality for webp and jpeg (1–100). */
  quality?: number;
}

export interface EncodedImage {
  data: Buffer;
  contentType: string;
  width: number;
  height: number;
}

const CONTENT_TYPE: Record<ImageFormat, string> = {
  png: 'image/png',
  webp: 'image/webp',
  jpeg: 'image/jpeg',
};

export function contentTypeFor(format: ImageFormat): string {
  return CONTENT_TYPE[format];
}

export async function encodeImage(image: RawImage, options: EncodeOptions = {}): Promise<EncodedImage> {
  const { width, height, channels } = image;
  if (image.data.length < width * height * channels) {
    throw new AppError(
      'INTERNAL',
      `encodeImage: ${image.data.length} bytes for a ${width}×${height}×${channels} image`,
      { retryable: false },
    );
  }
  const format = options.format ?? 'png';
  const quality = options.quality ?? 85;
  const input = Buffer.from(image.data.buffer, image.data.byteOffset, image.data.byteLength);
  let pipeline = sharp(input, { raw: { width, height, channels } });
  if (options.size !== undefined && Math.max(width, height) > options.size) {
    pipeline = pipeline.resize({
      width: options.size,
      height: options.size,
      fit: 'inside',
      withoutEnlargement: true,
    });
  }
  // sharp would otherwise widen a single band to sRGB, tripling PNG and JPEG payloads for no information.
  if (channels === 1) pipeline = pipeline.toColourspace('b-w');
  if (format === 'png') pipeline = pipeline.png({ compressionLevel: 6 });
  else if (format === 'webp') pipeline = pipeline.webp({ quality });
  else pipeline = pipeline.jpeg({ quality, mozjpeg: false });
  const { data, info } = await pipeline.toBuffer({ resolveWithObject: true });
  return { data, contentType: CONTENT_TYPE[format], width: info.width, height: info.height };
}
