/**
 * Synthetic DICOM for the benchmarks: CT 512² and CR 2048² instances written with the test DICOM writer, and
 * the same CT slices in each compressed transfer syntax. dcmtk's own transcoders make the syntaxes it can
 * write (RLE, the JPEG processes, JPEG-LS), as ANCHORS §3 did; JPEG 2000 and HTJ2K, which dcmtk cannot write,
 * are encoded with the encoders of dcmjs-codecs (OpenJPEG and OpenJPH builds independent of the decoders
 * Teleread uses) through the test helper `encodeFrame`.
 */
import { randomUUID } from 'node:crypto';
import { open, readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { parseDicom } from '../src/formats/dicom/parse-dicom.js';
import {
  encodeFrame,
  imageElements,
  nativePixelDataHeader,
  writeDicom,
} from '../test/helpers/dicom-writer.js';
import { check, run } from './lib.js';

/** Deterministic noise, so every run renders the same pixels. */
export function xorshift(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    return (s >>> 0) / 4294967296;
  };
}

/** A CT slice: a water-density body with a bone ring and two lungs, plus noise; stored = HU + 1024. */
export function ctPixels(size: number, seed: number): Uint16Array {
  const random = xorshift(seed);
  const out = new Uint16Array(size * size);
  const c = size / 2;
  for (let y = 0; y < size; y++) {
    for (let x = 0; x < size; x++) {
      const dx = (x - c) / (size * 0.42);
      const dy = (y - c) / (size * 0.32);
      const r = Math.hypot(dx, dy);
      let hu = -1000;
      if (r < 1) hu = r > 0.9 ? 700 : 40;
      const lung = Math.hypot((Math.abs(x - c) - size * 0.17) / (size * 0.11), (y - c) / (size * 0.18));
      if (r < 0.9 && lung < 1) hu = -850;
      out[y * size + x] = Math.max(0, Math.min(4095, Math.round(hu + 1024 + (random() - 0.5) * 60)));
    }
  }
  return out;
}

/** A radiograph: a smooth exposure gradient with a brighter "chest" and noise, 12 bits. */
export function crPixels(size: number, seed: number): Uint16Array {
  const random = xorshift(seed);
  const out = new Uint16Array(size * size);
  const c = size / 2;
  for (let y = 0; y < size; y++) {
    for (let x = 0; x < size; x++) {
      const r = Math.hypot((x - c) / (size * 0.4), (y - c) / (size * 0.45));
      const body = r < 1 ? 1800 * (1 - r * r) : 0;
      out[y * size + x] = Math.max(
        0,
        Math.min(4095, Math.round(600 + body + (y / size) * 500 + random() * 120)),
      );
    }
  }
  return out;
}

export interface InstanceUids {
  study: string;
  series: string;
  sop: string;
}

/** A fresh UID under 2.25 (UUID-derived root), unique per call within and across runs. */
export function newUid(): string {
  const hex = randomUUID().replace(/-/g, '');
  return `2.25.${BigInt(`0x${hex}`).toString()}`;
}

export interface InstanceSpec {
  kind: 'CT' | 'CR';
  index: number;
  pixels: Uint16Array;
  uids: InstanceUids;
  /** Encapsulated frame and its transfer syntax, instead of native pixel data. */
  encapsulated?: { frame: Uint8Array; transferSyntaxUid: string };
}

