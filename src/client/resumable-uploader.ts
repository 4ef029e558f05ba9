import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { type ScannedBatch, type ScannedFile, scanInputs, sha256OfFile } from './scan-files.js';
import { HttpError, type TusConnection, tusCreate, tusOffset, tusPatch } from './tus-client.js';
import type { UploadResult } from './upload-client.js';
import { type BatchState, UploadStateStore } from './upload-state.js';

/**
 * The clinic's uploader (`teleread upload`), for links that drop:
 * 1. scan the arguments (a folder is one batch, that is one case on the server; DICOM recognised by content);
 * 2. hash every file (sha256), reusing hashes of unchanged files from the resume state;
 * 3. ask `POST /v1/uploads/check` which hashes the site already sent, and skip those;
 * 4. open an upload batch (or reuse the one a previous run opened), send each file over tus with a checksum per
 *    chunk, N files at a time, retrying with exponential backoff (the retry count resets whenever the server
 *    acknowledged more bytes), the tus URL kept on disk so a killed run resumes at the acknowledged offset;
 * 5. complete the batch: its files enter the pipeline together.
 * A batch with a file that finally failed is left open, with its state on disk: running again finishes it.
 */

export interface UploaderOptions {
  server: string;
  key: string;
  priority?: 'stat' | 'urgent' | 'routine' | undefined;
  notes?: string | undefined;
  /** Files sent at once (one connection each). */
  parallel: number;
  stateDir: string;
  dryRun: boolean;
  chunkBytes: number;
  /** Attempts per file without the server acknowledging any new byte. */
  retries: number;
  retryBaseMs: number;
  stallTimeoutMs: number;
  onEvent?: (event: UploadEvent) => void;
}

export const DEFAULT_UPLOADER_OPTIONS = {
  parallel: 4,
  chunkBytes: 8 * 1024 * 1024,
  retries: 8,
  retryBaseMs: 500,
  stallTimeoutMs: 60_000,
} as const;

/** The unit of progress reports: a DICOM study, or the batch a non-DICOM file belongs to. */
export interface StudyRef {
  key: string;
  label: string;
  files: number;
  bytes: number;
}

export type UploadEvent =
  | { type: 'hashing'; file: ScannedFile; done: boolean }
  | { type: 'plan'; plan: UploaderReport['plan'] }
  | { type: 'file-start'; file: ScannedFile; study: StudyRef; offset: number }
  | { type: 'file-progress'; file: ScannedFile; study: StudyRef; offset: number; sentBytes: number }
  | { type: 'file-retry'; file: ScannedFile; attempt: number; delayMs: number; reason: string }
  | { type: 'file-done'; file: ScannedFile; study: StudyRef }
  | { type: 'file-failed'; file: ScannedFile; reason: string }
  | { type: 'batch-done'; label: string; result: UploadResult };

/** skip-index: a DICOMDIR, the index of a CD or DVD; the files it lists are sent, the index is not. */
export type PlanAction = 'send' | 'resume' | 'skip-known' | 'skip-sent' | 'skip-index';

export interface PlannedFile {
  file: ScannedFile;
  sha256: string;
  action: PlanAction;
  study: StudyRef;
}

export interface UploaderReport {
  plan: Array<{ label: string; files: PlannedFile[] }>;
  /** Completed batches, as the server answered. */
  uploads: UploadResult[];
  /** Bytes of file content sent in this run (including bytes lost to dropped connections). */
  sentBytes: number;
  failed: Array<{ path: string; reason: string }>;
  /** Dry run only: the server could not be asked, so every file is listed as to send. */
  checkError?: string;
}

function errorText(err: unknown): string {
  if (!(err instanceof Error)) return String(err);
  return err.cause instanceof Error ? `${err.message}: ${err.cause.message}` : err.message;
}

/** Refusals that no retry will change. */
function isPermanent(err: unknown): boolean {
  if (!(err instanceof HttpError)) return false;
  return [400, 401, 403, 413, 415, 422].includes(err.status);
}

