import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import type { App } from '../../src/api/build-app.js';
import { startApi } from '../../src/api/start-api.js';
import { addReader, addSite, createKey } from '../../src/cli/admin-commands.js';
import type { Context } from '../../src/context.js';
import { WORKLIST_COUNT_CAP } from '../../src/db/case-queries.js';
import { replaceRules } from '../../src/db/rule-queries.js';
import { parseRuleSet } from '../../src/domain/rules.js';
import { dueAt, resolveSla } from '../../src/domain/sla.js';
import { apiClient, waitFor } from '../helpers/api-client.js';
import { type CaseSpec, createRoutedCase } from '../helpers/case-factory.js';
import { createTestContext } from '../helpers/test-context.js';

interface Item {
  id: string;
  kind: string;
  priority: string;
  state: string;
  dueAt: string;
  poolId: string | null;
  assignedReaderId: string | null;
  leaseExpiresAt: string | null;
}
interface Page {
  readerId: string;
  cases: Item[];
  nextCursor: string | null;
  counts: { assigned: number; claimable: number; total: number };
}

let t: Awaited<ReturnType<typeof createTestContext>>;
let ctx: Context;
let app: App;
let call: ReturnType<typeof apiClient>;
const keys: Record<string, string> = {};
const ids: Record<string, string> = {};
/** Every case "me" should see, in worklist order. */
let expected: string[];

const HOUR = 3_600_000;
const base = new Date(Date.now() - 10 * 60_000);
const at = (offset: number) => new Date(base.getTime() + offset);

const post = (key: string, path: string) => call(key, path, { method: 'POST' });

beforeAll(async () => {
  t = await createTestContext();
  ctx = t.ctx;
  await addSite(ctx.db, { id: 'clinic-a', jurisdiction: 'KE', sla: 'stat=30' });
  await addSite(ctx.db, { id: 'clinic-b', jurisdiction: 'KE' });
  await addReader(ctx.db, {
    id: 'me',
    specialties: 'radiology',
    subspecialties: 'chest',
    jurisdictions: 'KE',
    languages: 'en,sw',
  });
  await addReader(ctx.db, {
    id: 'chest-2',
    specialties: 'radiology',
    subspecialties: 'chest',
    jurisdictions: 'KE',
  });
  await addReader(ctx.db, {
    id: 'neuro-doc',
    specialties: 'radiology',
    subspecialties: 'neuro',
    jurisdictions: 'KE',
  });
  await addReader(ctx.db, { id: 'cardio', specialties: 'cardiology', jurisdictions: 'KE' });
  for (const id of ['me', 'chest-2', 'neuro-doc', 'cardio']) {
    keys[id] = (await createKey(ctx.db, { role: 'reader', reader: id })).key;
  }
  keys.ops = (await createKey(ctx.db, { role: 'ops' })).key;
  await replaceRules(
    ctx.db,
    parseRuleSet({
      rules: [
        {
          name: 'chest pool',
          match: { kind: 'imaging', bodyPart: 'CHEST' },
          target: { specialty: 'radiology', subspecialty: 'chest' },
          policy: 'pull',
        },
        {
          name: 'neuro',
          match: { kind: 'imaging', modality: 'MR' },
          target: { specialty: 'radiology', subspecialty: 'neuro' },
        },
        { name: 'ecg pool', match: { kind: 'ecg' }, target: { specialty: 'cardiology' }, policy: 'pull' },
        // Only "me" reads in Swahili, so the rest of clinic-a's imaging is pushed to "me".
        {
          name: 'other imaging',
          match: { kind: 'imaging', site: 'clinic-a' },
          target: { specialty: 'radiology', subspecialty: 'chest', language: 'sw' },
        },
      ],
    }),
  );
  const started = await startApi(ctx, 0);
  app = started.app;
  call = apiClient(started.url);

  const make = async (name: string, spec: Omit<CaseSpec, 'siteId'> & { siteId?: string }) => {
    ids[name] = await createRoutedCase(ctx, { siteId: 'clinic-a', kind: 'imaging', modality: 'CT', ...spec });
  };
  await make('busy', { siteId: 'clinic-b', bodyPart: 'CHEST' });
  await make('B', { bodyPart: 'CHEST', priority: 'stat', createdAt: at(0) }); // due +30 min (site contract)
  await make('C', { priority: 'urgent', createdAt: at(0) }); // pushed to me, due +4 h
  await make('D', { priority: 'routine', createdAt: at(-23 * HOUR) }); // pushed to me, due +1 h
  await make('A', { bodyPart: 'CHEST', createdAt: at(-5 * HOUR) }); // due +19 h
  for (const n of ['G', 'H', 'I']) await make(n, { bodyPart: 'CHEST', createdAt: at(-2 * HOUR) }); // all due +22 h
  await make('J', { siteId: 'clinic-b', bodyPart: 'CHEST', priority: 'urgent', createdAt: at(-HOUR) });
  await make('E', { modality: 'MR', priority: 'stat' }); // pushed to neuro-doc
  await make('F', { kind: 'ecg', modality: undefined, priority: 'stat' }); // cardiology pool
  // Arrival now(): due times with microseconds, which a millisecond cursor would get wrong.
  for (const n of ['K', 'L', 'M', 'N']) await make(n, { bodyPart: 'CHEST', siteId: 'clinic-b' });

  expect((await post(keys['chest-2']!, `/v1/cases/${ids.busy}/claim`)).status).toBe(200);
  expect((await post(keys['chest-2']!, `/v1/cases/${ids.J}/claim`)).status).toBe(200);
  expect((await post(keys.me!, `/v1/cases/${ids.K}/claim`)).status).toBe(200);
  const tied = ['G', 'H', 'I'].map((n) => ids[n]!).sort();
  expected = [ids.B!, ids.C!, ids.D!, ids.A!, ...tied, ids.K!, ids.L!, ids.M!, ids.N!];
});

