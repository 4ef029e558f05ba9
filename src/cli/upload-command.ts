import { collectBatches, uploadBatch } from '../client/upload-client.js';

/** `teleread upload`: the clinic side. One upload request per argument (a file, or a folder as one case). */
export async function uploadCommand(
  server: string,
  key: string,
  paths: string[],
  priority?: 'stat' | 'urgent' | 'routine',
  notes?: string,
): Promise<number> {
  const batches = await collectBatches(paths);
  const failures: string[] = [];
  for (const batch of batches) {
    const started = Date.now();
    let last = 0;
    try {
      const result = await uploadBatch(batch, {
        server,
        key,
        ...(priority ? { priority } : {}),
        ...(notes ? { notes } : {}),
        onProgress: (sent, total) => {
          const now = Date.now();
          if (now - last < 500 && sent < total) return;
          last = now;
          const rate = sent / Math.max(0.001, (now - started) / 1000);
          process.stderr.write(
            `\r${batch.label}: ${(sent / 1e6).toFixed(1)}/${(total / 1e6).toFixed(1)} MB ${(rate / 1e6).toFixed(1)} MB/s`,
          );
        },
      });
      process.stderr.write('\n');
      console.log(JSON.stringify(result));
    } catch (err) {
      process.stderr.write('\n');
      failures.push(`${batch.label}: ${err instanceof Error ? err.message : String(err)}`);
    }
  }
  if (failures.length > 0) {
    console.error(`failed:\n  ${failures.join('\n  ')}`);
    return 1;
  }
  return 0;
}
