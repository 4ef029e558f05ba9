import { sql } from 'kysely';
import type { Principal } from '../api/auth.js';
import {
  type AddendumForView,
  type AddendumInput,
  checkReadyToSign,
  draftHash,
  type FhirPatientView,
  type FhirStudy,
  fhirDate,
  isCritical,
  type ReportDraft,
  type ReportForView,
  reportAccess,
  signAddendumContent,
  signReportContent,
} from '../domain/report.js';
import { mayReceiveIdentified } from '../domain/routing.js';
import { AppError } from '../errors.js';
import type { PatientInfo } from '../formats/types.js';
import { recordCaseEvent } from './audit-queries.js';
import { getCaseForPrincipal, leaseLive } from './case-queries.js';
import type { Db } from './database.js';
import type { ReportAddendumRow, ReportRow } from './schema.js';
import { createWebhookDelivery, type DeliveryRef } from './webhook-queries.js';

/**
 * Reports in the database. Every write locks the case row first, so a draft save, a signature, an addendum, a
 * claim and a release of one case happen one after another, and each re-checks the lease under that lock.
 */

export function toDraft(row: Pick<ReportRow, 'findings' | 'impression' | 'critical' | 'codes'>): ReportDraft {
  return { findings: row.findings, impression: row.impression, critical: row.critical, codes: row.codes };
}

export function toReportForView(row: ReportRow): ReportForView {
  return {
    id: row.id,
    caseId: row.case_id,
    draft: toDraft(row),
    createdAt: row.created_at,
    updatedAt: row.updated_at,
    signedAt: row.signed_at,
    signer:
      row.signer_reader_id && row.signer_name
        ? { readerId: row.signer_reader_id, name: row.signer_name }
        : null,
    contentHash: row.content_hash,
  };
}

export function toAddendumForView(row: ReportAddendumRow): AddendumForView {
  return {
    seq: row.seq,
    text: row.text,
    critical: row.critical,
    signedAt: row.signed_at,
    signer: { readerId: row.signer_reader_id, name: row.signer_name },
    contentHash: row.content_hash,
  };
}

async function lockCase(trx: Db, caseId: string) {
  return trx
    .selectFrom('cases')
    .innerJoin('sites', 'sites.id', 'cases.site_id')
    .select([
      'cases.id',
      'cases.status',
      'cases.site_id',
      'cases.lease_reader_id',
      sql<boolean>`${leaseLive}`.as('leased'),
      'sites.jurisdiction',
      'sites.cross_border_policy',
      'sites.webhook_url',
    ])
    .where('cases.id', '=', caseId)
    .forUpdate('cases')
    .executeTakeFirst();
}

type LockedCase = NonNullable<Awaited<ReturnType<typeof lockCase>>>;

async function getReportRow(trx: Db, caseId: string): Promise<ReportRow | undefined> {
  return trx.selectFrom('reports').selectAll().where('case_id', '=', caseId).executeTakeFirst();
}

async function listAddenda(db: Db, reportId: string): Promise<ReportAddendumRow[]> {
  return db
    .selectFrom('report_addenda')
    .selectAll()
    .where('report_id', '=', reportId)
    .orderBy('seq')
    .execute();
}

async function getSigner(trx: Db, readerId: string): Promise<{ readerId: string; name: string }> {
  const row = await trx
    .selectFrom('readers')
    .select(['id', 'name'])
    .where('id', '=', readerId)
    .executeTakeFirstOrThrow();
  return { readerId: row.id, name: row.name };
}

/**
 * The writer of a report is the reader holding the live lease on the case, while the case is open for reading.
 * Anyone else learns only what they may: 404 for a case they cannot see, 409 with the reason otherwise.
 */
async function requireLeaseHolder(
  trx: Db,
  who: Principal,
  caseId: string,
  kase: LockedCase | undefined,
  report: ReportRow | undefined,
): Promise<LockedCase> {
  const me = who.readerId ?? '';
  if (kase && kase.status === 'routed' && kase.leased && kase.lease_reader_id === me) return kase;
  const signedByMe = Boolean(report?.signed_at) && report?.signer_reader_id === me;
  const visible = kase && (signedByMe || (await getCaseForPrincipal(trx, who, caseId)) !== undefined);
  if (!kase || !visible) throw new AppError('NOT_FOUND', `no case ${caseId}`);
  if (report?.signed_at) {
    throw new AppError(
      'CONFLICT',
      `the report of case ${caseId} was signed at ${report.signed_at.toISOString()} and cannot change; add an addendum`,
    );
  }
  if (kase.status !== 'routed')
    throw new AppError('CONFLICT', `case ${caseId} is ${kase.status}, not in reading`);
  throw new AppError('CONFLICT', `you hold no live lease on case ${caseId}; claim it first`);
}

