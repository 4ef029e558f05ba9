import { describe, expect, test } from 'vitest';
import { AppError } from '../../src/errors.js';
import { parseCsvEcg } from '../../src/formats/ecg/csv.js';
import { parseEdf, parseEdfEcg } from '../../src/formats/ecg/edf.js';
import { detectEcgFormat, parseEcg } from '../../src/formats/ecg/parse-ecg.js';
import { TWELVE } from '../helpers/ecg-synthetic.js';

const enc = (s: string) => new TextEncoder().encode(s);

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (err) {
    return err instanceof AppError ? err.code : `not an AppError: ${err}`;
  }
  return undefined;
}

interface EdfSignalSpec {
  label: string;
  dimension: string;
  samplesPerRecord: number;
  /** Digital values per record, or annotation text per record. */
  records: number[][] | string[];
  physical?: [number, number];
  digital?: [number, number];
}

/** Writes an EDF(+) file: 256-byte header, 256 bytes per signal, int16 records. */
function writeEdf(
  signals: EdfSignalSpec[],
  options: { reserved?: string; recordSeconds?: number; records: number; patient?: string },
): Uint8Array {
  const field = (s: string, width: number) => s.padEnd(width, ' ').slice(0, width);
  const ns = signals.length;
  let header =
    field('0', 8) + field(options.patient ?? 'X X X X', 80) + field('Startdate 02-MAR-2024 X X X', 80);
  header +=
    field('02.03.24', 8) +
    field('10.11.12', 8) +
    field(String(256 * (ns + 1)), 8) +
    field(options.reserved ?? '', 44);
  header +=
    field(String(options.records), 8) + field(String(options.recordSeconds ?? 1), 8) + field(String(ns), 4);
  const each = (f: (s: EdfSignalSpec) => string, width: number) =>
    signals.map((s) => field(f(s), width)).join('');
  header += each((s) => s.label, 16) + each(() => '', 80) + each((s) => s.dimension, 8);
  header +=
    each((s) => String((s.physical ?? [-32768, 32767])[0]), 8) +
    each((s) => String((s.physical ?? [-32768, 32767])[1]), 8);
  header +=
    each((s) => String((s.digital ?? [-32768, 32767])[0]), 8) +
    each((s) => String((s.digital ?? [-32768, 32767])[1]), 8);
  header += each(() => 'HP:0.05Hz', 80) + each((s) => String(s.samplesPerRecord), 8) + each(() => '', 32);
  const bytes: number[] = Array.from(enc(header));
  for (let r = 0; r < options.records; r++) {
    for (const s of signals) {
      const rec = s.records[r]!;
      if (typeof rec === 'string') {
        const b = new Uint8Array(s.samplesPerRecord * 2);
        b.set(enc(rec).subarray(0, b.length));
        bytes.push(...b);
      } else {
        for (const v of rec) bytes.push(v & 0xff, (v >> 8) & 0xff);
      }
    }
  }
  return Uint8Array.from(bytes);
}

describe('EDF / EDF+', () => {
  test('digital → physical scaling, lead names, non-ECG signals left out', () => {
    const bytes = writeEdf(
      [
        {
          label: 'ECG I',
          dimension: 'mV',
          samplesPerRecord: 4,
          records: [
            [0, 1000, -1000, 32767],
            [1, 2, 3, 4],
          ],
          physical: [-10, 10],
          digital: [-10000, 10000],
        },
        {
          label: 'EEG Fpz-Cz',
          dimension: 'uV',
          samplesPerRecord: 4,
          records: [
            [0, 0, 0, 0],
            [0, 0, 0, 0],
          ],
        },
        {
          label: 'V2',
          dimension: 'uV',
          samplesPerRecord: 2,
          records: [
            [10, 20],
            [30, 40],
          ],
          physical: [-100, 100],
          digital: [-100, 100],
        },
      ],
      { records: 2 },
    );
    const ecg = parseEdfEcg(bytes);
    expect(ecg.leads.map((l) => l.name)).toEqual(['I', 'V2']);
    expect(ecg.samplingFrequency).toBe(4);
    expect(ecg.sampleCount).toBe(8);
    expect(ecg.leads[0]!.samplesUv[1]).toBeCloseTo(1000, 3); // 1000 digital = 1 mV
    // V2 at 2 per record is interpolated to 4 per record.
    expect(Array.from(ecg.leads[1]!.samplesUv.subarray(0, 4))).toEqual([10, 15, 20, 20]);
    expect(ecg.acquisition.otherSignals).toBe('EEG Fpz-Cz [uV]');
    expect(ecg.startTime).toBe('2024-03-02T10:11:12');
  });

  test('EDF+ annotations (TAL) are kept; EDF+D records are placed at their onsets', () => {
    const tal = (t: number, extra = '') => `+${t}\x14\x14\x00${extra}`;
    const bytes = writeEdf(
      [
        {
          label: 'II',
          dimension: 'uV',
          samplesPerRecord: 2,
          records: [
            [1, 2],
            [3, 4],
          ],
          physical: [-32768, 32767],
        },
        {
          label: 'EDF Annotations',
          dimension: '',
          samplesPerRecord: 20,
          records: [tal(0, '+0.5\x150.2\x14beep\x14\x00'), tal(3)],
        },
      ],
      { records: 2, reserved: 'EDF+D', patient: 'MCH-01 F 02-MAY-1951 Jane_Doe' },
    );
    const file = parseEdf(bytes);
    expect(file.recordStarts).toEqual([0, 3]);
    expect(file.annotations).toEqual([{ onsetSeconds: 0.5, durationSeconds: 0.2, text: 'beep' }]);
    const ecg = parseEdfEcg(bytes);
    expect(ecg.sampleCount).toBe(8); // records at 0 s and 3 s, 2 samples per second
    expect(Array.from(ecg.leads[0]!.samplesUv).map((v) => (Number.isNaN(v) ? null : v))).toEqual([
      1,
      2,
      null,
      null,
      null,
      null,
      3,
      4,
    ]);
    expect(ecg.annotations).toHaveLength(1);
    expect(ecg.patient).toEqual({ id: 'MCH-01', sex: 'F', birthDate: '1951-05-02', name: 'Jane Doe' });
  });

  test.each([
    [
      'annotations only',
      () =>
        writeEdf(
          [{ label: 'EDF Annotations', dimension: '', samplesPerRecord: 8, records: ['+0\x14\x14\x00'] }],
          { records: 1, reserved: 'EDF+C' },
        ),
      'UNSUPPORTED_FORMAT',
    ],
    [
      'truncated data records',
      () =>
        writeEdf(
          [
            {
              label: 'II',
              dimension: 'mV',
              samplesPerRecord: 2,
              records: [
                [1, 2],
                [3, 4],
              ],
            },
          ],
          { records: 2 },
        ).subarray(0, 517),
      'CORRUPT_FILE',
    ],
    [
      'header cut short',
      () =>
        writeEdf([{ label: 'II', dimension: 'mV', samplesPerRecord: 2, records: [[1, 2]] }], {
          records: 1,
        }).subarray(0, 300),
      'CORRUPT_FILE',
    ],
    ['not EDF', () => enc('x'.repeat(300)), 'UNSUPPORTED_FORMAT'],
  ])('%s → %s', (_label, make, code) => {
    expect(codeOf(() => parseEdfEcg(make()))).toBe(code);
  });
});

