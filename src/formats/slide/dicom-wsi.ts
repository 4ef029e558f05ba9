/**
 * DICOM VL Whole Slide Microscopy (PS3.3 A.32.8): the instances of one series form one slide. Each VOLUME
 * instance is one pyramid level, its size the Total Pixel Matrix and its frames the tiles; LABEL, OVERVIEW
 * and THUMBNAIL instances are the associated pictures (OpenSlide's names: label, macro, thumbnail).
 *
 * Frames are laid out either TILED_FULL (row by row, then focal planes, then optical paths, positions
 * implied) or TILED_SPARSE (each frame's position in PlanePositionSlideSequence). Levels may be gigabytes,
 * so frame bytes can be found and read by range from the file (`readDicomFrameTable`, `readDicomFrame`)
 * with only the header parsed. Pure: bytes and parsed data sets in, typed data out.
 */
import type { DataSet, Element } from 'dicom-parser';
import { AppError } from '../../errors.js';
import { type DicomInstance, firstItem } from '../dicom/parse-dicom.js';
import { describeTransferSyntax } from '../dicom/transfer-syntax.js';
import type { ByteSource } from '../types.js';
import type { AssociatedImageName, SlideAssociatedImage, SlideInfo, SlideLevel } from './describe-slide.js';

export const WSI_SOP_CLASS_UID = '1.2.840.10008.5.1.4.1.1.77.1.6';

/** dicom-parser keys of the WSI attributes read here (PS3.6 keywords). */
const TAG = {
  ImageType: 'x00080008',
  AcquisitionDateTime: 'x0008002a',
  ContentDate: 'x00080023',
  ContentTime: 'x00080033',
  Manufacturer: 'x00080070',
  ManufacturerModelName: 'x00081090',
  SoftwareVersions: 'x00181020',
  ConcatenationFrameOffsetNumber: 'x00209228',
  DimensionOrganizationType: 'x00209311',
  PixelSpacing: 'x00280030',
  PixelMeasuresSequence: 'x00289110',
  ObjectiveLensPower: 'x00480112',
  OpticalPathSequence: 'x00480105',
  PlanePositionSlideSequence: 'x0048021a',
  ColumnPositionInTotalImagePixelMatrix: 'x0048021e',
  RowPositionInTotalImagePixelMatrix: 'x0048021f',
  NumberOfOpticalPaths: 'x00480302',
  TotalPixelMatrixFocalPlanes: 'x00480303',
  SharedFunctionalGroupsSequence: 'x52009229',
  PerFrameFunctionalGroupsSequence: 'x52009230',
  ExtendedOffsetTable: 'x7fe00001',
  ExtendedOffsetTableLengths: 'x7fe00002',
  PixelData: 'x7fe00010',
} as const;

function corrupt(message: string, details?: Record<string, unknown>): AppError {
  return new AppError('CORRUPT_FILE', message, { retryable: false, details });
}

function text(ds: DataSet | undefined, tag: string): string | undefined {
  try {
    const value = ds?.string(tag);
    return value === undefined || value === '' ? undefined : value;
  } catch {
    return undefined;
  }
}

function decimal(ds: DataSet | undefined, tag: string, index = 0): number | undefined {
  const value = text(ds, tag)?.split('\\')[index];
  const n = value === undefined ? Number.NaN : Number.parseFloat(value);
  return Number.isFinite(n) ? n : undefined;
}

function signedLong(ds: DataSet | undefined, tag: string): number | undefined {
  const el = ds?.elements[tag];
  if (!ds || !el || el.length < 4 || el.dataOffset + 4 > ds.byteArray.length) return undefined;
  return ds.int32(tag);
}

function unsignedLong(ds: DataSet | undefined, tag: string): number | undefined {
  const el = ds?.elements[tag];
  if (!ds || !el || el.length < 4 || el.dataOffset + 4 > ds.byteArray.length) return undefined;
  return ds.uint32(tag);
}

/** Value 3 of ImageType: VOLUME, LABEL, OVERVIEW, THUMBNAIL, LOCALIZER (REGIONLOCALIZER in older files). */
export function wsiImageFlavor(instance: DicomInstance): string | undefined {
  return text(instance.dataSet, TAG.ImageType)?.split('\\')[2]?.trim().toUpperCase() || undefined;
}

