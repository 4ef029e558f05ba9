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

/** The planes' common extent, the largest rows and columns among them: DCMTK scales their bits as one buffer
 * of this size. */
export function overlayExtent(planes: readonly OverlayPlane[]): { rows: number; columns: number } {
  return {
    rows: Math.max(0, ...planes.map((p) => p.rows)),
    columns: Math.max(0, ...planes.map((p) => p.columns)),
  };
}

/**
 * Where the plane acts in image frame `frameIndex` (0-based), for an image of imageRows × imageColumns shown at
 * width × height: 1 per output pixel it acts on, else 0, or undefined when it acts on none. A graphics plane
 * acts on its set bits; a region of interest on the clear bits inside its rectangle (DCMTK dims those, and
 * leaves the rest of the image as it is). A single-frame plane applies to every frame, as DCMTK draws it; a
 * multi-frame plane covers the frames from its Image Frame Origin on. Embedded planes read `storedWords`, the
 * frame's pixel words before their bits are masked.
 *
 * At another size the plane is scaled as dcmj2pnm scales it (diovlay.cc, discalet.h), one bit deep, never
 * averaged: the planes' common `extent` becomes trunc(factor × extent) pixels, factor being the image's
 * output / input as a double (so 158/300 × 300 gives 157, not 158), with rows and columns dropped (or repeated)
 * evenly spread; the plane's origin and size are scaled and truncated the same way. On pydicom's overlay sample
 * at 256 px this picks the same 44 overlay pixels as dcmj2pnm. Only output pixels are visited, so a hostile
 * plane that declares 65535 × 65535 costs no more than a small one.
 */
export function overlayCoverage(
  plane: OverlayPlane,
  frameIndex: number,
  imageRows: number,
  imageColumns: number,
  width: number,
  height: number,
  storedWords?: ArrayLike<number>,
  extent: { rows: number; columns: number } = plane,
): Uint8Array | undefined {
  let overlayFrame = 0;
  if (plane.frames > 1) {
    overlayFrame = frameIndex - (plane.imageFrameOrigin - 1);
    if (overlayFrame < 0 || overlayFrame >= plane.frames) return undefined;
  }
  const xf = width / imageColumns;
  const yf = height / imageRows;
  // The common buffer's scaled size, and which of its rows and columns each scaled one shows.
  const columnOf = sampledPositions(extent.columns, Math.trunc(xf * extent.columns));
  const rowOf = sampledPositions(extent.rows, Math.trunc(yf * extent.rows));
  const left = Math.trunc(xf * (plane.originColumn - 1));
  const top = Math.trunc(yf * (plane.originRow - 1));
  const planeWidth = Math.min(Math.trunc(xf * plane.columns), columnOf.length);
  const planeHeight = Math.min(Math.trunc(yf * plane.rows), rowOf.length);
  const x0 = Math.max(0, left);
  const x1 = Math.min(width, left + planeWidth);
  const y0 = Math.max(0, top);
  const y1 = Math.min(height, top + planeHeight);
  if (x0 >= x1 || y0 >= y1) return undefined;
  const planeSize = plane.rows * plane.columns;
  const isSet = (r: number, c: number): boolean => {
    if (r >= plane.rows || c >= plane.columns) return false;
    if (plane.data) {
      // Up to 65535² bits a frame: past 2³¹, so no bit shifts on the index.
      const bit = overlayFrame * planeSize + r * plane.columns + c;
      return (((plane.data[Math.floor(bit / 8)] ?? 0) >> (bit % 8)) & 1) === 1;
    }
    const imageRow = plane.originRow - 1 + r;
    const imageColumn = plane.originColumn - 1 + c;
    if (imageRow < 0 || imageRow >= imageRows || imageColumn < 0 || imageColumn >= imageColumns) return false;
    const word = storedWords?.[imageRow * imageColumns + imageColumn] ?? 0;
    return ((word >> plane.bitPosition!) & 1) === 1;
  };
  const coverage = new Uint8Array(width * height);
  let acting = 0;
  for (let y = y0; y < y1; y++) {
    const r = rowOf[y - top]!;
    for (let x = x0; x < x1; x++) {
      const set = isSet(r, columnOf[x - left]!);
      if (plane.type === 'G' ? set : !set) {
        coverage[y * width + x] = 1;
        acting++;
      }
    }
  }
  return acting > 0 ? coverage : undefined;
}

/**
 * The source row (or column) each of `to` rows shows when `from` are scaled without interpolation, as DCMTK's
 * scalePixel does: the rows it drops (or repeats) are spread evenly, one at the middle, two at a third and two
 * thirds, and so on (setScaleValues in its discalet.h).
 */
function sampledPositions(from: number, to: number): Int32Array {
  const positions = new Int32Array(Math.max(0, to));
  if (to <= 0 || from <= 0) return positions;
  if (from === to) {
    for (let i = 0; i < to; i++) positions[i] = i;
    return positions;
  }
  if (to < from) {
    const steps = spreadSteps(to, from);
    for (let i = 1; i < to; i++) positions[i] = positions[i - 1]! + steps[i - 1]!;
    return positions;
  }
  const repeats = spreadSteps(from, to);
  let o = 0;
  for (let i = 0; i < from; i++) for (let k = 0; k < repeats[i]! && o < to; k++) positions[o++] = i;
  return positions;
}

/** `count` whole steps that add up to `total`: each total / count, and the remainder spread as longer steps over
 * evenly spaced places (or, when it is more than half, its complement as shorter ones). */
function spreadSteps(count: number, total: number): Int32Array {
  const steps = new Int32Array(count);
  let remainder = total % count;
  let usual = Math.floor(total / count);
  let spread = usual;
  if (remainder > Math.floor(count / 2)) {
    remainder = count - remainder;
    usual++;
  } else {
    spread++;
  }
  const spacing = count / (remainder + 1);
  let next = spacing;
  for (let i = 0; i < count; i++) {
    if (i >= Math.trunc(next) && remainder > 0) {
      remainder--;
      next += spacing;
      steps[i] = spread;
    } else {
      steps[i] = usual;
    }
  }
  return steps;
}
