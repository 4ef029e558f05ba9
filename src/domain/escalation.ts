import type { CaseStatus, Priority } from '../db/schema.js';
import type { PoolTarget } from './rules.js';
import { PRIORITY_RANK } from './sla.js';

/**
 * SLA escalation, pure. A case still open at 50 % of its SLA is escalated once, at 80 % twice. Each level widens
 * the pool the case may be claimed from and raises it in every worklist; the database stores the level
 * (`cases.escalation_level`) and derives the worklist rank from it (`cases.queue_rank`, migration 0006), with the
 * same formula as `queueRank` here.
 */

export type EscalationLevel = 1 | 2;

/**
 * The states in which a case's SLA clock runs: from arrival until it leaves the reading states (a signed report,
 * a failure). Migration 0006's `cases_open_due` index names the same list.
 */
export const SLA_OPEN_STATUSES: readonly CaseStatus[] = ['receiving', 'processing', 'ready', 'routed'];

export function isSlaOpen(status: string): boolean {
  return (SLA_OPEN_STATUSES as readonly string[]).includes(status);
}

export interface EscalationPoint {
  level: EscalationLevel;
  /** Share of the SLA elapsed when the level is reached. */
  fraction: number;
  /** The same as a whole percentage: job ids and events say `50` and `80`. */
  percent: 50 | 80;
}

export const ESCALATION_POINTS: readonly EscalationPoint[] = [
  { level: 1, fraction: 0.5, percent: 50 },
  { level: 2, fraction: 0.8, percent: 80 },
];

export function escalationPoint(level: EscalationLevel): EscalationPoint {
  return ESCALATION_POINTS[level - 1]!;
}

/** When a case reaches a share of its SLA: the clock runs from its arrival to its due time. */
export function escalationTime(createdAt: Date, dueAt: Date, fraction: number): Date {
  const span = Math.max(0, dueAt.getTime() - createdAt.getTime());
  return new Date(createdAt.getTime() + Math.round(span * fraction));
}

/** The level an open case should be at now (0 before 50 %). */
export function levelAt(createdAt: Date, dueAt: Date, now: Date): 0 | EscalationLevel {
  let level: 0 | EscalationLevel = 0;
  for (const p of ESCALATION_POINTS) {
    if (now.getTime() >= escalationTime(createdAt, dueAt, p.fraction).getTime()) level = p.level;
  }
  return level;
}

export type SlaStanding = 'on-track' | 'at-risk' | 'overdue';

/** at-risk: past the first escalation point and not yet due; overdue: past the due time. */
export function slaStanding(createdAt: Date, dueAt: Date, now: Date): SlaStanding {
  if (now.getTime() >= dueAt.getTime()) return 'overdue';
  return levelAt(createdAt, dueAt, now) > 0 ? 'at-risk' : 'on-track';
}

/** Worklist rank: the priority's rank lowered by the escalation level, never above stat. Lower sorts first. */
export function queueRank(priority: Priority, escalationLevel: number): number {
  return Math.max(0, PRIORITY_RANK[priority] - escalationLevel);
}

export interface CasePool {
  target: PoolTarget;
  /** Wider pools not yet opened, in the order the routing rule gave them. */
  fallbacks: PoolTarget[];
}

/**
 * The pool a case is opened to at an escalation level: level 1 opens the rule's next fallback pool (when the rule
 * named none, any qualified reader); level 2 opens the case to any qualified reader, i.e. any reader of the
 * pool's specialty, whatever subspecialty, language or licence the narrower pools asked for. The site's
 * cross-border policy is not a pool attribute and still applies to every reader.
 */
export function widenPool(pool: CasePool, level: EscalationLevel): CasePool & { widened: boolean } {
  const anyQualified: PoolTarget = { specialty: pool.target.specialty };
  const next: CasePool =
    level === 1 && pool.fallbacks.length > 0
      ? { target: pool.fallbacks[0]!, fallbacks: pool.fallbacks.slice(1) }
      : { target: anyQualified, fallbacks: [] };
  return { ...next, widened: !samePool(next.target, pool.target) };
}

function samePool(a: PoolTarget, b: PoolTarget): boolean {
  return (
    a.specialty === b.specialty &&
    (a.subspecialty ?? null) === (b.subspecialty ?? null) &&
    (a.language ?? null) === (b.language ?? null) &&
    (a.jurisdiction ?? null) === (b.jurisdiction ?? null)
  );
}
