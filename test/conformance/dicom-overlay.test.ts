import { execFile } from 'node:child_process';
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, test } from 'vitest';
import { parseDicom } from '../../src/formats/dicom/parse-dicom.js';
import { decodeDicomFrame, renderDicomFrame, resolveVoi } from '../../src/imaging/render-dicom.js';
import { corpusPath, hasCorpus } from '../corpus.js';
import { type GrayImage, hasDcmj2pnm, toGray } from '../helpers/dcmtk.js';
import {
  type DicomElement,
  type DicomEncoding,
  type ImageSpec,
  imageElements,
  writeDicom,
} from '../helpers/dicom-writer.js';
import { dicomScratch } from '../helpers/scratch.js';

/**
 * Overlay planes (60xx) drawn as dcmj2pnm draws them by default, compared pixel for pixel at the image's own
 * size (no scaling on either side) with the same window: graphics planes white over the image (after
 * MONOCHROME1's inversion), regions of interest dimming the rest of their rectangle, origins, clipping at the edges, several
 * planes, planes embedded in the pixel data's high bits, multi-frame planes, big endian Overlay Data, and no
 * overlay on colour images.
 */

const run = promisify(execFile);

const scratch = dicomScratch('overlay');

const ROWS = 48;
const COLUMNS = 64;

/** One-bit plane data, least significant bit first, for `frames` frames of rows × columns. */
function planeBits(
  rows: number,
  columns: number,
  set: (x: number, y: number, frame: number) => boolean,
  frames = 1,
): Uint8Array {
  const out = new Uint8Array(Math.ceil((rows * columns * frames) / 8));
  for (let f = 0; f < frames; f++) {
    for (let y = 0; y < rows; y++) {
      for (let x = 0; x < columns; x++) {
        const bit = f * rows * columns + y * columns + x;
        if (set(x, y, f)) out[bit >> 3]! |= 1 << (bit & 7);
      }
    }
  }
  return out;
}

interface PlaneSpec {
  group?: number;
  rows?: number;
  columns?: number;
  type?: 'G' | 'R';
  origin?: [number, number];
  frames?: number;
  imageFrameOrigin?: number;
  /** Overlay Data; absent for a plane embedded in the pixel data at `bitPosition`. */
  data?: Uint8Array;
  bitPosition?: number;
}

function plane(p: PlaneSpec): DicomElement[] {
  const g = (p.group ?? 0x6000) << 16;
  const elements: DicomElement[] = [
    { tag: g | 0x0010, vr: 'US', value: p.rows ?? ROWS },
    { tag: g | 0x0011, vr: 'US', value: p.columns ?? COLUMNS },
    { tag: g | 0x0040, vr: 'CS', value: p.type ?? 'G' },
    { tag: g | 0x0050, vr: 'SS', value: p.origin ?? [1, 1] },
    { tag: g | 0x0100, vr: 'US', value: p.data ? 1 : 16 },
    { tag: g | 0x0102, vr: 'US', value: p.bitPosition ?? 0 },
  ];
  if (p.frames !== undefined) elements.push({ tag: g | 0x0015, vr: 'IS', value: String(p.frames) });
  if (p.imageFrameOrigin !== undefined) {
    elements.push({ tag: g | 0x0051, vr: 'US', value: p.imageFrameOrigin });
  }
  if (p.data) elements.push({ tag: g | 0x3000, vr: 'OW', value: p.data });
  return elements;
}

/** A ramp with a step, in 8 bits (or 12 bits stored in 16), frame k brighter than frame k − 1. */
function ramp(frames: number, sixteen = false, samples = 1): Uint8Array | Uint16Array {
  const values = Array.from({ length: ROWS * COLUMNS * samples * frames }, (_, i) => {
    const pixel = Math.floor(i / samples) % (ROWS * COLUMNS);
    const frame = Math.floor(i / (samples * ROWS * COLUMNS));
    const x = pixel % COLUMNS;
    const y = Math.floor(pixel / COLUMNS);
    return 20 + x * 2 + (y > ROWS / 2 ? 40 : 0) + frame * 10;
  });
  return sixteen ? Uint16Array.from(values, (v) => v * 16) : Uint8Array.from(values);
}

