/**
 * Lays out the ECG page cardiologists read: pink millimetre grid, 25 mm/s, 10 mm/mV, a calibration pulse per
 * row, a header of measurements and flags. Pure: the result is geometry in millimetres, which ecg-svg.ts
 * writes as SVG (for the viewer) and ecg-raster.ts paints as pixels (for the thumbnail), so both show the same
 * page. The page carries no patient demographics.
 *
 * Layouts:
 * - the 12 standard leads (recorded or derived): 3 rows × 4 columns of 2.5 s, a 10 s lead II rhythm strip;
 *   extra leads (15-lead: V4R, V7–V9, X/Y/Z …) get one or two more rows of 2.5 s cells above the rhythm strip;
 * - 1–3 leads (Holter, monitoring strips): consecutive 10 s strips, each lead once per strip, filling up to six
 *   rows (1 lead: 60 s; 2 leads: 30 s; 3 leads: 20 s), each row stamped with its start time; the page starts
 *   at `startSeconds`, or where a critical finding is, so a pause at 3 h 12 min is on the thumbnail;
 * - anything else: one 10 s strip per lead, up to 16.
 */
import { AppError } from '../../errors.js';
import { selectKth } from './dsp.js';
import {
  deriveLimbLeads,
  type Ecg,
  type EcgLead,
  findLead,
  hasStandardTwelveLeads,
  STANDARD_LEADS,
} from './ecg.js';

/** What the header shows of the triage (measure.ts's EcgTriage fits). */
export interface PageTriage {
  heartRate: number | null;
  flags: { code: string; message: string; critical: boolean; atSeconds?: number }[];
  quality?: { overall: string };
  rr?: { irregular: boolean };
}

export interface EcgPageOptions {
  /** Paper speed in mm/s (25 standard, 50 for fast rhythms). */
  paperSpeed?: number;
  /** Amplitude in mm/mV (10 standard; 5 for large complexes, 20 for small). */
  gain?: number;
  /** Target width in pixels. Traces are reduced to two points (min and max) per pixel column at this width. */
  width?: number;
  /** Measurements and flags for the header. */
  triage?: PageTriage;
  /** Strip layouts (1–3 leads, many leads): where the page starts, in seconds from the record start. */
  startSeconds?: number;
}

/** The standard page: 3 rows × 4 columns, each column 2.5 s at 25 mm/s. */
export const TWELVE_LEAD_LAYOUT = [
  ['I', 'aVR', 'V1', 'V4'],
  ['II', 'aVL', 'V2', 'V5'],
  ['III', 'aVF', 'V3', 'V6'],
] as const;
export const RHYTHM_LEAD = 'II';

export const DEFAULT_SVG_WIDTH = 1250;
export const PAGE_WIDTH_MM = 275;
const MARGIN_MM = 5;
export const HEADER_MM = 15;
export const GRID_X0 = MARGIN_MM;
const GRID_WIDTH_MM = PAGE_WIDTH_MM - 2 * MARGIN_MM; // 265 mm
/** Room at the start of each row for the calibration pulse. */
const CALIBRATION_MM = 10;
const TRACE_X0 = GRID_X0 + CALIBRATION_MM;
const TRACE_WIDTH_MM = 250; // 10 s at 25 mm/s
const COLUMN_WIDTH_MM = TRACE_WIDTH_MM / 4;
const TWELVE_LEAD_ROW_MM = 50;
const EXTRA_ROW_MM = 40;
const STRIP_ROW_MM = 40;
const MAX_STRIPS = 16;
const HOLTER_ROWS = 6;
/** Where a row's zero line sits, as a fraction of the row from its top: QRS complexes point up more than down. */
const BASELINE_AT = 0.6;

export const COLORS = {
  gridMinor: '#f4c2c2',
  gridMajor: '#e38d8d',
  trace: '#000',
  text: '#000',
  critical: '#c00000',
  warning: '#a04a00',
} as const;

export interface PageTrace {
  lead: string;
  role: 'lead' | 'rhythm';
  /** x, y pairs in mm; a NaN pair lifts the pen (missing samples). */
  points: Float32Array;
}

