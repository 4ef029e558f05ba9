import type { Context } from '../context.js';
import type { Logger } from '../log.js';

/** What a handler gets: the process context plus a child logger bound to this job. */
export interface JobContext {
  ctx: Context;
  log: Logger;
  requestId?: string | undefined;
}

/** Expected outcomes are return values, not exceptions (a redelivered job that finds its work done is SKIPPED). */
export type JobOutcome = 'SUCCESS' | 'SKIPPED';
