import { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { addSite } from '../../src/cli/admin-commands.js';
import type { Context } from '../../src/context.js';
import { handleIngest } from '../../src/pipeline/handlers/handle-ingest.js';
import { handleProcess } from '../../src/pipeline/handlers/handle-process.js';
import { handleSweep } from '../../src/pipeline/handlers/handle-sweep.js';
import {
  enqueueIngestJobs,
  INGEST_BATCH_FILES,
  ingestJobFileIds,
  planIngestJobs,
} from '../../src/pipeline/queues.js';
import {
  type IncomingFile,
  newUploadId,
  receiveFiles,
  type StoredObject,
} from '../../src/pipeline/receive-files.js';
import { recordUnfinishedFailure } from '../../src/pipeline/record-failure.js';
import { imageElements, writeDicom } from '../helpers/dicom-writer.js';
import { createTestContext } from '../helpers/test-context.js';

/** The files of one upload request are ingested by one job, in one transaction; each bad file fails alone. */

let t: Awaited<ReturnType<typeof createTestContext>>;
let ctx: Context;

beforeAll(async () => {
  t = await createTestContext();
  ctx = t.ctx;
  await addSite(ctx.db, { id: 'clinic-a', jurisdiction: 'KE' });
});

afterAll(async () => {
  await t?.dispose();
});

function ctInstance(
  study: string,
  n: number,
  options: { sopUid?: string; description?: string } = {},
): Uint8Array {
  const pixels = new Int16Array(16 * 16).map((_, i) => i * 3 + n - 500);
  return writeDicom(
    imageElements({
      rows: 16,
      columns: 16,
      bitsAllocated: 16,
      pixelRepresentation: 1,
      pixelData: pixels,
      extra: [
        { tag: 0x00080016, vr: 'UI', value: '1.2.840.10008.5.1.4.1.1.2' },
        { tag: 0x00080018, vr: 'UI', value: options.sopUid ?? `${study}.${n}` },
        { tag: 0x00080060, vr: 'CS', value: 'CT' },
        ...(options.description ? [{ tag: 0x00081030, vr: 'LO', value: options.description }] : []),
        { tag: 0x0020000d, vr: 'UI', value: study },
        { tag: 0x0020000e, vr: 'UI', value: `${study}.0` },
        { tag: 0x00200013, vr: 'IS', value: String(n) },
      ],
    }),
  );
}

/** Stores the files through the same path as `POST /v1/uploads` (whose enqueue is not run by any worker here). */
async function upload(files: Array<[string, Uint8Array]>): Promise<StoredObject[]> {
  async function* parts(): AsyncGenerator<IncomingFile> {
    for (const [name, bytes] of files) yield { name, body: Readable.from([Buffer.from(bytes)]) };
  }
  return receive(parts());
}

function receive(parts: AsyncIterable<IncomingFile>): Promise<StoredObject[]> {
  return receiveFiles(
    ctx,
    {
      id: newUploadId(),
      siteId: 'clinic-a',
      requestId: null,
      actor: { keyId: null, role: 'clinic' },
      channel: 'upload',
    },
    parts,
    () => ({ priority: 'routine', notes: null }),
  );
}

const truncatedDicom = (() => {
  const bytes = new Uint8Array(132 + 20);
  bytes.set(new TextEncoder().encode('DICM'), 128);
  return bytes;
})();

describe('batch ingest', () => {
  test('good files join one case in one job; corrupt and unknown files fail alone, with their codes', async () => {
    const study = '2.25.880001';
    const stored = await upload([
      ['a.dcm', ctInstance(study, 1)],
      ['broken.dcm', truncatedDicom],
      ['b.dcm', ctInstance(study, 2)],
      ['notes.txt', new TextEncoder().encode('not a medical file\n')],
    ]);
    const ids = stored.map((f) => f.id);
    const jc = { ctx, log: ctx.log };
    expect(await handleIngest(jc, { fileIds: ids })).toBe('SUCCESS');

    const rows = await ctx.db
      .selectFrom('files')
      .select(['id', 'name', 'status', 'error_code', 'case_id', 'attempts', 'ingested_at'])
      .where('id', 'in', ids)
      .orderBy('name')
      .execute();
    const byName = Object.fromEntries(rows.map((r) => [r.name, r]));
    expect(byName['broken.dcm']).toMatchObject({
      status: 'failed',
      error_code: 'CORRUPT_FILE',
      case_id: null,
    });
    expect(byName['notes.txt']).toMatchObject({ status: 'failed', error_code: 'UNSUPPORTED_FORMAT' });
    expect(byName['a.dcm']!.case_id).toBeTruthy();
    expect(byName['b.dcm']!.case_id).toBe(byName['a.dcm']!.case_id);
    expect(rows.map((r) => r.attempts)).toEqual([1, 1, 1, 1]);
    const kase = await ctx.db
      .selectFrom('cases')
      .select(['status', 'study_instance_uid'])
      .where('id', '=', byName['a.dcm']!.case_id!)
      .executeTakeFirstOrThrow();
    expect(kase).toEqual({ status: 'processing', study_instance_uid: study });
    // One debounced process job for the case, whatever the number of its files in the batch.
    const processJobs = (await ctx.queues.process.getJobs(['delayed', 'waiting'])).filter(
      (j) => j.data.caseId === byName['a.dcm']!.case_id,
    );
    expect(processJobs).toHaveLength(1);

    // Redelivered: nothing is done twice, and the failed files are not tried again.
    expect(await handleIngest(jc, { fileIds: ids })).toBe('SKIPPED');
    const again = await ctx.db.selectFrom('files').select('attempts').where('id', 'in', ids).execute();
    expect(again.map((r) => r.attempts)).toEqual([1, 1, 1, 1]);
  });

  test('an instance sent twice in one request is stored once', async () => {
    const study = '2.25.880002';
    const bytes = ctInstance(study, 1);
    const stored = await upload([
      ['first.dcm', bytes],
      ['again.dcm', bytes],
    ]);
    await handleIngest({ ctx, log: ctx.log }, { fileIds: stored.map((f) => f.id) });
    const rows = await ctx.db
      .selectFrom('files')
      .select(['id', 'name', 'duplicate_of', 'object_key'])
      .where(
        'id',
        'in',
        stored.map((f) => f.id),
      )
      .execute();
    const first = rows.find((r) => r.name === 'first.dcm')!;
    const second = rows.find((r) => r.name === 'again.dcm')!;
    expect(first.duplicate_of).toBeNull();
    expect(second.duplicate_of).toBe(first.id);
    expect(second.object_key).toBe(first.object_key);
    // The second copy's own object is gone; the first is still readable.
    expect(await ctx.storage.head(stored.find((f) => f.name === 'again.dcm')!.key)).toBeNull();
    expect((await ctx.storage.getBytes(first.object_key)).length).toBe(bytes.length);
  });

  test('a file the database refuses (a NUL inside its UID) fails alone; a NUL inside text is dropped', async () => {
    const study = '2.25.880004';
    const stored = await upload([
      ['a.dcm', ctInstance(study, 1, { description: 'CT\u0000HEAD' })],
      ['bad-uid.dcm', ctInstance(study, 2, { sopUid: '2.25.880004\u00002' })],
      ['c.dcm', ctInstance(study, 3)],
    ]);
    expect(await handleIngest({ ctx, log: ctx.log }, { fileIds: stored.map((f) => f.id) })).toBe('SUCCESS');
    const rows = await ctx.db
      .selectFrom('files')
      .select(['name', 'status', 'error_code', 'case_id', 'metadata'])
      .where(
        'id',
        'in',
        stored.map((f) => f.id),
      )
      .orderBy('name')
      .execute();
    expect(rows.map((r) => [r.name, r.status, r.error_code])).toEqual([
      ['a.dcm', 'processing', null],
      ['bad-uid.dcm', 'failed', 'CORRUPT_FILE'],
      ['c.dcm', 'processing', null],
    ]);
    expect(rows[0]!.case_id).toBe(rows[2]!.case_id);
    expect(rows[0]!.metadata.studyDescription).toBe('CTHEAD');
  });

  test('a file held by its batch and by a single-file job from the sweep is attached once, and neither fails it', async () => {
    const study = '2.25.880005';
    const stored = await upload([
      ['a.dcm', ctInstance(study, 1)],
      ['b.dcm', ctInstance(study, 2)],
    ]);
    const jc = { ctx, log: ctx.log };
    const outcomes = await Promise.all([
      handleIngest(jc, { fileIds: stored.map((f) => f.id) }),
      handleIngest(jc, { fileId: stored[0]!.id }),
    ]);
    expect(outcomes).toContain('SUCCESS');
    const rows = await ctx.db
      .selectFrom('files')
      .select(['status', 'case_id', 'attempts'])
      .where(
        'id',
        'in',
        stored.map((f) => f.id),
      )
      .execute();
    expect(rows.every((r) => r.status === 'processing' && r.case_id === rows[0]!.case_id)).toBe(true);
    const cases = await ctx.db
      .selectFrom('cases')
      .select('id')
      .where('study_instance_uid', '=', study)
      .execute();
    expect(cases).toHaveLength(1);
  });

  test('a part whose stream is destroyed without an error ends the request with an error, and keeps nothing', async () => {
    const before = await ctx.db.selectFrom('files').select('id').execute();
    async function* parts(): AsyncGenerator<IncomingFile> {
      yield { name: 'whole.dcm', body: Readable.from([Buffer.from(ctInstance('2.25.880006', 1))]) };
      const cut = new Readable({ read() {} });
      cut.push(Buffer.alloc(1000));
      setTimeout(() => cut.destroy(), 20);
      yield { name: 'cut.dcm', body: cut };
    }
    await expect(receive(parts())).rejects.toThrow();
    const after = await ctx.db.selectFrom('files').select('id').execute();
    expect(after.length).toBe(before.length);
  });

  test('a single-file job keeps failing on its own, so ops see its reason on the job', async () => {
    const [f] = await upload([['broken.dcm', truncatedDicom]]);
    await expect(handleIngest({ ctx, log: ctx.log }, { fileId: f!.id })).rejects.toMatchObject({
      code: 'CORRUPT_FILE',
    });
  });

  test('a batch that gives up stamps only the files it did not finish', async () => {
    const study = '2.25.880003';
    const stored = await upload([
      ['done.dcm', ctInstance(study, 1)],
      ['left.dcm', ctInstance(study, 2)],
    ]);
    const [done, left] = stored;
    await handleIngest({ ctx, log: ctx.log }, { fileId: done!.id });
    await recordUnfinishedFailure(ctx.db, [done!.id, left!.id], new Error('storage unreachable'));
    const rows = await ctx.db
      .selectFrom('files')
      .select(['id', 'status', 'error_code', 'error_message'])
      .where(
        'id',
        'in',
        stored.map((f) => f.id),
      )
      .execute();
    expect(rows.find((r) => r.id === done!.id)).toMatchObject({ status: 'processing', error_code: null });
    expect(rows.find((r) => r.id === left!.id)).toMatchObject({
      status: 'failed',
      error_code: 'INTERNAL',
      error_message: 'storage unreachable',
    });
  });

  test('the sweep leaves files whose batch is still queued, and queues them one by one once it is lost', async () => {
    const study = '2.25.880007';
    const stored = await upload([
      ['a.dcm', ctInstance(study, 1)],
      ['b.dcm', ctInstance(study, 2)],
    ]);
    const ids = stored.map((f) => f.id);
    const rows = await ctx.db.selectFrom('files').select('ingest_job').where('id', 'in', ids).execute();
    const batchJob = `ingest-batch-${ids[0]}`;
    expect(rows.map((r) => r.ingest_job)).toEqual([batchJob, batchJob]);
    // Every row counts as old enough to be stuck.
    const sweep = () =>
      handleSweep({ ctx: { ...ctx, config: { ...ctx.config, stuckAfterSeconds: 0 } }, log: ctx.log });
    const singleJobs = async () =>
      (await Promise.all(ids.map((id) => ctx.queues.ingest.getJob(`ingest-${id}`)))).filter(
        (j) => j !== undefined,
      );

    // The batch waits behind a backlog (no worker runs here): not stuck.
    await sweep();
    expect(await singleJobs()).toEqual([]);
    // Its job is lost (Redis flushed, say): the sweep queues each file again.
    await ctx.queues.ingest.remove(batchJob);
    await sweep();
    expect((await singleJobs()).flatMap((j) => ingestJobFileIds(j.data)).sort()).toEqual([...ids].sort());
  });

  test('a process run that died between the series and the study thumbnail is finished by the next run', async () => {
    const study = '2.25.880008';
    const stored = await upload([
      ['a.dcm', ctInstance(study, 1)],
      ['b.dcm', ctInstance(study, 2)],
    ]);
    const jc = { ctx, log: ctx.log };
    await handleIngest(jc, { fileIds: stored.map((f) => f.id) });
    const { case_id: caseId } = await ctx.db
      .selectFrom('files')
      .select('case_id')
      .where('id', '=', stored[0]!.id)
      .executeTakeFirstOrThrow();
    await handleProcess(jc, { caseId: caseId! });
    const names = async () =>
      (await ctx.db.selectFrom('artifacts').select('name').where('case_id', '=', caseId!).execute())
        .map((a) => a.name)
        .sort();
    expect(await names()).toEqual(['series-2.25.880008.0.webp', 'thumbnail']);
    // The crash: the series picture saved, the study thumbnail not, the files not stamped processed.
    await ctx.db
      .deleteFrom('artifacts')
      .where('case_id', '=', caseId!)
      .where('name', '=', 'thumbnail')
      .execute();
    await ctx.db
      .updateTable('files')
      .set({ processed_at: null, status: 'processing' })
      .where('case_id', '=', caseId!)
      .execute();
    await handleProcess(jc, { caseId: caseId! });
    expect(await names()).toEqual(['series-2.25.880008.0.webp', 'thumbnail']);
  });

  test('a request is enqueued as jobs of at most INGEST_BATCH_FILES files, once however often it is asked', async () => {
    const ids = Array.from(
      { length: INGEST_BATCH_FILES * 2 + 3 },
      (_, i) => `00000000-0000-4000-8000-${String(i).padStart(12, '0')}`,
    );
    await enqueueIngestJobs(ctx.queues, planIngestJobs(ids));
    await enqueueIngestJobs(ctx.queues, planIngestJobs(ids));
    const jobs = (await ctx.queues.ingest.getJobs(['waiting'])).filter((j) =>
      ingestJobFileIds(j.data).some((id) => ids.includes(id)),
    );
    expect(jobs.map((j) => ingestJobFileIds(j.data).length).sort((a, b) => a - b)).toEqual([
      3,
      INGEST_BATCH_FILES,
      INGEST_BATCH_FILES,
    ]);
    expect(jobs.flatMap((j) => ingestJobFileIds(j.data)).sort()).toEqual([...ids].sort());
    expect(jobs.every((j) => j.id === `ingest-batch-${ingestJobFileIds(j.data)[0]}`)).toBe(true);
  });
});
