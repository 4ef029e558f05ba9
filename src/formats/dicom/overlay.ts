/**
 * Overlay planes (PS3.3 C.9.2, groups 6000–601E): one-bit graphics and regions of interest drawn over a grayscale
 * image, either in Overlay Data (60xx,3000) or, in old files, embedded in unused high bits of the pixel data
 * (retired; Overlay Bits Allocated 16 and an Overlay Bit Position above HighBit). Pure: reads the parsed data set
 * and returns masks; render-dicom.ts draws them.
 */
import dicomParser, { type DataSet } from 'dicom-parser';
import type { DicomInstance } from './parse-dicom.js';
import { swapWords } from './pixel-data.js';

export interface OverlayPlane {
  /** 0x6000, 0x6002 … 0x601E. */
  group: number;
  rows: number;
  columns: number;
  /** G (graphics, drawn over the image) or R (a region of interest: the rest of the plane's rectangle is
   * dimmed). */
  type: 'G' | 'R';
  /** Overlay Origin (60xx,0050): where the plane's first pixel lies in the image, 1-based (row, column). */
  originRow: number;
  originColumn: number;
  /** Number of Frames in Overlay (60xx,0015) and Image Frame Origin (60xx,0051, 1-based). */
  frames: number;
  imageFrameOrigin: number;
  /** Overlay Data, bits packed least significant first, frames one after another; undefined when embedded. */
  data: Uint8Array | undefined;
  /** Embedded overlays: the bit of each stored pixel word that holds the plane. */
  bitPosition: number | undefined;
}

const MAX_PLANES = 16;

function us(ds: DataSet, tag: string): number | undefined {
  return ds.elements[tag] ? ds.uint16(tag) : undefined;
}

function int(ds: DataSet, tag: string): number | undefined {
  const text = ds.elements[tag] ? ds.string(tag) : undefined;
  const value = text === undefined ? Number.NaN : Number.parseInt(text, 10);
  return Number.isFinite(value) ? value : undefined;
}

/** Overlay Data as the little endian bit stream the standard describes: OW in big endian comes word-swapped. */
function overlayBits(ds: DataSet, tag: string): Uint8Array | undefined {
  const element = ds.elements[tag];
  if (!element || element.length === 0) return undefined;
  const end = Math.min(ds.byteArray.length, element.dataOffset + element.length);
  const bytes = ds.byteArray.subarray(element.dataOffset, end);
  const bigEndianWords =
    ds.byteArrayParser !== dicomParser.littleEndianByteArrayParser && element.vr !== 'OB';
  return bigEndianWords ? swapWords(bytes) : bytes;
}

/** The overlay planes a data set describes; planes without a size, or without bits to draw, are left out. */
export function readOverlayPlanes(instance: DicomInstance): OverlayPlane[] {
  const ds = instance.dataSet;
  const planes: OverlayPlane[] = [];
  for (let k = 0; k < MAX_PLANES; k++) {
    const group = 0x6000 + 2 * k;
    const g = group.toString(16);
    const rows = us(ds, `x${g}0010`);
    const columns = us(ds, `x${g}0011`);
    if (!rows || !columns) continue;
    const data = overlayBits(ds, `x${g}3000`);
    const bitsAllocated = us(ds, `x${g}0100`) ?? 1;
    const bitPosition = us(ds, `x${g}0102`);
    // Embedded in the pixel data (retired): a 16-bit plane that names the bit it lives in.
    const embedded = !data && bitsAllocated > 1 && bitPosition !== undefined;
    if (!data && !embedded) continue;
    const origin = ds.elements[`x${g}0050`];
    const originRow = origin && origin.length >= 4 ? ds.int16(`x${g}0050`, 0)! : 1;
    const originColumn = origin && origin.length >= 4 ? ds.int16(`x${g}0050`, 1)! : 1;
    const type = ds.string(`x${g}0040`)?.trim().toUpperCase() === 'R' ? 'R' : 'G';
    planes.push({
      group,
      rows,
      columns,
      type,
      originRow,
      originColumn,
      frames: Math.max(1, int(ds, `x${g}0015`) ?? 1),
      imageFrameOrigin: Math.max(1, us(ds, `x${g}0051`) ?? 1),
      data: embedded ? undefined : data,
      bitPosition: embedded ? bitPosition : undefined,
    });
  }
  return planes;
}

