import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { AppError } from '../../src/errors.js';
import { parseDicom } from '../../src/formats/dicom/parse-dicom.js';
import { describeSlide } from '../../src/formats/slide/describe-slide.js';
import { describeDicomWsi, dicomWsiTileMap } from '../../src/formats/slide/dicom-wsi.js';
import { readTiff, readTileTable } from '../../src/formats/slide/tiff.js';
import { type ByteSource, byteSourceFromBytes } from '../../src/formats/types.js';
import { renderSlideThumbnail, renderSlideThumbnailFromReader } from '../../src/imaging/render-slide.js';
import {
  createEncodedTileCache,
  mergeJpegTables,
  openDicomWsiSlide,
  openTiffSlide,
  type RawTile,
  renderDziTile,
  type SlideTileReader,
} from '../../src/imaging/slide-tiles.js';
import { pearson } from '../helpers/dcmtk.js';
import { type DicomElement, imageElements, writeDicom } from '../helpers/dicom-writer.js';
import { encodeJ2k, writeTiff } from '../helpers/tiff-writer.js';

const hasVips = spawnSync('vips', ['--version']).status === 0;

const tmp = mkdtempSync(path.join(os.tmpdir(), 'teleread-slide-tiles-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

const WIDTH = 1000;
const HEIGHT = 700;

/** Gradients, stripes and a diagonal so that a tile cut one pixel off its place differs from the crop. */
function testPixels(width: number, height: number): Uint8Array {
  const out = new Uint8Array(width * height * 3);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const o = (y * width + x) * 3;
      out[o] = (x * 255) / width;
      out[o + 1] = (y * 255) / height;
      out[o + 2] = ((x >> 5) + (y >> 5)) % 2 === 0 ? 60 : 200;
      if (Math.abs(x - y) < 3) out[o] = out[o + 1] = out[o + 2] = 0;
    }
  }
  return out;
}

const pixels = testPixels(WIDTH, HEIGHT);

async function pyramid(compression: 'jpeg' | 'deflate' | 'lzw' | 'webp'): Promise<string> {
  const file = path.join(tmp, `pyramid-${compression}.tif`);
  await sharp(pixels, { raw: { width: WIDTH, height: HEIGHT, channels: 3 } })
    .tiff({ tile: true, pyramid: true, tileWidth: 128, tileHeight: 128, compression, quality: 95 })
    .toFile(file);
  return file;
}

/** A ByteSource that records what was read, to prove tiles come by range. */
function countingSource(bytes: Uint8Array): ByteSource & { reads: number[] } {
  const inner = byteSourceFromBytes(bytes);
  const reads: number[] = [];
  return {
    size: inner.size,
    reads,
    read(offset, length) {
      reads.push(length);
      return inner.read(offset, length);
    },
  };
}

async function levelImage(file: string, page: number): Promise<RawTile> {
  const { data, info } = await sharp(file, { page })
    .removeAlpha()
    .raw()
    .toBuffer({ resolveWithObject: true });
  return { data: new Uint8Array(data), width: info.width, height: info.height, channels: 3 };
}

async function decode(image: Buffer): Promise<RawTile> {
  const { data, info } = await sharp(image).removeAlpha().raw().toBuffer({ resolveWithObject: true });
  return { data: new Uint8Array(data), width: info.width, height: info.height, channels: 3 };
}

/** The DZI tile rectangle computed independently of the code under test (OpenSeadragon's convention). */
function dziRect(levelWidth: number, levelHeight: number, col: number, row: number, tile = 254, overlap = 1) {
  const left = col * tile - (col > 0 ? overlap : 0);
  const top = row * tile - (row > 0 ? overlap : 0);
  return {
    left,
    top,
    width: Math.min(levelWidth, (col + 1) * tile + overlap) - left,
    height: Math.min(levelHeight, (row + 1) * tile + overlap) - top,
  };
}

async function crop(level: RawTile, rect: { left: number; top: number; width: number; height: number }) {
  const { data, info } = await sharp(level.data, {
    raw: { width: level.width, height: level.height, channels: 3 },
  })
    .extract(rect)
    .raw()
    .toBuffer({ resolveWithObject: true });
  return { data: new Uint8Array(data), width: info.width, height: info.height, channels: 3 as const };
}

