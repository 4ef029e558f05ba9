import { readFileSync } from 'node:fs';
import { describe, expect, test } from 'vitest';
import { AppError } from '../../src/errors.js';
import { normalizeLeadName } from '../../src/formats/ecg/ecg.js';
import { parseEdf } from '../../src/formats/ecg/edf.js';
import { triageEcg } from '../../src/formats/ecg/measure.js';
import { detectEcgFormat, parseEcg } from '../../src/formats/ecg/parse-ecg.js';
import { corpusPath, hasCorpus, loadTruth, type TruthEntry } from '../corpus.js';
import { TWELVE } from '../helpers/ecg-synthetic.js';

/** TRUTH.json entries are JSON written by the corpus tools; their fields differ per kind and are checked one
 * by one below. */
// biome-ignore lint/suspicious/noExplicitAny: JSON of several shapes
type Truth = TruthEntry & Record<string, any>;

const truth = loadTruth();
const entries = (kind: string, prefix: string) =>
  Object.entries(truth).filter(([rel, e]) => e.kind === kind && rel.startsWith(prefix)) as [string, Truth][];

const read = (rel: string) => new Uint8Array(readFileSync(corpusPath(rel)));

function parseCorpus(rel: string) {
  const bytes = read(rel);
  const format = detectEcgFormat(bytes.subarray(0, 4096), rel);
  if (!format) throw new Error(`${rel}: format not detected`);
  return { format, ecg: parseEcg(format, bytes) };
}

function einthovenError(ecg: ReturnType<typeof parseEcg>, upTo = ecg.sampleCount): number {
  const get = (n: string) => ecg.leads.find((l) => l.name === n)!.samplesUv;
  let worst = 0;
  for (let i = 0; i < upTo; i++)
    worst = Math.max(worst, Math.abs(get('II')[i]! - get('I')[i]! - get('III')[i]!));
  return worst;
}

