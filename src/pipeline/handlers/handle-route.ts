import { sql } from 'kysely';
import type { Context } from '../../context.js';
import { readerLoad } from '../../db/case-queries.js';
import type { Db } from '../../db/database.js';
import type { ReaderRow } from '../../db/schema.js';
import {
  evaluateRules,
  mayReceiveDeidentified,
  mayReceiveIdentified,
  type RoutingCase,
  type RoutingReader,
} from '../../domain/routing.js';
import { parseRule, type RoutingRule } from '../../domain/rules.js';
import { checkShiftExceptions, checkWeeklyShifts, isTimeZone, type Schedule } from '../../domain/shifts.js';
import { AppError, isAppError } from '../../errors.js';
import { pixelIdentity, pixelIdentityOf } from '../../formats/inspect.js';
import type { Logger } from '../../log.js';
import type { JobContext, JobOutcome } from '../job-context.js';
import type { JobOf } from '../queues.js';
import { readHeaderOf } from '../stored-dicom-header.js';

/** Most earlier readers of the same patient considered for a follow-up. */
const PRIOR_READERS = 5;

const DICOM_FORMATS = ['dicom', 'dicom-wsi', 'dicom-waveform'];

/**
 * route: evaluate the routing rules for a processed case and push it to a reader or put it in a pool. The
 * case row is locked for the whole decision and a unique index allows one live assignment per case, so two
 * workers routing the same case (a redelivered job after a crash) route it once.
 */
