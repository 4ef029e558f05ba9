/**
 * Slide thumbnails of a synthetic 40000 × 30000 pyramidal TIFF (ANCHORS §4's big.tif: RGB, 256 px JPEG Q80
 * tiles, 9 pages), built with the vips CLI in a temporary folder and deleted afterwards.
 *
 * Teleread, warm in-process (readTiff → describeSlide → renderSlideThumbnail, 512 px PNG) and as a process
 * per slide (`bin/teleread render`, wall time and peak RSS), against `vipsthumbnail big.tif -s 512` in the same
 * run. The naive `sharp(file).resize(512)`, which decodes level 0, is measured once for contrast.
 */
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { describeSlide } from '../src/formats/slide/describe-slide.js';
import { readTiff } from '../src/formats/slide/tiff.js';
import { renderSlideThumbnail } from '../src/imaging/render-slide.js';
import { fileByteSource } from '../src/storage/file-byte-source.js';
import {
  alternate,
  type BenchRow,
  check,
  Deadline,
  hasGnuTime,
  makeTempDir,
  msSince,
  repeat,
  repoRoot,
  row,
  run,
  runBench,
  stats,
  zip,
} from './lib.js';

/** Even, so the alternating order (ABBA) puts each side first equally often. */
const RUNS = 4;
const IN_PROCESS_RUNS = 5;
const SIZE = 512;
const TELEREAD = path.join(repoRoot, 'bin/teleread');

/**
 * Blurred noise tinted pink and purple, replicated 20 × 15 straight into the pyramidal TIFF, so no
 * full-size intermediate is ever written. The 2000 px tile repeats, so entropy is lower than real tissue
 * (ANCHORS caveat), but every tile is still a real JPEG to decode.
 */
async function buildSlide(dir: string): Promise<{ file: string; seconds: number }> {
  const started = process.hrtime.bigint();
  const noise = path.join(dir, 'noise.v');
  const blur = path.join(dir, 'blur.v');
  const tile = path.join(dir, 'tile.v');
  const file = path.join(dir, 'big.tif');
  const steps: Array<[string, string[]]> = [
    ['gaussnoise', [noise, '2000', '2000', '--mean', '128', '--sigma', '40']],
    ['gaussblur', [noise, blur, '1.5']],
    ['linear', [blur, tile, '0.85 0.55 0.8', '60 20 70', '--uchar']],
    [
      'replicate',
      [tile, `${file}[tile,pyramid,compression=jpeg,Q=80,tile-width=256,tile-height=256]`, '20', '15'],
    ],
  ];
  for (const [op, args] of steps) {
    check(await run('vips', [op, ...args], { timeoutMs: 120_000 }), `vips ${op}`);
  }
  return { file, seconds: msSince(started) / 1000 };
}

async function thumbnailInProcess(file: string, out: string): Promise<number> {
  const started = process.hrtime.bigint();
  const source = await fileByteSource(file);
  try {
    const info = describeSlide(await readTiff(source));
    const image = await renderSlideThumbnail(file, info, { size: SIZE, format: 'png' });
    if (Math.max(image.width, image.height) !== SIZE) {
      throw new Error(`thumbnail is ${image.width}×${image.height}, expected a ${SIZE} px longest side`);
    }
    await writeFile(out, image.data);
  } finally {
    await source.close();
  }
  return msSince(started);
}

/** Runs a command once, failing on a non-zero exit; seconds of wall time and peak RSS in MB. */
function command(
  what: string,
  file: string,
  args: string[],
): () => Promise<{ seconds: number; rssMb: number }> {
  return async () => {
    const r = check(await run(file, args, { timeoutMs: 120_000, measureRss: true, cwd: repoRoot }), what);
    return { seconds: r.wallMs / 1000, rssMb: r.peakRssMb ?? Number.NaN };
  };
}

