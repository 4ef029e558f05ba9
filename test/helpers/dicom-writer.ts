/**
 * A small DICOM writer for tests: Part 10 files (or bare data sets) in implicit VR little endian, explicit VR
 * little/big endian and deflated explicit VR little endian, with native or encapsulated pixel data, plus an RLE
 * Lossless encoder. It writes only what the tests need and makes no attempt to validate.
 */
import { deflateRawSync } from 'node:zlib';
import type { PixelArray } from '../../src/formats/dicom/pixel-data.js';
import {
  DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN,
  EXPLICIT_VR_BIG_ENDIAN,
  EXPLICIT_VR_LITTLE_ENDIAN,
  IMPLICIT_VR_LITTLE_ENDIAN,
} from '../../src/formats/dicom/transfer-syntax.js';
import { LONG_LENGTH_VRS, STRING_VRS } from '../../src/formats/dicom/vr.js';

/** implicit-be is ACR-NEMA's big endian without VRs: DICOM has no transfer syntax for it, so write it with
 * `meta: false` (the UID below is only what a reader reports for it). */
export type DicomEncoding = 'implicit-le' | 'explicit-le' | 'explicit-be' | 'implicit-be' | 'deflated';

export const TRANSFER_SYNTAX_FOR: Record<DicomEncoding, string> = {
  'implicit-le': IMPLICIT_VR_LITTLE_ENDIAN,
  'explicit-le': EXPLICIT_VR_LITTLE_ENDIAN,
  'explicit-be': EXPLICIT_VR_BIG_ENDIAN,
  'implicit-be': EXPLICIT_VR_BIG_ENDIAN,
  deflated: DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN,
};

type NumericArray = number[] | PixelArray;

export interface DicomElement {
  /** 0xGGGGEEEE */
  tag: number;
  vr: string;
  /** Strings for text VRs (multiple values joined by backslash), numbers for binary VRs, bytes or typed arrays for
   * OB/OW, items for SQ, fragments for encapsulated pixel data. */
  value?: string | number | NumericArray | DicomElement[][] | Encapsulated;
  /** Raw value bytes written as they are (still byte-swapped for OW in big endian unless `raw` is true). */
  raw?: boolean;
}

export interface Encapsulated {
  fragments: Uint8Array[];
  offsetTable?: number[];
}

export interface WriteOptions {
  encoding?: DicomEncoding;
  /** 128-byte preamble and DICM (default true). */
  preamble?: boolean;
  /** File meta group 0002 (default true). */
  meta?: boolean;
  /** Overrides the transfer syntax written in the meta (the data set encoding still follows `encoding`). */
  transferSyntaxUid?: string;
  sopClassUid?: string;
  sopInstanceUid?: string;
}

const NUMERIC_WIDTH: Record<string, number> = { US: 2, SS: 2, UL: 4, SL: 4, FL: 4, FD: 8, AT: 4 };

class ByteWriter {
  private chunks: Uint8Array[] = [];
  length = 0;
  constructor(readonly littleEndian: boolean) {}
  bytes(b: Uint8Array): void {
    this.chunks.push(b);
    this.length += b.length;
  }
  uint16(v: number): void {
    const b = new Uint8Array(2);
    new DataView(b.buffer).setUint16(0, v, this.littleEndian);
    this.bytes(b);
  }
  uint32(v: number): void {
    const b = new Uint8Array(4);
    new DataView(b.buffer).setUint32(0, v, this.littleEndian);
    this.bytes(b);
  }
  tag(tag: number): void {
    this.uint16(tag >>> 16);
    this.uint16(tag & 0xffff);
  }
  toBytes(): Uint8Array {
    const out = new Uint8Array(this.length);
    let o = 0;
    for (const c of this.chunks) {
      out.set(c, o);
      o += c.length;
    }
    return out;
  }
}

