/**
 * A DICOM data set as a tree of elements whose values are views of the input bytes, read in the encoding its
 * transfer syntax names (with DCMTK's fallbacks), and written back out: the common ground of the tools that
 * rewrite instances (deidentify.ts changes values, transcode.ts changes the encoding).
 */
import { inflateRawSync } from 'node:zlib';
import { AppError, isAppError } from '../../errors.js';
import { implicitVrOf } from './attributes.js';
import { clampOverrunningLengths } from './clamp-lengths.js';
import { guessEncodings, hasDicmPrefix, isVrAt, latin1, looksLikeDicom, trimValue } from './parse-dicom.js';
import {
  describeTransferSyntax,
  EXPLICIT_VR_BIG_ENDIAN,
  EXPLICIT_VR_LITTLE_ENDIAN,
  IMPLICIT_VR_LITTLE_ENDIAN,
} from './transfer-syntax.js';
import { LONG_LENGTH_VRS, VRS } from './vr.js';

/** Teleread's Implementation Class UID (a UUID-derived UID, PS3.5 B.2) and version name for the file meta. */
export const TELEREAD_IMPLEMENTATION_CLASS_UID = '2.25.170411299581508014615865817664643604539';
export const TELEREAD_IMPLEMENTATION_VERSION_NAME = 'TELEREAD_1';

const TAG_PIXEL_REPRESENTATION = 0x00280103;
export const TAG_PIXEL_DATA = 0x7fe00010;
/** A DICOMDIR's records: the writer reports where each now starts, so their offsets can be relinked. */
export const TAG_DIRECTORY_RECORD_SEQUENCE = 0x00041220;
export const ITEM = 0xfffee000;
export const ITEM_DELIMITATION = 0xfffee00d;
export const SEQUENCE_DELIMITATION = 0xfffee0dd;
export const UNDEFINED_LENGTH = 0xffffffff;

/** A data set read under a guessed encoding counts only if it holds one of these (as parse-dicom does):
 * SOP Class and Instance UID, Study and Series Instance UID, Modality, Rows, Pixel Data. */
const IDENTIFYING_TAGS = [
  0x00080016,
  0x00080018,
  0x0020000d,
  0x0020000e,
  0x00080060,
  0x00280010,
  TAG_PIXEL_DATA,
];
export function formatTag(tag: number): string {
  const hex = (tag >>> 0).toString(16).toUpperCase().padStart(8, '0');
  return `(${hex.slice(0, 4)},${hex.slice(4)})`;
}

// ---- data set tree ------------------------------------------------------------------------------------------

export interface Encoding {
  readonly explicitVr: boolean;
  readonly littleEndian: boolean;
}

export const IMPLICIT_LE: Encoding = { explicitVr: false, littleEndian: true };
export const EXPLICIT_LE: Encoding = { explicitVr: true, littleEndian: true };
export const EXPLICIT_BE: Encoding = { explicitVr: true, littleEndian: false };

export interface DataElement {
  readonly tag: number;
  /** The VR written in the file; undefined in implicit VR data sets. */
  readonly vr: string | undefined;
  /** Where the element's header starts, for messages. */
  readonly offset: number;
  readonly value?: Uint8Array | undefined;
  readonly sequence?: Sequence | undefined;
  /** An undefined-length value that is not a sequence (encapsulated Pixel Data): its items and the sequence
   * delimiter exactly as read. */
  readonly encapsulated?: Uint8Array | undefined;
}

export interface Sequence {
  readonly items: Item[];
  readonly undefinedLength: boolean;
  /** Items of a UN sequence of undefined length are implicit VR little endian whatever the data set (CP-246). */
  readonly encoding: Encoding;
}

export interface Item {
  readonly elements: DataElement[];
  readonly undefinedLength: boolean;
  /** Where the item's tag starts in the input: a DICOMDIR's records point at one another by this offset. */
  readonly offset?: number | undefined;
}

const MAX_DEPTH = 64;
const MAX_INFLATED_BYTES = 1 << 30;

// ---- reading ------------------------------------------------------------------------------------------------

export class Reader {
  readonly view: DataView;
  constructor(
    readonly bytes: Uint8Array,
    readonly label: string,
  ) {
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }

