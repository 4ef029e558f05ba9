import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { once } from 'node:events';
import { createReadStream, createWriteStream } from 'node:fs';
import { access, mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Upload } from 'tus-js-client';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import type { App } from '../../src/api/build-app.js';
import { startApi } from '../../src/api/start-api.js';
import { addSite, createKey } from '../../src/cli/admin-commands.js';
import { DEFAULT_UPLOADER_OPTIONS, runUploader } from '../../src/client/resumable-uploader.js';
import type { Context } from '../../src/context.js';
import { ingestJobFileIds } from '../../src/pipeline/queues.js';
import { tusStagingDir } from '../../src/uploads/publish-staged-file.js';
import { sweepUploads } from '../../src/uploads/sweep-uploads.js';
import { apiClient } from '../helpers/api-client.js';
import { type FaultProxy, startFaultProxy } from '../helpers/fault-proxy.js';
import { createTestContext } from '../helpers/test-context.js';

let t: Awaited<ReturnType<typeof createTestContext>>;
let ctx: Context;
let app: App;
let url: string;
let call: ReturnType<typeof apiClient>;
let scratch: string;
const keys: Record<string, string> = {};

beforeAll(async () => {
  t = await createTestContext();
  ctx = t.ctx;
  scratch = await mkdtemp(path.join(tmpdir(), 'teleread-tus-'));
  await addSite(ctx.db, { id: 'clinic-a', jurisdiction: 'KE' });
  await addSite(ctx.db, { id: 'clinic-b', jurisdiction: 'KE' });
  keys.a = (await createKey(ctx.db, { role: 'clinic', site: 'clinic-a' })).key;
  keys.b = (await createKey(ctx.db, { role: 'clinic', site: 'clinic-b' })).key;
  keys.ops = (await createKey(ctx.db, { role: 'ops' })).key;
  ({ app, url } = await startApi(ctx, 0));
  call = apiClient(url);
});

afterAll(async () => {
  await app?.close();
  await t?.dispose();
  await rm(scratch, { recursive: true, force: true });
});

const sha256 = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');
const b64 = (s: string) => Buffer.from(s).toString('base64');
const metadata = (m: Record<string, string>) =>
  Object.entries(m)
    .map(([k, v]) => `${k} ${b64(v)}`)
    .join(',');

async function tus(
  method: string,
  target: string,
  opts: { key?: string | null; headers?: Record<string, string>; body?: Uint8Array } = {},
): Promise<Response> {
  const headers: Record<string, string> = { 'tus-resumable': '1.0.0', ...opts.headers };
  const key = opts.key === undefined ? keys.a : opts.key;
  if (key) headers.authorization = `Bearer ${key}`;
  return fetch(new URL(target, url), {
    method,
    headers,
    ...(opts.body ? { body: opts.body } : {}),
  });
}

async function create(size: number, meta: Record<string, string>, key = keys.a): Promise<string> {
  const res = await tus('POST', '/v1/tus', {
    key,
    headers: { 'upload-length': String(size), 'upload-metadata': metadata(meta) },
  });
  expect(res.status).toBe(201);
  const location = res.headers.get('location');
  expect(location).toMatch(/^\/v1\/tus\/[0-9a-f]{32}$/);
  return location!;
}

function patch(location: string, offset: number, body: Uint8Array, headers: Record<string, string> = {}) {
  return tus('PATCH', location, {
    headers: {
      'upload-offset': String(offset),
      'content-type': 'application/offset+octet-stream',
      ...headers,
    },
    body,
  });
}

async function offsetOf(location: string): Promise<number> {
  const res = await tus('HEAD', location);
  expect(res.status).toBe(200);
  return Number(res.headers.get('upload-offset'));
}

async function ingestJobsFor(fileId: string): Promise<number> {
  const jobs = await ctx.queues.ingest.getJobs(['waiting', 'delayed', 'active', 'completed', 'failed']);
  return jobs.filter((j) => ingestJobFileIds(j.data).includes(fileId)).length;
}

const checksum = (b: Uint8Array) => `sha256 ${createHash('sha256').update(b).digest('base64')}`;

