import { randomUUID } from 'node:crypto';
import { sql } from 'kysely';
import type { Context } from '../context.js';
import type { Db } from '../db/database.js';
import type { Priority, UploadBatchRow, UploadSessionRow } from '../db/schema.js';
import { AppError } from '../errors.js';
import type { StoredObject } from '../pipeline/receive-files.js';
import {
  channelOf,
  enterPipeline,
  storedObjectOf,
  uploadRecordOfBatch,
  uploadRecordOfSession,
} from './enter-pipeline.js';

/**
 * Upload batches: the files a clinic sends one by one (each over tus or S3 multipart) that must form one upload,
 * as the files of one `POST /v1/uploads` request do. A WFDB header and its signal files, or a study folder, go
 * in one batch. Files of a batch enter the pipeline together when the batch is sealed
 * (`POST /v1/uploads/batches/:id/complete`), so ingest never sees a signal file before its header.
 *
 *   POST /v1/uploads/batches            → { batchId }
 *   tus POST /v1/tus  Upload-Metadata: batch <batchId>, filename …   (once per file)
 *   POST /v1/uploads/batches/:id/complete → { uploadId: batchId, files }
 *
 * The batch id becomes the uploads row's id. A batch left open (the clinic never came back) is sealed by the
 * expiry sweep with the files that did arrive, so nothing a clinic finished sending is silently dropped.
 */

export interface BatchOwner {
  siteId: string;
  keyId: string | null;
}

export async function createUploadBatch(
  db: Db,
  owner: BatchOwner,
  input: { priority: Priority; notes: string | null; requestId: string | null },
): Promise<UploadBatchRow> {
  return db
    .insertInto('upload_batches')
    .values({
      id: randomUUID(),
      site_id: owner.siteId,
      priority: input.priority,
      notes: input.notes,
      request_id: input.requestId,
      actor_key_id: owner.keyId,
    })
    .returningAll()
    .executeTakeFirstOrThrow();
}

/** The batch, when it belongs to the site; another site's batch is "not found", so ids do not leak. */
export async function getBatchForSite(db: Db, batchId: string, siteId: string): Promise<UploadBatchRow> {
  const batch = await db
    .selectFrom('upload_batches')
    .selectAll()
    .where('id', '=', batchId)
    .where('site_id', '=', siteId)
    .executeTakeFirst();
  if (!batch) throw new AppError('NOT_FOUND', `upload batch ${batchId} not found`);
  return batch;
}

/** A batch new files may join: it exists for the site, is not sealed, and has not expired. */
export async function getOpenBatch(db: Db, batchId: string, siteId: string): Promise<UploadBatchRow> {
  const batch = await getBatchForSite(db, batchId, siteId);
  if (batch.expired_at) {
    throw new AppError('CONFLICT', `upload batch ${batchId} expired; create a new batch`, {
      details: { reason: 'batch-expired' },
    });
  }
  if (batch.sealed_at) {
    throw new AppError('CONFLICT', `upload batch ${batchId} is already complete; create a new batch`, {
      details: { reason: 'batch-sealed' },
    });
  }
  await db
    .updateTable('upload_batches')
    .set({ last_activity_at: sql`now()` })
    .where('id', '=', batchId)
    .execute();
  return batch;
}

/**
 * Marks a session's file as finished and puts it into the pipeline when it may go now: a lone file at once, a
 * batch member only once its batch is sealed (the seal takes every member finished before it). The batch row is
 * share-locked while the session is stamped, so a member finishing during the seal is either in the seal's list
 * or sees the seal and records itself: it cannot fall between the two.
 */
