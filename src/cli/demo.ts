import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { startApi } from '../api/start-api.js';
import { collectBatches, uploadBatch } from '../client/upload-client.js';
import { loadConfig } from '../config.js';
import { createContext } from '../context.js';
import { getRules } from '../db/rule-queries.js';
import { runWorkers } from '../pipeline/run-worker.js';
import { onShutdown } from '../shutdown.js';
import { addReader, addSite, createKey } from './admin-commands.js';
import { loadRulesFile } from './rules-command.js';

const DEMO_SITE = { id: 'demo-clinic', name: 'Demo rural clinic', jurisdiction: 'KE' };
const DEMO_READERS = [
  {
    id: 'dr-cardio',
    name: 'Dr. A. Cardiologist',
    specialties: 'cardiology',
    jurisdictions: 'KE,UG',
    languages: 'en,sw',
  },
  {
    id: 'dr-radio',
    name: 'Dr. B. Radiologist',
    specialties: 'radiology',
    subspecialties: 'body,chest',
    jurisdictions: 'KE',
    languages: 'en',
  },
  {
    id: 'dr-patho',
    name: 'Dr. C. Pathologist',
    specialties: 'pathology',
    subspecialties: 'histology',
    jurisdictions: 'KE,TZ',
    languages: 'en,fr',
  },
];

interface CaseView {
  id: string;
  kind: string;
  status: string;
  priority: string;
  assignedReader: { id: string } | null;
  routeNote: string | null;
  files: Array<{ name: string; status: string; error: { code: string; message: string } | null }>;
  artifacts: Array<{ name: string; url: string }>;
}

/**
 * The main job on embedded defaults: migrate, seed a site, three readers and keys, start the API and the
 * workers in this process, upload fixtures/ (one folder = one upload), wait until every case is routed, and
 * print each reader's worklist. `--once` exits (0 only if every sample case reached a worklist).
 */
