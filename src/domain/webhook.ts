import { createHmac, timingSafeEqual } from 'node:crypto';
import { AppError } from '../errors.js';

/**
 * Webhook signatures. The MAC covers `<timestamp>.<raw body>`, so a captured request cannot be replayed later
 * with a fresh timestamp: the receiver checks the MAC, then that the timestamp is recent, then (for exactly
 * once) the delivery id it has already seen.
 */
export const WEBHOOK_HEADERS = {
  signature: 'x-teleread-signature',
  timestamp: 'x-teleread-timestamp',
  delivery: 'x-teleread-delivery',
  event: 'x-teleread-event',
} as const;

/** How old a timestamp a receiver should accept (the default of `verifyWebhookSignature`). */
export const WEBHOOK_TOLERANCE_SECONDS = 300;

/** `sha256=<hex HMAC-SHA256 of "<timestamp>.<body>" under the site's secret>`. */
export function signWebhook(secret: string, timestamp: number, body: string): string {
  const mac = createHmac('sha256', secret).update(`${timestamp}.`, 'utf8').update(body, 'utf8').digest('hex');
  return `sha256=${mac}`;
}

/** The receiver's side: true when the signature matches and the timestamp is within the tolerance. */
export function verifyWebhookSignature(input: {
  secret: string;
  body: string;
  signature: string | undefined | null;
  timestamp: string | undefined | null;
  nowSeconds: number;
  toleranceSeconds?: number;
}): boolean {
  const ts = Number(input.timestamp);
  if (!input.timestamp || !/^\d{1,12}$/.test(input.timestamp) || !Number.isSafeInteger(ts)) return false;
  if (Math.abs(input.nowSeconds - ts) > (input.toleranceSeconds ?? WEBHOOK_TOLERANCE_SECONDS)) return false;
  const given = Buffer.from(input.signature ?? '', 'utf8');
  const expected = Buffer.from(signWebhook(input.secret, ts, input.body), 'utf8');
  return given.length === expected.length && timingSafeEqual(given, expected);
}

/** Secrets shorter than this are refused: the MAC is only as strong as the secret. */
export const WEBHOOK_SECRET_MIN_LENGTH = 16;

/**
 * A webhook target: http or https only (no file:, data: or other schemes a fetch might follow), no user
 * information in the URL (the secret is the credential), no fragment.
 */
export function checkWebhookUrl(input: string): string {
  let url: URL;
  try {
    url = new URL(input.trim());
  } catch {
    throw new AppError('VALIDATION_FAILED', `webhook URL "${input}" is not a valid URL`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new AppError('VALIDATION_FAILED', `webhook URL must be http or https, not ${url.protocol}`);
  }
  if (url.username || url.password) {
    throw new AppError('VALIDATION_FAILED', 'webhook URL must not carry a user name or password');
  }
  if (url.hash) throw new AppError('VALIDATION_FAILED', 'webhook URL must not have a #fragment');
  if (url.href.length > 2000) throw new AppError('VALIDATION_FAILED', 'webhook URL is too long');
  return url.href;
}

export function checkWebhookSecret(secret: string): string {
  if (secret.length < WEBHOOK_SECRET_MIN_LENGTH || secret.length > 512 || /\s/.test(secret)) {
    throw new AppError(
      'VALIDATION_FAILED',
      `webhook secret must be ${WEBHOOK_SECRET_MIN_LENGTH}-512 characters without spaces`,
    );
  }
  return secret;
}

/** The event bodies a site receives. Ids and links only: the clinic fetches the report with its own key. */
export type WebhookEvent = 'report.signed' | 'report.amended';

export interface WebhookPayload {
  /** The delivery id, also in X-Teleread-Delivery: receivers deduplicate on it (retries and resends repeat it). */
  id: string;
  event: WebhookEvent;
  caseId: string;
  reportId: string;
  siteId: string;
  signedAt: string;
  critical: boolean;
  contentHash: string;
  /** The addendum that caused a `report.amended` event. */
  addendum?: { seq: number; signedAt: string; contentHash: string } | undefined;
  reportUrl: string;
  fhirUrl: string;
}

/** The exact body sent (and stored, so every retry and resend sends the same bytes under a fresh timestamp). */
export function webhookBody(payload: WebhookPayload): string {
  return JSON.stringify(payload);
}

/**
 * The wait before retry `n + 1` after attempt `n` failed: BullMQ's exponential backoff, `base * 2^(n-1)`.
 * Kept here so the delivery row can say when the next attempt is due.
 */
export function webhookRetryDelayMs(failedAttempt: number, baseMs: number): number {
  return Math.round(2 ** Math.max(0, failedAttempt - 1) * baseMs);
}
