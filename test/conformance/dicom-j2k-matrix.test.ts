import { execFile } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { parseDicom } from '../../src/formats/dicom/parse-dicom.js';
import type { PixelArray } from '../../src/formats/dicom/pixel-data.js';
import { closeDecodePool } from '../../src/imaging/decode-pool.js';
import { decodeDicomFrame } from '../../src/imaging/render-dicom.js';
import {
  type DcmtkVoi,
  type GrayImage,
  hasDcmj2pnm,
  onPath,
  renderWithDcmtk,
  toGray,
} from '../helpers/dcmtk.js';
import { encodeFrame, writeDicom } from '../helpers/dicom-writer.js';
import {
  combineLayouts,
  framesToRender,
  type Layout,
  layoutElements,
  MATRIX_LAYOUTS,
  type Combination as MatrixCombination,
  pixelData,
  RGB8,
  sourceFile,
  U12,
} from '../helpers/pixel-layouts.js';
import { limiter } from '../helpers/processes.js';
import { expectRendersLike, MIN_CORRELATION, renderForComparison } from '../helpers/render-compare.js';

/**
 * JPEG 2000 and HTJ2K files no one has seen, from encoders independent of Teleread's decoders: OpenJPEG's
 * opj_compress and OpenJPH's ojph_compress (the Debian builds), plus the OpenJPEG and OpenJPH builds inside
 * dcmjs-codecs, over the pixel layouts of the DCMTK transcode matrix and the encoder parameters that change
 * the codestream's structure: wavelet (reversible 5/3, irreversible 9/7), resolution levels, tiles, tile
 * parts, image and tile offsets, precincts, code-block sizes and mode switches, progression orders, quality
 * layers, SOP/EPH/PLT/TLM markers, the colour transform on and off, a JP2 wrapper, and how frames sit in
 * fragments. Each codestream's main header is checked to say what was asked. DCMTK can neither write nor read
 * these syntaxes, so its render of the uncompressed source is the reference: each frame must render like it
 * at 256 px (r ≥ 0.99, 8-bit grayscale, the same VOI), reversible codestreams must give back every source
 * sample, and irreversible ones must keep 40 dB PSNR over the displayed range (window width, else the
 * samples' span).
 */

const run = promisify(execFile);
/** Irreversible codestreams are made at qualities that keep this much fidelity over the displayed range
 * (checked on Teleread's decode). */
const MIN_LOSSY_PSNR_DB = 40;
/** Encoder and DCMTK processes at a time: the machine has two cores. */
const PROCESS_CONCURRENCY = 2;

const hasOpj = onPath('opj_compress');
const hasOjph = onPath('ojph_compress');

// ---- pixel layouts (those of the DCMTK transcode matrix that JPEG 2000 carries) --------------------------

/** Taken from the transcode matrix as they are; its overlay-bit, sign-extension, high-bit and Presentation LUT
 * layouts test what DCMTK's writers do, not JPEG 2000. */
const FROM_MATRIX = new Set([
  'u8 127×93',
  'u8 200×1',
  'u8 80×64 3 frames',
  'u10 96×72 window',
  'u12 257×31',
  'u12 1×160',
  'u12 93×127 window',
  'u12 83×61 rescale window',
  's12 75×65',
  'CT s16 120×100 window',
  'CT s16 64×64 3 frames',
  'u16 100×75',
  'MONOCHROME1 u8 127×93',
  'MONOCHROME1 u12 93×127 window',
  'RGB 64×48 3 frames',
  'RGB u16 64×48',
]);

const LAYOUTS: Layout[] = [
  ...MATRIX_LAYOUTS.filter((l) => FROM_MATRIX.has(l.name)),
  // Wider than 1024: more than one code-block and precinct across at every level.
  { name: 'u12 1031×97', rows: 97, columns: 1031, ...U12 },
  { name: 'RGB 127×93', rows: 93, columns: 127, ...RGB8 },
  { name: 'RGB 1030×131', rows: 131, columns: 1030, ...RGB8 },
];

const colour = (l: Layout) => (l.samplesPerPixel ?? 1) === 3;
const multiFrame = (l: Layout) => (l.frames ?? 1) > 1;
const always = () => true;
const unsigned12 = (l: Layout) => l.bitsStored === 12 && !l.signed;

type Samples = ReturnType<typeof pixelData>;

// ---- encoders and their parameters -------------------------------------------------------------------------

const J2K_LOSSLESS = '1.2.840.10008.1.2.4.90';
const J2K = '1.2.840.10008.1.2.4.91';
const HTJ2K_LOSSLESS = '1.2.840.10008.1.2.4.201';
const HTJ2K_LOSSLESS_RPCL = '1.2.840.10008.1.2.4.202';
const HTJ2K = '1.2.840.10008.1.2.4.203';

