import { describe, expect, test } from 'vitest';
import { chooseReader, type RoutingCandidate } from '../../src/domain/routing.js';

const reader = (id: string, over: Partial<RoutingCandidate> = {}): RoutingCandidate => ({
  id,
  specialties: ['radiology'],
  jurisdictions: ['KE'],
  active: true,
  maxActive: 10,
  load: 0,
  ...over,
});

describe('chooseReader', () => {
  test.each([
    ['least loaded qualified reader wins', [reader('a', { load: 3 }), reader('b', { load: 1 })], 'b'],
    ['ties go to the lowest id', [reader('b'), reader('a')], 'a'],
    [
      'wrong specialty is skipped',
      [reader('a', { specialties: ['cardiology'] }), reader('b', { load: 9 })],
      'b',
    ],
    [
      'unlicensed jurisdiction is skipped',
      [reader('a', { jurisdictions: ['FR'] }), reader('b', { load: 5 })],
      'b',
    ],
    ['inactive reader is skipped', [reader('a', { active: false }), reader('b', { load: 5 })], 'b'],
    ['reader at capacity is skipped', [reader('a', { load: 10 }), reader('b', { load: 9 })], 'b'],
  ])('%s', (_name, candidates, expected) => {
    expect(chooseReader({ kind: 'imaging', jurisdiction: 'KE' }, candidates).readerId).toBe(expected);
  });

  test.each([
    ['ecg', 'cardiology'],
    ['imaging', 'radiology'],
    ['pathology', 'pathology'],
  ] as const)('%s cases go to %s', (kind, specialty) => {
    const candidates = ['cardiology', 'radiology', 'pathology'].map((s) => reader(s, { specialties: [s] }));
    expect(chooseReader({ kind, jurisdiction: 'KE' }, candidates).readerId).toBe(specialty);
  });

  test('no qualified reader gives a reason, not a guess', () => {
    const d = chooseReader({ kind: 'ecg', jurisdiction: 'KE' }, [reader('a')]);
    expect(d.readerId).toBeNull();
    expect(d.reason).toContain('cardiology');
    const full = chooseReader({ kind: 'imaging', jurisdiction: 'KE' }, [reader('a', { load: 10 })]);
    expect(full.readerId).toBeNull();
    expect(full.reason).toContain('capacity');
  });
});
