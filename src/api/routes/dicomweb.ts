/**
 * DICOMweb Studies Store Transaction (STOW-RS, PS3.18 §10.5): `POST /dicomweb/studies[/{StudyInstanceUID}]` with
 * `multipart/related; type="application/dicom"`. Each part streams to object storage through the same path as
 * HTTP uploads (receive-files.ts), is checked from its stored header, and the accepted instances become one
 * upload: the same files rows and ingest jobs as `POST /v1/uploads`.
 *
 * Teleread extension: `?priority=stat|urgent|routine` sets the upload's priority (default routine), as the
 * `priority` form field does for `/v1/uploads`.
 *
 * Conformance notes. Failure reasons are those of PS3.18 Table I.2-2, plus 0xC409 (the instance belongs to
 * another study than the one in the target URI), the code dcm4chee uses, since the standard defines none.
 * Warning reason 0xB007 marks an instance stored although its encoding is irregular (no file meta transfer
 * syntax, a data set not in its declared transfer syntax, pixel data cut short). Responses are JSON only; the
 * RetrieveURLs name the WADO-RS resources (wado.ts).
 */
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { Type } from 'typebox';
import type { Context } from '../../context.js';
import type { Priority } from '../../db/schema.js';
import { AppError, isAppError } from '../../errors.js';
import { type DicomInstance, parseDicom } from '../../formats/dicom/parse-dicom.js';
import { isStorableTransferSyntax } from '../../formats/dicom/transfer-syntax.js';
import { MAX_WHOLE_FILE_BYTES } from '../../formats/inspect.js';
import {
  type ByteBudget,
  cleanFileName,
  newUploadId,
  recordFiles,
  type StoredObject,
  storeIncoming,
  type UploadRecord,
} from '../../pipeline/receive-files.js';
import { principalOf, requireRole } from '../auth.js';
import type { App } from '../build-app.js';
import { type MultipartPart, parseMediaType, parseMultipartRelated } from '../multipart-related.js';
import { ErrorBody, errorResponses, Priority as PrioritySchema } from '../schemas.js';

/** Failure Reason (0008,1197) values, PS3.18 Table I.2-2 (and PS3.4 Table B.2-1). */
export const STOW_FAILURE = {
  outOfResources: 0xa700,
  dataSetDoesNotMatchSopClass: 0xa900,
  cannotUnderstand: 0xc000,
  transferSyntaxNotSupported: 0xc122,
  processingFailure: 0x0110,
  /** Not in the standard's table, which allows additional codes; the value dcm4chee uses. */
  studyInstanceUidMismatch: 0xc409,
} as const;

/** Warning Reason (0008,1196) values, PS3.18 Table I.2-3. */
export const STOW_WARNING = {
  dataSetDoesNotMatchSopClass: 0xb007,
} as const;

/** Bytes read from the start of a stored instance to find its UIDs; larger headers fall back to a whole read. */
const HEADER_PREFIX_BYTES = 1024 * 1024;

const UID = '^[0-9]+(\\.[0-9]+)*$';

export interface StoredInstance {
  sopClassUid: string;
  sopInstanceUid: string;
  studyInstanceUid: string;
  seriesInstanceUid: string;
  warningReason?: number | undefined;
}

export interface FailedInstance {
  failureReason: number;
  /** For the log: what is wrong (tags, offsets), never patient data. */
  message: string;
  sopClassUid?: string | undefined;
  sopInstanceUid?: string | undefined;
}

/**
 * Checks the request's Content-Type and returns its boundary. 415 for anything but multipart/related of
 * application/dicom (a missing `type` parameter is taken as application/dicom); 400 without a boundary.
 */
export function stowBoundary(contentType: string | undefined): string {
  const media = parseMediaType(contentType);
  if (media?.type !== 'multipart/related') {
    throw new AppError(
      'UNSUPPORTED_FORMAT',
      `STOW-RS takes multipart/related; type="application/dicom", not ${contentType ?? 'a body without Content-Type'}`,
    );
  }
  const type = media.parameters.type?.toLowerCase();
  if (type !== undefined && type !== 'application/dicom') {
    const metadata = type === 'application/dicom+json' || type === 'application/dicom+xml';
    throw new AppError(
      'UNSUPPORTED_FORMAT',
      metadata
        ? `STOW-RS with ${type} metadata and bulk data is not supported yet; send Part 10 instances as type="application/dicom"`
        : `STOW-RS parts of type ${type} are not supported; send type="application/dicom"`,
    );
  }
  const boundary = media.parameters.boundary;
  if (!boundary) throw new AppError('VALIDATION_FAILED', 'multipart/related without a boundary parameter');
  return boundary;
}

