import { createHash } from 'node:crypto';
import { describe, expect, test } from 'vitest';
import {
  type AddendumForView,
  buildDiagnosticReport,
  CODE_SYSTEMS,
  canonicalJson,
  checkReadyToSign,
  draftHash,
  FHIR_CRITICAL_EXTENSION,
  type FhirReportInput,
  fhirDate,
  humanName,
  isCritical,
  loincCheckValid,
  parseAddendum,
  parseReportDraft,
  type ReportDraft,
  type ReportForView,
  renderReportText,
  reportAccess,
  reportStatus,
  sha256Hex,
  signAddendumContent,
  signReportContent,
  verhoeffValid,
  verifySignature,
} from '../../src/domain/report.js';
import {
  checkWebhookSecret,
  checkWebhookUrl,
  signWebhook,
  verifyWebhookSignature,
  webhookRetryDelayMs,
} from '../../src/domain/webhook.js';
import { AppError } from '../../src/errors.js';

const draft: ReportDraft = {
  findings: 'Consolidation in the right lower lobe.',
  impression: 'Right lower lobe pneumonia.',
  critical: false,
  codes: [{ system: CODE_SYSTEMS.snomed, code: '233604007', display: 'Pneumonia' }],
};

function codeOf(err: unknown): string | undefined {
  return err instanceof AppError ? err.code : undefined;
}

function thrown(fn: () => unknown): unknown {
  try {
    fn();
  } catch (err) {
    return err;
  }
  return undefined;
}

describe('codes', () => {
  test.each([
    ['snomed', '22298006', CODE_SYSTEMS.snomed],
    ['SNOMED-CT', '233604007', CODE_SYSTEMS.snomed],
    ['http://snomed.info/sct', '404684003', CODE_SYSTEMS.snomed],
    ['sct', '138875005', CODE_SYSTEMS.snomed],
    ['loinc', '18748-4', CODE_SYSTEMS.loinc],
    ['http://loinc.org', '8867-4', CODE_SYSTEMS.loinc],
    ['loinc', 'LA6576-8', CODE_SYSTEMS.loinc],
    ['icd-10', 'I21.9', CODE_SYSTEMS.icd10],
    ['icd-10-cm', 'S72.001A', CODE_SYSTEMS.icd10cm],
    ['icd10', 'J18', CODE_SYSTEMS.icd10],
    ['radlex', 'RID5350', CODE_SYSTEMS.radlex],
    ['urn:oid:2.16.840.1.113883.6.96', 'anything-goes', 'urn:oid:2.16.840.1.113883.6.96'],
    ['https://example.org/codes', 'X-1', 'https://example.org/codes'],
  ])('%s %s is accepted as %s', (system, code, canonical) => {
    const parsed = parseReportDraft({ codes: [{ system, code }] });
    expect(parsed.codes).toEqual([{ system: canonical, code }]);
  });

  test.each([
    ['snomed', '22298007', 'check digit'],
    ['snomed', '12345', 'identifier'],
    ['snomed', '022298006', 'identifier'],
    // A description id (partition 01) of an otherwise valid shape.
    ['snomed', '2154018', 'concept'],
    ['loinc', '18748-5', 'LOINC'],
    ['loinc', '18748', 'LOINC'],
    ['icd-10', 'I2', 'ICD-10'],
    ['icd-10', 'i21.9', 'ICD-10'],
    ['radlex', '5350', 'RadLex'],
    ['snomedct', '22298006', 'URI'],
    ['ftp://x', '1', 'URI'],
    ['snomed', '', 'code'],
    ['snomed', '22298 006', 'code'],
  ])('%s "%s" is refused (%s)', (system, code, words) => {
    const err = thrown(() => parseReportDraft({ codes: [{ system, code }] }));
    expect(codeOf(err)).toBe('VALIDATION_FAILED');
    expect((err as Error).message).toContain(words);
  });

  test('check digits', () => {
    expect(verhoeffValid('22298006')).toBe(true);
    expect(verhoeffValid('22298060')).toBe(false);
    expect(verhoeffValid('2229800x')).toBe(false);
    expect(loincCheckValid('11524-6')).toBe(true);
    expect(loincCheckValid('11524-7')).toBe(false);
  });

  test('duplicate codes are dropped, display kept, unknown keys refused', () => {
    const parsed = parseReportDraft({
      codes: [
        { system: 'snomed', code: '22298006', display: ' Myocardial infarction ' },
        { system: 'http://snomed.info/sct', code: '22298006' },
      ],
    });
    expect(parsed.codes).toEqual([
      { system: CODE_SYSTEMS.snomed, code: '22298006', display: 'Myocardial infarction' },
    ]);
    expect(
      codeOf(thrown(() => parseReportDraft({ codes: [{ system: 'snomed', code: '22298006', x: 1 }] }))),
    ).toBe('VALIDATION_FAILED');
  });
});

