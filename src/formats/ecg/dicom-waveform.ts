/**
 * DICOM waveform objects (12-lead ECG, General ECG, Ambulatory ECG … : PS3.3 C.10.9 Waveform module) into the
 * canonical Ecg. Pure: bytes in, Ecg out.
 */
import type { DataSet, Element } from 'dicom-parser';
import dicomParser from 'dicom-parser';
import { AppError } from '../../errors.js';
import type { PatientInfo } from '../types.js';
import {
  type Ecg,
  type EcgBeat,
  type EcgLead,
  type EcgMeasurementName,
  microvoltsPerUnit,
  normalizeLeadName,
  scpLeadName,
} from './ecg.js';
import { corrupt, unsupported } from './ecg-input.js';

/** Channels × samples above this are refused (80 MB of Float32), whatever the file claims. */
export const MAX_WAVEFORM_SAMPLES = 20_000_000;

const TAG = {
  mediaStorageSopClassUid: 'x00020002',
  transferSyntaxUid: 'x00020010',
  sopClassUid: 'x00080016',
  sopInstanceUid: 'x00080018',
  acquisitionDateTime: 'x0008002a',
  acquisitionDate: 'x00080022',
  acquisitionTime: 'x00080032',
  contentDate: 'x00080023',
  contentTime: 'x00080033',
  studyDate: 'x00080020',
  studyTime: 'x00080030',
  modality: 'x00080060',
  manufacturer: 'x00080070',
  manufacturerModelName: 'x00081090',
  codeValue: 'x00080100',
  codingSchemeDesignator: 'x00080102',
  codeMeaning: 'x00080104',
  patientName: 'x00100010',
  patientId: 'x00100020',
  patientBirthDate: 'x00100030',
  patientSex: 'x00100040',
  numberOfWaveformChannels: 'x003a0005',
  numberOfWaveformSamples: 'x003a0010',
  samplingFrequency: 'x003a001a',
  multiplexGroupLabel: 'x003a0020',
  channelDefinitionSequence: 'x003a0200',
  channelLabel: 'x003a0203',
  channelSourceSequence: 'x003a0208',
  channelSensitivity: 'x003a0210',
  channelSensitivityUnitsSequence: 'x003a0211',
  channelSensitivityCorrectionFactor: 'x003a0212',
  channelBaseline: 'x003a0213',
  filterLowFrequency: 'x003a0220',
  filterHighFrequency: 'x003a0221',
  notchFilterFrequency: 'x003a0222',
  measurementUnitsCodeSequence: 'x004008ea',
  conceptNameCodeSequence: 'x0040a043',
  numericValue: 'x0040a30a',
  waveformAnnotationSequence: 'x0040b020',
  waveformSequence: 'x54000100',
  waveformBitsAllocated: 'x54001004',
  waveformSampleInterpretation: 'x54001006',
  waveformPaddingValue: 'x5400100a',
  waveformData: 'x54001010',
} as const;

const EXPLICIT_BIG_ENDIAN = '1.2.840.10008.1.2.2';
const DEFLATED = '1.2.840.10008.1.2.1.99';
/** All waveform storage SOP classes (ECG, hemodynamic, audio …) live under this root (PS3.4 B.5). */
const WAVEFORM_SOP_CLASS_PREFIX = '1.2.840.10008.5.1.4.1.1.9.';

/** dicom-parser throws strings or `{ exception, dataSet }` objects, not Errors. */
function dicomParserMessage(err: unknown): string {
  if (typeof err === 'string') return err;
  if (err instanceof Error) return err.message;
  if (err && typeof err === 'object' && 'exception' in err)
    return String((err as { exception: unknown }).exception);
  return String(err);
}

function hasPart10Prefix(bytes: Uint8Array): boolean {
  return (
    bytes.length >= 132 &&
    bytes[128] === 0x44 &&
    bytes[129] === 0x49 &&
    bytes[130] === 0x43 &&
    bytes[131] === 0x4d
  );
}

