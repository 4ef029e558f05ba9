import type { Priority } from '../db/schema.js';
import { AppError } from '../errors.js';

/** Minutes from a case's arrival at the hub to its due time, per priority: a site's reading contract. */
export type SlaMinutes = Record<Priority, number>;

/** The contract a site gets unless it negotiates another: stat 1 h, urgent 4 h, routine 24 h. */
export const DEFAULT_SLA_MINUTES: Readonly<SlaMinutes> = Object.freeze({
  stat: 60,
  urgent: 240,
  routine: 1440,
});

const PRIORITIES: readonly Priority[] = ['stat', 'urgent', 'routine'];
/** A year: longer contracts are typing mistakes, and the bound keeps due times far from Date's limits. */
const MAX_SLA_MINUTES = 525_600;

/** Lower sorts first on a worklist. */
export const PRIORITY_RANK: Record<Priority, number> = { stat: 0, urgent: 1, routine: 2 };

export function isPriority(v: unknown): v is Priority {
  return typeof v === 'string' && (PRIORITIES as readonly string[]).includes(v);
}

/** Parses `stat=60,urgent=240,routine=1440` (any subset) into per-priority overrides. */
export function parseSlaSpec(spec: string): Partial<SlaMinutes> {
  const out: Partial<SlaMinutes> = {};
  const entries = spec
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  for (const entry of entries) {
    const m = /^([a-z]+)\s*=\s*(\d+)$/i.exec(entry);
    const priority = m?.[1]?.toLowerCase();
    if (!m || !isPriority(priority)) {
      throw new AppError(
        'VALIDATION_FAILED',
        `SLA entry "${entry}" is not PRIORITY=MINUTES (stat, urgent, routine)`,
      );
    }
    out[priority] = checkMinutes(Number(m[2]), priority);
  }
  return out;
}

/** The full contract: the site's overrides over the defaults, each checked to be a whole, positive minute count. */
export function resolveSla(overrides: Partial<Record<string, unknown>> | null | undefined): SlaMinutes {
  const out: SlaMinutes = { ...DEFAULT_SLA_MINUTES };
  for (const [key, value] of Object.entries(overrides ?? {})) {
    if (!isPriority(key)) throw new AppError('VALIDATION_FAILED', `unknown SLA priority "${key}"`);
    if (value === undefined) continue;
    out[key] = checkMinutes(value, key);
  }
  return out;
}

function checkMinutes(value: unknown, priority: Priority): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 1 || value > MAX_SLA_MINUTES) {
    throw new AppError(
      'VALIDATION_FAILED',
      `SLA for ${priority} must be a whole number of minutes from 1 to ${MAX_SLA_MINUTES}`,
    );
  }
  return value;
}

/**
 * When a case is due: its arrival plus the site's minutes for its priority. The database computes the same
 * thing in the `cases_due_at` trigger (migration 0003) so every row has it, whichever code path wrote it;
 * the integration tests check the two agree.
 */
export function dueAt(arrivedAt: Date, priority: Priority, sla: SlaMinutes): Date {
  return new Date(arrivedAt.getTime() + sla[priority] * 60_000);
}
