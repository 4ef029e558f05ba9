/**
 * HL7 v3 annotated ECG (FDA aECG, HL7 2003-12 schema) into the canonical Ecg. Pure.
 *
 * Layout: AnnotatedECG/component/series (code RHYTHM) holds sequenceSets; each set has one time sequence
 * (GLIST_TS or GLIST_PQ: head + increment) and one SLIST_PQ per lead (value = origin + scale × digit).
 * A series' derivation/derivedSeries (REPRESENTATIVE_BEAT) becomes `medianBeat`.
 */
import type { PatientInfo } from '../types.js';
import { type Ecg, type EcgBeat, type EcgLead, microvoltsPerUnit, normalizeLeadName } from './ecg.js';
import {
  assertSampleBudget,
  corrupt,
  hl7TimestampToIso,
  toNumber,
  uniqueNames,
  unsupported,
} from './ecg-input.js';
import { child, children, descendants, parseXmlDocument, path, textAt, type XmlElement } from './xml.js';

const WHAT = 'HL7 aECG';

interface SequenceSet {
  leads: EcgLead[];
  samplingFrequency: number;
  sampleCount: number;
  start?: string;
  padded: string[];
}

/** Parses the digits of an SLIST into numbers. Every token must be a number: a damaged list is refused
 * rather than read as zeros. */
function parseDigits(text: string, where: string): Float64Array {
  const tokens = text.trim() === '' ? [] : text.trim().split(/\s+/);
  const out = new Float64Array(tokens.length);
  for (let i = 0; i < tokens.length; i++) {
    const v = Number(tokens[i]);
    if (!Number.isFinite(v))
      throw corrupt(`${WHAT}: ${where}: digit ${i} '${tokens[i]!.slice(0, 20)}' is not a number`);
    out[i] = v;
  }
  return out;
}

/** Seconds per sample from an increment element (unit s or ms). */
function incrementSeconds(increment: XmlElement | undefined, where: string): number {
  const value = toNumber(increment?.attributes.value);
  const unit = increment?.attributes.unit ?? 's';
  const factor = unit === 's' ? 1 : unit === 'ms' ? 1e-3 : unit === 'us' ? 1e-6 : undefined;
  if (value === undefined || !(value > 0) || factor === undefined) {
    throw corrupt(
      `${WHAT}: ${where}: time increment '${increment?.attributes.value ?? ''} ${unit}' is not usable`,
    );
  }
  return value * factor;
}

function readSequenceSet(set: XmlElement, where: string): SequenceSet | undefined {
  const sequences = children(set, 'component')
    .map((c) => child(c, 'sequence'))
    .filter((s): s is XmlElement => s !== undefined);
  let secondsPerSample: number | undefined;
  let start: string | undefined;
  const raw: { name: string; values: Float64Array; scale: number; origin: number }[] = [];
  for (const [index, sequence] of sequences.entries()) {
    const code = child(sequence, 'code')?.attributes.code ?? '';
    const value = child(sequence, 'value');
    const type = value?.attributes.type ?? '';
    const here = `${where}, sequence ${index} (${code || 'no code'})`;
    if (/^TIME_(ABSOLUTE|RELATIVE)$/.test(code) || type.startsWith('GLIST')) {
      secondsPerSample = incrementSeconds(child(value, 'increment'), here);
      if (code === 'TIME_ABSOLUTE') start = hl7TimestampToIso(child(value, 'head')?.attributes.value);
      continue;
    }
    if (!value || (type !== '' && type !== 'SLIST_PQ' && type !== 'SLIST_INT')) continue;
    const digits = child(value, 'digits');
    if (!digits) continue;
    const originEl = child(value, 'origin');
    const scaleEl = child(value, 'scale');
    const originValue = toNumber(originEl?.attributes.value) ?? 0;
    const scaleValue = toNumber(scaleEl?.attributes.value) ?? 1;
    const originUnit = microvoltsPerUnit(originEl?.attributes.unit ?? 'uV');
    const scaleUnit = microvoltsPerUnit(scaleEl?.attributes.unit ?? 'uV');
    if (originUnit === undefined || scaleUnit === undefined) continue; // not a voltage (e.g. a pressure)
    raw.push({
      name: normalizeLeadName(code || `lead ${index}`),
      values: parseDigits(digits.text, here),
      scale: scaleValue * scaleUnit,
      origin: originValue * originUnit,
    });
  }
  if (raw.length === 0) return undefined;
  if (secondsPerSample === undefined)
    throw corrupt(`${WHAT}: ${where}: lead sequences without a time sequence`);
  const sampleCount = raw.reduce((n, r) => Math.max(n, r.values.length), 0);
  assertSampleBudget(raw.length, sampleCount, WHAT);
  const names = uniqueNames(raw.map((r) => r.name));
  const padded: string[] = [];
  const leads = raw.map((r, i) => {
    const samplesUv = new Float32Array(sampleCount).fill(Number.NaN);
    for (let s = 0; s < r.values.length; s++) samplesUv[s] = r.origin + r.scale * r.values[s]!;
    if (r.values.length < sampleCount) padded.push(names[i]!);
    return { name: names[i]!, samplesUv };
  });
  const result: SequenceSet = {
    leads,
    samplingFrequency: roundFrequency(1 / secondsPerSample),
    sampleCount,
    padded,
  };
  if (start) result.start = start;
  return result;
}

/** 1/0.002 is 499.99999999999994 in floating point; rates are whole or have few decimals. */
function roundFrequency(fs: number): number {
  return Math.round(fs * 1e6) / 1e6;
}

