/**
 * ECG pages: a synthetic 12-lead, 10 s, 500 Hz WFDB record (format 16, interleaved int16, 120 kB) → read and
 * parse (loadWfdbRecord, as the pipeline does) → renderEcgPng at 1250 px wide, warm and in-process.
 *
 * There is no reference CLI for this on the machine, so no ratio is claimed: ANCHORS §5 (52 ms per record on
 * the anchor machine, 46 ms of it rasterising) is printed as context only.
 */
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { STANDARD_LEADS } from '../src/formats/ecg/ecg.js';
import { loadWfdbRecord } from '../src/formats/inspect.js';
import { renderEcgPng } from '../src/imaging/render-ecg.js';
import {
  type BenchRow,
  Deadline,
  makeTempDir,
  msSince,
  readProcMemory,
  repeat,
  row,
  runBench,
  stats,
} from './lib.js';

const WARM_UP = 2;
const ITERATIONS = 30;
const FS = 500;
const SECONDS = 10;
const GAIN = 200; // adu per mV, so 1 adu = 5 µV
const WIDTH = 1250;

/** Each lead's share of the heart vector, roughly as on a normal 12-lead ECG (aVR negative, V1 mostly S). */
const LEAD_GAIN: Record<string, [number, number]> = {
  I: [0.6, 0.3],
  II: [1, 0.4],
  III: [0.5, 0.2],
  aVR: [-0.8, -0.3],
  aVL: [0.3, 0.15],
  aVF: [0.8, 0.3],
  V1: [-0.6, 0.2],
  V2: [0.9, 0.5],
  V3: [1.2, 0.5],
  V4: [1.4, 0.45],
  V5: [1.2, 0.4],
  V6: [0.9, 0.3],
};

/** P, QRS and T as Gaussians at 72 bpm plus a slow baseline wander; returns µV. */
function beatSignal(t: number, qrsGain: number, waveGain: number): number {
  const rr = 60 / 72;
  const phase = t % rr;
  const g = (centre: number, width: number, height: number) =>
    height * Math.exp(-((phase - centre) ** 2) / (2 * width * width));
  const p = g(0.16, 0.025, 120) * waveGain;
  const qrs = (g(0.28, 0.008, -150) + g(0.3, 0.01, 1200) + g(0.32, 0.009, -250)) * qrsGain;
  const tw = g(0.52, 0.045, 300) * waveGain;
  return p + qrs + tw + 40 * Math.sin(2 * Math.PI * 0.3 * t);
}

function checksum(values: Int16Array, lead: number, leads: number): number {
  let sum = 0;
  for (let i = lead; i < values.length; i += leads) sum = (sum + values[i]!) % 65536;
  return ((sum + 65536 + 32768) % 65536) - 32768;
}

async function writeRecord(dir: string): Promise<string> {
  const frames = FS * SECONDS;
  const leads = STANDARD_LEADS.length;
  const samples = new Int16Array(frames * leads);
  for (let f = 0; f < frames; f++) {
    STANDARD_LEADS.forEach((name, k) => {
      const [qrsGain, waveGain] = LEAD_GAIN[name] ?? [1, 0.3];
      samples[f * leads + k] = Math.round((beatSignal(f / FS, qrsGain, waveGain) * GAIN) / 1000);
    });
  }
  const lines = [`bench 12 ${FS} ${frames}`];
  STANDARD_LEADS.forEach((name, k) => {
    lines.push(`bench.dat 16 ${GAIN}/mV 16 0 ${samples[k]} ${checksum(samples, k, leads)} 0 ${name}`);
  });
  const header = path.join(dir, 'bench.hea');
  await writeFile(header, `${lines.join('\n')}\n`);
  await writeFile(path.join(dir, 'bench.dat'), new Uint8Array(samples.buffer));
  return header;
}

async function main(): Promise<BenchRow[]> {
  const deadline = new Deadline(60_000);
  const dir = await makeTempDir('ecg');
  const header = await writeRecord(dir);
  const sibling = async (name: string) => readFile(path.join(dir, name)).catch(() => null);

  const once = async (i: number) => {
    const t0 = process.hrtime.bigint();
    const ecg = await loadWfdbRecord(new Uint8Array(await readFile(header)), 'bench.hea', sibling);
    const parseMs = msSince(t0);
    const t1 = process.hrtime.bigint();
    const image = await renderEcgPng(ecg, { width: WIDTH, format: 'png' });
    const renderMs = msSince(t1);
    if (ecg.leads.length !== 12 || image.width !== WIDTH) {
      throw new Error(`expected 12 leads at ${WIDTH} px, got ${ecg.leads.length} leads at ${image.width} px`);
    }
    if (i === 0) await writeFile(path.join(dir, 'page.png'), image.data);
    return { parseMs, renderMs, totalMs: parseMs + renderMs, height: image.height };
  };
  await repeat(WARM_UP, deadline, once);
  const runs = await repeat(ITERATIONS, deadline, once);
  const peak = readProcMemory(process.pid);
  const context = 'no reference tool on this machine: no ratio; ANCHORS §5 context only';
  return [
    row({
      bench: 'ecg',
      measure: '12-lead 10 s 500 Hz WFDB (format 16): read + parse',
      unit: 'ms/record',
      teleread: stats(runs.map((r) => r.parseMs)),
      better: 'lower',
      note: `${context} (0.38 ms read + parse binary there)`,
    }),
    row({
      bench: 'ecg',
      measure: `renderEcgPng, ${WIDTH}×${runs[0]?.height ?? '?'} PNG`,
      unit: 'ms/record',
      teleread: stats(runs.map((r) => r.renderMs)),
      better: 'lower',
      note: `${context} (4 ms SVG + 46 ms librsvg rasterise there)`,
    }),
    row({
      bench: 'ecg',
      measure: 'total per record, warm in-process',
      unit: 'ms/record',
      teleread: stats(runs.map((r) => r.totalMs)),
      better: 'lower',
      note: `${context} (52 ms there); ${runs.length} iterations after ${WARM_UP} warm-up; process peak RSS ${peak?.hwmMb.toFixed(0) ?? '?'} MB`,
    }),
  ];
}

runBench('ecg', main);
