/**
 * TIFF / BigTIFF / NDPI directory reader over a random-access ByteSource.
 *
 * Slides are gigabytes, so this reads the header, the IFD chain and the few tag values a slide description
 * needs, nothing else. Tile and strip offset arrays can be megabytes; they stay on disk until
 * `readTileTable` is called. Every offset, count and loop is checked against the source size, so a hostile
 * file costs at most `maxIfds` directory reads and `maxTagBytes` per tag value.
 */
import { AppError } from '../../errors.js';
import type { ByteSource } from '../types.js';

export const TAG = {
  NewSubfileType: 254,
  ImageWidth: 256,
  ImageLength: 257,
  BitsPerSample: 258,
  Compression: 259,
  Photometric: 262,
  DocumentName: 269,
  ImageDescription: 270,
  Make: 271,
  Model: 272,
  StripOffsets: 273,
  SamplesPerPixel: 277,
  RowsPerStrip: 278,
  StripByteCounts: 279,
  XResolution: 282,
  YResolution: 283,
  PlanarConfig: 284,
  PageName: 285,
  ResolutionUnit: 296,
  Software: 305,
  DateTime: 306,
  Artist: 315,
  HostComputer: 316,
  Predictor: 317,
  TileWidth: 322,
  TileLength: 323,
  TileOffsets: 324,
  TileByteCounts: 325,
  SubIFDs: 330,
  ExtraSamples: 338,
  SampleFormat: 339,
  JPEGTables: 347,
  YCbCrCoefficients: 529,
  YCbCrSubsampling: 530,
  YCbCrPositioning: 531,
  ReferenceBlackWhite: 532,
  XMP: 700,
  Copyright: 33432,
  IPTC: 33723,
  Photoshop: 34377,
  ExifIFD: 34665,
  ICCProfile: 34675,
  GPSIFD: 34853,
  NdpiFormatFlag: 65420,
  NdpiSourceLens: 65421,
  NdpiXOffset: 65422,
  NdpiYOffset: 65423,
  NdpiFocalPlane: 65424,
  NdpiReference: 65427,
  NdpiPropertyMap: 65449,
} as const;

const COMPRESSION_NAMES: Readonly<Record<number, string>> = {
  1: 'none',
  2: 'ccitt-rle',
  3: 'ccitt-g3',
  4: 'ccitt-g4',
  5: 'lzw',
  6: 'old-jpeg',
  7: 'jpeg',
  8: 'deflate',
  32773: 'packbits',
  32946: 'deflate',
  33003: 'aperio-jp2k-ycbcr',
  // libvips writes JPEG 2000 tiles under this number (YCbCr, lossy), next to Aperio's two.
  33004: 'jp2k-ycbcr-lossy',
  33005: 'aperio-jp2k-rgb',
  34712: 'jpeg2000',
  34887: 'lerc',
  34925: 'lzma',
  50000: 'zstd',
  50001: 'webp',
  50002: 'jpeg-xl',
  52546: 'jpeg-xl',
};

/** Stable lower-case compression name; unknown schemes keep their number so logs still say which. */
export function compressionName(code: number): string {
  return COMPRESSION_NAMES[code] ?? `unknown-${code}`;
}

/** One directory entry as stored in the file. Offsets are absolute so that a later writer (label removal)
 * can patch a tag or unlink a directory in place. */
export interface TiffEntry {
  readonly tag: number;
  readonly type: number;
  readonly count: number;
  /** Where the value bytes are: inside the entry when they fit there, else the (NDPI-corrected) pointer. */
  readonly valueOffset: number;
  /** Where the 12-byte (BigTIFF: 20-byte) entry itself starts. */
  readonly entryOffset: number;
}

/** Hamamatsu private tags, present on every NDPI directory. */
export interface NdpiTags {
  formatFlag: number;
  /** Magnification of this directory; -1 is the macro image, -2 the map of scanned regions. */
  sourceLens?: number | undefined;
  xOffsetNm?: number | undefined;
  yOffsetNm?: number | undefined;
  focalPlane?: number | undefined;
  reference?: string | undefined;
  /** `key=value` lines (CRLF separated). */
  propertyMap?: string | undefined;
}

