/**
 * DICOM Part 10 files and bare data sets → typed metadata plus the parsed data set for pixel extraction.
 * Element parsing is dicom-parser's; this module decides where the data set starts and how it is encoded
 * (file meta, or DCMTK-style guessing when there is none), bounds-checks what dicom-parser does not, and turns
 * every failure into an AppError.
 */

import { inflateRawSync } from 'node:zlib';
import type { ByteArrayParser, ByteStream, DataSet, Element } from 'dicom-parser';
import dicomParser from 'dicom-parser';
import { AppError, isAppError } from '../../errors.js';
import type { PatientInfo } from '../types.js';
import { decodeDicomText } from './charset.js';
import { clampOverrunningLengths } from './clamp-lengths.js';
import { formatTag, TAG } from './tags.js';
import {
  DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN,
  describeTransferSyntax,
  EXPLICIT_VR_BIG_ENDIAN,
  EXPLICIT_VR_LITTLE_ENDIAN,
  IMPLICIT_VR_LITTLE_ENDIAN,
} from './transfer-syntax.js';
import { LONG_LENGTH_VRS, VRS } from './vr.js';

export interface DicomInstance {
  /** From the file meta; for files without one, the encoding the data set was found to use. */
  transferSyntaxUid: string;
  sopClassUid?: string | undefined;
  sopInstanceUid?: string | undefined;
  studyInstanceUid?: string | undefined;
  seriesInstanceUid?: string | undefined;
  modality?: string | undefined;
  studyDate?: string | undefined;
  studyTime?: string | undefined;
  studyDescription?: string | undefined;
  seriesDescription?: string | undefined;
  seriesNumber?: number | undefined;
  instanceNumber?: number | undefined;
  bodyPartExamined?: string | undefined;
  accessionNumber?: string | undefined;
  rows?: number | undefined;
  columns?: number | undefined;
  /** 1 when the file has no NumberOfFrames. */
  numberOfFrames: number;
  photometricInterpretation?: string | undefined;
  bitsAllocated?: number | undefined;
  bitsStored?: number | undefined;
  highBit?: number | undefined;
  pixelRepresentation?: number | undefined;
  samplesPerPixel?: number | undefined;
  planarConfiguration?: number | undefined;
  /** Pixel Padding Value (0028,0120) and Range Limit (0028,0121): stored values that mark pixels outside the
   * image (a CT's corners beyond its field of view), left out of the automatic window. */
  pixelPaddingValue?: number | undefined;
  pixelPaddingRangeLimit?: number | undefined;
  rescaleSlope?: number | undefined;
  rescaleIntercept?: number | undefined;
  windowCenter?: number | undefined;
  windowWidth?: number | undefined;
  /** Presentation LUT Shape (2050,0020): IDENTITY or INVERSE when the file says, which then decides the display
   * polarity instead of the photometric interpretation. */
  presentationLutShape?: string | undefined;
  specificCharacterSet?: string | undefined;
  totalPixelMatrixColumns?: number | undefined;
  totalPixelMatrixRows?: number | undefined;
  isWaveform: boolean;
  hasPixelData: boolean;
  /** Pixel Data runs past the end of the file; metadata is complete, frames past the cut are not. */
  pixelDataTruncated: boolean;
  /** Where the cut Pixel Data element's tag starts, when pixelDataTruncated: a reader by byte range
   * (read-frame-by-range.ts) goes on from there. */
  truncatedPixelDataOffset?: number | undefined;
  hasFileMeta: boolean;
  /** A PS3.10 file: the 128-byte preamble, DICM, then the file meta. A data set without them (some old systems
   * write such files) is read all the same, but a DICOMweb response must be given a file meta first. */
  part10: boolean;
  /** Media Storage SOP Class UID (0002,0002) from the file meta, when there is one. */
  mediaStorageSopClassUid?: string | undefined;
  /** Recoverable oddities met while parsing (for logs: they never contain patient data). */
  warnings: string[];
  patient: PatientInfo;
  /** dicom-parser's data set (its byteArray is the inflated one for deflated files). Not enumerable, so that
   * serialising an instance does not copy the file's bytes. */
  readonly dataSet: DataSet;
  /** Set on the view instanceForFrame returns: the frame whose Per-Frame Functional Groups it reads. */
  readonly frameIndex?: number;
}

/** Media Storage Directory Storage (PS3.10 DICOMDIR): a CD or DVD's index of the files on it, not a study's. */
export const MEDIA_STORAGE_DIRECTORY_SOP_CLASS = '1.2.840.10008.1.3.10';
const DIRECTORY_RECORD_SEQUENCE = 'x00041220';

export interface Encoding {
  readonly explicitVr: boolean;
  readonly littleEndian: boolean;
  readonly deflated: boolean;
}

