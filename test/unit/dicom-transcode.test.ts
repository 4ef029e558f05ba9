import { deflateRawSync } from 'node:zlib';
import sharp from 'sharp';
import { afterAll, describe, expect, test } from 'vitest';
import { parseDicom } from '../../src/formats/dicom/parse-dicom.js';
import { getFrame } from '../../src/formats/dicom/pixel-data.js';
import { isPart10ExplicitLittleEndian, toExplicitLittleEndian } from '../../src/formats/dicom/transcode.js';
import { closeDecodePool } from '../../src/imaging/decode-pool.js';
import { transcodeToExplicitLittleEndian } from '../../src/imaging/transcode-dicom.js';
import { imageElements, writeDicom } from '../helpers/dicom-writer.js';

/**
 * The Explicit VR Little Endian rewrite (formats/dicom/transcode.ts, imaging/transcode-dicom.ts) on files written
 * here, for what the corpus test (conformance/dicom-explicit-little-endian) cannot pin down: big-endian values
 * inside sequences, VRs given to an implicit data set, the attributes decoding changes, and 1-bit frames packed
 * across frame boundaries.
 */

afterAll(closeDecodePool);

async function transcode(bytes: Uint8Array): Promise<Uint8Array> {
  const copy = await transcodeToExplicitLittleEndian(bytes, parseDicom(bytes).transferSyntaxUid);
  const parts: Uint8Array[] = [];
  for await (const c of copy.chunks) parts.push(c);
  const out = Buffer.concat(parts);
  expect(out.length).toBe(copy.length);
  return out;
}

const u16 = (instance: ReturnType<typeof parseDicom>, key: string) => instance.dataSet.uint16(key);
const text = (instance: ReturnType<typeof parseDicom>, key: string) => instance.dataSet.string(key);

