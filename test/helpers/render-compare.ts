/**
 * Teleread's side of a comparison with DCMTK: one frame rendered at 256 px with the VOI Teleread resolves,
 * and that VOI in DCMTK's terms so that dcmj2pnm/dcml2pnm can be asked for the same one.
 */
import { readFileSync } from 'node:fs';
import type { ExpectStatic } from 'vitest';
import { parseDicom } from '../../src/formats/dicom/parse-dicom.js';
import { decodeDicomFrame, renderDicomFrame, resolveVoi } from '../../src/imaging/render-dicom.js';
import {
  type DcmtkVoi,
  type GrayImage,
  pearson,
  renderWithDcmtk,
  standardDeviation,
  toGray,
} from './dcmtk.js';

export const COMPARISON_SIZE = 256;
/** The bar: Teleread's render and DCMTK's correlate at this or better, as 8-bit grayscale. */
export const MIN_CORRELATION = 0.99;
/** Grey levels of spread every generated reference must have; the matrices' patterns give 45 or more. */
const MIN_REFERENCE_SPREAD = 20;

/** The matrices' render check against a DCMTK reference: the same size, a reference that is not flat (pearson
 * calls two flat images equal, which would make the correlation meaningless), and r ≥ MIN_CORRELATION. Takes
 * the test's own `expect`, as concurrent tests must. */
export function expectRendersLike(expect: ExpectStatic, image: GrayImage, reference: GrayImage): void {
  expect([reference.width, reference.height]).toEqual([image.width, image.height]);
  expect(standardDeviation(reference.data)).toBeGreaterThan(MIN_REFERENCE_SPREAD);
  expect(pearson(image.data, reference.data)).toBeGreaterThanOrEqual(MIN_CORRELATION);
}

/** Renders a frame (by default the middle one) at 256 px and says which VOI it used, in DCMTK's terms. */
export async function renderForComparison(
  file: string,
  frame?: number,
): Promise<{ png: Buffer; voi: DcmtkVoi; frame: number }> {
  const instance = parseDicom(readFileSync(file));
  const frameIndex = frame ?? Math.floor(instance.numberOfFrames / 2);
  const decoded = await decodeDicomFrame(instance, frameIndex);
  const grayscale =
    decoded.samplesPerPixel === 1 && decoded.photometricInterpretation.startsWith('MONOCHROME');
  const choice = grayscale ? resolveVoi(decoded, instance) : undefined;
  const window = choice?.kind === 'window' ? { center: choice.center, width: choice.width } : undefined;
  const image = await renderDicomFrame(instance, {
    frame: frameIndex,
    size: COMPARISON_SIZE,
    ...(window ? { window } : {}),
  });
  const voi: DcmtkVoi = !choice ? 'none' : choice.kind === 'lut' ? { voiLut: 1 } : { window: window! };
  return { png: image.data, voi, frame: frameIndex };
}

/**
 * Teleread's render of `file` (renderForComparison) and DCMTK's render of `dcmtkFile` (the same file unless
 * given: a copy DCMTK can decode) with the same frame, VOI and size, both as 8-bit grayscale.
 */
export async function renderBoth(
  file: string,
  options: { frame?: number; dcmtkFile?: string; tool?: 'dcmj2pnm' | 'dcml2pnm' } = {},
): Promise<{ image: GrayImage; reference: GrayImage; frame: number }> {
  const ours = await renderForComparison(file, options.frame);
  const image = await toGray(ours.png);
  const reference = await renderWithDcmtk(options.dcmtkFile ?? file, {
    tool: options.tool ?? 'dcmj2pnm',
    frame: ours.frame,
    voi: ours.voi,
    width: image.width,
    height: image.height,
  });
  return { image, reference, frame: ours.frame };
}
