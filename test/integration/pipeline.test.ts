import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import type { App } from '../../src/api/build-app.js';
import { startApi } from '../../src/api/start-api.js';
import { addReader, addSite, createKey } from '../../src/cli/admin-commands.js';
import { collectBatches, uploadBatch } from '../../src/client/upload-client.js';
import type { Context } from '../../src/context.js';
import { handleIngest } from '../../src/pipeline/handlers/handle-ingest.js';
import { handleProcess } from '../../src/pipeline/handlers/handle-process.js';
import { handleRoute } from '../../src/pipeline/handlers/handle-route.js';
import { ingestJobFileIds, QUEUE_NAMES } from '../../src/pipeline/queues.js';
import { type RunningWorkers, runWorkers } from '../../src/pipeline/run-worker.js';
import { repoRoot } from '../corpus.js';
import { apiClient, waitFor } from '../helpers/api-client.js';
import { createTestContext } from '../helpers/test-context.js';

interface CaseBody {
  id: string;
  kind: string;
  status: string;
  assignedReader: { id: string } | null;
  files: Array<{ id: string; name: string; status: string; error: { code: string } | null }>;
  artifacts: Array<{ name: string; contentType: string; url: string }>;
}

let t: Awaited<ReturnType<typeof createTestContext>>;
let ctx: Context;
let app: App;
let workers: RunningWorkers;
let url: string;
let call: ReturnType<typeof apiClient>;
const keys: Record<string, string> = {};
let scratch: string;

beforeAll(async () => {
  t = await createTestContext({ SWEEP_INTERVAL_SECONDS: '1', STUCK_AFTER_SECONDS: '2' });
  ctx = t.ctx;
  scratch = await mkdtemp(path.join(tmpdir(), 'teleread-pipeline-'));
  await addSite(ctx.db, { id: 'clinic-a', jurisdiction: 'KE' });
  await addSite(ctx.db, { id: 'clinic-b', jurisdiction: 'KE' });
  await addReader(ctx.db, { id: 'cardio', specialties: 'cardiology', jurisdictions: 'KE' });
  await addReader(ctx.db, { id: 'radio', specialties: 'radiology', jurisdictions: 'KE' });
  await addReader(ctx.db, { id: 'patho', specialties: 'pathology', jurisdictions: 'KE' });
  // Qualified by specialty but not licensed in KE: must never receive a KE case.
  await addReader(ctx.db, { id: 'radio-abroad', specialties: 'radiology', jurisdictions: 'FR' });
  keys.clinicA = (await createKey(ctx.db, { role: 'clinic', site: 'clinic-a' })).key;
  keys.clinicB = (await createKey(ctx.db, { role: 'clinic', site: 'clinic-b' })).key;
  keys.ops = (await createKey(ctx.db, { role: 'ops' })).key;
  for (const r of ['cardio', 'radio', 'patho', 'radio-abroad']) {
    keys[r] = (await createKey(ctx.db, { role: 'reader', reader: r })).key;
  }
  workers = await runWorkers(ctx);
  ({ app, url } = await startApi(ctx, 0));
  call = apiClient(url);
});

afterAll(async () => {
  await app?.close();
  await workers?.close();
  await t?.dispose();
  await rm(scratch, { recursive: true, force: true });
});

async function uploadPaths(paths: string[], key = keys.clinicA!, priority?: 'stat') {
  const [batch] = await collectBatches(paths);
  return uploadBatch(batch!, { server: url, key, ...(priority ? { priority } : {}) });
}

async function waitForCaseOf(fileId: string, until: (c: CaseBody) => boolean = (c) => c.status === 'routed') {
  return waitFor(`case of file ${fileId}`, async () => {
    const f = await call<{ caseId: string | null; status: string; error: unknown }>(
      keys.ops!,
      `/v1/files/${fileId}`,
    );
    if (f.body.status === 'failed') throw new Error(`file ${fileId} failed: ${JSON.stringify(f.body.error)}`);
    if (!f.body.caseId) return undefined;
    const c = await call<CaseBody>(keys.ops!, `/v1/cases/${f.body.caseId}`);
    return until(c.body) ? c.body : undefined;
  });
}

