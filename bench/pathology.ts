/**
 * Issue 5's pathology check on a synthetic 40000 × 30000 pyramidal TIFF that the script builds itself
 * (synthetic-slide.ts: `vips tiffsave --tile --pyramid --compression jpeg`, ANCHORS §4's big.tif), against
 * vipsthumbnail and openslide-write-png in the same run.
 *
 * Thumbnail (512 px): Teleread as a fresh process (`bin/teleread render`, which includes starting Node and
 * loading the CLI's compiled build, measured alone with `bin/teleread help`; the uncounted first run makes that
 * build, see scripts/build-cli.mjs), the same through tsx (`TELEREAD_TSX=1`, how bin/teleread ran before, for
 * contrast) and warm in this process (readTiff →
 * openTiffSlide → renderSlideThumbnailFromReader over a ByteSource, as a worker does it), against `vipsthumbnail -s 512` and
 * `openslide-write-png` of the pyramid level nearest 512 px (the whole level, not resized), each a process
 * per slide. Wall time and peak RSS (GNU time %M); for the warm path, the growth of this process's peak RSS
 * over its resting RSS (VmHWM reset through /proc/self/clear_refs before each thumbnail).
 *
 * Deep Zoom tiles (254 px + 1 overlap, JPEG Q80) with src/imaging/slide-tiles.ts over a file ByteSource:
 * a fixed sample of tiles across every DZI level, timed cold (a new reader and empty caches per tile, the
 * TIFF directory already parsed), then through one open reader with the API's cache sizes (first request of
 * each tile, then the repeat, an encoded-tile cache hit). For context, `openslide-write-png` of each tile's
 * source region, a process per tile.
 *
 * The naive `sharp(file).resize(512)`, which decodes level 0, is measured once for contrast.
 */
