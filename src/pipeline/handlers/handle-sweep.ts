import { sql } from 'kysely';
import { sweepUploads } from '../../uploads/sweep-uploads.js';
import type { JobContext, JobOutcome } from '../job-context.js';
import { enqueueIngest, enqueueProcess, enqueueRoute, ingestJobPending } from '../queues.js';

/** Most rows one sweep re-enqueues per step, so a backlog drains over several sweeps instead of one burst. */
const SWEEP_BATCH = 500;

/**
 * The repair sweep: finds rows that miss their next stamp for longer than STUCK_AFTER_SECONDS and enqueues
 * that step again. Job ids are derived from row ids, so a row whose job is still queued is not doubled.
 * This is what makes "commit, then enqueue" safe: a crash between the two is repaired here.
 */
export async function handleSweep({ ctx, log }: JobContext): Promise<JobOutcome> {
  const { db, queues, config } = ctx;
  const cutoff = sql<Date>`now() - make_interval(secs => ${config.stuckAfterSeconds})`;

  const stuck = await db
    .selectFrom('files')
    .select(['id', 'ingest_job'])
    .where('ingested_at', 'is', null)
    .where('status', 'in', ['received', 'processing'])
    .where('received_at', '<', cutoff)
    .limit(SWEEP_BATCH)
    .execute();
  // A file whose job is still queued (a batch waiting its turn behind a backlog) is not stuck: leave it to that
  // job. The others lost theirs (Redis refused the enqueue, or lost it) and are queued again, one by one.
  const pending = new Map<string, boolean>();
  const received: typeof stuck = [];
  for (const f of stuck) {
    if (f.ingest_job) {
      if (!pending.has(f.ingest_job)) pending.set(f.ingest_job, await ingestJobPending(queues, f.ingest_job));
      if (pending.get(f.ingest_job)) continue;
    }
    received.push(f);
  }
  for (const f of received) await enqueueIngest(queues, f.id);

  // A case is stuck only when its newest file is older than the study-stability window plus the grace period:
  // a study still receiving instances is waiting on purpose, and re-enqueueing it would cut the wait short.
  const processCutoff = sql<Date>`now() - make_interval(secs => ${config.stuckAfterSeconds + config.studyStableSeconds})`;
  const unprocessed = await db
    .selectFrom('files')
    .select('case_id')
    .where('ingested_at', 'is not', null)
    .where('processed_at', 'is', null)
    .where('status', '!=', 'failed')
    .where('case_id', 'is not', null)
    .groupBy('case_id')
    .having((eb) => eb.fn.max('ingested_at'), '<', processCutoff)
    .limit(SWEEP_BATCH)
    .execute();
  for (const f of unprocessed) await enqueueProcess(queues, f.case_id!, undefined, 0);

  const unrouted = await db
    .selectFrom('cases')
    .select('id')
    .where('status', '=', 'ready')
    .where('routed_at', 'is', null)
    .where('updated_at', '<', cutoff)
    .limit(SWEEP_BATCH)
    .execute();
  for (const c of unrouted) await enqueueRoute(queues, c.id);

  // Expired partial uploads, idle batches, and finished uploads that missed the pipeline (src/uploads).
  const uploads = await sweepUploads(ctx);
  const expired = uploads.expired.tus + uploads.expired.multipart + uploads.expired.batch;
  if (expired + uploads.sealed + uploads.repaired > 0) log.info({ uploads }, 'sweep tidied uploads');

  const total =
    received.length + unprocessed.length + unrouted.length + expired + uploads.sealed + uploads.repaired;
  if (received.length + unprocessed.length + unrouted.length > 0) {
    log.info(
      { ingest: received.length, process: unprocessed.length, route: unrouted.length },
      'sweep re-enqueued rows',
    );
  }
  return total > 0 ? 'SUCCESS' : 'SKIPPED';
}
