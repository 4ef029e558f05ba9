/**
 * The image size a compressed frame or tile declares in its own header (JPEG SOF, JPEG-LS SOF55, JPEG 2000 /
 * HTJ2K SIZ). Decoders size their output from it, not from the container's Rows/Columns or tile size, so four
 * bytes of a damaged or hostile header can make a decoder allocate gigabytes and spend seconds filling them.
 */
import { readJ2kMainHeader } from './j2k-header.js';
import { readJpegFrameHeader, readJpegLsFrameHeader } from './jpeg-frame-header.js';

export type CodestreamKind = 'jpeg' | 'jpeg-ls' | 'jpeg-2000' | 'htj2k';

export const CODESTREAM_NAMES: Record<CodestreamKind, string> = {
  jpeg: 'JPEG',
  'jpeg-ls': 'JPEG-LS',
  'jpeg-2000': 'JPEG 2000',
  htj2k: 'HTJ2K',
};

/** Undefined when the header cannot be read (the decoder then reports what is wrong). */
export function codestreamSize(
  kind: CodestreamKind,
  bytes: Uint8Array,
): { rows: number; columns: number } | undefined {
  if (kind === 'jpeg') return readJpegFrameHeader(bytes);
  if (kind === 'jpeg-ls') return readJpegLsFrameHeader(bytes);
  const size = readJ2kMainHeader(bytes)?.imageSize;
  return size && { rows: size.height, columns: size.width };
}
