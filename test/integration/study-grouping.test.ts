import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import type { App } from '../../src/api/build-app.js';
import { startApi } from '../../src/api/start-api.js';
import { addReader, addSite, createKey } from '../../src/cli/admin-commands.js';
import { uploadBatch } from '../../src/client/upload-client.js';
import type { Context } from '../../src/context.js';
import { type RunningWorkers, runWorkers } from '../../src/pipeline/run-worker.js';
import { apiClient, waitFor } from '../helpers/api-client.js';
import { imageElements, writeDicom } from '../helpers/dicom-writer.js';
import { createTestContext } from '../helpers/test-context.js';

const STUDY = '2.25.77001';

/** One CT instance of STUDY with its own SOP Instance UID and a gradient that differs per instance. */
function ctInstance(n: number, series = '2.25.77002', frames = 1): Uint8Array {
  const rows = 32;
  const columns = 32;
  const pixels = new Int16Array(rows * columns * frames);
  for (let i = 0; i < pixels.length; i++)
    pixels[i] = (i % columns) * 40 + n * 10 + Math.floor(i / (rows * columns)) * 300 - 1000;
  return writeDicom(
    imageElements({
      rows,
      columns,
      bitsAllocated: 16,
      pixelRepresentation: 1,
      pixelData: pixels,
      ...(frames > 1 ? { numberOfFrames: frames } : {}),
      extra: [
        { tag: 0x00080016, vr: 'UI', value: '1.2.840.10008.5.1.4.1.1.2' },
        { tag: 0x00080018, vr: 'UI', value: `2.25.77100${n}` },
        { tag: 0x00080060, vr: 'CS', value: 'CT' },
        { tag: 0x0020000d, vr: 'UI', value: STUDY },
        { tag: 0x0020000e, vr: 'UI', value: series },
        { tag: 0x00200013, vr: 'IS', value: String(n) },
        { tag: 0x00281052, vr: 'DS', value: '0' },
        { tag: 0x00281053, vr: 'DS', value: '1' },
      ],
    }),
    { encoding: 'explicit-le' },
  );
}

let t: Awaited<ReturnType<typeof createTestContext>>;
let ctx: Context;
let app: App;
let url: string;
let workers: RunningWorkers;
let scratch: string;
let clinicKey: string;
let readerKey: string;
let call: ReturnType<typeof apiClient>;

beforeAll(async () => {
  t = await createTestContext({ STUDY_STABLE_SECONDS: '2' });
  ctx = t.ctx;
  await addSite(ctx.db, { id: 'site-s', jurisdiction: 'KE' });
  await addReader(ctx.db, { id: 'rad-1', specialties: 'radiology', jurisdictions: 'KE' });
  await addReader(ctx.db, { id: 'rad-2', specialties: 'radiology', jurisdictions: 'KE' });
  clinicKey = (await createKey(ctx.db, { role: 'clinic', site: 'site-s' })).key;
  workers = await runWorkers(ctx);
  ({ app, url } = await startApi(ctx, 0));
  call = apiClient(url);
  scratch = await mkdtemp(path.join(tmpdir(), 'teleread-study-'));
});

afterAll(async () => {
  await app?.close();
  await workers?.close();
  await t?.dispose();
  await rm(scratch, { recursive: true, force: true });
});

async function send(name: string, bytes: Uint8Array) {
  const file = path.join(scratch, name);
  await writeFile(file, bytes);
  const res = await uploadBatch(
    { label: name, files: [{ path: file, name, bytes: bytes.length }] },
    { server: url, key: clinicKey },
  );
  return res.files[0]!.id;
}

const caseOfStudy = () =>
  ctx.db.selectFrom('cases').selectAll().where('study_instance_uid', '=', STUDY).executeTakeFirst();

