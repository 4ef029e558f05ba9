import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import type { App } from '../../src/api/build-app.js';
import { startApi } from '../../src/api/start-api.js';
import { addReader, addSite, createKey } from '../../src/cli/admin-commands.js';
import type { Context } from '../../src/context.js';
import { replaceRules } from '../../src/db/rule-queries.js';
import { parseRuleSet } from '../../src/domain/rules.js';
import { apiClient } from '../helpers/api-client.js';
import { createRoutedCase } from '../helpers/case-factory.js';
import { createTestContext } from '../helpers/test-context.js';

const CONTENDERS = 50;
const ROUNDS = 100;

let t: Awaited<ReturnType<typeof createTestContext>>;
let ctx: Context;
let app: App;
let shortApp: App;
let url: string;
let shortUrl: string;
let call: ReturnType<typeof apiClient>;
const keys: Record<string, string> = {};
const pathologists = Array.from({ length: CONTENDERS }, (_, i) => `p${String(i).padStart(2, '0')}`);

interface LeaseBody {
  caseId: string;
  readerId: string;
  leaseExpiresAt: string;
  leaseSeconds: number;
}
interface ErrorBody {
  error: { code: string; message: string };
}

beforeAll(async () => {
  t = await createTestContext();
  ctx = t.ctx;
  await addSite(ctx.db, { id: 'clinic-a', jurisdiction: 'KE' });
  await addSite(ctx.db, { id: 'clinic-open', jurisdiction: 'KE', crossBorder: 'identified' });
  await addSite(ctx.db, { id: 'clinic-deid', jurisdiction: 'KE', crossBorder: 'deidentified' });
  for (const id of pathologists) {
    await addReader(ctx.db, {
      id,
      specialties: 'pathology',
      subspecialties: 'histology',
      jurisdictions: 'KE',
    });
  }
  await addReader(ctx.db, {
    id: 'p-abroad',
    specialties: 'pathology',
    subspecialties: 'histology',
    jurisdictions: 'FR',
  });
  await addReader(ctx.db, {
    id: 'p-busy',
    specialties: 'pathology',
    subspecialties: 'histology',
    jurisdictions: 'KE',
    maxActive: 1,
  });
  await addReader(ctx.db, { id: 'cardio', specialties: 'cardiology', jurisdictions: 'KE' });
  await addReader(ctx.db, { id: 'radio', specialties: 'radiology', jurisdictions: 'KE' });
  for (const id of [...pathologists, 'p-abroad', 'p-busy', 'cardio', 'radio']) {
    keys[id] = (await createKey(ctx.db, { role: 'reader', reader: id })).key;
  }
  keys.ops = (await createKey(ctx.db, { role: 'ops' })).key;
  keys.clinic = (await createKey(ctx.db, { role: 'clinic', site: 'clinic-a' })).key;
  // Slides go to a shared pool; imaging keeps the default (push to a radiologist).
  await replaceRules(
    ctx.db,
    parseRuleSet({
      rules: [
        {
          name: 'slides',
          match: { kind: 'pathology' },
          target: { specialty: 'pathology', subspecialty: 'histology' },
          policy: 'pull',
        },
      ],
    }),
  );
  ({ app, url } = await startApi(ctx, 0));
  // The same database behind an API whose leases last one second.
  ({ app: shortApp, url: shortUrl } = await startApi(
    { ...ctx, config: { ...ctx.config, leaseSeconds: 1 } },
    0,
  ));
  call = apiClient(url);
});

afterAll(async () => {
  await app?.close();
  await shortApp?.close();
  await t?.dispose();
});

const post = <T>(key: string, path: string, body?: unknown, base = url) =>
  apiClient(base)<T>(key, path, {
    method: 'POST',
    ...(body === undefined
      ? {}
      : { body: JSON.stringify(body), headers: { 'content-type': 'application/json' } }),
  });

