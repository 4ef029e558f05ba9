import { readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, test } from 'vitest';
import { parseDicomWaveform } from '../../src/formats/ecg/dicom-waveform.js';
import {
  parseWfdbHeader,
  parseWfdbMultiSegment,
  parseWfdbRecord,
  readWfdbSamples,
  type WfdbHeader,
  wfdbSegmentHeaderFiles,
  wfdbSignalFiles,
} from '../../src/formats/ecg/wfdb.js';
import { corpusPath, hasCorpus, loadTruth, type TruthEntry } from '../corpus.js';
import { TWELVE } from '../helpers/ecg-synthetic.js';
import { wfdbChecksum } from '../helpers/wfdb-writer.js';

interface TruthSignal {
  description: string;
  file: string;
  format: string;
  gain: string;
}

interface HeaTruth extends TruthEntry {
  num_samples: number | null;
  num_signals: number;
  sampling_frequency: number;
  record_name: string;
  signals?: TruthSignal[];
  segments?: [string, string][];
  signal_file_size_check?: Record<string, { consistent: boolean }>;
}

const truth = loadTruth();
const heaEntries = Object.entries(truth).filter(([, entry]) => entry.kind === 'hea') as [string, HeaTruth][];

function readHeader(rel: string): WfdbHeader {
  return parseWfdbHeader(readFileSync(corpusPath(rel), 'utf8'));
}

function readFiles(dir: string, names: string[]): Record<string, Uint8Array> {
  return Object.fromEntries(
    names.map((name) => [name, new Uint8Array(readFileSync(corpusPath(path.join(dir, name))))]),
  );
}

/** Bits each sample occupies in a signal file (310/311 pack three samples in 32 bits). */
const STORED_BITS: Record<number, number> = {
  8: 8,
  16: 16,
  24: 24,
  32: 32,
  61: 16,
  80: 8,
  160: 16,
  212: 12,
  310: 32 / 3,
  311: 32 / 3,
};

/** The format field as the header writes it, rebuilt from the parsed parts. */
function formatField(signal: WfdbHeader['signals'][number]): string {
  let field = String(signal.format);
  if (signal.samplesPerFrame > 1) field += `x${signal.samplesPerFrame}`;
  if (signal.skew) field += `:${signal.skew}`;
  if (signal.byteOffset) field += `+${signal.byteOffset}`;
  return field;
}

function correlation(a: Float32Array, b: Float32Array): number {
  const mean = (x: Float32Array) => x.reduce((s, v) => s + v, 0) / x.length;
  const ma = mean(a);
  const mb = mean(b);
  let ab = 0;
  let aa = 0;
  let bb = 0;
  for (let i = 0; i < a.length; i++) {
    ab += (a[i]! - ma) * (b[i]! - mb);
    aa += (a[i]! - ma) ** 2;
    bb += (b[i]! - mb) ** 2;
  }
  return ab / Math.sqrt(aa * bb);
}

describe.runIf(hasCorpus)('WFDB corpus: headers match TRUTH.json', () => {
  test('the corpus has WFDB headers', () => {
    expect(heaEntries.length).toBeGreaterThanOrEqual(7);
  });

  test.each(heaEntries)('%s', (rel, expected) => {
    const header = readHeader(rel);
    expect(header.recordName).toBe(expected.record_name);
    expect(header.samplingFrequency).toBe(expected.sampling_frequency);
    expect(header.signalCount).toBe(expected.num_signals);
    expect(header.sampleCount ?? null).toBe(expected.num_samples);
    if (expected.segments) {
      expect(header.segments?.map((s) => [s.recordName, String(s.sampleCount)])).toEqual(expected.segments);
      return;
    }
    const signals = expected.signals ?? [];
    expect(header.signals).toHaveLength(signals.length);
    signals.forEach((want, i) => {
      const got = header.signals[i]!;
      expect(got.file).toBe(want.file);
      expect(got.description).toBe(want.description);
      expect(formatField(got)).toBe(want.format);
      const gain = /^([-\d.eE+]+)(?:\(([-\d]+)\))?(?:\/(\S+))?$/.exec(want.gain)!;
      expect(got.gain).toBe(Number(gain[1]));
      if (gain[2] !== undefined) expect(got.baseline).toBe(Number(gain[2]));
      expect(got.units).toBe(gain[3] ?? 'mV');
    });
  });
});

