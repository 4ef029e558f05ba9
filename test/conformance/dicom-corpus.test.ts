import { readFileSync } from 'node:fs';
import sharp from 'sharp';
import { afterAll, describe, expect, test } from 'vitest';
import { type AppError, isAppError } from '../../src/errors.js';
import { dicomJson } from '../../src/formats/dicom/attributes.js';
import { type DicomInstance, parseDicom } from '../../src/formats/dicom/parse-dicom.js';
import { readPixelAspect } from '../../src/formats/dicom/pixel-data.js';
import { closeDecodePool } from '../../src/imaging/decode-pool.js';
import { decodeDicomFrame, displaySize, renderDicomFrame } from '../../src/imaging/render-dicom.js';
import { corpusPath, hasCorpus, loadTruth, noPixelDataEither, type TruthEntry } from '../corpus.js';
import { referenceDecoderRefuses } from '../helpers/reference-decoders.js';

/**
 * Every DICOM file of the shared corpus against what DCMTK (dcmdump, dcmj2pnm) recorded in TRUTH.json.
 */

const truth = loadTruth();
const entries = Object.entries(truth).filter(([, t]) => t.kind === 'dicom');

/** dcmdump found an Image Pixel module. */
function hasImagePixelModule(t: TruthEntry): boolean {
  return typeof t.Rows === 'string' && typeof t.Columns === 'string';
}

/** Why a file may fail to render, from what DCMTK recorded: nothing to draw, or pixel data that ends early
 * (dcmdump needed +Ep to read past it). Undefined means it must render. */
