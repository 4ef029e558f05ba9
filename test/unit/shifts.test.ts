import { describe, expect, test } from 'vitest';
import {
  isOnShift,
  isTimeZone,
  localTime,
  parseExceptionSpec,
  parseShiftSpec,
  type Schedule,
  type ShiftException,
} from '../../src/domain/shifts.js';
import { AppError } from '../../src/errors.js';

const schedule = (timeZone: string, weekly: string | null, exceptions: ShiftException[] = []): Schedule => ({
  timeZone,
  weekly: weekly === null ? null : parseShiftSpec(weekly),
  exceptions,
});

describe('isOnShift: weekly shifts in the reader’s own time zone', () => {
  test.each([
    // 2025-01-06 and 2025-07-07 are Mondays; Paris is UTC+1 in January and UTC+2 in July.
    ['winter, 08:30 CET', 'Europe/Paris', 'mon 08:00-17:00', '2025-01-06T07:30:00Z', true],
    ['winter, 07:30 CET', 'Europe/Paris', 'mon 08:00-17:00', '2025-01-06T06:30:00Z', false],
    ['summer, 08:30 CEST', 'Europe/Paris', 'mon 08:00-17:00', '2025-07-07T06:30:00Z', true],
    ['summer, 16:59 CEST', 'Europe/Paris', 'mon 08:00-17:00', '2025-07-07T14:59:00Z', true],
    [
      'summer, 17:00 CEST: the end is exclusive',
      'Europe/Paris',
      'mon 08:00-17:00',
      '2025-07-07T15:00:00Z',
      false,
    ],
    ['another day', 'Europe/Paris', 'mon 08:00-17:00', '2025-01-07T09:00:00Z', false],
    // Spring forward, Sunday 2025-03-30 in Paris: 02:00 CET becomes 03:00 CEST.
    ['DST spring: 01:30 CET', 'Europe/Paris', 'sun 01:00-04:00', '2025-03-30T00:30:00Z', true],
    ['DST spring: 03:30 CEST', 'Europe/Paris', 'sun 01:00-04:00', '2025-03-30T01:30:00Z', true],
    ['DST spring: 04:00 CEST', 'Europe/Paris', 'sun 01:00-04:00', '2025-03-30T02:00:00Z', false],
    // Overnight Saturday → Sunday across the same change.
    ['overnight over DST: Sat 22:30 CET', 'Europe/Paris', 'sat 22:00-06:00', '2025-03-29T21:30:00Z', true],
    ['overnight over DST: Sat 21:59 CET', 'Europe/Paris', 'sat 22:00-06:00', '2025-03-29T20:59:00Z', false],
    ['overnight over DST: Sun 05:59 CEST', 'Europe/Paris', 'sat 22:00-06:00', '2025-03-30T03:59:00Z', true],
    ['overnight over DST: Sun 06:00 CEST', 'Europe/Paris', 'sat 22:00-06:00', '2025-03-30T04:00:00Z', false],
    // Fall back, Sunday 2025-11-02 in New York: 01:00-02:00 happens twice and both are on shift.
    ['DST fall: first 01:30 (EDT)', 'America/New_York', 'sun 00:00-02:00', '2025-11-02T05:30:00Z', true],
    ['DST fall: second 01:30 (EST)', 'America/New_York', 'sun 00:00-02:00', '2025-11-02T06:30:00Z', true],
    ['DST fall: 02:00 EST', 'America/New_York', 'sun 00:00-02:00', '2025-11-02T07:00:00Z', false],
    // The week wraps: a Saturday-night shift ends on Sunday, a Sunday-night shift on Monday.
    ['Sat 23:00-01:00 at Sun 00:30', 'UTC', 'sat 23:00-01:00', '2025-01-05T00:30:00Z', true],
    ['Sun 22:00-06:00 at Mon 05:00', 'UTC', 'sun 22:00-06:00', '2025-01-06T05:00:00Z', true],
    ['Sun 22:00-06:00 at Tue 05:00', 'UTC', 'sun 22:00-06:00', '2025-01-07T05:00:00Z', false],
    ['until 24:00', 'UTC', 'mon 20:00-24:00', '2025-01-06T23:59:00Z', true],
    ['until 24:00, not the next morning', 'UTC', 'mon 20:00-24:00', '2025-01-07T00:00:00Z', false],
    // The local date differs from UTC's: Kiritimati is UTC+14, Kolkata UTC+5:30.
    [
      'UTC+14: Sunday 18:30 UTC is Monday 08:30',
      'Pacific/Kiritimati',
      'mon 08:00-10:00',
      '2025-01-05T18:30:00Z',
      true,
    ],
    ['UTC+5:30: 03:00 UTC is 08:30', 'Asia/Kolkata', 'mon 08:30-09:00', '2025-01-06T03:00:00Z', true],
    ['UTC+5:30: 03:30 UTC is 09:00', 'Asia/Kolkata', 'mon 08:30-09:00', '2025-01-06T03:30:00Z', false],
    ['mon-fri range, Wednesday', 'Africa/Nairobi', 'mon-fri 08:00-17:00', '2025-01-08T06:00:00Z', true],
    ['mon-fri range, Saturday', 'Africa/Nairobi', 'mon-fri 08:00-17:00', '2025-01-11T06:00:00Z', false],
  ])('%s', (_name, timeZone, weekly, at, expected) => {
    expect(isOnShift(schedule(timeZone, weekly), new Date(at))).toBe(expected);
  });
});

