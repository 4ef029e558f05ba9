import { sql } from 'kysely';
import type { Db } from '../../db/database.js';
import type { CaseKind, FileRow, Priority } from '../../db/schema.js';
import { AppError, isAppError } from '../../errors.js';
import { type EcgTriageSummary, type Inspection, inspectFile } from '../../formats/inspect.js';
import { objectByteSource } from '../../storage/object-byte-source.js';
import type { ObjectStore } from '../../storage/object-store.js';
import type { JobContext, JobOutcome } from '../job-context.js';
import { enqueueProcess, type JobOf } from '../queues.js';
import { recordIngestFailure } from '../record-failure.js';

/** Inspections run side by side within one batch: they are mostly waits on storage reads. */
const INSPECT_PARALLEL = 4;

/**
 * ingest: sniff the format, parse the metadata, attach the file to its case. A job carries one file (a DIMSE
 * instance, an ops retry, the sweep) or the files of one upload request, which are attached in one transaction
 * so a 200-instance study costs a handful of round trips per request rather than per file. Idempotent: a file
 * that already has `ingested_at` (or has failed for good) is skipped, apart from re-enqueueing its case's next
 * step. A file that cannot be read fails alone, with its code; the rest of the batch goes on.
 */
export async function handleIngest(jc: JobContext, job: JobOf<'ingest'>): Promise<JobOutcome> {
  const { db, queues } = jc.ctx;
  const ids = 'fileIds' in job ? job.fileIds : [job.fileId];
  const files =
    ids.length === 0 ? [] : await db.selectFrom('files').selectAll().where('id', 'in', ids).execute();
  if ('fileId' in job && files.length === 0) {
    throw new AppError('NOT_FOUND', `file ${job.fileId} does not exist`, { retryable: false });
  }
  const done = new Set<string>();
  const todo: FileRow[] = [];
  for (const file of files) {
    if (file.status === 'failed') continue;
    if (file.ingested_at && file.case_id) done.add(file.case_id);
    else todo.push(file);
  }
  for (const caseId of done) await enqueueProcess(queues, caseId, jc.requestId, 0);
  if (todo.length === 0) return 'SKIPPED';
  await db
    .updateTable('files')
    .set({ status: 'processing', attempts: sql`attempts + 1` })
    .where(
      'id',
      'in',
      todo.map((f) => f.id),
    )
    .execute();

  const inspected = await inspectAll(jc, todo, 'fileIds' in job);
  if (inspected.length === 0) return 'SUCCESS';
  const attached = await attachAll(jc, inspected);
  for (const a of attached.filter((x) => x.duplicateOf)) {
    await jc.ctx.storage
      .delete(a.file.object_key)
      .catch((err) => jc.log.warn({ err, fileId: a.file.id }, 'could not drop a duplicate object'));
    jc.log.info(
      { fileId: a.file.id, caseId: a.caseId, duplicateOf: a.duplicateOf },
      'duplicate instance, stored once',
    );
  }
  for (const a of attached) {
    jc.log.info(
      { fileId: a.file.id, caseId: a.caseId, format: a.inspection.format, kind: a.kind },
      'file ingested',
    );
  }
  // After the commit: a crash here leaves rows the sweep finds (ingested, not processed) and re-enqueues.
  // A DICOM study waits until it is stable; other uploads are complete when their request is.
  const delays = new Map<string, number>();
  for (const a of attached) {
    const delay = a.inspection.studyInstanceUid ? jc.ctx.config.studyStableSeconds * 1000 : 500;
    delays.set(a.caseId, Math.max(delays.get(a.caseId) ?? 0, delay));
  }
  for (const [caseId, delay] of delays) await enqueueProcess(queues, caseId, jc.requestId, delay);
  return 'SUCCESS';
}

interface Inspected {
  file: FileRow;
  inspection: Inspection;
  kind: CaseKind;
}

