import { describe, expect, test } from 'vitest';
import { AppError } from '../../src/errors.js';
import {
  MAX_WFDB_SAMPLES,
  parseWfdbHeader,
  parseWfdbMultiSegment,
  parseWfdbRecord,
  readWfdbSamples,
  type WfdbHeader,
  wfdbSegmentHeaderFiles,
  wfdbSignalFiles,
} from '../../src/formats/ecg/wfdb.js';
import {
  FORMAT_RANGE,
  WFDB_TEST_FORMATS,
  type WfdbTestFormat,
  wfdbChecksum,
  writeWfdbRecord,
} from '../helpers/wfdb-writer.js';

function errorOf(fn: () => unknown): AppError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(AppError);
    return err as AppError;
  }
  throw new Error('expected an AppError');
}

/** A deterministic waveform within a format's range: edges, zero, and a ramp. */
function testValues(format: WfdbTestFormat, count: number): number[] {
  const [min, max] = FORMAT_RANGE[format];
  if (format === 8) {
    // Format 8 stores 8-bit differences: walk in steps that fit, starting far from zero.
    let v = -1000;
    return Array.from({ length: count }, (_, k) => (v += ((k * 37) % 255) - 127));
  }
  const edges = [min + 1, max, 0, -1, 1];
  return Array.from({ length: count }, (_, k) =>
    k < edges.length ? edges[k]! : Math.round(min + 1 + ((max - min - 1) * ((k * 7919) % 1000)) / 1000),
  );
}