export function isWsiInstance(instance: DicomInstance): boolean {
  return instance.sopClassUid === WSI_SOP_CLASS_UID || instance.modality === 'SM';
}

const ASSOCIATED_FLAVORS: Readonly<Record<string, AssociatedImageName>> = {
  LABEL: 'label',
  OVERVIEW: 'macro',
  THUMBNAIL: 'thumbnail',
};

/** Flavors whose pictures identify the patient or the case (the label carries the name and barcode; the
 * overview photographs the whole glass, label included). De-identification drops these instances. */
export const IDENTIFYING_FLAVORS: ReadonlySet<string> = new Set(['LABEL', 'OVERVIEW']);

function matrixSize(instance: DicomInstance): { width: number; height: number } | undefined {
  const width = instance.totalPixelMatrixColumns ?? instance.columns;
  const height = instance.totalPixelMatrixRows ?? instance.rows;
  return width && height ? { width, height } : undefined;
}

function imageRef(instance: DicomInstance, index: number, size: { width: number; height: number }) {
  const ts = describeTransferSyntax(instance.transferSyntaxUid);
  return {
    ifd: index,
    sopInstanceUid: instance.sopInstanceUid,
    width: size.width,
    height: size.height,
    tileWidth: instance.columns,
    tileHeight: instance.rows,
    compression: ts.codec === 'unknown' ? `unknown-${ts.uid}` : ts.codec,
    compressionCode: 0,
    transferSyntaxUid: ts.uid,
    samplesPerPixel: instance.samplesPerPixel ?? 1,
    bitsPerSample: instance.bitsStored ?? instance.bitsAllocated ?? 8,
  };
}

/** DT "YYYYMMDDHHMMSS.FFFFFF+ZZZZ" (any tail may be missing) → ISO 8601. */
function dicomDateTimeToIso(value: string | undefined): string | undefined {
  const m = value?.trim().match(/^(\d{4})(\d{2})(\d{2})(?:(\d{2})(\d{2})?(\d{2})?)?(?:\.\d+)?([+-]\d{4})?$/);
  if (!m) return undefined;
  let iso = `${m[1]}-${m[2]}-${m[3]}`;
  if (m[4] !== undefined) iso += `T${m[4]}:${m[5] ?? '00'}:${m[6] ?? '00'}`;
  if (m[4] !== undefined && m[7] !== undefined) iso += `${m[7].slice(0, 3)}:${m[7].slice(3)}`;
  return iso;
}

function pixelSpacingMm(instance: DicomInstance): { row: number; column: number } | undefined {
  const ds = instance.dataSet;
  const measures =
    firstItem(firstItem(ds, TAG.SharedFunctionalGroupsSequence), TAG.PixelMeasuresSequence) ??
    firstItem(firstItem(ds, TAG.PerFrameFunctionalGroupsSequence), TAG.PixelMeasuresSequence);
  const row = decimal(measures, TAG.PixelSpacing, 0);
  const column = decimal(measures, TAG.PixelSpacing, 1) ?? row;
  return row !== undefined && column !== undefined && row > 0 && column > 0 ? { row, column } : undefined;
}

/**
 * Describes the slide formed by DICOM WSI instances (parsed headers suffice: pixel data is not touched).
 * `SlideImageRef.ifd` is the index of the instance in `instances`, and `sopInstanceUid` names it.
 * Instances of other series or other SOP classes are ignored; when several series are given, the one of
 * the first WSI instance is described. Throws CORRUPT_FILE when the series has no VOLUME image.
 */
