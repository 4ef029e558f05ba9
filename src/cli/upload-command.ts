import {
  DEFAULT_UPLOADER_OPTIONS,
  type PlannedFile,
  runUploader,
  type UploadEvent,
  type UploaderOptions,
} from '../client/resumable-uploader.js';
import type { ScannedFile } from '../client/scan-files.js';
import { defaultStateDir } from '../client/upload-state.js';

export interface UploadCommandOptions {
  server: string;
  key: string;
  priority?: 'stat' | 'urgent' | 'routine' | undefined;
  notes?: string | undefined;
  parallel?: number | undefined;
  stateDir?: string | undefined;
  dryRun?: boolean | undefined;
  chunkMb?: number | undefined;
}

const mb = (n: number) => `${(n / 1e6).toFixed(1)} MB`;

function duration(seconds: number): string {
  if (!Number.isFinite(seconds)) return '?';
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
}

interface StudyProgress {
  label: string;
  files: Set<ScannedFile>;
  bytes: number;
  /** Bytes already on the server when this run started (resumed offsets). */
  base: number;
  startedAt: number;
  sent: number;
  done: number;
}

/**
 * Progress on stderr, once a second: one line per study being sent (bytes, rate over this run, ETA) and one per
 * file in flight; a line for every file done, retried or failed. A study is a DICOM StudyInstanceUID, or the
 * batch (folder or record) for other files.
 */
class ProgressReporter {
  private readonly studies = new Map<string, StudyProgress>();
  private readonly position = new Map<ScannedFile, number>();
  private readonly studyOf = new Map<ScannedFile, StudyProgress>();
  private readonly timer: NodeJS.Timeout;
  private changed = false;

  constructor(private readonly write: (line: string) => void) {
    this.timer = setInterval(() => this.tick(), 1000);
    this.timer.unref();
  }

  on(event: UploadEvent): void {
    switch (event.type) {
      case 'hashing':
        if (!event.done && event.file.bytes > 50e6)
          this.write(`hashing ${event.file.name} (${mb(event.file.bytes)})`);
        return;
      case 'plan':
        for (const batch of event.plan) {
          for (const p of batch.files) if (p.action === 'send' || p.action === 'resume') this.add(p);
        }
        return;
      case 'file-start': {
        const study = this.studyOf.get(event.file);
        if (study && !this.position.has(event.file)) study.base += event.offset;
        this.position.set(event.file, event.offset);
        if (event.offset > 0) this.write(`resuming ${event.file.name} at ${mb(event.offset)}`);
        return;
      }
      case 'file-progress': {
        const study = this.studyOf.get(event.file);
        const before = this.position.get(event.file) ?? 0;
        const now = event.offset + event.sentBytes;
        if (study) study.sent += Math.max(0, now - before);
        this.position.set(event.file, now);
        this.changed = true;
        return;
      }
      case 'file-retry':
        this.write(
          `retry ${event.file.name} in ${(event.delayMs / 1000).toFixed(1)} s (attempt ${event.attempt}): ${event.reason}`,
        );
        return;
      case 'file-done': {
        const study = this.studyOf.get(event.file);
        this.position.set(event.file, event.file.bytes);
        this.write(`sent ${event.file.name} (${mb(event.file.bytes)})`);
        this.changed = true;
        if (study) {
          study.done++;
          if (study.done === study.files.size) this.write(this.studyLine(study, 'sent'));
        }
        return;
      }
      case 'file-failed':
        this.write(`FAILED ${event.file.name}: ${event.reason}`);
        return;
      case 'batch-done':
        this.write(
          `upload ${event.result.uploadId} complete: ${event.result.files.length} file(s) from ${event.label}`,
        );
        return;
    }
  }

  private add(p: PlannedFile): void {
    const study =
      this.studies.get(p.study.key) ??
      ({
        label: p.study.label,
        files: new Set(),
        bytes: 0,
        base: 0,
        startedAt: Date.now(),
        sent: 0,
        done: 0,
      } as StudyProgress);
    study.files.add(p.file);
    study.bytes += p.file.bytes;
    this.studies.set(p.study.key, study);
    this.studyOf.set(p.file, study);
  }

