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
 * Transfer syntax (PS3.18 §8.7.3.5.2). An Accept that names none (or no Accept) gets Explicit VR Little Endian,
 * the default since DICOM 2016c: instances stored otherwise are transcoded as they are sent
 * (imaging/transcode-dicom.ts; compressed frames are decoded one at a time, so the copy is never held whole).
 * `transfer-syntax=*` gets every instance as it was stored, byte for byte; a named transfer syntax gets the
 * instances stored in it as stored and the rest transcoded when it is Explicit VR Little Endian. Anything else
 * (another syntax, video that cannot be decoded, an instance above TRANSCODE_MAX_BYTES) is 406 before a byte is
 * sent. A data set stored without a file meta is always rewritten, since a part must be a PS3.10 file. Each part's
 * Content-Type names its transfer syntax. A response with transcoded parts has no overall
 * Content-Length (chunked), since a part's length is known only when its first frame is decoded.
 * Search (QIDO-RS), metadata and bulk data resources are not served.
 */
import { sql } from 'kysely';
import { Type } from 'typebox';
import type { Context } from '../../context.js';
import { getCaseForPrincipal } from '../../db/case-queries.js';
import { getOriginalUid, getOriginalUidInCase } from '../../db/uid-remaps.js';
import { AppError } from '../../errors.js';
import { type DicomInstance, hasDicmPrefix } from '../../formats/dicom/parse-dicom.js';
import { WHOLE_READ_BYTES } from '../../formats/dicom/read-frame-by-range.js';
import { EXPLICIT_VR_LITTLE_ENDIAN } from '../../formats/dicom/transfer-syntax.js';
import {
  canTranscodeToExplicitLittleEndian,
  type TranscodedInstance,
  transcodeToExplicitLittleEndian,
} from '../../imaging/transcode-dicom.js';
import { readHeaderOf, showsIdentity } from '../../pipeline/stored-dicom-header.js';
import {
  type AcceptedTransferSyntaxes,
  acceptedTransferSyntaxes,
  allowsExplicitLittleEndian,
} from '../accept.js';
import { type Principal, principalOf, requireRole } from '../auth.js';
import type { App } from '../build-app.js';
import { ensureDeidentifiedCopy } from '../deidentified-copy.js';
import { type AnswerPart, MultipartAnswer } from '../multipart-answer.js';
import { needsDeidentifiedView } from '../redact.js';

export const DICOM_FORMATS = ['dicom', 'dicom-wsi', 'dicom-waveform'];
export const UID = Type.String({ pattern: '^[0-9]+(\\.[0-9]+)*$', maxLength: 64 });

/** The URL's UIDs (named as the STOW-RS route names the study, which shares its path). */
export interface Scope {
  studyUid: string;
  seriesUid?: string | undefined;
  sopUid?: string | undefined;
}

export interface StudyFile {
  id: string;
  caseId: string;
  object_key: string;
  bytes: string;
  /** The instance's own UIDs, never replacements. */
  sopInstanceUid: string;
  seriesInstanceUid: string | null;
  transferSyntaxUid: string | null;
  metadata: { transferSyntaxUid?: string; seriesInstanceUid?: string; part10?: unknown };
}

/** The largest instance transcoded on retrieve: it is read whole, so the bound is the size above which the rest of
 * Teleread reads instances by range rather than whole (read-frame-by-range.ts), and the API's memory stays
 * within its budget. Larger ones are asked for as stored (`transfer-syntax=*`). */
export const TRANSCODE_MAX_BYTES = WHOLE_READ_BYTES;

/** How one instance is sent, or why it cannot be: as stored, or transcoded to Explicit VR Little Endian. A data set
 * stored without a file meta (read as DCMTK reads such files) is never sent as stored: an application/dicom part
 * is a PS3.10 file, so it is rewritten, which `transfer-syntax=*` allows too. */
function howToSend(
  file: StudyFile & { part10: boolean },
  accepted: AcceptedTransferSyntaxes,
): 'stored' | 'transcode' {
  const stored = file.transferSyntaxUid;
  if (file.part10 && (accepted.stored || (stored !== null && accepted.named.has(stored)))) return 'stored';
  if (!allowsExplicitLittleEndian(accepted) || stored === null) {
    throw new AppError(
      'NOT_ACCEPTABLE',
      file.part10
        ? `an instance is stored in transfer syntax ${stored ?? 'unknown'}; Accept names ${[...accepted.named].join(', ')}, and Teleread sends instances as stored (transfer-syntax=*) or as Explicit VR Little Endian (${EXPLICIT_VR_LITTLE_ENDIAN})`
        : `an instance was stored without a file meta and is sent only as Explicit VR Little Endian (${EXPLICIT_VR_LITTLE_ENDIAN}), which Accept does not allow`,
    );
  }
  if (!canTranscodeToExplicitLittleEndian(stored)) {
    throw new AppError(
      'NOT_ACCEPTABLE',
      `an instance is stored in transfer syntax ${stored}, whose frames Teleread cannot decode to Explicit VR Little Endian; ask for transfer-syntax=* to receive it as stored`,
    );
  }
  if (Number(file.bytes) > TRANSCODE_MAX_BYTES) {
    throw new AppError(
      'NOT_ACCEPTABLE',
      `an instance of ${file.bytes} bytes is stored in transfer syntax ${stored}, and instances above ${TRANSCODE_MAX_BYTES} bytes are not transcoded; ask for transfer-syntax=* to receive it as stored`,
    );
  }
  return 'transcode';
}