describe('concurrent claims', () => {
  test(`${CONTENDERS} concurrent claims of one case: exactly one 200 and ${CONTENDERS - 1} 409s, ${ROUNDS} times`, async () => {
    const caseIds: string[] = [];
    for (let i = 0; i < ROUNDS; i++)
      caseIds.push(await createRoutedCase(ctx, { siteId: 'clinic-a', kind: 'pathology' }));
    const pooled = await ctx.db
      .selectFrom('cases')
      .select(['id', 'status', 'pool_id'])
      .where('id', 'in', caseIds)
      .execute();
    expect(pooled.every((c) => c.status === 'routed' && c.pool_id === 'pathology.histology')).toBe(true);

    for (const caseId of caseIds) {
      const results = await Promise.all(
        pathologists.map((id) => post<LeaseBody & ErrorBody>(keys[id]!, `/v1/cases/${caseId}/claim`)),
      );
      const statuses = results.map((r) => r.status);
      expect(statuses.filter((s) => s === 200)).toHaveLength(1);
      expect(statuses.filter((s) => s === 409)).toHaveLength(CONTENDERS - 1);
      const winner = results.find((r) => r.status === 200)!.body;
      expect(results.filter((r) => r.status === 409).every((r) => r.body.error.code === 'CONFLICT')).toBe(
        true,
      );
      const row = await ctx.db
        .selectFrom('cases')
        .select(['lease_reader_id'])
        .where('id', '=', caseId)
        .executeTakeFirstOrThrow();
      expect(row.lease_reader_id).toBe(winner.readerId);
      // The winner gives the case back, so no reader piles up claims toward their max_active over the rounds
      // (which would make later claims in this file fail with "at capacity").
      expect((await post(keys[winner.readerId]!, `/v1/cases/${caseId}/release`)).status).toBe(200);
    }
    const audited = await ctx.db
      .selectFrom('audit_events')
      .select((eb) => eb.fn.countAll<number>().as('n'))
      .where('action', '=', 'case.claimed')
      .where('case_id', 'in', caseIds)
      .executeTakeFirstOrThrow();
    expect(Number(audited.n)).toBe(ROUNDS);
  }, 180_000);
});

