/**
 * PhysioNet WFDB records: the `.hea` header text and the binary signal files it names
 * (header(5) and signal(5) of the WFDB Applications Guide). Pure: the caller fetches the files
 * `wfdbSignalFiles` / `wfdbSegmentHeaderFiles` name and passes their bytes in.
 */
import type { PatientInfo } from '../types.js';
import { type Ecg, type EcgLead, microvoltsPerUnit, normalizeLeadName } from './ecg.js';
import { corrupt, unsupported } from './ecg-input.js';

/** Header and decode both stop past this many samples (signals × samples), so a hostile header cannot make
 * us allocate gigabytes. 20 M samples is 80 MB of Float32, and 15 leads × 15 min at 1 kHz. */
export const MAX_WFDB_SAMPLES = 20_000_000;

/** Digital value `readWfdbSamples` stores for a sample that does not exist (past the end of the file because
 * of skew, or a signal with no file). The formats' own invalid codes are kept as stored. */
export const WFDB_MISSING = -2147483648;

/** WFDB's default gain (ADC units per physical unit) when a header leaves it out or writes 0. */
const DEFAULT_GAIN = 200;
const DEFAULT_SAMPLING_FREQUENCY = 250;

export interface WfdbSignalSpec {
  /** Signal file name; '~' for a signal with no stored samples. */
  file: string;
  format: number;
  samplesPerFrame: number;
  /** Frames by which this signal's stored samples lag the record (header ':skew'). */
  skew: number;
  /** Bytes before sample 0 in the file (header '+offset'). */
  byteOffset: number;
  /** ADC units per physical unit; DEFAULT_GAIN (200) when the header gives none or 0. */
  gain: number;
  /** True when the header gave no gain or 0, meaning the amplitude scale is unknown. */
  uncalibrated: boolean;
  /** ADC value of physical zero; defaults to `adcZero`. */
  baseline: number;
  /** Physical units; 'mV' when the header gives none. */
  units: string;
  adcResolution: number;
  adcZero: number;
  /** First sample value; format 8 (differences) starts from it. */
  initialValue: number;
  /** 16-bit sum of all samples, when the header states one. */
  checksum?: number;
  blockSize: number;
  description: string;
}

export interface WfdbSegment {
  /** Segment record name; '~' marks a gap with no signals. */
  recordName: string;
  sampleCount: number;
}

export interface WfdbHeader {
  recordName: string;
  signalCount: number;
  /** Frames per second (samples per second of a signal with one sample per frame). */
  samplingFrequency: number;
  counterFrequency?: number;
  baseCounterValue?: number;
  /** Frames per signal; undefined when the header does not say (infer from the file size). */
  sampleCount?: number;
  baseTime?: string;
  baseDate?: string;
  /** Empty for a multi-segment master header. */
  signals: WfdbSignalSpec[];
  /** Set for a multi-segment master header (record line 'name/nseg'). */
  segments?: WfdbSegment[];
  /** '#' lines. They often hold patient data (age, sex, diagnoses, medication): never log them. */
  comments: string[];
}

const FORMAT_BITS: Record<number, number> = {
  0: 0,
  8: 8,
  16: 16,
  24: 24,
  32: 32,
  61: 16,
  80: 8,
  160: 16,
  212: 12,
  310: 10,
  311: 10,
};

/** The digital value each format reserves for "no sample" (WFDB_INVALID_SAMPLE); format 8 has none. */
const INVALID_CODE: Record<number, number | undefined> = {
  16: -32768,
  24: -8388608,
  32: -2147483648,
  61: -32768,
  80: -128,
  160: -32768,
  212: -2048,
  310: -512,
  311: -512,
};

// ---------------------------------------------------------------------------------------------------------
// Header

const NUMBER = String.raw`[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?`;
const RECORD_NAME_RE = /^([-\w]+)(?:\/(\d+))?$/;
const FREQUENCY_RE = new RegExp(`^(${NUMBER})(?:/(${NUMBER})(?:\\((${NUMBER})\\))?)?$`);
const FORMAT_RE = /^(\d+)(?:x(\d+))?(?::(\d+))?(?:\+(\d+))?$/;
const GAIN_RE = new RegExp(`^(${NUMBER})(?:\\(([-+]?\\d+)\\))?(?:/(\\S+))?$`);
const INTEGER_RE = /^[-+]?\d+$/;

/** Splits off the first `count` whitespace-separated fields; the rest of the line (which may contain spaces)
 * comes back as `rest`. */
