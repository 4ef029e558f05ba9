import { AppError } from '../errors.js';

/**
 * Reader availability. Shifts are wall-clock times in the reader's own IANA time zone, so "Mon 08:00-17:00 in
 * Europe/Paris" means 08:00 local in winter and in summer alike; daylight-saving changes move the UTC instants,
 * not the shift. A shift whose end is at or before its start runs overnight into the next day.
 */

export const WEEKDAYS = ['sun', 'mon', 'tue', 'wed', 'thu', 'fri', 'sat'] as const;
export type Weekday = (typeof WEEKDAYS)[number];

export interface WeeklyShift {
  day: Weekday;
  /** HH:MM, 00:00-23:59. */
  start: string;
  /** HH:MM, 00:00-24:00; at or before `start` means the shift ends the next day. */
  end: string;
}

/**
 * A dated change to the weekly pattern, on a local calendar date. `off` without times cancels every weekly
 * shift that starts on that date (a Saturday-night shift is cancelled whole, its Sunday-morning part included);
 * `off` with times blocks that window; `extra` adds a window. Extra hours win over time off, which wins over
 * the weekly pattern.
 */
export interface ShiftException {
  date: string;
  kind: 'off' | 'extra';
  start?: string | undefined;
  end?: string | undefined;
}

export interface Schedule {
  timeZone: string;
  /** null: no schedule kept, the reader is available at any hour (time off still applies). */
  weekly: WeeklyShift[] | null;
  exceptions: ShiftException[];
}

const DAY_MINUTES = 1440;
const TIME = /^([01]\d|2[0-3]):([0-5]\d)$|^24:00$/;
const DATE = /^(\d{4})-(\d{2})-(\d{2})$/;

/** Formatters are costly to build and a routing decision asks for many readers' local time: keep one per zone. */
const formatters = new Map<string, Intl.DateTimeFormat>();

function formatterFor(timeZone: string): Intl.DateTimeFormat {
  let f = formatters.get(timeZone);
  if (!f) {
    try {
      f = new Intl.DateTimeFormat('en-US', {
        timeZone,
        hourCycle: 'h23',
        year: 'numeric',
        month: '2-digit',
        day: '2-digit',
        hour: '2-digit',
        minute: '2-digit',
      });
    } catch {
      throw new AppError('VALIDATION_FAILED', `"${timeZone}" is not an IANA time zone (e.g. Africa/Nairobi)`);
    }
    formatters.set(timeZone, f);
  }
  return f;
}

export function isTimeZone(timeZone: string): boolean {
  try {
    formatterFor(timeZone);
    return true;
  } catch {
    return false;
  }
}

/** The local calendar date (days since 1970-01-01) and minute of the day of an instant in a time zone. */
export function localTime(now: Date, timeZone: string): { day: number; minutes: number } {
  const parts: Record<string, string> = {};
  for (const p of formatterFor(timeZone).formatToParts(now)) parts[p.type] = p.value;
  const day = Date.UTC(Number(parts.year), Number(parts.month) - 1, Number(parts.day)) / 86_400_000;
  return { day, minutes: Number(parts.hour) * 60 + Number(parts.minute) };
}

function weekdayOf(day: number): Weekday {
  // 1970-01-01 was a Thursday.
  return WEEKDAYS[(((day + 4) % 7) + 7) % 7]!;
}

function minutesOf(time: string): number {
  const m = TIME.exec(time);
  if (!m) throw new AppError('VALIDATION_FAILED', `"${time}" is not a time HH:MM (00:00-24:00)`);
  return time === '24:00' ? DAY_MINUTES : Number(m[1]) * 60 + Number(m[2]);
}

function dayOf(date: string): number {
  const m = DATE.exec(date);
  const day = m ? Date.UTC(Number(m[1]), Number(m[2]) - 1, Number(m[3])) / 86_400_000 : Number.NaN;
  // Date.UTC rolls 2025-02-30 over to March; a round trip catches it.
  if (!m || new Date(day * 86_400_000).toISOString().slice(0, 10) !== date) {
    throw new AppError('VALIDATION_FAILED', `"${date}" is not a date YYYY-MM-DD`);
  }
  return day;
}

/**
 * Whether a window that opens on local day `anchor` at `start` and closes at `end` (the next day when
 * end <= start) covers local `day` at `minutes`.
 */
function covers(anchor: number, start: number, end: number, day: number, minutes: number): boolean {
  if (end > start) return day === anchor && minutes >= start && minutes < end;
  return (day === anchor && minutes >= start) || (day === anchor + 1 && minutes < end);
}

/** Whether the reader is on shift at the instant `now`. */
export function isOnShift(schedule: Schedule, now: Date): boolean {
  const { day, minutes } = localTime(now, schedule.timeZone);
  // Only windows that open today or yesterday can cover now: none is longer than a day.
  const exceptions = schedule.exceptions
    .map((e) => ({ ...e, anchor: dayOf(e.date) }))
    .filter((e) => e.anchor === day || e.anchor === day - 1);
  const window = (e: ShiftException & { anchor: number }) =>
    covers(
      e.anchor,
      e.start === undefined ? 0 : minutesOf(e.start),
      e.end === undefined ? DAY_MINUTES : minutesOf(e.end),
      day,
      minutes,
    );
  if (exceptions.some((e) => e.kind === 'extra' && window(e))) return true;
  if (exceptions.some((e) => e.kind === 'off' && e.start !== undefined && window(e))) return false;
  if (schedule.weekly === null) {
    return !exceptions.some((e) => e.kind === 'off' && e.start === undefined && e.anchor === day);
  }
  const dayOff = new Set(
    exceptions.filter((e) => e.kind === 'off' && e.start === undefined).map((e) => e.anchor),
  );
  return [day, day - 1].some(
    (anchor) =>
      !dayOff.has(anchor) &&
      schedule.weekly!.some(
        (s) =>
          s.day === weekdayOf(anchor) && covers(anchor, minutesOf(s.start), minutesOf(s.end), day, minutes),
      ),
  );
}

