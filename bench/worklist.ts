/**
 * Issue 6's check: `GET /v1/worklist` with 100,000 cases in the database and 50 concurrent readers, as req/s and
 * p99, against Fastify's hello-world ceiling measured in the same run. Goal: ≥ 3,000 req/s at p99 < 50 ms.
 *
 * A throw-away database is migrated by starting `bin/teleread api` (MIGRATE_ON_START), then seeded straight
 * through SQL, in bulk: 8 sites in 4 jurisdictions, 60 readers (radiology, cardiology, pathology, licensed where
 * their sites are) with one reader key each, and BENCH_WORKLIST_CASES cases as a hub would hold them: most pushed
 * to a reader, a share in pull pools (some under a live claim), and a share reported and closed. Priorities,
 * ages, due times and escalation levels are spread as the SLA would leave them, and most cases have a thumbnail
 * (the worklist joins it). Then VACUUM ANALYZE, as autovacuum would have done on a live database.
 *
 * Load: autocannon, in this process, on 127.0.0.1, 50 connections; each connection cycles through 50 requests
 * that differ only in their reader key, so 50 readers are served at once and the generator builds no request at
 * run time. A 2 s warm-up, then 10 s measured; 3 passes each of the worklist and of a minimal Fastify
 * hello-world (its own process, logger off, the same requests and keys), alternating which goes first. The
 * generator shares the machine's cores with the server it loads: both figures pay for that alike. One more pass
 * loads the API's /healthz, as context: how much of the gap is the framework and hooks, how much the worklist.
 *
 * Environment: BENCH_WORKLIST_CASES (default 100000), BENCH_WORKLIST_QUERY (query string, default none: the
 * API's default page), BENCH_PG_URL, REDIS_URL.
 */
import { randomUUID } from 'node:crypto';
import { createRequire } from 'node:module';
import { pathToFileURL } from 'node:url';
import pg from 'pg';
import { generateKey } from '../src/api/auth.js';
import {
  alternate,
  type BenchRow,
  Deadline,
  freePort,
  median,
  msSince,
  row,
  runBench,
  spawnService,
  stats,
  waitFor,
  zip,
} from './lib.js';
import { freshEnvironment, TELEREAD } from './services.js';

const CASES = Math.max(1000, Math.min(1_000_000, Number(process.env.BENCH_WORKLIST_CASES ?? 100_000)));
const QUERY = process.env.BENCH_WORKLIST_QUERY ?? '';
const CONNECTIONS = 50;
const READER_KEYS = 50;
const WARMUP_S = 2;
const DURATION_S = 10;
/** Odd: the alternating order puts the worklist first twice and the hello-world first once. */
const PASSES = 3;
const GOAL_RPS = 3000;
const GOAL_P99_MS = 50;

// ---------------------------------------------------------------------------------------------------------
// autocannon (no type declarations are published; this is the part of its API used here)

interface AutocannonRequest {
  method: 'GET';
  path: string;
  headers: Record<string, string>;
}
interface AutocannonResult {
  duration: number;
  errors: number;
  timeouts: number;
  non2xx: number;
  '2xx': number;
  statusCodeStats: Record<string, { count: number }>;
  latency: { p50: number; p99: number; average: number; max: number };
  requests: { total: number };
}
type Autocannon = (opts: {
  url: string;
  connections: number;
  duration: number;
  warmup?: { connections: number; duration: number };
  requests: AutocannonRequest[];
  timeout?: number;
}) => Promise<AutocannonResult>;

const require = createRequire(import.meta.url);
const autocannon = require('autocannon') as Autocannon;

/** The reference: Fastify's hello-world as its README shows it, logger off, in its own process. */
const HELLO_SERVER = `
const fastify = require(process.env.FASTIFY_PATH)({ logger: false });
fastify.get('/hello', async () => ({ hello: 'world' }));
fastify.listen({ host: '127.0.0.1', port: Number(process.env.PORT) }).then(() => console.log('ready'));
`;

// ---------------------------------------------------------------------------------------------------------
// The data set

