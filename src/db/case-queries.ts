import { type Expression, type ExpressionBuilder, type RawBuilder, type SqlBool, sql } from 'kysely';
import type { Principal } from '../api/auth.js';
import { mayReceiveDeidentified, mayReceiveIdentified } from '../domain/routing.js';
import { SPECIALTY_FOR_KIND } from '../domain/rules.js';
import { PRIORITY_RANK } from '../domain/sla.js';
import { AppError } from '../errors.js';
import { recordCaseEvent } from './audit-queries.js';
import type { Db } from './database.js';
import type { CaseKind, CaseStatus, Database, Priority } from './schema.js';

/**
 * Case states a reader works on. Cases leave worklists (and pools) when they leave these states; a later
 * status (reported, signed) is added here, not scattered over the queries, and in the predicates of migration
 * 0010's worklist indexes (a new migration), which hold only these states.
 */
export const WORKLIST_STATUSES: readonly CaseStatus[] = ['routed'];

/** A lease is live while it has not expired; an expired one is ignored everywhere, no job needs to clear it. */
export const leaseLive = sql<SqlBool>`(cases.lease_expires_at IS NOT NULL AND cases.lease_expires_at > now())`;
const leaseFree = sql<SqlBool>`(cases.lease_expires_at IS NULL OR cases.lease_expires_at <= now())`;
/** `assigned_reader_id` mirrors the live assignment (trigger `assignments_to_case`), so one column answers. */
const unassigned = sql<SqlBool>`cases.assigned_reader_id IS NULL`;

/** What a pool admission needs to know about a reader, as SQL: their columns, or values already loaded. */
interface ReaderQualificationSql {
  specialties: RawBuilder<string[]>;
  subspecialties: RawBuilder<string[]>;
  languages: RawBuilder<string[]>;
  jurisdictions: RawBuilder<string[]>;
}

/**
 * Whether a reader belongs to the case's pool: the SQL twin of `qualifiesFor`, `mayReceiveIdentified` and
 * `mayReceiveDeidentified` in src/domain/routing.ts. A reader abroad is admitted when the site allows identified
 * cross-border reading, or when the site allows de-identified reading and routing opened this case abroad
 * (`deidentified_abroad`: nobody at home could take it); such a reader gets the de-identified view only.
 */
function poolAdmits(
  r: ReaderQualificationSql,
  site: { jurisdiction: RawBuilder<string>; policy: RawBuilder<string> },
): RawBuilder<SqlBool> {
  return sql<SqlBool>`(cases.pool_specialty = ANY(${r.specialties})
    AND (cases.pool_subspecialty IS NULL OR cases.pool_subspecialty = ANY(${r.subspecialties}))
    AND (cases.pool_language IS NULL OR cases.pool_language = ANY(${r.languages}))
    AND (cases.pool_jurisdiction IS NULL OR cases.pool_jurisdiction = ANY(${r.jurisdictions}))
    AND (${site.jurisdiction} = ANY(${r.jurisdictions}) OR ${site.policy} = 'identified'
      OR (${site.policy} = 'deidentified' AND cases.deidentified_abroad)))`;
}

const worklistStatus = sql<SqlBool>`cases.status IN (${sql.join(WORKLIST_STATUSES.map((s) => sql.lit(s)))})`;

/** A pool case nobody holds: routed, not pushed to anyone, no live lease. Readers' qualification comes on top. */
const inFreePool = sql<SqlBool>`(${worklistStatus} AND cases.pool_specialty IS NOT NULL AND ${unassigned} AND ${leaseFree})`;

const columnsOf = (alias: string): ReaderQualificationSql => ({
  specialties: sql.ref(`${alias}.specialties`),
  subspecialties: sql.ref(`${alias}.subspecialties`),
  languages: sql.ref(`${alias}.languages`),
  jurisdictions: sql.ref(`${alias}.jurisdictions`),
});