describe('tus 1.0 at /v1/tus', () => {
  test('OPTIONS advertises the extensions, sha256 checksums and the size limit', async () => {
    const res = await tus('OPTIONS', '/v1/tus', { key: null });
    expect(res.status).toBe(204);
    expect(res.headers.get('tus-version')).toBe('1.0.0');
    const extensions = res.headers.get('tus-extension')?.split(',') ?? [];
    for (const e of ['creation', 'creation-with-upload', 'termination', 'expiration', 'checksum']) {
      expect(extensions).toContain(e);
    }
    expect(res.headers.get('tus-checksum-algorithm')).toBe('sha256');
    expect(Number(res.headers.get('tus-max-size'))).toBe(ctx.config.maxUploadBytes);
  });

  test('only clinic keys may upload, and a clinic sees only its own uploads', async () => {
    const anonymous = await tus('POST', '/v1/tus', { key: null, headers: { 'upload-length': '1' } });
    expect(anonymous.status).toBe(401);
    expect(anonymous.headers.get('tus-resumable')).toBe('1.0.0');
    const ops = await tus('POST', '/v1/tus', { key: keys.ops, headers: { 'upload-length': '1' } });
    expect(ops.status).toBe(403);

    const location = await create(10, { filename: 'mine.bin' });
    expect((await tus('HEAD', location, { key: keys.b })).status).toBe(404);
    expect((await patch(location, 0, new Uint8Array(10))).status).toBe(204);
    expect((await tus('HEAD', '/v1/tus/0123456789abcdef0123456789abcdef')).status).toBe(404);
  });

  test('creation-with-upload: one request stores a small file with its name, priority and notes', async () => {
    const body = randomBytes(4096);
    const res = await tus('POST', '/v1/tus', {
      headers: {
        'upload-length': String(body.length),
        'upload-metadata': metadata({ filename: '../evil/ecg.xml', priority: 'stat', notes: 'chest pain' }),
        'content-type': 'application/offset+octet-stream',
        'upload-checksum': checksum(body),
      },
      body,
    });
    expect(res.status).toBe(201);
    expect(res.headers.get('upload-offset')).toBe(String(body.length));
    const fileId = res.headers.get('teleread-file-id')!;
    const uploadId = res.headers.get('teleread-upload-id')!;
    const file = await ctx.db
      .selectFrom('files')
      .selectAll()
      .where('id', '=', fileId)
      .executeTakeFirstOrThrow();
    expect(file).toMatchObject({ name: 'ecg.xml', sha256: sha256(body), bytes: '4096', upload_id: uploadId });
    const upload = await ctx.db
      .selectFrom('uploads')
      .selectAll()
      .where('id', '=', uploadId)
      .executeTakeFirstOrThrow();
    expect(upload).toMatchObject({ site_id: 'clinic-a', priority: 'stat', notes: 'chest pain' });
    expect(Buffer.from(await ctx.storage.getBytes(file.object_key)).equals(body)).toBe(true);
    expect(await ingestJobsFor(fileId)).toBe(1);
    const audit = await ctx.db
      .selectFrom('audit_events')
      .select('detail')
      .where('action', '=', 'upload.received')
      .execute();
    expect(audit.map((a) => a.detail)).toContainEqual(expect.objectContaining({ uploadId, channel: 'tus' }));
  });

  test('a chunk whose Upload-Checksum does not match is refused with 460 and leaves the offset as it was', async () => {
    const data = randomBytes(3000);
    const location = await create(data.length, { filename: 'a.bin' });
    expect(
      (
        await patch(location, 0, data.subarray(0, 1000), {
          'upload-checksum': checksum(data.subarray(0, 1000)),
        })
      ).status,
    ).toBe(204);
    const wrong = await patch(location, 1000, data.subarray(1000, 2000), {
      'upload-checksum': checksum(data.subarray(0, 1000)),
    });
    expect(wrong.status).toBe(460);
    expect(await offsetOf(location)).toBe(1000);
    const md5 = await patch(location, 1000, data.subarray(1000, 2000), { 'upload-checksum': 'md5 AAAA' });
    expect(md5.status).toBe(400);
    expect(await offsetOf(location)).toBe(1000);
    // The rest, in two verified chunks: the stored file is exactly the source.
    expect(
      (
        await patch(location, 1000, data.subarray(1000, 2000), {
          'upload-checksum': checksum(data.subarray(1000, 2000)),
        })
      ).status,
    ).toBe(204);
    const last = await patch(location, 2000, data.subarray(2000), {
      'upload-checksum': checksum(data.subarray(2000)),
    });
    expect(last.status).toBe(204);
    const file = await ctx.db
      .selectFrom('files')
      .selectAll()
      .where('id', '=', last.headers.get('teleread-file-id')!)
      .executeTakeFirstOrThrow();
    expect(file.sha256).toBe(sha256(data));
  });

  test('a final PATCH sent twice, and HEADs racing it, record the file once with one ingest job', async () => {
    const data = randomBytes(200_000);
    const location = await create(data.length, { filename: 'twice.bin' });
    expect((await patch(location, 0, data.subarray(0, 100_000))).status).toBe(204);
    const [first, heads] = await Promise.all([
      patch(location, 100_000, data.subarray(100_000)),
      Promise.all([offsetOf(location), offsetOf(location)]),
    ]);
    expect(first.status).toBe(204);
    for (const o of heads) expect([100_000, 200_000]).toContain(o);
    // The answer was "lost": the client sends the last chunk again, then an empty PATCH at the end.
    const again = await patch(location, 200_000, new Uint8Array(0));
    expect(again.status).toBe(204);
    expect(again.headers.get('upload-offset')).toBe('200000');
    expect(again.headers.get('teleread-file-id')).toBe(first.headers.get('teleread-file-id'));
    const stale = await patch(location, 100_000, data.subarray(100_000));
    expect(stale.status).toBe(409);
    const fileId = first.headers.get('teleread-file-id')!;
    const rows = await ctx.db.selectFrom('files').select('id').where('name', '=', 'twice.bin').execute();
    expect(rows.map((r) => r.id)).toEqual([fileId]);
    expect(await ingestJobsFor(fileId)).toBe(1);
    expect(await offsetOf(location)).toBe(200_000);
  });

  test('a whole file that does not match its declared sha256 is discarded', async () => {
    const data = randomBytes(5000);
    const location = await create(data.length, { filename: 'liar.bin', sha256: sha256(randomBytes(10)) });
    const res = await patch(location, 0, data);
    expect(res.status).toBe(460);
    expect((await tus('HEAD', location)).status).toBe(410);
    expect(await ctx.db.selectFrom('files').select('id').where('name', '=', 'liar.bin').execute()).toEqual(
      [],
    );
  });

  test('termination: DELETE drops the partial upload; a finished one cannot be deleted', async () => {
    const location = await create(1000, { filename: 'gone.bin' });
    expect((await patch(location, 0, randomBytes(400))).status).toBe(204);
    const id = location.split('/').pop()!;
    const staged = path.join(tusStagingDir(ctx.storage, ''), id);
    await access(staged);
    expect((await tus('DELETE', location)).status).toBe(204);
    expect((await tus('HEAD', location)).status).toBe(410);
    await expect(access(staged)).rejects.toThrow();

    const done = await create(10, { filename: 'kept.bin' });
    expect((await patch(done, 0, randomBytes(10))).status).toBe(204);
    expect((await tus('DELETE', done)).status).toBe(400);
  });

  test('metadata is validated: bad priority, bad batch id, unknown batch', async () => {
    const bad: Array<Record<string, string>> = [
      { priority: 'asap' },
      { batch: 'not-a-uuid' },
      { sha256: 'abc' },
    ];
    for (const meta of bad) {
      const res = await tus('POST', '/v1/tus', {
        headers: { 'upload-length': '5', 'upload-metadata': metadata({ filename: 'x', ...meta }) },
      });
      expect(res.status).toBe(400);
    }
    const unknown = await tus('POST', '/v1/tus', {
      headers: {
        'upload-length': '5',
        'upload-metadata': metadata({ filename: 'x', batch: '00000000-0000-4000-8000-000000000000' }),
      },
    });
    expect(unknown.status).toBe(404);
  });

  test('expired partial uploads are removed by the sweep, answer 410, and are counted in /metrics', async () => {
    const location = await create(1000, { filename: 'abandoned.bin' });
    expect((await patch(location, 0, randomBytes(100))).status).toBe(204);
    const id = location.split('/').pop()!;
    // No clock is faked: the session is made to look idle for longer than UPLOAD_EXPIRY_SECONDS.
    await ctx.db
      .updateTable('upload_sessions')
      .set({ last_activity_at: new Date(Date.now() - (ctx.config.uploadExpirySeconds + 60) * 1000) })
      .where('id', '=', id)
      .execute();
    expect((await tus('HEAD', location)).status).toBe(410);
    const before = await call<string>(keys.ops!, '/metrics');
    const swept = await sweepUploads(ctx);
    expect(swept.expired.tus).toBeGreaterThanOrEqual(1);
    const staged = await readdir(tusStagingDir(ctx.storage, ''));
    expect(staged).not.toContain(id);
    expect((await tus('HEAD', location)).status).toBe(410);

    const metrics = await fetch(new URL('/metrics', url), {
      headers: { authorization: `Bearer ${keys.ops}` },
    });
    expect(metrics.status).toBe(200);
    const text = await metrics.text();
    const count = (s: string) =>
      Number(/teleread_upload_sessions_expired_total\{kind="tus"\} (\d+)/.exec(s)?.[1] ?? 0);
    expect(count(text)).toBe(
      count(new TextDecoder().decode(before.body as unknown as Uint8Array)) + swept.expired.tus,
    );
    expect(text).toContain('process_resident_memory_bytes');
    expect((await call(keys.a!, '/metrics')).status).toBe(403);
    expect((await call(null, '/metrics')).status).toBe(401);
  });
});

