import {
  type CrossBorderPolicy,
  firstMatchingRule,
  type PoolTarget,
  poolIdOf,
  type RoutingRule,
  type RuleCase,
} from './rules.js';
import { isOnShift, type Schedule } from './shifts.js';

export { PRIORITY_RANK } from './sla.js';

/** The case as routing sees it: technical attributes, where it comes from, and who read this patient before. */
export interface RoutingCase extends RuleCase {
  /** The site's jurisdiction: where the data may be seen identified. */
  jurisdiction: string;
  crossBorderPolicy: CrossBorderPolicy;
  /** Readers of earlier cases of the same patient at the same site, most recent first. Ids only. */
  priorReaderIds: string[];
  /** Why the case may not leave its jurisdiction even de-identified (an instance with BurnedInAnnotation YES:
   * its pixels may show the name the header no longer does). Undefined: nothing stops a de-identified copy. */
  crossBorderRefusal?: string | undefined;
}

export interface RoutingReader {
  id: string;
  active: boolean;
  specialties: string[];
  subspecialties: string[];
  jurisdictions: string[];
  languages: string[];
  maxActive: number;
  /** Cases the reader holds now (live assignments and live claims). */
  load: number;
  schedule: Schedule;
}

interface DecisionBase {
  reason: string;
  /** The rule that decided (null: the built-in default for the kind). */
  ruleName: string | null;
}

export type RoutingDecision =
  | (DecisionBase & {
      policy: 'push';
      readerId: string;
      poolId: string;
      target: PoolTarget;
      /** The pools after the one used, wider each: what escalation may open the case to. */
      fallbacks: PoolTarget[];
      fallbackUsed: boolean;
      /** Sent abroad from a "deidentified" site: the reader(s) get the de-identified view only. */
      deidentified: boolean;
    })
  | (DecisionBase & {
      policy: 'pull';
      poolId: string;
      target: PoolTarget;
      fallbacks: PoolTarget[];
      fallbackUsed: boolean;
      deidentified: boolean;
    })
  | (DecisionBase & { policy: 'none'; fallbackUsed: false });

/**
 * Whether a reader may receive this case's identified data: a reader licensed in the case's jurisdiction
 * always may; a reader abroad only when the site allows identified cross-border reading.
 */
export function mayReceiveIdentified(
  reader: Pick<RoutingReader, 'jurisdictions'>,
  c: Pick<RoutingCase, 'jurisdiction' | 'crossBorderPolicy'>,
): boolean {
  return reader.jurisdictions.includes(c.jurisdiction) || c.crossBorderPolicy === 'identified';
}

/**
 * Whether a reader may read the case only as its de-identified view: a reader abroad, from a site whose policy
 * is "deidentified". Such a reader never receives identified data through any route (src/api/redact.ts).
 */
export function mayReceiveDeidentified(
  reader: Pick<RoutingReader, 'jurisdictions'>,
  c: Pick<RoutingCase, 'jurisdiction' | 'crossBorderPolicy'>,
): boolean {
  return !mayReceiveIdentified(reader, c) && c.crossBorderPolicy === 'deidentified';
}

/** Whether a reader belongs to a pool: specialty, and subspecialty, language and licence when the pool names them. */
export function qualifiesFor(
  reader: Pick<RoutingReader, 'specialties' | 'subspecialties' | 'languages' | 'jurisdictions'>,
  t: PoolTarget,
): boolean {
  return (
    reader.specialties.includes(t.specialty) &&
    (t.subspecialty === undefined || reader.subspecialties.includes(t.subspecialty)) &&
    (t.language === undefined || reader.languages.includes(t.language)) &&
    (t.jurisdiction === undefined || reader.jurisdictions.includes(t.jurisdiction))
  );
}

function byLoadThenId(a: RoutingReader, b: RoutingReader): number {
  return a.load - b.load || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0);
}

function describePool(t: PoolTarget, c: RoutingCase, deidentified: boolean): string {
  if (deidentified) return `${poolIdOf(t)} (licensed ${t.jurisdiction ? `in ${t.jurisdiction}` : 'abroad'})`;
  const licence = t.jurisdiction ?? c.jurisdiction;
  return `${poolIdOf(t)} (licensed in ${licence}${c.crossBorderPolicy === 'identified' && !t.jurisdiction ? ' or abroad' : ''})`;
}

/**
 * Routes one case: picks the first enabled rule that matches (or the default for its kind), then
 *
 * 1. a follow-up of the same patient goes to the prior case's reader, when that reader belongs to one of the
 *    rule's pools and can take it now (active, on shift, under their cap, allowed to see the data);
 * 2. otherwise the rule's pool, then each fallback pool in order, is tried:
 *    - push: the least-loaded qualified reader on shift and under their cap (ties: lowest id);
 *    - pull: the first pool with a qualified reader on shift becomes the case's pool worklist, or, when
 *      nobody is on shift anywhere, the first pool that has qualified readers at all (they see it when they
 *      come on);
 * 3. with nobody to take it, the decision is `none` and says why; the case waits and is routed again.
 *
 * Every candidate must be allowed to receive identified data from the case's jurisdiction. Only when that finds
 * nobody at all (`none`), a case from a "deidentified" site is routed again among readers abroad, who get the
 * de-identified view (`deidentified: true`): the site's own readers always come first, and a pull case waiting
 * for them to come on shift stays home. The second pass ignores the prior-reader preference, so a reader abroad
 * is never told that two de-identified cases are the same patient. A case with a `crossBorderRefusal` stays
 * home. Pure: the clock is an argument.
 */
