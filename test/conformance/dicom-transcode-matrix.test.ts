import { execFile } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { type DicomInstance, parseDicom } from '../../src/formats/dicom/parse-dicom.js';
import { closeDecodePool } from '../../src/imaging/decode-pool.js';
import { hasDcmj2pnm, hasDcml2pnm, onPath, renderWithDcmtk, toGray } from '../helpers/dcmtk.js';
import {
  combineLayouts,
  framesToRender,
  MATRIX_LAYOUTS as LAYOUTS,
  type Layout,
  type Combination as MatrixCombination,
  sourceFile,
} from '../helpers/pixel-layouts.js';
import { limiter } from '../helpers/processes.js';
import { expectRendersLike, MIN_CORRELATION, renderForComparison } from '../helpers/render-compare.js';

/**
 * Files no one has seen, made the way held-back files are: sources written in explicit VR little endian over the
 * pixel layouts modalities produce, then transcoded by DCMTK (dcmconv, dcmcrle, dcmcjpeg, dcmcjpls) into every
 * syntax it writes for the layout. Each file's header must read as dcmdump reads it, and each frame must render
 * like DCMTK's (dcmj2pnm, dcml2pnm for JPEG-LS) with the same VOI at 256 px, correlating at ≥ 0.99 as 8-bit
 * grayscale — the same comparison dicom-dcmtk-compare makes for the shared corpus.
 */

const run = promisify(execFile);
/** DCMTK processes at a time: the machine has two cores. */
const DCMTK_CONCURRENCY = 2;

// ---- transfer syntaxes DCMTK writes ------------------------------------------------------------------------

interface Syntax {
  name: string;
  tool: 'dcmconv' | 'dcmcrle' | 'dcmcjpeg' | 'dcmcjpls' | 'gdcmconv';
  args: string[];
  /** The transfer syntax the tool is meant to write. */
  uid: string;
  applies: (layout: Layout) => boolean;
  /** A syntax DCMTK has no decoder for (JPEG 2000): the file is lossless, so it must render as its source
   * does, and DCMTK's render of the source is the reference. */
  dcmtkCannotDecode?: true;
}

const colour = (l: Layout) => (l.samplesPerPixel ?? 1) === 3;
const grayscale = (l: Layout) => !colour(l);
const eightBit = (l: Layout) => l.bitsStored <= 8;
const colour8 = (l: Layout) => colour(l) && eightBit(l);
const multiFrame = (l: Layout) => (l.frames ?? 1) > 1;
const always = () => true;
/** Large enough for 1 KB fragments to split a frame. */
const fragmented = (l: Layout) => multiFrame(l) || l.name.startsWith('CT s16 120');

/** The layouts every lossless JPEG predictor and JPEG-LS NEAR value is tried on: each depth and sign, colour,
 * and single rows and columns (where the predictors fall back to their neighbours on one side). The rest get
 * the defaults, to keep the run short. */
const PREDICTOR_LAYOUTS = new Set([
  'u8 127×93',
  'u8 200×1',
  'u12 257×31',
  'u12 1×160',
  's12 without sign extension 75×65',
  'CT s16 120×100 window',
  'u16 100×75',
  'RGB 127×93 planar 0',
]);
const predictorLayout = (l: Layout) => PREDICTOR_LAYOUTS.has(l.name);

const JPEG_LOSSLESS_SV1 = '1.2.840.10008.1.2.4.70';
const JPEG_LOSSLESS = '1.2.840.10008.1.2.4.57';
const JPEG_BASELINE = '1.2.840.10008.1.2.4.50';
const JPEG_EXTENDED = '1.2.840.10008.1.2.4.51';
const JPEG_LS_LOSSLESS = '1.2.840.10008.1.2.4.80';
const JPEG_LS_NEAR = '1.2.840.10008.1.2.4.81';

