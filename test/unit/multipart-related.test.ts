import { Readable } from 'node:stream';
import { describe, expect, test } from 'vitest';
import {
  type MultipartOptions,
  parseMediaType,
  parseMultipartRelated,
} from '../../src/api/multipart-related.js';
import { AppError } from '../../src/errors.js';

interface Collected {
  headers: Record<string, string>;
  body: string;
}

async function* chunksOf(body: Buffer, sizes: number[] | number): AsyncGenerator<Uint8Array> {
  let at = 0;
  let i = 0;
  while (at < body.length) {
    const size = typeof sizes === 'number' ? sizes : (sizes[i++] ?? body.length);
    yield body.subarray(at, at + Math.max(1, size));
    at += Math.max(1, size);
  }
}

async function readAll(body: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of body) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

async function collect(
  source: AsyncIterable<Uint8Array>,
  options: Partial<MultipartOptions> = {},
): Promise<Collected[]> {
  const out: Collected[] = [];
  for await (const part of parseMultipartRelated(source, { boundary: 'b0undary', ...options })) {
    out.push({ headers: { ...part.headers }, body: (await readAll(part.body)).toString('latin1') });
  }
  return out;
}

async function failure(promise: Promise<unknown>): Promise<AppError> {
  const err = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(AppError);
  expect((err as AppError).code).toBe('VALIDATION_FAILED');
  return err as AppError;
}

// Bodies hold the characters that make framing hard: CR, LF, dashes, and a partial boundary at a line start.
const SAMPLE = Buffer.from(
  'preamble text\r\n' +
    '--b0undary\r\n' +
    'Content-Type: application/dicom\r\n' +
    'Content-Location: one.dcm\r\n' +
    '\r\n' +
    'first\r\nline\n--b0und\r\n--b0undar\r--x\r' +
    '\r\n--b0undary  \t\r\n' +
    'content-type: application/octet-stream\r\n' +
    '\r\n' +
    '\r\n' +
    '\r\n--b0undary\r\n' +
    '\r\n' +
    '--b0undary--\r\n' +
    'epilogue\r\n',
  'latin1',
);

const SAMPLE_PARTS: Collected[] = [
  {
    headers: { 'content-type': 'application/dicom', 'content-location': 'one.dcm' },
    body: 'first\r\nline\n--b0und\r\n--b0undar\r--x\r',
  },
  { headers: { 'content-type': 'application/octet-stream' }, body: '\r\n' },
  { headers: {}, body: '' },
];