function splitFields(line: string, count: number): { fields: string[]; rest: string } {
  const fields: string[] = [];
  let position = 0;
  while (fields.length < count) {
    const match = /\S+/.exec(line.slice(position));
    if (!match) break;
    fields.push(match[0]);
    position += match.index + match[0].length;
  }
  return { fields, rest: line.slice(position).trim() };
}

function parseIntegerField(value: string | undefined, what: string, line: number): number | undefined {
  if (value === undefined) return undefined;
  if (!INTEGER_RE.test(value))
    throw corrupt(`WFDB header line ${line}: ${what} '${value}' is not an integer`);
  const n = Number(value);
  if (!Number.isSafeInteger(n)) throw corrupt(`WFDB header line ${line}: ${what} '${value}' is out of range`);
  return n;
}

function defaultAdcResolution(format: number): number {
  return FORMAT_BITS[format] ?? 12;
}

function parseSignalLine(
  text: string,
  lineNumber: number,
  recordName: string,
  index: number,
): WfdbSignalSpec {
  const { fields, rest } = splitFields(text, 8);
  const [file, formatField, gainField, adcres, adczero, initval, checksum, blocksize] = fields;
  if (file === undefined || formatField === undefined) {
    throw corrupt(`WFDB header line ${lineNumber}: signal line needs at least a file name and a format`);
  }
  const formatMatch = FORMAT_RE.exec(formatField);
  if (!formatMatch) throw corrupt(`WFDB header line ${lineNumber}: bad signal format '${formatField}'`);
  const format = Number(formatMatch[1]);
  const samplesPerFrame = formatMatch[2] === undefined ? 1 : Number(formatMatch[2]);
  const skew = formatMatch[3] === undefined ? 0 : Number(formatMatch[3]);
  const byteOffset = formatMatch[4] === undefined ? 0 : Number(formatMatch[4]);
  if (samplesPerFrame < 1 || !Number.isSafeInteger(samplesPerFrame) || samplesPerFrame > MAX_WFDB_SAMPLES) {
    throw corrupt(`WFDB header line ${lineNumber}: bad samples per frame in '${formatField}'`);
  }
  if (!Number.isSafeInteger(skew) || !Number.isSafeInteger(byteOffset)) {
    throw corrupt(`WFDB header line ${lineNumber}: skew or byte offset out of range in '${formatField}'`);
  }

  let gain = 0;
  let baselineField: number | undefined;
  let units = 'mV';
  if (gainField !== undefined) {
    const gainMatch = GAIN_RE.exec(gainField);
    if (!gainMatch) throw corrupt(`WFDB header line ${lineNumber}: bad gain '${gainField}'`);
    gain = Number(gainMatch[1]);
    if (gainMatch[2] !== undefined) baselineField = Number(gainMatch[2]);
    if (gainMatch[3] !== undefined) units = gainMatch[3];
  }
  const uncalibrated = !(gain !== 0 && Number.isFinite(gain));
  const adcZero = parseIntegerField(adczero, 'ADC zero', lineNumber) ?? 0;
  return {
    file,
    format,
    samplesPerFrame,
    skew,
    byteOffset,
    gain: uncalibrated ? DEFAULT_GAIN : gain,
    uncalibrated,
    baseline: baselineField ?? adcZero,
    units,
    adcResolution: parseIntegerField(adcres, 'ADC resolution', lineNumber) ?? defaultAdcResolution(format),
    adcZero,
    initialValue: parseIntegerField(initval, 'initial value', lineNumber) ?? adcZero,
    checksum: parseIntegerField(checksum, 'checksum', lineNumber),
    blockSize: parseIntegerField(blocksize, 'block size', lineNumber) ?? 0,
    description: rest !== '' ? rest : `record ${recordName}, signal ${index}`,
  };
}

/** Control characters other than tab, line feed, vertical tab, form feed and carriage return. */
function hasControlCharacters(text: string, limit: number): boolean {
  const end = Math.min(text.length, limit);
  for (let i = 0; i < end; i++) {
    const c = text.charCodeAt(i);
    if (c < 0x20 && (c < 0x09 || c > 0x0d)) return true;
  }
  return false;
}

/**
 * Parses a WFDB header (.hea). A first line that is not a WFDB record line means the text is not a header
 * (UNSUPPORTED_FORMAT); a valid record line followed by missing or malformed signal or segment lines is a
 * broken header (CORRUPT_FILE).
 */