describe('claim, heartbeat, release, reassign', () => {
  test('a claim renews for its holder and is refused to others; heartbeats extend it', async () => {
    const caseId = await createRoutedCase(ctx, { siteId: 'clinic-a', kind: 'pathology' });
    // Before the claim every qualified reader sees the pool case; others do not.
    expect((await call(keys.p00!, `/v1/cases/${caseId}`)).status).toBe(200);
    expect((await call(keys.p01!, `/v1/cases/${caseId}`)).status).toBe(200);
    expect((await call(keys.cardio!, `/v1/cases/${caseId}`)).status).toBe(404);

    const first = await post<LeaseBody>(keys.p00!, `/v1/cases/${caseId}/claim`);
    expect(first.status).toBe(200);
    expect(first.body).toMatchObject({ caseId, readerId: 'p00', leaseSeconds: 900 });
    const expires = Date.parse(first.body.leaseExpiresAt);
    expect(expires - Date.now()).toBeGreaterThan(890_000);

    const other = await post<ErrorBody>(keys.p01!, `/v1/cases/${caseId}/claim`);
    expect(other.status).toBe(409);
    expect(other.body.error.message).toContain('another reader');
    // Held by p00, the case leaves p01's view; the unqualified still get 404, never 409.
    expect((await call(keys.p01!, `/v1/cases/${caseId}`)).status).toBe(404);
    expect((await post(keys.cardio!, `/v1/cases/${caseId}/claim`)).status).toBe(404);
    expect((await post(keys.p01!, `/v1/cases/${caseId}/heartbeat`)).status).toBe(404);

    await sleep(20);
    const again = await post<LeaseBody>(keys.p00!, `/v1/cases/${caseId}/claim`);
    expect(again.status).toBe(200);
    const beat = await post<LeaseBody>(keys.p00!, `/v1/cases/${caseId}/heartbeat`);
    expect(beat.status).toBe(200);
    expect(Date.parse(beat.body.leaseExpiresAt)).toBeGreaterThan(expires);

    const detail = await call<{ assignedReader: { id: string } | null }>(keys.ops!, `/v1/cases/${caseId}`);
    expect(detail.body.assignedReader?.id).toBe('p00');
  });

  test('release puts the case back in the pool', async () => {
    const caseId = await createRoutedCase(ctx, { siteId: 'clinic-a', kind: 'pathology' });
    expect((await post(keys.p02!, `/v1/cases/${caseId}/claim`)).status).toBe(200);
    expect((await post(keys.p03!, `/v1/cases/${caseId}/release`)).status).toBe(404);
    const released = await post<{ caseId: string; poolId: string }>(keys.p02!, `/v1/cases/${caseId}/release`);
    expect(released).toMatchObject({ status: 200, body: { caseId, poolId: 'pathology.histology' } });
    expect((await post(keys.p02!, `/v1/cases/${caseId}/release`)).status).toBe(409);
    expect((await post(keys.p02!, `/v1/cases/${caseId}/heartbeat`)).status).toBe(409);
    expect((await post(keys.p03!, `/v1/cases/${caseId}/claim`)).status).toBe(200);
  });

  test('a reader at their cap cannot claim more', async () => {
    const a = await createRoutedCase(ctx, { siteId: 'clinic-a', kind: 'pathology' });
    const b = await createRoutedCase(ctx, { siteId: 'clinic-a', kind: 'pathology' });
    expect((await post(keys['p-busy']!, `/v1/cases/${a}/claim`)).status).toBe(200);
    const refused = await post<ErrorBody>(keys['p-busy']!, `/v1/cases/${b}/claim`);
    expect(refused.status).toBe(409);
    expect(refused.body.error.message).toContain('maximum is 1');
    // Renewing the case already held is not a new case.
    expect((await post(keys['p-busy']!, `/v1/cases/${a}/claim`)).status).toBe(200);
  });

  test('cross-border: a reader abroad claims only from a site that allows identified reading', async () => {
    const closed = await createRoutedCase(ctx, { siteId: 'clinic-a', kind: 'pathology' });
    const deid = await createRoutedCase(ctx, { siteId: 'clinic-deid', kind: 'pathology' });
    const open = await createRoutedCase(ctx, { siteId: 'clinic-open', kind: 'pathology' });
    for (const id of [closed, deid]) {
      expect((await call(keys['p-abroad']!, `/v1/cases/${id}`)).status).toBe(404);
      expect((await post(keys['p-abroad']!, `/v1/cases/${id}/claim`)).status).toBe(404);
    }
    expect((await post(keys['p-abroad']!, `/v1/cases/${open}/claim`)).status).toBe(200);
    const reassign = await post<ErrorBody>(keys.ops!, `/v1/cases/${deid}/reassign`, { readerId: 'p-abroad' });
    expect(reassign.status).toBe(409);
    expect(reassign.body.error.message).toContain('deidentified');
  });

  test('a pushed case: its reader claims and releases it, then the pool may claim it', async () => {
    const caseId = await createRoutedCase(ctx, { siteId: 'clinic-a', kind: 'imaging', modality: 'CT' });
    const assigned = await ctx.db
      .selectFrom('assignments')
      .select('reader_id')
      .where('case_id', '=', caseId)
      .where('released_at', 'is', null)
      .executeTakeFirstOrThrow();
    expect(assigned.reader_id).toBe('radio');
    await addReader(ctx.db, { id: 'radio-2', specialties: 'radiology', jurisdictions: 'KE' });
    keys['radio-2'] = (await createKey(ctx.db, { role: 'reader', reader: 'radio-2' })).key;
    // Pushed to radio: another radiologist can neither see nor claim it.
    expect((await post(keys['radio-2']!, `/v1/cases/${caseId}/claim`)).status).toBe(404);
    expect((await post(keys.radio!, `/v1/cases/${caseId}/claim`)).status).toBe(200);
    expect((await post(keys.radio!, `/v1/cases/${caseId}/release`)).status).toBe(200);
    const ended = await ctx.db
      .selectFrom('assignments')
      .select('released_at')
      .where('case_id', '=', caseId)
      .executeTakeFirstOrThrow();
    expect(ended.released_at).not.toBeNull();
    expect((await post(keys['radio-2']!, `/v1/cases/${caseId}/claim`)).status).toBe(200);
  });

  test('ops reassign: to a qualified reader only, ending any claim; audited', async () => {
    const caseId = await createRoutedCase(ctx, { siteId: 'clinic-a', kind: 'pathology' });
    expect((await post(keys.p04!, `/v1/cases/${caseId}/claim`)).status).toBe(200);
    expect((await post(keys.p04!, `/v1/cases/${caseId}/reassign`, { readerId: 'p05' })).status).toBe(403);
    expect((await post(keys.ops!, `/v1/cases/${caseId}/reassign`, { readerId: 'cardio' })).status).toBe(409);
    expect((await post(keys.ops!, `/v1/cases/${caseId}/reassign`, { readerId: 'nobody' })).status).toBe(400);
    expect(
      (await post(keys.ops!, `/v1/cases/${crypto.randomUUID()}/reassign`, { readerId: 'p05' })).status,
    ).toBe(404);
    const moved = await post(keys.ops!, `/v1/cases/${caseId}/reassign`, {
      readerId: 'p05',
      note: 'p04 is ill',
    });
    expect(moved).toMatchObject({ status: 200, body: { caseId, readerId: 'p05', previousReaderId: null } });
    // p04's lease ended with the move; the case is p05's, pushed.
    expect((await post(keys.p04!, `/v1/cases/${caseId}/heartbeat`)).status).toBe(404);
    expect((await call(keys.p05!, `/v1/cases/${caseId}`)).status).toBe(200);
    const again = await post(keys.ops!, `/v1/cases/${caseId}/reassign`, { readerId: 'p06' });
    expect(again.body).toMatchObject({ previousReaderId: 'p05' });

    const events = await ctx.db
      .selectFrom('audit_events')
      .select(['action', 'actor_role', 'request_id', 'detail'])
      .where('case_id', '=', caseId)
      // The workflow's own events; request-level access events may sit between them.
      .where('action', 'in', ['case.routed', 'case.claimed', 'case.released', 'case.reassigned'])
      .orderBy('id')
      .execute();
    expect(events.map((e) => e.action)).toEqual([
      'case.routed',
      'case.claimed',
      'case.reassigned',
      'case.reassigned',
    ]);
    expect(events[2]).toMatchObject({
      actor_role: 'ops',
      detail: { from: null, to: 'p05', note: 'p04 is ill' },
    });
    expect(events[2]!.request_id).toBeTruthy();
  });

  test('clinic and ops keys cannot claim', async () => {
    const caseId = await createRoutedCase(ctx, { siteId: 'clinic-a', kind: 'pathology' });
    expect((await post(keys.clinic!, `/v1/cases/${caseId}/claim`)).status).toBe(403);
    expect((await post(keys.ops!, `/v1/cases/${caseId}/claim`)).status).toBe(403);
  });
});

