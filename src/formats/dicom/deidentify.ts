/**
 * De-identification of one DICOM instance: PS3.15 Annex E Basic Application Level Confidentiality Profile with
 * the Retain Longitudinal Temporal Information with Modified Dates Option and the Clean Descriptors Option.
 *
 * The data set is read into a tree whose values are views of the input bytes, the actions of Table E.1-1
 * (deidentify-profile.ts) are applied, and the tree is written back in the encoding it was read in. Everything the
 * profile does not touch, Pixel Data above all (native or encapsulated, fragments and offset table included),
 * leaves byte for byte as it came. The file meta is written anew: the input's may name the sending station.
 *
 * Choices the standard leaves open:
 * - X/Z becomes Z and X/D, Z/D, X/Z/D become D (see basicOperation), so a Type 1 or 2 attribute never goes missing;
 *   a Type 3 sequence marked X/Z is removed, since an empty one is invalid. An empty value stays empty under D.
 * - Modified Dates: every DA and DT value in the data set moves by the same whole number of days, so all
 *   intervals hold. Whole days leave TM values and time-zone offsets as they were.
 * - Clean Descriptors: a descriptor (StudyDescription, SeriesDescription, ProtocolName …) keeps its text after
 *   removing what identifies: every value that the profile removes or replaces elsewhere in the same data set
 *   (patient and physician names, IDs, institution, addresses …), dates, numbers of five digits or more, phone
 *   numbers, e-mail addresses and honorific-plus-name. If nothing readable is left, the Basic Profile action
 *   applies. Code sequences marked C keep their codes; their text is cleaned the same way.
 * - D on a sequence keeps its items, applies the table inside them, and replaces their free text (PN, LT, ST, UT).
 * - Group lengths, command elements (group 0000) and whole overlay and curve groups are dropped.
 * - PatientName and PatientID carry the caller's pseudonym, and are added if the input had none.
 * - Inputs that cannot give a whole copy are refused with CORRUPT_FILE: truncated or unterminated values, and
 *   instances without a SOP Instance UID (the copy could not be linked back to its original).
 * - Burned-in annotation is not cleaned: a BurnedInAnnotation of YES is reported as BURNED_IN_ANNOTATION_WARNING
 *   so that the caller can refuse to send the copy.
 */
import { deflateRawSync } from 'node:zlib';
import { AppError } from '../../errors.js';
import { decodeDicomText } from './charset.js';
import {
  ascii,
  ByteSink,
  type DataElement,
  type Encoding,
  fileMeta,
  formatTag,
  guard,
  IMPLICIT_LE,
  type Item,
  type Located,
  locateDataSet,
  padText,
  TAG_DIRECTORY_RECORD_SEQUENCE,
  writeElements,
} from './data-set-tree.js';

export { TELEREAD_IMPLEMENTATION_CLASS_UID, TELEREAD_IMPLEMENTATION_VERSION_NAME } from './data-set-tree.js';

import {
  DATE_ATTRIBUTE_VR,
  DEIDENTIFICATION_METHOD_CODES,
  FREE_TEXT_ATTRIBUTE_VR,
  type ProfileOperation,
  resolveProfileAction,
} from './deidentify-profile.js';
import { latin1, MEDIA_STORAGE_DIRECTORY_SOP_CLASS, trimValue } from './parse-dicom.js';
import { TEXT_VRS, VRS } from './vr.js';

export interface DeidentifyOptions {
  /** Replacement for an original UID; must return the same replacement for the same original (within a study at
   * least) so that references between instances survive. Synchronous: fetch mappings first (see collectUids). */
  mapUid: (uid: string) => string;
  /** Written to PatientName and PatientID. Printable ASCII only, so it is valid in every character set. */
  pseudonym: { patientName: string; patientId: string };
  /** Whole days added to every date (negative moves them back). */
  dateShiftDays: number;
}

export interface DeidentifyResult {
  bytes: Uint8Array;
  warnings: string[];
  /** Every UID replaced in this instance: original → replacement. */
  replacedUids: Record<string, string>;
}

/** In `warnings` when BurnedInAnnotation (0028,0301) is YES: the pixels may show what the header no longer does. */
export const BURNED_IN_ANNOTATION_WARNING =
  'BurnedInAnnotation is YES: the pixel data may show identifying text, which is not removed';

