import { readFileSync } from 'node:fs';
import { describe, expect, test } from 'vitest';
import { dicomAttributes } from '../../src/formats/dicom/attributes.js';
import { parseDicom } from '../../src/formats/dicom/parse-dicom.js';
import { corpusPath, hasCorpus, loadTruth } from '../corpus.js';
import {
  type DicomElement,
  type DicomEncoding,
  encodeText,
  imageElements,
  padText,
  writeDicom,
} from '../helpers/dicom-writer.js';

const BASE: DicomElement[] = [
  { tag: 0x00080016, vr: 'UI', value: '1.2.840.10008.5.1.4.1.1.7' },
  { tag: 0x00080018, vr: 'UI', value: '2.25.4242' },
];

function attributesOf(
  extra: DicomElement[],
  encoding: DicomEncoding = 'explicit-le',
  includePatient = false,
) {
  return dicomAttributes(parseDicom(writeDicom([...BASE, ...extra], { encoding })), { includePatient });
}

const ENCODINGS: DicomEncoding[] = ['explicit-le', 'implicit-le', 'explicit-be', 'deflated'];

// Public attributes only: in implicit VR their VR comes from the dictionary, so every encoding must agree.
const VALUE_CASES: Array<{ keyword: string; element: DicomElement; expected: unknown }> = [
  { keyword: 'Rows', element: { tag: 0x00280010, vr: 'US', value: 512 }, expected: 512 },
  {
    keyword: 'AcquisitionMatrix',
    element: { tag: 0x00181310, vr: 'US', value: [256, 0, 0, 134] },
    expected: [256, 0, 0, 134],
  },
  { keyword: 'TagAngleSecondAxis', element: { tag: 0x00189219, vr: 'SS', value: -90 }, expected: -90 },
  {
    keyword: 'SimpleFrameList',
    element: { tag: 0x00081161, vr: 'UL', value: [1, 4000000000] },
    expected: [1, 4000000000],
  },
  { keyword: 'ReferencePixelX0', element: { tag: 0x00186020, vr: 'SL', value: -123456 }, expected: -123456 },
  {
    keyword: 'RecommendedDisplayFrameRateInFloat',
    element: { tag: 0x00089459, vr: 'FL', value: 0.5 },
    expected: 0.5,
  },
  {
    keyword: 'RealWorldValueLUTData',
    element: { tag: 0x00409212, vr: 'FD', value: [-1.25, 3] },
    expected: [-1.25, 3],
  },
  {
    keyword: 'FrameIncrementPointer',
    element: { tag: 0x00280009, vr: 'AT', value: 0x00181063 },
    expected: '0018,1063',
  },
  { keyword: 'InstanceNumber', element: { tag: 0x00200013, vr: 'IS', value: ' 7' }, expected: 7 },
  {
    keyword: 'ReferencedFrameNumber',
    element: { tag: 0x00081160, vr: 'IS', value: '1\\-2\\30' },
    expected: [1, -2, 30],
  },
  {
    keyword: 'PixelSpacing',
    element: { tag: 0x00280030, vr: 'DS', value: '0.5\\-1.25E2' },
    expected: [0.5, -125],
  },
  { keyword: 'SliceThickness', element: { tag: 0x00180050, vr: 'DS', value: 'abc' }, expected: 'abc' },
  {
    keyword: 'ImageType',
    element: { tag: 0x00080008, vr: 'CS', value: 'ORIGINAL\\PRIMARY\\\\AXIAL' },
    expected: ['ORIGINAL', 'PRIMARY', '', 'AXIAL'],
  },
  { keyword: 'Modality', element: { tag: 0x00080060, vr: 'CS', value: 'CT' }, expected: 'CT' },
  {
    keyword: 'FrameOfReferenceUID',
    element: { tag: 0x00200052, vr: 'UI', value: '1.2.3' },
    expected: '1.2.3',
  },
  { keyword: 'StudyDate', element: { tag: 0x00080020, vr: 'DA', value: '20240131' }, expected: '20240131' },
  {
    keyword: 'InstitutionName',
    element: { tag: 0x00080080, vr: 'LO', value: ' Clinic A ' },
    expected: 'Clinic A',
  },
  {
    keyword: 'ImageComments',
    element: { tag: 0x00204000, vr: 'LT', value: '  indented\\kept\r\nline 2  ' },
    expected: '  indented\\kept\r\nline 2',
  },
  {
    keyword: 'ReferringPhysicianName',
    element: { tag: 0x00080090, vr: 'PN', value: 'Doe^Jane^^Dr.' },
    expected: 'Doe^Jane^^Dr.',
  },
  { keyword: 'StationName', element: { tag: 0x00081010, vr: 'SH', value: '' }, expected: null },
  { keyword: 'IconImageSequence', element: { tag: 0x00880200, vr: 'SQ', value: [] }, expected: [] },
  {
    keyword: 'ReferencedImageSequence',
    element: {
      tag: 0x00081140,
      vr: 'SQ',
      value: [
        [
          { tag: 0x00081150, vr: 'UI', value: '1.2.840.10008.5.1.4.1.1.2' },
          { tag: 0x00081155, vr: 'UI', value: '2.25.9' },
          { tag: 0x00081160, vr: 'IS', value: '3' },
        ],
        [{ tag: 0x00081155, vr: 'UI', value: '2.25.10' }],
      ],
    },
    expected: [
      {
        ReferencedSOPClassUID: '1.2.840.10008.5.1.4.1.1.2',
        ReferencedSOPInstanceUID: '2.25.9',
        ReferencedFrameNumber: 3,
      },
      { ReferencedSOPInstanceUID: '2.25.10' },
    ],
  },
  {
    keyword: 'LargestImagePixelValue',
    element: { tag: 0x00280107, vr: 'US', value: 4095 },
    expected: 4095,
  },
];

