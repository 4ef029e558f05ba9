import { Type } from 'typebox';
import type { Context } from '../../context.js';
import {
  addReportAddendum,
  getFhirFacts,
  getReportForViewer,
  type ReportWithAddenda,
  saveReportDraft,
  signReport,
  toAddendumForView,
  toDraft,
  toReportForView,
} from '../../db/report-queries.js';
import {
  buildDiagnosticReport,
  draftHash,
  isCritical,
  parseAddendum,
  parseReportDraft,
  REPORT_LIMITS,
  reportStatus,
} from '../../domain/report.js';
import { AppError } from '../../errors.js';
import { afterReportSigned } from '../../pipeline/after-report-signed.js';
import { type Principal, principalOf, requireRole } from '../auth.js';
import type { App } from '../build-app.js';
import { ErrorBody, errorResponses, IdParams } from '../schemas.js';

const Code = Type.Object(
  {
    system: Type.String({ minLength: 1, maxLength: 200 }),
    code: Type.String({ minLength: 1, maxLength: 100 }),
    display: Type.Optional(Type.String({ maxLength: REPORT_LIMITS.display })),
  },
  { additionalProperties: false },
);

const DraftBody = Type.Object(
  {
    findings: Type.Optional(Type.String({ maxLength: REPORT_LIMITS.findings })),
    impression: Type.Optional(Type.String({ maxLength: REPORT_LIMITS.impression })),
    critical: Type.Optional(Type.Boolean()),
    codes: Type.Optional(Type.Array(Code, { maxItems: REPORT_LIMITS.codes })),
  },
  { additionalProperties: false },
);

const Nullable = <T extends Parameters<typeof Type.Union>[0][number]>(t: T) => Type.Union([t, Type.Null()]);

const Addendum = Type.Object({
  id: Type.String(),
  seq: Type.Integer(),
  /** null for ops: report text may name the patient. */
  text: Nullable(Type.String()),
  critical: Type.Boolean(),
  signedAt: Type.String(),
  readerId: Type.String(),
  name: Type.String(),
  previousHash: Type.String(),
  contentHash: Type.String(),
});

const ReportBody = Type.Object({
  id: Type.String(),
  caseId: Type.String(),
  status: Type.Union([Type.Literal('draft'), Type.Literal('signed')]),
  fhirStatus: Type.Union([Type.Literal('preliminary'), Type.Literal('final'), Type.Literal('amended')]),
  redacted: Type.Boolean(),
  findings: Nullable(Type.String()),
  impression: Nullable(Type.String()),
  /** The report's flag or any addendum's. */
  critical: Type.Boolean(),
  codes: Type.Array(Code),
  /** The author read a de-identified copy (not licensed where the case comes from). */
  readFromDeidentifiedCopy: Type.Boolean(),
  /** For a draft: pass it to sign to be sure to sign this text. */
  draftHash: Nullable(Type.String()),
  createdAt: Type.String(),
  updatedAt: Type.String(),
  signed: Nullable(
    Type.Object({
      at: Type.String(),
      readerId: Type.String(),
      name: Type.String(),
      contentHash: Type.String(),
    }),
  ),
  addenda: Type.Array(Addendum),
  links: Type.Object({ self: Type.String(), fhir: Type.String() }),
});

const withConflict = { ...errorResponses, 409: ErrorBody } as const;

function toBody(ctx: Context, { report, addenda }: ReportWithAddenda, access: 'full' | 'redacted' = 'full') {
  const view = toReportForView(report);
  const full = access === 'full';
  const base = `${ctx.config.publicUrl}/v1/cases/${report.case_id}/report`;
  return {
    id: report.id,
    caseId: report.case_id,
    status: report.signed_at ? ('signed' as const) : ('draft' as const),
    fhirStatus: reportStatus(view, addenda),
    redacted: !full,
    findings: full ? report.findings : null,
    impression: full ? report.impression : null,
    critical: isCritical(view, addenda),
    codes: report.codes,
    readFromDeidentifiedCopy: report.deidentified,
    draftHash: report.signed_at || !full ? null : draftHash(toDraft(report)),
    createdAt: report.created_at.toISOString(),
    updatedAt: report.updated_at.toISOString(),
    signed:
      report.signed_at && report.signer_reader_id && report.signer_name && report.content_hash
        ? {
            at: report.signed_at.toISOString(),
            readerId: report.signer_reader_id,
            name: report.signer_name,
            contentHash: report.content_hash,
          }
        : null,
    addenda: addenda.map((a) => ({
      id: a.id,
      seq: a.seq,
      text: full ? a.text : null,
      critical: a.critical,
      signedAt: a.signed_at.toISOString(),
      readerId: a.signer_reader_id,
      name: a.signer_name,
      previousHash: a.previous_hash,
      contentHash: a.content_hash,
    })),
    links: { self: base, fhir: `${base}/fhir` },
  };
}

/**
 * Reports: the reader holding the lease drafts and signs; the signer appends addenda; the clinic, the signer,
 * ops (without the text) and admins read it, as our JSON or as a FHIR R4 DiagnosticReport. Signing and
 * addenda queue the clinic's webhook after their transaction commits.
 */
