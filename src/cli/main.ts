import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { type ParseArgsConfig, parseArgs } from 'node:util';
import { startWorkerProcess } from '../../workers/worker.js';
import { startApi } from '../api/start-api.js';
import { CONFIG_FIELDS, loadConfig } from '../config.js';
import { createContext } from '../context.js';
import { createDatabase, migrateToLatest } from '../db/database.js';
import { startDimseServer } from '../dimse/start-dimse-server.js';
import { isAppError } from '../errors.js';
import { onShutdown } from '../shutdown.js';
import { addReader, addSite, createKey } from './admin-commands.js';
import { deidentifyCommand } from './deidentify-command.js';
import { demoCommand } from './demo.js';
import { inspectCommand, qrsCommand, renderCommand } from './file-commands.js';
import { uploadCommand } from './upload-command.js';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

const USAGE = `teleread <command> [options]

  demo [--once]                      seed, start API + workers, upload fixtures/, print worklists
  api                                run the HTTP API
  worker [--queues a,b]              run pipeline workers (ingest, process, route, maintenance)
  dimse                              run the DICOM C-STORE/C-ECHO listener on DICOM_PORT
  migrate                            apply database migrations
  sites add ID --jurisdiction J [--name N] [--ae-titles AE1,AE2]
  readers add ID --specialties a,b --jurisdictions X,Y [--name N] [--max-active N]
  keys create --role clinic|reader|ops|admin [--site S | --reader R] [--label L]
  inspect FILE… [--json]             detected kind, format and metadata per file
  render FILE -o OUT.png [--size N] [--frame K]
                                     the thumbnail the pipeline would make (DICOM: frame K, 1-based)
  deidentify IN OUT [--secret S] [--pseudonym P]
                                     PS3.15 Basic Profile + Modified Dates + Clean Descriptors (files or folders)
  qrs FILE                           detected R-peak times (s), one a line
  upload --server URL --key K [--priority P] [--notes T] FILE|DIR…
  config                             list the environment variables and their defaults
`;

async function withDb<T>(fn: (db: ReturnType<typeof createDatabase>) => Promise<T>): Promise<T> {
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
      return demoCommand({ once: Boolean(values.once), fixturesDir: path.join(repoRoot, 'fixtures') });
    }
    case 'api': {
      const ctx = await createContext(loadConfig());
      const { app, url } = await startApi(ctx);
      ctx.log.info({ url }, 'api listening');
      onShutdown(ctx.log, async () => {
        await app.close();
        await ctx.close();
      });
      return new Promise(() => undefined);
    }
    case 'dimse': {
      const ctx = await createContext(loadConfig());
      const server = await startDimseServer(ctx);
      ctx.log.info({ port: server.port, aeTitle: ctx.config.dicomAeTitle }, 'DIMSE listener ready');
      onShutdown(ctx.log, async () => {
        await server.close();
        await ctx.close();
      });
      return new Promise(() => undefined);
    }
    case 'worker': {
      const { values } = args({ queues: { type: 'string' } });
      await startWorkerProcess(values.queues as string | undefined);
      return new Promise(() => undefined);
    }
    case 'migrate': {
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
      });
      const [verb, id] = positionals;
      if (verb !== 'add' || !id) throw new Error(`usage: teleread ${command} add ID …`);
      const v = values as Record<string, string | undefined>;
      await withDb((db) =>
        command === 'sites'
          ? addSite(db, {
              id,
              jurisdiction: v.jurisdiction ?? '',
              ...(v.name ? { name: v.name } : {}),
              ...(v['ae-titles'] !== undefined ? { aeTitles: v['ae-titles'] } : {}),
            })
          : addReader(db, {
              id,
              specialties: v.specialties ?? '',
              jurisdictions: v.jurisdictions ?? '',
              ...(v.name ? { name: v.name } : {}),
              ...(v['max-active'] ? { maxActive: Number(v['max-active']) } : {}),
            }),
      );
      console.log(`${command === 'sites' ? 'site' : 'reader'} ${id} saved`);
      return 0;
    }
    case 'keys': {
      const { values, positionals } = args({
        role: { type: 'string' },
        site: { type: 'string' },
        reader: { type: 'string' },
        label: { type: 'string' },
      });
      if (positionals[0] !== 'create') throw new Error('usage: teleread keys create --role …');
      const v = values as Record<string, string | undefined>;
      const created = await withDb((db) =>
        createKey(db, {
          role: v.role ?? '',
          ...(v.site ? { site: v.site } : {}),
          ...(v.reader ? { reader: v.reader } : {}),
          ...(v.label ? { label: v.label } : {}),
        }),
      );
      // The key is printed once and never stored in clear.
      console.log(created.key);
      return 0;
    }
    case 'inspect': {
      const { values, positionals } = args({ json: { type: 'boolean', default: false } });
      if (positionals.length === 0) throw new Error('usage: teleread inspect FILE… [--json]');
      return inspectCommand(positionals, Boolean(values.json));
    }
    case 'qrs': {
      const { positionals } = args({});
      if (positionals.length !== 1) throw new Error('usage: teleread qrs FILE');
      return qrsCommand(positionals[0]!);
    }
    case 'render': {
      const { values, positionals } = args({
        out: { type: 'string', short: 'o' },
        size: { type: 'string' },
        frame: { type: 'string' },
      });
      const v = values as Record<string, string | undefined>;
      if (positionals.length !== 1 || !v.out) {
        throw new Error('usage: teleread render FILE -o OUT.png [--size N] [--frame K]');
      }
      return renderCommand(
        positionals[0]!,
        v.out,
        Number(v.size ?? 256),
        v.frame ? Number(v.frame) : undefined,
      );
    }
    case 'deidentify': {
      const { values, positionals } = args({ secret: { type: 'string' }, pseudonym: { type: 'string' } });
      const v = values as Record<string, string | undefined>;
      if (positionals.length !== 2)
        throw new Error('usage: teleread deidentify IN OUT [--secret S] [--pseudonym P]');
      return deidentifyCommand(positionals[0]!, positionals[1]!, {
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
      });
      const v = values as Record<string, string | undefined>;
      const server = v.server ?? process.env.TELEREAD_SERVER;
      const key = v.key ?? process.env.TELEREAD_KEY;
      if (!server || !key || positionals.length === 0) {
        throw new Error('usage: teleread upload --server URL --key K FILE|DIR…');
      }
      return uploadCommand(server, key, positionals, v.priority as 'stat' | undefined, v.notes);
    }
    case 'config': {
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

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err) => {
    if (isAppError(err)) console.error(`${err.code}: ${err.message}`);
    else console.error(err instanceof Error ? err.message : err);
    process.exit(1);
  },
);
