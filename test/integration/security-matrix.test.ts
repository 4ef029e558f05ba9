import { randomUUID } from 'node:crypto';
import path from 'node:path';
import { sql } from 'kysely';
import type { InjectOptions } from 'light-my-request';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { AUDIT_ACTIONS } from '../../src/api/audit-hook.js';
import { createAuthFailureLimiter, parseDuration } from '../../src/api/auth.js';
import type { App, RegisteredRoute } from '../../src/api/build-app.js';
import { startApi } from '../../src/api/start-api.js';
import { addReader, addSite, createKey, revokeKey } from '../../src/cli/admin-commands.js';
import { collectBatches, uploadBatch } from '../../src/client/upload-client.js';
import type { Context } from '../../src/context.js';
import { insertRule } from '../../src/db/rule-queries.js';
import { parseRule } from '../../src/domain/rules.js';
import { type RunningWorkers, runWorkers } from '../../src/pipeline/run-worker.js';
import { repoRoot } from '../corpus.js';
import { waitFor } from '../helpers/api-client.js';
import { createReadyCase, createRoutedCase } from '../helpers/case-factory.js';
import { imageElements, writeDicom } from '../helpers/dicom-writer.js';
import { createTestContext } from '../helpers/test-context.js';

/**
 * Role × tenant × route. Every registered route has a row here, keyed `METHOD /path` as Fastify registered it;
 * the first test fails when a route has no row (or a row no route), so a route cannot be added without deciding
 * who may call it. Each row gives the expected status for each principal, in this order:
 */
const PRINCIPALS = [
  'clinicA', // a clinic key of site A, which sent every case below
  'clinicB', // a clinic key of site B
  'readerA', // the reader the cases are pushed to (radiology, pathology)
  'readerX', // a reader of another specialty (cardiology)
  'ops',
  'admin',
  'none', // no Authorization header
  'revoked', // an admin key, revoked
  'expired', // an admin key past its expiry
] as const;
type Who = (typeof PRINCIPALS)[number];
const UNAUTHENTICATED: readonly Who[] = ['none', 'revoked', 'expired'];

interface Req {
  url: string;
  headers?: Record<string, string>;
  payload?: InjectOptions['payload'];
}
/** Builds the request for one cell; mutating routes get a fresh resource per cell so cells do not interact. */
type Build = (fx: Fixtures, who: Who) => Req | Promise<Req>;
interface Row {
  /** Statuses in PRINCIPALS order. */
  expect: string;
  request: Build;
}

const PUBLIC = '200 200 200 200 200 200 200 200 200';
const CLINICS = (s: number) => `${s} ${s} 403 403 403 403 401 401 401`;
const OWN_CLINIC = (s: number) => `${s} 404 403 403 403 403 401 401 401`;
/** Case data: its clinic, the reader it is pushed to, ops, admin. */
const CASE_READ = '200 404 200 404 200 200 401 401 401';
/** The DICOM files themselves carry the patient: case data minus ops. */
const DICOM_READ = '200 404 200 404 403 200 401 401 401';
const READER_ONLY = (s: number) => `403 403 ${s} 404 403 403 401 401 401`;
const OPS = (s: number) => `403 403 403 403 ${s} ${s} 401 401 401`;
const ADMIN = (s: number) => `403 403 403 403 403 ${s} 401 401 401`;

const json = (payload: unknown) => ({ payload: payload as InjectOptions['payload'] });
const tusHeaders = { 'tus-resumable': '1.0.0' };

