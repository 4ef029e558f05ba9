/**
 * GE MUSE RestingECG XML into the canonical Ecg. Pure.
 *
 * A Waveform element per kind (Rhythm, Median) with SampleBase × 10^SampleExponent samples per second and one
 * LeadData per stored lead: base64 little-endian int16 × LeadAmplitudeUnitsPerBit, checked against
 * LeadByteCountTotal, LeadSampleCountTotal and LeadDataCRC32 (CRC-32 of the decoded bytes). MUSE stores 8
 * leads (I, II, V1–V6); III, aVR, aVL and aVF are derived.
 */
import type { PatientInfo } from '../types.js';
import {
  deriveLimbLeads,
  type Ecg,
  type EcgBeat,
  type EcgLead,
  type EcgMeasurementName,
  microvoltsPerUnit,
  normalizeLeadName,
} from './ecg.js';
import {
  assertSampleBudget,
  corrupt,
  decodeBase64,
  toNumber,
  uniqueNames,
  unsupported,
} from './ecg-input.js';
import { child, children, parseXmlDocument, textAt, type XmlElement } from './xml.js';

const WHAT = 'GE MUSE XML';

let crcTable: Uint32Array | undefined;

/** CRC-32 (IEEE 802.3, as zlib computes it): what MUSE stores in LeadDataCRC32. */
export function crc32(bytes: Uint8Array): number {
  if (!crcTable) {
    crcTable = new Uint32Array(256);
    for (let n = 0; n < 256; n++) {
      let c = n;
      for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
      crcTable[n] = c >>> 0;
    }
  }
  let crc = 0xffffffff;
  for (let i = 0; i < bytes.length; i++) crc = crcTable[(crc ^ bytes[i]!) & 0xff]! ^ (crc >>> 8);
  return (crc ^ 0xffffffff) >>> 0;
}

const MUSE_UNITS: Record<string, number> = {
  MICROVOLTS: 1,
  MILLIVOLTS: 1000,
  VOLTS: 1e6,
};

interface DecodedWaveform {
  type: string;
  samplingFrequency: number;
  sampleCount: number;
  leads: EcgLead[];
  filters: Record<string, number>;
}

function decodeWaveform(waveform: XmlElement, index: number): DecodedWaveform {
  const type = textAt(waveform, 'WaveformType') ?? `waveform ${index}`;
  const where = `${WHAT} ${type} waveform`;
  const base = toNumber(textAt(waveform, 'SampleBase'));
  const exponent = toNumber(textAt(waveform, 'SampleExponent')) ?? 0;
  if (base === undefined || !(base > 0) || !Number.isInteger(exponent) || Math.abs(exponent) > 6) {
    throw corrupt(`${where}: SampleBase '${textAt(waveform, 'SampleBase') ?? ''}' is not a sampling rate`);
  }
  const samplingFrequency = base * 10 ** exponent;
  const leadData = children(waveform, 'LeadData');
  const counts = leadData.map((lead) => toNumber(textAt(lead, 'LeadSampleCountTotal')) ?? 0);
  const sampleCount = counts.reduce((n, c) => Math.max(n, c), 0);
  assertSampleBudget(leadData.length, sampleCount, where);
  const names: string[] = [];
  const samples: Float32Array[] = [];
  for (const [i, lead] of leadData.entries()) {
    const id = textAt(lead, 'LeadID') ?? `lead ${i}`;
    const here = `${where}, lead ${id}`;
    const count = counts[i]!;
    const sampleSize = toNumber(textAt(lead, 'LeadSampleSize')) ?? 2;
    if (sampleSize !== 2)
      throw unsupported(`${here}: ${sampleSize}-byte samples (only 2-byte samples are defined)`);
    const data = textAt(lead, 'WaveFormData');
    if (data === undefined) throw corrupt(`${here}: no WaveFormData`);
    const bytes = decodeBase64(data, here);
    const byteCount = toNumber(textAt(lead, 'LeadByteCountTotal'));
    if (byteCount !== undefined && byteCount !== bytes.length) {
      throw corrupt(`${here}: LeadByteCountTotal says ${byteCount} bytes, the data holds ${bytes.length}`);
    }
    if (bytes.length < count * 2) {
      throw corrupt(
        `${here}: LeadSampleCountTotal says ${count} samples, the data holds ${bytes.length >> 1}`,
      );
    }
    const crc = toNumber(textAt(lead, 'LeadDataCRC32'));
    if (crc !== undefined && crc32(bytes) !== crc) {
      throw corrupt(`${here}: LeadDataCRC32 ${crc} does not match the data (${crc32(bytes)})`);
    }
    const unitsText = (textAt(lead, 'LeadAmplitudeUnits') ?? 'MICROVOLTS').toUpperCase();
    const unit = MUSE_UNITS[unitsText] ?? microvoltsPerUnit(unitsText);
    if (unit === undefined) throw unsupported(`${here}: amplitude units '${unitsText}' are not a voltage`);
    const perBit = toNumber(textAt(lead, 'LeadAmplitudeUnitsPerBit')) ?? 1;
    const scale = perBit * unit;
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    const out = new Float32Array(sampleCount).fill(Number.NaN);
    for (let s = 0; s < count; s++) out[s] = view.getInt16(2 * s, true) * scale;
    names.push(normalizeLeadName(id));
    samples.push(out);
  }
  const filters: Record<string, number> = {};
  const highPass = toNumber(textAt(waveform, 'HighPassFilter'));
  const lowPass = toNumber(textAt(waveform, 'LowPassFilter'));
  const ac = toNumber(textAt(waveform, 'ACFilter'));
  // MUSE writes the high-pass corner in hundredths of a hertz (16 → 0.16 Hz).
  if (highPass !== undefined) filters.highPassFilterFrequency = highPass / 100;
  if (lowPass !== undefined) filters.lowPassFilterFrequency = lowPass;
  if (ac !== undefined && ac > 0) filters.notchFilterFrequency = ac;
  return {
    type,
    samplingFrequency,
    sampleCount,
    leads: uniqueNames(names).map((name, i) => ({ name, samplesUv: samples[i]! })),
    filters,
  };
}