describe('parseWfdbHeader', () => {
  test.each<[string, string, Partial<WfdbHeader>, Record<string, unknown>[]]>([
    [
      'MIT-BIH style with comments and a blank line between signals',
      '# leading comment\n100 2 360 650000\n100.dat 212 200 11 1024 995 -22131 0 MLII\n\n100.dat 212 200 11 1024 1011 20052 0 V5\n# 69 M\n',
      { recordName: '100', signalCount: 2, samplingFrequency: 360, sampleCount: 650000 },
      [
        {
          file: '100.dat',
          format: 212,
          gain: 200,
          baseline: 1024,
          adcZero: 1024,
          initialValue: 995,
          checksum: -22131,
          units: 'mV',
          description: 'MLII',
        },
        { description: 'V5', initialValue: 1011 },
      ],
    ],
    [
      'no sample count',
      '100-no-len 1 360\n100.dat 212 200 11 1024 995 -22131 0 MLII\n',
      { recordName: '100-no-len', sampleCount: undefined },
      [{ format: 212 }],
    ],
    [
      'samples per frame, skew, byte offset, baseline and units',
      'r 2 125/1000(12) 75000 17:27:45 15/08/1994\nr.dat 212x4:3+512 2963.77(-5)/uV 12 0 67 -11266 0 MCL1\nr.dat 212 12.84(-1605)/mmHg 12 0 -943 -23651 0 ABP\n',
      {
        samplingFrequency: 125,
        counterFrequency: 1000,
        baseCounterValue: 12,
        baseTime: '17:27:45',
        baseDate: '15/08/1994',
      },
      [
        { samplesPerFrame: 4, skew: 3, byteOffset: 512, gain: 2963.77, baseline: -5, units: 'uV' },
        { samplesPerFrame: 1, skew: 0, gain: 12.84, baseline: -1605, units: 'mmHg' },
      ],
    ],
    [
      'minimal signal line: file and format only',
      'min 1\nmin.dat 16\n',
      { samplingFrequency: 250, sampleCount: undefined },
      [
        {
          format: 16,
          gain: 200,
          uncalibrated: true,
          baseline: 0,
          adcResolution: 16,
          description: 'record min, signal 0',
        },
      ],
    ],
    [
      'gain 0 means uncalibrated; description with spaces; CRLF line ends',
      'b 1 200 499\r\nb.d0 8 0 12 0 -2047 -31143 0 sig 0, fmt 8\r\n',
      { sampleCount: 499 },
      [{ gain: 200, uncalibrated: true, description: 'sig 0, fmt 8', initialValue: -2047 }],
    ],
    [
      'fractional sampling frequency and fractional base time',
      'f 1 0.9765625 10 0:0:1.5\nf.dat 16 1/bpm 16 0 0 0 0 HR\n',
      { samplingFrequency: 0.9765625, baseTime: '0:0:1.5' },
      [{ units: 'bpm', description: 'HR' }],
    ],
  ])('%s', (_name, text, fields, signals) => {
    const header = parseWfdbHeader(text);
    expect(header).toMatchObject(fields);
    expect(header.signals).toHaveLength(signals.length);
    expect(header.signals).toMatchObject(signals);
  });

  test('keeps comment lines apart (they carry patient data)', () => {
    const header = parseWfdbHeader('# a\nx 1 100 10\nx.dat 16\n# age: 81\n#sex: female\n');
    expect(header.comments).toEqual(['a', 'age: 81', 'sex: female']);
  });

  test('multi-segment master header lists segments, gaps included', () => {
    const header = parseWfdbHeader('041s/3 7 125 2500 8:26:04 26/10/1994\n041s01 1000\n~ 500\n041s02 1000\n');
    expect(header.recordName).toBe('041s');
    expect(header.signals).toEqual([]);
    expect(header.segments).toEqual([
      { recordName: '041s01', sampleCount: 1000 },
      { recordName: '~', sampleCount: 500 },
      { recordName: '041s02', sampleCount: 1000 },
    ]);
    expect(wfdbSegmentHeaderFiles(header)).toEqual(['041s01.hea', '041s02.hea']);
  });

  test('wfdbSignalFiles lists each file once, in order, without null signals', () => {
    const header = parseWfdbHeader('s 4 1000\ns.dat 16\ns.dat 16\n~ 0\ns.xyz 16\n');
    expect(wfdbSignalFiles(header)).toEqual(['s.dat', 's.xyz']);
  });

  test.each([
    ['empty text', ''],
    ['only comments', '# nothing here\n'],
    ['prose', 'hello world, this is not a header\n'],
    ['binary bytes', '\u0000\u0001\u0002\u0003DICM\u0000'],
    ['record name with a path', '../etc/passwd 1 100\n'],
  ])('not a header: %s → UNSUPPORTED_FORMAT', (_name, text) => {
    expect(errorOf(() => parseWfdbHeader(text)).code).toBe('UNSUPPORTED_FORMAT');
  });

  test.each([
    ['fewer signal lines than declared', 'r 3 360 10\nr.dat 212\nr.dat 212\n'],
    ['bad format field', 'r 1 360 10\nr.dat 212y2\n'],
    ['bad gain', 'r 1 360 10\nr.dat 212 abc\n'],
    ['non-integer ADC zero', 'r 1 360 10\nr.dat 212 200 12 1.5\n'],
    ['zero sampling frequency', 'r 1 0 10\nr.dat 16\n'],
    ['bad sampling frequency', 'r 1 fast 10\nr.dat 16\n'],
    ['bad sample count', 'r 1 360 ten\nr.dat 16\n'],
    ['missing segment lines', 'm/3 2 360 100\nm_1 50\n'],
    ['segment without length', 'm/1 2 360 100\nm_1\n'],
    ['samples per frame of 0', 'r 1 360 10\nr.dat 16x0\n'],
  ])('broken header: %s → CORRUPT_FILE', (_name, text) => {
    expect(errorOf(() => parseWfdbHeader(text)).code).toBe('CORRUPT_FILE');
  });
});

