import { sql } from 'kysely';
import { Type } from 'typebox';
import type { Context } from '../../context.js';
import { AppError } from '../../errors.js';
import { enqueueIngest, QUEUE_NAMES } from '../../pipeline/queues.js';
import { principalOf, requireRole } from '../auth.js';
import type { App } from '../build-app.js';
import { errorResponses, IdParams } from '../schemas.js';

const Counts = Type.Object({
  waiting: Type.Number(),
  active: Type.Number(),
  completed: Type.Number(),
  failed: Type.Number(),
  delayed: Type.Number(),
});

export function registerOpsRoutes(app: App, ctx: Context): void {
  const opsOnly = requireRole(ctx.db, 'ops', 'admin');

  app.get(
    '/v1/ops/queues',
    {
      onRequest: opsOnly,
      schema: {
        summary: 'Job counts per queue',
        response: { 200: Type.Object({ queues: Type.Record(Type.String(), Counts) }), ...errorResponses },
      },
    },
    async () => {
      const entries = await Promise.all(
        QUEUE_NAMES.map(async (name) => {
          const c = await ctx.queues[name].getJobCounts(
            'waiting',
            'active',
            'completed',
            'failed',
            'delayed',
          );
          return [
            name,
            {
              waiting: c.waiting ?? 0,
              active: c.active ?? 0,
              completed: c.completed ?? 0,
              failed: c.failed ?? 0,
              delayed: c.delayed ?? 0,
            },
          ] as const;
        }),
      );
      return { queues: Object.fromEntries(entries) };
    },
  );

  app.get(
    '/v1/ops/files',
    {
      onRequest: opsOnly,
      schema: {
        summary: 'Failed (or otherwise filtered) files with their reasons',
        querystring: Type.Object({
          status: Type.Union(
            ['received', 'processing', 'processed', 'failed'].map((s) => Type.Literal(s)),
            {
              default: 'failed',
            },
          ),
          limit: Type.Integer({ minimum: 1, maximum: 500, default: 100 }),
        }),
        response: {
          200: Type.Object({
            files: Type.Array(
              Type.Object({
                id: Type.String(),
                name: Type.String(),
                siteId: Type.String(),
                caseId: Type.Union([Type.String(), Type.Null()]),
                status: Type.String(),
                errorCode: Type.Union([Type.String(), Type.Null()]),
                errorMessage: Type.Union([Type.String(), Type.Null()]),
                attempts: Type.Number(),
              }),
            ),
          }),
          ...errorResponses,
        },
      },
    },
    async (request) => {
      const { status, limit } = request.query as { status: 'failed'; limit: number };
      const rows = await ctx.db
        .selectFrom('files')
        .select(['id', 'name', 'site_id', 'case_id', 'status', 'error_code', 'error_message', 'attempts'])
        .where('status', '=', status)
        .orderBy('received_at', 'desc')
        .limit(limit)
        .execute();
      return {
        files: rows.map((f) => ({
          id: f.id,
          name: f.name,
          siteId: f.site_id,
          caseId: f.case_id,
          status: f.status,
          errorCode: f.error_code,
          errorMessage: f.error_message,
          attempts: f.attempts,
        })),
      };
    },
  );

  app.post(
    '/v1/ops/files/:id/retry',
    {
      onRequest: opsOnly,
      schema: {
        summary: 'Retry a failed file from the ingest step',
        params: IdParams,
        response: {
          202: Type.Object({ id: Type.String(), status: Type.String() }),
          ...errorResponses,
          409: errorResponses[400],
        },
      },
    },
    async (request, reply) => {
      const who = principalOf(request);
      const { id } = request.params as { id: string };
      const updated = await ctx.db
        .updateTable('files')
        .set({
          status: 'received',
          error_code: null,
          error_message: null,
          failed_at: null,
          ingested_at: null,
          processed_at: null,
          ingest_job: `ingest-${id}`,
        })
        .where('id', '=', id)
        .where('status', '=', 'failed')
        .returning('id')
        .executeTakeFirst();
      if (!updated) {
        const exists = await ctx.db.selectFrom('files').select('id').where('id', '=', id).executeTakeFirst();
        throw exists
          ? new AppError('CONFLICT', `file ${id} has not failed; only failed files are retried`)
          : new AppError('NOT_FOUND', `no file ${id}`);
      }
      // The failed job keeps its id; remove it so the same job id can be queued again.
      const old = await ctx.queues.ingest.getJob(`ingest-${id}`);
      if (old) await old.remove().catch(() => undefined);
      await ctx.db
        .insertInto('audit_events')
        .values({
          action: 'file.retried',
          actor_key_id: who.keyId,
          actor_role: who.role,
          file_id: id,
          request_id: request.id,
          detail: sql`'{}'::jsonb`,
        })
        .execute();
      await enqueueIngest(ctx.queues, id, request.id);
      return reply.status(202).send({ id, status: 'received' });
    },
  );
}
