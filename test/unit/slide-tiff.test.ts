import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import sharp from 'sharp';
import { afterAll, describe, expect, test } from 'vitest';
import { AppError } from '../../src/errors.js';
import { describeSlide } from '../../src/formats/slide/describe-slide.js';
import {
  expectedSegmentCount,
  readTagBytes,
  readTiff,
  readTileTable,
  TAG,
} from '../../src/formats/slide/tiff.js';
import { byteSourceFromBytes } from '../../src/formats/types.js';
import { sparseSource, type WriteIfd, writeTiff } from '../helpers/tiff-writer.js';

const tmp = mkdtempSync(path.join(os.tmpdir(), 'teleread-slide-tiff-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

async function expectAppError(promise: Promise<unknown>, code: string): Promise<AppError> {
  const err = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(AppError);
  expect((err as AppError).code).toBe(code);
  return err as AppError;
}

const pyramid: WriteIfd[] = [
  {
    width: 300,
    height: 200,
    tile: [64, 64],
    description: 'level zero',
    software: 'teleread test',
    resolution: { x: 40000, y: 40000, unit: 3 },
    dateTime: '2024:01:02 03:04:05',
    subIfds: [{ width: 150, height: 100, tile: [64, 64], newSubfileType: 1 }],
  },
  { width: 75, height: 50, tile: [32, 32], newSubfileType: 1 },
  { width: 40, height: 30, samplesPerPixel: 1 },
];

describe('readTiff', () => {
  test.each([
    { name: 'classic little-endian', opts: {} },
    { name: 'classic big-endian', opts: { bigEndian: true } },
    { name: 'BigTIFF little-endian', opts: { bigTiff: true } },
    { name: 'BigTIFF big-endian', opts: { bigTiff: true, bigEndian: true } },
  ])('$name: directories, tags and SubIFDs', async ({ opts }) => {
    const bytes = writeTiff(pyramid, opts);
    const tiff = await readTiff(byteSourceFromBytes(bytes));
    expect(tiff.bigTiff).toBe(opts.bigTiff ?? false);
    expect(tiff.littleEndian).toBe(!opts.bigEndian);
    expect(tiff.ndpi).toBe(false);
    expect(tiff.ifds.map((i) => [i.width, i.height, i.tileWidth, i.tileHeight, i.rowsPerStrip])).toEqual([
      [300, 200, 64, 64, undefined],
      [75, 50, 32, 32, undefined],
      [40, 30, undefined, undefined, 30],
    ]);
    const [first, second, third] = tiff.ifds;
    expect(first?.imageDescription).toBe('level zero');
    expect(first?.software).toBe('teleread test');
    expect(first?.dateTime).toBe('2024:01:02 03:04:05');
    expect(first?.xResolution).toBeCloseTo(40000);
    expect(first?.resolutionUnit).toBe(3);
    expect(first?.compression).toBe(1);
    expect(first?.compressionName).toBe('none');
    expect(first?.samplesPerPixel).toBe(3);
    expect(first?.bitsPerSample).toBe(8);
    expect(first?.segmentCount).toBe(5 * 4);
    expect(first?.subIfds.map((s) => [s.width, s.height, s.newSubfileType])).toEqual([[150, 100, 1]]);
    expect(second?.newSubfileType).toBe(1);
    expect(third?.samplesPerPixel).toBe(1);
    expect(third?.resolutionUnit).toBe(2);

    const table = await readTileTable(byteSourceFromBytes(bytes), first!);
    expect(table.offsets).toHaveLength(expectedSegmentCount(first!));
    expect([...table.byteCounts].every((n) => n === 64 * 64 * 3)).toBe(true);
    const tile = bytes.subarray(table.offsets[7]!, table.offsets[7]! + table.byteCounts[7]!);
    expect(tile.every((b) => b === 128)).toBe(true);
  });

  test('reads what sharp writes: pages and sizes agree with libvips', async () => {
    const file = path.join(tmp, 'sharp-pyramid.tif');
    await sharp({ create: { width: 3000, height: 2000, channels: 3, background: '#c8a0b4' } })
      .tiff({ tile: true, pyramid: true, compression: 'jpeg', tileWidth: 256, tileHeight: 256 })
      .toFile(file);
    const tiff = await readTiff(byteSourceFromBytes(readFileSync(file)));
    const meta = await sharp(file).metadata();
    expect(tiff.ifds).toHaveLength(meta.pages ?? 0);
    for (const [page, ifd] of tiff.ifds.entries()) {
      const pageMeta = await sharp(file, { page }).metadata();
      expect([ifd.width, ifd.height]).toEqual([pageMeta.width, pageMeta.height]);
      expect(ifd.compressionName).toBe('jpeg');
      expect(ifd.tileWidth).toBe(256);
    }
  });

  test('NDPI past 4 GiB: high offset bits come back from the header and the directory position', async () => {
    const base = 2 ** 32 + 4096;
    const ifds: WriteIfd[] = [
      {
        width: 64,
        height: 48,
        ndpi: { lens: 20, propertyMap: 'Created=2011/05/23\r\nProduct=test' },
        fill: 7,
      },
      { width: 32, height: 24, ndpi: { lens: 5 }, fill: 9 },
      { width: 40, height: 20, ndpi: { lens: -1 } },
    ];
    const source = sparseSource(writeTiff(ifds, { ndpi: true, baseOffset: base }), base);
    const tiff = await readTiff(source);
    expect(tiff.ndpi).toBe(true);
    expect(tiff.ifds.map((i) => [i.width, i.ndpiTags?.sourceLens])).toEqual([
      [64, 20],
      [32, 5],
      [40, -1],
    ]);
    expect(tiff.ifds[0]?.ndpiTags?.propertyMap).toContain('Product=test');
    for (const [index, fill] of [
      [0, 7],
      [1, 9],
    ] as const) {
      const table = await readTileTable(source, tiff.ifds[index]!);
      expect(table.offsets[0]).toBeGreaterThan(2 ** 32);
      const strip = await source.read(table.offsets[0]!, table.byteCounts[0]!);
      expect(strip.every((b) => b === fill)).toBe(true);
    }
  });

  test('NDPI below 4 GiB reads its 8-byte next pointers', async () => {
    const bytes = writeTiff(
      [
        { width: 64, height: 48, ndpi: { lens: 40 } },
        { width: 32, height: 24, ndpi: { lens: 20 } },
      ],
      { ndpi: true },
    );
    const tiff = await readTiff(byteSourceFromBytes(bytes));
    expect(tiff.ndpi).toBe(true);
    expect(tiff.ifds.map((i) => i.width)).toEqual([64, 32]);
  });

  test('maxIfds bounds a long chain and says so', async () => {
    const many: WriteIfd[] = Array.from({ length: 40 }, () => ({ width: 4, height: 4, samplesPerPixel: 1 }));
    const bytes = writeTiff(many);
    const all = await readTiff(byteSourceFromBytes(bytes));
    expect(all.ifds).toHaveLength(40);
    expect(all.chainTruncated).toBe(false);
    const capped = await readTiff(byteSourceFromBytes(bytes), { maxIfds: 10 });
    expect(capped.ifds).toHaveLength(10);
    expect(capped.chainTruncated).toBe(true);
  });

  test('long text values are cut at maxTagBytes', async () => {
    const bytes = writeTiff([{ width: 4, height: 4, description: 'x'.repeat(5000) }]);
    const tiff = await readTiff(byteSourceFromBytes(bytes), { maxTagBytes: 100 });
    expect(tiff.ifds[0]?.imageDescription).toHaveLength(100);
  });

  test('readTagBytes returns raw values and refuses oversized ones', async () => {
    const bytes = writeTiff([
      { width: 4, height: 4, extraTags: [{ tag: TAG.JPEGTables, type: 7, values: [1, 2, 3, 4, 5, 6] }] },
    ]);
    const source = byteSourceFromBytes(bytes);
    const tiff = await readTiff(source);
    expect([...((await readTagBytes(source, tiff.ifds[0]!, TAG.JPEGTables)) ?? [])]).toEqual([
      1, 2, 3, 4, 5, 6,
    ]);
    expect(await readTagBytes(source, tiff.ifds[0]!, 9999)).toBeUndefined();
    await expectAppError(readTagBytes(source, tiff.ifds[0]!, TAG.JPEGTables, 3), 'CORRUPT_FILE');
  });
});

/** Hand-made byte layouts for the header and chain failures the writer cannot produce. */
function classic(le: boolean, firstIfd: number, body: number[] = []): Uint8Array {
  const out = new Uint8Array(8 + body.length);
  const dv = new DataView(out.buffer);
  out.set(le ? [0x49, 0x49] : [0x4d, 0x4d]);
  dv.setUint16(2, 42, le);
  dv.setUint32(4, firstIfd, le);
  out.set(body, 8);
  return out;
}

/** One classic little-endian IFD at offset 8 with the given entries and next pointer. */
function oneIfd(entries: Array<[number, number, number, number]>, next = 0): Uint8Array {
  const bytes = new Uint8Array(8 + 2 + entries.length * 12 + 4);
  const dv = new DataView(bytes.buffer);
  bytes.set([0x49, 0x49, 42, 0, 8, 0, 0, 0]);
  dv.setUint16(8, entries.length, true);
  entries.forEach(([tag, type, count, value], i) => {
    const at = 10 + i * 12;
    dv.setUint16(at, tag, true);
    dv.setUint16(at + 2, type, true);
    dv.setUint32(at + 4, count, true);
    if (type === 3 && count === 1) dv.setUint16(at + 8, value, true);
    else dv.setUint32(at + 8, value, true);
  });
  dv.setUint32(10 + entries.length * 12, next, true);
  return bytes;
}

const sized: Array<[number, number, number, number]> = [
  [256, 3, 1, 16],
  [257, 3, 1, 16],
  [273, 4, 1, 8],
  [279, 4, 1, 8],
];

function bigHeader(offsetSize: number, first: bigint, length = 16): Uint8Array {
  const out = new Uint8Array(16);
  const dv = new DataView(out.buffer);
  out.set([0x49, 0x49]);
  dv.setUint16(2, 43, true);
  dv.setUint16(4, offsetSize, true);
  dv.setBigUint64(8, first, true);
  return out.subarray(0, length);
}

describe('readTiff on malformed input', () => {
  test.each([
    { name: 'empty file', bytes: new Uint8Array(0), code: 'UNSUPPORTED_FORMAT' },
    {
      name: 'PNG signature',
      bytes: new Uint8Array([0x89, 0x50, 0x4e, 0x47, 13, 10, 26, 10]),
      code: 'UNSUPPORTED_FORMAT',
    },
    {
      name: 'TIFF version 41',
      bytes: new Uint8Array([0x49, 0x49, 41, 0, 8, 0, 0, 0]),
      code: 'UNSUPPORTED_FORMAT',
    },
    { name: 'header cut after the magic', bytes: new Uint8Array([0x49, 0x49, 42, 0]), code: 'CORRUPT_FILE' },
    {
      name: 'header cut inside the offset',
      bytes: new Uint8Array([0x4d, 0x4d, 0, 42, 0, 0]),
      code: 'CORRUPT_FILE',
    },
    { name: 'first IFD offset 0', bytes: classic(true, 0, [0, 0]), code: 'CORRUPT_FILE' },
    { name: 'first IFD past the end', bytes: classic(true, 100000, [0, 0]), code: 'CORRUPT_FILE' },
    { name: 'first IFD inside the header', bytes: classic(false, 2, [0, 0, 0, 0]), code: 'CORRUPT_FILE' },
    { name: 'IFD with zero entries', bytes: classic(true, 8, [0, 0, 0, 0, 0, 0]), code: 'CORRUPT_FILE' },
    { name: 'IFD entries run past the end', bytes: classic(true, 8, [200, 0, 1, 1]), code: 'CORRUPT_FILE' },
    { name: 'IFD chain loops to itself', bytes: oneIfd(sized, 8), code: 'CORRUPT_FILE' },
    { name: 'next IFD past the end', bytes: oneIfd(sized, 1 << 30), code: 'CORRUPT_FILE' },
    { name: 'no ImageWidth', bytes: oneIfd(sized.slice(1)), code: 'CORRUPT_FILE' },
    {
      name: 'zero ImageLength',
      bytes: oneIfd([
        [256, 3, 1, 16],
        [257, 3, 1, 0],
      ]),
      code: 'CORRUPT_FILE',
    },
    {
      name: 'zero TileWidth',
      bytes: oneIfd([...sized, [322, 3, 1, 0], [323, 3, 1, 16]]),
      code: 'CORRUPT_FILE',
    },
    {
      name: 'absurd TileOffsets count',
      bytes: oneIfd([...sized, [322, 3, 1, 16], [323, 3, 1, 16], [324, 4, 1e9, 8]]),
      code: 'CORRUPT_FILE',
    },
    {
      name: 'ImageDescription past the end',
      bytes: oneIfd([...sized, [270, 2, 50, 1 << 20]]),
      code: 'CORRUPT_FILE',
    },
    {
      name: 'SubIFD pointing at its parent',
      bytes: oneIfd([...sized, [330, 4, 1, 8]]),
      code: 'CORRUPT_FILE',
    },
    { name: 'BigTIFF header cut short', bytes: bigHeader(8, 16n, 12), code: 'CORRUPT_FILE' },
    { name: 'BigTIFF offset size 4', bytes: bigHeader(4, 16n), code: 'CORRUPT_FILE' },
    { name: 'BigTIFF first IFD at 2^60', bytes: bigHeader(8, 1n << 60n), code: 'CORRUPT_FILE' },
  ])('$name → $code', async ({ bytes, code }) => {
    await expectAppError(readTiff(byteSourceFromBytes(bytes)), code);
  });

  test('a loop across two directories is caught', async () => {
    const bytes = writeTiff(
      [
        { width: 4, height: 4 },
        { width: 4, height: 4 },
      ],
      { lastNext: 0 },
    );
    const tiff = await readTiff(byteSourceFromBytes(bytes));
    const looped = writeTiff(
      [
        { width: 4, height: 4 },
        { width: 4, height: 4 },
      ],
      { lastNext: tiff.ifds[0]!.offset },
    );
    const err = await expectAppError(readTiff(byteSourceFromBytes(looped)), 'CORRUPT_FILE');
    expect(err.details?.offset).toBe(tiff.ifds[0]!.offset);
  });

  test('readTileTable refuses a tile past the end and offset arrays shorter than the image needs', async () => {
    const bytes = writeTiff([{ width: 64, height: 64, tile: [32, 32] }]);
    const ifd = (await readTiff(byteSourceFromBytes(bytes))).ifds[0]!;
    const patched = bytes.slice();
    const offsetsAt = ifd.entries.get(TAG.TileOffsets)!.valueOffset;
    new DataView(patched.buffer).setUint32(offsetsAt + 4 * 3, bytes.byteLength - 5, true);
    const err = await expectAppError(readTileTable(byteSourceFromBytes(patched), ifd), 'CORRUPT_FILE');
    expect(err.message).toContain('tile 3');
    const wider = { ...ifd, width: 1000 };
    await expectAppError(readTileTable(byteSourceFromBytes(bytes), wider), 'CORRUPT_FILE');
  });

  test('every truncation and 400 random byte flips give a result or an AppError, never a raw throw', async () => {
    const bytes = writeTiff(
      [
        {
          width: 40,
          height: 30,
          tile: [16, 16],
          samplesPerPixel: 1,
          description: 'Aperio Image Library|MPP = 0.5',
        },
        { width: 20, height: 15, samplesPerPixel: 1 },
        {
          width: 10,
          height: 8,
          tile: [16, 16],
          samplesPerPixel: 1,
          subIfds: [{ width: 5, height: 4, samplesPerPixel: 1 }],
        },
      ],
      { bigTiff: false },
    );
    const attempt = async (candidate: Uint8Array): Promise<void> => {
      try {
        const tiff = await readTiff(byteSourceFromBytes(candidate));
        describeSlide(tiff);
        for (const ifd of tiff.ifds) await readTileTable(byteSourceFromBytes(candidate), ifd);
      } catch (err) {
        if (!(err instanceof AppError)) throw err;
      }
    };
    for (let length = 0; length < bytes.byteLength; length += 7) await attempt(bytes.subarray(0, length));
    let seed = 12345;
    const random = (n: number): number => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed % n;
    };
    for (let i = 0; i < 400; i++) {
      const copy = bytes.slice();
      for (let k = 0; k < 4; k++) copy[random(copy.byteLength)] = random(256);
      await attempt(copy);
    }
  });
});
