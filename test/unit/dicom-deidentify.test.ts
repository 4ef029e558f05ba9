import type { DataSet } from 'dicom-parser';
import { describe, expect, test } from 'vitest';
import { createUuidDerivedUid } from '../../src/db/uid-remaps.js';
import { isAppError } from '../../src/errors.js';
import {
  BURNED_IN_ANNOTATION_WARNING,
  collectUids,
  type DeidentifyOptions,
  deidentifyDicom,
  TELEREAD_IMPLEMENTATION_CLASS_UID,
} from '../../src/formats/dicom/deidentify.js';
import {
  CONFIDENTIALITY_PROFILE,
  DEIDENTIFICATION_METHOD_CODES,
  resolveProfileAction,
} from '../../src/formats/dicom/deidentify-profile.js';
import { parseDicom } from '../../src/formats/dicom/parse-dicom.js';
import {
  type DicomElement,
  type DicomEncoding,
  imageElements,
  padText,
  TRANSFER_SYNTAX_FOR,
  writeDicom,
} from '../helpers/dicom-writer.js';

// ---- helpers ------------------------------------------------------------------------------------------------

const SHIFT = -45;
const PSEUDONYM = { patientName: 'CASE^0042', patientId: 'TR-0042' };

/** A UID map like the one uid_remaps keeps for a case: one replacement per original, shared by its instances. */
function uidMap() {
  const map = new Map<string, string>();
  const asked: string[] = [];
  const mapUid = (uid: string) => {
    asked.push(uid);
    let replacement = map.get(uid);
    if (!replacement) {
      replacement = createUuidDerivedUid();
      map.set(uid, replacement);
    }
    return replacement;
  };
  return { map, asked, mapUid };
}

function options(mapUid: (uid: string) => string, dateShiftDays = SHIFT): DeidentifyOptions {
  return { mapUid, pseudonym: PSEUDONYM, dateShiftDays };
}

const key = (tag: number) => `x${(tag >>> 0).toString(16).padStart(8, '0')}`;
const latin1 = new TextDecoder('latin1');

function raw(ds: DataSet, tag: number): Uint8Array | undefined {
  const el = ds.elements[key(tag)];
  if (!el) return undefined;
  return ds.byteArray.subarray(el.dataOffset, el.dataOffset + el.length);
}

function text(ds: DataSet, tag: number): string | undefined {
  const bytes = raw(ds, tag);
  return bytes === undefined ? undefined : latin1.decode(bytes).replace(/[\0 ]+$/, '');
}

function items(ds: DataSet, tag: number): DataSet[] {
  return (ds.elements[key(tag)]?.items ?? []).map((i) => i.dataSet as DataSet);
}

function parse(bytes: Uint8Array): DataSet {
  return parseDicom(bytes).dataSet;
}

/** Shifts YYYYMMDD by whole days, independently of the code under test. */
function shiftedDate(yyyymmdd: string, days: number): string {
  const d = new Date(`${yyyymmdd.slice(0, 4)}-${yyyymmdd.slice(4, 6)}-${yyyymmdd.slice(6, 8)}T00:00:00Z`);
  d.setUTCDate(d.getUTCDate() + days);
  return d.toISOString().slice(0, 10).replace(/-/g, '');
}

/** Where each identifying string is written below: none may be found anywhere in the output bytes. */
const IDENTIFYING = {
  patientName: 'DOEMAN^JOHNATHAN^Q',
  patientId: 'MRN9876543',
  issuer: 'StElsewhereMRN',
  otherIds: 'ALT-ID-1122',
  otherNames: 'DOEMAN^JACK',
  birthDate: '19800315',
  address: '12 Elm Street Springfield',
  phone: '+1 555 0100 2233',
  mother: 'SMITHSON^MARY',
  accession: 'ACC778899',
  studyId: 'STUDY4455',
  institution: 'Springfield General Hospital',
  institutionAddress: '1 Hospital Road Shelbyville',
  department: 'Radiology East Wing',
  station: 'CTSTATION7',
  referring: 'HOUSEMAN^GREGORY',
  performing: 'WILSONIAN^JAMES',
  reading: 'CUDDYSON^LISA',
  operator: 'CHASEMAN^ROBERT',
  recordPhysician: 'FOREMANN^ERIC',
  verifier: 'TAUBSON^CHRIS',
  verifyingOrg: 'Plainsboro Verification Org',
  referringIdInstitution: 'Princeton Plainsboro Teaching',
  requestedProcedureId: 'REQ5566',
  scheduledStepId: 'SPS3344',
  serial: 'SN-445566',
  privateText: 'PRIVATE-DOEMAN-NOTE',
  privateCreator: 'ACME SECRET 1.0',
  nestedPrivate: 'NESTED-PRIVATE-9',
  overlay: 'OVERLAY-BITS',
  iconMarker: 'ICON-PIXELS-DOEMAN',
  textValue: 'Findings dictated for DOEMAN',
  graphicText: 'JOHNATHAN DOEMAN left',
  age: '043Y',
};

const ORIGINAL = {
  study: '1.2.826.0.1.3680043.2.1125.1.111',
  series: '1.2.826.0.1.3680043.2.1125.1.222',
  frameOfReference: '1.2.826.0.1.3680043.2.1125.1.333',
  sop1: '1.2.826.0.1.3680043.2.1125.1.444.1',
  sop2: '1.2.826.0.1.3680043.2.1125.1.444.2',
  mpps: '1.2.826.0.1.3680043.2.1125.1.555',
  creator: '1.2.826.0.1.3680043.2.1125.1.666',
  irradiation: '1.2.826.0.1.3680043.2.1125.1.777',
};

const CT_IMAGE_STORAGE = '1.2.840.10008.5.1.4.1.1.2';
const PIXELS = Uint16Array.from({ length: 16 }, (_, i) => i * 97);

function el(tag: number, vr: string, value?: DicomElement['value']): DicomElement {
  return value === undefined ? { tag, vr } : { tag, vr, value };
}

/** An instance of one CT study with identifying values in every place the profile covers; the second instance
 * references the first. */
