import { createHash, randomBytes } from 'node:crypto';
import type { FastifyRequest } from 'fastify';
import type { Redis } from 'ioredis';
import { sql } from 'kysely';
import { type Db, writeWatchOf } from '../db/database.js';
import type { Role } from '../db/schema.js';
import { AppError } from '../errors.js';
import type { Logger } from '../log.js';
import { createShortCache, type ShortCache } from './short-cache.js';

/** Who is calling, as resolved from the Bearer key. */
export interface Principal {
  keyId: string;
  role: Role;
  siteId: string | null;
  readerId: string | null;
}

declare module 'fastify' {
  interface FastifyRequest {
    principal?: Principal;
  }
  interface FastifyInstance {
    /** Set by buildApp; null when keys are looked up on every request. */
    principalCache: PrincipalCache | null;
  }
}

/** Keys are 32 random bytes; only their sha256 is stored, so a database dump does not leak credentials. */
export function generateKey(role: Role): { key: string; hash: string; prefix: string } {
  const key = `trk_${role}_${randomBytes(32).toString('base64url')}`;
  return { key, hash: hashKey(key), prefix: key.slice(0, 12) };
}

export function hashKey(key: string): string {
  return createHash('sha256').update(key).digest('hex');
}

/** Longest lifetime a key may be given: past ten years an expiry is a typing mistake. */
const MAX_KEY_LIFETIME_MS = 10 * 366 * 24 * 3600 * 1000;

export async function createApiKey(
  db: Db,
  input: {
    role: Role;
    siteId?: string | null;
    readerId?: string | null;
    label?: string | null;
    /** null or absent: the key does not expire (it can still be revoked). */
    expiresAt?: Date | null;
  },
): Promise<{ id: string; key: string; expiresAt: Date | null }> {
  if (input.role === 'clinic' && !input.siteId)
    throw new AppError('VALIDATION_FAILED', 'a clinic key needs a site');
  if (input.role === 'reader' && !input.readerId)
    throw new AppError('VALIDATION_FAILED', 'a reader key needs a reader');
  // A key names one tenant: a site for a clinic, a reader for a reader; ops and admin keys name none.
  if (input.role !== 'clinic' && input.siteId)
    throw new AppError('VALIDATION_FAILED', `a ${input.role} key cannot name a site`);
  if (input.role !== 'reader' && input.readerId)
    throw new AppError('VALIDATION_FAILED', `a ${input.role} key cannot name a reader`);
  const expiresAt = input.expiresAt ?? null;
  if (expiresAt) {
    const left = expiresAt.getTime() - Date.now();
    if (!Number.isFinite(left) || left <= 0 || left > MAX_KEY_LIFETIME_MS) {
      throw new AppError('VALIDATION_FAILED', 'a key must expire in the future, within ten years');
    }
  }
  const tenant = input.siteId
    ? await db.selectFrom('sites').select('id').where('id', '=', input.siteId).executeTakeFirst()
    : input.readerId
      ? await db.selectFrom('readers').select('id').where('id', '=', input.readerId).executeTakeFirst()
      : { id: '' };
  if (!tenant) {
    throw new AppError(
      'VALIDATION_FAILED',
      input.siteId ? `no site ${input.siteId}` : `no reader ${input.readerId}`,
    );
  }
  const { key, hash, prefix } = generateKey(input.role);
  const row = await db
    .insertInto('api_keys')
    .values({
      key_hash: hash,
      key_prefix: prefix,
      role: input.role,
      site_id: input.siteId ?? null,
      reader_id: input.readerId ?? null,
      label: input.label ?? null,
      expires_at: expiresAt,
    })
    .returning('id')
    .executeTakeFirstOrThrow();
  return { id: row.id, key, expiresAt };
}

/** `30d`, `12h`, `90m`, `45s`, `2w`: a key lifetime, in milliseconds. */
export function parseDuration(spec: string): number {
  const m = /^\s*(\d{1,6})\s*([smhdw])\s*$/i.exec(spec);
  const unit = { s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000, w: 604_800_000 }[
    (m?.[2] ?? '').toLowerCase() as 's'
  ];
  const ms = m && unit ? Number(m[1]) * unit : 0;
  if (ms <= 0 || ms > MAX_KEY_LIFETIME_MS) {
    throw new AppError(
      'VALIDATION_FAILED',
      `"${spec}" is not a lifetime such as 30d, 12h, 90m or 2w (at most ten years)`,
    );
  }
  return ms;
}