/** Text in latin1 when every character fits one byte, else UTF-8. */
function textBytes(value: string, vr: string): Uint8Array {
  const latin1 = [...value].every((c) => c.charCodeAt(0) < 256);
  const encoded = latin1 ? Uint8Array.from(value, (c) => c.charCodeAt(0)) : new TextEncoder().encode(value);
  if (encoded.length % 2 === 0) return encoded;
  const padded = new Uint8Array(encoded.length + 1);
  padded.set(encoded);
  padded[encoded.length] = vr === 'UI' ? 0 : 0x20;
  return padded;
}

function numericBytes(values: NumericArray | number, vr: string, littleEndian: boolean): Uint8Array {
  const list = typeof values === 'number' ? [values] : Array.from(values);
  const width = NUMERIC_WIDTH[vr]!;
  const b = new Uint8Array(list.length * width);
  const view = new DataView(b.buffer);
  list.forEach((v, i) => {
    const o = i * width;
    if (vr === 'US') view.setUint16(o, v, littleEndian);
    else if (vr === 'SS') view.setInt16(o, v, littleEndian);
    else if (vr === 'UL') view.setUint32(o, v, littleEndian);
    else if (vr === 'SL') view.setInt32(o, v, littleEndian);
    else if (vr === 'FL') view.setFloat32(o, v, littleEndian);
    else if (vr === 'FD') view.setFloat64(o, v, littleEndian);
    else {
      view.setUint16(o, v >>> 16, littleEndian);
      view.setUint16(o + 2, v & 0xffff, littleEndian);
    }
  });
  return b;
}

/** OB/OW/OF/OD values in the data set's byte order. OW is a stream of 16-bit words: in big endian the bytes of
 * each word of the little endian stream (padding included) are swapped, whatever the sample width, as DCMTK
 * writes it. Other VRs swap each typed-array element. */
function binaryBytes(value: NumericArray, vr: string, littleEndian: boolean, raw: boolean): Uint8Array {
  const bytes =
    value instanceof Uint8Array || value instanceof Int8Array || Array.isArray(value)
      ? Uint8Array.from(value as ArrayLike<number>, (v) => v & 0xff)
      : new Uint8Array(value.buffer.slice(value.byteOffset, value.byteOffset + value.byteLength));
  const padded = bytes.length % 2 === 0 ? bytes : new Uint8Array(bytes.length + 1);
  if (padded !== bytes) padded.set(bytes);
  if (littleEndian || raw) return padded;
  if (vr === 'OW') return swap(padded, 2);
  const width = ArrayBuffer.isView(value) ? (value as { BYTES_PER_ELEMENT: number }).BYTES_PER_ELEMENT : 1;
  return width > 1 ? swap(padded, width) : padded;
}

function swap(bytes: Uint8Array, width: number): Uint8Array {
  const out = new Uint8Array(bytes.length);
  const whole = bytes.length - (bytes.length % width);
  for (let i = 0; i < whole; i += width)
    for (let k = 0; k < width; k++) out[i + k] = bytes[i + width - 1 - k]!;
  out.set(bytes.subarray(whole), whole);
  return out;
}

function writeHeader(w: ByteWriter, tag: number, vr: string, length: number, explicit: boolean): void {
  w.tag(tag);
  if (!explicit) {
    w.uint32(length);
    return;
  }
  w.bytes(Uint8Array.from(vr, (c) => c.charCodeAt(0)));
  if (LONG_LENGTH_VRS.has(vr)) {
    w.uint16(0);
    w.uint32(length);
  } else {
    w.uint16(length);
  }
}

function writeElements(w: ByteWriter, elements: DicomElement[], explicit: boolean): void {
  const sorted = [...elements].sort((a, b) => (a.tag >>> 0) - (b.tag >>> 0));
  for (const el of sorted) writeElement(w, el, explicit);
}

