import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { AppError } from '../../src/errors.js';
import {
  describeSlide,
  type SlideAssociatedImage,
  type SlideInfo,
  type SlideLevel,
} from '../../src/formats/slide/describe-slide.js';
import { readTiff, readTileTable } from '../../src/formats/slide/tiff.js';
import { byteSourceFromBytes } from '../../src/formats/types.js';
import { pickThumbnailSource, renderSlideThumbnail } from '../../src/imaging/render-slide.js';
import { type WriteIfd, writeTiff } from '../helpers/tiff-writer.js';

const tmp = mkdtempSync(path.join(os.tmpdir(), 'teleread-slide-render-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

async function describeFile(file: string): Promise<SlideInfo> {
  return describeSlide(await readTiff(byteSourceFromBytes(readFileSync(file))));
}

function writeFile(name: string, ifds: WriteIfd[]): string {
  const file = path.join(tmp, name);
  writeFileSync(file, writeTiff(ifds));
  return file;
}

async function meanOf(data: Buffer): Promise<number> {
  const stats = await sharp(data).stats();
  return stats.channels[0]!.mean;
}

async function rejection(promise: Promise<unknown>): Promise<AppError> {
  const err = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(AppError);
  return err as AppError;
}

function level(ifd: number, width: number, height: number, compressionCode = 7, subifd?: number): SlideLevel {
  return {
    ifd,
    subifd,
    width,
    height,
    compression: compressionCode === 7 ? 'jpeg' : `code-${compressionCode}`,
    compressionCode,
    samplesPerPixel: 3,
    bitsPerSample: 8,
    downsample: 1,
  };
}

function slide(levels: SlideLevel[], thumbnail?: SlideLevel): SlideInfo {
  const associated: SlideAssociatedImage[] = thumbnail ? [{ ...thumbnail, name: 'thumbnail' }] : [];
  return { format: 'aperio-svs', levels, associated, properties: {} };
}

describe('pickThumbnailSource', () => {
  const pyramid = [level(0, 40000, 30000), level(1, 10000, 7500), level(2, 2500, 1875), level(3, 625, 468)];
  test.each([
    { name: 'smallest level still ≥ size', info: slide(pyramid), size: 512, page: 3 },
    { name: 'a larger size moves one level up', info: slide(pyramid), size: 1024, page: 2 },
    {
      name: 'nothing large enough: the largest there is',
      info: slide([level(0, 300, 200), level(1, 150, 100)]),
      size: 512,
      page: 0,
    },
    {
      name: 'only a huge level 0: still the smallest that fits',
      info: slide([level(0, 90000, 60000)]),
      size: 512,
      page: 0,
    },
    {
      name: 'SVS thumbnail when it is the smallest that fits',
      info: slide([level(0, 40000, 30000), level(2, 10000, 7500)], level(1, 1024, 768)),
      size: 512,
      page: 1,
    },
    {
      name: 'J2K levels decode tile by tile: the smallest level that fits, not a smaller thumbnail',
      info: slide([level(0, 40000, 30000, 33003), level(2, 10000, 7500, 33003)], level(1, 400, 300)),
      size: 512,
      page: 2,
    },
    {
      name: 'a level wins a tie with the thumbnail',
      info: slide([level(0, 16, 16)], level(1, 16, 16)),
      size: 512,
      page: 0,
    },
  ])('$name', ({ info, size, page }) => {
    expect(pickThumbnailSource(info, size).ifd).toBe(page);
  });

  test.each([
    { name: 'old-style JPEG', info: slide([level(0, 4000, 3000, 6)]) },
    { name: 'LERC (no decoder)', info: slide([level(0, 4000, 3000, 34887)]) },
  ])('$name → UNSUPPORTED_FORMAT', ({ info }) => {
    expect(() => pickThumbnailSource(info, 512)).toThrow(
      expect.objectContaining({ code: 'UNSUPPORTED_FORMAT' }),
    );
  });
});

describe('renderSlideThumbnail', () => {
  const big = path.join(tmp, 'big-pyramid.tif');

  beforeAll(async () => {
    // 20000 × 15000 tiled JPEG pyramid from a 200 × 150 noise image: about 2 s to write.
    const small = await sharp({
      create: {
        width: 200,
        height: 150,
        channels: 3,
        background: '#000',
        noise: { type: 'gaussian', mean: 128, sigma: 40 },
      },
    })
      .png()
      .toBuffer();
    await sharp(small)
      .resize(20000, 15000, { kernel: 'nearest' })
      .tiff({ tile: true, pyramid: true, compression: 'jpeg', quality: 70, tileWidth: 256, tileHeight: 256 })
      .toFile(big);
  }, 60_000);

  test('a 20000 × 15000 pyramid thumbnails from a small page, not level 0', async () => {
    const info = await describeFile(big);
    expect(info.levels[0]).toMatchObject({ width: 20000, height: 15000 });
    const picked = pickThumbnailSource(info, 512);
    expect([picked.width, picked.height]).toEqual([625, 468]);
    const out = await renderSlideThumbnail(big, info, { size: 512, format: 'webp' });
    expect([out.width, out.height]).toEqual([512, 383]);
    expect(out.contentType).toBe('image/webp');
    // Speed is measured by `npm run bench`, not here; the page choice above is what keeps it fast.
  });

  test('page numbers follow the IFD chain: each level has its own fill, the right one is decoded', async () => {
    const file = writeFile('fills.tif', [
      { width: 2048, height: 1536, tile: [256, 256], samplesPerPixel: 1, fill: 10, shareTileData: true },
      { width: 1024, height: 768, tile: [256, 256], samplesPerPixel: 1, fill: 60, shareTileData: true },
      { width: 512, height: 384, tile: [256, 256], samplesPerPixel: 1, fill: 200, shareTileData: true },
      { width: 256, height: 192, tile: [256, 256], samplesPerPixel: 1, fill: 250 },
    ]);
    const info = await describeFile(file);
    expect(await meanOf((await renderSlideThumbnail(file, info, { size: 512 })).data)).toBeCloseTo(200, 0);
    expect(await meanOf((await renderSlideThumbnail(file, info, { size: 1000 })).data)).toBeCloseTo(60, 0);
    expect(await meanOf((await renderSlideThumbnail(file, info, { size: 100 })).data)).toBeCloseTo(250, 0);
  });

  test('OME-TIFF SubIFD levels are read with sharp’s subifd option', async () => {
    const ome =
      '<OME xmlns="http://www.openmicroscopy.org/Schemas/OME/2016-06"><Image ID="Image:0" Name="s">' +
      '<Pixels SizeX="2048" SizeY="1024" SizeZ="1" SizeC="1" SizeT="1" Type="uint8" DimensionOrder="XYZCT">' +
      '<Channel ID="Channel:0:0" SamplesPerPixel="1"/><TiffData IFD="0"/></Pixels></Image></OME>';
    const file = writeFile('ome-subifd.ome.tif', [
      {
        width: 2048,
        height: 1024,
        tile: [256, 256],
        samplesPerPixel: 1,
        fill: 20,
        shareTileData: true,
        description: ome,
        subIfds: [
          { width: 1024, height: 512, tile: [256, 256], samplesPerPixel: 1, fill: 90, shareTileData: true },
          { width: 512, height: 256, tile: [256, 256], samplesPerPixel: 1, fill: 170, shareTileData: true },
        ],
      },
    ]);
    const info = await describeFile(file);
    expect(info.format).toBe('ome-tiff');
    const out = await renderSlideThumbnail(file, info, { size: 512, format: 'png' });
    expect([out.width, out.height]).toEqual([512, 256]);
    expect(await meanOf(out.data)).toBeCloseTo(170, 0);
  });

  test('Aperio with J2K levels renders its stored thumbnail when that is the smallest that fits', async () => {
    const file = writeFile('j2k.svs', [
      {
        width: 4000,
        height: 3000,
        tile: [256, 256],
        compression: 33003,
        shareTileData: true,
        description: 'Aperio Image Library|MPP = 0.5',
      },
      { width: 400, height: 300, fill: 77 },
      { width: 1000, height: 750, tile: [256, 256], compression: 33003, shareTileData: true },
    ]);
    const info = await describeFile(file);
    const out = await renderSlideThumbnail(file, info, { size: 300, format: 'jpeg' });
    expect([out.width, out.height]).toEqual([300, 225]);
    expect(out.contentType).toBe('image/jpeg');
    expect(await meanOf(out.data)).toBeCloseTo(77, -1);
  });

  test.each([
    { format: 'png' as const, type: 'image/png', magic: [0x89, 0x50, 0x4e, 0x47] },
    { format: 'webp' as const, type: 'image/webp', magic: [0x52, 0x49, 0x46, 0x46] },
    { format: 'jpeg' as const, type: 'image/jpeg', magic: [0xff, 0xd8, 0xff] },
  ])('$format output', async ({ format, type, magic }) => {
    const info = await describeFile(big);
    const out = await renderSlideThumbnail(big, info, { size: 256, format });
    expect(out.contentType).toBe(type);
    expect([...out.data.subarray(0, magic.length)]).toEqual(magic);
    expect(Math.max(out.width, out.height)).toBe(256);
  });

  test('16-bit samples come out as an 8-bit thumbnail', async () => {
    const file = writeFile('grey16.tif', [
      { width: 600, height: 400, samplesPerPixel: 1, bitsPerSample: 16, fill: 0x40 },
    ]);
    const out = await renderSlideThumbnail(file, await describeFile(file), { size: 300 });
    const meta = await sharp(out.data).metadata();
    expect([meta.width, meta.height, meta.depth]).toEqual([300, 200, 'uchar']);
  });

  test('a corrupt JPEG tile in the chosen page → CORRUPT_FILE', async () => {
    const file = path.join(tmp, 'bad-tile.tif');
    await sharp({ create: { width: 2000, height: 1500, channels: 3, background: '#806040' } })
      .tiff({ tile: true, pyramid: true, compression: 'jpeg', tileWidth: 256, tileHeight: 256 })
      .toFile(file);
    const bytes = readFileSync(file);
    const tiff = await readTiff(byteSourceFromBytes(bytes));
    const info = describeSlide(tiff);
    const picked = pickThumbnailSource(info, 256);
    const table = await readTileTable(byteSourceFromBytes(bytes), tiff.ifds[picked.ifd]!);
    for (const [i, offset] of table.offsets.entries()) {
      // A DHT marker that claims a 1-byte length right after SOI: libjpeg's "Bogus marker length".
      bytes.set([0xff, 0xc4, 0x00, 0x01], offset + 2);
      expect(table.byteCounts[i]).toBeGreaterThan(6);
    }
    writeFileSync(file, bytes);
    const err = await rejection(renderSlideThumbnail(file, info, { size: 256 }));
    expect(err.code).toBe('CORRUPT_FILE');
    expect(err.retryable).toBe(false);
  });

  test('tiles past the end of a truncated file → CORRUPT_FILE before libtiff paints them grey', async () => {
    const file = writeFile('tile-past-end.tif', [{ width: 600, height: 400, tile: [256, 256], fill: 50 }]);
    const bytes = readFileSync(file);
    const info = await describeFile(file);
    const ifd = (await readTiff(byteSourceFromBytes(bytes))).ifds[0]!;
    new DataView(bytes.buffer, bytes.byteOffset).setUint32(
      ifd.entries.get(324)!.valueOffset,
      bytes.byteLength - 3,
      true,
    );
    writeFileSync(file, bytes);
    expect((await rejection(renderSlideThumbnail(file, info))).code).toBe('CORRUPT_FILE');
  });

  test('a file that no longer matches its description → CORRUPT_FILE', async () => {
    const file = writeFile('changed.tif', [{ width: 64, height: 64, samplesPerPixel: 1 }]);
    const info = await describeFile(file);
    writeFileSync(file, writeTiff([{ width: 32, height: 32, samplesPerPixel: 1 }]));
    expect((await rejection(renderSlideThumbnail(file, info))).code).toBe('CORRUPT_FILE');
  });

  test('a file that is not a TIFF at all → UNSUPPORTED_FORMAT', async () => {
    const info = await describeFile(writeFile('ok.tif', [{ width: 64, height: 64, samplesPerPixel: 1 }]));
    const file = path.join(tmp, 'not-a-tiff.tif');
    writeFileSync(file, Buffer.from('plain text, not an image'));
    expect((await rejection(renderSlideThumbnail(file, info))).code).toBe('UNSUPPORTED_FORMAT');
  });

  test.each([0, -5, 1.5, 10000])('size %s → VALIDATION_FAILED', async (size) => {
    const info = await describeFile(big);
    expect((await rejection(renderSlideThumbnail(big, info, { size }))).code).toBe('VALIDATION_FAILED');
  });
});