/**
 * Revokes a key: this process refuses it from the next request on, other API processes within
 * PRINCIPAL_CACHE_MS (their cached principal expires). Revoking a revoked key keeps its first time.
 */
export async function revokeApiKey(db: Db, id: string): Promise<{ id: string; revokedAt: Date }> {
  if (!UUID.test(id)) throw new AppError('NOT_FOUND', `no key ${id}`);
  const row = await db
    .updateTable('api_keys')
    .set({ revoked_at: sql`coalesce(revoked_at, now())` })
    .where('id', '=', id)
    .returning(['id', 'revoked_at'])
    .executeTakeFirst();
  if (!row?.revoked_at) throw new AppError('NOT_FOUND', `no key ${id}`);
  return { id: row.id, revokedAt: row.revoked_at };
}

/** Every key, newest first, without its hash: what an admin needs to find one to revoke. */
export async function listApiKeys(db: Db) {
  return db
    .selectFrom('api_keys')
    .select([
      'id',
      'key_prefix',
      'role',
      'site_id',
      'reader_id',
      'label',
      'created_at',
      'expires_at',
      'revoked_at',
    ])
    .orderBy('created_at', 'desc')
    .orderBy('id')
    .execute();
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** How long an API process serves a key's principal from memory. See docs/security.md. */
export const PRINCIPAL_CACHE_MS = 5_000;

interface KeyEntry {
  principal: Principal;
  expiresAt: Date | null;
}

export interface PrincipalCache {
  entries: ShortCache<string, KeyEntry>;
  close(): void;
}

/**
 * Key hash → principal, kept for PRINCIPAL_CACHE_MS so that a busy client (a reader polling the worklist) costs
 * no key lookup per request. Any write to `api_keys` through this process's database handle empties it at once:
 * a key revoked (API or in-process CLI), expired or created here is seen by the next request. A key revoked by
 * another process (`bin/teleread keys revoke`) is refused here within PRINCIPAL_CACHE_MS. A key's own expiry
 * bounds its entry, so an expiring key is refused on time. Only valid keys are kept: unknown ones are looked up
 * every time and counted by the auth-failure limit. Null when the handle's writes cannot be watched.
 */
export function createPrincipalCache(db: Db): PrincipalCache | null {
  const watch = writeWatchOf(db);
  if (!watch) return null;
  const entries = createShortCache<string, KeyEntry>({ ttlMs: PRINCIPAL_CACHE_MS, maxWeight: 10_000 });
  const close = watch.subscribe(['api_keys'], () => entries.invalidate());
  return { entries, close };
}

async function lookUpKey(db: Db, hash: string): Promise<KeyEntry | undefined> {
  const row = await db
    .selectFrom('api_keys')
    .select(['id', 'role', 'site_id', 'reader_id', 'expires_at'])
    .where('key_hash', '=', hash)
    .where('revoked_at', 'is', null)
    .where(sql<boolean>`(expires_at IS NULL OR expires_at > now())`)
    .executeTakeFirst();
  if (!row) return undefined;
  return {
    principal: { keyId: row.id, role: row.role, siteId: row.site_id, readerId: row.reader_id },
    expiresAt: row.expires_at,
  };
}

export async function authenticate(db: Db, request: FastifyRequest): Promise<Principal> {
  const header = request.headers.authorization;
  const match = typeof header === 'string' ? /^Bearer\s+(\S+)$/i.exec(header) : null;
  if (!match) throw new AppError('UNAUTHORIZED', 'missing Authorization: Bearer <key>');
  // Keyed by the hash, so the process keeps no usable key in memory.
  const hash = hashKey(match[1]!);
  const cache = request.server.principalCache;
  const entry = cache
    ? await cache.entries.get(
        hash,
        () => lookUpKey(db, hash),
        (e) => (e.expiresAt ? e.expiresAt.getTime() - Date.now() : Number.POSITIVE_INFINITY),
      )
    : await lookUpKey(db, hash);
  // One answer for unknown, revoked and expired keys: the caller learns nothing about which keys exist.
  if (!entry) throw new AppError('UNAUTHORIZED', 'unknown, revoked or expired key');
  return { ...entry.principal };
}

/** Route guard: authenticates and checks the role. */
export function requireRole(db: Db, ...roles: Role[]) {
  return async (request: FastifyRequest): Promise<void> => {
    const principal = await authenticate(db, request);
    // Set before the role check, so a refused attempt is audited with the key that made it; handlers never run.
    request.principal = principal;
    if (!roles.includes(principal.role)) {
      throw new AppError('FORBIDDEN', `this endpoint is for ${roles.join(' or ')} keys`);
    }
  };
}

export function principalOf(request: FastifyRequest): Principal {
  if (!request.principal) throw new AppError('UNAUTHORIZED', 'not authenticated');
  return request.principal;
}

// ---- rate limit on failed authentication ----

export interface AuthFailureLimitOptions {
  /** Failed authentications one address may make per window (default 20). */
  limit?: number;
  /** Window length in seconds, counted from the address's first failure in it (default 60). */
  windowSeconds?: number;
}

export interface AuthFailureLimiter {
  /** Seconds this address must wait before trying again; 0 when it may try now. */
  retryAfter(ip: string): number;
  /** Counts one failed authentication from the address (a 401). */
  recordFailure(ip: string): Promise<void>;
}

/** Addresses remembered as blocked at most; past it the expired ones are dropped. */
const MAX_BLOCKED = 100_000;

/**
 * Failed authentications per client address, counted in Redis (INCR, and PEXPIRE NX so the window starts at the
 * first failure), shared by every API process. Once an address reaches the limit, every request from it is
 * refused with 429 RATE_LIMITED until the window ends, a valid key included: otherwise a guesser would still
 * learn which guess was right. The block is remembered in memory by each process that counted a failure past
 * the limit, so a request from an address in good standing costs no Redis round trip; with N API processes an
 * address gets at most N - 1 guesses beyond the limit. If Redis is unreachable the limiter lets requests
 * through (logged): authentication itself does not depend on it.
 */
export function createAuthFailureLimiter(
  redis: Redis,
  keyPrefix: string,
  log: Logger,
  options: AuthFailureLimitOptions = {},
): AuthFailureLimiter {
  const limit = options.limit ?? 20;
  const windowMs = (options.windowSeconds ?? 60) * 1000;
  const blockedUntil = new Map<string, number>();
  const keyOf = (ip: string) => `${keyPrefix}:auth-failures:${ip}`;

  function forget(now: number): void {
    for (const [ip, until] of blockedUntil) if (until <= now) blockedUntil.delete(ip);
    // Still full of live blocks (a distributed attack): drop the oldest inserted rather than grow without end.
    for (const ip of blockedUntil.keys()) {
      if (blockedUntil.size < MAX_BLOCKED) break;
      blockedUntil.delete(ip);
    }
  }

  return {
    retryAfter(ip) {
      const until = blockedUntil.get(ip);
      if (until === undefined) return 0;
      const left = until - Date.now();
      if (left > 0) return Math.ceil(left / 1000);
      blockedUntil.delete(ip);
      return 0;
    },
    async recordFailure(ip) {
      try {
        const key = keyOf(ip);
        const replies = await redis.multi().incr(key).pexpire(key, windowMs, 'NX').pttl(key).exec();
        const count = Number(replies?.[0]?.[1] ?? 0);
        const ttl = Number(replies?.[2]?.[1] ?? windowMs);
        if (count >= limit) {
          const now = Date.now();
          if (blockedUntil.size >= MAX_BLOCKED) forget(now);
          blockedUntil.set(ip, now + (ttl > 0 ? ttl : windowMs));
        }
      } catch (err) {
        log.warn({ err: err instanceof Error ? err.message : err }, 'auth failure not counted (redis)');
      }
    },
  };
}
