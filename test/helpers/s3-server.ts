import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, rm } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';

export interface S3Server {
  /** `http://127.0.0.1:<port>`; clients must use path-style addressing. */
  endpoint: string;
  bucket: string;
  /** s3rver's built-in account. */
  accessKeyId: string;
  secretAccessKey: string;
  close(): Promise<void>;
}

const STARTUP_TIMEOUT_MS = 15_000;

// Runs in the child. s3rver encrypts ListObjectsV2 continuation tokens with DES, which OpenSSL 3 only offers
// through its legacy provider: in-process, every truncated listing would fail with InternalError. The child also
// keeps s3rver's own crashes (it throws uncaught on some filesystem errors) out of the test worker, and exits
// when its stdin closes, so it cannot outlive a test worker that dies.
const CHILD_SCRIPT = `
const [s3rverPath, directory, bucket] = process.argv.slice(1);
const S3rver = require(s3rverPath);
process.stdin.on('end', () => process.exit(0)).resume();
new S3rver({ address: '127.0.0.1', port: 0, directory, silent: true, configureBuckets: [{ name: bucket }] })
  .run()
  .then((address) => process.stdout.write(JSON.stringify({ port: address.port }) + '\\n'))
  .catch((err) => { console.error(err); process.exit(1); });
`;

async function readPort(child: ChildProcess): Promise<number> {
  const stderr: string[] = [];
  child.stderr?.setEncoding('utf8').on('data', (text: string) => stderr.push(text));
  const lines = createInterface({ input: child.stdout! });
  let timer: NodeJS.Timeout | undefined;
  try {
    const firstLine = new Promise<string>((resolve, reject) => {
      lines.once('line', resolve);
      child.once('exit', (code) => reject(new Error(`s3rver exited with ${code}: ${stderr.join('')}`)));
      timer = setTimeout(
        () => reject(new Error(`s3rver did not start: ${stderr.join('')}`)),
        STARTUP_TIMEOUT_MS,
      );
    });
    const { port } = JSON.parse(await firstLine) as { port: number };
    return port;
  } finally {
    clearTimeout(timer);
    lines.close();
  }
}

/** Starts s3rver in a child process on 127.0.0.1, on a free port, storing into a fresh temp dir, with one bucket. */
export async function startS3Server(bucket = 'teleread-test'): Promise<S3Server> {
  const s3rverPath = createRequire(import.meta.url).resolve('s3rver');
  const directory = await mkdtemp(join(tmpdir(), 'teleread-s3rver-'));
  const child = spawn(
    process.execPath,
    ['--openssl-legacy-provider', '-e', CHILD_SCRIPT, s3rverPath, directory, bucket],
    { stdio: ['pipe', 'pipe', 'pipe'] },
  );
  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) {
      const exited = once(child, 'exit');
      child.kill('SIGTERM');
      await exited;
    }
    await rm(directory, { recursive: true, force: true });
  };
  let port: number;
  try {
    port = await readPort(child);
  } catch (err) {
    await stop();
    throw err;
  }
  return {
    endpoint: `http://127.0.0.1:${port}`,
    bucket,
    accessKeyId: 'S3RVER',
    secretAccessKey: 'S3RVER',
    close: stop,
  };
}
