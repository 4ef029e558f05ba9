import { performance } from 'node:perf_hooks';
import {
  bumpWebhookRound,
  getOverdueWebhookDeliveries,
  getWebhookDeliveryForSending,
  recordWebhookAttempt,
} from '../../db/webhook-queries.js';
import { checkWebhookUrl, signWebhook, WEBHOOK_HEADERS, webhookRetryDelayMs } from '../../domain/webhook.js';
import { AppError } from '../../errors.js';
import type { JobContext, JobOutcome } from '../job-context.js';
import { enqueueWebhook, type JobOf } from '../queues.js';

/** Most bytes of a refusing receiver's answer kept with the attempt, for ops to read. */
const EXCERPT_BYTES = 300;
/** Most overdue deliveries one repair run looks at. */
const REPAIR_BATCH = 500;

interface SendResult {
  statusCode: number | null;
  durationMs: number;
  error: string | null;
  /** Retrying cannot help (no target configured, or a target that is not http(s)). */
  permanent: boolean;
}

/**
 * webhook: POSTs a signed report event to the site's webhook URL and records the attempt, whatever its outcome.
 * A 2xx answer delivers it. Anything else (another status, a redirect, which is not followed so the signed body
 * and its secret never reach a second host, a timeout, a refused connection) is retried by BullMQ with
 * exponential backoff until WEBHOOK_ATTEMPTS tries have failed; then the delivery is marked failed for ops, who
 * can resend it. The URL and secret are read from the site at each attempt, so a corrected URL is used at once.
 */
export async function handleWebhook(jc: JobContext, job: JobOf<'webhook'>): Promise<JobOutcome> {
  if ('task' in job) return repairWebhookDeliveries(jc);
  const { ctx, log } = jc;
  const d = await getWebhookDeliveryForSending(ctx.db, job.deliveryId);
  if (!d) {
    throw new AppError('NOT_FOUND', `webhook delivery ${job.deliveryId} does not exist`, {
      retryable: false,
    });
  }
  // Delivered already, failed and not resent, or superseded by a resend's newer round.
  if (d.status !== 'pending' || d.round !== job.round) return 'SKIPPED';

  const attempt = d.round_attempts + 1;
  const startedAt = new Date();
  let url = d.webhook_url ?? '';
  let result: SendResult;
  if (!d.webhook_url || !d.webhook_secret) {
    result = {
      statusCode: null,
      durationMs: 0,
      error: 'the site has no webhook URL any more',
      permanent: true,
    };
  } else {
    try {
      url = checkWebhookUrl(d.webhook_url);
      result = await send(url, d, d.webhook_secret, ctx.config.webhookTimeoutMs);
    } catch (err) {
      result = { statusCode: null, durationMs: 0, error: (err as Error).message, permanent: true };
    }
  }
  const delivered = result.statusCode !== null && result.statusCode >= 200 && result.statusCode < 300;
  const giveUp = !delivered && (result.permanent || attempt >= ctx.config.webhookAttempts);
  const nextRetryAt =
    delivered || giveUp
      ? null
      : new Date(Date.now() + webhookRetryDelayMs(attempt, ctx.config.webhookBackoffMs));
  const recorded = await recordWebhookAttempt(ctx.db, {
    deliveryId: d.id,
    round: d.round,
    url,
    startedAt,
    durationMs: result.durationMs,
    statusCode: result.statusCode,
    error: result.error,
    outcome: delivered ? 'delivered' : giveUp ? 'failed' : 'retry',
    nextRetryAt,
  });
  // A resend opened a new round while this attempt was in flight: the new round's job carries on.
  if (recorded === null) return 'SKIPPED';
  const host = safeHost(url);
  if (delivered) {
    log.info({ deliveryId: d.id, host, status: result.statusCode, attempt: recorded }, 'webhook delivered');
    return 'SUCCESS';
  }
  if (giveUp) {
    throw new AppError(
      'INTERNAL',
      `webhook delivery ${d.id} to ${host} failed after ${attempt} attempt(s) in this round: ${result.error}`,
      { retryable: false },
    );
  }
  throw new Error(`webhook delivery ${d.id} to ${host}, attempt ${attempt}: ${result.error}`);
}