export interface TiffIfd {
  /** File offset of the directory. */
  readonly offset: number;
  /** File offset of this directory's next-IFD pointer (unlinking a directory rewrites the previous one). */
  readonly nextPointerOffset: number;
  readonly entries: ReadonlyMap<number, TiffEntry>;
  readonly littleEndian: boolean;
  readonly bigTiff: boolean;
  /** Classic TIFF whose offsets lose their high 32 bits past 4 GiB (Hamamatsu NDPI). */
  readonly ndpi: boolean;
  width: number;
  height: number;
  tileWidth?: number | undefined;
  tileHeight?: number | undefined;
  rowsPerStrip?: number | undefined;
  compression: number;
  compressionName: string;
  photometric?: number | undefined;
  samplesPerPixel: number;
  bitsPerSample: number;
  /** 1 unsigned, 2 signed, 3 float. */
  sampleFormat: number;
  planarConfig: number;
  newSubfileType: number;
  imageDescription?: string | undefined;
  software?: string | undefined;
  make?: string | undefined;
  model?: string | undefined;
  dateTime?: string | undefined;
  xResolution?: number | undefined;
  yResolution?: number | undefined;
  /** 1 none, 2 inch (the TIFF default), 3 centimetre. */
  resolutionUnit: number;
  /** Number of tile (or strip) offsets recorded; the offsets themselves are read by `readTileTable`. */
  segmentCount: number;
  ndpiTags?: NdpiTags | undefined;
  /** Reduced-resolution images hung off this directory (tag 330, OME-TIFF pyramids). */
  subIfds: TiffIfd[];
}

export interface TiffFile {
  readonly littleEndian: boolean;
  readonly bigTiff: boolean;
  readonly ndpi: boolean;
  readonly size: number;
  /** The main IFD chain, in file order: index i is what libvips/sharp call page i. */
  readonly ifds: TiffIfd[];
  /** True when the chain was longer than `maxIfds` and reading stopped there. */
  readonly chainTruncated: boolean;
}

export interface ReadTiffOptions {
  /** Directories read at most, SubIFDs included (default 1024). */
  maxIfds?: number;
  /** Bytes read at most for one tag value (default 16 MiB); longer text values are cut. */
  maxTagBytes?: number;
}

const DEFAULT_MAX_IFDS = 1024;
const DEFAULT_MAX_TAG_BYTES = 16 * 1024 * 1024;
/** Real directories have tens of entries; libtiff refuses more than 65535 too. */
const MAX_ENTRIES = 65535;
const TWO_32 = 2 ** 32;

/** Bytes per value of each TIFF field type, BigTIFF's included. */
export const TYPE_SIZES: Readonly<Record<number, number>> = {
  1: 1, // BYTE
  2: 1, // ASCII
  3: 2, // SHORT
  4: 4, // LONG
  5: 8, // RATIONAL
  6: 1, // SBYTE
  7: 1, // UNDEFINED
  8: 2, // SSHORT
  9: 4, // SLONG
  10: 8, // SRATIONAL
  11: 4, // FLOAT
  12: 8, // DOUBLE
  13: 4, // IFD
  16: 8, // LONG8
  17: 8, // SLONG8
  18: 8, // IFD8
};

function corrupt(message: string, offset?: number, details: Record<string, unknown> = {}): AppError {
  return new AppError('CORRUPT_FILE', offset === undefined ? message : `${message} (offset ${offset})`, {
    retryable: false,
    details: offset === undefined ? details : { ...details, offset },
  });
}

/**
 * Reads through small cached blocks: IFDs and their short values sit close together, and over object
 * storage every read is a round trip. The cache is bounded, so memory stays flat whatever the file.
 */
class BlockReader {
  private readonly blocks = new Map<number, Uint8Array>();
  private static readonly BLOCK = 64 * 1024;
  private static readonly MAX_BLOCKS = 64;

  constructor(private readonly source: ByteSource) {}

  get size(): number {
    return this.source.size;
  }