export async function handleRoute(
  { ctx, log, requestId }: JobContext,
  job: JobOf<'route'>,
): Promise<JobOutcome> {
  // Read before the transaction: object reads must not happen while every reader row is locked.
  const crossBorderRefusal = await getCrossBorderRefusal(ctx, job.caseId);
  const outcome = await ctx.db.transaction().execute(async (trx) => {
    const kase = await trx
      .selectFrom('cases')
      .innerJoin('sites', 'sites.id', 'cases.site_id')
      .select([
        'cases.id',
        'cases.kind',
        'cases.status',
        'cases.priority',
        'cases.site_id',
        'cases.flags',
        'cases.metadata',
        'cases.routed_at',
        'sites.jurisdiction',
        'sites.cross_border_policy',
      ])
      .where('cases.id', '=', job.caseId)
      .forUpdate('cases')
      .executeTakeFirst();
    if (!kase) throw new AppError('NOT_FOUND', `case ${job.caseId} does not exist`, { retryable: false });
    if (kase.routed_at || kase.status !== 'ready') return { kind: 'skipped' as const };

    const files = await trx
      .selectFrom('files')
      .select(['format', 'metadata'])
      .where('case_id', '=', kase.id)
      .where('status', '!=', 'failed')
      .orderBy('received_at')
      .orderBy('name')
      .execute();
    const texts = (key: string) => [
      ...new Set(
        files
          .map((f) => f.metadata[key])
          .filter((v): v is string => typeof v === 'string' && v.trim() !== '')
          .map((v) => v.trim().toUpperCase()),
      ),
    ];
    const routingCase: RoutingCase = {
      kind: kase.kind,
      siteId: kase.site_id,
      priority: kase.priority,
      modalities: texts('modality'),
      bodyParts: texts('bodyPartExamined'),
      flags: kase.flags,
      // Technical metadata only (patient demographics live in files.patient and never reach the rules).
      metadata: { ...(files[0]?.metadata ?? {}), ...kase.metadata, format: files[0]?.format ?? null },
      jurisdiction: kase.jurisdiction,
      crossBorderPolicy: kase.cross_border_policy,
      priorReaderIds: await getPriorReaderIds(trx, kase.id, kase.site_id),
      crossBorderRefusal,
    };
    const rules = await getRoutingRules(trx, log);

    // Load is counted under a lock on the candidates' rows, so two cases routed at once see each other's picks.
    const rows = await trx
      .selectFrom('readers')
      .selectAll('readers')
      .select(readerLoad(sql.ref('readers.id')).as('load'))
      .where('readers.active', '=', true)
      .orderBy('readers.id')
      .forUpdate()
      .execute();
    const readers = rows.map((r) => toRoutingReader(r, log));
    const decision = evaluateRules(routingCase, rules, readers, new Date());

    if (decision.policy === 'none') {
      await trx.updateTable('cases').set({ route_note: decision.reason }).where('id', '=', kase.id).execute();
      return { kind: 'unrouted' as const, reason: decision.reason };
    }
    if (decision.policy === 'push') {
      const chosen = readers.find((r) => r.id === decision.readerId);
      // The rule engine already guarantees this; the handler is the last place identified data could leave.
      const allowed =
        chosen !== undefined &&
        (decision.deidentified
          ? mayReceiveDeidentified(chosen, routingCase) && crossBorderRefusal === undefined
          : mayReceiveIdentified(chosen, routingCase));
      if (!allowed) {
        throw new AppError(
          'INTERNAL',
          `routing chose reader ${decision.readerId}, who may not see this case`,
          {
            retryable: false,
          },
        );
      }
      await trx
        .insertInto('assignments')
        .values({ case_id: kase.id, reader_id: decision.readerId, reason: decision.reason })
        .execute();
    }
    await trx
      .updateTable('cases')
      .set({
        status: 'routed',
        routed_at: sql`now()`,
        route_note: decision.reason,
        route_rule: decision.ruleName,
        pool_id: decision.poolId,
        pool_specialty: decision.target.specialty,
        pool_subspecialty: decision.target.subspecialty ?? null,
        pool_language: decision.target.language ?? null,
        pool_jurisdiction: decision.target.jurisdiction ?? null,
        pool_fallbacks: JSON.stringify(decision.fallbacks),
        deidentified_abroad: decision.deidentified,
        updated_at: sql`now()`,
      })
      .where('id', '=', kase.id)
      .execute();
    await trx
      .insertInto('audit_events')
      .values({
        action: 'case.routed',
        case_id: kase.id,
        actor_role: 'system',
        request_id: requestId ?? null,
        detail: JSON.stringify({
          policy: decision.policy,
          readerId: decision.policy === 'push' ? decision.readerId : null,
          poolId: decision.poolId,
          rule: decision.ruleName,
          fallbackUsed: decision.fallbackUsed,
          deidentified: decision.deidentified,
          reason: decision.reason,
        }),
      })
      .execute();
    return decision.policy === 'push'
      ? { kind: 'pushed' as const, readerId: decision.readerId }
      : { kind: 'pooled' as const, poolId: decision.poolId };
  });
  if (outcome.kind === 'skipped') return 'SKIPPED';
  if (outcome.kind === 'unrouted') {
    // Not an error: the sweep retries ready-but-unrouted cases when readers come on shift or free up.
    log.warn({ caseId: job.caseId, reason: outcome.reason }, 'case waits for a qualified reader');
    return 'SKIPPED';
  }
  if (outcome.kind === 'pushed') log.info({ caseId: job.caseId, readerId: outcome.readerId }, 'case routed');
  else log.info({ caseId: job.caseId, poolId: outcome.poolId }, 'case pooled');
  return 'SUCCESS';
}

/**
 * Why a case from a "deidentified" site must stay in its jurisdiction even de-identified, or undefined. The
 * de-identification profile removes identifying attributes from headers but cannot clean pixels: an instance
 * with BurnedInAnnotation YES (or whose header cannot be read to tell) keeps the case home. Slide label and
 * overview instances are exempt: they are never served to a reader abroad. Other sites need no answer. The flags
 * come from the files rows (ingest keeps them, `pixelIdentity`); a row ingested before that has its header read.
 */