function meanAbsDiff(a: RawTile, b: RawTile): number {
  expect([a.width, a.height]).toEqual([b.width, b.height]);
  let sum = 0;
  for (let i = 0; i < a.data.length; i++) sum += Math.abs(a.data[i]! - b.data[i]!);
  return sum / a.data.length;
}

async function rejection(promise: Promise<unknown>): Promise<AppError> {
  const err = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(AppError);
  return err as AppError;
}

describe('mergeJpegTables', () => {
  test('tables without their EOI, then the tile without its SOI', () => {
    const tables = Uint8Array.of(0xff, 0xd8, 0xff, 0xdb, 0, 3, 9, 0xff, 0xd9);
    const tile = Uint8Array.of(0xff, 0xd8, 0xff, 0xda, 1, 2, 0xff, 0xd9);
    expect(Array.from(mergeJpegTables(tables, tile))).toEqual([
      0xff, 0xd8, 0xff, 0xdb, 0, 3, 9, 0xff, 0xda, 1, 2, 0xff, 0xd9,
    ]);
  });
  test.each([
    { name: 'no tables', tables: undefined },
    { name: 'tables that are not JPEG', tables: Uint8Array.of(1, 2, 3, 4) },
  ])('$name: the tile as it is', ({ tables }) => {
    const tile = Uint8Array.of(0xff, 0xd8, 0xff, 0xd9);
    expect(mergeJpegTables(tables, tile)).toBe(tile);
  });
});

