import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { type ParseArgsConfig, parseArgs } from 'node:util';
import { isAppError } from '../errors.js';

// Each command imports what it needs when it runs: an API process should not carry sharp, the codecs, the
// DIMSE stack and the uploader in memory (RSS is budgeted; see docs/benchmarks.md), and the file commands
// (render, inspect, qrs, deidentify) should not load the configuration, database, queue, S3 and logger
// modules at all: importing them costs a fresh `bin/teleread render` about 0.3 s and 40 MB.
const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

const USAGE = `teleread <command> [options]

  demo [--once]                      seed, start API + workers, upload fixtures/, print worklists
  api                                run the HTTP API
  worker [--queues a,b]              run pipeline workers (ingest, process, route, maintenance)
  dimse                              run the DICOM C-STORE/C-ECHO listener on DICOM_PORT
  migrate                            apply database migrations
  sites add ID --jurisdiction J [--name N] [--ae-titles AE1,AE2]
            [--mains 50|60] [--cross-border never|deidentified|identified] [--sla stat=60,urgent=240,routine=1440]
            [--webhook-url URL --webhook-secret S]   report webhooks (--webhook-url '' removes it)
  readers add ID --specialties a,b --jurisdictions X,Y [--name N] [--max-active N]
            [--subspecialties neuro,chest] [--languages en,fr] [--time-zone Africa/Nairobi]
            [--shifts "mon-fri 08:00-17:00; sat 22:00-06:00" | --shifts always]
            [--exceptions "2025-12-25 off; 2025-12-27 extra 08:00-12:00"] [--active true|false]
  rules load FILE.yaml               replace the routing rules with a YAML rule set (fixtures/rules.yaml)
  rules list [--json]                the routing rules in evaluation order
  keys create --role clinic|reader|ops|admin [--site S | --reader R] [--label L] [--expires-in 30d]
  keys revoke ID                     refuse the key from its next request on
  keys list                          every key: id, prefix, role, scope, state (never the key)
  inspect FILE… [--json]             detected kind, format and metadata per file
  render FILE -o OUT.png [--size N] [--frame K] [--window C,W] [--no-overlays]
                                     the thumbnail the pipeline would make (DICOM: frame K, 1-based;
                                     window centre C, width W in modality units, else the file's;
                                     overlay planes drawn, as dcmj2pnm draws them, unless --no-overlays)
  deidentify IN OUT [--secret S] [--pseudonym P]
                                     PS3.15 Basic Profile + Modified Dates + Clean Descriptors (files or folders)
  qrs FILE                           detected R-peak times (s), one a line
  upload --server URL --key K [--priority P] [--notes T] [--parallel N] [--state-dir D] [--dry-run] FILE|DIR…
                                     resumable upload (tus): skips what the site already sent, resumes
                                     where a killed run stopped (state in --state-dir, ~/.teleread/uploads)
  config                             list the environment variables and their defaults
`;

type Db = ReturnType<typeof import('../db/database.js').createDatabase>;

/** What the long-running services need (context: database, Redis queues, object store, logger). */
async function services() {
  const [{ loadConfig }, { createContext }, { onShutdown }] = await Promise.all([
    import('../config.js'),
    import('../context.js'),
    import('../shutdown.js'),
  ]);
  return { loadConfig, createContext, onShutdown };
}

/** What the admin commands need: the configuration and the database, without Redis, S3 or the logger. */
async function database() {
  const [{ loadConfig }, { createDatabase, migrateToLatest }] = await Promise.all([
    import('../config.js'),
    import('../db/database.js'),
  ]);
  return { loadConfig, createDatabase, migrateToLatest };
}