const MATRIX: Record<string, Row> = {
  'GET /docs': { expect: PUBLIC, request: () => ({ url: '/docs' }) },
  'HEAD /docs/': { expect: PUBLIC, request: () => ({ url: '/docs/' }) },
  'GET /docs/static/index.html': {
    expect: '302 302 302 302 302 302 302 302 302',
    request: () => ({ url: '/docs/static/index.html' }),
  },
  'GET /docs/static/swagger-initializer.js': {
    expect: PUBLIC,
    request: () => ({ url: '/docs/static/swagger-initializer.js' }),
  },
  'GET /docs/json': { expect: PUBLIC, request: () => ({ url: '/docs/json' }) },
  'GET /docs/yaml': { expect: PUBLIC, request: () => ({ url: '/docs/yaml' }) },
  'HEAD /docs/static/*': { expect: PUBLIC, request: () => ({ url: '/docs/static/swagger-ui.css' }) },
  'GET /docs/static/*': { expect: PUBLIC, request: () => ({ url: '/docs/static/swagger-ui.css' }) },
  'GET /healthz': { expect: PUBLIC, request: () => ({ url: '/healthz' }) },
  'GET /readyz': { expect: PUBLIC, request: () => ({ url: '/readyz' }) },

  'POST /v1/uploads/check': {
    expect: CLINICS(200),
    request: () => ({ url: '/v1/uploads/check', ...json({ sha256: ['0'.repeat(64)] }) }),
  },
  'POST /v1/uploads/batches': {
    expect: CLINICS(201),
    request: () => ({ url: '/v1/uploads/batches', ...json({}) }),
  },
  'POST /v1/uploads/batches/:id/complete': {
    expect: OWN_CLINIC(202),
    request: async (fx) => ({ url: `/v1/uploads/batches/${await fx.finishedBatchOfA()}/complete` }),
  },
  'POST /v1/uploads': {
    expect: CLINICS(202),
    request: () => {
      const boundary = 'matrix-boundary';
      return {
        url: '/v1/uploads',
        headers: { 'content-type': `multipart/form-data; boundary=${boundary}` },
        payload:
          `--${boundary}\r\nContent-Disposition: form-data; name="file"; filename="letter.txt"\r\n` +
          `Content-Type: text/plain\r\n\r\nnot an image\r\n--${boundary}--\r\n`,
      };
    },
  },
  // Direct-to-S3 uploads answer 501 on filesystem storage, after the key is checked.
  'POST /v1/uploads/multipart': {
    expect: CLINICS(501),
    request: () => ({
      url: '/v1/uploads/multipart',
      ...json({ name: 'a.dcm', bytes: 10, sha256: 'a'.repeat(64) }),
    }),
  },
  'POST /v1/uploads/multipart/:id/complete': {
    expect: CLINICS(501),
    request: () => ({ url: `/v1/uploads/multipart/${randomUUID()}/complete`, ...json({ parts: [] }) }),
  },
  'DELETE /v1/uploads/multipart/:id': {
    expect: CLINICS(501),
    request: () => ({ url: `/v1/uploads/multipart/${randomUUID()}` }),
  },
  'POST /v1/tus': {
    expect: CLINICS(201),
    request: () => ({ url: '/v1/tus', headers: { ...tusHeaders, 'upload-length': '10' } }),
  },
  // The collection URL is not an upload: tus answers 404 to the clinics that get that far.
  'HEAD /v1/tus': { expect: CLINICS(404), request: () => ({ url: '/v1/tus', headers: tusHeaders }) },
  'PATCH /v1/tus': { expect: CLINICS(404), request: () => ({ url: '/v1/tus', headers: tusHeaders }) },
  'DELETE /v1/tus': { expect: CLINICS(404), request: () => ({ url: '/v1/tus', headers: tusHeaders }) },
  // CORS preflight: no key is sent, none is asked for.
  'OPTIONS /v1/tus': { expect: '204 204 204 204 204 204 204 204 204', request: () => ({ url: '/v1/tus' }) },
  // tus-node-server treats any POST as a creation.
  'POST /v1/tus/:id': {
    expect: CLINICS(201),
    request: () => ({ url: '/v1/tus/whatever', headers: { ...tusHeaders, 'upload-length': '10' } }),
  },
  'HEAD /v1/tus/:id': {
    expect: OWN_CLINIC(200),
    request: async (fx) => ({ url: await fx.tusUploadOfA(), headers: tusHeaders }),
  },
  'PATCH /v1/tus/:id': {
    expect: OWN_CLINIC(204),
    request: async (fx) => ({
      url: await fx.tusUploadOfA(),
      headers: { ...tusHeaders, 'upload-offset': '0', 'content-type': 'application/offset+octet-stream' },
      payload: Buffer.from('0123456789'),
    }),
  },
  'DELETE /v1/tus/:id': {
    expect: OWN_CLINIC(204),
    request: async (fx) => ({ url: await fx.tusUploadOfA(), headers: tusHeaders }),
  },
  'OPTIONS /v1/tus/:id': {
    expect: '204 204 204 204 204 204 204 204 204',
    request: () => ({ url: '/v1/tus/whatever' }),
  },
  'POST /dicomweb/studies': {
    expect: CLINICS(200),
    request: () => stowRequest('/dicomweb/studies', `2.25.${Date.now()}${Math.floor(Math.random() * 1e6)}`),
  },
  'POST /dicomweb/studies/:studyUid': {
    expect: CLINICS(200),
    request: () => {
      const study = `2.25.${Date.now()}${Math.floor(Math.random() * 1e6)}`;
      return stowRequest(`/dicomweb/studies/${study}`, study);
    },
  },

  'GET /dicomweb/studies/:studyUid': {
    expect: DICOM_READ,
    request: (fx) => ({ url: `/dicomweb/studies/${fx.imaging.studyUid}` }),
  },
  'GET /dicomweb/studies/:studyUid/series/:seriesUid': {
    expect: DICOM_READ,
    request: (fx) => ({ url: `/dicomweb/studies/${fx.imaging.studyUid}/series/${fx.imaging.seriesUid}` }),
  },
  'GET /dicomweb/studies/:studyUid/series/:seriesUid/instances/:sopUid': {
    expect: DICOM_READ,
    request: (fx) => ({
      url: `/dicomweb/studies/${fx.imaging.studyUid}/series/${fx.imaging.seriesUid}/instances/${fx.imaging.sopInstanceUid}`,
    }),
  },

  'GET /dicomweb/studies/:studyUid/series/:seriesUid/instances/:sopUid/frames/:frames/rendered': {
    expect: DICOM_READ,
    request: (fx) => ({
      url: `/dicomweb/studies/${fx.imaging.studyUid}/series/${fx.imaging.seriesUid}/instances/${fx.imaging.sopInstanceUid}/frames/1/rendered?viewport=64,64`,
    }),
  },
  'GET /dicomweb/studies/:studyUid/series/:seriesUid/instances/:sopUid/rendered': {
    expect: DICOM_READ,
    request: (fx) => ({
      url: `/dicomweb/studies/${fx.imaging.studyUid}/series/${fx.imaging.seriesUid}/instances/${fx.imaging.sopInstanceUid}/rendered?viewport=64,64`,
    }),
  },
  'GET /dicomweb/studies/:studyUid/series/:seriesUid/instances/:sopUid/thumbnail': {
    expect: DICOM_READ,
    request: (fx) => ({
      url: `/dicomweb/studies/${fx.imaging.studyUid}/series/${fx.imaging.seriesUid}/instances/${fx.imaging.sopInstanceUid}/thumbnail`,
    }),
  },
  'GET /dicomweb/studies/:studyUid/series/:seriesUid/thumbnail': {
    expect: DICOM_READ,
    request: (fx) => ({
      url: `/dicomweb/studies/${fx.imaging.studyUid}/series/${fx.imaging.seriesUid}/thumbnail`,
    }),
  },
  'GET /dicomweb/studies/:studyUid/thumbnail': {
    expect: DICOM_READ,
    request: (fx) => ({ url: `/dicomweb/studies/${fx.imaging.studyUid}/thumbnail` }),
  },
  'GET /dicomweb/studies/:studyUid/series/:seriesUid/instances/:sopUid/frames/:frames': {
    expect: DICOM_READ,
    request: (fx) => ({
      url: `/dicomweb/studies/${fx.imaging.studyUid}/series/${fx.imaging.seriesUid}/instances/${fx.imaging.sopInstanceUid}/frames/1`,
    }),
  },
  'GET /dicomweb/studies/:studyUid/series/:seriesUid/instances/:sopUid/bulkdata/*': {
    expect: DICOM_READ,
    request: (fx) => ({
      url: `/dicomweb/studies/${fx.imaging.studyUid}/series/${fx.imaging.seriesUid}/instances/${fx.imaging.sopInstanceUid}/bulkdata/7FE00010`,
    }),
  },
  // A search finds only what the caller may see: an empty answer is not a refusal.
  'GET /dicomweb/studies': {
    expect: '200 200 200 200 403 200 401 401 401',
    request: (fx) => ({ url: `/dicomweb/studies?StudyInstanceUID=${fx.imaging.studyUid}` }),
  },
  'GET /dicomweb/studies/:studyUid/series': {
    expect: DICOM_READ,
    request: (fx) => ({ url: `/dicomweb/studies/${fx.imaging.studyUid}/series` }),
  },
  'GET /dicomweb/studies/:studyUid/series/:seriesUid/instances': {
    expect: DICOM_READ,
    request: (fx) => ({
      url: `/dicomweb/studies/${fx.imaging.studyUid}/series/${fx.imaging.seriesUid}/instances`,
    }),
  },
  'GET /dicomweb/studies/:studyUid/metadata': {
    expect: DICOM_READ,
    request: (fx) => ({ url: `/dicomweb/studies/${fx.imaging.studyUid}/metadata` }),
  },
  'GET /dicomweb/studies/:studyUid/series/:seriesUid/metadata': {
    expect: DICOM_READ,
    request: (fx) => ({
      url: `/dicomweb/studies/${fx.imaging.studyUid}/series/${fx.imaging.seriesUid}/metadata`,
    }),
  },
  'GET /dicomweb/studies/:studyUid/series/:seriesUid/instances/:sopUid/metadata': {
    expect: DICOM_READ,
    request: (fx) => ({
      url: `/dicomweb/studies/${fx.imaging.studyUid}/series/${fx.imaging.seriesUid}/instances/${fx.imaging.sopInstanceUid}/metadata`,
    }),
  },

  'GET /metrics': { expect: OPS(200), request: () => ({ url: '/metrics' }) },
  'GET /v1/files/:id': {
    expect: '200 404 403 403 200 200 401 401 401',
    request: (fx) => ({ url: `/v1/files/${fx.imaging.fileId}` }),
  },
  'GET /v1/cases': { expect: '200 200 200 200 200 200 401 401 401', request: () => ({ url: '/v1/cases' }) },
  'GET /v1/cases/:id': { expect: CASE_READ, request: (fx) => ({ url: `/v1/cases/${fx.imaging.caseId}` }) },
  'GET /v1/cases/:id/artifacts/:name': {
    expect: CASE_READ,
    request: (fx) => ({ url: `/v1/cases/${fx.imaging.caseId}/artifacts/thumbnail` }),
  },
  // The DICOM itself carries the patient: ops, who see cases without them, may not download it.
  'GET /v1/cases/:id/instances/:sopInstanceUid': {
    expect: DICOM_READ,
    request: (fx) => ({ url: `/v1/cases/${fx.imaging.caseId}/instances/${fx.imaging.sopInstanceUid}` }),
  },
  'GET /v1/cases/:id/instances/:sopInstanceUid/frames/:n/rendered': {
    expect: CASE_READ,
    request: (fx) => ({
      url: `/v1/cases/${fx.imaging.caseId}/instances/${fx.imaging.sopInstanceUid}/frames/1/rendered?size=64`,
    }),
  },
  'GET /v1/cases/:id/slides/:descriptor': {
    expect: CASE_READ,
    request: (fx) => ({ url: `/v1/cases/${fx.slide.caseId}/slides/${fx.slide.fileId}.dzi` }),
  },
  'GET /v1/cases/:id/slides/:files/:level/:tile': {
    expect: CASE_READ,
    request: (fx) => ({ url: `/v1/cases/${fx.slide.caseId}/slides/${fx.slide.fileId}_files/0/0_0.jpeg` }),
  },
  'GET /v1/worklist': {
    expect: '403 403 200 200 403 403 401 401 401',
    request: () => ({ url: '/v1/worklist' }),
  },
  'POST /v1/cases/:id/claim': {
    expect: READER_ONLY(200),
    request: async (fx) => ({ url: `/v1/cases/${await fx.pushedCase()}/claim` }),
  },
  'POST /v1/cases/:id/heartbeat': {
    expect: READER_ONLY(200),
    request: async (fx) => ({ url: `/v1/cases/${await fx.claimedCase()}/heartbeat` }),
  },
  'POST /v1/cases/:id/release': {
    expect: READER_ONLY(200),
    request: async (fx) => ({ url: `/v1/cases/${await fx.pushedCase()}/release` }),
  },
  'POST /v1/cases/:id/reassign': {
    expect: OPS(200),
    request: async (fx) => ({
      url: `/v1/cases/${await fx.pushedCase()}/reassign`,
      ...json({ readerId: 'reader-a' }),
    }),
  },
  'GET /v1/cases/:id/report': {
    expect: CASE_READ,
    request: (fx) => ({ url: `/v1/cases/${fx.signedCaseId}/report` }),
  },
  'PUT /v1/cases/:id/report': {
    expect: READER_ONLY(200),
    request: async (fx) => ({
      url: `/v1/cases/${await fx.claimedCase()}/report`,
      ...json({ findings: 'Normal study.', impression: 'No acute findings.' }),
    }),
  },
  'POST /v1/cases/:id/report/sign': {
    expect: READER_ONLY(200),
    request: async (fx) => ({ url: `/v1/cases/${await fx.draftedCase()}/report/sign` }),
  },
  'POST /v1/cases/:id/report/addenda': {
    expect: READER_ONLY(201),
    request: async (fx) => ({
      url: `/v1/cases/${await fx.signedCase()}/report/addenda`,
      ...json({ text: 'Compared with the prior study: unchanged.' }),
    }),
  },
  'GET /v1/cases/:id/report/fhir': {
    expect: CASE_READ,
    request: (fx) => ({ url: `/v1/cases/${fx.signedCaseId}/report/fhir` }),
  },

  'GET /v1/rules': { expect: OPS(200), request: () => ({ url: '/v1/rules' }) },
  'PUT /v1/rules': { expect: ADMIN(200), request: () => ({ url: '/v1/rules', ...json({ rules: [] }) }) },
  'POST /v1/rules': {
    expect: ADMIN(201),
    request: () => ({
      url: '/v1/rules',
      ...json({ rule: { name: 'parked', enabled: false, target: { specialty: 'radiology' } } }),
    }),
  },
  'DELETE /v1/rules/:id': {
    expect: ADMIN(204),
    request: async (fx) => ({ url: `/v1/rules/${await fx.rule()}` }),
  },
  'GET /v1/ops/queues': { expect: OPS(200), request: () => ({ url: '/v1/ops/queues' }) },
  'GET /v1/ops/files': { expect: OPS(200), request: () => ({ url: '/v1/ops/files' }) },
  'POST /v1/ops/files/:id/retry': {
    expect: OPS(202),
    request: async (fx) => ({ url: `/v1/ops/files/${await fx.failedFile()}/retry` }),
  },
  'GET /v1/ops/webhooks': { expect: OPS(200), request: () => ({ url: '/v1/ops/webhooks' }) },
  'GET /v1/ops/webhooks/:id': {
    expect: OPS(200),
    request: async (fx) => ({ url: `/v1/ops/webhooks/${await fx.failedDelivery()}` }),
  },
  'POST /v1/ops/webhooks/:id/resend': {
    expect: OPS(202),
    request: async (fx) => ({ url: `/v1/ops/webhooks/${await fx.failedDelivery()}/resend` }),
  },
  'GET /v1/ops/sla': { expect: OPS(200), request: () => ({ url: '/v1/ops/sla' }) },
  'GET /v1/ops/audit': { expect: OPS(200), request: () => ({ url: '/v1/ops/audit' }) },
  'GET /v1/keys': { expect: ADMIN(200), request: () => ({ url: '/v1/keys' }) },
  'POST /v1/keys': {
    expect: ADMIN(201),
    request: () => ({ url: '/v1/keys', ...json({ role: 'ops', label: 'matrix', expiresIn: '1d' }) }),
  },
  'POST /v1/keys/:id/revoke': {
    expect: ADMIN(200),
    request: async (fx) => ({ url: `/v1/keys/${await fx.spareKey()}/revoke` }),
  },
};

