/**
 * Runs mutants through the path a worker runs for their format, in a thread of its own so that the test can
 * stop it: a parser looping on a mutant blocks this thread's event loop, which no timer inside it could end.
 * One message per mutant before it starts, so that the test knows which one hung or crashed the thread.
 */
import { parentPort } from 'node:worker_threads';
import { isAppError } from '../../src/errors.js';
import { type DicomInstance, parseDicom } from '../../src/formats/dicom/parse-dicom.js';
import { readInstanceForFrame } from '../../src/formats/dicom/read-frame-by-range.js';
import { type EcgTriageSummary, inspectFile } from '../../src/formats/inspect.js';
import { isWsiInstance, wsiImageFlavor } from '../../src/formats/slide/dicom-wsi.js';
import { byteSourceFromBytes } from '../../src/formats/types.js';
import { renderDicomFrame } from '../../src/imaging/render-dicom.js';
import { renderSlideThumbnailFromReader } from '../../src/imaging/render-slide.js';
import { openDicomWsiSlide } from '../../src/imaging/slide-tiles.js';
import { transcodeToExplicitLittleEndian } from '../../src/imaging/transcode-dicom.js';
import { renderFileThumbnail } from '../../src/pipeline/render-file.js';
import {
  describeError,
  type FromWorker,
  type FuzzInput,
  judge,
  loadFuzzInput,
  type Mutant,
  type Outcome,
  planMutants,
  type ToWorker,
} from './mutation-fuzz.js';

const port = parentPort;
if (!port) throw new Error('mutation-worker.ts runs only as a worker thread');

/** The side DICOM frames are rendered at, as the brief of the test asks; slides use it too (smallest level). */
const SIZE = 128;

/** Far more than any mutant of a file under 2 MB needs: a 4 GB length must not turn into a 4 GB buffer. */
const MAX_NEW_ARRAY_BUFFER_BYTES = 256 * 1024 ** 2;
/** The codecs' WebAssembly memories are not counted as array buffers, and never shrink: resident memory
 * growing this much during one mutant is a decoder sizing its output from a lying header. */
const MAX_RESIDENT_GROWTH_BYTES = 768 * 1024 ** 2;

/** inspectFile as ingest runs it, then the representative image as process runs it. */
async function workerPath(input: FuzzInput, mutant: Mutant): Promise<string> {
  const bytes = mutant.bytes;
  const sibling = async (name: string) => mutant.siblings.get(name) ?? null;
  const inspection = await inspectFile(byteSourceFromBytes(bytes), input.name, sibling);
  if (inspection.kind === null || !input.spec.render) return `inspected as ${inspection.format}`;
  if (inspection.format === 'dicom' || inspection.format === 'dicom-wsi') {
    const instance = parseDicom(bytes);
    // A slide's pyramid is composed tile by tile from frames read by range (process's processDicomWsiSeries);
    // its label and overview, and every other DICOM, render one frame.
    if (
      inspection.format === 'dicom-wsi' &&
      isWsiInstance(instance) &&
      wsiImageFlavor(instance) === 'VOLUME'
    ) {
      const reader = await openDicomWsiSlide([{ instance, source: byteSourceFromBytes(bytes) }]);
      await renderSlideThumbnailFromReader(reader, { size: SIZE, format: 'png' });
    }
    const pixels = ['x7fe00010', 'x7fe00008', 'x7fe00009'].some((t) => instance.dataSet.elements[t]);
    if (!pixels) return `${inspection.format} without pixel data`;
    await renderRangedFrame(bytes, instance);
    await transcodeForRetrieve(bytes, instance);
    await renderDicomFrame(instance, { size: SIZE, format: 'png' });
    return `${inspection.format} rendered`;
  }
  await renderFileThumbnail(
    inspection.format,
    {
      name: input.name,
      bytes: async () => bytes,
      source: () => byteSourceFromBytes(bytes),
      sibling,
      ecgTriage: inspection.metadata.triage as EcgTriageSummary | undefined,
    },
    SIZE,
    'png',
    inspection.kind === 'pathology',
  );
  return `${inspection.format} rendered`;
}

