/**
 * Every data element of a parsed instance as `{ Keyword: value }`, keywords from PS3.6 (dcmjs's copy of the
 * data dictionary). This is what `teleread inspect --json` prints under `dicom`: a human-readable view, not a
 * round-trippable encoding (DICOM JSON, PS3.18 F, is that).
 */

// @ts-expect-error dcmjs ships no type declarations; the one table used here is typed below.
import dcmjs from 'dcmjs';
import type { DataSet, Element } from 'dicom-parser';
import dicomParser from 'dicom-parser';
import { CHARSET_VRS, decodeDicomText } from './charset.js';
import type { DicomInstance } from './parse-dicom.js';
import { TAG } from './tags.js';
import { BINARY_VRS, littleEndianValue, STRING_VRS } from './vr.js';

export interface DicomAttributesOptions {
  /** Include patient demographics (group 0010 and the admission attributes of group 0038). Default false:
   * the output goes to logs and terminals. */
  includePatient?: boolean;
  /** The most characters printed of a text value and the most values of a multi-valued attribute or items of
   * a sequence; longer text is cut (ending in '…'), longer lists are summarised as `{ vr, length }` or
   * `{ vr: 'SQ', items }`. Default 1024. */
  maxValueLength?: number;
  /** Sequences nested deeper than this are summarised as `{ vr: 'SQ', items }`. Default 8. */
  maxDepth?: number;
  /** Decoding problems (bad bytes for the character set), each naming the attribute, never its value. */
  onWarning?: (message: string) => void;
}

/** Binary values, and anything too long to print, appear as their VR and byte length. */
export interface BinarySummary {
  vr: string;
  length: number;
}

export interface SequenceSummary {
  vr: 'SQ';
  items: number;
}

export type DicomAttributeValue =
  | string
  | number
  | null
  | Array<string | number>
  | BinarySummary
  | SequenceSummary
  | Array<Record<string, unknown>>;

interface DictionaryEntry {
  keyword: string;
  vr: string;
}

interface DcmjsNameMapEntry {
  tag: string;
  vr: string;
  name: string;
}

const dcmjsNameMap = (
  dcmjs as { data: { DicomMetaDictionary: { nameMap: Record<string, DcmjsNameMapEntry> } } }
).data.DicomMetaDictionary.nameMap;

let dictionary: Map<number, DictionaryEntry> | undefined;

/** Keyed by the 32-bit tag. dcmjs prefixes retired keywords with RETIRED_; PS3.6 does not. */
function getDictionary(): Map<number, DictionaryEntry> {
  if (dictionary) return dictionary;
  dictionary = new Map();
  for (const entry of Object.values(dcmjsNameMap)) {
    const m = /^\(([0-9A-F]{4}),([0-9A-F]{4})\)$/i.exec(entry.tag);
    if (!m) continue;
    const tag = Number.parseInt(m[1]! + m[2]!, 16);
    dictionary.set(tag, { keyword: entry.name.replace(/^RETIRED_/, ''), vr: entry.vr });
  }
  return dictionary;
}

/** Repeating groups (curves 50xx, overlays 60xx, variable pixel data 7Fxx) are listed once, under their first
 * group. */
/** The dictionary's entry for a standard tag; none for a private one. */
function entryOf(tag: number): DictionaryEntry | undefined {
  return (tag >>> 16) % 2 === 1 ? undefined : lookup(tag);
}

function lookup(tag: number): DictionaryEntry | undefined {
  const dict = getDictionary();
  const exact = dict.get(tag);
  if (exact) return exact;
  const group = tag >>> 16;
  const base = group & 0xff00;
  if ((base === 0x5000 || base === 0x6000 || base === 0x7f00) && group % 2 === 0) {
    return dict.get(((base << 16) | (tag & 0xffff)) >>> 0);
  }
  return undefined;
}

const hex4 = (n: number) => n.toString(16).toUpperCase().padStart(4, '0');

function tagText(tag: number): string {
  return `${hex4(tag >>> 16)},${hex4(tag & 0xffff)}`;
}

