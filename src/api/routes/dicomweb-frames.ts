/**
 * DICOMweb WADO-RS frames (PS3.18 §10.4.1.1.4 pixel data): `…/instances/:sop/frames/:list` gives the frames a
 * comma-separated list names (1-based) as `multipart/related; type="application/octet-stream"`, one part per frame,
 * each part's Content-Type naming its transfer syntax. This is how DICOMweb viewers fetch pixels after reading the
 * metadata.
 *
 * - Native pixel data: each frame's bytes as the data set holds them (planar configuration and YBR_FULL_422
 *   packing kept, so they match the metadata), in little-endian order: Explicit VR Little Endian.
 * - Compressed pixel data: with `transfer-syntax=*`, or the stored syntax named, the frame's bitstream as stored
 *   (its fragments joined). With Explicit VR Little Endian asked for (or no syntax named: PS3.18's default) the
 *   frame is decoded, but only when decoding keeps what the metadata says of it: a JPEG whose YBR samples come
 *   back as RGB would be misread by a client going by the header, so that gets 406 (ask for `*`, or retrieve
 *   the instance, which is rewritten whole with its header).
 * - 1-bit frames are sent packed, eight pixels a byte from the lowest bit, each frame from a byte boundary.
 *
 * A frame is read by byte range from a large instance, as the renderer reads it. The pixels are the instance's own
 * for everyone: de-identification does not touch them, and a reader abroad never reaches an instance whose pixels
 * may show the patient (filesInScope leaves those out).
 */
import type { Readable } from 'node:stream';
import type { FastifyRequest } from 'fastify';
import { Type } from 'typebox';
import type { Context } from '../../context.js';
import { AppError } from '../../errors.js';
import type { DicomInstance } from '../../formats/dicom/parse-dicom.js';
import {
  describePixels,
  getEncapsulatedFrame,
  getFrame,
  nativeFrameLength,
} from '../../formats/dicom/pixel-data.js';
import { readInstanceForFrame } from '../../formats/dicom/read-frame-by-range.js';
import { describeTransferSyntax, EXPLICIT_VR_LITTLE_ENDIAN } from '../../formats/dicom/transfer-syntax.js';
import { littleEndianValue } from '../../formats/dicom/vr.js';
import type { ByteSource } from '../../formats/types.js';
import { decodeDicomFrame } from '../../imaging/render-dicom.js';
import { frameBytes, packBits } from '../../imaging/transcode-dicom.js';
import { objectByteSource } from '../../storage/object-byte-source.js';
import {
  type AcceptedTransferSyntaxes,
  acceptedTransferSyntaxes,
  allowsExplicitLittleEndian,
} from '../accept.js';
import { principalOf, requireRole } from '../auth.js';
import type { App } from '../build-app.js';
import { type AnswerPart, MultipartAnswer } from '../multipart-answer.js';
import { filesInScope, studyLevels } from './wado.js';

/** Most frames one request may list. */
const MAX_FRAMES = 1000;

/** What Accept allows: frames as stored (`*` or the stored syntax named) and/or as Explicit VR Little Endian. */
export function frameAccept(accept: string | undefined): AcceptedTransferSyntaxes {
  const accepted = acceptedTransferSyntaxes(accept, 'application/octet-stream');
  if (!accepted) {
    throw new AppError(
      'NOT_ACCEPTABLE',
      'frames are sent as multipart/related; type="application/octet-stream"',
    );
  }
  return accepted;
}

function parseFrameList(raw: string): number[] {
  const list = raw.split(',').map((f) => f.trim());
  if (list.length > MAX_FRAMES || !list.every((f) => /^[1-9][0-9]{0,8}$/.test(f))) {
    throw new AppError(
      'VALIDATION_FAILED',
      `frames must be a list of up to ${MAX_FRAMES} frame numbers from 1`,
    );
  }
  return list.map(Number);
}

/** A native frame's bytes as the data set holds them, little endian. */
function nativeFrame(instance: DicomInstance, index: number): Uint8Array {
  const d = describePixels(instance);
  if (d.bitsAllocated === 1 || (d.sampleFormat === 'integer' && ![8, 16, 32].includes(d.bitsAllocated))) {
    // Bit-packed samples do not start frames on byte boundaries: decoded, and packed again from bit 0.
    return d.bitsAllocated === 1
      ? packBits(getFrame(instance, index).pixels)
      : frameBytes(getFrame(instance, index));
  }
  const ds = instance.dataSet;
  const element = ds.elements.x7fe00010 ?? ds.elements.x7fe00008 ?? ds.elements.x7fe00009;
  if (!element) throw new AppError('CORRUPT_FILE', 'no pixel data', { retryable: false });
  const length = nativeFrameLength(d);
  const start = element.dataOffset + index * length;
  if (start + length > Math.min(ds.byteArray.length, element.dataOffset + element.length)) {
    throw new AppError('CORRUPT_FILE', `pixel data ends before frame ${index + 1}`, { retryable: false });
  }
  const bytes = ds.byteArray.subarray(start, start + length);
  return littleEndianValue(
    bytes,
    element.vr ?? 'OW',
    describeTransferSyntax(instance.transferSyntaxUid).littleEndian,
  );
}

