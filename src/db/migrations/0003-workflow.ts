import { type Kysely, sql } from 'kysely';

/**
 * Reading workflow (issue 6, first part): reader qualifications and shifts, site cross-border policy and SLA
 * contract, routing rules as data, and per-case due time, pool and lease.
 *
 * A case's claim state lives on its row so that a claim is one atomic UPDATE: `assignments` keeps who a case
 * was pushed to (and the history), `lease_*` who is reading it now. A lease is live while
 * `lease_expires_at > now()`; an expired lease needs no job to undo, every query compares it with now().
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .alterTable('readers')
    .addColumn('subspecialties', sql`text[]`, (c) => c.notNull().defaultTo(sql`'{}'`))
    .addColumn('languages', sql`text[]`, (c) => c.notNull().defaultTo(sql`'{}'`))
    .addColumn('time_zone', 'text', (c) => c.notNull().defaultTo('UTC'))
    // NULL: no schedule kept, available at any hour; otherwise [{ day, start, end }] in local wall-clock time.
    .addColumn('shifts', 'jsonb')
    .addColumn('shift_exceptions', 'jsonb', (c) => c.notNull().defaultTo(sql`'[]'::jsonb`))
    .execute();

  await db.schema
    .alterTable('sites')
    .addColumn('cross_border_policy', 'text', (c) =>
      c.notNull().defaultTo('never').check(sql`cross_border_policy IN ('never','deidentified','identified')`),
    )
    // The full contract is stored (defaults included) so the due-time trigger reads one row and no constant.
    .addColumn('sla_minutes', 'jsonb', (c) =>
      c
        .notNull()
        .defaultTo(sql`'{"stat":60,"urgent":240,"routine":1440}'::jsonb`)
        .check(
          sql`jsonb_typeof(sla_minutes->'stat') = 'number' AND (sla_minutes->>'stat')::numeric >= 1
          AND jsonb_typeof(sla_minutes->'urgent') = 'number' AND (sla_minutes->>'urgent')::numeric >= 1
          AND jsonb_typeof(sla_minutes->'routine') = 'number' AND (sla_minutes->>'routine')::numeric >= 1`,
        ),
    )
    .execute();

  await db.schema
    .createTable('routing_rules')
    .addColumn('id', 'uuid', (c) => c.primaryKey().defaultTo(sql`gen_random_uuid()`))
    .addColumn('position', 'integer', (c) => c.notNull())
    .addColumn('name', 'text', (c) => c.notNull())
    .addColumn('enabled', 'boolean', (c) => c.notNull().defaultTo(true))
    .addColumn('match', 'jsonb', (c) => c.notNull().defaultTo(sql`'{}'::jsonb`))
    .addColumn('target', 'jsonb', (c) => c.notNull())
    .addColumn('policy', 'text', (c) => c.notNull().check(sql`policy IN ('push','pull')`))
    .addColumn('fallbacks', 'jsonb', (c) => c.notNull().defaultTo(sql`'[]'::jsonb`))
    .addColumn('prefer_prior_reader', 'boolean', (c) => c.notNull().defaultTo(true))
    .addColumn('created_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
    .addColumn('updated_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
    .execute();
  // Deferred, so an insert in the middle can shift the positions below it in one UPDATE.
  await sql`ALTER TABLE routing_rules ADD CONSTRAINT routing_rules_position UNIQUE (position) DEFERRABLE INITIALLY DEFERRED`.execute(
    db,
  );

  await db.schema
    .alterTable('cases')
    // Clinical flags a rule can match on (an ECG's 'asystole'), set by analysis or by the clinic.
    .addColumn('flags', sql`text[]`, (c) => c.notNull().defaultTo(sql`'{}'`))
    .addColumn('due_at', 'timestamptz')
    // Stored so that the worklist order (priority, due time, id) is one index.
    .addColumn('priority_rank', 'smallint', (c) =>
      c.generatedAlwaysAs(sql`CASE priority WHEN 'stat' THEN 0 WHEN 'urgent' THEN 1 ELSE 2 END`).stored(),
    )
    // The reader pool the case belongs to once routed (push or pull): who may claim it when nobody holds it.
    .addColumn('pool_id', 'text')
    .addColumn('pool_specialty', 'text')
    .addColumn('pool_subspecialty', 'text')
    .addColumn('pool_language', 'text')
    .addColumn('pool_jurisdiction', 'text')
    // Wider pools the matching rule names after the one used; escalation opens the case to them in order.
    .addColumn('pool_fallbacks', 'jsonb', (c) => c.notNull().defaultTo(sql`'[]'::jsonb`))
    .addColumn('route_rule', 'text')
    // The reader of the live assignment, kept by the `assignments_to_case` trigger: worklists and claims test one
    // column of the case row instead of probing assignments for every case.
    .addColumn('assigned_reader_id', 'text', (c) => c.references('readers.id'))
    .addColumn('lease_reader_id', 'text', (c) => c.references('readers.id'))
    .addColumn('lease_expires_at', 'timestamptz')
    .addColumn('claimed_at', 'timestamptz')
    .execute();

  // Every case has a due time from its site's contract and its priority, whichever code path inserts it or
  // raises its priority; src/domain/sla.ts `dueAt` is the same formula. The clock starts when the case is
  // created at the hub.
  await sql`
    CREATE FUNCTION teleread_case_due_at() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
      NEW.due_at := NEW.created_at + make_interval(mins => (
        SELECT (s.sla_minutes ->> NEW.priority)::int FROM sites s WHERE s.id = NEW.site_id));
      RETURN NEW;
    END $$`.execute(db);
  await sql`
    CREATE TRIGGER cases_due_at BEFORE INSERT OR UPDATE OF priority, site_id, created_at ON cases
    FOR EACH ROW EXECUTE FUNCTION teleread_case_due_at()`.execute(db);
  await sql`UPDATE cases SET priority = priority`.execute(db);
  await sql`ALTER TABLE cases ALTER COLUMN due_at SET NOT NULL`.execute(db);

  // Whatever writes assignments (routing, release, reassign, later report signing), the case row follows, in the
  // same transaction.
  await sql`
    CREATE FUNCTION teleread_assignment_to_case() RETURNS trigger LANGUAGE plpgsql AS $$
    DECLARE target uuid;
    BEGIN
      IF TG_OP = 'DELETE' THEN target := OLD.case_id; ELSE target := NEW.case_id; END IF;
      UPDATE cases SET assigned_reader_id =
        (SELECT a.reader_id FROM assignments a WHERE a.case_id = target AND a.released_at IS NULL)
      WHERE id = target;
      RETURN NULL;
    END $$`.execute(db);
  await sql`
    CREATE TRIGGER assignments_to_case AFTER INSERT OR UPDATE OR DELETE ON assignments
    FOR EACH ROW EXECUTE FUNCTION teleread_assignment_to_case()`.execute(db);
  await sql`UPDATE cases SET assigned_reader_id = a.reader_id FROM assignments a
    WHERE a.case_id = cases.id AND a.released_at IS NULL`.execute(db);

  // Worklist order, one index per part of a worklist: a reader's own cases, and free pool cases.
  await sql`CREATE INDEX cases_assigned_queue ON cases (assigned_reader_id, priority_rank, due_at, id) WHERE assigned_reader_id IS NOT NULL`.execute(
    db,
  );
  await sql`CREATE INDEX cases_pool_queue ON cases (pool_specialty, priority_rank, due_at, id) WHERE pool_specialty IS NOT NULL AND assigned_reader_id IS NULL`.execute(
    db,
  );
  await sql`CREATE INDEX cases_lease_reader ON cases (lease_reader_id) WHERE lease_reader_id IS NOT NULL`.execute(
    db,
  );
  // Follow-up lookup: earlier cases of the same patient at the same site.
  await sql`CREATE INDEX files_site_patient ON files (site_id, (patient ->> 'id')) WHERE patient ? 'id'`.execute(
    db,
  );
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`DROP INDEX IF EXISTS files_site_patient`.execute(db);
  await sql`DROP TRIGGER IF EXISTS assignments_to_case ON assignments`.execute(db);
  await sql`DROP FUNCTION IF EXISTS teleread_assignment_to_case()`.execute(db);
  await sql`DROP TRIGGER IF EXISTS cases_due_at ON cases`.execute(db);
  await sql`DROP FUNCTION IF EXISTS teleread_case_due_at()`.execute(db);
  for (const column of [
    'claimed_at',
    'lease_expires_at',
    'lease_reader_id',
    'assigned_reader_id',
    'route_rule',
    'pool_fallbacks',
    'pool_jurisdiction',
    'pool_language',
    'pool_subspecialty',
    'pool_specialty',
    'pool_id',
    'priority_rank',
    'due_at',
    'flags',
  ]) {
    await db.schema.alterTable('cases').dropColumn(column).execute();
  }
  await db.schema.dropTable('routing_rules').ifExists().execute();
  await db.schema.alterTable('sites').dropColumn('sla_minutes').dropColumn('cross_border_policy').execute();
  await db.schema
    .alterTable('readers')
    .dropColumn('shift_exceptions')
    .dropColumn('shifts')
    .dropColumn('time_zone')
    .dropColumn('languages')
    .dropColumn('subspecialties')
    .execute();
}
