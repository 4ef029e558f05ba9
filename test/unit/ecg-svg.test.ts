import { describe, expect, test } from 'vitest';
import { AppError } from '../../src/errors.js';
import type { Ecg } from '../../src/formats/ecg/ecg.js';
import { renderEcgSvg, TWELVE_LEAD_LAYOUT } from '../../src/formats/ecg/ecg-svg.js';
import { TWELVE } from '../helpers/ecg-synthetic.js';

const FS = 500;

/** A crude beat every second: flat line with a 1-sample, 1.5 mV spike (the kind a naive decimator loses). */
function spikyLead(seconds: number, spikeUv = 1500, offsetUv = 0): Float32Array {
  const samples = new Float32Array(seconds * FS).fill(offsetUv);
  for (let s = FS / 2; s < samples.length; s += FS) samples[s] = offsetUv + spikeUv;
  return samples;
}

function makeEcg(names: string[], seconds = 10, extra: Partial<Ecg> = {}): Ecg {
  return {
    leads: names.map((name) => ({ name, samplesUv: spikyLead(seconds) })),
    samplingFrequency: FS,
    sampleCount: seconds * FS,
    durationSeconds: seconds,
    acquisition: {},
    patient: { name: 'Doe^Jane', id: 'PID-77', birthDate: '1971-01-23', sex: 'F' },
    source: { format: 'test' },
    ...extra,
  };
}

function labels(svg: string, role: string): string[] {
  return [...svg.matchAll(new RegExp(`<text data-role="${role}-label"[^>]*>([^<]*)</text>`, 'g'))].map(
    (m) => m[1]!,
  );
}

function pathFor(svg: string, role: string, lead: string): string {
  const match = new RegExp(`<path data-role="${role}" data-lead="${lead}" d="([^"]*)"`).exec(svg);
  if (!match) throw new Error(`no ${role} path for ${lead}`);
  return match[1]!;
}

function yValues(d: string): number[] {
  return [...d.matchAll(/[ML]([-\d.]+) ([-\d.]+)/g)].map((m) => Number(m[2]));
}

