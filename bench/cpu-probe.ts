/**
 * A fixed piece of single-threaded JavaScript, timed: how fast this machine's cores are right now. The host of a
 * shared VM can slow it without the guest seeing steal time (on 2026-11-26 the same loop took 278 ms at 01:29
 * and 450 ms at 02:53, with nothing else running in the VM). Absolute figures (ECG ms, worklist req/s) move with
 * it; the same-run ratios do not. run.sh times it before the first benchmark and report.ts after the last.
 */
import { pathToFileURL } from 'node:url';

/** The median of three runs of 2×10⁸ additions, in milliseconds. */
export function cpuProbeMs(): number {
  const times: number[] = [];
  for (let run = 0; run < 3; run++) {
    const started = performance.now();
    let x = 0;
    for (let i = 0; i < 2e8; i++) x += i % 7;
    times.push(performance.now() - started);
    // Keeps the loop from being optimised away.
    if (x < 0) throw new Error('unreachable');
  }
  return times.sort((a, b) => a - b)[1]!;
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) console.log(cpuProbeMs().toFixed(0));
