/**
 * A streaming parser for multipart bodies (RFC 2046), written for multipart/related (DICOMweb STOW-RS), which
 * the installed parsers do not take: @fastify/busboy parses only multipart/form-data (its Dicer copy is not a
 * public entry point), and the original dicer is unmaintained.
 *
 * Memory is bounded whatever the body: part contents are handed on as Readable streams with backpressure, the
 * parser never runs more than one part ahead of its consumer, and header blocks, preamble and epilogue have
 * byte limits. Line ends may be CRLF or bare LF, as some real clients send.
 */
import { Readable } from 'node:stream';
import { AppError } from '../errors.js';

export interface MultipartPart {
  /** 0-based position of the part in the body. */
  index: number;
  /** Header names in lower case; a repeated header's values are joined with ", ". No prototype. */
  headers: Record<string, string>;
  /** The part's content. Read it to its end, or leave it, before asking for the next part: asking for the next
   * part discards whatever is left of this one. */
  body: Readable;
}

export interface MultipartOptions {
  boundary: string;
  /** Largest header block of one part, in bytes (default 16 KiB). */
  maxHeaderBytes?: number;
  /** Most parts in one body (default 10 000). */
  maxParts?: number;
  /** Most bytes before the first boundary and after the closing one, together (default 64 KiB). */
  maxOutsideBytes?: number;
  /** Bytes a part body buffers before the parser waits for its reader (default 64 KiB). */
  highWaterMark?: number;
}

export interface MediaType {
  /** `type/subtype`, lower case. */
  type: string;
  /** Parameter names in lower case; values unquoted. No prototype. */
  parameters: Record<string, string>;
}

const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
const LF = 0x0a;
const CR = 0x0d;
const DASH = 0x2d;

/** Parses a Content-Type value (`type/subtype; name=value; name="quoted value"`); null when it is not one. */
export function parseMediaType(value: string | undefined): MediaType | null {
  if (value === undefined) return null;
  const semi = value.indexOf(';');
  const type = (semi < 0 ? value : value.slice(0, semi)).trim().toLowerCase();
  const [main, sub, extra] = type.split('/');
  if (!main || !sub || extra !== undefined || !TOKEN.test(main) || !TOKEN.test(sub)) return null;
  const parameters = Object.create(null) as Record<string, string>;
  let rest = semi < 0 ? '' : value.slice(semi + 1);
  // Each round consumes at least one character, so the loop is bounded by the header length.
  while (rest.trim() !== '') {
    const eq = rest.indexOf('=');
    if (eq < 0) return null;
    const name = rest.slice(0, eq).trim().toLowerCase();
    if (!TOKEN.test(name)) return null;
    rest = rest.slice(eq + 1).trimStart();
    let paramValue: string;
    if (rest.startsWith('"')) {
      let i = 1;
      paramValue = '';
      for (; i < rest.length && rest[i] !== '"'; i++) {
        if (rest[i] === '\\' && i + 1 < rest.length) i++;
        paramValue += rest[i];
      }
      if (i >= rest.length) return null;
      rest = rest.slice(i + 1).trimStart();
      if (rest !== '' && !rest.startsWith(';')) return null;
      rest = rest.slice(1);
    } else {
      const end = rest.indexOf(';');
      paramValue = (end < 0 ? rest : rest.slice(0, end)).trim();
      rest = end < 0 ? '' : rest.slice(end + 1);
    }
    parameters[name] ??= paramValue;
  }
  return { type: `${main}/${sub}`, parameters };
}

function malformed(message: string, cause?: unknown): AppError {
  return new AppError('VALIDATION_FAILED', `multipart body: ${message}`, {
    retryable: false,
    ...(cause === undefined ? {} : { cause }),
  });
}

/** A part body fed by the parser; `feed` waits while the reader is behind, so nothing piles up in memory. */
class PartBody extends Readable {
  private wake: (() => void) | undefined;

  override _read(): void {
    this.release();
  }

  override _destroy(err: Error | null, callback: (err?: Error | null) => void): void {
    this.release();
    callback(err);
  }

  private release(): void {
    const wake = this.wake;
    this.wake = undefined;
    wake?.();
  }

