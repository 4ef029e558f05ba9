import { AppError } from '../errors.js';
import { detectFormat, SNIFF_BYTES } from './detect.js';
import { type DicomInstance, isMediaDirectory, parseDicom } from './dicom/parse-dicom.js';
import { hasAnyPixelData } from './dicom/pixel-data.js';
import { parseDicomWaveform } from './ecg/dicom-waveform.js';
import type { Ecg } from './ecg/ecg.js';
import { triageEcg } from './ecg/measure.js';
import { detectEcgFormat, parseEcg } from './ecg/parse-ecg.js';
import {
  parseWfdbHeader,
  parseWfdbMultiSegment,
  parseWfdbRecord,
  type WfdbHeader,
  wfdbSegmentHeaderFiles,
  wfdbSignalFiles,
} from './ecg/wfdb.js';
import { transcodeWfdbFlac, usesWfdbFlac, wfdbFormatList } from './ecg/wfdb-flac.js';
import { describeSlide, type SlideInfo } from './slide/describe-slide.js';
import { IDENTIFYING_FLAVORS, wsiImageFlavor } from './slide/dicom-wsi.js';
import { readTiff } from './slide/tiff.js';
import {
  type ByteSource,
  type CaseKind,
  isDetectedEcgFormat,
  type PatientInfo,
  withReadAhead,
} from './types.js';

/** What the pipeline learns about one file before grouping it into a case. */
export interface Inspection {
  /** The specialty the file belongs to; null for companion files (a WFDB signal file) that ride with another. */
  kind: CaseKind | null;
  /** Stable format name stored in files.format: dicom, dicom-waveform, dicom-wsi, wfdb, wfdb-signal, or a slide format. */
  format: string;
  metadata: Record<string, unknown>;
  patient?: PatientInfo | undefined;
  /** DICOM grouping keys: files of one StudyInstanceUID from one site form one case. */
  studyInstanceUid?: string | undefined;
  seriesInstanceUid?: string | undefined;
  sopInstanceUid?: string | undefined;
  /** Other files (by name, from the same upload) this one needs, e.g. the .dat files of a WFDB header. */
  companions?: string[] | undefined;
}

/** Reads a sibling file of the same upload by name (null when absent). */
export type SiblingReader = (name: string) => Promise<Uint8Array | null>;

/** DICOM SOP classes of VL Whole Slide Microscopy: they are pathology, not radiology. */
const WSI_SOP_CLASS = '1.2.840.10008.5.1.4.1.1.77.1.6';

/** Largest non-slide file read whole into memory for parsing. Slides are read by range instead. */
export const MAX_WHOLE_FILE_BYTES = 1024 ** 3;

/**
 * Detects and parses one file. Pure: all bytes come through `source` (ranged reads) and `siblings`.
 * Throws AppError UNSUPPORTED_FORMAT / CORRUPT_FILE for input the pipeline cannot take.
 */
export interface InspectOptions {
  /** The site's mains frequency for the ECG notch (undefined: from the file, or detected). */
  mainsFrequency?: 50 | 60 | undefined;
}

export async function inspectFile(
  stored: ByteSource,
  name: string,
  siblings?: SiblingReader,
  options: InspectOptions = {},
): Promise<Inspection> {
  // One read serves the sniff and the first DICOM header prefix (and a small file whole).
  const source = withReadAhead(stored, DICOM_HEADER_PREFIXES[0]);
  const head = await source.read(0, Math.min(SNIFF_BYTES, source.size));
  if (source.size === 0) throw new AppError('UNSUPPORTED_FORMAT', 'empty file', { retryable: false });
  const detected = detectFormat(head, name);
  if (isDetectedEcgFormat(detected)) {
    return inspectEcg(parseEcg(detected, await readWhole(source, name)), detected, options);
  }
  switch (detected) {
    case 'tiff':
      return inspectSlide(await describeSlide(await readTiff(source)));
    case 'dicom':
      return inspectParsedDicom(await readDicomToInspect(source, name), options);
    case 'wfdb-header':
      return inspectWfdb(await readWhole(source, name), name, siblings, options);
    case 'wfdb-signal':
      return { kind: null, format: 'wfdb-signal', metadata: { bytes: source.size } };
    case 'unknown': {
      // Formats with weak magic (UTF-16 XML, headerless CSV) get a second look by the ECG sniffer.
      const ecgFormat = detectEcgFormat(head, name);
      if (ecgFormat)
        return inspectEcg(parseEcg(ecgFormat, await readWhole(source, name)), ecgFormat, options);
      throw new AppError(
        'UNSUPPORTED_FORMAT',
        `${name || 'file'}: not a DICOM, ECG or slide format Teleread reads`,
        { retryable: false },
      );
    }
    default:
      throw new AppError(
        'UNSUPPORTED_FORMAT',
        `${name || 'file'}: ${detected} is recognised but not supported yet`,
        { retryable: false, details: { format: detected } },
      );
  }
}