type Progression = 'LRCP' | 'RLCP' | 'RPCL' | 'PCRL' | 'CPRL';
const PROGRESSIONS: Progression[] = ['LRCP', 'RLCP', 'RPCL', 'PCRL', 'CPRL'];

type XY = [x: number, y: number];

interface Variant {
  name: string;
  encoder: 'opj_compress' | 'ojph_compress' | 'dcmjs-codecs';
  /** Encoder options besides the input, output, image description, geometry and levels. */
  args: string[];
  uid: string;
  /** 5/3 wavelet and integer colour transform: the decoded frame must equal the source. */
  reversible: boolean;
  /** On colour layouts: RCT (reversible) or ICT (irreversible), else the components are R, G and B. */
  colourTransform: boolean;
  /** Wavelet decompositions wanted (resolution levels − 1); fitted to the layout where the encoder needs it. */
  decompositions?: number;
  tiles?: XY;
  /** The image's and the tiles' origin on the reference grid. */
  imageOffset?: XY;
  tileOffset?: XY;
  /** Irreversible quality: the PSNR opj_compress aims at, in dB over the displayed range (one per layer), or
   * ojph_compress's quantisation step as a fraction of the displayed range. */
  psnr?: number[];
  qstep?: number;
  /** opj_compress: precision 16 for 12 stored bits, the whole word, as DCMTK's lossless encoders write. */
  wholeWord?: boolean;
  /** The codestream inside a JP2 file (signature, header and codestream boxes). */
  jp2?: boolean;
  /** Fragments per frame (default 1) and whether the Basic Offset Table is filled (default yes). */
  fragmentsPerFrame?: number;
  offsetTable?: boolean;
  /** What the main header must say, to be sure the encoder did what was asked. */
  progression: Progression;
  layers?: number;
  precision?: (l: Layout) => number;
  applies: (l: Layout) => boolean;
}

const opj = (
  name: string,
  args: string[],
  more: Partial<Variant> & Pick<Variant, 'progression'>,
): Variant => ({
  name: `opj_compress ${name}`,
  encoder: 'opj_compress',
  args,
  uid: more.reversible === false ? J2K : J2K_LOSSLESS,
  reversible: true,
  colourTransform: true,
  decompositions: 5,
  applies: always,
  ...more,
});

const ojph = (
  name: string,
  args: string[],
  more: Partial<Variant> & Pick<Variant, 'progression'>,
): Variant => ({
  name: `ojph_compress ${name}`,
  encoder: 'ojph_compress',
  args,
  uid: more.reversible === false ? HTJ2K : HTJ2K_LOSSLESS,
  reversible: true,
  colourTransform: true,
  decompositions: 5,
  applies: always,
  ...more,
});

/** Tiles need room for an offset and more than one tile. */
const roomy = (l: Layout) => l.rows > 8 && l.columns > 8;
/** dcmjs-codecs writes 16-bit colour wrongly (opj_decompress reads its OpenJPEG codestream as noise and its
 * OpenJPH one with the interleaved samples as planes), so it is given the other layouts. */
const dcmjsLayouts = (l: Layout) =>
  (l.signed === true || colour(l) || l.name === 'u16 100×75') && !(colour(l) && l.bitsAllocated === 16);

/**
 * Irreversible codestreams are made at qualities measured over the displayed range (the window width, else
 * the pattern's span), so that a narrow CT window sees no more loss than a full-range image: opj_compress -q
 * 45–55 dB, ojph_compress -qstep 1/200 and 1/100 of that range (about 53 and 47 dB). Each decode is checked
 * at MIN_LOSSY_PSNR_DB over the same range.
 */
