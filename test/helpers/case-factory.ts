import { randomUUID } from 'node:crypto';
import type { Context } from '../../src/context.js';
import type { CaseKind, Priority } from '../../src/db/schema.js';
import { handleRoute } from '../../src/pipeline/handlers/handle-route.js';

export interface CaseSpec {
  siteId: string;
  kind?: CaseKind;
  priority?: Priority;
  modality?: string;
  bodyPart?: string;
  flags?: string[];
  patientId?: string;
  /** When the case arrived: its SLA clock starts here. */
  createdAt?: Date;
}

/**
 * A processed case as ingest and process leave it (status ready, one processed file with technical metadata and
 * patient demographics apart), without the bytes. Routing and everything after it run for real.
 */
export async function createReadyCase(ctx: Context, spec: CaseSpec): Promise<string> {
  const uploadId = randomUUID();
  const fileId = randomUUID();
  const priority = spec.priority ?? 'routine';
  await ctx.db
    .insertInto('uploads')
    .values({ id: uploadId, site_id: spec.siteId, priority, notes: null, request_id: null })
    .execute();
  const kase = await ctx.db
    .insertInto('cases')
    .values({
      site_id: spec.siteId,
      kind: spec.kind ?? 'imaging',
      priority,
      upload_id: uploadId,
      notes: null,
      priority_reason: null,
      study_instance_uid: null,
      metadata: JSON.stringify(spec.modality ? { modality: spec.modality } : {}),
      status: 'ready',
      flags: spec.flags ?? [],
      ...(spec.createdAt ? { created_at: spec.createdAt } : {}),
    })
    .returning('id')
    .executeTakeFirstOrThrow();
  await ctx.db
    .insertInto('files')
    .values({
      id: fileId,
      upload_id: uploadId,
      site_id: spec.siteId,
      case_id: kase.id,
      name: 'sample',
      object_key: `test/${fileId}`,
      sha256: '0'.repeat(64),
      bytes: 1,
      content_type: null,
      kind: spec.kind ?? 'imaging',
      format: spec.kind === 'ecg' ? 'wfdb' : spec.kind === 'pathology' ? 'aperio-svs' : 'dicom',
      status: 'processed',
      metadata: JSON.stringify({
        ...(spec.modality ? { modality: spec.modality } : {}),
        ...(spec.bodyPart ? { bodyPartExamined: spec.bodyPart } : {}),
      }),
      patient: spec.patientId ? JSON.stringify({ id: spec.patientId, name: 'Test^Patient' }) : null,
    })
    .execute();
  return kase.id;
}

/** Creates a ready case and routes it with the real route handler. */
export async function createRoutedCase(ctx: Context, spec: CaseSpec): Promise<string> {
  const id = await createReadyCase(ctx, spec);
  await handleRoute({ ctx, log: ctx.log }, { caseId: id });
  return id;
}
