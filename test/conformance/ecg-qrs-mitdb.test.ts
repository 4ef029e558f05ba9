import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, test } from 'vitest';
import { normalizeEcg } from '../../src/formats/ecg/normalize.js';
import { detectQrs } from '../../src/formats/ecg/qrs.js';
import { parseWfdbHeader, parseWfdbRecord, wfdbSignalFiles } from '../../src/formats/ecg/wfdb.js';
import { parseWfdbAnnotations } from '../../src/formats/ecg/wfdb-annotations.js';
import { corpusPath, hasCorpus } from '../corpus.js';
import { compareBeats, referenceBeats } from '../helpers/ecg-ec57.js';

function loadRecord(rel: string) {
  const header = parseWfdbHeader(readFileSync(corpusPath(rel), 'utf8'));
  const dir = path.dirname(rel);
  const files = Object.fromEntries(
    wfdbSignalFiles(header).map((name) => [
      name,
      new Uint8Array(readFileSync(corpusPath(path.join(dir, name)))),
    ]),
  );
  return { header, ecg: parseWfdbRecord(header, files) };
}

function annotations(rel: string) {
  return parseWfdbAnnotations(new Uint8Array(readFileSync(corpusPath(rel))));
}

const pct = (v: number) => `${(v * 100).toFixed(2)}%`;

describe.runIf(hasCorpus)(
  'QRS detection against reference beat annotations (ANSI/AAMI EC57, 150 ms window)',
  () => {
    // Every record in the corpus that has reference (.atr) annotations. MIT-BIH 100 is the one here; the goal is
    // Se ≥ 99.5 % and PPV ≥ 99.5 % on each.
    test.each([['ecg/wfdb/mitdb-100/100.hea', 'ecg/wfdb/mitdb-100/100.atr']])('%s', (hea, atr) => {
      const { ecg } = loadRecord(hea);
      const { beats, excluded } = referenceBeats(annotations(atr), ecg.samplingFrequency);
      const normalized = normalizeEcg(ecg);
      const detected = detectQrs(normalized.ecg, { quality: normalized.quality.leads });
      const result = compareBeats(beats, detected.times, excluded);
      console.log(
        `EC57 ${path.basename(hea, '.hea')}: reference ${beats.length} beats, detected ${detected.times.length}; ` +
          `TP ${result.tp} FN ${result.fn} FP ${result.fp}; Se ${pct(result.se)} PPV ${pct(result.ppv)} (leads ${detected.leadsUsed.join(', ')})`,
      );
      expect(beats.length).toBe(2273);
      expect(result.se).toBeGreaterThanOrEqual(0.995);
      expect(result.ppv).toBeGreaterThanOrEqual(0.995);
      // What this detector reaches on record 100 today: every beat, no false detection.
      expect(result.fn + result.fp).toBe(0);
    });

    test('03700181 (MCL1, 500 Hz): agrees with gqrs output, a detector and not a reference, as a sanity check', () => {
      const { ecg } = loadRecord('ecg/wfdb/03700181/03700181.hea');
      const gqrs = referenceBeats(annotations('ecg/wfdb/03700181/03700181.gqrsh'), ecg.samplingFrequency);
      const normalized = normalizeEcg(ecg);
      const detected = detectQrs(normalized.ecg, { quality: normalized.quality.leads });
      const result = compareBeats(gqrs.beats, detected.times);
      console.log(
        `03700181 vs gqrs: gqrs ${gqrs.beats.length}, ours ${detected.times.length}; agreement on gqrs beats ${pct(result.se)}, ` +
          `on ours ${pct(result.ppv)}`,
      );
      // Every gqrs beat is found; ours adds beats gqrs skipped at the start and in a few gaps of exactly two RR.
      expect(result.se).toBeGreaterThanOrEqual(0.99);
      expect(result.ppv).toBeGreaterThanOrEqual(0.9);
    });
  },
);

describe('EC57 matcher', () => {
  test('matches within 150 ms, one detection per beat, counts FN and FP', () => {
    const r = compareBeats([1, 2, 3, 4], [1.1, 1.12, 2.2, 3.0, 5]);
    expect(r).toEqual({ tp: 2, fn: 2, fp: 3, se: 0.5, ppv: 0.4 });
  });

  test('non-beat codes and VF episodes are left out', () => {
    const ann = [
      { sample: 100, code: 1 },
      { sample: 150, code: 28 }, // rhythm change: not a beat
      { sample: 200, code: 32 }, // VF on
      { sample: 250, code: 5 },
      { sample: 300, code: 33 }, // VF off
      { sample: 400, code: 5 },
    ].map((a) => ({ ...a, subtype: 0, channel: 0, num: 0 }));
    const { beats, excluded } = referenceBeats(ann, 100);
    expect(beats).toEqual([1, 4]);
    expect(compareBeats(beats, [1, 2.4, 4], excluded)).toMatchObject({ tp: 2, fp: 0 });
  });
});