// ---- tags ---------------------------------------------------------------------------------------------------

const TAG_SPECIFIC_CHARACTER_SET = 0x00080005;
const TAG_SOP_CLASS_UID = 0x00080016;
const TAG_SOP_INSTANCE_UID = 0x00080018;
const TAG_CODE_VALUE = 0x00080100;
const TAG_CODING_SCHEME_DESIGNATOR = 0x00080102;
const TAG_CODE_MEANING = 0x00080104;
const TAG_PATIENT_NAME = 0x00100010;
/** A DICOMDIR's byte offsets of records (PS3.3 F.3.2.1): the root's first and last, and in each record its next
 * sibling, its first child and (retired) its multi-referenced file record. */
const DIRECTORY_ROOT_OFFSETS = new Set([0x00041200, 0x00041202]);
const DIRECTORY_RECORD_OFFSETS = new Set([0x00041400, 0x00041420, 0x00041504]);
const TAG_PATIENT_ID = 0x00100020;
const TAG_PATIENT_BIRTH_DATE = 0x00100030;
const TAG_PATIENT_IDENTITY_REMOVED = 0x00120062;
const TAG_DEIDENTIFICATION_METHOD = 0x00120063;
const TAG_DEIDENTIFICATION_METHOD_CODE_SEQUENCE = 0x00120064;
const TAG_BURNED_IN_ANNOTATION = 0x00280301;
const TAG_LONGITUDINAL_TEMPORAL_INFORMATION_MODIFIED = 0x00280303;

/** Attributes this module writes itself at the top level; earlier values (a previous de-identification) go. */
const WRITTEN_HERE = new Set([
  TAG_PATIENT_IDENTITY_REMOVED,
  TAG_DEIDENTIFICATION_METHOD,
  TAG_DEIDENTIFICATION_METHOD_CODE_SEQUENCE,
  TAG_LONGITUDINAL_TEMPORAL_INFORMATION_MODIFIED,
]);

const FREE_TEXT_VRS = new Set(['PN', 'LT', 'ST', 'UT']);

// ---- value helpers ------------------------------------------------------------------------------------------

const highByteTables = new Map<string, Map<string, number>>();

/** Characters that one byte above 0x7F stands for under a character set (the single-byte sets), found by
 * decoding each byte: the inverse of the decoder, so that the two cannot disagree. */
function highByteTable(charset: string): Map<string, number> {
  let table = highByteTables.get(charset);
  if (!table) {
    table = new Map();
    for (let b = 0x80; b < 0x100; b++) {
      const ch = decodeDicomText(Uint8Array.of(b), charset);
      if (ch.length === 1 && ch !== '\ufffd' && !table.has(ch)) table.set(ch, b);
    }
    highByteTables.set(charset, table);
  }
  return table;
}

/** Encodes text in the data set's character set: ASCII as is, UTF-8 for ISO_IR 192, single-byte sets through
 * their decoder's inverse. Undefined when the result would not decode back to the same text (sets with code
 * extensions, characters the set lacks): the caller then falls back to the Basic Profile action. */
function encodeText(text: string, charset: string | undefined, vr: string): Uint8Array | undefined {
  if (/^[\x20-\x7e\r\n\t\f]*$/.test(text)) return ascii(text);
  if (!charset) return undefined;
  let bytes: Uint8Array;
  if (/ISO_IR 192/i.test(charset)) {
    bytes = new TextEncoder().encode(text);
  } else {
    const table = highByteTable(charset);
    const out: number[] = [];
    for (const ch of text) {
      const code = ch.codePointAt(0) ?? 0;
      const b = code < 0x80 ? code : table.get(ch);
      if (b === undefined) return undefined;
      out.push(b);
    }
    bytes = Uint8Array.from(out);
  }
  return decodeDicomText(bytes, charset, { vr }) === text ? bytes : undefined;
}

const DUMMY_TEXT = 'ANONYMIZED';

