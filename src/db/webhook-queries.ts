import { randomUUID } from 'node:crypto';
import { sql } from 'kysely';
import { type WebhookPayload, webhookBody } from '../domain/webhook.js';
import { AppError } from '../errors.js';
import type { Db } from './database.js';
import type { WebhookDeliveryStatus } from './schema.js';

/** What the webhook queue needs to (re)send a delivery: BullMQ job ids are `webhook-<id>-<round>`. */
export interface DeliveryRef {
  id: string;
  round: number;
}

/**
 * Records a webhook to the case's site, in the caller's transaction (the one that signs), so a signed report and
 * its announcement commit together; the job is queued after the commit. Returns null when the site has no
 * webhook.
 */
export async function createWebhookDelivery(
  trx: Db,
  input: {
    siteId: string;
    url: string | null;
    requestId: string | null;
    payload: Omit<WebhookPayload, 'id'>;
  },
): Promise<DeliveryRef | null> {
  if (!input.url) return null;
  const id = randomUUID();
  await trx
    .insertInto('webhook_deliveries')
    .values({
      id,
      site_id: input.siteId,
      case_id: input.payload.caseId,
      report_id: input.payload.reportId,
      event: input.payload.event,
      body: webhookBody({ id, ...input.payload }),
      url: input.url,
      request_id: input.requestId,
    })
    .execute();
  return { id, round: 0 };
}

/** A delivery and its site's current target, as the webhook handler sends it. */
export async function getWebhookDeliveryForSending(db: Db, id: string) {
  return db
    .selectFrom('webhook_deliveries as d')
    .innerJoin('sites as s', 's.id', 'd.site_id')
    .select([
      'd.id',
      'd.event',
      'd.body',
      'd.status',
      'd.round',
      'd.round_attempts',
      'd.case_id',
      's.webhook_url',
      's.webhook_secret',
    ])
    .where('d.id', '=', id)
    .executeTakeFirst();
}

export interface AttemptRecord {
  deliveryId: string;
  round: number;
  url: string;
  startedAt: Date;
  durationMs: number;
  statusCode: number | null;
  error: string | null;
  outcome: 'delivered' | 'retry' | 'failed';
  nextRetryAt: Date | null;
}

/**
 * Stamps one attempt on the delivery and appends it to the attempt log, in one transaction. Only a pending
 * delivery of the same round is stamped: a stale job (its round was superseded by a resend) records nothing.
 * Returns the attempt number over the delivery's life, or null when nothing was recorded.
 */
export async function recordWebhookAttempt(db: Db, a: AttemptRecord): Promise<number | null> {
  return db.transaction().execute(async (trx) => {
    const done = a.outcome === 'delivered' ? 'delivered' : a.outcome === 'failed' ? 'failed' : 'pending';
    const row = await trx
      .updateTable('webhook_deliveries')
      .set({
        attempts: sql`attempts + 1`,
        round_attempts: sql`round_attempts + 1`,
        status: done,
        url: a.url,
        last_status_code: a.statusCode,
        last_error: a.error,
        last_duration_ms: a.durationMs,
        last_attempt_at: a.startedAt,
        next_retry_at: a.nextRetryAt,
        delivered_at: a.outcome === 'delivered' ? sql`now()` : sql`delivered_at`,
        failed_at: a.outcome === 'failed' ? sql`now()` : null,
      })
      .where('id', '=', a.deliveryId)
      .where('status', '=', 'pending')
      .where('round', '=', a.round)
      .returning('attempts')
      .executeTakeFirst();
    if (!row) return null;
    await trx
      .insertInto('webhook_attempts')
      .values({
        delivery_id: a.deliveryId,
        attempt: row.attempts,
        round: a.round,
        url: a.url,
        started_at: a.startedAt,
        duration_ms: a.durationMs,
        status_code: a.statusCode,
        error: a.error,
        outcome: a.outcome,
        next_retry_at: a.nextRetryAt,
      })
      .execute();
    return row.attempts;
  });
}

export interface WebhookFilter {
  status?: WebhookDeliveryStatus | undefined;
  siteId?: string | undefined;
  caseId?: string | undefined;
  limit: number;
}

