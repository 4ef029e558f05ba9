import { createHash, randomUUID } from 'node:crypto';
import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  ListPartsCommand,
  type ListPartsCommandOutput,
  S3Client,
  UploadPartCommand,
} from '@aws-sdk/client-s3';
import { getSignedUrl } from '@aws-sdk/s3-request-presigner';
import { sql } from 'kysely';
import type { Context } from '../context.js';
import type { Priority, UploadSessionRow } from '../db/schema.js';
import { AppError } from '../errors.js';
import { cleanFileName } from '../pipeline/receive-files.js';
import { parseStorageUrl } from '../storage/create-object-store.js';
import { validateKey } from '../storage/keys.js';
import { completeSession, getOpenBatch } from './upload-batches.js';
import { objectKeyFor } from './upload-input.js';

/**
 * Direct-to-storage uploads for S3 deployments: the clinic PUTs the parts of an S3 multipart upload straight to
 * the bucket with presigned URLs, and the API only signs and verifies. Bytes never cross the API on the way in.
 *
 * Verification at `complete`, before the file enters the pipeline:
 * 1. the client lists every part 1…N with its ETag, none missing, none extra;
 * 2. where the server lists parts (AWS, MinIO, Ceph), each part's size and ETag must be what the plan and the
 *    client say, before anything is assembled;
 * 3. S3 assembles the object from exactly the ETags the client sent (a part replaced since is refused);
 * 4. the assembled object is read back once, through sha256 and a per-part MD5: its size, each part's size,
 *    each part's MD5 (a plain part ETag is the MD5 of the part) and the whole file's sha256, declared by the
 *    client at creation, must all match. On any mismatch the object is deleted and the upload fails with 422.
 * Step 4 costs one read of the object by the API; it is what makes the sha256 the API records a fact rather
 * than the client's claim, and it works on servers without ListParts (s3rver).
 */

const MiB = 1024 * 1024;
/** S3's rules: parts of 5 MiB to 5 GiB (the last may be smaller), at most 10 000 of them. */
export const MIN_PART_BYTES = 5 * MiB;
export const MAX_PART_BYTES = 5 * 1024 * MiB;
export const MAX_PARTS = 10_000;
export const DEFAULT_PART_BYTES = 16 * MiB;
/** SigV4 presigned URLs cannot outlive 7 days. */
const MAX_URL_SECONDS = 7 * 24 * 3600;

export interface PartPlan {
  partBytes: number;
  parts: Array<{ partNumber: number; bytes: number }>;
}

/** Splits `bytes` into parts of `requested` bytes (default 16 MiB), grown if needed to stay within 10 000 parts. */
export function planParts(bytes: number, requested?: number): PartPlan {
  if (!Number.isSafeInteger(bytes) || bytes < 1) {
    throw new AppError(
      'VALIDATION_FAILED',
      'bytes must be a positive integer (send empty files with /v1/tus)',
    );
  }
  const wanted = requested ?? DEFAULT_PART_BYTES;
  if (!Number.isSafeInteger(wanted) || wanted < MIN_PART_BYTES || wanted > MAX_PART_BYTES) {
    throw new AppError('VALIDATION_FAILED', `partBytes must be from ${MIN_PART_BYTES} to ${MAX_PART_BYTES}`);
  }
  const partBytes = Math.max(wanted, Math.ceil(bytes / MAX_PARTS));
  if (partBytes > MAX_PART_BYTES) throw new AppError('PAYLOAD_TOO_LARGE', 'file is larger than S3 allows');
  const count = Math.ceil(bytes / partBytes);
  const parts = Array.from({ length: count }, (_, i) => ({
    partNumber: i + 1,
    bytes: i === count - 1 ? bytes - partBytes * (count - 1) : partBytes,
  }));
  return { partBytes, parts };
}

function s3ErrorName(err: unknown): string {
  const e = err as { name?: unknown; Code?: unknown } | null;
  return typeof e?.name === 'string' ? e.name : typeof e?.Code === 'string' ? e.Code : '';
}

function s3Status(err: unknown): number | undefined {
  return (err as { $metadata?: { httpStatusCode?: number } } | null)?.$metadata?.httpStatusCode;
}

