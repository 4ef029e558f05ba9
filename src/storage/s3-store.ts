import { Readable, Transform, type TransformCallback } from 'node:stream';
import {
  DeleteObjectCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  type ListObjectsV2CommandOutput,
  PutObjectCommand,
  S3Client,
} from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import { getSignedUrl } from '@aws-sdk/s3-request-presigner';
import { AppError, isAppError } from '../errors.js';
import { checkContentLength, isValidKey, validateKey, validatePrefix, validateRange } from './keys.js';
import type { ByteRange, ObjectInfo, ObjectStore, PutOptions } from './object-store.js';

/** Parts of 8 MiB, 4 in flight: an upload holds at most ~40 MiB in memory, whatever the body size. */
export const MULTIPART_PART_SIZE = 8 * 1024 * 1024;
export const MULTIPART_QUEUE_SIZE = 4;
/** SigV4 presigned URLs cannot outlive 7 days. */
const MAX_URL_EXPIRY_SECONDS = 7 * 24 * 3600;
const DEFAULT_URL_EXPIRY_SECONDS = 900;

export interface S3StoreOptions {
  bucket: string;
  /** Prepended to every key (a trailing `/` is added when missing); `''` for the bucket root. */
  prefix?: string;
  region?: string;
  /** For MinIO, Ceph RGW or a local test server; omitted for AWS. */
  endpoint?: string;
  /** Path-style URLs (`endpoint/bucket/key`), needed by most S3-compatible servers. */
  forcePathStyle?: boolean;
  /** Static credentials; when omitted the SDK's default chain (AWS_* env vars, profiles, instance roles) is used. */
  credentials?: { accessKeyId: string; secretAccessKey: string; sessionToken?: string };
  /** Keys per ListObjectsV2 page (S3's maximum and default: 1000); smaller only to exercise paging in tests. */
  listPageSize?: number;
}

interface SdkError {
  name?: string;
  code?: string;
  message?: string;
  $metadata?: { httpStatusCode?: number };
}

const NETWORK_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ETIMEDOUT',
  'EPIPE',
  'ENOTFOUND',
  'EAI_AGAIN',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ECONNABORTED',
  'UND_ERR_SOCKET',
]);

/** Maps an SDK or socket error to an AppError; `key` is the store's key (without prefix), for the message. */
function storageError(err: unknown, action: string, key: string): AppError {
  if (isAppError(err)) return err;
  const e = (err ?? {}) as SdkError;
  const status = e.$metadata?.httpStatusCode;
  const name = e.name ?? '';
  const what = `${action} ${key}: ${name}${e.message ? ` ${e.message}` : ''}`;
  const options = { cause: err, details: { key, s3Error: name, httpStatus: status } };
  if (name === 'NoSuchKey' || name === 'NotFound' || (status === 404 && name !== 'NoSuchBucket')) {
    return new AppError('NOT_FOUND', `object ${key} not found`, { ...options, retryable: false });
  }
  if (name === 'NoSuchBucket') return new AppError('CONFIG_INVALID', what, { ...options, retryable: false });
  if (name === 'InvalidRange' || status === 416) {
    return new AppError('VALIDATION_FAILED', `range not satisfiable: ${what}`, {
      ...options,
      retryable: false,
    });
  }
  // No HTTP status means the request never got an answer (refused, reset, DNS, timeout): the server may come back.
  // 5xx and throttling are transient by definition; 401/403 need an operator, after which a retry succeeds.
  if (
    status === undefined ||
    status >= 500 ||
    status === 429 ||
    status === 401 ||
    status === 403 ||
    NETWORK_CODES.has(e.code ?? '') ||
    name === 'TimeoutError' ||
    name === 'SlowDown'
  ) {
    return new AppError('STORAGE_UNAVAILABLE', what, { ...options, retryable: true });
  }
  return new AppError('INTERNAL', `S3 rejected ${what}`, { ...options, retryable: false });
}

/** Passes bytes through, counting them; fails the stream when a declared length is not met exactly. */
class LengthCounter extends Transform {
  bytes = 0;

  constructor(
    private readonly key: string,
    private readonly declared: number | undefined,
  ) {
    super();
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, done: TransformCallback): void {
    this.bytes += chunk.length;
    if (this.declared !== undefined && this.bytes > this.declared) done(this.check());
    else done(null, chunk);
  }

  // Failing here, before the stream ends, keeps the Upload from completing and publishing a truncated object.
  override _flush(done: TransformCallback): void {
    done(this.check());
  }

  private check(): Error | null {
    try {
      checkContentLength(this.key, this.declared, this.bytes);
      return null;
    } catch (err) {
      return err as Error;
    }
  }
}

/**
 * How many bytes of a ranged response belong to the requested range. Servers disagree at the edges (s3rver
 * answers `bytes=0-0` with the whole object), so the Content-Range they send back is checked, and any excess cut.
 */