/** Whether the case sits in a pool the (active) reader belongs to and is pushed to nobody, held or not. */
function inPoolOf(readerId: string): RawBuilder<SqlBool> {
  return sql<SqlBool>`(cases.pool_specialty IS NOT NULL AND ${unassigned} AND EXISTS (
    SELECT 1 FROM readers r JOIN sites s ON s.id = cases.site_id
    WHERE r.id = ${readerId} AND r.active
      AND ${poolAdmits(columnsOf('r'), { jurisdiction: sql.ref('s.jurisdiction'), policy: sql.ref('s.cross_border_policy') })}))`;
}

/** Whether reader `readerId` may claim the case now (free pool case, qualified, active). */
export function claimableBy(readerId: string): RawBuilder<SqlBool> {
  return sql<SqlBool>`(${worklistStatus} AND ${leaseFree} AND ${inPoolOf(readerId)})`;
}

/** Whether the reader signed the case's report: a reader keeps access to the cases they reported. */
export function signedBy(readerId: string): RawBuilder<SqlBool> {
  return sql<SqlBool>`EXISTS (SELECT 1 FROM reports rp WHERE rp.case_id = cases.id AND rp.signer_reader_id = ${readerId})`;
}

/** Whether the case is assigned (pushed) to the reader. */
export function assignedTo(readerId: string): RawBuilder<SqlBool> {
  return sql<SqlBool>`cases.assigned_reader_id = ${readerId}`;
}

/** Whether the reader holds a live lease on the case. */
export function leasedBy(readerId: string): RawBuilder<SqlBool> {
  return sql<SqlBool>`(cases.lease_reader_id = ${readerId} AND ${leaseLive})`;
}

/**
 * Cases a reader holds now, in a worklist status: those pushed to them plus live claims of pool cases. What
 * `max_active` caps and what push routing balances.
 */
export function readerLoad(readerId: RawBuilder<string> | string): RawBuilder<number> {
  const id = typeof readerId === 'string' ? sql`${readerId}` : readerId;
  const status = sql`lc.status IN (${sql.join(WORKLIST_STATUSES.map((s) => sql.lit(s)))})`;
  return sql<number>`((SELECT count(*) FROM cases lc WHERE lc.assigned_reader_id = ${id} AND ${status})
    + (SELECT count(*) FROM cases lc WHERE lc.lease_reader_id = ${id} AND lc.lease_expires_at > now()
       AND lc.assigned_reader_id IS NULL AND ${status}))::int`;
}

/**
 * The visibility rule, in one place: a clinic sees its site's cases; a reader the cases assigned to them,
 * claimed by them, claimable by them, or reported by them; ops and admin everything. Callers answer 404 (not 403) for an
 * invisible case, so ids do not leak.
 */
export function visibleTo(who: Principal) {
  return (eb: ExpressionBuilder<Database, 'cases'>): Expression<SqlBool> => {
    if (who.role === 'clinic') return eb('cases.site_id', '=', who.siteId ?? '');
    if (who.role === 'reader') {
      const id = who.readerId ?? '';
      return sql<SqlBool>`(${assignedTo(id)} OR ${leasedBy(id)} OR ${claimableBy(id)} OR ${signedBy(id)})`;
    }
    return sql<SqlBool>`true`;
  };
}

/** The reader responsible now: the one the case was pushed to, else the one holding a live claim. */
const responsibleReader = sql<
  string | null
>`coalesce(cases.assigned_reader_id, CASE WHEN ${leaseLive} THEN cases.lease_reader_id END)`;

/** The case columns every summary (case list, worklist) carries. */
const SUMMARY_COLUMNS = [
  'cases.id',
  'cases.kind',
  'cases.status',
  'cases.priority',
  'cases.priority_reason',
  'cases.site_id',
  'cases.created_at',
  'cases.routed_at',
] as const;