async function main(): Promise<BenchRow[]> {
  const deadline = new Deadline(150_000);
  const dir = await makeTempDir('slide');
  const built = await buildSlide(dir);

  const vipsOnce = command('vipsthumbnail', 'vipsthumbnail', [
    built.file,
    '-s',
    String(SIZE),
    '-o',
    path.join(dir, 'vips-%s.png'),
  ]);
  const cliOnce = command('bin/teleread render', TELEREAD, [
    'render',
    built.file,
    '-o',
    path.join(dir, 'teleread.png'),
    '--size',
    String(SIZE),
  ]);
  // One uncounted run each (page cache, binaries), then alternating measured runs.
  await vipsOnce();
  await cliOnce();
  const measured = await alternate(RUNS, deadline, cliOnce, vipsOnce);
  const cli = measured.teleread;
  const vipsthumbnail = measured.reference;
  // What the CLI costs before it touches the slide: node, the tsx loader and every module main.ts imports.
  const startup = await repeat(RUNS, deadline, command('bin/teleread help', TELEREAD, ['help']));

  await thumbnailInProcess(built.file, path.join(dir, 'warm.png'));
  const inProcess = await repeat(IN_PROCESS_RUNS, deadline, (i) =>
    thumbnailInProcess(built.file, path.join(dir, `in-process-${i}.png`)),
  );

  const naiveScript =
    "require('sharp')(process.argv[1], { limitInputPixels: false }).resize(512).png().toFile(process.argv[2])" +
    '.catch((e) => { console.error(e.message); process.exit(1); })';
  const naive = check(
    await run(process.execPath, ['-e', naiveScript, built.file, path.join(dir, 'naive.png')], {
      timeoutMs: 90_000,
      measureRss: true,
      cwd: repoRoot,
    }),
    'naive sharp resize',
  );

  const seconds = (runs: Array<{ seconds: number }>) => stats(runs.map((r) => r.seconds));
  const rss = (runs: Array<{ rssMb: number }>) => stats(runs.map((r) => r.rssMb));
  const vipsRef = { name: 'vipsthumbnail -s 512', stats: seconds(vipsthumbnail) };
  const rssHow = hasGnuTime ? 'GNU time %M' : 'VmHWM polled every 10 ms';
  return [
    row({
      bench: 'slide',
      measure: '40k×30k pyramidal TIFF → 512 px PNG, process per slide (bin/teleread render)',
      unit: 's',
      teleread: seconds(cli),
      reference: vipsRef,
      pairs: zip(
        cli.map((r) => r.seconds),
        vipsthumbnail.map((r) => r.seconds),
      ),
      better: 'lower',
      note: `includes start-up: bin/teleread help alone takes ${seconds(startup).median.toFixed(2)} s; slide built in ${built.seconds.toFixed(1)} s`,
    }),
    row({
      bench: 'slide',
      measure: 'peak RSS of that process',
      unit: 'MB',
      teleread: rss(cli),
      reference: { name: 'vipsthumbnail -s 512', stats: rss(vipsthumbnail) },
      pairs: zip(
        cli.map((r) => r.rssMb),
        vipsthumbnail.map((r) => r.rssMb),
      ),
      better: 'lower',
      note: `${rssHow}; bin/teleread help alone peaks at ${rss(startup).median.toFixed(0)} MB`,
    }),
    row({
      bench: 'slide',
      measure: 'same thumbnail, warm in-process (readTiff + describeSlide + renderSlideThumbnail)',
      unit: 's',
      teleread: stats(inProcess.map((ms) => ms / 1000)),
      reference: vipsRef,
      better: 'lower',
      note: 'what a worker pays per slide; the reference still includes its process start',
    }),
    row({
      bench: 'slide',
      measure: 'naive sharp(file).resize(512) (decodes level 0), for contrast',
      unit: 's',
      teleread: stats([naive.wallMs / 1000]),
      reference: vipsRef,
      better: 'lower',
      note: `not Teleread's path; one run, peak RSS ${naive.peakRssMb?.toFixed(0) ?? '?'} MB`,
    }),
  ];
}

runBench('slide', main);
