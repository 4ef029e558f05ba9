/**
 * Plain CSV ECG exports into the canonical Ecg. Pure.
 *
 * Accepted shapes:
 * - a header row naming the leads ('I,II,III,aVR,…', 'Lead I (mV)', 'V1 [uV]'), optionally with a time
 *   column ('time', 't', 'Time (s)', 'ms', 'sample'); '#' comment lines before it may state the rate
 *   ('# sampling rate: 500 Hz');
 * - no header row, exactly 12 columns (Contec ECG90A and similar exports): the columns are taken as the
 *   standard order I, II, III, aVR, aVL, aVF, V1–V6. That is an assumption and is recorded in
 *   `acquisition.assumptions`; any other header-less column count is refused (UNSUPPORTED_FORMAT), because
 *   guessing which column is which lead would put the wrong trace under a lead's name.
 *
 * Units and rate: from the header (unit in brackets or parentheses) and the time column or a comment. When
 * the file does not say, the caller's `options` decide; failing that, values are taken as µV, or mV when every
 * value is below 20 in magnitude (no ECG in µV is that flat), and the rate as 500 Hz — both recorded as
 * assumptions. Empty cells are missing samples (NaN).
 */
import { type Ecg, microvoltsPerUnit, normalizeLeadName, STANDARD_LEADS } from './ecg.js';
import { assertSampleBudget, corrupt, toNumber, uniqueNames, unsupported } from './ecg-input.js';

const WHAT = 'CSV';
const DEFAULT_SAMPLING_FREQUENCY = 500;

export interface CsvEcgOptions {
  /** Samples per second when the file does not state it. */
  samplingFrequency?: number;
  /** Microvolts per value when the header does not give units. */
  microvoltsPerUnit?: number;
}

interface Column {
  name: string;
  unit?: number;
}

const TIME_COLUMN =
  /^(?:time|t|seconds?|secs?|s|ms|milliseconds?|timestamp|elapsed(?:\s*time)?)(?:\s*[([]\s*(s|sec|ms|seconds|milliseconds)\s*[)\]])?$/i;