const SYNTAXES: Syntax[] = [
  { name: 'implicit LE', tool: 'dcmconv', args: ['+ti'], uid: '1.2.840.10008.1.2', applies: always },
  { name: 'explicit BE', tool: 'dcmconv', args: ['+tb'], uid: '1.2.840.10008.1.2.2', applies: always },
  { name: 'deflated LE', tool: 'dcmconv', args: ['+td'], uid: '1.2.840.10008.1.2.1.99', applies: always },
  { name: 'RLE', tool: 'dcmcrle', args: [], uid: '1.2.840.10008.1.2.5', applies: always },
  {
    name: 'RLE empty offset table',
    tool: 'dcmcrle',
    args: ['-ot'],
    uid: '1.2.840.10008.1.2.5',
    applies: multiFrame,
  },
  { name: 'JPEG baseline', tool: 'dcmcjpeg', args: ['+eb'], uid: JPEG_BASELINE, applies: eightBit },
  {
    name: 'JPEG baseline YBR_FULL 4:4:4',
    tool: 'dcmcjpeg',
    args: ['+eb', '+s4'],
    uid: JPEG_BASELINE,
    applies: colour8,
  },
  {
    name: 'JPEG baseline YBR_FULL 4:2:2',
    tool: 'dcmcjpeg',
    args: ['+eb', '+n2'],
    uid: JPEG_BASELINE,
    applies: colour8,
  },
  {
    name: 'JPEG baseline YBR_FULL 4:1:1',
    tool: 'dcmcjpeg',
    args: ['+eb', '+n1'],
    uid: JPEG_BASELINE,
    applies: colour8,
  },
  {
    name: 'JPEG baseline YBR_FULL_422 4:1:1',
    tool: 'dcmcjpeg',
    args: ['+eb', '+np'],
    uid: JPEG_BASELINE,
    applies: colour8,
  },
  { name: 'JPEG baseline RGB', tool: 'dcmcjpeg', args: ['+eb', '+cr'], uid: JPEG_BASELINE, applies: colour8 },
  {
    name: 'JPEG baseline 1 KB fragments',
    tool: 'dcmcjpeg',
    args: ['+eb', '+fs', '1'],
    uid: JPEG_BASELINE,
    applies: (l) => eightBit(l) && multiFrame(l),
  },
  {
    name: 'JPEG baseline 1 KB fragments empty offset table',
    tool: 'dcmcjpeg',
    args: ['+eb', '+fs', '1', '-ot'],
    uid: JPEG_BASELINE,
    applies: (l) => eightBit(l) && multiFrame(l),
  },
  // Lossy JPEG of more than 12 bits: DCMTK windows the values down to 12 bits and rewrites the pixel module.
  { name: 'JPEG extended', tool: 'dcmcjpeg', args: ['+ee'], uid: JPEG_EXTENDED, applies: grayscale },
  { name: 'JPEG lossless SV1', tool: 'dcmcjpeg', args: ['+e1'], uid: JPEG_LOSSLESS_SV1, applies: always },
  ...[1, 2, 3, 4, 5, 6, 7].map(
    (sv): Syntax => ({
      name: `JPEG lossless process 14 SV${sv}`,
      tool: 'dcmcjpeg',
      args: ['+el', '+sv', String(sv)],
      uid: JPEG_LOSSLESS,
      applies: predictorLayout,
    }),
  ),
  {
    name: 'JPEG lossless process 14 SV1 point transform 2',
    tool: 'dcmcjpeg',
    args: ['+el', '+sv', '1', '+pt', '2'],
    uid: JPEG_LOSSLESS,
    applies: predictorLayout,
  },
  {
    name: 'JPEG lossless SV1 empty offset table',
    tool: 'dcmcjpeg',
    args: ['+e1', '-ot'],
    uid: JPEG_LOSSLESS_SV1,
    applies: multiFrame,
  },
  {
    name: 'JPEG lossless SV1 1 KB fragments',
    tool: 'dcmcjpeg',
    args: ['+e1', '+fs', '1'],
    uid: JPEG_LOSSLESS_SV1,
    applies: fragmented,
  },
  {
    name: 'JPEG lossless SV1 1 KB fragments empty offset table',
    tool: 'dcmcjpeg',
    args: ['+e1', '+fs', '1', '-ot'],
    uid: JPEG_LOSSLESS_SV1,
    applies: fragmented,
  },
  { name: 'JPEG-LS lossless', tool: 'dcmcjpls', args: [], uid: JPEG_LS_LOSSLESS, applies: always },
  {
    name: 'JPEG-LS lossless sample-interleaved',
    tool: 'dcmcjpls',
    args: ['+is'],
    uid: JPEG_LS_LOSSLESS,
    applies: colour,
  },
  {
    name: 'JPEG-LS lossless not interleaved',
    tool: 'dcmcjpls',
    args: ['+in'],
    uid: JPEG_LS_LOSSLESS,
    applies: colour,
  },
  ...[1, 2, 7].map(
    (near): Syntax => ({
      name: `JPEG-LS near-lossless NEAR ${near}`,
      tool: 'dcmcjpls',
      args: ['+en', '+md', String(near)],
      uid: JPEG_LS_NEAR,
      // DCMTK 3.6.7 refuses near-lossless for signed pixels ("Unsupported pixel representation").
      applies: (l) => !l.signed && (near === 2 || predictorLayout(l)),
    }),
  ),
  {
    name: 'JPEG-LS 1 KB fragments',
    tool: 'dcmcjpls',
    args: ['+fs', '1'],
    uid: JPEG_LS_LOSSLESS,
    applies: fragmented,
  },
  {
    name: 'JPEG-LS 1 KB fragments empty offset table',
    tool: 'dcmcjpls',
    args: ['+fs', '1', '-ot'],
    uid: JPEG_LS_LOSSLESS,
    applies: fragmented,
  },
];