describe('Deep Zoom tiles of a synthetic pyramid', () => {
  const files: Record<string, string> = {};
  beforeAll(async () => {
    for (const c of ['jpeg', 'deflate', 'lzw', 'webp'] as const) files[c] = await pyramid(c);
  });

  // DZI level 10 is full size (1000 px), 9 is half: each maps exactly onto a stored level.
  const exact = [
    { dzLevel: 10, page: 0, col: 0, row: 0 },
    { dzLevel: 10, page: 0, col: 1, row: 1 },
    { dzLevel: 10, page: 0, col: 3, row: 2 },
    { dzLevel: 9, page: 1, col: 1, row: 0 },
    { dzLevel: 9, page: 1, col: 1, row: 1 },
    { dzLevel: 8, page: 2, col: 0, row: 0 },
  ];

  test.each(exact)(
    'JPEG: level $dzLevel tile $col,$row equals the crop of page $page',
    async ({ dzLevel, page, col, row }) => {
      const file = files.jpeg!;
      const level = await levelImage(file, page);
      const slide = await openTiffSlide(byteSourceFromBytes(readFileSync(file)));
      const expected = await crop(level, dziRect(level.width, level.height, col, row));
      // PNG tiles: the same decoder on the same tiles, so the same pixels.
      const exactTile = await decode(await renderDziTile(slide, dzLevel, col, row, { format: 'png' }));
      expect(meanAbsDiff(exactTile, expected)).toBe(0);
      // JPEG tiles add one lossy encoding (quality 95, 4:2:0 chroma, hard on these stripes).
      const tile = await decode(await renderDziTile(slide, dzLevel, col, row, { quality: 95 }));
      expect(meanAbsDiff(tile, expected)).toBeLessThan(8);
    },
  );

  test.each(['deflate', 'lzw', 'webp'])(
    '%s: exact levels are pixel-exact crops (PNG tiles)',
    async (compression) => {
      const file = files[compression]!;
      const slide = await openTiffSlide(byteSourceFromBytes(readFileSync(file)));
      for (const { dzLevel, page, col, row } of exact) {
        const level = await levelImage(file, page);
        const tile = await decode(await renderDziTile(slide, dzLevel, col, row, { format: 'png' }));
        expect(meanAbsDiff(tile, await crop(level, dziRect(level.width, level.height, col, row)))).toBe(0);
      }
    },
  );

  // sharp's libtiff has no Zstandard codec (it reads such tiles as black), so the ZSTD pyramid and its lossless
  // twin come from Debian's vips; the twin, deflate-compressed, is what sharp decodes as the reference.
  describe.runIf(hasVips)('Zstandard (TIFF compression 50000)', () => {
    // Made on first use (the parent block's beforeAll makes the sharp pyramids).
    let made: Promise<Record<'zstd' | 'deflate', string>> | undefined;
    const makeTwins = async () => {
      const twins = { zstd: '', deflate: '' };
      const source = path.join(tmp, 'zstd-source.png');
      await sharp(pixels, { raw: { width: WIDTH, height: HEIGHT, channels: 3 } })
        .png()
        .toFile(source);
      for (const c of ['zstd', 'deflate'] as const) {
        twins[c] = path.join(tmp, `vips-${c}.tif`);
        execFileSync('vips', [
          'tiffsave',
          source,
          twins[c],
          '--tile',
          '--pyramid',
          '--tile-width',
          '128',
          '--tile-height',
          '128',
          '--compression',
          c,
          '--predictor',
          'horizontal',
        ]);
      }
      return twins;
    };
    const vipsTwins = () => {
      made ??= makeTwins();
      return made;
    };

    test('exact levels are pixel-exact crops of the lossless twin (PNG tiles)', async () => {
      const twins = await vipsTwins();
      const slide = await openTiffSlide(byteSourceFromBytes(readFileSync(twins.zstd)));
      for (const { dzLevel, page, col, row } of exact) {
        const level = await levelImage(twins.deflate, page);
        const tile = await decode(await renderDziTile(slide, dzLevel, col, row, { format: 'png' }));
        expect(meanAbsDiff(tile, await crop(level, dziRect(level.width, level.height, col, row)))).toBe(0);
      }
      // The thumbnail is the source's, not black (what the slide reads as without this path).
      const thumb = await decode(
        (await renderSlideThumbnailFromReader(slide, { size: 200, format: 'png' })).data,
      );
      const twin = await decode(
        (
          await renderSlideThumbnailFromReader(
            await openTiffSlide(byteSourceFromBytes(readFileSync(twins.deflate))),
            {
              size: 200,
              format: 'png',
            },
          )
        ).data,
      );
      expect(meanAbsDiff(thumb, twin)).toBe(0);
    });

    test('a tile that is not Zstandard data → CORRUPT_FILE naming the tile', async () => {
      const twins = await vipsTwins();
      const bytes = new Uint8Array(readFileSync(twins.zstd));
      const tiff = await readTiff(byteSourceFromBytes(bytes));
      const level0 = tiff.ifds[0]!;
      const table = await readTileTable(byteSourceFromBytes(bytes), level0);
      bytes.fill(0x5a, table.offsets[0]!, table.offsets[0]! + Math.min(64, table.byteCounts[0]!));
      const slide = await openTiffSlide(byteSourceFromBytes(bytes));
      await expect(renderDziTile(slide, 10, 0, 0, { format: 'png' })).rejects.toMatchObject({
        code: 'CORRUPT_FILE',
        message: expect.stringMatching(/tile 0,0 .*Zstandard/),
      });
    });
  });

  test('a level between stored levels is cut from the larger one and shrunk', async () => {
    const file = files.deflate!;
    const slide = await openTiffSlide(byteSourceFromBytes(readFileSync(file)));
    // DZI level 5 (32 px wide) lies under the smallest stored level (125 px): one tile, the whole slide.
    const tile = await decode(await renderDziTile(slide, 5, 0, 0, { format: 'png' }));
    expect([tile.width, tile.height]).toEqual([32, 22]);
    const smallest = await levelImage(file, 3);
    const expected = await decode(
      await sharp(smallest.data, { raw: { width: smallest.width, height: smallest.height, channels: 3 } })
        .resize(32, 22, { fit: 'fill' })
        .png()
        .toBuffer(),
    );
    expect(meanAbsDiff(tile, expected)).toBeLessThan(4);
  });

  test('tiles are read by range: only the source tiles under the DZI tile', async () => {
    const bytes = readFileSync(files.jpeg!);
    const source = countingSource(bytes);
    const slide = await openTiffSlide(source);
    const before = source.reads.reduce((a, b) => a + b, 0);
    await renderDziTile(slide, 10, 1, 1);
    const tileBytes = source.reads.reduce((a, b) => a + b, 0) - before;
    // DZI tile 1,1 of level 10 is pixels 253–509 × 253–509: level-0 tiles 1–3 × 1–3 (128 px each).
    const tiff = await readTiff(byteSourceFromBytes(bytes));
    const table = await readTileTable(byteSourceFromBytes(bytes), tiff.ifds[0]!);
    let needed = 0;
    for (let row = 1; row <= 3; row++)
      for (let col = 1; col <= 3; col++) needed += table.byteCounts[row * 8 + col]!;
    // Plus three rows of 8 table entries (offsets and counts, 4 bytes each) and the JPEG tables.
    expect(tileBytes).toBeLessThanOrEqual(needed + 3 * 8 * 8 + 1024);
    expect(tileBytes).toBeLessThan(bytes.length / 4);
  });

  test('edge tiles carry overlap on inner sides only', async () => {
    const slide = await openTiffSlide(byteSourceFromBytes(readFileSync(files.jpeg!)));
    const sizes = await Promise.all(
      [
        [0, 0],
        [1, 0],
        [3, 0],
        [3, 2],
      ].map(async ([col, row]) => {
        const meta = await sharp(await renderDziTile(slide, 10, col!, row!)).metadata();
        return [meta.width, meta.height];
      }),
    );
    expect(sizes).toEqual([
      [255, 255],
      [256, 255],
      [1000 - 761, 255],
      [1000 - 761, 700 - 507],
    ]);
  });

  test.each([
    { level: 11, col: 0, row: 0 },
    { level: 10, col: 4, row: 0 },
    { level: 10, col: 0, row: 3 },
    { level: -1, col: 0, row: 0 },
    { level: 10, col: 0.5, row: 0 },
  ])('tile $col,$row of level $level is NOT_FOUND', async ({ level, col, row }) => {
    const slide = await openTiffSlide(byteSourceFromBytes(readFileSync(files.jpeg!)));
    const err = await rejection(renderDziTile(slide, level, col, row));
    expect(err.code).toBe('NOT_FOUND');
  });

  test('the encoded-tile cache answers a repeated tile without decoding again', async () => {
    const source = countingSource(readFileSync(files.jpeg!));
    const slide = await openTiffSlide(source);
    const cache = createEncodedTileCache(1024 * 1024);
    const first = await renderDziTile(slide, 10, 2, 1, { cache });
    const reads = source.reads.length;
    const again = await renderDziTile(slide, 10, 2, 1, { cache });
    expect(again).toBe(first);
    expect(source.reads.length).toBe(reads);
    expect(cache.stats()).toMatchObject({ hits: 1, misses: 1, entries: 1 });
  });
});

