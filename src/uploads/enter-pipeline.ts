import type { Context } from '../context.js';
import type { UploadBatchRow, UploadSessionRow } from '../db/schema.js';
import { recordFiles, type StoredObject, type UploadRecord } from '../pipeline/receive-files.js';

/** PostgreSQL's unique_violation: another caller recorded the same row first. */
function isUniqueViolation(err: unknown): boolean {
  return (err as { code?: unknown } | null)?.code === '23505';
}

export function channelOf(session: Pick<UploadSessionRow, 'protocol'>): string {
  return session.protocol === 'tus' ? 'tus' : 's3-multipart';
}

/** The stored object a completed session became, as `receive-files` describes the objects it stores. */
export function storedObjectOf(session: UploadSessionRow, sha256: string): StoredObject {
  return {
    id: session.file_id,
    name: session.name,
    key: session.object_key,
    bytes: Number(session.bytes),
    sha256,
    contentType: session.content_type,
  };
}

/** A lone file (no batch) is an upload of its own, with the priority and notes it was created with. */
export function uploadRecordOfSession(session: UploadSessionRow): UploadRecord {
  return {
    id: session.upload_id,
    siteId: session.site_id,
    priority: session.priority,
    notes: session.notes,
    requestId: session.request_id,
    actor: { keyId: session.actor_key_id, role: 'clinic' },
    channel: channelOf(session),
  };
}

export function uploadRecordOfBatch(batch: UploadBatchRow, channel: string): UploadRecord {
  return {
    id: batch.id,
    siteId: batch.site_id,
    priority: batch.priority,
    notes: batch.notes,
    requestId: batch.request_id,
    actor: { keyId: batch.actor_key_id, role: 'clinic' },
    channel,
  };
}

/**
 * Puts finished files into the pipeline through the same path as `POST /v1/uploads` (`recordFiles`: the uploads
 * row, the files rows, the audit event, then the ingest jobs), skipping any file already recorded.
 *
 * This is what makes a retried final PATCH or a repeated complete call harmless: a file's row id is the
 * `file_id` its session was given at creation, so a second call finds it and records nothing, and two racing
 * calls cannot both insert it (the loser's transaction fails on the primary key and it looks again).
 */
export async function enterPipeline(
  ctx: Context,
  upload: UploadRecord,
  stored: StoredObject[],
): Promise<void> {
  for (let attempt = 1; ; attempt++) {
    const ids = stored.map((f) => f.id);
    const recorded =
      ids.length === 0 ? [] : await ctx.db.selectFrom('files').select('id').where('id', 'in', ids).execute();
    const known = new Set(recorded.map((r) => r.id));
    const fresh = stored.filter((f) => !known.has(f.id));
    if (fresh.length === 0) return;
    const uploadRow = await ctx.db
      .selectFrom('uploads')
      .select('id')
      .where('id', '=', upload.id)
      .executeTakeFirst();
    try {
      await recordFiles(ctx, upload, fresh, { createUpload: uploadRow === undefined });
      return;
    } catch (err) {
      // Two attempts: the second sees what the racing caller committed.
      if (!isUniqueViolation(err) || attempt >= 2) throw err;
    }
  }
}
