import { sql } from 'kysely';
import type { Context } from '../../context.js';
import type { FileRow } from '../../db/schema.js';
import { AppError, isAppError } from '../../errors.js';
import type { EcgTriageSummary } from '../../formats/inspect.js';
import { describeSlide, type SlideInfo } from '../../formats/slide/describe-slide.js';
import { IDENTIFYING_FLAVORS, wsiImageFlavor } from '../../formats/slide/dicom-wsi.js';
import { readTiff } from '../../formats/slide/tiff.js';
import { renderSlideThumbnailFromReader } from '../../imaging/render-slide.js';
import { openDicomWsiSlide, openTiffSlide } from '../../imaging/slide-tiles.js';
import { objectByteSource } from '../../storage/object-byte-source.js';
import type { JobContext, JobOutcome } from '../job-context.js';
import { hasPyramid, loadWsiInputs, slideFilesFor } from '../open-slide.js';
import { enqueueRoute, type JobOf } from '../queues.js';
import { recordFileFailure } from '../record-failure.js';
import { type FileAccess, type RenderedImage, renderFileThumbnail } from '../render-file.js';

/** Names of the derived objects a case carries. `thumbnail` is the case's (study's) representative image. */
export const CASE_THUMBNAIL = 'thumbnail';

/**
 * process: the per-modality normalise + thumbnail step for every ingested file of a case that has not been
 * processed yet. Works per case because a study's representative image depends on all its instances.
 * Idempotent: files already stamped `processed_at` are left alone; artifacts are upserted by name.
 */
export async function handleProcess(jc: JobContext, job: JobOf<'process'>): Promise<JobOutcome> {
  const { ctx, log, requestId } = jc;
  const { db, queues } = ctx;
  const kase = await db.selectFrom('cases').selectAll().where('id', '=', job.caseId).executeTakeFirst();
  if (!kase) throw new AppError('NOT_FOUND', `case ${job.caseId} does not exist`, { retryable: false });
  const pending = await db
    .selectFrom('files')
    .selectAll()
    .where('case_id', '=', kase.id)
    .where('ingested_at', 'is not', null)
    .where('processed_at', 'is', null)
    .where('status', '!=', 'failed')
    .orderBy('received_at')
    .execute();
  if (pending.length > 0) {
    if (kase.kind === 'imaging') await processImaging(ctx, kase.id, pending);
    else await processEachFile(ctx, kase.id, pending, kase.kind === 'ecg' ? 'ecg' : 'slide');
  }

  const counts = await db
    .selectFrom('files')
    .select([
      sql<number>`count(*) FILTER (WHERE status = 'processed')::int`.as('processed'),
      sql<number>`count(*) FILTER (WHERE status <> 'failed' AND status <> 'processed')::int`.as('open'),
    ])
    .where('case_id', '=', kase.id)
    .executeTakeFirstOrThrow();
  if (counts.open > 0) return pending.length > 0 ? 'SUCCESS' : 'SKIPPED';
  if (counts.processed === 0) {
    // Every file of the case failed: nothing a reader could open, so the case fails with its files' reasons.
    await db
      .updateTable('cases')
      .set({ status: 'failed', updated_at: sql`now()` })
      .where('id', '=', kase.id)
      .where('status', '!=', 'routed')
      .execute();
    log.warn({ caseId: kase.id }, 'every file of the case failed');
    return 'SUCCESS';
  }
  await db
    .updateTable('cases')
    .set({
      processed_at: sql`coalesce(processed_at, now())`,
      status: sql`CASE WHEN status = 'routed' THEN status ELSE 'ready' END`,
      updated_at: sql`now()`,
    })
    .where('id', '=', kase.id)
    .execute();
  log.info({ caseId: kase.id, files: pending.length }, 'case processed');
  if (!kase.routed_at) await enqueueRoute(queues, kase.id, requestId);
  return pending.length > 0 ? 'SUCCESS' : 'SKIPPED';
}

/**
 * One series thumbnail per series, from its middle instance, and the first series' as the study thumbnail. The
 * middle is taken over every instance of the series the case holds, not only the new ones, so a late instance
 * does not replace a series' picture with itself; a series whose middle has not moved keeps its thumbnail.
 */
