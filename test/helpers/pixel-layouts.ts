/**
 * Pixel layouts modalities produce, and a deterministic pattern to fill them with, for the conformance
 * matrices that make unseen files from them (DCMTK transcodes, independent JPEG 2000 and HTJ2K encoders).
 */
import { type DicomElement, imageElements, writeDicom } from './dicom-writer.js';
import { random } from './ecg-synthetic.js';

export interface Layout {
  name: string;
  rows: number;
  columns: number;
  bitsAllocated: 8 | 16;
  bitsStored: number;
  /** Default bitsStored − 1; higher puts the stored bits at the top of the word. */
  highBit?: number;
  signed?: boolean;
  samplesPerPixel?: 1 | 3;
  planarConfiguration?: 0 | 1;
  photometricInterpretation?: 'MONOCHROME1' | 'MONOCHROME2' | 'RGB';
  frames?: number;
  /** Stored values the pattern spans (before any high-bit shift). */
  range: [number, number];
  /** What the bits above the high bit hold: by default nothing (unsigned) or the sign (signed); 'overlay' sets
   * some in part of the image, as overlays embedded in pixel data do; 'clear' leaves signed values without
   * their sign extension, as some modalities write them. */
  bitsAboveHighBit?: 'overlay' | 'clear';
  extra?: DicomElement[];
}

export const ds = (tag: number, value: string): DicomElement => ({ tag, vr: 'DS', value });
export const rescale = (slope: string, intercept: string) => [
  ds(0x00281053, slope),
  ds(0x00281052, intercept),
];
export const windowed = (center: string, width: string) => [ds(0x00281050, center), ds(0x00281051, width)];
export const CT: DicomElement[] = [
  { tag: 0x00080016, vr: 'UI', value: '1.2.840.10008.5.1.4.1.1.2' },
  { tag: 0x00080060, vr: 'CS', value: 'CT' },
];
export const U12: Pick<Layout, 'bitsAllocated' | 'bitsStored' | 'range'> = {
  bitsAllocated: 16,
  bitsStored: 12,
  range: [0, 4095],
};
export const U8: Pick<Layout, 'bitsAllocated' | 'bitsStored' | 'range'> = {
  bitsAllocated: 8,
  bitsStored: 8,
  range: [0, 255],
};
export const S12: Pick<Layout, 'bitsAllocated' | 'bitsStored' | 'range' | 'signed'> = {
  bitsAllocated: 16,
  bitsStored: 12,
  signed: true,
  range: [-2048, 2047],
};
export const RGB8: Pick<Layout, 'bitsAllocated' | 'bitsStored' | 'range' | 'samplesPerPixel'> = {
  ...U8,
  samplesPerPixel: 3,
};

/** The layouts of the DCMTK transcode matrix: odd sizes, one row, one column, 8–16 bits, signed, HighBit 15,
 * overlay bits, rescale and windows, MONOCHROME1, the Presentation LUT Shapes, RGB planar 0/1, multi-frame. */
