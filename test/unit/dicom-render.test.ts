import sharp from 'sharp';
import { afterAll, describe, expect, test } from 'vitest';
import { AppError } from '../../src/errors.js';
import { parseDicom } from '../../src/formats/dicom/parse-dicom.js';
import { closeDecodePool } from '../../src/imaging/decode-pool.js';
import { encodeImage } from '../../src/imaging/encode.js';
import {
  canDecodeTransferSyntax,
  decodeDicomFrame,
  displaySize,
  type RenderDicomOptions,
  renderDicomFrame,
  resolveVoi,
  toDisplayPixels,
} from '../../src/imaging/render-dicom.js';
import { resampleArea, resampleStored } from '../../src/imaging/resample-area.js';
import { pearson } from '../helpers/dcmtk.js';
import {
  type DicomElement,
  type DicomEncoding,
  encodeFrame,
  type ImageSpec,
  imageElements,
  segmentedPaletteImage,
  type TestCodec,
  writeDicom,
} from '../helpers/dicom-writer.js';

afterAll(closeDecodePool);

const JPEG_BASELINE = '1.2.840.10008.1.2.4.50';

/** Decodes an encoded image keeping its band count (sharp widens grey to sRGB by default). */
async function decode(encoded: Buffer) {
  const { channels } = await sharp(encoded).metadata();
  const { data, info } = await sharp(encoded)
    .toColourspace(channels === 1 ? 'b-w' : 'srgb')
    .raw()
    .toBuffer({ resolveWithObject: true });
  return { data, channels: info.channels };
}

async function render(
  spec: ImageSpec,
  options: RenderDicomOptions = {},
  encoding: DicomEncoding = 'explicit-le',
) {
  const image = await renderDicomFrame(parseDicom(writeDicom(imageElements(spec), { encoding })), options);
  const { data, channels } = await decode(image.data);
  return { image, pixels: Array.from(data), channels };
}

async function expectRejection(promise: Promise<unknown>, code: string, message?: RegExp): Promise<void> {
  const error = await promise.then(
    () => undefined,
    (err: unknown) => err,
  );
  expect(error).toBeInstanceOf(AppError);
  expect((error as AppError).code).toBe(code);
  if (message) expect((error as AppError).message).toMatch(message);
}

/** CT-like: stored -1024 + rescale -1024 → HU. */
const ctValues = [-1000, -100, 0, 20, 40, 60, 240, 1000].map((hu) => hu + 1024);
const rescale: DicomElement[] = [
  { tag: 0x00281052, vr: 'DS', value: '-1024' },
  { tag: 0x00281053, vr: 'DS', value: '1' },
];

