import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, test } from 'vitest';
import { parse } from 'yaml';
import { evaluateRules, type RoutingCase, type RoutingReader } from '../../src/domain/routing.js';
import {
  parseRule,
  parseRuleSet,
  poolIdOf,
  type RoutingRule,
  type RuleCase,
  ruleMatches,
} from '../../src/domain/rules.js';
import { parseShiftSpec } from '../../src/domain/shifts.js';
import { DEFAULT_SLA_MINUTES, dueAt, parseSlaSpec, resolveSla } from '../../src/domain/sla.js';
import { AppError } from '../../src/errors.js';
import { repoRoot } from '../corpus.js';

/** The fake clock: Monday 2025-01-06 10:00 UTC. */
const NOW = new Date('2025-01-06T10:00:00Z');

const reader = (id: string, over: Partial<RoutingReader> & { shifts?: string } = {}): RoutingReader => {
  const { shifts, ...rest } = over;
  return {
    id,
    active: true,
    specialties: ['radiology'],
    subspecialties: [],
    jurisdictions: ['KE'],
    languages: ['en'],
    maxActive: 10,
    load: 0,
    schedule: {
      timeZone: 'UTC',
      weekly: shifts === undefined ? null : parseShiftSpec(shifts),
      exceptions: [],
    },
    ...rest,
  };
};

const kase = (over: Partial<RoutingCase> = {}): RoutingCase => ({
  kind: 'imaging',
  siteId: 'clinic-a',
  priority: 'routine',
  modalities: ['CT'],
  bodyParts: [],
  flags: [],
  metadata: {},
  jurisdiction: 'KE',
  crossBorderPolicy: 'never',
  priorReaderIds: [],
  ...over,
});

const rule = (over: Partial<RoutingRule> & Pick<RoutingRule, 'name'>): RoutingRule => ({
  enabled: true,
  match: {},
  target: { specialty: 'radiology' },
  policy: 'push',
  fallbacks: [],
  preferPriorReader: true,
  ...over,
});

const route = (c: RoutingCase, rules: RoutingRule[], readers: RoutingReader[]) =>
  evaluateRules(c, rules, readers, NOW);
const pushedTo = (d: ReturnType<typeof route>) => (d.policy === 'push' ? d.readerId : null);

describe('no rules: the default is today’s behaviour', () => {
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
    [
      'reader off shift is skipped',
      [reader('a', { shifts: 'tue 08:00-17:00' }), reader('b', { load: 5 })],
      'b',
    ],
    ['nobody qualified', [reader('a', { specialties: ['pathology'] })], null],
  ])('%s', (_name, readers, expected) => {
    const d = route(kase(), [], readers);
    expect(pushedTo(d)).toBe(expected);
    expect(d.ruleName).toBeNull();
  });

  test.each([
    ['ecg', 'cardiology'],
    ['imaging', 'radiology'],
    ['pathology', 'pathology'],
  ] as const)('%s cases go to %s', (kind, specialty) => {
    const readers = ['cardiology', 'radiology', 'pathology'].map((s) => reader(s, { specialties: [s] }));
    const d = route(kase({ kind }), [], readers);
    expect(d).toMatchObject({ policy: 'push', readerId: specialty, poolId: specialty, fallbackUsed: false });
  });

  test('no qualified reader gives a reason, not a guess', () => {
    const none = route(kase({ kind: 'ecg' }), [], [reader('a')]);
    expect(none.policy).toBe('none');
    expect(none.reason).toContain('cardiology');
    const full = route(kase(), [], [reader('a', { load: 10 })]);
    expect(full.policy).toBe('none');
    expect(full.reason).toContain('capacity');
    const away = route(kase(), [], [reader('a', { shifts: 'tue 08:00-17:00' })]);
    expect(away.reason).toContain('on shift');
  });
});

