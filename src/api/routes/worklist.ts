import { Type } from 'typebox';
import type { Context } from '../../context.js';
import {
  getWorklistForReader,
  getWorklistReader,
  type WorklistReader,
  type WorklistState,
} from '../../db/case-queries.js';
import { writeWatchOf } from '../../db/database.js';
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
import { createShortCache } from '../short-cache.js';
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

/** How long a worklist page is served from memory; see docs/workflow.md. */
export const WORKLIST_PAGE_CACHE_MS = 1_000;
/** How long the worklist keeps a reader's qualifications (active, specialties, licences); see docs/security.md. */
const READER_CACHE_MS = 5_000;
/** Serialized pages kept at most, in bytes (a 100-case page is about 50 kB). */
const PAGE_CACHE_BYTES = 16_000_000;
/** Everything a worklist page is read from. */
const PAGE_TABLES = ['cases', 'assignments', 'artifacts', 'sites', 'readers'];

/**
 * Readers poll their worklist; within WORKLIST_PAGE_CACHE_MS one reader's identical requests are answered from
 * one serialized page, and concurrent ones share one set of queries. Any write through this process's database
 * handle to a table the page is read from drops every page at once: a claim, release, heartbeat or report made
 * through this process shows in the very next page of every reader. Writes by other processes (routing and SLA
 * workers) show within WORKLIST_PAGE_CACHE_MS, lease expiry too. A stale "claimable" entry costs nothing worse than
 * a 409: claims are decided by the database. Every request is still audited (the onResponse hook runs for it).
 */
function createWorklistCaches(ctx: Context, app: App) {
  const watch = writeWatchOf(ctx.db);
  if (!watch) return null;
  const pages = createShortCache<string, Buffer>({
    ttlMs: WORKLIST_PAGE_CACHE_MS,
    maxWeight: PAGE_CACHE_BYTES,
    weigh: (page) => page.length,
  });
  const readers = createShortCache<string, WorklistReader>({ ttlMs: READER_CACHE_MS, maxWeight: 10_000 });
  const unsubscribe = [
    watch.subscribe(PAGE_TABLES, () => pages.invalidate()),
    watch.subscribe(['readers'], () => readers.invalidate()),
  ];
  app.addHook('onClose', async () => {
    for (const u of unsubscribe) u();
  });
  return { pages, readers };
}

export function registerWorklistRoutes(app: App, ctx: Context): void {
  const caches = createWorklistCaches(ctx, app);
  app.get(
    '/v1/worklist',
    {
      onRequest: requireRole(ctx.db, 'reader'),
      schema: {
        summary:
          "The caller's assigned and claimed cases plus the pool cases they may claim, most urgent first",
        description:
          'Ordered by priority, then due time, then id. Pages with an opaque `cursor` (the previous page’s ' +
          '`nextCursor`); `counts` cover every page of the filtered list, exactly up to 1000 own and 1000 pool ' +
          'cases (`capped` says when there are more). A page may be up to a second old for changes made by ' +
          'other processes (routing, lease expiry); a claim answers 409 if the case was taken meanwhile.',
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
    async (request, reply) => {
      const who = principalOf(request);
      const q = request.query as {
        kind?: CaseKind;
        priority?: Priority;
        status?: WorklistState;
        cursor?: string;
        limit: number;
      };
      const readerId = who.readerId ?? '';
      const readerOf = () => getWorklistReader(ctx.db, readerId);
      const render = async () => {
        const reader = await (caches ? caches.readers.get(readerId, readerOf) : readerOf());
        if (!reader) throw new AppError('UNAUTHORIZED', 'the reader of this key no longer exists');
        const page = await getWorklistForReader(ctx.db, reader, {
          kind: q.kind,
          priority: q.priority,
          state: q.status,
          cursor: q.cursor,
          limit: q.limit,
        });
        // Serialized once by the route's response schema and encoded once: a cached page is sent as these bytes.
        const json = reply.serialize({
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
        }) as string;
        return Buffer.from(json);
      };
      const key = JSON.stringify([readerId, q.kind, q.priority, q.status, q.cursor, q.limit]);
      const body = caches ? await caches.pages.get(key, render) : await render();
      // Already JSON: Fastify sends a Buffer as it is, without serializing or encoding it again.
      return reply.type('application/json; charset=utf-8').send(body as never);
    },
  );
}