/** Patient demographics outside group 0010: the Visit Identification and Visit Status modules (PS3.3 C.3.2,
 * C.3.3), which identify the patient's stay. */
const PATIENT_TAGS = new Set([0x00380010, 0x00380400, 0x00380500, 0x00380300]);

function isPatientTag(tag: number): boolean {
  return tag >>> 16 === 0x0010 || PATIENT_TAGS.has(tag);
}

const NUMERIC_WIDTH: Readonly<Record<string, number>> = {
  US: 2,
  SS: 2,
  UL: 4,
  SL: 4,
  FL: 4,
  FD: 8,
  SV: 8,
  UV: 8,
  AT: 4,
};
/** String VRs that hold a single value, in which a backslash is text. */
const SINGLE_VALUE_VRS = new Set(['ST', 'LT', 'UT', 'UR']);

interface Context {
  readonly includePatient: boolean;
  readonly maxValueLength: number;
  readonly maxDepth: number;
  readonly pixelRepresentation: number | undefined;
  readonly onWarning: ((message: string) => void) | undefined;
}

function tagOf(key: string): number {
  return Number.parseInt(key.slice(1), 16) >>> 0;
}

/** dcmjs writes pseudo-VRs for attributes whose VR depends on context (PS3.5 A.1 c, PS3.6 notes). In implicit
 * VR data sets they resolve as the transfer syntax and pixel representation dictate. */
function dictionaryVr(vr: string, pixelRepresentation: number | undefined): string {
  switch (vr) {
    case 'ox':
    case 'lt':
      return 'OW';
    case 'xs':
      return pixelRepresentation === 1 ? 'SS' : 'US';
    case 'up':
      return 'UL';
    default:
      return vr;
  }
}

/**
 * The VR an element of an implicit VR data set has, for writing it with explicit VRs: PS3.6's, with the
 * context-dependent ones resolved as implicit VR data resolves them (OW for Pixel Data and LUT data, US or SS by
 * PixelRepresentation). Group lengths are UL and private creators LO; undefined for a tag PS3.6 does not list.
 */
export function implicitVrOf(tag: number, pixelRepresentation: number | undefined): string | undefined {
  if ((tag & 0xffff) === 0) return 'UL';
  const group = tag >>> 16;
  if (group % 2 === 1 && (tag & 0xffff) >= 0x0010 && (tag & 0xffff) <= 0x00ff) return 'LO';
  const entry = lookup(tag);
  return entry ? dictionaryVr(entry.vr, pixelRepresentation) : undefined;
}

function resolveVr(
  element: Element,
  entry: DictionaryEntry | undefined,
  pixelRepresentation: number | undefined,
): string {
  if (element.items) return 'SQ';
  const explicit = element.vr;
  if (explicit && explicit !== 'UN') return explicit;
  const known = entry ? dictionaryVr(entry.vr, pixelRepresentation) : undefined;
  // UN keeps the bytes of a VR the writer did not know; text reads the same in any byte order, so a string VR
  // from the dictionary is safe to apply (numbers are not: UN does not say whose byte order its bytes are in).
  if (explicit === 'UN') return known && STRING_VRS.has(known) ? known : 'UN';
  return known ?? 'UN';
}

function truncate(text: string, max: number): string {
  return text.length > max ? `${text.slice(0, max)}…` : text;
}

const latin1 = new TextDecoder('latin1');

