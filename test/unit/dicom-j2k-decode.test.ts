import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { parseDicom } from '../../src/formats/dicom/parse-dicom.js';
import { readJ2kMainHeader } from '../../src/imaging/codecs/j2k-header.js';
import { closeDecodePool } from '../../src/imaging/decode-pool.js';
import { decodeDicomFrame, renderDicomFrame } from '../../src/imaging/render-dicom.js';
import { onPath } from '../helpers/dcmtk.js';
import { imageElements, writeDicom } from '../helpers/dicom-writer.js';

const run = promisify(execFile);

// ---- the main header reader ------------------------------------------------------------------------------

function marker(code: number, body: number[]): number[] {
  const length = body.length + 2;
  return [code >> 8, code & 0xff, length >> 8, length & 0xff, ...body];
}

const u32 = (v: number) => [(v >>> 24) & 0xff, (v >>> 16) & 0xff, (v >>> 8) & 0xff, v & 0xff];

/** SOC, SIZ (a 3-component 100×60 image at 7,5), COD (RCT, 4 levels), a COC giving component 2 only 2, SOT. */
function mainHeader(): Uint8Array {
  const siz = [
    0,
    0,
    ...u32(107),
    ...u32(65),
    ...u32(7),
    ...u32(5),
    ...u32(107),
    ...u32(65),
    ...u32(0),
    ...u32(0),
  ];
  siz.push(0, 3, 7, 1, 1, 7, 1, 1, 7, 1, 1);
  const cod = [0, 0, 0, 1, 1, 4, 4, 4, 0, 1];
  const coc = [2, 0, 2, 4, 4, 0, 1];
  return Uint8Array.from([
    0xff,
    0x4f,
    ...marker(0xff51, siz),
    ...marker(0xff52, cod),
    ...marker(0xff53, coc),
    ...marker(0xff90, [0, 0, ...u32(0), 0, 1]),
  ]);
}

function box(type: string, body: number[]): number[] {
  return [...u32(8 + body.length), ...Array.from(type, (c) => c.charCodeAt(0)), ...body];
}

describe('readJ2kMainHeader', () => {
  const expected = {
    imageOffset: { x: 7, y: 5 },
    imageSize: { width: 100, height: 60 },
    components: 3,
    colourTransform: true,
    decompositions: 2,
  };

  test('reads the image origin and size, the components, the colour transform and the fewest levels', () => {
    expect(readJ2kMainHeader(mainHeader())).toEqual(expected);
  });

  test('finds the codestream inside a JP2 file', () => {
    const jp2 = Uint8Array.from([
      ...box('jP  ', [0x0d, 0x0a, 0x87, 0x0a]),
      ...box(
        'ftyp',
        Array.from('jp2 \0\0\0\0jp2 ', (c) => c.charCodeAt(0)),
      ),
      ...box('jp2h', box('ihdr', new Array(14).fill(0))),
      ...box('jp2c', Array.from(mainHeader())),
    ]);
    expect(readJ2kMainHeader(jp2)).toEqual(expected);
  });

  test('gives up on what is not a JPEG 2000 main header', () => {
    expect(readJ2kMainHeader(Uint8Array.of(0xff, 0xd8, 0xff, 0xe0))).toBeUndefined();
    expect(readJ2kMainHeader(mainHeader().subarray(0, 30))).toBeUndefined();
    expect(readJ2kMainHeader(new Uint8Array(0))).toBeUndefined();
  });

  test('never throws on a cut or damaged header', () => {
    const header = mainHeader();
    for (let length = 0; length <= header.length; length++) {
      expect(() => readJ2kMainHeader(header.subarray(0, length))).not.toThrow();
      const damaged = header.slice();
      const at = length % header.length;
      damaged[at] = damaged[at]! ^ 0xff;
      expect(() => readJ2kMainHeader(damaged)).not.toThrow();
    }
  });
});

// ---- codestreams the codec builds mishandle --------------------------------------------------------------

const hasEncoders = onPath('opj_compress') && onPath('ojph_compress');

/** A deterministic pattern with some texture, 0–255. */
function pattern(columns: number, rows: number, samples: number): Uint8Array {
  const out = new Uint8Array(columns * rows * samples);
  for (let y = 0; y < rows; y++)
    for (let x = 0; x < columns; x++)
      for (let s = 0; s < samples; s++)
        out[(y * columns + x) * samples + s] = (x * (3 + s) + y * 5 + ((x * y) % 23) * 4) & 0xff;
  return out;
}

/** How many samples differ. */
function differing(decoded: ArrayLike<number>, source: Uint8Array): number {
  if (decoded.length !== source.length) return Math.max(decoded.length, source.length);
  let count = 0;
  for (let i = 0; i < source.length; i++) if (decoded[i] !== source[i]) count++;
  return count;
}

