/**
 * The one in-memory ECG shape every ECG parser (WFDB, DICOM waveform, and later SCP-ECG, HL7 aECG, MUSE,
 * Philips, EDF, CSV) produces and every consumer (renderer, measurements, storage of derived data) reads.
 * Pure: no I/O.
 */
import type { PatientInfo } from '../types.js';

/** One lead (channel) of an ECG, in physical units. */
export interface EcgLead {
  /** Standard names for the 12 leads (I, II, III, aVR, aVL, aVF, V1…V6) after `normalizeLeadName`; any other
   * lead keeps the name its source gave it (MLII, V5R, X, vx, …). */
  name: string;
  /** Microvolts, one value per sample at `Ecg.samplingFrequency`. NaN marks a missing or invalid sample
   * (a WFDB invalid code, a gap segment, a DICOM padding value). */
  samplesUv: Float32Array;
  /** Set when the lead was computed from others (Einthoven/Goldberger) rather than recorded. */
  derived?: true;
}

/** A representative (median/average) beat as computed by the acquiring device. Several formats carry one
 * next to the rhythm data (DICOM 'MEDIAN BEAT' group, MUSE median, SCP-ECG reference beat). */
export interface EcgBeat {
  leads: EcgLead[];
  samplingFrequency: number;
  sampleCount: number;
}

/** A timed note carried by the source (EDF+ TAL annotations, device events), seconds from the record start. */
export interface EcgAnnotation {
  onsetSeconds: number;
  durationSeconds?: number;
  text: string;
}

export interface Ecg {
  /** All leads share `samplingFrequency` and have exactly `sampleCount` samples. */
  leads: EcgLead[];
  samplingFrequency: number;
  sampleCount: number;
  durationSeconds: number;
  /** Acquisition start as ISO 8601 local date-time without zone (sources rarely state one), or a time of day
   * alone ('HH:MM:SS') when the source gives no date. */
  startTime?: string;
  /** Manufacturer and model as the source names them. */
  device?: string;
  /** Technical acquisition details (filters, source layout, notes on how samples were resampled). Never
   * patient data: logs may print this. */
  acquisition: Record<string, string | number>;
  /** Interval/axis values measured by the device, keyed by the names in `EcgMeasurementName`
   * (ms for intervals, bpm for rates, degrees for axes). */
  measurements?: Partial<Record<EcgMeasurementName, number>>;
  medianBeat?: EcgBeat;
  /** Timed annotations from the source file (EDF+). Free text written by the device or the technician. */
  annotations?: EcgAnnotation[];
  patient: PatientInfo;
  source: { format: string };
}

export type EcgMeasurementName =
  | 'ventricularRate'
  | 'atrialRate'
  | 'rrInterval'
  | 'ppInterval'
  | 'prInterval'
  | 'qrsDuration'
  | 'qtInterval'
  | 'qtcInterval'
  | 'pAxis'
  | 'qrsAxis'
  | 'tAxis';

/** The 12 standard leads in the order reports list them. */
export const STANDARD_LEADS = [
  'I',
  'II',
  'III',
  'aVR',
  'aVL',
  'aVF',
  'V1',
  'V2',
  'V3',
  'V4',
  'V5',
  'V6',
] as const;
export type StandardLead = (typeof STANDARD_LEADS)[number];

const CANONICAL_BY_UPPER = new Map<string, string>(
  [...STANDARD_LEADS, 'V7', 'V8', 'V9', 'V1R', 'V2R', 'V3R', 'V4R', 'V5R', 'V6R', 'V7R', 'V8R', 'V9R'].map(
    (name) => [name.toUpperCase(), name],
  ),
);

const ROMAN_WITH_DIGITS = new Map([
  ['1', 'I'],
  ['2', 'II'],
  ['3', 'III'],
]);

/**
 * Maps the spellings sources use ('i', 'Lead I', 'LEAD_I', 'MDC_ECG_LEAD_AVR', 'Lead I (Einthoven)', 'avr',
 * 'v1') to the standard names. Modified and bipolar chest leads (MLII, MCL1, CM5) are different leads and
 * keep their own names, so does anything unrecognised (trimmed).
 */
export function normalizeLeadName(raw: string): string {
  const trimmed = raw.trim();
  const bare = trimmed.replace(/\s*\([^)]*\)\s*$/, ''); // 'Lead I (Einthoven)'
  let name = bare
    .replace(/^MDC_ECG_LEAD_/i, '')
    .replace(/^(?:ECG[\s_-]+)?LEAD[\s_-]*/i, '')
    .replace(/^ECG[\s_-]+/i, '')
    .trim();
  if (name === '') return trimmed;
  // 'Lead 2' means II, but a bare '2' could be any channel number.
  if (name !== bare) name = ROMAN_WITH_DIGITS.get(name) ?? name;
  return CANONICAL_BY_UPPER.get(name.toUpperCase()) ?? trimmed;
}

/**
 * Lead names for the SCP-ECG lead identification table (EN 1064 section 3), which DICOM's SCPECG coding
 * scheme ('5.6.3-9-<n>') and the ISO/IEEE 11073 MDC lead codes ('2:<n>', MDC_ECG_LEAD_*) share.
 */
