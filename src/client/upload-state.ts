import { createHash, randomBytes } from 'node:crypto';
import { mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import path from 'node:path';

/**
 * What the uploader remembers between runs, one JSON file per batch (server + argument): the batch id, and per
 * file its sha256 (with the size and mtime it was computed for, so an unchanged file is not hashed again), its
 * tus upload URL once created, and whether it is done. A run killed at any point resumes from this: the URL
 * gives the server's acknowledged offset, nothing already acknowledged is sent again.
 * Written atomically (temp file + rename) after every change; removed once the batch is complete.
 */
export interface FileState {
  sha256: string;
  bytes: number;
  mtimeMs: number;
  /** tus upload URL, absolute. */
  url?: string | undefined;
  done?: boolean | undefined;
}

export interface BatchState {
  version: 1;
  server: string;
  label: string;
  batchId?: string | undefined;
  files: Record<string, FileState>;
}

/** `~/.teleread/uploads`, or `./data/upload-state` where there is no home folder (service accounts, containers). */
export function defaultStateDir(): string {
  let home = '';
  try {
    home = homedir();
  } catch {
    home = '';
  }
  return home && home !== '/' ? path.join(home, '.teleread', 'uploads') : path.resolve('data/upload-state');
}

export class UploadStateStore {
  private readonly writes = new Map<string, Promise<void>>();

  constructor(readonly dir: string) {}

  private fileOf(server: string, label: string): string {
    const id = createHash('sha256')
      .update(`${new URL(server).origin}\n${label}`)
      .digest('hex')
      .slice(0, 32);
    return path.join(this.dir, `${id}.json`);
  }

  async load(server: string, label: string): Promise<BatchState> {
    const empty: BatchState = { version: 1, server, label, files: {} };
    try {
      const parsed = JSON.parse(await readFile(this.fileOf(server, label), 'utf8')) as BatchState;
      if (parsed.version !== 1 || parsed.label !== label || typeof parsed.files !== 'object') return empty;
      return parsed;
    } catch {
      // Missing or unreadable (a crash mid-write leaves only the temp file): start afresh, nothing is lost
      // but the offsets, which the server still has for uploads we cannot name any more; those expire.
      return empty;
    }
  }

  /** Saves are serialized per batch; each writes the state as it is when its turn comes. */
  save(state: BatchState): Promise<void> {
    const file = this.fileOf(state.server, state.label);
    const previous = this.writes.get(file) ?? Promise.resolve();
    const next = previous.then(async () => {
      await mkdir(this.dir, { recursive: true });
      const tmp = `${file}.${randomBytes(4).toString('hex')}.tmp`;
      await writeFile(tmp, JSON.stringify(state));
      await rename(tmp, file);
    });
    this.writes.set(
      file,
      next.catch(() => undefined),
    );
    return next;
  }

  async remove(state: BatchState): Promise<void> {
    const file = this.fileOf(state.server, state.label);
    await (this.writes.get(file) ?? Promise.resolve());
    await rm(file, { force: true });
  }
}
