/**
 * Palette Color Lookup Tables (PS3.3 C.7.6.3.1.5–6 and C.7.9), plain or segmented, reduced to 8 bits per entry
 * for display.
 */
import type { DataSet } from 'dicom-parser';
import { AppError } from '../../errors.js';
import type { DicomInstance } from './parse-dicom.js';
import { TAG } from './tags.js';

export interface PaletteColorLut {
  /** Stored pixel value that maps to entry 0; values below map to entry 0, above to the last entry. */
  firstMapped: number;
  red: Uint8Array;
  green: Uint8Array;
  blue: Uint8Array;
}

function corrupt(message: string): AppError {
  return new AppError('CORRUPT_FILE', message, { retryable: false });
}

const SEGMENT_DISCRETE = 0;
const SEGMENT_LINEAR = 1;
const SEGMENT_INDIRECT = 2;

/** Expands Segmented Palette Color Lookup Table Data (PS3.3 C.7.9.2): discrete runs, linear ramps from the last
 * value, and indirect copies of earlier segments. The indirect offset counts 16-bit words from the start of the
 * data, as pydicom and GDCM read it. Bounded by `entries` and by a budget of segments, so a malicious table
 * that points back at itself ends. */
export function expandSegmentedLut(words: ArrayLike<number>, entries: number): Uint16Array {
  const out = new Uint16Array(entries);
  let written = 0;
  let budget = Math.max(64, words.length * 4);
  const expand = (start: number, segmentLimit: number, depth: number): void => {
    let pos = start;
    let segments = 0;
    while (pos + 1 < words.length && segments < segmentLimit && written < entries && budget-- > 0) {
      const segmentStart = pos;
      const opcode = words[pos]!;
      const length = words[pos + 1]!;
      pos += 2;
      if (opcode === SEGMENT_DISCRETE) {
        for (let k = 0; k < length && pos + k < words.length && written < entries; k++)
          out[written++] = words[pos + k]!;
        pos += length;
      } else if (opcode === SEGMENT_LINEAR) {
        if (written === 0)
          throw corrupt('segmented palette starts with a linear segment, which has no start value');
        if (pos >= words.length) break;
        const y0 = out[written - 1]!;
        const y1 = words[pos]!;
        pos += 1;
        for (let k = 1; k <= length && written < entries; k++)
          out[written++] = Math.round(y0 + ((y1 - y0) * k) / length);
      } else if (opcode === SEGMENT_INDIRECT) {
        if (written === 0) throw corrupt('segmented palette starts with an indirect segment');
        if (pos + 1 >= words.length) break;
        const offset = words[pos]! + words[pos + 1]! * 0x10000;
        pos += 2;
        // Indirect segments copy earlier ones; anything else would loop.
        if (offset >= segmentStart || depth >= 8) {
          throw corrupt(
            `segmented palette has an indirect segment at word ${segmentStart} pointing at word ${offset}`,
          );
        }
        expand(offset, length, depth + 1);
      } else {
        throw corrupt(`segmented palette has an unknown segment type ${opcode}`);
      }
      segments++;
    }
  };
  expand(0, Number.POSITIVE_INFINITY, 0);
  if (written === 0) throw corrupt('segmented palette color lookup table data holds no entries');
  // A table that ends early repeats its last value, as the last entry does for pixel values above the table.
  out.fill(out[written - 1]!, written);
  return out;
}

interface Channel {
  firstMapped: number;
  lut: Uint8Array;
}

function readChannel(
  ds: DataSet,
  tags: { descriptor: string; data: string; segmented: string },
  name: string,
  signed: boolean,
): Channel {
  const descriptor = ds.elements[tags.descriptor];
  const data = ds.elements[tags.data];
  const segmented = data ? undefined : ds.elements[tags.segmented];
  const values = data ?? segmented;
  if (!descriptor || descriptor.length < 6 || !values || values.length <= 0) {
    throw corrupt(`${name} palette color lookup table is missing or incomplete`);
  }
  const b = ds.byteArray;
  const p = ds.byteArrayParser;
  if (descriptor.dataOffset + 6 > b.length || values.dataOffset + values.length > b.length) {
    throw corrupt(`${name} palette color lookup table runs past the end of the file`);
  }
  const entries = p.readUint16(b, descriptor.dataOffset) || 65536;
  const firstMapped = signed
    ? p.readInt16(b, descriptor.dataOffset + 2)
    : p.readUint16(b, descriptor.dataOffset + 2);
  const bits = p.readUint16(b, descriptor.dataOffset + 4);
  if (bits !== 8 && bits !== 16)
    throw corrupt(`${name} palette color lookup table has ${bits} bits per entry`);
  let words: Uint16Array | undefined;
  if (segmented) {
    const raw = new Uint16Array(Math.floor(segmented.length / 2));
    for (let i = 0; i < raw.length; i++) raw[i] = p.readUint16(b, segmented.dataOffset + i * 2);
    words = expandSegmentedLut(raw, entries);
  } else if (values.length >= entries * 2) {
    words = new Uint16Array(entries);
    for (let i = 0; i < entries; i++) words[i] = p.readUint16(b, values.dataOffset + i * 2);
  }
  const out = new Uint8Array(entries);
  if (words) {
    let max = 0;
    for (let i = 0; i < entries; i++) if (words[i]! > max) max = words[i]!;
    // Entries that never exceed 255 are 8-bit values in 16-bit words whatever the descriptor says (DCMTK reads
    // them that way too); otherwise the high byte carries the colour, also for 8-bit tables written high.
    const shift = max > 255 ? 8 : 0;
    for (let i = 0; i < entries; i++) out[i] = shift ? words[i]! >> shift : words[i]! & 0xff;
  } else if (bits === 8 && values.length >= entries) {
    out.set(b.subarray(values.dataOffset, values.dataOffset + entries));
  } else {
    throw corrupt(`${name} palette color lookup table holds ${values.length} bytes for ${entries} entries`);
  }
  return { firstMapped, lut: out };
}

/** Reads the red, green and blue tables, plain or segmented (PS3.3 C.7.9). */
export function readPaletteColorLut(instance: DicomInstance): PaletteColorLut {
  const ds = instance.dataSet;
  const signed = instance.pixelRepresentation === 1;
  const channel = (colour: 'Red' | 'Green' | 'Blue') =>
    readChannel(
      ds,
      {
        descriptor: TAG[`${colour}PaletteColorLookupTableDescriptor`],
        data: TAG[`${colour}PaletteColorLookupTableData`],
        segmented: SEGMENTED_DATA[colour],
      },
      colour.toLowerCase(),
      signed,
    );
  const red = channel('Red');
  const green = channel('Green');
  const blue = channel('Blue');
  return { firstMapped: red.firstMapped, red: red.lut, green: green.lut, blue: blue.lut };
}

const SEGMENTED_DATA = {
  Red: TAG.SegmentedRedPaletteColorLookupTableData,
  Green: 'x00281222',
  Blue: 'x00281223',
} as const;