/** Files without the 128-byte preamble and 'DICM' (raw datasets) start with a group-0008 element. */
function looksLikeRawDataset(bytes: Uint8Array): 'explicit' | 'implicit' | undefined {
  if (bytes.length < 8 || bytes[0] !== 0x08 || bytes[1] !== 0x00) return undefined;
  const vrLike = (b: number | undefined): boolean => b !== undefined && b >= 0x41 && b <= 0x5a;
  return vrLike(bytes[4]) && vrLike(bytes[5]) ? 'explicit' : 'implicit';
}

function parseDataSet(bytes: Uint8Array): { dataSet: DataSet; transferSyntaxUid: string } {
  let options: { TransferSyntaxUID: string } | undefined;
  if (!hasPart10Prefix(bytes)) {
    const raw = looksLikeRawDataset(bytes);
    if (!raw) throw unsupported('not a DICOM file: no DICM prefix and no dataset at byte 0');
    options = { TransferSyntaxUID: raw === 'explicit' ? '1.2.840.10008.1.2.1' : '1.2.840.10008.1.2' };
  } else {
    let meta: DataSet;
    try {
      meta = dicomParser.readPart10Header(bytes);
    } catch (err) {
      throw new AppError(
        'CORRUPT_FILE',
        `DICOM file meta information unreadable: ${dicomParserMessage(err)}`,
        {
          cause: err,
          retryable: false,
        },
      );
    }
    const ts = meta.string(TAG.transferSyntaxUid);
    if (ts === DEFLATED) throw unsupported('deflated DICOM waveform files are not supported');
  }
  let dataSet: DataSet;
  try {
    dataSet = dicomParser.parseDicom(bytes, options);
  } catch (err) {
    throw new AppError('CORRUPT_FILE', `DICOM dataset unreadable: ${dicomParserMessage(err)}`, {
      cause: err,
      retryable: false,
    });
  }
  assertComplete(dataSet);
  return {
    dataSet,
    transferSyntaxUid: options?.TransferSyntaxUID ?? dataSet.string(TAG.transferSyntaxUid) ?? '',
  };
}

/** dicom-parser can return quietly from a truncated file: with only the file meta, or with a last element
 * whose length runs past the end. Both mean the file was cut short. */
function assertComplete(dataSet: DataSet): void {
  const elements = Object.values(dataSet.elements);
  if (elements.every((e) => e.tag.startsWith('x0002'))) {
    throw corrupt('DICOM file has file meta information but no dataset (truncated?)');
  }
  for (const element of elements) {
    if (element.dataOffset + element.length > dataSet.byteArray.length) {
      throw corrupt(
        `DICOM element ${element.tag} at offset ${element.dataOffset} runs past the end of the file (truncated)`,
        { tag: element.tag, offset: element.dataOffset },
      );
    }
  }
}

const SAMPLE_INTERPRETATIONS: Record<
  string,
  { bits: number; read: (v: DataView, o: number, le: boolean) => number }
> = {
  SB: { bits: 8, read: (v, o) => v.getInt8(o) },
  UB: { bits: 8, read: (v, o) => v.getUint8(o) },
  SS: { bits: 16, read: (v, o, le) => v.getInt16(o, le) },
  US: { bits: 16, read: (v, o, le) => v.getUint16(o, le) },
  SL: { bits: 32, read: (v, o, le) => v.getInt32(o, le) },
  UL: { bits: 32, read: (v, o, le) => v.getUint32(o, le) },
  SV: { bits: 64, read: (v, o, le) => Number(v.getBigInt64(o, le)) },
  UV: { bits: 64, read: (v, o, le) => Number(v.getBigUint64(o, le)) },
  FL: { bits: 32, read: (v, o, le) => v.getFloat32(o, le) },
  FD: { bits: 64, read: (v, o, le) => v.getFloat64(o, le) },
};

interface CodedEntry {
  value?: string | undefined;
  scheme?: string | undefined;
  meaning?: string | undefined;
}

function firstCode(dataSet: DataSet, sequenceTag: string): CodedEntry | undefined {
  const item = dataSet.elements[sequenceTag]?.items?.[0]?.dataSet;
  if (!item) return undefined;
  return {
    value: item.string(TAG.codeValue),
    scheme: item.string(TAG.codingSchemeDesignator),
    meaning: item.string(TAG.codeMeaning),
  };
}