export function describeDicomWsi(instances: readonly DicomInstance[]): SlideInfo {
  const first = instances.find(isWsiInstance);
  if (!first) {
    throw new AppError('UNSUPPORTED_FORMAT', 'no VL Whole Slide Microscopy instance among the files', {
      retryable: false,
    });
  }
  const series = first.seriesInstanceUid;
  const members = instances
    .map((instance, index) => ({ instance, index }))
    .filter(({ instance }) => isWsiInstance(instance) && instance.seriesInstanceUid === series);

  const levels: Array<{ instance: DicomInstance; index: number; width: number; height: number }> = [];
  const associated: SlideAssociatedImage[] = [];
  for (const { instance, index } of members) {
    const flavor = wsiImageFlavor(instance);
    const size = matrixSize(instance);
    if (!size) continue;
    const name = flavor ? ASSOCIATED_FLAVORS[flavor] : undefined;
    if (name) {
      if (!associated.some((a) => a.name === name))
        associated.push({ name, ...imageRef(instance, index, size) });
      continue;
    }
    if (flavor !== 'VOLUME') continue;
    // One instance per size: further ones are other focal planes, optical paths or copies in another
    // transfer syntax. Lower instance numbers win so the choice does not depend on upload order.
    const same = levels.findIndex((l) => l.width === size.width && l.height === size.height);
    if (same >= 0) {
      if ((instance.instanceNumber ?? Infinity) >= (levels[same]!.instance.instanceNumber ?? Infinity))
        continue;
      levels.splice(same, 1);
    }
    levels.push({ instance, index, ...size });
  }
  if (levels.length === 0) {
    throw corrupt('DICOM WSI series has no VOLUME image to show as the slide', {
      seriesInstanceUid: series,
      instances: members.length,
    });
  }
  levels.sort((a, b) => b.width - a.width || b.height - a.height);
  const base = levels[0]!;
  const slideLevels: SlideLevel[] = levels.map((l) => ({
    ...imageRef(l.instance, l.index, l),
    downsample: base.width / l.width,
  }));

  const ds = base.instance.dataSet;
  const spacing = pixelSpacingMm(base.instance);
  const properties: Record<string, string> = {};
  const setProperty = (key: string, value: string | number | undefined) => {
    if (value !== undefined && value !== '') properties[key] = String(value).slice(0, 2048);
  };
  setProperty('dicom.Manufacturer', text(ds, TAG.Manufacturer));
  setProperty('dicom.ManufacturerModelName', text(ds, TAG.ManufacturerModelName));
  setProperty('dicom.SoftwareVersions', text(ds, TAG.SoftwareVersions));
  setProperty('dicom.SeriesInstanceUID', series);
  setProperty('dicom.TransferSyntaxUID', base.instance.transferSyntaxUid);
  setProperty('dicom.DimensionOrganizationType', text(ds, TAG.DimensionOrganizationType));
  setProperty('dicom.NumberOfOpticalPaths', unsignedLong(ds, TAG.NumberOfOpticalPaths));
  setProperty('dicom.TotalPixelMatrixFocalPlanes', unsignedLong(ds, TAG.TotalPixelMatrixFocalPlanes));

  const contentDate = text(ds, TAG.ContentDate);
  return {
    format: 'dicom-wsi',
    levels: slideLevels,
    // PixelSpacing is row spacing (vertical) then column spacing (horizontal), in millimetres.
    mppX: spacing ? spacing.column * 1000 : undefined,
    mppY: spacing ? spacing.row * 1000 : undefined,
    objectivePower: positive(decimal(firstItem(ds, TAG.OpticalPathSequence), TAG.ObjectiveLensPower)),
    scanDate:
      dicomDateTimeToIso(text(ds, TAG.AcquisitionDateTime)) ??
      (contentDate ? dicomDateTimeToIso(contentDate + (text(ds, TAG.ContentTime) ?? '')) : undefined),
    associated,
    properties,
  };
}

function positive(value: number | undefined): number | undefined {
  return value !== undefined && value > 0 ? value : undefined;
}

// ---------------------------------------------------------------------------------------------- tile map

export interface DicomTileMap {
  tileWidth: number;
  tileHeight: number;
  cols: number;
  rows: number;
  /** Frame index (0-based) per tile, row-major; -1 where a sparse level has no frame. */
  frameOfTile: Int32Array;
}

/**
 * Which frame holds each tile of one WSI instance. TILED_FULL frames follow row-major order for the first
 * focal plane and optical path; later frames (other planes and paths) are not shown. TILED_SPARSE frames
 * say where they are; the first frame at a position wins, for the same reason.
 */
