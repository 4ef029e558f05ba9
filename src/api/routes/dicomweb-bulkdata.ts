/**
 * DICOMweb WADO-RS bulk data (PS3.18 §10.4.1.1.5): the values the metadata (dicomweb-metadata.ts) does not carry
 * inline are named there by a BulkDataURI, `…/instances/:sop/bulkdata/<path>`, and sent here as
 * `multipart/related; type="application/octet-stream"`, little endian. The path names the value from the top-level
 * data set: tags as eight hex digits, with the 0-based item index between a sequence's tag and a tag inside it
 * (`54000100/0/54001010`, the samples of a DICOM ECG's first waveform).
 *
 * - A binary value other than the top-level pixel data: one part, read from the header (the de-identified copy's,
 *   for a reader abroad, so values the profile removes are not found).
 * - Native pixel data: one part, the whole value. A little-endian instance's value is streamed from storage by
 *   range, however large; a big-endian or deflated one is read whole (up to 64 MiB) to turn it little endian.
 * - Encapsulated pixel data: one part per frame, with the frames resource's rules for Accept (as stored with
 *   `transfer-syntax=*`, else decoded).
 *
 * Pixels are the instance's own for everyone, as for frames: de-identification does not touch them, and a reader
 * abroad never reaches an instance whose pixels may show the patient (filesInScope leaves those out).
 */
import type { Readable } from 'node:stream';
import type { FastifyRequest } from 'fastify';
import { Type } from 'typebox';
import type { Context } from '../../context.js';
import { AppError } from '../../errors.js';
import { bulkDataValue, isBulkDataPath } from '../../formats/dicom/attributes.js';
import { parseDicom } from '../../formats/dicom/parse-dicom.js';
import { describeTransferSyntax, EXPLICIT_VR_LITTLE_ENDIAN } from '../../formats/dicom/transfer-syntax.js';
import { readHeaderOf } from '../../pipeline/stored-dicom-header.js';
import { objectByteSource } from '../../storage/object-byte-source.js';
import { allowsExplicitLittleEndian } from '../accept.js';
import { principalOf, requireRole } from '../auth.js';
import type { App } from '../build-app.js';
import { MultipartAnswer } from '../multipart-answer.js';
import { frameAccept, framesAnswer } from './dicomweb-frames.js';
import { filesInScope, readServedHeader, type StudyFile, studyLevels, TRANSCODE_MAX_BYTES } from './wado.js';

const PIXEL_DATA_PATHS = new Set(['7FE00010', '7FE00008', '7FE00009']);

/** The bulk data URI of one value of an instance, as the metadata gives it. */
export function bulkDataUri(base: string, uids: { study: string; series: string; sop: string }) {
  return (path: string) =>
    `${base}/dicomweb/studies/${uids.study}/series/${uids.series}/instances/${uids.sop}/bulkdata/${path}`;
}

/** One part holding `length` bytes that `chunks` yields. */
function singlePart(length: number, chunks: AsyncIterable<Uint8Array> | Uint8Array[]) {
  const answer = new MultipartAnswer('application/octet-stream');
  return {
    contentType: answer.contentType,
    length: answer.partSize(EXPLICIT_VR_LITTLE_ENDIAN, length) + answer.tailSize,
    body: answer.body([{ transferSyntaxUid: EXPLICIT_VR_LITTLE_ENDIAN, length, chunks }]),
  };
}

/** The whole native pixel data value, little endian: streamed by range when the file holds it so already. */
async function nativePixelData(ctx: Context, file: StudyFile, tag: string) {
  const instance = await readHeaderOf(ctx, file);
  const ts = describeTransferSyntax(instance.transferSyntaxUid);
  const element = instance.dataSet.elements[`x${tag.toLowerCase()}`];
  if (!element) throw new AppError('NOT_FOUND', `the instance has no (${tag.slice(0, 4)},${tag.slice(4)})`);
  const size = Number(file.bytes);
  if (ts.littleEndian && !ts.deflated && element.dataOffset + element.length <= size) {
    const range = { start: element.dataOffset, end: element.dataOffset + element.length - 1 };
    const stream = element.length > 0 ? await ctx.storage.get(file.object_key, range) : [];
    return singlePart(element.length, stream);
  }
  if (size > TRANSCODE_MAX_BYTES) {
    throw new AppError(
      'NOT_ACCEPTABLE',
      `the pixel data of an instance of ${size} bytes stored in ${ts.uid} is not rewritten little endian here; retrieve its frames`,
    );
  }
  const value = bulkDataValue(parseDicom(await ctx.storage.getBytes(file.object_key)), tag);
  if (!value)
    throw new AppError('CORRUPT_FILE', 'the pixel data ends before its length', { retryable: false });
  return singlePart(value.bytes.length, [value.bytes]);
}

export function registerDicomwebBulkDataRoutes(app: App, ctx: Context): void {
  const instance = studyLevels()[2]!;
  app.get(
    `${instance.url}/bulkdata/*`,
    {
      onRequest: requireRole(ctx.db, 'clinic', 'reader', 'admin'),
      schema: {
        summary:
          'DICOMweb WADO-RS bulk data: a value the metadata names by BulkDataURI, as multipart/related octet-stream',
        params: Type.Object({ ...instance.params, '*': Type.String({ maxLength: 400 }) }),
      },
    },
    async (request: FastifyRequest, reply) => {
      const { '*': path, ...scope } = request.params as {
        '*': string;
        studyUid: string;
        seriesUid: string;
        sopUid: string;
      };
      if (!isBulkDataPath(path)) {
        throw new AppError(
          'VALIDATION_FAILED',
          'a bulk data path is tags as eight hex digits, with item indices between them (00400275/0/00081150)',
        );
      }
      const accept = frameAccept(request.headers.accept);
      const { files, deidentified } = await filesInScope(ctx, principalOf(request), scope);
      const file = files[0]!;
      const tag = path.toUpperCase();
      let answer: { contentType: string; body: Readable; length?: number };
      if (PIXEL_DATA_PATHS.has(tag)) {
        const ts = describeTransferSyntax(file.transferSyntaxUid ?? EXPLICIT_VR_LITTLE_ENDIAN);
        if (ts.encapsulated) {
          const source = objectByteSource(ctx.storage, file.object_key, Number(file.bytes));
          answer = await framesAnswer(source, 'all', accept, scope.sopUid);
        } else {
          if (!allowsExplicitLittleEndian(accept)) {
            throw new AppError('NOT_ACCEPTABLE', `native pixel data is sent as ${EXPLICIT_VR_LITTLE_ENDIAN}`);
          }
          answer = await nativePixelData(ctx, file, tag);
        }
      } else {
        const value = bulkDataValue(await readServedHeader(ctx, file, deidentified), path);
        if (!value)
          throw new AppError('NOT_FOUND', `instance ${scope.sopUid} has no binary value at ${path}`);
        answer = singlePart(value.bytes.length, [value.bytes]);
      }
      if (answer.length !== undefined) void reply.header('content-length', answer.length);
      return reply
        .header('content-type', answer.contentType)
        .header('cache-control', 'private, no-store')
        .send(answer.body);
    },
  );
}
