import type { Kysely } from 'kysely';

/**
 * The BullMQ job that carries a file's ingest (`ingest-<fileId>`, or `ingest-batch-<first fileId>` for the files
 * of one request). The sweep asks Redis whether that job is still queued before it queues the file again: under
 * a backlog, a batch waiting its turn is not stuck, and queueing its files one by one would double the work.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema.alterTable('files').addColumn('ingest_job', 'text').execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.alterTable('files').dropColumn('ingest_job').execute();
}
