import type { Kysely } from 'kysely';

/**
 * Cross-border reading of "de-identified only" sites (issue 6) and slide labels as artifacts (issue 5).
 *
 * - `cases.deidentified_abroad`: routing found nobody licensed in the site's jurisdiction and opened the case
 *   to readers licensed elsewhere, who see it only de-identified. Pools admit such readers only when it is set,
 *   so a reader abroad never races the site's own readers for a case they could read identified.
 * - `artifacts.identifying`: the picture shows who the patient is (a slide's label or macro). Served only to
 *   those who may see identified data: the clinic, admins and readers licensed where the case comes from.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .alterTable('cases')
    .addColumn('deidentified_abroad', 'boolean', (c) => c.notNull().defaultTo(false))
    .execute();
  await db.schema
    .alterTable('artifacts')
    .addColumn('identifying', 'boolean', (c) => c.notNull().defaultTo(false))
    .execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.alterTable('artifacts').dropColumn('identifying').execute();
  await db.schema.alterTable('cases').dropColumn('deidentified_abroad').execute();
}
