/**
 * EDF, EDF+ (continuous 'EDF+C' and discontinuous 'EDF+D') and BDF into the canonical Ecg. Pure.
 *
 * A 256-byte fixed header, 256 bytes per signal, then data records: each record holds, signal after signal,
 * `samplesPerRecord` little-endian int16 values (int24 for BDF). Physical value =
 * (digital − digitalMin) × (physicalMax − physicalMin) / (digitalMax − digitalMin) + physicalMin.
 * EDF+ 'EDF Annotations' signals hold TALs ('+onset[\x15duration]\x14text\x14…\x00'); the first TAL of each
 * record keeps time (its start), which places the records of an EDF+D file on the time axis.
 */
import type { PatientInfo } from '../types.js';
import { type Ecg, type EcgAnnotation, microvoltsPerUnit, normalizeLeadName } from './ecg.js';
import { assertSampleBudget, corrupt, toNumber, uniqueNames, unsupported } from './ecg-input.js';

const WHAT = 'EDF';
/** TAL bytes: 0x14 ends onset/duration and each annotation text, 0x15 separates onset from duration. */
const TAL_SEPARATOR = String.fromCharCode(0x14);
const TAL_TIMING = new RegExp(`^([+-]\\d+(?:\\.\\d*)?)(?:${String.fromCharCode(0x15)}(\\d+(?:\\.\\d*)?))?$`);
const ANNOTATION_LABEL = 'EDF Annotations';

export interface EdfSignal {
  label: string;
  transducer: string;
  physicalDimension: string;
  physicalMin: number;
  physicalMax: number;
  digitalMin: number;
  digitalMax: number;
  prefiltering: string;
  samplesPerRecord: number;
}

export interface EdfHeader {
  /** 'EDF', 'EDF+C', 'EDF+D' or 'BDF'. */
  variant: string;
  /** Local patient identification field (EDF+: 'code sex birthdate name'). Patient data: never log. */
  patientField: string;
  recordingField: string;
  /** ISO local date-time from the start date/time fields (EDF+ recording field gives the 4-digit year). */
  startTime?: string;
  headerBytes: number;
  recordCount: number;
  recordDurationSeconds: number;
  signals: EdfSignal[];
}

export interface EdfFile {
  header: EdfHeader;
  /** Physical values per signal (annotation signals get an empty array), records joined in file order. */
  values: Float64Array[];
  /** Start of each data record in seconds (from the time-keeping TAL in EDF+, else index × duration). */
  recordStarts: number[];
  annotations: EcgAnnotation[];
}

function ascii(bytes: Uint8Array, start: number, length: number): string {
  let s = '';
  for (let i = start; i < start + length && i < bytes.length; i++) s += String.fromCharCode(bytes[i]!);
  return s.trim();
}

const MONTHS = ['JAN', 'FEB', 'MAR', 'APR', 'MAY', 'JUN', 'JUL', 'AUG', 'SEP', 'OCT', 'NOV', 'DEC'];

function edfStartTime(date: string, time: string, recordingField: string): string | undefined {
  const d = /^(\d{2})\.(\d{2})\.(\d{2})$/.exec(date);
  const t = /^(\d{2})\.(\d{2})\.(\d{2})$/.exec(time);
  if (!d || !t) return undefined;
  // EDF's 2-digit year: 85–99 are 1985–1999, the rest 2000–2084; EDF+ puts the full date in the recording field.
  let year = Number(d[3]) >= 85 ? `19${d[3]}` : `20${d[3]}`;
  const plus = /^Startdate\s+(\d{2})-([A-Z]{3})-(\d{4})\b/.exec(recordingField);
  if (plus && MONTHS.indexOf(plus[2]!) + 1 === Number(d[2])) year = plus[3]!;
  return `${year}-${d[2]}-${d[1]}T${t[1]}:${t[2]}:${t[3]}`;
}

