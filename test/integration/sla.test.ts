import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import type { App } from '../../src/api/build-app.js';
import { startApi } from '../../src/api/start-api.js';
import { addReader, addSite, createKey } from '../../src/cli/admin-commands.js';
import type { Context } from '../../src/context.js';
import { replaceRules } from '../../src/db/rule-queries.js';
import { queueRank } from '../../src/domain/escalation.js';
import { parseRuleSet } from '../../src/domain/rules.js';
import { ensureSlaJobs, scheduleCaseClock } from '../../src/pipeline/handlers/handle-sla.js';
import { type RunningWorkers, runWorkers } from '../../src/pipeline/run-worker.js';
import { cancelSlaJobs, scheduleSlaJobs, slaJobId } from '../../src/pipeline/sla-jobs.js';
import { apiClient, waitFor } from '../helpers/api-client.js';
import { createRoutedCase } from '../helpers/case-factory.js';
import { createTestContext } from '../helpers/test-context.js';

/** A 4 s SLA: the contract's resolution is a minute, so the test writes the due time itself. */
const SLA_MS = 4_000;
/** BullMQ promotes a delayed job when its time comes; on a loaded machine allow this much lateness. */
const LATE_MS = 1_500;

let t: Awaited<ReturnType<typeof createTestContext>>;
let ctx: Context;
let app: App;
let workers: RunningWorkers;
let call: ReturnType<typeof apiClient>;
const keys: Record<string, string> = {};

interface Escalation {
  at: Date;
  detail: {
    level: number;
    percent: number;
    fromPool: string | null;
    toPool: string | null;
    claimed: boolean;
    assignmentReleasedFrom: string | null;
  };
}

interface WorklistBody {
  cases: Array<{ id: string; state: string }>;
}

beforeAll(async () => {
  // The SLA sweep runs every second, as it would every SWEEP_INTERVAL_SECONDS in production.
  t = await createTestContext({ SWEEP_INTERVAL_SECONDS: '1' });
  ctx = t.ctx;
  await addSite(ctx.db, { id: 'clinic-a', jurisdiction: 'KE' });
  await addReader(ctx.db, {
    id: 'neuro-1',
    specialties: 'radiology',
    subspecialties: 'neuro',
    jurisdictions: 'KE',
  });
  await addReader(ctx.db, {
    id: 'chest-1',
    specialties: 'radiology',
    subspecialties: 'chest',
    jurisdictions: 'KE',
  });
  await addReader(ctx.db, { id: 'gen-1', specialties: 'radiology', jurisdictions: 'KE' });
  await addReader(ctx.db, { id: 'cardio-1', specialties: 'cardiology', jurisdictions: 'KE' });
  await addReader(ctx.db, { id: 'cardio-2', specialties: 'cardiology', jurisdictions: 'KE' });
  await addReader(ctx.db, { id: 'patho-1', specialties: 'pathology', jurisdictions: 'KE' });
  for (const id of ['neuro-1', 'chest-1', 'gen-1', 'cardio-1', 'cardio-2', 'patho-1']) {
    keys[id] = (await createKey(ctx.db, { role: 'reader', reader: id })).key;
  }
  keys.ops = (await createKey(ctx.db, { role: 'ops' })).key;
  await replaceRules(
    ctx.db,
    parseRuleSet({
      rules: [
        {
          name: 'neuro first, then chest',
          match: { kind: 'imaging' },
          target: { specialty: 'radiology', subspecialty: 'neuro' },
          fallbacks: [{ specialty: 'radiology', subspecialty: 'chest' }],
          policy: 'pull',
        },
        { name: 'ecg pushed', match: { kind: 'ecg' }, target: { specialty: 'cardiology' }, policy: 'push' },
        {
          name: 'slides pooled',
          match: { kind: 'pathology' },
          target: { specialty: 'pathology' },
          policy: 'pull',
        },
      ],
    }),
  );
  workers = await runWorkers(ctx, { queues: ['sla'] });
  let url: string;
  ({ app, url } = await startApi(ctx, 0));
  call = apiClient(url);
});

afterAll(async () => {
  await app?.close();
  await workers?.close();
  await t?.dispose();
});