import { writeFileSync } from 'node:fs';
import { link, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { dziLayout, dziTileRegion } from '../src/formats/slide/deep-zoom.js';
import { describeSlide } from '../src/formats/slide/describe-slide.js';
import { readTiff } from '../src/formats/slide/tiff.js';
import { renderSlideThumbnailFromReader } from '../src/imaging/render-slide.js';
import {
  createEncodedTileCache,
  createRawTileCache,
  openTiffSlide,
  renderDziTile,
} from '../src/imaging/slide-tiles.js';
import { fileByteSource } from '../src/storage/file-byte-source.js';
import {
  type BenchRow,
  check,
  Deadline,
  hasGnuTime,
  makeTempDir,
  median,
  msSince,
  onCleanup,
  readProcMemory,
  repeat,
  repoRoot,
  row,
  run,
  runBench,
  type Stats,
  stats,
  zip,
} from './lib.js';
import { xorshift } from './synthetic-dicom.js';
import { buildSlide, SLIDE_HEIGHT, SLIDE_WIDTH } from './synthetic-slide.js';

/** Even, so each side goes first equally often in the rotation. */
const RUNS = 4;
const IN_PROCESS_RUNS = 6;
const SIZE = 512;
const TILES_PER_LEVEL = 6;
const TELEREAD = path.join(repoRoot, 'bin/teleread');
/** The API's cache sizes (src/api/routes/slides.ts and src/pipeline/open-slide.ts). */
const RAW_CACHE_BYTES = 128 * 1024 * 1024;
const ENCODED_CACHE_BYTES = 64 * 1024 * 1024;
/** Issue 5's goals against vipsthumbnail: time ≤ 1.2×, peak RSS ≤ 2×. */
const TIME_GOAL = 1.2;
const RSS_GOAL = 2;

function withGoal(r: BenchRow, limit: number): BenchRow {
  const ratio = r.ratio?.median ?? Number.NaN;
  return { ...r, goal: { text: `≤ ${limit}× vipsthumbnail`, met: ratio <= limit } };
}

interface ProcessRun {
  seconds: number;
  rssMb: number;
}

/**
 * The environment of the measured commands. Once sharp loads libvips in this process, libvips sets VIPSHOME to
 * its own build prefix (/target), and children inherit it: Debian's vipsthumbnail then finds none of its
 * modules and runs lighter than on a user's machine (about 7 MB less peak RSS). So it is left out.
 */
function commandEnv(extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  const { VIPSHOME: _set_by_libvips, ...env } = process.env;
  return { ...env, ...extra };
}

/** Runs a command once, failing on a non-zero exit; seconds of wall time and peak RSS in MB. */
function command(
  what: string,
  file: string,
  args: string[],
  env: NodeJS.ProcessEnv = commandEnv(),
): () => Promise<ProcessRun> {
  return async () => {
    const r = check(
      await run(file, args, { timeoutMs: 120_000, measureRss: true, cwd: repoRoot, env }),
      what,
    );
    return { seconds: r.wallMs / 1000, rssMb: r.peakRssMb ?? Number.NaN };
  };
}

/**
 * Runs each command `count` times, rotating which goes first each round, so load that drifts during the run
 * weighs on all of them alike.
 */
async function rotate(
  count: number,
  deadline: Deadline,
  commands: ReadonlyArray<() => Promise<ProcessRun>>,
): Promise<ProcessRun[][]> {
  const out = commands.map(() => [] as ProcessRun[]);
  for (let i = 0; i < count; i++) {
    if (i > 0 && deadline.expired) break;
    for (let k = 0; k < commands.length; k++) {
      const j = (i + k) % commands.length;
      out[j]!.push(await commands[j]!());
    }
  }
  return out;
}

/** The OpenSlide level nearest `size` at or above it (the smallest level whose longest side is ≥ size). */
async function openslideLevel(file: string, size: number) {
  const props = check(await run('openslide-show-properties', [file], { timeoutMs: 30_000 }), 'openslide');
  const value = (key: string) =>
    Number(new RegExp(`^${key.replace(/[[\]]/g, '\\$&')}: '([^']*)'`, 'm').exec(props.stdout)?.[1]);
  const count = value('openslide.level-count');
  if (!Number.isInteger(count) || count < 1) throw new Error('openslide-show-properties gave no level count');
  const levels = Array.from({ length: count }, (_, i) => ({
    level: i,
    width: value(`openslide.level[${i}].width`),
    height: value(`openslide.level[${i}].height`),
    downsample: value(`openslide.level[${i}].downsample`),
  }));
  const fits = levels.filter((l) => Math.max(l.width, l.height) >= size);
  return { levels, nearest: fits[fits.length - 1] ?? levels[0]! };
}

/** Warm thumbnail in this process: time, and peak RSS growth over the resting RSS. */
async function thumbnailInProcess(file: string, out: string): Promise<{ ms: number; growthMb: number }> {
  const before = readProcMemory(process.pid);
  // Writing 5 to clear_refs resets VmHWM to the current RSS, so the next VmHWM is this thumbnail's peak.
  let reset = true;
  try {
    writeFileSync('/proc/self/clear_refs', '5');
  } catch {
    reset = false;
  }
  const started = process.hrtime.bigint();
  const source = await fileByteSource(file);
  try {
    // What the pipeline's worker does: a tile reader over the stored bytes, composed from the smallest level.
    const image = await renderSlideThumbnailFromReader(await openTiffSlide(source), {
      size: SIZE,
      format: 'png',
    });
    if (Math.max(image.width, image.height) !== SIZE) {
      throw new Error(`thumbnail is ${image.width}×${image.height}, expected a ${SIZE} px longest side`);
    }
    await writeFile(out, image.data);
  } finally {
    await source.close();
  }
  const ms = msSince(started);
  const after = readProcMemory(process.pid);
  const growthMb = reset && before && after ? after.hwmMb - before.rssMb : Number.NaN;
  return { ms, growthMb };
}

interface TileSample {
  level: number;
  col: number;
  row: number;
}

/** Up to TILES_PER_LEVEL tiles of every DZI level, at deterministic pseudo-random positions. */
function sampleTiles(width: number, height: number): TileSample[] {
  const layout = dziLayout(width, height);
  const random = xorshift(20_251_125);
  const out: TileSample[] = [];
  for (const level of layout.levels) {
    const total = level.cols * level.rows;
    const picked = new Set<number>();
    for (let tries = 0; picked.size < Math.min(TILES_PER_LEVEL, total) && tries < 1000; tries++) {
      picked.add(Math.floor(random() * total));
    }
    for (const index of picked) {
      out.push({ level: level.level, col: index % level.cols, row: Math.floor(index / level.cols) });
    }
  }
  return out;
}

function percentiles(values: readonly number[]): { p50: number; p95: number; s: Stats } {
  const sorted = [...values].sort((a, b) => a - b);
  const at = (q: number) =>
    sorted[Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1)] ?? Number.NaN;
  return { p50: at(0.5), p95: at(0.95), s: stats(values) };
}

