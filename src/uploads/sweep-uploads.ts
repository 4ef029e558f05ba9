import { readdir, stat, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { sql } from 'kysely';
import type { Context } from '../context.js';
import type { UploadSessionRow } from '../db/schema.js';
import { tusStagingDir } from './publish-staged-file.js';
import { abortExpiredMultipart, S3Multipart } from './s3-multipart.js';
import { enterFinishedSession, sealUploadBatch } from './upload-batches.js';

/**
 * The uploads part of the maintenance sweep (run by workers, next to the repair sweep):
 * - partial tus and S3 multipart uploads idle for UPLOAD_EXPIRY_SECONDS are removed (staged bytes deleted,
 *   S3 parts aborted) and their sessions ended, so clients get 410 Gone;
 * - batches idle that long are sealed with the files that did arrive (a clinic's finished files are not
 *   dropped), or ended when none did;
 * - staged files no live session owns (a crash during creation) are deleted once as old;
 * - finished files that missed the pipeline (a crash between publish and record) are recorded.
 * Removals are counted in Redis, where every API process's `/metrics` reads them: workers have no HTTP port.
 */

/** Rows handled per sweep and kind, so a backlog drains over several sweeps instead of one long one. */
const SWEEP_BATCH = 200;

export type ExpiredKind = 'tus' | 'multipart' | 'batch';
export const EXPIRED_KINDS: readonly ExpiredKind[] = ['tus', 'multipart', 'batch'];

function expiredCounterKey(ctx: Context): string {
  return `${ctx.config.queuePrefix}:metrics:uploads-expired`;
}

export async function countExpired(ctx: Context, kind: ExpiredKind, n: number): Promise<void> {
  if (n > 0) await ctx.redis.hincrby(expiredCounterKey(ctx), kind, n);
}

/** Removals since the deployment started, per kind, as every process has counted them. */
export async function readExpiredTotals(ctx: Context): Promise<Record<ExpiredKind, number>> {
  const raw = await ctx.redis.hgetall(expiredCounterKey(ctx));
  return { tus: Number(raw.tus ?? 0), multipart: Number(raw.multipart ?? 0), batch: Number(raw.batch ?? 0) };
}

function idleCutoff(ctx: Context) {
  return sql<Date>`now() - make_interval(secs => ${ctx.config.uploadExpirySeconds})`;
}

/** Ends idle unfinished sessions of one protocol and returns them (ended in the same statement, so once). */
async function endIdleSessions(ctx: Context, protocol: 'tus' | 'multipart'): Promise<UploadSessionRow[]> {
  return ctx.db
    .updateTable('upload_sessions')
    .set({ ended_at: sql`now()`, end_reason: 'expired' })
    .where(
      'id',
      'in',
      ctx.db
        .selectFrom('upload_sessions')
        .select('id')
        .where('protocol', '=', protocol)
        .where('completed_at', 'is', null)
        .where('ended_at', 'is', null)
        .where('last_activity_at', '<', idleCutoff(ctx))
        .limit(SWEEP_BATCH),
    )
    .returningAll()
    .execute();
}

export async function expireTusSessions(ctx: Context, stagingDir: string): Promise<number> {
  const ended = await endIdleSessions(ctx, 'tus');
  for (const s of ended) await unlink(join(stagingDir, s.id)).catch(() => undefined);
  return ended.length;
}

export async function expireMultipartSessions(ctx: Context, s3: S3Multipart | null): Promise<number> {
  const ended = await endIdleSessions(ctx, 'multipart');
  for (const s of ended) {
    if (s3) {
      await abortExpiredMultipart(ctx, s3, s).catch((err: unknown) =>
        ctx.log.warn(
          { sessionId: s.id, err: (err as Error).message },
          'abort of an expired multipart upload failed',
        ),
      );
    }
  }
  return ended.length;
}

/** Idle open batches: sealed with their finished files, or ended when they have none. Returns the ended ones. */
export async function expireBatches(ctx: Context): Promise<{ ended: number; sealed: number }> {
  const idle = await ctx.db
    .selectFrom('upload_batches as b')
    .selectAll('b')
    .where('b.sealed_at', 'is', null)
    .where('b.expired_at', 'is', null)
    .where('b.last_activity_at', '<', idleCutoff(ctx))
    .where(({ not, exists, selectFrom }) =>
      not(
        exists(
          selectFrom('upload_sessions as s')
            .select('s.id')
            .whereRef('s.batch_id', '=', 'b.id')
            .where('s.completed_at', 'is', null)
            .where('s.ended_at', 'is', null),
        ),
      ),
    )
    .limit(SWEEP_BATCH)
    .execute();
  let ended = 0;
  let sealed = 0;
  for (const batch of idle) {
    const finished = await ctx.db
      .selectFrom('upload_sessions')
      .select('id')
      .where('batch_id', '=', batch.id)
      .where('completed_at', 'is not', null)
      .where('ended_at', 'is', null)
      .executeTakeFirst();
    if (finished) {
      await sealUploadBatch(ctx, batch.id, batch.site_id, { force: true });
      sealed++;
      ctx.log.info({ batchId: batch.id }, 'idle upload batch sealed with the files it received');
    } else {
      const res = await ctx.db
        .updateTable('upload_batches')
        .set({ expired_at: sql`now()` })
        .where('id', '=', batch.id)
        .where('sealed_at', 'is', null)
        .executeTakeFirst();
      ended += Number(res.numUpdatedRows);
    }
  }
  return { ended, sealed };
}

/** Staged files with no live session: made by a creation that crashed before its row, or left by a crash. */
export async function removeOrphanStagedFiles(ctx: Context, stagingDir: string): Promise<number> {
  let names: string[];
  try {
    names = (await readdir(stagingDir)).filter((n) => /^[0-9a-f]{32}$/.test(n));
  } catch {
    return 0;
  }
  const cutoffMs = Date.now() - ctx.config.uploadExpirySeconds * 1000;
  let removed = 0;
  for (let i = 0; i < names.length; i += SWEEP_BATCH) {
    const slice = names.slice(i, i + SWEEP_BATCH);
    const live = await ctx.db
      .selectFrom('upload_sessions')
      .select('id')
      .where('id', 'in', slice)
      .where('completed_at', 'is', null)
      .where('ended_at', 'is', null)
      .execute();
    const owned = new Set(live.map((r) => r.id));
    for (const name of slice) {
      if (owned.has(name)) continue;
      const path = join(stagingDir, name);
      const info = await stat(path).catch(() => undefined);
      // Recent ones may belong to a creation in progress (file made, row not yet visible).
      if (!info || info.mtimeMs > cutoffMs) continue;
      await unlink(path).catch(() => undefined);
      removed++;
    }
  }
  return removed;
}

/** Finished files that should be in the pipeline and are not (a crash between publish and record). */
export async function repairFinishedSessions(ctx: Context): Promise<number> {
  const cutoff = sql<Date>`now() - make_interval(secs => ${ctx.config.stuckAfterSeconds})`;
  const missing = await ctx.db
    .selectFrom('upload_sessions as s')
    .leftJoin('files as f', 'f.id', 's.file_id')
    .leftJoin('upload_batches as b', 'b.id', 's.batch_id')
    .selectAll('s')
    .where('s.completed_at', 'is not', null)
    .where('s.completed_at', '<', cutoff)
    .where('s.ended_at', 'is', null)
    .where('s.sha256', 'is not', null)
    .where('f.id', 'is', null)
    .where((eb) => eb.or([eb('s.batch_id', 'is', null), eb('b.sealed_at', 'is not', null)]))
    .limit(SWEEP_BATCH)
    .execute();
  for (const s of missing) {
    const batch =
      s.batch_id === null
        ? null
        : await ctx.db
            .selectFrom('upload_batches')
            .selectAll()
            .where('id', '=', s.batch_id)
            .executeTakeFirstOrThrow();
    await enterFinishedSession(ctx, s, s.sha256!, batch);
  }
  return missing.length;
}

export interface UploadSweepResult {
  expired: Record<ExpiredKind, number>;
  sealed: number;
  orphans: number;
  repaired: number;
}

/** The whole uploads sweep; called from the maintenance job. */
export async function sweepUploads(ctx: Context): Promise<UploadSweepResult> {
  const stagingDir = tusStagingDir(ctx.storage, ctx.config.tusStagingDir);
  const s3 = ctx.storage.driver === 's3' ? new S3Multipart(ctx.config.storageUrl) : null;
  try {
    // Sessions first: a batch expires only once none of its members is still live.
    const tus = await expireTusSessions(ctx, stagingDir);
    const orphans = await removeOrphanStagedFiles(ctx, stagingDir);
    const multipart = await expireMultipartSessions(ctx, s3);
    const batches = await expireBatches(ctx);
    const repaired = await repairFinishedSessions(ctx);
    const expired = { tus: tus + orphans, multipart, batch: batches.ended };
    for (const kind of EXPIRED_KINDS) await countExpired(ctx, kind, expired[kind]);
    return { expired, sealed: batches.sealed, orphans, repaired };
  } finally {
    s3?.close();
  }
}
