/**
 * Rhythm measurements and triage flags from detected beats. Pure.
 *
 * Flags (critical ones make the case stat):
 *   ASYSTOLE          critical  no QRS for ≥ 6 s (or a record ≥ 3 s with none) while the leads are on
 *   PAUSE             critical  an RR interval above 3 s
 *   BRADYCARDIA       critical  rate below 40/min (whole record; for records over a minute, any 10-beat run)
 *   TACHYCARDIA       critical  rate above 150/min (same rule)
 *   IRREGULAR_RHYTHM            irregularly irregular RR intervals: possible atrial fibrillation
 *   POOR_QUALITY                fewer than half the leads usable, or every lead lost
 *   ASSUMED_SCALE               the file did not state its sampling rate or units; rate and amplitude rest on an
 *                               assumption (see acquisition.assumptions)
 */
import type { Ecg } from './ecg.js';
import { type EcgQuality, type NormalizeOptions, normalizeEcg } from './normalize.js';
import { detectQrs } from './qrs.js';

export type EcgFlagCode =
  | 'ASYSTOLE'
  | 'PAUSE'
  | 'BRADYCARDIA'
  | 'TACHYCARDIA'
  | 'IRREGULAR_RHYTHM'
  | 'POOR_QUALITY'
  | 'ASSUMED_SCALE';

export interface EcgFlag {
  code: EcgFlagCode;
  message: string;
  critical: boolean;
  /** Where in the record (seconds) the finding is, when it is one place. */
  atSeconds?: number;
}

export interface RrSummary {
  /** RR intervals in ms, in order. */
  intervalsMs: number[];
  meanMs: number | null;
  minMs: number | null;
  maxMs: number | null;
  /** Standard deviation of RR (SDNN), ms. */
  sdnnMs: number | null;
  /** Root mean square of successive differences, ms. */
  rmssdMs: number | null;
  /** True when the intervals are irregularly irregular (possible atrial fibrillation). */
  irregular: boolean;
}

export interface RhythmMeasures {
  /** Mean ventricular rate over the record, beats per minute; null with fewer than two beats. */
  heartRate: number | null;
  /** Slowest and fastest 10-beat runs (bpm); null when there are fewer than 11 beats. */
  minRate: number | null;
  maxRate: number | null;
  rr: RrSummary;
  /** Longest stretch without a beat (including the record's start and end), seconds, and where it begins. */
  longestGapSeconds: number;
  longestGapAt: number;
  /** Start (s) of the longest RR interval, or null. */
  longestRrAt: number | null;
}

export interface EcgTriage {
  heartRate: number | null;
  rr: RrSummary;
  /** Beat times (s from the record start) the measures rest on. */
  beats: number[];
  flags: EcgFlag[];
  quality: EcgQuality;
  priority: 'stat' | null;
  /** The critical flags' messages, or null: recorded on the case for routing. */
  reason: string | null;
}

const BRADY_BPM = 40;
const TACHY_BPM = 150;
const PAUSE_S = 3;
const ASYSTOLE_S = 6;
const RUN_BEATS = 10;

function round(value: number, digits = 0): number {
  const f = 10 ** digits;
  return Math.round(value * f) / f;
}

/**
 * Irregularly irregular: successive differences as large as the spread itself (RMSSD/SDNN ≥ 1.1; sinus
 * arrhythmia varies smoothly and stays well below 1) and a spread of at least 10 % of the mean RR. Needs 8
 * intervals; a single ectopic beat with its pause is discounted by ignoring the two largest differences.
 */
function isIrregular(intervals: number[]): boolean {
  if (intervals.length < 8) return false;
  const mean = intervals.reduce((a, b) => a + b, 0) / intervals.length;
  const sd = Math.sqrt(intervals.reduce((a, b) => a + (b - mean) ** 2, 0) / intervals.length);
  const diffs = intervals.slice(1).map((v, i) => Math.abs(v - intervals[i]!));
  diffs.sort((a, b) => a - b);
  const kept = diffs.slice(0, Math.max(1, diffs.length - 2));
  const rmssd = Math.sqrt(kept.reduce((a, b) => a + b * b, 0) / kept.length);
  return rmssd / mean > 0.1 && rmssd / sd >= 1.1;
}

