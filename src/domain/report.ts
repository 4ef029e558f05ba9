import { createHash } from 'node:crypto';
import type { CaseKind, Role } from '../db/schema.js';
import { AppError } from '../errors.js';
import type { PatientInfo } from '../formats/types.js';

/**
 * Reports: what a reader writes, what signing binds, and how a report is shown (our JSON, plain text, FHIR R4).
 * Pure: the database layer stores what these functions return and never hashes anything itself.
 */

export const REPORT_LIMITS = {
  findings: 20_000,
  impression: 5_000,
  addendum: 10_000,
  codes: 50,
  display: 500,
} as const;

/** A coded finding or diagnosis as FHIR writes a Coding: `system` is a canonical URI. */
export interface ReportCode {
  system: string;
  code: string;
  display?: string | undefined;
}

export interface ReportDraft {
  findings: string;
  impression: string;
  critical: boolean;
  codes: ReportCode[];
}

export const CODE_SYSTEMS = {
  snomed: 'http://snomed.info/sct',
  loinc: 'http://loinc.org',
  icd10: 'http://hl7.org/fhir/sid/icd-10',
  icd10cm: 'http://hl7.org/fhir/sid/icd-10-cm',
  radlex: 'http://radlex.org',
} as const;

/** Short names a client may send instead of the canonical URI. */
const SYSTEM_ALIASES: Record<string, string> = {
  snomed: CODE_SYSTEMS.snomed,
  'snomed-ct': CODE_SYSTEMS.snomed,
  sct: CODE_SYSTEMS.snomed,
  loinc: CODE_SYSTEMS.loinc,
  'icd-10': CODE_SYSTEMS.icd10,
  icd10: CODE_SYSTEMS.icd10,
  'icd-10-cm': CODE_SYSTEMS.icd10cm,
  icd10cm: CODE_SYSTEMS.icd10cm,
  radlex: CODE_SYSTEMS.radlex,
};

const SYSTEM_LABEL: Record<string, string> = {
  [CODE_SYSTEMS.snomed]: 'SNOMED CT',
  [CODE_SYSTEMS.loinc]: 'LOINC',
  [CODE_SYSTEMS.icd10]: 'ICD-10',
  [CODE_SYSTEMS.icd10cm]: 'ICD-10-CM',
  [CODE_SYSTEMS.radlex]: 'RadLex',
};

// Verhoeff tables: SNOMED CT identifiers end in a Verhoeff check digit, so a typo in a code is caught here
// rather than by the clinic's terminology server.
const VERHOEFF_D = [
  [0, 1, 2, 3, 4, 5, 6, 7, 8, 9],
  [1, 2, 3, 4, 0, 6, 7, 8, 9, 5],
  [2, 3, 4, 0, 1, 7, 8, 9, 5, 6],
  [3, 4, 0, 1, 2, 8, 9, 5, 6, 7],
  [4, 0, 1, 2, 3, 9, 5, 6, 7, 8],
  [5, 9, 8, 7, 6, 0, 4, 3, 2, 1],
  [6, 5, 9, 8, 7, 1, 0, 4, 3, 2],
  [7, 6, 5, 9, 8, 2, 1, 0, 4, 3],
  [8, 7, 6, 5, 9, 3, 2, 1, 0, 4],
  [9, 8, 7, 6, 5, 4, 3, 2, 1, 0],
];
const VERHOEFF_P = [
  [0, 1, 2, 3, 4, 5, 6, 7, 8, 9],
  [1, 5, 7, 6, 2, 8, 3, 0, 9, 4],
  [5, 8, 0, 3, 7, 9, 6, 1, 4, 2],
  [8, 9, 1, 6, 0, 4, 3, 5, 2, 7],
  [9, 4, 5, 3, 1, 2, 6, 8, 7, 0],
  [4, 2, 8, 6, 5, 7, 3, 9, 0, 1],
  [2, 7, 9, 3, 8, 0, 6, 4, 1, 5],
  [7, 0, 4, 6, 9, 1, 3, 2, 5, 8],
];

export function verhoeffValid(digits: string): boolean {
  let c = 0;
  for (let i = 0; i < digits.length; i++) {
    const d = digits.charCodeAt(digits.length - 1 - i) - 48;
    if (d < 0 || d > 9) return false;
    c = VERHOEFF_D[c]![VERHOEFF_P[i % 8]![d]!]!;
  }
  return c === 0;
}

