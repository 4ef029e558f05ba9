/**
 * Beat-by-beat comparison of detected QRS times against reference annotations, as ANSI/AAMI EC57 specifies
 * for QRS detection: a detection matches a reference beat within 150 ms; each is matched at most once (the
 * nearest unmatched detection wins); reference annotations that are not beats (rhythm changes, notes, noise)
 * are left out, and so is everything inside ventricular flutter/fibrillation episodes, on both sides.
 */
import { BEAT_CODES, VF_OFF, VF_ON, type WfdbAnnotation } from '../../src/formats/ecg/wfdb-annotations.js';

export const MATCH_WINDOW_S = 0.15;

export interface Ec57Result {
  tp: number;
  fn: number;
  fp: number;
  /** Sensitivity TP / (TP + FN). */
  se: number;
  /** Positive predictivity TP / (TP + FP). */
  ppv: number;
}

/** Reference beat times (s) and the VF spans to exclude, from annotations at `fs` samples per second. */
export function referenceBeats(
  annotations: WfdbAnnotation[],
  fs: number,
): { beats: number[]; excluded: [number, number][] } {
  const excluded: [number, number][] = [];
  let vfStart: number | undefined;
  for (const a of annotations) {
    if (a.code === VF_ON) vfStart = a.sample / fs;
    if (a.code === VF_OFF && vfStart !== undefined) {
      excluded.push([vfStart, a.sample / fs]);
      vfStart = undefined;
    }
  }
  if (vfStart !== undefined) excluded.push([vfStart, Number.POSITIVE_INFINITY]);
  const inside = (t: number) => excluded.some(([a, b]) => t >= a && t <= b);
  const beats = annotations
    .filter((a) => BEAT_CODES.has(a.code))
    .map((a) => a.sample / fs)
    .filter((t) => !inside(t));
  return { beats, excluded };
}

export function compareBeats(
  reference: number[],
  detected: number[],
  excluded: [number, number][] = [],
): Ec57Result {
  const inside = (t: number) => excluded.some(([a, b]) => t >= a && t <= b);
  const ref = [...reference].sort((a, b) => a - b);
  const det = detected.filter((t) => !inside(t)).sort((a, b) => a - b);
  const used = new Uint8Array(det.length);
  let tp = 0;
  let j = 0;
  for (const r of ref) {
    while (j < det.length && det[j]! < r - MATCH_WINDOW_S) j++;
    let best = -1;
    for (let k = j; k < det.length && det[k]! <= r + MATCH_WINDOW_S; k++) {
      if (!used[k] && (best < 0 || Math.abs(det[k]! - r) < Math.abs(det[best]! - r))) best = k;
    }
    if (best >= 0) {
      used[best] = 1;
      tp++;
    }
  }
  const fn = ref.length - tp;
  const fp = det.length - tp;
  return { tp, fn, fp, se: tp + fn > 0 ? tp / (tp + fn) : 1, ppv: tp + fp > 0 ? tp / (tp + fp) : 1 };
}
