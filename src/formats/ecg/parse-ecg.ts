/**
 * One entry point for the single-file ECG formats (everything but WFDB, whose header needs its signal files):
 * sniff the format, then parse to the canonical Ecg. Pure.
 */
import type { DetectedEcgFormat } from '../types.js';
import { type CsvEcgOptions, parseCsvEcg } from './csv.js';
import { parseDicomWaveform } from './dicom-waveform.js';
import type { Ecg } from './ecg.js';
import { unsupported } from './ecg-input.js';
import { parseEdfEcg } from './edf.js';
import { parseGeMuseXml } from './ge-muse.js';
import { parseHl7Aecg } from './hl7-aecg.js';
import { parsePhilipsXml } from './philips-xml.js';
import { parseScpEcg } from './scp-ecg.js';
import { decodeXmlText } from './xml.js';

/** Format names as `detectFormat` (src/formats/detect.ts) and files.format spell them. */
export type EcgFileFormat = DetectedEcgFormat | 'dicom-waveform';

export interface ParseEcgOptions {
  /** Rate and units for CSV files that do not state them. */
  csv?: CsvEcgOptions;
}

/**
 * Parses one ECG file of the named format. `format` is a DetectedFormat name ('scp-ecg', 'hl7-aecg',
 * 'ge-muse-xml', 'philips-xml', 'edf', 'csv', or 'dicom' / 'dicom-waveform'). WFDB is not handled here (see
 * wfdb.ts). Unknown format names → UNSUPPORTED_FORMAT.
 */
export function parseEcg(format: string, bytes: Uint8Array, options: ParseEcgOptions = {}): Ecg {
  switch (format) {
    case 'scp-ecg':
      return parseScpEcg(bytes);
    case 'hl7-aecg':
      return parseHl7Aecg(bytes);
    case 'ge-muse-xml':
      return parseGeMuseXml(bytes);
    case 'philips-xml':
      return parsePhilipsXml(bytes);
    case 'edf':
      return parseEdfEcg(bytes);
    case 'csv':
      return parseCsvEcg(bytes, options.csv);
    case 'dicom':
    case 'dicom-waveform':
      return parseDicomWaveform(bytes);
    default:
      throw unsupported(`no ECG parser for format '${format}'`);
  }
}

function ascii(bytes: Uint8Array, start: number, length: number): string {
  let s = '';
  for (let i = start; i < start + length && i < bytes.length; i++) s += String.fromCharCode(bytes[i]!);
  return s;
}

/**
 * Sniffs an ECG format from a file's first bytes (4 KiB is plenty) and name. Unlike the generic detector it
 * reads UTF-16 XML (Philips PageWriter writes it) and header-less numeric CSV. Returns null when the bytes are
 * none of these formats (DICOM and WFDB are recognised elsewhere).
 */
export function detectEcgFormat(head: Uint8Array, name = ''): DetectedEcgFormat | null {
  if (
    head.length >= 256 &&
    (ascii(head, 0, 8) === '0       ' || (head[0] === 0xff && ascii(head, 1, 7) === 'BIOSEMI'))
  ) {
    return 'edf';
  }
  if (head.length >= 32) {
    const view = new DataView(head.buffer, head.byteOffset, head.byteLength);
    // Section 0 first: its id (0) at byte 8, 'SCPECG' in its reserved bytes, or its own pointer (id 0, index 7).
    const section0 = view.getUint16(8, true) === 0;
    if (
      section0 &&
      (ascii(head, 16, 6) === 'SCPECG' || (view.getUint16(22, true) === 0 && view.getUint32(28, true) === 7))
    ) {
      return 'scp-ecg';
    }
  }
  const looksUtf16 =
    head.length >= 2 &&
    ((head[0] === 0xff && head[1] === 0xfe) ||
      (head[0] === 0xfe && head[1] === 0xff) ||
      (head[0] === 0x3c && head[1] === 0) ||
      (head[0] === 0 && head[1] === 0x3c));
  const text = decodeXmlText(looksUtf16 ? head.subarray(0, head.length & ~1) : head);
  const trimmed = text.replace(/^\uFEFF/, '').trimStart();
  if (trimmed.startsWith('<')) {
    if (/<AnnotatedECG[\s>]/.test(trimmed)) return 'hl7-aecg';
    if (/<RestingECG[\s>]/.test(trimmed)) return 'ge-muse-xml';
    if (/<restingecgdata[\s>]/i.test(trimmed)) return 'philips-xml';
    return null;
  }
  if (text.includes('\0')) return null;
  const lines = trimmed.split(/\r?\n/).filter((l) => l.trim() !== '' && !l.startsWith('#'));
  const numericRows = lines.slice(1, 6).filter((l) => /^[\s\d.,;eE+-]+$/.test(l) && /[,;\t]/.test(l));
  if ((/\.csv$/i.test(name) || numericRows.length >= Math.min(3, lines.length - 1)) && numericRows.length > 0)
    return 'csv';
  return null;
}
