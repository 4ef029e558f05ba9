import { Kysely, PostgresDialect, sql } from 'kysely';
import pg from 'pg';
import { afterAll, beforeAll, beforeEach, describe, expect, test } from 'vitest';
import { addSite } from '../../src/cli/admin-commands.js';
import type { Context } from '../../src/context.js';
import { writeWatchOf } from '../../src/db/database.js';
import type { Database } from '../../src/db/schema.js';
import { createTestContext } from '../helpers/test-context.js';

let t: Awaited<ReturnType<typeof createTestContext>>;
let ctx: Context;
let seen: number;
let unsubscribe: () => void;

beforeAll(async () => {
  t = await createTestContext();
  ctx = t.ctx;
  unsubscribe = writeWatchOf(ctx.db)!.subscribe(['sites'], () => {
    seen++;
  });
});

afterAll(async () => {
  unsubscribe?.();
  await t?.dispose();
});

beforeEach(() => {
  seen = 0;
});

describe('the write watch of a database handle', () => {
  test('an autocommit write is announced once it has completed, whatever built it', async () => {
    await addSite(ctx.db, { id: 'watched', jurisdiction: 'KE' });
    expect(seen).toBe(1);
    await sql`UPDATE sites SET name = 'raw' WHERE id = 'watched'`.execute(ctx.db);
    expect(seen).toBe(2);
  });

  test('reads and writes to other tables are not announced to this listener', async () => {
    await ctx.db.selectFrom('sites').selectAll().execute();
    await ctx.db.selectFrom('sites').select('id').where('id', '=', 'watched').forUpdate().execute();
    await ctx.db
      .insertInto('audit_events')
      .values({ action: 'test.noise', actor_role: 'system', detail: '{}' })
      .execute();
    expect(seen).toBe(0);
  });

  test('a transaction is announced at its COMMIT, not at its statements', async () => {
    await ctx.db.transaction().execute(async (trx) => {
      await trx.updateTable('sites').set({ name: 'in a transaction' }).where('id', '=', 'watched').execute();
      // Other connections cannot see the row yet: a cache refilled now would keep the old one.
      expect(seen).toBe(0);
    });
    expect(seen).toBe(1);
  });

  test('a rolled back transaction is not announced', async () => {
    await expect(
      ctx.db.transaction().execute(async (trx) => {
        await trx.updateTable('sites').set({ name: 'never' }).where('id', '=', 'watched').execute();
        throw new Error('changed my mind');
      }),
    ).rejects.toThrow('changed my mind');
    expect(seen).toBe(0);
    // The connection that rolled back starts clean: its next autocommit write is announced once.
    await ctx.db.updateTable('sites').set({ name: 'after' }).where('id', '=', 'watched').execute();
    expect(seen).toBe(1);
  });

  test('a handle not made by createDatabase has no watch, so caches on it stay off', async () => {
    const pool = new pg.Pool({ connectionString: t.env.config.databaseUrl, max: 1 });
    const other = new Kysely<Database>({ dialect: new PostgresDialect({ pool }) });
    try {
      expect(writeWatchOf(other)).toBeUndefined();
    } finally {
      await other.destroy();
    }
  });
});
