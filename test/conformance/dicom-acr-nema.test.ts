import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { detectFormat } from '../../src/formats/detect.js';
import { parseDicom } from '../../src/formats/dicom/parse-dicom.js';
import { closeDecodePool } from '../../src/imaging/decode-pool.js';
import { hasDcmj2pnm, renderWithDcmtk, toGray } from '../helpers/dcmtk.js';
import { writeDicom } from '../helpers/dicom-writer.js';
import { layoutElements, MATRIX_LAYOUTS, pixelData } from '../helpers/pixel-layouts.js';
import { expectRendersLike, renderForComparison } from '../helpers/render-compare.js';

/**
 * ACR-NEMA's implicit VR big endian: a data set with neither file meta nor VRs, in big endian. DICOM has no
 * transfer syntax for it, but old archives hold such files and DCMTK reads them with its fallbacks, so parseDicom
 * must too: the header as dcmdump prints it, and frames that render like dcmj2pnm's (Pixel Data is OW without
 * VRs, so 8-bit samples come swapped in 16-bit words), over the layouts of the DCMTK transcode matrix.
 */

const run = promisify(execFile);

afterAll(closeDecodePool);

describe.runIf(hasDcmj2pnm)('implicit VR big endian (ACR-NEMA), against dcmdump and dcmj2pnm', () => {
  let dir = '';
  beforeAll(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'teleread-acr-nema-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  test.each(MATRIX_LAYOUTS.map((l) => [l.name, l] as const))('%s', async (_name, layout) => {
    const bytes = writeDicom(layoutElements(layout, pixelData(layout)), {
      encoding: 'implicit-be',
      meta: false,
      preamble: false,
    });
    const file = path.join(dir, `${layout.name.replace(/[^a-z0-9]+/gi, '-')}.acr`);
    await writeFile(file, bytes);

    // DCMTK reads it as "Virtual Big Endian Implicit".
    const { stdout, stderr } = await run('dcmdump', ['-q', '+L', file]);
    expect(stderr).not.toMatch(/^E:/m);
    const dumped = (tag: string) =>
      new RegExp(`^\\(${tag}\\) \\S\\S \\[?([^\\]\\s]+)`, 'm').exec(stdout)?.[1];

    expect(detectFormat(bytes.subarray(0, 4096), path.basename(file))).toBe('dicom');
    const instance = parseDicom(bytes);
    expect(instance.warnings.join('\n')).toMatch(/implicit VR big endian/);
    expect(instance.transferSyntaxUid).toBe('1.2.840.10008.1.2.2');
    expect({
      rows: instance.rows,
      columns: instance.columns,
      bitsAllocated: instance.bitsAllocated,
      samplesPerPixel: instance.samplesPerPixel,
      numberOfFrames: instance.numberOfFrames,
    }).toEqual({
      rows: Number(dumped('0028,0010')),
      columns: Number(dumped('0028,0011')),
      bitsAllocated: Number(dumped('0028,0100')),
      samplesPerPixel: Number(dumped('0028,0002')),
      numberOfFrames: Number(dumped('0028,0008') ?? 1),
    });
    const intercept = dumped('0028,1052');
    expect(instance.rescaleIntercept).toBe(intercept === undefined ? undefined : Number(intercept));

    for (let frame = 0; frame < (layout.frames ?? 1); frame++) {
      const ours = await renderForComparison(file, frame);
      const image = await toGray(ours.png);
      const reference = await renderWithDcmtk(file, {
        tool: 'dcmj2pnm',
        frame,
        voi: ours.voi,
        width: image.width,
        height: image.height,
      });
      expectRendersLike(expect, image, reference);
    }
  });
});
