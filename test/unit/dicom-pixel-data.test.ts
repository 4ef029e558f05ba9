import { deflateRawSync } from 'node:zlib';
import { describe, expect, test } from 'vitest';
import { AppError } from '../../src/errors.js';
import { asRgbJpeg } from '../../src/formats/dicom/as-rgb-jpeg.js';
import { expandSegmentedLut, readPaletteColorLut } from '../../src/formats/dicom/palette.js';
import { parseDicom } from '../../src/formats/dicom/parse-dicom.js';
import {
  type DecodedSamples,
  describePixels,
  frameFromDecodedSamples,
  getEncapsulatedFrame,
  getFrame,
  readPixelAspect,
} from '../../src/formats/dicom/pixel-data.js';
import {
  type DicomEncoding,
  encodeRleFrame,
  type ImageSpec,
  imageElements,
  segmentedPaletteImage,
  type WriteOptions,
  writeDicom,
} from '../helpers/dicom-writer.js';

const RLE = '1.2.840.10008.1.2.5';
const NATIVE: DicomEncoding[] = ['implicit-le', 'explicit-le', 'explicit-be', 'deflated'];

function ramp(length: number, make: (i: number) => number): number[] {
  return Array.from({ length }, (_, i) => make(i));
}

/** An image written as a Part 10 file and parsed back. */
function imageInstance(spec: ImageSpec, options?: WriteOptions) {
  return parseDicom(writeDicom(imageElements(spec), options));
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
    const instance = imageInstance(spec, { encoding });
    expect(Array.from(getFrame(instance, 0).pixels)).toEqual(values.slice(0, 12));
    const second = getFrame(instance, 1);
    expect(Array.from(second.pixels)).toEqual(values.slice(12));
    expect(second).toMatchObject({ rows: 3, columns: 4, samplesPerPixel: 1, bitsAllocated: bits });
  });

  test.each([
    { bitsAllocated: 12, bitsStored: 12, signed: 0, values: [0, 1, 2047, 4095, 100, 3000] },
    { bitsAllocated: 12, bitsStored: 10, signed: 1, values: [0, 1, 511, -512, -1, 100] },
    { bitsAllocated: 24, bitsStored: 24, signed: 0, values: [0, 1, 0xabcdef, 0xffffff, 70000, 12] },
    { bitsAllocated: 10, bitsStored: 10, signed: 0, values: [1023, 0, 512, 7, 1, 1000] },
  ])(
    'packed BitsAllocated $bitsAllocated (stored $bitsStored, signed=$signed), big and little endian, 2 frames',
    ({ bitsAllocated, bitsStored, signed, values }) => {
      // One little-endian bit stream across both frames, each sample lowest bit first.
      const all = [...values, ...[...values].reverse()];
      const stream = new Uint8Array(Math.ceil((all.length * bitsAllocated) / 16) * 2);
      all.forEach((v, i) => {
        for (let b = 0; b < bitsAllocated; b++) {
          const bit = i * bitsAllocated + b;
          if (b < bitsStored && (v >> b) & 1) stream[bit >> 3]! |= 1 << (bit & 7);
        }
      });
      for (const encoding of ['explicit-le', 'explicit-be'] as const) {
        // Big endian OW holds the same stream with each 16-bit word's bytes swapped.
        const bytes =
          encoding === 'explicit-le' ? stream : stream.map((_, i) => stream[i % 2 === 0 ? i + 1 : i - 1]!);
        const instance = imageInstance(
          {
            rows: 2,
            columns: 3,
            bitsAllocated,
            bitsStored,
            pixelRepresentation: signed,
            numberOfFrames: 2,
            extra: [{ tag: 0x7fe00010, vr: 'OW', value: bytes, raw: true }],
          },
          { encoding },
        );
        expect(Array.from(getFrame(instance, 0).pixels)).toEqual(all.slice(0, 6));
        expect(Array.from(getFrame(instance, 1).pixels)).toEqual(all.slice(6));
      }
    },
  );

  test('packed samples are refused inside a compressed transfer syntax', () => {
    const instance = imageInstance(
      { rows: 1, columns: 2, bitsAllocated: 12, pixelData: { fragments: [new Uint8Array(4)] } },
      { transferSyntaxUid: '1.2.840.10008.1.2.4.70' },
    );
    expect(() => getFrame(instance, 0)).toThrowError(expect.objectContaining({ code: 'UNSUPPORTED_FORMAT' }));
  });

  test.each([
    { signed: 0, expected: [0, 1, 2047, 4095, 100] },
    { signed: 1, expected: [0, 1, 2047, -1, 100] },
  ])('masks 12 stored bits out of 16 (signed=$signed)', ({ signed, expected }) => {
    // High nibble holds overlay bits that must not leak into the values.
    const stored = Uint16Array.from([0xf000, 0x1001, 0x27ff, 0x0fff, 0xa064]);
    const instance = imageInstance({
      rows: 1,
      columns: 5,
      bitsAllocated: 16,
      bitsStored: 12,
      pixelRepresentation: signed,
      pixelData: stored,
    });
    expect(Array.from(getFrame(instance, 0).pixels)).toEqual(expected);
  });

  test.each([
    { bitsAllocated: 16, bitsStored: 12, dirty: 0x8000, at: 0 },
    { bitsAllocated: 16, bitsStored: 12, dirty: 0x8000, at: 3 },
    // Past the last whole four-byte word.
    { bitsAllocated: 16, bitsStored: 12, dirty: 0x1000, at: 4 },
    { bitsAllocated: 8, bitsStored: 7, dirty: 0x80, at: 1 },
    { bitsAllocated: 8, bitsStored: 7, dirty: 0x80, at: 6 },
  ])(
    'one stray high bit among clean samples is masked ($bitsAllocated bits, sample $at)',
    ({ bitsAllocated, bitsStored, dirty, at }) => {
      const values = [1, 2, 3, 4, 5, 6, 7].slice(0, bitsAllocated === 16 ? 5 : 7);
      const stored = values.map((v, i) => (i === at ? v | dirty : v));
      // Two lengths of Patient ID put the pixel data at offsets 2 apart: the check reads aligned samples four
      // bytes at a time and others one by one, and both must catch the stray bit.
      const offsets = ['AB', 'ABCD'].map((patientId) => {
        const instance = imageInstance({
          rows: 1,
          columns: values.length,
          bitsAllocated,
          bitsStored,
          pixelData: bitsAllocated === 16 ? Uint16Array.from(stored) : Uint8Array.from(stored),
          extra: [{ tag: 0x00100020, vr: 'LO', value: patientId }],
        });
        expect(Array.from(getFrame(instance, 0).pixels), patientId).toEqual(values);
        const { byteOffset } = instance.dataSet.byteArray;
        return (byteOffset + instance.dataSet.elements.x7fe00010!.dataOffset) % 4;
      });
      expect(offsets).toContain(0);
    },
  );

  test('honours a high bit that is not bitsStored - 1', () => {
    const instance = imageInstance({
      rows: 1,
      columns: 2,
      bitsAllocated: 16,
      bitsStored: 12,
      highBit: 15,
      pixelData: Uint16Array.from([0xabc0, 0x0010]),
    });
    expect(Array.from(getFrame(instance, 0).pixels)).toEqual([0xabc, 0x001]);
  });

  test('unpacks 1-bit frames that do not start on a byte boundary', () => {
    // Three 3×3 frames: 27 bits, least significant bit first.
    const bits = ramp(27, (i) => (i % 3 === 0 || i === 13 ? 1 : 0));
    const packed = new Uint8Array(4);
    bits.forEach((b, i) => {
      packed[i >> 3]! |= b << (i & 7);
    });
    const instance = imageInstance({
      rows: 3,
      columns: 3,
      bitsAllocated: 1,
      numberOfFrames: 3,
      pixelData: packed,
    });
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
      const instance = imageInstance(
        {
          rows: 2,
          columns: 3,
          bitsAllocated: 8,
          samplesPerPixel: 3,
          planarConfiguration,
          pixelData: data,
        },
        { encoding },
      );
      const frame = getFrame(instance, 0);
      expect(frame.photometricInterpretation).toBe('RGB');
      expect(Array.from(frame.pixels)).toEqual(rgb);
    },
  );

  test('expands YBR_FULL_422 to YBR_FULL', () => {
    // Two pixel pairs: Y1 Y2 Cb Cr each.
    const stored = Uint8Array.from([10, 20, 100, 200, 30, 40, 110, 210]);
    const instance = imageInstance({
      rows: 1,
      columns: 4,
      bitsAllocated: 8,
      samplesPerPixel: 3,
      photometricInterpretation: 'YBR_FULL_422',
      pixelData: stored,
    });
    const frame = getFrame(instance, 0);
    expect(frame.photometricInterpretation).toBe('YBR_FULL');
    expect(Array.from(frame.pixels)).toEqual([10, 100, 200, 20, 100, 200, 30, 110, 210, 40, 110, 210]);
  });

  test('pixel data shorter than the frames it must hold → CORRUPT_FILE', () => {
    const instance = imageInstance({
      rows: 4,
      columns: 4,
      bitsAllocated: 16,
      numberOfFrames: 2,
      pixelData: new Uint16Array(20),
    });
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
    const instance = imageInstance({ rows: 1, columns: 2, bitsAllocated: 8, pixelData: new Uint8Array(2) });
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
    const instance = imageInstance(
      {
        rows: 6,
        columns: 8,
        bitsAllocated: bits,
        samplesPerPixel: spp,
        pixelRepresentation: signed,
        pixelData: { fragments: [encodeRleFrame(samples, spp, bits)] },
      },
      { transferSyntaxUid: RLE },
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
    const instance = imageInstance(
      {
        rows: 4,
        columns: 4,
        bitsAllocated: 8,
        numberOfFrames: 3,
        pixelData: { fragments: encoded, offsetTable: withTable ? offsets : [] },
      },
      { transferSyntaxUid: RLE },
    );
    frames.forEach((f, k) => {
      expect(Array.from(getFrame(instance, k).pixels)).toEqual(Array.from(f));
    });
  });

  test('a frame split over fragments is joined before decoding', () => {
    const values = ramp(64, (i) => (i * 5) % 256);
    const encoded = encodeRleFrame(Uint8Array.from(values), 1, 8);
    const cut = 70;
    const instance = imageInstance(
      {
        rows: 8,
        columns: 8,
        bitsAllocated: 8,
        pixelData: { fragments: [encoded.subarray(0, cut), encoded.subarray(cut)] },
      },
      { transferSyntaxUid: RLE },
    );
    expect(Array.from(getFrame(instance, 0).pixels)).toEqual(values);
  });

  function rleInstance(frame: Uint8Array) {
    return imageInstance(
      { rows: 4, columns: 4, bitsAllocated: 8, pixelData: { fragments: [frame] } },
      {
        transferSyntaxUid: RLE,
      },
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
    const instance = imageInstance(
      {
        rows: 2,
        columns: 2,
        bitsAllocated: 8,
        numberOfFrames: 2,
        pixelData: {
          fragments: [a.subarray(0, 6), a.subarray(6), b.subarray(0, 4), b.subarray(4, 10), b.subarray(10)],
        },
      },
      { transferSyntaxUid: '1.2.840.10008.1.2.4.50' },
    );
    expect(Array.from(getEncapsulatedFrame(instance, 0))).toEqual(Array.from(a));
    expect(Array.from(getEncapsulatedFrame(instance, 1))).toEqual(Array.from(b));
  });

  test('uses the basic offset table when there is one', () => {
    const a = jpegLike(4, 1);
    const b = jpegLike(6, 2);
    // Fragment items: a[0..4) (12 bytes with header), a[4..) (12), b (18).
    const instance = imageInstance(
      {
        rows: 2,
        columns: 2,
        bitsAllocated: 8,
        numberOfFrames: 2,
        pixelData: { fragments: [a.subarray(0, 4), a.subarray(4), b], offsetTable: [0, 24] },
      },
      { transferSyntaxUid: '1.2.840.10008.1.2.4.50' },
    );
    expect(Array.from(getEncapsulatedFrame(instance, 0))).toEqual(Array.from(a));
    expect(Array.from(getEncapsulatedFrame(instance, 1))).toEqual(Array.from(b));
  });

  test('fragments that cannot be told apart → CORRUPT_FILE', () => {
    const instance = imageInstance(
      {
        rows: 2,
        columns: 2,
        bitsAllocated: 8,
        numberOfFrames: 3,
        pixelData: { fragments: [Uint8Array.of(1, 2), Uint8Array.of(3, 4)] },
      },
      { transferSyntaxUid: '1.2.840.10008.1.2.4.90' },
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
  ])('getFrame on $name → UNSUPPORTED_FORMAT naming the syntax', ({ uid, name }) => {
    const instance = imageInstance(
      {
        rows: 2,
        columns: 2,
        bitsAllocated: 8,
        pixelData: { fragments: [Uint8Array.of(1, 2)] },
      },
      {
        transferSyntaxUid: uid,
      },
    );
    expect(instance.transferSyntaxUid).toBe(uid);
    expectAppError(
      () => getFrame(instance, 0),
      'UNSUPPORTED_FORMAT',
      new RegExp(`${uid.replace(/\./g, '\\.')} \\(${name.replace(/[()]/g, '\\$&')}\\) cannot be decoded yet`),
    );
  });
});

