/**
 * Issue 3's imaging check, against dcmtk and Orthanc in the same run.
 *
 * (a) Warm-worker thumbnail time per instance for each transfer syntax: ten synthetic CT 512² slices per
 * syntax (see synthetic-dicom.ts for how each set is made), Teleread warm in this process (readFile →
 * parseDicom → renderDicomFrame, 256 px PNG) against `dcmj2pnm +Wi 1 +Sxv 256` per instance (`dcml2pnm` for
 * JPEG-LS). dcmtk has no JPEG 2000 or HTJ2K decoder, so those rows carry Teleread's figure and no ratio.
 *
 * (b) Ingest of a 200-instance CT series over HTTP: `bin/teleread api` and `bin/teleread worker` as their own
 * processes on a fresh database, storage folder and queue prefix, with STUDY_STABLE_SECONDS=0 (the study is
 * processed as soon as its files are ingested rather than after a quiet minute). The clock runs from the
 * first request until every file is processed and the case is routed (to the seeded radiology reader), read
 * from the database every 20 ms. The files go as multipart requests of BENCH_INGEST_BATCH files (default 25),
 * 4 requests in flight. Against it, Orthanc 1.10's `POST /instances` of the same files with 4 in flight
 * (ANCHORS §3b), on a fresh store. Each pass uses new study, series and SOP UIDs on both sides. Both sides get
 * the same keep-alive node:http client (LoadClient), the lightest one at hand, since it shares the 2 cores. A
 * third row gives the CPU each side's processes spent per pass, read from /proc. A fourth, the floor, sends the same
 * multipart requests to bench/write-only-server.mjs, which only writes each body to a file: no Node server that
 * stores the uploads can go faster, so its ratio to Orthanc bounds Teleread's.
 *
 * A further row, not one of the issue's goals, renders single frames of a 629 MB native cine read by byte range,
 * against dcmj2pnm +F (cineRow).
 *
 * Environment: BENCH_INGEST_COUNT (default 200), BENCH_INGEST_BATCH (default 25), BENCH_IMAGING_ONLY
 * (`thumbnails`, `cine` or `ingest`: one part alone), BENCH_PG_URL, REDIS_URL.
 */
