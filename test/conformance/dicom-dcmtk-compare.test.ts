import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';
import { type AppError, isAppError } from '../../src/errors.js';
import { type DicomInstance, parseDicom } from '../../src/formats/dicom/parse-dicom.js';
import { closeDecodePool } from '../../src/imaging/decode-pool.js';
import { decodeDicomFrame } from '../../src/imaging/render-dicom.js';
import { corpusPath, hasCorpus, loadTruth, noPixelDataEither, repoRoot, type TruthEntry } from '../corpus.js';
import { hasDcmj2pnm, hasDcml2pnm, pearson, toGray } from '../helpers/dcmtk.js';
import { referenceDecode, referenceDecoderRefuses } from '../helpers/reference-decoders.js';
import { MIN_CORRELATION, renderBoth, renderForComparison as renderFile } from '../helpers/render-compare.js';

/**
 * Teleread's renders against DCMTK's, file by file: the middle frame, the same VOI, 256 pixels on the longest
 * side, compared as 8-bit grayscale. Files DCMTK cannot render (JPEG 2000, HTJ2K, float pixel data, segmented
 * palettes, deflated frames) are compared with reference images checked by eye once and kept in
 * test/fixtures/reference/dicom.
 */

const REFERENCE_DIR = path.join(repoRoot, 'test/fixtures/reference/dicom');

const truth = loadTruth();
const dicom = Object.entries(truth).filter(([, t]) => t.kind === 'dicom');

const JPEG_LS = /^1\.2\.840\.10008\.1\.2\.4\.8[01]$/;

/** The DCMTK tool that renders every frame of the file: dcmj2pnm where TRUTH says it did, dcml2pnm for JPEG-LS
 * (which the dcmj2pnm build lacks). */
function dcmtkTool(t: TruthEntry): 'dcmj2pnm' | 'dcml2pnm' | undefined {
  if (t.dcmj2pnm_all_frames_rc === 0) return 'dcmj2pnm';
  if (JPEG_LS.test(String(t.TransferSyntaxUID)) && t.dcmdump_rc === 0) return 'dcml2pnm';
  return undefined;
}

function hasImagePixelModule(t: TruthEntry): boolean {
  return typeof t.Rows === 'string' && typeof t.Columns === 'string';
}

/** The middle frame at 256 px, with the VOI it used in DCMTK's terms. */
function renderForComparison(rel: string) {
  return renderFile(corpusPath(rel));
}

function referencePath(rel: string): string {
  return path.join(REFERENCE_DIR, `${rel.replace(/\//g, '__')}.png`);
}

afterAll(closeDecodePool);

const byDcmtk = dicom.filter(([, t]) => {
  const tool = dcmtkTool(t);
  return tool === 'dcmj2pnm' || (tool === 'dcml2pnm' && hasDcml2pnm);
});

describe.runIf(hasCorpus && hasDcmj2pnm)('DICOM renders against DCMTK', () => {
  test('there are files to compare', () => {
    expect(byDcmtk.length).toBeGreaterThan(50);
  });

  test.each(byDcmtk)(`%s correlates with DCMTK at ≥ ${MIN_CORRELATION}`, async (rel, t) => {
    // DCMTK scales the longer axis to the size we drew and derives the other from the pixel aspect; the two
    // must agree to the pixel.
    const { image, reference } = await renderBoth(corpusPath(rel), { tool: dcmtkTool(t)! });
    expect([reference.width, reference.height]).toEqual([image.width, image.height]);
    expect(pearson(image.data, reference.data)).toBeGreaterThanOrEqual(MIN_CORRELATION);
  });
});

/** The middle frame's samples against OpenJPEG's (JPEG 2000) or OpenJPH's (HTJ2K): equal, give or take one
 * level on a few samples (OpenJPH's colour conversion rounds a handful apart), and modulo 2^BitsStored where a
 * codestream's sign differs from Pixel Representation (pydicom's J2K_pixelrep_mismatch). */
