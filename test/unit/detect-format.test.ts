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