/** Lead name from the channel's source code: SCP-ECG codes ('5.6.3-9-61'), MDC codes ('2:61',
 * 'MDC_ECG_LEAD_III'), else the code meaning or channel label normalised. */
function channelName(channel: DataSet, index: number): string {
  const source = firstCode(channel, TAG.channelSourceSequence);
  const value = source?.value ?? '';
  const code = /^5\.6\.3-9-(\d+)$/.exec(value) ?? /^2:(\d+)$/.exec(value);
  const fromCode = code ? scpLeadName(Number(code[1])) : undefined;
  if (fromCode) return fromCode;
  for (const candidate of [
    value.startsWith('MDC_') ? value : undefined,
    source?.meaning,
    channel.string(TAG.channelLabel),
  ]) {
    if (candidate) return normalizeLeadName(candidate);
  }
  return `Channel ${index + 1}`;
}

interface MultiplexGroup {
  index: number;
  label: string;
  dataSet: DataSet;
  channelCount: number;
  sampleCount: number;
  samplingFrequency: number;
}

function readGroup(dataSet: DataSet, index: number): MultiplexGroup {
  const channelCount = dataSet.uint16(TAG.numberOfWaveformChannels) ?? 0;
  const sampleCount = dataSet.uint32(TAG.numberOfWaveformSamples) ?? 0;
  const samplingFrequency = dataSet.floatString(TAG.samplingFrequency) ?? Number.NaN;
  return {
    index,
    label: dataSet.string(TAG.multiplexGroupLabel) ?? '',
    dataSet,
    channelCount,
    sampleCount,
    samplingFrequency,
  };
}

interface DecodedGroup {
  leads: EcgLead[];
  otherChannels: string[];
  uncalibrated: string[];
  filters: Record<string, number>;
}

