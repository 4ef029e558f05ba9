/**
 * Transfer syntaxes (DICOM PS3.5 section 10 and PS3.6 table A-1). The `codec` names the pixel encoding; a frame
 * decoder registry (src/imaging/render-dicom.ts) is keyed by UID, so adding a codec later means registering one
 * decoder, not touching the parser.
 */

export type PixelCodec =
  | 'native'
  | 'rle'
  | 'jpeg-baseline'
  | 'jpeg-extended'
  | 'jpeg-lossless'
  | 'jpeg-ls'
  | 'jpeg-2000'
  | 'htj2k'
  | 'deflated-frame'
  | 'video'
  | 'unknown';

export interface TransferSyntax {
  readonly uid: string;
  readonly name: string;
  readonly explicitVr: boolean;
  readonly littleEndian: boolean;
  /** The data set after the file meta is a raw deflate stream (PS3.5 A.5). */
  readonly deflated: boolean;
  /** Pixel data is a sequence of fragments rather than one contiguous value. */
  readonly encapsulated: boolean;
  readonly codec: PixelCodec;
}

export const IMPLICIT_VR_LITTLE_ENDIAN = '1.2.840.10008.1.2';
export const EXPLICIT_VR_LITTLE_ENDIAN = '1.2.840.10008.1.2.1';
export const DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN = '1.2.840.10008.1.2.1.99';
export const EXPLICIT_VR_BIG_ENDIAN = '1.2.840.10008.1.2.2';
export const JPEG_BASELINE = '1.2.840.10008.1.2.4.50';
export const RLE_LOSSLESS = '1.2.840.10008.1.2.5';

function native(uid: string, name: string, explicitVr: boolean, littleEndian: boolean, deflated = false) {
  return { uid, name, explicitVr, littleEndian, deflated, encapsulated: false, codec: 'native' as const };
}

function encapsulated(uid: string, name: string, codec: PixelCodec): TransferSyntax {
  return { uid, name, explicitVr: true, littleEndian: true, deflated: false, encapsulated: true, codec };
}

const KNOWN: readonly TransferSyntax[] = [
  native(IMPLICIT_VR_LITTLE_ENDIAN, 'Implicit VR Little Endian', false, true),
  native(EXPLICIT_VR_LITTLE_ENDIAN, 'Explicit VR Little Endian', true, true),
  native(DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN, 'Deflated Explicit VR Little Endian', true, true, true),
  native(EXPLICIT_VR_BIG_ENDIAN, 'Explicit VR Big Endian', true, false),
  encapsulated('1.2.840.10008.1.2.1.98', 'Encapsulated Uncompressed Explicit VR Little Endian', 'native'),
  encapsulated(JPEG_BASELINE, 'JPEG Baseline (Process 1)', 'jpeg-baseline'),
  encapsulated('1.2.840.10008.1.2.4.51', 'JPEG Extended (Process 2 & 4)', 'jpeg-extended'),
  encapsulated('1.2.840.10008.1.2.4.57', 'JPEG Lossless, Non-Hierarchical (Process 14)', 'jpeg-lossless'),
  encapsulated(
    '1.2.840.10008.1.2.4.70',
    'JPEG Lossless, Non-Hierarchical, First-Order Prediction (Process 14, Selection Value 1)',
    'jpeg-lossless',
  ),
  encapsulated('1.2.840.10008.1.2.4.80', 'JPEG-LS Lossless', 'jpeg-ls'),
  encapsulated('1.2.840.10008.1.2.4.81', 'JPEG-LS Lossy (Near-Lossless)', 'jpeg-ls'),
  encapsulated('1.2.840.10008.1.2.4.90', 'JPEG 2000 (Lossless Only)', 'jpeg-2000'),
  encapsulated('1.2.840.10008.1.2.4.91', 'JPEG 2000', 'jpeg-2000'),
  encapsulated('1.2.840.10008.1.2.4.92', 'JPEG 2000 Part 2 Multi-component (Lossless Only)', 'jpeg-2000'),
  encapsulated('1.2.840.10008.1.2.4.93', 'JPEG 2000 Part 2 Multi-component', 'jpeg-2000'),
  encapsulated('1.2.840.10008.1.2.4.100', 'MPEG2 Main Profile / Main Level', 'video'),
  encapsulated('1.2.840.10008.1.2.4.101', 'MPEG2 Main Profile / High Level', 'video'),
  encapsulated('1.2.840.10008.1.2.4.102', 'MPEG-4 AVC/H.264 High Profile / Level 4.1', 'video'),
  encapsulated('1.2.840.10008.1.2.4.103', 'MPEG-4 AVC/H.264 BD-compatible High Profile / Level 4.1', 'video'),
  encapsulated('1.2.840.10008.1.2.4.104', 'MPEG-4 AVC/H.264 High Profile / Level 4.2 For 2D Video', 'video'),
  encapsulated('1.2.840.10008.1.2.4.105', 'MPEG-4 AVC/H.264 High Profile / Level 4.2 For 3D Video', 'video'),
  encapsulated('1.2.840.10008.1.2.4.106', 'MPEG-4 AVC/H.264 Stereo High Profile / Level 4.2', 'video'),
  encapsulated('1.2.840.10008.1.2.4.107', 'HEVC/H.265 Main Profile / Level 5.1', 'video'),
  encapsulated('1.2.840.10008.1.2.4.108', 'HEVC/H.265 Main 10 Profile / Level 5.1', 'video'),
  encapsulated('1.2.840.10008.1.2.4.201', 'High-Throughput JPEG 2000 (Lossless Only)', 'htj2k'),
  encapsulated(
    '1.2.840.10008.1.2.4.202',
    'High-Throughput JPEG 2000 with RPCL Options (Lossless Only)',
    'htj2k',
  ),
  encapsulated('1.2.840.10008.1.2.4.203', 'High-Throughput JPEG 2000', 'htj2k'),
  encapsulated(RLE_LOSSLESS, 'RLE Lossless', 'rle'),
  encapsulated('1.2.840.10008.1.2.8.1', 'Deflated Image Frame Compression', 'deflated-frame'),
];

const BY_UID = new Map(KNOWN.map((ts) => [ts.uid, ts]));

/** Describes a transfer syntax UID. Unknown (private) UIDs are read like DCMTK reads them: explicit VR little
 * endian, with encapsulated pixel data recognised by its undefined length. */
export function describeTransferSyntax(uid: string): TransferSyntax {
  return (
    BY_UID.get(uid) ?? {
      uid,
      name: 'unknown transfer syntax',
      explicitVr: true,
      littleEndian: true,
      deflated: false,
      encapsulated: true,
      codec: 'unknown',
    }
  );
}

/** What the network doors (DIMSE C-STORE, DICOMweb STOW-RS) accept: every syntax Teleread knows but video, of
 * which no frame could be shown (a sender proposing video also proposes a syntax that can be). */
export function isStorableTransferSyntax(uid: string): boolean {
  const ts = BY_UID.get(uid);
  return ts !== undefined && ts.codec !== 'video';
}