/** Deterministic, so every run seeds the same mix. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function pick<T>(rand: () => number, items: readonly T[]): T {
  return items[Math.floor(rand() * items.length)]!;
}

function weighted<T>(rand: () => number, items: ReadonlyArray<readonly [T, number]>): T {
  const total = items.reduce((s, [, w]) => s + w, 0);
  let r = rand() * total;
  for (const [item, w] of items) {
    r -= w;
    if (r < 0) return item;
  }
  return items[items.length - 1]![0];
}

type Specialty = 'radiology' | 'cardiology' | 'pathology';
type Kind = 'imaging' | 'ecg' | 'pathology';
type Priority = 'stat' | 'urgent' | 'routine';

interface Site {
  id: string;
  jurisdiction: string;
  policy: 'never' | 'identified';
  sla: Record<Priority, number>;
  weight: number;
}

interface Reader {
  id: string;
  specialty: Specialty;
  subspecialties: string[];
  languages: string[];
  jurisdictions: string[];
}

const DEFAULT_SLA = { stat: 60, urgent: 240, routine: 1440 };
const SITES: Site[] = [
  { id: 'nairobi-general', jurisdiction: 'KE', policy: 'never', sla: DEFAULT_SLA, weight: 20 },
  { id: 'mombasa-coast', jurisdiction: 'KE', policy: 'never', sla: DEFAULT_SLA, weight: 12 },
  {
    id: 'kisumu-lakeside',
    jurisdiction: 'KE',
    policy: 'never',
    sla: { ...DEFAULT_SLA, stat: 45 },
    weight: 8,
  },
  { id: 'kampala-imaging', jurisdiction: 'UG', policy: 'never', sla: DEFAULT_SLA, weight: 16 },
  { id: 'gulu-regional', jurisdiction: 'UG', policy: 'never', sla: DEFAULT_SLA, weight: 6 },
  { id: 'dar-heart', jurisdiction: 'TZ', policy: 'never', sla: { ...DEFAULT_SLA, urgent: 180 }, weight: 14 },
  { id: 'arusha-clinic', jurisdiction: 'TZ', policy: 'never', sla: DEFAULT_SLA, weight: 8 },
  { id: 'kigali-central', jurisdiction: 'RW', policy: 'identified', sla: DEFAULT_SLA, weight: 16 },
];
const SPECIALTY_OF: Record<Kind, Specialty> = {
  imaging: 'radiology',
  ecg: 'cardiology',
  pathology: 'pathology',
};
const SUBSPECIALTIES: Record<Specialty, readonly string[]> = {
  radiology: ['neuro', 'chest', 'msk', 'body', 'breast', 'paediatric'],
  cardiology: [],
  pathology: ['histology', 'cytology'],
};
/** Readers per specialty and their home jurisdictions, roughly where the sites' work comes from. */
const READER_PLAN: Array<[Specialty, number]> = [
  ['radiology', 30],
  ['cardiology', 15],
  ['pathology', 15],
];
const JURISDICTION_WEIGHTS: Array<[string, number]> = [
  ['KE', 40],
  ['UG', 22],
  ['TZ', 22],
  ['RW', 16],
];

function makeReaders(rand: () => number): Reader[] {
  const readers: Reader[] = [];
  for (const [specialty, count] of READER_PLAN) {
    for (let i = 0; i < count; i++) {
      // The first four of each specialty cover one jurisdiction each, so every site has qualified readers.
      const home =
        i < JURISDICTION_WEIGHTS.length ? JURISDICTION_WEIGHTS[i]![0] : weighted(rand, JURISDICTION_WEIGHTS);
      const jurisdictions = [home];
      if (rand() < 0.3) {
        const other = weighted(rand, JURISDICTION_WEIGHTS);
        if (other !== home) jurisdictions.push(other);
      }
      const subs = SUBSPECIALTIES[specialty];
      const subspecialties =
        subs.length === 0
          ? []
          : [...new Set([pick(rand, subs), pick(rand, subs), ...(i < subs.length ? [subs[i]!] : [])])];
      const languages = ['en', ...(home === 'RW' ? ['fr', 'rw'] : home === 'UG' ? [] : ['sw'])];
      readers.push({
        id: `${specialty.slice(0, 4)}-${String(i + 1).padStart(2, '0')}`,
        specialty,
        subspecialties,
        languages,
        jurisdictions,
      });
    }
  }
  return readers;
}