describe('a study arriving over several uploads', () => {
  test('is processed once it is stable, routed once, and late or duplicate instances do not re-route', async () => {
    await send('i1.dcm', ctInstance(1));
    await sleep(1000);
    const second = await send('i2.dcm', ctInstance(2));
    await waitFor('both instances ingested', async () => {
      const rows = await ctx.db
        .selectFrom('files')
        .select('id')
        .where('ingested_at', 'is not', null)
        .execute();
      return rows.length === 2 ? true : undefined;
    });
    // Within the stability window of the last instance, the case waits.
    const early = await caseOfStudy();
    expect(early?.processed_at).toBeNull();
    expect(early?.status).toBe('processing');

    const routed = await waitFor('the study to be routed', async () => {
      const c = await caseOfStudy();
      return c?.status === 'routed' ? c : undefined;
    });
    const filesAtRouting = await ctx.db
      .selectFrom('files')
      .select(['status'])
      .where('case_id', '=', routed.id)
      .execute();
    expect(filesAtRouting.map((f) => f.status)).toEqual(['processed', 'processed']);

    // A late instance joins the routed case without a second routing.
    const late = await send('i3.dcm', ctInstance(3));
    await waitFor('the late instance to be processed', async () => {
      const f = await ctx.db
        .selectFrom('files')
        .select(['status', 'case_id'])
        .where('id', '=', late)
        .executeTakeFirst();
      return f?.status === 'processed' ? f : undefined;
    });
    const lateFile = await ctx.db
      .selectFrom('files')
      .select('case_id')
      .where('id', '=', late)
      .executeTakeFirstOrThrow();
    expect(lateFile.case_id).toBe(routed.id);
    // The series picture stays its middle instance (of 1, 2, 3: the second), not the late one.
    const seriesThumbnail = await ctx.db
      .selectFrom('artifacts')
      .select(['file_id'])
      .where('case_id', '=', routed.id)
      .where('name', 'like', 'series-%')
      .execute();
    expect(seriesThumbnail).toEqual([{ file_id: second }]);

    // The same instance again (same SOP Instance UID, same bytes) is stored once.
    const dup = await send('i3-again.dcm', ctInstance(3));
    const dupRow = await waitFor('the duplicate to be recognised', async () => {
      const f = await ctx.db.selectFrom('files').selectAll().where('id', '=', dup).executeTakeFirst();
      return f?.ingested_at ? f : undefined;
    });
    expect(dupRow.duplicate_of).toBe(late);
    expect(dupRow.status).toBe('processed');
    const original = await ctx.db
      .selectFrom('files')
      .select('object_key')
      .where('id', '=', late)
      .executeTakeFirstOrThrow();
    expect(dupRow.object_key).toBe(original.object_key);
    expect(await ctx.storage.head(`sites/site-s/uploads/${dupRow.upload_id}/${dup}`)).toBeNull();

    await sleep(2500);
    const assignments = await ctx.db
      .selectFrom('assignments')
      .selectAll()
      .where('case_id', '=', routed.id)
      .execute();
    expect(assignments).toHaveLength(1);
    readerKey = (await createKey(ctx.db, { role: 'reader', reader: assignments[0]!.reader_id })).key;
  });

  test('the viewer gets any frame rendered, windowed, and cached', async () => {
    const kase = (await caseOfStudy())!;
    await send('multi.dcm', ctInstance(9, '2.25.77003', 3));
    await waitFor('the multi-frame instance', async () => {
      const f = await ctx.db
        .selectFrom('files')
        .select('status')
        .where('sop_instance_uid', '=', '2.25.771009')
        .executeTakeFirst();
      return f?.status === 'processed' ? f : undefined;
    });
    const base = `/v1/cases/${kase.id}/instances/2.25.771009/frames`;
    const first = await call<Uint8Array>(readerKey, `${base}/1/rendered?size=64`);
    expect(first.status).toBe(200);
    expect(first.headers.get('content-type')).toBe('image/png');
    expect((await sharp(Buffer.from(first.body)).metadata()).width).toBe(32);
    const third = await call<Uint8Array>(readerKey, `${base}/3/rendered?size=64&window=0,100`);
    expect(third.status).toBe(200);
    expect(Buffer.from(third.body).equals(Buffer.from(first.body))).toBe(false);
    const webp = await call<Uint8Array>(readerKey, `${base}/1/rendered?size=64`, {
      headers: { accept: 'image/webp' },
    });
    expect(webp.headers.get('content-type')).toBe('image/webp');

    const cached: string[] = [];
    for await (const o of ctx.storage.list(`cases/${kase.id}/rendered/`)) cached.push(o.key);
    expect(cached.length).toBe(3);
    const again = await call<Uint8Array>(readerKey, `${base}/1/rendered?size=64`);
    expect(Buffer.from(again.body).equals(Buffer.from(first.body))).toBe(true);

    expect((await call(readerKey, `${base}/4/rendered`)).status).toBe(404);
    expect((await call(readerKey, `${base}/1/rendered?window=abc`)).status).toBe(400);
    expect(
      (await call(clinicKey, `/v1/cases/${crypto.randomUUID()}/instances/1.2/frames/1/rendered`)).status,
    ).toBe(404);
  });

  test('a report or presentation state joins the case, processed without a picture; a DICOMDIR is refused', async () => {
    const kase = (await caseOfStudy())!;
    const noPixels = (sopClass: string, modality: string, series: string, sop: string) =>
      writeDicom([
        { tag: 0x00080016, vr: 'UI', value: sopClass },
        { tag: 0x00080018, vr: 'UI', value: sop },
        { tag: 0x00080060, vr: 'CS', value: modality },
        { tag: 0x0020000d, vr: 'UI', value: STUDY },
        { tag: 0x0020000e, vr: 'UI', value: series },
      ]);
    // A Basic Text SR in a series of its own, a Grayscale Softcopy Presentation State in another.
    const report = await send(
      'sr.dcm',
      noPixels('1.2.840.10008.5.1.4.1.1.88.11', 'SR', '2.25.77005', '2.25.7715'),
    );
    const state = await send(
      'pr.dcm',
      noPixels('1.2.840.10008.5.1.4.1.1.11.1', 'PR', '2.25.77006', '2.25.7716'),
    );
    const rows = await waitFor('both objects processed', async () => {
      const found = await ctx.db.selectFrom('files').selectAll().where('id', 'in', [report, state]).execute();
      return found.every((f) => f.processed_at) && found.length === 2 ? found : undefined;
    });
    for (const f of rows) {
      expect(f).toMatchObject({ case_id: kase.id, status: 'processed', error_code: null });
      expect(f.metadata).toMatchObject({ hasPixelData: false });
    }
    const pictures = await ctx.db
      .selectFrom('artifacts')
      .select('name')
      .where('file_id', 'in', [report, state])
      .execute();
    expect(pictures).toEqual([]);

    // A CD's index, sent alone: refused with its reason, and no case made for it.
    const index = writeDicom(
      [
        { tag: 0x00041130, vr: 'CS', value: 'CD1' },
        { tag: 0x00041200, vr: 'UL', value: 0 },
        { tag: 0x00041202, vr: 'UL', value: 0 },
        { tag: 0x00041212, vr: 'US', value: 0 },
        { tag: 0x00041220, vr: 'SQ', value: [] },
      ],
      { sopClassUid: '1.2.840.10008.1.3.10', sopInstanceUid: '2.25.7717' },
    );
    const dicomdir = await send('DICOMDIR', index);
    const refused = await waitFor('the DICOMDIR to be refused', async () => {
      const f = await ctx.db.selectFrom('files').selectAll().where('id', '=', dicomdir).executeTakeFirst();
      return f?.status === 'failed' ? f : undefined;
    });
    expect(refused).toMatchObject({ case_id: null, error_code: 'UNSUPPORTED_FORMAT' });
    expect(refused.error_message).toMatch(/DICOMDIR/);
    const assignments = await ctx.db
      .selectFrom('assignments')
      .select('id')
      .where('case_id', '=', kase.id)
      .execute();
    expect(assignments).toHaveLength(1);
  });
});
