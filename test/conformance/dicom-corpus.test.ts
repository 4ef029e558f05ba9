import { readFileSync } from 'node:fs';
import sharp from 'sharp';
import { afterAll, describe, expect, test } from 'vitest';
import { type AppError, isAppError } from '../../src/errors.js';
import { type DicomInstance, parseDicom } from '../../src/formats/dicom/parse-dicom.js';
import {
  canDecodeTransferSyntax,
  decodeDicomFrame,
  renderDicomFrame,
} from '../../src/imaging/render-dicom.js';
import { corpusPath, hasCorpus, loadTruth, type TruthEntry } from '../corpus.js';

/**
 * Every DICOM file of the shared corpus against what DCMTK (dcmdump, dcmj2pnm) recorded in TRUTH.json.
 */

const truth = loadTruth();
const entries = Object.entries(truth).filter(([, t]) => t.kind === 'dicom');

/** dcmdump read it, by default or with a forced mode (+Ep, -f -te). */
function dcmdumpReads(t: TruthEntry): boolean {
  return t.dcmdump_rc === 0 || typeof t.dcmdump_fallback_options === 'string';
}

const STRING_KEYS = [
  ['TransferSyntaxUID', 'transferSyntaxUid'],
  ['SOPClassUID', 'sopClassUid'],
  ['Modality', 'modality'],
  ['PhotometricInterpretation', 'photometricInterpretation'],
] as const;

const NUMBER_KEYS = [
  ['Rows', 'rows'],
  ['Columns', 'columns'],
  ['NumberOfFrames', 'numberOfFrames'],
  ['BitsAllocated', 'bitsAllocated'],
  ['BitsStored', 'bitsStored'],
  ['PixelRepresentation', 'pixelRepresentation'],
  ['SamplesPerPixel', 'samplesPerPixel'],
  ['PlanarConfiguration', 'planarConfiguration'],
  ['RescaleSlope', 'rescaleSlope'],
  ['RescaleIntercept', 'rescaleIntercept'],
  ['TotalPixelMatrixColumns', 'totalPixelMatrixColumns'],
  ['TotalPixelMatrixRows', 'totalPixelMatrixRows'],
] as const;

/** The fields of the truth entry we also report, in our form. dcmdump prints values as text: IS and DS are
 * compared by their leading number (DCMTK reads NumberOfFrames "1A" as 1 too). */
function expectedFields(t: TruthEntry): { expected: Record<string, unknown>; keys: string[] } {
  const expected: Record<string, unknown> = {};
  for (const [truthKey, ourKey] of STRING_KEYS) {
    if (typeof t[truthKey] === 'string') expected[ourKey] = t[truthKey];
  }
  for (const [truthKey, ourKey] of NUMBER_KEYS) {
    if (typeof t[truthKey] === 'string') expected[ourKey] = Number.parseFloat(t[truthKey] as string);
  }
  return { expected, keys: Object.keys(expected) };
}

function pick(instance: DicomInstance, keys: string[]): Record<string, unknown> {
  return Object.fromEntries(keys.map((k) => [k, (instance as unknown as Record<string, unknown>)[k]]));
}

function parseOrError(rel: string): DicomInstance | unknown {
  try {
    return parseDicom(readFileSync(corpusPath(rel)));
  } catch (err) {
    return err;
  }
}

const tally = { parsed: 0, rendered: 0, refused: new Map<string, number>() };