describe('isOnShift: dated exceptions', () => {
  // 2025-01-04 is a Saturday, 2025-01-06 a Monday; all in UTC.
  test.each<[string, string | null, ShiftException[], string, boolean]>([
    [
      'a day off cancels that day’s shift',
      'mon 08:00-17:00',
      [{ date: '2025-01-06', kind: 'off' }],
      '2025-01-06T10:00:00Z',
      false,
    ],
    [
      'a day off elsewhere changes nothing',
      'mon 08:00-17:00',
      [{ date: '2025-01-07', kind: 'off' }],
      '2025-01-06T10:00:00Z',
      true,
    ],
    [
      'a day off cancels a night shift whole',
      'sat 22:00-06:00',
      [{ date: '2025-01-04', kind: 'off' }],
      '2025-01-05T03:00:00Z',
      false,
    ],
    [
      'a day off the next day leaves the night shift that started before it',
      'sat 22:00-06:00',
      [{ date: '2025-01-05', kind: 'off' }],
      '2025-01-05T03:00:00Z',
      true,
    ],
    [
      'time off blocks its window',
      'mon 08:00-17:00',
      [{ date: '2025-01-06', kind: 'off', start: '12:00', end: '13:00' }],
      '2025-01-06T12:30:00Z',
      false,
    ],
    [
      'time off leaves the rest of the shift',
      'mon 08:00-17:00',
      [{ date: '2025-01-06', kind: 'off', start: '12:00', end: '13:00' }],
      '2025-01-06T11:00:00Z',
      true,
    ],
    [
      'extra hours on a free day',
      'mon 08:00-17:00',
      [{ date: '2025-01-05', kind: 'extra', start: '10:00', end: '12:00' }],
      '2025-01-05T11:00:00Z',
      true,
    ],
    [
      'extra hours overnight reach into the next day',
      'mon 08:00-17:00',
      [{ date: '2025-01-04', kind: 'extra', start: '23:00', end: '02:00' }],
      '2025-01-05T01:00:00Z',
      true,
    ],
    [
      'extra hours win over a day off',
      'mon 08:00-17:00',
      [
        { date: '2025-01-06', kind: 'off' },
        { date: '2025-01-06', kind: 'extra', start: '18:00', end: '20:00' },
      ],
      '2025-01-06T19:00:00Z',
      true,
    ],
    ['no schedule: available at any hour', null, [], '2025-01-05T03:00:00Z', true],
    [
      'no schedule: a day off still counts',
      null,
      [{ date: '2025-01-05', kind: 'off' }],
      '2025-01-05T03:00:00Z',
      false,
    ],
    ['an empty schedule: never on, unless extra', '', [], '2025-01-06T10:00:00Z', false],
    [
      'an empty schedule with extra hours',
      '',
      [{ date: '2025-01-06', kind: 'extra', start: '09:00', end: '11:00' }],
      '2025-01-06T10:00:00Z',
      true,
    ],
  ])('%s', (_name, weekly, exceptions, at, expected) => {
    expect(isOnShift(schedule('UTC', weekly, exceptions), new Date(at))).toBe(expected);
  });

  test('exception dates are local dates in the reader’s zone', () => {
    // 2025-01-06 00:30 in Nairobi (UTC+3) is still 2025-01-05 in UTC; the day off is the local Monday.
    const s = schedule('Africa/Nairobi', 'daily 00:00-24:00', [{ date: '2025-01-06', kind: 'off' }]);
    expect(isOnShift(s, new Date('2025-01-05T21:30:00Z'))).toBe(false);
    expect(isOnShift(s, new Date('2025-01-05T20:30:00Z'))).toBe(true);
  });
});