  u16(at: number, littleEndian: boolean): number {
    return this.view.getUint16(at, littleEndian);
  }

  u32(at: number, littleEndian: boolean): number {
    return this.view.getUint32(at, littleEndian);
  }

  tag(at: number, littleEndian: boolean): number {
    return ((this.u16(at, littleEndian) << 16) | this.u16(at + 2, littleEndian)) >>> 0;
  }

  corrupt(message: string, offset: number, tag?: number): AppError {
    const where = tag === undefined ? `at offset ${offset}` : `${formatTag(tag)} at offset ${offset}`;
    return new AppError('CORRUPT_FILE', `${this.label}: ${where}: ${message}`, {
      retryable: false,
      details: { offset, ...(tag === undefined ? {} : { tag: formatTag(tag) }) },
    });
  }
}

export interface ReadResult {
  elements: DataElement[];
  end: number;
}

/** Reads elements from `pos` up to `end`, or up to an item delimiter when `inUndefinedItem`. Every iteration
 * consumes at least eight bytes, so the loop is bounded by the input length. */
export function readElements(
  r: Reader,
  pos: number,
  end: number,
  enc: Encoding,
  depth: number,
  inUndefinedItem: boolean,
): ReadResult {
  if (depth > MAX_DEPTH) throw r.corrupt(`sequences nested deeper than ${MAX_DEPTH}`, pos);
  const elements: DataElement[] = [];
  while (pos < end) {
    if (end - pos < 8) {
      // DCMTK ignores a few zero bytes of padding after the last element; anything else is a cut element.
      if (!inUndefinedItem && r.bytes.subarray(pos, end).every((b) => b === 0)) return { elements, end };
      throw r.corrupt(`${end - pos} bytes left, too few for an element header`, pos);
    }
    const tag = r.tag(pos, enc.littleEndian);
    if (tag === ITEM_DELIMITATION && inUndefinedItem) return { elements, end: pos + 8 };
    if (tag === ITEM_DELIMITATION || tag === SEQUENCE_DELIMITATION) {
      // A stray delimiter after a defined-length item or sequence; DCMTK skips it, and so do we.
      pos += 8;
      continue;
    }
    if (tag === ITEM) throw r.corrupt('item tag outside a sequence', pos, tag);
    const element = readElement(r, pos, end, enc, depth, tag);
    elements.push(element.element);
    pos = element.end;
  }
  if (inUndefinedItem) throw r.corrupt('item of undefined length has no item delimiter', pos);
  return { elements, end: pos };
}