/** Parses a stored instance from its first bytes, reading it whole only when the header does not fit. */
async function readStoredInstance(
  ctx: Context,
  object: StoredObject,
): Promise<{ instance: DicomInstance; whole: boolean }> {
  const prefixBytes = Math.min(object.bytes, HEADER_PREFIX_BYTES);
  const whole = prefixBytes === object.bytes;
  const prefix = await ctx.storage.getBytes(object.key, { start: 0, end: prefixBytes - 1 });
  try {
    const instance = parseDicom(prefix);
    if (whole || hasIdentity(instance)) return { instance, whole };
  } catch (err) {
    if (whole || !isAppError(err) || err.code === 'UNSUPPORTED_FORMAT') throw err;
  }
  // A header beyond the prefix (large private blocks, a deflated data set): the pipeline reads it whole too.
  if (object.bytes > MAX_WHOLE_FILE_BYTES) {
    throw new AppError(
      'UNSUPPORTED_FORMAT',
      `the instance header is not within its first ${prefixBytes} bytes`,
      {
        retryable: false,
      },
    );
  }
  return { instance: parseDicom(await ctx.storage.getBytes(object.key)), whole: true };
}

function hasIdentity(i: DicomInstance): boolean {
  return Boolean(i.sopClassUid && i.sopInstanceUid && i.studyInstanceUid && i.seriesInstanceUid);
}

/** Decides whether a stored part is an instance Teleread keeps, from its parsed header. */
export function checkInstance(
  instance: DicomInstance,
  targetStudyUid: string | undefined,
  whole: boolean,
): StoredInstance | FailedInstance {
  const ids = { sopClassUid: instance.sopClassUid, sopInstanceUid: instance.sopInstanceUid };
  const missing = [
    ['SOPClassUID (0008,0016)', instance.sopClassUid],
    ['SOPInstanceUID (0008,0018)', instance.sopInstanceUid],
    ['StudyInstanceUID (0020,000D)', instance.studyInstanceUid],
    ['SeriesInstanceUID (0020,000E)', instance.seriesInstanceUid],
  ]
    .filter(([, value]) => !value)
    .map(([name]) => name);
  if (missing.length > 0) {
    return {
      ...ids,
      failureReason: STOW_FAILURE.dataSetDoesNotMatchSopClass,
      message: `the data set has no ${missing.join(', ')}`,
    };
  }
  if (!isStorableTransferSyntax(instance.transferSyntaxUid)) {
    return {
      ...ids,
      failureReason: STOW_FAILURE.transferSyntaxNotSupported,
      message: `transfer syntax ${instance.transferSyntaxUid} is not supported`,
    };
  }
  if (targetStudyUid !== undefined && instance.studyInstanceUid !== targetStudyUid) {
    return {
      ...ids,
      failureReason: STOW_FAILURE.studyInstanceUidMismatch,
      message: `the instance belongs to study ${instance.studyInstanceUid}, not to the target study ${targetStudyUid}`,
    };
  }
  // Warnings from a prefix read are about where the read stopped, not about the instance.
  const irregular = whole && (instance.warnings.length > 0 || instance.pixelDataTruncated);
  return {
    sopClassUid: instance.sopClassUid!,
    sopInstanceUid: instance.sopInstanceUid!,
    studyInstanceUid: instance.studyInstanceUid!,
    seriesInstanceUid: instance.seriesInstanceUid!,
    ...(irregular ? { warningReason: STOW_WARNING.dataSetDoesNotMatchSopClass } : {}),
  };
}

type DicomJsonAttribute = { vr: string; Value?: unknown[] };
type DicomJsonDataSet = Record<string, DicomJsonAttribute>;

function attribute(vr: string, value: string | number | undefined): DicomJsonAttribute {
  // An attribute without Value is the DICOM JSON form of an empty value (a UID that could not be read).
  return value === undefined || value === '' ? { vr } : { vr, Value: [value] };
}

/** The Store Instances Response Module (PS3.18 Annex I) in application/dicom+json. */
export function storeInstancesResponse(input: {
  retrieveUrl?: string | undefined;
  referenced: Array<StoredInstance & { retrieveUrl: string }>;
  failed: FailedInstance[];
}): DicomJsonDataSet {
  const out: DicomJsonDataSet = {};
  if (input.retrieveUrl) out['00081190'] = attribute('UR', input.retrieveUrl);
  if (input.failed.length > 0) {
    out['00081198'] = {
      vr: 'SQ',
      Value: input.failed.map((f) => ({
        '00081150': attribute('UI', f.sopClassUid),
        '00081155': attribute('UI', f.sopInstanceUid),
        '00081197': attribute('US', f.failureReason),
      })),
    };
  }
  if (input.referenced.length > 0) {
    out['00081199'] = {
      vr: 'SQ',
      Value: input.referenced.map((r) => ({
        '00081150': attribute('UI', r.sopClassUid),
        '00081155': attribute('UI', r.sopInstanceUid),
        '00081190': attribute('UR', r.retrieveUrl),
        ...(r.warningReason === undefined ? {} : { '00081196': attribute('US', r.warningReason) }),
      })),
    };
  }
  return out;
}