/** D: a value of the same VR that says nothing (PS3.15 E.1.1: non-zero length, consistent with the VR). */
function dummyValue(vr: string, original: Uint8Array): Uint8Array {
  switch (vr) {
    case 'DA':
      return ascii('19000101');
    case 'DT':
      return ascii('19000101000000');
    case 'TM':
      return ascii('000000');
    case 'DS':
    case 'IS':
      return ascii('0 ');
    case 'AS':
      return ascii('000D');
    case 'PN':
      // A name without a component delimiter reads as the retired free-form PN to validators.
      return padText(ascii(`${DUMMY_TEXT}^`), vr);
    default:
      if (TEXT_VRS.has(vr)) return ascii(DUMMY_TEXT);
      // Binary values keep their length so that their VM does not change.
      return new Uint8Array(Math.max(2, original.length + (original.length % 2)));
  }
}

const DAY_MS = 86_400_000;

function shiftYmd(year: number, month: number, day: number, days: number): Date | undefined {
  if (month < 1 || month > 12 || day < 1 || day > 31) return undefined;
  const t = Date.UTC(year, month - 1, day);
  const check = new Date(t);
  // Date.UTC accepts 31 February; a date that does not exist is not shifted.
  if (check.getUTCMonth() !== month - 1 || check.getUTCDate() !== day) return undefined;
  const shifted = new Date(t + days * DAY_MS);
  const y = shifted.getUTCFullYear();
  return y >= 0 && y <= 9999 ? shifted : undefined;
}

const pad = (n: number, width: number) => String(n).padStart(width, '0');
const formatDa = (d: Date) =>
  `${pad(d.getUTCFullYear(), 4)}${pad(d.getUTCMonth() + 1, 2)}${pad(d.getUTCDate(), 2)}`;

function shiftDa(value: string, days: number): string | undefined {
  const m = /^(\d{4})\.?(\d{2})\.?(\d{2})$/.exec(value);
  if (!m) return undefined;
  const shifted = shiftYmd(Number(m[1]), Number(m[2]), Number(m[3]), days);
  return shifted ? formatDa(shifted) : undefined;
}

/** DT keeps its precision: a year-only or year-and-month value is shifted from its first day and written back
 * to the same precision; the time and the UTC offset are kept. */
function shiftDt(value: string, days: number): string | undefined {
  const m = /^(\d{4})(\d{2})?(\d{2})?([0-9.]*)([+-]\d{4})?$/.exec(value);
  if (!m) return undefined;
  const shifted = shiftYmd(Number(m[1]), Number(m[2] ?? '1'), Number(m[3] ?? '1'), days);
  if (!shifted) return undefined;
  const full = formatDa(shifted);
  const date = m[3] !== undefined ? full : m[2] !== undefined ? full.slice(0, 6) : full.slice(0, 4);
  return `${date}${m[4] ?? ''}${m[5] ?? ''}`;
}

/** Shifts every value of a DA (ranges too) or DT; undefined if any value is not a date. */
function shiftDateText(text: string, vr: 'DA' | 'DT', days: number): string | undefined {
  const out: string[] = [];
  for (const raw of text.split('\\')) {
    const v = raw.trim();
    if (v === '') {
      out.push('');
      continue;
    }
    if (vr === 'DT') {
      const s = shiftDt(v, days);
      if (s === undefined) return undefined;
      out.push(s);
      continue;
    }
    const parts = v.includes('-') ? v.split('-') : [v];
    if (parts.length > 2) return undefined;
    const shifted = parts.map((p) => (p === '' ? '' : shiftDa(p, days)));
    if (shifted.some((s) => s === undefined)) return undefined;
    out.push(shifted.join('-'));
  }
  return out.join('\\');
}

// ---- clean descriptors --------------------------------------------------------------------------------------

/** Honorific and the word after it ("Dr. Smith", "DR. SMITH", "Mrs Jones"), taken first so that removing a known
 * name does not leave the honorific to swallow the next word. Without a period only the title-case forms count:
 * in capitals, MR, MRS, MS and DR are far more often modalities, spectroscopy or a diagnosis. */
const HONORIFIC_AND_NAME =
  /\b(?:[Dd][Rr]|[Mm][Rr][Ss]?|[Mm][Ss]|[Mm]iss|[Pp]rof)\.\s*[\p{L}'^-]+|\b(?:Dr|Mrs?|Ms|Miss|Prof)\s+\p{Lu}[\p{L}'^-]*/gu;