class BatchGoneError extends Error {}

function backoffMs(options: UploaderOptions, attempt: number): number {
  return Math.round(Math.min(30_000, options.retryBaseMs * 2 ** (attempt - 1)) * (0.5 + Math.random() / 2));
}

/**
 * One JSON call, retried like the chunks when the link or the server fails (not when the server refuses).
 * The calls made this way are safe to repeat: check and complete are idempotent, and a batch opened twice
 * leaves an empty one that expires.
 */
async function api<T>(options: UploaderOptions, method: string, route: string, body?: unknown): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      const res = await fetch(new URL(route, options.server), {
        method,
        headers: {
          authorization: `Bearer ${options.key}`,
          ...(body === undefined ? {} : { 'content-type': 'application/json' }),
        },
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
        signal: AbortSignal.timeout(Math.max(options.stallTimeoutMs, 30_000)),
      });
      const text = await res.text();
      if (res.status >= 300) throw new HttpError(res.status, text, `${method} ${route}`);
      return (text ? JSON.parse(text) : {}) as T;
    } catch (err) {
      const refused = err instanceof HttpError && err.status < 500 && err.status !== 429;
      if (refused || attempt > options.retries) throw err;
      await sleep(backoffMs(options, attempt));
    }
  }
}

/** Hashes the site already sent, asked in slices the server accepts. */
async function knownHashes(options: UploaderOptions, hashes: string[]): Promise<Set<string>> {
  const known = new Set<string>();
  const unique = [...new Set(hashes)];
  for (let i = 0; i < unique.length; i += 10_000) {
    const res = await api<{ known: string[] }>(options, 'POST', '/v1/uploads/check', {
      sha256: unique.slice(i, i + 10_000),
    });
    for (const h of res.known) known.add(h);
  }
  return known;
}

const stemOf = (f: ScannedFile) => path.join(path.dirname(f.path), f.name.replace(/\.[^.]*$/, ''));
const isWfdb = (f: ScannedFile) => f.format === 'wfdb-header' || f.format === 'wfdb-signal';

function studiesOf(batch: ScannedBatch): Map<ScannedFile, StudyRef> {
  const refs = new Map<string, StudyRef>();
  const out = new Map<ScannedFile, StudyRef>();
  for (const f of batch.files) {
    const key = f.studyInstanceUid ? `study ${f.studyInstanceUid}` : batch.label;
    const label = f.studyInstanceUid ? `study ${f.studyInstanceUid}` : path.basename(batch.label);
    const ref = refs.get(key) ?? { key, label, files: 0, bytes: 0 };
    ref.files++;
    ref.bytes += f.bytes;
    refs.set(key, ref);
    out.set(f, ref);
  }
  return out;
}

/** Runs `tasks` with at most `limit` in flight. */
async function pool<T>(items: T[], limit: number, run: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const workers = Array.from({ length: Math.min(limit, items.length) }, async () => {
    while (next < items.length) {
      const item = items[next++]!;
      await run(item);
    }
  });
  await Promise.all(workers);
}

