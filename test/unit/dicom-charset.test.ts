import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';
import { dicomAttributes } from '../../src/formats/dicom/attributes.js';
import { decodeDicomText, decoderLabelForCharset } from '../../src/formats/dicom/charset.js';
import { parseDicom } from '../../src/formats/dicom/parse-dicom.js';
import {
  type DicomElement,
  encodeIso2022,
  encodeText,
  padText,
  writeDicom,
} from '../helpers/dicom-writer.js';

const hex = (s: string) => Uint8Array.from(Buffer.from(s.replace(/\s+/g, ''), 'hex'));
const ascii = (s: string) => Buffer.from(s, 'latin1').toString('hex');

function decodeWithWarnings(bytes: Uint8Array, charset: string | undefined, vr = 'PN') {
  const warnings: string[] = [];
  const text = decodeDicomText(bytes, charset, { vr, onWarning: (m) => warnings.push(m) });
  return { text, warnings };
}

// Byte sequences printed in PS3.5 annexes H (Japanese), I (Korean) and K (Chinese).
const ANNEX_EXAMPLES = [
  {
    example: 'H.3.1 ISO 2022 IR 13 with IR 87',
    charset: 'ISO 2022 IR 13\\ISO 2022 IR 87',
    bytes:
      'd4cfc0de 5e c0dbb3 3d 1b2442 3b334544 1b284a 5e 1b2442 42404f3a 1b284a 3d ' +
      '1b2442 2464245e2440 1b284a 5e 1b2442 243f246d2426 1b284a',
    name: 'ﾔﾏﾀﾞ^ﾀﾛｳ=山田^太郎=やまだ^たろう',
  },
  {
    example: 'H.3.2 ISO 2022 IR 87',
    charset: '\\ISO 2022 IR 87',
    bytes:
      `${ascii('Yamada^Tarou=')} 1b2442 3b334544 1b2842 5e 1b2442 42404f3a 1b2842 3d ` +
      '1b2442 2464245e2440 1b2842 5e 1b2442 243f246d2426 1b2842',
    name: 'Yamada^Tarou=山田^太郎=やまだ^たろう',
  },
  {
    example: 'I.2 ISO 2022 IR 149',
    charset: '\\ISO 2022 IR 149',
    bytes: `${ascii('Hong^Gildong=')} 1b242943 fbf3 5e 1b242943 d1ced4d7 3d 1b242943 c8ab 5e 1b242943 b1e6b5bf`,
    name: 'Hong^Gildong=洪^吉洞=홍^길동',
  },
  {
    example: 'K.2 GB18030',
    charset: 'GB18030',
    bytes: `${ascii('Wang^XiaoDong=')} cdf5 5e d0a1 967c 3d`,
    name: 'Wang^XiaoDong=王^小東=',
  },
  {
    example: 'K.3 ISO 2022 IR 58',
    charset: '\\ISO 2022 IR 58',
    bytes: `${ascii('Zhang^XiaoDong=')} 1b242941 d5c5 5e 1b242941 d0a1b6ab 3d 20`,
    name: 'Zhang^XiaoDong=张^小东=',
  },
];

describe('PS3.5 annex examples', () => {
  test.each(ANNEX_EXAMPLES)('$example decodes', ({ charset, bytes, name }) => {
    expect(decodeWithWarnings(hex(bytes), charset)).toEqual({ text: name, warnings: [] });
  });

  // The file-based tables below are written with this encoder, so it must reproduce the standard's bytes.
  test.each(ANNEX_EXAMPLES.filter((e) => e.charset.includes('2022')))(
    'the test encoder writes $example as the standard does',
    ({ charset, bytes, name }) => {
      const trimmed = hex(bytes);
      const expected = trimmed.at(-1) === 0x20 ? trimmed.subarray(0, -1) : trimmed;
      expect(Buffer.from(encodeIso2022(name, charset)).toString('hex')).toBe(
        Buffer.from(expected).toString('hex'),
      );
    },
  );
});

