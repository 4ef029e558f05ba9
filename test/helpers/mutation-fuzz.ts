/**
 * Deterministic mutants of real files for the robustness test (test/conformance/mutation-robustness.test.ts).
 * Every mutant is derived from the input's bytes and a seed taken from its label, so a failure reported as
 * "input × mutation id" is reproduced by `planMutants(loadFuzzInput(spec))` alone.
 *
 * Mutations follow the structure of each format where it matters: DICOM length fields (file meta, elements,
 * sequence items, the Basic Offset Table and fragments), the Image Pixel attributes that size buffers and the
 * image size in a compressed frame's own header; TIFF IFD counts, offsets and image sizes; SCP-ECG section
 * lengths, with the CRCs recomputed so that the mutant gets past the checksums to the decoder; numeric fields of
 * the text formats (WFDB header, EDF header, XML, CSV). "Wrong type" mutants swap the DICOM transfer syntax and
 * photometric interpretation, and the TIFF compression and sample layout, so that each decoder is handed
 * another's data.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import type { DataSet, Element } from 'dicom-parser';
import { isAppError } from '../../src/errors.js';
import { parseDicom } from '../../src/formats/dicom/parse-dicom.js';
import { random } from './ecg-synthetic.js';

/** How a mutant's bytes are laid out, which decides the structure-aware mutations. */
export type FuzzLayout = 'dicom' | 'tiff' | 'scp' | 'edf' | 'xml' | 'text';

/** One input, as plain data so that it crosses to the worker thread. */
export interface FuzzInputSpec {
  /** Readable and unique: where the file comes from, plus any derivation. */
  label: string;
  layout: FuzzLayout;
  /** Absolute path of the file that is mutated. */
  file: string;
  /** Companion files read through the sibling reader (WFDB signal files, segment headers), absolute paths. */
  siblings?: string[];
  /** A shorter copy of a long recording, so that each mutant costs what a 10 s ECG costs. */
  derive?: { edfRecords: number } | { csvLines: number };
  /** Whether to render after inspecting (false: the inspect path only, for inputs too slow to render ~60 times). */
  render: boolean;
  /** Not a file: one mutant that misbehaves on purpose, to show the test notices (a hang, a TypeError). */
  selfCheck?: 'hang' | 'type-error';
}

export interface FuzzInput {
  spec: FuzzInputSpec;
  /** The name inspectFile sees (detection looks at extensions). */
  name: string;
  bytes: Uint8Array;
  siblings: Map<string, Uint8Array>;
}

export interface Mutant {
  id: string;
  bytes: Uint8Array;
  siblings: Map<string, Uint8Array>;
}

/** A mutant is only built when it runs: inputs of a megabyte times sixty mutants would not all fit at once. */
export interface MutantPlan {
  id: string;
  make(): Mutant;
}

export function loadFuzzInput(spec: FuzzInputSpec): FuzzInput {
  let bytes: Uint8Array = new Uint8Array(readFileSync(spec.file));
  if (spec.derive && 'edfRecords' in spec.derive) bytes = firstEdfRecords(bytes, spec.derive.edfRecords);
  if (spec.derive && 'csvLines' in spec.derive) bytes = firstLines(bytes, spec.derive.csvLines);
  const siblings = new Map<string, Uint8Array>();
  for (const file of spec.siblings ?? []) siblings.set(path.basename(file), readFileSync(file));
  return { spec, name: path.basename(spec.file), bytes, siblings };
}

/** FNV-1a of the label: each input gets its own random stream, whatever the order inputs run in. */
export function seedOf(label: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < label.length; i++) h = Math.imul(h ^ label.charCodeAt(i), 0x01000193) >>> 0;
  return h;
}

// ---- derived inputs -------------------------------------------------------------------------------------

const latin1 = new TextDecoder('latin1');
const encoder = new TextEncoder();

function asciiField(b: Uint8Array, at: number, length: number): string {
  return latin1.decode(b.subarray(at, at + length)).trim();
}

/** The same EDF with only its first `records` data records (the header's record count rewritten). */
function firstEdfRecords(b: Uint8Array, records: number): Uint8Array {
  const headerBytes = Number(asciiField(b, 184, 8));
  const signals = Number(asciiField(b, 252, 4));
  const samplesAt = 256 + signals * (16 + 80 + 8 + 8 + 8 + 8 + 8 + 80);
  let recordBytes = 0;
  for (let s = 0; s < signals; s++) recordBytes += 2 * Number(asciiField(b, samplesAt + s * 8, 8));
  const out = b.slice(0, Math.min(b.length, headerBytes + records * recordBytes));
  out.set(new TextEncoder().encode(String(records).padEnd(8, ' ')), 236);
  return out;
}

function firstLines(b: Uint8Array, lines: number): Uint8Array {
  let seen = 0;
  for (let i = 0; i < b.length; i++) {
    if (b[i] === 0x0a && ++seen === lines) return b.slice(0, i + 1);
  }
  return b;
}

// ---- byte edits -----------------------------------------------------------------------------------------

function concat(...parts: Uint8Array[]): Uint8Array {
  return new Uint8Array(Buffer.concat(parts));
}

function writeUint(
  b: Uint8Array,
  at: number,
  width: 2 | 4,
  value: number,
  littleEndian: boolean,
): Uint8Array {
  const view = new DataView(b.buffer, b.byteOffset, b.byteLength);
  if (width === 2) view.setUint16(at, value & 0xffff, littleEndian);
  else view.setUint32(at, value >>> 0, littleEndian);
  return b;
}

