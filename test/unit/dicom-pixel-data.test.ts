import { describe, expect, test } from 'vitest';
import { AppError } from '../../src/errors.js';
import { asRgbJpeg } from '../../src/formats/dicom/as-rgb-jpeg.js';
import { parseDicom } from '../../src/formats/dicom/parse-dicom.js';
import { getEncapsulatedFrame, getFrame } from '../../src/formats/dicom/pixel-data.js';
import {
  type DicomEncoding,
  encodeRleFrame,
  type ImageSpec,
  imageElements,
  writeDicom,
} from '../helpers/dicom-writer.js';

const RLE = '1.2.840.10008.1.2.5';
const NATIVE: DicomEncoding[] = ['implicit-le', 'explicit-le', 'explicit-be', 'deflated'];

function ramp(length: number, make: (i: number) => number): number[] {
  return Array.from({ length }, (_, i) => make(i));
}

function expectAppError(fn: () => unknown, code: string, message?: RegExp): void {
  let thrown: unknown;
  try {
    fn();
  } catch (err) {
    thrown = err;
  }
  expect(thrown).toBeInstanceOf(AppError);
  expect((thrown as AppError).code).toBe(code);
  if (message) expect((thrown as AppError).message).toMatch(message);
}

const depths = [
  { name: '8-bit unsigned', bits: 8, signed: 0, values: ramp(24, (i) => i * 10) },
  { name: '8-bit signed', bits: 8, signed: 1, values: ramp(24, (i) => i * 10 - 120) },
  { name: '16-bit unsigned', bits: 16, signed: 0, values: ramp(24, (i) => i * 2700) },
  { name: '16-bit signed', bits: 16, signed: 1, values: ramp(24, (i) => i * 1300 - 15000) },
  { name: '32-bit unsigned', bits: 32, signed: 0, values: ramp(24, (i) => i * 170_000_000) },
  { name: '32-bit signed', bits: 32, signed: 1, values: ramp(24, (i) => i * 90_000_000 - 1_000_000_000) },
];

function typed(bits: number, signed: number, values: number[]) {
  if (bits === 8) return signed ? Int8Array.from(values) : Uint8Array.from(values);
  if (bits === 16) return signed ? Int16Array.from(values) : Uint16Array.from(values);
  return signed ? Int32Array.from(values) : Uint32Array.from(values);
}

