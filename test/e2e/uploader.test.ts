import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { createReadStream, createWriteStream } from 'node:fs';
import { copyFile, mkdir, mkdtemp, open, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Upload } from 'tus-js-client';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import type { App } from '../../src/api/build-app.js';
import { startApi } from '../../src/api/start-api.js';
import { addSite, createKey } from '../../src/cli/admin-commands.js';
import type { Context } from '../../src/context.js';
import { ingestJobFileIds } from '../../src/pipeline/queues.js';
import { type RunningWorkers, runWorkers } from '../../src/pipeline/run-worker.js';
import { tusStagingDir } from '../../src/uploads/publish-staged-file.js';
import { repoRoot } from '../corpus.js';
import { waitFor } from '../helpers/api-client.js';
import { writeDicom } from '../helpers/dicom-writer.js';
import { type FaultProxy, startFaultProxy } from '../helpers/fault-proxy.js';
import { spawnTeleread } from '../helpers/processes.js';
import { createTestContext } from '../helpers/test-context.js';

const MiB = 1024 * 1024;
const SIZE = 200 * MiB;
/** Files larger than this are refused by the server under test (413), to see a final failure reported. */
const MAX_UPLOAD = 300 * MiB;

let t: Awaited<ReturnType<typeof createTestContext>>;
let ctx: Context;
let app: App;
let workers: RunningWorkers;
let url: string;
let key: string;
let proxy: FaultProxy;
let scratch: string;

beforeAll(async () => {
  t = await createTestContext({ MAX_UPLOAD_BYTES: String(MAX_UPLOAD) });
  ctx = t.ctx;
  scratch = await mkdtemp(path.join(tmpdir(), 'teleread-uploader-'));
  await addSite(ctx.db, { id: 'clinic-a', jurisdiction: 'KE' });
  key = (await createKey(ctx.db, { role: 'clinic', site: 'clinic-a' })).key;
  workers = await runWorkers(ctx);
  ({ app, url } = await startApi(ctx, 0));
  proxy = await startFaultProxy({ port: Number(new URL(url).port) });
});

afterAll(async () => {
  await proxy?.close();
  await app?.close();
  await workers?.close();
  await t?.dispose();
  await rm(scratch, { recursive: true, force: true });
});

/** A file of random 1 MiB blocks; returns its sha256. */
async function randomFile(file: string, bytes: number): Promise<string> {
  await mkdir(path.dirname(file), { recursive: true });
  const out = createWriteStream(file);
  const hash = createHash('sha256');
  for (let done = 0; done < bytes; done += MiB) {
    const block = randomBytes(Math.min(MiB, bytes - done));
    hash.update(block);
    if (!out.write(block)) await once(out, 'drain');
  }
  out.end();
  await once(out, 'finish');
  return hash.digest('hex');
}

function upload(args: string[], stateDir: string) {
  return spawnTeleread(
    ['upload', '--server', proxy.url, '--key', key, '--state-dir', stateDir, '--parallel', '2', ...args],
    { LOG_LEVEL: 'silent' },
  );
}