export interface PageText {
  x: number;
  y: number;
  size: number;
  text: string;
  /** 'lead-label', 'rhythm-label', 'time', 'header', 'flag' … */
  role: string;
  color: string;
  anchor?: 'start' | 'end';
  bold?: boolean;
}

export interface EcgPage {
  widthMm: number;
  heightMm: number;
  widthPx: number;
  heightPx: number;
  pxPerMm: number;
  paperSpeed: number;
  gain: number;
  grid: { x: number; y: number; width: number; height: number };
  /** One polyline (x, y pairs in mm) per row: 1 mV for 0.2 s. */
  calibration: Float32Array[];
  /** Short vertical bars where one column's lead hands over to the next: [x, y0, y1]. */
  separators: [number, number, number][];
  traces: PageTrace[];
  texts: PageText[];
}

function checkOption(name: string, value: number, min: number, max: number): number {
  if (!Number.isFinite(value) || value < min || value > max) {
    throw new AppError(
      'VALIDATION_FAILED',
      `ECG page ${name} must be between ${min} and ${max}, got ${value}`,
      {
        retryable: false,
      },
    );
  }
  return value;
}

/** The median of the shown window, subtracted so every trace sits on its row's zero line (raw leads often carry
 * a DC offset of a millivolt or more; normalized ones have none and get ~0). */
function displayOffset(samples: Float32Array, start: number, end: number): number {
  const stride = Math.max(1, Math.floor((end - start) / 1000));
  const values = new Float64Array(Math.ceil((end - start) / stride));
  let count = 0;
  for (let i = start; i < end; i += stride) {
    const v = samples[i]!;
    if (!Number.isNaN(v)) values[count++] = v;
  }
  if (count === 0) return 0;
  // Selection, not a sort: a page takes a median per trace.
  return selectKth(values, count >> 1, 0, count - 1);
}

interface TraceSpec {
  lead: EcgLead;
  role: 'lead' | 'rhythm';
  start: number;
  end: number;
  x0: number;
  baselineY: number;
}

/**
 * A trace as points. When several samples fall in one pixel column, only that column's minimum and maximum are
 * kept (in the order they occur), so a 1 kHz QRS spike keeps its full height at thumbnail size. NaN samples lift
 * the pen.
 */
function tracePoints(
  spec: TraceSpec,
  mmPerSample: number,
  gain: number,
  pxPerMm: number,
  yMin: number,
  yMax: number,
): Float32Array {
  const { lead, start, end, x0, baselineY } = spec;
  const s = lead.samplesUv;
  const offsetUv = displayOffset(s, start, end);
  const mmPerUv = gain / 1000;
  const out: number[] = [];
  const y = (v: number): number => Math.min(yMax, Math.max(yMin, baselineY - (v - offsetUv) * mmPerUv));
  const x = (i: number): number => x0 + (i - start) * mmPerSample;
  let penDown = false;
  const point = (i: number, v: number): void => {
    if (Number.isNaN(v)) {
      if (penDown) out.push(Number.NaN, Number.NaN);
      penDown = false;
      return;
    }
    out.push(x(i), y(v));
    penDown = true;
  };
  const samplesPerColumn = 1 / (mmPerSample * pxPerMm);
  if (samplesPerColumn <= 2) {
    for (let i = start; i < end; i++) point(i, s[i]!);
    return Float32Array.from(out);
  }
  const columns = Math.ceil((end - start) / samplesPerColumn);
  for (let c = 0; c < columns; c++) {
    const from = start + Math.floor(c * samplesPerColumn);
    const to = Math.min(end, start + Math.floor((c + 1) * samplesPerColumn));
    let min = Number.POSITIVE_INFINITY;
    let max = Number.NEGATIVE_INFINITY;
    let minAt = -1;
    let maxAt = -1;
    let gap = false;
    for (let i = from; i < to; i++) {
      const v = s[i]!;
      if (Number.isNaN(v)) {
        gap = true;
        break;
      }
      if (v < min) {
        min = v;
        minAt = i;
      }
      if (v > max) {
        max = v;
        maxAt = i;
      }
    }
    if (gap) {
      // A column where a gap starts or ends: its samples one by one, so the line breaks exactly there.
      for (let i = from; i < to; i++) point(i, s[i]!);
      continue;
    }
    if (minAt < 0) continue;
    if (minAt <= maxAt) {
      point(minAt, min);
      if (maxAt !== minAt) point(maxAt, max);
    } else {
      point(maxAt, max);
      point(minAt, min);
    }
  }
  if (out.length >= 2 && Number.isNaN(out[out.length - 1]!)) out.length -= 2;
  return Float32Array.from(out);
}

