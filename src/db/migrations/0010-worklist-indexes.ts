import { type Kysely, sql } from 'kysely';

/**
 * Worklist indexes bounded to the cases a worklist can show (status 'routed', WORKLIST_STATUSES in
 * src/db/case-queries.ts), one per part of a worklist, each in worklist order (queue_rank, due_at, id) so a page
 * stops after limit + 1 entries:
 *
 * - `cases_worklist_assigned`: cases pushed to a reader.
 * - `cases_worklist_claimed`: pool cases a reader holds a lease on (live or lapsed; the query checks the time).
 * - `cases_worklist_pool`: pool cases pushed to nobody. The pool admission columns (subspecialty, language,
 *   jurisdiction, site, de-identified opening, lease) are INCLUDEd, so the capped counts are index-only scans
 *   that never visit the table; `kind` and `priority_rank` are included for the filters.
 *
 * The predicates of 0003's and 0007's queue indexes had no status, so every reported case stayed in them for
 * good (its assignment released by signing), and each pool read filtered those rows out one by one. The new
 * indexes replace them; nothing else reads 0003's `priority_rank` indexes. Should WORKLIST_STATUSES ever grow,
 * a later migration widens these predicates, or the planner stops using them.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`CREATE INDEX cases_worklist_assigned ON cases (assigned_reader_id, queue_rank, due_at, id)
    INCLUDE (kind, priority_rank)
    WHERE status = 'routed' AND assigned_reader_id IS NOT NULL`.execute(db);
  await sql`CREATE INDEX cases_worklist_claimed ON cases (lease_reader_id, queue_rank, due_at, id)
    INCLUDE (lease_expires_at, kind, priority_rank)
    WHERE status = 'routed' AND assigned_reader_id IS NULL AND lease_reader_id IS NOT NULL`.execute(db);
  await sql`CREATE INDEX cases_worklist_pool ON cases (pool_specialty, queue_rank, due_at, id)
    INCLUDE (pool_subspecialty, pool_language, pool_jurisdiction, site_id, deidentified_abroad, lease_expires_at,
      kind, priority_rank)
    WHERE status = 'routed' AND assigned_reader_id IS NULL AND pool_specialty IS NOT NULL`.execute(db);
  await sql`DROP INDEX IF EXISTS cases_assigned_queue_rank`.execute(db);
  await sql`DROP INDEX IF EXISTS cases_pool_queue_rank`.execute(db);
  await sql`DROP INDEX IF EXISTS cases_assigned_queue`.execute(db);
  await sql`DROP INDEX IF EXISTS cases_pool_queue`.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`CREATE INDEX cases_assigned_queue ON cases (assigned_reader_id, priority_rank, due_at, id) WHERE assigned_reader_id IS NOT NULL`.execute(
    db,
  );
  await sql`CREATE INDEX cases_pool_queue ON cases (pool_specialty, priority_rank, due_at, id) WHERE pool_specialty IS NOT NULL AND assigned_reader_id IS NULL`.execute(
    db,
  );
  await sql`CREATE INDEX cases_assigned_queue_rank ON cases (assigned_reader_id, queue_rank, due_at, id) WHERE assigned_reader_id IS NOT NULL`.execute(
    db,
  );
  await sql`CREATE INDEX cases_pool_queue_rank ON cases (pool_specialty, queue_rank, due_at, id) WHERE pool_specialty IS NOT NULL AND assigned_reader_id IS NULL`.execute(
    db,
  );
  await sql`DROP INDEX IF EXISTS cases_worklist_pool`.execute(db);
  await sql`DROP INDEX IF EXISTS cases_worklist_claimed`.execute(db);
  await sql`DROP INDEX IF EXISTS cases_worklist_assigned`.execute(db);
}