/** Checks stored or typed shifts: known days, valid times. */
export function checkWeeklyShifts(input: unknown): WeeklyShift[] {
  if (!Array.isArray(input)) throw new AppError('VALIDATION_FAILED', 'shifts must be a list');
  return input.map((s, i) => {
    const v = s as Partial<WeeklyShift> | null;
    if (!v || !WEEKDAYS.includes(v.day as Weekday)) {
      throw new AppError('VALIDATION_FAILED', `shift ${i + 1}: day must be one of ${WEEKDAYS.join(', ')}`);
    }
    minutesOf(String(v.start));
    minutesOf(String(v.end));
    if (v.start === '24:00') throw new AppError('VALIDATION_FAILED', `shift ${i + 1}: cannot start at 24:00`);
    return { day: v.day as Weekday, start: String(v.start), end: String(v.end) };
  });
}

export function checkShiftExceptions(input: unknown): ShiftException[] {
  if (!Array.isArray(input)) throw new AppError('VALIDATION_FAILED', 'shift exceptions must be a list');
  return input.map((e, i) => {
    const v = e as Partial<ShiftException> | null;
    if (!v || (v.kind !== 'off' && v.kind !== 'extra')) {
      throw new AppError('VALIDATION_FAILED', `exception ${i + 1}: kind must be off or extra`);
    }
    dayOf(String(v.date));
    const hasTimes = v.start !== undefined || v.end !== undefined;
    if (hasTimes) {
      minutesOf(String(v.start));
      minutesOf(String(v.end));
    } else if (v.kind === 'extra') {
      throw new AppError('VALIDATION_FAILED', `exception ${i + 1}: extra hours need a start and an end`);
    }
    return hasTimes
      ? { date: String(v.date), kind: v.kind, start: String(v.start), end: String(v.end) }
      : { date: String(v.date), kind: v.kind };
  });
}

/**
 * Parses the CLI form of a weekly schedule: entries separated by `,` or `;`, each `DAYS HH:MM-HH:MM`, where
 * DAYS is a day (`mon`), a range (`mon-fri`, `fri-mon` wraps) or `daily`. Example: `mon-fri 08:00-17:00; sat 22:00-06:00`.
 */
export function parseShiftSpec(spec: string): WeeklyShift[] {
  const out: WeeklyShift[] = [];
  for (const entry of spec
    .split(/[,;]/)
    .map((s) => s.trim())
    .filter(Boolean)) {
    const m = /^([a-z]+)(?:-([a-z]+))?\s+(\d{2}:\d{2})-(\d{2}:\d{2})$/i.exec(entry);
    if (!m) throw new AppError('VALIDATION_FAILED', `shift "${entry}" is not DAYS HH:MM-HH:MM`);
    const from = m[1]!.toLowerCase();
    const to = m[2]?.toLowerCase();
    let days: Weekday[];
    if (from === 'daily' && !to) days = [...WEEKDAYS];
    else {
      const a = WEEKDAYS.indexOf(from as Weekday);
      const b = to === undefined ? a : WEEKDAYS.indexOf(to as Weekday);
      if (a < 0 || b < 0) throw new AppError('VALIDATION_FAILED', `shift "${entry}": unknown day`);
      days = [];
      for (let d = a, n = 0; n < 7; d = (d + 1) % 7, n++) {
        days.push(WEEKDAYS[d]!);
        if (d === b) break;
      }
    }
    for (const day of days) out.push({ day, start: m[3]!, end: m[4]! });
  }
  return checkWeeklyShifts(out);
}

/**
 * Parses the CLI form of dated exceptions: entries separated by `,` or `;`, each `YYYY-MM-DD off`,
 * `YYYY-MM-DD off HH:MM-HH:MM` or `YYYY-MM-DD extra HH:MM-HH:MM`.
 */
export function parseExceptionSpec(spec: string): ShiftException[] {
  const out: ShiftException[] = [];
  for (const entry of spec
    .split(/[,;]/)
    .map((s) => s.trim())
    .filter(Boolean)) {
    const m = /^(\S+)\s+(off|extra)(?:\s+(\d{2}:\d{2})-(\d{2}:\d{2}))?$/i.exec(entry);
    if (!m) {
      throw new AppError(
        'VALIDATION_FAILED',
        `exception "${entry}" is not YYYY-MM-DD off|extra [HH:MM-HH:MM]`,
      );
    }
    out.push({
      date: m[1]!,
      kind: m[2]!.toLowerCase() as 'off' | 'extra',
      ...(m[3] ? { start: m[3], end: m[4]! } : {}),
    });
  }
  return checkShiftExceptions(out);
}