export function parseWfdbHeader(text: string): WfdbHeader {
  // Binary bytes decoded as text: say "not a header" before trying to read lines out of it.
  if (hasControlCharacters(text, 4096)) {
    throw unsupported('not a WFDB header: the text contains control characters');
  }
  const comments: string[] = [];
  const lines: { text: string; number: number }[] = [];
  text.split(/\r\n|\r|\n/).forEach((raw, i) => {
    const trimmed = raw.trim();
    if (trimmed === '') return;
    if (trimmed.startsWith('#')) comments.push(trimmed.slice(1).trim());
    else lines.push({ text: trimmed, number: i + 1 });
  });

  const recordLine = lines[0];
  if (!recordLine) throw unsupported('not a WFDB header: no record line');
  const { fields } = splitFields(recordLine.text, 6);
  const [nameField, nsigField, frequencyField, nsampField, baseTime, baseDate] = fields;
  const nameMatch = nameField === undefined ? null : RECORD_NAME_RE.exec(nameField);
  if (!nameMatch || nsigField === undefined || !/^\d+$/.test(nsigField)) {
    throw unsupported(`not a WFDB header: bad record line '${recordLine.text.slice(0, 80)}'`);
  }
  const recordName = nameMatch[1]!;
  const signalCount = Number(nsigField);
  const header: WfdbHeader = {
    recordName,
    signalCount,
    samplingFrequency: DEFAULT_SAMPLING_FREQUENCY,
    signals: [],
    comments,
  };
  if (frequencyField !== undefined) {
    const match = FREQUENCY_RE.exec(frequencyField);
    const fs = match ? Number(match[1]) : Number.NaN;
    if (!match || !(fs > 0) || !Number.isFinite(fs)) {
      throw corrupt(`WFDB header line ${recordLine.number}: bad sampling frequency '${frequencyField}'`);
    }
    header.samplingFrequency = fs;
    if (match[2] !== undefined) header.counterFrequency = Number(match[2]);
    if (match[3] !== undefined) header.baseCounterValue = Number(match[3]);
  }
  header.sampleCount = parseIntegerField(nsampField, 'number of samples', recordLine.number);
  if (header.sampleCount !== undefined && header.sampleCount < 0) {
    throw corrupt(`WFDB header line ${recordLine.number}: negative number of samples`);
  }
  if (baseTime !== undefined) header.baseTime = baseTime;
  if (baseDate !== undefined) header.baseDate = baseDate;

  const body = lines.slice(1);
  if (nameMatch[2] !== undefined) {
    const segmentCount = Number(nameMatch[2]);
    if (body.length < segmentCount) {
      throw corrupt(`WFDB multi-segment header lists ${body.length} of ${segmentCount} segments`);
    }
    header.segments = body.slice(0, segmentCount).map((line) => {
      const [segmentName, length] = splitFields(line.text, 2).fields;
      if (segmentName === undefined || !(segmentName === '~' || /^[-\w]+$/.test(segmentName))) {
        throw corrupt(`WFDB header line ${line.number}: bad segment name`);
      }
      const sampleCount = parseIntegerField(length, 'segment length', line.number);
      if (sampleCount === undefined || sampleCount < 0) {
        throw corrupt(`WFDB header line ${line.number}: segment '${segmentName}' has no valid length`);
      }
      return { recordName: segmentName, sampleCount };
    });
    return header;
  }

  if (body.length < signalCount) {
    throw corrupt(`WFDB header declares ${signalCount} signals but has ${body.length} signal lines`);
  }
  header.signals = body
    .slice(0, signalCount)
    .map((line, index) => parseSignalLine(line.text, line.number, recordName, index));
  return header;
}

/** The signal files a single-segment record needs, in header order, each once. */
export function wfdbSignalFiles(header: WfdbHeader): string[] {
  const files = new Set<string>();
  for (const signal of header.signals) {
    if (signal.file !== '~' && signal.format !== 0) files.add(signal.file);
  }
  return [...files];
}

/** The segment header files (`<segment>.hea`) a multi-segment record needs; gaps ('~') need none. */
export function wfdbSegmentHeaderFiles(header: WfdbHeader): string[] {
  const names = new Set<string>();
  for (const segment of header.segments ?? []) {
    if (segment.recordName !== '~') names.add(`${segment.recordName}.hea`);
  }
  return [...names];
}

// ---------------------------------------------------------------------------------------------------------
// Signal files

