import { describe, expect, test } from 'vitest';
import { AppError } from '../../src/errors.js';
import { parseDicomWaveform } from '../../src/formats/ecg/dicom-waveform.js';
import { TWELVE } from '../helpers/ecg-synthetic.js';

// A small explicit-VR little-endian DICOM writer: enough to build waveform objects with chosen defects.

const LONG_VRS = new Set(['OB', 'OW', 'SQ', 'UN', 'UT', 'UC', 'UR', 'OD', 'OF', 'OL', 'OV']);

function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

function tagBytes(group: number, element: number): Uint8Array {
  const b = new Uint8Array(4);
  const v = new DataView(b.buffer);
  v.setUint16(0, group, true);
  v.setUint16(2, element, true);
  return b;
}

function element(group: number, el: number, vr: string, value: Uint8Array): Uint8Array {
  const long = LONG_VRS.has(vr);
  const head = new Uint8Array(long ? 12 : 8);
  const v = new DataView(head.buffer);
  head.set(tagBytes(group, el));
  head[4] = vr.charCodeAt(0);
  head[5] = vr.charCodeAt(1);
  if (long) v.setUint32(8, value.length, true);
  else v.setUint16(6, value.length, true);
  return concat([head, value]);
}

function text(group: number, el: number, vr: string, value: string): Uint8Array {
  const padded = value.length % 2 ? value + (vr === 'UI' ? '\0' : ' ') : value;
  return element(group, el, vr, new TextEncoder().encode(padded));
}

function us(group: number, el: number, value: number): Uint8Array {
  const b = new Uint8Array(2);
  new DataView(b.buffer).setUint16(0, value, true);
  return element(group, el, 'US', b);
}

function ul(group: number, el: number, value: number): Uint8Array {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setUint32(0, value, true);
  return element(group, el, 'UL', b);
}

function sequence(group: number, el: number, items: Uint8Array[][]): Uint8Array {
  const encoded = items.map((parts) => {
    const body = concat(parts);
    const head = new Uint8Array(8);
    head.set(tagBytes(0xfffe, 0xe000));
    new DataView(head.buffer).setUint32(4, body.length, true);
    return concat([head, body]);
  });
  return element(group, el, 'SQ', concat(encoded));
}

function code(value: string, scheme: string, meaning: string): Uint8Array[] {
  return [
    text(0x0008, 0x0100, 'SH', value),
    text(0x0008, 0x0102, 'SH', scheme),
    text(0x0008, 0x0104, 'LO', meaning),
  ];
}

interface TestChannel {
  code?: [string, string, string];
  label?: string;
  sensitivity?: string;
  units?: string;
  baseline?: string;
  correction?: string;
}

interface TestGroup {
  label: string;
  channels: TestChannel[];
  samplingFrequency: string;
  /** Raw sample values per channel. */
  samples: number[][];
  interpretation?: 'SS' | 'SB' | 'SL' | 'MB';
  bitsAllocated?: number;
  padding?: number;
  /** Bytes of WaveformData actually written (to make it short). */
  dataBytes?: number;
  /** Override NumberOfWaveformSamples. */
  declaredSamples?: number;
  /** Override NumberOfWaveformChannels. */
  declaredChannels?: number;
}

function waveformGroup(group: TestGroup): Uint8Array[] {
  const interpretation = group.interpretation ?? 'SS';
  const bytes = { SS: 2, SB: 1, SL: 4, MB: 1 }[interpretation];
  const sampleCount = group.samples[0]?.length ?? 0;
  const data = new Uint8Array(group.channels.length * sampleCount * bytes);
  const view = new DataView(data.buffer);
  for (let s = 0; s < sampleCount; s++) {
    group.samples.forEach((values, c) => {
      const at = (s * group.channels.length + c) * bytes;
      if (bytes === 2) view.setInt16(at, values[s]!, true);
      else if (bytes === 4) view.setInt32(at, values[s]!, true);
      else view.setInt8(at, values[s]!);
    });
  }
  const channels = group.channels.map((ch) => {
    const parts: Uint8Array[] = [];
    if (ch.label) parts.push(text(0x003a, 0x0203, 'SH', ch.label));
    if (ch.code) parts.push(sequence(0x003a, 0x0208, [code(...ch.code)]));
    if (ch.sensitivity) parts.push(text(0x003a, 0x0210, 'DS', ch.sensitivity));
    if (ch.units) parts.push(sequence(0x003a, 0x0211, [code(ch.units, 'UCUM', ch.units)]));
    if (ch.correction) parts.push(text(0x003a, 0x0212, 'DS', ch.correction));
    if (ch.baseline) parts.push(text(0x003a, 0x0213, 'DS', ch.baseline));
    parts.push(text(0x003a, 0x0220, 'DS', '0.05'), text(0x003a, 0x0221, 'DS', '150'));
    return parts;
  });
  const paddingBytes = new Uint8Array(bytes);
  if (group.padding !== undefined) new DataView(paddingBytes.buffer).setInt16(0, group.padding, true);
  return [
    us(0x003a, 0x0005, group.declaredChannels ?? group.channels.length),
    ul(0x003a, 0x0010, group.declaredSamples ?? sampleCount),
    text(0x003a, 0x001a, 'DS', group.samplingFrequency),
    text(0x003a, 0x0020, 'SH', group.label),
    sequence(0x003a, 0x0200, channels),
    us(0x5400, 0x1004, group.bitsAllocated ?? bytes * 8),
    text(0x5400, 0x1006, 'CS', interpretation),
    ...(group.padding !== undefined ? [element(0x5400, 0x100a, 'OW', paddingBytes)] : []),
    element(0x5400, 0x1010, 'OW', data.subarray(0, group.dataBytes ?? data.length)),
  ];
}

