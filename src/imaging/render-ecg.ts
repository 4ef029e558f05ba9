/**
 * ECG page → SVG and a raster thumbnail, from one layout. The pure painter (ecg-raster.ts) draws paper, grid
 * and traces into pixels; text is blitted from glyph atlases librsvg renders once per size; sharp encodes
 * once. Rasterising the whole SVG with librsvg instead costs several times more, almost all of it in the
 * thousands of grid lines.
 */
import sharp from 'sharp';
import { AppError } from '../errors.js';
import type { Ecg } from '../formats/ecg/ecg.js';
import { type EcgPage, type EcgPageOptions, layoutEcgPage } from '../formats/ecg/ecg-page.js';
import { rasterizeEcgPage } from '../formats/ecg/ecg-raster.js';
import { ecgPageSvg } from '../formats/ecg/ecg-svg.js';

export interface RenderEcgOptions extends Omit<EcgPageOptions, 'width'> {
  /** Output width in pixels; the height follows from the page layout. */
  width?: number;
  format?: 'png' | 'webp';
}

export interface RenderedImage {
  data: Buffer;
  contentType: string;
  width: number;
  height: number;
}

export interface RenderedEcg {
  /** The vector page, for the viewer (same layout as the image). */
  svg: string;
  image: RenderedImage;
}

/** Thumbnail width used when the caller does not ask for one: the size the worklist shows. */
export const DEFAULT_ECG_IMAGE_WIDTH = 800;

/** Characters the thumbnail can draw; anything else is drawn as '?'. */
const CHARSET = `${Array.from({ length: 95 }, (_, i) => String.fromCharCode(32 + i)).join('')}·–—µ°éèàäöüÄÖÜß→`;
/** DejaVu Sans Mono's advance width (1233/2048 em). */
const MONO_ADVANCE = 0.602;

interface GlyphAtlas {
  /** Alpha mask, cellWidth × cellHeight per glyph, glyphs side by side. */
  alpha: Uint8Array;
  stride: number;
  cellWidth: number;
  cellHeight: number;
  baseline: number;
  index: Map<string, number>;
}

const atlases = new Map<string, Promise<GlyphAtlas>>();

/**
 * The thumbnail's text is blitted from a glyph atlas that librsvg renders once per font size and weight and
 * that is then kept for the life of the process: a page's few hundred characters cost microseconds instead of
 * a librsvg pass over the whole page. A monospace face keeps the layout arithmetic exact; the SVG page keeps
 * the proportional face.
 */
function glyphAtlas(sizePx: number, bold: boolean): Promise<GlyphAtlas> {
  const key = `${sizePx}:${bold}`;
  let atlas = atlases.get(key);
  if (!atlas) {
    atlas = buildAtlas(sizePx, bold);
    atlases.set(key, atlas);
    atlas.catch(() => atlases.delete(key));
  }
  return atlas;
}

async function buildAtlas(sizePx: number, bold: boolean): Promise<GlyphAtlas> {
  const chars = Array.from(CHARSET);
  const cellWidth = Math.ceil(sizePx * MONO_ADVANCE) + 2;
  const cellHeight = Math.ceil(sizePx * 1.3) + 2;
  const baseline = Math.ceil(sizePx * 0.95) + 1;
  const charRef = (c: string) => `&#${c.codePointAt(0)};`;
  const texts = chars
    .map((c, i) => `<text x="${i * cellWidth + 1}" y="${baseline}">${charRef(c)}</text>`)
    .join('');
  const svg =
    `<svg xmlns="http://www.w3.org/2000/svg" width="${chars.length * cellWidth}" height="${cellHeight}">` +
    `<g font-family="DejaVu Sans Mono, Noto Sans Mono, monospace" font-size="${sizePx}"${bold ? ' font-weight="bold"' : ''} fill="#000">${texts}</g></svg>`;
  const { data, info } = await sharp(Buffer.from(svg), { density: 72 })
    .ensureAlpha()
    .extractChannel(3)
    .raw()
    .toBuffer({
      resolveWithObject: true,
    });
  return {
    alpha: new Uint8Array(data.buffer, data.byteOffset, data.byteLength),
    stride: info.width,
    cellWidth,
    cellHeight,
    baseline,
    index: new Map(chars.map((c, i) => [c, i])),
  };
}

