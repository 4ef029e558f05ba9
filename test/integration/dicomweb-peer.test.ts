import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import type { App } from '../../src/api/build-app.js';
import { startApi } from '../../src/api/start-api.js';
import { addReader, addSite, createKey } from '../../src/cli/admin-commands.js';
import type { Context } from '../../src/context.js';
import { parseDicom } from '../../src/formats/dicom/parse-dicom.js';
import { type RunningWorkers, runWorkers } from '../../src/pipeline/run-worker.js';
import { waitFor } from '../helpers/api-client.js';
import { threeInstanceStudy } from '../helpers/dicom-writer.js';
import { freePort, waitForHttp } from '../helpers/processes.js';
import { createTestContext } from '../helpers/test-context.js';

/**
 * DICOMweb against a real peer: Orthanc with its DICOMweb plugin (Debian packages orthanc, orthanc-dicomweb)
 * configured with Teleread as a remote DICOMweb server. Orthanc's client sends a study to Teleread with STOW-RS
 * and pulls it back with WADO-RS, and a reader abroad's Orthanc pulls the de-identified copies by the replacement
 * UIDs. Orthanc listens on loopback only (RemoteAccessAllowed false, DICOM port off) and is stopped by its PID.
 */

const ORTHANC = '/usr/sbin/Orthanc';
const DICOMWEB_PLUGIN = '/usr/share/orthanc/plugins/libOrthancDicomWeb.so';
const hasOrthancDicomweb = existsSync(ORTHANC) && existsSync(DICOMWEB_PLUGIN);

const PATIENT = 'Achieng^Wanjiru';
const PATIENT_ID = 'MRN-PEER-2093';

let t: Awaited<ReturnType<typeof createTestContext>>;
let ctx: Context;
let app: App;
let workers: RunningWorkers;
let orthanc: ChildProcess | undefined;
let orthancUrl: string;
let scratch: string;
let apiUrl: string;
let frKey: string;

function study(root: string): Uint8Array[] {
  return threeInstanceStudy(root, { name: PATIENT, id: PATIENT_ID }).map((i) => i.bytes);
}

async function orthancJson<T>(method: string, p: string, body?: unknown): Promise<T> {
  const res = await fetch(`${orthancUrl}${p}`, {
    method,
    ...(body === undefined
      ? {}
      : body instanceof Uint8Array
        ? { body, headers: { 'content-type': 'application/dicom' } }
        : { body: JSON.stringify(body), headers: { 'content-type': 'application/json' } }),
  });
  const text = await res.text();
  if (!res.ok) throw new Error(`Orthanc ${method} ${p}: HTTP ${res.status} ${text.slice(0, 500)}`);
  return (text ? JSON.parse(text) : undefined) as T;
}

/** Stores the files in Orthanc; returns Orthanc's id of their study. */
async function putInOrthanc(files: Uint8Array[]): Promise<string> {
  let studyId = '';
  for (const f of files)
    studyId = (await orthancJson<{ ParentStudy: string }>('POST', '/instances', f)).ParentStudy;
  return studyId;
}

/** The files Orthanc holds, by SOP Instance UID. */
async function filesInOrthanc(): Promise<Map<string, Uint8Array>> {
  const out = new Map<string, Uint8Array>();
  for (const id of await orthancJson<string[]>('GET', '/instances')) {
    const res = await fetch(`${orthancUrl}/instances/${id}/file`);
    const bytes = new Uint8Array(await res.arrayBuffer());
    out.set(parseDicom(bytes).sopInstanceUid!, bytes);
  }
  return out;
}

async function routedCase(studyUid: string): Promise<{ id: string; assigned: string | null }> {
  return waitFor(`study ${studyUid} routed`, async () => {
    const c = await ctx.db
      .selectFrom('cases')
      .select(['id', 'status', 'assigned_reader_id'])
      .where('study_instance_uid', '=', studyUid)
      .executeTakeFirst();
    return c?.status === 'routed' ? { id: c.id, assigned: c.assigned_reader_id } : undefined;
  });
}

beforeAll(async () => {
  if (!hasOrthancDicomweb) return;
  t = await createTestContext({ STUDY_STABLE_SECONDS: '0' });
  ctx = t.ctx;
  await addSite(ctx.db, { id: 'home', jurisdiction: 'KE' });
  await addSite(ctx.db, { id: 'abroad', jurisdiction: 'UG', crossBorder: 'deidentified' });
  await addReader(ctx.db, { id: 'radio-ke', specialties: 'radiology', jurisdictions: 'KE' });
  await addReader(ctx.db, { id: 'radio-fr', specialties: 'radiology', jurisdictions: 'FR' });
  const key = async (k: Parameters<typeof createKey>[1]) => (await createKey(ctx.db, k)).key;
  const servers = {
    home: await key({ role: 'clinic', site: 'home' }),
    abroad: await key({ role: 'clinic', site: 'abroad' }),
    fr: await key({ role: 'reader', reader: 'radio-fr' }),
  };
  workers = await runWorkers(ctx);
  let url: string;
  ({ app, url } = await startApi(ctx, 0));
  apiUrl = url;
  frKey = servers.fr;

  scratch = await mkdtemp(path.join(tmpdir(), 'teleread-orthanc-'));
  const port = await freePort();
  orthancUrl = `http://127.0.0.1:${port}`;
  const config = {
    Name: 'TelereadPeer',
    StorageDirectory: path.join(scratch, 'db'),
    IndexDirectory: path.join(scratch, 'db'),
    HttpPort: port,
    RemoteAccessAllowed: false,
    AuthenticationEnabled: false,
    DicomServerEnabled: false,
    Plugins: [DICOMWEB_PLUGIN],
    DicomWeb: {
      Enable: true,
      Servers: Object.fromEntries(
        Object.entries(servers).map(([name, k]) => [
          name,
          { Url: `${url}/dicomweb/`, HttpHeaders: { Authorization: `Bearer ${k}` } },
        ]),
      ),
    },
  };
  const configFile = path.join(scratch, 'orthanc.json');
  await writeFile(configFile, JSON.stringify(config));
  orthanc = spawn(ORTHANC, [configFile], { stdio: 'ignore' });
  await waitForHttp(`${orthancUrl}/system`, 60_000);
}, 120_000);