/** One Part-10 instance: CT 512² (rescale −1024, window 40/400) or CR 2048² (window 2048/4096), 12 of 16 bits. */
export function writeInstance(spec: InstanceSpec): Uint8Array {
  const ct = spec.kind === 'CT';
  const size = ct ? 512 : 2048;
  const elements = imageElements({
    rows: size,
    columns: size,
    bitsAllocated: 16,
    bitsStored: 12,
    pixelData: spec.encapsulated ? { fragments: [spec.encapsulated.frame] } : spec.pixels,
    extra: [
      { tag: 0x00080016, vr: 'UI', value: ct ? '1.2.840.10008.5.1.4.1.1.2' : '1.2.840.10008.5.1.4.1.1.1' },
      { tag: 0x00080018, vr: 'UI', value: spec.uids.sop },
      { tag: 0x00080060, vr: 'CS', value: spec.kind },
      { tag: 0x00100010, vr: 'PN', value: 'BENCH^SYNTHETIC' },
      { tag: 0x00100020, vr: 'LO', value: 'BENCH-1' },
      { tag: 0x0020000d, vr: 'UI', value: spec.uids.study },
      { tag: 0x0020000e, vr: 'UI', value: spec.uids.series },
      { tag: 0x00200013, vr: 'IS', value: String(spec.index + 1) },
      { tag: 0x00281050, vr: 'DS', value: ct ? '40' : '2048' },
      { tag: 0x00281051, vr: 'DS', value: ct ? '400' : '4096' },
      ...(ct
        ? [
            { tag: 0x00180050, vr: 'DS', value: '1' },
            { tag: 0x00201041, vr: 'DS', value: String(spec.index) },
            { tag: 0x00281052, vr: 'DS', value: '-1024' },
            { tag: 0x00281053, vr: 'DS', value: '1' },
          ]
        : []),
    ],
  });
  return writeDicom(elements, {
    encoding: 'explicit-le',
    ...(spec.encapsulated ? { transferSyntaxUid: spec.encapsulated.transferSyntaxUid } : {}),
  });
}

/** An uncompressed instance with its own study, series and SOP UIDs (the existing dicom bench's data). */
export function instance(kind: 'CT' | 'CR', index: number): Uint8Array {
  const ct = kind === 'CT';
  const size = ct ? 512 : 2048;
  return writeInstance({
    kind,
    index,
    pixels: ct ? ctPixels(size, index + 1) : crPixels(size, index + 101),
    uids: { study: newUid(), series: newUid(), sop: newUid() },
  });
}

/**
 * A native multi-frame cine written to `file`: `frames` CT 512² slices (12 of 16 bits, rescale −1024, window
 * 40/400), the same few slices over and over, about 0.5 MB a frame (1,200 frames make 629 MB).
 */
export async function writeCine(file: string, frames: number): Promise<void> {
  const frameBytes = 512 * 512 * 2;
  const elements = imageElements({
    rows: 512,
    columns: 512,
    bitsAllocated: 16,
    bitsStored: 12,
    extra: [
      { tag: 0x00080016, vr: 'UI', value: '1.2.840.10008.5.1.4.1.1.2.1' },
      { tag: 0x00080018, vr: 'UI', value: newUid() },
      { tag: 0x00080060, vr: 'CS', value: 'CT' },
      { tag: 0x0020000d, vr: 'UI', value: newUid() },
      { tag: 0x0020000e, vr: 'UI', value: newUid() },
      { tag: 0x00280008, vr: 'IS', value: String(frames) },
      { tag: 0x00281050, vr: 'DS', value: '40' },
      { tag: 0x00281051, vr: 'DS', value: '400' },
      { tag: 0x00281052, vr: 'DS', value: '-1024' },
      { tag: 0x00281053, vr: 'DS', value: '1' },
    ],
  });
  const out = await open(file, 'w');
  try {
    await out.write(writeDicom(elements, { encoding: 'explicit-le' }));
    await out.write(nativePixelDataHeader(frames * frameBytes));
    for (let k = 0; k < frames; k++) {
      const slice = ctPixels(512, 300 + (k % 8));
      await out.write(new Uint8Array(slice.buffer, slice.byteOffset, slice.byteLength));
    }
  } finally {
    await out.close();
  }
}

export interface SyntaxSet {
  /** Short key, used in file names and table rows. */
  key: string;
  label: string;
  transferSyntaxUid: string;
  /** How the set was made, for the notes. */
  madeWith: string;
  /** The dcmtk command that renders it, or undefined when dcmtk has no decoder for the syntax. */
  dcmtkRenderer: 'dcmj2pnm' | 'dcml2pnm' | undefined;
}

