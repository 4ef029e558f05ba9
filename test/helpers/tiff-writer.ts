/**
 * A small TIFF writer for tests: classic or BigTIFF, either byte order, NDPI-style 64-bit offsets, SubIFDs,
 * any extra tag. Pixel data is uncompressed (so libtiff/sharp can decode it) unless `tileData` supplies
 * ready-made compressed bytes. `shareTileData` points every tile at one blob, which makes a 40k-pixel level
 * cost a few hundred kB: enough to test level choice without megapixels of data.
 */

export interface ExtraTag {
  tag: number;
  /** TIFF type: 1 BYTE, 2 ASCII, 3 SHORT, 4 LONG, 5 RATIONAL, 7 UNDEFINED, 9 SLONG, 11 FLOAT, 12 DOUBLE, 16 LONG8. */
  type: number;
  values: number[] | string;
}

export interface WriteIfd {
  width: number;
  height: number;
  /** Tile size; without it the image is one strip. */
  tile?: [number, number];
  samplesPerPixel?: number;
  bitsPerSample?: number;
  /** Compression tag value (default 1). Pixel bytes stay raw unless `tileData` is given. */
  compression?: number;
  /** Photometric (default: 2 RGB for 3 samples, 1 black-is-zero otherwise). */
  photometric?: number;
  /** Byte value of every raw sample. */
  fill?: number;
  /** Bytes stored for every tile/strip instead of raw pixels (e.g. a JPEG stream). */
  tileData?: Uint8Array;
  /** Bytes of each tile/strip in turn (row-major), e.g. JPEG 2000 codestreams of real pixels; an empty
   * array is a missing tile (offset and byte count 0). */
  tiles?: Uint8Array[];
  shareTileData?: boolean;
  description?: string;
  software?: string;
  make?: string;
  dateTime?: string;
  resolution?: { x: number; y: number; unit: number };
  newSubfileType?: number;
  ndpi?: { lens: number; focalPlane?: number; propertyMap?: string };
  extraTags?: ExtraTag[];
  subIfds?: WriteIfd[];
}

export interface WriteOptions {
  bigTiff?: boolean;
  bigEndian?: boolean;
  /** Classic TIFF with 8-byte next-IFD pointers and the first offset's high bits after it (Hamamatsu). */
  ndpi?: boolean;
  /** Where everything after the header sits in the (virtual) file; see `sparseSource`. */
  baseOffset?: number;
  /** Point the last directory's next pointer here (to build loops and dangling chains). */
  lastNext?: number;
}

const TYPE_SIZE: Record<number, number> = {
  1: 1,
  2: 1,
  3: 2,
  4: 4,
  5: 8,
  7: 1,
  9: 4,
  11: 4,
  12: 8,
  13: 4,
  16: 8,
  18: 8,
};
const HEADER = 16;

class Growable {
  bytes = new Uint8Array(1 << 16);
  length = HEADER;
  constructor(private readonly le: boolean) {}

  alloc(n: number): number {
    if (this.length % 2) this.length++;
    const at = this.length;
    this.length += n;
    while (this.length > this.bytes.byteLength) {
      const next = new Uint8Array(this.bytes.byteLength * 2);
      next.set(this.bytes);
      this.bytes = next;
    }
    return at;
  }

  private dv(): DataView {
    return new DataView(this.bytes.buffer);
  }

  put(at: number, type: number, value: number): void {
    const dv = this.dv();
    switch (type) {
      case 1:
      case 2:
      case 7:
        dv.setUint8(at, value);
        break;
      case 3:
        dv.setUint16(at, value, this.le);
        break;
      case 4:
      case 13:
        dv.setUint32(at, value >>> 0, this.le);
        break;
      case 9:
        dv.setInt32(at, value, this.le);
        break;
      case 11:
        dv.setFloat32(at, value, this.le);
        break;
      case 12:
        dv.setFloat64(at, value, this.le);
        break;
      case 5:
        dv.setUint32(at, Math.round(value * 10000), this.le);
        dv.setUint32(at + 4, 10000, this.le);
        break;
      case 16:
      case 18:
        dv.setBigUint64(at, BigInt(value), this.le);
        break;
      default:
        throw new Error(`writer: type ${type}`);
    }
  }
}

interface Entry {
  tag: number;
  type: number;
  values: number[];
}

function encodeEntry(tag: number, type: number, values: number[] | string): Entry {
  if (typeof values === 'string') {
    return { tag, type: 2, values: [...new TextEncoder().encode(values), 0] };
  }
  return { tag, type, values };
}