/** Which routes have no row, and which rows have no route. */
function compareRoutes(registered: readonly RegisteredRoute[], table: Record<string, unknown>) {
  const routes = new Set(registered.map((r) => `${r.method} ${r.url}`));
  return {
    missing: [...routes].filter((r) => !(r in table)).sort(),
    stale: Object.keys(table)
      .filter((r) => !routes.has(r))
      .sort(),
  };
}

function stowRequest(url: string, study: string): Req {
  const boundary = 'matrix-stow';
  const dicom = writeDicom(
    imageElements({
      rows: 4,
      columns: 4,
      bitsAllocated: 8,
      pixelData: new Uint8Array(16).map((_, i) => i * 16),
      extra: [
        { tag: 0x0020000d, vr: 'UI', value: study },
        { tag: 0x0020000e, vr: 'UI', value: `${study}.1` },
        { tag: 0x00080018, vr: 'UI', value: `${study}.1.1` },
      ],
    }),
    { sopInstanceUid: `${study}.1.1` },
  );
  return {
    url,
    headers: { 'content-type': `multipart/related; type="application/dicom"; boundary=${boundary}` },
    payload: Buffer.concat([
      Buffer.from(`--${boundary}\r\nContent-Type: application/dicom\r\n\r\n`),
      Buffer.from(dicom),
      Buffer.from(`\r\n--${boundary}--\r\n`),
    ]),
  };
}

