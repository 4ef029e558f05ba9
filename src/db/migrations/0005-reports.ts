import { type Kysely, sql } from 'kysely';

/**
 * Reports (issue 6, reports part): one report per case, drafted under the reader's lease and signed once;
 * addenda appended and signed; webhooks to the clinic with every delivery attempt kept.
 *
 * Immutability is the database's job, not only the API's: triggers refuse to change a signed report or any
 * addendum, and a CHECK ties every stored hash to the exact canonical text it was computed from, so an edit
 * that bypasses the API (a hand-written UPDATE) still cannot leave a report whose hash lies.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  // 0001 declared the status check inline, so PostgreSQL named it cases_status_check.
  await sql`ALTER TABLE cases DROP CONSTRAINT IF EXISTS cases_status_check`.execute(db);
  await sql`ALTER TABLE cases ADD CONSTRAINT cases_status_check
    CHECK (status IN ('receiving','processing','ready','routed','reported','failed'))`.execute(db);
  // The stamp SLA clocks stop on: set in the signing transaction, together with status 'reported'.
  await db.schema.alterTable('cases').addColumn('reported_at', 'timestamptz').execute();
  await sql`ALTER TABLE cases ADD CONSTRAINT cases_reported_stamp
    CHECK (status <> 'reported' OR reported_at IS NOT NULL)`.execute(db);

  // An assignment ends either given back (released_at only) or done (released_at and completed_at).
  await db.schema.alterTable('assignments').addColumn('completed_at', 'timestamptz').execute();

  await db.schema
    .alterTable('sites')
    .addColumn('webhook_url', 'text')
    // Kept in clear: an HMAC needs the secret itself, not a hash of it.
    .addColumn('webhook_secret', 'text')
    .execute();
  await sql`ALTER TABLE sites ADD CONSTRAINT sites_webhook
    CHECK ((webhook_url IS NULL) = (webhook_secret IS NULL) AND (webhook_url IS NULL OR webhook_url ~ '^https?://'))`.execute(
    db,
  );

  await db.schema
    .createTable('reports')
    .addColumn('id', 'uuid', (c) => c.primaryKey().defaultTo(sql`gen_random_uuid()`))
    // Always the original case at the hub: a reader working on a de-identified copy reports on the original.
    .addColumn('case_id', 'uuid', (c) => c.notNull().unique().references('cases.id'))
    // The reader who last saved the draft.
    .addColumn('author_reader_id', 'text', (c) => c.notNull().references('readers.id'))
    .addColumn('findings', 'text', (c) => c.notNull().defaultTo(''))
    .addColumn('impression', 'text', (c) => c.notNull().defaultTo(''))
    .addColumn('critical', 'boolean', (c) => c.notNull().defaultTo(false))
    .addColumn('codes', 'jsonb', (c) => c.notNull().defaultTo(sql`'[]'::jsonb`))
    // The author is not licensed where the case comes from: they read a de-identified copy.
    .addColumn('deidentified', 'boolean', (c) => c.notNull().defaultTo(false))
    .addColumn('created_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
    .addColumn('updated_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
    .addColumn('signed_at', 'timestamptz')
    .addColumn('signer_reader_id', 'text', (c) => c.references('readers.id'))
    // The name as it was when signed: a later rename must not change what was signed.
    .addColumn('signer_name', 'text')
    .addColumn('content_hash', 'text')
    .addColumn('signed_content', 'text')
    .addCheckConstraint(
      'reports_signature_whole',
      sql`(signed_at IS NULL) = (signer_reader_id IS NULL) AND (signed_at IS NULL) = (signer_name IS NULL)
        AND (signed_at IS NULL) = (content_hash IS NULL) AND (signed_at IS NULL) = (signed_content IS NULL)`,
    )
    .addCheckConstraint(
      'reports_hash_matches',
      sql`signed_content IS NULL OR content_hash = encode(sha256(convert_to(signed_content, 'UTF8')), 'hex')`,
    )
    .execute();
  await sql`CREATE INDEX reports_signer ON reports (signer_reader_id, signed_at DESC) WHERE signed_at IS NOT NULL`.execute(
    db,
  );

  await sql`
    CREATE FUNCTION teleread_report_immutable() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
      IF OLD.signed_at IS NOT NULL THEN
        RAISE EXCEPTION 'report % is signed and cannot be changed', OLD.id USING ERRCODE = 'check_violation';
      END IF;
      IF TG_OP = 'DELETE' THEN RETURN OLD; END IF;
      RETURN NEW;
    END $$`.execute(db);
  await sql`CREATE TRIGGER reports_immutable BEFORE UPDATE OR DELETE ON reports
    FOR EACH ROW EXECUTE FUNCTION teleread_report_immutable()`.execute(db);

  await db.schema
    .createTable('report_addenda')
    .addColumn('id', 'uuid', (c) => c.primaryKey().defaultTo(sql`gen_random_uuid()`))
    .addColumn('report_id', 'uuid', (c) => c.notNull().references('reports.id'))
    .addColumn('case_id', 'uuid', (c) => c.notNull().references('cases.id'))
    .addColumn('seq', 'integer', (c) => c.notNull().check(sql`seq >= 1`))
    .addColumn('text', 'text', (c) => c.notNull())
    .addColumn('critical', 'boolean', (c) => c.notNull().defaultTo(false))
    .addColumn('signed_at', 'timestamptz', (c) => c.notNull())
    .addColumn('signer_reader_id', 'text', (c) => c.notNull().references('readers.id'))
    .addColumn('signer_name', 'text', (c) => c.notNull())
    .addColumn('previous_hash', 'text', (c) => c.notNull())
    .addColumn('content_hash', 'text', (c) => c.notNull())
    .addColumn('signed_content', 'text', (c) => c.notNull())
    .addUniqueConstraint('report_addenda_seq', ['report_id', 'seq'])
    .addCheckConstraint(
      'report_addenda_hash_matches',
      sql`content_hash = encode(sha256(convert_to(signed_content, 'UTF8')), 'hex')`,
    )
    .execute();
  await sql`
    CREATE FUNCTION teleread_addendum_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
      RAISE EXCEPTION 'addendum % is signed and cannot be changed', OLD.id USING ERRCODE = 'check_violation';
    END $$`.execute(db);
  await sql`CREATE TRIGGER report_addenda_append_only BEFORE UPDATE OR DELETE ON report_addenda
    FOR EACH ROW EXECUTE FUNCTION teleread_addendum_append_only()`.execute(db);

  await db.schema
    .createTable('webhook_deliveries')
    .addColumn('id', 'uuid', (c) => c.primaryKey())
    .addColumn('site_id', 'text', (c) => c.notNull().references('sites.id'))
    .addColumn('case_id', 'uuid', (c) => c.notNull().references('cases.id'))
    .addColumn('report_id', 'uuid', (c) => c.notNull().references('reports.id'))
    .addColumn('event', 'text', (c) => c.notNull())
    // The exact bytes sent, every time: a retry or resend signs the same body under a fresh timestamp.
    .addColumn('body', 'text', (c) => c.notNull())
    // The target of the latest attempt (the site's URL is read at each attempt, so a corrected URL is used).
    .addColumn('url', 'text', (c) => c.notNull())
    .addColumn('status', 'text', (c) =>
      c.notNull().defaultTo('pending').check(sql`status IN ('pending','delivered','failed')`),
    )
    .addColumn('attempts', 'integer', (c) => c.notNull().defaultTo(0))
    // A resend starts a new round with a fresh retry budget (and a new BullMQ job id).
    .addColumn('round', 'integer', (c) => c.notNull().defaultTo(0))
    .addColumn('round_attempts', 'integer', (c) => c.notNull().defaultTo(0))
    .addColumn('last_status_code', 'integer')
    .addColumn('last_error', 'text')
    .addColumn('last_duration_ms', 'integer')
    .addColumn('last_attempt_at', 'timestamptz')
    .addColumn('next_retry_at', 'timestamptz')
    .addColumn('request_id', 'text')
    .addColumn('created_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
    .addColumn('delivered_at', 'timestamptz')
    .addColumn('failed_at', 'timestamptz')
    .execute();
  await sql`CREATE INDEX webhook_deliveries_status ON webhook_deliveries (status, created_at DESC)`.execute(
    db,
  );
  await sql`CREATE INDEX webhook_deliveries_case ON webhook_deliveries (case_id, created_at)`.execute(db);

  await db.schema
    .createTable('webhook_attempts')
    .addColumn('id', 'bigserial', (c) => c.primaryKey())
    .addColumn('delivery_id', 'uuid', (c) => c.notNull().references('webhook_deliveries.id'))
    // 1-based over the delivery's whole life, across resends.
    .addColumn('attempt', 'integer', (c) => c.notNull())
    .addColumn('round', 'integer', (c) => c.notNull())
    .addColumn('url', 'text', (c) => c.notNull())
    .addColumn('started_at', 'timestamptz', (c) => c.notNull())
    .addColumn('duration_ms', 'integer', (c) => c.notNull())
    .addColumn('status_code', 'integer')
    .addColumn('error', 'text')
    .addColumn('outcome', 'text', (c) => c.notNull().check(sql`outcome IN ('delivered','retry','failed')`))
    .addColumn('next_retry_at', 'timestamptz')
    .addUniqueConstraint('webhook_attempts_number', ['delivery_id', 'attempt'])
    .execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.dropTable('webhook_attempts').ifExists().execute();
  await db.schema.dropTable('webhook_deliveries').ifExists().execute();
  await db.schema.dropTable('report_addenda').ifExists().execute();
  await sql`DROP FUNCTION IF EXISTS teleread_addendum_append_only()`.execute(db);
  await db.schema.dropTable('reports').ifExists().execute();
  await sql`DROP FUNCTION IF EXISTS teleread_report_immutable()`.execute(db);
  await sql`ALTER TABLE sites DROP CONSTRAINT IF EXISTS sites_webhook`.execute(db);
  await db.schema.alterTable('sites').dropColumn('webhook_secret').dropColumn('webhook_url').execute();
  await db.schema.alterTable('assignments').dropColumn('completed_at').execute();
  await sql`ALTER TABLE cases DROP CONSTRAINT IF EXISTS cases_reported_stamp`.execute(db);
  await db.schema.alterTable('cases').dropColumn('reported_at').execute();
  await sql`UPDATE cases SET status = 'routed' WHERE status = 'reported'`.execute(db);
  await sql`ALTER TABLE cases DROP CONSTRAINT IF EXISTS cases_status_check`.execute(db);
  await sql`ALTER TABLE cases ADD CONSTRAINT cases_status_check
    CHECK (status IN ('receiving','processing','ready','routed','failed'))`.execute(db);
}