function caseSummaries(db: Db) {
  return db
    .selectFrom('cases')
    .leftJoin('artifacts', (j) =>
      j.onRef('artifacts.case_id', '=', 'cases.id').on('artifacts.name', '=', 'thumbnail'),
    )
    .select([...SUMMARY_COLUMNS, responsibleReader.as('reader_id'), 'artifacts.name as thumbnail']);
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

// ---- worklist ----

export type WorklistState = 'assigned' | 'claimed' | 'claimable';

/** Worklist counts are exact up to this many cases per part (own, pool); beyond it they say `capped`. */
export const WORKLIST_COUNT_CAP = 1000;

export interface WorklistFilter {
  kind?: CaseKind | undefined;
  priority?: Priority | undefined;
  state?: WorklistState | undefined;
  /** Opaque, from a previous page's `nextCursor`. */
  cursor?: string | undefined;
  limit: number;
}

export interface WorklistReader {
  id: string;
  active: boolean;
  specialties: string[];
  subspecialties: string[];
  languages: string[];
  jurisdictions: string[];
}

/** The keyset a page ends on: worklist order is (priority rank, due time, id). */
interface CursorKey {
  rank: number;
  /** ISO 8601 with microseconds: PostgreSQL keeps them and a millisecond Date would skip or repeat rows. */
  due: string;
  id: string;
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const ISO_MICROS = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$/;

export function encodeCursor(key: CursorKey): string {
  return Buffer.from(JSON.stringify([key.rank, key.due, key.id])).toString('base64url');
}

export function decodeCursor(cursor: string): CursorKey {
  let v: unknown;
  try {
    v = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8'));
  } catch {
    v = null;
  }
  if (
    !Array.isArray(v) ||
    v.length !== 3 ||
    !Number.isInteger(v[0]) ||
    typeof v[1] !== 'string' ||
    !ISO_MICROS.test(v[1]) ||
    typeof v[2] !== 'string' ||
    !UUID.test(v[2])
  ) {
    throw new AppError('VALIDATION_FAILED', 'cursor is not one this API returned');
  }
  return { rank: v[0] as number, due: v[1], id: v[2] };
}

export async function getWorklistReader(db: Db, readerId: string): Promise<WorklistReader | undefined> {
  return db
    .selectFrom('readers')
    .select(['id', 'active', 'specialties', 'subspecialties', 'languages', 'jurisdictions'])
    .where('id', '=', readerId)
    .executeTakeFirst();
}

/** One part of a worklist, read from its own index in worklist order. */
interface WorklistBranch {
  state: WorklistState;
  /** Which count the branch adds to: the reader's own cases, or the pool cases they may claim. */
  part: 'own' | 'pool';
  where: RawBuilder<SqlBool>;
}

/**
 * A reader's worklist: cases assigned to them, cases they have claimed, and pool cases they may claim, most
 * urgent first (priority, then due time, then id), one keyset page at a time, with counts over all pages.
 *
 * Each part is a branch of its own, read in worklist order from its own index (0010's cases_worklist_assigned,
 * cases_worklist_claimed, and cases_worklist_pool once per specialty) and cut at limit + 1; the branches are
 * merged with UNION ALL. No request sorts a reader's whole list or a whole pool. The page and the counts are two
 * statements, sent at once.
 */
export async function getWorklistForReader(db: Db, reader: WorklistReader, filter: WorklistFilter) {
  const after = filter.cursor ? decodeCursor(filter.cursor) : null;
  const array = (a: string[]) => sql<string[]>`${a}::text[]`;
  // The site's rule as a semi-join, not a join: own cases never need the sites table, and the pool branches keep
  // their index order.
  const admitted = sql<SqlBool>`EXISTS (SELECT 1 FROM sites s WHERE s.id = cases.site_id AND ${poolAdmits(
    {
      specialties: array(reader.specialties),
      subspecialties: array(reader.subspecialties),
      languages: array(reader.languages),
      jurisdictions: array(reader.jurisdictions),
    },
    { jurisdiction: sql.ref('s.jurisdiction'), policy: sql.ref('s.cross_border_policy') },
  )})`;
  const wants = (state: WorklistState) => filter.state === undefined || filter.state === state;
  const branches: WorklistBranch[] = [
    ...(wants('assigned') ? [{ state: 'assigned', part: 'own', where: assignedTo(reader.id) } as const] : []),
    ...(wants('claimed')
      ? [
          {
            state: 'claimed',
            part: 'own',
            where: sql<SqlBool>`(${unassigned} AND ${leasedBy(reader.id)})`,
          } as const,
        ]
      : []),
    // An inactive reader keeps their own cases but is in no pool. One branch per specialty, so each reads its
    // own range of cases_worklist_pool (pool_specialty first) in order.
    ...(wants('claimable') && reader.active
      ? reader.specialties.map(
          (specialty) =>
            ({
              state: 'claimable',
              part: 'pool',
              where: sql<SqlBool>`(cases.pool_specialty = ${specialty} AND ${inFreePool} AND ${admitted})`,
            }) as const,
        )
      : []),
  ];
  const filtered = (b: WorklistBranch) => {
    let q = db.selectFrom('cases').where(worklistStatus).where(b.where);
    if (filter.kind) q = q.where('cases.kind', '=', filter.kind);
    // The priority the clinic asked for; every worklist index INCLUDEs it, so the filter costs no table visit.
    if (filter.priority) q = q.where('cases.priority_rank', '=', PRIORITY_RANK[filter.priority]);
    return q;
  };
  // Each branch reads only index columns (an index-only scan that stops after limit + 1 entries); the table is
  // visited for the limit + 1 entries of the merged page alone.
  const keysOf = (b: WorklistBranch) => {
    let q = filtered(b).select([
      'cases.id',
      'cases.queue_rank',
      'cases.due_at',
      sql<WorklistState>`${sql.lit(b.state)}::text`.as('state'),
    ]);
    if (after) {
      q = q.where(
        sql<SqlBool>`(cases.queue_rank, cases.due_at, cases.id) > (${after.rank}, ${after.due}::timestamptz, ${after.id}::uuid)`,
      );
    }
    return q
      .orderBy('cases.queue_rank')
      .orderBy('cases.due_at')
      .orderBy('cases.id')
      .limit(filter.limit + 1);
  };
  function readPage() {
    const [first, ...rest] = branches.map((b, i) => db.selectFrom(keysOf(b).as(`b${i}`)).selectAll());
    const merged = rest.reduce((u, q) => u.unionAll(q), first!);
    const page = db
      .selectFrom(merged.as('m'))
      .selectAll()
      .orderBy('m.queue_rank')
      .orderBy('m.due_at')
      .orderBy('m.id')
      .limit(filter.limit + 1);
    return db
      .selectFrom(page.as('k'))
      .innerJoin('cases', 'cases.id', 'k.id')
      .leftJoin('artifacts', (j) =>
        j.onRef('artifacts.case_id', '=', 'cases.id').on('artifacts.name', '=', 'thumbnail'),
      )
      .select([
        ...SUMMARY_COLUMNS,
        'cases.due_at',
        'cases.flags',
        'cases.pool_id',
        'cases.queue_rank',
        responsibleReader.as('reader_id'),
        'k.state',
        sql<Date | null>`CASE WHEN ${leasedBy(reader.id)} THEN cases.lease_expires_at END`.as(
          'lease_expires_at',
        ),
        sql<string>`to_char(cases.due_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')`.as('due_key'),
        'artifacts.name as thumbnail',
      ])
      .orderBy('k.queue_rank')
      .orderBy('k.due_at')
      .orderBy('k.id')
      .execute();
  }
  // Counting stops at the cap in every branch: a pool of 50,000 cases would otherwise cost a full scan on every
  // request. Without an ORDER BY, each branch is an index-only scan of its partial index; the sum of the capped
  // branches passes the cap exactly when the part does.
  const countOf = (part: WorklistBranch['part']) => {
    const counted = branches
      .filter((b) => b.part === part)
      .map(
        (b) =>
          sql<number>`(SELECT count(*)::int FROM (${filtered(b)
            .select(sql`1`.as('one'))
            .limit(WORKLIST_COUNT_CAP + 1)}) c)`,
      );
    return counted.length === 0 ? sql<number>`0` : sql<number>`(${sql.join(counted, sql` + `)})`;
  };
  // A reader with no specialty asking for claimable cases only, say, has nothing to read.
  const [rows, { own: mine, pool }] =
    branches.length === 0
      ? [[], { own: 0, pool: 0 }]
      : await Promise.all([
          readPage(),
          db.selectNoFrom([countOf('own').as('own'), countOf('pool').as('pool')]).executeTakeFirstOrThrow(),
        ]);
  const more = rows.length > filter.limit;
  const items = more ? rows.slice(0, filter.limit) : rows;
  const last = items.at(-1);
  return {
    items,
    nextCursor: more && last ? encodeCursor({ rank: last.queue_rank, due: last.due_key, id: last.id }) : null,
    counts: {
      assigned: Math.min(mine, WORKLIST_COUNT_CAP),
      claimable: Math.min(pool, WORKLIST_COUNT_CAP),
      total: Math.min(mine, WORKLIST_COUNT_CAP) + Math.min(pool, WORKLIST_COUNT_CAP),
      capped: mine > WORKLIST_COUNT_CAP || pool > WORKLIST_COUNT_CAP,
    },
  };
}

export type WorklistRow = Awaited<ReturnType<typeof getWorklistForReader>>['items'][number];

/**
 * Whether the principal may see the case's identified data, as SQL: readers licensed in the site's
 * jurisdiction (or any reader, for a site that allows identified cross-border reading), the clinic and admins.
 * Ops never (they see no patient). See src/api/redact.ts.
 */
function identifiedViewFor(who: Principal): RawBuilder<boolean> {
  if (who.role === 'clinic' || who.role === 'admin') return sql<boolean>`true`;
  if (who.role !== 'reader') return sql<boolean>`false`;
  return sql<boolean>`EXISTS (SELECT 1 FROM readers r JOIN sites s ON s.id = cases.site_id
    WHERE r.id = ${who.readerId ?? ''} AND (s.jurisdiction = ANY(r.jurisdictions) OR s.cross_border_policy = 'identified'))`;
}

/** What a study search knows of the cases it wants before it reads their headers. */
export interface StudyCaseFilter {
  /** Only these cases (the study UIDs the search names, resolved for the caller). */
  caseIds?: string[];
  /** The Patient ID the search names exactly: as a case seen identified holds it in its files, or as the case's
   * pseudonym when seen de-identified (`pseudonymOf` is the case the pseudonym names, if it names one). */
  patientId?: { id: string; pseudonymOf: string | undefined };
  /** Only cases holding an instance in one of these formats that did not fail and is not a duplicate. */
  holding?: string[];
}

/** The principal's most recent cases that hold a DICOM study, with `identified_view`, in one query (a DICOMweb
 * study search), narrowed by what the search names. */
export async function getStudyCasesForPrincipal(
  db: Db,
  who: Principal,
  limit: number,
  filter: StudyCaseFilter = {},
) {
  let q = db
    .selectFrom('cases')
    .select(['cases.id', identifiedViewFor(who).as('identified_view')])
    .where('cases.study_instance_uid', 'is not', null)
    .where(visibleTo(who));
  if (filter.caseIds) {
    if (filter.caseIds.length === 0) return [];
    q = q.where('cases.id', 'in', filter.caseIds);
  }
  const patient = filter.patientId;
  if (patient) {
    // Seen identified: a file of the case holds the ID (files_case index). Seen de-identified: the pseudonym.
    q = q.where(sql<boolean>`CASE WHEN ${identifiedViewFor(who)}
      THEN EXISTS (SELECT 1 FROM files f WHERE f.case_id = cases.id AND f.patient ->> 'id' = ${patient.id})
      ELSE cases.id::text = ${patient.pseudonymOf ?? ''} END`);
  }
  if (filter.holding) {
    q = q.where(sql<boolean>`EXISTS (SELECT 1 FROM files f WHERE f.case_id = cases.id
      AND f.format = ANY(${filter.holding}) AND f.status <> 'failed' AND f.duplicate_of IS NULL
      AND f.sop_instance_uid IS NOT NULL)`);
  }
  return q.orderBy('cases.created_at', 'desc').orderBy('cases.id').limit(limit).execute();
}

/** The case if the principal may see it, with `identified_view`: whether they may see it identified. */
export async function getCaseForPrincipal(db: Db, who: Principal, caseId: string) {
  return db
    .selectFrom('cases')
    .selectAll('cases')
    .select(identifiedViewFor(who).as('identified_view'))
    .where('cases.id', '=', caseId)
    .where(visibleTo(who))
    .executeTakeFirst();
}

export type CaseForPrincipal = NonNullable<Awaited<ReturnType<typeof getCaseForPrincipal>>>;

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
    getResponsibleReader(db, caseId),
  ]);
  return { files, artifacts, assignment };
}