/** Gives a routed case a short SLA from its arrival, then queues its clock as routing does. */
async function shortenSla(caseId: string, ms = SLA_MS): Promise<Date> {
  const row = await ctx.db
    .updateTable('cases')
    .set({ due_at: sql`created_at + make_interval(secs => ${ms / 1000})` })
    .where('id', '=', caseId)
    .returning('created_at')
    .executeTakeFirstOrThrow();
  await ensureSlaJobs(ctx, caseId);
  return row.created_at;
}

async function escalationsOf(caseId: string): Promise<Escalation[]> {
  const rows = await ctx.db
    .selectFrom('audit_events')
    .select(['at', 'detail'])
    .where('case_id', '=', caseId)
    .where('action', '=', 'case.escalated')
    .orderBy('id')
    .execute();
  return rows as unknown as Escalation[];
}

const escalated = (caseId: string, level: number) =>
  waitFor(`case ${caseId} at level ${level}`, async () => {
    const events = await escalationsOf(caseId);
    return events.find((e) => e.detail.level === level);
  });

const caseRow = (caseId: string) =>
  ctx.db
    .selectFrom('cases')
    .select(['escalation_level', 'queue_rank', 'priority_rank', 'pool_id', 'lease_reader_id', 'status'])
    .where('id', '=', caseId)
    .executeTakeFirstOrThrow();

const worklistIds = async (reader: string) => {
  const res = await call<WorklistBody>(keys[reader]!, '/v1/worklist');
  expect(res.status).toBe(200);
  return res.body.cases.filter((c) => c.state === 'claimable').map((c) => c.id);
};

/** Marks a case reported as a signed report does (migration 0005): status and the stamp SLA clocks stop on. */
async function markReported(caseId: string): Promise<void> {
  await ctx.db
    .updateTable('cases')
    .set({ status: 'reported', reported_at: sql`now()` })
    .where('id', '=', caseId)
    .execute();
}

