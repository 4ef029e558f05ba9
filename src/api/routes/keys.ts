import { isIP } from 'node:net';
import type { FastifyRequest } from 'fastify';
import { Type } from 'typebox';
import type { Context } from '../../context.js';
import type { Role } from '../../db/schema.js';
import { AppError } from '../../errors.js';
import { createApiKey, listApiKeys, parseDuration, principalOf, requireRole, revokeApiKey } from '../auth.js';
import type { App } from '../build-app.js';
import { errorResponses } from '../schemas.js';

const NullableString = Type.Union([Type.String(), Type.Null()]);

const KeySummary = Type.Object({
  id: Type.String(),
  prefix: Type.String(),
  role: Type.String(),
  siteId: NullableString,
  readerId: NullableString,
  label: NullableString,
  createdAt: Type.String(),
  expiresAt: NullableString,
  revokedAt: NullableString,
  /** active, expired or revoked, as of this response. */
  state: Type.String(),
});

/**
 * API keys, for admins: list (never the key or its hash), create (the key is shown once), revoke (effective on
 * the next request to this process, which drops its cached principals on any write to api_keys; within
 * PRINCIPAL_CACHE_MS on other API processes). The same operations exist as `bin/teleread keys …`.
 */
export function registerKeyRoutes(app: App, ctx: Context): void {
  const { db } = ctx;
  const adminOnly = requireRole(db, 'admin');
  const record = (request: FastifyRequest, action: string, detail: Record<string, unknown>) => {
    const who = principalOf(request);
    return db
      .insertInto('audit_events')
      .values({
        action,
        actor_key_id: who.keyId,
        actor_role: who.role,
        request_id: request.id,
        ip: isIP(request.ip) ? request.ip : null,
        detail: JSON.stringify(detail),
      })
      .execute();
  };

  app.get(
    '/v1/keys',
    {
      onRequest: adminOnly,
      schema: {
        summary: 'Every API key, newest first, without its secret (admin)',
        response: { 200: Type.Object({ keys: Type.Array(KeySummary) }), ...errorResponses },
      },
    },
    async () => {
      const now = Date.now();
      const rows = await listApiKeys(db);
      return {
        keys: rows.map((k) => ({
          id: k.id,
          prefix: k.key_prefix,
          role: k.role,
          siteId: k.site_id,
          readerId: k.reader_id,
          label: k.label,
          createdAt: k.created_at.toISOString(),
          expiresAt: k.expires_at?.toISOString() ?? null,
          revokedAt: k.revoked_at?.toISOString() ?? null,
          state: k.revoked_at
            ? 'revoked'
            : k.expires_at && k.expires_at.getTime() <= now
              ? 'expired'
              : 'active',
        })),
      };
    },
  );

  app.post(
    '/v1/keys',
    {
      onRequest: adminOnly,
      schema: {
        summary: 'Create a key scoped to a role and a site (clinic) or reader (reader); shown once (admin)',
        body: Type.Object(
          {
            role: Type.Union([
              Type.Literal('clinic'),
              Type.Literal('reader'),
              Type.Literal('ops'),
              Type.Literal('admin'),
            ]),
            siteId: Type.Optional(Type.String({ minLength: 1, maxLength: 63 })),
            readerId: Type.Optional(Type.String({ minLength: 1, maxLength: 63 })),
            label: Type.Optional(Type.String({ maxLength: 200 })),
            expiresIn: Type.Optional(Type.String({ maxLength: 20, description: '30d, 12h, 90m, 2w' })),
          },
          { additionalProperties: false },
        ),
        response: {
          201: Type.Object({ id: Type.String(), key: Type.String(), expiresAt: NullableString }),
          ...errorResponses,
        },
      },
    },
    async (request, reply) => {
      const b = request.body as {
        role: Role;
        siteId?: string;
        readerId?: string;
        label?: string;
        expiresIn?: string;
      };
      const expiresAt = b.expiresIn ? new Date(Date.now() + parseDuration(b.expiresIn)) : null;
      const created = await createApiKey(db, {
        role: b.role,
        siteId: b.siteId ?? null,
        readerId: b.readerId ?? null,
        label: b.label ?? null,
        expiresAt,
      });
      await record(request, 'key.created', {
        id: created.id,
        role: b.role,
        siteId: b.siteId ?? null,
        readerId: b.readerId ?? null,
        expiresAt: expiresAt?.toISOString() ?? null,
      });
      return reply
        .status(201)
        .send({ id: created.id, key: created.key, expiresAt: expiresAt?.toISOString() ?? null });
    },
  );

  app.post(
    '/v1/keys/:id/revoke',
    {
      onRequest: adminOnly,
      schema: {
        summary: 'Revoke a key; requests with it are refused from now on (admin)',
        params: Type.Object({ id: Type.String({ format: 'uuid' }) }),
        response: { 200: Type.Object({ id: Type.String(), revokedAt: Type.String() }), ...errorResponses },
      },
    },
    async (request) => {
      const { id } = request.params as { id: string };
      if (id === principalOf(request).keyId) {
        throw new AppError('VALIDATION_FAILED', 'an admin key cannot revoke itself; use another admin key');
      }
      const revoked = await revokeApiKey(db, id);
      await record(request, 'key.revoked', { id });
      return { id: revoked.id, revokedAt: revoked.revokedAt.toISOString() };
    },
  );
}