/** Who is responsible for a case now: its live assignment, else the holder of a live claim. */
async function getResponsibleReader(db: Db, caseId: string) {
  const assigned = await db
    .selectFrom('assignments')
    .innerJoin('readers', 'readers.id', 'assignments.reader_id')
    .select(['readers.id', 'readers.name', 'assignments.assigned_at', 'assignments.reason'])
    .where('assignments.case_id', '=', caseId)
    .where('assignments.released_at', 'is', null)
    .executeTakeFirst();
  if (assigned) return assigned;
  const claimed = await db
    .selectFrom('cases')
    .innerJoin('readers', 'readers.id', 'cases.lease_reader_id')
    .select([
      'readers.id',
      'readers.name',
      sql<Date>`coalesce(cases.claimed_at, now())`.as('assigned_at'),
      sql<string>`'claimed from pool ' || coalesce(cases.pool_id, '?')`.as('reason'),
    ])
    .where('cases.id', '=', caseId)
    .where(leaseLive)
    .executeTakeFirst();
  return claimed;
}

// ---- claims and leases ----

export interface Lease {
  caseId: string;
  readerId: string;
  leaseExpiresAt: Date;
}

/**
 * Takes (or renews) the caller's lease on a case: one atomic UPDATE whose WHERE requires the lease to be free
 * (or already the caller's). Concurrent claims queue on the row lock; when the first commits, PostgreSQL
 * re-checks the WHERE of each waiting UPDATE against the new row, finds the lease taken and updates nothing,
 * so exactly one claim wins and the others get CONFLICT. The reader's row is locked first so that two claims
 * by the same reader cannot both slip under `max_active`.
 */
