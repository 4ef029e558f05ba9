import { describe, expect, test } from 'vitest';
import { AppError, isAppError } from '../../src/errors.js';
import { dicomJson } from '../../src/formats/dicom/attributes.js';
import { looksLikeDicom, parseDicom } from '../../src/formats/dicom/parse-dicom.js';
import { getFrame } from '../../src/formats/dicom/pixel-data.js';
import { renderDicomFrame } from '../../src/imaging/render-dicom.js';
import {
  type DicomElement,
  type DicomEncoding,
  imageElements,
  TRANSFER_SYNTAX_FOR,
  writeDicom,
} from '../helpers/dicom-writer.js';

const ENCODINGS: DicomEncoding[] = ['implicit-le', 'explicit-le', 'explicit-be', 'deflated'];

function ctElements(): DicomElement[] {
  const pixels = new Int16Array(8 * 6);
  for (let i = 0; i < pixels.length; i++) pixels[i] = i * 37 - 900;
  return imageElements({
    rows: 6,
    columns: 8,
    bitsAllocated: 16,
    pixelRepresentation: 1,
    pixelData: pixels,
    extra: [
      { tag: 0x00080005, vr: 'CS', value: 'ISO_IR 100' },
      { tag: 0x00080020, vr: 'DA', value: '20240131' },
      { tag: 0x00080030, vr: 'TM', value: '101500' },
      { tag: 0x00080050, vr: 'SH', value: 'ACC42' },
      { tag: 0x00080060, vr: 'CS', value: 'CT' },
      { tag: 0x00081030, vr: 'LO', value: 'Thorax' },
      { tag: 0x0008103e, vr: 'LO', value: 'Axial 5mm' },
      { tag: 0x00100010, vr: 'PN', value: 'Müller^Jürgen' },
      { tag: 0x00100020, vr: 'LO', value: 'PID-7' },
      { tag: 0x00100030, vr: 'DA', value: '19700101' },
      { tag: 0x00100040, vr: 'CS', value: 'M' },
      { tag: 0x00180015, vr: 'CS', value: 'CHEST' },
      { tag: 0x00200011, vr: 'IS', value: '3' },
      { tag: 0x00200013, vr: 'IS', value: '12' },
      { tag: 0x00281050, vr: 'DS', value: '40\\400' },
      { tag: 0x00281051, vr: 'DS', value: '400\\1500' },
      { tag: 0x00281052, vr: 'DS', value: '-1024' },
      { tag: 0x00281053, vr: 'DS', value: '1' },
    ],
  });
}

const layouts = [
  { layout: 'Part 10', preamble: true, meta: true },
  { layout: 'meta at byte 0', preamble: false, meta: true },
  { layout: 'bare data set', preamble: false, meta: false },
] as const;

const cases = ENCODINGS.flatMap((encoding) =>
  layouts
    // A deflated data set cannot be recognised without the meta that says so.
    .filter((l) => !(encoding === 'deflated' && !l.meta))
    .map((l) => ({ encoding, ...l })),
);

