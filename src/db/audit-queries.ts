import { type Insertable, sql } from 'kysely';
import { AppError } from '../errors.js';
import type { Logger } from '../log.js';
import type { Db } from './database.js';
import type { AuditEventsTable } from './schema.js';

/**
 * The audit trail: append-only at the database level (migration 0006), written by the request hook
 * (src/api/audit-hook.ts) for every authenticated request and by the code paths that change a case (claims,
 * routing, escalation) in the same transaction as the change.
 */

export type NewAuditEvent = Insertable<AuditEventsTable>;

/**
 * A change to a case, recorded in the caller's transaction so the event and the change commit together (the
 * batched writer below is for access events, where losing the last 100 ms on a crash is acceptable).
 */
export async function recordCaseEvent(
  trx: Db,
  who: { keyId: string | null; role: string },
  requestId: string,
  action: string,
  caseId: string,
  detail: Record<string, unknown>,
): Promise<void> {
  await trx
    .insertInto('audit_events')
    .values({
      action,
      actor_key_id: who.keyId,
      actor_role: who.role,
      case_id: caseId,
      request_id: requestId,
      detail: JSON.stringify(detail),
    })
    .execute();
}

export interface AuditWriter {
  append(event: NewAuditEvent): void;
  /** Writes what is buffered now; resolves when it is committed (or has failed and been kept for a retry). */
  flush(): Promise<void>;
  close(): Promise<void>;
}

export interface AuditWriterOptions {
  /** Longest an event waits in memory before it is written (default 100 ms). */
  flushMs?: number;
  /** Events per INSERT (default 500). */
  maxBatch?: number;
  /** Events kept while PostgreSQL refuses them; past it the oldest are dropped, loudly (default 100,000). */
  maxBuffered?: number;
}

/**
 * Buffers access events and writes them in multi-row INSERTs, at most `flushMs` after they happen. A viewer
 * fetching hundreds of Deep Zoom tiles a minute, or a worklist polled by every reader, costs one INSERT per
 * batch instead of one per request, off the response path. The price: a process killed outright loses up to
 * `flushMs` of access events (a graceful shutdown flushes them). Changes of case data are not buffered: they
 * write their event in their own transaction.
 */
export function createAuditWriter(db: Db, log: Logger, options: AuditWriterOptions = {}): AuditWriter {
  const flushMs = options.flushMs ?? 100;
  const maxBatch = options.maxBatch ?? 500;
  const maxBuffered = options.maxBuffered ?? 100_000;
  let buffer: NewAuditEvent[] = [];
  let timer: NodeJS.Timeout | null = null;
  let writing: Promise<void> = Promise.resolve();

  async function writeAll(): Promise<void> {
    while (buffer.length > 0) {
      const batch = buffer.slice(0, maxBatch);
      try {
        await db.insertInto('audit_events').values(batch).execute();
        buffer = buffer.slice(batch.length);
      } catch (err) {
        if (isDataError(err)) {
          // One malformed event must not hold the others back forever: write them one by one.
          await writeOneByOne(batch);
          buffer = buffer.slice(batch.length);
          continue;
        }
        log.error({ err, events: buffer.length }, 'audit events not written; kept for a retry');
        if (buffer.length > maxBuffered) {
          const dropped = buffer.length - maxBuffered;
          buffer = buffer.slice(dropped);
          log.error({ dropped }, 'audit buffer full: oldest access events dropped');
        }
        if (!timer) {
          timer = setTimeout(() => void flush(), RETRY_MS);
          timer.unref();
        }
        return;
      }
    }
  }

  async function writeOneByOne(batch: NewAuditEvent[]): Promise<void> {
    for (const event of batch) {
      await db
        .insertInto('audit_events')
        .values(event)
        .execute()
        .catch((err: unknown) =>
          log.error({ err, action: event.action, requestId: event.request_id }, 'audit event refused'),
        );
    }
  }

  function flush(): Promise<void> {
    if (timer) {
      clearTimeout(timer);
      timer = null;
    }
    // One writer at a time, so batches commit in the order they were taken.
    writing = writing.then(writeAll);
    return writing;
  }

  return {
    append(event) {
      buffer.push(event);
      if (buffer.length >= maxBatch) void flush();
      else if (!timer) {
        timer = setTimeout(() => void flush(), flushMs);
        timer.unref();
      }
    },
    flush,
    async close() {
      await flush();
    },
  };
}

/** How long a batch PostgreSQL refused waits before the next try. */
const RETRY_MS = 1_000;

/** SQLSTATE class 22: the event itself is malformed (a bad address, say), retrying it will not help. */
function isDataError(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' && code.startsWith('22');
}

export interface AuditFilter {
  caseId?: string | undefined;
  actorKeyId?: string | undefined;
  action?: string | undefined;
  from?: Date | undefined;
  to?: Date | undefined;
  cursor?: string | undefined;
  limit: number;
}

function encodeCursor(id: string): string {
  return Buffer.from(JSON.stringify([id])).toString('base64url');
}

function decodeCursor(cursor: string): string {
  let v: unknown;
  try {
    v = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8'));
  } catch {
    v = null;
  }
  if (!Array.isArray(v) || typeof v[0] !== 'string' || !/^\d{1,19}$/.test(v[0])) {
    throw new AppError('VALIDATION_FAILED', 'cursor is not one this API returned');
  }
  return v[0];
}

/**
 * Audit events newest first (by id, the order they were appended), filtered by case, actor key, action and
 * time, one keyset page at a time. The actor's key is joined for its role, site or reader and label.
 */
export async function getAuditEvents(db: Db, filter: AuditFilter) {
  let q = db
    .selectFrom('audit_events as e')
    .leftJoin('api_keys as k', 'k.id', 'e.actor_key_id')
    .select([
      'e.id',
      'e.at',
      'e.actor_key_id',
      'e.actor_role',
      'k.site_id as actor_site_id',
      'k.reader_id as actor_reader_id',
      'k.label as actor_label',
      'e.action',
      'e.case_id',
      'e.file_id',
      'e.request_id',
      sql<string | null>`host(e.ip)`.as('ip'),
      'e.detail',
    ]);
  if (filter.caseId) q = q.where('e.case_id', '=', filter.caseId);
  if (filter.actorKeyId) q = q.where('e.actor_key_id', '=', filter.actorKeyId);
  if (filter.action) q = q.where('e.action', '=', filter.action);
  if (filter.from) q = q.where('e.at', '>=', filter.from);
  if (filter.to) q = q.where('e.at', '<', filter.to);
  if (filter.cursor) q = q.where(sql<boolean>`e.id < ${decodeCursor(filter.cursor)}::bigint`);
  const rows = await q
    .orderBy('e.id', 'desc')
    .limit(filter.limit + 1)
    .execute();
  const more = rows.length > filter.limit;
  const events = more ? rows.slice(0, filter.limit) : rows;
  const last = events.at(-1);
  return { events, nextCursor: more && last ? encodeCursor(String(last.id)) : null };
}