const VARIANTS: Variant[] = [
  opj('5/3 defaults (6 resolutions, 64×64 code-blocks, LRCP)', [], { progression: 'LRCP' }),
  opj('5/3 2 resolutions, 16×16 code-blocks, RLCP', ['-b', '16,16', '-p', 'RLCP'], {
    decompositions: 1,
    progression: 'RLCP',
  }),
  opj('5/3 64×64 tiles, RPCL', ['-p', 'RPCL'], { tiles: [64, 64], progression: 'RPCL' }),
  opj('5/3 precincts 32/16, PCRL, SOP and EPH', ['-c', '[32,32],[16,16]', '-p', 'PCRL', '-SOP', '-EPH'], {
    progression: 'PCRL',
  }),
  opj('5/3 3 quality layers (40:1, 10:1, lossless), CPRL', ['-r', '40,10,1', '-p', 'CPRL'], {
    progression: 'CPRL',
    layers: 3,
  }),
  opj(
    '5/3 64×8 code-blocks, every mode switch, 48×40 tiles in tile-parts per resolution, PLT and TLM',
    ['-b', '64,8', '-M', '63', '-TP', 'R', '-PLT', '-TLM'],
    { tiles: [48, 40], progression: 'LRCP' },
  ),
  opj('5/3 image offset 5,3, 48×40 tiles from 2,1', [], {
    imageOffset: [5, 3],
    tiles: [48, 40],
    tileOffset: [2, 1],
    progression: 'LRCP',
  }),
  opj('5/3 precision 16 for 12 stored bits', [], {
    wholeWord: true,
    progression: 'LRCP',
    applies: unsigned12,
  }),
  opj('5/3 no colour transform (RGB)', ['-mct', '0'], {
    colourTransform: false,
    progression: 'LRCP',
    applies: colour,
  }),
  opj('5/3 in the lossy transfer syntax', [], {
    uid: J2K,
    progression: 'LRCP',
    applies: (l) => l.name === 'u12 93×127 window' || colour(l),
  }),
  opj('9/7 PSNR 50 dB', ['-I'], { reversible: false, psnr: [50], progression: 'LRCP' }),
  opj('9/7 3 layers (PSNR 35, 42, 50 dB), RPCL, 3 resolutions', ['-I', '-p', 'RPCL'], {
    reversible: false,
    psnr: [35, 42, 50],
    decompositions: 2,
    progression: 'RPCL',
    layers: 3,
  }),
  opj('9/7 PSNR 45 dB, 32×32 tiles, 32×32 code-blocks, PCRL', ['-I', '-b', '32,32', '-p', 'PCRL'], {
    reversible: false,
    psnr: [45],
    tiles: [32, 32],
    progression: 'PCRL',
  }),
  opj('9/7 PSNR 50 dB, no colour transform (RGB)', ['-I', '-mct', '0'], {
    reversible: false,
    psnr: [50],
    colourTransform: false,
    progression: 'LRCP',
    applies: colour,
  }),
  opj('5/3 JP2 file format', [], {
    jp2: true,
    progression: 'LRCP',
    applies: (l) => ['u8 127×93', 'u12 257×31', 'CT s16 120×100 window', 'RGB 127×93'].includes(l.name),
  }),
  opj('5/3 defaults, 3 fragments per frame', [], {
    fragmentsPerFrame: 3,
    progression: 'LRCP',
    applies: (l) => multiFrame(l) || l.name === 'u12 93×127 window' || l.name === 'RGB 127×93',
  }),
  opj('5/3 defaults, empty offset table', [], {
    offsetTable: false,
    progression: 'LRCP',
    applies: multiFrame,
  }),
  opj('5/3 defaults, 2 fragments per frame, empty offset table', [], {
    fragmentsPerFrame: 2,
    offsetTable: false,
    progression: 'LRCP',
    applies: multiFrame,
  }),

  ojph('reversible defaults (5 decompositions, 64×64 blocks, RPCL)', [], {
    uid: HTJ2K_LOSSLESS_RPCL,
    progression: 'RPCL',
  }),
  ojph('reversible LRCP, 32×32 blocks, 2 decompositions', ['-prog_order', 'LRCP', '-block_size', '{32,32}'], {
    decompositions: 2,
    progression: 'LRCP',
  }),
  ojph('reversible RLCP, 16×64 blocks, image offset 3,5', ['-prog_order', 'RLCP', '-block_size', '{16,64}'], {
    imageOffset: [3, 5],
    progression: 'RLCP',
    applies: roomy,
  }),
  ojph('reversible PCRL, 64×64 tiles', ['-prog_order', 'PCRL'], { tiles: [64, 64], progression: 'PCRL' }),
  ojph(
    'reversible CPRL, precincts 16/32/64',
    ['-prog_order', 'CPRL', '-precincts', '{16,16},{32,32},{64,64}'],
    {
      progression: 'CPRL',
    },
  ),
  ojph('reversible, no decomposition', ['-prog_order', 'LRCP'], {
    decompositions: 0,
    progression: 'LRCP',
    applies: (l) => !multiFrame(l),
  }),
  ojph('reversible, no colour transform (RGB)', ['-colour_trans', 'false'], {
    uid: HTJ2K_LOSSLESS_RPCL,
    colourTransform: false,
    progression: 'RPCL',
    applies: colour,
  }),
  ojph('irreversible, qstep 1/200 of the displayed range', [], {
    reversible: false,
    qstep: 1 / 200,
    progression: 'RPCL',
  }),
  ojph(
    'irreversible, qstep 1/100 of the displayed range, LRCP, 32×32 blocks, 64×64 tiles',
    ['-prog_order', 'LRCP', '-block_size', '{32,32}'],
    {
      reversible: false,
      qstep: 1 / 100,
      tiles: [64, 64],
      progression: 'LRCP',
    },
  ),
  ojph(
    'irreversible, qstep 1/200 of the displayed range, no colour transform (RGB)',
    ['-colour_trans', 'false'],
    {
      reversible: false,
      qstep: 1 / 200,
      colourTransform: false,
      progression: 'RPCL',
      applies: colour,
    },
  ),
  ojph('reversible defaults, 2 fragments per frame, empty offset table', [], {
    uid: HTJ2K_LOSSLESS_RPCL,
    fragmentsPerFrame: 2,
    offsetTable: false,
    progression: 'RPCL',
    applies: (l) => multiFrame(l) || l.name === 'u16 100×75',
  }),

  // OpenJPH's command line reads raw samples as unsigned only; signed HTJ2K codestreams come from dcmjs-codecs.
  {
    name: 'dcmjs-codecs OpenJPEG lossless (2 layers)',
    encoder: 'dcmjs-codecs',
    args: [],
    uid: J2K_LOSSLESS,
    reversible: true,
    colourTransform: true,
    progression: 'LRCP',
    layers: 2,
    applies: dcmjsLayouts,
  },
  {
    name: 'dcmjs-codecs OpenJPH lossless (precision of the whole word)',
    encoder: 'dcmjs-codecs',
    args: [],
    uid: HTJ2K_LOSSLESS,
    reversible: true,
    colourTransform: true,
    progression: 'LRCP',
    precision: (l) => l.bitsAllocated,
    applies: dcmjsLayouts,
  },
];

