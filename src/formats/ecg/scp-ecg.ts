/**
 * SCP-ECG (EN 1064, ANSI/AAMI EC71, ISO/IEEE 11073-91064) into the canonical Ecg. Pure.
 *
 * File: CRC-CCITT (2 bytes) over the rest of the record, record length (uint32), then sections. Each section
 * has a 16-byte header: CRC-CCITT over the section after its own CRC, section id, length, version bytes and 6
 * reserved bytes. Section 0 points at the others (id, length, 1-based byte index). Used here:
 *   1 patient and acquisition tags        2 Huffman tables (19999 = the default table)
 *   3 lead definitions                    4 reference-beat subtraction zones and protected (QRS) zones
 *   5 encoded reference beats             6 encoded rhythm data
 * Sections 7–11 (measurements, statements) and manufacturer sections are CRC-checked but not decoded. All
 * integers are little-endian; the CRC is CRC-CCITT with polynomial 0x1021 and initial value 0xFFFF.
 */
import type { PatientInfo } from '../types.js';
import { type Ecg, type EcgBeat, type EcgLead, scpLeadName } from './ecg.js';
import { assertSampleBudget, corrupt, uniqueNames, unsupported } from './ecg-input.js';

const WHAT = 'SCP-ECG';

/** CRC-CCITT (polynomial 0x1021, initial 0xFFFF, no reflection): the checksum SCP-ECG uses throughout. */
export function crcCcitt(bytes: Uint8Array, start = 0, end = bytes.length): number {
  const table = crcTable();
  let crc = 0xffff;
  for (let i = start; i < end; i++) crc = ((crc << 8) & 0xffff) ^ table[((crc >>> 8) ^ bytes[i]!) & 0xff]!;
  return crc;
}

let crcLookup: Uint16Array | undefined;

function crcTable(): Uint16Array {
  if (crcLookup) return crcLookup;
  crcLookup = new Uint16Array(256);
  for (let n = 0; n < 256; n++) {
    let crc = n << 8;
    for (let k = 0; k < 8; k++) crc = crc & 0x8000 ? ((crc << 1) ^ 0x1021) & 0xffff : (crc << 1) & 0xffff;
    crcLookup[n] = crc;
  }
  return crcLookup;
}

interface Section {
  id: number;
  /** Offset of the section's data (after its 16-byte header) in the file. */
  dataStart: number;
  /** Offset just past the section. */
  end: number;
  version: number;
}

interface HuffmanCode {
  prefixBits: number;
  totalBits: number;
  /** 1: the code stands for a value; 0: switch to table `baseValue`. */
  mode: number;
  baseValue: number;
}

/** Codes of one table, looked up by prefix length then by the prefix read most significant bit first. */
type HuffmanTable = Map<number, HuffmanCode>[] & { lookup?: LookupTable };

/** Direct lookup for tables whose prefixes fit in LOOKUP_BITS: indexed by the next LOOKUP_BITS bits, it gives
 * the code (and so its prefix length) in one step instead of one map probe per bit. */
interface LookupTable {
  bits: number;
  codes: (HuffmanCode | undefined)[];
}

const LOOKUP_BITS = 16;

function lookupFor(table: HuffmanTable): LookupTable | undefined {
  if (table.lookup) return table.lookup;
  const bits = table.length - 1;
  if (bits < 1 || bits > LOOKUP_BITS) return undefined;
  const codes: (HuffmanCode | undefined)[] = new Array(1 << bits);
  table.forEach((byCode, length) => {
    if (!byCode) return;
    for (const [code, entry] of byCode) {
      const first = code << (bits - length);
      for (let k = 0; k < 1 << (bits - length); k++) codes[first + k] ??= entry;
    }
  });
  table.lookup = { bits, codes };
  return table.lookup;
}

interface LeadDefinition {
  code: number;
  name: string;
  /** 1-based sample numbers, inclusive. */
  start: number;
  end: number;
}

interface QrsZones {
  referenceLengthMs: number;
  /** 1-based sample number of the fiducial point within the reference beat. */
  fiducial: number;
  subtraction: { type: number; start: number; fiducial: number; end: number }[];
  protectedZones: { start: number; end: number }[];
}

