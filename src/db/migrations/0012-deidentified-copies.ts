import type { Kysely } from 'kysely';

/**
 * De-identified DICOM copies for readers abroad (issue 3). The Modified Dates option moves every date of a study
 * by the same number of days, so the shift belongs to the case: drawn at random when the first copy of one of
 * its instances is made, kept here, and used for every later copy. It is random rather than derived from the
 * case id, which a reader abroad knows, so the dates cannot be shifted back.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema.alterTable('cases').addColumn('deid_date_shift_days', 'integer').execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.alterTable('cases').dropColumn('deid_date_shift_days').execute();
}