async function withDb<T>(fn: (db: Db) => Promise<T>): Promise<T> {
  const { loadConfig, createDatabase, migrateToLatest } = await database();
  const config = loadConfig();
  const db = createDatabase(config.databaseUrl, { max: 2 });
  try {
    if (config.migrateOnStart) await migrateToLatest(db);
    return await fn(db);
  } finally {
    await db.destroy();
  }
}

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  const args = (options: NonNullable<ParseArgsConfig['options']>) =>
    parseArgs({ args: rest, options, allowPositionals: true, strict: true });

  switch (command) {
    case 'demo': {
      const { values } = args({ once: { type: 'boolean', default: false } });
      return (await import('./demo.js')).demoCommand({
        once: Boolean(values.once),
        fixturesDir: path.join(repoRoot, 'fixtures'),
      });
    }
    case 'api': {
      const { loadConfig, createContext, onShutdown } = await services();
      const ctx = await createContext(loadConfig());
      const { app, url } = await (await import('../api/start-api.js')).startApi(ctx);
      ctx.log.info({ url }, 'api listening');
      onShutdown(ctx.log, async () => {
        await app.close();
        await ctx.close();
      });
      return new Promise(() => undefined);
    }
    case 'dimse': {
      const { loadConfig, createContext, onShutdown } = await services();
      const ctx = await createContext(loadConfig());
      const server = await (await import('../dimse/start-dimse-server.js')).startDimseServer(ctx);
      ctx.log.info({ port: server.port, aeTitle: ctx.config.dicomAeTitle }, 'DIMSE listener ready');
      onShutdown(ctx.log, async () => {
        await server.close();
        await ctx.close();
      });
      return new Promise(() => undefined);
    }
    case 'worker': {
      const { values } = args({ queues: { type: 'string' } });
      await (await import('../../workers/worker.js')).startWorkerProcess(values.queues as string | undefined);
      return new Promise(() => undefined);
    }
    case 'migrate': {
      const { loadConfig, createDatabase, migrateToLatest } = await database();
      const config = loadConfig();
      const db = createDatabase(config.databaseUrl, { max: 1 });
      try {
        const applied = await migrateToLatest(db);
        console.log(applied.length ? `applied: ${applied.join(', ')}` : 'database is up to date');
      } finally {
        await db.destroy();
      }
      return 0;
    }
    case 'sites':
    case 'readers': {
      const { values, positionals } = args({
        name: { type: 'string' },
        jurisdiction: { type: 'string' },
        specialties: { type: 'string' },
        jurisdictions: { type: 'string' },
        'max-active': { type: 'string' },
        'ae-titles': { type: 'string' },
        mains: { type: 'string' },
        'cross-border': { type: 'string' },
        'webhook-url': { type: 'string' },
        'webhook-secret': { type: 'string' },
        sla: { type: 'string' },
        subspecialties: { type: 'string' },
        languages: { type: 'string' },
        'time-zone': { type: 'string' },
        shifts: { type: 'string' },
        exceptions: { type: 'string' },
        active: { type: 'string' },
      });
      const [verb, id] = positionals;
      if (verb !== 'add' || !id) throw new Error(`usage: teleread ${command} add ID …`);
      const v = values as Record<string, string | undefined>;
      const given = (flag: string, key: string) => (v[flag] !== undefined ? { [key]: v[flag] } : {});
      if (v.active !== undefined && !/^(true|false)$/.test(v.active))
        throw new Error('--active must be true or false');
      await withDb(async (db) =>
        command === 'sites'
          ? (await import('./admin-commands.js')).addSite(db, {
              id,
              jurisdiction: v.jurisdiction ?? '',
              ...(v.name ? { name: v.name } : {}),
              ...given('ae-titles', 'aeTitles'),
              ...given('mains', 'mains'),
              ...given('cross-border', 'crossBorder'),
              ...given('sla', 'sla'),
              ...given('webhook-url', 'webhookUrl'),
              ...given('webhook-secret', 'webhookSecret'),
            })
          : (await import('./admin-commands.js')).addReader(db, {
              id,
              specialties: v.specialties ?? '',
              jurisdictions: v.jurisdictions ?? '',
              ...(v.name ? { name: v.name } : {}),
              ...(v['max-active'] ? { maxActive: Number(v['max-active']) } : {}),
              ...given('subspecialties', 'subspecialties'),
              ...given('languages', 'languages'),
              ...given('time-zone', 'timeZone'),
              ...given('shifts', 'shifts'),
              ...given('exceptions', 'exceptions'),
              ...(v.active !== undefined ? { active: v.active === 'true' } : {}),
            }),
      );
      console.log(`${command === 'sites' ? 'site' : 'reader'} ${id} saved`);
      return 0;
    }
    case 'rules': {
      const { values, positionals } = args({ json: { type: 'boolean', default: false } });
      const [verb, ...files] = positionals;
      const out = await withDb(async (db) =>
        (await import('./rules-command.js')).rulesCommand(db, verb, files, Boolean(values.json)),
      );
      process.stdout.write(out);
      return 0;
    }
    case 'keys': {
      const { values, positionals } = args({
        role: { type: 'string' },
        site: { type: 'string' },
        reader: { type: 'string' },
        label: { type: 'string' },
        'expires-in': { type: 'string' },
      });
      const [verb, id] = positionals;
      if (verb === 'revoke') {
        if (!id) throw new Error('usage: teleread keys revoke ID');
        const revoked = await withDb(async (db) => (await import('./admin-commands.js')).revokeKey(db, id));
        console.log(`key ${revoked.id} revoked at ${revoked.revokedAt.toISOString()}`);
        return 0;
      }
      if (verb === 'list') {
        process.stdout.write(await withDb(async (db) => (await import('./admin-commands.js')).listKeys(db)));
        return 0;
      }
      if (verb !== 'create') throw new Error('usage: teleread keys create|revoke|list …');
      const v = values as Record<string, string | undefined>;
      const created = await withDb(async (db) =>
        (await import('./admin-commands.js')).createKey(db, {
          role: v.role ?? '',
          ...(v.site ? { site: v.site } : {}),
          ...(v.reader ? { reader: v.reader } : {}),
          ...(v.label ? { label: v.label } : {}),
          ...(v['expires-in'] ? { expiresIn: v['expires-in'] } : {}),
        }),
      );
      // The key is printed once and never stored in clear.
      console.log(created.key);
      return 0;
    }
    case 'inspect': {
      const { values, positionals } = args({ json: { type: 'boolean', default: false } });
      if (positionals.length === 0) throw new Error('usage: teleread inspect FILE… [--json]');
      return (await import('./file-commands.js')).inspectCommand(positionals, Boolean(values.json));
    }
    case 'qrs': {
      const { positionals } = args({});
      if (positionals.length !== 1) throw new Error('usage: teleread qrs FILE');
      return (await import('./file-commands.js')).qrsCommand(positionals[0]!);
    }
    case 'render': {
      const { values, positionals } = args({
        out: { type: 'string', short: 'o' },
        size: { type: 'string' },
        frame: { type: 'string' },
        window: { type: 'string' },
        'no-overlays': { type: 'boolean', default: false },
      });
      const v = values as Record<string, string | undefined>;
      if (positionals.length !== 1 || !v.out) {
        throw new Error(
          'usage: teleread render FILE -o OUT.png [--size N] [--frame K] [--window C,W] [--no-overlays]',
        );
      }
      return (await import('./file-commands.js')).renderCommand(
        positionals[0]!,
        v.out,
        v.size === undefined ? undefined : Number(v.size),
        v.frame ? Number(v.frame) : undefined,
        !values['no-overlays'],
        v.window,
      );
    }
    case 'deidentify': {
      const { values, positionals } = args({ secret: { type: 'string' }, pseudonym: { type: 'string' } });
      const v = values as Record<string, string | undefined>;
      if (positionals.length !== 2)
        throw new Error('usage: teleread deidentify IN OUT [--secret S] [--pseudonym P]');
      return (await import('./deidentify-command.js')).deidentifyCommand(positionals[0]!, positionals[1]!, {
        ...(v.secret ? { secret: v.secret } : {}),
        ...(v.pseudonym ? { pseudonym: v.pseudonym } : {}),
      });
    }
    case 'upload': {
      const { values, positionals } = args({
        server: { type: 'string' },
        key: { type: 'string' },
        priority: { type: 'string' },
        notes: { type: 'string' },
        parallel: { type: 'string' },
        'state-dir': { type: 'string' },
        'dry-run': { type: 'boolean', default: false },
        'chunk-mb': { type: 'string' },
      });
      const v = values as Record<string, string | boolean | undefined>;
      const server = (v.server as string | undefined) ?? process.env.TELEREAD_SERVER;
      const key = (v.key as string | undefined) ?? process.env.TELEREAD_KEY;
      if (!server || !key || positionals.length === 0) {
        throw new Error(
          'usage: teleread upload --server URL --key K [--priority P] [--notes T] [--parallel N] [--state-dir D] [--dry-run] FILE|DIR…',
        );
      }
      const priority = v.priority as string | undefined;
      if (priority !== undefined && !['stat', 'urgent', 'routine'].includes(priority)) {
        throw new Error('--priority must be stat, urgent or routine');
      }
      const number = (name: string, min: number, max: number): number | undefined => {
        const raw = v[name] as string | undefined;
        if (raw === undefined) return undefined;
        const n = Number(raw);
        if (!Number.isFinite(n) || n < min || n > max)
          throw new Error(`--${name} must be a number from ${min} to ${max}`);
        return n;
      };
      return (await import('./upload-command.js')).uploadCommand(positionals, {
        server,
        key,
        priority: priority as 'stat' | 'urgent' | 'routine' | undefined,
        notes: v.notes as string | undefined,
        parallel: number('parallel', 1, 64),
        stateDir: v['state-dir'] as string | undefined,
        dryRun: Boolean(v['dry-run']),
        chunkMb: number('chunk-mb', 0.0625, 4096),
      });
    }
    case 'config': {
      const { CONFIG_FIELDS } = await import('../config.js');
      for (const f of Object.values(CONFIG_FIELDS))
        console.log(`${f.name.padEnd(24)} ${f.fallback.padEnd(44)} ${f.describe}`);
      return 0;
    }
    case undefined:
    case 'help':
    case '--help':
    case '-h':
      process.stdout.write(USAGE);
      return command ? 0 : 2;
    default:
      process.stderr.write(`unknown command ${command}\n\n${USAGE}`);
      return 2;
  }
}

// `teleread qrs FILE | head` closes the pipe early; that is the reader's choice, not an error.
process.stdout.on('error', (err: NodeJS.ErrnoException) => {
  if (err.code === 'EPIPE') process.exit(0);
  throw err;
});

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err) => {
    if (isAppError(err)) console.error(`${err.code}: ${err.message}`);
    else console.error(err instanceof Error ? err.message : err);
    process.exit(1);
  },
);
