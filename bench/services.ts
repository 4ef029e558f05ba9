/**
 * Teleread and Orthanc as processes for the benchmarks that go over HTTP: a throw-away PostgreSQL database,
 * queue prefix and storage folder per run, `bin/teleread api` / `worker` started by PID, and an Orthanc on a
 * loopback port with a fresh store. Everything is removed by the clean-up that `onCleanup` registers.
 */
import { randomBytes } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { Redis } from 'ioredis';
import pg from 'pg';
import {
  check,
  Deadline,
  freePort,
  makeTempDir,
  onCleanup,
  repoRoot,
  run,
  type Service,
  spawnService,
  waitFor,
} from './lib.js';

export const ADMIN_URL = process.env.BENCH_PG_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
export const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
/** BENCH_TELEREAD_BIN runs another launcher in its place, e.g. a wrapper that adds --cpu-prof to api and worker. */
export const TELEREAD = process.env.BENCH_TELEREAD_BIN ?? path.join(repoRoot, 'bin/teleread');

/** A fresh database `teleread_bench_*`, dropped at clean-up; returns its URL. */
export async function createDatabase(): Promise<string> {
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
export async function dropQueueKeys(prefix: string): Promise<void> {
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

export interface TelereadStack {
  env: NodeJS.ProcessEnv;
  databaseUrl: string;
  storageDir: string;
  apiPort: number;
  clinicKey: string;
  siteId: string;
}

/** A fresh database, queue prefix (its keys dropped at clean-up) and file storage, and the environment that
 * points Teleread's processes at them. */
export async function freshEnvironment(
  label: string,
  extra: NodeJS.ProcessEnv = {},
): Promise<Pick<TelereadStack, 'env' | 'databaseUrl' | 'storageDir' | 'apiPort'>> {
  const storageDir = await makeTempDir(`${label}-store`);
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
    // Only the DIMSE listener reads it; a free one keeps a stray start from colliding with a real one.
    DICOM_PORT: String(await freePort()),
    LOG_LEVEL: 'warn',
    MIGRATE_ON_START: 'true',
    ...extra,
  };
  return { env, databaseUrl, storageDir, apiPort };
}

/**
 * A fresh environment (freshEnvironment), migrated and seeded through the CLI with a clinic site in KE and its
 * key (and, with `reader`, a radiology reader licensed in KE, so imaging cases route). The API and workers are
 * not started here.
 */
export async function prepareTeleread(
  label: string,
  opts: { reader?: boolean; env?: NodeJS.ProcessEnv } = {},
): Promise<TelereadStack> {
  const { env, databaseUrl, storageDir, apiPort } = await freshEnvironment(label, opts.env);
  const siteId = 'bench-clinic';
  // Seeding migrates the fresh database first, so the API and worker do not race it to the migration lock.
  check(
    await run(TELEREAD, ['sites', 'add', siteId, '--jurisdiction', 'KE'], { env, timeoutMs: 60_000 }),
    'teleread sites add',
  );
  if (opts.reader) {
    check(
      await run(
        TELEREAD,
        ['readers', 'add', 'bench-radiologist', '--specialties', 'radiology', '--jurisdictions', 'KE'],
        { env, timeoutMs: 30_000 },
      ),
      'teleread readers add',
    );
  }
  const keyOut = check(
    await run(TELEREAD, ['keys', 'create', '--role', 'clinic', '--site', siteId], { env, timeoutMs: 30_000 }),
    'teleread keys create',
  );
  const clinicKey = keyOut.stdout.trim().split('\n').pop() ?? '';
  if (!clinicKey) throw new Error('teleread keys create printed no key');
  return { env, databaseUrl, storageDir, apiPort, clinicKey, siteId };
}

/** `bin/teleread api`, started and answering /healthz. */
export async function startApi(stack: TelereadStack): Promise<Service> {
  const api = spawnService(TELEREAD, ['api'], stack.env, 'teleread api');
  await waitFor('the API to answer /healthz', new Deadline(60_000), async () => {
    api.assertRunning();
    return (await fetch(`http://127.0.0.1:${stack.apiPort}/healthz`)).ok;
  });
  return api;
}

/**
 * `bin/teleread worker` (every queue, default concurrency). It has no port and logs nothing at warn level, so
 * callers know it is ready when an uncounted warm-up case has gone through.
 */
export function startWorker(stack: TelereadStack): Service {
  return spawnService(TELEREAD, ['worker'], stack.env, 'teleread worker');
}

export interface Orthanc {
  url: string;
  service: Service;
  storageDir: string;
}

/**
 * Orthanc (Debian's 1.10) on a free loopback port with a fresh store: HTTP only, no DICOM listener, no remote
 * access, no authentication, no storage compression, 50 HTTP threads and a SQLite index, as ANCHORS §3b ran it.
 */
export async function startOrthanc(binary = '/usr/sbin/Orthanc'): Promise<Orthanc> {
  const dir = await makeTempDir('orthanc');
  const port = await freePort();
  const storageDir = path.join(dir, 'storage');
  const config = {
    Name: 'TelereadBench',
    StorageDirectory: storageDir,
    IndexDirectory: storageDir,
    StorageCompression: false,
    HttpServerEnabled: true,
    HttpPort: port,
    HttpThreadsCount: 50,
    RemoteAccessAllowed: false,
    AuthenticationEnabled: false,
    DicomServerEnabled: false,
    Plugins: [],
  };
  const configFile = path.join(dir, 'orthanc.json');
  await writeFile(configFile, JSON.stringify(config, null, 2));
  const service = spawnService(binary, [configFile], process.env, 'Orthanc');
  const url = `http://127.0.0.1:${port}`;
  await waitFor('Orthanc to answer /system', new Deadline(60_000), async () => {
    service.assertRunning();
    return (await fetch(`${url}/system`)).ok;
  });
  return { url, service, storageDir };
}
