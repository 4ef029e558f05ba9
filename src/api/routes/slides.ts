import { Type } from 'typebox';
import type { Context } from '../../context.js';
import { getCaseForPrincipal } from '../../db/case-queries.js';
import { AppError } from '../../errors.js';
import { type DziOptions, dziDescriptor } from '../../formats/slide/deep-zoom.js';
import { createEncodedTileCache, renderDziTile } from '../../imaging/slide-tiles.js';
import { openStoredSlide, SlideReaderCache, slideFilesFor } from '../../pipeline/open-slide.js';
import { type Principal, principalOf, requireRole } from '../auth.js';
import type { App } from '../build-app.js';

/** The descriptor and every tile must agree on this layout, or the viewer asks for tiles that do not exist. */
const LAYOUT: DziOptions = { tileSize: 254, overlap: 1, format: 'jpeg' };
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const SLIDE_FORMATS = [
  'aperio-svs',
  'hamamatsu-ndpi',
  'ome-tiff',
  'philips-tiff',
  'generic-tiff',
  'dicom-wsi',
];

/**
 * Deep Zoom for the slide viewer, served on demand: the descriptor, and each tile cut from the nearest pyramid
 * level by byte-range reads of the stored slide. No pyramid is generated up front (a full one costs ~25 s per
 * gigapixel; one tile costs milliseconds). A slide is addressed by the id of one of its files.
 */
export function registerSlideRoutes(app: App, ctx: Context): void {
  const readers = new SlideReaderCache(16);
  const tiles = createEncodedTileCache(64 * 1024 * 1024);
  const anyRole = requireRole(ctx.db, 'clinic', 'reader', 'ops', 'admin');

  async function slideFor(who: Principal, caseId: string, slideId: string) {
    if (!UUID.test(slideId)) throw new AppError('NOT_FOUND', `no slide ${slideId}`);
    const kase = await getCaseForPrincipal(ctx.db, who, caseId);
    if (!kase) throw new AppError('NOT_FOUND', `no case ${caseId}`);
    const file = await ctx.db
      .selectFrom('files')
      .selectAll()
      .where('id', '=', slideId)
      .where('case_id', '=', caseId)
      .where('format', 'in', SLIDE_FORMATS)
      .executeTakeFirst();
    if (!file || file.status === 'failed')
      throw new AppError('NOT_FOUND', `case ${caseId} has no slide ${slideId}`);
    return readers.get(slideId, async () => openStoredSlide(ctx, await slideFilesFor(ctx, file), slideId));
  }

  app.get(
    '/v1/cases/:id/slides/:descriptor',
    {
      onRequest: anyRole,
      schema: {
        summary: 'Deep Zoom descriptor of a slide: GET …/slides/{slideId}.dzi',
        params: Type.Object({
          id: Type.String({ format: 'uuid' }),
          descriptor: Type.String({ pattern: '\\.dzi$' }),
        }),
      },
    },
    async (request, reply) => {
      const { id, descriptor } = request.params as { id: string; descriptor: string };
      const slide = await slideFor(principalOf(request), id, descriptor.replace(/\.dzi$/, ''));
      return reply
        .header('content-type', 'application/xml')
        .header('cache-control', 'private, max-age=3600')
        .send(dziDescriptor(slide.info, LAYOUT));
    },
  );

  app.get(
    '/v1/cases/:id/slides/:files/:level/:tile',
    {
      onRequest: anyRole,
      schema: {
        summary: 'One Deep Zoom tile: GET …/slides/{slideId}_files/{level}/{col}_{row}.jpeg',
        params: Type.Object({
          id: Type.String({ format: 'uuid' }),
          files: Type.String({ pattern: '_files$' }),
          level: Type.Integer({ minimum: 0, maximum: 40 }),
          tile: Type.String({ pattern: '^\\d{1,7}_\\d{1,7}\\.jpe?g$' }),
        }),
      },
    },
    async (request, reply) => {
      const p = request.params as { id: string; files: string; level: number; tile: string };
      const slide = await slideFor(principalOf(request), p.id, p.files.replace(/_files$/, ''));
      const [col, row] = p.tile
        .replace(/\.jpe?g$/, '')
        .split('_')
        .map(Number) as [number, number];
      const data = await renderDziTile(slide, p.level, col, row, { ...LAYOUT, cache: tiles });
      return reply
        .header('content-type', 'image/jpeg')
        .header('cache-control', 'private, max-age=86400')
        .send(data);
    },
  );
}
