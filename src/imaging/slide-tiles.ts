/**
 * Pixels of a slide pyramid, one source tile at a time, read by byte range: a Deep Zoom tile or a region
 * needs a handful of tiles of one level, never the file. TIFF tiles (and strips) are decoded with sharp:
 * JPEG directly, its JPEGTables merged into the abbreviated tile stream; LZW, deflate, PackBits, WebP and
 * uncompressed ones wrapped into a one-tile TIFF that libtiff decodes. Aperio JPEG 2000 tiles (33003,
 * 33005) and DICOM JPEG 2000 / JPEG-LS frames go through the OpenJPEG and CharLS WebAssembly builds.
 *
 * A reader (`openTiffSlide`, `openDicomWsiSlide`) holds what every request would otherwise re-read: the
 * directories, JPEG tables, tile offsets read so far, and a byte-budgeted cache of decoded tiles. Open one
 * per slide and keep it while the slide is being viewed.
 */
import { randomUUID } from 'node:crypto';
import { deflateSync } from 'node:zlib';
import { decompress as zstdDecompress } from 'fzstd';
import sharp from 'sharp';
import { AppError, isAppError } from '../errors.js';
import { asRgbJpeg } from '../formats/dicom/as-rgb-jpeg.js';
import type { DicomInstance } from '../formats/dicom/parse-dicom.js';
import {
  decodeRleFrame,
  describePixels,
  type Frame,
  getEncapsulatedFrame,
  getFrame,
  roundToByte,
  ybrFullToRgb,
} from '../formats/dicom/pixel-data.js';
import { describeTransferSyntax } from '../formats/dicom/transfer-syntax.js';
import { type DziOptions, dziTileRegion } from '../formats/slide/deep-zoom.js';
import { describeSlide, type SlideInfo, type SlideLevel } from '../formats/slide/describe-slide.js';
import {
  type DicomFrameTable,
  type DicomTileMap,
  describeDicomWsi,
  dicomWsiTileMap,
  readDicomFrame,
  readDicomFrameTable,
} from '../formats/slide/dicom-wsi.js';
import {
  readTagBytes,
  readTiff,
  readTileEntries,
  TAG,
  type TiffFile,
  type TiffIfd,
  type TileTable,
} from '../formats/slide/tiff.js';
import type { ByteSource } from '../formats/types.js';
import { type CodestreamKind, checkCodestreamFits } from './codecs/codestream-size.js';
import { decodeOpenJpegReduced } from './codecs/decode-compressed-frame.js';
import { loadCharls, loadOpenJpeg } from './codecs/load-codecs.js';
import { TileCache } from './tile-cache.js';

/** Row-major, channel-interleaved 8-bit pixels. */
export interface RawTile {
  data: Uint8Array;
  width: number;
  height: number;
  channels: 1 | 3;
}

export interface LevelGrid {
  width: number;
  height: number;
  tileWidth: number;
  tileHeight: number;
  cols: number;
  rows: number;
}

export interface SlideTileReader {
  /** Identity of the slide in shared caches (the caller's key, or a random one). */
  readonly id: string;
  readonly info: SlideInfo;
  /** 3 for colour slides, 1 for greyscale (fluorescence channels, brightfield scanned in grey). */
  readonly channels: 1 | 3;
  grid(level: number): LevelGrid;
  /** One source tile, decoded and reduced by 2^reduce (0–3) where the codec can do it cheaply; undefined
   * where a sparse level has no tile (shown as background). */
  readTile(level: number, col: number, row: number, reduce?: number): Promise<RawTile | undefined>;
  /** A rectangle of level `level` in its own pixels; parts outside the level or without tiles are white. */
  readRegion(level: number, x: number, y: number, width: number, height: number): Promise<RawTile>;
}

export interface OpenSlideOptions {
  /** Stable key for cache entries (storage key, file hash). Defaults to a random id per reader. */
  id?: string;
  /** Decoded source tiles, shared between readers; each reader has a 32 MB one of its own otherwise. */
  tileCache?: TileCache<RawTile>;
}

/** Largest region one call decodes: 64 megapixels, 192 MB of RGB. DZI tiles are 256²; thumbnails do not
 * come through here. */
const MAX_REGION_PIXELS = 64 * 1024 * 1024;
/** Segments above this are not decoded whole for a region: an NDPI level is one JPEG strip of the whole
 * image, and libvips can decode its needed rows only. */
const LARGE_SEGMENT_PIXELS = 16 * 1024 * 1024;
const MAX_SEGMENT_PIXELS = 256 * 1024 * 1024;
const BACKGROUND = 255;

export function createRawTileCache(maxBytes: number): TileCache<RawTile> {
  return new TileCache<RawTile>({ maxBytes, sizeOf: (tile) => tile.data.byteLength + 64 });
}

function corrupt(message: string, details?: Record<string, unknown>, cause?: unknown): AppError {
  return new AppError('CORRUPT_FILE', message, { retryable: false, details, cause });
}

/** A tile whose codestream declares more pixels than the tile holds is refused before its decoder allocates
 * for them (see codecs/codestream-size.ts). */
function checkCodestreamSize(
  kind: CodestreamKind,
  bytes: Uint8Array,
  width: number,
  height: number,
  what: string,
) {
  checkCodestreamFits(
    kind,
    bytes,
    { rows: height, columns: width },
    (declared, name) =>
      `${what}: its ${name} header declares ${declared.columns}x${declared.rows} pixels, more than the ${width}x${height} tile`,
  );
}

function unsupported(message: string, details?: Record<string, unknown>): AppError {
  return new AppError('UNSUPPORTED_FORMAT', message, { retryable: false, details });
}