/**
 * Inspects every file; one that is corrupt or of no known format is stamped failed here and left out. A
 * transient error (storage unreachable) fails the whole job, whose retry skips what was already done.
 */
async function inspectAll(jc: JobContext, files: FileRow[], batch: boolean): Promise<Inspected[]> {
  const { db, storage } = jc.ctx;
  const mains = new Map<string, Promise<50 | 60 | null>>();
  const mainsOf = (siteId: string): Promise<50 | 60 | null> => {
    let m = mains.get(siteId);
    if (!m) {
      m = db
        .selectFrom('sites')
        .select('mains_hz')
        .where('id', '=', siteId)
        .executeTakeFirst()
        .then((r) => r?.mains_hz ?? null);
      mains.set(siteId, m);
    }
    return m;
  };
  const results: (Inspected | null)[] = new Array(files.length).fill(null);
  let next = 0;
  const lane = async () => {
    while (next < files.length) {
      const i = next++;
      const file = files[i]!;
      try {
        const inspection = await inspectStoredFile(db, storage, file, await mainsOf(file.site_id));
        refuseMediaDirectory(file, inspection);
        const kind = inspection.kind ?? (await companionKind(db, file));
        results[i] = { file, inspection, kind };
      } catch (err) {
        // Storage trouble retries the job. A one-file job fails itself (run-worker stamps the file), so ops see
        // the job's reason too. In a batch, anything else is this file's: a parser that throws on one file
        // would throw on every retry, and must not take the other files of the request down with it.
        if (isAppError(err) && err.retryable) throw err;
        if (!batch) throw err;
        const error = err instanceof Error ? err : new Error(String(err));
        await recordIngestFailure(db, file.id, error);
        jc.log.warn({ fileId: file.id, err: error }, 'file failed ingest');
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(INSPECT_PARALLEL, files.length) }, lane));
  return results.filter((r): r is Inspected => r !== null);
}

/**
 * Attaches the batch in one transaction. If the database refuses one file's row (a data error: say, text it
 * cannot store), each file is attached in a transaction of its own instead, so that only that file fails.
 */
async function attachAll(jc: JobContext, inspected: Inspected[]): Promise<Attached[]> {
  const { db } = jc.ctx;
  try {
    return await attachToCases(db, inspected);
  } catch (err) {
    if (inspected.length === 1 || !isDataError(err)) throw err;
    jc.log.warn({ err }, 'batch refused by the database; attaching its files one by one');
  }
  const attached: Attached[] = [];
  for (const item of inspected) {
    try {
      attached.push(...(await attachToCases(db, [item])));
    } catch (err) {
      if (!isDataError(err)) throw err;
      await recordIngestFailure(
        db,
        item.file.id,
        new AppError(
          'CORRUPT_FILE',
          `${item.file.name}: its metadata could not be stored (${(err as Error).message})`,
        ),
      );
    }
  }
  return attached;
}

/** PostgreSQL's data exceptions (class 22) and constraint violations (23): the row, not the connection. */
function isDataError(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' && /^2[23]/.test(code);
}

interface Attached extends Inspected {
  caseId: string;
  duplicateOf: string | null;
  /** The first copy's object, which a duplicate's row points at. */
  originalObjectKey?: string;
}

/**
 * One transaction for the batch: each file joins its case (found or created once per study or upload kind),
 * and each touched case is stamped once at the end, in id order so two batches of one study cannot deadlock.
 */
