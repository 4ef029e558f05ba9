/**
 * Value Representations (PS3.5 §6.2), in one place for the parser, the attribute dump and the de-identifier.
 */

/** Every VR an explicit-VR data set may carry. */
export const VRS: ReadonlySet<string> = new Set(
  'AE AS AT CS DA DS DT FD FL IS LO LT OB OD OF OL OV OW PN SH SL SQ SS ST SV TM UC UI UL UN UR US UT UV'.split(
    ' ',
  ),
);

/** VRs with a 2-byte reserved field and a 4-byte length in explicit VR (PS3.5 Table 7.1-1). */
export const LONG_LENGTH_VRS: ReadonlySet<string> = new Set([
  'OB',
  'OD',
  'OF',
  'OL',
  'OV',
  'OW',
  'SQ',
  'SV',
  'UC',
  'UN',
  'UR',
  'UT',
  'UV',
]);

/** Character-string VRs other than UI: their values are text a person or device wrote. */
export const TEXT_VRS: ReadonlySet<string> = new Set([
  'AE',
  'AS',
  'CS',
  'DA',
  'DS',
  'DT',
  'IS',
  'LO',
  'LT',
  'PN',
  'SH',
  'ST',
  'TM',
  'UC',
  'UR',
  'UT',
]);

/** Every character-string VR, UIDs included. */
export const STRING_VRS: ReadonlySet<string> = new Set([...TEXT_VRS, 'UI']);

/** VRs whose values are bytes or words, not numbers or text. */
export const BINARY_VRS: ReadonlySet<string> = new Set(['OB', 'OD', 'OF', 'OL', 'OV', 'OW', 'UN']);

/** Bytes per number of the VRs whose values are numbers: what a big-endian value is swapped in, number by
 * number, to read it little endian (AT is two 16-bit numbers; OW is a stream of 16-bit words whatever the
 * samples in it). */
export const BYTES_PER_NUMBER: Readonly<Record<string, number>> = {
  US: 2,
  SS: 2,
  OW: 2,
  AT: 2,
  UL: 4,
  SL: 4,
  FL: 4,
  OF: 4,
  OL: 4,
  FD: 8,
  OD: 8,
  SV: 8,
  UV: 8,
  OV: 8,
};

/** A copy with the bytes of each `unit`-byte number reversed. A last part shorter than a unit (a value cut
 * short) is kept as it is. */
/** A value of `vr` in little-endian order: its numbers' bytes swapped when the value was stored big endian. */
export function littleEndianValue(bytes: Uint8Array, vr: string, storedLittleEndian: boolean): Uint8Array {
  const unit = BYTES_PER_NUMBER[vr];
  return !storedLittleEndian && unit ? swapBytes(bytes, unit) : bytes;
}

export function swapBytes(bytes: Uint8Array, unit: number): Uint8Array {
  const out = new Uint8Array(bytes.length);
  const whole = bytes.length - (bytes.length % unit);
  for (let i = 0; i < whole; i += unit) {
    for (let j = 0; j < unit; j++) out[i + j] = bytes[i + unit - 1 - j]!;
  }
  out.set(bytes.subarray(whole), whole);
  return out;
}