function writeElement(w: ByteWriter, el: DicomElement, explicit: boolean): void {
  const { tag, vr, value } = el;
  if (vr === 'SQ') {
    writeHeader(w, tag, vr, 0xffffffff, explicit);
    for (const item of (value as DicomElement[][] | undefined) ?? []) {
      const inner = new ByteWriter(w.littleEndian);
      writeElements(inner, item, explicit);
      const body = inner.toBytes();
      w.tag(0xfffee000);
      w.uint32(body.length);
      w.bytes(body);
    }
    w.tag(0xfffee0dd);
    w.uint32(0);
    return;
  }
  if (value !== undefined && typeof value === 'object' && 'fragments' in value) {
    writeHeader(w, tag, vr, 0xffffffff, explicit);
    const table = value.offsetTable ?? [];
    w.tag(0xfffee000);
    w.uint32(table.length * 4);
    for (const offset of table) w.uint32(offset);
    for (const fragment of value.fragments) {
      const even = fragment.length % 2 === 0 ? fragment : Uint8Array.from([...fragment, 0]);
      w.tag(0xfffee000);
      w.uint32(even.length);
      w.bytes(even);
    }
    w.tag(0xfffee0dd);
    w.uint32(0);
    return;
  }
  let bytes: Uint8Array;
  if (value === undefined) bytes = new Uint8Array(0);
  else if (typeof value === 'string') bytes = textBytes(value, vr);
  else if (value instanceof Uint8Array && STRING_VRS.has(vr)) bytes = value;
  else if (vr in NUMERIC_WIDTH) bytes = numericBytes(value as NumericArray | number, vr, w.littleEndian);
  else if (STRING_VRS.has(vr)) bytes = textBytes(String(value), vr);
  // Without VRs, Pixel Data is OW (PS3.5 A.1): in big endian, 8-bit samples too are swapped in 16-bit words.
  else
    bytes = binaryBytes(
      value as NumericArray,
      explicit || tag !== 0x7fe00010 ? vr : 'OW',
      w.littleEndian,
      el.raw === true,
    );
  writeHeader(w, tag, vr, bytes.length, explicit);
  w.bytes(bytes);
}

/** Writes a file (or bare data set). The file meta is always explicit VR little endian. */
export function writeDicom(elements: DicomElement[], options: WriteOptions = {}): Uint8Array {
  const encoding = options.encoding ?? 'explicit-le';
  const littleEndian = encoding !== 'explicit-be' && encoding !== 'implicit-be';
  const explicit = encoding !== 'implicit-le' && encoding !== 'implicit-be';
  const data = new ByteWriter(littleEndian);
  writeElements(data, elements, explicit);
  let dataSet = data.toBytes();
  if (encoding === 'deflated') dataSet = new Uint8Array(deflateRawSync(dataSet));

  const out = new ByteWriter(true);
  if (options.preamble ?? true) {
    out.bytes(new Uint8Array(128));
    out.bytes(Uint8Array.from('DICM', (c) => c.charCodeAt(0)));
  }
  if (options.meta ?? true) {
    const meta = new ByteWriter(true);
    const sopClass = options.sopClassUid ?? findText(elements, 0x00080016) ?? '1.2.840.10008.5.1.4.1.1.7';
    const sopInstance = options.sopInstanceUid ?? findText(elements, 0x00080018) ?? '2.25.1';
    writeElements(
      meta,
      [
        { tag: 0x00020001, vr: 'OB', value: Uint8Array.of(0, 1) },
        { tag: 0x00020002, vr: 'UI', value: sopClass },
        { tag: 0x00020003, vr: 'UI', value: sopInstance },
        { tag: 0x00020010, vr: 'UI', value: options.transferSyntaxUid ?? TRANSFER_SYNTAX_FOR[encoding] },
        { tag: 0x00020012, vr: 'UI', value: '2.25.42' },
      ],
      true,
    );
    const body = meta.toBytes();
    writeElement(out, { tag: 0x00020000, vr: 'UL', value: body.length }, true);
    out.bytes(body);
  }
  out.bytes(dataSet);
  return out.toBytes();
}

