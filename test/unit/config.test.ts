import { describe, expect, test } from 'vitest';
import { loadConfig } from '../../src/config.js';
import { AppError } from '../../src/errors.js';

describe('loadConfig', () => {
  test('embedded defaults give a working local configuration', () => {
    const c = loadConfig({});
    expect(c.storageUrl).toBe('file://./data/objects');
    expect(c.databaseUrl).toBe('postgres://postgres@127.0.0.1:5432/teleread');
    expect(c.redisUrl).toBe('redis://127.0.0.1:6379');
    expect(c.port).toBe(3000);
    expect(c.publicUrl).toBe('http://127.0.0.1:3000');
    expect(c.concurrency).toEqual({ ingest: 4, process: 2, route: 4, maintenance: 1 });
    expect(c.maxUploadBytes).toBe(4 * 1024 ** 3);
  });

  test('reads and converts every variable', () => {
    const c = loadConfig({
      STORAGE_URL: 's3://bucket/prefix?endpoint=http://127.0.0.1:9000&region=eu-west-1',
      PORT: '8080',
      PROCESS_CONCURRENCY: '8',
      MAX_UPLOAD_BYTES: '1048576',
      MIGRATE_ON_START: 'false',
      LOG_LEVEL: 'debug',
    });
    expect(c.storageUrl.startsWith('s3://')).toBe(true);
    expect(c.port).toBe(8080);
    expect(c.concurrency.process).toBe(8);
    expect(c.maxUploadBytes).toBe(1048576);
    expect(c.migrateOnStart).toBe(false);
    expect(c.logLevel).toBe('debug');
  });

  test('lists every bad variable in one error', () => {
    let error: unknown;
    try {
      loadConfig({
        PORT: 'eighty',
        DATABASE_URL: 'mysql://x',
        STORAGE_URL: 'ftp://x',
        INGEST_CONCURRENCY: '0',
        LOG_LEVEL: 'loud',
      });
    } catch (err) {
      error = err;
    }
    expect(error).toBeInstanceOf(AppError);
    const e = error as AppError;
    expect(e.code).toBe('CONFIG_INVALID');
    for (const name of ['PORT', 'DATABASE_URL', 'STORAGE_URL', 'INGEST_CONCURRENCY', 'LOG_LEVEL']) {
      expect(e.message).toContain(name);
    }
    expect(e.details?.errors).toHaveLength(5);
  });
});
