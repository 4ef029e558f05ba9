/**
 * Types shared by the pure format parsers. Nothing here does I/O.
 */

/** The three reading specialties a file can belong to. */
export type CaseKind = 'imaging' | 'ecg' | 'pathology';

/** A random-access byte source (an object in storage, a file, a buffer). Parsers that must not read a
 * whole file (slides are gigabytes) take this instead of bytes. */
export interface ByteSource {
  readonly size: number;
  read(offset: number, length: number): Promise<Uint8Array>;
}

export function byteSourceFromBytes(bytes: Uint8Array): ByteSource {
  return {
    size: bytes.byteLength,
    async read(offset, length) {
      return bytes.subarray(offset, Math.min(bytes.byteLength, offset + length));
    },
  };
}

/** A source whose first read fetches at least `bytes` from the start, and which answers later reads inside that
 * range from memory: sniffing the format and then reading the header would otherwise open the object (or send a
 * ranged GET to S3) twice. */
export function withReadAhead(source: ByteSource, bytes: number): ByteSource {
  let head: Promise<Uint8Array> | undefined;
  return {
    size: source.size,
    async read(offset, length) {
      const end = Math.min(source.size, offset + length);
      if (end > bytes) return source.read(offset, length);
      head ??= source.read(0, Math.min(source.size, bytes));
      return (await head).subarray(offset, end);
    },
  };
}

/** The single-file ECG formats sniffing tells apart (a DICOM waveform is only known once the DICOM is parsed). */
export const DETECTED_ECG_FORMATS = [
  'scp-ecg',
  'hl7-aecg',
  'ge-muse-xml',
  'philips-xml',
  'edf',
  'csv',
] as const;
export type DetectedEcgFormat = (typeof DETECTED_ECG_FORMATS)[number];

export function isDetectedEcgFormat(format: string): format is DetectedEcgFormat {
  return (DETECTED_ECG_FORMATS as readonly string[]).includes(format);
}

/** What sniffing the first bytes of a file tells. `format` names are stable (stored in files.format). */
export type DetectedFormat = 'dicom' | 'wfdb-header' | 'wfdb-signal' | 'tiff' | DetectedEcgFormat | 'unknown';

/** Patient demographics are kept apart from technical metadata so that de-identification can drop them
 * and logs never see them. */
export interface PatientInfo {
  name?: string | undefined;
  id?: string | undefined;
  birthDate?: string | undefined;
  sex?: string | undefined;
}