function splice(b: Uint8Array, at: number, remove: number, insert: Uint8Array): Uint8Array {
  return concat(b.subarray(0, at), insert, b.subarray(at + remove));
}

const hex = (n: number) => `0x${n.toString(16).toUpperCase().padStart(4, '0')}`;

// ---- structure ------------------------------------------------------------------------------------------

interface LengthField {
  at: number;
  width: 2 | 4;
  littleEndian: boolean;
  what: string;
}

/** A value that sizes buffers (Rows, BitsAllocated, NumberOfFrames, ImageWidth, a sample count …). Gets a
 * copy of the input it may change in place, or replace (text edits change the length). */
interface ValueEdit {
  what: string;
  apply(b: Uint8Array): Uint8Array;
}

interface Cut {
  at: number;
  what: string;
  /** Cuts inside the named structures of the brief (meta, sequence, pixel data, fragments) are always made;
   * the rest (inside some element's length) are sampled. */
  always?: boolean;
}

interface Structure {
  /** Most telling first; the first few are always mutated, the rest sampled. */
  lengthFields: LengthField[];
  values: ValueEdit[];
  cuts: Cut[];
  /** Where lengths, tags and offsets live: flips and overwrites land here. */
  hot: [number, number][];
  /** Applied after every edit: recomputed checksums, so that the mutant reaches the parser behind them. */
  fixup?: (b: Uint8Array) => Uint8Array;
}

function structureOf(input: FuzzInput): Structure {
  const b = input.bytes;
  const fallback: Structure = {
    lengthFields: [],
    values: [],
    cuts: [],
    hot: [[0, Math.min(b.length, 4096)]],
  };
  switch (input.spec.layout) {
    case 'dicom':
      return dicomStructure(b) ?? fallback;
    case 'tiff':
      return tiffStructure(b) ?? fallback;
    case 'scp':
      return scpStructure(b) ?? fallback;
    case 'edf': {
      const text = textStructure(b, edfHeaderEnd(b));
      return { ...text, values: [...edfFieldEdits(b), ...text.values] };
    }
    case 'xml':
    case 'text':
      return textStructure(b, Math.min(b.length, 4096));
  }
}

// ---- DICOM ----------------------------------------------------------------------------------------------

const VR_NAMES = new Set(
  'AE AS AT CS DA DS DT FD FL IS LO LT OB OD OF OL OV OW PN SH SL SQ SS ST SV TM UC UI UL UN UR US UT UV'.split(
    ' ',
  ),
);
const LONG_VRS = new Set(['OB', 'OD', 'OF', 'OL', 'OV', 'OW', 'SQ', 'SV', 'UC', 'UN', 'UR', 'UT', 'UV']);

function isVrAt(b: Uint8Array, at: number): boolean {
  return at >= 0 && at + 2 <= b.length && VR_NAMES.has(String.fromCharCode(b[at]!, b[at + 1]!));
}

function tagAt(b: Uint8Array, at: number, group: number, element: number, littleEndian: boolean): boolean {
  if (at < 0 || at + 4 > b.length) return false;
  const g = littleEndian ? b[at]! | (b[at + 1]! << 8) : (b[at]! << 8) | b[at + 1]!;
  const e = littleEndian ? b[at + 2]! | (b[at + 3]! << 8) : (b[at + 2]! << 8) | b[at + 3]!;
  return g === group && e === element;
}

/** Where an element's length is stored, found from its header bytes (explicit long, explicit short, implicit),
 * and in which byte order. */
function lengthFieldOf(
  b: Uint8Array,
  tag: string,
  dataOffset: number,
  what: string,
): LengthField | undefined {
  const group = Number.parseInt(tag.slice(1, 5), 16);
  const element = Number.parseInt(tag.slice(5, 9), 16);
  for (const littleEndian of [true, false]) {
    if (tagAt(b, dataOffset - 12, group, element, littleEndian) && isVrAt(b, dataOffset - 8)) {
      return { at: dataOffset - 4, width: 4, littleEndian, what };
    }
    if (tagAt(b, dataOffset - 8, group, element, littleEndian)) {
      return isVrAt(b, dataOffset - 4)
        ? { at: dataOffset - 2, width: 2, littleEndian, what }
        : { at: dataOffset - 4, width: 4, littleEndian, what };
    }
  }
  return undefined;
}

function tagName(tag: string): string {
  return `(${tag.slice(1, 5).toUpperCase()},${tag.slice(5, 9).toUpperCase()})`;
}

const PIXEL_DATA = 'x7fe00010';
const ITEM = 'xfffee000';

/** Image Pixel attributes (US) that size decode buffers, and the values they are set to. */
const IMAGE_PIXEL_US: [string, string, number[]][] = [
  ['x00280010', 'Rows', [0xffff, 0]],
  ['x00280011', 'Columns', [0xffff]],
  ['x00280100', 'BitsAllocated', [0xffff, 1]],
  ['x00280101', 'BitsStored', [0xffff]],
  ['x00280002', 'SamplesPerPixel', [0xffff, 4]],
  ['x00280006', 'PlanarConfiguration', [0xffff]],
];

