import { sql } from 'kysely';
import type { Db } from '../../db/database.js';
import type { CaseKind, FileRow } from '../../db/schema.js';
import { AppError } from '../../errors.js';
import { type EcgTriageSummary, type Inspection, inspectFile } from '../../formats/inspect.js';
import { objectByteSource } from '../../storage/object-byte-source.js';
import type { ObjectStore } from '../../storage/object-store.js';
import type { JobContext, JobOutcome } from '../job-context.js';
import { enqueueProcess, type JobOf } from '../queues.js';

/**
 * ingest: sniff the format, parse the metadata, attach the file to its case. Idempotent: a file that already
 * has `ingested_at` (or has failed for good) is skipped, apart from re-enqueueing its case's next step.
 */
export async function handleIngest(
  { ctx, log, requestId }: JobContext,
  job: JobOf<'ingest'>,
): Promise<JobOutcome> {
  const { db, storage, queues } = ctx;
  const file = await db.selectFrom('files').selectAll().where('id', '=', job.fileId).executeTakeFirst();
  if (!file) throw new AppError('NOT_FOUND', `file ${job.fileId} does not exist`, { retryable: false });
  if (file.status === 'failed') return 'SKIPPED';
  if (file.ingested_at && file.case_id) {
    await enqueueProcess(queues, file.case_id, requestId, 0);
    return 'SKIPPED';
  }
  await db
    .updateTable('files')
    .set({ status: 'processing', attempts: sql`attempts + 1` })
    .where('id', '=', file.id)
    .execute();

  const inspection = await inspectStoredFile(db, storage, file);
  const kind = inspection.kind ?? (await companionKind(db, file));
  const { caseId, duplicateOf } = await db.transaction().execute(async (trx) => {
    const caseId = await findOrCreateCase(trx, file, kind, inspection);
    // ECG triage: a critical finding (asystole, pause, rate < 40 or > 150) makes the case stat, with the reason
    // on the case so that routing and the reader see why it jumped the queue.
    const triage = inspection.metadata.triage as EcgTriageSummary | undefined;
    if (triage?.priority === 'stat') {
      await trx
        .updateTable('cases')
        .set({
          priority: 'stat',
          priority_reason: triage.reason,
          // Routing rules match on these (e.g. a stat cardiology pool for ASYSTOLE).
          flags: sql`ARRAY(SELECT DISTINCT unnest(flags || ${triage.flags.filter((f) => f.critical).map((f) => f.code)}::text[]))`,
        })
        .where('id', '=', caseId)
        .execute();
    }
    const sopInstanceUid = inspection.sopInstanceUid ?? null;
    // The same instance sent twice (same SOP Instance UID, same bytes) is stored once: this row points at the
    // first copy and its own object is dropped after the commit.
    const original = sopInstanceUid
      ? await trx
          .selectFrom('files')
          .select(['id', 'object_key'])
          .where('case_id', '=', caseId)
          .where('sop_instance_uid', '=', sopInstanceUid)
          .where('sha256', '=', file.sha256)
          .where('duplicate_of', 'is', null)
          .where('id', '!=', file.id)
          .executeTakeFirst()
      : undefined;
    await trx
      .updateTable('files')
      .set({
        case_id: caseId,
        kind,
        format: inspection.format,
        sop_instance_uid: sopInstanceUid,
        metadata: JSON.stringify({
          ...inspection.metadata,
          ...(inspection.seriesInstanceUid ? { seriesInstanceUid: inspection.seriesInstanceUid } : {}),
          ...(inspection.sopInstanceUid ? { sopInstanceUid: inspection.sopInstanceUid } : {}),
          ...(inspection.companions ? { companions: inspection.companions } : {}),
        }),
        patient: inspection.patient ? JSON.stringify(inspection.patient) : null,
        ingested_at: sql`now()`,
        ...(original
          ? {
              duplicate_of: original.id,
              object_key: original.object_key,
              status: 'processed',
              processed_at: sql`now()`,
            }
          : {}),
      })
      .where('id', '=', file.id)
      .execute();
    await trx
      .updateTable('cases')
      .set({
        updated_at: sql`now()`,
        status: sql`CASE WHEN status = 'routed' THEN status ELSE 'processing' END`,
      })
      .where('id', '=', caseId)
      .execute();
    return { caseId, duplicateOf: original?.id ?? null };
  });
  if (duplicateOf) {
    await storage
      .delete(file.object_key)
      .catch((err) => log.warn({ err }, 'could not drop a duplicate object'));
    log.info({ caseId, duplicateOf }, 'duplicate instance, stored once');
  }
  log.info({ caseId, format: inspection.format, kind }, 'file ingested');
  // After the commit: a crash here leaves a row the sweep finds (ingested, not processed) and re-enqueues.
  // A DICOM study waits until it is stable; other uploads are complete when their request is.
  const delay = inspection.studyInstanceUid ? ctx.config.studyStableSeconds * 1000 : 500;
  await enqueueProcess(queues, caseId, requestId, delay);
  return 'SUCCESS';
}