export const MATRIX_LAYOUTS: readonly Layout[] = [
  { name: 'u8 127×93', rows: 93, columns: 127, ...U8 },
  { name: 'u8 200×1', rows: 1, columns: 200, ...U8 },
  { name: 'u8 80×64 3 frames', rows: 64, columns: 80, frames: 3, ...U8 },
  {
    name: 's8 90×70',
    rows: 70,
    columns: 90,
    bitsAllocated: 8,
    bitsStored: 8,
    signed: true,
    range: [-128, 127],
  },
  {
    name: 'u10 96×72 window',
    rows: 72,
    columns: 96,
    bitsAllocated: 16,
    bitsStored: 10,
    range: [0, 1023],
    extra: windowed('600', '700'),
  },
  { name: 'u12 257×31', rows: 31, columns: 257, ...U12 },
  { name: 'u12 1×160', rows: 160, columns: 1, ...U12 },
  { name: 'u12 93×127 window', rows: 127, columns: 93, ...U12, extra: windowed('1800', '2400') },
  { name: 'u12 80×60 rescale', rows: 60, columns: 80, ...U12, extra: rescale('0.5', '100') },
  {
    name: 'u12 83×61 rescale window',
    rows: 61,
    columns: 83,
    ...U12,
    extra: [...rescale('2', '-1024'), ...windowed('1500', '3000')],
  },
  { name: 'u12 high bit 15 70×50', rows: 50, columns: 70, ...U12, highBit: 15 },
  {
    name: 'u12 overlay bits above high bit 70×50',
    rows: 50,
    columns: 70,
    ...U12,
    bitsAboveHighBit: 'overlay',
  },
  { name: 's12 75×65', rows: 65, columns: 75, ...S12 },
  { name: 's12 without sign extension 75×65', rows: 65, columns: 75, ...S12, bitsAboveHighBit: 'clear' },
  {
    name: 's15 72×72',
    rows: 72,
    columns: 72,
    bitsAllocated: 16,
    bitsStored: 15,
    signed: true,
    range: [-16384, 16383],
  },
  {
    name: 'CT s16 120×100 window',
    rows: 100,
    columns: 120,
    bitsAllocated: 16,
    bitsStored: 16,
    signed: true,
    range: [-2000, 3000],
    extra: [...CT, ...rescale('1', '-1024'), ...windowed('40', '400')],
  },
  {
    name: 'CT s16 64×64 3 frames',
    rows: 64,
    columns: 64,
    frames: 3,
    bitsAllocated: 16,
    bitsStored: 16,
    signed: true,
    range: [-2000, 3000],
    extra: [...CT, ...rescale('1', '-1024')],
  },
  { name: 'u16 100×75', rows: 75, columns: 100, bitsAllocated: 16, bitsStored: 16, range: [0, 65535] },
  { name: 'MONOCHROME1 u8 127×93', rows: 93, columns: 127, ...U8, photometricInterpretation: 'MONOCHROME1' },
  {
    name: 'MONOCHROME1 u12 93×127 window',
    rows: 127,
    columns: 93,
    ...U12,
    photometricInterpretation: 'MONOCHROME1',
    extra: windowed('2048', '3000'),
  },
  // The Presentation LUT Shape overrides the photometric polarity (negative angiography, DX/MG modules).
  {
    name: 'MONOCHROME2 u12 90×70 Presentation LUT INVERSE',
    rows: 70,
    columns: 90,
    ...U12,
    extra: [{ tag: 0x20500020, vr: 'CS', value: 'INVERSE' }],
  },
  {
    name: 'MONOCHROME1 u8 90×70 Presentation LUT IDENTITY',
    rows: 70,
    columns: 90,
    ...U8,
    photometricInterpretation: 'MONOCHROME1',
    extra: [{ tag: 0x20500020, vr: 'CS', value: 'IDENTITY' }],
  },
  { name: 'RGB 127×93 planar 0', rows: 93, columns: 127, ...RGB8, planarConfiguration: 0 },
  { name: 'RGB 93×127 planar 1', rows: 127, columns: 93, ...RGB8, planarConfiguration: 1 },
  { name: 'RGB 64×48 3 frames', rows: 48, columns: 64, frames: 3, ...RGB8, planarConfiguration: 0 },
  {
    name: 'RGB u16 64×48',
    rows: 48,
    columns: 64,
    bitsAllocated: 16,
    bitsStored: 16,
    samplesPerPixel: 3,
    range: [0, 65535],
  },
];

/** 0…1 at one pixel: a gradient whose direction, and a disc, bar and stripes whose places, depend on the frame
 * and sample, so that a wrong frame, sample order or orientation shows in the correlation. */
function intensity(u: number, v: number, frame: number, sample: number, noise: number): number {
  const angle = (frame * 3 + sample) * 0.8;
  let t = 0.2 + 0.55 * (0.5 + (u - 0.5) * Math.cos(angle) + (v - 0.5) * Math.sin(angle));
  if (Math.hypot(u - (0.3 + 0.2 * frame), v - (0.45 + 0.1 * sample)) < 0.2) t += 0.3;
  if (u > 0.6 && u < 0.85 && v > 0.15 + 0.2 * frame && v < 0.4 + 0.2 * frame) t -= 0.35;
  if (u > 0.05 && u < 0.3 && v > 0.65) t += 0.12 * Math.sin(u * 120);
  return Math.min(1, Math.max(0, t + noise));
}

