import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import sharp from 'sharp';
import { afterAll, describe, expect, test } from 'vitest';
import { AppError } from '../../src/errors.js';
import { parseDicom } from '../../src/formats/dicom/parse-dicom.js';
import { dziLayout } from '../../src/formats/slide/deep-zoom.js';
import {
  planSlideDeidentification,
  writeDeidentifiedTiff,
} from '../../src/formats/slide/deidentify-slide.js';
import { describeSlide, type SlideInfo } from '../../src/formats/slide/describe-slide.js';
import { describeDicomWsi, wsiImageFlavor } from '../../src/formats/slide/dicom-wsi.js';
import { readTiff, type TiffFile } from '../../src/formats/slide/tiff.js';
import { byteSourceFromBytes } from '../../src/formats/types.js';
import {
  canDecodeSlideImage,
  renderSlideThumbnail,
  renderSlideThumbnailFromReader,
} from '../../src/imaging/render-slide.js';
import { openDicomWsiSlide, openTiffSlide, renderDziTile } from '../../src/imaging/slide-tiles.js';
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

/** DICOM WSI series of the corpus: a folder is one series, a loose file its own. */
function dicomSeries(): Array<{ name: string; files: string[] }> {
  const bySeries = new Map<string, string[]>();
  for (const [rel, entry] of Object.entries(truth)) {
    if (!rel.startsWith('wsi/dicom-wsi/') || entry.SOPClassUID !== '1.2.840.10008.5.1.4.1.1.77.1.6') continue;
    const parts = rel.split('/');
    const key = parts.length > 3 ? parts.slice(0, 3).join('/') : rel;
    bySeries.set(key, [...(bySeries.get(key) ?? []), rel]);
  }
  return [...bySeries].map(([name, files]) => ({ name, files: files.sort() }));
}

const hasOpenslide = spawnSync('openslide-show-properties', ['--help']).error === undefined;