const DELIVERY_COLUMNS = [
  'id',
  'site_id',
  'case_id',
  'report_id',
  'event',
  'url',
  'status',
  'attempts',
  'round',
  'last_status_code',
  'last_error',
  'last_duration_ms',
  'last_attempt_at',
  'next_retry_at',
  'created_at',
  'delivered_at',
  'failed_at',
] as const;

export async function getWebhookDeliveries(db: Db, filter: WebhookFilter) {
  let q = db.selectFrom('webhook_deliveries').select(DELIVERY_COLUMNS);
  if (filter.status) q = q.where('status', '=', filter.status);
  if (filter.siteId) q = q.where('site_id', '=', filter.siteId);
  if (filter.caseId) q = q.where('case_id', '=', filter.caseId);
  return q.orderBy('created_at', 'desc').orderBy('id').limit(filter.limit).execute();
}

export type WebhookDeliverySummary = Awaited<ReturnType<typeof getWebhookDeliveries>>[number];

export async function getWebhookDeliveryWithAttempts(db: Db, id: string) {
  const delivery = await db
    .selectFrom('webhook_deliveries')
    .select(DELIVERY_COLUMNS)
    .where('id', '=', id)
    .executeTakeFirst();
  if (!delivery) return undefined;
  const attempts = await db
    .selectFrom('webhook_attempts')
    .selectAll()
    .where('delivery_id', '=', id)
    .orderBy('attempt')
    .execute();
  return { delivery, attempts };
}

/**
 * Opens a new round for a failed (or delivered, when a clinic lost it) delivery: pending again, a fresh retry
 * budget, a new round number and so a new job id. A pending delivery is refused: it is already on its way.
 */
export async function reopenWebhookDelivery(db: Db, id: string): Promise<DeliveryRef & { caseId: string }> {
  const row = await db
    .updateTable('webhook_deliveries')
    .set({
      status: 'pending',
      round: sql`round + 1`,
      round_attempts: 0,
      next_retry_at: null,
      failed_at: null,
    })
    .where('id', '=', id)
    .where('status', 'in', ['failed', 'delivered'])
    .returning(['id', 'round', 'case_id'])
    .executeTakeFirst();
  if (row) return { id: row.id, round: row.round, caseId: row.case_id };
  const exists = await db
    .selectFrom('webhook_deliveries')
    .select('status')
    .where('id', '=', id)
    .executeTakeFirst();
  throw exists
    ? new AppError('CONFLICT', `webhook delivery ${id} is ${exists.status}; it is being sent already`)
    : new AppError('NOT_FOUND', `no webhook delivery ${id}`);
}

/**
 * Pending deliveries whose job should have run by now: queued more than `graceSeconds` ago and not retried
 * since, or overdue for their retry. The repair job checks each against the queue.
 */
export async function getOverdueWebhookDeliveries(db: Db, graceSeconds: number, limit: number) {
  const cutoff = sql<Date>`now() - make_interval(secs => ${graceSeconds})`;
  return db
    .selectFrom('webhook_deliveries')
    .select(['id', 'round'])
    .where('status', '=', 'pending')
    .where((eb) =>
      eb.or([
        eb.and([
          eb('next_retry_at', 'is', null),
          eb(sql`coalesce(last_attempt_at, created_at)`, '<', cutoff),
        ]),
        eb('next_retry_at', '<', cutoff),
      ]),
    )
    .orderBy('created_at')
    .limit(limit)
    .execute();
}

/** Moves a delivery whose job BullMQ gave up on to a new round, so a new job can carry it. */
export async function bumpWebhookRound(db: Db, ref: DeliveryRef): Promise<DeliveryRef | null> {
  const row = await db
    .updateTable('webhook_deliveries')
    .set({ round: sql`round + 1`, round_attempts: 0 })
    .where('id', '=', ref.id)
    .where('round', '=', ref.round)
    .where('status', '=', 'pending')
    .returning(['id', 'round'])
    .executeTakeFirst();
  return row ?? null;
}
