import { sql } from 'kysely';
import type { Db } from '../db/database.js';
import { type AppError, isAppError } from '../errors.js';

/** The columns a failure stamps: a stable code and the reason, kept for ops and the clinic. */
function failed(err: AppError | Error) {
  return {
    status: 'failed' as const,
    error_code: isAppError(err) ? err.code : 'INTERNAL',
    error_message: err.message.slice(0, 2000),
    failed_at: sql<Date>`now()`,
  };
}

/** Stamps a file as failed (a render the process step could not make, for instance). */
export async function recordFileFailure(db: Db, fileId: string, err: AppError | Error): Promise<void> {
  await db.updateTable('files').set(failed(err)).where('id', '=', fileId).execute();
}

/**
 * Stamps a file that failed its ingest, unless another job has attached it meanwhile (the sweep's single-file
 * job and a batch can both hold a file; the one that loses must not fail a row the other finished).
 */
export async function recordIngestFailure(db: Db, fileId: string, err: AppError | Error): Promise<void> {
  await db
    .updateTable('files')
    .set(failed(err))
    .where('id', '=', fileId)
    .where('ingested_at', 'is', null)
    .execute();
}

/** Stamps the files of a batch that were neither ingested nor already failed. */
export async function recordUnfinishedFailure(
  db: Db,
  fileIds: string[],
  err: AppError | Error,
): Promise<void> {
  if (fileIds.length === 0) return;
  await db
    .updateTable('files')
    .set(failed(err))
    .where('id', 'in', fileIds)
    .where('ingested_at', 'is', null)
    .where('status', '!=', 'failed')
    .execute();
}
