import { Type } from 'typebox';
import type { Context } from '../../context.js';
import type { WebhookDeliveryStatus } from '../../db/schema.js';
import {
  getWebhookDeliveries,
  getWebhookDeliveryWithAttempts,
  reopenWebhookDelivery,
  type WebhookDeliverySummary,
} from '../../db/webhook-queries.js';
import { AppError } from '../../errors.js';
import { enqueueWebhook } from '../../pipeline/queues.js';
import { principalOf, requireRole } from '../auth.js';
import type { App } from '../build-app.js';
import { ErrorBody, errorResponses, IdParams } from '../schemas.js';

const Status = Type.Union([Type.Literal('pending'), Type.Literal('delivered'), Type.Literal('failed')]);
const NullableString = Type.Union([Type.String(), Type.Null()]);
const NullableInt = Type.Union([Type.Integer(), Type.Null()]);

const Delivery = Type.Object({
  id: Type.String(),
  siteId: Type.String(),
  caseId: Type.String(),
  reportId: Type.String(),
  event: Type.String(),
  url: Type.String(),
  status: Status,
  attempts: Type.Integer(),
  round: Type.Integer(),
  lastStatusCode: NullableInt,
  lastError: NullableString,
  lastDurationMs: NullableInt,
  lastAttemptAt: NullableString,
  nextRetryAt: NullableString,
  createdAt: Type.String(),
  deliveredAt: NullableString,
  failedAt: NullableString,
});

const Attempt = Type.Object({
  attempt: Type.Integer(),
  round: Type.Integer(),
  url: Type.String(),
  startedAt: Type.String(),
  durationMs: Type.Integer(),
  statusCode: NullableInt,
  error: NullableString,
  outcome: Type.String(),
  nextRetryAt: NullableString,
});

const iso = (d: Date | null) => d?.toISOString() ?? null;

function toDelivery(d: WebhookDeliverySummary) {
  return {
    id: d.id,
    siteId: d.site_id,
    caseId: d.case_id,
    reportId: d.report_id,
    event: d.event,
    url: d.url,
    status: d.status,
    attempts: d.attempts,
    round: d.round,
    lastStatusCode: d.last_status_code,
    lastError: d.last_error,
    lastDurationMs: d.last_duration_ms,
    lastAttemptAt: iso(d.last_attempt_at),
    nextRetryAt: iso(d.next_retry_at),
    createdAt: d.created_at.toISOString(),
    deliveredAt: iso(d.delivered_at),
    failedAt: iso(d.failed_at),
  };
}

/** Report webhooks for ops: what was sent where, every attempt, and a resend for what failed. */
export function registerWebhookRoutes(app: App, ctx: Context): void {
  const opsOnly = requireRole(ctx.db, 'ops', 'admin');

  app.get(
    '/v1/ops/webhooks',
    {
      onRequest: opsOnly,
      schema: {
        summary: 'Report webhook deliveries, newest first (status=failed: the ones that gave up)',
        querystring: Type.Object({
          status: Type.Optional(Status),
          siteId: Type.Optional(Type.String({ maxLength: 63 })),
          caseId: Type.Optional(Type.String({ format: 'uuid' })),
          limit: Type.Integer({ minimum: 1, maximum: 500, default: 100 }),
        }),
        response: { 200: Type.Object({ deliveries: Type.Array(Delivery) }), ...errorResponses },
      },
    },
    async (request) => {
      const q = request.query as {
        status?: WebhookDeliveryStatus;
        siteId?: string;
        caseId?: string;
        limit: number;
      };
      const rows = await getWebhookDeliveries(ctx.db, q);
      return { deliveries: rows.map(toDelivery) };
    },
  );

  app.get(
    '/v1/ops/webhooks/:id',
    {
      onRequest: opsOnly,
      schema: {
        summary: 'One webhook delivery with every attempt (status code, error, duration, next retry)',
        params: IdParams,
        response: {
          200: Type.Object({ ...Delivery.properties, history: Type.Array(Attempt) }),
          ...errorResponses,
        },
      },
    },
    async (request) => {
      const { id } = request.params as { id: string };
      const found = await getWebhookDeliveryWithAttempts(ctx.db, id);
      if (!found) throw new AppError('NOT_FOUND', `no webhook delivery ${id}`);
      return {
        ...toDelivery(found.delivery),
        history: found.attempts.map((a) => ({
          attempt: a.attempt,
          round: a.round,
          url: a.url,
          startedAt: a.started_at.toISOString(),
          durationMs: a.duration_ms,
          statusCode: a.status_code,
          error: a.error,
          outcome: a.outcome,
          nextRetryAt: iso(a.next_retry_at),
        })),
      };
    },
  );

  app.post(
    '/v1/ops/webhooks/:id/resend',
    {
      onRequest: opsOnly,
      schema: {
        summary: 'Send a failed (or delivered) webhook again: a new round with a fresh retry budget',
        params: IdParams,
        response: {
          202: Type.Object({ id: Type.String(), status: Status, round: Type.Integer() }),
          ...errorResponses,
          409: ErrorBody,
        },
      },
    },
    async (request, reply) => {
      const who = principalOf(request);
      const { id } = request.params as { id: string };
      const ref = await reopenWebhookDelivery(ctx.db, id);
      await ctx.db
        .insertInto('audit_events')
        .values({
          action: 'webhook.resent',
          actor_key_id: who.keyId,
          actor_role: who.role,
          case_id: ref.caseId,
          request_id: request.id,
          detail: JSON.stringify({ deliveryId: id, round: ref.round }),
        })
        .execute();
      await enqueueWebhook(
        ctx.queues,
        { id: ref.id, round: ref.round },
        { attempts: ctx.config.webhookAttempts, backoffMs: ctx.config.webhookBackoffMs },
        request.id,
      );
      return reply.status(202).send({ id, status: 'pending' as const, round: ref.round });
    },
  );
}