describe.runIf(hasCorpus)('DICOM corpus conformance', () => {
  afterAll(() => {
    const refused = [...tally.refused].map(([code, n]) => `${n} ${code}`).join(', ');
    console.info(
      `DICOM corpus: ${tally.parsed}/${entries.length} parsed, ${tally.rendered} rendered (${refused})`,
    );
  });

  test('the corpus has DICOM entries', () => {
    expect(entries.length).toBeGreaterThan(50);
  });

  test.each(entries)('%s: header as dcmdump reads it', (rel, t) => {
    const result = parseOrError(rel);
    if (!dcmdumpReads(t)) {
      expect(isAppError(result), String(result)).toBe(true);
      expect(['CORRUPT_FILE', 'UNSUPPORTED_FORMAT']).toContain((result as AppError).code);
      return;
    }
    expect(
      isAppError(result) ? `${(result as AppError).code}: ${(result as AppError).message}` : 'parsed',
    ).toBe('parsed');
    const instance = result as DicomInstance;
    const { expected, keys } = expectedFields(t);
    expect(pick(instance, keys)).toEqual(expected);
    if (Array.isArray(t.WaveformMultiplexGroups)) expect(instance.isWaveform).toBe(true);
    tally.parsed++;
  });

  test.each(entries)('%s: renders when DCMTK does, else a stable AppError', async (rel, t) => {
    const parsed = parseOrError(rel);
    let outcome: { data: Buffer; width: number; height: number; contentType: string } | AppError;
    try {
      if (isAppError(parsed)) throw parsed;
      outcome = await renderDicomFrame(parsed as DicomInstance, { format: 'png' });
    } catch (err) {
      expect(isAppError(err), `raw error: ${String(err)}`).toBe(true);
      outcome = err as AppError;
    }

    const instance = isAppError(parsed) ? undefined : (parsed as DicomInstance);
    const decodable = instance !== undefined && canDecodeTransferSyntax(instance.transferSyntaxUid);
    // dcmj2pnm ran without the forced read mode dcmdump needed, so its failure then says nothing of the pixels.
    const dcmtkVerdictApplies = typeof t.dcmdump_fallback_options !== 'string';
    if (isAppError(outcome)) {
      tally.refused.set(outcome.code, (tally.refused.get(outcome.code) ?? 0) + 1);
      expect(['CORRUPT_FILE', 'UNSUPPORTED_FORMAT']).toContain(outcome.code);
      if (dcmtkVerdictApplies) {
        expect(decodable && t.dcmj2pnm_all_frames_rc === 0, `${outcome.code}: ${outcome.message}`).toBe(
          false,
        );
      }
      return;
    }
    tally.rendered++;
    if (dcmtkVerdictApplies) expect(t.dcmj2pnm_all_frames_rc).toBe(0);
    expect(outcome.contentType).toBe('image/png');
    expect(outcome.data.subarray(0, 8)).toEqual(Buffer.from([137, 80, 78, 71, 13, 10, 26, 10]));
    const meta = await sharp(outcome.data).metadata();
    expect([meta.width, meta.height]).toEqual([outcome.width, outcome.height]);
    const rows = Number(t.Rows);
    const columns = Number(t.Columns);
    const scale = Math.min(1, 256 / Math.max(rows, columns));
    expect(Math.abs(outcome.width - columns * scale)).toBeLessThanOrEqual(1);
    expect(Math.abs(outcome.height - rows * scale)).toBeLessThanOrEqual(1);
  });

  // The same image stored in different encodings must decode to the same samples.
  const sameImage = [
    [
      'dicom/pydicom/MR_small.dcm',
      'dicom/pydicom/MR_small_implicit.dcm',
      'dicom/pydicom/MR_small_bigendian.dcm',
      'dicom/pydicom/MR_small_RLE.dcm',
    ],
    ['dicom/pydicom-data/emri_small.dcm', 'dicom/pydicom-data/emri_small_big_endian.dcm'],
    ['dicom/pydicom-data/color-px.dcm', 'dicom/pydicom-data/color-pl.dcm'],
    [
      'dicom/dicomParser/CT0012.not_fragmented_bot_rle.dcm',
      'dicom/dicomParser/CT0012.not_fragmented_no_bot_rle.dcm',
    ],
    [
      'dicom/dicomParser/CT1_UNC.implicit_little_endian.dcm',
      'dicom/fo-dicom/GH177_D_CLUNIE_CT1_IVRLE_BigEndian_undefined_length.dcm',
    ],
    ['dicom/pydicom/CT_small.dcm', 'dicom/pydicom/no_meta.dcm'],
  ].filter((group) => group.every((rel) => truth[rel] !== undefined));

  test.each(sameImage)('%s decodes like its other encodings', async (first, ...others) => {
    const frames = async (rel: string) => {
      const instance = parseDicom(readFileSync(corpusPath(rel)));
      const out: number[][] = [];
      for (let k = 0; k < instance.numberOfFrames; k++)
        out.push(Array.from((await decodeDicomFrame(instance, k)).pixels));
      return out;
    };
    const reference = await frames(first);
    for (const rel of others) expect(await frames(rel), rel).toEqual(reference);
  });
});