export function registerReportRoutes(app: App, ctx: Context): void {
  const readerOnly = requireRole(ctx.db, 'reader');
  const anyRole = requireRole(ctx.db, 'clinic', 'reader', 'ops', 'admin');
  const { publicUrl } = ctx.config;

  async function readableReport(who: Principal, caseId: string) {
    const found = await getReportForViewer(ctx.db, who, caseId);
    if (!found) throw new AppError('NOT_FOUND', `case ${caseId} has no report you may read`);
    return found;
  }

  app.get(
    '/v1/cases/:id/report',
    {
      onRequest: anyRole,
      schema: {
        summary: "The case's report: signed for the clinic; the draft for the reader holding the lease",
        description:
          'Clinic of the case’s site: the signed report (404 before signing). Reader: the draft while holding ' +
          'the lease, the signed report if they signed it. Ops: status, signer and hashes, no text. Admin: all.',
        params: IdParams,
        response: { 200: ReportBody, ...errorResponses },
      },
    },
    async (request) => {
      const { id } = request.params as { id: string };
      const found = await readableReport(principalOf(request), id);
      return toBody(ctx, found, found.access);
    },
  );

  app.put(
    '/v1/cases/:id/report',
    {
      onRequest: readerOnly,
      schema: {
        summary: 'Save the draft report (the reader holding the lease); replaces the whole draft',
        description:
          '`codes` are FHIR Codings: `system` is a URI (http://snomed.info/sct, http://loinc.org, ' +
          'http://hl7.org/fhir/sid/icd-10 …) or a short name (snomed, loinc, icd-10, icd-10-cm, radlex); ' +
          'SNOMED CT and LOINC check digits are verified. 409 once the report is signed.',
        params: IdParams,
        body: DraftBody,
        response: { 200: ReportBody, ...withConflict },
      },
    },
    async (request) => {
      const { id } = request.params as { id: string };
      const draft = parseReportDraft(request.body);
      return toBody(ctx, await saveReportDraft(ctx.db, principalOf(request), id, draft, request.id));
    },
  );

  app.post(
    '/v1/cases/:id/report/sign',
    {
      onRequest: readerOnly,
      schema: {
        summary: 'Sign the draft: it becomes immutable, the case reported, and the clinic is notified',
        description:
          'Optional body `{ "draftHash": "…" }`: the draftHash last read; 409 if the draft changed since. ' +
          'Needs a non-empty impression and the live lease.',
        params: IdParams,
        response: { 200: ReportBody, ...withConflict },
      },
    },
    async (request) => {
      const { id } = request.params as { id: string };
      const body = request.body as unknown;
      let expectedDraftHash: string | undefined;
      if (body !== undefined && body !== null) {
        const hash = (body as { draftHash?: unknown }).draftHash;
        const keys = typeof body === 'object' && !Array.isArray(body) ? Object.keys(body) : null;
        if (
          !keys ||
          keys.some((k) => k !== 'draftHash') ||
          (hash !== undefined && typeof hash !== 'string')
        ) {
          throw new AppError('VALIDATION_FAILED', 'the body of a signature is empty or { "draftHash": "…" }');
        }
        expectedDraftHash = hash as string | undefined;
      }
      const who = principalOf(request);
      const signed = await signReport(ctx.db, who, id, {
        expectedDraftHash,
        requestId: request.id,
        publicUrl,
      });
      await afterReportSigned(
        ctx,
        { event: 'report.signed', caseId: id, deliveries: signed.deliveries, requestId: request.id },
        request.log,
      );
      return toBody(ctx, signed);
    },
  );

  app.post(
    '/v1/cases/:id/report/addenda',
    {
      onRequest: readerOnly,
      schema: {
        summary: 'Append a signed addendum to a signed report (its signer); never edited afterwards',
        params: IdParams,
        body: Type.Object(
          {
            text: Type.String({ minLength: 1, maxLength: REPORT_LIMITS.addendum }),
            critical: Type.Optional(Type.Boolean()),
          },
          { additionalProperties: false },
        ),
        response: { 201: ReportBody, ...withConflict },
      },
    },
    async (request, reply) => {
      const { id } = request.params as { id: string };
      const input = parseAddendum(request.body);
      const added = await addReportAddendum(ctx.db, principalOf(request), id, input, {
        requestId: request.id,
        publicUrl,
      });
      await afterReportSigned(
        ctx,
        { event: 'report.amended', caseId: id, deliveries: added.deliveries, requestId: request.id },
        request.log,
      );
      return reply.status(201).send(toBody(ctx, added));
    },
  );

  app.get(
    '/v1/cases/:id/report/fhir',
    {
      onRequest: anyRole,
      schema: {
        summary: 'The report as a FHIR R4 DiagnosticReport (application/fhir+json)',
        description:
          'Contains the Patient and an ImagingStudy (imaging, slides; StudyInstanceUID as urn:oid) or an ECG ' +
          'Observation. The patient is identified for the clinic and admins, redacted for ops and for readers ' +
          'not licensed where the case comes from. Same access as GET …/report.',
        params: IdParams,
        response: { 200: Type.Record(Type.String(), Type.Unknown()), ...errorResponses },
      },
    },
    async (request, reply) => {
      const { id } = request.params as { id: string };
      const found = await readableReport(principalOf(request), id);
      const { study, patient } = await getFhirFacts(ctx.db, found.kase, found.patientMode);
      const resource = buildDiagnosticReport({
        report: toReportForView(found.report),
        addenda: found.addenda.map(toAddendumForView),
        study,
        patient,
        includeText: found.access === 'full',
        baseUrl: publicUrl,
      });
      return reply.header('content-type', 'application/fhir+json; charset=utf-8').send(resource);
    },
  );
}
