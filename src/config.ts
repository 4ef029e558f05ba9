import { AppError } from './errors.js';
import { parseStorageUrl } from './storage/create-object-store.js';

/**
 * Every setting Teleread reads from the environment, validated once at start-up. `loadConfig` collects every
 * bad variable and throws one error listing them all, so an operator fixes a deployment in one pass.
 */
export interface Config {
  databaseUrl: string;
  redisUrl: string;
  /** BullMQ key prefix. Braces make it a Redis Cluster hash tag, so all keys of a queue share a slot. */
  queuePrefix: string;
  storageUrl: string;
  host: string;
  port: number;
  publicUrl: string;
  logLevel: 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';
  concurrency: { ingest: number; process: number; route: number; maintenance: number };
  maxUploadBytes: number;
  thumbnailSize: number;
  sweepIntervalSeconds: number;
  jobLockSeconds: number;
  /** A file stuck this long between two pipeline steps is re-enqueued by the sweep. */
  stuckAfterSeconds: number;
  studyStableSeconds: number;
  /** How long a reader's claim on a case lasts unless renewed by a heartbeat. */
  leaseSeconds: number;
  dicomPort: number;
  dicomAeTitle: string;
  migrateOnStart: boolean;
  /** Unfinished resumable uploads (tus, S3 multipart, open batches) idle this long are removed. */
  uploadExpirySeconds: number;
  /** Where partial tus uploads are kept; '' = `<root>/.tmp/tus` on the fs driver, ./data/tus-staging on S3. */
  tusStagingDir: string;
  /** Report webhooks (src/pipeline/handlers/handle-webhook.ts): parallel deliveries, tries per round, first retry
   * delay (doubling each time) and per-request timeout. */
  webhookConcurrency: number;
  webhookAttempts: number;
  webhookBackoffMs: number;
  webhookTimeoutMs: number;
}

type Env = Record<string, string | undefined>;

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;

/** One row per variable: name, default, and a parser that returns the value or an error string. */
interface Field<T> {
  name: string;
  fallback: string;
  parse: (raw: string) => T | { error: string };
  describe: string;
}

function str(name: string, fallback: string, describe: string, check?: (v: string) => string | null) {
  return {
    name,
    fallback,
    describe,
    parse: (raw: string) => {
      const problem = check?.(raw) ?? null;
      return problem ? { error: problem } : raw;
    },
  } satisfies Field<string>;
}

function int(name: string, fallback: number, describe: string, min: number, max: number) {
  return {
    name,
    fallback: String(fallback),
    describe,
    parse: (raw: string) => {
      const n = Number(raw);
      if (!Number.isInteger(n) || n < min || n > max)
        return { error: `must be an integer from ${min} to ${max}` };
      return n;
    },
  } satisfies Field<number>;
}

function bool(name: string, fallback: boolean, describe: string) {
  return {
    name,
    fallback: String(fallback),
    describe,
    parse: (raw: string) => {
      if (/^(1|true|yes|on)$/i.test(raw)) return true;
      if (/^(0|false|no|off)$/i.test(raw)) return false;
      return { error: 'must be true or false' };
    },
  } satisfies Field<boolean>;
}

const urlWith = (schemes: string[]) => (v: string) => {
  try {
    const u = new URL(v);
    return schemes.includes(u.protocol) ? null : `must be a ${schemes.join(' or ')} URL`;
  } catch {
    return 'is not a valid URL';
  }
};

