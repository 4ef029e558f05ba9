import { type ExpressionBuilder, sql } from 'kysely';
import type { Context } from '../../context.js';
import type { Database } from '../../db/schema.js';
import {
  type CasePool,
  type EscalationLevel,
  escalationPoint,
  escalationTime,
  isSlaOpen,
  SLA_OPEN_STATUSES,
  widenPool,
} from '../../domain/escalation.js';
import { type PoolTarget, poolIdOf, type Specialty } from '../../domain/rules.js';
import type { JobContext, JobOutcome } from '../job-context.js';
import type { JobOf } from '../queues.js';
import { scheduleSlaJobs } from '../sla-jobs.js';

/** Most cases one SLA sweep (re)schedules, so a backlog after an outage drains over several sweeps. */
const SWEEP_BATCH = 500;
/** A job may be promoted a little before its time; more than this early means the due time moved later. */
const EARLY_TOLERANCE_MS = 250;

/** sla: one escalation point of one case, or the sweep that keeps every open case's jobs queued. */
export async function handleSla(jc: JobContext, job: JobOf<'sla'>): Promise<JobOutcome> {
  if ('task' in job) return (await scheduleOpenCases(jc.ctx)) > 0 ? 'SUCCESS' : 'SKIPPED';
  return escalateCase(jc, job.caseId, job.level);
}

/**
 * Escalates a case still open at an escalation point: widens its pool (level 1: the rule's next fallback pool;
 * level 2: any reader of the specialty, and a pushed case its reader has not claimed goes back to that pool),
 * raises it in every worklist (`queue_rank` follows `escalation_level`), and records `case.escalated`. The
 * row is locked and re-read, so a job that fires after the case was reported, or twice, changes nothing.
 */
export async function escalateCase(
  { ctx, log }: JobContext,
  caseId: string,
  level: EscalationLevel,
): Promise<JobOutcome> {
  const point = escalationPoint(level);
  const outcome = await ctx.db.transaction().execute(async (trx) => {
    const kase = await trx
      .selectFrom('cases')
      .select([
        'id',
        'status',
        'created_at',
        'due_at',
        'escalation_level',
        'pool_id',
        'pool_specialty',
        'pool_subspecialty',
        'pool_language',
        'pool_jurisdiction',
        'pool_fallbacks',
        sql<boolean>`coalesce(lease_expires_at > now(), false)`.as('leased'),
        sql<Date>`now()`.as('now'),
      ])
      .where('id', '=', caseId)
      .forUpdate()
      .executeTakeFirst();
    if (!kase) return { skipped: 'the case no longer exists' };
    if (!isSlaOpen(kase.status)) return { skipped: `the case is ${kase.status}` };
    if (kase.escalation_level >= level) return { skipped: `already at level ${kase.escalation_level}` };
    const at = escalationTime(kase.created_at, kase.due_at, point.fraction);
    if (kase.now.getTime() < at.getTime() - EARLY_TOLERANCE_MS) {
      // The due time moved later (priority lowered); the SLA sweep queues the jobs for the new one.
      return { skipped: `not yet at ${point.percent} % of the SLA (${at.toISOString()})` };
    }

    const pool: CasePool | null = kase.pool_specialty
      ? {
          target: {
            specialty: kase.pool_specialty as Specialty,
            ...(kase.pool_subspecialty ? { subspecialty: kase.pool_subspecialty } : {}),
            ...(kase.pool_language ? { language: kase.pool_language } : {}),
            ...(kase.pool_jurisdiction ? { jurisdiction: kase.pool_jurisdiction } : {}),
          },
          fallbacks: kase.pool_fallbacks ?? [],
        }
      : null;
    const widened = pool ? widenPool(pool, level) : null;

    // At the last point a pushed case nobody has opened stops waiting for its reader: the wider pool may claim it.
    const released =
      level === 2 && !kase.leased
        ? await trx
            .updateTable('assignments')
            .set({ released_at: sql`now()` })
            .where('case_id', '=', caseId)
            .where('released_at', 'is', null)
            .returning('reader_id')
            .executeTakeFirst()
        : undefined;

    await trx
      .updateTable('cases')
      .set({
        escalation_level: level,
        escalated_at: sql`now()`,
        updated_at: sql`now()`,
        ...(widened ? poolColumns(widened.target, widened.fallbacks) : {}),
      })
      .where('id', '=', caseId)
      .execute();
    const detail = {
      level,
      percent: point.percent,
      fromLevel: kase.escalation_level,
      dueAt: kase.due_at.toISOString(),
      status: kase.status,
      claimed: kase.leased,
      fromPool: kase.pool_id,
      toPool: widened ? poolIdOf(widened.target) : null,
      assignmentReleasedFrom: released?.reader_id ?? null,
    };
    await trx
      .insertInto('audit_events')
      .values({
        action: 'case.escalated',
        actor_role: 'system',
        case_id: caseId,
        detail: JSON.stringify(detail),
      })
      .execute();
    return { escalated: detail };
  });
  if ('skipped' in outcome) {
    log.info({ caseId, level, reason: outcome.skipped }, 'escalation not needed');
    return 'SKIPPED';
  }
  log.info({ caseId, ...outcome.escalated }, 'case escalated');
  return 'SUCCESS';
}

