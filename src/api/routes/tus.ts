/**
 * Resumable uploads, tus 1.0 (https://tus.io/protocols/resumable-upload), at `/v1/tus`, for clinic keys.
 * tus-node-server speaks the protocol; `TusStore` (src/uploads/tus-store.ts) keeps the bytes and the sessions.
 *
 * Extensions: creation, creation-with-upload, termination, expiration, checksum (sha256 only).
 * Upload-Metadata keys: `filename` (or `name`), `filetype`, `priority` (stat|urgent|routine), `notes`,
 * `sha256` (hex, the whole file's; verified when the last byte arrives), `batch` (an id from
 * `POST /v1/uploads/batches`: the file becomes part of that batch, which enters the pipeline as one upload).
 * A finished upload answers with `Teleread-File-Id` and `Teleread-Upload-Id` headers.
 *
 * A clinic sees only its own site's uploads: another site's upload URL is 404, like any unknown id.
 */
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { Server } from '@tus/server';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { Registry } from 'prom-client';
import { Counter } from 'prom-client';
import type { Context } from '../../context.js';
import { AppError } from '../../errors.js';
import { tusStagingDir } from '../../uploads/publish-staged-file.js';
import { type TusRequestContext, TusStore, tusRequestContext } from '../../uploads/tus-store.js';
import { principalOf, requireRole } from '../auth.js';
import type { App } from '../build-app.js';

export const TUS_PATH = '/v1/tus';

/** `Upload-Checksum: sha256 <base64>`. Another algorithm is a 400, as the checksum extension requires. */
export function parseUploadChecksum(header: string | string[] | undefined): Buffer | undefined {
  if (header === undefined) return undefined;
  const value = Array.isArray(header) ? (header[0] ?? '') : header;
  const match = /^\s*([A-Za-z0-9-]+)\s+([A-Za-z0-9+/=]+)\s*$/.exec(value);
  if (!match)
    throw new AppError('VALIDATION_FAILED', 'Upload-Checksum must be "<algorithm> <base64 digest>"');
  if (match[1]!.toLowerCase() !== 'sha256') {
    throw new AppError('VALIDATION_FAILED', `checksum algorithm ${match[1]} is not supported; use sha256`);
  }
  const digest = Buffer.from(match[2]!, 'base64');
  if (digest.length !== 32)
    throw new AppError('VALIDATION_FAILED', 'Upload-Checksum sha256 digest must be 32 bytes');
  return digest;
}

export function registerTusRoutes(app: App, ctx: Context, registry?: Registry): void {
  const bytes = new Counter({
    name: 'teleread_tus_bytes_received_total',
    help: 'Bytes written to partial tus uploads (verified or not yet checked)',
    registers: registry ? [registry] : [],
  });
  const finished = new Counter({
    name: 'teleread_tus_uploads_finished_total',
    help: 'tus uploads that reached their last byte and were recorded',
    registers: registry ? [registry] : [],
  });
  const store = new TusStore(ctx, tusStagingDir(ctx.storage, ctx.config.tusStagingDir), {
    bytesReceived: (n) => bytes.inc(n),
    uploadFinished: () => finished.inc(),
  });
  const tus = new Server({
    path: TUS_PATH,
    datastore: store,
    maxSize: ctx.config.maxUploadBytes,
    // Relative, so the URL is right whatever proxy or port the client came through.
    relativeLocation: true,
    disableTerminationForFinishedUploads: true,
    allowedHeaders: ['Upload-Checksum', 'X-Request-Id'],
    exposedHeaders: ['Upload-Checksum', 'Tus-Checksum-Algorithm', 'Teleread-File-Id', 'Teleread-Upload-Id'],
    async onUploadFinish(_req, upload) {
      const session = await store.finish(upload.id);
      return { headers: { 'Teleread-File-Id': session.file_id, 'Teleread-Upload-Id': session.upload_id } };
    },
    onResponseError(_req, err) {
      if ('status_code' in err) return undefined;
      ctx.log.error({ err }, 'tus request failed');
      return { status_code: 500, body: 'internal error\n' };
    },
  });
  const clinicOnly = requireRole(ctx.db, 'clinic');

  const handle = async (request: FastifyRequest, reply: FastifyReply) => {
    let context: TusRequestContext | undefined;
    if (request.method !== 'OPTIONS') {
      await clinicOnly(request);
      const who = principalOf(request);
      context = {
        siteId: who.siteId!,
        keyId: who.keyId,
        requestId: request.id,
        checksum: parseUploadChecksum(request.headers['upload-checksum']),
      };
    }
    // From here tus-node-server writes the response itself, from the raw request and its unread body.
    void reply.hijack();
    const res = reply.raw;
    res.setHeader('x-request-id', request.id);
    if (request.method === 'OPTIONS') res.setHeader('Tus-Checksum-Algorithm', 'sha256');
    const run = () => tus.handle(request.raw, res);
    try {
      await (context ? tusRequestContext.run(context, run) : run());
    } catch (err) {
      request.log.error({ err }, 'tus handler failed');
      if (!res.headersSent) res.writeHead(500, { 'content-type': 'text/plain', connection: 'close' });
      res.end('internal error\n');
    }
  };

  // A scope of its own: bodies are left unread for tus-node-server, which streams them to the store.
  void app.register(async (scope: FastifyInstance) => {
    const tusScope = scope.withTypeProvider<TypeBoxTypeProvider>();
    tusScope.removeAllContentTypeParsers();
    tusScope.addContentTypeParser('*', (_request, _payload, done) => done(null));
    // Refused before tus saw it (no key, wrong role, bad checksum header): say which protocol this is (the app's
    // onError hook closes the connection rather than read a chunk only to drop it).
    tusScope.addHook('onSend', async (_request, reply) => {
      reply.header('Tus-Resumable', '1.0.0');
    });
    for (const url of [TUS_PATH, `${TUS_PATH}/:id`]) {
      tusScope.route({
        method: ['POST', 'HEAD', 'PATCH', 'DELETE', 'OPTIONS'],
        url,
        exposeHeadRoute: false,
        schema: { hide: true },
        handler: handle,
      });
    }
  });
}