/** An 8-bit ramp image of ROWS × COLUMNS, with `spec` on top. */
function image(spec: Partial<ImageSpec> = {}): DicomElement[] {
  return imageElements({ rows: ROWS, columns: COLUMNS, bitsAllocated: 8, pixelData: ramp(1), ...spec });
}

const diagonal = planeBits(ROWS, COLUMNS, (x, y) => Math.abs(x - y) <= 1);
const box = planeBits(20, 30, (x, y) => x === 0 || y === 0 || x === 29 || y === 19);

interface Case {
  name: string;
  elements: DicomElement[];
  frames: number;
  encoding?: DicomEncoding;
}

const CASES: Case[] = [
  {
    name: 'graphics plane on MONOCHROME2',
    elements: image(),
    frames: 1,
  },
  {
    name: 'region of interest',
    elements: image({
      extra: plane({
        type: 'R',
        rows: 20,
        columns: 30,
        origin: [10, 12],
        data: planeBits(20, 30, (x, y) => x >= 5 && x < 25 && y >= 5 && y < 15),
      }),
    }),
    frames: 1,
  },
  {
    name: 'graphics plane on MONOCHROME1',
    elements: image({
      photometricInterpretation: 'MONOCHROME1',
    }),
    frames: 1,
  },
  {
    name: 'origin inside, and a plane running off the bottom right',
    elements: image({
      extra: [
        ...plane({ rows: 20, columns: 30, origin: [5, 7], data: box }),
        ...plane({ group: 0x6002, rows: 20, columns: 30, origin: [40, 50], data: box }),
      ],
    }),
    frames: 1,
  },
  {
    name: 'plane embedded in bit 13 of 12-bit pixels',
    elements: image({
      bitsAllocated: 16,
      bitsStored: 12,
      pixelData: (() => {
        const words = ramp(1, true) as Uint16Array;
        for (let y = 0; y < ROWS; y++) words[y * COLUMNS + y]! |= 1 << 13;
        return words;
      })(),
      extra: plane({ bitPosition: 13 }),
    }),
    frames: 1,
  },
  {
    name: 'one-frame plane over every frame of three',
    elements: image({
      numberOfFrames: 3,
      pixelData: ramp(3),
    }),
    frames: 3,
  },
  {
    name: 'two-frame plane from image frame 2 of three',
    elements: image({
      numberOfFrames: 3,
      pixelData: ramp(3),
      extra: plane({
        frames: 2,
        imageFrameOrigin: 2,
        data: planeBits(ROWS, COLUMNS, (x, y, f) => (f === 0 ? x === 10 : y === 30), 2),
      }),
    }),
    frames: 3,
  },
  {
    name: 'explicit big endian, odd-sized plane',
    elements: image({
      bitsAllocated: 16,
      bitsStored: 12,
      pixelData: ramp(1, true),
      extra: plane({
        rows: 13,
        columns: 11,
        origin: [3, 4],
        data: planeBits(13, 11, (x, y) => (x + y) % 3 === 0),
      }),
    }),
    frames: 1,
    encoding: 'explicit-be',
  },
];
// The plain graphics plane rides on the cases that do not bring their own.
for (const c of CASES) {
  if (!c.elements.some((e) => e.tag >>> 16 >= 0x6000 && e.tag >>> 16 <= 0x601e)) {
    c.elements.push(...plane({ data: diagonal }));
  }
}

const WINDOW = { center: 1000, width: 2000 };

async function dcmtkFrame(
  file: string,
  frame: number,
  window?: typeof WINDOW,
  width?: number,
): Promise<GrayImage> {
  const out = scratch.file(path.basename(file), '.dcmtk');
  const voi = window ? ['+Ww', String(window.center), String(window.width)] : [];
  const scale = width ? ['+Sxv', String(width)] : [];
  await run('dcmj2pnm', ['-q', '+Fa', ...voi, ...scale, '+on', file, out]);
  return toGray(await readFile(`${out}.${frame}.png`));
}

