import { readFile } from 'node:fs/promises';
import http from 'node:http';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import type { App } from '../../src/api/build-app.js';
import { STOW_FAILURE, STOW_WARNING } from '../../src/api/routes/dicomweb.js';
import { startApi } from '../../src/api/start-api.js';
import { addSite, createKey } from '../../src/cli/admin-commands.js';
import type { Context } from '../../src/context.js';
import { parseDicom } from '../../src/formats/dicom/parse-dicom.js';
import { type RunningWorkers, runWorkers } from '../../src/pipeline/run-worker.js';
import { corpusPath, hasCorpus } from '../corpus.js';
import { waitFor } from '../helpers/api-client.js';
import { imageElements, writeDicom } from '../helpers/dicom-writer.js';
import { createTestContext } from '../helpers/test-context.js';

const BOUNDARY = 'stow-boundary-8d1f';
const STOW_TYPE = `multipart/related; type="application/dicom"; boundary=${BOUNDARY}`;

type DicomJson = Record<string, { vr: string; Value?: unknown[] }>;
type Item = Record<string, { vr: string; Value?: unknown[] }>;

interface Part {
  bytes: Uint8Array;
  contentType?: string | null;
}

/** A multipart/related body; `close: false` leaves out the closing boundary. */
function related(parts: Part[], options: { close?: boolean } = {}): Buffer {
  const chunks: Buffer[] = [Buffer.from('a preamble that must be ignored\r\n')];
  for (const p of parts) {
    const type = p.contentType === undefined ? 'application/dicom' : p.contentType;
    chunks.push(Buffer.from(`--${BOUNDARY}\r\n${type ? `Content-Type: ${type}\r\n` : ''}\r\n`));
    chunks.push(Buffer.from(p.bytes), Buffer.from('\r\n'));
  }
  if (options.close !== false) chunks.push(Buffer.from(`--${BOUNDARY}--\r\n`));
  return Buffer.concat(chunks);
}

/** A small Part 10 instance with the UIDs given. */
function instance(uids: { study: string; series?: string; sop: string }): Uint8Array {
  return writeDicom(
    imageElements({
      rows: 4,
      columns: 4,
      bitsAllocated: 8,
      pixelData: new Uint8Array(16).map((_, i) => i * 16),
      extra: [
        { tag: 0x0020000d, vr: 'UI', value: uids.study },
        { tag: 0x0020000e, vr: 'UI', value: uids.series ?? `${uids.study}.1` },
        { tag: 0x00080018, vr: 'UI', value: uids.sop },
      ],
    }),
    { sopInstanceUid: uids.sop },
  );
}

async function stow(
  url: string,
  key: string | null,
  body: Uint8Array,
  options: { path?: string; contentType?: string | null } = {},
): Promise<{
  status: number;
  type: string;
  body: DicomJson & { error?: { code: string; message: string } };
}> {
  const headers: Record<string, string> = {};
  if (options.contentType !== null) headers['content-type'] = options.contentType ?? STOW_TYPE;
  if (key) headers.authorization = `Bearer ${key}`;
  const res = await fetch(`${url}${options.path ?? '/dicomweb/studies'}`, { method: 'POST', headers, body });
  const type = res.headers.get('content-type') ?? '';
  return { status: res.status, type, body: (await res.json()) as DicomJson & { error?: never } };
}

function items(body: DicomJson, tag: '00081199' | '00081198'): Item[] {
  return (body[tag]?.Value ?? []) as Item[];
}

function value(item: Item, tag: string): unknown {
  return item[tag]?.Value?.[0];
}

function referencedSops(body: DicomJson): string[] {
  return items(body, '00081199').map((i) => value(i, '00081155') as string);
}

