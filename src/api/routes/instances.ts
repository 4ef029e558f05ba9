import { Type } from 'typebox';
import type { Context } from '../../context.js';
import { getCaseForPrincipal } from '../../db/case-queries.js';
import { getOriginalUidInCase } from '../../db/uid-remaps.js';
import { AppError } from '../../errors.js';
import { showsIdentity } from '../../pipeline/stored-dicom-header.js';
import { type Principal, principalOf, requireRole } from '../auth.js';
import type { App } from '../build-app.js';
import { ensureDeidentifiedCopy } from '../deidentified-copy.js';
import { answerRange } from '../http-range.js';
import { needsDeidentifiedView } from '../redact.js';
import { type FrameFormat, parseWindow, renderCachedFrame, sendRenderedFrame } from '../rendered-frame.js';

/** Picks the output format from `?format=`, else the Accept header, else PNG (lossless, what viewers expect). */
function chooseFormat(query: string | undefined, accept: string | undefined): FrameFormat {
  if (query) return query as FrameFormat;
  if (accept?.includes('image/webp')) return 'webp';
  if (accept?.includes('image/jpeg') && !accept.includes('image/png')) return 'jpeg';
  return 'png';
}

interface FoundInstance {
  file: { id: string; object_key: string; bytes: string; metadata: unknown };
  originalUid: string;
  /** The caller is a reader abroad: they address the instance by its replacement UID and get it de-identified. */
  deidentified: boolean;
}

/**
 * The stored file of one instance of a case the caller may see. A reader abroad knows instances only by their
 * de-identified UIDs (see GET /v1/cases/:id), and never gets an instance whose pixels may show who the patient
 * is (a slide label or overview, burned-in annotation): for them it does not exist.
 */
async function findInstance(
  ctx: Context,
  who: Principal,
  caseId: string,
  sopInstanceUid: string,
): Promise<FoundInstance> {
  const kase = await getCaseForPrincipal(ctx.db, who, caseId);
  if (!kase) throw new AppError('NOT_FOUND', `no case ${caseId}`);
  const deidentified = needsDeidentifiedView(who, kase);
  const originalUid = deidentified
    ? await getOriginalUidInCase(ctx.db, caseId, sopInstanceUid)
    : sopInstanceUid;
  const missing = () => new AppError('NOT_FOUND', `case ${caseId} has no instance ${sopInstanceUid}`);
  if (!originalUid) throw missing();
  const file = await ctx.db
    .selectFrom('files')
    .select(['id', 'object_key', 'bytes', 'metadata'])
    .where('case_id', '=', caseId)
    .where('sop_instance_uid', '=', originalUid)
    .where('duplicate_of', 'is', null)
    .orderBy('received_at', 'desc')
    .executeTakeFirst();
  if (!file) throw missing();
  if (deidentified && (await showsIdentity(ctx, file))) throw missing();
  return { file, originalUid, deidentified };
}

export function registerInstanceRoutes(app: App, ctx: Context): void {
  app.get(
    '/v1/cases/:id/instances/:sopInstanceUid',
    {
      // Ops run the pipeline and never need a patient's images.
      onRequest: requireRole(ctx.db, 'clinic', 'reader', 'admin'),
      schema: {
        summary:
          'One DICOM instance as a Part 10 file: as received, or its de-identified copy for a reader abroad',
        description:
          "A reader licensed only outside the site's jurisdiction addresses the instance by its replacement SOP " +
          'Instance UID and receives the de-identified copy (PS3.15 Basic Profile with Modified Dates and Clean ' +
          "Descriptors; the case's UID map, date shift and pseudonym), made on first request and kept in object " +
          'storage. Everyone else receives the stored file byte for byte.',
        params: Type.Object({
          id: Type.String({ format: 'uuid' }),
          sopInstanceUid: Type.String({ pattern: '^[0-9.]{1,64}$' }),
        }),
      },
    },
    async (request, reply) => {
      const who = principalOf(request);
      const { id, sopInstanceUid } = request.params as { id: string; sopInstanceUid: string };
      const { file, deidentified } = await findInstance(ctx, who, id, sopInstanceUid);
      const info = deidentified
        ? await ensureDeidentifiedCopy(ctx, id, file)
        : await ctx.storage.head(file.object_key);
      if (!info)
        throw new AppError('STORAGE_UNAVAILABLE', `instance ${sopInstanceUid} is missing from storage`);
      const key = info.key;
      // Stored objects never change in place (a new copy gets a new key), so their storage tag validates ranges.
      const etag = `"${info.etag ?? `${info.bytes}`}"`;
      const ifRange = request.headers['if-range'];
      const range = answerRange(
        request.headers.range,
        info.bytes,
        etag,
        typeof ifRange === 'string' ? ifRange : undefined,
      );
      void reply
        .header('content-type', 'application/dicom')
        .header('content-disposition', `attachment; filename="${sopInstanceUid}.dcm"`)
        .header('cache-control', 'private, no-store')
        .header('accept-ranges', 'bytes')
        .header('etag', etag);
      if (range.kind === 'unsatisfiable') {
        return reply.code(416).header('content-range', `bytes */${info.bytes}`).send();
      }
      if (range.kind === 'part') {
        return reply
          .code(206)
          .header('content-range', `bytes ${range.start}-${range.end}/${info.bytes}`)
          .header('content-length', String(range.end - range.start + 1))
          .send(await ctx.storage.get(key, { start: range.start, end: range.end }));
      }
      return reply.header('content-length', String(info.bytes)).send(await ctx.storage.get(key));
    },
  );

  app.get(
    '/v1/cases/:id/instances/:sopInstanceUid/frames/:n/rendered',
    {
      onRequest: requireRole(ctx.db, 'clinic', 'reader', 'ops', 'admin'),
      schema: {
        summary: 'One frame rendered for the viewer (PNG, WebP or JPEG), cached in object storage',
        params: Type.Object({
          id: Type.String({ format: 'uuid' }),
          sopInstanceUid: Type.String({ pattern: '^[0-9.]{1,64}$' }),
          n: Type.Integer({ minimum: 1, description: 'frame number, 1-based as in DICOMweb' }),
        }),
        querystring: Type.Object({
          size: Type.Integer({ minimum: 16, maximum: 4096, default: 512 }),
          window: Type.Optional(
            Type.String({ description: 'centre,width in modality units (after rescale)' }),
          ),
          format: Type.Optional(
            Type.Union([Type.Literal('png'), Type.Literal('webp'), Type.Literal('jpeg')]),
          ),
          overlays: Type.Boolean({
            default: true,
            description:
              'draw the overlay planes (60xx) over grayscale frames; never for a de-identified view, whose copy has none',
          }),
        }),
      },
    },
    async (request, reply) => {
      const who = principalOf(request);
      const { id, sopInstanceUid, n } = request.params as { id: string; sopInstanceUid: string; n: number };
      const q = request.query as { size: number; window?: string; format?: FrameFormat; overlays: boolean };
      const { file, originalUid, deidentified } = await findInstance(ctx, who, id, sopInstanceUid);

      const format = chooseFormat(q.format, request.headers.accept);
      const rendered = await renderCachedFrame(ctx, {
        caseId: id,
        file,
        originalUid,
        frame: n,
        size: q.size,
        format,
        window: parseWindow(q.window),
        // De-identification removes overlay groups (their graphics may name the patient), so a de-identified
        // view renders without them, as its copy would.
        overlays: q.overlays && !deidentified,
      });
      return sendRenderedFrame(ctx, reply, format, rendered);
    },
  );
}