describe.runIf(hasCorpus)('WFDB corpus: records decode', () => {
  const singleSegment = heaEntries.filter(([, e]) => !e.segments);

  test.each(singleSegment)('%s: checksums and initial values of every signal match the header', (rel) => {
    const header = readHeader(rel);
    const files = readFiles(path.dirname(rel), wfdbSignalFiles(header));
    const raw = readWfdbSamples(header, files, { ignoreSkew: true });
    header.signals.forEach((signal, i) => {
      const samples = Array.from(raw.signals[i]!);
      expect(samples[0], `${signal.description} initial value`).toBe(signal.initialValue);
      expect(wfdbChecksum(samples), `${signal.description} checksum`).toBe(signal.checksum);
    });
  });

  test.each(singleSegment)('%s: parseWfdbRecord gives every lead the record length', (rel, expected) => {
    const header = readHeader(rel);
    const consistent = Object.values(expected.signal_file_size_check ?? {}).every((c) => c.consistent);
    expect(consistent).toBe(true);
    const files = readFiles(path.dirname(rel), wfdbSignalFiles(header));
    const ecg = parseWfdbRecord(header, files);
    const perFrame = Math.max(...header.signals.map((s) => s.samplesPerFrame));
    // Without a length in the header (100-no-len.hea), the frame count comes from the signal file size.
    const bitsPerFrame = header.signals.reduce(
      (sum, s) => sum + s.samplesPerFrame * STORED_BITS[s.format]!,
      0,
    );
    const frames =
      expected.num_samples ??
      Math.floor(
        (statSync(corpusPath(path.join(path.dirname(rel), header.signals[0]!.file))).size * 8) / bitsPerFrame,
      );
    expect(ecg.sampleCount).toBe(frames * perFrame);
    expect(ecg.samplingFrequency).toBe(expected.sampling_frequency * perFrame);
    expect(ecg.leads.length).toBeGreaterThan(0);
    for (const lead of ecg.leads) expect(lead.samplesUv.length, lead.name).toBe(frames * perFrame);
    expect(ecg.durationSeconds).toBeCloseTo(frames / expected.sampling_frequency, 6);
  });

  test('PTB s0010_re: the 12 standard leads plus the Frank leads, limb leads consistent (III = II − I)', () => {
    const rel = 'ecg/wfdb/ptbdb-s0010_re/s0010_re.hea';
    const header = readHeader(rel);
    const ecg = parseWfdbRecord(header, readFiles(path.dirname(rel), wfdbSignalFiles(header)));
    expect(ecg.leads.map((l) => l.name)).toEqual([...TWELVE, ...['vx', 'vy', 'vz']]);
    const get = (name: string) => ecg.leads.find((l) => l.name === name)!.samplesUv;
    // Recorded leads obey Einthoven's law within a few µV of quantisation (0.5 µV per ADC unit here).
    let worst = 0;
    for (let i = 0; i < ecg.sampleCount; i++)
      worst = Math.max(worst, Math.abs(get('II')[i]! - get('I')[i]! - get('III')[i]!));
    expect(worst).toBeLessThan(5);
  });

  test('binformats: every format decodes, and formats holding the same data agree in shape', () => {
    const rel = 'ecg/wfdb/binformats/binformats.hea';
    const header = readHeader(rel);
    const ecg = parseWfdbRecord(header, readFiles(path.dirname(rel), wfdbSignalFiles(header)));
    expect(new Set(header.signals.map((s) => s.format))).toEqual(
      new Set([8, 16, 24, 32, 61, 80, 160, 212, 310, 311]),
    );
    expect(ecg.leads).toHaveLength(10);
    const byFormat = new Map(header.signals.map((s, i) => [s.format, ecg.leads[i]!.samplesUv]));
    for (const lead of ecg.leads) {
      expect(lead.samplesUv).toHaveLength(499);
      expect(lead.samplesUv.every(Number.isFinite)).toBe(true);
    }
    // The file writes one test ramp per bit width: the 16-bit formats (two's complement LE/BE and offset
    // binary) hold the same ramp, so do the two 10-bit packings and the 24/32-bit pair.
    for (const [a, b] of [
      [16, 61],
      [16, 160],
      [310, 311],
      [24, 32],
    ] as const) {
      expect(correlation(byFormat.get(a)!, byFormat.get(b)!), `${a} vs ${b}`).toBeGreaterThan(0.98);
    }
  });

  test('03700181: 212 with 4 samples per frame and skew reads at 500 Hz', () => {
    const rel = 'ecg/wfdb/03700181/03700181.hea';
    const header = readHeader(rel);
    const ecg = parseWfdbRecord(header, readFiles(path.dirname(rel), wfdbSignalFiles(header)));
    expect(ecg.samplingFrequency).toBe(500);
    expect(ecg.leads.map((l) => l.name)).toEqual(['MCL1']);
    expect(ecg.startTime).toBe('1994-08-15T17:27:45');
  });

  test.each(heaEntries.filter(([, e]) => e.segments))(
    '%s: multi-segment record joins its segments',
    (rel, expected) => {
      const dir = path.dirname(rel);
      const master = readHeader(rel);
      const segments = Object.fromEntries(
        wfdbSegmentHeaderFiles(master).map((name) => {
          const header = readHeader(path.join(dir, name));
          return [header.recordName, header];
        }),
      );
      const files = readFiles(dir, Object.values(segments).flatMap(wfdbSignalFiles));
      const ecg = parseWfdbMultiSegment(master, segments, files);
      const perFrame = Math.max(
        ...Object.values(segments).flatMap((h) => h.signals.map((s) => s.samplesPerFrame)),
      );
      expect(ecg.sampleCount).toBe(expected.num_samples! * perFrame);
      for (const lead of ecg.leads) expect(lead.samplesUv).toHaveLength(expected.num_samples! * perFrame);
      // Segment 2 continues segment 1: its first samples equal a direct read of segment 2.
      const second = expected.segments![1]![0];
      const direct = parseWfdbRecord(segments[second]!, files);
      const joined = ecg.leads[0]!.samplesUv;
      const offset = Number(expected.segments![0]![1]) * perFrame;
      expect(Array.from(joined.subarray(offset, offset + 20))).toEqual(
        Array.from(direct.leads[0]!.samplesUv.subarray(0, 20)),
      );
    },
  );
});