function longestRrIndex(intervals: number[]): number {
  let best = 0;
  for (let i = 1; i < intervals.length; i++) if (intervals[i]! > intervals[best]!) best = i;
  return best;
}

/** Rate and RR measures from beat times (seconds) over a record of `durationSeconds`. */
export function measureRhythm(beats: number[], durationSeconds: number): RhythmMeasures {
  const intervals = beats.slice(1).map((t, i) => (t - beats[i]!) * 1000);
  const n = intervals.length;
  const mean = n > 0 ? intervals.reduce((a, b) => a + b, 0) / n : null;
  const sdnn =
    mean !== null && n > 1 ? Math.sqrt(intervals.reduce((a, b) => a + (b - mean) ** 2, 0) / (n - 1)) : null;
  const rmssd =
    n > 1
      ? Math.sqrt(intervals.slice(1).reduce((a, v, i) => a + (v - intervals[i]!) ** 2, 0) / (n - 1))
      : null;
  let minRate: number | null = null;
  let maxRate: number | null = null;
  for (let i = 0; i + RUN_BEATS < beats.length; i++) {
    const rate = (60 * RUN_BEATS) / (beats[i + RUN_BEATS]! - beats[i]!);
    minRate = minRate === null ? rate : Math.min(minRate, rate);
    maxRate = maxRate === null ? rate : Math.max(maxRate, rate);
  }
  let longestGapSeconds = beats.length === 0 ? durationSeconds : beats[0]!;
  let longestGapAt = 0;
  for (let i = 0; i <= beats.length; i++) {
    const from = i === 0 ? 0 : beats[i - 1]!;
    const to = i === beats.length ? durationSeconds : beats[i]!;
    if (beats.length > 0 && to - from > longestGapSeconds) {
      longestGapSeconds = to - from;
      longestGapAt = from;
    }
  }
  return {
    heartRate: mean !== null ? round(60000 / mean) : null,
    minRate: minRate !== null ? round(minRate) : null,
    maxRate: maxRate !== null ? round(maxRate) : null,
    rr: {
      intervalsMs: intervals.map((v) => round(v)),
      meanMs: mean !== null ? round(mean) : null,
      minMs: n > 0 ? round(intervals.reduce((a, b) => Math.min(a, b), Number.POSITIVE_INFINITY)) : null,
      maxMs: n > 0 ? round(intervals.reduce((a, b) => Math.max(a, b), 0)) : null,
      sdnnMs: sdnn !== null ? round(sdnn) : null,
      rmssdMs: rmssd !== null ? round(rmssd) : null,
      irregular: isIrregular(intervals),
    },
    longestGapSeconds: round(longestGapSeconds, 2),
    longestGapAt: round(longestGapAt, 2),
    longestRrAt: n > 0 ? round(beats[longestRrIndex(intervals)]!, 2) : null,
  };
}