function dicomStructure(b: Uint8Array): Structure | undefined {
  const metaFields: LengthField[] = [];
  const cuts: Cut[] = [];
  const hot: [number, number][] = [[0, Math.min(b.length, 4096)]];
  const hasPrefix = b.length >= 132 && latin1.decode(b.subarray(128, 132)) === 'DICM';
  const view = new DataView(b.buffer, b.byteOffset, b.byteLength);
  let pos = hasPrefix ? 132 : 0;
  // File meta: explicit VR little endian whatever the data set's transfer syntax.
  while (pos + 8 <= b.length && b[pos] === 0x02 && b[pos + 1] === 0x00 && isVrAt(b, pos + 4)) {
    const vr = String.fromCharCode(b[pos + 4]!, b[pos + 5]!);
    const tag = `x0002${view
      .getUint16(pos + 2, true)
      .toString(16)
      .padStart(4, '0')}`;
    const width = LONG_VRS.has(vr) ? 4 : 2;
    const at = width === 4 ? pos + 8 : pos + 6;
    if (at + width > b.length) break;
    const length = width === 4 ? view.getUint32(at, true) : view.getUint16(at, true);
    metaFields.push({ at, width, littleEndian: true, what: `file meta ${tagName(tag)} length` });
    cuts.push({
      at: at + 1,
      what: `inside the length of file meta ${tagName(tag)}`,
      always: tag === 'x00020010',
    });
    pos = at + width + length;
  }
  if (metaFields.length > 0)
    cuts.push({ at: pos - 3, what: 'inside the last file meta value', always: true });

  let dataSet: DataSet;
  try {
    dataSet = parseDicom(b).dataSet;
  } catch {
    return metaFields.length > 0 ? { lengthFields: metaFields, values: [], cuts, hot } : undefined;
  }
  // Deflated: after the meta comes a zlib stream, whose elements have no byte positions in the file.
  if (dataSet.byteArray !== b) return { lengthFields: metaFields, values: [], cuts, hot };

  const priority: LengthField[] = [];
  const rest: LengthField[] = [];
  const codestreamValues: ValueEdit[] = [];
  let sequences = 0;
  const walk = (ds: DataSet, depth: number) => {
    for (const el of Object.values(ds.elements) as Element[]) {
      const field = lengthFieldOf(
        b,
        el.tag,
        el.dataOffset,
        `${depth > 0 ? 'nested ' : ''}${tagName(el.tag)} length`,
      );
      if (!field) continue;
      const firstSequence = el.items !== undefined && sequences++ === 0;
      if (el.tag === PIXEL_DATA || firstSequence) priority.push(field);
      else rest.push(field);
      cuts.push({ at: field.at + field.width / 2, what: `inside the length of ${tagName(el.tag)}` });
      const item = el.items?.[0];
      if (item) {
        const itemField = lengthFieldOf(b, ITEM, item.dataOffset, `first item of ${tagName(el.tag)} length`);
        if (itemField && firstSequence) priority.push(itemField);
        else if (itemField) rest.push(itemField);
        const inside = item.hadUndefinedLength ? item.dataOffset + 6 : item.dataOffset + (item.length >> 1);
        cuts.push({
          at: inside,
          what: `inside the first item of sequence ${tagName(el.tag)}`,
          always: firstSequence,
        });
        hot.push([Math.max(0, el.dataOffset - 12), Math.min(b.length, el.dataOffset + 64)]);
        if (depth < 3) for (const it of el.items!.slice(0, 2)) if (it.dataSet) walk(it.dataSet, depth + 1);
      }
      if (el.tag === PIXEL_DATA && depth === 0)
        pixelDataStructure(b, el, priority, cuts, hot, codestreamValues);
    }
  };
  walk(dataSet, 0);

  const values: ValueEdit[] = [...codestreamValues];
  for (const [tag, name, settings] of IMAGE_PIXEL_US) {
    const el = dataSet.elements[tag];
    if (!el || el.length < 2) continue;
    const littleEndian = lengthFieldOf(b, tag, el.dataOffset, name)?.littleEndian ?? true;
    for (const value of settings) {
      values.push({
        what: `${name}=${value}`,
        apply: (m) => writeUint(m, el.dataOffset, 2, value, littleEndian),
      });
    }
  }
  const photometric = dataSet.elements.x00280004;
  const photometricField =
    photometric && lengthFieldOf(b, 'x00280004', photometric.dataOffset, 'PhotometricInterpretation');
  if (photometric && photometricField) {
    for (const value of ['RGB', 'MONOCHROME1', 'PALETTE COLOR', 'YBR_FULL_422', 'YBR_ICT']) {
      values.push({
        what: `PhotometricInterpretation=${value}`,
        apply: (m) =>
          replaceValue(m, photometricField, photometric.dataOffset, photometric.length, value, ' '),
      });
    }
  }
  const frames = dataSet.elements.x00280008;
  if (frames && frames.length > 0) {
    // IS keeps its length: the digits change, the element does not move.
    for (const digit of ['9', '0']) {
      values.push({
        what: `NumberOfFrames=${digit.repeat(frames.length)}`,
        apply: (m) => m.fill(digit.charCodeAt(0), frames.dataOffset, frames.dataOffset + frames.length),
      });
    }
  }
  values.push(...transferSyntaxSwaps(b, hasPrefix ? 132 : 0));
  return { lengthFields: [...priority, ...metaFields.slice(0, 2), ...rest], values, cuts, hot };
}

/** An element's value replaced by one of another length (padded to even), its length field updated. */
function replaceValue(
  b: Uint8Array,
  field: LengthField,
  dataOffset: number,
  length: number,
  value: string,
  pad: string,
): Uint8Array {
  const text = value.length % 2 === 0 ? value : value + pad;
  const out = splice(b, dataOffset, length, encoder.encode(text));
  return writeUint(out, field.at, field.width, text.length, field.littleEndian);
}

