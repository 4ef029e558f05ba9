/**
 * DICOM thumbnails: Teleread's renderer, warm and in-process (readFile → parseDicom → renderDicomFrame, 256 px
 * PNG), against `dcmj2pnm +Wi 1 +Sxv 256 +on in.dcm out.png` with one process per instance (ANCHORS §3a).
 *
 * Data: synthetic uncompressed CT 512² (16 bits allocated, 12 stored, rescaled, windowed) and CR 2048² (12 bit)
 * written with the test DICOM writer, plus the files of the shared corpus that both renderers accept.
 */
import { readdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { closeDecodePool } from '../src/imaging/decode-pool.js';
import { corpusDir, hasCorpus } from '../test/corpus.js';
import { pass, renderOurs, throughput, timeDcmtk, timeOurs } from './dicom-timing.js';
import {
  alternate,
  type BenchRow,
  Deadline,
  makeTempDir,
  median,
  onCleanup,
  row,
  runAside,
  runBench,
  startAside,
  stats,
  zip,
} from './lib.js';
import { instance } from './synthetic-dicom.js';

/** Even, so the alternating order (ABBA) puts each side first equally often. */
const PASSES = 4;
const CT_COUNT = 10;
const CR_COUNT = 5;
const DCMJ2PNM = 'dcmj2pnm';

async function listFiles(dir: string, depth = 0): Promise<string[]> {
  if (depth > 8) return [];
  const out: string[] = [];
  for (const e of await readdir(dir, { withFileTypes: true })) {
    const full = path.join(dir, e.name);
    if (e.isDirectory()) out.push(...(await listFiles(full, depth + 1)));
    else if (e.isFile()) out.push(full);
  }
  return out.sort();
}

async function main(): Promise<BenchRow[]> {
  const deadline = new Deadline(120_000);
  const dir = await makeTempDir('dicom');
  onCleanup('close the decode thread pool', closeDecodePool);
  startAside(); // dcmtk runs from a helper, started before any warm-up (lib.ts, runAside)
  const rows: BenchRow[] = [];

  for (const kind of ['CT', 'CR'] as const) {
    const count = kind === 'CT' ? CT_COUNT : CR_COUNT;
    const files: string[] = [];
    for (let i = 0; i < count; i++) {
      const file = path.join(dir, `${kind}-${i}.dcm`);
      await writeFile(file, instance(kind, i));
      files.push(file);
    }
    const label = kind === 'CT' ? 'CT 512²' : 'CR 2048²';
    const ours = (f: string, i: number) => timeOurs(f, path.join(dir, `ours-${kind}-${i}.png`));
    const dcmtk = (f: string, i: number) => timeDcmtk(f, path.join(dir, `dcmtk-${kind}-${i}.png`));
    // One uncounted warm-up pass each (JIT, page cache), then alternating measured passes.
    await pass(files, ours);
    await pass(files, dcmtk);
    const sequential = await alternate(
      PASSES,
      deadline,
      () => pass(files, ours),
      () => pass(files, dcmtk),
    );
    const oneRss = (
      await runAside(DCMJ2PNM, ['+Wi', '1', '+Sxv', '256', '+on', files[0]!, path.join(dir, 'rss.png')], {
        timeoutMs: 30_000,
        measureRss: true,
      })
    ).peakRssMb;
    rows.push(
      row({
        bench: 'dicom',
        measure: `${label} uncompressed → 256 px PNG, one at a time`,
        unit: 'ms/inst',
        teleread: stats(sequential.teleread.flat()),
        reference: { name: 'dcmj2pnm, process per instance', stats: stats(sequential.reference.flat()) },
        pairs: zip(sequential.teleread.map(median), sequential.reference.map(median)),
        better: 'lower',
        note: `${files.length} instances × ${sequential.teleread.length} passes; Teleread warm in one process${oneRss ? `; dcmj2pnm peak RSS ${oneRss.toFixed(0)} MB` : ''}`,
      }),
    );

    // All in flight: 2× the set at once in one process (ANCHORS §3c), against dcmj2pnm two processes at a time.
    const all = [...files, ...files];
    const rates = await alternate(
      PASSES,
      deadline,
      () =>
        throughput(all.length, all.length, (i) =>
          renderOurs(all[i]!, path.join(dir, `flight-${kind}-${i}.png`)),
        ),
      () =>
        throughput(all.length, 2, async (i) => {
          await timeDcmtk(all[i]!, path.join(dir, `dflight-${kind}-${i}.png`));
        }),
    );
    rows.push(
      row({
        bench: 'dicom',
        measure: `${label} uncompressed → 256 px PNG, all in flight`,
        unit: 'inst/s',
        teleread: stats(rates.teleread),
        reference: { name: 'dcmj2pnm, 2 processes at a time', stats: stats(rates.reference) },
        pairs: zip(rates.teleread, rates.reference),
        better: 'higher',
        note: `${all.length} renders at once in one process (libvips threads + JS on 2 cores)`,
      }),
    );
  }

  if (hasCorpus) {
    // Selection: files both tools render. dcmj2pnm uses the file's first window, or min-max when there is none
    // (ours falls back to a percentile window then); the option found here is reused when timing.
    const candidates = await listFiles(path.join(corpusDir, 'dicom'));
    const selected: Array<{ file: string; windowArgs: string[] }> = [];
    let dcmtkRenders = 0;
    for (const [i, file] of candidates.entries()) {
      if (deadline.expired) break;
      const out = path.join(dir, `select-${i}.png`);
      let windowArgs: string[] | undefined;
      for (const args of [['+Wi', '1'], ['+Wm']]) {
        const r = await runAside(DCMJ2PNM, [...args, '+Sxv', '256', '+on', file, out], { timeoutMs: 30_000 });
        if (r.code === 0) {
          windowArgs = args;
          break;
        }
      }
      if (!windowArgs) continue;
      dcmtkRenders++;
      const failure = await renderOurs(file, out).then(
        () => undefined,
        (err: unknown) => (err instanceof Error ? err.message : String(err)),
      );
      if (failure === undefined) selected.push({ file, windowArgs });
      else
        console.error(
          `dicom: only dcmj2pnm renders ${path.relative(corpusDir, file)}: ${failure.slice(0, 160)}`,
        );
    }
    const files = selected.map((s) => s.file);
    if (files.length === 0) throw new Error('no corpus file renders with both dcmj2pnm and Teleread');
    // One mean per pass: the mix's cost is its total, and a median per file would hide its slow members.
    const mean = (times: number[]) => times.reduce((a, b) => a + b, 0) / times.length;
    const corpus = await alternate(
      PASSES,
      deadline,
      async () => mean(await pass(files, (f, i) => timeOurs(f, path.join(dir, `corpus-ours-${i}.png`)))),
      async () =>
        mean(
          await pass(files, (f, i) =>
            timeDcmtk(f, path.join(dir, `corpus-dcmtk-${i}.png`), selected[i]!.windowArgs),
          ),
        ),
    );
    rows.push(
      row({
        bench: 'dicom',
        measure: `corpus mix (${files.length} of ${candidates.length} files both render) → 256 px PNG`,
        unit: 'ms/inst',
        teleread: stats(corpus.teleread),
        reference: { name: 'dcmj2pnm, process per instance', stats: stats(corpus.reference) },
        pairs: zip(corpus.teleread, corpus.reference),
        better: 'lower',
        note:
          `dcmj2pnm renders ${dcmtkRenders}, Teleread ${files.length} of those; mean per instance, ${corpus.teleread.length} passes ` +
          '(the selection pass warmed both); dcmj2pnm renders frame 1, Teleread the middle frame of multi-frame files',
      }),
    );
  }
  return rows;
}

runBench('dicom', main);