function messageOf(err: unknown): string {
  if (err instanceof Error) return err.message;
  return String(err);
}

// ---------------------------------------------------------------------------------------------- WASM codecs

/**
 * Runs one decode on a fresh decoder and copies the pixels out of WASM memory. A reused decoder keeps the
 * previous image when a codestream is garbage, which would show another tile's pixels.
 */
function withDecoder<D extends { delete(): void }, T>(decoder: D, use: (d: D) => T): T {
  try {
    return use(decoder);
  } finally {
    decoder.delete();
  }
}

async function decodeJ2k(bytes: Uint8Array, reduce: number, ycc: boolean, channels: 1 | 3): Promise<RawTile> {
  const codec = await loadOpenJpeg();
  const decoded = withDecoder(codec.createDecoder(), (decoder) => {
    let r = 0;
    try {
      decoder.getEncodedBuffer(bytes.length).set(bytes);
      r = decodeOpenJpegReduced(decoder, bytes, reduce);
    } catch (err) {
      throw corrupt(
        `JPEG 2000 tile cannot be decoded: ${typeof err === 'number' ? `codec error ${err}` : messageOf(err)}`,
        undefined,
        err,
      );
    }
    const info = decoder.getFrameInfo();
    return { info, r, samples: decoder.getDecodedBuffer().slice() };
  });
  const { info, r, samples: raw } = decoded;
  const width = Math.ceil(info.width / 2 ** r);
  const height = Math.ceil(info.height / 2 ** r);
  const components = info.componentCount;
  const bytesPerSample = info.bitsPerSample > 8 ? 2 : 1;
  if (width === 0 || height === 0 || raw.length < width * height * components * bytesPerSample) {
    throw corrupt(`JPEG 2000 tile decodes to ${raw.length} bytes for ${width}x${height}x${components}`);
  }
  if (components !== 1 && components < 3) {
    throw unsupported(`JPEG 2000 tile with ${components} components is not supported`);
  }
  const samples = toEightBit(raw, width * height * components, bytesPerSample, info.bitsPerSample);
  let tile = interleavedToTile(samples, width, height, components);
  if (ycc && tile.channels === 3) tile = { ...tile, data: ybrFullToRgb(tile.data) };
  return withChannels(tile, channels);
}

async function decodeJpegLs(bytes: Uint8Array, photometric: string, channels: 1 | 3): Promise<RawTile> {
  const codec = await loadCharls();
  const { info, interleave, raw } = withDecoder(codec.createDecoder(), (decoder) => {
    try {
      decoder.getEncodedBuffer(bytes.length).set(bytes);
      decoder.decode();
    } catch (err) {
      throw corrupt(
        `JPEG-LS frame cannot be decoded: ${typeof err === 'number' ? `codec error ${err}` : messageOf(err)}`,
        undefined,
        err,
      );
    }
    return {
      info: decoder.getFrameInfo(),
      interleave: decoder.getInterleaveMode(),
      raw: decoder.getDecodedBuffer().slice(),
    };
  });
  const { width, height, componentCount: components } = info;
  const bytesPerSample = info.bitsPerSample > 8 ? 2 : 1;
  if (width === 0 || height === 0 || raw.length < width * height * components * bytesPerSample) {
    throw corrupt(`JPEG-LS frame decodes to ${raw.length} bytes for ${width}x${height}x${components}`);
  }
  if (components !== 1 && components !== 3) {
    throw unsupported(`JPEG-LS frame with ${components} components is not supported`);
  }
  let samples = toEightBit(raw, width * height * components, bytesPerSample, info.bitsPerSample);
  // Interleave mode 0 (none) decodes plane after plane.
  if (components === 3 && interleave === 0) samples = planarToInterleaved(samples, width * height);
  let tile = interleavedToTile(samples, width, height, components);
  if (photometric === 'YBR_FULL' && tile.channels === 3) tile = { ...tile, data: ybrFullToRgb(tile.data) };
  return withChannels(tile, channels);
}

function toEightBit(decoded: Uint8Array, count: number, bytesPerSample: number, bits: number): Uint8Array {
  if (bytesPerSample === 1) return decoded.subarray(0, count);
  const out = new Uint8Array(count);
  const view = new DataView(decoded.buffer, decoded.byteOffset, count * 2);
  const shift = Math.max(0, bits - 8);
  for (let i = 0; i < count; i++) out[i] = Math.min(255, view.getUint16(i * 2, true) >> shift);
  return out;
}

function planarToInterleaved(planar: Uint8Array, pixels: number): Uint8Array {
  const out = new Uint8Array(pixels * 3);
  for (let i = 0; i < pixels; i++) {
    out[i * 3] = planar[i]!;
    out[i * 3 + 1] = planar[pixels + i]!;
    out[i * 3 + 2] = planar[2 * pixels + i]!;
  }
  return out;
}

function interleavedToTile(samples: Uint8Array, width: number, height: number, components: number): RawTile {
  if (components === 1) return { data: samples, width, height, channels: 1 };
  if (components === 3) return { data: samples, width, height, channels: 3 };
  // RGBA and beyond: keep the first three.
  const out = new Uint8Array(width * height * 3);
  for (let i = 0, o = 0; o < out.length; i += components, o += 3) {
    out[o] = samples[i]!;
    out[o + 1] = samples[i + 1]!;
    out[o + 2] = samples[i + 2]!;
  }
  return { data: out, width, height, channels: 3 };
}