const GENERIC_IDENTIFIERS: readonly RegExp[] = [
  /[\p{L}\p{N}._%+-]+@[\p{L}\p{N}-]+(?:\.[\p{L}\p{N}-]+)+/gu, // e-mail
  /\b\d{1,4}[./-]\d{1,2}[./-]\d{1,4}\b/gu, // dates with separators
  // Phone numbers: three groups with at least nine digits ("24 512 512", a matrix, is not one), or 555-0100.
  /\+?\(?\d{2,4}\)?[\s-]\d{3,4}[\s-]\d{4,5}\b/gu,
  /\b\d{3}-\d{4}\b/gu,
  /\d{5,}/gu, // IDs, compact dates, phone numbers
];

function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/** The identifying words and phrases of one data set, as one pattern matched on word boundaries. */
function identifierPattern(phrases: Set<string>): RegExp | undefined {
  const list = [...phrases].filter((p) => p.length >= 2).sort((x, y) => y.length - x.length);
  if (list.length === 0) return undefined;
  return new RegExp(`(?<![\\p{L}\\p{N}])(?:${list.map(escapeRegExp).join('|')})(?![\\p{L}\\p{N}])`, 'giu');
}

function scrubText(text: string, identifiers: RegExp | undefined): string | undefined {
  let out = text.replace(HONORIFIC_AND_NAME, ' ');
  if (identifiers) out = out.replace(identifiers, ' ');
  for (const pattern of GENERIC_IDENTIFIERS) out = out.replace(pattern, ' ');
  out = out
    .split('\\')
    .map((v) =>
      v
        .replace(/[ \t]{2,}/g, ' ')
        .replace(/^[\s,;:()/^-]+|[\s,;:(/^-]+$/g, '')
        .trim(),
    )
    .join('\\');
  return /[\p{L}\p{N}]/u.test(out) ? out : undefined;
}

// ---- the transformation -------------------------------------------------------------------------------------

interface Context {
  readonly mapUid: (uid: string) => string;
  readonly dateShiftDays: number;
  readonly pseudonym: { patientName: string; patientId: string };
  readonly charset: string | undefined;
  readonly identifiers: RegExp | undefined;
  readonly replaced: Map<string, string>;
  readonly warnings: Set<string>;
}

/** `directory`: inside a DICOMDIR's directory records, where Z gives a dummy value (PS3.15 allows either) since
 * their keys are Type 1 there (a Study record's Study ID, say) though Type 2 in the instances. */
type Mode = 'normal' | 'dummy' | 'directory';

/** The VR that gives a value its meaning: the file's, unless it is UN or absent (implicit VR). */
function meaningVr(el: DataElement, knownVr: string | undefined): string | undefined {
  if (el.vr !== undefined && el.vr !== 'UN' && VRS.has(el.vr)) return el.vr;
  return knownVr ?? (el.sequence ? 'SQ' : el.vr);
}

function withValue(el: DataElement, value: Uint8Array): DataElement {
  return { tag: el.tag, vr: el.vr, offset: el.offset, value };
}

function withItems(el: DataElement, items: Item[]): DataElement {
  const sequence = el.sequence ?? { items: [], undefinedLength: true, encoding: IMPLICIT_LE };
  return { tag: el.tag, vr: el.vr, offset: el.offset, sequence: { ...sequence, items } };
}

function mapOneUid(uid: string, ctx: Context): string {
  const known = ctx.replaced.get(uid);
  if (known !== undefined) return known;
  const replacement = ctx.mapUid(uid);
  if (typeof replacement !== 'string' || replacement.length > 64 || !/^\d+(\.\d+)*$/.test(replacement)) {
    throw new AppError('VALIDATION_FAILED', 'mapUid returned a value that is not a UID', {
      retryable: false,
    });
  }
  ctx.replaced.set(uid, replacement);
  return replacement;
}

function replaceUids(el: DataElement, ctx: Context): DataElement {
  if (!el.value) return el;
  const text = trimValue(latin1.decode(el.value));
  if (text === '') return el;
  const mapped = text
    .split('\\')
    .map((u) => trimValue(u))
    .map((u) => (u === '' ? '' : mapOneUid(u, ctx)))
    .join('\\');
  return withValue(el, padText(ascii(mapped), 'UI'));
}

function shiftDates(el: DataElement, vr: 'DA' | 'DT', ctx: Context): DataElement {
  if (!el.value || el.value.length === 0) return el;
  const text = trimValue(latin1.decode(el.value));
  if (text === '') return el;
  const shifted = shiftDateText(text, vr, ctx.dateShiftDays);
  if (shifted === undefined) {
    // A value that does not parse as a date cannot be shifted, and might still be one: it goes.
    ctx.warnings.add(`${formatTag(el.tag)} holds a ${vr} value that is not a valid date; emptied`);
    return withValue(el, new Uint8Array(0));
  }
  return withValue(el, padText(ascii(shifted), vr));
}

function decodeText(el: DataElement, vr: string, ctx: Context): string {
  return decodeDicomText(el.value ?? new Uint8Array(0), ctx.charset, { vr });
}

function applyOperation(
  el: DataElement,
  operation: ProfileOperation,
  vr: string | undefined,
  ctx: Context,
  depth: number,
): DataElement | undefined {
  switch (operation) {
    case 'remove':
      return undefined;
    case 'empty':
      return el.sequence || vr === 'SQ' ? emptySequence(el) : withValue(el, new Uint8Array(0));
    case 'dummy':
      if (el.sequence) return withItems(el, transformItems(el.sequence.items, ctx, 'dummy', depth));
      if (vr === 'SQ') return emptySequence(el);
      if (vr === 'UI') return replaceUids(el, ctx);
      if (el.encapsulated) return undefined;
      // A value that was empty stays empty: an empty value identifies no one and keeps the input's validity.
      if (!el.value || el.value.length === 0) return el;
      return withValue(el, dummyValue(vr ?? 'UN', el.value));
    case 'replaceUid':
      return replaceUids(el, ctx);
    case 'keepReplaceUids':
      if (el.sequence) return withItems(el, transformItems(el.sequence.items, ctx, 'normal', depth));
      return emptySequence(el);
    case 'shiftDates':
    case 'clean':
      // Never passed in: transformElement applies the options' C itself and falls back to a Basic Profile action.
      return el;
  }
}

/** A sequence emptied, or a sequence stored as an opaque UN value replaced by a zero-length value. */
function emptySequence(el: DataElement): DataElement {
  if (el.sequence) return withItems(el, []);
  return withValue(el, new Uint8Array(0));
}

function transformElement(el: DataElement, ctx: Context, mode: Mode, depth: number): DataElement | undefined {
  const tag = el.tag;
  const group = tag >>> 16;
  // Group lengths are retired and would be wrong once values change; command elements do not belong in files.
  if ((tag & 0xffff) === 0 || group === 0x0000 || group === 0x0002) return undefined;
  if (tag === TAG_PATIENT_NAME) return withValue(el, padText(ascii(ctx.pseudonym.patientName), 'PN'));
  if (tag === TAG_PATIENT_ID) return withValue(el, padText(ascii(ctx.pseudonym.patientId), 'LO'));

  const action = resolveProfileAction(tag);
  const dateVr = DATE_ATTRIBUTE_VR.get(tag);
  const vr = meaningVr(el, action?.attribute?.vr ?? dateVr ?? FREE_TEXT_ATTRIBUTE_VR.get(tag));

  if (action) {
    if (action.operation === 'shiftDates') {
      if (vr === 'DA' || vr === 'DT') return shiftDates(el, vr, ctx);
      // TM (and the UTC offset) are unchanged by a shift of whole days.
      if (vr === 'TM' || tag === 0x00080201) return el;
      return applyOperation(el, action.fallback, vr, ctx, depth);
    }
    if (action.operation === 'clean') {
      if (el.sequence) return withItems(el, transformItems(el.sequence.items, ctx, mode, depth));
      if (vr !== undefined && TEXT_VRS.has(vr) && el.value) {
        const text = decodeText(el, vr, ctx);
        if (text.trim() === '') return el;
        const cleaned = scrubText(text, ctx.identifiers);
        if (cleaned === text) return el;
        const encoded = cleaned === undefined ? undefined : encodeText(cleaned, ctx.charset, vr);
        if (encoded) return withValue(el, padText(encoded, vr));
      }
      return applyOperation(el, action.fallback, vr, ctx, depth);
    }
    const operation =
      mode === 'directory' && action.operation === 'empty' && !el.sequence && vr !== 'SQ'
        ? 'dummy'
        : action.operation;
    return applyOperation(el, operation, vr, ctx, depth);
  }

  if (el.sequence) {
    const itemMode = tag === TAG_DIRECTORY_RECORD_SEQUENCE ? 'directory' : mode;
    return withItems(el, transformItems(el.sequence.items, ctx, itemMode, depth));
  }
  if (vr === 'DA' || vr === 'DT') return shiftDates(el, vr, ctx);
  if (mode === 'dummy' && vr !== undefined && FREE_TEXT_VRS.has(vr) && el.value && el.value.length > 0) {
    return withValue(el, dummyValue(vr, el.value));
  }
  return el;
}

function transformElements(elements: DataElement[], ctx: Context, mode: Mode, depth: number): DataElement[] {
  const out: DataElement[] = [];
  for (const el of elements) {
    const result = transformElement(el, ctx, mode, depth);
    if (result) out.push(result);
  }
  return out;
}

function transformItems(items: Item[], ctx: Context, mode: Mode, depth: number): Item[] {
  return items.map((item) => ({
    elements: transformElements(item.elements, ctx, mode, depth + 1),
    undefinedLength: item.undefinedLength,
    offset: item.offset,
  }));
}

/** Every value the profile removes or replaces, so that descriptors can be cleaned of them. */
function collectIdentifiers(
  elements: DataElement[],
  charset: string | undefined,
  phrases: Set<string>,
): void {
  for (const el of elements) {
    if (el.sequence) {
      for (const item of el.sequence.items) collectIdentifiers(item.elements, charset, phrases);
      continue;
    }
    if (!el.value || el.value.length === 0) continue;
    const action = resolveProfileAction(el.tag);
    const attribute = action?.attribute;
    const identifying =
      el.tag === TAG_PATIENT_NAME ||
      el.tag === TAG_PATIENT_ID ||
      (attribute !== undefined && ['remove', 'empty', 'dummy'].includes(action?.operation ?? ''));
    if (!identifying) continue;
    const vr = meaningVr(el, attribute?.vr);
    if (vr === undefined || !TEXT_VRS.has(vr) || vr === 'CS') continue;
    if (el.tag === TAG_PATIENT_BIRTH_DATE || vr === 'DA') {
      const d = /^(\d{4})(\d{2})(\d{2})$/.exec(trimValue(latin1.decode(el.value)));
      if (d)
        for (const form of [
          `${d[1]}${d[2]}${d[3]}`,
          `${d[1]}-${d[2]}-${d[3]}`,
          `${d[3]}/${d[2]}/${d[1]}`,
          `${d[2]}/${d[3]}/${d[1]}`,
          `${d[3]}.${d[2]}.${d[1]}`,
        ])
          phrases.add(form);
      continue;
    }
    const text = decodeDicomText(el.value, charset, { vr });
    for (const value of text.split('\\')) {
      const v = value.trim();
      if (v.length >= 3) phrases.add(v);
      // Names are matched word by word ("John Smith" for SMITH^JOHN); other values by their longer words.
      const minimum = vr === 'PN' ? 2 : 4;
      for (const word of v.split(/[\s^=,]+/)) if (word.length >= minimum) phrases.add(word);
    }
  }
}

function checkOptions(opts: DeidentifyOptions): void {
  if (!Number.isInteger(opts.dateShiftDays) || Math.abs(opts.dateShiftDays) > 366 * 200) {
    throw new AppError('VALIDATION_FAILED', 'dateShiftDays must be a whole number of days', {
      retryable: false,
    });
  }
  const { patientName, patientId } = opts.pseudonym;
  const printable = /^[\x20-\x5b\x5d-\x7e]*$/;
  if (!printable.test(patientName) || patientName.length > 64) {
    throw new AppError(
      'VALIDATION_FAILED',
      'pseudonym patientName must be printable ASCII, at most 64 characters',
      {
        retryable: false,
      },
    );
  }
  if (!printable.test(patientId) || patientId.length > 64) {
    throw new AppError(
      'VALIDATION_FAILED',
      'pseudonym patientId must be printable ASCII, at most 64 characters',
      {
        retryable: false,
      },
    );
  }
}

function topLevelText(elements: DataElement[], tag: number): string | undefined {
  const el = elements.find((e) => e.tag === tag);
  if (!el?.value) return undefined;
  return trimValue(latin1.decode(el.value)) || undefined;
}

interface Transformed {
  elements: DataElement[];
  located: Located;
  sopClassUid: string | undefined;
  sopInstanceUid: string;
  warnings: string[];
  replaced: Map<string, string>;
}

function deidentifyTree(bytes: Uint8Array, opts: DeidentifyOptions): Transformed {
  checkOptions(opts);
  const readWarnings: string[] = [];
  const located = locateDataSet(bytes, readWarnings);
  const meta = located.meta;
  const top = located.elements;
  const charset = topLevelText(top, TAG_SPECIFIC_CHARACTER_SET);
  const originalSopInstanceUid = topLevelText(top, TAG_SOP_INSTANCE_UID) ?? meta?.sopInstanceUid;
  if (!originalSopInstanceUid) {
    throw new AppError('CORRUPT_FILE', 'no SOP Instance UID (0008,0018) in the data set or its file meta', {
      retryable: false,
    });
  }
  const phrases = new Set<string>();
  collectIdentifiers(top, charset, phrases);
  const ctx: Context = {
    mapUid: opts.mapUid,
    dateShiftDays: opts.dateShiftDays,
    pseudonym: opts.pseudonym,
    charset,
    identifiers: identifierPattern(phrases),
    replaced: new Map(),
    warnings: new Set(readWarnings),
  };
  if (topLevelText(top, TAG_BURNED_IN_ANNOTATION)?.toUpperCase() === 'YES')
    ctx.warnings.add(BURNED_IN_ANNOTATION_WARNING);

  const kept = transformElements(
    top.filter((e) => !WRITTEN_HERE.has(e.tag)),
    ctx,
    'normal',
    0,
  );
  const sopInstanceUid = mapOneUid(originalSopInstanceUid, ctx);
  const added = deidentificationElements();
  // The pseudonym is how the reader and the hub speak of the patient; PatientName and PatientID are Type 2 in
  // the Patient module, so they are added where the input left them out.
  for (const [tag, vr, value] of [
    [TAG_PATIENT_NAME, 'PN', opts.pseudonym.patientName],
    [TAG_PATIENT_ID, 'LO', opts.pseudonym.patientId],
  ] as const) {
    if (!kept.some((e) => e.tag === tag))
      added.push({ tag, vr, offset: -1, value: padText(ascii(value), vr) });
  }
  const elements = [...kept, ...added].sort((x, y) => x.tag - y.tag);
  return {
    elements,
    located,
    sopClassUid: topLevelText(top, TAG_SOP_CLASS_UID) ?? meta?.sopClassUid,
    sopInstanceUid,
    warnings: [...ctx.warnings],
    replaced: ctx.replaced,
  };
}

/** PatientIdentityRemoved, DeidentificationMethod and its code sequence (CID 7050), and the Modified Dates
 * flag (PS3.15 E.3.6: LongitudinalTemporalInformationModified = MODIFIED). */
function deidentificationElements(): DataElement[] {
  const text = (tag: number, vr: string, value: string): DataElement => ({
    tag,
    vr,
    offset: -1,
    value: padText(ascii(value), vr),
  });
  return [
    text(TAG_PATIENT_IDENTITY_REMOVED, 'CS', 'YES'),
    text(
      TAG_DEIDENTIFICATION_METHOD,
      'LO',
      DEIDENTIFICATION_METHOD_CODES.map((c) => c.codeMeaning).join('\\'),
    ),
    {
      tag: TAG_DEIDENTIFICATION_METHOD_CODE_SEQUENCE,
      vr: 'SQ',
      offset: -1,
      sequence: {
        undefinedLength: true,
        // The encoding is the data set's; writeElement uses its own for sequences created here.
        encoding: IMPLICIT_LE,
        items: DEIDENTIFICATION_METHOD_CODES.map((c) => ({
          undefinedLength: true,
          elements: [
            text(TAG_CODE_VALUE, 'SH', c.codeValue),
            text(TAG_CODING_SCHEME_DESIGNATOR, 'SH', c.codingSchemeDesignator),
            text(TAG_CODE_MEANING, 'LO', c.codeMeaning),
          ],
        })),
      },
    },
    text(TAG_LONGITUDINAL_TEMPORAL_INFORMATION_MODIFIED, 'CS', 'MODIFIED'),
  ];
}

// ---- public API ---------------------------------------------------------------------------------------------

/**
 * De-identifies one DICOM instance (Part 10 file or bare data set) and returns a Part 10 file in the same
 * transfer syntax. Throws AppError UNSUPPORTED_FORMAT for bytes that are not DICOM, CORRUPT_FILE for DICOM that
 * cannot be read whole, VALIDATION_FAILED for bad options.
 */
export function deidentifyDicom(bytes: Uint8Array, opts: DeidentifyOptions): DeidentifyResult {
  const { parts, warnings, replacedUids } = deidentifyDicomParts(bytes, opts);
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return { bytes: out, warnings, replacedUids };
}

export interface DeidentifyParts extends Omit<DeidentifyResult, 'bytes'> {
  /** The copy's bytes in order. A value the profile keeps as it came (Pixel Data above all) is a view of the
   * input, at its offset there, so a caller that read the input only in part (read-frame-by-range.ts) can send
   * such a view's bytes from the stored file instead. */
  parts: Uint8Array[];
}

/** deidentifyDicom without joining the copy into one buffer: a large instance's copy can be streamed. */
export function deidentifyDicomParts(bytes: Uint8Array, opts: DeidentifyOptions): DeidentifyParts {
  return guard(() => {
    const t = deidentifyTree(bytes, opts);
    const rewrite = t.located.rewrite;
    const encoding = rewrite?.encoding ?? t.located.encoding;
    const meta = fileMeta(t.sopClassUid, t.sopInstanceUid, t.located.transferSyntaxUid);
    let data = new ByteSink();
    const records = new Map<number, number>();
    writeElements(data, t.elements, encoding, rewrite?.vrOf, records);
    if (t.sopClassUid === MEDIA_STORAGE_DIRECTORY_SOP_CLASS && !t.located.deflated) {
      // Records point at one another by byte offset from the start of the file, and new values moved them all:
      // the offsets are set to where the records now start and the data set written again. The offsets are
      // 4-byte values, so the second writing puts every record where the first did.
      const moved = new Map([...records].map(([from, to]) => [from, meta.length + to]));
      data = new ByteSink();
      writeElements(data, relinkDirectory(t.elements, moved, encoding, t.warnings), encoding, rewrite?.vrOf);
    }
    const dataSet = t.located.deflated ? [new Uint8Array(deflateRawSync(data.toBytes()))] : data.parts();
    return { parts: [meta, ...dataSet], warnings: t.warnings, replacedUids: Object.fromEntries(t.replaced) };
  });
}

/** The DICOMDIR's record offsets, each set to where the record it names now starts (0, "none", stays 0). */
function relinkDirectory(
  elements: DataElement[],
  moved: Map<number, number>,
  enc: Encoding,
  warnings: string[],
): DataElement[] {
  const relink = (el: DataElement): DataElement => {
    if (el.value?.length !== 4) return el;
    const view = new DataView(el.value.buffer, el.value.byteOffset, 4);
    const from = view.getUint32(0, enc.littleEndian);
    if (from === 0) return el;
    const to = moved.get(from);
    if (to === undefined) {
      warnings.push(
        `${formatTag(el.tag)} points at offset ${from}, where no directory record starts; set to 0`,
      );
    }
    const value = new Uint8Array(4);
    new DataView(value.buffer).setUint32(0, to ?? 0, enc.littleEndian);
    return withValue(el, value);
  };
  return elements.map((el) => {
    if (DIRECTORY_ROOT_OFFSETS.has(el.tag)) return relink(el);
    if (el.tag !== TAG_DIRECTORY_RECORD_SEQUENCE || !el.sequence) return el;
    const items = el.sequence.items.map((item) => ({
      ...item,
      elements: item.elements.map((e) => (DIRECTORY_RECORD_OFFSETS.has(e.tag) ? relink(e) : e)),
    }));
    return withItems(el, items);
  });
}

/**
 * The UIDs that deidentifyDicom will ask `mapUid` for, in the order it asks: the caller creates (or looks up)
 * their replacements in one batch, then calls deidentifyDicom with a synchronous lookup.
 */
export function collectUids(bytes: Uint8Array): string[] {
  return guard(() => {
    const seen: string[] = [];
    deidentifyTree(bytes, {
      mapUid: (uid) => {
        seen.push(uid);
        return '2.25.0';
      },
      pseudonym: { patientName: '', patientId: '' },
      dateShiftDays: 0,
    });
    return seen;
  });
}
