/**
 * De-identified copies of TIFF-based slides. The label photographs the patient's name and the case
 * barcode, the macro photographs the whole glass label included, and vendors copy names, barcodes and
 * file names into text tags. A copy for readers outside the site's jurisdiction drops the label and macro
 * directories (their pixels are not copied at all, so no tool can recover them from the file) and clears
 * the identifying tags; every pyramid level, the thumbnail and the physical metadata stay.
 *
 * `planSlideDeidentification` decides, `writeDeidentifiedTiff` writes: a new TIFF holding only the kept
 * directories and their tile data, streamed chunk by chunk from ranged reads of the original, so a 5 GB
 * slide costs a few MB of memory. Pure: the caller pipes the chunks to storage.
 */
import { AppError } from '../../errors.js';
import type { ByteSource } from '../types.js';
import { describeSlide, type SlideFormat } from './describe-slide.js';
import { readTagBytes, readTileTable, TAG, type TiffFile, type TiffIfd, TYPE_SIZES } from './tiff.js';

export interface TiffTagEdit {
  page: number;
  /** Applies to this SubIFD of the page instead of the page itself. */
  subifd?: number | undefined;
  tag: number;
  /** New ASCII value; undefined removes the tag. */
  value?: string | undefined;
}

export interface SlideDeidentificationPlan {
  format: SlideFormat;
  /** Main-chain pages copied, in order, each with its SubIFDs. */
  keepPages: number[];
  /** Pages left out, and why ('label', 'macro', 'map'). */
  dropPages: Array<{ page: number; reason: string }>;
  edits: TiffTagEdit[];
}

export interface DeidentifyOptions {
  /** Keep scan dates and times (DateTime, Aperio Date/Time). Dates are identifying under HIPAA Safe Harbor,
   * so they are cleared unless a study needs them. */
  keepDates?: boolean;
}

/** Tags that name people, machines' owners or files, or point at metadata blocks (EXIF, GPS, XMP, IPTC,
 * Photoshop) that this writer would have to follow to clean. */
const REMOVED_TAGS = [
  TAG.DocumentName,
  TAG.PageName,
  TAG.Artist,
  TAG.HostComputer,
  TAG.XMP,
  TAG.IPTC,
  TAG.Photoshop,
  TAG.ExifIFD,
  TAG.GPSIFD,
];

/** Hamamatsu private tags: 65427 is the slide label text (OpenSlide's hamamatsu.Reference), 65428 an
 * authentication code, 65442 the scanner serial number. */
const NDPI_REMOVED_TAGS = [65427, 65428, 65442];

/** Aperio ImageDescription keys that identify the case or the operator. */
const APERIO_IDENTIFYING =
  /^(filename|user|barcode|title|imageid|patient.*|label.*|accession.*|case.*|specimen.*|slide ?id|comments?)$/i;
const APERIO_DATES = /^(date|time|time zone)$/i;
/** NDPI property map keys and Philips attributes that carry names, barcodes or case references. */
const IDENTIFYING_KEY =
  /barcode|patient|accession|label|reference|user|operator|name|institution|physician|specimen|case/i;
const PHILIPS_DATES = /DATE|TIME/;

function aperioDescription(description: string, keepDates: boolean): string {
  const [header = '', ...pairs] = description.split('|');
  const kept = pairs.filter((pair) => {
    const key = pair.slice(0, Math.max(0, pair.indexOf('='))).trim();
    return !APERIO_IDENTIFYING.test(key) && (keepDates || !APERIO_DATES.test(key));
  });
  return [header, ...kept].join('|');
}

function ndpiPropertyMap(map: string, keepDates: boolean): string {
  return map
    .split(/\r?\n/)
    .filter((line) => {
      const key = line.slice(0, Math.max(0, line.indexOf('=')));
      return !IDENTIFYING_KEY.test(key) && (keepDates || !/^(created|updated)$/i.test(key));
    })
    .join('\r\n');
}