const IMPLICIT_LE: Encoding = { explicitVr: false, littleEndian: true, deflated: false };
const EXPLICIT_LE: Encoding = { explicitVr: true, littleEndian: true, deflated: false };
const EXPLICIT_BE: Encoding = { explicitVr: true, littleEndian: false, deflated: false };
/** ACR-NEMA's big endian without VRs: no DICOM transfer syntax has it, but DCMTK reads it as a fallback. */
const IMPLICIT_BE: Encoding = { explicitVr: false, littleEndian: false, deflated: false };

function encodingName(e: Encoding): string {
  const base = `${e.explicitVr ? 'explicit' : 'implicit'} VR ${e.littleEndian ? 'little' : 'big'} endian`;
  return e.deflated ? `deflated ${base}` : base;
}

/** The transfer syntax reported for a data set found without one. Implicit VR big endian has none; explicit VR
 * big endian is reported for it, since the byte order is what pixel decoding needs (a warning says so). */
function uidForEncoding(e: Encoding): string {
  if (e.deflated) return DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN;
  if (!e.explicitVr && e.littleEndian) return IMPLICIT_VR_LITTLE_ENDIAN;
  return e.littleEndian ? EXPLICIT_VR_LITTLE_ENDIAN : EXPLICIT_VR_BIG_ENDIAN;
}

export function isVrAt(b: Uint8Array, offset: number): boolean {
  if (offset + 2 > b.length) return false;
  return VRS.has(String.fromCharCode(b[offset]!, b[offset + 1]!));
}

export function hasDicmPrefix(b: Uint8Array): boolean {
  return b.length >= 132 && b[128] === 0x44 && b[129] === 0x49 && b[130] === 0x43 && b[131] === 0x4d;
}

/** True when the first bytes look like DICOM: the Part 10 prefix, or a data set starting with a group 0002 or
 * 0008 element in either byte order. Meant for format sniffing; parseDicom does its own, deeper check. */
export function looksLikeDicom(head: Uint8Array): boolean {
  if (hasDicmPrefix(head)) return true;
  if (head.length < 8) return false;
  const groupLe = head[0]! | (head[1]! << 8);
  const groupBe = (head[0]! << 8) | head[1]!;
  const littleEndian = groupLe === 0x0002 || groupLe === 0x0008;
  const bigEndian = groupBe === 0x0008;
  if (!littleEndian && !bigEndian) return false;
  if (isVrAt(head, 4)) return true;
  // Implicit VR: a 32-bit length that fits a header attribute, in the byte order the group was read in.
  const view = new DataView(head.buffer, head.byteOffset, head.byteLength);
  return view.getUint32(4, littleEndian) < 0x10000;
}

interface FileMeta {
  /** Offset of the first data set byte. */
  end: number;
  transferSyntaxUid: string | undefined;
  mediaStorageSopClassUid: string | undefined;
}

export const latin1 = new TextDecoder('latin1');

export function trimValue(s: string): string {
  return s.replace(/^[\s\0]+|[\s\0]+$/g, '');
}

/** Group 0002 is always explicit VR little endian (PS3.10 7.1); it is read here, not by dicom-parser, so that a
 * meta without the DICM prefix (some files start at byte 0 with it) is handled the same way. */
function readFileMeta(b: Uint8Array, start: number): FileMeta {
  const view = new DataView(b.buffer, b.byteOffset, b.byteLength);
  let pos = start;
  let transferSyntaxUid: string | undefined;
  let mediaStorageSopClassUid: string | undefined;
  while (pos + 8 <= b.length && view.getUint16(pos, true) === 0x0002) {
    const element = view.getUint16(pos + 2, true);
    let dataOffset: number;
    let length: number;
    if (isVrAt(b, pos + 4)) {
      const vr = String.fromCharCode(b[pos + 4]!, b[pos + 5]!);
      if (LONG_LENGTH_VRS.has(vr)) {
        if (pos + 12 > b.length) break;
        length = view.getUint32(pos + 8, true);
        dataOffset = pos + 12;
      } else {
        length = view.getUint16(pos + 6, true);
        dataOffset = pos + 8;
      }
    } else {
      // Some writers put an implicit VR meta; DCMTK accepts it, so do we.
      length = view.getUint32(pos + 4, true);
      dataOffset = pos + 8;
    }
    const where = `file meta element ${formatTag(`x0002${element.toString(16).padStart(4, '0')}`)} at offset ${pos}`;
    if (length === 0xffffffff) {
      throw new AppError('CORRUPT_FILE', `${where} has undefined length`, {
        retryable: false,
        details: { offset: pos },
      });
    }
    if (dataOffset + length > b.length) {
      throw new AppError(
        'CORRUPT_FILE',
        `${where} declares ${length} bytes but only ${b.length - dataOffset} remain`,
        {
          retryable: false,
          details: { offset: pos },
        },
      );
    }
    const value = () => trimValue(latin1.decode(b.subarray(dataOffset, dataOffset + length))) || undefined;
    if (element === 0x0010) transferSyntaxUid = value();
    else if (element === 0x0002) mediaStorageSopClassUid = value();
    pos = dataOffset + length;
  }
  return { end: pos, transferSyntaxUid, mediaStorageSopClassUid };
}