export interface ReportWithAddenda {
  report: ReportRow;
  addenda: ReportAddendumRow[];
}

/**
 * Saves the draft (PUT: the whole draft is replaced). The report row is created on the first save; it always
 * belongs to the original case, whichever copy the reader read, and records whether the reader read it
 * de-identified (not licensed where the case comes from).
 */
export async function saveReportDraft(
  db: Db,
  who: Principal,
  caseId: string,
  draft: ReportDraft,
  requestId: string,
): Promise<ReportWithAddenda> {
  const me = who.readerId ?? '';
  return db.transaction().execute(async (trx) => {
    const locked = await lockCase(trx, caseId);
    const existing = locked ? await getReportRow(trx, caseId) : undefined;
    const kase = await requireLeaseHolder(trx, who, caseId, locked, existing);
    const reader = await trx
      .selectFrom('readers')
      .select('jurisdictions')
      .where('id', '=', me)
      .executeTakeFirstOrThrow();
    const deidentified = !mayReceiveIdentified(reader, {
      jurisdiction: kase.jurisdiction,
      crossBorderPolicy: kase.cross_border_policy,
    });
    const values = {
      findings: draft.findings,
      impression: draft.impression,
      critical: draft.critical,
      codes: JSON.stringify(draft.codes),
      author_reader_id: me,
      deidentified,
    };
    const report = existing
      ? await trx
          .updateTable('reports')
          .set({ ...values, updated_at: sql`now()` })
          .where('id', '=', existing.id)
          .where('signed_at', 'is', null)
          .returningAll()
          .executeTakeFirstOrThrow()
      : await trx
          .insertInto('reports')
          .values({ case_id: caseId, ...values })
          .returningAll()
          .executeTakeFirstOrThrow();
    await recordCaseEvent(
      trx,
      who,
      requestId,
      existing ? 'report.draft.updated' : 'report.draft.created',
      caseId,
      {
        reportId: report.id,
        draftHash: draftHash(draft),
      },
    );
    return { report, addenda: [] };
  });
}

export interface SignOutcome extends ReportWithAddenda {
  deliveries: DeliveryRef[];
  siteId: string;
}

function links(publicUrl: string, caseId: string) {
  return {
    reportUrl: `${publicUrl}/v1/cases/${caseId}/report`,
    fhirUrl: `${publicUrl}/v1/cases/${caseId}/report/fhir`,
  };
}

/**
 * Signs the draft: binds the content, the signer and the time in one hash, makes the report immutable, moves
 * the case to 'reported' (stamping reported_at, which stops its SLA clock), completes its assignment and ends
 * the lease, and records the webhook to the clinic, all in one transaction. `expectedDraftHash`, when given,
 * must match the stored draft: the reader signs the text they last saw, not a concurrent save's.
 *
 * The lease ends by expiring now, not by clearing the holder: `lease_reader_id` keeps who read the case, which
 * the follow-up preference of routing looks up.
 */
export async function signReport(
  db: Db,
  who: Principal,
  caseId: string,
  options: { expectedDraftHash?: string | undefined; requestId: string; publicUrl: string },
): Promise<SignOutcome> {
  const me = who.readerId ?? '';
  return db.transaction().execute(async (trx) => {
    const locked = await lockCase(trx, caseId);
    const existing = locked ? await getReportRow(trx, caseId) : undefined;
    const kase = await requireLeaseHolder(trx, who, caseId, locked, existing);
    if (!existing) throw new AppError('CONFLICT', `case ${caseId} has no draft report; save one first`);
    const draft = toDraft(existing);
    if (options.expectedDraftHash && options.expectedDraftHash !== draftHash(draft)) {
      throw new AppError(
        'CONFLICT',
        'the draft changed since you read it (draftHash differs); read it again before signing',
      );
    }
    checkReadyToSign(draft);
    const signer = await getSigner(trx, me);
    const signedAt = new Date();
    const signature = signReportContent({
      reportId: existing.id,
      caseId,
      draft,
      signer,
      signedAt,
    });
    const report = await trx
      .updateTable('reports')
      .set({
        signed_at: signedAt,
        signer_reader_id: signer.readerId,
        signer_name: signer.name,
        content_hash: signature.contentHash,
        signed_content: signature.canonical,
        updated_at: signedAt,
      })
      .where('id', '=', existing.id)
      .where('signed_at', 'is', null)
      .returningAll()
      .executeTakeFirstOrThrow();
    await trx
      .updateTable('assignments')
      .set({ released_at: sql`now()`, completed_at: sql`now()` })
      .where('case_id', '=', caseId)
      .where('released_at', 'is', null)
      .execute();
    await trx
      .updateTable('cases')
      .set({
        status: 'reported',
        reported_at: signedAt,
        lease_expires_at: sql`now()`,
        updated_at: sql`now()`,
      })
      .where('id', '=', caseId)
      .execute();
    const delivery = await createWebhookDelivery(trx, {
      siteId: kase.site_id,
      url: kase.webhook_url,
      requestId: options.requestId,
      payload: {
        event: 'report.signed',
        caseId,
        reportId: report.id,
        siteId: kase.site_id,
        signedAt: signedAt.toISOString(),
        critical: draft.critical,
        contentHash: signature.contentHash,
        ...links(options.publicUrl, caseId),
      },
    });
    await recordCaseEvent(trx, who, options.requestId, 'report.signed', caseId, {
      reportId: report.id,
      contentHash: signature.contentHash,
      critical: draft.critical,
      ...(delivery ? { webhookDeliveryId: delivery.id } : {}),
    });
    return { report, addenda: [], deliveries: delivery ? [delivery] : [], siteId: kase.site_id };
  });
}

