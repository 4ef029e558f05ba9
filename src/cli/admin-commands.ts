import { createApiKey } from '../api/auth.js';
import type { Db } from '../db/database.js';
import type { Role } from '../db/schema.js';
import { AppError } from '../errors.js';

const ROLES: Role[] = ['clinic', 'reader', 'ops', 'admin'];
const ID = /^[a-z0-9][a-z0-9_-]{0,62}$/;

function list(v: string | undefined): string[] {
  return (v ?? '')
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
}

/** Upserts a site (a clinic) with its jurisdiction (ISO 3166 country or subdivision code, e.g. KE, US-CA). */
export async function addSite(db: Db, input: { id: string; name?: string; jurisdiction: string }) {
  if (!ID.test(input.id)) throw new AppError('VALIDATION_FAILED', `site id must match ${ID}`);
  if (!input.jurisdiction) throw new AppError('VALIDATION_FAILED', 'a site needs --jurisdiction');
  await db
    .insertInto('sites')
    .values({ id: input.id, name: input.name ?? input.id, jurisdiction: input.jurisdiction.toUpperCase() })
    .onConflict((oc) =>
      oc
        .column('id')
        .doUpdateSet({ name: input.name ?? input.id, jurisdiction: input.jurisdiction.toUpperCase() }),
    )
    .execute();
}

/** Upserts a reader with specialties (cardiology, radiology, pathology) and licensed jurisdictions. */
export async function addReader(
  db: Db,
  input: { id: string; name?: string; specialties: string; jurisdictions: string; maxActive?: number },
) {
  if (!ID.test(input.id)) throw new AppError('VALIDATION_FAILED', `reader id must match ${ID}`);
  const specialties = list(input.specialties).map((s) => s.toLowerCase());
  const jurisdictions = list(input.jurisdictions).map((s) => s.toUpperCase());
  if (specialties.length === 0) throw new AppError('VALIDATION_FAILED', 'a reader needs --specialties');
  if (jurisdictions.length === 0) throw new AppError('VALIDATION_FAILED', 'a reader needs --jurisdictions');
  const row = {
    name: input.name ?? input.id,
    specialties,
    jurisdictions,
    max_active: input.maxActive ?? 50,
  };
  await db
    .insertInto('readers')
    .values({ id: input.id, ...row })
    .onConflict((oc) => oc.column('id').doUpdateSet(row))
    .execute();
}

export async function createKey(
  db: Db,
  input: { role: string; site?: string; reader?: string; label?: string },
) {
  if (!ROLES.includes(input.role as Role)) {
    throw new AppError('VALIDATION_FAILED', `--role must be one of ${ROLES.join(', ')}`);
  }
  return createApiKey(db, {
    role: input.role as Role,
    siteId: input.site ?? null,
    readerId: input.reader ?? null,
    label: input.label ?? null,
  });
}
