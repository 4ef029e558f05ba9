import { execFile } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import sharp from 'sharp';
import { describe, expect, test } from 'vitest';
import { detectFormat } from '../../src/formats/detect.js';
import { deidentifyDicom } from '../../src/formats/dicom/deidentify.js';
import { type DicomInstance, parseDicom } from '../../src/formats/dicom/parse-dicom.js';
import { getFrame } from '../../src/formats/dicom/pixel-data.js';
import { renderDicomFrame } from '../../src/imaging/render-dicom.js';
import { hasDcmj2pnm } from '../helpers/dcmtk.js';
import { writeDicom } from '../helpers/dicom-writer.js';
import { type Layout, layoutElements, MATRIX_LAYOUTS, pixelData, RGB8 } from '../helpers/pixel-layouts.js';
import { expectRendersLike, renderBoth } from '../helpers/render-compare.js';
import { dicomScratch } from '../helpers/scratch.js';

/**
 * What ACR-NEMA archives hold and DCMTK still reads, over the layouts of the DCMTK transcode matrix: the header
 * must read as dcmdump prints it, and every frame must render like dcmj2pnm's.
 * - Implicit VR big endian: a data set with neither file meta nor VRs, in big endian. DICOM has no transfer
 *   syntax for it; DCMTK reads it with its fallbacks. Pixel Data is OW without VRs, so 8-bit samples come
 *   swapped in 16-bit words. Its de-identified copy is explicit VR big endian and must read and render alike.
 * - Packed 12-bit pixel data (BitsAllocated 12): two samples in three bytes, one little-endian bit stream.
 * - The retired YBR_PARTIAL_422 of old ultrasound: studio-range YCbCr, one chroma pair per two pixels.
 */

const run = promisify(execFile);

const scratch = dicomScratch('acr-nema');

/** Writes the file, checks dcmdump reads the same header as parseDicom, and every frame against dcmj2pnm. */
async function expectReadLikeDcmtk(name: string, bytes: Uint8Array, frames: number): Promise<DicomInstance> {
  const file = scratch.file(name, '.acr');
  await writeFile(file, bytes);
  const { stdout, stderr } = await run('dcmdump', ['-q', '+L', file]);
  expect(stderr).not.toMatch(/^E:/m);
  const dumped = (tag: string) => new RegExp(`^\\(${tag}\\) \\S\\S \\[?([^\\]\\s]+)`, 'm').exec(stdout)?.[1];

  expect(detectFormat(bytes.subarray(0, 4096), path.basename(file))).toBe('dicom');
  const instance = parseDicom(bytes);
  expect({
    rows: instance.rows,
    columns: instance.columns,
    bitsAllocated: instance.bitsAllocated,
    bitsStored: instance.bitsStored,
    samplesPerPixel: instance.samplesPerPixel,
    numberOfFrames: instance.numberOfFrames,
  }).toEqual({
    rows: Number(dumped('0028,0010')),
    columns: Number(dumped('0028,0011')),
    bitsAllocated: Number(dumped('0028,0100')),
    bitsStored: Number(dumped('0028,0101')),
    samplesPerPixel: Number(dumped('0028,0002')),
    numberOfFrames: Number(dumped('0028,0008') ?? 1),
  });
  const intercept = dumped('0028,1052');
  expect(instance.rescaleIntercept).toBe(intercept === undefined ? undefined : Number(intercept));

  for (let frame = 0; frame < frames; frame++) {
    const { image, reference } = await renderBoth(file, { frame });
    expectRendersLike(expect, image, reference);
  }
  return instance;
}

describe.runIf(hasDcmj2pnm)('implicit VR big endian (ACR-NEMA), against dcmdump and dcmj2pnm', () => {
  test.each(MATRIX_LAYOUTS.map((l) => [l.name, l] as const))('%s', async (name, layout) => {
    const bytes = writeDicom(layoutElements(layout, pixelData(layout)), {
      encoding: 'implicit-be',
      meta: false,
      preamble: false,
    });
    const instance = await expectReadLikeDcmtk(name, bytes, layout.frames ?? 1);
    // DCMTK reads it as "Virtual Big Endian Implicit"; no UID exists for that.
    expect(instance.warnings.join('\n')).toMatch(/implicit VR big endian/);
    expect(instance.transferSyntaxUid).toBe('1.2.840.10008.1.2.2');

    // The de-identified copy is explicit VR big endian with the dictionary's VRs: DCMTK must read its header and
    // render it as it renders the source, and every frame must keep its samples.
    const { bytes: copy } = deidentifyDicom(bytes, {
      mapUid: (uid) => `2.25.${uid.length}${uid.split('.').length}`,
      pseudonym: { patientName: 'ANON^ACR', patientId: 'ACR-1' },
      dateShiftDays: -10,
    });
    const deidentified = await expectReadLikeDcmtk(`${name} de-identified`, copy, layout.frames ?? 1);
    expect(deidentified.hasFileMeta).toBe(true);
    expect(deidentified.warnings).toEqual([]);
    for (let frame = 0; frame < (layout.frames ?? 1); frame++) {
      expect(Array.from(getFrame(deidentified, frame).pixels)).toEqual(
        Array.from(getFrame(instance, frame).pixels),
      );
    }
  });
});