type Combination = MatrixCombination<Variant>;

const COMBINATIONS: Combination[] = combineLayouts(LAYOUTS, VARIANTS);

const RENDERS = framesToRender(COMBINATIONS);

function photometricFor(layout: Layout, variant: Variant): string {
  if (!colour(layout)) return layout.photometricInterpretation ?? 'MONOCHROME2';
  if (!variant.colourTransform) return 'RGB';
  return variant.reversible ? 'YBR_RCT' : 'YBR_ICT';
}

/** The stored-value range a viewer shows: the window width (in stored units), else the samples' span, which
 * Teleread's percentile window nearly fills. */
function displayedRange(layout: Layout, samples: Samples): number {
  const value = (tag: number) => {
    const element = layout.extra?.find((e) => e.tag === tag);
    return typeof element?.value === 'string' ? Number(element.value) : undefined;
  };
  const width = value(0x00281051);
  if (width !== undefined) return width / (value(0x00281053) ?? 1);
  let lo = Number.POSITIVE_INFINITY;
  let hi = Number.NEGATIVE_INFINITY;
  for (const v of samples) {
    lo = Math.min(lo, v);
    hi = Math.max(hi, v);
  }
  return hi - lo;
}

// ---- encoding ------------------------------------------------------------------------------------------

function frameSamples(layout: Layout, all: Samples, frame: number): Samples {
  const perFrame = layout.rows * layout.columns * (layout.samplesPerPixel ?? 1);
  return all.subarray(frame * perFrame, (frame + 1) * perFrame);
}

/** Samples as the encoders' raw input takes them: plane after plane, one byte each up to 8 bits, else two
 * little-endian bytes. OpenJPH's command line reads them unsigned only (a negative sample becomes a value
 * beyond the signed range), so signed samples go in as their bit pattern: an unsigned codestream under Pixel
 * Representation 1, which a reader must take as the attribute says, as it does for DCMTK's JPEG-LS. */
function rawPlanes(layout: Layout, samples: Samples, bits: number, asBitPattern: boolean): Uint8Array {
  const spp = layout.samplesPerPixel ?? 1;
  const pixels = layout.rows * layout.columns;
  const width = layout.bitsAllocated / 8;
  const out = new Uint8Array(pixels * spp * width);
  const view = new DataView(out.buffer);
  const mask = 2 ** bits - 1;
  for (let s = 0; s < spp; s++) {
    for (let p = 0; p < pixels; p++) {
      const v = samples[p * spp + s]!;
      const o = (s * pixels + p) * width;
      if (width === 1) out[o] = v;
      else if (asBitPattern) view.setUint16(o, v & mask, true);
      else view.setInt16(o, v, true);
    }
  }
  return out;
}