/** The table behind both validation and the README's configuration table (`bin/teleread config`). */
export const CONFIG_FIELDS = {
  databaseUrl: str(
    'DATABASE_URL',
    'postgres://postgres@127.0.0.1:5432/teleread',
    'PostgreSQL, the system of record',
    urlWith(['postgres:', 'postgresql:']),
  ),
  redisUrl: str(
    'REDIS_URL',
    'redis://127.0.0.1:6379',
    'Redis for the BullMQ queues',
    urlWith(['redis:', 'rediss:']),
  ),
  queuePrefix: str(
    'QUEUE_PREFIX',
    '{teleread}',
    'BullMQ key prefix (braces = Redis Cluster hash tag)',
    (v) => (/^[\w{}:.-]{1,64}$/.test(v) ? null : 'must be 1-64 characters of [A-Za-z0-9_{}:.-]'),
  ),
  storageUrl: str(
    'STORAGE_URL',
    'file://./data/objects',
    'Object storage: file://PATH or s3://bucket/prefix?endpoint=…&region=…&forcePathStyle=true',
    (v) => {
      try {
        parseStorageUrl(v);
        return null;
      } catch (err) {
        return err instanceof Error ? err.message : String(err);
      }
    },
  ),
  host: str('HOST', '127.0.0.1', 'Address the API listens on'),
  port: int('PORT', 3000, 'API port (0 = any free port)', 0, 65535),
  publicUrl: str('PUBLIC_URL', '', 'Base URL clients use to reach the API (default http://HOST:PORT)', (v) =>
    v === '' ? null : urlWith(['http:', 'https:'])(v),
  ),
  logLevel: {
    name: 'LOG_LEVEL',
    fallback: 'info',
    describe: 'pino level: fatal, error, warn, info, debug, trace, silent',
    parse: (raw: string) =>
      (LOG_LEVELS as readonly string[]).includes(raw)
        ? (raw as Config['logLevel'])
        : { error: `must be one of ${LOG_LEVELS.join(', ')}` },
  } satisfies Field<Config['logLevel']>,
  ingestConcurrency: int('INGEST_CONCURRENCY', 4, 'Parallel ingest jobs per worker process', 1, 256),
  processConcurrency: int('PROCESS_CONCURRENCY', 2, 'Parallel thumbnail jobs per worker process', 1, 64),
  routeConcurrency: int('ROUTE_CONCURRENCY', 4, 'Parallel routing jobs per worker process', 1, 256),
  maintenanceConcurrency: int('MAINTENANCE_CONCURRENCY', 1, 'Parallel sweep jobs per worker process', 1, 8),
  maxUploadBytes: int('MAX_UPLOAD_BYTES', 4 * 1024 ** 3, 'Largest upload request body, in bytes', 1, 2 ** 50),
  thumbnailSize: int(
    'THUMBNAIL_SIZE',
    256,
    'Longest side of series and study thumbnails, in pixels',
    16,
    4096,
  ),
  sweepIntervalSeconds: int('SWEEP_INTERVAL_SECONDS', 30, 'How often the repair sweep runs', 1, 86400),
  jobLockSeconds: int(
    'JOB_LOCK_SECONDS',
    30,
    'A job whose worker stops renewing its lock (crash, kill -9) goes to another worker after this',
    1,
    3600,
  ),
  stuckAfterSeconds: int(
    'STUCK_AFTER_SECONDS',
    60,
    'Age after which the sweep re-enqueues a stuck row',
    1,
    86400,
  ),
  studyStableSeconds: int(
    'STUDY_STABLE_SECONDS',
    60,
    'A DICOM study is processed and routed once no instance has arrived for this long',
    0,
    86400,
  ),
  leaseSeconds: int(
    'LEASE_SECONDS',
    900,
    "A reader's claim on a case lasts this long unless renewed by a heartbeat; then it returns to the pool",
    1,
    86400,
  ),
  dicomPort: int('DICOM_PORT', 11112, 'DIMSE C-STORE/C-ECHO listener port (0 = any free port)', 0, 65535),
  dicomAeTitle: str('DICOM_AE_TITLE', 'TELEREAD', "Teleread's own AE title (called AE) for DIMSE", (v) =>
    /^[\x20-\x5b\x5d-\x7e]{1,16}$/.test(v) && v.trim() !== ''
      ? null
      : 'must be 1-16 printable characters, no backslash',
  ),
  migrateOnStart: bool('MIGRATE_ON_START', true, 'Run database migrations when the API or a worker starts'),
  uploadExpirySeconds: int(
    'UPLOAD_EXPIRY_SECONDS',
    72 * 3600,
    'Unfinished resumable uploads (tus, S3 multipart, open batches) idle this long are removed by the sweep',
    1,
    30 * 86400,
  ),
  tusStagingDir: str(
    'TUS_STAGING_DIR',
    '',
    'Partial tus uploads; empty = <root>/.tmp/tus on file:// storage, ./data/tus-staging on S3',
  ),
  webhookConcurrency: int(
    'WEBHOOK_CONCURRENCY',
    4,
    'Parallel report webhook deliveries per worker process',
    1,
    256,
  ),
  webhookAttempts: int(
    'WEBHOOK_ATTEMPTS',
    8,
    'Tries per report webhook before it is marked failed (ops can resend it)',
    1,
    50,
  ),
  webhookBackoffMs: int(
    'WEBHOOK_BACKOFF_MS',
    30_000,
    'Wait before the first webhook retry; each later retry waits twice as long',
    1,
    86_400_000,
  ),
  webhookTimeoutMs: int(
    'WEBHOOK_TIMEOUT_MS',
    10_000,
    'A webhook request not answered within this fails',
    100,
    300_000,
  ),
} as const;

