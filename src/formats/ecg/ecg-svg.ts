/**
 * Draws an Ecg as the paper page cardiologists read: pink millimetre grid, 25 mm/s, 10 mm/mV, a calibration
 * pulse per row, the 3 × 4 layout of the 12 standard leads plus a lead II rhythm strip. Records without the 12
 * leads get one full-width strip per lead. Pure: returns SVG text (src/imaging/render-ecg.ts rasterises it).
 * The page carries no patient demographics.
 */
import { AppError } from '../../errors.js';
import { deriveLimbLeads, type Ecg, type EcgLead, findLead, hasStandardTwelveLeads } from './ecg.js';

export interface EcgSvgOptions {
  /** Paper speed in mm/s (25 standard, 50 for fast rhythms). */
  paperSpeed?: number;
  /** Amplitude in mm/mV (10 standard; 5 for large complexes, 20 for small). */
  gain?: number;
  /** Target width in pixels. Traces are reduced to two points (min and max) per pixel column at this width,
   * and the SVG's width/height attributes are set from it. */
  width?: number;
}

/** The standard page: 3 rows × 4 columns, each column 2.5 s at 25 mm/s. */
export const TWELVE_LEAD_LAYOUT = [
  ['I', 'aVR', 'V1', 'V4'],
  ['II', 'aVL', 'V2', 'V5'],
  ['III', 'aVF', 'V3', 'V6'],
] as const;
export const RHYTHM_LEAD = 'II';

export const DEFAULT_SVG_WIDTH = 1250;
const PAGE_WIDTH_MM = 275;
const MARGIN_MM = 5;
const HEADER_MM = 15;
const GRID_X0 = MARGIN_MM;
const GRID_WIDTH_MM = PAGE_WIDTH_MM - 2 * MARGIN_MM; // 265 mm
/** Room at the start of each row for the calibration pulse. */
const CALIBRATION_MM = 10;
const TRACE_X0 = GRID_X0 + CALIBRATION_MM;
const TRACE_WIDTH_MM = 250; // 10 s at 25 mm/s
const COLUMN_WIDTH_MM = TRACE_WIDTH_MM / 4;
const TWELVE_LEAD_ROW_MM = 50;
const STRIP_ROW_MM = 40;
const MAX_STRIPS = 16;
/** Where a row's zero line sits, as a fraction of the row from its top: QRS complexes point up more than down. */
const BASELINE_AT = 0.6;

const GRID_MINOR = '#f4c2c2';
const GRID_MAJOR = '#e38d8d';
const TRACE = '#000';

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

function escapeXml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

/** Coordinates in mm with 0.01 mm precision: far below a pixel at any page width we render. */
function n(value: number): string {
  return (Math.round(value * 100) / 100).toString();
}

/** The median of the shown window, subtracted so every trace sits on its row's zero line; there is no
 * baseline filter yet and WFDB/DICOM leads often carry a DC offset of a millivolt or more. */
function displayOffset(samples: Float32Array, end: number): number {
  const stride = Math.max(1, Math.floor(end / 1000)); // ~100 values a second is plenty for a baseline
  const values = new Float32Array(Math.ceil(end / stride));
  let count = 0;
  for (let i = 0; i < end; i += stride) {
    const v = samples[i]!;
    if (!Number.isNaN(v)) values[count++] = v;
  }
  if (count === 0) return 0;
  const sorted = values.subarray(0, count).sort();
  return sorted[count >> 1]!;
}

interface Trace {
  lead: EcgLead;
  /** Sample range shown. */
  start: number;
  end: number;
  x0: number;
  /** mm per sample. */
  mmPerSample: number;
  baselineY: number;
  offsetUv: number;
}

interface Page {
  gain: number;
  pxPerMm: number;
  yMin: number;
  yMax: number;
}

/**
 * A trace as path data. When several samples fall in one pixel column, only that column's minimum and maximum
 * are kept (in the order they occur), so a 1 kHz QRS spike keeps its full height at thumbnail size. NaN
 * samples break the line.
 */
function tracePath(trace: Trace, page: Page): string {
  const { lead, start, end, x0, mmPerSample, baselineY, offsetUv } = trace;
  const mmPerUv = page.gain / 1000;
  const y = (v: number): number =>
    Math.min(page.yMax, Math.max(page.yMin, baselineY - (v - offsetUv) * mmPerUv));
  const parts: string[] = [];
  let penDown = false;
  const point = (x: number, v: number): void => {
    if (Number.isNaN(v)) {
      penDown = false;
      return;
    }
    parts.push(`${penDown ? 'L' : 'M'}${n(x)} ${n(y(v))}`);
    penDown = true;
  };
  const samplesPerColumn = 1 / (mmPerSample * page.pxPerMm);
  const s = lead.samplesUv;
  if (samplesPerColumn <= 2) {
    for (let i = start; i < end; i++) point(x0 + (i - start) * mmPerSample, s[i]!);
    return parts.join('');
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
    const x = (i: number): number => x0 + (i - start) * mmPerSample;
    if (gap) {
      // A column where a gap starts or ends: draw its samples one by one so the line breaks exactly there.
      for (let i = from; i < to; i++) point(x(i), s[i]!);
      continue;
    }
    if (minAt <= maxAt) {
      point(x(minAt), min);
      if (maxAt !== minAt) point(x(maxAt), max);
    } else {
      point(x(maxAt), max);
      point(x(minAt), min);
    }
  }
  return parts.join('');
}

