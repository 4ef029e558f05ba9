import { describe, expect, test } from 'vitest';
import { AppError } from '../../src/errors.js';
import { crc32, parseGeMuseXml } from '../../src/formats/ecg/ge-muse.js';
import { parseHl7Aecg } from '../../src/formats/ecg/hl7-aecg.js';
import { decodeXli, lzwDecompress, parsePhilipsXml } from '../../src/formats/ecg/philips-xml.js';
import { decodeXmlText, parseXmlDocument } from '../../src/formats/ecg/xml.js';
import { TWELVE } from '../helpers/ecg-synthetic.js';

const enc = (s: string) => new TextEncoder().encode(s);

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (err) {
    return err instanceof AppError ? err.code : `not an AppError: ${err}`;
  }
  return undefined;
}

describe('XML reading', () => {
  test('elements, attributes, entities, CDATA, comments; prefixes dropped', () => {
    const root = parseXmlDocument(
      enc(
        '<?xml version="1.0"?><!-- c --><a:root xmlns:a="u" a:x="1 &amp; 2"><b>x &lt; y &#65;</b><![CDATA[<raw>]]><c/></a:root>',
      ),
      'test',
    );
    expect(root.name).toBe('root');
    expect(root.attributes.x).toBe('1 & 2');
    expect(root.children.map((c) => c.name)).toEqual(['b', 'c']);
    expect(root.children[0]!.text).toBe('x < y A');
    expect(root.text).toBe('<raw>');
  });

  test('UTF-16 with a BOM and ISO-8859-1 by declaration', () => {
    const units = Array.from('<a>é</a>', (c) => c.charCodeAt(0));
    const utf16 = new Uint8Array([0xff, 0xfe, ...units.flatMap((u) => [u & 0xff, u >> 8])]);
    expect(decodeXmlText(utf16)).toBe('<a>é</a>');
    expect(parseXmlDocument(utf16.subarray(2), 't').text).toBe('é');
    const latin1 = Uint8Array.from([
      ...enc('<?xml version="1.0" encoding="ISO-8859-1"?><a>'),
      0xe9,
      ...enc('</a>'),
    ]);
    expect(parseXmlDocument(latin1, 't').text).toBe('é');
  });

  test.each([
    [
      'billion laughs',
      '<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;">]><lolz>&lol2;</lolz>',
    ],
    [
      'external entity',
      '<?xml version="1.0"?><!DOCTYPE foo [<!ENTITY xxe SYSTEM "file:///etc/passwd">]><foo>&xxe;</foo>',
    ],
    ['parameter entity', '<!DOCTYPE foo [<!ENTITY % p SYSTEM "http://example.invalid/x.dtd"> %p;]><foo/>'],
  ])('%s is refused before parsing', (_label, xml) => {
    expect(codeOf(() => parseXmlDocument(enc(xml), 'test'))).toBe('UNSUPPORTED_FORMAT');
  });

  test('an undeclared entity stays literal text (never expanded, never fetched)', () => {
    expect(parseXmlDocument(enc('<a>&xxe;</a>'), 't').text).toBe('&xxe;');
  });

  test.each([
    ['unclosed element', '<a><b></a>'],
    ['truncated', '<a><b>text'],
    ['two roots', '<a/><b/>'],
    ['bad attribute', '<a x=1/>'],
    ['empty', ''],
  ])('%s → CORRUPT_FILE', (_label, xml) => {
    expect(codeOf(() => parseXmlDocument(enc(xml), 'test'))).toBe('CORRUPT_FILE');
  });
});

function aecg(digits: Record<string, string>, increment = '0.002', unit = 's', scale = '2.5'): string {
  const leads = Object.entries(digits)
    .map(
      ([
        code,
        d,
      ]) => `<component><sequence><code code="${code}"/><value xsi:type="SLIST_PQ"><origin value="0" unit="uV"/>
      <scale value="${scale}" unit="uV"/><digits>${d}</digits></value></sequence></component>`,
    )
    .join('');
  return `<AnnotatedECG xmlns="urn:hl7-org:v3" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
  <component><series><code code="RHYTHM"/><component><sequenceSet>
  <component><sequence><code code="TIME_ABSOLUTE"/><value xsi:type="GLIST_TS"><head value="20240102030405.000"/>
  <increment value="${increment}" unit="${unit}"/></value></sequence></component>${leads}
  </sequenceSet></component></series></component></AnnotatedECG>`;
}