export function writeTiff(ifds: WriteIfd[], opts: WriteOptions = {}): Uint8Array {
  const le = !opts.bigEndian;
  const big = opts.bigTiff ?? false;
  const ndpi = opts.ndpi ?? false;
  const base = opts.baseOffset ?? 0;
  const buf = new Growable(le);
  const abs = (local: number): number => (local < HEADER ? local : base + local);
  const offsetType = big ? 16 : 4;

  function pixelBlobs(ifd: WriteIfd): { offsets: number[]; counts: number[] } {
    const spp = ifd.samplesPerPixel ?? 3;
    const bytesPerPixel = spp * Math.ceil((ifd.bitsPerSample ?? 8) / 8);
    const [tw, th] = ifd.tile ?? [ifd.width, ifd.height];
    const segments = ifd.tile ? Math.ceil(ifd.width / tw) * Math.ceil(ifd.height / th) : 1;
    const raw = (): Uint8Array => new Uint8Array(tw * th * bytesPerPixel).fill(ifd.fill ?? 128);
    const offsets: number[] = [];
    const counts: number[] = [];
    let shared: { at: number; n: number } | undefined;
    for (let i = 0; i < segments; i++) {
      const own = ifd.tiles?.[i];
      if (own !== undefined) {
        if (own.byteLength === 0) {
          offsets.push(0);
          counts.push(0);
          continue;
        }
        const at = buf.alloc(own.byteLength);
        buf.bytes.set(own, at);
        offsets.push(abs(at));
        counts.push(own.byteLength);
        continue;
      }
      if (shared && ifd.shareTileData) {
        offsets.push(abs(shared.at));
        counts.push(shared.n);
        continue;
      }
      const data = ifd.tileData ?? raw();
      const at = buf.alloc(data.byteLength);
      buf.bytes.set(data, at);
      shared = { at, n: data.byteLength };
      offsets.push(abs(at));
      counts.push(data.byteLength);
    }
    return { offsets, counts };
  }

  function writeIfd(ifd: WriteIfd): { at: number; nextAt: number } {
    const spp = ifd.samplesPerPixel ?? 3;
    const { offsets, counts } = pixelBlobs(ifd);
    const subOffsets = (ifd.subIfds ?? []).map((sub) => abs(writeIfd(sub).at));
    const entries: Entry[] = [
      { tag: 256, type: 4, values: [ifd.width] },
      { tag: 257, type: 4, values: [ifd.height] },
      { tag: 258, type: 3, values: Array(spp).fill(ifd.bitsPerSample ?? 8) },
      { tag: 259, type: 3, values: [ifd.compression ?? 1] },
      { tag: 262, type: 3, values: [ifd.photometric ?? (spp >= 3 ? 2 : 1)] },
      { tag: 277, type: 3, values: [spp] },
      { tag: 284, type: 3, values: [1] },
    ];
    if (ifd.newSubfileType !== undefined) entries.push({ tag: 254, type: 4, values: [ifd.newSubfileType] });
    if (ifd.tile) {
      entries.push({ tag: 322, type: 3, values: [ifd.tile[0]] });
      entries.push({ tag: 323, type: 3, values: [ifd.tile[1]] });
      entries.push({ tag: 324, type: offsetType, values: offsets });
      entries.push({ tag: 325, type: 4, values: counts });
    } else {
      entries.push({ tag: 273, type: offsetType, values: offsets });
      entries.push({ tag: 278, type: 4, values: [ifd.height] });
      entries.push({ tag: 279, type: 4, values: counts });
    }
    if (ifd.description !== undefined) entries.push(encodeEntry(270, 2, ifd.description));
    if (ifd.make !== undefined) entries.push(encodeEntry(271, 2, ifd.make));
    if (ifd.software !== undefined) entries.push(encodeEntry(305, 2, ifd.software));
    if (ifd.dateTime !== undefined) entries.push(encodeEntry(306, 2, ifd.dateTime));
    if (ifd.resolution) {
      entries.push({ tag: 282, type: 5, values: [ifd.resolution.x] });
      entries.push({ tag: 283, type: 5, values: [ifd.resolution.y] });
      entries.push({ tag: 296, type: 3, values: [ifd.resolution.unit] });
    }
    if (subOffsets.length > 0) entries.push({ tag: 330, type: big ? 18 : 13, values: subOffsets });
    if (ifd.ndpi) {
      entries.push({ tag: 65420, type: 3, values: [1] });
      entries.push({ tag: 65421, type: 11, values: [ifd.ndpi.lens] });
      entries.push({ tag: 65424, type: 9, values: [ifd.ndpi.focalPlane ?? 0] });
      if (ifd.ndpi.propertyMap) entries.push(encodeEntry(65449, 2, ifd.ndpi.propertyMap));
    }
    for (const extra of ifd.extraTags ?? []) entries.push(encodeEntry(extra.tag, extra.type, extra.values));
    entries.sort((a, b) => a.tag - b.tag);

    const inline = big ? 8 : 4;
    const valueAt = new Map<Entry, number>();
    for (const entry of entries) {
      const size = (TYPE_SIZE[entry.type] ?? 1) * entry.values.length;
      if (size <= inline) continue;
      const at = buf.alloc(size);
      entry.values.forEach((v, i) => {
        buf.put(at + i * (TYPE_SIZE[entry.type] ?? 1), entry.type, v);
      });
      valueAt.set(entry, at);
    }
    const countSize = big ? 8 : 2;
    const entrySize = big ? 20 : 12;
    const nextSize = big || ndpi ? 8 : 4;
    const at = buf.alloc(countSize + entries.length * entrySize + nextSize);
    buf.put(at, big ? 16 : 3, entries.length);
    entries.forEach((entry, i) => {
      const e = at + countSize + i * entrySize;
      buf.put(e, 3, entry.tag);
      buf.put(e + 2, 3, entry.type);
      buf.put(e + 4, big ? 16 : 4, entry.values.length);
      const field = e + (big ? 12 : 8);
      const out = valueAt.get(entry);
      if (out === undefined) {
        entry.values.forEach((v, k) => {
          buf.put(field + k * (TYPE_SIZE[entry.type] ?? 1), entry.type, v);
        });
      } else {
        // Classic TIFF keeps the low 32 bits only; NDPI readers restore the rest.
        buf.put(field, big ? 16 : 4, big ? abs(out) : abs(out) % 2 ** 32);
      }
    });
    return { at, nextAt: at + countSize + entries.length * entrySize };
  }

  const written = ifds.map((ifd) => writeIfd(ifd));
  const view = new DataView(buf.bytes.buffer);
  view.setUint8(0, le ? 0x49 : 0x4d);
  view.setUint8(1, le ? 0x49 : 0x4d);
  view.setUint16(2, big ? 43 : 42, le);
  const first = written[0] ? abs(written[0].at) : 0;
  if (big) {
    view.setUint16(4, 8, le);
    view.setUint16(6, 0, le);
    view.setBigUint64(8, BigInt(first), le);
  } else {
    view.setUint32(4, first % 2 ** 32, le);
    if (ndpi) view.setUint32(8, Math.floor(first / 2 ** 32), le);
  }
  written.forEach((w, i) => {
    const next = written[i + 1] ? abs(written[i + 1]!.at) : (opts.lastNext ?? 0);
    if (big || ndpi) view.setBigUint64(w.nextAt, BigInt(next), le);
    else view.setUint32(w.nextAt, next, le);
  });
  return buf.bytes.slice(0, buf.length);
}

