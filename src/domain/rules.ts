import type { CaseKind, Priority } from '../db/schema.js';
import { AppError } from '../errors.js';

/**
 * Routing rules are data: an ordered list (table `routing_rules`, YAML via `teleread rules load`, admin API
 * `/v1/rules`). This module defines their shape, validates untrusted input strictly (an unknown key such as a
 * misspelt `bodypart` would otherwise be ignored and the rule would match far more than intended), and
 * decides whether a rule matches a case.
 */

export const SPECIALTIES = ['cardiology', 'radiology', 'pathology'] as const;
export type Specialty = (typeof SPECIALTIES)[number];

export const SUBSPECIALTIES: Record<Specialty, readonly string[]> = {
  cardiology: [],
  radiology: ['neuro', 'chest', 'msk', 'body', 'breast', 'paediatric'],
  pathology: ['histology', 'cytology'],
};

/** Which specialty reads which kind of case when no rule says otherwise. */
export const SPECIALTY_FOR_KIND: Record<CaseKind, Specialty> = {
  ecg: 'cardiology',
  imaging: 'radiology',
  pathology: 'pathology',
};

export const CROSS_BORDER_POLICIES = ['never', 'deidentified', 'identified'] as const;
export type CrossBorderPolicy = (typeof CROSS_BORDER_POLICIES)[number];

const KINDS: readonly CaseKind[] = ['imaging', 'ecg', 'pathology'];
const PRIORITIES: readonly Priority[] = ['stat', 'urgent', 'routine'];

/** A reader pool: every reader with the specialty (and subspecialty, language, licence when given). */
export interface PoolTarget {
  specialty: Specialty;
  subspecialty?: string | undefined;
  /** ISO 639 code, lower case (en, fr, sw). */
  language?: string | undefined;
  /** Readers licensed here (ISO 3166 code, upper case). Licence in the case's own jurisdiction is checked
   * separately, always. */
  jurisdiction?: string | undefined;
}

/** Every listed attribute must match; within one attribute, any listed value matches. Flags: all of them. */
export interface RuleMatch {
  kind?: CaseKind[] | undefined;
  modality?: string[] | undefined;
  bodyPart?: string[] | undefined;
  site?: string[] | undefined;
  priority?: Priority[] | undefined;
  flags?: string[] | undefined;
  /** Key (dotted path into the case's technical metadata) → accepted values, compared as strings. */
  metadata?: Record<string, string[]> | undefined;
}

export type RoutingPolicy = 'push' | 'pull';

export interface RoutingRule {
  id?: string | undefined;
  name: string;
  enabled: boolean;
  match: RuleMatch;
  target: PoolTarget;
  policy: RoutingPolicy;
  /** Wider pools, tried in order when nobody in the target pool can take the case now. */
  fallbacks: PoolTarget[];
  /** A follow-up of the same patient at the same site goes to the prior case's reader when they can take it. */
  preferPriorReader: boolean;
}

/** What a rule can see of a case: technical attributes only, never patient demographics. */
export interface RuleCase {
  kind: CaseKind;
  siteId: string;
  priority: Priority;
  modalities: string[];
  bodyParts: string[];
  flags: string[];
  metadata: Record<string, unknown>;
}

/** A stable name for a pool, shown on worklists and stored on the case: `radiology.neuro:fr@KE`. */
export function poolIdOf(t: PoolTarget): string {
  return (
    [t.specialty, t.subspecialty].filter(Boolean).join('.') +
    (t.language ? `:${t.language}` : '') +
    (t.jurisdiction ? `@${t.jurisdiction}` : '')
  );
}

/** The rule every case falls under when no stored rule matches: today's behaviour, push to the kind's specialty. */
export function defaultRule(kind: CaseKind): RoutingRule {
  return {
    name: `default ${kind}`,
    enabled: true,
    match: { kind: [kind] },
    target: { specialty: SPECIALTY_FOR_KIND[kind] },
    policy: 'push',
    fallbacks: [],
    preferPriorReader: true,
  };
}

function lookup(metadata: Record<string, unknown>, path: string): unknown {
  let v: unknown = metadata;
  for (const key of path.split('.')) {
    if (v === null || typeof v !== 'object' || Array.isArray(v)) return undefined;
    v = (v as Record<string, unknown>)[key];
  }
  return v;
}