describe('SLA escalation with BullMQ delayed jobs', () => {
  test('an unclaimed pool case escalates at 50 % to the fallback pool and at 80 % to any qualified reader', async () => {
    const caseId = await createRoutedCase(ctx, { siteId: 'clinic-a', kind: 'imaging', modality: 'MR' });
    expect(await caseRow(caseId)).toMatchObject({ pool_id: 'radiology.neuro', escalation_level: 0 });
    const createdAt = await shortenSla(caseId);
    const jobs = await Promise.all(
      [50, 80].map((percent) => ctx.queues.sla.getJob(slaJobId(caseId, { percent: percent as 50 | 80 }))),
    );
    expect(await Promise.all(jobs.map((j) => j?.getState()))).toEqual(['delayed', 'delayed']);
    expect(await worklistIds('chest-1')).not.toContain(caseId);

    const first = await escalated(caseId, 1);
    const firstAfter = first.at.getTime() - createdAt.getTime();
    expect(firstAfter).toBeGreaterThanOrEqual(SLA_MS * 0.5 - 250);
    expect(firstAfter).toBeLessThan(SLA_MS * 0.5 + LATE_MS);
    expect(first.detail).toMatchObject({
      percent: 50,
      fromPool: 'radiology.neuro',
      toPool: 'radiology.chest',
      claimed: false,
    });
    const afterFirst = await caseRow(caseId);
    // Routine (rank 2) now sorts with urgent cases in every worklist; its priority is unchanged.
    expect(afterFirst).toMatchObject({ escalation_level: 1, queue_rank: 1, priority_rank: 2 });
    expect(await worklistIds('chest-1')).toContain(caseId);
    expect(await worklistIds('gen-1')).not.toContain(caseId);

    const second = await escalated(caseId, 2);
    const secondAfter = second.at.getTime() - createdAt.getTime();
    expect(secondAfter).toBeGreaterThanOrEqual(SLA_MS * 0.8 - 250);
    expect(secondAfter).toBeLessThan(SLA_MS * 0.8 + LATE_MS);
    expect(second.detail).toMatchObject({ percent: 80, fromPool: 'radiology.chest', toPool: 'radiology' });
    expect(await caseRow(caseId)).toMatchObject({ escalation_level: 2, queue_rank: 0, pool_id: 'radiology' });
    for (const reader of ['neuro-1', 'chest-1', 'gen-1']) expect(await worklistIds(reader)).toContain(caseId);
    // Each point fires once, however often the sweep or the route handler schedules.
    expect(await escalationsOf(caseId)).toHaveLength(2);
  }, 30_000);

  test('a pushed case nobody opened goes back to the pool at 80 %; a claimed case keeps its reader', async () => {
    const pushed = await createRoutedCase(ctx, { siteId: 'clinic-a', kind: 'ecg' });
    const claimed = await createRoutedCase(ctx, { siteId: 'clinic-a', kind: 'pathology' });
    const pushedTo = await ctx.db
      .selectFrom('assignments')
      .select('reader_id')
      .where('case_id', '=', pushed)
      .where('released_at', 'is', null)
      .executeTakeFirstOrThrow();
    const other = pushedTo.reader_id === 'cardio-1' ? 'cardio-2' : 'cardio-1';
    const claim = await call(keys['patho-1']!, `/v1/cases/${claimed}/claim`, { method: 'POST' });
    expect(claim.status).toBe(200);
    await shortenSla(pushed);
    await shortenSla(claimed);

    const pushedFirst = await escalated(pushed, 1);
    // At 50 % the reader it was pushed to keeps it.
    expect(pushedFirst.detail.assignmentReleasedFrom).toBeNull();
    const pushedSecond = await escalated(pushed, 2);
    expect(pushedSecond.detail.assignmentReleasedFrom).toBe(pushedTo.reader_id);
    expect(await worklistIds(other)).toContain(pushed);

    const claimedSecond = await escalated(claimed, 2);
    expect(claimedSecond.detail).toMatchObject({ claimed: true, assignmentReleasedFrom: null });
    expect(await caseRow(claimed)).toMatchObject({ escalation_level: 2, lease_reader_id: 'patho-1' });
  }, 30_000);

  test('a case reported before its escalation cancels the pending jobs; a missed cancel is harmless', async () => {
    const cancelled = await createRoutedCase(ctx, { siteId: 'clinic-a', kind: 'imaging' });
    const missed = await createRoutedCase(ctx, { siteId: 'clinic-a', kind: 'imaging' });
    const createdAt = await shortenSla(cancelled);
    await shortenSla(missed);
    expect(await ctx.queues.sla.getJob(slaJobId(cancelled, { percent: 50 }))).toBeDefined();

    // The reader signs through the API: the signature cancels the case's escalation jobs once it commits.
    const post = (path: string, body?: unknown, method = 'POST') =>
      call(keys['neuro-1']!, path, {
        method,
        ...(body ? { body: JSON.stringify(body), headers: { 'content-type': 'application/json' } } : {}),
      });
    expect((await post(`/v1/cases/${cancelled}/claim`)).status).toBe(200);
    expect(
      (await post(`/v1/cases/${cancelled}/report`, { impression: 'No acute findings.' }, 'PUT')).status,
    ).toBe(200);
    expect((await post(`/v1/cases/${cancelled}/report/sign`)).status).toBe(200);
    expect(Date.now() - createdAt.getTime()).toBeLessThan(SLA_MS * 0.5);
    expect(await ctx.queues.sla.getJob(slaJobId(cancelled, { percent: 50 }))).toBeUndefined();
    expect(await ctx.queues.sla.getJob(slaJobId(cancelled, { percent: 80 }))).toBeUndefined();
    expect(await cancelSlaJobs(ctx.queues, cancelled)).toBe(0);
    // Reported without the cancel: its jobs fire and find nothing to do.
    await markReported(missed);

    await waitFor('both cases past their due time', async () =>
      Date.now() > createdAt.getTime() + SLA_MS + 500 ? true : undefined,
    );
    await waitFor('the missed case’s jobs have run', async () => {
      const left = await Promise.all(
        [50, 80].map((p) => ctx.queues.sla.getJob(slaJobId(missed, { percent: p as 50 | 80 }))),
      );
      return left.every((j) => j === undefined) ? true : undefined;
    });
    for (const id of [cancelled, missed]) {
      expect(await escalationsOf(id)).toEqual([]);
      expect(await caseRow(id)).toMatchObject({ escalation_level: 0, status: 'reported' });
    }
    // Reported cases are never scheduled again.
    await ctx.db.updateTable('cases').set({ sla_scheduled_for: null }).where('id', '=', cancelled).execute();
    await ensureSlaJobs(ctx, cancelled);
    expect(await ctx.queues.sla.getJob(slaJobId(cancelled, { percent: 50 }))).toBeUndefined();
  }, 30_000);

  test('scheduling is idempotent by job id, and a new due time replaces the pending jobs', async () => {
    const caseId = await createRoutedCase(ctx, { siteId: 'clinic-a', kind: 'imaging' });
    const row = await ctx.db
      .selectFrom('cases')
      .select(['created_at', 'due_at'])
      .where('id', '=', caseId)
      .executeTakeFirstOrThrow();
    const clock = { caseId, createdAt: row.created_at, dueAt: row.due_at };
    await scheduleSlaJobs(ctx.queues, clock);
    expect(await scheduleSlaJobs(ctx.queues, clock)).toBe(0);
    const routineJob = await ctx.queues.sla.getJob(slaJobId(caseId, { percent: 50 }));
    // Routine: 24 h, so the 50 % point is 12 h after arrival.
    expect(routineJob?.opts.delay).toBeGreaterThan(11.9 * 3600_000);

    // Raising the priority moves the due time (the cases_due_at trigger); the sweep queues the new clock, then
    // stamps the case with the due time it queued for: wait for both, since the stamp follows the enqueue.
    await ctx.db.updateTable('cases').set({ priority: 'stat' }).where('id', '=', caseId).execute();
    const statJob = await waitFor('the stat clock queued and stamped', async () => {
      const job = await ctx.queues.sla.getJob(slaJobId(caseId, { percent: 50 }));
      if (!job || (job.opts.delay ?? Infinity) >= 31 * 60_000) return undefined;
      const stamped = await ctx.db
        .selectFrom('cases')
        .select(sql<boolean>`sla_scheduled_for = due_at`.as('current'))
        .where('id', '=', caseId)
        .executeTakeFirstOrThrow();
      return stamped.current ? job : undefined;
    });
    // Stat: 60 min, so 30 min after arrival.
    expect(statJob.opts.delay).toBeGreaterThan(29 * 60_000);
    expect(await cancelSlaJobs(ctx.queues, caseId)).toBe(2);
    expect(await cancelSlaJobs(ctx.queues, caseId)).toBe(0);
  }, 30_000);
});