describe('dicomAttributes values by VR', () => {
  test.each(ENCODINGS.flatMap((encoding) => VALUE_CASES.map((c) => ({ ...c, encoding }))))(
    '$keyword ($element.vr) in $encoding',
    ({ keyword, element, expected, encoding }) => {
      expect(attributesOf([element], encoding)[keyword]).toEqual(expected);
    },
  );

  test.each([
    { vr: 'OB', value: Uint8Array.of(1, 2, 3, 4), expected: { vr: 'OB', length: 4 } },
    { vr: 'OW', value: new Uint16Array([1, 2, 3]), expected: { vr: 'OW', length: 6 } },
    { vr: 'OF', value: new Uint8Array(8), expected: { vr: 'OF', length: 8 } },
    { vr: 'UN', value: Uint8Array.of(9, 9), expected: { vr: 'UN', length: 2 } },
  ])('binary $vr is described, not printed', ({ vr, value, expected }) => {
    expect(attributesOf([{ tag: 0x00091010, vr, value }])['0009,1010']).toEqual(expected);
  });

  // Written in implicit VR: dicom-parser 1.8 reads explicit VR SV and UV headers with a 2-byte length.
  test('SV and UV print 64-bit integers, as strings beyond 2^53', () => {
    const sv = Uint8Array.from(Buffer.from('feffffffffffffff', 'hex'));
    const uv = Uint8Array.from(Buffer.from('ffffffffffffffff0500000000000000', 'hex'));
    const attributes = attributesOf(
      [
        { tag: 0x00720082, vr: 'SV', value: sv, raw: true },
        { tag: 0x00720083, vr: 'UV', value: uv, raw: true },
      ],
      'implicit-le',
    );
    expect(attributes.SelectorSVValue).toBe(-2);
    expect(attributes.SelectorUVValue).toEqual(['18446744073709551615', 5]);
  });

  test('private and unknown public tags are keyed GGGG,EEEE; private text keeps its explicit VR', () => {
    const attributes = attributesOf([
      { tag: 0x00090010, vr: 'LO', value: 'ACME 1.0' },
      { tag: 0x00091001, vr: 'DS', value: '2.5' },
      { tag: 0x0008ffee, vr: 'LO', value: 'unknown' },
    ]);
    expect(attributes['0009,0010']).toBe('ACME 1.0');
    expect(attributes['0009,1001']).toBe(2.5);
    expect(attributes['0008,FFEE']).toBe('unknown');
  });

  test('a private tag in implicit VR has no VR to go by and is described as UN', () => {
    const attributes = attributesOf([{ tag: 0x00091001, vr: 'LO', value: 'ACME' }], 'implicit-le');
    expect(attributes['0009,1001']).toEqual({ vr: 'UN', length: 4 });
  });

  test('repeating groups: the first overlay takes the keyword, the next keeps its tag', () => {
    const attributes = attributesOf([
      { tag: 0x60000010, vr: 'US', value: 4 },
      { tag: 0x60020010, vr: 'US', value: 8 },
    ]);
    expect(attributes.OverlayRows).toBe(4);
    expect(attributes['6002,0010']).toBe(8);
  });

  test('US or SS attributes follow Pixel Representation in implicit VR', () => {
    const pixels = imageElements({
      rows: 1,
      columns: 1,
      bitsAllocated: 16,
      pixelRepresentation: 1,
      pixelData: new Int16Array([-5]),
      extra: [{ tag: 0x00280106, vr: 'SS', value: -5 }],
    });
    const attributes = dicomAttributes(parseDicom(writeDicom(pixels, { encoding: 'implicit-le' })));
    expect(attributes.SmallestImagePixelValue).toBe(-5);
    expect(attributes.PixelData).toEqual({ vr: 'OW', length: 2 });
  });

  test('TransferSyntaxUID comes first, from the file meta', () => {
    const attributes = attributesOf([], 'explicit-be');
    expect(Object.keys(attributes)[0]).toBe('TransferSyntaxUID');
    expect(attributes.TransferSyntaxUID).toBe('1.2.840.10008.1.2.2');
  });

  test('encapsulated pixel data is described by VR and length', () => {
    const elements = imageElements({
      rows: 2,
      columns: 2,
      bitsAllocated: 8,
      pixelData: { fragments: [Uint8Array.of(1, 2, 3, 4)] },
    });
    const bytes = writeDicom(elements, { transferSyntaxUid: '1.2.840.10008.1.2.5' });
    const pixelData = dicomAttributes(parseDicom(bytes)).PixelData as { vr: string; length: number };
    expect(pixelData.vr).toBe('OB');
    expect(pixelData.length).toBeGreaterThan(4);
  });
});

