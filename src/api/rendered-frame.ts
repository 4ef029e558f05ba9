/**
 * One frame rendered for a viewer and kept in object storage, shared by GET /v1/cases/:id/instances/:uid/frames/
 * :n/rendered and DICOMweb's rendered and thumbnail resources: the same frame, size, window and overlays make the
 * same key, so either route serves what the other drew.
 */
import type { FastifyReply } from 'fastify';
import type { Context } from '../context.js';
import { AppError } from '../errors.js';
import { readInstanceForFrame } from '../formats/dicom/read-frame-by-range.js';
import { renderDicomFrame, type VoiWindow } from '../imaging/render-dicom.js';
import { objectByteSource } from '../storage/object-byte-source.js';

/** Bumped when a change to render-dicom.ts changes what a frame looks like, so that cached renders are redrawn
 * (2: DCMTK's scaling, window cut and overlay scaling, 2026-11-26). */
const RENDER_VERSION = 2;

export const FRAME_FORMATS = { png: 'image/png', webp: 'image/webp', jpeg: 'image/jpeg' } as const;
export type FrameFormat = keyof typeof FRAME_FORMATS;

/** `centre,width` in modality units, as the routes take it; undefined when not given. */
export function parseWindow(raw: string | undefined): VoiWindow | undefined {
  if (raw === undefined) return undefined;
  const [c, w] = raw.split(',').map(Number);
  if (!Number.isFinite(c) || !Number.isFinite(w) || (w as number) <= 0) {
    throw new AppError('VALIDATION_FAILED', 'window must be "centre,width" with a positive width');
  }
  return { center: c as number, width: w as number };
}

export interface FrameRequest {
  caseId: string;
  file: { object_key: string; bytes: string };
  /** The instance's own SOP Instance UID (never a replacement): the cache is the case's, whoever asks. */
  originalUid: string;
  /** 1-based, as DICOMweb counts frames. */
  frame: number;
  /** Longest side in pixels. */
  size: number;
  format: FrameFormat;
  window?: VoiWindow | undefined;
  overlays: boolean;
}

/** Where a rendered frame is kept, its size, and its bytes when it was drawn just now (so they are not read back). */
export interface RenderedFrame {
  key: string;
  bytes: number;
  data?: Uint8Array;
}

/** Renders the frame unless a render of it is kept already. */
export async function renderCachedFrame(ctx: Context, r: FrameRequest): Promise<RenderedFrame> {
  // The overlay choice and the rendering's version are part of the key, so a render cached before a change to
  // how frames are drawn is not served.
  const window = r.window ? `${r.window.center}_${r.window.width}` : 'auto';
  const key = `cases/${r.caseId}/rendered/${r.originalUid}/${r.frame}-${r.size}-${window}-${r.overlays ? 'overlays' : 'bare'}-r${RENDER_VERSION}.${r.format}`;
  const cached = await ctx.storage.head(key);
  if (cached) return { key, bytes: cached.bytes };
  // A frame of a large multi-frame instance is read by byte range, not the whole file for each frame.
  const { instance } = await readInstanceForFrame(
    objectByteSource(ctx.storage, r.file.object_key, Number(r.file.bytes)),
    r.frame - 1,
  );
  const frames = instance.numberOfFrames ?? 1;
  // Not the UID: a reader abroad knows the instance by its replacement, and the original must not show.
  if (r.frame > frames) throw new AppError('NOT_FOUND', `the instance has ${frames} frame(s)`);
  const image = await renderDicomFrame(instance, {
    frame: r.frame - 1,
    size: r.size,
    format: r.format,
    overlays: r.overlays,
    ...(r.window ? { window: r.window } : {}),
  });
  await ctx.storage.put(key, image.data, {
    contentType: image.contentType,
    contentLength: image.data.length,
  });
  return { key, bytes: image.data.length, data: image.data };
}

/** Sends a rendered frame, from memory when it was just drawn, else from storage. */
export async function sendRenderedFrame(
  ctx: Context,
  reply: FastifyReply,
  format: FrameFormat,
  rendered: RenderedFrame,
) {
  return reply
    .header('content-type', FRAME_FORMATS[format])
    .header('content-length', String(rendered.bytes))
    .header('cache-control', 'private, max-age=3600')
    .header('vary', 'accept')
    .send(rendered.data ? Buffer.from(rendered.data) : await ctx.storage.get(rendered.key));
}
