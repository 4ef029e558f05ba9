import { type Kysely, sql } from 'kysely';

/**
 * Imaging (issue 3): DICOM AE titles per site for DIMSE, per-instance dedup, and the UID map that links a
 * de-identified copy back to its original study.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  // A modality or PACS identifies itself by its calling AE title; each title belongs to at most one site.
  await db.schema
    .alterTable('sites')
    .addColumn('ae_titles', sql`text[]`, (c) => c.notNull().defaultTo(sql`'{}'`))
    .execute();

  // SOP Instance UID on its own column: "the same instance sent twice" is a lookup, not a JSON scan.
  await db.schema.alterTable('files').addColumn('sop_instance_uid', 'text').execute();
  await db.schema
    .alterTable('files')
    .addColumn('duplicate_of', 'uuid', (c) => c.references('files.id'))
    .execute();
  await sql`CREATE INDEX files_case_sop ON files (case_id, sop_instance_uid) WHERE sop_instance_uid IS NOT NULL`.execute(
    db,
  );

  await db.schema
    .createTable('uid_remaps')
    .addColumn('case_id', 'uuid', (c) => c.notNull().references('cases.id'))
    .addColumn('original_uid', 'text', (c) => c.notNull())
    .addColumn('replacement_uid', 'text', (c) => c.notNull())
    .addColumn('created_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
    .addPrimaryKeyConstraint('uid_remaps_pk', ['case_id', 'original_uid'])
    .execute();
  await sql`CREATE UNIQUE INDEX uid_remaps_replacement ON uid_remaps (replacement_uid)`.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.dropTable('uid_remaps').ifExists().execute();
  await db.schema.alterTable('files').dropColumn('duplicate_of').execute();
  await db.schema.alterTable('files').dropColumn('sop_instance_uid').execute();
  await db.schema.alterTable('sites').dropColumn('ae_titles').execute();
}
