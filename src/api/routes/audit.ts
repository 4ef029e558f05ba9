import { Type } from 'typebox';
import type { Context } from '../../context.js';
import { getAuditEvents } from '../../db/audit-queries.js';
import { AppError } from '../../errors.js';
import { requireRole } from '../auth.js';
import type { App } from '../build-app.js';
import { errorResponses } from '../schemas.js';

const NullableString = Type.Union([Type.String(), Type.Null()]);

const AuditEvent = Type.Object({
  id: Type.String(),
  at: Type.String(),
  actor: Type.Object({
    keyId: NullableString,
    /** `system` for pipeline events (routing, escalation). */
    role: NullableString,
    siteId: NullableString,
    readerId: NullableString,
    label: NullableString,
  }),
  action: Type.String(),
  caseId: NullableString,
  fileId: NullableString,
  requestId: NullableString,
  ip: NullableString,
  detail: Type.Record(Type.String(), Type.Unknown()),
});

/** `GET /v1/ops/audit`: the audit trail, newest first, filtered by case, actor key, action and time. */
export function registerAuditRoutes(app: App, ctx: Context): void {
  app.get(
    '/v1/ops/audit',
    {
      onRequest: requireRole(ctx.db, 'ops', 'admin'),
      schema: {
        summary: 'Audit events, newest first, filtered by case, actor key, action and time (ops, admin)',
        description:
          '`from` is inclusive, `to` exclusive. Pages with an opaque `cursor` (the previous page’s `nextCursor`).',
        querystring: Type.Object({
          caseId: Type.Optional(Type.String({ format: 'uuid' })),
          actor: Type.Optional(Type.String({ format: 'uuid', description: 'the actor’s API key id' })),
          action: Type.Optional(Type.String({ maxLength: 200 })),
          from: Type.Optional(Type.String({ format: 'date-time' })),
          to: Type.Optional(Type.String({ format: 'date-time' })),
          cursor: Type.Optional(Type.String({ maxLength: 100 })),
          limit: Type.Integer({ minimum: 1, maximum: 1000, default: 100 }),
        }),
        response: {
          200: Type.Object({ events: Type.Array(AuditEvent), nextCursor: NullableString }),
          ...errorResponses,
        },
      },
    },
    async (request) => {
      const q = request.query as {
        caseId?: string;
        actor?: string;
        action?: string;
        from?: string;
        to?: string;
        cursor?: string;
        limit: number;
      };
      const from = q.from ? new Date(q.from) : undefined;
      const to = q.to ? new Date(q.to) : undefined;
      if (from && to && from.getTime() >= to.getTime()) {
        throw new AppError('VALIDATION_FAILED', '`from` must be before `to`');
      }
      const page = await getAuditEvents(ctx.db, {
        caseId: q.caseId,
        actorKeyId: q.actor,
        action: q.action,
        from,
        to,
        cursor: q.cursor,
        limit: q.limit,
      });
      return {
        events: page.events.map((e) => ({
          id: String(e.id),
          at: e.at.toISOString(),
          actor: {
            keyId: e.actor_key_id,
            role: e.actor_role,
            siteId: e.actor_site_id,
            readerId: e.actor_reader_id,
            label: e.actor_label,
          },
          action: e.action,
          caseId: e.case_id,
          fileId: e.file_id,
          requestId: e.request_id,
          ip: e.ip,
          detail: e.detail,
        })),
        nextCursor: page.nextCursor,
      };
    },
  );
}