interface Fixtures {
  keys: Record<Who, string | null>;
  imaging: { caseId: string; fileId: string; sopInstanceUid: string; studyUid: string; seriesUid: string };
  slide: { caseId: string; fileId: string };
  signedCaseId: string;
  /** Patient names, ids and birth dates of every fixture: never in a response ops can reach. */
  patientValues: string[];
  pushedCase(): Promise<string>;
  claimedCase(): Promise<string>;
  draftedCase(): Promise<string>;
  signedCase(): Promise<string>;
  failedFile(): Promise<string>;
  failedDelivery(): Promise<string>;
  rule(): Promise<string>;
  spareKey(): Promise<string>;
  tusUploadOfA(): Promise<string>;
  finishedBatchOfA(): Promise<string>;
}

let t: Awaited<ReturnType<typeof createTestContext>>;
let ctx: Context;
let app: App;
let fx: Fixtures;
let addressCounter = 0;

/** Unauthenticated calls come from addresses of their own, so the auth-failure limit does not blur the matrix. */
function nextAddress(): string {
  addressCounter++;
  return `10.66.${Math.floor(addressCounter / 250)}.${(addressCounter % 250) + 1}`;
}

async function send(who: Who, method: string, req: Req, remoteAddress?: string) {
  const key = fx.keys[who];
  return app.inject({
    method: method as InjectOptions['method'],
    url: req.url,
    headers: { ...(req.headers ?? {}), ...(key ? { authorization: `Bearer ${key}` } : {}) },
    ...(req.payload !== undefined ? { payload: req.payload } : {}),
    remoteAddress: remoteAddress ?? (UNAUTHENTICATED.includes(who) ? nextAddress() : '127.0.0.1'),
  });
}