function refusalReason(t: TruthEntry): string | undefined {
  if (!hasImagePixelModule(t)) return 'no image pixel module';
  if (typeof t.dcmdump_fallback_options === 'string' && t.dcmdump_fallback_options.includes('+Ep')) {
    return 'pixel data cut short';
  }
  if (/^1\.2\.840\.10008\.1\.2\.4\.10[0-8]$/.test(String(t.TransferSyntaxUID))) return 'video';
  return undefined;
}

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
  afterAll(async () => {
    await closeDecodePool();
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

  // WADO-RS metadata's DICOM JSON (dicomJson) holds the same values dcmdump read, under the tags' keys.
  const JSON_TAGS: Record<string, string> = {
    SOPClassUID: '00080016',
    Modality: '00080060',
    PhotometricInterpretation: '00280004',
    SamplesPerPixel: '00280002',
    PlanarConfiguration: '00280006',
    NumberOfFrames: '00280008',
    Rows: '00280010',
    Columns: '00280011',
    BitsAllocated: '00280100',
    BitsStored: '00280101',
    PixelRepresentation: '00280103',
    RescaleIntercept: '00281052',
    RescaleSlope: '00281053',
  };
  test.each(entries)('%s: DICOM JSON as dcmdump reads it', (rel, t) => {
    const result = parseOrError(rel);
    if (isAppError(result)) return; // judged by the header test above
    const json = dicomJson(result as DicomInstance);
    expect(() => JSON.stringify(json)).not.toThrow();
    for (const [keyword, tag] of Object.entries(JSON_TAGS)) {
      const expected = t[keyword];
      if (typeof expected !== 'string') continue;
      const value = json[tag]?.Value?.[0];
      if (typeof value === 'number') expect(value, keyword).toBeCloseTo(Number(expected), 9);
      else expect(value, keyword).toBe(expected);
    }
  });

  test.each(entries)('%s: renders, or a stable AppError the file justifies', async (rel, t) => {
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
    if (isAppError(outcome)) {
      tally.refused.set(outcome.code, (tally.refused.get(outcome.code) ?? 0) + 1);
      expect(['CORRUPT_FILE', 'UNSUPPORTED_FORMAT']).toContain(outcome.code);
      // An Image Pixel module without Pixel Data (pydicom's character set samples): nothing to draw, as DCMTK
      // found too.
      const noPixelData = instance !== undefined && noPixelDataEither(t, instance);
      // A JPEG 2000 or HTJ2K codestream DCMTK cannot judge: OpenJPEG or OpenJPH must refuse it too.
      const badCodestream =
        outcome.code === 'CORRUPT_FILE' &&
        instance !== undefined &&
        (await referenceDecoderRefuses(instance, Math.floor(instance.numberOfFrames / 2)));
      expect(
        refusalReason(t) ?? (noPixelData || badCodestream || undefined),
        `${outcome.code}: ${outcome.message}`,
      ).toBeDefined();
      if (refusalReason(t) === 'pixel data cut short') expect(outcome.code).toBe('CORRUPT_FILE');
      return;
    }
    tally.rendered++;
    // What Teleread draws, DCMTK read an image in, unless DCMTK read only part of the file: a data set that is
    // implicit VR under an explicit VR transfer syntax reads whole here, to DCMTK only with +Ep and no further
    // than the file meta.
    expect(hasImagePixelModule(t) || t.dcmdump_fallback_options === '+Ep').toBe(true);
    expect(outcome.contentType).toBe('image/png');
    expect(outcome.data.subarray(0, 8)).toEqual(Buffer.from([137, 80, 78, 71, 13, 10, 26, 10]));
    const meta = await sharp(outcome.data).metadata();
    expect([meta.width, meta.height]).toEqual([outcome.width, outcome.height]);
    // DCMTK's rows and columns where it read them, else (the partial read above) the parsed ones.
    const rows = hasImagePixelModule(t) ? Number(t.Rows) : instance!.rows!;
    const columns = hasImagePixelModule(t) ? Number(t.Columns) : instance!.columns!;
    const expected = displaySize(rows, columns, readPixelAspect(instance!), 256);
    expect([outcome.width, outcome.height]).toEqual([expected.width, expected.height]);
  });

  // DCMTK decoded every frame (or would have, for the syntaxes its build lacks): so must we, which checks the
  // frame boundaries of fragmented pixel data with and without an offset table.
  const wholeImages = entries.filter(([, t]) => hasImagePixelModule(t) && t.dcmdump_rc === 0);
  test.each(wholeImages)('%s: every frame decodes', async (rel, t) => {
    const instance = parseDicom(readFileSync(corpusPath(rel)));
    if (noPixelDataEither(t, instance)) {
      await expect(decodeDicomFrame(instance, 0)).rejects.toMatchObject({ code: 'UNSUPPORTED_FORMAT' });
      return;
    }
    const frames = instance.numberOfFrames;
    expect(frames).toBe(
      typeof t.NumberOfFrames === 'string' ? Number.parseInt(t.NumberOfFrames, 10) || 1 : 1,
    );
    for (let k = 0; k < frames; k++) {
      const frame = await decodeDicomFrame(instance, k).catch(async (err: unknown) => {
        // Refused only where the syntax's reference decoder refuses the same codestream.
        if (isAppError(err) && err.code === 'CORRUPT_FILE' && (await referenceDecoderRefuses(instance, k))) {
          return undefined;
        }
        throw err;
      });
      if (!frame) continue;
      expect(frame.rows * frame.columns * frame.samplesPerPixel, `frame ${k + 1}`).toBe(frame.pixels.length);
    }
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
    // Lossless compression must give back the samples exactly.
    [
      'dicom/pydicom/MR_small.dcm',
      'dicom/pydicom/MR_small_jp2klossless.dcm',
      'dicom/pydicom/MR_small_jpeg_ls_lossless.dcm',
    ],
    [
      'dicom/dicomParser/CT1_UNC.implicit_little_endian.dcm',
      'dicom/dicomParser/CT1_UNC.fragmented_bot_jpeg_ls.80.dcm',
      'dicom/nema-wg04/CT1_JPLL',
    ],
    [
      'dicom/dicomParser/CT0012.not_fragmented_bot_rle.dcm',
      'dicom/dicomParser/CT0012.fragmented_no_bot_jpeg_lossless.70.dcm',
      'dicom/dicomParser/CT0012.fragmented_no_bot_jpeg_ls.80.dcm',
    ],
    ['dicom/nema-wg04/US1_RLE', 'dicom/pydicom-data/US1_J2KR.dcm'],
    ['wsi/dicom-wsi/sm_image.dcm', 'wsi/dicom-wsi/sm_image_jpegls.dcm'],
    ['dicom/pydicom-data/emri_small.dcm', 'dicom/pydicom-data/emri_small_jpeg_2k_lossless_too_short.dcm'],
    // The first frame of the deflated-frames file is the single frame of the other.
    ['dicom/pydicom/liver_1frame.dcm', 'dicom/pydicom-data/liver_deflate.dcm'],
  ].filter((group) => group.every((rel) => truth[rel] !== undefined));

  test.each(sameImage)('%s decodes like its other encodings', async (first, ...others) => {
    const frames = async (rel: string, count?: number) => {
      const instance = parseDicom(readFileSync(corpusPath(rel)));
      const out: number[][] = [];
      for (let k = 0; k < Math.min(count ?? instance.numberOfFrames, instance.numberOfFrames); k++)
        out.push(Array.from((await decodeDicomFrame(instance, k)).pixels));
      return out;
    };
    const reference = await frames(first);
    for (const rel of others) expect(await frames(rel, reference.length), rel).toEqual(reference);
  });
});
