/**
 * Modality LUT (0028,3000) and VOI LUT (0028,3010) sequences (PS3.3 C.11.1 and C.11.2): the first item's LUT
 * Descriptor and LUT Data. Used instead of rescale or window when a file carries them.
 */
import type { DataSet } from 'dicom-parser';
import { type DicomInstance, firstItem, functionalGroupItems, functionalGroupsOf } from './parse-dicom.js';
import { TAG } from './tags.js';

export interface LookupTable {
  /** Input value mapped to the first entry; inputs outside the table clamp to its ends. */
  firstMapped: number;
  bitsPerEntry: number;
  data: Uint16Array;
}

const MODALITY_LUT_SEQUENCE = 'x00283000';
const VOI_LUT_FUNCTION = 'x00281056';
const VOI_LUT_SEQUENCE = 'x00283010';
const LUT_DESCRIPTOR = 'x00283002';
const LUT_DATA = 'x00283006';

function readLookupTable(item: DataSet | undefined, signed: boolean): LookupTable | undefined {
  if (!item) return undefined;
  const descriptor = item.elements[LUT_DESCRIPTOR];
  const data = item.elements[LUT_DATA];
  const b = item.byteArray;
  const p = item.byteArrayParser;
  if (!descriptor || descriptor.length < 6 || descriptor.dataOffset + 6 > b.length) return undefined;
  if (!data || data.length <= 0 || data.dataOffset + data.length > b.length) return undefined;
  const entries = p.readUint16(b, descriptor.dataOffset) || 65536;
  const firstMapped = signed
    ? p.readInt16(b, descriptor.dataOffset + 2)
    : p.readUint16(b, descriptor.dataOffset + 2);
  const bitsPerEntry = p.readUint16(b, descriptor.dataOffset + 4);
  if (bitsPerEntry < 8 || bitsPerEntry > 16) return undefined;
  const out = new Uint16Array(entries);
  if (data.length >= entries * 2) {
    for (let i = 0; i < entries; i++) out[i] = p.readUint16(b, data.dataOffset + i * 2);
  } else if (bitsPerEntry === 8 && data.length >= entries) {
    out.set(b.subarray(data.dataOffset, data.dataOffset + entries));
  } else {
    return undefined;
  }
  return { firstMapped, bitsPerEntry, data: out };
}

/** The Modality LUT, when the file has one that can be read; otherwise rescale slope/intercept apply. */
export function readModalityLut(instance: DicomInstance): LookupTable | undefined {
  return readLookupTable(
    firstItem(instance.dataSet, MODALITY_LUT_SEQUENCE),
    instance.pixelRepresentation === 1,
  );
}

/** The first VOI LUT, when the file has one that can be read. */
export function readVoiLut(instance: DicomInstance): LookupTable | undefined {
  const signedInput = instance.pixelRepresentation === 1 && readModalityLut(instance) === undefined;
  return readLookupTable(firstItem(instance.dataSet, VOI_LUT_SEQUENCE), signedInput);
}

/** Looks a value up, clamping to the table's ends. */
export function lookUp(table: LookupTable, value: number): number {
  let index = Math.round(value) - table.firstMapped;
  if (index < 0) index = 0;
  else if (index >= table.data.length) index = table.data.length - 1;
  return table.data[index]!;
}

/** VOI LUT Function (0028,1056), PS3.3 C.11.2.1.3: how a window maps values to output. */
export type VoiLutFunction = 'LINEAR' | 'LINEAR_EXACT' | 'SIGMOID';

/** The VOI LUT Function at the top level or in the Frame VOI LUT of enhanced objects (the frame's own, then the
 * shared one); LINEAR when absent or unknown, as the standard says. */
export function readVoiLutFunction(instance: DicomInstance): VoiLutFunction {
  const ds = instance.dataSet;
  const groups = functionalGroupsOf(ds, instance.frameIndex);
  for (const source of [ds, ...functionalGroupItems(groups, TAG.FrameVOILUTSequence)]) {
    const element = source?.elements[VOI_LUT_FUNCTION];
    if (!source || !element || element.dataOffset + element.length > source.byteArray.length) continue;
    const value = String.fromCharCode(
      ...source.byteArray.subarray(element.dataOffset, element.dataOffset + element.length),
    )
      .replace(/[\s\0]+$/g, '')
      .trim();
    if (value === 'LINEAR_EXACT' || value === 'SIGMOID' || value === 'LINEAR') return value;
  }
  return 'LINEAR';
}
