import { type Kysely, sql } from 'kysely';

/**
 * SLA escalation, the audit trail, and key expiry (issue 6, last part).
 *
 * - `cases.escalation_level` (0 none, 1 at 50 % of the SLA, 2 at 80 %) and `queue_rank`: the priority rank
 *   lowered by the escalation level, never below stat's 0. Worklists sorted by (queue_rank, due_at, id) show an
 *   escalated routine case among the urgent ones at 50 % and among the stat ones at 80 %; `priority_rank`
 *   keeps meaning the priority the clinic asked for (filters use it).
 * - `cases.sla_scheduled_for`: the due time the escalation jobs were last queued for. A case whose `due_at`
 *   differs (new, or re-prioritised) is rescheduled by the SLA sweep, so the queue can always be rebuilt from
 *   this table.
 * - `audit_events.ip` and an append-only guarantee enforced by PostgreSQL itself, whichever code path or
 *   console session tries: a trigger refuses UPDATE, DELETE and TRUNCATE, and the application role (when it
 *   exists) has those privileges revoked.
 * - `api_keys.expires_at`: a key past it authenticates no more, exactly like a revoked one.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .alterTable('cases')
    .addColumn('escalation_level', 'smallint', (c) =>
      c.notNull().defaultTo(0).check(sql`escalation_level BETWEEN 0 AND 2`),
    )
    .addColumn('escalated_at', 'timestamptz')
    .addColumn('sla_scheduled_for', 'timestamptz')
    .execute();
  await db.schema
    .alterTable('cases')
    .addColumn('queue_rank', 'smallint', (c) =>
      c
        .generatedAlwaysAs(
          sql`greatest(0, CASE priority WHEN 'stat' THEN 0 WHEN 'urgent' THEN 1 ELSE 2 END - escalation_level)`,
        )
        .stored(),
    )
    .execute();
  // The SLA sweep looks for open cases whose escalation jobs are missing or were queued for another due time;
  // closed cases leave the index, so it stays as small as the backlog.
  await sql`CREATE INDEX cases_sla_unscheduled ON cases (created_at)
    WHERE status IN ('receiving','processing','ready','routed') AND sla_scheduled_for IS DISTINCT FROM due_at`.execute(
    db,
  );
  // GET /v1/ops/sla: open cases by due time. The status list is the open states; later states leave it.
  await sql`CREATE INDEX cases_open_due ON cases (due_at)
    WHERE status IN ('receiving','processing','ready','routed')`.execute(db);

  await db.schema.alterTable('api_keys').addColumn('expires_at', 'timestamptz').execute();

  await db.schema.alterTable('audit_events').addColumn('ip', sql`inet`).execute();
  // Newest first, filtered by case, by actor, or by time only.
  await sql`CREATE INDEX audit_case_id ON audit_events (case_id, id DESC) WHERE case_id IS NOT NULL`.execute(
    db,
  );
  await sql`CREATE INDEX audit_actor_id ON audit_events (actor_key_id, id DESC) WHERE actor_key_id IS NOT NULL`.execute(
    db,
  );
  // Rows arrive in time order, so a BRIN index on `at` is tiny and enough for time-range scans.
  await sql`CREATE INDEX audit_at ON audit_events USING brin (at)`.execute(db);

  await sql`
    CREATE FUNCTION teleread_audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
      RAISE EXCEPTION 'audit_events is append-only: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
    END $$`.execute(db);
  await sql`
    CREATE TRIGGER audit_events_append_only BEFORE UPDATE OR DELETE ON audit_events
    FOR EACH ROW EXECUTE FUNCTION teleread_audit_append_only()`.execute(db);
  await sql`
    CREATE TRIGGER audit_events_no_truncate BEFORE TRUNCATE ON audit_events
    FOR EACH STATEMENT EXECUTE FUNCTION teleread_audit_append_only()`.execute(db);
  // Belt and braces where the deployment runs the application under its own role (docs/security.md): without the
  // privilege the statement is refused before any trigger runs. The owner can still drop the trigger, which is
  // why the application should not own the schema.
  await sql`
    DO $$ BEGIN
      REVOKE UPDATE, DELETE, TRUNCATE ON audit_events FROM PUBLIC;
      IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'teleread_app') THEN
        REVOKE UPDATE, DELETE, TRUNCATE ON audit_events FROM teleread_app;
        GRANT SELECT, INSERT ON audit_events TO teleread_app;
      END IF;
    END $$`.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`DROP TRIGGER IF EXISTS audit_events_no_truncate ON audit_events`.execute(db);
  await sql`DROP TRIGGER IF EXISTS audit_events_append_only ON audit_events`.execute(db);
  await sql`DROP FUNCTION IF EXISTS teleread_audit_append_only()`.execute(db);
  await sql`DROP INDEX IF EXISTS audit_at`.execute(db);
  await sql`DROP INDEX IF EXISTS audit_actor_id`.execute(db);
  await sql`DROP INDEX IF EXISTS audit_case_id`.execute(db);
  await db.schema.alterTable('audit_events').dropColumn('ip').execute();
  await db.schema.alterTable('api_keys').dropColumn('expires_at').execute();
  await sql`DROP INDEX IF EXISTS cases_open_due`.execute(db);
  await sql`DROP INDEX IF EXISTS cases_sla_unscheduled`.execute(db);
  await db.schema
    .alterTable('cases')
    .dropColumn('queue_rank')
    .dropColumn('sla_scheduled_for')
    .dropColumn('escalated_at')
    .dropColumn('escalation_level')
    .execute();
}