describe('drafts and addenda', () => {
  test('missing fields are empty; CRLF signs like LF', () => {
    expect(parseReportDraft({})).toEqual({ findings: '', impression: '', critical: false, codes: [] });
    const a = parseReportDraft({ findings: 'line 1\r\nline 2', impression: 'x' });
    const b = parseReportDraft({ findings: 'line 1\nline 2', impression: 'x' });
    expect(a).toEqual(b);
    expect(draftHash(a)).toBe(draftHash(b));
  });

  test.each([
    [null, 'JSON object'],
    [[], 'JSON object'],
    [{ findings: 3 }, 'findings must be a string'],
    [{ critical: 'yes' }, 'critical'],
    [{ codes: {} }, 'codes must be an array'],
    [{ impression: 'a\u0000b' }, 'control characters'],
    [{ findings: 'x'.repeat(20_001) }, 'at most'],
    [{ status: 'final' }, 'no field "status"'],
  ])('%j is refused', (input, words) => {
    const err = thrown(() => parseReportDraft(input));
    expect(codeOf(err)).toBe('VALIDATION_FAILED');
    expect((err as Error).message).toContain(words);
  });

  test('a report is signed only with an impression', () => {
    expect(codeOf(thrown(() => checkReadyToSign({ ...draft, impression: '  \n' })))).toBe('CONFLICT');
    expect(() => checkReadyToSign(draft)).not.toThrow();
  });

  test('addenda need text', () => {
    expect(parseAddendum({ text: 'Compared with prior.', critical: true })).toEqual({
      text: 'Compared with prior.',
      critical: true,
    });
    expect(codeOf(thrown(() => parseAddendum({ text: '   ' })))).toBe('VALIDATION_FAILED');
    expect(codeOf(thrown(() => parseAddendum({ text: 'x', signedBy: 'me' })))).toBe('VALIDATION_FAILED');
  });
});

describe('canonical JSON and signatures', () => {
  test('keys sorted, no whitespace, undefined members left out', () => {
    const json = canonicalJson({ b: 1, a: [true, null, 'x'], c: undefined });
    expect(json).toBe('{"a":[true,null,"x"],"b":1}');
    // The same bytes sha256sum gives for that text.
    expect(sha256Hex(json)).toBe('54a65415ad370228851a1da4b31b6fd42dc58b19a50d35cae759325f7388ce64');
    expect(canonicalJson({ z: { y: 1, x: 'é' }, a: 'ü' })).toBe('{"a":"ü","z":{"x":"é","y":1}}');
    expect(codeOf(thrown(() => canonicalJson({ n: Number.NaN })))).toBe('VALIDATION_FAILED');
    expect(codeOf(thrown(() => canonicalJson({ f: () => 1 })))).toBe('VALIDATION_FAILED');
  });

  const signedAt = new Date('2025-03-01T10:20:30.456Z');
  const signer = { readerId: 'dr-a', name: 'Dr A' };
  const sign = (d: ReportDraft, s = signer, at = signedAt) =>
    signReportContent({ reportId: 'r1', caseId: 'c1', draft: d, signer: s, signedAt: at });

  test('the hash is the sha256 of the canonical content, whatever the key order', () => {
    const a = sign(draft);
    const reordered = sign({
      codes: draft.codes,
      critical: draft.critical,
      impression: draft.impression,
      findings: draft.findings,
    });
    expect(a.contentHash).toBe(createHash('sha256').update(a.canonical, 'utf8').digest('hex'));
    expect(reordered.canonical).toBe(a.canonical);
    expect(JSON.parse(a.canonical)).toMatchObject({
      format: 'teleread.report/1',
      caseId: 'c1',
      signedAt: '2025-03-01T10:20:30.456Z',
      signer,
    });
    expect(verifySignature(a)).toBe(true);
    expect(verifySignature({ ...a, canonical: a.canonical.replace('pneumonia', 'pneumonitis') })).toBe(false);
  });

  test.each([
    ['findings', { ...draft, findings: `${draft.findings} ` }],
    ['impression', { ...draft, impression: 'Normal.' }],
    ['critical flag', { ...draft, critical: true }],
    ['codes', { ...draft, codes: [] }],
  ])('changing the %s changes the hash', (_what, changed) => {
    expect(sign(changed).contentHash).not.toBe(sign(draft).contentHash);
  });

  test('the signer and the time are bound too', () => {
    expect(sign(draft, { readerId: 'dr-b', name: 'Dr A' }).contentHash).not.toBe(sign(draft).contentHash);
    expect(sign(draft, signer, new Date(signedAt.getTime() + 1)).contentHash).not.toBe(
      sign(draft).contentHash,
    );
  });

  test('addenda chain to the report and to each other', () => {
    const report = sign(draft);
    const first = signAddendumContent({
      reportId: 'r1',
      caseId: 'c1',
      seq: 1,
      addendum: { text: 'Prior study reviewed.', critical: false },
      signer,
      signedAt,
      previousHash: report.contentHash,
    });
    const second = signAddendumContent({
      reportId: 'r1',
      caseId: 'c1',
      seq: 2,
      addendum: { text: 'Discussed with Dr B.', critical: false },
      signer,
      signedAt,
      previousHash: first.contentHash,
    });
    expect(first.content.previousHash).toBe(report.contentHash);
    expect(second.content.previousHash).toBe(first.contentHash);
    expect(verifySignature(second)).toBe(true);
    // Another predecessor gives another hash: an addendum cannot be moved to another place in the chain.
    const moved = signAddendumContent({
      reportId: 'r1',
      caseId: 'c1',
      seq: 2,
      addendum: { text: 'Discussed with Dr B.', critical: false },
      signer,
      signedAt,
      previousHash: report.contentHash,
    });
    expect(moved.contentHash).not.toBe(second.contentHash);
  });
});