function firstSet(series: XmlElement, where: string): SequenceSet | undefined {
  for (const [i, component] of children(series, 'component').entries()) {
    const set = child(component, 'sequenceSet');
    if (!set) continue;
    const read = readSequenceSet(set, `${where}, sequenceSet ${i}`);
    if (read) return read;
  }
  return undefined;
}

function readPatient(root: XmlElement): PatientInfo {
  const patient: PatientInfo = {};
  const subject = path(root, 'componentOf/timepointEvent/componentOf/subjectAssignment/subject/trialSubject');
  const id = child(subject, 'id')?.attributes.extension;
  if (id) patient.id = id;
  const person = child(subject, 'subjectDemographicPerson');
  const name = child(person, 'name');
  if (name) {
    const given = textAt(name, 'given');
    const family = textAt(name, 'family');
    const full = [family, given].filter(Boolean).join('^') || name.text.trim();
    if (full) patient.name = full;
  }
  const sex = child(person, 'administrativeGenderCode')?.attributes.code;
  if (sex) patient.sex = sex;
  const birth = hl7TimestampToIso(child(person, 'birthTime')?.attributes.value);
  if (birth) patient.birthDate = birth.slice(0, 10);
  return patient;
}

/** Filter settings from the series' control variables (MDC_ECG_CTL_VBL_ATTR_FILTER_*). */
function readFilters(series: XmlElement): Record<string, number> {
  const out: Record<string, number> = {};
  const keys: Record<string, string> = {
    MDC_ECG_CTL_VBL_ATTR_FILTER_NOTCH: 'notchFilterFrequency',
    MDC_ECG_CTL_VBL_ATTR_FILTER_LOW_PASS: 'lowPassFilterFrequency',
    MDC_ECG_CTL_VBL_ATTR_FILTER_HIGH_PASS: 'highPassFilterFrequency',
  };
  for (const variable of descendants(series, 'controlVariable')) {
    const key = keys[child(variable, 'code')?.attributes.code ?? ''];
    if (!key) continue;
    for (const inner of descendants(variable, 'controlVariable')) {
      const code = child(inner, 'code')?.attributes.code ?? '';
      const value = toNumber(child(inner, 'value')?.attributes.value);
      if (/_FREQ$/.test(code) && value !== undefined) out[key] = value;
    }
  }
  return out;
}

/**
 * Parses an HL7 aECG document. The first RHYTHM series with lead data gives the leads; its derived
 * REPRESENTATIVE_BEAT series (if any) the median beat. Not an AnnotatedECG → UNSUPPORTED_FORMAT; no waveform,
 * a lead without numbers, or a missing time increment → CORRUPT_FILE.
 */
export function parseHl7Aecg(bytes: Uint8Array): Ecg {
  const root = parseXmlDocument(bytes, WHAT);
  if (root.name !== 'AnnotatedECG')
    throw unsupported(`${WHAT}: root element is <${root.name}>, not <AnnotatedECG>`);
  const allSeries = children(root, 'component')
    .map((c) => child(c, 'series'))
    .filter((s): s is XmlElement => s !== undefined);
  if (allSeries.length === 0) throw corrupt(`${WHAT}: the document has no series (no waveform at all)`);
  const ordered = [
    ...allSeries.filter((s) => child(s, 'code')?.attributes.code === 'RHYTHM'),
    ...allSeries.filter((s) => child(s, 'code')?.attributes.code !== 'RHYTHM'),
  ];
  let series: XmlElement | undefined;
  let set: SequenceSet | undefined;
  for (const [i, candidate] of ordered.entries()) {
    set = firstSet(candidate, `series ${i}`);
    if (set) {
      series = candidate;
      break;
    }
  }
  if (!series || !set) throw corrupt(`${WHAT}: no series holds lead data (SLIST_PQ digits)`);
  if (set.sampleCount === 0) throw corrupt(`${WHAT}: the lead sequences hold no samples`);

  const acquisition: Record<string, string | number> = {
    seriesCode: child(series, 'code')?.attributes.code ?? '',
    seriesCount: allSeries.length,
    ...readFilters(series),
  };
  if (set.padded.length > 0) acquisition.paddedLeads = set.padded.join(', ');
  const ecg: Ecg = {
    leads: set.leads,
    samplingFrequency: set.samplingFrequency,
    sampleCount: set.sampleCount,
    durationSeconds: set.sampleCount / set.samplingFrequency,
    acquisition,
    patient: readPatient(root),
    source: { format: 'hl7-aecg' },
  };
  const start = set.start ?? hl7TimestampToIso(path(series, 'effectiveTime/low')?.attributes.value);
  if (start) ecg.startTime = start;
  const device = path(series, 'author/seriesAuthor');
  const deviceName = [
    textAt(device, 'manufacturerOrganization/name'),
    textAt(device, 'manufacturedSeriesDevice/manufacturerModelName'),
  ]
    .filter(Boolean)
    .join(' ');
  if (deviceName) ecg.device = deviceName;

  const derived = children(series, 'derivation')
    .map((d) => child(d, 'derivedSeries'))
    .find((d) => d !== undefined);
  const beatSet = derived ? firstSet(derived, 'derived series') : undefined;
  if (beatSet && beatSet.sampleCount > 0) {
    const beat: EcgBeat = {
      leads: beatSet.leads,
      samplingFrequency: beatSet.samplingFrequency,
      sampleCount: beatSet.sampleCount,
    };
    ecg.medianBeat = beat;
  }
  return ecg;
}