/** Reads the fixed header and the signal headers. Throws UNSUPPORTED_FORMAT when the bytes are not EDF. */
export function parseEdfHeader(bytes: Uint8Array): EdfHeader {
  if (bytes.length < 256) throw unsupported(`${WHAT}: ${bytes.length} bytes is too short for an EDF header`);
  const version = ascii(bytes, 0, 8);
  const bdf = bytes[0] === 0xff && ascii(bytes, 1, 7) === 'BIOSEMI';
  if (version !== '0' && !bdf) throw unsupported(`${WHAT}: version field '${version}' is not EDF's '0'`);
  const reserved = ascii(bytes, 192, 44);
  const headerBytes = toNumber(ascii(bytes, 184, 8));
  const recordCount = toNumber(ascii(bytes, 236, 8));
  const recordDurationSeconds = toNumber(ascii(bytes, 244, 8));
  const signalCount = toNumber(ascii(bytes, 252, 4));
  if (signalCount === undefined || !Number.isInteger(signalCount) || signalCount < 1 || signalCount > 4096) {
    throw corrupt(`${WHAT}: number of signals '${ascii(bytes, 252, 4)}' is not usable`);
  }
  if (headerBytes !== 256 * (signalCount + 1)) {
    throw corrupt(
      `${WHAT}: header size field says ${headerBytes} bytes, ${signalCount} signals need ${256 * (signalCount + 1)}`,
    );
  }
  if (bytes.length < headerBytes) {
    throw corrupt(
      `${WHAT}: the file ends inside the signal headers (${bytes.length} of ${headerBytes} bytes)`,
    );
  }
  if (recordDurationSeconds === undefined || recordDurationSeconds < 0) {
    throw corrupt(`${WHAT}: data record duration '${ascii(bytes, 244, 8)}' is not a number of seconds`);
  }
  const ns = signalCount;
  const field = (offset: number, width: number, i: number) =>
    ascii(bytes, 256 + offset * ns + width * i, width);
  const signals: EdfSignal[] = [];
  for (let i = 0; i < ns; i++) {
    // Field blocks: label 16, transducer 80, dimension 8, physical min/max 8+8, digital min/max 8+8,
    // prefiltering 80, samples per record 8, reserved 32.
    const numeric = (offset: number, name: string) => {
      const v = toNumber(field(offset, 8, i));
      if (v === undefined)
        throw corrupt(`${WHAT}: signal ${i} ${name} '${field(offset, 8, i)}' is not a number`);
      return v;
    };
    const signal: EdfSignal = {
      label: field(0, 16, i),
      transducer: field(16, 80, i),
      physicalDimension: field(96, 8, i),
      physicalMin: numeric(104, 'physical minimum'),
      physicalMax: numeric(112, 'physical maximum'),
      digitalMin: numeric(120, 'digital minimum'),
      digitalMax: numeric(128, 'digital maximum'),
      prefiltering: field(136, 80, i),
      samplesPerRecord: numeric(216, 'samples per record'),
    };
    if (!Number.isInteger(signal.samplesPerRecord) || signal.samplesPerRecord < 0) {
      throw corrupt(`${WHAT}: signal ${i} (${signal.label}): samples per record ${signal.samplesPerRecord}`);
    }
    if (signal.digitalMax <= signal.digitalMin && signal.label !== ANNOTATION_LABEL) {
      throw corrupt(
        `${WHAT}: signal ${i} (${signal.label}): digital maximum ${signal.digitalMax} ≤ minimum ${signal.digitalMin}`,
      );
    }
    signals.push(signal);
  }
  const header: EdfHeader = {
    variant: bdf
      ? 'BDF'
      : reserved.startsWith('EDF+D')
        ? 'EDF+D'
        : reserved.startsWith('EDF+C')
          ? 'EDF+C'
          : 'EDF',
    patientField: ascii(bytes, 8, 80),
    recordingField: ascii(bytes, 88, 80),
    headerBytes,
    recordCount: recordCount ?? -1,
    recordDurationSeconds,
    signals,
  };
  const start = edfStartTime(ascii(bytes, 168, 8), ascii(bytes, 176, 8), header.recordingField);
  if (start) header.startTime = start;
  return header;
}

/** Parses the TALs of one record's annotation bytes. Returns the time-keeping onset (the first TAL's) and the
 * annotations with text. */
function parseTals(bytes: Uint8Array, annotations: EcgAnnotation[], where: string): number | undefined {
  let keeping: number | undefined;
  let p = 0;
  let first = true;
  while (p < bytes.length) {
    if (bytes[p] === 0) {
      p++;
      continue;
    }
    let end = p;
    while (end < bytes.length && bytes[end] !== 0) end++;
    const tal = new TextDecoder('utf-8').decode(bytes.subarray(p, end));
    p = end + 1;
    const parts = tal.split(TAL_SEPARATOR);
    const timing = TAL_TIMING.exec(parts[0] ?? '');
    if (!timing) throw corrupt(`${WHAT}: ${where}: annotation '${tal.slice(0, 40)}' has no valid onset`);
    const onset = Number(timing[1]);
    if (first) keeping = onset;
    first = false;
    for (const text of parts.slice(1)) {
      if (text === '') continue;
      const annotation: EcgAnnotation = { onsetSeconds: onset, text };
      if (timing[2] !== undefined) annotation.durationSeconds = Number(timing[2]);
      annotations.push(annotation);
    }
  }
  return keeping;
}