/** Servers that lack an operation (s3rver has no ListParts nor AbortMultipartUpload) answer one of these. */
function isUnsupported(err: unknown): boolean {
  const name = s3ErrorName(err);
  return (
    name === 'MethodNotAllowed' || name === 'NotImplemented' || s3Status(err) === 405 || s3Status(err) === 501
  );
}

function storageFault(action: string, err: unknown): AppError {
  return new AppError('STORAGE_UNAVAILABLE', `${action}: ${s3ErrorName(err) || (err as Error).message}`, {
    cause: err,
  });
}

const normalizeEtag = (etag: string | undefined): string => (etag ?? '').replaceAll('"', '').toLowerCase();

/** The S3 side: a client of its own (the ObjectStore interface has no multipart), on the same bucket and prefix. */
export class S3Multipart {
  readonly bucket: string;
  readonly prefix: string;
  private readonly client: S3Client;

  constructor(storageUrl: string) {
    const config = parseStorageUrl(storageUrl);
    if (config.driver !== 's3') throw new AppError('CONFIG_INVALID', 'S3 multipart needs s3:// storage');
    this.bucket = config.bucket;
    const prefix = config.prefix ?? '';
    this.prefix = prefix === '' || prefix.endsWith('/') ? prefix : `${prefix}/`;
    this.client = new S3Client({
      region: config.region ?? 'us-east-1',
      ...(config.endpoint === undefined ? {} : { endpoint: config.endpoint }),
      forcePathStyle: config.forcePathStyle ?? false,
      ...(config.credentials === undefined ? {} : { credentials: config.credentials }),
      // No default CRC32 parameters on presigned part URLs: the clinic's PUT could not satisfy them.
      requestChecksumCalculation: 'WHEN_REQUIRED',
      responseChecksumValidation: 'WHEN_REQUIRED',
    });
  }

  private key(key: string): string {
    return this.prefix + validateKey(key);
  }

  async create(key: string, contentType: string | null): Promise<string> {
    try {
      const out = await this.client.send(
        new CreateMultipartUploadCommand({
          Bucket: this.bucket,
          Key: this.key(key),
          ...(contentType ? { ContentType: contentType } : {}),
        }),
      );
      if (!out.UploadId) throw new Error('CreateMultipartUpload returned no UploadId');
      return out.UploadId;
    } catch (err) {
      throw storageFault('create multipart upload', err);
    }
  }

  async presignPart(key: string, uploadId: string, partNumber: number, expiresIn: number): Promise<string> {
    return getSignedUrl(
      this.client,
      new UploadPartCommand({
        Bucket: this.bucket,
        Key: this.key(key),
        UploadId: uploadId,
        PartNumber: partNumber,
      }),
      { expiresIn },
    );
  }

  /** The parts the server holds, or undefined when it cannot list them. Paged; bounded by S3's 10 000 parts. */
  async listParts(
    key: string,
    uploadId: string,
  ): Promise<Map<number, { bytes: number; etag: string }> | undefined> {
    const parts = new Map<number, { bytes: number; etag: string }>();
    let marker: string | undefined;
    for (let page = 0; page <= MAX_PARTS / 1000; page++) {
      let out: ListPartsCommandOutput;
      try {
        out = await this.client.send(
          new ListPartsCommand({
            Bucket: this.bucket,
            Key: this.key(key),
            UploadId: uploadId,
            ...(marker ? { PartNumberMarker: marker } : {}),
          }),
        );
      } catch (err) {
        if (isUnsupported(err)) return undefined;
        if (s3ErrorName(err) === 'NoSuchUpload') {
          throw new AppError('CONFLICT', 'the S3 multipart upload no longer exists', { cause: err });
        }
        throw storageFault('list parts', err);
      }
      for (const p of out.Parts ?? []) {
        if (p.PartNumber !== undefined) {
          parts.set(p.PartNumber, { bytes: p.Size ?? 0, etag: normalizeEtag(p.ETag) });
        }
      }
      if (!out.IsTruncated || !out.NextPartNumberMarker || out.NextPartNumberMarker === marker) break;
      marker = out.NextPartNumberMarker;
    }
    return parts;
  }