function findText(elements: DicomElement[], tag: number): string | undefined {
  const value = elements.find((e) => e.tag === tag)?.value;
  return typeof value === 'string' ? value : undefined;
}

export interface ImageSpec {
  rows: number;
  columns: number;
  bitsAllocated: number;
  bitsStored?: number;
  highBit?: number;
  pixelRepresentation?: number;
  samplesPerPixel?: number;
  planarConfiguration?: number;
  photometricInterpretation?: string;
  numberOfFrames?: number;
  /** Native pixel data (OW for 16/32-bit, OB for 8-bit) or fragments. */
  pixelData?: NumericArray | Encapsulated;
  extra?: DicomElement[];
}

/** A 1×2 PALETTE COLOR image (stored values 0 and 255) whose red, green and blue tables are 256 16-bit entries,
 * given as segmented data (PS3.3 C.7.9.2). */
export function segmentedPaletteImage(red: Uint16Array, green: Uint16Array, blue: Uint16Array): ImageSpec {
  const descriptor = { vr: 'US', value: [256, 0, 16] };
  return {
    rows: 1,
    columns: 2,
    bitsAllocated: 8,
    photometricInterpretation: 'PALETTE COLOR',
    pixelData: Uint8Array.of(0, 255),
    extra: [
      { tag: 0x00281101, ...descriptor },
      { tag: 0x00281102, ...descriptor },
      { tag: 0x00281103, ...descriptor },
      { tag: 0x00281221, vr: 'OW', value: red },
      { tag: 0x00281222, vr: 'OW', value: green },
      { tag: 0x00281223, vr: 'OW', value: blue },
    ],
  };
}

/** The usual identifying attributes plus an Image Pixel module. */
export function imageElements(spec: ImageSpec): DicomElement[] {
  const spp = spec.samplesPerPixel ?? 1;
  const elements: DicomElement[] = [
    { tag: 0x00080016, vr: 'UI', value: '1.2.840.10008.5.1.4.1.1.7' },
    { tag: 0x00080018, vr: 'UI', value: '2.25.1001' },
    { tag: 0x00080060, vr: 'CS', value: 'OT' },
    { tag: 0x0020000d, vr: 'UI', value: '2.25.2002' },
    { tag: 0x0020000e, vr: 'UI', value: '2.25.3003' },
    { tag: 0x00280002, vr: 'US', value: spp },
    {
      tag: 0x00280004,
      vr: 'CS',
      value: spec.photometricInterpretation ?? (spp === 3 ? 'RGB' : 'MONOCHROME2'),
    },
    { tag: 0x00280010, vr: 'US', value: spec.rows },
    { tag: 0x00280011, vr: 'US', value: spec.columns },
    { tag: 0x00280100, vr: 'US', value: spec.bitsAllocated },
    { tag: 0x00280101, vr: 'US', value: spec.bitsStored ?? spec.bitsAllocated },
    { tag: 0x00280102, vr: 'US', value: spec.highBit ?? (spec.bitsStored ?? spec.bitsAllocated) - 1 },
    { tag: 0x00280103, vr: 'US', value: spec.pixelRepresentation ?? 0 },
  ];
  if (spp === 3) elements.push({ tag: 0x00280006, vr: 'US', value: spec.planarConfiguration ?? 0 });
  if (spec.numberOfFrames !== undefined)
    elements.push({ tag: 0x00280008, vr: 'IS', value: String(spec.numberOfFrames) });
  if (spec.pixelData !== undefined) {
    const encapsulated = typeof spec.pixelData === 'object' && 'fragments' in spec.pixelData;
    elements.push({
      tag: 0x7fe00010,
      vr: encapsulated || spec.bitsAllocated <= 8 ? 'OB' : 'OW',
      value: spec.pixelData,
    });
  }
  for (const e of spec.extra ?? []) {
    const existing = elements.findIndex((x) => x.tag === e.tag);
    if (existing >= 0) elements.splice(existing, 1);
    elements.push(e);
  }
  return elements;
}

