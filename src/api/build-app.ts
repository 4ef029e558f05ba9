import { randomUUID } from 'node:crypto';
import multipart from '@fastify/multipart';
import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import Fastify, {
  type FastifyBaseLogger,
  type FastifyError,
  type FastifyInstance,
  type RawReplyDefaultExpression,
  type RawRequestDefaultExpression,
  type RawServerDefault,
} from 'fastify';
import type { Context } from '../context.js';
import { createAuditWriter } from '../db/audit-queries.js';
import { AppError, isAppError } from '../errors.js';
import { registerAuditHook } from './audit-hook.js';
import { createAuthFailureLimiter, createPrincipalCache } from './auth.js';
import { registerAuditRoutes } from './routes/audit.js';
import { registerCaseRoutes } from './routes/cases.js';
import { registerClaimRoutes } from './routes/claims.js';
import { registerDicomwebRoutes } from './routes/dicomweb.js';
import { registerDicomwebBulkDataRoutes } from './routes/dicomweb-bulkdata.js';
import { registerDicomwebFrameRoutes } from './routes/dicomweb-frames.js';
import { registerDicomwebMetadataRoutes } from './routes/dicomweb-metadata.js';
import { registerDicomwebQidoRoutes } from './routes/dicomweb-qido.js';
import { registerDicomwebRenderedRoutes } from './routes/dicomweb-rendered.js';
import { registerFileRoutes } from './routes/files.js';
import { registerHealthRoutes } from './routes/health.js';
import { registerInstanceRoutes } from './routes/instances.js';
import { registerKeyRoutes } from './routes/keys.js';
import { createMetricsRegistry, registerMetricsRoutes } from './routes/metrics.js';
import { registerMultipartUploadRoutes } from './routes/multipart-uploads.js';
import { registerOpsRoutes } from './routes/ops.js';
import { registerReportRoutes } from './routes/reports.js';
import { registerRulesRoutes } from './routes/rules.js';
import { registerSlaRoutes } from './routes/sla.js';
import { registerSlideRoutes } from './routes/slides.js';
import { registerTusRoutes } from './routes/tus.js';
import { registerUploadRoutes } from './routes/uploads.js';
import { registerWadoRoutes } from './routes/wado.js';
import { registerWebhookRoutes } from './routes/webhooks.js';
import { registerWorklistRoutes } from './routes/worklist.js';

export type App = FastifyInstance<
  RawServerDefault,
  RawRequestDefaultExpression,
  RawReplyDefaultExpression,
  FastifyBaseLogger,
  TypeBoxTypeProvider
>;

const REQUEST_ID = /^[\w.:-]{1,100}$/;

/** One registered route: what the security matrix test enumerates. */
export interface RegisteredRoute {
  method: string;
  url: string;
}

declare module 'fastify' {
  interface FastifyInstance {
    /** Every route, as registered (collected by an onRoute hook); auto-generated HEAD routes excluded. */
    registeredRoutes: readonly RegisteredRoute[];
  }
}

/** Health checks stay reachable from an address that is locked out for failed authentications. */
const UNLIMITED_ROUTES = new Set(['/healthz', '/readyz']);

/** Maps errors from Fastify and its plugins onto our stable codes. */
function toAppError(err: FastifyError | Error): AppError {
  if (isAppError(err)) return err;
  const e = err as FastifyError;
  if (e.validation) return new AppError('VALIDATION_FAILED', e.message);
  switch (e.code) {
    case 'FST_REQ_FILE_TOO_LARGE':
    case 'FST_FILES_LIMIT':
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
      return new AppError('PAYLOAD_TOO_LARGE', e.message);
    case 'FST_INVALID_MULTIPART_CONTENT_TYPE':
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
      return new AppError('UNSUPPORTED_FORMAT', 'expected multipart/form-data');
    case 'FST_ERR_CTP_INVALID_JSON_BODY':
    case 'FST_ERR_CTP_EMPTY_JSON_BODY':
    case 'FST_PARTS_LIMIT':
    case 'FST_PROTO_VIOLATION':
      return new AppError('VALIDATION_FAILED', e.message);
  }
  if (typeof e.statusCode === 'number' && e.statusCode >= 400 && e.statusCode < 500) {
    return new AppError(e.statusCode === 404 ? 'NOT_FOUND' : 'VALIDATION_FAILED', e.message);
  }
  return new AppError('INTERNAL', 'internal error', { cause: err });
}

