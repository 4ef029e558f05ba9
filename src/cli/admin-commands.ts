import { createApiKey, listApiKeys, parseDuration, revokeApiKey } from '../api/auth.js';
import type { Db } from '../db/database.js';
import type { Role } from '../db/schema.js';
import {
  CROSS_BORDER_POLICIES,
  type CrossBorderPolicy,
  JURISDICTION,
  LANGUAGE,
  SPECIALTIES,
  type Specialty,
  SUBSPECIALTIES,
} from '../domain/rules.js';
import { isTimeZone, parseExceptionSpec, parseShiftSpec } from '../domain/shifts.js';
import { parseSlaSpec, resolveSla } from '../domain/sla.js';
import { checkWebhookSecret, checkWebhookUrl } from '../domain/webhook.js';
import { AppError } from '../errors.js';

const ROLES: Role[] = ['clinic', 'reader', 'ops', 'admin'];
const ID = /^[a-z0-9][a-z0-9_-]{0,62}$/;
const AE_TITLE = /^[\x20-\x5b\x5d-\x7e]{1,16}$/;

function list(v: string | undefined): string[] {
  return (v ?? '')
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
}

function jurisdictionsOf(v: string | undefined, what: string): string[] {
  const codes = list(v).map((s) => s.toUpperCase());
  for (const c of codes) {
    if (!JURISDICTION.test(c)) {
      throw new AppError('VALIDATION_FAILED', `${what} "${c}" is not an ISO 3166 code such as KE or US-CA`);
    }
  }
  return codes;
}

/**
 * Upserts a site (a clinic) with its jurisdiction (ISO 3166 country or subdivision code, e.g. KE, US-CA). On an
 * existing site, options left out keep their stored values. `sla` (`stat=60,urgent=240,routine=1440`, any
 * subset) is the whole contract: priorities it leaves out get the defaults.
 */
export async function addSite(
  db: Db,
  input: {
    id: string;
    name?: string;
    jurisdiction: string;
    aeTitles?: string;
    crossBorder?: string;
    sla?: string;
    /** Where signed reports are announced (http or https); '' removes the webhook. */
    webhookUrl?: string;
    /** The HMAC-SHA256 key of the webhook signatures; with a new URL, or alone to rotate it. */
    webhookSecret?: string;
    /** Mains frequency for the ECG notch: 50, 60, or '' to detect it. */
    mains?: string;
  },
) {
  if (!ID.test(input.id)) throw new AppError('VALIDATION_FAILED', `site id must match ${ID}`);
  if (input.mains !== undefined && !['', '50', '60'].includes(input.mains)) {
    throw new AppError('VALIDATION_FAILED', '--mains must be 50 or 60 (or empty to detect it)');
  }
  const [jurisdiction] = jurisdictionsOf(input.jurisdiction, 'jurisdiction');
  if (!jurisdiction) throw new AppError('VALIDATION_FAILED', 'a site needs --jurisdiction');
  if (
    input.crossBorder !== undefined &&
    !CROSS_BORDER_POLICIES.includes(input.crossBorder as CrossBorderPolicy)
  ) {
    throw new AppError(
      'VALIDATION_FAILED',
      `--cross-border must be one of ${CROSS_BORDER_POLICIES.join(', ')}`,
    );
  }
  const aeTitles = input.aeTitles === undefined ? undefined : list(input.aeTitles);
  for (const ae of aeTitles ?? []) {
    if (!AE_TITLE.test(ae))
      throw new AppError('VALIDATION_FAILED', `AE title "${ae}" must be 1-16 printable characters`);
  }
  const optional = {
    ...(aeTitles !== undefined ? { ae_titles: aeTitles } : {}),
    ...(input.crossBorder !== undefined
      ? { cross_border_policy: input.crossBorder as CrossBorderPolicy }
      : {}),
    ...(input.sla !== undefined ? { sla_minutes: JSON.stringify(resolveSla(parseSlaSpec(input.sla))) } : {}),
    ...(input.mains !== undefined
      ? { mains_hz: input.mains === '' ? null : (Number(input.mains) as 50 | 60) }
      : {}),
  };
  const webhook = await siteWebhookColumns(db, input);
  const row = { name: input.name ?? input.id, jurisdiction, ...optional, ...webhook };
  await db
    .insertInto('sites')
    .values({ id: input.id, ...row })
    .onConflict((oc) => oc.column('id').doUpdateSet(row))
    .execute();
}