const TWELVE_LEAD_SOP_CLASS = '1.2.840.10008.5.1.4.1.1.9.1.1';
const CT_SOP_CLASS = '1.2.840.10008.5.1.4.1.1.2';

function dicomFile(options: {
  sopClassUid?: string;
  groups?: TestGroup[];
  extra?: Uint8Array[];
}): Uint8Array {
  const sopClassUid = options.sopClassUid ?? TWELVE_LEAD_SOP_CLASS;
  const metaBody = concat([
    element(0x0002, 0x0001, 'OB', new Uint8Array([0, 1])),
    text(0x0002, 0x0002, 'UI', sopClassUid),
    text(0x0002, 0x0003, 'UI', '1.2.3.4.5'),
    text(0x0002, 0x0010, 'UI', '1.2.840.10008.1.2.1'),
  ]);
  const groupLength = new Uint8Array(4);
  new DataView(groupLength.buffer).setUint32(0, metaBody.length, true);
  const dataset = [
    text(0x0008, 0x0016, 'UI', sopClassUid),
    text(0x0008, 0x0018, 'UI', '1.2.3.4.5'),
    text(0x0008, 0x002a, 'DT', '20130125105919'),
    text(0x0008, 0x0060, 'CS', 'ECG'),
    text(0x0008, 0x0070, 'LO', 'Acme Cardio'),
    text(0x0008, 0x1090, 'LO', 'Model 9'),
    text(0x0010, 0x0010, 'PN', 'Doe^Jane'),
    text(0x0010, 0x0020, 'LO', 'PID-77'),
    text(0x0010, 0x0030, 'DA', '19710123'),
    text(0x0010, 0x0040, 'CS', 'F'),
    ...(options.extra ?? []),
  ];
  if (options.groups) dataset.push(sequence(0x5400, 0x0100, options.groups.map(waveformGroup)));
  return concat([
    new Uint8Array(128),
    new TextEncoder().encode('DICM'),
    element(0x0002, 0x0000, 'UL', groupLength),
    metaBody,
    ...dataset,
  ]);
}

const LEADS: [string, string][] = [
  ['5.6.3-9-1', 'Lead I (Einthoven)'],
  ['5.6.3-9-2', 'Lead II'],
  ['5.6.3-9-61', 'Lead III'],
  ['5.6.3-9-62', 'Lead aVR'],
  ['5.6.3-9-63', 'Lead aVL'],
  ['5.6.3-9-64', 'Lead aVF'],
  ['5.6.3-9-3', 'Lead V1'],
  ['5.6.3-9-4', 'Lead V2'],
  ['5.6.3-9-5', 'Lead V3'],
  ['5.6.3-9-6', 'Lead V4'],
  ['5.6.3-9-7', 'Lead V5'],
  ['5.6.3-9-8', 'Lead V6'],
];

function twelveLeadGroup(label: string, sampleCount: number, overrides: Partial<TestGroup> = {}): TestGroup {
  return {
    label,
    samplingFrequency: '500',
    channels: LEADS.map(([value, meaning]) => ({
      code: [value, 'SCPECG', meaning],
      sensitivity: '2.5',
      units: 'uV',
      baseline: '0',
      correction: '1',
    })),
    samples: LEADS.map((_, c) => Array.from({ length: sampleCount }, (_, s) => (c + 1) * 10 + s)),
    ...overrides,
  };
}

