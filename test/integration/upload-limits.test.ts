import { readdir } from 'node:fs/promises';
import { request } from 'node:http';
import path from 'node:path';
import { afterAll, beforeAll, expect, test } from 'vitest';
import type { App } from '../../src/api/build-app.js';
import { startApi } from '../../src/api/start-api.js';
import { addSite, createKey } from '../../src/cli/admin-commands.js';
import { createTestContext } from '../helpers/test-context.js';

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

async function listFiles(dir: string): Promise<string[]> {
  const out: string[] = [];
  const entries = await readdir(dir, { withFileTypes: true }).catch(() => []);
  for (const e of entries) {
    const full = path.join(dir, e.name);
    if (e.isDirectory()) out.push(...(await listFiles(full)));
    else out.push(full);
  }
  return out;
}

function multipart(parts: Array<{ name: string; bytes: Uint8Array }>, boundary = 'xBOUNDARYx'): Uint8Array {
  const chunks: Buffer[] = [];
  for (const p of parts) {
    chunks.push(
      Buffer.from(
        `--${boundary}\r\nContent-Disposition: form-data; name="file"; filename="${p.name}"\r\nContent-Type: application/octet-stream\r\n\r\n`,
      ),
      Buffer.from(p.bytes),
      Buffer.from('\r\n'),
    );
  }
  chunks.push(Buffer.from(`--${boundary}--\r\n`));
  return Buffer.concat(chunks);
}

async function post(body: Uint8Array, headers: Record<string, string> = {}) {
  const res = await fetch(`${url}/v1/uploads`, {
    method: 'POST',
    headers: {
      authorization: `Bearer ${key}`,
      'content-type': 'multipart/form-data; boundary=xBOUNDARYx',
      ...headers,
    },
    body,
  });
  return { status: res.status, body: (await res.json()) as { error?: { code: string } } };
}

test.each([
  ['one file over the limit', [{ name: 'big.bin', bytes: new Uint8Array(150_000) }]],
  [
    'several files that together exceed it',
    [
      { name: 'a.bin', bytes: new Uint8Array(60_000) },
      { name: 'b.bin', bytes: new Uint8Array(60_000) },
    ],
  ],
])('%s: 413, and nothing half-written stays visible', async (_label, parts) => {
  const res = await post(multipart(parts));
  expect(res.status).toBe(413);
  expect(res.body.error?.code).toBe('PAYLOAD_TOO_LARGE');
  const stored = (await listFiles(t.env.storageDir)).filter((f) => !f.includes(`${path.sep}.tmp${path.sep}`));
  expect(stored).toEqual([]);
  const rows = await t.ctx.db.selectFrom('files').select('id').execute();
  expect(rows).toEqual([]);
});

test('a declared Content-Length over the limit is refused before reading the body', async () => {
  const body = multipart([{ name: 'x.bin', bytes: new Uint8Array(10) }]);
  const res = await fetch(`${url}/v1/uploads`, {
    method: 'POST',
    headers: {
      authorization: `Bearer ${key}`,
      'content-type': 'multipart/form-data; boundary=xBOUNDARYx',
    },
    body: new Blob([body, new Uint8Array(200_000)]),
  });
  expect(res.status).toBe(413);
});

test('a non-multipart body is refused with a stable code; an empty upload is a validation error', async () => {
  const json = await fetch(`${url}/v1/uploads`, {
    method: 'POST',
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
    body: '{}',
  });
  expect(json.status).toBe(415);
  const empty = await post(multipart([]));
  expect(empty.status).toBe(400);
  expect(empty.body.error?.code).toBe('VALIDATION_FAILED');
});

test('an upload within the limit is accepted with sizes and hashes', async () => {
  const res = await post(multipart([{ name: 'ok.bin', bytes: new Uint8Array(1000).fill(7) }]));
  expect(res.status).toBe(202);
});

test('an upload without a valid key is refused before its body is read, and the connection is closed', async () => {
  // The body is still on its way (a slow clinic link): the 401 must not wait for it, nor leave Node reading it.
  const { status, connection } = await new Promise<{ status: number; connection: string | undefined }>(
    (resolve, reject) => {
      const req = request(`${url}/v1/uploads`, {
        method: 'POST',
        headers: {
          authorization: 'Bearer not-a-key',
          'content-type': 'multipart/form-data; boundary=xBOUNDARYx',
          'content-length': String(50 * 1024 * 1024),
        },
      });
      req.on('response', (res) => {
        res.resume();
        resolve({ status: res.statusCode ?? 0, connection: res.headers.connection });
        req.destroy();
      });
      req.on('error', reject);
      req.write(Buffer.alloc(64 * 1024));
    },
  );
  expect(status).toBe(401);
  expect(connection).toBe('close');
});