/** How much of a DICOM file is read, in turn, to find its header whole: a CT or MR slice's fits in the first
 * 16 KiB, an enhanced multi-frame's functional groups may need more, and the pixel data after the header is not
 * needed to inspect the file (frames are decoded later, when they are rendered). A 512² slice is read 16 KiB
 * rather than 128 KiB: at 200 slices a study, 22 MB less to read per study. */
const DICOM_HEADER_PREFIXES = [16 * 1024, 128 * 1024] as const;

interface ParsedDicomFile {
  instance: DicomInstance;
  /** What `instance` was parsed from: the file's start, or the whole file. */
  bytes: Uint8Array;
}

/**
 * The file parsed as far as inspecting it needs: its start when its header, up to the pixel data, lies within
 * it, else the whole file (a longer header, a deflated data set, a waveform, whose samples triage reads, or
 * bytes that do not parse, which the whole file then explains). A 50 MB mammogram or a 500 MB slide level is not
 * read whole to learn its study UID.
 */
async function readDicomToInspect(source: ByteSource, name: string): Promise<ParsedDicomFile> {
  for (const length of DICOM_HEADER_PREFIXES) {
    if (source.size <= length) break;
    const prefix = await source.read(0, length);
    try {
      const instance = parseDicom(prefix);
      if (instance.isWaveform) break; // its samples are wanted: no longer prefix will do
      if (hasAnyPixelData(instance)) return { instance, bytes: prefix };
    } catch {
      // Cut inside the header, or damaged: a longer prefix or the whole file decides, with its own error.
    }
  }
  const bytes = await readWhole(source, name);
  return { instance: parseDicom(bytes), bytes };
}

async function readWhole(source: ByteSource, name: string): Promise<Uint8Array> {
  if (source.size > MAX_WHOLE_FILE_BYTES) {
    throw new AppError(
      'UNSUPPORTED_FORMAT',
      `${name}: ${source.size} bytes is larger than this parser reads`,
      {
        retryable: false,
      },
    );
  }
  return source.read(0, source.size);
}

export function inspectDicom(bytes: Uint8Array, options: InspectOptions = {}): Inspection {
  return inspectParsedDicom({ instance: parseDicom(bytes), bytes }, options);
}

function inspectParsedDicom({ instance, bytes }: ParsedDicomFile, options: InspectOptions): Inspection {
  const base = {
    patient: instance.patient,
    studyInstanceUid: instance.studyInstanceUid,
    seriesInstanceUid: instance.seriesInstanceUid,
    sopInstanceUid: instance.sopInstanceUid,
  };
  if (instance.isWaveform) {
    const ecgPart = inspectEcg(parseDicomWaveform(bytes), 'dicom-waveform', options);
    return {
      ...base,
      ...ecgPart,
      patient: base.patient,
      metadata: { ...dicomSummary(instance), ...ecgPart.metadata },
    };
  }
  if (instance.sopClassUid === WSI_SOP_CLASS || instance.modality === 'SM') {
    return { ...base, kind: 'pathology', format: 'dicom-wsi', metadata: dicomSummary(instance) };
  }
  return { ...base, kind: 'imaging', format: 'dicom', metadata: dicomSummary(instance) };
}

