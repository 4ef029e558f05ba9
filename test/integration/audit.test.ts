import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { type App, buildApp } from '../../src/api/build-app.js';
import { addReader, addSite, createKey } from '../../src/cli/admin-commands.js';
import type { Context } from '../../src/context.js';
import { waitFor } from '../helpers/api-client.js';
import { createRoutedCase } from '../helpers/case-factory.js';
import { createTestContext } from '../helpers/test-context.js';

interface AuditEventBody {
  id: string;
  at: string;
  actor: { keyId: string | null; role: string | null; siteId: string | null; readerId: string | null };
  action: string;
  caseId: string | null;
  fileId: string | null;
  requestId: string | null;
  ip: string | null;
  detail: { status?: number; params?: Record<string, unknown> } & Record<string, unknown>;
}
interface AuditPage {
  events: AuditEventBody[];
  nextCursor: string | null;
}

let t: Awaited<ReturnType<typeof createTestContext>>;
let ctx: Context;
let app: App;
const keys: Record<string, { id: string; key: string }> = {};
let caseId: string;

beforeAll(async () => {
  t = await createTestContext();
  ctx = t.ctx;
  await addSite(ctx.db, { id: 'clinic-a', jurisdiction: 'KE' });
  await addReader(ctx.db, { id: 'radio', specialties: 'radiology', jurisdictions: 'KE' });
  await addReader(ctx.db, { id: 'cardio', specialties: 'cardiology', jurisdictions: 'KE' });
  keys.clinic = await createKey(ctx.db, { role: 'clinic', site: 'clinic-a' });
  keys.radio = await createKey(ctx.db, { role: 'reader', reader: 'radio' });
  keys.cardio = await createKey(ctx.db, { role: 'reader', reader: 'cardio' });
  keys.ops = await createKey(ctx.db, { role: 'ops' });
  keys.admin = await createKey(ctx.db, { role: 'admin' });
  caseId = await createRoutedCase(ctx, {
    siteId: 'clinic-a',
    kind: 'imaging',
    modality: 'CT',
    patientId: 'PID-AUDIT-1',
  });
  const thumbnail = new TextEncoder().encode('not really a webp');
  await ctx.storage.put(`cases/${caseId}/thumbnail.webp`, thumbnail, { contentType: 'image/webp' });
  await ctx.db
    .insertInto('artifacts')
    .values({
      case_id: caseId,
      name: 'thumbnail',
      object_key: `cases/${caseId}/thumbnail.webp`,
      content_type: 'image/webp',
      bytes: thumbnail.length,
    })
    .execute();
  app = await buildApp(ctx);
  await app.ready();
});

afterAll(async () => {
  await app?.close();
  await t?.dispose();
});

function request(
  who: keyof typeof keys | null,
  method: 'GET' | 'POST',
  url: string,
  remoteAddress = '127.0.0.1',
) {
  return app.inject({
    method,
    url,
    remoteAddress,
    headers: who ? { authorization: `Bearer ${keys[who]!.key}` } : {},
  });
}

async function auditPage(query: string, who: keyof typeof keys = 'ops'): Promise<AuditPage> {
  const res = await request(who, 'GET', `/v1/ops/audit?${query}`);
  expect(res.statusCode, res.body).toBe(200);
  return res.json() as AuditPage;
}

