/**
 * A decode worker thread: receives compressed frames (and large frames to shrink) from the pool
 * (src/imaging/decode-pool.ts), works on them with the codecs loaded once in this thread, and sends the result
 * back without copying.
 */
import { parentPort } from 'node:worker_threads';
import { isAppError } from '../../errors.js';
import type { Frame } from '../../formats/dicom/pixel-data.js';
import { type ResampleStoredJob, resampleStored } from '../resample-area.js';
import { type CompressedFrameJob, decodeCompressedFrame } from './decode-compressed-frame.js';

export type WorkerRequest =
  | { id: number; kind: 'decode'; job: CompressedFrameJob }
  | { id: number; kind: 'resample'; job: ResampleStoredJob };

export type WorkerResponse =
  | { id: number; frame: Frame }
  | { id: number; samples: Float32Array }
  | {
      id: number;
      error: { code: string; message: string; retryable: boolean; details?: Record<string, unknown> };
    };

const port = parentPort;
if (!port) throw new Error('decode-worker.ts runs only as a worker thread');

async function handle(request: WorkerRequest): Promise<WorkerResponse> {
  if (request.kind === 'decode') return { id: request.id, frame: await decodeCompressedFrame(request.job) };
  return { id: request.id, samples: resampleStored(request.job) };
}

port.on('message', (request: WorkerRequest) => {
  handle(request).then(
    (response) => {
      const buffer =
        'frame' in response
          ? response.frame.pixels.buffer
          : 'samples' in response
            ? response.samples.buffer
            : undefined;
      port.postMessage(response, buffer ? [buffer as ArrayBuffer] : []);
    },
    (err: unknown) => {
      const response: WorkerResponse = {
        id: request.id,
        error: isAppError(err)
          ? { code: err.code, message: err.message, retryable: err.retryable, details: err.details }
          : { code: 'INTERNAL', message: err instanceof Error ? err.message : String(err), retryable: true },
      };
      port.postMessage(response);
    },
  );
});