function richInstance(n: 1 | 2, extra: DicomElement[] = []): DicomElement[] {
  const sop = n === 1 ? ORIGINAL.sop1 : ORIGINAL.sop2;
  const referenced =
    n === 2
      ? [
          el(0x00081140, 'SQ', [
            [el(0x00081150, 'UI', CT_IMAGE_STORAGE), el(0x00081155, 'UI', ORIGINAL.sop1)],
          ]),
          el(0x00082112, 'SQ', [
            [el(0x00081150, 'UI', CT_IMAGE_STORAGE), el(0x00081155, 'UI', ORIGINAL.sop1)],
          ]),
        ]
      : [];
  return imageElements({
    rows: 4,
    columns: 4,
    bitsAllocated: 16,
    pixelData: PIXELS,
    extra: [
      el(0x00080005, 'CS', 'ISO_IR 100'),
      el(0x00080012, 'DA', '20190302'),
      el(0x00080014, 'UI', ORIGINAL.creator),
      el(0x00080016, 'UI', CT_IMAGE_STORAGE),
      el(0x00080018, 'UI', sop),
      el(0x00080020, 'DA', '20190301'),
      el(0x00080021, 'DA', '20190301'),
      el(0x0008002a, 'DT', '20190301101530.123+0100'),
      el(0x00080030, 'TM', '101500'),
      el(0x00080050, 'SH', IDENTIFYING.accession),
      el(0x00080060, 'CS', 'CT'),
      el(0x00080080, 'LO', IDENTIFYING.institution),
      el(0x00080081, 'ST', IDENTIFYING.institutionAddress),
      el(0x00080090, 'PN', IDENTIFYING.referring),
      el(0x00080092, 'ST', IDENTIFYING.address),
      el(0x00080094, 'SH', '555 0100 9999'),
      el(0x00080096, 'SQ', [
        [
          el(0x00080080, 'LO', IDENTIFYING.referringIdInstitution),
          el(0x00401101, 'SQ', [
            [el(0x00080100, 'SH', 'RID-77'), el(0x00080104, 'LO', IDENTIFYING.referring)],
          ]),
        ],
      ]),
      el(0x00081010, 'SH', IDENTIFYING.station),
      el(0x00081030, 'LO', `CT CHEST for DOEMAN JOHNATHAN ${IDENTIFYING.patientId} 2019-03-01`),
      el(0x0008103e, 'LO', 'AX 5mm SOFT'),
      el(0x00081040, 'LO', IDENTIFYING.department),
      el(0x00081048, 'PN', IDENTIFYING.recordPhysician),
      el(0x00081050, 'PN', IDENTIFYING.performing),
      el(0x00081060, 'PN', IDENTIFYING.reading),
      el(0x00081070, 'PN', IDENTIFYING.operator),
      el(0x00081072, 'SQ', [
        [
          el(0x00080080, 'LO', IDENTIFYING.institution),
          el(0x00401102, 'ST', IDENTIFYING.address),
          el(0x00401103, 'LO', IDENTIFYING.phone),
        ],
      ]),
      el(0x00081111, 'SQ', [
        [el(0x00081150, 'UI', '1.2.840.10008.3.1.2.3.3'), el(0x00081155, 'UI', ORIGINAL.mpps)],
      ]),
      ...referenced,
      el(0x00083010, 'UI', ORIGINAL.irradiation),
      el(0x00100010, 'PN', IDENTIFYING.patientName),
      el(0x00100020, 'LO', IDENTIFYING.patientId),
      el(0x00100021, 'LO', IDENTIFYING.issuer),
      el(0x00100030, 'DA', IDENTIFYING.birthDate),
      el(0x00100040, 'CS', 'M'),
      el(0x00101000, 'LO', IDENTIFYING.otherIds),
      el(0x00101001, 'PN', IDENTIFYING.otherNames),
      el(0x00101010, 'AS', IDENTIFYING.age),
      el(0x00101030, 'DS', '81.5'),
      el(0x00101040, 'LO', IDENTIFYING.address),
      el(0x00101060, 'PN', IDENTIFYING.mother),
      el(0x00102154, 'SH', IDENTIFYING.phone),
      el(0x00181000, 'LO', IDENTIFYING.serial),
      el(0x00181030, 'LO', `Dr. ${IDENTIFYING.referring.split('^')[0]} chest protocol`),
      el(0x00181200, 'DA', '20181231'),
      el(0x0020000d, 'UI', ORIGINAL.study),
      el(0x0020000e, 'UI', ORIGINAL.series),
      el(0x00200010, 'SH', IDENTIFYING.studyId),
      el(0x00200013, 'IS', String(n)),
      el(0x00200052, 'UI', ORIGINAL.frameOfReference),
      el(0x00204000, 'LT', `Called ${IDENTIFYING.phone}; patient JOHNATHAN DOEMAN anxious`),
      el(0x00400275, 'SQ', [
        [
          el(0x00080050, 'SH', IDENTIFYING.accession),
          el(0x00321060, 'LO', 'CT CHEST WITH CONTRAST'),
          el(0x00400009, 'SH', IDENTIFYING.scheduledStepId),
          el(0x00401001, 'SH', IDENTIFYING.requestedProcedureId),
        ],
      ]),
      el(0x0040a073, 'SQ', [
        [
          el(0x0040a027, 'LO', IDENTIFYING.verifyingOrg),
          el(0x0040a030, 'DT', '20190303120000'),
          el(0x0040a075, 'PN', IDENTIFYING.verifier),
          el(0x0040a088, 'SQ', [[el(0x00080100, 'SH', 'VER-1'), el(0x00080104, 'LO', IDENTIFYING.verifier)]]),
        ],
      ]),
      el(0x0040a730, 'SQ', [[el(0x0040a040, 'CS', 'TEXT'), el(0x0040a160, 'UT', IDENTIFYING.textValue)]]),
      el(0x00700001, 'SQ', [
        [
          el(0x00700008, 'SQ', [
            [el(0x00700006, 'ST', IDENTIFYING.graphicText), el(0x00700003, 'CS', 'PIXEL')],
          ]),
        ],
      ]),
      el(0x00090010, 'LO', IDENTIFYING.privateCreator),
      el(0x00091001, 'LO', IDENTIFYING.privateText),
      el(0x00291010, 'OB', new TextEncoder().encode(`${IDENTIFYING.patientId}\0`)),
      // Procedure Code Sequence is not in the table: it is kept and its private content removed.
      el(0x00081032, 'SQ', [
        [
          el(0x00080100, 'SH', 'CTCHEST'),
          el(0x00190010, 'LO', 'ACME'),
          el(0x00191001, 'LO', IDENTIFYING.nestedPrivate),
        ],
      ]),
      el(0x00280301, 'CS', 'NO'),
      el(0x00880200, 'SQ', [
        [el(0x00280010, 'US', 1), el(0x7fe00010, 'OB', new TextEncoder().encode(IDENTIFYING.iconMarker))],
      ]),
      el(0x50003000, 'OB', new TextEncoder().encode('CURVE-DATA')),
      el(0x60000010, 'US', 4),
      el(0x60000011, 'US', 4),
      el(0x60000100, 'US', 1),
      el(0x60003000, 'OB', new TextEncoder().encode(IDENTIFYING.overlay)),
      ...extra,
    ],
  });
}