async function routed(fileId: string) {
  return waitFor(`file ${fileId} routed`, async () => {
    const f = await ctx.db
      .selectFrom('files')
      .select(['case_id', 'status', 'sop_instance_uid'])
      .where('id', '=', fileId)
      .executeTakeFirst();
    if (f?.status === 'failed') throw new Error(`fixture file ${fileId} failed`);
    if (!f?.case_id) return undefined;
    const c = await ctx.db
      .selectFrom('cases')
      .select('status')
      .where('id', '=', f.case_id)
      .executeTakeFirst();
    return c?.status === 'routed' ? { caseId: f.case_id, sopInstanceUid: f.sop_instance_uid } : undefined;
  });
}

beforeAll(async () => {
  t = await createTestContext();
  ctx = t.ctx;
  await addSite(ctx.db, { id: 'site-a', jurisdiction: 'KE' });
  await addSite(ctx.db, { id: 'site-b', jurisdiction: 'KE' });
  // Signed reports of site A announce themselves to a webhook nobody listens on (no worker sends it here).
  await ctx.db
    .updateTable('sites')
    .set({ webhook_url: 'http://127.0.0.1:9/hook', webhook_secret: 'matrix-secret' })
    .where('id', '=', 'site-a')
    .execute();
  await addReader(ctx.db, {
    id: 'reader-a',
    specialties: 'radiology,pathology',
    jurisdictions: 'KE',
    maxActive: 100_000,
  });
  await addReader(ctx.db, { id: 'reader-x', specialties: 'cardiology', jurisdictions: 'KE' });
  const revoked = await createKey(ctx.db, { role: 'admin', label: 'revoked' });
  await revokeKey(ctx.db, revoked.id);
  const expired = await createKey(ctx.db, { role: 'admin', label: 'expired', expiresIn: '1h' });
  await ctx.db
    .updateTable('api_keys')
    .set({ expires_at: sql`now() - interval '1 minute'` })
    .where('id', '=', expired.id)
    .execute();
  const keys: Record<Who, string | null> = {
    clinicA: (await createKey(ctx.db, { role: 'clinic', site: 'site-a' })).key,
    clinicB: (await createKey(ctx.db, { role: 'clinic', site: 'site-b' })).key,
    readerA: (await createKey(ctx.db, { role: 'reader', reader: 'reader-a' })).key,
    readerX: (await createKey(ctx.db, { role: 'reader', reader: 'reader-x' })).key,
    ops: (await createKey(ctx.db, { role: 'ops' })).key,
    admin: (await createKey(ctx.db, { role: 'admin' })).key,
    none: null,
    revoked: revoked.key,
    expired: expired.key,
  };

  // Real files through the real pipeline: a CT instance (rendered frames) and an Aperio slide (Deep Zoom).
  const workers: RunningWorkers = await runWorkers(ctx, { queues: ['ingest', 'process', 'route'] });
  let url: string;
  ({ app, url } = await startApi(ctx, 0));
  const upload = async (dir: string) => {
    const [batch] = await collectBatches([path.join(repoRoot, dir)]);
    const res = await uploadBatch(batch!, { server: url, key: keys.clinicA! });
    const fileId = res.files[0]!.id;
    return { fileId, ...(await routed(fileId)) };
  };
  const imaging = await upload('fixtures/imaging');
  const slide = await upload('fixtures/pathology');
  await workers.close();

  const fixtureFiles = await ctx.db
    .selectFrom('files')
    .select('patient')
    .where('case_id', 'in', [imaging.caseId, slide.caseId])
    .execute();
  const patientValues = [
    'Test^Patient',
    'PID-MATRIX',
    ...fixtureFiles.flatMap((f) =>
      Object.values(f.patient ?? {}).filter(
        (v): v is string => typeof v === 'string' && v.trim().length >= 4,
      ),
    ),
  ];

  const asReaderA = async (method: string, url: string, payload?: unknown) => {
    const res = await app.inject({
      method: method as InjectOptions['method'],
      url,
      headers: { authorization: `Bearer ${keys.readerA}` },
      ...(payload !== undefined ? { payload: payload as InjectOptions['payload'] } : {}),
    });
    if (res.statusCode >= 300) throw new Error(`${method} ${url}: ${res.statusCode} ${res.body}`);
    return res;
  };
  const pushedCase = () =>
    createRoutedCase(ctx, { siteId: 'site-a', kind: 'imaging', modality: 'CT', patientId: 'PID-MATRIX' });
  const claimedCase = async () => {
    const id = await pushedCase();
    await asReaderA('POST', `/v1/cases/${id}/claim`);
    return id;
  };
  const draftedCase = async () => {
    const id = await claimedCase();
    await asReaderA('PUT', `/v1/cases/${id}/report`, {
      findings: 'Normal.',
      impression: 'No acute findings.',
    });
    return id;
  };
  const signedCase = async () => {
    const id = await draftedCase();
    await asReaderA('POST', `/v1/cases/${id}/report/sign`);
    return id;
  };
  const signedCaseId = await signedCase();
  const signedReport = await ctx.db
    .selectFrom('reports')
    .select('id')
    .where('case_id', '=', signedCaseId)
    .executeTakeFirstOrThrow();

  const clinicA = async (method: string, url: string, headers: Record<string, string>, payload?: Buffer) => {
    const res = await app.inject({
      method: method as InjectOptions['method'],
      url,
      headers: { ...headers, authorization: `Bearer ${keys.clinicA}` },
      ...(payload ? { payload } : {}),
    });
    if (res.statusCode >= 300) throw new Error(`${method} ${url}: ${res.statusCode} ${res.body}`);
    return res;
  };
  const b64 = (s: string) => Buffer.from(s).toString('base64');

  fx = {
    keys,
    imaging: {
      caseId: imaging.caseId,
      fileId: imaging.fileId,
      sopInstanceUid: imaging.sopInstanceUid!,
      ...(await ctx.db
        .selectFrom('files')
        .innerJoin('cases', 'cases.id', 'files.case_id')
        .select([
          sql<string>`cases.study_instance_uid`.as('studyUid'),
          sql<string>`files.metadata->>'seriesInstanceUid'`.as('seriesUid'),
        ])
        .where('files.id', '=', imaging.fileId)
        .executeTakeFirstOrThrow()),
    },
    slide: { caseId: slide.caseId, fileId: slide.fileId },
    signedCaseId,
    patientValues,
    pushedCase,
    claimedCase,
    draftedCase,
    signedCase,
    async failedFile() {
      const caseId = await createReadyCase(ctx, { siteId: 'site-a', patientId: 'PID-MATRIX' });
      const file = await ctx.db
        .updateTable('files')
        .set({ status: 'failed', error_code: 'CORRUPT_FILE', error_message: 'broken', failed_at: sql`now()` })
        .where('case_id', '=', caseId)
        .returning('id')
        .executeTakeFirstOrThrow();
      return file.id;
    },
    async failedDelivery() {
      const id = randomUUID();
      await ctx.db
        .insertInto('webhook_deliveries')
        .values({
          id,
          site_id: 'site-a',
          case_id: signedCaseId,
          report_id: signedReport.id,
          event: 'report.signed',
          body: '{}',
          url: 'http://127.0.0.1:9/hook',
          status: 'failed',
          failed_at: sql`now()`,
        })
        .execute();
      return id;
    },
    async rule() {
      return (
        await insertRule(
          ctx.db,
          parseRule({ name: `spare ${randomUUID()}`, enabled: false, target: { specialty: 'radiology' } }),
        )
      ).id;
    },
    async spareKey() {
      return (await createKey(ctx.db, { role: 'ops', label: 'spare' })).id;
    },
    async tusUploadOfA() {
      const res = await clinicA('POST', '/v1/tus', { ...tusHeaders, 'upload-length': '10' });
      return String(res.headers.location);
    },
    async finishedBatchOfA() {
      const batch = await clinicA(
        'POST',
        '/v1/uploads/batches',
        { 'content-type': 'application/json' },
        Buffer.from('{}'),
      );
      const batchId = (batch.json() as { batchId: string }).batchId;
      await clinicA(
        'POST',
        '/v1/tus',
        {
          ...tusHeaders,
          'upload-length': '10',
          'upload-metadata': `filename ${b64('letter.txt')},batch ${b64(batchId)}`,
          'content-type': 'application/offset+octet-stream',
        },
        Buffer.from('0123456789'),
      );
      return batchId;
    },
  };
}, 120_000);