function readElement(
  r: Reader,
  pos: number,
  end: number,
  enc: Encoding,
  depth: number,
  tag: number,
): { element: DataElement; end: number } {
  let vr: string | undefined;
  let length: number;
  let valueStart: number;
  if (enc.explicitVr) {
    const vrText = String.fromCharCode(r.bytes[pos + 4]!, r.bytes[pos + 5]!);
    vr = vrText;
    if (VRS.has(vrText) && LONG_LENGTH_VRS.has(vrText)) {
      if (pos + 12 > end) throw r.corrupt('element header is cut short', pos, tag);
      length = r.u32(pos + 8, enc.littleEndian);
      valueStart = pos + 12;
    } else {
      // An unknown VR is read with a 16-bit length, as dicom-parser (and so parseDicom) reads it.
      length = r.u16(pos + 6, enc.littleEndian);
      valueStart = pos + 8;
    }
  } else {
    length = r.u32(pos + 4, enc.littleEndian);
    valueStart = pos + 8;
  }

  if (length === UNDEFINED_LENGTH) {
    if (tag === TAG_PIXEL_DATA || vr === 'OB' || vr === 'OW') {
      const stop = skipEncapsulated(r, valueStart, end, enc, tag);
      return {
        element: { tag, vr, offset: pos, encapsulated: r.bytes.subarray(valueStart, stop) },
        end: stop,
      };
    }
    if (vr === undefined || vr === 'SQ' || vr === 'UN') {
      const itemEncoding = vr === 'UN' ? IMPLICIT_LE : enc;
      const read = readItems(r, valueStart, end, itemEncoding, depth, true, tag);
      return {
        element: {
          tag,
          vr,
          offset: pos,
          sequence: { items: read.items, undefinedLength: true, encoding: itemEncoding },
        },
        end: read.end,
      };
    }
    throw r.corrupt(`VR ${vr} cannot have an undefined length`, pos, tag);
  }

  const valueEnd = valueStart + length;
  if (valueEnd > end) {
    throw r.corrupt(`declares ${length} bytes but only ${Math.max(0, end - valueStart)} remain`, pos, tag);
  }
  if (vr === 'SQ') {
    const read = readItems(r, valueStart, valueEnd, enc, depth, false, tag);
    return {
      element: {
        tag,
        vr,
        offset: pos,
        sequence: { items: read.items, undefinedLength: false, encoding: enc },
      },
      end: valueEnd,
    };
  }
  // Without a VR (implicit, or UN holding implicit VR little endian) a value that starts with an item tag is a
  // sequence; if it does not read as one it stays an opaque value.
  if ((vr === undefined || vr === 'UN') && length >= 8 && tag !== TAG_PIXEL_DATA) {
    const itemEncoding = vr === 'UN' ? IMPLICIT_LE : enc;
    if (r.tag(valueStart, itemEncoding.littleEndian) === ITEM) {
      try {
        const read = readItems(r, valueStart, valueEnd, itemEncoding, depth, false, tag);
        return {
          element: {
            tag,
            vr,
            offset: pos,
            sequence: { items: read.items, undefinedLength: false, encoding: itemEncoding },
          },
          end: valueEnd,
        };
      } catch (err) {
        if (!isAppError(err)) throw err;
      }
    }
  }
  return { element: { tag, vr, offset: pos, value: r.bytes.subarray(valueStart, valueEnd) }, end: valueEnd };
}

function readItems(
  r: Reader,
  pos: number,
  end: number,
  enc: Encoding,
  depth: number,
  undefinedLength: boolean,
  sequenceTag: number,
): { items: Item[]; end: number } {
  const items: Item[] = [];
  while (pos < end || undefinedLength) {
    if (pos + 8 > end) {
      throw r.corrupt(
        undefinedLength ? 'sequence of undefined length has no delimiter' : 'item header is cut short',
        pos,
        sequenceTag,
      );
    }
    const tag = r.tag(pos, enc.littleEndian);
    if (tag === SEQUENCE_DELIMITATION) {
      if (undefinedLength) return { items, end: pos + 8 };
      pos += 8;
      continue;
    }
    if (tag === ITEM_DELIMITATION) {
      // Written after an item of defined length by some tools (fo-dicom GH223); DCMTK skips it.
      pos += 8;
      continue;
    }
    if (tag !== ITEM)
      throw r.corrupt(`expected an item in sequence, found ${formatTag(tag)}`, pos, sequenceTag);
    const length = r.u32(pos + 4, enc.littleEndian);
    if (length === UNDEFINED_LENGTH) {
      const read = readElements(r, pos + 8, end, enc, depth + 1, true);
      items.push({ elements: read.elements, undefinedLength: true, offset: pos });
      pos = read.end;
    } else {
      const itemEnd = pos + 8 + length;
      if (itemEnd > end)
        throw r.corrupt(`item declares ${length} bytes past the end of its sequence`, pos, sequenceTag);
      const read = readElements(r, pos + 8, itemEnd, enc, depth + 1, false);
      items.push({ elements: read.elements, undefinedLength: false, offset: pos });
      pos = itemEnd;
    }
  }
  return { items, end: pos };
}

/** Finds the end of an encapsulated value: items of defined length up to the sequence delimiter. */
function skipEncapsulated(r: Reader, pos: number, end: number, enc: Encoding, tag: number): number {
  while (pos + 8 <= end) {
    const itemTag = r.tag(pos, enc.littleEndian);
    if (itemTag === SEQUENCE_DELIMITATION) return pos + 8;
    if (itemTag !== ITEM) throw r.corrupt(`expected a fragment, found ${formatTag(itemTag)}`, pos, tag);
    const length = r.u32(pos + 4, enc.littleEndian);
    if (length === UNDEFINED_LENGTH || pos + 8 + length > end) {
      throw r.corrupt('fragment runs past the end of the file', pos, tag);
    }
    pos += 8 + length;
  }
  throw r.corrupt('encapsulated value has no sequence delimiter (file cut short?)', pos, tag);
}

