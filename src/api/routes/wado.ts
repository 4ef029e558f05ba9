/**
 * DICOMweb Retrieve (WADO-RS, PS3.18 §10.4): the instances of a study, of a series, or one instance, as
 * `multipart/related; type="application/dicom"`, each part a Part 10 file. These are the resources the STOW-RS
 * response's RetrieveURLs name, and what a reader's DICOMweb viewer or workstation pulls.
 *
 * Who gets what is decided as for the rest of the API (redact.ts): the clinic of the case's site, admins and
 * readers who may see the case identified get the files as they were received, addressed by their own UIDs; a
 * reader licensed only abroad addresses the study by its replacement UIDs (the ones GET /v1/cases/:id shows) and
 * gets the de-identified copies (deidentified-copy.ts), never a slide label or overview or an instance with
 * burned-in annotation. Ops, who see cases without their patients, get 403.
 *
 * Conformance notes. Instances are sent in the transfer syntax they were stored in, which each part's
 * Content-Type names: `transfer-syntax=*` and an Accept without a transfer syntax are served so (PS3.18 makes
 * Explicit VR Little Endian the default; Teleread does not transcode), and a request for another transfer syntax
 * gets 406. Search (QIDO-RS), metadata and bulk data resources are not served.
 */
import { randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { sql } from 'kysely';
import { Type } from 'typebox';
import type { Context } from '../../context.js';
import { getCaseForPrincipal } from '../../db/case-queries.js';
import { getOriginalUid, getOriginalUidInCase } from '../../db/uid-remaps.js';
import { AppError } from '../../errors.js';
import { showsIdentity } from '../../pipeline/stored-dicom-header.js';
import { type Principal, principalOf, requireRole } from '../auth.js';
import type { App } from '../build-app.js';
import { ensureDeidentifiedCopy } from '../deidentified-copy.js';
import { parseMediaType } from '../multipart-related.js';
import { needsDeidentifiedView } from '../redact.js';

const DICOM_FORMATS = ['dicom', 'dicom-wsi', 'dicom-waveform'];
const UID = Type.String({ pattern: '^[0-9]+(\\.[0-9]+)*$', maxLength: 64 });

/** The URL's UIDs (named as the STOW-RS route names the study, which shares its path). */
interface Scope {
  studyUid: string;
  seriesUid?: string | undefined;
  sopUid?: string | undefined;
}

interface StudyFile {
  id: string;
  object_key: string;
  bytes: string;
  transferSyntaxUid: string | null;
}

/**
 * What the caller's Accept allows, PS3.18 §8.7.3: a multipart/related of application/dicom (or a wildcard), with
 * the transfer syntaxes it names; `*` (or none named) takes any. Undefined when it allows no Part 10 response.
 */
function acceptedTransferSyntaxes(accept: string | undefined): Set<string> | '*' | undefined {
  if (!accept || accept.trim() === '') return '*';
  let named: Set<string> | undefined;
  for (const range of splitAccept(accept)) {
    const m = parseMediaType(range);
    if (!m) continue;
    const type = m.parameters.type?.toLowerCase();
    const multipart = m.type === 'multipart/related' && (type === undefined || type === 'application/dicom');
    if (!multipart && m.type !== '*/*' && m.type !== 'multipart/*') continue;
    const ts = m.parameters['transfer-syntax'];
    if (!multipart || ts === undefined || ts === '*') return '*';
    named ??= new Set();
    named.add(ts);
  }
  return named;
}

/** Splits an Accept header at the commas between media ranges (not those inside quoted parameters). */
function splitAccept(accept: string): string[] {
  const out: string[] = [];
  let current = '';
  let quoted = false;
  for (const ch of accept) {
    if (ch === '"') quoted = !quoted;
    if (ch === ',' && !quoted) {
      out.push(current);
      current = '';
    } else current += ch;
  }
  out.push(current);
  return out.map((r) => r.trim()).filter((r) => r !== '');
}

/** The cases the study UID names for this caller, and whether they see it de-identified. */
async function casesOfStudy(
  ctx: Context,
  who: Principal,
  study: string,
): Promise<{ caseIds: string[]; deidentified: boolean }> {
  const remap = await getOriginalUid(ctx.db, study);
  if (remap) {
    const kase = await getCaseForPrincipal(ctx.db, who, remap.caseId);
    if (kase && needsDeidentifiedView(who, kase) && kase.study_instance_uid === remap.originalUid) {
      return { caseIds: [kase.id], deidentified: true };
    }
  }
  const candidates = await ctx.db
    .selectFrom('cases')
    .select('id')
    .where('study_instance_uid', '=', study)
    .execute();
  const caseIds: string[] = [];
  for (const c of candidates) {
    const kase = await getCaseForPrincipal(ctx.db, who, c.id);
    // A case this caller sees only de-identified is not found by its original UID.
    if (kase && !needsDeidentifiedView(who, kase)) caseIds.push(kase.id);
  }
  return { caseIds, deidentified: false };
}

/** A replacement UID given by a reader abroad, as the original it stands for in this case ('' matches nothing). */
async function originalOf(ctx: Context, caseId: string, uid: string | undefined): Promise<string | null> {
  if (uid === undefined) return null;
  return (await getOriginalUidInCase(ctx.db, caseId, uid)) ?? '';
}

async function filesInScope(ctx: Context, who: Principal, scope: Scope) {
  const { caseIds, deidentified } = await casesOfStudy(ctx, who, scope.studyUid);
  const missing = () =>
    new AppError(
      'NOT_FOUND',
      `no study ${scope.studyUid}${scope.seriesUid ? ` series ${scope.seriesUid}` : ''}${scope.sopUid ? ` instance ${scope.sopUid}` : ''}`,
    );
  if (caseIds.length === 0) throw missing();
  const [series, sop] = deidentified
    ? [await originalOf(ctx, caseIds[0]!, scope.seriesUid), await originalOf(ctx, caseIds[0]!, scope.sopUid)]
    : [scope.seriesUid ?? null, scope.sopUid ?? null];
  let q = ctx.db
    .selectFrom('files')
    .select(['id', 'case_id', 'object_key', 'bytes', 'metadata'])
    .where('case_id', 'in', caseIds)
    .where('format', 'in', DICOM_FORMATS)
    .where('status', '!=', 'failed')
    .where('duplicate_of', 'is', null)
    .where('sop_instance_uid', 'is not', null);
  if (series !== null) q = q.where(sql<string>`metadata->>'seriesInstanceUid'`, '=', series);
  if (sop !== null) q = q.where('sop_instance_uid', '=', sop);
  const rows = await q.orderBy('received_at').orderBy('id').execute();
  const files: Array<StudyFile & { caseId: string }> = [];
  for (const r of rows) {
    // The pixels of a label, an overview or burned-in text may show who the patient is: not sent abroad.
    if (deidentified && (await showsIdentity(ctx, r))) continue;
    files.push({
      id: r.id,
      caseId: r.case_id!,
      object_key: r.object_key,
      bytes: r.bytes,
      transferSyntaxUid: (r.metadata as { transferSyntaxUid?: string }).transferSyntaxUid ?? null,
    });
  }
  if (files.length === 0) throw missing();
  return { files, deidentified };
}

/** The multipart/related body: each part's headers, then its object streamed from storage. */
function multipartBody(
  ctx: Context,
  parts: Array<{ key: string; bytes: number; transferSyntaxUid: string | null }>,
  boundary: string,
): { body: Readable; length: number } {
  const heads = parts.map(
    (p) =>
      `--${boundary}\r\nContent-Type: application/dicom${p.transferSyntaxUid ? `; transfer-syntax=${p.transferSyntaxUid}` : ''}\r\nContent-Length: ${p.bytes}\r\n\r\n`,
  );
  const tail = `--${boundary}--\r\n`;
  const length =
    heads.reduce((n, h) => n + Buffer.byteLength(h), 0) +
    parts.reduce((n, p) => n + p.bytes + 2, 0) +
    Buffer.byteLength(tail);
  async function* chunks(): AsyncGenerator<Buffer | Uint8Array> {
    for (const [i, p] of parts.entries()) {
      yield Buffer.from(heads[i]!);
      yield* await ctx.storage.get(p.key);
      yield Buffer.from('\r\n');
    }
    yield Buffer.from(tail);
  }
  return { body: Readable.from(chunks(), { objectMode: false }), length };
}

async function retrieve(ctx: Context, who: Principal, scope: Scope, accept: string | undefined) {
  const allowed = acceptedTransferSyntaxes(accept);
  if (!allowed) {
    throw new AppError(
      'NOT_ACCEPTABLE',
      'instances are served as multipart/related; type="application/dicom" (Accept names neither that nor */*)',
    );
  }
  const { files, deidentified } = await filesInScope(ctx, who, scope);
  if (allowed !== '*') {
    const other = files.find((f) => !f.transferSyntaxUid || !allowed.has(f.transferSyntaxUid));
    if (other) {
      throw new AppError(
        'NOT_ACCEPTABLE',
        `an instance is stored in transfer syntax ${other.transferSyntaxUid ?? 'unknown'}, which Accept does not name; Teleread does not transcode (ask for transfer-syntax=*)`,
      );
    }
  }
  const parts = [];
  for (const f of files) {
    const object = deidentified
      ? await ensureDeidentifiedCopy(ctx, f.caseId, f)
      : { key: f.object_key, bytes: Number(f.bytes) };
    parts.push({ ...object, transferSyntaxUid: f.transferSyntaxUid });
  }
  const boundary = randomBytes(16).toString('hex');
  return { ...multipartBody(ctx, parts, boundary), boundary };
}

export function registerWadoRoutes(app: App, ctx: Context): void {
  const levels: Array<{ url: string; what: string; params: Record<string, typeof UID> }> = [
    { url: '/dicomweb/studies/:studyUid', what: 'every instance of a study', params: { studyUid: UID } },
    {
      url: '/dicomweb/studies/:studyUid/series/:seriesUid',
      what: 'every instance of a series',
      params: { studyUid: UID, seriesUid: UID },
    },
    {
      url: '/dicomweb/studies/:studyUid/series/:seriesUid/instances/:sopUid',
      what: 'one instance',
      params: { studyUid: UID, seriesUid: UID, sopUid: UID },
    },
  ];
  for (const level of levels) {
    app.get(
      level.url,
      {
        // Ops run the pipeline and never need a patient's images.
        onRequest: requireRole(ctx.db, 'clinic', 'reader', 'admin'),
        schema: {
          summary: `DICOMweb WADO-RS: ${level.what} as multipart/related; type="application/dicom"`,
          description:
            'Part 10 files in the transfer syntax they were stored in (transfer-syntax=* or none; another gives ' +
            "406). A reader licensed only outside the site's jurisdiction addresses the study by its replacement " +
            'UIDs and receives the de-identified copies.',
          params: Type.Object(level.params),
        },
      },
      async (request, reply) => {
        const scope = request.params as unknown as Scope;
        const out = await retrieve(ctx, principalOf(request), scope, request.headers.accept);
        return reply
          .header('content-type', `multipart/related; type="application/dicom"; boundary=${out.boundary}`)
          .header('content-length', String(out.length))
          .header('cache-control', 'private, no-store')
          .send(out.body);
      },
    );
  }
}
