/**
 * DICOMweb rendered and thumbnail resources (PS3.18 §10.4.1.1.3 and §10.4.1.1.4): what a DICOMweb viewer or a
 * PACS portal shows before, or instead of, the images themselves.
 *
 * - `…/instances/:sop/frames/:frame/rendered` and `…/instances/:sop/rendered` (the first frame): one frame,
 *   drawn as GET /v1/cases/:id/instances/:uid/frames/:n/rendered draws it and cached with it (rendered-frame.ts).
 *   `window=centre,width[,function]` (LINEAR only), `viewport=vw,vh` (the longest side of the image; a cropping
 *   viewport is refused), `quality` (accepted, unused).
 * - `/studies/:study/thumbnail` and `…/series/:series/thumbnail`: the study and series thumbnails the pipeline
 *   made; `…/instances/:sop/thumbnail`: the instance's middle frame at 128 px (or the viewport's size).
 *
 * Media types: image/jpeg (PS3.18's default), image/png or image/webp for renders, as Accept prefers; a thumbnail
 * made by the pipeline is sent in the type it was made in, if Accept allows it. Otherwise 406.
 *
 * Who sees what follows WADO-RS (wado.ts): a reader abroad names the study by its replacement UIDs, never gets an
 * instance whose pixels may show the patient, nor an identifying artifact, and gets renders without overlays.
 */
import type { FastifyReply, FastifyRequest } from 'fastify';
import { Type } from 'typebox';
import type { Context } from '../../context.js';
import { getOriginalUidInCase } from '../../db/uid-remaps.js';
import { AppError } from '../../errors.js';
import { acceptsMediaType, mediaRanges } from '../accept.js';
import { principalOf, requireRole } from '../auth.js';
import type { App } from '../build-app.js';
import {
  FRAME_FORMATS,
  type FrameFormat,
  parseWindow,
  type RenderedFrame,
  renderCachedFrame,
  sendRenderedFrame,
} from '../rendered-frame.js';
import { casesOfStudy, filesInScope, studyLevels } from './wado.js';

const THUMBNAIL_SIZE = 128;
const MAX_SIZE = 4096;

/** The render format Accept prefers: image/jpeg when it names none of ours specifically (`*` ranges, or none). */
function renderFormat(accept: string | undefined): FrameFormat {
  if (!accept || accept.trim() === '') return 'jpeg';
  const wanted = mediaRanges(accept)
    .map((m) => ({ type: m.type, q: Number(m.parameters.q ?? 1) }))
    .sort((a, b) => b.q - a.q);
  for (const { type } of wanted) {
    if (type === '*/*' || type === 'image/*') return 'jpeg';
    const format = (Object.keys(FRAME_FORMATS) as FrameFormat[]).find((f) => FRAME_FORMATS[f] === type);
    if (format) return format;
  }
  throw new AppError('NOT_ACCEPTABLE', 'rendered images are sent as image/jpeg, image/png or image/webp');
}

/** `window=centre,width[,function]`: PS3.18 names LINEAR, LINEAR_EXACT and SIGMOID; Teleread draws LINEAR. */
function windowOf(raw: string | undefined) {
  if (raw === undefined) return undefined;
  const [centre, width, fn] = raw.split(',');
  if (fn !== undefined && fn.trim().toUpperCase() !== 'LINEAR') {
    throw new AppError('VALIDATION_FAILED', `window function ${fn} is not supported; LINEAR is`);
  }
  return parseWindow(`${centre},${width}`);
}

/** `viewport=vw,vh`: the image is scaled to fit, keeping its aspect, so the longer side is what counts. */
function sizeOf(raw: string | undefined, fallback: number): number {
  if (raw === undefined) return fallback;
  const parts = raw.split(',');
  if (parts.length > 2) {
    throw new AppError(
      'VALIDATION_FAILED',
      'viewport=vw,vh only: a cropping viewport (sx,sy,sw,sh) is not supported',
    );
  }
  const sides = parts.map(Number);
  if (!sides.every((v) => Number.isInteger(v) && v >= 1 && v <= MAX_SIZE)) {
    throw new AppError('VALIDATION_FAILED', `viewport sides must be whole numbers from 1 to ${MAX_SIZE}`);
  }
  return Math.max(...sides);
}

const RenderQuery = Type.Object({
  window: Type.Optional(Type.String({ description: 'centre,width[,LINEAR] in modality units' })),
  viewport: Type.Optional(Type.String({ description: 'vw,vh: the rendered image fits this box' })),
  quality: Type.Optional(Type.Integer({ minimum: 1, maximum: 100 })),
});

