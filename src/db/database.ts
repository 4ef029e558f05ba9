import { Kysely, type Migration, type MigrationProvider, Migrator, PostgresDialect } from 'kysely';
import pg from 'pg';
import { AppError } from '../errors.js';
import * as m0001 from './migrations/0001-initial.js';
import * as m0002 from './migrations/0002-imaging.js';
import * as m0003 from './migrations/0003-workflow.js';
import * as m0004 from './migrations/0004-uploads.js';
import * as m0005 from './migrations/0005-reports.js';
import * as m0006 from './migrations/0006-sla-audit.js';
import * as m0007 from './migrations/0007-escalated-worklist.js';
import * as m0008 from './migrations/0008-cross-border.js';
import * as m0009 from './migrations/0009-site-mains.js';
import * as m0010 from './migrations/0010-worklist-indexes.js';
import * as m0011 from './migrations/0011-ingest-job.js';
import * as m0012 from './migrations/0012-deidentified-copies.js';
import type { Database } from './schema.js';
import { createWriteWatch, type WriteWatch, watchWrites } from './write-watch.js';

// bigint columns (bytes, counts) come back as strings by default; keep them as strings in the row types but
// parse COUNT(*) results where used. Timestamps stay Date.

export type Db = Kysely<Database>;

/** Each handle's write watch; a WeakMap, so a destroyed handle takes its listeners with it. */
const watches = new WeakMap<Db, WriteWatch>();

export function createDatabase(databaseUrl: string, options: { max?: number } = {}): Db {
  const pool = new pg.Pool({ connectionString: databaseUrl, max: options.max ?? 10 });
  // An idle client that loses its server emits 'error' on the pool; without a listener Node would crash.
  pool.on('error', () => undefined);
  const watch = createWriteWatch();
  const db = new Kysely<Database>({ dialect: watchWrites(new PostgresDialect({ pool }), watch) });
  watches.set(db, watch);
  return db;
}

/**
 * The committed writes made through a handle from `createDatabase`, for in-process caches to invalidate on.
 * Undefined for any other handle: a cache that cannot see writes must not cache.
 */
export function writeWatchOf(db: Db): WriteWatch | undefined {
  return watches.get(db);
}

/** Migrations are imported statically, so they work the same under tsx, in a bundle, or in a container. */
const provider: MigrationProvider = {
  async getMigrations(): Promise<Record<string, Migration>> {
    return {
      '0001-initial': m0001,
      '0002-imaging': m0002,
      '0003-workflow': m0003,
      '0004-uploads': m0004,
      '0005-reports': m0005,
      '0006-sla-audit': m0006,
      '0007-escalated-worklist': m0007,
      '0008-cross-border': m0008,
      '0009-site-mains': m0009,
      '0010-worklist-indexes': m0010,
      '0011-ingest-job': m0011,
      '0012-deidentified-copies': m0012,
    };
  },
};

export async function migrateToLatest(db: Db): Promise<string[]> {
  const migrator = new Migrator({ db, provider, migrationTableName: 'teleread_migrations' });
  const { error, results } = await migrator.migrateToLatest();
  if (error) {
    throw new AppError(
      'DATABASE_UNAVAILABLE',
      `migration failed: ${error instanceof Error ? error.message : error}`,
      {
        cause: error,
      },
    );
  }
  return (results ?? []).filter((r) => r.status === 'Success').map((r) => r.migrationName);
}
