/**
 * Palette Color Lookup Tables (PS3.3 C.7.6.3.1.5–6), reduced to 8 bits per entry for display.
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

function unsupported(message: string): AppError {
  return new AppError('UNSUPPORTED_FORMAT', message, { retryable: false });
}

function corrupt(message: string): AppError {
  return new AppError('CORRUPT_FILE', message, { retryable: false });
}

function readChannel(ds: DataSet, descriptorTag: string, dataTag: string, name: string, signed: boolean) {
  const descriptor = ds.elements[descriptorTag];
  const data = ds.elements[dataTag];
  if (!descriptor || descriptor.length < 6 || !data || data.length <= 0) {
    throw corrupt(`${name} palette color lookup table is missing or incomplete`);
  }
  const b = ds.byteArray;
  const p = ds.byteArrayParser;
  if (descriptor.dataOffset + 6 > b.length || data.dataOffset + data.length > b.length) {
    throw corrupt(`${name} palette color lookup table runs past the end of the file`);
  }
  const entries = p.readUint16(b, descriptor.dataOffset) || 65536;
  const firstMapped = signed
    ? p.readInt16(b, descriptor.dataOffset + 2)
    : p.readUint16(b, descriptor.dataOffset + 2);
  const bits = p.readUint16(b, descriptor.dataOffset + 4);
  if (bits !== 8 && bits !== 16)
    throw corrupt(`${name} palette color lookup table has ${bits} bits per entry`);
  const out = new Uint8Array(entries);
  if (data.length >= entries * 2) {
    const words = new Uint16Array(entries);
    let max = 0;
    for (let i = 0; i < entries; i++) {
      const w = p.readUint16(b, data.dataOffset + i * 2);
      words[i] = w;
      if (w > max) max = w;
    }
    // Entries that never exceed 255 are 8-bit values in 16-bit words whatever the descriptor says (DCMTK reads
    // them that way too); otherwise the high byte carries the colour, also for 8-bit tables written high.
    const shift = max > 255 ? 8 : 0;
    for (let i = 0; i < entries; i++) out[i] = shift ? words[i]! >> shift : words[i]! & 0xff;
  } else if (bits === 8 && data.length >= entries) {
    out.set(b.subarray(data.dataOffset, data.dataOffset + entries));
  } else {
    throw corrupt(`${name} palette color lookup table holds ${data.length} bytes for ${entries} entries`);
  }
  return { firstMapped, lut: out };
}

/** Reads the red, green and blue tables. Segmented tables (0028,1221-1223) throw UNSUPPORTED_FORMAT. */
export function readPaletteColorLut(instance: DicomInstance): PaletteColorLut {
  const ds = instance.dataSet;
  if (
    ds.elements[TAG.SegmentedRedPaletteColorLookupTableData] &&
    !ds.elements[TAG.RedPaletteColorLookupTableData]
  ) {
    throw unsupported('segmented palette color lookup tables cannot be rendered yet');
  }
  const signed = instance.pixelRepresentation === 1;
  const red = readChannel(
    ds,
    TAG.RedPaletteColorLookupTableDescriptor,
    TAG.RedPaletteColorLookupTableData,
    'red',
    signed,
  );
  const green = readChannel(
    ds,
    TAG.GreenPaletteColorLookupTableDescriptor,
    TAG.GreenPaletteColorLookupTableData,
    'green',
    signed,
  );
  const blue = readChannel(
    ds,
    TAG.BluePaletteColorLookupTableDescriptor,
    TAG.BluePaletteColorLookupTableData,
    'blue',
    signed,
  );
  return { firstMapped: red.firstMapped, red: red.lut, green: green.lut, blue: blue.lut };
}
