import { looksLikeDicom } from './dicom/parse-dicom.js';
import type { DetectedFormat } from './types.js';

/** How many leading bytes `detectFormat` needs to decide. */
export const SNIFF_BYTES = 4096;

const ascii = (bytes: Uint8Array, start: number, length: number) =>
  String.fromCharCode(...bytes.subarray(start, Math.min(bytes.length, start + length)));

/** WFDB signal files are raw sample streams with no magic number: only a header names them, so the file name
 * (as the record's header lists it) is the only evidence. */
const WFDB_SIGNAL_EXT = /\.(dat|d\d+|mat|xyz|sig)$/i;

/** Names modalities and PACS exports give DICOM files (.IMA: Siemens). */
const DICOM_EXT = /\.(dcm|dicom|dic|ima)$/i;

/**
 * Sniffs a file's format from its first bytes (and, only where a format has no magic number, its name).
 * Content first: clinics send DICOM with no extension, or `.dcm` files that are not DICOM.
 */
export function detectFormat(head: Uint8Array, name = ''): DetectedFormat {
  // DICM first: some DICOM files carry a TIFF header in their 128-byte preamble (dual-personality files).
  if (head.length >= 132 && ascii(head, 128, 4) === 'DICM') return 'dicom';
  if (head.length >= 4) {
    const m = ascii(head, 0, 4);
    if (m === 'II*\0' || m === 'MM\0*' || m === 'II+\0' || m === 'MM\0+') return 'tiff';
  }
  if (looksLikeDicom(head)) return 'dicom';
  // EDF/EDF+: the version field is "0" padded with spaces to 8 bytes.
  if (head.length >= 256 && ascii(head, 0, 8) === '0       ') return 'edf';

  const text = decodeTextHead(head);
  if (text !== null) {
    const trimmed = text.replace(/^\uFEFF/, '').trimStart();
    if (trimmed.startsWith('<')) {
      if (/<AnnotatedECG[\s>]/.test(trimmed)) return 'hl7-aecg';
      if (/<RestingECG[\s>]/.test(trimmed)) return 'ge-muse-xml';
      if (/<restingecgdata[\s>]/i.test(trimmed)) return 'philips-xml';
      return 'unknown';
    }
    if (/\.hea$/i.test(name) || looksLikeWfdbHeader(trimmed)) return 'wfdb-header';
    if (/\.csv$/i.test(name) && /^[-+\d.,;\s\w"]+$/.test(trimmed.slice(0, 512))) return 'csv';
  }
  // SCP-ECG opens with a CRC and a record length, then section 0 whose ID is 0 and whose header carries "SCPECG".
  if (head.length >= 22 && ascii(head, 16, 6) === 'SCPECG') return 'scp-ecg';
  if (WFDB_SIGNAL_EXT.test(name)) return 'wfdb-signal';
  // A bare data set (no preamble, no file meta) has no magic, and only group 0002 or 0008 at its start is
  // recognised above: one that opens with another group, or with a stray byte, is DICOM only by its name. The
  // parser then decides, as dcmtk's fallbacks do, and refuses bytes that hold no data set as UNSUPPORTED_FORMAT.
  if (text === null && DICOM_EXT.test(name)) return 'dicom';
  return 'unknown';
}

/** Returns the head as text when it is plausibly text (no NULs, mostly printable), else null. */
function decodeTextHead(head: Uint8Array): string | null {
  if (head.length === 0) return null;
  let printable = 0;
  for (const b of head) {
    if (b === 0) return null;
    if (b === 9 || b === 10 || b === 13 || (b >= 32 && b < 127) || b >= 128) printable++;
  }
  if (printable / head.length < 0.95) return null;
  return new TextDecoder('utf-8', { fatal: false }).decode(head);
}

/** A WFDB record line: `name[/segments] nsig [fs[/counter][(base)] [nsamp …]]`, after optional # comments. */
function looksLikeWfdbHeader(text: string): boolean {
  const line = text.split(/\r?\n/).find((l) => l.trim() !== '' && !l.startsWith('#'));
  return line !== undefined && /^[\w-]+(\/\d+)?\s+\d+(\s+[\d.]+(\/[\d.]+)?(\(\d+\))?)?(\s+\d+)?/.test(line);
}