describe('parseDicom', () => {
  test.each(cases)('$encoding, $layout', ({ encoding, preamble, meta }) => {
    const bytes = writeDicom(ctElements(), { encoding, preamble, meta });
    const instance = parseDicom(bytes);
    expect(instance).toMatchObject({
      transferSyntaxUid: TRANSFER_SYNTAX_FOR[encoding],
      sopClassUid: '1.2.840.10008.5.1.4.1.1.7',
      sopInstanceUid: '2.25.1001',
      studyInstanceUid: '2.25.2002',
      seriesInstanceUid: '2.25.3003',
      modality: 'CT',
      studyDate: '20240131',
      studyTime: '101500',
      studyDescription: 'Thorax',
      seriesDescription: 'Axial 5mm',
      seriesNumber: 3,
      instanceNumber: 12,
      bodyPartExamined: 'CHEST',
      accessionNumber: 'ACC42',
      rows: 6,
      columns: 8,
      numberOfFrames: 1,
      photometricInterpretation: 'MONOCHROME2',
      bitsAllocated: 16,
      bitsStored: 16,
      highBit: 15,
      pixelRepresentation: 1,
      samplesPerPixel: 1,
      rescaleSlope: 1,
      rescaleIntercept: -1024,
      windowCenter: 40,
      windowWidth: 400,
      specificCharacterSet: 'ISO_IR 100',
      isWaveform: false,
      hasPixelData: true,
      pixelDataTruncated: false,
      hasFileMeta: meta,
      patient: { name: 'Müller^Jürgen', id: 'PID-7', birthDate: '19700101', sex: 'M' },
    });
  });

  test('keeps the data set out of serialised metadata', () => {
    const instance = parseDicom(writeDicom(ctElements()));
    expect(instance.dataSet.elements.x7fe00010).toBeDefined();
    const json = JSON.parse(JSON.stringify(instance));
    expect(json.dataSet).toBeUndefined();
    expect(json.patient.name).toBe('Müller^Jürgen');
  });

  test.each([
    { charset: 'ISO_IR 192', name: '山田^太郎=やまだ^たろう' },
    { charset: 'ISO_IR 192', name: 'Øyvind^Ødegård' },
    { charset: 'ISO_IR 100', name: 'Gaëlle^Loïc' },
    { charset: 'ISO-IR 100', name: 'Åsa^Nilsson' },
  ])('decodes a person name in $charset', ({ charset, name }) => {
    const utf8 = charset.endsWith('192');
    const bytes = utf8 ? new TextEncoder().encode(name) : Uint8Array.from(name, (c) => c.charCodeAt(0));
    const elements: DicomElement[] = [
      { tag: 0x00080005, vr: 'CS', value: charset },
      { tag: 0x00080016, vr: 'UI', value: '1.2.3' },
      { tag: 0x00100010, vr: 'PN', value: bytes.length % 2 ? Uint8Array.from([...bytes, 0x20]) : bytes },
    ];
    expect(parseDicom(writeDicom(elements)).patient.name).toBe(name);
  });

  test('reads enhanced multi-frame rescale and window from the shared functional groups', () => {
    const elements = imageElements({
      rows: 2,
      columns: 2,
      bitsAllocated: 16,
      numberOfFrames: 3,
      pixelData: new Uint16Array(12),
      extra: [
        {
          tag: 0x52009229,
          vr: 'SQ',
          value: [
            [
              {
                tag: 0x00289145,
                vr: 'SQ',
                value: [
                  [
                    { tag: 0x00281052, vr: 'DS', value: '-1000' },
                    { tag: 0x00281053, vr: 'DS', value: '2' },
                  ],
                ],
              },
              {
                tag: 0x00289132,
                vr: 'SQ',
                value: [
                  [
                    { tag: 0x00281050, vr: 'DS', value: '50' },
                    { tag: 0x00281051, vr: 'DS', value: '350' },
                  ],
                ],
              },
            ],
          ],
        },
      ],
    });
    const instance = parseDicom(writeDicom(elements, { encoding: 'implicit-le' }));
    expect(instance).toMatchObject({
      numberOfFrames: 3,
      rescaleIntercept: -1000,
      rescaleSlope: 2,
      windowCenter: 50,
      windowWidth: 350,
    });
  });

  test('flags waveforms, whole-slide matrices and objects without pixels', () => {
    const waveform = parseDicom(
      writeDicom([
        { tag: 0x00080016, vr: 'UI', value: '1.2.840.10008.5.1.4.1.1.9.1.1' },
        { tag: 0x00080060, vr: 'CS', value: 'ECG' },
        { tag: 0x54000100, vr: 'SQ', value: [[{ tag: 0x003a0005, vr: 'US', value: 12 }]] },
      ]),
    );
    expect(waveform).toMatchObject({ isWaveform: true, hasPixelData: false, modality: 'ECG' });

    const slide = parseDicom(
      writeDicom(
        imageElements({
          rows: 4,
          columns: 4,
          bitsAllocated: 8,
          pixelData: new Uint8Array(16),
          extra: [
            { tag: 0x00480006, vr: 'UL', value: 40960 },
            { tag: 0x00480007, vr: 'UL', value: 30720 },
          ],
        }),
        { encoding: 'explicit-be' },
      ),
    );
    expect(slide).toMatchObject({ totalPixelMatrixColumns: 40960, totalPixelMatrixRows: 30720 });
  });

  test('takes the leading integer of a malformed IS, as DCMTK does', () => {
    const elements = imageElements({
      rows: 1,
      columns: 1,
      bitsAllocated: 8,
      pixelData: new Uint8Array(2),
      extra: [{ tag: 0x00280008, vr: 'IS', value: '1A' }],
    });
    expect(parseDicom(writeDicom(elements)).numberOfFrames).toBe(1);
  });

  test('reads a file meta without transfer syntax by looking at the data set', () => {
    const bytes = writeDicom(ctElements(), { encoding: 'implicit-le', transferSyntaxUid: '' });
    const instance = parseDicom(bytes);
    expect(instance.transferSyntaxUid).toBe(TRANSFER_SYNTAX_FOR['implicit-le']);
    expect(instance.warnings.join(' ')).toMatch(/no transfer syntax/);
  });

  test('reads a data set whose encoding differs from the one its meta declares', () => {
    const bytes = writeDicom(ctElements(), {
      encoding: 'implicit-le',
      transferSyntaxUid: TRANSFER_SYNTAX_FOR['explicit-le'],
    });
    const instance = parseDicom(bytes);
    expect(instance.rows).toBe(6);
    expect(instance.warnings.join(' ')).toMatch(/read as implicit VR little endian/);
  });

  test('keeps the header of a file whose pixel data is cut short', () => {
    const bytes = writeDicom(ctElements());
    const instance = parseDicom(bytes.subarray(0, bytes.length - 10));
    expect(instance).toMatchObject({ rows: 6, hasPixelData: true, pixelDataTruncated: true });
  });

  test('a sequence missing its delimitation item inside a defined-length item is a warning, as at the top level', () => {
    // (0008,1115) SQ, defined length → item, defined length → (0008,1140) SQ, undefined length → one item, and the
    // file ends where (FFFE,E0DD) should be. dicom-parser gives that item's data set no warnings list, so this
    // used to throw "Cannot read properties of undefined (reading 'push')".
    const le = (n: number, bytes: number) => Array.from({ length: bytes }, (_, i) => (n >>> (8 * i)) & 0xff);
    const sequence = (tag: number, length: number) => [
      ...le(tag >>> 16, 2),
      ...le(tag, 2),
      0x53,
      0x51,
      0,
      0,
      ...le(length, 4),
    ];
    const item = (content: number[]) => [0xfe, 0xff, 0x00, 0xe0, ...le(content.length, 4), ...content];
    const uid = [...new TextEncoder().encode('1.2.3'), 0];
    const innerItem = item([0x08, 0x00, 0x50, 0x11, 0x55, 0x49, ...le(uid.length, 2), ...uid]);
    const innerSequence = [...sequence(0x00081140, 0xffffffff), ...innerItem];
    const outerItem = item(innerSequence);
    const outerSequence = [...sequence(0x00081115, outerItem.length), ...outerItem];
    const head = writeDicom([{ tag: 0x00080016, vr: 'UI', value: '1.2.840.10008.5.1.4.1.1.7' }]);
    const instance = parseDicom(Uint8Array.from([...head, ...outerSequence]));
    expect(instance.sopClassUid).toBe('1.2.840.10008.5.1.4.1.1.7');
    expect(instance.warnings.join('\n')).toMatch(/eof encountered before finding sequence delimitation/);
    expect(instance.dataSet.elements.x00081115?.items?.[0]?.dataSet?.elements.x00081140).toBeDefined();
  });
});

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