type DataSetConstructor = new (
  parser: ByteArrayParser,
  byteArray: Uint8Array,
  elements: Record<string, Element>,
) => DataSet;
// dicom-parser exports the class at runtime but its typings only describe the instance shape.
const DataSetClass = (dicomParser as unknown as { DataSet: DataSetConstructor }).DataSet;

/**
 * dicom-parser gives the data set of a defined-length sequence item no `warnings`, then pushes to it when
 * something nested inside ends early (a sequence without its delimitation item, an icon's encapsulated pixel
 * data without its delimiter): a TypeError ("reading 'push'") where the top level gets a warning. While
 * parseDataSet runs, such item data sets report into its warnings; a data set given its own keeps it.
 */
let nestedWarnings: string[] | undefined;
Object.defineProperty(DataSetClass.prototype, 'warnings', {
  configurable: true,
  get(): string[] | undefined {
    return nestedWarnings;
  },
  set(this: DataSet, value: string[]) {
    Object.defineProperty(this, 'warnings', { value, writable: true, enumerable: true, configurable: true });
  },
});

interface ParsedDataSet {
  dataSet: DataSet;
  pixelDataTruncated: boolean;
  truncatedPixelDataOffset?: number;
  warnings: string[];
}

function messageOf(err: unknown): string {
  if (err instanceof Error) return err.message;
  if (typeof err === 'string') return err;
  return String(err);
}

/** Reads the top-level elements one at a time so that a failure can name the element and offset, and checks
 * each declared length against the end of the data (dicom-parser seeks past it silently). */
function parseDataSet(
  byteArray: Uint8Array,
  start: number,
  encoding: Encoding,
  label: string,
): ParsedDataSet {
  const parser = encoding.littleEndian
    ? dicomParser.littleEndianByteArrayParser
    : dicomParser.bigEndianByteArrayParser;
  const elements: Record<string, Element> = {};
  const dataSet = new DataSetClass(parser, byteArray, elements);
  const warnings: string[] = [];
  dataSet.warnings = warnings;
  if (start >= byteArray.length) return { dataSet, pixelDataTruncated: false, warnings };

  const outer = nestedWarnings;
  nestedWarnings = warnings;
  try {
    return readTopLevel(dataSet, elements, warnings, byteArray, start, encoding, label);
  } finally {
    nestedWarnings = outer;
  }
}

function readTopLevel(
  dataSet: DataSet,
  elements: Record<string, Element>,
  warnings: string[],
  byteArray: Uint8Array,
  start: number,
  encoding: Encoding,
  label: string,
): ParsedDataSet {
  const parser = dataSet.byteArrayParser;
  const stream = dataSetStream(parser, byteArray, start);
  const end = byteArray.length;
  let previousTag: string | undefined;
  while (stream.position < end) {
    const at = stream.position;
    const peekedTag = at + 4 <= end ? peekTag(byteArray, at, parser) : undefined;
    let element: Element;
    try {
      element = readElement(stream, encoding, peekedTag, warnings);
      if (element.length > end - element.dataOffset && !element.hadUndefinedLength) {
        element = readClamped(stream, at, encoding, peekedTag, warnings) ?? element;
      }
    } catch (err) {
      const clamped = readClamped(stream, at, encoding, peekedTag, warnings);
      if (clamped) {
        elements[clamped.tag] = clamped;
        previousTag = clamped.tag;
        continue;
      }
      if (peekedTag === TAG.PixelData) {
        // The header before Pixel Data is whole; like DCMTK's +Ep, keep it and let frame extraction fail.
        warnings.push(`pixel data at offset ${at} is cut short: ${messageOf(err)}`);
        return { dataSet, pixelDataTruncated: true, truncatedPixelDataOffset: at, warnings };
      }
      const tagText = peekedTag ? ` ${formatTag(peekedTag)}` : '';
      const after = previousTag ? ` after ${formatTag(previousTag)}` : '';
      throw new AppError(
        'CORRUPT_FILE',
        `${label}: element${tagText} at offset ${at}${after} cannot be read: ${messageOf(err)}`,
        {
          retryable: false,
          details: { offset: at, tag: peekedTag, encoding: encodingName(encoding) },
          cause: err,
        },
      );
    }
    elements[element.tag] = element;
    previousTag = element.tag;
    const available = end - element.dataOffset;
    if (element.length > available && !element.hadUndefinedLength) {
      if (element.tag === TAG.PixelData) {
        warnings.push(`pixel data declares ${element.length} bytes but only ${available} remain`);
        return { dataSet, pixelDataTruncated: true, truncatedPixelDataOffset: at, warnings };
      }
      throw new AppError(
        'CORRUPT_FILE',
        `${label}: element ${formatTag(element.tag)} at offset ${at} declares ${element.length} bytes but only ${Math.max(0, available)} remain`,
        { retryable: false, details: { offset: at, tag: element.tag, encoding: encodingName(encoding) } },
      );
    }
  }
  return { dataSet, pixelDataTruncated: false, warnings };
}