export function dicomWsiTileMap(instance: DicomInstance): DicomTileMap {
  const size = matrixSize(instance);
  const tileWidth = instance.columns;
  const tileHeight = instance.rows;
  if (!size || !tileWidth || !tileHeight) {
    throw corrupt('WSI instance has no Rows/Columns or Total Pixel Matrix size', {
      sopInstanceUid: instance.sopInstanceUid,
    });
  }
  const cols = Math.ceil(size.width / tileWidth);
  const rows = Math.ceil(size.height / tileHeight);
  if (cols * rows > 16 * 1024 * 1024) {
    throw corrupt(`WSI instance claims ${cols}x${rows} tiles`, { sopInstanceUid: instance.sopInstanceUid });
  }
  const frameOfTile = new Int32Array(cols * rows).fill(-1);
  const ds = instance.dataSet;
  const frames = instance.numberOfFrames;
  const organization = text(ds, TAG.DimensionOrganizationType)?.toUpperCase();
  const perFrame = ds.elements[TAG.PerFrameFunctionalGroupsSequence]?.items ?? [];
  const positioned =
    organization !== 'TILED_FULL' &&
    perFrame.length > 0 &&
    perFrame[0]?.dataSet?.elements[TAG.PlanePositionSlideSequence] !== undefined;
  if (!positioned) {
    // A single-frame image without TILED_FULL is one tile the size of the matrix: the same thing.
    const offset = unsignedLong(ds, TAG.ConcatenationFrameOffsetNumber) ?? 0;
    for (let f = 0; f < frames; f++) {
      const tile = offset + f;
      if (tile >= frameOfTile.length) break;
      frameOfTile[tile] = f;
    }
    return { tileWidth, tileHeight, cols, rows, frameOfTile };
  }
  const count = Math.min(frames, perFrame.length);
  for (let f = 0; f < count; f++) {
    const position = firstItem(perFrame[f]?.dataSet, TAG.PlanePositionSlideSequence);
    const column = signedLong(position, TAG.ColumnPositionInTotalImagePixelMatrix);
    const row = signedLong(position, TAG.RowPositionInTotalImagePixelMatrix);
    if (column === undefined || row === undefined) continue;
    // Positions are 1-based pixel coordinates of the frame's top-left corner.
    const c = Math.floor((column - 1) / tileWidth);
    const r = Math.floor((row - 1) / tileHeight);
    if (c < 0 || r < 0 || c >= cols || r >= rows) continue;
    const tile = r * cols + c;
    if (frameOfTile[tile] === -1) frameOfTile[tile] = f;
  }
  return { tileWidth, tileHeight, cols, rows, frameOfTile };
}

// ---------------------------------------------------------------------------------------------- frames by range

export interface DicomFrameTable {
  encapsulated: boolean;
  /** Per frame: where its bytes start (encapsulated: the first fragment's item header) and end. */
  starts: Float64Array;
  ends: Float64Array;
}

const ITEM = 0xe000;
const SEQUENCE_DELIMITER = 0xe0dd;
const ITEM_GROUP = 0xfffe;

interface PixelDataPlace {
  /** Offset of the value: for encapsulated data, of the Basic Offset Table item. */
  valueOffset: number;
  encapsulated: boolean;
  length: number;
}

/** Pixel Data's place in the file. A header parsed from the first bytes only has no Pixel Data element when
 * the encapsulated value was cut, so its tag is then looked for after the last element that was read. */
function pixelDataPlace(instance: DicomInstance): PixelDataPlace {
  const ds = instance.dataSet;
  const element: Element | undefined = ds.elements[TAG.PixelData];
  if (element) {
    const encapsulated = element.hadUndefinedLength === true || element.encapsulatedPixelData === true;
    return { valueOffset: element.dataOffset, encapsulated, length: element.length };
  }
  const b = ds.byteArray;
  let from = 0;
  for (const el of Object.values(ds.elements)) from = Math.max(from, el.dataOffset);
  for (let at = from; at + 12 <= b.length; at++) {
    // (7FE0,0010) OB with undefined length, little endian explicit VR.
    if (b[at] !== 0xe0 || b[at + 1] !== 0x7f || b[at + 2] !== 0x10 || b[at + 3] !== 0x00) continue;
    if (
      b[at + 4] === 0x4f &&
      (b[at + 5] === 0x42 || b[at + 5] === 0x57) &&
      b[at + 8] === 0xff &&
      b[at + 9] === 0xff
    ) {
      return { valueOffset: at + 12, encapsulated: true, length: 0xffffffff };
    }
  }
  throw corrupt('Pixel Data (7FE0,0010) was not found in the header read', {
    sopInstanceUid: instance.sopInstanceUid,
  });
}