class Reader {
  readonly view: DataView;
  constructor(readonly bytes: Uint8Array) {
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }
  need(offset: number, length: number, end: number, what: string): void {
    if (offset < 0 || offset + length > end) {
      throw corrupt(`${WHAT}: ${what} at byte ${offset} runs past the end of its section (byte ${end})`);
    }
  }
  u8(offset: number): number {
    return this.bytes[offset]!;
  }
  u16(offset: number): number {
    return this.view.getUint16(offset, true);
  }
  i16(offset: number): number {
    return this.view.getInt16(offset, true);
  }
  u32(offset: number): number {
    return this.view.getUint32(offset, true);
  }
}

// ---------------------------------------------------------------------------------------------------------
// Sections 0 and the section headers

function readSections(r: Reader, recordLength: number): Map<number, Section> {
  const sectionAt = (
    offset: number,
    expectedId: number | undefined,
    pointerLength: number | undefined,
  ): Section => {
    r.need(offset, 16, recordLength, `section ${expectedId ?? '?'} header`);
    const storedCrc = r.u16(offset);
    const id = r.u16(offset + 2);
    const length = r.u32(offset + 4);
    if (expectedId !== undefined && id !== expectedId) {
      throw corrupt(
        `${WHAT}: section 0 points at byte ${offset + 1} for section ${expectedId}, the header there says ${id}`,
      );
    }
    if (length < 16 || offset + length > recordLength) {
      throw corrupt(
        `${WHAT}: section ${id} at byte ${offset}: length ${length} runs past the record (${recordLength} bytes)`,
      );
    }
    if (pointerLength !== undefined && pointerLength !== length) {
      throw corrupt(`${WHAT}: section ${id}: section 0 says ${pointerLength} bytes, its header ${length}`);
    }
    const crc = crcCcitt(r.bytes, offset + 2, offset + length);
    if (crc !== storedCrc) {
      throw corrupt(`${WHAT}: section ${id} at byte ${offset}: CRC ${storedCrc} stored, ${crc} computed`, {
        section: id,
      });
    }
    return { id, dataStart: offset + 16, end: offset + length, version: r.u8(offset + 8) };
  };
  const section0 = sectionAt(6, 0, undefined);
  const sections = new Map<number, Section>([[0, section0]]);
  const pointers = Math.floor((section0.end - section0.dataStart) / 10);
  for (let i = 0; i < pointers; i++) {
    const p = section0.dataStart + i * 10;
    const id = r.u16(p);
    const length = r.u32(p + 2);
    const index = r.u32(p + 6);
    if (id === 0 || length === 0) continue;
    if (index < 1) throw corrupt(`${WHAT}: section 0 points at byte ${index} for section ${id}`);
    if (sections.has(id)) throw corrupt(`${WHAT}: section ${id} is listed twice in section 0`);
    sections.set(id, sectionAt(index - 1, id, length));
  }
  return sections;
}

// ---------------------------------------------------------------------------------------------------------
// Section 1: patient and acquisition tags

interface Section1 {
  patient: PatientInfo;
  startTime?: string;
  device?: string;
  acquisition: Record<string, string | number>;
}

const MANUFACTURERS: Record<number, string> = {
  1: 'Burdick',
  2: 'Cambridge',
  3: 'Compumed',
  4: 'Datamed',
  5: 'Fukuda',
  6: 'Hewlett-Packard',
  7: 'Marquette',
  8: 'Mortara',
  9: 'Nihon Kohden',
  10: 'Okin',
  11: 'Quinton',
  12: 'Siemens',
  13: 'Spacelabs',
  14: 'Telemed',
  15: 'Hellige',
  16: 'ESA-OTE',
  17: 'Schiller',
  18: 'Picker-Schwarzer',
  19: 'Elettronica-Trentina',
  20: 'Zwönitz',
};

function asciiz(bytes: Uint8Array, start: number, end: number): string {
  let stop = start;
  while (stop < end && bytes[stop] !== 0) stop++;
  return new TextDecoder('latin1').decode(bytes.subarray(start, stop)).trim();
}