/** RLE Lossless (PS3.5 annex G) for one frame of pixel-interleaved samples: one PackBits segment per byte plane,
 * most significant byte first. Runs of three or more equal bytes are replicated, everything else is literal. */
export function encodeRleFrame(
  samples: NumericArray,
  samplesPerPixel: number,
  bitsAllocated: number,
): Uint8Array {
  const bytesPerSample = bitsAllocated / 8;
  const pixelCount = samples.length / samplesPerPixel;
  const segments: Uint8Array[] = [];
  for (let s = 0; s < samplesPerPixel; s++) {
    for (let byte = 0; byte < bytesPerSample; byte++) {
      const shift = (bytesPerSample - 1 - byte) * 8;
      const plane = new Uint8Array(pixelCount);
      for (let i = 0; i < pixelCount; i++)
        plane[i] = (Number(samples[i * samplesPerPixel + s]) >>> shift) & 0xff;
      segments.push(packBits(plane));
    }
  }
  const header = new Uint8Array(64);
  const view = new DataView(header.buffer);
  view.setUint32(0, segments.length, true);
  let offset = 64;
  segments.forEach((seg, k) => {
    view.setUint32(4 + k * 4, offset, true);
    offset += seg.length;
  });
  const out = new Uint8Array(offset);
  out.set(header);
  let o = 64;
  for (const seg of segments) {
    out.set(seg, o);
    o += seg.length;
  }
  return out;
}

function packBits(plane: Uint8Array): Uint8Array {
  const out: number[] = [];
  let i = 0;
  while (i < plane.length) {
    let run = 1;
    while (i + run < plane.length && run < 128 && plane[i + run] === plane[i]) run++;
    if (run >= 3) {
      out.push(257 - run, plane[i]!);
      i += run;
      continue;
    }
    const start = i;
    while (i < plane.length && i - start < 128) {
      if (i + 2 < plane.length && plane[i] === plane[i + 1] && plane[i] === plane[i + 2]) break;
      i++;
    }
    out.push(i - start - 1, ...plane.subarray(start, i));
  }
  // Segments are padded to an even length.
  if (out.length % 2 === 1) out.push(128);
  return Uint8Array.from(out);
}

// ---- text in DICOM character sets -------------------------------------------------------------------------
// WHATWG TextEncoder only writes UTF-8, so the legacy encoders below invert the platform's decoders, and the
// ISO 2022 encoder follows PS3.5 annexes H, I and K independently of src/formats/dicom/charset.ts.

const reverseTables = new Map<string, Map<string, number[]>>();

function reverseTable(label: string): Map<string, number[]> {
  const cached = reverseTables.get(label);
  if (cached) return cached;
  const decoder = new TextDecoder(label, { fatal: true });
  const table = new Map<string, number[]>();
  const add = (bytes: number[]) => {
    let text: string;
    try {
      text = decoder.decode(Uint8Array.from(bytes));
    } catch {
      return;
    }
    if ([...text].length === 1 && !table.has(text)) table.set(text, bytes);
  };
  for (let b = 0; b < 256; b++) add([b]);
  if (['gbk', 'gb18030', 'euc-kr', 'euc-jp', 'shift_jis'].includes(label)) {
    for (let lead = 0x81; lead <= 0xfe; lead++)
      for (let trail = 0x40; trail <= 0xfe; trail++) add([lead, trail]);
  }
  if (label === 'euc-jp') {
    for (let a = 0xa1; a <= 0xfe; a++) for (let b = 0xa1; b <= 0xfe; b++) add([0x8f, a, b]);
  }
  reverseTables.set(label, table);
  return table;
}

/** `text` in a WHATWG-labelled character set ('iso-8859-7', 'gb18030', 'euc-kr' …). Throws for a character
 * the set lacks, so that a test cannot silently write something else. */
