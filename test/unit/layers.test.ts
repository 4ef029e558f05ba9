import { readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { expect, test } from 'vitest';
import { repoRoot } from '../corpus.js';

function sources(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const full = path.join(dir, name);
    return statSync(full).isDirectory() ? sources(full) : full.endsWith('.ts') ? [full] : [];
  });
}

// formats/ and domain/ are pure: bytes in, typed data out. Side effects live in thin adapters above them.
const FORBIDDEN =
  /from\s+['"](node:fs|fs|node:fs\/promises|fs\/promises|pg|bullmq|ioredis|sharp|pino|kysely)['"]/;

test.each(['src/formats', 'src/domain'])(
  '%s imports no I/O, database, queue, logging or image library',
  (dir) => {
    const offenders = sources(path.join(repoRoot, dir)).filter((f) =>
      FORBIDDEN.test(readFileSync(f, 'utf8')),
    );
    expect(offenders.map((f) => path.relative(repoRoot, f))).toEqual([]);
  },
);

test('only src/imaging imports sharp', () => {
  const offenders = sources(path.join(repoRoot, 'src'))
    .filter((f) => !f.includes(`${path.sep}imaging${path.sep}`))
    .filter((f) => /from\s+['"]sharp['"]/.test(readFileSync(f, 'utf8')));
  expect(offenders.map((f) => path.relative(repoRoot, f))).toEqual([]);
});