describe('who may read a report', () => {
  const facts = { siteId: 'clinic-a', signed: true, signerReaderId: 'dr-a', leaseHolderId: null };
  const draftFacts = { ...facts, signed: false, signerReaderId: null, leaseHolderId: 'dr-a' };
  test.each([
    ['admin', null, null, facts, 'full'],
    ['ops', null, null, facts, 'redacted'],
    ['ops', null, null, draftFacts, 'redacted'],
    ['clinic', 'clinic-a', null, facts, 'full'],
    ['clinic', 'clinic-b', null, facts, null],
    ['clinic', 'clinic-a', null, draftFacts, null],
    ['reader', null, 'dr-a', facts, 'full'],
    ['reader', null, 'dr-b', facts, null],
    ['reader', null, 'dr-a', draftFacts, 'full'],
    ['reader', null, 'dr-b', draftFacts, null],
    ['reader', null, 'dr-a', { ...draftFacts, leaseHolderId: null }, null],
  ] as const)('%s (site %s, reader %s) → %s', (role, siteId, readerId, f, expected) => {
    expect(reportAccess({ role, siteId, readerId }, f)).toBe(expected);
  });
});

describe('webhook signatures', () => {
  const secret = 'whsec_test_0123456789';
  const body = '{"event":"report.signed"}';

  test('sha256=<hex HMAC of "<timestamp>.<body>"> (vector from openssl dgst -hmac)', () => {
    expect(signWebhook(secret, 1700000000, body)).toBe(
      'sha256=c4c8d67a6c59488ebad74656910473a7fbdc784087130451412ed43c029575da',
    );
  });

  test('the receiver accepts a fresh, intact request and nothing else', () => {
    const signature = signWebhook(secret, 1700000000, body);
    const ok = { secret, body, signature, timestamp: '1700000000', nowSeconds: 1700000010 };
    expect(verifyWebhookSignature(ok)).toBe(true);
    expect(verifyWebhookSignature({ ...ok, body: `${body} ` })).toBe(false);
    expect(verifyWebhookSignature({ ...ok, secret: `${secret}x` })).toBe(false);
    // Replay: the same request much later, or with a new timestamp the MAC does not cover.
    expect(verifyWebhookSignature({ ...ok, nowSeconds: 1700000000 + 301 })).toBe(false);
    expect(verifyWebhookSignature({ ...ok, timestamp: '1700000300', nowSeconds: 1700000300 })).toBe(false);
    expect(verifyWebhookSignature({ ...ok, signature: undefined })).toBe(false);
    expect(verifyWebhookSignature({ ...ok, timestamp: '17e8' })).toBe(false);
  });

  test.each([
    ['http://127.0.0.1:8080/hook', true],
    ['https://clinic.example/hooks/teleread?x=1', true],
    ['ftp://clinic.example/', false],
    ['file:///etc/passwd', false],
    ['javascript:alert(1)', false],
    ['https://user:pw@clinic.example/', false],
    ['https://clinic.example/#frag', false],
    ['not a url', false],
  ])('webhook URL %s accepted: %s', (url, ok) => {
    if (ok) expect(checkWebhookUrl(url)).toBe(new URL(url).href);
    else expect(codeOf(thrown(() => checkWebhookUrl(url)))).toBe('VALIDATION_FAILED');
  });

  test('secrets and backoff', () => {
    expect(codeOf(thrown(() => checkWebhookSecret('short')))).toBe('VALIDATION_FAILED');
    expect(checkWebhookSecret(secret)).toBe(secret);
    expect([1, 2, 3, 4].map((n) => webhookRetryDelayMs(n, 1000))).toEqual([1000, 2000, 4000, 8000]);
  });
});

