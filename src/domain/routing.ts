import type { CaseKind, Priority } from '../db/schema.js';

/** Which specialty reads which kind of case. */
export const SPECIALTY_FOR_KIND: Record<CaseKind, string> = {
  ecg: 'cardiology',
  imaging: 'radiology',
  pathology: 'pathology',
};

/** Lower sorts first on a worklist. */
export const PRIORITY_RANK: Record<Priority, number> = { stat: 0, urgent: 1, routine: 2 };

export interface RoutingCase {
  kind: CaseKind;
  jurisdiction: string;
}

export interface RoutingCandidate {
  id: string;
  specialties: string[];
  jurisdictions: string[];
  active: boolean;
  maxActive: number;
  /** Live assignments now. */
  load: number;
}

export type RoutingDecision = { readerId: string; reason: string } | { readerId: null; reason: string };

/**
 * Picks the reader for a case: the qualified reader (specialty, licensed in the case's jurisdiction, active,
 * under their cap) with the fewest live cases; ties go to the lowest id so the choice is deterministic.
 */
export function chooseReader(c: RoutingCase, candidates: readonly RoutingCandidate[]): RoutingDecision {
  const specialty = SPECIALTY_FOR_KIND[c.kind];
  const qualified = candidates.filter(
    (r) => r.active && r.specialties.includes(specialty) && r.jurisdictions.includes(c.jurisdiction),
  );
  if (qualified.length === 0) {
    return { readerId: null, reason: `no active ${specialty} reader licensed in ${c.jurisdiction}` };
  }
  const available = qualified.filter((r) => r.load < r.maxActive);
  if (available.length === 0) {
    return {
      readerId: null,
      reason: `every ${specialty} reader licensed in ${c.jurisdiction} is at capacity`,
    };
  }
  const best = [...available].sort((a, b) => a.load - b.load || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0))[0]!;
  return {
    readerId: best.id,
    reason: `${specialty}, licensed in ${c.jurisdiction}, least loaded (${best.load} active)`,
  };
}