/**
 * The middle frame read by byte range, as a large instance is (read-frame-by-range.ts), with the limits lowered
 * so that this small file takes that path: its first read ends just inside Pixel Data. Refusing the mutant is
 * the whole-file render's to judge; anything but an AppError here fails it.
 */
async function renderRangedFrame(bytes: Uint8Array, instance: DicomInstance): Promise<void> {
  const headBytes = (instance.dataSet.elements.x7fe00010?.dataOffset ?? 4096) + 16;
  try {
    const read = await readInstanceForFrame(byteSourceFromBytes(bytes), undefined, {
      wholeReadBytes: 0,
      headBytes,
    });
    await renderDicomFrame(read.instance, { frame: read.frame, size: SIZE, format: 'png' });
  } catch (err) {
    if (!isAppError(err)) throw err;
  }
}

/**
 * The instance rewritten as Explicit VR Little Endian, every frame decoded, as WADO-RS sends it when no transfer
 * syntax is named (transcode-dicom.ts). A copy or an AppError; the whole-file render judges the mutant.
 */
async function transcodeForRetrieve(bytes: Uint8Array, instance: DicomInstance): Promise<void> {
  try {
    const copy = await transcodeToExplicitLittleEndian(bytes, instance.transferSyntaxUid);
    let length = 0;
    for await (const chunk of copy.chunks) length += chunk.length;
    if (length !== copy.length)
      throw new Error(`the copy is ${length} bytes, not the ${copy.length} it said`);
  } catch (err) {
    if (!isAppError(err)) throw err;
  }
}

function selfCheck(kind: 'hang' | 'type-error'): void {
  port!.postMessage({ type: 'planned', ids: [kind] } satisfies FromWorker);
  port!.postMessage({ type: 'start', index: 0 } satisfies FromWorker);
  if (kind === 'hang') for (;;);
  const outcome = judge(new TypeError('self-check'));
  port!.postMessage({ type: 'result', index: 0, outcome, ms: 0 } satisfies FromWorker);
  port!.postMessage({ type: 'end' } satisfies FromWorker);
}

async function run(request: ToWorker): Promise<void> {
  if (request.spec.selfCheck) return selfCheck(request.spec.selfCheck);
  const input = loadFuzzInput(request.spec);
  const plans = planMutants(input);
  port!.postMessage({ type: 'planned', ids: plans.map((p) => p.id) } satisfies FromWorker);
  for (let index = request.from; index < plans.length; index++) {
    port!.postMessage({ type: 'start', index } satisfies FromWorker);
    const mutant = plans[index]!.make();
    const before = process.memoryUsage();
    const started = performance.now();
    let outcome: Outcome;
    try {
      outcome = { kind: 'accepted', what: await workerPath(input, mutant) };
    } catch (err) {
      outcome = judge(err);
    }
    const after = process.memoryUsage();
    const buffers = after.arrayBuffers - before.arrayBuffers;
    const resident = after.rss - before.rss;
    if (buffers > MAX_NEW_ARRAY_BUFFER_BYTES) {
      outcome = { kind: 'failed', reason: `${(buffers / 1024 ** 2).toFixed(0)} MB of buffers allocated` };
    } else if (resident > MAX_RESIDENT_GROWTH_BYTES) {
      outcome = { kind: 'failed', reason: `resident memory grew by ${(resident / 1024 ** 2).toFixed(0)} MB` };
    }
    const ms = performance.now() - started;
    port!.postMessage({ type: 'result', index, outcome, ms } satisfies FromWorker);
  }
  port!.postMessage({ type: 'end' } satisfies FromWorker);
}

port.on('message', (request: ToWorker) => {
  run(request).catch((err) =>
    port.postMessage({ type: 'crash', reason: describeError(err) } satisfies FromWorker),
  );
});