  /** Resolves when the reader wants more, or at once when the body was destroyed (its data is then dropped). */
  async feed(chunk: Buffer): Promise<void> {
    if (this.destroyed) return;
    if (this.push(chunk)) return;
    await new Promise<void>((resolve) => {
      this.wake = resolve;
    });
  }

  finish(): void {
    if (!this.destroyed) this.push(null);
  }
}

function toBuffer(chunk: Uint8Array | string): Buffer {
  if (typeof chunk === 'string') return Buffer.from(chunk, 'latin1');
  return Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
}

function validateBoundary(boundary: string): void {
  // RFC 2046 allows 70 characters; some clients send longer ones, so only the framing characters are refused.
  // biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what is refused
  if (boundary.length === 0 || boundary.length > 200 || /[\u0000-\u001f\u007f-\uffff]/.test(boundary)) {
    throw malformed('the boundary parameter must be 1 to 200 printable ASCII characters');
  }
}

type Waiter = {
  resolve: (r: IteratorResult<MultipartPart>) => void;
  reject: (err: unknown) => void;
};

class MultipartParser implements AsyncIterableIterator<MultipartPart> {
  private readonly delimiter: Buffer;
  private readonly maxHeaderBytes: number;
  private readonly maxParts: number;
  private readonly maxOutsideBytes: number;
  private readonly highWaterMark: number;

  private driver: Promise<void> | undefined;
  /** The part the consumer holds. */
  private current: MultipartPart | undefined;
  /** The body the driver is writing to. */
  private feeding: PartBody | undefined;
  /** A part the driver has parsed and the consumer has not taken yet (at most one). */
  private pending: { part: MultipartPart; taken: () => void } | undefined;
  private waiting: Waiter | undefined;
  private done = false;
  private stopped = false;
  private failure: unknown;

  private iterator: AsyncIterator<Uint8Array | string> | undefined;
  private buf: Buffer;
  private eof = false;
  private outside = 0;

  constructor(
    private readonly source: AsyncIterable<Uint8Array | string>,
    options: MultipartOptions,
  ) {
    validateBoundary(options.boundary);
    // Matching "\n--boundary" and dropping a CR before it accepts both CRLF and bare LF line ends.
    this.delimiter = Buffer.from(`\n--${options.boundary}`, 'latin1');
    this.maxHeaderBytes = options.maxHeaderBytes ?? 16 * 1024;
    this.maxParts = options.maxParts ?? 10_000;
    this.maxOutsideBytes = options.maxOutsideBytes ?? 64 * 1024;
    this.highWaterMark = options.highWaterMark ?? 64 * 1024;
    // A leading line end lets a boundary on the very first line be found like every other one.
    this.buf = Buffer.from('\r\n', 'latin1');
  }

  [Symbol.asyncIterator](): AsyncIterableIterator<MultipartPart> {
    return this;
  }

  next(): Promise<IteratorResult<MultipartPart>> {
    this.discardCurrent();
    this.driver ??= this.run().then(
      () => this.finish(),
      (err) => this.fail(err),
    );
    if (this.failure !== undefined) return Promise.reject(this.failure);
    if (this.pending) {
      const { part, taken } = this.pending;
      this.pending = undefined;
      this.current = part;
      taken();
      return Promise.resolve({ value: part, done: false });
    }
    if (this.done) return Promise.resolve({ value: undefined, done: true });
    return new Promise((resolve, reject) => {
      this.waiting = { resolve, reject };
    });
  }

  /** The consumer stops early: the parser stops reading. The source is left as it is; the caller owns it. */
  return(): Promise<IteratorResult<MultipartPart>> {
    this.stopped = true;
    this.discardCurrent();
    if (this.pending) {
      this.pending.part.body.destroy();
      this.pending.taken();
      this.pending = undefined;
    }
    return Promise.resolve({ value: undefined, done: true });
  }

  private discardCurrent(): void {
    const body = this.current?.body;
    if (body && !body.readableEnded && !body.destroyed) body.destroy();
    this.current = undefined;
  }

  private finish(): void {
    this.done = true;
    const waiting = this.waiting;
    this.waiting = undefined;
    waiting?.resolve({ value: undefined, done: true });
  }