/** Brings a tile to the reader's channel count (grey → RGB by copying, RGB → grey by luma). */
function withChannels(tile: RawTile, channels: 1 | 3): RawTile {
  if (tile.channels === channels) return tile;
  const n = tile.width * tile.height;
  if (channels === 3) {
    const out = new Uint8Array(n * 3);
    for (let i = 0; i < n; i++) {
      const v = tile.data[i]!;
      out[i * 3] = v;
      out[i * 3 + 1] = v;
      out[i * 3 + 2] = v;
    }
    return { ...tile, data: out, channels: 3 };
  }
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i++) {
    out[i] = roundToByte(
      0.299 * tile.data[i * 3]! + 0.587 * tile.data[i * 3 + 1]! + 0.114 * tile.data[i * 3 + 2]!,
    );
  }
  return { ...tile, data: out, channels: 1 };
}

// ---------------------------------------------------------------------------------------------- sharp decoding

function sharpDecodeError(err: unknown, what: string): AppError {
  if (isAppError(err)) return err;
  const message = messageOf(err);
  if (/not configured|not implemented|not supported|unsupported|subsampled/i.test(message)) {
    return unsupported(`${what}: ${message}`);
  }
  return corrupt(`${what} cannot be decoded: ${message}`, undefined, err);
}

interface SharpDecodeOptions {
  channels: 1 | 3;
  /** Shrink by 2^reduce: libjpeg decodes at 1/2, 1/4, 1/8 scale directly. */
  reduce?: number;
  /** Width of the encoded image, needed to shrink. */
  width?: number;
  /** Only this part of the image (large strips). */
  extract?: { left: number; top: number; width: number; height: number };
}

async function decodeWithSharp(input: Uint8Array, what: string, opts: SharpDecodeOptions): Promise<RawTile> {
  try {
    let image = sharp(input, { failOn: 'error', limitInputPixels: MAX_SEGMENT_PIXELS }).removeAlpha();
    if (opts.extract) image = image.extract(opts.extract);
    if (opts.reduce && opts.reduce > 0 && opts.width) {
      image = image.resize({
        width: Math.max(1, Math.ceil(opts.width / 2 ** opts.reduce)),
        kernel: 'linear',
      });
    }
    image = image.toColourspace(opts.channels === 1 ? 'b-w' : 'srgb');
    const { data, info } = await image.raw({ depth: 'uchar' }).toBuffer({ resolveWithObject: true });
    const channels = info.channels === 1 ? 1 : 3;
    const tile: RawTile = {
      data: new Uint8Array(data.buffer, data.byteOffset, data.byteLength),
      width: info.width,
      height: info.height,
      channels,
    };
    return channels === opts.channels ? tile : withChannels(tile, opts.channels);
  } catch (err) {
    throw sharpDecodeError(err, what);
  }
}

/** An abbreviated JPEG tile plus the tables stored once in tag 347 = a complete JPEG stream. */
export function mergeJpegTables(tables: Uint8Array | undefined, tile: Uint8Array): Uint8Array {
  if (!tables || tables.length < 4 || tile.length < 4) return tile;
  if (tile[0] !== 0xff || tile[1] !== 0xd8 || tables[0] !== 0xff || tables[1] !== 0xd8) return tile;
  const tablesEnd =
    tables[tables.length - 2] === 0xff && tables[tables.length - 1] === 0xd9
      ? tables.length - 2
      : tables.length;
  const out = new Uint8Array(tablesEnd + tile.length - 2);
  out.set(tables.subarray(0, tablesEnd));
  out.set(tile.subarray(2), tablesEnd);
  return out;
}

// ---------------------------------------------------------------------------------------------- levels

interface LevelSource {
  readonly grid: LevelGrid;
  decodeTile(col: number, row: number, reduce: number): Promise<RawTile | undefined>;
  /** Part of one tile, for tiles too large to decode whole (undefined when the codec cannot). */
  decodeTilePart?(col: number, row: number, rect: Rect): Promise<RawTile | undefined>;
}

interface Rect {
  left: number;
  top: number;
  width: number;
  height: number;
}

/** Compressions decoded by sharp through a one-tile TIFF (libtiff's own codecs). */
const WRAPPED_COMPRESSIONS = new Set([1, 2, 3, 4, 5, 8, 32773, 32946, 50001]);
const J2K_COMPRESSIONS = new Set([33003, 33004, 33005, 34712]);
/** Zstandard (50000): libvips' libtiff in sharp has no ZSTD codec (it reads such tiles as black), so a tile is
 * unpacked here and handed to libtiff as a deflate tile, which keeps its predictor's undoing in libtiff. */
const ZSTD = 50000;
const DEFLATE = 8;
/** Tags a one-tile TIFF needs to decode like the original directory. */
const COPIED_TAGS = [
  TAG.BitsPerSample,
  TAG.Compression,
  TAG.Photometric,
  TAG.SamplesPerPixel,
  TAG.PlanarConfig,
  TAG.Predictor,
  TAG.ExtraSamples,
  TAG.SampleFormat,
  TAG.JPEGTables,
  TAG.YCbCrCoefficients,
  TAG.YCbCrSubsampling,
  TAG.YCbCrPositioning,
  TAG.ReferenceBlackWhite,
];

/** Compressions this module decodes from TIFF tiles, by any path. */
export function canDecodeTiffCompression(code: number): boolean {
  return code === 7 || code === ZSTD || WRAPPED_COMPRESSIONS.has(code) || J2K_COMPRESSIONS.has(code);
}

interface CopiedTag {
  tag: number;
  type: number;
  count: number;
  bytes: Uint8Array;
}

/** Field types 1–12 (BYTE … DOUBLE): what the classic TIFF a segment is wrapped in can carry. */
const LAST_CLASSIC_TIFF_TYPE = 12;