async function send(
  url: string,
  d: { id: string; event: string; body: string },
  secret: string,
  timeoutMs: number,
): Promise<SendResult> {
  const timestamp = Math.floor(Date.now() / 1000);
  const start = performance.now();
  const elapsed = () => Math.round(performance.now() - start);
  try {
    const res = await fetch(url, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        'user-agent': 'teleread-webhook/1',
        [WEBHOOK_HEADERS.event]: d.event,
        [WEBHOOK_HEADERS.delivery]: d.id,
        [WEBHOOK_HEADERS.timestamp]: String(timestamp),
        [WEBHOOK_HEADERS.signature]: signWebhook(secret, timestamp, d.body),
      },
      body: d.body,
      redirect: 'manual',
      signal: AbortSignal.timeout(timeoutMs),
    });
    const ok = res.status >= 200 && res.status < 300;
    // A 2xx body is not read: cancelling it frees the connection at once.
    if (ok) await res.body?.cancel().catch(() => undefined);
    const excerpt = ok ? '' : await readExcerpt(res);
    const redirect = res.status >= 300 && res.status < 400 ? ' (redirects are not followed)' : '';
    return {
      statusCode: res.status,
      durationMs: elapsed(),
      error: ok ? null : `HTTP ${res.status}${redirect}${excerpt ? `: ${excerpt}` : ''}`,
      permanent: false,
    };
  } catch (err) {
    return {
      statusCode: null,
      durationMs: elapsed(),
      error: describeFetchError(err, timeoutMs),
      permanent: false,
    };
  }
}

async function readExcerpt(res: Response): Promise<string> {
  if (!res.body) return '';
  const reader = res.body.getReader();
  const chunks: Uint8Array[] = [];
  let n = 0;
  try {
    while (n < EXCERPT_BYTES) {
      const { done, value } = await reader.read();
      if (done) break;
      chunks.push(value);
      n += value.length;
    }
  } catch {
    // A body cut short: the status is what counts.
  } finally {
    await reader.cancel().catch(() => undefined);
  }
  return new TextDecoder()
    .decode(Buffer.concat(chunks).subarray(0, EXCERPT_BYTES))
    .replace(/\s+/g, ' ')
    .trim();
}

function describeFetchError(err: unknown, timeoutMs: number): string {
  const e = err as { name?: string; message?: string; cause?: { code?: string; message?: string } };
  if (e.name === 'TimeoutError' || e.name === 'AbortError') return `no answer within ${timeoutMs} ms`;
  const cause = e.cause?.code ?? e.cause?.message;
  return `${e.message ?? String(err)}${cause ? ` (${cause})` : ''}`;
}

/** Logs name the receiving host, never the full URL: a query string may carry the receiver's own token. */
function safeHost(url: string): string {
  try {
    return new URL(url).host;
  } catch {
    return 'invalid URL';
  }
}

/**
 * Re-queues deliveries the queue lost: a job never added (the process died between the signing commit and the
 * enqueue) or ended by BullMQ while the row still says pending (a run that failed before it could record its
 * attempt). The row is the truth; runs on a schedule in the webhook queue.
 */
async function repairWebhookDeliveries({ ctx, log }: JobContext): Promise<JobOutcome> {
  const overdue = await getOverdueWebhookDeliveries(ctx.db, ctx.config.stuckAfterSeconds, REPAIR_BATCH);
  let requeued = 0;
  for (const d of overdue) {
    const job = await ctx.queues.webhook.getJob(`webhook-${d.id}-${d.round}`);
    const state = job ? await job.getState() : 'missing';
    if (state !== 'missing' && state !== 'failed' && state !== 'completed' && state !== 'unknown') continue;
    // A job that exists but has ended keeps its id; a new round gets a new one.
    const ref = state === 'missing' ? d : await bumpWebhookRound(ctx.db, d);
    if (!ref) continue;
    await enqueueWebhook(ctx.queues, ref, {
      attempts: ctx.config.webhookAttempts,
      backoffMs: ctx.config.webhookBackoffMs,
    });
    requeued++;
  }
  if (requeued > 0) log.warn({ requeued }, 'lost webhook deliveries re-queued');
  return requeued > 0 ? 'SUCCESS' : 'SKIPPED';
}
