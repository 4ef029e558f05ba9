import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { Readable } from 'node:stream';
import { afterAll, describe, expect, test } from 'vitest';
import { deidentifiedCopyStream } from '../../src/api/deidentified-copy.js';
import { derivedUid } from '../../src/cli/deidentify-command.js';
import { isAppError } from '../../src/errors.js';
import { type DeidentifyOptions, deidentifyDicom } from '../../src/formats/dicom/deidentify.js';
import { type DicomInstance, parseDicom } from '../../src/formats/dicom/parse-dicom.js';
import { type RangeReadLimits, readInstanceForFrame } from '../../src/formats/dicom/read-frame-by-range.js';
import type { ByteSource } from '../../src/formats/types.js';
import { closeDecodePool } from '../../src/imaging/decode-pool.js';
import { decodeDicomFrame } from '../../src/imaging/render-dicom.js';
import { corpusPath, hasCorpus, loadTruth } from '../corpus.js';
import { type DicomElement, type DicomEncoding, imageElements, writeDicom } from '../helpers/dicom-writer.js';

/**
 * Large instances are read by byte range for one frame (read-frame-by-range.ts). Held here to the ordinary
 * whole-file path on every DICOM file of the corpus: the same attributes, and the same decoded first, middle and
 * last frame (or the same error code). The corpus files are small, so the limits are lowered to take the ranged
 * path on them: read whole only when nothing can be gained, and a first read that ends just inside Pixel Data.
 */

afterAll(() => closeDecodePool());

/** A source over bytes in memory that counts what is read. Given a larger `size`, it claims to be that long and
 * reads zeros past the bytes (a huge file without the memory). */
function countingSource(bytes: Uint8Array, size = bytes.length): ByteSource & { bytesRead: number } {
  const source = {
    size,
    bytesRead: 0,
    async read(offset: number, length: number) {
      const out = new Uint8Array(Math.max(0, Math.min(length, size - offset)));
      out.set(bytes.subarray(offset, offset + out.length));
      source.bytesRead += out.length;
      return out;
    },
  };
  return source;
}

/** Where the header before Pixel Data ends, with room for the element's own header: the first read the test
 * makes, so that the ranged path is taken whenever the file has pixel data worth skipping. */
function headBytesFor(instance: DicomInstance): number {
  const el = instance.dataSet.elements.x7fe00010;
  return el ? el.dataOffset + 16 : 4096;
}

/** The instance's attributes, without what differs by how it was read. */
function attributes(instance: DicomInstance): Record<string, unknown> {
  const { warnings: _w, truncatedPixelDataOffset: _t, ...rest } = instance;
  return rest;
}

/** A decoded frame as a digest of its samples (a failure's diff of megabytes of samples would be unreadable). */
type Outcome = { code: string } | { sha256: string; rows: number; columns: number; samples: number };

async function decode(instance: DicomInstance, frame: number): Promise<Outcome> {
  try {
    const f = await decodeDicomFrame(instance, frame);
    const pixels = new Uint8Array(f.pixels.buffer, f.pixels.byteOffset, f.pixels.byteLength);
    const sha256 = createHash('sha256').update(pixels).digest('hex');
    return { sha256, rows: f.rows, columns: f.columns, samples: f.samplesPerPixel };
  } catch (err) {
    if (!isAppError(err)) throw err;
    return { code: err.code };
  }
}

function framesToCheck(frames: number): number[] {
  return [...new Set([0, Math.floor(frames / 2), frames - 1])];
}

const files = Object.entries(loadTruth())
  .filter(([, t]) => t.kind === 'dicom' && typeof t.Rows === 'string')
  .map(([rel]) => rel);
const ranged = new Set<string>();

describe.runIf(hasCorpus)('DICOM frames read by byte range, against the whole file', () => {
  test.each(files)('%s', async (rel) => {
    const bytes = new Uint8Array(readFileSync(corpusPath(rel)));
    let whole: DicomInstance;
    try {
      whole = parseDicom(bytes);
    } catch (err) {
      if (!isAppError(err)) throw err;
      await expect(
        readInstanceForFrame(countingSource(bytes), 0, { wholeReadBytes: 0 }),
      ).rejects.toMatchObject({ code: err.code });
      return;
    }
    const limits = { wholeReadBytes: 0, headBytes: headBytesFor(whole) };
    for (const frame of framesToCheck(whole.numberOfFrames)) {
      const source = countingSource(bytes);
      const read = await readInstanceForFrame(source, frame, limits);
      expect(read.frame).toBe(frame);
      expect(attributes(read.instance)).toEqual(attributes(whole));
      expect(await decode(read.instance, frame)).toEqual(await decode(whole, frame));
      if (!read.whole) {
        ranged.add(rel);
        if (whole.numberOfFrames > 2) expect(source.bytesRead).toBeLessThan(bytes.length);
      }
    }
  });

  test('the ranged path is taken on most multi-frame and compressed files', () => {
    expect(ranged.size).toBeGreaterThan(40);
  });
});

/** Options every copy below is made with: a keyed replacement per UID, as the CLI makes them. */
const copyOptions: DeidentifyOptions = {
  mapUid: (uid) => derivedUid('range-test', uid),
  pseudonym: { patientName: 'ANON^RANGE', patientId: 'RANGE-1' },
  dateShiftDays: -40,
};

