import { randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { readdir, stat } from 'node:fs/promises';
import path from 'node:path';
import { Readable } from 'node:stream';

/** One upload request: files sent together form one case (DICOM regroups by study on the server). */
export interface UploadBatch {
  label: string;
  files: Array<{ path: string; name: string; bytes: number }>;
}

export interface UploadResult {
  uploadId: string;
  files: Array<{ id: string; name: string; bytes: number; sha256: string }>;
}

export interface UploadOptions {
  server: string;
  key: string;
  priority?: 'stat' | 'urgent' | 'routine';
  notes?: string;
  onProgress?: (sentBytes: number, totalBytes: number) => void;
}

/**
 * Each command-line argument becomes one batch: a file alone, or every regular file under a folder (so a WFDB
 * header travels with its signal files). Hidden files are skipped.
 */
export async function collectBatches(paths: string[]): Promise<UploadBatch[]> {
  const batches: UploadBatch[] = [];
  for (const p of paths) {
    const s = await stat(p);
    if (s.isDirectory()) {
      const files = await walk(p);
      if (files.length > 0) batches.push({ label: p, files });
    } else if (s.isFile()) {
      batches.push({ label: p, files: [{ path: p, name: path.basename(p), bytes: s.size }] });
    }
  }
  return batches;
}

async function walk(dir: string): Promise<UploadBatch['files']> {
  const out: UploadBatch['files'] = [];
  const entries = await readdir(dir, { withFileTypes: true });
  entries.sort((a, b) => a.name.localeCompare(b.name));
  for (const e of entries) {
    if (e.name.startsWith('.')) continue;
    const full = path.join(dir, e.name);
    if (e.isDirectory()) out.push(...(await walk(full)));
    else if (e.isFile()) out.push({ path: full, name: e.name, bytes: (await stat(full)).size });
  }
  return out;
}

function quote(s: string): string {
  return s.replace(/["\\\r\n]/g, '_');
}

/**
 * Sends one batch as a streamed multipart/form-data body (files are never read whole into memory) and
 * reports bytes as they leave. The exact Content-Length is computed up front, so proxies see a plain body.
 */
export async function uploadBatch(batch: UploadBatch, options: UploadOptions): Promise<UploadResult> {
  const boundary = `teleread-${randomBytes(12).toString('hex')}`;
  const enc = new TextEncoder();
  const fields: Array<[string, string]> = [];
  if (options.priority) fields.push(['priority', options.priority]);
  if (options.notes) fields.push(['notes', options.notes]);
  const fieldParts = fields.map(([k, v]) =>
    enc.encode(`--${boundary}\r\nContent-Disposition: form-data; name="${k}"\r\n\r\n${v}\r\n`),
  );
  const fileHeads = batch.files.map((f) =>
    enc.encode(
      `--${boundary}\r\nContent-Disposition: form-data; name="file"; filename="${quote(f.name)}"\r\n` +
        'Content-Type: application/octet-stream\r\n\r\n',
    ),
  );
  const tail = enc.encode(`--${boundary}--\r\n`);
  const total =
    fieldParts.reduce((n, p) => n + p.length, 0) +
    batch.files.reduce((n, f, i) => n + fileHeads[i]!.length + f.bytes + 2, 0) +
    tail.length;

  let sent = 0;
  async function* body(): AsyncGenerator<Uint8Array> {
    for (const p of fieldParts) yield p;
    for (const [i, f] of batch.files.entries()) {
      yield fileHeads[i]!;
      for await (const chunk of createReadStream(f.path, { highWaterMark: 256 * 1024 })) {
        sent += (chunk as Buffer).length;
        options.onProgress?.(sent, total);
        yield chunk as Buffer;
      }
      yield enc.encode('\r\n');
    }
    yield tail;
  }

  const response = await fetch(new URL('/v1/uploads', options.server), {
    method: 'POST',
    headers: {
      authorization: `Bearer ${options.key}`,
      'content-type': `multipart/form-data; boundary=${boundary}`,
      'content-length': String(total),
    },
    body: Readable.toWeb(Readable.from(body())) as ReadableStream,
    duplex: 'half',
  } as RequestInit);
  const json = (await response.json().catch(() => null)) as
    | (UploadResult & { error?: { code: string; message: string } })
    | null;
  if (response.status !== 202 || !json || json.error) {
    const err = json?.error;
    throw new Error(
      `upload ${batch.label} failed: HTTP ${response.status} ${err ? `${err.code}: ${err.message}` : ''}`,
    );
  }
  return json;
}