describe.runIf(hasCorpus)('slide corpus: DICOM WSI, Deep Zoom, de-identification', () => {
  const tmp = mkdtempSync(path.join(os.tmpdir(), 'teleread-slide-corpus-'));
  afterAll(() => rmSync(tmp, { recursive: true, force: true }));
  const series = dicomSeries();

  test('the corpus has DICOM WSI series', () => {
    expect(series.length).toBeGreaterThan(0);
  });

  test.each(series)(
    '$name: levels from the Total Pixel Matrix, thumbnail, tiles by range',
    async ({ files }) => {
      const bytes = files.map((rel) => readFileSync(corpusPath(rel)));
      const instances = bytes.map((b) => parseDicom(b));
      const info = describeDicomWsi(instances);
      const volumes = files
        .filter((_, i) => wsiImageFlavor(instances[i]!) === 'VOLUME')
        .map((rel) => [
          Number(truth[rel]!.TotalPixelMatrixColumns),
          Number(truth[rel]!.TotalPixelMatrixRows),
        ]);
      const distinct = [...new Map(volumes.map((v) => [v.join('x'), v])).values()].sort(
        (a, b) => b[0]! - a[0]!,
      );
      expect(info.levels.map((l) => [l.width, l.height])).toEqual(distinct);
      const labels = files.filter((_, i) => wsiImageFlavor(instances[i]!) === 'LABEL');
      expect(info.associated.filter((a) => a.name === 'label')).toHaveLength(labels.length > 0 ? 1 : 0);

      const inMemory = await openDicomWsiSlide(instances.map((instance) => ({ instance })));
      const thumb = await renderSlideThumbnailFromReader(inMemory, { size: 256, format: 'png' });
      const base = info.levels[0]!;
      expect(Math.max(thumb.width, thumb.height)).toBe(Math.min(256, Math.max(base.width, base.height)));

      const ranged = await openDicomWsiSlide(
        instances.map((instance, i) => ({ instance, source: byteSourceFromBytes(bytes[i]!) })),
      );
      const top = dziLayout(base.width, base.height).maxLevel;
      const a = await sharp(await renderDziTile(inMemory, top, 0, 0, { format: 'png' }))
        .raw()
        .toBuffer();
      const b = await sharp(await renderDziTile(ranged, top, 0, 0, { format: 'png' }))
        .raw()
        .toBuffer();
      expect(b.equals(a)).toBe(true);
    },
  );

  const readable = slides.filter(({ rel, entry }) => !unreadable(rel, entry));

  test.each(readable)('$rel: Deep Zoom tiles at full size and at the top of the pyramid', async ({ rel }) => {
    const bytes = readFileSync(corpusPath(rel));
    const reader = await openTiffSlide(byteSourceFromBytes(bytes));
    const base = reader.info.levels[0]!;
    const layout = dziLayout(base.width, base.height);
    const full = await sharp(await renderDziTile(reader, layout.maxLevel, 0, 0)).metadata();
    expect([full.width, full.height]).toEqual([Math.min(base.width, 255), Math.min(base.height, 255)]);
    const small = await sharp(await renderDziTile(reader, Math.min(layout.maxLevel, 6), 0, 0)).metadata();
    expect(small.width).toBe(layout.levels[Math.min(layout.maxLevel, 6)]!.width);
  });

  test.each(slides.filter(({ rel }) => rel.startsWith('wsi/broken/')))(
    '$rel: Deep Zoom tile refused with a stable code',
    async ({ rel }) => {
      const reader = await openTiffSlide(byteSourceFromBytes(readFileSync(corpusPath(rel))));
      const err = await renderDziTile(reader, 0, 0, 0).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(AppError);
      expect(['CORRUPT_FILE', 'UNSUPPORTED_FORMAT']).toContain((err as AppError).code);
    },
  );

  const deidentifiable = slides.filter(
    ({ rel, entry }) => !unreadable(rel, entry) && entry.openslide_rc === 0,
  );

  test.each(deidentifiable)(
    '$rel: de-identified copy keeps every level and loses label and macro',
    async ({ rel, entry }) => {
      const bytes = readFileSync(corpusPath(rel));
      const source = byteSourceFromBytes(bytes);
      const tiff = await readTiff(source);
      const parts: Uint8Array[] = [];
      for await (const chunk of writeDeidentifiedTiff(source, tiff, planSlideDeidentification(tiff)))
        parts.push(chunk);
      const copy = Buffer.concat(parts);
      const file = path.join(tmp, path.basename(rel));
      writeFileSync(file, copy);
      const before = describeSlide(tiff);
      const after = describeSlide(await readTiff(byteSourceFromBytes(copy)));
      expect(after.format).toBe(before.format);
      expect(after.levels.map((l) => [l.width, l.height])).toEqual(
        before.levels.map((l) => [l.width, l.height]),
      );
      expect(after.associated.filter((a) => a.name === 'label' || a.name === 'macro')).toEqual([]);
      for (const level of after.levels) {
        const { info } = await sharp(file, { page: level.ifd, limitInputPixels: false })
          .raw()
          .toBuffer({ resolveWithObject: true });
        expect([info.width, info.height]).toEqual([level.width, level.height]);
      }
      if (hasOpenslide) {
        const properties = execFileSync('openslide-show-properties', [file], { encoding: 'utf8' });
        expect(properties).toContain(`openslide.level-count: '${entry.openslide_level_count}'`);
        const levels = entry.openslide_levels as Array<[number, number]>;
        levels.forEach(([w, h], i) => {
          expect(properties).toContain(`openslide.level[${i}].width: '${w}'`);
          expect(properties).toContain(`openslide.level[${i}].height: '${h}'`);
        });
        expect(properties).not.toMatch(/aperio\.(Filename|User|Date|Time)\b|hamamatsu\.Reference/);
      }
    },
  );
});