/** Every transfer syntax family, so that each decoder is handed the others' streams ("wrong type"). */
const TRANSFER_SYNTAXES = [
  '1.2.840.10008.1.2',
  '1.2.840.10008.1.2.1',
  '1.2.840.10008.1.2.2',
  '1.2.840.10008.1.2.1.99',
  '1.2.840.10008.1.2.1.98',
  '1.2.840.10008.1.2.4.50',
  '1.2.840.10008.1.2.4.70',
  '1.2.840.10008.1.2.4.80',
  '1.2.840.10008.1.2.4.90',
  '1.2.840.10008.1.2.4.201',
  '1.2.840.10008.1.2.5',
  '1.2.840.10008.1.2.8.1',
  '1.2.840.10008.1.2.4.100',
];

/** (0002,0010) replaced by each other transfer syntax; the group length follows so only the UID is wrong. */
function transferSyntaxSwaps(b: Uint8Array, metaStart: number): ValueEdit[] {
  const view = new DataView(b.buffer, b.byteOffset, b.byteLength);
  let groupLengthAt: number | undefined;
  for (
    let pos = metaStart;
    pos + 8 <= b.length && view.getUint16(pos, true) === 0x0002 && isVrAt(b, pos + 4);
  ) {
    const element = view.getUint16(pos + 2, true);
    const long = LONG_VRS.has(String.fromCharCode(b[pos + 4]!, b[pos + 5]!));
    const at = long ? pos + 8 : pos + 6;
    const length = long ? view.getUint32(at, true) : view.getUint16(at, true);
    const dataOffset = at + (long ? 4 : 2);
    if (element === 0x0000 && length === 4) groupLengthAt = dataOffset;
    if (element === 0x0010 && !long) {
      const current = latin1.decode(b.subarray(dataOffset, dataOffset + length)).replace(/[\0 ]+$/, '');
      const field: LengthField = { at, width: 2, littleEndian: true, what: 'TransferSyntaxUID' };
      return TRANSFER_SYNTAXES.filter((uid) => uid !== current).map((uid) => ({
        what: `TransferSyntaxUID=${uid}`,
        apply: (m) => {
          const out = replaceValue(m, field, dataOffset, length, uid, '\0');
          const grown = out.length - m.length;
          if (groupLengthAt !== undefined) {
            const groupLength = new DataView(out.buffer, out.byteOffset).getUint32(groupLengthAt, true);
            writeUint(out, groupLengthAt, 4, groupLength + grown, true);
          }
          return out;
        },
      }));
    }
    pos = dataOffset + length;
  }
  return [];
}

function pixelDataStructure(
  b: Uint8Array,
  el: Element,
  fields: LengthField[],
  cuts: Cut[],
  hot: [number, number][],
  values: ValueEdit[],
): void {
  cuts.push({ at: el.dataOffset - 3, what: 'inside the Pixel Data header', always: true });
  hot.push([Math.max(0, el.dataOffset - 12), Math.min(b.length, el.dataOffset + 32)]);
  if (!el.encapsulatedPixelData) {
    if (el.length > 0 && !el.hadUndefinedLength) {
      cuts.push({ at: el.dataOffset + (el.length >> 1), what: 'inside native pixel data', always: true });
    }
    return;
  }
  const bot = lengthFieldOf(b, ITEM, el.dataOffset + 8, 'Basic Offset Table item length');
  if (bot) fields.push(bot);
  cuts.push({ at: el.dataOffset + 6, what: 'inside the Basic Offset Table item header', always: true });
  if (el.basicOffsetTable && el.basicOffsetTable.length > 1 && bot) {
    fields.push({
      at: el.dataOffset + 12,
      width: 4,
      littleEndian: bot.littleEndian,
      what: 'Basic Offset Table entry 2',
    });
  }
  const fragments = el.fragments ?? [];
  if (fragments[0]) values.push(...codestreamSizeEdits(b, fragments[0].position, fragments[0].length));
  const picked = [...new Set([fragments[0], fragments[1], fragments[fragments.length - 1]])];
  for (const [i, fragment] of picked.entries()) {
    if (!fragment) continue;
    const field = lengthFieldOf(b, ITEM, fragment.position, `fragment at ${fragment.position} length`);
    if (field && i < 2) fields.push(field);
    const always = i === 0;
    cuts.push({
      at: fragment.position - 2,
      what: `inside the item header of the fragment at ${fragment.position}`,
      always,
    });
    cuts.push({
      at: fragment.position + (fragment.length >> 1),
      what: `inside the fragment at ${fragment.position}`,
      always,
    });
    hot.push([Math.max(0, fragment.position - 8), Math.min(b.length, fragment.position + 64)]);
  }
}

/**
 * The image size in the first fragment's own header — JPEG SOF, JPEG-LS SOF55, JPEG 2000 SIZ — made far bigger
 * than Rows × Columns: decoders size their buffers from it.
 */
