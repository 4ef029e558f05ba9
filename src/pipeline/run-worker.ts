import { type Job, UnrecoverableError, Worker } from 'bullmq';
import type { Context } from '../context.js';
import { isAppError } from '../errors.js';
import { handleIngest } from './handlers/handle-ingest.js';
import { handleProcess } from './handlers/handle-process.js';
import { handleRoute } from './handlers/handle-route.js';
import { ensureSlaJobs, handleSla } from './handlers/handle-sla.js';
import { handleSweep } from './handlers/handle-sweep.js';
import { handleWebhook } from './handlers/handle-webhook.js';
import type { JobContext, JobOutcome } from './job-context.js';
import { type JobPayloads, QUEUE_NAMES, type QueueName } from './queues.js';
import { recordIngestFailure, recordUnfinishedFailure } from './record-failure.js';

type Handler<N extends QueueName> = (jc: JobContext, data: JobPayloads[N]) => Promise<JobOutcome>;

/** Every queue has exactly one handler; the compiler refuses a queue without one. */
const HANDLERS: { [N in QueueName]: Handler<N> } = {
  ingest: handleIngest,
  process: handleProcess,
  // A routed (or pooled) case has its SLA clock queued at once; the SLA sweep is the safety net.
  route: async (jc, data) => {
    const outcome = await handleRoute(jc, data);
    await ensureSlaJobs(jc.ctx, data.caseId);
    return outcome;
  },
  maintenance: handleSweep,
  sla: handleSla,
  webhook: handleWebhook,
};

/** Escalation jobs are short transactions; the SLA queue needs no setting of its own. */
const DEFAULT_SLA_CONCURRENCY = 4;

export interface WorkerOptions {
  queues?: readonly QueueName[];
}

export interface RunningWorkers {
  workers: Worker[];
  close(): Promise<void>;
}

/** The one place that creates BullMQ Workers: one per queue, with the configured concurrency. */
export async function runWorkers(ctx: Context, options: WorkerOptions = {}): Promise<RunningWorkers> {
  const names = options.queues ?? QUEUE_NAMES;
  const workers = names.map((name) => createWorker(ctx, name));
  if (names.includes('maintenance')) {
    // A job scheduler is idempotent by id: every worker process may upsert it; Redis keeps one schedule.
    await ctx.queues.maintenance.upsertJobScheduler(
      'sweep',
      { every: ctx.config.sweepIntervalSeconds * 1000 },
      { name: 'sweep', data: { task: 'sweep' } },
    );
  }
  if (names.includes('webhook')) {
    // Re-queues deliveries whose job was lost (see handle-webhook.ts); the rows, not Redis, are the truth.
    await ctx.queues.webhook.upsertJobScheduler(
      'webhook-repair',
      { every: ctx.config.sweepIntervalSeconds * 1000 },
      { name: 'repair', data: { task: 'repair' } },
    );
  }
  if (names.includes('sla')) {
    await ctx.queues.sla.upsertJobScheduler(
      'sla-schedule',
      { every: ctx.config.sweepIntervalSeconds * 1000 },
      { name: 'schedule', data: { task: 'schedule' } },
    );
  }
  await Promise.all(workers.map((w) => w.waitUntilReady()));
  ctx.log.info({ queues: names }, 'workers started');
  return {
    workers,
    // close() waits for active jobs to finish: a SIGTERM drains instead of abandoning work to the stalled check.
    close: async () => {
      await Promise.all(workers.map((w) => w.close()));
    },
  };
}

function createWorker<N extends QueueName>(ctx: Context, name: N): Worker {
  const handler = HANDLERS[name] as Handler<N>;
  const worker = new Worker<JobPayloads[N], JobOutcome, string>(
    name,
    async (job) => {
      const requestId = 'requestId' in job.data ? (job.data.requestId as string | undefined) : undefined;
      const log = ctx.log.child({
        queue: name,
        jobId: job.id,
        ...ids(job.data),
        ...(requestId ? { requestId } : {}),
      });
      try {
        return await handler({ ctx, log, requestId }, job.data);
      } catch (err) {
        return onJobError(ctx, job, err, log);
      }
    },
    {
      connection: ctx.redis,
      prefix: ctx.config.queuePrefix,
      concurrency: (
        {
          sla: DEFAULT_SLA_CONCURRENCY,
          webhook: ctx.config.webhookConcurrency,
          ...ctx.config.concurrency,
        } as Record<QueueName, number>
      )[name],
      // A job whose worker dies is handed to another once its lock lapses (BullMQ's stalled check).
      lockDuration: ctx.config.jobLockSeconds * 1000,
      stalledInterval: ctx.config.jobLockSeconds * 1000,
      maxStalledCount: 2,
    },
  );
  worker.on('error', (err) => ctx.log.error({ queue: name, err: err.message }, 'worker error'));
  return worker;
}

function ids(data: object): Record<string, string> {
  const out: Record<string, string> = {};
  for (const k of ['fileId', 'caseId'] as const) {
    const v = (data as Record<string, unknown>)[k];
    if (typeof v === 'string') out[k] = v;
  }
  return out;
}

/**
 * A permanent error (corrupt or unsupported input) is stamped on the file row and ends the job with no
 * retry. A transient one is rethrown for BullMQ's backoff; on the last attempt it is stamped too, so no file
 * is left "processing" forever.
 */
async function onJobError(ctx: Context, job: Job, err: unknown, log: Context['log']): Promise<never> {
  const error = err instanceof Error ? err : new Error(String(err));
  const permanent = isAppError(error) && !error.retryable;
  const lastAttempt = job.attemptsMade + 1 >= (job.opts.attempts ?? 1);
  const fileId = (job.data as { fileId?: string }).fileId;
  if (fileId && (permanent || lastAttempt)) {
    await recordIngestFailure(ctx.db, fileId, error).catch((e) =>
      log.error({ err: e }, 'could not record failure'),
    );
  }
  // A batch that gives up stamps the files it did not get to, so none is left "processing" forever.
  const fileIds = (job.data as { fileIds?: string[] }).fileIds;
  if (fileIds && (permanent || lastAttempt)) {
    await recordUnfinishedFailure(ctx.db, fileIds, error).catch((e) =>
      log.error({ err: e }, 'could not record failure'),
    );
  }
  if (permanent) {
    log.warn({ code: error.code, reason: error.message }, 'job failed permanently');
    throw new UnrecoverableError(`${error.code}: ${error.message}`);
  }
  log.error({ err: error, attempt: job.attemptsMade + 1 }, 'job failed, will retry');
  throw error;
}