function rangeLength(
  range: ByteRange | undefined,
  contentRange: string | undefined,
  key: string,
): number | undefined {
  if (range === undefined) return undefined;
  const match = /^bytes (\d+)-(\d+)\/(?:\d+|\*)$/.exec(contentRange ?? '');
  if (match === null || Number(match[1]) !== range.start) {
    throw new AppError(
      'STORAGE_UNAVAILABLE',
      `get ${key}: server ignored the Range header (${contentRange})`,
      {
        retryable: false,
        details: { key, contentRange },
      },
    );
  }
  const served = Number(match[2]);
  return Math.min(range.end ?? served, served) - range.start + 1;
}

/** The SDK body as a plain stream: cut to `limit` bytes, its errors mapped to AppErrors, freed when abandoned. */
function responseStream(body: Readable, key: string, limit: number | undefined): Readable {
  async function* chunks(): AsyncGenerator<Buffer> {
    let remaining = limit ?? Number.POSITIVE_INFINITY;
    try {
      for await (const chunk of body) {
        const bytes = chunk as Buffer;
        if (bytes.length > remaining) {
          if (remaining > 0) yield bytes.subarray(0, remaining);
          return; // leaving the loop early destroys the body and, with it, the excess still on the socket
        }
        remaining -= bytes.length;
        yield bytes;
      }
    } catch (err) {
      throw storageError(err, 'get', key);
    }
  }
  return Readable.from(chunks(), { objectMode: false });
}

function rangeHeader(range: ByteRange | undefined): string | undefined {
  if (range === undefined) return undefined;
  validateRange(range);
  return `bytes=${range.start}-${range.end ?? ''}`;
}

/**
 * Objects in one bucket under an optional key prefix, on AWS S3 or a compatible server (MinIO, Ceph RGW).
 * Streams go through multipart uploads so no body is ever whole in memory.
 */
export class S3Store implements ObjectStore {
  readonly driver = 's3' as const;
  readonly bucket: string;
  readonly prefix: string;
  private readonly client: S3Client;
  private readonly listPageSize: number;

  constructor(options: S3StoreOptions) {
    this.bucket = options.bucket;
    const prefix = options.prefix ?? '';
    this.prefix = prefix === '' || prefix.endsWith('/') ? prefix : `${prefix}/`;
    this.listPageSize = options.listPageSize ?? 1000;
    this.client = new S3Client({
      region: options.region ?? 'us-east-1',
      ...(options.endpoint === undefined ? {} : { endpoint: options.endpoint }),
      forcePathStyle: options.forcePathStyle ?? false,
      ...(options.credentials === undefined ? {} : { credentials: options.credentials }),
      // The SDK's default CRC32 checksums (aws-chunked trailers, x-amz-checksum-mode on presigned URLs) are not
      // understood by older Ceph RGW and MinIO releases, nor by s3rver; send them only where S3 requires them.
      requestChecksumCalculation: 'WHEN_REQUIRED',
      responseChecksumValidation: 'WHEN_REQUIRED',
    });
  }

  private objectKey(key: string): string {
    return this.prefix + validateKey(key);
  }

  /** Errors of the caller's own stream (an aborted upload) are rethrown as they are, not as storage faults. */
  async put(key: string, body: Readable | Uint8Array, options: PutOptions = {}): Promise<ObjectInfo> {
    const Key = this.objectKey(key);
    const ContentType = options.contentType;
    if (body instanceof Uint8Array) {
      checkContentLength(key, options.contentLength, body.byteLength);
      try {
        const out = await this.client.send(
          new PutObjectCommand({
            Bucket: this.bucket,
            Key,
            Body: body,
            ContentType,
            ContentLength: body.byteLength,
          }),
        );
        return { key, bytes: body.byteLength, contentType: ContentType, etag: out.ETag };
      } catch (err) {
        throw storageError(err, 'put', key);
      }
    }

    // The caller's stream failing (an aborted upload) must fail the Upload, which reads the counter, and be told
    // apart from storage faults: pipe() does neither, and pipeline() would blame the source for the counter's errors.
    const counter = new LengthCounter(key, options.contentLength);
    let sourceError: Error | undefined;
    const onSourceError = (err: Error) => {
      sourceError ??= err;
      counter.destroy(err);
    };
    const onSourceClose = () => {
      if (body.readableEnded || sourceError !== undefined) return;
      sourceError = Object.assign(new Error(`upload stream of ${key} closed before its end`), {
        code: 'ERR_STREAM_PREMATURE_CLOSE',
      });
      counter.destroy(sourceError);
    };
    body.on('error', onSourceError);
    body.on('close', onSourceClose);
    body.pipe(counter);
    const upload = new Upload({
      client: this.client,
      params: { Bucket: this.bucket, Key, Body: counter, ContentType },
      partSize: MULTIPART_PART_SIZE,
      queueSize: MULTIPART_QUEUE_SIZE,
      // Parts of a failed upload are aborted, so they neither show up nor cost storage.
      leavePartsOnError: false,
    });
    try {
      const out = await upload.done();
      return { key, bytes: counter.bytes, contentType: ContentType, etag: out.ETag };
    } catch (err) {
      throw sourceError ?? storageError(err, 'put', key);
    } finally {
      body.off('error', onSourceError);
      body.off('close', onSourceClose);
      body.unpipe(counter);
      if (!body.readableEnded) body.destroy();
    }
  }