afterAll(async () => {
  await app?.close();
  await t?.dispose();
});

async function walk(key: string, query: string, limit: number): Promise<Item[]> {
  const seen: Item[] = [];
  let cursor: string | null = null;
  for (let pages = 0; pages < 100; pages++) {
    const res: { status: number; body: Page } = await call<Page>(
      key,
      `/v1/worklist?limit=${limit}${query}${cursor ? `&cursor=${cursor}` : ''}`,
    );
    expect(res.status).toBe(200);
    expect(res.body.cases.length).toBeLessThanOrEqual(limit);
    seen.push(...res.body.cases);
    cursor = res.body.nextCursor;
    if (!cursor) return seen;
  }
  throw new Error('pagination did not end');
}

describe('GET /v1/worklist', () => {
  test('assigned, claimed and claimable cases, most urgent first: priority, then due time, then id', async () => {
    const res = await call<Page>(keys.me!, '/v1/worklist');
    expect(res.status).toBe(200);
    expect(res.body.cases.map((c) => c.id)).toEqual(expected);
    const state = Object.fromEntries(res.body.cases.map((c) => [c.id, c.state]));
    expect(state[ids.C!]).toBe('assigned');
    expect(state[ids.D!]).toBe('assigned');
    expect(state[ids.K!]).toBe('claimed');
    expect(state[ids.A!]).toBe('claimable');
    const k = res.body.cases.find((c) => c.id === ids.K)!;
    expect(k.leaseExpiresAt).not.toBeNull();
    expect(k.assignedReaderId).toBe('me');
    expect(res.body.cases.find((c) => c.id === ids.A)).toMatchObject({
      poolId: 'radiology.chest',
      assignedReaderId: null,
    });
    expect(res.body.counts).toEqual({
      assigned: 3,
      claimable: expected.length - 3,
      total: expected.length,
      capped: false,
    });
    expect(res.body.nextCursor).toBeNull();
  });

  test('never shows cases pushed to or held by others, or pools the reader is not in', async () => {
    const mine = await call<Page>(keys.me!, '/v1/worklist');
    for (const other of ['E', 'F', 'J', 'busy'])
      expect(mine.body.cases.map((c) => c.id)).not.toContain(ids[other]);
    const neuro = await call<Page>(keys['neuro-doc']!, '/v1/worklist');
    expect(neuro.body.cases.map((c) => c.id)).toEqual([ids.E]);
    const cardio = await call<Page>(keys.cardio!, '/v1/worklist');
    expect(cardio.body.cases.map((c) => [c.id, c.state])).toEqual([[ids.F, 'claimable']]);
    expect((await call(keys.ops!, '/v1/worklist')).status).toBe(403);
  });

  test.each([
    ['priority=stat', () => [ids.B]],
    ['priority=routine', () => expected.filter((id) => ![ids.B, ids.C].includes(id))],
    ['status=assigned', () => [ids.C, ids.D]],
    ['status=claimed', () => [ids.K]],
    ['status=claimable', () => expected.filter((id) => ![ids.C, ids.D, ids.K].includes(id))],
    ['kind=ecg', () => []],
    ['kind=imaging&priority=urgent&status=assigned', () => [ids.C]],
  ])('filter %s, with counts of the filtered list', async (query, want) => {
    const res = await call<Page>(keys.me!, `/v1/worklist?${query}`);
    expect(res.status).toBe(200);
    expect(res.body.cases.map((c) => c.id)).toEqual(want());
    expect(res.body.counts.total).toBe(want().length);
  });

  test.each([1, 2, 3, 5])(
    'cursor pagination, %i per page, visits every case once in order',
    async (limit) => {
      const pages = await walk(keys.me!, '', limit);
      expect(pages.map((c) => c.id)).toEqual(expected);
      const claimable = await walk(keys.me!, '&status=claimable', limit);
      expect(claimable.map((c) => c.id)).toEqual(
        expected.filter((id) => ![ids.C, ids.D, ids.K].includes(id)),
      );
    },
  );

  test('counts cover every page', async () => {
    const first = await call<Page>(keys.me!, '/v1/worklist?limit=2');
    expect(first.body.cases).toHaveLength(2);
    expect(first.body.counts.total).toBe(expected.length);
    const second = await call<Page>(keys.me!, `/v1/worklist?limit=2&cursor=${first.body.nextCursor}`);
    expect(second.body.counts).toEqual(first.body.counts);
  });

  test.each(['garbage', Buffer.from('[0,"x","y"]').toString('base64url'), 'W10'])(
    'a cursor it did not issue is 400 (%s)',
    async (cursor) => {
      const res = await call<{ error: { code: string } }>(keys.me!, `/v1/worklist?cursor=${cursor}`);
      expect(res.status).toBe(400);
      expect(res.body.error.code).toBe('VALIDATION_FAILED');
    },
  );

  test(`counts stop at ${WORKLIST_COUNT_CAP} per part and say so; pages still reach every case`, async () => {
    // A big pool, written the way the route handler leaves pull cases, for a reader who sees nothing else.
    await addSite(ctx.db, { id: 'clinic-big', jurisdiction: 'KE' });
    await addReader(ctx.db, { id: 'big-pool', specialties: 'pathology', jurisdictions: 'KE' });
    keys['big-pool'] = (await createKey(ctx.db, { role: 'reader', reader: 'big-pool' })).key;
    const n = WORKLIST_COUNT_CAP + 5;
    await sql`INSERT INTO cases (site_id, kind, status, priority, routed_at, pool_id, pool_specialty)
      SELECT 'clinic-big', 'pathology', 'routed', 'routine', now(), 'pathology', 'pathology'
      FROM generate_series(1, ${n})`.execute(ctx.db);
    const res = await call<Page>(keys['big-pool']!, '/v1/worklist?limit=500');
    expect(res.body.counts).toEqual({
      assigned: 0,
      claimable: WORKLIST_COUNT_CAP,
      total: WORKLIST_COUNT_CAP,
      capped: true,
    });
    expect((await walk(keys['big-pool']!, '', 500)).length).toBe(n);
  });

  test('a claimed case leaves the other readers’ worklists and comes back on release', async () => {
    const before = await call<Page>(keys['chest-2']!, '/v1/worklist?status=claimable');
    expect(before.body.cases.map((c) => c.id)).toContain(ids.A);
    expect((await post(keys.me!, `/v1/cases/${ids.A}/claim`)).status).toBe(200);
    const during = await call<Page>(keys['chest-2']!, '/v1/worklist?status=claimable');
    expect(during.body.cases.map((c) => c.id)).not.toContain(ids.A);
    expect((await post(keys.me!, `/v1/cases/${ids.A}/release`)).status).toBe(200);
    const after = await call<Page>(keys['chest-2']!, '/v1/worklist?status=claimable');
    expect(after.body.cases.map((c) => c.id)).toContain(ids.A);
  });

  test('a reader’s own claim and release show in their very next page, asked the same way', async () => {
    const page = async () => {
      const res = await call<Page>(keys.me!, '/v1/worklist');
      expect(res.status).toBe(200);
      return Object.fromEntries(res.body.cases.map((c) => [c.id, c]));
    };
    // The same request as the ones just before and after: a page served from memory would show it stale.
    expect((await page())[ids.A!]).toMatchObject({ state: 'claimable', leaseExpiresAt: null });
    expect((await post(keys.me!, `/v1/cases/${ids.A}/claim`)).status).toBe(200);
    const claimed = (await page())[ids.A!];
    expect(claimed).toMatchObject({ state: 'claimed', assignedReaderId: 'me' });
    expect(claimed?.leaseExpiresAt).not.toBeNull();
    expect((await post(keys.me!, `/v1/cases/${ids.A}/release`)).status).toBe(200);
    expect((await page())[ids.A!]).toMatchObject({ state: 'claimable', leaseExpiresAt: null });
  });

  test('every request is audited, answered from memory or not', async () => {
    const requestIds: string[] = [];
    for (let i = 0; i < 3; i++) {
      const res = await call<Page>(keys['chest-2']!, '/v1/worklist?limit=3');
      expect(res.status).toBe(200);
      requestIds.push(res.headers.get('x-request-id')!);
    }
    const rows = await waitFor('three worklist.read events', async () => {
      const found = await ctx.db
        .selectFrom('audit_events')
        .select(['request_id', 'action'])
        .where('request_id', 'in', requestIds)
        .execute();
      return found.length === requestIds.length ? found : undefined;
    });
    expect(rows.every((r) => r.action === 'worklist.read')).toBe(true);
  });

  test('an inactive reader keeps their own cases but sees no pool', async () => {
    await addReader(ctx.db, { id: 'me', specialties: 'radiology', jurisdictions: 'KE', active: false });
    try {
      const res = await call<Page>(keys.me!, '/v1/worklist');
      expect(res.body.cases.map((c) => c.state).sort()).toEqual(['assigned', 'assigned', 'claimed']);
      expect(res.body.counts.claimable).toBe(0);
    } finally {
      await addReader(ctx.db, { id: 'me', specialties: 'radiology', jurisdictions: 'KE', active: true });
    }
  });
});