/** 1 mV for 0.2 s: the reader checks the page's amplitude and time scales against it. */
function calibrationPulse(baselineY: number, gain: number, paperSpeed: number): Float32Array {
  const width = 0.2 * paperSpeed;
  const lead = (CALIBRATION_MM - width) / 2;
  const x = GRID_X0;
  return Float32Array.from([
    x,
    baselineY,
    x + lead,
    baselineY,
    x + lead,
    baselineY - gain,
    x + lead + width,
    baselineY - gain,
    x + lead + width,
    baselineY,
    x + CALIBRATION_MM,
    baselineY,
  ]);
}

function formatNumber(value: number, digits: number): string {
  return Number.isInteger(value) ? String(value) : value.toFixed(digits);
}

/** Seconds → 'm:ss' or 'h:mm:ss'. */
export function formatClock(seconds: number): string {
  const s = Math.max(0, Math.floor(seconds));
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const ss = String(s % 60).padStart(2, '0');
  return h > 0 ? `${h}:${String(m).padStart(2, '0')}:${ss}` : `${m}:${ss}`;
}

interface Row {
  traces: TraceSpec[];
  height: number;
  /** Start time label for strip rows. */
  clock?: string;
}

/** Where strip pages start: the caller's choice, else the first critical finding past the first window. */
function stripStart(ecg: Ecg, options: EcgPageOptions, windowSeconds: number): number {
  let start = options.startSeconds;
  if (start === undefined) {
    const event = options.triage?.flags.find(
      (f) => f.critical && f.atSeconds !== undefined && f.atSeconds > windowSeconds - 2,
    );
    start = event ? event.atSeconds! - 2 : 0;
  }
  return Math.max(0, Math.min(start, ecg.durationSeconds - windowSeconds));
}

/**
 * Lays the page out. Units are millimetres; `widthPx`/`heightPx` are the output pixel size (the page is
 * 275 mm wide, so `pxPerMm` is widthPx / 275).
 */