/** How many whole samples `byteLength` bytes of a format hold. */
function samplesInBytes(format: number, byteLength: number): number {
  switch (format) {
    case 8:
    case 80:
      return byteLength;
    case 16:
    case 61:
    case 160:
      return Math.floor(byteLength / 2);
    case 24:
      return Math.floor(byteLength / 3);
    case 32:
      return Math.floor(byteLength / 4);
    case 212: // two samples in three bytes; the first of a pair needs bytes 0 and 1
      return Math.floor(byteLength / 3) * 2 + (byteLength % 3 >= 2 ? 1 : 0);
    case 310: {
      // three samples in two little-endian words; sample 0 in word 0, sample 1 in word 1, sample 2 split
      const rest = byteLength % 4;
      return Math.floor(byteLength / 4) * 3 + (rest >= 2 ? 1 : 0);
    }
    case 311: {
      // three samples in one 32-bit word, 10 bits each from the low end
      const rest = byteLength % 4;
      return Math.floor(byteLength / 4) * 3 + (rest >= 2 ? 1 : 0) + (rest >= 3 ? 1 : 0);
    }
    default:
      return 0;
  }
}

/** Bytes needed to hold `samples` samples of a format (the inverse of `samplesInBytes`). */
function bytesForSamples(format: number, samples: number): number {
  switch (format) {
    case 212:
      return Math.floor(samples / 2) * 3 + (samples % 2 ? 2 : 0);
    case 310:
      return Math.floor(samples / 3) * 4 + [0, 2, 4][samples % 3]!;
    case 311:
      return Math.floor(samples / 3) * 4 + [0, 2, 3][samples % 3]!;
    default:
      return (samples * FORMAT_BITS[format]!) / 8;
  }
}

type SampleReader = (index: number) => number;

/** Random access to sample `index` (counted over the whole interleaved stream) of a signal file. */
function sampleReader(format: number, d: Uint8Array): SampleReader {
  switch (format) {
    case 8:
      return (i) => (d[i]! << 24) >> 24;
    case 80:
      return (i) => d[i]! - 128;
    case 16:
      return (i) => (((d[2 * i + 1]! << 8) | d[2 * i]!) << 16) >> 16;
    case 61:
      return (i) => (((d[2 * i]! << 8) | d[2 * i + 1]!) << 16) >> 16;
    case 160:
      return (i) => ((d[2 * i + 1]! << 8) | d[2 * i]!) - 32768;
    case 24:
      return (i) => ((d[3 * i + 2]! << 24) | (d[3 * i + 1]! << 16) | (d[3 * i]! << 8)) >> 8;
    case 32:
      return (i) => d[4 * i]! | (d[4 * i + 1]! << 8) | (d[4 * i + 2]! << 16) | (d[4 * i + 3]! << 24);
    case 212:
      return (i) => {
        const b = (i >> 1) * 3;
        const value = i & 1 ? ((d[b + 1]! & 0xf0) << 4) | d[b + 2]! : ((d[b + 1]! & 0x0f) << 8) | d[b]!;
        return (value << 20) >> 20;
      };
    case 310:
      return (i) => {
        const b = Math.floor(i / 3) * 4;
        const w0 = d[b]! | (d[b + 1]! << 8);
        const which = i % 3;
        if (which === 2) {
          const w1 = d[b + 2]! | (d[b + 3]! << 8);
          return ((((w0 >> 11) & 0x1f) | (((w1 >> 11) & 0x1f) << 5)) << 22) >> 22;
        }
        const word = which === 0 ? w0 : d[b + 2]! | (d[b + 3]! << 8);
        return (((word >> 1) & 0x3ff) << 22) >> 22;
      };
    case 311:
      return (i) => {
        const b = Math.floor(i / 3) * 4;
        const word = d[b]! | (d[b + 1]! << 8) | ((d[b + 2] ?? 0) << 16) | ((d[b + 3] ?? 0) << 24);
        return (((word >>> (10 * (i % 3))) & 0x3ff) << 22) >> 22;
      };
    default:
      throw unsupported(`WFDB signal format ${format} is not supported`);
  }
}

export interface WfdbSamples {
  /** Frames read per signal (the record's sample count). */
  frameCount: number;
  /** Digital (ADC) samples per signal at the signal's own rate: frameCount × samplesPerFrame values, skew
   * already applied unless asked not to. WFDB_MISSING where no sample exists. */
  signals: Int32Array[];
}

interface SignalGroup {
  file: string;
  format: number;
  byteOffset: number;
  signals: number[];
  samplesPerFrame: number;
}