function frameByteLength(instance: DicomInstance): number {
  const samples = (instance.rows ?? 0) * (instance.columns ?? 0) * (instance.samplesPerPixel ?? 1);
  const bits = instance.bitsAllocated ?? 8;
  if (instance.photometricInterpretation === 'YBR_FULL_422' && instance.samplesPerPixel === 3) {
    return (instance.rows ?? 0) * (instance.columns ?? 0) * 2 * (bits / 8);
  }
  return Math.ceil((samples * bits) / 8);
}

async function readExactly(
  source: ByteSource,
  offset: number,
  length: number,
  what: string,
): Promise<Uint8Array> {
  if (offset < 0 || length < 0 || offset + length > source.size) {
    throw corrupt(`${what} at offset ${offset} (${length} bytes) lies past the end of the file`, { offset });
  }
  const bytes = await source.read(offset, length);
  if (bytes.byteLength < length) throw corrupt(`${what} at offset ${offset} is truncated`, { offset });
  return bytes.subarray(0, length);
}

function u16(b: Uint8Array, at: number): number {
  return b[at]! | (b[at + 1]! << 8);
}

function u32(b: Uint8Array, at: number): number {
  return (b[at]! | (b[at + 1]! << 8) | (b[at + 2]! << 16)) + b[at + 3]! * 0x1000000;
}

function numbersOf(ds: DataSet, tag: string): number[] | undefined {
  const el = ds.elements[tag];
  if (!el || el.length <= 0 || el.length % 8 !== 0 || el.dataOffset + el.length > ds.byteArray.length)
    return undefined;
  const view = new DataView(ds.byteArray.buffer, ds.byteArray.byteOffset + el.dataOffset, el.length);
  const out: number[] = [];
  for (let i = 0; i < el.length / 8; i++) out.push(Number(view.getBigUint64(i * 8, true)));
  return out;
}

/**
 * Where each frame's bytes are in the file, from the header and a few ranged reads: the Extended Offset
 * Table or Basic Offset Table when present, else one read of 8 bytes per fragment header. Only little-endian
 * encodings (every encapsulated transfer syntax is one) are handled.
 */
