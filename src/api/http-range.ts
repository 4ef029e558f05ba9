/**
 * The one byte range of an HTTP Range header (RFC 9110 §14): what lets a reader on a poor link resume a large
 * DICOM download instead of starting again. Only single ranges are served; a list of several, or a unit other than
 * bytes, is ignored and the whole representation sent, as the RFC allows.
 */

export type RangeAnswer =
  /** Send the whole representation (no Range, one this server ignores, or an If-Range that no longer holds). */
  | { kind: 'whole' }
  /** 206 with bytes [start, end], inclusive. */
  | { kind: 'part'; start: number; end: number }
  /** 416: the range starts past the end. */
  | { kind: 'unsatisfiable' };

const SINGLE = /^bytes=\s*(\d*)\s*-\s*(\d*)\s*$/i;

/**
 * Decides what to send for `range` over a representation of `size` bytes whose current entity tag is `etag`.
 * `ifRange`, when given, must equal that tag (a date is not accepted as a validator here), else the whole is sent.
 */
export function answerRange(
  range: string | undefined,
  size: number,
  etag: string,
  ifRange?: string,
): RangeAnswer {
  if (range === undefined) return { kind: 'whole' };
  if (ifRange !== undefined && ifRange.trim() !== etag) return { kind: 'whole' };
  const m = SINGLE.exec(range);
  if (!m) return { kind: 'whole' };
  const [, first, last] = m as unknown as [string, string, string];
  if (first === '' && last === '') return { kind: 'whole' };
  if (first === '') {
    // The last N bytes.
    const suffix = Number(last);
    if (suffix === 0) return { kind: 'unsatisfiable' };
    return { kind: 'part', start: Math.max(0, size - suffix), end: size - 1 };
  }
  const start = Number(first);
  const end = last === '' ? size - 1 : Math.min(Number(last), size - 1);
  if (start >= size) return { kind: 'unsatisfiable' };
  if (end < start) return { kind: 'whole' };
  return { kind: 'part', start, end };
}