interface CharsetCase {
  charset: string;
  name: string;
  encode: (text: string) => Uint8Array;
  /** Whether dcmtk can check it: built with glibc iconv, it has no JIS X 0208/0212 under ISO 2022 ('not
   * supported by the utilized character set conversion library'). */
  dcmdump: boolean;
}

const single = (label: string) => (text: string) => encodeText(text, label);
const iso2022 = (charset: string) => (text: string) => encodeIso2022(text, charset);

const CASES: CharsetCase[] = [
  { charset: '', name: 'Doe^John', encode: single('iso-8859-1'), dcmdump: true },
  // Not a Defined Term (the default repertoire has none; dcmtk warns) but common in files.
  { charset: 'ISO_IR 6', name: 'Doe^John^^Dr.', encode: single('iso-8859-1'), dcmdump: true },
  { charset: 'ISO_IR 100', name: 'Gaëlle^Loïc', encode: single('iso-8859-1'), dcmdump: true },
  { charset: 'ISO_IR 101', name: 'Łukasz^Żółć', encode: single('iso-8859-2'), dcmdump: true },
  { charset: 'ISO_IR 109', name: 'Ġużeppi^Ħabib', encode: single('iso-8859-3'), dcmdump: true },
  { charset: 'ISO_IR 110', name: 'Ģirts^Ķļaviņš', encode: single('iso-8859-4'), dcmdump: true },
  { charset: 'ISO_IR 144', name: 'Иванов^Пётр', encode: single('iso-8859-5'), dcmdump: true },
  { charset: 'ISO_IR 127', name: 'قباني^لنزار', encode: single('iso-8859-6'), dcmdump: true },
  { charset: 'ISO_IR 126', name: 'Διονυσιος', encode: single('iso-8859-7'), dcmdump: true },
  { charset: 'ISO_IR 138', name: 'שרון^דבורה', encode: single('iso-8859-8'), dcmdump: true },
  { charset: 'ISO_IR 148', name: 'Çiğdem^Şahin', encode: single('iso-8859-9'), dcmdump: true },
  { charset: 'ISO_IR 166', name: 'สมชาย^ใจดี', encode: single('windows-874'), dcmdump: true },
  // dcmtk 3.6.7 predates ISO_IR 203.
  { charset: 'ISO_IR 203', name: 'Œuvre^Ÿves', encode: single('iso-8859-15'), dcmdump: false },
  { charset: 'ISO_IR 13', name: 'ﾔﾏﾀﾞ^ﾀﾛｳ', encode: single('shift_jis'), dcmdump: true },
  { charset: 'ISO_IR 192', name: 'Ødegård^山田=홍^길동', encode: single('utf-8'), dcmdump: true },
  { charset: 'GB18030', name: 'Wang^XiaoDong=王^小東=', encode: single('gb18030'), dcmdump: true },
  { charset: 'GBK', name: 'Wang^XiaoDong=王^小東=', encode: single('gbk'), dcmdump: true },
  {
    charset: '\\ISO 2022 IR 87',
    name: 'Yamada^Tarou=山田^太郎=やまだ^たろう',
    encode: iso2022('\\ISO 2022 IR 87'),
    dcmdump: false,
  },
  {
    // 小 (3E2E), 女 (3D77) and ま (245E) hold the bytes of '=' and '^' inside the two-byte set.
    charset: 'ISO 2022 IR 6\\ISO 2022 IR 87',
    name: 'Onna^Chiisa=小女^ま',
    encode: iso2022('ISO 2022 IR 6\\ISO 2022 IR 87'),
    dcmdump: false,
  },
  {
    charset: 'ISO 2022 IR 13\\ISO 2022 IR 87',
    name: 'ﾔﾏﾀﾞ^ﾀﾛｳ=山田^太郎=やまだ^たろう',
    encode: iso2022('ISO 2022 IR 13\\ISO 2022 IR 87'),
    dcmdump: false,
  },
  {
    // 鷗 is in JIS X 0212 only.
    charset: '\\ISO 2022 IR 87\\ISO 2022 IR 159',
    name: 'Mori^Ougai=森^鷗外',
    encode: iso2022('\\ISO 2022 IR 87\\ISO 2022 IR 159'),
    dcmdump: false,
  },
  {
    charset: '\\ISO 2022 IR 149',
    name: 'Hong^Gildong=洪^吉洞=홍^길동',
    encode: iso2022('\\ISO 2022 IR 149'),
    dcmdump: true,
  },
  {
    charset: '\\ISO 2022 IR 58',
    name: 'Zhang^XiaoDong=张^小东=',
    encode: iso2022('\\ISO 2022 IR 58'),
    dcmdump: true,
  },
  {
    // Escape sequences belong in the ideographic and phonetic groups only, as dcmtk reminds.
    charset: 'ISO 2022 IR 100\\ISO 2022 IR 126\\ISO 2022 IR 144',
    name: 'Müller^Gaëlle=Μύλλερ^Пётр',
    encode: iso2022('ISO 2022 IR 100\\ISO 2022 IR 126\\ISO 2022 IR 144'),
    dcmdump: true,
  },
];