function decodeGroup(group: MultiplexGroup, byteArray: Uint8Array, littleEndian: boolean): DecodedGroup {
  const { dataSet, channelCount, sampleCount } = group;
  const where = `multiplex group ${group.index + 1}${group.label ? ` (${group.label})` : ''}`;
  if (channelCount < 1 || sampleCount < 1) {
    throw corrupt(`DICOM waveform ${where}: ${channelCount} channels × ${sampleCount} samples`);
  }
  if (!(group.samplingFrequency > 0) || !Number.isFinite(group.samplingFrequency)) {
    throw corrupt(`DICOM waveform ${where}: bad SamplingFrequency (003A,001A)`);
  }
  if (channelCount * sampleCount > MAX_WAVEFORM_SAMPLES) {
    throw corrupt(`DICOM waveform ${where} too large: ${channelCount} × ${sampleCount} samples`, {
      limit: MAX_WAVEFORM_SAMPLES,
    });
  }
  const interpretationCode = dataSet.string(TAG.waveformSampleInterpretation) ?? '';
  const interpretation = SAMPLE_INTERPRETATIONS[interpretationCode];
  if (!interpretation) {
    throw unsupported(
      `DICOM waveform ${where}: sample interpretation '${interpretationCode}' is not supported`,
    );
  }
  const bitsAllocated = dataSet.uint16(TAG.waveformBitsAllocated);
  if (bitsAllocated !== interpretation.bits) {
    throw corrupt(
      `DICOM waveform ${where}: WaveformBitsAllocated (5400,1004) ${bitsAllocated} does not fit sample interpretation ${interpretationCode}`,
    );
  }
  const data: Element | undefined = dataSet.elements[TAG.waveformData];
  if (!data) throw corrupt(`DICOM waveform ${where}: no WaveformData (5400,1010)`);
  const bytesPerSample = interpretation.bits / 8;
  const needed = channelCount * sampleCount * bytesPerSample;
  const available = Math.max(0, Math.min(data.length, byteArray.length - data.dataOffset));
  if (available < needed) {
    throw corrupt(
      `DICOM waveform ${where}: WaveformData (5400,1010) at offset ${data.dataOffset} holds ${available} bytes, ${channelCount} channels × ${sampleCount} samples need ${needed}`,
      { tag: '(5400,1010)', offset: data.dataOffset, expectedBytes: needed, actualBytes: available },
    );
  }

  const channels = dataSet.elements[TAG.channelDefinitionSequence]?.items ?? [];
  if (channels.length !== channelCount) {
    throw corrupt(
      `DICOM waveform ${where}: ChannelDefinitionSequence (003A,0200) has ${channels.length} items for ${channelCount} channels`,
    );
  }

  const view = new DataView(byteArray.buffer, byteArray.byteOffset + data.dataOffset, needed);
  let padding: number | undefined;
  const paddingElement = dataSet.elements[TAG.waveformPaddingValue];
  if (
    paddingElement &&
    paddingElement.length >= bytesPerSample &&
    paddingElement.dataOffset + bytesPerSample <= byteArray.length
  ) {
    const paddingView = new DataView(
      byteArray.buffer,
      byteArray.byteOffset + paddingElement.dataOffset,
      bytesPerSample,
    );
    padding = interpretation.read(paddingView, 0, littleEndian);
  }

  const leads: EcgLead[] = [];
  const otherChannels: string[] = [];
  const uncalibrated: string[] = [];
  const filters: Record<string, number> = {};
  const usedNames = new Map<string, number>();
  channels.forEach((item, c) => {
    const channel = item.dataSet;
    if (!channel) throw corrupt(`DICOM waveform ${where}: channel ${c + 1} definition unreadable`);
    const name = channelName(channel, c);
    const sensitivity = channel.floatString(TAG.channelSensitivity);
    const unitCode = firstCode(channel, TAG.channelSensitivityUnitsSequence);
    let uvPerUnit = microvoltsPerUnit(unitCode?.value ?? '');
    if (sensitivity === undefined || unitCode === undefined) {
      // Type 1C: absent when the samples are not calibrated. Show them at 1 µV per unit rather than drop them.
      uvPerUnit = 1;
      uncalibrated.push(name);
    } else if (uvPerUnit === undefined) {
      otherChannels.push(`${name} [${unitCode.value ?? '?'}]`);
      return;
    }
    if (c === 0) {
      for (const [key, tag] of [
        ['filterLowFrequency', TAG.filterLowFrequency],
        ['filterHighFrequency', TAG.filterHighFrequency],
        ['notchFilterFrequency', TAG.notchFilterFrequency],
      ] as const) {
        const value = channel.floatString(tag);
        if (value !== undefined && Number.isFinite(value)) filters[key] = value;
      }
    }
    // PS3.3 C.10.9.1.4.2: value = sample × sensitivity × correction factor + baseline (sensitivity units).
    const scale = (sensitivity ?? 1) * (channel.floatString(TAG.channelSensitivityCorrectionFactor) ?? 1);
    const baseline = channel.floatString(TAG.channelBaseline) ?? 0;
    const samplesUv = new Float32Array(sampleCount);
    for (let s = 0; s < sampleCount; s++) {
      const raw = interpretation.read(view, (s * channelCount + c) * bytesPerSample, littleEndian);
      samplesUv[s] = raw === padding ? Number.NaN : (raw * scale + baseline) * uvPerUnit;
    }
    const count = (usedNames.get(name) ?? 0) + 1;
    usedNames.set(name, count);
    leads.push({ name: count === 1 ? name : `${name} ${count}`, samplesUv });
  });
  return { leads, otherChannels, uncalibrated, filters };
}

/** The group to read as the rhythm: the first labelled RHYTHM, else the longest (in seconds). */
function pickRhythmGroup(groups: MultiplexGroup[]): MultiplexGroup | undefined {
  const labelled = groups.find((g) => /rhythm/i.test(g.label));
  if (labelled) return labelled;
  const duration = (g: MultiplexGroup): number =>
    g.samplingFrequency > 0 ? g.sampleCount / g.samplingFrequency : 0;
  return groups.reduce<MultiplexGroup | undefined>(
    (best, g) => (!best || duration(g) > duration(best) ? g : best),
    undefined,
  );
}

