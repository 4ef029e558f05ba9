import { spawnSync } from 'node:child_process';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { sql } from 'kysely';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import type { App } from '../../src/api/build-app.js';
import { startApi } from '../../src/api/start-api.js';
import { addReader, addSite, createKey } from '../../src/cli/admin-commands.js';
import { collectBatches, uploadBatch } from '../../src/client/upload-client.js';
import type { Context } from '../../src/context.js';
import type { CaseRow } from '../../src/db/schema.js';
import { type DicomInstance, parseDicom } from '../../src/formats/dicom/parse-dicom.js';
import { handleRoute } from '../../src/pipeline/handlers/handle-route.js';
import { type RunningWorkers, runWorkers } from '../../src/pipeline/run-worker.js';
import { apiClient, waitFor } from '../helpers/api-client.js';
import { onPath } from '../helpers/dcmtk.js';
import { type DicomElement, imageElements, writeDicom } from '../helpers/dicom-writer.js';
import { createTestContext } from '../helpers/test-context.js';
import { writeTiff } from '../helpers/tiff-writer.js';

/**
 * Issue 6, "Cross-border reading": a case from a "de-identified only" site (KE) with no reader licensed in KE
 * goes to a reader licensed only in FR, who sees it de-identified through every route; the report lands on the
 * original case, where the clinic sees the real patient.
 */

const NAME = 'Zebedee^Quintessa';
const PATIENT_ID = 'MRN-ZX-90817';
const BIRTH_DATE = '19610923';
/** Every spelling of the patient a leak could take. */
const IDENTIFYING = ['Zebedee', 'Quintessa', PATIENT_ID, BIRTH_DATE, '1961-09-23', 'ACC-ZX-5521'];
const STUDY_UID = '2.25.7770011';
const SERIES_UID = '2.25.7770012';
const SOP_UID = '2.25.7770013';

interface CaseBody {
  id: string;
  status: string;
  notes: string | null;
  studyInstanceUid: string | null;
  patient: Record<string, unknown> | null;
  files: Array<{ id: string; name: string; sha256: string | null; metadata: Record<string, unknown> }>;
  artifacts: Array<{ name: string; url: string }>;
}

let t: Awaited<ReturnType<typeof createTestContext>>;
let ctx: Context;
let app: App;
let workers: RunningWorkers;
let url: string;
let call: ReturnType<typeof apiClient>;
let scratch: string;
const keys: Record<string, string> = {};

function dicom(studyUid: string, seriesUid: string, sopUid: string, extra: DicomElement[] = []): Uint8Array {
  const pixels = Uint8Array.from({ length: 64 }, (_, i) => i * 4);
  return writeDicom(
    imageElements({
      rows: 8,
      columns: 8,
      bitsAllocated: 8,
      pixelData: pixels,
      extra: [
        { tag: 0x00080018, vr: 'UI', value: sopUid },
        { tag: 0x0020000d, vr: 'UI', value: studyUid },
        { tag: 0x0020000e, vr: 'UI', value: seriesUid },
        { tag: 0x00080060, vr: 'CS', value: 'CT' },
        { tag: 0x00180015, vr: 'CS', value: 'HEAD' },
        { tag: 0x00100010, vr: 'PN', value: NAME },
        { tag: 0x00100020, vr: 'LO', value: PATIENT_ID },
        { tag: 0x00100030, vr: 'DA', value: BIRTH_DATE },
        { tag: 0x00080020, vr: 'DA', value: '20240301' },
        { tag: 0x00080050, vr: 'SH', value: 'ACC-ZX-5521' },
        { tag: 0x00081030, vr: 'LO', value: `CT head Zebedee ${PATIENT_ID}` },
        { tag: 0x0008103e, vr: 'LO', value: 'Quintessa axial' },
        ...extra,
      ],
    }),
  );
}

/** A graphics overlay plane that sets the image's top-left pixel (which is black). De-identification removes
 * overlay groups, so a de-identified view must not see it drawn. */
