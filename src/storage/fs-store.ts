import { randomUUID } from 'node:crypto';
import type { Dirent, Stats } from 'node:fs';
import { type FileHandle, mkdir, open, readdir, rename, rmdir, stat, unlink } from 'node:fs/promises';
import { dirname, isAbsolute, join, resolve, sep } from 'node:path';
import type { Readable } from 'node:stream';
import { pathToFileURL } from 'node:url';
import { AppError, isAppError } from '../errors.js';
import {
  checkContentLength,
  isValidKey,
  RESERVED_TOP_SEGMENT,
  validateKey,
  validatePrefix,
  validateRange,
} from './keys.js';
import type { ByteRange, ObjectInfo, ObjectStore, PutOptions } from './object-store.js';

/** Errors that mean "this key names no object" when reading or deleting it. */
const MISSING_CODES = new Set(['ENOENT', 'ENOTDIR', 'EISDIR']);
/** A rename can lose a race with `delete` pruning the freshly made parent directory; it is retried this often. */
const RENAME_ATTEMPTS = 3;

function errnoCode(err: unknown): string {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : '';
}

/** Maps a filesystem error to an AppError; `key` is for the message only. */
function storageError(err: unknown, action: string, key: string): AppError {
  if (isAppError(err)) return err;
  const code = errnoCode(err);
  const message = err instanceof Error ? err.message : String(err);
  if (code === 'ENAMETOOLONG') {
    return new AppError('INVALID_KEY', `${action} ${key}: path too long`, { cause: err, retryable: false });
  }
  // ENOSPC, EACCES, EROFS, EIO, EMFILE … are conditions of the machine, not of the request: a later try may work.
  return new AppError('STORAGE_UNAVAILABLE', `${action} ${key}: ${message}`, {
    cause: err,
    retryable: true,
    details: { key, errno: code },
  });
}

function notFound(key: string, cause?: unknown): AppError {
  return new AppError('NOT_FOUND', `object ${key} not found`, { cause, retryable: false, details: { key } });
}

/** Resolves an inclusive HTTP-style range against the object size; `end` past the end is clamped, as in HTTP. */
function resolveRange(range: ByteRange, size: number, key: string): { start: number; end: number } {
  validateRange(range);
  if (range.start >= size) {
    throw new AppError(
      'VALIDATION_FAILED',
      `range start ${range.start} is beyond the end of ${key} (${size} bytes)`,
      {
        retryable: false,
        details: { key, size, start: range.start },
      },
    );
  }
  return { start: range.start, end: Math.min(range.end ?? size - 1, size - 1) };
}

/** Chunks of a streamed body are gathered up to this size and written with one writev. */
const WRITE_BATCH_BYTES = 1024 * 1024;

/** Writes every byte of `chunks`, in order, with as few writev calls as the kernel allows. */
async function writeAllV(handle: FileHandle, chunks: Uint8Array[]): Promise<void> {
  let pending = chunks.filter((c) => c.length > 0);
  while (pending.length > 0) {
    let { bytesWritten } = await handle.writev(pending);
    if (bytesWritten <= 0) throw new Error('write made no progress');
    // A short write (rare: a full disk, a signal) continues where it stopped.
    const rest: Uint8Array[] = [];
    for (const c of pending) {
      if (bytesWritten >= c.length) bytesWritten -= c.length;
      else {
        rest.push(bytesWritten > 0 ? c.subarray(bytesWritten) : c);
        bytesWritten = 0;
      }
    }
    pending = rest;
  }
}

/**
 * Group commit for directory syncs: many objects published into one directory at once (the files of one
 * upload) share an fsync. A caller's rename is durable after a sync that started after it, so a request that
 * arrives while one runs waits for the next, which serves everyone who asked in the meantime.
 */
class DirectorySyncs {
  private readonly state = new Map<string, { running: Promise<void>; next?: Promise<void> }>();

