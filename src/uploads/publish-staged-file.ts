import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, open, rename, unlink } from 'node:fs/promises';
import { dirname, join, resolve, sep } from 'node:path';
import type { Readable } from 'node:stream';
import { AppError } from '../errors.js';
import { FsStore } from '../storage/fs-store.js';
import { validateKey } from '../storage/keys.js';
import type { ObjectStore } from '../storage/object-store.js';

/** A rename can lose a race with `FsStore.delete` pruning the parent directory just made; retried this often. */
const RENAME_ATTEMPTS = 3;

function errnoCode(err: unknown): string {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : '';
}

async function syncPath(path: string): Promise<void> {
  const handle = await open(path, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/** sha256 of a stream, read chunk by chunk (never whole in memory). */
export async function sha256OfStream(stream: Readable): Promise<{ sha256: string; bytes: number }> {
  const hash = createHash('sha256');
  let bytes = 0;
  for await (const chunk of stream) {
    const b = chunk as Buffer;
    bytes += b.length;
    hash.update(b);
  }
  return { sha256: hash.digest('hex'), bytes };
}

export function sha256OfFile(path: string): Promise<{ sha256: string; bytes: number }> {
  return sha256OfStream(createReadStream(path, { highWaterMark: 1024 * 1024 }));
}

/** The staging folder for partial tus uploads: inside the fs store's reserved `.tmp` (same filesystem, so the
 * finished file is renamed into place, not copied), or the configured folder. */
export function tusStagingDir(storage: ObjectStore, configured: string): string {
  if (configured !== '') return resolve(configured);
  if (storage instanceof FsStore) return join(storage.root, '.tmp', 'tus');
  return resolve('data/tus-staging');
}

/**
 * Makes a finished staged file the object at `key`. On the fs driver it is renamed into place: a 3 GB upload
 * is not written a second time. The data and every directory entry involved are synced first, as `FsStore.put`
 * does, so the object is durable once this returns. Elsewhere (S3, or staging on another filesystem) the file
 * is streamed through `put`, which is atomic on every driver, and the staged copy removed.
 */
export async function publishStagedFile(
  storage: ObjectStore,
  stagedPath: string,
  key: string,
  bytes: number,
): Promise<void> {
  if (storage instanceof FsStore) {
    const target = join(storage.root, ...validateKey(key).split('/'));
    if (!target.startsWith(storage.root + sep))
      throw new AppError('INVALID_KEY', `key ${key} escapes the root`);
    await syncPath(stagedPath);
    for (let attempt = 1; ; attempt++) {
      try {
        await mkdir(dirname(target), { recursive: true });
        await rename(stagedPath, target);
      } catch (err) {
        const code = errnoCode(err);
        if (code === 'ENOENT' && attempt < RENAME_ATTEMPTS) continue;
        if (code === 'EXDEV') break; // staging on another filesystem: copy through put() below
        throw new AppError('STORAGE_UNAVAILABLE', `publish ${key}: ${(err as Error).message}`, {
          cause: err,
        });
      }
      for (let d = dirname(target); d.startsWith(storage.root); d = dirname(d)) {
        await syncPath(d);
        if (d === storage.root) break;
      }
      return;
    }
  }
  await storage.put(key, createReadStream(stagedPath, { highWaterMark: 1024 * 1024 }), {
    contentLength: bytes,
  });
  await unlink(stagedPath).catch(() => undefined);
}