describe('STOW-RS into the pipeline', () => {
  let t: Awaited<ReturnType<typeof createTestContext>>;
  let ctx: Context;
  let app: App;
  let workers: RunningWorkers;
  let url: string;
  let clinicKey: string;
  let opsKey: string;

  beforeAll(async () => {
    t = await createTestContext({ SWEEP_INTERVAL_SECONDS: '1' });
    ctx = t.ctx;
    await addSite(ctx.db, { id: 'stow-clinic', jurisdiction: 'KE' });
    clinicKey = (await createKey(ctx.db, { role: 'clinic', site: 'stow-clinic' })).key;
    opsKey = (await createKey(ctx.db, { role: 'ops' })).key;
    workers = await runWorkers(ctx);
    ({ app, url } = await startApi(ctx, 0));
  });

  afterAll(async () => {
    await app?.close();
    await workers?.close();
    await t?.dispose();
  });

  async function fileCount(): Promise<number> {
    const row = await ctx.db
      .selectFrom('files')
      .select((eb) => eb.fn.countAll<string>().as('n'))
      .executeTakeFirstOrThrow();
    return Number(row.n);
  }

  async function storedObjects(): Promise<string[]> {
    const keys: string[] = [];
    for await (const o of ctx.storage.list('sites/stow-clinic/uploads/')) keys.push(o.key);
    return keys.sort();
  }

  async function filesOfUpload(sops: string[]) {
    return ctx.db
      .selectFrom('files')
      .selectAll()
      .where(
        'name',
        'in',
        sops.map((s) => `${s}.dcm`),
      )
      .execute();
  }

  describe.runIf(hasCorpus)('corpus instances', () => {
    test('several instances in one request: 200, each referenced, and cases grouped by study', async () => {
      const names = ['CT_small.dcm', 'MR_small.dcm', 'SC_rgb_jpeg_dcmtk.dcm', 'SC_rgb_small_odd.dcm'];
      const files = await Promise.all(names.map((n) => readFile(corpusPath(`dicom/pydicom/${n}`))));
      const parsed = files.map((f) => parseDicom(f));
      const res = await stow(url, clinicKey, related(files.map((bytes) => ({ bytes }))), {
        path: '/dicomweb/studies?priority=stat',
      });
      expect(res.status).toBe(200);
      expect(res.type).toMatch(/^application\/dicom\+json/);
      expect(res.body['00081198']).toBeUndefined();
      expect(referencedSops(res.body)).toEqual(parsed.map((p) => p.sopInstanceUid));
      for (const [i, item] of items(res.body, '00081199').entries()) {
        const p = parsed[i]!;
        expect(value(item, '00081150')).toBe(p.sopClassUid);
        expect(value(item, '00081190')).toMatch(
          new RegExp(
            `/dicomweb/studies/${p.studyInstanceUid}/series/${p.seriesInstanceUid}/instances/${p.sopInstanceUid}$`,
          ),
        );
        expect(item['00081196']).toBeUndefined();
      }
      // Three studies: no single study URL at the top.
      expect(res.body['00081190']).toBeUndefined();

      const rows = await filesOfUpload(parsed.map((p) => p.sopInstanceUid!));
      expect(rows).toHaveLength(4);
      expect(new Set(rows.map((r) => r.upload_id)).size).toBe(1);
      const upload = await ctx.db
        .selectFrom('uploads')
        .selectAll()
        .where('id', '=', rows[0]!.upload_id)
        .executeTakeFirstOrThrow();
      expect(upload.priority).toBe('stat');
      expect(upload.site_id).toBe('stow-clinic');
      for (const [i, r] of rows.entries()) {
        const original = files[names.findIndex((_, j) => `${parsed[j]!.sopInstanceUid}.dcm` === r.name)]!;
        expect(Number(r.bytes)).toBe(original.length);
        expect(r.content_type).toBe('application/dicom');
        expect(r.object_key, `row ${i}`).toContain(`/uploads/${upload.id}/`);
      }

      // The ingest jobs ran: every instance joined the case of its study.
      const ingested = await waitFor('instances to join cases', async () => {
        const now = await filesOfUpload(parsed.map((p) => p.sopInstanceUid!));
        const failed = now.find((r) => r.status === 'failed');
        if (failed) throw new Error(`${failed.name} failed: ${failed.error_code} ${failed.error_message}`);
        return now.every((r) => r.case_id) ? now : undefined;
      });
      const caseOf = (sop: string) => ingested.find((r) => r.name === `${sop}.dcm`)!.case_id!;
      const sops = parsed.map((p) => p.sopInstanceUid!);
      expect(caseOf(sops[2]!)).toBe(caseOf(sops[3]!));
      expect(new Set(sops.map(caseOf)).size).toBe(3);
      const cases = await ctx.db
        .selectFrom('cases')
        .select(['id', 'study_instance_uid', 'priority', 'kind'])
        .where('id', 'in', sops.map(caseOf))
        .execute();
      for (const [i, sop] of sops.entries()) {
        const c = cases.find((x) => x.id === caseOf(sop))!;
        expect(c.study_instance_uid).toBe(parsed[i]!.studyInstanceUid);
        expect(c.priority).toBe('stat');
        expect(c.kind).toBe('imaging');
      }
      const audit = await ctx.db
        .selectFrom('audit_events')
        .select('detail')
        .where('request_id', 'is not', null)
        .where('action', '=', 'upload.received')
        .execute();
      expect(audit.map((a) => (a.detail as { uploadId: string; channel: string }).channel)).toContain(
        'stow-rs',
      );
    });
  });

  test('a part that is not DICOM fails with 0xC000; the others are stored (202)', async () => {
    const study = '2.25.5100';
    const parts: Part[] = [
      { bytes: instance({ study, sop: '2.25.5101' }) },
      { bytes: Buffer.from('this is a clinic letter, not an image\n') },
      { bytes: instance({ study, sop: '2.25.5102' }) },
    ];
    const before = await storedObjects();
    const res = await stow(url, clinicKey, related(parts));
    expect(res.status).toBe(202);
    expect(referencedSops(res.body)).toEqual(['2.25.5101', '2.25.5102']);
    const failed = items(res.body, '00081198');
    expect(failed).toHaveLength(1);
    expect(value(failed[0]!, '00081197')).toBe(STOW_FAILURE.cannotUnderstand);
    expect(value(failed[0]!, '00081197')).toBe(0xc000);
    // The UIDs of an unreadable part are unknown: present, empty.
    expect(failed[0]!['00081155']).toEqual({ vr: 'UI' });
    // One study: its URL is at the top.
    expect(res.body['00081190']?.Value?.[0]).toMatch(/\/dicomweb\/studies\/2\.25\.5100$/);

    const rows = await filesOfUpload(['2.25.5101', '2.25.5102']);
    expect(rows).toHaveLength(2);
    // Only the two instances were kept in storage: the refused part was deleted.
    const added = (await storedObjects()).filter((k) => !before.includes(k));
    expect(added.sort()).toEqual(rows.map((r) => r.object_key).sort());
    await waitFor('both instances in one case', async () => {
      const now = await filesOfUpload(['2.25.5101', '2.25.5102']);
      return now.every((r) => r.case_id) && now[0]!.case_id === now[1]!.case_id ? true : undefined;
    });
  });

  test('a part of another media type fails without being stored; an instance without UIDs fails with 0xA900', async () => {
    const noStudy = writeDicom(
      imageElements({ rows: 2, columns: 2, bitsAllocated: 8, pixelData: new Uint8Array(4) }).filter(
        (e) => e.tag !== 0x0020000d,
      ),
    );
    const res = await stow(
      url,
      clinicKey,
      related([
        { bytes: Buffer.from('{"not":"dicom"}'), contentType: 'application/json' },
        { bytes: noStudy },
        { bytes: instance({ study: '2.25.5200', sop: '2.25.5201' }), contentType: null },
      ]),
    );
    expect(res.status).toBe(202);
    expect(items(res.body, '00081198').map((i) => value(i, '00081197'))).toEqual([
      STOW_FAILURE.cannotUnderstand,
      STOW_FAILURE.dataSetDoesNotMatchSopClass,
    ]);
    // The instance without a study still names itself.
    expect(value(items(res.body, '00081198')[1]!, '00081155')).toBe('2.25.1001');
    expect(referencedSops(res.body)).toEqual(['2.25.5201']);
  });

  test('an instance in a video transfer syntax fails with 0xC122, as DIMSE refuses it, and is not stored', async () => {
    const before = await storedObjects();
    const video = writeDicom(
      imageElements({
        rows: 4,
        columns: 4,
        bitsAllocated: 8,
        pixelData: { fragments: [Uint8Array.of(0, 0, 1, 0xb3)] },
        extra: [
          { tag: 0x0020000d, vr: 'UI', value: '2.25.5800' },
          { tag: 0x0020000e, vr: 'UI', value: '2.25.5800.1' },
          { tag: 0x00080018, vr: 'UI', value: '2.25.5801' },
        ],
      }),
      { sopInstanceUid: '2.25.5801', transferSyntaxUid: '1.2.840.10008.1.2.4.102' },
    );
    const res = await stow(
      url,
      clinicKey,
      related([{ bytes: video }, { bytes: instance({ study: '2.25.5800', sop: '2.25.5802' }) }]),
    );
    expect(res.status).toBe(202);
    const failed = items(res.body, '00081198');
    expect(failed.map((i) => [value(i, '00081155'), value(i, '00081197')])).toEqual([
      ['2.25.5801', STOW_FAILURE.transferSyntaxNotSupported],
    ]);
    expect(referencedSops(res.body)).toEqual(['2.25.5802']);
    expect((await storedObjects()).length).toBe(before.length + 1);
  });

  test('an instance stored despite irregular encoding carries warning 0xB007 (202)', async () => {
    const whole = instance({ study: '2.25.5250', sop: '2.25.5251' });
    // Pixel Data declares 16 bytes; only 8 follow.
    const cut = whole.subarray(0, whole.length - 8);
    const res = await stow(
      url,
      clinicKey,
      related([{ bytes: cut }, { bytes: instance({ study: '2.25.5250', sop: '2.25.5252' }) }]),
      {
        path: '/dicomweb/studies?priority=urgent',
      },
    );
    expect(res.status).toBe(202);
    expect(res.body['00081198']).toBeUndefined();
    const referenced = items(res.body, '00081199');
    expect(referenced.map((i) => [value(i, '00081155'), value(i, '00081196')])).toEqual([
      ['2.25.5251', STOW_WARNING.dataSetDoesNotMatchSopClass],
      ['2.25.5252', undefined],
    ]);
    expect(STOW_WARNING.dataSetDoesNotMatchSopClass).toBe(0xb007);
    expect(await filesOfUpload(['2.25.5251', '2.25.5252'])).toHaveLength(2);

    const badPriority = await stow(url, clinicKey, related([{ bytes: whole }]), {
      path: '/dicomweb/studies?priority=now',
    });
    expect(badPriority.status).toBe(400);
    expect(badPriority.body.error?.code).toBe('VALIDATION_FAILED');
  });

  test('/studies/{uid}: an instance of another study fails; all of them failing is 409', async () => {
    const target = '2.25.5300';
    const res = await stow(
      url,
      clinicKey,
      related([
        { bytes: instance({ study: target, sop: '2.25.5301' }) },
        { bytes: instance({ study: '2.25.5399', sop: '2.25.5302' }) },
      ]),
      { path: `/dicomweb/studies/${target}` },
    );
    expect(res.status).toBe(202);
    expect(referencedSops(res.body)).toEqual(['2.25.5301']);
    const failed = items(res.body, '00081198');
    expect(failed.map((i) => [value(i, '00081155'), value(i, '00081197')])).toEqual([
      ['2.25.5302', STOW_FAILURE.studyInstanceUidMismatch],
    ]);
    expect(res.body['00081190']?.Value?.[0]).toMatch(new RegExp(`/dicomweb/studies/${target}$`));
    expect(await filesOfUpload(['2.25.5302'])).toEqual([]);

    const uploadsBefore = await ctx.db.selectFrom('uploads').select('id').execute();
    const none = await stow(
      url,
      clinicKey,
      related([{ bytes: instance({ study: '2.25.5399', sop: '2.25.5303' }) }]),
      { path: `/dicomweb/studies/${target}` },
    );
    expect(none.status).toBe(409);
    expect(none.type).toMatch(/^application\/dicom\+json/);
    expect(none.body['00081199']).toBeUndefined();
    expect(items(none.body, '00081198')).toHaveLength(1);
    // Nothing stored, so no upload either.
    expect(await ctx.db.selectFrom('uploads').select('id').execute()).toHaveLength(uploadsBefore.length);

    const badUid = await stow(
      url,
      clinicKey,
      related([{ bytes: instance({ study: target, sop: '2.25.1' }) }]),
      {
        path: '/dicomweb/studies/not-a-uid',
      },
    );
    expect(badUid.status).toBe(400);
  });

  test('authentication: no key is 401, a reader or ops key is 403, as for the API', async () => {
    const body = related([{ bytes: instance({ study: '2.25.5400', sop: '2.25.5401' }) }]);
    const none = await stow(url, null, body);
    expect(none.status).toBe(401);
    expect(none.body.error?.code).toBe('UNAUTHORIZED');
    const ops = await stow(url, opsKey, body);
    expect(ops.status).toBe(403);
    expect(ops.body.error?.code).toBe('FORBIDDEN');
    expect(await filesOfUpload(['2.25.5401'])).toEqual([]);
  });

  test.each([
    [null, /without Content-Type/],
    ['application/dicom', /multipart\/related/],
    ['multipart/form-data; boundary=x', /multipart\/related/],
    ['application/json', /multipart\/related/],
    [`multipart/related; type="application/dicom+json"; boundary=${BOUNDARY}`, /not supported yet/],
    [`multipart/related; type="application/dicom+xml"; boundary=${BOUNDARY}`, /not supported yet/],
    [`multipart/related; type="image/jpeg"; boundary=${BOUNDARY}`, /not supported/],
  ])('Content-Type %s is 415', async (contentType, message) => {
    const res = await stow(
      url,
      clinicKey,
      related([{ bytes: instance({ study: '2.25.5500', sop: '2.25.5501' }) }]),
      { contentType },
    );
    expect(res.status).toBe(415);
    expect(res.body.error?.code).toBe('UNSUPPORTED_FORMAT');
    expect(res.body.error?.message).toMatch(message);
  });

  test.each([
    [
      'no closing boundary',
      related([{ bytes: instance({ study: '2.25.56', sop: '2.25.5601' }) }], { close: false }),
    ],
    [
      'no closing boundary after two instances',
      related(
        [
          { bytes: instance({ study: '2.25.56', sop: '2.25.5602' }) },
          { bytes: instance({ study: '2.25.56', sop: '2.25.5603' }) },
        ],
        { close: false },
      ),
    ],
    ['no boundary at all', Buffer.from('just bytes')],
    ['no part', Buffer.from(`--${BOUNDARY}--\r\n`)],
  ])('a malformed body (%s) is 400 and nothing is recorded', async (_label, body) => {
    const files = await fileCount();
    const objects = await storedObjects();
    const res = await stow(url, clinicKey, body);
    expect(res.status).toBe(400);
    expect(res.body.error?.code).toBe('VALIDATION_FAILED');
    expect(await fileCount()).toBe(files);
    expect(await storedObjects()).toEqual(objects);
  });

  test('a body without a boundary parameter is 400', async () => {
    const res = await stow(url, clinicKey, Buffer.from('x'), {
      contentType: 'multipart/related; type="application/dicom"',
    });
    expect(res.status).toBe(400);
    expect(res.body.error?.message).toMatch(/boundary/);
  });

  test('the OpenAPI document lists the STOW-RS routes', async () => {
    const res = await fetch(`${url}/docs/json`);
    const spec = (await res.json()) as { paths: Record<string, unknown> };
    expect(Object.keys(spec.paths)).toEqual(
      expect.arrayContaining(['/dicomweb/studies', '/dicomweb/studies/{studyUid}']),
    );
  });
});