function pseudoRandomBytes(length: number, seed: number): Uint8Array {
  const out = new Uint8Array(length);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x & 0xff;
  }
  return out;
}

describe('parseDicom with the 64-bit VRs (OV, SV, UV)', () => {
  // dicom-parser predates them and reads their 32-bit length as a 16-bit one; an Extended Offset Table (OV) in
  // front of Pixel Data then loses the reader its place in the file.
  test.each(['explicit-le', 'explicit-be'] as const)(
    '%s: an Extended Offset Table, a 64-bit signed and an unsigned value leave the rest readable',
    (encoding) => {
      const pixels = Uint8Array.of(3, 1, 4, 1, 5, 9);
      const bytes = writeDicom(
        imageElements({
          rows: 2,
          columns: 3,
          bitsAllocated: 8,
          pixelData: pixels,
          extra: [
            { tag: 0x00189219, vr: 'SV', value: new BigInt64Array([-5n]) as unknown as Uint8Array },
            { tag: 0x0040a132, vr: 'UV', value: new Uint8Array(8).fill(1) },
            { tag: 0x7fe00001, vr: 'OV', value: new Uint8Array(8) },
          ],
        }),
        { encoding },
      );
      const instance = parseDicom(bytes);
      expect(instance.rows).toBe(2);
      expect(instance.dataSet.elements.x7fe00001?.length).toBe(8);
      expect(instance.dataSet.elements.x0040a132?.length).toBe(8);
      expect(instance.dataSet.elements.x00189219?.length).toBe(8);
      expect(instance.dataSet.elements.x7fe00010?.length).toBe(6);
    },
  );
});

