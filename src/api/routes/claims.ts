import { Type } from 'typebox';
import type { Context } from '../../context.js';
import { claimCase, type Lease, reassignCase, releaseCase, renewLease } from '../../db/case-queries.js';
import { principalOf, requireRole } from '../auth.js';
import type { App } from '../build-app.js';
import { ErrorBody, errorResponses, IdParams } from '../schemas.js';

const LeaseBody = Type.Object({
  caseId: Type.String(),
  readerId: Type.String(),
  leaseExpiresAt: Type.String(),
  leaseSeconds: Type.Integer(),
});

const withConflict = { ...errorResponses, 409: ErrorBody } as const;

/**
 * Claims and leases. A reader claims a case (assigned to them, or free in a pool they belong to) and holds a
 * lease for LEASE_SECONDS, renewed by heartbeats; when it lapses the case is claimable again at once. Of
 * concurrent claims exactly one wins, the others get 409.
 */
export function registerClaimRoutes(app: App, ctx: Context): void {
  const readerOnly = requireRole(ctx.db, 'reader');
  const opsOnly = requireRole(ctx.db, 'ops', 'admin');
  const leaseSeconds = ctx.config.leaseSeconds;
  const toBody = (l: Lease) => ({
    caseId: l.caseId,
    readerId: l.readerId,
    leaseExpiresAt: l.leaseExpiresAt.toISOString(),
    leaseSeconds,
  });

  app.post(
    '/v1/cases/:id/claim',
    {
      onRequest: readerOnly,
      schema: {
        summary: 'Take (or renew) the lease on a case; 409 when another reader holds it',
        params: IdParams,
        response: { 200: LeaseBody, ...withConflict },
      },
    },
    async (request) => {
      const { id } = request.params as { id: string };
      return toBody(await claimCase(ctx.db, principalOf(request), id, leaseSeconds, request.id));
    },
  );

  app.post(
    '/v1/cases/:id/heartbeat',
    {
      onRequest: readerOnly,
      schema: {
        summary: "Renew the caller's live lease; 409 once it has lapsed (claim again)",
        params: IdParams,
        response: { 200: LeaseBody, ...withConflict },
      },
    },
    async (request) => {
      const { id } = request.params as { id: string };
      return toBody(await renewLease(ctx.db, principalOf(request), id, leaseSeconds));
    },
  );

  app.post(
    '/v1/cases/:id/release',
    {
      onRequest: readerOnly,
      schema: {
        summary: 'Give a case back to its pool (ends the lease, and the assignment if it was pushed)',
        params: IdParams,
        response: {
          200: Type.Object({ caseId: Type.String(), poolId: Type.Union([Type.String(), Type.Null()]) }),
          ...withConflict,
        },
      },
    },
    async (request) => {
      const { id } = request.params as { id: string };
      return releaseCase(ctx.db, principalOf(request), id, request.id);
    },
  );

  app.post(
    '/v1/cases/:id/reassign',
    {
      onRequest: opsOnly,
      schema: {
        summary: 'Hand a case to a named reader (ops, admin); ends any claim on it',
        params: IdParams,
        body: Type.Object(
          {
            readerId: Type.String({ minLength: 1, maxLength: 63 }),
            note: Type.Optional(Type.String({ maxLength: 500 })),
          },
          { additionalProperties: false },
        ),
        response: {
          200: Type.Object({
            caseId: Type.String(),
            readerId: Type.String(),
            previousReaderId: Type.Union([Type.String(), Type.Null()]),
          }),
          ...withConflict,
        },
      },
    },
    async (request) => {
      const { id } = request.params as { id: string };
      const body = request.body as { readerId: string; note?: string };
      return reassignCase(ctx.db, principalOf(request), id, body.readerId, body.note, request.id);
    },
  );
}