/**
 * Reads the sequence at `at` again with the item and sequence lengths that run past the end of the data cut to
 * end there, as DCMTK reads a file that stops on an element boundary inside them (see clamp-lengths.ts). Moves
 * `stream` past it and returns the element, or undefined when no such length is to blame.
 */
function readClamped(
  stream: ByteStream,
  at: number,
  encoding: Encoding,
  peekedTag: string | undefined,
  warnings: string[],
): Element | undefined {
  if (peekedTag === undefined || peekedTag === TAG.PixelData) return undefined;
  const clamped = clampOverrunningLengths(stream.byteArray, at, encoding);
  if (!clamped) return undefined;
  const retry = dataSetStream(stream.byteArrayParser, clamped, at);
  let element: Element;
  try {
    element = readElement(retry, encoding, peekedTag, warnings);
  } catch {
    return undefined;
  }
  if (element.length > clamped.length - element.dataOffset && !element.hadUndefinedLength) return undefined;
  warnings.push(
    `sequence ${formatTag(peekedTag)} at offset ${at} declares more bytes than the file holds; read up to the end of the file, as DCMTK does`,
  );
  stream.seek(retry.position - stream.position);
  return element;
}

function peekTag(b: Uint8Array, at: number, parser: ByteArrayParser): string {
  const group = parser.readUint16(b, at);
  const element = parser.readUint16(b, at + 2);
  return `x${group.toString(16).padStart(4, '0')}${element.toString(16).padStart(4, '0')}`;
}

function readElement(
  stream: ByteStream,
  encoding: Encoding,
  peekedTag: string | undefined,
  warnings: string[],
): Element {
  if (encoding.explicitVr && !encoding.littleEndian) {
    const unknownSequence = readBigEndianUndefinedLengthUn(stream, peekedTag);
    if (unknownSequence) return unknownSequence;
  }
  if (encoding.explicitVr) return dicomParser.readDicomElementExplicit(stream, warnings);
  if (peekedTag === TAG.PixelData && stream.position + 8 <= stream.byteArray.length) {
    const length = stream.byteArrayParser.readUint32(stream.byteArray, stream.position + 4);
    if (length === 0xffffffff) {
      // Encapsulated pixel data in an implicit VR data set is not allowed but is written by some tools;
      // dicom-parser would otherwise take its fragments for sequence items.
      stream.seek(8);
      const element: Element = {
        tag: TAG.PixelData,
        length,
        dataOffset: stream.position,
        hadUndefinedLength: true,
      };
      dicomParser.findEndOfEncapsulatedElement(stream, element, warnings);
      return element;
    }
  }
  const element = dicomParser.readDicomElementImplicit(stream);
  // Without a VR, Pixel Data is OW (PS3.5 A.1): in big endian its bytes come swapped in 16-bit words even for
  // 8-bit samples, and the frame reader goes by this VR.
  if (element.tag === TAG.PixelData && !encoding.littleEndian) element.vr = 'OW';
  return element;
}

/** VRs added to PS3.5 after dicom-parser was written (2017–2019: OV for the Extended Offset Table, SV and UV for
 * 64-bit integers), with a reserved field and a 32-bit length. */
const VERY_LONG_VRS = new Set(['OV', 'SV', 'UV']);

/**
 * A stream over a data set for dicom-parser that reads VERY_LONG_VRS' lengths right. dicom-parser reads those VRs
 * with a 16-bit length, at any depth, and then reads on from the wrong place (a file with an Extended Offset Table
 * failed whole). It reads an explicit element's VR as a 2-character string and its length next; so right after one
 * of these VRs, the 16-bit read of the length becomes the reserved field and a 32-bit length, which is what the
 * bytes hold. Nested sequences are read through the same stream, so they are read right too.
 */
function dataSetStream(parser: ByteArrayParser, bytes: Uint8Array, position: number): ByteStream {
  const stream = new dicomParser.ByteStream(parser, bytes, position);
  const readFixedString = stream.readFixedString.bind(stream);
  const readUint16 = stream.readUint16.bind(stream);
  let longLengthNext = false;
  stream.readFixedString = (length: number) => {
    const text = readFixedString(length);
    longLengthNext = length === 2 && VERY_LONG_VRS.has(text);
    return text;
  };
  stream.readUint16 = () => {
    if (!longLengthNext) return readUint16();
    longLengthNext = false;
    stream.seek(2);
    return stream.readUint32();
  };
  return stream;
}