function pad(n: number, width = 2): string {
  return String(n).padStart(width, '0');
}

function readSection1(r: Reader, s: Section): Section1 {
  const out: Section1 = { patient: {}, acquisition: {} };
  let date: string | undefined;
  let time: string | undefined;
  let p = s.dataStart;
  // Each tag is at least 3 bytes, so the walk ends within the section.
  while (p + 3 <= s.end) {
    const tag = r.u8(p);
    const length = r.u16(p + 1);
    const v = p + 3;
    if (tag === 255) break;
    r.need(v, length, s.end, `section 1 tag ${tag}`);
    const text = () => asciiz(r.bytes, v, v + length);
    switch (tag) {
      case 0:
        if (length > 0 && text()) out.patient.name = [text(), out.patient.name].filter(Boolean).join('^');
        break;
      case 1:
        if (length > 0 && text()) out.patient.name = [out.patient.name, text()].filter(Boolean).join('^');
        break;
      case 2:
        if (text()) out.patient.id = text();
        break;
      case 5:
        if (length >= 4 && r.u16(v) > 0)
          out.patient.birthDate = `${pad(r.u16(v), 4)}-${pad(r.u8(v + 2))}-${pad(r.u8(v + 3))}`;
        break;
      case 8:
        if (length >= 1) {
          const sex = r.u8(v);
          if (sex === 1) out.patient.sex = 'M';
          else if (sex === 2) out.patient.sex = 'F';
        }
        break;
      case 14:
        if (length >= 36) {
          const manufacturer = MANUFACTURERS[r.u8(v + 7)];
          const model = asciiz(r.bytes, v + 8, v + 14);
          const mains = r.u8(v + 18);
          if (mains === 1) out.acquisition.mainsFrequency = 50;
          if (mains === 2) out.acquisition.mainsFrequency = 60;
          // Five NUL-terminated strings follow the fixed part; the last is the manufacturer's trade name.
          const strings: string[] = [];
          let q = v + 36;
          while (q < v + length && strings.length < 5) {
            let z = q;
            while (z < v + length && r.bytes[z] !== 0) z++;
            strings.push(asciiz(r.bytes, q, z));
            q = z + 1;
          }
          const tradeName = strings[4];
          const device = [tradeName || manufacturer, model].filter(Boolean).join(' ');
          if (device) out.device = device;
        }
        break;
      case 25:
        if (length >= 4 && r.u16(v) > 0) date = `${pad(r.u16(v), 4)}-${pad(r.u8(v + 2))}-${pad(r.u8(v + 3))}`;
        break;
      case 26:
        if (length >= 3) time = `${pad(r.u8(v))}:${pad(r.u8(v + 1))}:${pad(r.u8(v + 2))}`;
        break;
      case 27:
        if (length >= 2 && r.u16(v) > 0) out.acquisition.highPassFilterFrequency = r.u16(v) / 100;
        break;
      case 28:
        if (length >= 2 && r.u16(v) > 0) out.acquisition.lowPassFilterFrequency = r.u16(v);
        break;
    }
    p = v + length;
  }
  if (date && time) out.startTime = `${date}T${time}`;
  else if (date) out.startTime = date;
  else if (time) out.startTime = time;
  return out;
}

// ---------------------------------------------------------------------------------------------------------
// Section 2: Huffman tables

const DEFAULT_TABLE_MARKER = 19999;

/** The default table of EN 1064 (Annex C): 0 → '0', ±1..±8 → 3..10-bit codes, then a 10-bit prefix followed
 * by the value itself in 8 or 16 bits. As [prefix bits, total bits, value]. */
const DEFAULT_CODES: [number, number, number][] = [
  [1, 1, 0],
  [3, 3, 1],
  [3, 3, -1],
  [4, 4, 2],
  [4, 4, -2],
  [5, 5, 3],
  [5, 5, -3],
  [6, 6, 4],
  [6, 6, -4],
  [7, 7, 5],
  [7, 7, -5],
  [8, 8, 6],
  [8, 8, -6],
  [9, 9, 7],
  [9, 9, -7],
  [10, 10, 8],
  [10, 10, -8],
  [10, 18, 0],
  [10, 26, 0],
];

