/**
 * Issue 4's ECG check: a synthetic 12-lead, 10 s, 500 Hz WFDB record (format 16, interleaved int16, 120 kB)
 * through parse (loadWfdbRecord) → normalizeEcg → detectQrs + triageFromBeats → renderEcgPng (the 12-lead
 * page with the triage header) at 1250 px wide, warm and in-process, each part timed. The same again at the
 * 800 px the pipeline stores. The goal is 20 ms in all.
 *
 * There is no reference CLI for this on the machine, so no ratio is claimed: ANCHORS §5 (52 ms per record on
 * the anchor machine, 46 ms of it rasterising) is printed as context only.
 */
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { STANDARD_LEADS } from '../src/formats/ecg/ecg.js';
import { triageFromBeats } from '../src/formats/ecg/measure.js';
import { normalizeEcg } from '../src/formats/ecg/normalize.js';
import { detectQrs } from '../src/formats/ecg/qrs.js';
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
const ITERATIONS = 60;
const FS = 500;
const SECONDS = 10;
const GAIN = 200; // adu per mV, so 1 adu = 5 µV
/** The anchor's page size (ANCHORS §5 rasterised 1250×1000). */
const WIDTH = 1250;
/** What the pipeline stores (src/pipeline/render-file.ts THUMBNAIL_WIDTH.ecg). */
const PIPELINE_WIDTH = 800;
/** Issue 4's goal for parse + normalize + QRS + render. */
const TOTAL_GOAL_MS = 20;

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

interface Parts {
  parseMs: number;
  normalizeMs: number;
  qrsMs: number;
  renderMs: number;
  totalMs: number;
  height: number;
  beats: number;
}

async function main(): Promise<BenchRow[]> {
  const deadline = new Deadline(60_000);
  const dir = await makeTempDir('ecg');
  const header = await writeRecord(dir);
  // The bytes are read once: the pipeline gets them from object storage, and the goal is about the CPU work.
  const headerBytes = new Uint8Array(await readFile(header));
  const signal = new Uint8Array(await readFile(path.join(dir, 'bench.dat')));
  const sibling = async (name: string) => (name === 'bench.dat' ? signal : null);

  const once = async (width: number, i: number): Promise<Parts> => {
    const t0 = process.hrtime.bigint();
    const ecg = await loadWfdbRecord(headerBytes, 'bench.hea', sibling);
    const parseMs = msSince(t0);
    const t1 = process.hrtime.bigint();
    const normalized = normalizeEcg(ecg);
    const normalizeMs = msSince(t1);
    const t2 = process.hrtime.bigint();
    const detection = detectQrs(normalized.ecg, { quality: normalized.quality.leads });
    const triage = triageFromBeats(normalized.ecg, detection.times, normalized.quality);
    const qrsMs = msSince(t2);
    const t3 = process.hrtime.bigint();
    const image = await renderEcgPng(ecg, { width, format: 'png', triage });
    const renderMs = msSince(t3);
    if (ecg.leads.length !== 12 || image.width !== width) {
      throw new Error(`expected 12 leads at ${width} px, got ${ecg.leads.length} leads at ${image.width} px`);
    }
    // 72 bpm for 10 s: 12 beats; a detector that finds far fewer or more is broken, not fast.
    if (Math.abs(detection.times.length - 12) > 1) {
      throw new Error(`expected 12 beats, detected ${detection.times.length}`);
    }
    if (i === 0) await writeFile(path.join(dir, `page-${width}.png`), image.data);
    return {
      parseMs,
      normalizeMs,
      qrsMs,
      renderMs,
      totalMs: parseMs + normalizeMs + qrsMs + renderMs,
      height: image.height,
      beats: detection.times.length,
    };
  };
  await repeat(WARM_UP, deadline, (i) => once(WIDTH, i));
  const runs = await repeat(ITERATIONS, deadline, (i) => once(WIDTH, i));
  await repeat(WARM_UP, deadline, (i) => once(PIPELINE_WIDTH, i));
  const pipelineRuns = await repeat(ITERATIONS, deadline, (i) => once(PIPELINE_WIDTH, i));
  const peak = readProcMemory(process.pid);
  const part = (pick: (p: Parts) => number) => stats(runs.map(pick));
  const context = 'no reference tool on this machine: no ratio; ANCHORS §5 for context';
  const total = part((p) => p.totalMs);
  return [
    row({
      bench: 'ecg',
      measure: '12-lead 10 s 500 Hz WFDB (format 16): parse (loadWfdbRecord, bytes in memory)',
      unit: 'ms/record',
      teleread: part((p) => p.parseMs),
      better: 'lower',
      note: `${context} (0.38 ms read + parse binary there)`,
    }),
    row({
      bench: 'ecg',
      measure: 'normalizeEcg (resample check, filters, lead quality)',
      unit: 'ms/record',
      teleread: part((p) => p.normalizeMs),
      better: 'lower',
      note: `${context} (0.55 ms filtering there)`,
    }),
    row({
      bench: 'ecg',
      measure: 'detectQrs + triageFromBeats',
      unit: 'ms/record',
      teleread: part((p) => p.qrsMs),
      better: 'lower',
      note: `${runs[0]?.beats ?? '?'} beats found of 12 synthesised`,
    }),
    row({
      bench: 'ecg',
      measure: `renderEcgPng with triage header, ${WIDTH}×${runs[0]?.height ?? '?'} PNG`,
      unit: 'ms/record',
      teleread: part((p) => p.renderMs),
      better: 'lower',
      note: `${context} (4 ms SVG + 46 ms librsvg rasterise there)`,
    }),
    {
      ...row({
        bench: 'ecg',
        measure: `total: parse + normalize + QRS + render (${WIDTH} px), warm in-process`,
        unit: 'ms/record',
        teleread: total,
        better: 'lower',
        note: `${context} (52 ms there); ${runs.length} iterations after ${WARM_UP} warm-up; process peak RSS ${peak?.hwmMb.toFixed(0) ?? '?'} MB`,
      }),
      goal: { text: `≤ ${TOTAL_GOAL_MS} ms`, met: total.median <= TOTAL_GOAL_MS },
    },
    row({
      bench: 'ecg',
      measure: `the same at the pipeline's thumbnail width (${PIPELINE_WIDTH} px)`,
      unit: 'ms/record',
      teleread: stats(pipelineRuns.map((p) => p.totalMs)),
      better: 'lower',
      note: `render part ${stats(pipelineRuns.map((p) => p.renderMs)).median.toFixed(1)} ms; ${pipelineRuns.length} iterations`,
    }),
  ];
}

runBench('ecg', main);