/** The `<tag …>…</tag>` element starting at `start`, nested elements of the same name included. */
function elementEnd(xml: string, start: number, name: string): number {
  const open = new RegExp(`<${name}\\b[^>]*?(/?)>|</${name}>`, 'g');
  open.lastIndex = start;
  let depth = 0;
  for (let m = open.exec(xml); m; m = open.exec(xml)) {
    if (m[0].startsWith('</')) depth--;
    else if (m[1] !== '/') depth++;
    if (depth === 0) return m.index + m[0].length;
  }
  return xml.length;
}

/**
 * Philips XML: drops the LABELIMAGE and MACROIMAGE scanned-image objects (they embed the pictures as
 * base64 JPEG), the barcode, and patient and institution attributes.
 */
function philipsDescription(xml: string, keepDates: boolean): string {
  let out = '';
  let at = 0;
  const scanned = /<DataObject\b[^>]*ObjectType="DPScannedImage"[^>]*>/g;
  for (let m = scanned.exec(xml); m; m = scanned.exec(xml)) {
    const end = elementEnd(xml, m.index, 'DataObject');
    const body = xml.slice(m.index, end);
    if (/Name="PIM_DP_IMAGE_TYPE"[^>]*>\s*(LABELIMAGE|MACROIMAGE)\s*</.test(body)) {
      out += xml.slice(at, m.index);
      at = end;
      scanned.lastIndex = end;
    }
  }
  out += xml.slice(at);
  return out.replace(
    /<Attribute\b[^>]*\bName="([^"]+)"[^>]*>[\s\S]*?<\/Attribute>/g,
    (element, name: string) =>
      IDENTIFYING_KEY.test(name) || (!keepDates && PHILIPS_DATES.test(name) && name.startsWith('DICOM_'))
        ? ''
        : element,
  );
}

/**
 * OME-XML: drops the Image elements of removed pages and renumbers the IFD attributes of the others, and
 * removes Experimenter elements (names, e-mail addresses).
 */
