import path from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import type { App } from '../../src/api/build-app.js';
import { startApi } from '../../src/api/start-api.js';
import { addReader, addSite, createKey } from '../../src/cli/admin-commands.js';
import { collectBatches, uploadBatch } from '../../src/client/upload-client.js';
import { type RunningWorkers, runWorkers } from '../../src/pipeline/run-worker.js';
import { corpusDir, hasCorpus, repoRoot } from '../corpus.js';
import { apiClient, waitFor } from '../helpers/api-client.js';
import { createTestContext } from '../helpers/test-context.js';

let t: Awaited<ReturnType<typeof createTestContext>>;
let app: App;
let url: string;
let workers: RunningWorkers;
let call: ReturnType<typeof apiClient>;
const keys: Record<string, string> = {};

beforeAll(async () => {
  t = await createTestContext();
  await addSite(t.ctx.db, { id: 'lab', jurisdiction: 'KE' });
  await addSite(t.ctx.db, { id: 'other-lab', jurisdiction: 'KE' });
  await addReader(t.ctx.db, { id: 'patho', specialties: 'pathology', jurisdictions: 'KE' });
  keys.lab = (await createKey(t.ctx.db, { role: 'clinic', site: 'lab' })).key;
  keys.other = (await createKey(t.ctx.db, { role: 'clinic', site: 'other-lab' })).key;
  keys.patho = (await createKey(t.ctx.db, { role: 'reader', reader: 'patho' })).key;
  workers = await runWorkers(t.ctx);
  ({ app, url } = await startApi(t.ctx, 0));
  call = apiClient(url);
});

afterAll(async () => {
  await app?.close();
  await workers?.close();
  await t?.dispose();
});

async function uploadAndRoute(dir: string) {
  const [batch] = await collectBatches([dir]);
  const res = await uploadBatch(batch!, { server: url, key: keys.lab! });
  return waitFor(`${dir} routed`, async () => {
    const f = await t.ctx.db
      .selectFrom('files')
      .select('case_id')
      .where('id', '=', res.files[0]!.id)
      .executeTakeFirst();
    if (!f?.case_id) return undefined;
    const c = await t.ctx.db.selectFrom('cases').selectAll().where('id', '=', f.case_id).executeTakeFirst();
    return c?.status === 'routed' ? c : undefined;
  });
}

/** Reads Width/Height/TileSize from a DZI descriptor. */
function parseDzi(xml: string) {
  const n = (name: string) => Number(new RegExp(`${name}="(\\d+)"`).exec(xml)?.[1]);
  return { width: n('Width'), height: n('Height'), tileSize: n('TileSize'), overlap: n('Overlap') };
}

async function checkDeepZoom(caseId: string, slideId: string, expected: { width: number; height: number }) {
  const dzi = await call<Uint8Array>(keys.patho!, `/v1/cases/${caseId}/slides/${slideId}.dzi`);
  expect(dzi.status).toBe(200);
  expect(dzi.headers.get('content-type')).toContain('xml');
  const d = parseDzi(Buffer.from(dzi.body).toString());
  expect({ width: d.width, height: d.height }).toEqual(expected);
  const maxLevel = Math.ceil(Math.log2(Math.max(d.width, d.height)));
  // The top level's first tile is tileSize + overlap on each inner edge; level 0 is a single pixel.
  const top = await call<Uint8Array>(
    keys.patho!,
    `/v1/cases/${caseId}/slides/${slideId}_files/${maxLevel}/0_0.jpeg`,
  );
  expect(top.status).toBe(200);
  expect(top.headers.get('content-type')).toBe('image/jpeg');
  const meta = await sharp(Buffer.from(top.body)).metadata();
  expect(meta.width).toBe(Math.min(d.width, d.tileSize + d.overlap));
  const single = await call<Uint8Array>(
    keys.patho!,
    `/v1/cases/${caseId}/slides/${slideId}_files/0/0_0.jpeg`,
  );
  expect((await sharp(Buffer.from(single.body)).metadata()).width).toBe(1);
  // Outside the grid, another clinic, a bad id: 404 with the error body.
  expect(
    (await call(keys.patho!, `/v1/cases/${caseId}/slides/${slideId}_files/${maxLevel}/999_999.jpeg`)).status,
  ).toBe(404);
  expect((await call(keys.other!, `/v1/cases/${caseId}/slides/${slideId}.dzi`)).status).toBe(404);
  expect((await call(keys.patho!, `/v1/cases/${caseId}/slides/not-a-slide.dzi`)).status).toBe(404);
}

describe('slides are viewable tile by tile', () => {
  test('an Aperio SVS: descriptor and tiles served on demand', async () => {
    const kase = await uploadAndRoute(path.join(repoRoot, 'fixtures/pathology'));
    const file = await t.ctx.db
      .selectFrom('files')
      .select('id')
      .where('case_id', '=', kase.id)
      .executeTakeFirstOrThrow();
    await checkDeepZoom(kase.id, file.id, { width: 2220, height: 2967 });
  });

  test.runIf(hasCorpus)('a DICOM WSI series: one slide, thumbnailed from its pyramid, viewable', async () => {
    const kase = await uploadAndRoute(path.join(corpusDir, 'wsi/dicom-wsi/BPAEC'));
    expect(kase.kind).toBe('pathology');
    const artifacts = await t.ctx.db
      .selectFrom('artifacts')
      .selectAll()
      .where('case_id', '=', kase.id)
      .execute();
    const slideArtifact = artifacts.find((a) => a.name.startsWith('slide-'));
    expect(slideArtifact).toBeDefined();
    expect(artifacts.some((a) => a.name === 'thumbnail')).toBe(true);
    const slideId = slideArtifact!.name.replace(/^slide-/, '').replace(/\.webp$/, '');
    const files = await t.ctx.db
      .selectFrom('files')
      .select(['status'])
      .where('case_id', '=', kase.id)
      .execute();
    expect(files.every((f) => f.status === 'processed')).toBe(true);
    await checkDeepZoom(kase.id, slideId, { width: 3072, height: 2304 });
  });
});
