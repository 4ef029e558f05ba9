import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { repoRoot } from '../corpus.js';
import { spawnTeleread } from '../helpers/processes.js';

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'teleread-cli-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function run(args: string[]) {
  const p = spawnTeleread(args, {});
  const code = await p.exited;
  return { code, out: p.output() };
}

test('inspect prints one JSON object per file with kind, format and metadata', async () => {
  const { code, out } = await run([
    'inspect',
    '--json',
    path.join(repoRoot, 'fixtures/imaging/CT_small.dcm'),
    path.join(repoRoot, 'fixtures/ecg/s0010_re.hea'),
    path.join(repoRoot, 'fixtures/pathology/CMU-1-Small-Region.svs'),
  ]);
  expect(code).toBe(0);
  const lines = out
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l));
  expect(lines.map((l) => [l.kind, l.format])).toEqual([
    ['imaging', 'dicom'],
    ['ecg', 'wfdb'],
    ['pathology', 'aperio-svs'],
  ]);
  expect(lines[0].metadata.modality).toBe('CT');
  expect(lines[1].metadata.leads).toContain('V6');
  expect(lines[2].metadata.levels[0]).toMatchObject({ width: 2220, height: 2967 });
});

test('inspect of a bad file prints a stable error and exits non-zero', async () => {
  const bad = path.join(dir, 'garbage.bin');
  await writeFile(bad, Buffer.from('definitely not medical data, just text'));
  const { code, out } = await run(['inspect', '--json', bad]);
  expect(code).toBe(1);
  expect(JSON.parse(out.trim())).toMatchObject({ error: { code: 'UNSUPPORTED_FORMAT' } });
});

test('render writes the thumbnail the pipeline would make', async () => {
  const out = path.join(dir, 'ct.png');
  const { code } = await run([
    'render',
    path.join(repoRoot, 'fixtures/imaging/CT_small.dcm'),
    '-o',
    out,
    '--size',
    '64',
  ]);
  expect(code).toBe(0);
  const meta = await sharp(await readFile(out)).metadata();
  expect([meta.format, meta.width, meta.height]).toEqual(['png', 64, 64]);
});
