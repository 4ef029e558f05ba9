import { Type } from 'typebox';
import type { Context } from '../../context.js';
import { getWorklistForReader, getWorklistReader, type WorklistState } from '../../db/case-queries.js';
import type { CaseKind, Priority } from '../../db/schema.js';
import { AppError } from '../../errors.js';
import { principalOf, requireRole } from '../auth.js';
import type { App } from '../build-app.js';
import {
  CaseKind as CaseKindSchema,
  CaseSummary,
  errorResponses,
  Priority as PrioritySchema,
} from '../schemas.js';
import { toCaseSummary } from './cases.js';

const WorklistStateSchema = Type.Union([
  Type.Literal('assigned'),
  Type.Literal('claimed'),
  Type.Literal('claimable'),
]);

const WorklistItem = Type.Object({
  ...CaseSummary.properties,
  dueAt: Type.String(),
  flags: Type.Array(Type.String()),
  poolId: Type.Union([Type.String(), Type.Null()]),
  /** assigned: pushed to the caller; claimed: the caller holds a live lease on a pool case; claimable: free in a
   * pool the caller belongs to. */
  state: WorklistStateSchema,
  /** The caller's own live lease, if any. */
  leaseExpiresAt: Type.Union([Type.String(), Type.Null()]),
});

export function registerWorklistRoutes(app: App, ctx: Context): void {
  app.get(
    '/v1/worklist',
    {
      preHandler: requireRole(ctx.db, 'reader'),
      schema: {
        summary:
          "The caller's assigned and claimed cases plus the pool cases they may claim, most urgent first",
        description:
          'Ordered by priority, then due time, then id. Pages with an opaque `cursor` (the previous page’s ' +
          '`nextCursor`); `counts` cover every page of the filtered list, exactly up to 1000 own and 1000 pool ' +
          'cases (`capped` says when there are more).',
        querystring: Type.Object({
          kind: Type.Optional(CaseKindSchema),
          priority: Type.Optional(PrioritySchema),
          status: Type.Optional(WorklistStateSchema),
          cursor: Type.Optional(Type.String({ maxLength: 300 })),
          limit: Type.Integer({ minimum: 1, maximum: 500, default: 100 }),
        }),
        response: {
          200: Type.Object({
            readerId: Type.String(),
            cases: Type.Array(WorklistItem),
            nextCursor: Type.Union([Type.String(), Type.Null()]),
            // Exact up to WORKLIST_COUNT_CAP cases per part (own, pool); `capped` means there are more.
            counts: Type.Object({
              assigned: Type.Integer(),
              claimable: Type.Integer(),
              total: Type.Integer(),
              capped: Type.Boolean(),
            }),
          }),
          ...errorResponses,
        },
      },
    },
    async (request) => {
      const who = principalOf(request);
      const q = request.query as {
        kind?: CaseKind;
        priority?: Priority;
        status?: WorklistState;
        cursor?: string;
        limit: number;
      };
      const reader = await getWorklistReader(ctx.db, who.readerId ?? '');
      if (!reader) throw new AppError('UNAUTHORIZED', 'the reader of this key no longer exists');
      const page = await getWorklistForReader(ctx.db, reader, {
        kind: q.kind,
        priority: q.priority,
        state: q.status,
        cursor: q.cursor,
        limit: q.limit,
      });
      return {
        readerId: reader.id,
        cases: page.items.map((r) => ({
          ...toCaseSummary(ctx, r),
          dueAt: r.due_at.toISOString(),
          flags: r.flags,
          poolId: r.pool_id,
          state: r.state,
          leaseExpiresAt: r.lease_expires_at?.toISOString() ?? null,
        })),
        nextCursor: page.nextCursor,
        counts: page.counts,
      };
    },
  );
}