describe('renderDicomFrame, grayscale', () => {
  test.each(['implicit-le', 'explicit-le', 'explicit-be', 'deflated'] as const)(
    'signed 16-bit with rescale through an explicit window (%s)',
    async (encoding) => {
      const { pixels, image } = await render(
        {
          rows: 1,
          columns: 8,
          bitsAllocated: 16,
          pixelRepresentation: 1,
          pixelData: Int16Array.from(ctValues),
          extra: rescale,
        },
        { window: { center: 40, width: 401 } },
        encoding,
      );
      // Window 40/401 spans HU -160 … 240: linear in between, clamped outside, the fraction cut off (dcmj2pnm
      // +Ww 40 401 gives these eight values).
      expect(pixels).toEqual([0, 38, 102, 115, 127, 140, 255, 255]);
      expect(image).toMatchObject({ contentType: 'image/png', width: 8, height: 1 });
    },
  );

  test("uses the file's window when none is given", async () => {
    const { pixels } = await render({
      rows: 1,
      columns: 8,
      bitsAllocated: 16,
      pixelRepresentation: 1,
      pixelData: Int16Array.from(ctValues),
      extra: [
        ...rescale,
        { tag: 0x00281050, vr: 'DS', value: '40' },
        { tag: 0x00281051, vr: 'DS', value: '401' },
      ],
    });
    expect(pixels).toEqual([0, 38, 102, 115, 127, 140, 255, 255]);
  });

  /** A 12-bit ramp over the full range, in the given polarity and with an optional Presentation LUT Shape. */
  const ramp = (photometricInterpretation: string, shape?: string): ImageSpec => ({
    rows: 2,
    columns: 4,
    bitsAllocated: 16,
    bitsStored: 12,
    photometricInterpretation,
    pixelData: Uint16Array.from([0, 500, 1000, 1500, 2000, 2500, 3000, 4095]),
    extra: shape ? [{ tag: 0x20500020, vr: 'CS', value: shape }] : [],
  });

  // What dcmj2pnm +Ww 2047.5 4096 draws of the ramp: inverted before the fraction is cut, so 0.03 shows as 0
  // and, inverted, as 254 (not 255 − 0).
  const window = { center: 2047.5, width: 4096 };
  const positive = [0, 31, 62, 93, 124, 155, 186, 255];
  const negative = [254, 223, 192, 161, 130, 99, 68, 0];

  test('MONOCHROME1 renders inverted, as dcmj2pnm inverts it', async () => {
    expect((await render(ramp('MONOCHROME2'), { window })).pixels).toEqual(positive);
    expect((await render(ramp('MONOCHROME1'), { window })).pixels).toEqual(negative);
  });

  test('Presentation LUT Shape decides the polarity when present: INVERSE inverts, IDENTITY does not', async () => {
    expect((await render(ramp('MONOCHROME2', 'INVERSE'), { window })).pixels).toEqual(negative);
    expect((await render(ramp('MONOCHROME2', 'IDENTITY'), { window })).pixels).toEqual(positive);
    expect((await render(ramp('MONOCHROME1', 'INVERSE'), { window })).pixels).toEqual(negative);
    expect((await render(ramp('MONOCHROME1', 'IDENTITY'), { window })).pixels).toEqual(positive);
    // An unknown shape is ignored, as the photometric interpretation then decides.
    expect((await render(ramp('MONOCHROME1', 'LIN OD'), { window })).pixels).toEqual(negative);
  });

  test('an enhanced multi-frame object renders each frame with its own rescale, window and pixel spacing', async () => {
    const ds = (tag: number, value: string): DicomElement => ({ tag, vr: 'DS', value });
    const group = (tag: number, ...elements: DicomElement[]): DicomElement => ({
      tag,
      vr: 'SQ',
      value: [elements],
    });
    const transformation = (intercept: string) =>
      group(0x00289145, ds(0x00281052, intercept), ds(0x00281053, '1'));
    const voi = (center: string, width: string) =>
      group(0x00289132, ds(0x00281050, center), ds(0x00281051, width));
    const measures = (spacing: string) => group(0x00289110, ds(0x00280030, spacing));
    // Two frames of the same stored ramp 0…700. The shared groups say HU = stored − 1000, window −650/700
    // (the ramp spans it) and square pixels; frame 2 overrides all three.
    const ramp = Array.from({ length: 8 }, (_, i) => i * 100);
    const spec: ImageSpec = {
      rows: 1,
      columns: 8,
      bitsAllocated: 16,
      numberOfFrames: 2,
      pixelData: Uint16Array.from([...ramp, ...ramp]),
      extra: [
        {
          tag: 0x52009229,
          vr: 'SQ',
          value: [[transformation('-1000'), voi('-650', '700'), measures('1\\1')]],
        },
        {
          tag: 0x52009230,
          vr: 'SQ',
          value: [
            [group(0x00209111, { tag: 0x00209157, vr: 'UL', value: 1 })],
            [transformation('0'), voi('200', '200'), measures('2\\1')],
          ],
        },
      ],
    };
    const first = await render(spec, { frame: 0 });
    expect([first.image.width, first.image.height]).toEqual([8, 1]);
    expect(first.pixels).toEqual([0, 36, 72, 109, 145, 182, 218, 255]);
    // Frame 2: stored = HU, window 100…300, and rows twice as tall as columns are wide.
    const second = await render(spec, { frame: 1 });
    expect([second.image.width, second.image.height]).toEqual([8, 2]);
    expect(second.pixels.slice(0, 8)).toEqual([0, 0, 128, 255, 255, 255, 255, 255]);
    expect(second.pixels.slice(8)).toEqual(second.pixels.slice(0, 8));
  });

  test('without a window, Pixel Padding Value (and its range limit) is left out of the percentile window', async () => {
    // A CT row: 40 % of it outside the field of view, padded with -2000; the body spans -100 … 100 HU.
    const body = Array.from({ length: 60 }, (_, i) => -100 + Math.round((200 * i) / 59));
    const padded = [...Array.from({ length: 40 }, () => -2000), ...body];
    const spec = (extra: DicomElement[]): ImageSpec => ({
      rows: 1,
      columns: 100,
      bitsAllocated: 16,
      pixelRepresentation: 1,
      pixelData: Int16Array.from(padded),
      extra,
    });
    const bodyOf = (pixels: number[]) => pixels.slice(40);
    const unaware = bodyOf((await render(spec([]))).pixels);
    // The padding drags the window down to -2000: the body is squeezed into the top tenth of the grey scale.
    expect(Math.min(...unaware)).toBeGreaterThan(200);
    const padding = { tag: 0x00280120, vr: 'SS', value: -2000 };
    for (const extra of [[padding], [padding, { tag: 0x00280121, vr: 'SS', value: -1500 }]]) {
      const aware = (await render(spec(extra))).pixels;
      expect(Math.min(...bodyOf(aware))).toBeLessThan(10);
      expect(Math.max(...bodyOf(aware))).toBeGreaterThan(245);
      expect(aware.slice(0, 40).every((v) => v === 0)).toBe(true);
    }
    // A frame that is all padding still renders, as the values it has.
    const blank = await render({ ...spec([padding]), pixelData: Int16Array.from(padded.map(() => -2000)) });
    expect(new Set(blank.pixels).size).toBe(1);
  });

  test('without a window, the 1st–99th percentile range fills the output', async () => {
    const values = Array.from({ length: 400 }, (_, i) => (i === 0 ? 60000 : 1000 + i));
    const { pixels } = await render({
      rows: 20,
      columns: 20,
      bitsAllocated: 16,
      pixelData: Uint16Array.from(values),
    });
    // The single outlier does not compress everything else into a few grey levels.
    expect(pixels[0]).toBe(255);
    expect(Math.min(...pixels)).toBe(0);
    expect(new Set(pixels).size).toBeGreaterThan(200);
  });

  test('a binary mask renders black and white', async () => {
    const packed = new Uint8Array(8);
    packed[0] = 0b0000_0001;
    const { pixels } = await render({ rows: 8, columns: 8, bitsAllocated: 1, pixelData: packed });
    expect(pixels[0]).toBe(255);
    expect(pixels.slice(1).every((v) => v === 0)).toBe(true);
  });

  test('a constant frame renders mid-grey', async () => {
    const { pixels } = await render({
      rows: 2,
      columns: 2,
      bitsAllocated: 8,
      pixelData: new Uint8Array(4).fill(9),
    });
    expect(pixels).toEqual([127, 127, 127, 127]);
  });

  test('applies a Modality LUT in place of rescale', async () => {
    const lut = Uint16Array.from([0, 1000, 2000, 3000]);
    const { pixels } = await render(
      {
        rows: 1,
        columns: 4,
        bitsAllocated: 8,
        pixelData: Uint8Array.from([0, 1, 2, 3]),
        extra: [
          {
            tag: 0x00283000,
            vr: 'SQ',
            value: [
              [
                { tag: 0x00283002, vr: 'US', value: [4, 0, 16] },
                { tag: 0x00283006, vr: 'OW', value: lut },
              ],
            ],
          },
        ],
      },
      { window: { center: 1500.5, width: 2001 } },
    );
    // As dcmj2pnm +Ww 1500.5 2001 draws it.
    expect(pixels).toEqual([0, 63, 191, 255]);
  });

  test('32-bit frames render through a sampled window', async () => {
    const { pixels } = await render({
      rows: 1,
      columns: 4,
      bitsAllocated: 32,
      pixelData: Uint32Array.from([0, 1_000_000, 2_000_000, 3_000_000]),
    });
    expect(pixels[0]).toBe(0);
    expect(pixels[3]).toBe(255);
  });
});

