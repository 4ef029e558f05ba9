import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll } from 'vitest';
import { closeDecodePool } from '../../src/imaging/decode-pool.js';

/**
 * A temporary folder for the files a DICOM conformance suite writes (inputs for dcmtk, its outputs), made before
 * the suite and removed after it, when the decode thread pool is closed too. `file` names a path in it after a
 * test: `name` with everything but letters and digits turned into dashes, then `suffix`.
 */
export function dicomScratch(label: string): { file: (name: string, suffix: string) => string } {
  let dir = '';
  beforeAll(async () => {
    dir = await mkdtemp(path.join(tmpdir(), `teleread-${label}-`));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
    await closeDecodePool();
  });
  return { file: (name, suffix) => path.join(dir, `${name.replace(/[^a-z0-9]+/gi, '-')}${suffix}`) };
}