export function encodeText(text: string, label: string): Uint8Array {
  if (label === 'utf-8') return new TextEncoder().encode(text);
  // WHATWG's latin1 is windows-1252; ISO 8859-1 is the code points below 256.
  if (label === 'iso-8859-1') {
    return Uint8Array.from(text, (c) => {
      const code = c.charCodeAt(0);
      if (code > 0xff) throw new Error(`U+${code.toString(16)} is not in ISO 8859-1`);
      return code;
    });
  }
  const table = reverseTable(label);
  const out: number[] = [];
  for (const c of text) {
    const bytes = table.get(c);
    if (!bytes) throw new Error(`U+${c.codePointAt(0)!.toString(16)} is not in ${label}`);
    out.push(...bytes);
  }
  return Uint8Array.from(out);
}

/** Text VR bytes padded to an even length with a space, as DICOM requires. */
export function padText(bytes: Uint8Array): Uint8Array {
  return bytes.length % 2 === 0 ? bytes : Uint8Array.from([...bytes, 0x20]);
}

const ESCAPE = {
  ascii: [0x1b, 0x28, 0x42],
  romaji: [0x1b, 0x28, 0x4a],
  katakana: [0x1b, 0x29, 0x49],
  jisX0208: [0x1b, 0x24, 0x42],
  jisX0212: [0x1b, 0x24, 0x28, 0x44],
  ksX1001: [0x1b, 0x24, 0x29, 0x43],
  gb2312: [0x1b, 0x24, 0x29, 0x41],
} as const;

/** G1 escape (ESC - F) and WHATWG decoder of each single-byte set (PS3.3 table C.12-3). */
const SINGLE_BYTE_SETS: Record<string, { final: number; label: string }> = {
  100: { final: 0x41, label: 'iso-8859-1' },
  101: { final: 0x42, label: 'iso-8859-2' },
  109: { final: 0x43, label: 'iso-8859-3' },
  110: { final: 0x44, label: 'iso-8859-4' },
  144: { final: 0x4c, label: 'iso-8859-5' },
  127: { final: 0x47, label: 'iso-8859-6' },
  126: { final: 0x46, label: 'iso-8859-7' },
  138: { final: 0x48, label: 'iso-8859-8' },
  148: { final: 0x4d, label: 'iso-8859-9' },
  166: { final: 0x54, label: 'windows-874' },
  203: { final: 0x62, label: 'iso-8859-15' },
};

function irNumber(term: string): number | undefined {
  const m = /IR[ _]?(\d+)$/.exec(term.trim());
  return m ? Number(m[1]) : undefined;
}

/**
 * Encodes `text` with ISO 2022 code extensions under a multi-valued Specific Character Set, the way the PS3.5
 * annex examples do: value 1 is active at the start and again before each delimiter (`^ = \` for PN, `\` for
 * other multi-valued VRs, and CR, LF, TAB, FF), G1 sets are designated again after a delimiter, and the text
 * ends with G0 back in the value 1 set.
 */