class TiffLevel implements LevelSource {
  readonly grid: LevelGrid;
  private readonly tiled: boolean;
  private readonly rowsPerSegment: number;
  private tables?: Promise<Uint8Array | undefined>;
  private copied?: Promise<CopiedTag[]>;
  /** Tile entries by tile row, read on demand and kept (bounded) for the reader's life. */
  private readonly entryRows = new Map<number, Promise<TileTable>>();

  constructor(
    private readonly source: ByteSource,
    private readonly ifd: TiffIfd,
    private readonly channels: 1 | 3,
  ) {
    this.tiled = ifd.tileWidth !== undefined;
    if (ifd.planarConfig === 2 && ifd.samplesPerPixel > 1) {
      throw unsupported('planar (separate) TIFF samples are not supported for tiles', { offset: ifd.offset });
    }
    this.rowsPerSegment = this.tiled ? ifd.tileHeight! : Math.min(ifd.rowsPerStrip || ifd.height, ifd.height);
    const tileWidth = this.tiled ? ifd.tileWidth! : ifd.width;
    const tileHeight = this.rowsPerSegment;
    this.grid = {
      width: ifd.width,
      height: ifd.height,
      tileWidth,
      tileHeight,
      cols: Math.ceil(ifd.width / tileWidth),
      rows: Math.ceil(ifd.height / tileHeight),
    };
  }

  private entriesOfRow(row: number): Promise<TileTable> {
    let entries = this.entryRows.get(row);
    if (!entries) {
      entries = readTileEntries(this.source, this.ifd, row * this.grid.cols, this.grid.cols);
      entries.catch(() => this.entryRows.delete(row));
      if (this.entryRows.size >= 4096) {
        const oldest = this.entryRows.keys().next().value;
        if (oldest !== undefined) this.entryRows.delete(oldest);
      }
      this.entryRows.set(row, entries);
    }
    return entries;
  }

  private jpegTables(): Promise<Uint8Array | undefined> {
    this.tables ??= readTagBytes(this.source, this.ifd, TAG.JPEGTables, 1024 * 1024);
    return this.tables;
  }

  private copiedTags(): Promise<CopiedTag[]> {
    this.copied ??= (async () => {
      const out: CopiedTag[] = [];
      for (const tag of COPIED_TAGS) {
        const entry = this.ifd.entries.get(tag);
        if (!entry || entry.type < 1 || entry.type > LAST_CLASSIC_TIFF_TYPE) continue;
        const bytes = await readTagBytes(this.source, this.ifd, tag, 1024 * 1024);
        if (bytes) out.push({ tag, type: entry.type, count: entry.count, bytes });
      }
      return out;
    })();
    return this.copied;
  }

  /** Pixel size of segment (col, row): strips at the bottom are shorter; tiles are always whole. */
  private segmentSize(row: number): { width: number; height: number } {
    if (this.tiled) return { width: this.grid.tileWidth, height: this.grid.tileHeight };
    return {
      width: this.ifd.width,
      height: Math.min(this.rowsPerSegment, this.ifd.height - row * this.rowsPerSegment),
    };
  }

  private async segmentBytes(col: number, row: number): Promise<Uint8Array | undefined> {
    const entries = await this.entriesOfRow(row);
    const offset = entries.offsets[col] ?? 0;
    const length = entries.byteCounts[col] ?? 0;
    if (length === 0) return undefined;
    const bytes = await this.source.read(offset, length);
    if (bytes.byteLength < length) {
      throw corrupt(`tile ${col},${row} at offset ${offset} is truncated`, { offset, length });
    }
    return bytes;
  }

  private what(col: number, row: number): string {
    return `${this.tiled ? 'tile' : 'strip'} ${col},${row} of the ${this.ifd.width}x${this.ifd.height} level (${this.ifd.compressionName})`;
  }

  private checkSize(row: number): void {
    const { width, height } = this.segmentSize(row);
    if (width * height > MAX_SEGMENT_PIXELS) {
      throw unsupported(
        `${this.tiled ? 'tile' : 'strip'} of ${width}x${height} pixels is too large to decode`,
      );
    }
  }

  async decodeTile(col: number, row: number, reduce: number): Promise<RawTile | undefined> {
    const tile = await this.decodeSegment(col, row, reduce);
    if (!tile) return undefined;
    // A codec that "succeeds" on garbage (OpenJPEG returns an empty image) must not yield a blank tile.
    const { width, height } = this.segmentSize(row);
    const w = Math.ceil(width / 2 ** reduce);
    const h = Math.ceil(height / 2 ** reduce);
    if (Math.abs(tile.width - w) > 1 || Math.abs(tile.height - h) > 1) {
      throw corrupt(`${this.what(col, row)} decodes to ${tile.width}x${tile.height}, not ${w}x${h}`);
    }
    return tile;
  }

