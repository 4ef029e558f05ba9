/**
 * The image size a compressed frame or tile declares in its own header (JPEG SOF, JPEG-LS SOF55, JPEG 2000 /
 * HTJ2K SIZ). Decoders size their output from it, not from the container's Rows/Columns or tile size, so four
 * bytes of a damaged or hostile header can make a decoder allocate gigabytes and spend seconds filling them.
 */
import { AppError } from '../../errors.js';
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
export function codestreamSize(kind: CodestreamKind, bytes: Uint8Array): PixelSize | undefined {
  if (kind === 'jpeg') return readJpegFrameHeader(bytes);
  if (kind === 'jpeg-ls') return readJpegLsFrameHeader(bytes);
  const size = readJ2kMainHeader(bytes)?.imageSize;
  return size && { rows: size.height, columns: size.width };
}

export interface PixelSize {
  rows: number;
  columns: number;
}

/**
 * Refuses, with CORRUPT_FILE, a codestream whose header declares more pixels than its container holds (a DICOM
 * frame's Rows × Columns, a slide tile), before any decoder sizes its output from it. `describe` words the
 * refusal for the container; the declared size goes into the error's details.
 */
export function checkCodestreamFits(
  kind: CodestreamKind,
  bytes: Uint8Array,
  limit: PixelSize,
  describe: (declared: PixelSize, codestream: string) => string,
  details: Record<string, unknown> = {},
): void {
  const declared = codestreamSize(kind, bytes);
  if (!declared || (declared.rows <= limit.rows && declared.columns <= limit.columns)) return;
  throw new AppError('CORRUPT_FILE', describe(declared, CODESTREAM_NAMES[kind]), {
    retryable: false,
    details: { ...details, codestreamRows: declared.rows, codestreamColumns: declared.columns },
  });
}