const OVERLAY_AT_TOP_LEFT: DicomElement[] = [
  { tag: 0x60000010, vr: 'US', value: 8 },
  { tag: 0x60000011, vr: 'US', value: 8 },
  { tag: 0x60000040, vr: 'CS', value: 'G' },
  { tag: 0x60000050, vr: 'SS', value: [1, 1] },
  { tag: 0x60000100, vr: 'US', value: 1 },
  { tag: 0x60000102, vr: 'US', value: 0 },
  { tag: 0x60003000, vr: 'OW', value: Uint8Array.of(1, 0, 0, 0, 0, 0, 0, 0) },
];

/** The Pixel Data value of a parsed instance. */
function pixelBytes(instance: DicomInstance): Uint8Array {
  const el = instance.dataSet.elements.x7fe00010!;
  return instance.dataSet.byteArray.subarray(el.dataOffset, el.dataOffset + el.length);
}

/** The first pixel of a rendered frame, as gray. */
async function topLeft(image: Uint8Array): Promise<number> {
  return (await sharp(Buffer.from(image)).greyscale().raw().toBuffer())[0]!;
}

/** An Aperio slide whose label page, description and file name all name the patient. */
function slide(): Uint8Array {
  const description =
    'Aperio Image Library v10.0.51\r\n512x384 [0,100 512x384] (128x128) RAW/RGB' +
    `|AppMag = 20|Filename = Zebedee-Quintessa-${PATIENT_ID}|MPP = 0.4990|Barcode = ${PATIENT_ID}`;
  return writeTiff([
    { width: 512, height: 384, tile: [128, 128], fill: 60, samplesPerPixel: 3, description },
    {
      width: 128,
      height: 96,
      fill: 70,
      samplesPerPixel: 3,
      description: 'Aperio Image Library v10.0.51\r\n512x384 -> 128x96 - |AppMag = 20',
    },
    { width: 256, height: 192, tile: [128, 128], fill: 80, samplesPerPixel: 3, description },
    {
      width: 40,
      height: 30,
      fill: 201,
      samplesPerPixel: 3,
      description: 'Aperio Image Library v10.0.51\r\nlabel 40x30',
    },
    {
      width: 80,
      height: 30,
      fill: 202,
      samplesPerPixel: 3,
      description: 'Aperio Image Library v10.0.51\r\nmacro 80x30',
    },
  ]);
}