export async function claimCase(
  db: Db,
  who: Principal,
  caseId: string,
  leaseSeconds: number,
  requestId: string,
): Promise<Lease> {
  const readerId = who.readerId ?? '';
  return db.transaction().execute(async (trx) => {
    const reader = await trx
      .selectFrom('readers')
      .select(['id', 'max_active', readerLoad(sql.ref('readers.id')).as('load')])
      .where('id', '=', readerId)
      .forUpdate()
      .executeTakeFirst();
    if (!reader) throw new AppError('NOT_FOUND', `no case ${caseId}`);
    const hasRoom = reader.load < reader.max_active;
    const won = await trx
      .updateTable('cases')
      .set({
        lease_reader_id: readerId,
        lease_expires_at: sql`now() + make_interval(secs => ${leaseSeconds})`,
        // SET sees the old row: a renewal keeps the time of the first claim.
        claimed_at: sql`CASE WHEN ${leasedBy(readerId)} THEN cases.claimed_at ELSE now() END`,
        updated_at: sql`now()`,
      })
      .where('cases.id', '=', caseId)
      .where(worklistStatus)
      .where(
        sql<SqlBool>`(${assignedTo(readerId)} OR ${leasedBy(readerId)} OR (${claimableBy(readerId)} AND ${hasRoom}))`,
      )
      .returning(['cases.lease_expires_at', 'cases.claimed_at'])
      .executeTakeFirst();
    if (!won) throw await whyNotClaimed(trx, readerId, caseId, reader);
    await recordCaseEvent(trx, who, requestId, 'case.claimed', caseId, {
      readerId,
      leaseExpiresAt: won.lease_expires_at!.toISOString(),
    });
    return { caseId, readerId, leaseExpiresAt: won.lease_expires_at! };
  });
}

