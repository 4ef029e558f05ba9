/**
 * Writes SCP-ECG records for tests: sections 0, 1, 3 and 6 always; 2 (default Huffman table or raw), 4 and 5
 * (reference beat) when asked. Written from the layout EN 1064 gives, independently of the parser.
 */
import { crcCcitt } from '../../src/formats/ecg/scp-ecg.js';

export interface ScpLead {
  /** SCP lead code (1 = I, 2 = II, 3 = V1 …). */
  code: number;
  samples: ArrayLike<number>;
  start?: number;
  end?: number;
}

export interface ScpRecordSpec {
  leads: ScpLead[];
  avmNv?: number;
  intervalUs?: number;
  encoding?: 'raw' | 'huffman';
  difference?: 0 | 1 | 2;
  /** Replaces section 2 with these raw bytes (custom tables); section 6 lead data then taken from `rawLeadData`. */
  section2?: Uint8Array;
  rawLeadData?: Uint8Array[];
  referenceBeat?: {
    samples: ArrayLike<number>[];
    /** 1-based fiducial within the reference beat. */
    fiducial: number;
    lengthMs: number;
    /** Subtraction zones: 1-based sample numbers. */
    zones: { start: number; fiducial: number; end: number }[];
    subtracted: boolean;
    protectedZones?: { start: number; end: number }[];
    intervalUs?: number;
  };
  bimodal?: boolean;
  /** Section 1 tags as [tag, bytes]. */
  tags?: [number, Uint8Array][];
}

class Bytes {
  private parts: number[] = [];
  u8(v: number): this {
    this.parts.push(v & 0xff);
    return this;
  }
  u16(v: number): this {
    return this.u8(v).u8(v >>> 8);
  }
  i16(v: number): this {
    return this.u16(v & 0xffff);
  }
  u32(v: number): this {
    return this.u16(v & 0xffff).u16(v >>> 16);
  }
  bytes(b: ArrayLike<number>): this {
    for (let i = 0; i < b.length; i++) this.u8(b[i]!);
    return this;
  }
  get length(): number {
    return this.parts.length;
  }
  done(): Uint8Array {
    return Uint8Array.from(this.parts);
  }
}

class BitWriter {
  private bytes: number[] = [];
  private current = 0;
  private count = 0;
  bits(value: number, n: number): void {
    for (let i = n - 1; i >= 0; i--) {
      this.current = (this.current << 1) | ((value >>> i) & 1);
      if (++this.count === 8) {
        this.bytes.push(this.current);
        this.current = 0;
        this.count = 0;
      }
    }
  }
  done(): Uint8Array {
    if (this.count > 0) this.bytes.push(this.current << (8 - this.count));
    return Uint8Array.from(this.bytes);
  }
}

/** Encodes values with the EN 1064 default Huffman table. */
export function huffmanDefault(values: ArrayLike<number>): Uint8Array {
  const w = new BitWriter();
  for (let i = 0; i < values.length; i++) {
    const v = values[i]!;
    const a = Math.abs(v);
    if (v === 0) w.bits(0, 1);
    else if (a <= 8) {
      w.bits((1 << a) - 1, a);
      w.bits(0, 1);
      w.bits(v < 0 ? 1 : 0, 1);
    } else if (v >= -128 && v <= 127) {
      w.bits(0x3fe, 10);
      w.bits(v & 0xff, 8);
    } else {
      w.bits(0x3ff, 10);
      w.bits(v & 0xffff, 16);
    }
  }
  return w.done();
}

export function differences(samples: ArrayLike<number>, order: 0 | 1 | 2): number[] {
  const x = Array.from(samples);
  if (order === 0) return x;
  if (order === 1) return x.map((v, i) => (i === 0 ? v : v - x[i - 1]!));
  return x.map((v, i) => (i < 2 ? v : v - 2 * x[i - 1]! + x[i - 2]!));
}

function encodeLead(
  samples: ArrayLike<number>,
  encoding: 'raw' | 'huffman',
  difference: 0 | 1 | 2,
): Uint8Array {
  const d = differences(samples, difference);
  if (encoding === 'huffman') return huffmanDefault(d);
  const b = new Bytes();
  for (const v of d) b.i16(v);
  return b.done();
}