function readNumbers(ds: DataSet, element: Element, vr: string, count: number): Array<number | string> {
  const parser = ds.byteArrayParser;
  const b = ds.byteArray;
  const littleEndian = parser === dicomParser.littleEndianByteArrayParser;
  const values: Array<number | string> = [];
  for (let i = 0; i < count; i++) {
    const at = element.dataOffset + i * NUMERIC_WIDTH[vr]!;
    switch (vr) {
      case 'US':
        values.push(parser.readUint16(b, at));
        break;
      case 'SS':
        values.push(parser.readInt16(b, at));
        break;
      case 'UL':
        values.push(parser.readUint32(b, at));
        break;
      case 'SL':
        values.push(parser.readInt32(b, at));
        break;
      case 'FL':
        values.push(parser.readFloat(b, at));
        break;
      case 'FD':
        values.push(parser.readDouble(b, at));
        break;
      case 'AT':
        values.push(tagText(((parser.readUint16(b, at) << 16) | parser.readUint16(b, at + 2)) >>> 0));
        break;
      default: {
        // SV and UV: JSON has no 64-bit integers, so values past 2^53 are printed as decimal strings.
        const view = new DataView(b.buffer, b.byteOffset + at, 8);
        const big = vr === 'SV' ? view.getBigInt64(0, littleEndian) : view.getBigUint64(0, littleEndian);
        values.push(
          big <= BigInt(Number.MAX_SAFE_INTEGER) && big >= BigInt(Number.MIN_SAFE_INTEGER)
            ? Number(big)
            : big.toString(),
        );
      }
    }
  }
  return values;
}

/** IS and DS as numbers; a value that is not a number stays text rather than being guessed at. */
function numberFromString(value: string, vr: string): number | string {
  if (value === '') return value;
  const n = vr === 'IS' ? Number.parseInt(value, 10) : Number.parseFloat(value);
  return Number.isFinite(n) && /^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/.test(value) ? n : value;
}

function single(values: Array<string | number>): DicomAttributeValue {
  if (values.length === 0) return null;
  return values.length === 1 ? values[0]! : values;
}

/** A string element's values: the character set applied (PN, SH, LO, ST, LT, UT, UC); one value for ST, LT, UT and
 * UR, in which a backslash is text and leading spaces count; else split at backslashes, each trimmed. Undefined
 * for an empty value. */
function stringValues(
  bytes: Uint8Array,
  vr: string,
  charset: string | undefined,
  where: string,
  onWarning: ((message: string) => void) | undefined,
): string[] | undefined {
  const text = CHARSET_VRS.has(vr)
    ? decodeDicomText(bytes, charset, {
        vr,
        onWarning: onWarning ? (message) => onWarning(`${where}: ${message}`) : undefined,
      })
    : latin1.decode(bytes);
  if (SINGLE_VALUE_VRS.has(vr)) {
    // Trailing spaces are padding.
    const value = text.replace(/[ \0]+$/, '');
    return value === '' ? undefined : [value];
  }
  const parts = text.split('\\').map((v) => v.replace(/^[ \0]+|[ \0]+$/g, ''));
  return parts.length === 1 && parts[0] === '' ? undefined : parts;
}

function stringValue(
  bytes: Uint8Array,
  vr: string,
  charset: string | undefined,
  where: string,
  ctx: Context,
): DicomAttributeValue {
  const parts = stringValues(bytes, vr, charset, where, ctx.onWarning);
  if (!parts) return null;
  if (SINGLE_VALUE_VRS.has(vr)) return truncate(parts[0]!, ctx.maxValueLength);
  if (parts.length > ctx.maxValueLength) return { vr, length: bytes.length };
  const values = parts.map((v) =>
    vr === 'IS' || vr === 'DS' ? numberFromString(v, vr) : truncate(v, ctx.maxValueLength),
  );
  return single(values);
}

function elementValue(
  ds: DataSet,
  element: Element,
  vr: string,
  charset: string | undefined,
  where: string,
  depth: number,
  ctx: Context,
): DicomAttributeValue {
  if (vr === 'SQ') {
    const items = element.items ?? [];
    if (depth >= ctx.maxDepth || items.length > ctx.maxValueLength) return { vr: 'SQ', items: items.length };
    return items.map((item, i) =>
      item.dataSet ? dataSetAttributes(item.dataSet, charset, `${where}[${i}]`, depth + 1, ctx) : {},
    );
  }
  const end = element.dataOffset + element.length;
  // Encapsulated pixel data, and values cut short by the end of the file, are only described.
  if (element.hadUndefinedLength || end > ds.byteArray.length || element.length < 0) {
    return { vr, length: element.length };
  }
  if (BINARY_VRS.has(vr) || element.tag === TAG.PixelData) return { vr, length: element.length };
  const width = NUMERIC_WIDTH[vr];
  if (width !== undefined) {
    const count = Math.floor(element.length / width);
    if (count > ctx.maxValueLength) return { vr, length: element.length };
    return single(readNumbers(ds, element, vr, count));
  }
  if (STRING_VRS.has(vr)) {
    return stringValue(ds.byteArray.subarray(element.dataOffset, end), vr, charset, where, ctx);
  }
  return { vr, length: element.length };
}