describe('renderDicomFrame, colour', () => {
  const rgb = [255, 0, 0, 0, 255, 0, 0, 0, 255, 10, 20, 30, 200, 100, 50, 0, 0, 0];
  const planar = [0, 1, 2].flatMap((s) => [0, 1, 2, 3, 4, 5].map((p) => rgb[p * 3 + s]!));
  test.each([
    { planarConfiguration: 0, data: rgb, encoding: 'explicit-le' as const },
    { planarConfiguration: 1, data: planar, encoding: 'explicit-le' as const },
    { planarConfiguration: 1, data: planar, encoding: 'explicit-be' as const },
  ])('RGB planar $planarConfiguration ($encoding)', async ({ planarConfiguration, data, encoding }) => {
    const { pixels, channels } = await render(
      {
        rows: 2,
        columns: 3,
        bitsAllocated: 8,
        samplesPerPixel: 3,
        planarConfiguration,
        pixelData: Uint8Array.from(data),
      },
      {},
      encoding,
    );
    expect(channels).toBe(3);
    expect(pixels).toEqual(rgb);
  });

  test('YBR_FULL converts to RGB', async () => {
    // Grey, then pure red and blue in full-range YCbCr (rounded).
    const ybr = [128, 128, 128, 76, 85, 255, 29, 255, 107];
    const { pixels } = await render({
      rows: 1,
      columns: 3,
      bitsAllocated: 8,
      samplesPerPixel: 3,
      photometricInterpretation: 'YBR_FULL',
      pixelData: Uint8Array.from(ybr),
    });
    const expected = [128, 128, 128, 255, 0, 0, 0, 0, 255];
    pixels.forEach((v, i) => {
      expect(Math.abs(v - expected[i]!)).toBeLessThanOrEqual(2);
    });
  });

  test.each([
    { bits: 16, lut: (v: number) => v * 257 },
    { bits: 8, lut: (v: number) => v },
  ])('PALETTE COLOR with $bits-bit entries', async ({ bits, lut }) => {
    const entries = 4;
    const red = Uint16Array.from([0, 255, 0, 0].map(lut));
    const green = Uint16Array.from([0, 0, 255, 128].map(lut));
    const blue = Uint16Array.from([0, 0, 0, 255].map(lut));
    const descriptor = [entries, 10, bits];
    const { pixels } = await render({
      rows: 1,
      columns: 5,
      bitsAllocated: 8,
      photometricInterpretation: 'PALETTE COLOR',
      // 9 is below the first mapped value and 99 above the last: both clamp.
      pixelData: Uint8Array.from([9, 11, 12, 13, 99]),
      extra: [
        { tag: 0x00281101, vr: 'US', value: descriptor },
        { tag: 0x00281102, vr: 'US', value: descriptor },
        { tag: 0x00281103, vr: 'US', value: descriptor },
        { tag: 0x00281201, vr: 'OW', value: red },
        { tag: 0x00281202, vr: 'OW', value: green },
        { tag: 0x00281203, vr: 'OW', value: blue },
      ],
    });
    expect(pixels).toEqual([0, 0, 0, 255, 0, 0, 0, 255, 0, 0, 128, 255, 0, 128, 255]);
  });
});

describe('renderDicomFrame, JPEG Baseline', () => {
  async function jpegFrame(
    width: number,
    height: number,
    shade: number,
    channels: 1 | 3,
  ): Promise<Uint8Array> {
    const raw = new Uint8Array(width * height * channels).fill(shade);
    return new Uint8Array(
      await sharp(raw, { raw: { width, height, channels } }).jpeg({ quality: 95 }).toBuffer(),
    );
  }

  test('decodes the middle frame of a multi-frame JPEG without an offset table', async () => {
    const frames = await Promise.all([20, 120, 220].map((shade) => jpegFrame(16, 8, shade, 1)));
    const instance = parseDicom(
      writeDicom(
        imageElements({
          rows: 8,
          columns: 16,
          bitsAllocated: 8,
          numberOfFrames: 3,
          pixelData: {
            fragments: [frames[0]!, frames[1]!.subarray(0, 100), frames[1]!.subarray(100), frames[2]!],
          },
          extra: [
            { tag: 0x00281050, vr: 'DS', value: '127.5' },
            { tag: 0x00281051, vr: 'DS', value: '256' },
          ],
        }),
        { transferSyntaxUid: JPEG_BASELINE },
      ),
    );
    for (const [frame, shade] of [
      [undefined, 120],
      [0, 20],
      [2, 220],
    ] as const) {
      const image = await renderDicomFrame(instance, frame === undefined ? {} : { frame });
      const { data, channels } = await decode(image.data);
      expect(channels).toBe(1);
      expect(Math.abs(data[0]! - shade)).toBeLessThanOrEqual(2);
    }
  });

  test('colour JPEG frames come back as RGB', async () => {
    const raw = new Uint8Array(8 * 8 * 3);
    for (let i = 0; i < raw.length; i += 3) raw.set([200, 40, 40], i);
    const jpeg = new Uint8Array(
      await sharp(raw, { raw: { width: 8, height: 8, channels: 3 } })
        .jpeg({ quality: 95 })
        .toBuffer(),
    );
    const instance = parseDicom(
      writeDicom(
        imageElements({
          rows: 8,
          columns: 8,
          bitsAllocated: 8,
          samplesPerPixel: 3,
          photometricInterpretation: 'YBR_FULL_422',
          pixelData: { fragments: [jpeg] },
        }),
        { transferSyntaxUid: JPEG_BASELINE },
      ),
    );
    const image = await renderDicomFrame(instance);
    const decoded = await decode(image.data);
    expect(decoded.channels).toBe(3);
    const [r, g, b] = decoded.data;
    expect(Math.abs(r! - 200) + Math.abs(g! - 40) + Math.abs(b! - 40)).toBeLessThan(12);
  });

  test.each([
    {
      name: 'no frame header',
      jpeg: async () => Uint8Array.of(0xff, 0xd8, 1, 2),
      message: /has no start-of-frame header/,
    },
    {
      // Headers, then the end-of-image marker where the scan should start.
      name: 'no scan',
      jpeg: async () => {
        const whole = await jpegFrame(64, 64, 90, 1);
        const sos = whole.findIndex((b, i) => b === 0xff && whole[i + 1] === 0xda);
        return Uint8Array.from([...whole.subarray(0, sos), 0xff, 0xd9]);
      },
      message: /JPEG frame 1 of 1 cannot be decoded/,
    },
  ])('a broken JPEG frame ($name) → CORRUPT_FILE', async ({ jpeg, message }) => {
    const instance = parseDicom(
      writeDicom(
        imageElements({ rows: 64, columns: 64, bitsAllocated: 8, pixelData: { fragments: [await jpeg()] } }),
        { transferSyntaxUid: JPEG_BASELINE },
      ),
    );
    await expectRejection(renderDicomFrame(instance), 'CORRUPT_FILE', message);
  });
});