/** Column arrays for one INSERT … SELECT FROM unnest(…): a single round trip per chunk of rows. */
interface CaseColumns {
  id: string[];
  site_id: string[];
  kind: string[];
  status: string[];
  priority: string[];
  created_at: string[];
  routed_at: string[];
  reported_at: (string | null)[];
  pool_id: string[];
  pool_specialty: string[];
  pool_subspecialty: (string | null)[];
  pool_language: (string | null)[];
  assigned_reader_id: (string | null)[];
  lease_reader_id: (string | null)[];
  lease_expires_at: (string | null)[];
  escalation_level: number[];
}

interface AssignmentColumns {
  case_id: string[];
  reader_id: string[];
  assigned_at: string[];
  released_at: (string | null)[];
}

interface Mix {
  pushed: number;
  pooled: number;
  claimed: number;
  reported: number;
}

/**
 * The cases, as routing and signing would have left them. Shares: 10 % reported (closed: the assignment
 * released, as signing does), 20 % in a pull pool (one in ten of those under a live claim), 70 % pushed to a
 * reader of the specialty licensed in the site's jurisdiction. Open cases are between 0 and 1.5 SLA periods
 * old, so about a third are overdue; escalation levels follow their age (50 % → 1, 80 % → 2).
 */
function makeCases(rand: () => number, readers: Reader[], count: number, now: number) {
  const cases: CaseColumns = {
    id: [],
    site_id: [],
    kind: [],
    status: [],
    priority: [],
    created_at: [],
    routed_at: [],
    reported_at: [],
    pool_id: [],
    pool_specialty: [],
    pool_subspecialty: [],
    pool_language: [],
    assigned_reader_id: [],
    lease_reader_id: [],
    lease_expires_at: [],
    escalation_level: [],
  };
  const assignments: AssignmentColumns = { case_id: [], reader_id: [], assigned_at: [], released_at: [] };
  const mix: Mix = { pushed: 0, pooled: 0, claimed: 0, reported: 0 };
  const siteWeights = SITES.map((s) => [s, s.weight] as const);
  const eligible = new Map<string, Reader[]>();
  const readersFor = (specialty: Specialty, jurisdiction: string) => {
    const key = `${specialty}@${jurisdiction}`;
    let list = eligible.get(key);
    if (!list) {
      list = readers.filter((r) => r.specialty === specialty && r.jurisdictions.includes(jurisdiction));
      eligible.set(key, list);
    }
    if (list.length === 0) throw new Error(`no ${specialty} reader licensed in ${jurisdiction}`);
    return list;
  };
  const iso = (ms: number) => new Date(ms).toISOString();
  for (let i = 0; i < count; i++) {
    const site = weighted(rand, siteWeights);
    const kind = weighted<Kind>(rand, [
      ['imaging', 65],
      ['ecg', 20],
      ['pathology', 15],
    ]);
    const priority = weighted<Priority>(rand, [
      ['stat', 5],
      ['urgent', 20],
      ['routine', 75],
    ]);
    const specialty = SPECIALTY_OF[kind];
    const slaMs = site.sla[priority] * 60_000;
    const pool = readersFor(specialty, site.jurisdiction);
    const share = rand();
    const id = randomUUID();
    let created: number;
    let status = 'routed';
    let reported: number | null = null;
    let assigned: string | null = null;
    let lease: string | null = null;
    let leaseExpires: string | null = null;
    let subspecialty: string | null = null;
    let language: string | null = null;
    let escalation = 0;
    if (share < 0.1) {
      // Closed: read and signed within its SLA some time in the last 90 days.
      created = now - 3 * 3600_000 - rand() * 90 * 86400_000;
      reported = created + rand() * slaMs;
      status = 'reported';
      const reader = pick(rand, pool);
      assignments.case_id.push(id);
      assignments.reader_id.push(reader.id);
      assignments.assigned_at.push(iso(created + 60_000));
      assignments.released_at.push(iso(reported));
      leaseExpires = iso(reported);
      mix.reported++;
    } else {
      const age = rand() * 1.5 * slaMs;
      created = now - age;
      escalation = age >= 0.8 * slaMs ? 2 : age >= 0.5 * slaMs ? 1 : 0;
      if (share < 0.3) {
        // A pull pool, narrowed to a subspecialty for most imaging and pathology, to a language for a few.
        const subs = SUBSPECIALTIES[specialty];
        if (subs.length > 0 && rand() < 0.6) {
          const wanted = pick(rand, subs);
          if (pool.some((r) => r.subspecialties.includes(wanted))) subspecialty = wanted;
        }
        if (site.jurisdiction !== 'UG' && rand() < 0.1) language = site.jurisdiction === 'RW' ? 'fr' : 'sw';
        mix.pooled++;
        if (rand() < 0.1) {
          const admitted = pool.filter(
            (r) =>
              (subspecialty === null || r.subspecialties.includes(subspecialty)) &&
              (language === null || r.languages.includes(language)),
          );
          if (admitted.length > 0) {
            lease = pick(rand, admitted).id;
            leaseExpires = iso(now + (1 + rand() * 14) * 60_000);
            mix.claimed++;
          }
        }
      } else {
        const reader = pick(rand, pool);
        assigned = reader.id;
        assignments.case_id.push(id);
        assignments.reader_id.push(reader.id);
        assignments.assigned_at.push(iso(created + 60_000));
        assignments.released_at.push(null);
        mix.pushed++;
      }
    }
    cases.id.push(id);
    cases.site_id.push(site.id);
    cases.kind.push(kind);
    cases.status.push(status);
    cases.priority.push(priority);
    cases.created_at.push(iso(created));
    cases.routed_at.push(iso(created + 60_000));
    cases.reported_at.push(reported === null ? null : iso(reported));
    cases.pool_id.push(
      [specialty, subspecialty].filter(Boolean).join('.') + (language ? `:${language}` : ''),
    );
    cases.pool_specialty.push(specialty);
    cases.pool_subspecialty.push(subspecialty);
    cases.pool_language.push(language);
    cases.assigned_reader_id.push(assigned);
    cases.lease_reader_id.push(lease);
    cases.lease_expires_at.push(leaseExpires);
    cases.escalation_level.push(escalation);
  }
  return { cases, assignments, mix };
}

