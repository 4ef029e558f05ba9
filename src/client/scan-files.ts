import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { open, readdir, stat } from 'node:fs/promises';
import path from 'node:path';
import { detectFormat, SNIFF_BYTES } from '../formats/detect.js';
import { isMediaDirectory, parseDicom } from '../formats/dicom/parse-dicom.js';
import type { DetectedFormat } from '../formats/types.js';

/** One file the uploader may send, recognised by its content (a DICOM file needs no `.dcm`). */
export interface ScannedFile {
  /** Absolute path. */
  path: string;
  name: string;
  bytes: number;
  mtimeMs: number;
  format: DetectedFormat;
  /** DICOM only: the study it belongs to, for progress per study. */
  studyInstanceUid?: string | undefined;
  /** A DICOMDIR: the index of a CD or DVD, which the uploader leaves out (the server refuses it alone). */
  mediaDirectory?: boolean;
}

/**
 * Files that must reach the server as one upload: a folder argument (a study, an ECG record with its header
 * and signal files), or a loose file together with the loose files of its WFDB record.
 */
export interface ScannedBatch {
  /** The argument it came from, absolute; also its identity in the resume state. */
  label: string;
  files: ScannedFile[];
}

/** The DICOM header (and so the study UID) is read from at most this much of the file's start. */
const DICOM_HEADER_BYTES = 1024 * 1024;

async function readHead(file: string, bytes: number): Promise<Uint8Array> {
  const handle = await open(file, 'r');
  try {
    const out = new Uint8Array(bytes);
    let filled = 0;
    while (filled < bytes) {
      const { bytesRead } = await handle.read(out, filled, bytes - filled, filled);
      if (bytesRead === 0) break;
      filled += bytesRead;
    }
    return out.subarray(0, filled);
  } finally {
    await handle.close();
  }
}

async function describe(file: string): Promise<ScannedFile> {
  const info = await stat(file);
  const name = path.basename(file);
  // One read serves the sniff and, for DICOM, the header.
  const head = await readHead(file, Math.min(info.size, DICOM_HEADER_BYTES));
  const format = detectFormat(head.subarray(0, SNIFF_BYTES), name);
  let studyInstanceUid: string | undefined;
  let mediaDirectory = false;
  if (format === 'dicom') {
    try {
      const instance = parseDicom(head);
      studyInstanceUid = instance.studyInstanceUid;
      mediaDirectory = isMediaDirectory(instance);
    } catch {
      // A header the client cannot read is still sent: the server decides, and says why if it refuses.
    }
  }
  return {
    path: file,
    name,
    bytes: info.size,
    mtimeMs: info.mtimeMs,
    format,
    studyInstanceUid,
    ...(mediaDirectory ? { mediaDirectory } : {}),
  };
}

/** Regular files under `dir`, sorted, hidden ones (and hidden folders) left out. Symbolic links are not followed. */
async function walk(dir: string, out: string[]): Promise<void> {
  const entries = await readdir(dir, { withFileTypes: true });
  entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  for (const e of entries) {
    if (e.name.startsWith('.')) continue;
    const full = path.join(dir, e.name);
    if (e.isDirectory()) await walk(full, out);
    else if (e.isFile()) out.push(full);
  }
}

const stemOf = (file: string) => path.join(path.dirname(file), path.basename(file).replace(/\.[^.]*$/, ''));

/**
 * Each folder argument is one batch. Loose files are one batch each, except that files sharing the stem of a
 * loose `.hea` (rec.hea, rec.dat, rec.xyz) go together: a WFDB header must travel with its signal files.
 */
export async function scanInputs(inputs: string[]): Promise<ScannedBatch[]> {
  const batches: ScannedBatch[] = [];
  const loose: string[] = [];
  for (const input of inputs) {
    const abs = path.resolve(input);
    const info = await stat(abs);
    if (info.isDirectory()) {
      const files: string[] = [];
      await walk(abs, files);
      if (files.length > 0) batches.push({ label: abs, files: await Promise.all(files.map(describe)) });
    } else if (info.isFile()) {
      if (!loose.includes(abs)) loose.push(abs);
    }
  }
  const headers = new Set(loose.filter((f) => /\.hea$/i.test(f)).map(stemOf));
  const byStem = new Map<string, string[]>();
  for (const f of loose) {
    const stem = stemOf(f);
    const group = headers.has(stem) ? stem : f;
    byStem.set(group, [...(byStem.get(group) ?? []), f]);
  }
  for (const [group, files] of byStem) {
    batches.push({
      label: headers.has(group) ? `${group}.hea` : group,
      files: await Promise.all(files.map(describe)),
    });
  }
  return batches;
}

/** sha256 of a file or of a byte range of it, streamed. */
export async function sha256OfFile(
  file: string,
  range?: { start: number; length: number },
  onBytes?: (n: number) => void,
): Promise<Buffer> {
  const hash = createHash('sha256');
  if (range && range.length === 0) return hash.digest();
  const stream = createReadStream(file, {
    highWaterMark: 1024 * 1024,
    ...(range ? { start: range.start, end: range.start + range.length - 1 } : {}),
  });
  for await (const chunk of stream) {
    hash.update(chunk as Buffer);
    onBytes?.((chunk as Buffer).length);
  }
  return hash.digest();
}