describe('due times', () => {
  test('every case is due at arrival plus its site’s minutes for its priority', async () => {
    const rows = await ctx.db
      .selectFrom('cases')
      .innerJoin('sites', 'sites.id', 'cases.site_id')
      .select(['cases.created_at', 'cases.priority', 'cases.due_at', 'sites.sla_minutes'])
      .execute();
    expect(rows.length).toBeGreaterThan(10);
    for (const r of rows) {
      expect(r.due_at.getTime()).toBe(dueAt(r.created_at, r.priority, resolveSla(r.sla_minutes)).getTime());
    }
    const b = rows.find((r) => r.priority === 'stat' && r.sla_minutes.stat === 30)!;
    expect(b.due_at.getTime() - b.created_at.getTime()).toBe(30 * 60_000);
  });

  test('raising the priority moves the due time', async () => {
    const id = await createRoutedCase(ctx, { siteId: 'clinic-b', kind: 'imaging', bodyPart: 'CHEST' });
    const row = await ctx.db
      .updateTable('cases')
      .set({ priority: 'stat' })
      .where('id', '=', id)
      .returning(['created_at', 'due_at'])
      .executeTakeFirstOrThrow();
    expect(row.due_at.getTime() - row.created_at.getTime()).toBe(60 * 60_000);
  });
});