function metadataEquals(value: unknown, accepted: string[]): boolean {
  // A list-valued attribute (an ECG's leads) matches when any of its elements is accepted.
  const values = Array.isArray(value) ? value : [value];
  return values.some(
    (v) =>
      (typeof v === 'string' || typeof v === 'number' || typeof v === 'boolean') &&
      accepted.includes(String(v)),
  );
}

const anyOf = (accepted: string[] | undefined, actual: string[], fold: (s: string) => string) =>
  accepted === undefined || actual.some((a) => accepted.includes(fold(a)));

export function ruleMatches(match: RuleMatch, c: RuleCase): boolean {
  const upper = (s: string) => s.toUpperCase();
  const lower = (s: string) => s.toLowerCase();
  return (
    (match.kind === undefined || match.kind.includes(c.kind)) &&
    (match.priority === undefined || match.priority.includes(c.priority)) &&
    (match.site === undefined || match.site.includes(c.siteId)) &&
    anyOf(match.modality, c.modalities, upper) &&
    anyOf(match.bodyPart, c.bodyParts, upper) &&
    (match.flags === undefined || match.flags.every((f) => c.flags.map(lower).includes(f))) &&
    Object.entries(match.metadata ?? {}).every(([key, accepted]) =>
      metadataEquals(lookup(c.metadata, key), accepted),
    )
  );
}

/** The first enabled rule that matches, or the default rule for the case's kind. */
export function firstMatchingRule(c: RuleCase, rules: readonly RoutingRule[]): RoutingRule {
  return rules.find((r) => r.enabled && ruleMatches(r.match, c)) ?? defaultRule(c.kind);
}

// ---- validation of untrusted input (YAML, admin API, rows) ----

function fail(where: string, message: string): never {
  throw new AppError('VALIDATION_FAILED', `${where}: ${message}`);
}

function record(v: unknown, where: string, allowed: readonly string[]): Record<string, unknown> {
  if (v === null || typeof v !== 'object' || Array.isArray(v)) fail(where, 'must be a mapping');
  const unknown = Object.keys(v).filter((k) => !allowed.includes(k));
  if (unknown.length > 0) fail(where, `unknown key ${unknown.join(', ')} (allowed: ${allowed.join(', ')})`);
  return v as Record<string, unknown>;
}

function scalarText(v: unknown, where: string): string {
  if (typeof v === 'string' && v.trim() !== '') return v.trim();
  if (typeof v === 'number' || typeof v === 'boolean') return String(v);
  fail(where, 'must be a non-empty text, number or true/false');
}

/** A scalar or a non-empty list of scalars, as a list. */
function textList(v: unknown, where: string): string[] {
  const list = Array.isArray(v) ? v : [v];
  if (list.length === 0) fail(where, 'must not be an empty list');
  return list.map((x, i) => scalarText(x, Array.isArray(v) ? `${where}[${i}]` : where));
}

function oneOf<T extends string>(values: string[], allowed: readonly T[], where: string): T[] {
  for (const v of values)
    if (!allowed.includes(v as T)) fail(where, `"${v}" is not one of ${allowed.join(', ')}`);
  return values as T[];
}

export function parsePoolTarget(input: unknown, where: string): PoolTarget {
  const v = record(input, where, ['specialty', 'subspecialty', 'language', 'jurisdiction']);
  const specialty = scalarText(v.specialty, `${where}.specialty`).toLowerCase();
  if (!SPECIALTIES.includes(specialty as Specialty)) {
    fail(`${where}.specialty`, `"${specialty}" is not one of ${SPECIALTIES.join(', ')}`);
  }
  const target: PoolTarget = { specialty: specialty as Specialty };
  if (v.subspecialty !== undefined) {
    const sub = scalarText(v.subspecialty, `${where}.subspecialty`).toLowerCase();
    const known = SUBSPECIALTIES[specialty as Specialty];
    if (!known.includes(sub)) {
      fail(
        `${where}.subspecialty`,
        known.length
          ? `"${sub}" is not a ${specialty} subspecialty (${known.join(', ')})`
          : `${specialty} has no subspecialties`,
      );
    }
    target.subspecialty = sub;
  }
  if (v.language !== undefined) {
    const lang = scalarText(v.language, `${where}.language`).toLowerCase();
    if (!LANGUAGE.test(lang)) fail(`${where}.language`, `"${lang}" is not an ISO 639 code such as en or fr`);
    target.language = lang;
  }
  if (v.jurisdiction !== undefined) {
    const j = scalarText(v.jurisdiction, `${where}.jurisdiction`).toUpperCase();
    if (!JURISDICTION.test(j))
      fail(`${where}.jurisdiction`, `"${j}" is not an ISO 3166 code such as KE or US-CA`);
    target.jurisdiction = j;
  }
  return target;
}