/**
 * How much of each output pixel the plane acts on in image frame `frameIndex` (0-based), for an image of
 * imageRows × imageColumns shown at width × height: 0 … 1 per output pixel, or undefined when it acts on none.
 * At the image's own size that is 0 or 1 per pixel. A graphics plane acts on its set bits; a region of interest
 * on the clear bits inside its rectangle (DCMTK dims those, and leaves the rest of the image as it is). A
 * single-frame plane applies to every frame, as DCMTK draws it; a multi-frame plane covers the frames from its
 * Image Frame Origin on. Embedded planes read `storedWords`, the frame's pixel words before their bits are
 * masked.
 *
 * Each image pixel falls in one output pixel (a box filter), and only the part of the plane over the image is
 * visited, skipping empty bytes of Overlay Data: a plane over a 4096 × 3328 mammogram costs a few milliseconds
 * when it is sparse, and a hostile plane that declares 65535 × 65535 far off the image costs nothing.
 */
export function overlayCoverage(
  plane: OverlayPlane,
  frameIndex: number,
  imageRows: number,
  imageColumns: number,
  width: number,
  height: number,
  storedWords?: ArrayLike<number>,
): Float32Array | undefined {
  let overlayFrame = 0;
  if (plane.frames > 1) {
    overlayFrame = frameIndex - (plane.imageFrameOrigin - 1);
    if (overlayFrame < 0 || overlayFrame >= plane.frames) return undefined;
  }
  const top = plane.originRow - 1;
  const left = plane.originColumn - 1;
  const r0 = Math.max(0, -top);
  const r1 = Math.min(plane.rows, imageRows - top);
  const c0 = Math.max(0, -left);
  const c1 = Math.min(plane.columns, imageColumns - left);
  if (r0 >= r1 || c0 >= c1) return undefined;

  // Output cell of each image row and column, and how many image pixels each cell gathers along each axis.
  const cellOfColumn = new Int32Array(imageColumns);
  const perColumnCell = new Float32Array(width);
  for (let x = 0; x < imageColumns; x++) {
    cellOfColumn[x] = Math.min(width - 1, Math.floor((x * width) / imageColumns));
    perColumnCell[cellOfColumn[x]!]! += 1;
  }
  const cellOfRow = new Int32Array(imageRows);
  const perRowCell = new Float32Array(height);
  for (let y = 0; y < imageRows; y++) {
    cellOfRow[y] = Math.min(height - 1, Math.floor((y * height) / imageRows));
    perRowCell[cellOfRow[y]!]! += 1;
  }

  const set = new Float32Array(width * height);
  let setCount = 0;
  const planeSize = plane.rows * plane.columns;
  for (let r = r0; r < r1; r++) {
    const y = top + r;
    const rowBase = cellOfRow[y]! * width;
    if (plane.data) {
      const base = overlayFrame * planeSize + r * plane.columns;
      let c = c0;
      while (c < c1) {
        const bit = base + c;
        const byte = plane.data[bit >> 3] ?? 0;
        if (byte === 0) {
          c += 8 - (bit & 7);
          continue;
        }
        if ((byte >> (bit & 7)) & 1) {
          set[rowBase + cellOfColumn[left + c]!]! += 1;
          setCount++;
        }
        c++;
      }
    } else if (storedWords) {
      const rowStart = y * imageColumns + left;
      for (let c = c0; c < c1; c++) {
        if (((storedWords[rowStart + c] ?? 0) >> plane.bitPosition!) & 1) {
          set[rowBase + cellOfColumn[left + c]!]! += 1;
          setCount++;
        }
      }
    }
  }

  const coverage = set; // reused in place
  if (plane.type === 'G') {
    if (setCount === 0) return undefined;
    for (let ty = 0; ty < height; ty++) {
      for (let tx = 0; tx < width; tx++) {
        const i = ty * width + tx;
        if (coverage[i]! > 0) coverage[i] = coverage[i]! / (perRowCell[ty]! * perColumnCell[tx]!);
      }
    }
    return coverage;
  }
  // A region of interest acts on the clear pixels of its rectangle: per cell, the rectangle's pixels there
  // less the set ones.
  if (setCount === (r1 - r0) * (c1 - c0)) return undefined;
  const rectPerColumnCell = new Float32Array(width);
  for (let c = c0; c < c1; c++) rectPerColumnCell[cellOfColumn[left + c]!]! += 1;
  const rectPerRowCell = new Float32Array(height);
  for (let r = r0; r < r1; r++) rectPerRowCell[cellOfRow[top + r]!]! += 1;
  for (let ty = 0; ty < height; ty++) {
    for (let tx = 0; tx < width; tx++) {
      const i = ty * width + tx;
      const inRect = rectPerRowCell[ty]! * rectPerColumnCell[tx]!;
      coverage[i] = inRect === 0 ? 0 : (inRect - set[i]!) / (perRowCell[ty]! * perColumnCell[tx]!);
    }
  }
  return coverage;
}
