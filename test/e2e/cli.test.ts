import { execFile } from 'node:child_process';
import { cp, mkdtemp, readdir, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import sharp from 'sharp';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { repoRoot } from '../corpus.js';
import { hasDcmj2pnm, renderWithDcmtk, toGray } from '../helpers/dcmtk.js';
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

test('render --size applies to every kind; without it each kind keeps the pipeline size', async () => {
  const ecg = path.join(repoRoot, 'fixtures/ecg/s0010_re.hea');
  const sized = path.join(dir, 'ecg-400.png');
  expect((await run(['render', ecg, '-o', sized, '--size', '400'])).code).toBe(0);
  expect((await sharp(await readFile(sized)).metadata()).width).toBe(400);
  const natural = path.join(dir, 'ecg.png');
  expect((await run(['render', ecg, '-o', natural])).code).toBe(0);
  expect((await sharp(await readFile(natural)).metadata()).width).toBe(800);
  const slide = path.join(repoRoot, 'fixtures/pathology/CMU-1-Small-Region.svs');
  const slideOut = path.join(dir, 'slide-256.png');
  expect((await run(['render', slide, '-o', slideOut, '--size', '256'])).code).toBe(0);
  const slideMeta = await sharp(await readFile(slideOut)).metadata();
  expect(Math.max(slideMeta.width ?? 0, slideMeta.height ?? 0)).toBe(256);
  const bad = await run(['render', ecg, '-o', natural, '--size', 'big']);
  expect(bad.code).toBe(1);
  expect(JSON.parse(bad.out.trim())).toMatchObject({ error: { code: 'VALIDATION_FAILED' } });
});

test.runIf(hasDcmj2pnm)('render --window draws the window given, as dcmj2pnm +Ww draws it', async () => {
  const ct = path.join(repoRoot, 'fixtures/imaging/CT_small.dcm');
  const out = path.join(dir, 'ct-window.png');
  expect((await run(['render', ct, '-o', out, '--window', '40,400'])).code).toBe(0);
  const ours = await toGray(await readFile(out));
  const reference = await renderWithDcmtk(ct, {
    tool: 'dcmj2pnm',
    frame: 0,
    voi: { window: { center: 40, width: 400 } },
    width: ours.width,
    height: ours.height,
  });
  expect(Buffer.from(ours.data).equals(Buffer.from(reference.data))).toBe(true);
  // Another window draws another image; a malformed one is refused.
  const other = path.join(dir, 'ct-bone.png');
  expect((await run(['render', ct, '-o', other, '--window', '500,2000'])).code).toBe(0);
  expect(Buffer.from((await toGray(await readFile(other))).data).equals(Buffer.from(ours.data))).toBe(false);
  const bad = await run(['render', ct, '-o', other, '--window', '40']);
  expect(bad.code).toBe(1);
  expect(JSON.parse(bad.out.trim())).toMatchObject({ error: { code: 'VALIDATION_FAILED' } });
});

/** Builds of the CLI (scripts/build-cli.mjs) made from the sources under `root`, by their embedded source URLs. */
async function buildsOf(root: string): Promise<string[]> {
  const cache = path.join(repoRoot, 'node_modules/.cache/teleread');
  const found: string[] = [];
  for (const name of await readdir(cache).catch(() => [])) {
    const main = await readFile(path.join(cache, name, 'main.mjs'), 'utf8').catch(() => '');
    if (main.includes(`file://${root}/src/`)) found.push(path.join(cache, name));
  }
  return found;
}

test('bin/teleread runs its compiled build, rebuilt when a source changes', async () => {
  // A copy of the sources sharing this checkout's node_modules, so the real sources are never edited.
  const copy = await mkdtemp(path.join(tmpdir(), 'teleread-cli-build-'));
  try {
    for (const entry of [
      'src',
      'workers',
      'bin',
      'scripts',
      'package.json',
      'package-lock.json',
      'tsconfig.json',
    ]) {
      await cp(path.join(repoRoot, entry), path.join(copy, entry), {
        recursive: true,
        preserveTimestamps: true,
      });
    }
    await symlink(path.join(repoRoot, 'node_modules'), path.join(copy, 'node_modules'));
    const help = async () => (await promisify(execFile)(path.join(copy, 'bin/teleread'), ['help'])).stdout;

    // stderr would carry "could not build the CLI": execFile's stdout alone is compared.
    expect(await help()).toContain('teleread <command> [options]');
    const first = await buildsOf(copy);
    expect(first).toHaveLength(1);

    const main = path.join(copy, 'src/cli/main.ts');
    await writeFile(
      main,
      (await readFile(main, 'utf8')).replace('teleread <command>', 'teleread-edited <command>'),
    );
    expect(await help()).toContain('teleread-edited <command> [options]');
    const second = await buildsOf(copy);
    expect(second).toHaveLength(2);
  } finally {
    for (const build of await buildsOf(copy)) await rm(build, { recursive: true, force: true });
    await rm(copy, { recursive: true, force: true });
  }
});