/** An element with VR UN and undefined length holds a sequence encoded as implicit VR little endian whatever
 * the data set's transfer syntax (CP-246); dicom-parser would read its items in big endian. */
function readBigEndianUndefinedLengthUn(
  stream: ByteStream,
  peekedTag: string | undefined,
): Element | undefined {
  const b = stream.byteArray;
  const at = stream.position;
  if (peekedTag === undefined || at + 12 > b.length || b[at + 4] !== 0x55 || b[at + 5] !== 0x4e)
    return undefined;
  if (stream.byteArrayParser.readUint32(b, at + 8) !== 0xffffffff) return undefined;
  const element: Element = {
    tag: peekedTag,
    vr: 'UN',
    length: 0xffffffff,
    dataOffset: at + 12,
    hadUndefinedLength: true,
  };
  const littleEndian = new dicomParser.ByteStream(dicomParser.littleEndianByteArrayParser, b, at + 12);
  dicomParser.readSequenceItemsImplicit(littleEndian, element);
  stream.seek(littleEndian.position - at);
  return element;
}

/** Candidate encodings for a data set whose encoding is not declared, most likely first. Like DCMTK, the first
 * element decides: a valid VR after the tag means explicit VR, and a tag that reads small only in big endian
 * means big endian. De-identification reads files in the same order. */
export function guessEncodings(b: Uint8Array, start: number): readonly Encoding[] {
  if (isVrAt(b, start + 4)) {
    const bigEndianFirst = b[start] === 0 && b[start + 1] !== 0;
    return bigEndianFirst
      ? [EXPLICIT_BE, EXPLICIT_LE, IMPLICIT_LE, IMPLICIT_BE]
      : [EXPLICIT_LE, IMPLICIT_LE, EXPLICIT_BE, IMPLICIT_BE];
  }
  // No VR: implicit. Read as explicit big endian, a short value's 4-byte length would pass for a VR of two
  // zero bytes and a 2-byte length, so implicit big endian goes before it.
  return b[start] === 0 && b[start + 1] !== 0
    ? [IMPLICIT_BE, IMPLICIT_LE, EXPLICIT_LE, EXPLICIT_BE]
    : [IMPLICIT_LE, EXPLICIT_LE, IMPLICIT_BE, EXPLICIT_BE];
}

/** A data set read under a guessed encoding counts only if it holds an attribute every image or document has;
 * random bytes almost never produce one of these exact tags. */
const IDENTIFYING_TAGS = [
  TAG.SOPClassUID,
  TAG.SOPInstanceUID,
  TAG.StudyInstanceUID,
  TAG.SeriesInstanceUID,
  TAG.Modality,
  TAG.Rows,
  TAG.PixelData,
];

function hasIdentifyingTag(dataSet: DataSet): boolean {
  return IDENTIFYING_TAGS.some((tag) => dataSet.elements[tag] !== undefined);
}

const MAX_INFLATED_BYTES = 1 << 30;

function inflateDataSet(bytes: Uint8Array, start: number): Uint8Array {
  try {
    return inflateRawSync(bytes.subarray(start), { maxOutputLength: MAX_INFLATED_BYTES });
  } catch (err) {
    throw new AppError(
      'CORRUPT_FILE',
      `deflated data set at offset ${start} cannot be inflated: ${messageOf(err)}`,
      {
        retryable: false,
        details: { offset: start },
        cause: err,
      },
    );
  }
}

interface Located {
  parsed: ParsedDataSet;
  encoding: Encoding;
}

function locateDataSet(bytes: Uint8Array, start: number, declared: Encoding | undefined): Located {
  const candidates: Encoding[] = declared ? [declared] : [];
  for (const guess of guessEncodings(bytes, start)) {
    if (
      !candidates.some(
        (c) => c.explicitVr === guess.explicitVr && c.littleEndian === guess.littleEndian && !c.deflated,
      )
    )
      candidates.push(guess);
  }
  let firstError: AppError | undefined;
  for (const encoding of candidates) {
    const isDeclared = encoding === declared;
    try {
      const data = encoding.deflated ? inflateDataSet(bytes, start) : bytes;
      const offset = encoding.deflated ? 0 : start;
      const label = encoding.deflated ? 'inflated data set' : 'data set';
      const parsed = parseDataSet(data, offset, encoding, label);
      if (!isDeclared && !hasIdentifyingTag(parsed.dataSet)) {
        firstError ??= new AppError(
          'UNSUPPORTED_FORMAT',
          `no DICOM data set found at offset ${start} (read as ${encodingName(encoding)})`,
          { retryable: false, details: { offset: start } },
        );
        continue;
      }
      if (declared && !isDeclared) {
        parsed.warnings.push(
          `data set is not ${encodingName(declared)} as its transfer syntax says; read as ${encodingName(encoding)}`,
        );
      }
      return { parsed, encoding };
    } catch (err) {
      if (!isAppError(err)) throw err;
      firstError ??= err;
    }
  }
  throw firstError ?? new AppError('UNSUPPORTED_FORMAT', 'no DICOM data set found', { retryable: false });
}