  private fail(err: unknown): void {
    if (this.stopped) return;
    this.failure = err;
    this.done = true;
    // A part being written ends with the error, so whoever streams it sees the body was cut short.
    if (this.feeding && !this.feeding.readableEnded) this.feeding.destroy(err as Error);
    if (this.pending) {
      this.pending.part.body.destroy();
      this.pending.taken();
      this.pending = undefined;
    }
    const waiting = this.waiting;
    this.waiting = undefined;
    waiting?.reject(err);
  }

  private offer(part: MultipartPart): Promise<void> {
    if (this.waiting) {
      const waiting = this.waiting;
      this.waiting = undefined;
      this.current = part;
      waiting.resolve({ value: part, done: false });
      return Promise.resolve();
    }
    return new Promise((taken) => {
      this.pending = { part, taken };
    });
  }

  /** Appends the next source chunk to the buffer; false at the end of the source. */
  private async pull(): Promise<boolean> {
    // After return() the parser reads no further; the driver then unwinds through its end-of-body paths.
    if (this.eof || this.stopped) return false;
    this.iterator ??= this.source[Symbol.asyncIterator]();
    let result: IteratorResult<Uint8Array | string>;
    try {
      result = await this.iterator.next();
    } catch (err) {
      throw malformed(
        `the body could not be read (${err instanceof Error ? err.message : String(err)})`,
        err,
      );
    }
    if (result.done) {
      this.eof = true;
      return false;
    }
    const chunk = toBuffer(result.value);
    this.buf = this.buf.length === 0 ? chunk : Buffer.concat([this.buf, chunk]);
    return true;
  }

  private countOutside(bytes: number): void {
    this.outside += bytes;
    if (this.outside > this.maxOutsideBytes) {
      throw malformed(`more than ${this.maxOutsideBytes} bytes outside the parts (preamble and epilogue)`);
    }
  }

  private async run(): Promise<void> {
    await this.skipPreamble();
    for (let index = 0; ; index++) {
      if (this.stopped) return;
      if (await this.readBoundaryLineEnd()) {
        await this.drainEpilogue();
        return;
      }
      if (index >= this.maxParts) throw malformed(`more than ${this.maxParts} parts`);
      const headers = await this.readHeaders(index);
      const body = new PartBody({ highWaterMark: this.highWaterMark });
      // The parser's error also reaches the consumer through next(); an unheard error event must not crash.
      body.on('error', () => undefined);
      await this.offer({ index, headers, body });
      if (this.stopped) return;
      this.feeding = body;
      await this.readBody(body, index);
      this.feeding = undefined;
    }
  }

  private async skipPreamble(): Promise<void> {
    const delimiter = this.delimiter;
    for (;;) {
      const at = this.buf.indexOf(delimiter);
      if (at >= 0) {
        this.countOutside(Math.max(0, at - 2));
        this.buf = this.buf.subarray(at + delimiter.length);
        return;
      }
      // Keep what could be the start of a delimiter split across chunks.
      const keep = Math.min(this.buf.length, delimiter.length - 1);
      this.countOutside(this.buf.length - keep);
      this.buf = this.buf.subarray(this.buf.length - keep);
      if (!(await this.pull())) throw malformed('no boundary line found');
      if (this.stopped) return;
    }
  }

  /** After `--boundary`: true for the closing `--`, false after the line end that opens a part. */
  private async readBoundaryLineEnd(): Promise<boolean> {
    for (;;) {
      const buf = this.buf;
      if (buf.length >= 2 && buf[0] === DASH && buf[1] === DASH) {
        this.buf = buf.subarray(2);
        return true;
      }
      const nl = buf.indexOf(LF);
      const line = nl < 0 ? buf : buf.subarray(0, nl);
      // Only transport padding (spaces, tabs) and a CR may sit between the boundary and the line end.
      for (let i = 0; i < line.length; i++) {
        const c = line[i];
        const lastCr = c === CR && i === line.length - 1;
        const openingDash = c === DASH && i === 0 && line.length === 1 && nl < 0;
        if (c !== 0x20 && c !== 0x09 && !lastCr && !openingDash) {
          throw malformed('unexpected characters after a boundary');
        }
      }
      if (nl >= 0) {
        this.buf = buf.subarray(nl + 1);
        return false;
      }
      if (buf.length > 1024) throw malformed('boundary line too long');
      if (!(await this.pull()))
        throw malformed('the body ends after a boundary, without the closing boundary');
    }
  }