function bytesContain(haystack: Uint8Array, needle: string): boolean {
  return latin1.decode(haystack).includes(needle) || new TextDecoder().decode(haystack).includes(needle);
}

function pixelBytes(bytes: Uint8Array): Uint8Array {
  const ds = parse(bytes);
  const el = ds.elements.x7fe00010!;
  if (el.hadUndefinedLength) {
    // Encapsulated: everything from the first item to the end of the element.
    const start = el.dataOffset;
    return ds.byteArray.subarray(start, start + el.length);
  }
  return ds.byteArray.subarray(el.dataOffset, el.dataOffset + el.length);
}

// ---- tests --------------------------------------------------------------------------------------------------

describe('deidentifyDicom on an instance with identifying values everywhere', () => {
  const ENCODINGS: DicomEncoding[] = ['explicit-le', 'implicit-le', 'explicit-be', 'deflated'];

  test.each(ENCODINGS)('%s: no identifying value survives anywhere in the output bytes', (encoding) => {
    const input = writeDicom(richInstance(1), { encoding });
    // Deflated data sets are compressed; look at them as a reader does.
    const readable = (b: Uint8Array) => (encoding === 'deflated' ? parse(b).byteArray : b);
    for (const value of Object.values(IDENTIFYING)) expect(bytesContain(readable(input), value)).toBe(true);
    const { bytes } = deidentifyDicom(input, options(uidMap().mapUid));
    const visible = readable(bytes);
    for (const [name, value] of Object.entries(IDENTIFYING)) {
      expect({ name, found: bytesContain(visible, value) }).toEqual({ name, found: false });
    }
    for (const uid of Object.values(ORIGINAL)) expect(bytesContain(visible, uid)).toBe(false);
  });

  test.each(ENCODINGS)(
    '%s: same transfer syntax, Teleread meta, pseudonym and de-identification attributes',
    (encoding) => {
      const { mapUid, map } = uidMap();
      const { bytes } = deidentifyDicom(writeDicom(richInstance(1), { encoding }), options(mapUid));
      const parsed = parseDicom(bytes);
      expect(parsed.transferSyntaxUid).toBe(TRANSFER_SYNTAX_FOR[encoding]);
      expect(parsed.hasFileMeta).toBe(true);
      expect(parsed.patient.name).toBe(PSEUDONYM.patientName);
      expect(parsed.patient.id).toBe(PSEUDONYM.patientId);
      expect(parsed.patient.birthDate).toBeUndefined();
      expect(parsed.sopInstanceUid).toBe(map.get(ORIGINAL.sop1));
      const meta = new DataView(bytes.buffer, bytes.byteOffset);
      expect(latin1.decode(bytes.subarray(128, 132))).toBe('DICM');
      expect(meta.getUint16(132, true)).toBe(0x0002);
      const metaText = latin1.decode(bytes.subarray(132, 132 + 200));
      expect(metaText).toContain(map.get(ORIGINAL.sop1));
      expect(metaText).toContain(TELEREAD_IMPLEMENTATION_CLASS_UID);
      const ds = parsed.dataSet;
      expect(text(ds, 0x00120062)).toBe('YES');
      expect(text(ds, 0x00120063)?.split('\\')).toEqual(
        DEIDENTIFICATION_METHOD_CODES.map((c) => c.codeMeaning),
      );
      expect(items(ds, 0x00120064).map((i) => [text(i, 0x00080100), text(i, 0x00080102)])).toEqual([
        ['113100', 'DCM'],
        ['113107', 'DCM'],
        ['113105', 'DCM'],
      ]);
      expect(text(ds, 0x00280303)).toBe('MODIFIED');
    },
  );

  test.each(ENCODINGS)(
    '%s: every date moves by exactly the offset; times and UTC offsets stay',
    (encoding) => {
      const { bytes } = deidentifyDicom(writeDicom(richInstance(1), { encoding }), options(uidMap().mapUid));
      const ds = parse(bytes);
      expect(text(ds, 0x00080020)).toBe(shiftedDate('20190301', SHIFT));
      expect(text(ds, 0x00080021)).toBe(shiftedDate('20190301', SHIFT));
      expect(text(ds, 0x00080012)).toBe(shiftedDate('20190302', SHIFT));
      // Not in Table E.1-1, shifted so that the calibration-to-acquisition interval stays true.
      expect(text(ds, 0x00181200)).toBe(shiftedDate('20181231', SHIFT));
      expect(text(ds, 0x0008002a)).toBe(`${shiftedDate('20190301', SHIFT)}101530.123+0100`);
      expect(text(ds, 0x00080030)).toBe('101500');
      const verifying = items(ds, 0x0040a073)[0]!;
      expect(text(verifying, 0x0040a030)).toBe(`${shiftedDate('20190303', SHIFT)}120000`);
    },
  );

  test('dates cross month, leap day and year boundaries', () => {
    const cases: Array<[string, number]> = [
      ['20200301', -1],
      ['20191231', 1],
      ['20240229', 365],
      ['19991231', -36500],
    ];
    for (const [date, days] of cases) {
      const input = writeDicom(
        imageElements({ rows: 1, columns: 1, bitsAllocated: 8, extra: [el(0x00080020, 'DA', date)] }),
      );
      const { bytes } = deidentifyDicom(input, options(uidMap().mapUid, days));
      expect(text(parse(bytes), 0x00080020)).toBe(shiftedDate(date, days));
    }
  });

  test('Table E.1-1 actions on the top level: X removed, Z emptied, D replaced, U remapped', () => {
    const { mapUid, map } = uidMap();
    const { bytes } = deidentifyDicom(writeDicom(richInstance(1)), options(mapUid));
    const ds = parse(bytes);
    // X
    for (const tag of [0x00080081, 0x00080092, 0x00081040, 0x00081048, 0x00081050, 0x00081060, 0x00100021]) {
      expect(ds.elements[key(tag)], key(tag)).toBeUndefined();
    }
    for (const tag of [0x00101000, 0x00101001, 0x00101010, 0x00101030, 0x00101040, 0x00101060, 0x00102154]) {
      expect(ds.elements[key(tag)], key(tag)).toBeUndefined();
    }
    // Z
    for (const tag of [0x00080050, 0x00080090, 0x00100030, 0x00100040, 0x00200010])
      expect(text(ds, tag)).toBe('');
    // X/Z/D and X/D: a dummy keeps a possibly mandatory attribute present.
    for (const tag of [0x00080080, 0x00081010, 0x00181000]) expect(text(ds, tag)).toBe('ANONYMIZED');
    expect(text(ds, 0x00081070)).toBe('ANONYMIZED^');
    // U
    expect(text(ds, 0x0020000d)).toBe(map.get(ORIGINAL.study));
    expect(text(ds, 0x0020000e)).toBe(map.get(ORIGINAL.series));
    expect(text(ds, 0x00200052)).toBe(map.get(ORIGINAL.frameOfReference));
    expect(text(ds, 0x00080014)).toBe(map.get(ORIGINAL.creator));
    expect(text(ds, 0x00083010)).toBe(map.get(ORIGINAL.irradiation));
    for (const replacement of map.values()) expect(replacement).toMatch(/^2\.25\.\d+$/);
    // Kept: not identifying.
    expect(text(ds, 0x00080016)).toBe(CT_IMAGE_STORAGE);
    expect(text(ds, 0x00080060)).toBe('CT');
    expect(text(ds, 0x0008103e)).toBe('AX 5mm SOFT');
  });

  test('private attributes, overlays, curves, icon image and the X sequences are gone at every level', () => {
    const { bytes } = deidentifyDicom(writeDicom(richInstance(1)), options(uidMap().mapUid));
    const ds = parse(bytes);
    const tags: number[] = [];
    const walk = (d: DataSet) => {
      for (const [k, e] of Object.entries(d.elements)) {
        tags.push(Number.parseInt(k.slice(1), 16));
        for (const item of e.items ?? []) walk(item.dataSet as DataSet);
      }
    };
    walk(ds);
    expect(tags.filter((t) => (t >>> 16) % 2 === 1)).toEqual([]);
    expect(tags.filter((t) => t >>> 24 === 0x50 || t >>> 24 === 0x60)).toEqual([]);
    expect(ds.elements[key(0x00880200)]).toBeUndefined();
    expect(ds.elements[key(0x00080096)]).toBeUndefined();
    expect(items(ds, 0x00081032).map((i) => Object.keys(i.elements))).toEqual([['x00080100']]);
  });

  test('sequences: D keeps items and replaces their names and free text; C cleans inside; U* remaps inside', () => {
    const { mapUid, map } = uidMap();
    const { bytes } = deidentifyDicom(writeDicom(richInstance(2)), options(mapUid));
    const ds = parse(bytes);
    // Verifying Observer Sequence (D): name and organisation dummies, identification code sequence (Z) emptied.
    const verifying = items(ds, 0x0040a073);
    expect(verifying).toHaveLength(1);
    expect(text(verifying[0]!, 0x0040a075)).toBe('ANONYMIZED^');
    expect(text(verifying[0]!, 0x0040a027)).toBe('ANONYMIZED');
    expect(items(verifying[0]!, 0x0040a088)).toHaveLength(0);
    // Operator Identification Sequence (X/D → D): institution dummy, address and phone (X) gone.
    const operator = items(ds, 0x00081072)[0]!;
    expect(text(operator, 0x00080080)).toBe('ANONYMIZED');
    expect(operator.elements.x00401102).toBeUndefined();
    expect(operator.elements.x00401103).toBeUndefined();
    // Content Sequence (D): the relationship stays, the text is replaced.
    const content = items(ds, 0x0040a730)[0]!;
    expect(text(content, 0x0040a040)).toBe('TEXT');
    expect(text(content, 0x0040a160)).toBe('ANONYMIZED');
    // Graphic Annotation Sequence (D): nested text objects lose their text.
    const textObject = items(items(ds, 0x00700001)[0]!, 0x00700008)[0]!;
    expect(text(textObject, 0x00700006)).toBe('ANONYMIZED');
    // Request Attributes Sequence (C): IDs removed, accession emptied, description kept once clean.
    const request = items(ds, 0x00400275)[0]!;
    expect(request.elements.x00400009).toBeUndefined();
    expect(request.elements.x00401001).toBeUndefined();
    expect(text(request, 0x00080050)).toBe('');
    expect(text(request, 0x00321060)).toBe('CT CHEST WITH CONTRAST');
    // Referenced Performed Procedure Step Sequence (X/Z/D → D) and Referenced Image / Source Image (X/Z/U*).
    expect(text(items(ds, 0x00081111)[0]!, 0x00081155)).toBe(map.get(ORIGINAL.mpps));
    expect(text(items(ds, 0x00081111)[0]!, 0x00081150)).toBe('1.2.840.10008.3.1.2.3.3');
    expect(text(items(ds, 0x00081140)[0]!, 0x00081155)).toBe(map.get(ORIGINAL.sop1));
    expect(text(items(ds, 0x00082112)[0]!, 0x00081155)).toBe(map.get(ORIGINAL.sop1));
  });

  test('Clean Descriptors keeps the clinical words and drops names, IDs, dates, phone numbers and honorifics', () => {
    const { bytes } = deidentifyDicom(writeDicom(richInstance(1)), options(uidMap().mapUid));
    const ds = parse(bytes);
    expect(text(ds, 0x00081030)).toBe('CT CHEST for');
    expect(text(ds, 0x00181030)).toBe('chest protocol');
    const comments = text(ds, 0x00204000)!;
    expect(comments).toContain('anxious');
    for (const gone of ['JOHNATHAN', 'DOEMAN', '555', '2233']) expect(comments).not.toContain(gone);
  });

  test.each([
    ['MRS SVS TE30', 'MRS SVS TE30'],
    ['T1 FOV 24 512 512', 'T1 FOV 24 512 512'],
    ['DR CHEST PA', 'DR CHEST PA'],
    ['Knee MS Mrs Jones', 'Knee MS'],
    ['call 555-0100 re knee', 'call re knee'],
    ['Head CT john.doe@example.org', 'Head CT'],
    ['Brain 12/03/2019 follow-up', 'Brain follow-up'],
  ])('a descriptor %j is cleaned to %j', (description, cleaned) => {
    const input = writeDicom(
      imageElements({ rows: 1, columns: 1, bitsAllocated: 8, extra: [el(0x0008103e, 'LO', description)] }),
    );
    expect(parseDicom(deidentifyDicom(input, options(uidMap().mapUid)).bytes).seriesDescription).toBe(
      cleaned,
    );
  });

  test('two instances of one study share study, series and frame of reference UIDs; references follow', () => {
    const { mapUid, map } = uidMap();
    const first = parse(deidentifyDicom(writeDicom(richInstance(1)), options(mapUid)).bytes);
    const second = parse(deidentifyDicom(writeDicom(richInstance(2)), options(mapUid)).bytes);
    for (const tag of [0x0020000d, 0x0020000e, 0x00200052]) expect(text(second, tag)).toBe(text(first, tag));
    expect(text(first, 0x00080018)).not.toBe(text(second, 0x00080018));
    expect(text(items(second, 0x00081140)[0]!, 0x00081155)).toBe(text(first, 0x00080018));
    expect(text(first, 0x00080018)).toBe(map.get(ORIGINAL.sop1));
  });

  test('collectUids lists exactly the UIDs mapUid is asked for, so they can be created in one batch first', () => {
    const input = writeDicom(richInstance(2));
    const collected = collectUids(input);
    const { mapUid, asked } = uidMap();
    const result = deidentifyDicom(input, options(mapUid));
    expect(collected).toEqual(asked);
    expect(Object.keys(result.replacedUids)).toEqual(collected);
    expect(new Set(collected)).toEqual(new Set(Object.values(ORIGINAL)));
  });

  test('native pixel data leaves byte for byte', () => {
    for (const encoding of ['explicit-le', 'implicit-le', 'explicit-be'] as const) {
      const input = writeDicom(richInstance(1), { encoding });
      const { bytes } = deidentifyDicom(input, options(uidMap().mapUid));
      expect(pixelBytes(bytes)).toEqual(pixelBytes(input));
    }
  });

  test('encapsulated pixel data stays encapsulated with the same fragments, offset table and transfer syntax', () => {
    const fragments = [
      Uint8Array.of(0xff, 0xd8, 1, 2, 3, 4, 0xff, 0xd9),
      Uint8Array.of(0xff, 0xd8, 9, 9, 0xff, 0xd9),
    ];
    const elements = imageElements({
      rows: 2,
      columns: 2,
      bitsAllocated: 8,
      numberOfFrames: 2,
      pixelData: { fragments, offsetTable: [0, 16] },
      extra: [el(0x00080018, 'UI', ORIGINAL.sop1), el(0x00100010, 'PN', IDENTIFYING.patientName)],
    });
    const input = writeDicom(elements, { transferSyntaxUid: '1.2.840.10008.1.2.4.50' });
    const { bytes } = deidentifyDicom(input, options(uidMap().mapUid));
    const parsed = parseDicom(bytes);
    expect(parsed.transferSyntaxUid).toBe('1.2.840.10008.1.2.4.50');
    expect(parsed.dataSet.elements.x7fe00010!.hadUndefinedLength).toBe(true);
    expect(pixelBytes(bytes)).toEqual(pixelBytes(input));
    expect(bytesContain(bytes, IDENTIFYING.patientName)).toBe(false);
  });

  test('BurnedInAnnotation YES is reported so that the caller can refuse to send', () => {
    const flagged = writeDicom(richInstance(1, [el(0x00280301, 'CS', 'YES')]));
    expect(deidentifyDicom(flagged, options(uidMap().mapUid)).warnings).toContain(
      BURNED_IN_ANNOTATION_WARNING,
    );
    const clean = writeDicom(richInstance(1));
    expect(deidentifyDicom(clean, options(uidMap().mapUid)).warnings).not.toContain(
      BURNED_IN_ANNOTATION_WARNING,
    );
  });

  test.each([
    ['ISO_IR 100', 'latin1', 'MÜLLERSEN^HÄNSEL', 'Thorax für MÜLLERSEN', 'Thorax für'],
    ['ISO_IR 192', 'utf-8', 'ΠΑΠΑΔΌΠΟΥΛΟΣ^ΝΊΚΟΣ', 'Θώρακας ΠΑΠΑΔΌΠΟΥΛΟΣ', 'Θώρακας'],
  ])(
    '%s descriptors are cleaned and written back in the data set character set',
    (charset, label, name, description, cleaned) => {
      const encode = (s: string) =>
        padText(label === 'utf-8' ? new TextEncoder().encode(s) : Uint8Array.from(s, (c) => c.charCodeAt(0)));
      const input = writeDicom(
        imageElements({
          rows: 1,
          columns: 1,
          bitsAllocated: 8,
          extra: [
            el(0x00080005, 'CS', charset),
            { tag: 0x00081030, vr: 'LO', value: encode(description) },
            { tag: 0x00100010, vr: 'PN', value: encode(name) },
          ],
        }),
      );
      const parsed = parseDicom(deidentifyDicom(input, options(uidMap().mapUid)).bytes);
      expect(parsed.studyDescription).toBe(cleaned);
    },
  );
});