/** A binary PPM (P6) of pixel-interleaved RGB, big-endian above 8 bits, as Netpbm defines it. */
function ppm(layout: Layout, samples: Samples): Uint8Array {
  const header = new TextEncoder().encode(
    `P6\n${layout.columns} ${layout.rows}\n${2 ** layout.bitsStored - 1}\n`,
  );
  const width = layout.bitsAllocated / 8;
  const body = new Uint8Array(samples.length * width);
  const view = new DataView(body.buffer);
  samples.forEach((v, i) => {
    if (width === 1) body[i] = v;
    else view.setUint16(i * 2, v, false);
  });
  const out = new Uint8Array(header.length + body.length);
  out.set(header);
  out.set(body, header.length);
  return out;
}

/** Sides of the tiles the image [origin, origin + length) meets along one axis of the reference grid. */
function tileSides(origin: number, length: number, tileOrigin: number, tile: number): number[] {
  const sides: number[] = [];
  for (let k = Math.floor((origin - tileOrigin) / tile); tileOrigin + k * tile < origin + length; k++) {
    const start = Math.max(origin, tileOrigin + k * tile);
    sides.push(Math.min(origin + length, tileOrigin + (k + 1) * tile) - start);
  }
  return sides;
}

/**
 * The decompositions the encoders get: as many as wanted, but no more than the smallest tile side allows.
 * Where a tile's lowest resolution is empty, opj_compress 2.5.0 writes lossless codestreams that no decoder
 * reads back as the source (the open OpenJPEG issue 1575: here a 127×93 image in 48×40 tiles, whose last row of
 * tiles is 13 pixels high, came back with 1,624 samples wrong from opj_decompress and from Teleread alike).
 * ojph_compress 0.9.0's 9/7 path fails already when the lowest resolution is one row or column high: a 257×31
 * image with 5 decompositions, or 96×72 in 64×64 tiles with 3, came back at 21–25 dB from opj_decompress,
 * ojph_expand and Teleread alike, whatever the quantisation step (with 4 and 2, at 70 and 48 dB). OpenJPH's
 * reversible path is exact there, so ojph_compress keeps every level it is given.
 */
function fittedDecompositions(layout: Layout, variant: Variant): number {
  const [x0, y0] = variant.imageOffset ?? [0, 0];
  const [tx0, ty0] = variant.tileOffset ?? [0, 0];
  const [tw, th] = variant.tiles ?? [x0 + layout.columns, y0 + layout.rows];
  const smallest = Math.min(
    ...tileSides(x0, layout.columns, tx0, tw),
    ...tileSides(y0, layout.rows, ty0, th),
  );
  const wanted = variant.decompositions ?? 5;
  if (variant.encoder !== 'ojph_compress') return Math.min(wanted, Math.floor(Math.log2(smallest)));
  if (variant.reversible) return wanted;
  return Math.min(wanted, Math.max(0, Math.floor(Math.log2(smallest)) - 1));
}

function opjArgs(layout: Layout, variant: Variant, samples: Samples): string[] {
  const args = ['-n', String(fittedDecompositions(layout, variant) + 1)];
  if (variant.tiles) args.push('-t', variant.tiles.join(','));
  if (variant.imageOffset) args.push('-d', variant.imageOffset.join(','));
  if (variant.tileOffset) args.push('-T', variant.tileOffset.join(','));
  if (variant.psnr) {
    const precision = variant.wholeWord ? 16 : layout.bitsStored;
    const headroom = 20 * Math.log10((2 ** precision - 1) / displayedRange(layout, samples));
    args.push('-q', variant.psnr.map((db) => (db + headroom).toFixed(1)).join(','));
  }
  return [...args, ...variant.args];
}

function ojphArgs(layout: Layout, variant: Variant, samples: Samples): string[] {
  const args = ['-reversible', String(variant.reversible)];
  args.push('-num_decomps', String(fittedDecompositions(layout, variant)));
  if (variant.tiles) args.push('-tile_size', `{${variant.tiles.join(',')}}`);
  if (variant.imageOffset) args.push('-image_offset', `{${variant.imageOffset.join(',')}}`);
  if (variant.qstep) {
    const step = (variant.qstep * displayedRange(layout, samples)) / 2 ** layout.bitsStored;
    args.push('-qstep', step.toPrecision(3));
  }
  return [...args, ...variant.args];
}

const processes = limiter(PROCESS_CONCURRENCY);