describe('parseMultipartRelated', () => {
  test('parts, headers, preamble and epilogue', async () => {
    expect(await collect(chunksOf(SAMPLE, SAMPLE.length))).toEqual(SAMPLE_PARTS);
  });

  test.each(Array.from({ length: SAMPLE.length + 1 }, (_, i) => i))(
    'the same parts when the body is split at byte %i',
    async (at) => {
      expect(await collect(chunksOf(SAMPLE, [at, SAMPLE.length]))).toEqual(SAMPLE_PARTS);
    },
  );

  test('the same parts when every byte arrives on its own', async () => {
    expect(await collect(chunksOf(SAMPLE, 1))).toEqual(SAMPLE_PARTS);
  });

  test('bare LF line ends, as some clients send', async () => {
    const lf = Buffer.from(
      '--b0undary\nContent-Type: application/dicom\n\nabc\n--b0undary\n\n\n--b0undary--',
      'latin1',
    );
    for (const size of [1, 3, lf.length]) {
      expect(await collect(chunksOf(lf, size))).toEqual([
        { headers: { 'content-type': 'application/dicom' }, body: 'abc' },
        { headers: {}, body: '' },
      ]);
    }
  });

  test('folded and repeated headers; header names are case-insensitive and prototype-free', async () => {
    const body = Buffer.from(
      '--b0undary\r\nX-Long: one\r\n  two\r\nX-Rep: a\r\nx-rep: b\r\n__proto__: c\r\n\r\nz\r\n--b0undary--',
    );
    for await (const part of parseMultipartRelated(chunksOf(body, 5), { boundary: 'b0undary' })) {
      expect(Object.getPrototypeOf(part.headers)).toBeNull();
      expect(Object.entries(part.headers)).toEqual([
        ['x-long', 'one two'],
        ['x-rep', 'a, b'],
        ['__proto__', 'c'],
      ]);
      expect((await readAll(part.body)).toString()).toBe('z');
    }
  });

  test('a boundary in the middle of a line is content, not a boundary', async () => {
    const body = Buffer.from('x--b0undary\r\n\r\nz\r\n--b0undary\r\n\r\nin--b0undary\r\n--b0undary--');
    expect(await collect(chunksOf(body, 3))).toEqual([{ headers: {}, body: 'in--b0undary' }]);
  });

  test('many parts, including empty ones', async () => {
    const pieces: string[] = [];
    for (let i = 0; i < 2000; i++) pieces.push(`--b0undary\r\nX-N: ${i}\r\n\r\n${'x'.repeat(i % 7)}\r\n`);
    const body = Buffer.from(`${pieces.join('')}--b0undary--\r\n`);
    const parts = await collect(chunksOf(body, 997));
    expect(parts).toHaveLength(2000);
    parts.forEach((p, i) => {
      expect(p.headers['x-n']).toBe(String(i));
      expect(p.body).toBe('x'.repeat(i % 7));
    });
    const limited = await failure(collect(chunksOf(body, 997), { maxParts: 1999 }));
    expect(limited.message).toMatch(/more than 1999 parts/);
  });

  test('binary content with every byte value passes through unchanged', async () => {
    const content = Buffer.from(Array.from({ length: 4096 }, (_, i) => (i * 7 + (i >> 8)) & 0xff));
    const body = Buffer.concat([Buffer.from('--b0undary\r\n\r\n'), content, Buffer.from('\r\n--b0undary--')]);
    for (const size of [1, 13, 4096, body.length]) {
      const parts: Buffer[] = [];
      for await (const part of parseMultipartRelated(chunksOf(body, size), { boundary: 'b0undary' })) {
        parts.push(await readAll(part.body));
      }
      expect(parts).toHaveLength(1);
      expect(parts[0]!.equals(content)).toBe(true);
    }
  });

  test('a part left unread is skipped, and the next part is still read', async () => {
    const body = Buffer.from(
      `--b0undary\r\n\r\n${'a'.repeat(300_000)}\r\n--b0undary\r\nX: 2\r\n\r\nsecond\r\n--b0undary--`,
    );
    const seen: string[] = [];
    for await (const part of parseMultipartRelated(chunksOf(body, 1000), {
      boundary: 'b0undary',
      highWaterMark: 1024,
    })) {
      if (part.index === 1) seen.push((await readAll(part.body)).toString());
    }
    expect(seen).toEqual(['second']);
  });

  test('the body streams: the source is read only as fast as the part is consumed', async () => {
    const chunk = Buffer.alloc(64 * 1024, 0x41);
    const total = 50 * 1024 * 1024;
    let produced = 0;
    async function* source(): AsyncGenerator<Uint8Array> {
      yield Buffer.from('--b0undary\r\nContent-Type: application/dicom\r\n\r\n');
      while (produced < total) {
        produced += chunk.length;
        yield chunk;
      }
      yield Buffer.from('\r\n--b0undary--\r\n');
    }
    let consumed = 0;
    let maxAhead = 0;
    for await (const part of parseMultipartRelated(source(), { boundary: 'b0undary' })) {
      for await (const c of part.body) {
        consumed += (c as Buffer).length;
        maxAhead = Math.max(maxAhead, produced - consumed);
        // A slow reader: yield to the event loop so a parser that did not wait would race ahead.
        if (consumed % (1024 * 1024) < 64 * 1024) await new Promise((r) => setImmediate(r));
      }
    }
    expect(consumed).toBe(total);
    // The part's buffer (64 KiB), the chunk being searched and the bytes held back for a split boundary.
    expect(maxAhead).toBeLessThan(512 * 1024);
  });

  test('stopping early reads no further from the source', async () => {
    let pulled = 0;
    async function* source(): AsyncGenerator<Uint8Array> {
      yield Buffer.from('--b0undary\r\n\r\none\r\n--b0undary\r\n\r\n');
      for (let i = 0; i < 1000; i++) {
        pulled++;
        yield Buffer.alloc(1024);
      }
      yield Buffer.from('\r\n--b0undary--');
    }
    for await (const part of parseMultipartRelated(source(), { boundary: 'b0undary' })) {
      expect((await readAll(part.body)).toString()).toBe('one');
      break;
    }
    expect(pulled).toBeLessThan(10);
  });

  describe('malformed bodies are VALIDATION_FAILED, never a hang', () => {
    test.each([
      ['no boundary at all', 'just some text without any delimiter\r\n'],
      ['garbage bytes', '\u0000\u00ff\u0001--b0und\r\n--b0undar--\r\n'],
      ['the closing boundary missing after a part', '--b0undary\r\n\r\ncontent\r\n'],
      ['the body ending right after a boundary', '--b0undary\r\n\r\ncontent\r\n--b0undary'],
      ['the body ending after a boundary and one dash', '--b0undary\r\n\r\ncontent\r\n--b0undary-'],
      ['the body ending inside the headers', '--b0undary\r\nContent-Type: appl'],
      ['a header line without a colon', '--b0undary\r\nnot a header\r\n\r\nz\r\n--b0undary--'],
      ['a header name that is not a token', '--b0undary\r\nbad name: x\r\n\r\nz\r\n--b0undary--'],
      ['a continuation line first', '--b0undary\r\n folded\r\n\r\nz\r\n--b0undary--'],
      ['text after a boundary', '--b0undary garbage\r\n\r\nz\r\n--b0undary--'],
      ['a longer boundary-like line', '--b0undaryX\r\n\r\nz\r\n--b0undary--'],
      ['an empty body', ''],
    ])('%s', async (_label, text) => {
      const body = Buffer.from(text, 'latin1');
      for (const size of [1, 7, Math.max(1, body.length)]) {
        await failure(collect(chunksOf(body, size)));
      }
    });

    test('a part cut short errors its body stream as well as the iterator', async () => {
      const body = Buffer.from('--b0undary\r\n\r\npartial content');
      const it = parseMultipartRelated(chunksOf(body, 4), { boundary: 'b0undary' });
      const first = await it.next();
      expect(first.done).toBe(false);
      const streamErr = await failure(readAll((first.value as { body: Readable }).body));
      expect(streamErr.message).toMatch(/cut short/);
      await failure(it.next());
    });

    test('header blocks are bounded, with or without line ends', async () => {
      const many = `--b0undary\r\n${'X-A: 0123456789\r\n'.repeat(100)}\r\nz\r\n--b0undary--`;
      const err = await failure(collect(chunksOf(Buffer.from(many), 64), { maxHeaderBytes: 1024 }));
      expect(err.message).toMatch(/headers larger than 1024 bytes/);
      expect(await collect(chunksOf(Buffer.from(many), 64), { maxHeaderBytes: 4096 })).toHaveLength(1);
      const endless = `--b0undary\r\nX-A: ${'y'.repeat(5000)}`;
      await failure(collect(chunksOf(Buffer.from(endless), 100), { maxHeaderBytes: 1024 }));
    });

    test('preamble and epilogue are bounded', async () => {
      const big = 'p'.repeat(70_000);
      await failure(collect(chunksOf(Buffer.from(`${big}\r\n--b0undary--`), 4096)));
      await failure(collect(chunksOf(Buffer.from(`--b0undary\r\n\r\nz\r\n--b0undary--\r\n${big}`), 4096)));
      expect(
        await collect(chunksOf(Buffer.from(`${big}\r\n--b0undary\r\n\r\nz\r\n--b0undary--`), 4096), {
          maxOutsideBytes: 100_000,
        }),
      ).toEqual([{ headers: {}, body: 'z' }]);
    });

    test('a failing source becomes VALIDATION_FAILED', async () => {
      async function* broken(): AsyncGenerator<Uint8Array> {
        yield Buffer.from('--b0undary\r\n\r\nabc');
        throw new Error('aborted');
      }
      const err = await failure(collect(broken()));
      expect(err.message).toMatch(/could not be read \(aborted\)/);
    });

    test.each(['', 'x'.repeat(201), 'bad\r\nboundary', 'caf\u00e9'])('boundary %j is refused', (boundary) => {
      expect(() => parseMultipartRelated(Readable.from([]), { boundary })).toThrow(AppError);
    });
  });
});

describe('parseMediaType', () => {
  test.each([
    [
      'multipart/related; type="application/dicom"; boundary=abc',
      { type: 'multipart/related', parameters: { type: 'application/dicom', boundary: 'abc' } },
    ],
    [
      'Multipart/Related;Boundary="a b;c=d";TYPE=application/dicom',
      { type: 'multipart/related', parameters: { boundary: 'a b;c=d', type: 'application/dicom' } },
    ],
    ['application/dicom', { type: 'application/dicom', parameters: {} }],
    ['multipart/related; boundary="q\\"x"', { type: 'multipart/related', parameters: { boundary: 'q"x' } }],
    ['multipart/related; boundary=abc;', { type: 'multipart/related', parameters: { boundary: 'abc' } }],
  ])('%s', (value, expected) => {
    const parsed = parseMediaType(value);
    expect(parsed && { type: parsed.type, parameters: { ...parsed.parameters } }).toEqual(expected);
  });

  test.each([
    undefined,
    '',
    'multipart',
    'multipart/related/x',
    'multipart/related; boundary',
    'multipart/related; boundary="open',
    'multipart/related; boundary="a"x',
    'multi part/related',
  ])('%j is not a media type', (value) => {
    expect(parseMediaType(value)).toBeNull();
  });
});
