import { type Selectable, sql } from 'kysely';
import { Type } from 'typebox';
import type { Context } from '../../context.js';
import {
  type CaseSummaryRow,
  getCaseDetailParts,
  getCaseForPrincipal,
  getCasesForPrincipal,
} from '../../db/case-queries.js';
import type { Db } from '../../db/database.js';
import type { ArtifactsTable, CaseKind, CaseStatus } from '../../db/schema.js';
import { getOrCreateReplacementUids } from '../../db/uid-remaps.js';
import { AppError } from '../../errors.js';
import { principalOf, requireRole } from '../auth.js';
import type { App } from '../build-app.js';
import {
  deidentifiedArtifactName,
  deidentifiedFileName,
  mayseeIdentified,
  needsDeidentifiedView,
  redactFileMetadata,
  uidsIn,
  uidsInArtifactNames,
} from '../redact.js';
import {
  ArtifactSummary,
  CaseKind as CaseKindSchema,
  CaseStatus as CaseStatusSchema,
  CaseSummary,
  errorResponses,
  FileSummary,
  IdParams,
} from '../schemas.js';

export function artifactUrl(ctx: Context, caseId: string, name: string): string {
  return `${ctx.config.publicUrl}/v1/cases/${caseId}/artifacts/${encodeURIComponent(name)}`;
}

export function toCaseSummary(ctx: Context, row: CaseSummaryRow) {
  return {
    id: row.id,
    kind: row.kind,
    status: row.status,
    priority: row.priority,
    priorityReason: row.priority_reason,
    siteId: row.site_id,
    assignedReaderId: row.reader_id ?? null,
    thumbnailUrl: row.thumbnail ? artifactUrl(ctx, row.id, row.thumbnail) : null,
    createdAt: row.created_at.toISOString(),
    routedAt: row.routed_at?.toISOString() ?? null,
  };
}

const CaseDetail = Type.Object({
  id: Type.String(),
  kind: Type.String(),
  status: Type.String(),
  priority: Type.String(),
  priorityReason: Type.Union([Type.String(), Type.Null()]),
  siteId: Type.String(),
  notes: Type.Union([Type.String(), Type.Null()]),
  studyInstanceUid: Type.Union([Type.String(), Type.Null()]),
  assignedReader: Type.Union([
    Type.Null(),
    Type.Object({ id: Type.String(), name: Type.String(), assignedAt: Type.String(), reason: Type.String() }),
  ]),
  routeNote: Type.Union([Type.String(), Type.Null()]),
  metadata: Type.Record(Type.String(), Type.Unknown()),
  patient: Type.Union([Type.Null(), Type.Record(Type.String(), Type.Unknown())]),
  files: Type.Array(
    Type.Intersect([FileSummary, Type.Object({ metadata: Type.Record(Type.String(), Type.Unknown()) })]),
  ),
  artifacts: Type.Array(ArtifactSummary),
  createdAt: Type.String(),
  processedAt: Type.Union([Type.String(), Type.Null()]),
  routedAt: Type.Union([Type.String(), Type.Null()]),
});

type ArtifactRow = Selectable<ArtifactsTable>;

/**
 * The artifacts a view may list and fetch, under the names it knows them by: identifying pictures (slide labels
 * and macros) only for identified views; series thumbnails renamed after de-identified UIDs for readers abroad.
 */
async function artifactsForView(
  db: Db,
  caseId: string,
  artifacts: ArtifactRow[],
  view: { identified: boolean; deidentified: boolean },
): Promise<Array<{ name: string; row: ArtifactRow }>> {
  const shown = artifacts.filter((a) => view.identified || !a.identifying);
  if (!view.deidentified) return shown.map((row) => ({ name: row.name, row }));
  const remap = await getOrCreateReplacementUids(db, caseId, uidsInArtifactNames(shown.map((a) => a.name)));
  return shown.map((row) => ({ name: deidentifiedArtifactName(row.name, remap), row }));
}