function codestreamSizeEdits(b: Uint8Array, start: number, length: number): ValueEdit[] {
  const end = Math.min(b.length, start + length, start + 2048);
  const view = new DataView(b.buffer, b.byteOffset, b.byteLength);
  if (b[start] === 0xff && b[start + 1] === 0xd8) {
    for (let pos = start + 2; pos + 9 <= end && b[pos] === 0xff; ) {
      const marker = b[pos + 1]!;
      const isFrame =
        (marker >= 0xc0 && marker <= 0xcf && ![0xc4, 0xc8, 0xcc].includes(marker)) || marker === 0xf7;
      if (isFrame) {
        return [0xffff, 20000].map((n) => ({
          what: `codestream SOF ${hex(marker)} ${n}×${n}`,
          apply: (m) => writeUint(writeUint(m, pos + 5, 2, n, false), pos + 7, 2, n, false),
        }));
      }
      if (marker === 0xda || marker === 0xd9) break;
      pos += 2 + view.getUint16(pos + 2);
    }
    return [];
  }
  for (let pos = start; pos + 14 <= end; pos++) {
    // SOC then SIZ, bare or inside a JP2 codestream box.
    if (view.getUint32(pos) !== 0xff4fff51) continue;
    return [100_000, 0xffffffff].map((n) => ({
      what: `codestream SIZ ${n}×${n}`,
      apply: (m) => writeUint(writeUint(m, pos + 8, 4, n, false), pos + 12, 4, n, false),
    }));
  }
  return [];
}

// ---- TIFF -----------------------------------------------------------------------------------------------

const TIFF_TYPE_SIZE: Record<number, number> = {
  1: 1,
  2: 1,
  3: 2,
  4: 4,
  5: 8,
  6: 1,
  7: 1,
  8: 2,
  9: 4,
  10: 8,
  11: 4,
  12: 8,
};
/** StripOffsets, StripByteCounts, TileOffsets, TileByteCounts, JPEGTables: arrays that locate pixel data. */
const TIFF_ARRAYS = new Set([273, 279, 324, 325, 347]);
/** ImageWidth, ImageLength, TileWidth, TileLength: they size the decoded image. */
const TIFF_SIZES = new Set([256, 257, 322, 323]);

/** Compression, BitsPerSample, PhotometricInterpretation, SamplesPerPixel, PlanarConfiguration: another
 * codec or layout than the tiles hold ("wrong type"). */
const TIFF_SWAPS: Record<number, number[]> = {
  259: [1, 5, 7, 8, 33003, 34712, 50000],
  258: [0, 64],
  262: [6, 32844],
  277: [0, 65535],
  284: [2],
};

/** Classic TIFF: the header, each IFD (entry count, entries, next pointer) and the arrays they point at. */
function tiffStructure(b: Uint8Array): Structure | undefined {
  if (b.length < 8) return undefined;
  const littleEndian = b[0] === 0x49;
  const view = new DataView(b.buffer, b.byteOffset, b.byteLength);
  if (view.getUint16(2, littleEndian) !== 42) return undefined;
  const first: LengthField[] = [{ at: 4, width: 4, littleEndian, what: 'first IFD offset' }];
  const rest: LengthField[] = [];
  const values: ValueEdit[] = [];
  const cuts: Cut[] = [{ at: 6, what: 'inside the first IFD offset', always: true }];
  const hot: [number, number][] = [[0, 8]];
  let ifd = view.getUint32(4, littleEndian);
  const seen = new Set<number>();
  for (let index = 0; ifd > 0 && ifd + 2 <= b.length && !seen.has(ifd) && index < 8; index++) {
    seen.add(ifd);
    const count = view.getUint16(ifd, littleEndian);
    const end = ifd + 2 + count * 12;
    if (end + 4 > b.length) break;
    hot.push([ifd, end + 4]);
    const label = `IFD ${index}`;
    const target = index === 0 ? first : rest;
    target.push({ at: ifd, width: 2, littleEndian, what: `${label} entry count` });
    cuts.push({
      at: ifd + 2 + (count >> 1) * 12 + 6,
      what: `inside an entry of ${label}`,
      always: index === 0,
    });
    for (let e = 0; e < count; e++) {
      const at = ifd + 2 + e * 12;
      const tag = view.getUint16(at, littleEndian);
      const type = view.getUint16(at + 2, littleEndian);
      const bytes = view.getUint32(at + 4, littleEndian) * (TIFF_TYPE_SIZE[type] ?? 1);
      if (TIFF_ARRAYS.has(tag)) {
        target.push({ at: at + 4, width: 4, littleEndian, what: `${label} tag ${tag} count` });
        if (bytes > 4) {
          target.push({ at: at + 8, width: 4, littleEndian, what: `${label} tag ${tag} array offset` });
          const offset = view.getUint32(at + 8, littleEndian);
          if (offset < b.length) {
            hot.push([offset, Math.min(b.length, offset + Math.min(bytes, 64))]);
            const inside = offset + (Math.min(bytes, b.length - offset) >> 1);
            cuts.push({ at: inside, what: `inside the tag ${tag} array of ${label}`, always: index === 0 });
          }
        }
      }
      const swaps = TIFF_SWAPS[tag];
      if (swaps && index < 2 && bytes <= 4) {
        const width = type === 3 ? 2 : 4;
        for (const value of swaps) {
          values.push({
            what: `${label} tag ${tag}=${value}`,
            apply: (m) => writeUint(m, at + 8, width, value, littleEndian),
          });
        }
      }
      if (TIFF_SIZES.has(tag) && index === 0) {
        const width = type === 3 ? 2 : 4;
        for (const value of [0xffffffff, 0]) {
          values.push({
            what: `${label} tag ${tag}=${width === 2 ? value & 0xffff : value}`,
            apply: (m) => writeUint(m, at + 8, width, value, littleEndian),
          });
        }
      }
    }
    rest.push({ at: end, width: 4, littleEndian, what: `${label} next-IFD offset` });
    ifd = view.getUint32(end, littleEndian);
  }
  return { lengthFields: [...first, ...rest], values, cuts, hot };
}

// ---- SCP-ECG --------------------------------------------------------------------------------------------