describe('Table E.1-1, row by row', () => {
  /** One value per VR that is identifying: it carries the patient's name and a long number. */
  function valueFor(vr: string, index: number): DicomElement['value'] | undefined {
    switch (vr) {
      case 'PN':
        return 'DOEMAN^JOHNATHAN';
      case 'DA':
        return '20190301';
      case 'DT':
        return '20190301101530';
      case 'TM':
        return '101530';
      case 'UI':
        return `1.2.826.0.1.3680043.2.1125.9.${index}`;
      case 'AS':
        return '043Y';
      case 'CS':
      case 'AE':
        return 'DOEMAN 777777';
      case 'DS':
        return '12.5';
      case 'IS':
        return '42';
      case 'US':
        return 7;
      case 'OB':
        return Uint8Array.of(1, 2, 3, 4);
      case 'SH':
        return 'DOEMAN 777777';
      case 'LO':
      case 'LT':
      case 'ST':
      case 'UT':
      case 'UC':
        return 'DOEMAN JOHNATHAN 777777';
      default:
        return undefined;
    }
  }

  // Group 0000 and 0002 are not data set attributes; sequences, the pseudonym and the SOP Instance UID have their
  // own tests above.
  const ownTests = new Set([0x00100010, 0x00100020, 0x00080018]);
  const rows = CONFIDENTIALITY_PROFILE.filter(
    (p) => p.tag >>> 16 > 2 && p.vr !== 'SQ' && !ownTests.has(p.tag) && valueFor(p.vr, 0) !== undefined,
  );

  function build(encoding: DicomEncoding) {
    const extra = rows.map((p, i) => el(p.tag, p.vr, valueFor(p.vr, i)));
    extra.push(el(0x00080018, 'UI', ORIGINAL.sop1), el(0x00100010, 'PN', 'DOEMAN^JOHNATHAN'));
    expect(new Set(extra.map((e) => e.tag)).size).toBe(extra.length);
    return writeDicom(imageElements({ rows: 1, columns: 1, bitsAllocated: 8, extra }), { encoding });
  }

  test.each(['explicit-le', 'implicit-le'] as const)(
    '%s: every listed attribute gets its action',
    (encoding) => {
      const { mapUid, map } = uidMap();
      const ds = parse(deidentifyDicom(build(encoding), options(mapUid)).bytes);
      expect(rows.length).toBeGreaterThan(300);
      for (const [i, p] of rows.entries()) {
        const action = resolveProfileAction(p.tag)!;
        const original = valueFor(p.vr, i);
        const out = text(ds, p.tag);
        const label = `${p.keyword} ${action.operation}`;
        let operation = action.operation;
        if (
          operation === 'shiftDates' &&
          p.vr !== 'DA' &&
          p.vr !== 'DT' &&
          p.vr !== 'TM' &&
          p.tag !== 0x00080201
        ) {
          operation = action.fallback;
        }
        // Every text value here is all identifiers, so cleaning leaves nothing and the Basic Profile action runs.
        if (operation === 'clean') operation = action.fallback;
        switch (operation) {
          case 'remove':
            expect(out, label).toBeUndefined();
            break;
          case 'empty':
            expect(out, label).toBe('');
            break;
          case 'dummy':
            expect(out, label).toBeDefined();
            expect(out, label).not.toBe(typeof original === 'string' ? original : undefined);
            if (typeof original !== 'string') expect(raw(ds, p.tag), label).not.toEqual(original);
            break;
          case 'replaceUid':
            expect(out, label).toBe(map.get(original as string));
            break;
          case 'shiftDates':
            if (p.vr === 'DA') expect(out, label).toBe(shiftedDate('20190301', SHIFT));
            else if (p.vr === 'DT') expect(out, label).toBe(`${shiftedDate('20190301', SHIFT)}101530`);
            else expect(out, label).toBe(original);
            break;
          default:
            throw new Error(`${label}: unexpected operation`);
        }
      }
    },
  );
});

