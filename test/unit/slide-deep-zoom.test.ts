import { describe, expect, test } from 'vitest';
import { AppError } from '../../src/errors.js';
import {
  dziDescriptor,
  dziLayout,
  dziTileRegion,
  pickLevelForDownsample,
} from '../../src/formats/slide/deep-zoom.js';
import type { SlideInfo, SlideLevel } from '../../src/formats/slide/describe-slide.js';
import { TileCache } from '../../src/imaging/tile-cache.js';

function level(width: number, height: number, downsample: number): SlideLevel {
  return {
    ifd: 0,
    width,
    height,
    compression: 'jpeg',
    compressionCode: 7,
    samplesPerPixel: 3,
    bitsPerSample: 8,
    downsample,
  };
}

const slide: SlideInfo = {
  format: 'generic-tiff',
  levels: [level(40000, 30000, 1), level(10000, 7500, 4), level(2500, 1875, 16), level(625, 468, 64)],
  associated: [],
  properties: {},
};

describe('dziLayout', () => {
  test('levels halve from full size to one pixel', () => {
    const layout = dziLayout(40000, 30000);
    expect(layout.maxLevel).toBe(16);
    expect(layout.levels[16]).toMatchObject({ width: 40000, height: 30000, cols: 158, rows: 119, scale: 1 });
    expect(layout.levels[15]).toMatchObject({ width: 20000, height: 15000, scale: 2 });
    expect(layout.levels[0]).toMatchObject({ width: 1, height: 1, cols: 1, rows: 1 });
  });

  test.each([
    { width: 1, height: 1, maxLevel: 0 },
    { width: 256, height: 100, maxLevel: 8 },
    { width: 257, height: 100, maxLevel: 9 },
  ])('$width x $height has levels 0..$maxLevel', ({ width, height, maxLevel }) => {
    expect(dziLayout(width, height).maxLevel).toBe(maxLevel);
  });

  test.each([{ tileSize: 0 }, { tileSize: 254, overlap: 254 }, { tileSize: 1.5 }])(
    'bad options %o are refused',
    (opts) => {
      expect(() => dziLayout(100, 100, opts)).toThrow(AppError);
    },
  );
});

describe('dziDescriptor', () => {
  test('the XML OpenSeadragon reads', () => {
    expect(dziDescriptor(slide)).toBe(
      '<?xml version="1.0" encoding="UTF-8"?>\n' +
        '<Image xmlns="http://schemas.microsoft.com/deepzoom/2008" Format="jpeg" Overlap="1" TileSize="254">' +
        '<Size Width="40000" Height="30000"/></Image>\n',
    );
  });
});

describe('pickLevelForDownsample', () => {
  test.each([
    { downsample: 1, index: 0 },
    { downsample: 3.9, index: 0 },
    { downsample: 4, index: 1 },
    { downsample: 8, index: 1 },
    { downsample: 64, index: 3 },
    { downsample: 1024, index: 3 },
    // 8.1 (a level rounded down when halved) still serves a downsample of 8.
    { downsample: 8, index: 1, levels: [level(300, 250, 1), level(37, 31, 300 / 37)] },
  ])('downsample $downsample reads level $index', ({ downsample, index, levels }) => {
    expect(pickLevelForDownsample(levels ?? slide.levels, downsample)).toBe(index);
  });
});