afterAll(async () => {
  if (orthanc?.pid !== undefined && orthanc.exitCode === null) {
    const exited = new Promise((resolve) => orthanc!.once('exit', resolve));
    process.kill(orthanc.pid, 'SIGTERM');
    await exited;
  }
  await app?.close();
  await workers?.close();
  await t?.dispose();
  if (scratch) await rm(scratch, { recursive: true, force: true });
});

describe.runIf(hasOrthancDicomweb)("Orthanc's DICOMweb client against Teleread", () => {
  test('Orthanc sends a study with STOW-RS, finds it with QIDO-RS and pulls it back with WADO-RS, byte for byte', async () => {
    const root = '2.25.6620001';
    const sent = study(root);
    const orthancStudy = await putInOrthanc(sent);
    await orthancJson('POST', '/dicom-web/servers/home/stow', { Resources: [orthancStudy] });
    const kase = await routedCase(root);
    expect(kase.assigned).toBe('radio-ke');
    const stored = await ctx.db.selectFrom('files').select('status').where('case_id', '=', kase.id).execute();
    expect(stored.map((f) => f.status)).toEqual(['processed', 'processed', 'processed']);

    // Orthanc's QIDO-RS client finds the study and its series; it answers with the attributes it parsed from
    // Teleread's DICOM JSON, in its own format (one value as a string; it keeps no value of the counts, which
    // DICOM JSON gives as numbers, as Orthanc's own server gives them too).
    type Parsed = Array<Record<string, { Value?: unknown }>>;
    const found = await orthancJson<Parsed>('POST', '/dicom-web/servers/home/qido', {
      Uri: '/studies',
      Arguments: { PatientID: PATIENT_ID },
    });
    const ours = found.find((s) => s['0020000D']?.Value === root);
    expect(ours?.['00100010']?.Value).toBe(PATIENT);
    const series = await orthancJson<Parsed>('POST', '/dicom-web/servers/home/qido', {
      Uri: `/studies/${root}/series`,
    });
    expect(series.map((s) => s['0020000E']?.Value).sort()).toEqual([`${root}.1`, `${root}.2`]);

    await orthancJson('DELETE', `/studies/${orthancStudy}`);
    expect(await orthancJson<string[]>('GET', '/instances')).toEqual([]);
    await orthancJson('POST', '/dicom-web/servers/home/retrieve', { Resources: [{ Study: root }] });
    const pulled = await filesInOrthanc();
    expect([...pulled.keys()].sort()).toEqual([`${root}.1.1`, `${root}.1.2`, `${root}.2.1`]);
    for (const original of sent) {
      const sop = parseDicom(original).sopInstanceUid!;
      expect(Buffer.from(pulled.get(sop)!).equals(Buffer.from(original)), sop).toBe(true);
    }
    for (const id of await orthancJson<string[]>('GET', '/studies'))
      await orthancJson('DELETE', `/studies/${id}`);
  });

  test("a reader abroad's Orthanc pulls the de-identified copies by the replacement UIDs", async () => {
    const root = '2.25.6620002';
    const orthancStudy = await putInOrthanc(study(root));
    await orthancJson('POST', '/dicom-web/servers/abroad/stow', { Resources: [orthancStudy] });
    const kase = await routedCase(root);
    expect(kase.assigned).toBe('radio-fr');
    await orthancJson('DELETE', `/studies/${orthancStudy}`);
    // The reader learns the study's replacement UID from the case, as their worklist leads them to it.
    const detail = await fetch(`${apiUrl}/v1/cases/${kase.id}`, {
      headers: { authorization: `Bearer ${frKey}` },
    });
    const replacement = ((await detail.json()) as { studyInstanceUid: string }).studyInstanceUid;
    expect(replacement).toMatch(/^2\.25\./);

    await orthancJson('POST', '/dicom-web/servers/fr/retrieve', {
      Resources: [{ Study: replacement }],
    });
    const pulled = await filesInOrthanc();
    expect(pulled.size).toBe(3);
    for (const bytes of pulled.values()) {
      const copy = parseDicom(bytes);
      expect(copy.studyInstanceUid).toBe(replacement);
      expect(copy.patient).toMatchObject({ name: 'ANONYMOUS^TELEREAD', id: `TELEREAD-${kase.id}` });
      const text = Buffer.from(bytes).toString('latin1');
      expect(text).not.toContain('Achieng');
      expect(text).not.toContain(PATIENT_ID);
    }
    // By its original UID the study is not there for this reader: Orthanc's retrieve fails.
    await expect(
      orthancJson('POST', '/dicom-web/servers/fr/retrieve', { Resources: [{ Study: root }] }),
    ).rejects.toThrow(/HTTP/);
  });
});