/** Record length, section 0's pointers and every section header's length; CRCs recomputed after each edit. */
function scpStructure(b: Uint8Array): Structure | undefined {
  if (b.length < 22) return undefined;
  const view = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const fields: LengthField[] = [
    { at: 2, width: 4, littleEndian: true, what: 'record length' },
    { at: 10, width: 4, littleEndian: true, what: 'section 0 length' },
  ];
  const cuts: Cut[] = [{ at: 12, what: 'inside the section 0 header', always: true }];
  const hot: [number, number][] = [[0, Math.min(b.length, 4096)]];
  const section0End = Math.min(b.length, 6 + view.getUint32(10, true));
  for (let p = 22; p + 10 <= section0End; p += 10) {
    const id = view.getUint16(p, true);
    const length = view.getUint32(p + 2, true);
    const index = view.getUint32(p + 6, true);
    if (length === 0 || index < 1 || index - 1 + 16 > b.length) continue;
    fields.push({
      at: p + 2,
      width: 4,
      littleEndian: true,
      what: `section 0 pointer to section ${id}: length`,
    });
    fields.push({
      at: p + 6,
      width: 4,
      littleEndian: true,
      what: `section 0 pointer to section ${id}: index`,
    });
    fields.push({ at: index - 1 + 4, width: 4, littleEndian: true, what: `section ${id} header length` });
    hot.push([index - 1, Math.min(b.length, index - 1 + 64)]);
    cuts.push({ at: index - 1 + (length >> 1), what: `inside section ${id}`, always: id === 6 || id === 3 });
  }
  // Sections 3 and 6 (lead definitions, rhythm data) size what is decoded: their fields come first.
  const rank = (f: LengthField) =>
    /section [236]\b/.test(f.what) ? 0 : /record|section 0 length/.test(f.what) ? 1 : 2;
  fields.sort((x, y) => rank(x) - rank(y));
  // Section bodies (lead counts, Huffman tables, sample counts) matter as much as their headers.
  const values: ValueEdit[] = [];
  for (let p = 22; p + 10 <= section0End; p += 10) {
    const id = view.getUint16(p, true);
    const index = view.getUint32(p + 6, true);
    const length = view.getUint32(p + 2, true);
    if (![2, 3, 6].includes(id) || length < 20 || index - 1 + length > b.length) continue;
    const body = index - 1 + 16;
    for (const k of [0, 2, 4]) {
      values.push({
        what: `section ${id} body word ${k / 2} = 0xFFFF`,
        apply: (m) => writeUint(m, body + k, 2, 0xffff, true),
      });
    }
  }
  return { lengthFields: fields, values, cuts, hot, fixup: fixScpCrcs };
}

function crcCcitt(b: Uint8Array, start: number, end: number): number {
  let crc = 0xffff;
  for (let i = start; i < end; i++) {
    crc ^= b[i]! << 8;
    for (let k = 0; k < 8; k++) crc = crc & 0x8000 ? ((crc << 1) ^ 0x1021) & 0xffff : (crc << 1) & 0xffff;
  }
  return crc;
}

/** Rewrites every section CRC the mutant's own section table lets us find, then the file CRC. */
function fixScpCrcs(b: Uint8Array): Uint8Array {
  if (b.length < 22) return b;
  const view = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const recordLength = view.getUint32(2, true);
  const end = Math.min(recordLength, b.length);
  const fix = (offset: number) => {
    if (offset < 0 || offset + 16 > end) return;
    const length = view.getUint32(offset + 4, true);
    if (length < 16 || offset + length > end) return;
    view.setUint16(offset, crcCcitt(b, offset + 2, offset + length), true);
  };
  const section0End = Math.min(end, 6 + view.getUint32(10, true));
  for (let p = 22; p + 10 <= section0End; p += 10) fix(view.getUint32(p + 6, true) - 1);
  fix(6);
  if (recordLength <= b.length && recordLength >= 2) view.setUint16(0, crcCcitt(b, 2, recordLength), true);
  return b;
}

// ---- text formats ---------------------------------------------------------------------------------------

function edfHeaderEnd(b: Uint8Array): number {
  const headerBytes = Number(asciiField(b, 184, 8));
  return Number.isFinite(headerBytes) && headerBytes > 0 ? Math.min(b.length, headerBytes) : 256;
}

/** The EDF header fields that size the signal: record count and duration, signal count, and signal 0's
 * calibration (equal digital limits divide by zero) and samples per record. */
function edfFieldEdits(b: Uint8Array): ValueEdit[] {
  const signals = Number(asciiField(b, 252, 4));
  if (!Number.isInteger(signals) || signals < 1) return [];
  const field = (name: string, at: number, width: number, value: string): ValueEdit => ({
    what: `EDF ${name}="${value}"`,
    apply: (m) => {
      m.set(encoder.encode(value.padEnd(width, ' ').slice(0, width)), at);
      return m;
    },
  });
  const base = 256 + signals * (16 + 80 + 8);
  const physicalMin = base;
  const digitalMin = base + signals * 16;
  const digitalMax = base + signals * 24;
  const samples = base + signals * (32 + 80);
  return [
    field('number of data records', 236, 8, '99999999'),
    field('number of data records', 236, 8, '-1'),
    field('duration of a data record', 244, 8, '0'),
    field('number of signals', 252, 4, '9999'),
    field('number of signals', 252, 4, '0'),
    field('signal 1 physical minimum', physicalMin, 8, '1e308'),
    field('signal 1 digital minimum', digitalMin, 8, asciiField(b, digitalMax, 8)),
    field('signal 1 samples per data record', samples, 8, '99999999'),
    field('signal 1 samples per data record', samples, 8, '0'),
  ];
}