describe('parseDicom on bad input', () => {
  test.each([
    { what: 'empty', bytes: new Uint8Array(0) },
    { what: 'a few bytes', bytes: Uint8Array.of(0x08, 0x00, 0x05) },
    {
      what: 'PNG signature',
      bytes: Uint8Array.from([137, 80, 78, 71, 13, 10, 26, 10, ...new Uint8Array(300)]),
    },
    {
      what: 'TIFF header',
      bytes: Uint8Array.from([0x49, 0x49, 0x2a, 0, 8, 0, 0, 0, ...pseudoRandomBytes(500, 3)]),
    },
    { what: 'text', bytes: new TextEncoder().encode('#ECG export\nI,II,III\n1,2,3\n'.repeat(20)) },
    ...[1, 2, 3, 4, 5, 6, 7, 8].map((seed) => ({
      what: `random bytes #${seed}`,
      bytes: pseudoRandomBytes(4096, seed),
    })),
  ])('$what → UNSUPPORTED_FORMAT', ({ bytes }) => {
    expectAppError(() => parseDicom(bytes), 'UNSUPPORTED_FORMAT');
  });

  test('an element running past the end of the file → CORRUPT_FILE naming tag and offset', () => {
    const bytes = writeDicom([
      { tag: 0x00080016, vr: 'UI', value: '1.2.3' },
      { tag: 0x00081030, vr: 'LO', value: 'a description' },
    ]);
    // Declare 200 bytes for the LO value, which is the last element.
    const patched = bytes.slice();
    const at = patched.length - 14 - 8;
    new DataView(patched.buffer).setUint16(at + 6, 200, true);
    expectAppError(
      () => parseDicom(patched),
      'CORRUPT_FILE',
      /\(0008,1030\) at offset \d+ declares 200 bytes/,
    );
  });

  /**
   * A file whose last element is a sequence of defined length, cut `cut` bytes before its end: the sequence and
   * its last item then declare more bytes than the file holds (as in a DICOMDIR whose last record came short).
   */
  function sequenceCutShort(
    encoding: 'explicit-le' | 'implicit-le' | 'explicit-be',
    cut: number,
  ): Uint8Array {
    const item = (n: number) => [
      { tag: 0x00081150, vr: 'UI', value: '1.2.840.10008.5.1.4.1.1.2' },
      { tag: 0x00081155, vr: 'UI', value: `1.2.3.${n}` },
    ];
    const bytes = writeDicom(
      [
        { tag: 0x00080016, vr: 'UI', value: '1.2.840.10008.5.1.4.1.1.7' },
        { tag: 0x00080018, vr: 'UI', value: '1.2.3' },
        { tag: 0x00080060, vr: 'CS', value: 'OT' },
        { tag: 0x00081115, vr: 'SQ', value: [item(1), item(2)] },
      ],
      { encoding },
    );
    const littleEndian = encoding !== 'explicit-be';
    const tag = littleEndian ? [0x08, 0x00, 0x15, 0x11] : [0x00, 0x08, 0x11, 0x15];
    let at = bytes.length - 1;
    while (!tag.every((b, i) => bytes[at + i] === b)) at--;
    const lengthAt = encoding === 'implicit-le' ? at + 4 : at + 8;
    // The writer ends the sequence with a delimitation item; give it its defined length instead.
    const withoutDelimiter = bytes.slice(0, bytes.length - 8);
    new DataView(withoutDelimiter.buffer).setUint32(
      lengthAt,
      withoutDelimiter.length - (lengthAt + 4),
      littleEndian,
    );
    return withoutDelimiter.slice(0, withoutDelimiter.length - cut);
  }

  test.each(['explicit-le', 'implicit-le', 'explicit-be'] as const)(
    '%s: a file ending on an element boundary inside a sequence item reads up to its end, as DCMTK does',
    (encoding) => {
      const whole = parseDicom(sequenceCutShort(encoding, 0));
      expect(whole.warnings.join('\n')).not.toMatch(/declares more bytes/);
      // Cut the last item's last element: (0008,1155) UI "1.2.3.2", an 8-byte header and 8 bytes of value.
      const instance = parseDicom(sequenceCutShort(encoding, 16));
      expect(instance.sopInstanceUid).toBe('1.2.3');
      const items = instance.dataSet.elements.x00081115?.items ?? [];
      expect(items.map((i) => i.dataSet?.string('x00081155'))).toEqual(['1.2.3.1', undefined]);
      expect(items[1]?.dataSet?.string('x00081150')).toBe('1.2.840.10008.5.1.4.1.1.2');
      expect(instance.warnings.join('\n')).toMatch(
        /sequence \(0008,1115\) at offset \d+ declares more bytes than the file holds/,
      );
    },
  );

  test.each(['explicit-le', 'implicit-le', 'explicit-be'] as const)(
    '%s: a file ending inside an element of a sequence item → CORRUPT_FILE naming the sequence',
    (encoding) => {
      expectAppError(
        () => parseDicom(sequenceCutShort(encoding, 5)),
        'CORRUPT_FILE',
        /\(0008,1115\) at offset \d+/,
      );
    },
  );

  test('a deflated data set that does not inflate → CORRUPT_FILE', () => {
    const bytes = writeDicom(ctElements(), { encoding: 'deflated' });
    // (0002,0000) at offset 132 holds the length of the rest of the meta.
    const metaEnd = 144 + new DataView(bytes.buffer).getUint32(140, true);
    bytes.fill(0xff, metaEnd, metaEnd + 16);
    expectAppError(
      () => parseDicom(bytes),
      'CORRUPT_FILE',
      /deflated data set at offset \d+ cannot be inflated/,
    );
  });

  test('sequences nested beyond the stack → CORRUPT_FILE', () => {
    // (0008,1115) SQ of undefined length holding an item of undefined length, fifty thousand times over.
    const level = [0x08, 0x00, 0x15, 0x11, 0x53, 0x51, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xfe, 0xff, 0x00, 0xe0];
    const unit = [...level, 0xff, 0xff, 0xff, 0xff];
    const nested = Uint8Array.from({ length: 50_000 * unit.length }, (_, i) => unit[i % unit.length]!);
    const header = writeDicom([{ tag: 0x00080016, vr: 'UI', value: '1.2' }]);
    const input = new Uint8Array(header.length + nested.length);
    input.set(header);
    input.set(nested, header.length);
    expectAppError(() => parseDicom(input), 'CORRUPT_FILE', /\(0008,1115\)/);
  });

  test.each(ENCODINGS)(
    '%s truncated at every 97th byte → AppError from parse or render, never a raw throw',
    async (encoding) => {
      const bytes = writeDicom(ctElements(), { encoding });
      for (let cut = 0; cut < bytes.length; cut += 97) {
        let error: unknown;
        try {
          await renderDicomFrame(parseDicom(bytes.subarray(0, cut)));
        } catch (err) {
          error = err;
        }
        expect(isAppError(error), `cut at ${cut}: ${String(error)}`).toBe(true);
        expect(['UNSUPPORTED_FORMAT', 'CORRUPT_FILE']).toContain((error as AppError).code);
      }
    },
  );

  test.each(ENCODINGS)(
    '%s with random bytes overwritten never throws anything but AppError',
    async (encoding) => {
      const original = writeDicom(ctElements(), { encoding });
      const noise = pseudoRandomBytes(4096, 99);
      for (let round = 0; round < 300; round++) {
        const bytes = original.slice();
        for (let k = 0; k < 4; k++) {
          const at = (noise[(round * 8 + k * 2) % noise.length]! * 257 + round * 31) % bytes.length;
          bytes[at] = noise[(round * 8 + k * 2 + 1) % noise.length]!;
        }
        try {
          await renderDicomFrame(parseDicom(bytes));
        } catch (err) {
          expect(isAppError(err), `round ${round}: ${String(err)}`).toBe(true);
        }
      }
    },
  );
});