beforeAll(async () => {
  t = await createTestContext();
  ctx = t.ctx;
  scratch = await mkdtemp(path.join(tmpdir(), 'teleread-cross-border-'));
  await addSite(ctx.db, { id: 'clinic-ke', jurisdiction: 'KE', crossBorder: 'deidentified' });
  // Licensed only in FR: nobody licensed in KE reads radiology or pathology here.
  await addReader(ctx.db, { id: 'radio-fr', specialties: 'radiology', jurisdictions: 'FR' });
  await addReader(ctx.db, { id: 'patho-fr', specialties: 'pathology', jurisdictions: 'FR' });
  keys.clinic = (await createKey(ctx.db, { role: 'clinic', site: 'clinic-ke' })).key;
  keys.ops = (await createKey(ctx.db, { role: 'ops' })).key;
  for (const r of ['radio-fr', 'patho-fr'])
    keys[r] = (await createKey(ctx.db, { role: 'reader', reader: r })).key;
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

async function upload(dir: string, files: Record<string, Uint8Array>, notes?: string): Promise<string> {
  const folder = path.join(scratch, dir);
  await mkdir(folder, { recursive: true });
  for (const [name, bytes] of Object.entries(files)) await writeFile(path.join(folder, name), bytes);
  const [batch] = await collectBatches([folder]);
  const res = await uploadBatch(batch!, { server: url, key: keys.clinic!, ...(notes ? { notes } : {}) });
  return res.files[0]!.id;
}

async function caseOf(fileId: string, until: (c: CaseRow) => boolean): Promise<CaseRow> {
  return waitFor(`case of file ${fileId}`, async () => {
    const f = await ctx.db
      .selectFrom('files')
      .select(['case_id', 'status'])
      .where('id', '=', fileId)
      .executeTakeFirst();
    if (f?.status === 'failed') throw new Error(`file ${fileId} failed`);
    if (!f?.case_id) return undefined;
    const c = await ctx.db.selectFrom('cases').selectAll().where('id', '=', f.case_id).executeTakeFirst();
    return c && until(c) ? c : undefined;
  });
}

/** Every response a reader gets, as text (binary bodies both as latin1 and UTF-8), for the leak search. */
function recorder(key: string) {
  const seen: Array<{ path: string; text: string }> = [];
  async function get<T = Record<string, unknown>>(p: string, init: RequestInit = {}) {
    const r = await call<T>(key, p, init);
    const body = r.body as unknown;
    const text =
      body instanceof Uint8Array
        ? Buffer.from(body).toString('latin1') + Buffer.from(body).toString('utf8')
        : JSON.stringify(body);
    seen.push({ path: p, text: `${[...r.headers].map(([k, v]) => `${k}: ${v}`).join('\n')}\n${text}` });
    return r;
  }
  function leaks(): string[] {
    return seen.flatMap(({ path: p, text }) =>
      IDENTIFYING.filter((s) => text.toLowerCase().includes(s.toLowerCase())).map((s) => `${p}: ${s}`),
    );
  }
  return { get, seen, leaks };
}

const json = (body: unknown): RequestInit => ({
  method: 'PUT',
  headers: { 'content-type': 'application/json' },
  body: JSON.stringify(body),
});

describe('a "de-identified only" site with no reader licensed at home', () => {
  test('DICOM: the FR reader reads it de-identified everywhere; the report lands on the original case', async () => {
    const fileId = await upload(
      'ct',
      { 'Zebedee_Quintessa.dcm': dicom(STUDY_UID, SERIES_UID, SOP_UID, OVERLAY_AT_TOP_LEFT) },
      'Mrs Zebedee, 1961-09-23',
    );
    const routed = await caseOf(fileId, (c) => c.status === 'routed');
    expect(routed.deidentified_abroad).toBe(true);
    expect(routed.assigned_reader_id).toBe('radio-fr');
    const caseId = routed.id;

    const fr = recorder(keys['radio-fr']!);
    const wl = await fr.get<{ cases: Array<{ id: string; state: string }> }>('/v1/worklist');
    expect(wl.body.cases).toEqual([expect.objectContaining({ id: caseId, state: 'assigned' })]);
    await fr.get('/v1/cases');
    const detail = await fr.get<CaseBody>(`/v1/cases/${caseId}`);
    expect(detail.status).toBe(200);
    expect(detail.body.patient).toBeNull();
    expect(detail.body.notes).toBeNull();
    expect(detail.body.files[0]!.name).toBe('dicom-1');
    expect(detail.body.files[0]!.sha256).toBeNull();
    // Ops run the machinery: the case's status, never the clinic's free text (it names the patient here).
    const opsView = await call<CaseBody>(keys.ops!, `/v1/cases/${caseId}`);
    expect(opsView.status).toBe(200);
    expect(opsView.body.notes).toBeNull();
    const clinicView = await call<CaseBody>(keys.clinic!, `/v1/cases/${caseId}`);
    expect(clinicView.body.notes).toBe('Mrs Zebedee, 1961-09-23');
    const meta = detail.body.files[0]!.metadata;
    expect(meta.modality).toBe('CT');
    expect(meta.studyDate).toBeUndefined();
    expect(meta.sopInstanceUid).toMatch(/^2\.25\.\d+$/);
    expect(meta.sopInstanceUid).not.toBe(SOP_UID);
    expect(detail.body.studyInstanceUid).not.toBe(STUDY_UID);
    // The copy's UIDs are the case's uid_remaps: the same the DICOM de-identifier writes.
    const remap = await ctx.db
      .selectFrom('uid_remaps')
      .select('replacement_uid')
      .where('case_id', '=', caseId)
      .where('original_uid', '=', SOP_UID)
      .executeTakeFirstOrThrow();
    expect(meta.sopInstanceUid).toBe(remap.replacement_uid);

    for (const a of detail.body.artifacts) {
      const r = await fr.get<Uint8Array>(new URL(a.url).pathname);
      expect(r.status).toBe(200);
      // Stored thumbnails are shared by every view: drawn without the overlay plane.
      if (a.name === 'thumbnail') expect(await topLeft(r.body)).toBeLessThan(50);
    }
    expect(detail.body.artifacts.map((a) => a.name)).toContain('thumbnail');
    const frame = await fr.get<Uint8Array>(
      `/v1/cases/${caseId}/instances/${meta.sopInstanceUid}/frames/1/rendered?size=64`,
    );
    expect(frame.status).toBe(200);
    // An 8×8 instance is not enlarged.
    expect((await sharp(Buffer.from(frame.body)).metadata()).width).toBe(8);
    // The overlay plane is drawn for the clinic (an identified view) and never for the reader abroad.
    const clinicFrame = (overlays: string) =>
      call<Uint8Array>(
        keys.clinic!,
        `/v1/cases/${caseId}/instances/${SOP_UID}/frames/1/rendered?size=64${overlays}`,
      );
    expect(await topLeft((await clinicFrame('')).body)).toBe(255);
    expect(await topLeft((await clinicFrame('&overlays=false')).body)).toBeLessThan(50);
    expect(await topLeft(frame.body)).toBeLessThan(50);
    const asked = await fr.get<Uint8Array>(
      `/v1/cases/${caseId}/instances/${meta.sopInstanceUid}/frames/1/rendered?size=64&overlays=true`,
    );
    expect(await topLeft(asked.body)).toBeLessThan(50);
    // Original UIDs address nothing for the reader abroad.
    expect((await fr.get(`/v1/cases/${caseId}/instances/${SOP_UID}/frames/1/rendered`)).status).toBe(404);
    expect((await fr.get(`/v1/cases/${caseId}/instances/${SOP_UID}`)).status).toBe(404);

    // The DICOM the reader abroad downloads is the de-identified copy (its bytes go through the leak search too).
    const copy = await fr.get<Uint8Array>(`/v1/cases/${caseId}/instances/${meta.sopInstanceUid}`);
    expect(copy.status).toBe(200);
    expect(copy.headers.get('content-type')).toBe('application/dicom');
    const copied = parseDicom(copy.body);
    expect(copied.sopInstanceUid).toBe(meta.sopInstanceUid);
    expect(copied.studyInstanceUid).toBe(detail.body.studyInstanceUid);
    expect(copied.patient).toMatchObject({ name: 'ANONYMOUS^TELEREAD', id: `TELEREAD-${caseId}` });
    // Modified Dates: moved by the case's own shift, drawn with its first copy and kept.
    const { deid_date_shift_days: shift } = await ctx.db
      .selectFrom('cases')
      .select('deid_date_shift_days')
      .where('id', '=', caseId)
      .executeTakeFirstOrThrow();
    expect(shift).toBeLessThanOrEqual(-1);
    expect(shift).toBeGreaterThanOrEqual(-3650);
    const studied = new Date(Date.UTC(2024, 2, 1 + shift!)).toISOString().slice(0, 10).replace(/-/g, '');
    expect(copied.studyDate).toBe(studied);
    // The pixels are the ones sent; the overlay plane (which may carry text) is gone.
    const original = parseDicom(dicom(STUDY_UID, SERIES_UID, SOP_UID, OVERLAY_AT_TOP_LEFT));
    expect(pixelBytes(copied)).toEqual(pixelBytes(original));
    expect(copied.dataSet.elements.x60003000).toBeUndefined();
    // Asked again, the stored copy comes back unchanged.
    const again = await fr.get<Uint8Array>(`/v1/cases/${caseId}/instances/${meta.sopInstanceUid}`);
    expect(Buffer.from(again.body).equals(Buffer.from(copy.body))).toBe(true);
    if (onPath('dcmdump')) {
      const copyFile = path.join(scratch, 'copy.dcm');
      await writeFile(copyFile, copy.body);
      const dumped = spawnSync('dcmdump', ['-M', '+uc', copyFile], { encoding: 'utf8' });
      expect(dumped.status, dumped.stderr).toBe(0);
      expect(dumped.stdout).toContain(`TELEREAD-${caseId}`);
    }
    // The clinic downloads what it sent, byte for byte.
    const sent = await call<Uint8Array>(keys.clinic!, `/v1/cases/${caseId}/instances/${SOP_UID}`);
    expect(sent.status).toBe(200);
    expect(
      Buffer.from(sent.body).equals(Buffer.from(dicom(STUDY_UID, SERIES_UID, SOP_UID, OVERLAY_AT_TOP_LEFT))),
    ).toBe(true);
    expect((await fr.get(`/v1/cases/${caseId}/report`)).status).toBe(404);

    expect((await fr.get(`/v1/cases/${caseId}/claim`, { method: 'POST' })).status).toBe(200);
    const draft = { findings: 'No acute intracranial abnormality.', impression: 'Normal CT head.' };
    expect((await fr.get(`/v1/cases/${caseId}/report`, json(draft))).status).toBe(200);
    const signed = await fr.get<{ id: string; readFromDeidentifiedCopy: boolean }>(
      `/v1/cases/${caseId}/report/sign`,
      { method: 'POST' },
    );
    expect(signed.status).toBe(200);
    expect(signed.body.readFromDeidentifiedCopy).toBe(true);
    expect((await fr.get(`/v1/cases/${caseId}/report`)).status).toBe(200);
    expect((await fr.get(`/v1/cases/${caseId}/report/fhir`)).status).toBe(200);
    expect((await fr.get(`/v1/cases/${caseId}`)).status).toBe(200);
    await fr.get(`/v1/cases/${caseId}/artifacts/nothing-here.png`);

    expect(fr.seen.length).toBeGreaterThan(10);
    expect(fr.leaks()).toEqual([]);

    // The report is on the original case (no copy row exists), and the clinic sees its real patient.
    const report = await ctx.db
      .selectFrom('reports')
      .select(['case_id', 'deidentified'])
      .where('id', '=', signed.body.id)
      .executeTakeFirstOrThrow();
    expect(report).toEqual({ case_id: caseId, deidentified: true });
    const siteCases = await ctx.db
      .selectFrom('cases')
      .select('id')
      .where('study_instance_uid', '=', STUDY_UID)
      .execute();
    expect(siteCases).toEqual([{ id: caseId }]);
    const clinic = await call<CaseBody>(keys.clinic!, `/v1/cases/${caseId}`);
    expect(clinic.body.patient).toMatchObject({ id: PATIENT_ID });
    expect(clinic.body.studyInstanceUid).toBe(STUDY_UID);
    expect(clinic.body.files[0]!.name).toBe('Zebedee_Quintessa.dcm');
    const fhir = await call<{ contained: Array<Record<string, unknown>> }>(
      keys.clinic!,
      `/v1/cases/${caseId}/report/fhir`,
    );
    expect(JSON.stringify(fhir.body.contained.find((r) => r.resourceType === 'Patient'))).toContain(
      PATIENT_ID,
    );
  });

  test('slide: the label is an identifying artifact the FR reader never gets; the pyramid is viewable', async () => {
    const fileId = await upload('slide', { 'Zebedee_Quintessa.svs': slide() });
    const routed = await caseOf(fileId, (c) => c.status === 'routed');
    expect(routed.assigned_reader_id).toBe('patho-fr');
    const caseId = routed.id;
    const labels = await ctx.db
      .selectFrom('artifacts')
      .select(['name', 'identifying'])
      .where('case_id', '=', caseId)
      .where('identifying', '=', true)
      .orderBy('name')
      .execute();
    expect(labels.map((l) => l.name)).toEqual([`label-${fileId}.png`, `macro-${fileId}.png`]);

    const fr = recorder(keys['patho-fr']!);
    await fr.get('/v1/worklist');
    const detail = await fr.get<CaseBody>(`/v1/cases/${caseId}`);
    expect(detail.status).toBe(200);
    expect(detail.body.artifacts.map((a) => a.name)).not.toContain(`label-${fileId}.png`);
    expect(detail.body.artifacts.length).toBeGreaterThan(0);
    for (const a of detail.body.artifacts) expect((await fr.get(new URL(a.url).pathname)).status).toBe(200);
    for (const l of labels) {
      expect((await fr.get(`/v1/cases/${caseId}/artifacts/${l.name}`)).status).toBe(404);
    }
    const dzi = await fr.get<Uint8Array>(`/v1/cases/${caseId}/slides/${fileId}.dzi`);
    expect(dzi.status).toBe(200);
    expect(Buffer.from(dzi.body).toString()).toContain('Width="512"');
    expect((await fr.get(`/v1/cases/${caseId}/slides/${fileId}_files/9/0_0.jpeg`)).status).toBe(200);
    expect(fr.leaks()).toEqual([]);

    // Ops never see the label either; the clinic does.
    const ops = await call<CaseBody>(keys.ops!, `/v1/cases/${caseId}`);
    expect(ops.body.artifacts.map((a) => a.name)).not.toContain(`label-${fileId}.png`);
    expect((await call(keys.ops!, `/v1/cases/${caseId}/artifacts/label-${fileId}.png`)).status).toBe(404);
    const clinic = await call<CaseBody>(keys.clinic!, `/v1/cases/${caseId}`);
    expect(clinic.body.artifacts.map((a) => a.name)).toContain(`label-${fileId}.png`);
    const label = await call<Uint8Array>(keys.clinic!, `/v1/cases/${caseId}/artifacts/label-${fileId}.png`);
    expect(label.status).toBe(200);
    expect((await sharp(Buffer.from(label.body)).metadata()).width).toBe(40);
  });

  test('burned-in annotation keeps the case home, and a reader licensed in KE added later reads it identified', async () => {
    const fileId = await upload('burned', {
      'burned.dcm': dicom('2.25.7770021', '2.25.7770022', '2.25.7770023', [
        { tag: 0x00280301, vr: 'CS', value: 'YES' },
      ]),
    });
    const waiting = await caseOf(fileId, (c) => c.status === 'ready' && c.route_note !== null);
    expect(waiting.route_note).toContain('BurnedInAnnotation');
    expect(waiting.deidentified_abroad).toBe(false);
    // Ingest kept the flags on the row; a row from before they were kept has its header read, with the same answer.
    const row = await ctx.db
      .selectFrom('files')
      .select('metadata')
      .where('id', '=', fileId)
      .executeTakeFirstOrThrow();
    expect(row.metadata).toMatchObject({ burnedInAnnotation: true, identifyingImage: false });
    await ctx.db
      .updateTable('files')
      .set({ metadata: sql`metadata - 'burnedInAnnotation' - 'identifyingImage'` })
      .where('id', '=', fileId)
      .execute();
    await ctx.db.updateTable('cases').set({ route_note: null }).where('id', '=', waiting.id).execute();
    await handleRoute({ ctx, log: ctx.log }, { caseId: waiting.id });
    const again = await ctx.db
      .selectFrom('cases')
      .selectAll()
      .where('id', '=', waiting.id)
      .executeTakeFirstOrThrow();
    expect(again.route_note).toContain('BurnedInAnnotation');
    expect(again.deidentified_abroad).toBe(false);
    expect((await call(keys['radio-fr']!, `/v1/cases/${waiting.id}`)).status).toBe(404);
    // Ops may not hand it abroad either: routing never opened it there.
    const reassign = await call(keys.ops!, `/v1/cases/${waiting.id}/reassign`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ readerId: 'radio-fr' }),
    });
    expect(reassign.status).toBe(409);

    await addReader(ctx.db, { id: 'radio-ke', specialties: 'radiology', jurisdictions: 'KE' });
    const keKey = (await createKey(ctx.db, { role: 'reader', reader: 'radio-ke' })).key;
    await handleRoute({ ctx, log: ctx.log }, { caseId: waiting.id });
    const detail = await call<CaseBody>(keKey, `/v1/cases/${waiting.id}`);
    expect(detail.status).toBe(200);
    expect(detail.body.patient).toMatchObject({ id: PATIENT_ID });
    expect(detail.body.files[0]!.name).toBe('burned.dcm');
  });
});
