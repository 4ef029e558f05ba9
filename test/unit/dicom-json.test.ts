import { describe, expect, test } from 'vitest';
import { bulkDataValue, dicomJson, isBulkDataPath } from '../../src/formats/dicom/attributes.js';
import { parseDicom } from '../../src/formats/dicom/parse-dicom.js';
import { type DicomEncoding, encodeIso2022, imageElements, writeDicom } from '../helpers/dicom-writer.js';

/**
 * The DICOM JSON Model (PS3.18 F.2) that WADO-RS metadata answers carry (attributes.ts, dicomJson), on files
 * written here in each encoding: a value per VR as F.2 gives it, the character set applied, the file meta, group
 * lengths and pixel data left out, and big-endian binary values put in little-endian order.
 */

const JAPANESE = '\\ISO 2022 IR 87';
const NAME = 'Yamada^Tarou=山田^太郎=やまだ^たろう';

function instance(encoding: DicomEncoding) {
  return parseDicom(
    writeDicom(
      imageElements({
        rows: 2,
        columns: 2,
        bitsAllocated: 16,
        pixelData: Uint16Array.of(1, 2, 3, 4),
        extra: [
          { tag: 0x00080005, vr: 'CS', value: JAPANESE },
          { tag: 0x00100010, vr: 'PN', value: encodeIso2022(NAME, JAPANESE) },
          { tag: 0x00080008, vr: 'CS', value: 'ORIGINAL\\\\AXIAL' },
          { tag: 0x00180050, vr: 'DS', value: '0.5\\1.25' },
          { tag: 0x00200013, vr: 'IS', value: '12' },
          { tag: 0x00081030, vr: 'LO', value: '' },
          { tag: 0x00209165, vr: 'AT', value: 0x00100010 },
          { tag: 0x00189219, vr: 'SV', value: new BigInt64Array([-(2n ** 60n)]) as unknown as Uint8Array },
          { tag: 0x00091010, vr: 'OW', value: Uint16Array.of(0x0102, 0x0304) },
          {
            tag: 0x00081115,
            vr: 'SQ',
            value: [
              [{ tag: 0x0020000e, vr: 'UI', value: '2.25.77' }],
              [{ tag: 0x00200011, vr: 'IS', value: '3' }],
            ],
          },
        ],
      }),
      { encoding },
    ),
  );
}

describe('dicomJson', () => {
  test.each(['explicit-le', 'explicit-be', 'implicit-le', 'deflated'] as const)(
    '%s: a value per VR as PS3.18 F.2 gives it',
    (encoding) => {
      const json = dicomJson(instance(encoding));
      expect(json['00100010']).toEqual({
        vr: 'PN',
        Value: [{ Alphabetic: 'Yamada^Tarou', Ideographic: '山田^太郎', Phonetic: 'やまだ^たろう' }],
      });
      expect(json['00080008']).toEqual({ vr: 'CS', Value: ['ORIGINAL', null, 'AXIAL'] });
      expect(json['00180050']).toEqual({ vr: 'DS', Value: [0.5, 1.25] });
      expect(json['00200013']).toEqual({ vr: 'IS', Value: [12] });
      expect(json['00081030']).toEqual({ vr: 'LO' });
      expect(json['00280010']).toEqual({ vr: 'US', Value: [2] });
      expect(json['00209165']).toEqual({ vr: 'AT', Value: ['00100010'] });
      // Without VRs in the file the dictionary's applies, and dcmjs's predates SV.
      if (encoding !== 'implicit-le')
        expect(json['00189219']).toEqual({ vr: 'SV', Value: [(-(2n ** 60n)).toString()] });
      expect(json['00081115']).toEqual({
        vr: 'SQ',
        Value: [{ '0020000E': { vr: 'UI', Value: ['2.25.77'] } }, { '00200011': { vr: 'IS', Value: [3] } }],
      });
      // Binary values inline, little endian whatever the file's byte order (implicit VR: UN, bytes as stored).
      const ow = json['00091010']!;
      if (encoding === 'implicit-le') expect(ow.vr).toBe('UN');
      else expect(ow).toEqual({ vr: 'OW', InlineBinary: Buffer.from([2, 1, 4, 3]).toString('base64') });
      expect(json['7FE00010']).toBeUndefined();
      expect(Object.keys(json).filter((k) => k.startsWith('0002') || k.endsWith('0000'))).toEqual([]);
    },
  );

  test('binary values above the inline limit are left out, or named by a BulkDataURI when one is given', () => {
    const json = dicomJson(instance('explicit-le'), { maxInlineBinary: 2 });
    expect(json['00091010']).toBeUndefined();
    expect(json['00280011']).toEqual({ vr: 'US', Value: [2] });
    const named = dicomJson(instance('explicit-le'), { maxInlineBinary: 2, bulkDataUri: (p) => `bulk:${p}` });
    expect(named['00091010']).toEqual({ vr: 'OW', BulkDataURI: 'bulk:00091010' });
    expect(named['7FE00010']).toEqual({ vr: 'OW', BulkDataURI: 'bulk:7FE00010' });
    expect(named['00081115']!.Value).toHaveLength(2);
  });

  test.each(['explicit-le', 'explicit-be'] as const)(
    '%s: a bulk data path finds its value at any depth, little endian',
    (encoding) => {
      const icon = Uint16Array.of(0x0a0b, 0x0c0d);
      const parsed = parseDicom(
        writeDicom(
          imageElements({
            rows: 1,
            columns: 1,
            bitsAllocated: 16,
            pixelData: Uint16Array.of(7),
            extra: [
              {
                tag: 0x00880200,
                vr: 'SQ',
                value: [[], [{ tag: 0x7fe00010, vr: 'OW', value: icon }]],
              },
              { tag: 0x00091010, vr: 'OW', value: Uint16Array.of(0x0102) },
            ],
          }),
          { encoding },
        ),
      );
      const json = dicomJson(parsed, { maxInlineBinary: 0, bulkDataUri: (p) => p });
      const items = json['00880200']!.Value as Array<Record<string, { BulkDataURI?: string }>>;
      expect(items[1]!['7FE00010']!.BulkDataURI).toBe('00880200/1/7FE00010');
      expect(bulkDataValue(parsed, '00880200/1/7FE00010')).toEqual({
        vr: 'OW',
        bytes: new Uint8Array([0x0b, 0x0a, 0x0d, 0x0c]),
      });
      expect(bulkDataValue(parsed, '00091010')?.bytes).toEqual(new Uint8Array([2, 1]));
      // No such item, a number, a text value, a sequence, a path that is not one.
      expect(bulkDataValue(parsed, '00880200/2/7FE00010')).toBeUndefined();
      expect(bulkDataValue(parsed, '00280010')).toBeUndefined();
      expect(bulkDataValue(parsed, '00080060')).toBeUndefined();
      expect(bulkDataValue(parsed, '00880200')).toBeUndefined();
      for (const path of ['7FE0', '00880200/', '00880200/01/7FE00010', '../00100010', '00880200/x/7FE00010'])
        expect(isBulkDataPath(path)).toBe(false);
    },
  );
});