/** DICOM DT/DA+TM → ISO 8601 local date-time (fractions kept, zone offset dropped). */
function dicomDateTime(dateTime: string | undefined, date?: string, time?: string): string | undefined {
  const joined = dateTime ?? (date ? `${date}${time ?? ''}` : undefined);
  const match = joined
    ? /^(\d{4})(\d{2})(\d{2})(?:(\d{2})(\d{2})?(\d{2})?(\.\d+)?)?/.exec(joined.trim())
    : null;
  if (!match) return undefined;
  const [, y, mo, d, h, mi, s, frac] = match;
  if (h === undefined) return `${y}-${mo}-${d}`;
  return `${y}-${mo}-${d}T${h}:${mi ?? '00'}:${s ?? '00'}${frac ?? ''}`;
}

function dicomDate(value: string | undefined): string | undefined {
  const match = value ? /^(\d{4})(\d{2})(\d{2})$/.exec(value.trim()) : null;
  return match ? `${match[1]}-${match[2]}-${match[3]}` : value || undefined;
}

const MEASUREMENTS: [RegExp, EcgMeasurementName][] = [
  [/^(ventricular )?heart rate$|^ventricular rate$/i, 'ventricularRate'],
  [/^atrial (heart )?rate$/i, 'atrialRate'],
  [/^rr interval$/i, 'rrInterval'],
  [/^pp interval$/i, 'ppInterval'],
  [/^pr interval$/i, 'prInterval'],
  [/^qrs duration$/i, 'qrsDuration'],
  [/^qt interval$/i, 'qtInterval'],
  [/^qtc interval$/i, 'qtcInterval'],
  [/^p axis$/i, 'pAxis'],
  [/^qrs axis$/i, 'qrsAxis'],
  [/^t axis$/i, 'tAxis'],
];

/** Device measurements from the WaveformAnnotationSequence (intervals in ms, axes in degrees, rates in bpm).
 * Zero or negative intervals and rates mean "not measured" on the devices seen, so they are skipped. */
function readMeasurements(dataSet: DataSet): Ecg['measurements'] {
  const items = dataSet.elements[TAG.waveformAnnotationSequence]?.items ?? [];
  const out: NonNullable<Ecg['measurements']> = {};
  for (const item of items) {
    const annotation = item.dataSet;
    if (!annotation) continue;
    const meaning = firstCode(annotation, TAG.conceptNameCodeSequence)?.meaning;
    const value = annotation.floatString(TAG.numericValue);
    if (!meaning || value === undefined || !Number.isFinite(value)) continue;
    const key = MEASUREMENTS.find(([re]) => re.test(meaning.trim()))?.[1];
    if (!key || out[key] !== undefined) continue;
    const unit = firstCode(annotation, TAG.measurementUnitsCodeSequence)?.value;
    const isAxis = key.endsWith('Axis');
    const scaled = unit === 's' ? value * 1000 : value;
    if (!isAxis && scaled <= 0) continue;
    out[key] = scaled;
  }
  return Object.keys(out).length > 0 ? out : undefined;
}

function readPatient(dataSet: DataSet): PatientInfo {
  const patient: PatientInfo = {};
  const name = dataSet.string(TAG.patientName);
  const id = dataSet.string(TAG.patientId);
  const birthDate = dicomDate(dataSet.string(TAG.patientBirthDate));
  const sex = dataSet.string(TAG.patientSex);
  if (name) patient.name = name;
  if (id) patient.id = id;
  if (birthDate) patient.birthDate = birthDate;
  if (sex) patient.sex = sex;
  return patient;
}

/**
 * Parses a DICOM waveform file into an Ecg: the rhythm multiplex group becomes the leads, a median-beat group
 * (if any) `medianBeat`. Channels whose units are not voltages (pressure, respiration) are left out and listed
 * in `acquisition.otherChannels`. Non-waveform DICOM and non-DICOM input → UNSUPPORTED_FORMAT; a waveform whose
 * lengths do not add up → CORRUPT_FILE.
 */