  async get(key: string, range?: ByteRange): Promise<Readable> {
    const Key = this.objectKey(key);
    const Range = rangeHeader(range);
    try {
      const out = await this.client.send(new GetObjectCommand({ Bucket: this.bucket, Key, Range }));
      if (!(out.Body instanceof Readable)) throw new Error('GetObject returned no Node.js stream');
      let limit: number | undefined;
      try {
        limit = rangeLength(range, out.ContentRange, key);
      } catch (err) {
        out.Body.destroy();
        throw err;
      }
      return responseStream(out.Body, key, limit);
    } catch (err) {
      throw storageError(err, 'get', key);
    }
  }

  async getBytes(key: string, range?: ByteRange): Promise<Uint8Array> {
    const Key = this.objectKey(key);
    const Range = rangeHeader(range);
    try {
      const out = await this.client.send(new GetObjectCommand({ Bucket: this.bucket, Key, Range }));
      if (out.Body === undefined) throw new Error('GetObject returned no body');
      const bytes = await out.Body.transformToByteArray();
      const limit = rangeLength(range, out.ContentRange, key);
      return limit === undefined || bytes.length <= limit ? bytes : bytes.subarray(0, limit);
    } catch (err) {
      throw storageError(err, 'get', key);
    }
  }

  async head(key: string): Promise<ObjectInfo | null> {
    const Key = this.objectKey(key);
    try {
      const out = await this.client.send(new HeadObjectCommand({ Bucket: this.bucket, Key }));
      return {
        key,
        bytes: out.ContentLength ?? 0,
        contentType: out.ContentType,
        etag: out.ETag,
        lastModified: out.LastModified,
      };
    } catch (err) {
      const mapped = storageError(err, 'head', key);
      if (mapped.code === 'NOT_FOUND') return null;
      throw mapped;
    }
  }

  async delete(key: string): Promise<void> {
    const Key = this.objectKey(key);
    try {
      await this.client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key }));
    } catch (err) {
      const mapped = storageError(err, 'delete', key);
      // S3 answers 204 for a missing key; some compatible servers answer 404. Either way there is nothing left.
      if (mapped.code !== 'NOT_FOUND') throw mapped;
    }
  }

  async *list(prefix: string): AsyncIterable<ObjectInfo> {
    validatePrefix(prefix);
    let ContinuationToken: string | undefined;
    // Bounded by the listing itself: each truncated page carries a new token, and a repeated one stops the loop.
    do {
      let page: ListObjectsV2CommandOutput;
      try {
        page = await this.client.send(
          new ListObjectsV2Command({
            Bucket: this.bucket,
            Prefix: this.prefix + prefix,
            ContinuationToken,
            MaxKeys: this.listPageSize,
          }),
        );
      } catch (err) {
        throw storageError(err, 'list', prefix);
      }
      for (const item of page.Contents ?? []) {
        if (item.Key === undefined || !item.Key.startsWith(this.prefix)) continue;
        const key = item.Key.slice(this.prefix.length);
        // Folder markers (`dir/`) made by consoles and keys no put could have written are not objects of this store.
        if (!isValidKey(key)) continue;
        yield { key, bytes: item.Size ?? 0, etag: item.ETag, lastModified: item.LastModified };
      }
      const next = page.IsTruncated ? page.NextContinuationToken : undefined;
      if (page.IsTruncated && (next === undefined || next === ContinuationToken)) {
        throw new AppError(
          'STORAGE_UNAVAILABLE',
          `list ${prefix}: truncated page without a new continuation token`,
        );
      }
      ContinuationToken = next;
    } while (ContinuationToken !== undefined);
  }

  async url(key: string, expiresInSeconds = DEFAULT_URL_EXPIRY_SECONDS): Promise<string> {
    const Key = this.objectKey(key);
    if (
      !Number.isInteger(expiresInSeconds) ||
      expiresInSeconds < 1 ||
      expiresInSeconds > MAX_URL_EXPIRY_SECONDS
    ) {
      throw new AppError('VALIDATION_FAILED', `url expiry must be 1…${MAX_URL_EXPIRY_SECONDS} s`, {
        retryable: false,
      });
    }
    try {
      return await getSignedUrl(this.client, new GetObjectCommand({ Bucket: this.bucket, Key }), {
        expiresIn: expiresInSeconds,
      });
    } catch (err) {
      throw storageError(err, 'url', key);
    }
  }

  async close(): Promise<void> {
    this.client.destroy();
  }
}