export function evaluateRules(
  c: RoutingCase,
  rules: readonly RoutingRule[],
  readers: readonly RoutingReader[],
  now: Date,
): RoutingDecision {
  const home = evaluatePools(c, rules, readers, now, false);
  if (home.policy !== 'none' || c.crossBorderPolicy !== 'deidentified') return home;
  const abroad = readers.filter((r) => r.active && mayReceiveDeidentified(r, c));
  if (abroad.length === 0) return home;
  if (c.crossBorderRefusal) {
    return { ...home, reason: `${home.reason}; not sent abroad de-identified: ${c.crossBorderRefusal}` };
  }
  const away = evaluatePools({ ...c, priorReaderIds: [] }, rules, abroad, now, true);
  if (away.policy === 'none') return { ...home, reason: `${home.reason}; abroad: ${away.reason}` };
  return { ...away, reason: `${home.reason}; de-identified copy abroad: ${away.reason}` };
}

function evaluatePools(
  c: RoutingCase,
  rules: readonly RoutingRule[],
  readers: readonly RoutingReader[],
  now: Date,
  deidentified: boolean,
): RoutingDecision {
  const rule = firstMatchingRule(c, rules);
  const ruleName = rules.includes(rule) ? rule.name : null;
  const label = ruleName === null ? '' : `rule "${ruleName}": `;
  const pools = [rule.target, ...rule.fallbacks];
  const eligible = readers.filter(
    (r) => r.active && (deidentified ? mayReceiveDeidentified(r, c) : mayReceiveIdentified(r, c)),
  );
  const onShift = (r: RoutingReader) => isOnShift(r.schedule, now);
  const hasRoom = (r: RoutingReader) => r.load < r.maxActive;
  // A decision that places the case in pools[index]: the wider pools after it are left for escalation.
  const placedIn = (index: number) => ({
    poolId: poolIdOf(pools[index]!),
    target: pools[index]!,
    fallbacks: pools.slice(index + 1),
    deidentified,
    ruleName,
  });

  if (rule.preferPriorReader) {
    for (const priorId of c.priorReaderIds) {
      const prior = eligible.find((r) => r.id === priorId);
      if (!prior) continue;
      const index = pools.findIndex((p) => qualifiesFor(prior, p));
      if (index < 0 || !onShift(prior) || !hasRoom(prior)) continue;
      return {
        policy: 'push',
        readerId: prior.id,
        ...placedIn(index),
        fallbackUsed: false,
        reason: `${label}follow-up of the same patient, to the prior case's reader (${prior.load} active)`,
      };
    }
  }

  const skipped: string[] = [];
  let firstStaffed = -1;
  for (const [index, pool] of pools.entries()) {
    const qualified = eligible.filter((r) => qualifiesFor(r, pool));
    const present = qualified.filter(onShift);
    if (qualified.length > 0 && firstStaffed < 0) firstStaffed = index;
    const fallbackUsed = index > 0;
    const via = fallbackUsed ? `${skipped.join('; ')}; fallback ` : '';
    if (rule.policy === 'push') {
      const best = present.filter(hasRoom).sort(byLoadThenId)[0];
      if (best) {
        return {
          policy: 'push',
          readerId: best.id,
          ...placedIn(index),
          fallbackUsed,
          reason: `${label}${via}${describePool(pool, c, deidentified)}, least loaded on shift (${best.load} active)`,
        };
      }
    } else if (present.length > 0) {
      return {
        policy: 'pull',
        ...placedIn(index),
        fallbackUsed,
        reason: `${label}${via}pool ${describePool(pool, c, deidentified)}, ${present.length} qualified reader(s) on shift`,
      };
    }
    skipped.push(
      qualified.length === 0
        ? `no active ${describePool(pool, c, deidentified)} reader${deidentified ? '' : abroadNote(readers, pool, c)}`
        : present.length === 0
          ? `no ${poolIdOf(pool)} reader on shift`
          : `every ${poolIdOf(pool)} reader on shift is at capacity`,
    );
  }

  if (rule.policy === 'pull' && firstStaffed >= 0) {
    const placed = placedIn(firstStaffed);
    return {
      policy: 'pull',
      ...placed,
      fallbackUsed: firstStaffed > 0,
      reason: `${label}${skipped.join('; ')}; waits in pool ${placed.poolId} until a reader comes on shift`,
    };
  }
  return { policy: 'none', fallbackUsed: false, ruleName, reason: `${label}${skipped.join('; ')}` };
}

/** Tells ops why qualified readers abroad were passed over, so a "never" policy is not mistaken for a bug. */
function abroadNote(readers: readonly RoutingReader[], pool: PoolTarget, c: RoutingCase): string {
  const abroad = readers.some((r) => r.active && qualifiesFor(r, pool) && !mayReceiveIdentified(r, c));
  if (!abroad) return '';
  return c.crossBorderPolicy === 'deidentified'
    ? ' (readers abroad get a de-identified copy only when nobody licensed here can take it)'
    : ' (readers abroad skipped: the site does not allow cross-border reading)';
}