export async function readDicomFrameTable(
  source: ByteSource,
  instance: DicomInstance,
): Promise<DicomFrameTable> {
  const frames = instance.numberOfFrames;
  const place = pixelDataPlace(instance);
  const starts = new Float64Array(frames);
  const ends = new Float64Array(frames);
  if (!place.encapsulated) {
    const length = frameByteLength(instance);
    if (length <= 0) throw corrupt('native pixel data without a frame size (Rows, Columns, BitsAllocated)');
    for (let f = 0; f < frames; f++) {
      starts[f] = place.valueOffset + f * length;
      ends[f] = starts[f]! + length;
    }
    return { encapsulated: false, starts, ends };
  }
  const header = await readExactly(source, place.valueOffset, 8, 'Basic Offset Table item');
  if (u16(header, 0) !== ITEM_GROUP || u16(header, 2) !== ITEM) {
    throw corrupt(`encapsulated Pixel Data does not start with an item at offset ${place.valueOffset}`);
  }
  const botLength = u32(header, 4);
  const firstFragment = place.valueOffset + 8 + botLength;
  if (firstFragment > source.size) throw corrupt('Basic Offset Table runs past the end of the file');

  const extended = numbersOf(instance.dataSet, TAG.ExtendedOffsetTable);
  const extendedLengths = numbersOf(instance.dataSet, TAG.ExtendedOffsetTableLengths);
  if (extended?.length === frames && extendedLengths?.length === frames) {
    for (let f = 0; f < frames; f++) {
      starts[f] = firstFragment + extended[f]!;
      ends[f] = starts[f]! + 8 + extendedLengths[f]!;
    }
    return { encapsulated: true, starts, ends };
  }
  if (botLength === frames * 4 && frames > 0) {
    const table = await readExactly(source, place.valueOffset + 8, botLength, 'Basic Offset Table');
    let previous = -1;
    for (let f = 0; f < frames; f++) {
      const offset = u32(table, f * 4);
      if (offset <= previous && f > 0) throw corrupt(`Basic Offset Table entry ${f + 1} goes backwards`);
      previous = offset;
      starts[f] = firstFragment + offset;
      if (f > 0) ends[f - 1] = starts[f]!;
    }
    // The last frame ends at the sequence delimiter, found by walking its fragments.
    ends[frames - 1] = await endOfFragments(source, starts[frames - 1]!);
    return { encapsulated: true, starts, ends };
  }
  const fragments: Array<[number, number]> = [];
  let at = firstFragment;
  while (at + 8 <= source.size) {
    const item = await readExactly(source, at, 8, 'pixel data fragment header');
    const element = u16(item, 2);
    if (u16(item, 0) !== ITEM_GROUP || (element !== ITEM && element !== SEQUENCE_DELIMITER)) {
      throw corrupt(`pixel data fragment at offset ${at} has no item tag`, { offset: at });
    }
    if (element === SEQUENCE_DELIMITER) break;
    const length = u32(item, 4);
    fragments.push([at, at + 8 + length]);
    at += 8 + length;
  }
  if (fragments.length === frames) {
    fragments.forEach(([start, end], f) => {
      starts[f] = start;
      ends[f] = end;
    });
  } else if (frames === 1 && fragments.length > 0) {
    starts[0] = fragments[0]![0];
    ends[0] = fragments.at(-1)![1];
  } else {
    throw corrupt(
      `cannot tell which of ${fragments.length} pixel data fragments hold which of ${frames} frames (no offset table)`,
    );
  }
  return { encapsulated: true, starts, ends };
}

async function endOfFragments(source: ByteSource, start: number): Promise<number> {
  let at = start;
  while (at + 8 <= source.size) {
    const item = await readExactly(source, at, 8, 'pixel data fragment header');
    if (u16(item, 0) !== ITEM_GROUP || u16(item, 2) !== ITEM) return at;
    at += 8 + u32(item, 4);
  }
  return Math.min(at, source.size);
}

/** The bytes of one frame, its fragments joined (item headers removed). */
export async function readDicomFrame(
  source: ByteSource,
  table: DicomFrameTable,
  frameIndex: number,
): Promise<Uint8Array> {
  const start = table.starts[frameIndex];
  const end = table.ends[frameIndex];
  if (start === undefined || end === undefined || !Number.isInteger(frameIndex)) {
    throw new AppError('NOT_FOUND', `frame ${frameIndex} does not exist`, { retryable: false });
  }
  const bytes = await readExactly(source, start, end - start, `frame ${frameIndex + 1}`);
  if (!table.encapsulated) return bytes;
  return joinItems(bytes, start);
}

/** Strips item headers out of a run of fragments (a frame is usually one fragment: no copy then). */
export function joinItems(bytes: Uint8Array, fileOffset = 0): Uint8Array {
  const parts: Uint8Array[] = [];
  let at = 0;
  while (at + 8 <= bytes.length) {
    if (u16(bytes, at) !== ITEM_GROUP || u16(bytes, at + 2) !== ITEM) break;
    const length = u32(bytes, at + 4);
    if (at + 8 + length > bytes.length) {
      throw corrupt(
        `pixel data fragment at offset ${fileOffset + at} declares ${length} bytes past the frame`,
        {
          offset: fileOffset + at,
        },
      );
    }
    parts.push(bytes.subarray(at + 8, at + 8 + length));
    at += 8 + length;
  }
  if (parts.length === 0)
    throw corrupt(`no pixel data fragment at offset ${fileOffset}`, { offset: fileOffset });
  if (parts.length === 1) return parts[0]!;
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}