function groupSignalsByFile(header: WfdbHeader): SignalGroup[] {
  const groups = new Map<string, SignalGroup>();
  header.signals.forEach((signal, index) => {
    if (signal.file === '~' || signal.format === 0) return;
    const group = groups.get(signal.file);
    if (!group) {
      groups.set(signal.file, {
        file: signal.file,
        format: signal.format,
        byteOffset: signal.byteOffset,
        signals: [index],
        samplesPerFrame: signal.samplesPerFrame,
      });
      return;
    }
    if (group.format !== signal.format) {
      throw unsupported(`WFDB signal file ${signal.file} mixes formats ${group.format} and ${signal.format}`);
    }
    group.signals.push(index);
    group.samplesPerFrame += signal.samplesPerFrame;
  });
  for (const group of groups.values()) {
    if (FORMAT_BITS[group.format] === undefined) {
      const flac = group.format === 508 || group.format === 516 || group.format === 524;
      throw unsupported(
        `WFDB signal format ${group.format}${flac ? ' (FLAC)' : ''} in ${group.file} is not supported`,
        { file: group.file, format: group.format },
      );
    }
    if (group.file === '-') throw unsupported('WFDB records read from standard input are not supported');
  }
  return [...groups.values()];
}

/** Bytes of a signal file after its byte offset, or CORRUPT_FILE when the file is missing. */
function fileData(group: SignalGroup, files: Record<string, Uint8Array>): Uint8Array {
  const bytes = files[group.file];
  if (!bytes) throw corrupt(`WFDB signal file ${group.file} is missing`, { file: group.file });
  if (group.byteOffset > bytes.byteLength) {
    throw corrupt(
      `WFDB signal file ${group.file} is ${bytes.byteLength} bytes, shorter than its byte offset ${group.byteOffset}`,
      { file: group.file },
    );
  }
  return bytes.subarray(group.byteOffset);
}

function assertWithinLimit(samples: number, what: string): void {
  if (!(samples <= MAX_WFDB_SAMPLES)) {
    throw corrupt(`WFDB record too large: ${what} needs ${samples} samples (limit ${MAX_WFDB_SAMPLES})`, {
      samples,
      limit: MAX_WFDB_SAMPLES,
    });
  }
}

/** The record's frame count: the header's, else the most every signal file can supply. */
function resolveFrameCount(
  header: WfdbHeader,
  groups: SignalGroup[],
  files: Record<string, Uint8Array>,
): number {
  if (header.sampleCount) return header.sampleCount;
  if (groups.length === 0) {
    throw corrupt(`WFDB header ${header.recordName} gives neither a sample count nor a signal file`);
  }
  return groups.reduce(
    (frames, g) =>
      Math.min(
        frames,
        Math.floor(samplesInBytes(g.format, fileData(g, files).byteLength) / g.samplesPerFrame),
      ),
    Number.POSITIVE_INFINITY,
  );
}

/**
 * Reads the digital samples of a single-segment record. Exposed for checks that need ADC values (checksums,
 * format round trips); `parseWfdbRecord` is what callers want.
 */
export function readWfdbSamples(
  header: WfdbHeader,
  files: Record<string, Uint8Array>,
  options: { ignoreSkew?: boolean; frameCount?: number } = {},
): WfdbSamples {
  if (header.segments) throw unsupported('multi-segment WFDB record: use parseWfdbMultiSegment');
  const groups = groupSignalsByFile(header);
  const totalPerFrame = header.signals.reduce((sum, s) => sum + s.samplesPerFrame, 0);
  const frameCount = options.frameCount ?? resolveFrameCount(header, groups, files);
  assertWithinLimit(frameCount * totalPerFrame, `record ${header.recordName}`);

  const signals = header.signals.map((s) =>
    new Int32Array(frameCount * s.samplesPerFrame).fill(WFDB_MISSING),
  );
  for (const group of groups) {
    const data = fileData(group, files);
    const framesInFile = Math.floor(samplesInBytes(group.format, data.byteLength) / group.samplesPerFrame);
    if (framesInFile < frameCount) {
      const expected = group.byteOffset + bytesForSamples(group.format, frameCount * group.samplesPerFrame);
      const actual = group.byteOffset + data.byteLength;
      throw corrupt(
        `WFDB signal file ${group.file} is truncated: ${frameCount} frames need ${expected} bytes, the file has ${actual}`,
        { file: group.file, expectedBytes: expected, actualBytes: actual },
      );
    }
    const read = sampleReader(group.format, data);
    let offsetInFrame = 0;
    for (const index of group.signals) {
      const spec = header.signals[index]!;
      const out = signals[index]!;
      const spf = spec.samplesPerFrame;
      const skew = options.ignoreSkew ? 0 : spec.skew;
      // Skewed signals read `skew` frames ahead; frames past the end of the file stay WFDB_MISSING.
      const lastFrame = Math.min(framesInFile, frameCount + skew);
      let value = spec.initialValue;
      const firstFrame = group.format === 8 ? 0 : skew; // differences must be summed from the start
      for (let frame = firstFrame; frame < lastFrame; frame++) {
        const base = frame * group.samplesPerFrame + offsetInFrame;
        const target = (frame - skew) * spf;
        for (let j = 0; j < spf; j++) {
          if (group.format === 8) value += read(base + j);
          else value = read(base + j);
          if (frame >= skew) out[target + j] = value;
        }
      }
      offsetInFrame += spf;
    }
  }
  return { frameCount, signals };
}

