import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { DicomInstance } from '../src/formats/dicom/parse-dicom.js';
import { hasAnyPixelData } from '../src/formats/dicom/pixel-data.js';

/** Repository root, found from this file's location so tests run from any working directory. */
export const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

/** The shared conformance corpus (read-only). CI has it beside the clone; TELEREAD_CORPUS overrides. */
export const corpusDir = process.env.TELEREAD_CORPUS ?? path.resolve(repoRoot, '../shared/corpus');
export const hasCorpus = existsSync(path.join(corpusDir, 'TRUTH.json'));

export type TruthEntry = Record<string, unknown> & { kind?: string };

export function loadTruth(): Record<string, TruthEntry> {
  if (!hasCorpus) return {};
  return JSON.parse(readFileSync(path.join(corpusDir, 'TRUTH.json'), 'utf8')) as Record<string, TruthEntry>;
}

export function corpusPath(rel: string): string {
  return path.join(corpusDir, rel);
}

/** The Image Pixel module without any pixel data: Teleread finds none, and neither did dcmj2pnm when the truth
 * was made (pydicom's character set samples). Nothing to draw or decode. */
export function noPixelDataEither(t: TruthEntry, instance: DicomInstance): boolean {
  return !hasAnyPixelData(instance) && /no pixel data found/.test(String(t.dcmj2pnm_error));
}
