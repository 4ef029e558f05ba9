import { describe, expect, test } from 'vitest';
import type { Priority } from '../../src/db/schema.js';
import {
  type CasePool,
  escalationTime,
  levelAt,
  queueRank,
  slaStanding,
  widenPool,
} from '../../src/domain/escalation.js';

const created = new Date('2025-03-01T10:00:00Z');
const due = new Date('2025-03-01T11:00:00Z');
const at = (minutes: number) => new Date(created.getTime() + minutes * 60_000);

describe('the SLA clock', () => {
  test.each([
    [0.5, '2025-03-01T10:30:00.000Z'],
    [0.8, '2025-03-01T10:48:00.000Z'],
    [1, '2025-03-01T11:00:00.000Z'],
  ])('%d of a 60 min SLA is reached at %s', (fraction, iso) => {
    expect(escalationTime(created, due, fraction).toISOString()).toBe(iso);
  });

  test('a due time before the arrival (a broken row) escalates at once rather than never', () => {
    expect(escalationTime(created, at(-5), 0.5)).toEqual(created);
  });

  test.each([
    [0, 0, 'on-track'],
    [29.99, 0, 'on-track'],
    [30, 1, 'at-risk'],
    [47.99, 1, 'at-risk'],
    [48, 2, 'at-risk'],
    [59.99, 2, 'at-risk'],
    [60, 2, 'overdue'],
    [600, 2, 'overdue'],
  ] as const)('at %d min: level %d, %s', (minutes, level, standing) => {
    expect(levelAt(created, due, at(minutes))).toBe(level);
    expect(slaStanding(created, due, at(minutes))).toBe(standing);
  });
});

describe('worklist rank', () => {
  test.each([
    ['stat', 0, 0],
    ['stat', 2, 0],
    ['urgent', 0, 1],
    ['urgent', 1, 0],
    ['routine', 0, 2],
    ['routine', 1, 1],
    ['routine', 2, 0],
  ] as const)('%s at level %d ranks %d', (priority: Priority, level, rank) => {
    expect(queueRank(priority, level)).toBe(rank);
  });
});

describe('widening the pool', () => {
  const neuro: CasePool = {
    target: { specialty: 'radiology', subspecialty: 'neuro', language: 'fr', jurisdiction: 'KE' },
    fallbacks: [{ specialty: 'radiology', subspecialty: 'chest' }, { specialty: 'radiology' }],
  };

  test.each([
    [
      'level 1 opens the next fallback and keeps the rest',
      neuro,
      1,
      { target: { specialty: 'radiology', subspecialty: 'chest' }, fallbacks: [{ specialty: 'radiology' }] },
      true,
    ],
    [
      'level 2 opens the case to any reader of the specialty',
      neuro,
      2,
      { target: { specialty: 'radiology' }, fallbacks: [] },
      true,
    ],
    [
      'level 1 without fallbacks goes to any qualified reader',
      { target: { specialty: 'pathology', subspecialty: 'cytology' }, fallbacks: [] },
      1,
      { target: { specialty: 'pathology' }, fallbacks: [] },
      true,
    ],
    [
      'a pool already as wide as it gets is not widened',
      { target: { specialty: 'cardiology' }, fallbacks: [] },
      2,
      { target: { specialty: 'cardiology' }, fallbacks: [] },
      false,
    ],
  ] as const)('%s', (_name, pool, level, expected, widened) => {
    const out = widenPool(pool as CasePool, level);
    expect({ target: out.target, fallbacks: out.fallbacks }).toEqual(expected);
    expect(out.widened).toBe(widened);
  });
});
