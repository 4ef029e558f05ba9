/**
 * One error type for the whole codebase. `code` is stable (clients, the files table and tests key on it);
 * `message` is for humans and may change. `retryable` tells a worker whether BullMQ should try again.
 */
export const ERROR_STATUS = {
  UNSUPPORTED_FORMAT: 415,
  CORRUPT_FILE: 422,
  VALIDATION_FAILED: 400,
  UNAUTHORIZED: 401,
  FORBIDDEN: 403,
  NOT_FOUND: 404,
  /** The Accept header allows no representation the route can give (DICOMweb retrieve). */
  NOT_ACCEPTABLE: 406,
  CONFLICT: 409,
  PAYLOAD_TOO_LARGE: 413,
  /** Too many failed authentications from one client address; `Retry-After` says when to try again. */
  RATE_LIMITED: 429,
  INVALID_KEY: 400,
  STORAGE_UNAVAILABLE: 503,
  DATABASE_UNAVAILABLE: 503,
  QUEUE_UNAVAILABLE: 503,
  CONFIG_INVALID: 500,
  INTERNAL: 500,
} as const;

export type ErrorCode = keyof typeof ERROR_STATUS;

export interface AppErrorOptions {
  cause?: unknown;
  /** Whether a job failing with this error should be retried. Defaults to true for 5xx codes only. */
  retryable?: boolean;
  /** Extra context (tag, offset, key …) kept for logs and error bodies. */
  details?: Record<string, unknown>;
}

export class AppError extends Error {
  readonly code: ErrorCode;
  readonly retryable: boolean;
  readonly details: Record<string, unknown> | undefined;

  constructor(code: ErrorCode, message: string, options: AppErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'AppError';
    this.code = code;
    this.retryable = options.retryable ?? ERROR_STATUS[code] >= 500;
    this.details = options.details;
  }

  get status(): number {
    return ERROR_STATUS[this.code];
  }
}

export function isAppError(err: unknown): err is AppError {
  return err instanceof AppError;
}

/** Wraps anything thrown by a parser into CORRUPT_FILE unless it is already an AppError. */
export function asCorrupt(err: unknown, what: string): AppError {
  if (isAppError(err)) return err;
  const message = err instanceof Error ? err.message : String(err);
  return new AppError('CORRUPT_FILE', `${what}: ${message}`, { cause: err, retryable: false });
}
