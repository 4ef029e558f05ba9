import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import type { App } from '../../src/api/build-app.js';
import { startApi } from '../../src/api/start-api.js';
import { addReader, addSite, createKey } from '../../src/cli/admin-commands.js';
import { collectBatches, uploadBatch } from '../../src/client/upload-client.js';
import type { Context } from '../../src/context.js';
import { parseDicom } from '../../src/formats/dicom/parse-dicom.js';
import { WHOLE_READ_BYTES } from '../../src/formats/dicom/read-frame-by-range.js';
import { type RunningWorkers, runWorkers } from '../../src/pipeline/run-worker.js';
import { apiClient, waitFor } from '../helpers/api-client.js';
import { imageElements, nativePixelDataHeader, writeDicom } from '../helpers/dicom-writer.js';
import { createTestContext } from '../helpers/test-context.js';

/**
 * An instance above the size read whole (read-frame-by-range.ts) through the real pipeline and API: its series
 * thumbnail, the viewer's frames and the de-identified copy a reader abroad downloads all come from the file read
 * by range. A native multi-frame cine of 67 MB whose every frame differs, so a frame read from the wrong place
 * shows.
 */

const SIZE = 128;
const FRAME_BYTES = SIZE * SIZE * 2;
const FRAMES = Math.ceil((WHOLE_READ_BYTES + 4 * 1024 * 1024) / FRAME_BYTES);

let t: Awaited<ReturnType<typeof createTestContext>>;
let ctx: Context;
let app: App;
let workers: RunningWorkers;
let url: string;
let scratch: string;
const keys: Record<string, string> = {};

/** Frame k is a flat field of value 16·(k mod 256), one pixel (row k mod SIZE) set to 4095. The samples are
 * appended after the header (nativePixelDataHeader). */
function cine(): Uint8Array {
  const header = writeDicom(
    imageElements({
      rows: SIZE,
      columns: SIZE,
      bitsAllocated: 16,
      bitsStored: 12,
      extra: [
        { tag: 0x00280008, vr: 'IS', value: String(FRAMES) },
        { tag: 0x00080060, vr: 'CS', value: 'XA' },
        { tag: 0x00100010, vr: 'PN', value: 'Mutua^Large' },
        { tag: 0x00100020, vr: 'LO', value: 'MRN-LARGE-77' },
        { tag: 0x00281050, vr: 'DS', value: '2048' },
        { tag: 0x00281051, vr: 'DS', value: '4096' },
      ],
    }),
  );
  const out = new Uint8Array(header.length + 12 + FRAMES * FRAME_BYTES);
  out.set(header);
  out.set(nativePixelDataHeader(FRAMES * FRAME_BYTES), header.length);
  const pixels = new Uint16Array(out.buffer, header.length + 12, FRAMES * SIZE * SIZE);
  for (let k = 0; k < FRAMES; k++) {
    const frame = pixels.subarray(k * SIZE * SIZE, (k + 1) * SIZE * SIZE);
    frame.fill((k % 256) * 16);
    frame[(k % SIZE) * SIZE] = 4095;
  }
  return out;
}

beforeAll(async () => {
  t = await createTestContext({ STUDY_STABLE_SECONDS: '0' });
  ctx = t.ctx;
  scratch = await mkdtemp(path.join(tmpdir(), 'teleread-large-'));
  await addSite(ctx.db, { id: 'abroad', jurisdiction: 'UG', crossBorder: 'deidentified' });
  await addReader(ctx.db, { id: 'radio-fr', specialties: 'radiology', jurisdictions: 'FR' });
  keys.clinic = (await createKey(ctx.db, { role: 'clinic', site: 'abroad' })).key;
  keys.fr = (await createKey(ctx.db, { role: 'reader', reader: 'radio-fr' })).key;
  workers = await runWorkers(ctx);
  ({ app, url } = await startApi(ctx, 0));
}, 60_000);

afterAll(async () => {
  await app?.close();
  await workers?.close();
  await t?.dispose();
  if (scratch) await rm(scratch, { recursive: true, force: true });
});

