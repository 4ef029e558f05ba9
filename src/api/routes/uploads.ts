import type { MultipartFile, MultipartValue } from '@fastify/multipart';
import { Type } from 'typebox';
import type { Context } from '../../context.js';
import type { Priority } from '../../db/schema.js';
import { AppError } from '../../errors.js';
import { type IncomingFile, newUploadId, receiveFiles } from '../../pipeline/receive-files.js';
import { principalOf, requireRole } from '../auth.js';
import type { App } from '../build-app.js';
import { ErrorBody, errorResponses } from '../schemas.js';

const UploadResponse = Type.Object({
  uploadId: Type.String(),
  files: Type.Array(
    Type.Object({ id: Type.String(), name: Type.String(), bytes: Type.Number(), sha256: Type.String() }),
  ),
});

export function registerUploadRoutes(app: App, ctx: Context): void {
  app.post(
    '/v1/uploads',
    {
      preHandler: requireRole(ctx.db, 'clinic'),
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
