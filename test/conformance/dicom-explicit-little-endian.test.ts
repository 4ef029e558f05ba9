import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { isAppError } from '../../src/errors.js';
import { parseDicom } from '../../src/formats/dicom/parse-dicom.js';
import { describePixels, type Frame, hasAnyPixelData } from '../../src/formats/dicom/pixel-data.js';
import { isPart10ExplicitLittleEndian } from '../../src/formats/dicom/transcode.js';
import { closeDecodePool } from '../../src/imaging/decode-pool.js';
import { decodeDicomFrame } from '../../src/imaging/render-dicom.js';
import {
  canTranscodeToExplicitLittleEndian,
  transcodeToExplicitLittleEndian,
} from '../../src/imaging/transcode-dicom.js';
import { corpusPath, hasCorpus, loadTruth } from '../corpus.js';
import { hasDcmj2pnm, onPath, pearson } from '../helpers/dcmtk.js';
import { MIN_CORRELATION, renderBoth } from '../helpers/render-compare.js';

/**
 * Every corpus DICOM file rewritten in Explicit VR Little Endian, as WADO-RS sends it when no transfer syntax is
 * named (src/imaging/transcode-dicom.ts):
 * - the copy is as long as it says, and DCMTK reads it whole as Explicit VR Little Endian;
 * - its frames (first, middle, last) are the samples the original decodes to, exactly, whatever the original's
 *   syntax: compressed, implicit VR, big endian, deflated;
 * - dciodvfy finds no error in the copy that it did not find in the original;
 * - where DCMTK cannot decode the original (JPEG 2000, HTJ2K, JPEG-LS in dcmj2pnm), it can decode the copy, and
 *   its render correlates with Teleread's render of the original at ≥ 0.99: an independent check of those
 *   decoders;
 * - a file that cannot be rewritten gives CORRUPT_FILE or UNSUPPORTED_FORMAT, never anything else.
 */

const run = promisify(execFile);
const truth = loadTruth();
const files = Object.entries(truth)
  .filter(([, t]) => t.kind === 'dicom')
  .map(([rel]) => rel)
  .sort();
const hasTools = onPath('dcmdump') && onPath('dciodvfy');
/** Syntaxes this dcmj2pnm build has no decoder for (the corpus README): the copy is what DCMTK can check. */
const DCMTK_CANNOT_DECODE = /^1\.2\.840\.10008\.1\.2\.4\.(8[01]|9[0-3]|20[123])$/;

let dir: string;
const outcome = { rewritten: 0, refused: 0, crossChecked: 0 };

beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'teleread-ele-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
  await closeDecodePool();
});

async function collect(chunks: AsyncIterable<Uint8Array>): Promise<Buffer> {
  const parts: Uint8Array[] = [];
  for await (const c of chunks) parts.push(c);
  return Buffer.concat(parts);
}

function samples(frame: Frame): Buffer {
  const p = frame.pixels;
  return Buffer.from(p.buffer, p.byteOffset, p.byteLength);
}

/** dciodvfy's error lines, deduplicated. The copy's file meta is written from the data set, so an error in its
 * SOP Class or Instance UID counts as the same error in the data set's. */
async function verifierErrors(file: string): Promise<string[]> {
  const { stdout, stderr } = await run('dciodvfy', [file]).catch(
    (err: { stdout: string; stderr: string }) => err,
  );
  const lines = `${stdout}\n${stderr}`.split('\n').filter((l) => /^Error/.test(l));
  const asDataSet = (l: string) =>
    l
      .replace('(0x0002,0x0003) UI Media Storage SOP Instance UID', '(0x0008,0x0018) UI SOP Instance UID')
      .replace('(0x0002,0x0003) Media Storage SOP Instance UID', '(0x0008,0x0018) SOP Instance UID')
      .replace('(0x0002,0x0002) UI Media Storage SOP Class UID', '(0x0008,0x0016) UI SOP Class UID');
  return [...new Set(lines.map(asDataSet))].sort();
}

/** The errors the copy may have: the original's, and those of DCMTK's own rewrite in Explicit VR Little Endian
 * (dciodvfy cannot look inside a deflated or oddly encoded original, and finds more in the rewrite). */