/** A virtual file of `base + bytes.length` bytes: the 16-byte header at 0, the rest of `bytes` at `base`. */
export function sparseSource(bytes: Uint8Array, base: number) {
  const size = base + bytes.byteLength;
  return {
    size,
    async read(offset: number, length: number): Promise<Uint8Array> {
      const out = new Uint8Array(Math.max(0, Math.min(length, size - offset)));
      for (let i = 0; i < out.byteLength; i++) {
        const at = offset + i;
        const local = at < HEADER ? at : at - base;
        out[i] =
          local >= 0 && local < bytes.byteLength && (at < HEADER || local >= HEADER)
            ? (bytes[local] ?? 0)
            : 0;
      }
      return out;
    },
  };
}

interface J2KEncoderModule {
  J2KEncoder: new () => {
    getDecodedBuffer(info: {
      width: number;
      height: number;
      bitsPerSample: number;
      componentCount: number;
      isSigned: boolean;
      isUsingColorTransform: boolean;
    }): Uint8Array;
    setDecompositions(n: number): void;
    encode(): void;
    getEncodedBuffer(): Uint8Array;
  };
}

let j2kEncoder: Promise<J2KEncoderModule> | undefined;

/** A lossless JPEG 2000 codestream of 8-bit interleaved samples (OpenJPEG's WASM build, as Aperio slides
 * are written with OpenJPEG-compatible codecs). */
export async function encodeJ2k(
  samples: Uint8Array,
  width: number,
  height: number,
  components: 1 | 3,
): Promise<Uint8Array> {
  j2kEncoder ??= (async () => {
    const { createRequire } = await import('node:module');
    const require = createRequire(import.meta.url);
    const factory = require('@cornerstonejs/codec-openjpeg/wasmjs') as (
      o: object,
    ) => Promise<J2KEncoderModule>;
    return factory({ print: () => {}, printErr: () => {} });
  })();
  const module = await j2kEncoder;
  const encoder = new module.J2KEncoder();
  encoder
    .getDecodedBuffer({
      width,
      height,
      bitsPerSample: 8,
      componentCount: components,
      isSigned: false,
      isUsingColorTransform: false,
    })
    .set(samples);
  encoder.setDecompositions(3);
  encoder.encode();
  return encoder.getEncodedBuffer().slice();
}
