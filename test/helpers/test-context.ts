import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { type Config, loadConfig } from '../../src/config.js';
import { type Context, createContext } from '../../src/context.js';
import { QUEUE_NAMES } from '../../src/pipeline/queues.js';

/** The PostgreSQL server the tests use; each test file gets a database of its own on it. */
export const TEST_DATABASE_URL = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/teleread';
export const TEST_REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';

function withDatabase(url: string, name: string): string {
  const u = new URL(url);
  u.pathname = `/${name}`;
  return u.toString();
}

async function admin<T>(fn: (c: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: withDatabase(TEST_DATABASE_URL, 'postgres') });
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end();
  }
}

export interface TestEnv {
  config: Config;
  env: Record<string, string>;
  storageDir: string;
  dbName: string;
  dispose(): Promise<void>;
}

/**
 * A fresh database, queue prefix and storage folder: real PostgreSQL, real Redis, real filesystem, nothing
 * shared with other test files (which run in parallel).
 */
export async function createTestEnv(overrides: Record<string, string> = {}): Promise<TestEnv> {
  const suffix = randomBytes(5).toString('hex');
  const dbName = `teleread_test_${suffix}`;
  await admin((c) => c.query(`CREATE DATABASE ${dbName}`));
  const storageDir = await mkdtemp(path.join(tmpdir(), 'teleread-test-'));
  const env: Record<string, string> = {
    DATABASE_URL: withDatabase(TEST_DATABASE_URL, dbName),
    REDIS_URL: TEST_REDIS_URL,
    QUEUE_PREFIX: `{trtest-${suffix}}`,
    STORAGE_URL: `file://${path.join(storageDir, 'objects')}`,
    LOG_LEVEL: process.env.TEST_LOG_LEVEL ?? 'silent',
    PORT: '0',
    // Studies are complete when their upload is, in tests; the debounce itself is tested on its own.
    STUDY_STABLE_SECONDS: '0',
    ...overrides,
  };
  const config = loadConfig(env);
  return {
    config,
    env,
    storageDir,
    dbName,
    async dispose() {
      await admin((c) => c.query(`DROP DATABASE IF EXISTS ${dbName} WITH (FORCE)`));
      await rm(storageDir, { recursive: true, force: true });
    },
  };
}

/** A test env plus a live context on it; `dispose` obliterates the queues and drops everything. */
export async function createTestContext(
  overrides: Record<string, string> = {},
): Promise<{ ctx: Context; env: TestEnv; dispose(): Promise<void> }> {
  const env = await createTestEnv(overrides);
  const ctx = await createContext(env.config);
  return {
    ctx,
    env,
    async dispose() {
      for (const name of QUEUE_NAMES)
        await ctx.queues[name].obliterate({ force: true }).catch(() => undefined);
      await ctx.close();
      await env.dispose();
    },
  };
}