import { readFile, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { readInstanceForFrame } from '../src/formats/dicom/read-frame-by-range.js';
import { closeDecodePool } from '../src/imaging/decode-pool.js';
import { renderDicomFrame } from '../src/imaging/render-dicom.js';
import { fileByteSource } from '../src/storage/file-byte-source.js';
import { pass, THUMBNAIL_SIZE, timeDcmtk, timeOurs } from './dicom-timing.js';
import {
  alternate,
  type BenchRow,
  Deadline,
  freePort,
  LoadClient,
  makeTempDir,
  median,
  msSince,
  onCleanup,
  readCommandsCpuSeconds,
  readMachineBusySeconds,
  readProcCpuSeconds,
  readProcMemory,
  repeat,
  repoRoot,
  row,
  runBench,
  type Service,
  spawnService,
  startAside,
  stats,
  waitFor,
  zip,
} from './lib.js';
import { prepareTeleread, startApi, startOrthanc, startWorker, type TelereadStack } from './services.js';
import { ctPixels, newUid, SYNTAXES, writeCine, writeCtSet, writeInstance } from './synthetic-dicom.js';

/** Even, so the alternating order (ABBA) puts each side first equally often. */
const PASSES = 4;
const SET_SIZE = 10;
const INGEST_COUNT = Math.max(4, Math.min(1000, Number(process.env.BENCH_INGEST_COUNT ?? 200)));
const INGEST_BATCH = Math.max(1, Math.min(INGEST_COUNT, Number(process.env.BENCH_INGEST_BATCH ?? 25)));
const INGEST_PASSES = 4;
const WARM_UP_COUNT = 20;
const ORTHANC_PASSES = 2;
const IN_FLIGHT = 4;
const POLL_MS = 20;
/** Issue 3's goals: thumbnails ≥ 3× faster than dcmj2pnm, ingest ≥ 2× Orthanc's upload. */
const THUMBNAIL_SPEEDUP_GOAL = 3;
const INGEST_GOAL = 2;

// ---------------------------------------------------------------------------------------------------------
// (a) thumbnails per transfer syntax

/**
 * Orthanc's own 256 px rendering of the set, over HTTP from a warm server (`GET /instances/{id}/rendered
 * ?width=256`, ANCHORS §3b's last column): median ms per instance over ORTHANC_PASSES after one uncounted
 * request each, or the HTTP status when Orthanc cannot decode the syntax (no JPEG 2000 without a plugin).
 */
async function orthancRendered(url: string, files: readonly string[]): Promise<number | string> {
  const ids: string[] = [];
  for (const f of files) {
    const res = await fetch(`${url}/instances`, { method: 'POST', body: await readFile(f) });
    if (!res.ok) return `upload HTTP ${res.status}`;
    ids.push(((await res.json()) as { ID: string }).ID);
  }
  const times: number[] = [];
  for (let p = 0; p <= ORTHANC_PASSES; p++) {
    for (const id of ids) {
      const started = process.hrtime.bigint();
      const res = await fetch(`${url}/instances/${id}/rendered?width=${THUMBNAIL_SIZE}`, {
        headers: { accept: 'image/png' },
        signal: AbortSignal.timeout(30_000),
      });
      const body = await res.arrayBuffer();
      if (!res.ok) return `HTTP ${res.status}`;
      if (body.byteLength < 100) throw new Error(`Orthanc rendered ${body.byteLength} bytes for ${id}`);
      if (p > 0) times.push(msSince(started));
    }
  }
  return median(times);
}

async function thumbnailRows(dir: string, deadline: Deadline): Promise<BenchRow[]> {
  const rows: BenchRow[] = [];
  const orthanc = await startOrthanc();
  startAside(); // before any warm-up: starting it forks this process (lib.ts, runAside)
  for (const syntax of SYNTAXES) {
    const setDir = await makeTempDir(`imaging-${syntax.key}`);
    const files = await writeCtSet(setDir, syntax, SET_SIZE);
    const ours = (f: string, i: number) => timeOurs(f, path.join(dir, `ours-${syntax.key}-${i}.png`));
    const tool = syntax.dcmtkRenderer;
    const label = `CT 512² ${syntax.label} → 256 px PNG, warm, one at a time`;
    // One uncounted warm-up pass each (codec load, JIT, page cache), then alternating measured passes.
    await pass(files, ours);
    let measured: { teleread: number[][]; reference: number[][] };
    if (tool) {
      const dcmtk = (f: string, i: number) =>
        timeDcmtk(f, path.join(dir, `dcmtk-${syntax.key}-${i}.png`), ['+Wi', '1'], tool);
      await pass(files, dcmtk);
      measured = await alternate(
        PASSES,
        deadline,
        () => pass(files, ours),
        () => pass(files, dcmtk),
      );
    } else {
      measured = { teleread: await repeat(PASSES, deadline, () => pass(files, ours)), reference: [] };
    }
    const orthancMs = await orthancRendered(orthanc.url, files);
    const ourMedian = median(measured.teleread.flat());
    const orthancNote =
      typeof orthancMs === 'number'
        ? `Orthanc /rendered?width=256 (warm server, over HTTP) ${orthancMs.toFixed(1)} ms, T/Orthanc ${(ourMedian / orthancMs).toFixed(2)}×`
        : `Orthanc /rendered?width=256: ${orthancMs} (no decoder)`;
    const common = `${files.length} instances × ${measured.teleread.length} passes; made with ${syntax.madeWith}; ${orthancNote}`;
    if (!tool) {
      rows.push(
        row({
          bench: 'imaging',
          measure: label,
          unit: 'ms/inst',
          teleread: stats(measured.teleread.flat()),
          better: 'lower',
          note: `dcmtk has no decoder for this syntax, so no ratio; ${common}`,
        }),
      );
      continue;
    }
    const r = row({
      bench: 'imaging',
      measure: label,
      unit: 'ms/inst',
      teleread: stats(measured.teleread.flat()),
      reference: { name: `${tool}, process per instance`, stats: stats(measured.reference.flat()) },
      pairs: zip(measured.teleread.map(median), measured.reference.map(median)),
      better: 'lower',
    });
    const speedup = 1 / (r.ratio?.median ?? Number.NaN);
    rows.push({
      ...r,
      goal: {
        text: `≥ ${THUMBNAIL_SPEEDUP_GOAL}× faster than ${tool}`,
        met: speedup >= THUMBNAIL_SPEEDUP_GOAL,
      },
      note: `${speedup.toFixed(1)}× faster than ${tool}; ${common}`,
    });
  }
  await orthanc.service.stop();
  return rows;
}

/** Frames of the large cine rendered per pass: first, quarters, last. */
const CINE_FRAMES = 1200;

/**
 * One frame of a 629 MB native cine (1,200 CT 512² frames) → 256 px PNG, warm: Teleread reads the header and
 * that frame by byte range (read-frame-by-range.ts) against dcmj2pnm +F n, which loads element values lazily.
 * Not one of issue 3's goals: it shows what a viewer scrolling a large multi-frame object costs.
 */
async function cineRow(dir: string, deadline: Deadline): Promise<BenchRow> {
  const file = path.join(await makeTempDir('imaging-cine'), 'cine.dcm');
  await writeCine(file, CINE_FRAMES);
  const picks = [1, 300, 600, 900, 1200];
  let bytesRead = 0;
  const ours = async (n: number) => {
    const started = process.hrtime.bigint();
    const source = await fileByteSource(file);
    const counted = {
      size: source.size,
      read: async (offset: number, length: number) => {
        const bytes = await source.read(offset, length);
        bytesRead += bytes.length;
        return bytes;
      },
    };
    try {
      const { instance, frame } = await readInstanceForFrame(counted, n - 1);
      const image = await renderDicomFrame(instance, { frame, size: THUMBNAIL_SIZE, format: 'png' });
      await writeFile(path.join(dir, `ours-cine-${n}.png`), image.data);
    } finally {
      await source.close();
    }
    return msSince(started);
  };
  const dcmtk = (n: number) =>
    timeDcmtk(file, path.join(dir, `dcmtk-cine-${n}.png`), ['+F', String(n), '+Wi', '1']);
  const each = (time: (n: number) => Promise<number>) => async () => {
    const times: number[] = [];
    for (const n of picks) times.push(await time(n));
    return times;
  };
  await each(ours)();
  await each(dcmtk)();
  bytesRead = 0;
  const measured = await alternate(PASSES, deadline, each(ours), each(dcmtk));
  const perFrameKb = bytesRead / 1024 / (measured.teleread.length * picks.length);
  const r = row({
    bench: 'imaging',
    measure: `one frame of a ${CINE_FRAMES}-frame native cine (CT 512², 629 MB) → 256 px PNG, warm`,
    unit: 'ms/frame',
    teleread: stats(measured.teleread.flat()),
    reference: { name: 'dcmj2pnm +F n, process per frame', stats: stats(measured.reference.flat()) },
    pairs: zip(measured.teleread.map(median), measured.reference.map(median)),
    better: 'lower',
  });
  return {
    ...r,
    note: `frames ${picks.join(', ')} × ${measured.teleread.length} passes; Teleread read ${perFrameKb.toFixed(0)} KiB of the file per frame (header and one 512 KiB frame, by byte range)`,
  };
}

// ---------------------------------------------------------------------------------------------------------
// (b) ingest over HTTP

interface Series {
  studyUid: string;
  files: Array<{ name: string; bytes: Uint8Array }>;
}

/** The series with fresh UIDs: the same pixels every pass, new identities, so nothing is a duplicate. */
function makeSeries(pixels: readonly Uint16Array[], count: number): Series {
  const studyUid = newUid();
  const seriesUid = newUid();
  const files = Array.from({ length: count }, (_, i) => ({
    name: `ct-${String(i + 1).padStart(4, '0')}.dcm`,
    bytes: writeInstance({
      kind: 'CT',
      index: i,
      pixels: pixels[i % pixels.length]!,
      uids: { study: studyUid, series: seriesUid, sop: newUid() },
    }),
  }));
  return { studyUid, files };
}

/** Runs `task(i)` for i in [0, total) with `inFlight` at a time. */
async function lanes(total: number, inFlight: number, task: (i: number) => Promise<void>): Promise<void> {
  let next = 0;
  const lane = async () => {
    while (next < total) await task(next++);
  };
  await Promise.all(Array.from({ length: inFlight }, lane));
}

interface IngestPass {
  ms: number;
  /** When the last upload request was answered (stored and committed, not yet processed). */
  uploadedMs: number;
}

/** A series as the multipart request bodies Teleread is sent, INGEST_BATCH files each. */
interface TelereadBodies {
  batches: Array<Series['files']>;
  bodies: Array<{ bytes: Uint8Array; contentType: string }>;
}

/** The bodies are encoded before the clock and the CPU meters start, as Orthanc's files are read before its clock:
 * both sides send bytes that are ready, and the generator's own multipart encoding is not counted as its CPU. */
async function encodeForTeleread(series: Series): Promise<TelereadBodies> {
  const batches: Array<Series['files']> = [];
  for (let i = 0; i < series.files.length; i += INGEST_BATCH) {
    batches.push(series.files.slice(i, i + INGEST_BATCH));
  }
  const bodies = await Promise.all(
    batches.map(async (batch) => {
      const form = new FormData();
      for (const f of batch) form.append('file', new Blob([f.bytes], { type: 'application/dicom' }), f.name);
      const encoded = new Response(form);
      return {
        bytes: new Uint8Array(await encoded.arrayBuffer()),
        contentType: encoded.headers.get('content-type')!,
      };
    }),
  );
  return { batches, bodies };
}

async function ingestTeleread(
  client: LoadClient,
  stack: TelereadStack,
  db: pg.Client,
  series: Series,
  { batches, bodies }: TelereadBodies,
  deadline: Deadline,
): Promise<IngestPass> {
  const base = `http://127.0.0.1:${stack.apiPort}`;
  const uploadIds: string[] = [];
  const started = process.hrtime.bigint();
  await lanes(batches.length, IN_FLIGHT, async (b) => {
    const res = await client.post(
      `${base}/v1/uploads`,
      { authorization: `Bearer ${stack.clinicKey}`, 'content-type': bodies[b]!.contentType },
      bodies[b]!.bytes,
      Math.max(1000, deadline.leftMs),
    );
    const text = res.text;
    if (res.status !== 202) throw new Error(`teleread upload: HTTP ${res.status} ${text.slice(0, 500)}`);
    const json = JSON.parse(text) as { uploadId: string; files: unknown[] };
    if (json.files.length !== batches[b]!.length) {
      throw new Error(`teleread upload: ${json.files.length} files stored of ${batches[b]!.length}`);
    }
    uploadIds.push(json.uploadId);
  });
  const uploadedMs = msSince(started);
  for (let round = 0; round < 1_000_000 && !deadline.expired; round++) {
    const files = await db.query<{ processed: number; failed: number; error: string | null }>(
      `SELECT count(*) FILTER (WHERE status = 'processed')::int AS processed,
              count(*) FILTER (WHERE status = 'failed')::int AS failed,
              min(error_code || ': ' || error_message) AS error
         FROM files WHERE upload_id = ANY($1)`,
      [uploadIds],
    );
    const f = files.rows[0]!;
    if (f.failed > 0) throw new Error(`teleread ingest: ${f.failed} files failed, e.g. ${f.error}`);
    if (f.processed === series.files.length) {
      const kase = await db.query<{ status: string; routed: boolean; note: string | null }>(
        `SELECT status, routed_at IS NOT NULL AS routed, route_note AS note
           FROM cases WHERE study_instance_uid = $1 AND site_id = $2`,
        [series.studyUid, stack.siteId],
      );
      if (kase.rows.length !== 1) throw new Error(`teleread ingest: ${kase.rows.length} cases for one study`);
      const c = kase.rows[0]!;
      if (c.routed) {
        const ms = msSince(started);
        const thumbnails = await db.query<{ n: number }>(
          `SELECT count(*)::int AS n FROM artifacts a JOIN cases c ON c.id = a.case_id
            WHERE c.study_instance_uid = $1 AND a.name = 'thumbnail'`,
          [series.studyUid],
        );
        if (thumbnails.rows[0]?.n !== 1) throw new Error('teleread ingest: the routed case has no thumbnail');
        return { ms, uploadedMs };
      }
      if (c.status === 'ready' && c.note)
        throw new Error(`teleread ingest: the case was not routed: ${c.note}`);
    }
    await new Promise((r) => setTimeout(r, POLL_MS));
  }
  throw new Error(`teleread ingest: not routed within the deadline (${deadline.ms} ms)`);
}

/** The same multipart requests to the write-only server (bench/write-only-server.mjs): the floor. */
async function ingestFloor(
  client: LoadClient,
  url: string,
  { batches, bodies }: TelereadBodies,
  deadline: Deadline,
): Promise<IngestPass> {
  const started = process.hrtime.bigint();
  await lanes(batches.length, IN_FLIGHT, async (b) => {
    const res = await client.post(
      url,
      { 'content-type': bodies[b]!.contentType },
      bodies[b]!.bytes,
      Math.max(1000, deadline.leftMs),
    );
    if (res.status !== 202)
      throw new Error(`write-only server: HTTP ${res.status} ${res.text.slice(0, 300)}`);
  });
  const ms = msSince(started);
  return { ms, uploadedMs: ms };
}

/** Starts bench/write-only-server.mjs on a free loopback port, writing into a fresh temporary folder. */
async function startWriteOnlyServer(): Promise<{ url: string; service: Service }> {
  const dir = await makeTempDir('ingest-floor');
  const port = await freePort();
  const script = path.join(repoRoot, 'bench/write-only-server.mjs');
  const service = spawnService(
    process.execPath,
    [script, dir, String(port)],
    process.env,
    'write-only server',
  );
  await waitFor('the write-only server to listen', new Deadline(30_000), async () => {
    service.assertRunning();
    return service.output().includes('listening');
  });
  return { url: `http://127.0.0.1:${port}/`, service };
}

async function ingestOrthanc(
  client: LoadClient,
  url: string,
  series: Series,
  deadline: Deadline,
): Promise<IngestPass> {
  const started = process.hrtime.bigint();
  await lanes(series.files.length, IN_FLIGHT, async (i) => {
    const res = await client.post(
      `${url}/instances`,
      { 'content-type': 'application/dicom' },
      series.files[i]!.bytes,
      Math.max(1000, deadline.leftMs),
    );
    const text = res.text;
    const status = res.status === 200 ? (JSON.parse(text) as { Status?: string }).Status : undefined;
    if (status !== 'Success')
      throw new Error(`Orthanc POST /instances: HTTP ${res.status} ${text.slice(0, 300)}`);
  });
  const ms = msSince(started);
  return { ms, uploadedMs: ms };
}

/** CPU seconds spent during one pass: by each server process, by PostgreSQL and Redis, by this load client, and
 * by the whole machine (the kernel's share of disk and loopback work included). */
interface CpuUse {
  servers: Record<string, number>;
  stores: number;
  client: number;
  machine: number;
}

/** Starts counting; the returned function gives the CPU spent since. */
function cpuMeter(servers: Record<string, number>): () => CpuUse {
  const read = () => ({
    servers: Object.fromEntries(
      Object.entries(servers).map(([name, pid]) => [name, readProcCpuSeconds(pid)]),
    ),
    stores: readCommandsCpuSeconds(['postgres', 'redis-server']),
    client: process.cpuUsage(),
    machine: readMachineBusySeconds(),
  });
  const before = read();
  return () => {
    const after = read();
    const client = process.cpuUsage(before.client);
    return {
      servers: Object.fromEntries(
        Object.entries(after.servers).map(([name, s]) => [name, s - before.servers[name]!]),
      ),
      stores: after.stores - before.stores,
      client: (client.user + client.system) / 1e6,
      machine: after.machine - before.machine,
    };
  };
}

/** A side's own CPU in a pass: its server processes, and PostgreSQL and Redis (Orthanc uses neither). */
function serverCpu(c: CpuUse): number {
  return Object.values(c.servers).reduce((a, b) => a + b, 0) + c.stores;
}

function medianOf(uses: readonly CpuUse[], pick: (c: CpuUse) => number): string {
  return median(uses.map(pick)).toFixed(2);
}

function formatCpu(c: CpuUse): string {
  const servers = Object.entries(c.servers).map(([name, s]) => `${name} ${s.toFixed(2)}`);
  return `${[...servers, `postgres+redis ${c.stores.toFixed(2)}`, `client ${c.client.toFixed(2)}`].join(', ')}; machine ${c.machine.toFixed(2)}`;
}

async function ingestRows(deadline: Deadline): Promise<BenchRow[]> {
  const stack = await prepareTeleread('imaging', {
    reader: true,
    env: { STUDY_STABLE_SECONDS: '0' },
  });
  const api = await startApi(stack);
  const worker = startWorker(stack);
  const orthanc = await startOrthanc();
  const floor = await startWriteOnlyServer();
  const db = new pg.Client({ connectionString: stack.databaseUrl });
  await db.connect();
  onCleanup('close the polling connection', () => db.end());
  const client = new LoadClient(IN_FLIGHT);
  onCleanup('close the load client', async () => client.close());

  const distinct = 20;
  const pixels = Array.from({ length: distinct }, (_, i) => ctPixels(512, 1000 + i));
  // Uncounted warm-up: the worker's first case loads its modules and codecs and proves it is consuming jobs.
  const warmUp = makeSeries(pixels, WARM_UP_COUNT);
  await ingestTeleread(client, stack, db, warmUp, await encodeForTeleread(warmUp), new Deadline(120_000));
  await ingestOrthanc(client, orthanc.url, makeSeries(pixels, WARM_UP_COUNT), new Deadline(60_000));

  const teleread: IngestPass[] = [];
  const reference: IngestPass[] = [];
  const floorPasses: IngestPass[] = [];
  const cpuUse: Record<'teleread' | 'orthanc' | 'floor', CpuUse[]> = { teleread: [], orthanc: [], floor: [] };
  for (let i = 0; i < INGEST_PASSES; i++) {
    if (i > 0 && deadline.expired) break;
    // Both sides get the same bytes in a pass; ABBA order so drifting load weighs on both alike.
    const series = makeSeries(pixels, INGEST_COUNT);
    const runT = async () => {
      const bodies = await encodeForTeleread(series);
      const cpu = cpuMeter({ api: api.pid, worker: worker.pid });
      teleread.push(await ingestTeleread(client, stack, db, series, bodies, new Deadline(180_000)));
      cpuUse.teleread.push(cpu());
    };
    const runO = async () => {
      const cpu = cpuMeter({ orthanc: orthanc.service.pid });
      reference.push(await ingestOrthanc(client, orthanc.url, series, new Deadline(120_000)));
      cpuUse.orthanc.push(cpu());
    };
    const runF = async () => {
      const bodies = await encodeForTeleread(series);
      const cpu = cpuMeter({ floor: floor.service.pid });
      floorPasses.push(await ingestFloor(client, floor.url, bodies, new Deadline(60_000)));
      cpuUse.floor.push(cpu());
    };
    for (const run of i % 2 === 0 ? [runT, runO, runF] : [runF, runO, runT]) await run();
    console.error(
      `imaging ingest pass ${i + 1}: teleread ${(teleread.at(-1)!.ms / 1000).toFixed(2)} s ` +
        `(uploads answered at ${(teleread.at(-1)!.uploadedMs / 1000).toFixed(2)} s), ` +
        `orthanc ${(reference.at(-1)!.ms / 1000).toFixed(2)} s, write-only ${(floorPasses.at(-1)!.ms / 1000).toFixed(2)} s; CPU s: ` +
        `teleread (${formatCpu(cpuUse.teleread.at(-1)!)}), orthanc (${formatCpu(cpuUse.orthanc.at(-1)!)})`,
    );
  }
  const mem = {
    api: readProcMemory(api.pid)?.hwmMb,
    worker: readProcMemory(worker.pid)?.hwmMb,
    orthanc: readProcMemory(orthanc.service.pid)?.hwmMb,
  };
  worker.assertRunning();
  await worker.stop();
  await api.stop();
  await orthanc.service.stop();
  await floor.service.stop();

  const rate = (p: IngestPass) => INGEST_COUNT / (p.ms / 1000);
  const uploadRate = (p: IngestPass) => INGEST_COUNT / (p.uploadedMs / 1000);
  const megabytes = (makeSeries(pixels, 1).files[0]!.bytes.length * INGEST_COUNT) / 1e6;
  const requests = Math.ceil(INGEST_COUNT / INGEST_BATCH);
  const ingest = row({
    bench: 'imaging',
    measure: `ingest of a ${INGEST_COUNT}-instance CT 512² series over HTTP: stored, parsed, thumbnailed, routed`,
    unit: 'inst/s',
    teleread: stats(teleread.map(rate)),
    reference: {
      name: 'Orthanc 1.10 POST /instances, 4 in flight (stored + indexed)',
      stats: stats(reference.map(rate)),
    },
    pairs: zip(teleread.map(rate), reference.map(rate)),
    better: 'higher',
    note:
      `${megabytes.toFixed(0)} MB per pass, ${teleread.length} passes ABBA; Teleread: ${requests} multipart requests of ${INGEST_BATCH} files, ` +
      `4 in flight, clock stops when every file is processed and the case routed (STUDY_STABLE_SECONDS=0); ` +
      `uploads answered after ${median(teleread.map((p) => p.uploadedMs / 1000)).toFixed(2)} s of ${median(teleread.map((p) => p.ms / 1000)).toFixed(2)} s; ` +
      `peak RSS api ${mem.api?.toFixed(0) ?? '?'} MB, worker ${mem.worker?.toFixed(0) ?? '?'} MB, Orthanc ${mem.orthanc?.toFixed(0) ?? '?'} MB`,
  });
  /** A row of instances per second against Orthanc's upload rate in the same passes. */
  const againstOrthanc = (measure: string, rates: number[], note: string) =>
    row({
      bench: 'imaging',
      measure,
      unit: 'inst/s',
      teleread: stats(rates),
      reference: { name: 'Orthanc 1.10 POST /instances, 4 in flight', stats: stats(reference.map(rate)) },
      pairs: zip(rates, reference.map(rate)),
      better: 'higher',
      note,
    });
  return [
    {
      ...ingest,
      goal: { text: `≥ ${INGEST_GOAL}× Orthanc`, met: (ingest.ratio?.median ?? 0) >= INGEST_GOAL },
    },
    againstOrthanc(
      'the same uploads until the last 202 (stored, hashed, committed, ingest enqueued; not yet parsed)',
      teleread.map(uploadRate),
      'the part of the row above spent in the API; the worker already runs meanwhile',
    ),
    againstOrthanc(
      'floor: the same multipart requests to a server that only writes each body to a file (node:http; no parsing, hashing, fsync, database or queue)',
      floorPasses.map(rate),
      `what any Node server that stores the uploads spends at least (bench/write-only-server.mjs); its ratio bounds Teleread's; ` +
        `CPU per pass ${medianOf(cpuUse.floor, (c) => c.servers.floor!)} s`,
    ),
    row({
      bench: 'imaging',
      measure: 'CPU per pass of that ingest: every server process it needs',
      unit: 'CPU s',
      teleread: stats(cpuUse.teleread.map(serverCpu)),
      reference: { name: 'Orthanc 1.10, its one process', stats: stats(cpuUse.orthanc.map(serverCpu)) },
      pairs: zip(cpuUse.teleread.map(serverCpu), cpuUse.orthanc.map(serverCpu)),
      better: 'lower',
      note:
        `Teleread: api ${medianOf(cpuUse.teleread, (c) => c.servers.api!)}, worker ${medianOf(cpuUse.teleread, (c) => c.servers.worker!)}, ` +
        `PostgreSQL + Redis ${medianOf(cpuUse.teleread, (c) => c.stores)}; whole machine (load client and kernel included) ` +
        `${medianOf(cpuUse.teleread, (c) => c.machine)} s against ${medianOf(cpuUse.orthanc, (c) => c.machine)} s for Orthanc's passes, ` +
        `on ${os.cpus().length} cores`,
    }),
  ];
}

async function main(): Promise<BenchRow[]> {
  const deadline = new Deadline(330_000);
  const dir = await makeTempDir('imaging');
  onCleanup('close the decode thread pool', closeDecodePool);
  const only = process.env.BENCH_IMAGING_ONLY;
  const rows: BenchRow[] = [];
  const part = (name: 'thumbnails' | 'cine' | 'ingest') => only === undefined || only === name;
  if (part('thumbnails'))
    rows.push(...(await thumbnailRows(dir, new Deadline(Math.min(deadline.leftMs, 180_000)))));
  if (part('cine')) rows.push(await cineRow(dir, new Deadline(Math.min(deadline.leftMs, 60_000))));
  if (part('ingest')) rows.push(...(await ingestRows(new Deadline(Math.min(deadline.leftMs, 150_000)))));
  return rows;
}

runBench('imaging', main);