describe('parseWfdbRecord: formats round-trip', () => {
  test.each(WFDB_TEST_FORMATS.map((f) => [f]))('format %i, two multiplexed signals', (format) => {
    // Odd sample counts exercise the partial byte groups of 212, 310 and 311.
    const count = 101;
    const a = testValues(format, count);
    const b = testValues(format, count).map((v) => (format === 8 ? v + 50 : (v / 2) | 0));
    const { header, files } = writeWfdbRecord({
      name: 'rt',
      format,
      samplingFrequency: 500,
      signals: [
        { description: 'I', samples: a, gain: 100, baseline: 0 },
        { description: 'II', samples: b, gain: 100, baseline: 0 },
      ],
    });
    const parsed = parseWfdbHeader(header);
    const digital = readWfdbSamples(parsed, files);
    expect(Array.from(digital.signals[0]!)).toEqual(a);
    expect(Array.from(digital.signals[1]!)).toEqual(b);
    // The header checksums were computed by the writer from the same values.
    expect(digital.signals.map((s) => wfdbChecksum(Array.from(s)))).toEqual(
      parsed.signals.map((s) => s.checksum),
    );

    const ecg = parseWfdbRecord(parsed, files);
    expect(ecg.sampleCount).toBe(count);
    expect(ecg.samplingFrequency).toBe(500);
    expect(ecg.durationSeconds).toBeCloseTo(count / 500, 9);
    expect(ecg.leads.map((l) => l.name)).toEqual(['I', 'II']);
    // 100 adu/mV → 10 µV per adu (stored as Float32).
    expect(ecg.leads[0]!.samplesUv[5]).toBe(Math.fround(a[5]! * 10));
    expect(ecg.leads[1]!.samplesUv[count - 1]).toBe(Math.fround(b[count - 1]! * 10));
  });

  test.each(WFDB_TEST_FORMATS.filter((f) => f !== 8).map((f) => [f]))(
    'format %i: the invalid-sample code becomes NaN',
    (format) => {
      const invalid = FORMAT_RANGE[format][0];
      const values = [0, invalid, 5, invalid];
      const { header, files } = writeWfdbRecord({
        name: 'nan',
        format,
        samplingFrequency: 250,
        signals: [{ description: 'V1', samples: values }],
      });
      const samples = Array.from(parseWfdbRecord(parseWfdbHeader(header), files).leads[0]!.samplesUv);
      expect(samples.map(Number.isNaN)).toEqual([false, true, false, true]);
      expect(samples[2]).toBeCloseTo((5 / 200) * 1000, 3);
    },
  );

  test('baseline, units and gain: µV = (adc − baseline) / gain × units', () => {
    const { header, files } = writeWfdbRecord({
      name: 'u',
      format: 16,
      samplingFrequency: 1000,
      signals: [
        { description: 'v1', samples: [1024, 1224, 824], gain: 200, baseline: 1024 },
        { description: 'v2', samples: [0, 50, -50], gain: 2, units: 'uV' },
      ],
    });
    const ecg = parseWfdbRecord(parseWfdbHeader(header), files);
    expect(Array.from(ecg.leads[0]!.samplesUv)).toEqual([0, 1000, -1000]);
    expect(Array.from(ecg.leads[1]!.samplesUv)).toEqual([0, 25, -25]);
    expect(ecg.leads.map((l) => l.name)).toEqual(['V1', 'V2']);
  });

  test('signals in separate files, with a byte offset (prolog) before sample 0', () => {
    const { header, files } = writeWfdbRecord({
      name: 'two',
      format: 16,
      samplingFrequency: 1000,
      byteOffset: 24,
      signals: [
        { description: 'i', samples: [1, 2, 3], file: 'two.dat' },
        { description: 'vx', samples: [7, 8, 9], file: 'two.xyz' },
      ],
    });
    const parsed = parseWfdbHeader(header);
    expect(wfdbSignalFiles(parsed)).toEqual(['two.dat', 'two.xyz']);
    const digital = readWfdbSamples(parsed, files);
    expect(Array.from(digital.signals[0]!)).toEqual([1, 2, 3]);
    expect(Array.from(digital.signals[1]!)).toEqual([7, 8, 9]);
  });

  test('skew: a signal stored late is shifted back; its last samples do not exist (NaN)', () => {
    const { header, files } = writeWfdbRecord({
      name: 'sk',
      format: 212,
      samplingFrequency: 100,
      signals: [
        { description: 'I', samples: [10, 20, 30, 40, 50, 60] },
        { description: 'II', samples: [1, 2, 3, 4, 5, 6], skew: 2 },
      ],
    });
    const parsed = parseWfdbHeader(header);
    expect(parsed.signals[1]!.skew).toBe(2);
    const digital = readWfdbSamples(parsed, files);
    expect(Array.from(digital.signals[1]!.subarray(0, 4))).toEqual([1, 2, 3, 4]);
    const lead2 = parseWfdbRecord(parsed, files).leads[1]!.samplesUv;
    expect(Array.from(lead2.subarray(0, 4), (v) => Math.round(v))).toEqual([5, 10, 15, 20]);
    expect(Number.isNaN(lead2[4]!) && Number.isNaN(lead2[5]!)).toBe(true);
    // The raw file order is still reachable (for checksums).
    const raw = readWfdbSamples(parsed, files, { ignoreSkew: true });
    expect(wfdbChecksum(Array.from(raw.signals[1]!))).toBe(parsed.signals[1]!.checksum);
  });

  test('samples per frame: high resolution repeats slower signals; frame resolution averages faster ones', () => {
    const ecgSamples = [0, 100, 200, 300, 400, 500, 600, 700];
    const { header, files } = writeWfdbRecord({
      name: 'mf',
      format: 16,
      samplingFrequency: 125,
      signals: [
        { description: 'MCL1', samples: ecgSamples, samplesPerFrame: 4, gain: 1000 },
        { description: 'V', samples: [1000, 2000], gain: 1000 },
      ],
    });
    const parsed = parseWfdbHeader(header);
    const high = parseWfdbRecord(parsed, files);
    expect(high.samplingFrequency).toBe(500);
    expect(high.sampleCount).toBe(8);
    expect(Array.from(high.leads[0]!.samplesUv)).toEqual(ecgSamples);
    expect(Array.from(high.leads[1]!.samplesUv)).toEqual([1000, 1000, 1000, 1000, 2000, 2000, 2000, 2000]);
    expect(high.acquisition.resampling).toMatch(/repeated/);

    const frame = parseWfdbRecord(parsed, files, { resolution: 'frame' });
    expect(frame.samplingFrequency).toBe(125);
    expect(Array.from(frame.leads[0]!.samplesUv)).toEqual([150, 550]);
    expect(Array.from(frame.leads[1]!.samplesUv)).toEqual([1000, 2000]);
  });

  test('a header without a sample count reads as many frames as the file holds', () => {
    const values = Array.from({ length: 33 }, (_, k) => k - 16);
    const { header, files } = writeWfdbRecord({
      name: 'nolen',
      format: 212,
      samplingFrequency: 360,
      omitSampleCount: true,
      signals: [
        { description: 'MLII', samples: values },
        { description: 'V5', samples: values.map((v) => -v) },
      ],
    });
    const parsed = parseWfdbHeader(header);
    expect(parsed.sampleCount).toBeUndefined();
    const ecg = parseWfdbRecord(parsed, files);
    expect(ecg.sampleCount).toBe(33);
    expect(ecg.leads.map((l) => l.name)).toEqual(['MLII', 'V5']);
  });

  test('start time, patient sex from the comments, non-ECG signals set aside', () => {
    const { header, files } = writeWfdbRecord({
      name: 'meta',
      format: 16,
      samplingFrequency: 125,
      baseTime: '8:26:04',
      baseDate: '26/10/1994',
      comments: ['69 M 1085 1629 x1', 'Aldomet, Inderal'],
      signals: [
        { description: 'II', samples: [1, 2] },
        { description: 'ABP', samples: [3, 4], units: 'mmHg' },
        { description: 'RESP', samples: [5, 6] },
      ],
    });
    const ecg = parseWfdbRecord(parseWfdbHeader(header), files);
    expect(ecg.startTime).toBe('1994-10-26T08:26:04');
    expect(ecg.patient).toEqual({ sex: 'M' });
    expect(ecg.leads.map((l) => l.name)).toEqual(['II']);
    expect(ecg.acquisition.otherSignals).toBe('ABP [mmHg], RESP [mV]');
    expect(JSON.stringify(ecg.acquisition)).not.toMatch(/Aldomet/);
  });

  test('a record with no ECG signal is UNSUPPORTED_FORMAT', () => {
    const { header, files } = writeWfdbRecord({
      name: 'bp',
      format: 16,
      samplingFrequency: 125,
      signals: [{ description: 'ABP', samples: [1, 2], units: 'mmHg' }],
    });
    expect(errorOf(() => parseWfdbRecord(parseWfdbHeader(header), files)).code).toBe('UNSUPPORTED_FORMAT');
  });
});