/** A study description in the same set: text VRs other than PN follow the character set too. */
function descriptionFor(c: CharsetCase): string {
  return c.name.replace(/[\^=]/g, ' ').trim();
}

function fileFor(c: CharsetCase): Uint8Array {
  const elements: DicomElement[] = [
    { tag: 0x00080016, vr: 'UI', value: '1.2.840.10008.5.1.4.1.1.7' },
    { tag: 0x00080018, vr: 'UI', value: '2.25.77' },
    { tag: 0x00081030, vr: 'LO', value: padText(c.encode(descriptionFor(c))) },
    { tag: 0x00100010, vr: 'PN', value: padText(c.encode(c.name)) },
  ];
  if (c.charset) elements.push({ tag: 0x00080005, vr: 'CS', value: c.charset });
  return writeDicom(elements);
}

describe('Specific Character Set in files', () => {
  test.each(CASES)('$charset: $name', (c) => {
    const instance = parseDicom(fileFor(c));
    expect(instance.patient.name).toBe(c.name);
    expect(instance.studyDescription).toBe(descriptionFor(c));
    expect(instance.warnings).toEqual([]);
    const attributes = dicomAttributes(instance, { includePatient: true });
    expect(attributes.PatientName).toBe(c.name);
    expect(attributes.StudyDescription).toBe(descriptionFor(c));
  });

  test.each([
    { charset: 'ISO-IR 100', name: 'Åsa^Nilsson', label: 'iso-8859-1' },
    { charset: 'ISO_IR100', name: 'Åsa^Nilsson', label: 'iso-8859-1' },
    { charset: 'ISO 2022 IR 144', name: 'Иванов^Пётр', label: 'iso-8859-5' },
    { charset: 'UTF-8', name: 'Ødegård', label: 'utf-8' },
  ])('accepts the spelling $charset', ({ charset, name, label }) => {
    expect(decodeWithWarnings(encodeText(name, label), charset)).toEqual({ text: name, warnings: [] });
  });
});

describe('decoderLabelForCharset (for writers: the set text may use without escape sequences)', () => {
  test.each([
    { charset: undefined, label: 'latin1' },
    { charset: 'ISO_IR 100', label: 'latin1' },
    { charset: 'ISO_IR 144', label: 'iso-8859-5' },
    { charset: 'ISO_IR 148', label: 'windows-1254' },
    { charset: 'ISO_IR 166', label: 'windows-874' },
    { charset: 'ISO_IR 192', label: 'utf-8' },
    { charset: 'GB18030', label: 'gb18030' },
    { charset: 'ISO 2022 IR 100\\ISO 2022 IR 126', label: 'latin1' },
    { charset: '\\ISO 2022 IR 87', label: 'iso-2022-jp' },
    { charset: '\\ISO 2022 IR 149', label: 'us-ascii' },
  ])('$charset → $label', ({ charset, label }) => {
    expect(decoderLabelForCharset(charset)).toBe(label);
  });
});