describe('character sets in attributes', () => {
  test('text VRs use the Specific Character Set, other VRs do not', () => {
    const attributes = attributesOf([
      { tag: 0x00080005, vr: 'CS', value: 'ISO_IR 144' },
      { tag: 0x00081030, vr: 'LO', value: padText(encodeText('Грудная клетка', 'iso-8859-5')) },
      { tag: 0x00080090, vr: 'PN', value: padText(encodeText('Иванов^Пётр', 'iso-8859-5')) },
      // A CS value is the default repertoire whatever the set: the byte 0xB8 is not 'И' there.
      { tag: 0x00080064, vr: 'CS', value: Uint8Array.of(0x57, 0xb8) },
    ]);
    expect(attributes.StudyDescription).toBe('Грудная клетка');
    expect(attributes.ReferringPhysicianName).toBe('Иванов^Пётр');
    expect(attributes.ConversionType).toBe('W¸');
  });

  test('a sequence item may name its own character set; others inherit the enclosing one', () => {
    const attributes = attributesOf([
      { tag: 0x00080005, vr: 'CS', value: 'ISO_IR 100' },
      {
        tag: 0x00081110,
        vr: 'SQ',
        value: [
          [
            { tag: 0x00080005, vr: 'CS', value: 'ISO_IR 192' },
            { tag: 0x00081030, vr: 'LO', value: padText(encodeText('山田', 'utf-8')) },
          ],
          [{ tag: 0x00081030, vr: 'LO', value: padText(encodeText('Gaëlle', 'iso-8859-1')) }],
        ],
      },
    ]);
    expect(attributes.ReferencedStudySequence).toEqual([
      { SpecificCharacterSet: 'ISO_IR 192', StudyDescription: '山田' },
      { StudyDescription: 'Gaëlle' },
    ]);
  });

  test('bad bytes give U+FFFD and a warning naming the attribute path, not its text', () => {
    const warnings: string[] = [];
    const instance = parseDicom(
      writeDicom([
        ...BASE,
        { tag: 0x00080005, vr: 'CS', value: 'ISO_IR 192' },
        {
          tag: 0x00081110,
          vr: 'SQ',
          value: [[{ tag: 0x00081030, vr: 'LO', value: padText(Uint8Array.of(0x41, 0xff)) }]],
        },
      ]),
    );
    const attributes = dicomAttributes(instance, { onWarning: (m) => warnings.push(m) });
    expect(attributes.ReferencedStudySequence).toEqual([{ StudyDescription: 'A\uFFFD' }]);
    expect(warnings).toEqual([
      '(0008,1110)[0](0008,1030): bytes 0–1 are not valid utf-8; replaced with U+FFFD',
    ]);
  });
});

describe('patient attributes', () => {
  const elements: DicomElement[] = [
    { tag: 0x00100010, vr: 'PN', value: 'Secret^Patient' },
    { tag: 0x00100020, vr: 'LO', value: 'PID-123' },
    { tag: 0x00100030, vr: 'DA', value: '19700101' },
    { tag: 0x00101000, vr: 'LO', value: 'OTHER-9' },
    { tag: 0x00380010, vr: 'LO', value: 'ADM-5' },
    {
      tag: 0x00081120,
      vr: 'SQ',
      value: [
        [
          { tag: 0x00100020, vr: 'LO', value: 'PID-NESTED' },
          { tag: 0x00081155, vr: 'UI', value: '2.25.1' },
        ],
      ],
    },
  ];

  test('are left out by default, at every depth', () => {
    const attributes = attributesOf(elements);
    const json = JSON.stringify(attributes);
    for (const secret of ['Secret', 'PID-', '19700101', 'OTHER-9', 'ADM-5'])
      expect(json).not.toContain(secret);
    expect(attributes.ReferencedPatientSequence).toEqual([{ ReferencedSOPInstanceUID: '2.25.1' }]);
  });

  test('are included on request', () => {
    const attributes = attributesOf(elements, 'explicit-le', true);
    expect(attributes).toMatchObject({
      PatientName: 'Secret^Patient',
      PatientID: 'PID-123',
      PatientBirthDate: '19700101',
      OtherPatientIDs: 'OTHER-9',
      AdmissionID: 'ADM-5',
      ReferencedPatientSequence: [{ PatientID: 'PID-NESTED', ReferencedSOPInstanceUID: '2.25.1' }],
    });
  });
});