  /** Assembles the object. False when the upload is already gone (completed by an earlier call, or aborted). */
  async complete(
    key: string,
    uploadId: string,
    parts: Array<{ partNumber: number; etag: string }>,
  ): Promise<boolean> {
    try {
      await this.client.send(
        new CompleteMultipartUploadCommand({
          Bucket: this.bucket,
          Key: this.key(key),
          UploadId: uploadId,
          MultipartUpload: {
            Parts: parts.map((p) => ({ PartNumber: p.partNumber, ETag: `"${normalizeEtag(p.etag)}"` })),
          },
        }),
      );
      return true;
    } catch (err) {
      const name = s3ErrorName(err);
      if (name === 'NoSuchUpload') return false;
      if (name === 'InvalidPart' || name === 'InvalidPartOrder' || name === 'EntityTooSmall') {
        throw new AppError('VALIDATION_FAILED', `S3 refused the parts: ${name}`, { cause: err });
      }
      throw storageFault('complete multipart upload', err);
    }
  }

  /** Drops the parts. False when the server cannot abort (s3rver): its parts stay until a lifecycle rule. */
  async abort(key: string, uploadId: string): Promise<boolean> {
    try {
      await this.client.send(
        new AbortMultipartUploadCommand({ Bucket: this.bucket, Key: this.key(key), UploadId: uploadId }),
      );
      return true;
    } catch (err) {
      if (isUnsupported(err) || s3ErrorName(err) === 'NoSuchUpload') return false;
      throw storageFault('abort multipart upload', err);
    }
  }

  close(): void {
    this.client.destroy();
  }
}

export interface MultipartInput {
  name: string;
  bytes: number;
  sha256: string;
  contentType: string | null;
  priority: Priority;
  notes: string | null;
  batchId: string | null;
  partBytes?: number | undefined;
}

export interface CreatedMultipart {
  id: string;
  uploadId: string;
  s3UploadId: string;
  fileId: string;
  partBytes: number;
  parts: Array<{ partNumber: number; bytes: number; url: string }>;
  expiresAt: Date;
}

/** Opens a session: an S3 multipart upload at the file's final key, and a presigned URL per part. */
export async function createMultipartSession(
  ctx: Context,
  s3: S3Multipart,
  owner: { siteId: string; keyId: string | null; requestId: string },
  input: MultipartInput,
): Promise<CreatedMultipart> {
  if (input.bytes > ctx.config.maxUploadBytes) {
    throw new AppError('PAYLOAD_TOO_LARGE', `file of ${input.bytes} bytes exceeds MAX_UPLOAD_BYTES`);
  }
  const plan = planParts(input.bytes, input.partBytes);
  let uploadId: string = randomUUID();
  let priority = input.priority;
  let notes = input.notes;
  if (input.batchId) {
    const batch = await getOpenBatch(ctx.db, input.batchId, owner.siteId);
    uploadId = batch.id;
    priority = batch.priority;
    notes = batch.notes;
  }
  const fileId = randomUUID();
  const key = objectKeyFor(owner.siteId, uploadId, fileId);
  const s3UploadId = await s3.create(key, input.contentType);
  const id = randomUUID();
  const row = await ctx.db
    .insertInto('upload_sessions')
    .values({
      id,
      protocol: 'multipart',
      site_id: owner.siteId,
      upload_id: uploadId,
      batch_id: input.batchId,
      file_id: fileId,
      object_key: key,
      name: cleanFileName(input.name, `file-${fileId.slice(0, 8)}`),
      content_type: input.contentType,
      bytes: input.bytes,
      priority,
      notes,
      declared_sha256: input.sha256,
      s3_upload_id: s3UploadId,
      part_bytes: plan.partBytes,
      actor_key_id: owner.keyId,
      request_id: owner.requestId,
    })
    .returning(['last_activity_at'])
    .executeTakeFirstOrThrow();
  const expiresIn = Math.min(ctx.config.uploadExpirySeconds, MAX_URL_SECONDS);
  const parts = await Promise.all(
    plan.parts.map(async (p) => ({
      ...p,
      url: await s3.presignPart(key, s3UploadId, p.partNumber, expiresIn),
    })),
  );
  return {
    id,
    uploadId,
    s3UploadId,
    fileId,
    partBytes: plan.partBytes,
    parts,
    expiresAt: new Date(row.last_activity_at.getTime() + expiresIn * 1000),
  };
}