const SAMPLE_COLUMN = /^(?:sample|samples|index|idx|n|#|sample\s*(?:no|number|#))$/i;

function splitRow(line: string, delimiter: string): string[] {
  if (!line.includes('"')) return line.split(delimiter);
  const cells: string[] = [];
  let cell = '';
  let quoted = false;
  for (let i = 0; i < line.length; i++) {
    const ch = line[i]!;
    if (ch === '"') {
      if (quoted && line[i + 1] === '"') {
        cell += '"';
        i++;
      } else quoted = !quoted;
    } else if (ch === delimiter && !quoted) {
      cells.push(cell);
      cell = '';
    } else cell += ch;
  }
  cells.push(cell);
  return cells;
}

function detectDelimiter(line: string): string {
  const counts = [',', ';', '\t'].map((d) => [d, line.split(d).length - 1] as const);
  counts.sort((a, b) => b[1] - a[1]);
  return counts[0]![1] > 0 ? counts[0]![0] : ',';
}

/** 'Lead II (mV)' → { name: 'II', unit: 1000 }. */
function parseColumn(raw: string): Column {
  const cell = raw.trim().replace(/^"|"$/g, '');
  const unitMatch =
    /^(.*?)[\s_]*[([]\s*([µμu]?V|mV|nV)\s*[)\]]$/i.exec(cell) ?? /^(.*?)_(uV|mV|V)$/i.exec(cell);
  if (unitMatch) {
    const unit = microvoltsPerUnit(unitMatch[2]!.replace(/^U/, 'u'));
    const column: Column = { name: normalizeLeadName(unitMatch[1]!) };
    if (unit !== undefined) column.unit = unit;
    return column;
  }
  return { name: normalizeLeadName(cell) };
}

function isNumericRow(cells: string[]): boolean {
  let numbers = 0;
  for (const c of cells) {
    const t = c.trim();
    if (t === '') continue;
    if (toNumber(t) === undefined) return false;
    numbers++;
  }
  return numbers > 0;
}

/**
 * Parses a CSV ECG. See the module comment for the accepted shapes and the assumptions recorded.
 */
export function parseCsvEcg(bytes: Uint8Array, options: CsvEcgOptions = {}): Ecg {
  const text = new TextDecoder('utf-8').decode(bytes).replace(/^\uFEFF/, '');
  const lines = text.split(/\r\n|\n|\r/);
  let index = 0;
  let statedRate: number | undefined;
  // Leading comment lines may carry the sampling rate.
  while (index < lines.length && (lines[index]!.trim() === '' || lines[index]!.trimStart().startsWith('#'))) {
    const rate = /(?:sampl\w*\s*(?:rate|frequency)|fs|hz)\D{0,10}?(\d+(?:\.\d+)?)/i.exec(lines[index]!);
    if (rate) statedRate = Number(rate[1]);
    index++;
  }
  if (index >= lines.length) throw corrupt(`${WHAT}: the file has no rows`);
  const delimiter = detectDelimiter(lines[index]!);
  const first = splitRow(lines[index]!, delimiter);
  const assumptions: string[] = [];
  let columns: Column[];
  let timeColumn = -1;
  let timeScale = 1;
  if (isNumericRow(first)) {
    if (first.length !== STANDARD_LEADS.length) {
      throw unsupported(
        `${WHAT}: no header row and ${first.length} columns; without lead names only the 12-column standard order (I, II, III, aVR, aVL, aVF, V1–V6) is accepted`,
      );
    }
    columns = STANDARD_LEADS.map((name) => ({ name }));
    assumptions.push('no header row: columns taken as I, II, III, aVR, aVL, aVF, V1–V6');
  } else {
    columns = first.map(parseColumn);
    index++;
    timeColumn = first.findIndex((c) => TIME_COLUMN.test(c.trim().replace(/^"|"$/g, '')));
    if (timeColumn >= 0) timeScale = /ms|milli/i.test(first[timeColumn]!) ? 1e-3 : 1;
    const sampleColumn = first.findIndex((c) => SAMPLE_COLUMN.test(c.trim().replace(/^"|"$/g, '')));
    columns = columns.map((c, i) => (i === timeColumn || i === sampleColumn ? { name: '' } : c));
  }
  const leadColumns = columns.map((c, i) => ({ ...c, index: i })).filter((c) => c.name !== '');
  if (leadColumns.length === 0) throw corrupt(`${WHAT}: the header names no lead columns`);

  // Rows: everything after the header that is not blank or a comment.
  const rows: string[] = [];
  for (let i = index; i < lines.length; i++) {
    const line = lines[i]!;
    if (line.trim() === '' || line.trimStart().startsWith('#')) continue;
    rows.push(line);
  }
  assertSampleBudget(leadColumns.length, rows.length, WHAT);
  const values = leadColumns.map(() => new Float64Array(rows.length));
  const times = timeColumn >= 0 ? new Float64Array(rows.length) : undefined;
  let maxAbs = 0;
  for (let r = 0; r < rows.length; r++) {
    const cells = splitRow(rows[r]!, delimiter);
    if (cells.length > columns.length + 1 || cells.length < Math.min(columns.length, 2)) {
      throw corrupt(
        `${WHAT}: row ${r + 1} has ${cells.length} cells, the file has ${columns.length} columns`,
      );
    }
    for (let k = 0; k < leadColumns.length; k++) {
      const cell = (cells[leadColumns[k]!.index] ?? '').trim();
      let v = Number.NaN;
      if (cell !== '') {
        v = Number(cell);
        if (!Number.isFinite(v)) {
          throw corrupt(
            `${WHAT}: row ${r + 1}, column ${leadColumns[k]!.index + 1}: '${cell.slice(0, 20)}' is not a number`,
          );
        }
        if (Math.abs(v) > maxAbs) maxAbs = Math.abs(v);
      }
      values[k]![r] = v;
    }
    if (times) times[r] = (toNumber(cells[timeColumn]) ?? Number.NaN) * timeScale;
  }

  let samplingFrequency = options.samplingFrequency;
  if (times && rows.length > 1) {
    const span = times[rows.length - 1]! - times[0]!;
    if (Number.isFinite(span) && span > 0)
      samplingFrequency = Math.round(((rows.length - 1) / span) * 1000) / 1000;
  }
  samplingFrequency ??= statedRate;
  if (samplingFrequency === undefined) {
    samplingFrequency = DEFAULT_SAMPLING_FREQUENCY;
    assumptions.push(`sampling frequency not stated: ${DEFAULT_SAMPLING_FREQUENCY} Hz assumed`);
  }
  if (!(samplingFrequency > 0) || !Number.isFinite(samplingFrequency)) {
    throw corrupt(`${WHAT}: sampling frequency ${samplingFrequency} is not usable`);
  }
  let fallbackUnit = options.microvoltsPerUnit;
  if (fallbackUnit === undefined && leadColumns.some((c) => c.unit === undefined)) {
    fallbackUnit = maxAbs < 20 ? 1000 : 1;
    assumptions.push(`units not stated: values taken as ${fallbackUnit === 1000 ? 'mV' : 'µV'}`);
  }
  const names = uniqueNames(leadColumns.map((c) => c.name));
  const leads = leadColumns.map((c, k) => {
    const scale = c.unit ?? fallbackUnit ?? 1;
    const samplesUv = new Float32Array(rows.length);
    const source = values[k]!;
    for (let r = 0; r < rows.length; r++) samplesUv[r] = source[r]! * scale;
    return { name: names[k]!, samplesUv };
  });
  const acquisition: Record<string, string | number> = { csvColumns: columns.length };
  if (assumptions.length > 0) acquisition.assumptions = assumptions.join('; ');
  return {
    leads,
    samplingFrequency,
    sampleCount: rows.length,
    durationSeconds: rows.length / samplingFrequency,
    acquisition,
    patient: {},
    source: { format: 'csv' },
  };
}