// ---------------------------------------------------------------------------------------------------------
// Physical values and the Ecg

export interface WfdbReadOptions {
  /**
   * Signals with several samples per frame (e.g. an ECG at 4× the rate of a blood-pressure channel):
   * 'high' (default) keeps the fastest signal's rate and repeats the samples of slower signals, like WFDB's
   * high-resolution mode; 'frame' returns one value per frame, the mean of the frame's valid samples.
   */
  resolution?: 'high' | 'frame';
}

/** Signal names PhysioNet uses for non-ECG channels recorded alongside ECGs. Some of them (RESP, PLETH)
 * carry no units, which WFDB would read as millivolts. */
const NON_ECG_SIGNAL =
  /^(?:ABP|ART|AOBP|PAP|CVP|UAP|LAP|RAP|ICP|CPP|P\b|PRESS|PLETH|PPG|RESP|RESPIRATION|CO2|ETCO2|SPO2|SAO2|PULSE|HR|BP|NBP|TEMP|EEG|EOG|EMG|EDA|STI|EVENT|MARKER|ANNOTATION)/i;

interface LeadPlan {
  signalIndex: number;
  name: string;
}

function planLeads(signals: WfdbSignalSpec[]): { leads: LeadPlan[]; others: string[] } {
  const leads: LeadPlan[] = [];
  const others: string[] = [];
  const used = new Map<string, number>();
  signals.forEach((signal, signalIndex) => {
    const isVoltage = microvoltsPerUnit(signal.units) !== undefined;
    if (!isVoltage || NON_ECG_SIGNAL.test(signal.description)) {
      others.push(`${signal.description} [${signal.units}]`);
      return;
    }
    const base = normalizeLeadName(signal.description);
    const count = (used.get(base) ?? 0) + 1;
    used.set(base, count);
    leads.push({ signalIndex, name: count === 1 ? base : `${base} ${count}` });
  });
  return { leads, others };
}

/** Converts one signal's digital samples to microvolts at `outputPerFrame` samples per frame. */
function toMicrovolts(
  spec: WfdbSignalSpec,
  digital: Int32Array,
  frameCount: number,
  outputPerFrame: number,
  resolution: 'high' | 'frame',
  out: Float32Array,
  outOffset: number,
): void {
  const scale = microvoltsPerUnit(spec.units)! / spec.gain;
  const invalid = INVALID_CODE[spec.format];
  const physical = (adc: number): number =>
    adc === WFDB_MISSING || adc === invalid ? Number.NaN : (adc - spec.baseline) * scale;
  const spf = spec.samplesPerFrame;
  if (spf === outputPerFrame) {
    for (let i = 0; i < digital.length; i++) out[outOffset + i] = physical(digital[i]!);
    return;
  }
  if (resolution === 'frame') {
    for (let frame = 0; frame < frameCount; frame++) {
      let sum = 0;
      let count = 0;
      for (let j = 0; j < spf; j++) {
        const v = physical(digital[frame * spf + j]!);
        if (!Number.isNaN(v)) {
          sum += v;
          count++;
        }
      }
      out[outOffset + frame] = count > 0 ? sum / count : Number.NaN;
    }
    return;
  }
  const total = frameCount * outputPerFrame;
  for (let i = 0; i < total; i++) {
    out[outOffset + i] = physical(digital[Math.floor((i * spf) / outputPerFrame)]!);
  }
}

/** 'dd/mm/yyyy' + 'h:mm:ss[.sss]' → ISO local date-time; time alone when there is no date. */
function wfdbStartTime(baseTime: string | undefined, baseDate: string | undefined): string | undefined {
  const time = baseTime ? /^(\d{1,2}):(\d{1,2})(?::(\d{1,2})(\.\d+)?)?$/.exec(baseTime) : null;
  if (!time) return undefined;
  const hhmmss = `${time[1]!.padStart(2, '0')}:${time[2]!.padStart(2, '0')}:${(time[3] ?? '0').padStart(2, '0')}${time[4] ?? ''}`;
  const date = baseDate ? /^(\d{1,2})\/(\d{1,2})\/(\d{4})$/.exec(baseDate) : null;
  if (!date) return hhmmss;
  return `${date[3]}-${date[2]!.padStart(2, '0')}-${date[1]!.padStart(2, '0')}T${hhmmss}`;
}