const NUMBER = /-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?/g;
const REPLACEMENTS = ['99999999999', '0', '-1', '4294967295', '1e308', 'NaN'];

/** Text formats: numbers (sample counts, rates, gains, offsets) are their length fields. Only numbers standing
 * alone count, not digits inside base64 or names; those in the header come first. */
function textStructure(b: Uint8Array, headerEnd: number): Structure {
  const text = latin1.decode(b);
  const tokens: { at: number; text: string }[] = [];
  for (const m of text.matchAll(NUMBER)) {
    const before = text[m.index - 1] ?? ' ';
    const after = text[m.index + m[0].length] ?? ' ';
    if (/[A-Za-z0-9+/_]/.test(before) || /[A-Za-z0-9+/_]/.test(after)) continue;
    tokens.push({ at: m.index, text: m[0] });
  }
  const header = tokens.filter((t) => t.at < headerEnd);
  const picked = [...header.slice(0, 6), ...spread(header.slice(6), 6), ...spread(tokens, 4)];
  const unique = [...new Map(picked.map((t) => [t.at, t])).values()];
  const values = unique.map((t, i): ValueEdit => {
    const replacement = REPLACEMENTS[i % REPLACEMENTS.length]!;
    const bytes = encoder.encode(replacement);
    return {
      what: `number "${t.text}" at ${t.at} → ${replacement}`,
      // Latin-1 decoding keeps one character per byte, so the text offset is the byte offset.
      apply: (m) => splice(m, t.at, t.text.length, bytes),
    };
  });
  const cuts: Cut[] = [{ at: headerEnd - 1, what: 'at the end of the header', always: true }];
  return { lengthFields: [], values, cuts, hot: [[0, Math.min(b.length, headerEnd, 4096)]] };
}

const BASE64_RUN = /[A-Za-z0-9+/]{64,}/g;
const BASE64_ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';

/** Runs of base64 (waveforms in XML ECGs): a changed character keeps the text valid base64, so the damage
 * reaches the decoder of what is inside (XLI-compressed samples, raw int16). */
function base64Runs(b: Uint8Array): [number, number][] {
  const text = latin1.decode(b);
  return [...text.matchAll(BASE64_RUN)].map((m) => [m.index, m.index + m[0].length]);
}

/** Up to `n` items spread evenly over the list. */
function spread<T>(list: T[], n: number): T[] {
  if (list.length <= n) return list;
  return Array.from({ length: n }, (_, i) => list[Math.floor(((i + 0.5) * list.length) / n)]!);
}

// ---- the plan -------------------------------------------------------------------------------------------

export interface PlanLimits {
  flips: number;
  overwrites: number;
  /** Length fields always mutated (most telling first), then this many more sampled from the rest. */
  lengthFieldsFirst: number;
  lengthFieldsSampled: number;
  cutsSampled: number;
}

export const DEFAULT_LIMITS: PlanLimits = {
  flips: 8,
  overwrites: 6,
  lengthFieldsFirst: 5,
  lengthFieldsSampled: 3,
  cutsSampled: 3,
};

const HUGE_32 = [0xfffffffe, 0x7fffffff, 0xffffffff];
const HUGE_16 = [0xffff, 0];