describe('renderDicomFrame, size and format', () => {
  const big: ImageSpec = {
    rows: 300,
    columns: 600,
    bitsAllocated: 8,
    pixelData: Uint8Array.from({ length: 300 * 600 }, (_, i) => i % 251),
  };

  test.each([
    { options: {}, width: 256, height: 128, type: 'image/png' },
    { options: { size: 100, format: 'webp' as const }, width: 100, height: 50, type: 'image/webp' },
    { options: { size: 1000, format: 'jpeg' as const }, width: 600, height: 300, type: 'image/jpeg' },
  ])('$options → $width×$height $type', async ({ options, width, height, type }) => {
    const { image } = await render(big, options);
    expect(image).toMatchObject({ width, height, contentType: type });
    const meta = await sharp(image.data).metadata();
    expect([meta.width, meta.height]).toEqual([width, height]);
  });
});

describe('renderDicomFrame errors', () => {
  test.each([
    { uid: '1.2.840.10008.1.2.4.90', name: 'JPEG 2000' },
    { uid: '1.2.840.10008.1.2.4.80', name: 'JPEG-LS' },
    { uid: '1.2.840.10008.1.2.4.203', name: 'HTJ2K' },
    { uid: '1.2.840.10008.1.2.4.51', name: 'JPEG frame 1 of 1 has no start-of-frame header' },
  ])('garbage in a $uid frame → CORRUPT_FILE', async ({ uid, name }) => {
    const instance = parseDicom(
      writeDicom(
        imageElements({
          rows: 2,
          columns: 2,
          bitsAllocated: 8,
          pixelData: { fragments: [Uint8Array.of(1, 2, 3, 4)] },
        }),
        { transferSyntaxUid: uid },
      ),
    );
    await expectRejection(renderDicomFrame(instance), 'CORRUPT_FILE', new RegExp(name));
  });

  test('video transfer syntaxes → UNSUPPORTED_FORMAT', async () => {
    const uid = '1.2.840.10008.1.2.4.102';
    const instance = parseDicom(
      writeDicom(
        imageElements({
          rows: 2,
          columns: 2,
          bitsAllocated: 8,
          pixelData: { fragments: [Uint8Array.of(1, 2)] },
        }),
        { transferSyntaxUid: uid },
      ),
    );
    expect(canDecodeTransferSyntax(uid)).toBe(false);
    await expectRejection(
      renderDicomFrame(instance),
      'UNSUPPORTED_FORMAT',
      /1\.2\.840\.10008\.1\.2\.4\.102 \(MPEG-4/,
    );
  });

  test('an object without pixel data → UNSUPPORTED_FORMAT', async () => {
    const instance = parseDicom(
      writeDicom([{ tag: 0x00080016, vr: 'UI', value: '1.2.840.10008.5.1.4.1.1.88.22' }]),
    );
    await expectRejection(renderDicomFrame(instance), 'UNSUPPORTED_FORMAT', /no pixel data/);
  });

  test('a frame past the last → VALIDATION_FAILED', async () => {
    const instance = parseDicom(
      writeDicom(imageElements({ rows: 1, columns: 1, bitsAllocated: 8, pixelData: new Uint8Array(2) })),
    );
    await expectRejection(renderDicomFrame(instance, { frame: 1 }), 'VALIDATION_FAILED');
  });

  test('an unsupported photometric interpretation → UNSUPPORTED_FORMAT', async () => {
    const instance = parseDicom(
      writeDicom(
        imageElements({
          rows: 1,
          columns: 2,
          bitsAllocated: 8,
          samplesPerPixel: 3,
          photometricInterpretation: 'HSV',
          pixelData: new Uint8Array(6),
        }),
      ),
    );
    await expectRejection(renderDicomFrame(instance), 'UNSUPPORTED_FORMAT', /HSV/);
  });
});

describe('encodeImage', () => {
  test('shrinks to fit, keeps the aspect ratio and never enlarges', async () => {
    const data = new Uint8Array(40 * 20 * 3).fill(90);
    const small = await encodeImage({ data, width: 40, height: 20, channels: 3 }, { size: 10 });
    expect(small).toMatchObject({ width: 10, height: 5, contentType: 'image/png' });
    const same = await encodeImage(
      { data, width: 40, height: 20, channels: 3 },
      { size: 400, format: 'webp' },
    );
    expect(same).toMatchObject({ width: 40, height: 20, contentType: 'image/webp' });
  });

  test('rejects a buffer smaller than the image it describes', async () => {
    await expectRejection(
      encodeImage({ data: new Uint8Array(5), width: 4, height: 4, channels: 1 }),
      'INTERNAL',
    );
  });

  test('a thumbnail-sized PNG and a large one decode to the same samples', async () => {
    const sample = (i: number) => (i * 31 + (i >> 9) * 7) % 256;
    for (const [width, height] of [
      [256, 200],
      [900, 700],
    ] as const) {
      const data = Uint8Array.from({ length: width * height }, (_, i) => sample(i));
      const image = await encodeImage({ data, width, height, channels: 1 });
      const { data: back } = await decode(image.data);
      expect(Buffer.compare(back, Buffer.from(data)), `${width}×${height}`).toBe(0);
    }
  });
});

describe('compressed frames through the codecs', () => {
  const UID = {
    'jpeg-lossless': '1.2.840.10008.1.2.4.70',
    'jpeg-baseline': '1.2.840.10008.1.2.4.50',
    'jpeg-ls': '1.2.840.10008.1.2.4.80',
    'jpeg-2000': '1.2.840.10008.1.2.4.90',
    htj2k: '1.2.840.10008.1.2.4.201',
  } as const;

  function noise(length: number, bits: number, signed: boolean): number[] {
    let seed = 12345;
    return Array.from({ length }, (_, i) => {
      seed = (seed * 1103515245 + 12345) >>> 0;
      const v = ((seed >>> 8) % 2 ** bits) ^ (i & 0xff);
      return signed ? v - 2 ** (bits - 1) : v;
    });
  }

  async function compressedInstance(
    codec: TestCodec,
    spec: ImageSpec & { bitsStored: number },
    frames: number[][],
    options: { uid?: string; split?: boolean } = {},
  ) {
    const signed = spec.pixelRepresentation === 1;
    const encoded = await Promise.all(
      frames.map((values) => {
        const samples =
          spec.bitsAllocated === 8
            ? Uint8Array.from(values)
            : signed
              ? Int16Array.from(values)
              : Uint16Array.from(values);
        return encodeFrame(codec, samples, spec);
      }),
    );
    // A frame split over two fragments, with a basic offset table saying where each frame starts.
    const fragments = options.split ? encoded.flatMap((e) => [e.subarray(0, 40), e.subarray(40)]) : encoded;
    const offsetTable: number[] = [];
    let offset = 0;
    for (const e of encoded) {
      offsetTable.push(offset);
      offset += options.split ? 8 + 40 + 8 + even(e.length - 40) : 8 + even(e.length);
    }
    return parseDicom(
      writeDicom(
        imageElements({
          ...spec,
          numberOfFrames: frames.length,
          pixelData: { fragments, offsetTable: options.split ? offsetTable : [] },
        }),
        { transferSyntaxUid: options.uid ?? UID[codec] },
      ),
    );
  }

  function even(n: number): number {
    return n + (n % 2);
  }

  test.each([
    { codec: 'jpeg-lossless', bits: 12, signed: true },
    { codec: 'jpeg-lossless', bits: 16, signed: false },
    { codec: 'jpeg-ls', bits: 12, signed: true },
    { codec: 'jpeg-ls', bits: 16, signed: true },
    { codec: 'jpeg-2000', bits: 12, signed: true },
    { codec: 'jpeg-2000', bits: 16, signed: false },
    { codec: 'htj2k', bits: 13, signed: true },
    { codec: 'jpeg-ls', bits: 8, signed: false },
    { codec: 'jpeg-2000', bits: 8, signed: false },
  ] as const)(
    '$codec, $bits bits, signed $signed: lossless round trip of 2 frames',
    async ({ codec, bits, signed }) => {
      const rows = 24;
      const columns = 20;
      const frames = [noise(rows * columns, bits, signed), noise(rows * columns, bits, signed).reverse()];
      const instance = await compressedInstance(
        codec,
        {
          rows,
          columns,
          bitsAllocated: bits > 8 ? 16 : 8,
          bitsStored: bits,
          pixelRepresentation: signed ? 1 : 0,
        },
        frames,
        { split: true },
      );
      for (const [k, expected] of frames.entries()) {
        const frame = await decodeDicomFrame(instance, k);
        expect(Array.from(frame.pixels), `frame ${k}`).toEqual(expected);
      }
    },
  );

  test.each(['jpeg-ls', 'jpeg-2000', 'htj2k'] as const)('%s RGB comes back as RGB', async (codec) => {
    const rgb = noise(16 * 16 * 3, 8, false);
    const instance = await compressedInstance(
      codec,
      { rows: 16, columns: 16, bitsAllocated: 8, bitsStored: 8, samplesPerPixel: 3 },
      [rgb],
    );
    const frame = await decodeDicomFrame(instance, 0);
    expect(frame.photometricInterpretation).toBe('RGB');
    expect(Array.from(frame.pixels)).toEqual(rgb);
  });

  test('JPEG frames are decoded by their frame header, whatever the transfer syntax says', async () => {
    const values = noise(32 * 32, 12, false);
    // Lossless 12-bit JPEG labelled Baseline, as some writers do.
    const instance = await compressedInstance(
      'jpeg-lossless',
      { rows: 32, columns: 32, bitsAllocated: 16, bitsStored: 12 },
      [values],
      { uid: '1.2.840.10008.1.2.4.50' },
    );
    expect(Array.from((await decodeDicomFrame(instance, 0)).pixels)).toEqual(values);
  });

  test('a frame larger than the in-thread limit decodes on a worker thread, to the same samples', async () => {
    const rows = 256;
    const columns = 256;
    const values = noise(rows * columns, 16, true);
    const instance = await compressedInstance(
      'jpeg-2000',
      { rows, columns, bitsAllocated: 16, bitsStored: 16, pixelRepresentation: 1 },
      [values],
    );
    const frame = await decodeDicomFrame(instance, 0);
    expect(frame.pixels).toBeInstanceOf(Int16Array);
    expect(Array.from(frame.pixels)).toEqual(values);
    await closeDecodePool();
    // The pool starts again after being closed.
    expect(Array.from((await decodeDicomFrame(instance, 0)).pixels)).toEqual(values);
  });

  test('a long decode on the pool leaves the event loop free', async () => {
    const size = 1024;
    const values = noise(size * size, 16, false);
    const instance = await compressedInstance(
      'jpeg-2000',
      { rows: size, columns: size, bitsAllocated: 16, bitsStored: 16 },
      [values],
    );
    // Warm the worker and its codec first, so that the measurement is the decode alone.
    await decodeDicomFrame(instance, 0);
    let longestGap = 0;
    let last = performance.now();
    const timer = setInterval(() => {
      const now = performance.now();
      longestGap = Math.max(longestGap, now - last);
      last = now;
    }, 5);
    const started = performance.now();
    const frame = await decodeDicomFrame(instance, 0);
    const took = performance.now() - started;
    clearInterval(timer);
    expect(frame.rows).toBe(size);
    // The decode itself takes hundreds of milliseconds; the loop never waits more than a small part of it.
    expect(took).toBeGreaterThan(100);
    expect(longestGap).toBeLessThan(Math.max(60, took / 3));
  });

  test('errors from the pool arrive as AppErrors', async () => {
    const good = await encodeFrame('jpeg-2000', new Uint16Array(256 * 256), {
      rows: 256,
      columns: 256,
      bitsAllocated: 16,
    });
    const instance = parseDicom(
      writeDicom(
        imageElements({
          rows: 256,
          columns: 256,
          bitsAllocated: 16,
          pixelData: { fragments: [good.subarray(0, 50)] },
        }),
        { transferSyntaxUid: UID['jpeg-2000'] },
      ),
    );
    await expectRejection(
      decodeDicomFrame(instance, 0),
      'CORRUPT_FILE',
      /JPEG 2000 frame 1 of 1 cannot be decoded/,
    );
  });

  test('a large JPEG 2000 frame is decoded at the resolution level the output needs', async () => {
    const size = 1024;
    const values = Array.from({ length: size * size }, (_, i) => (i % size) * 4);
    const instance = await compressedInstance(
      'jpeg-2000',
      { rows: size, columns: size, bitsAllocated: 16, bitsStored: 12 },
      [values],
    );
    const reduced = await decodeDicomFrame(instance, 0, { maxSize: 128 });
    // Two halvings would leave 256, twice the output size; one keeps four times it.
    expect([reduced.columns, reduced.rows]).toEqual([512, 512]);
    const image = await renderDicomFrame(instance, { size: 128 });
    expect([image.width, image.height]).toEqual([128, 128]);
    const { pixels } = { pixels: Array.from((await decode(image.data)).data) };
    // A horizontal ramp: dark on the left, bright on the right.
    expect(pixels[0]!).toBeLessThan(10);
    expect(pixels[127]!).toBeGreaterThan(245);
  });

  // Found with GDCM's lossless J2K transcodes of corpus files: decoded at twice the output size, textured images
  // rendered at 0.977–0.987 correlation with a full decode.
  test.each(['jpeg-2000', 'htj2k'] as const)(
    'a textured %s frame decoded at a reduced level renders like the full frame (r ≥ 0.99)',
    async (codec) => {
      const size = 1024;
      // Fine texture (a hash of the position) over a slow gradient: detail the wavelet's low-pass keeps and an
      // area average removes.
      const values = Array.from({ length: size * size }, (_, i) => {
        const x = i % size;
        const y = Math.floor(i / size);
        const noise = (Math.imul(x * 73856093 + y * 19349663, 2654435761) >>> 24) % 96;
        return Math.min(255, Math.floor((x + y) / 16) + noise);
      });
      const spec = { rows: size, columns: size, bitsAllocated: 8, bitsStored: 8 };
      const compressed = await compressedInstance(codec, spec, [values]);
      const native = parseDicom(writeDicom(imageElements({ ...spec, pixelData: Uint8Array.from(values) })));
      const window = { center: 128, width: 256 };
      const [ours, full] = await Promise.all(
        [compressed, native].map(
          async (instance) =>
            await sharp((await renderDicomFrame(instance, { size: 128, window })).data)
              .greyscale()
              .raw()
              .toBuffer(),
        ),
      );
      expect(pearson(ours!, full!)).toBeGreaterThanOrEqual(0.99);
    },
  );

  // Found by test/conformance/mutation-robustness.test.ts: a lossless JPEG whose SOF said 22016×22589 in a 512×512
  // instance took 12 s and 3 GB on the calling thread before rendering noise.
  test.each(['jpeg-lossless', 'jpeg-baseline', 'jpeg-ls', 'jpeg-2000', 'htj2k'] as const)(
    '%s codestream bigger than Rows × Columns → CORRUPT_FILE before decoding',
    async (codec) => {
      const frame = await encodeFrame(codec, new Uint8Array(32 * 24), {
        rows: 24,
        columns: 32,
        bitsAllocated: 8,
      });
      const instance = parseDicom(
        writeDicom(
          imageElements({ rows: 24, columns: 16, bitsAllocated: 8, pixelData: { fragments: [frame] } }),
          { transferSyntaxUid: UID[codec] },
        ),
      );
      await expectRejection(
        renderDicomFrame(instance),
        'CORRUPT_FILE',
        /frame 1 of 1 declares 32×24 pixels in its header, more than Columns \(0028,0011\) × Rows \(0028,0010\) = 16×24/,
      );
    },
  );

  // Found with GDCM, which writes 16-bit DCT JPEG when asked for lossy JPEG of 16-bit data; IJG decoded it black.
  test('a DCT JPEG with 16-bit samples → CORRUPT_FILE, not a black frame', async () => {
    const frame = await encodeFrame('jpeg-baseline', new Uint8Array(32 * 24), {
      rows: 24,
      columns: 32,
      bitsAllocated: 8,
    });
    // SOF0 with 8-bit samples becomes SOF1 (extended DCT) with 16-bit samples.
    const sof = frame.findIndex((byte, i) => byte === 0xff && frame[i + 1] === 0xc0);
    expect(sof).toBeGreaterThan(0);
    frame[sof + 1] = 0xc1;
    frame[sof + 4] = 16;
    const instance = parseDicom(
      writeDicom(
        imageElements({ rows: 24, columns: 32, bitsAllocated: 16, pixelData: { fragments: [frame] } }),
        {
          transferSyntaxUid: UID['jpeg-baseline'],
        },
      ),
    );
    await expectRejection(
      renderDicomFrame(instance),
      'CORRUPT_FILE',
      /JPEG frame 1 of 1 is a DCT \(lossy\) JPEG with 16-bit samples; the standard allows 8 or 12/,
    );
  });
});

describe('renderDicomFrame and signed colour', () => {
  // Checked against dcmj2pnm: a colour image with PixelRepresentation 1 shows −128 … 127 as 0 … 255.
  test('RGB with PixelRepresentation 1 is offset by half its range, as DCMTK shows it', async () => {
    const stored = Uint8Array.from({ length: 2 * 2 * 3 }, (_, i) => (i * 23) % 256);
    const { pixels, channels } = await render({
      rows: 2,
      columns: 2,
      bitsAllocated: 8,
      samplesPerPixel: 3,
      pixelRepresentation: 1,
      pixelData: stored,
    });
    expect(channels).toBe(3);
    expect(pixels).toEqual(Array.from(stored, (b) => (b + 128) % 256));
  });
});

describe('renderDicomFrame and overlay planes', () => {
  const plane = (
    rows: number,
    columns: number,
    origin: [number, number],
    data: Uint8Array,
  ): DicomElement[] => [
    { tag: 0x60000010, vr: 'US', value: rows },
    { tag: 0x60000011, vr: 'US', value: columns },
    { tag: 0x60000040, vr: 'CS', value: 'G' },
    { tag: 0x60000050, vr: 'SS', value: origin },
    { tag: 0x60000100, vr: 'US', value: 1 },
    { tag: 0x60000102, vr: 'US', value: 0 },
    { tag: 0x60003000, vr: 'OW', value: data },
  ];

  const image = (extra: DicomElement[]) =>
    render({
      rows: 4,
      columns: 4,
      bitsAllocated: 8,
      pixelData: Uint8Array.from({ length: 16 }, (_, i) => i * 8),
      extra: [
        { tag: 0x00281050, vr: 'DS', value: '127.5' },
        { tag: 0x00281051, vr: 'DS', value: '256' },
        ...extra,
      ],
    });

  // Walking a declared 65535 × 65535 plane bit by bit would outlast the test's timeout; only the part over the
  // image is visited.
  test('a hostile plane is clipped to the image: 65535 × 65535 with its data cut short', async () => {
    const { pixels } = await image(plane(65535, 65535, [1, 1], Uint8Array.of(0xff, 0xff)));
    const bare = (await image([])).pixels;
    // The 16 bits given cover the plane's first row, whose first 4 pixels are on the image.
    expect(pixels.slice(0, 4)).toEqual([255, 255, 255, 255]);
    expect(pixels.slice(4)).toEqual(bare.slice(4));
  });

  test('a hostile plane is clipped to the image: 65535 × 65535 far off it', async () => {
    const { pixels } = await image(plane(65535, 65535, [-32768, 30000], Uint8Array.of(0xff, 0xff)));
    expect(pixels).toEqual((await image([])).pixels);
  });
});

describe('renderDicomFrame, pixel aspect, float data and VOI functions', () => {
  test('non-square pixels are stretched along the coarser axis', async () => {
    const { image, pixels } = await render({
      rows: 2,
      columns: 4,
      bitsAllocated: 8,
      pixelData: Uint8Array.from([0, 0, 0, 0, 255, 255, 255, 255]),
      extra: [
        { tag: 0x00281050, vr: 'DS', value: '127.5' },
        { tag: 0x00281051, vr: 'DS', value: '256' },
        { tag: 0x00280034, vr: 'IS', value: '2\\1' },
      ],
    });
    expect([image.width, image.height]).toEqual([4, 4]);
    expect(pixels).toEqual([0, 0, 0, 0, 0, 0, 0, 0, 255, 255, 255, 255, 255, 255, 255, 255]);
  });

  test.each([
    { rows: 100, columns: 200, aspect: undefined, size: 256, expected: { width: 200, height: 100 } },
    { rows: 600, columns: 300, aspect: undefined, size: 256, expected: { width: 128, height: 256 } },
    {
      rows: 120,
      columns: 256,
      aspect: { vertical: 4, horizontal: 3 },
      size: 256,
      expected: { width: 256, height: 160 },
    },
    { rows: 434, columns: 636, aspect: undefined, size: 256, expected: { width: 256, height: 174 } },
    {
      rows: 100,
      columns: 100,
      aspect: { vertical: 1, horizontal: 2 },
      size: 1000,
      expected: { width: 200, height: 100 },
    },
  ])(
    'displaySize($rows, $columns, $aspect, $size) → $expected',
    ({ rows, columns, aspect, size, expected }) => {
      expect(displaySize(rows, columns, aspect, size)).toEqual(expected);
    },
  );

  test('a shrunk grayscale frame averages modality values before the window, as DCMTK does', async () => {
    const { pixels } = await render(
      { rows: 1, columns: 2, bitsAllocated: 8, pixelData: Uint8Array.from([0, 100]) },
      // 0 and 100 average to 50, which this window shows white; windowing first would give grey.
      { size: 1, window: { center: 50, width: 2 } },
    );
    expect(pixels).toEqual([255]);
  });

  test.each([
    { fn: 'LINEAR_EXACT', values: [0, 25, 50, 75, 100], expected: [0, 64, 128, 191, 255] },
    // As dcmj2pnm draws it (the fraction cut off).
    { fn: 'SIGMOID', values: [0, 25, 50, 75, 100], expected: [30, 68, 127, 186, 224] },
  ])('VOI LUT Function $fn', async ({ fn, values, expected }) => {
    const { pixels } = await render({
      rows: 1,
      columns: values.length,
      bitsAllocated: 8,
      pixelData: Uint8Array.from(values),
      extra: [
        { tag: 0x00281050, vr: 'DS', value: '50' },
        { tag: 0x00281051, vr: 'DS', value: '100' },
        { tag: 0x00281056, vr: 'CS', value: fn },
      ],
    });
    expect(pixels).toEqual(expected);
  });

  test('float pixel data is windowed exactly, NaN renders black', async () => {
    const { pixels } = await render({
      rows: 1,
      columns: 5,
      bitsAllocated: 32,
      extra: [
        { tag: 0x7fe00008, vr: 'OF', value: Float32Array.from([0, 0.25, 0.5, 1, Number.NaN]) },
        { tag: 0x00281050, vr: 'DS', value: '0.5' },
        { tag: 0x00281051, vr: 'DS', value: '1' },
      ],
    });
    expect(pixels).toEqual([0, 64, 128, 255, 0]);
  });

  test('double float pixel data without a window gets a percentile window', async () => {
    const values = Array.from({ length: 400 }, (_, i) => i / 1000 - 0.1);
    const instance = parseDicom(
      writeDicom(
        imageElements({
          rows: 20,
          columns: 20,
          bitsAllocated: 64,
          extra: [{ tag: 0x7fe00009, vr: 'OD', value: Float64Array.from(values) }],
        }),
      ),
    );
    const frame = await decodeDicomFrame(instance, 0);
    const choice = resolveVoi(frame, instance);
    expect(choice).toMatchObject({ kind: 'window', function: 'LINEAR_EXACT', source: 'percentile' });
    const image = await renderDicomFrame(instance, { size: 20 });
    const { data } = await decode(image.data);
    expect(data[0]).toBe(0);
    expect(data[399]).toBe(255);
  });

  test('a segmented palette renders through its expanded tables', async () => {
    const ramp = Uint16Array.of(0, 1, 0, 1, 255, 0xffff);
    const flat = Uint16Array.of(0, 256, ...new Array<number>(256).fill(0));
    const { pixels } = await render(segmentedPaletteImage(ramp, flat, ramp));
    expect(pixels).toEqual([0, 0, 0, 255, 0, 255]);
  });
});

describe('area resampling', () => {
  const rows = (values: number[][]) => (y: number, row: Float32Array) => row.set(values[y]!);

  test.each([
    { name: 'halving averages pairs', input: [[0, 10, 20, 30]], width: 2, expected: [5, 25] },
    {
      name: 'a third shrink weighs the shared pixel by half',
      input: [[0, 30, 60]],
      width: 2,
      expected: [10, 50],
    },
    { name: 'stretching blends only at the seams', input: [[0, 30]], width: 3, expected: [0, 15, 30] },
  ])('$name', ({ input, width, expected }) => {
    const out = resampleArea(input[0]!.length, 1, 1, width, 1, rows(input));
    expect(Array.from(out).map((v) => Math.round(v * 1000) / 1000)).toEqual(expected);
  });

  test('both axes and three channels', () => {
    const input = [
      [0, 0, 0, 10, 10, 10],
      [20, 40, 60, 30, 50, 70],
    ];
    expect(Array.from(resampleArea(2, 2, 3, 1, 1, rows(input)))).toEqual([15, 25, 35]);
  });

  test.each([
    { name: 'a whole-number shrink', width: 8, height: 6, newWidth: 4, newHeight: 3 },
    { name: 'a fractional shrink', width: 9, height: 7, newWidth: 4, newHeight: 3 },
  ])('a linear rescale after averaging matches averaging rescaled values: $name', (job) => {
    const pixels = Int16Array.from({ length: job.width * job.height }, (_, i) => ((i * 37) % 300) - 150);
    const slope = 2.5;
    const intercept = -1024;
    const values = Float32Array.from({ length: 300 }, (_, k) => (k - 150) * slope + intercept);
    const viaTable = resampleStored({ ...job, pixels, table: { min: -150, values } });
    const viaRescale = resampleStored({ ...job, pixels, rescale: { slope, intercept } });
    expect(Array.from(viaRescale).map((v) => Math.round(v * 100) / 100)).toEqual(
      Array.from(viaTable).map((v) => Math.round(v * 100) / 100),
    );
  });

  test('resampleStored maps stored values through the modality table first', () => {
    const out = resampleStored({
      pixels: Int16Array.of(-1, 1),
      width: 2,
      height: 1,
      newWidth: 1,
      newHeight: 1,
      // A non-linear table: -1 → 100, 0 → 0, 1 → 300.
      table: { min: -1, values: Float32Array.of(100, 0, 300) },
    });
    expect(Array.from(out)).toEqual([200]);
  });

  test('a large grayscale frame shrinks on a worker to what this thread would draw', async () => {
    const rows = 1500;
    const columns = 1600;
    const values = Int16Array.from(
      { length: rows * columns },
      (_, i) => (((i % columns) * 7 + Math.floor(i / columns) * 3) % 4000) - 1000,
    );
    const instance = parseDicom(
      writeDicom(
        imageElements({
          rows,
          columns,
          bitsAllocated: 16,
          pixelRepresentation: 1,
          pixelData: values,
          extra: rescale,
        }),
      ),
    );
    const frame = await decodeDicomFrame(instance, 0);
    const size = displaySize(rows, columns, undefined, 256);
    const here = toDisplayPixels(frame, instance, { center: 0, width: 2000 }, size);
    const image = await renderDicomFrame(instance, { window: { center: 0, width: 2000 } });
    const { data } = await decode(image.data);
    expect([image.width, image.height]).toEqual([size.width, size.height]);
    expect(Array.from(data)).toEqual(Array.from(here.data));
  });
});