async function attachToCases(db: Db, inspected: Inspected[]): Promise<Attached[]> {
  return db.transaction().execute(async (trx) => {
    const cases = new Map<string, string>();
    const uploads = new Map<string, UploadDefaults>();
    const out: Attached[] = [];
    // The sweep may have queued a file on its own while its batch waited: whichever job comes second finds the
    // row attached (it stays locked until the first commits) and leaves it. Locked in id order, all at once.
    const open = new Set(
      (
        await trx
          .selectFrom('files')
          .select(['id', 'ingested_at', 'status'])
          .where(
            'id',
            'in',
            inspected.map((i) => i.file.id),
          )
          .orderBy('id')
          .forUpdate()
          .execute()
      )
        .filter((r) => !r.ingested_at && r.status !== 'failed')
        .map((r) => r.id),
    );
    // Cases are found or created in key order, so two batches holding the same new studies in another order
    // cannot wait on each other's uncommitted case rows (a deadlock PostgreSQL would break by aborting one).
    const keyed = inspected.map((item) => ({ item, caseKey: caseKeyOf(item) }));
    keyed.sort((a, b) => (a.caseKey < b.caseKey ? -1 : a.caseKey > b.caseKey ? 1 : 0));
    for (const { item, caseKey } of keyed) {
      const { file, inspection, kind } = item;
      if (!open.has(file.id)) continue;
      let caseId = cases.get(caseKey);
      if (!caseId) {
        let upload = uploads.get(file.upload_id);
        if (!upload) {
          upload = await trx
            .selectFrom('uploads')
            .select(['priority', 'notes'])
            .where('id', '=', file.upload_id)
            .executeTakeFirstOrThrow();
          uploads.set(file.upload_id, upload);
        }
        caseId = await findOrCreateCase(trx, file, kind, inspection, upload);
        cases.set(caseKey, caseId);
      }
      // ECG triage: a critical finding (asystole, pause, rate < 40 or > 150) makes the case stat, with the
      // reason on the case so that routing and the reader see why it jumped the queue.
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
      out.push({ ...item, caseId, duplicateOf: null });
    }
    await markDuplicates(trx, out);
    await stampIngested(trx, out);
    const touched = [...new Set(cases.values())].sort();
    if (touched.length > 0) {
      await trx
        .updateTable('cases')
        .set({
          updated_at: sql`now()`,
          status: sql`CASE WHEN status = 'routed' THEN status ELSE 'processing' END`,
        })
        .where('id', 'in', touched)
        .execute();
    }
    return out;
  });
}

/**
 * The same instance sent twice (same SOP Instance UID, same bytes) is stored once: a later copy points at the
 * first, whether the first came in an earlier batch or earlier in this one, and its own object is dropped after
 * the commit. One query for the batch; the rows it finds are the study's ingested files, kept in (case, SOP) index.
 */
async function markDuplicates(trx: Db, attached: Attached[]): Promise<void> {
  const candidates = attached.filter((a) => a.inspection.sopInstanceUid);
  if (candidates.length === 0) return;
  const keyOf = (caseId: string, sop: string, sha256: string) => `${caseId}\u0000${sop}\u0000${sha256}`;
  const earlier = await sql<{ id: string; object_key: string; case_id: string; sop: string; sha256: string }>`
    SELECT DISTINCT ON (f.case_id, f.sop_instance_uid, f.sha256)
           f.id, f.object_key, f.case_id, f.sop_instance_uid AS sop, f.sha256
      FROM files f
      JOIN unnest(${candidates.map((a) => a.caseId)}::uuid[],
                  ${candidates.map((a) => a.inspection.sopInstanceUid!)}::text[],
                  ${candidates.map((a) => a.file.sha256)}::text[]) AS c(case_id, sop, sha256)
        ON f.case_id = c.case_id AND f.sop_instance_uid = c.sop AND f.sha256 = c.sha256
     WHERE f.duplicate_of IS NULL AND f.id <> ALL(${attached.map((a) => a.file.id)}::uuid[])
     ORDER BY f.case_id, f.sop_instance_uid, f.sha256, f.received_at, f.id`.execute(trx);
  const originals = new Map<string, { id: string; object_key: string }>(
    earlier.rows.map((r) => [keyOf(r.case_id, r.sop, r.sha256), r]),
  );
  for (const a of candidates) {
    const key = keyOf(a.caseId, a.inspection.sopInstanceUid!, a.file.sha256);
    const original = originals.get(key);
    if (original) {
      a.duplicateOf = original.id;
      a.originalObjectKey = original.object_key;
    } else {
      originals.set(key, { id: a.file.id, object_key: a.file.object_key });
    }
  }
}