/** The error for a claim that did not win, worded so it says nothing about cases the reader may not see. */
async function whyNotClaimed(
  trx: Db,
  readerId: string,
  caseId: string,
  reader: { max_active: number; load: number },
): Promise<AppError> {
  const row = await trx
    .selectFrom('cases')
    .select([
      'cases.status',
      'cases.lease_expires_at',
      sql<boolean>`${inPoolOf(readerId)}`.as('in_pool'),
      sql<boolean>`${leaseLive}`.as('leased'),
    ])
    .where('cases.id', '=', caseId)
    .executeTakeFirst();
  if (!row?.in_pool) return new AppError('NOT_FOUND', `no case ${caseId}`);
  if (!WORKLIST_STATUSES.includes(row.status)) {
    return new AppError('CONFLICT', `case ${caseId} is ${row.status}, not open for reading`);
  }
  if (row.leased) {
    return new AppError(
      'CONFLICT',
      `case ${caseId} is being read by another reader (lease until ${row.lease_expires_at!.toISOString()})`,
    );
  }
  return new AppError(
    'CONFLICT',
    `you hold ${reader.load} active case(s), your maximum is ${reader.max_active}; release one first`,
  );
}

/** Renews the caller's live lease. An expired lease is not revived: the case went back to the pool. */
export async function renewLease(
  db: Db,
  who: Principal,
  caseId: string,
  leaseSeconds: number,
): Promise<Lease> {
  const readerId = who.readerId ?? '';
  const renewed = await db
    .updateTable('cases')
    .set({ lease_expires_at: sql`now() + make_interval(secs => ${leaseSeconds})` })
    .where('cases.id', '=', caseId)
    .where(worklistStatus)
    .where(leasedBy(readerId))
    .returning('cases.lease_expires_at')
    .executeTakeFirst();
  if (renewed) return { caseId, readerId, leaseExpiresAt: renewed.lease_expires_at! };
  if (!(await getCaseForPrincipal(db, who, caseId))) throw new AppError('NOT_FOUND', `no case ${caseId}`);
  throw new AppError('CONFLICT', `you hold no live lease on case ${caseId}; claim it again`);
}