async function tileRows(file: string, dir: string, deadline: Deadline): Promise<BenchRow[]> {
  const source = await fileByteSource(file);
  onCleanup('close the slide', () => source.close());

  // Opening a slide: the TIFF directory and the level description, from a fresh file handle each time.
  const openTimes = await repeat(5, deadline, async () => {
    const started = process.hrtime.bigint();
    const s = await fileByteSource(file);
    try {
      describeSlide(await readTiff(s));
    } finally {
      await s.close();
    }
    return msSince(started);
  });
  const tiff = await readTiff(source);
  const info = describeSlide(tiff);
  const base = info.levels[0]!;
  const samples = sampleTiles(base.width, base.height);

  const render = async (
    reader: Awaited<ReturnType<typeof openTiffSlide>>,
    t: TileSample,
    cache?: ReturnType<typeof createEncodedTileCache>,
  ) => {
    const data = await renderDziTile(reader, t.level, t.col, t.row, cache ? { cache } : {});
    if (data.length < 100)
      throw new Error(`DZI tile ${t.level}/${t.col}_${t.row} is only ${data.length} bytes`);
  };
  // Warm-up (JIT, sharp's first pipeline), on a reader that is then dropped.
  const warmReader = await openTiffSlide(source, { info, tiff });
  for (const t of samples.slice(0, 5)) await render(warmReader, t);

  const cold: number[] = [];
  for (const t of samples) {
    if (deadline.expired) break;
    const started = process.hrtime.bigint();
    const reader = await openTiffSlide(source, {
      info,
      tiff,
      tileCache: createRawTileCache(RAW_CACHE_BYTES),
    });
    await render(reader, t, createEncodedTileCache(ENCODED_CACHE_BYTES));
    cold.push(msSince(started));
  }
  const reader = await openTiffSlide(source, { info, tiff, tileCache: createRawTileCache(RAW_CACHE_BYTES) });
  const encoded = createEncodedTileCache(ENCODED_CACHE_BYTES);
  const first: number[] = [];
  const repeatHit: number[] = [];
  for (const times of [first, repeatHit]) {
    for (const t of samples) {
      if (deadline.expired) break;
      const started = process.hrtime.bigint();
      await render(reader, t, encoded);
      times.push(msSince(started));
    }
  }

  // Context: OpenSlide reading each tile's source region, one process per tile (x, y are level-0 pixels).
  const { levels: osLevels } = await openslideLevel(file, SIZE);
  const reference: number[] = [];
  for (const [i, t] of samples.entries()) {
    if (deadline.expired) break;
    const region = dziTileRegion(info, t.level, t.col, t.row);
    const level = osLevels[region.sourceLevel];
    if (!level || level.width !== info.levels[region.sourceLevel]?.width) {
      throw new Error(`OpenSlide level ${region.sourceLevel} does not match Teleread's`);
    }
    const x0 = Math.floor(region.x * level.downsample);
    const y0 = Math.floor(region.y * level.downsample);
    const args = [
      file,
      String(x0),
      String(y0),
      String(region.sourceLevel),
      String(region.sourceWidth),
      String(region.sourceHeight),
      path.join(dir, `os-tile-${i}.png`),
    ];
    const r = check(
      await run('openslide-write-png', args, { timeoutMs: 30_000 }),
      'openslide-write-png tile',
    );
    reference.push(r.wallMs);
  }

  const c = percentiles(cold);
  const f = percentiles(first);
  const w = percentiles(repeatHit);
  const o = percentiles(reference);
  const levelsCovered = new Set(samples.map((t) => t.level)).size;
  const sampleNote = `${cold.length} tiles over ${levelsCovered} DZI levels (up to ${TILES_PER_LEVEL} per level), 254+1 px JPEG Q80`;
  const refStats = (p: number): { name: string; stats: Stats } => ({
    name: 'openslide-write-png of the source region, process per tile',
    stats: { median: p, min: o.s.min, max: o.s.max, n: o.s.n },
  });
  return [
    row({
      bench: 'pathology',
      measure: 'open a slide: readTiff + describeSlide (new file handle)',
      unit: 'ms',
      teleread: stats(openTimes),
      better: 'lower',
      note: 'paid once per reader; the tile rows below start from a parsed directory',
    }),
    row({
      bench: 'pathology',
      measure: 'DZI tile, cold (new reader, empty caches): p50',
      unit: 'ms',
      teleread: { ...c.s, median: c.p50 },
      reference: refStats(o.p50),
      better: 'lower',
      note: `${sampleNote}; the reference includes its process start (context, not a like-for-like pair)`,
    }),
    row({
      bench: 'pathology',
      measure: 'DZI tile, cold: p95',
      unit: 'ms',
      teleread: { ...c.s, median: c.p95 },
      reference: refStats(o.p95),
      better: 'lower',
      note: 'the range shown is min–max over the sample',
    }),
    row({
      bench: 'pathology',
      measure: 'DZI tile, open reader, first request of the tile: p50 / p95',
      unit: 'ms',
      teleread: { ...f.s, median: f.p50 },
      better: 'lower',
      note: `p95 ${f.p95.toFixed(1)} ms; one reader with the API's caches (raw ${RAW_CACHE_BYTES / 2 ** 20} MiB, encoded ${ENCODED_CACHE_BYTES / 2 ** 20} MiB)`,
    }),
    row({
      bench: 'pathology',
      measure: 'DZI tile, warm (repeat request, encoded-tile cache hit): p50 / p95',
      unit: 'ms',
      teleread: { ...w.s, median: w.p50 },
      better: 'lower',
      note: `p95 ${w.p95.toFixed(3)} ms`,
    }),
  ];
}