function slice<T extends object>(columns: T, start: number, end: number): T {
  return Object.fromEntries(
    Object.entries(columns).map(([k, v]) => [k, (v as unknown[]).slice(start, end)]),
  ) as T;
}

const CHUNK = 20_000;

/**
 * Seeds through one connection. Cases carry `assigned_reader_id` as they are inserted, and the assignments are
 * then written with the `assignments_to_case` trigger disabled: the trigger would rewrite every case row a second
 * time (100,000 dead tuples) to set the value it already has. A check afterwards proves the mirror is exact.
 */
export async function seed(
  databaseUrl: string,
): Promise<{ keys: string[]; mix: Mix; readers: Reader[]; ms: number }> {
  const started = process.hrtime.bigint();
  const rand = prng(6);
  const readers = makeReaders(rand);
  const { cases, assignments, mix } = makeCases(rand, readers, CASES, Date.now());
  const db = new pg.Client({ connectionString: databaseUrl });
  await db.connect();
  try {
    for (const s of SITES) {
      await db.query(
        'INSERT INTO sites (id, name, jurisdiction, cross_border_policy, sla_minutes) VALUES ($1, $2, $3, $4, $5)',
        [s.id, s.id, s.jurisdiction, s.policy, JSON.stringify(s.sla)],
      );
    }
    await db.query(
      `INSERT INTO readers (id, name, specialties, subspecialties, languages, jurisdictions, max_active, time_zone)
       SELECT id, id, ARRAY[specialty], string_to_array(subs, ','), string_to_array(langs, ','),
              string_to_array(jurs, ','), 2000, 'Africa/Nairobi'
       FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[]) AS r(id, specialty, subs, langs, jurs)`,
      [
        readers.map((r) => r.id),
        readers.map((r) => r.specialty),
        readers.map((r) => r.subspecialties.join(',')),
        readers.map((r) => r.languages.join(',')),
        readers.map((r) => r.jurisdictions.join(',')),
      ],
    );
    // One key per reader; the load uses the first READER_KEYS of a shuffled list, so all specialties take part.
    const keys: Array<{ readerId: string; key: string }> = [];
    for (const r of readers) {
      const k = generateKey('reader');
      await db.query(
        `INSERT INTO api_keys (key_hash, key_prefix, role, reader_id, label) VALUES ($1, $2, 'reader', $3, 'bench')`,
        [k.hash, k.prefix, r.id],
      );
      keys.push({ readerId: r.id, key: k.key });
    }
    const shuffled = keys
      .map((k) => ({ k, order: rand() }))
      .sort((a, b) => a.order - b.order)
      .map(({ k }) => k.key);

    // due_at comes from the cases_due_at trigger (site contract × priority); sla_scheduled_for is set to the same
    // value, as the SLA sweep leaves a case whose escalation jobs are queued.
    for (let start = 0; start < CASES; start += CHUNK) {
      const c = slice(cases, start, start + CHUNK);
      await db.query(
        `INSERT INTO cases (id, site_id, kind, status, priority, metadata, created_at, updated_at, processed_at,
           routed_at, reported_at, route_note, route_rule, pool_id, pool_specialty, pool_subspecialty, pool_language,
           assigned_reader_id, lease_reader_id, lease_expires_at, claimed_at, escalation_level, escalated_at,
           sla_scheduled_for)
         SELECT c.id, c.site_id, c.kind, c.status, c.priority, '{"modality":"CT"}'::jsonb, c.created_at, c.routed_at,
           c.routed_at, c.routed_at, c.reported_at, 'bench seed', 'default', c.pool_id, c.pool_specialty,
           c.pool_subspecialty, c.pool_language, c.assigned_reader_id, c.lease_reader_id, c.lease_expires_at,
           CASE WHEN c.lease_reader_id IS NOT NULL THEN c.lease_expires_at - interval '15 minutes' END,
           c.escalation_level, CASE WHEN c.escalation_level > 0 THEN c.routed_at END,
           c.created_at + make_interval(mins => (s.sla_minutes ->> c.priority)::int)
         FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], $6::timestamptz[],
                     $7::timestamptz[], $8::timestamptz[], $9::text[], $10::text[], $11::text[], $12::text[],
                     $13::text[], $14::text[], $15::timestamptz[], $16::smallint[])
           AS c(id, site_id, kind, status, priority, created_at, routed_at, reported_at, pool_id, pool_specialty,
                pool_subspecialty, pool_language, assigned_reader_id, lease_reader_id, lease_expires_at,
                escalation_level)
         JOIN sites s ON s.id = c.site_id`,
        [
          c.id,
          c.site_id,
          c.kind,
          c.status,
          c.priority,
          c.created_at,
          c.routed_at,
          c.reported_at,
          c.pool_id,
          c.pool_specialty,
          c.pool_subspecialty,
          c.pool_language,
          c.assigned_reader_id,
          c.lease_reader_id,
          c.lease_expires_at,
          c.escalation_level,
        ],
      );
    }
    await db.query('BEGIN');
    await db.query('ALTER TABLE assignments DISABLE TRIGGER assignments_to_case');
    for (let start = 0; start < assignments.case_id.length; start += CHUNK) {
      const a = slice(assignments, start, start + CHUNK);
      await db.query(
        `INSERT INTO assignments (case_id, reader_id, reason, assigned_at, released_at, completed_at)
         SELECT case_id, reader_id, 'bench seed: least-loaded qualified reader', assigned_at, released_at, released_at
         FROM unnest($1::uuid[], $2::text[], $3::timestamptz[], $4::timestamptz[])
           AS a(case_id, reader_id, assigned_at, released_at)`,
        [a.case_id, a.reader_id, a.assigned_at, a.released_at],
      );
    }
    await db.query('ALTER TABLE assignments ENABLE TRIGGER assignments_to_case');
    await db.query('COMMIT');
    const drift = await db.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM cases c
       WHERE c.assigned_reader_id IS DISTINCT FROM
         (SELECT a.reader_id FROM assignments a WHERE a.case_id = c.id AND a.released_at IS NULL)`,
    );
    if (drift.rows[0]?.n !== 0)
      throw new Error(`${drift.rows[0]?.n} cases disagree with their live assignment`);
    // Most cases have their thumbnail, which the worklist joins; a few (a failed render) do not.
    await db.query(
      `INSERT INTO artifacts (case_id, name, object_key, content_type, bytes, width, height, created_at)
       SELECT id, 'thumbnail', 'sites/' || site_id || '/cases/' || id || '/thumbnail.png', 'image/png',
              18000 + (abs(hashtext(id::text)) % 30000), 256, 256, processed_at
       FROM cases WHERE abs(hashtext(id::text)) % 50 <> 0`,
    );
    await db.query('VACUUM (ANALYZE) sites, readers, api_keys, cases, assignments, artifacts');
    return { keys: shuffled.slice(0, READER_KEYS), mix, readers, ms: msSince(started) };
  } finally {
    await db.end();
  }
}

// ---------------------------------------------------------------------------------------------------------
// Load

interface Pass {
  rps: number;
  p99: number;
  p50: number;
  requests: number;
}

async function load(url: string, path: string, keys: readonly string[]): Promise<Pass> {
  const result = await autocannon({
    url,
    connections: CONNECTIONS,
    duration: DURATION_S,
    warmup: { connections: CONNECTIONS, duration: WARMUP_S },
    timeout: 10,
    requests: keys.map((key) => ({ method: 'GET', path, headers: { authorization: `Bearer ${key}` } })),
  });
  if (result.errors > 0 || result.timeouts > 0 || result.non2xx > 0) {
    throw new Error(
      `${url}${path}: ${result.errors} errors, ${result.timeouts} timeouts, ${result.non2xx} non-2xx ` +
        `(status counts ${JSON.stringify(result.statusCodeStats)})`,
    );
  }
  return {
    rps: result['2xx'] / result.duration,
    p99: result.latency.p99,
    p50: result.latency.p50,
    requests: result['2xx'],
  };
}

interface WorklistPage {
  cases: Array<{ state: string }>;
  counts: { assigned: number; claimable: number; total: number; capped: boolean };
}

/** Every reader key answers 200 with a full page before any load: a 401 storm would measure nothing. */
async function checkWorklists(base: string, path: string, keys: readonly string[]) {
  const pages: WorklistPage[] = [];
  for (const key of keys) {
    const res = await fetch(`${base}${path}`, {
      headers: { authorization: `Bearer ${key}` },
      signal: AbortSignal.timeout(10_000),
    });
    if (res.status !== 200)
      throw new Error(`GET ${path}: HTTP ${res.status} ${(await res.text()).slice(0, 300)}`);
    pages.push((await res.json()) as WorklistPage);
  }
  return {
    pageSize: median(pages.map((p) => p.cases.length)),
    assigned: median(pages.map((p) => p.counts.assigned)),
    claimable: median(pages.map((p) => p.counts.claimable)),
    capped: pages.filter((p) => p.counts.capped).length,
  };
}

async function main(): Promise<BenchRow[]> {
  const deadline = new Deadline(200_000);
  const { env, databaseUrl, apiPort } = await freshEnvironment('worklist');
  const base = `http://127.0.0.1:${apiPort}`;
  // The API migrates the fresh database as it starts; the seed then writes into the migrated schema.
  const api = spawnService(TELEREAD, ['api'], env, 'teleread api');
  await waitFor('the API to answer /healthz', new Deadline(90_000), async () => {
    api.assertRunning();
    return (await fetch(`${base}/healthz`)).ok;
  });

  const seeded = await seed(databaseUrl);
  console.error(
    `bench worklist: seeded ${CASES} cases (${seeded.mix.pushed} pushed, ${seeded.mix.pooled} in pools of which ` +
      `${seeded.mix.claimed} claimed, ${seeded.mix.reported} reported), ${seeded.readers.length} readers, in ` +
      `${(seeded.ms / 1000).toFixed(1)} s`,
  );

  const helloPort = await freePort();
  const hello = spawnService(
    process.execPath,
    ['-e', HELLO_SERVER],
    { ...process.env, PORT: String(helloPort), FASTIFY_PATH: require.resolve('fastify') },
    'fastify hello-world',
  );
  await waitFor('the hello-world server', new Deadline(20_000), async () => {
    hello.assertRunning();
    return hello.output().includes('ready');
  });

  const path = `/v1/worklist${QUERY ? `?${QUERY}` : ''}`;
  const page = await checkWorklists(base, path, seeded.keys);
  console.error(
    `bench worklist: ${path} gives ${page.pageSize} cases a page; counts (median over ${seeded.keys.length} readers) ` +
      `assigned ${page.assigned}, claimable ${page.claimable}; ${page.capped} readers' counts capped`,
  );

  const passes = await alternate(
    PASSES,
    deadline,
    async (i) => {
      api.assertRunning();
      const p = await load(base, path, seeded.keys);
      console.error(`bench worklist: pass ${i + 1} worklist ${p.rps.toFixed(0)} req/s, p99 ${p.p99} ms`);
      return p;
    },
    async (i) => {
      hello.assertRunning();
      const p = await load(`http://127.0.0.1:${helloPort}`, '/hello', seeded.keys);
      console.error(`bench worklist: pass ${i + 1} hello ${p.rps.toFixed(0)} req/s, p99 ${p.p99} ms`);
      return p;
    },
  );
  // Context for reading the gap: the same API process answering a route with no key lookup and no query.
  api.assertRunning();
  const floor = await load(base, '/healthz', seeded.keys);
  console.error(`bench worklist: /healthz ${floor.rps.toFixed(0)} req/s, p99 ${floor.p99} ms`);
  const ours = passes.teleread;
  const ref = passes.reference;
  const rps = stats(ours.map((p) => p.rps));
  const p99 = stats(ours.map((p) => p.p99));
  const met = rps.median >= GOAL_RPS && p99.median < GOAL_P99_MS;
  const goal = { text: `≥ ${GOAL_RPS} req/s at p99 < ${GOAL_P99_MS} ms`, met };
  const setting =
    `${CASES.toLocaleString('en-US')} cases, ${seeded.keys.length} reader keys round-robin, ${CONNECTIONS} connections, ` +
    `${WARMUP_S} s warm-up + ${DURATION_S} s per pass, autocannon in-process on loopback`;
  return [
    row({
      bench: 'worklist',
      measure: `GET ${path} throughput (${page.pageSize} cases a page)`,
      unit: 'req/s',
      teleread: rps,
      reference: { name: 'Fastify hello-world', stats: stats(ref.map((p) => p.rps)) },
      pairs: zip(
        ours.map((p) => p.rps),
        ref.map((p) => p.rps),
      ),
      better: 'higher',
      goal,
      note: setting,
    }),
    row({
      bench: 'worklist',
      measure: `GET ${path} p99 latency`,
      unit: 'ms',
      teleread: p99,
      reference: { name: 'Fastify hello-world', stats: stats(ref.map((p) => p.p99)) },
      pairs: zip(
        ours.map((p) => p.p99),
        ref.map((p) => p.p99),
      ),
      better: 'lower',
      goal,
      note: `p50 ${median(ours.map((p) => p.p50))} ms (hello ${median(ref.map((p) => p.p50))} ms)`,
    }),
    row({
      bench: 'worklist',
      measure: 'context: GET /healthz of the same API process (no key lookup, no query), one pass',
      unit: 'req/s',
      teleread: stats([floor.rps]),
      reference: { name: 'Fastify hello-world', stats: stats(ref.map((p) => p.rps)) },
      better: 'higher',
      note: `p99 ${floor.p99} ms: what Fastify plus Teleread's hooks (request id, auth-failure limiter) leave`,
    }),
  ];
}

// Imported (a profiling session reuses the seed), it only lends its functions; run, it is the benchmark.
if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) runBench('worklist', main);