describe('lease expiry', () => {
  test('a lapsed lease puts the case back in the pool without any job', async () => {
    const caseId = await createRoutedCase(ctx, { siteId: 'clinic-a', kind: 'pathology' });
    const first = await post<LeaseBody>(keys.p10!, `/v1/cases/${caseId}/claim`, undefined, shortUrl);
    expect(first.status).toBe(200);
    expect(first.body.leaseSeconds).toBe(1);
    expect((await post(keys.p11!, `/v1/cases/${caseId}/claim`, undefined, shortUrl)).status).toBe(409);

    await sleep(1_200);
    // The holder cannot revive it with a heartbeat: it went back to the pool.
    const late = await post<ErrorBody>(keys.p10!, `/v1/cases/${caseId}/heartbeat`, undefined, shortUrl);
    expect(late.status).toBe(409);
    expect(late.body.error.message).toContain('claim it again');
    const wl = await call<{ cases: Array<{ id: string; state: string }> }>(
      keys.p11!,
      '/v1/worklist?status=claimable&limit=500',
    );
    expect(wl.body.cases.find((c) => c.id === caseId)?.state).toBe('claimable');
    const second = await post<LeaseBody>(keys.p11!, `/v1/cases/${caseId}/claim`, undefined, shortUrl);
    expect(second.status).toBe(200);
    expect(second.body.readerId).toBe('p11');
  });
});
