import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import type { App } from '../../src/api/build-app.js';
import { startApi } from '../../src/api/start-api.js';
import { addSite, createKey } from '../../src/cli/admin-commands.js';
import type { Context } from '../../src/context.js';
import { ingestJobFileIds } from '../../src/pipeline/queues.js';
import { type CreatedMultipart, planParts } from '../../src/uploads/s3-multipart.js';
import { sweepUploads } from '../../src/uploads/sweep-uploads.js';
import { apiClient } from '../helpers/api-client.js';
import { type S3Server, startS3Server } from '../helpers/s3-server.js';
import { createTestContext } from '../helpers/test-context.js';

const MiB = 1024 * 1024;
const sha256 = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

/** The create response as JSON (its expiresAt, a string there, is not read). */
type Created = Omit<CreatedMultipart, 'expiresAt'>;
interface Completed {
  uploadId: string;
  recorded: boolean;
  files: Array<{ id: string; name: string; bytes: number; sha256: string }>;
}

describe('planParts', () => {
  test.each([
    { bytes: 1, requested: undefined, partBytes: 16 * MiB, sizes: [1] },
    { bytes: 12 * MiB, requested: 5 * MiB, partBytes: 5 * MiB, sizes: [5 * MiB, 5 * MiB, 2 * MiB] },
    { bytes: 10 * MiB, requested: 5 * MiB, partBytes: 5 * MiB, sizes: [5 * MiB, 5 * MiB] },
  ])('$bytes bytes in parts of $requested', ({ bytes, requested, partBytes, sizes }) => {
    const plan = planParts(bytes, requested);
    expect(plan.partBytes).toBe(partBytes);
    expect(plan.parts.map((p) => p.bytes)).toEqual(sizes);
    expect(plan.parts.map((p) => p.partNumber)).toEqual(sizes.map((_, i) => i + 1));
  });

  test('parts grow to stay within 10 000, and bad sizes are refused', () => {
    const plan = planParts(200_000 * MiB, 5 * MiB);
    expect(plan.parts.length).toBeLessThanOrEqual(10_000);
    expect(plan.parts.reduce((n, p) => n + p.bytes, 0)).toBe(200_000 * MiB);
    expect(() => planParts(0)).toThrow(/positive/);
    expect(() => planParts(10, MiB)).toThrow(/partBytes/);
  });
});

describe('with filesystem storage', () => {
  let t: Awaited<ReturnType<typeof createTestContext>>;
  let app: App;
  let call: ReturnType<typeof apiClient>;
  let key: string;
  beforeAll(async () => {
    t = await createTestContext();
    await addSite(t.ctx.db, { id: 'clinic-a', jurisdiction: 'KE' });
    key = (await createKey(t.ctx.db, { role: 'clinic', site: 'clinic-a' })).key;
    const started = await startApi(t.ctx, 0);
    app = started.app;
    call = apiClient(started.url);
  });
  afterAll(async () => {
    await app?.close();
    await t?.dispose();
  });

  test('direct-to-storage answers 501 with a stable code and points to tus', async () => {
    const res = await call<{ error: { code: string; message: string } }>(key, '/v1/uploads/multipart', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ name: 'a.bin', bytes: 10, sha256: sha256(new Uint8Array(10)) }),
    });
    expect(res.status).toBe(501);
    expect(res.body.error.code).toBe('DIRECT_UPLOAD_UNAVAILABLE');
    expect(res.body.error.message).toContain('/v1/tus');
    expect(res.headers.get('link')).toBe('</v1/tus>; rel="alternate"');
    const complete = await call(key, '/v1/uploads/multipart/00000000-0000-4000-8000-000000000000/complete', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ parts: [] }),
    });
    expect(complete.status).toBe(501);
  });
});