describe('dziTileRegion', () => {
  test.each([
    // Full size: level 0, tile rectangles with overlap on inner edges only.
    {
      dz: 16,
      col: 0,
      row: 0,
      region: { sourceLevel: 0, x: 0, y: 0, sourceWidth: 255, sourceHeight: 255, width: 255, height: 255 },
    },
    {
      dz: 16,
      col: 1,
      row: 2,
      region: {
        sourceLevel: 0,
        x: 253,
        y: 507,
        sourceWidth: 256,
        sourceHeight: 256,
        width: 256,
        height: 256,
      },
    },
    // Last column: 40000 − 157 × 254 + 1 = 79 pixels.
    {
      dz: 16,
      col: 157,
      row: 0,
      region: {
        sourceLevel: 0,
        x: 39877,
        y: 0,
        sourceWidth: 123,
        sourceHeight: 255,
        width: 123,
        height: 255,
      },
    },
    // Scale 2: still level 0 (level 1 is 4×), twice the pixels then shrunk.
    {
      dz: 15,
      col: 1,
      row: 0,
      region: { sourceLevel: 0, x: 506, y: 0, sourceWidth: 512, sourceHeight: 510, width: 256, height: 255 },
    },
    // Scale 4 is level 1 exactly.
    {
      dz: 14,
      col: 2,
      row: 1,
      region: {
        sourceLevel: 1,
        x: 507,
        y: 253,
        sourceWidth: 256,
        sourceHeight: 256,
        width: 256,
        height: 256,
      },
    },
    // Scale 256: under the smallest level (64×), cut from it and shrunk.
    {
      dz: 8,
      col: 0,
      row: 0,
      region: { sourceLevel: 3, x: 0, y: 0, sourceWidth: 625, sourceHeight: 468, width: 157, height: 118 },
    },
  ])('level $dz tile $col,$row', ({ dz, col, row, region }) => {
    expect(dziTileRegion(slide, dz, col, row)).toMatchObject(region);
  });

  test.each([
    { dz: 17, col: 0, row: 0 },
    { dz: 16, col: 158, row: 0 },
    { dz: 16, col: 0, row: 119 },
    { dz: 0, col: 1, row: 0 },
    { dz: -1, col: 0, row: 0 },
    { dz: 16, col: -1, row: 0 },
  ])('tile $col,$row of level $dz is NOT_FOUND', ({ dz, col, row }) => {
    try {
      dziTileRegion(slide, dz, col, row);
      expect.unreachable();
    } catch (err) {
      expect(err).toBeInstanceOf(AppError);
      expect((err as AppError).code).toBe('NOT_FOUND');
    }
  });
});

describe('TileCache', () => {
  const sized = () => new TileCache<Uint8Array>({ maxBytes: 100, sizeOf: (v) => v.length });

  test('evicts least recently used entries past the byte budget', () => {
    const cache = sized();
    cache.set('a', new Uint8Array(40));
    cache.set('b', new Uint8Array(40));
    cache.get('a');
    cache.set('c', new Uint8Array(40));
    expect(cache.get('b')).toBeUndefined();
    expect(cache.get('a')).toBeDefined();
    expect(cache.stats()).toMatchObject({ entries: 2, bytes: 80 });
  });

  test('an entry larger than the budget is not kept', () => {
    const cache = sized();
    cache.set('a', new Uint8Array(10));
    cache.set('huge', new Uint8Array(101));
    expect(cache.get('huge')).toBeUndefined();
    expect(cache.get('a')).toBeDefined();
  });

  test('concurrent misses share one computation; failures are not cached', async () => {
    const cache = sized();
    let calls = 0;
    const make = async () => {
      calls++;
      return new Uint8Array(5);
    };
    const [x, y] = await Promise.all([cache.getOrCreate('k', make), cache.getOrCreate('k', make)]);
    expect(x).toBe(y);
    expect(calls).toBe(1);
    await expect(cache.getOrCreate('bad', async () => Promise.reject(new Error('boom')))).rejects.toThrow(
      'boom',
    );
    expect(await cache.getOrCreate('bad', make)).toHaveLength(5);
  });

  test('deletePrefix drops one slide', () => {
    const cache = sized();
    cache.set('s1:a', new Uint8Array(1));
    cache.set('s1:b', new Uint8Array(1));
    cache.set('s2:a', new Uint8Array(1));
    cache.deletePrefix('s1:');
    expect(cache.stats().entries).toBe(1);
  });
});
