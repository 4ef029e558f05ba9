import { Type } from 'typebox';
import type { Context } from '../../context.js';
import { AppError } from '../../errors.js';
import { principalOf, requireRole } from '../auth.js';
import type { App } from '../build-app.js';
import { errorResponses, FileError, IdParams } from '../schemas.js';

const FileStatusBody = Type.Object({
  id: Type.String(),
  name: Type.String(),
  bytes: Type.Number(),
  sha256: Type.String(),
  status: Type.String(),
  kind: Type.Union([Type.String(), Type.Null()]),
  format: Type.Union([Type.String(), Type.Null()]),
  caseId: Type.Union([Type.String(), Type.Null()]),
  error: FileError,
  receivedAt: Type.String(),
  ingestedAt: Type.Union([Type.String(), Type.Null()]),
  processedAt: Type.Union([Type.String(), Type.Null()]),
});

export function registerFileRoutes(app: App, ctx: Context): void {
  const { db } = ctx;
  app.get(
    '/v1/files/:id',
    {
      onRequest: requireRole(db, 'clinic', 'ops', 'admin'),
      schema: {
        summary: 'Status of one uploaded file',
        params: IdParams,
        response: { 200: FileStatusBody, ...errorResponses },
      },
    },
    async (request) => {
      const who = principalOf(request);
      const { id } = request.params as { id: string };
      let q = db.selectFrom('files').selectAll().where('id', '=', id);
      if (who.role === 'clinic') q = q.where('site_id', '=', who.siteId ?? '');
      const f = await q.executeTakeFirst();
      if (!f) throw new AppError('NOT_FOUND', `no file ${id}`);
      return {
        id: f.id,
        name: f.name,
        bytes: Number(f.bytes),
        sha256: f.sha256,
        status: f.status,
        kind: f.kind,
        format: f.format,
        caseId: f.case_id,
        error: f.error_code ? { code: f.error_code, message: f.error_message ?? '' } : null,
        receivedAt: f.received_at.toISOString(),
        ingestedAt: f.ingested_at?.toISOString() ?? null,
        processedAt: f.processed_at?.toISOString() ?? null,
      };
    },
  );
}
