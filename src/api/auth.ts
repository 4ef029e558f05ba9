import { createHash, randomBytes } from 'node:crypto';
import type { FastifyRequest } from 'fastify';
import type { Db } from '../db/database.js';
import type { Role } from '../db/schema.js';
import { AppError } from '../errors.js';

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
}

/** Keys are 32 random bytes; only their sha256 is stored, so a database dump does not leak credentials. */
export function generateKey(role: Role): { key: string; hash: string; prefix: string } {
  const key = `trk_${role}_${randomBytes(32).toString('base64url')}`;
  return { key, hash: hashKey(key), prefix: key.slice(0, 12) };
}

export function hashKey(key: string): string {
  return createHash('sha256').update(key).digest('hex');
}

export async function createApiKey(
  db: Db,
  input: { role: Role; siteId?: string | null; readerId?: string | null; label?: string | null },
): Promise<{ id: string; key: string }> {
  if (input.role === 'clinic' && !input.siteId)
    throw new AppError('VALIDATION_FAILED', 'a clinic key needs a site');
  if (input.role === 'reader' && !input.readerId)
    throw new AppError('VALIDATION_FAILED', 'a reader key needs a reader');
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
    })
    .returning('id')
    .executeTakeFirstOrThrow();
  return { id: row.id, key };
}

export async function authenticate(db: Db, request: FastifyRequest): Promise<Principal> {
  const header = request.headers.authorization;
  const match = typeof header === 'string' ? /^Bearer\s+(\S+)$/i.exec(header) : null;
  if (!match) throw new AppError('UNAUTHORIZED', 'missing Authorization: Bearer <key>');
  const row = await db
    .selectFrom('api_keys')
    .select(['id', 'role', 'site_id', 'reader_id'])
    .where('key_hash', '=', hashKey(match[1]!))
    .where('revoked_at', 'is', null)
    .executeTakeFirst();
  if (!row) throw new AppError('UNAUTHORIZED', 'unknown or revoked key');
  return { keyId: row.id, role: row.role, siteId: row.site_id, readerId: row.reader_id };
}

/** Route guard: authenticates and checks the role. */
export function requireRole(db: Db, ...roles: Role[]) {
  return async (request: FastifyRequest): Promise<void> => {
    const principal = await authenticate(db, request);
    if (!roles.includes(principal.role)) {
      throw new AppError('FORBIDDEN', `this endpoint is for ${roles.join(' or ')} keys`);
    }
    request.principal = principal;
  };
}

export function principalOf(request: FastifyRequest): Principal {
  if (!request.principal) throw new AppError('UNAUTHORIZED', 'not authenticated');
  return request.principal;
}