describe('getEncapsulatedFrame, Extended Offset Table', () => {
  test('64-bit offsets find frames of several fragments when the basic table is empty', () => {
    const frames = [
      [Uint8Array.of(1, 2, 3, 4), Uint8Array.of(5, 6)],
      [Uint8Array.of(7, 8), Uint8Array.of(9, 10, 11, 12)],
    ];
    // Offsets count from the first fragment's item tag: each fragment is an 8-byte item header and its bytes.
    const offsets = [0, 8 + 4 + 8 + 2];
    const table = new Uint8Array(16);
    for (const [k, o] of offsets.entries()) new DataView(table.buffer).setBigUint64(k * 8, BigInt(o), true);
    const spec = {
      rows: 2,
      columns: 3,
      bitsAllocated: 8,
      numberOfFrames: 2,
      pixelData: { fragments: frames.flat() },
    };
    const withTable = parseDicom(
      // Written as OB: dicom-parser 1.8 predates OV and would misread its length; the bytes are the same.
      writeDicom(imageElements({ ...spec, extra: [{ tag: 0x7fe00001, vr: 'OB', value: table }] }), {
        transferSyntaxUid: '1.2.840.10008.1.2.4.90',
      }),
    );
    expect(Array.from(getEncapsulatedFrame(withTable, 0))).toEqual([1, 2, 3, 4, 5, 6]);
    expect(Array.from(getEncapsulatedFrame(withTable, 1))).toEqual([7, 8, 9, 10, 11, 12]);
    const without = imageInstance(spec, { transferSyntaxUid: '1.2.840.10008.1.2.4.90' });
    expectAppError(() => getEncapsulatedFrame(without, 1), 'CORRUPT_FILE', /4 pixel data fragments/);
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

describe('getFrame, float pixel data', () => {
  const values = [-1.5, 0, 0.25, 1e6, Number.NaN, 3.75];
  test.each([
    { tag: 0x7fe00008, vr: 'OF', bits: 32, make: Float32Array, encoding: 'explicit-le' as const },
    { tag: 0x7fe00008, vr: 'OF', bits: 32, make: Float32Array, encoding: 'explicit-be' as const },
    { tag: 0x7fe00009, vr: 'OD', bits: 64, make: Float64Array, encoding: 'explicit-le' as const },
    { tag: 0x7fe00009, vr: 'OD', bits: 64, make: Float64Array, encoding: 'explicit-be' as const },
  ])('$vr ($encoding), 2 frames', ({ tag, vr, bits, make, encoding }) => {
    const frames = [values, values.map((v) => v * 2)];
    const instance = imageInstance(
      {
        rows: 2,
        columns: 3,
        bitsAllocated: bits,
        numberOfFrames: 2,
        extra: [{ tag, vr, value: make.from(frames.flat()) }],
      },
      { encoding },
    );
    expect(describePixels(instance)).toMatchObject({ sampleFormat: 'float', bitsAllocated: bits });
    for (const [k, expected] of frames.entries()) {
      const frame = getFrame(instance, k);
      expect(frame.pixels).toBeInstanceOf(make);
      expect(Array.from(frame.pixels)).toEqual(Array.from(make.from(expected)));
    }
  });

  test('float pixel data cut short → CORRUPT_FILE naming its tag', () => {
    const instance = imageInstance({
      rows: 4,
      columns: 4,
      bitsAllocated: 32,
      extra: [{ tag: 0x7fe00008, vr: 'OF', value: new Float32Array(8) }],
    });
    expectAppError(() => getFrame(instance, 0), 'CORRUPT_FILE', /\(7FE0,0008\) holds 32 bytes/);
  });
});

describe('getFrame, Deflated Image Frame Compression', () => {
  const DEFLATED_FRAMES = '1.2.840.10008.1.2.8.1';

  test.each([
    {
      name: '16-bit signed',
      bits: 16,
      signed: 1,
      frames: [ramp(6, (i) => i * 1000 - 3000), ramp(6, (i) => 5 - i * 7)],
    },
    { name: '8-bit', bits: 8, signed: 0, frames: [ramp(6, (i) => i * 40), ramp(6, (i) => 255 - i)] },
    // 1-bit frames are deflated separately, so each starts on a byte boundary.
    {
      name: '1-bit',
      bits: 1,
      signed: 0,
      frames: [
        [1, 0, 1, 1, 0, 1],
        [0, 1, 0, 0, 1, 1],
      ],
    },
  ])('$name, 2 frames', ({ bits, signed, frames }) => {
    const native = frames.map((f) => {
      if (bits === 1) {
        const packed = new Uint8Array(1);
        f.forEach((v, i) => {
          packed[0]! |= v << i;
        });
        return packed;
      }
      const t = typed(bits, signed, f);
      return new Uint8Array(t.buffer, t.byteOffset, t.byteLength);
    });
    const instance = imageInstance(
      {
        rows: 2,
        columns: 3,
        bitsAllocated: bits,
        pixelRepresentation: signed,
        numberOfFrames: 2,
        pixelData: { fragments: native.map((b) => new Uint8Array(deflateRawSync(b))) },
      },
      { transferSyntaxUid: DEFLATED_FRAMES },
    );
    for (const [k, expected] of frames.entries())
      expect(Array.from(getFrame(instance, k).pixels)).toEqual(expected);
  });

  test('a fragment that is not a deflate stream → CORRUPT_FILE', () => {
    const instance = imageInstance(
      {
        rows: 2,
        columns: 2,
        bitsAllocated: 8,
        pixelData: { fragments: [Uint8Array.of(0xff, 0xff)] },
      },
      { transferSyntaxUid: DEFLATED_FRAMES },
    );
    expectAppError(() => getFrame(instance, 0), 'CORRUPT_FILE', /deflated frame 1 of 1 cannot be inflated/);
  });
});

describe('frameFromDecodedSamples', () => {
  const pixel = (pixelRepresentation: number, bitsStored: number, highBit = bitsStored - 1) =>
    describePixels(
      imageInstance({
        rows: 1,
        columns: 3,
        bitsAllocated: 16,
        bitsStored,
        highBit,
        pixelRepresentation,
        pixelData: new Uint16Array(3),
      }),
    );
  const samples = (values: number[], over: Partial<DecodedSamples> = {}): DecodedSamples => ({
    data: new Uint8Array(Uint16Array.from(values).buffer),
    rows: 1,
    columns: 3,
    samplesPerPixel: 1,
    bytesPerSample: 2,
    planar: false,
    signed: false,
    precision: 16,
    photometricInterpretation: 'MONOCHROME2',
    ...over,
  });

  test.each<{
    name: string;
    values: number[];
    over: Partial<DecodedSamples>;
    pr: number;
    /** BitsStored (16 unless given) and HighBit (BitsStored − 1 unless given) of the pixel module. */
    stored?: number;
    highBit?: number;
    expected: number[];
  }>([
    {
      name: "unsigned codestream, PixelRepresentation 1, 13 bits: two's complement at the codestream precision",
      values: [0x1fff, 0x1000, 0x0fff],
      over: { precision: 13 },
      pr: 1,
      expected: [-1, -4096, 4095],
    },
    {
      name: 'unsigned codestream, PixelRepresentation 1, 16 bits',
      values: [0xffff, 0x8000, 5],
      over: {},
      pr: 1,
      expected: [-1, -32768, 5],
    },
    {
      name: 'a codestream that says signed is believed',
      values: [0xfffe, 2, 0x8001],
      over: { signed: true },
      pr: 0,
      expected: [-2, 2, -32767],
    },
    { name: 'unsigned stays unsigned', values: [0xffff, 1, 2], over: {}, pr: 0, expected: [65535, 1, 2] },
    {
      name: '16-bit codestream, 12 bits stored: the bits above HighBit (an overlay) are dropped',
      values: [0x8123, 0xafff, 5],
      over: {},
      pr: 0,
      stored: 12,
      expected: [0x123, 0xfff, 5],
    },
    {
      name: '16-bit codestream, 12 bits stored at HighBit 15: shifted down',
      values: [0xfff0, 0x1230, 0x0010],
      over: {},
      pr: 0,
      stored: 12,
      highBit: 15,
      expected: [0xfff, 0x123, 1],
    },
    {
      name: "16-bit codestream, PixelRepresentation 1, 12 bits stored: two's complement at BitsStored",
      values: [0x0fff, 0xf800, 0x07ff],
      over: {},
      pr: 1,
      stored: 12,
      expected: [-1, -2048, 2047],
    },
  ])('$name', ({ values, over, pr, expected, stored = 16, highBit }) => {
    const frame = frameFromDecodedSamples(samples(values, over), pixel(pr, stored, highBit));
    expect(Array.from(frame.pixels)).toEqual(expected);
    expect(frame.pixelRepresentation).toBe(expected.some((v) => v < 0) ? 1 : pr);
  });

  test('planar colour output is interleaved', () => {
    const rgbPixel = describePixels(
      imageInstance({
        rows: 1,
        columns: 2,
        bitsAllocated: 8,
        samplesPerPixel: 3,
        pixelData: new Uint8Array(6),
      }),
    );
    const frame = frameFromDecodedSamples(
      {
        data: Uint8Array.of(1, 2, 10, 20, 100, 200),
        rows: 1,
        columns: 2,
        samplesPerPixel: 3,
        bytesPerSample: 1,
        planar: true,
        signed: false,
        precision: 8,
        photometricInterpretation: 'RGB',
      },
      rgbPixel,
    );
    expect(Array.from(frame.pixels)).toEqual([1, 10, 100, 2, 20, 200]);
  });

  test('fewer bytes than the frame needs → CORRUPT_FILE', () => {
    expectAppError(
      () => frameFromDecodedSamples({ ...samples([1, 2, 3]), data: new Uint8Array(4) }, pixel(0, 16)),
      'CORRUPT_FILE',
      /produced 4 bytes for a 3×1 frame that needs 6/,
    );
  });
});

describe('readPixelAspect', () => {
  const base = { rows: 2, columns: 2, bitsAllocated: 8, pixelData: new Uint8Array(4) };
  const aspectOf = (extra: ImageSpec['extra']) => readPixelAspect(imageInstance({ ...base, extra }));

  test.each([
    {
      name: 'Pixel Spacing (row\\column)',
      extra: [{ tag: 0x00280030, vr: 'DS', value: '0.5\\0.25' }],
      expected: { vertical: 0.5, horizontal: 0.25 },
    },
    {
      name: 'Pixel Aspect Ratio',
      extra: [{ tag: 0x00280034, vr: 'IS', value: '4\\3' }],
      expected: { vertical: 4, horizontal: 3 },
    },
    {
      name: 'Imager Pixel Spacing',
      extra: [{ tag: 0x00181164, vr: 'DS', value: '0.2\\0.1' }],
      expected: { vertical: 0.2, horizontal: 0.1 },
    },
    {
      name: 'Pixel Spacing before Pixel Aspect Ratio',
      extra: [
        { tag: 0x00280030, vr: 'DS', value: '1\\1' },
        { tag: 0x00280034, vr: 'IS', value: '2\\1' },
      ],
      expected: { vertical: 1, horizontal: 1 },
    },
    {
      name: 'Pixel Measures of the shared functional groups',
      extra: [
        {
          tag: 0x52009229,
          vr: 'SQ',
          value: [
            [{ tag: 0x00289110, vr: 'SQ', value: [[{ tag: 0x00280030, vr: 'DS', value: '0.3\\0.6' }]] }],
          ],
        },
      ],
      expected: { vertical: 0.3, horizontal: 0.6 },
    },
    {
      name: 'one value means square',
      extra: [{ tag: 0x00280030, vr: 'DS', value: '0.7' }],
      expected: { vertical: 0.7, horizontal: 0.7 },
    },
    { name: 'nothing', extra: [], expected: undefined },
    { name: 'zero is ignored', extra: [{ tag: 0x00280030, vr: 'DS', value: '0\\0' }], expected: undefined },
    {
      name: 'a 100:1 ratio is taken for garbage',
      extra: [{ tag: 0x00280034, vr: 'IS', value: '100\\1' }],
      expected: undefined,
    },
  ] as const)('$name', ({ extra, expected }) => {
    expect(aspectOf(extra as unknown as ImageSpec['extra'])).toEqual(expected);
  });
});

describe('segmented palettes', () => {
  test.each([
    { name: 'discrete', words: [0, 3, 10, 20, 30], entries: 3, expected: [10, 20, 30] },
    {
      name: 'linear from the last value',
      words: [0, 1, 0, 1, 4, 100],
      entries: 5,
      expected: [0, 25, 50, 75, 100],
    },
    {
      name: 'indirect copies earlier segments',
      // Segments at words 0 (discrete 5, 6) and 4 (linear to 10 in 2); the indirect one copies both.
      words: [0, 2, 5, 6, 1, 2, 10, 2, 2, 0, 0],
      entries: 8,
      expected: [5, 6, 8, 10, 5, 6, 8, 10],
    },
    {
      name: 'a table that ends early repeats its last value',
      words: [0, 2, 7, 9],
      entries: 4,
      expected: [7, 9, 9, 9],
    },
  ])('$name', ({ words, entries, expected }) => {
    expect(Array.from(expandSegmentedLut(words, entries))).toEqual(expected);
  });

  test.each([
    { name: 'a first linear segment', words: [1, 2, 10] },
    { name: 'an indirect segment pointing at itself', words: [0, 1, 5, 2, 1, 2, 0] },
    { name: 'an unknown opcode', words: [0, 1, 5, 9, 1, 1] },
    { name: 'no entries at all', words: [] },
  ])('$name → CORRUPT_FILE', ({ words }) => {
    expectAppError(() => expandSegmentedLut(words, 8), 'CORRUPT_FILE');
  });

  test('readPaletteColorLut expands segmented red, green and blue tables', () => {
    const instance = imageInstance(
      segmentedPaletteImage(
        Uint16Array.of(0, 1, 0, 1, 255, 0xffff),
        Uint16Array.of(0, 256, ...new Array<number>(256).fill(0x8000)),
        Uint16Array.of(0, 1, 0xffff, 1, 255, 0),
      ),
    );
    const lut = readPaletteColorLut(instance);
    expect([lut.red[0], lut.red[128], lut.red[255]]).toEqual([0, 128, 255]);
    expect([lut.green[0], lut.green[255]]).toEqual([128, 128]);
    expect([lut.blue[0], lut.blue[255]]).toEqual([255, 0]);
  });
});