/** The Fastify app, given the process context once. Routes get `ctx` as an argument, never from a global. */
export async function buildApp(ctx: Context): Promise<App> {
  const app = Fastify({
    loggerInstance: ctx.log as FastifyBaseLogger,
    genReqId: (req) => {
      const given = req.headers['x-request-id'];
      return typeof given === 'string' && REQUEST_ID.test(given) ? given : randomUUID();
    },
    // Uploads stream for as long as the link needs; only idle connections are cut.
    requestTimeout: 0,
    connectionTimeout: 0,
    keepAliveTimeout: 65_000,
    bodyLimit: 1024 * 1024,
    ajv: { customOptions: { coerceTypes: 'array', removeAdditional: false } },
  }).withTypeProvider<TypeBoxTypeProvider>();

  app.setErrorHandler((err, request, reply) => {
    const appError = toAppError(err as FastifyError);
    if (appError.status >= 500) request.log.error({ err }, 'request failed');
    else request.log.info({ code: appError.code, reason: appError.message }, 'request refused');
    // 5xx messages are not shown to callers: they may carry internals.
    const message =
      appError.status >= 500 && appError.code === 'INTERNAL' ? 'internal error' : appError.message;
    void reply.status(appError.status).send({ error: { code: appError.code, message } });
  });
  app.setNotFoundHandler((request, reply) => {
    void reply
      .status(404)
      .send({ error: { code: 'NOT_FOUND', message: `no route ${request.method} ${request.url}` } });
  });
  app.addHook('onSend', async (request, reply) => {
    reply.header('x-request-id', request.id);
  });
  // Stopping waits for the responses in flight, not for keep-alive timeouts: Fastify closes the connections that
  // are idle when close() begins, and one whose response (a large download) ends later would stay open until
  // keepAliveTimeout. Each response that ends while closing lets go of the connections idle by then.
  let closing = false;
  app.addHook('preClose', async () => {
    closing = true;
  });
  app.addHook('onResponse', async () => {
    if (closing) setImmediate(() => app.server.closeIdleConnections());
  });

  // Hooks on the root before any plugin is registered, so every scope (tus, DICOMweb) inherits them.
  const routes: RegisteredRoute[] = [];
  app.decorate('registeredRoutes', routes);
  app.addHook('onRoute', (route) => {
    for (const method of [route.method].flat()) {
      // Fastify adds a HEAD twin right after every GET, with the same guards; only explicit routes are listed.
      if (method === 'HEAD' && routes.some((r) => r.method === 'GET' && r.url === route.url)) continue;
      routes.push({ method, url: route.url });
    }
  });

  const principals = createPrincipalCache(ctx.db);
  app.decorate('principalCache', principals);
  app.addHook('onClose', async () => principals?.close());

  const limiter = createAuthFailureLimiter(ctx.redis, ctx.config.queuePrefix, ctx.log);
  app.addHook('onRequest', async (request, reply) => {
    if (UNLIMITED_ROUTES.has(request.routeOptions.url ?? '')) return;
    const wait = limiter.retryAfter(request.ip);
    if (wait > 0) {
      void reply.header('retry-after', String(wait));
      throw new AppError(
        'RATE_LIMITED',
        `too many failed authentications from this address; retry in ${wait} s`,
      );
    }
  });
  // Counted before the response leaves, so a client's next attempt already sees the count.
  app.addHook('onSend', async (request, reply) => {
    if (reply.statusCode === 401) await limiter.recordFailure(request.ip);
  });
  // A request refused before its body was read (no key, wrong role, a bad header) would otherwise keep the client
  // sending bytes that Node reads only to drop, a whole multi-gigabyte upload included: close the connection.
  app.addHook('onError', async (request, reply) => {
    if (!request.raw.complete) void reply.header('connection', 'close');
  });

  const audit = createAuditWriter(ctx.db, ctx.log);
  registerAuditHook(app, audit);
  app.addHook('onClose', async () => audit.close());

  await app.register(swagger, {
    openapi: {
      info: {
        title: 'Teleread API',
        version: '0.1.0',
        description: 'Upload ECG, DICOM and whole-slide images; read routed cases from worklists.',
      },
      components: { securitySchemes: { bearer: { type: 'http', scheme: 'bearer' } } },
      security: [{ bearer: [] }],
    },
  });
  await app.register(swaggerUi, { routePrefix: '/docs' });
  await app.register(multipart, {
    limits: {
      fileSize: ctx.config.maxUploadBytes,
      files: 10_000,
      fields: 20,
      fieldSize: 64 * 1024,
      parts: 10_100,
    },
  });

  registerHealthRoutes(app, ctx);
  registerUploadRoutes(app, ctx);
  const metrics = createMetricsRegistry(ctx);
  registerTusRoutes(app, ctx, metrics);
  registerMultipartUploadRoutes(app, ctx);
  registerMetricsRoutes(app, ctx, metrics);
  registerFileRoutes(app, ctx);
  registerCaseRoutes(app, ctx);
  registerInstanceRoutes(app, ctx);
  registerSlideRoutes(app, ctx);
  registerWorklistRoutes(app, ctx);
  registerClaimRoutes(app, ctx);
  registerReportRoutes(app, ctx);
  registerRulesRoutes(app, ctx);
  registerOpsRoutes(app, ctx);
  registerWebhookRoutes(app, ctx);
  registerSlaRoutes(app, ctx);
  registerAuditRoutes(app, ctx);
  registerKeyRoutes(app, ctx);
  // PS3.18 8.3.3.1: a DICOMweb URI may carry its media types in an `accept` query parameter, for links and <img>
  // elements that cannot set the Accept header (a browser sends */* or image/*); it takes the header's place.
  app.addHook('onRequest', async (request) => {
    if (!request.url.startsWith('/dicomweb/')) return;
    const accept = (request.query as Record<string, unknown> | undefined)?.accept;
    const value = Array.isArray(accept) ? accept.join(', ') : accept;
    if (typeof value === 'string' && value.trim() !== '') request.headers.accept = value;
  });
  registerDicomwebRoutes(app, ctx);
  registerWadoRoutes(app, ctx);
  registerDicomwebRenderedRoutes(app, ctx);
  registerDicomwebMetadataRoutes(app, ctx);
  registerDicomwebFrameRoutes(app, ctx);
  registerDicomwebBulkDataRoutes(app, ctx);
  registerDicomwebQidoRoutes(app, ctx);
  return app;
}