function poolColumns(target: PoolTarget, fallbacks: PoolTarget[]) {
  return {
    pool_id: poolIdOf(target),
    pool_specialty: target.specialty,
    pool_subspecialty: target.subspecialty ?? null,
    pool_language: target.language ?? null,
    pool_jurisdiction: target.jurisdiction ?? null,
    pool_fallbacks: JSON.stringify(fallbacks),
  };
}

/**
 * Queues the escalation jobs of open cases that have none for their current due time: new cases, cases whose
 * priority (and so due time) changed, and anything a lost Redis forgot. Stamps `sla_scheduled_for` after the
 * jobs are queued, so a crash in between is repaired by the next sweep. Returns the number of cases scheduled.
 */
export async function scheduleOpenCases(ctx: Context): Promise<number> {
  const rows = await ctx.db
    .selectFrom('cases')
    .select('id')
    .where(dueForScheduling)
    .orderBy('created_at')
    .limit(SWEEP_BATCH)
    .execute();
  let scheduled = 0;
  for (const row of rows) if (await scheduleCaseClock(ctx, row.id)) scheduled++;
  return scheduled;
}

/**
 * Queues one case's jobs and stamps it with the due time it queued for. Two schedulers of one case (the sweep,
 * the route step) used to interleave: one read the old due time, the other queued and stamped the new one, and
 * then the first replaced the new jobs with the old clock's. The case kept a stamp that said all was well and jobs
 * for a due time it no longer had, so its escalations never came. Now schedulers of a case take turns (a
 * transaction-scoped advisory lock, which blocks no other writer of the case: a row lock would have held claims and
 * reports up for as long as Redis took to answer), each reads the due time once it has its turn, and the stamp is
 * the due time read, not the column: a priority change that lands meanwhile leaves `due_at` past the stamp, and the
 * next sweep queues again. Returns whether the case needed scheduling.
 */
export async function scheduleCaseClock(ctx: Context, caseId: string): Promise<boolean> {
  return ctx.db.transaction().execute(async (trx) => {
    await sql`SELECT pg_advisory_xact_lock(hashtextextended(${`sla-clock:${caseId}`}, 0))`.execute(trx);
    const row = await trx
      .selectFrom('cases')
      // The due time also as text: a Date drops PostgreSQL's microseconds and would never compare equal.
      .select(['id', 'created_at', 'due_at', sql<string>`due_at::text`.as('due_text')])
      .where('id', '=', caseId)
      .where(dueForScheduling)
      .executeTakeFirst();
    if (!row) return false;
    await scheduleSlaJobs(ctx.queues, { caseId: row.id, createdAt: row.created_at, dueAt: row.due_at });
    await trx
      .updateTable('cases')
      .set({ sla_scheduled_for: sql`${row.due_text}::timestamptz` })
      .where('id', '=', row.id)
      .execute();
    return true;
  });
}

/** An open case whose jobs are not queued for its current due time. */
function dueForScheduling(eb: ExpressionBuilder<Database, 'cases'>) {
  return eb.and([
    eb('status', 'in', SLA_OPEN_STATUSES),
    sql<boolean>`sla_scheduled_for IS DISTINCT FROM due_at`,
  ]);
}

/** Makes sure one case's SLA clock is queued (after routing, for instance); a no-op when it already is. */
export async function ensureSlaJobs(ctx: Context, caseId: string): Promise<void> {
  await scheduleCaseClock(ctx, caseId);
}