/** JFIF RGB → YCbCr, how Aperio 33003 stores its samples. */
function rgbToYcc(rgb: Uint8Array): Uint8Array {
  const out = new Uint8Array(rgb.length);
  for (let i = 0; i < rgb.length; i += 3) {
    const r = rgb[i]!;
    const g = rgb[i + 1]!;
    const b = rgb[i + 2]!;
    out[i] = Math.round(0.299 * r + 0.587 * g + 0.114 * b);
    out[i + 1] = Math.max(0, Math.min(255, Math.round(128 - 0.168736 * r - 0.331264 * g + 0.5 * b)));
    out[i + 2] = Math.max(0, Math.min(255, Math.round(128 + 0.5 * r - 0.418688 * g - 0.081312 * b)));
  }
  return out;
}

/** Tiles of `image` (tile × tile, edge tiles padded), each JPEG 2000 encoded. */
async function j2kTiles(image: RawTile, tile: number, ycc: boolean): Promise<Uint8Array[]> {
  const out: Uint8Array[] = [];
  for (let ty = 0; ty < image.height; ty += tile) {
    for (let tx = 0; tx < image.width; tx += tile) {
      const samples = new Uint8Array(tile * tile * 3);
      for (let y = 0; y < tile && ty + y < image.height; y++) {
        const w = Math.min(tile, image.width - tx);
        const from = ((ty + y) * image.width + tx) * 3;
        samples.set(image.data.subarray(from, from + w * 3), y * tile * 3);
      }
      out.push(await encodeJ2k(ycc ? rgbToYcc(samples) : samples, tile, tile, 3));
    }
  }
  return out;
}

