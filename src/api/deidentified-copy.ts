import { randomInt } from 'node:crypto';
import { Readable } from 'node:stream';
import { sql } from 'kysely';
import type { Context } from '../context.js';
import type { Db } from '../db/database.js';
import { getOrCreateReplacementUids } from '../db/uid-remaps.js';
import { AppError } from '../errors.js';
import {
  BURNED_IN_ANNOTATION_WARNING,
  collectUids,
  type DeidentifyOptions,
  deidentifyDicomParts,
} from '../formats/dicom/deidentify.js';
import { type RangeReadLimits, readInstanceForFrame } from '../formats/dicom/read-frame-by-range.js';
import type { ByteSource } from '../formats/types.js';
import { objectByteSource } from '../storage/object-byte-source.js';
import type { ObjectInfo } from '../storage/object-store.js';
import { UUID } from '../uploads/upload-input.js';

/**
 * The de-identified copy of a stored DICOM instance: what a reader licensed elsewhere downloads (issue 3's
 * "the de-identified copy is what a reader outside the site's jurisdiction receives"). PS3.15 Basic Profile with
 * Modified Dates and Clean Descriptors (deidentify.ts), with the case's own UID map (uid_remaps, the same
 * replacements the de-identified view shows, so a report on the copy leads back to the case), the case's date
 * shift, and a pseudonym naming the case. Made on first request and kept in object storage beside the case.
 */

/** Bumped when deidentify.ts changes what a copy holds, so that copies made before are made again. */
const COPY_VERSION = 1;

/** A copy read whole (deflated data sets, DICOMDIRs, headers the ranged reader cannot vouch for) is made in memory,
 * input and output: an instance larger than this is refused then, not risked. */
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
  return { patientName: 'ANONYMOUS^TELEREAD', patientId: `${PSEUDONYM_ID_PREFIX}${caseId}` };
}

const PSEUDONYM_ID_PREFIX = 'TELEREAD-';

/** The case a pseudonymous Patient ID (casePseudonym's) stands for, or undefined for any other ID. */
export function caseOfPseudonym(patientId: string): string | undefined {
  const caseId = patientId.startsWith(PSEUDONYM_ID_PREFIX) ? patientId.slice(PSEUDONYM_ID_PREFIX.length) : '';
  return UUID.test(caseId) ? caseId : undefined;
}

/** The stored instance's bytes from `start` to `end` (exclusive), as a stream. */
export type RangeStream = (start: number, end: number) => Promise<Readable>;

export interface CopyStream {
  body: Readable;
  bytes: number;
  warnings: string[];
}

/**
 * The de-identified copy of the instance `source` reads, as a stream. A large instance is read by byte range
 * (read-frame-by-range.ts): its header is de-identified in memory, and what the copy keeps as it came, Pixel Data
 * above all, is streamed from the stored file (`range`) in its place, so memory stays the header's size. Others
 * are read whole, up to MAX_DEIDENTIFIED_COPY_BYTES.
 */
export async function deidentifiedCopyStream(
  source: ByteSource,
  range: RangeStream,
  optionsFor: (uids: string[]) => Promise<DeidentifyOptions>,
  limits?: RangeReadLimits,
): Promise<CopyStream> {
  const read = await readInstanceForFrame(source, -1, limits);
  if (read.whole && read.bytes.length > MAX_DEIDENTIFIED_COPY_BYTES) {
    throw new AppError(
      'PAYLOAD_TOO_LARGE',
      `the instance is ${read.bytes.length} bytes and must be read whole to be de-identified; copies read whole are made up to ${MAX_DEIDENTIFIED_COPY_BYTES} bytes`,
      { retryable: false },
    );
  }
  const input = read.bytes;
  const copy = deidentifyDicomParts(input, await optionsFor(collectUids(input)));
  const span = read.pixelValue;
  // A part that is a view of the input inside Pixel Data's value holds zeros where nothing was read: its bytes
  // come from the stored file. A view reaching across the edge of that span cannot be told apart and is refused.
  const fromFile = (part: Uint8Array): [number, number] | undefined => {
    if (!span || part.buffer !== input.buffer || part.length === 0) return undefined;
    const start = part.byteOffset - input.byteOffset;
    const end = start + part.length;
    if (end <= span.start || start >= span.end) return undefined;
    if (start < span.start || end > span.end) {
      throw new AppError('INTERNAL', `a part of the copy at ${start}–${end} straddles the pixel data`);
    }
    return [start, end];
  };
  const plan = copy.parts.map((part) => ({ part, file: fromFile(part) }));
  async function* body(): AsyncGenerator<Uint8Array> {
    for (const { part, file } of plan) {
      if (file) yield* await range(file[0], file[1]);
      else yield part;
    }
  }
  return {
    body: Readable.from(body(), { objectMode: false }),
    bytes: copy.parts.reduce((n, p) => n + p.length, 0),
    warnings: copy.warnings,
  };
}

/** Makes the copy if it is not stored yet; returns the stored object (its key, size and storage tag). */
export async function ensureDeidentifiedCopy(
  ctx: Context,
  caseId: string,
  file: { id: string; object_key: string; bytes: string | number },
): Promise<ObjectInfo> {
  const key = deidentifiedCopyKey(caseId, file.id);
  const existing = await ctx.storage.head(key);
  if (existing) return existing;
  const copy = await deidentifiedCopyStream(
    objectByteSource(ctx.storage, file.object_key, Number(file.bytes)),
    (start, end) => ctx.storage.get(file.object_key, { start, end: end - 1 }),
    async (uids) => {
      const replacements = await getOrCreateReplacementUids(ctx.db, caseId, uids);
      return {
        mapUid: (uid) => {
          const replacement = replacements.get(uid);
          if (!replacement)
            throw new AppError('INTERNAL', `no replacement was made for a UID of file ${file.id}`);
          return replacement;
        },
        pseudonym: casePseudonym(caseId),
        dateShiftDays: await caseDateShift(ctx.db, caseId),
      };
    },
  );
  // The route refuses such instances before asking; this keeps the copy from ever being stored.
  if (copy.warnings.includes(BURNED_IN_ANNOTATION_WARNING)) {
    copy.body.destroy();
    throw new AppError('NOT_FOUND', `file ${file.id} has burned-in annotation and is not copied`);
  }
  return ctx.storage.put(key, copy.body, { contentType: 'application/dicom', contentLength: copy.bytes });
}
