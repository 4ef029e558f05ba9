import { readFileSync } from 'node:fs';
import { describe, expect, test } from 'vitest';
import { AppError } from '../../src/errors.js';
import { describeSlide, type SlideInfo } from '../../src/formats/slide/describe-slide.js';
import { readTiff, type TiffFile } from '../../src/formats/slide/tiff.js';
import { byteSourceFromBytes } from '../../src/formats/types.js';
import { canDecodeSlideImage, renderSlideThumbnail } from '../../src/imaging/render-slide.js';
import { corpusPath, hasCorpus, loadTruth, type TruthEntry } from '../corpus.js';

interface TiffinfoIfd {
  w: number;
  h: number;
  tile: [number, number] | null;
  compression: string;
}

/** tiffinfo's compression names → TIFF Compression tag values; unknown ones print as "52479 (0xccff)". */
const TIFFINFO_COMPRESSION: Record<string, number> = {
  None: 1,
  'CCITT RLE': 2,
  'CCITT Group 3': 3,
  'CCITT Group 4': 4,
  LZW: 5,
  'Old-style JPEG': 6,
  JPEG: 7,
  AdobeDeflate: 8,
  PackBits: 32773,
  Deflate: 32946,
  JPEG2000: 34712,
  ZSTD: 50000,
  WEBP: 50001,
};

function tiffinfoCompression(name: string): number {
  return TIFFINFO_COMPRESSION[name] ?? Number.parseInt(name, 10);
}

const OPENSLIDE_VENDOR: Record<string, SlideInfo['format']> = {
  aperio: 'aperio-svs',
  hamamatsu: 'hamamatsu-ndpi',
  philips: 'philips-tiff',
  'generic-tiff': 'generic-tiff',
};

const truth = loadTruth();
/** Every TIFF-based slide of the corpus: the WSI entries tiffinfo could list (DICOM WSI is not TIFF). */
const slides = Object.entries(truth)
  .filter(([, entry]) => entry.kind === 'wsi' && Array.isArray(entry.tiffinfo_ifds))
  .map(([rel, entry]) => ({ rel, entry }));

async function load(rel: string): Promise<{ tiff: TiffFile; info: SlideInfo }> {
  const tiff = await readTiff(byteSourceFromBytes(readFileSync(corpusPath(rel))));
  return { tiff, info: describeSlide(tiff) };
}

/** A file libvips cannot decode, by the reference tools: vipsheader failed, a pixel read failed, or it sits
 * in wsi/broken on purpose. */
function unreadable(rel: string, entry: TruthEntry): boolean {
  const pixelCheck = entry.pixel_read_check as { rc?: number } | undefined;
  return (
    rel.startsWith('wsi/broken/') ||
    entry.vipsheader_rc !== 0 ||
    (pixelCheck !== undefined && pixelCheck.rc !== 0)
  );
}

describe.runIf(hasCorpus)('slide corpus conformance', () => {
  test('the corpus has TIFF slides to check', () => {
    expect(slides.length).toBeGreaterThan(0);
  });

  test.each(slides)('$rel: directories agree with tiffinfo', async ({ rel, entry }) => {
    const { tiff } = await load(rel);
    const expected = entry.tiffinfo_ifds as TiffinfoIfd[];
    expect(tiff.ifds).toHaveLength(entry.tiffinfo_ifd_count as number);
    expect(
      tiff.ifds.map((ifd) => ({
        w: ifd.width,
        h: ifd.height,
        tile: ifd.tileWidth === undefined ? null : [ifd.tileWidth, ifd.tileHeight],
        compression: ifd.compression,
      })),
    ).toEqual(expected.map((ifd) => ({ ...ifd, compression: tiffinfoCompression(ifd.compression) })));
  });

  const openslideReadable = slides.filter(({ entry }) => entry.openslide_rc === 0);

  test.each(openslideReadable)(
    '$rel: vendor, levels, MPP and magnification agree with OpenSlide',
    async ({ rel, entry }) => {
      const { info } = await load(rel);
      expect(info.format).toBe(OPENSLIDE_VENDOR[entry.openslide_vendor as string]);
      const openslideLevels = entry.openslide_levels as Array<[number, number]>;
      const ours = info.levels.map((l) => [l.width, l.height]);
      expect(ours[0]).toEqual(entry.openslide_level0_dimensions);
      if (info.format === 'hamamatsu-ndpi') {
        // OpenSlide 3.4 adds levels decoded at 1/2, 1/4, 1/8 scale from each NDPI JPEG; ours are the stored
        // directories only, each of which must be one of OpenSlide's levels, and its extra ones must be
        // power-of-two reductions of our smallest.
        for (const size of ours) expect(openslideLevels).toContainEqual(size);
        const smallest = info.levels.at(-1)!;
        for (const [w] of openslideLevels.filter(([w]) => w < smallest.width)) {
          expect([2, 4, 8]).toContain(smallest.width / w);
        }
      } else {
        expect(ours).toEqual(openslideLevels);
        expect(info.levels).toHaveLength(entry.openslide_level_count as number);
      }
      const mpp = entry.openslide_mpp as [string, string] | undefined;
      if (mpp) {
        expect(info.mppX).toBeCloseTo(Number(mpp[0]), 9);
        expect(info.mppY).toBeCloseTo(Number(mpp[1]), 9);
      }
      if (entry.openslide_objective_power !== undefined) {
        expect(info.objectivePower).toBe(Number(entry.openslide_objective_power));
      }
    },
  );

  test.each(slides.filter(({ rel, entry }) => !unreadable(rel, entry)))(
    '$rel: renders a thumbnail of the whole slide',
    async ({ rel }) => {
      const { info } = await load(rel);
      const out = await renderSlideThumbnail(corpusPath(rel), info, { size: 256, format: 'png' });
      const base = info.levels[0]!;
      expect(Math.max(out.width, out.height)).toBe(Math.min(256, Math.max(base.width, base.height)));
      // Same picture: the aspect ratio of level 0, within a pixel of rounding.
      expect(Math.abs(out.height - (out.width * base.height) / base.width)).toBeLessThanOrEqual(1);
    },
  );

  test.each(slides.filter(({ rel, entry }) => unreadable(rel, entry)))(
    '$rel: refused with a stable, non-retryable code',
    async ({ rel, entry }) => {
      const err = await load(rel)
        .then(({ info }) => renderSlideThumbnail(corpusPath(rel), info, { size: 256 }))
        .then(
          () => undefined,
          (e: unknown) => e,
        );
      expect(err).toBeInstanceOf(AppError);
      const appError = err as AppError;
      expect(appError.retryable).toBe(false);
      // Files whose compression we know we cannot decode are UNSUPPORTED_FORMAT; decodable ones that fail
      // to decode are CORRUPT_FILE.
      const compressions = (entry.tiffinfo_ifds as TiffinfoIfd[]).map((ifd) =>
        tiffinfoCompression(ifd.compression),
      );
      const decodable = compressions.some((code) =>
        canDecodeSlideImage({
          ifd: 0,
          width: 1,
          height: 1,
          compression: '',
          compressionCode: code,
          samplesPerPixel: 3,
          bitsPerSample: 8,
        }),
      );
      expect(appError.code).toBe(decodable ? 'CORRUPT_FILE' : 'UNSUPPORTED_FORMAT');
    },
  );
});