describe('upload → ingest → process → route → worklist', () => {
  const samples = [
    { dir: 'imaging', kind: 'imaging', reader: 'radio' },
    { dir: 'ecg', kind: 'ecg', reader: 'cardio' },
    { dir: 'pathology', kind: 'pathology', reader: 'patho' },
  ] as const;

  test.each(samples)(
    '$dir sample reaches the $reader worklist with a thumbnail',
    async ({ dir, kind, reader }) => {
      const upload = await uploadPaths([path.join(repoRoot, 'fixtures', dir)]);
      expect(upload.files.length).toBeGreaterThan(0);
      for (const f of upload.files) expect(f.sha256).toMatch(/^[0-9a-f]{64}$/);

      const kase = await waitForCaseOf(upload.files[0]!.id);
      expect(kase.kind).toBe(kind);
      expect(kase.assignedReader?.id).toBe(reader);
      expect(kase.files.every((f) => f.status === 'processed')).toBe(true);

      const thumb = kase.artifacts.find((a) => a.name === 'thumbnail');
      expect(thumb).toBeDefined();
      const img = await call<Uint8Array>(keys[reader]!, new URL(thumb!.url).pathname);
      expect(img.status).toBe(200);
      expect(img.headers.get('content-type')).toBe(thumb!.contentType);
      const meta = await sharp(Buffer.from(img.body)).metadata();
      expect(meta.width).toBeGreaterThan(16);

      const wl = await call<{ cases: Array<{ id: string }> }>(keys[reader]!, '/v1/worklist');
      expect(wl.body.cases.map((c) => c.id)).toContain(kase.id);

      // Isolation: another clinic and readers of other specialties get 404, never the case.
      expect((await call(keys.clinicB!, `/v1/cases/${kase.id}`)).status).toBe(404);
      expect((await call(keys.clinicB!, new URL(thumb!.url).pathname)).status).toBe(404);
      const listB = await call<{ cases: Array<{ id: string }> }>(keys.clinicB!, '/v1/cases');
      expect(listB.body.cases.map((c) => c.id)).not.toContain(kase.id);
      for (const other of ['cardio', 'radio', 'patho', 'radio-abroad'].filter((r) => r !== reader)) {
        expect((await call(keys[other]!, `/v1/cases/${kase.id}`)).status).toBe(404);
        const owl = await call<{ cases: Array<{ id: string }> }>(keys[other]!, '/v1/worklist');
        expect(owl.body.cases.map((c) => c.id)).not.toContain(kase.id);
      }
      // The clinic that sent it sees it.
      expect((await call(keys.clinicA!, `/v1/cases/${kase.id}`)).status).toBe(200);
    },
  );

  test('a DICOM study sent twice joins one case, and the case is routed once', async () => {
    const first = await uploadPaths([path.join(repoRoot, 'fixtures/imaging/CT_small.dcm')]);
    const a = await waitForCaseOf(first.files[0]!.id);
    const second = await uploadPaths(
      [path.join(repoRoot, 'fixtures/imaging/CT_small.dcm')],
      keys.clinicA,
      'stat',
    );
    const b = await waitForCaseOf(
      second.files[0]!.id,
      (c) => c.files.length >= 2 && c.files.every((f) => f.status === 'processed'),
    );
    expect(b.id).toBe(a.id);
    const assignments = await ctx.db
      .selectFrom('assignments')
      .selectAll()
      .where('case_id', '=', a.id)
      .execute();
    expect(assignments).toHaveLength(1);
    const row = await ctx.db
      .selectFrom('cases')
      .select('priority')
      .where('id', '=', a.id)
      .executeTakeFirstOrThrow();
    expect(row.priority).toBe('stat');
  });

  test('bad files fail with stable codes and never block the good ones', async () => {
    const dir = path.join(scratch, 'bad');
    await rm(dir, { recursive: true, force: true });
    await import('node:fs/promises').then((fs) => fs.mkdir(dir));
    await writeFile(path.join(dir, 'notes.txt'), 'just some text, not a medical file\n');
    const dicm = Buffer.alloc(132 + 20);
    dicm.write('DICM', 128, 'latin1');
    await writeFile(path.join(dir, 'truncated.dcm'), dicm);
    await writeFile(path.join(dir, 'orphan.dat'), Buffer.alloc(64));
    const upload = await uploadPaths([dir]);
    const statuses = await waitFor('bad files to settle', async () => {
      const all = await Promise.all(
        upload.files.map((f) =>
          call<{ status: string; error: { code: string } | null }>(keys.clinicA!, `/v1/files/${f.id}`),
        ),
      );
      return all.every((r) => r.body.status === 'failed') ? all.map((r) => r.body) : undefined;
    });
    const codes = Object.fromEntries(upload.files.map((f, i) => [f.name, statuses[i]!.error?.code]));
    expect(codes).toEqual({
      'notes.txt': 'UNSUPPORTED_FORMAT',
      'orphan.dat': 'UNSUPPORTED_FORMAT',
      'truncated.dcm': 'CORRUPT_FILE',
    });
    // Bad input is not retried: each file was tried once, and its request's batch job ended without a retry.
    const rows = await ctx.db
      .selectFrom('files')
      .select(['id', 'attempts'])
      .where(
        'id',
        'in',
        upload.files.map((f) => f.id),
      )
      .execute();
    expect(rows.map((r) => r.attempts)).toEqual([1, 1, 1]);
    const completed = await ctx.queues.ingest.getCompleted();
    const batch = completed.filter((j) => upload.files.some((f) => ingestJobFileIds(j.data).includes(f.id)));
    expect(batch).toHaveLength(1);
    expect(batch[0]!.attemptsMade).toBe(1);
    expect(ingestJobFileIds(batch[0]!.data).sort()).toEqual(upload.files.map((f) => f.id).sort());
    const ops = await call<{ files: Array<{ id: string; errorCode: string }> }>(
      keys.ops!,
      '/v1/ops/files?status=failed',
    );
    expect(ops.body.files.map((f) => f.id)).toEqual(expect.arrayContaining(upload.files.map((f) => f.id)));
  });

  test('handlers are idempotent: running every step again changes nothing', async () => {
    const upload = await uploadPaths([path.join(repoRoot, 'fixtures/pathology')]);
    const kase = await waitForCaseOf(upload.files[0]!.id);
    const before = await ctx.db.selectFrom('artifacts').selectAll().where('case_id', '=', kase.id).execute();
    const jc = { ctx, log: ctx.log };
    expect(await handleIngest(jc, { fileId: upload.files[0]!.id })).toBe('SKIPPED');
    expect(await handleProcess(jc, { caseId: kase.id })).toBe('SKIPPED');
    expect(await handleRoute(jc, { caseId: kase.id })).toBe('SKIPPED');
    const after = await ctx.db.selectFrom('artifacts').selectAll().where('case_id', '=', kase.id).execute();
    expect(after.map((a) => a.id).sort()).toEqual(before.map((a) => a.id).sort());
    const assignments = await ctx.db
      .selectFrom('assignments')
      .selectAll()
      .where('case_id', '=', kase.id)
      .execute();
    expect(assignments).toHaveLength(1);
  });

  test('the sweep repairs a file whose ingest job was never enqueued', async () => {
    // Simulates a crash between the upload's commit and its enqueue: the row and object exist, no job does.
    const upload = await ctx.db
      .insertInto('uploads')
      .values({
        id: crypto.randomUUID(),
        site_id: 'clinic-a',
        priority: 'routine',
        notes: null,
        request_id: null,
      })
      .returning('id')
      .executeTakeFirstOrThrow();
    const fileId = crypto.randomUUID();
    const bytes = await import('node:fs/promises').then((fs) =>
      fs.readFile(path.join(repoRoot, 'fixtures/imaging/CT_small.dcm')),
    );
    const key = `sites/clinic-a/uploads/${upload.id}/${fileId}`;
    await ctx.storage.put(key, bytes);
    await ctx.db
      .insertInto('files')
      .values({
        id: fileId,
        upload_id: upload.id,
        site_id: 'clinic-a',
        name: 'lost.dcm',
        object_key: key,
        sha256: 'x'.repeat(64),
        bytes: bytes.length,
        content_type: null,
      })
      .execute();
    const kase = await waitForCaseOf(fileId, (c) =>
      c.files.some((f) => f.id === fileId && f.status === 'processed'),
    );
    expect(kase.status).toBe('routed');
  });
});