describe('upload batches and send-once', () => {
  test('files sent one by one join a batch and enter the pipeline together, once', async () => {
    const created = await call<{ batchId: string }>(keys.a!, '/v1/uploads/batches', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ priority: 'urgent', notes: 'two files' }),
    });
    expect(created.status).toBe(201);
    const batchId = created.body.batchId;
    const header = Buffer.from('rec 1 250 10\nrec.dat 16 200 16 0 0 0 0 I\n');
    const signal = randomBytes(20);
    const h = await create(header.length, { filename: 'rec.hea', batch: batchId, priority: 'routine' });
    const s = await create(signal.length, { filename: 'rec.dat', batch: batchId });
    expect((await patch(h, 0, header)).status).toBe(204);
    // Another clinic cannot complete or join this batch.
    const foreign = await call(keys.b!, `/v1/uploads/batches/${batchId}/complete`, { method: 'POST' });
    expect(foreign.status).toBe(404);
    // Not yet: the signal file is still being sent, and nothing is recorded before the seal.
    const early = await call<{ error: { code: string } }>(
      keys.a!,
      `/v1/uploads/batches/${batchId}/complete`,
      {
        method: 'POST',
      },
    );
    expect(early.status).toBe(409);
    expect(await ctx.db.selectFrom('files').select('id').where('upload_id', '=', batchId).execute()).toEqual(
      [],
    );

    expect((await patch(s, 0, signal)).status).toBe(204);
    const done = await call<{ uploadId: string; files: Array<{ id: string; name: string }> }>(
      keys.a!,
      `/v1/uploads/batches/${batchId}/complete`,
      { method: 'POST' },
    );
    expect(done.status).toBe(202);
    expect(done.body.uploadId).toBe(batchId);
    expect(done.body.files.map((f) => f.name).sort()).toEqual(['rec.dat', 'rec.hea']);
    const again = await call<{ files: Array<{ id: string }> }>(
      keys.a!,
      `/v1/uploads/batches/${batchId}/complete`,
      {
        method: 'POST',
      },
    );
    expect(again.status).toBe(202);
    expect(again.body.files.map((f) => f.id).sort()).toEqual(done.body.files.map((f) => f.id).sort());

    const upload = await ctx.db
      .selectFrom('uploads')
      .selectAll()
      .where('id', '=', batchId)
      .executeTakeFirstOrThrow();
    expect(upload).toMatchObject({ priority: 'urgent', notes: 'two files' });
    const rows = await ctx.db
      .selectFrom('files')
      .select(['id', 'name'])
      .where('upload_id', '=', batchId)
      .execute();
    expect(rows).toHaveLength(2);
    for (const r of rows) expect(await ingestJobsFor(r.id)).toBe(1);
    // A sealed batch takes no new file.
    const late = await tus('POST', '/v1/tus', {
      headers: { 'upload-length': '1', 'upload-metadata': metadata({ filename: 'late', batch: batchId }) },
    });
    expect(late.status).toBe(409);
  });

  test('a batch may be opened without a body; it then has routine priority', async () => {
    const res = await call<{ batchId: string; expiresAt: string }>(keys.a!, '/v1/uploads/batches', {
      method: 'POST',
    });
    expect(res.status).toBe(201);
    const batch = await ctx.db
      .selectFrom('upload_batches')
      .selectAll()
      .where('id', '=', res.body.batchId)
      .executeTakeFirstOrThrow();
    expect(batch).toMatchObject({ site_id: 'clinic-a', priority: 'routine', notes: null });
    expect(Date.parse(res.body.expiresAt) - Date.now()).toBeGreaterThan(
      (ctx.config.uploadExpirySeconds - 60) * 1000,
    );
    // Completing a batch with no file is refused: there is nothing to put into the pipeline.
    const empty = await call(keys.a!, `/v1/uploads/batches/${res.body.batchId}/complete`, { method: 'POST' });
    expect(empty.status).toBe(400);
  });

  test('POST /v1/uploads/check answers which sha256 values this site already sent', async () => {
    const data = randomBytes(64);
    const location = await create(data.length, { filename: 'known.bin' });
    expect((await patch(location, 0, data)).status).toBe(204);
    const unknown = sha256(randomBytes(64));
    const check = (key: string, list: string[]) =>
      call<{ known: string[] }>(key, '/v1/uploads/check', {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ sha256: list }),
      });
    const a = await check(keys.a!, [sha256(data).toUpperCase(), unknown]);
    expect(a.status).toBe(200);
    expect(a.body.known).toEqual([sha256(data)]);
    // Send-once is per site: another clinic has not sent it.
    expect((await check(keys.b!, [sha256(data)])).body.known).toEqual([]);
    expect((await check(keys.a!, ['zz'])).status).toBe(400);
  });
});