/**
 * Whether an instance's pixels may show who the patient is: BurnedInAnnotation (0028,0301) YES, or a slide's label
 * or overview image. Kept on the files row at ingest, so that routing and the de-identified view need not read the
 * header again to know.
 */
export interface PixelIdentity {
  burnedInAnnotation: boolean;
  /** A slide LABEL or OVERVIEW image (ImageType value 3). */
  identifyingImage: boolean;
}

export function pixelIdentity(i: DicomInstance): PixelIdentity {
  const flavor = wsiImageFlavor(i);
  return {
    burnedInAnnotation: i.dataSet.string('x00280301')?.trim().toUpperCase() === 'YES',
    identifyingImage: flavor !== undefined && IDENTIFYING_FLAVORS.has(flavor),
  };
}

/** The flags a files row's metadata holds, or undefined for a row ingested before they were kept. */
export function pixelIdentityOf(metadata: unknown): PixelIdentity | undefined {
  const m = metadata as Partial<Record<keyof PixelIdentity, unknown>> | null;
  return typeof m?.burnedInAnnotation === 'boolean' && typeof m.identifyingImage === 'boolean'
    ? { burnedInAnnotation: m.burnedInAnnotation, identifyingImage: m.identifyingImage }
    : undefined;
}

/** Technical DICOM attributes worth keeping on the row (no patient data). */
export function dicomSummary(i: DicomInstance): Record<string, unknown> {
  return {
    ...pixelIdentity(i),
    part10: i.part10,
    transferSyntaxUid: i.transferSyntaxUid,
    sopClassUid: i.sopClassUid,
    modality: i.modality,
    studyDate: i.studyDate,
    studyDescription: i.studyDescription,
    seriesDescription: i.seriesDescription,
    seriesNumber: i.seriesNumber,
    instanceNumber: i.instanceNumber,
    bodyPartExamined: i.bodyPartExamined,
    rows: i.rows,
    columns: i.columns,
    // Structured reports, presentation states, key object selections … belong to the study but have no picture.
    hasPixelData: hasAnyPixelData(i),
    ...(isMediaDirectory(i) ? { mediaDirectory: true } : {}),
    numberOfFrames: i.numberOfFrames,
    photometricInterpretation: i.photometricInterpretation,
    bitsAllocated: i.bitsAllocated,
    bitsStored: i.bitsStored,
  };
}

export function ecgSummary(ecg: Ecg): Record<string, unknown> {
  return {
    leads: ecg.leads.map((l) => l.name),
    samplingFrequency: ecg.samplingFrequency,
    durationSeconds: Math.round(ecg.durationSeconds * 1000) / 1000,
    sampleCount: ecg.sampleCount,
    ...(ecg.device ? { device: ecg.device } : {}),
  };
}

/** What triage found, kept on the file row and used to raise the case (no beat list: it can be long). */
export interface EcgTriageSummary {
  heartRate: number | null;
  flags: Array<{ code: string; message: string; critical: boolean; atSeconds?: number }>;
  quality: string;
  rrIrregular: boolean;
  priority: 'stat' | null;
  reason: string | null;
}

export function triageSummary(ecg: Ecg, options: InspectOptions = {}): EcgTriageSummary {
  const t = triageEcg(ecg, options.mainsFrequency ? { mainsFrequency: options.mainsFrequency } : {});
  return {
    heartRate: t.heartRate,
    flags: t.flags.map((f) => ({
      code: f.code,
      message: f.message,
      critical: f.critical,
      ...(f.atSeconds !== undefined ? { atSeconds: f.atSeconds } : {}),
    })),
    quality: t.quality.overall,
    rrIrregular: t.rr.irregular,
    priority: t.priority,
    reason: t.reason,
  };
}

/** An ECG of any format: its summary plus triage (a critical finding makes the case stat). */
export function inspectEcg(ecg: Ecg, format: string, options: InspectOptions = {}): Inspection {
  return {
    kind: 'ecg',
    format,
    metadata: { ...ecgSummary(ecg), triage: triageSummary(ecg, options) },
    patient: ecg.patient,
  };
}