async function expectDecodedLikeReferenceDecoder(instance: DicomInstance): Promise<void> {
  const k = Math.floor(instance.numberOfFrames / 2);
  const frame = await decodeDicomFrame(instance, k);
  const reference = await referenceDecode(instance, k, {
    samplesPerPixel: frame.samplesPerPixel,
    bitsAllocated: frame.bitsAllocated,
    signed: frame.pixelRepresentation === 1,
  });
  expect(
    reference,
    `no stored reference and no reference decoder for ${instance.transferSyntaxUid}`,
  ).toBeDefined();
  expect(reference!.length).toBe(frame.pixels.length);
  const modulus = 2 ** frame.bitsStored;
  let apart = 0;
  let farthest = 0;
  for (let i = 0; i < reference!.length; i++) {
    const d = (((reference![i]! - frame.pixels[i]!) % modulus) + modulus) % modulus;
    const distance = Math.min(d, modulus - d);
    if (distance) apart++;
    if (distance > farthest) farthest = distance;
  }
  expect(farthest).toBeLessThanOrEqual(1);
  expect(apart / reference!.length).toBeLessThan(0.001);
}

const withoutDcmtk = dicom.filter(([, t]) => dcmtkTool(t) === undefined && hasImagePixelModule(t));

describe.runIf(hasCorpus)('DICOM renders DCMTK cannot make, against references checked by eye', () => {
  test('there are files to compare', () => {
    expect(withoutDcmtk.length).toBeGreaterThan(10);
  });

  test.each(withoutDcmtk)('%s matches its reference', async (rel, t) => {
    if (!existsSync(referencePath(rel))) {
      // No reference means nothing can be drawn, for a reason DCMTK or the codec's reference decoder confirms:
      // the pixel data ends before the frame does (DCMTK needed +Ep), there is no pixel data at all, or the
      // JPEG 2000 / HTJ2K codestream is one OpenJPEG or OpenJPH refuses too.
      const error = await renderForComparison(rel).then(
        () => undefined,
        (err: unknown) => err,
      );
      const instance = parseDicom(readFileSync(corpusPath(rel)));
      if (error === undefined) {
        // Drawn, but no reference checked by eye yet (a file never seen): what it decodes to must be what the
        // syntax's reference decoder makes of the same codestream.
        await expectDecodedLikeReferenceDecoder(instance);
        return;
      }
      expect(isAppError(error), String(error)).toBe(true);
      if ((error as AppError).code === 'UNSUPPORTED_FORMAT') {
        expect(noPixelDataEither(t, instance)).toBe(true);
        return;
      }
      expect((error as AppError).code).toBe('CORRUPT_FILE');
      const frame = Math.floor(instance.numberOfFrames / 2);
      if (!String(t.dcmdump_fallback_options).includes('+Ep')) {
        expect(await referenceDecoderRefuses(instance, frame), (error as AppError).message).toBe(true);
      }
      return;
    }
    const ours = await toGray((await renderForComparison(rel)).png);
    const reference = await toGray(readFileSync(referencePath(rel)));
    expect([reference.width, reference.height]).toEqual([ours.width, ours.height]);
    expect(pearson(ours.data, reference.data)).toBeGreaterThanOrEqual(MIN_CORRELATION);
  });
});

/** The JPEG 2000 and HTJ2K files with a stored reference: their decode is also held to the reference decoder's,
 * as a file never seen is (above). */
const wavelet = withoutDcmtk.filter(
  ([rel, t]) =>
    existsSync(referencePath(rel)) &&
    /^1\.2\.840\.10008\.1\.2\.4\.(9[0-3]|20[1-3])$/.test(String(t.TransferSyntaxUID)),
);

describe.runIf(hasCorpus)('JPEG 2000 and HTJ2K decode as OpenJPEG and OpenJPH decode them', () => {
  test('there are files to compare', () => {
    expect(wavelet.length).toBeGreaterThan(5);
  });

  test.each(wavelet)('%s', async (rel) => {
    await expectDecodedLikeReferenceDecoder(parseDicom(readFileSync(corpusPath(rel))));
  });
});