/** The webhook columns a `sites add` changes: a URL always with its secret, so no webhook goes out unsigned. */
async function siteWebhookColumns(
  db: Db,
  input: { id: string; webhookUrl?: string; webhookSecret?: string },
) {
  if (input.webhookUrl === undefined && input.webhookSecret === undefined) return {};
  if (input.webhookUrl !== undefined && input.webhookUrl.trim() === '') {
    return { webhook_url: null, webhook_secret: null };
  }
  const secret = input.webhookSecret === undefined ? undefined : checkWebhookSecret(input.webhookSecret);
  if (input.webhookUrl !== undefined) {
    if (secret === undefined) throw new AppError('VALIDATION_FAILED', '--webhook-url needs --webhook-secret');
    return { webhook_url: checkWebhookUrl(input.webhookUrl), webhook_secret: secret };
  }
  const existing = await db
    .selectFrom('sites')
    .select('webhook_url')
    .where('id', '=', input.id)
    .executeTakeFirst();
  if (!existing?.webhook_url) throw new AppError('VALIDATION_FAILED', '--webhook-secret needs --webhook-url');
  // The URL is written again because the CHECK (both or neither) applies to the row the upsert proposes.
  return { webhook_url: existing.webhook_url, webhook_secret: secret };
}

export interface ReaderInput {
  id: string;
  name?: string;
  /** Comma-separated: cardiology, radiology, pathology. */
  specialties: string;
  /** Comma-separated licences (ISO 3166). */
  jurisdictions: string;
  maxActive?: number;
  /** Comma-separated, each of one of the reader's specialties (radiology: neuro, chest …; pathology: histology …). */
  subspecialties?: string;
  /** Comma-separated ISO 639 codes. */
  languages?: string;
  /** IANA zone the shifts are written in (default UTC). */
  timeZone?: string;
  /** `mon-fri 08:00-17:00; sat 22:00-06:00`, or `always` for no schedule (available at any hour). */
  shifts?: string;
  /** `2025-12-25 off; 2025-12-27 extra 08:00-12:00`. */
  exceptions?: string;
  active?: boolean;
}

/**
 * Upserts a reader: specialties and subspecialties, licences, languages, weekly shifts in their own time zone
 * plus dated exceptions, a cap on active cases, and the active flag. On an existing reader, options left out
 * keep their stored values.
 */