describe('Aperio JPEG 2000 tiles', () => {
  const level0: RawTile = { data: testPixels(300, 200), width: 300, height: 200, channels: 3 };
  const level1: RawTile = { data: testPixels(150, 100), width: 150, height: 100, channels: 3 };

  test.each([
    { compression: 33005, ycc: false, tolerance: 0 },
    { compression: 33003, ycc: true, tolerance: 1.5 },
  ])('compression $compression decodes to the original pixels', async ({ compression, ycc, tolerance }) => {
    const bytes = writeTiff([
      {
        width: 300,
        height: 200,
        tile: [128, 128],
        compression,
        tiles: await j2kTiles(level0, 128, ycc),
        description: 'Aperio Image Library v12\r\n300x200 (128x128) J2K/YUV16 Q=70|AppMag = 20|MPP = 0.5',
      },
      { width: 150, height: 100, tile: [128, 128], compression, tiles: await j2kTiles(level1, 128, ycc) },
    ]);
    const slide = await openTiffSlide(byteSourceFromBytes(bytes));
    expect(slide.info.levels.map((l) => l.compressionCode)).toEqual([compression, compression]);
    const region = await slide.readRegion(0, 0, 0, 300, 200);
    expect(meanAbsDiff(region, level0)).toBeLessThanOrEqual(tolerance);
    // DZI level 9 (scale 1) of a 300-px slide: the whole level 0 in two tiles.
    const tile = await decode(await renderDziTile(slide, 9, 1, 0, { format: 'png' }));
    expect(meanAbsDiff(tile, await crop(level0, dziRect(300, 200, 1, 0)))).toBeLessThanOrEqual(
      tolerance + 0.5,
    );

    const file = path.join(tmp, `j2k-${compression}.svs`);
    await import('node:fs/promises').then((fs) => fs.writeFile(file, bytes));
    const info = describeSlide(await readTiff(byteSourceFromBytes(bytes)));
    const thumb = await renderSlideThumbnail(file, info, { size: 100, format: 'png' });
    // Composed from level 1 (150 px, the smallest ≥ 100) tile by tile.
    expect([thumb.width, thumb.height]).toEqual([100, 67]);
    const reference = await decode(
      await sharp(level1.data, { raw: { width: 150, height: 100, channels: 3 } })
        .resize(100, 67, { fit: 'fill' })
        .png()
        .toBuffer(),
    );
    expect(meanAbsDiff(await decode(thumb.data), reference)).toBeLessThan(8);
  });

  test.each([
    { compression: 33005, ycc: false },
    { compression: 33003, ycc: true },
  ])(
    'compression $compression tiles decode at half and quarter size from the wavelet levels',
    async ({ compression, ycc }) => {
      const bytes = writeTiff([
        { width: 300, height: 200, tile: [128, 128], compression, tiles: await j2kTiles(level0, 128, ycc) },
      ]);
      const slide = await openTiffSlide(byteSourceFromBytes(bytes));
      const full = await crop(level0, { left: 0, top: 0, width: 128, height: 128 });
      for (const reduce of [1, 2]) {
        const tile = await slide.readTile(0, 0, 0, reduce);
        const side = 128 / 2 ** reduce;
        expect([tile?.width, tile?.height]).toEqual([side, side]);
        const reference = await decode(
          await sharp(full.data, { raw: { width: 128, height: 128, channels: 3 } })
            .resize(side, side, { kernel: 'linear' })
            .png()
            .toBuffer(),
        );
        // The wavelet's low band is not a resize kernel: the same picture, not the same pixels.
        expect([reference.width, reference.height]).toEqual([side, side]);
        expect(pearson(tile!.data, reference.data)).toBeGreaterThan(0.97);
      }
    },
  );

  test('a codestream that is not JPEG 2000 is CORRUPT_FILE', async () => {
    const garbage = Uint8Array.of(0xff, 0x4f, 0xff, 0x51, 0x00, 0x02, 0x13, 0x37, 0xff, 0xd9);
    const slide = await openTiffSlide(
      byteSourceFromBytes(
        writeTiff([{ width: 150, height: 100, tile: [128, 128], compression: 33005, tileData: garbage }]),
      ),
    );
    const err = await rejection(slide.readRegion(0, 0, 0, 10, 10));
    expect(err.code).toBe('CORRUPT_FILE');
  });

  // Found by test/conformance/mutation-robustness.test.ts: a DICOM WSI JPEG-LS frame whose header claimed
  // 20000×20000 pixels grew the codec's memory by a gigabyte before the codec gave up. The size the codestream
  // declares is now checked against the tile first.
  test('a codestream declaring more pixels than its tile is CORRUPT_FILE before it is decoded', async () => {
    const [big] = await j2kTiles(
      { data: testPixels(256, 256), width: 256, height: 256, channels: 3 },
      256,
      false,
    );
    const slide = await openTiffSlide(
      byteSourceFromBytes(
        writeTiff([{ width: 150, height: 100, tile: [128, 128], compression: 33005, tileData: big! }]),
      ),
    );
    const err = await rejection(slide.readRegion(0, 0, 0, 10, 10));
    expect(err.code).toBe('CORRUPT_FILE');
    expect(err.message).toMatch(/JPEG 2000 header declares 256x256 pixels, more than the 128x128 tile/);
  });
});