export const LANGUAGE = /^[a-z]{2,3}(-[a-z0-9]{2,8})*$/;
export const JURISDICTION = /^[A-Z]{2}(-[A-Z0-9]{1,3})?$/;

const MATCH_KEYS = ['kind', 'modality', 'bodyPart', 'site', 'priority', 'flags', 'metadata'] as const;

function parseMatch(input: unknown, where: string): RuleMatch {
  if (input === undefined || input === null) return {};
  const v = record(input, where, MATCH_KEYS);
  const m: RuleMatch = {};
  if (v.kind !== undefined) m.kind = oneOf(textList(v.kind, `${where}.kind`), KINDS, `${where}.kind`);
  if (v.priority !== undefined) {
    m.priority = oneOf(textList(v.priority, `${where}.priority`), PRIORITIES, `${where}.priority`);
  }
  if (v.modality !== undefined)
    m.modality = textList(v.modality, `${where}.modality`).map((s) => s.toUpperCase());
  if (v.bodyPart !== undefined)
    m.bodyPart = textList(v.bodyPart, `${where}.bodyPart`).map((s) => s.toUpperCase());
  if (v.site !== undefined) m.site = textList(v.site, `${where}.site`);
  if (v.flags !== undefined) m.flags = textList(v.flags, `${where}.flags`).map((s) => s.toLowerCase());
  if (v.metadata !== undefined) {
    const meta = v.metadata;
    if (meta === null || typeof meta !== 'object' || Array.isArray(meta))
      fail(`${where}.metadata`, 'must be a mapping');
    const entries = Object.entries(meta as Record<string, unknown>);
    if (entries.length === 0) fail(`${where}.metadata`, 'must name at least one key');
    m.metadata = Object.fromEntries(entries.map(([k, x]) => [k, textList(x, `${where}.metadata.${k}`)]));
  }
  return m;
}

const RULE_KEYS = ['id', 'name', 'enabled', 'match', 'target', 'policy', 'fallbacks', 'preferPriorReader'];

export function parseRule(input: unknown, where = 'rule'): RoutingRule {
  const v = record(input, where, RULE_KEYS);
  const name = scalarText(v.name, `${where}.name`);
  const at = `${where} "${name}"`;
  const policy = v.policy === undefined ? 'push' : scalarText(v.policy, `${at}.policy`);
  if (policy !== 'push' && policy !== 'pull') fail(`${at}.policy`, 'must be push or pull');
  const boolOr = (x: unknown, fallback: boolean, key: string) => {
    if (x === undefined) return fallback;
    if (typeof x !== 'boolean') fail(`${at}.${key}`, 'must be true or false');
    return x;
  };
  if (v.fallbacks !== undefined && !Array.isArray(v.fallbacks)) fail(`${at}.fallbacks`, 'must be a list');
  const rule: RoutingRule = {
    name,
    enabled: boolOr(v.enabled, true, 'enabled'),
    match: parseMatch(v.match, `${at}.match`),
    target: parsePoolTarget(v.target, `${at}.target`),
    policy,
    fallbacks: ((v.fallbacks as unknown[] | undefined) ?? []).map((f, i) =>
      parsePoolTarget(f, `${at}.fallbacks[${i}]`),
    ),
    preferPriorReader: boolOr(v.preferPriorReader, true, 'preferPriorReader'),
  };
  if (typeof v.id === 'string') rule.id = v.id;
  return rule;
}

/** A rule set from YAML or JSON: either `{ rules: [...] }` or the bare list. */
export function parseRuleSet(input: unknown): RoutingRule[] {
  const list =
    input !== null && typeof input === 'object' && !Array.isArray(input)
      ? record(input, 'rule set', ['rules']).rules
      : input;
  if (list === undefined || list === null) return [];
  if (!Array.isArray(list)) fail('rules', 'must be a list');
  return list.map((r, i) => parseRule(r, `rules[${i}]`));
}
