import { type Kysely, sql } from 'kysely';

/**
 * The first schema. Postgres is the system of record: every pipeline step stamps its row (`ingested_at`,
 * `processed_at`, `routed_at`), so the queue can be rebuilt from these tables after any loss.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`CREATE EXTENSION IF NOT EXISTS pgcrypto`.execute(db).catch(() => undefined);

  await db.schema
    .createTable('sites')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('name', 'text', (c) => c.notNull())
    .addColumn('jurisdiction', 'text', (c) => c.notNull())
    .addColumn('created_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
    .execute();

  await db.schema
    .createTable('readers')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('name', 'text', (c) => c.notNull())
    .addColumn('specialties', sql`text[]`, (c) => c.notNull().defaultTo(sql`'{}'`))
    .addColumn('jurisdictions', sql`text[]`, (c) => c.notNull().defaultTo(sql`'{}'`))
    .addColumn('max_active', 'integer', (c) => c.notNull().defaultTo(50))
    .addColumn('active', 'boolean', (c) => c.notNull().defaultTo(true))
    .addColumn('created_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
    .execute();

  await db.schema
    .createTable('api_keys')
    .addColumn('id', 'uuid', (c) => c.primaryKey().defaultTo(sql`gen_random_uuid()`))
    // sha256 of the key: keys are 32 random bytes, so a fast hash is enough; the clear key is shown once.
    .addColumn('key_hash', 'text', (c) => c.notNull().unique())
    .addColumn('key_prefix', 'text', (c) => c.notNull())
    .addColumn('role', 'text', (c) => c.notNull().check(sql`role IN ('clinic','reader','ops','admin')`))
    .addColumn('site_id', 'text', (c) => c.references('sites.id'))
    .addColumn('reader_id', 'text', (c) => c.references('readers.id'))
    .addColumn('label', 'text')
    .addColumn('created_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
    .addColumn('revoked_at', 'timestamptz')
    .addCheckConstraint(
      'api_keys_scope',
      sql`(role <> 'clinic' OR site_id IS NOT NULL) AND (role <> 'reader' OR reader_id IS NOT NULL)`,
    )
    .execute();

  await db.schema
    .createTable('uploads')
    .addColumn('id', 'uuid', (c) => c.primaryKey())
    .addColumn('site_id', 'text', (c) => c.notNull().references('sites.id'))
    .addColumn('priority', 'text', (c) => c.notNull().check(sql`priority IN ('stat','urgent','routine')`))
    .addColumn('notes', 'text')
    .addColumn('request_id', 'text')
    .addColumn('created_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
    .execute();

  await db.schema
    .createTable('cases')
    .addColumn('id', 'uuid', (c) => c.primaryKey().defaultTo(sql`gen_random_uuid()`))
    .addColumn('site_id', 'text', (c) => c.notNull().references('sites.id'))
    .addColumn('kind', 'text', (c) => c.notNull().check(sql`kind IN ('imaging','ecg','pathology')`))
    .addColumn('status', 'text', (c) =>
      c
        .notNull()
        .defaultTo('receiving')
        .check(sql`status IN ('receiving','processing','ready','routed','failed')`),
    )
    .addColumn('priority', 'text', (c) => c.notNull().check(sql`priority IN ('stat','urgent','routine')`))
    .addColumn('priority_reason', 'text')
    // DICOM cases are keyed by study; other uploads form one case per upload request and kind.
    .addColumn('study_instance_uid', 'text')
    .addColumn('upload_id', 'uuid', (c) => c.references('uploads.id'))
    .addColumn('notes', 'text')
    .addColumn('metadata', 'jsonb', (c) => c.notNull().defaultTo(sql`'{}'::jsonb`))
    .addColumn('route_note', 'text')
    .addColumn('created_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
    .addColumn('updated_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
    .addColumn('processed_at', 'timestamptz')
    .addColumn('routed_at', 'timestamptz')
    .execute();
  await sql`CREATE UNIQUE INDEX cases_site_study ON cases (site_id, study_instance_uid) WHERE study_instance_uid IS NOT NULL`.execute(
    db,
  );
  await sql`CREATE UNIQUE INDEX cases_upload_kind ON cases (upload_id, kind) WHERE study_instance_uid IS NULL`.execute(
    db,
  );
  await sql`CREATE INDEX cases_site_status ON cases (site_id, status, created_at DESC)`.execute(db);

  await db.schema
    .createTable('files')
    .addColumn('id', 'uuid', (c) => c.primaryKey())
    .addColumn('upload_id', 'uuid', (c) => c.notNull().references('uploads.id'))
    .addColumn('site_id', 'text', (c) => c.notNull().references('sites.id'))
    .addColumn('case_id', 'uuid', (c) => c.references('cases.id'))
    .addColumn('name', 'text', (c) => c.notNull())
    .addColumn('object_key', 'text', (c) => c.notNull())
    .addColumn('sha256', 'text', (c) => c.notNull())
    .addColumn('bytes', 'bigint', (c) => c.notNull())
    .addColumn('content_type', 'text')
    .addColumn('kind', 'text')
    .addColumn('format', 'text')
    .addColumn('status', 'text', (c) =>
      c.notNull().defaultTo('received').check(sql`status IN ('received','processing','processed','failed')`),
    )
    .addColumn('error_code', 'text')
    .addColumn('error_message', 'text')
    .addColumn('metadata', 'jsonb', (c) => c.notNull().defaultTo(sql`'{}'::jsonb`))
    // Patient demographics live apart from technical metadata so de-identification drops one column.
    .addColumn('patient', 'jsonb')
    .addColumn('attempts', 'integer', (c) => c.notNull().defaultTo(0))
    .addColumn('received_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
    .addColumn('ingested_at', 'timestamptz')
    .addColumn('processed_at', 'timestamptz')
    .addColumn('failed_at', 'timestamptz')
    .execute();
  await sql`CREATE INDEX files_case ON files (case_id)`.execute(db);
  await sql`CREATE INDEX files_upload ON files (upload_id)`.execute(db);
  await sql`CREATE INDEX files_status ON files (status, received_at)`.execute(db);
  await sql`CREATE INDEX files_site_sha ON files (site_id, sha256)`.execute(db);

  await db.schema
    .createTable('artifacts')
    .addColumn('id', 'uuid', (c) => c.primaryKey().defaultTo(sql`gen_random_uuid()`))
    .addColumn('case_id', 'uuid', (c) => c.notNull().references('cases.id'))
    .addColumn('file_id', 'uuid', (c) => c.references('files.id'))
    .addColumn('name', 'text', (c) => c.notNull())
    .addColumn('object_key', 'text', (c) => c.notNull())
    .addColumn('content_type', 'text', (c) => c.notNull())
    .addColumn('bytes', 'bigint', (c) => c.notNull())
    .addColumn('width', 'integer')
    .addColumn('height', 'integer')
    .addColumn('created_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
    .addUniqueConstraint('artifacts_case_name', ['case_id', 'name'])
    .execute();

  await db.schema
    .createTable('assignments')
    .addColumn('id', 'uuid', (c) => c.primaryKey().defaultTo(sql`gen_random_uuid()`))
    .addColumn('case_id', 'uuid', (c) => c.notNull().references('cases.id'))
    .addColumn('reader_id', 'text', (c) => c.notNull().references('readers.id'))
    .addColumn('reason', 'text', (c) => c.notNull())
    .addColumn('assigned_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
    .addColumn('released_at', 'timestamptz')
    .execute();
  // At most one live assignment per case: the database, not the worker, guarantees "routed exactly once".
  await sql`CREATE UNIQUE INDEX assignments_one_active ON assignments (case_id) WHERE released_at IS NULL`.execute(
    db,
  );
  await sql`CREATE INDEX assignments_reader_active ON assignments (reader_id) WHERE released_at IS NULL`.execute(
    db,
  );

  await db.schema
    .createTable('audit_events')
    .addColumn('id', 'bigserial', (c) => c.primaryKey())
    .addColumn('at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
    .addColumn('actor_key_id', 'uuid')
    .addColumn('actor_role', 'text')
    .addColumn('action', 'text', (c) => c.notNull())
    .addColumn('case_id', 'uuid')
    .addColumn('file_id', 'uuid')
    .addColumn('request_id', 'text')
    .addColumn('detail', 'jsonb', (c) => c.notNull().defaultTo(sql`'{}'::jsonb`))
    .execute();
  await sql`CREATE INDEX audit_case ON audit_events (case_id, at)`.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  for (const t of [
    'audit_events',
    'assignments',
    'artifacts',
    'files',
    'cases',
    'uploads',
    'api_keys',
    'readers',
    'sites',
  ]) {
    await db.schema.dropTable(t).ifExists().execute();
  }
}
