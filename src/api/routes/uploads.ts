import type { MultipartFile, MultipartValue } from '@fastify/multipart';
import { Type } from 'typebox';
import type { Context } from '../../context.js';
import type { Priority } from '../../db/schema.js';
import { AppError } from '../../errors.js';
import { type IncomingFile, newUploadId, receiveFiles } from '../../pipeline/receive-files.js';
import { createUploadBatch, sealUploadBatch } from '../../uploads/upload-batches.js';
import { parseNotes, parsePriority } from '../../uploads/upload-input.js';
import { principalOf, requireRole } from '../auth.js';
import type { App } from '../build-app.js';
import { ErrorBody, errorResponses, IdParams, Priority as PrioritySchema } from '../schemas.js';

const UploadResponse = Type.Object({
  uploadId: Type.String(),
  files: Type.Array(
    Type.Object({ id: Type.String(), name: Type.String(), bytes: Type.Number(), sha256: Type.String() }),
  ),
});

/** Most hashes one check may ask about: a large study folder, in one request of well under a megabyte. */
const MAX_CHECK = 10_000;

export function registerUploadRoutes(app: App, ctx: Context): void {
  const clinicOnly = requireRole(ctx.db, 'clinic');

  // Send once: the uploader hashes first and skips what the site already sent (any door, any status: a file
  // that failed would fail the same way again; ops can retry it). Backed by the files (site_id, sha256) index.
  app.post(
    '/v1/uploads/check',
    {
      onRequest: clinicOnly,
      schema: {
        summary: 'Which of these sha256 values this site has already sent',
        body: Type.Object({
          sha256: Type.Array(Type.String({ pattern: '^[0-9a-fA-F]{64}$' }), { maxItems: MAX_CHECK }),
        }),
        response: { 200: Type.Object({ known: Type.Array(Type.String()) }), ...errorResponses },
      },
    },
    async (request) => {
      const who = principalOf(request);
      const wanted = [...new Set(request.body.sha256.map((h) => h.toLowerCase()))];
      if (wanted.length === 0) return { known: [] };
      const rows = await ctx.db
        .selectFrom('files')
        .select('sha256')
        .distinct()
        .where('site_id', '=', who.siteId!)
        .where('sha256', 'in', wanted)
        .execute();
      return { known: rows.map((r) => r.sha256) };
    },
  );

  app.post(
    '/v1/uploads/batches',
    {
      onRequest: clinicOnly,
      schema: {
        summary: 'Open an upload batch: files sent one by one (tus, S3 multipart) that form one upload',
        body: Type.Union([
          Type.Object({
            priority: Type.Optional(PrioritySchema),
            notes: Type.Optional(Type.String({ maxLength: 4000 })),
          }),
          Type.Null(),
        ]),
        response: {
          201: Type.Object({ batchId: Type.String(), expiresAt: Type.String() }),
          ...errorResponses,
        },
      },
    },
    async (request, reply) => {
      const who = principalOf(request);
      const body = request.body ?? {};
      const batch = await createUploadBatch(
        ctx.db,
        { siteId: who.siteId!, keyId: who.keyId },
        { priority: parsePriority(body.priority), notes: parseNotes(body.notes), requestId: request.id },
      );
      const expiresAt = new Date(batch.last_activity_at.getTime() + ctx.config.uploadExpirySeconds * 1000);
      return reply.status(201).send({ batchId: batch.id, expiresAt: expiresAt.toISOString() });
    },
  );

  app.post(
    '/v1/uploads/batches/:id/complete',
    {
      onRequest: clinicOnly,
      schema: {
        summary: 'Seal an upload batch: its finished files enter the pipeline as one upload (idempotent)',
        params: IdParams,
        response: { 202: UploadResponse, ...errorResponses, 409: ErrorBody },
      },
    },
    async (request, reply) => {
      const who = principalOf(request);
      const sealed = await sealUploadBatch(ctx, request.params.id, who.siteId!);
      request.log.info({ uploadId: sealed.uploadId, files: sealed.files.length }, 'upload batch sealed');
      return reply.status(202).send({
        uploadId: sealed.uploadId,
        files: sealed.files.map((f) => ({ id: f.id, name: f.name, bytes: f.bytes, sha256: f.sha256 })),
      });
    },
  );

  app.post(
    '/v1/uploads',
    {
      onRequest: requireRole(ctx.db, 'clinic'),
      schema: {
        summary: 'Upload one or more files (multipart/form-data) with optional priority and notes',
        consumes: ['multipart/form-data'],
        response: { 202: UploadResponse, ...errorResponses, 413: ErrorBody, 415: ErrorBody },
      },
    },
    async (request, reply) => {
      const who = principalOf(request);
      // A refused upload leaves unread body bytes on the socket: close it rather than let the client reuse it.
      const refuse = (err: unknown) => {
        void reply.header('connection', 'close');
        return err;
      };
      const declared = Number(request.headers['content-length'] ?? 0);
      if (declared > ctx.config.maxUploadBytes) {
        throw refuse(
          new AppError('PAYLOAD_TOO_LARGE', `upload of ${declared} bytes exceeds MAX_UPLOAD_BYTES`),
        );
      }
      if (!request.isMultipart())
        throw refuse(new AppError('UNSUPPORTED_FORMAT', 'expected multipart/form-data'));

      let priority: Priority = 'routine';
      let notes: string | null = null;
      async function* files(): AsyncGenerator<IncomingFile> {
        for await (const part of request.parts()) {
          if (part.type === 'field') {
            const value = String((part as MultipartValue).value ?? '');
            if (part.fieldname === 'priority') {
              if (!['stat', 'urgent', 'routine'].includes(value)) {
                throw new AppError('VALIDATION_FAILED', 'priority must be stat, urgent or routine');
              }
              priority = value as Priority;
            } else if (part.fieldname === 'notes') {
              notes = value.slice(0, 4000);
            }
            continue;
          }
          const file = part as MultipartFile;
          file.file.on('limit', () =>
            file.file.destroy(new AppError('PAYLOAD_TOO_LARGE', 'file is larger than MAX_UPLOAD_BYTES')),
          );
          yield { name: file.filename, contentType: file.mimetype, body: file.file };
        }
      }

      const uploadId = newUploadId();
      const stored = await receiveFiles(
        ctx,
        {
          id: uploadId,
          siteId: who.siteId!,
          requestId: request.id,
          actor: { keyId: who.keyId, role: who.role },
          channel: 'upload',
        },
        files(),
        () => ({ priority, notes }),
      ).catch((err) => {
        throw refuse(err);
      });
      request.log.info({ uploadId, files: stored.length }, 'upload stored');
      return reply.status(202).send({
        uploadId,
        files: stored.map((f) => ({ id: f.id, name: f.name, bytes: f.bytes, sha256: f.sha256 })),
      });
    },
  );
}