/** Pixel Data of every frame as the layout stores it. */
export function pixelData(layout: Layout): Uint8Array | Uint16Array | Int16Array {
  const spp = layout.samplesPerPixel ?? 1;
  const frames = layout.frames ?? 1;
  const { rows, columns } = layout;
  const perFrame = rows * columns * spp;
  const out =
    layout.bitsAllocated === 8
      ? new Uint8Array(perFrame * frames)
      : layout.signed
        ? new Int16Array(perFrame * frames)
        : new Uint16Array(perFrame * frames);
  const next = random(layout.name.length * 7919 + rows * 31 + columns);
  const [lo, hi] = layout.range;
  const shift = (layout.highBit ?? layout.bitsStored - 1) - (layout.bitsStored - 1);
  for (let f = 0; f < frames; f++) {
    for (let y = 0; y < rows; y++) {
      for (let x = 0; x < columns; x++) {
        const u = columns > 1 ? x / (columns - 1) : 0.5;
        const v = rows > 1 ? y / (rows - 1) : 0.5;
        for (let s = 0; s < spp; s++) {
          let value = lo + Math.round(intensity(u, v, f, s, (next() - 0.5) * 0.05) * (hi - lo));
          value *= 2 ** shift;
          if (layout.bitsAboveHighBit === 'overlay' && u < 0.5 && v < 0.5)
            value |= 0x8000 | (x % 2 ? 0x2000 : 0);
          if (layout.bitsAboveHighBit === 'clear') value &= 2 ** layout.bitsStored - 1;
          const pixel = y * columns + x;
          const index = layout.planarConfiguration === 1 ? s * rows * columns + pixel : pixel * spp + s;
          out[f * perFrame + index] = value;
        }
      }
    }
  }
  return out;
}

/** The image pixel module (and the layout's extra elements) over the given pixel data. */
export function layoutElements(
  layout: Layout,
  pixels: ReturnType<typeof pixelData> | { fragments: Uint8Array[]; offsetTable?: number[] },
  photometricInterpretation?: string,
): DicomElement[] {
  return imageElements({
    rows: layout.rows,
    columns: layout.columns,
    bitsAllocated: layout.bitsAllocated,
    bitsStored: layout.bitsStored,
    highBit: layout.highBit ?? layout.bitsStored - 1,
    pixelRepresentation: layout.signed ? 1 : 0,
    samplesPerPixel: layout.samplesPerPixel ?? 1,
    planarConfiguration: layout.planarConfiguration ?? 0,
    photometricInterpretation:
      photometricInterpretation ??
      layout.photometricInterpretation ??
      (layout.samplesPerPixel === 3 ? 'RGB' : 'MONOCHROME2'),
    ...(layout.frames ? { numberOfFrames: layout.frames } : {}),
    pixelData: pixels,
    extra: layout.extra ?? [],
  });
}

/** The layout as an explicit VR little endian file with native pixel data. */
export function sourceFile(layout: Layout): Uint8Array {
  return writeDicom(layoutElements(layout, pixelData(layout)), { encoding: 'explicit-le' });
}

/** One way of writing a layout (a transcoder's options, an encoder's settings) and the layouts it applies to. */
export interface MatrixVariant {
  name: string;
  applies: (layout: Layout) => boolean;
}

/** A layout written one way; `key` names it in test titles and in the matrices' maps of produced files. */
export interface Combination<V extends MatrixVariant> {
  key: string;
  layout: Layout;
  variant: V;
}

export function combineLayouts<V extends MatrixVariant>(
  layouts: readonly Layout[],
  variants: readonly V[],
): Combination<V>[] {
  return layouts.flatMap((layout) =>
    variants
      .filter((v) => v.applies(layout))
      .map((variant) => ({ key: `${layout.name} → ${variant.name}`, layout, variant })),
  );
}

/** The frames each file's render is checked on: the middle one, which Teleread shows by default, and the last,
 * which a reader must find past the others (without an offset table, by walking the fragments). As test rows:
 * title, combination key, zero-based frame. */
export function framesToRender(
  combinations: readonly Combination<MatrixVariant>[],
): [name: string, key: string, frame: number][] {
  return combinations.flatMap((c) => {
    const frames = c.layout.frames ?? 1;
    const chosen = frames === 1 ? [0] : [Math.floor(frames / 2), frames - 1];
    return chosen.map((frame): [string, string, number] => [
      `${c.key}, frame ${frame + 1} of ${frames}`,
      c.key,
      frame,
    ]);
  });
}