/** Patient sex from the comment conventions of MIT-BIH ('# 69 M …') and PTB ('# sex: female'). Nothing else
 * is taken: the comments also hold diagnoses and medication, which are not ours to copy around. */
function patientFromComments(comments: string[]): PatientInfo {
  for (const comment of comments) {
    const ptb = /^sex:\s*(male|female|m|f)\b/i.exec(comment);
    if (ptb) return { sex: ptb[1]!.charAt(0).toUpperCase() };
    const mit = /^(?:\d+|\?)\s+([MF])\b/.exec(comment);
    if (mit) return { sex: mit[1] };
  }
  return {};
}

function describeSampling(
  signals: WfdbSignalSpec[],
  resolution: 'high' | 'frame',
  fs: number,
): string | undefined {
  const spfs = new Set(signals.map((s) => s.samplesPerFrame));
  if (spfs.size <= 1) return undefined;
  return resolution === 'high'
    ? `multi-rate record: slower signals repeated to ${fs} Hz`
    : `multi-rate record: faster signals averaged per frame to ${fs} Hz`;
}

interface BuildInput {
  header: WfdbHeader;
  /** The signals `plan` indexes into (a segment's, for multi-segment records). */
  layoutSignals: WfdbSignalSpec[];
  /** Every signal read, for the formats and rates noted in `acquisition`. */
  readSignals: WfdbSignalSpec[];
  plan: { leads: LeadPlan[]; others: string[] };
  outputPerFrame: number;
  resolution: 'high' | 'frame';
}

function outputPerFrameFor(signals: WfdbSignalSpec[], resolution: 'high' | 'frame'): number {
  // reduce, not Math.max(...): a hostile header may list more signals than a call can take arguments.
  return resolution === 'frame' ? 1 : signals.reduce((most, s) => Math.max(most, s.samplesPerFrame), 1);
}

function makeEcg(input: BuildInput, leads: EcgLead[], sampleCount: number): Ecg {
  const { header, plan, layoutSignals, readSignals } = input;
  const samplingFrequency = header.samplingFrequency * input.outputPerFrame;
  if (leads.length === 0) {
    throw unsupported(`WFDB record ${header.recordName} has no ECG signals`, { signals: plan.others.length });
  }
  const acquisition: Record<string, string | number> = {
    wfdbRecord: header.recordName,
    wfdbFormats: [...new Set(readSignals.map((s) => s.format))].join(','),
  };
  const note = describeSampling(readSignals, input.resolution, samplingFrequency);
  if (note) acquisition.resampling = note;
  if (plan.others.length > 0) acquisition.otherSignals = plan.others.join(', ');
  const uncalibrated = plan.leads
    .filter((l) => layoutSignals[l.signalIndex]?.uncalibrated)
    .map((l) => l.name);
  if (uncalibrated.length > 0) acquisition.uncalibratedLeads = uncalibrated.join(', ');
  const ecg: Ecg = {
    leads,
    samplingFrequency,
    sampleCount,
    durationSeconds: sampleCount / samplingFrequency,
    acquisition,
    patient: patientFromComments(header.comments),
    source: { format: 'wfdb' },
  };
  const startTime = wfdbStartTime(header.baseTime, header.baseDate);
  if (startTime) ecg.startTime = startTime;
  return ecg;
}

/**
 * Decodes a single-segment WFDB record into an Ecg. `files` maps the names from `wfdbSignalFiles` to their
 * bytes. Signals with non-voltage units or non-ECG names (ABP, RESP, PLETH…) are left out and listed in
 * `acquisition.otherSignals`.
 */