describe('bad input', () => {
  const good = writeDicom(richInstance(2));

  test.each([
    ['empty', new Uint8Array(0)],
    ['text', new TextEncoder().encode('hello, this is not a DICOM file at all, just some words to read')],
    [
      'PNG signature',
      Uint8Array.of(0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0, 0, 0, 13, 0x49, 0x48, 0x44, 0x52),
    ],
  ])('%s → UNSUPPORTED_FORMAT', (_name, bytes) => {
    expect(() => deidentifyDicom(bytes, options(uidMap().mapUid))).toThrowError(
      expect.objectContaining({ code: 'UNSUPPORTED_FORMAT' }),
    );
  });

  test('every truncation either de-identifies a shorter but whole data set or fails with CORRUPT_FILE', () => {
    let corrupt = 0;
    for (let cut = 140; cut < good.length; cut += 3) {
      try {
        const { bytes } = deidentifyDicom(good.subarray(0, cut), options(uidMap().mapUid));
        expect(bytesContain(bytes, IDENTIFYING.patientName)).toBe(false);
      } catch (err) {
        expect(isAppError(err) ? err.code : err).toBe('CORRUPT_FILE');
        corrupt++;
      }
    }
    expect(corrupt).toBeGreaterThan(0);
  });

  test('random byte damage never escapes as anything but CORRUPT_FILE or UNSUPPORTED_FORMAT', () => {
    let seed = 7;
    const random = () => {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff;
      return seed / 0x7fffffff;
    };
    const outcomes = new Set<string>();
    for (let i = 0; i < 300; i++) {
      const damaged = good.slice();
      for (let k = 0; k < 4; k++)
        damaged[132 + Math.floor(random() * (damaged.length - 132))] = Math.floor(random() * 256);
      try {
        deidentifyDicom(damaged, options(uidMap().mapUid));
        outcomes.add('ok');
      } catch (err) {
        outcomes.add(isAppError(err) ? err.code : String(err));
      }
    }
    expect([...outcomes].filter((o) => !['ok', 'CORRUPT_FILE', 'UNSUPPORTED_FORMAT'].includes(o))).toEqual(
      [],
    );
  });

  test('implicit VR big endian (ACR-NEMA) is written as explicit VR big endian, with the dictionary VRs', () => {
    const acrNema = writeDicom(richInstance(2), { encoding: 'implicit-be', meta: false, preamble: false });
    // Replacement UIDs in the order they are asked for, so that two runs over the same elements agree.
    const sequential = () => {
      const given = new Map<string, string>();
      return (uid: string) => given.get(uid) ?? given.set(uid, `2.25.${given.size + 1}`).get(uid)!;
    };
    const out = deidentifyDicom(acrNema, options(sequential()));
    expect(out.warnings.join('\n')).toMatch(/implicit VR big endian .* the copy is explicit VR big endian/);
    const parsed = parseDicom(out.bytes);
    expect(parsed.transferSyntaxUid).toBe('1.2.840.10008.1.2.2');
    expect(parsed.patient.name).toBe(PSEUDONYM.patientName);
    for (const value of Object.values(IDENTIFYING)) expect(bytesContain(out.bytes, value)).toBe(false);
    // The same bytes as de-identifying the instance written in explicit VR big endian to begin with: every VR
    // the dictionary gave is the one the writer chose, and every value kept its byte order (Pixel Data too).
    const explicit = writeDicom(richInstance(2), { encoding: 'explicit-be' });
    expect(Buffer.from(out.bytes).equals(deidentifyDicom(explicit, options(sequential())).bytes)).toBe(true);
  });

  test('an implicit VR data set under an explicit VR transfer syntax is written as the syntax says', () => {
    // As some writers did (pydicom's SC_rgb_jpeg.dcm): JPEG baseline in the meta, no VRs in the data set.
    const jpeg = '1.2.840.10008.1.2.4.50';
    const elements = [
      ...richInstance(2).filter((e) => e.tag !== 0x7fe00010),
      {
        tag: 0x7fe00010,
        vr: 'OB',
        value: { fragments: [Uint8Array.of(0xff, 0xd8, 1, 2, 3, 0xff, 0xd9, 0)] },
      },
    ];
    const sequential = () => {
      const given = new Map<string, string>();
      return (uid: string) => given.get(uid) ?? given.set(uid, `2.25.${given.size + 1}`).get(uid)!;
    };
    const mislabelled = writeDicom(elements, { encoding: 'implicit-le', transferSyntaxUid: jpeg });
    const out = deidentifyDicom(mislabelled, options(sequential()));
    expect(out.warnings.join('\n')).toMatch(
      /data set is implicit VR though its transfer syntax .* says explicit/,
    );
    const parsed = parseDicom(out.bytes);
    expect(parsed.transferSyntaxUid).toBe(jpeg);
    expect(parsed.warnings.join('\n')).not.toMatch(/not .* as its transfer syntax says/);
    // The same bytes as de-identifying the instance written as its transfer syntax says to begin with.
    const proper = writeDicom(elements, { encoding: 'explicit-le', transferSyntaxUid: jpeg });
    expect(Buffer.from(out.bytes).equals(deidentifyDicom(proper, options(sequential())).bytes)).toBe(true);
  });

  test('an implicit VR value the dictionary calls a sequence, but that is not one, is written as UN', () => {
    // (0070,0009) is Graphic Object Sequence in PS3.6; a writer that put text there must not get an SQ header.
    const input = writeDicom([...richInstance(1), el(0x00700009, 'CS', 'PIXEL')], {
      encoding: 'implicit-be',
      meta: false,
      preamble: false,
    });
    const { bytes } = deidentifyDicom(input, options(uidMap().mapUid));
    const element = parseDicom(bytes).dataSet.elements.x00700009;
    expect(element?.vr).toBe('UN');
    expect(latin1.decode(bytes.subarray(element!.dataOffset, element!.dataOffset + element!.length))).toBe(
      'PIXEL ',
    );
  });

  test('the error names the element and offset', () => {
    const cut = good.subarray(0, good.length - 10);
    expect(() => deidentifyDicom(cut, options(uidMap().mapUid))).toThrowError(/\(7FE0,0010\) at offset \d+/);
  });

  test('a sequence without its delimiter is CORRUPT_FILE', () => {
    const input = writeDicom([
      el(0x00080018, 'UI', ORIGINAL.sop1),
      el(0x00081140, 'SQ', [[el(0x00081155, 'UI', ORIGINAL.sop2)]]),
    ]);
    expect(() => deidentifyDicom(input.subarray(0, input.length - 8), options(uidMap().mapUid))).toThrowError(
      expect.objectContaining({ code: 'CORRUPT_FILE' }),
    );
  });

  test('no SOP Instance UID anywhere is CORRUPT_FILE: the copy could not be linked back', () => {
    const input = writeDicom([el(0x00080060, 'CS', 'OT'), el(0x00280010, 'US', 1)], { sopInstanceUid: '' });
    expect(() => deidentifyDicom(input, options(uidMap().mapUid))).toThrowError(
      expect.objectContaining({ code: 'CORRUPT_FILE' }),
    );
  });

  test.each([
    ['fractional date shift', { dateShiftDays: 1.5 }],
    ['non-ASCII pseudonym', { pseudonym: { patientName: 'MÜLLER', patientId: 'X' } }],
    ['backslash in pseudonym', { pseudonym: { patientName: 'A', patientId: 'X\\Y' } }],
    ['mapUid returning a non-UID', { mapUid: () => 'not a uid' }],
  ])('%s → VALIDATION_FAILED', (_name, override) => {
    const opts = { ...options(uidMap().mapUid), ...override } as DeidentifyOptions;
    expect(() => deidentifyDicom(good, opts)).toThrowError(
      expect.objectContaining({ code: 'VALIDATION_FAILED' }),
    );
  });
});