describe('parseWfdbRecord: broken and hostile input', () => {
  const record = () =>
    writeWfdbRecord({
      name: 'tr',
      format: 212,
      samplingFrequency: 360,
      signals: [
        { description: 'MLII', samples: Array.from({ length: 100 }, (_, k) => k) },
        { description: 'V5', samples: Array.from({ length: 100 }, (_, k) => -k) },
      ],
    });

  test('a truncated .dat is CORRUPT_FILE naming the file and the byte counts', () => {
    const { header, files } = record();
    const cut = { 'tr.dat': files['tr.dat']!.subarray(0, 200) };
    const err = errorOf(() => parseWfdbRecord(parseWfdbHeader(header), cut));
    expect(err.code).toBe('CORRUPT_FILE');
    expect(err.message).toContain('tr.dat');
    expect(err.message).toContain('300');
    expect(err.message).toContain('200');
    expect(err.details).toMatchObject({ file: 'tr.dat', expectedBytes: 300, actualBytes: 200 });
  });

  test('a missing signal file is CORRUPT_FILE', () => {
    const { header } = record();
    const err = errorOf(() => parseWfdbRecord(parseWfdbHeader(header), {}));
    expect(err.code).toBe('CORRUPT_FILE');
    expect(err.message).toContain('tr.dat');
  });

  test('a header claiming billions of samples is refused before anything is allocated', () => {
    const header = parseWfdbHeader(`huge 12 500 ${MAX_WFDB_SAMPLES}\n${'huge.dat 16\n'.repeat(12)}`);
    const err = errorOf(() => parseWfdbRecord(header, { 'huge.dat': new Uint8Array(16) }));
    expect(err.code).toBe('CORRUPT_FILE');
    expect(err.message).toMatch(/too large/);
  });

  test('samples per frame times frames over the limit is refused too', () => {
    const header = parseWfdbHeader(`hf 1 500 1000\nhf.dat 16x${MAX_WFDB_SAMPLES}\n`);
    expect(errorOf(() => parseWfdbRecord(header, { 'hf.dat': new Uint8Array(16) })).message).toMatch(
      /too large/,
    );
  });

  test.each([
    ['FLAC format 516', 'fl 1 500 10\nfl.dat 516\n'],
    ['unknown format 999', 'un 1 500 10\nun.dat 999\n'],
    ['formats mixed in one file', 'mx 2 500 10\nmx.dat 16\nmx.dat 212\n'],
  ])('%s → UNSUPPORTED_FORMAT', (_name, text) => {
    const header = parseWfdbHeader(text);
    const files = Object.fromEntries(wfdbSignalFiles(header).map((f) => [f, new Uint8Array(64)]));
    expect(errorOf(() => parseWfdbRecord(header, files)).code).toBe('UNSUPPORTED_FORMAT');
  });

  test('a byte offset past the end of the file is CORRUPT_FILE', () => {
    const header = parseWfdbHeader('off 1 500 1\noff.dat 16+100\n');
    expect(errorOf(() => parseWfdbRecord(header, { 'off.dat': new Uint8Array(10) })).code).toBe(
      'CORRUPT_FILE',
    );
  });

  test('a multi-segment header given to parseWfdbRecord is UNSUPPORTED_FORMAT', () => {
    const header = parseWfdbHeader('m/1 1 100 10\nm_1 10\n');
    expect(errorOf(() => parseWfdbRecord(header, {})).code).toBe('UNSUPPORTED_FORMAT');
  });
});