export async function addReader(db: Db, input: ReaderInput) {
  if (!ID.test(input.id)) throw new AppError('VALIDATION_FAILED', `reader id must match ${ID}`);
  const specialties = list(input.specialties).map((s) => s.toLowerCase());
  const jurisdictions = jurisdictionsOf(input.jurisdictions, 'licence');
  if (specialties.length === 0) throw new AppError('VALIDATION_FAILED', 'a reader needs --specialties');
  if (jurisdictions.length === 0) throw new AppError('VALIDATION_FAILED', 'a reader needs --jurisdictions');
  for (const s of specialties) {
    if (!SPECIALTIES.includes(s as Specialty)) {
      throw new AppError('VALIDATION_FAILED', `specialty "${s}" is not one of ${SPECIALTIES.join(', ')}`);
    }
  }
  const subspecialties =
    input.subspecialties === undefined ? undefined : list(input.subspecialties).map((s) => s.toLowerCase());
  for (const sub of subspecialties ?? []) {
    if (!specialties.some((s) => SUBSPECIALTIES[s as Specialty].includes(sub))) {
      throw new AppError(
        'VALIDATION_FAILED',
        `subspecialty "${sub}" belongs to none of ${specialties.join(', ')} (radiology: ${SUBSPECIALTIES.radiology.join(', ')}; pathology: ${SUBSPECIALTIES.pathology.join(', ')})`,
      );
    }
  }
  const languages =
    input.languages === undefined ? undefined : list(input.languages).map((s) => s.toLowerCase());
  for (const l of languages ?? []) {
    if (!LANGUAGE.test(l))
      throw new AppError('VALIDATION_FAILED', `language "${l}" is not an ISO 639 code such as en`);
  }
  if (input.timeZone !== undefined && !isTimeZone(input.timeZone)) {
    throw new AppError(
      'VALIDATION_FAILED',
      `"${input.timeZone}" is not an IANA time zone (e.g. Africa/Nairobi)`,
    );
  }
  if (input.maxActive !== undefined && (!Number.isInteger(input.maxActive) || input.maxActive < 0)) {
    throw new AppError('VALIDATION_FAILED', '--max-active must be a whole number');
  }
  const shifts =
    input.shifts === undefined
      ? undefined
      : input.shifts.trim().toLowerCase() === 'always'
        ? null
        : parseShiftSpec(input.shifts);
  const row = {
    name: input.name ?? input.id,
    specialties,
    jurisdictions,
    ...(input.maxActive !== undefined ? { max_active: input.maxActive } : {}),
    ...(subspecialties !== undefined ? { subspecialties } : {}),
    ...(languages !== undefined ? { languages } : {}),
    ...(input.timeZone !== undefined ? { time_zone: input.timeZone } : {}),
    ...(shifts !== undefined ? { shifts: shifts === null ? null : JSON.stringify(shifts) } : {}),
    ...(input.exceptions !== undefined
      ? { shift_exceptions: JSON.stringify(parseExceptionSpec(input.exceptions)) }
      : {}),
    ...(input.active !== undefined ? { active: input.active } : {}),
  };
  await db
    .insertInto('readers')
    .values({ id: input.id, ...row })
    .onConflict((oc) => oc.column('id').doUpdateSet(row))
    .execute();
}

export async function createKey(
  db: Db,
  input: { role: string; site?: string; reader?: string; label?: string; expiresIn?: string },
) {
  if (!ROLES.includes(input.role as Role)) {
    throw new AppError('VALIDATION_FAILED', `--role must be one of ${ROLES.join(', ')}`);
  }
  return createApiKey(db, {
    role: input.role as Role,
    siteId: input.site ?? null,
    readerId: input.reader ?? null,
    label: input.label ?? null,
    expiresAt: input.expiresIn ? new Date(Date.now() + parseDuration(input.expiresIn)) : null,
  });
}

/** `keys revoke ID`: the key is refused from its next request on. */
export async function revokeKey(db: Db, id: string) {
  return revokeApiKey(db, id);
}

/** `keys list`: one line per key, newest first (prefix, never the key). */
export async function listKeys(db: Db): Promise<string> {
  const now = Date.now();
  const rows = await listApiKeys(db);
  return rows
    .map((k) => {
      const state = k.revoked_at
        ? `revoked ${k.revoked_at.toISOString()}`
        : k.expires_at && k.expires_at.getTime() <= now
          ? `expired ${k.expires_at.toISOString()}`
          : k.expires_at
            ? `active until ${k.expires_at.toISOString()}`
            : 'active';
      const scope = k.site_id ? ` site=${k.site_id}` : k.reader_id ? ` reader=${k.reader_id}` : '';
      return `${k.id}  ${k.key_prefix}…  ${k.role}${scope}  ${state}${k.label ? `  "${k.label}"` : ''}\n`;
    })
    .join('');
}
