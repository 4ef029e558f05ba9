import { randomInt } from 'node:crypto';
import { sql } from 'kysely';
import type { Context } from '../context.js';
import type { Db } from '../db/database.js';
import { getOrCreateReplacementUids } from '../db/uid-remaps.js';
import { AppError } from '../errors.js';
import { BURNED_IN_ANNOTATION_WARNING, collectUids, deidentifyDicom } from '../formats/dicom/deidentify.js';

/**
 * The de-identified copy of a stored DICOM instance: what a reader licensed elsewhere downloads (issue 3's
 * "the de-identified copy is what a reader outside the site's jurisdiction receives"). PS3.15 Basic Profile with
 * Modified Dates and Clean Descriptors (deidentify.ts), with the case's own UID map (uid_remaps, the same
 * replacements the de-identified view shows, so a report on the copy leads back to the case), the case's date
 * shift, and a pseudonym naming the case. Made on first request and kept in object storage beside the case.
 */

/** Bumped when deidentify.ts changes what a copy holds, so that copies made before are made again. */
const COPY_VERSION = 1;

/** The copy is made in memory (input and output whole): an instance larger than this is refused, not risked. */
export const MAX_DEIDENTIFIED_COPY_BYTES = 512 * 1024 * 1024;

export function deidentifiedCopyKey(caseId: string, fileId: string): string {
  return `cases/${caseId}/deidentified/v${COPY_VERSION}/${fileId}.dcm`;
}

/**
 * The case's date shift, drawn once: 1 to 3650 days back. Two first copies made at once agree, since the second
 * UPDATE waits for the first's row lock and then sees its value.
 */
async function caseDateShift(db: Db, caseId: string): Promise<number> {
  const drawn = -randomInt(1, 3651);
  const row = await db
    .updateTable('cases')
    .set({ deid_date_shift_days: sql<number>`coalesce(deid_date_shift_days, ${drawn})` })
    .where('id', '=', caseId)
    .returning('deid_date_shift_days')
    .executeTakeFirst();
  if (row?.deid_date_shift_days == null) throw new AppError('NOT_FOUND', `no case ${caseId}`);
  return row.deid_date_shift_days;
}

/** PatientName and PatientID of every copy of a case: the case, which the reader knows, and nothing else. */
export function casePseudonym(caseId: string): { patientName: string; patientId: string } {
  return { patientName: 'ANONYMOUS^TELEREAD', patientId: `TELEREAD-${caseId}` };
}

/** Makes the copy if it is not stored yet; returns its object key and size. */
export async function ensureDeidentifiedCopy(
  ctx: Context,
  caseId: string,
  file: { id: string; object_key: string; bytes: string | number },
): Promise<{ key: string; bytes: number }> {
  const key = deidentifiedCopyKey(caseId, file.id);
  const existing = await ctx.storage.head(key);
  if (existing) return { key, bytes: existing.bytes };
  if (Number(file.bytes) > MAX_DEIDENTIFIED_COPY_BYTES) {
    throw new AppError(
      'PAYLOAD_TOO_LARGE',
      `the instance is ${file.bytes} bytes; de-identified copies are made up to ${MAX_DEIDENTIFIED_COPY_BYTES} bytes`,
      { retryable: false },
    );
  }
  const original = await ctx.storage.getBytes(file.object_key);
  const replacements = await getOrCreateReplacementUids(ctx.db, caseId, collectUids(original));
  const copy = deidentifyDicom(original, {
    mapUid: (uid) => {
      const replacement = replacements.get(uid);
      if (!replacement)
        throw new AppError('INTERNAL', `no replacement was made for a UID of file ${file.id}`);
      return replacement;
    },
    pseudonym: casePseudonym(caseId),
    dateShiftDays: await caseDateShift(ctx.db, caseId),
  });
  // The route refuses such instances before asking; this keeps the copy from ever being stored.
  if (copy.warnings.includes(BURNED_IN_ANNOTATION_WARNING)) {
    throw new AppError('NOT_FOUND', `file ${file.id} has burned-in annotation and is not copied`);
  }
  const stored = await ctx.storage.put(key, copy.bytes, {
    contentType: 'application/dicom',
    contentLength: copy.bytes.length,
  });
  return { key, bytes: stored.bytes };
}