describe('ruleMatches', () => {
  const base: RuleCase = {
    kind: 'imaging',
    siteId: 'clinic-a',
    priority: 'stat',
    modalities: ['CT', 'SR'],
    bodyParts: ['HEAD'],
    flags: ['asystole', 'repeat'],
    metadata: {
      samplingFrequency: 500,
      leads: ['I', 'II', 'V4R'],
      device: { manufacturer: 'ACME' },
      format: 'wfdb',
    },
  };
  test.each([
    ['empty match matches everything', {}, true],
    ['kind', { kind: ['imaging'] }, true],
    ['kind, other', { kind: ['ecg', 'pathology'] }, false],
    ['modality, any of the study’s', { modality: ['SR'] }, true],
    [
      'modality, case-insensitive',
      parseRule({ name: 'x', target: { specialty: 'radiology' }, match: { modality: 'ct' } }).match,
      true,
    ],
    ['modality, other', { modality: ['MR'] }, false],
    ['body part', { bodyPart: ['CHEST', 'HEAD'] }, true],
    ['body part, other', { bodyPart: ['CHEST'] }, false],
    ['site', { site: ['clinic-a'] }, true],
    ['site, other', { site: ['clinic-b'] }, false],
    ['priority', { priority: ['stat', 'urgent'] }, true],
    ['priority, other', { priority: ['routine'] }, false],
    ['flags: all listed present', { flags: ['asystole', 'repeat'] }, true],
    ['flags: one missing', { flags: ['asystole', 'stemi'] }, false],
    ['metadata: number equals its text', { metadata: { samplingFrequency: ['500'] } }, true],
    ['metadata: other value', { metadata: { samplingFrequency: ['1000'] } }, false],
    ['metadata: a list value matches any element', { metadata: { leads: ['V4R'] } }, true],
    ['metadata: dotted path', { metadata: { 'device.manufacturer': ['ACME'] } }, true],
    ['metadata: missing key', { metadata: { objectivePower: ['40'] } }, false],
    ['every attribute must match', { kind: ['imaging'], modality: ['CT'], priority: ['routine'] }, false],
  ] as const)('%s', (_name, match, expected) => {
    expect(ruleMatches(match as RoutingRule['match'], base)).toBe(expected);
  });
});