afterAll(async () => {
  await app?.close();
  await t?.dispose();
});

describe('security matrix: role × tenant × route', () => {
  test('every registered route has a row, and every row a route', () => {
    expect(compareRoutes(app.registeredRoutes, MATRIX)).toEqual({ missing: [], stale: [] });
  });

  test('a route added without its row is reported missing', () => {
    const added = [...app.registeredRoutes, { method: 'GET', url: '/v1/cases/:id/new-thing' }];
    expect(compareRoutes(added, MATRIX).missing).toEqual(['GET /v1/cases/:id/new-thing']);
  });

  test('every route that takes a key has an audit action name, and every name a route', () => {
    const keyed = Object.entries(MATRIX)
      .filter(([, row]) => row.expect.split(' ')[PRINCIPALS.indexOf('none')] === '401')
      .map(([route]) => route);
    expect(keyed.filter((r) => !(r in AUDIT_ACTIONS))).toEqual([]);
    expect(Object.keys(AUDIT_ACTIONS).filter((r) => !(r in MATRIX))).toEqual([]);
  });

  test.each(Object.keys(MATRIX))(
    '%s',
    async (route) => {
      const row = MATRIX[route]!;
      const method = route.slice(0, route.indexOf(' '));
      const expected = row.expect.split(/\s+/).map(Number);
      expect(expected).toHaveLength(PRINCIPALS.length);
      const wrong: string[] = [];
      for (const [i, who] of PRINCIPALS.entries()) {
        const req = await row.request(fx, who);
        const res = await send(who, method, req);
        if (res.statusCode !== expected[i]) {
          wrong.push(`${who}: expected ${expected[i]}, got ${res.statusCode} ${res.body.slice(0, 200)}`);
        }
        if ((res.statusCode === 401 || res.statusCode === 403) && method !== 'HEAD') {
          // Refusals use the one error shape with a stable code (a HEAD answer has no body).
          expect(res.json()).toMatchObject({
            error: { code: res.statusCode === 401 ? 'UNAUTHORIZED' : 'FORBIDDEN' },
          });
        }
        if (who === 'ops' && res.statusCode < 300) {
          // Ops run the machinery: no response they can reach carries a patient's name, id or birth date.
          const text = res.rawPayload.toString('latin1');
          for (const value of fx.patientValues)
            expect(text, `${route} shows ops "${value}"`).not.toContain(value);
        }
      }
      expect(wrong).toEqual([]);
    },
    60_000,
  );
});