function gridPaths(x0: number, y0: number, width: number, height: number): string {
  const minor: string[] = [];
  const major: string[] = [];
  for (let i = 0; i <= Math.round(width); i++) {
    (i % 5 === 0 ? major : minor).push(`M${n(x0 + i)} ${n(y0)}V${n(y0 + height)}`);
  }
  for (let j = 0; j <= Math.round(height); j++) {
    (j % 5 === 0 ? major : minor).push(`M${n(x0)} ${n(y0 + j)}H${n(x0 + width)}`);
  }
  return (
    `<path d="${minor.join('')}" stroke="${GRID_MINOR}" stroke-width="0.1" fill="none"/>` +
    `<path d="${major.join('')}" stroke="${GRID_MAJOR}" stroke-width="0.2" fill="none"/>`
  );
}

/** 1 mV for 0.2 s: the reader checks the page's amplitude and time scales against it. */
function calibrationPulse(baselineY: number, gain: number, paperSpeed: number): string {
  const width = 0.2 * paperSpeed;
  const lead = (CALIBRATION_MM - width) / 2;
  const x = GRID_X0;
  return `M${n(x)} ${n(baselineY)}h${n(lead)}v${n(-gain)}h${n(width)}v${n(gain)}h${n(lead)}`;
}

function formatNumber(value: number, digits: number): string {
  return Number.isInteger(value) ? String(value) : value.toFixed(digits);
}

interface HeaderInput {
  shown: EcgLead[];
  hidden: number;
  paperSpeed: number;
  gain: number;
  shownSeconds: number;
}

function headerLines(ecg: Ecg, { shown, hidden, paperSpeed, gain, shownSeconds }: HeaderInput): string[] {
  const duration =
    ecg.durationSeconds > shownSeconds + 1e-6
      ? `${ecg.durationSeconds.toFixed(1)} s (first ${shownSeconds.toFixed(1)} s shown)`
      : `${ecg.durationSeconds.toFixed(1)} s`;
  const first = [
    `${formatNumber(paperSpeed, 1)} mm/s`,
    `${formatNumber(gain, 1)} mm/mV`,
    `${formatNumber(ecg.samplingFrequency, 2)} Hz`,
    duration,
    `${shown.length} leads`,
  ];
  const rate =
    ecg.measurements?.ventricularRate ??
    (ecg.measurements?.rrInterval ? 60000 / ecg.measurements.rrInterval : undefined);
  if (rate !== undefined && Number.isFinite(rate)) first.unshift(`Rate ${Math.round(rate)} bpm`);
  const second: string[] = [];
  if (ecg.device) second.push(ecg.device);
  const derived = ecg.leads.filter((l) => l.derived && shown.includes(l)).map((l) => l.name);
  if (derived.length > 0) second.push(`${derived.join(', ')} derived`);
  if (hidden > 0) second.push(`${hidden} more leads not shown`);
  return [first.join(' · '), second.join(' · ')].filter((line) => line !== '');
}

/**
 * Renders the ECG page as SVG. Units inside are millimetres (viewBox); the width/height attributes are pixels.
 */