describe('an instance larger than what is read whole', () => {
  test('is thumbnailed, viewed frame by frame and copied de-identified from the file read by range', async () => {
    const bytes = cine();
    expect(bytes.length).toBeGreaterThan(WHOLE_READ_BYTES);
    const folder = path.join(scratch, 'cine');
    await mkdir(folder);
    await writeFile(path.join(folder, 'cine.dcm'), bytes);
    const [batch] = await collectBatches([folder]);
    const sent = await uploadBatch(batch!, { server: url, key: keys.clinic! });
    const caseId = await waitFor('the cine routed', async () => {
      const f = await ctx.db
        .selectFrom('files')
        .select(['case_id', 'status'])
        .where('id', '=', sent.files[0]!.id)
        .executeTakeFirst();
      if (f?.status === 'failed') throw new Error('the cine failed');
      const c = f?.case_id
        ? await ctx.db
            .selectFrom('cases')
            .select(['id', 'status'])
            .where('id', '=', f.case_id)
            .executeTakeFirst()
        : undefined;
      return c?.status === 'routed' ? c.id : undefined;
    });
    const call = apiClient(url);
    const detail = await call<{
      files: Array<{ metadata: { sopInstanceUid: string; numberOfFrames: number } }>;
      artifacts: Array<{ name: string }>;
    }>(keys.fr!, `/v1/cases/${caseId}`);
    expect(detail.body.artifacts.map((a) => a.name)).toContain('thumbnail');
    const sop = detail.body.files[0]!.metadata.sopInstanceUid;

    // Frames from the start, the middle and the end: each one's own field and marked row.
    for (const frame of [1, Math.floor(FRAMES / 2), FRAMES]) {
      const r = await call<Uint8Array>(
        keys.fr!,
        `/v1/cases/${caseId}/instances/${sop}/frames/${frame}/rendered?size=${SIZE}&window=2048,4096`,
      );
      expect(r.status).toBe(200);
      const { data } = await sharp(Buffer.from(r.body))
        .greyscale()
        .raw()
        .toBuffer({ resolveWithObject: true });
      const k = frame - 1;
      expect(Math.abs(data[SIZE * SIZE - 1]! - ((k % 256) * 16 * 255) / 4095)).toBeLessThanOrEqual(1);
      expect(data[(k % SIZE) * SIZE]).toBe(255);
    }
    expect(
      (await call(keys.fr!, `/v1/cases/${caseId}/instances/${sop}/frames/${FRAMES + 1}/rendered`)).status,
    ).toBe(404);

    // The de-identified copy: a new header, and the pixel data streamed from the stored file unchanged.
    const copy = await call<Uint8Array>(keys.fr!, `/v1/cases/${caseId}/instances/${sop}`);
    expect(copy.status).toBe(200);
    const copied = parseDicom(copy.body);
    expect(copied.patient).toMatchObject({ name: 'ANONYMOUS^TELEREAD' });
    const pixelsOf = (b: Uint8Array) => {
      const el = parseDicom(b).dataSet.elements.x7fe00010!;
      return createHash('sha256')
        .update(b.subarray(el.dataOffset, el.dataOffset + el.length))
        .digest('hex');
    };
    expect(pixelsOf(copy.body)).toBe(pixelsOf(bytes));
    expect(Buffer.from(copy.body).toString('latin1')).not.toContain('MRN-LARGE-77');

    // A download cut off on a poor link resumes where it stopped (Range, with If-Range on the copy's tag).
    const instancePath = `/v1/cases/${caseId}/instances/${sop}`;
    const etag = copy.headers.get('etag')!;
    expect(copy.headers.get('accept-ranges')).toBe('bytes');
    const head = await call<Uint8Array>(keys.fr!, instancePath, { headers: { range: 'bytes=0-9999999' } });
    expect(head.status).toBe(206);
    expect(head.headers.get('content-range')).toBe(`bytes 0-9999999/${copy.body.length}`);
    const rest = await call<Uint8Array>(keys.fr!, instancePath, {
      headers: { range: 'bytes=10000000-', 'if-range': etag },
    });
    expect(rest.status).toBe(206);
    expect(Buffer.concat([head.body, rest.body]).equals(Buffer.from(copy.body))).toBe(true);
    const changed = await call<Uint8Array>(keys.fr!, instancePath, {
      headers: { range: 'bytes=10-', 'if-range': '"old"' },
    });
    expect(changed.status).toBe(200);
    expect(changed.body.length).toBe(copy.body.length);
    const past = await call(keys.fr!, instancePath, { headers: { range: `bytes=${copy.body.length}-` } });
    expect(past.status).toBe(416);
    expect(past.headers.get('content-range')).toBe(`bytes */${copy.body.length}`);
  });
});
