import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { promisify } from 'node:util';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import type { App } from '../../src/api/build-app.js';
import { parseMediaType, parseMultipartRelated } from '../../src/api/multipart-related.js';
import { startApi } from '../../src/api/start-api.js';
import { addReader, addSite, createKey } from '../../src/cli/admin-commands.js';
import type { Context } from '../../src/context.js';
import { parseDicom } from '../../src/formats/dicom/parse-dicom.js';
import { getFrame } from '../../src/formats/dicom/pixel-data.js';
import { type RunningWorkers, runWorkers } from '../../src/pipeline/run-worker.js';
import { waitFor } from '../helpers/api-client.js';
import { type DicomElement, imageElements, threeInstanceStudy, writeDicom } from '../helpers/dicom-writer.js';
import { createTestContext } from '../helpers/test-context.js';

const run = promisify(execFile);

/**
 * DICOMweb Retrieve (WADO-RS): the STOW-RS RetrieveURLs lead to the instances sent, byte for byte, at study,
 * series and instance level; a reader abroad retrieves the study by its replacement UIDs and gets de-identified
 * copies; Accept is honoured; ops and other tenants get nothing.
 */

const BOUNDARY = 'wado-test-boundary';
const PATIENT = 'Okonkwo^Adaeze';
const PATIENT_ID = 'MRN-WADO-4471';

let t: Awaited<ReturnType<typeof createTestContext>>;
let ctx: Context;
let app: App;
let workers: RunningWorkers;
let url: string;
const keys: Record<string, string> = {};

/** Three instances in two series. */
function study(root: string) {
  return threeInstanceStudy(root, { name: PATIENT, id: PATIENT_ID });
}

async function stow(key: string, files: Uint8Array[]): Promise<Record<string, { Value?: unknown[] }>> {
  const chunks: Buffer[] = [];
  for (const f of files) {
    chunks.push(Buffer.from(`--${BOUNDARY}\r\nContent-Type: application/dicom\r\n\r\n`), Buffer.from(f));
    chunks.push(Buffer.from('\r\n'));
  }
  chunks.push(Buffer.from(`--${BOUNDARY}--\r\n`));
  const res = await fetch(`${url}/dicomweb/studies`, {
    method: 'POST',
    headers: {
      authorization: `Bearer ${key}`,
      'content-type': `multipart/related; type="application/dicom"; boundary=${BOUNDARY}`,
    },
    body: Buffer.concat(chunks),
  });
  expect(res.status).toBe(200);
  return (await res.json()) as Record<string, { Value?: unknown[] }>;
}

interface Part {
  type: string;
  bytes: Buffer;
  /** The part's Content-Length header, as a number (NaN without one). */
  declared: number;
}

/** GETs a DICOMweb resource (`path` may be a full URI under publicUrl); a 200's multipart/related body is split
 * into its parts. Each caller asserts what its resource promises of the answer. */
async function getParts(key: string, path: string, accept?: string) {
  const res = await fetch(path.startsWith('/') ? `${url}${path}` : path.replace(ctx.config.publicUrl, url), {
    headers: { authorization: `Bearer ${key}`, ...(accept ? { accept } : {}) },
  });
  const body = Buffer.from(await res.arrayBuffer());
  const type = parseMediaType(res.headers.get('content-type') ?? '');
  const parts: Part[] = [];
  if (res.status === 200 && type?.type === 'multipart/related') {
    for await (const part of parseMultipartRelated(Readable.from([body]), {
      boundary: type.parameters.boundary!,
    })) {
      const chunks: Buffer[] = [];
      for await (const c of part.body) chunks.push(Buffer.from(c as Uint8Array));
      const bytes = Buffer.concat(chunks);
      parts.push({
        type: part.headers['content-type'] ?? '',
        bytes,
        declared: Number(part.headers['content-length']),
      });
    }
  }
  return { status: res.status, body, type, length: res.headers.get('content-length'), parts };
}

interface Retrieved {
  status: number;
  parts: Array<{ type: string; bytes: Buffer }>;
  text: string;
}

/** GETs a WADO-RS resource and splits its multipart/related body into parts. */
async function retrieve(key: string, path: string, accept?: string): Promise<Retrieved> {
  const got = await getParts(key, path, accept);
  if (got.status !== 200) return { status: got.status, parts: [], text: got.body.toString() };
  expect(got.type?.type).toBe('multipart/related');
  expect(got.type?.parameters.type).toBe('application/dicom');
  // A response with parts transcoded as they are sent is chunked; otherwise its length is given.
  if (got.length !== null) expect(Number(got.length)).toBe(got.body.length);
  for (const part of got.parts) expect(part.declared).toBe(part.bytes.length);
  return { status: got.status, parts: got.parts, text: got.body.toString('latin1') };
}

/** The Study Instance UID a reader abroad knows a case's study by (its replacement). */
async function replacementStudyUid(caseId: string): Promise<string> {
  const detail = (await (
    await fetch(`${url}/v1/cases/${caseId}`, { headers: { authorization: `Bearer ${keys.fr}` } })
  ).json()) as { studyInstanceUid: string };
  return detail.studyInstanceUid;
}

/** Sends a three-instance study through STOW-RS and waits until its case is routed. */
async function sendStudy(key: string, root: string) {
  const sent = study(root);
  const stored = await stow(
    key,
    sent.map((s) => s.bytes),
  );
  return { sent, stored, caseId: await routedCase(root) };
}

async function routedCase(studyUid: string): Promise<string> {
  return waitFor(`study ${studyUid} routed`, async () => {
    const c = await ctx.db
      .selectFrom('cases')
      .select(['id', 'status'])
      .where('study_instance_uid', '=', studyUid)
      .executeTakeFirst();
    const files = await ctx.db
      .selectFrom('files')
      .select('status')
      .where('case_id', '=', c?.id ?? '00000000-0000-0000-0000-000000000000')
      .execute();
    return c?.status === 'routed' && files.length === 3 && files.every((f) => f.status === 'processed')
      ? c.id
      : undefined;
  });
}

/** Waits until the study's case is routed, however many files it has. */
async function studyRouted(studyUid: string): Promise<void> {
  await waitFor(`study ${studyUid} routed`, async () => {
    const c = await ctx.db
      .selectFrom('cases')
      .select('status')
      .where('study_instance_uid', '=', studyUid)
      .executeTakeFirst();
    return c?.status === 'routed' ? true : undefined;
  });
}

/** One 8×8 instance of `root`'s series `root.1`, written here with the given pixels (8-bit unless they say) and
 * any further elements. */
