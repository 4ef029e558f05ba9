/**
 * Shared pieces of the benchmarks: result rows, statistics, bounded repetition, child processes measured for
 * wall time and peak RSS, /proc sampling, and clean-up that also runs on SIGINT/SIGTERM.
 *
 * Every figure is reported next to a reference tool measured in the same run: on the shared 2-core machine
 * absolute figures drift 20–30 % between runs, a ratio taken minutes apart much less.
 */
import { spawn } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import http from 'node:http';
import { createServer } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

export interface Stats {
  median: number;
  min: number;
  max: number;
  n: number;
}

/** One printed line of the results table. `ratio` is always Teleread ÷ reference of the same quantity. */
export interface BenchRow {
  bench: string;
  measure: string;
  unit: string;
  teleread: Stats;
  reference?: { name: string; stats: Stats };
  /**
   * Teleread ÷ reference: the median of the per-pass ratios when the passes were paired (each Teleread pass
   * next to a reference pass, so load that drifts during the run cancels), else the ratio of the medians.
   */
  ratio?: Stats;
  /** Which way is good for this quantity, so a reader knows whether a ratio of 1.4 is a win. */
  better: 'lower' | 'higher';
  /** A hard limit checked here (and only here): the run fails when it is not met. */
  budget?: { limit: number; pass: boolean };
  /**
   * An issue's target, reported as met or not without failing the run: most are ratios against a reference
   * that drift 20–30 % between runs on this machine, so one run decides nothing on its own.
   */
  goal?: { text: string; met: boolean };
  note?: string;
}

export function stats(values: readonly number[]): Stats {
  const finite = values.filter(Number.isFinite);
  if (finite.length === 0) return { median: Number.NaN, min: Number.NaN, max: Number.NaN, n: 0 };
  const sorted = [...finite].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  const median = sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
  return { median, min: sorted[0]!, max: sorted[sorted.length - 1]!, n: sorted.length };
}

/**
 * A row with its ratio filled in: from `pairs` (Teleread and reference figures of the same pass) when given,
 * else from the two medians.
 */
export function row(
  input: Omit<BenchRow, 'ratio'> & { pairs?: ReadonlyArray<readonly [number, number]> },
): BenchRow {
  const { pairs, ...rest } = input;
  const paired = (pairs ?? []).filter(([, r]) => r > 0).map(([t, r]) => t / r);
  const ref = input.reference?.stats.median;
  if (paired.length > 0) return { ...rest, ratio: stats(paired) };
  if (ref !== undefined && ref > 0 && Number.isFinite(input.teleread.median)) {
    return { ...rest, ratio: stats([input.teleread.median / ref]) };
  }
  return rest;
}

/** Pairs pass i of Teleread with pass i of the reference. */
export function zip(a: readonly number[], b: readonly number[]): Array<[number, number]> {
  return a.slice(0, b.length).map((x, i) => [x, b[i]!]);
}

export function median(values: readonly number[]): number {
  return stats(values).median;
}

/** A wall-clock allowance: every loop in the benchmarks is bounded by a count and by one of these. */
export class Deadline {
  private readonly end: number;
  constructor(readonly ms: number) {
    this.end = Date.now() + ms;
  }
  get expired(): boolean {
    return Date.now() >= this.end;
  }
  get leftMs(): number {
    return Math.max(0, this.end - Date.now());
  }
}

/** Runs `fn` up to `count` times, stopping early once the deadline passes (it always runs at least once). */
export async function repeat<T>(
  count: number,
  deadline: Deadline,
  fn: (i: number) => Promise<T>,
): Promise<T[]> {
  const out: T[] = [];
  for (let i = 0; i < count; i++) {
    if (i > 0 && deadline.expired) break;
    out.push(await fn(i));
  }
  return out;
}

/**
 * Runs the Teleread pass and the reference pass `count` times each, alternating which goes first (ABBA…), so
 * load from the other tenants of the machine and cache warmth weigh on both sides alike.
 */
export async function alternate<T>(
  count: number,
  deadline: Deadline,
  teleread: (pass: number) => Promise<T>,
  reference: (pass: number) => Promise<T>,
): Promise<{ teleread: T[]; reference: T[] }> {
  const out = { teleread: [] as T[], reference: [] as T[] };
  for (let i = 0; i < count; i++) {
    if (i > 0 && deadline.expired) break;
    if (i % 2 === 0) {
      out.teleread.push(await teleread(i));
      out.reference.push(await reference(i));
    } else {
      out.reference.push(await reference(i));
      out.teleread.push(await teleread(i));
    }
  }
  return out;
}