describe('schedule parsing', () => {
  test.each([
    ['mon 08:00-17:00', [['mon', '08:00', '17:00']]],
    [
      'mon-wed 08:00-12:00; sat 22:00-06:00',
      [
        ['mon', '08:00', '12:00'],
        ['tue', '08:00', '12:00'],
        ['wed', '08:00', '12:00'],
        ['sat', '22:00', '06:00'],
      ],
    ],
    [
      'fri-mon 09:00-10:00',
      [
        ['fri', '09:00', '10:00'],
        ['sat', '09:00', '10:00'],
        ['sun', '09:00', '10:00'],
        ['mon', '09:00', '10:00'],
      ],
    ],
    [
      'Daily 00:00-24:00',
      ['sun', 'mon', 'tue', 'wed', 'thu', 'fri', 'sat'].map((d) => [d, '00:00', '24:00']),
    ],
  ])('parseShiftSpec(%j)', (spec, expected) => {
    expect(parseShiftSpec(spec).map((s) => [s.day, s.start, s.end])).toEqual(expected);
  });

  test.each([
    'mon 8-17',
    'xyz 08:00-10:00',
    'mon 25:00-26:00',
    'mon 08:00',
    'mon 24:00-02:00',
    'mon-xyz 08:00-09:00',
  ])('parseShiftSpec refuses %j', (spec) => {
    expect(() => parseShiftSpec(spec)).toThrow(AppError);
  });

  test('parseExceptionSpec', () => {
    expect(
      parseExceptionSpec('2025-12-25 off; 2025-12-27 extra 08:00-12:00, 2025-12-28 OFF 13:00-14:00'),
    ).toEqual([
      { date: '2025-12-25', kind: 'off' },
      { date: '2025-12-27', kind: 'extra', start: '08:00', end: '12:00' },
      { date: '2025-12-28', kind: 'off', start: '13:00', end: '14:00' },
    ]);
  });

  test.each([
    '2025-02-30 off',
    '2025-12-27 extra',
    '25-12-2025 off',
    '2025-12-25 holiday',
    '2025-12-25 off 9-10',
  ])('parseExceptionSpec refuses %j', (spec) => {
    expect(() => parseExceptionSpec(spec)).toThrow(AppError);
  });

  test('time zones are IANA names', () => {
    expect(isTimeZone('Africa/Nairobi')).toBe(true);
    expect(isTimeZone('Mars/Olympus_Mons')).toBe(false);
    expect(() => isOnShift(schedule('Mars/Olympus_Mons', null), new Date())).toThrow(/IANA/);
  });

  test('localTime gives the local calendar day and minute', () => {
    const t = localTime(new Date('2025-01-05T21:30:00Z'), 'Africa/Nairobi');
    expect(new Date(t.day * 86_400_000).toISOString().slice(0, 10)).toBe('2025-01-06');
    expect(t.minutes).toBe(30);
  });
});