async function streamed(bytes: Uint8Array, limits: RangeReadLimits): Promise<Buffer> {
  const copy = await deidentifiedCopyStream(
    countingSource(bytes),
    async (start, end) => Readable.from([bytes.subarray(start, end)]),
    async () => copyOptions,
    limits,
  );
  const chunks: Buffer[] = [];
  for await (const c of copy.body) chunks.push(Buffer.from(c as Uint8Array));
  const out = Buffer.concat(chunks);
  expect(out.length).toBe(copy.bytes);
  return out;
}

const copied = new Set<string>();

describe.runIf(hasCorpus)(
  'de-identified copies streamed from a file read by range, against the whole file',
  () => {
    test.each(files)('%s', async (rel) => {
      const bytes = new Uint8Array(readFileSync(corpusPath(rel)));
      let expected: Uint8Array;
      let headBytes: number;
      try {
        expected = deidentifyDicom(bytes, copyOptions).bytes;
        headBytes = headBytesFor(parseDicom(bytes));
      } catch (err) {
        if (!isAppError(err)) throw err;
        await expect(streamed(bytes, { wholeReadBytes: 0, headBytes: 4096 })).rejects.toMatchObject({
          code: expect.any(String),
        });
        return;
      }
      const limits = { wholeReadBytes: 0, headBytes };
      const read = await readInstanceForFrame(countingSource(bytes), -1, limits);
      if (!read.whole) copied.add(rel);
      expect(Buffer.from(await streamed(bytes, limits)).equals(Buffer.from(expected))).toBe(true);
    });

    test('most copies took the ranged path', () => {
      expect(copied.size).toBeGreaterThan(40);
    });
  },
);

describe('a large multi-frame instance', () => {
  const frames = 48;
  const rows = 64;
  const pixels = new Uint8Array(frames * rows * rows * 2);
  for (let i = 0; i < pixels.length / 2; i++) pixels[i * 2] = (i * 7) % 251;
  /** The multi-frame instance, with `extra` elements, in `encoding`. */
  const multiFrame = (extra: DicomElement[] = [], encoding?: DicomEncoding) =>
    writeDicom(
      imageElements({
        rows,
        columns: rows,
        bitsAllocated: 16,
        pixelData: pixels,
        extra: [{ tag: 0x00280008, vr: 'IS', value: String(frames) }, ...extra],
      }),
      encoding ? { encoding } : {},
    );
  const bytes = multiFrame();
  const limits = { wholeReadBytes: 0, headBytes: 4096 };

  test('reads its header and one frame, not the file', async () => {
    const source = countingSource(bytes);
    const read = await readInstanceForFrame(source, 30, limits);
    expect(read.whole).toBe(false);
    // The header, the element's header, and one 8 KiB frame.
    expect(source.bytesRead).toBeLessThan(bytes.length / 10);
    expect(await decode(read.instance, 30)).toEqual(await decode(parseDicom(bytes), 30));
  });

  test('a header longer than the first read is read further, not the whole file', async () => {
    const withPrivateBlock = multiFrame([
      { tag: 0x00090010, vr: 'LO', value: 'TELEREAD TEST' },
      { tag: 0x00091010, vr: 'OB', value: new Uint8Array(20_000).fill(7) },
    ]);
    const source = countingSource(withPrivateBlock);
    const read = await readInstanceForFrame(source, 5, limits);
    expect(read.whole).toBe(false);
    expect(source.bytesRead).toBeLessThan(withPrivateBlock.length / 2);
    expect(await decode(read.instance, 5)).toEqual(await decode(parseDicom(withPrivateBlock), 5));
  });

  test('one that must be read whole is refused over 1 GiB, and a non-DICOM file at its first read', async () => {
    // A deflated data set cannot be read by range. The source claims 1.5 GiB: the file, then zeros never read.
    const deflated = multiFrame([], 'deflated');
    const huge = (b: Uint8Array) => countingSource(b, 1.5 * 1024 ** 3);
    const big = huge(deflated);
    await expect(readInstanceForFrame(big)).rejects.toMatchObject({ code: 'PAYLOAD_TOO_LARGE' });
    const notDicom = huge(new TextEncoder().encode('not a DICOM file at all, just text'));
    await expect(readInstanceForFrame(notDicom)).rejects.toMatchObject({ code: 'UNSUPPORTED_FORMAT' });
    expect(notDicom.bytesRead).toBe(1024 * 1024);
  });

  test('without a frame, reads the middle one (what a thumbnail shows)', async () => {
    expect((await readInstanceForFrame(countingSource(bytes), undefined, limits)).frame).toBe(frames / 2);
  });

  test('a frame past the last is not read, and the decoder names it', async () => {
    const read = await readInstanceForFrame(countingSource(bytes), frames, limits);
    expect(read.instance.numberOfFrames).toBe(frames);
    await expect(decodeDicomFrame(read.instance, frames)).rejects.toMatchObject({
      code: 'VALIDATION_FAILED',
      message: expect.stringContaining(`frame ${frames + 1} does not exist`),
    });
  });

  test('cut short inside its pixel data, it fails as the whole file does', async () => {
    const cut = bytes.subarray(0, bytes.length - 5000);
    const whole = await decode(parseDicom(cut), frames - 1);
    expect(whole).toMatchObject({ code: 'CORRUPT_FILE' });
    const read = await readInstanceForFrame(countingSource(cut), frames - 1, limits);
    expect(await decode(read.instance, frames - 1)).toEqual(whole);
  });
});