describe('tenancy inside allowed responses', () => {
  test('lists hold only what the caller may see', async () => {
    const ids = async (who: Who, url: string, field: 'cases') =>
      ((await send(who, 'GET', { url })).json() as Record<typeof field, Array<{ id: string }>>)[field].map(
        (c) => c.id,
      );
    expect(await ids('clinicA', '/v1/cases?limit=200', 'cases')).toContain(fx.imaging.caseId);
    expect(await ids('clinicB', '/v1/cases?limit=200', 'cases')).toEqual([]);
    expect(await ids('readerA', '/v1/cases?limit=200', 'cases')).toContain(fx.imaging.caseId);
    expect(await ids('readerX', '/v1/cases?limit=200', 'cases')).toEqual([]);
    expect(await ids('readerX', '/v1/worklist', 'cases')).toEqual([]);
    expect(await ids('readerA', '/v1/worklist?limit=500', 'cases')).toContain(fx.imaging.caseId);
  });

  test('ops see case status but no patient on the case itself; the clinic sees its patient', async () => {
    const forOps = (await send('ops', 'GET', { url: `/v1/cases/${fx.imaging.caseId}` })).json() as {
      status: string;
      patient: unknown;
    };
    expect(forOps.status).toBe('routed');
    expect(forOps.patient).toBeNull();
    const forClinic = await send('clinicA', 'GET', { url: `/v1/cases/${fx.imaging.caseId}` });
    expect((forClinic.json() as { patient: unknown }).patient).not.toBeNull();
    // The values the matrix searches ops responses for are real: the clinic's own response carries them.
    expect(fx.patientValues.filter((v) => forClinic.body.includes(v)).length).toBeGreaterThan(0);
  });
});

describe('keys: revocation and expiry', () => {
  test('a key revoked through the API is refused on its next request', async () => {
    const spare = await createKey(ctx.db, { role: 'ops', label: 'to revoke' });
    const use = () =>
      app.inject({ url: '/v1/ops/queues', headers: { authorization: `Bearer ${spare.key}` } });
    expect((await use()).statusCode).toBe(200);
    const revoked = await send('admin', 'POST', { url: `/v1/keys/${spare.id}/revoke` });
    expect(revoked.statusCode).toBe(200);
    expect((await use()).statusCode).toBe(401);
    // Listed as revoked, never with its secret.
    const listed = (await send('admin', 'GET', { url: '/v1/keys' })).json() as {
      keys: Array<{ id: string; state: string }>;
    };
    expect(listed.keys.find((k) => k.id === spare.id)?.state).toBe('revoked');
    expect(JSON.stringify(listed)).not.toContain(spare.key);
    // An admin key cannot lock itself out; an unknown key id is 404.
    const self = await ctx.db
      .selectFrom('api_keys')
      .select('id')
      .where('key_hash', '=', sql<string>`encode(sha256(convert_to(${fx.keys.admin}, 'UTF8')), 'hex')`)
      .executeTakeFirstOrThrow();
    expect((await send('admin', 'POST', { url: `/v1/keys/${self.id}/revoke` })).statusCode).toBe(400);
    expect((await send('admin', 'POST', { url: `/v1/keys/${randomUUID()}/revoke` })).statusCode).toBe(404);
  });

  test('a key revoked by a CLI command on the same database handle is refused at once, though just used', async () => {
    const spare = await createKey(ctx.db, { role: 'reader', reader: 'reader-a', label: 'polling' });
    const use = () =>
      app.inject({ url: '/v1/worklist?limit=1', headers: { authorization: `Bearer ${spare.key}` } });
    // Used twice: its principal is served from the API's memory by now.
    expect((await use()).statusCode).toBe(200);
    expect((await use()).statusCode).toBe(200);
    await revokeKey(ctx.db, spare.id);
    expect((await use()).statusCode).toBe(401);
  });

  test('a key created with a lifetime works until it expires', async () => {
    const created = await send('admin', 'POST', {
      url: '/v1/keys',
      payload: { role: 'ops', expiresIn: '1h' } as InjectOptions['payload'],
    });
    expect(created.statusCode).toBe(201);
    const body = created.json() as { id: string; key: string; expiresAt: string };
    expect(Date.parse(body.expiresAt) - Date.now()).toBeGreaterThan(3590_000);
    const use = () => app.inject({ url: '/v1/ops/sla', headers: { authorization: `Bearer ${body.key}` } });
    expect((await use()).statusCode).toBe(200);
    await ctx.db
      .updateTable('api_keys')
      .set({ expires_at: sql`now() - interval '1 second'` })
      .where('id', '=', body.id)
      .execute();
    const refused = await use();
    expect(refused.statusCode).toBe(401);
    expect(refused.json()).toMatchObject({ error: { code: 'UNAUTHORIZED' } });
    // A clinic key must name an existing site; a lifetime must parse.
    for (const payload of [
      { role: 'clinic' },
      { role: 'clinic', siteId: 'no-such-site' },
      { role: 'ops', siteId: 'site-a' },
      { role: 'ops', expiresIn: 'forever' },
    ]) {
      const res = await send('admin', 'POST', {
        url: '/v1/keys',
        payload: payload as InjectOptions['payload'],
      });
      expect(res.statusCode, JSON.stringify(payload)).toBe(400);
    }
  });

  test.each([
    ['30d', 30 * 86_400_000],
    ['12h', 12 * 3_600_000],
    ['90m', 90 * 60_000],
    ['45s', 45_000],
    ['2w', 14 * 86_400_000],
    [' 7D ', 7 * 86_400_000],
  ])('lifetime %j is %d ms', (spec, ms) => {
    expect(parseDuration(spec)).toBe(ms);
  });

  test.each(['', '0d', '30', 'd', '1y', '-1d', '99999999d', '1.5h'])('lifetime %j is refused', (spec) => {
    expect(() => parseDuration(spec)).toThrow(/not a lifetime/);
  });
});