  sync(dir: string): Promise<void> {
    const current = this.state.get(dir);
    if (!current) return this.start(dir);
    current.next ??= current.running.catch(() => undefined).then(() => this.start(dir));
    return current.next;
  }

  private start(dir: string): Promise<void> {
    const running = syncDirectory(dir).finally(() => {
      const s = this.state.get(dir);
      if (s?.running === running && s.next === undefined) this.state.delete(dir);
    });
    this.state.set(dir, { running });
    return running;
  }
}

async function syncDirectory(path: string): Promise<void> {
  const handle = await open(path, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/** Orders like S3's ListObjectsV2 (UTF-8 bytes), which is not JavaScript's UTF-16 string order. */
function compareUtf8(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'));
}

function infoFromStats(key: string, stats: Stats): ObjectInfo {
  return {
    key,
    bytes: stats.size,
    // Microseconds, so two puts of the same size within one millisecond still get different versions.
    etag: `${Math.round(stats.mtimeMs * 1000).toString(16)}-${stats.size.toString(16)}`,
    lastModified: stats.mtime,
  };
}

/**
 * Objects as plain files under `root`, the key being the relative path. Uploads are staged in `<root>/.tmp`
 * (same filesystem, so the final rename is atomic) and made durable before they become visible.
 * No content type is kept: `put`, `head` and `list` never report one.
 */
export class FsStore implements ObjectStore {
  readonly driver = 'fs' as const;
  readonly root: string;
  private readonly tmpDir: string;
  private tmpDirMade = false;
  private readonly dirSyncs = new DirectorySyncs();

  constructor(root: string) {
    if (!isAbsolute(root)) throw new AppError('CONFIG_INVALID', `fs storage root must be absolute: ${root}`);
    this.root = resolve(root);
    this.tmpDir = join(this.root, RESERVED_TOP_SEGMENT);
  }

  private pathOf(key: string): string {
    const path = join(this.root, ...validateKey(key).split('/'));
    // validateKey already rules out escapes; this guards against a future change to it.
    if (!path.startsWith(this.root + sep))
      throw new AppError('INVALID_KEY', `key ${key} escapes the storage root`);
    return path;
  }

  /** Errors of the caller's own stream (an aborted upload) are rethrown as they are, not as storage faults. */
  async put(key: string, body: Readable | Uint8Array, options: PutOptions = {}): Promise<ObjectInfo> {
    const target = this.pathOf(key);
    const source = body instanceof Uint8Array ? undefined : body;
    let sourceError: unknown;
    const onSourceError = (err: unknown) => {
      sourceError ??= err;
    };
    source?.once('error', onSourceError);

    const tmp = join(this.tmpDir, randomUUID());
    let handle: FileHandle | undefined;
    try {
      handle = await this.openTemp(tmp);
      if (source === undefined) {
        await writeAllV(handle, [body as Uint8Array]);
      } else {
        // Network chunks are small (16–64 KiB): one writev per megabyte saves a thread-pool trip per chunk.
        // for-await rethrows the source's error, or ERR_STREAM_PREMATURE_CLOSE when it is destroyed mid-way.
        // One write is in flight while the next batch is read, so the network and the disk overlap.
        let batch: Uint8Array[] = [];
        let batched = 0;
        let writing: Promise<void> | undefined;
        const file = handle;
        const flush = async () => {
          const chunks = batch;
          batch = [];
          batched = 0;
          await writing;
          writing = writeAllV(file, chunks);
          writing.catch(() => undefined); // awaited before the next write or after the loop
        };
        for await (const chunk of source) {
          const bytes = typeof chunk === 'string' ? Buffer.from(chunk) : (chunk as Uint8Array);
          batch.push(bytes);
          batched += bytes.length;
          if (batched >= WRITE_BATCH_BYTES) await flush();
        }
        if (batch.length > 0) await flush();
        await writing;
      }
      const stats = await handle.stat();
      checkContentLength(key, options.contentLength, stats.size);
      // Data must be on disk before the rename publishes it, or a crash could leave a visible empty file.
      await handle.sync();
      await handle.close();
      handle = undefined;
      await this.publish(tmp, target, key);
      return infoFromStats(key, stats);
    } catch (err) {
      await handle?.close().catch(() => undefined);
      await unlink(tmp).catch(() => undefined);
      if (sourceError !== undefined) throw sourceError;
      if (errnoCode(err) === 'ERR_STREAM_PREMATURE_CLOSE') throw err; // the source was destroyed without an error
      throw storageError(err, 'put', key);
    } finally {
      source?.off('error', onSourceError);
    }
  }

  private async openTemp(tmp: string): Promise<FileHandle> {
    if (!this.tmpDirMade) {
      await mkdir(this.tmpDir, { recursive: true });
      this.tmpDirMade = true;
    }
    try {
      return await open(tmp, 'wx');
    } catch (err) {
      // The staging folder was removed under us (an operator tidying up): make it again, once.
      if (errnoCode(err) !== 'ENOENT') throw err;
      await mkdir(this.tmpDir, { recursive: true });
      return open(tmp, 'wx');
    }
  }

  /** Renames the finished temp file into place and syncs every directory whose entries changed. */
  private async publish(tmp: string, target: string, key: string): Promise<void> {
    const dir = dirname(target);
    for (let attempt = 1; ; attempt++) {
      let created: string | undefined;
      try {
        // Most puts land in a folder that exists (the files of one upload share one): try the rename first and
        // make the folders only when it says they are missing, one thread-pool trip fewer per object.
        try {
          await rename(tmp, target);
        } catch (err) {
          if (errnoCode(err) !== 'ENOENT') throw err;
          created = await mkdir(dir, { recursive: true });
          await rename(tmp, target);
        }
      } catch (err) {
        const code = errnoCode(err);
        if (code === 'ENOENT' && attempt < RENAME_ATTEMPTS) continue;
        if (code === 'ENOTDIR' || code === 'EISDIR' || code === 'EEXIST') {
          // A file cannot also be a directory: `a` and `a/b` cannot both exist on this driver (they can on S3).
          throw new AppError('CONFLICT', `key ${key} clashes with an existing object or key prefix`, {
            cause: err,
            retryable: false,
            details: { key },
          });
        }
        throw err;
      }
      // The rename is durable once the directory holding the new entry is synced, and a new directory only once
      // its own parent is: walk up from the target's directory to the parent of the first one mkdir made.
      const last = created === undefined ? dir : dirname(created);
      try {
        for (let d = dir; ; d = dirname(d)) {
          await this.dirSyncs.sync(d);
          if (d === last || d === dirname(d)) return;
        }
      } catch (err) {
        // The object is in place but not durable, and the caller is told the put failed: take it back rather
        // than leave an object nobody recorded.
        await unlink(target).catch(() => undefined);
        throw err;
      }
    }
  }

  /** Opens a key for reading; the handle is the caller's to close. */
  private async openObject(key: string): Promise<{ handle: FileHandle; size: number }> {
    const path = this.pathOf(key);
    let handle: FileHandle;
    try {
      handle = await open(path, 'r');
    } catch (err) {
      if (MISSING_CODES.has(errnoCode(err))) throw notFound(key, err);
      throw storageError(err, 'get', key);
    }
    try {
      const stats = await handle.stat();
      if (!stats.isFile()) throw notFound(key);
      return { handle, size: stats.size };
    } catch (err) {
      await handle.close().catch(() => undefined);
      throw storageError(err, 'get', key);
    }
  }

  async get(key: string, range?: ByteRange): Promise<Readable> {
    const { handle, size } = await this.openObject(key);
    try {
      const bounds = range === undefined ? {} : resolveRange(range, size, key);
      return handle.createReadStream({ ...bounds, autoClose: true });
    } catch (err) {
      await handle.close().catch(() => undefined);
      throw storageError(err, 'get', key);
    }
  }

  async getBytes(key: string, range?: ByteRange): Promise<Uint8Array> {
    const { handle, size } = await this.openObject(key);
    try {
      const { start, end } =
        range === undefined ? { start: 0, end: size - 1 } : resolveRange(range, size, key);
      const out = new Uint8Array(end - start + 1);
      let filled = 0;
      // Bounded by the buffer length; a file truncated underneath us ends the loop through bytesRead === 0.
      while (filled < out.length) {
        const { bytesRead } = await handle.read(out, filled, out.length - filled, start + filled);
        if (bytesRead === 0) break;
        filled += bytesRead;
      }
      return filled === out.length ? out : out.subarray(0, filled);
    } catch (err) {
      throw storageError(err, 'get', key);
    } finally {
      await handle.close().catch(() => undefined);
    }
  }

  async head(key: string): Promise<ObjectInfo | null> {
    const path = this.pathOf(key);
    try {
      const stats = await stat(path);
      return stats.isFile() ? infoFromStats(key, stats) : null;
    } catch (err) {
      if (MISSING_CODES.has(errnoCode(err))) return null;
      throw storageError(err, 'head', key);
    }
  }

  async delete(key: string): Promise<void> {
    const path = this.pathOf(key);
    try {
      await unlink(path);
    } catch (err) {
      // Deleting what is not there (or is only a key prefix, i.e. a directory) is a no-op, as on S3.
      if (MISSING_CODES.has(errnoCode(err))) return;
      throw storageError(err, 'delete', key);
    }
    // Empty directories left behind would block a later put of a key equal to their name (`a` after `a/b`).
    for (let d = dirname(path); d !== this.root && d.startsWith(this.root + sep); d = dirname(d)) {
      try {
        await rmdir(d);
      } catch {
        return; // ENOTEMPTY (still in use) or already gone: either way the directories above stay.
      }
    }
  }

  async *list(prefix: string): AsyncIterable<ObjectInfo> {
    validatePrefix(prefix);
    const slash = prefix.lastIndexOf('/');
    const dirKey = slash === -1 ? '' : prefix.slice(0, slash);
    const start = dirKey === '' ? this.root : join(this.root, ...dirKey.split('/'));
    yield* this.walk(start, dirKey, prefix.slice(slash + 1));
  }

  /** Depth-first in S3 order: a directory sorts as its name followed by `/`, which is where its keys belong. */
  private async *walk(dir: string, dirKey: string, namePrefix: string): AsyncGenerator<ObjectInfo> {
    let entries: Dirent[];
    try {
      entries = await readdir(dir, { withFileTypes: true });
    } catch (err) {
      if (MISSING_CODES.has(errnoCode(err))) return;
      throw storageError(err, 'list', dirKey);
    }
    const children = entries
      .filter((e) => e.name.startsWith(namePrefix) && (e.isFile() || e.isDirectory()))
      .filter((e) => !(dirKey === '' && e.name === RESERVED_TOP_SEGMENT))
      .map((e) => ({ entry: e, sortName: e.isDirectory() ? `${e.name}/` : e.name }))
      .sort((a, b) => compareUtf8(a.sortName, b.sortName));
    for (const { entry } of children) {
      const key = dirKey === '' ? entry.name : `${dirKey}/${entry.name}`;
      const path = join(dir, entry.name);
      if (entry.isDirectory()) {
        yield* this.walk(path, key, '');
        continue;
      }
      // Files put there by hand with names no key could have are not objects of this store.
      if (!isValidKey(key)) continue;
      let stats: Stats;
      try {
        stats = await stat(path);
      } catch (err) {
        if (MISSING_CODES.has(errnoCode(err))) continue; // deleted while we walked
        throw storageError(err, 'list', key);
      }
      yield infoFromStats(key, stats);
    }
  }

  /** The file itself; it stays readable as long as the object exists, whatever `expiresInSeconds` says. */
  async url(key: string, _expiresInSeconds?: number): Promise<string> {
    return pathToFileURL(this.pathOf(key)).href;
  }

  async close(): Promise<void> {}
}