describe('broken tiles', () => {
  test('bad JPEG markers: CORRUPT_FILE, not a crash', async () => {
    const garbage = Uint8Array.of(0xff, 0xd8, 0xff, 0xdb, 0x00, 0x01, 0xff, 0xd9);
    const slide = await openTiffSlide(
      byteSourceFromBytes(
        writeTiff([{ width: 64, height: 64, tile: [64, 64], compression: 7, tileData: garbage }]),
      ),
    );
    const err = await rejection(renderDziTile(slide, 6, 0, 0));
    expect(err.code).toBe('CORRUPT_FILE');
    expect(err.retryable).toBe(false);
  });

  test('unknown compression: UNSUPPORTED_FORMAT', async () => {
    const slide = await openTiffSlide(
      byteSourceFromBytes(
        writeTiff([
          { width: 64, height: 64, tile: [64, 64], compression: 52479, tileData: new Uint8Array(16) },
        ]),
      ),
    );
    const err = await rejection(renderDziTile(slide, 6, 0, 0));
    expect(err.code).toBe('UNSUPPORTED_FORMAT');
  });

  test('a tile past the end of a truncated file: CORRUPT_FILE', async () => {
    const bytes = writeTiff([{ width: 128, height: 128, tile: [64, 64], compression: 1, fill: 10 }]);
    // The directory is written after the data, so cutting the data means moving the directory: instead,
    // claim a larger tile than the file holds.
    const source = byteSourceFromBytes(bytes);
    const tiff = await readTiff(source);
    const entry = tiff.ifds[0]!.entries.get(325)!;
    const patched = bytes.slice();
    new DataView(patched.buffer).setUint32(entry.valueOffset, bytes.length, true);
    const slide = await openTiffSlide(byteSourceFromBytes(patched));
    const err = await rejection(slide.readTile(0, 0, 0));
    expect(err.code).toBe('CORRUPT_FILE');
  });

  test('missing tiles of a sparse level are background', async () => {
    const slide = await openTiffSlide(
      byteSourceFromBytes(
        writeTiff([
          {
            width: 128,
            height: 64,
            tile: [64, 64],
            compression: 1,
            tiles: [new Uint8Array(64 * 64 * 3).fill(20), new Uint8Array(0)],
          },
        ]),
      ),
    );
    const region = await slide.readRegion(0, 60, 0, 8, 1);
    expect(Array.from(region.data)).toEqual([...Array(12).fill(20), ...Array(12).fill(255)]);
  });
});

// ---------------------------------------------------------------------------------------------- DICOM WSI

const WSI = '1.2.840.10008.5.1.4.1.1.77.1.6';

function item(elements: DicomElement[]): DicomElement[] {
  return elements;
}

interface WsiSpec {
  image: RawTile;
  tile: number;
  imageType?: string;
  sparse?: boolean;
  /** Tiles (row-major index) left out of a sparse instance. */
  missing?: number[];
  jpeg?: boolean;
  /** The first frame's JPEG replaced by one with a bogus marker length. */
  brokenFirstFrame?: boolean;
  instanceNumber?: number;
  sopInstanceUid?: string;
}