type Outcome = { stored: StoredObject; instance: StoredInstance } | { failed: FailedInstance };

function failed(failureReason: number, message: string, ids: Partial<FailedInstance> = {}): Outcome {
  return { failed: { ...ids, failureReason, message } };
}

/**
 * Streams one part to storage and checks it. A part Teleread does not keep is deleted and reported; errors of
 * the request itself (size limit, broken framing, a client gone) are thrown, and the caller drops everything.
 */
async function storePart(
  ctx: Context,
  upload: Pick<UploadRecord, 'id' | 'siteId'>,
  part: MultipartPart,
  budget: ByteBudget,
  targetStudyUid: string | undefined,
): Promise<Outcome> {
  const declared = part.headers['content-type'];
  const media = parseMediaType(declared);
  if (declared !== undefined && media?.type !== 'application/dicom') {
    // Left unread: the parser skips the rest of the part.
    return failed(
      STOW_FAILURE.cannotUnderstand,
      `part ${part.index + 1} is ${declared}, not application/dicom`,
    );
  }
  let object: StoredObject;
  try {
    object = await storeIncoming(
      ctx,
      upload,
      { name: part.headers['content-location'], contentType: 'application/dicom', body: part.body },
      budget,
      `instance-${part.index + 1}.dcm`,
    );
  } catch (err) {
    if (isAppError(err) && err.code === 'STORAGE_UNAVAILABLE') {
      return failed(
        STOW_FAILURE.outOfResources,
        `part ${part.index + 1} could not be stored: ${err.message}`,
      );
    }
    throw err;
  }

  let outcome: Outcome;
  if (object.bytes === 0) {
    outcome = failed(STOW_FAILURE.cannotUnderstand, `part ${part.index + 1} is empty`);
  } else {
    try {
      const { instance, whole } = await readStoredInstance(ctx, object);
      const checked = checkInstance(instance, targetStudyUid, whole);
      outcome = 'failureReason' in checked ? { failed: checked } : { stored: object, instance: checked };
    } catch (err) {
      const message = `part ${part.index + 1}: ${err instanceof Error ? err.message : String(err)}`;
      if (!isAppError(err)) outcome = failed(STOW_FAILURE.processingFailure, message);
      else if (err.code === 'UNSUPPORTED_FORMAT' || err.code === 'CORRUPT_FILE') {
        outcome = failed(STOW_FAILURE.cannotUnderstand, message);
      } else if (err.code === 'STORAGE_UNAVAILABLE') outcome = failed(STOW_FAILURE.outOfResources, message);
      else outcome = failed(STOW_FAILURE.processingFailure, message);
    }
  }
  if ('failed' in outcome) {
    await ctx.storage.delete(object.key).catch((err: unknown) => {
      ctx.log.warn({ err, key: object.key }, 'stow-rs: could not delete a refused part');
    });
    return outcome;
  }
  // The row's name is the instance's, whatever the client called the part.
  return {
    stored: { ...object, name: cleanFileName(`${outcome.instance.sopInstanceUid}.dcm`, object.name) },
    instance: outcome.instance,
  };
}

const DicomJson = Type.Record(Type.String(), Type.Unknown(), {
  description:
    'Store Instances Response Module (PS3.18 Annex I) as application/dicom+json: RetrieveURL (00081190), ' +
    'ReferencedSOPSequence (00081199), FailedSOPSequence (00081198) with FailureReason (00081197)',
});

const StowQuery = Type.Object({
  priority: Type.Optional(
    Type.Unsafe<Priority>({
      ...PrioritySchema,
      description: 'Teleread extension: the priority of the cases these instances join (default routine)',
    }),
  ),
});

const StudyParams = Type.Object({ studyUid: Type.String({ pattern: UID, maxLength: 64 }) });