  async read(offset: number, length: number, what: string): Promise<Uint8Array> {
    if (!Number.isSafeInteger(offset) || offset < 0 || length < 0 || offset + length > this.source.size) {
      throw corrupt(`${what} lies past the end of the file (${this.source.size} bytes)`, offset, { length });
    }
    if (length === 0) return new Uint8Array(0);
    const B = BlockReader.BLOCK;
    const first = Math.floor(offset / B);
    const last = Math.floor((offset + length - 1) / B);
    if (last - first > 1) return this.direct(offset, length, what);
    const head = await this.block(first, what);
    const start = offset - first * B;
    if (first === last) return head.subarray(start, start + length);
    const tail = await this.block(last, what);
    const out = new Uint8Array(length);
    out.set(head.subarray(start));
    out.set(tail.subarray(0, length - (head.byteLength - start)), head.byteLength - start);
    return out;
  }

  private async direct(offset: number, length: number, what: string): Promise<Uint8Array> {
    const bytes = await this.source.read(offset, length);
    if (bytes.byteLength < length) throw corrupt(`${what} is truncated`, offset, { length });
    return bytes.subarray(0, length);
  }

  private async block(index: number, what: string): Promise<Uint8Array> {
    const cached = this.blocks.get(index);
    if (cached) return cached;
    const start = index * BlockReader.BLOCK;
    const length = Math.min(BlockReader.BLOCK, this.source.size - start);
    const bytes = await this.direct(start, length, what);
    if (this.blocks.size >= BlockReader.MAX_BLOCKS) {
      const oldest = this.blocks.keys().next().value;
      if (oldest !== undefined) this.blocks.delete(oldest);
    }
    this.blocks.set(index, bytes);
    return bytes;
  }
}

