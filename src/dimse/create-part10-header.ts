/**
 * The 128-byte preamble, "DICM" and File Meta Information (PS3.10 7.1) put in front of a data set received over
 * the network, so that the stored object is an ordinary Part 10 file whatever the door it came through. The
 * meta is always explicit VR little endian; the data set that follows stays in the negotiated transfer syntax.
 */

/** Teleread's Implementation Class UID: a UUID-derived UID under the 2.25 root (PS3.5 B.2), fixed for ever. */
export const TELEREAD_IMPLEMENTATION_CLASS_UID = '2.25.47518464338047440970592914743559674699';
/** Implementation Version Name (SH, at most 16 characters). */
export const TELEREAD_IMPLEMENTATION_VERSION_NAME = 'TELEREAD_0.1';

export interface Part10Meta {
  sopClassUid: string;
  sopInstanceUid: string;
  transferSyntaxUid: string;
  /** The calling AE title that sent the object (Source Application Entity Title, 0002,0016). */
  sourceAeTitle?: string | undefined;
}

const UID_PATTERN = /^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*$/;

/** A UID as PS3.5 9.1 allows it: dot-separated numbers without leading zeros, at most 64 characters. */
export function isValidUid(uid: string): boolean {
  return uid.length > 0 && uid.length <= 64 && UID_PATTERN.test(uid);
}

export function createPart10Header(meta: Part10Meta): Uint8Array {
  const elements: Array<[number, string, Uint8Array]> = [
    [0x0001, 'OB', Uint8Array.of(0, 1)],
    [0x0002, 'UI', text(meta.sopClassUid, 0)],
    [0x0003, 'UI', text(meta.sopInstanceUid, 0)],
    [0x0010, 'UI', text(meta.transferSyntaxUid, 0)],
    [0x0012, 'UI', text(TELEREAD_IMPLEMENTATION_CLASS_UID, 0)],
    [0x0013, 'SH', text(TELEREAD_IMPLEMENTATION_VERSION_NAME, 0x20)],
  ];
  // AE titles are printable ASCII without backslash (PS3.5 6.2); anything else from the wire is dropped.
  const aeTitle = meta.sourceAeTitle?.replace(/[^\x20-\x5b\x5d-\x7e]/g, '').trim();
  if (aeTitle) elements.push([0x0016, 'AE', text(aeTitle.slice(0, 16), 0x20)]);

  const body = elements.map(([element, vr, value]) => encodeElement(element, vr, value));
  const groupLength = body.reduce((n, b) => n + b.length, 0);
  const lengthElement = encodeElement(0x0000, 'UL', uint32(groupLength));
  const out = new Uint8Array(132 + lengthElement.length + groupLength);
  out.set([0x44, 0x49, 0x43, 0x4d], 128);
  let offset = 132;
  for (const part of [lengthElement, ...body]) {
    out.set(part, offset);
    offset += part.length;
  }
  return out;
}

/** ASCII value padded to an even length with `pad` (NUL for UI, space for text), as PS3.5 6.2 requires. */
function text(value: string, pad: number): Uint8Array {
  const even = value.length % 2 === 0 ? value.length : value.length + 1;
  const bytes = new Uint8Array(even).fill(pad);
  for (let i = 0; i < value.length; i++) bytes[i] = value.charCodeAt(i) & 0x7f;
  return bytes;
}

function uint32(v: number): Uint8Array {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setUint32(0, v, true);
  return b;
}

/** Explicit VR little endian, group 0002. OB has the long (4-byte) length form; the others the short one. */
function encodeElement(element: number, vr: string, value: Uint8Array): Uint8Array {
  const long = vr === 'OB';
  const head = long ? 12 : 8;
  const out = new Uint8Array(head + value.length);
  const view = new DataView(out.buffer);
  view.setUint16(0, 0x0002, true);
  view.setUint16(2, element, true);
  out[4] = vr.charCodeAt(0);
  out[5] = vr.charCodeAt(1);
  if (long) view.setUint32(8, value.length, true);
  else view.setUint16(6, value.length, true);
  out.set(value, head);
  return out;
}