describe('looksLikeDicom', () => {
  const withPreamble = writeDicom([{ tag: 0x00080016, vr: 'UI', value: '1.2' }]);
  test.each([
    { what: 'Part 10 prefix', head: withPreamble, expected: true },
    { what: 'meta at byte 0', head: writeDicom(ctElements(), { preamble: false }), expected: true },
    {
      what: 'explicit LE data set',
      head: writeDicom(ctElements(), { preamble: false, meta: false }),
      expected: true,
    },
    {
      what: 'implicit LE data set',
      head: writeDicom(ctElements(), { encoding: 'implicit-le', preamble: false, meta: false }),
      expected: true,
    },
    {
      what: 'explicit BE data set',
      head: writeDicom(ctElements(), { encoding: 'explicit-be', preamble: false, meta: false }),
      expected: true,
    },
    { what: 'TIFF', head: Uint8Array.from([0x49, 0x49, 0x2a, 0, 8, 0, 0, 0, 0, 0]), expected: false },
    { what: 'PNG', head: Uint8Array.from([137, 80, 78, 71, 13, 10, 26, 10]), expected: false },
    { what: 'random', head: pseudoRandomBytes(256, 5), expected: false },
    { what: 'too short', head: Uint8Array.of(8, 0), expected: false },
  ])('$what → $expected', ({ head, expected }) => {
    expect(looksLikeDicom(head.subarray(0, 256))).toBe(expected);
  });
});