/** An item may name its own character set; otherwise the enclosing data set's applies (PS3.5 7.5.3). */
function charsetOf(ds: DataSet, inherited: string | undefined): string | undefined {
  const own = ds.elements[TAG.SpecificCharacterSet];
  return own && own.length > 0 && own.dataOffset + own.length <= ds.byteArray.length
    ? latin1.decode(ds.byteArray.subarray(own.dataOffset, own.dataOffset + own.length)).trim()
    : inherited;
}

/** The data set's keys in tag order. */
function sortedKeys(ds: DataSet): string[] {
  return Object.keys(ds.elements).sort((a, b) => tagOf(a) - tagOf(b));
}

function dataSetAttributes(
  ds: DataSet,
  inheritedCharset: string | undefined,
  path: string,
  depth: number,
  ctx: Context,
): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  const charset = charsetOf(ds, inheritedCharset);
  for (const key of sortedKeys(ds)) {
    const element = ds.elements[key]!;
    const tag = tagOf(key);
    if (!ctx.includePatient && isPatientTag(tag)) continue;
    // Item and sequence delimiters never carry values.
    if (tag >>> 16 === 0xfffe) continue;
    const entry = entryOf(tag);
    let name = entry?.keyword ?? tagText(tag);
    // Repeating groups share one keyword; the second overlay, for example, keeps its tag as its name.
    if (name in out) name = tagText(tag);
    const vr = resolveVr(element, entry, ctx.pixelRepresentation);
    out[name] = elementValue(ds, element, vr, charset, `${path}(${tagText(tag)})`, depth, ctx);
  }
  return out;
}

/**
 * The instance's data elements by PS3.6 keyword (private and unknown tags as 'GGGG,EEEE'), values decoded by
 * VR: numbers for US, SS, UL, SL, FL, FD, SV, UV, IS and DS; strings for text (Specific Character Set applied to
 * PN, SH, LO, ST, LT, UT, UC); arrays for several values; arrays of objects for sequences; `{ vr, length }` for
 * binary values and pixel data; null for empty values. TransferSyntaxUID comes first, from the file meta or from
 * the encoding the parser found. Patient demographics are left out unless `includePatient` is set.
 */
export function dicomAttributes(
  instance: DicomInstance,
  opts: DicomAttributesOptions = {},
): Record<string, unknown> {
  const ctx: Context = {
    includePatient: opts.includePatient ?? false,
    maxValueLength: Math.max(1, opts.maxValueLength ?? 1024),
    maxDepth: Math.max(0, opts.maxDepth ?? 8),
    pixelRepresentation: instance.pixelRepresentation,
    onWarning: opts.onWarning,
  };
  return {
    TransferSyntaxUID: instance.transferSyntaxUid,
    ...dataSetAttributes(instance.dataSet, instance.specificCharacterSet, '', 0, ctx),
  };
}

// ---- DICOM JSON (PS3.18 Annex F.2) -------------------------------------------------------------------------

/** One attribute in the DICOM JSON Model. */
export interface DicomJsonAttribute {
  vr: string;
  Value?: unknown[];
  InlineBinary?: string;
  BulkDataURI?: string;
}

export type DicomJson = Record<string, DicomJsonAttribute>;