const MEASUREMENTS: [string, EcgMeasurementName][] = [
  ['VentricularRate', 'ventricularRate'],
  ['AtrialRate', 'atrialRate'],
  ['PRInterval', 'prInterval'],
  ['QRSDuration', 'qrsDuration'],
  ['QTInterval', 'qtInterval'],
  ['QTCorrected', 'qtcInterval'],
  ['PAxis', 'pAxis'],
  ['RAxis', 'qrsAxis'],
  ['TAxis', 'tAxis'],
];

/** 'MM-DD-YYYY' (MUSE dates) → 'YYYY-MM-DD'. */
function museDate(value: string | undefined): string | undefined {
  const m = value ? /^(\d{1,2})[-/](\d{1,2})[-/](\d{4})$/.exec(value) : null;
  return m ? `${m[3]}-${m[1]!.padStart(2, '0')}-${m[2]!.padStart(2, '0')}` : undefined;
}

function readPatient(root: XmlElement): PatientInfo {
  const demographics = child(root, 'PatientDemographics');
  const patient: PatientInfo = {};
  const id = textAt(demographics, 'PatientID');
  const name = [textAt(demographics, 'PatientLastName'), textAt(demographics, 'PatientFirstName')]
    .filter(Boolean)
    .join('^');
  const birthDate = museDate(textAt(demographics, 'DateofBirth'));
  const sex = textAt(demographics, 'Gender');
  if (id) patient.id = id;
  if (name) patient.name = name;
  if (birthDate) patient.birthDate = birthDate;
  if (sex) patient.sex = sex === 'MALE' ? 'M' : sex === 'FEMALE' ? 'F' : sex;
  return patient;
}

/**
 * Parses a GE MUSE RestingECG document: the Rhythm waveform becomes the leads (with the limb leads derived),
 * the Median waveform `medianBeat`, RestingECGMeasurements `measurements`.
 */
export function parseGeMuseXml(bytes: Uint8Array): Ecg {
  const root = parseXmlDocument(bytes, WHAT);
  if (root.name !== 'RestingECG')
    throw unsupported(`${WHAT}: root element is <${root.name}>, not <RestingECG>`);
  const waveforms = children(root, 'Waveform').map(decodeWaveform);
  const rhythm =
    waveforms.find((w) => /rhythm/i.test(w.type)) ?? waveforms.find((w) => !/median/i.test(w.type));
  if (!rhythm) throw corrupt(`${WHAT}: no Rhythm waveform`);
  if (rhythm.leads.length === 0 || rhythm.sampleCount === 0)
    throw corrupt(`${WHAT}: the Rhythm waveform has no samples`);

  const storedLeads = rhythm.leads.length;
  const acquisition: Record<string, string | number> = {
    waveformType: rhythm.type,
    storedLeads,
    ...rhythm.filters,
  };
  const museVersion = textAt(root, 'MuseInfo/MuseVersion');
  if (museVersion) acquisition.museVersion = museVersion;
  const test = child(root, 'TestDemographics');
  let ecg: Ecg = {
    leads: rhythm.leads,
    samplingFrequency: rhythm.samplingFrequency,
    sampleCount: rhythm.sampleCount,
    durationSeconds: rhythm.sampleCount / rhythm.samplingFrequency,
    acquisition,
    patient: readPatient(root),
    source: { format: 'ge-muse-xml' },
  };
  const date = museDate(textAt(test, 'AcquisitionDate'));
  const time = textAt(test, 'AcquisitionTime');
  const hhmmss = time && /^\d{1,2}:\d{2}(:\d{2})?$/.test(time) ? time.padStart(8, '0') : undefined;
  if (date && hhmmss) ecg.startTime = `${date}T${hhmmss}`;
  else if (hhmmss) ecg.startTime = hhmmss;
  const device = ['GE', textAt(test, 'AcquisitionDevice')].filter(Boolean).join(' ');
  ecg.device = device === 'GE' ? 'GE MUSE' : device;

  const measured = child(root, 'RestingECGMeasurements');
  const measurements: Partial<Record<EcgMeasurementName, number>> = {};
  for (const [tag, name] of MEASUREMENTS) {
    const value = toNumber(textAt(measured, tag));
    if (value !== undefined) measurements[name] = value;
  }
  if (Object.keys(measurements).length > 0) ecg.measurements = measurements;

  const median = waveforms.find((w) => w !== rhythm && /median/i.test(w.type));
  if (median && median.sampleCount > 0) {
    const beat = deriveLimbLeads({ ...ecg, leads: median.leads, sampleCount: median.sampleCount });
    const medianBeat: EcgBeat = {
      leads: beat.leads,
      samplingFrequency: median.samplingFrequency,
      sampleCount: median.sampleCount,
    };
    ecg.medianBeat = medianBeat;
  }
  ecg = deriveLimbLeads(ecg);
  return ecg;
}
