import { createReadStream } from 'node:fs';
import { Readable, Transform, type TransformCallback } from 'node:stream';

/**
 * The few tus 1.0 requests the uploader makes, over fetch: create, ask the offset, send one chunk. Each chunk
 * carries `Upload-Checksum: sha256 …`, so the server keeps it only when it arrived whole and intact: the
 * offset it acknowledges is exactly what the next run resumes from.
 */

export class HttpError extends Error {
  constructor(
    readonly status: number,
    readonly body: string,
    what: string,
  ) {
    super(`${what}: HTTP ${status}${body ? ` ${body.trim().slice(0, 300)}` : ''}`);
    this.name = 'HttpError';
  }
}

/** The connection stalled: no byte moved for `stallTimeoutMs`. */
export class StallError extends Error {
  constructor(ms: number) {
    super(`no progress for ${Math.round(ms / 1000)} s`);
    this.name = 'StallError';
  }
}

export interface TusConnection {
  key: string;
  /** Abort a request when no byte has moved (either way) for this long. */
  stallTimeoutMs: number;
}

const TUS = { 'tus-resumable': '1.0.0' };

function encodeMetadata(meta: Record<string, string | undefined>): string {
  return Object.entries(meta)
    .filter((e): e is [string, string] => e[1] !== undefined && e[1] !== '')
    .map(([k, v]) => `${k} ${Buffer.from(v).toString('base64')}`)
    .join(',');
}

/** Runs `fn` with an AbortSignal that fires once `touch` has not been called for `ms`. */
async function withStallGuard<T>(
  ms: number,
  fn: (signal: AbortSignal, touch: () => void) => Promise<T>,
): Promise<T> {
  const controller = new AbortController();
  let last = Date.now();
  const touch = () => {
    last = Date.now();
  };
  const timer = setInterval(
    () => {
      if (Date.now() - last > ms) controller.abort(new StallError(ms));
    },
    Math.min(1000, Math.max(50, ms / 4)),
  );
  try {
    return await fn(controller.signal, touch);
  } catch (err) {
    if (controller.signal.aborted) throw controller.signal.reason;
    throw err;
  } finally {
    clearInterval(timer);
  }
}

async function failure(res: Response, what: string): Promise<HttpError> {
  const body = await res.text().catch(() => '');
  return new HttpError(res.status, body, what);
}

/** Creates an upload; returns its absolute URL. */
export async function tusCreate(
  endpoint: string,
  conn: TusConnection,
  bytes: number,
  metadata: Record<string, string | undefined>,
): Promise<{ url: string; fileId?: string | undefined }> {
  return withStallGuard(conn.stallTimeoutMs, async (signal) => {
    const res = await fetch(endpoint, {
      method: 'POST',
      headers: {
        ...TUS,
        authorization: `Bearer ${conn.key}`,
        'upload-length': String(bytes),
        'upload-metadata': encodeMetadata(metadata),
      },
      signal,
    });
    if (res.status !== 201) throw await failure(res, 'tus create');
    await res.arrayBuffer();
    const location = res.headers.get('location');
    if (!location) throw new HttpError(res.status, '', 'tus create answered without a Location');
    return {
      url: new URL(location, endpoint).href,
      fileId: res.headers.get('teleread-file-id') ?? undefined,
    };
  });
}

/** The server's offset, or 'gone' when the upload no longer exists (expired, terminated, discarded). */
export async function tusOffset(url: string, conn: TusConnection): Promise<number | 'gone'> {
  return withStallGuard(conn.stallTimeoutMs, async (signal) => {
    const res = await fetch(url, {
      method: 'HEAD',
      headers: { ...TUS, authorization: `Bearer ${conn.key}` },
      signal,
    });
    if (res.status === 404 || res.status === 410) return 'gone';
    if (res.status !== 200 && res.status !== 204) throw await failure(res, 'tus offset');
    const offset = Number(res.headers.get('upload-offset'));
    if (!Number.isSafeInteger(offset) || offset < 0)
      throw new HttpError(res.status, '', 'tus offset is not a number');
    return offset;
  });
}

class Counter extends Transform {
  constructor(private readonly onBytes: (n: number) => void) {
    super({ highWaterMark: 256 * 1024 });
  }
  override _transform(chunk: Buffer, _enc: BufferEncoding, done: TransformCallback): void {
    this.onBytes(chunk.length);
    done(null, chunk);
  }
}

export interface PatchResult {
  offset: number;
  fileId?: string | undefined;
  uploadId?: string | undefined;
}

/** Sends bytes [offset, offset + length) of `file`, streamed from disk, with their sha256. */
export async function tusPatch(
  url: string,
  conn: TusConnection,
  chunk: { file: string; offset: number; length: number; sha256: Buffer },
  onBytes: (sentInThisRequest: number) => void,
): Promise<PatchResult> {
  return withStallGuard(conn.stallTimeoutMs, async (signal, touch) => {
    let sent = 0;
    const counter = new Counter((n) => {
      sent += n;
      touch();
      onBytes(sent);
    });
    const source =
      chunk.length === 0
        ? Readable.from([])
        : createReadStream(chunk.file, {
            start: chunk.offset,
            end: chunk.offset + chunk.length - 1,
            highWaterMark: 256 * 1024,
          });
    source.on('error', (err: Error) => counter.destroy(err));
    const res = await fetch(url, {
      method: 'PATCH',
      headers: {
        ...TUS,
        authorization: `Bearer ${conn.key}`,
        'content-type': 'application/offset+octet-stream',
        'content-length': String(chunk.length),
        'upload-offset': String(chunk.offset),
        'upload-checksum': `sha256 ${chunk.sha256.toString('base64')}`,
      },
      body: Readable.toWeb(source.pipe(counter)) as ReadableStream,
      duplex: 'half',
      signal,
    } as RequestInit);
    touch();
    if (res.status !== 204 && res.status !== 200) throw await failure(res, 'tus patch');
    await res.arrayBuffer();
    const offset = Number(res.headers.get('upload-offset'));
    if (!Number.isSafeInteger(offset))
      throw new HttpError(res.status, '', 'tus patch answered without an offset');
    return {
      offset,
      fileId: res.headers.get('teleread-file-id') ?? undefined,
      uploadId: res.headers.get('teleread-upload-id') ?? undefined,
    };
  });
}
