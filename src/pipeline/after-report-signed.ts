import type { Context } from '../context.js';
import type { DeliveryRef } from '../db/webhook-queries.js';
import type { WebhookEvent } from '../domain/webhook.js';
import { enqueueWebhook } from './queues.js';
import { cancelSlaJobs } from './sla-jobs.js';

export interface ReportEvent {
  event: WebhookEvent;
  caseId: string;
  /** Webhook deliveries the signing transaction recorded (none when the site has no webhook). */
  deliveries: readonly DeliveryRef[];
  requestId?: string | undefined;
}

/**
 * What follows a signature once its transaction has committed: the case's pending SLA escalations are cancelled
 * (a signed report stops the clock) and the clinic's webhook is queued. Neither may fail the request that
 * signed: the report is signed whatever Redis says. A lost cancellation is harmless (an escalation job re-reads
 * the case, finds `reported_at` and does nothing) and a lost webhook job is re-queued by the webhook repair job.
 */
export async function afterReportSigned(
  ctx: Context,
  e: ReportEvent,
  log: { warn(obj: object, msg: string): void } = ctx.log,
): Promise<void> {
  if (e.event === 'report.signed') {
    await cancelSlaJobs(ctx.queues, e.caseId).catch((err: unknown) =>
      log.warn(
        { err, caseId: e.caseId },
        'SLA escalation jobs not cancelled; they will find the case reported',
      ),
    );
  }
  for (const delivery of e.deliveries) {
    await enqueueWebhook(
      ctx.queues,
      delivery,
      { attempts: ctx.config.webhookAttempts, backoffMs: ctx.config.webhookBackoffMs },
      e.requestId,
    ).catch((err: unknown) =>
      log.warn({ err, deliveryId: delivery.id }, 'webhook not queued; the webhook repair job will queue it'),
    );
  }
}