describe('the uploads sweep', () => {
  const idle = () => new Date(Date.now() - (ctx.config.uploadExpirySeconds + 60) * 1000);

  test('an idle batch is sealed with the files it received; an idle empty batch ends and is counted', async () => {
    const open = async () =>
      (
        await call<{ batchId: string }>(keys.a!, '/v1/uploads/batches', {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ notes: 'left open' }),
        })
      ).body.batchId;
    const withFiles = await open();
    const empty = await open();
    const done = randomBytes(100);
    const finished = await create(done.length, { filename: 'arrived.bin', batch: withFiles });
    expect((await patch(finished, 0, done)).status).toBe(204);
    const partial = await create(1000, { filename: 'half.bin', batch: withFiles });
    expect((await patch(partial, 0, randomBytes(10))).status).toBe(204);
    await ctx.db
      .updateTable('upload_batches')
      .set({ last_activity_at: idle() })
      .where('id', 'in', [withFiles, empty])
      .execute();
    await ctx.db
      .updateTable('upload_sessions')
      .set({ last_activity_at: idle() })
      .where('batch_id', 'in', [withFiles, empty])
      .execute();

    const swept = await sweepUploads(ctx);
    expect(swept.expired.tus).toBeGreaterThanOrEqual(1);
    expect(swept.expired.batch).toBeGreaterThanOrEqual(1);
    expect(swept.sealed).toBeGreaterThanOrEqual(1);
    const rows = await ctx.db
      .selectFrom('files')
      .select(['name', 'sha256'])
      .where('upload_id', '=', withFiles)
      .execute();
    expect(rows).toEqual([{ name: 'arrived.bin', sha256: sha256(done) }]);
    const batches = await ctx.db
      .selectFrom('upload_batches')
      .select(['id', 'sealed_at', 'expired_at'])
      .where('id', 'in', [withFiles, empty])
      .execute();
    expect(batches.find((b) => b.id === withFiles)?.sealed_at).not.toBeNull();
    expect(batches.find((b) => b.id === empty)?.expired_at).not.toBeNull();
    expect((await tus('HEAD', partial)).status).toBe(410);
  });

  test('a finished file that missed the pipeline (a crash before its record) is recorded by the sweep', async () => {
    const data = randomBytes(500);
    const fileId = randomUUID();
    const uploadId = randomUUID();
    const objectKey = `sites/clinic-a/uploads/${uploadId}/${fileId}`;
    await ctx.storage.put(objectKey, data);
    const long = new Date(Date.now() - (ctx.config.stuckAfterSeconds + 60) * 1000);
    await ctx.db
      .insertInto('upload_sessions')
      .values({
        id: randomBytes(16).toString('hex'),
        protocol: 'tus',
        site_id: 'clinic-a',
        upload_id: uploadId,
        file_id: fileId,
        object_key: objectKey,
        name: 'crashed.bin',
        bytes: data.length,
        priority: 'urgent',
        sha256: sha256(data),
        completed_at: long,
      })
      .execute();
    const swept = await sweepUploads(ctx);
    expect(swept.repaired).toBe(1);
    const file = await ctx.db
      .selectFrom('files')
      .selectAll()
      .where('id', '=', fileId)
      .executeTakeFirstOrThrow();
    expect(file).toMatchObject({ upload_id: uploadId, sha256: sha256(data), name: 'crashed.bin' });
    expect(await ingestJobsFor(fileId)).toBe(1);
    expect((await sweepUploads(ctx)).repaired).toBe(0);
  });
});