/** The transfer syntaxes benchmarked, in table order. */
export const SYNTAXES: readonly SyntaxSet[] = [
  {
    key: 'raw',
    label: 'Explicit VR LE (uncompressed)',
    transferSyntaxUid: '1.2.840.10008.1.2.1',
    madeWith: 'test DICOM writer',
    dcmtkRenderer: 'dcmj2pnm',
  },
  {
    key: 'rle',
    label: 'RLE Lossless',
    transferSyntaxUid: '1.2.840.10008.1.2.5',
    madeWith: 'dcmcrle',
    dcmtkRenderer: 'dcmj2pnm',
  },
  {
    key: 'jpeg-baseline',
    label: 'JPEG Baseline 8-bit',
    transferSyntaxUid: '1.2.840.10008.1.2.4.50',
    madeWith: 'dcmcjpeg +eb',
    dcmtkRenderer: 'dcmj2pnm',
  },
  {
    key: 'jpeg-extended',
    label: 'JPEG Extended 12-bit',
    transferSyntaxUid: '1.2.840.10008.1.2.4.51',
    madeWith: 'dcmcjpeg +ee',
    dcmtkRenderer: 'dcmj2pnm',
  },
  {
    key: 'jpeg-lossless',
    label: 'JPEG Lossless SV1',
    transferSyntaxUid: '1.2.840.10008.1.2.4.70',
    madeWith: 'dcmcjpeg +e1',
    dcmtkRenderer: 'dcmj2pnm',
  },
  {
    key: 'jpeg-ls',
    label: 'JPEG-LS Lossless',
    transferSyntaxUid: '1.2.840.10008.1.2.4.80',
    madeWith: 'dcmcjpls',
    dcmtkRenderer: 'dcml2pnm',
  },
  {
    key: 'j2k',
    label: 'JPEG 2000 Lossless',
    transferSyntaxUid: '1.2.840.10008.1.2.4.90',
    madeWith: 'dcmjs-codecs OpenJPEG encoder (dcmtk writes no J2K)',
    dcmtkRenderer: undefined,
  },
  {
    key: 'htj2k',
    label: 'HTJ2K Lossless',
    transferSyntaxUid: '1.2.840.10008.1.2.4.201',
    madeWith: 'dcmjs-codecs OpenJPH encoder (dcmtk writes no HTJ2K)',
    dcmtkRenderer: undefined,
  },
];

const DCMTK_TRANSCODE: Record<string, [string, string[]]> = {
  rle: ['dcmcrle', []],
  'jpeg-baseline': ['dcmcjpeg', ['+eb']],
  'jpeg-extended': ['dcmcjpeg', ['+ee']],
  'jpeg-lossless': ['dcmcjpeg', ['+e1']],
  'jpeg-ls': ['dcmcjpls', []],
};

/**
 * Writes `count` CT 512² slices of one series in the given syntax into `dir`; returns the file paths. The
 * transcoded files are checked for the transfer syntax they must carry.
 */
export async function writeCtSet(dir: string, syntax: SyntaxSet, count: number): Promise<string[]> {
  const study = newUid();
  const series = newUid();
  const files: string[] = [];
  for (let i = 0; i < count; i++) {
    const pixels = ctPixels(512, i + 1);
    const uids = { study, series, sop: newUid() };
    const file = path.join(dir, `${syntax.key}-${i}.dcm`);
    if (syntax.key === 'raw') {
      await writeFile(file, writeInstance({ kind: 'CT', index: i, pixels, uids }));
    } else if (syntax.key === 'j2k' || syntax.key === 'htj2k') {
      const frame = await encodeFrame(syntax.key === 'j2k' ? 'jpeg-2000' : 'htj2k', pixels, {
        rows: 512,
        columns: 512,
        bitsAllocated: 16,
        bitsStored: 12,
      });
      const encapsulated = { frame, transferSyntaxUid: syntax.transferSyntaxUid };
      await writeFile(file, writeInstance({ kind: 'CT', index: i, pixels, uids, encapsulated }));
    } else {
      const [tool, args] = DCMTK_TRANSCODE[syntax.key] ?? [];
      if (!tool || !args) throw new Error(`no transcoder for ${syntax.key}`);
      const raw = path.join(dir, `${syntax.key}-${i}.raw.dcm`);
      await writeFile(raw, writeInstance({ kind: 'CT', index: i, pixels, uids }));
      check(await run(tool, [...args, raw, file], { timeoutMs: 30_000 }), `${tool} ${args.join(' ')}`);
      await rm(raw, { force: true });
    }
    const written = parseDicom(new Uint8Array(await readFile(file))).transferSyntaxUid;
    if (written !== syntax.transferSyntaxUid) {
      throw new Error(`${file} has transfer syntax ${written}, expected ${syntax.transferSyntaxUid}`);
    }
    files.push(file);
  }
  return files;
}
