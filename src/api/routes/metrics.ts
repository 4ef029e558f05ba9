/**
 * `GET /metrics`: Prometheus text format, for ops and admin keys only (a scraper sends the key as a Bearer
 * token: `authorization: { credentials: … }` in its scrape config). Not open on loopback: behind a reverse proxy
 * on the same host every caller would look local.
 *
 * Each API process has its own registry (process metrics, tus byte and finish counters). Counts made by
 * workers, which have no HTTP port, are kept in Redis and read at scrape time: the removals of expired partial
 * uploads (`teleread_upload_sessions_expired_total{kind="tus"|"multipart"|"batch"}`).
 */
import { Counter, collectDefaultMetrics, Gauge, Registry } from 'prom-client';
import type { Context } from '../../context.js';
import { EXPIRED_KINDS, readExpiredTotals } from '../../uploads/sweep-uploads.js';
import { requireRole } from '../auth.js';
import type { App } from '../build-app.js';

export function createMetricsRegistry(ctx: Context): Registry {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  new Counter({
    name: 'teleread_upload_sessions_expired_total',
    help: 'Partial uploads and idle upload batches removed by the expiry sweep',
    labelNames: ['kind'],
    registers: [registry],
    async collect() {
      const totals = await readExpiredTotals(ctx);
      this.reset();
      for (const kind of EXPIRED_KINDS) this.inc({ kind }, totals[kind]);
    },
  });
  new Gauge({
    name: 'teleread_upload_sessions_open',
    help: 'Resumable uploads started and neither finished nor ended',
    labelNames: ['protocol'],
    registers: [registry],
    async collect() {
      const rows = await ctx.db
        .selectFrom('upload_sessions')
        .select(['protocol', (eb) => eb.fn.countAll<string>().as('n')])
        .where('completed_at', 'is', null)
        .where('ended_at', 'is', null)
        .groupBy('protocol')
        .execute();
      this.reset();
      for (const protocol of ['tus', 'multipart']) {
        this.set({ protocol }, Number(rows.find((r) => r.protocol === protocol)?.n ?? 0));
      }
    },
  });
  return registry;
}

export function registerMetricsRoutes(app: App, ctx: Context, registry: Registry): void {
  app.get(
    '/metrics',
    {
      onRequest: requireRole(ctx.db, 'ops', 'admin'),
      schema: { summary: 'Prometheus metrics, text format (ops, admin)' },
    },
    async (_request, reply) => {
      const text = await registry.metrics();
      return reply.header('content-type', registry.contentType).send(text);
    },
  );
}