/**
 * Gives a case back: the caller's lease ends and, if the case was pushed to them, so does the assignment.
 * The case returns to its pool, claimable by every qualified reader.
 */
export async function releaseCase(
  db: Db,
  who: Principal,
  caseId: string,
  requestId: string,
): Promise<{ caseId: string; poolId: string | null }> {
  const readerId = who.readerId ?? '';
  return db.transaction().execute(async (trx) => {
    const released = await trx
      .updateTable('cases')
      .set({ lease_reader_id: null, lease_expires_at: null, claimed_at: null, updated_at: sql`now()` })
      .where('cases.id', '=', caseId)
      .where(sql<SqlBool>`(${assignedTo(readerId)} OR ${leasedBy(readerId)})`)
      .returning(['cases.pool_id'])
      .executeTakeFirst();
    if (!released) {
      if (!(await getCaseForPrincipal(trx, who, caseId)))
        throw new AppError('NOT_FOUND', `no case ${caseId}`);
      throw new AppError('CONFLICT', `case ${caseId} is neither assigned to you nor claimed by you`);
    }
    const ended = await trx
      .updateTable('assignments')
      .set({ released_at: sql`now()` })
      .where('case_id', '=', caseId)
      .where('reader_id', '=', readerId)
      .where('released_at', 'is', null)
      .returning('id')
      .execute();
    await recordCaseEvent(trx, who, requestId, 'case.released', caseId, {
      readerId,
      assignmentEnded: ended.length > 0,
      poolId: released.pool_id,
    });
    return { caseId, poolId: released.pool_id };
  });
}

