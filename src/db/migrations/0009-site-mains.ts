import { type Kysely, sql } from 'kysely';

/**
 * The mains frequency at a site (50 Hz in most of the world, 60 Hz in the Americas and parts of Asia), for the
 * ECG notch filter. NULL lets normalisation take it from the file or detect it from the signal.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .alterTable('sites')
    .addColumn('mains_hz', 'smallint', (c) => c.check(sql`mains_hz IN (50, 60)`))
    .execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.alterTable('sites').dropColumn('mains_hz').execute();
}
