import type { Principal } from './auth.js';

/**
 * What a principal may see of a case, decided in one place. Three views:
 *
 * - identified: the clinic of the case's site, admins, and readers licensed in the site's jurisdiction (or any
 *   reader of a site that allows identified cross-border reading);
 * - ops: everything but the patient, the clinic's free-text notes and pictures that identify them (slide labels
 *   and macros);
 * - de-identified: a reader abroad reading a "deidentified" site's case. Besides the patient and identifying
 *   pictures, file metadata keeps only technical attributes (an allowlist, so a field added later stays hidden
 *   until someone decides it is safe), UIDs are replaced by the case's de-identified ones (uid_remaps, the same
 *   the DICOM de-identifier writes), file names, file digests (sha256) and free text (notes, route notes, error messages) go, and
 *   dates are dropped.
 *
 * `identified_view` comes from getCaseForPrincipal, which computes it in SQL from the reader's licences.
 */
export interface CaseView {
  identified_view: boolean;
}

/** Whether the principal may see who the patient is: demographics and identifying artifacts. */
export function mayseeIdentified(who: Principal, kase: CaseView): boolean {
  if (who.role === 'ops') return false;
  return kase.identified_view;
}

/** Whether every response must be the de-identified view: a reader not licensed where the case comes from. */
export function needsDeidentifiedView(who: Principal, kase: CaseView): boolean {
  return who.role === 'reader' && !kase.identified_view;
}

/** Technical attributes kept in a de-identified view; everything else (dates, descriptions, device and record
 * names, companion file names, accession numbers …) is dropped. */
const TECHNICAL_KEYS = new Set([
  // DICOM
  'transferSyntaxUid',
  'sopClassUid',
  'modality',
  'seriesNumber',
  'instanceNumber',
  'bodyPartExamined',
  'rows',
  'columns',
  'numberOfFrames',
  'photometricInterpretation',
  'bitsAllocated',
  'bitsStored',
  // ECG
  'leads',
  'samplingFrequency',
  'durationSeconds',
  'sampleCount',
  'triage',
  // slides
  'levels',
  'mppX',
  'mppY',
  'objectivePower',
  'format',
]);

/** UIDs are shown only as their de-identified replacements. */
const UID_KEYS = new Set(['studyInstanceUid', 'seriesInstanceUid', 'sopInstanceUid']);

/** The original UIDs a metadata record carries (what must be remapped before `redactFileMetadata`). */
export function uidsIn(metadata: Record<string, unknown>): string[] {
  return [...UID_KEYS].map((k) => metadata[k]).filter((v): v is string => typeof v === 'string' && v !== '');
}

/**
 * A file's (or case's) technical metadata for a de-identified view: allowlisted keys, UIDs replaced through
 * `replacementUid` (dropped when it has none), ECG triage without free text beyond its generated reason.
 */
export function redactFileMetadata(
  metadata: Record<string, unknown>,
  replacementUid: ReadonlyMap<string, string>,
): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(metadata)) {
    if (UID_KEYS.has(key)) {
      const replacement = typeof value === 'string' ? replacementUid.get(value) : undefined;
      if (replacement) out[key] = replacement;
    } else if (key === 'triage' && value !== null && typeof value === 'object') {
      const t = value as Record<string, unknown>;
      out.triage = { heartRate: t.heartRate, flags: t.flags, quality: t.quality, priority: t.priority };
    } else if (TECHNICAL_KEYS.has(key)) {
      out[key] = value;
    }
  }
  return out;
}

/** A stored file's name as a de-identified view shows it: clinics name files after patients. */
export function deidentifiedFileName(format: string | null, index: number): string {
  return `${format ?? 'file'}-${index + 1}`;
}

const SERIES_ARTIFACT = /^series-([0-9.]+)\.(\w+)$/;

/** Series thumbnails are named after the original SeriesInstanceUID; a de-identified view names the
 * replacement, and the artifact route maps it back. Other names carry only file ids. */
export function deidentifiedArtifactName(name: string, replacementUid: ReadonlyMap<string, string>): string {
  const m = SERIES_ARTIFACT.exec(name);
  if (!m) return name;
  const replacement = replacementUid.get(m[1]!);
  return replacement ? `series-${replacement}.${m[2]}` : `series-unknown.${m[2]}`;
}

/** The original UIDs series artifact names carry. */
export function uidsInArtifactNames(names: readonly string[]): string[] {
  return names.map((n) => SERIES_ARTIFACT.exec(n)?.[1]).filter((v): v is string => v !== undefined);
}