interface DicomWaveformTruth extends TruthEntry {
  WaveformMultiplexGroups: {
    MultiplexGroupLabel: string;
    NumberOfWaveformChannels: string;
    NumberOfWaveformSamples: string;
    SamplingFrequency: string;
  }[];
}

const waveformEntries = Object.entries(truth).filter(
  ([rel, entry]) => rel.startsWith('ecg/dicom-waveform/') && 'WaveformMultiplexGroups' in entry,
) as [string, DicomWaveformTruth][];

describe.runIf(hasCorpus)('DICOM waveform corpus', () => {
  test('the corpus has DICOM waveform files', () => {
    expect(waveformEntries.length).toBeGreaterThanOrEqual(1);
  });

  test.each(waveformEntries)('%s matches its multiplex groups in TRUTH.json', (rel, expected) => {
    const ecg = parseDicomWaveform(new Uint8Array(readFileSync(corpusPath(rel))));
    const groups = expected.WaveformMultiplexGroups;
    const rhythm = groups.find((g) => /rhythm/i.test(g.MultiplexGroupLabel)) ?? groups[0]!;
    expect(ecg.acquisition.multiplexGroupLabel).toBe(rhythm.MultiplexGroupLabel);
    expect(ecg.leads).toHaveLength(Number(rhythm.NumberOfWaveformChannels));
    expect(ecg.sampleCount).toBe(Number(rhythm.NumberOfWaveformSamples));
    expect(ecg.samplingFrequency).toBe(Number(rhythm.SamplingFrequency));
    for (const lead of ecg.leads) expect(lead.samplesUv).toHaveLength(ecg.sampleCount);
    const median = groups.find((g) => /median/i.test(g.MultiplexGroupLabel));
    if (median) {
      expect(ecg.medianBeat?.leads).toHaveLength(Number(median.NumberOfWaveformChannels));
      expect(ecg.medianBeat?.sampleCount).toBe(Number(median.NumberOfWaveformSamples));
      expect(ecg.medianBeat?.samplingFrequency).toBe(Number(median.SamplingFrequency));
    }
  });

  test('waveform_ecg.dcm: the 12 standard leads, recorded limb leads consistent', () => {
    const ecg = parseDicomWaveform(
      new Uint8Array(readFileSync(corpusPath('ecg/dicom-waveform/waveform_ecg.dcm'))),
    );
    expect(ecg.leads.map((l) => l.name)).toEqual(TWELVE);
    const get = (name: string) => ecg.leads.find((l) => l.name === name)!.samplesUv;
    let worst = 0;
    for (let i = 0; i < ecg.sampleCount; i++) {
      worst = Math.max(worst, Math.abs(get('aVR')[i]! + get('aVL')[i]! + get('aVF')[i]!));
    }
    // Goldberger leads sum to zero up to rounding to the 1.25 µV sample step.
    expect(worst).toBeLessThan(10);
  });
});