/** LOINC codes end in a mod-10 (Luhn) check digit after the hyphen. */
export function loincCheckValid(code: string): boolean {
  const m = /^(\d{1,7})-(\d)$/.exec(code);
  if (!m) return false;
  const body = m[1]!;
  let sum = 0;
  for (let i = 0; i < body.length; i++) {
    let d = body.charCodeAt(body.length - 1 - i) - 48;
    if (i % 2 === 0) {
      d *= 2;
      if (d > 9) d -= 9;
    }
    sum += d;
  }
  return (10 - (sum % 10)) % 10 === Number(m[2]);
}

/** Why a code is wrong for its system, or null. Unknown systems only get the generic checks. */
function codeProblem(system: string, code: string): string | null {
  switch (system) {
    case CODE_SYSTEMS.snomed:
      // Concept identifiers only (partition 00 or 10): a description or relationship id is not a finding.
      if (!/^[1-9]\d{5,17}$/.test(code)) return 'is not a SNOMED CT identifier (6-18 digits)';
      if (!verhoeffValid(code)) return 'fails the SNOMED CT check digit';
      if (!['00', '10'].includes(code.slice(-3, -1))) return 'is a SNOMED CT id but not a concept id';
      return null;
    case CODE_SYSTEMS.loinc:
      if (/^L[APG]\d{1,8}-\d$/.test(code)) return null;
      return loincCheckValid(code) ? null : 'is not a LOINC code with a valid check digit (e.g. 18748-4)';
    case CODE_SYSTEMS.icd10:
    case CODE_SYSTEMS.icd10cm:
      return /^[A-Z]\d[0-9A-Z](\.[0-9A-Z]{1,4})?$/.test(code) ? null : 'is not an ICD-10 code (e.g. I21.9)';
    case CODE_SYSTEMS.radlex:
      return /^RID\d{1,8}$/.test(code) ? null : 'is not a RadLex id (e.g. RID5350)';
    default:
      return null;
  }
}

// C0 and C1 controls other than tab, line feed and carriage return; NUL cannot be stored in PostgreSQL text.
// biome-ignore lint/suspicious/noControlCharactersInRegex: matching control characters is the point
const CONTROL = /[\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f-\u009f]/;

