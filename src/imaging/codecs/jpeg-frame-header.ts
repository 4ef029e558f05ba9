/**
 * The JPEG start-of-frame header, read to choose a decoder. The transfer syntax is not enough: writers label
 * 12-bit DCT as Baseline and lossless as Extended, and DCMTK, too, picks its 8-, 12- or 16-bit IJG library from
 * the codestream.
 */

export interface JpegFrameHeader {
  /** The SOF marker's second byte (0xC0 baseline, 0xC1 extended, 0xC3 lossless …). */
  marker: number;
  precision: number;
  rows: number;
  columns: number;
  components: number;
  /** Processes 14 and 15 (SOF3, SOF7, SOF11, SOF15). */
  lossless: boolean;
}

const SOI = 0xd8;
const EOI = 0xd9;
const SOS = 0xda;

function isStartOfFrame(marker: number): boolean {
  return marker >= 0xc0 && marker <= 0xcf && marker !== 0xc4 && marker !== 0xc8 && marker !== 0xcc;
}

/** The first SOF header of a JPEG stream, or undefined when the bytes do not start a JPEG or end before it. */
export function readJpegFrameHeader(jpeg: Uint8Array): JpegFrameHeader | undefined {
  return readFrameHeader(jpeg, isStartOfFrame);
}

/** JPEG-LS (ISO/IEC 14495-1) has the same marker syntax, with its own start-of-frame marker SOF55 (0xF7). */
export function readJpegLsFrameHeader(jpeg: Uint8Array): JpegFrameHeader | undefined {
  return readFrameHeader(jpeg, (marker) => marker === 0xf7);
}

function readFrameHeader(
  jpeg: Uint8Array,
  isStartOfFrame: (marker: number) => boolean,
): JpegFrameHeader | undefined {
  if (jpeg.length < 4 || jpeg[0] !== 0xff || jpeg[1] !== SOI) return undefined;
  let pos = 2;
  while (pos + 4 <= jpeg.length) {
    if (jpeg[pos] !== 0xff) return undefined;
    const marker = jpeg[pos + 1]!;
    if (marker === 0xff) {
      pos += 1; // fill byte
      continue;
    }
    if (marker === EOI || marker === SOS) return undefined;
    if (marker === 0x01 || (marker >= 0xd0 && marker <= 0xd7)) {
      pos += 2;
      continue;
    }
    const length = (jpeg[pos + 2]! << 8) | jpeg[pos + 3]!;
    if (length < 2) return undefined;
    if (isStartOfFrame(marker)) {
      const body = pos + 4;
      if (body + 6 > jpeg.length) return undefined;
      return {
        marker,
        precision: jpeg[body]!,
        rows: (jpeg[body + 1]! << 8) | jpeg[body + 2]!,
        columns: (jpeg[body + 3]! << 8) | jpeg[body + 4]!,
        components: jpeg[body + 5]!,
        lossless: (marker & 0x03) === 0x03,
      };
    }
    pos += 2 + length;
  }
  return undefined;
}