describe('follow-up routing', () => {
  beforeAll(async () => {
    await addSite(ctx.db, { id: 'clinic-p', jurisdiction: 'UG' });
    await addSite(ctx.db, { id: 'clinic-q', jurisdiction: 'UG' });
    await addReader(ctx.db, { id: 'pa', specialties: 'pathology', jurisdictions: 'UG' });
    await addReader(ctx.db, { id: 'pb', specialties: 'pathology', jurisdictions: 'UG' });
  });

  const readerOf = async (caseId: string) =>
    (
      await ctx.db
        .selectFrom('assignments')
        .select('reader_id')
        .where('case_id', '=', caseId)
        .where('released_at', 'is', null)
        .executeTakeFirstOrThrow()
    ).reader_id;

  test('a later case of the same patient at the same site goes to the prior reader, not the least loaded', async () => {
    const first = await createRoutedCase(ctx, { siteId: 'clinic-p', kind: 'pathology', patientId: 'P-1' });
    expect(await readerOf(first)).toBe('pa');
    const other = await createRoutedCase(ctx, { siteId: 'clinic-p', kind: 'pathology', patientId: 'P-2' });
    expect(await readerOf(other)).toBe('pb');
    const third = await createRoutedCase(ctx, { siteId: 'clinic-p', kind: 'pathology', patientId: 'P-3' });
    expect(await readerOf(third)).toBe('pa');
    // pa now holds 2, pb 1: the least loaded is pb, but P-1 was read by pa.
    const followUp = await createRoutedCase(ctx, { siteId: 'clinic-p', kind: 'pathology', patientId: 'P-1' });
    expect(await readerOf(followUp)).toBe('pa');
    // The same patient id at another site is another patient.
    const elsewhere = await createRoutedCase(ctx, {
      siteId: 'clinic-q',
      kind: 'pathology',
      patientId: 'P-1',
    });
    expect(await readerOf(elsewhere)).toBe('pb');

    const note = await ctx.db
      .selectFrom('cases')
      .select('route_note')
      .where('id', '=', followUp)
      .executeTakeFirstOrThrow();
    expect(note.route_note).toContain('follow-up');
    const audit = await ctx.db
      .selectFrom('audit_events')
      .select('detail')
      .where('case_id', '=', followUp)
      .where('action', '=', 'case.routed')
      .executeTakeFirstOrThrow();
    expect(JSON.stringify(audit.detail) + note.route_note).not.toContain('P-1');
  });
});