export function registerCaseRoutes(app: App, ctx: Context): void {
  const { db, storage } = ctx;
  const anyRole = requireRole(db, 'clinic', 'reader', 'ops', 'admin');

  app.get(
    '/v1/cases',
    {
      onRequest: anyRole,
      schema: {
        summary: 'Cases visible to the caller, newest first',
        querystring: Type.Object({
          status: Type.Optional(CaseStatusSchema),
          kind: Type.Optional(CaseKindSchema),
          limit: Type.Integer({ minimum: 1, maximum: 200, default: 50 }),
          offset: Type.Integer({ minimum: 0, default: 0 }),
        }),
        response: { 200: Type.Object({ cases: Type.Array(CaseSummary) }), ...errorResponses },
      },
    },
    async (request) => {
      const q = request.query as { status?: CaseStatus; kind?: CaseKind; limit: number; offset: number };
      const rows = await getCasesForPrincipal(db, principalOf(request), q);
      return { cases: rows.map((r) => toCaseSummary(ctx, r)) };
    },
  );

  app.get(
    '/v1/cases/:id',
    {
      onRequest: anyRole,
      schema: {
        summary: 'One case with its files, artifacts and metadata',
        params: IdParams,
        response: { 200: CaseDetail, ...errorResponses },
      },
    },
    async (request) => {
      const who = principalOf(request);
      const { id } = request.params as { id: string };
      const kase = await getCaseForPrincipal(db, who, id);
      if (!kase) throw new AppError('NOT_FOUND', `no case ${id}`);
      const { files, artifacts, assignment } = await getCaseDetailParts(db, id);
      const identified = mayseeIdentified(who, kase);
      const deidentified = needsDeidentifiedView(who, kase);
      await db
        .insertInto('audit_events')
        .values({
          action: 'case.viewed',
          actor_key_id: who.keyId,
          actor_role: who.role,
          case_id: id,
          request_id: request.id,
          detail: deidentified ? JSON.stringify({ view: 'deidentified' }) : sql`'{}'::jsonb`,
        })
        .execute();
      const patient = files.find((f) => f.patient)?.patient ?? null;
      // A reader abroad sees UIDs only as the case's replacements: the same ones a de-identified DICOM copy carries.
      const remap = deidentified
        ? await getOrCreateReplacementUids(db, id, [
            ...uidsIn(kase.metadata),
            ...(kase.study_instance_uid ? [kase.study_instance_uid] : []),
            ...files.flatMap((f) => uidsIn(f.metadata)),
          ])
        : new Map<string, string>();
      const shownArtifacts = await artifactsForView(db, id, artifacts, { identified, deidentified });
      return {
        id: kase.id,
        kind: kase.kind,
        status: kase.status,
        priority: kase.priority,
        priorityReason: kase.priority_reason,
        siteId: kase.site_id,
        // Free text typed at the clinic may name the patient: only views that may see the patient get it.
        notes: identified ? kase.notes : null,
        studyInstanceUid: deidentified
          ? (remap.get(kase.study_instance_uid ?? '') ?? null)
          : kase.study_instance_uid,
        assignedReader: assignment
          ? {
              id: assignment.id,
              name: assignment.name,
              assignedAt: assignment.assigned_at.toISOString(),
              reason: assignment.reason,
            }
          : null,
        routeNote: deidentified ? null : kase.route_note,
        metadata: deidentified ? redactFileMetadata(kase.metadata, remap) : kase.metadata,
        patient: identified ? patient : null,
        files: files.map((f, i) => ({
          id: f.id,
          name: deidentified ? deidentifiedFileName(f.format, i) : f.name,
          bytes: Number(f.bytes),
          sha256: deidentified ? null : f.sha256,
          format: f.format,
          status: f.status,
          error: f.error_code
            ? { code: f.error_code, message: deidentified ? '' : (f.error_message ?? '') }
            : null,
          metadata: deidentified ? redactFileMetadata(f.metadata, remap) : f.metadata,
        })),
        artifacts: shownArtifacts.map(({ name, row: a }) => ({
          name,
          contentType: a.content_type,
          bytes: Number(a.bytes),
          width: a.width,
          height: a.height,
          url: artifactUrl(ctx, id, name),
        })),
        createdAt: kase.created_at.toISOString(),
        processedAt: kase.processed_at?.toISOString() ?? null,
        routedAt: kase.routed_at?.toISOString() ?? null,
      };
    },
  );

  app.get(
    '/v1/cases/:id/artifacts/:name',
    {
      onRequest: anyRole,
      schema: {
        summary: 'The bytes of a derived artifact (thumbnail, series thumbnail, ECG page …)',
        params: Type.Object({ id: Type.String({ format: 'uuid' }), name: Type.String({ maxLength: 200 }) }),
      },
    },
    async (request, reply) => {
      const who = principalOf(request);
      const { id, name } = request.params as { id: string; name: string };
      const kase = await getCaseForPrincipal(db, who, id);
      if (!kase) throw new AppError('NOT_FOUND', `no case ${id}`);
      const view = {
        identified: mayseeIdentified(who, kase),
        deidentified: needsDeidentifiedView(who, kase),
      };
      // An identifying artifact is as absent as a missing one for views that may not see it.
      const artifact = view.deidentified
        ? (
            await artifactsForView(
              db,
              id,
              await db.selectFrom('artifacts').selectAll().where('case_id', '=', id).execute(),
              view,
            )
          ).find((a) => a.name === name)?.row
        : await db
            .selectFrom('artifacts')
            .selectAll()
            .where('case_id', '=', id)
            .where('name', '=', name)
            .where((eb) => (view.identified ? eb.lit(true) : eb('identifying', '=', false)))
            .executeTakeFirst();
      if (!artifact) throw new AppError('NOT_FOUND', `case ${id} has no artifact ${name}`);
      const body = await storage.get(artifact.object_key);
      return reply
        .header('content-type', artifact.content_type)
        .header('content-length', String(artifact.bytes))
        .header('cache-control', 'private, max-age=300')
        .send(body);
    },
  );
}