export function msSince(start: bigint): number {
  return Number(process.hrtime.bigint() - start) / 1e6;
}

// ---------------------------------------------------------------------------------------------------------
// Memory

/** Resident set now and its high-water mark, in MB (10^6 bytes), from /proc/<pid>/status; undefined once gone. */
export function readProcMemory(pid: number): { rssMb: number; hwmMb: number } | undefined {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/status`, 'utf8');
  } catch {
    return undefined;
  }
  const kb = (field: string) =>
    Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(text)?.[1] ?? Number.NaN);
  return { rssMb: (kb('VmRSS') * 1024) / 1e6, hwmMb: (kb('VmHWM') * 1024) / 1e6 };
}

/**
 * A keep-alive `node:http` client for load that sends ready bytes. The load generator shares the 2 cores with the
 * servers it measures, so it must cost as little as it can: 200 POSTs of 0.5 MB, 4 in flight, to a server that
 * discards them took 0.8–1.3 CPU s through fetch (undici) against 0.26 s through node:http, client and server
 * in one process (2026-11-26). fetch's share would be taken from whichever server has less CPU to spare.
 */
export class LoadClient {
  private readonly agent: http.Agent;

  constructor(maxSockets: number) {
    this.agent = new http.Agent({ keepAlive: true, maxSockets });
  }

  /** POSTs `body` and reads the whole answer; rejects on a network error or when `timeoutMs` passes. A request
   * sent on a kept-alive socket that the server closed meanwhile (it fails with EPIPE or ECONNRESET before any
   * answer) is sent once more on a new socket, as Node's documentation advises: the server never saw it. */
  post(
    url: string,
    headers: Record<string, string>,
    body: Uint8Array,
    timeoutMs: number,
    retried = false,
  ): Promise<{ status: number; text: string }> {
    return new Promise((resolve, reject) => {
      let answered = false;
      const req = http.request(
        url,
        {
          method: 'POST',
          agent: this.agent,
          headers: { ...headers, 'content-length': String(body.byteLength) },
          timeout: timeoutMs,
        },
        (res) => {
          answered = true;
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () =>
            resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString() }),
          );
          res.on('error', reject);
        },
      );
      req.on('timeout', () => req.destroy(new Error(`POST ${url}: no answer within ${timeoutMs} ms`)));
      req.on('error', (err: NodeJS.ErrnoException) => {
        const stale = req.reusedSocket && !answered && (err.code === 'EPIPE' || err.code === 'ECONNRESET');
        if (stale && !retried) resolve(this.post(url, headers, body, timeoutMs, true));
        else reject(err);
      });
      req.end(body);
    });
  }

  close(): void {
    this.agent.destroy();
  }
}

/** CPU seconds a process has used so far (user + system, from /proc/<pid>/stat), or NaN once it is gone. */
export function readProcCpuSeconds(pid: number): number {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return Number.NaN;
  }
  // Fields after the command name, which may itself hold spaces and parentheses: utime and stime are 14 and 15.
  const fields = text.slice(text.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS;
}

/** CPU seconds used so far by every live process whose command name (/proc/<pid>/comm) is one of `names`. */
export function readCommandsCpuSeconds(names: readonly string[]): number {
  let sum = 0;
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    let comm: string;
    try {
      comm = readFileSync(`/proc/${entry}/comm`, 'utf8').trim();
    } catch {
      continue; // gone between the listing and the read
    }
    if (names.includes(comm)) {
      const s = readProcCpuSeconds(Number(entry));
      if (Number.isFinite(s)) sum += s;
    }
  }
  return sum;
}

/** CPU seconds the whole machine has spent busy so far (every state of /proc/stat's `cpu` line but idle and iowait). */
export function readMachineBusySeconds(): number {
  const line = readFileSync('/proc/stat', 'utf8').split('\n', 1)[0]!;
  const ticks = line.trim().split(/\s+/).slice(1, 9).map(Number);
  const busy = ticks.reduce((a, b) => a + b, 0) - ticks[3]! - ticks[4]!;
  return busy / CLOCK_TICKS;
}

/** USER_HZ: 100 on every Linux architecture Node runs on (it is part of the kernel's ABI for /proc). */
const CLOCK_TICKS = 100;

export interface RssSampler {
  /** Stops sampling; `peakMb` is the larger of the sampled maximum and the kernel's VmHWM. */
  stop(): { peakMb: number; sampledPeakMb: number; hwmMb: number; samples: number };
}

/** Samples a process's VmRSS and VmHWM every `intervalMs`. VmHWM catches peaks between two samples. */
export function sampleRss(pid: number, intervalMs = 100): RssSampler {
  let sampledPeak = 0;
  let hwm = 0;
  let samples = 0;
  const take = () => {
    const m = readProcMemory(pid);
    if (!m) return;
    samples++;
    sampledPeak = Math.max(sampledPeak, m.rssMb);
    hwm = Math.max(hwm, m.hwmMb);
  };
  take();
  const timer = setInterval(take, intervalMs);
  return {
    stop() {
      take();
      clearInterval(timer);
      return { peakMb: Math.max(sampledPeak, hwm), sampledPeakMb: sampledPeak, hwmMb: hwm, samples };
    },
  };
}

// ---------------------------------------------------------------------------------------------------------
// Child processes

const GNU_TIME = '/usr/bin/time';
export const hasGnuTime = existsSync(GNU_TIME);

export interface RunResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  wallMs: number;
  /** Peak RSS in MB: GNU time's %M when `measureRss` and it exists, else VmHWM polled every 10 ms. */
  peakRssMb?: number;
  stdout: string;
  stderr: string;
}

export interface RunOptions {
  timeoutMs: number;
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  measureRss?: boolean;
}

/**
 * Runs one command to completion, killing it (by its PID) after `timeoutMs`. Wall time is taken around the
 * spawn, so it includes process start, as the reference CLI figures in ANCHORS do.
 */
export async function run(command: string, args: string[], opts: RunOptions): Promise<RunResult> {
  let rssFile: string | undefined;
  let file = command;
  let argv = args;
  if (opts.measureRss && hasGnuTime) {
    rssFile = path.join(
      os.tmpdir(),
      `teleread-bench-rss-${process.pid}-${Math.random().toString(36).slice(2)}`,
    );
    file = GNU_TIME;
    argv = ['-f', '%M', '-o', rssFile, command, ...args];
  }
  const started = process.hrtime.bigint();
  const child = spawn(file, argv, {
    env: opts.env ?? process.env,
    cwd: opts.cwd,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const out: Buffer[] = [];
  const err: Buffer[] = [];
  // Output is kept only up to 1 MB each: a chatty tool must not grow the benchmark's own memory.
  let outBytes = 0;
  let errBytes = 0;
  child.stdout.on('data', (c: Buffer) => {
    if (outBytes < 1e6) out.push(c);
    outBytes += c.length;
  });
  child.stderr.on('data', (c: Buffer) => {
    if (errBytes < 1e6) err.push(c);
    errBytes += c.length;
  });
  let polledHwm = 0;
  const poll =
    opts.measureRss && !rssFile && child.pid !== undefined
      ? setInterval(() => {
          const m = readProcMemory(child.pid!);
          if (m) polledHwm = Math.max(polledHwm, m.hwmMb);
        }, 10)
      : undefined;
  const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs);
  const { code, signal } = await new Promise<{ code: number | null; signal: NodeJS.Signals | null }>(
    (resolve, reject) => {
      child.on('error', reject);
      child.on('close', (c, s) => resolve({ code: c, signal: s }));
    },
  ).finally(() => {
    clearTimeout(timer);
    if (poll) clearInterval(poll);
  });
  const wallMs = msSince(started);
  let peakRssMb: number | undefined;
  if (rssFile) {
    const text = await readFile(rssFile, 'utf8').catch(() => '');
    await rm(rssFile, { force: true });
    // GNU time prints "Command exited with non-zero status N" before the figure when the command failed.
    const kb = Number(text.trim().split('\n').pop());
    if (Number.isFinite(kb) && kb > 0) peakRssMb = (kb * 1024) / 1e6;
  } else if (opts.measureRss && polledHwm > 0) {
    peakRssMb = polledHwm;
  }
  return {
    code,
    signal,
    wallMs,
    ...(peakRssMb !== undefined ? { peakRssMb } : {}),
    stdout: Buffer.concat(out).toString('utf8'),
    stderr: Buffer.concat(err).toString('utf8'),
  };
}

/** Throws with the tool's own words when a command did not exit 0. */
export function check(result: RunResult, what: string): RunResult {
  if (result.code !== 0) {
    const why = result.signal ? `killed by ${result.signal} (timeout?)` : `exit ${result.code}`;
    throw new Error(`${what}: ${why}\n${(result.stderr || result.stdout).slice(0, 2000)}`);
  }
  return result;
}

/** A TCP port nobody listens on right now on the loopback interface. */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() =>
        typeof address === 'object' && address ? resolve(address.port) : reject(new Error('no port')),
      );
    });
  });
}

/** Polls `probe` every 100 ms until it returns true or the deadline passes. */
export async function waitFor(
  what: string,
  deadline: Deadline,
  probe: () => Promise<boolean>,
): Promise<void> {
  while (!deadline.expired) {
    if (await probe().catch(() => false)) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`timed out after ${deadline.ms} ms waiting for ${what}`);
}

export interface Service {
  pid: number;
  /** Throws with the last output when the process has exited. */
  assertRunning(): void;
  /** The last 64 kB of its stdout and stderr. */
  output(): string;
  /** SIGTERM, then SIGKILL after 10 s; nothing once it has exited (so a reused PID is never signalled). */
  stop(): Promise<void>;
}

interface AsideHelper {
  send: (request: object) => void;
  pending: Map<number, { resolve: (r: RunResult) => void; reject: (e: Error) => void }>;
  next: number;
}

/** The process that runs commands for runAside, started on first use and stopped at clean-up. */
let aside: AsideHelper | undefined;

/**
 * `run`, from a helper process (bench/spawn-helper.ts) rather than from this one: for the reference tools of a
 * benchmark that times Teleread in this process, whose next renders would otherwise pay for every fork (see the
 * helper). The wall time is taken in the helper, around the spawn, as `run` takes it.
 */
export function runAside(command: string, args: string[], opts: RunOptions): Promise<RunResult> {
  const helper = startAside();
  const id = helper.next++;
  return new Promise<RunResult>((resolve, reject) => {
    helper.pending.set(id, { resolve, reject });
    helper.send({ id, command, args, opts });
  });
}

/** Starts runAside's helper if it is not running: call it before the warm-up passes, since starting it is a fork
 * of this process too. */
export function startAside(): AsideHelper {
  if (!aside) {
    const child = spawn(
      process.execPath,
      [...process.execArgv, path.join(repoRoot, 'bench', 'spawn-helper.ts')],
      {
        stdio: ['pipe', 'pipe', 'inherit'],
      },
    );
    const pending: AsideHelper['pending'] = new Map();
    const failAll = (why: string) => {
      for (const p of pending.values()) p.reject(new Error(`bench spawn helper: ${why}`));
      pending.clear();
      aside = undefined;
    };
    child.on('exit', (code, signal) => failAll(`exited (${signal ?? code})`));
    child.on('error', (err) => failAll(err.message));
    let buffered = '';
    child.stdout!.on('data', (c: Buffer) => {
      buffered += c.toString('utf8');
      for (let nl = buffered.indexOf('\n'); nl >= 0; nl = buffered.indexOf('\n')) {
        const answer = JSON.parse(buffered.slice(0, nl)) as {
          id: number;
          result?: RunResult;
          error?: string;
        };
        buffered = buffered.slice(nl + 1);
        const p = pending.get(answer.id);
        pending.delete(answer.id);
        if (answer.result) p?.resolve(answer.result);
        else p?.reject(new Error(answer.error ?? 'no answer'));
      }
    });
    const helper: AsideHelper = {
      send: (r: object) => child.stdin!.write(`${JSON.stringify(r)}\n`),
      pending,
      next: 0,
    };
    aside = helper;
    onCleanup(`stop the spawn helper (pid ${child.pid})`, async () => {
      child.stdin!.end();
      if (child.pid !== undefined && child.exitCode === null) await stopProcess(child.pid, 5_000);
    });
  }
  return aside;
}

/** Starts a long-running process (a server); it is stopped, by its PID, at clean-up. */
export function spawnService(
  command: string,
  args: string[],
  env: NodeJS.ProcessEnv,
  label: string,
): Service {
  const child = spawn(command, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
  if (child.pid === undefined) throw new Error(`${label}: could not start ${command}`);
  const pid = child.pid;
  let text = '';
  const keep = (c: Buffer) => {
    text = (text + c.toString('utf8')).slice(-65_536);
  };
  child.stdout.on('data', keep);
  child.stderr.on('data', keep);
  let exited: string | undefined;
  child.on('exit', (code, signal) => {
    exited = signal ? `killed by ${signal}` : `exit ${code}`;
  });
  const stop = async () => {
    if (!exited) await stopProcess(pid);
  };
  onCleanup(`stop ${label} (pid ${pid})`, stop);
  return {
    stop,
    pid,
    assertRunning() {
      if (exited) throw new Error(`${label} stopped (${exited}):\n${text.slice(-2000)}`);
    },
    output: () => text,
  };
}

/** Sends SIGTERM to a process we started, then SIGKILL if it is still there after `graceMs`. */
export async function stopProcess(pid: number, graceMs = 10_000): Promise<void> {
  const alive = () => {
    try {
      process.kill(pid, 0);
      return existsSync(`/proc/${pid}`) && !readFileSync(`/proc/${pid}/stat`, 'utf8').includes(') Z ');
    } catch {
      return false;
    }
  };
  if (!alive()) return;
  process.kill(pid, 'SIGTERM');
  const deadline = new Deadline(graceMs);
  while (alive() && !deadline.expired) await new Promise((r) => setTimeout(r, 50));
  if (alive()) process.kill(pid, 'SIGKILL');
}

// ---------------------------------------------------------------------------------------------------------
// Clean-up and output

const cleanups: Array<{ what: string; fn: () => Promise<void> }> = [];

/** Registers clean-up that runs (last registered first) when the benchmark ends, fails or is interrupted. */
export function onCleanup(what: string, fn: () => Promise<void>): void {
  cleanups.push({ what, fn });
}

async function runCleanups(): Promise<void> {
  while (cleanups.length > 0) {
    const { what, fn } = cleanups.pop()!;
    try {
      await fn();
    } catch (err) {
      console.error(`bench: clean-up "${what}" failed: ${err instanceof Error ? err.message : String(err)}`);
    }
  }
}

export async function makeTempDir(label: string): Promise<string> {
  const dir = await mkdtemp(path.join(os.tmpdir(), `teleread-bench-${label}-`));
  // BENCH_KEEP=1 leaves the inputs and outputs for inspection (never set it for the upload bench: 2 GB).
  if (process.env.BENCH_KEEP === '1') console.error(`bench: keeping ${dir}`);
  else onCleanup(`remove ${dir}`, () => rm(dir, { recursive: true, force: true }));
  return dir;
}

/**
 * Entry point of one benchmark file: runs `main`, prints its rows, appends them as JSON to BENCH_OUT (set by
 * run.sh) and always runs the clean-up, also on SIGINT/SIGTERM (run.sh's `timeout` sends SIGTERM).
 */
export function runBench(name: string, main: () => Promise<BenchRow[]>): void {
  let stopping = false;
  const onSignal = (signal: NodeJS.Signals) => {
    if (stopping) return;
    stopping = true;
    console.error(`bench ${name}: ${signal}, cleaning up`);
    void runCleanups().finally(() => process.exit(signal === 'SIGINT' ? 130 : 143));
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  const started = Date.now();
  main()
    .then(async (rows) => {
      await runCleanups();
      console.log(`\n${name}: ${((Date.now() - started) / 1000).toFixed(1)} s\n`);
      console.log(markdownTable(rows));
      const out = process.env.BENCH_OUT;
      if (out)
        await writeFile(out, JSON.stringify({ bench: name, seconds: (Date.now() - started) / 1000, rows }));
      const failed = rows.filter((r) => r.budget && !r.budget.pass);
      process.exit(failed.length > 0 ? 3 : 0);
    })
    .catch(async (err: unknown) => {
      // Interrupted: the signal handler is already cleaning up and exits with the signal's status.
      if (stopping) return;
      console.error(
        `bench ${name} failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`,
      );
      await runCleanups();
      process.exit(1);
    });
}

function fmt(n: number): string {
  if (!Number.isFinite(n)) return '–';
  const abs = Math.abs(n);
  const digits = abs >= 100 ? 0 : abs >= 10 ? 1 : abs >= 1 ? 2 : 3;
  return n.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits });
}

function fmtStats(s: Stats): string {
  if (s.n <= 1 || s.min === s.max) return fmt(s.median);
  return `${fmt(s.median)} (${fmt(s.min)}–${fmt(s.max)})`;
}

export function markdownTable(rows: readonly BenchRow[]): string {
  const lines = [
    '| bench | measure | unit | Teleread | reference | ratio T/ref | better | check | note |',
    '|---|---|---|---|---|---|---|---|---|',
  ];
  for (const r of rows) {
    const ref = r.reference ? `${fmtStats(r.reference.stats)} ${r.reference.name}` : '–';
    const ratio =
      r.ratio === undefined
        ? '–'
        : `${fmt(r.ratio.median)}×${r.ratio.n > 1 ? ` (${fmt(r.ratio.min)}–${fmt(r.ratio.max)})` : ''}`;
    const budget = [
      r.budget ? `${r.budget.pass ? 'PASS' : 'FAIL'} (limit ${fmt(r.budget.limit)})` : '',
      r.goal ? `goal ${r.goal.text}: ${r.goal.met ? 'met' : 'NOT met'}` : '',
    ]
      .filter(Boolean)
      .join('; ');
    lines.push(
      `| ${r.bench} | ${r.measure} | ${r.unit} | ${fmtStats(r.teleread)} | ${ref} | ${ratio} | ${r.better} | ${budget} | ${r.note ?? ''} |`,
    );
  }
  return lines.join('\n');
}