/**
 * Appends a signed addendum. Only the signer of the report may: once signed, the case has left every worklist
 * and no lease can be taken on it. Each addendum's hash chains to the one before (the report's for the first).
 */
export async function addReportAddendum(
  db: Db,
  who: Principal,
  caseId: string,
  input: AddendumInput,
  options: { requestId: string; publicUrl: string },
): Promise<SignOutcome & { addendum: ReportAddendumRow }> {
  const me = who.readerId ?? '';
  return db.transaction().execute(async (trx) => {
    const kase = await lockCase(trx, caseId);
    const report = kase ? await getReportRow(trx, caseId) : undefined;
    if (!kase || !report?.signed_at || !report.content_hash || report.signer_reader_id !== me) {
      const holdsDraft = kase && report && !report.signed_at && kase.leased && kase.lease_reader_id === me;
      if (holdsDraft)
        throw new AppError('CONFLICT', `sign the report of case ${caseId} before adding addenda`);
      throw new AppError('NOT_FOUND', `no signed report of yours on case ${caseId}`);
    }
    const previous = await listAddenda(trx, report.id);
    const seq = (previous.at(-1)?.seq ?? 0) + 1;
    const previousHash = previous.at(-1)?.content_hash ?? report.content_hash;
    const signer = await getSigner(trx, me);
    const signedAt = new Date();
    const signature = signAddendumContent({
      reportId: report.id,
      caseId,
      seq,
      addendum: input,
      signer,
      signedAt,
      previousHash,
    });
    const addendum = await trx
      .insertInto('report_addenda')
      .values({
        report_id: report.id,
        case_id: caseId,
        seq,
        text: input.text,
        critical: input.critical,
        signed_at: signedAt,
        signer_reader_id: signer.readerId,
        signer_name: signer.name,
        previous_hash: previousHash,
        content_hash: signature.contentHash,
        signed_content: signature.canonical,
      })
      .returningAll()
      .executeTakeFirstOrThrow();
    await trx.updateTable('cases').set({ updated_at: sql`now()` }).where('id', '=', caseId).execute();
    const addenda = [...previous, addendum];
    const delivery = await createWebhookDelivery(trx, {
      siteId: kase.site_id,
      url: kase.webhook_url,
      requestId: options.requestId,
      payload: {
        event: 'report.amended',
        caseId,
        reportId: report.id,
        siteId: kase.site_id,
        signedAt: report.signed_at.toISOString(),
        critical: isCritical({ draft: toDraft(report) }, addenda),
        contentHash: report.content_hash,
        addendum: { seq, signedAt: signedAt.toISOString(), contentHash: signature.contentHash },
        ...links(options.publicUrl, caseId),
      },
    });
    await recordCaseEvent(trx, who, options.requestId, 'report.addendum.signed', caseId, {
      reportId: report.id,
      seq,
      contentHash: signature.contentHash,
      ...(delivery ? { webhookDeliveryId: delivery.id } : {}),
    });
    return {
      report,
      addenda,
      addendum,
      deliveries: delivery ? [delivery] : [],
      siteId: kase.site_id,
    };
  });
}

export interface ReportForViewer extends ReportWithAddenda {
  access: 'full' | 'redacted';
  kase: {
    id: string;
    kind: 'imaging' | 'ecg' | 'pathology';
    siteId: string;
    studyInstanceUid: string | null;
  };
  /** How the patient may appear to this viewer (FHIR subject). */
  patientMode: FhirPatientView['mode'];
}

