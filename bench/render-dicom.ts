/**
 * DICOM thumbnails: Teleread's renderer, warm and in-process (readFile → parseDicom → renderDicomFrame, 256 px
 * PNG), against `dcmj2pnm +Wi 1 +Sxv 256 +on in.dcm out.png` with one process per instance (ANCHORS §3a).
 *
 * Data: synthetic uncompressed CT 512² (16 bits allocated, 12 stored, rescaled, windowed) and CR 2048² (12 bit)
 * written with the test DICOM writer, plus the files of the shared corpus that both renderers accept.
 */
import { readdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { parseDicom } from '../src/formats/dicom/parse-dicom.js';
import { renderDicomFrame } from '../src/imaging/render-dicom.js';
import { corpusDir, hasCorpus } from '../test/corpus.js';
import { imageElements, writeDicom } from '../test/helpers/dicom-writer.js';
import {
  alternate,
  type BenchRow,
  Deadline,
  makeTempDir,
  median,
  msSince,
  row,
  run,
  runBench,
  stats,
  zip,
} from './lib.js';

/** Even, so the alternating order (ABBA) puts each side first equally often. */
const PASSES = 4;
const CT_COUNT = 10;
const CR_COUNT = 5;
const DCMJ2PNM = 'dcmj2pnm';

/** Deterministic noise, so every run renders the same pixels. */
function xorshift(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    return (s >>> 0) / 4294967296;
  };
}

/** A CT slice: a water-density body with a bone ring and two lungs, plus noise; stored = HU + 1024. */
function ctPixels(size: number, seed: number): Uint16Array {
  const random = xorshift(seed);
  const out = new Uint16Array(size * size);
  const c = size / 2;
  for (let y = 0; y < size; y++) {
    for (let x = 0; x < size; x++) {
      const dx = (x - c) / (size * 0.42);
      const dy = (y - c) / (size * 0.32);
      const r = Math.hypot(dx, dy);
      let hu = -1000;
      if (r < 1) hu = r > 0.9 ? 700 : 40;
      const lung = Math.hypot((Math.abs(x - c) - size * 0.17) / (size * 0.11), (y - c) / (size * 0.18));
      if (r < 0.9 && lung < 1) hu = -850;
      out[y * size + x] = Math.max(0, Math.min(4095, Math.round(hu + 1024 + (random() - 0.5) * 60)));
    }
  }
  return out;
}

/** A radiograph: a smooth exposure gradient with a brighter "chest" and noise, 12 bits. */
function crPixels(size: number, seed: number): Uint16Array {
  const random = xorshift(seed);
  const out = new Uint16Array(size * size);
  const c = size / 2;
  for (let y = 0; y < size; y++) {
    for (let x = 0; x < size; x++) {
      const r = Math.hypot((x - c) / (size * 0.4), (y - c) / (size * 0.45));
      const body = r < 1 ? 1800 * (1 - r * r) : 0;
      out[y * size + x] = Math.max(
        0,
        Math.min(4095, Math.round(600 + body + (y / size) * 500 + random() * 120)),
      );
    }
  }
  return out;
}

function instance(kind: 'CT' | 'CR', index: number): Uint8Array {
  const ct = kind === 'CT';
  const size = ct ? 512 : 2048;
  const uid = `2.25.${ct ? 1 : 2}${String(index).padStart(4, '0')}${Date.now() % 1_000_000}`;
  const elements = imageElements({
    rows: size,
    columns: size,
    bitsAllocated: 16,
    bitsStored: 12,
    pixelData: ct ? ctPixels(size, index + 1) : crPixels(size, index + 101),
    extra: [
      { tag: 0x00080016, vr: 'UI', value: ct ? '1.2.840.10008.5.1.4.1.1.2' : '1.2.840.10008.5.1.4.1.1.1' },
      { tag: 0x00080018, vr: 'UI', value: uid },
      { tag: 0x00080060, vr: 'CS', value: kind },
      { tag: 0x00200013, vr: 'IS', value: String(index + 1) },
      { tag: 0x00281050, vr: 'DS', value: ct ? '40' : '2048' },
      { tag: 0x00281051, vr: 'DS', value: ct ? '400' : '4096' },
      ...(ct
        ? [
            { tag: 0x00281052, vr: 'DS', value: '-1024' },
            { tag: 0x00281053, vr: 'DS', value: '1' },
          ]
        : []),
    ],
  });
  return writeDicom(elements, { encoding: 'explicit-le' });
}

async function renderOurs(file: string, out: string): Promise<void> {
  const image = await renderDicomFrame(parseDicom(new Uint8Array(await readFile(file))), {
    size: 256,
    format: 'png',
  });
  await writeFile(out, image.data);
}

async function timeOurs(file: string, out: string): Promise<number> {
  const started = process.hrtime.bigint();
  await renderOurs(file, out);
  return msSince(started);
}

async function timeDcmtk(file: string, out: string, windowArgs: string[] = ['+Wi', '1']): Promise<number> {
  const result = await run(DCMJ2PNM, [...windowArgs, '+Sxv', '256', '+on', file, out], { timeoutMs: 30_000 });
  if (result.code !== 0)
    throw new Error(`dcmj2pnm ${file}: exit ${result.code}: ${result.stderr.slice(0, 300)}`);
  return result.wallMs;
}

/** One pass over the set, sequentially: the time of each instance. */
async function pass(files: string[], time: (file: string, i: number) => Promise<number>): Promise<number[]> {
  const times: number[] = [];
  for (const [i, f] of files.entries()) times.push(await time(f, i));
  return times;
}

/** Instances per second with `inFlight` renders running at once, over `total` renders. */
async function throughput(
  total: number,
  inFlight: number,
  render: (i: number) => Promise<void>,
): Promise<number> {
  let next = 0;
  const started = process.hrtime.bigint();
  const lane = async () => {
    while (next < total) await render(next++);
  };
  await Promise.all(Array.from({ length: inFlight }, lane));
  return total / (msSince(started) / 1000);
}

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
      await run(DCMJ2PNM, ['+Wi', '1', '+Sxv', '256', '+on', files[0]!, path.join(dir, 'rss.png')], {
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
        const r = await run(DCMJ2PNM, [...args, '+Sxv', '256', '+on', file, out], { timeoutMs: 30_000 });
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
