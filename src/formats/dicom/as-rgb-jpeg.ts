/**
 * DICOM says by PhotometricInterpretation whether a JPEG frame's components are RGB or YCbCr (PS3.5 8.2.1);
 * libjpeg decides from JPEG markers instead: JFIF or an Adobe marker if present, else the component IDs, where
 * anything but 'R','G','B' means YCbCr. A frame declared RGB without either marker would therefore be
 * colour-converted twice. Renaming its components 'R','G','B' makes libjpeg (and so sharp) leave it alone.
 */

const R = 0x52;
const G = 0x47;
const B = 0x42;

function isStartOfFrame(marker: number): boolean {
  return marker >= 0xc0 && marker <= 0xcf && marker !== 0xc4 && marker !== 0xc8 && marker !== 0xcc;
}

function startsWith(b: Uint8Array, at: number, text: string): boolean {
  if (at + text.length > b.length) return false;
  for (let i = 0; i < text.length; i++) if (b[at + i] !== text.charCodeAt(i)) return false;
  return true;
}

/** Returns a copy of a 3-component JPEG with its component IDs set to 'R','G','B' when no JFIF or Adobe marker
 * fixes its colour space; otherwise returns the input unchanged. */
export function asRgbJpeg(jpeg: Uint8Array): Uint8Array {
  if (jpeg.length < 4 || jpeg[0] !== 0xff || jpeg[1] !== 0xd8) return jpeg;
  let componentIdOffsets: number[] = [];
  const scanSelectorOffsets: number[] = [];
  let pos = 2;
  while (pos + 4 <= jpeg.length) {
    if (jpeg[pos] !== 0xff) return jpeg;
    const marker = jpeg[pos + 1]!;
    if (marker === 0xff) {
      pos += 1; // fill byte
      continue;
    }
    if (marker === 0xd9) break;
    if (marker === 0x01 || (marker >= 0xd0 && marker <= 0xd7)) {
      pos += 2;
      continue;
    }
    const length = (jpeg[pos + 2]! << 8) | jpeg[pos + 3]!;
    const body = pos + 4;
    const end = pos + 2 + length;
    if (length < 2 || end > jpeg.length) return jpeg;
    if (marker === 0xe0 && startsWith(jpeg, body, 'JFIF\0')) return jpeg;
    if (marker === 0xee && startsWith(jpeg, body, 'Adobe')) return jpeg;
    if (isStartOfFrame(marker)) {
      const count = jpeg[body + 5]!;
      if (count !== 3 || body + 6 + count * 3 > end) return jpeg;
      componentIdOffsets = [body + 6, body + 9, body + 12];
    }
    if (marker === 0xda) {
      const count = jpeg[body]!;
      if (body + 1 + count * 2 > end) return jpeg;
      for (let k = 0; k < count; k++) scanSelectorOffsets.push(body + 1 + k * 2);
      // Skip the entropy-coded segment: it ends at the first 0xFF not followed by 0x00 (stuffing) or RSTn.
      pos = end;
      while (pos + 1 < jpeg.length) {
        const next = jpeg[pos + 1]!;
        if (jpeg[pos] === 0xff && next !== 0x00 && !(next >= 0xd0 && next <= 0xd7)) break;
        pos++;
      }
      continue;
    }
    pos = end;
  }
  if (componentIdOffsets.length !== 3) return jpeg;
  const oldIds = componentIdOffsets.map((o) => jpeg[o]!);
  const newIds = [R, G, B];
  const patched = new Uint8Array(jpeg);
  componentIdOffsets.forEach((o, k) => {
    patched[o] = newIds[k]!;
  });
  for (const o of scanSelectorOffsets) {
    const k = oldIds.indexOf(jpeg[o]!);
    if (k >= 0) patched[o] = newIds[k]!;
  }
  return patched;
}