export async function getMultipartSession(
  ctx: Context,
  id: string,
  siteId: string,
): Promise<UploadSessionRow> {
  const session = await ctx.db
    .selectFrom('upload_sessions')
    .selectAll()
    .where('id', '=', id)
    .where('protocol', '=', 'multipart')
    .where('site_id', '=', siteId)
    .executeTakeFirst();
  if (!session) throw new AppError('NOT_FOUND', `multipart upload ${id} not found`);
  return session;
}

async function endSession(
  ctx: Context,
  id: string,
  reason: 'terminated' | 'verification-failed' | 'expired',
) {
  await ctx.db
    .updateTable('upload_sessions')
    .set({ ended_at: sql`now()`, end_reason: reason })
    .where('id', '=', id)
    .where('completed_at', 'is', null)
    .execute();
}

/** Reads the assembled object once: total sha256, and each part's size and MD5 against the plan. */
async function verifyAssembled(
  ctx: Context,
  session: UploadSessionRow,
  plan: PartPlan,
  etags: Map<number, string>,
): Promise<{ sha256: string; problems: string[] }> {
  const sha = createHash('sha256');
  const problems: string[] = [];
  let part = 0;
  let inPart = 0;
  let md5 = createHash('md5');
  let total = 0;
  const closePart = () => {
    const expected = plan.parts[part];
    const etag = etags.get(part + 1) ?? '';
    if (!expected || inPart !== expected.bytes) {
      problems.push(`part ${part + 1} has ${inPart} bytes, ${expected?.bytes ?? 0} were planned`);
    } else if (/^[0-9a-f]{32}$/.test(etag) && md5.digest('hex') !== etag) {
      problems.push(`part ${part + 1} does not match its ETag ${etag}`);
    }
    part++;
    inPart = 0;
    md5 = createHash('md5');
  };
  for await (const chunk of await ctx.storage.get(session.object_key)) {
    let bytes = chunk as Buffer;
    total += bytes.length;
    sha.update(bytes);
    // A chunk may straddle part boundaries; bounded by the chunk length.
    while (bytes.length > 0) {
      const planned = plan.parts[part]?.bytes ?? Number.POSITIVE_INFINITY;
      const take = Math.min(bytes.length, planned - inPart);
      md5.update(bytes.subarray(0, take));
      inPart += take;
      bytes = bytes.subarray(take);
      if (inPart === planned) closePart();
    }
  }
  if (inPart > 0 || part < plan.parts.length) closePart();
  if (total !== Number(session.bytes))
    problems.unshift(`object has ${total} bytes, ${session.bytes} were declared`);
  const sha256 = sha.digest('hex');
  if (sha256 !== session.declared_sha256) {
    problems.push(`sha256 is ${sha256}, ${session.declared_sha256} was declared`);
  }
  return { sha256, problems };
}

/** In-process: one complete per session at a time (a client retrying while the first call still verifies). */
const completing = new Map<string, Promise<UploadSessionRow>>();

export function completeMultipartSession(
  ctx: Context,
  s3: S3Multipart,
  session: UploadSessionRow,
  clientParts: Array<{ partNumber: number; etag: string }>,
): Promise<UploadSessionRow> {
  const running = completing.get(session.id);
  if (running) return running;
  const promise = doComplete(ctx, s3, session, clientParts).finally(() => completing.delete(session.id));
  completing.set(session.id, promise);
  return promise;
}

