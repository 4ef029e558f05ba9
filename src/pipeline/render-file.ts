import { AppError } from '../errors.js';
import { readInstanceForFrame } from '../formats/dicom/read-frame-by-range.js';
import type { Ecg } from '../formats/ecg/ecg.js';
import { triageEcg } from '../formats/ecg/measure.js';
import { type EcgTriageSummary, isEcgFormat, loadEcgFile, type SiblingReader } from '../formats/inspect.js';
import type { ByteSource } from '../formats/types.js';
import { renderDicomFrame } from '../imaging/render-dicom.js';
import { renderEcg } from '../imaging/render-ecg.js';
import { renderSlideThumbnailFromReader } from '../imaging/render-slide.js';
import { openTiffSlide } from '../imaging/slide-tiles.js';

export type ImageEncoding = 'png' | 'webp' | 'jpeg';

export interface RenderedImage {
  data: Buffer;
  contentType: string;
  width: number;
  height: number;
  /** ECG pages: the vector page with the same layout as `data`. */
  svg?: string;
}

/** How a renderer reaches a file's bytes; the pipeline backs it with object storage, the CLI with the disk. */
export interface FileAccess {
  name: string;
  bytes(): Promise<Uint8Array>;
  source(): ByteSource;
  sibling: SiblingReader;
  /** The triage ingest already computed for this ECG (files.metadata.triage), so rendering does not redo it. */
  ecgTriage?: EcgTriageSummary | undefined;
}

/**
 * The 12-lead page with its measurements and flags in the header: laid out once, painted once at the size it
 * is shown, and the same layout as SVG for the viewer (`svg`), so nothing is rasterised twice.
 */
async function renderEcgPage(
  ecg: Ecg,
  width: number,
  encoding?: ImageEncoding,
  known?: EcgTriageSummary,
): Promise<RenderedImage> {
  const { svg, image } = await renderEcg(ecg, {
    width,
    format: encoding === 'webp' ? 'webp' : 'png',
    // Normalisation and QRS detection are the costly part of triage: reuse the ingest step's result.
    triage: known
      ? {
          heartRate: known.heartRate,
          flags: known.flags,
          quality: { overall: known.quality },
          rr: { irregular: known.rrIrregular },
        }
      : triageEcg(ecg),
  });
  return { ...image, svg };
}

/** Longest side of the representative image per kind: ECG pages need width to stay legible. */
export const THUMBNAIL_WIDTH = { ecg: 800, pathology: 512 } as const;

/**
 * The representative image the pipeline stores for one file of a given format (the same one
 * `bin/teleread render` writes). DICOM renders its middle frame; ECG the 12-lead page; a slide its pyramid.
 * `size` is the longest side of a DICOM image; ECG pages and slides keep their own width (THUMBNAIL_WIDTH)
 * unless `sizeForEveryKind` (the CLI's explicit --size) says otherwise. DICOM overlay planes are drawn only
 * when `overlays` says so: stored thumbnails are shown to every view of the case, de-identified ones included,
 * and de-identification removes overlays (their graphics may name the patient). The viewer's rendered frames
 * and the CLI draw them.
 */
export async function renderFileThumbnail(
  format: string,
  file: FileAccess,
  size: number,
  encoding?: ImageEncoding,
  sizeForEveryKind = false,
  overlays = false,
): Promise<RenderedImage> {
  if (isEcgFormat(format)) {
    return renderEcgPage(
      await loadEcgFile(format, await file.bytes(), file.name, file.sibling),
      sizeForEveryKind ? size : THUMBNAIL_WIDTH.ecg,
      encoding,
      file.ecgTriage,
    );
  }
  const slideSize = sizeForEveryKind ? size : THUMBNAIL_WIDTH.pathology;
  switch (format) {
    case 'dicom': {
      const { instance, frame } = await readInstanceForFrame(file.source());
      return renderDicomFrame(instance, { frame, size, format: encoding ?? 'webp', overlays });
    }
    case 'dicom-wsi': {
      const { instance, frame } = await readInstanceForFrame(file.source());
      return renderDicomFrame(instance, { frame, size: slideSize, format: encoding ?? 'webp' });
    }
    case 'wfdb-signal':
      throw new AppError('UNSUPPORTED_FORMAT', `${file.name} is a WFDB signal file: render its .hea header`, {
        retryable: false,
      });
    default: {
      // Read by byte range, composed tile by tile from the smallest sufficient level: a slide of gigabytes in
      // object storage is never copied whole to local disk for one thumbnail.
      const reader = await openTiffSlide(file.source());
      return renderSlideThumbnailFromReader(reader, { size: slideSize, format: encoding ?? 'webp' });
    }
  }
}