async function wsiInstance(spec: WsiSpec): Promise<Uint8Array> {
  const { image, tile } = spec;
  const cols = Math.ceil(image.width / tile);
  const rows = Math.ceil(image.height / tile);
  const frames: Array<{ col: number; row: number; bytes: Uint8Array }> = [];
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < cols; c++) {
      if (spec.missing?.includes(r * cols + c)) continue;
      const samples = new Uint8Array(tile * tile * 3).fill(255);
      for (let y = 0; y < tile && r * tile + y < image.height; y++) {
        const w = Math.min(tile, image.width - c * tile);
        const from = ((r * tile + y) * image.width + c * tile) * 3;
        samples.set(image.data.subarray(from, from + w * 3), y * tile * 3);
      }
      const bytes = spec.jpeg
        ? new Uint8Array(
            await sharp(samples, { raw: { width: tile, height: tile, channels: 3 } })
              .jpeg({ quality: 95, chromaSubsampling: '4:4:4' })
              .toBuffer(),
          )
        : samples;
      // Fragments are padded to even length, so offset tables count the padding.
      const even = bytes.length % 2 ? Uint8Array.from([...bytes, 0]) : bytes;
      frames.push({ col: c, row: r, bytes: spec.jpeg ? even : bytes });
    }
  }
  if (spec.brokenFirstFrame && frames[0]) {
    frames[0].bytes = Uint8Array.of(0xff, 0xd8, 0xff, 0xdb, 0x00, 0x01, 0x02, 0x03, 0xff, 0xd9);
  }
  // Sparse instances list their frames in any order: reverse them to prove positions are used.
  if (spec.sparse) frames.reverse();
  const extra: DicomElement[] = [
    { tag: 0x00080008, vr: 'CS', value: `ORIGINAL\\PRIMARY\\${spec.imageType ?? 'VOLUME'}\\NONE` },
    { tag: 0x00080016, vr: 'UI', value: WSI },
    {
      tag: 0x00080018,
      vr: 'UI',
      value: spec.sopInstanceUid ?? `2.25.${image.width}${spec.instanceNumber ?? 1}`,
    },
    { tag: 0x00080060, vr: 'CS', value: 'SM' },
    { tag: 0x0008002a, vr: 'DT', value: '20240131101500' },
    { tag: 0x00200013, vr: 'IS', value: String(spec.instanceNumber ?? 1) },
    { tag: 0x00209311, vr: 'CS', value: spec.sparse ? 'TILED_SPARSE' : 'TILED_FULL' },
    { tag: 0x00480006, vr: 'UL', value: image.width },
    { tag: 0x00480007, vr: 'UL', value: image.height },
    {
      tag: 0x00480105,
      vr: 'SQ',
      value: [item([{ tag: 0x00480112, vr: 'DS', value: '40' }])],
    },
    {
      tag: 0x52009229,
      vr: 'SQ',
      value: [
        [{ tag: 0x00289110, vr: 'SQ', value: [[{ tag: 0x00280030, vr: 'DS', value: '0.00025\\0.00026' }]] }],
      ],
    },
  ];
  if (spec.sparse) {
    extra.push({
      tag: 0x52009230,
      vr: 'SQ',
      value: frames.map((f) => [
        {
          tag: 0x0048021a,
          vr: 'SQ',
          value: [
            [
              { tag: 0x0048021e, vr: 'SL', value: f.col * tile + 1 },
              { tag: 0x0048021f, vr: 'SL', value: f.row * tile + 1 },
            ],
          ],
        },
      ]),
    });
  }
  const pixelData = spec.jpeg
    ? {
        fragments: frames.map((f) => f.bytes),
        offsetTable: frames.reduce<number[]>((acc, _frame, i) => {
          acc.push(i === 0 ? 0 : acc[i - 1]! + 8 + frames[i - 1]!.bytes.length);
          return acc;
        }, []),
      }
    : Uint8Array.from(frames.flatMap((f) => Array.from(f.bytes)));
  const elements = imageElements({
    rows: tile,
    columns: tile,
    bitsAllocated: 8,
    samplesPerPixel: 3,
    photometricInterpretation: spec.jpeg ? 'YBR_FULL_422' : 'RGB',
    numberOfFrames: frames.length,
    pixelData,
    extra,
  });
  return writeDicom(elements, {
    encoding: 'explicit-le',
    ...(spec.jpeg ? { transferSyntaxUid: '1.2.840.10008.1.2.4.50' } : {}),
  });
}

