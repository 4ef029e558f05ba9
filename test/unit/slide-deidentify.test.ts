import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import sharp from 'sharp';
import { afterAll, describe, expect, test } from 'vitest';
import {
  planSlideDeidentification,
  writeDeidentifiedTiff,
} from '../../src/formats/slide/deidentify-slide.js';
import { describeSlide } from '../../src/formats/slide/describe-slide.js';
import { readTiff, TAG } from '../../src/formats/slide/tiff.js';
import { byteSourceFromBytes } from '../../src/formats/types.js';
import { type WriteIfd, type WriteOptions, writeTiff } from '../helpers/tiff-writer.js';

const tmp = mkdtempSync(path.join(os.tmpdir(), 'teleread-slide-deid-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

const DESCRIPTION =
  'Aperio Image Library v10.0.51\r\n46920x33014 [0,100 46000x32914] (256x256) JPEG/RGB Q=30' +
  '|AppMag = 20|Filename = JOHN-DOE-S123|Date = 12/29/09|Time = 09:59:15|User = jdoe|MPP = 0.4990|Barcode = 4711';

/** Label and macro pixels are filled with values no other page uses, to find them in the copy. */
const LABEL_FILL = 201;
const MACRO_FILL = 202;

function aperio(): WriteIfd[] {
  return [
    {
      width: 512,
      height: 384,
      tile: [128, 128],
      fill: 60,
      description: DESCRIPTION,
      dateTime: '2009:12:29 09:59:15',
      extraTags: [{ tag: TAG.Artist, type: 2, values: 'Dr. Who' }],
    },
    {
      width: 128,
      height: 96,
      fill: 70,
      description:
        'Aperio Image Library v10.0.51\r\n512x384 -> 128x96 - |AppMag = 20|Filename = JOHN-DOE-S123',
    },
    { width: 256, height: 192, tile: [128, 128], fill: 80, description: `${DESCRIPTION}` },
    { width: 40, height: 30, fill: LABEL_FILL, description: 'Aperio Image Library v10.0.51\r\nlabel 40x30' },
    { width: 80, height: 30, fill: MACRO_FILL, description: 'Aperio Image Library v10.0.51\r\nmacro 80x30' },
  ];
}

async function collect(chunks: AsyncIterable<Uint8Array>): Promise<Uint8Array> {
  const parts: Uint8Array[] = [];
  for await (const chunk of chunks) parts.push(chunk);
  return Buffer.concat(parts);
}

async function deidentify(bytes: Uint8Array): Promise<Uint8Array> {
  const source = byteSourceFromBytes(bytes);
  const tiff = await readTiff(source);
  return collect(writeDeidentifiedTiff(source, tiff, planSlideDeidentification(tiff)));
}

function containsRun(bytes: Uint8Array, value: number, length: number): boolean {
  let run = 0;
  for (const b of bytes) {
    run = b === value ? run + 1 : 0;
    if (run >= length) return true;
  }
  return false;
}

describe('planSlideDeidentification', () => {
  test('Aperio: label and macro pages dropped, identifying description fields and tags cleared', async () => {
    const tiff = await readTiff(byteSourceFromBytes(writeTiff(aperio())));
    const plan = planSlideDeidentification(tiff);
    expect(plan.keepPages).toEqual([0, 1, 2]);
    expect(plan.dropPages).toEqual([
      { page: 3, reason: 'label' },
      { page: 4, reason: 'macro' },
    ]);
    const page0 = plan.edits.filter((e) => e.page === 0);
    expect(page0.map((e) => e.tag).sort((a, b) => a - b)).toEqual(
      [TAG.ImageDescription, TAG.DateTime, TAG.Artist].sort((a, b) => a - b),
    );
    const description = page0.find((e) => e.tag === TAG.ImageDescription)?.value;
    expect(description).toContain('AppMag = 20|MPP = 0.4990');
    expect(description).not.toMatch(/JOHN|jdoe|4711|12\/29\/09/);
  });

  test('keepDates keeps scan dates', async () => {
    const tiff = await readTiff(byteSourceFromBytes(writeTiff(aperio())));
    const plan = planSlideDeidentification(tiff, { keepDates: true });
    expect(plan.edits.some((e) => e.tag === TAG.DateTime)).toBe(false);
    expect(plan.edits.find((e) => e.page === 0 && e.tag === TAG.ImageDescription)?.value).toContain(
      'Date = 12/29/09',
    );
  });

  test('NDPI: macro and map directories dropped', async () => {
    const tiff = await readTiff(
      byteSourceFromBytes(
        writeTiff(
          [
            { width: 400, height: 300, ndpi: { lens: 20, propertyMap: 'Barcode=XYZ\r\nProduct=C9600' } },
            { width: 100, height: 75, ndpi: { lens: 20 } },
            { width: 120, height: 40, fill: MACRO_FILL, ndpi: { lens: -1 } },
            { width: 60, height: 20, ndpi: { lens: -2 } },
          ],
          { ndpi: true },
        ),
      ),
    );
    const plan = planSlideDeidentification(tiff);
    expect(plan.keepPages).toEqual([0, 1]);
    expect(plan.dropPages.map((d) => d.reason)).toEqual(['macro', 'map']);
    expect(plan.edits.find((e) => e.page === 0 && e.tag === TAG.NdpiPropertyMap)?.value).toBe(
      'Product=C9600',
    );
  });
});

describe('writeDeidentifiedTiff', () => {
  test.each<{ name: string; opts: WriteOptions }>([
    { name: 'classic little endian', opts: {} },
    { name: 'classic big endian', opts: { bigEndian: true } },
    { name: 'BigTIFF', opts: { bigTiff: true } },
  ])('$name: no label or macro left, every level still decodes', async ({ opts }) => {
    const original = writeTiff(aperio(), opts);
    const copy = await deidentify(original);
    expect(containsRun(original, LABEL_FILL, 100)).toBe(true);
    expect(containsRun(copy, LABEL_FILL, 100)).toBe(false);
    expect(containsRun(copy, MACRO_FILL, 100)).toBe(false);

    const tiff = await readTiff(byteSourceFromBytes(copy));
    expect(tiff.bigTiff).toBe(opts.bigTiff ?? false);
    expect(tiff.littleEndian).toBe(!opts.bigEndian);
    const info = describeSlide(tiff);
    const before = describeSlide(await readTiff(byteSourceFromBytes(original)));
    expect(info.format).toBe('aperio-svs');
    expect(info.levels.map((l) => [l.width, l.height])).toEqual(
      before.levels.map((l) => [l.width, l.height]),
    );
    expect(info.associated.map((a) => a.name)).toEqual(['thumbnail']);
    expect(info.mppX).toBe(before.mppX);
    expect(JSON.stringify(info.properties)).not.toMatch(/JOHN|jdoe|4711|Dr\. Who/);

    const file = path.join(tmp, `copy-${opts.bigTiff ? 'big' : opts.bigEndian ? 'be' : 'le'}.svs`);
    writeFileSync(file, copy);
    for (const [page, fill] of [
      [0, 60],
      [1, 70],
      [2, 80],
    ] as const) {
      const { data } = await sharp(file, { page }).raw().toBuffer({ resolveWithObject: true });
      expect(data.every((v) => v === fill)).toBe(true);
    }
  });

  test('tiles shared by many entries are copied once', async () => {
    const shared = new Uint8Array(64 * 64 * 3).fill(33);
    const original = writeTiff([
      { width: 1024, height: 1024, tile: [64, 64], tileData: shared, shareTileData: true },
    ]);
    const copy = await deidentify(original);
    expect(copy.length).toBeLessThan(shared.length * 2 + 16 * 1024);
    const file = path.join(tmp, 'shared.tif');
    writeFileSync(file, copy);
    expect((await sharp(file).stats()).channels[0]!.mean).toBe(33);
  });
});