describe('evaluateRules', () => {
  const neuro = rule({
    name: 'stroke',
    match: { kind: ['imaging'], modality: ['CT'], bodyPart: ['HEAD'] },
    target: { specialty: 'radiology', subspecialty: 'neuro' },
    fallbacks: [{ specialty: 'radiology' }],
  });
  const slides = rule({
    name: 'slides',
    match: { kind: ['pathology'] },
    target: { specialty: 'pathology', subspecialty: 'histology' },
    policy: 'pull',
    fallbacks: [{ specialty: 'pathology' }],
  });
  const head = kase({ bodyParts: ['HEAD'] });
  const neuroReader = (id: string, over: Parameters<typeof reader>[1] = {}) =>
    reader(id, { subspecialties: ['neuro'], ...over });
  const patho = (id: string, over: Parameters<typeof reader>[1] = {}) =>
    reader(id, { specialties: ['pathology'], subspecialties: ['histology'], ...over });

  test.each<[string, RoutingCase, RoutingRule[], RoutingReader[], Record<string, unknown>]>([
    [
      'the first matching rule decides, by order',
      head,
      [rule({ name: 'all CT', match: { modality: ['CT'] } }), neuro],
      [neuroReader('n', { load: 5 }), reader('g')],
      { policy: 'push', readerId: 'g', ruleName: 'all CT' },
    ],
    [
      'a disabled rule is skipped',
      head,
      [rule({ name: 'all CT', enabled: false, match: { modality: ['CT'] } }), neuro],
      [neuroReader('n', { load: 5 }), reader('g')],
      { policy: 'push', readerId: 'n', ruleName: 'stroke', poolId: 'radiology.neuro' },
    ],
    [
      'no rule matches: the default',
      kase({ bodyParts: ['CHEST'] }),
      [neuro],
      [neuroReader('n', { load: 5 }), reader('g')],
      { policy: 'push', readerId: 'g', ruleName: null },
    ],
    [
      'subspecialty pool: the generalist is not in it',
      head,
      [neuro],
      [reader('g'), neuroReader('n', { load: 9 })],
      { policy: 'push', readerId: 'n', fallbackUsed: false },
    ],
    [
      'fallback pool when nobody qualified is on shift',
      head,
      [neuro],
      [neuroReader('n', { shifts: 'sat 08:00-17:00' }), reader('g', { load: 3 })],
      { policy: 'push', readerId: 'g', fallbackUsed: true, poolId: 'radiology', fallbacks: [] },
    ],
    [
      'fallback pool when everyone qualified is at capacity',
      head,
      [neuro],
      [neuroReader('n', { load: 10 }), reader('g', { load: 3 })],
      { policy: 'push', readerId: 'g', fallbackUsed: true },
    ],
    [
      'night shift reader covers the night',
      head,
      [neuro],
      [
        neuroReader('day', { shifts: 'mon 08:00-09:00' }),
        neuroReader('night', { shifts: 'sun 22:00-11:00', load: 4 }),
      ],
      { policy: 'push', readerId: 'night', fallbackUsed: false },
    ],
    [
      'pull: the case goes to the pool, no reader',
      kase({ kind: 'pathology' }),
      [slides],
      [patho('p1'), patho('p2')],
      {
        policy: 'pull',
        poolId: 'pathology.histology',
        fallbackUsed: false,
        fallbacks: [{ specialty: 'pathology' }],
      },
    ],
    [
      'pull: capacity does not keep a case out of a pool (claims check it)',
      kase({ kind: 'pathology' }),
      [slides],
      [patho('p1', { load: 10 })],
      { policy: 'pull', poolId: 'pathology.histology' },
    ],
    [
      'pull: a fallback pool with someone on shift',
      kase({ kind: 'pathology' }),
      [slides],
      [patho('p1', { shifts: 'sat 08:00-17:00' }), reader('gp', { specialties: ['pathology'] })],
      { policy: 'pull', poolId: 'pathology', fallbackUsed: true },
    ],
    [
      'pull: nobody on shift anywhere, the case waits in the first pool with readers',
      kase({ kind: 'pathology' }),
      [slides],
      [patho('p1', { shifts: 'sat 08:00-17:00' })],
      { policy: 'pull', poolId: 'pathology.histology', fallbackUsed: false },
    ],
    [
      'pull: no qualified reader at all',
      kase({ kind: 'pathology' }),
      [slides],
      [reader('r')],
      { policy: 'none' },
    ],
    [
      'language pool',
      kase(),
      [rule({ name: 'fr', target: { specialty: 'radiology', language: 'fr' } })],
      [reader('en'), reader('fr', { languages: ['en', 'fr'], load: 5 })],
      { policy: 'push', readerId: 'fr', poolId: 'radiology:fr' },
    ],
    [
      'flags route an asystole ECG',
      kase({ kind: 'ecg', flags: ['asystole'] }),
      [rule({ name: 'asystole', match: { flags: ['asystole'] }, target: { specialty: 'cardiology' } })],
      [reader('c', { specialties: ['cardiology'] })],
      { policy: 'push', readerId: 'c', ruleName: 'asystole' },
    ],
  ])('%s', (_name, c, rules, readers, expected) => {
    expect(route(c, rules, readers)).toMatchObject(expected);
  });

  describe('follow-up of the same patient', () => {
    const readers = [reader('a'), reader('b', { load: 7 })];
    test.each<[string, RoutingCase, RoutingRule[], RoutingReader[], string]>([
      [
        'prefers the prior case’s reader over the least loaded',
        kase({ priorReaderIds: ['b'] }),
        [],
        readers,
        'b',
      ],
      [
        'takes the most recent prior reader who can',
        kase({ priorReaderIds: ['gone', 'b'] }),
        [],
        readers,
        'b',
      ],
      [
        'not when the prior reader is off shift',
        kase({ priorReaderIds: ['b'] }),
        [],
        [reader('a'), reader('b', { shifts: 'sat 08:00-09:00' })],
        'a',
      ],
      [
        'not when the prior reader is at capacity',
        kase({ priorReaderIds: ['b'] }),
        [],
        [reader('a'), reader('b', { load: 10 })],
        'a',
      ],
      [
        'not when the prior reader is outside the rule’s pools',
        kase({ priorReaderIds: ['b'], bodyParts: ['HEAD'] }),
        [rule({ name: 'neuro only', target: { specialty: 'radiology', subspecialty: 'neuro' } })],
        [reader('a', { subspecialties: ['neuro'] }), reader('b')],
        'a',
      ],
      [
        'not when the rule turns it off',
        kase({ priorReaderIds: ['b'] }),
        [rule({ name: 'no preference', preferPriorReader: false })],
        readers,
        'a',
      ],
      [
        'not across a border the site forbids',
        kase({ priorReaderIds: ['b'] }),
        [],
        [reader('a'), reader('b', { jurisdictions: ['FR'] })],
        'a',
      ],
    ])('%s', (_name, c, rules, rs, expected) => {
      expect(pushedTo(route(c, rules, rs))).toBe(expected);
    });

    test('a pull rule still hands a follow-up to the prior reader', () => {
      const d = route(
        kase({ kind: 'pathology', priorReaderIds: ['p2'] }),
        [slides],
        [patho('p1'), patho('p2', { load: 3 })],
      );
      expect(d).toMatchObject({ policy: 'push', readerId: 'p2', poolId: 'pathology.histology' });
      expect(d.reason).toContain('follow-up');
    });
  });

  describe('jurisdiction and cross-border policy', () => {
    const abroad = reader('abroad', { jurisdictions: ['FR'] });
    const home = reader('home', { load: 9 });
    test.each<[string, RoutingCase['crossBorderPolicy'], RoutingReader[], string | null]>([
      ['never: home reader only', 'never', [abroad, home], 'home'],
      ['never: nobody at home, nobody at all', 'never', [abroad], null],
      ['deidentified: nobody at home, abroad de-identified', 'deidentified', [abroad], 'abroad'],
      ['deidentified: the home reader first, however loaded', 'deidentified', [abroad, home], 'home'],
      ['identified: a reader abroad may read', 'identified', [abroad, home], 'abroad'],
    ])('%s', (_name, crossBorderPolicy, readers, expected) => {
      expect(pushedTo(route(kase({ crossBorderPolicy }), [], readers))).toBe(expected);
    });

    test('the reason says why readers abroad were passed over', () => {
      expect(route(kase({ crossBorderPolicy: 'never' }), [], [abroad]).reason).toContain('cross-border');
      expect(route(kase({ crossBorderPolicy: 'deidentified' }), [], [abroad]).reason).toContain(
        'de-identified',
      );
    });

    test.each<[string, RoutingCase, RoutingReader[], RoutingRule[], Record<string, unknown>]>([
      [
        'abroad: marked de-identified',
        kase({ crossBorderPolicy: 'deidentified' }),
        [abroad],
        [],
        { policy: 'push', readerId: 'abroad', deidentified: true },
      ],
      [
        'at home: not marked',
        kase({ crossBorderPolicy: 'deidentified' }),
        [abroad, home],
        [],
        { policy: 'push', readerId: 'home', deidentified: false },
      ],
      [
        'burned-in annotation keeps the case home, and the note says why',
        kase({
          crossBorderPolicy: 'deidentified',
          crossBorderRefusal: 'instance 1.2 has BurnedInAnnotation YES',
        }),
        [abroad],
        [],
        { policy: 'none' },
      ],
      [
        'a pull case waiting for the home pool to come on shift stays home',
        kase({ crossBorderPolicy: 'deidentified' }),
        [abroad, reader('home-night', { shifts: 'mon-fri 20:00-23:00' })],
        [rule({ name: 'pool', policy: 'pull' })],
        { policy: 'pull', deidentified: false },
      ],
      [
        'a rule targeting a foreign pool sends the copy there',
        kase({ crossBorderPolicy: 'deidentified' }),
        [abroad, home],
        [rule({ name: 'second opinion', target: { specialty: 'radiology', jurisdiction: 'FR' } })],
        { policy: 'push', readerId: 'abroad', deidentified: true, poolId: 'radiology@FR' },
      ],
      [
        'the prior reader abroad is not preferred (no linking of de-identified cases)',
        kase({ crossBorderPolicy: 'deidentified', priorReaderIds: ['abroad-2'] }),
        [abroad, reader('abroad-2', { jurisdictions: ['FR'], load: 5 })],
        [],
        { policy: 'push', readerId: 'abroad', deidentified: true },
      ],
    ])('deidentified site: %s', (_name, c, readers, rules, expected) => {
      const d = route(c, rules, readers);
      expect(d).toMatchObject(expected);
      if (c.crossBorderRefusal) expect(d.reason).toContain('BurnedInAnnotation');
    });

    test('a pool by jurisdiction still needs the site’s permission to cross the border', () => {
      const fr = rule({
        name: 'second opinion in France',
        target: { specialty: 'radiology', jurisdiction: 'FR' },
      });
      expect(route(kase({ crossBorderPolicy: 'never' }), [fr], [abroad, home]).policy).toBe('none');
      expect(pushedTo(route(kase({ crossBorderPolicy: 'identified' }), [fr], [abroad, home]))).toBe('abroad');
      const both = reader('both', { jurisdictions: ['KE', 'FR'] });
      expect(pushedTo(route(kase({ crossBorderPolicy: 'never' }), [fr], [abroad, both]))).toBe('both');
    });
  });

  test('the clock decides who is on shift (Europe/Paris, summer and winter)', () => {
    const parisDay = neuroReader('paris', {
      schedule: { timeZone: 'Europe/Paris', weekly: parseShiftSpec('mon-fri 08:00-17:00'), exceptions: [] },
    });
    const fallback = reader('g');
    const at = (iso: string) => evaluateRules(head, [neuro], [parisDay, fallback], new Date(iso));
    // 06:30 UTC is 07:30 in Paris in January (not yet on) and 08:30 in July (on).
    expect(at('2025-01-06T06:30:00Z')).toMatchObject({ readerId: 'g', fallbackUsed: true });
    expect(at('2025-07-07T06:30:00Z')).toMatchObject({ readerId: 'paris', fallbackUsed: false });
  });
});