describe('parseHl7Aecg', () => {
  test.each([
    ['seconds', '0.002', 's', 500],
    ['milliseconds', '1', 'ms', 1000],
  ])('increment in %s', (_label, increment, unit, fs) => {
    const ecg = parseHl7Aecg(
      enc(aecg({ MDC_ECG_LEAD_I: '1 2 3', MDC_ECG_LEAD_AVR: '-4 5 6' }, increment, unit)),
    );
    expect(ecg.samplingFrequency).toBe(fs);
    expect(ecg.leads.map((l) => l.name)).toEqual(['I', 'aVR']);
    expect(Array.from(ecg.leads[1]!.samplesUv)).toEqual([-10, 12.5, 15]);
    expect(ecg.startTime).toBe('2024-01-02T03:04:05.000');
  });

  test('origin and scale in mV', () => {
    const xml = aecg({ MDC_ECG_LEAD_II: '1 2' }).replace(
      '<origin value="0" unit="uV"/>',
      '<origin value="0.1" unit="mV"/>',
    );
    expect(Array.from(parseHl7Aecg(enc(xml)).leads[0]!.samplesUv)).toEqual([102.5, 105]);
  });

  test.each([
    ['no series', '<AnnotatedECG xmlns="urn:hl7-org:v3"></AnnotatedECG>', 'CORRUPT_FILE'],
    ['a digit that is not a number', aecg({ MDC_ECG_LEAD_I: '1 2 x3' }), 'CORRUPT_FILE'],
    ['no increment', aecg({ MDC_ECG_LEAD_I: '1' }).replace(/<increment[^>]*>/, ''), 'CORRUPT_FILE'],
    ['another root element', '<ClinicalDocument/>', 'UNSUPPORTED_FORMAT'],
    ['truncated document', aecg({ MDC_ECG_LEAD_I: '1 2 3' }).slice(0, 300), 'CORRUPT_FILE'],
  ])('%s → %s', (_label, xml, code) => {
    expect(codeOf(() => parseHl7Aecg(enc(xml)))).toBe(code);
  });
});

function museLead(id: string, values: number[], options: { bytes?: number; crc?: number } = {}): string {
  const bytes = new Uint8Array(new Int16Array(values).buffer);
  const b64 = Buffer.from(bytes).toString('base64');
  return `<LeadData><LeadByteCountTotal>${options.bytes ?? bytes.length}</LeadByteCountTotal><LeadSampleCountTotal>${values.length}</LeadSampleCountTotal>
  <LeadAmplitudeUnitsPerBit>4.88</LeadAmplitudeUnitsPerBit><LeadAmplitudeUnits>MICROVOLTS</LeadAmplitudeUnits><LeadID>${id}</LeadID>
  <LeadSampleSize>2</LeadSampleSize><LeadDataCRC32>${options.crc ?? crc32(bytes)}</LeadDataCRC32><WaveFormData>${b64}</WaveFormData></LeadData>`;
}

function muse(leads: string): string {
  return `<?xml version="1.0" encoding="ISO-8859-1"?><!DOCTYPE RestingECG SYSTEM "restecg.dtd"><RestingECG>
  <PatientDemographics><PatientID>123</PatientID><PatientLastName>DOE</PatientLastName></PatientDemographics>
  <TestDemographics><AcquisitionDevice>MAC55</AcquisitionDevice><AcquisitionDate>03-14-2021</AcquisitionDate><AcquisitionTime>08:09:10</AcquisitionTime></TestDemographics>
  <RestingECGMeasurements><VentricularRate>61</VentricularRate></RestingECGMeasurements>
  <Waveform><WaveformType>Rhythm</WaveformType><SampleBase>250</SampleBase><SampleExponent>0</SampleExponent><ACFilter>50</ACFilter>${leads}</Waveform></RestingECG>`;
}