const JPEG_2000_LOSSLESS = '1.2.840.10008.1.2.4.90';

/**
 * The same layouts written by a second toolkit, GDCM's gdcmconv (Debian libgdcm-tools), whose encoders (IJG
 * patched for 8/12/16 bits, CharLS, OpenJPEG) and encapsulation choices differ from DCMTK's. Left out, with why:
 * - lossy JPEG of more than 8 bits: GDCM writes 16-bit DCT, which ISO 10918-1 does not allow (DCMTK refuses it,
 *   Teleread answers CORRUPT_FILE; see dicom-render.test.ts);
 * - lossy JPEG of colour: GDCM converts to YCbCr and still labels the file RGB. DCMTK (its default +cp) and
 *   Teleread then both show the unconverted YCbCr, identically, but that picture is too flat to compare;
 * - JPEG 2000 of a HighBit-15 layout: GDCM rewrites HighBit to 11 without shifting the values it encodes, so the
 *   file contradicts itself; of one-row or one-column images and 16-bit colour: gdcmconv refuses;
 * - RLE of 8-bit images with an odd number of pixels: gdcmconv stops on an assertion;
 * - --split: gdcmconv could not split any layout's frames.
 */
const GDCM_SYNTAXES: Syntax[] = [
  {
    name: 'GDCM RLE',
    tool: 'gdcmconv',
    args: ['--rle'],
    uid: '1.2.840.10008.1.2.5',
    applies: (l) => l.bitsAllocated === 16 || (l.rows * l.columns) % 2 === 0,
  },
  { name: 'GDCM JPEG lossless', tool: 'gdcmconv', args: ['--jpeg'], uid: JPEG_LOSSLESS_SV1, applies: always },
  {
    name: 'GDCM JPEG baseline',
    tool: 'gdcmconv',
    args: ['--jpeg', '--lossy'],
    uid: JPEG_BASELINE,
    applies: (l) => eightBit(l) && grayscale(l),
  },
  {
    name: 'GDCM JPEG-LS lossless',
    tool: 'gdcmconv',
    args: ['--jpegls'],
    uid: JPEG_LS_LOSSLESS,
    applies: always,
  },
  {
    name: 'GDCM JPEG-LS near-lossless',
    tool: 'gdcmconv',
    args: ['--jpegls', '--lossy', '--allowed-error', '2'],
    uid: JPEG_LS_NEAR,
    applies: (l) => !l.signed,
  },
  {
    name: 'GDCM JPEG 2000 lossless',
    tool: 'gdcmconv',
    args: ['--j2k'],
    uid: JPEG_2000_LOSSLESS,
    applies: (l) =>
      l.rows > 1 && l.columns > 1 && l.highBit === undefined && !(colour(l) && l.bitsAllocated === 16),
    dcmtkCannotDecode: true,
  },
  {
    name: 'GDCM planar configuration 1',
    tool: 'gdcmconv',
    args: ['--raw', '--planar-configuration', '1'],
    uid: '1.2.840.10008.1.2.1',
    applies: colour,
  },
];