/** One frame as Accept allows it, with the transfer syntax its part names. */
async function oneFrame(
  instance: DicomInstance,
  index: number,
  accept: AcceptedTransferSyntaxes,
): Promise<{ bytes: Uint8Array; transferSyntaxUid: string }> {
  const ts = describeTransferSyntax(instance.transferSyntaxUid);
  const d = describePixels(instance);
  if (!ts.encapsulated) {
    if (!allowsExplicitLittleEndian(accept)) {
      throw new AppError('NOT_ACCEPTABLE', `native frames are sent as ${EXPLICIT_VR_LITTLE_ENDIAN}`);
    }
    return { bytes: nativeFrame(instance, index), transferSyntaxUid: EXPLICIT_VR_LITTLE_ENDIAN };
  }
  if (accept.stored || accept.named.has(ts.uid)) {
    return { bytes: getEncapsulatedFrame(instance, index), transferSyntaxUid: ts.uid };
  }
  if (!accept.named.has(EXPLICIT_VR_LITTLE_ENDIAN)) {
    throw new AppError(
      'NOT_ACCEPTABLE',
      `frames are stored in ${ts.uid} and sent as stored (transfer-syntax=*) or decoded (${EXPLICIT_VR_LITTLE_ENDIAN})`,
    );
  }
  const frame = await decodeDicomFrame(instance, index);
  if (
    frame.photometricInterpretation !== d.photometricInterpretation ||
    (d.bitsAllocated !== 1 && frame.bitsAllocated !== d.bitsAllocated)
  ) {
    throw new AppError(
      'NOT_ACCEPTABLE',
      `frames stored as ${d.photometricInterpretation} ${ts.name} decode to ${frame.photometricInterpretation}, which the metadata does not say; ask for transfer-syntax=* to get them as stored, or retrieve the instance`,
    );
  }
  return {
    bytes: d.bitsAllocated === 1 ? packBits(frame.pixels) : frameBytes(frame),
    transferSyntaxUid: EXPLICIT_VR_LITTLE_ENDIAN,
  };
}

/**
 * The frames `frames` lists (1-based; 'all' for every one) as a multipart/related answer. The first frame is made
 * before the answer starts, so a 406 or a corrupt frame is the response's status; the rest are made as they are
 * sent. A whole read serves every frame; a large instance is read again by range for each.
 */
export async function framesAnswer(
  source: ByteSource,
  frames: number[] | 'all',
  accept: AcceptedTransferSyntaxes,
  sopUid: string,
): Promise<{ contentType: string; body: Readable }> {
  let read = await readInstanceForFrame(source, frames === 'all' ? 0 : frames[0]! - 1);
  const count = read.instance.numberOfFrames;
  const list = frames === 'all' ? Array.from({ length: count }, (_, i) => i + 1) : frames;
  const past = list.find((n) => n > count);
  if (past !== undefined) throw new AppError('NOT_FOUND', `instance ${sopUid} has ${count} frame(s)`);
  const answer = new MultipartAnswer('application/octet-stream');
  const part = (p: { bytes: Uint8Array; transferSyntaxUid: string }): AnswerPart => ({
    transferSyntaxUid: p.transferSyntaxUid,
    length: p.bytes.length,
    chunks: [p.bytes],
  });
  const first = await oneFrame(read.instance, list[0]! - 1, accept);
  async function* parts(): AsyncGenerator<AnswerPart> {
    yield part(first);
    for (const n of list.slice(1)) {
      if (!read.whole && read.frame !== n - 1) read = await readInstanceForFrame(source, n - 1);
      yield part(await oneFrame(read.instance, n - 1, accept));
    }
  }
  return { contentType: answer.contentType, body: answer.body(parts()) };
}

export function registerDicomwebFrameRoutes(app: App, ctx: Context): void {
  const instance = studyLevels()[2]!;
  app.get(
    `${instance.url}/frames/:frames`,
    {
      onRequest: requireRole(ctx.db, 'clinic', 'reader', 'admin'),
      schema: {
        summary: 'DICOMweb WADO-RS frames: the frames listed (1-based, comma-separated) as multipart/related',
        params: Type.Object({ ...instance.params, frames: Type.String({ maxLength: 10_000 }) }),
      },
    },
    async (request: FastifyRequest, reply) => {
      const { frames: rawFrames, ...scope } = request.params as {
        frames: string;
        studyUid: string;
        seriesUid: string;
        sopUid: string;
      };
      const accept = frameAccept(request.headers.accept);
      const frames = parseFrameList(rawFrames);
      const { files } = await filesInScope(ctx, principalOf(request), scope);
      const file = files[0]!;
      const source = objectByteSource(ctx.storage, file.object_key, Number(file.bytes));
      const { contentType, body } = await framesAnswer(source, frames, accept, scope.sopUid);
      return reply
        .header('content-type', contentType)
        .header('cache-control', 'private, no-store')
        .send(body);
    },
  );
}