/**
 * Ops hand a case to a named reader, whatever its state (routed, or ready and waiting for a reader). The reader
 * must be active, hold the case's specialty and be allowed to see its data across any border; their cap is not
 * checked, ops override it knowingly. Any claim on the case ends.
 */
export async function reassignCase(
  db: Db,
  who: Principal,
  caseId: string,
  toReaderId: string,
  note: string | undefined,
  requestId: string,
): Promise<{ caseId: string; readerId: string; previousReaderId: string | null }> {
  return db.transaction().execute(async (trx) => {
    const kase = await trx
      .selectFrom('cases')
      .innerJoin('sites', 'sites.id', 'cases.site_id')
      .select([
        'cases.id',
        'cases.kind',
        'cases.status',
        'cases.pool_specialty',
        'cases.deidentified_abroad',
        'sites.jurisdiction',
        'sites.cross_border_policy',
      ])
      .where('cases.id', '=', caseId)
      .forUpdate('cases')
      .executeTakeFirst();
    if (!kase) throw new AppError('NOT_FOUND', `no case ${caseId}`);
    if (kase.status !== 'ready' && !WORKLIST_STATUSES.includes(kase.status)) {
      throw new AppError('CONFLICT', `case ${caseId} is ${kase.status}; only cases ready or in reading move`);
    }
    const reader = await trx
      .selectFrom('readers')
      .select(['id', 'active', 'specialties', 'jurisdictions'])
      .where('id', '=', toReaderId)
      .executeTakeFirst();
    if (!reader) throw new AppError('VALIDATION_FAILED', `no reader ${toReaderId}`);
    const specialty = kase.pool_specialty ?? SPECIALTY_FOR_KIND[kase.kind];
    if (!reader.active) throw new AppError('CONFLICT', `reader ${toReaderId} is inactive`);
    if (!reader.specialties.includes(specialty)) {
      throw new AppError('CONFLICT', `reader ${toReaderId} does not read ${specialty}`);
    }
    const site = { jurisdiction: kase.jurisdiction, crossBorderPolicy: kase.cross_border_policy };
    // A reader abroad may take a "deidentified" site's case only once routing has opened it abroad: routing is
    // what checks that nobody at home could take it and that no instance has burned-in annotation.
    const abroadAllowed = mayReceiveDeidentified(reader, site) && kase.deidentified_abroad;
    if (!mayReceiveIdentified(reader, site) && !abroadAllowed) {
      throw new AppError(
        'CONFLICT',
        `reader ${toReaderId} is not licensed in ${kase.jurisdiction} and the site's cross-border policy is ${kase.cross_border_policy}${kase.cross_border_policy === 'deidentified' ? ' (the case has not been opened to readers abroad)' : ''}`,
      );
    }
    const previous = await trx
      .updateTable('assignments')
      .set({ released_at: sql`now()` })
      .where('case_id', '=', caseId)
      .where('released_at', 'is', null)
      .returning('reader_id')
      .executeTakeFirst();
    const reason = `reassigned by ${who.role}${note ? `: ${note}` : ''}`;
    await trx.insertInto('assignments').values({ case_id: caseId, reader_id: toReaderId, reason }).execute();
    await trx
      .updateTable('cases')
      .set({
        status: 'routed',
        routed_at: sql`coalesce(routed_at, now())`,
        route_note: reason,
        lease_reader_id: null,
        lease_expires_at: null,
        claimed_at: null,
        pool_specialty: sql`coalesce(pool_specialty, ${specialty})`,
        pool_id: sql`coalesce(pool_id, ${specialty})`,
        updated_at: sql`now()`,
      })
      .where('id', '=', caseId)
      .execute();
    await recordCaseEvent(trx, who, requestId, 'case.reassigned', caseId, {
      from: previous?.reader_id ?? null,
      to: toReaderId,
      ...(note ? { note } : {}),
    });
    return { caseId, readerId: toReaderId, previousReaderId: previous?.reader_id ?? null };
  });
}