export function layoutEcgPage(ecg: Ecg, options: EcgPageOptions = {}): EcgPage {
  const paperSpeed = checkOption('paper speed', options.paperSpeed ?? 25, 5, 200);
  const gain = checkOption('gain', options.gain ?? 10, 1, 100);
  const widthPx = Math.round(checkOption('width', options.width ?? DEFAULT_SVG_WIDTH, 64, 10000));
  if (!(ecg.samplingFrequency > 0) || !Number.isFinite(ecg.samplingFrequency)) {
    throw new AppError('VALIDATION_FAILED', `ECG sampling frequency ${ecg.samplingFrequency} is not usable`, {
      retryable: false,
    });
  }
  const pxPerMm = widthPx / PAGE_WIDTH_MM;
  const full = deriveLimbLeads(ecg);
  const fs = full.samplingFrequency;
  const sampleCount = full.leads.reduce((n, l) => Math.min(n, l.samplesUv.length), full.sampleCount);
  const mmPerSample = paperSpeed / fs;
  const samplesFor = (mm: number): number => Math.round((mm / paperSpeed) * fs);
  const windowSamples = samplesFor(TRACE_WIDTH_MM);
  const windowSeconds = TRACE_WIDTH_MM / paperSpeed;

  const rows: Row[] = [];
  let shown: EcgLead[];
  let hidden = 0;
  let firstShown = 0;
  let lastShown = Math.min(sampleCount, windowSamples);
  const standard = new Set<string>(STANDARD_LEADS);

  if (hasStandardTwelveLeads(full)) {
    const columnSamples = samplesFor(COLUMN_WIDTH_MM);
    const cell = (lead: EcgLead, c: number): Omit<TraceSpec, 'baselineY'> => ({
      lead,
      role: 'lead',
      start: Math.min(sampleCount, c * columnSamples),
      end: Math.min(sampleCount, (c + 1) * columnSamples),
      x0: TRACE_X0 + c * COLUMN_WIDTH_MM,
    });
    for (const names of TWELVE_LEAD_LAYOUT) {
      rows.push({
        height: TWELVE_LEAD_ROW_MM,
        traces: names.map((name, c) => ({ ...cell(findLead(full, name)!, c), baselineY: 0 })),
      });
    }
    const extras = full.leads.filter((l) => !standard.has(l.name) && !l.derived);
    const extraShown = extras.slice(0, 8);
    for (let r = 0; r < extraShown.length; r += 4) {
      rows.push({
        height: EXTRA_ROW_MM,
        traces: extraShown.slice(r, r + 4).map((lead, c) => ({ ...cell(lead, c), baselineY: 0 })),
      });
    }
    const rhythm = findLead(full, RHYTHM_LEAD)!;
    rows.push({
      height: TWELVE_LEAD_ROW_MM,
      traces: [{ lead: rhythm, role: 'rhythm', start: 0, end: lastShown, x0: TRACE_X0, baselineY: 0 }],
    });
    shown = [...TWELVE_LEAD_LAYOUT.flat().map((name) => findLead(full, name)!), ...extraShown];
    hidden = full.leads.length - shown.length;
  } else if (full.leads.length <= 3) {
    const leads = full.leads;
    const blocks = Math.max(
      1,
      Math.min(Math.floor(HOLTER_ROWS / Math.max(1, leads.length)), Math.ceil(sampleCount / windowSamples)),
    );
    const startSeconds = stripStart(full, options, blocks * windowSeconds);
    firstShown = Math.round(startSeconds * fs);
    for (let b = 0; b < blocks; b++) {
      const start = Math.min(sampleCount, firstShown + b * windowSamples);
      const end = Math.min(sampleCount, start + windowSamples);
      if (b > 0 && start >= sampleCount) break;
      lastShown = end;
      for (const lead of leads) {
        rows.push({
          height: STRIP_ROW_MM,
          clock: formatClock(start / fs),
          traces: [{ lead, role: 'lead', start, end, x0: TRACE_X0, baselineY: 0 }],
        });
      }
    }
    shown = leads;
  } else {
    shown = full.leads.slice(0, MAX_STRIPS);
    hidden = full.leads.length - shown.length;
    const startSeconds = options.startSeconds !== undefined ? stripStart(full, options, windowSeconds) : 0;
    firstShown = Math.round(startSeconds * fs);
    lastShown = Math.min(sampleCount, firstShown + windowSamples);
    for (const lead of shown) {
      rows.push({
        height: STRIP_ROW_MM,
        traces: [{ lead, role: 'lead', start: firstShown, end: lastShown, x0: TRACE_X0, baselineY: 0 }],
      });
    }
  }

  let top = HEADER_MM;
  for (const row of rows) {
    for (const t of row.traces) t.baselineY = top + row.height * BASELINE_AT;
    top += row.height;
  }
  const gridHeight = Math.max(STRIP_ROW_MM, top - HEADER_MM);
  const heightMm = HEADER_MM + gridHeight + MARGIN_MM;
  const yMin = HEADER_MM;
  const yMax = HEADER_MM + gridHeight;

  const traces: PageTrace[] = [];
  const separators: [number, number, number][] = [];
  const texts: PageText[] = [];
  top = HEADER_MM;
  for (const row of rows) {
    for (const [c, spec] of row.traces.entries()) {
      traces.push({
        lead: spec.lead.name,
        role: spec.role,
        points: tracePoints(spec, mmPerSample, gain, pxPerMm, yMin, yMax),
      });
      texts.push({
        x: spec.x0 + 1,
        y: top + 5,
        size: 3.5,
        text: spec.lead.name,
        role: `${spec.role}-label`,
        color: COLORS.text,
      });
      if (c > 0) separators.push([spec.x0, spec.baselineY - 3, spec.baselineY + 3]);
    }
    if (row.clock !== undefined) {
      texts.push({
        x: TRACE_X0 + TRACE_WIDTH_MM - 1,
        y: top + 5,
        size: 3,
        text: row.clock,
        role: 'time',
        color: COLORS.text,
        anchor: 'end',
      });
    }
    top += row.height;
  }
  const calibration = rows.map((row) => calibrationPulse(row.traces[0]!.baselineY, gain, paperSpeed));

  const headerInput = { shown, hidden, paperSpeed, gain, firstShown, lastShown };
  texts.push(...headerTexts(full, options.triage, headerInput));

  return {
    widthMm: PAGE_WIDTH_MM,
    heightMm,
    widthPx,
    heightPx: Math.round((widthPx * heightMm) / PAGE_WIDTH_MM),
    pxPerMm,
    paperSpeed,
    gain,
    grid: { x: GRID_X0, y: HEADER_MM, width: GRID_WIDTH_MM, height: gridHeight },
    calibration,
    separators,
    traces,
    texts,
  };
}