describe('API contract', () => {
  test('auth: no key is 401, a wrong role is 403, both with a stable error body', async () => {
    const none = await call<{ error: { code: string } }>(null, '/v1/cases');
    expect(none.status).toBe(401);
    expect(none.body.error.code).toBe('UNAUTHORIZED');
    const wrong = await call<{ error: { code: string } }>(keys.radio!, '/v1/ops/queues');
    expect(wrong.status).toBe(403);
    expect(wrong.body.error.code).toBe('FORBIDDEN');
    const bad = await call<{ error: { code: string } }>('trk_clinic_nope', '/v1/cases');
    expect(bad.status).toBe(401);
  });

  test('ops sees per-queue counts', async () => {
    const res = await call<{ queues: Record<string, { waiting: number; failed: number }> }>(
      keys.ops!,
      '/v1/ops/queues',
    );
    expect(res.status).toBe(200);
    expect(Object.keys(res.body.queues).sort()).toEqual([...QUEUE_NAMES].sort());
    expect(res.body.queues.ingest!.failed).toBeGreaterThanOrEqual(0);
  });

  test('readyz checks PostgreSQL, Redis and storage; OpenAPI is served', async () => {
    const ready = await call<{ status: string; checks: Record<string, string> }>(null, '/readyz');
    expect(ready.status).toBe(200);
    expect(ready.body.checks).toEqual({ postgres: 'ok', redis: 'ok', storage: 'ok' });
    const spec = await call<{ openapi: string; paths: Record<string, unknown> }>(null, '/docs/json');
    expect(spec.body.openapi).toMatch(/^3\./);
    expect(Object.keys(spec.body.paths)).toEqual(
      expect.arrayContaining(['/v1/uploads', '/v1/worklist', '/v1/cases/{id}']),
    );
  });

  test('an unknown case id is 404 with the error body', async () => {
    const res = await call<{ error: { code: string } }>(keys.ops!, `/v1/cases/${crypto.randomUUID()}`);
    expect(res.status).toBe(404);
    expect(res.body.error.code).toBe('NOT_FOUND');
  });
});