export function loadConfig(env: Env = process.env): Config {
  const errors: string[] = [];
  const values: Record<string, unknown> = {};
  for (const [key, field] of Object.entries(CONFIG_FIELDS)) {
    const raw = env[field.name];
    const parsed = (field.parse as (r: string) => unknown)(
      raw === undefined || raw === '' ? field.fallback : raw,
    );
    if (parsed && typeof parsed === 'object' && 'error' in parsed) {
      errors.push(`${field.name} ${(parsed as { error: string }).error} (got ${JSON.stringify(raw)})`);
    } else {
      values[key] = parsed;
    }
  }
  if (errors.length > 0) {
    throw new AppError('CONFIG_INVALID', `Invalid configuration:\n  - ${errors.join('\n  - ')}`, {
      retryable: false,
      details: { errors },
    });
  }
  const v = values as {
    [K in keyof typeof CONFIG_FIELDS]: Exclude<
      ReturnType<(typeof CONFIG_FIELDS)[K]['parse']>,
      { error: string }
    >;
  };
  return {
    databaseUrl: v.databaseUrl,
    redisUrl: v.redisUrl,
    queuePrefix: v.queuePrefix,
    storageUrl: v.storageUrl,
    host: v.host,
    port: v.port,
    publicUrl: v.publicUrl || `http://${v.host.includes(':') ? `[${v.host}]` : v.host}:${v.port}`,
    logLevel: v.logLevel,
    concurrency: {
      ingest: v.ingestConcurrency,
      process: v.processConcurrency,
      route: v.routeConcurrency,
      maintenance: v.maintenanceConcurrency,
    },
    maxUploadBytes: v.maxUploadBytes,
    thumbnailSize: v.thumbnailSize,
    sweepIntervalSeconds: v.sweepIntervalSeconds,
    jobLockSeconds: v.jobLockSeconds,
    stuckAfterSeconds: v.stuckAfterSeconds,
    studyStableSeconds: v.studyStableSeconds,
    leaseSeconds: v.leaseSeconds,
    dicomPort: v.dicomPort,
    dicomAeTitle: v.dicomAeTitle,
    migrateOnStart: v.migrateOnStart,
    uploadExpirySeconds: v.uploadExpirySeconds,
    tusStagingDir: v.tusStagingDir,
    webhookConcurrency: v.webhookConcurrency,
    webhookAttempts: v.webhookAttempts,
    webhookBackoffMs: v.webhookBackoffMs,
    webhookTimeoutMs: v.webhookTimeoutMs,
  };
}
