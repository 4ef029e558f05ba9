/**
 * DICOMweb WADO-RS metadata (PS3.18 §10.4.1.1.2): the data sets of a study's, a series' or one instance's
 * instances in the DICOM JSON Model, as `application/dicom+json`, for viewers and workstations that read the
 * header before they fetch pixels. Pixel data and binary values over 1 KiB are named by a BulkDataURI
 * (dicomweb-bulkdata.ts) rather than carried; each instance carries Available Transfer Syntax UID (0008,3002), the syntax it is stored in.
 *
 * Who sees what follows WADO-RS (wado.ts): a reader abroad names the study by its replacement UIDs and reads the
 * de-identified copies' headers, so the metadata holds the pseudonym, shifted dates and replacement UIDs.
 */
import { Type } from 'typebox';
import type { Context } from '../../context.js';
import { AppError } from '../../errors.js';
import { type DicomJson, dicomJson } from '../../formats/dicom/attributes.js';
import { acceptsMediaType } from '../accept.js';
import { principalOf, requireRole } from '../auth.js';
import type { App } from '../build-app.js';
import { bulkDataUri } from './dicomweb-bulkdata.js';
import { filesInScope, readServedHeader, type Scope, type StudyFile, studyLevels } from './wado.js';

/** Instances whose headers are read at once. */
const PARALLEL = 8;

/** Whether Accept allows the DICOM JSON answers (application/dicom+json, or plain JSON). */
export function acceptsJson(accept: string | undefined): boolean {
  return acceptsMediaType(accept, 'application/dicom+json', 'application/json');
}

/** An instance's header in the DICOM JSON Model, read from its de-identified copy for a reader abroad. */
export async function headerJson(
  ctx: Context,
  file: StudyFile,
  deidentified: boolean,
  withBulkData = false,
): Promise<DicomJson> {
  const header = await readServedHeader(ctx, file, deidentified);
  // The URIs name the instance by the UIDs its header holds: a reader abroad's are the replacements.
  const { studyInstanceUid: study, seriesInstanceUid: series, sopInstanceUid: sop } = header;
  const named = withBulkData && study && series && sop;
  return dicomJson(
    header,
    named ? { bulkDataUri: bulkDataUri(ctx.config.publicUrl, { study, series, sop }) } : {},
  );
}

/** The attributes in tag order, as a data set has them. */
export function inTagOrder(json: DicomJson): DicomJson {
  return Object.fromEntries(Object.entries(json).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
}

/** Runs `task` over `items`, PARALLEL at a time, keeping their order. */
export async function mapInOrder<T, R>(items: T[], task: (item: T) => Promise<R>): Promise<R[]> {
  const out = new Array<R>(items.length);
  let next = 0;
  const lane = async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await task(items[i]!);
    }
  };
  await Promise.all(Array.from({ length: Math.min(PARALLEL, items.length) }, lane));
  return out;
}

export function registerDicomwebMetadataRoutes(app: App, ctx: Context): void {
  const levels = studyLevels('/metadata');
  for (const level of levels) {
    app.get(
      level.url,
      {
        // The headers name the patient: as for the files themselves, ops get none.
        onRequest: requireRole(ctx.db, 'clinic', 'reader', 'admin'),
        schema: {
          summary: `DICOMweb WADO-RS metadata of ${level.what}, as application/dicom+json`,
          params: Type.Object(level.params),
        },
      },
      async (request, reply) => {
        if (!acceptsJson(request.headers.accept)) {
          throw new AppError('NOT_ACCEPTABLE', 'metadata is sent as application/dicom+json');
        }
        const scope = request.params as unknown as Scope;
        const { files, deidentified } = await filesInScope(ctx, principalOf(request), scope);
        const body = await mapInOrder(files, async (f) => {
          const json = await headerJson(ctx, f, deidentified, true);
          if (f.transferSyntaxUid) json['00083002'] = { vr: 'UI', Value: [f.transferSyntaxUid] };
          return inTagOrder(json);
        });
        return reply
          .header('content-type', 'application/dicom+json')
          .header('cache-control', 'private, no-store')
          .send(JSON.stringify(body));
      },
    );
  }
}