/** Every frame drawn by both, at the image's own size or, with `size`, shrunk to that many columns. */
async function expectSameAsDcmtk(
  file: string,
  frames: number,
  window?: typeof WINDOW,
  size?: number,
): Promise<void> {
  const instance = parseDicom(await readFile(file));
  for (let frame = 0; frame < frames; frame++) {
    const ours = await toGray(
      (await renderDicomFrame(instance, { frame, size: size ?? 4096, ...(window ? { window } : {}) })).data,
    );
    const reference = await dcmtkFrame(file, frame, window, size);
    expect([ours.width, ours.height]).toEqual([reference.width, reference.height]);
    let worst = 0;
    for (let i = 0; i < ours.data.length; i++)
      worst = Math.max(worst, Math.abs(ours.data[i]! - reference.data[i]!));
    expect(worst, `frame ${frame + 1}`).toBeLessThanOrEqual(1);
  }
}

describe.runIf(hasDcmj2pnm)('overlay planes, against dcmj2pnm pixel for pixel', () => {
  test.each(CASES.map((c) => [c.name, c] as const))('%s', async (name, c) => {
    const file = scratch.file(name, '.dcm');
    await writeFile(file, writeDicom(c.elements, { encoding: c.encoding ?? 'explicit-le' }));
    // 8-bit cases in their own values; 12-bit ones through one window on both sides.
    const twelve = c.elements.some((e) => e.tag === 0x00280100 && e.value === 16);
    await expectSameAsDcmtk(file, c.frames, twelve ? WINDOW : { center: 127.5, width: 256 });
  });

  // Shrunk 64 → 41 columns (48 → 30 rows): the planes are scaled one bit deep, rows and columns dropped where
  // DCMTK drops them, origins and sizes scaled and truncated.
  test.each(CASES.map((c) => [c.name, c] as const))('%s, shrunk to 41 columns', async (name, c) => {
    const file = scratch.file(name, '-41.dcm');
    await writeFile(file, writeDicom(c.elements, { encoding: c.encoding ?? 'explicit-le' }));
    const twelve = c.elements.some((e) => e.tag === 0x00280100 && e.value === 16);
    await expectSameAsDcmtk(file, c.frames, twelve ? WINDOW : { center: 127.5, width: 256 }, 41);
  });

  test('a colour image gets no overlay, and overlays: false leaves a grayscale one bare', async () => {
    const rgb = parseDicom(
      writeDicom(
        image({
          samplesPerPixel: 3,
          pixelData: ramp(1, false, 3),
          extra: plane({ data: diagonal }),
        }),
      ),
    );
    const bare = parseDicom(
      writeDicom(
        image({
          extra: plane({ data: planeBits(ROWS, COLUMNS, () => false) }),
        }),
      ),
    );
    const withPlane = parseDicom(
      writeDicom(
        image({
          extra: plane({ data: diagonal }),
        }),
      ),
    );
    const render = async (instance: typeof rgb, overlays?: boolean) =>
      (
        await toGray(
          (
            await renderDicomFrame(instance, { size: 4096, ...(overlays === false ? { overlays } : {}) })
          ).data,
        )
      ).data;
    // The diagonal stays the ramp's colour on the RGB image.
    const colour = await render(rgb);
    expect(colour[5 * COLUMNS + 5]).toBeLessThan(200);
    expect(Array.from(await render(withPlane, false))).toEqual(Array.from(await render(bare)));
    expect((await render(withPlane))[5 * COLUMNS + 5]).toBe(255);
  });

  test.runIf(hasCorpus)('pydicom examples_overlay.dcm (Siemens graphics) at its own size', async () => {
    const file = corpusPath('dicom/pydicom/examples_overlay.dcm');
    // The window Teleread chooses for it (the file has none), given to both sides.
    const instance = parseDicom(await readFile(file));
    const voi = resolveVoi(await decodeDicomFrame(instance, 0), instance);
    expect(voi.kind).toBe('window');
    if (voi.kind === 'window') await expectSameAsDcmtk(file, 1, { center: voi.center, width: voi.width });
  });
});
