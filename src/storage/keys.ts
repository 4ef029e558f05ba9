import { AppError } from '../errors.js';
import type { ByteRange } from './object-store.js';

/** S3's own limit, in UTF-8 bytes; the fs driver keeps it too so a key valid on one driver is valid on the other. */
export const MAX_KEY_BYTES = 1024;
/** NAME_MAX on Linux filesystems; checked for both drivers for the same reason. */
export const MAX_SEGMENT_BYTES = 255;
/** The fs driver stages uploads under `<root>/.tmp`, so no key may live there, on any driver. */
export const RESERVED_TOP_SEGMENT = '.tmp';

// Category Cc: C0 controls (NUL included), DEL and C1 controls; invisible in logs, refused by some filesystems.
const CONTROL_CHARS = /\p{Cc}/u;
// A lone surrogate has no UTF-8 form: S3 would store a replacement character and the key would not round-trip.
const LONE_SURROGATE = /\p{Surrogate}/u;

function invalid(what: string, input: string, reason: string): AppError {
  return new AppError('INVALID_KEY', `${what} ${JSON.stringify(input.slice(0, 200))} ${reason}`, {
    retryable: false,
    details: { key: input.slice(0, 200) },
  });
}

/** The checks shared by keys and prefixes: characters and overall length. */
function checkCharacters(what: string, input: string): void {
  if (CONTROL_CHARS.test(input)) throw invalid(what, input, 'contains a NUL or control character');
  if (input.includes('\\')) throw invalid(what, input, 'contains a backslash');
  if (LONE_SURROGATE.test(input)) throw invalid(what, input, 'is not valid Unicode');
  if (Buffer.byteLength(input, 'utf8') > MAX_KEY_BYTES) {
    throw invalid(what, input, `is longer than ${MAX_KEY_BYTES} bytes`);
  }
}

function checkSegment(what: string, input: string, segment: string, index: number): void {
  // Empty and `.` segments would be collapsed by the filesystem, so two different keys could name one file.
  if (segment === '') throw invalid(what, input, 'has an empty path segment (leading, trailing or double /)');
  if (segment === '.' || segment === '..') throw invalid(what, input, `has a "${segment}" segment`);
  if (Buffer.byteLength(segment, 'utf8') > MAX_SEGMENT_BYTES) {
    throw invalid(what, input, `has a segment longer than ${MAX_SEGMENT_BYTES} bytes`);
  }
  if (index === 0 && segment === RESERVED_TOP_SEGMENT) {
    throw invalid(what, input, `starts with the reserved segment "${RESERVED_TOP_SEGMENT}"`);
  }
}

/**
 * Returns the key unchanged when it is a relative, `/`-separated path that cannot escape the store's root;
 * throws AppError('INVALID_KEY') otherwise.
 */
export function validateKey(key: string): string {
  if (typeof key !== 'string' || key.length === 0) throw invalid('key', String(key ?? ''), 'is empty');
  checkCharacters('key', key);
  if (key.startsWith('/')) throw invalid('key', key, 'is absolute');
  const segments = key.split('/');
  for (const [index, segment] of segments.entries()) checkSegment('key', key, segment, index);
  return key;
}

export function isValidKey(key: string): boolean {
  try {
    validateKey(key);
    return true;
  } catch {
    return false;
  }
}

/**
 * A list prefix is a plain string prefix of keys: `''` (everything), `cases/` or a partial name such as `cases/12`.
 * Every complete segment must be valid as in a key; the last, partial one only has its characters checked.
 */
export function validatePrefix(prefix: string): string {
  if (typeof prefix !== 'string') throw invalid('prefix', String(prefix), 'is not a string');
  if (prefix === '') return prefix;
  checkCharacters('prefix', prefix);
  if (prefix.startsWith('/')) throw invalid('prefix', prefix, 'is absolute');
  const segments = prefix.split('/');
  for (const [index, segment] of segments.slice(0, -1).entries())
    checkSegment('prefix', prefix, segment, index);
  return prefix;
}

/** Checks the shape of an inclusive byte range; whether it fits the object is up to the driver, which knows the size. */
export function validateRange(range: ByteRange): ByteRange {
  const { start, end } = range;
  if (
    !Number.isSafeInteger(start) ||
    start < 0 ||
    (end !== undefined && (!Number.isSafeInteger(end) || end < start))
  ) {
    throw new AppError('VALIDATION_FAILED', `invalid byte range ${start}-${end ?? ''}`, { retryable: false });
  }
  return range;
}

/**
 * A put that declared its length must deliver exactly that many bytes: fewer means the upload was cut short
 * (a proxy closing cleanly mid-body), and storing it would publish a truncated object.
 */
export function checkContentLength(key: string, declared: number | undefined, actual: number): void {
  if (declared === undefined || declared === actual) return;
  throw new AppError('VALIDATION_FAILED', `body of ${key} has ${actual} bytes, ${declared} were declared`, {
    retryable: false,
    details: { key, declared, actual },
  });
}