  private async decodeSegment(col: number, row: number, reduce: number): Promise<RawTile | undefined> {
    this.checkSize(row);
    const bytes = await this.segmentBytes(col, row);
    if (!bytes) return undefined;
    const compression = this.ifd.compression;
    const what = this.what(col, row);
    const { width } = this.segmentSize(row);
    if (compression === 7) {
      return decodeWithSharp(await this.jpegStream(bytes), what, { channels: this.channels, reduce, width });
    }
    if (J2K_COMPRESSIONS.has(compression)) {
      // Aperio 33003 (and libvips' 33004) hold YCbCr: what the codec returns, after undoing its own component
      // transform if any, is still YCbCr (OpenSlide converts it the same way). 33005 holds RGB; generic
      // 34712 says which in Photometric.
      const ycc =
        compression === 33003 ||
        compression === 33004 ||
        (compression === 34712 && this.ifd.photometric === 6);
      // Against the nominal segment (a strip's full RowsPerStrip); the exact size is checked after decoding.
      checkCodestreamSize('jpeg-2000', bytes, this.grid.tileWidth, this.grid.tileHeight, what);
      return decodeJ2k(bytes, reduce, ycc, this.channels);
    }
    if (WRAPPED_COMPRESSIONS.has(compression) || compression === ZSTD) {
      return decodeWithSharp(await this.wrapped(bytes, row, what), what, {
        channels: this.channels,
        reduce,
        width,
      });
    }
    throw unsupported(`TIFF compression ${this.ifd.compressionName} cannot be decoded`, {
      compression,
      offset: this.ifd.offset,
    });
  }

  async decodeTilePart(col: number, row: number, rect: Rect): Promise<RawTile | undefined> {
    const compression = this.ifd.compression;
    if (compression !== 7 && compression !== ZSTD && !WRAPPED_COMPRESSIONS.has(compression)) return undefined;
    const bytes = await this.segmentBytes(col, row);
    if (!bytes) return undefined;
    const what = this.what(col, row);
    const input = compression === 7 ? await this.jpegStream(bytes) : await this.wrapped(bytes, row, what);
    return decodeWithSharp(input, what, { channels: this.channels, extract: rect });
  }

  private async jpegStream(bytes: Uint8Array): Promise<Uint8Array> {
    const merged = mergeJpegTables(await this.jpegTables(), bytes);
    // Photometric RGB means the JPEG holds RGB components: libtiff decodes them without a colour transform,
    // libjpeg alone would apply one unless the component ids say RGB.
    return this.ifd.photometric === 2 && this.ifd.samplesPerPixel >= 3 ? asRgbJpeg(merged) : merged;
  }

  /** The one-segment TIFF sharp decodes; a Zstandard segment is unpacked and deflated first (level 1: fast). */
  private async wrapped(segment: Uint8Array, row: number, what: string): Promise<Uint8Array> {
    if (this.ifd.compression !== ZSTD) return this.wrap(segment, row);
    let raw: Uint8Array;
    try {
      raw = zstdDecompress(segment);
    } catch (err) {
      throw corrupt(`${what}: bad Zstandard data (${err instanceof Error ? err.message : String(err)})`);
    }
    return this.wrap(deflateSync(raw, { level: 1 }), row, DEFLATE);
  }

  /** A classic TIFF holding this one segment, in the original byte order (sample bytes are kept as is). */
  private async wrap(segment: Uint8Array, row: number, compression?: number): Promise<Uint8Array> {
    const copied = await this.copiedTags();
    const { width, height } = this.segmentSize(row);
    const le = this.ifd.littleEndian;
    type Out = { tag: number; type: number; count: number; bytes?: Uint8Array; value?: number };
    const entries: Out[] = [
      { tag: TAG.ImageWidth, type: 4, count: 1, value: width },
      { tag: TAG.ImageLength, type: 4, count: 1, value: height },
      ...copied.map((c) =>
        compression !== undefined && c.tag === TAG.Compression
          ? { tag: c.tag, type: 3, count: 1, value: compression }
          : { tag: c.tag, type: c.type, count: c.count, bytes: c.bytes },
      ),
    ];
    const dataOffsetPlaceholder = -1;
    if (this.tiled) {
      entries.push({ tag: TAG.TileWidth, type: 4, count: 1, value: width });
      entries.push({ tag: TAG.TileLength, type: 4, count: 1, value: height });
      entries.push({ tag: TAG.TileOffsets, type: 4, count: 1, value: dataOffsetPlaceholder });
      entries.push({ tag: TAG.TileByteCounts, type: 4, count: 1, value: segment.length });
    } else {
      entries.push({ tag: TAG.StripOffsets, type: 4, count: 1, value: dataOffsetPlaceholder });
      entries.push({ tag: TAG.RowsPerStrip, type: 4, count: 1, value: height });
      entries.push({ tag: TAG.StripByteCounts, type: 4, count: 1, value: segment.length });
    }
    entries.sort((a, b) => a.tag - b.tag);
    const ifdSize = 2 + entries.length * 12 + 4;
    let valuesSize = 0;
    for (const e of entries)
      if (e.bytes && e.bytes.length > 4) valuesSize += e.bytes.length + (e.bytes.length % 2);
    const dataOffset = 8 + ifdSize + valuesSize;
    const out = new Uint8Array(dataOffset + segment.length);
    const dv = new DataView(out.buffer);
    out[0] = out[1] = le ? 0x49 : 0x4d;
    dv.setUint16(2, 42, le);
    dv.setUint32(4, 8, le);
    dv.setUint16(8, entries.length, le);
    let valueAt = 8 + ifdSize;
    entries.forEach((e, i) => {
      const at = 10 + i * 12;
      dv.setUint16(at, e.tag, le);
      dv.setUint16(at + 2, e.type, le);
      dv.setUint32(at + 4, e.count, le);
      if (e.bytes) {
        if (e.bytes.length <= 4) out.set(e.bytes, at + 8);
        else {
          out.set(e.bytes, valueAt);
          dv.setUint32(at + 8, valueAt, le);
          valueAt += e.bytes.length + (e.bytes.length % 2);
        }
      } else if (e.type === 3) {
        // A SHORT sits in the first two bytes of the value field, whatever the byte order.
        dv.setUint16(at + 8, e.value ?? 0, le);
      } else {
        dv.setUint32(at + 8, e.value === dataOffsetPlaceholder ? dataOffset : (e.value ?? 0), le);
      }
    });
    out.set(segment, dataOffset);
    return out;
  }
}