describe('parseWfdbMultiSegment', () => {
  const segment = (name: string, values: number[], descriptions = ['I', 'III']) =>
    writeWfdbRecord({
      name,
      format: 212,
      samplingFrequency: 125,
      signals: descriptions.map((description, i) => ({
        description,
        samples: values.map((v) => v * (i + 1)),
      })),
    });

  test('joins segments in order; a ~ gap is NaN', () => {
    const s1 = segment('rec_1', [1, 2, 3]);
    const s2 = segment('rec_2', [4, 5]);
    const master = parseWfdbHeader('rec/3 2 125 7\nrec_1 3\n~ 2\nrec_2 2\n');
    const ecg = parseWfdbMultiSegment(
      master,
      { rec_1: parseWfdbHeader(s1.header), rec_2: parseWfdbHeader(s2.header) },
      { ...s1.files, ...s2.files },
    );
    expect(ecg.sampleCount).toBe(7);
    expect(ecg.acquisition.wfdbSegments).toBe(3);
    const lead1 = Array.from(ecg.leads[0]!.samplesUv, (v) => (Number.isNaN(v) ? null : Math.round(v)));
    expect(lead1).toEqual([5, 10, 15, null, null, 20, 25]);
    expect(ecg.leads.map((l) => l.name)).toEqual(['I', 'III']);
  });

  test('variable layout: signals matched by name; a signal a segment lacks is NaN there', () => {
    const layout = parseWfdbHeader('rec_layout 2 125 0\n~ 0 200/mV 12 0 0 0 0 II\n~ 0 200/mV 12 0 0 0 0 V\n');
    const s1 = segment('rec_1', [1, 2], ['V', 'II']);
    const s2 = segment('rec_2', [3], ['II']);
    const master = parseWfdbHeader('rec/3 2 125 3\nrec_layout 0\nrec_1 2\nrec_2 1\n');
    const ecg = parseWfdbMultiSegment(
      master,
      { rec_layout: layout, rec_1: parseWfdbHeader(s1.header), rec_2: parseWfdbHeader(s2.header) },
      { ...s1.files, ...s2.files },
    );
    expect(ecg.leads.map((l) => l.name)).toEqual(['II', 'V']);
    const round = (a: Float32Array) => Array.from(a, (v) => (Number.isNaN(v) ? null : Math.round(v)));
    expect(round(ecg.leads[0]!.samplesUv)).toEqual([10, 20, 15]);
    expect(round(ecg.leads[1]!.samplesUv)).toEqual([5, 10, null]);
  });

  test('a missing segment header is CORRUPT_FILE', () => {
    const master = parseWfdbHeader('rec/1 2 125 3\nrec_1 3\n');
    expect(errorOf(() => parseWfdbMultiSegment(master, {}, {})).code).toBe('CORRUPT_FILE');
  });

  test('segments at another sampling frequency are CORRUPT_FILE', () => {
    const s1 = segment('rec_1', [1, 2, 3]);
    const master = parseWfdbHeader('rec/1 2 250 3\nrec_1 3\n');
    const err = errorOf(() => parseWfdbMultiSegment(master, { rec_1: parseWfdbHeader(s1.header) }, s1.files));
    expect(err.code).toBe('CORRUPT_FILE');
  });

  test('segment lengths adding up past the limit are refused', () => {
    const s1 = segment('rec_1', [1, 2, 3]);
    const master = parseWfdbHeader(`rec/2 2 125 ${MAX_WFDB_SAMPLES}\nrec_1 3\n~ ${MAX_WFDB_SAMPLES}\n`);
    const err = errorOf(() => parseWfdbMultiSegment(master, { rec_1: parseWfdbHeader(s1.header) }, s1.files));
    expect(err.message).toMatch(/too large/);
  });
});
