import { createHash, randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, relative, sep } from 'node:path';
import { Readable } from 'node:stream';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { ListObjectsV2Command, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { createObjectStore, parseStorageUrl } from '../../src/storage/create-object-store.js';
import { FsStore } from '../../src/storage/fs-store.js';
import type { ObjectInfo, ObjectStore } from '../../src/storage/object-store.js';
import { S3Store } from '../../src/storage/s3-store.js';
import { startS3Server } from '../helpers/s3-server.js';

const MiB = 1024 * 1024;

/** What a contract test needs from a driver besides the store: a look underneath it. */
interface Harness {
  store: ObjectStore;
  /** Every file (fs, temp files included) or every key in the bucket (s3), in storage's own names. */
  rawEntries(): Promise<string[]>;
  /** The storage name an object key ends up under. */
  rawName(key: string): string;
  /** Writes straight into storage, bypassing the store, as another program or a crash would. */
  plantRaw(rawName: string, bytes: Uint8Array): Promise<void>;
  /** Raw names that are not objects of the store and must never be listed. */
  foreignNames: string[];
  /** Downloads what `store.url()` returned, the way a browser or another service would. */
  fetchUrl(url: string): Promise<Uint8Array>;
  keepsContentType: boolean;
  close(): Promise<void>;
}

async function startFs(): Promise<Harness> {
  const root = await mkdtemp(join(tmpdir(), 'teleread-fs-store-'));
  const store = createObjectStore(pathToFileURL(root).href);
  return {
    store,
    async rawEntries() {
      const entries = await readdir(root, { recursive: true, withFileTypes: true });
      return entries
        .filter((e) => e.isFile())
        .map((e) => relative(root, join(e.parentPath, e.name)).split(sep).join('/'))
        .sort();
    },
    rawName: (key) => key,
    async plantRaw(rawName, bytes) {
      const path = join(root, ...rawName.split('/'));
      await mkdir(dirname(path), { recursive: true });
      await writeFile(path, bytes);
    },
    // A temp file left by a crash mid-upload.
    foreignNames: ['.tmp/3f1c0d9e-crashed-upload'],
    async fetchUrl(url) {
      expect(url.startsWith('file:///')).toBe(true);
      const path = fileURLToPath(url);
      expect(path.startsWith(root + sep)).toBe(true);
      return new Uint8Array(await readFile(path));
    },
    keepsContentType: false,
    async close() {
      await store.close();
      await rm(root, { recursive: true, force: true });
    },
  };
}

async function startS3(): Promise<Harness> {
  const server = await startS3Server('teleread-contract');
  const storeUrl =
    `s3://${server.bucket}/tenant-a/objects?endpoint=${encodeURIComponent(server.endpoint)}` +
    `&region=us-east-1&forcePathStyle=true&accessKeyId=${server.accessKeyId}&secretAccessKey=${server.secretAccessKey}`;
  const config = parseStorageUrl(storeUrl);
  if (config.driver !== 's3') throw new Error(`expected an s3 config, got ${config.driver}`);
  const { driver: _driver, ...options } = config;
  // Two keys a page, so every listing below crosses ListObjectsV2 continuation tokens.
  const store = new S3Store({ ...options, listPageSize: 2 });
  const raw = new S3Client({
    region: 'us-east-1',
    endpoint: server.endpoint,
    forcePathStyle: true,
    credentials: { accessKeyId: server.accessKeyId, secretAccessKey: server.secretAccessKey },
  });
  return {
    store,
    async rawEntries() {
      const names: string[] = [];
      let ContinuationToken: string | undefined;
      do {
        const page = await raw.send(new ListObjectsV2Command({ Bucket: server.bucket, ContinuationToken }));
        names.push(...(page.Contents ?? []).map((c) => c.Key ?? ''));
        ContinuationToken = page.IsTruncated ? page.NextContinuationToken : undefined;
      } while (ContinuationToken !== undefined);
      return names.sort();
    },
    rawName: (key) => `tenant-a/objects/${key}`,
    async plantRaw(rawName, bytes) {
      await raw.send(new PutObjectCommand({ Bucket: server.bucket, Key: rawName, Body: bytes }));
    },
    // Another tenant, a sibling prefix sharing the first letters, and a console-made folder marker.
    foreignNames: ['tenant-b/objects/list/a', 'tenant-a/objects-old/list/a', 'tenant-a/objects/list/'],
    async fetchUrl(url) {
      expect(url.startsWith(`${server.endpoint}/${server.bucket}/tenant-a/objects/`)).toBe(true);
      const response = await fetch(url);
      expect(response.status).toBe(200);
      return new Uint8Array(await response.arrayBuffer());
    },
    keepsContentType: true,
    async close() {
      await store.close();
      raw.destroy();
      await server.close();
    },
  };
}

async function collect(iterable: AsyncIterable<ObjectInfo>): Promise<ObjectInfo[]> {
  const out: ObjectInfo[] = [];
  for await (const info of iterable) out.push(info);
  return out;
}

async function readAll(stream: Readable): Promise<Uint8Array> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(Buffer.from(chunk as Uint8Array));
  return new Uint8Array(Buffer.concat(chunks));
}