/** Flags from the measures, the quality verdict and the record length. */
export function rhythmFlags(
  measures: RhythmMeasures,
  quality: EcgQuality,
  ecg: Pick<Ecg, 'durationSeconds' | 'acquisition'>,
): EcgFlag[] {
  const flags: EcgFlag[] = [];
  const duration = ecg.durationSeconds;
  const allFlat = quality.leads.every((l) => l.problems.includes('lead-off') || l.problems.includes('flat'));
  const { heartRate, rr } = measures;
  const noBeats = rr.intervalsMs.length === 0 && measures.heartRate === null;

  if ((noBeats && duration >= PAUSE_S) || measures.longestGapSeconds >= ASYSTOLE_S) {
    // A flat line on every lead may be leads off rather than asystole, but it must be looked at first.
    const seconds = noBeats ? duration : measures.longestGapSeconds;
    flags.push({
      code: 'ASYSTOLE',
      message: allFlat
        ? `no QRS for ${round(seconds, 1)} s and every lead is flat or off: asystole or leads off, check`
        : `no QRS for ${round(seconds, 1)} s: asystole?`,
      critical: true,
      atSeconds: noBeats ? 0 : measures.longestGapAt,
    });
  }
  const hasAsystole = flags.some((f) => f.code === 'ASYSTOLE');
  if (!hasAsystole && rr.maxMs !== null && rr.maxMs > PAUSE_S * 1000) {
    const flag: EcgFlag = {
      code: 'PAUSE',
      message: `pause of ${round(rr.maxMs / 1000, 1)} s (RR above ${PAUSE_S} s)`,
      critical: true,
    };
    if (measures.longestRrAt !== null) flag.atSeconds = measures.longestRrAt;
    flags.push(flag);
  }
  const long = duration > 60;
  const slowest = long && measures.minRate !== null ? measures.minRate : heartRate;
  const fastest = long && measures.maxRate !== null ? measures.maxRate : heartRate;
  if (slowest !== null && slowest < BRADY_BPM && !hasAsystole) {
    flags.push({
      code: 'BRADYCARDIA',
      message: long
        ? `bradycardia: runs at ${slowest}/min (below ${BRADY_BPM})`
        : `bradycardia: ${slowest}/min (below ${BRADY_BPM})`,
      critical: true,
    });
  }
  if (fastest !== null && fastest > TACHY_BPM) {
    flags.push({
      code: 'TACHYCARDIA',
      message: long
        ? `tachycardia: runs at ${fastest}/min (above ${TACHY_BPM})`
        : `tachycardia: ${fastest}/min (above ${TACHY_BPM})`,
      critical: true,
    });
  }
  if (rr.irregular) {
    flags.push({
      code: 'IRREGULAR_RHYTHM',
      message: 'irregularly irregular RR intervals: possible atrial fibrillation',
      critical: false,
    });
  }
  if (quality.overall === 'poor') {
    const bad = quality.leads.filter((l) => !l.usable).map((l) => `${l.lead} (${l.problems.join(', ')})`);
    flags.push({ code: 'POOR_QUALITY', message: `poor signal quality: ${bad.join('; ')}`, critical: false });
  }
  if (typeof ecg.acquisition.assumptions === 'string') {
    flags.push({
      code: 'ASSUMED_SCALE',
      message: `scale not stated by the file (${ecg.acquisition.assumptions}): rate and amplitude may be wrong`,
      critical: false,
    });
  }
  return flags;
}

export interface TriageOptions extends NormalizeOptions {}

/**
 * Normalizes the Ecg, detects beats on its usable leads, measures the rhythm and raises the flags. The case
 * is stat when any flag is critical; `reason` lists those flags' messages.
 */
export function triageEcg(ecg: Ecg, options: TriageOptions = {}): EcgTriage {
  const normalized = normalizeEcg(ecg, options);
  const detection = detectQrs(normalized.ecg, { quality: normalized.quality.leads });
  return triageFromBeats(normalized.ecg, detection.times, normalized.quality);
}

/** The triage for beats already detected (e.g. by the pipeline, which also renders from the normalized Ecg). */
export function triageFromBeats(ecg: Ecg, beats: number[], quality: EcgQuality): EcgTriage {
  const measures = measureRhythm(beats, ecg.durationSeconds);
  const flags = rhythmFlags(measures, quality, ecg);
  const critical = flags.filter((f) => f.critical);
  return {
    heartRate: measures.heartRate,
    rr: measures.rr,
    beats: beats.map((t) => round(t, 3)),
    flags,
    quality,
    priority: critical.length > 0 ? 'stat' : null,
    reason: critical.length > 0 ? critical.map((f) => f.message).join('; ') : null,
  };
}
