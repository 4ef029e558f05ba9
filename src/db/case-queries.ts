import { type Expression, type ExpressionBuilder, type SqlBool, sql } from 'kysely';
import type { Principal } from '../api/auth.js';
import type { Db } from './database.js';
import type { CaseKind, CaseStatus, Database } from './schema.js';

/**
 * The visibility rule, in one place: a clinic sees its site's cases, a reader only the cases routed to them,
 * ops and admin everything. Callers answer 404 (not 403) for an invisible case, so ids do not leak.
 */
export function visibleTo(who: Principal) {
  return (eb: ExpressionBuilder<Database, 'cases'>): Expression<SqlBool> => {
    if (who.role === 'clinic') return eb('cases.site_id', '=', who.siteId ?? '');
    if (who.role === 'reader') {
      return eb.exists(
        eb
          .selectFrom('assignments')
          .select(sql`1`.as('one'))
          .whereRef('assignments.case_id', '=', 'cases.id')
          .where('assignments.reader_id', '=', who.readerId ?? '')
          .where('assignments.released_at', 'is', null),
      );
    }
    return sql<SqlBool>`true`;
  };
}

function caseSummaries(db: Db) {
  return db
    .selectFrom('cases')
    .leftJoin('assignments', (j) =>
      j.onRef('assignments.case_id', '=', 'cases.id').on('assignments.released_at', 'is', null),
    )
    .leftJoin('artifacts', (j) =>
      j.onRef('artifacts.case_id', '=', 'cases.id').on('artifacts.name', '=', 'thumbnail'),
    )
    .select([
      'cases.id',
      'cases.kind',
      'cases.status',
      'cases.priority',
      'cases.priority_reason',
      'cases.site_id',
      'cases.created_at',
      'cases.routed_at',
      'assignments.reader_id',
      'artifacts.name as thumbnail',
    ]);
}

export type CaseSummaryRow = Awaited<ReturnType<ReturnType<typeof caseSummaries>['execute']>>[number];

export async function getCasesForPrincipal(
  db: Db,
  who: Principal,
  filter: { status?: CaseStatus | undefined; kind?: CaseKind | undefined; limit: number; offset: number },
): Promise<CaseSummaryRow[]> {
  let q = caseSummaries(db).where(visibleTo(who));
  if (filter.status) q = q.where('cases.status', '=', filter.status);
  if (filter.kind) q = q.where('cases.kind', '=', filter.kind);
  return q
    .orderBy('cases.created_at', 'desc')
    .orderBy('cases.id')
    .limit(filter.limit)
    .offset(filter.offset)
    .execute();
}

/** A reader's worklist: their live assignments, most urgent first, then oldest first (first in, first read). */
export async function getWorklistForReader(
  db: Db,
  readerId: string,
  limit: number,
): Promise<CaseSummaryRow[]> {
  return caseSummaries(db)
    .where('assignments.reader_id', '=', readerId)
    .orderBy(sql`array_position(ARRAY['stat','urgent','routine'], cases.priority)`)
    .orderBy('cases.created_at')
    .orderBy('cases.id')
    .limit(limit)
    .execute();
}

export async function getCaseForPrincipal(db: Db, who: Principal, caseId: string) {
  return db
    .selectFrom('cases')
    .selectAll('cases')
    .where('cases.id', '=', caseId)
    .where(visibleTo(who))
    .executeTakeFirst();
}

export async function getCaseDetailParts(db: Db, caseId: string) {
  const [files, artifacts, assignment] = await Promise.all([
    db
      .selectFrom('files')
      .selectAll()
      .where('case_id', '=', caseId)
      .orderBy('received_at')
      .orderBy('name')
      .execute(),
    db.selectFrom('artifacts').selectAll().where('case_id', '=', caseId).orderBy('name').execute(),
    db
      .selectFrom('assignments')
      .innerJoin('readers', 'readers.id', 'assignments.reader_id')
      .select(['readers.id', 'readers.name', 'assignments.assigned_at', 'assignments.reason'])
      .where('assignments.case_id', '=', caseId)
      .where('assignments.released_at', 'is', null)
      .executeTakeFirst(),
  ]);
  return { files, artifacts, assignment };
}