/**
 * Reads a whole EDF/EDF+/BDF file: header, physical values per signal, record start times and annotations.
 * The data must hold exactly the records the header announces (or whole records when it says −1).
 */
export function parseEdf(bytes: Uint8Array): EdfFile {
  const header = parseEdfHeader(bytes);
  const bytesPerSample = header.variant === 'BDF' ? 3 : 2;
  const recordBytes = header.signals.reduce((sum, s) => sum + s.samplesPerRecord * bytesPerSample, 0);
  if (recordBytes === 0) throw corrupt(`${WHAT}: data records hold no samples`);
  const dataBytes = bytes.length - header.headerBytes;
  const available = Math.floor(dataBytes / recordBytes);
  let recordCount = header.recordCount;
  if (recordCount === -1) recordCount = available;
  if (!Number.isInteger(recordCount) || recordCount < 0)
    throw corrupt(`${WHAT}: number of data records ${recordCount}`);
  if (available < recordCount) {
    throw corrupt(
      `${WHAT}: the header announces ${recordCount} data records of ${recordBytes} bytes, the file holds ${available} (truncated at byte ${bytes.length})`,
    );
  }
  const valueSignals = header.signals.filter((s) => s.label !== ANNOTATION_LABEL);
  const samplesPerLead = valueSignals.reduce((m, s) => Math.max(m, s.samplesPerRecord), 0) * recordCount;
  assertSampleBudget(valueSignals.length, samplesPerLead, WHAT);

  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const values = header.signals.map((s) =>
    s.label === ANNOTATION_LABEL ? new Float64Array(0) : new Float64Array(s.samplesPerRecord * recordCount),
  );
  const annotations: EcgAnnotation[] = [];
  const recordStarts: number[] = [];
  const isPlus = header.variant.startsWith('EDF+');
  for (let r = 0; r < recordCount; r++) {
    let p = header.headerBytes + r * recordBytes;
    let keeping: number | undefined;
    header.signals.forEach((signal, i) => {
      const n = signal.samplesPerRecord;
      if (signal.label === ANNOTATION_LABEL) {
        const onset = parseTals(bytes.subarray(p, p + n * bytesPerSample), annotations, `record ${r}`);
        keeping ??= onset;
        p += n * bytesPerSample;
        return;
      }
      const out = values[i]!;
      const gain = (signal.physicalMax - signal.physicalMin) / (signal.digitalMax - signal.digitalMin);
      const base = r * n;
      if (bytesPerSample === 2) {
        for (let k = 0; k < n; k++, p += 2) {
          out[base + k] = (view.getInt16(p, true) - signal.digitalMin) * gain + signal.physicalMin;
        }
      } else {
        for (let k = 0; k < n; k++, p += 3) {
          const d = ((bytes[p]! | (bytes[p + 1]! << 8) | (bytes[p + 2]! << 16)) << 8) >> 8;
          out[base + k] = (d - signal.digitalMin) * gain + signal.physicalMin;
        }
      }
    });
    recordStarts.push(isPlus && keeping !== undefined ? keeping : r * header.recordDurationSeconds);
  }
  return { header, values, recordStarts, annotations };
}

/** EDF labels of signals that are not ECG even when measured in volts. */
const NON_ECG_LABEL =
  /^(?:EEG|EOG|EMG|RESP|Resp|PLETH|SpO2|SaO2|Pulse|PPG|Temp|BP|ABP|Position|Light|Snore|Flow|Thor|Abdo|Event|Marker|Status)/i;

function edfPatient(field: string): PatientInfo {
  // EDF+: 'code sex birthdate name' with 'X' for unknown subfields. Plain EDF fields are free text: kept out.
  const parts = field.split(/\s+/);
  if (parts.length < 4) return {};
  const patient: PatientInfo = {};
  const [code, sex, birth, ...name] = parts;
  if (code && code !== 'X') patient.id = code;
  if (sex === 'M' || sex === 'F') patient.sex = sex;
  const b = birth ? /^(\d{2})-([A-Z]{3})-(\d{4})$/.exec(birth) : null;
  if (b && MONTHS.includes(b[2]!))
    patient.birthDate = `${b[3]}-${String(MONTHS.indexOf(b[2]!) + 1).padStart(2, '0')}-${b[1]}`;
  const joined = name.join(' ').replace(/_/g, ' ');
  if (joined && joined !== 'X') patient.name = joined;
  return patient;
}