export interface DicomJsonOptions {
  /** Binary values (OB, OW, OF, OD, OL, OV, UN) up to this many bytes go inline, base64. Default 1024. */
  maxInlineBinary?: number;
  /**
   * The URI of a value the JSON does not carry: longer binary values, and the top-level pixel data. `path` names
   * the value from the top-level data set: tags as eight hex digits, with the 0-based item index between a
   * sequence's tag and a tag inside it (`00400275/0/00081150`). Without it those values are left out.
   */
  bulkDataUri?: (path: string) => string;
  /** Decoding problems (bad bytes for the character set), each naming the attribute, never its value. */
  onWarning?: (message: string) => void;
}

const PIXEL_DATA_TAGS = new Set([0x7fe00010, 0x7fe00008, 0x7fe00009]);

function jsonText(
  bytes: Uint8Array,
  vr: string,
  charset: string | undefined,
  where: string,
  ctx: JsonContext,
): unknown[] | undefined {
  const parts = stringValues(bytes, vr, charset, where, ctx.onWarning);
  if (!parts || SINGLE_VALUE_VRS.has(vr)) return parts;
  return parts.map((v): unknown => {
    if (v === '') return null;
    if (vr === 'IS' || vr === 'DS') return numberFromString(v, vr);
    if (vr === 'PN') {
      // Alphabetic, ideographic and phonetic groups, each left out when empty (F.2.2).
      const [alphabetic, ideographic, phonetic] = v.split('=');
      return {
        ...(alphabetic ? { Alphabetic: alphabetic } : {}),
        ...(ideographic ? { Ideographic: ideographic } : {}),
        ...(phonetic ? { Phonetic: phonetic } : {}),
      };
    }
    return v;
  });
}

interface JsonContext {
  readonly maxInlineBinary: number;
  readonly bulkDataUri: ((path: string) => string) | undefined;
  readonly pixelRepresentation: number | undefined;
  readonly onWarning: ((message: string) => void) | undefined;
}

function jsonValue(
  ds: DataSet,
  element: Element,
  vr: string,
  charset: string | undefined,
  where: string,
  bulkPath: string,
  ctx: JsonContext,
): DicomJsonAttribute | undefined {
  if (vr === 'SQ') {
    return {
      vr,
      Value: (element.items ?? []).map((item, i) =>
        item.dataSet ? dataSetJson(item.dataSet, charset, `${where}[${i}]`, `${bulkPath}/${i}/`, ctx) : {},
      ),
    };
  }
  const end = element.dataOffset + element.length;
  if (element.hadUndefinedLength || end > ds.byteArray.length || element.length < 0) return undefined;
  if (element.length === 0) return { vr };
  const bytes = ds.byteArray.subarray(element.dataOffset, end);
  if (vr === 'AT') {
    const values = readNumbers(ds, element, 'AT', Math.floor(element.length / 4));
    return { vr, Value: values.map((v) => String(v).replace(',', '')) };
  }
  const width = NUMERIC_WIDTH[vr];
  if (width !== undefined)
    return { vr, Value: readNumbers(ds, element, vr, Math.floor(element.length / width)) };
  if (STRING_VRS.has(vr)) {
    const Value = jsonText(bytes, vr, charset, where, ctx);
    return Value ? { vr, Value } : { vr };
  }
  if (BINARY_VRS.has(vr) && element.length <= ctx.maxInlineBinary) {
    // F.2.7: inline binary is little endian whatever the file's byte order.
    const le = littleEndianValue(bytes, vr, ds.byteArrayParser === dicomParser.littleEndianByteArrayParser);
    return { vr, InlineBinary: Buffer.from(le.buffer, le.byteOffset, le.byteLength).toString('base64') };
  }
  if (BINARY_VRS.has(vr) && ctx.bulkDataUri) return { vr, BulkDataURI: ctx.bulkDataUri(bulkPath) };
  return undefined;
}