function errorOf(fn: () => unknown): AppError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(AppError);
    return err as AppError;
  }
  throw new Error('expected an AppError');
}

describe('parseDicomWaveform', () => {
  test('reads the rhythm group as leads and the median group as the median beat', () => {
    const bytes = dicomFile({
      groups: [twelveLeadGroup('MEDIAN BEAT', 60), twelveLeadGroup('RHYTHM', 500)],
      extra: [],
    });
    const ecg = parseDicomWaveform(bytes);
    expect(ecg.leads.map((l) => l.name)).toEqual(TWELVE);
    expect(ecg.samplingFrequency).toBe(500);
    expect(ecg.sampleCount).toBe(500);
    expect(ecg.durationSeconds).toBe(1);
    // raw × 2.5 µV: lead 3 (III), sample 7 → (30 + 7) × 2.5
    expect(ecg.leads[2]!.samplesUv[7]).toBe(92.5);
    expect(ecg.medianBeat?.sampleCount).toBe(60);
    expect(ecg.medianBeat?.leads).toHaveLength(12);
    expect(ecg.startTime).toBe('2013-01-25T10:59:19');
    expect(ecg.device).toBe('Acme Cardio Model 9');
    expect(ecg.patient).toEqual({ name: 'Doe^Jane', id: 'PID-77', birthDate: '1971-01-23', sex: 'F' });
    expect(ecg.acquisition).toMatchObject({
      multiplexGroupLabel: 'RHYTHM',
      sopClassUid: TWELVE_LEAD_SOP_CLASS,
      filterLowFrequency: 0.05,
      filterHighFrequency: 150,
    });
    expect(JSON.stringify(ecg.acquisition)).not.toContain('Doe');
    expect(ecg.source.format).toBe('dicom-waveform');
  });

  test('without a RHYTHM label the longest group is taken', () => {
    const ecg = parseDicomWaveform(
      dicomFile({ groups: [twelveLeadGroup('A', 50), twelveLeadGroup('B', 400)] }),
    );
    expect(ecg.sampleCount).toBe(400);
    expect(ecg.acquisition.multiplexGroupLabel).toBe('B');
  });

  test('sensitivity, correction factor, baseline and mV units', () => {
    const group: TestGroup = {
      label: 'RHYTHM',
      samplingFrequency: '250',
      channels: [
        {
          code: ['2:1', 'MDC', 'Lead I'],
          sensitivity: '0.005',
          units: 'mV',
          correction: '2',
          baseline: '0.1',
        },
        { label: 'V2', sensitivity: '1', units: 'uV' },
        { code: ['MDC_ECG_LEAD_AVF', 'MDC', 'aVF'], sensitivity: '1', units: 'uV' },
        { code: ['8867-4', 'LN', 'Arterial pressure'], sensitivity: '1', units: 'mm[Hg]' },
      ],
      samples: [
        [0, 100, -100],
        [1, 2, 3],
        [4, 5, 6],
        [80, 90, 100],
      ],
    };
    const ecg = parseDicomWaveform(dicomFile({ groups: [group] }));
    expect(ecg.leads.map((l) => l.name)).toEqual(['I', 'V2', 'aVF']);
    // (raw × 0.005 × 2 + 0.1) mV → µV
    const lead1 = Array.from(ecg.leads[0]!.samplesUv, (v) => Math.round(v * 1000) / 1000);
    expect(lead1).toEqual([100, 1100, -900]);
    expect(ecg.acquisition.otherChannels).toBe('Arterial pressure [mm[Hg]]');
  });

  test('samples equal to WaveformPaddingValue are NaN', () => {
    const group = twelveLeadGroup('RHYTHM', 4, {
      padding: -32768,
      samples: LEADS.map(() => [1, -32768, 3, 4]),
    });
    const samples = parseDicomWaveform(dicomFile({ groups: [group] })).leads[0]!.samplesUv;
    expect(Array.from(samples, Number.isNaN)).toEqual([false, true, false, false]);
  });

  test('8- and 32-bit samples', () => {
    for (const interpretation of ['SB', 'SL'] as const) {
      const group = twelveLeadGroup('RHYTHM', 3, { interpretation, samples: LEADS.map(() => [-5, 0, 7]) });
      expect(Array.from(parseDicomWaveform(dicomFile({ groups: [group] })).leads[0]!.samplesUv)).toEqual([
        -12.5, 0, 17.5,
      ]);
    }
  });

  test('device measurements from the annotation sequence', () => {
    const annotation = (meaning: string, value: string, unit: string) => [
      sequence(0x0040, 0x08ea, [code(unit, 'UCUM', unit)]),
      sequence(0x0040, 0xa043, [code('x', 'SCPECG', meaning)]),
      text(0x0040, 0xa30a, 'DS', value),
    ];
    const extra = [
      sequence(0x0040, 0xb020, [
        annotation('RR Interval', '982', 'ms'),
        annotation('PP Interval', '0', 'ms'),
        annotation('QRS Duration', '0.075', 's'),
        annotation('QRS Axis', '-30', 'deg'),
      ]),
    ];
    const ecg = parseDicomWaveform(dicomFile({ groups: [twelveLeadGroup('RHYTHM', 10)], extra }));
    expect(ecg.measurements).toEqual({ rrInterval: 982, qrsDuration: 75, qrsAxis: -30 });
  });
});

