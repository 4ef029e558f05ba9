import { randomUUID } from 'node:crypto';
import { AppError } from '../errors.js';
import type { Db } from './database.js';

/**
 * The UID map behind de-identified copies (issue 3, used by cross-border reading in issue 6): per case, each
 * original UID has one replacement, so every instance of a study copied at any time gets the same Study, Series
 * and Frame of Reference UIDs, and a report on the copy finds its way back to the original case.
 */

/** A new UID under the 2.25 root: the decimal form of a random UUID (PS3.5 B.2), at most 44 characters. */
export function createUuidDerivedUid(): string {
  return `2.25.${BigInt(`0x${randomUUID().replace(/-/g, '')}`).toString(10)}`;
}

// Three parameters per row; PostgreSQL allows 65535 per statement.
const BATCH = 5000;
const MAX_ATTEMPTS = 5;

/**
 * The replacement for each original UID of a case, creating the ones that do not exist yet. Safe under
 * concurrency: two workers de-identifying instances of one study at once both end up with the mapping that
 * was inserted first (the primary key is case + original UID).
 */
export async function getOrCreateReplacementUids(
  db: Db,
  caseId: string,
  originalUids: readonly string[],
): Promise<Map<string, string>> {
  const result = new Map<string, string>();
  const wanted = [...new Set(originalUids)];
  for (let start = 0; start < wanted.length; start += BATCH) {
    const batch = wanted.slice(start, start + BATCH);
    let missing = batch;
    for (let attempt = 0; missing.length > 0; attempt++) {
      if (attempt === MAX_ATTEMPTS) {
        throw new AppError('CONFLICT', `could not create replacement UIDs for case ${caseId}`, {
          retryable: true,
        });
      }
      if (attempt > 0) {
        // Rows lost to a concurrent insert of the same original, or (astronomically rarely) to a replacement
        // that already exists elsewhere: try again with fresh UIDs.
        await db
          .insertInto('uid_remaps')
          .values(
            missing.map((uid) => ({
              case_id: caseId,
              original_uid: uid,
              replacement_uid: createUuidDerivedUid(),
            })),
          )
          .onConflict((oc) => oc.doNothing())
          .execute();
      }
      const rows = await db
        .selectFrom('uid_remaps')
        .select(['original_uid', 'replacement_uid'])
        .where('case_id', '=', caseId)
        .where('original_uid', 'in', missing)
        .execute();
      for (const row of rows) result.set(row.original_uid, row.replacement_uid);
      missing = missing.filter((uid) => !result.has(uid));
    }
  }
  return result;
}

export interface OriginalUid {
  caseId: string;
  originalUid: string;
}

/** Which case and original UID a replacement stands for: how a report on a de-identified study (which knows
 * only replacement UIDs) is linked back to the original case. */
export async function getOriginalUid(db: Db, replacementUid: string): Promise<OriginalUid | undefined> {
  const row = await db
    .selectFrom('uid_remaps')
    .select(['case_id', 'original_uid'])
    .where('replacement_uid', '=', replacementUid)
    .executeTakeFirst();
  return row ? { caseId: row.case_id, originalUid: row.original_uid } : undefined;
}

/** The original UID a replacement stands for within one case; undefined when it names nothing there (another
 * case's replacement included): what a reader abroad may address. */
export async function getOriginalUidInCase(
  db: Db,
  caseId: string,
  replacementUid: string,
): Promise<string | undefined> {
  const remap = await getOriginalUid(db, replacementUid);
  return remap?.caseId === caseId ? remap.originalUid : undefined;
}