export function encodeIso2022(text: string, specificCharacterSet: string, vr = 'PN'): Uint8Array {
  const terms = specificCharacterSet.split('\\');
  const first = irNumber(terms[0] ?? '');
  const defaultG0 = first === 13 ? 'romaji' : 'ascii';
  const defaultG1 =
    first === 13 ? 'katakana' : first !== undefined && SINGLE_BYTE_SETS[first] ? `ir${first}` : '';
  const extensions = terms.map(irNumber).filter((n): n is number => n !== undefined);
  const delimiters = new Set(['\r', '\n', '\t', '\f']);
  if (vr !== 'ST' && vr !== 'LT' && vr !== 'UT') delimiters.add('\\');
  if (vr === 'PN') {
    delimiters.add('^');
    delimiters.add('=');
  }
  const out: number[] = [];
  let g0 = defaultG0;
  let g1 = defaultG1;
  const setG0 = (name: string, sequence: readonly number[]) => {
    if (g0 !== name) out.push(...sequence);
    g0 = name;
  };
  const setG1 = (name: string, sequence: readonly number[]) => {
    if (g1 !== name) out.push(...sequence);
    g1 = name;
  };
  for (const c of text) {
    if (c.charCodeAt(0) < 0x80) {
      setG0(defaultG0, ESCAPE[defaultG0]);
      if (delimiters.has(c)) g1 = defaultG1;
      out.push(c.charCodeAt(0));
      continue;
    }
    const written = extensions.some((ir) => {
      const single = SINGLE_BYTE_SETS[ir];
      if (single) {
        const bytes = single.label === 'iso-8859-1' ? [c.charCodeAt(0)] : reverseTable(single.label).get(c);
        if (bytes?.length !== 1 || bytes[0]! < 0xa0 || bytes[0]! > 0xff) return false;
        setG1(`ir${ir}`, [0x1b, 0x2d, single.final]);
        out.push(bytes[0]!);
        return true;
      }
      const euc =
        ir === 149
          ? reverseTable('euc-kr').get(c)
          : ir === 58
            ? reverseTable('gbk').get(c)
            : reverseTable('euc-jp').get(c);
      if (!euc) return false;
      if (ir === 13 && euc.length === 2 && euc[0] === 0x8e) {
        setG1('katakana', ESCAPE.katakana);
        out.push(euc[1]!);
        return true;
      }
      if (ir === 87 && euc.length === 2 && euc[0]! >= 0xa1 && euc[1]! >= 0xa1) {
        setG0('jisX0208', ESCAPE.jisX0208);
        out.push(euc[0]! & 0x7f, euc[1]! & 0x7f);
        return true;
      }
      if (ir === 159 && euc.length === 3 && euc[0] === 0x8f) {
        setG0('jisX0212', ESCAPE.jisX0212);
        out.push(euc[1]! & 0x7f, euc[2]! & 0x7f);
        return true;
      }
      if ((ir === 149 || ir === 58) && euc.length === 2 && euc[0]! >= 0xa1 && euc[1]! >= 0xa1) {
        setG1(ir === 149 ? 'ksX1001' : 'gb2312', ir === 149 ? ESCAPE.ksX1001 : ESCAPE.gb2312);
        out.push(euc[0]!, euc[1]!);
        return true;
      }
      return false;
    });
    if (!written)
      throw new Error(`U+${c.codePointAt(0)!.toString(16)} is in none of ${specificCharacterSet}`);
  }
  setG0(defaultG0, ESCAPE[defaultG0]);
  return Uint8Array.from(out);
}

// ---- compressed frames for codec tests -------------------------------------------------------------------

export type TestCodec = 'jpeg-lossless' | 'jpeg-baseline' | 'jpeg-ls' | 'jpeg-2000' | 'htj2k';

interface DcmjsCodecsForTests {
  Context: new (attrs: Record<string, unknown>) => { getEncodedBuffer(): Uint8Array };
  NativeCodecs: {
    initializeAsync(options: Record<string, unknown>): Promise<void>;
    encodeJpeg(context: unknown, parameters: Record<string, unknown>): { getEncodedBuffer(): Uint8Array };
    encodeJpegLs(context: unknown, parameters: Record<string, unknown>): { getEncodedBuffer(): Uint8Array };
    encodeJpeg2000(context: unknown, parameters: Record<string, unknown>): { getEncodedBuffer(): Uint8Array };
    encodeHtJpeg2000(
      context: unknown,
      parameters: Record<string, unknown>,
    ): { getEncodedBuffer(): Uint8Array };
  };
}

let encoders: Promise<DcmjsCodecsForTests> | undefined;

/** Compresses one frame with the encoders of dcmjs-codecs (DCMTK's IJG, CharLS, OpenJPEG and OpenJPH builds of
 * its own), which are independent of the decoders under test. Lossless unless `lossy`. */