function encodingForTransferSyntax(uid: string): Encoding {
  const ts = describeTransferSyntax(uid);
  return { explicitVr: ts.explicitVr, littleEndian: ts.littleEndian, deflated: ts.deflated };
}

/** Parses a DICOM file (or bare data set) held in memory. Throws AppError UNSUPPORTED_FORMAT for bytes that
 * are not DICOM and CORRUPT_FILE, naming the element and offset, for DICOM that cannot be read. */
export function parseDicom(bytes: Uint8Array): DicomInstance {
  try {
    return parseUnchecked(bytes);
  } catch (err) {
    if (isAppError(err)) throw err;
    // dicom-parser throws strings, and a deeply nested sequence can exhaust the stack (RangeError).
    throw new AppError('CORRUPT_FILE', `DICOM data set cannot be read: ${messageOf(err)}`, {
      retryable: false,
      cause: err,
    });
  }
}

function parseUnchecked(bytes: Uint8Array): DicomInstance {
  if (bytes.length < 8) {
    throw new AppError('UNSUPPORTED_FORMAT', `not DICOM: only ${bytes.length} bytes`, { retryable: false });
  }
  let metaStart: number | undefined;
  if (hasDicmPrefix(bytes)) metaStart = 132;
  else if (bytes[0] === 0x02 && bytes[1] === 0x00 && isVrAt(bytes, 4)) metaStart = 0;

  const meta = metaStart === undefined ? undefined : readFileMeta(bytes, metaStart);
  const start = meta?.end ?? 0;
  const declaredUid = meta?.transferSyntaxUid;
  const declared = declaredUid ? encodingForTransferSyntax(declaredUid) : undefined;

  let located: Located;
  try {
    located = locateDataSet(bytes, start, declared);
  } catch (err) {
    // Without a file meta, a data set that fails every encoding is corrupt only if it starts like DICOM.
    if (isAppError(err) && metaStart === undefined && !looksLikeDicom(bytes.subarray(0, 256))) {
      throw new AppError('UNSUPPORTED_FORMAT', 'not DICOM: no DICM prefix and no readable data set', {
        retryable: false,
        cause: err,
      });
    }
    throw err;
  }
  const { parsed, encoding } = located;
  const transferSyntaxUid = declaredUid ?? uidForEncoding(encoding);
  if (metaStart !== undefined && !declaredUid) {
    parsed.warnings.push(`file meta has no transfer syntax; read as ${encodingName(encoding)}`);
  }
  if (!encoding.explicitVr && !encoding.littleEndian) {
    parsed.warnings.push(
      'data set is implicit VR big endian (ACR-NEMA), which has no transfer syntax UID; reported as explicit VR big endian',
    );
  }
  const instance = buildInstance(parsed, transferSyntaxUid, metaStart !== undefined);
  instance.part10 = metaStart === 132 && meta?.transferSyntaxUid !== undefined;
  if (meta?.mediaStorageSopClassUid) instance.mediaStorageSopClassUid = meta.mediaStorageSopClassUid;
  return instance;
}

/** A DICOMDIR: its file meta or SOP class says Media Storage Directory, or it holds directory records. */
export function isMediaDirectory(instance: DicomInstance): boolean {
  return (
    instance.mediaStorageSopClassUid === MEDIA_STORAGE_DIRECTORY_SOP_CLASS ||
    instance.sopClassUid === MEDIA_STORAGE_DIRECTORY_SOP_CLASS ||
    instance.dataSet.elements[DIRECTORY_RECORD_SEQUENCE] !== undefined
  );
}

// ---- value readers -------------------------------------------------------------------------------------

function elementBytes(ds: DataSet, tag: string): Uint8Array | undefined {
  const el = ds.elements[tag];
  if (!el || el.hadUndefinedLength || el.length <= 0) return undefined;
  const end = el.dataOffset + el.length;
  if (end > ds.byteArray.length) return undefined;
  return ds.byteArray.subarray(el.dataOffset, end);
}

/** A value of a VR limited to the default repertoire (UI, CS, DA, TM, IS, DS, AS); padding trimmed. */
function readAscii(ds: DataSet, tag: string): string | undefined {
  const bytes = elementBytes(ds, tag);
  if (!bytes) return undefined;
  return trimValue(latin1.decode(bytes)) || undefined;
}

