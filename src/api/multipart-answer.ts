/**
 * The multipart/related answers of WADO-RS (PS3.18 8.7.3.1): parts of one media type, each with its Content-Type
 * (naming its transfer syntax) and Content-Length, then the closing delimiter. Retrieve, frames and bulk data all
 * write them through this one writer; multipart-related.ts reads them.
 */
import { randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';

/** One part: its transfer syntax (none for a media type that has no such parameter), its length, its bytes. */
export interface AnswerPart {
  transferSyntaxUid: string | null;
  length: number;
  chunks: AsyncIterable<Uint8Array> | Iterable<Uint8Array>;
}

export class MultipartAnswer {
  readonly boundary = randomBytes(16).toString('hex');

  constructor(readonly partType: string) {}

  get contentType(): string {
    return `multipart/related; type="${this.partType}"; boundary=${this.boundary}`;
  }

  /** The boundary and headers of one part. */
  head(transferSyntaxUid: string | null, length: number): Buffer {
    const ts = transferSyntaxUid ? `; transfer-syntax=${transferSyntaxUid}` : '';
    return Buffer.from(
      `--${this.boundary}\r\nContent-Type: ${this.partType}${ts}\r\nContent-Length: ${length}\r\n\r\n`,
    );
  }

  /** The bytes a part of `length` adds to the body: its head, its bytes and the line break after them. */
  partSize(transferSyntaxUid: string | null, length: number): number {
    return this.head(transferSyntaxUid, length).length + length + 2;
  }

  /** The bytes the closing delimiter adds. */
  get tailSize(): number {
    return this.tail().length;
  }

  /** The body: each part as it comes (a part may be made only when its turn comes), then the closing delimiter. */
  body(parts: AsyncIterable<AnswerPart> | Iterable<AnswerPart>): Readable {
    const self = this;
    async function* chunks(): AsyncGenerator<Uint8Array> {
      for await (const p of parts) {
        yield self.head(p.transferSyntaxUid, p.length);
        yield* p.chunks;
        yield Buffer.from('\r\n');
      }
      yield self.tail();
    }
    return Readable.from(chunks(), { objectMode: false });
  }

  private tail(): Buffer {
    return Buffer.from(`--${this.boundary}--\r\n`);
  }
}