describe('the audit trail is append-only in PostgreSQL', () => {
  test('INSERT works; UPDATE, DELETE and TRUNCATE are refused by the database', async () => {
    const row = await ctx.db
      .insertInto('audit_events')
      .values({ action: 'test.appended', actor_role: 'system', detail: '{}' })
      .returning('id')
      .executeTakeFirstOrThrow();
    await expect(
      ctx.db.updateTable('audit_events').set({ action: 'test.rewritten' }).where('id', '=', row.id).execute(),
    ).rejects.toThrow(/append-only: UPDATE refused/);
    await expect(sql`UPDATE audit_events SET detail = '{}'::jsonb`.execute(ctx.db)).rejects.toThrow(
      /append-only/,
    );
    await expect(ctx.db.deleteFrom('audit_events').where('id', '=', row.id).execute()).rejects.toThrow(
      /append-only: DELETE refused/,
    );
    await expect(sql`TRUNCATE audit_events`.execute(ctx.db)).rejects.toThrow(/append-only: TRUNCATE refused/);
    const still = await ctx.db
      .selectFrom('audit_events')
      .select('action')
      .where('id', '=', row.id)
      .executeTakeFirstOrThrow();
    expect(still.action).toBe('test.appended');
  });

  test('an application role without the privilege is refused before the trigger', async () => {
    const role = `teleread_audit_probe_${Date.now()}`;
    await sql`CREATE ROLE ${sql.id(role)}`.execute(ctx.db);
    try {
      await sql`GRANT SELECT, INSERT, UPDATE, DELETE ON audit_events TO ${sql.id(role)}`.execute(ctx.db);
      // What migration 0006 does for the `teleread_app` role, here for a role of this test's own.
      await sql`REVOKE UPDATE, DELETE, TRUNCATE ON audit_events FROM ${sql.id(role)}`.execute(ctx.db);
      await ctx.db.connection().execute(async (conn) => {
        await sql`SET ROLE ${sql.id(role)}`.execute(conn);
        try {
          await expect(sql`UPDATE audit_events SET action = action`.execute(conn)).rejects.toThrow(
            /permission denied/,
          );
          await expect(sql`DELETE FROM audit_events`.execute(conn)).rejects.toThrow(/permission denied/);
        } finally {
          await sql`RESET ROLE`.execute(conn);
        }
      });
    } finally {
      await sql`REVOKE ALL ON audit_events FROM ${sql.id(role)}`.execute(ctx.db);
      await sql`DROP ROLE ${sql.id(role)}`.execute(ctx.db);
    }
  });
});