describe('parseDicomWaveform: broken and foreign input', () => {
  test('WaveformData shorter than channels × samples is CORRUPT_FILE naming the tag and sizes', () => {
    const group = twelveLeadGroup('RHYTHM', 100, { dataBytes: 1000 });
    const err = errorOf(() => parseDicomWaveform(dicomFile({ groups: [group] })));
    expect(err.code).toBe('CORRUPT_FILE');
    expect(err.message).toContain('(5400,1010)');
    expect(err.details).toMatchObject({ expectedBytes: 2400, actualBytes: 1000 });
  });

  test('a file cut inside WaveformData is CORRUPT_FILE', () => {
    const bytes = dicomFile({ groups: [twelveLeadGroup('RHYTHM', 500)] });
    for (const keep of [bytes.length - 1, bytes.length - 2000, bytes.length - 11000]) {
      expect(errorOf(() => parseDicomWaveform(bytes.subarray(0, keep))).code).toBe('CORRUPT_FILE');
    }
  });

  test('a waveform object cut before its WaveformSequence is CORRUPT_FILE', () => {
    const bytes = dicomFile({ groups: [twelveLeadGroup('RHYTHM', 10)] });
    const withoutWaveform = dicomFile({});
    expect(errorOf(() => parseDicomWaveform(bytes.subarray(0, withoutWaveform.length))).code).toBe(
      'CORRUPT_FILE',
    );
  });

  test('NumberOfWaveformSamples larger than the data is CORRUPT_FILE', () => {
    const group = twelveLeadGroup('RHYTHM', 10, { declaredSamples: 1_000_000 });
    expect(errorOf(() => parseDicomWaveform(dicomFile({ groups: [group] }))).code).toBe('CORRUPT_FILE');
  });

  test('channel definitions that do not match the channel count are CORRUPT_FILE', () => {
    const group = twelveLeadGroup('RHYTHM', 10, { declaredChannels: 6 });
    expect(errorOf(() => parseDicomWaveform(dicomFile({ groups: [group] }))).message).toMatch(/003A,0200/);
  });

  test('bits allocated that contradict the sample interpretation are CORRUPT_FILE', () => {
    const group = twelveLeadGroup('RHYTHM', 10, { bitsAllocated: 8 });
    expect(errorOf(() => parseDicomWaveform(dicomFile({ groups: [group] }))).code).toBe('CORRUPT_FILE');
  });

  test.each([
    ['a CT image (no WaveformSequence)', () => dicomFile({ sopClassUid: CT_SOP_CLASS })],
    ['random bytes', () => Uint8Array.from({ length: 4096 }, (_, i) => (i * 131 + 7) % 251)],
    ['an empty buffer', () => new Uint8Array(0)],
    [
      'a WFDB header',
      () => new TextEncoder().encode('100 2 360 650000\n100.dat 212 200 11 1024 995 -22131 0 MLII\n'),
    ],
    [
      'mu-law samples',
      () => dicomFile({ groups: [twelveLeadGroup('RHYTHM', 4, { interpretation: 'MB', bitsAllocated: 8 })] }),
    ],
    [
      'a waveform with only pressure channels',
      () =>
        dicomFile({
          groups: [
            {
              label: 'RHYTHM',
              samplingFrequency: '100',
              channels: [{ label: 'ART', sensitivity: '1', units: 'mm[Hg]' }],
              samples: [[1, 2, 3]],
            },
          ],
        }),
    ],
  ])('%s → UNSUPPORTED_FORMAT', (_name, make) => {
    expect(errorOf(() => parseDicomWaveform(make())).code).toBe('UNSUPPORTED_FORMAT');
  });
});