// ---- locating the data set ---------------------------------------------------------------------------------

export interface FileMeta {
  end: number;
  transferSyntaxUid?: string | undefined;
  sopClassUid?: string | undefined;
  sopInstanceUid?: string | undefined;
}

/** Group 0002 is explicit VR little endian (PS3.10 7.1); some writers use implicit VR there, which is accepted. */
export function readFileMeta(r: Reader, start: number): FileMeta {
  const b = r.bytes;
  const meta: FileMeta = { end: start };
  let pos = start;
  while (pos + 8 <= b.length && r.u16(pos, true) === 0x0002) {
    const tag = r.tag(pos, true);
    let length: number;
    let valueStart: number;
    if (isVrAt(b, pos + 4)) {
      const vr = String.fromCharCode(b[pos + 4]!, b[pos + 5]!);
      if (LONG_LENGTH_VRS.has(vr)) {
        if (pos + 12 > b.length) throw r.corrupt('file meta element header is cut short', pos, tag);
        length = r.u32(pos + 8, true);
        valueStart = pos + 12;
      } else {
        length = r.u16(pos + 6, true);
        valueStart = pos + 8;
      }
    } else {
      length = r.u32(pos + 4, true);
      valueStart = pos + 8;
    }
    if (length === UNDEFINED_LENGTH || valueStart + length > b.length) {
      throw r.corrupt('file meta element runs past the end of the file', pos, tag);
    }
    const text = () => trimValue(latin1.decode(b.subarray(valueStart, valueStart + length))) || undefined;
    if (tag === 0x00020010) meta.transferSyntaxUid = text();
    else if (tag === 0x00020002) meta.sopClassUid = text();
    else if (tag === 0x00020003) meta.sopInstanceUid = text();
    pos = valueStart + length;
  }
  meta.end = pos;
  return meta;
}

export interface Located {
  elements: DataElement[];
  encoding: Encoding;
  /** The transfer syntax to write: the declared one when the data set was read as declared. */
  transferSyntaxUid: string;
  deflated: boolean;
  meta: FileMeta | undefined;
  /** Set when the copy is written in another encoding than `encoding`: the VRs to give elements read without. */
  rewrite?: { encoding: Encoding; vrOf: (tag: number) => string | undefined };
}

/** A top-level US value, in the data set's byte order; undefined when absent or malformed. */
export function readUs(elements: DataElement[], tag: number, enc: Encoding): number | undefined {
  const value = elements.find((e) => e.tag === tag)?.value;
  if (!value || value.length < 2) return undefined;
  return new DataView(value.buffer, value.byteOffset, 2).getUint16(0, enc.littleEndian);
}

export function nativeUid(e: Encoding): string {
  if (!e.explicitVr) return IMPLICIT_VR_LITTLE_ENDIAN;
  return e.littleEndian ? EXPLICIT_VR_LITTLE_ENDIAN : EXPLICIT_VR_BIG_ENDIAN;
}

export function sameEncoding(a: Encoding, b: Encoding): boolean {
  return a.explicitVr === b.explicitVr && a.littleEndian === b.littleEndian;
}

function inflate(bytes: Uint8Array, start: number): Uint8Array {
  try {
    return inflateRawSync(bytes.subarray(start), { maxOutputLength: MAX_INFLATED_BYTES });
  } catch (err) {
    throw new AppError('CORRUPT_FILE', `deflated data set at offset ${start} cannot be inflated`, {
      retryable: false,
      cause: err,
      details: { offset: start },
    });
  }
}

/** Reads the data set as its transfer syntax says, falling back (as DCMTK and parseDicom do) to the encoding its
 * first element suggests when the declared one fails. */
