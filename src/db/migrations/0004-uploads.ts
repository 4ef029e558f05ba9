import { type Kysely, sql } from 'kysely';

/**
 * Resumable and direct-to-storage uploads (issue 7).
 *
 * `upload_batches`: several files sent one by one (over tus or S3 multipart) that must form one upload, as the
 * files of one `POST /v1/uploads` request do (a WFDB header with its signal files). The batch id becomes the
 * `uploads.id` when the batch is sealed; until then no `files` row exists, so nothing is ingested early.
 *
 * `upload_sessions`: one tus upload or one S3 multipart upload. `file_id` is chosen when the session is created
 * and becomes the `files.id` of the finished file: whatever retries happen (a final PATCH sent twice, a
 * complete call repeated), the primary key of `files` lets the file enter the pipeline once.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .createTable('upload_batches')
    .addColumn('id', 'uuid', (c) => c.primaryKey())
    .addColumn('site_id', 'text', (c) => c.notNull().references('sites.id'))
    .addColumn('priority', 'text', (c) => c.notNull().check(sql`priority IN ('stat','urgent','routine')`))
    .addColumn('notes', 'text')
    .addColumn('request_id', 'text')
    .addColumn('actor_key_id', 'uuid')
    .addColumn('created_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
    .addColumn('last_activity_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
    .addColumn('sealed_at', 'timestamptz')
    .addColumn('expired_at', 'timestamptz')
    .execute();
  await sql`CREATE INDEX upload_batches_open ON upload_batches (last_activity_at) WHERE sealed_at IS NULL AND expired_at IS NULL`.execute(
    db,
  );

  await db.schema
    .createTable('upload_sessions')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('protocol', 'text', (c) => c.notNull().check(sql`protocol IN ('tus','multipart')`))
    .addColumn('site_id', 'text', (c) => c.notNull().references('sites.id'))
    // The uploads row the file will belong to: the batch's id, or an id of its own for a lone file.
    .addColumn('upload_id', 'uuid', (c) => c.notNull())
    .addColumn('batch_id', 'uuid', (c) => c.references('upload_batches.id'))
    .addColumn('file_id', 'uuid', (c) => c.notNull().unique())
    .addColumn('object_key', 'text', (c) => c.notNull())
    .addColumn('name', 'text', (c) => c.notNull())
    .addColumn('content_type', 'text')
    .addColumn('bytes', 'bigint', (c) => c.notNull())
    .addColumn('priority', 'text', (c) => c.notNull().check(sql`priority IN ('stat','urgent','routine')`))
    .addColumn('notes', 'text')
    // tus Upload-Metadata as the client sent it (HEAD must echo it back).
    .addColumn('metadata', 'jsonb', (c) => c.notNull().defaultTo(sql`'{}'::jsonb`))
    .addColumn('declared_sha256', 'text')
    .addColumn('sha256', 'text')
    .addColumn('s3_upload_id', 'text')
    .addColumn('part_bytes', 'bigint')
    .addColumn('actor_key_id', 'uuid')
    .addColumn('request_id', 'text')
    .addColumn('created_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
    .addColumn('last_activity_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
    .addColumn('completed_at', 'timestamptz')
    .addColumn('ended_at', 'timestamptz')
    .addColumn('end_reason', 'text', (c) =>
      c.check(sql`end_reason IN ('expired','terminated','checksum-mismatch','verification-failed')`),
    )
    .execute();
  await sql`CREATE INDEX upload_sessions_live ON upload_sessions (last_activity_at) WHERE completed_at IS NULL AND ended_at IS NULL`.execute(
    db,
  );
  await sql`CREATE INDEX upload_sessions_batch ON upload_sessions (batch_id) WHERE batch_id IS NOT NULL`.execute(
    db,
  );
  await sql`CREATE INDEX upload_sessions_completed ON upload_sessions (completed_at) WHERE completed_at IS NOT NULL`.execute(
    db,
  );
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.dropTable('upload_sessions').ifExists().execute();
  await db.schema.dropTable('upload_batches').ifExists().execute();
}
