/**
 * Worker threads for compressed frames that take long enough to matter: a 12-bit JPEG 2000 mammogram takes about
 * a second of WebAssembly, which on the main thread would stop BullMQ renewing its job locks and the API
 * answering. Threads are created on demand up to one per core, each loads its codecs once, and idle threads are
 * unref'd so they never keep a process alive.
 */
import { existsSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import { AppError, type ErrorCode } from '../errors.js';
import type { Frame } from '../formats/dicom/pixel-data.js';
import type { CompressedFrameJob } from './codecs/decode-compressed-frame.js';
import type { WorkerRequest, WorkerResponse } from './codecs/decode-worker.js';
import type { ResampleStoredJob } from './resample-area.js';

/** Defined by scripts/build-cli.mjs in the build bin/teleread runs: the worker compiled beside it, as a file URL. */
declare const __TELEREAD_DECODE_WORKER__: string | undefined;

/**
 * From the sources (tsx, vitest), the .mjs entry registers tsx in the thread before loading the TypeScript
 * worker. bin/teleread's build starts its compiled worker instead, which saves each thread tsx's start-up,
 * unless that build has since been pruned (a service running for days while the sources changed).
 */
function workerEntry(): URL {
  if (typeof __TELEREAD_DECODE_WORKER__ === 'string') {
    const compiled = new URL(__TELEREAD_DECODE_WORKER__);
    if (existsSync(compiled)) return compiled;
  }
  return new URL('./codecs/decode-worker-entry.mjs', import.meta.url);
}

/** No real frame takes anywhere near this; a decoder stuck on crafted input is stopped rather than waited on. */
const DECODE_TIMEOUT_MS = 60_000;

type Work = { kind: 'decode'; job: CompressedFrameJob } | { kind: 'resample'; job: ResampleStoredJob };

interface Task {
  id: number;
  work: Work;
  resolve(result: Frame | Float32Array): void;
  reject(err: AppError): void;
}

interface PoolWorker {
  worker: Worker;
  task: Task | undefined;
  timer: NodeJS.Timeout | undefined;
}

class DecodePool {
  private readonly workers: PoolWorker[] = [];
  private readonly queue: Task[] = [];
  private nextId = 1;
  private closed = false;

  constructor(private readonly size: number) {}

  run(work: Work): Promise<Frame | Float32Array> {
    if (this.closed) return Promise.reject(new AppError('INTERNAL', 'the decode pool is closed'));
    return new Promise<Frame | Float32Array>((resolve, reject) => {
      this.queue.push({ id: this.nextId++, work, resolve, reject });
      this.dispatch();
    });
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const task of this.queue.splice(0))
      task.reject(new AppError('INTERNAL', 'the decode pool was closed'));
    await Promise.all(this.workers.splice(0).map((w) => this.stop(w, 'the decode pool was closed')));
  }

  private dispatch(): void {
    while (this.queue.length > 0) {
      let slot = this.workers.find((w) => w.task === undefined);
      if (!slot && this.workers.length < this.size) slot = this.spawn();
      if (!slot) return;
      this.assign(slot, this.queue.shift()!);
    }
  }

  private spawn(): PoolWorker {
    const slot: PoolWorker = { worker: new Worker(workerEntry()), task: undefined, timer: undefined };
    slot.worker.unref();
    slot.worker.on('message', (response: WorkerResponse) => this.settle(slot, response));
    slot.worker.on('error', (err) => this.fail(slot, `the decode worker failed: ${err.message}`));
    slot.worker.on('exit', (code) => this.fail(slot, `the decode worker exited with code ${code}`));
    this.workers.push(slot);
    return slot;
  }

  private assign(slot: PoolWorker, task: Task): void {
    slot.task = task;
    // A busy worker keeps the process alive: a CLI render awaiting it must not exit half way.
    slot.worker.ref();
    slot.timer = setTimeout(() => {
      const what =
        task.work.kind === 'decode' ? `decoding frame ${task.work.job.frameIndex + 1}` : 'shrinking a frame';
      void this.stop(slot, `${what} took longer than ${DECODE_TIMEOUT_MS / 1000} s`, 'CORRUPT_FILE');
    }, DECODE_TIMEOUT_MS);
    slot.timer.unref();
    if (task.work.kind === 'decode') {
      // The frame's bytes are usually a view into the whole file: copy them (new Uint8Array, as Buffer#slice
      // would only make another view) and hand the copy over.
      const bytes = new Uint8Array(task.work.job.bytes);
      const request: WorkerRequest = { id: task.id, kind: 'decode', job: { ...task.work.job, bytes } };
      slot.worker.postMessage(request, [bytes.buffer]);
      return;
    }
    const job = task.work.job;
    const pixels = job.pixels;
    // Samples that fill their buffer were made for this render and move to the worker; a view into something
    // larger (the file) is copied.
    const own = pixels.byteOffset === 0 && pixels.byteLength === pixels.buffer.byteLength;
    const sent = own ? pixels : pixels.slice();
    const request: WorkerRequest = { id: task.id, kind: 'resample', job: { ...job, pixels: sent } };
    slot.worker.postMessage(request, [sent.buffer as ArrayBuffer]);
  }

  private settle(slot: PoolWorker, response: WorkerResponse): void {
    const task = slot.task;
    if (!task || task.id !== response.id) return;
    this.release(slot);
    if ('frame' in response) task.resolve(response.frame);
    else if ('samples' in response) task.resolve(response.samples);
    else {
      const { code, message, retryable, details } = response.error;
      task.reject(new AppError(code as ErrorCode, message, { retryable, details }));
    }
    this.dispatch();
  }

  private release(slot: PoolWorker): void {
    slot.task = undefined;
    if (slot.timer) clearTimeout(slot.timer);
    slot.timer = undefined;
    slot.worker.unref();
  }

  /** A worker that errored or exited is dropped; its task fails and the queue moves on with a new worker. */
  private fail(slot: PoolWorker, reason: string, code: ErrorCode = 'INTERNAL'): void {
    const index = this.workers.indexOf(slot);
    if (index >= 0) this.workers.splice(index, 1);
    const task = slot.task;
    this.release(slot);
    task?.reject(new AppError(code, reason, { retryable: code === 'INTERNAL' }));
    if (!this.closed) this.dispatch();
  }

  private async stop(slot: PoolWorker, reason: string, code: ErrorCode = 'INTERNAL'): Promise<void> {
    this.fail(slot, reason, code);
    slot.worker.removeAllListeners('exit');
    await slot.worker.terminate();
  }
}

let pool: DecodePool | undefined;

function startedPool(): DecodePool {
  pool ??= new DecodePool(Math.max(1, availableParallelism()));
  return pool;
}

/** Decodes a compressed frame on a worker thread. The pool starts with the first call. */
export function decodeInPool(job: CompressedFrameJob): Promise<Frame> {
  return startedPool().run({ kind: 'decode', job }) as Promise<Frame>;
}

/** Shrinks a large grayscale frame (as modality values, see resample-area.ts) on a worker thread. The job's
 * pixels are handed over when they fill their buffer: do not use them afterwards. */
export function resampleInPool(job: ResampleStoredJob): Promise<Float32Array> {
  return startedPool().run({ kind: 'resample', job }) as Promise<Float32Array>;
}

/** Stops the decode workers (shutdown, and tests). Queued and running decodes fail; a later decodeInPool
 * starts a new pool. */
export async function closeDecodePool(): Promise<void> {
  const closing = pool;
  pool = undefined;
  await closing?.close();
}