export function locateDataSet(bytes: Uint8Array, warnings: string[]): Located {
  if (bytes.length < 8) {
    throw new AppError('UNSUPPORTED_FORMAT', `not DICOM: only ${bytes.length} bytes`, { retryable: false });
  }
  const r = new Reader(bytes, 'data set');
  let metaStart: number | undefined;
  if (hasDicmPrefix(bytes)) metaStart = 132;
  else if (bytes[0] === 0x02 && bytes[1] === 0x00 && isVrAt(bytes, 4)) metaStart = 0;
  const meta = metaStart === undefined ? undefined : readFileMeta(r, metaStart);
  const start = meta?.end ?? 0;
  const declaredUid = meta?.transferSyntaxUid;
  const declared = declaredUid ? describeTransferSyntax(declaredUid) : undefined;

  if (declared?.deflated) {
    const inflated = inflate(bytes, start);
    const elements = readElements(
      new Reader(inflated, 'inflated data set'),
      0,
      inflated.length,
      EXPLICIT_LE,
      0,
      false,
    );
    return {
      elements: elements.elements,
      encoding: EXPLICIT_LE,
      transferSyntaxUid: declared.uid,
      deflated: true,
      meta,
    };
  }

  const candidates: Encoding[] = declared ? [declared] : [];
  for (const guess of guessEncodings(bytes, start)) {
    if (!candidates.some((c) => sameEncoding(c, guess))) candidates.push(guess);
  }
  let firstError: AppError | undefined;
  for (const encoding of candidates) {
    const isDeclared = declared !== undefined && encoding === declared;
    let elements: ReturnType<typeof readElements>['elements'];
    try {
      ({ elements } = readElements(r, start, bytes.length, encoding, 0, false));
    } catch (err) {
      if (!isAppError(err)) throw err;
      // A file that ends on an element boundary inside a sequence item reads up to its end, as DCMTK and
      // parseDicom read it (clamp-lengths.ts).
      const clamped = clampOverrunningLengths(bytes, start, encoding);
      const read =
        clamped &&
        tryRead(() =>
          readElements(new Reader(clamped, 'data set'), start, clamped.length, encoding, 0, false),
        );
      if (!read) {
        firstError ??= err;
        continue;
      }
      warnings.push(
        'a sequence declares more bytes than the file holds; read up to the end of the file, as DCMTK does',
      );
      elements = read.elements;
    }
    if (!isDeclared && !elements.some((e) => IDENTIFYING_TAGS.includes(e.tag))) continue;
    // Read without VRs where they must be written with them: the copy gets VRs from PS3.6, and values keep
    // their byte order.
    const givenVrs = (to: Encoding, transferSyntaxUid: string, why: string): Located => {
      const pixelRepresentation = readUs(elements, TAG_PIXEL_REPRESENTATION, encoding);
      warnings.push(why);
      return {
        elements,
        encoding,
        transferSyntaxUid,
        deflated: false,
        meta,
        rewrite: { encoding: to, vrOf: (tag) => implicitVrOf(tag, pixelRepresentation) },
      };
    };
    if (!encoding.explicitVr && !encoding.littleEndian) {
      // No transfer syntax declares implicit VR big endian (ACR-NEMA): explicit VR big endian keeps the byte
      // order, and Pixel Data stays 16-bit words.
      return givenVrs(
        EXPLICIT_BE,
        EXPLICIT_VR_BIG_ENDIAN,
        'implicit VR big endian (ACR-NEMA) has no transfer syntax; the copy is explicit VR big endian, with VRs from the data dictionary',
      );
    }
    if (declared && !isDeclared && !encoding.explicitVr && declared.explicitVr && declared.littleEndian) {
      // A writer that put an implicit VR data set under an explicit VR transfer syntax (a compressed one, often:
      // the pixel data is encapsulated all the same). Written as read, the copy would be as unreadable to strict
      // readers as the input; written as the transfer syntax says, it is a valid file.
      return givenVrs(
        EXPLICIT_LE,
        declared.uid,
        `data set is implicit VR though its transfer syntax ${declared.uid} says explicit; the copy is explicit VR as it says, with VRs from the data dictionary`,
      );
    }
    if (declared && !isDeclared) {
      warnings.push(`data set is not encoded as its transfer syntax ${declared.uid} says; written as read`);
    }
    return {
      elements,
      encoding,
      transferSyntaxUid: isDeclared && declared ? declared.uid : nativeUid(encoding),
      deflated: false,
      meta,
    };
  }
  if (metaStart === undefined && !looksLikeDicom(bytes.subarray(0, 256))) {
    throw new AppError('UNSUPPORTED_FORMAT', 'not DICOM: no DICM prefix and no readable data set', {
      retryable: false,
      cause: firstError,
    });
  }
  throw (
    firstError ??
    new AppError('CORRUPT_FILE', `no DICOM data set found at offset ${start}`, { retryable: false })
  );
}