function firstValue(value: string | undefined): string | undefined {
  if (value === undefined) return undefined;
  return trimValue(value.split('\\')[0] ?? '') || undefined;
}

/** A value of a VR the Specific Character Set applies to; decoding problems become warnings (naming the tag,
 * never the text, which may be a patient's name). */
function readText(
  ds: DataSet,
  tag: string,
  vr: string,
  charset: string | undefined,
  warnings: string[],
): string | undefined {
  const bytes = elementBytes(ds, tag);
  if (!bytes) return undefined;
  const onWarning = (message: string) => warnings.push(`${formatTag(tag)}: ${message}`);
  return decodeDicomText(bytes, charset, { vr, onWarning }).trim() || undefined;
}

function readUint16(ds: DataSet, tag: string): number | undefined {
  const el = ds.elements[tag];
  if (!el || el.length < 2 || el.dataOffset + 2 > ds.byteArray.length) return undefined;
  return ds.byteArrayParser.readUint16(ds.byteArray, el.dataOffset);
}

/** A US or SS value whose VR follows Pixel Representation (PS3.3 C.7.5.1.1.2): signed when it is 1. */
function readUsOrSs(ds: DataSet, tag: string, pixelRepresentation: number | undefined): number | undefined {
  const value = readUint16(ds, tag);
  if (value === undefined) return undefined;
  return pixelRepresentation === 1 && value > 0x7fff ? value - 0x10000 : value;
}

function readUint32(ds: DataSet, tag: string): number | undefined {
  const el = ds.elements[tag];
  if (!el || el.length < 4 || el.dataOffset + 4 > ds.byteArray.length) return undefined;
  return ds.byteArrayParser.readUint32(ds.byteArray, el.dataOffset);
}

/** IS: the leading integer of the first value ("1A" reads as 1, as DCMTK does). */
function readIntegerString(ds: DataSet, tag: string): number | undefined {
  const value = firstValue(readAscii(ds, tag));
  if (value === undefined) return undefined;
  const n = Number.parseInt(value, 10);
  return Number.isFinite(n) ? n : undefined;
}

function readDecimalString(ds: DataSet, tag: string): number | undefined {
  const value = firstValue(readAscii(ds, tag));
  if (value === undefined) return undefined;
  const n = Number.parseFloat(value);
  return Number.isFinite(n) ? n : undefined;
}

/** The data set of a sequence's first item. */
export function firstItem(ds: DataSet | undefined, tag: string): DataSet | undefined {
  return ds?.elements[tag]?.items?.[0]?.dataSet;
}

/**
 * The Functional Group Macro items (PS3.3 C.7.6.16) of an enhanced multi-frame object that describe one frame,
 * most specific first: that frame's Per-Frame Functional Groups item, then the Shared one. With no frame, the
 * Shared item alone (what holds for every frame). Empty for objects that have neither.
 */
export function functionalGroupsOf(ds: DataSet, frameIndex: number | undefined): DataSet[] {
  const groups: DataSet[] = [];
  if (frameIndex !== undefined) {
    const perFrame = ds.elements[TAG.PerFrameFunctionalGroupsSequence]?.items?.[frameIndex]?.dataSet;
    if (perFrame) groups.push(perFrame);
  }
  const shared = firstItem(ds, TAG.SharedFunctionalGroupsSequence);
  if (shared) groups.push(shared);
  return groups;
}

/** The first item of `macroTag` (a functional group such as the Frame VOI LUT) in each group, in their order. */
export function functionalGroupItems(groups: readonly DataSet[], macroTag: string): DataSet[] {
  return groups.flatMap((g) => firstItem(g, macroTag) ?? []);
}

/**
 * Rescale and window for the whole instance (`frameIndex` undefined) or one frame. The top level comes first:
 * classic objects keep them there, and DCMTK, the reference renderer, reads nothing else. Enhanced objects
 * keep them in the Pixel Value Transformation and Frame VOI LUT functional groups, per frame or shared.
 */
function pixelValueAttributes(ds: DataSet, frameIndex: number | undefined) {
  const groups = functionalGroupsOf(ds, frameIndex);
  const sources = [
    ds,
    ...functionalGroupItems(groups, TAG.PixelValueTransformationSequence),
    ...functionalGroupItems(groups, TAG.FrameVOILUTSequence),
  ];
  const first = (tag: string): number | undefined => {
    for (const source of sources) {
      const value = readDecimalString(source, tag);
      if (value !== undefined) return value;
    }
    return undefined;
  };
  return {
    rescaleSlope: first(TAG.RescaleSlope),
    rescaleIntercept: first(TAG.RescaleIntercept),
    windowCenter: first(TAG.WindowCenter),
    windowWidth: first(TAG.WindowWidth),
  };
}

