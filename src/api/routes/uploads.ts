import { createHash, randomUUID } from 'node:crypto';
import path from 'node:path';
import { Transform, type TransformCallback } from 'node:stream';
import { Type } from 'typebox';
import type { Context } from '../../context.js';
import type { Priority } from '../../db/schema.js';
import { AppError } from '../../errors.js';
import { enqueueIngest } from '../../pipeline/queues.js';
import { principalOf, requireRole } from '../auth.js';
import type { App } from '../build-app.js';
import { ErrorBody, errorResponses } from '../schemas.js';

const UploadResponse = Type.Object({
  uploadId: Type.String(),
  files: Type.Array(
    Type.Object({ id: Type.String(), name: Type.String(), bytes: Type.Number(), sha256: Type.String() }),
  ),
});

/** Hashes and counts bytes as they stream past, and stops the stream once the request exceeds its budget. */
class HashingCounter extends Transform {
  readonly hash = createHash('sha256');
  bytes = 0;
  constructor(private readonly budget: { remaining: number }) {
    super();
  }
  override _transform(chunk: Buffer, _enc: BufferEncoding, done: TransformCallback): void {
    this.bytes += chunk.length;
    this.budget.remaining -= chunk.length;
    if (this.budget.remaining < 0) {
      done(new AppError('PAYLOAD_TOO_LARGE', 'upload is larger than MAX_UPLOAD_BYTES'));
      return;
    }
    this.hash.update(chunk);
    done(null, chunk);
  }
}

/** File names come from clinics: keep the base name, drop control characters, bound the length. */
function cleanName(raw: string | undefined, index: number): string {
  // biome-ignore lint/suspicious/noControlCharactersInRegex: stripping control characters is the point
  const base = path.posix.basename((raw ?? '').replaceAll('\\', '/')).replace(/[\u0000-\u001f\u007f]/g, '');
  return (base || `file-${index + 1}`).slice(0, 255);
}

export function registerUploadRoutes(app: App, ctx: Context): void {
  const { db, storage, queues, config } = ctx;

  app.post(
    '/v1/uploads',
    {
      preHandler: requireRole(db, 'clinic'),
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
      if (declared > config.maxUploadBytes) {
        throw refuse(
          new AppError('PAYLOAD_TOO_LARGE', `upload of ${declared} bytes exceeds MAX_UPLOAD_BYTES`),
        );
      }
      if (!request.isMultipart())
        throw refuse(new AppError('UNSUPPORTED_FORMAT', 'expected multipart/form-data'));

      const uploadId = randomUUID();
      const budget = { remaining: config.maxUploadBytes };
      const stored: Array<{
        id: string;
        name: string;
        key: string;
        bytes: number;
        sha256: string;
        type: string;
      }> = [];
      let priority: Priority = 'routine';
      let notes: string | null = null;
      try {
        for await (const part of request.parts()) {
          if (part.type === 'field') {
            const value = String(part.value ?? '');
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
          const id = randomUUID();
          const key = `sites/${who.siteId}/uploads/${uploadId}/${id}`;
          const counter = new HashingCounter(budget);
          // Errors on the multipart side (client gone, size limit) must reach the store so it drops the temp.
          part.file.on('error', (err) => counter.destroy(err));
          part.file.on('limit', () =>
            counter.destroy(new AppError('PAYLOAD_TOO_LARGE', 'file is larger than MAX_UPLOAD_BYTES')),
          );
          await storage.put(key, part.file.pipe(counter), { contentType: part.mimetype });
          stored.push({
            id,
            name: cleanName(part.filename, stored.length),
            key,
            bytes: counter.bytes,
            sha256: counter.hash.digest('hex'),
            type: part.mimetype,
          });
        }
        if (stored.length === 0) throw new AppError('VALIDATION_FAILED', 'no file in the upload');

        // Rows appear only once every byte is stored: a half-finished request leaves nothing for readers.
        await db.transaction().execute(async (trx) => {
          await trx
            .insertInto('uploads')
            .values({ id: uploadId, site_id: who.siteId!, priority, notes, request_id: request.id })
            .execute();
          await trx
            .insertInto('files')
            .values(
              stored.map((f) => ({
                id: f.id,
                upload_id: uploadId,
                site_id: who.siteId!,
                name: f.name,
                object_key: f.key,
                sha256: f.sha256,
                bytes: f.bytes,
                content_type: f.type,
              })),
            )
            .execute();
          await trx
            .insertInto('audit_events')
            .values({
              action: 'upload.received',
              actor_key_id: who.keyId,
              actor_role: who.role,
              request_id: request.id,
              detail: JSON.stringify({
                uploadId,
                files: stored.length,
                bytes: stored.reduce((n, f) => n + f.bytes, 0),
              }),
            })
            .execute();
        });
      } catch (err) {
        await Promise.allSettled(stored.map((f) => storage.delete(f.key)));
        throw refuse(err);
      }
      // Enqueued after the commit; if this process dies first, the sweep finds the rows and enqueues them.
      for (const f of stored) await enqueueIngest(queues, f.id, request.id);
      request.log.info({ uploadId, files: stored.length }, 'upload stored');
      return reply.status(202).send({
        uploadId,
        files: stored.map((f) => ({ id: f.id, name: f.name, bytes: f.bytes, sha256: f.sha256 })),
      });
    },
  );
}