async function inspectStoredFile(db: Db, storage: ObjectStore, file: FileRow): Promise<Inspection> {
  const source = objectByteSource(storage, file.object_key, Number(file.bytes));
  const site = await db
    .selectFrom('sites')
    .select('mains_hz')
    .where('id', '=', file.site_id)
    .executeTakeFirst();
  const options = site?.mains_hz ? { mainsFrequency: site.mains_hz } : {};
  return inspectFile(
    source,
    file.name,
    async (name) => {
      const sibling = await db
        .selectFrom('files')
        .select(['object_key'])
        .where('upload_id', '=', file.upload_id)
        .where('name', '=', name)
        .executeTakeFirst();
      return sibling ? storage.getBytes(sibling.object_key) : null;
    },
    options,
  );
}

/**
 * A WFDB signal file belongs to the record whose header (uploaded in the same request) names it. Without such
 * a header its bytes cannot be interpreted, so it is refused with a reason rather than left hanging.
 */
async function companionKind(db: Db, file: FileRow): Promise<CaseKind> {
  const headers = await db
    .selectFrom('files')
    .select(['name'])
    .where('upload_id', '=', file.upload_id)
    .where('name', 'ilike', '%.hea')
    .execute();
  if (headers.length === 0) {
    throw new AppError(
      'UNSUPPORTED_FORMAT',
      `${file.name}: a raw signal file needs its WFDB header (.hea) in the same upload`,
      { retryable: false },
    );
  }
  return 'ecg';
}

/**
 * DICOM files join the case of their StudyInstanceUID at the same site; everything else forms one case per
 * upload request and kind. Both lookups are backed by unique indexes, so two workers ingesting files of one
 * study at once end up in the same case.
 */
async function findOrCreateCase(
  trx: Db,
  file: FileRow,
  kind: CaseKind,
  inspection: Inspection,
): Promise<string> {
  const upload = await trx
    .selectFrom('uploads')
    .select(['priority', 'notes'])
    .where('id', '=', file.upload_id)
    .executeTakeFirstOrThrow();
  const studyUid = inspection.studyInstanceUid ?? null;
  const existing = studyUid
    ? trx
        .selectFrom('cases')
        .select('id')
        .where('site_id', '=', file.site_id)
        .where('study_instance_uid', '=', studyUid)
    : trx
        .selectFrom('cases')
        .select('id')
        .where('upload_id', '=', file.upload_id)
        .where('kind', '=', kind)
        .where('study_instance_uid', 'is', null);
  const found = await existing.executeTakeFirst();
  if (found) {
    if (studyUid) await raisePriority(trx, found.id, upload.priority);
    return found.id;
  }
  const metadata = studyUid
    ? {
        studyInstanceUid: studyUid,
        modality: inspection.metadata.modality,
        studyDate: inspection.metadata.studyDate,
        studyDescription: inspection.metadata.studyDescription,
      }
    : {};
  const inserted = await trx
    .insertInto('cases')
    .values({
      site_id: file.site_id,
      kind,
      priority: upload.priority,
      study_instance_uid: studyUid,
      upload_id: file.upload_id,
      notes: upload.notes,
      metadata: JSON.stringify(metadata),
      status: 'processing',
    })
    .onConflict((oc) => oc.doNothing())
    .returning('id')
    .executeTakeFirst();
  if (inserted) return inserted.id;
  // Another worker created it between our SELECT and INSERT: read theirs.
  return (await existing.executeTakeFirstOrThrow()).id;
}

/** A later upload of the same study may be more urgent (a clinic re-sends as stat): keep the higher priority. */
async function raisePriority(trx: Db, caseId: string, priority: string): Promise<void> {
  await trx
    .updateTable('cases')
    .set({ priority: sql`${priority}` })
    .where('id', '=', caseId)
    .where(
      sql<boolean>`array_position(ARRAY['stat','urgent','routine'], ${priority}) < array_position(ARRAY['stat','urgent','routine'], priority)`,
    )
    .execute();
}