describe('renderEcgSvg: the 12-lead page', () => {
  const svg = renderEcgSvg(makeEcg(TWELVE), { width: 1250 });

  test('is an SVG of the requested pixel size with a millimetre viewBox', () => {
    expect(svg.startsWith('<svg')).toBe(true);
    expect(svg).toMatch(/width="1250" height="1000" viewBox="0 0 275 220"/);
  });

  test('has the 12 lead labels in the 3 × 4 layout and a lead II rhythm strip', () => {
    expect(labels(svg, 'lead')).toEqual(TWELVE_LEAD_LAYOUT.flat());
    expect(new Set(labels(svg, 'lead'))).toEqual(new Set(TWELVE));
    expect(labels(svg, 'rhythm')).toEqual(['II']);
    expect(pathFor(svg, 'rhythm', 'II').length).toBeGreaterThan(0);
  });

  test('each cell shows 2.5 s: 62.5 mm wide; the rhythm strip shows 10 s over 250 mm', () => {
    const xs = (d: string) => [...d.matchAll(/[ML]([-\d.]+) /g)].map((m) => Number(m[1]));
    const cell = xs(pathFor(svg, 'lead', 'V1'));
    expect(Math.min(...cell)).toBeCloseTo(15 + 2 * 62.5, 0);
    expect(Math.max(...cell)).toBeCloseTo(15 + 3 * 62.5, 0);
    const rhythm = xs(pathFor(svg, 'rhythm', 'II'));
    expect(Math.max(...rhythm) - Math.min(...rhythm)).toBeCloseTo(250, 0);
  });

  test('min/max per pixel column keeps every 1-sample spike at full height (10 mm/mV)', () => {
    const ys = yValues(pathFor(svg, 'rhythm', 'II'));
    const baseline = Math.max(...ys);
    const peaks = ys.filter((y) => baseline - y > 14.9);
    // 1.5 mV at 10 mm/mV = 15 mm above the baseline, once per second for 10 s.
    expect(peaks).toHaveLength(10);
    // …and the path is reduced to roughly two points per pixel column, not one per sample.
    expect(ys.length).toBeLessThan(2 * 1250);
  });

  test('draws the grid, calibration pulses and a header without patient demographics', () => {
    expect(svg).toContain('stroke="#f4c2c2"');
    expect(svg).toContain('stroke="#e38d8d"');
    expect((svg.match(/class="calibration" d="([^"]*)"/)?.[1] ?? '').match(/M/g)).toHaveLength(4);
    expect(svg).toMatch(/25 mm\/s · 10 mm\/mV · 500 Hz · 10\.0 s · 12 leads/);
    for (const secret of ['Doe', 'Jane', 'PID-77', '1971']) expect(svg).not.toContain(secret);
  });

  test('the header shows the triage: detected rate, flags (critical in red, marked STAT), quality', () => {
    const triage = {
      heartRate: 182,
      rr: { irregular: true },
      quality: { overall: 'acceptable' },
      flags: [
        { code: 'TACHYCARDIA', message: 'tachycardia: 182/min (above 150)', critical: true },
        { code: 'IRREGULAR_RHYTHM', message: 'possible atrial fibrillation', critical: false },
      ],
    };
    const page = renderEcgSvg(makeEcg(TWELVE), { triage });
    expect(page).toMatch(/HR 182\/min · RR irregular · 25 mm\/s/);
    expect(page).toMatch(
      /<text data-role="flag"[^>]*font-weight="bold" fill="#c00000">STAT: tachycardia: 182\/min \(above 150\)<\/text>/,
    );
    expect(page).toContain('signal quality acceptable');
  });

  test('shows the device rate when it was measured', () => {
    const withRate = renderEcgSvg(
      makeEcg(TWELVE, 10, { measurements: { rrInterval: 1000 }, device: 'Acme <9>' }),
    );
    expect(withRate).toContain('Rate 60 bpm');
    expect(withRate).toContain('Acme &#60;9&#62;');
  });

  test('gain and paper speed scale the trace', () => {
    const ecg = makeEcg(TWELVE);
    const height = (s: string) => {
      const ys = yValues(pathFor(s, 'rhythm', 'II'));
      return Math.max(...ys) - Math.min(...ys);
    };
    expect(height(renderEcgSvg(ecg, { gain: 5 }))).toBeCloseTo(7.5, 1);
    expect(height(renderEcgSvg(ecg, { gain: 20 }))).toBeCloseTo(30, 1);
    const fast = renderEcgSvg(ecg, { paperSpeed: 50 });
    expect(fast).toMatch(/first 5\.0 s shown/);
  });
});

describe('renderEcgSvg: page geometry (25 mm/s, 10 mm/mV)', () => {
  test.each([800, 1250])(
    'at %i px: grid pitch is width/275 px per mm, major lines every 5 mm, the 1 mV pulse is 10 mm tall',
    (width) => {
      const svg = renderEcgSvg(makeEcg(TWELVE), { width });
      const [, w, , vbW] = /width="(\d+)" height="(\d+)" viewBox="0 0 (\d+) /.exec(svg)!.map(Number);
      const pxPerMm = w! / vbW!;
      expect(pxPerMm).toBeCloseTo(width / 275, 9);
      const xs = (cls: string) =>
        [...new RegExp(`class="${cls}" d="([^"]*)"`).exec(svg)![1]!.matchAll(/M([\d.]+) [\d.]+V/g)].map((m) =>
          Number(m[1]),
        );
      const minor = xs('grid-minor');
      const major = xs('grid-major');
      expect(minor[1]! - minor[0]!).toBeCloseTo(1, 9); // 1 mm
      expect(major[1]! - major[0]!).toBeCloseTo(5, 9); // 5 mm
      expect((major[1]! - major[0]!) * pxPerMm).toBeCloseTo((5 * width) / 275, 6);
      const pulse =
        /class="calibration" d="M([\d.]+) ([\d.]+)L([\d.]+) ([\d.]+)L([\d.]+) ([\d.]+)L([\d.]+) ([\d.]+)/
          .exec(svg)!
          .slice(1)
          .map(Number);
      const height = pulse[3]! - pulse[5]!; // baseline y − top y, in mm
      expect(height).toBeCloseTo(10, 9);
      expect(pulse[6]! - pulse[4]!).toBeCloseTo(5, 9); // 0.2 s at 25 mm/s
      expect(height * pxPerMm).toBeCloseTo((10 * width) / 275, 6);
    },
  );
});

describe('renderEcgSvg: other lead sets', () => {
  test('8 stored leads (I, II, V1–V6) get the full page with the derived limb leads named', () => {
    const svg = renderEcgSvg(makeEcg(['I', 'II', 'V1', 'V2', 'V3', 'V4', 'V5', 'V6']));
    expect(labels(svg, 'lead')).toEqual(TWELVE_LEAD_LAYOUT.flat());
    expect(svg).toContain('III, aVR, aVL, aVF derived');
  });

  test('MIT-BIH style MLII + V5 (2 leads, 30 min): three consecutive 10 s strips of both leads, time-stamped', () => {
    const ecg = makeEcg(['MLII', 'V5'], 1800);
    const svg = renderEcgSvg(ecg, { width: 1000 });
    expect(labels(svg, 'lead')).toEqual(['MLII', 'V5', 'MLII', 'V5', 'MLII', 'V5']);
    expect(labels(svg, 'rhythm')).toEqual([]);
    expect([...svg.matchAll(/data-role="time"[^>]*>([^<]*)</g)].map((m) => m[1])).toEqual([
      '0:00',
      '0:00',
      '0:10',
      '0:10',
      '0:20',
      '0:20',
    ]);
    expect(svg).toContain('30:00 (0:00–0:30 shown)');
    // 6 rows of 40 mm + header + margin = 260 mm of a 275 mm wide page.
    expect(svg).toMatch(/width="1000" height="945"/);
  });

  test('one Holter lead: six consecutive strips (60 s); a critical finding later on moves the page to it', () => {
    const ecg = makeEcg(['ECG1'], 3600);
    expect(labels(renderEcgSvg(ecg), 'lead')).toHaveLength(6);
    const triage = {
      heartRate: 60,
      flags: [{ code: 'PAUSE', message: 'pause of 3.4 s', critical: true, atSeconds: 1234.5 }],
    };
    const svg = renderEcgSvg(ecg, { triage });
    expect(svg).toContain('(20:32–21:32 shown)');
    expect(svg).toContain('STAT: pause of 3.4 s');
  });

  test('15 leads: the 3 × 4 page, a row for the extra leads, then the rhythm strip', () => {
    const svg = renderEcgSvg(makeEcg([...TWELVE, 'V4R', 'V8', 'V9']));
    expect(labels(svg, 'lead')).toEqual([...TWELVE_LEAD_LAYOUT.flat(), 'V4R', 'V8', 'V9']);
    expect(labels(svg, 'rhythm')).toEqual(['II']);
    // 4 rows of 50 mm + one of 40 mm + header 15 + margin 5 = 260 mm.
    expect(svg).toMatch(/viewBox="0 0 275 260"/);
  });

  test('NaN samples break the line; a DC offset is removed so the trace sits on its row', () => {
    const ecg = makeEcg(['MLII']);
    const lead = ecg.leads[0]!.samplesUv;
    lead.fill(5000); // 5 mV of offset, which would put the trace 50 mm off its row
    lead.fill(Number.NaN, 1000, 1500);
    const d = pathFor(renderEcgSvg(ecg), 'lead', 'MLII');
    expect(d.match(/M/g)).toHaveLength(2);
    const ys = yValues(d);
    expect(Math.max(...ys) - Math.min(...ys)).toBeLessThan(0.01);
    expect(ys[0]).toBeCloseTo(15 + 40 * 0.6, 1);
  });

  test('many leads: at most 16 strips, the rest counted in the header', () => {
    const names = Array.from({ length: 20 }, (_, i) => `ch${i}`);
    const svg = renderEcgSvg(makeEcg(names, 2));
    expect(labels(svg, 'lead')).toHaveLength(16);
    expect(svg).toContain('4 more leads not shown');
  });

  test('an empty recording still renders a page', () => {
    const svg = renderEcgSvg(makeEcg(['II'], 0));
    expect(svg).toContain('</svg>');
  });
});

test.each([
  [{ paperSpeed: 0 }],
  [{ paperSpeed: Number.NaN }],
  [{ gain: -10 }],
  [{ width: 10 }],
  [{ width: 1e9 }],
])('bad options %j → VALIDATION_FAILED', (options) => {
  expect(() => renderEcgSvg(makeEcg(['II']), options)).toThrowError(AppError);
  try {
    renderEcgSvg(makeEcg(['II']), options);
  } catch (err) {
    expect((err as AppError).code).toBe('VALIDATION_FAILED');
  }
});