describe('64-bit VRs inside sequences', () => {
  // dicom-parser reads OV, SV and UV with a 16-bit length even inside sequences, and loses its place after them.
  const item = (n: number) => [
    { tag: 0x00091010, vr: 'LO', value: 'TELEREAD TEST' },
    {
      tag: 0x00091011,
      vr: 'SV',
      value: new BigInt64Array([-(2n ** 60n) - BigInt(n)]) as unknown as Uint8Array,
    },
    {
      tag: 0x00091012,
      vr: 'UV',
      value: new BigUint64Array([2n ** 63n + BigInt(n)]) as unknown as Uint8Array,
    },
    { tag: 0x00091013, vr: 'OV', value: new BigUint64Array([1n, 2n, 3n]) as unknown as Uint8Array },
    {
      tag: 0x00081115,
      vr: 'SQ',
      value: [
        [{ tag: 0x00091014, vr: 'SV', value: new BigInt64Array([BigInt(n)]) as unknown as Uint8Array }],
      ],
    },
    { tag: 0x00200011, vr: 'IS', value: String(n) },
  ];
  test.each(['explicit-le', 'explicit-be'] as const)(
    '%s: the values are read, and so is everything after them',
    (encoding) => {
      const parsed = parseDicom(
        writeDicom(
          imageElements({
            rows: 1,
            columns: 1,
            bitsAllocated: 8,
            pixelData: Uint8Array.of(9),
            extra: [
              { tag: 0x00081140, vr: 'SQ', value: [item(1), item(2)] },
              { tag: 0x00200013, vr: 'IS', value: '12' },
            ],
          }),
          { encoding },
        ),
      );
      const json = dicomJson(parsed);
      const items = json['00081140']!.Value as Array<
        Record<string, { Value?: unknown[]; InlineBinary?: string }>
      >;
      expect(items).toHaveLength(2);
      for (const [i, it] of items.entries()) {
        const n = i + 1;
        expect(it['00091011']!.Value).toEqual([(-(2n ** 60n) - BigInt(n)).toString()]);
        expect(it['00091012']!.Value).toEqual([(2n ** 63n + BigInt(n)).toString()]);
        expect(Buffer.from(it['00091013']!.InlineBinary!, 'base64')).toEqual(
          Buffer.from(new BigUint64Array([1n, 2n, 3n]).buffer),
        );
        const nested = it['00081115']!.Value as Array<Record<string, { Value?: unknown[] }>>;
        expect(nested[0]!['00091014']!.Value).toEqual([n]);
        expect(it['00200011']!.Value).toEqual([n]);
      }
      expect(json['00200013']!.Value).toEqual([12]);
      expect(parsed.columns).toBe(1);
      expect(getFrame(parsed, 0).pixels[0]).toBe(9);
    },
  );
});