export function parseDicomWaveform(bytes: Uint8Array): Ecg {
  const { dataSet, transferSyntaxUid } = parseDataSet(bytes);
  const sequence = dataSet.elements[TAG.waveformSequence];
  if (!sequence) {
    const sopClassUid = dataSet.string(TAG.sopClassUid) ?? dataSet.string(TAG.mediaStorageSopClassUid) ?? '';
    // A waveform SOP class without its waveform was cut short or broken; anything else is simply not an ECG.
    if (sopClassUid.startsWith(WAVEFORM_SOP_CLASS_PREFIX)) {
      throw corrupt(`DICOM waveform object (${sopClassUid}) has no WaveformSequence (5400,0100)`);
    }
    throw unsupported('DICOM file has no WaveformSequence (5400,0100): not a waveform object');
  }
  const groups = (sequence.items ?? []).flatMap((item, i) =>
    item.dataSet ? [readGroup(item.dataSet, i)] : [],
  );
  const rhythmGroup = pickRhythmGroup(groups);
  if (!rhythmGroup) throw corrupt('DICOM WaveformSequence (5400,0100) has no items');

  const littleEndian = transferSyntaxUid !== EXPLICIT_BIG_ENDIAN;
  const byteArray = dataSet.byteArray as Uint8Array;
  const rhythm = decodeGroup(rhythmGroup, byteArray, littleEndian);
  if (rhythm.leads.length === 0) {
    throw unsupported('DICOM waveform has no ECG channels (no channel is in volts)', {
      channels: rhythm.otherChannels.length,
    });
  }

  const acquisition: Record<string, string | number> = {
    transferSyntaxUid,
    multiplexGroupLabel: rhythmGroup.label,
    waveformGroups: groups.length,
    ...rhythm.filters,
  };
  const sopClassUid = dataSet.string(TAG.sopClassUid);
  const sopInstanceUid = dataSet.string(TAG.sopInstanceUid);
  if (sopClassUid) acquisition.sopClassUid = sopClassUid;
  if (sopInstanceUid) acquisition.sopInstanceUid = sopInstanceUid;
  if (rhythm.otherChannels.length > 0) acquisition.otherChannels = rhythm.otherChannels.join(', ');
  if (rhythm.uncalibrated.length > 0) acquisition.uncalibratedLeads = rhythm.uncalibrated.join(', ');

  const ecg: Ecg = {
    leads: rhythm.leads,
    samplingFrequency: rhythmGroup.samplingFrequency,
    sampleCount: rhythmGroup.sampleCount,
    durationSeconds: rhythmGroup.sampleCount / rhythmGroup.samplingFrequency,
    acquisition,
    patient: readPatient(dataSet),
    source: { format: 'dicom-waveform' },
  };

  const medianGroup = groups.find((g) => g !== rhythmGroup && /median|average|representative/i.test(g.label));
  if (medianGroup) {
    const median = decodeGroup(medianGroup, byteArray, littleEndian);
    if (median.leads.length > 0) {
      const beat: EcgBeat = {
        leads: median.leads,
        samplingFrequency: medianGroup.samplingFrequency,
        sampleCount: medianGroup.sampleCount,
      };
      ecg.medianBeat = beat;
    }
  }
  const startTime = [
    [TAG.acquisitionDate, TAG.acquisitionTime],
    [TAG.contentDate, TAG.contentTime],
    [TAG.studyDate, TAG.studyTime],
  ].reduce<string | undefined>(
    (found, [date, time]) => found ?? dicomDateTime(undefined, dataSet.string(date!), dataSet.string(time!)),
    dicomDateTime(dataSet.string(TAG.acquisitionDateTime)),
  );
  if (startTime) ecg.startTime = startTime;
  const device = [dataSet.string(TAG.manufacturer), dataSet.string(TAG.manufacturerModelName)]
    .filter((s): s is string => !!s)
    .join(' ');
  if (device) ecg.device = device;
  const measurements = readMeasurements(dataSet);
  if (measurements) ecg.measurements = measurements;
  return ecg;
}
