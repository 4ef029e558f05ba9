/**
 * DICOMweb QIDO-RS search (PS3.18 §10.6): the studies a caller may see, a study's series, a series' instances, as
 * `application/dicom+json` arrays with the attributes PS3.18 Table 10.6.3-3 lists for each level (those the data
 * set has) and RetrieveURL. With WADO-RS metadata and frames, this is what a DICOMweb viewer needs to browse.
 *
 * The attributes come from the DICOM itself, not from Teleread's rows: each study's and series' first instance,
 * and every instance at the instance level, read as WADO-RS metadata reads them. A reader abroad therefore sees
 * the de-identified copies' values (pseudonym, shifted dates, replacement UIDs, no accession number), and matches
 * against those: searching by a patient's real name finds nothing for them.
 *
 * Matching (§10.6.1.2): at the study level StudyInstanceUID (a list), PatientID, PatientName, AccessionNumber,
 * StudyDate (a date or a range), ModalitiesInStudy; at the series level SeriesInstanceUID, Modality, SeriesNumber;
 * at the instance level SOPInstanceUID, SOPClassUID, InstanceNumber. `*` and `?` are wildcards, and names match
 * whatever their case. `limit` and `offset` page the answer; `includefield` and `fuzzymatching` are accepted, and
 * the attributes sent are always those listed. Other keys are refused with 400 rather than ignored, so a client
 * never takes an unfiltered answer for a filtered one. A study search that names StudyInstanceUID, or PatientID
 * without wildcards, finds the studies so named however old they are; any other looks at the caller's
 * STUDY_SEARCH_CASES most recent cases.
 */
import type { FastifyReply, FastifyRequest } from 'fastify';
import { Type } from 'typebox';
import type { Context } from '../../context.js';
import { getStudyCasesForPrincipal, type StudyCaseFilter } from '../../db/case-queries.js';
import { AppError } from '../../errors.js';
import type { DicomJson, DicomJsonAttribute } from '../../formats/dicom/attributes.js';
import { type Principal, principalOf, requireRole } from '../auth.js';
import type { App } from '../build-app.js';
import { caseOfPseudonym } from '../deidentified-copy.js';
import { needsDeidentifiedView } from '../redact.js';
import { acceptsJson, headerJson, inTagOrder, mapInOrder } from './dicomweb-metadata.js';
import { casesOfStudy, DICOM_FORMATS, dicomFilesOf, filesInScope, type StudyFile, UID } from './wado.js';

/** The most recent cases a study search reads (newest first). */
const STUDY_SEARCH_CASES = 500;
const MAX_LIMIT = 1000;

const STUDY_TAGS = [
  '00080020', // StudyDate
  '00080030', // StudyTime
  '00080050', // AccessionNumber
  '00080090', // ReferringPhysicianName
  '00081030', // StudyDescription
  '00100010', // PatientName
  '00100020', // PatientID
  '00100030', // PatientBirthDate
  '00100040', // PatientSex
  '0020000D', // StudyInstanceUID
  '00200010', // StudyID
];
const SERIES_TAGS = [
  '00080021', // SeriesDate
  '00080060', // Modality
  '0008103E', // SeriesDescription
  '0020000E', // SeriesInstanceUID
  '00200011', // SeriesNumber
];
const INSTANCE_TAGS = [
  '00080016', // SOPClassUID
  '00080018', // SOPInstanceUID
  '00200013', // InstanceNumber
  '00280008', // NumberOfFrames
  '00280010', // Rows
  '00280011', // Columns
  '00280100', // BitsAllocated
];