describe('getFrame, native', () => {
  const cases = NATIVE.flatMap((encoding) => depths.map((d) => ({ encoding, ...d })));
  test.each(cases)('$name, $encoding, 2 frames', ({ encoding, bits, signed, values }) => {
    const spec: ImageSpec = {
      rows: 3,
      columns: 4,
      bitsAllocated: bits,
      pixelRepresentation: signed,
      numberOfFrames: 2,
      pixelData: typed(bits, signed, values),
    };
    const instance = parseDicom(writeDicom(imageElements(spec), { encoding }));
    expect(Array.from(getFrame(instance, 0).pixels)).toEqual(values.slice(0, 12));
    const second = getFrame(instance, 1);
    expect(Array.from(second.pixels)).toEqual(values.slice(12));
    expect(second).toMatchObject({ rows: 3, columns: 4, samplesPerPixel: 1, bitsAllocated: bits });
  });

  test.each([
    { signed: 0, expected: [0, 1, 2047, 4095, 100] },
    { signed: 1, expected: [0, 1, 2047, -1, 100] },
  ])('masks 12 stored bits out of 16 (signed=$signed)', ({ signed, expected }) => {
    // High nibble holds overlay bits that must not leak into the values.
    const stored = Uint16Array.from([0xf000, 0x1001, 0x27ff, 0x0fff, 0xa064]);
    const instance = parseDicom(
      writeDicom(
        imageElements({
          rows: 1,
          columns: 5,
          bitsAllocated: 16,
          bitsStored: 12,
          pixelRepresentation: signed,
          pixelData: stored,
        }),
      ),
    );
    expect(Array.from(getFrame(instance, 0).pixels)).toEqual(expected);
  });

  test('honours a high bit that is not bitsStored - 1', () => {
    const instance = parseDicom(
      writeDicom(
        imageElements({
          rows: 1,
          columns: 2,
          bitsAllocated: 16,
          bitsStored: 12,
          highBit: 15,
          pixelData: Uint16Array.from([0xabc0, 0x0010]),
        }),
      ),
    );
    expect(Array.from(getFrame(instance, 0).pixels)).toEqual([0xabc, 0x001]);
  });

  test('unpacks 1-bit frames that do not start on a byte boundary', () => {
    // Three 3×3 frames: 27 bits, least significant bit first.
    const bits = ramp(27, (i) => (i % 3 === 0 || i === 13 ? 1 : 0));
    const packed = new Uint8Array(4);
    bits.forEach((b, i) => {
      packed[i >> 3]! |= b << (i & 7);
    });
    const instance = parseDicom(
      writeDicom(
        imageElements({ rows: 3, columns: 3, bitsAllocated: 1, numberOfFrames: 3, pixelData: packed }),
      ),
    );
    for (let f = 0; f < 3; f++) {
      expect(Array.from(getFrame(instance, f).pixels)).toEqual(bits.slice(f * 9, f * 9 + 9));
    }
  });

  const rgb = ramp(2 * 3 * 3, (i) => (i * 13) % 256);
  const planar = Uint8Array.from([0, 1, 2].flatMap((s) => ramp(6, (p) => rgb[p * 3 + s]!)));
  test.each(
    NATIVE.flatMap((encoding) => [
      { encoding, planarConfiguration: 0, data: Uint8Array.from(rgb) },
      { encoding, planarConfiguration: 1, data: planar },
    ]),
  )(
    'RGB planar configuration $planarConfiguration, $encoding → interleaved',
    ({ encoding, planarConfiguration, data }) => {
      const instance = parseDicom(
        writeDicom(
          imageElements({
            rows: 2,
            columns: 3,
            bitsAllocated: 8,
            samplesPerPixel: 3,
            planarConfiguration,
            pixelData: data,
          }),
          { encoding },
        ),
      );
      const frame = getFrame(instance, 0);
      expect(frame.photometricInterpretation).toBe('RGB');
      expect(Array.from(frame.pixels)).toEqual(rgb);
    },
  );

  test('expands YBR_FULL_422 to YBR_FULL', () => {
    // Two pixel pairs: Y1 Y2 Cb Cr each.
    const stored = Uint8Array.from([10, 20, 100, 200, 30, 40, 110, 210]);
    const instance = parseDicom(
      writeDicom(
        imageElements({
          rows: 1,
          columns: 4,
          bitsAllocated: 8,
          samplesPerPixel: 3,
          photometricInterpretation: 'YBR_FULL_422',
          pixelData: stored,
        }),
      ),
    );
    const frame = getFrame(instance, 0);
    expect(frame.photometricInterpretation).toBe('YBR_FULL');
    expect(Array.from(frame.pixels)).toEqual([10, 100, 200, 20, 100, 200, 30, 110, 210, 40, 110, 210]);
  });

  test('pixel data shorter than the frames it must hold → CORRUPT_FILE', () => {
    const instance = parseDicom(
      writeDicom(
        imageElements({
          rows: 4,
          columns: 4,
          bitsAllocated: 16,
          numberOfFrames: 2,
          pixelData: new Uint16Array(20),
        }),
      ),
    );
    expect(getFrame(instance, 0).pixels).toHaveLength(16);
    expectAppError(
      () => getFrame(instance, 1),
      'CORRUPT_FILE',
      /holds 40 bytes; frame 2 of 2 needs bytes 32 to 64/,
    );
  });

  test('a file cut inside its pixel data → CORRUPT_FILE on the frame, not on the header', () => {
    const bytes = writeDicom(
      imageElements({ rows: 8, columns: 8, bitsAllocated: 16, pixelData: new Uint16Array(64) }),
    );
    const instance = parseDicom(bytes.subarray(0, bytes.length - 30));
    expectAppError(() => getFrame(instance, 0), 'CORRUPT_FILE', /\(7FE0,0010\)/);
  });

  test.each([-1, 1, 0.5])('frame %s of a single-frame image → VALIDATION_FAILED', (frameIndex) => {
    const instance = parseDicom(
      writeDicom(imageElements({ rows: 1, columns: 2, bitsAllocated: 8, pixelData: new Uint8Array(2) })),
    );
    expectAppError(() => getFrame(instance, frameIndex), 'VALIDATION_FAILED');
  });

  test('an object without pixel data → UNSUPPORTED_FORMAT', () => {
    const instance = parseDicom(
      writeDicom([{ tag: 0x00080016, vr: 'UI', value: '1.2.840.10008.5.1.4.1.1.88.22' }]),
    );
    expectAppError(() => getFrame(instance, 0), 'UNSUPPORTED_FORMAT', /no pixel data/);
  });
});