describe.runIf(hasCorpus)('ECG corpus: every non-WFDB record parses and matches TRUTH.json', () => {
  test('the corpus has these formats', () => {
    for (const [kind, prefix] of [
      ['scp', 'ecg/scp-ecg/'],
      ['edf', 'ecg/edf/'],
      ['csv', 'ecg/csv/'],
      ['xml', 'ecg/'],
    ]) {
      expect(entries(kind!, prefix!).length, kind).toBeGreaterThan(0);
    }
  });

  test.each(entries('scp', 'ecg/scp-ecg/'))('SCP-ECG %s', (rel, t) => {
    const { format, ecg } = parseCorpus(rel);
    expect(format).toBe('scp-ecg');
    expect(ecg.leads).toHaveLength(t.num_leads);
    expect(ecg.leads.map((l) => l.name)).toEqual(
      t.lead_ids.map(
        (code: number) =>
          ({
            1: 'I',
            2: 'II',
            3: 'V1',
            4: 'V2',
            5: 'V3',
            6: 'V4',
            7: 'V5',
            8: 'V6',
            61: 'III',
            62: 'aVR',
            63: 'aVL',
            64: 'aVF',
          })[code],
      ),
    );
    expect(ecg.samplingFrequency).toBe(t.sampling_frequency);
    expect(ecg.sampleCount).toBe(t.samples_per_lead[0]);
    for (const lead of ecg.leads) expect(lead.samplesUv).toHaveLength(t.samples_per_lead[0]);
    expect(ecg.acquisition.amplitudeNanovoltsPerUnit).toBe(t.rhythm_amplitude_nV);
    expect(String(ecg.acquisition.scpSections)).toBe(t.sections_present.join(','));
    expect(String(ecg.acquisition.encoding)).toContain(
      t.difference_encoding ? `difference ${t.difference_encoding}` : 'raw',
    );
  });

  test('Example.scp: second-difference Huffman decodes to the same samples as the HL7 aECG export of that ECG', () => {
    const scp = parseCorpus('ecg/scp-ecg/Example.scp').ecg;
    const aecg = parseCorpus('ecg/hl7-aecg/Example_aECG.xml').ecg;
    for (const name of ['I', 'II', 'V1', 'V6', 'aVF']) {
      const a = scp.leads.find((l) => l.name === name)!.samplesUv;
      const b = aecg.leads.find((l) => l.name === name)!.samplesUv;
      expect(Array.from(a.subarray(0, 5000))).toEqual(Array.from(b.subarray(0, 5000)));
    }
    expect(einthovenError(scp)).toBeLessThan(5);
  });

  test('demo.scp: section 3 announces one sample more than stored (start 0); the last is padded, and said so', () => {
    const { ecg } = parseCorpus('ecg/scp-ecg/demo.scp');
    expect(ecg.acquisition.paddedSamples).toBe(1);
    expect(Number.isNaN(ecg.leads[0]!.samplesUv[10000]!)).toBe(true);
    expect(ecg.leads[0]!.samplesUv.subarray(0, 10000).every(Number.isFinite)).toBe(true);
  });

  test.each(entries('edf', 'ecg/edf/'))('EDF %s', (rel, t) => {
    const bytes = read(rel);
    const file = parseEdf(bytes);
    expect(file.header.signals.map((s) => s.label)).toEqual(t.labels);
    expect(file.header.signals.map((s) => s.samplesPerRecord)).toEqual(t.samples_per_record);
    expect(file.header.recordCount).toBe(t.num_data_records);
    expect(file.header.headerBytes).toBe(t.header_bytes);
    expect(file.header.variant).toBe(t.reserved.startsWith('EDF+') ? t.reserved.slice(0, 5) : 'EDF');
    const ecgLabels = t.labels.filter((l: string) => l !== 'EDF Annotations');
    if (ecgLabels.length === 0) {
      // Annotations only: the TALs are read, and it is not an ECG.
      expect(file.annotations.length).toBeGreaterThan(0);
      expect(() => parseEcg('edf', bytes)).toThrowError(AppError);
      return;
    }
    const ecg = parseEcg('edf', bytes);
    expect(ecg.leads.map((l) => l.name)).toEqual(ecgLabels.map(normalizeLeadName));
    expect(ecg.samplingFrequency).toBe(t.sampling_frequencies[0]);
    expect(ecg.sampleCount).toBe(t.num_data_records * t.samples_per_record[0]);
  });

  test.each(entries('csv', 'ecg/csv/'))('CSV %s (no header row)', (rel, t) => {
    const { format, ecg } = parseCorpus(rel);
    expect(format).toBe('csv');
    expect(ecg.leads).toHaveLength(t.columns_in_first_data_line);
    expect(ecg.sampleCount).toBe(t.num_lines);
    expect(ecg.acquisition.assumptions).toMatch(/no header row/);
    const firstRow = t.first_line.split(',').map((v: string) => (v === '' ? null : Number(v)));
    expect(ecg.leads.map((l) => (Number.isNaN(l.samplesUv[0]!) ? null : l.samplesUv[0]))).toEqual(firstRow);
    // The same recording as 0000050.ECG.edf: the digital values agree sample for sample.
    const edf = parseEdf(read('ecg/edf/0000050.ECG.edf'));
    expect(edf.values[0]!.length).toBe(ecg.sampleCount);
  });

  test.each(entries('xml', 'ecg/ge-muse-xml/'))('GE MUSE %s', (rel, t) => {
    const { format, ecg } = parseCorpus(rel);
    expect(format).toBe('ge-muse-xml');
    const rhythm = t.waveforms.find((w: Truth) => w.type === 'Rhythm');
    const median = t.waveforms.find((w: Truth) => w.type === 'Median');
    expect(ecg.leads.filter((l) => !l.derived).map((l) => l.name)).toEqual(rhythm.leads);
    expect(ecg.leads).toHaveLength(12);
    expect(ecg.samplingFrequency).toBe(Number(rhythm.sample_base));
    expect(ecg.sampleCount).toBe(Number(rhythm.samples_per_lead[0]));
    expect(ecg.medianBeat?.sampleCount).toBe(Number(median.samples_per_lead[0]));
    expect(ecg.acquisition.museVersion).toBe(t.muse_version);
  });

  test.each(entries('xml', 'ecg/philips-xml/'))('Philips %s', (rel, t) => {
    const { format, ecg } = parseCorpus(rel);
    expect(format).toBe('philips-xml');
    const labels = t.parsedwaveforms.leadlabels?.split(' ') ?? TWELVE;
    expect(ecg.leads.map((l) => l.name)).toEqual(labels);
    expect(ecg.leads).toHaveLength(Number(t.signal_numberchannelsvalid));
    expect(ecg.samplingFrequency).toBe(Number(t.signal_samplingrate));
    expect(ecg.sampleCount).toBe(
      (Number(t.parsedwaveforms.durationperchannel) * Number(t.signal_samplingrate)) / 1000,
    );
    expect(ecg.acquisition.documentVersion).toBe(t.document_version);
    // The rebuilt limb leads obey Einthoven's law over the 10 s of ECG (the last second holds calibration), within
    // the few 5 µV units the integer rebuild can lose.
    expect(einthovenError(ecg, 5000)).toBeLessThan(15);
  });

  test.each(entries('xml', 'ecg/hl7-aecg/'))('HL7 aECG %s', (rel, t) => {
    if (t.lead_sequences === 0) {
      expect(() => parseCorpus(rel)).toThrowError(/no series/);
      return;
    }
    const { format, ecg } = parseCorpus(rel);
    expect(format).toBe('hl7-aecg');
    expect(new Set(ecg.leads.map((l) => l.name))).toEqual(new Set(t.distinct_leads.map(normalizeLeadName)));
    const [increment, unit] = t.time_increments[0];
    expect(ecg.samplingFrequency).toBe(1 / (Number(increment) * (unit === 'ms' ? 1e-3 : 1)));
    const rhythmLeads = t.lead_sequences / t.series / (ecg.medianBeat ? 2 : 1);
    expect(ecg.leads).toHaveLength(rhythmLeads);
  });

  test.each([
    'ecg/scp-ecg/Example.scp',
    'ecg/ge-muse-xml/example1.xml',
    'ecg/philips-xml/129DYPRG.XML',
    'ecg/hl7-aecg/Example_aECG.xml',
    'ecg/edf/0000050.ECG.edf',
  ])('%s triages without error and finds a plausible rate', (rel) => {
    const { ecg } = parseCorpus(rel);
    const triage = triageEcg(ecg);
    expect(triage.heartRate).toBeGreaterThan(30);
    expect(triage.heartRate).toBeLessThan(200);
  });
});