/**
 * The instance as frame `frameIndex` sees it: an enhanced multi-frame object can give each frame its own rescale
 * and window (PET and MR often do), and its own pixel spacing. Returns the instance itself when the object has
 * no Per-Frame Functional Groups item for that frame.
 */
export function instanceForFrame(instance: DicomInstance, frameIndex: number): DicomInstance {
  const ds = instance.dataSet;
  if (!ds.elements[TAG.PerFrameFunctionalGroupsSequence]?.items?.[frameIndex]) return instance;
  const view = { ...instance, ...pixelValueAttributes(ds, frameIndex) };
  Object.defineProperty(view, 'dataSet', { value: ds, enumerable: false, writable: false });
  Object.defineProperty(view, 'frameIndex', { value: frameIndex, enumerable: false, writable: false });
  return view as DicomInstance;
}

function hasPixelData(ds: DataSet): boolean {
  const el = ds.elements[TAG.PixelData];
  return el !== undefined && (el.length > 0 || el.hadUndefinedLength === true);
}

function buildInstance(
  parsed: ParsedDataSet,
  transferSyntaxUid: string,
  hasFileMeta: boolean,
): DicomInstance {
  const ds = parsed.dataSet;
  const charset = readAscii(ds, TAG.SpecificCharacterSet);
  const shape = firstValue(readAscii(ds, TAG.PresentationLUTShape))?.toUpperCase();
  const pixelRepresentation = readUint16(ds, TAG.PixelRepresentation);
  const frames = readIntegerString(ds, TAG.NumberOfFrames);
  const instance: Omit<DicomInstance, 'dataSet'> = {
    transferSyntaxUid,
    sopClassUid: readAscii(ds, TAG.SOPClassUID),
    sopInstanceUid: readAscii(ds, TAG.SOPInstanceUID),
    studyInstanceUid: readAscii(ds, TAG.StudyInstanceUID),
    seriesInstanceUid: readAscii(ds, TAG.SeriesInstanceUID),
    modality: firstValue(readAscii(ds, TAG.Modality)),
    studyDate: readAscii(ds, TAG.StudyDate),
    studyTime: readAscii(ds, TAG.StudyTime),
    studyDescription: readText(ds, TAG.StudyDescription, 'LO', charset, parsed.warnings),
    seriesDescription: readText(ds, TAG.SeriesDescription, 'LO', charset, parsed.warnings),
    seriesNumber: readIntegerString(ds, TAG.SeriesNumber),
    instanceNumber: readIntegerString(ds, TAG.InstanceNumber),
    bodyPartExamined: firstValue(readAscii(ds, TAG.BodyPartExamined)),
    accessionNumber: readText(ds, TAG.AccessionNumber, 'SH', charset, parsed.warnings),
    rows: readUint16(ds, TAG.Rows),
    columns: readUint16(ds, TAG.Columns),
    numberOfFrames: frames !== undefined && frames > 0 ? frames : 1,
    photometricInterpretation: firstValue(readAscii(ds, TAG.PhotometricInterpretation)),
    bitsAllocated: readUint16(ds, TAG.BitsAllocated),
    bitsStored: readUint16(ds, TAG.BitsStored),
    highBit: readUint16(ds, TAG.HighBit),
    pixelRepresentation,
    samplesPerPixel: readUint16(ds, TAG.SamplesPerPixel),
    planarConfiguration: readUint16(ds, TAG.PlanarConfiguration),
    pixelPaddingValue: readUsOrSs(ds, TAG.PixelPaddingValue, pixelRepresentation),
    pixelPaddingRangeLimit: readUsOrSs(ds, TAG.PixelPaddingRangeLimit, pixelRepresentation),
    ...pixelValueAttributes(ds, undefined),
    presentationLutShape: shape === 'IDENTITY' || shape === 'INVERSE' ? shape : undefined,
    specificCharacterSet: charset,
    totalPixelMatrixColumns: readUint32(ds, TAG.TotalPixelMatrixColumns),
    totalPixelMatrixRows: readUint32(ds, TAG.TotalPixelMatrixRows),
    isWaveform: ds.elements[TAG.WaveformSequence] !== undefined,
    hasPixelData: hasPixelData(ds) || parsed.pixelDataTruncated,
    pixelDataTruncated: parsed.pixelDataTruncated,
    truncatedPixelDataOffset: parsed.truncatedPixelDataOffset,
    hasFileMeta,
    part10: false,
    warnings: parsed.warnings,
    patient: {
      name: readText(ds, TAG.PatientName, 'PN', charset, parsed.warnings),
      id: readText(ds, TAG.PatientID, 'LO', charset, parsed.warnings),
      birthDate: readAscii(ds, TAG.PatientBirthDate),
      sex: firstValue(readAscii(ds, TAG.PatientSex)),
    },
  };
  Object.defineProperty(instance, 'dataSet', { value: ds, enumerable: false, writable: false });
  return instance as DicomInstance;
}
