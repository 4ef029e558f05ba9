import { describe, expect, test } from 'vitest';
import {
  deriveLimbLeads,
  type Ecg,
  hasStandardTwelveLeads,
  microvoltsPerUnit,
  normalizeLeadName,
  orderLeads,
  scpLeadName,
} from '../../src/formats/ecg/ecg.js';

function ecgWith(leads: Record<string, number[]>): Ecg {
  const entries = Object.entries(leads);
  const sampleCount = entries[0]?.[1].length ?? 0;
  return {
    leads: entries.map(([name, values]) => ({ name, samplesUv: Float32Array.from(values) })),
    samplingFrequency: 500,
    sampleCount,
    durationSeconds: sampleCount / 500,
    acquisition: {},
    patient: {},
    source: { format: 'test' },
  };
}

describe('normalizeLeadName', () => {
  test.each([
    ['I', 'I'],
    ['i', 'I'],
    ['ii', 'II'],
    ['iii', 'III'],
    ['Lead I', 'I'],
    ['LEAD_II', 'II'],
    ['Lead 2', 'II'],
    ['Lead I (Einthoven)', 'I'],
    ['Lead aVR', 'aVR'],
    ['avr', 'aVR'],
    ['AVR', 'aVR'],
    ['aVl', 'aVL'],
    ['AVF', 'aVF'],
    ['MDC_ECG_LEAD_AVF', 'aVF'],
    ['v1', 'V1'],
    ['V6', 'V6'],
    ['ECG V3', 'V3'],
    ['  v4  ', 'V4'],
    ['v4r', 'V4R'],
    // Different leads from the standard ones keep their names.
    ['MLII', 'MLII'],
    ['MCL1', 'MCL1'],
    ['V', 'V'],
    ['vx', 'vx'],
    ['2', '2'],
    ['ABP', 'ABP'],
    ['-aVR', '-aVR'],
  ])('%j → %j', (raw, expected) => {
    expect(normalizeLeadName(raw)).toBe(expected);
  });
});

describe('scpLeadName', () => {
  test.each([
    [1, 'I'],
    [2, 'II'],
    [3, 'V1'],
    [8, 'V6'],
    [61, 'III'],
    [62, 'aVR'],
    [63, 'aVL'],
    [64, 'aVF'],
    [16, 'X'],
  ])('%i → %s', (code, name) => {
    expect(scpLeadName(code)).toBe(name);
  });

  test('unknown codes give undefined', () => {
    expect(scpLeadName(0)).toBeUndefined();
    expect(scpLeadName(999)).toBeUndefined();
  });
});

describe('microvoltsPerUnit', () => {
  test.each([
    ['mV', 1000],
    ['uV', 1],
    ['µV', 1],
    ['V', 1e6],
    ['nV', 1e-3],
  ])('%s', (unit, factor) => {
    expect(microvoltsPerUnit(unit)).toBe(factor);
  });

  test.each(['mmHg', '%', '', 'bpm'])('%j is not a voltage', (unit) => {
    expect(microvoltsPerUnit(unit)).toBeUndefined();
  });
});

describe('deriveLimbLeads', () => {
  const lead1 = [100, -200, 300.5, 0];
  const lead2 = [400, 50, -100, 1000];

  test('computes III, aVR, aVL, aVF from I and II (Einthoven, Goldberger)', () => {
    const derived = deriveLimbLeads(ecgWith({ I: lead1, II: lead2 }));
    const values = (name: string) => Array.from(derived.leads.find((l) => l.name === name)!.samplesUv);
    lead1.forEach((i, k) => {
      const ii = lead2[k]!;
      expect(values('III')[k]).toBeCloseTo(ii - i, 4);
      expect(values('aVR')[k]).toBeCloseTo(-(i + ii) / 2, 4);
      expect(values('aVL')[k]).toBeCloseTo(i - ii / 2, 4);
      expect(values('aVF')[k]).toBeCloseTo(ii - i / 2, 4);
    });
    expect(derived.leads.map((l) => l.name)).toEqual(['I', 'II', 'III', 'aVR', 'aVL', 'aVF']);
    expect(derived.leads.filter((l) => l.derived).map((l) => l.name)).toEqual(['III', 'aVR', 'aVL', 'aVF']);
  });

  test('Kirchhoff: aVR + aVL + aVF = 0 and I + III = II', () => {
    const derived = deriveLimbLeads(ecgWith({ I: lead1, II: lead2 }));
    const get = (name: string) => derived.leads.find((l) => l.name === name)!.samplesUv;
    for (let k = 0; k < lead1.length; k++) {
      expect(get('aVR')[k]! + get('aVL')[k]! + get('aVF')[k]!).toBeCloseTo(0, 3);
      expect(get('I')[k]! + get('III')[k]!).toBeCloseTo(get('II')[k]!, 3);
    }
  });

  test('fills I or II from the other and III', () => {
    const lead3 = lead1.map((v, k) => lead2[k]! - v);
    const fromIII = deriveLimbLeads(ecgWith({ III: lead3, I: lead1 }));
    const ii = fromIII.leads.find((l) => l.name === 'II')!;
    expect(ii.derived).toBe(true);
    expect(Array.from(ii.samplesUv)).toEqual(lead2.map(Math.fround));
    const i = deriveLimbLeads(ecgWith({ II: lead2, III: lead3 })).leads.find((l) => l.name === 'I')!;
    expect(Array.from(i.samplesUv)).toEqual(lead1.map(Math.fround));
  });

  test('keeps recorded leads and returns the same object when nothing can be derived', () => {
    const recordedIII = [1, 2, 3, 4];
    const derived = deriveLimbLeads(ecgWith({ I: lead1, II: lead2, III: recordedIII }));
    const iii = derived.leads.find((l) => l.name === 'III')!;
    expect(Array.from(iii.samplesUv)).toEqual(recordedIII);
    expect(iii.derived).toBeUndefined();

    const single = ecgWith({ MLII: lead2, V5: lead1 });
    expect(deriveLimbLeads(single)).toBe(single);
  });

  test('propagates NaN gaps instead of inventing values', () => {
    const derived = deriveLimbLeads(ecgWith({ I: [1, Number.NaN], II: [2, 3] }));
    expect(Number.isNaN(derived.leads.find((l) => l.name === 'III')!.samplesUv[1]!)).toBe(true);
  });

  test('an 8-lead record (I, II, V1–V6) becomes a full 12-lead set', () => {
    const names = ['I', 'II', 'V1', 'V2', 'V3', 'V4', 'V5', 'V6'];
    const ecg = ecgWith(Object.fromEntries(names.map((n) => [n, [1, 2]])));
    expect(hasStandardTwelveLeads(ecg)).toBe(false);
    expect(hasStandardTwelveLeads(deriveLimbLeads(ecg))).toBe(true);
  });
});

test('orderLeads puts the standard leads first in report order, others after in input order', () => {
  const ordered = orderLeads([
    { name: 'vx' },
    { name: 'V1' },
    { name: 'aVF' },
    { name: 'MLII' },
    { name: 'I' },
  ]);
  expect(ordered.map((l) => l.name)).toEqual(['I', 'aVF', 'V1', 'vx', 'MLII']);
});