function section(id: number, data: Uint8Array, version = 20): Uint8Array {
  const padded = data.length % 2 === 1 ? Uint8Array.from([...data, 0]) : data;
  const body = new Bytes()
    .u16(id)
    .u32(16 + padded.length)
    .u8(version)
    .u8(version);
  body.bytes(id === 0 ? [83, 67, 80, 69, 67, 71] : [0, 0, 0, 0, 0, 0]).bytes(padded);
  const withoutCrc = body.done();
  const crc = crcCcitt(withoutCrc);
  return new Bytes().u16(crc).bytes(withoutCrc).done();
}

function encodedSection(
  avm: number,
  interval: number,
  difference: number,
  bimodal: boolean,
  leads: Uint8Array[],
): Uint8Array {
  const b = new Bytes()
    .u16(avm)
    .u16(interval)
    .u8(difference)
    .u8(bimodal ? 1 : 0);
  for (const l of leads) b.u16(l.length);
  for (const l of leads) b.bytes(l);
  return b.done();
}

export function writeScp(spec: ScpRecordSpec): Uint8Array {
  const encoding = spec.encoding ?? 'huffman';
  const difference = spec.difference ?? (encoding === 'huffman' ? 2 : 0);
  const avm = spec.avmNv ?? 1000;
  const interval = spec.intervalUs ?? 2000;
  const sections = new Map<number, Uint8Array>();

  const s1 = new Bytes();
  const tags = spec.tags ?? [
    [25, Uint8Array.from([0xd2, 0x07, 11, 22])],
    [26, Uint8Array.from([9, 10, 0])],
  ];
  for (const [tag, value] of tags) s1.u8(tag).u16(value.length).bytes(value);
  s1.u8(255).u16(0);
  sections.set(1, s1.done());

  if (spec.section2) sections.set(2, spec.section2);
  else if (encoding === 'huffman') sections.set(2, new Bytes().u16(19999).done());

  const ref = spec.referenceBeat;
  const s3 = new Bytes().u8(spec.leads.length).u8((ref?.subtracted ? 1 : 0) | 4 | (spec.leads.length << 3));
  for (const lead of spec.leads) {
    s3.u32(lead.start ?? 1)
      .u32(lead.end ?? (lead.start ?? 1) + lead.samples.length - 1)
      .u8(lead.code);
  }
  sections.set(3, s3.done());

  if (ref) {
    const s4 = new Bytes().u16(ref.lengthMs).u16(ref.fiducial).u16(ref.zones.length);
    for (const z of ref.zones) s4.u16(0).u32(z.start).u32(z.fiducial).u32(z.end);
    for (const z of ref.protectedZones ?? ref.zones) s4.u32(z.start).u32(z.end);
    sections.set(4, s4.done());
    sections.set(
      5,
      encodedSection(
        avm,
        ref.intervalUs ?? interval,
        difference,
        false,
        ref.samples.map((s) => encodeLead(s, encoding, difference)),
      ),
    );
  }
  const leadData = spec.rawLeadData ?? spec.leads.map((l) => encodeLead(l.samples, encoding, difference));
  sections.set(6, encodedSection(avm, interval, difference, spec.bimodal ?? false, leadData));

  // Section 0 lists sections 0–11; data sections follow in id order.
  const pointerCount = 12;
  const s0Length = 16 + 10 * pointerCount;
  let index = 6 + s0Length + 1;
  const built = new Map<number, Uint8Array>();
  for (const [id, data] of [...sections.entries()].sort((a, b) => a[0] - b[0]))
    built.set(id, section(id, data));
  const s0 = new Bytes();
  s0.u16(0).u32(s0Length).u32(7);
  for (let id = 1; id < pointerCount; id++) {
    const s = built.get(id);
    s0.u16(id)
      .u32(s ? s.length : 0)
      .u32(s ? index : 0);
    if (s) index += s.length;
  }
  const all = new Bytes().bytes(section(0, s0.done()));
  for (const [, s] of [...built.entries()].sort((a, b) => a[0] - b[0])) all.bytes(s);
  const body = all.done();
  const record = new Bytes()
    .u32(body.length + 6)
    .bytes(body)
    .done();
  return new Bytes().u16(crcCcitt(record)).bytes(record).done();
}