/** Query keys by keyword or tag, per level, and the attribute each matches. */
const MATCH_KEYS: Record<'study' | 'series' | 'instance', Record<string, string>> = {
  study: {
    StudyInstanceUID: '0020000D',
    PatientID: '00100020',
    PatientName: '00100010',
    AccessionNumber: '00080050',
    StudyDate: '00080020',
    ModalitiesInStudy: '00080061',
  },
  series: { SeriesInstanceUID: '0020000E', Modality: '00080060', SeriesNumber: '00200011' },
  instance: { SOPInstanceUID: '00080018', SOPClassUID: '00080016', InstanceNumber: '00200013' },
};
/** Parameters every level takes besides its matching keys (`accept` is read in build-app.ts). */
const PAGING = new Set(['limit', 'offset', 'fuzzymatching', 'includefield', 'accept']);

interface Match {
  tag: string;
  value: string;
}

/** The query's matching keys (by keyword or by tag), its page, and 400 for a key this level does not match on. */
/** The tags each level matches on, for keys given as tags. */
const MATCH_TAGS = Object.fromEntries(
  Object.entries(MATCH_KEYS).map(([level, keys]) => [level, new Set(Object.values(keys))]),
) as Record<keyof typeof MATCH_KEYS, Set<string>>;

interface Query {
  matches: Match[];
  limit: number;
  offset: number;
}

function parseQuery(level: keyof typeof MATCH_KEYS, query: Record<string, unknown>): Query {
  const keys = MATCH_KEYS[level];
  const matches: Match[] = [];
  for (const [key, raw] of Object.entries(query)) {
    if (PAGING.has(key)) continue;
    const tag = keys[key] ?? (MATCH_TAGS[level].has(key.toUpperCase()) ? key.toUpperCase() : undefined);
    if (!tag) {
      throw new AppError(
        'VALIDATION_FAILED',
        `${key} is not a matching key here; these are: ${Object.keys(keys).join(', ')}`,
      );
    }
    const value = String(Array.isArray(raw) ? raw[0] : raw);
    if (value !== '') matches.push({ tag, value });
  }
  const limit = Math.min(MAX_LIMIT, Number(query.limit ?? MAX_LIMIT));
  const offset = Number(query.offset ?? 0);
  if (!Number.isInteger(limit) || limit < 1 || !Number.isInteger(offset) || offset < 0) {
    throw new AppError('VALIDATION_FAILED', 'limit must be a whole number from 1 and offset one from 0');
  }
  return { matches, limit, offset };
}

/** An attribute's values as text, PN by its alphabetic group. */
function texts(attribute: DicomJsonAttribute | undefined): string[] {
  return (attribute?.Value ?? []).map((v) =>
    v !== null && typeof v === 'object'
      ? String((v as { Alphabetic?: string }).Alphabetic ?? '')
      : String(v ?? ''),
  );
}

function wildcard(pattern: string, caseless: boolean): RegExp {
  const body = pattern
    .replace(/[.+^${}()|[\]\\]/g, '\\$&')
    .replace(/\*/g, '.*')
    .replace(/\?/g, '.');
  return new RegExp(`^${body}$`, caseless ? 'i' : '');
}

/** PS3.4 C.2.2.2 matching of one key against one attribute. */
function matches(json: DicomJson, { tag, value }: Match): boolean {
  const have = texts(json[tag]);
  if (tag === '0020000D' || tag === '0020000E' || tag === '00080018' || tag === '00080016') {
    const wanted = new Set(value.split(/[,\\]/));
    return have.some((h) => wanted.has(h));
  }
  if (tag === '00080020') {
    const [from, to] = value.includes('-') ? value.split('-') : [value, value];
    return have.some((d) => (!from || d >= from!) && (!to || d <= to!));
  }
  const pattern = wildcard(value, tag === '00100010');
  return have.some((h) => pattern.test(h));
}

function pick(json: DicomJson, tags: string[]): DicomJson {
  const out: DicomJson = {};
  for (const tag of tags) if (json[tag]) out[tag] = json[tag]!;
  return out;
}

const text = (vr: string, values: Array<string | number>): DicomJsonAttribute => ({ vr, Value: values });