describe('code extension state', () => {
  test.each([
    {
      what: 'each value of a multi-valued LO starts in value 1',
      vr: 'LO',
      charset: '\\ISO 2022 IR 87',
      text: '山田\\やまだ\\Yamada',
    },
    {
      what: 'a backslash in ST is text, not a value delimiter',
      vr: 'ST',
      charset: '\\ISO 2022 IR 87',
      text: '所見\\なし',
    },
    {
      what: 'lines of LT each start in value 1',
      vr: 'LT',
      charset: '\\ISO 2022 IR 149',
      text: '소견\r\n없음\r\n끝',
    },
    {
      what: 'a G1 set of value 1 returns after a delimiter',
      vr: 'PN',
      charset: 'ISO 2022 IR 100\\ISO 2022 IR 144',
      text: 'Пётр^Gaëlle=Пётр',
    },
  ])('$what', ({ vr, charset, text }) => {
    expect(decodeWithWarnings(encodeIso2022(text, charset, vr), charset, vr)).toEqual({ text, warnings: [] });
  });

  test('Korean without the escape repeated after a delimiter keeps KS X 1001 (common in files)', () => {
    const bytes = hex(`${ascii('Hong^Gildong=')} 1b242943 fbf3 5e d1ced4d7`);
    expect(decodeWithWarnings(bytes, '\\ISO 2022 IR 149')).toEqual({
      text: 'Hong^Gildong=洪^吉洞',
      warnings: [],
    });
  });

  test('a delimiter met inside JIS X 0208 (no switch back) is still a delimiter, with a warning', () => {
    const { text, warnings } = decodeWithWarnings(
      hex('1b2442 3b334544 5e 1b2442 42404f3a 1b2842'),
      '\\ISO 2022 IR 87',
    );
    expect(text).toBe('山田^太郎');
    expect(warnings).toEqual(['delimiter at byte 7 inside a two-byte set; read as a delimiter']);
  });

  test('a value 1 of ISO 2022 IR 87 alone (no empty first value) is read through its escapes', () => {
    const bytes = encodeIso2022('Yamada^Tarou=山田^太郎', '\\ISO 2022 IR 87');
    expect(decodeWithWarnings(bytes, 'ISO 2022 IR 87').text).toBe('Yamada^Tarou=山田^太郎');
  });
});