describe('a DICOMDIR', () => {
  /** Patient → study → series → image records, linked by byte offsets as a medium's index is. */
  function dicomdir(encoding: 'explicit-le' | 'implicit-le' | 'explicit-be'): Uint8Array {
    // Placeholders for the offsets, replaced below once the records' places in the file are known.
    const TO = [0x0d0d0d0d, 0x0a0a0a0a, 0x0b0b0b0b, 0x0c0c0c0c];
    const record = (type: string, child: number, keys: DicomElement[]) => [
      el(0x00041400, 'UL', 0),
      el(0x00041410, 'US', 0xffff),
      el(0x00041420, 'UL', child),
      el(0x00041430, 'CS', type),
      ...keys,
    ];
    const bytes = writeDicom(
      [
        el(0x00041130, 'CS', 'CD1'),
        el(0x00041200, 'UL', TO[0]),
        el(0x00041202, 'UL', TO[0]),
        el(0x00041212, 'US', 0),
        el(0x00041220, 'SQ', [
          record('PATIENT', TO[1]!, [
            el(0x00100010, 'PN', IDENTIFYING.patientName),
            el(0x00100020, 'LO', IDENTIFYING.patientId),
          ]),
          record('STUDY', TO[2]!, [
            el(0x00080020, 'DA', '20190301'),
            el(0x00080030, 'TM', '101530'),
            el(0x00080050, 'SH', 'ACC777777'),
            el(0x0020000d, 'UI', ORIGINAL.study),
            el(0x00200010, 'SH', 'STUDY77'),
          ]),
          record('SERIES', TO[3]!, [
            el(0x00080060, 'CS', 'CT'),
            el(0x0020000e, 'UI', ORIGINAL.series),
            el(0x00200011, 'IS', '1'),
          ]),
          record('IMAGE', 0, [
            el(0x00041500, 'CS', 'DIR\\IM1'),
            el(0x00041510, 'UI', '1.2.840.10008.5.1.4.1.1.2'),
            el(0x00041511, 'UI', ORIGINAL.sop1),
            el(0x00041512, 'UI', '1.2.840.10008.1.2.1'),
            el(0x00200013, 'IS', '1'),
          ]),
        ]),
      ],
      { encoding, sopClassUid: '1.2.840.10008.1.3.10', sopInstanceUid: ORIGINAL.sop2 },
    );
    const le = encoding !== 'explicit-be';
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    const starts = itemStarts(parse(bytes));
    for (let at = 0; at + 4 <= bytes.length; at += 2) {
      const i = TO.indexOf(view.getUint32(at, le));
      if (i >= 0) view.setUint32(at, starts[i]!, le);
    }
    return bytes;
  }

  /** Where each record's item tag starts: its data set's offset less the item header. */
  function itemStarts(ds: DataSet): number[] {
    return (ds.elements.x00041220?.items ?? []).map((i) => i.dataOffset - 8);
  }

  function offset(ds: DataSet, tag: number): number | undefined {
    return ds.uint32(key(tag));
  }

  test.each(['explicit-le', 'implicit-le', 'explicit-be'] as const)(
    '%s: identifying keys replaced, Type 1 keys kept with dummies, every record offset relinked',
    (encoding) => {
      const input = dicomdir(encoding);
      const before = parse(input);
      expect(offset(before, 0x00041200)).toBe(itemStarts(before)[0]);
      const { bytes } = deidentifyDicom(input, options(uidMap().mapUid));
      const after = parse(bytes);
      const starts = itemStarts(after);
      // The pseudonym and the new UIDs are not as long as what they replace: every record has moved.
      expect(starts.slice(1)).not.toEqual(itemStarts(before).slice(1));
      expect(offset(after, 0x00041200)).toBe(starts[0]);
      expect(offset(after, 0x00041202)).toBe(starts[0]);
      const records = items(after, 0x00041220);
      expect(records.map((r) => offset(r, 0x00041420))).toEqual([starts[1], starts[2], starts[3], 0]);
      expect(records.map((r) => offset(r, 0x00041400))).toEqual([0, 0, 0, 0]);
      // Study ID is Type 1 in a Study record: Z gives a dummy there, not an empty value.
      expect(text(records[1]!, 0x00200010)).toMatch(/\S/);
      expect(text(records[1]!, 0x00200010)).not.toBe('STUDY77');
      expect(text(records[0]!, 0x00100010)).toBe(PSEUDONYM.patientName);
      for (const value of [IDENTIFYING.patientName, IDENTIFYING.patientId, 'ACC777777', ORIGINAL.study]) {
        expect(bytesContain(bytes, value), value).toBe(false);
      }
    },
  );
});