async function storedSha(objectKey: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of await ctx.storage.get(objectKey)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

async function ingestJobsFor(fileId: string): Promise<number> {
  const jobs = await ctx.queues.ingest.getJobs(['waiting', 'delayed', 'active', 'completed', 'failed']);
  return jobs.filter((j) => ingestJobFileIds(j.data).includes(fileId)).length;
}

describe('teleread upload over a poor link', () => {
  test('a 200 MB file arrives intact through a proxy that cuts the connection every 10 MB', async () => {
    const file = path.join(scratch, 'cut', 'slide-cut.bin');
    const sha = await randomFile(file, SIZE);
    proxy.setFault({ kind: 'cut', everyBytes: 10 * MiB });
    proxy.resetCounters();
    const run = upload([file], path.join(scratch, 'state-cut'));
    const code = await run.exited;
    proxy.setFault({ kind: 'none' });
    expect(code, run.output()).toBe(0);
    expect(proxy.faults).toBeGreaterThanOrEqual(15);
    expect(run.output()).toMatch(/retry slide-cut\.bin/);

    const rows = await ctx.db.selectFrom('files').selectAll().where('name', '=', 'slide-cut.bin').execute();
    expect(rows).toHaveLength(1);
    expect(rows[0]!.sha256).toBe(sha);
    expect(await storedSha(rows[0]!.object_key)).toBe(sha);
    expect(await ingestJobsFor(rows[0]!.id)).toBe(1);
    // Each cut loses at most the chunk in flight (8 MiB): far from sending the file twice.
    expect(proxy.upstreamBytes).toBeLessThan(SIZE + proxy.faults * 8 * MiB + MiB);
    // The completed upload is printed on stdout as JSON.
    expect(run.output()).toContain(`"id":"${rows[0]!.id}"`);
  });

  test('killed mid-way and run again, it sends only the bytes the server had not acknowledged', async () => {
    const file = path.join(scratch, 'kill', 'slide-kill.bin');
    const sha = await randomFile(file, SIZE);
    const stateDir = path.join(scratch, 'state-kill');
    proxy.resetCounters();
    const first = upload(['--parallel', '1', file], stateDir);
    await waitFor(
      '80 MB through the proxy',
      async () => (proxy.upstreamBytes > 80 * MiB ? true : undefined),
      30_000,
    );
    first.child.kill('SIGKILL');
    expect(await first.exited).toBe('SIGKILL');

    // What the server holds once it has dropped the chunk the killed client left half-sent.
    const session = await waitFor('the tus session', async () =>
      ctx.db
        .selectFrom('upload_sessions')
        .selectAll()
        .where('name', '=', 'slide-kill.bin')
        .executeTakeFirst(),
    );
    const staged = path.join(tusStagingDir(ctx.storage, ''), session.id);
    let acknowledged = -1;
    for (let i = 0; i < 100; i++) {
      const size = (await stat(staged)).size;
      if (size === acknowledged && size % (8 * MiB) === 0) break;
      acknowledged = size;
      await sleep(200);
    }
    expect(acknowledged).toBeGreaterThan(0);
    expect(acknowledged).toBeLessThan(SIZE);

    proxy.resetCounters();
    const second = upload(['--parallel', '1', file], stateDir);
    expect(await second.exited, second.output()).toBe(0);
    expect(second.output()).toContain(`resuming slide-kill.bin at ${(acknowledged / 1e6).toFixed(1)} MB`);
    const remaining = SIZE - acknowledged;
    // The remaining file bytes, plus request headers and small JSON bodies.
    expect(proxy.upstreamBytes).toBeGreaterThanOrEqual(remaining);
    expect(proxy.upstreamBytes).toBeLessThan(remaining + 64 * 1024);

    const rows = await ctx.db.selectFrom('files').selectAll().where('name', '=', 'slide-kill.bin').execute();
    expect(rows).toHaveLength(1);
    expect(rows[0]!.sha256).toBe(sha);
    expect(await storedSha(rows[0]!.object_key)).toBe(sha);
    expect(await ingestJobsFor(rows[0]!.id)).toBe(1);
  });

  test('a folder sent twice sends no file bytes the second time; its study and ECG record form one case each', async () => {
    const folder = path.join(scratch, 'visit');
    await mkdir(path.join(folder, 'ecg'), { recursive: true });
    // DICOM recognised by content: no extension.
    await copyFile(path.join(repoRoot, 'fixtures/imaging/CT_small.dcm'), path.join(folder, 'IM0001'));
    for (const f of ['s0010_re.hea', 's0010_re.dat', 's0010_re.xyz']) {
      await copyFile(path.join(repoRoot, 'fixtures/ecg', f), path.join(folder, 'ecg', f));
    }
    await randomFile(path.join(folder, 'notes.bin'), 3 * MiB);

    proxy.resetCounters();
    const first = upload([folder], path.join(scratch, 'state-visit'));
    expect(await first.exited, first.output()).toBe(0);
    expect(first.output()).toMatch(/study [0-9.]+: /);
    const firstBytes = proxy.upstreamBytes;
    expect(firstBytes).toBeGreaterThan(3 * MiB);

    const [dicom] = await ctx.db.selectFrom('files').selectAll().where('name', '=', 'IM0001').execute();
    const uploadId = dicom!.upload_id;
    const batchFiles = await ctx.db
      .selectFrom('files')
      .select('name')
      .where('upload_id', '=', uploadId)
      .execute();
    expect(batchFiles.map((f) => f.name).sort()).toEqual(
      ['IM0001', 'notes.bin', 's0010_re.dat', 's0010_re.hea', 's0010_re.xyz'].sort(),
    );
    const ecg = await waitFor('the ECG case', async () => {
      const f = await ctx.db
        .selectFrom('files')
        .select(['case_id', 'status'])
        .where('name', '=', 's0010_re.hea')
        .executeTakeFirstOrThrow();
      return f.case_id ?? undefined;
    });
    // The signal files are ingested by their own jobs; wait until all three have joined the record's case.
    const ecgFiles = await waitFor('the signal files to join the ECG case', async () => {
      const rows = await ctx.db.selectFrom('files').select('name').where('case_id', '=', ecg).execute();
      return rows.length >= 3 ? rows : undefined;
    });
    expect(ecgFiles.map((f) => f.name).sort()).toEqual(['s0010_re.dat', 's0010_re.hea', 's0010_re.xyz']);

    // Second run, even with a fresh state folder: every hash is known, no file byte crosses the link.
    proxy.resetCounters();
    const second = upload([folder], path.join(scratch, 'state-visit-2'));
    expect(await second.exited, second.output()).toBe(0);
    expect(second.output()).toContain('5 skipped (already on the server)');
    expect(proxy.upstreamBytes).toBeLessThan(4096);
    const sessions = await ctx.db
      .selectFrom('upload_sessions')
      .select('id')
      .where('name', '=', 'IM0001')
      .execute();
    expect(sessions).toHaveLength(1);

    // The same study sent again by another client that does not ask first: still one case, the instance
    // stored once.
    const studyCase = await waitFor('the DICOM case', async () => {
      const f = await ctx.db
        .selectFrom('files')
        .select('case_id')
        .where('id', '=', dicom!.id)
        .executeTakeFirstOrThrow();
      return f.case_id ?? undefined;
    });
    await new Promise<void>((resolve, reject) => {
      const up = new Upload(createReadStream(path.join(folder, 'IM0001')), {
        endpoint: `${url}/v1/tus`,
        metadata: { filename: 'IM0001-again' },
        headers: { authorization: `Bearer ${key}` },
        onError: reject,
        onSuccess: () => resolve(),
      });
      up.start();
    });
    const again = await waitFor('the resent instance to be ingested', async () => {
      const f = await ctx.db
        .selectFrom('files')
        .selectAll()
        .where('name', '=', 'IM0001-again')
        .executeTakeFirst();
      return f?.ingested_at ? f : undefined;
    });
    expect(again.case_id).toBe(studyCase);
    expect(again.duplicate_of).toBe(dicom!.id);
    const cases = await ctx.db
      .selectFrom('cases')
      .select('id')
      .where('site_id', '=', 'clinic-a')
      .where('kind', '=', 'imaging')
      .execute();
    expect(cases).toHaveLength(1);
  });

  test('--dry-run lists what would be sent and sends nothing', async () => {
    const folder = path.join(scratch, 'dry');
    await randomFile(path.join(folder, 'new.bin'), MiB);
    await copyFile(path.join(repoRoot, 'fixtures/imaging/CT_small.dcm'), path.join(folder, 'old.dcm'));
    // A CD export's index: left out, since the server refuses it (the files it lists are what counts).
    const index = writeDicom([{ tag: 0x00041220, vr: 'SQ', value: [] }], {
      sopClassUid: '1.2.840.10008.1.3.10',
    });
    await writeFile(path.join(folder, 'DICOMDIR'), index);
    proxy.resetCounters();
    const run = upload(['--dry-run', folder], path.join(scratch, 'state-dry'));
    expect(await run.exited, run.output()).toBe(0);
    const out = run.output();
    expect(out).toMatch(/^send\s+.*new\.bin {2}1\.0 MB {2}unknown$/m);
    expect(out).toMatch(/^skip \(already sent\)\s+.*old\.dcm {2}.* {2}dicom {2}study [0-9.]+$/m);
    expect(out).toMatch(/^skip \(DICOMDIR index\)\s+.*DICOMDIR {2}.* {2}dicom$/m);
    expect(out).toContain('would send 1 file(s), 1.0 MB; 1 already on the server');
    expect(proxy.upstreamBytes).toBeLessThan(4096);
    expect(
      await ctx.db.selectFrom('upload_sessions').select('id').where('name', '=', 'new.bin').execute(),
    ).toEqual([]);
  });

  test('a file that finally fails is listed in the summary and the exit status is non-zero', async () => {
    const big = path.join(scratch, 'too-big', 'huge.bin');
    await mkdir(path.dirname(big), { recursive: true });
    const handle = await open(big, 'w');
    await handle.truncate(MAX_UPLOAD + MiB); // sparse: nothing is written, the server refuses it by its length
    await handle.close();
    const fine = path.join(scratch, 'fine', 'small.bin');
    await randomFile(fine, 64 * 1024);
    const run = upload([big, fine], path.join(scratch, 'state-fail'));
    expect(await run.exited).toBe(1);
    const out = run.output();
    expect(out).toMatch(/failed \(1\); run the same command again to resume:\n {2}.*huge\.bin: .*413/);
    expect(
      await ctx.db.selectFrom('files').select('id').where('name', '=', 'small.bin').execute(),
    ).toHaveLength(1);
  });
});