describe('parseGeMuseXml', () => {
  const eight = ['I', 'II', 'V1', 'V2', 'V3', 'V4', 'V5', 'V6'];
  test('8 stored leads → 12 with III, aVR, aVL, aVF derived; demographics kept apart', () => {
    const ecg = parseGeMuseXml(enc(muse(eight.map((id, k) => museLead(id, [k, 100 + k, -200])).join(''))));
    expect(ecg.leads.map((l) => l.name)).toEqual(TWELVE);
    expect(ecg.leads.filter((l) => l.derived).map((l) => l.name)).toEqual(['III', 'aVR', 'aVL', 'aVF']);
    const get = (n: string) => ecg.leads.find((l) => l.name === n)!.samplesUv;
    expect(get('II')[1]).toBeCloseTo(101 * 4.88, 3);
    expect(get('III')[1]).toBeCloseTo((101 - 100) * 4.88, 3);
    expect(ecg.samplingFrequency).toBe(250);
    expect(ecg.startTime).toBe('2021-03-14T08:09:10');
    expect(ecg.device).toBe('GE MAC55');
    expect(ecg.measurements?.ventricularRate).toBe(61);
    expect(ecg.acquisition.notchFilterFrequency).toBe(50);
    expect(ecg.patient).toEqual({ id: '123', name: 'DOE' });
    expect(JSON.stringify(ecg.acquisition)).not.toContain('DOE');
  });

  test.each([
    ['CRC mismatch', museLead('I', [1, 2, 3], { crc: 1 }), /LeadDataCRC32/],
    ['byte count mismatch', museLead('I', [1, 2, 3], { bytes: 8 }), /LeadByteCountTotal/],
    [
      'base64 damaged',
      museLead('I', [1, 2, 3]).replace(/<WaveFormData>[^<]*/, '<WaveFormData>AQ*I'),
      /base64/,
    ],
  ])('%s → CORRUPT_FILE', (_label, lead, message) => {
    expect(() => parseGeMuseXml(enc(muse(lead)))).toThrowError(message);
    expect(codeOf(() => parseGeMuseXml(enc(muse(lead))))).toBe('CORRUPT_FILE');
  });
});

/** A minimal LZW encoder with the XLI conventions (10-bit codes, MSB first, no clear code) for round trips. */
function lzwCompress(input: Uint8Array): Uint8Array {
  const dict = new Map<string, number>();
  for (let i = 0; i < 256; i++) dict.set(String.fromCharCode(i), i);
  let next = 256;
  const codes: number[] = [];
  let w = '';
  for (const byte of input) {
    const c = String.fromCharCode(byte);
    if (dict.has(w + c)) w += c;
    else {
      codes.push(dict.get(w)!);
      if (next <= 1022) dict.set(w + c, next++);
      w = c;
    }
  }
  if (w) codes.push(dict.get(w)!);
  const out: number[] = [];
  let acc = 0;
  let bits = 0;
  for (const code of codes) {
    acc = (acc << 10) | code;
    bits += 10;
    while (bits >= 8) {
      out.push((acc >>> (bits - 8)) & 0xff);
      bits -= 8;
    }
  }
  if (bits > 0) out.push((acc << (8 - bits)) & 0xff);
  return Uint8Array.from(out);
}

describe('XLI (Philips)', () => {
  test('LZW round trip, including the KwKwK case', () => {
    const data = enc('abababababababab the rain in spain falls mainly on the plain aaaaaaaaaaaaaaaaaaaaaa');
    expect(new TextDecoder().decode(lzwDecompress(lzwCompress(data), 1000, 't'))).toBe(
      new TextDecoder().decode(data),
    );
  });

  test('LZW output past the cap → CORRUPT_FILE', () => {
    expect(codeOf(() => lzwDecompress(lzwCompress(new Uint8Array(500)), 100, 't'))).toBe('CORRUPT_FILE');
  });

  test('a chunk whose size runs past the payload → CORRUPT_FILE', () => {
    const payload = Uint8Array.from([200, 0, 0, 0, 1, 0, 0, 0, 1, 2, 3]);
    expect(codeOf(() => decodeXli(payload, 12, 5000))).toBe('CORRUPT_FILE');
  });

  test('an unsupported document version → UNSUPPORTED_FORMAT', () => {
    const xml =
      '<restingecgdata><documentinfo><documentversion>2.00</documentversion></documentinfo></restingecgdata>';
    expect(codeOf(() => parsePhilipsXml(enc(xml)))).toBe('UNSUPPORTED_FORMAT');
  });
});