/** Instances grouped by `key`, each group in arrival order, the groups in the order they first appear. */
function groupBy(files: StudyFile[], key: (f: StudyFile) => string): Map<string, StudyFile[]> {
  const groups = new Map<string, StudyFile[]>();
  for (const f of files) {
    const k = key(f);
    const group = groups.get(k);
    if (group) group.push(f);
    else groups.set(k, [f]);
  }
  return groups;
}

/** Instances grouped by their series' original UID, in the order the series first arrived. */
function bySeries(files: StudyFile[]): StudyFile[][] {
  return [...groupBy(files, (f) => f.seriesInstanceUid ?? '').values()];
}

/** Most study UIDs one search may list. */
const MAX_STUDY_UIDS = 100;

/**
 * The cases a study search needs to read, from the keys that name them exactly: the study UIDs (resolved as
 * WADO-RS resolves them, a reader abroad's replacements included), or a Patient ID without wildcards. Such a
 * search finds a study however old it is; any other looks at the STUDY_SEARCH_CASES most recent. The values are
 * still matched against the headers afterwards, so narrowing only ever leaves out cases that could not match.
 */
async function studyCaseFilter(ctx: Context, who: Principal, wanted: Match[]): Promise<StudyCaseFilter> {
  const studies = wanted.find((m) => m.tag === '0020000D');
  if (studies) {
    const uids = [...new Set(studies.value.split(/[,\\]/).filter(Boolean))];
    if (uids.length > MAX_STUDY_UIDS) {
      throw new AppError('VALIDATION_FAILED', `StudyInstanceUID lists at most ${MAX_STUDY_UIDS} UIDs`);
    }
    const found = await Promise.all(uids.map((uid) => casesOfStudy(ctx, who, uid)));
    return { caseIds: [...new Set(found.flatMap((f) => f.caseIds))] };
  }
  const patient = wanted.find((m) => m.tag === '00100020');
  if (patient && !/[*?]/.test(patient.value)) {
    return { patientId: { id: patient.value, pseudonymOf: caseOfPseudonym(patient.value) } };
  }
  return {};
}

