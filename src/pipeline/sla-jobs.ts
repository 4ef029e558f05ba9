import type { JobsOptions } from 'bullmq';
import { ESCALATION_POINTS, type EscalationPoint, escalationTime } from '../domain/escalation.js';
import type { Queues } from './queues.js';

/**
 * The SLA clock of a case as BullMQ delayed jobs, one per escalation point, with ids derived from the case
 * (`sla-<caseId>-50`, `sla-<caseId>-80`). Scheduling twice for the same due time adds nothing; scheduling for a
 * new due time (the priority changed) replaces the pending jobs. The handler re-reads the case when a job fires,
 * so a job that outlives its reason (the case was reported, or the due time moved) does nothing.
 */

export function slaJobId(caseId: string, point: Pick<EscalationPoint, 'percent'>): string {
  return `sla-${caseId}-${point.percent}`;
}

/** Completed escalation jobs are dropped at once so the id is free for a reschedule; failed ones stay a week. */
const SLA_JOB_OPTIONS: JobsOptions = {
  attempts: 5,
  backoff: { type: 'exponential', delay: 2_000 },
  removeOnComplete: true,
  removeOnFail: { age: 7 * 24 * 3600 },
};

export interface SlaClock {
  caseId: string;
  createdAt: Date;
  dueAt: Date;
}

/** Queues (or re-queues) the escalation jobs of a case. Returns how many jobs were added. */
export async function scheduleSlaJobs(queues: Queues, clock: SlaClock, now = new Date()): Promise<number> {
  const dueAt = clock.dueAt.toISOString();
  let added = 0;
  for (const point of ESCALATION_POINTS) {
    const jobId = slaJobId(clock.caseId, point);
    const existing = await queues.sla.getJob(jobId);
    if (existing) {
      if ('dueAt' in existing.data && existing.data.dueAt === dueAt) continue;
      // Another due time: replace it. An active job cannot be removed (0), and needs not be: it re-reads the case.
      if ((await queues.sla.remove(jobId)) === 0) continue;
    }
    const fireAt = escalationTime(clock.createdAt, clock.dueAt, point.fraction).getTime();
    await queues.sla.add(
      'escalate',
      { caseId: clock.caseId, level: point.level, dueAt },
      { ...SLA_JOB_OPTIONS, jobId, delay: Math.max(0, fireAt - now.getTime()) },
    );
    added++;
  }
  return added;
}

/**
 * Removes the pending escalation jobs of a case: call it after the case leaves the open states (a signed report)
 * commits. Harmless when there are none, and not required for correctness: a job that fires anyway finds the case
 * closed and does nothing. Returns how many jobs were removed.
 */
export async function cancelSlaJobs(queues: Queues, caseId: string): Promise<number> {
  let removed = 0;
  for (const point of ESCALATION_POINTS) {
    const jobId = slaJobId(caseId, point);
    // Queue.remove answers 1 for an id it does not know; count only jobs that were there.
    if ((await queues.sla.getJob(jobId)) && (await queues.sla.remove(jobId)) === 1) removed++;
  }
  return removed;
}