export function renderEcgSvg(ecg: Ecg, options: EcgSvgOptions = {}): string {
  const paperSpeed = checkOption('paper speed', options.paperSpeed ?? 25, 5, 200);
  const gain = checkOption('gain', options.gain ?? 10, 1, 100);
  const widthPx = Math.round(checkOption('width', options.width ?? DEFAULT_SVG_WIDTH, 64, 10000));
  if (!(ecg.samplingFrequency > 0) || !Number.isFinite(ecg.samplingFrequency)) {
    throw new AppError('VALIDATION_FAILED', `ECG sampling frequency ${ecg.samplingFrequency} is not usable`, {
      retryable: false,
    });
  }

  const full = deriveLimbLeads(ecg);
  const twelveLead = hasStandardTwelveLeads(full);
  const fs = full.samplingFrequency;
  const sampleCount = full.leads.reduce((n, l) => Math.min(n, l.samplesUv.length), full.sampleCount);
  const mmPerSample = paperSpeed / fs;
  const samplesFor = (mm: number): number => Math.round((mm / paperSpeed) * fs);

  type Row = { traces: Trace[]; role: 'lead' | 'rhythm' };
  const rows: Row[] = [];
  let rowHeight: number;
  let shown: EcgLead[];
  let hidden = 0;
  const offsets = new Map<EcgLead, number>();
  const windowEnd = Math.min(sampleCount, samplesFor(TRACE_WIDTH_MM));
  const offsetOf = (lead: EcgLead): number => {
    let offset = offsets.get(lead);
    if (offset === undefined) {
      offset = displayOffset(lead.samplesUv, windowEnd);
      offsets.set(lead, offset);
    }
    return offset;
  };

  if (twelveLead) {
    rowHeight = TWELVE_LEAD_ROW_MM;
    const columnSamples = samplesFor(COLUMN_WIDTH_MM);
    TWELVE_LEAD_LAYOUT.forEach((names, r) => {
      const baselineY = HEADER_MM + r * rowHeight + rowHeight * BASELINE_AT;
      const traces = names.map((name, c) => {
        const lead = findLead(full, name)!;
        const start = Math.min(sampleCount, c * columnSamples);
        const end = Math.min(sampleCount, (c + 1) * columnSamples);
        return {
          lead,
          start,
          end,
          x0: TRACE_X0 + c * COLUMN_WIDTH_MM,
          mmPerSample,
          baselineY,
          offsetUv: offsetOf(lead),
        };
      });
      rows.push({ traces, role: 'lead' });
    });
    const rhythm = findLead(full, RHYTHM_LEAD)!;
    const baselineY = HEADER_MM + 3 * rowHeight + rowHeight * BASELINE_AT;
    rows.push({
      role: 'rhythm',
      traces: [
        {
          lead: rhythm,
          start: 0,
          end: windowEnd,
          x0: TRACE_X0,
          mmPerSample,
          baselineY,
          offsetUv: offsetOf(rhythm),
        },
      ],
    });
    shown = TWELVE_LEAD_LAYOUT.flat().map((name) => findLead(full, name)!);
    hidden = full.leads.length - shown.length;
  } else {
    rowHeight = STRIP_ROW_MM;
    shown = full.leads.slice(0, MAX_STRIPS);
    hidden = full.leads.length - shown.length;
    shown.forEach((lead, r) => {
      const baselineY = HEADER_MM + r * rowHeight + rowHeight * BASELINE_AT;
      rows.push({
        role: 'lead',
        traces: [
          { lead, start: 0, end: windowEnd, x0: TRACE_X0, mmPerSample, baselineY, offsetUv: offsetOf(lead) },
        ],
      });
    });
  }

  const gridHeight = Math.max(1, rows.length) * rowHeight;
  const pageHeightMm = HEADER_MM + gridHeight + MARGIN_MM;
  const heightPx = Math.round((widthPx * pageHeightMm) / PAGE_WIDTH_MM);
  const page: Page = {
    gain,
    pxPerMm: widthPx / PAGE_WIDTH_MM,
    yMin: HEADER_MM,
    yMax: HEADER_MM + gridHeight,
  };

  const out: string[] = [];
  out.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${widthPx}" height="${heightPx}" viewBox="0 0 ${PAGE_WIDTH_MM} ${n(pageHeightMm)}">`,
  );
  out.push(`<rect width="${PAGE_WIDTH_MM}" height="${n(pageHeightMm)}" fill="#fff"/>`);
  out.push(gridPaths(GRID_X0, HEADER_MM, GRID_WIDTH_MM, gridHeight));

  const pulses = rows.map((row) => calibrationPulse(row.traces[0]!.baselineY, gain, paperSpeed)).join('');
  out.push(`<path class="calibration" d="${pulses}" fill="none" stroke="${TRACE}" stroke-width="0.3"/>`);

  out.push(
    `<g fill="none" stroke="${TRACE}" stroke-width="0.3" stroke-linejoin="round" stroke-linecap="round">`,
  );
  for (const row of rows) {
    for (const trace of row.traces) {
      const d = tracePath(trace, page);
      out.push(
        `<path data-role="${row.role}" data-lead="${escapeXml(trace.lead.name)}" d="${d || 'M0 0'}"/>`,
      );
    }
    // Short bars where one column's lead hands over to the next.
    const bars = row.traces
      .slice(1)
      .map((t) => `M${n(t.x0)} ${n(t.baselineY - 3)}v6`)
      .join('');
    if (bars) out.push(`<path d="${bars}"/>`);
  }
  out.push('</g>');

  out.push('<g font-family="DejaVu Sans, Helvetica, Arial, sans-serif" fill="#000" stroke="none">');
  for (const [r, row] of rows.entries()) {
    const top = HEADER_MM + r * rowHeight;
    for (const trace of row.traces) {
      out.push(
        `<text data-role="${row.role}-label" x="${n(trace.x0 + 1)}" y="${n(top + 5)}" font-size="3.5">${escapeXml(trace.lead.name)}</text>`,
      );
    }
  }
  const shownSeconds = windowEnd / fs;
  headerLines(full, { shown, hidden, paperSpeed, gain, shownSeconds }).forEach((line, i) => {
    out.push(`<text x="${n(GRID_X0)}" y="${n(6 + i * 5)}" font-size="3.5">${escapeXml(line)}</text>`);
  });
  out.push('</g></svg>');
  return out.join('\n');
}