type Combination = MatrixCombination<Syntax>;

const hasGdcmconv = onPath('gdcmconv');

const COMBINATIONS: Combination[] = combineLayouts(LAYOUTS, [
  ...SYNTAXES,
  ...(hasGdcmconv ? GDCM_SYNTAXES : []),
]);

/**
 * Files DCMTK writes but cannot read back. DCMTK 3.6.7 encodes 16-bit colour JPEG-LS without interleaving
 * (+in), and then neither dcml2pnm ("Invalid DICOM image") nor dcmdjpls ("Invalid compressed image data")
 * decodes it, though the codestream is valid: CharLS in Teleread gives back every sample of the source. Being
 * lossless, the file must render as its source does, so DCMTK's render of the source is the reference.
 */
const DCMTK_CANNOT_READ = new Set(['RGB u16 64×48 → JPEG-LS lossless not interleaved']);

const RENDERS = framesToRender(COMBINATIONS);
const BY_KEY = new Map(COMBINATIONS.map((c) => [c.key, c]));

// ---- dcmdump -----------------------------------------------------------------------------------------------

/** Top-level values dcmdump prints (file meta included), by tag "gggg,eeee"; [] unwrapped. */
async function dcmdump(file: string): Promise<Map<string, string>> {
  const { stdout } = await run('dcmdump', ['-q', '-M', '+L', '-Un', file], { maxBuffer: 16 * 1024 * 1024 });
  const values = new Map<string, string>();
  for (const line of stdout.split('\n')) {
    const m = /^\(([0-9a-f]{4},[0-9a-f]{4})\) \S\S (.*?)\s+#/.exec(line);
    if (!m || values.has(m[1]!)) continue;
    let value = m[2]!.trim();
    if (value.startsWith('[') && value.endsWith(']')) value = value.slice(1, -1);
    values.set(m[1]!, value);
  }
  return values;
}

const HEADER_FIELDS = [
  ['0002,0010', 'transferSyntaxUid', 'text'],
  ['0028,0010', 'rows', 'number'],
  ['0028,0011', 'columns', 'number'],
  ['0028,0008', 'numberOfFrames', 'number'],
  ['0028,0004', 'photometricInterpretation', 'text'],
  ['0028,0100', 'bitsAllocated', 'number'],
  ['0028,0101', 'bitsStored', 'number'],
  ['0028,0102', 'highBit', 'number'],
  ['0028,0103', 'pixelRepresentation', 'number'],
  ['0028,0002', 'samplesPerPixel', 'number'],
  ['0028,0006', 'planarConfiguration', 'number'],
  ['0028,1053', 'rescaleSlope', 'number'],
  ['0028,1052', 'rescaleIntercept', 'number'],
  ['0028,1050', 'windowCenter', 'number'],
  ['0028,1051', 'windowWidth', 'number'],
] as const satisfies readonly (readonly [string, keyof DicomInstance, 'text' | 'number'])[];

/** The header fields as dcmdump reads them, in DicomInstance's form (the first value of a multi-valued DS; one
 * frame when NumberOfFrames is absent). */