describe('bad bytes never throw', () => {
  test.each([
    {
      what: 'invalid UTF-8',
      charset: 'ISO_IR 192',
      bytes: 'ff fe 41',
      text: '\uFFFD\uFFFDA',
      warning: 'bytes 0–2 are not valid utf-8; replaced with U+FFFD',
    },
    {
      what: 'a byte ISO 8859-6 leaves unassigned',
      charset: 'ISO_IR 127',
      bytes: 'c8 a1',
      text: 'ب\uFFFD',
      warning: 'not valid iso-8859-6',
    },
    {
      what: 'a JIS X 0208 character cut at the end',
      charset: '\\ISO 2022 IR 87',
      bytes: '1b2442 3b33 45',
      text: '山\uFFFD',
      warning: 'incomplete two-byte character at byte 5',
    },
    {
      what: 'a KS X 1001 lead byte followed by ASCII',
      charset: '\\ISO 2022 IR 149',
      bytes: '1b242943 fb 41',
      text: '\uFFFDA',
      warning: 'not valid euc-kr',
    },
    {
      what: 'an unknown escape sequence',
      charset: '\\ISO 2022 IR 87',
      bytes: '1b7a 41',
      text: 'zA',
      warning: 'unknown escape sequence at byte 0',
    },
    {
      what: 'an unknown Specific Character Set term',
      charset: 'ISO_IR 999',
      bytes: ascii('Doe^John'),
      text: 'Doe^John',
      warning: "unknown Specific Character Set term 'ISO_IR 999'",
    },
    {
      what: 'Latin-1 in a file that declares no character set',
      charset: '',
      bytes: ascii('Müller'),
      text: 'Müller',
      warning: 'read as ISO 8859-1',
    },
    {
      what: 'UTF-8 in a file that declares no character set',
      charset: '',
      bytes: Buffer.from('Ødegård', 'utf8').toString('hex'),
      text: 'Ødegård',
      warning: 'read as UTF-8',
    },
    {
      what: 'high bytes with no G1 set designated',
      charset: '\\ISO 2022 IR 87',
      bytes: '1b2442 3b33 1b2842 e9',
      text: '山é',
      warning: 'no G1 set designated',
    },
  ])('$what', ({ charset, bytes, text, warning }) => {
    const result = decodeWithWarnings(hex(bytes), charset);
    expect(result.text).toBe(text);
    expect(result.warnings.join('\n')).toContain(warning);
  });

  test('random bytes decode under every set without throwing', () => {
    let seed = 7;
    const random = () => {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff;
      return seed;
    };
    const charsets = [...new Set(CASES.map((c) => c.charset)), 'ISO_IR 13', 'ISO 2022 IR 13\\ISO 2022 IR 87'];
    for (let n = 0; n < 300; n++) {
      // Escape bytes are made common so that the state machine is exercised.
      const bytes = Uint8Array.from({ length: random() % 40 }, () =>
        random() % 5 === 0 ? 0x1b : random() % 256,
      );
      for (const charset of charsets) {
        for (const vr of ['PN', 'LO', 'LT']) {
          expect(typeof decodeDicomText(bytes, charset, { vr, onWarning: () => {} })).toBe('string');
        }
      }
    }
  });

  test('a file with a bad patient name parses, warns with the tag and keeps the name out of the warning', () => {
    const instance = parseDicom(
      writeDicom([
        { tag: 0x00080005, vr: 'CS', value: 'ISO_IR 192' },
        { tag: 0x00080016, vr: 'UI', value: '1.2.3' },
        { tag: 0x00100010, vr: 'PN', value: padText(Uint8Array.from([...Buffer.from('Secret^N'), 0xff])) },
      ]),
    );
    expect(instance.patient.name).toBe('Secret^N\uFFFD');
    expect(instance.warnings).toEqual(['(0010,0010): bytes 0–9 are not valid utf-8; replaced with U+FFFD']);
  });
});

function dcmdumpConverts(): boolean {
  const probe = spawnSync('dcmdump', ['--version'], { encoding: 'utf8' });
  return probe.status === 0 && /iconv|ICU|stdlibc/i.test(probe.stdout);
}

describe.runIf(dcmdumpConverts())('agrees with dcmtk (dcmdump +U8)', () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'teleread-charset-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  test.each(CASES.filter((c) => c.dcmdump))('$charset: $name', (c) => {
    const file = path.join(dir, `${CASES.indexOf(c)}.dcm`);
    writeFileSync(file, fileFor(c));
    const dump = spawnSync('dcmdump', ['+U8', '+P', '0010,0010', '+P', '0008,1030', file], {
      encoding: 'utf8',
    });
    expect(dump.status).toBe(0);
    expect(dump.stderr).not.toMatch(/^[EF]:/m);
    const value = (tag: string) => new RegExp(`^\\(${tag}\\) \\w\\w \\[(.*)\\]`, 'm').exec(dump.stdout)?.[1];
    const instance = parseDicom(fileFor(c));
    expect(instance.patient.name).toBe(value('0010,0010'));
    expect(instance.studyDescription).toBe(value('0008,1030'));
  });
});