describe('STOW-RS limits', () => {
  let t: Awaited<ReturnType<typeof createTestContext>>;
  let app: App;
  let url: string;
  let key: string;

  beforeAll(async () => {
    t = await createTestContext({ MAX_UPLOAD_BYTES: '100000' });
    await addSite(t.ctx.db, { id: 'small-clinic', jurisdiction: 'KE' });
    key = (await createKey(t.ctx.db, { role: 'clinic', site: 'small-clinic' })).key;
    ({ app, url } = await startApi(t.ctx, 0));
  });

  afterAll(async () => {
    await app?.close();
    await t?.dispose();
  });

  test('instances over MAX_UPLOAD_BYTES together are 413, and nothing stays stored', async () => {
    const big = (sop: string) => {
      const bytes = instance({ study: '2.25.57', sop });
      return Buffer.concat([bytes, Buffer.alloc(60_000)]);
    };
    // Streamed (no Content-Length): the limit is met while reading, after the first instance was stored.
    const body = related([{ bytes: big('2.25.5701') }, { bytes: big('2.25.5702') }]);
    const res = await fetch(`${url}/dicomweb/studies`, {
      method: 'POST',
      headers: { authorization: `Bearer ${key}`, 'content-type': STOW_TYPE },
      body: Readable.toWeb(Readable.from([body])) as ReadableStream,
      duplex: 'half',
    } as RequestInit);
    expect(res.status).toBe(413);
    expect(((await res.json()) as { error: { code: string } }).error.code).toBe('PAYLOAD_TOO_LARGE');
    const objects: string[] = [];
    for await (const o of t.ctx.storage.list('sites/')) objects.push(o.key);
    expect(objects).toEqual([]);
    expect(await t.ctx.db.selectFrom('files').select('id').execute()).toEqual([]);

    const declared = await stow(url, key, Buffer.concat([body, Buffer.alloc(100_000)]));
    expect(declared.status).toBe(413);
  });
});