/** The result of `read`, or undefined if it throws an AppError. */
export function tryRead<T>(read: () => T): T | undefined {
  try {
    return read();
  } catch (err) {
    if (isAppError(err)) return undefined;
    throw err;
  }
}

export const ascii = (s: string): Uint8Array => Uint8Array.from(s, (c) => c.charCodeAt(0));

/** Pads a text value to even length: NUL for UI, space for the others (PS3.5 6.2). */
export function padText(bytes: Uint8Array, vr: string): Uint8Array {
  if (bytes.length % 2 === 0) return bytes;
  const out = new Uint8Array(bytes.length + 1);
  out.set(bytes);
  out[bytes.length] = vr === 'UI' ? 0 : 0x20;
  return out;
}

// ---- writing ------------------------------------------------------------------------------------------------

export class ByteSink {
  private readonly chunks: Uint8Array[] = [];
  length = 0;

  push(b: Uint8Array): void {
    this.chunks.push(b);
    this.length += b.length;
  }

  u16(v: number, littleEndian: boolean): void {
    const b = new Uint8Array(2);
    new DataView(b.buffer).setUint16(0, v, littleEndian);
    this.push(b);
  }

  u32(v: number, littleEndian: boolean): void {
    const b = new Uint8Array(4);
    new DataView(b.buffer).setUint32(0, v, littleEndian);
    this.push(b);
  }

  tag(tag: number, littleEndian: boolean): void {
    this.u16(tag >>> 16, littleEndian);
    this.u16(tag & 0xffff, littleEndian);
  }

  /** What was pushed, in order (views stay views). */
  parts(): Uint8Array[] {
    return [...this.chunks];
  }

  toBytes(): Uint8Array {
    const out = new Uint8Array(this.length);
    let at = 0;
    for (const c of this.chunks) {
      out.set(c, at);
      at += c.length;
    }
    return out;
  }
}

export function writeHeader(
  sink: ByteSink,
  el: DataElement,
  length: number,
  enc: Encoding,
  vr: string | undefined,
): void {
  sink.tag(el.tag, enc.littleEndian);
  if (!enc.explicitVr) {
    sink.u32(length, enc.littleEndian);
    return;
  }
  const written = vr ?? 'UN';
  sink.push(ascii(written));
  if (VRS.has(written) && LONG_LENGTH_VRS.has(written)) {
    sink.u16(0, enc.littleEndian);
    sink.u32(length, enc.littleEndian);
    return;
  }
  if (length > 0xffff) {
    throw new AppError(
      'INTERNAL',
      `${formatTag(el.tag)}: value of ${length} bytes does not fit VR ${written}`,
      {
        retryable: false,
      },
    );
  }
  sink.u16(length, enc.littleEndian);
}

/** `vrOf` is given when the elements were read without VRs and are written with them (see Located.rewrite). */
export type VrOf = ((tag: number) => string | undefined) | undefined;

/** `records`, given at the top level only, gets where each directory record of a DICOMDIR starts in `sink`,
 * keyed by where it started in the input. */
export function writeElements(
  sink: ByteSink,
  elements: DataElement[],
  enc: Encoding,
  vrOf?: VrOf,
  records?: Map<number, number>,
): void {
  for (const el of elements) writeElement(sink, el, enc, vrOf, records);
}