function hexColor(hex: string): [number, number, number] {
  const h = hex.length === 4 ? hex.replace(/^#(.)(.)(.)$/, '#$1$1$2$2$3$3') : hex;
  return [
    Number.parseInt(h.slice(1, 3), 16),
    Number.parseInt(h.slice(3, 5), 16),
    Number.parseInt(h.slice(5, 7), 16),
  ];
}

async function drawTexts(page: EcgPage, rgb: Uint8Array): Promise<void> {
  const { widthPx: width, heightPx: height, pxPerMm: k } = page;
  for (const t of page.texts) {
    const sizePx = Math.max(6, Math.round(t.size * k * 2) / 2);
    const atlas = await glyphAtlas(sizePx, t.bold ?? false);
    const { alpha, stride, cellWidth, cellHeight } = atlas;
    const advance = sizePx * MONO_ADVANCE;
    const chars = Array.from(t.text);
    const startX = t.x * k - (t.anchor === 'end' ? chars.length * advance : 0);
    const top = Math.round(t.y * k) - atlas.baseline;
    const [r, g, b] = hexColor(t.color);
    const yFrom = Math.max(0, -top);
    const yTo = Math.min(cellHeight, height - top);
    for (let n = 0; n < chars.length; n++) {
      const c = chars[n]!;
      if (c === ' ') continue;
      const glyph = atlas.index.get(c) ?? atlas.index.get('?')!;
      const left = Math.round(startX + n * advance) - 1;
      const xFrom = Math.max(0, -left);
      const xTo = Math.min(cellWidth, width - left);
      for (let y = yFrom; y < yTo; y++) {
        const row = y * stride + glyph * cellWidth;
        const line = ((top + y) * width + left) * 3;
        for (let x = xFrom; x < xTo; x++) {
          const a = alpha[row + x]!;
          if (a === 0) continue;
          const i = line + x * 3;
          const w = a / 255;
          rgb[i] = rgb[i]! + (r - rgb[i]!) * w;
          rgb[i + 1] = rgb[i + 1]! + (g - rgb[i + 1]!) * w;
          rgb[i + 2] = rgb[i + 2]! + (b - rgb[i + 2]!) * w;
        }
      }
    }
  }
}

/**
 * Pixel buffers kept between pages, one per byte size (a page's size follows from its width and layout, so
 * the pipeline's thumbnails share one). Painting into a buffer that is already mapped skips clearing and
 * faulting in megabytes for every page, and the garbage collection that each fresh multi-megabyte buffer
 * brings on. A buffer is taken for one paint and given back only after sharp has finished reading it.
 */
const spareCanvases = new Map<number, Uint8Array>();
const MAX_SPARE_CANVASES = 2;
/** Larger pages (over about 2500 px wide) are rare: their buffers are not worth holding on to. */
const MAX_SPARE_BYTES = 16 * 1024 * 1024;

function takeCanvas(bytes: number): Uint8Array {
  const spare = spareCanvases.get(bytes);
  if (!spare) return new Uint8Array(bytes);
  spareCanvases.delete(bytes);
  return spare;
}

function giveBackCanvas(canvas: Uint8Array): void {
  if (canvas.length > MAX_SPARE_BYTES) return;
  if (spareCanvases.size >= MAX_SPARE_CANVASES && !spareCanvases.has(canvas.length)) {
    // The oldest size goes: a long-lived process keeps the sizes it is asked for now.
    spareCanvases.delete(spareCanvases.keys().next().value!);
  }
  spareCanvases.set(canvas.length, canvas);
}

async function paint(page: EcgPage, format: 'png' | 'webp'): Promise<RenderedImage> {
  const canvas = takeCanvas(page.widthPx * page.heightPx * 3);
  const { data, width, height } = rasterizeEcgPage(page, canvas);
  try {
    await drawTexts(page, data);
    const image = sharp(data, { raw: { width, height, channels: 3 } });
    // WebP effort 2 halves the encode time of the default (4) for a few percent more bytes on line art. PNG stays
    // at level 6: level 4 deflates a page about 3 ms faster at 1250 px but makes it 35–60 % bigger, and these
    // pages cross clinics' slow links.
    const encoded =
      format === 'webp' ? image.webp({ quality: 90, effort: 2 }) : image.png({ compressionLevel: 6 });
    const out = await encoded.toBuffer({ resolveWithObject: true });
    giveBackCanvas(canvas);
    return { data: out.data, contentType: `image/${format}`, width: out.info.width, height: out.info.height };
  } catch (err) {
    throw new AppError('INTERNAL', `rendering the ECG page failed: ${(err as Error).message}`, {
      cause: err,
      retryable: false,
    });
  }
}

/** The page as SVG and as a PNG/WebP thumbnail, laid out once and rasterised once. */
export async function renderEcg(ecg: Ecg, options: RenderEcgOptions = {}): Promise<RenderedEcg> {
  const { format = 'png', width = DEFAULT_ECG_IMAGE_WIDTH, ...pageOptions } = options;
  const page = layoutEcgPage(ecg, { ...pageOptions, width });
  return { svg: ecgPageSvg(page), image: await paint(page, format) };
}

/** The thumbnail alone (no SVG text is built). */
export async function renderEcgPng(ecg: Ecg, options: RenderEcgOptions = {}): Promise<RenderedImage> {
  const { format = 'png', width = DEFAULT_ECG_IMAGE_WIDTH, ...pageOptions } = options;
  return paint(layoutEcgPage(ecg, { ...pageOptions, width }), format);
}
