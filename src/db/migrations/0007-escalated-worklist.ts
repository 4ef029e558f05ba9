import { type Kysely, sql } from 'kysely';

/**
 * Worklists sort by `queue_rank` (the priority rank lowered by SLA escalation), so an escalated case rises in
 * every worklist. These indexes keep that order an index range scan, as 0003's did for `priority_rank`.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`CREATE INDEX cases_assigned_queue_rank ON cases (assigned_reader_id, queue_rank, due_at, id) WHERE assigned_reader_id IS NOT NULL`.execute(
    db,
  );
  await sql`CREATE INDEX cases_pool_queue_rank ON cases (pool_specialty, queue_rank, due_at, id) WHERE pool_specialty IS NOT NULL AND assigned_reader_id IS NULL`.execute(
    db,
  );
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`DROP INDEX IF EXISTS cases_pool_queue_rank`.execute(db);
  await sql`DROP INDEX IF EXISTS cases_assigned_queue_rank`.execute(db);
}