export function writeElement(
  sink: ByteSink,
  el: DataElement,
  enc: Encoding,
  vrOf: VrOf,
  records?: Map<number, number>,
): void {
  if (el.sequence) {
    // Sequences made here follow the data set; read ones keep theirs (UN sequences are implicit VR LE inside),
    // unless the whole data set is being given VRs (it then has no UN sequences: it had no VRs at all).
    const itemEnc = el.offset < 0 || vrOf ? enc : el.sequence.encoding;
    const body = new ByteSink();
    const itemStarts: number[] = [];
    for (const item of el.sequence.items) {
      itemStarts.push(body.length);
      const content = new ByteSink();
      writeElements(content, item.elements, itemEnc, vrOf);
      body.tag(ITEM, itemEnc.littleEndian);
      body.u32(item.undefinedLength ? UNDEFINED_LENGTH : content.length, itemEnc.littleEndian);
      body.push(content.toBytes());
      if (item.undefinedLength) {
        body.tag(ITEM_DELIMITATION, itemEnc.littleEndian);
        body.u32(0, itemEnc.littleEndian);
      }
    }
    const vr = el.vr ?? 'SQ';
    writeHeader(sink, el, el.sequence.undefinedLength ? UNDEFINED_LENGTH : body.length, enc, vr);
    if (records && el.tag === TAG_DIRECTORY_RECORD_SEQUENCE) {
      el.sequence.items.forEach((item, i) => {
        if (item.offset !== undefined) records.set(item.offset, sink.length + itemStarts[i]!);
      });
    }
    sink.push(body.toBytes());
    if (el.sequence.undefinedLength) {
      sink.tag(SEQUENCE_DELIMITATION, itemEnc.littleEndian);
      sink.u32(0, itemEnc.littleEndian);
    }
    return;
  }
  if (el.encapsulated) {
    writeHeader(sink, el, UNDEFINED_LENGTH, enc, el.vr ?? 'OB');
    sink.push(el.encapsulated);
    return;
  }
  const value = el.value ?? new Uint8Array(0);
  writeHeader(sink, el, value.length, enc, el.vr ?? givenVr(el.tag, value.length, vrOf));
  sink.push(value);
}

/** The VR for an element read without one: the dictionary's; UN for a tag it does not list, a value too long
 * for the dictionary VR's 16-bit length, or a value the dictionary calls a sequence that did not read as one. */
export function givenVr(tag: number, length: number, vrOf: VrOf): string | undefined {
  if (!vrOf) return undefined;
  const vr = vrOf(tag);
  if (vr === undefined || !VRS.has(vr) || (vr === 'SQ' && length > 0)) return 'UN';
  return LONG_LENGTH_VRS.has(vr) || length <= 0xffff ? vr : 'UN';
}

export function fileMeta(
  sopClassUid: string | undefined,
  sopInstanceUid: string | undefined,
  transferSyntaxUid: string,
): Uint8Array {
  const text = (tag: number, vr: string, value: string): DataElement => ({
    tag,
    vr,
    offset: -1,
    value: padText(ascii(value), vr),
  });
  const elements: DataElement[] = [{ tag: 0x00020001, vr: 'OB', offset: -1, value: Uint8Array.of(0, 1) }];
  if (sopClassUid) elements.push(text(0x00020002, 'UI', sopClassUid));
  // Type 1, but an instance without a SOP Instance UID is still rewritten (transcode.ts) rather than refused.
  if (sopInstanceUid) elements.push(text(0x00020003, 'UI', sopInstanceUid));
  elements.push(
    text(0x00020010, 'UI', transferSyntaxUid),
    text(0x00020012, 'UI', TELEREAD_IMPLEMENTATION_CLASS_UID),
    text(0x00020013, 'SH', TELEREAD_IMPLEMENTATION_VERSION_NAME),
  );
  const body = new ByteSink();
  writeElements(body, elements, EXPLICIT_LE);
  const out = new ByteSink();
  out.push(new Uint8Array(128));
  out.push(ascii('DICM'));
  const groupLength = new Uint8Array(4);
  new DataView(groupLength.buffer).setUint32(0, body.length, true);
  writeElement(out, { tag: 0x00020000, vr: 'UL', offset: -1, value: groupLength }, EXPLICIT_LE, undefined);
  out.push(body.toBytes());
  return out.toBytes();
}

export function guard<T>(fn: () => T): T {
  try {
    return fn();
  } catch (err) {
    if (isAppError(err)) throw err;
    // A DataView read past the end or a stack overflow on absurd nesting: still the input's fault.
    throw new AppError(
      'CORRUPT_FILE',
      `DICOM data set cannot be read: ${err instanceof Error ? err.message : String(err)}`,
      {
        retryable: false,
        cause: err,
      },
    );
  }
}