describe('through a link that drops', () => {
  const SIZE = 200 * 1024 * 1024;
  let proxy: FaultProxy;
  let source: string;
  let sourceSha: string;

  beforeAll(async () => {
    source = path.join(scratch, 'big.bin');
    const out = createWriteStream(source);
    const hash = createHash('sha256');
    for (let i = 0; i < SIZE / (1024 * 1024); i++) {
      const block = randomBytes(1024 * 1024);
      hash.update(block);
      if (!out.write(block)) await once(out, 'drain');
    }
    out.end();
    await once(out, 'finish');
    sourceSha = hash.digest('hex');
    proxy = await startFaultProxy({ port: Number(new URL(url).port) });
  });
  afterAll(async () => {
    await proxy?.close();
  });

  test('tus-js-client finishes 200 MB through a proxy that cuts the connection every 10 MB', async () => {
    proxy.setFault({ kind: 'cut', everyBytes: 10 * 1024 * 1024 });
    proxy.resetCounters();
    const result = await new Promise<{ url: string; fileId: string }>((resolve, reject) => {
      let fileId = '';
      const upload = new Upload(createReadStream(source), {
        endpoint: `${proxy.url}/v1/tus`,
        uploadSize: SIZE,
        metadata: { filename: 'slide.svs', filetype: 'image/tiff', priority: 'routine' },
        headers: { authorization: `Bearer ${keys.a}` },
        retryDelays: [0, 50, 100, 250, 500, 1000],
        onAfterResponse(_req, res) {
          fileId = res.getHeader('Teleread-File-Id') || fileId;
        },
        onError: reject,
        onSuccess: () => resolve({ url: upload.url ?? '', fileId }),
      });
      upload.start();
    });
    expect(proxy.faults).toBeGreaterThanOrEqual(15);
    expect(result.fileId).toMatch(/^[0-9a-f-]{36}$/);
    const rows = await ctx.db.selectFrom('files').selectAll().where('name', '=', 'slide.svs').execute();
    expect(rows).toHaveLength(1);
    const [file] = rows;
    expect(file!.id).toBe(result.fileId);
    expect(file!.sha256).toBe(sourceSha);
    expect(Number(file!.bytes)).toBe(SIZE);
    // The stored object itself, read back: every byte arrived, in order.
    const stored = createHash('sha256');
    for await (const chunk of await ctx.storage.get(file!.object_key)) stored.update(chunk as Buffer);
    expect(stored.digest('hex')).toBe(sourceSha);
    expect(await ingestJobsFor(file!.id)).toBe(1);
    // Cut connections cost at most the bytes in flight: far less than sending the file twice.
    expect(proxy.upstreamBytes).toBeLessThan(SIZE * 1.5);
  });

  test.each([
    { fault: { kind: 'reset', everyBytes: 12 * 1024 * 1024 } as const, name: 'reset.bin' },
    { fault: { kind: 'stall', afterBytes: 20 * 1024 * 1024, ms: 4000 } as const, name: 'stall.bin' },
  ])("Teleread's uploader gets through a link that does $fault.kind", async ({ fault, name }) => {
    const dir = path.join(scratch, fault.kind);
    const file = path.join(dir, name);
    await mkdir(dir, { recursive: true });
    const data = randomBytes(40 * 1024 * 1024);
    await writeFile(file, data);
    proxy.setFault(fault);
    const events: string[] = [];
    const report = await runUploader([file], {
      ...DEFAULT_UPLOADER_OPTIONS,
      server: proxy.url,
      key: keys.a!,
      stateDir: path.join(scratch, `state-${fault.kind}`),
      dryRun: false,
      retryBaseMs: 50,
      // A stalled request is abandoned after this long without a byte moving; the server lets go of the
      // upload's lock when the next request for it arrives.
      stallTimeoutMs: 1500,
      onEvent: (e) => {
        if (e.type === 'file-retry') events.push(e.reason);
      },
    });
    proxy.setFault({ kind: 'none' });
    expect(report.failed).toEqual([]);
    expect(events.length).toBeGreaterThanOrEqual(1);
    if (fault.kind === 'stall') expect(events.join('\n')).toMatch(/no progress/);
    const [row] = await ctx.db.selectFrom('files').selectAll().where('name', '=', name).execute();
    expect(row?.sha256).toBe(sha256(data));
    expect(report.uploads[0]?.files[0]?.id).toBe(row?.id);
  });
});
