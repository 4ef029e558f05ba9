import { copyFile, mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { collectBatches, uploadBatch } from '../../src/client/upload-client.js';
import { createDatabase, type Db } from '../../src/db/database.js';
import { ingestJobFileIds } from '../../src/pipeline/queues.js';
import { repoRoot } from '../corpus.js';
import { apiClient, waitFor } from '../helpers/api-client.js';
import {
  freePort,
  runTeleread,
  spawnTeleread,
  type TelereadProcess,
  waitForHttp,
} from '../helpers/processes.js';
import { createTestEnv, type TestEnv } from '../helpers/test-context.js';

/**
 * The deployment shape: `bin/teleread api` and `bin/teleread worker` as separate processes on a new database,
 * set up through the CLI. A worker is killed with SIGKILL in the middle of its jobs; a second worker must finish
 * them, and every case must be routed exactly once.
 */
describe('api and workers as separate processes', () => {
  let env: TestEnv;
  let vars: Record<string, string>;
  let api: TelereadProcess;
  let url: string;
  let db: Db;
  let redis: Redis;
  let ingestQueue: Queue;
  let scratch: string;
  const started: TelereadProcess[] = [];
  const keys: Record<string, string> = {};

  beforeAll(async () => {
    env = await createTestEnv({
      JOB_LOCK_SECONDS: '2',
      INGEST_CONCURRENCY: '1',
      SWEEP_INTERVAL_SECONDS: '2',
      STUCK_AFTER_SECONDS: '4',
      LOG_LEVEL: 'warn',
    });
    const port = await freePort();
    vars = { ...env.env, PORT: String(port) };
    url = `http://127.0.0.1:${port}`;
    api = spawnTeleread(['api'], vars);
    started.push(api);
    await waitForHttp(`${url}/readyz`);

    await runTeleread(['sites', 'add', 'north', '--jurisdiction', 'KE'], vars);
    await runTeleread(['sites', 'add', 'south', '--jurisdiction', 'KE'], vars);
    for (const [id, specialty] of [
      ['cardio', 'cardiology'],
      ['radio', 'radiology'],
      ['patho', 'pathology'],
    ] as const) {
      await runTeleread(['readers', 'add', id, '--specialties', specialty, '--jurisdictions', 'KE'], vars);
      keys[id] = (await runTeleread(['keys', 'create', '--role', 'reader', '--reader', id], vars)).trim();
    }
    keys.north = (await runTeleread(['keys', 'create', '--role', 'clinic', '--site', 'north'], vars)).trim();
    keys.south = (await runTeleread(['keys', 'create', '--role', 'clinic', '--site', 'south'], vars)).trim();
    keys.ops = (await runTeleread(['keys', 'create', '--role', 'ops'], vars)).trim();

    db = createDatabase(env.config.databaseUrl, { max: 2 });
    redis = new Redis(env.config.redisUrl, { maxRetriesPerRequest: null });
    ingestQueue = new Queue('ingest', { connection: redis, prefix: env.config.queuePrefix });
    scratch = await mkdtemp(path.join(tmpdir(), 'teleread-e2e-'));
  }, 120_000);

  afterAll(async () => {
    for (const p of started) if (p.child.exitCode === null) p.child.kill('SIGKILL');
    await ingestQueue?.obliterate({ force: true }).catch(() => undefined);
    await ingestQueue?.close();
    redis?.disconnect();
    await db?.destroy();
    await env?.dispose();
    await rm(scratch, { recursive: true, force: true });
  });

  test('a worker killed mid-job is replaced; every file ends processed and every case is routed once', async () => {
    // Enough DICOM instances that the first worker is certainly busy when it is killed.
    const study = path.join(scratch, 'study');
    await mkdir(study);
    for (let i = 0; i < 150; i++) {
      await copyFile(
        path.join(repoRoot, 'fixtures/imaging/CT_small.dcm'),
        path.join(study, `IM${String(i).padStart(4, '0')}`),
      );
    }
    const worker1 = spawnTeleread(['worker'], vars);
    started.push(worker1);

    const batches = await collectBatches([
      study,
      path.join(repoRoot, 'fixtures/ecg'),
      path.join(repoRoot, 'fixtures/pathology'),
    ]);
    const uploaded: string[] = [];
    for (const batch of batches) {
      const result = await uploadBatch(batch, { server: url, key: keys.north! });
      uploaded.push(...result.files.map((f) => f.id));
    }

    // Kill the first worker once it has done some work and while it holds an active job.
    const activeAtKill = await waitFor(
      'the first worker to be mid-job',
      async () => {
        const done = await db.selectFrom('files').select('id').where('ingested_at', 'is not', null).execute();
        if (done.length < 10) return undefined;
        const active = await ingestQueue.getActive();
        return active.length > 0 ? active.flatMap((j) => ingestJobFileIds(j.data)) : undefined;
      },
      60_000,
    );
    worker1.child.kill('SIGKILL');
    expect(await worker1.exited).toBe('SIGKILL');
    const ingestedAtKill = await db
      .selectFrom('files')
      .select('id')
      .where('ingested_at', 'is not', null)
      .execute();
    expect(ingestedAtKill.length).toBeLessThan(uploaded.length);

    const worker2 = spawnTeleread(['worker'], vars);
    started.push(worker2);
    const files = await waitFor(
      'every file to be processed by the second worker',
      async () => {
        const rows = await db.selectFrom('files').select(['id', 'status', 'error_code']).execute();
        return rows.length === uploaded.length &&
          rows.every((r) => r.status === 'processed' || r.status === 'failed')
          ? rows
          : undefined;
      },
      90_000,
    );
    expect(files.filter((f) => f.status === 'failed')).toEqual([]);
    for (const id of activeAtKill) expect(files.find((f) => f.id === id)?.status).toBe('processed');

    const cases = await waitFor('every case to be routed', async () => {
      const rows = await db.selectFrom('cases').select(['id', 'kind', 'status']).execute();
      return rows.length === 3 && rows.every((c) => c.status === 'routed') ? rows : undefined;
    });
    const assignments = await db.selectFrom('assignments').select(['case_id', 'reader_id']).execute();
    expect(assignments).toHaveLength(3);
    const readerOf = Object.fromEntries(
      cases.map((c) => [c.kind, assignments.find((a) => a.case_id === c.id)?.reader_id]),
    );
    expect(readerOf).toEqual({ imaging: 'radio', ecg: 'cardio', pathology: 'patho' });

    // Through the API: each reader sees its case with a thumbnail; the other clinic and other readers do not.
    const call = apiClient(url);
    for (const c of cases) {
      const reader = readerOf[c.kind]!;
      const detail = await call<{ artifacts: Array<{ name: string; url: string }> }>(
        keys[reader]!,
        `/v1/cases/${c.id}`,
      );
      expect(detail.status).toBe(200);
      const thumb = detail.body.artifacts.find((a) => a.name === 'thumbnail');
      const img = await call(keys[reader]!, new URL(thumb!.url).pathname);
      expect(img.status).toBe(200);
      expect(img.headers.get('content-type')).toMatch(/^image\//);
      expect((await call(keys.south!, `/v1/cases/${c.id}`)).status).toBe(404);
      for (const other of ['cardio', 'radio', 'patho'].filter((r) => r !== reader)) {
        expect((await call(keys[other]!, `/v1/cases/${c.id}`)).status).toBe(404);
      }
    }

    // SIGTERM drains and exits cleanly.
    worker2.child.kill('SIGTERM');
    api.child.kill('SIGTERM');
    expect(await worker2.exited).toBe(0);
    expect(await api.exited).toBe(0);
  }, 240_000);
});