describe('every access to case data is recorded', () => {
  test('reads, downloads, claims and refusals: actor, role, action, case, time, address, request id', async () => {
    const started = new Date(Date.now() - 1000);
    const reads = [
      { who: 'clinic', url: `/v1/cases/${caseId}`, ip: '198.51.100.10', action: 'case.read', status: 200 },
      {
        who: 'radio',
        url: `/v1/cases/${caseId}/artifacts/thumbnail`,
        ip: '2001:db8::7',
        action: 'artifact.read',
        status: 200,
      },
      // Not the cardiologist's case: refused as unknown, and the attempt is on the trail.
      { who: 'cardio', url: `/v1/cases/${caseId}`, ip: '203.0.113.9', action: 'case.read', status: 404 },
    ] as const;
    const requestIds: string[] = [];
    for (const r of reads) {
      const res = await request(r.who, 'GET', r.url, r.ip);
      expect(res.statusCode).toBe(r.status);
      requestIds.push(String(res.headers['x-request-id']));
    }
    const claim = await request('radio', 'POST', `/v1/cases/${caseId}/claim`, '2001:db8::7');
    expect(claim.statusCode).toBe(200);

    const events = await waitFor('the access events', async () => {
      const page = await auditPage(`caseId=${caseId}&limit=100`);
      return page.events.some((e) => e.action === 'case.claim') ? page.events : undefined;
    });
    for (const [i, r] of reads.entries()) {
      const e = events.find((x) => x.requestId === requestIds[i]);
      expect(e, r.url).toMatchObject({
        action: r.action,
        caseId,
        ip: r.ip,
        actor: { keyId: keys[r.who]!.id, role: keys[r.who] === keys.clinic ? 'clinic' : 'reader' },
        detail: { status: r.status },
      });
      expect(Date.parse(e!.at)).toBeGreaterThanOrEqual(started.getTime());
    }
    const artifact = events.find((e) => e.action === 'artifact.read');
    expect(artifact?.detail.params).toEqual({ name: 'thumbnail' });
    expect(artifact?.actor).toMatchObject({ readerId: 'radio', siteId: null });
    // The claim has its access event (with the address) and the domain event written in its transaction.
    expect(
      events.filter((e) => e.requestId === String(claim.headers['x-request-id'])).map((e) => e.action),
    ).toEqual(expect.arrayContaining(['case.claim', 'case.claimed']));
    // The routing decision, by the pipeline: no key, no address.
    expect(events.find((e) => e.action === 'case.routed')).toMatchObject({
      actor: { keyId: null, role: 'system' },
      ip: null,
    });
    // Ops read the trail, not the patient.
    expect(JSON.stringify(events)).not.toContain('PID-AUDIT-1');
  });

  test('filters by actor, action and time; pages with a cursor; reading the trail is itself audited', async () => {
    for (let i = 0; i < 5; i++) expect((await request('clinic', 'GET', '/v1/cases')).statusCode).toBe(200);
    const mine = await waitFor('five list events', async () => {
      const page = await auditPage(`actor=${keys.clinic!.id}&action=case.list&limit=100`);
      return page.events.length >= 5 ? page.events : undefined;
    });
    expect(mine.every((e) => e.actor.keyId === keys.clinic!.id && e.action === 'case.list')).toBe(true);
    const ids = mine.map((e) => Number(e.id));
    expect(ids).toEqual([...ids].sort((a, b) => b - a));

    const seen: string[] = [];
    let cursor: string | null = null;
    for (let pages = 0; pages < 10; pages++) {
      const page: AuditPage = await auditPage(
        `actor=${keys.clinic!.id}&action=case.list&limit=2${cursor ? `&cursor=${cursor}` : ''}`,
      );
      seen.push(...page.events.map((e) => e.id));
      cursor = page.nextCursor;
      if (!cursor) break;
    }
    expect(seen).toEqual(mine.map((e) => e.id));

    const future = new Date(Date.now() + 3600_000).toISOString();
    expect((await auditPage(`from=${encodeURIComponent(future)}`)).events).toEqual([]);
    const past = new Date(Date.now() - 3600_000).toISOString();
    const inWindow = await auditPage(
      `actor=${keys.clinic!.id}&from=${encodeURIComponent(past)}&to=${encodeURIComponent(future)}&limit=1000`,
    );
    expect(inWindow.events.length).toBeGreaterThanOrEqual(5);

    await waitFor('the audit reads themselves on the trail', async () => {
      const page = await auditPage(`actor=${keys.ops!.id}&action=audit.read`);
      return page.events.length > 0 ? true : undefined;
    });
  });

  test('only ops and admin read the trail; bad filters are 400', async () => {
    expect((await request('admin', 'GET', '/v1/ops/audit')).statusCode).toBe(200);
    expect((await request('clinic', 'GET', '/v1/ops/audit')).statusCode).toBe(403);
    expect((await request('radio', 'GET', '/v1/ops/audit')).statusCode).toBe(403);
    expect((await request(null, 'GET', '/v1/ops/audit', '192.0.2.200')).statusCode).toBe(401);
    expect((await request('ops', 'GET', '/v1/ops/audit?caseId=nope')).statusCode).toBe(400);
    expect((await request('ops', 'GET', '/v1/ops/audit?cursor=garbage')).statusCode).toBe(400);
    const now = new Date().toISOString();
    expect(
      (
        await request(
          'ops',
          'GET',
          `/v1/ops/audit?from=${encodeURIComponent(now)}&to=${encodeURIComponent(now)}`,
        )
      ).statusCode,
    ).toBe(400);
  });

  test('events buffered at shutdown are written when the app closes', async () => {
    const other = await buildApp(ctx);
    await other.ready();
    const res = await other.inject({
      method: 'GET',
      url: `/v1/cases/${caseId}`,
      headers: { authorization: `Bearer ${keys.admin!.key}` },
    });
    expect(res.statusCode).toBe(200);
    await other.close();
    const row = await ctx.db
      .selectFrom('audit_events')
      .select(['action', 'actor_role'])
      .where('request_id', '=', String(res.headers['x-request-id']))
      .where('action', '=', 'case.read')
      .executeTakeFirst();
    expect(row).toEqual({ action: 'case.read', actor_role: 'admin' });
  });
});