export function registerDicomwebQidoRoutes(app: App, ctx: Context): void {
  const roles = requireRole(ctx.db, 'clinic', 'reader', 'admin');
  const base = () => `${ctx.config.publicUrl}/dicomweb`;

  const answer = (reply: FastifyReply, { matches: wanted, limit, offset }: Query, results: DicomJson[]) => {
    const found = results.filter((r) => wanted.every((m) => matches(r, m)));
    return reply
      .header('content-type', 'application/dicom+json')
      .header('cache-control', 'private, no-store')
      .send(JSON.stringify(found.slice(offset, offset + limit).map(inTagOrder)));
  };

  /** Accept and the query checked (406, 400) before anything is read; the parsed query. */
  const begin = (request: FastifyRequest, level: keyof typeof MATCH_KEYS): Query => {
    if (!acceptsJson(request.headers.accept)) {
      throw new AppError('NOT_ACCEPTABLE', 'search results are sent as application/dicom+json');
    }
    return parseQuery(level, request.query as Record<string, unknown>);
  };

  app.get(
    '/dicomweb/studies',
    {
      onRequest: roles,
      schema: {
        summary: 'DICOMweb QIDO-RS: the studies the caller may see, as application/dicom+json',
        querystring: Type.Record(Type.String(), Type.Union([Type.String(), Type.Array(Type.String())])),
      },
    },
    async (request, reply) => {
      const query = begin(request, 'study');
      const who = principalOf(request);
      // With nothing to match, the page is all that is needed: a viewer's study list reads `limit` headers, not
      // STUDY_SEARCH_CASES (every case counted holds an instance, so each gives a result).
      const window =
        query.matches.length === 0
          ? Math.min(STUDY_SEARCH_CASES, query.offset + query.limit)
          : STUDY_SEARCH_CASES;
      const cases = await getStudyCasesForPrincipal(ctx.db, who, window, {
        ...(await studyCaseFilter(ctx, who, query.matches)),
        holding: DICOM_FORMATS,
      });
      // The instances of every case in two queries (those seen identified, those seen de-identified), not one each.
      const deidentified = new Set(cases.filter((c) => needsDeidentifiedView(who, c)).map((c) => c.id));
      const [asIs, abroad] = await Promise.all([
        dicomFilesOf(
          ctx,
          cases.filter((c) => !deidentified.has(c.id)).map((c) => c.id),
          false,
        ),
        dicomFilesOf(ctx, [...deidentified], true),
      ]);
      const filesOf = groupBy([...asIs, ...abroad], (f) => f.caseId);
      const results = await mapInOrder(cases, async (c): Promise<DicomJson | undefined> => {
        const files = filesOf.get(c.id);
        if (!files) return undefined;
        const json = pick(await headerJson(ctx, files[0]!, deidentified.has(c.id)), STUDY_TAGS);
        const modalities = [
          ...new Set(files.map((f) => (f.metadata as { modality?: string }).modality).filter(Boolean)),
        ] as string[];
        const studyUid = texts(json['0020000D'])[0];
        return {
          ...json,
          '00080056': text('CS', ['ONLINE']),
          ...(modalities.length > 0 ? { '00080061': text('CS', modalities) } : {}),
          '00201206': text('IS', [new Set(files.map((f) => f.seriesInstanceUid ?? '')).size]),
          '00201208': text('IS', [files.length]),
          ...(studyUid ? { '00081190': text('UR', [`${base()}/studies/${studyUid}`]) } : {}),
        };
      });
      return answer(
        reply,
        query,
        results.filter((r): r is DicomJson => r !== undefined),
      );
    },
  );

  app.get(
    '/dicomweb/studies/:studyUid/series',
    {
      onRequest: roles,
      schema: {
        summary: "DICOMweb QIDO-RS: a study's series, as application/dicom+json",
        params: Type.Object({ studyUid: UID }),
        querystring: Type.Record(Type.String(), Type.Union([Type.String(), Type.Array(Type.String())])),
      },
    },
    async (request, reply) => {
      const query = begin(request, 'series');
      const { studyUid } = request.params as { studyUid: string };
      const { files, deidentified } = await filesInScope(ctx, principalOf(request), { studyUid });
      const results = await mapInOrder(bySeries(files), async (series) => {
        const json = pick(await headerJson(ctx, series[0]!, deidentified), SERIES_TAGS);
        const seriesUid = texts(json['0020000E'])[0];
        return {
          ...json,
          '00201209': text('IS', [series.length]),
          ...(seriesUid
            ? { '00081190': text('UR', [`${base()}/studies/${studyUid}/series/${seriesUid}`]) }
            : {}),
        };
      });
      return answer(reply, query, results);
    },
  );

  app.get(
    '/dicomweb/studies/:studyUid/series/:seriesUid/instances',
    {
      onRequest: roles,
      schema: {
        summary: "DICOMweb QIDO-RS: a series' instances, as application/dicom+json",
        params: Type.Object({ studyUid: UID, seriesUid: UID }),
        querystring: Type.Record(Type.String(), Type.Union([Type.String(), Type.Array(Type.String())])),
      },
    },
    async (request, reply) => {
      const query = begin(request, 'instance');
      const { studyUid, seriesUid } = request.params as { studyUid: string; seriesUid: string };
      const { files, deidentified } = await filesInScope(ctx, principalOf(request), { studyUid, seriesUid });
      const results = await mapInOrder(files, async (f) => {
        const json = pick(await headerJson(ctx, f, deidentified), INSTANCE_TAGS);
        const sop = texts(json['00080018'])[0];
        return {
          ...json,
          ...(f.transferSyntaxUid ? { '00083002': text('UI', [f.transferSyntaxUid]) } : {}),
          ...(sop
            ? {
                '00081190': text('UR', [
                  `${base()}/studies/${studyUid}/series/${seriesUid}/instances/${sop}`,
                ]),
              }
            : {}),
        };
      });
      return answer(reply, query, results);
    },
  );
}
