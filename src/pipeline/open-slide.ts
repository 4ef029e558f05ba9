import type { Context } from '../context.js';
import type { FileRow } from '../db/schema.js';
import { AppError } from '../errors.js';
import { parseDicom } from '../formats/dicom/parse-dicom.js';
import { isWsiInstance, wsiImageFlavor } from '../formats/slide/dicom-wsi.js';
import {
  createRawTileCache,
  type DicomWsiInput,
  openDicomWsiSlide,
  openTiffSlide,
  type SlideTileReader,
} from '../imaging/slide-tiles.js';
import { objectByteSource } from '../storage/object-byte-source.js';

/** DICOM WSI headers (with their per-frame functional groups) fit in this; pixel data is read by range. */
const WSI_HEADER_BYTES = 16 * 1024 * 1024;

/** Decoded source tiles shared by every open slide of a process, so the memory bound is one number. */
const rawTiles = createRawTileCache(128 * 1024 * 1024);

/** The slide a file belongs to: itself for TIFF formats; its series (all instances) for DICOM WSI. */
export async function slideFilesFor(ctx: Context, file: FileRow): Promise<FileRow[]> {
  if (file.format !== 'dicom-wsi') return [file];
  const series = (file.metadata as Record<string, unknown>).seriesInstanceUid;
  return ctx.db
    .selectFrom('files')
    .selectAll()
    .where('case_id', '=', file.case_id)
    .where('format', '=', 'dicom-wsi')
    .where('duplicate_of', 'is', null)
    .where('status', '!=', 'failed')
    .where(({ ref, eb }) => eb(ref('metadata', '->>').key('seriesInstanceUid'), '=', String(series)))
    .orderBy('received_at')
    .execute();
}

/**
 * Opens a tile reader over stored objects: only headers and the needed tiles are read, by byte range.
 * For DICOM WSI, label and overview instances become associated images, not levels (describeDicomWsi).
 */
export async function openStoredSlide(ctx: Context, files: FileRow[], id: string): Promise<SlideTileReader> {
  const first = files[0];
  if (!first) throw new AppError('NOT_FOUND', 'no slide');
  if (first.format !== 'dicom-wsi') {
    return openTiffSlide(objectByteSource(ctx.storage, first.object_key, Number(first.bytes)), {
      id,
      tileCache: rawTiles,
    });
  }
  return openDicomWsiSlide(await loadWsiInputs(ctx, files), { id, tileCache: rawTiles });
}

/** Parses the headers of a DICOM WSI series' stored instances; their frames stay in storage, read by range. */
export async function loadWsiInputs(ctx: Context, files: FileRow[]): Promise<DicomWsiInput[]> {
  const inputs: DicomWsiInput[] = [];
  for (const f of files) {
    const size = Number(f.bytes);
    const head = await ctx.storage.getBytes(f.object_key, {
      start: 0,
      end: Math.min(size, WSI_HEADER_BYTES) - 1,
    });
    const instance = parseDicom(head);
    if (!isWsiInstance(instance)) continue;
    inputs.push({ instance, source: objectByteSource(ctx.storage, f.object_key, size) });
  }
  return inputs;
}

/** A series with no VOLUME image (only a label, an overview or a region map) is part of a slide, not one. */
export function hasPyramid(inputs: readonly DicomWsiInput[]): boolean {
  return inputs.some((i) => wsiImageFlavor(i.instance) === 'VOLUME');
}

/** A small LRU of open readers: a viewer asks for many tiles of one slide, and opening reads its directories. */
export class SlideReaderCache {
  private readonly readers = new Map<string, Promise<SlideTileReader>>();
  constructor(private readonly max = 16) {}

  get(key: string, open: () => Promise<SlideTileReader>): Promise<SlideTileReader> {
    const hit = this.readers.get(key);
    if (hit) {
      this.readers.delete(key);
      this.readers.set(key, hit);
      return hit;
    }
    const opening = open();
    // A failed open is not cached: the next request tries again (the object may have been mid-write).
    opening.catch(() => this.readers.delete(key));
    this.readers.set(key, opening);
    while (this.readers.size > this.max) {
      const oldest = this.readers.keys().next().value as string;
      this.readers.delete(oldest);
    }
    return opening;
  }
}