export function registerDicomwebRenderedRoutes(app: App, ctx: Context): void {
  const roles = requireRole(ctx.db, 'clinic', 'reader', 'admin');

  /** Draws one frame of the instance the URL names, as the caller may see it. */
  async function renderFrame(request: FastifyRequest, frame: number | 'middle', defaultSize: number) {
    const scope = request.params as { studyUid: string; seriesUid: string; sopUid: string };
    const q = request.query as { window?: string; viewport?: string };
    const format = renderFormat(request.headers.accept);
    const size = sizeOf(q.viewport, defaultSize);
    const window = windowOf(q.window);
    const { files, deidentified } = await filesInScope(ctx, principalOf(request), scope);
    const file = files[0]!;
    const frames = Math.max(1, Number((file.metadata as { numberOfFrames?: number }).numberOfFrames ?? 1));
    return {
      format,
      rendered: await renderCachedFrame(ctx, {
        caseId: file.caseId,
        file,
        originalUid: file.sopInstanceUid,
        frame: frame === 'middle' ? Math.floor(frames / 2) + 1 : frame,
        size,
        format,
        window,
        // A de-identified view has no overlays, as its copy has none (de-identification removes them).
        overlays: !deidentified,
      }),
    };
  }

  const sendRendered = (reply: FastifyReply, out: { format: FrameFormat; rendered: RenderedFrame }) =>
    sendRenderedFrame(ctx, reply, out.format, out.rendered);

  const { url: instanceUrl, params: InstanceParams } = studyLevels()[2]!;
  app.get(
    `${instanceUrl}/frames/:frames/rendered`,
    {
      onRequest: roles,
      schema: {
        summary: 'DICOMweb rendered frame: one frame as image/jpeg, image/png or image/webp',
        params: Type.Object({ ...InstanceParams, frames: Type.String({ maxLength: 64 }) }),
        querystring: RenderQuery,
      },
    },
    async (request, reply) => {
      const { frames } = request.params as { frames: string };
      if (!/^[1-9][0-9]{0,8}$/.test(frames)) {
        throw new AppError('VALIDATION_FAILED', 'one frame number (1-based) per request');
      }
      return sendRendered(reply, await renderFrame(request, Number(frames), 512));
    },
  );

  app.get(
    `${instanceUrl}/rendered`,
    {
      onRequest: roles,
      schema: {
        summary: 'DICOMweb rendered instance: its first frame as image/jpeg, image/png or image/webp',
        params: Type.Object(InstanceParams),
        querystring: RenderQuery,
      },
    },
    async (request, reply) => sendRendered(reply, await renderFrame(request, 1, 512)),
  );

  app.get(
    `${instanceUrl}/thumbnail`,
    {
      onRequest: roles,
      schema: {
        summary: 'DICOMweb instance thumbnail: its middle frame, 128 px unless a viewport is given',
        params: Type.Object(InstanceParams),
        querystring: Type.Object({ viewport: Type.Optional(Type.String()) }),
      },
    },
    async (request, reply) => sendRendered(reply, await renderFrame(request, 'middle', THUMBNAIL_SIZE)),
  );

  /** The study's or a series' thumbnail artifact, as the caller may see it. */
  async function artifactThumbnail(
    who: ReturnType<typeof principalOf>,
    studyUid: string,
    seriesUid: string | undefined,
  ) {
    const { caseIds, deidentified } = await casesOfStudy(ctx, who, studyUid);
    const missing = () =>
      new AppError(
        'NOT_FOUND',
        `no thumbnail of study ${studyUid}${seriesUid ? ` series ${seriesUid}` : ''}`,
      );
    for (const caseId of caseIds) {
      const series =
        seriesUid === undefined
          ? undefined
          : deidentified
            ? await getOriginalUidInCase(ctx.db, caseId, seriesUid)
            : seriesUid;
      if (seriesUid !== undefined && !series) continue;
      const row = await ctx.db
        .selectFrom('artifacts')
        .select(['object_key', 'content_type', 'bytes', 'identifying'])
        .where('case_id', '=', caseId)
        .where((eb) =>
          series === undefined ? eb('name', '=', 'thumbnail') : eb('name', 'like', `series-${series}.%`),
        )
        .executeTakeFirst();
      // A slide's label or overview may show who the patient is: as absent for a reader abroad as a missing one.
      if (row && !(deidentified && row.identifying)) return row;
    }
    throw missing();
  }

  // The study and series thumbnails; `what` names them in a 406.
  const levels = studyLevels('/thumbnail')
    .slice(0, 2)
    .map((level, i) => ({ ...level, what: i === 0 ? 'study' : 'series' }));
  for (const level of levels) {
    app.get(
      level.url,
      {
        onRequest: roles,
        schema: {
          summary: `DICOMweb ${level.what} thumbnail: the one the pipeline made`,
          params: Type.Object(level.params),
          querystring: Type.Object({ viewport: Type.Optional(Type.String()) }),
        },
      },
      async (request, reply) => {
        const { studyUid, seriesUid } = request.params as { studyUid: string; seriesUid?: string };
        const row = await artifactThumbnail(principalOf(request), studyUid, seriesUid);
        if (!acceptsMediaType(request.headers.accept, row.content_type)) {
          throw new AppError('NOT_ACCEPTABLE', `the ${level.what} thumbnail is ${row.content_type}`);
        }
        return reply
          .header('content-type', row.content_type)
          .header('content-length', String(row.bytes))
          .header('cache-control', 'private, max-age=300')
          .send(await ctx.storage.get(row.object_key));
      },
    );
  }
}
