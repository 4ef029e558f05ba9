/**
 * Runs the reference tools' processes for a benchmark that times Teleread in its own process (bench/lib.ts,
 * runAside). A process that forks pays for it afterwards: each fork leaves its whole heap to be faulted back in
 * page by page as it is written. Between passes of ten dcmj2pnm runs, Teleread's warm thumbnail of a CT slice
 * took 11.5 ms against 5.7 ms without them, with about 4,000 minor page faults per pass of ten against under
 * 1,400; ten runs of `true` did the same. A worker never forks, so the tools are started from here.
 *
 * Protocol: one JSON request a line on stdin, `{ id, command, args, opts }` (opts as for `run`), one JSON answer a
 * line on stdout, `{ id, result }` or `{ id, error }`. Ends when stdin closes.
 */
import { createInterface } from 'node:readline';
import { type RunOptions, run } from './lib.js';

interface Request {
  id: number;
  command: string;
  args: string[];
  opts: RunOptions;
}

const lines = createInterface({ input: process.stdin });
for await (const line of lines) {
  if (!line.trim()) continue;
  const request = JSON.parse(line) as Request;
  try {
    const result = await run(request.command, request.args, request.opts);
    process.stdout.write(`${JSON.stringify({ id: request.id, result })}\n`);
  } catch (err) {
    process.stdout.write(
      `${JSON.stringify({ id: request.id, error: err instanceof Error ? err.message : String(err) })}\n`,
    );
  }
}
