import { isIP } from 'node:net';
import type { AuditWriter } from '../db/audit-queries.js';
import type { App } from './build-app.js';

/**
 * Action names of the access events, by route. Every authenticated request is recorded, whether or not its route
 * is listed here: an unlisted route is recorded as `METHOD /path`, so a new route is audited from its first
 * request and only its name waits for a row here.
 */
export const AUDIT_ACTIONS: Readonly<Record<string, string>> = {
  'GET /v1/cases': 'case.list',
  'GET /v1/cases/:id': 'case.read',
  'GET /v1/cases/:id/artifacts/:name': 'artifact.read',
  'GET /v1/cases/:id/instances/:sopInstanceUid': 'instance.read',
  'GET /v1/cases/:id/instances/:sopInstanceUid/frames/:n/rendered': 'frame.read',
  'GET /v1/cases/:id/slides/:descriptor': 'slide.read',
  'GET /v1/cases/:id/slides/:files/:level/:tile': 'tile.read',
  'POST /v1/cases/:id/claim': 'case.claim',
  'POST /v1/cases/:id/heartbeat': 'case.heartbeat',
  'POST /v1/cases/:id/release': 'case.release',
  'POST /v1/cases/:id/reassign': 'case.reassign',
  'GET /v1/cases/:id/report': 'report.read',
  'PUT /v1/cases/:id/report': 'report.draft',
  'POST /v1/cases/:id/report/sign': 'report.sign',
  'POST /v1/cases/:id/report/addenda': 'report.addendum',
  'GET /v1/cases/:id/report/fhir': 'report.fhir.read',
  'GET /v1/worklist': 'worklist.read',
  'GET /v1/files/:id': 'file.read',
  'POST /v1/ops/files/:id/retry': 'file.retry',
  'GET /v1/ops/files': 'file.list',
  'GET /v1/ops/queues': 'queue.read',
  'GET /v1/ops/webhooks': 'webhook.list',
  'GET /v1/ops/webhooks/:id': 'webhook.read',
  'POST /v1/ops/webhooks/:id/resend': 'webhook.resend',
  'GET /v1/ops/sla': 'sla.read',
  'GET /v1/ops/audit': 'audit.read',
  'POST /v1/uploads': 'upload.create',
  'POST /v1/uploads/check': 'upload.check',
  'POST /v1/uploads/batches': 'upload.batch.create',
  'POST /v1/uploads/batches/:id/complete': 'upload.batch.complete',
  'POST /v1/uploads/multipart': 'upload.multipart.create',
  'POST /v1/uploads/multipart/:id/complete': 'upload.multipart.complete',
  'DELETE /v1/uploads/multipart/:id': 'upload.multipart.abort',
  'POST /v1/tus': 'upload.tus.create',
  'HEAD /v1/tus': 'upload.tus.status',
  'PATCH /v1/tus': 'upload.tus.write',
  'DELETE /v1/tus': 'upload.tus.terminate',
  'POST /v1/tus/:id': 'upload.tus.create',
  'HEAD /v1/tus/:id': 'upload.tus.status',
  'PATCH /v1/tus/:id': 'upload.tus.write',
  'DELETE /v1/tus/:id': 'upload.tus.terminate',
  'POST /dicomweb/studies': 'upload.stow',
  'POST /dicomweb/studies/:studyUid': 'upload.stow',
  'GET /dicomweb/studies/:studyUid': 'study.retrieve',
  'GET /dicomweb/studies/:studyUid/series/:seriesUid': 'series.retrieve',
  'GET /dicomweb/studies/:studyUid/series/:seriesUid/instances/:sopUid': 'instance.retrieve',
  'GET /dicomweb/studies/:studyUid/series/:seriesUid/instances/:sopUid/frames/:frames/rendered': 'frame.read',
  'GET /dicomweb/studies/:studyUid/series/:seriesUid/instances/:sopUid/rendered': 'frame.read',
  'GET /dicomweb/studies/:studyUid/series/:seriesUid/instances/:sopUid/thumbnail': 'frame.read',
  'GET /dicomweb/studies/:studyUid/series/:seriesUid/thumbnail': 'artifact.read',
  'GET /dicomweb/studies/:studyUid/thumbnail': 'artifact.read',
  'GET /dicomweb/studies/:studyUid/series/:seriesUid/instances/:sopUid/frames/:frames': 'frame.retrieve',
  'GET /dicomweb/studies/:studyUid/series/:seriesUid/instances/:sopUid/bulkdata/*': 'instance.bulkdata',
  'GET /dicomweb/studies': 'study.search',
  'GET /dicomweb/studies/:studyUid/series': 'series.search',
  'GET /dicomweb/studies/:studyUid/series/:seriesUid/instances': 'instance.search',
  'GET /dicomweb/studies/:studyUid/metadata': 'study.metadata',
  'GET /dicomweb/studies/:studyUid/series/:seriesUid/metadata': 'series.metadata',
  'GET /dicomweb/studies/:studyUid/series/:seriesUid/instances/:sopUid/metadata': 'instance.metadata',
  'GET /v1/rules': 'rules.read',
  'PUT /v1/rules': 'rules.replace',
  'POST /v1/rules': 'rules.insert',
  'DELETE /v1/rules/:id': 'rules.delete',
  'GET /v1/keys': 'key.list',
  'POST /v1/keys': 'key.create',
  'POST /v1/keys/:id/revoke': 'key.revoke',
  'GET /metrics': 'metrics.read',
};

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
/** Routes whose `:id` is a case, or a file. */
const CASE_ROUTE = /^\/v1\/cases\/:id(\/|$)/;
const FILE_ROUTE = /^\/v1\/(ops\/)?files\/:id(\/|$)/;

export function auditActionFor(method: string, route: string): string {
  return (
    AUDIT_ACTIONS[`${method} ${route}`] ??
    // Fastify answers HEAD for every GET route with the GET handler: the same access, without the body.
    (method === 'HEAD' ? AUDIT_ACTIONS[`GET ${route}`] : undefined) ??
    `${method} ${route}`
  );
}

/**
 * Appends one access event per authenticated request once its response is sent, with the actor's key and role,
 * the case (or file) it concerns, the client address, the request id, and the status, route parameters and query
 * in `detail`. Refusals are recorded too (a 403 or 404 to a key that tried), so the trail shows attempts as well
 * as reads. Requests without a valid key have no actor and are not recorded here; the auth-failure limit counts
 * them.
 */
export function registerAuditHook(app: App, writer: AuditWriter): void {
  app.addHook('onResponse', async (request, reply) => {
    const who = request.principal;
    const route = request.routeOptions.url;
    if (!who || !route) return;
    const params = { ...((request.params ?? {}) as Record<string, unknown>) };
    const id = typeof params.id === 'string' && UUID.test(params.id) ? params.id : null;
    const caseId = CASE_ROUTE.test(route) ? id : null;
    const fileId = FILE_ROUTE.test(route) ? id : null;
    if (caseId || fileId) delete params.id;
    const query = request.query && typeof request.query === 'object' ? request.query : {};
    writer.append({
      at: new Date(),
      actor_key_id: who.keyId,
      actor_role: who.role,
      action: auditActionFor(request.method, route),
      case_id: caseId,
      file_id: fileId,
      request_id: request.id,
      ip: isIP(request.ip) ? request.ip : null,
      detail: JSON.stringify({
        status: reply.statusCode,
        ...(Object.keys(params).length > 0 ? { params } : {}),
        ...(Object.keys(query).length > 0 ? { query } : {}),
      }),
    });
  });
}