/** Stamps every file of the batch with its case and parsed metadata in one statement. */
async function stampIngested(trx: Db, attached: Attached[]): Promise<void> {
  if (attached.length === 0) return;
  const column = <T>(f: (a: Attached) => T): T[] => attached.map(f);
  await sql`
    UPDATE files f
       SET case_id = v.case_id,
           kind = v.kind,
           format = v.format,
           sop_instance_uid = v.sop,
           metadata = v.metadata::jsonb,
           patient = v.patient::jsonb,
           ingested_at = now(),
           duplicate_of = v.duplicate_of,
           object_key = coalesce(v.original_key, f.object_key),
           status = CASE WHEN v.duplicate_of IS NULL THEN f.status ELSE 'processed' END,
           processed_at = CASE WHEN v.duplicate_of IS NULL THEN f.processed_at ELSE now() END
      FROM unnest(${column((a) => a.file.id)}::uuid[],
                  ${column((a) => a.caseId)}::uuid[],
                  ${column((a) => a.kind)}::text[],
                  ${column((a) => a.inspection.format)}::text[],
                  ${column((a) => a.inspection.sopInstanceUid ?? null)}::text[],
                  ${column((a) => jsonForDb(metadataOf(a.inspection)))}::text[],
                  ${column((a) => (a.inspection.patient ? jsonForDb(a.inspection.patient) : null))}::text[],
                  ${column((a) => a.duplicateOf)}::uuid[],
                  ${column((a) => a.originalObjectKey ?? null)}::text[])
        AS v(id, case_id, kind, format, sop, metadata, patient, duplicate_of, original_key)
     WHERE f.id = v.id`.execute(trx);
}

/** The file's metadata column: what the parser read, plus the identifiers the viewer and de-identifier key on. */
function metadataOf(inspection: Inspection): Record<string, unknown> {
  return {
    ...inspection.metadata,
    ...(inspection.seriesInstanceUid ? { seriesInstanceUid: inspection.seriesInstanceUid } : {}),
    ...(inspection.sopInstanceUid ? { sopInstanceUid: inspection.sopInstanceUid } : {}),
    ...(inspection.companions ? { companions: inspection.companions } : {}),
  };
}

/** JSON for a jsonb column, which cannot hold U+0000: a NUL inside a DICOM text value (padding gone astray)
 * is dropped rather than failing the file. */
function jsonForDb(value: unknown): string {
  return JSON.stringify(value, (_key, v) => (typeof v === 'string' ? v.replaceAll('\u0000', '') : v));
}

function caseKeyOf({ file, inspection, kind }: Inspected): string {
  return inspection.studyInstanceUid
    ? `study:${file.site_id}:${inspection.studyInstanceUid}`
    : `upload:${file.upload_id}:${kind}`;
}

interface UploadDefaults {
  priority: Priority;
  notes: string | null;
}

async function inspectStoredFile(
  db: Db,
  storage: ObjectStore,
  file: FileRow,
  mainsHz: 50 | 60 | null,
): Promise<Inspection> {
  const source = objectByteSource(storage, file.object_key, Number(file.bytes));
  const options = mainsHz ? { mainsFrequency: mainsHz } : {};
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
 * A DICOMDIR is the index of a CD or DVD, not an instance of a study: the files it lists are what counts, and
 * they arrive beside it. It would otherwise make a case of its own that no reader could open.
 */
function refuseMediaDirectory(file: FileRow, inspection: Inspection): void {
  if (inspection.metadata.mediaDirectory !== true) return;
  throw new AppError(
    'UNSUPPORTED_FORMAT',
    `${file.name} is a DICOMDIR (a media index, PS3.10), not an image: send the DICOM files it lists`,
    { retryable: false },
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
  upload: UploadDefaults,
): Promise<string> {
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
      metadata: jsonForDb(metadata),
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
