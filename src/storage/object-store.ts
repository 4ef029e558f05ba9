import type { Readable } from 'node:stream';

/** Metadata of one stored object. */
export interface ObjectInfo {
  key: string;
  bytes: number;
  contentType?: string | undefined;
  /** Driver-specific opaque version (ETag for S3, mtime-size for fs). */
  etag?: string | undefined;
  lastModified?: Date | undefined;
}

export interface PutOptions {
  contentType?: string;
  /** Known length, when the caller has it; lets the S3 driver skip multipart for small bodies. */
  contentLength?: number;
}

/** Inclusive byte range, as in HTTP `Range: bytes=start-end`. `end` omitted means to the end. */
export interface ByteRange {
  start: number;
  end?: number;
}

/**
 * The one interface to object storage. Keys are relative, `/`-separated, never absolute and never with `..`.
 * A `put` is atomic: a reader sees the whole object or nothing, never a half-written one.
 */
export interface ObjectStore {
  readonly driver: 'fs' | 's3';
  put(key: string, body: Readable | Uint8Array, options?: PutOptions): Promise<ObjectInfo>;
  get(key: string, range?: ByteRange): Promise<Readable>;
  /** Reads a whole object (or range) into memory; for small objects and headers only. */
  getBytes(key: string, range?: ByteRange): Promise<Uint8Array>;
  head(key: string): Promise<ObjectInfo | null>;
  delete(key: string): Promise<void>;
  list(prefix: string): AsyncIterable<ObjectInfo>;
  /** A URL the caller can GET directly (presigned for S3, file:// for fs), valid for `expiresInSeconds`. */
  url(key: string, expiresInSeconds?: number): Promise<string>;
  close(): Promise<void>;
}