describe('limits', () => {
  const nested = (depth: number): DicomElement => ({
    tag: 0x00400275,
    vr: 'SQ',
    value: [[depth > 1 ? nested(depth - 1) : { tag: 0x00401001, vr: 'SH', value: 'RP1' }]],
  });

  test('sequences deeper than maxDepth are summarised', () => {
    const instance = parseDicom(writeDicom([...BASE, nested(4)]));
    const attributes = dicomAttributes(instance, { maxDepth: 2 });
    expect(attributes.RequestAttributesSequence).toEqual([
      { RequestAttributesSequence: [{ RequestAttributesSequence: { vr: 'SQ', items: 1 } }] },
    ]);
    const whole = dicomAttributes(instance);
    expect(JSON.stringify(whole)).toContain('"RequestedProcedureID":"RP1"');
  });

  test('maxValueLength cuts long text and summarises long lists', () => {
    const attributes = dicomAttributes(
      parseDicom(
        writeDicom([
          ...BASE,
          { tag: 0x00204000, vr: 'LT', value: 'x'.repeat(50) },
          { tag: 0x00081160, vr: 'IS', value: Array.from({ length: 20 }, (_, i) => i).join('\\') },
          { tag: 0x00181310, vr: 'US', value: new Array(20).fill(1) },
        ]),
      ),
      { maxValueLength: 10 },
    );
    expect(attributes.ImageComments).toBe(`${'x'.repeat(10)}…`);
    expect(attributes.ReferencedFrameNumber).toEqual({ vr: 'IS', length: 50 });
    expect(attributes.AcquisitionMatrix).toEqual({ vr: 'US', length: 40 });
  });

  test('pixel data cut short by the end of the file is described, not read', () => {
    const bytes = writeDicom(
      imageElements({ rows: 4, columns: 4, bitsAllocated: 16, pixelData: new Uint16Array(16) }),
    );
    const instance = parseDicom(bytes.subarray(0, bytes.length - 10));
    expect(instance.pixelDataTruncated).toBe(true);
    expect(dicomAttributes(instance).PixelData).toEqual({ vr: 'OW', length: 32 });
  });
});

// Attributes TRUTH.json records from dcmdump, compared as text (dcmdump prints DS as written, so numbers are
// compared as numbers).
const TRUTH_KEYWORDS = [
  'TransferSyntaxUID',
  'SOPClassUID',
  'Modality',
  'Rows',
  'Columns',
  'NumberOfFrames',
  'PhotometricInterpretation',
  'BitsAllocated',
  'BitsStored',
  'PixelRepresentation',
  'SamplesPerPixel',
  'PlanarConfiguration',
  'RescaleSlope',
  'RescaleIntercept',
  'ImageType',
  'TotalPixelMatrixColumns',
  'TotalPixelMatrixRows',
];

describe.runIf(hasCorpus)('keywords and values match TRUTH.json over the corpus', () => {
  const truth = loadTruth();
  const files = Object.entries(truth).filter(([, t]) => t.kind === 'dicom');

  test('the corpus has DICOM files with the four core attributes', () => {
    expect(
      files.filter(([, t]) => ['Rows', 'Columns', 'Modality', 'SOPClassUID'].every((k) => k in t)).length,
    ).toBeGreaterThan(20);
  });

  test.each(files)('%s', (rel, t) => {
    const attributes = dicomAttributes(parseDicom(new Uint8Array(readFileSync(corpusPath(rel)))));
    for (const keyword of TRUTH_KEYWORDS) {
      const expected = t[keyword];
      if (typeof expected !== 'string') continue;
      const actual = attributes[keyword];
      const text = Array.isArray(actual) ? actual.join('\\') : String(actual);
      if (typeof actual === 'number') expect([keyword, actual]).toEqual([keyword, Number(expected)]);
      else expect([keyword, text]).toEqual([keyword, expected]);
    }
  });
});
