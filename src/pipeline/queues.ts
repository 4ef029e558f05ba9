import { type JobsOptions, Queue } from 'bullmq';
import type { Redis } from 'ioredis';

/**
 * Queue names and job payloads. Jobs carry ids (and the requestId that started them), never bytes or
 * patient data: PostgreSQL holds the truth and every handler re-reads its row.
 */
export const QUEUE_NAMES = ['ingest', 'process', 'route', 'maintenance', 'sla', 'webhook'] as const;
export type QueueName = (typeof QUEUE_NAMES)[number];

export interface JobPayloads {
  /** One file (DIMSE instance, ops retry, sweep), or the files of one upload request (INGEST_BATCH_FILES at most). */
  ingest: { fileId: string; requestId?: string } | { fileIds: string[]; requestId?: string };
  process: { caseId: string; requestId?: string };
  route: { caseId: string; requestId?: string };
  maintenance: { task: 'sweep' };
  /** An SLA escalation point of one case (src/pipeline/sla-jobs.ts), or the sweep that (re)schedules them. */
  sla: { caseId: string; level: 1 | 2; dueAt: string } | { task: 'schedule' };
  /** One report webhook delivery (src/pipeline/handlers/handle-webhook.ts), or the job that repairs lost ones. */
  webhook: { deliveryId: string; round: number; requestId?: string } | { task: 'repair' };
}

export type JobOf<N extends QueueName> = JobPayloads[N];

export type Queues = { [N in QueueName]: Queue<JobPayloads[N], unknown, string> };

/** Retries: exponential backoff from 2 s. Completed jobs are dropped (the row keeps the stamp); failed ones
 * are kept a week so ops can read the reason and retry. */
export const DEFAULT_JOB_OPTIONS: JobsOptions = {
  attempts: 5,
  backoff: { type: 'exponential', delay: 2_000 },
  removeOnComplete: { age: 3600, count: 1000 },
  removeOnFail: { age: 7 * 24 * 3600 },
};

export function createQueues(connection: Redis, prefix: string): Queues {
  const make = <N extends QueueName>(name: N) =>
    new Queue<JobPayloads[N], unknown, string>(name, {
      connection,
      prefix,
      defaultJobOptions: DEFAULT_JOB_OPTIONS,
    });
  return {
    ingest: make('ingest'),
    process: make('process'),
    route: make('route'),
    maintenance: make('maintenance'),
    sla: make('sla'),
    webhook: make('webhook'),
  };
}

/**
 * The enqueue functions every caller uses. Job ids are derived from row ids, so enqueueing the same step twice
 * (the API after its commit, then the sweep) adds one job, not two.
 */
export async function enqueueIngest(queues: Queues, fileId: string, requestId?: string): Promise<void> {
  await queues.ingest.add(
    'ingest',
    { fileId, ...(requestId ? { requestId } : {}) },
    { jobId: `ingest-${fileId}` },
  );
}

/** Most files one ingest job attaches: a batch is one transaction, so it stays short enough not to hold locks. */
export const INGEST_BATCH_FILES = 50;

/** One ingest job to add: its id and the files it carries. */
export interface IngestJobPlan {
  jobId: string;
  fileIds: string[];
}

/**
 * How the files of one request are split into ingest jobs: one file is a job of its own (`ingest-<fileId>`),
 * more go in jobs of INGEST_BATCH_FILES named after their first file (`ingest-batch-<fileId>`), so planning the
 * same files again (a repeated call) names the same jobs and adds none. Planned before the rows are written, so
 * each row can keep its job's id for the sweep.
 */
export function planIngestJobs(fileIds: string[]): IngestJobPlan[] {
  if (fileIds.length === 1) return [{ jobId: `ingest-${fileIds[0]}`, fileIds }];
  const plan: IngestJobPlan[] = [];
  for (let i = 0; i < fileIds.length; i += INGEST_BATCH_FILES) {
    const chunk = fileIds.slice(i, i + INGEST_BATCH_FILES);
    plan.push({ jobId: `ingest-batch-${chunk[0]}`, fileIds: chunk });
  }
  return plan;
}

/** Adds the planned ingest jobs in one round trip. */
export async function enqueueIngestJobs(
  queues: Queues,
  plan: IngestJobPlan[],
  requestId?: string,
): Promise<void> {
  if (plan.length === 0) return;
  await queues.ingest.addBulk(
    plan.map((p) => ({
      name: 'ingest',
      data:
        p.fileIds.length === 1 && p.jobId === `ingest-${p.fileIds[0]}`
          ? { fileId: p.fileIds[0]!, ...(requestId ? { requestId } : {}) }
          : { fileIds: p.fileIds, ...(requestId ? { requestId } : {}) },
      opts: { jobId: p.jobId },
    })),
  );
}

/** Whether a job is still due to run (or running): the sweep leaves its files to it. */
export async function ingestJobPending(queues: Queues, jobId: string): Promise<boolean> {
  const state = await queues.ingest.getJobState(jobId);
  return ['waiting', 'active', 'delayed', 'prioritized', 'waiting-children'].includes(state);
}

/** The files an ingest job covers, whichever form it has. */
export function ingestJobFileIds(data: JobPayloads['ingest']): string[] {
  return 'fileIds' in data ? data.fileIds : [data.fileId];
}

/**
 * Processing is per case and debounced: the instances of one study arrive as many ingest jobs (over several
 * uploads or associations), and the case should be processed once the study is stable. Each new enqueue
 * replaces the delayed job and restarts its delay; `keepLastIfActive` queues one more run when files arrive
 * while a run is active, so no file is left out.
 */
export async function enqueueProcess(
  queues: Queues,
  caseId: string,
  requestId?: string,
  delayMs = 500,
): Promise<void> {
  await queues.process.add(
    'process',
    { caseId, ...(requestId ? { requestId } : {}) },
    { delay: delayMs, deduplication: { id: `process-${caseId}`, keepLastIfActive: true, replace: true } },
  );
}

export async function enqueueRoute(queues: Queues, caseId: string, requestId?: string): Promise<void> {
  await queues.route.add(
    'route',
    { caseId, ...(requestId ? { requestId } : {}) },
    { deduplication: { id: `route-${caseId}`, keepLastIfActive: true } },
  );
}

/**
 * A report webhook delivery, one job per round (`webhook-<id>-<round>`): retries within a round are BullMQ's,
 * with exponential backoff from `backoffMs`; a resend by ops opens a new round and so a new job. The handler
 * counts attempts on the delivery row and ends the round itself on its last try; the two spare BullMQ attempts
 * only cover runs that failed before they could record anything.
 */
export async function enqueueWebhook(
  queues: Queues,
  delivery: { id: string; round: number },
  options: { attempts: number; backoffMs: number; delayMs?: number },
  requestId?: string,
): Promise<void> {
  await queues.webhook.add(
    'deliver',
    { deliveryId: delivery.id, round: delivery.round, ...(requestId ? { requestId } : {}) },
    {
      jobId: `webhook-${delivery.id}-${delivery.round}`,
      attempts: options.attempts + 2,
      backoff: { type: 'exponential', delay: options.backoffMs },
      ...(options.delayMs ? { delay: options.delayMs } : {}),
    },
  );
}
