// Builds the plain-JavaScript copy of the CLI that bin/teleread runs: `node scripts/build-cli.mjs OUTDIR`.
//
// Why: running the TypeScript through tsx costs a fresh process about 0.2 s and 40 MB before any command starts
// (the loader, its esbuild service and a resolve hook on every import), more than the rest of a
// `bin/teleread render` of a slide (docs/benchmarks.md, pathology). The build is the same transpilation tsx does (esbuild, tsconfig.json), done
// once per source tree instead of per process.
//
// - One bundle of src/cli/main.ts with code splitting: each lazily imported command stays its own chunk, so
//   `render` still never evaluates the API, queue or S3 modules.
// - Packages stay in node_modules (never bundled), as under tsx. Those that are CommonJS are loaded with
//   require() instead of import: Node's ESM-to-CommonJS bridge parses every such package with its module
//   lexer, which costs sharp alone about 10 MB and 50 ms. Packages of "type": "module" keep their import.
// - `import.meta.url` in our sources is replaced by the source file's own URL, so paths computed from it
//   (the repository root, createRequire) are what they are under tsx. The decode worker is a second entry point,
//   which src/imaging/decode-pool.ts finds through __TELEREAD_DECODE_WORKER__.
//
// The output appears at OUTDIR only when complete (written beside it, then renamed), so processes starting
// together never see half a build; the loser of a race keeps the winner's copy. Other builds in OUTDIR's
// parent are removed once they are an hour old (about 2 MB each). Exit status 0 when OUTDIR holds a build,
// 1 otherwise (bin/teleread then runs the sources through tsx).
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync } from 'node:fs';
import { builtinModules } from 'node:module';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
/** Where the bundled sources may come from. bin/teleread's cache key covers exactly these (and the configs). */
const SOURCE_DIRS = ['src', 'workers'].map((d) => path.join(root, d) + path.sep);
/**
 * Other builds are removed once this old. Only a process in its first few milliseconds reads its build's
 * files (each command's chunk is imported at start); a long-running service that later starts a decode thread
 * falls back to the sources when its build is gone (src/imaging/decode-pool.ts).
 */
const STALE_MS = 3600 * 1000;

const outdir = process.argv[2];
if (!outdir) {
  console.error('usage: node scripts/build-cli.mjs OUTDIR');
  process.exit(2);
}

/** "type" of an installed package, or undefined when it is not at the top of node_modules. */
function packageType(specifier) {
  const parts = specifier.split('/');
  const name = specifier.startsWith('@') ? parts.slice(0, 2).join('/') : parts[0];
  try {
    return (
      JSON.parse(readFileSync(path.join(root, 'node_modules', name, 'package.json'), 'utf8')).type ??
      'commonjs'
    );
  } catch {
    return undefined;
  }
}

const builtins = new Set(builtinModules);

/** @type {import('esbuild').Plugin} */
const telereadPlugin = {
  name: 'teleread',
  setup(build) {
    build.onResolve({ filter: /^[^./]/ }, (args) => {
      if (args.namespace === 'teleread-require') return { path: args.path, external: true };
      if (args.path.startsWith('node:') || builtins.has(args.path))
        return { path: args.path, external: true };
      const type = packageType(args.path);
      if (type === 'commonjs' && args.kind === 'import-statement') {
        return { path: args.path, namespace: 'teleread-require' };
      }
      return { path: args.path, external: true };
    });
    // __telereadRequire is declared by the banner of every output file.
    build.onLoad({ filter: /.*/, namespace: 'teleread-require' }, (args) => ({
      contents: `module.exports = __telereadRequire(${JSON.stringify(args.path)});`,
      loader: 'js',
    }));
    build.onLoad({ filter: /\.(ts|mts|js|mjs)$/ }, (args) => {
      if (!SOURCE_DIRS.some((d) => args.path.startsWith(d))) return undefined;
      const text = readFileSync(args.path, 'utf8');
      const url = JSON.stringify(pathToFileURL(args.path).href);
      const ext = path.extname(args.path);
      return {
        contents: text.replaceAll('import.meta.url', url),
        loader: ext === '.ts' || ext === '.mts' ? 'ts' : 'js',
      };
    });
  },
};

function pruneOldBuilds(parent, keep) {
  const now = Date.now();
  for (const name of readdirSync(parent)) {
    const dir = path.join(parent, name);
    if (dir === keep) continue;
    try {
      if (now - statSync(dir).mtimeMs > STALE_MS) rmSync(dir, { recursive: true, force: true });
    } catch {
      // Another process pruned it first.
    }
  }
}

async function main() {
  if (existsSync(path.join(outdir, 'main.mjs'))) return 0;
  const parent = path.dirname(outdir);
  const tmp = `${outdir}.tmp-${process.pid}`;
  try {
    const { build } = await import('esbuild');
    mkdirSync(parent, { recursive: true });
    rmSync(tmp, { recursive: true, force: true });
    const result = await build({
      absWorkingDir: root,
      entryPoints: { main: 'src/cli/main.ts', 'decode-worker': 'src/imaging/codecs/decode-worker.ts' },
      outdir: tmp,
      outExtension: { '.js': '.mjs' },
      bundle: true,
      splitting: true,
      format: 'esm',
      platform: 'node',
      target: 'node20',
      tsconfig: path.join(root, 'tsconfig.json'),
      sourcemap: 'linked',
      sourcesContent: false,
      metafile: true,
      // src/imaging/decode-pool.ts starts this build's worker (the final location: tmp is renamed to outdir).
      define: {
        __TELEREAD_DECODE_WORKER__: JSON.stringify(
          pathToFileURL(path.join(path.resolve(outdir), 'decode-worker.mjs')).href,
        ),
      },
      logLevel: 'silent',
      banner: {
        js: "import { createRequire as __telereadCreateRequire } from 'node:module';\nconst __telereadRequire = __telereadCreateRequire(import.meta.url);",
      },
      plugins: [telereadPlugin],
    });
    // The cache key in bin/teleread only watches SOURCE_DIRS: a source elsewhere would go stale unseen.
    const outside = Object.keys(result.metafile.inputs).filter((input) => {
      if (input.startsWith('teleread-require:') || input.includes('node_modules/')) return false;
      return !SOURCE_DIRS.some((d) => path.resolve(root, input).startsWith(d));
    });
    if (outside.length > 0) throw new Error(`sources outside src/ and workers/: ${outside.join(', ')}`);
    try {
      renameSync(tmp, outdir);
    } catch (err) {
      // A concurrent start renamed its own complete build there first.
      if (!existsSync(path.join(outdir, 'main.mjs'))) throw err;
      rmSync(tmp, { recursive: true, force: true });
    }
    pruneOldBuilds(parent, outdir);
    return 0;
  } catch (err) {
    try {
      rmSync(tmp, { recursive: true, force: true });
    } catch {
      // Nothing was written (node_modules read-only, say).
    }
    const detail = err?.errors?.[0]?.text ?? (err instanceof Error ? err.message : String(err));
    console.error(`teleread: could not build the CLI (${detail}); running the sources through tsx`);
    return 1;
  }
}

process.exit(await main());