describe('FHIR R4 DiagnosticReport', () => {
  const signedAt = new Date('2025-03-01T10:20:30.456Z');
  const signed = signReportContent({
    reportId: 'r1',
    caseId: 'c1',
    draft,
    signer: { readerId: 'dr-a', name: 'Dr A' },
    signedAt,
  });
  const report: ReportForView = {
    id: '0b8f5a2e-7c1d-4e55-9a51-1d1c2b3a4f50',
    caseId: '5a4b3c2d-1e0f-4a9b-8c7d-6e5f4a3b2c1d',
    draft,
    createdAt: new Date('2025-03-01T10:00:00Z'),
    updatedAt: signedAt,
    signedAt,
    signer: { readerId: 'dr-a', name: 'Dr A' },
    contentHash: signed.contentHash,
  };
  const base: FhirReportInput = {
    report,
    addenda: [],
    study: {
      kind: 'imaging',
      caseId: report.caseId,
      studyInstanceUid: '1.2.826.0.1.3680043.8.498.1',
      modalities: ['CR'],
      seriesCount: 1,
      instanceCount: 2,
      startedAt: '2025-02-28',
      heartRate: null,
    },
    patient: {
      mode: 'identified',
      siteId: 'clinic-a',
      patient: { id: 'MRN-77', name: 'Doe^Jane^Q^Dr', birthDate: '19800131', sex: 'F' },
    },
    includeText: true,
    baseUrl: 'https://hub.example',
  };
  const contained = (r: Record<string, unknown>, type: string) =>
    (r.contained as Array<Record<string, unknown>>).find((c) => c.resourceType === type)!;

  test('a signed imaging report: final, coded, with the patient and the ImagingStudy', () => {
    const r = buildDiagnosticReport(base);
    expect(r).toMatchObject({
      resourceType: 'DiagnosticReport',
      id: report.id,
      status: 'final',
      code: { coding: [{ system: 'http://loinc.org', code: '18748-4' }] },
      category: [{ coding: [{ system: 'http://terminology.hl7.org/CodeSystem/v2-0074', code: 'RAD' }] }],
      subject: { reference: '#patient' },
      imagingStudy: [{ reference: '#study' }],
      issued: signedAt.toISOString(),
      effectiveDateTime: '2025-02-28',
      conclusion: draft.impression,
      conclusionCode: [
        {
          coding: [{ system: 'http://snomed.info/sct', code: '233604007', display: 'Pneumonia' }],
          text: 'Pneumonia',
        },
      ],
      resultsInterpreter: [{ display: 'Dr A', identifier: { value: 'dr-a' } }],
      extension: [{ url: FHIR_CRITICAL_EXTENSION, valueBoolean: false }],
    });
    expect(contained(r, 'Patient')).toEqual({
      resourceType: 'Patient',
      id: 'patient',
      identifier: [{ system: 'https://hub.example/fhir/sid/sites/clinic-a/patient-id', value: 'MRN-77' }],
      name: [{ text: 'Dr Jane Q Doe', family: 'Doe', given: ['Jane', 'Q'], prefix: ['Dr'] }],
      gender: 'female',
      birthDate: '1980-01-31',
    });
    expect(contained(r, 'ImagingStudy')).toMatchObject({
      id: 'study',
      status: 'available',
      subject: { reference: '#patient' },
      identifier: [
        { system: 'urn:dicom:uid', value: 'urn:oid:1.2.826.0.1.3680043.8.498.1' },
        { system: 'urn:ietf:rfc:3986', value: `urn:uuid:${report.caseId}` },
      ],
      modality: [{ system: 'http://dicom.nema.org/resources/ontology/DCM', code: 'CR' }],
      numberOfSeries: 1,
      numberOfInstances: 2,
    });
    const [form] = r.presentedForm as Array<{
      data: string;
      hash: string;
      size: number;
      contentType: string;
    }>;
    const bytes = Buffer.from(form!.data, 'base64');
    expect(form!.contentType).toBe('text/plain; charset=utf-8');
    expect(form!.size).toBe(bytes.length);
    expect(form!.hash).toBe(createHash('sha1').update(bytes).digest('base64'));
    expect(bytes.toString('utf8')).toContain(draft.impression);
    expect(bytes.toString('utf8')).toContain(signed.contentHash);
  });

  test('de-identified: no name, id or birth date anywhere; the Patient is marked redacted', () => {
    const r = buildDiagnosticReport({
      ...base,
      patient: { mode: 'deidentified' },
      study: { ...base.study, startedAt: null },
    });
    const text = JSON.stringify(r);
    for (const s of ['MRN-77', 'Doe', 'Jane', '1980', '19800131']) expect(text).not.toContain(s);
    expect(contained(r, 'Patient')).toMatchObject({ meta: { security: [{ code: 'REDACTED' }] } });
    expect(contained(r, 'Patient').identifier).toBeUndefined();
  });

  test('an ECG report links an Observation with the heart rate', () => {
    const r = buildDiagnosticReport({
      ...base,
      study: { ...base.study, kind: 'ecg', studyInstanceUid: null, modalities: [], heartRate: 38 },
    });
    expect(r.imagingStudy).toBeUndefined();
    expect(r.result).toEqual([{ reference: '#ecg' }]);
    expect(r.code).toEqual({
      coding: [{ system: 'http://loinc.org', code: '11524-6', display: 'EKG study' }],
    });
    expect(contained(r, 'Observation')).toMatchObject({
      id: 'ecg',
      status: 'final',
      subject: { reference: '#patient' },
      component: [
        {
          code: { coding: [{ system: 'http://loinc.org', code: '8867-4' }] },
          valueQuantity: { value: 38, unit: '/min', system: 'http://unitsofmeasure.org', code: '/min' },
        },
      ],
    });
  });

  test('a draft is preliminary; addenda make it amended and join the conclusion', () => {
    const draftView = { ...report, signedAt: null, signer: null, contentHash: null };
    const prelim = buildDiagnosticReport({ ...base, report: draftView });
    expect(prelim.status).toBe('preliminary');
    expect(prelim.resultsInterpreter).toBeUndefined();
    const addendum: AddendumForView = {
      seq: 1,
      text: 'Follow-up in 6 weeks.',
      critical: true,
      signedAt: new Date('2025-03-02T08:00:00Z'),
      signer: { readerId: 'dr-a', name: 'Dr A' },
      contentHash: 'f'.repeat(64),
    };
    const amended = buildDiagnosticReport({ ...base, addenda: [addendum] });
    expect(amended.status).toBe('amended');
    expect(amended.conclusion).toContain('Addendum 1');
    expect(amended.conclusion).toContain('Follow-up in 6 weeks.');
    expect(amended.extension).toEqual([{ url: FHIR_CRITICAL_EXTENSION, valueBoolean: true }]);
    expect(reportStatus(report, [addendum])).toBe('amended');
    expect(isCritical(report, [addendum])).toBe(true);
    expect(renderReportText(report, [addendum])).toContain('ADDENDUM 1 (CRITICAL)');
  });

  test('without text (ops): no conclusion and no presented form, codes kept', () => {
    const r = buildDiagnosticReport({ ...base, includeText: false, patient: { mode: 'deidentified' } });
    expect(r.conclusion).toBeUndefined();
    expect(r.presentedForm).toBeUndefined();
    expect(r.conclusionCode).toBeDefined();
  });

  test.each([
    ['Doe^John', { text: 'John Doe', family: 'Doe', given: ['John'] }],
    ['Yamada^Tarou=山田^太郎', { text: 'Tarou Yamada', family: 'Yamada', given: ['Tarou'] }],
    ['Anonymous', { text: 'Anonymous' }],
    ['', null],
  ])('PN %j → %j', (pn, name) => {
    expect(humanName(pn)).toEqual(name);
  });

  test.each([
    ['19800131', '1980-01-31'],
    ['1980-01-31', '1980-01-31'],
    ['1980', '1980'],
    ['1980-13', null],
    ['19801301', null],
    ['31/01/1980', null],
    [undefined, null],
  ])('date %j → %j', (input, out) => {
    expect(fhirDate(input)).toBe(out);
  });
});