function view(bytes: Uint8Array): DataView {
  return new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

function readU64(dv: DataView, at: number, le: boolean): number {
  const value = dv.getBigUint64(at, le);
  // Offsets above 2^53 cannot address any real file; treat them like any other offset past the end.
  return value > BigInt(Number.MAX_SAFE_INTEGER) ? Number.MAX_SAFE_INTEGER : Number(value);
}

/** Decodes `count` numeric values of a TIFF type; rationals become one number each. */
function decodeNumbers(bytes: Uint8Array, type: number, count: number, le: boolean): number[] {
  const dv = view(bytes);
  const out: number[] = [];
  for (let i = 0; i < count; i++) {
    switch (type) {
      case 1:
      case 7:
        out.push(dv.getUint8(i));
        break;
      case 6:
        out.push(dv.getInt8(i));
        break;
      case 3:
        out.push(dv.getUint16(i * 2, le));
        break;
      case 8:
        out.push(dv.getInt16(i * 2, le));
        break;
      case 4:
      case 13:
        out.push(dv.getUint32(i * 4, le));
        break;
      case 9:
        out.push(dv.getInt32(i * 4, le));
        break;
      case 11:
        out.push(dv.getFloat32(i * 4, le));
        break;
      case 12:
        out.push(dv.getFloat64(i * 8, le));
        break;
      case 5: {
        const den = dv.getUint32(i * 8 + 4, le);
        out.push(den === 0 ? Number.NaN : dv.getUint32(i * 8, le) / den);
        break;
      }
      case 10: {
        const den = dv.getInt32(i * 8 + 4, le);
        out.push(den === 0 ? Number.NaN : dv.getInt32(i * 8, le) / den);
        break;
      }
      case 16:
      case 18:
        out.push(readU64(dv, i * 8, le));
        break;
      case 17:
        out.push(Number(dv.getBigInt64(i * 8, le)));
        break;
      default:
        return out;
    }
  }
  return out;
}

const textDecoder = new TextDecoder('utf-8');

function decodeText(bytes: Uint8Array): string {
  const nul = bytes.indexOf(0);
  return textDecoder.decode(nul >= 0 ? bytes.subarray(0, nul) : bytes).trim();
}

/**
 * NDPI stores 32-bit offsets in a file that may pass 4 GiB. Data is written before its directory, so the
 * missing high bits are the largest ones that keep the offset below the directory (OpenSlide's rule).
 */
function fixNdpiOffset(dirOffset: number, offset: number): number {
  const high = Math.floor(dirOffset / TWO_32) * TWO_32;
  const candidate = high + (offset % TWO_32);
  return candidate >= dirOffset && candidate >= TWO_32 ? candidate - TWO_32 : candidate;
}

interface Layout {
  readonly le: boolean;
  readonly big: boolean;
  readonly ndpi: boolean;
}

interface RawIfd {
  offset: number;
  nextPointerOffset: number;
  next: number;
  entries: Map<number, TiffEntry>;
}

async function readRawIfd(
  reader: BlockReader,
  offset: number,
  layout: Layout,
  firstIfd: RawIfd | undefined,
): Promise<RawIfd> {
  const { le, big, ndpi } = layout;
  const headerSize = big ? 16 : 8;
  if (offset < headerSize || offset >= reader.size) {
    throw corrupt(`IFD offset ${offset} is outside the file (${reader.size} bytes)`, offset);
  }
  const countSize = big ? 8 : 2;
  const countBytes = await reader.read(offset, countSize, 'IFD entry count');
  const count = big ? readU64(view(countBytes), 0, le) : view(countBytes).getUint16(0, le);
  if (count === 0 || count > MAX_ENTRIES) {
    throw corrupt(`IFD has an implausible entry count ${count}`, offset);
  }
  const entrySize = big ? 20 : 12;
  const nextSize = big || ndpi ? 8 : 4;
  const tableStart = offset + countSize;
  const tableLength = count * entrySize;
  if (tableStart + tableLength + 4 > reader.size) {
    throw corrupt(`IFD with ${count} entries runs past the end of the file`, offset);
  }
  // NDPI's 8-byte next pointer may be cut short on the last directory of a small file; 4 bytes then hold it.
  const available = Math.min(nextSize, reader.size - (tableStart + tableLength));
  const table = await reader.read(tableStart, tableLength + available, 'IFD entries');
  const dv = view(table);
  const entries = new Map<number, TiffEntry>();
  for (let i = 0; i < count; i++) {
    const at = i * entrySize;
    const tag = dv.getUint16(at, le);
    const type = dv.getUint16(at + 2, le);
    const valueCount = big ? readU64(dv, at + 4, le) : dv.getUint32(at + 4, le);
    const typeSize = TYPE_SIZES[type];
    // libtiff skips entries of unknown type and keeps the first of duplicated tags; so do we.
    if (typeSize === undefined || entries.has(tag)) continue;
    const fieldAt = at + (big ? 12 : 8);
    const inlineSize = big ? 8 : 4;
    const byteLength = valueCount * typeSize;
    let valueOffset: number;
    if (byteLength <= inlineSize) {
      valueOffset = tableStart + fieldAt;
    } else {
      valueOffset = big ? readU64(dv, fieldAt, le) : dv.getUint32(fieldAt, le);
      if (ndpi) {
        // A value shared with the first directory (same raw pointer) is the same bytes; OpenSlide reuses it.
        const shared = firstIfd?.entries.get(tag);
        if (
          !shared ||
          shared.type !== type ||
          shared.count !== valueCount ||
          shared.valueOffset % TWO_32 !== valueOffset
        ) {
          valueOffset = fixNdpiOffset(offset, valueOffset);
        } else {
          valueOffset = shared.valueOffset;
        }
      }
    }
    entries.set(tag, { tag, type, count: valueCount, valueOffset, entryOffset: tableStart + at });
  }
  const nextAt = tableLength;
  let next: number;
  if (available >= 8 && nextSize === 8) next = readU64(dv, nextAt, le);
  else next = dv.getUint32(nextAt, le);
  return { offset, nextPointerOffset: tableStart + tableLength, next, entries };
}

interface ValueReader {
  numbers(entry: TiffEntry | undefined, maxCount?: number): Promise<number[]>;
  text(entry: TiffEntry | undefined): Promise<string | undefined>;
}

function valueReader(reader: BlockReader, layout: Layout, maxTagBytes: number): ValueReader {
  return {
    async numbers(entry, maxCount = 16) {
      if (!entry || entry.count === 0) return [];
      const typeSize = TYPE_SIZES[entry.type] ?? 1;
      const count = Math.min(entry.count, maxCount);
      const bytes = await reader.read(entry.valueOffset, count * typeSize, `value of tag ${entry.tag}`);
      return decodeNumbers(bytes, entry.type, count, layout.le);
    },
    async text(entry) {
      if (!entry || entry.count === 0) return undefined;
      const length = Math.min(entry.count * (TYPE_SIZES[entry.type] ?? 1), maxTagBytes);
      const bytes = await reader.read(entry.valueOffset, length, `value of tag ${entry.tag}`);
      return decodeText(bytes);
    },
  };
}

function finiteOrUndefined(value: number | undefined): number | undefined {
  return value !== undefined && Number.isFinite(value) ? value : undefined;
}

async function describeIfd(raw: RawIfd, layout: Layout, values: ValueReader, size: number): Promise<TiffIfd> {
  const e = raw.entries;
  const first = async (tag: number): Promise<number | undefined> => (await values.numbers(e.get(tag), 1))[0];
  const width = await first(TAG.ImageWidth);
  const height = await first(TAG.ImageLength);
  if (!width || !height) {
    throw corrupt(
      `IFD has no image size (width ${width ?? 'missing'}, height ${height ?? 'missing'})`,
      raw.offset,
    );
  }
  const tileWidth = await first(TAG.TileWidth);
  const tileHeight = await first(TAG.TileLength);
  const tiled = e.has(TAG.TileWidth) || e.has(TAG.TileLength);
  if (tiled && (!tileWidth || !tileHeight)) {
    throw corrupt(
      `IFD has a zero or missing tile size (${tileWidth ?? 'missing'}x${tileHeight ?? 'missing'})`,
      raw.offset,
    );
  }
  const offsetsEntry = e.get(tiled ? TAG.TileOffsets : TAG.StripOffsets);
  if (offsetsEntry) {
    const bytes = offsetsEntry.count * (TYPE_SIZES[offsetsEntry.type] ?? 1);
    if (bytes > size) {
      throw corrupt(
        `${tiled ? 'TileOffsets' : 'StripOffsets'} count ${offsetsEntry.count} cannot fit in the file`,
        raw.offset,
      );
    }
  }
  const compression = (await first(TAG.Compression)) ?? 1;
  const ndpiFlag = e.get(TAG.NdpiFormatFlag);
  let ndpiTags: NdpiTags | undefined;
  if (ndpiFlag) {
    ndpiTags = {
      formatFlag: (await first(TAG.NdpiFormatFlag)) ?? 0,
      sourceLens: finiteOrUndefined(await first(TAG.NdpiSourceLens)),
      xOffsetNm: finiteOrUndefined(await first(TAG.NdpiXOffset)),
      yOffsetNm: finiteOrUndefined(await first(TAG.NdpiYOffset)),
      focalPlane: finiteOrUndefined(await first(TAG.NdpiFocalPlane)),
      reference: await values.text(e.get(TAG.NdpiReference)),
      propertyMap: await values.text(e.get(TAG.NdpiPropertyMap)),
    };
  }
  return {
    offset: raw.offset,
    nextPointerOffset: raw.nextPointerOffset,
    entries: e,
    littleEndian: layout.le,
    bigTiff: layout.big,
    ndpi: layout.ndpi,
    width,
    height,
    tileWidth: tiled ? tileWidth : undefined,
    tileHeight: tiled ? tileHeight : undefined,
    rowsPerStrip: tiled ? undefined : ((await first(TAG.RowsPerStrip)) ?? height),
    compression,
    compressionName: compressionName(compression),
    photometric: await first(TAG.Photometric),
    samplesPerPixel: (await first(TAG.SamplesPerPixel)) ?? 1,
    bitsPerSample: (await first(TAG.BitsPerSample)) ?? 1,
    sampleFormat: (await first(TAG.SampleFormat)) ?? 1,
    planarConfig: (await first(TAG.PlanarConfig)) ?? 1,
    newSubfileType: (await first(TAG.NewSubfileType)) ?? 0,
    imageDescription: await values.text(e.get(TAG.ImageDescription)),
    software: await values.text(e.get(TAG.Software)),
    make: await values.text(e.get(TAG.Make)),
    model: await values.text(e.get(TAG.Model)),
    dateTime: await values.text(e.get(TAG.DateTime)),
    xResolution: finiteOrUndefined(await first(TAG.XResolution)),
    yResolution: finiteOrUndefined(await first(TAG.YResolution)),
    resolutionUnit: (await first(TAG.ResolutionUnit)) ?? 2,
    segmentCount: offsetsEntry?.count ?? 0,
    ndpiTags,
    subIfds: [],
  };
}

interface Header {
  layout: Layout;
  firstIfd: RawIfd | undefined;
  firstOffset: number;
}

async function readHeader(reader: BlockReader): Promise<Header> {
  const size = reader.size;
  if (size < 4)
    throw new AppError('UNSUPPORTED_FORMAT', 'not a TIFF file: shorter than a TIFF header', {
      retryable: false,
    });
  const magic = await reader.read(0, 4, 'TIFF header');
  const order = String.fromCharCode(magic[0] ?? 0, magic[1] ?? 0);
  if (order !== 'II' && order !== 'MM') {
    throw new AppError('UNSUPPORTED_FORMAT', 'not a TIFF file: no II/MM byte-order mark', {
      retryable: false,
    });
  }
  const le = order === 'II';
  const version = view(magic).getUint16(2, le);
  if (version !== 42 && version !== 43) {
    throw new AppError('UNSUPPORTED_FORMAT', `not a TIFF file: version ${version} (expected 42 or 43)`, {
      retryable: false,
    });
  }
  if (version === 43) {
    if (size < 16) throw corrupt('BigTIFF header is truncated', 0);
    const dv = view(await reader.read(0, 16, 'BigTIFF header'));
    const offsetSize = dv.getUint16(4, le);
    if (offsetSize !== 8 || dv.getUint16(6, le) !== 0) {
      throw corrupt(`BigTIFF header has offset size ${offsetSize} (expected 8)`, 4);
    }
    return { layout: { le, big: true, ndpi: false }, firstIfd: undefined, firstOffset: readU64(dv, 8, le) };
  }
  if (size < 8) throw corrupt('TIFF header is truncated', 0);
  const low = view(await reader.read(4, 4, 'TIFF header')).getUint32(0, le);
  // NDPI pretends to be BigTIFF inside classic TIFF: the header offset may carry 32 high bits after it.
  // Try that reading first, as OpenSlide does, and keep it only when the directory has the NDPI tag.
  const ndpiLayout: Layout = { le, big: false, ndpi: true };
  if (size >= 12) {
    const high = view(await reader.read(8, 4, 'TIFF header')).getUint32(0, le);
    const wide = high * TWO_32 + low;
    if (high !== 0 && wide < size) {
      const trial = await readRawIfd(reader, wide, ndpiLayout, undefined).catch(() => undefined);
      if (trial?.entries.has(TAG.NdpiFormatFlag))
        return { layout: ndpiLayout, firstIfd: trial, firstOffset: wide };
    }
  }
  if (low !== 0) {
    const trial = await readRawIfd(reader, low, ndpiLayout, undefined).catch(() => undefined);
    if (trial?.entries.has(TAG.NdpiFormatFlag))
      return { layout: ndpiLayout, firstIfd: trial, firstOffset: low };
  }
  return { layout: { le, big: false, ndpi: false }, firstIfd: undefined, firstOffset: low };
}

/**
 * Reads the TIFF header and its directory chain (plus SubIFDs one level down). Throws UNSUPPORTED_FORMAT
 * when the bytes are not TIFF at all and CORRUPT_FILE (with the offset) when they are TIFF but broken:
 * directory loops, offsets past the end, impossible counts.
 */
export async function readTiff(source: ByteSource, opts: ReadTiffOptions = {}): Promise<TiffFile> {
  const maxIfds = opts.maxIfds ?? DEFAULT_MAX_IFDS;
  const maxTagBytes = opts.maxTagBytes ?? DEFAULT_MAX_TAG_BYTES;
  const reader = new BlockReader(source);
  const header = await readHeader(reader);
  const { layout } = header;
  const values = valueReader(reader, layout, maxTagBytes);
  const visited = new Set<number>();
  const ifds: TiffIfd[] = [];
  let budget = maxIfds;
  let chainTruncated = false;
  let firstRaw: RawIfd | undefined;
  let offset = header.firstOffset;
  if (offset === 0) throw corrupt('TIFF has no image directory (first IFD offset is 0)', 4);

  while (offset !== 0) {
    if (budget <= 0) {
      chainTruncated = true;
      break;
    }
    if (visited.has(offset)) throw corrupt('IFD chain loops back to an earlier directory', offset);
    visited.add(offset);
    const raw =
      firstRaw === undefined && header.firstIfd?.offset === offset
        ? header.firstIfd
        : await readRawIfd(reader, offset, layout, firstRaw);
    firstRaw ??= raw;
    budget--;
    const ifd = await describeIfd(raw, layout, values, source.size);
    const subEntry = raw.entries.get(TAG.SubIFDs);
    if (subEntry) {
      const subOffsets = await values.numbers(subEntry, Math.max(0, Math.min(subEntry.count, budget)));
      if (subOffsets.length < subEntry.count) chainTruncated = true;
      for (const rawSub of subOffsets) {
        const subOffset = layout.ndpi ? fixNdpiOffset(raw.offset, rawSub) : rawSub;
        if (visited.has(subOffset)) throw corrupt('SubIFD points back to an earlier directory', subOffset);
        visited.add(subOffset);
        budget--;
        const sub = await readRawIfd(reader, subOffset, layout, firstRaw);
        ifd.subIfds.push(await describeIfd(sub, layout, values, source.size));
      }
    }
    ifds.push(ifd);
    offset = raw.next;
  }
  return {
    littleEndian: layout.le,
    bigTiff: layout.big,
    ndpi: layout.ndpi,
    size: source.size,
    ifds,
    chainTruncated,
  };
}

/** Tiles (or strips) a directory must have, from its geometry. */
export function expectedSegmentCount(ifd: TiffIfd): number {
  const planes = ifd.planarConfig === 2 ? ifd.samplesPerPixel : 1;
  if (ifd.tileWidth && ifd.tileHeight) {
    return Math.ceil(ifd.width / ifd.tileWidth) * Math.ceil(ifd.height / ifd.tileHeight) * planes;
  }
  const rows = Math.min(ifd.rowsPerStrip || ifd.height, ifd.height);
  return Math.ceil(ifd.height / rows) * planes;
}

export interface TileTable {
  /** Absolute file offsets, one per tile (row-major) or strip; 0 with a 0 byte count is a missing tile. */
  offsets: Float64Array;
  byteCounts: Float64Array;
}

/**
 * Loads a directory's tile (or strip) offsets and byte counts. Kept apart from `readTiff` because a large
 * level has hundreds of thousands of tiles and a thumbnail needs none of them.
 */
export async function readTileTable(
  source: ByteSource,
  ifd: TiffIfd,
  opts: { maxEntries?: number } = {},
): Promise<TileTable> {
  const maxEntries = opts.maxEntries ?? 16 * 1024 * 1024;
  const tiled = ifd.tileWidth !== undefined;
  const offsetsEntry = ifd.entries.get(tiled ? TAG.TileOffsets : TAG.StripOffsets);
  const countsEntry = ifd.entries.get(tiled ? TAG.TileByteCounts : TAG.StripByteCounts);
  const what = tiled ? 'TileOffsets/TileByteCounts' : 'StripOffsets/StripByteCounts';
  if (!offsetsEntry || !countsEntry) throw corrupt(`IFD has no ${what}`, ifd.offset);
  const expected = expectedSegmentCount(ifd);
  if (offsetsEntry.count !== countsEntry.count || offsetsEntry.count < expected) {
    throw corrupt(
      `${what} counts ${offsetsEntry.count}/${countsEntry.count} do not match the ${expected} the image size needs`,
      ifd.offset,
    );
  }
  if (expected > maxEntries)
    throw corrupt(`${what} has ${expected} entries, more than ${maxEntries}`, ifd.offset);
  const reader = new BlockReader(source);
  const readArray = async (entry: TiffEntry): Promise<Float64Array> => {
    const typeSize = TYPE_SIZES[entry.type] ?? 0;
    if (![3, 4, 13, 16, 18].includes(entry.type)) {
      throw corrupt(`tag ${entry.tag} has non-integer type ${entry.type}`, entry.entryOffset);
    }
    const bytes = await reader.read(entry.valueOffset, expected * typeSize, `tag ${entry.tag} values`);
    return Float64Array.from(decodeNumbers(bytes, entry.type, expected, ifd.littleEndian));
  };
  const offsets = await readArray(offsetsEntry);
  const byteCounts = await readArray(countsEntry);
  for (let i = 0; i < expected; i++) {
    const start = ifd.ndpi ? fixNdpiOffset(ifd.offset, offsets[i] ?? 0) : (offsets[i] ?? 0);
    offsets[i] = start;
    const length = byteCounts[i] ?? 0;
    if (length !== 0 && start + length > source.size) {
      throw corrupt(
        `${tiled ? 'tile' : 'strip'} ${i} (${length} bytes) runs past the end of the file`,
        start,
      );
    }
  }
  return { offsets, byteCounts };
}

/** Raw bytes of any tag (JPEGTables, ICC profile, XMP …) for the readers that need them, bounded. */
export async function readTagBytes(
  source: ByteSource,
  ifd: TiffIfd,
  tag: number,
  maxBytes = DEFAULT_MAX_TAG_BYTES,
): Promise<Uint8Array | undefined> {
  const entry = ifd.entries.get(tag);
  if (!entry) return undefined;
  const length = entry.count * (TYPE_SIZES[entry.type] ?? 1);
  if (length > maxBytes)
    throw corrupt(`tag ${tag} holds ${length} bytes, more than ${maxBytes}`, entry.entryOffset);
  // One exact read: a tile reader asks for JPEGTables once, and a block would cost 64 kB per slide level.
  if (entry.valueOffset + length > source.size) {
    throw corrupt(`tag ${tag} value lies past the end of the file`, entry.valueOffset);
  }
  const bytes = (await source.read(entry.valueOffset, length)).subarray(0, length);
  if (bytes.byteLength < length) throw corrupt(`tag ${tag} value is truncated`, entry.valueOffset);
  return bytes;
}

/**
 * Offsets and byte counts of `count` consecutive tiles (or strips) from `first`, read by range. A DZI tile
 * needs a handful of source tiles; reading the whole table of a 100k-pixel level (megabytes) for them would
 * cost more than the tiles themselves.
 */
export async function readTileEntries(
  source: ByteSource,
  ifd: TiffIfd,
  first: number,
  count: number,
): Promise<TileTable> {
  const tiled = ifd.tileWidth !== undefined;
  const offsetsEntry = ifd.entries.get(tiled ? TAG.TileOffsets : TAG.StripOffsets);
  const countsEntry = ifd.entries.get(tiled ? TAG.TileByteCounts : TAG.StripByteCounts);
  const what = tiled ? 'TileOffsets/TileByteCounts' : 'StripOffsets/StripByteCounts';
  if (!offsetsEntry || !countsEntry) throw corrupt(`IFD has no ${what}`, ifd.offset);
  const available = Math.min(offsetsEntry.count, countsEntry.count);
  if (
    !Number.isInteger(first) ||
    !Number.isInteger(count) ||
    first < 0 ||
    count < 0 ||
    first + count > available
  ) {
    throw corrupt(
      `${what} has ${available} entries; entries ${first}..${first + count - 1} do not exist`,
      ifd.offset,
    );
  }
  const readRange = async (entry: TiffEntry): Promise<Float64Array> => {
    const typeSize = TYPE_SIZES[entry.type] ?? 0;
    if (![3, 4, 13, 16, 18].includes(entry.type)) {
      throw corrupt(`tag ${entry.tag} has non-integer type ${entry.type}`, entry.entryOffset);
    }
    // Exactly the entries asked for: block-sized reads would fetch 64 kB from object storage per tile row.
    const at = entry.valueOffset + first * typeSize;
    const length = count * typeSize;
    if (at + length > source.size) throw corrupt(`tag ${entry.tag} values lie past the end of the file`, at);
    const bytes = (await source.read(at, length)).subarray(0, length);
    if (bytes.byteLength < length) throw corrupt(`tag ${entry.tag} values are truncated`, at);
    return Float64Array.from(decodeNumbers(bytes, entry.type, count, ifd.littleEndian));
  };
  const offsets = await readRange(offsetsEntry);
  const byteCounts = await readRange(countsEntry);
  for (let i = 0; i < count; i++) {
    const start = ifd.ndpi ? fixNdpiOffset(ifd.offset, offsets[i] ?? 0) : (offsets[i] ?? 0);
    offsets[i] = start;
    const length = byteCounts[i] ?? 0;
    if (length !== 0 && start + length > source.size) {
      throw corrupt(
        `${tiled ? 'tile' : 'strip'} ${first + i} (${length} bytes) runs past the end of the file`,
        start,
      );
    }
  }
  return { offsets, byteCounts };
}