export function registerDicomwebRoutes(app: App, ctx: Context): void {
  // A scope of its own, so that its content-type handling does not reach the other routes.
  void app.register(async (scope: FastifyInstance) => {
    const dicomweb = scope.withTypeProvider<TypeBoxTypeProvider>();
    // Bodies are left unread for the handler, which streams them part by part; Content-Type is checked there,
    // after authentication, so that the 415 says what STOW-RS takes.
    dicomweb.removeAllContentTypeParsers();
    dicomweb.addContentTypeParser('*', (_request, _payload, done) => done(null));

    const schema = {
      consumes: ['multipart/related'],
      querystring: StowQuery,
      response: {
        200: DicomJson,
        202: DicomJson,
        409: DicomJson,
        ...errorResponses,
        413: ErrorBody,
        415: ErrorBody,
      },
    };
    const clinicOnly = requireRole(ctx.db, 'clinic');

    dicomweb.post(
      '/dicomweb/studies',
      {
        onRequest: clinicOnly,
        schema: { ...schema, summary: 'DICOMweb STOW-RS: store instances (PS3.18 §10.5)' },
      },
      async (request, reply) => {
        const { status, body } = await handleStore(ctx, request, request.query.priority, undefined);
        return reply.status(status).type('application/dicom+json').send(body);
      },
    );
    dicomweb.post(
      '/dicomweb/studies/:studyUid',
      {
        onRequest: clinicOnly,
        schema: {
          ...schema,
          params: StudyParams,
          summary: 'DICOMweb STOW-RS: store instances of one study (PS3.18 §10.5)',
        },
      },
      async (request, reply) => {
        const { priority } = request.query;
        const { status, body } = await handleStore(ctx, request, priority, request.params.studyUid);
        return reply.status(status).type('application/dicom+json').send(body);
      },
    );
  });
}

/** Streams, checks and records the instances of one request; throws for a request refused as a whole. */
async function handleStore(
  ctx: Context,
  request: FastifyRequest,
  priority: Priority | undefined,
  targetStudyUid: string | undefined,
): Promise<{ status: 200 | 202 | 409; body: DicomJsonDataSet }> {
  const who = principalOf(request);
  const declared = Number(request.headers['content-length'] ?? 0);
  if (declared > ctx.config.maxUploadBytes) {
    throw new AppError('PAYLOAD_TOO_LARGE', `request of ${declared} bytes exceeds MAX_UPLOAD_BYTES`);
  }
  const boundary = stowBoundary(request.headers['content-type']);

  const upload: UploadRecord = {
    id: newUploadId(),
    siteId: who.siteId!,
    priority: priority ?? 'routine',
    notes: null,
    requestId: request.id,
    actor: { keyId: who.keyId, role: who.role },
    channel: 'stow-rs',
  };
  const budget: ByteBudget = { remaining: ctx.config.maxUploadBytes };
  const accepted: Array<{ stored: StoredObject; instance: StoredInstance }> = [];
  const refused: FailedInstance[] = [];
  try {
    for await (const part of parseMultipartRelated(request.raw, { boundary })) {
      const outcome = await storePart(ctx, upload, part, budget, targetStudyUid);
      if ('failed' in outcome) refused.push(outcome.failed);
      else accepted.push(outcome);
    }
    if (accepted.length + refused.length === 0) {
      throw new AppError('VALIDATION_FAILED', 'the request holds no instance');
    }
    if (accepted.length > 0) {
      await recordFiles(
        ctx,
        upload,
        accepted.map((a) => a.stored),
        { createUpload: true },
      ).catch(async (err: unknown) => {
        // Once the rows are committed the instances are stored: a failed enqueue is repaired by the sweep, and
        // deleting the objects now would leave rows without their bytes.
        const committed = await ctx.db
          .selectFrom('uploads')
          .select('id')
          .where('id', '=', upload.id)
          .executeTakeFirst()
          .catch(() => undefined);
        if (!committed) throw err;
        request.log.warn({ err, uploadId: upload.id }, 'stow-rs: instances recorded but not enqueued');
      });
    }
  } catch (err) {
    await Promise.allSettled(accepted.map((a) => ctx.storage.delete(a.stored.key)));
    throw err;
  }

  const base = `${ctx.config.publicUrl}/dicomweb`;
  const studyUrl = (study: string) => `${base}/studies/${study}`;
  const studies = new Set(accepted.map((a) => a.instance.studyInstanceUid));
  const [onlyStudy] = studies;
  const body = storeInstancesResponse({
    retrieveUrl: accepted.length > 0 && studies.size === 1 && onlyStudy ? studyUrl(onlyStudy) : undefined,
    referenced: accepted.map(({ instance: i }) => ({
      ...i,
      retrieveUrl: `${studyUrl(i.studyInstanceUid)}/series/${i.seriesInstanceUid}/instances/${i.sopInstanceUid}`,
    })),
    failed: refused,
  });
  const warned = accepted.some((a) => a.instance.warningReason !== undefined);
  const status = accepted.length === 0 ? 409 : refused.length > 0 || warned ? 202 : 200;
  request.log.info(
    {
      uploadId: accepted.length > 0 ? upload.id : null,
      stored: accepted.length,
      failed: refused.map((f) => ({ reason: f.failureReason, message: f.message })),
    },
    'stow-rs request stored',
  );
  return { status, body };
}
