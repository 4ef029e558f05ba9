import { readdirSync, statSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import type { App } from '../../src/api/build-app.js';
import { startApi } from '../../src/api/start-api.js';
import { addReader, addSite, createKey } from '../../src/cli/admin-commands.js';
import { uploadBatch } from '../../src/client/upload-client.js';
import { QUEUE_NAMES } from '../../src/pipeline/queues.js';
import { type RunningWorkers, runWorkers } from '../../src/pipeline/run-worker.js';
import { corpusDir, hasCorpus, loadTruth } from '../corpus.js';
import { waitFor } from '../helpers/api-client.js';
import { createTestContext } from '../helpers/test-context.js';

/** Every folder of the corpus that holds files is sent as one upload, as a clinic would send a study or record. */
function corpusBatches() {
  const batches: Array<{ label: string; files: Array<{ path: string; name: string; bytes: number }> }> = [];
  const walk = (dir: string) => {
    const entries = readdirSync(dir, { withFileTypes: true }).sort((a, b) => a.name.localeCompare(b.name));
    const files = entries
      .filter((e) => e.isFile() && !['TRUTH.json', 'MANIFEST.tsv', 'README.md'].includes(e.name))
      .map((e) => ({
        path: path.join(dir, e.name),
        name: e.name,
        bytes: statSync(path.join(dir, e.name)).size,
      }));
    if (files.length > 0) batches.push({ label: path.relative(corpusDir, dir), files });
    for (const e of entries) if (e.isDirectory()) walk(path.join(dir, e.name));
  };
  walk(corpusDir);
  return batches;
}

describe.runIf(hasCorpus)('the whole corpus through the API and the workers', () => {
  let t: Awaited<ReturnType<typeof createTestContext>>;
  let app: App;
  let url: string;
  let workers: RunningWorkers;
  let clinicKey: string;

  beforeAll(async () => {
    t = await createTestContext();
    await addSite(t.ctx.db, { id: 'corpus-clinic', jurisdiction: 'KE' });
    for (const s of ['cardiology', 'radiology', 'pathology']) {
      await addReader(t.ctx.db, { id: `r-${s}`, specialties: s, jurisdictions: 'KE', maxActive: 10_000 });
    }
    clinicKey = (await createKey(t.ctx.db, { role: 'clinic', site: 'corpus-clinic' })).key;
    workers = await runWorkers(t.ctx);
    ({ app, url } = await startApi(t.ctx, 0));
  });

  afterAll(async () => {
    await app?.close();
    await workers?.close();
    await t?.dispose();
  });

  test('every file ends processed or failed with a stable code; no row lost, no job left retrying', async () => {
    const batches = corpusBatches();
    const sent: Array<{ id: string; rel: string }> = [];
    for (const batch of batches) {
      const result = await uploadBatch(batch, { server: url, key: clinicKey });
      result.files.forEach((f, i) => {
        sent.push({ id: f.id, rel: path.relative(corpusDir, batch.files[i]!.path) });
      });
    }
    expect(sent.length).toBeGreaterThan(100);

    const rows = await waitFor(
      'every corpus file to settle',
      async () => {
        const all = await t.ctx.db.selectFrom('files').selectAll().execute();
        return all.length === sent.length &&
          all.every((f) => f.status === 'processed' || f.status === 'failed')
          ? all
          : undefined;
      },
      240_000,
    );
    const byId = new Map(rows.map((r) => [r.id, r]));
    const truth = loadTruth();
    const problems: string[] = [];
    for (const { id, rel } of sent) {
      const row = byId.get(id);
      if (!row) {
        problems.push(`${rel}: row lost`);
        continue;
      }
      if (row.status === 'failed' && !['UNSUPPORTED_FORMAT', 'CORRUPT_FILE'].includes(row.error_code ?? '')) {
        problems.push(`${rel}: failed with ${row.error_code}: ${row.error_message}`);
      }
      // A DICOM file that dcmdump reads must at least be parsed and grouped, even where it cannot be rendered yet.
      const tr = truth[rel];
      if (tr?.kind === 'dicom' && tr.dcmdump_rc === 0 && !tr.dcmdump_fallback_options && !row.ingested_at) {
        problems.push(`${rel}: dcmdump reads it but ingest failed: ${row.error_code} ${row.error_message}`);
      }
      if (tr?.kind === 'wsi' && tr.openslide_rc === 0 && (tr.pixel_read_check as { rc?: number })?.rc === 0) {
        if (row.status !== 'processed')
          problems.push(`${rel}: OpenSlide reads it but it ${row.status}: ${row.error_message}`);
      }
    }
    expect(problems).toEqual([]);

    // The pipeline's queues drained (SLA timers and sweeps are delayed on purpose); no job retried past its attempts.
    await waitFor('queues to drain', async () => {
      const counts = await Promise.all(
        (['ingest', 'process', 'route'] as const).map((n) =>
          t.ctx.queues[n].getJobCounts('waiting', 'active', 'delayed'),
        ),
      );
      return counts.every((c) => (c.waiting ?? 0) + (c.active ?? 0) + (c.delayed ?? 0) === 0)
        ? true
        : undefined;
    });
    for (const name of QUEUE_NAMES) {
      for (const job of await t.ctx.queues[name].getFailed()) {
        expect(job.attemptsMade).toBeLessThanOrEqual(job.opts.attempts ?? 1);
        expect(job.failedReason).toMatch(/^(UNSUPPORTED_FORMAT|CORRUPT_FILE): /);
      }
    }

    // Every case with a processed file reached a worklist; the others failed with their files' reasons.
    const cases = await t.ctx.db.selectFrom('cases').select(['id', 'status']).execute();
    expect(cases.filter((c) => c.status !== 'routed' && c.status !== 'failed')).toEqual([]);
    const processed = rows.filter((r) => r.status === 'processed').length;
    expect(processed).toBeGreaterThan(sent.length / 2);
  }, 300_000);
});
