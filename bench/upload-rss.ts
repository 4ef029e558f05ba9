/**
 * The check: "A 2 GB upload streams through with the API process staying under 250 MB RSS".
 *
 * Starts `bin/teleread api` as its own process against a throw-away database, queue prefix and storage folder,
 * streams a generated 2 GiB multipart body to POST /v1/uploads (nothing that large is written by the client),
 * and samples the API process's VmRSS/VmHWM every 100 ms. The reference, in the same run and with the same
 * client, is a minimal Node http server that pipes the request body to a file and fsyncs it (the fs store
 * fsyncs too). No workers run: the stored file would be refused later as an unknown format, which is fine.
 *
 * Environment: BENCH_UPLOAD_BYTES (default 2 GiB), BENCH_UPLOAD_PASSES (default 2 per server),
 * BENCH_PG_URL (an admin connection, default postgres://postgres@127.0.0.1:5432/postgres), REDIS_URL.
 */
import { createHash, randomBytes } from 'node:crypto';
import { rm, stat } from 'node:fs/promises';
import path from 'node:path';
import { Redis } from 'ioredis';
import pg from 'pg';
import {
  type BenchRow,
  check,
  Deadline,
  freePort,
  makeTempDir,
  msSince,
  onCleanup,
  readProcMemory,
  repoRoot,
  row,
  run,
  runBench,
  sampleRss,
  spawnService,
  stats,
  waitFor,
  zip,
} from './lib.js';

const GiB = 1024 ** 3;
const TOTAL = Number(process.env.BENCH_UPLOAD_BYTES ?? 2 * GiB);
const PASSES = Math.max(1, Math.min(5, Number(process.env.BENCH_UPLOAD_PASSES ?? 2)));
const RSS_BUDGET_MB = 250;
const ADMIN_URL = process.env.BENCH_PG_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
const BLOCK = 1024 * 1024;
const TELEREAD = path.join(repoRoot, 'bin/teleread');

/** The reference: read the body, write it to a file, fsync, answer with the byte count. Plain JS, no deps. */
const REFERENCE_SERVER = `
const http = require('node:http');
const fs = require('node:fs');
const out = process.env.OUT;
http.createServer((req, res) => {
  const file = fs.createWriteStream(out);
  let bytes = 0;
  req.on('data', (c) => { bytes += c.length; });
  req.pipe(file);
  file.on('error', (e) => { res.writeHead(500); res.end(String(e)); });
  file.on('close', () => {
    const fd = fs.openSync(out, 'r');
    fs.fsync(fd, () => {
      fs.closeSync(fd);
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ bytes }));
    });
  });
}).listen(Number(process.env.PORT), '127.0.0.1', () => console.log('ready'));
`;

interface Pass {
  ms: number;
  /** The largest VmRSS sampled during the pass (the lifelong VmHWM is read once at the end). */
  sampledPeakMb: number;
}