function sha256(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}

const bytes256 = Uint8Array.from({ length: 256 }, (_, i) => i);

/** Chunk sizes deliberately not aligned to the 8 MiB part size. */
function chunked(data: Uint8Array, chunkSize: number): Readable {
  return Readable.from(
    (function* () {
      for (let offset = 0; offset < data.length; offset += chunkSize)
        yield data.subarray(offset, offset + chunkSize);
    })(),
  );
}

/** A stream that delivers `good` bytes and then fails the way an aborted client upload does. */
function failingAfter(good: number, how: 'error' | 'destroy'): Readable {
  let sent = 0;
  const stream = new Readable({
    read() {
      if (sent >= good) {
        if (how === 'error') this.destroy(new Error('client went away'));
        else this.destroy();
        return;
      }
      const n = Math.min(256 * 1024, good - sent);
      sent += n;
      this.push(randomBytes(n));
    },
  });
  return stream;
}

describe.each([
  ['fs', startFs],
  ['s3', startS3],
] as const)('ObjectStore contract: %s driver', (driver, start) => {
  let h: Harness;
  beforeAll(async () => {
    h = await start();
  });
  afterAll(async () => {
    await h?.close();
  });

  test('reports its driver', () => {
    expect(h.store.driver).toBe(driver);
  });

  test('put/get roundtrip of a Uint8Array, stored under the configured root or prefix', async () => {
    const info = await h.store.put('rt/bytes.bin', bytes256, { contentType: 'application/octet-stream' });
    expect(info).toMatchObject({ key: 'rt/bytes.bin', bytes: 256 });
    expect(await readAll(await h.store.get('rt/bytes.bin'))).toEqual(bytes256);
    expect(await h.store.getBytes('rt/bytes.bin')).toEqual(bytes256);
    expect(await h.rawEntries()).toContain(h.rawName('rt/bytes.bin'));
  });

  test('put/get roundtrip of a Readable', async () => {
    const data = randomBytes(300_001);
    const info = await h.store.put('rt/stream.bin', chunked(data, 65_537));
    expect(info).toMatchObject({ key: 'rt/stream.bin', bytes: data.length });
    expect(sha256(await readAll(await h.store.get('rt/stream.bin')))).toBe(sha256(data));
  });

  test('an empty object', async () => {
    await h.store.put('rt/empty', new Uint8Array(0));
    expect((await h.store.head('rt/empty'))?.bytes).toBe(0);
    expect(await h.store.getBytes('rt/empty')).toEqual(new Uint8Array(0));
    expect(await readAll(await h.store.get('rt/empty'))).toEqual(new Uint8Array(0));
  });

  test('put replaces an existing object', async () => {
    await h.store.put('rt/replace', new TextEncoder().encode('first version'));
    await h.store.put('rt/replace', chunked(new TextEncoder().encode('second'), 2));
    expect(new TextDecoder().decode(await h.store.getBytes('rt/replace'))).toBe('second');
    expect((await h.store.head('rt/replace'))?.bytes).toBe(6);
  });

  describe('byte ranges (inclusive, HTTP semantics)', () => {
    beforeAll(async () => {
      await h.store.put('range/256', bytes256);
    });

    test.each([
      ['start only', { start: 200 }, bytes256.subarray(200)],
      ['start-end', { start: 10, end: 19 }, bytes256.subarray(10, 20)],
      ['single byte', { start: 7, end: 7 }, bytes256.subarray(7, 8)],
      ['first byte', { start: 0, end: 0 }, bytes256.subarray(0, 1)],
      ['last byte', { start: 255 }, bytes256.subarray(255)],
      ['end past the end is clamped', { start: 250, end: 10_000 }, bytes256.subarray(250)],
    ])('%s', async (_name, range, expected) => {
      expect(await readAll(await h.store.get('range/256', range))).toEqual(expected);
      expect(await h.store.getBytes('range/256', range)).toEqual(expected);
    });

    test.each([
      ['start beyond the end', { start: 256 }],
      ['end before start', { start: 10, end: 9 }],
      ['negative start', { start: -1 }],
      ['fractional start', { start: 1.5 }],
    ])('%s → VALIDATION_FAILED', async (_name, range) => {
      await expect(h.store.get('range/256', range)).rejects.toMatchObject({ code: 'VALIDATION_FAILED' });
      await expect(h.store.getBytes('range/256', range)).rejects.toMatchObject({ code: 'VALIDATION_FAILED' });
    });
  });

  test('head reports size, version and date; null when missing', async () => {
    await h.store.put('head/a.dcm', bytes256.subarray(0, 132), { contentType: 'application/dicom' });
    const info = await h.store.head('head/a.dcm');
    expect(info).toMatchObject({ key: 'head/a.dcm', bytes: 132 });
    expect(info?.etag).toEqual(expect.any(String));
    expect(info?.lastModified).toBeInstanceOf(Date);
    expect(info?.contentType).toBe(h.keepsContentType ? 'application/dicom' : undefined);
    expect(await h.store.head('head/missing')).toBeNull();
    // A key prefix is not an object.
    expect(await h.store.head('head')).toBeNull();
  });

  test('get and getBytes of a missing key → NOT_FOUND', async () => {
    await expect(h.store.get('missing/nothing')).rejects.toMatchObject({
      code: 'NOT_FOUND',
      retryable: false,
    });
    await expect(h.store.getBytes('missing/nothing', { start: 0 })).rejects.toMatchObject({
      code: 'NOT_FOUND',
    });
  });

  test('delete removes the object and is idempotent', async () => {
    await h.store.put('del/a/b', bytes256);
    await h.store.delete('del/a/b');
    expect(await h.store.head('del/a/b')).toBeNull();
    await expect(h.store.get('del/a/b')).rejects.toMatchObject({ code: 'NOT_FOUND' });
    await expect(h.store.delete('del/a/b')).resolves.toBeUndefined();
    await expect(h.store.delete('del/never-existed')).resolves.toBeUndefined();
    // Nothing of the deleted key's path is left to clash with a key named like its former parent.
    await h.store.put('del/a', bytes256.subarray(0, 1));
    expect((await h.store.head('del/a'))?.bytes).toBe(1);
    expect((await h.rawEntries()).filter((name) => name.startsWith(h.rawName('del/')))).toEqual([
      h.rawName('del/a'),
    ]);
  });

  describe('list', () => {
    // A name sharing the start of a directory's, upper and lower case, a non-ASCII name, and neighbours that must
    // not leak in. Orders s3rver gets wrong across pages (a file between a directory and its contents, `a-b` next
    // to `a/x`; astral vs BMP characters) are in the fs-only tests.
    const keys = [
      'list/b',
      'list/a/y/z.bin',
      'list/ab',
      'list/a/x',
      'list/B',
      'list/c.txt',
      'list/é',
      'lister/other-prefix',
      'other/list/x',
    ];
    const sorted = (names: string[]) =>
      [...names].sort((a, b) => Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8')));

    beforeAll(async () => {
      for (const [i, key] of keys.entries()) await h.store.put(key, randomBytes(i + 1));
      for (const name of h.foreignNames) await h.plantRaw(name, randomBytes(3));
    });

    test('by a directory-like prefix: nested keys, sorted, other prefixes excluded', async () => {
      const listed = await collect(h.store.list('list/'));
      const expected = sorted(keys.filter((k) => k.startsWith('list/')));
      expect(listed.map((i) => i.key)).toEqual(expected);
      for (const info of listed) expect(info.bytes).toBe(keys.indexOf(info.key) + 1);
    });

    test('by a partial name', async () => {
      expect((await collect(h.store.list('list/a'))).map((i) => i.key)).toEqual(
        sorted(['list/a/y/z.bin', 'list/ab', 'list/a/x']),
      );
      expect((await collect(h.store.list('list'))).map((i) => i.key)).toEqual(
        sorted(keys.filter((k) => k.startsWith('list'))),
      );
      expect((await collect(h.store.list('list/a/y/'))).map((i) => i.key)).toEqual(['list/a/y/z.bin']);
    });

    test('an unknown prefix yields nothing', async () => {
      expect(await collect(h.store.list('nope/'))).toEqual([]);
      expect(await collect(h.store.list('list/zzz'))).toEqual([]);
    });

    test('everything: only the store’s own objects, each one readable', async () => {
      const all = (await collect(h.store.list(''))).map((i) => i.key);
      expect(all).toEqual(sorted(all));
      for (const key of keys) expect(all).toContain(key);
      for (const name of h.foreignNames) expect(all.map(h.rawName)).not.toContain(name);
      for (const key of all) expect(await h.store.head(key)).not.toBeNull();
    });
  });

  test('url() points at the content', async () => {
    const data = randomBytes(4096);
    await h.store.put('url/report.pdf', data);
    const url = await h.store.url('url/report.pdf', 60);
    expect(await h.fetchUrl(url)).toEqual(new Uint8Array(data));
  });

  test('a body larger than one multipart part (12 MiB stream) comes back intact', async () => {
    const data = randomBytes(12 * MiB);
    const info = await h.store.put('big/12mib.bin', chunked(data, MiB + 13));
    expect(info.bytes).toBe(data.length);
    expect((await h.store.head('big/12mib.bin'))?.bytes).toBe(data.length);
    expect(sha256(await readAll(await h.store.get('big/12mib.bin')))).toBe(sha256(data));
    // A range across the 8 MiB part boundary.
    const range = { start: 8 * MiB - 5, end: 8 * MiB + 4 };
    expect(await h.store.getBytes('big/12mib.bin', range)).toEqual(
      new Uint8Array(data.subarray(range.start, range.end + 1)),
    );
  });

  test.each([
    [
      'source errors after 10 MiB (after the first part)',
      () => failingAfter(10 * MiB, 'error'),
      'client went away',
    ],
    ['source errors at once', () => failingAfter(0, 'error'), 'client went away'],
    ['source destroyed without an error after 1 MiB', () => failingAfter(MiB, 'destroy'), undefined],
  ])('a failed put leaves nothing visible: %s', async (_name, source, message) => {
    const before = await h.rawEntries();
    const put = h.store.put('abort/partial.bin', source());
    if (message === undefined) await expect(put).rejects.toThrow();
    else await expect(put).rejects.toThrow(message);
    expect(await h.store.head('abort/partial.bin')).toBeNull();
    expect(await h.rawEntries()).toEqual(before);
  });

  test.each([
    ['Uint8Array shorter than declared', () => bytes256, 300],
    ['stream shorter than declared', () => chunked(bytes256, 100), 300],
    ['stream longer than declared', () => chunked(bytes256, 100), 200],
  ])('a put whose body does not match contentLength is refused: %s', async (_name, body, contentLength) => {
    const before = await h.rawEntries();
    await expect(h.store.put('abort/length.bin', body(), { contentLength })).rejects.toMatchObject({
      code: 'VALIDATION_FAILED',
      retryable: false,
    });
    expect(await h.store.head('abort/length.bin')).toBeNull();
    expect(await h.rawEntries()).toEqual(before);
  });

  describe('hostile keys → INVALID_KEY', () => {
    test.each([
      ['parent segment', '../x'],
      ['absolute', '/abs'],
      ['escape through a subdirectory', 'a/../../b'],
      ['trailing parent segment', 'a/..'],
      ['NUL', 'a\0b'],
      ['control character', 'a\u001fb'],
      ['DEL', 'a\u007fb'],
      ['C1 control (NEL)', 'a\u0085b'],
      ['empty', ''],
      ['backslash', 'a\\..\\b'],
      ['empty segment', 'a//b'],
      ['trailing slash', 'a/'],
      ['dot segment', './a'],
      ['reserved temp directory', '.tmp/x'],
      ['lone surrogate', 'a\uD800b'],
      ['longer than 1024 bytes', `k/${Array.from({ length: 6 }, () => 'x'.repeat(200)).join('/')}`],
      [
        'longer than 1024 bytes in UTF-8 only',
        `k/${'é'.repeat(120)}/${'é'.repeat(120)}/${'é'.repeat(120)}/${'é'.repeat(120)}/${'é'.repeat(120)}`,
      ],
      ['segment longer than 255 bytes', `k/${'x'.repeat(256)}`],
    ])('%s', async (_name, key) => {
      const invalid = { code: 'INVALID_KEY', retryable: false };
      await expect(h.store.put(key, bytes256)).rejects.toMatchObject(invalid);
      await expect(h.store.put(key, chunked(bytes256, 64))).rejects.toMatchObject(invalid);
      await expect(h.store.get(key)).rejects.toMatchObject(invalid);
      await expect(h.store.getBytes(key)).rejects.toMatchObject(invalid);
      await expect(h.store.head(key)).rejects.toMatchObject(invalid);
      await expect(h.store.delete(key)).rejects.toMatchObject(invalid);
      await expect(h.store.url(key)).rejects.toMatchObject(invalid);
    });

    test.each(['../', '/abs', 'a/../b/', 'a\0', 'a//'])('list prefix %j', async (prefix) => {
      await expect(collect(h.store.list(prefix))).rejects.toMatchObject({ code: 'INVALID_KEY' });
    });

    test('the longest allowed key works', async () => {
      // A short last segment: s3rver appends its own suffix to it on disk.
      const key = `k/${Array.from({ length: 4 }, () => 'x'.repeat(250)).join('/')}/${'y'.repeat(18)}`;
      expect(Buffer.byteLength(key)).toBe(1024);
      await h.store.put(key, bytes256);
      expect((await h.store.head(key))?.bytes).toBe(256);
    });
  });
});

describe('FsStore specifics', () => {
  let root: string;
  let store: FsStore;
  beforeAll(async () => {
    root = await mkdtemp(join(tmpdir(), 'teleread-fs-only-'));
    store = new FsStore(root);
  });
  afterAll(async () => {
    await rm(root, { recursive: true, force: true });
  });

  test('lists in S3 (UTF-8 byte) order', async () => {
    // A walk sorted by entry name would give o/a/x first (`a` < `a-b`, yet `a/` > `a-b`), and JavaScript's
    // UTF-16 order puts 😀 (a surrogate pair) before ～ U+FF5E, which UTF-8 does not.
    for (const key of ['o/a/x', 'o/a0', 'o/\u{1F600}', 'o/a-b', 'o/a/y', 'o/\uFF5E', 'o/a.c']) {
      await store.put(key, bytes256);
    }
    expect((await collect(store.list('o/'))).map((i) => i.key)).toEqual([
      'o/a-b',
      'o/a.c',
      'o/a/x',
      'o/a/y',
      'o/a0',
      'o/\uFF5E',
      'o/\u{1F600}',
    ]);
  });

  test('a key cannot also be a key prefix: CONFLICT, and no temp file left', async () => {
    await store.put('c/a', bytes256);
    await expect(store.put('c/a/b', bytes256)).rejects.toMatchObject({ code: 'CONFLICT', retryable: false });
    await store.put('c/d/e', bytes256);
    await expect(store.put('c/d', chunked(bytes256, 100))).rejects.toMatchObject({ code: 'CONFLICT' });
    expect(await readdir(join(root, '.tmp'))).toEqual([]);
    expect((await collect(store.list('c/'))).map((i) => i.key)).toEqual(['c/a', 'c/d/e']);
  });

  test('a relative root is refused', () => {
    expect(() => new FsStore('data/objects')).toThrow(expect.objectContaining({ code: 'CONFIG_INVALID' }));
  });
});

describe('storage failures', () => {
  test('s3: an endpoint nobody listens on → STORAGE_UNAVAILABLE, retryable', async () => {
    const probe = createServer();
    await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
    const { port } = probe.address() as AddressInfo;
    await new Promise((resolve) => probe.close(resolve));
    const store = createObjectStore(
      `s3://teleread/x?endpoint=http://127.0.0.1:${port}&forcePathStyle=true&accessKeyId=a&secretAccessKey=b`,
    );
    const unavailable = { code: 'STORAGE_UNAVAILABLE', retryable: true };
    await expect(store.head('a')).rejects.toMatchObject(unavailable);
    await expect(store.getBytes('a')).rejects.toMatchObject(unavailable);
    await expect(store.put('a', bytes256)).rejects.toMatchObject(unavailable);
    await expect(store.put('a', chunked(bytes256, 64))).rejects.toMatchObject(unavailable);
    await expect(collect(store.list(''))).rejects.toMatchObject(unavailable);
    await store.close();
  });

  test('s3: a bucket that does not exist → CONFIG_INVALID', async () => {
    const server = await startS3Server('teleread-present');
    const store = createObjectStore(
      `s3://teleread-absent?endpoint=${server.endpoint}&forcePathStyle=true&accessKeyId=S3RVER&secretAccessKey=S3RVER`,
    );
    try {
      await expect(store.getBytes('a')).rejects.toMatchObject({ code: 'CONFIG_INVALID', retryable: false });
    } finally {
      await store.close();
      await server.close();
    }
  });

  test('fs: a root that cannot be a directory → STORAGE_UNAVAILABLE, retryable, nothing written', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'teleread-fs-broken-'));
    try {
      await writeFile(join(dir, 'not-a-directory'), 'x');
      const store = createObjectStore(pathToFileURL(join(dir, 'not-a-directory', 'objects')).href);
      const unavailable = { code: 'STORAGE_UNAVAILABLE', retryable: true };
      await expect(store.put('a', bytes256)).rejects.toMatchObject(unavailable);
      await expect(store.put('a', chunked(bytes256, 64))).rejects.toMatchObject(unavailable);
      expect(await readdir(dir)).toEqual(['not-a-directory']);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('createObjectStore / parseStorageUrl', () => {
  test.each([
    ['relative file URL', 'file://./data/objects', { driver: 'fs', root: '/srv/teleread/data/objects' }],
    ['relative file URL going up', 'file://../shared/objects', { driver: 'fs', root: '/srv/shared/objects' }],
    [
      'absolute file URL',
      'file:///var/lib/teleread/objects',
      { driver: 'fs', root: '/var/lib/teleread/objects' },
    ],
    ['percent-encoded file URL', 'file:///var/lib/tele%20read', { driver: 'fs', root: '/var/lib/tele read' }],
    ['bare bucket', 's3://teleread', { driver: 's3', bucket: 'teleread', prefix: '' }],
    [
      'MinIO with everything',
      's3://teleread/prod/objects/?endpoint=http://127.0.0.1:9000&region=eu-west-1&forcePathStyle=true' +
        '&accessKeyId=minio&secretAccessKey=se%2Bcret%2Fkey',
      {
        driver: 's3',
        bucket: 'teleread',
        prefix: 'prod/objects',
        endpoint: 'http://127.0.0.1:9000',
        region: 'eu-west-1',
        forcePathStyle: true,
        credentials: { accessKeyId: 'minio', secretAccessKey: 'se+cret/key' },
      },
    ],
  ])('%s', (_name, url, expected) => {
    expect(parseStorageUrl(url, { cwd: '/srv/teleread' })).toEqual(expected);
  });

  test('the driver follows the scheme', async () => {
    const fsStore = createObjectStore('file://./objects', { cwd: '/srv/teleread' });
    expect(fsStore).toBeInstanceOf(FsStore);
    expect((fsStore as FsStore).root).toBe('/srv/teleread/objects');
    const s3Store = createObjectStore('s3://teleread/a?endpoint=http://127.0.0.1:9&forcePathStyle=true');
    expect(s3Store).toBeInstanceOf(S3Store);
    expect((s3Store as S3Store).prefix).toBe('a/');
    await Promise.all([fsStore.close(), s3Store.close()]);
  });

  test.each([
    ['unknown scheme', 'ftp://host/objects'],
    ['no scheme', './data/objects'],
    ['http', 'http://127.0.0.1:9000/bucket'],
    ['remote file host', 'file://fileserver/objects'],
    ['bucket too short', 's3://ab/x'],
    ['unknown parameter', 's3://teleread?endpiont=http://127.0.0.1:9000'],
    ['bad boolean', 's3://teleread?forcePathStyle=yes'],
    ['endpoint not http', 's3://teleread?endpoint=ftp://127.0.0.1'],
    ['key without secret', 's3://teleread?accessKeyId=minio'],
    ['credentials as user info', 's3://minio:secret@teleread'],
    ['prefix with a control character', 's3://teleread/a%00b'],
    ['prefix with a backslash', 's3://teleread/a%5C..%5Cb'],
  ])('%s → CONFIG_INVALID', (_name, url) => {
    expect(() => createObjectStore(url)).toThrow(expect.objectContaining({ code: 'CONFIG_INVALID' }));
  });

  test('the secret key never appears in an error message', () => {
    const url = 's3://teleread?secretAccessKey=TOPSECRET&accessKeyId=a&bogus=1';
    expect(() => parseStorageUrl(url)).toThrow(expect.objectContaining({ code: 'CONFIG_INVALID' }));
    try {
      parseStorageUrl(url);
    } catch (err) {
      expect(String((err as Error).message)).not.toContain('TOPSECRET');
    }
  });
});
