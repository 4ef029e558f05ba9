import { writeFile } from 'node:fs/promises';
import { describe, expect, test } from 'vitest';
import { parseDicom } from '../../src/formats/dicom/parse-dicom.js';
import { renderDicomFrame } from '../../src/imaging/render-dicom.js';
import { hasDcmj2pnm, renderWithDcmtk, toGray } from '../helpers/dcmtk.js';
import { type ImageSpec, imageElements, writeDicom } from '../helpers/dicom-writer.js';
import { dicomScratch } from '../helpers/scratch.js';

/**
 * Thumbnails shrink as dcmj2pnm shrinks by default (resample-area.ts): modality values averaged before the
 * window, with pbmplus's whole 1/4096ths per input pixel (so the outputs drift from the exact area across a
 * row), rows before columns, whole-number modality values rounded after each pass, and the window's fraction
 * cut off. Each case is drawn at 256 px by both and must match pixel for pixel. The sizes are not whole
 * multiples of 256, where the two algorithms part; the pattern is fine enough that the drift shows.
 */

const scratch = dicomScratch('scaling');

/** A deterministic pattern of `levels` values with detail at every scale. */
function pattern(rows: number, columns: number, levels: number, channels = 1): number[] {
  const out: number[] = [];
  for (let y = 0; y < rows; y++) {
    for (let x = 0; x < columns; x++) {
      for (let c = 0; c < channels; c++) {
        const v = (x * 7 + y * 13 + c * 50 + ((x * y) >> 6) + (((x >> 3) ^ (y >> 3)) & 7) * 97) % levels;
        out.push(v);
      }
    }
  }
  return out;
}

/** Blobs of 0 and 1, as a segmentation is. */
function blobs(rows: number, columns: number): number[] {
  const out: number[] = [];
  for (let y = 0; y < rows; y++) {
    for (let x = 0; x < columns; x++) {
      const a = (x - columns / 3) ** 2 + (y - rows / 2) ** 2 < (rows / 4) ** 2;
      const b = Math.abs(x - (2 * columns) / 3) + Math.abs(y - rows / 3) < rows / 5;
      out.push(a || b || (x * 31 + y * 17) % 97 === 0 ? 1 : 0);
    }
  }
  return out;
}

/** Packs 0/1 samples into bytes, least significant bit first, as 1-bit Pixel Data is stored. */
function packBits(bits: number[]): Uint8Array {
  const out = new Uint8Array(Math.ceil(bits.length / 8));
  bits.forEach((b, i) => {
    if (b) out[i >> 3]! |= 1 << (i & 7);
  });
  return out;
}

interface Case {
  name: string;
  spec: ImageSpec;
  window?: { center: number; width: number };
  extra?: Array<{ tag: number; vr: string; value: string }>;
}

const CASES: Case[] = [
  {
    name: '12-bit 3064 × 2000 (pbmplus, rounded): the outputs drift from the exact area across the row',
    spec: {
      rows: 2000,
      columns: 3064,
      bitsAllocated: 16,
      bitsStored: 12,
      pixelData: Uint16Array.from(pattern(2000, 3064, 4096)),
    },
    window: { center: 2047, width: 4095 },
  },
  {
    name: '1-bit 700 × 530 segmentation (pbmplus, rounded): two levels in, two levels out',
    spec: { rows: 530, columns: 700, bitsAllocated: 1, bitsStored: 1, pixelData: packBits(blobs(530, 700)) },
    window: { center: 1, width: 2 },
  },
  {
    name: 'RGB 8-bit 900 × 610 (pbmplus, rounded per pass)',
    spec: {
      rows: 610,
      columns: 900,
      bitsAllocated: 8,
      samplesPerPixel: 3,
      pixelData: Uint8Array.from(pattern(610, 900, 256, 3)),
    },
  },
  {
    name: '16-bit signed with intercept -1024, 1000 × 700 (pbmplus, rounded as HU)',
    spec: {
      rows: 700,
      columns: 1000,
      bitsAllocated: 16,
      pixelRepresentation: 1,
      pixelData: Int16Array.from(pattern(700, 1000, 3000), (v) => v - 1000),
      extra: [
        { tag: 0x00281052, vr: 'DS', value: '-1024' },
        { tag: 0x00281053, vr: 'DS', value: '1' },
      ],
    },
    window: { center: -500, width: 2000 },
  },
];

describe.runIf(hasDcmj2pnm)('shrinking as dcmj2pnm does', () => {
  test.each(CASES)('$name', async ({ name, spec, window }) => {
    const file = scratch.file(name, '.dcm');
    const bytes = writeDicom(imageElements(spec));
    await writeFile(file, bytes);
    const image = await renderDicomFrame(parseDicom(bytes), { size: 256, ...(window ? { window } : {}) });
    const ours = await toGray(image.data);
    const reference = await renderWithDcmtk(file, {
      tool: 'dcmj2pnm',
      frame: 0,
      voi: window ? { window } : 'none',
      width: ours.width,
      height: ours.height,
    });
    expect([reference.width, reference.height]).toEqual([ours.width, ours.height]);
    // Pixel for pixel. The exact area, on these patterns, was up to 187 levels off.
    let differing = 0;
    for (let i = 0; i < ours.data.length; i++) if (ours.data[i] !== reference.data[i]) differing++;
    expect(differing).toBe(0);
  });
});
