import { sql } from 'kysely';
import { Type } from 'typebox';
import type { Context } from '../../context.js';
import type { App } from '../build-app.js';

/** Liveness (the process answers) and readiness (it can reach PostgreSQL, Redis and storage). */
export function registerHealthRoutes(app: App, ctx: Context): void {
  app.get('/healthz', { schema: { hide: true } }, async () => ({ status: 'ok' }));

  app.get(
    '/readyz',
    {
      schema: {
        summary: 'Readiness: PostgreSQL, Redis and object storage answer',
        security: [],
        response: {
          200: Type.Object({ status: Type.String(), checks: Type.Record(Type.String(), Type.String()) }),
          503: Type.Object({ status: Type.String(), checks: Type.Record(Type.String(), Type.String()) }),
        },
      },
    },
    async (_request, reply) => {
      const check = async (fn: () => Promise<unknown>) => {
        try {
          await withTimeout(fn(), 2000);
          return 'ok';
        } catch (err) {
          return err instanceof Error ? err.message : String(err);
        }
      };
      const [postgres, redis, storage] = await Promise.all([
        check(() => sql`SELECT 1`.execute(ctx.db)),
        check(() => ctx.redis.ping()),
        check(() => ctx.storage.head('readyz-probe')),
      ]);
      const checks = { postgres, redis, storage };
      const ok = Object.values(checks).every((v) => v === 'ok');
      return reply.status(ok ? 200 : 503).send({ status: ok ? 'ready' : 'not ready', checks });
    },
  );
}

function withTimeout<T>(p: Promise<T>, ms: number): Promise<T> {
  return Promise.race([
    p,
    new Promise<T>((_, reject) => setTimeout(() => reject(new Error(`no answer in ${ms} ms`)), ms).unref()),
  ]);
}