/** The matrix's single-sample layouts whose stored bits fit 12 (with room above them, or not). */
const PACKABLE = MATRIX_LAYOUTS.filter(
  (l) => (l.samplesPerPixel ?? 1) === 1 && (l.highBit ?? l.bitsStored - 1) < 12 && !l.bitsAboveHighBit,
);

/** Samples as a little-endian bit stream of 12 bits each, lowest bit first. */
function pack12(samples: ArrayLike<number>): Uint8Array {
  const out = new Uint8Array(Math.ceil((samples.length * 12) / 8) + 1);
  for (let i = 0; i < samples.length; i++) {
    const value = samples[i]! & 0xfff;
    for (let b = 0; b < 12; b++) {
      const bit = i * 12 + b;
      if ((value >> b) & 1) out[bit >> 3]! |= 1 << (bit & 7);
    }
  }
  return out.length % 2 === 0 ? out : out.subarray(0, out.length - 1);
}

describe.runIf(hasDcmj2pnm)(
  'packed 12-bit pixel data (BitsAllocated 12), against dcmdump and dcmj2pnm',
  () => {
    test('the layouts cover unsigned, signed, windowed, rescaled and multi-frame data', () => {
      expect(PACKABLE.map((l) => l.name)).toEqual(
        expect.arrayContaining(['u12 257×31', 's12 75×65', 'u8 80×64 3 frames', 'u12 80×60 rescale']),
      );
    });

    test.each(PACKABLE.map((l) => [l.name, l] as const))('%s', async (name, layout) => {
      const packed: Layout = { ...layout, bitsAllocated: 12 as Layout['bitsAllocated'] };
      const elements = layoutElements(packed, pack12(pixelData(layout)));
      for (const encoding of ['implicit-le', 'explicit-le'] as const) {
        await expectReadLikeDcmtk(
          `${name} packed ${encoding}`,
          writeDicom(elements, { encoding }),
          layout.frames ?? 1,
        );
      }
    });
  },
);

/** RGB samples → YBR_PARTIAL_422 (BT.601 studio range, chroma averaged over each horizontal pair). */
function toYbrPartial422(rgb: ArrayLike<number>, pixelCount: number): Uint8Array {
  const out = new Uint8Array(pixelCount * 2);
  const ybr = (p: number) => {
    const [r, g, b] = [rgb[p * 3]!, rgb[p * 3 + 1]!, rgb[p * 3 + 2]!];
    return [
      16 + (65.481 * r + 128.553 * g + 24.966 * b) / 255,
      128 + (-37.797 * r - 74.203 * g + 112 * b) / 255,
      128 + (112 * r - 93.786 * g - 18.214 * b) / 255,
    ];
  };
  for (let p = 0; p + 1 < pixelCount; p += 2) {
    const [y1, cb1, cr1] = ybr(p);
    const [y2, cb2, cr2] = ybr(p + 1);
    out.set([y1!, y2!, (cb1! + cb2!) / 2, (cr1! + cr2!) / 2].map(Math.round), p * 2);
  }
  return out;
}

describe.runIf(hasDcmj2pnm)('retired YBR_PARTIAL_422 (old ultrasound), against dcmj2pnm', () => {
  test.each([
    ['128×92', 92, 128, 1],
    ['64×48 3 frames', 48, 64, 3],
  ] as const)('%s', async (name, rows, columns, frames) => {
    const layout: Layout = { name: `RGB ${name}`, rows, columns, frames, ...RGB8 };
    const rgb = pixelData(layout);
    const perFrame = rows * columns;
    const ybr = new Uint8Array(perFrame * 2 * frames);
    for (let f = 0; f < frames; f++) {
      ybr.set(
        toYbrPartial422(rgb.subarray(f * perFrame * 3, (f + 1) * perFrame * 3), perFrame),
        f * perFrame * 2,
      );
    }
    const bytes = writeDicom(layoutElements(layout, ybr, 'YBR_PARTIAL_422'));
    const instance = await expectReadLikeDcmtk(`YBR_PARTIAL_422 ${name}`, bytes, frames);
    expect(instance.photometricInterpretation).toBe('YBR_PARTIAL_422');
    // The colours too, not only the luma the DCMTK comparison sees: back to the source RGB within rounding and
    // the chroma shared by each pair of pixels.
    const last = frames - 1;
    const image = await renderDicomFrame(instance, { frame: last, size: columns, format: 'png' });
    const { data } = await sharp(image.data).removeAlpha().raw().toBuffer({ resolveWithObject: true });
    const source = rgb.subarray(last * perFrame * 3, frames * perFrame * 3);
    let error = 0;
    for (let i = 0; i < source.length; i++) error += Math.abs(data[i]! - source[i]!);
    expect(error / source.length).toBeLessThan(4);
  });
});