describe('two schedulers of one case', () => {
  /** Puts a routed case's clock back to unscheduled (as after a lost Redis), so a scheduler has work to do. */
  async function unscheduled(): Promise<string> {
    const caseId = await createRoutedCase(ctx, { siteId: 'clinic-a', kind: 'imaging' });
    await ensureSlaJobs(ctx, caseId);
    await ctx.db.updateTable('cases').set({ sla_scheduled_for: null }).where('id', '=', caseId).execute();
    await cancelSlaJobs(ctx.queues, caseId);
    return caseId;
  }
  const clockOf = (caseId: string) =>
    ctx.db
      .selectFrom('cases')
      .select(['due_at', sql<boolean>`sla_scheduled_for = due_at`.as('stamped')])
      .where('id', '=', caseId)
      .executeTakeFirstOrThrow();
  const queuedFor = async (caseId: string) =>
    Promise.all(
      ([50, 80] as const).map(async (percent) => {
        const job = await ctx.queues.sla.getJob(slaJobId(caseId, { percent }));
        return job && 'dueAt' in job.data ? job.data.dueAt : undefined;
      }),
    );

  test('a scheduler that read the old due time leaves the case to the next sweep, which queues the new one', async () => {
    const caseId = await unscheduled();
    const before = (await clockOf(caseId)).due_at.toISOString();
    // A priority change is in flight (its trigger moves the due time) while a scheduler runs: the scheduler sees
    // the old due time and queues for it; only its stamp waits for the change to commit.
    let scheduling: Promise<boolean> | undefined;
    await ctx.db.transaction().execute(async (trx) => {
      await trx.updateTable('cases').set({ priority: 'stat' }).where('id', '=', caseId).execute();
      scheduling = scheduleCaseClock(ctx, caseId);
      await waitFor('the old clock queued', async () => {
        const queued = await queuedFor(caseId);
        return queued.every((d) => d === before) ? true : undefined;
      });
    });
    expect(await scheduling).toBe(true);
    // Its stamp is the due time it queued for, not the new one, so the case is due for scheduling again: the next
    // scheduler (the 1 s sweep, or this call, whichever comes first) queues the new clock. Had it stamped the
    // column, the case would keep the old clock's jobs for good.
    await ensureSlaJobs(ctx, caseId);
    const changed = await clockOf(caseId);
    expect(changed.due_at.toISOString()).not.toBe(before);
    expect(changed.stamped).toBe(true);
    expect(await queuedFor(caseId)).toEqual([changed.due_at.toISOString(), changed.due_at.toISOString()]);
    expect(await scheduleCaseClock(ctx, caseId)).toBe(false);
    await cancelSlaJobs(ctx.queues, caseId);
  }, 30_000);

  test('schedulers of one case take turns: the second finds the work done', async () => {
    const caseId = await unscheduled();
    const done = await Promise.all(Array.from({ length: 6 }, () => scheduleCaseClock(ctx, caseId)));
    // One of them did it (or none, if the 1 s sweep came first): never two.
    expect(done.filter(Boolean).length).toBeLessThanOrEqual(1);
    const clock = await clockOf(caseId);
    expect(clock.stamped).toBe(true);
    expect(await queuedFor(caseId)).toEqual([clock.due_at.toISOString(), clock.due_at.toISOString()]);
    await cancelSlaJobs(ctx.queues, caseId);
  }, 30_000);
});

