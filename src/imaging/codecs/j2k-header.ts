/**
 * The JPEG 2000 main header fields (ISO/IEC 15444-1 annex A) that decide how a frame is decoded, read from a
 * bare codestream or from the contiguous codestream box of a JP2 file: where the image sits on the reference
 * grid (SIZ), how many wavelet decompositions there are and whether the first three components carry the
 * multiple component transform (COD, COC). HTJ2K (15444-15) codestreams share the syntax.
 */

export interface J2kMainHeader {
  /** XOsiz and YOsiz: the image's top-left corner on the reference grid. */
  imageOffset: { x: number; y: number };
  /** Xsiz − XOsiz and Ysiz − YOsiz: the image's size in pixels. */
  imageSize: { width: number; height: number };
  /** Csiz. */
  components: number;
  /** SGcod's multiple component transformation: RCT (reversible) or ICT (irreversible) on components 0–2. */
  colourTransform: boolean;
  /** The fewest decomposition levels the main header gives a component (COD, or a COC overriding it). */
  decompositions: number;
}

const SOC = 0xff4f;
const SIZ = 0xff51;
const COD = 0xff52;
const COC = 0xff53;
const SOT = 0xff90;
const JP2_SIGNATURE_BOX = 0x6a502020;
const CODESTREAM_BOX = 0x6a703263;

/** Where the codestream starts: 0 for a bare one, after the 'jp2c' box header in a JP2 file. */
function codestreamStart(view: DataView): number | undefined {
  if (view.byteLength >= 2 && view.getUint16(0) === SOC) return 0;
  if (view.byteLength < 8 || view.getUint32(4) !== JP2_SIGNATURE_BOX) return undefined;
  let pos = 0;
  while (pos + 8 <= view.byteLength) {
    const length = view.getUint32(pos);
    const type = view.getUint32(pos + 4);
    let header = 8;
    let size = length;
    if (length === 1) {
      if (pos + 16 > view.byteLength) return undefined;
      header = 16;
      size = view.getUint32(pos + 8) * 2 ** 32 + view.getUint32(pos + 12);
    } else if (length === 0) {
      size = view.byteLength - pos;
    }
    if (type === CODESTREAM_BOX) return pos + header;
    if (size < header) return undefined;
    pos += size;
  }
  return undefined;
}

/** The main header's SIZ and COD values, or undefined when the bytes hold no readable JPEG 2000 main header. */
export function readJ2kMainHeader(bytes: Uint8Array): J2kMainHeader | undefined {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const start = codestreamStart(view);
  if (start === undefined || start + 2 > view.byteLength || view.getUint16(start) !== SOC) return undefined;
  let pos = start + 2;
  let siz: Pick<J2kMainHeader, 'imageOffset' | 'imageSize' | 'components'> | undefined;
  let cod: Pick<J2kMainHeader, 'colourTransform' | 'decompositions'> | undefined;
  let fewestInCoc = Number.POSITIVE_INFINITY;
  while (pos + 4 <= view.byteLength) {
    const marker = view.getUint16(pos);
    if (marker === SOT || (marker & 0xff00) !== 0xff00) break;
    const length = view.getUint16(pos + 2);
    const body = pos + 4;
    if (length < 2 || pos + 2 + length > view.byteLength) return undefined;
    if (marker === SIZ && length >= 38) {
      const x = view.getUint32(body + 10);
      const y = view.getUint32(body + 14);
      siz = {
        imageOffset: { x, y },
        imageSize: {
          width: Math.max(0, view.getUint32(body + 2) - x),
          height: Math.max(0, view.getUint32(body + 6) - y),
        },
        components: view.getUint16(body + 34),
      };
    } else if (marker === COD && length >= 8) {
      cod = { colourTransform: view.getUint8(body + 4) === 1, decompositions: view.getUint8(body + 5) };
    } else if (marker === COC && siz) {
      // Ccoc takes two bytes when there are more than 256 components; Scoc follows, then SPcoc's levels.
      const levels = body + (siz.components > 256 ? 2 : 1) + 1;
      if (levels < pos + 2 + length) fewestInCoc = Math.min(fewestInCoc, view.getUint8(levels));
    }
    pos += 2 + length;
  }
  if (!siz || !cod) return undefined;
  return { ...siz, ...cod, decompositions: Math.min(cod.decompositions, fewestInCoc) };
}