describe('Explicit VR Little Endian rewrite', () => {
  test('big endian: numbers at the top level, inside sequences and in 16-bit pixel data are swapped', async () => {
    const pixels = Uint16Array.of(0x0102, 0x0304, 0xfffe, 0x8000);
    const elements = imageElements({
      rows: 2,
      columns: 2,
      bitsAllocated: 16,
      pixelData: pixels,
      extra: [
        { tag: 0x00181310, vr: 'US', value: [0x1234, 0x5678, 0x9abc, 0xdef0] },
        {
          tag: 0x00082112,
          vr: 'SQ',
          value: [
            [
              { tag: 0x00181050, vr: 'DS', value: '0.5' },
              { tag: 0x00209057, vr: 'UL', value: 0x01020304 },
            ],
          ],
        },
      ],
    });
    const input = writeDicom(elements, { encoding: 'explicit-be' });
    expect(parseDicom(input).transferSyntaxUid).toBe('1.2.840.10008.1.2.2');
    const copy = parseDicom(await transcode(input));
    expect(copy.transferSyntaxUid).toBe('1.2.840.10008.1.2.1');
    expect([0, 1, 2, 3].map((i) => copy.dataSet.uint16('x00181310', i))).toEqual([
      0x1234, 0x5678, 0x9abc, 0xdef0,
    ]);
    const item = copy.dataSet.elements.x00082112!.items![0]!.dataSet!;
    expect(item.uint32('x00209057')).toBe(0x01020304);
    expect(item.string('x00181050')).toBe('0.5');
    expect(Array.from(getFrame(copy, 0).pixels)).toEqual(Array.from(pixels));
  });

  test('implicit VR: the copy carries the data dictionary VRs, UN for a tag it does not know', async () => {
    const elements = imageElements({
      rows: 1,
      columns: 2,
      bitsAllocated: 8,
      pixelData: Uint8Array.of(7, 9),
      extra: [
        { tag: 0x00100010, vr: 'PN', value: 'Doe^Jane' },
        { tag: 0x00091010, vr: 'LO', value: 'private' },
        { tag: 0x00091011, vr: 'OB', value: Uint8Array.of(1, 2) },
      ],
    });
    const input = writeDicom(elements, { encoding: 'implicit-le' });
    const out = await transcode(input);
    const copy = parseDicom(out);
    expect(copy.transferSyntaxUid).toBe('1.2.840.10008.1.2.1');
    expect(copy.dataSet.elements.x00100010!.vr).toBe('PN');
    expect(copy.dataSet.elements.x00280010!.vr).toBe('US');
    expect(copy.dataSet.elements.x00091011!.vr).toBe('UN');
    expect(copy.dataSet.elements.x7fe00010!.vr).toBe('OB');
    expect(text(copy, 'x00100010')).toBe('Doe^Jane');
    expect(Array.from(getFrame(copy, 0).pixels)).toEqual([7, 9]);
    expect(isPart10ExplicitLittleEndian(out)).toBe(true);
  });

  test('a JPEG baseline YBR_FULL_422 instance becomes native RGB, lossy, interleaved, without its offset table', async () => {
    const rgb = Buffer.alloc(16 * 8 * 3);
    for (let i = 0; i < 16 * 8; i++) rgb.set([i * 2, 255 - i * 2, 128], i * 3);
    const jpeg = await sharp(rgb, { raw: { width: 16, height: 8, channels: 3 } })
      .jpeg({ quality: 95 })
      .toBuffer();
    const elements = imageElements({
      rows: 8,
      columns: 16,
      bitsAllocated: 8,
      samplesPerPixel: 3,
      planarConfiguration: 0,
      photometricInterpretation: 'YBR_FULL_422',
      pixelData: { fragments: [new Uint8Array(jpeg)] },
      extra: [
        { tag: 0x7fe00001, vr: 'OV', value: new Uint8Array(8) },
        {
          tag: 0x7fe00002,
          vr: 'OV',
          value: Uint8Array.of(jpeg.length & 0xff, jpeg.length >> 8, 0, 0, 0, 0, 0, 0),
        },
      ],
    });
    const input = writeDicom(elements, { transferSyntaxUid: '1.2.840.10008.1.2.4.50' });
    const original = parseDicom(input);
    const copy = parseDicom(await transcode(input));
    expect(copy.transferSyntaxUid).toBe('1.2.840.10008.1.2.1');
    expect(text(copy, 'x00280004')).toBe('RGB');
    expect(u16(copy, 'x00280006')).toBe(0);
    expect(text(copy, 'x00282110')).toBe('01');
    expect(text(copy, 'x00282114')).toBe('ISO_10918_1');
    expect(copy.dataSet.elements.x7fe00001).toBeUndefined();
    expect(copy.dataSet.elements.x7fe00010!.length).toBe(16 * 8 * 3);
    const before = await import('../../src/imaging/render-dicom.js').then((m) =>
      m.decodeDicomFrame(original, 0),
    );
    expect(Buffer.from(getFrame(copy, 0).pixels as Uint8Array)).toEqual(
      Buffer.from(before.pixels as Uint8Array),
    );
  });

  test('1-bit deflated frames are packed back to bits, running on across frame boundaries', async () => {
    // Three 3×3 frames: 27 bits, so frames 2 and 3 start inside a byte.
    const frames = [
      [1, 0, 1, 0, 1, 0, 1, 0, 1],
      [0, 1, 1, 0, 0, 1, 1, 0, 0],
      [1, 1, 1, 0, 0, 0, 1, 1, 1],
    ];
    const elements = imageElements({
      rows: 3,
      columns: 3,
      bitsAllocated: 1,
      numberOfFrames: 3,
      // Deflated Image Frame Compression deflates each frame on its own, from a byte boundary.
      pixelData: {
        fragments: frames.map((f) => {
          const packed = new Uint8Array(2);
          f.forEach((bit, i) => {
            if (bit) packed[i >> 3]! |= 1 << (i & 7);
          });
          return new Uint8Array(deflateRawSync(packed));
        }),
      },
    });
    const input = writeDicom(elements, { transferSyntaxUid: '1.2.840.10008.1.2.8.1' });
    const original = parseDicom(input);
    const copy = parseDicom(await transcode(input));
    expect(copy.transferSyntaxUid).toBe('1.2.840.10008.1.2.1');
    // 27 bits in 4 bytes, padded to even length.
    expect(copy.dataSet.elements.x7fe00010!.length).toBe(4);
    for (let i = 0; i < 3; i++) {
      expect(Array.from(getFrame(copy, i).pixels), `frame ${i + 1}`).toEqual(
        Array.from(getFrame(original, i).pixels),
      );
    }
  });

  test('a data set that reads as explicit VR only by accident (an element whose VR is no VR) is refused', () => {
    const bytes = new Uint8Array(64);
    // (0008,0005) with VR "\0C" and a length: what a data set read one byte off its start looks like.
    bytes.set([0x08, 0x00, 0x05, 0x00, 0x00, 0x43, 0x04, 0x00, 0x41, 0x42, 0x43, 0x44], 0);
    bytes.set([0x08, 0x00, 0x60, 0x00, 0x43, 0x53, 0x02, 0x00, 0x43, 0x54], 12);
    expect(() => toExplicitLittleEndian(bytes.subarray(0, 22))).toThrow(/not a VR/);
  });
});