export async function completeSession(
  ctx: Context,
  session: UploadSessionRow,
  sha256: string,
): Promise<UploadSessionRow> {
  if (session.batch_id === null) {
    // Rows first, stamp second: a crash in between leaves a session that a retry (or the sweep) completes,
    // and the files row it finds makes the retry record nothing twice.
    await enterFinishedSession(ctx, session, sha256, null);
    return stampCompleted(ctx.db, session.id, sha256);
  }
  const batchId = session.batch_id;
  const { row, batch } = await ctx.db.transaction().execute(async (trx) => {
    const batch = await trx
      .selectFrom('upload_batches')
      .selectAll()
      .where('id', '=', batchId)
      .forShare()
      .executeTakeFirstOrThrow();
    const row = await stampCompleted(trx, session.id, sha256);
    await trx
      .updateTable('upload_batches')
      .set({ last_activity_at: sql`now()` })
      .where('id', '=', batchId)
      .execute();
    return { row, batch };
  });
  if (batch.sealed_at) await enterFinishedSession(ctx, session, sha256, batch);
  return row;
}

/** Puts one finished file into the pipeline: as an upload of its own, or as a member of its sealed batch. */
export async function enterFinishedSession(
  ctx: Context,
  session: UploadSessionRow,
  sha256: string,
  batch: UploadBatchRow | null,
): Promise<void> {
  const upload = batch ? uploadRecordOfBatch(batch, channelOf(session)) : uploadRecordOfSession(session);
  await enterPipeline(ctx, upload, [storedObjectOf(session, sha256)]);
}

async function stampCompleted(db: Db, sessionId: string, sha256: string): Promise<UploadSessionRow> {
  return db
    .updateTable('upload_sessions')
    .set({ completed_at: sql`coalesce(completed_at, now())`, sha256, last_activity_at: sql`now()` })
    .where('id', '=', sessionId)
    .returningAll()
    .executeTakeFirstOrThrow();
}

export interface SealedBatch {
  uploadId: string;
  files: StoredObject[];
}

/**
 * Seals a batch: every finished member enters the pipeline as one upload (one `recordFiles` call). Refused
 * with 409 while a member is still being sent, unless `force` (the expiry sweep, which drops those members).
 * Idempotent: sealing a sealed batch records whatever is missing (a crash between seal and record) and returns
 * the same files.
 */
export async function sealUploadBatch(
  ctx: Context,
  batchId: string,
  siteId: string,
  options: { force?: boolean } = {},
): Promise<SealedBatch> {
  const { batch, members } = await ctx.db.transaction().execute(async (trx) => {
    const batch = await trx
      .selectFrom('upload_batches')
      .selectAll()
      .where('id', '=', batchId)
      .where('site_id', '=', siteId)
      .forUpdate()
      .executeTakeFirst();
    if (!batch) throw new AppError('NOT_FOUND', `upload batch ${batchId} not found`);
    if (batch.expired_at) {
      throw new AppError('CONFLICT', `upload batch ${batchId} expired before it was complete`, {
        details: { reason: 'batch-expired' },
      });
    }
    const members = await trx
      .selectFrom('upload_sessions')
      .selectAll()
      .where('batch_id', '=', batchId)
      .where('ended_at', 'is', null)
      .orderBy('created_at')
      .execute();
    if (!batch.sealed_at) {
      const unfinished = members.filter((m) => m.completed_at === null);
      if (unfinished.length > 0 && !options.force) {
        throw new AppError(
          'CONFLICT',
          `upload batch ${batchId} still has ${unfinished.length} file(s) being sent: ${unfinished
            .slice(0, 10)
            .map((m) => m.name)
            .join(', ')}`,
          { details: { reason: 'batch-incomplete', unfinished: unfinished.map((m) => m.id) } },
        );
      }
      if (!members.some((m) => m.completed_at !== null)) {
        throw new AppError('VALIDATION_FAILED', `upload batch ${batchId} has no finished file`);
      }
      await trx
        .updateTable('upload_batches')
        .set({ sealed_at: sql`now()`, last_activity_at: sql`now()` })
        .where('id', '=', batchId)
        .execute();
    }
    return { batch, members: members.filter((m) => m.completed_at !== null && m.sha256 !== null) };
  });
  const files = members.map((m) => storedObjectOf(m, m.sha256!));
  const channel = members[0] ? channelOf(members[0]) : 'tus';
  // After the seal's commit: a member finishing from now on sees the seal and records itself.
  await enterPipeline(ctx, uploadRecordOfBatch(batch, channel), files);
  return { uploadId: batch.id, files };
}