/**
 * Parses EDF/EDF+/BDF into an Ecg: every signal in a voltage unit whose label is not another biosignal
 * (EEG, EOG, EMG, …). Signals sampled slower than the fastest ECG signal are linearly interpolated to its
 * rate. EDF+D records are placed at their time-keeping onsets with NaN in the gaps. A file with no ECG signal
 * (e.g. annotations only) → UNSUPPORTED_FORMAT.
 */
export function parseEdfEcg(bytes: Uint8Array): Ecg {
  const file = parseEdf(bytes);
  const { header } = file;
  const chosen = header.signals
    .map((signal, index) => ({ signal, index, uv: microvoltsPerUnit(signal.physicalDimension) }))
    .filter(
      (c) => c.signal.label !== ANNOTATION_LABEL && c.uv !== undefined && !NON_ECG_LABEL.test(c.signal.label),
    );
  if (chosen.length === 0) {
    const labels = header.signals.map((s) => s.label).join(', ');
    throw unsupported(`${WHAT}: no ECG signal in a voltage unit (signals: ${labels || 'none'})`);
  }
  if (!(header.recordDurationSeconds > 0))
    throw corrupt(`${WHAT}: data record duration is 0 for signal data`);
  const perRecord = chosen.reduce((m, c) => Math.max(m, c.signal.samplesPerRecord), 0);
  const samplingFrequency = Math.round((perRecord / header.recordDurationSeconds) * 1e6) / 1e6;
  const recordCount = file.recordStarts.length;
  const discontinuous = header.variant === 'EDF+D';
  // Output position of each record: consecutive, or by onset for EDF+D.
  const recordOffset = file.recordStarts.map((start, r) =>
    discontinuous ? Math.round(start * samplingFrequency) : r * perRecord,
  );
  for (let r = 1; r < recordCount; r++) {
    if (recordOffset[r]! < recordOffset[r - 1]! + perRecord) {
      throw corrupt(
        `${WHAT}: EDF+D record ${r} starts at ${file.recordStarts[r]} s, before record ${r - 1} ends`,
      );
    }
  }
  const sampleCount = recordCount === 0 ? 0 : recordOffset[recordCount - 1]! + perRecord;
  assertSampleBudget(chosen.length, sampleCount, WHAT);
  const names = uniqueNames(chosen.map((c) => normalizeLeadName(c.signal.label)));
  const leads = chosen.map((c, i) => {
    const samplesUv = new Float32Array(sampleCount).fill(Number.NaN);
    const source = file.values[c.index]!;
    const n = c.signal.samplesPerRecord;
    const uv = c.uv!;
    for (let r = 0; r < recordCount; r++) {
      const out = recordOffset[r]!;
      for (let k = 0; k < perRecord; k++) {
        // Position of output sample k in this signal's own samples of the record.
        const x = (k * n) / perRecord;
        const k0 = Math.floor(x);
        const k1 = Math.min(n - 1, k0 + 1);
        const a = source[r * n + k0]!;
        const b = source[r * n + k1]!;
        samplesUv[out + k] = (a + (x - k0) * (b - a)) * uv;
      }
    }
    return { name: names[i]!, samplesUv };
  });
  const acquisition: Record<string, string | number> = {
    edfVariant: header.variant,
    dataRecords: recordCount,
    recordDurationSeconds: header.recordDurationSeconds,
  };
  const others = header.signals.filter(
    (s, i) => s.label !== ANNOTATION_LABEL && !chosen.some((c) => c.index === i),
  );
  if (others.length > 0)
    acquisition.otherSignals = others.map((s) => `${s.label} [${s.physicalDimension}]`).join(', ');
  if (chosen.some((c) => c.signal.samplesPerRecord !== perRecord)) {
    acquisition.resampling = `slower signals linearly interpolated to ${samplingFrequency} Hz`;
  }
  const filter = chosen[0]!.signal.prefiltering;
  if (filter) acquisition.prefiltering = filter;
  const ecg: Ecg = {
    leads,
    samplingFrequency,
    sampleCount,
    durationSeconds: sampleCount / samplingFrequency,
    acquisition,
    patient: header.variant.startsWith('EDF+') ? edfPatient(header.patientField) : {},
    source: { format: 'edf' },
  };
  if (header.startTime) ecg.startTime = header.startTime;
  const equipment = header.variant.startsWith('EDF+') ? header.recordingField.split(/\s+/)[4] : undefined;
  if (equipment && equipment !== 'X') ecg.device = equipment.replace(/_/g, ' ');
  if (file.annotations.length > 0) ecg.annotations = file.annotations;
  return ecg;
}