async function encodeWithTool(
  dir: string,
  stem: string,
  layout: Layout,
  variant: Variant,
  samples: Samples,
): Promise<Uint8Array> {
  const spp = layout.samplesPerPixel ?? 1;
  if (variant.encoder === 'opj_compress') {
    const bits = variant.wholeWord ? 16 : layout.bitsStored;
    const input = path.join(dir, `${stem}.rawl`);
    const output = path.join(dir, `${stem}.${variant.jp2 ? 'jp2' : 'j2k'}`);
    await writeFile(input, rawPlanes(layout, samples, bits, false));
    const size = `${layout.columns},${layout.rows},${spp},${bits},${layout.signed ? 's' : 'u'}`;
    const args = ['-i', input, '-o', output, '-F', size, ...opjArgs(layout, variant, samples)];
    await processes(() => run('opj_compress', args, { timeout: 60_000 }));
    return readFile(output);
  }
  const output = path.join(dir, `${stem}.j2c`);
  let args: string[];
  if (spp === 3) {
    const input = path.join(dir, `${stem}.ppm`);
    await writeFile(input, ppm(layout, samples));
    args = ['-i', input];
  } else {
    const input = path.join(dir, `${stem}.yuv`);
    await writeFile(input, rawPlanes(layout, samples, layout.bitsStored, true));
    args = ['-i', input, '-dims', `{${layout.columns},${layout.rows}}`, '-num_comps', '1'];
    args.push('-signed', 'false', '-bit_depth', String(layout.bitsStored), '-downsamp', '{1,1}');
  }
  args.push('-o', output, ...ojphArgs(layout, variant, samples));
  await processes(() => run('ojph_compress', args, { timeout: 60_000 }));
  return readFile(output);
}

async function encode(dir: string, stem: string, layout: Layout, variant: Variant, samples: Samples) {
  if (variant.encoder !== 'dcmjs-codecs') return encodeWithTool(dir, stem, layout, variant, samples);
  return encodeFrame(variant.uid === J2K_LOSSLESS ? 'jpeg-2000' : 'htj2k', samples, {
    rows: layout.rows,
    columns: layout.columns,
    bitsAllocated: layout.bitsAllocated,
    bitsStored: layout.bitsStored,
    pixelRepresentation: layout.signed ? 1 : 0,
    samplesPerPixel: layout.samplesPerPixel ?? 1,
    // Given RGB, both apply the colour transform (the header check below makes sure).
    photometricInterpretation: colour(layout) ? 'RGB' : photometricFor(layout, variant),
  });
}

/** Even-length pieces (the last may be odd: the writer pads it), as DICOM fragments must be. */
function split(codestream: Uint8Array, pieces: number): Uint8Array[] {
  const size = Math.ceil(codestream.length / pieces / 2) * 2;
  const out: Uint8Array[] = [];
  for (let o = 0; o < codestream.length; o += size) out.push(codestream.subarray(o, o + size));
  return out;
}

/** Offsets of each frame's first fragment item from the first item after the offset table. */
function offsetTable(framesFragments: Uint8Array[][]): number[] {
  const table: number[] = [];
  let offset = 0;
  for (const fragments of framesFragments) {
    table.push(offset);
    for (const f of fragments) offset += 8 + f.length + (f.length % 2);
  }
  return table;
}

// ---- the codestream's main header, to check the encoder did what was asked -------------------------------

interface MainHeader {
  /** SIZ: the image and tile origins and the tile size on the reference grid, and per component, signed and
   * precision. */
  imageOffset: XY;
  tiles: XY;
  tileOffset: XY;
  components: { signed: boolean; precision: number }[];
  /** CAP present: Part 15 (HTJ2K). */
  highThroughput: boolean;
  progression: Progression;
  layers: number;
  colourTransform: boolean;
  decompositions: number;
  reversible: boolean;
}

function readMainHeader(bytes: Uint8Array): MainHeader {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let o = 0;
  // A JP2 file: walk the boxes to the contiguous codestream box ('jp2c').
  if (view.getUint32(4) === 0x6a502020) {
    while (o + 8 <= bytes.length && view.getUint32(o + 4) !== 0x6a703263) o += view.getUint32(o);
    o += 8;
  }
  if (view.getUint16(o) !== 0xff4f) throw new Error('no SOC marker');
  o += 2;
  const header: Partial<MainHeader> = { highThroughput: false };
  for (;;) {
    const marker = view.getUint16(o);
    if (marker === 0xff90) break;
    const length = view.getUint16(o + 2);
    const body = o + 4;
    if (marker === 0xff51) {
      const xy = (at: number): XY => [view.getUint32(at), view.getUint32(at + 4)];
      header.imageOffset = xy(body + 10);
      header.tiles = xy(body + 18);
      header.tileOffset = xy(body + 26);
      const count = view.getUint16(body + 34);
      header.components = Array.from({ length: count }, (_, i) => {
        const ssiz = bytes[body + 36 + i * 3]!;
        return { signed: (ssiz & 0x80) !== 0, precision: (ssiz & 0x7f) + 1 };
      });
    } else if (marker === 0xff50) {
      header.highThroughput = true;
    } else if (marker === 0xff52) {
      header.progression = PROGRESSIONS[bytes[body + 1]!];
      header.layers = view.getUint16(body + 2);
      header.colourTransform = bytes[body + 4] === 1;
      header.decompositions = bytes[body + 5]!;
      header.reversible = bytes[body + 9] === 1;
    }
    o += 2 + length;
  }
  return header as MainHeader;
}