interface HeaderInput {
  shown: EcgLead[];
  hidden: number;
  paperSpeed: number;
  gain: number;
  firstShown: number;
  lastShown: number;
}

function headerTexts(ecg: Ecg, triage: PageTriage | undefined, input: HeaderInput): PageText[] {
  const { shown, hidden, paperSpeed, gain, firstShown, lastShown } = input;
  const fs = ecg.samplingFrequency;
  const shownFrom = firstShown / fs;
  const shownTo = lastShown / fs;
  const shownAll = firstShown === 0 && ecg.durationSeconds <= shownTo + 1e-6;
  const duration = shownAll
    ? `${ecg.durationSeconds.toFixed(1)} s`
    : firstShown === 0 && ecg.durationSeconds < 60
      ? `${ecg.durationSeconds.toFixed(1)} s (first ${shownTo.toFixed(1)} s shown)`
      : `${formatClock(ecg.durationSeconds)} (${formatClock(shownFrom)}–${formatClock(shownTo)} shown)`;
  const first: string[] = [];
  if (triage) {
    first.push(triage.heartRate !== null ? `HR ${triage.heartRate}/min` : 'HR —');
    if (triage.rr?.irregular) first.push('RR irregular');
  } else {
    const rate =
      ecg.measurements?.ventricularRate ??
      (ecg.measurements?.rrInterval ? 60000 / ecg.measurements.rrInterval : undefined);
    if (rate !== undefined && Number.isFinite(rate)) first.push(`Rate ${Math.round(rate)} bpm`);
  }
  first.push(
    `${formatNumber(paperSpeed, 1)} mm/s`,
    `${formatNumber(gain, 1)} mm/mV`,
    `${formatNumber(fs, 2)} Hz`,
    duration,
    `${shown.length} ${shown.length === 1 ? 'lead' : 'leads'}`,
  );
  const second: string[] = [];
  if (ecg.device) second.push(ecg.device);
  const derived = ecg.leads.filter((l) => l.derived && shown.includes(l)).map((l) => l.name);
  if (derived.length > 0) second.push(`${derived.join(', ')} derived`);
  if (hidden > 0) second.push(`${hidden} more leads not shown`);
  if (triage?.quality && triage.quality.overall !== 'good')
    second.push(`signal quality ${triage.quality.overall}`);

  const lines: PageText[] = [];
  const line = (text: string, color: string, bold = false): void => {
    lines.push({ x: GRID_X0, y: 4.6 + lines.length * 4.4, size: 3.3, text, role: 'header', color, bold });
  };
  line(first.join(' · '), COLORS.text);
  if (second.length > 0) line(second.join(' · '), COLORS.text);
  const flags = triage?.flags ?? [];
  const critical = flags.filter((f) => f.critical);
  const other = flags.filter((f) => !f.critical);
  if (critical.length > 0) {
    lines.push({
      x: GRID_X0,
      y: 4.6 + lines.length * 4.4,
      size: 3.3,
      text: `STAT: ${critical.map((f) => f.message).join('; ')}`,
      role: 'flag',
      color: COLORS.critical,
      bold: true,
    });
  } else if (other.length > 0) {
    lines.push({
      x: GRID_X0,
      y: 4.6 + lines.length * 4.4,
      size: 3.3,
      text: other.map((f) => f.message).join('; '),
      role: 'flag',
      color: COLORS.warning,
    });
  }
  return lines.slice(0, 3);
}