function instanceOf(
  root: string,
  sop: string,
  pixels: {
    samplesPerPixel?: number;
    bitsAllocated?: number;
    pixelData: Uint8Array | Uint16Array;
    extra?: DicomElement[];
  },
  options: Parameters<typeof writeDicom>[1],
): Uint8Array {
  const { extra = [], ...image } = pixels;
  return writeDicom(
    imageElements({
      rows: 8,
      columns: 8,
      bitsAllocated: 8,
      ...image,
      extra: [
        { tag: 0x0020000d, vr: 'UI', value: root },
        { tag: 0x0020000e, vr: 'UI', value: `${root}.1` },
        { tag: 0x00080018, vr: 'UI', value: sop },
        { tag: 0x00080060, vr: 'CS', value: 'CT' },
        { tag: 0x00100010, vr: 'PN', value: PATIENT },
        ...extra,
      ],
    }),
    options,
  );
}

beforeAll(async () => {
  t = await createTestContext({ STUDY_STABLE_SECONDS: '0' });
  ctx = t.ctx;
  await addSite(ctx.db, { id: 'home', jurisdiction: 'KE' });
  await addSite(ctx.db, { id: 'other', jurisdiction: 'KE' });
  await addSite(ctx.db, { id: 'abroad', jurisdiction: 'UG', crossBorder: 'deidentified' });
  await addReader(ctx.db, { id: 'radio-ke', specialties: 'radiology', jurisdictions: 'KE' });
  await addReader(ctx.db, { id: 'radio-fr', specialties: 'radiology', jurisdictions: 'FR' });
  keys.home = (await createKey(ctx.db, { role: 'clinic', site: 'home' })).key;
  keys.other = (await createKey(ctx.db, { role: 'clinic', site: 'other' })).key;
  keys.abroad = (await createKey(ctx.db, { role: 'clinic', site: 'abroad' })).key;
  keys.ke = (await createKey(ctx.db, { role: 'reader', reader: 'radio-ke' })).key;
  keys.fr = (await createKey(ctx.db, { role: 'reader', reader: 'radio-fr' })).key;
  keys.ops = (await createKey(ctx.db, { role: 'ops' })).key;
  workers = await runWorkers(ctx);
  ({ app, url } = await startApi(ctx, 0));
});

afterAll(async () => {
  await app?.close();
  await workers?.close();
  await t?.dispose();
});