async function createDatabase(): Promise<string> {
  const name = `teleread_bench_${Date.now()}_${randomBytes(3).toString('hex')}`;
  const admin = new pg.Client({ connectionString: ADMIN_URL });
  await admin.connect();
  try {
    await admin.query(`CREATE DATABASE "${name}"`);
  } finally {
    await admin.end();
  }
  onCleanup(`drop database ${name}`, async () => {
    const c = new pg.Client({ connectionString: ADMIN_URL });
    await c.connect();
    try {
      await c.query(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`);
    } finally {
      await c.end();
    }
  });
  const url = new URL(ADMIN_URL);
  url.pathname = `/${name}`;
  return url.toString();
}

/** Removes every Redis key under the prefix; the SCAN loop is bounded in rounds. */
async function dropQueueKeys(prefix: string): Promise<void> {
  const redis = new Redis(REDIS_URL, { maxRetriesPerRequest: 1, lazyConnect: true });
  try {
    await redis.connect();
    let cursor = '0';
    for (let round = 0; round < 10_000; round++) {
      const [next, keys] = await redis.scan(cursor, 'MATCH', `${prefix}:*`, 'COUNT', 1000);
      if (keys.length > 0) await redis.del(...keys);
      cursor = next;
      if (cursor === '0') break;
    }
  } finally {
    redis.disconnect();
  }
}

/** The bytes of the one file: a random 1 MiB block repeated, so the client costs almost nothing to produce. */
function expectedSha256(block: Uint8Array, total: number): string {
  const hash = createHash('sha256');
  for (let sent = 0; sent < total; sent += block.length) {
    hash.update(block.subarray(0, Math.min(block.length, total - sent)));
  }
  return hash.digest('hex');
}

/** A multipart/form-data body with one file part, produced chunk by chunk as the socket takes it. */
function multipartBody(
  block: Uint8Array,
  total: number,
): { stream: ReadableStream<Uint8Array>; length: number; type: string } {
  const boundary = `bench-${randomBytes(12).toString('hex')}`;
  const enc = new TextEncoder();
  const head = enc.encode(
    `--${boundary}\r\nContent-Disposition: form-data; name="file"; filename="bench-2g.bin"\r\n` +
      'Content-Type: application/octet-stream\r\n\r\n',
  );
  const tail = enc.encode(`\r\n--${boundary}--\r\n`);
  let stage: 'head' | 'data' | 'tail' = 'head';
  let sent = 0;
  const stream = new ReadableStream<Uint8Array>({
    pull(controller) {
      if (stage === 'head') {
        controller.enqueue(head);
        stage = total > 0 ? 'data' : 'tail';
      } else if (stage === 'data') {
        const n = Math.min(block.length, total - sent);
        // A fresh view per chunk: the bytes are shared and never written, so nothing is copied.
        controller.enqueue(new Uint8Array(block.buffer, block.byteOffset, n));
        sent += n;
        if (sent >= total) stage = 'tail';
      } else {
        controller.enqueue(tail);
        controller.close();
      }
    },
  });
  return {
    stream,
    length: head.length + total + tail.length,
    type: `multipart/form-data; boundary=${boundary}`,
  };
}

async function post(
  url: string,
  body: ReturnType<typeof multipartBody>,
  headers: Record<string, string>,
  timeoutMs: number,
): Promise<{ status: number; json: unknown; ms: number }> {
  const started = process.hrtime.bigint();
  const response = await fetch(url, {
    method: 'POST',
    headers: { ...headers, 'content-type': body.type, 'content-length': String(body.length) },
    body: body.stream,
    duplex: 'half',
    signal: AbortSignal.timeout(timeoutMs),
  } as RequestInit);
  const text = await response.text();
  const ms = msSince(started);
  let json: unknown = text;
  try {
    json = JSON.parse(text);
  } catch {
    // kept as text for the error message
  }
  return { status: response.status, json, ms };
}

async function main(): Promise<BenchRow[]> {
  const deadline = new Deadline(150_000);
  const storageDir = await makeTempDir('upload-store');
  const refDir = await makeTempDir('upload-ref');
  const databaseUrl = await createDatabase();
  const queuePrefix = `{bench-${randomBytes(4).toString('hex')}}`;
  onCleanup(`drop queue keys ${queuePrefix}`, () => dropQueueKeys(queuePrefix));
  const apiPort = await freePort();
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    DATABASE_URL: databaseUrl,
    REDIS_URL,
    QUEUE_PREFIX: queuePrefix,
    STORAGE_URL: `file://${storageDir}`,
    HOST: '127.0.0.1',
    PORT: String(apiPort),
    LOG_LEVEL: 'warn',
    MIGRATE_ON_START: 'true',
  };

  // Seeding migrates the fresh database first, so the API does not race it to the migration lock.
  check(
    await run(TELEREAD, ['sites', 'add', 'bench-clinic', '--jurisdiction', 'KE'], { env, timeoutMs: 60_000 }),
    'teleread sites add',
  );
  const keyOut = check(
    await run(TELEREAD, ['keys', 'create', '--role', 'clinic', '--site', 'bench-clinic'], {
      env,
      timeoutMs: 30_000,
    }),
    'teleread keys create',
  );
  const clinicKey = keyOut.stdout.trim().split('\n').pop() ?? '';
  if (!clinicKey) throw new Error('teleread keys create printed no key');

  const api = spawnService(TELEREAD, ['api'], env, 'teleread api');
  await waitFor('the API to answer /healthz', new Deadline(60_000), async () => {
    api.assertRunning();
    return (await fetch(`http://127.0.0.1:${apiPort}/healthz`)).ok;
  });

  const refPort = await freePort();
  const refOut = path.join(refDir, 'body.bin');
  const reference = spawnService(
    process.execPath,
    ['-e', REFERENCE_SERVER],
    { ...process.env, PORT: String(refPort), OUT: refOut },
    'reference server',
  );
  await waitFor('the reference server', new Deadline(20_000), async () => {
    reference.assertRunning();
    return reference.output().includes('ready');
  });

  const block = randomBytes(BLOCK);
  const sha256 = expectedSha256(block, TOTAL);
  const apiIdle = readProcMemory(api.pid);

  const uploadTeleread = async (): Promise<Pass> => {
    const sampler = sampleRss(api.pid, 100);
    const body = multipartBody(block, TOTAL);
    const res = await post(
      `http://127.0.0.1:${apiPort}/v1/uploads`,
      body,
      { authorization: `Bearer ${clinicKey}` },
      deadline.leftMs,
    );
    const mem = sampler.stop();
    if (res.status !== 202)
      throw new Error(`teleread upload: HTTP ${res.status} ${JSON.stringify(res.json).slice(0, 500)}`);
    const json = res.json as {
      uploadId: string;
      files: Array<{ id: string; bytes: number; sha256: string }>;
    };
    const file = json.files[0];
    if (json.files.length !== 1 || !file)
      throw new Error(`teleread upload: expected one file, got ${JSON.stringify(json)}`);
    if (file.bytes !== TOTAL) throw new Error(`teleread upload: stored ${file.bytes} bytes, sent ${TOTAL}`);
    if (file.sha256 !== sha256) throw new Error(`teleread upload: sha256 ${file.sha256}, sent ${sha256}`);
    const stored = path.join(storageDir, 'sites/bench-clinic/uploads', json.uploadId, file.id);
    const onDisk = (await stat(stored)).size;
    if (onDisk !== TOTAL)
      throw new Error(`teleread upload: object on disk has ${onDisk} bytes, sent ${TOTAL}`);
    await rm(stored, { force: true });
    return { ms: res.ms, sampledPeakMb: mem.sampledPeakMb };
  };

  const uploadReference = async (): Promise<Pass> => {
    const sampler = sampleRss(reference.pid, 100);
    const body = multipartBody(block, TOTAL);
    const res = await post(`http://127.0.0.1:${refPort}/`, body, {}, deadline.leftMs);
    const mem = sampler.stop();
    if (res.status !== 200)
      throw new Error(`reference upload: HTTP ${res.status} ${String(res.json).slice(0, 300)}`);
    const bytes = (res.json as { bytes: number }).bytes;
    if (bytes !== body.length) throw new Error(`reference upload: got ${bytes} bytes, sent ${body.length}`);
    await rm(refOut, { force: true });
    return { ms: res.ms, sampledPeakMb: mem.sampledPeakMb };
  };

  // ABBA order, so the page cache and disk write-back of one server's pass weigh on the other's equally.
  const teleread: Pass[] = [];
  const ref: Pass[] = [];
  for (let i = 0; i < PASSES; i++) {
    if (deadline.expired) break;
    const order = i % 2 === 0 ? ['ref', 'tele'] : ['tele', 'ref'];
    for (const which of order) {
      if (which === 'tele') teleread.push(await uploadTeleread());
      else ref.push(await uploadReference());
      console.error(
        `upload pass ${i + 1} ${which}: ${((which === 'tele' ? teleread : ref).at(-1)!.ms / 1000).toFixed(1)} s`,
      );
    }
  }
  // VmHWM covers the process's whole life, start-up included: that is what "stays under 250 MB" means.
  const apiPeak = readProcMemory(api.pid)?.hwmMb ?? Number.NaN;
  const refPeak = readProcMemory(reference.pid)?.hwmMb ?? Number.NaN;
  await api.stop();
  await reference.stop();

  const mbps = (p: Pass) => TOTAL / 1e6 / (p.ms / 1000);
  const gib = (TOTAL / GiB).toFixed(TOTAL % GiB === 0 ? 0 : 2);
  const duringUpload = Math.max(...teleread.map((p) => p.sampledPeakMb));
  return [
    row({
      bench: 'upload',
      measure: `API peak RSS (VmHWM) with a ${gib} GiB upload`,
      unit: 'MB',
      teleread: stats([apiPeak]),
      reference: { name: 'node http → file', stats: stats([refPeak]) },
      better: 'lower',
      budget: { limit: RSS_BUDGET_MB, pass: apiPeak < RSS_BUDGET_MB },
      note:
        `over the process's life; RSS idle after start ${apiIdle?.rssMb.toFixed(0)} MB, ` +
        `largest RSS sampled during the uploads ${duringUpload.toFixed(0)} MB; sha256 and size of the stored object checked`,
    }),
    row({
      bench: 'upload',
      measure: `throughput of a ${gib} GiB multipart upload`,
      unit: 'MB/s',
      teleread: stats(teleread.map(mbps)),
      reference: { name: 'node http → file', stats: stats(ref.map(mbps)) },
      pairs: zip(teleread.map(mbps), ref.map(mbps)),
      better: 'higher',
      note: `${teleread.length} pass(es) each, ABBA order; Teleread also parses multipart, hashes, and writes rows; both fsync`,
    }),
  ];
}

runBench('upload', main);