export async function runUploader(inputs: string[], options: UploaderOptions): Promise<UploaderReport> {
  const emit = options.onEvent ?? (() => undefined);
  const store = new UploadStateStore(options.stateDir);
  const batches = await scanInputs(inputs);
  const conn: TusConnection = { key: options.key, stallTimeoutMs: options.stallTimeoutMs };
  const endpoint = new URL('/v1/tus', options.server).href;
  /** Bytes of the chunk in flight per file, so `sentBytes` counts what was really sent, retries included. */
  const sentInChunk = new Map<ScannedFile, number>();

  // 1–2: states and hashes. An unchanged file keeps its hash, its tus URL and its done flag.
  const states = new Map<ScannedBatch, BatchState>();
  for (const batch of batches) {
    const state = await store.load(options.server, batch.label);
    const files: BatchState['files'] = {};
    for (const f of batch.files) {
      const cached = state.files[f.path];
      if (cached && cached.bytes === f.bytes && cached.mtimeMs === f.mtimeMs) {
        files[f.path] = cached;
      } else {
        emit({ type: 'hashing', file: f, done: false });
        files[f.path] = {
          sha256: (await sha256OfFile(f.path)).toString('hex'),
          bytes: f.bytes,
          mtimeMs: f.mtimeMs,
        };
        emit({ type: 'hashing', file: f, done: true });
      }
    }
    state.files = files;
    states.set(batch, state);
    if (!options.dryRun) await store.save(state);
  }

  // 3: send once.
  const pending = batches.flatMap((b) =>
    Object.values(states.get(b)!.files)
      .filter((s) => !s.done)
      .map((s) => s.sha256),
  );
  const report: UploaderReport = { plan: [], uploads: [], sentBytes: 0, failed: [] };
  let known: Set<string>;
  try {
    known = await knownHashes(options, pending);
  } catch (err) {
    const reason = `asking the server which files it has: ${errorText(err)}`;
    if (!options.dryRun) {
      for (const f of batches.flatMap((b) => b.files)) report.failed.push({ path: f.path, reason });
      return report;
    }
    // A dry run still lists the files, as if the server had none of them.
    report.checkError = reason;
    known = new Set();
  }

  for (const batch of batches) {
    const state = states.get(batch)!;
    const studies = studiesOf(batch);
    const planned: PlannedFile[] = batch.files.map((f) => {
      const s = state.files[f.path]!;
      const action: PlanAction = f.mediaDirectory
        ? 'skip-index'
        : s.done
          ? 'skip-sent'
          : known.has(s.sha256)
            ? 'skip-known'
            : s.url
              ? 'resume'
              : 'send';
      return { file: f, sha256: s.sha256, action, study: studies.get(f)! };
    });
    // A WFDB record is read from its header and signal files together: if any of them goes, they all go.
    const goingStems = new Set(
      planned.filter((p) => isWfdb(p.file) && p.action !== 'skip-known').map((p) => stemOf(p.file)),
    );
    for (const p of planned) {
      if (p.action === 'skip-known' && isWfdb(p.file) && goingStems.has(stemOf(p.file))) p.action = 'send';
    }
    report.plan.push({ label: batch.label, files: planned });
  }
  emit({ type: 'plan', plan: report.plan });
  if (options.dryRun) return report;

  // 4: batches, then every file to send in one bounded pool.
  const toSend: Array<{ batch: ScannedBatch; planned: PlannedFile }> = [];
  const remaining = new Map<ScannedBatch, number>();
  const batchFailed = new Set<ScannedBatch>();
  for (const [i, batch] of batches.entries()) {
    const state = states.get(batch)!;
    const files = report.plan[i]!.files;
    const sending = files.filter((p) => p.action === 'send' || p.action === 'resume');
    const sentBefore = files.some((p) => p.action === 'skip-sent');
    if (sending.length === 0 && !sentBefore) {
      await store.remove(state); // everything already on the server: nothing to resume
      continue;
    }
    remaining.set(batch, sending.length);
    for (const planned of sending) toSend.push({ batch, planned });
  }

  const ensureBatch = async (batch: ScannedBatch): Promise<string> => {
    const state = states.get(batch)!;
    if (!state.batchId) {
      const created = await api<{ batchId: string }>(options, 'POST', '/v1/uploads/batches', {
        ...(options.priority ? { priority: options.priority } : {}),
        ...(options.notes ? { notes: options.notes } : {}),
      });
      state.batchId = created.batchId;
      await store.save(state);
    }
    return state.batchId;
  };
  const batchCreation = new Map<ScannedBatch, Promise<string>>();

  const completeBatch = async (batch: ScannedBatch) => {
    const state = states.get(batch)!;
    try {
      const result = await api<UploadResult>(
        options,
        'POST',
        `/v1/uploads/batches/${state.batchId}/complete`,
      );
      report.uploads.push(result);
      emit({ type: 'batch-done', label: batch.label, result });
      await store.remove(state);
    } catch (err) {
      const reason = err instanceof Error ? err.message : String(err);
      for (const f of batch.files)
        report.failed.push({ path: f.path, reason: `completing the upload: ${reason}` });
    }
  };

  // Batches whose files were all sent by an earlier run: only the completion is missing.
  for (const [batch, count] of remaining) if (count === 0) await completeBatch(batch);

  await pool(toSend, Math.max(1, options.parallel), async ({ batch, planned }) => {
    const state = states.get(batch)!;
    const fileState = state.files[planned.file.path]!;
    try {
      if (!batchCreation.has(batch)) batchCreation.set(batch, ensureBatch(batch));
      const batchId = await batchCreation.get(batch)!;
      await sendFile(planned, batchId, state);
      fileState.done = true;
      fileState.url = undefined;
      await store.save(state);
      emit({ type: 'file-done', file: planned.file, study: planned.study });
    } catch (err) {
      batchFailed.add(batch);
      let reason = err instanceof Error ? err.message : String(err);
      if (err instanceof BatchGoneError) {
        // The server dropped the batch (expired, or completed elsewhere): the next run starts it again.
        state.batchId = undefined;
        for (const f of Object.values(state.files)) {
          f.done = undefined;
          f.url = undefined;
        }
        await store.save(state);
        reason = `${reason}; run the upload again`;
      }
      report.failed.push({ path: planned.file.path, reason });
      emit({ type: 'file-failed', file: planned.file, reason });
    }
    const left = (remaining.get(batch) ?? 1) - 1;
    remaining.set(batch, left);
    if (left === 0 && !batchFailed.has(batch)) await completeBatch(batch);
  });
  return report;

  async function sendFile(planned: PlannedFile, batchId: string, state: BatchState): Promise<void> {
    const { file, study } = planned;
    const fileState = state.files[file.path]!;
    let attempt = 0;
    let acknowledged = -1;
    for (;;) {
      let offset = 0;
      try {
        if (fileState.url) {
          const at = await tusOffset(fileState.url, conn);
          if (at === 'gone') fileState.url = undefined;
          else offset = at;
        }
        if (!fileState.url) {
          const created = await tusCreate(endpoint, conn, file.bytes, {
            filename: file.name,
            batch: batchId,
            sha256: fileState.sha256,
          }).catch((err: unknown) => {
            if (
              err instanceof HttpError &&
              (err.status === 404 || err.status === 409 || err.status === 410)
            ) {
              throw new BatchGoneError(`upload batch ${batchId} is no longer open (${err.message})`);
            }
            throw err;
          });
          fileState.url = created.url;
          offset = 0;
          await store.save(state);
        }
        if (offset > acknowledged) {
          // The server holds more than at the last failure: this is progress, the retry budget starts over.
          if (acknowledged >= 0) attempt = 0;
          acknowledged = offset;
        }
        emit({ type: 'file-start', file, study, offset });
        while (offset < file.bytes) {
          const length = Math.min(options.chunkBytes, file.bytes - offset);
          const sha256 = await sha256OfFile(file.path, { start: offset, length });
          const at = offset;
          const result = await tusPatch(
            fileState.url!,
            conn,
            { file: file.path, offset, length, sha256 },
            (n) => {
              report.sentBytes += n - (sentInChunk.get(file) ?? 0);
              sentInChunk.set(file, n);
              emit({ type: 'file-progress', file, study, offset: at, sentBytes: n });
            },
          );
          sentInChunk.delete(file);
          offset = result.offset;
          acknowledged = offset;
          attempt = 0;
        }
        return;
      } catch (err) {
        sentInChunk.delete(file);
        if (err instanceof BatchGoneError || isPermanent(err)) throw err;
        attempt++;
        if (attempt > options.retries) throw err;
        const delayMs = backoffMs(options, attempt);
        emit({
          type: 'file-retry',
          file,
          attempt,
          delayMs,
          reason: errorText(err),
        });
        await sleep(delayMs);
      }
    }
  }
}