function omeDescription(xml: string, droppedPages: readonly number[], keepDates: boolean): string {
  let out = '';
  let at = 0;
  let nextIfd = 0;
  const image = /<((?:\w+:)?Image)\b[^>]*>/g;
  for (let m = image.exec(xml); m; m = image.exec(xml)) {
    const end = elementEnd(xml, m.index, m[1]!);
    const body = xml.slice(m.index, end);
    const declared = body.match(/<(?:\w+:)?TiffData\b[^>]*\bIFD="(\d+)"/);
    const ifd = declared ? Number(declared[1]) : nextIfd;
    nextIfd = ifd + 1;
    out += xml.slice(at, m.index);
    at = end;
    image.lastIndex = end;
    if (droppedPages.includes(ifd)) continue;
    out += body.replace(/(<(?:\w+:)?TiffData\b[^>]*\bIFD=")(\d+)"/g, (_, head: string, value: string) => {
      const n = Number(value);
      return `${head}${n - droppedPages.filter((p) => p < n).length}"`;
    });
  }
  out += xml.slice(at);
  out = out.replace(/<((?:\w+:)?Experimenter(?:Group)?)\b[^>]*\/>/g, '');
  out = out.replace(/<((?:\w+:)?Experimenter(?:Group)?)\b[^>]*>[\s\S]*?<\/\1>/g, '');
  if (!keepDates) out = out.replace(/<((?:\w+:)?AcquisitionDate)>[^<]*<\/\1>/g, '');
  return out;
}

/**
 * Decides what a de-identified copy of a TIFF-based slide leaves out. Throws UNSUPPORTED_FORMAT when the
 * result could not be read back the same way (every page would be dropped).
 */
export function planSlideDeidentification(
  tiff: TiffFile,
  opts: DeidentifyOptions = {},
): SlideDeidentificationPlan {
  const keepDates = opts.keepDates ?? false;
  const info = describeSlide(tiff);
  const drop = new Map<number, string>();
  for (const image of info.associated) {
    if ((image.name === 'label' || image.name === 'macro') && image.subifd === undefined)
      drop.set(image.ifd, image.name);
  }
  tiff.ifds.forEach((ifd, page) => {
    // NDPI: -1 is the macro, -2 the map of scanned regions drawn from it.
    const lens = ifd.ndpiTags?.sourceLens;
    if (lens === -1) drop.set(page, 'macro');
    else if (lens === -2) drop.set(page, 'map');
    // Generic files also name them only in the description (any page, whatever describeSlide kept).
    const description = ifd.imageDescription ?? '';
    if (!drop.has(page) && description.length <= 256 && /^\s*(label|macro|barcode)\b/i.test(description)) {
      drop.set(page, /macro/i.test(description) ? 'macro' : 'label');
    }
  });
  const keepPages = tiff.ifds.map((_, page) => page).filter((page) => !drop.has(page));
  if (keepPages.length === 0) {
    throw new AppError('UNSUPPORTED_FORMAT', 'every directory of the slide is a label or macro image', {
      retryable: false,
    });
  }
  const droppedPages = [...drop.keys()].sort((a, b) => a - b);
  const edits: TiffTagEdit[] = [];
  const editIfd = (ifd: TiffIfd, page: number, subifd: number | undefined) => {
    for (const tag of REMOVED_TAGS) if (ifd.entries.has(tag)) edits.push({ page, subifd, tag });
    if (!keepDates && ifd.entries.has(TAG.DateTime)) edits.push({ page, subifd, tag: TAG.DateTime });
    if (ifd.ndpiTags) {
      for (const tag of NDPI_REMOVED_TAGS) if (ifd.entries.has(tag)) edits.push({ page, subifd, tag });
      if (ifd.ndpiTags.propertyMap !== undefined) {
        edits.push({
          page,
          subifd,
          tag: TAG.NdpiPropertyMap,
          value: ndpiPropertyMap(ifd.ndpiTags.propertyMap, keepDates),
        });
      }
    }
    const description = ifd.imageDescription;
    if (description === undefined) return;
    let cleaned = description;
    if (description.startsWith('Aperio')) cleaned = aperioDescription(description, keepDates);
    else if (info.format === 'philips-tiff' && description.includes('<DataObject')) {
      cleaned = philipsDescription(description, keepDates);
    } else if (/<(?:\w+:)?OME[\s>]/.test(description))
      cleaned = omeDescription(description, droppedPages, keepDates);
    if (cleaned !== description) edits.push({ page, subifd, tag: TAG.ImageDescription, value: cleaned });
  };
  for (const page of keepPages) {
    const ifd = tiff.ifds[page]!;
    editIfd(ifd, page, undefined);
    for (const [k, sub] of ifd.subIfds.entries()) editIfd(sub, page, k);
  }
  return {
    format: info.format,
    keepPages,
    dropPages: droppedPages.map((page) => ({ page, reason: drop.get(page)! })),
    edits,
  };
}

// ---------------------------------------------------------------------------------------------- writer

/** Bytes read from the original per copy step: few round trips to object storage, bounded memory. */
const COPY_CHUNK = 4 * 1024 * 1024;
const OFFSET_TAGS: ReadonlySet<number> = new Set([TAG.TileOffsets, TAG.StripOffsets]);
const COUNT_TAGS: ReadonlySet<number> = new Set([TAG.TileByteCounts, TAG.StripByteCounts]);
/** Tags whose values are file offsets this writer does not relocate (FreeOffsets, FreeByteCounts, old-style
 * JPEG's interchange stream): copied verbatim they would point into other data. */
const UNRELOCATED_TAGS: ReadonlySet<number> = new Set([288, 289, 513, 514]);

interface Layout {
  le: boolean;
  big: boolean;
  /** Classic TIFF with 8-byte next pointers, as Hamamatsu writes: NDPI readers expect them. */
  ndpi: boolean;
}

interface PlannedIfd {
  ifd: TiffIfd;
  subifd?: number;
  page: number;
  /** Source byte ranges to copy (unique segments, in file order of the copy). */
  segments: Array<{ from: number; length: number; to: number }>;
  newOffsets: number[];
  byteCounts: number[];
  entries: Array<{
    tag: number;
    type: number;
    count: number;
    bytes?: Uint8Array;
    offsets?: 'segments' | 'subifds';
  }>;
  dataStart: number;
  ifdOffset: number;
  ifdBytes?: Uint8Array;
  children: PlannedIfd[];
}

function putNumber(dv: DataView, at: number, type: number, value: number, le: boolean): void {
  switch (type) {
    case 3:
      dv.setUint16(at, value, le);
      break;
    case 4:
    case 13:
      dv.setUint32(at, value, le);
      break;
    case 16:
    case 18:
      dv.setBigUint64(at, BigInt(value), le);
      break;
    default:
      throw new AppError('INTERNAL', `writer cannot store type ${type}`);
  }
}

function encodeNumbers(values: readonly number[], type: number, le: boolean): Uint8Array {
  const size = TYPE_SIZES[type]!;
  const bytes = new Uint8Array(values.length * size);
  const dv = new DataView(bytes.buffer);
  for (const [i, v] of values.entries()) putNumber(dv, i * size, type, v, le);
  return bytes;
}

function encodeAscii(text: string): Uint8Array {
  const encoded = new TextEncoder().encode(text);
  const out = new Uint8Array(encoded.length + 1);
  out.set(encoded);
  return out;
}

async function planIfd(
  source: ByteSource,
  ifd: TiffIfd,
  page: number,
  subifd: number | undefined,
  edits: readonly TiffTagEdit[],
): Promise<PlannedIfd> {
  const table = await readTileTable(source, ifd);
  const planned: PlannedIfd = {
    ifd,
    page,
    ...(subifd === undefined ? {} : { subifd }),
    segments: [],
    newOffsets: [],
    byteCounts: Array.from(table.byteCounts),
    entries: [],
    dataStart: 0,
    ifdOffset: 0,
    children: [],
  };
  const mine = edits.filter((e) => e.page === page && e.subifd === subifd);
  for (const [tag, entry] of ifd.entries) {
    if (tag === TAG.SubIFDs) {
      if (subifd === undefined && ifd.subIfds.length > 0) {
        planned.entries.push({ tag, type: 13, count: ifd.subIfds.length, offsets: 'subifds' });
      }
      continue;
    }
    if (OFFSET_TAGS.has(tag)) {
      planned.entries.push({ tag, type: 4, count: table.offsets.length, offsets: 'segments' });
      continue;
    }
    if (COUNT_TAGS.has(tag)) {
      const big = planned.byteCounts.some((n) => n > 0xffffffff);
      planned.entries.push({ tag, type: big ? 16 : 4, count: planned.byteCounts.length });
      continue;
    }
    const edit = mine.find((e) => e.tag === tag);
    if (edit) {
      if (edit.value !== undefined) {
        const bytes = encodeAscii(edit.value);
        planned.entries.push({ tag, type: 2, count: bytes.length, bytes });
      }
      continue;
    }
    if (TYPE_SIZES[entry.type] === undefined || UNRELOCATED_TAGS.has(tag)) continue;
    const bytes = await readTagBytes(source, ifd, tag, 64 * 1024 * 1024);
    if (bytes) planned.entries.push({ tag, type: entry.type, count: entry.count, bytes });
  }
  planned.entries.sort((a, b) => a.tag - b.tag);
  // Tiles shared by several entries (some writers point every blank tile at one blob) are copied once.
  const seen = new Map<number, number>();
  for (let i = 0; i < table.offsets.length; i++) {
    const from = table.offsets[i]!;
    const length = table.byteCounts[i]!;
    if (length === 0) {
      planned.newOffsets.push(-1);
      continue;
    }
    const known = seen.get(from);
    if (known !== undefined && planned.segments[known]!.length >= length) {
      planned.newOffsets.push(-(known + 2));
      continue;
    }
    seen.set(from, planned.segments.length);
    planned.newOffsets.push(-(planned.segments.length + 2));
    planned.segments.push({ from, length, to: 0 });
  }
  return planned;
}

function align2(n: number): number {
  return n + (n % 2);
}

/** Sizes each directory's data, values and entries from `start`, filling in every offset. */
function layOut(ifds: PlannedIfd[], layout: Layout, start: number): number {
  let at = start;
  const place = (p: PlannedIfd) => {
    for (const child of p.children) place(child);
    p.dataStart = at;
    for (const segment of p.segments) {
      segment.to = at;
      at = align2(at + segment.length);
    }
    const inline = layout.big ? 8 : 4;
    let values = 0;
    for (const e of p.entries) {
      const size = entrySize(e, layout, p);
      if (size > inline) values = align2(values + size);
    }
    p.ifdOffset = at + values;
    const countSize = layout.big ? 8 : 2;
    const nextSize = layout.big || layout.ndpi ? 8 : 4;
    at = align2(p.ifdOffset + countSize + p.entries.length * (layout.big ? 20 : 12) + nextSize);
  };
  for (const p of ifds) place(p);
  return at;
}

function offsetType(layout: Layout, kind: 'segments' | 'subifds'): number {
  if (layout.big) return kind === 'subifds' ? 18 : 16;
  return kind === 'subifds' ? 13 : 4;
}

function entrySize(e: PlannedIfd['entries'][number], layout: Layout, p: PlannedIfd): number {
  if (e.offsets) return e.count * TYPE_SIZES[offsetType(layout, e.offsets)]!;
  if (e.bytes) return e.bytes.length;
  return p.byteCounts.length * TYPE_SIZES[e.type]!;
}

function encodeIfd(p: PlannedIfd, layout: Layout, next: number): Uint8Array {
  const { le, big } = layout;
  const inline = big ? 8 : 4;
  const resolved = p.entries.map((e) => {
    let type = e.type;
    let bytes: Uint8Array;
    if (e.offsets === 'segments') {
      type = offsetType(layout, 'segments');
      const offsets = p.newOffsets.map((o) => (o === -1 ? 0 : p.segments[-o - 2]!.to));
      bytes = encodeNumbers(offsets, type, le);
    } else if (e.offsets === 'subifds') {
      type = offsetType(layout, 'subifds');
      bytes = encodeNumbers(
        p.children.map((c) => c.ifdOffset),
        type,
        le,
      );
    } else if (e.bytes) {
      bytes = e.bytes;
    } else {
      bytes = encodeNumbers(p.byteCounts, type, le);
    }
    return {
      tag: e.tag,
      type,
      count: e.offsets === undefined && e.bytes ? e.count : bytes.length / TYPE_SIZES[type]!,
      bytes,
    };
  });
  let valuesSize = 0;
  for (const r of resolved) if (r.bytes.length > inline) valuesSize = align2(valuesSize + r.bytes.length);
  const countSize = big ? 8 : 2;
  const entrySize = big ? 20 : 12;
  const nextSize = big || layout.ndpi ? 8 : 4;
  const valuesStart = p.ifdOffset - valuesSize;
  const out = new Uint8Array(valuesSize + countSize + resolved.length * entrySize + nextSize);
  const dv = new DataView(out.buffer);
  let valueAt = 0;
  const table = valuesSize;
  if (big) dv.setBigUint64(table, BigInt(resolved.length), le);
  else dv.setUint16(table, resolved.length, le);
  resolved.forEach((r, i) => {
    const at = table + countSize + i * entrySize;
    dv.setUint16(at, r.tag, le);
    dv.setUint16(at + 2, r.type, le);
    if (big) dv.setBigUint64(at + 4, BigInt(r.count), le);
    else dv.setUint32(at + 4, r.count, le);
    const field = at + (big ? 12 : 8);
    if (r.bytes.length <= inline) out.set(r.bytes, field);
    else {
      out.set(r.bytes, valueAt);
      if (big) dv.setBigUint64(field, BigInt(valuesStart + valueAt), le);
      else dv.setUint32(field, valuesStart + valueAt, le);
      valueAt = align2(valueAt + r.bytes.length);
    }
  });
  const nextAt = table + countSize + resolved.length * entrySize;
  if (nextSize === 8) dv.setBigUint64(nextAt, BigInt(next), le);
  else dv.setUint32(nextAt, next, le);
  return out;
}

async function* copySegments(source: ByteSource, p: PlannedIfd): AsyncGenerator<Uint8Array> {
  let position = p.dataStart;
  let i = 0;
  while (i < p.segments.length) {
    // Runs of segments stored back to back in the original are read in one request.
    let j = i;
    let length = p.segments[i]!.length;
    while (
      j + 1 < p.segments.length &&
      p.segments[j + 1]!.from === p.segments[j]!.from + p.segments[j]!.length &&
      p.segments[j + 1]!.to === p.segments[j]!.to + p.segments[j]!.length &&
      length + p.segments[j + 1]!.length <= COPY_CHUNK
    ) {
      j++;
      length += p.segments[j]!.length;
    }
    const first = p.segments[i]!;
    if (first.to > position) {
      yield new Uint8Array(first.to - position);
      position = first.to;
    }
    for (let done = 0; done < length; ) {
      const n = Math.min(COPY_CHUNK, length - done);
      const bytes = await source.read(first.from + done, n);
      if (bytes.byteLength < n) {
        throw new AppError('CORRUPT_FILE', `tile data at offset ${first.from + done} is truncated`, {
          retryable: false,
          details: { offset: first.from + done },
        });
      }
      yield bytes.subarray(0, n);
      done += n;
    }
    position += length;
    i = j + 1;
  }
  if (p.segments.length > 0 && position % 2) {
    yield new Uint8Array(1);
    position++;
  }
}

/**
 * Streams a TIFF holding only the pages of `plan.keepPages` (with their SubIFDs and tile data) with the
 * tag edits applied. The byte order is the original's; the copy is BigTIFF when the original is or when it
 * would pass 4 GiB. Tile data is copied byte for byte, never decoded.
 */
export async function* writeDeidentifiedTiff(
  source: ByteSource,
  tiff: TiffFile,
  plan: SlideDeidentificationPlan,
): AsyncGenerator<Uint8Array> {
  const planned: PlannedIfd[] = [];
  for (const page of plan.keepPages) {
    const ifd = tiff.ifds[page];
    if (!ifd)
      throw new AppError('VALIDATION_FAILED', `page ${page} is not in the slide`, { retryable: false });
    const p = await planIfd(source, ifd, page, undefined, plan.edits);
    for (const [k, sub] of ifd.subIfds.entries())
      p.children.push(await planIfd(source, sub, page, k, plan.edits));
    planned.push(p);
  }
  let layout: Layout = { le: tiff.littleEndian, big: tiff.bigTiff, ndpi: tiff.ndpi && !tiff.bigTiff };
  const headerSize = 16;
  const end = layOut(planned, layout, headerSize);
  if (!layout.big && end > 0xffffffff) {
    layout = { le: layout.le, big: true, ndpi: false };
    layOut(planned, layout, headerSize);
  }
  const header = new Uint8Array(headerSize);
  const hv = new DataView(header.buffer);
  header[0] = header[1] = layout.le ? 0x49 : 0x4d;
  if (layout.big) {
    hv.setUint16(2, 43, layout.le);
    hv.setUint16(4, 8, layout.le);
    hv.setBigUint64(8, BigInt(planned[0]!.ifdOffset), layout.le);
  } else {
    hv.setUint16(2, 42, layout.le);
    hv.setUint32(4, planned[0]!.ifdOffset, layout.le);
  }
  yield header;
  const emit = async function* (p: PlannedIfd, next: number): AsyncGenerator<Uint8Array> {
    for (const child of p.children) yield* emit(child, 0);
    yield* copySegments(source, p);
    const bytes = encodeIfd(p, layout, next);
    yield bytes;
    if (bytes.length % 2) yield new Uint8Array(1);
  };
  for (const [i, p] of planned.entries()) yield* emit(p, planned[i + 1]?.ifdOffset ?? 0);
}
