import { execFile } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { promisify } from 'node:util';
import { describe, expect, test } from 'vitest';
import { parseDicom } from '../../src/formats/dicom/parse-dicom.js';
import { getFrame } from '../../src/formats/dicom/pixel-data.js';
import { corpusPath, hasCorpus } from '../corpus.js';
import { hasDcmj2pnm } from '../helpers/dcmtk.js';
import { type DicomElement, type ImageSpec, imageElements, writeDicom } from '../helpers/dicom-writer.js';
import { expectRendersLike, renderBoth } from '../helpers/render-compare.js';
import { dicomScratch } from '../helpers/scratch.js';

/**
 * Explicit VR big endian as DCMTK writes it (dcmconv +tb). OW is a stream of 16-bit words, so big endian swaps
 * the bytes of each word whatever BitsAllocated says: a 32-bit sample is two words, the less significant first,
 * and 8-bit samples in OW come in swapped pairs whose words run across frame boundaries and into the padding
 * byte of an odd-length value. Every frame must give back the little endian source's samples, and render like
 * dcmj2pnm's render of the big endian file. Found by transcoding the corpus: 32-bit RT dose came out scrambled
 * and the last sample of an odd-sized 8-bit RGB image was lost.
 */

const run = promisify(execFile);

const scratch = dicomScratch('big-endian');

/** A smooth pattern with an edge, spanning `low`…`high`, for `count` samples of an image `columns` wide. */
function pattern(
  count: number,
  columns: number,
  samplesPerPixel: number,
  low: number,
  high: number,
): number[] {
  return Array.from({ length: count }, (_, i) => {
    const pixel = Math.floor(i / samplesPerPixel);
    const x = pixel % columns;
    const y = Math.floor(pixel / columns);
    const t = ((x * 5 + y * 3 + (i % samplesPerPixel) * 7) % 32) / 31;
    return Math.round(low + t * (high - low));
  });
}

interface Source {
  name: string;
  spec: Omit<ImageSpec, 'pixelData'>;
  pixels: (count: number) => ArrayLike<number> & { length: number };
  /** Pixel Data as OW although the samples are 8 bits (as some writers store them). */
  ow8?: boolean;
}

const SOURCES: Source[] = [
  {
    name: 'u32 37×29 (RT dose)',
    spec: { rows: 29, columns: 37, bitsAllocated: 32 },
    pixels: (n) => Uint32Array.from(pattern(n, 37, 1, 700_000, 4_000_000)),
  },
  {
    name: 's32 37×29',
    spec: { rows: 29, columns: 37, bitsAllocated: 32, pixelRepresentation: 1 },
    pixels: (n) => Int32Array.from(pattern(n, 37, 1, -3_000_000, 3_000_000)),
  },
  {
    name: 'u16 37×29 2 frames',
    spec: { rows: 29, columns: 37, bitsAllocated: 16, numberOfFrames: 2 },
    pixels: (n) => Uint16Array.from(pattern(n, 37, 1, 0, 60_000)),
  },
  {
    name: 'u8 3×3 3 frames in OW (odd frames)',
    spec: { rows: 3, columns: 3, bitsAllocated: 8, numberOfFrames: 3 },
    pixels: (n) => Uint8Array.from(pattern(n, 3, 1, 10, 250)),
    ow8: true,
  },
  {
    name: 'RGB u8 3×3 in OW (odd length)',
    spec: { rows: 3, columns: 3, bitsAllocated: 8, samplesPerPixel: 3 },
    pixels: (n) => Uint8Array.from(pattern(n, 3, 3, 10, 250)),
    ow8: true,
  },
  {
    name: 'RGB u8 37×29 2 frames in OW',
    spec: { rows: 29, columns: 37, bitsAllocated: 8, samplesPerPixel: 3, numberOfFrames: 2 },
    pixels: (n) => Uint8Array.from(pattern(n, 37, 3, 0, 255)),
    ow8: true,
  },
];

function sourceBytes(s: Source): Uint8Array {
  const { rows, columns, samplesPerPixel = 1, numberOfFrames = 1 } = s.spec;
  const pixelData = s.pixels(rows * columns * samplesPerPixel * numberOfFrames);
  const value = pixelData as ImageSpec['pixelData'];
  // An `extra` element replaces the one imageElements makes (OB for 8 bits).
  const extra: DicomElement[] = s.ow8 ? [{ tag: 0x7fe00010, vr: 'OW', value: pixelData as Uint8Array }] : [];
  const elements = imageElements({ ...s.spec, pixelData: value, extra });
  return writeDicom(elements, { encoding: 'explicit-le' });
}

/** dcmconv +tb of the file; checks the output is big endian with the Pixel Data VR expected. */
async function toBigEndian(source: string, name: string, pixelVr: 'OB' | 'OW'): Promise<string> {
  const out = scratch.file(name, '.be.dcm');
  await run('dcmconv', ['+tb', source, out]);
  const { stdout } = await run('dcmdump', ['-q', '+P', '0002,0010', '+P', '7fe0,0010', out]);
  expect(stdout).toMatch(/=BigEndianExplicit/);
  expect(stdout).toMatch(new RegExp(`\\(7fe0,0010\\) ${pixelVr} `));
  return out;
}

/** Every frame's samples as the little endian source gives them, and the middle frame rendered like dcmj2pnm. */
async function expectLikeSource(source: string, bigEndian: string): Promise<void> {
  const le = parseDicom(readFileSync(source));
  const be = parseDicom(readFileSync(bigEndian));
  expect(be.transferSyntaxUid).toBe('1.2.840.10008.1.2.2');
  for (let k = 0; k < le.numberOfFrames; k++) {
    expect(Array.from(getFrame(be, k).pixels)).toEqual(Array.from(getFrame(le, k).pixels));
  }
  const { image, reference } = await renderBoth(bigEndian);
  expectRendersLike(expect, image, reference);
}

describe.runIf(hasDcmj2pnm)('explicit VR big endian written by DCMTK', () => {
  test.each(SOURCES.map((s) => [s.name, s] as const))('%s', async (name, s) => {
    const source = scratch.file(name, '.le.dcm');
    writeFileSync(source, sourceBytes(s));
    const wordStream = s.ow8 || s.spec.bitsAllocated > 8;
    await expectLikeSource(source, await toBigEndian(source, name, wordStream ? 'OW' : 'OB'));
  });

  // The corpus files that found the two faults: 32-bit RT dose (15 frames) and an odd-sized 8-bit RGB in OW.
  test.runIf(hasCorpus).each(['dicom/pydicom/rtdose.dcm', 'dicom/pydicom/SC_rgb_small_odd.dcm'])(
    '%s transcoded to big endian',
    async (rel) => {
      await expectLikeSource(corpusPath(rel), await toBigEndian(corpusPath(rel), rel, 'OW'));
    },
  );
});
