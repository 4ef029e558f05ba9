import { describe, expect, test } from 'vitest';
import { AppError } from '../../src/errors.js';
import { parseWfdbHeader } from '../../src/formats/ecg/wfdb.js';
import { decodeWfdbFlacFiles } from '../../src/formats/ecg/wfdb-flac.js';
import { loadWfdbRecord } from '../../src/formats/inspect.js';
import { writeFlac } from '../helpers/flac-writer.js';

const LEADS = ['I', 'II', 'III', 'aVR', 'aVL', 'aVF', 'V1', 'V2'];

/** Integer ramps and sines within the format's range, avoiding the invalid code (the most negative value). */
function channelValues(bits: number, channel: number, count: number): number[] {
  const max = 2 ** (bits - 1) - 1;
  return Array.from(
    { length: count },
    (_, i) =>
      channel % 2 === 0
        ? -max + ((i * (channel + 7) * 131) % (2 * max + 1))
        : Math.round(max * Math.sin((2 * Math.PI * i * (channel + 1)) / 97)) || 0, // no -0
  );
}

/** A header whose signals all live in `rec.flac`; gain 1000/mV makes each microvolt one ADC unit. */
function header(format: number, signals: number, sampleCount: number | undefined, spf = 1): string {
  const lines = [`rec ${signals} 500${sampleCount === undefined ? '' : ` ${sampleCount}`}`];
  for (let s = 0; s < signals; s++) {
    lines.push(
      `rec.flac ${format}${spf > 1 ? `x${spf}` : ''} 1000(0)/mV ${format - 500} 0 0 0 0 ${LEADS[s]}`,
    );
  }
  return `${lines.join('\n')}\n`;
}

function load(headerText: string, files: Record<string, Uint8Array>) {
  return loadWfdbRecord(new TextEncoder().encode(headerText), 'rec.hea', async (name) => files[name] ?? null);
}

async function errorOf(promise: Promise<unknown>): Promise<AppError> {
  const err = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(AppError);
  return err as AppError;
}

const COUNT = 2500; // more than two FLAC blocks of 1152, the last one partial

describe('WFDB FLAC signal files (508/516/524)', () => {
  test.each([
    [508, 1],
    [508, 3],
    [508, 8],
    [516, 1],
    [516, 3],
    [516, 8],
    [524, 1],
    [524, 3],
    [524, 8],
  ] as const)('format %i with %i channels round-trips exactly', async (format, signals) => {
    const bits = (format - 500) as 8 | 16 | 24;
    const channels = Array.from({ length: signals }, (_, c) => channelValues(bits, c, COUNT));
    const ecg = await load(header(format, signals, COUNT), { 'rec.flac': writeFlac(channels, bits) });
    expect(ecg.sampleCount).toBe(COUNT);
    expect(ecg.samplingFrequency).toBe(500);
    expect(ecg.acquisition.wfdbFormats).toBe(String(format));
    expect(ecg.leads.map((l) => l.name)).toEqual(LEADS.slice(0, signals));
    ecg.leads.forEach((lead, c) => {
      expect(Array.from(lead.samplesUv)).toEqual(channels[c]);
    });
  });

  test('a full-range 16-bit ramp, whose last frame holds sync-like bytes, keeps every sample', async () => {
    const ramp = Array.from({ length: 65535 }, (_, i) => i - 32767);
    const ecg = await load(header(516, 1, ramp.length), {
      'rec.flac': writeFlac([ramp], 16, { blockSize: 4096 }),
    });
    expect(Array.from(ecg.leads[0]!.samplesUv)).toEqual(ramp);
  });

  test('the sample count may be left out of the header', async () => {
    const channels = [channelValues(16, 0, 700), channelValues(16, 1, 700)];
    const ecg = await load(header(516, 2, undefined), { 'rec.flac': writeFlac(channels, 16) });
    expect(ecg.sampleCount).toBe(700);
    expect(Array.from(ecg.leads[1]!.samplesUv)).toEqual(channels[1]);
  });

  test('decodeWfdbFlacFiles returns the ADC values per signal, several samples per frame', async () => {
    const channels = [channelValues(24, 0, 600), channelValues(24, 1, 600)];
    const parsed = parseWfdbHeader(header(524, 2, 300, 2));
    const decoded = await decodeWfdbFlacFiles(parsed, { 'rec.flac': writeFlac(channels, 24) });
    expect(Object.keys(decoded)).toEqual(['rec.flac']);
    expect(decoded['rec.flac']!.map((c) => Array.from(c))).toEqual(channels);
  });

  const good = () => writeFlac([channelValues(16, 0, COUNT), channelValues(16, 1, COUNT)], 16);
  test.each([
    ['not FLAC at all', () => new TextEncoder().encode('this is not a FLAC stream, just text. '.repeat(50))],
    ['an empty file', () => new Uint8Array(0)],
    ['only the STREAMINFO block', () => good().subarray(0, 42)],
    ['cut in the middle of a frame', () => good().subarray(0, 3000)],
    [
      'a damaged frame',
      () => {
        const bytes = good();
        for (let i = 500; i < 900; i++) bytes[i] = bytes[i]! ^ 0x5a;
        return bytes;
      },
    ],
  ])('%s → CORRUPT_FILE naming the file', async (_name, bytes) => {
    const err = await errorOf(load(header(516, 2, COUNT), { 'rec.flac': bytes() }));
    expect(err.code).toBe('CORRUPT_FILE');
    expect(err.message).toContain('rec.flac');
  });

  test('a channel count that differs from the header → CORRUPT_FILE', async () => {
    const flac = writeFlac([channelValues(16, 0, COUNT), channelValues(16, 1, COUNT)], 16);
    const err = await errorOf(load(header(516, 3, COUNT), { 'rec.flac': flac }));
    expect(err.code).toBe('CORRUPT_FILE');
    expect(err.message).toMatch(/2 channels.*3 signals/);
  });

  test.each([
    ['shorter', COUNT + 10],
    ['longer', COUNT - 10],
  ])('a stream %s than the header says → CORRUPT_FILE', async (_name, headerCount) => {
    const flac = writeFlac([channelValues(16, 0, COUNT)], 16);
    const err = await errorOf(load(header(516, 1, headerCount), { 'rec.flac': flac }));
    expect(err.code).toBe('CORRUPT_FILE');
    expect(err.message).toContain('rec.flac');
  });

  test('24-bit samples in a format 516 file → CORRUPT_FILE', async () => {
    const flac = writeFlac([channelValues(24, 0, COUNT)], 24);
    const err = await errorOf(load(header(516, 1, COUNT), { 'rec.flac': flac }));
    expect(err.code).toBe('CORRUPT_FILE');
  });

  test('more than 8 signals in one FLAC file → CORRUPT_FILE', async () => {
    const text = header(516, 8, COUNT).replace(/^rec 8/, 'rec 9') + 'rec.flac 516 1000(0)/mV 16 0 0 0 0 V3\n';
    const err = await errorOf(load(text, { 'rec.flac': good() }));
    expect(err.code).toBe('CORRUPT_FILE');
    expect(err.message).toContain('at most 8');
  });
});