describe('authentication comes before validation', () => {
  test('a request without a valid key gets 401 whatever its body or ids, and a wrong role 403', async () => {
    const malformed = [
      { method: 'PUT', url: '/v1/rules', payload: { rules: 'not a list' } },
      { method: 'POST', url: '/v1/keys', payload: { role: 42 } },
      { method: 'POST', url: '/v1/uploads/check', payload: { sha256: ['not-hex'] } },
      { method: 'GET', url: '/v1/worklist?limit=-5' },
      { method: 'GET', url: '/v1/cases/not-a-uuid' },
    ];
    for (const r of malformed) {
      const req = { url: r.url, ...(r.payload ? { payload: r.payload } : {}) };
      expect((await send('none', r.method, req)).statusCode, `${r.method} ${r.url}`).toBe(401);
      expect((await send('revoked', r.method, req)).statusCode, `${r.method} ${r.url}`).toBe(401);
    }
    // A valid key of the wrong role is refused before its body is looked at too.
    expect((await send('clinicA', 'PUT', { url: '/v1/rules', payload: { rules: 'x' } })).statusCode).toBe(
      403,
    );
    // With the right key, the same body is a validation error.
    expect((await send('admin', 'PUT', { url: '/v1/rules', payload: { rules: 'x' } })).statusCode).toBe(400);
  });
});

describe('rate limit on failed authentication', () => {
  test('20 failures a minute from one address: then 429 RATE_LIMITED, valid keys included; other addresses unaffected', async () => {
    const address = '192.0.2.77';
    for (let i = 0; i < 20; i++) {
      const res = await send(
        'none',
        'GET',
        { url: '/v1/cases', headers: { authorization: `Bearer guess-${i}` } },
        address,
      );
      expect(res.statusCode).toBe(401);
    }
    const blocked = await send('none', 'GET', { url: '/v1/cases' }, address);
    expect(blocked.statusCode).toBe(429);
    expect(blocked.json()).toMatchObject({ error: { code: 'RATE_LIMITED' } });
    const retryAfter = Number(blocked.headers['retry-after']);
    expect(retryAfter).toBeGreaterThan(0);
    expect(retryAfter).toBeLessThanOrEqual(60);
    // The right key from the blocked address learns nothing either.
    expect((await send('ops', 'GET', { url: '/v1/ops/queues' }, address)).statusCode).toBe(429);
    // Health checks stay reachable; other addresses are not affected.
    expect((await send('none', 'GET', { url: '/healthz' }, address)).statusCode).toBe(200);
    expect((await send('ops', 'GET', { url: '/v1/ops/queues' }, '192.0.2.78')).statusCode).toBe(200);
    // Successful requests do not count.
    for (let i = 0; i < 30; i++) {
      expect((await send('ops', 'GET', { url: '/healthz' }, '192.0.2.79')).statusCode).toBe(200);
    }
    expect((await send('ops', 'GET', { url: '/v1/ops/queues' }, '192.0.2.79')).statusCode).toBe(200);
  });

  test('the count is shared through Redis and the block ends with the window', async () => {
    const prefix = `${ctx.config.queuePrefix}:limiter-test`;
    const a = createAuthFailureLimiter(ctx.redis, prefix, ctx.log, { limit: 3, windowSeconds: 1 });
    const b = createAuthFailureLimiter(ctx.redis, prefix, ctx.log, { limit: 3, windowSeconds: 1 });
    await a.recordFailure('198.51.100.1');
    await b.recordFailure('198.51.100.1');
    expect(a.retryAfter('198.51.100.1')).toBe(0);
    // The third failure, counted by the other process, reaches the limit: that process blocks the address.
    await a.recordFailure('198.51.100.1');
    expect(a.retryAfter('198.51.100.1')).toBeGreaterThan(0);
    // Process b learns of it on the next failure it sees.
    expect(b.retryAfter('198.51.100.1')).toBe(0);
    await b.recordFailure('198.51.100.1');
    expect(b.retryAfter('198.51.100.1')).toBeGreaterThan(0);
    expect(a.retryAfter('198.51.100.2')).toBe(0);
    await waitFor(
      'the window to end',
      async () => (a.retryAfter('198.51.100.1') === 0 ? true : undefined),
      3000,
    );
    await a.recordFailure('198.51.100.1');
    expect(a.retryAfter('198.51.100.1')).toBe(0);
  });
});