export async function encodeFrame(
  codec: TestCodec,
  samples: Uint8Array | Uint16Array | Int16Array,
  spec: Pick<
    ImageSpec,
    'rows' | 'columns' | 'bitsAllocated' | 'bitsStored' | 'pixelRepresentation' | 'samplesPerPixel'
  > & {
    photometricInterpretation?: string;
  },
  lossy = false,
): Promise<Uint8Array> {
  encoders ??= (async () => {
    const { createRequire } = await import('node:module');
    const codecs = createRequire(import.meta.url)('dcmjs-codecs') as DcmjsCodecsForTests;
    await codecs.NativeCodecs.initializeAsync({ logCodecsInfo: false, logCodecsTrace: false });
    return codecs;
  })();
  const { Context, NativeCodecs } = await encoders;
  const spp = spec.samplesPerPixel ?? 1;
  const context = new Context({
    width: spec.columns,
    height: spec.rows,
    bitsAllocated: spec.bitsAllocated,
    bitsStored: spec.bitsStored ?? spec.bitsAllocated,
    samplesPerPixel: spp,
    pixelRepresentation: spec.pixelRepresentation ?? 0,
    planarConfiguration: 0,
    photometricInterpretation: spec.photometricInterpretation ?? (spp === 3 ? 'RGB' : 'MONOCHROME2'),
    decodedBuffer: new Uint8Array(samples.buffer, samples.byteOffset, samples.byteLength),
  });
  const encoded =
    codec === 'jpeg-lossless' || codec === 'jpeg-baseline'
      ? NativeCodecs.encodeJpeg(context, { lossy: codec === 'jpeg-baseline', quality: 95 })
      : codec === 'jpeg-ls'
        ? NativeCodecs.encodeJpegLs(context, { lossy, allowedLossyError: 2 })
        : codec === 'jpeg-2000'
          ? NativeCodecs.encodeJpeg2000(context, { lossy })
          : NativeCodecs.encodeHtJpeg2000(context, { lossy });
  return new Uint8Array(encoded.getEncodedBuffer());
}

/**
 * A small CT study of three instances in two series (`root.1` with `root.1.1` and `root.1.2`, `root.2` with
 * `root.2.1`), each an 8 × 8 flat frame of its own value, naming the patient given: for the DICOMweb tests.
 */
export function threeInstanceStudy(
  root: string,
  patient: { name: string; id: string },
): Array<{ series: string; sop: string; bytes: Uint8Array }> {
  return [
    { series: `${root}.1`, sop: `${root}.1.1`, value: 40 },
    { series: `${root}.1`, sop: `${root}.1.2`, value: 80 },
    { series: `${root}.2`, sop: `${root}.2.1`, value: 120 },
  ].map(({ series, sop, value }) => ({
    series,
    sop,
    bytes: writeDicom(
      imageElements({
        rows: 8,
        columns: 8,
        bitsAllocated: 8,
        pixelData: new Uint8Array(64).fill(value),
        extra: [
          { tag: 0x0020000d, vr: 'UI', value: root },
          { tag: 0x0020000e, vr: 'UI', value: series },
          { tag: 0x00080018, vr: 'UI', value: sop },
          { tag: 0x00080060, vr: 'CS', value: 'CT' },
          { tag: 0x00100010, vr: 'PN', value: patient.name },
          { tag: 0x00100020, vr: 'LO', value: patient.id },
        ],
      }),
      { sopInstanceUid: sop },
    ),
  }));
}

/**
 * The header of a native Pixel Data element of `byteLength` bytes in explicit VR little endian (tag, OW, two
 * reserved bytes, 32-bit length). writeDicom holds a file in a JavaScript array, which hundreds of megabytes
 * overflow: a large file is the data set written without Pixel Data, this header, then the samples appended.
 */
export function nativePixelDataHeader(byteLength: number): Uint8Array {
  const header = new Uint8Array(12);
  const view = new DataView(header.buffer);
  view.setUint16(0, 0x7fe0, true);
  view.setUint16(2, 0x0010, true);
  header.set([0x4f, 0x57], 4);
  view.setUint32(8, byteLength, true);
  return header;
}