describe('getFrame, RLE Lossless', () => {
  const rleCases = [
    {
      name: '8-bit mono',
      bits: 8,
      spp: 1,
      signed: 0,
      values: ramp(48, (i) => (i < 20 ? 7 : (i * 37) % 256)),
    },
    {
      name: '16-bit signed',
      bits: 16,
      spp: 1,
      signed: 1,
      values: ramp(48, (i) => (i < 10 ? -1024 : i * 611 - 9000)),
    },
    {
      name: '8-bit RGB',
      bits: 8,
      spp: 3,
      signed: 0,
      values: ramp(144, (i) => (i % 7 === 0 ? 255 : (i * 11) % 256)),
    },
    { name: '16-bit RGB', bits: 16, spp: 3, signed: 0, values: ramp(144, (i) => (i * 1999) % 65536) },
  ];
  test.each(rleCases)('$name round-trips', ({ bits, spp, signed, values }) => {
    const samples = typed(bits, signed, values);
    const instance = parseDicom(
      writeDicom(
        imageElements({
          rows: 6,
          columns: 8,
          bitsAllocated: bits,
          samplesPerPixel: spp,
          pixelRepresentation: signed,
          pixelData: { fragments: [encodeRleFrame(samples, spp, bits)] },
        }),
        { transferSyntaxUid: RLE },
      ),
    );
    expect(Array.from(getFrame(instance, 0).pixels)).toEqual(values);
  });

  test.each([
    { table: 'with a basic offset table', withTable: true },
    { table: 'without a basic offset table', withTable: false },
  ])('multi-frame, $table', ({ withTable }) => {
    const frames = [0, 1, 2].map((f) => Uint8Array.from(ramp(16, (i) => (i * (f + 3)) % 256)));
    const encoded = frames.map((f) => encodeRleFrame(f, 1, 8));
    const offsets = [0, encoded[0]!.length + 8, encoded[0]!.length + encoded[1]!.length + 16];
    const instance = parseDicom(
      writeDicom(
        imageElements({
          rows: 4,
          columns: 4,
          bitsAllocated: 8,
          numberOfFrames: 3,
          pixelData: { fragments: encoded, offsetTable: withTable ? offsets : [] },
        }),
        { transferSyntaxUid: RLE },
      ),
    );
    frames.forEach((f, k) => {
      expect(Array.from(getFrame(instance, k).pixels)).toEqual(Array.from(f));
    });
  });

  test('a frame split over fragments is joined before decoding', () => {
    const values = ramp(64, (i) => (i * 5) % 256);
    const encoded = encodeRleFrame(Uint8Array.from(values), 1, 8);
    const cut = 70;
    const instance = parseDicom(
      writeDicom(
        imageElements({
          rows: 8,
          columns: 8,
          bitsAllocated: 8,
          pixelData: { fragments: [encoded.subarray(0, cut), encoded.subarray(cut)] },
        }),
        { transferSyntaxUid: RLE },
      ),
    );
    expect(Array.from(getFrame(instance, 0).pixels)).toEqual(values);
  });

  function rleInstance(frame: Uint8Array) {
    return parseDicom(
      writeDicom(
        imageElements({ rows: 4, columns: 4, bitsAllocated: 8, pixelData: { fragments: [frame] } }),
        {
          transferSyntaxUid: RLE,
        },
      ),
    );
  }

  test('a header with the wrong segment count → CORRUPT_FILE', () => {
    const frame = encodeRleFrame(new Uint8Array(16), 1, 8).slice();
    frame[0] = 3;
    expectAppError(() => getFrame(rleInstance(frame), 0), 'CORRUPT_FILE', /lists 3 segments; 1 expected/);
  });

  test('a segment that decodes short → CORRUPT_FILE', () => {
    const frame = encodeRleFrame(Uint8Array.from(ramp(16, (i) => i * 3)), 1, 8);
    expectAppError(
      () => getFrame(rleInstance(frame.subarray(0, 72)), 0),
      'CORRUPT_FILE',
      /decodes to \d+ bytes; 16 expected/,
    );
  });

  test('segment offsets outside the frame → CORRUPT_FILE', () => {
    const frame = encodeRleFrame(new Uint8Array(16), 1, 8).slice();
    new DataView(frame.buffer).setUint32(4, 9999, true);
    expectAppError(() => getFrame(rleInstance(frame), 0), 'CORRUPT_FILE', /outside/);
  });
});