describe('with S3 storage (s3rver)', () => {
  let s3: S3Server;
  let t: Awaited<ReturnType<typeof createTestContext>>;
  let ctx: Context;
  let app: App;
  let call: ReturnType<typeof apiClient>;
  let key: string;
  let otherKey: string;
  let url: string;
  let staging: string;

  beforeAll(async () => {
    s3 = await startS3Server();
    staging = await mkdtemp(path.join(tmpdir(), 'teleread-tus-staging-'));
    t = await createTestContext({
      TUS_STAGING_DIR: staging,
      STORAGE_URL:
        `s3://${s3.bucket}/objects?endpoint=${encodeURIComponent(s3.endpoint)}&forcePathStyle=true` +
        `&accessKeyId=${s3.accessKeyId}&secretAccessKey=${s3.secretAccessKey}`,
    });
    ctx = t.ctx;
    await addSite(ctx.db, { id: 'clinic-a', jurisdiction: 'KE' });
    await addSite(ctx.db, { id: 'clinic-b', jurisdiction: 'KE' });
    key = (await createKey(ctx.db, { role: 'clinic', site: 'clinic-a' })).key;
    otherKey = (await createKey(ctx.db, { role: 'clinic', site: 'clinic-b' })).key;
    const started = await startApi(ctx, 0);
    app = started.app;
    url = started.url;
    call = apiClient(started.url);
  });
  afterAll(async () => {
    await app?.close();
    await t?.dispose();
    await s3?.close();
    await rm(staging, { recursive: true, force: true });
  });

  test('tus works on S3 storage too: staged locally, then put into the bucket', async () => {
    const data = randomBytes(3 * MiB);
    const res = await fetch(new URL('/v1/tus', url), {
      method: 'POST',
      headers: {
        authorization: `Bearer ${key}`,
        'tus-resumable': '1.0.0',
        'upload-length': String(data.length),
        'upload-metadata': `filename ${Buffer.from('tus-on-s3.bin').toString('base64')}`,
        'content-type': 'application/offset+octet-stream',
      },
      body: data,
    });
    expect(res.status).toBe(201);
    const file = await ctx.db
      .selectFrom('files')
      .selectAll()
      .where('id', '=', res.headers.get('teleread-file-id')!)
      .executeTakeFirstOrThrow();
    expect(file.sha256).toBe(sha256(data));
    expect(Buffer.from(await ctx.storage.getBytes(file.object_key)).equals(data)).toBe(true);
    expect(await readdir(staging)).toEqual([]);
  });

  const json = (body: unknown) => ({
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });

  async function start(data: Uint8Array, extra: Record<string, unknown> = {}, as = key) {
    const res = await call<Created>(
      as,
      '/v1/uploads/multipart',
      json({ name: 'slide.svs', bytes: data.length, sha256: sha256(data), partBytes: 5 * MiB, ...extra }),
    );
    expect(res.status, JSON.stringify(res.body)).toBe(201);
    return res.body;
  }

  /** PUTs each part straight to S3, as a clinic would; returns the ETags S3 answered. */
  async function putParts(
    created: Created,
    data: Uint8Array,
    tamper?: (n: number, part: Uint8Array) => Uint8Array,
  ) {
    const parts: Array<{ partNumber: number; etag: string }> = [];
    let offset = 0;
    for (const p of created.parts) {
      let bytes = data.subarray(offset, offset + p.bytes);
      offset += p.bytes;
      if (tamper) bytes = tamper(p.partNumber, bytes);
      const res = await fetch(p.url, { method: 'PUT', body: bytes });
      expect(res.status).toBe(200);
      parts.push({ partNumber: p.partNumber, etag: res.headers.get('etag') ?? '' });
    }
    return parts;
  }

  const complete = (id: string, parts: unknown, as = key) =>
    call<Completed & { error?: { code: string; message: string } }>(
      as,
      `/v1/uploads/multipart/${id}/complete`,
      json({ parts }),
    );

  async function ingestJobsFor(fileId: string): Promise<number> {
    const jobs = await ctx.queues.ingest.getJobs(['waiting', 'delayed', 'active', 'completed', 'failed']);
    return jobs.filter((j) => ingestJobFileIds(j.data).includes(fileId)).length;
  }

  test('parts go straight to S3; complete verifies them and records the file once', async () => {
    const data = randomBytes(12 * MiB);
    const created = await start(data, { priority: 'urgent', notes: 'slide' });
    expect(created.parts.map((p) => p.bytes)).toEqual([5 * MiB, 5 * MiB, 2 * MiB]);
    expect(created.parts[0]!.url).toContain(s3.endpoint);
    const parts = await putParts(created, data);

    // Another clinic cannot complete it; nor can a list with a part missing.
    expect((await complete(created.id, parts, otherKey)).status).toBe(404);
    const missing = await complete(created.id, parts.slice(0, 2));
    expect(missing.status).toBe(400);
    expect(missing.body.error?.message).toContain('missing 3');

    const done = await complete(created.id, parts);
    expect(done.status, JSON.stringify(done.body)).toBe(202);
    expect(done.body).toMatchObject({ uploadId: created.uploadId, recorded: true });
    expect(done.body.files[0]).toMatchObject({
      id: created.fileId,
      bytes: data.length,
      sha256: sha256(data),
    });
    const again = await complete(created.id, parts);
    expect(again.status).toBe(202);
    expect(again.body.files[0]!.id).toBe(created.fileId);

    const rows = await ctx.db
      .selectFrom('files')
      .selectAll()
      .where('upload_id', '=', created.uploadId)
      .execute();
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({ id: created.fileId, sha256: sha256(data), name: 'slide.svs' });
    expect(Buffer.from(await ctx.storage.getBytes(rows[0]!.object_key)).equals(data)).toBe(true);
    const upload = await ctx.db
      .selectFrom('uploads')
      .selectAll()
      .where('id', '=', created.uploadId)
      .executeTakeFirstOrThrow();
    expect(upload).toMatchObject({ priority: 'urgent', notes: 'slide', site_id: 'clinic-a' });
    expect(await ingestJobsFor(created.fileId)).toBe(1);
  });

  test.each([
    {
      what: 'a part whose bytes differ from its ETag',
      tamper: (n: number, b: Uint8Array) => (n === 2 ? randomBytes(b.length) : b),
      keepEtags: true,
      problem: /part 2 does not match its ETag/,
    },
    {
      what: 'a part shorter than planned',
      tamper: (n: number, b: Uint8Array) => (n === 1 ? b.subarray(0, b.length - 1000) : b),
      keepEtags: false,
      // Without ListParts (s3rver) the short part shows in the assembled size; S3 and MinIO refuse it earlier.
      problem: /object has 11533336 bytes, 11534336 were declared/,
    },
  ])('$what is refused after assembly and nothing is recorded', async ({ tamper, keepEtags, problem }) => {
    const data = randomBytes(11 * MiB);
    const created = await start(data);
    const honest = keepEtags ? await putParts(created, data) : undefined;
    const sent = await putParts(created, data, tamper);
    const res = await complete(created.id, honest ?? sent);
    expect(res.status).toBe(422);
    expect(res.body.error?.code).toBe('CORRUPT_FILE');
    expect(res.body.error?.message).toMatch(problem);
    expect(await ctx.db.selectFrom('files').select('id').where('id', '=', created.fileId).execute()).toEqual(
      [],
    );
    const session = await ctx.db
      .selectFrom('upload_sessions')
      .select(['ended_at', 'end_reason'])
      .where('id', '=', created.id)
      .executeTakeFirstOrThrow();
    expect(session.end_reason).toBe('verification-failed');
    expect((await complete(created.id, sent)).status).toBe(409);
  });

  test('a file that does not match the sha256 declared at the start is refused and deleted', async () => {
    const data = randomBytes(6 * MiB);
    const created = await start(data, { sha256: sha256(randomBytes(8)) });
    const res = await complete(created.id, await putParts(created, data));
    expect(res.status).toBe(422);
    expect(res.body.error?.message).toMatch(/sha256 is [0-9a-f]{64}, [0-9a-f]{64} was declared/);
    const session = await ctx.db
      .selectFrom('upload_sessions')
      .select('object_key')
      .where('id', '=', created.id)
      .executeTakeFirstOrThrow();
    expect(await ctx.storage.head(session.object_key)).toBeNull();
  });

  test('a batch member waits for its batch, then enters with it', async () => {
    const batch = await call<{ batchId: string }>(key, '/v1/uploads/batches', json({ priority: 'stat' }));
    expect(batch.status).toBe(201);
    const data = randomBytes(MiB);
    const created = await start(data, { batchId: batch.body.batchId, priority: 'routine' });
    expect(created.uploadId).toBe(batch.body.batchId);
    const done = await complete(created.id, await putParts(created, data));
    expect(done.status).toBe(202);
    expect(done.body.recorded).toBe(false);
    expect(await ctx.db.selectFrom('files').select('id').where('id', '=', created.fileId).execute()).toEqual(
      [],
    );
    const sealed = await call<Completed>(key, `/v1/uploads/batches/${batch.body.batchId}/complete`, {
      method: 'POST',
    });
    expect(sealed.status).toBe(202);
    expect(sealed.body.files.map((f) => f.id)).toEqual([created.fileId]);
    const upload = await ctx.db
      .selectFrom('uploads')
      .select('priority')
      .where('id', '=', batch.body.batchId)
      .executeTakeFirstOrThrow();
    expect(upload.priority).toBe('stat');
    expect(await ingestJobsFor(created.fileId)).toBe(1);
  });

  test('abort ends the upload; an idle one is expired by the sweep and counted', async () => {
    const data = randomBytes(MiB);
    const aborted = await start(data);
    const del = await call(key, `/v1/uploads/multipart/${aborted.id}`, { method: 'DELETE' });
    expect(del.status).toBe(204);
    expect((await complete(aborted.id, [{ partNumber: 1, etag: 'x' }])).status).toBe(409);

    const idle = await start(data);
    await ctx.db
      .updateTable('upload_sessions')
      .set({ last_activity_at: new Date(Date.now() - (ctx.config.uploadExpirySeconds + 60) * 1000) })
      .where('id', '=', idle.id)
      .execute();
    const swept = await sweepUploads(ctx);
    expect(swept.expired.multipart).toBe(1);
    const res = await complete(idle.id, [{ partNumber: 1, etag: 'x' }]);
    expect(res.status).toBe(409);
    expect(res.body.error?.message).toContain('expired');
  });
});