async function doComplete(
  ctx: Context,
  s3: S3Multipart,
  session: UploadSessionRow,
  clientParts: Array<{ partNumber: number; etag: string }>,
): Promise<UploadSessionRow> {
  if (session.completed_at) return session;
  if (session.ended_at) {
    throw new AppError('CONFLICT', `multipart upload ${session.id} ended (${session.end_reason})`, {
      details: { reason: session.end_reason },
    });
  }
  const plan = planParts(Number(session.bytes), Number(session.part_bytes));
  const etags = new Map<number, string>();
  const unexpected: number[] = [];
  for (const p of clientParts) {
    if (etags.has(p.partNumber) || p.partNumber < 1 || p.partNumber > plan.parts.length)
      unexpected.push(p.partNumber);
    else etags.set(p.partNumber, normalizeEtag(p.etag));
  }
  const missing = plan.parts.filter((p) => !etags.has(p.partNumber)).map((p) => p.partNumber);
  if (missing.length > 0 || unexpected.length > 0) {
    throw new AppError(
      'VALIDATION_FAILED',
      `parts must be 1…${plan.parts.length}, each once` +
        (missing.length ? `; missing ${missing.slice(0, 20).join(', ')}` : '') +
        (unexpected.length ? `; unexpected ${unexpected.slice(0, 20).join(', ')}` : ''),
      { details: { missing, unexpected } },
    );
  }
  const key = session.object_key;
  const s3UploadId = session.s3_upload_id ?? '';
  const listed = await s3.listParts(key, s3UploadId).catch((err: unknown) => {
    // Gone: an earlier complete assembled it (and then failed to stamp); the read-back below decides.
    if (err instanceof AppError && err.code === 'CONFLICT') return undefined;
    throw err;
  });
  if (listed) {
    const problems: string[] = [];
    for (const p of plan.parts) {
      const got = listed.get(p.partNumber);
      if (!got) problems.push(`part ${p.partNumber} is not in storage`);
      else if (got.bytes !== p.bytes)
        problems.push(`part ${p.partNumber} has ${got.bytes} bytes, ${p.bytes} planned`);
      else if (got.etag !== etags.get(p.partNumber))
        problems.push(`part ${p.partNumber} ETag is ${got.etag}`);
    }
    if (problems.length > 0) {
      // Nothing is assembled: the client may upload the parts again and call complete once more.
      throw new AppError('VALIDATION_FAILED', `parts do not match: ${problems.slice(0, 10).join('; ')}`, {
        details: { problems },
      });
    }
  }
  const assembled = await s3.complete(
    key,
    s3UploadId,
    plan.parts.map((p) => ({ partNumber: p.partNumber, etag: etags.get(p.partNumber)! })),
  );
  if (!assembled && !(await ctx.storage.head(key))) {
    throw new AppError('CONFLICT', `multipart upload ${session.id} no longer exists in storage`);
  }
  const { sha256, problems } = await verifyAssembled(ctx, session, plan, etags);
  if (problems.length > 0) {
    await ctx.storage.delete(key).catch(() => undefined);
    await endSession(ctx, session.id, 'verification-failed');
    throw new AppError('CORRUPT_FILE', `upload failed verification: ${problems.slice(0, 10).join('; ')}`, {
      retryable: false,
      details: { problems },
    });
  }
  const completed = await completeSession(ctx, session, sha256);
  ctx.log.info(
    { sessionId: session.id, fileId: completed.file_id, bytes: session.bytes },
    'multipart upload finished',
  );
  return completed;
}

/** Client-requested abort: the parts are dropped (where the server can) and the session ends. */
export async function abortMultipartSession(
  ctx: Context,
  s3: S3Multipart,
  session: UploadSessionRow,
): Promise<void> {
  if (session.completed_at) throw new AppError('CONFLICT', 'a completed upload cannot be aborted');
  await endSession(ctx, session.id, 'terminated');
  await s3.abort(session.object_key, session.s3_upload_id ?? '');
}

/** Expiry: the session ends; the parts are aborted where the server supports it. */
export async function abortExpiredMultipart(
  ctx: Context,
  s3: S3Multipart,
  session: UploadSessionRow,
): Promise<void> {
  const aborted = await s3.abort(session.object_key, session.s3_upload_id ?? '');
  if (!aborted) {
    ctx.log.warn(
      { sessionId: session.id },
      'storage could not abort an expired multipart upload; its parts stay until a bucket lifecycle rule removes them',
    );
  }
}