function text(input: unknown, field: string, max: number): string {
  if (input === undefined || input === null) return '';
  if (typeof input !== 'string') throw new AppError('VALIDATION_FAILED', `${field} must be a string`);
  if (input.length > max) {
    throw new AppError('VALIDATION_FAILED', `${field} is ${input.length} characters; at most ${max}`);
  }
  if (CONTROL.test(input)) throw new AppError('VALIDATION_FAILED', `${field} contains control characters`);
  // CRLF from browsers and LF from scripts sign the same.
  return input.replace(/\r\n?/g, '\n');
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

export function parseReportCode(input: unknown, where: string): ReportCode {
  if (!isObject(input))
    throw new AppError('VALIDATION_FAILED', `${where} must be { system, code, display? }`);
  for (const key of Object.keys(input)) {
    if (!['system', 'code', 'display'].includes(key)) {
      throw new AppError('VALIDATION_FAILED', `${where} has an unknown key "${key}"`);
    }
  }
  const rawSystem = typeof input.system === 'string' ? input.system.trim() : '';
  const system = SYSTEM_ALIASES[rawSystem.toLowerCase()] ?? rawSystem;
  if (!/^(https?:\/\/\S+|urn:[a-z0-9][a-z0-9-]{0,31}:\S+)$/i.test(system) || system.length > 200) {
    throw new AppError(
      'VALIDATION_FAILED',
      `${where}.system must be a URI (http://snomed.info/sct, http://loinc.org, http://hl7.org/fhir/sid/icd-10 …) or one of ${Object.keys(SYSTEM_ALIASES).join(', ')}`,
    );
  }
  const code = typeof input.code === 'string' ? input.code.trim() : '';
  if (code === '' || code.length > 100 || /\s/.test(code)) {
    throw new AppError('VALIDATION_FAILED', `${where}.code must be 1-100 characters without spaces`);
  }
  const problem = codeProblem(system, code);
  if (problem) throw new AppError('VALIDATION_FAILED', `${where}.code "${code}" ${problem}`);
  const display = text(input.display, `${where}.display`, REPORT_LIMITS.display).trim();
  return display ? { system, code, display } : { system, code };
}

/**
 * Validates and normalises a draft as a client sent it (PUT replaces the whole draft: a field left out is
 * empty). Duplicate codes are dropped, the first one kept.
 */
export function parseReportDraft(input: unknown): ReportDraft {
  if (!isObject(input)) throw new AppError('VALIDATION_FAILED', 'a report is a JSON object');
  for (const key of Object.keys(input)) {
    if (!['findings', 'impression', 'critical', 'codes'].includes(key)) {
      throw new AppError('VALIDATION_FAILED', `a report has no field "${key}"`);
    }
  }
  if (input.critical !== undefined && typeof input.critical !== 'boolean') {
    throw new AppError('VALIDATION_FAILED', 'critical must be true or false');
  }
  const rawCodes = input.codes ?? [];
  if (!Array.isArray(rawCodes)) throw new AppError('VALIDATION_FAILED', 'codes must be an array');
  if (rawCodes.length > REPORT_LIMITS.codes) {
    throw new AppError('VALIDATION_FAILED', `at most ${REPORT_LIMITS.codes} codes`);
  }
  const codes: ReportCode[] = [];
  const seen = new Set<string>();
  rawCodes.forEach((c, i) => {
    const parsed = parseReportCode(c, `codes[${i}]`);
    const key = `${parsed.system}|${parsed.code}`;
    if (!seen.has(key)) {
      seen.add(key);
      codes.push(parsed);
    }
  });
  return {
    findings: text(input.findings, 'findings', REPORT_LIMITS.findings),
    impression: text(input.impression, 'impression', REPORT_LIMITS.impression),
    critical: input.critical === true,
    codes,
  };
}

/** A report is signed only with a conclusion: an empty impression is refused. */
export function checkReadyToSign(draft: ReportDraft): void {
  if (draft.impression.trim() === '') {
    throw new AppError('CONFLICT', 'the report has no impression; save one before signing');
  }
}

export interface AddendumInput {
  text: string;
  critical: boolean;
}

export function parseAddendum(input: unknown): AddendumInput {
  if (!isObject(input)) throw new AppError('VALIDATION_FAILED', 'an addendum is { text, critical? }');
  for (const key of Object.keys(input)) {
    if (!['text', 'critical'].includes(key)) {
      throw new AppError('VALIDATION_FAILED', `an addendum has no field "${key}"`);
    }
  }
  if (input.critical !== undefined && typeof input.critical !== 'boolean') {
    throw new AppError('VALIDATION_FAILED', 'critical must be true or false');
  }
  const body = text(input.text, 'text', REPORT_LIMITS.addendum);
  if (body.trim() === '') throw new AppError('VALIDATION_FAILED', 'an addendum needs text');
  return { text: body, critical: input.critical === true };
}

// ---- signing ----

/**
 * Canonical JSON (the RFC 8785 shape for the values we sign: strings, booleans, integers, arrays, objects):
 * object keys sorted by UTF-16 code units, no whitespace, `undefined` members left out. Two equal reports
 * always give the same bytes, so the same hash.
 */
export function canonicalJson(value: unknown): string {
  if (value === null) return 'null';
  switch (typeof value) {
    case 'string':
      return JSON.stringify(value);
    case 'boolean':
      return value ? 'true' : 'false';
    case 'number':
      if (!Number.isFinite(value)) throw new AppError('VALIDATION_FAILED', 'cannot sign a non-finite number');
      return JSON.stringify(value);
    case 'object': {
      if (Array.isArray(value)) return `[${value.map((v) => canonicalJson(v ?? null)).join(',')}]`;
      const entries = Object.entries(value as Record<string, unknown>)
        .filter(([, v]) => v !== undefined)
        .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
      return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(',')}}`;
    }
    default:
      throw new AppError('VALIDATION_FAILED', `cannot sign a ${typeof value}`);
  }
}

export function sha256Hex(textToHash: string): string {
  return createHash('sha256').update(textToHash, 'utf8').digest('hex');
}

export interface Signer {
  readerId: string;
  name: string;
}

export interface SignedReportContent {
  format: 'teleread.report/1';
  reportId: string;
  /** The original case at the hub (never a de-identified copy's id). */
  caseId: string;
  findings: string;
  impression: string;
  critical: boolean;
  codes: ReportCode[];
  signer: Signer;
  /** ISO 8601, millisecond precision: what the hash binds is what `signed_at` stores. */
  signedAt: string;
}

export interface Signature {
  /** The exact bytes hashed, kept so anyone can re-check the hash later. */
  canonical: string;
  contentHash: string;
}

export function signReportContent(input: {
  reportId: string;
  caseId: string;
  draft: ReportDraft;
  signer: Signer;
  signedAt: Date;
}): Signature & { content: SignedReportContent } {
  const content: SignedReportContent = {
    format: 'teleread.report/1',
    reportId: input.reportId,
    caseId: input.caseId,
    findings: input.draft.findings,
    impression: input.draft.impression,
    critical: input.draft.critical,
    codes: input.draft.codes.map((c) => (c.display ? { ...c } : { system: c.system, code: c.code })),
    signer: { readerId: input.signer.readerId, name: input.signer.name },
    signedAt: input.signedAt.toISOString(),
  };
  const canonical = canonicalJson(content);
  return { content, canonical, contentHash: sha256Hex(canonical) };
}

export interface SignedAddendumContent {
  format: 'teleread.addendum/1';
  reportId: string;
  caseId: string;
  seq: number;
  text: string;
  critical: boolean;
  signer: Signer;
  signedAt: string;
  /** The report's hash for the first addendum, the previous addendum's after that: a chain, so no addendum
   * can be dropped or reordered without breaking every hash after it. */
  previousHash: string;
}

export function signAddendumContent(input: {
  reportId: string;
  caseId: string;
  seq: number;
  addendum: AddendumInput;
  signer: Signer;
  signedAt: Date;
  previousHash: string;
}): Signature & { content: SignedAddendumContent } {
  const content: SignedAddendumContent = {
    format: 'teleread.addendum/1',
    reportId: input.reportId,
    caseId: input.caseId,
    seq: input.seq,
    text: input.addendum.text,
    critical: input.addendum.critical,
    signer: { readerId: input.signer.readerId, name: input.signer.name },
    signedAt: input.signedAt.toISOString(),
    previousHash: input.previousHash,
  };
  const canonical = canonicalJson(content);
  return { content, canonical, contentHash: sha256Hex(canonical) };
}

/** The hash of a draft's content: a client passes it to sign so that it signs the text it last saw. */
export function draftHash(draft: ReportDraft): string {
  return sha256Hex(canonicalJson(draft));
}

/** Re-checks a stored signature: the canonical bytes hash to the stored hash. */
export function verifySignature(signature: Signature): boolean {
  return (
    /^[0-9a-f]{64}$/.test(signature.contentHash) && sha256Hex(signature.canonical) === signature.contentHash
  );
}

// ---- who may see a report ----

export interface ReportViewer {
  role: Role;
  siteId: string | null;
  readerId: string | null;
}

export interface ReportFacts {
  siteId: string;
  signed: boolean;
  signerReaderId: string | null;
  /** The reader holding a live lease on the case now, if any. */
  leaseHolderId: string | null;
}

/**
 * What a caller may see of a case's report: `full`, `redacted` (status and hashes, no clinical text), or nothing
 * (the route answers 404, so report ids do not leak).
 * - clinic: the signed report of its own site's case; a draft is nobody's business outside the reading room;
 * - reader: the draft while holding the lease, the signed report when they signed it;
 * - ops: redacted (they run the machinery and do not see patient data; report text may name the patient);
 * - admin: everything.
 */
export function reportAccess(viewer: ReportViewer, facts: ReportFacts): 'full' | 'redacted' | null {
  switch (viewer.role) {
    case 'admin':
      return 'full';
    case 'ops':
      return 'redacted';
    case 'clinic':
      return facts.signed && viewer.siteId === facts.siteId ? 'full' : null;
    case 'reader': {
      if (!viewer.readerId) return null;
      if (facts.signed) return facts.signerReaderId === viewer.readerId ? 'full' : null;
      return facts.leaseHolderId === viewer.readerId ? 'full' : null;
    }
    default:
      return null;
  }
}

// ---- presentation ----

export interface ReportForView {
  id: string;
  caseId: string;
  draft: ReportDraft;
  createdAt: Date;
  updatedAt: Date;
  signedAt: Date | null;
  signer: Signer | null;
  contentHash: string | null;
}

export interface AddendumForView {
  seq: number;
  text: string;
  critical: boolean;
  signedAt: Date;
  signer: Signer;
  contentHash: string;
}

/** draft → preliminary, signed → final, signed with addenda → amended (FHIR DiagnosticReport.status). */
export function reportStatus(
  report: Pick<ReportForView, 'signedAt'>,
  addenda: readonly unknown[],
): 'preliminary' | 'final' | 'amended' {
  if (!report.signedAt) return 'preliminary';
  return addenda.length > 0 ? 'amended' : 'final';
}

/** A critical result stays critical: the report's flag or any addendum's. */
export function isCritical(report: Pick<ReportForView, 'draft'>, addenda: readonly { critical: boolean }[]) {
  return report.draft.critical || addenda.some((a) => a.critical);
}

export function codeLabel(c: ReportCode): string {
  return `${SYSTEM_LABEL[c.system] ?? c.system} ${c.code}${c.display ? ` ${c.display}` : ''}`;
}

/** The report as plain text: what a clinic prints, and FHIR's presentedForm. */
export function renderReportText(report: ReportForView, addenda: readonly AddendumForView[]): string {
  const lines: string[] = [];
  if (isCritical(report, addenda)) lines.push('*** CRITICAL RESULT ***', '');
  if (!report.signedAt) lines.push('PRELIMINARY (not signed)', '');
  if (report.draft.findings.trim()) lines.push('FINDINGS', report.draft.findings.trim(), '');
  lines.push('IMPRESSION', report.draft.impression.trim() || '(none)', '');
  if (report.draft.codes.length > 0) {
    lines.push('CODES', ...report.draft.codes.map((c) => `- ${codeLabel(c)}`), '');
  }
  if (report.signedAt && report.signer) {
    lines.push(
      `Signed by ${report.signer.name} (${report.signer.readerId}) at ${report.signedAt.toISOString()}`,
      `Content sha256 ${report.contentHash ?? ''}`,
    );
  }
  for (const a of addenda) {
    lines.push(
      '',
      `ADDENDUM ${a.seq}${a.critical ? ' (CRITICAL)' : ''}`,
      a.text.trim(),
      `Signed by ${a.signer.name} (${a.signer.readerId}) at ${a.signedAt.toISOString()}`,
      `Content sha256 ${a.contentHash}`,
    );
  }
  return `${lines.join('\n').trimEnd()}\n`;
}

// ---- FHIR R4 ----

export const FHIR_CRITICAL_EXTENSION = 'urn:teleread:fhir:StructureDefinition:critical-result';

const REPORT_CODE: Record<CaseKind, { code: string; display: string }> = {
  imaging: { code: '18748-4', display: 'Diagnostic imaging study' },
  ecg: { code: '11524-6', display: 'EKG study' },
  pathology: { code: '11526-1', display: 'Pathology study' },
};

// HL7 v2 table 0074, the diagnostic service section FHIR uses for DiagnosticReport.category.
const SERVICE_SECTION: Record<CaseKind, { code: string; display: string }> = {
  imaging: { code: 'RAD', display: 'Radiology' },
  ecg: { code: 'EC', display: 'Electrocardiac (e.g., EKG, EEC, Holter)' },
  pathology: { code: 'PAT', display: 'Pathology (gross & histopath, not surgical)' },
};

type FhirJson = Record<string, unknown>;

/** How the patient appears: the clinic's own identifiers, or nothing that identifies (cross-border, ops). */
export type FhirPatientView =
  | { mode: 'identified'; siteId: string; patient: PatientInfo | null }
  | { mode: 'deidentified' };

export interface FhirStudy {
  kind: CaseKind;
  caseId: string;
  /** The StudyInstanceUID as the viewer may see it (a de-identified viewer gets the replacement UID or none). */
  studyInstanceUid: string | null;
  modalities: string[];
  seriesCount: number | null;
  instanceCount: number | null;
  /** FHIR dateTime of acquisition, if known and the viewer may see it. */
  startedAt: string | null;
  heartRate: number | null;
}

export interface FhirReportInput {
  report: ReportForView;
  addenda: readonly AddendumForView[];
  study: FhirStudy;
  patient: FhirPatientView;
  /** false: no free text (conclusion, presentedForm), for viewers who may not read clinical prose. */
  includeText: boolean;
  /** Base of the identifier systems minted for this hub (PUBLIC_URL). */
  baseUrl: string;
}

/** A DICOM PN (`Family^Given^Middle^Prefix^Suffix`, maybe with `=` ideographic groups) as a FHIR HumanName. */
export function humanName(pn: string): FhirJson | null {
  const alphabetic = (pn.split('=')[0] ?? '').trim();
  if (!alphabetic) return null;
  if (!alphabetic.includes('^')) return { text: alphabetic };
  const [family, given, middle, prefix, suffix] = alphabetic.split('^').map((p) => p.trim());
  const name: FhirJson = { text: [prefix, given, middle, family, suffix].filter(Boolean).join(' ') };
  if (family) name.family = family;
  const givens = [given, middle].filter((g): g is string => Boolean(g));
  if (givens.length > 0) name.given = givens;
  if (prefix) name.prefix = [prefix];
  if (suffix) name.suffix = [suffix];
  return name;
}

/** DICOM DA (YYYYMMDD) or ISO dates as a FHIR date; anything else is left out rather than sent malformed. */
export function fhirDate(value: string | undefined | null): string | null {
  if (!value) return null;
  const v = value.trim();
  const m = /^(\d{4})-?(\d{2})-?(\d{2})$/.exec(v);
  if (m) {
    const month = Number(m[2]);
    const day = Number(m[3]);
    return month >= 1 && month <= 12 && day >= 1 && day <= 31 ? `${m[1]}-${m[2]}-${m[3]}` : null;
  }
  return /^\d{4}(-(0[1-9]|1[0-2]))?$/.test(v) ? v : null;
}

function fhirGender(sex: string | undefined): string | null {
  switch ((sex ?? '').trim().toUpperCase()) {
    case 'M':
    case 'MALE':
      return 'male';
    case 'F':
    case 'FEMALE':
      return 'female';
    case 'O':
    case 'OTHER':
      return 'other';
    case '':
      return null;
    default:
      return 'unknown';
  }
}

function patientResource(view: FhirPatientView, baseUrl: string): FhirJson {
  if (view.mode === 'deidentified') {
    // Present so ImagingStudy.subject (required) has a target, and labelled so a consumer knows it is empty on
    // purpose.
    return {
      resourceType: 'Patient',
      id: 'patient',
      meta: {
        security: [
          {
            system: 'http://terminology.hl7.org/CodeSystem/v3-ObservationValue',
            code: 'REDACTED',
            display: 'redacted',
          },
        ],
      },
    };
  }
  const p = view.patient ?? {};
  const out: FhirJson = { resourceType: 'Patient', id: 'patient' };
  if (p.id?.trim()) {
    out.identifier = [
      {
        system: `${baseUrl}/fhir/sid/sites/${encodeURIComponent(view.siteId)}/patient-id`,
        value: p.id.trim(),
      },
    ];
  }
  const name = p.name ? humanName(p.name) : null;
  if (name) out.name = [name];
  const gender = fhirGender(p.sex);
  if (gender) out.gender = gender;
  const birthDate = fhirDate(p.birthDate);
  if (birthDate) out.birthDate = birthDate;
  return out;
}

function studyIdentifiers(study: FhirStudy): FhirJson[] {
  const ids: FhirJson[] = [];
  if (study.studyInstanceUid)
    ids.push({ system: 'urn:dicom:uid', value: `urn:oid:${study.studyInstanceUid}` });
  ids.push({ system: 'urn:ietf:rfc:3986', value: `urn:uuid:${study.caseId}` });
  return ids;
}

function imagingStudyResource(study: FhirStudy): FhirJson {
  const modalities =
    study.modalities.length > 0 ? study.modalities : study.kind === 'pathology' ? ['SM'] : [];
  const out: FhirJson = {
    resourceType: 'ImagingStudy',
    id: 'study',
    identifier: studyIdentifiers(study),
    status: 'available',
    subject: { reference: '#patient' },
  };
  if (modalities.length > 0) {
    out.modality = modalities.map((code) => ({
      system: 'http://dicom.nema.org/resources/ontology/DCM',
      code,
    }));
  }
  if (study.startedAt) out.started = study.startedAt;
  if (study.seriesCount !== null) out.numberOfSeries = study.seriesCount;
  if (study.instanceCount !== null) out.numberOfInstances = study.instanceCount;
  return out;
}

function ecgObservationResource(study: FhirStudy): FhirJson {
  const out: FhirJson = {
    resourceType: 'Observation',
    id: 'ecg',
    identifier: studyIdentifiers(study),
    status: 'final',
    category: [
      {
        coding: [
          {
            system: 'http://terminology.hl7.org/CodeSystem/observation-category',
            code: 'procedure',
            display: 'Procedure',
          },
        ],
      },
    ],
    code: { coding: [{ system: CODE_SYSTEMS.loinc, ...REPORT_CODE.ecg }], text: 'ECG' },
    subject: { reference: '#patient' },
  };
  if (study.startedAt) out.effectiveDateTime = study.startedAt;
  if (study.heartRate !== null && Number.isFinite(study.heartRate)) {
    out.component = [
      {
        code: { coding: [{ system: CODE_SYSTEMS.loinc, code: '8867-4', display: 'Heart rate' }] },
        valueQuantity: {
          value: study.heartRate,
          unit: '/min',
          system: 'http://unitsofmeasure.org',
          code: '/min',
        },
      },
    ];
  }
  return out;
}

function interpreter(signer: Signer, baseUrl: string): FhirJson {
  return {
    display: signer.name,
    identifier: { system: `${baseUrl}/fhir/sid/readers`, value: signer.readerId },
  };
}

/**
 * The report as a FHIR R4 DiagnosticReport. The patient, the ImagingStudy (imaging, slides) or ECG Observation
 * are contained resources, so the document stands alone: the hub runs no FHIR server to resolve references.
 * Addenda have no element of their own in R4; they are appended to `conclusion` and to the presented text,
 * each with its signer and time, and they turn the status to `amended`.
 */
export function buildDiagnosticReport(input: FhirReportInput): FhirJson {
  const { report, addenda, study, baseUrl } = input;
  const status = reportStatus(report, addenda);
  const contained: FhirJson[] = [patientResource(input.patient, baseUrl)];
  const out: FhirJson = {
    resourceType: 'DiagnosticReport',
    id: report.id,
    meta: { lastUpdated: (addenda.at(-1)?.signedAt ?? report.signedAt ?? report.updatedAt).toISOString() },
    contained,
    extension: [{ url: FHIR_CRITICAL_EXTENSION, valueBoolean: isCritical(report, addenda) }],
    identifier: [{ system: 'urn:ietf:rfc:3986', value: `urn:uuid:${report.id}` }],
    status,
    category: [
      {
        coding: [{ system: 'http://terminology.hl7.org/CodeSystem/v2-0074', ...SERVICE_SECTION[study.kind] }],
      },
    ],
    code: { coding: [{ system: CODE_SYSTEMS.loinc, ...REPORT_CODE[study.kind] }] },
    subject: { reference: '#patient' },
  };
  if (study.startedAt) out.effectiveDateTime = study.startedAt;
  out.issued = (report.signedAt ?? report.updatedAt).toISOString();
  if (report.signer) {
    const interpreters = [interpreter(report.signer, baseUrl)];
    for (const a of addenda) {
      if (a.signer.readerId !== report.signer.readerId) interpreters.push(interpreter(a.signer, baseUrl));
    }
    out.resultsInterpreter = interpreters;
  }
  if (study.kind === 'ecg') {
    contained.push(ecgObservationResource(study));
    out.result = [{ reference: '#ecg' }];
  } else {
    contained.push(imagingStudyResource(study));
    out.imagingStudy = [{ reference: '#study' }];
  }
  if (input.includeText) {
    const parts = [report.draft.impression.trim()];
    for (const a of addenda) {
      parts.push(`Addendum ${a.seq} (${a.signer.name}, ${a.signedAt.toISOString()}): ${a.text.trim()}`);
    }
    const conclusion = parts.filter(Boolean).join('\n\n');
    if (conclusion) out.conclusion = conclusion;
  }
  if (report.draft.codes.length > 0) {
    out.conclusionCode = report.draft.codes.map((c) => ({
      coding: [{ system: c.system, code: c.code, ...(c.display ? { display: c.display } : {}) }],
      ...(c.display ? { text: c.display } : {}),
    }));
  }
  if (input.includeText) {
    const body = Buffer.from(renderReportText(report, addenda), 'utf8');
    out.presentedForm = [
      {
        contentType: 'text/plain; charset=utf-8',
        data: body.toString('base64'),
        size: body.length,
        // FHIR R4 Attachment.hash is the base64 SHA-1 of the data.
        hash: createHash('sha1').update(body).digest('base64'),
        title: `${REPORT_CODE[study.kind].display} report`,
        creation: out.issued,
      },
    ];
  }
  return out;
}