function dataSetJson(
  ds: DataSet,
  inheritedCharset: string | undefined,
  path: string,
  bulkPrefix: string,
  ctx: JsonContext,
): DicomJson {
  const out: DicomJson = {};
  const charset = charsetOf(ds, inheritedCharset);
  for (const key of sortedKeys(ds)) {
    const element = ds.elements[key]!;
    const tag = tagOf(key);
    const group = tag >>> 16;
    // The file meta is not part of the data set, group lengths are not kept (F.2), and delimiters carry nothing.
    if (group === 0x0002 || group === 0xfffe || (tag & 0xffff) === 0) continue;
    const vr = resolveVr(element, entryOf(tag), ctx.pixelRepresentation);
    const hex = key.slice(1).toUpperCase();
    const where = `${path}(${tagText(tag)})`;
    // The top-level pixel data is named by a bulk data URI whether or not it was read (a header read stops
    // inside it; encapsulated, it has no length).
    const value =
      bulkPrefix === '' && PIXEL_DATA_TAGS.has(tag)
        ? ctx.bulkDataUri && { vr, BulkDataURI: ctx.bulkDataUri(hex) }
        : jsonValue(ds, element, vr, charset, where, `${bulkPrefix}${hex}`, ctx);
    if (value) out[hex] = value;
  }
  return out;
}

/**
 * The instance's data set in the DICOM JSON Model (PS3.18 F.2), as DICOMweb metadata answers carry it: keys are
 * tags as eight hex digits, values by VR (numbers for IS, DS and the binary number VRs, SV and UV past 2^53 as
 * decimal strings; PN as Alphabetic/Ideographic/Phonetic groups; AT as tags; sequences as arrays of data sets;
 * small binary values inline, base64, little endian; longer ones and the top-level pixel data as a BulkDataURI
 * when `bulkDataUri` is given). Left out: the file meta, group lengths, values the file cuts short, and without
 * `bulkDataUri` the values it would name.
 */
export function dicomJson(instance: DicomInstance, opts: DicomJsonOptions = {}): DicomJson {
  return dataSetJson(instance.dataSet, instance.specificCharacterSet, '', '', {
    maxInlineBinary: Math.max(0, opts.maxInlineBinary ?? 1024),
    bulkDataUri: opts.bulkDataUri,
    pixelRepresentation: instance.pixelRepresentation,
    onWarning: opts.onWarning,
  });
}

/** A bulk data path (`bulkDataUri`'s): tags as eight hex digits, item indices between them. */
const BULK_PATH = /^[0-9A-Fa-f]{8}(\/(0|[1-9][0-9]{0,5})\/[0-9A-Fa-f]{8})*$/;

export function isBulkDataPath(path: string): boolean {
  return BULK_PATH.test(path);
}

/**
 * The binary value a bulk data path names, little endian as PS3.18 sends bulk data (F.2.7), with its VR; undefined
 * when the data set has no such value (or it is a sequence, text, or cut short). Pixel data at the top level is
 * not read here: its frames are.
 */
export function bulkDataValue(
  instance: DicomInstance,
  path: string,
): { vr: string; bytes: Uint8Array } | undefined {
  if (!isBulkDataPath(path)) return undefined;
  const steps = path.split('/');
  let ds: DataSet | undefined = instance.dataSet;
  for (let i = 0; i + 1 < steps.length; i += 2) {
    const items: Element['items'] = ds.elements[`x${steps[i]!.toLowerCase()}`]?.items;
    ds = items?.[Number(steps[i + 1])]?.dataSet;
    if (!ds) return undefined;
  }
  const key = `x${steps[steps.length - 1]!.toLowerCase()}`;
  const element = ds.elements[key];
  if (!element || element.hadUndefinedLength || element.length < 0) return undefined;
  const vr = resolveVr(element, entryOf(tagOf(key)), instance.pixelRepresentation);
  const end = element.dataOffset + element.length;
  if (!BINARY_VRS.has(vr) || end > ds.byteArray.length) return undefined;
  return {
    vr,
    bytes: littleEndianValue(
      ds.byteArray.subarray(element.dataOffset, end),
      vr,
      ds.byteArrayParser === dicomParser.littleEndianByteArrayParser,
    ),
  };
}
