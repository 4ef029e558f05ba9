import { loadConfig } from '../src/config.js';
import { createContext } from '../src/context.js';
import { QUEUE_NAMES, type QueueName } from '../src/pipeline/queues.js';
import { runWorkers } from '../src/pipeline/run-worker.js';
import { onShutdown } from '../src/shutdown.js';

/** Worker process entry point: `bin/teleread worker [--queues ingest,process,route,maintenance]`. */
export async function startWorkerProcess(queueList?: string): Promise<void> {
  const config = loadConfig();
  const queues = parseQueues(queueList);
  const ctx = await createContext(config);
  const running = await runWorkers(ctx, { queues });
  onShutdown(ctx.log, async () => {
    await running.close();
    await ctx.close();
  });
}

export function parseQueues(list?: string): QueueName[] {
  if (!list) return [...QUEUE_NAMES];
  const names = list
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  const unknown = names.filter((n) => !(QUEUE_NAMES as readonly string[]).includes(n));
  if (unknown.length > 0) {
    throw new Error(`unknown queue(s) ${unknown.join(', ')}; known: ${QUEUE_NAMES.join(', ')}`);
  }
  return names as QueueName[];
}
