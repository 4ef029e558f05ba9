import { readFileSync } from 'node:fs';
import { describe, expect, test } from 'vitest';
import { detectFormat } from '../../src/formats/detect.js';
import { inspectFile } from '../../src/formats/inspect.js';
import { byteSourceFromBytes } from '../../src/formats/types.js';
import { corpusPath, hasCorpus } from '../corpus.js';
import { writeDicom } from '../helpers/dicom-writer.js';

const element = (tag: number, vr: string, value: string) => ({ tag, vr, value });

/** A bare explicit-VR little-endian data set (no preamble, no file meta) that opens with group 0010. */
function bareDataSetFromGroup0010(): Uint8Array {
  return writeDicom(
    [
      element(0x00100010, 'PN', 'Doe^Jane'),
      element(0x00100020, 'LO', 'P-1'),
      element(0x0020000d, 'UI', '1.2.3.4'),
      element(0x0020000e, 'UI', '1.2.3.4.5'),
    ],
    { encoding: 'explicit-le', preamble: false, meta: false },
  );
}

describe('detectFormat', () => {
  test('a bare data set is DICOM by its first element when that is group 0008', () => {
    const bytes = writeDicom([element(0x00080060, 'CS', 'CT')], {
      encoding: 'explicit-le',
      preamble: false,
      meta: false,
    });
    expect(detectFormat(bytes.subarray(0, 4096), 'anything.bin')).toBe('dicom');
  });

  test('a bare data set opening with another group is DICOM by its name, and then parses', async () => {
    const bytes = bareDataSetFromGroup0010();
    expect(detectFormat(bytes.subarray(0, 4096), 'noname')).toBe('unknown');
    for (const name of ['IM0001.dcm', 'scan.DICOM', 'slice.IMA']) {
      expect(detectFormat(bytes.subarray(0, 4096), name)).toBe('dicom');
    }
    const inspection = await inspectFile(byteSourceFromBytes(bytes), 'IM0001.dcm');
    expect(inspection.format).toBe('dicom');
    expect(inspection.studyInstanceUid).toBe('1.2.3.4');
  });

  test('a .dcm that is text or random bytes is still refused with a stable code', async () => {
    const text = new TextEncoder().encode('this is a note, not an image\n');
    expect(detectFormat(text, 'note.dcm')).not.toBe('dicom');
    const noise = new Uint8Array(2048).map((_, i) => (i * 7919 + 13) & 0xff);
    noise[0] = 0xff; // not a group any data set starts with
    expect(detectFormat(noise, 'noise.dcm')).toBe('dicom');
    await expect(inspectFile(byteSourceFromBytes(noise), 'noise.dcm')).rejects.toMatchObject({
      code: 'UNSUPPORTED_FORMAT',
    });
  });

  test.runIf(hasCorpus)(
    "pydicom's no_meta.dcm (a stray byte before the data set) goes through inspect",
    async () => {
      const bytes = readFileSync(corpusPath('dicom/pydicom/no_meta.dcm'));
      const inspection = await inspectFile(byteSourceFromBytes(bytes), 'no_meta.dcm');
      expect(inspection.format).toBe('dicom');
    },
  );
});

describe('inspectFile on DICOM', () => {
  /** A ByteSource that remembers the furthest byte it was asked for. */
  function recording(bytes: Uint8Array) {
    const source = byteSourceFromBytes(bytes);
    const seen = { furthest: 0, reads: 0 };
    return {
      seen,
      source: {
        size: source.size,
        read: (offset: number, length: number) => {
          seen.reads++;
          seen.furthest = Math.max(seen.furthest, offset + length);
          return source.read(offset, length);
        },
      },
    };
  }
  const image = (before: Uint8Array) =>
    writeDicom([
      element(0x0020000d, 'UI', '1.2.3.4'),
      { tag: 0x00291010, vr: 'OB', value: before },
      { tag: 0x00280010, vr: 'US', value: 512 },
      { tag: 0x00280011, vr: 'US', value: 512 },
      { tag: 0x00280100, vr: 'US', value: 16 },
      { tag: 0x7fe00010, vr: 'OW', value: new Uint16Array(512 * 512) },
    ]);

  test('reads only the header of a large instance, and the same metadata as the whole file gives', async () => {
    const bytes = image(new Uint8Array(16));
    const { source, seen } = recording(bytes);
    const fromHeader = await inspectFile(source, 'ct.dcm');
    expect(seen.furthest).toBeLessThan(bytes.length / 2);
    // Sniffing the format and reading the header share one read of the store.
    expect(seen.reads).toBe(1);
    const whole = await inspectFile(byteSourceFromBytes(bytes), 'ct.dcm');
    expect(fromHeader).toEqual(whole);
    expect(fromHeader.metadata).toMatchObject({ rows: 512, hasPixelData: true });
  });

  test('a header longer than the first read is read whole', async () => {
    const long = image(new Uint8Array(200 * 1024));
    const { source, seen } = recording(long);
    expect((await inspectFile(source, 'big-header.dcm')).studyInstanceUid).toBe('1.2.3.4');
    expect(seen.furthest).toBe(long.length);
  });
});
