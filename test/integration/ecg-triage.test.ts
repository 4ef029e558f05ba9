import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, expect, test } from 'vitest';
import type { App } from '../../src/api/build-app.js';
import { startApi } from '../../src/api/start-api.js';
import { addReader, addSite, createKey } from '../../src/cli/admin-commands.js';
import { collectBatches, uploadBatch } from '../../src/client/upload-client.js';
import { type RunningWorkers, runWorkers } from '../../src/pipeline/run-worker.js';
import { apiClient, waitFor } from '../helpers/api-client.js';
import { syntheticEcg, TWELVE } from '../helpers/ecg-synthetic.js';
import { createTestContext } from '../helpers/test-context.js';

let t: Awaited<ReturnType<typeof createTestContext>>;
let app: App;
let url: string;
let workers: RunningWorkers;
let scratch: string;
let clinicKey: string;
let readerKey: string;

beforeAll(async () => {
  t = await createTestContext();
  await addSite(t.ctx.db, { id: 'ecg-site', jurisdiction: 'KE' });
  await addReader(t.ctx.db, { id: 'cardio', specialties: 'cardiology', jurisdictions: 'KE' });
  clinicKey = (await createKey(t.ctx.db, { role: 'clinic', site: 'ecg-site' })).key;
  readerKey = (await createKey(t.ctx.db, { role: 'reader', reader: 'cardio' })).key;
  workers = await runWorkers(t.ctx);
  ({ app, url } = await startApi(t.ctx, 0));
  scratch = await mkdtemp(path.join(tmpdir(), 'teleread-ecg-'));
});

afterAll(async () => {
  await app?.close();
  await workers?.close();
  await t?.dispose();
  await rm(scratch, { recursive: true, force: true });
});

/** Writes a 12-lead WFDB format-16 record (gain 1000 adu/mV, so one adu is one µV). */
async function writeRecord(dir: string, bpm: number) {
  const ecg = syntheticEcg(TWELVE, { fs: 500, seconds: 10, bpm, seed: 7 });
  const n = ecg.sampleCount;
  const dat = new Int16Array(n * ecg.leads.length);
  for (let i = 0; i < n; i++) {
    for (const [j, lead] of ecg.leads.entries())
      dat[i * ecg.leads.length + j] = Math.round(lead.samplesUv[i] ?? 0);
  }
  const header = [
    `rec ${ecg.leads.length} 500 ${n}`,
    ...ecg.leads.map((l) => `rec.dat 16 1000/mV 16 0 0 0 0 ${l.name}`),
  ].join('\n');
  await writeFile(path.join(dir, 'rec.hea'), `${header}\n`);
  await writeFile(path.join(dir, 'rec.dat'), Buffer.from(dat.buffer));
}

test.each([
  ['bradycardia at 30/min', 30, 'stat', 'BRADYCARDIA'],
  ['a normal rate of 70/min', 70, 'routine', null],
])('%s: the case priority and flags follow ECG triage', async (_label, bpm, priority, flag) => {
  const dir = await mkdtemp(path.join(scratch, 'rec-'));
  await writeRecord(dir, bpm);
  const [batch] = await collectBatches([dir]);
  const res = await uploadBatch(batch!, { server: url, key: clinicKey });
  const kase = await waitFor('the ECG case to be routed', async () => {
    const f = await t.ctx.db
      .selectFrom('files')
      .select('case_id')
      .where('id', '=', res.files[0]!.id)
      .executeTakeFirst();
    if (!f?.case_id) return undefined;
    const c = await t.ctx.db.selectFrom('cases').selectAll().where('id', '=', f.case_id).executeTakeFirst();
    return c?.status === 'routed' ? c : undefined;
  });
  expect(kase.priority).toBe(priority);
  if (flag) {
    expect(kase.flags).toContain(flag);
    expect(kase.priority_reason).toMatch(/\d/);
  } else {
    expect(kase.flags).toEqual([]);
  }
  // The page is stored as the PNG thumbnail and as SVG for the viewer, from one layout.
  const artifacts = await t.ctx.db
    .selectFrom('artifacts')
    .selectAll()
    .where('case_id', '=', kase.id)
    .execute();
  const svg = artifacts.find((a) => a.name.endsWith('.svg'));
  expect(svg?.content_type).toBe('image/svg+xml');
  expect(Buffer.from(await t.ctx.storage.getBytes(svg!.object_key)).toString()).toContain('<svg');
  expect(artifacts.find((a) => a.name === 'thumbnail')?.content_type).toBe('image/png');
  // The reader's worklist shows it, stat cases first.
  const wl = await apiClient(url)<{ cases: Array<{ id: string; priority: string }> }>(
    readerKey,
    '/v1/worklist',
  );
  expect(wl.body.cases.map((c) => c.id)).toContain(kase.id);
  expect(wl.body.cases[0]!.priority).toBe('stat');
});

test('a site records its mains frequency for the notch filter; anything but 50 or 60 is refused', async () => {
  await addSite(t.ctx.db, { id: 'ecg-site-60', jurisdiction: 'US', mains: '60' });
  const row = await t.ctx.db
    .selectFrom('sites')
    .select('mains_hz')
    .where('id', '=', 'ecg-site-60')
    .executeTakeFirstOrThrow();
  expect(row.mains_hz).toBe(60);
  await expect(
    addSite(t.ctx.db, { id: 'ecg-site-55', jurisdiction: 'US', mains: '55' }),
  ).rejects.toMatchObject({
    code: 'VALIDATION_FAILED',
  });
  await addSite(t.ctx.db, { id: 'ecg-site-60', jurisdiction: 'US', mains: '' });
  const cleared = await t.ctx.db
    .selectFrom('sites')
    .select('mains_hz')
    .where('id', '=', 'ecg-site-60')
    .executeTakeFirstOrThrow();
  expect(cleared.mains_hz).toBeNull();
});