async function processImaging(ctx: Context, caseId: string, files: FileRow[]): Promise<void> {
  const touched = new Set(files.map((f) => seriesOf(f)));
  const all = await ctx.db
    .selectFrom('files')
    .selectAll()
    .where('case_id', '=', caseId)
    .where('ingested_at', 'is not', null)
    .where('status', '!=', 'failed')
    .where('duplicate_of', 'is', null)
    .execute();
  const bySeries = new Map<string, FileRow[]>();
  for (const f of all) {
    const series = seriesOf(f);
    // Reports, presentation states and key object selections stay in the case, processed, but have no picture
    // to offer. Rows ingested before the flag was kept have none: they are tried, as they always were.
    if (f.metadata.hasPixelData === false) continue;
    if (touched.has(series)) bySeries.set(series, [...(bySeries.get(series) ?? []), f]);
  }
  for (const [seriesUid, seriesFiles] of bySeries) {
    const ordered = [...seriesFiles].sort(
      (a, b) =>
        Number(a.metadata.instanceNumber ?? 0) - Number(b.metadata.instanceNumber ?? 0) ||
        a.received_at.getTime() - b.received_at.getTime(),
    );
    const name = `series-${safeName(seriesUid)}.webp`;
    const mid = Math.floor(ordered.length / 2);
    const existing = await ctx.db
      .selectFrom('artifacts')
      .select(['name', 'file_id'])
      .where('case_id', '=', caseId)
      .where('name', 'in', [name, CASE_THUMBNAIL])
      .execute();
    // Unchanged only if the study thumbnail made with it is there too: a run that died between the two
    // saves must finish the pair.
    const current = existing.find((a) => a.name === name);
    const caseThumbnail = existing.some((a) => a.name === CASE_THUMBNAIL);
    if (current && current.file_id === ordered[mid]!.id && caseThumbnail) continue;
    // Try the middle instance first, then its neighbours: one unrenderable instance must not leave a series blank.
    const tryOrder = ordered.map((_, i) => ordered[(mid + i) % ordered.length]!);
    for (const f of tryOrder.slice(0, 3)) {
      try {
        const image = await renderFileThumbnail('dicom', storedFileAccess(ctx, f), ctx.config.thumbnailSize);
        await saveArtifact(ctx, caseId, f.id, name, image);
        await saveArtifact(ctx, caseId, f.id, CASE_THUMBNAIL, image, { onlyIfMissing: true });
        break;
      } catch (err) {
        if (!isAppError(err) || err.retryable) throw err;
        await recordFileFailure(ctx.db, f.id, err);
      }
    }
  }
  await markProcessed(ctx, files);
}

function seriesOf(f: FileRow): string {
  return String((f.metadata as Record<string, unknown>).seriesInstanceUid ?? 'unknown');
}

/** ECG records and slides: one image per file (a WFDB signal file rides with its header). */
async function processEachFile(
  ctx: Context,
  caseId: string,
  files: FileRow[],
  prefix: string,
): Promise<void> {
  await processDicomWsiSeries(
    ctx,
    caseId,
    files.filter((f) => f.format === 'dicom-wsi'),
  );
  for (const f of files) {
    if (f.format === 'wfdb-signal' || f.format === 'dicom-wsi') continue;
    await renderOrFail(ctx, f, async () => {
      const image = await renderFileThumbnail(
        f.format ?? '',
        storedFileAccess(ctx, f),
        ctx.config.thumbnailSize,
      );
      const ext =
        image.contentType === 'image/png' ? 'png' : image.contentType === 'image/webp' ? 'webp' : 'jpg';
      await saveArtifact(ctx, caseId, f.id, `${prefix}-${f.id}.${ext}`, image);
      if (image.svg) {
        const data = Buffer.from(image.svg);
        const vector = { data, contentType: 'image/svg+xml', width: image.width, height: image.height };
        await saveArtifact(ctx, caseId, f.id, `${prefix}-${f.id}.svg`, vector);
      }
      await saveArtifact(ctx, caseId, f.id, CASE_THUMBNAIL, image, { onlyIfMissing: true });
      if (prefix === 'slide') await saveTiffLabels(ctx, caseId, f);
    });
  }
  await markProcessed(ctx, files);
}

/**
 * A DICOM WSI slide is a series: one instance per pyramid level plus label and overview. Its thumbnail is
 * composed tile by tile from the smallest level that is big enough, reading frames by byte range. The slide is
 * named after its first instance's file id, which is also its id in the Deep Zoom routes.
 */
async function processDicomWsiSeries(ctx: Context, caseId: string, files: FileRow[]): Promise<void> {
  const seriesSeen = new Set<string>();
  for (const f of files) {
    const series = String((f.metadata as Record<string, unknown>).seriesInstanceUid ?? f.id);
    if (seriesSeen.has(series)) continue;
    seriesSeen.add(series);
    const slideFiles = await slideFilesFor(ctx, f);
    const slideId = slideFiles[0]?.id ?? f.id;
    try {
      const inputs = await loadWsiInputs(ctx, slideFiles);
      if (!hasPyramid(inputs)) continue;
      const reader = await openDicomWsiSlide(inputs, { id: slideId });
      const image = await renderSlideThumbnailFromReader(reader, { size: 512, format: 'webp' });
      await saveArtifact(ctx, caseId, slideId, `slide-${slideId}.webp`, image);
      await saveArtifact(ctx, caseId, slideId, CASE_THUMBNAIL, image, { onlyIfMissing: true });
      for (const input of inputs) {
        const flavor = wsiImageFlavor(input.instance);
        if (!flavor || !IDENTIFYING_FLAVORS.has(flavor)) continue;
        const file = slideFiles.find((x) => x.sop_instance_uid === input.instance.sopInstanceUid);
        if (!file) continue;
        const name = `${flavor === 'LABEL' ? 'label' : 'macro'}-${slideId}.png`;
        await saveIdentifying(ctx, caseId, file.id, name, () =>
          renderFileThumbnail('dicom-wsi', storedFileAccess(ctx, file), LABEL_SIZE, 'png'),
        );
      }
    } catch (err) {
      if (!isAppError(err) || err.retryable) throw err;
      for (const sf of slideFiles.filter((x) => files.some((y) => y.id === x.id))) {
        await recordFileFailure(ctx.db, sf.id, err);
      }
    }
  }
}