  private async readHeaders(index: number): Promise<Record<string, string>> {
    const headers = Object.create(null) as Record<string, string>;
    let used = 0;
    let last: string | undefined;
    for (;;) {
      const nl = this.buf.indexOf(LF);
      if (nl < 0) {
        if (used + this.buf.length > this.maxHeaderBytes) {
          throw malformed(`part ${index + 1}: headers larger than ${this.maxHeaderBytes} bytes`);
        }
        if (!(await this.pull())) throw malformed(`part ${index + 1}: the body ends inside the part headers`);
        continue;
      }
      used += nl + 1;
      if (used > this.maxHeaderBytes) {
        throw malformed(`part ${index + 1}: headers larger than ${this.maxHeaderBytes} bytes`);
      }
      const end = nl > 0 && this.buf[nl - 1] === CR ? nl - 1 : nl;
      const line = this.buf.toString('latin1', 0, end);
      this.buf = this.buf.subarray(nl + 1);
      if (line === '') return headers;
      if (line[0] === ' ' || line[0] === '\t') {
        // Obsolete line folding: the line continues the previous header.
        if (last === undefined) throw malformed(`part ${index + 1}: header block starts with a continuation`);
        headers[last] = `${headers[last]} ${line.trim()}`;
        continue;
      }
      const colon = line.indexOf(':');
      const name = colon < 0 ? '' : line.slice(0, colon).trim().toLowerCase();
      if (!TOKEN.test(name)) throw malformed(`part ${index + 1}: malformed header line`);
      const value = line.slice(colon + 1).trim();
      headers[name] = headers[name] === undefined ? value : `${headers[name]}, ${value}`;
      last = name;
    }
  }

  private async readBody(body: PartBody, index: number): Promise<void> {
    const delimiter = this.delimiter;
    // In "--b CRLF CRLF --b", the blank line was both the end of the (absent) headers and the delimiter's line
    // end: an empty part. Content cannot start with the boundary, so this reading is the only one.
    const bare = delimiter.subarray(1);
    for (;;) {
      const n = Math.min(this.buf.length, bare.length);
      if (!this.buf.subarray(0, n).equals(bare.subarray(0, n))) break;
      if (n === bare.length) {
        body.finish();
        this.buf = this.buf.subarray(n);
        return;
      }
      if (!(await this.pull())) break;
    }
    for (;;) {
      const buf = this.buf;
      const at = buf.indexOf(delimiter);
      if (at >= 0) {
        const end = at > 0 && buf[at - 1] === CR ? at - 1 : at;
        if (end > 0) await body.feed(buf.subarray(0, end));
        body.finish();
        this.buf = buf.subarray(at + delimiter.length);
        return;
      }
      // Hold back a delimiter's length: a delimiter split across chunks, and the CR before it, stay unsent.
      const keep = Math.min(buf.length, delimiter.length);
      if (buf.length > keep) {
        this.buf = buf.subarray(buf.length - keep);
        await body.feed(buf.subarray(0, buf.length - keep));
        if (this.stopped) return;
      }
      if (!(await this.pull())) {
        throw malformed(`part ${index + 1} is cut short: the body ends before the closing boundary`);
      }
    }
  }

  /** Reads the rest of the source so the connection can be reused; what follows the closing boundary is ignored. */
  private async drainEpilogue(): Promise<void> {
    for (;;) {
      this.countOutside(this.buf.length);
      this.buf = Buffer.alloc(0);
      if (this.stopped || !(await this.pull())) return;
    }
  }
}

/**
 * Parses a multipart body as it arrives. Yields each part once its headers are read; its body streams from the
 * source as it is read. Throws (from the iterator, and through the body of the part being read) AppError
 * VALIDATION_FAILED for a malformed body: no boundary, a missing closing boundary, oversized headers, too many
 * parts. The parser never closes `source`.
 */
export function parseMultipartRelated(
  source: AsyncIterable<Uint8Array | string>,
  options: MultipartOptions,
): AsyncIterableIterator<MultipartPart> {
  return new MultipartParser(source, options);
}