class DicomLevel implements LevelSource {
  readonly grid: LevelGrid;
  private readonly map: DicomTileMap;
  private frameTable?: Promise<DicomFrameTable>;
  private readonly codec: string;

  constructor(
    private readonly instance: DicomInstance,
    private readonly source: ByteSource | undefined,
    private readonly channels: 1 | 3,
  ) {
    this.map = dicomWsiTileMap(instance);
    this.codec = describeTransferSyntax(instance.transferSyntaxUid).codec;
    this.grid = {
      width: instance.totalPixelMatrixColumns ?? instance.columns ?? 0,
      height: instance.totalPixelMatrixRows ?? instance.rows ?? 0,
      tileWidth: this.map.tileWidth,
      tileHeight: this.map.tileHeight,
      cols: this.map.cols,
      rows: this.map.rows,
    };
  }

  private async frameBytes(frame: number): Promise<Uint8Array> {
    if (!this.source) return getEncapsulatedFrame(this.instance, frame);
    this.frameTable ??= readDicomFrameTable(this.source, this.instance);
    return readDicomFrame(this.source, await this.frameTable, frame);
  }

  async decodeTile(col: number, row: number, reduce: number): Promise<RawTile | undefined> {
    const frame = this.map.frameOfTile[row * this.map.cols + col] ?? -1;
    if (frame < 0) return undefined;
    const photometric = this.instance.photometricInterpretation ?? 'MONOCHROME2';
    const what = `frame ${frame + 1} of ${this.instance.numberOfFrames}`;
    switch (this.codec) {
      case 'jpeg-baseline':
      case 'jpeg-extended': {
        const bytes = await this.frameBytes(frame);
        const jpeg =
          photometric === 'RGB' && (this.instance.samplesPerPixel ?? 1) === 3 ? asRgbJpeg(bytes) : bytes;
        return decodeWithSharp(jpeg, `JPEG ${what}`, {
          channels: this.channels,
          reduce,
          width: this.map.tileWidth,
        });
      }
      case 'jpeg-2000': {
        const bytes = await this.frameBytes(frame);
        checkCodestreamSize('jpeg-2000', bytes, this.map.tileWidth, this.map.tileHeight, `JPEG 2000 ${what}`);
        // YBR_ICT / YBR_RCT frames carry the transform in the codestream; YBR_FULL ones do not.
        return decodeJ2k(bytes, reduce, photometric === 'YBR_FULL', this.channels);
      }
      case 'jpeg-ls': {
        const bytes = await this.frameBytes(frame);
        checkCodestreamSize('jpeg-ls', bytes, this.map.tileWidth, this.map.tileHeight, `JPEG-LS ${what}`);
        return decodeJpegLs(bytes, photometric, this.channels);
      }
      case 'native':
      case 'rle': {
        const decoded =
          this.source === undefined
            ? getFrame(this.instance, frame)
            : this.codec === 'rle'
              ? decodeRleFrame(await this.frameBytes(frame), describePixels(this.instance))
              : nativeFrame(await this.frameBytes(frame), this.instance);
        return withChannels(frameToTile(decoded), this.channels);
      }
      default:
        throw unsupported(
          `DICOM WSI frames in transfer syntax ${this.instance.transferSyntaxUid} (${this.codec}) cannot be decoded`,
          { transferSyntaxUid: this.instance.transferSyntaxUid },
        );
    }
  }
}

/** Native little-endian frame bytes read by range → a Frame (8 and 16 bits, interleaved or planar). */
function nativeFrame(bytes: Uint8Array, instance: DicomInstance): Frame {
  const d = describePixels(instance);
  const n = d.rows * d.columns * d.samplesPerPixel;
  if (d.bitsAllocated !== 8 && d.bitsAllocated !== 16) {
    throw unsupported(`native WSI frames of ${d.bitsAllocated} bits are not supported`);
  }
  if (d.photometricInterpretation === 'YBR_FULL_422')
    throw unsupported('native YBR_FULL_422 WSI frames are not supported');
  let pixels: Uint8Array | Uint16Array;
  if (d.bitsAllocated === 8) pixels = bytes.subarray(0, n);
  else {
    pixels = new Uint16Array(n);
    const view = new DataView(bytes.buffer, bytes.byteOffset, Math.min(bytes.byteLength, n * 2));
    for (let i = 0; i < n; i++) pixels[i] = view.getUint16(i * 2, true);
  }
  if (d.samplesPerPixel === 3 && d.planarConfiguration === 1) {
    const plane = d.rows * d.columns;
    const interleaved = d.bitsAllocated === 8 ? new Uint8Array(n) : new Uint16Array(n);
    for (let i = 0; i < plane; i++) {
      interleaved[i * 3] = pixels[i]!;
      interleaved[i * 3 + 1] = pixels[plane + i]!;
      interleaved[i * 3 + 2] = pixels[2 * plane + i]!;
    }
    pixels = interleaved;
  }
  return {
    rows: d.rows,
    columns: d.columns,
    samplesPerPixel: d.samplesPerPixel,
    photometricInterpretation: d.photometricInterpretation,
    bitsAllocated: d.bitsAllocated,
    bitsStored: d.bitsStored,
    pixelRepresentation: d.pixelRepresentation,
    pixels,
  };
}

/** A decoded DICOM frame → 8-bit grey or RGB. WSI frames are shown as stored (no per-frame window, which
 * would make neighbouring tiles differ in brightness). */
