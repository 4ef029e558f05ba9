import { type SqlBool, sql } from 'kysely';
import { Type } from 'typebox';
import type { Context } from '../../context.js';
import type { CaseKind, Priority } from '../../db/schema.js';
import { SLA_OPEN_STATUSES } from '../../domain/escalation.js';
import { requireRole } from '../auth.js';
import type { App } from '../build-app.js';
import { CaseKind as CaseKindSchema, errorResponses, Priority as PrioritySchema } from '../schemas.js';

const SlaItem = Type.Object({
  id: Type.String(),
  siteId: Type.String(),
  kind: Type.String(),
  priority: Type.String(),
  status: Type.String(),
  createdAt: Type.String(),
  dueAt: Type.String(),
  /** Negative once overdue. */
  dueInSeconds: Type.Integer(),
  /** Share of the SLA elapsed, in percent (over 100 once overdue). */
  elapsedPercent: Type.Integer(),
  escalationLevel: Type.Integer(),
  escalatedAt: Type.Union([Type.String(), Type.Null()]),
  poolId: Type.Union([Type.String(), Type.Null()]),
  /** Who holds it now: the reader it was pushed to, else the holder of a live claim. */
  readerId: Type.Union([Type.String(), Type.Null()]),
  claimed: Type.Boolean(),
});

/** At risk: open, past half of its SLA, not yet due. Overdue: open and past its due time. */
const overdue = sql<SqlBool>`cases.due_at <= now()`;
const atRisk = sql<SqlBool>`(cases.due_at > now() AND now() >= cases.created_at + (cases.due_at - cases.created_at) * 0.5)`;

/**
 * `GET /v1/ops/sla`: the open cases at risk of missing their SLA and those that missed it, most urgent first, for
 * ops and admin. Queue and case status only: no patient field, no notes, no file names.
 */
export function registerSlaRoutes(app: App, ctx: Context): void {
  const { db } = ctx;
  app.get(
    '/v1/ops/sla',
    {
      onRequest: requireRole(db, 'ops', 'admin'),
      schema: {
        summary: 'Open cases at risk of missing their SLA, and overdue ones (ops, admin)',
        description:
          'At risk: past 50 % of the SLA and not yet due (the first escalation point). Overdue: past the due ' +
          'time. Both lists are ordered by due time; counts cover every open case.',
        querystring: Type.Object({
          siteId: Type.Optional(Type.String({ maxLength: 63 })),
          kind: Type.Optional(CaseKindSchema),
          priority: Type.Optional(PrioritySchema),
          limit: Type.Integer({ minimum: 1, maximum: 500, default: 100 }),
        }),
        response: {
          200: Type.Object({
            now: Type.String(),
            counts: Type.Object({ open: Type.Integer(), atRisk: Type.Integer(), overdue: Type.Integer() }),
            overdue: Type.Array(SlaItem),
            atRisk: Type.Array(SlaItem),
          }),
          ...errorResponses,
        },
      },
    },
    async (request) => {
      const q = request.query as { siteId?: string; kind?: CaseKind; priority?: Priority; limit: number };
      let open = db.selectFrom('cases').where('cases.status', 'in', SLA_OPEN_STATUSES);
      if (q.siteId) open = open.where('cases.site_id', '=', q.siteId);
      if (q.kind) open = open.where('cases.kind', '=', q.kind);
      if (q.priority) open = open.where('cases.priority', '=', q.priority);

      const list = (which: typeof overdue) =>
        open
          .leftJoin('assignments', (j) =>
            j.onRef('assignments.case_id', '=', 'cases.id').on('assignments.released_at', 'is', null),
          )
          .select([
            'cases.id',
            'cases.site_id',
            'cases.kind',
            'cases.priority',
            'cases.status',
            'cases.created_at',
            'cases.due_at',
            'cases.escalation_level',
            'cases.escalated_at',
            'cases.pool_id',
            sql<boolean>`coalesce(cases.lease_expires_at > now(), false)`.as('claimed'),
            sql<string | null>`coalesce(assignments.reader_id,
              CASE WHEN cases.lease_expires_at > now() THEN cases.lease_reader_id END)`.as('reader_id'),
            sql<number>`floor(extract(epoch FROM cases.due_at - now()))::int`.as('due_in_seconds'),
            sql<number>`floor(100 * extract(epoch FROM now() - cases.created_at)
              / greatest(extract(epoch FROM cases.due_at - cases.created_at), 1))::int`.as('elapsed_percent'),
          ])
          .where(which)
          .orderBy('cases.due_at')
          .orderBy('cases.id')
          .limit(q.limit)
          .execute();

      const [late, risky, counts, now] = await Promise.all([
        list(overdue),
        list(atRisk),
        open
          .select([
            sql<number>`count(*)::int`.as('open'),
            sql<number>`(count(*) FILTER (WHERE ${atRisk}))::int`.as('at_risk'),
            sql<number>`(count(*) FILTER (WHERE ${overdue}))::int`.as('overdue'),
          ])
          .executeTakeFirstOrThrow(),
        sql<{ now: Date }>`SELECT now() AS now`.execute(db),
      ]);
      const item = (r: (typeof late)[number]) => ({
        id: r.id,
        siteId: r.site_id,
        kind: r.kind,
        priority: r.priority,
        status: r.status,
        createdAt: r.created_at.toISOString(),
        dueAt: r.due_at.toISOString(),
        dueInSeconds: r.due_in_seconds,
        elapsedPercent: r.elapsed_percent,
        escalationLevel: r.escalation_level,
        escalatedAt: r.escalated_at?.toISOString() ?? null,
        poolId: r.pool_id,
        readerId: r.reader_id,
        claimed: r.claimed,
      });
      return {
        now: (now.rows[0]?.now ?? new Date()).toISOString(),
        counts: { open: counts.open, atRisk: counts.at_risk, overdue: counts.overdue },
        overdue: late.map(item),
        atRisk: risky.map(item),
      };
    },
  );
}