const SCP_LEAD_NAMES: Record<number, string> = {
  1: 'I',
  2: 'II',
  3: 'V1',
  4: 'V2',
  5: 'V3',
  6: 'V4',
  7: 'V5',
  8: 'V6',
  9: 'V7',
  10: 'V2R',
  11: 'V3R',
  12: 'V4R',
  13: 'V5R',
  14: 'V6R',
  15: 'V7R',
  16: 'X',
  17: 'Y',
  18: 'Z',
  61: 'III',
  62: 'aVR',
  63: 'aVL',
  64: 'aVF',
  66: 'V8',
  67: 'V9',
  68: 'V8R',
  69: 'V9R',
};

/** The lead name for an SCP-ECG / MDC lead code, or undefined when the code is not in the table. */
export function scpLeadName(code: number): string | undefined {
  return SCP_LEAD_NAMES[code];
}

/** Standard leads first in report order, then the others in their original order. */
export function orderLeads<T extends { name: string }>(leads: readonly T[]): T[] {
  const rank = (name: string): number => {
    const i = (STANDARD_LEADS as readonly string[]).indexOf(name);
    return i < 0 ? STANDARD_LEADS.length : i;
  };
  return leads
    .map((lead, index) => ({ lead, index }))
    .sort((a, b) => rank(a.lead.name) - rank(b.lead.name) || a.index - b.index)
    .map(({ lead }) => lead);
}

export function findLead(ecg: Pick<Ecg, 'leads'>, name: string): EcgLead | undefined {
  return ecg.leads.find((lead) => lead.name === name);
}

type Combine = (a: number, b: number) => number;

function combineLeads(a: Float32Array, b: Float32Array, combine: Combine): Float32Array {
  const n = Math.min(a.length, b.length);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = combine(a[i]!, b[i]!);
  return out;
}

/**
 * Completes the six limb leads from any two of I, II, III (Einthoven: III = II − I) and then the augmented
 * leads (Goldberger: aVR = −(I+II)/2, aVL = I − II/2, aVF = II − I/2). Recorded leads are never replaced;
 * computed ones are marked `derived`. Returns a new Ecg (leads in standard order); the input is untouched.
 * Devices that store 8 leads (MUSE, many SCP-ECG files) rely on this to show a 12-lead page.
 */
export function deriveLimbLeads(ecg: Ecg): Ecg {
  const byName = new Map(ecg.leads.map((lead) => [lead.name, lead] as const));
  const added: EcgLead[] = [];
  const add = (name: string, samplesUv: Float32Array): void => {
    const lead: EcgLead = { name, samplesUv, derived: true };
    byName.set(name, lead);
    added.push(lead);
  };

  const get = (name: string): Float32Array | undefined => byName.get(name)?.samplesUv;
  const lead3 = get('III');
  if (!get('I') && get('II') && lead3)
    add(
      'I',
      combineLeads(get('II')!, lead3, (ii, iii) => ii - iii),
    );
  if (!get('II') && get('I') && lead3)
    add(
      'II',
      combineLeads(get('I')!, lead3, (i, iii) => i + iii),
    );

  const lead1 = get('I');
  const lead2 = get('II');
  if (lead1 && lead2) {
    if (!get('III'))
      add(
        'III',
        combineLeads(lead1, lead2, (i, ii) => ii - i),
      );
    if (!get('aVR'))
      add(
        'aVR',
        combineLeads(lead1, lead2, (i, ii) => -(i + ii) / 2),
      );
    if (!get('aVL'))
      add(
        'aVL',
        combineLeads(lead1, lead2, (i, ii) => i - ii / 2),
      );
    if (!get('aVF'))
      add(
        'aVF',
        combineLeads(lead1, lead2, (i, ii) => ii - i / 2),
      );
  }
  if (added.length === 0) return ecg;
  return { ...ecg, leads: orderLeads([...ecg.leads, ...added]) };
}

/** True when all 12 standard leads are present. */
export function hasStandardTwelveLeads(ecg: Pick<Ecg, 'leads'>): boolean {
  return STANDARD_LEADS.every((name) => ecg.leads.some((lead) => lead.name === name));
}

/** Multiplier from a voltage unit to microvolts, or undefined when the unit is not a voltage (mmHg, %, …).
 * Accepts UCUM codes (uV, mV, V) and the spellings WFDB headers and vendors use. */
export function microvoltsPerUnit(unit: string): number | undefined {
  const u = unit.trim();
  switch (u) {
    case 'V':
    case 'v':
    case 'volt':
    case 'volts':
      return 1e6;
    case 'mV':
    case 'mv':
    case 'MV': // some WFDB headers shout; megavolts are not an ECG unit
    case 'millivolt':
    case 'millivolts':
      return 1e3;
    case 'uV':
    case 'uv':
    case 'µV':
    case 'μV':
    case 'microvolt':
    case 'microvolts':
      return 1;
    case 'nV':
    case 'nv':
    case 'nanovolt':
    case 'nanovolts':
      return 1e-3;
    default:
      return undefined;
  }
}
