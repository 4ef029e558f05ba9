import { sql } from 'kysely';
import type { Db } from '../db/database.js';
import { type AppError, isAppError } from '../errors.js';

/** Stamps a file as failed with a stable code, keeping the reason for ops and the clinic. */
export async function recordFileFailure(db: Db, fileId: string, err: AppError | Error): Promise<void> {
  const code = isAppError(err) ? err.code : 'INTERNAL';
  await db
    .updateTable('files')
    .set({
      status: 'failed',
      error_code: code,
      error_message: err.message.slice(0, 2000),
      failed_at: sql`now()`,
    })
    .where('id', '=', fileId)
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
    .set({
      status: 'failed',
      error_code: isAppError(err) ? err.code : 'INTERNAL',
      error_message: err.message.slice(0, 2000),
      failed_at: sql`now()`,
    })
    .where('id', 'in', fileIds)
    .where('ingested_at', 'is', null)
    .where('status', '!=', 'failed')
    .execute();
}