async function baselineErrors(input: string): Promise<string[]> {
  const errors = await verifierErrors(input);
  const rewritten = path.join(dir, `dcmconv-${path.basename(input)}`);
  const converted = await run('dcmconv', ['+te', input, rewritten]).then(
    () => true,
    () => false,
  );
  if (converted) errors.push(...(await verifierErrors(rewritten)));
  return errors;
}

describe.runIf(hasCorpus && hasTools)('corpus files rewritten as Explicit VR Little Endian', () => {
  test.each(files)('%s', async (rel) => {
    const bytes = readFileSync(corpusPath(rel));
    let original: ReturnType<typeof parseDicom>;
    let copy: Buffer;
    try {
      original = parseDicom(bytes);
      if (!canTranscodeToExplicitLittleEndian(original.transferSyntaxUid)) {
        outcome.refused++;
        return;
      }
      const transcoded = await transcodeToExplicitLittleEndian(bytes, original.transferSyntaxUid);
      copy = await collect(transcoded.chunks);
      expect(copy.length).toBe(transcoded.length);
    } catch (err) {
      expect(isAppError(err), String(err)).toBe(true);
      expect(['CORRUPT_FILE', 'UNSUPPORTED_FORMAT']).toContain((err as { code: string }).code);
      outcome.refused++;
      return;
    }
    outcome.rewritten++;
    if (isPart10ExplicitLittleEndian(bytes)) {
      // Already Explicit VR Little Endian: sent as it is.
      expect(copy.equals(bytes)).toBe(true);
      return;
    }
    const output = path.join(dir, rel.replaceAll('/', '__'));
    await writeFile(output, copy);
    const { stdout } = await run('dcmdump', ['-M', '+L', output]);
    expect(stdout).toContain('(0002,0010) UI =LittleEndianExplicit');

    const back = parseDicom(copy);
    expect(back.transferSyntaxUid).toBe('1.2.840.10008.1.2.1');
    expect(back.sopInstanceUid).toBe(original.sopInstanceUid);
    const description = hasAnyPixelData(original)
      ? (() => {
          try {
            return describePixels(original);
          } catch {
            return undefined; // pixel data without the module that describes it: nothing to decode
          }
        })()
      : undefined;
    if (description) {
      const frames = description.numberOfFrames;
      expect(describePixels(back).numberOfFrames).toBe(frames);
      for (const i of new Set([0, Math.floor(frames / 2), frames - 1])) {
        const before = await decodeDicomFrame(original, i).catch(() => undefined);
        if (!before) continue; // the original's own frame is broken (truncated files); nothing to compare
        const after = await decodeDicomFrame(back, i);
        expect(after.photometricInterpretation).toBe(before.photometricInterpretation);
        expect(samples(after).equals(samples(before)), `frame ${i + 1}`).toBe(true);
      }
    }

    const errorsBefore = await baselineErrors(corpusPath(rel));
    const errorsAfter = await verifierErrors(output);
    expect(errorsAfter.filter((e) => !errorsBefore.includes(e))).toEqual([]);

    if (hasDcmj2pnm && DCMTK_CANNOT_DECODE.test(original.transferSyntaxUid) && description) {
      const both = await renderBoth(corpusPath(rel), { dcmtkFile: output }).catch((err: unknown) => {
        // Teleread's own render of a broken original fails where the decode above did; DCMTK's must not.
        if (isAppError(err)) return undefined;
        throw err;
      });
      if (!both) return;
      const { image, reference } = both;
      expect(pearson(image.data, reference.data)).toBeGreaterThanOrEqual(MIN_CORRELATION);
      outcome.crossChecked++;
    }
  });

  // Runs after the files (tests run in order).
  test('nearly every file is rewritten, and DCMTK checked the JPEG 2000, HTJ2K and JPEG-LS decodes', () => {
    expect(outcome.rewritten + outcome.refused).toBe(files.length);
    expect(outcome.rewritten).toBeGreaterThan(files.length * 0.9);
    expect(outcome.crossChecked).toBeGreaterThan(10);
  });
});