describe('rule sets as data', () => {
  test('fixtures/rules.yaml parses and validates', () => {
    const rules = parseRuleSet(parse(readFileSync(path.join(repoRoot, 'fixtures/rules.yaml'), 'utf8')));
    expect(rules.length).toBeGreaterThan(3);
    expect(rules.map((r) => r.name)).toContain('Histology slides');
    for (const r of rules) expect(poolIdOf(r.target)).toMatch(/^(cardiology|radiology|pathology)/);
  });

  test('scalars become lists, codes are normalised', () => {
    const [r] = parseRuleSet({
      rules: [
        {
          name: 'x',
          match: { kind: 'ecg', modality: 'ecg', flags: 'Asystole', metadata: { samplingFrequency: 500 } },
          target: { specialty: 'Cardiology', language: 'FR', jurisdiction: 'ke' },
        },
      ],
    });
    expect(r).toEqual({
      name: 'x',
      enabled: true,
      match: {
        kind: ['ecg'],
        modality: ['ECG'],
        flags: ['asystole'],
        metadata: { samplingFrequency: ['500'] },
      },
      target: { specialty: 'cardiology', language: 'fr', jurisdiction: 'KE' },
      policy: 'push',
      fallbacks: [],
      preferPriorReader: true,
    });
    expect(poolIdOf(r!.target)).toBe('cardiology:fr@KE');
  });

  test.each([
    ['an unknown rule key', { name: 'x', target: { specialty: 'radiology' }, prio: 1 }, /unknown key prio/],
    [
      'an unknown match key (a typo must not match everything)',
      { name: 'x', target: { specialty: 'radiology' }, match: { bodypart: 'HEAD' } },
      /unknown key bodypart/,
    ],
    ['no target', { name: 'x' }, /target/],
    ['an unknown specialty', { name: 'x', target: { specialty: 'dermatology' } }, /dermatology/],
    [
      'a subspecialty of another specialty',
      { name: 'x', target: { specialty: 'pathology', subspecialty: 'neuro' } },
      /not a pathology subspecialty/,
    ],
    [
      'a subspecialty where there are none',
      { name: 'x', target: { specialty: 'cardiology', subspecialty: 'neuro' } },
      /no subspecialties/,
    ],
    ['a bad policy', { name: 'x', target: { specialty: 'radiology' }, policy: 'shove' }, /push or pull/],
    ['a bad kind', { name: 'x', target: { specialty: 'radiology' }, match: { kind: 'xray' } }, /xray/],
    ['an empty list', { name: 'x', target: { specialty: 'radiology' }, match: { modality: [] } }, /empty/],
    [
      'a bad fallback',
      { name: 'x', target: { specialty: 'radiology' }, fallbacks: [{ specialty: 'x' }] },
      /fallbacks\[0\]/,
    ],
    [
      'a bad jurisdiction',
      { name: 'x', target: { specialty: 'radiology', jurisdiction: 'Kenya' } },
      /ISO 3166/,
    ],
    ['no name', { target: { specialty: 'radiology' } }, /name/],
  ])('refuses %s', (_name, input, message) => {
    let error: unknown;
    try {
      parseRuleSet([input]);
    } catch (err) {
      error = err;
    }
    expect(error).toBeInstanceOf(AppError);
    expect((error as AppError).code).toBe('VALIDATION_FAILED');
    expect((error as AppError).message).toMatch(message);
  });
});

describe('SLA contracts', () => {
  test.each([
    ['stat', 60],
    ['urgent', 240],
    ['routine', 1440],
  ] as const)('default %s is %i minutes', (priority, minutes) => {
    const start = new Date('2025-01-06T10:00:00Z');
    expect(dueAt(start, priority, resolveSla(null)).getTime() - start.getTime()).toBe(minutes * 60_000);
  });

  test('a site overrides some priorities and keeps the defaults for the rest', () => {
    expect(resolveSla(parseSlaSpec('stat=20, routine=720'))).toEqual({ stat: 20, urgent: 240, routine: 720 });
    expect(DEFAULT_SLA_MINUTES).toEqual({ stat: 60, urgent: 240, routine: 1440 });
  });

  test.each(['stat=0', 'stat=-5', 'asap=10', 'stat', 'stat=1.5', 'routine=9999999'])('refuses %j', (spec) => {
    expect(() => resolveSla(parseSlaSpec(spec))).toThrow(AppError);
  });
});