export async function demoCommand(options: { once: boolean; fixturesDir: string }): Promise<number> {
  // The demo's own output is the point; logs stay at warn unless LOG_LEVEL says otherwise.
  // A demo study is complete once uploaded, so it waits 2 s (not the production 60 s) before processing.
  const config = loadConfig({ LOG_LEVEL: 'warn', STUDY_STABLE_SECONDS: '2', ...process.env });
  const ctx = await createContext(config);
  const say = (s: string) => process.stdout.write(`${s}\n`);
  await addSite(ctx.db, DEMO_SITE);
  for (const r of DEMO_READERS) await addReader(ctx.db, r);
  // The example rule set, unless this database already has rules of its own (the demo never replaces them).
  if ((await getRules(ctx.db)).length === 0) {
    const loaded = await loadRulesFile(ctx.db, path.join(options.fixturesDir, 'rules.yaml'));
    say(`loaded ${loaded.length} routing rules from fixtures/rules.yaml`);
  }
  const clinicKey = (await createKey(ctx.db, { role: 'clinic', site: DEMO_SITE.id, label: 'demo' })).key;
  const opsKey = (await createKey(ctx.db, { role: 'ops', label: 'demo' })).key;
  const readerKeys = new Map<string, string>();
  for (const r of DEMO_READERS) {
    readerKeys.set(r.id, (await createKey(ctx.db, { role: 'reader', reader: r.id, label: 'demo' })).key);
  }

  const workers = await runWorkers(ctx);
  const { app, url } = await startApi(ctx).catch(async (err: NodeJS.ErrnoException) => {
    if (err.code !== 'EADDRINUSE') throw err;
    say(`port ${config.port} is busy; using a free port instead`);
    return startApi(ctx, 0);
  });
  const close = async () => {
    await app.close();
    await workers.close();
    await ctx.close();
  };
  say(`Teleread API on ${url}  (OpenAPI: ${url}/docs)`);

  const api = async <T>(key: string, p: string): Promise<T> => {
    const res = await fetch(new URL(p, url), { headers: { authorization: `Bearer ${key}` } });
    return (await res.json()) as T;
  };

  let ok = true;
  try {
    const dirs = ['imaging', 'ecg', 'pathology'].map((d) => path.join(options.fixturesDir, d));
    const batches = await collectBatches(dirs);
    const uploaded: string[] = [];
    for (const batch of batches) {
      const result = await uploadBatch(batch, {
        server: url,
        key: clinicKey,
        notes: `demo ${path.basename(batch.label)}`,
      });
      say(`uploaded ${path.basename(batch.label)}: ${result.files.map((f) => f.name).join(', ')}`);
      uploaded.push(...result.files.map((f) => f.id));
    }

    // Wait until every uploaded file has a case and every such case is routed (or a file has failed for good).
    const deadline = Date.now() + 180_000;
    let caseIds = new Set<string>();
    for (;;) {
      const files = await Promise.all(
        uploaded.map((id) => api<{ status: string; caseId: string | null }>(opsKey, `/v1/files/${id}`)),
      );
      caseIds = new Set(files.map((f) => f.caseId).filter((c): c is string => c !== null));
      const cases = await Promise.all([...caseIds].map((id) => api<CaseView>(opsKey, `/v1/cases/${id}`)));
      const settled = files.every((f) => f.status === 'processed' || f.status === 'failed');
      const routed = cases.every((c) => c.status === 'routed' || c.status === 'failed');
      if (settled && routed && caseIds.size > 0) {
        for (const c of cases) {
          say(
            `case ${c.id}  ${c.kind.padEnd(9)} ${c.status.padEnd(7)} → ${c.assignedReader?.id ?? 'pool'}  (${c.routeNote ?? ''})`,
          );
          for (const f of c.files.filter((x) => x.error))
            say(`   ${f.name}: ${f.error!.code} ${f.error!.message}`);
          if (c.status !== 'routed') ok = false;
        }
        break;
      }
      if (Date.now() > deadline) {
        say('timed out waiting for the sample cases to be routed');
        ok = false;
        break;
      }
      await sleep(250);
    }

    say('\nWorklists (assigned: pushed to the reader; claimable: in a pool the reader may claim from):');
    for (const r of DEMO_READERS) {
      const wl = await api<{
        cases: Array<{
          id: string;
          kind: string;
          priority: string;
          state: string;
          dueAt: string;
          thumbnailUrl: string | null;
        }>;
      }>(readerKeys.get(r.id)!, '/v1/worklist');
      say(`  ${r.id} (${r.specialties}): ${wl.cases.length} case(s)`);
      for (const c of wl.cases)
        say(
          `    ${c.priority.padEnd(7)} ${c.kind.padEnd(9)} ${c.state.padEnd(9)} due ${c.dueAt}  ${c.id}  ${c.thumbnailUrl ?? ''}`,
        );
      const mine = wl.cases.filter((c) => caseIds.has(c.id));
      if (mine.length === 0) ok = false;
      // A pool case is read by whoever claims it first: show the lease a claim takes.
      const claimable = mine.find((c) => c.state === 'claimable');
      if (claimable) {
        const res = await fetch(new URL(`/v1/cases/${claimable.id}/claim`, url), {
          method: 'POST',
          headers: { authorization: `Bearer ${readerKeys.get(r.id)}` },
        });
        const lease = (await res.json()) as { leaseExpiresAt?: string };
        if (res.status !== 200) ok = false;
        say(
          `    ${r.id} claimed ${claimable.id}: lease until ${lease.leaseExpiresAt ?? `(refused ${res.status})`}`,
        );
      }
    }
    say('\nKeys for this run (shown once):');
    say(`  clinic   ${clinicKey}`);
    say(`  ops      ${opsKey}`);
    for (const [id, key] of readerKeys) say(`  ${id.padEnd(8)} ${key}`);
    say(`\nTry: curl -H "Authorization: Bearer ${readerKeys.get('dr-radio')}" ${url}/v1/worklist`);
  } catch (err) {
    ok = false;
    say(`demo failed: ${err instanceof Error ? err.message : String(err)}`);
  }

  if (options.once) {
    await close();
    say(ok ? '\ndemo: every sample case reached a reader’s worklist' : '\ndemo: FAILED');
    return ok ? 0 : 1;
  }
  say('\nServing until Ctrl-C.');
  onShutdown(ctx.log, close);
  return new Promise<number>(() => undefined);
}
