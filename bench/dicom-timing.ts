/**
 * Timing one DICOM thumbnail both ways: Teleread warm in this process (readFile → parseDicom →
 * renderDicomFrame 256 px PNG → writeFile), and dcmtk as one process per instance (`dcmj2pnm +Wi 1 +Sxv 256`,
 * or `dcml2pnm` for JPEG-LS), whose wall time includes exec and the dictionary load, as in ANCHORS §3a. dcmtk is
 * started from a helper process, since forking from this one would slow the renders timed here.
 */
import { readFile, writeFile } from 'node:fs/promises';
import { parseDicom } from '../src/formats/dicom/parse-dicom.js';
import { renderDicomFrame } from '../src/imaging/render-dicom.js';
import { msSince, runAside } from './lib.js';

export const THUMBNAIL_SIZE = 256;

export async function renderOurs(file: string, out: string): Promise<void> {
  const image = await renderDicomFrame(parseDicom(new Uint8Array(await readFile(file))), {
    size: THUMBNAIL_SIZE,
    format: 'png',
  });
  // Never enlarged: a frame smaller than the thumbnail keeps its size.
  const longest = Math.max(image.width, image.height);
  if (longest < 1 || longest > THUMBNAIL_SIZE) {
    throw new Error(
      `${file}: thumbnail is ${image.width}×${image.height}, expected at most ${THUMBNAIL_SIZE} px`,
    );
  }
  await writeFile(out, image.data);
}

export async function timeOurs(file: string, out: string): Promise<number> {
  const started = process.hrtime.bigint();
  await renderOurs(file, out);
  return msSince(started);
}

export async function timeDcmtk(
  file: string,
  out: string,
  windowArgs: string[] = ['+Wi', '1'],
  tool: 'dcmj2pnm' | 'dcml2pnm' = 'dcmj2pnm',
): Promise<number> {
  // From a helper process: forking from this one would slow the Teleread renders timed in it (spawn-helper.ts).
  const result = await runAside(tool, [...windowArgs, '+Sxv', String(THUMBNAIL_SIZE), '+on', file, out], {
    timeoutMs: 30_000,
  });
  if (result.code !== 0)
    throw new Error(`${tool} ${file}: exit ${result.code}: ${result.stderr.slice(0, 300)}`);
  return result.wallMs;
}

/** One pass over the set, sequentially: the time of each instance. */
export async function pass(
  files: readonly string[],
  time: (file: string, i: number) => Promise<number>,
): Promise<number[]> {
  const times: number[] = [];
  for (const [i, f] of files.entries()) times.push(await time(f, i));
  return times;
}

/** Instances per second with `inFlight` renders running at once, over `total` renders. */
export async function throughput(
  total: number,
  inFlight: number,
  render: (i: number) => Promise<void>,
): Promise<number> {
  let next = 0;
  const started = process.hrtime.bigint();
  const lane = async () => {
    while (next < total) await render(next++);
  };
  await Promise.all(Array.from({ length: inFlight }, lane));
  return total / (msSince(started) / 1000);
}