async function getCrossBorderRefusal(ctx: Context, caseId: string): Promise<string | undefined> {
  const site = await ctx.db
    .selectFrom('cases')
    .innerJoin('sites', 'sites.id', 'cases.site_id')
    .select(['sites.cross_border_policy', 'cases.routed_at'])
    .where('cases.id', '=', caseId)
    .executeTakeFirst();
  if (!site || site.routed_at || site.cross_border_policy !== 'deidentified') return undefined;
  const files = await ctx.db
    .selectFrom('files')
    .select(['id', 'object_key', 'bytes', 'metadata', 'sop_instance_uid'])
    .where('case_id', '=', caseId)
    .where('format', 'in', DICOM_FORMATS)
    .where('status', '!=', 'failed')
    .where('duplicate_of', 'is', null)
    .execute();
  for (const f of files) {
    let flags = pixelIdentityOf(f.metadata);
    if (!flags) {
      // A row ingested before the flags were kept: read its header.
      try {
        flags = pixelIdentity(await readHeaderOf(ctx, f));
      } catch (err) {
        if (!isAppError(err) || err.retryable) throw err;
        return `the header of file ${f.id} could not be read to check for burned-in annotation`;
      }
    }
    if (flags.identifyingImage) continue;
    if (flags.burnedInAnnotation) return `instance ${f.sop_instance_uid ?? f.id} has BurnedInAnnotation YES`;
  }
  return undefined;
}

/**
 * Readers of earlier cases of the same patient at the same site, most recent first: the reader the case was
 * pushed to, else the last one who claimed it. The patient id is compared inside PostgreSQL and never leaves it.
 */
async function getPriorReaderIds(trx: Db, caseId: string, siteId: string): Promise<string[]> {
  const rows = await trx
    .selectFrom('files as f')
    .innerJoin('cases as c', 'c.id', 'f.case_id')
    .select([sql<string>`coalesce(c.assigned_reader_id, c.lease_reader_id)`.as('reader_id'), 'c.created_at'])
    .where('f.site_id', '=', siteId)
    .where(sql<boolean>`f.patient ? 'id'`)
    .where(
      sql<boolean>`f.patient ->> 'id' IN (
        SELECT p.patient ->> 'id' FROM files p
        WHERE p.case_id = ${caseId} AND p.patient ? 'id' AND p.patient ->> 'id' <> '')`,
    )
    .where('c.id', '!=', caseId)
    .where(sql<boolean>`coalesce(c.assigned_reader_id, c.lease_reader_id) IS NOT NULL`)
    .orderBy('c.created_at', 'desc')
    .limit(PRIOR_READERS * 4)
    .execute();
  return [...new Set(rows.map((r) => r.reader_id))].slice(0, PRIOR_READERS);
}

/** The stored rule set, in order. A stored rule that no longer validates is skipped loudly, not obeyed blindly. */
async function getRoutingRules(trx: Db, log: Logger): Promise<RoutingRule[]> {
  const rows = await trx.selectFrom('routing_rules').selectAll().orderBy('position').execute();
  const rules: RoutingRule[] = [];
  for (const row of rows) {
    try {
      rules.push(
        parseRule({
          id: row.id,
          name: row.name,
          enabled: row.enabled,
          match: row.match,
          target: row.target,
          policy: row.policy,
          fallbacks: row.fallbacks,
          preferPriorReader: row.prefer_prior_reader,
        }),
      );
    } catch (err) {
      log.error({ ruleId: row.id, err: err instanceof Error ? err.message : err }, 'routing rule skipped');
    }
  }
  return rules;
}

/** A reader whose stored schedule is broken is treated as off shift (and logged) rather than failing routing. */
function toRoutingReader(r: ReaderRow & { load: number }, log: Logger): RoutingReader {
  let schedule: Schedule;
  try {
    if (!isTimeZone(r.time_zone)) throw new Error(`unknown time zone ${r.time_zone}`);
    schedule = {
      timeZone: r.time_zone,
      weekly: r.shifts === null ? null : checkWeeklyShifts(r.shifts),
      exceptions: checkShiftExceptions(r.shift_exceptions),
    };
  } catch (err) {
    log.error(
      { readerId: r.id, err: err instanceof Error ? err.message : err },
      'reader schedule unreadable',
    );
    schedule = { timeZone: 'UTC', weekly: [], exceptions: [] };
  }
  return {
    id: r.id,
    active: r.active,
    specialties: r.specialties,
    subspecialties: r.subspecialties,
    jurisdictions: r.jurisdictions,
    languages: r.languages,
    maxActive: r.max_active,
    load: r.load,
    schedule,
  };
}