describe('getEncapsulatedFrame', () => {
  const jpegLike = (n: number, filler: number) =>
    Uint8Array.from([0xff, 0xd8, ...new Array(n).fill(filler), 0xff, 0xd9]);

  test('finds frames split over fragments by their JPEG end markers when there is no offset table', () => {
    const a = jpegLike(10, 1);
    const b = jpegLike(20, 2);
    const instance = parseDicom(
      writeDicom(
        imageElements({
          rows: 2,
          columns: 2,
          bitsAllocated: 8,
          numberOfFrames: 2,
          pixelData: {
            fragments: [a.subarray(0, 6), a.subarray(6), b.subarray(0, 4), b.subarray(4, 10), b.subarray(10)],
          },
        }),
        { transferSyntaxUid: '1.2.840.10008.1.2.4.50' },
      ),
    );
    expect(Array.from(getEncapsulatedFrame(instance, 0))).toEqual(Array.from(a));
    expect(Array.from(getEncapsulatedFrame(instance, 1))).toEqual(Array.from(b));
  });

  test('uses the basic offset table when there is one', () => {
    const a = jpegLike(4, 1);
    const b = jpegLike(6, 2);
    // Fragment items: a[0..4) (12 bytes with header), a[4..) (12), b (18).
    const instance = parseDicom(
      writeDicom(
        imageElements({
          rows: 2,
          columns: 2,
          bitsAllocated: 8,
          numberOfFrames: 2,
          pixelData: { fragments: [a.subarray(0, 4), a.subarray(4), b], offsetTable: [0, 24] },
        }),
        { transferSyntaxUid: '1.2.840.10008.1.2.4.50' },
      ),
    );
    expect(Array.from(getEncapsulatedFrame(instance, 0))).toEqual(Array.from(a));
    expect(Array.from(getEncapsulatedFrame(instance, 1))).toEqual(Array.from(b));
  });

  test('fragments that cannot be told apart → CORRUPT_FILE', () => {
    const instance = parseDicom(
      writeDicom(
        imageElements({
          rows: 2,
          columns: 2,
          bitsAllocated: 8,
          numberOfFrames: 3,
          pixelData: { fragments: [Uint8Array.of(1, 2), Uint8Array.of(3, 4)] },
        }),
        { transferSyntaxUid: '1.2.840.10008.1.2.4.90' },
      ),
    );
    expectAppError(
      () => getEncapsulatedFrame(instance, 1),
      'CORRUPT_FILE',
      /2 pixel data fragments hold frame 2 of 3/,
    );
  });

  test.each([
    { uid: '1.2.840.10008.1.2.4.90', name: 'JPEG 2000 (Lossless Only)' },
    { uid: '1.2.840.10008.1.2.4.80', name: 'JPEG-LS Lossless' },
    { uid: '1.2.840.10008.1.2.8.1', name: 'Deflated Image Frame Compression' },
  ])('getFrame on $name → UNSUPPORTED_FORMAT naming the syntax', ({ uid, name }) => {
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
    expect(instance.transferSyntaxUid).toBe(uid);
    expectAppError(
      () => getFrame(instance, 0),
      'UNSUPPORTED_FORMAT',
      new RegExp(`${uid.replace(/\./g, '\\.')} \\(${name.replace(/[()]/g, '\\$&')}\\) cannot be decoded yet`),
    );
  });
});

describe('asRgbJpeg', () => {
  // SOI, SOF0 with three components, SOS selecting them, two bytes of entropy-coded data (one stuffed 0xFF), EOI.
  const sof = [0xff, 0xc0, 0, 17, 8, 0, 1, 0, 1, 3, 1, 0x11, 0, 2, 0x11, 0, 3, 0x11, 0];
  const sos = [0xff, 0xda, 0, 12, 3, 1, 0, 2, 0x11, 3, 0x11, 0, 63, 0];
  const body = [0x12, 0xff, 0x00, 0x34, 0xff, 0xd9];
  const jfif = [0xff, 0xe0, 0, 16, 0x4a, 0x46, 0x49, 0x46, 0, 1, 1, 0, 0, 1, 0, 1, 0, 0];

  test('renames the components R, G, B in the frame and scan headers', () => {
    const jpeg = Uint8Array.from([0xff, 0xd8, ...sof, ...sos, ...body]);
    const patched = asRgbJpeg(jpeg);
    expect([patched[12], patched[15], patched[18]]).toEqual([0x52, 0x47, 0x42]);
    const scan = 2 + sof.length;
    expect([patched[scan + 5], patched[scan + 7], patched[scan + 9]]).toEqual([0x52, 0x47, 0x42]);
    expect(Array.from(patched.subarray(scan + sos.length))).toEqual(body);
    expect(jpeg[12]).toBe(1);
  });

  test('leaves a JPEG with a JFIF marker alone', () => {
    const jpeg = Uint8Array.from([0xff, 0xd8, ...jfif, ...sof, ...sos, ...body]);
    expect(asRgbJpeg(jpeg)).toBe(jpeg);
  });

  test.each([
    { what: 'not a JPEG', bytes: Uint8Array.of(1, 2, 3, 4, 5) },
    { what: 'cut inside a segment', bytes: Uint8Array.from([0xff, 0xd8, ...sof.slice(0, 10)]) },
  ])('returns $what unchanged', ({ bytes }) => {
    expect(asRgbJpeg(bytes)).toBe(bytes);
  });
});