function frameToTile(frame: Frame): RawTile {
  const { rows, columns, samplesPerPixel } = frame;
  const n = rows * columns * samplesPerPixel;
  const shift = Math.max(0, frame.bitsStored - 8);
  let data: Uint8Array;
  if (frame.pixels instanceof Uint8Array && shift === 0) data = frame.pixels.subarray(0, n);
  else {
    data = new Uint8Array(n);
    for (let i = 0; i < n; i++) data[i] = Math.max(0, Math.min(255, Number(frame.pixels[i]) / 2 ** shift));
  }
  const pi = frame.photometricInterpretation;
  if (samplesPerPixel === 1) {
    if (pi === 'MONOCHROME1') data = data.map((v) => 255 - v);
    return { data, width: columns, height: rows, channels: 1 };
  }
  if (samplesPerPixel !== 3)
    throw unsupported(`WSI frames with ${samplesPerPixel} samples are not supported`);
  if (pi === 'YBR_FULL') data = ybrFullToRgb(data);
  else if (pi !== 'RGB') throw unsupported(`WSI frames in ${pi} are not supported`);
  return { data, width: columns, height: rows, channels: 3 };
}

// ---------------------------------------------------------------------------------------------- reader

class PyramidReader implements SlideTileReader {
  constructor(
    readonly id: string,
    readonly info: SlideInfo,
    readonly channels: 1 | 3,
    private readonly levels: LevelSource[],
    private readonly cache: TileCache<RawTile>,
  ) {}

  private level(level: number): LevelSource {
    const source = Number.isInteger(level) ? this.levels[level] : undefined;
    if (!source) {
      throw new AppError('NOT_FOUND', `slide level ${level} does not exist (${this.levels.length} levels)`, {
        retryable: false,
      });
    }
    return source;
  }

  grid(level: number): LevelGrid {
    return this.level(level).grid;
  }

  async readTile(level: number, col: number, row: number, reduce = 0): Promise<RawTile | undefined> {
    const source = this.level(level);
    const { cols, rows } = source.grid;
    if (
      !Number.isInteger(col) ||
      !Number.isInteger(row) ||
      col < 0 ||
      row < 0 ||
      col >= cols ||
      row >= rows
    ) {
      throw new AppError(
        'NOT_FOUND',
        `tile ${col},${row} is outside level ${level} (${cols}x${rows} tiles)`,
        {
          retryable: false,
        },
      );
    }
    const r = Math.max(0, Math.min(3, Math.floor(reduce)));
    const key = `${this.id}:${level}:${col}:${row}:${r}`;
    // Misses are remembered as an empty tile so that a sparse level is not re-read on every request.
    const tile = await this.cache.getOrCreate(
      key,
      async () => (await source.decodeTile(col, row, r)) ?? EMPTY_TILE,
    );
    return tile === EMPTY_TILE ? undefined : tile;
  }

  async readRegion(level: number, x: number, y: number, width: number, height: number): Promise<RawTile> {
    const source = this.level(level);
    if (
      !Number.isInteger(x) ||
      !Number.isInteger(y) ||
      !Number.isInteger(width) ||
      !Number.isInteger(height) ||
      width < 1 ||
      height < 1
    ) {
      throw new AppError(
        'VALIDATION_FAILED',
        `region ${x},${y} ${width}x${height} is not a rectangle of whole pixels`,
        {
          retryable: false,
        },
      );
    }
    if (width * height > MAX_REGION_PIXELS) {
      throw new AppError(
        'VALIDATION_FAILED',
        `region of ${width}x${height} pixels is larger than one read allows`,
        {
          retryable: false,
        },
      );
    }
    const c = this.channels;
    const out = new Uint8Array(width * height * c).fill(BACKGROUND);
    const g = source.grid;
    const x0 = Math.max(0, x);
    const y0 = Math.max(0, y);
    const x1 = Math.min(g.width, x + width);
    const y1 = Math.min(g.height, y + height);
    if (x0 >= x1 || y0 >= y1) return { data: out, width, height, channels: c };
    const large = g.tileWidth * g.tileHeight > LARGE_SEGMENT_PIXELS && source.decodeTilePart !== undefined;
    const jobs: Promise<void>[] = [];
    for (let row = Math.floor(y0 / g.tileHeight); row * g.tileHeight < y1; row++) {
      for (let col = Math.floor(x0 / g.tileWidth); col * g.tileWidth < x1; col++) {
        const tx = col * g.tileWidth;
        const ty = row * g.tileHeight;
        // The part of this tile inside the region.
        const ix0 = Math.max(x0, tx);
        const iy0 = Math.max(y0, ty);
        const ix1 = Math.min(x1, tx + g.tileWidth);
        const iy1 = Math.min(y1, ty + g.tileHeight);
        jobs.push(
          (async () => {
            let tile: RawTile | undefined;
            let ox = tx;
            let oy = ty;
            if (large) {
              tile = await source.decodeTilePart!(col, row, {
                left: ix0 - tx,
                top: iy0 - ty,
                width: ix1 - ix0,
                height: iy1 - iy0,
              });
              ox = ix0;
              oy = iy0;
            } else {
              tile = await this.readTile(level, col, row, 0);
            }
            if (tile) copyInto(out, width, height, c, x, y, tile, ox, oy, ix0, iy0, ix1, iy1);
          })(),
        );
      }
    }
    await Promise.all(jobs);
    return { data: out, width, height, channels: c };
  }
}

const EMPTY_TILE: RawTile = { data: new Uint8Array(0), width: 0, height: 0, channels: 1 };