async function inspectWfdb(
  bytes: Uint8Array,
  name: string,
  siblings: SiblingReader | undefined,
  options: InspectOptions,
): Promise<Inspection> {
  const ecg = await loadWfdbRecord(bytes, name, siblings);
  const base = inspectEcg(ecg, 'wfdb', options);
  return {
    ...base,
    metadata: { record: name.replace(/\.hea$/i, ''), ...base.metadata },
    companions: wfdbCompanions(parseWfdbHeader(new TextDecoder('latin1').decode(bytes))),
  };
}

/** Parses a WFDB header and its signal files (fetched by name from the same upload), single- or multi-segment. */
export async function loadWfdbRecord(
  headerBytes: Uint8Array,
  name: string,
  siblings?: SiblingReader,
): Promise<Ecg> {
  const header = parseWfdbHeader(new TextDecoder('latin1').decode(headerBytes));
  const fetch = async (file: string): Promise<Uint8Array> => {
    const data = siblings ? await siblings(file) : null;
    if (!data) {
      throw new AppError('CORRUPT_FILE', `${name}: ${file}, named by the header, was not uploaded with it`, {
        retryable: false,
        details: { missing: file },
      });
    }
    return data;
  };
  const files: Record<string, Uint8Array> = {};
  if (!header.segments) {
    for (const file of wfdbSignalFiles(header)) files[file] = await fetch(file);
    if (!usesWfdbFlac(header)) return parseWfdbRecord(header, files);
    const plain = await transcodeWfdbFlac(header, files);
    const ecg = parseWfdbRecord(plain.header, plain.files);
    ecg.acquisition.wfdbFormats = wfdbFormatList([header]);
    return ecg;
  }
  const segments: Record<string, WfdbHeader> = {};
  for (const segmentFile of wfdbSegmentHeaderFiles(header)) {
    const segment = parseWfdbHeader(new TextDecoder('latin1').decode(await fetch(segmentFile)));
    segments[segment.recordName] = segment;
    for (const file of wfdbSignalFiles(segment)) files[file] ??= await fetch(file);
  }
  if (!Object.values(segments).some(usesWfdbFlac)) return parseWfdbMultiSegment(header, segments, files);
  const plainSegments: Record<string, WfdbHeader> = {};
  let plainFiles = files;
  for (const [segmentName, segment] of Object.entries(segments)) {
    const plain = await transcodeWfdbFlac(segment, plainFiles);
    plainSegments[segmentName] = plain.header;
    plainFiles = plain.files;
  }
  const ecg = parseWfdbMultiSegment(header, plainSegments, plainFiles);
  const read = (header.segments ?? []).filter((s) => s.recordName !== '~' && s.sampleCount > 0);
  ecg.acquisition.wfdbFormats = wfdbFormatList(read.flatMap((s) => segments[s.recordName] ?? []));
  return ecg;
}

/** Whether files stored under this format name are ECGs that `loadEcgFile` reads. */
export function isEcgFormat(format: string): boolean {
  return format === 'wfdb' || format === 'dicom-waveform' || isDetectedEcgFormat(format);
}

/** Any ECG file, by its stored format name, as the canonical model (WFDB signal files come through `siblings`). */
export async function loadEcgFile(
  format: string,
  bytes: Uint8Array,
  name: string,
  siblings?: SiblingReader,
): Promise<Ecg> {
  if (format === 'wfdb') return loadWfdbRecord(bytes, name, siblings);
  return parseEcg(format, bytes);
}

/** Every file a WFDB header needs from its upload: signal files, or segment headers and their signal files. */
function wfdbCompanions(header: WfdbHeader): string[] {
  return header.segments ? wfdbSegmentHeaderFiles(header) : wfdbSignalFiles(header);
}

function inspectSlide(info: SlideInfo): Inspection {
  return {
    kind: 'pathology',
    format: info.format,
    metadata: {
      levels: info.levels.map((l) => ({
        width: l.width,
        height: l.height,
        downsample: l.downsample,
        compression: l.compression,
      })),
      mppX: info.mppX,
      mppY: info.mppY,
      objectivePower: info.objectivePower,
      scanDate: info.scanDate,
      associated: info.associated.map((a) => ({ name: a.name, width: a.width, height: a.height })),
    },
  };
}