describe('worklist rank in the database', () => {
  test('queue_rank is the priority rank lowered by the escalation level, as queueRank computes it', async () => {
    const caseId = await createRoutedCase(ctx, { siteId: 'clinic-a', kind: 'imaging' });
    for (const priority of ['stat', 'urgent', 'routine'] as const) {
      for (const level of [0, 1, 2]) {
        const row = await ctx.db
          .updateTable('cases')
          .set({ priority, escalation_level: level })
          .where('id', '=', caseId)
          .returning(['queue_rank', 'priority_rank'])
          .executeTakeFirstOrThrow();
        expect(row.queue_rank, `${priority} at ${level}`).toBe(queueRank(priority, level));
        expect(row.priority_rank).toBe(queueRank(priority, 0));
      }
    }
    await expect(
      ctx.db.updateTable('cases').set({ escalation_level: 3 }).where('id', '=', caseId).execute(),
    ).rejects.toThrow(/check/);
  });
});

describe('GET /v1/ops/sla', () => {
  test('lists at-risk and overdue open cases for ops, without patient fields', async () => {
    const atRisk = await createRoutedCase(ctx, { siteId: 'clinic-a', kind: 'imaging', patientId: 'PID-SLA' });
    const overdue = await createRoutedCase(ctx, { siteId: 'clinic-a', kind: 'ecg', patientId: 'PID-SLA' });
    const onTrack = await createRoutedCase(ctx, {
      siteId: 'clinic-a',
      kind: 'imaging',
      patientId: 'PID-SLA',
    });
    // 35 s into a 60 s SLA; 70 s into a 60 s SLA. Moving created_at re-runs the due trigger, so due_at follows.
    for (const [id, ago] of [
      [atRisk, 35],
      [overdue, 70],
    ] as const) {
      await ctx.db
        .updateTable('cases')
        .set({ created_at: sql`now() - make_interval(secs => ${ago})` })
        .where('id', '=', id)
        .execute();
      await ctx.db
        .updateTable('cases')
        .set({ due_at: sql`created_at + interval '60 seconds'` })
        .where('id', '=', id)
        .execute();
    }

    const res = await call<{
      counts: { open: number; atRisk: number; overdue: number };
      atRisk: Array<{ id: string; elapsedPercent: number; dueInSeconds: number }>;
      overdue: Array<{ id: string; elapsedPercent: number; dueInSeconds: number }>;
    }>(keys.ops!, '/v1/ops/sla');
    expect(res.status).toBe(200);
    const risky = res.body.atRisk.find((c) => c.id === atRisk);
    const late = res.body.overdue.find((c) => c.id === overdue);
    expect(risky?.elapsedPercent).toBeGreaterThanOrEqual(58);
    expect(risky?.dueInSeconds).toBeGreaterThan(0);
    expect(late?.elapsedPercent).toBeGreaterThanOrEqual(116);
    expect(late?.dueInSeconds).toBeLessThan(0);
    const listed = [...res.body.atRisk, ...res.body.overdue].map((c) => c.id);
    expect(listed).not.toContain(onTrack);
    expect(res.body.overdue.map((c) => c.id)).not.toContain(atRisk);
    expect(res.body.counts.overdue).toBeGreaterThanOrEqual(1);
    const text = JSON.stringify(res.body);
    expect(text).not.toContain('PID-SLA');
    expect(text).not.toContain('Test^Patient');

    expect((await call(keys['gen-1']!, '/v1/ops/sla')).status).toBe(403);
    expect((await call(null, '/v1/ops/sla')).status).toBe(401);
  });
});