export function parseWfdbRecord(
  header: WfdbHeader,
  files: Record<string, Uint8Array>,
  options: WfdbReadOptions = {},
): Ecg {
  const resolution = options.resolution ?? 'high';
  const plan = planLeads(header.signals);
  const outputPerFrame = outputPerFrameFor(header.signals, resolution);
  if (header.sampleCount) {
    assertWithinLimit(header.sampleCount * outputPerFrame * plan.leads.length, `record ${header.recordName}`);
  }
  const samples = readWfdbSamples(header, files);
  const sampleCount = samples.frameCount * outputPerFrame;
  assertWithinLimit(sampleCount * plan.leads.length, `record ${header.recordName}`);
  const leads = plan.leads.map(({ signalIndex, name }) => {
    const samplesUv = new Float32Array(sampleCount);
    const spec = header.signals[signalIndex]!;
    toMicrovolts(
      spec,
      samples.signals[signalIndex]!,
      samples.frameCount,
      outputPerFrame,
      resolution,
      samplesUv,
      0,
    );
    return { name, samplesUv };
  });
  const input = {
    header,
    layoutSignals: header.signals,
    readSignals: header.signals,
    plan,
    outputPerFrame,
    resolution,
  };
  return makeEcg(input, leads, sampleCount);
}

/**
 * Decodes a multi-segment record: `header` is the master header, `segments` maps segment record names to their
 * parsed headers, `files` holds every segment's signal files. Segments are joined in order; a '~' segment is a
 * gap of NaN. In variable-layout records the first segment has length 0 and defines the signals; other
 * segments' signals are matched to it by description, and a signal a segment lacks is NaN there.
 */
export function parseWfdbMultiSegment(
  header: WfdbHeader,
  segments: Record<string, WfdbHeader>,
  files: Record<string, Uint8Array>,
  options: WfdbReadOptions = {},
): Ecg {
  const list = header.segments;
  if (!list) throw unsupported(`WFDB record ${header.recordName} is not a multi-segment record`);
  const resolution = options.resolution ?? 'high';
  const segmentHeader = (name: string): WfdbHeader => {
    const found = segments[name];
    if (!found) throw corrupt(`WFDB segment header ${name}.hea is missing`, { segment: name });
    if (found.segments) throw corrupt(`WFDB segment ${name} is itself multi-segment`, { segment: name });
    if (Math.abs(found.samplingFrequency - header.samplingFrequency) > 1e-9 * header.samplingFrequency) {
      throw corrupt(
        `WFDB segment ${name} samples at ${found.samplingFrequency} Hz, the record at ${header.samplingFrequency} Hz`,
      );
    }
    return found;
  };

  const first = list[0];
  const layoutHeader =
    first && first.recordName !== '~' && first.sampleCount === 0
      ? segmentHeader(first.recordName)
      : list
          .filter((s) => s.recordName !== '~' && s.sampleCount > 0)
          .map((s) => segmentHeader(s.recordName))[0];
  if (!layoutHeader) throw corrupt(`WFDB record ${header.recordName} has no segment with signals`);

  const used = list.filter((s) => s.recordName !== '~' && s.sampleCount > 0);
  const usedHeaders = used.map((s) => segmentHeader(s.recordName));
  const outputPerFrame = outputPerFrameFor(
    usedHeaders.flatMap((h) => h.signals),
    resolution,
  );
  const plan = planLeads(layoutHeader.signals);
  const totalFrames = list.reduce((sum, s) => sum + s.sampleCount, 0);
  const sampleCount = totalFrames * outputPerFrame;
  assertWithinLimit(sampleCount * plan.leads.length, `record ${header.recordName}`);

  const outputs = plan.leads.map(() => new Float32Array(sampleCount).fill(Number.NaN));
  let frameStart = 0;
  for (const segment of list) {
    if (segment.recordName !== '~' && segment.sampleCount > 0) {
      const segHeader = segmentHeader(segment.recordName);
      const samples = readWfdbSamples(segHeader, files, { frameCount: segment.sampleCount });
      const taken = new Set<number>();
      plan.leads.forEach(({ signalIndex }, leadIndex) => {
        const wanted = layoutHeader.signals[signalIndex]!.description;
        const match = segHeader.signals.findIndex((s, i) => !taken.has(i) && s.description === wanted);
        if (match < 0) return;
        taken.add(match);
        const spec = segHeader.signals[match]!;
        if (microvoltsPerUnit(spec.units) === undefined) return;
        toMicrovolts(
          spec,
          samples.signals[match]!,
          samples.frameCount,
          outputPerFrame,
          resolution,
          outputs[leadIndex]!,
          frameStart * outputPerFrame,
        );
      });
    }
    frameStart += segment.sampleCount;
  }
  const leads = plan.leads.map(({ name }, i) => ({ name, samplesUv: outputs[i]! }));
  const ecg = makeEcg(
    {
      header,
      layoutSignals: layoutHeader.signals,
      readSignals: usedHeaders.flatMap((h) => h.signals),
      plan,
      outputPerFrame,
      resolution,
    },
    leads,
    sampleCount,
  );
  ecg.acquisition.wfdbSegments = list.length;
  return ecg;
}