describe('WADO-RS retrieve', () => {
  test('the STOW-RS RetrieveURLs give back the instances sent, byte for byte, at every level', async () => {
    const root = '2.25.5510001';
    const { sent, stored } = await sendStudy(keys.home!, root);
    const studyUrl = new URL(String(stored['00081190']!.Value![0])).pathname;
    expect(studyUrl).toBe(`/dicomweb/studies/${root}`);

    const whole = await retrieve(keys.home!, studyUrl);
    expect(whole.status).toBe(200);
    expect(whole.parts.map((p) => p.bytes.toString('hex')).sort()).toEqual(
      sent.map((s) => Buffer.from(s.bytes).toString('hex')).sort(),
    );
    for (const p of whole.parts) {
      expect(parseMediaType(p.type)?.parameters['transfer-syntax']).toBe('1.2.840.10008.1.2.1');
    }
    const series = await retrieve(keys.ke!, `${studyUrl}/series/${root}.1`);
    expect(series.parts).toHaveLength(2);
    // Each instance's own RetrieveURL, as the STOW-RS response gave it.
    const referenced = stored['00081199']!.Value as Array<Record<string, { Value: string[] }>>;
    for (const r of referenced) {
      const one = await retrieve(keys.home!, new URL(r['00081190']!.Value[0]!).pathname);
      const sop = r['00081155']!.Value[0]!;
      expect(one.parts).toHaveLength(1);
      expect(one.parts[0]!.bytes.equals(Buffer.from(sent.find((s) => s.sop === sop)!.bytes))).toBe(true);
    }
    expect((await retrieve(keys.home!, `${studyUrl}/series/${root}.9`)).status).toBe(404);
    expect((await retrieve(keys.home!, `/dicomweb/studies/${root}.404`)).status).toBe(404);
  });

  test('Accept: what it names is honoured, and another transfer syntax or media type gets 406', async () => {
    const root = '2.25.5510002';
    await sendStudy(keys.home!, root);
    const path = `/dicomweb/studies/${root}`;
    const dicom = 'multipart/related; type="application/dicom"';
    for (const accept of [
      `${dicom}; transfer-syntax=*`,
      `${dicom}; transfer-syntax=1.2.840.10008.1.2.1`,
      dicom,
      'multipart/related; type=application/dicom',
      '*/*',
      `application/json, ${dicom}; transfer-syntax=*`,
    ]) {
      expect((await retrieve(keys.home!, path, accept)).status, accept).toBe(200);
    }
    for (const accept of [
      `${dicom}; transfer-syntax=1.2.840.10008.1.2.4.50`,
      'application/json',
      'image/jpeg',
    ]) {
      const r = await retrieve(keys.home!, path, accept);
      expect(r.status, accept).toBe(406);
      expect(JSON.parse(r.text).error.code).toBe('NOT_ACCEPTABLE');
    }
  });

  test('with no transfer syntax named, instances stored compressed, implicit or big endian come as Explicit VR Little Endian', async () => {
    const root = '2.25.5510005';
    const sent = study(root);
    // The three instances rewritten by DCMTK: JPEG-LS lossless, RLE, explicit VR big endian.
    const syntaxes = [
      { tool: 'dcmcjpls', args: [], uid: '1.2.840.10008.1.2.4.80' },
      { tool: 'dcmcrle', args: [], uid: '1.2.840.10008.1.2.5' },
      { tool: 'dcmconv', args: ['+tb'], uid: '1.2.840.10008.1.2.2' },
    ];
    const dir = await mkdtemp(path.join(tmpdir(), 'wado-transcode-'));
    const stored: Buffer[] = [];
    try {
      for (const [i, s] of syntaxes.entries()) {
        await writeFile(path.join(dir, `${i}.dcm`), sent[i]!.bytes);
        await run(s.tool, [...s.args, path.join(dir, `${i}.dcm`), path.join(dir, `${i}.out.dcm`)]);
        stored.push(await readFile(path.join(dir, `${i}.out.dcm`)));
        expect(parseDicom(stored[i]!).transferSyntaxUid).toBe(s.uid);
      }
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
    await stow(keys.home!, stored);
    await routedCase(root);
    const studyPath = `/dicomweb/studies/${root}`;

    const bySop = (r: Retrieved) =>
      new Map(r.parts.map((p) => [parseDicom(new Uint8Array(p.bytes)).sopInstanceUid!, p]));
    for (const accept of [undefined, 'multipart/related; type="application/dicom"', '*/*']) {
      const whole = await retrieve(keys.ke!, studyPath, accept);
      expect(whole.status, accept).toBe(200);
      const parts = bySop(whole);
      expect(parts.size).toBe(3);
      for (const [i, s] of sent.entries()) {
        const part = parts.get(s.sop)!;
        expect(parseMediaType(part.type)?.parameters['transfer-syntax']).toBe('1.2.840.10008.1.2.1');
        const copy = parseDicom(new Uint8Array(part.bytes));
        expect(copy.transferSyntaxUid, syntaxes[i]!.tool).toBe('1.2.840.10008.1.2.1');
        expect(copy.patient?.name).toBe(PATIENT);
        // The pixels the clinic sent, whatever they were stored as.
        expect(Buffer.from(getFrame(copy, 0).pixels as Uint8Array)).toEqual(
          Buffer.from(getFrame(parseDicom(s.bytes), 0).pixels as Uint8Array),
        );
      }
    }
    // One instance: transcoded before the response starts, so its length is known.
    const one = await fetch(`${url}${studyPath}/series/${root}.1/instances/${root}.1.1`, {
      headers: { authorization: `Bearer ${keys.ke}` },
    });
    expect(one.status).toBe(200);
    expect(Number(one.headers.get('content-length'))).toBe((await one.arrayBuffer()).byteLength);

    // transfer-syntax=* gives what was stored, byte for byte.
    const asStored = bySop(
      await retrieve(keys.ke!, studyPath, 'multipart/related; type="application/dicom"; transfer-syntax=*'),
    );
    for (const [i, s] of sent.entries()) expect(asStored.get(s.sop)!.bytes.equals(stored[i]!)).toBe(true);

    // A named transfer syntax: the instance stored in it as stored, the others as Explicit VR Little Endian when
    // that is named too, and 406 when it is not.
    const dicom = 'multipart/related; type="application/dicom"';
    const mixed = bySop(
      await retrieve(
        keys.ke!,
        studyPath,
        `${dicom}; transfer-syntax=1.2.840.10008.1.2.4.80, ${dicom}; transfer-syntax=1.2.840.10008.1.2.1`,
      ),
    );
    expect(mixed.get(sent[0]!.sop)!.bytes.equals(stored[0]!)).toBe(true);
    expect(parseMediaType(mixed.get(sent[1]!.sop)!.type)?.parameters['transfer-syntax']).toBe(
      '1.2.840.10008.1.2.1',
    );
    const jlsOnly = await retrieve(keys.ke!, studyPath, `${dicom}; transfer-syntax=1.2.840.10008.1.2.4.80`);
    expect(jlsOnly.status).toBe(406);
    expect(JSON.parse(jlsOnly.text).error.code).toBe('NOT_ACCEPTABLE');
    const jlsSeries = await retrieve(
      keys.ke!,
      `${studyPath}/series/${root}.1/instances/${root}.1.1`,
      `${dicom}; transfer-syntax=1.2.840.10008.1.2.4.80`,
    );
    expect(jlsSeries.parts[0]!.bytes.equals(stored[0]!)).toBe(true);
  });

  test('a data set stored without a file meta goes out as a PS3.10 file, even when asked for as stored', async () => {
    const root = '2.25.5510006';
    const [first] = study(root);
    // The same instance as an old system writes it: no preamble, no DICM, no file meta, implicit VR.
    const bare = instanceOf(
      root,
      first!.sop,
      { pixelData: new Uint8Array(64).fill(40) },
      { encoding: 'implicit-le', preamble: false, meta: false },
    );
    expect(parseDicom(bare).part10).toBe(false);
    const form = new FormData();
    form.append('file', new Blob([bare]), 'bare.dcm');
    const upload = await fetch(`${url}/v1/uploads`, {
      method: 'POST',
      headers: { authorization: `Bearer ${keys.home}` },
      body: form,
    });
    expect(upload.status).toBe(202);
    await studyRouted(root);
    const dicom = 'multipart/related; type="application/dicom"';
    for (const accept of [undefined, `${dicom}; transfer-syntax=*`]) {
      const r = await retrieve(keys.ke!, `/dicomweb/studies/${root}`, accept);
      expect(r.status, accept).toBe(200);
      const part = r.parts[0]!;
      expect(part.bytes.subarray(128, 132).toString('latin1')).toBe('DICM');
      expect(parseMediaType(part.type)?.parameters['transfer-syntax']).toBe('1.2.840.10008.1.2.1');
      const copy = parseDicom(new Uint8Array(part.bytes));
      expect(copy.part10).toBe(true);
      expect(copy.sopInstanceUid).toBe(first!.sop);
      expect(Array.from(getFrame(copy, 0).pixels)).toEqual(Array.from(new Uint8Array(64).fill(40)));
    }
    // Asked for in its own (implicit VR) syntax only, it cannot be given a file meta and sent.
    const implicitOnly = await retrieve(
      keys.ke!,
      `/dicomweb/studies/${root}`,
      `${dicom}; transfer-syntax=1.2.840.10008.1.2`,
    );
    expect(implicitOnly.status).toBe(406);
  });

  test('ops and other tenants get nothing', async () => {
    const root = '2.25.5510003';
    await sendStudy(keys.home!, root);
    expect((await retrieve(keys.ops!, `/dicomweb/studies/${root}`)).status).toBe(403);
    expect((await retrieve(keys.other!, `/dicomweb/studies/${root}`)).status).toBe(404);
    expect((await retrieve(keys.fr!, `/dicomweb/studies/${root}`)).status).toBe(404);
  });

  test('a reader abroad retrieves the study by its replacement UIDs and gets de-identified copies', async () => {
    const root = '2.25.5510004';
    const { caseId } = await sendStudy(keys.abroad!, root);
    const detail = (await (
      await fetch(`${url}/v1/cases/${caseId}`, { headers: { authorization: `Bearer ${keys.fr}` } })
    ).json()) as {
      studyInstanceUid: string;
      files: Array<{ metadata: { sopInstanceUid: string; seriesInstanceUid?: string } }>;
    };
    const replacement = detail.studyInstanceUid;
    expect(replacement).not.toBe(root);
    // The original UID names nothing for this reader.
    expect((await retrieve(keys.fr!, `/dicomweb/studies/${root}`)).status).toBe(404);

    const whole = await retrieve(keys.fr!, `/dicomweb/studies/${replacement}`);
    expect(whole.status).toBe(200);
    expect(whole.parts).toHaveLength(3);
    expect(whole.text).not.toContain('Okonkwo');
    expect(whole.text).not.toContain(PATIENT_ID);
    const shown = new Set(detail.files.map((f) => f.metadata.sopInstanceUid));
    for (const p of whole.parts) {
      const copy = parseDicom(new Uint8Array(p.bytes));
      expect(copy.studyInstanceUid).toBe(replacement);
      expect(copy.patient).toMatchObject({ name: 'ANONYMOUS^TELEREAD', id: `TELEREAD-${caseId}` });
      expect(shown.has(copy.sopInstanceUid!)).toBe(true);
    }
    // One instance by its replacement series and SOP UIDs, the same copy as in the study.
    const copy = parseDicom(new Uint8Array(whole.parts[0]!.bytes));
    const one = await retrieve(
      keys.fr!,
      `/dicomweb/studies/${replacement}/series/${copy.seriesInstanceUid}/instances/${copy.sopInstanceUid}`,
    );
    expect(one.parts).toHaveLength(1);
    expect(one.parts[0]!.bytes.equals(whole.parts[0]!.bytes)).toBe(true);
    // The clinic retrieves its own study by its own UIDs, as sent.
    const clinic = await retrieve(keys.abroad!, `/dicomweb/studies/${root}`);
    expect(clinic.parts).toHaveLength(3);
    expect(clinic.text).toContain(PATIENT_ID);
  });
});

describe('DICOMweb rendered and thumbnail resources', () => {
  const magic = (b: Buffer) =>
    b.subarray(0, 4).equals(Buffer.from([0x89, 0x50, 0x4e, 0x47]))
      ? 'png'
      : b[0] === 0xff && b[1] === 0xd8
        ? 'jpeg'
        : b.subarray(8, 12).toString('latin1') === 'WEBP'
          ? 'webp'
          : 'other';

  async function get(key: string, path: string, accept?: string) {
    const res = await fetch(`${url}${path}`, {
      headers: { authorization: `Bearer ${key}`, ...(accept ? { accept } : {}) },
    });
    return {
      status: res.status,
      type: res.headers.get('content-type'),
      body: Buffer.from(await res.arrayBuffer()),
    };
  }

  test('frames, instances and thumbnails as images, in the type Accept prefers, for whoever may see them', async () => {
    const root = '2.25.5510007';
    await sendStudy(keys.home!, root);
    const instance = `/dicomweb/studies/${root}/series/${root}.1/instances/${root}.1.1`;

    const jpeg = await get(keys.ke!, `${instance}/frames/1/rendered`);
    expect(jpeg.status).toBe(200);
    expect(jpeg.type).toBe('image/jpeg');
    expect(magic(jpeg.body)).toBe('jpeg');
    const png = await get(keys.ke!, `${instance}/frames/1/rendered?viewport=32,16&window=40,80`, 'image/png');
    expect(png.type).toBe('image/png');
    expect(magic(png.body)).toBe('png');
    expect(png.body.readUInt32BE(16)).toBeLessThanOrEqual(32); // IHDR width
    expect(
      magic((await get(keys.ke!, `${instance}/rendered`, 'image/webp;q=0.9, image/png;q=0.5')).body),
    ).toBe('webp');
    expect(magic((await get(keys.home!, `${instance}/thumbnail`)).body)).toBe('jpeg');

    expect((await get(keys.ke!, `${instance}/frames/2/rendered`)).status).toBe(404);
    for (const bad of [
      'frames/1,2/rendered',
      'frames/1/rendered?window=40,80,SIGMOID',
      'rendered?viewport=64,64,0,0,8,8',
    ]) {
      const r = await get(keys.ke!, `${instance}/${bad}`);
      expect(r.status, bad).toBe(400);
      expect(JSON.parse(r.body.toString()).error.code).toBe('VALIDATION_FAILED');
    }
    expect((await get(keys.ke!, `${instance}/rendered`, 'application/dicom')).status).toBe(406);
    // A link or an <img> cannot set Accept: the `accept` query parameter takes its place (PS3.18 8.3.3.1).
    const linked = await get(keys.ke!, `${instance}/rendered?accept=image/png`, 'image/*');
    expect([linked.type, magic(linked.body)]).toEqual(['image/png', 'png']);
    expect(magic((await get(keys.ke!, `${instance}/frames/1/rendered?accept=image/webp`)).body)).toBe('webp');
    expect((await get(keys.ke!, `${instance}/rendered?accept=application/dicom`, '*/*')).status).toBe(406);
    const metadata = await get(keys.ke!, `${instance}/metadata?accept=application/dicom%2Bjson`, 'text/html');
    expect(metadata.status).toBe(200);
    expect(metadata.type).toMatch(/^application\/dicom\+json/);
    const search = await get(
      keys.ke!,
      `/dicomweb/studies?StudyInstanceUID=${root}&accept=application/dicom%2Bjson`,
    );
    expect(search.status).toBe(200);
    expect(JSON.parse(search.body.toString())).toHaveLength(1);

    for (const path of [
      `/dicomweb/studies/${root}/thumbnail`,
      `/dicomweb/studies/${root}/series/${root}.2/thumbnail`,
    ]) {
      const thumbnail = await get(keys.home!, path);
      expect(thumbnail.status, path).toBe(200);
      expect(thumbnail.type).toMatch(/^image\//);
      expect(magic(thumbnail.body)).not.toBe('other');
      expect((await get(keys.home!, path, 'application/json')).status).toBe(406);
    }
    expect((await get(keys.home!, `/dicomweb/studies/${root}/series/${root}.9/thumbnail`)).status).toBe(404);
    expect((await get(keys.ops!, `${instance}/rendered`)).status).toBe(403);
    expect((await get(keys.other!, `/dicomweb/studies/${root}/thumbnail`)).status).toBe(404);
  });

  test('a reader abroad names the study by its replacement UIDs, as for WADO-RS', async () => {
    const root = '2.25.5510008';
    const { caseId } = await sendStudy(keys.abroad!, root);
    const detail = (await (
      await fetch(`${url}/v1/cases/${caseId}`, { headers: { authorization: `Bearer ${keys.fr}` } })
    ).json()) as { studyInstanceUid: string; files: Array<{ metadata: { sopInstanceUid: string } }> };
    const study = detail.studyInstanceUid;
    const whole = await retrieve(keys.fr!, `/dicomweb/studies/${study}`);
    const copy = parseDicom(new Uint8Array(whole.parts[0]!.bytes));
    const instance = `/dicomweb/studies/${study}/series/${copy.seriesInstanceUid}/instances/${copy.sopInstanceUid}`;
    expect((await get(keys.fr!, `${instance}/frames/1/rendered`)).status).toBe(200);
    expect(
      (await get(keys.fr!, `/dicomweb/studies/${study}/series/${copy.seriesInstanceUid}/thumbnail`)).status,
    ).toBe(200);
    expect((await get(keys.fr!, `/dicomweb/studies/${study}/thumbnail`)).status).toBe(200);
    // The original UIDs name nothing for this reader.
    expect(
      (await get(keys.fr!, `/dicomweb/studies/${root}/series/${root}.1/instances/${root}.1.1/rendered`))
        .status,
    ).toBe(404);
    expect((await get(keys.fr!, `/dicomweb/studies/${root}/thumbnail`)).status).toBe(404);
  });
});

describe('WADO-RS metadata', () => {
  type Json = Array<Record<string, { vr: string; Value?: unknown[] }>>;
  async function metadata(key: string, path: string, accept?: string) {
    const res = await fetch(`${url}${path}`, {
      headers: { authorization: `Bearer ${key}`, ...(accept ? { accept } : {}) },
    });
    return { status: res.status, type: res.headers.get('content-type'), json: (await res.json()) as Json };
  }

  test('each instance header in the DICOM JSON Model, at every level, without its pixels', async () => {
    const root = '2.25.5510009';
    await sendStudy(keys.home!, root);
    const study = await metadata(keys.ke!, `/dicomweb/studies/${root}/metadata`);
    expect(study.status).toBe(200);
    expect(study.type).toMatch(/^application\/dicom\+json(;|$)/);
    expect(study.json).toHaveLength(3);
    const sops = study.json.map((i) => i['00080018']!.Value![0]).sort();
    expect(sops).toEqual([`${root}.1.1`, `${root}.1.2`, `${root}.2.1`]);
    for (const instance of study.json) {
      expect(instance['0020000D']).toEqual({ vr: 'UI', Value: [root] });
      expect(instance['00100010']).toEqual({ vr: 'PN', Value: [{ Alphabetic: PATIENT }] });
      expect(instance['00280010']).toEqual({ vr: 'US', Value: [8] });
      expect(instance['00083002']).toEqual({ vr: 'UI', Value: ['1.2.840.10008.1.2.1'] });
      // Pixel data is named, not carried: the bulk data resource (or the frames) gives it.
      expect(instance['7FE00010']).toEqual({
        vr: 'OB',
        BulkDataURI: `${ctx.config.publicUrl}/dicomweb/studies/${root}/series/${instance['0020000E']!.Value![0]}/instances/${instance['00080018']!.Value![0]}/bulkdata/7FE00010`,
      });
      expect(Object.keys(instance).some((k) => k.startsWith('0002'))).toBe(false);
    }
    const series = await metadata(keys.ke!, `/dicomweb/studies/${root}/series/${root}.1/metadata`);
    expect(series.json).toHaveLength(2);
    const one = await metadata(
      keys.home!,
      `/dicomweb/studies/${root}/series/${root}.2/instances/${root}.2.1/metadata`,
    );
    expect(one.json).toHaveLength(1);
    expect(
      (
        await fetch(`${url}/dicomweb/studies/${root}/metadata`, {
          headers: { authorization: `Bearer ${keys.ke}`, accept: 'application/dicom' },
        })
      ).status,
    ).toBe(406);
    expect(
      (
        await fetch(`${url}/dicomweb/studies/${root}/metadata`, {
          headers: { authorization: `Bearer ${keys.ops}` },
        })
      ).status,
    ).toBe(403);
  });

  test('a reader abroad reads the de-identified copies: pseudonym and replacement UIDs', async () => {
    const root = '2.25.5510010';
    const { caseId } = await sendStudy(keys.abroad!, root);
    const replacement = await replacementStudyUid(caseId);
    const study = await metadata(keys.fr!, `/dicomweb/studies/${replacement}/metadata`);
    expect(study.status).toBe(200);
    expect(study.json).toHaveLength(3);
    const text = JSON.stringify(study.json);
    expect(text).not.toContain('Okonkwo');
    expect(text).not.toContain(PATIENT_ID);
    expect(text).not.toContain(root);
    for (const instance of study.json) {
      expect(instance['0020000D']!.Value).toEqual([replacement]);
      expect(instance['00100010']!.Value).toEqual([{ Alphabetic: 'ANONYMOUS^TELEREAD' }]);
    }
    expect((await metadata(keys.fr!, `/dicomweb/studies/${root}/metadata`)).status).toBe(404);
  });
});

describe('WADO-RS frames', () => {
  async function frames(key: string, path: string, accept?: string) {
    const got = await getParts(key, path, accept);
    if (got.status !== 200) return { status: got.status, parts: [] as Part[], text: got.body.toString() };
    expect(got.type?.parameters.type).toBe('application/octet-stream');
    return { status: got.status, parts: got.parts, text: '' };
  }
  const tsOf = (p: Part) => parseMediaType(p.type)?.parameters['transfer-syntax'];

  test('native frames as stored, compressed ones as stored or decoded when that keeps what the header says', async () => {
    const root = '2.25.5510011';
    const [gray] = study(root);
    // A colour instance in the same series: 8×8 RGB, which dcmcjpeg stores as YBR_FULL_422 JPEG baseline.
    const rgb = instanceOf(
      root,
      `${root}.1.9`,
      { samplesPerPixel: 3, pixelData: Uint8Array.from({ length: 192 }, (_, i) => (i * 7) % 256) },
      { sopInstanceUid: `${root}.1.9` },
    );
    const dir = await mkdtemp(path.join(tmpdir(), 'wado-frames-'));
    let jls: Buffer;
    let jpeg: Buffer;
    try {
      await writeFile(path.join(dir, 'gray.dcm'), gray!.bytes);
      await writeFile(path.join(dir, 'rgb.dcm'), rgb);
      await run('dcmcjpls', [path.join(dir, 'gray.dcm'), path.join(dir, 'gray.jls.dcm')]);
      // +un: keep the SOP Instance UID, which dcmcjpeg otherwise replaces for lossy compression.
      await run('dcmcjpeg', ['+eb', '+np', '+un', path.join(dir, 'rgb.dcm'), path.join(dir, 'rgb.jpg.dcm')]);
      jls = await readFile(path.join(dir, 'gray.jls.dcm'));
      jpeg = await readFile(path.join(dir, 'rgb.jpg.dcm'));
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
    expect(parseDicom(jpeg).photometricInterpretation).toBe('YBR_FULL_422');
    const [, second, third] = study(root);
    await stow(keys.home!, [jls, second!.bytes, third!.bytes, jpeg]);
    await studyRouted(root);
    const instance = (series: string, sop: string) =>
      `/dicomweb/studies/${root}/series/${series}/instances/${sop}`;
    const stored = 'multipart/related; type="application/octet-stream"; transfer-syntax=*';

    // Native: the frame's bytes, twice when listed twice.
    const native = await frames(keys.ke!, `${instance(`${root}.1`, `${root}.1.2`)}/frames/1,1`);
    expect(native.parts).toHaveLength(2);
    for (const p of native.parts) {
      expect(tsOf(p)).toBe('1.2.840.10008.1.2.1');
      expect(p.bytes.equals(Buffer.alloc(64, 80))).toBe(true);
    }
    // JPEG-LS: decoded by default (grayscale decodes to what the header says), the bitstream with *.
    const decoded = await frames(keys.ke!, `${instance(`${root}.1`, `${root}.1.1`)}/frames/1`);
    expect(tsOf(decoded.parts[0]!)).toBe('1.2.840.10008.1.2.1');
    expect(decoded.parts[0]!.bytes.equals(Buffer.alloc(64, 40))).toBe(true);
    const bitstream = await frames(keys.ke!, `${instance(`${root}.1`, `${root}.1.1`)}/frames/1`, stored);
    expect(tsOf(bitstream.parts[0]!)).toBe('1.2.840.10008.1.2.4.80');
    expect([...bitstream.parts[0]!.bytes.subarray(0, 4)]).toEqual([0xff, 0xd8, 0xff, 0xf7]);
    // YBR JPEG: decoding gives RGB, which its header does not say: 406 unless asked for as stored.
    const ybr = await frames(keys.ke!, `${instance(`${root}.1`, `${root}.1.9`)}/frames/1`);
    expect(ybr.status).toBe(406);
    const asStored = await frames(keys.ke!, `${instance(`${root}.1`, `${root}.1.9`)}/frames/1`, stored);
    expect(tsOf(asStored.parts[0]!)).toBe('1.2.840.10008.1.2.4.50');
    expect([...asStored.parts[0]!.bytes.subarray(0, 2)]).toEqual([0xff, 0xd8]);

    expect((await frames(keys.ke!, `${instance(`${root}.1`, `${root}.1.2`)}/frames/2`)).status).toBe(404);
    expect((await frames(keys.ke!, `${instance(`${root}.1`, `${root}.1.2`)}/frames/0,x`)).status).toBe(400);
    expect(
      (await frames(keys.ke!, `${instance(`${root}.1`, `${root}.1.2`)}/frames/1`, 'application/dicom'))
        .status,
    ).toBe(406);
    expect((await frames(keys.ops!, `${instance(`${root}.1`, `${root}.1.2`)}/frames/1`)).status).toBe(403);
  });
});

describe('WADO-RS bulk data', () => {
  type Json = Array<
    Record<string, { vr: string; Value?: unknown[]; BulkDataURI?: string; InlineBinary?: string }>
  >;
  async function get(key: string, uri: string, accept?: string) {
    const got = await getParts(key, uri, accept);
    if (got.status !== 200) return { status: got.status, parts: [] as Part[] };
    expect(got.type?.type).toBe('multipart/related');
    expect(got.type?.parameters.type).toBe('application/octet-stream');
    if (got.length !== null) expect(Number(got.length)).toBe(got.body.length);
    return { status: got.status, parts: got.parts };
  }

  /** An instance with a long binary value at the top level and another inside a sequence item: an ICC profile, and
   * the pixels of a 40 × 40 icon (Icon Image Sequence). */
  function withBulkValues(root: string, sop: string, encoding: 'explicit-le' | 'explicit-be') {
    const icc = Uint8Array.from({ length: 1500 }, (_, i) => i % 251);
    const icon = Uint8Array.from({ length: 1600 }, (_, i) => (i * 7) % 256);
    const pixels = Uint16Array.from({ length: 64 }, (_, i) => i * 1000);
    const bytes = instanceOf(
      root,
      sop,
      {
        bitsAllocated: 16,
        pixelData: pixels,
        extra: [
          { tag: 0x00282000, vr: 'OB', value: icc },
          {
            tag: 0x00880200,
            vr: 'SQ',
            value: [
              imageElements({ rows: 40, columns: 40, bitsAllocated: 8, pixelData: icon }).filter(
                (e) => e.tag >>> 16 === 0x0028 || e.tag === 0x7fe00010,
              ),
            ],
          },
        ],
      },
      { sopInstanceUid: sop, encoding },
    );
    const le = (a: Uint16Array) => Buffer.from(a.buffer, a.byteOffset, a.byteLength);
    return { bytes, icc: Buffer.from(icc), icon: Buffer.from(icon), pixels: le(pixels) };
  }

  test('long binary values and pixel data are named by BulkDataURI and sent little endian', async () => {
    const root = '2.25.5510016';
    const le = withBulkValues(root, `${root}.1.1`, 'explicit-le');
    const be = withBulkValues(root, `${root}.1.2`, 'explicit-be');
    const [, , third] = study(root);
    await stow(keys.home!, [le.bytes, be.bytes, third!.bytes]);
    await studyRouted(root);
    const res = await fetch(`${url}/dicomweb/studies/${root}/series/${root}.1/metadata`, {
      headers: { authorization: `Bearer ${keys.ke}` },
    });
    const json = (await res.json()) as Json;
    expect(json).toHaveLength(2);
    for (const [i, sent] of [le, be].entries()) {
      const instance = json.find((j) => j['00080018']!.Value![0] === `${root}.1.${i + 1}`)!;
      const base = `${ctx.config.publicUrl}/dicomweb/studies/${root}/series/${root}.1/instances/${root}.1.${i + 1}/bulkdata`;
      expect(instance['00282000']).toEqual({ vr: 'OB', BulkDataURI: `${base}/00282000` });
      const item = (instance['00880200']!.Value as Json)[0]!;
      expect(item['7FE00010']).toEqual({ vr: 'OB', BulkDataURI: `${base}/00880200/0/7FE00010` });
      expect(item['00280010']).toEqual({ vr: 'US', Value: [40] });
      expect(instance['7FE00010']).toEqual({ vr: 'OW', BulkDataURI: `${base}/7FE00010` });
      // Each value comes back as one part, little endian whatever the file's byte order.
      for (const [tag, value] of [
        ['00282000', sent.icc],
        ['icon', sent.icon],
        ['7FE00010', sent.pixels],
      ] as const) {
        const uri = tag === 'icon' ? item['7FE00010']!.BulkDataURI! : instance[tag]!.BulkDataURI!;
        const got = await get(keys.ke!, uri);
        expect(got.status).toBe(200);
        expect(got.parts).toHaveLength(1);
        expect(got.parts[0]!.type).toMatch(/^application\/octet-stream/);
        expect(got.parts[0]!.bytes.equals(value)).toBe(true);
      }
    }
    const base = `${url}/dicomweb/studies/${root}/series/${root}.1/instances/${root}.1.1/bulkdata`;
    expect((await get(keys.ke!, `${base}/00281201`)).status).toBe(404);
    expect((await get(keys.ke!, `${base}/00880200/1/7FE00010`)).status).toBe(404);
    expect((await get(keys.ke!, `${base}/00100010`)).status).toBe(404);
    expect((await get(keys.ke!, `${base}/7FE0`)).status).toBe(400);
    expect((await get(keys.ke!, `${base}/00282000`, 'application/dicom')).status).toBe(406);
    expect((await get(keys.ops!, `${base}/00282000`)).status).toBe(403);
    expect((await get(keys.other!, `${base}/00282000`)).status).toBe(404);
  });

  test('encapsulated pixel data comes one frame a part, as the frames resource sends them', async () => {
    const root = '2.25.5510017';
    const [gray, second, third] = study(root);
    const dir = await mkdtemp(path.join(tmpdir(), 'wado-bulk-'));
    let jls: Buffer;
    try {
      await writeFile(path.join(dir, 'gray.dcm'), gray!.bytes);
      await run('dcmcjpls', [path.join(dir, 'gray.dcm'), path.join(dir, 'gray.jls.dcm')]);
      jls = await readFile(path.join(dir, 'gray.jls.dcm'));
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
    await stow(keys.home!, [jls, second!.bytes, third!.bytes]);
    await studyRouted(root);
    const uri = `${url}/dicomweb/studies/${root}/series/${root}.1/instances/${root}.1.1/bulkdata/7FE00010`;
    const decoded = await get(keys.ke!, uri);
    expect(decoded.parts).toHaveLength(1);
    expect(decoded.parts[0]!.bytes.equals(Buffer.alloc(64, 40))).toBe(true);
    const stored = await get(
      keys.ke!,
      uri,
      'multipart/related; type="application/octet-stream"; transfer-syntax=*',
    );
    expect(parseMediaType(stored.parts[0]!.type)?.parameters['transfer-syntax']).toBe(
      '1.2.840.10008.1.2.4.80',
    );
    expect([...stored.parts[0]!.bytes.subarray(0, 4)]).toEqual([0xff, 0xd8, 0xff, 0xf7]);
  });

  test('a reader abroad gets the URIs under the replacement UIDs, and values the profile removed are gone', async () => {
    const root = '2.25.5510018';
    const sent = withBulkValues(root, `${root}.1.1`, 'explicit-le');
    const [, second, third] = study(root);
    await stow(keys.abroad!, [sent.bytes, second!.bytes, third!.bytes]);
    const caseId = await routedCase(root);
    const replacement = await replacementStudyUid(caseId);
    const res = await fetch(`${url}/dicomweb/studies/${replacement}/metadata`, {
      headers: { authorization: `Bearer ${keys.fr}` },
    });
    const json = (await res.json()) as Json;
    const instance = json.find((j) => j['00280010']!.Value![0] === 8 && j['00280100']!.Value![0] === 16)!;
    expect(JSON.stringify(json)).not.toContain(root);
    const pixelUri = instance['7FE00010']!.BulkDataURI!;
    expect(pixelUri).toContain(`/studies/${replacement}/`);
    const pixels = await get(keys.fr!, pixelUri);
    expect(pixels.parts[0]!.bytes.equals(sent.pixels)).toBe(true);
    for (const [tag, value] of [['00282000', sent.icc]] as const) {
      if (instance[tag]) {
        expect((await get(keys.fr!, instance[tag]!.BulkDataURI!)).parts[0]!.bytes.equals(value)).toBe(true);
      } else {
        expect((await get(keys.fr!, pixelUri.replace('7FE00010', tag))).status).toBe(404);
      }
    }
    // The profile removes the icon (it may show the patient): not in the metadata, and not found by its path.
    expect(instance['00880200']).toBeUndefined();
    expect((await get(keys.fr!, pixelUri.replace('7FE00010', '00880200/0/7FE00010'))).status).toBe(404);
    // The profile removes the icon (it may show the patient): not in the metadata, and not found by its path.
    expect(instance['00880200']).toBeUndefined();
    expect((await get(keys.fr!, pixelUri.replace('7FE00010', '00880200/0/7FE00010'))).status).toBe(404);
    // The original UIDs name nothing for this reader.
    const original = `${url}/dicomweb/studies/${root}/series/${root}.1/instances/${root}.1.1/bulkdata/7FE00010`;
    expect((await get(keys.fr!, original)).status).toBe(404);
  });
});

describe('QIDO-RS search', () => {
  type Json = Array<Record<string, { vr: string; Value?: unknown[] }>>;
  async function search(key: string, path: string) {
    const res = await fetch(`${url}${path}`, { headers: { authorization: `Bearer ${key}` } });
    const text = await res.text();
    return { status: res.status, json: (res.status === 200 ? JSON.parse(text) : []) as Json, text };
  }
  const values = (json: Json, tag: string) => json.map((r) => r[tag]?.Value?.[0]);

  test('studies, series and instances the caller may see, matched and paged as PS3.18 says', async () => {
    const root = '2.25.5510012';
    await sendStudy(keys.home!, root);

    const byUid = await search(keys.ke!, `/dicomweb/studies?StudyInstanceUID=${root}`);
    expect(byUid.status).toBe(200);
    expect(byUid.json).toHaveLength(1);
    const s = byUid.json[0]!;
    expect(s['0020000D']).toEqual({ vr: 'UI', Value: [root] });
    expect(s['00100010']).toEqual({ vr: 'PN', Value: [{ Alphabetic: PATIENT }] });
    expect(s['00100020']).toEqual({ vr: 'LO', Value: [PATIENT_ID] });
    expect(s['00201206']).toEqual({ vr: 'IS', Value: [2] });
    expect(s['00201208']).toEqual({ vr: 'IS', Value: [3] });
    expect(s['00080061']).toEqual({ vr: 'CS', Value: ['CT'] });
    expect(String(s['00081190']!.Value![0])).toMatch(new RegExp(`/dicomweb/studies/${root}$`));

    // Matching: the patient's name with a wildcard and in another case, the ID, the modality; misses find nothing.
    for (const q of [
      'PatientName=okonkwo*',
      `PatientID=${PATIENT_ID}`,
      'ModalitiesInStudy=CT',
      '00100020=MRN-WADO-44?1',
    ]) {
      expect(values((await search(keys.home!, `/dicomweb/studies?${q}`)).json, '0020000D'), q).toContain(
        root,
      );
    }
    for (const q of ['PatientName=Nobody*', 'ModalitiesInStudy=MR', 'StudyDate=19000101-19000102']) {
      expect(values((await search(keys.home!, `/dicomweb/studies?${q}`)).json, '0020000D'), q).not.toContain(
        root,
      );
    }
    expect((await search(keys.home!, '/dicomweb/studies?PatientAge=40')).status).toBe(400);
    expect((await search(keys.home!, `/dicomweb/studies?StudyInstanceUID=${root}&limit=0`)).status).toBe(400);
    // Another clinic finds nothing of it.
    expect((await search(keys.other!, `/dicomweb/studies?StudyInstanceUID=${root}`)).json).toEqual([]);

    const series = await search(keys.ke!, `/dicomweb/studies/${root}/series`);
    expect(values(series.json, '0020000E').sort()).toEqual([`${root}.1`, `${root}.2`]);
    expect(series.json.find((r) => r['0020000E']!.Value![0] === `${root}.1`)!['00201209']).toEqual({
      vr: 'IS',
      Value: [2],
    });
    expect(
      values(
        (await search(keys.ke!, `/dicomweb/studies/${root}/series?SeriesInstanceUID=${root}.2`)).json,
        '0020000E',
      ),
    ).toEqual([`${root}.2`]);

    const instances = await search(keys.ke!, `/dicomweb/studies/${root}/series/${root}.1/instances`);
    expect(values(instances.json, '00080018').sort()).toEqual([`${root}.1.1`, `${root}.1.2`]);
    expect(instances.json[0]!['00280010']).toEqual({ vr: 'US', Value: [8] });
    const paged = await search(
      keys.ke!,
      `/dicomweb/studies/${root}/series/${root}.1/instances?limit=1&offset=1`,
    );
    expect(paged.json).toHaveLength(1);
    expect((await search(keys.ops!, '/dicomweb/studies')).status).toBe(403);
  });

  test('a reader abroad sees and matches the de-identified values only', async () => {
    const root = '2.25.5510013';
    const { caseId } = await sendStudy(keys.abroad!, root);
    const replacement = await replacementStudyUid(caseId);
    const all = await search(keys.fr!, '/dicomweb/studies');
    const mine = all.json.find((r) => r['0020000D']!.Value![0] === replacement)!;
    expect(mine['00100010']).toEqual({ vr: 'PN', Value: [{ Alphabetic: 'ANONYMOUS^TELEREAD' }] });
    expect(all.text).not.toContain('Okonkwo');
    expect(all.text).not.toContain(PATIENT_ID);
    expect(all.text).not.toContain(root);
    // The real name finds nothing; the pseudonym finds the case.
    expect(
      values((await search(keys.fr!, '/dicomweb/studies?PatientName=Okonkwo*')).json, '0020000D'),
    ).not.toContain(replacement);
    expect(
      values((await search(keys.fr!, '/dicomweb/studies?PatientName=ANONYMOUS*')).json, '0020000D'),
    ).toContain(replacement);
    // The real ID finds nothing; the pseudonymous one finds the case, and so does the replacement study UID.
    expect((await search(keys.fr!, `/dicomweb/studies?PatientID=${PATIENT_ID}`)).json).toEqual([]);
    expect(
      values((await search(keys.fr!, `/dicomweb/studies?PatientID=TELEREAD-${caseId}`)).json, '0020000D'),
    ).toEqual([replacement]);
    expect(
      values((await search(keys.fr!, `/dicomweb/studies?StudyInstanceUID=${replacement}`)).json, '0020000D'),
    ).toEqual([replacement]);
    expect((await search(keys.fr!, `/dicomweb/studies?StudyInstanceUID=${root}`)).json).toEqual([]);
    const series = await search(keys.fr!, `/dicomweb/studies/${replacement}/series`);
    expect(series.json).toHaveLength(2);
    expect(series.text).not.toContain(root);
  });

  test('a search by study UID or exact Patient ID finds a study however many newer ones the site has', async () => {
    const root = '2.25.5510019';
    const newer = '2.25.5510020';
    await sendStudy(keys.home!, root);
    const { caseId: newerCase } = await sendStudy(keys.home!, newer);
    // 600 more studies of the site, newer still: case rows, each holding a row that points at an instance of
    // `newer` (the search reads each case's first instance), so the plain search has 600 results to read first.
    await sql`INSERT INTO cases (site_id, kind, priority, study_instance_uid, created_at)
      SELECT 'home', 'imaging', 'routine', '2.25.5519.' || g, now() + interval '1 hour'
      FROM generate_series(1, 600) g`.execute(ctx.db);
    await sql`INSERT INTO files (id, upload_id, site_id, case_id, name, object_key, sha256, bytes, kind, format,
        status, metadata, sop_instance_uid)
      SELECT gen_random_uuid(), f.upload_id, f.site_id, c.id, f.name, f.object_key, f.sha256, f.bytes, f.kind,
        f.format, f.status, f.metadata, f.sop_instance_uid
      FROM cases c, (SELECT * FROM files WHERE case_id = ${newerCase} LIMIT 1) f
      WHERE c.study_instance_uid LIKE '2.25.5519.%'`.execute(ctx.db);
    try {
      // The plain search reads the most recent cases only, and a page of them reads that page only.
      const plain = await search(keys.home!, '/dicomweb/studies');
      expect(plain.json).toHaveLength(500);
      expect(values(plain.json, '0020000D')).not.toContain(root);
      expect((await search(keys.home!, '/dicomweb/studies?limit=3&offset=2')).json).toHaveLength(3);
      for (const q of [`StudyInstanceUID=${root}`, `StudyInstanceUID=2.25.5519.1,${root}`]) {
        expect(values((await search(keys.home!, `/dicomweb/studies?${q}`)).json, '0020000D'), q).toEqual([
          root,
        ]);
      }
      // The patient has other studies at this site (the tests above): all of them, this one included.
      for (const q of [`PatientID=${PATIENT_ID}`, `00100020=${PATIENT_ID}&PatientName=okonkwo*`]) {
        expect(values((await search(keys.home!, `/dicomweb/studies?${q}`)).json, '0020000D'), q).toContain(
          root,
        );
      }
      // Another site's clinic finds nothing of it, by either key.
      expect((await search(keys.other!, `/dicomweb/studies?PatientID=${PATIENT_ID}`)).json).toEqual([]);
      expect((await search(keys.other!, `/dicomweb/studies?StudyInstanceUID=${root}`)).json).toEqual([]);
      const many = Array.from({ length: 101 }, (_, i) => `2.25.5519.${i + 1}`).join(',');
      expect((await search(keys.home!, `/dicomweb/studies?StudyInstanceUID=${many}`)).status).toBe(400);
    } finally {
      await sql`DELETE FROM files WHERE case_id IN (SELECT id FROM cases WHERE study_instance_uid LIKE '2.25.5519.%')`.execute(
        ctx.db,
      );
      await sql`DELETE FROM cases WHERE study_instance_uid LIKE '2.25.5519.%'`.execute(ctx.db);
    }
  });
});
