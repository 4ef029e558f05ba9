import sharp from 'sharp';
import { describe, expect, test } from 'vitest';
import { AppError } from '../../src/errors.js';
import { parseDicom } from '../../src/formats/dicom/parse-dicom.js';
import { encodeImage } from '../../src/imaging/encode.js';
import { type RenderDicomOptions, renderDicomFrame } from '../../src/imaging/render-dicom.js';
import {
  type DicomElement,
  type DicomEncoding,
  type ImageSpec,
  imageElements,
  writeDicom,
} from '../helpers/dicom-writer.js';

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
      // Window 40/401 spans HU -160 … 240: linear in between, clamped outside.
      expect(pixels).toEqual([0, 39, 102, 115, 128, 141, 255, 255]);
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
    expect(pixels).toEqual([0, 39, 102, 115, 128, 141, 255, 255]);
  });

  test('MONOCHROME1 renders inverted', async () => {
    const spec = (photometricInterpretation: string): ImageSpec => ({
      rows: 2,
      columns: 4,
      bitsAllocated: 16,
      bitsStored: 12,
      photometricInterpretation,
      pixelData: Uint16Array.from([0, 500, 1000, 1500, 2000, 2500, 3000, 4095]),
    });
    const mono2 = await render(spec('MONOCHROME2'));
    const mono1 = await render(spec('MONOCHROME1'));
    expect(mono1.pixels).toEqual(mono2.pixels.map((v) => 255 - v));
    expect(mono2.pixels[0]).toBe(0);
    expect(mono2.pixels[7]).toBe(255);
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
    expect(pixels).toEqual([128, 128, 128, 128]);
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
    expect(pixels).toEqual([0, 64, 191, 255]);
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

  test('a broken JPEG frame → CORRUPT_FILE', async () => {
    const instance = parseDicom(
      writeDicom(
        imageElements({
          rows: 8,
          columns: 8,
          bitsAllocated: 8,
          pixelData: { fragments: [Uint8Array.of(0xff, 0xd8, 1, 2)] },
        }),
        { transferSyntaxUid: JPEG_BASELINE },
      ),
    );
    await expectRejection(renderDicomFrame(instance), 'CORRUPT_FILE', /JPEG frame 1 of 1 cannot be decoded/);
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
    { uid: '1.2.840.10008.1.2.4.90', name: 'JPEG 2000 \\(Lossless Only\\)' },
    { uid: '1.2.840.10008.1.2.4.51', name: 'JPEG Extended \\(Process 2 & 4\\)' },
    { uid: '1.2.840.10008.1.2.4.203', name: 'High-Throughput JPEG 2000' },
  ])('$uid → UNSUPPORTED_FORMAT', async ({ uid, name }) => {
    const instance = parseDicom(
      writeDicom(
        imageElements({
          rows: 2,
          columns: 2,
          bitsAllocated: 8,
          pixelData: { fragments: [Uint8Array.of(1, 2)] },
        }),
        {
          transferSyntaxUid: uid,
        },
      ),
    );
    await expectRejection(
      renderDicomFrame(instance),
      'UNSUPPORTED_FORMAT',
      new RegExp(`transfer syntax ${uid.replace(/\./g, '\\.')} \\(${name}\\) cannot be decoded yet`),
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
});