describe.runIf(hasEncoders)('JPEG 2000 and HTJ2K frames the codec builds mishandle', () => {
  let dir = '';

  beforeAll(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'teleread-j2k-unit-'));
  });

  afterAll(async () => {
    await closeDecodePool();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  /** 8-bit samples (interleaved when colour) through opj_compress or ojph_compress into a DICOM instance. */
  async function encoded(
    tool: 'opj_compress' | 'ojph_compress',
    columns: number,
    rows: number,
    samples: 1 | 3,
    args: string[],
  ) {
    const pixels = pattern(columns, rows, samples);
    const stem = path.join(dir, `${tool}-${columns}x${rows}-${samples}-${args.join('')}`);
    let input: string;
    if (tool === 'opj_compress' || samples === 1) {
      // Raw planes for opj_compress (-F) and ojph_compress (-dims …).
      input = `${stem}.${tool === 'opj_compress' ? 'raw' : 'yuv'}`;
      const planes = new Uint8Array(pixels.length);
      for (let s = 0; s < samples; s++)
        for (let p = 0; p < columns * rows; p++) planes[s * columns * rows + p] = pixels[p * samples + s]!;
      await writeFile(input, planes);
    } else {
      input = `${stem}.ppm`;
      const header = new TextEncoder().encode(`P6\n${columns} ${rows}\n255\n`);
      await writeFile(input, Buffer.concat([header, pixels]));
    }
    const output = `${stem}.${tool === 'opj_compress' ? 'j2k' : 'j2c'}`;
    const io =
      tool === 'opj_compress'
        ? ['-i', input, '-o', output, '-F', `${columns},${rows},${samples},8,u`]
        : samples === 1
          ? [
              '-i',
              input,
              '-o',
              output,
              '-dims',
              `{${columns},${rows}}`,
              '-num_comps',
              '1',
              '-signed',
              'false',
            ]
          : ['-i', input, '-o', output];
    if (tool === 'ojph_compress' && samples === 1) io.push('-bit_depth', '8', '-downsamp', '{1,1}');
    await run(tool, [...io, ...args]);
    const codestream = new Uint8Array(await readFile(output));
    const instance = parseDicom(
      writeDicom(
        imageElements({
          rows,
          columns,
          bitsAllocated: 8,
          samplesPerPixel: samples,
          photometricInterpretation: samples === 3 ? 'RGB' : 'MONOCHROME2',
          pixelData: { fragments: [codestream] },
        }),
        {
          transferSyntaxUid: tool === 'opj_compress' ? '1.2.840.10008.1.2.4.90' : '1.2.840.10008.1.2.4.201',
        },
      ),
    );
    return { instance, pixels };
  }

  test('HTJ2K colour without the colour transform comes back as it went in', async () => {
    // The OpenJPH build writes such frames' lines into the wrong samples and rows; OpenJPEG decodes them.
    const { instance, pixels } = await encoded('ojph_compress', 40, 24, 3, [
      '-reversible',
      'true',
      '-colour_trans',
      'false',
    ]);
    const frame = await decodeDicomFrame(instance, 0);
    expect(frame.photometricInterpretation).toBe('RGB');
    expect(differing(frame.pixels, pixels)).toBe(0);
  });

  test.each([
    ['opj_compress', ['-d', '5,3', '-n', '4']],
    ['ojph_compress', ['-reversible', 'true', '-image_offset', '{3,5}']],
  ] as const)(
    '%s, an image off the grid origin: a 256 px render decodes it in full, exactly',
    async (tool, args) => {
      // 1031 columns ask for one level down, which from x0 = 5 (or 3) is ⌈1036/2⌉ − ⌈5/2⌉ = 515 wide, not 516:
      // the OpenJPEG build read its rows with a 516 stride, and the OpenJPH build never returned.
      const { instance, pixels } = await encoded(tool, 1031, 97, 1, [...args]);
      const frame = await decodeDicomFrame(instance, 0, { maxSize: 256 });
      expect([frame.columns, frame.rows]).toEqual([1031, 97]);
      expect(differing(frame.pixels, pixels)).toBe(0);
      const image = await renderDicomFrame(instance, { size: 256 });
      expect([image.width, image.height]).toEqual([256, 24]);
    },
  );

  test('a JPEG 2000 frame with fewer decomposition levels than a render would skip is decoded in full', async () => {
    // No decomposition at all (one resolution): asked for a lower one, the OpenJPEG build left an empty image.
    const { instance, pixels } = await encoded('opj_compress', 1031, 97, 1, ['-n', '1']);
    const frame = await decodeDicomFrame(instance, 0, { maxSize: 256 });
    expect([frame.columns, frame.rows]).toEqual([1031, 97]);
    expect(differing(frame.pixels, pixels)).toBe(0);
  });
});
