import { sql } from 'kysely';
import { chooseReader } from '../../domain/routing.js';
import { AppError } from '../../errors.js';
import type { JobContext, JobOutcome } from '../job-context.js';
import type { JobOf } from '../queues.js';

/**
 * route: assign a processed case to the least-loaded qualified reader. The case row is locked for the whole
 * decision and a unique index allows one live assignment per case, so two workers routing the same case
 * (a redelivered job after a crash) assign it once.
 */
export async function handleRoute(
  { ctx, log, requestId }: JobContext,
  job: JobOf<'route'>,
): Promise<JobOutcome> {
  const outcome = await ctx.db.transaction().execute(async (trx) => {
    const kase = await trx
      .selectFrom('cases')
      .innerJoin('sites', 'sites.id', 'cases.site_id')
      .select(['cases.id', 'cases.kind', 'cases.status', 'cases.routed_at', 'sites.jurisdiction'])
      .where('cases.id', '=', job.caseId)
      .forUpdate('cases')
      .executeTakeFirst();
    if (!kase) throw new AppError('NOT_FOUND', `case ${job.caseId} does not exist`, { retryable: false });
    if (kase.routed_at || kase.status !== 'ready') return { kind: 'skipped' as const };

    // Load is counted under a lock on the candidates' rows, so two cases routed at once see each other's picks.
    const candidates = await trx
      .selectFrom('readers')
      .select([
        'readers.id',
        'readers.specialties',
        'readers.jurisdictions',
        'readers.active',
        'readers.max_active',
        sql<number>`(SELECT count(*) FROM assignments a WHERE a.reader_id = readers.id AND a.released_at IS NULL)::int`.as(
          'load',
        ),
      ])
      .where('readers.active', '=', true)
      .orderBy('readers.id')
      .forUpdate()
      .execute();
    const decision = chooseReader(
      { kind: kase.kind, jurisdiction: kase.jurisdiction },
      candidates.map((r) => ({
        id: r.id,
        specialties: r.specialties,
        jurisdictions: r.jurisdictions,
        active: r.active,
        maxActive: r.max_active,
        load: r.load,
      })),
    );
    if (decision.readerId === null) {
      await trx.updateTable('cases').set({ route_note: decision.reason }).where('id', '=', kase.id).execute();
      return { kind: 'unrouted' as const, reason: decision.reason };
    }
    await trx
      .insertInto('assignments')
      .values({ case_id: kase.id, reader_id: decision.readerId, reason: decision.reason })
      .execute();
    await trx
      .updateTable('cases')
      .set({ status: 'routed', routed_at: sql`now()`, route_note: decision.reason, updated_at: sql`now()` })
      .where('id', '=', kase.id)
      .execute();
    await trx
      .insertInto('audit_events')
      .values({
        action: 'case.routed',
        case_id: kase.id,
        actor_role: 'system',
        request_id: requestId ?? null,
        detail: JSON.stringify({ readerId: decision.readerId, reason: decision.reason }),
      })
      .execute();
    return { kind: 'routed' as const, readerId: decision.readerId };
  });
  if (outcome.kind === 'skipped') return 'SKIPPED';
  if (outcome.kind === 'unrouted') {
    // Not an error: the sweep retries ready-but-unrouted cases when readers come on or free up.
    log.warn({ caseId: job.caseId, reason: outcome.reason }, 'case waits for a qualified reader');
    return 'SKIPPED';
  }
  log.info({ caseId: job.caseId, readerId: outcome.readerId }, 'case routed');
  return 'SUCCESS';
}
