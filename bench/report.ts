/**
 * Merges the per-benchmark results that run.sh collected into bench/results/<date>.json and prints one
 * Markdown table (not saved as .md: Biome's Markdown formatter would then fail `npm run lint`). Exits 3 when a budget failed, 1 when a benchmark did not finish.
 *
 *   report.ts PARTS_DIR NAME:EXIT_CODE…
 */
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import sharp from 'sharp';
import { cpuProbeMs } from './cpu-probe.js';
import { type BenchRow, markdownTable, repoRoot, run } from './lib.js';

interface Part {
  bench: string;
  seconds: number;
  rows: BenchRow[];
}

async function firstLine(command: string, args: string[]): Promise<string | undefined> {
  const r = await run(command, args, { timeoutMs: 10_000 }).catch(() => undefined);
  if (r?.code !== 0) return undefined;
  return (r.stdout || r.stderr).trim().split('\n')[0];
}

async function machine() {
  const cpus = os.cpus();
  const commit = await firstLine('git', ['-C', repoRoot, 'rev-parse', '--short', 'HEAD']);
  const dirty = await run('git', ['-C', repoRoot, 'status', '--porcelain'], { timeoutMs: 10_000 }).catch(
    () => undefined,
  );
  return {
    cpu: cpus[0]?.model ?? 'unknown',
    cores: cpus.length,
    memoryGb: Math.round(os.totalmem() / 1e9),
    /** 1, 5 and 15 minute load averages when the report is written: other tenants' load shows here. */
    loadAverage: os.loadavg().map((l) => Number(l.toFixed(2))),
    kernel: `${os.type()} ${os.release()}`,
    node: process.version,
    sharp: sharp.versions.sharp,
    sharpLibvips: sharp.versions.vips,
    vipsCli: await firstLine('vips', ['--version']),
    dcmtk: (await firstLine('dcmj2pnm', ['--version']))?.replace(/^\$|\$$/g, '').trim(),
    commit: commit ? `${commit}${dirty?.stdout.trim() ? ' (with uncommitted changes)' : ''}` : undefined,
    /** bench/cpu-probe.ts before the first benchmark and now: a slower host shows here. */
    cpuProbeMs: {
      start: Number(process.env.BENCH_CPU_PROBE_START_MS) || undefined,
      end: Math.round(cpuProbeMs()),
    },
  };
}

async function main(): Promise<number> {
  const [partsDir, ...statuses] = process.argv.slice(2);
  if (!partsDir) throw new Error('usage: report.ts PARTS_DIR NAME:EXIT_CODE…');
  const date = new Date();
  const benches: Array<{ name: string; exitCode: number; seconds?: number; rows: BenchRow[] }> = [];
  for (const status of statuses) {
    const [name, code] = status.split(':');
    if (!name) continue;
    const part = (await readFile(path.join(partsDir, `${name}.json`), 'utf8')
      .then((t) => JSON.parse(t) as Part)
      .catch(() => undefined)) as Part | undefined;
    benches.push({
      name,
      exitCode: Number(code),
      ...(part ? { seconds: part.seconds } : {}),
      rows: part?.rows ?? [],
    });
  }
  const rows = benches.flatMap((b) => b.rows);
  const failedBudgets = rows.filter((r) => r.budget && !r.budget.pass);
  const unfinished = benches.filter((b) => b.rows.length === 0);
  const info = await machine();

  const stamp = date
    .toISOString()
    .replace(/:/g, '-')
    .replace(/\.\d+Z$/, 'Z');
  const resultsDir = path.join(repoRoot, 'bench/results');
  await mkdir(resultsDir, { recursive: true });
  const result = {
    date: date.toISOString(),
    machine: info,
    ok: failedBudgets.length === 0 && unfinished.length === 0,
    benches,
  };
  const jsonFile = path.join(resultsDir, `${stamp}.json`);
  await writeFile(jsonFile, `${JSON.stringify(result, null, 2)}\n`);

  const heading =
    `Teleread benchmarks, ${date.toISOString().slice(0, 16).replace('T', ' ')} UTC, one run on ` +
    `${info.cores} × ${info.cpu}, ${info.memoryGb} GB, node ${info.node}, sharp ${info.sharp} (libvips ${info.sharpLibvips}), ` +
    `${info.vipsCli ?? 'no vips CLI'}, ${info.dcmtk ?? 'no dcmtk'}, commit ${info.commit ?? '?'}, ` +
    `load average ${info.loadAverage.join(' / ')} (1/5/15 min) at the end, ` +
    `CPU probe ${info.cpuProbeMs.start ?? '?'} ms at the start and ${info.cpuProbeMs.end} ms at the end ` +
    '(bench/cpu-probe.ts: lower is a faster host; absolute figures move with it, same-run ratios much less).\n' +
    'ratio = Teleread ÷ reference, both measured in this run; "better" says which direction is good.';
  const problems = [
    ...unfinished.map((b) => `- ${b.name}: did not finish (exit ${b.exitCode}); see its output above`),
    ...failedBudgets.map(
      (r) =>
        `- ${r.bench}: ${r.measure} = ${r.teleread.median.toFixed(1)} ${r.unit}, over the ${r.budget!.limit} ${r.unit} budget`,
    ),
  ];
  const markdown = `${heading}\n\n${markdownTable(rows)}\n${problems.length ? `\n${problems.join('\n')}\n` : ''}`;
  console.log(`\n${markdown}\nresults: ${path.relative(process.cwd(), jsonFile)}`);
  if (unfinished.length > 0) return 1;
  return failedBudgets.length > 0 ? 3 : 0;
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    console.error(err instanceof Error ? err.message : err);
    process.exit(1);
  },
);