/** Longest side of a stored label or macro: the label's text and barcode stay legible. */
const LABEL_SIZE = 1024;

/**
 * A TIFF slide's label and macro pages, stored as artifacts flagged identifying (they photograph the glass
 * label: the patient's name, the case barcode), which only views that may see identified data are served.
 */
async function saveTiffLabels(ctx: Context, caseId: string, f: FileRow): Promise<void> {
  const source = objectByteSource(ctx.storage, f.object_key, Number(f.bytes));
  const tiff = await readTiff(source);
  const info = describeSlide(tiff);
  for (const image of info.associated) {
    if (image.name !== 'label' && image.name !== 'macro') continue;
    // The page alone, described as a one-level slide, goes through the same decoders as a thumbnail.
    const page: SlideInfo = { ...info, levels: [{ ...image, downsample: 1 }], associated: [] };
    await saveIdentifying(ctx, caseId, f.id, `${image.name}-${f.id}.png`, async () =>
      renderSlideThumbnailFromReader(await openTiffSlide(source, { info: page, tiff }), {
        size: LABEL_SIZE,
        format: 'png',
      }),
    );
  }
}

/** A label that cannot be decoded is no reason to fail the slide: the pyramid is what is read. */
async function saveIdentifying(
  ctx: Context,
  caseId: string,
  fileId: string,
  name: string,
  render: () => Promise<RenderedImage>,
): Promise<void> {
  let image: RenderedImage;
  try {
    image = await render();
  } catch (err) {
    // Storage trouble retries the job; a page no decoder reads (whatever the error) is skipped.
    if (isAppError(err) && err.retryable) throw err;
    return;
  }
  await saveArtifact(ctx, caseId, fileId, name, image, { identifying: true });
}

/** Runs a render; a permanent error fails that file with its code, a transient one retries the whole job. */
async function renderOrFail(ctx: Context, f: FileRow, render: () => Promise<void>): Promise<void> {
  try {
    await render();
  } catch (err) {
    if (!isAppError(err) || err.retryable) throw err;
    await recordFileFailure(ctx.db, f.id, err);
  }
}

/** FileAccess over object storage: ranged reads for parsers, a private temp copy where libvips needs a path. */
export function storedFileAccess(ctx: Context, f: FileRow): FileAccess {
  return {
    name: f.name,
    ecgTriage: (f.metadata as { triage?: EcgTriageSummary }).triage,
    bytes: () => ctx.storage.getBytes(f.object_key),
    source: () => objectByteSource(ctx.storage, f.object_key, Number(f.bytes)),
    async sibling(name) {
      const sibling = await ctx.db
        .selectFrom('files')
        .select('object_key')
        .where('upload_id', '=', f.upload_id)
        .where('name', '=', name)
        .executeTakeFirst();
      return sibling ? ctx.storage.getBytes(sibling.object_key) : null;
    },
  };
}

async function markProcessed(ctx: Context, files: FileRow[]): Promise<void> {
  if (files.length === 0) return;
  await ctx.db
    .updateTable('files')
    .set({ status: 'processed', processed_at: sql`now()` })
    .where(
      'id',
      'in',
      files.map((f) => f.id),
    )
    .where('status', '!=', 'failed')
    .execute();
}

export function safeName(s: string): string {
  return s.replace(/[^\w.-]/g, '_').slice(0, 100);
}

export function artifactKey(caseId: string, name: string): string {
  return `cases/${caseId}/artifacts/${name}`;
}

/** Stores a derived image and upserts its row (a re-run replaces it, never duplicates it). */
async function saveArtifact(
  ctx: Context,
  caseId: string,
  fileId: string,
  name: string,
  image: RenderedImage,
  options: { onlyIfMissing?: boolean; identifying?: boolean } = {},
): Promise<void> {
  if (options.onlyIfMissing) {
    const existing = await ctx.db
      .selectFrom('artifacts')
      .select('id')
      .where('case_id', '=', caseId)
      .where('name', '=', name)
      .executeTakeFirst();
    if (existing) return;
  }
  const key = artifactKey(caseId, name);
  await ctx.storage.put(key, image.data, {
    contentType: image.contentType,
    contentLength: image.data.length,
  });
  await ctx.db
    .insertInto('artifacts')
    .values({
      case_id: caseId,
      file_id: fileId,
      name,
      object_key: key,
      content_type: image.contentType,
      bytes: image.data.length,
      width: image.width,
      height: image.height,
      identifying: options.identifying ?? false,
    })
    .onConflict((oc) =>
      oc.columns(['case_id', 'name']).doUpdateSet({
        file_id: fileId,
        identifying: options.identifying ?? false,
        content_type: image.contentType,
        bytes: image.data.length,
        width: image.width,
        height: image.height,
        created_at: sql`now()`,
      }),
    )
    .execute();
}
