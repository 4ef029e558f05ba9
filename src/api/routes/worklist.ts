import { Type } from 'typebox';
import type { Context } from '../../context.js';
import { getWorklistForReader } from '../../db/case-queries.js';
import { principalOf, requireRole } from '../auth.js';
import type { App } from '../build-app.js';
import { CaseSummary, errorResponses } from '../schemas.js';
import { toCaseSummary } from './cases.js';

export function registerWorklistRoutes(app: App, ctx: Context): void {
  app.get(
    '/v1/worklist',
    {
      preHandler: requireRole(ctx.db, 'reader'),
      schema: {
        summary: "The caller's assigned cases, most urgent first",
        querystring: Type.Object({ limit: Type.Integer({ minimum: 1, maximum: 500, default: 100 }) }),
        response: {
          200: Type.Object({ readerId: Type.String(), cases: Type.Array(CaseSummary) }),
          ...errorResponses,
        },
      },
    },
    async (request) => {
      const who = principalOf(request);
      const { limit } = request.query as { limit: number };
      const rows = await getWorklistForReader(ctx.db, who.readerId!, limit);
      return { readerId: who.readerId!, cases: rows.map((r) => toCaseSummary(ctx, r)) };
    },
  );
}