/** Copies [ix0, ix1) × [iy0, iy1) (level pixels) of `tile` (placed at ox, oy) into the region at (rx, ry). */
function copyInto(
  out: Uint8Array,
  outWidth: number,
  outHeight: number,
  channels: number,
  rx: number,
  ry: number,
  tile: RawTile,
  ox: number,
  oy: number,
  ix0: number,
  iy0: number,
  ix1: number,
  iy1: number,
): void {
  const xEnd = Math.min(ix1, ox + tile.width);
  const yEnd = Math.min(iy1, oy + tile.height, ry + outHeight);
  if (xEnd <= ix0) return;
  const rowBytes = (xEnd - ix0) * channels;
  for (let yy = iy0; yy < yEnd; yy++) {
    const src = ((yy - oy) * tile.width + (ix0 - ox)) * channels;
    const dst = ((yy - ry) * outWidth + (ix0 - rx)) * channels;
    out.set(tile.data.subarray(src, src + rowBytes), dst);
  }
}

/** A reader over `info`'s levels, grey or RGB as level 0 is. */
function openPyramid(
  info: SlideInfo,
  opts: OpenSlideOptions,
  openLevel: (level: SlideLevel, channels: 1 | 3) => LevelSource,
): SlideTileReader {
  const channels = (info.levels[0]?.samplesPerPixel ?? 3) >= 3 ? 3 : 1;
  const levels = info.levels.map((level) => openLevel(level, channels));
  return new PyramidReader(
    opts.id ?? randomUUID(),
    info,
    channels,
    levels,
    opts.tileCache ?? createRawTileCache(32 * 1024 * 1024),
  );
}

/**
 * A tile reader over a TIFF-based slide (SVS, NDPI, generic pyramidal TIFF, OME-TIFF, Philips). `info` and
 * `tiff` may come from an earlier `readTiff`/`describeSlide` of the same source; they are read otherwise.
 */
export async function openTiffSlide(
  source: ByteSource,
  opts: OpenSlideOptions & { info?: SlideInfo; tiff?: TiffFile } = {},
): Promise<SlideTileReader> {
  const tiff = opts.tiff ?? (await readTiff(source));
  const info = opts.info ?? describeSlide(tiff);
  return openPyramid(info, opts, (level, channels) => {
    const page = tiff.ifds[level.ifd];
    const ifd = level.subifd === undefined ? page : page?.subIfds[level.subifd];
    if (!ifd || ifd.width !== level.width || ifd.height !== level.height) {
      throw corrupt(`slide level ${level.width}x${level.height} is not in the TIFF directory ${level.ifd}`);
    }
    return new TiffLevel(source, ifd, channels);
  });
}

export interface DicomWsiInput {
  /** Parsed instance: whole, or only its header when `source` is given (frames are then read by range). */
  instance: DicomInstance;
  source?: ByteSource | undefined;
}

/** A tile reader over the instances of one DICOM WSI series (see `describeDicomWsi`). */
export async function openDicomWsiSlide(
  inputs: readonly DicomWsiInput[],
  opts: OpenSlideOptions & { info?: SlideInfo } = {},
): Promise<SlideTileReader> {
  const info = opts.info ?? describeDicomWsi(inputs.map((input) => input.instance));
  return openPyramid(info, opts, (level, channels) => {
    const input = inputs[level.ifd];
    if (!input) throw corrupt(`slide level ${level.width}x${level.height} refers to a missing instance`);
    return new DicomLevel(input.instance, input.source, channels);
  });
}

// ---------------------------------------------------------------------------------------------- Deep Zoom

export interface DziTileOptions extends DziOptions {
  /** JPEG quality (default 80). */
  quality?: number;
  /** Encoded tiles, keyed by reader id, level, tile and encoding. */
  cache?: TileCache<Buffer>;
}

export function createEncodedTileCache(maxBytes: number): TileCache<Buffer> {
  return new TileCache<Buffer>({ maxBytes, sizeOf: (b) => b.byteLength + 64 });
}

/**
 * One Deep Zoom tile, cut from the nearest pyramid level at or above its resolution: reads and decodes
 * only the source tiles under it. Throws NOT_FOUND for tiles outside the grid, CORRUPT_FILE or
 * UNSUPPORTED_FORMAT when a source tile does not decode.
 */
export async function renderDziTile(
  slide: SlideTileReader,
  level: number,
  col: number,
  row: number,
  opts: DziTileOptions = {},
): Promise<Buffer> {
  const region = dziTileRegion(slide.info, level, col, row, opts);
  const format = opts.format ?? 'jpeg';
  const quality = opts.quality ?? 80;
  const key = `${slide.id}:dzi:${opts.tileSize ?? 254}:${opts.overlap ?? 1}:${level}:${col}_${row}.${format}:${quality}`;
  const make = async (): Promise<Buffer> => {
    const pixels = await slide.readRegion(
      region.sourceLevel,
      region.x,
      region.y,
      region.sourceWidth,
      region.sourceHeight,
    );
    let image = sharp(pixels.data, {
      raw: { width: pixels.width, height: pixels.height, channels: pixels.channels },
    });
    if (pixels.width !== region.width || pixels.height !== region.height) {
      image = image.resize(region.width, region.height, { fit: 'fill', kernel: 'lanczos3' });
    }
    if (pixels.channels === 1) image = image.toColourspace('b-w');
    image = format === 'png' ? image.png({ compressionLevel: 3 }) : image.jpeg({ quality, mozjpeg: false });
    return image.toBuffer();
  };
  return opts.cache ? opts.cache.getOrCreate(key, make) : make();
}