describe('DICOM WSI', () => {
  const base: RawTile = { data: testPixels(200, 150), width: 200, height: 150, channels: 3 };
  const half: RawTile = { data: testPixels(100, 75), width: 100, height: 75, channels: 3 };

  test('describeDicomWsi: levels, MPP, power, date and associated images of one series', async () => {
    const files = [
      await wsiInstance({ image: half, tile: 64, instanceNumber: 2 }),
      await wsiInstance({ image: base, tile: 64, instanceNumber: 1 }),
      await wsiInstance({ image: half, tile: 64, imageType: 'LABEL', instanceNumber: 3 }),
      await wsiInstance({ image: half, tile: 64, imageType: 'OVERVIEW', instanceNumber: 4 }),
    ];
    const info = describeDicomWsi(files.map((f) => parseDicom(f)));
    expect(info.format).toBe('dicom-wsi');
    expect(info.levels.map((l) => [l.ifd, l.width, l.height, l.tileWidth, l.downsample])).toEqual([
      [1, 200, 150, 64, 1],
      [0, 100, 75, 64, 2],
    ]);
    expect(info.associated.map((a) => [a.name, a.ifd])).toEqual([
      ['label', 2],
      ['macro', 3],
    ]);
    // PixelSpacing is row (y) spacing first, in millimetres.
    expect(info.mppX).toBeCloseTo(0.26, 9);
    expect(info.mppY).toBeCloseTo(0.25, 9);
    expect(info.objectivePower).toBe(40);
    expect(info.scanDate).toBe('2024-01-31T10:15:00');
  });

  test('a series without a VOLUME image is CORRUPT_FILE', async () => {
    const label = parseDicom(await wsiInstance({ image: half, tile: 64, imageType: 'LABEL' }));
    const err = await rejection(Promise.resolve().then(() => describeDicomWsi([label])));
    expect(err.code).toBe('CORRUPT_FILE');
  });

  test.each([
    { name: 'TILED_FULL native', sparse: false, jpeg: false, ranged: false },
    { name: 'TILED_FULL native, frames by range', sparse: false, jpeg: false, ranged: true },
    {
      name: 'TILED_SPARSE native with a missing tile',
      sparse: true,
      jpeg: false,
      ranged: false,
      missing: [5],
    },
    { name: 'TILED_SPARSE JPEG, frames by range', sparse: true, jpeg: true, ranged: true, missing: [5] },
    { name: 'TILED_FULL JPEG, in memory', sparse: false, jpeg: true, ranged: false },
  ])('$name: regions match the image', async ({ sparse, jpeg, ranged, missing }) => {
    const file = await wsiInstance({ image: base, tile: 64, sparse, jpeg, ...(missing ? { missing } : {}) });
    const instance = parseDicom(file);
    if (sparse) {
      const map = dicomWsiTileMap(instance);
      expect([map.cols, map.rows]).toEqual([4, 3]);
      expect(map.frameOfTile[5]).toBe(-1);
    }
    const slide = await openDicomWsiSlide([
      { instance, ...(ranged ? { source: byteSourceFromBytes(file) } : {}) },
    ]);
    const region = await slide.readRegion(0, 0, 0, 200, 150);
    const expected = { ...base, data: base.data.slice() };
    if (missing) {
      // Tile 5 is column 1 of row 1: background where it would be.
      for (let y = 64; y < 128; y++) expected.data.fill(255, (y * 200 + 64) * 3, (y * 200 + 128) * 3);
    }
    expect(meanAbsDiff(region, expected)).toBeLessThan(jpeg ? 2.5 : 0.001);
  });

  test('thumbnail from the smallest level at least the size, composed tile by tile', async () => {
    const files = [
      await wsiInstance({ image: base, tile: 64 }),
      await wsiInstance({ image: half, tile: 64, instanceNumber: 2 }),
    ];
    const slide: SlideTileReader = await openDicomWsiSlide(files.map((f) => ({ instance: parseDicom(f) })));
    const thumb = await renderSlideThumbnailFromReader(slide, { size: 80, format: 'png' });
    expect([thumb.width, thumb.height]).toEqual([80, 60]);
    const reference = await decode(
      await sharp(half.data, { raw: { width: 100, height: 75, channels: 3 } })
        .resize(80, 60, { fit: 'fill' })
        .png()
        .toBuffer(),
    );
    expect(meanAbsDiff(await decode(thumb.data), reference)).toBeLessThan(8);
  });

  test('a frame whose JPEG is damaged is CORRUPT_FILE', async () => {
    const file = await wsiInstance({ image: half, tile: 64, jpeg: true, brokenFirstFrame: true });
    const slide = await openDicomWsiSlide([
      { instance: parseDicom(file), source: byteSourceFromBytes(file) },
    ]);
    expect((await slide.readTile(0, 1, 0))?.width).toBe(64);
    const err = await rejection(slide.readTile(0, 0, 0));
    expect(err.code).toBe('CORRUPT_FILE');
  });
});