function expectedHeader(dump: Map<string, string>): Record<string, unknown> {
  const expected: Record<string, unknown> = {};
  for (const [tag, key, kind] of HEADER_FIELDS) {
    const value = dump.get(tag)?.split('\\')[0]?.trim();
    expected[key] = value === undefined || value === '' ? undefined : kind === 'text' ? value : Number(value);
  }
  expected.numberOfFrames ??= 1;
  return expected;
}

// ---- running DCMTK -----------------------------------------------------------------------------------------

const dcmtk = limiter(DCMTK_CONCURRENCY);

interface Produced {
  file: string;
  source: string;
  dump: Map<string, string>;
}

const JPEG_LS = new Set([JPEG_LS_LOSSLESS, JPEG_LS_NEAR]);

describe.runIf(hasDcmj2pnm && hasDcml2pnm)(
  'unseen files transcoded by DCMTK and GDCM, against dcmdump and dcmj2pnm',
  () => {
    let dir = '';
    const produced = new Map<string, Produced>();
    const refused = new Map<string, string>();

    beforeAll(async () => {
      dir = await mkdtemp(path.join(tmpdir(), 'teleread-transcode-'));
      const sources = new Map<Layout, string>();
      LAYOUTS.forEach((layout, i) => {
        const file = path.join(dir, `source-${i}.dcm`);
        writeFileSync(file, sourceFile(layout));
        sources.set(layout, file);
      });
      await Promise.all(
        COMBINATIONS.map(async (c, i) => {
          const source = sources.get(c.layout)!;
          const file = path.join(dir, `${i}.dcm`);
          try {
            await dcmtk(() => run(c.variant.tool, [...c.variant.args, source, file], { timeout: 60_000 }));
          } catch (err) {
            const { stderr, message } = err as { stderr?: string; message: string };
            refused.set(c.key, (stderr || message).trim().split('\n')[0]!);
            return;
          }
          produced.set(c.key, { file, source, dump: await dcmtk(() => dcmdump(file)) });
        }),
      );
      if (refused.size > 0) {
        const list = [...refused].map(([key, why]) => `  ${key}: ${why}`).join('\n');
        console.info(
          `The transcoders refused ${refused.size} of ${COMBINATIONS.length} combinations:\n${list}`,
        );
      }
    });

    afterAll(async () => {
      await closeDecodePool();
      if (dir) await rm(dir, { recursive: true, force: true });
    });

    test('the transcoders wrote nearly every combination', () => {
      expect(COMBINATIONS.length).toBeGreaterThan(250);
      expect(produced.size).toBeGreaterThanOrEqual(COMBINATIONS.length - 5);
    });

    test.for(COMBINATIONS.map((c): [string, Combination] => [c.key, c]))(
      '%s: header as dcmdump reads it',
      ([key, { variant: syntax }], { expect, skip }) => {
        const made = produced.get(key);
        if (!made) return skip(`refused: ${refused.get(key)}`);
        const expected = expectedHeader(made.dump);
        expect(expected.transferSyntaxUid).toBe(syntax.uid);
        const instance = parseDicom(readFileSync(made.file));
        expect(Object.fromEntries(HEADER_FIELDS.map(([, k]) => [k, instance[k]]))).toEqual(expected);
      },
    );

    test.concurrent.for(RENDERS)(
      `%s correlates with DCMTK at ≥ ${MIN_CORRELATION}`,
      async ([, key, frame], { expect, skip }) => {
        const made = produced.get(key);
        if (!made) return skip(`refused: ${refused.get(key)}`);
        const ours = await renderForComparison(made.file, frame);
        const image = await toGray(ours.png);
        const readable = !DCMTK_CANNOT_READ.has(key) && !BY_KEY.get(key)!.variant.dcmtkCannotDecode;
        const uid = made.dump.get('0002,0010') ?? '';
        const reference = await dcmtk(() =>
          renderWithDcmtk(readable ? made.file : made.source, {
            tool: readable && JPEG_LS.has(uid) ? 'dcml2pnm' : 'dcmj2pnm',
            frame,
            voi: ours.voi,
            width: image.width,
            height: image.height,
          }),
        );
        expectRendersLike(expect, image, reference);
      },
    );
  },
);