describe('CSV', () => {
  test('header with lead names, units and a time column', () => {
    const csv = 'time (s),Lead I (mV),II [mV],V1\n0,0.1,0.2,5\n0.004,0.2,0.3,6\n0.008,0.3,,7\n';
    const ecg = parseCsvEcg(enc(csv));
    expect(ecg.leads.map((l) => l.name)).toEqual(['I', 'II', 'V1']);
    expect(ecg.samplingFrequency).toBe(250);
    expect(ecg.leads[0]!.samplesUv[1]).toBeCloseTo(200, 3);
    expect(Number.isNaN(ecg.leads[1]!.samplesUv[2]!)).toBe(true);
    // V1 states no unit: values under 20 are taken as mV, and the assumption is recorded.
    expect(ecg.leads[2]!.samplesUv[0]).toBe(5000);
    expect(ecg.acquisition.assumptions).toMatch(/units not stated/);
  });

  test('semicolon separated, rate from a comment line', () => {
    const ecg = parseCsvEcg(enc('# sampling rate: 360 Hz\nMLII;V5\n-120;40\n-100;45\n'));
    expect(ecg.samplingFrequency).toBe(360);
    expect(ecg.leads.map((l) => l.name)).toEqual(['MLII', 'V5']);
    expect(ecg.leads[0]!.samplesUv[0]).toBe(-120);
  });

  test('no header and 12 columns: standard order, assumptions recorded, options override', () => {
    const rows = Array.from({ length: 5 }, (_, i) => `${i},${i * 2},,,,,,,,,,`).join('\n');
    const ecg = parseCsvEcg(enc(rows));
    expect(ecg.leads.map((l) => l.name)).toEqual(TWELVE);
    expect(ecg.samplingFrequency).toBe(500);
    expect(ecg.acquisition.assumptions).toMatch(/no header row.*500 Hz assumed/);
    const given = parseEcg('csv', enc(rows), { csv: { samplingFrequency: 800, microvoltsPerUnit: 5 } });
    expect(given.samplingFrequency).toBe(800);
    expect(given.leads[1]!.samplesUv[2]).toBe(20);
  });

  test.each([
    ['no header and 5 columns', '1,2,3,4,5\n1,2,3,4,5\n', 'UNSUPPORTED_FORMAT'],
    ['a cell that is not a number', 'I,II\n1,2\n3,abc\n', 'CORRUPT_FILE'],
    ['a row with too many cells', 'I,II\n1,2\n3,4,5,6\n', 'CORRUPT_FILE'],
    ['empty file', '', 'CORRUPT_FILE'],
  ])('%s → %s', (_label, csv, code) => {
    expect(codeOf(() => parseCsvEcg(enc(csv)))).toBe(code);
  });
});

describe('detectEcgFormat', () => {
  test.each([
    ['EDF', enc(`0       ${' '.repeat(300)}`), 'x.edf', 'edf'],
    ['HL7 aECG', enc('<?xml version="1.0"?>\n<AnnotatedECG xmlns="urn:hl7-org:v3">'), 'a.xml', 'hl7-aecg'],
    [
      'MUSE',
      enc('<?xml version="1.0"?><!DOCTYPE RestingECG SYSTEM "restecg.dtd"><RestingECG>'),
      'm.xml',
      'ge-muse-xml',
    ],
    [
      'Philips UTF-16',
      Uint8Array.from([0xff, 0xfe, ...Array.from('<restingecgdata >', (c) => [c.charCodeAt(0), 0]).flat()]),
      'p.xml',
      'philips-xml',
    ],
    ['CSV without header', enc('1,2,3\n4,5,6\n7,8,9\n10,11,12\n'), 'data.txt', 'csv'],
    ['other XML', enc('<html></html>'), 'x.xml', null],
  ])('%s', (_label, head, name, expected) => {
    expect(detectEcgFormat(head, name)).toBe(expected);
  });

  test('unknown format names are refused', () => {
    expect(codeOf(() => parseEcg('mp3', new Uint8Array(4)))).toBe('UNSUPPORTED_FORMAT');
  });
});