describe('the profile table', () => {
  test('is sorted, without duplicates, and holds the rows the rest of Teleread relies on', () => {
    const tags = CONFIDENTIALITY_PROFILE.map((p) => p.tag);
    expect([...tags].sort((a, b) => a - b)).toEqual(tags);
    expect(new Set(tags).size).toBe(tags.length);
    const row = (keyword: string) => CONFIDENTIALITY_PROFILE.find((p) => p.keyword === keyword);
    expect(row('PatientName')).toMatchObject({ tag: 0x00100010, basicProfile: 'Z' });
    expect(row('StudyDate')).toMatchObject({ basicProfile: 'Z', modifiedDates: 'C' });
    expect(row('StudyDescription')).toMatchObject({ basicProfile: 'X', cleanDescriptors: 'C' });
    expect(row('StudyInstanceUID')).toMatchObject({ basicProfile: 'U' });
    expect(row('ReferencedImageSequence')).toMatchObject({ basicProfile: 'X/Z/U*' });
    expect(resolveProfileAction(0x00091001)?.operation).toBe('remove');
    expect(resolveProfileAction(0x60003000)?.operation).toBe('remove');
    expect(resolveProfileAction(0x50003000)?.operation).toBe('remove');
    expect(resolveProfileAction(0x00280010)).toBeUndefined();
  });
});
