/**
 * Direct-to-storage uploads (S3 deployments): the clinic sends the parts straight to the bucket with presigned
 * URLs; the API signs, then verifies before the file enters the pipeline (see src/uploads/s3-multipart.ts).
 *
 *   POST   /v1/uploads/multipart               { name, bytes, sha256, contentType?, priority?, notes?, batchId?, partBytes? }
 *            → 201 { id, uploadId, s3UploadId, partBytes, parts: [{ partNumber, bytes, url }], expiresAt }
 *   PUT    <url of each part>                   (straight to S3; keep each response's ETag)
 *   POST   /v1/uploads/multipart/:id/complete  { parts: [{ partNumber, etag }] }
 *            → 202 { uploadId, files: [{ id, name, bytes, sha256 }] }   (idempotent)
 *   DELETE /v1/uploads/multipart/:id           → 204, the parts are dropped
 *
 * On the fs driver there is no bucket to send to: every endpoint answers 501 DIRECT_UPLOAD_UNAVAILABLE and
 * points to the resumable tus endpoint, which works on every driver.
 */
import type { FastifyReply } from 'fastify';
import { Type } from 'typebox';
import type { Context } from '../../context.js';
import {
  abortMultipartSession,
  completeMultipartSession,
  createMultipartSession,
  getMultipartSession,
  S3Multipart,
} from '../../uploads/s3-multipart.js';
import { parseBatchId, parseNotes, parsePriority } from '../../uploads/upload-input.js';
import { principalOf, requireRole } from '../auth.js';
import type { App } from '../build-app.js';
import { ErrorBody, errorResponses, Priority as PrioritySchema } from '../schemas.js';
import { TUS_PATH } from './tus.js';

const SessionParams = Type.Object({ id: Type.String({ format: 'uuid' }) });

const CreateBody = Type.Object({
  name: Type.String({ minLength: 1, maxLength: 1024 }),
  bytes: Type.Integer({ minimum: 1 }),
  sha256: Type.String({ pattern: '^[0-9a-fA-F]{64}$' }),
  contentType: Type.Optional(Type.String({ maxLength: 255 })),
  priority: Type.Optional(PrioritySchema),
  notes: Type.Optional(Type.String({ maxLength: 4000 })),
  batchId: Type.Optional(Type.String({ format: 'uuid' })),
  partBytes: Type.Optional(Type.Integer({ minimum: 1 })),
});

const Created = Type.Object({
  id: Type.String(),
  uploadId: Type.String(),
  s3UploadId: Type.String(),
  fileId: Type.String(),
  partBytes: Type.Number(),
  parts: Type.Array(Type.Object({ partNumber: Type.Number(), bytes: Type.Number(), url: Type.String() })),
  expiresAt: Type.String(),
});

const CompleteBody = Type.Object({
  parts: Type.Array(
    Type.Object({
      partNumber: Type.Integer({ minimum: 1 }),
      etag: Type.String({ minLength: 1, maxLength: 200 }),
    }),
    { maxItems: 10_000 },
  ),
});

const Completed = Type.Object({
  uploadId: Type.String(),
  /** False for a batch member: the file waits for its batch to be completed. */
  recorded: Type.Boolean(),
  files: Type.Array(
    Type.Object({ id: Type.String(), name: Type.String(), bytes: Type.Number(), sha256: Type.String() }),
  ),
});

export const DIRECT_UPLOAD_UNAVAILABLE = {
  code: 'DIRECT_UPLOAD_UNAVAILABLE',
  message:
    `direct-to-storage uploads need S3 storage, and this server keeps files on its filesystem; ` +
    `send the file with the resumable tus endpoint ${TUS_PATH} (tus 1.0) instead`,
};

export function registerMultipartUploadRoutes(app: App, ctx: Context): void {
  const s3 = ctx.storage.driver === 's3' ? new S3Multipart(ctx.config.storageUrl) : null;
  if (s3) app.addHook('onClose', async () => s3.close());
  const clinicOnly = requireRole(ctx.db, 'clinic');
  const responses = { ...errorResponses, 409: ErrorBody, 413: ErrorBody, 422: ErrorBody, 501: ErrorBody };

  const unavailable = (reply: FastifyReply) =>
    reply
      .status(501)
      .header('link', `<${TUS_PATH}>; rel="alternate"`)
      .send({ error: DIRECT_UPLOAD_UNAVAILABLE });

  app.post(
    '/v1/uploads/multipart',
    {
      onRequest: clinicOnly,
      schema: {
        summary: 'Start a direct-to-S3 multipart upload: presigned part URLs (S3 storage only)',
        body: CreateBody,
        response: { 201: Created, ...responses },
      },
    },
    async (request, reply) => {
      if (!s3) return unavailable(reply);
      const who = principalOf(request);
      const b = request.body;
      const created = await createMultipartSession(
        ctx,
        s3,
        { siteId: who.siteId!, keyId: who.keyId, requestId: request.id },
        {
          name: b.name,
          bytes: b.bytes,
          sha256: b.sha256.toLowerCase(),
          contentType: b.contentType ?? null,
          priority: parsePriority(b.priority),
          notes: parseNotes(b.notes),
          batchId: parseBatchId(b.batchId),
          partBytes: b.partBytes,
        },
      );
      return reply.status(201).send({ ...created, expiresAt: created.expiresAt.toISOString() });
    },
  );

  app.post(
    '/v1/uploads/multipart/:id/complete',
    {
      onRequest: clinicOnly,
      schema: {
        summary: 'Verify the parts and the declared sha256, then put the file into the pipeline (idempotent)',
        params: SessionParams,
        body: CompleteBody,
        response: { 202: Completed, ...responses },
      },
    },
    async (request, reply) => {
      if (!s3) return unavailable(reply);
      const who = principalOf(request);
      const session = await getMultipartSession(ctx, request.params.id, who.siteId!);
      const done = await completeMultipartSession(ctx, s3, session, request.body.parts);
      return reply.status(202).send({
        uploadId: done.upload_id,
        recorded: done.batch_id === null,
        files: [{ id: done.file_id, name: done.name, bytes: Number(done.bytes), sha256: done.sha256 ?? '' }],
      });
    },
  );

  app.delete(
    '/v1/uploads/multipart/:id',
    {
      onRequest: clinicOnly,
      schema: {
        summary: 'Abort a direct-to-S3 multipart upload',
        params: SessionParams,
        response: { 204: Type.Null(), ...responses },
      },
    },
    async (request, reply) => {
      if (!s3) return unavailable(reply);
      const who = principalOf(request);
      const session = await getMultipartSession(ctx, request.params.id, who.siteId!);
      await abortMultipartSession(ctx, s3, session);
      return reply.status(204).send(null);
    },
  );
}