describe('STOW-RS streams', () => {
  let t: Awaited<ReturnType<typeof createTestContext>>;
  let app: App;
  let url: string;
  let key: string;

  beforeAll(async () => {
    // No workers here: the pipeline's own memory is not what this measures.
    t = await createTestContext();
    await addSite(t.ctx.db, { id: 'big-clinic', jurisdiction: 'KE' });
    key = (await createKey(t.ctx.db, { role: 'clinic', site: 'big-clinic' })).key;
    ({ app, url } = await startApi(t.ctx, 0));
  });

  afterAll(async () => {
    await app?.close();
    await t?.dispose();
  });

  test('a 300 MiB request of 30 instances is stored with bounded memory', { timeout: 180_000 }, async () => {
    const parts = 30;
    const pixelBytes = 10 * 1024 * 1024;
    const chunk = Buffer.alloc(256 * 1024, 0x5a);
    /** Each instance: a Part 10 header, then 10 MiB of 8-bit pixel data generated as it is sent. */
    async function* body(): AsyncGenerator<Buffer> {
      for (let i = 0; i < parts; i++) {
        const header = writeDicom(
          imageElements({
            rows: 2048,
            columns: 5120,
            bitsAllocated: 8,
            extra: [
              { tag: 0x0020000d, vr: 'UI', value: '2.25.58' },
              { tag: 0x0020000e, vr: 'UI', value: '2.25.58.1' },
              { tag: 0x00080018, vr: 'UI', value: `2.25.58.1.${i + 1}` },
            ],
          }),
          { sopInstanceUid: `2.25.58.1.${i + 1}` },
        );
        const pixelDataHeader = Buffer.alloc(12);
        pixelDataHeader.writeUInt16LE(0x7fe0, 0);
        pixelDataHeader.writeUInt16LE(0x0010, 2);
        pixelDataHeader.write('OB', 4, 'latin1');
        pixelDataHeader.writeUInt32LE(pixelBytes, 8);
        yield Buffer.from(`--${BOUNDARY}\r\nContent-Type: application/dicom\r\n\r\n`);
        yield Buffer.from(header);
        yield pixelDataHeader;
        for (let sent = 0; sent < pixelBytes; sent += chunk.length) yield chunk;
        yield Buffer.from('\r\n');
      }
      yield Buffer.from(`--${BOUNDARY}--\r\n`);
    }

    const baseline = process.memoryUsage().rss;
    let peak = baseline;
    const sampler = setInterval(() => {
      peak = Math.max(peak, process.memoryUsage().rss);
    }, 20);
    let status = 0;
    let text = '';
    try {
      const target = new URL('/dicomweb/studies', url);
      await new Promise<void>((resolve, reject) => {
        const req = http.request(
          target,
          { method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': STOW_TYPE } },
          (res) => {
            status = res.statusCode ?? 0;
            res.setEncoding('utf8');
            res.on('data', (d: string) => {
              text += d;
            });
            res.on('end', resolve);
            res.on('error', reject);
          },
        );
        req.on('error', reject);
        pipeline(Readable.from(body()), req).catch(reject);
      });
    } finally {
      clearInterval(sampler);
    }
    expect(status, text.slice(0, 500)).toBe(200);
    const response = JSON.parse(text) as DicomJson;
    expect(referencedSops(response)).toEqual(Array.from({ length: parts }, (_, i) => `2.25.58.1.${i + 1}`));
    const rows = await t.ctx.db.selectFrom('files').select(['bytes']).execute();
    expect(rows).toHaveLength(parts);
    for (const r of rows) expect(Number(r.bytes)).toBeGreaterThan(pixelBytes);
    // 300 MiB went through; what the process holds at any time stays far below that.
    expect((peak - baseline) / 1024 / 1024).toBeLessThan(150);
  });
});