/** The default table's codes, most significant bit first: '0', '100', '101', '1100', '1101', …, '1111111110'
 * (then 8 bits), '1111111111' (then 16 bits). */
function defaultTable(): HuffmanTable {
  const table: HuffmanTable = [];
  DEFAULT_CODES.forEach(([prefixBits, totalBits, baseValue], i) => {
    let code: number;
    if (i === 0) code = 0;
    else if (i >= 17) code = i === 17 ? 0x3fe : 0x3ff;
    else {
      // 1..8: (n ones)(0)(sign bit), n = |value|.
      const n = Math.abs(baseValue);
      code = (((1 << n) - 1) << 2) | (baseValue < 0 ? 1 : 0);
    }
    addCode(table, code, { prefixBits, totalBits, mode: 1, baseValue });
  });
  return table;
}

function addCode(table: HuffmanTable, code: number, entry: HuffmanCode): void {
  const byCode = table[entry.prefixBits] ?? new Map<number, HuffmanCode>();
  table[entry.prefixBits] = byCode;
  byCode.set(code, entry);
}

/** Bits of `value` (lowest `bits` bits) in reverse order: section 2 stores base codes least significant bit
 * first. */
function reverseBits(value: number, bits: number): number {
  let out = 0;
  for (let i = 0; i < bits; i++) out = (out << 1) | ((value >>> i) & 1);
  return out >>> 0;
}

function readSection2(r: Reader, s: Section | undefined): HuffmanTable[] | undefined {
  if (!s) return undefined;
  r.need(s.dataStart, 2, s.end, 'section 2 table count');
  const count = r.u16(s.dataStart);
  if (count === DEFAULT_TABLE_MARKER) return [defaultTable()];
  if (count === 0) throw corrupt(`${WHAT}: section 2 declares no Huffman tables`);
  const tables: HuffmanTable[] = [];
  let p = s.dataStart + 2;
  for (let t = 0; t < count; t++) {
    r.need(p, 2, s.end, `section 2 table ${t + 1}`);
    const codes = r.u16(p);
    p += 2;
    r.need(p, codes * 9, s.end, `section 2 table ${t + 1} codes`);
    const table: HuffmanTable = [];
    for (let c = 0; c < codes; c++, p += 9) {
      const prefixBits = r.u8(p);
      const totalBits = r.u8(p + 1);
      const mode = r.u8(p + 2);
      const baseValue = r.i16(p + 3);
      const baseCode = r.u32(p + 5);
      if (prefixBits < 1 || prefixBits > 32 || totalBits < prefixBits || totalBits - prefixBits > 32) {
        throw corrupt(
          `${WHAT}: section 2 table ${t + 1} code ${c}: ${prefixBits}-bit prefix, ${totalBits} bits in all`,
        );
      }
      addCode(table, reverseBits(baseCode, prefixBits), { prefixBits, totalBits, mode, baseValue });
    }
    tables.push(table);
  }
  return tables;
}

/**
 * Decodes `count` values from Huffman-coded `bytes` (bits most significant first). Table switch codes move to
 * another table for the following codes. Throws when the data ends first or holds a code no table has.
 */