/** Whether a stored object is a PS3.10 file, from its row, or from its first bytes for a row ingested before
 * rows kept it. */
async function isPart10(ctx: Context, key: string, metadata: { part10?: unknown }): Promise<boolean> {
  if (typeof metadata.part10 === 'boolean') return metadata.part10;
  return hasDicmPrefix(
    await ctx.storage.getBytes(key, { start: 0, end: 131 }).catch(() => new Uint8Array(0)),
  );
}

/** The cases the study UID names for this caller, and whether they see it de-identified. */
export async function casesOfStudy(
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
export async function originalOf(
  ctx: Context,
  caseId: string,
  uid: string | undefined,
): Promise<string | null> {
  if (uid === undefined) return null;
  return (await getOriginalUidInCase(ctx.db, caseId, uid)) ?? '';
}

/**
 * The DICOM instances of some cases, oldest first, optionally of one series (by original UID) or one instance:
 * none failed or duplicate, and for a reader abroad (`deidentified`) none whose pixels may show the patient.
 */
export async function dicomFilesOf(
  ctx: Context,
  caseIds: string[],
  deidentified: boolean,
  only: { series?: string | null; sop?: string | null } = {},
): Promise<StudyFile[]> {
  if (caseIds.length === 0) return [];
  let q = ctx.db
    .selectFrom('files')
    .select(['id', 'case_id', 'object_key', 'bytes', 'metadata', 'sop_instance_uid'])
    .where('case_id', 'in', caseIds)
    .where('format', 'in', DICOM_FORMATS)
    .where('status', '!=', 'failed')
    .where('duplicate_of', 'is', null)
    .where('sop_instance_uid', 'is not', null);
  if (only.series != null) q = q.where(sql<string>`metadata->>'seriesInstanceUid'`, '=', only.series);
  if (only.sop != null) q = q.where('sop_instance_uid', '=', only.sop);
  const rows = await q.orderBy('received_at').orderBy('id').execute();
  const files: StudyFile[] = [];
  for (const r of rows) {
    // The pixels of a label, an overview or burned-in text may show who the patient is: not sent abroad.
    if (deidentified && (await showsIdentity(ctx, r))) continue;
    const metadata = r.metadata as StudyFile['metadata'];
    files.push({
      id: r.id,
      caseId: r.case_id!,
      object_key: r.object_key,
      bytes: r.bytes,
      sopInstanceUid: r.sop_instance_uid!,
      seriesInstanceUid: metadata.seriesInstanceUid ?? null,
      transferSyntaxUid: metadata.transferSyntaxUid ?? null,
      metadata,
    });
  }
  return files;
}

/**
 * The instances the URL's UIDs name that the caller may have, oldest first: all of a study's, a series', or one.
 * `deidentified` when the caller is a reader abroad, who names them by their replacement UIDs. NOT_FOUND when
 * there are none, as for a study that does not exist.
 */
export async function filesInScope(
  ctx: Context,
  who: Principal,
  scope: Scope,
): Promise<{ files: StudyFile[]; deidentified: boolean }> {
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
  const files = await dicomFilesOf(ctx, caseIds, deidentified, { series, sop });
  if (files.length === 0) throw missing();
  return { files, deidentified };
}

interface Part {
  key: string;
  bytes: number;
  transferSyntaxUid: string | null;
  send: 'stored' | 'transcode';
  /** Made before the response starts (one instance asked for): its errors are the response's status. */
  copy?: TranscodedInstance | undefined;
}

/** The object a caller is served for an instance: its de-identified copy for a reader abroad, else the file. */
export async function servedObject(
  ctx: Context,
  file: StudyFile,
  deidentified: boolean,
): Promise<{ key: string; bytes: number }> {
  return deidentified
    ? ensureDeidentifiedCopy(ctx, file.caseId, file)
    : { key: file.object_key, bytes: Number(file.bytes) };
}

/** The header of the object servedObject gives. */
export async function readServedHeader(
  ctx: Context,
  file: StudyFile,
  deidentified: boolean,
): Promise<DicomInstance> {
  const object = await servedObject(ctx, file, deidentified);
  return readHeaderOf(ctx, { object_key: object.key, bytes: String(object.bytes) });
}

/** The multipart/related body: each part's headers, then its object streamed from storage or transcoded. The
 * length is known up front when no part is left to transcode as it is sent. */
function multipartBody(ctx: Context, parts: Part[]) {
  const answer = new MultipartAnswer('application/dicom');
  const sizes = parts.map((p) =>
    p.send === 'stored'
      ? answer.partSize(p.transferSyntaxUid, p.bytes)
      : p.copy && answer.partSize(EXPLICIT_VR_LITTLE_ENDIAN, p.copy.length),
  );
  const length = sizes.every((n) => n !== undefined)
    ? sizes.reduce((a: number, n) => a + n!, 0) + answer.tailSize
    : undefined;
  async function* made(): AsyncGenerator<AnswerPart> {
    for (const p of parts) {
      if (p.send === 'stored') {
        yield {
          transferSyntaxUid: p.transferSyntaxUid,
          length: p.bytes,
          chunks: await ctx.storage.get(p.key),
        };
      } else {
        const copy = p.copy ?? (await transcodeObject(ctx, p));
        yield { transferSyntaxUid: EXPLICIT_VR_LITTLE_ENDIAN, length: copy.length, chunks: copy.chunks };
      }
    }
  }
  return { contentType: answer.contentType, body: answer.body(made()), length };
}

function transcodeObject(ctx: Context, p: Part): Promise<TranscodedInstance> {
  return ctx.storage
    .getBytes(p.key)
    .then((bytes) => transcodeToExplicitLittleEndian(bytes, p.transferSyntaxUid!));
}

async function retrieve(ctx: Context, who: Principal, scope: Scope, accept: string | undefined) {
  const accepted = acceptedTransferSyntaxes(accept, 'application/dicom');
  if (!accepted) {
    throw new AppError(
      'NOT_ACCEPTABLE',
      'instances are served as multipart/related; type="application/dicom" (Accept names neither that nor */*)',
    );
  }
  const { files, deidentified } = await filesInScope(ctx, who, scope);
  // Every instance is checked before the response starts, so a 406 is a 406 and not a broken stream.
  const sends: Array<'stored' | 'transcode'> = [];
  for (const f of files) {
    // De-identified copies are written as PS3.10 files whatever the original was.
    const part10 = deidentified || (await isPart10(ctx, f.object_key, f.metadata));
    sends.push(howToSend({ ...f, part10 }, accepted));
  }
  const parts: Part[] = [];
  for (const [i, f] of files.entries()) {
    const object = await servedObject(ctx, f, deidentified);
    parts.push({ ...object, transferSyntaxUid: f.transferSyntaxUid, send: sends[i]! });
  }
  const only = parts.length === 1 ? parts[0]! : undefined;
  if (only?.send === 'transcode') only.copy = await transcodeObject(ctx, only);
  return multipartBody(ctx, parts);
}

/** DICOMweb's study, series and instance resources, each with `suffix` after it ('' for the resource itself). */
export function studyLevels(
  suffix = '',
): Array<{ url: string; what: string; params: Record<string, typeof UID> }> {
  const study = '/dicomweb/studies/:studyUid';
  return [
    { url: `${study}${suffix}`, what: 'a study', params: { studyUid: UID } },
    {
      url: `${study}/series/:seriesUid${suffix}`,
      what: 'a series',
      params: { studyUid: UID, seriesUid: UID },
    },
    {
      url: `${study}/series/:seriesUid/instances/:sopUid${suffix}`,
      what: 'one instance',
      params: { studyUid: UID, seriesUid: UID, sopUid: UID },
    },
  ];
}

export function registerWadoRoutes(app: App, ctx: Context): void {
  const levels = studyLevels();
  for (const level of levels) {
    app.get(
      level.url,
      {
        // Ops run the pipeline and never need a patient's images.
        onRequest: requireRole(ctx.db, 'clinic', 'reader', 'admin'),
        schema: {
          summary: `DICOMweb WADO-RS: the instances of ${level.what} as multipart/related; type="application/dicom"`,
          description:
            'Part 10 files: as stored with transfer-syntax=*, otherwise in Explicit VR Little Endian (the default; ' +
            'compressed instances are decompressed) unless the named transfer syntax is the one stored; anything ' +
            "else gives 406. A reader licensed only outside the site's jurisdiction addresses the study by its " +
            'replacement UIDs and receives the de-identified copies.',
          params: Type.Object(level.params),
        },
      },
      async (request, reply) => {
        const scope = request.params as unknown as Scope;
        const out = await retrieve(ctx, principalOf(request), scope, request.headers.accept);
        reply.header('content-type', out.contentType).header('cache-control', 'private, no-store');
        if (out.length !== undefined) reply.header('content-length', String(out.length));
        return reply.send(out.body);
      },
    );
  }
}