/**
 * The case's report as the caller may see it, or undefined (the route answers 404): see `reportAccess`. A reader
 * not licensed where the case comes from (a cross-border read) sees the patient de-identified; the clinic and
 * admins see the real patient, ops never do.
 */
export async function getReportForViewer(
  db: Db,
  who: Principal,
  caseId: string,
): Promise<ReportForViewer | undefined> {
  const row = await db
    .selectFrom('cases')
    .innerJoin('sites', 'sites.id', 'cases.site_id')
    .select([
      'cases.id',
      'cases.kind',
      'cases.site_id',
      'cases.study_instance_uid',
      sql<
        string | null
      >`CASE WHEN ${leaseLive} AND cases.status = 'routed' THEN cases.lease_reader_id END`.as('lease_holder'),
      'sites.jurisdiction',
      'sites.cross_border_policy',
    ])
    .where('cases.id', '=', caseId)
    .executeTakeFirst();
  if (!row) return undefined;
  const report = await getReportRow(db, caseId);
  if (!report) return undefined;
  const access = reportAccess(who, {
    siteId: row.site_id,
    signed: report.signed_at !== null,
    signerReaderId: report.signer_reader_id,
    leaseHolderId: row.lease_holder,
  });
  if (!access) return undefined;
  let patientMode: FhirPatientView['mode'] = who.role === 'ops' ? 'deidentified' : 'identified';
  if (who.role === 'reader') {
    const reader = await db
      .selectFrom('readers')
      .select('jurisdictions')
      .where('id', '=', who.readerId ?? '')
      .executeTakeFirst();
    const identified =
      reader !== undefined &&
      mayReceiveIdentified(reader, {
        jurisdiction: row.jurisdiction,
        crossBorderPolicy: row.cross_border_policy,
      });
    patientMode = identified ? 'identified' : 'deidentified';
  }
  const addenda = await listAddenda(db, report.id);
  return {
    report,
    addenda,
    access,
    patientMode,
    kase: { id: row.id, kind: row.kind, siteId: row.site_id, studyInstanceUid: row.study_instance_uid },
  };
}

function text(v: unknown): string | null {
  return typeof v === 'string' && v.trim() !== '' ? v.trim() : null;
}

/**
 * What the FHIR document says about the study and the patient, from the case's files. A de-identified view gets
 * no demographics, no acquisition date, and the StudyInstanceUID only as its de-identified replacement.
 */
export async function getFhirFacts(
  db: Db,
  kase: ReportForViewer['kase'],
  mode: FhirPatientView['mode'],
): Promise<{ study: FhirStudy; patient: FhirPatientView }> {
  const files = await db
    .selectFrom('files')
    .select(['metadata', 'patient', 'sop_instance_uid'])
    .where('case_id', '=', kase.id)
    .where('status', '=', 'processed')
    .where('duplicate_of', 'is', null)
    .orderBy('received_at')
    .orderBy('name')
    .execute();
  const modalities = [...new Set(files.map((f) => text(f.metadata.modality)?.toUpperCase()).filter(Boolean))];
  const series = new Set(files.map((f) => text(f.metadata.seriesInstanceUid)).filter(Boolean));
  const instances = files.filter((f) => f.sop_instance_uid !== null).length;
  const triage = files.map((f) => f.metadata.triage).find((t) => typeof t === 'object' && t !== null) as
    | { heartRate?: unknown }
    | undefined;
  const studyDate = files.map((f) => text(f.metadata.studyDate)).find(Boolean) ?? null;
  let uid = kase.studyInstanceUid;
  if (uid && mode === 'deidentified') {
    const remap = await db
      .selectFrom('uid_remaps')
      .select('replacement_uid')
      .where('case_id', '=', kase.id)
      .where('original_uid', '=', uid)
      .executeTakeFirst();
    uid = remap?.replacement_uid ?? null;
  }
  const study: FhirStudy = {
    kind: kase.kind,
    caseId: kase.id,
    studyInstanceUid: uid,
    modalities: modalities as string[],
    seriesCount: series.size > 0 ? series.size : null,
    instanceCount: instances > 0 ? instances : null,
    startedAt: mode === 'identified' ? fhirDate(studyDate) : null,
    heartRate: typeof triage?.heartRate === 'number' ? triage.heartRate : null,
  };
  const patient: FhirPatientView =
    mode === 'identified'
      ? {
          mode,
          siteId: kase.siteId,
          patient: (files.find((f) => f.patient)?.patient as PatientInfo | null | undefined) ?? null,
        }
      : { mode };
  return { study, patient };
}