function huffmanDecode(bytes: Uint8Array, tables: HuffmanTable[], count: number, where: string): Int32Array {
  const out = new Int32Array(count);
  const totalBits = bytes.length * 8;
  let bit = 0;
  const readBit = (): number => {
    const b = (bytes[bit >>> 3]! >>> (7 - (bit & 7))) & 1;
    bit++;
    return b;
  };
  /** The next `n` bits (n ≤ 16) without consuming them; bits past the end read as 0. */
  const peek = (n: number): number => {
    const byte = bit >>> 3;
    const window = ((bytes[byte] ?? 0) << 16) | ((bytes[byte + 1] ?? 0) << 8) | (bytes[byte + 2] ?? 0);
    return (window >>> (24 - (bit & 7) - n)) & ((1 << n) - 1);
  };
  let table = tables[0]!;
  let lookup = lookupFor(table);
  let maxPrefix = table.length - 1;
  let produced = 0;
  let switches = 0;
  while (produced < count) {
    if (bit >= totalBits)
      throw corrupt(`${WHAT}: ${where}: the data ends after ${produced} of ${count} samples`);
    let entry: HuffmanCode | undefined;
    if (lookup) {
      entry = lookup.codes[peek(lookup.bits)];
      if (entry) {
        if (bit + entry.prefixBits > totalBits) {
          throw corrupt(`${WHAT}: ${where}: the data ends after ${produced} of ${count} samples`);
        }
        bit += entry.prefixBits;
      }
    } else {
      let code = 0;
      for (let length = 1; length <= maxPrefix; length++) {
        if (bit >= totalBits) {
          throw corrupt(`${WHAT}: ${where}: the data ends after ${produced} of ${count} samples`);
        }
        code = ((code << 1) | readBit()) >>> 0;
        entry = table[length]?.get(code);
        if (entry) break;
      }
    }
    if (!entry)
      throw corrupt(
        `${WHAT}: ${where}: bit pattern at bit ${bit} is in no Huffman code (sample ${produced})`,
      );
    if (entry.mode === 0) {
      const next = tables[entry.baseValue - 1];
      // A switch produces no sample; cap them so a table that only switches cannot loop forever.
      if (!next || ++switches > totalBits) {
        throw corrupt(`${WHAT}: ${where}: switch to Huffman table ${entry.baseValue}, which does not exist`);
      }
      table = next;
      lookup = lookupFor(table);
      maxPrefix = table.length - 1;
      continue;
    }
    const extra = entry.totalBits - entry.prefixBits;
    if (extra === 0) {
      out[produced++] = entry.baseValue;
      continue;
    }
    if (bit + extra > totalBits) throw corrupt(`${WHAT}: ${where}: the data ends inside sample ${produced}`);
    let value = 0;
    for (let i = 0; i < extra; i++) value = value * 2 + readBit();
    // The original value follows in two's complement.
    if (value >= 2 ** (extra - 1)) value -= 2 ** extra;
    out[produced++] = value;
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------------
// Sections 3 and 4

function readSection3(r: Reader, s: Section): { leads: LeadDefinition[]; referenceBeatSubtraction: boolean } {
  r.need(s.dataStart, 2, s.end, 'section 3 header');
  const count = r.u8(s.dataStart);
  const flags = r.u8(s.dataStart + 1);
  r.need(s.dataStart + 2, count * 9, s.end, `section 3 definitions of ${count} leads`);
  const leads: LeadDefinition[] = [];
  for (let i = 0; i < count; i++) {
    const p = s.dataStart + 2 + i * 9;
    const start = r.u32(p);
    const end = r.u32(p + 4);
    const code = r.u8(p + 8);
    if (end < start)
      throw corrupt(`${WHAT}: section 3 lead ${i}: ends at sample ${end} before it starts (${start})`);
    leads.push({ code, name: scpLeadName(code) ?? `lead code ${code}`, start, end });
  }
  return { leads, referenceBeatSubtraction: (flags & 1) === 1 };
}

function readSection4(r: Reader, s: Section | undefined): QrsZones | undefined {
  if (!s) return undefined;
  r.need(s.dataStart, 6, s.end, 'section 4 header');
  const zones: QrsZones = {
    referenceLengthMs: r.u16(s.dataStart),
    fiducial: r.u16(s.dataStart + 2),
    subtraction: [],
    protectedZones: [],
  };
  const count = r.u16(s.dataStart + 4);
  let p = s.dataStart + 6;
  r.need(p, count * 14, s.end, `section 4 subtraction zones of ${count} QRS complexes`);
  for (let i = 0; i < count; i++, p += 14) {
    zones.subtraction.push({
      type: r.u16(p),
      start: r.u32(p + 2),
      fiducial: r.u32(p + 6),
      end: r.u32(p + 10),
    });
  }
  // Protected zones are optional (only bimodal compression needs them).
  if (p + count * 8 <= s.end) {
    for (let i = 0; i < count; i++, p += 8) zones.protectedZones.push({ start: r.u32(p), end: r.u32(p + 4) });
  }
  return zones;
}

// ---------------------------------------------------------------------------------------------------------
// Sections 5 and 6: encoded samples

interface EncodedData {
  /** Nanovolts per unit. */
  avm: number;
  /** Microseconds between samples. */
  intervalUs: number;
  difference: number;
  bimodal: boolean;
  leads: Uint8Array[];
}

function readEncoded(r: Reader, s: Section, leadCount: number): EncodedData {
  r.need(s.dataStart, 6 + 2 * leadCount, s.end, `section ${s.id} header`);
  const avm = r.u16(s.dataStart);
  const intervalUs = r.u16(s.dataStart + 2);
  const difference = r.u8(s.dataStart + 4);
  const bimodal = r.u8(s.dataStart + 5) === 1;
  if (avm === 0) throw corrupt(`${WHAT}: section ${s.id}: amplitude multiplier is 0`);
  if (intervalUs === 0) throw corrupt(`${WHAT}: section ${s.id}: sample interval is 0`);
  if (difference > 2)
    throw unsupported(`${WHAT}: section ${s.id}: difference encoding ${difference} is not defined`);
  const leads: Uint8Array[] = [];
  let p = s.dataStart + 6 + 2 * leadCount;
  for (let i = 0; i < leadCount; i++) {
    const length = r.u16(s.dataStart + 6 + 2 * i);
    r.need(p, length, s.end, `section ${s.id} data of lead ${i} (${length} bytes)`);
    leads.push(r.bytes.subarray(p, p + length));
    p += length;
  }
  return { avm, intervalUs, difference, bimodal, leads };
}

/** Bytes → `count` values: Huffman (section 2) or plain int16, then undoing first or second differences. */
function decodeValues(
  data: Uint8Array,
  count: number,
  tables: HuffmanTable[] | undefined,
  difference: number,
  where: string,
): { values: Int32Array; decoded: number } {
  let values: Int32Array;
  let decoded = count;
  if (tables) {
    values = huffmanDecode(data, tables, count, where);
  } else {
    decoded = Math.min(count, data.length >> 1);
    values = new Int32Array(count);
    const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
    for (let i = 0; i < decoded; i++) values[i] = view.getInt16(2 * i, true);
  }
  if (difference === 1) {
    for (let i = 1; i < decoded; i++) values[i] = values[i]! + values[i - 1]!;
  } else if (difference === 2) {
    // The first two values are samples; each later one is the second difference.
    for (let i = 2; i < decoded; i++) values[i] = values[i]! + 2 * values[i - 1]! - values[i - 2]!;
  }
  return { values, decoded };
}

/** Stored-sample count of a bimodally compressed lead: full rate inside protected zones, one value per
 * `rate` samples outside them. */
function bimodalLayout(lead: LeadDefinition, zones: { start: number; end: number }[], rate: number) {
  // Anchors: [position (0-based in the lead), how many samples the stored value covers].
  const blocks: [number, number][] = [];
  const sorted = zones.filter((z) => z.end >= z.start).sort((a, b) => a.start - b.start);
  let t = lead.start;
  let z = 0;
  while (t <= lead.end) {
    while (z < sorted.length && sorted[z]!.end < t) z++;
    const zone = sorted[z];
    if (zone && zone.start <= t) {
      blocks.push([t - lead.start, 1]);
      t++;
      continue;
    }
    const limit = Math.min(lead.end + 1, zone ? zone.start : lead.end + 1);
    const span = Math.min(rate, limit - t);
    blocks.push([t - lead.start, span]);
    t += span;
  }
  return blocks;
}

/** Rebuilds a full-rate lead from bimodal values: each decimated value sits at the centre of the samples it
 * stood for; samples between anchors are linearly interpolated. */
function expandBimodal(values: Int32Array, blocks: [number, number][], length: number): Float64Array {
  const out = new Float64Array(length);
  const anchor = (k: number) => blocks[k]![0] + (blocks[k]![1] - 1) / 2;
  for (let k = 0; k < blocks.length; k++) {
    const [start, span] = blocks[k]!;
    for (let i = start; i < start + span; i++) {
      const position = i;
      const here = anchor(k);
      const other = position < here ? k - 1 : k + 1;
      if (span === 1 || other < 0 || other >= blocks.length) {
        out[i] = values[k]!;
        continue;
      }
      const there = anchor(other);
      const w = (position - here) / (there - here);
      out[i] = values[k]! + w * (values[other]! - values[k]!);
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------------

/**
 * Parses an SCP-ECG record. Checks the file CRC and every section's CRC, decodes the rhythm data of section 6
 * (Huffman with the default or custom tables, first/second differences, bimodal compression) and adds back the
 * reference beat (section 5) where section 3 says it was subtracted. Section 5 also becomes `medianBeat`.
 * Not SCP-ECG → UNSUPPORTED_FORMAT; a bad CRC, a section that runs past the record, or data that ends before
 * the samples section 3 announces → CORRUPT_FILE.
 */
export function parseScpEcg(bytes: Uint8Array): Ecg {
  if (bytes.length < 22)
    throw unsupported(`${WHAT}: ${bytes.length} bytes is too short for an SCP-ECG record`);
  const r = new Reader(bytes);
  if (r.u16(8) !== 0) throw unsupported(`${WHAT}: the first section is not section 0`);
  const recordLength = r.u32(2);
  if (recordLength > bytes.length) {
    throw corrupt(
      `${WHAT}: record length says ${recordLength} bytes, the file has ${bytes.length} (truncated)`,
    );
  }
  if (recordLength < 22) throw corrupt(`${WHAT}: record length ${recordLength} is too short`);
  const fileCrc = crcCcitt(bytes, 2, recordLength);
  if (fileCrc !== r.u16(0))
    throw corrupt(`${WHAT}: file CRC ${r.u16(0)} stored, ${fileCrc} computed (bytes 2–${recordLength})`);

  const sections = readSections(r, recordLength);
  const s3 = sections.get(3);
  const s6 = sections.get(6);
  if (!s3) throw corrupt(`${WHAT}: no section 3 (lead definitions)`);
  if (!s6) throw corrupt(`${WHAT}: no section 6 (rhythm data)`);
  const section1 = sections.has(1) ? readSection1(r, sections.get(1)!) : { patient: {}, acquisition: {} };
  const tables = readSection2(r, sections.get(2));
  const { leads: definitions, referenceBeatSubtraction } = readSection3(r, s3);
  if (definitions.length === 0) throw corrupt(`${WHAT}: section 3 defines no leads`);
  const zones = readSection4(r, sections.get(4));
  const rhythm = readEncoded(r, s6, definitions.length);

  const firstSample = definitions.reduce((m, d) => Math.min(m, d.start), Number.POSITIVE_INFINITY);
  const lastSample = definitions.reduce((m, d) => Math.max(m, d.end), 0);
  const sampleCount = lastSample - firstSample + 1;
  assertSampleBudget(definitions.length, sampleCount, WHAT);

  const s5 = sections.get(5);
  const reference = s5 ? readEncoded(r, s5, definitions.length) : undefined;
  const rate = reference ? Math.round(rhythm.intervalUs / reference.intervalUs) : 1;
  const outputIntervalUs = rhythm.bimodal && reference ? reference.intervalUs : rhythm.intervalUs;
  const samplingFrequency = 1e6 / outputIntervalUs;
  if (rhythm.bimodal && (!reference || !zones || rate < 1 || rate > 4 || zones.protectedZones.length === 0)) {
    throw corrupt(`${WHAT}: bimodal compression without the reference beat and protected zones it needs`);
  }

  // Reference beats in µV, one per lead, at the output rate.
  let referenceBeats: Float32Array[] | undefined;
  if (reference && zones && zones.referenceLengthMs > 0) {
    const beatSamples = Math.round((zones.referenceLengthMs * 1000) / reference.intervalUs);
    assertSampleBudget(definitions.length, beatSamples, `${WHAT} reference beat`);
    referenceBeats = reference.leads.map((data, i) => {
      const { values, decoded } = decodeValues(
        data,
        beatSamples,
        tables,
        reference.difference,
        `section 5 lead ${definitions[i]!.name}`,
      );
      if (decoded < beatSamples) {
        throw corrupt(
          `${WHAT}: section 5 lead ${definitions[i]!.name}: ${decoded} of ${beatSamples} reference-beat samples`,
        );
      }
      const beat = new Float32Array(beatSamples);
      for (let s = 0; s < beatSamples; s++) beat[s] = (values[s]! * reference.avm) / 1000;
      return beat;
    });
  }

  let padded = 0;
  const samples = definitions.map((definition, i) => {
    const where = `section 6 lead ${definition.name}`;
    const length = definition.end - definition.start + 1;
    const data = rhythm.leads[i]!;
    let full: Float64Array;
    if (rhythm.bimodal) {
      const blocks = bimodalLayout(definition, zones!.protectedZones, rate);
      const { values } = decodeValues(data, blocks.length, tables, rhythm.difference, where);
      full = expandBimodal(values, blocks, length);
    } else {
      const { values, decoded } = decodeValues(data, length, tables, rhythm.difference, where);
      // Some writers put sample 0 as the start and the sample count as the end, one more than they store.
      // Tolerate exactly that (the last sample becomes NaN); any other shortfall is a truncated lead.
      if (decoded < length && !(definition.start === 0 && decoded === length - 1)) {
        throw corrupt(
          `${WHAT}: ${where}: ${data.length} bytes hold ${decoded} samples, section 3 says ${length}`,
        );
      }
      padded = Math.max(padded, length - decoded);
      full = new Float64Array(length);
      for (let s = 0; s < decoded; s++) full[s] = values[s]!;
      for (let s = decoded; s < length; s++) full[s] = Number.NaN;
    }
    const out = new Float32Array(sampleCount).fill(Number.NaN);
    const offset = definition.start - firstSample;
    for (let s = 0; s < length; s++) out[offset + s] = (full[s]! * rhythm.avm) / 1000;
    return out;
  });

  if (referenceBeatSubtraction) {
    if (!referenceBeats || !zones) {
      throw corrupt(
        `${WHAT}: section 3 says the reference beat was subtracted, but sections 4 and 5 are missing`,
      );
    }
    for (const qrs of zones.subtraction) {
      if (qrs.type !== 0) continue;
      definitions.forEach((definition, i) => {
        const beat = referenceBeats![i]!;
        const out = samples[i]!;
        for (let t = Math.max(qrs.start, definition.start); t <= Math.min(qrs.end, definition.end); t++) {
          const m = t - qrs.fiducial + zones.fiducial - 1;
          const o = t - firstSample;
          if (m >= 0 && m < beat.length && o >= 0 && o < out.length) out[o] = out[o]! + beat[m]!;
        }
      });
    }
  }

  const names = uniqueNames(definitions.map((d) => d.name));
  const leads: EcgLead[] = samples.map((samplesUv, i) => ({ name: names[i]!, samplesUv }));
  const acquisition: Record<string, string | number> = {
    scpSections: [...sections.keys()].sort((a, b) => a - b).join(','),
    scpVersion: s6.version,
    encoding: `${tables ? 'huffman' : 'raw'}${rhythm.difference ? `, difference ${rhythm.difference}` : ''}${rhythm.bimodal ? ', bimodal' : ''}${referenceBeatSubtraction ? ', reference beat subtracted' : ''}`,
    amplitudeNanovoltsPerUnit: rhythm.avm,
    ...section1.acquisition,
  };
  if (padded > 0) acquisition.paddedSamples = padded;
  const ecg: Ecg = {
    leads,
    samplingFrequency,
    sampleCount,
    durationSeconds: sampleCount / samplingFrequency,
    acquisition,
    patient: section1.patient,
    source: { format: 'scp-ecg' },
  };
  if (section1.startTime) ecg.startTime = section1.startTime;
  if (section1.device) ecg.device = section1.device;
  if (referenceBeats && reference) {
    const beat: EcgBeat = {
      leads: referenceBeats.map((samplesUv, i) => ({ name: names[i]!, samplesUv })),
      samplingFrequency: 1e6 / reference.intervalUs,
      sampleCount: referenceBeats[0]?.length ?? 0,
    };
    ecg.medianBeat = beat;
  }
  return ecg;
}