// ---- checks --------------------------------------------------------------------------------------------

/** Peak signal-to-noise ratio in dB, the peak being the displayed range. */
function psnr(decoded: PixelArray, source: Samples, range: number): number {
  let sum = 0;
  for (let i = 0; i < source.length; i++) sum += (decoded[i]! - source[i]!) ** 2;
  const mse = sum / source.length;
  return mse === 0 ? Infinity : 10 * Math.log10(range ** 2 / mse);
}

function firstDifference(decoded: PixelArray, source: Samples): string | undefined {
  if (decoded.length !== source.length) return `${decoded.length} samples instead of ${source.length}`;
  let count = 0;
  let first = -1;
  for (let i = 0; i < source.length; i++) {
    if (decoded[i] !== source[i]) {
      count++;
      if (first < 0) first = i;
    }
  }
  if (count === 0) return undefined;
  return `${count} samples differ, the first at ${first}: ${decoded[first]} instead of ${source[first]}`;
}

interface Produced {
  file: string;
  source: string;
  samples: Samples;
  headers: MainHeader[];
}

describe.runIf(hasOpj && hasOjph && hasDcmj2pnm)(
  'unseen JPEG 2000 and HTJ2K files from independent encoders, against the source and dcmj2pnm',
  () => {
    let dir = '';
    const produced = new Map<string, Produced>();
    const refused = new Map<string, string>();
    const references = new Map<string, Promise<GrayImage>>();

    beforeAll(async () => {
      dir = await mkdtemp(path.join(tmpdir(), 'teleread-j2k-'));
      const sources = new Map<Layout, { file: string; samples: Samples }>();
      LAYOUTS.forEach((layout, i) => {
        const file = path.join(dir, `source-${i}.dcm`);
        writeFileSync(file, sourceFile(layout));
        sources.set(layout, { file, samples: pixelData(layout) });
      });
      await Promise.all(
        COMBINATIONS.map(async (c, i) => {
          const { file: source, samples } = sources.get(c.layout)!;
          const frames = c.layout.frames ?? 1;
          let codestreams: Uint8Array[];
          try {
            codestreams = await Promise.all(
              Array.from({ length: frames }, (_, f) =>
                encode(dir, `${i}-${f}`, c.layout, c.variant, frameSamples(c.layout, samples, f)),
              ),
            );
          } catch (err) {
            const { stderr, message } = err as { stderr?: string; message: string };
            refused.set(c.key, (stderr || message).trim().split('\n')[0]!);
            return;
          }
          const fragments = codestreams.map((cs) => split(cs, c.variant.fragmentsPerFrame ?? 1));
          const elements = layoutElements(
            c.layout,
            {
              fragments: fragments.flat(),
              ...(c.variant.offsetTable === false ? {} : { offsetTable: offsetTable(fragments) }),
            },
            photometricFor(c.layout, c.variant),
          );
          const file = path.join(dir, `${i}.dcm`);
          writeFileSync(file, writeDicom(elements, { transferSyntaxUid: c.variant.uid }));
          produced.set(c.key, { file, source, samples, headers: codestreams.map(readMainHeader) });
        }),
      );
      if (refused.size > 0) {
        const list = [...refused].map(([key, why]) => `  ${key}: ${why}`).join('\n');
        console.info(`the encoders refused ${refused.size} of ${COMBINATIONS.length} combinations:\n${list}`);
      }
    });

    afterAll(async () => {
      await closeDecodePool();
      if (dir) await rm(dir, { recursive: true, force: true });
    });

    test('the encoders wrote every combination', () => {
      expect(COMBINATIONS.length).toBeGreaterThanOrEqual(390);
      expect([...refused]).toEqual([]);
      expect(produced.size).toBe(COMBINATIONS.length);
    });

    test.for(COMBINATIONS.map((c): [string, Combination] => [c.key, c]))(
      '%s: codestream as asked, header as written',
      ([key, { layout, variant }], { expect }) => {
        const made = produced.get(key);
        expect(made, refused.get(key)).toBeDefined();
        const spp = layout.samplesPerPixel ?? 1;
        for (const header of made!.headers) {
          expect(header.highThroughput).toBe(variant.uid.startsWith('1.2.840.10008.1.2.4.20'));
          expect(header.reversible).toBe(variant.reversible);
          expect(header.progression).toBe(variant.progression);
          expect(header.layers).toBe(variant.layers ?? 1);
          expect(header.colourTransform).toBe(spp === 3 && variant.colourTransform);
          expect(header.components).toHaveLength(spp);
          if (variant.encoder !== 'dcmjs-codecs') {
            const [x0, y0] = variant.imageOffset ?? [0, 0];
            expect(header.imageOffset).toEqual([x0, y0]);
            // Untiled, opj_compress makes one tile of the whole grid; ojph_compress one of the image's size,
            // which from an offset origin makes four.
            const untiled: XY =
              variant.encoder === 'opj_compress'
                ? [x0 + layout.columns, y0 + layout.rows]
                : [layout.columns, layout.rows];
            expect(header.tiles).toEqual(variant.tiles ?? untiled);
            expect(header.tileOffset).toEqual(variant.tileOffset ?? [0, 0]);
            expect(header.decompositions).toBe(fittedDecompositions(layout, variant));
          }
          const bitPattern = variant.encoder === 'ojph_compress' && layout.signed === true;
          for (const c of header.components) {
            expect(c.precision).toBe(
              variant.precision?.(layout) ?? (variant.wholeWord ? 16 : layout.bitsStored),
            );
            expect(c.signed).toBe(layout.signed === true && !bitPattern);
          }
        }
        const instance = parseDicom(readFileSync(made!.file));
        expect({
          transferSyntaxUid: instance.transferSyntaxUid,
          rows: instance.rows,
          columns: instance.columns,
          numberOfFrames: instance.numberOfFrames,
          photometricInterpretation: instance.photometricInterpretation,
          bitsAllocated: instance.bitsAllocated,
          bitsStored: instance.bitsStored,
          pixelRepresentation: instance.pixelRepresentation,
          samplesPerPixel: instance.samplesPerPixel,
        }).toEqual({
          transferSyntaxUid: variant.uid,
          rows: layout.rows,
          columns: layout.columns,
          numberOfFrames: layout.frames ?? 1,
          photometricInterpretation: photometricFor(layout, variant),
          bitsAllocated: layout.bitsAllocated,
          bitsStored: layout.bitsStored,
          pixelRepresentation: layout.signed ? 1 : 0,
          samplesPerPixel: spp,
        });
      },
    );

    test.concurrent.for(COMBINATIONS.map((c): [string, Combination] => [c.key, c]))(
      `%s: every frame decodes to the source samples (reversible) or within ${MIN_LOSSY_PSNR_DB} dB PSNR`,
      async ([key, { layout, variant }], { expect }) => {
        const made = produced.get(key);
        expect(made, refused.get(key)).toBeDefined();
        const instance = parseDicom(readFileSync(made!.file));
        for (let f = 0; f < (layout.frames ?? 1); f++) {
          const frame = await decodeDicomFrame(instance, f);
          const source = frameSamples(layout, made!.samples, f);
          expect([frame.rows, frame.columns, frame.samplesPerPixel]).toEqual([
            layout.rows,
            layout.columns,
            layout.samplesPerPixel ?? 1,
          ]);
          expect(frame.photometricInterpretation).toBe(
            colour(layout) ? 'RGB' : photometricFor(layout, variant),
          );
          if (variant.reversible)
            expect(firstDifference(frame.pixels, source), `frame ${f + 1}`).toBeUndefined();
          else
            expect(psnr(frame.pixels, source, displayedRange(layout, source))).toBeGreaterThanOrEqual(
              MIN_LOSSY_PSNR_DB,
            );
        }
      },
    );

    test.concurrent.for(RENDERS)(
      `%s correlates with DCMTK's render of the source at ≥ ${MIN_CORRELATION}`,
      async ([, key, frame], { expect }) => {
        const made = produced.get(key);
        expect(made, refused.get(key)).toBeDefined();
        const ours = await renderForComparison(made!.file, frame);
        const image = await toGray(ours.png);
        const reference = await referenceRender(made!.source, frame, ours.voi, image);
        expectRendersLike(expect, image, reference);
      },
    );

    /** DCMTK's render of the uncompressed source, once per frame, VOI and size. */
    function referenceRender(source: string, frame: number, voi: DcmtkVoi, size: GrayImage) {
      const key = JSON.stringify([source, frame, voi, size.width, size.height]);
      let reference = references.get(key);
      if (!reference) {
        reference = processes(() =>
          renderWithDcmtk(source, { tool: 'dcmj2pnm', frame, voi, width: size.width, height: size.height }),
        );
        references.set(key, reference);
      }
      return reference;
    }
  },
);