  /** `study 1.2.3: 45.0/120.0 MB (3/12 files) 38.1 MB/s ETA 2s`, rate over this run's bytes. */
  private studyLine(study: StudyProgress, state?: string): string {
    let at = 0;
    for (const f of study.files) at += this.position.get(f) ?? 0;
    const seconds = (Date.now() - study.startedAt) / 1000;
    const rate = study.sent / Math.max(seconds, 0.001);
    const eta = rate > 0 ? (study.bytes - at) / rate : Number.POSITIVE_INFINITY;
    return (
      `${study.label}: ${mb(at)}/${mb(study.bytes)} (${study.done}/${study.files.size} files) ` +
      `${(rate / 1e6).toFixed(1)} MB/s ${state ?? `ETA ${duration(eta)}`}`
    );
  }

  private tick(): void {
    if (!this.changed) return;
    this.changed = false;
    for (const study of this.studies.values()) {
      if (study.done === study.files.size) continue;
      this.write(this.studyLine(study));
      if (study.files.size === 1) continue;
      for (const f of study.files) {
        const pos = this.position.get(f);
        if (pos !== undefined && pos < f.bytes) this.write(`  ${f.name}: ${mb(pos)}/${mb(f.bytes)}`);
      }
    }
  }

  stop(): void {
    clearInterval(this.timer);
  }
}

/**
 * `teleread upload`: the clinic side. Sends files and folders over resumable tus uploads (see
 * src/client/resumable-uploader.ts); a folder is one upload (one case, or a study per StudyInstanceUID).
 * Completed uploads are printed on stdout as JSON, one per line; progress and the summary go to stderr.
 * Exit status: 0 when everything is on the server, 1 when a file finally failed (listed in the summary).
 */
export async function uploadCommand(paths: string[], opts: UploadCommandOptions): Promise<number> {
  const started = Date.now();
  const reporter = opts.dryRun
    ? undefined
    : new ProgressReporter((line) => process.stderr.write(`${line}\n`));
  const options: UploaderOptions = {
    ...DEFAULT_UPLOADER_OPTIONS,
    server: opts.server,
    key: opts.key,
    priority: opts.priority,
    notes: opts.notes,
    parallel: opts.parallel ?? DEFAULT_UPLOADER_OPTIONS.parallel,
    stateDir: opts.stateDir ?? defaultStateDir(),
    dryRun: Boolean(opts.dryRun),
    chunkBytes: opts.chunkMb ? Math.round(opts.chunkMb * 1024 * 1024) : DEFAULT_UPLOADER_OPTIONS.chunkBytes,
    onEvent: (event) => {
      reporter?.on(event);
      if (event.type === 'batch-done') console.log(JSON.stringify(event.result));
    },
  };
  let report: Awaited<ReturnType<typeof runUploader>>;
  try {
    report = await runUploader(paths, options);
  } finally {
    reporter?.stop();
  }

  const files = report.plan.flatMap((b) => b.files);
  if (opts.dryRun) {
    if (report.checkError) console.log(`could not ask the server (${report.checkError}); listing every file`);
    for (const p of files) {
      const what =
        p.action === 'skip-known'
          ? 'skip (already sent)'
          : p.action === 'skip-sent'
            ? 'skip (sent, batch open)'
            : p.action === 'skip-index'
              ? 'skip (DICOMDIR index)'
              : p.action;
      console.log(
        `${what.padEnd(24)} ${p.file.path}  ${mb(p.file.bytes)}  ${p.file.format}${p.file.studyInstanceUid ? `  study ${p.file.studyInstanceUid}` : ''}`,
      );
    }
    const sending = files.filter((p) => p.action === 'send' || p.action === 'resume');
    const onServer = files.filter((p) => p.action === 'skip-known' || p.action === 'skip-sent');
    console.log(
      `would send ${sending.length} file(s), ${mb(sending.reduce((n, p) => n + p.file.bytes, 0))}; ` +
        `${onServer.length} already on the server`,
    );
    return 0;
  }

  const skipped = files.filter((p) => p.action === 'skip-known').length;
  const indexes = files.filter((p) => p.action === 'skip-index').length;
  const sent = report.uploads.reduce((n, u) => n + u.files.length, 0);
  process.stderr.write(
    `uploaded ${sent} file(s) in ${report.uploads.length} upload(s), ${mb(report.sentBytes)} sent in ` +
      `${duration((Date.now() - started) / 1000)}; ${skipped} skipped (already on the server)` +
      `${indexes ? `, ${indexes} DICOMDIR index(es) left out` : ''}\n`,
  );
  if (report.failed.length > 0) {
    process.stderr.write(`failed (${report.failed.length}); run the same command again to resume:\n`);
    for (const f of report.failed) process.stderr.write(`  ${f.path}: ${f.reason}\n`);
    return 1;
  }
  return 0;
}
