import { createHash, randomUUID } from 'node:crypto';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { Transform, type TransformCallback } from 'node:stream';
import { finished } from 'node:stream/promises';
import type { Context } from '../context.js';
import type { Priority } from '../db/schema.js';
import { AppError } from '../errors.js';
import { enqueueIngestJobs, planIngestJobs } from './queues.js';

/**
 * How files enter Teleread, whatever the door (HTTP upload, DICOMweb STOW-RS, DIMSE C-STORE): each body is
 * streamed to object storage while hashed, then rows are committed, then ingest jobs are enqueued. Rows appear
 * only for whole objects, so readers never see half a file; a crash before the enqueue is repaired by the sweep.
 */
export interface UploadRecord {
  id: string;
  siteId: string;
  priority: Priority;
  notes: string | null;
  requestId: string | null;
  actor: { keyId: string | null; role: string };
  /** Where the files came from, for the audit trail: upload, stow-rs, dimse. */
  channel: string;
}

export interface IncomingFile {
  name?: string | undefined;
  contentType?: string | undefined;
  body: Readable;
}

export interface StoredObject {
  id: string;
  name: string;
  key: string;
  bytes: number;
  sha256: string;
  contentType: string | null;
}

/** A byte budget shared by the files of one request; exceeding it aborts with PAYLOAD_TOO_LARGE. */
export interface ByteBudget {
  remaining: number;
}

class HashingCounter extends Transform {
  readonly hash = createHash('sha256');
  bytes = 0;
  constructor(private readonly budget: ByteBudget) {
    super();
  }
  override _transform(chunk: Buffer, _enc: BufferEncoding, done: TransformCallback): void {
    this.bytes += chunk.length;
    this.budget.remaining -= chunk.length;
    if (this.budget.remaining < 0) {
      done(new AppError('PAYLOAD_TOO_LARGE', 'upload is larger than MAX_UPLOAD_BYTES'));
      return;
    }
    this.hash.update(chunk);
    done(null, chunk);
  }
}

/** File names come from clinics and modalities: keep the base name, drop control characters, bound the length. */
export function cleanFileName(raw: string | undefined, fallback: string): string {
  // biome-ignore lint/suspicious/noControlCharactersInRegex: stripping control characters is the point
  const base = path.posix.basename((raw ?? '').replaceAll('\\', '/')).replace(/[\u0000-\u001f\u007f]/g, '');
  return (base || fallback).slice(0, 255);
}

export function newUploadId(): string {
  return randomUUID();
}

/** Streams one body to storage under the upload's prefix, hashing and counting it. */
export async function storeIncoming(
  ctx: Context,
  upload: Pick<UploadRecord, 'id' | 'siteId'>,
  file: IncomingFile,
  budget: ByteBudget,
  fallbackName: string,
): Promise<StoredObject> {
  const id = randomUUID();
  const key = `sites/${upload.siteId}/uploads/${upload.id}/${id}`;
  const counter = new HashingCounter(budget);
  // An error on the source (client gone, size limit) must reach the store so it drops its temp file; so must a
  // source destroyed without one, or the store would wait for bytes that never come.
  file.body.on('error', (err) => counter.destroy(err));
  file.body.on('close', () => {
    if (!file.body.readableEnded && !counter.destroyed) {
      counter.destroy(new AppError('VALIDATION_FAILED', 'the upload ended before this file was complete'));
    }
  });
  await ctx.storage.put(
    key,
    file.body.pipe(counter),
    file.contentType ? { contentType: file.contentType } : {},
  );
  return {
    id,
    name: cleanFileName(file.name, fallbackName),
    key,
    bytes: counter.bytes,
    sha256: counter.hash.digest('hex'),
    contentType: file.contentType ?? null,
  };
}

/**
 * Commits the rows for stored objects (and the upload row itself when `createUpload`), then enqueues their
 * ingest jobs. Call once per HTTP request, or once per instance for DIMSE with the upload created first.
 */
export async function recordFiles(
  ctx: Context,
  upload: UploadRecord,
  stored: StoredObject[],
  options: { createUpload: boolean },
): Promise<void> {
  const plan = planIngestJobs(stored.map((f) => f.id));
  const jobOf = new Map(plan.flatMap((p) => p.fileIds.map((id) => [id, p.jobId] as const)));
  await ctx.db.transaction().execute(async (trx) => {
    if (options.createUpload) {
      await trx
        .insertInto('uploads')
        .values({
          id: upload.id,
          site_id: upload.siteId,
          priority: upload.priority,
          notes: upload.notes,
          request_id: upload.requestId,
        })
        .execute();
    }
    if (stored.length > 0) {
      await trx
        .insertInto('files')
        .values(
          stored.map((f) => ({
            id: f.id,
            upload_id: upload.id,
            site_id: upload.siteId,
            name: f.name,
            object_key: f.key,
            sha256: f.sha256,
            bytes: f.bytes,
            content_type: f.contentType,
            ingest_job: jobOf.get(f.id) ?? null,
          })),
        )
        .execute();
    }
    await trx
      .insertInto('audit_events')
      .values({
        action: options.createUpload ? 'upload.received' : 'upload.file_received',
        actor_key_id: upload.actor.keyId,
        actor_role: upload.actor.role,
        request_id: upload.requestId,
        detail: JSON.stringify({
          uploadId: upload.id,
          channel: upload.channel,
          files: stored.length,
          bytes: stored.reduce((n, f) => n + f.bytes, 0),
        }),
      })
      .execute();
  });
  // After the commit. The files are safely recorded now: if Redis refuses the enqueue (or this process dies
  // first), the sweep finds the rows without `ingested_at` and enqueues them, so the caller still succeeds.
  try {
    await enqueueIngestJobs(ctx.queues, plan, upload.requestId ?? undefined);
  } catch (err) {
    ctx.log.warn(
      { uploadId: upload.id, err: err instanceof Error ? err.message : err },
      'enqueue failed; the sweep will',
    );
  }
}

/**
 * The whole HTTP-request flow: stream every file, then commit and enqueue. On any failure the objects already
 * stored are deleted and nothing is recorded. `meta` is read after the stream, since form fields may follow files.
 */
export async function receiveFiles(
  ctx: Context,
  upload: Omit<UploadRecord, 'priority' | 'notes'>,
  files: AsyncIterable<IncomingFile>,
  meta: () => { priority: Priority; notes: string | null },
): Promise<StoredObject[]> {
  const budget: ByteBudget = { remaining: ctx.config.maxUploadBytes };
  const puts: Promise<StoredObject>[] = [];
  try {
    for await (const file of files) {
      // The next part is read as soon as this body has been, while this object is still being made durable
      // (fsync, rename, directory sync): a request of many small files does not wait on each one in turn.
      const put = storeIncoming(ctx, upload, file, budget, `file-${puts.length + 1}`);
      puts.push(put);
      put.catch(() => undefined); // observed below, with the others
      // A put that fails stops reading its body, which would then never end: its error ends the wait too.
      await Promise.race([finished(file.body), put]);
    }
    if (puts.length === 0) throw new AppError('VALIDATION_FAILED', 'no file in the upload');
    const stored = await Promise.all(puts);
    await recordFiles(ctx, { ...upload, ...meta() }, stored, { createUpload: true });
    return stored;
  } catch (err) {
    const settled = await Promise.allSettled(puts);
    await Promise.allSettled(
      settled.flatMap((r) => (r.status === 'fulfilled' ? [ctx.storage.delete(r.value.key)] : [])),
    );
    throw err;
  }
}