/** Every mutant of an input, in a fixed order with stable ids. The first is the input unchanged. */
export function planMutants(input: FuzzInput, limits: PlanLimits = DEFAULT_LIMITS): MutantPlan[] {
  const b = input.bytes;
  const n = b.length;
  const rng = random(seedOf(input.spec.label));
  const int = (below: number) => Math.floor(rng() * below);
  const s = structureOf(input);
  const fix = s.fixup ?? ((m: Uint8Array) => m);
  const plans: MutantPlan[] = [];
  const add = (id: string, bytes: () => Uint8Array, siblings = input.siblings) =>
    plans.push({ id, make: () => ({ id, bytes: bytes(), siblings }) });
  /** A position in the structure-bearing ranges: a range first, so that small ones (an item header) are hit. */
  const hotPosition = () => {
    const [start, end] = s.hot[int(s.hot.length)]!;
    return Math.min(n - 1, start + int(Math.max(1, end - start)));
  };

  add('original', () => b);
  add('empty', () => new Uint8Array(0));

  const cuts = new Map<number, string>();
  for (const at of [1, 8, 64, 131, 512, n >> 2, n >> 1, (3 * n) >> 2, n - 1])
    cuts.set(at, `${at} of ${n} bytes`);
  const named = s.cuts.filter((c) => c.always);
  for (const c of [
    ...named,
    ...spread(
      s.cuts.filter((c) => !c.always),
      limits.cutsSampled,
    ),
  ])
    cuts.set(c.at, c.what);
  for (const [at, what] of [...cuts].sort((x, y) => x[0] - y[0])) {
    if (at > 0 && at < n) add(`truncate@${at} (${what})`, () => b.slice(0, at));
  }

  for (let i = 0; i < limits.flips; i++) {
    const at = hotPosition();
    const mask = rng() < 0.5 ? 1 << int(8) : 0xff;
    add(`flip@${at}^${hex(mask)}`, () => {
      const m = b.slice();
      m[at] = m[at]! ^ mask;
      return fix(m);
    });
  }
  for (let i = 0; i < limits.overwrites; i++) {
    const at = hotPosition();
    const bytes = Uint8Array.from({ length: 1 + int(4) }, () => int(256));
    const shown = [...bytes].map((x) => x.toString(16).padStart(2, '0')).join('');
    add(`overwrite@${at}=${shown}`, () => {
      const m = b.slice();
      m.set(bytes.subarray(0, Math.max(0, n - at)), at);
      return fix(m);
    });
  }

  const fields = [
    ...s.lengthFields.slice(0, limits.lengthFieldsFirst),
    ...spread(s.lengthFields.slice(limits.lengthFieldsFirst), limits.lengthFieldsSampled),
  ];
  for (const f of fields) {
    for (const value of f.width === 4 ? HUGE_32 : HUGE_16) {
      add(`length@${f.at}=${hex(value)} (${f.what})`, () =>
        fix(writeUint(b.slice(), f.at, f.width, value, f.littleEndian)),
      );
    }
  }
  for (const v of s.values) add(`value ${v.what}`, () => fix(v.apply(b.slice())));

  if (input.spec.layout === 'xml') {
    const runs = base64Runs(b);
    for (let i = 0; i < 4 && runs.length > 0; i++) {
      const [start, end] = runs[int(runs.length)]!;
      const at = start + int(end - start);
      const ch = BASE64_ALPHABET.charCodeAt(int(64));
      add(`base64@${at}=${String.fromCharCode(ch)}`, () => {
        const m = b.slice();
        m[at] = ch;
        return m;
      });
    }
  }

  const middle = n >> 1;
  const deletions: [number, number][] = [
    [middle, 1],
    [middle, 16],
    [hotPosition(), 7],
    [hotPosition(), 256],
  ];
  for (const [at, length] of deletions) {
    if (at + 1 < n) add(`delete@${at}+${length}`, () => fix(splice(b, at, length, new Uint8Array(0))));
  }
  const duplicates: [number, number][] = [
    [hotPosition(), 8],
    [middle, 64],
    [hotPosition(), 16],
  ];
  for (const [at, length] of duplicates) {
    const chunk = b.slice(at, Math.min(n, at + length));
    add(`duplicate@${at}+${chunk.length}`, () => fix(splice(b, at + chunk.length, 0, chunk)));
  }

  // A header's signal file damaged or missing: what a partial upload looks like.
  const signal = [...input.siblings.keys()].find((k) => !/\.hea$/i.test(k));
  if (signal) {
    const data = input.siblings.get(signal)!;
    const with_ = (bytes: Uint8Array | undefined) => {
      const copy = new Map(input.siblings);
      if (bytes) copy.set(signal, bytes);
      else copy.delete(signal);
      return copy;
    };
    add(`signal ${signal} missing`, () => b, with_(undefined));
    add(`signal ${signal} empty`, () => b, with_(new Uint8Array(0)));
    add(`signal ${signal} truncated@${data.length >> 1}`, () => b, with_(data.slice(0, data.length >> 1)));
    add(`signal ${signal} truncated@${data.length - 1}`, () => b, with_(data.slice(0, data.length - 1)));
  }

  // Two plans with one id would make a failure report ambiguous.
  const ids = new Set<string>();
  return plans.filter((p) => !ids.has(p.id) && ids.add(p.id));
}

// ---- the outcome rule and the worker protocol -----------------------------------------------------------

/**
 * The codes a parser or renderer may answer bad input with: the file is damaged (CORRUPT_FILE), is not a
 * format or variant Teleread reads (UNSUPPORTED_FORMAT), or claims more than Teleread will decode
 * (PAYLOAD_TOO_LARGE). Anything else — VALIDATION_FAILED (a caller's bad option), NOT_FOUND, INTERNAL (a bug
 * or a crashed codec thread, and retried by the queue), or no AppError at all — is a bug for a file's bytes.
 */
export const ALLOWED_CODES: ReadonlySet<string> = new Set([
  'CORRUPT_FILE',
  'UNSUPPORTED_FORMAT',
  'PAYLOAD_TOO_LARGE',
]);

export function describeError(err: unknown): string {
  if (!(err instanceof Error)) return `${typeof err} thrown: ${String(err)}`;
  const cause = err.cause instanceof Error ? `\ncaused by ${err.cause.stack ?? err.cause.message}` : '';
  return `${err.stack ?? `${err.name}: ${err.message}`}${cause}`;
}

/** The outcome rule for a mutant that threw: an AppError of an allowed code, not retryable, with a message. */
export function judge(err: unknown): Outcome {
  if (!isAppError(err)) return { kind: 'failed', reason: `not an AppError: ${describeError(err)}` };
  if (!ALLOWED_CODES.has(err.code)) {
    return { kind: 'failed', reason: `AppError ${err.code} is not a bad-input code: ${describeError(err)}` };
  }
  if (err.message.trim() === '') return { kind: 'failed', reason: `AppError ${err.code} without a message` };
  if (err.retryable)
    return { kind: 'failed', reason: `AppError ${err.code} is retryable: ${describeError(err)}` };
  return { kind: 'rejected', code: err.code, message: err.message };
}

export type Outcome =
  | { kind: 'accepted'; what: string }
  | { kind: 'rejected'; code: string; message: string }
  | { kind: 'failed'; reason: string };

export type ToWorker = { type: 'run'; spec: FuzzInputSpec; from: number };

export type FromWorker =
  | { type: 'planned'; ids: string[] }
  | { type: 'start'; index: number }
  | { type: 'result'; index: number; outcome: Outcome; ms: number }
  | { type: 'end' }
  | { type: 'crash'; reason: string };