async function main(): Promise<BenchRow[]> {
  const deadline = new Deadline(200_000);
  const dir = await makeTempDir('pathology');
  const built = await buildSlide(dir);
  const { nearest } = await openslideLevel(built.file, SIZE);

  const vipsOnce = command('vipsthumbnail', 'vipsthumbnail', [
    built.file,
    '-s',
    String(SIZE),
    '-o',
    path.join(dir, 'vips-%s.png'),
  ]);
  const openslideOnce = command('openslide-write-png', 'openslide-write-png', [
    built.file,
    '0',
    '0',
    String(nearest.level),
    String(nearest.width),
    String(nearest.height),
    path.join(dir, 'openslide.png'),
  ]);
  const renderArgs = ['render', built.file, '-o', path.join(dir, 'teleread.png'), '--size', String(SIZE)];
  const cliOnce = command('bin/teleread render', TELEREAD, renderArgs);
  const cliTsxOnce = command(
    'TELEREAD_TSX=1 bin/teleread render',
    TELEREAD,
    renderArgs,
    commandEnv({ TELEREAD_TSX: '1' }),
  );
  // One uncounted run each (page cache, binaries, and bin/teleread's build when the sources changed), then
  // rotating measured runs.
  await vipsOnce();
  await openslideOnce();
  await cliOnce();
  await cliTsxOnce();
  const [cli, vipsthumbnail, openslide, cliTsx] = (await rotate(RUNS, deadline, [
    cliOnce,
    vipsOnce,
    openslideOnce,
    cliTsxOnce,
  ])) as [ProcessRun[], ProcessRun[], ProcessRun[], ProcessRun[]];
  // What the CLI costs before it touches the slide: node, the build's main module and the argument parsing.
  const startup = await repeat(RUNS, deadline, command('bin/teleread help', TELEREAD, ['help']));

  // Each run reads the slide under a new name (a hard link), as a worker reads each stored slide from its
  // own temporary copy: libvips caches recent operations by file name, and a repeat would be a cache hit.
  const underNewName = async (i: number) => {
    const copy = path.join(dir, `slide-${i}.tif`);
    await link(built.file, copy);
    try {
      return await thumbnailInProcess(copy, path.join(dir, `in-process-${i}.png`));
    } finally {
      await rm(copy, { force: true });
    }
  };
  await underNewName(-1);
  const resting = readProcMemory(process.pid)?.rssMb ?? Number.NaN;
  const inProcess = await repeat(IN_PROCESS_RUNS, deadline, underNewName);

  const tiles = await tileRows(built.file, dir, new Deadline(Math.min(60_000, deadline.leftMs)));

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

  const seconds = (runs: ProcessRun[]) => stats(runs.map((r) => r.seconds));
  const rss = (runs: ProcessRun[]) => stats(runs.map((r) => r.rssMb));
  const vipsRef = { name: 'vipsthumbnail -s 512 (process)', stats: seconds(vipsthumbnail) };
  const vipsRss = { name: 'vipsthumbnail -s 512 (process)', stats: rss(vipsthumbnail) };
  const osName = `openslide-write-png level ${nearest.level} (${nearest.width}×${nearest.height}, process)`;
  const rssHow = hasGnuTime ? 'GNU time %M' : 'VmHWM polled every 10 ms';
  const startupS = seconds(startup).median;
  const warmSeconds = inProcess.map((r) => r.ms / 1000);
  const warmGrowth = inProcess.map((r) => r.growthMb);
  return [
    withGoal(
      row({
        bench: 'pathology',
        measure: `${SLIDE_WIDTH}×${SLIDE_HEIGHT} pyramidal TIFF → 512 px PNG, fresh process (bin/teleread render)`,
        unit: 's',
        teleread: seconds(cli),
        reference: vipsRef,
        pairs: zip(
          cli.map((r) => r.seconds),
          vipsthumbnail.map((r) => r.seconds),
        ),
        better: 'lower',
        note: `includes Node's start-up and loading sharp: bin/teleread help alone takes ${startupS.toFixed(2)} s; slide (${built.seconds.toFixed(1)} s to build) made by vips tiffsave --tile --pyramid --compression jpeg`,
      }),
      TIME_GOAL,
    ),
    withGoal(
      row({
        bench: 'pathology',
        measure: 'peak RSS of that process',
        unit: 'MB',
        teleread: rss(cli),
        reference: vipsRss,
        pairs: zip(
          cli.map((r) => r.rssMb),
          vipsthumbnail.map((r) => r.rssMb),
        ),
        better: 'lower',
        note: `${rssHow}; bin/teleread help alone peaks at ${rss(startup).median.toFixed(0)} MB, so the slide work adds about ${(rss(cli).median - rss(startup).median).toFixed(0)} MB`,
      }),
      RSS_GOAL,
    ),
    row({
      bench: 'pathology',
      measure: 'the same fresh process through tsx (TELEREAD_TSX=1), for contrast',
      unit: 's',
      teleread: seconds(cliTsx),
      reference: vipsRef,
      pairs: zip(
        cliTsx.map((r) => r.seconds),
        vipsthumbnail.map((r) => r.seconds),
      ),
      better: 'lower',
      note: `how bin/teleread ran before its compiled build (the tsx loader compiles and resolves every module at start); peak RSS ${rss(cliTsx).median.toFixed(0)} MB (${(rss(cliTsx).median / rss(vipsthumbnail).median).toFixed(1)}× vipsthumbnail)`,
    }),
    withGoal(
      row({
        bench: 'pathology',
        measure: 'same thumbnail, warm in-process (openTiffSlide + renderSlideThumbnailFromReader)',
        unit: 's',
        teleread: stats(warmSeconds),
        reference: vipsRef,
        better: 'lower',
        note: `what a worker pays per slide (each run under a new file name, so no libvips cache hit); ${inProcess.length} runs after one warm-up; the reference still includes its process start`,
      }),
      TIME_GOAL,
    ),
    withGoal(
      row({
        bench: 'pathology',
        measure: 'peak RSS growth of the warm process during one thumbnail',
        unit: 'MB',
        teleread: stats(warmGrowth),
        reference: vipsRss,
        better: 'lower',
        note:
          `VmHWM after − VmRSS before (VmHWM reset via /proc/self/clear_refs); memory the process already holds from ` +
          `earlier work and reuses is not counted; the process rests at ${resting.toFixed(0)} MB; the reference is vipsthumbnail's whole-process peak`,
      }),
      RSS_GOAL,
    ),
    row({
      bench: 'pathology',
      measure: 'the second reference: OpenSlide, level nearest 512 px',
      unit: 's',
      teleread: seconds(cli),
      reference: { name: osName, stats: seconds(openslide) },
      pairs: zip(
        cli.map((r) => r.seconds),
        openslide.map((r) => r.seconds),
      ),
      better: 'lower',
      note: `Teleread = the fresh-process figure; warm in-process ${median(warmSeconds).toFixed(3)} s is ${(median(warmSeconds) / seconds(openslide).median).toFixed(2)}× OpenSlide; OpenSlide peak RSS ${rss(openslide).median.toFixed(0)} MB; its output is the level as is, not resized to 512`,
    }),
    ...tiles,
    row({
      bench: 'pathology',
      measure: 'naive sharp(file).resize(512) (decodes level 0), for contrast',
      unit: 's',
      teleread: stats([naive.wallMs / 1000]),
      reference: vipsRef,
      better: 'lower',
      note: `not Teleread's path; one run, peak RSS ${naive.peakRssMb?.toFixed(0) ?? '?'} MB`,
    }),
  ];
}

runBench('pathology', main);
