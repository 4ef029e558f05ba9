import { AsyncLocalStorage } from 'node:async_hooks';
import { createHash, type Hash, randomUUID, timingSafeEqual } from 'node:crypto';
import { type FileHandle, mkdir, open, stat, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { DataStore, ERRORS, Upload } from '@tus/utils';
import { sql } from 'kysely';
import type { Context } from '../context.js';
import type { UploadSessionRow } from '../db/schema.js';
import { AppError, isAppError } from '../errors.js';
import { cleanFileName } from '../pipeline/receive-files.js';
import { publishStagedFile, sha256OfFile, sha256OfStream } from './publish-staged-file.js';
import { countExpired, expireTusSessions } from './sweep-uploads.js';
import { completeSession, getOpenBatch } from './upload-batches.js';
import { objectKeyFor, parseBatchId, parseNotes, parsePriority, parseSha256 } from './upload-input.js';

/**
 * The tus 1.0 data store behind `/v1/tus`: partial uploads are plain files in a staging folder, and the
 * session (who, which site, which file id, where it goes) is a row of `upload_sessions`.
 *
 * - creation / creation-with-upload: a row and an empty staged file; Upload-Metadata carries `filename`
 *   (or `name`), `filetype`, `priority`, `notes`, and optionally `batch` (an upload batch id: the file then
 *   joins that batch, whose priority and notes apply) and `sha256` (the whole file's, checked at the end).
 * - checksum (sha256): a PATCH with `Upload-Checksum: sha256 <base64>` is hashed as it is written; on a
 *   mismatch, or a body cut short, its bytes are dropped (the file is truncated back) and 460 is answered, so
 *   the acknowledged offset only ever covers verified bytes.
 * - expiration: sliding. A partial upload expires UPLOAD_EXPIRY_SECONDS after its last PATCH; tus-node-server
 *   computes Upload-Expires from `creation_date`, which this store therefore reports as the last activity.
 * - termination: DELETE drops the staged bytes and ends the session.
 *
 * No request body is ever held whole: chunks are written as they arrive, and the whole file's sha256 is kept
 * running in memory between PATCHes (a hash state, not bytes). After a restart, or a PATCH served by another
 * process, the running hash is lost and the staged file is hashed once more when it is complete.
 *
 * When the last byte arrives, the file is published at its object key (a rename on the fs driver) and enters
 * the pipeline through `recordFiles`, with the files row id fixed at creation: a final PATCH sent twice, or a
 * HEAD racing it, finds the row and records nothing more.
 */

/** What the HTTP layer knows about the request that tus-node-server does not pass to its store. */
export interface TusRequestContext {
  siteId: string;
  keyId: string | null;
  requestId: string;
  /** The sha256 the client sent in Upload-Checksum for this request's body. */
  checksum?: Buffer | undefined;
}

/** Set around each request handed to tus-node-server, read back in the store's methods. */
export const tusRequestContext = new AsyncLocalStorage<TusRequestContext>();

/** tus-node-server answers these objects as they are (status and body). */
export interface TusError {
  status_code: number;
  body: string;
}

export const CHECKSUM_MISMATCH: TusError = { status_code: 460, body: 'Checksum Mismatch\n' };

/** tus ids are 32 hex digits (tus-node-server's own naming); anything else never names a staged file. */
const TUS_ID = /^[0-9a-f]{32}$/;

function tusError(status: number, message: string): TusError {
  return { status_code: status, body: `${message}\n` };
}

/** Validation errors become plain tus answers with their message, so a tus client shows the reason. */
function asTusError(err: unknown): unknown {
  if (isAppError(err) && err.status < 500) return tusError(err.status, `${err.code}: ${err.message}`);
  return err;
}

function errnoCode(err: unknown): string {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : '';
}

/** Bytes gathered before one write: 64 KiB socket chunks become 1 MiB writes. */
const WRITE_BATCH = 1024 * 1024;

/**
 * Writes a request body to the staged file while the next bytes are being read: the chunks received during a
 * write are gathered and written together (one `writev`) when it ends. At most one batch waits while one is
 * written, so memory per request stays around 2 MiB, and the socket is never left unread for a whole write.
 */
class BatchedWriter {
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  private inflight: Promise<void> | undefined;
  private failure: unknown;
  /** Bytes written to the file from the start offset: the new offset once `end` has resolved. */
  position: number;

  constructor(
    private readonly handle: FileHandle,
    offset: number,
  ) {
    this.position = offset;
  }

  async push(bytes: Buffer): Promise<void> {
    if (this.failure !== undefined) throw this.failure;
    this.pending.push(bytes);
    this.pendingBytes += bytes.length;
    if (this.pendingBytes < WRITE_BATCH) return;
    if (this.inflight) await this.inflight;
    if (this.failure !== undefined) throw this.failure;
    this.inflight = this.flush();
  }

  /** Writes what is left; resolves with the first write error, if any. */
  async end(): Promise<unknown> {
    if (this.inflight) await this.inflight;
    if (this.failure === undefined && this.pendingBytes > 0) await this.flush();
    return this.failure;
  }

  private async flush(): Promise<void> {
    const buffers = this.pending;
    const length = this.pendingBytes;
    this.pending = [];
    this.pendingBytes = 0;
    try {
      let done = 0;
      // Bounded: each pass writes at least one byte or throws.
      while (done < length) {
        const rest = done === 0 ? buffers : [Buffer.concat(buffers).subarray(done)];
        const { bytesWritten } = await this.handle.writev(rest, this.position + done);
        if (bytesWritten <= 0) throw new Error('write made no progress');
        done += bytesWritten;
      }
      this.position += length;
    } catch (err) {
      this.failure ??= err;
    }
  }
}

export interface TusStoreMetrics {
  bytesReceived(n: number): void;
  uploadFinished(): void;
}

interface RunningHash {
  hash: Hash;
  /** Bytes hashed so far; equal to the staged size when the hash may be continued. */
  bytes: number;
}

export class TusStore extends DataStore {
  private readonly hashes = new Map<string, RunningHash>();
  private readonly finishing = new Map<string, Promise<UploadSessionRow>>();

  constructor(
    private readonly ctx: Context,
    readonly stagingDir: string,
    private readonly metrics?: TusStoreMetrics,
  ) {
    super();
    this.extensions = ['creation', 'creation-with-upload', 'termination', 'expiration', 'checksum'];
  }

  override getExpiration(): number {
    return this.ctx.config.uploadExpirySeconds * 1000;
  }

  stagedPath(id: string): string {
    if (!TUS_ID.test(id)) throw ERRORS.FILE_NOT_FOUND;
    return join(this.stagingDir, id);
  }

  /** The session of a tus id, as the calling clinic may see it: another site's upload is "not found". */
  private async sessionFor(id: string): Promise<UploadSessionRow> {
    if (!TUS_ID.test(id)) throw ERRORS.FILE_NOT_FOUND;
    const session = await this.ctx.db
      .selectFrom('upload_sessions')
      .selectAll()
      .where('id', '=', id)
      .where('protocol', '=', 'tus')
      .executeTakeFirst();
    const caller = tusRequestContext.getStore();
    if (!session || (caller && caller.siteId !== session.site_id)) throw ERRORS.FILE_NOT_FOUND;
    if (session.ended_at) throw ERRORS.FILE_NO_LONGER_EXISTS;
    return session;
  }

  override async create(upload: Upload): Promise<Upload> {
    const caller = tusRequestContext.getStore();
    if (!caller) throw tusError(401, 'not authenticated');
    if (upload.size === undefined) throw ERRORS.UNSUPPORTED_CREATION_DEFER_LENGTH_EXTENSION;
    const meta = upload.metadata ?? {};
    let input: {
      name: string;
      contentType: string | null;
      priority: ReturnType<typeof parsePriority>;
      notes: string | null;
      batchId: string | null;
      sha256: string | null;
    };
    try {
      input = {
        name: cleanFileName(meta.filename ?? meta.name ?? undefined, `file-${upload.id.slice(0, 8)}`),
        contentType: meta.filetype ? meta.filetype.slice(0, 255) : null,
        priority: parsePriority(meta.priority),
        notes: parseNotes(meta.notes),
        batchId: parseBatchId(meta.batch),
        sha256: parseSha256(meta.sha256, 'Upload-Metadata sha256'),
      };
    } catch (err) {
      throw asTusError(err);
    }
    let uploadId: string = randomUUID();
    let priority = input.priority;
    let notes = input.notes;
    if (input.batchId) {
      const batch = await getOpenBatch(this.ctx.db, input.batchId, caller.siteId).catch((err) => {
        throw asTusError(err);
      });
      uploadId = batch.id;
      priority = batch.priority;
      notes = batch.notes;
    }
    const fileId = randomUUID();
    await this.ctx.db
      .insertInto('upload_sessions')
      .values({
        id: upload.id,
        protocol: 'tus',
        site_id: caller.siteId,
        upload_id: uploadId,
        batch_id: input.batchId,
        file_id: fileId,
        object_key: objectKeyFor(caller.siteId, uploadId, fileId),
        name: input.name,
        content_type: input.contentType,
        bytes: upload.size,
        priority,
        notes,
        metadata: JSON.stringify(meta),
        declared_sha256: input.sha256,
        actor_key_id: caller.keyId,
        request_id: caller.requestId,
      })
      .execute();
    try {
      await mkdir(this.stagingDir, { recursive: true });
      const handle = await open(this.stagedPath(upload.id), 'wx');
      await handle.close();
    } catch (err) {
      await this.ctx.db.deleteFrom('upload_sessions').where('id', '=', upload.id).execute();
      throw err;
    }
    this.hashes.set(upload.id, { hash: createHash('sha256'), bytes: 0 });
    upload.creation_date = new Date().toISOString();
    upload.storage = { type: 'teleread', path: objectKeyFor(caller.siteId, uploadId, fileId) };
    return upload;
  }

  /** Bytes staged so far; undefined when the staged file is gone (published, or never made). */
  private async stagedSize(id: string): Promise<number | undefined> {
    try {
      return (await stat(this.stagedPath(id))).size;
    } catch (err) {
      if (errnoCode(err) === 'ENOENT') return undefined;
      throw err;
    }
  }

  override async getUpload(id: string): Promise<Upload> {
    let session = await this.sessionFor(id);
    const size = Number(session.bytes);
    if (!session.completed_at) {
      const offset = await this.stagedSize(id);
      // Every byte is here but the upload was not finished (a crash, a failed record, a lost response):
      // finish it now, so the client that asks for the offset is told the truth only once it is true.
      if (offset === undefined || offset >= size) {
        session = await this.finish(id);
      } else {
        return new Upload({
          id,
          size,
          offset,
          metadata: session.metadata,
          creation_date: session.last_activity_at.toISOString(),
        });
      }
    }
    return new Upload({ id, size, offset: size, metadata: session.metadata });
  }

  override async write(stream: Readable, id: string, offset: number): Promise<number> {
    const session = await this.sessionFor(id);
    const size = Number(session.bytes);
    if (session.completed_at) {
      // A final PATCH sent again after its answer was lost: nothing to write, the upload is done.
      for await (const _ of stream) {
        // drained, not stored
      }
      return size;
    }
    // Stamped at the start too: a long PATCH on a slow link must not look idle to the expiry sweep.
    await this.touch(id);
    const expected = tusRequestContext.getStore()?.checksum;
    const path = this.stagedPath(id);
    const running = this.hashes.get(id);
    // The running hash continues only from the exact offset it has seen; otherwise the end rehashes the file.
    const fileHash = running && running.bytes === offset ? running.hash : undefined;
    this.hashes.delete(id);
    const before = expected && fileHash ? fileHash.copy() : undefined;
    const chunkHash = expected ? createHash('sha256') : undefined;

    const handle = await open(path, 'r+');
    const writer = new BatchedWriter(handle, offset);
    let failure: unknown;
    try {
      for await (const chunk of stream) {
        const bytes = chunk as Buffer;
        chunkHash?.update(bytes);
        fileHash?.update(bytes);
        await writer.push(bytes);
      }
    } catch (err) {
      failure = err;
    }
    // What arrived before a cut is written too: without a checksum, those bytes count.
    const writeFailure = await writer.end();
    failure ??= writeFailure;
    let position = writer.position;
    // Part of a failed write may have reached the file: the offset is what was fully written.
    if (writeFailure !== undefined) await handle.truncate(position).catch(() => undefined);
    // A failed disk write leaves the hash ahead of the file: the end will hash the file again.
    const hashUsable = writeFailure === undefined;

    let rejected: unknown;
    if (expected && chunkHash) {
      const digest = chunkHash.digest();
      const verified =
        failure === undefined && digest.length === expected.length && timingSafeEqual(digest, expected);
      if (!verified) {
        // A checksummed body is all or nothing: drop what this request wrote.
        await handle.truncate(offset);
        position = offset;
        rejected = failure ?? CHECKSUM_MISMATCH;
      }
    }
    await handle.close();
    this.metrics?.bytesReceived(position - offset);
    if (fileHash && hashUsable && rejected === undefined)
      this.hashes.set(id, { hash: fileHash, bytes: position });
    else if (before) this.hashes.set(id, { hash: before, bytes: offset });
    await this.touch(id);
    if (rejected !== undefined) throw rejected;
    if (failure !== undefined) throw failure;
    return position;
  }

  private async touch(id: string): Promise<void> {
    await this.ctx.db
      .updateTable('upload_sessions')
      .set({ last_activity_at: sql`now()` })
      .where('id', '=', id)
      .execute();
  }

  override async remove(id: string): Promise<void> {
    const session = await this.sessionFor(id);
    if (session.completed_at) throw ERRORS.INVALID_TERMINATION;
    await this.ctx.db
      .updateTable('upload_sessions')
      .set({ ended_at: sql`now()`, end_reason: 'terminated' })
      .where('id', '=', id)
      .where('completed_at', 'is', null)
      .execute();
    this.hashes.delete(id);
    await unlink(this.stagedPath(id)).catch(() => undefined);
  }

  override async declareUploadLength(): Promise<void> {
    throw ERRORS.UNSUPPORTED_CREATION_DEFER_LENGTH_EXTENSION;
  }

  override async deleteExpired(): Promise<number> {
    const removed = await expireTusSessions(this.ctx, this.stagingDir);
    await countExpired(this.ctx, 'tus', removed);
    return removed;
  }

  /**
   * Publishes a complete upload and puts it into the pipeline. Concurrent calls in this process share one run;
   * across processes the files row's primary key keeps the record single (see `enterPipeline`).
   */
  finish(id: string): Promise<UploadSessionRow> {
    const running = this.finishing.get(id);
    if (running) return running;
    const promise = this.doFinish(id).finally(() => this.finishing.delete(id));
    this.finishing.set(id, promise);
    return promise;
  }

  private async doFinish(id: string): Promise<UploadSessionRow> {
    const session = await this.sessionFor(id);
    if (session.completed_at) return session;
    const size = Number(session.bytes);
    const staged = this.stagedPath(id);
    const stagedSize = await this.stagedSize(id);
    let sha256: string;
    if (stagedSize !== undefined) {
      if (stagedSize !== size) {
        throw new AppError('CONFLICT', `tus upload ${id} has ${stagedSize} of ${size} bytes`, {
          retryable: false,
        });
      }
      const running = this.hashes.get(id);
      this.hashes.delete(id);
      sha256 = running?.bytes === size ? running.hash.digest('hex') : (await sha256OfFile(staged)).sha256;
      if (session.declared_sha256 && session.declared_sha256 !== sha256) {
        await this.ctx.db
          .updateTable('upload_sessions')
          .set({ ended_at: sql`now()`, end_reason: 'checksum-mismatch', sha256 })
          .where('id', '=', id)
          .execute();
        await unlink(staged).catch(() => undefined);
        throw tusError(
          460,
          `Checksum Mismatch: the file's sha256 is ${sha256}, Upload-Metadata declared ${session.declared_sha256}; the upload is discarded`,
        );
      }
      await publishStagedFile(this.ctx.storage, staged, session.object_key, size);
    } else {
      // Published before a crash that came before the record: the object is the file.
      const info = await this.ctx.storage.head(session.object_key);
      if (!info || info.bytes !== size) throw ERRORS.FILE_NO_LONGER_EXISTS;
      sha256 = (await sha256OfStream(await this.ctx.storage.get(session.object_key))).sha256;
    }
    const completed = await completeSession(this.ctx, session, sha256);
    this.metrics?.uploadFinished();
    this.ctx.log.info(
      { tusId: id, fileId: completed.file_id, uploadId: completed.upload_id, bytes: size },
      'tus upload finished',
    );
    return completed;
  }
}
