import { readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { Worker } from 'node:worker_threads';
import { afterAll, describe, expect, test } from 'vitest';
import { AppError } from '../../src/errors.js';
import { corpusPath, hasCorpus, loadTruth, repoRoot } from '../corpus.js';
import {
  type FromWorker,
  type FuzzInputSpec,
  judge,
  type Outcome,
  type ToWorker,
} from '../helpers/mutation-fuzz.js';

/**
 * Deterministic mutation fuzzing over real files: truncations inside named structures, bit flips and byte
 * overwrites where lengths and tags live, length fields set to 0xFFFFFFFE / 0x7FFFFFFF / 0xFFFFFFFF, the Image
 * Pixel values that size buffers set to extremes, chunks deleted and duplicated (test/helpers/mutation-fuzz.ts).
 * Each mutant goes through what the pipeline runs for its format — inspectFile (ingest), then the
 * representative image (process; a DICOM frame also read by byte range, as a large instance's is) — in a worker
 * thread (test/helpers/mutation-worker.ts). The rule: success, or
 * an AppError with a bad-input code and a message. A TypeError, a RangeError, another code, a hang past
 * MUTANT_TIMEOUT_MS, or a thread that dies (out of memory) fails the input's test with the mutant's id.
 */

/** No mutant of these inputs needs more than a fraction of a second; a parser looping on one never ends. */
const MUTANT_TIMEOUT_MS = 5_000;
/** The first mutant of a fresh thread also loads the codecs and compiles their WebAssembly. */
const FIRST_MUTANT_TIMEOUT_MS = 20_000;
/** JavaScript heap a runaway allocation may take before the thread dies (and the mutant fails); buffers and the
 * codecs' WebAssembly memory are watched by the worker itself. */
const WORKER_HEAP_MB = 1024;

/** Corpus DICOM under this size, so that sixty renders of each stay within the time budget. */
const MAX_DICOM_BYTES = 2 * 1024 * 1024;
/** The smallest files of each transfer syntax: every decoder and byte order gets mutants. */
const DICOM_PER_SYNTAX = 2;
/** Files whose structure the smallest-per-syntax rule would miss. */
const DICOM_EXTRAS = [
  'dicom/pydicom-data/bad_sequence.dcm',
  'dicom/pydicom-data/explicit_VR-UN.dcm',
  'dicom/fo-dicom/JPEGwithIcon.dcm',
  'dicom/dicomParser/CT0012.fragmented_no_bot_jpeg_baseline.51.dcm',
  'dicom/dicomParser/CT1_UNC.fragmented_bot_jpeg_ls.80.dcm',
  'dicom/pydicom/SC_rgb_rle_16bit_2frame.dcm',
  'dicom/pydicom/examples_palette.dcm',
  'dicom/pydicom-data/vlut_04.dcm',
  'dicom/pydicom-data/parametric_map_float.dcm',
  'dicom/pydicom/MR_truncated.dcm',
];

/** Every other file of a WFDB record's folder, as the upload that brought its header would. */
function siblingsOf(file: string): string[] {
  const dir = path.dirname(file);
  return readdirSync(dir)
    .filter((n) => n !== path.basename(file))
    .map((n) => path.join(dir, n));
}

function corpusDicomInputs(): FuzzInputSpec[] {
  const truth = loadTruth();
  const candidates = Object.entries(truth)
    .filter(([rel, t]) => t.kind === 'dicom' && rel.startsWith('dicom/'))
    .map(([rel, t]) => ({
      rel,
      syntax: String(t.TransferSyntaxUID ?? 'none'),
      size: statSync(corpusPath(rel)).size,
    }))
    .filter((c) => c.size <= MAX_DICOM_BYTES)
    .sort((a, b) => a.size - b.size || a.rel.localeCompare(b.rel));
  const perSyntax = new Map<string, number>();
  const chosen = candidates.filter((c) => {
    const n = perSyntax.get(c.syntax) ?? 0;
    perSyntax.set(c.syntax, n + 1);
    return n < DICOM_PER_SYNTAX || DICOM_EXTRAS.includes(c.rel);
  });
  return chosen.map((c) => ({
    label: c.rel,
    layout: 'dicom',
    file: corpusPath(c.rel),
    render: true,
  }));
}

function corpusEcgAndSlideInputs(): FuzzInputSpec[] {
  const ecg = (
    rel: string,
    layout: FuzzInputSpec['layout'],
    extra: Partial<FuzzInputSpec> = {},
  ): FuzzInputSpec => ({
    label: rel,
    layout,
    file: corpusPath(rel),
    render: true,
    ...extra,
  });
  const wfdb = (rel: string) => ecg(rel, 'text', { siblings: siblingsOf(corpusPath(rel)) });
  const slide = (rel: string, layout: FuzzInputSpec['layout']): FuzzInputSpec => ({
    label: rel,
    layout,
    file: corpusPath(rel),
    render: true,
  });
  return [
    ecg('ecg/scp-ecg/Example.scp', 'scp'),
    ecg('ecg/scp-ecg/demo.scp', 'scp'),
    ecg('ecg/hl7-aecg/minimum_aecg.xml', 'xml'),
    ecg('ecg/hl7-aecg/Example_aECG.xml', 'xml'),
    ecg('ecg/ge-muse-xml/example3.xml', 'xml'),
    ecg('ecg/philips-xml/3191723_ZZDEMOPTONLY_1-04_orig.xml', 'xml'),
    // 37855 one-sample records at 800 Hz: the first 8000 are 10 s, what a resting ECG holds.
    ecg('ecg/edf/0000050.ECG.edf', 'edf', {
      label: 'ecg/edf/0000050.ECG.edf (first 8000 records)',
      derive: { edfRecords: 8000 },
    }),
    ecg('ecg/csv/0000050.ECG.csv', 'text', {
      label: 'ecg/csv/0000050.ECG.csv (first 5000 rows)',
      derive: { csvLines: 5000 },
    }),
    ecg('ecg/dicom-waveform/waveform_ecg.dcm', 'dicom'),
    wfdb('ecg/wfdb/binformats/binformats.hea'),
    wfdb('ecg/wfdb/multiseg-041s/041s.hea'),
    slide('wsi/aperio-svs/small.svs', 'tiff'),
    slide('wsi/generic-tiff/boxes.tiff', 'tiff'),
    slide('wsi/dicom-wsi/sm_image.dcm', 'dicom'),
    slide('wsi/dicom-wsi/sm_image_jpegls.dcm', 'dicom'),
    slide('wsi/dicom-wsi/BPAEC/12_0', 'dicom'),
  ];
}

/** The repository's own fixtures: there with or without the corpus. */
function fixtureInputs(): FuzzInputSpec[] {
  const fixture = (rel: string) => path.join(repoRoot, 'fixtures', rel);
  return [
    {
      label: 'fixtures/imaging/CT_small.dcm',
      layout: 'dicom',
      file: fixture('imaging/CT_small.dcm'),
      render: true,
    },
    {
      label: 'fixtures/ecg/s0010_re.hea',
      layout: 'text',
      file: fixture('ecg/s0010_re.hea'),
      siblings: siblingsOf(fixture('ecg/s0010_re.hea')),
      render: true,
    },
    {
      // 117 JPEG tiles per render: too slow for every mutant, and its tiles are no different from small.svs's.
      label: 'fixtures/pathology/CMU-1-Small-Region.svs (inspect only)',
      layout: 'tiff',
      file: fixture('pathology/CMU-1-Small-Region.svs'),
      render: false,
    },
  ];
}

/** Inputs with the same bytes (the corpus and fixtures share CT_small.dcm) are fuzzed once. */
function dedupe(specs: FuzzInputSpec[]): FuzzInputSpec[] {
  const seen = new Set<string>();
  return specs.filter((s) => {
    const key = `${s.derive ? JSON.stringify(s.derive) : ''}:${readFileSync(s.file).toString('base64')}`;
    if (seen.has(key)) return false;
    seen.add(key);
    return true;
  });
}

const inputs = dedupe([
  ...fixtureInputs(),
  ...(hasCorpus ? [...corpusDicomInputs(), ...corpusEcgAndSlideInputs()] : []),
]);

interface Report {
  ids: string[];
  outcomes: (Outcome | undefined)[];
  ms: number[];
}

/**
 * Drives the worker thread with a watchdog: a mutant that does not answer in time, or takes the thread down,
 * is recorded as failed and the input goes on from the next mutant in a fresh thread.
 */
class FuzzRunner {
  private worker: Worker | undefined;
  /** No mutant has finished in this thread yet: its first one also pays for loading the codecs. */
  private fresh = true;

  async close(): Promise<void> {
    const worker = this.worker;
    this.worker = undefined;
    await worker?.terminate();
  }

  /** `timeoutMs` overrides both limits (the self-checks need no codecs). */
  run(spec: FuzzInputSpec, timeoutMs?: number): Promise<Report> {
    const report: Report = { ids: [], outcomes: [], ms: [] };
    return new Promise<Report>((resolve) => {
      let current = -1;
      let timer: NodeJS.Timeout | undefined;
      let detach = () => {};

      const onMessage = (message: FromWorker) => {
        switch (message.type) {
          case 'planned':
            report.ids = message.ids;
            return;
          case 'start': {
            current = message.index;
            const limit = timeoutMs ?? (this.fresh ? FIRST_MUTANT_TIMEOUT_MS : MUTANT_TIMEOUT_MS);
            timer = setTimeout(() => fail(`did not finish within ${limit / 1000} s`), limit);
            return;
          }
          case 'result':
            clearTimeout(timer);
            this.fresh = false;
            report.outcomes[message.index] = message.outcome;
            report.ms[message.index] = message.ms;
            return;
          case 'end':
            detach();
            resolve(report);
            return;
          case 'crash':
            fail(`the worker failed outside a mutant: ${message.reason}`);
            return;
        }
      };
      const onError = (err: Error) => fail(`the thread died: ${err.stack ?? err.message}`);
      const onExit = (code: number) => fail(`the thread exited with code ${code}`);

      /** The current mutant failed in a way that leaves the thread unusable: drop it, go on after the mutant. */
      const fail = (reason: string) => {
        clearTimeout(timer);
        detach();
        const dead = this.worker;
        this.worker = undefined;
        void dead?.terminate();
        if (current < 0) {
          // Before its first mutant: the thread cannot start, and a new one would not either.
          report.ids.push('(starting the worker thread)');
          report.outcomes[report.ids.length - 1] = { kind: 'failed', reason };
          resolve(report);
          return;
        }
        report.outcomes[current] = { kind: 'failed', reason };
        if (current + 1 >= report.ids.length) resolve(report);
        else start(current + 1);
      };

      const start = (from: number) => {
        if (!this.worker) {
          this.worker = new Worker(new URL('../helpers/mutation-worker-entry.mjs', import.meta.url), {
            resourceLimits: { maxOldGenerationSizeMb: WORKER_HEAP_MB },
          });
          this.fresh = true;
        }
        const worker = this.worker;
        worker.on('message', onMessage).on('error', onError).on('exit', onExit);
        detach = () => {
          worker.off('message', onMessage).off('error', onError).off('exit', onExit);
        };
        current = -1;
        worker.postMessage({ type: 'run', spec, from } satisfies ToWorker);
      };
      start(0);
    });
  }
}

function failuresOf(spec: FuzzInputSpec, report: Report): string[] {
  return report.ids.flatMap((id, i) => {
    const o = report.outcomes[i];
    if (o === undefined) return [`${spec.label} × ${id}: no outcome`];
    return o.kind === 'failed' ? [`${spec.label} × ${id}:\n${o.reason}`] : [];
  });
}

const totals = {
  mutants: 0,
  accepted: 0,
  rejected: new Map<string, number>(),
  slowest: [] as [number, string][],
};

describe('mutation robustness: mutants of real files get a result or a bad-input AppError', () => {
  const runner = new FuzzRunner();
  afterAll(() => runner.close());

  test('the rule refuses what is not a bad-input AppError', () => {
    expect(judge(new AppError('CORRUPT_FILE', 'element (0028,0010) at offset 12 …'))).toMatchObject({
      kind: 'rejected',
    });
    expect(judge(new AppError('UNSUPPORTED_FORMAT', 'not DICOM'))).toMatchObject({ kind: 'rejected' });
    expect(judge(new TypeError("Cannot read properties of undefined (reading 'push')"))).toMatchObject({
      kind: 'failed',
    });
    expect(judge(new RangeError('Invalid typed array length: 4294967295'))).toMatchObject({ kind: 'failed' });
    expect(judge('a thrown string')).toMatchObject({ kind: 'failed' });
    expect(judge(new AppError('VALIDATION_FAILED', 'frame 7 does not exist'))).toMatchObject({
      kind: 'failed',
    });
    expect(judge(new AppError('INTERNAL', 'the decode worker exited'))).toMatchObject({ kind: 'failed' });
    expect(judge(new AppError('CORRUPT_FILE', ' '))).toMatchObject({ kind: 'failed' });
    expect(judge(new AppError('CORRUPT_FILE', 'bad', { retryable: true }))).toMatchObject({ kind: 'failed' });
  });

  test('a mutant that hangs or throws a TypeError in the thread fails, and the next input still runs', async () => {
    const check = (selfCheck: 'hang' | 'type-error'): FuzzInputSpec => ({
      label: `self-check ${selfCheck}`,
      layout: 'dicom',
      file: '',
      render: false,
      selfCheck,
    });
    const hang = await runner.run(check('hang'), 1_000);
    expect(hang.outcomes).toEqual([{ kind: 'failed', reason: 'did not finish within 1 s' }]);
    const typeError = await runner.run(check('type-error'));
    expect(typeError.outcomes[0]).toMatchObject({
      kind: 'failed',
      reason: expect.stringContaining('TypeError'),
    });
  }, 60_000);

  test.for(inputs.map((spec): [string, FuzzInputSpec] => [spec.label, spec]))(
    '%s',
    { timeout: 180_000 },
    async ([, spec]) => {
      const report = await runner.run(spec);
      const failures = failuresOf(spec, report);
      totals.mutants += report.ids.length;
      for (const [i, o] of report.outcomes.entries()) {
        if (o?.kind === 'accepted') totals.accepted++;
        if (o?.kind === 'rejected') totals.rejected.set(o.code, (totals.rejected.get(o.code) ?? 0) + 1);
        totals.slowest.push([report.ms[i] ?? 0, `${spec.label} × ${report.ids[i]}`]);
      }
      expect(report.ids.length, 'mutants planned').toBeGreaterThan(20);
      expect(failures, failures.join('\n\n')).toEqual([]);
    },
  );

  test('the mutants reach past the first check: some are read to the end, some refused', () => {
    totals.slowest.sort((a, b) => b[0] - a[0]);
    console.info(
      `${inputs.length} inputs, ${totals.mutants} mutants: ${totals.accepted} accepted, refused ${JSON.stringify(Object.fromEntries(totals.rejected))}; slowest: ${totals.slowest
        .slice(0, 3)
        .map(([ms, what]) => `${what} ${ms.toFixed(0)} ms`)
        .join('; ')}`,
    );
    expect(totals.mutants).toBeGreaterThan(inputs.length * 20);
    // A fuzzer whose mutants all die at the first check tests one line; one that never hurts tests nothing.
    expect(totals.accepted / totals.mutants).toBeGreaterThan(0.1);
    expect(totals.rejected.get('CORRUPT_FILE') ?? 0).toBeGreaterThan(totals.mutants * 0.1);
  });
});
