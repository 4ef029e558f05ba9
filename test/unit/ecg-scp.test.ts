import { describe, expect, test } from 'vitest';
import { AppError } from '../../src/errors.js';
import { crcCcitt, parseScpEcg } from '../../src/formats/ecg/scp-ecg.js';
import { differences, huffmanDefault, writeScp } from '../helpers/ecg-scp-writer.js';
import { syntheticLead } from '../helpers/ecg-synthetic.js';

/** A lead in ADC units (1 unit = 1 µV at avm 1000 nV). */
function leadUnits(name: string, n = 2500): Int16Array {
  return Int16Array.from(syntheticLead(name, { seconds: n / 500 }), (v) => Math.round(v));
}

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (err) {
    return err instanceof AppError ? err.code : `not an AppError: ${err}`;
  }
  return undefined;
}

describe('crcCcitt', () => {
  test('CRC-CCITT (0x1021, init 0xFFFF) of "123456789" is 0x29B1', () => {
    expect(crcCcitt(new TextEncoder().encode('123456789'))).toBe(0x29b1);
  });
});

describe('parseScpEcg: encodings round-trip', () => {
  const I = leadUnits('I');
  const II = leadUnits('II');
  test.each([
    ['raw, no differences', 'raw', 0],
    ['raw, first differences', 'raw', 1],
    ['default Huffman, first differences', 'huffman', 1],
    ['default Huffman, second differences', 'huffman', 2],
    ['default Huffman, no differences (8- and 16-bit escapes)', 'huffman', 0],
  ] as const)('%s', (_label, encoding, difference) => {
    const bytes = writeScp({
      encoding,
      difference,
      avmNv: 2500,
      leads: [
        { code: 1, samples: I },
        { code: 2, samples: II },
      ],
    });
    const ecg = parseScpEcg(bytes);
    expect(ecg.leads.map((l) => l.name)).toEqual(['I', 'II']);
    expect(ecg.samplingFrequency).toBe(500);
    expect(ecg.sampleCount).toBe(I.length);
    expect(ecg.startTime).toBe('2002-11-22T09:10:00');
    for (let i = 0; i < I.length; i += 97) {
      expect(ecg.leads[0]!.samplesUv[i]).toBeCloseTo(I[i]! * 2.5, 3);
      expect(ecg.leads[1]!.samplesUv[i]).toBeCloseTo(II[i]! * 2.5, 3);
    }
  });

  test('the default table codes small differences in few bits', () => {
    expect(Array.from(huffmanDefault([0, 1, -1, 8]))).toEqual([0b01001011, 0b11111110, 0]);
  });

  test('a custom Huffman table with a table switch (section 2)', () => {
    // Table 1: '0' → 0, '10' → +5, '11' → switch to table 2. Table 2: '0' → −3, '1' → switch to table 1.
    // Base codes are stored least significant bit first.
    const s2 = Uint8Array.from([
      2,
      0, // two tables
      3,
      0, // table 1: three codes
      1,
      1,
      1,
      0,
      0,
      0,
      0,
      0,
      0, // '0'
      2,
      2,
      1,
      5,
      0,
      0b01,
      0,
      0,
      0, // '10' reversed → 01
      2,
      2,
      0,
      2,
      0,
      0b11,
      0,
      0,
      0, // '11' → table 2
      2,
      0, // table 2: two codes
      1,
      1,
      1,
      0xfd,
      0xff,
      0,
      0,
      0,
      0, // '0' → −3
      1,
      1,
      0,
      1,
      0,
      1,
      0,
      0,
      0, // '1' → table 1
    ]);
    // Values 0, 5, then switch, −3, −3, switch back, 5, 0: bits 0 10 11 0 0 1 10 0 → 01011001 1000 0000
    const data = Uint8Array.from([0b01011001, 0b10000000]);
    const ecg = parseScpEcg(
      writeScp({
        encoding: 'huffman',
        difference: 0,
        section2: s2,
        rawLeadData: [data],
        leads: [{ code: 2, samples: [0, 0, 0, 0, 0, 0] }],
      }),
    );
    expect(Array.from(ecg.leads[0]!.samplesUv)).toEqual([0, 5, -3, -3, 5, 0]);
  });

  test('reference-beat subtraction: the beat is added back in each type-0 zone (sections 4 and 5)', () => {
    const beat = Array.from({ length: 100 }, (_, i) => Math.round(800 * Math.exp(-((i - 40) ** 2) / 30)));
    const residual = Array.from({ length: 1000 }, (_, i) => (i % 7) - 3);
    const zones = [
      { start: 161, fiducial: 200, end: 259 },
      { start: 661, fiducial: 700, end: 759 },
    ];
    const bytes = writeScp({
      encoding: 'huffman',
      difference: 2,
      leads: [{ code: 2, samples: residual }],
      referenceBeat: { samples: [beat], fiducial: 41, lengthMs: 200, zones, subtracted: true },
    });
    const ecg = parseScpEcg(bytes);
    const out = ecg.leads[0]!.samplesUv;
    // Sample t (1-based) gets beat[t − fiducial + 41 − 1].
    expect(out[199]).toBeCloseTo(residual[199]! + beat[40]!, 6);
    expect(out[699]).toBeCloseTo(residual[699]! + beat[40]!, 6);
    expect(out[100]).toBeCloseTo(residual[100]!, 6);
    expect(ecg.medianBeat?.leads[0]?.samplesUv[40]).toBe(beat[40]);
    expect(ecg.acquisition.encoding).toContain('reference beat subtracted');
  });

  test('bimodal compression: decimated samples outside protected zones are interpolated back', () => {
    // A ramp outside the QRS zone (linear, so block averages sit exactly on it) and a spike inside.
    const rate = 4;
    const full = Array.from({ length: 400 }, (_, i) => 2 * i);
    for (let i = 200; i < 216; i++) full[i] = 1000 + i;
    const protectedZone = { start: 201, end: 216 }; // 1-based, inclusive
    const stored: number[] = [];
    for (let t = 1; t <= 400; ) {
      if (t >= protectedZone.start && t <= protectedZone.end) {
        stored.push(full[t - 1]!);
        t++;
      } else {
        const end = Math.min(
          400,
          t < protectedZone.start ? Math.min(t + rate - 1, protectedZone.start - 1) : t + rate - 1,
        );
        let sum = 0;
        for (let k = t; k <= end; k++) sum += full[k - 1]!;
        stored.push(sum / (end - t + 1));
        t = end + 1;
      }
    }
    const bytes = writeScp({
      encoding: 'raw',
      difference: 0,
      intervalUs: 8000,
      bimodal: true,
      leads: [{ code: 2, samples: full, start: 1, end: 400 }],
      rawLeadData: [Uint8Array.from(new Uint8Array(Int16Array.from(stored).buffer))],
      referenceBeat: {
        samples: [new Array(50).fill(0)],
        fiducial: 10,
        lengthMs: 100,
        zones: [{ start: 201, fiducial: 208, end: 216 }],
        protectedZones: [protectedZone],
        subtracted: false,
        intervalUs: 2000,
      },
    });
    const ecg = parseScpEcg(bytes);
    expect(ecg.samplingFrequency).toBe(500);
    expect(ecg.sampleCount).toBe(400);
    const out = ecg.leads[0]!.samplesUv;
    for (const i of [10, 57, 150, 190, 250, 390]) expect(out[i]).toBeCloseTo(full[i]!, 6);
    for (let i = 200; i < 216; i++) expect(out[i]).toBe(full[i]);
  });

  test('second differences keep the first two samples as they are', () => {
    expect(differences([5, 7, 10, 14], 2)).toEqual([5, 7, 1, 1]);
  });
});

describe('parseScpEcg: broken input', () => {
  const good = writeScp({ encoding: 'huffman', leads: [{ code: 1, samples: leadUnits('I', 500) }] });
  const flip = (at: number) => {
    const copy = good.slice();
    copy[at] = copy[at]! ^ 0xff;
    return copy;
  };
  test.each([
    ['file CRC wrong', () => flip(0), 'CORRUPT_FILE'],
    ['a byte inside section 6 changed', () => flip(good.length - 3), 'CORRUPT_FILE'],
    ['truncated (record length says more)', () => good.subarray(0, good.length - 40), 'CORRUPT_FILE'],
    ['truncated to the header', () => good.subarray(0, 30), 'CORRUPT_FILE'],
    ['too short to be SCP', () => good.subarray(0, 10), 'UNSUPPORTED_FORMAT'],
    [
      'not SCP at all',
      () => new TextEncoder().encode('hello world, this is not an ECG at all'),
      'UNSUPPORTED_FORMAT',
    ],
  ])('%s → %s', (_label, make, code) => {
    expect(codeOf(() => parseScpEcg(make()))).toBe(code);
  });

  test('lead data shorter than section 3 says → CORRUPT_FILE naming the lead', () => {
    const bytes = writeScp({
      encoding: 'raw',
      difference: 0,
      leads: [{ code: 1, samples: [1, 2, 3], start: 1, end: 10 }],
    });
    expect(() => parseScpEcg(bytes)).toThrowError(/lead I: 6 bytes hold 3 samples, section 3 says 10/);
  });

  test('Huffman data that ends before the announced samples → CORRUPT_FILE', () => {
    const bytes = writeScp({
      encoding: 'huffman',
      difference: 0,
      leads: [{ code: 1, samples: [0, 0], start: 1, end: 5000 }],
    });
    expect(() => parseScpEcg(bytes)).toThrowError(/data ends after/);
  });

  test('every truncation of a valid record is refused, never hangs', () => {
    for (let cut = 0; cut < good.length; cut += 37) {
      expect(codeOf(() => parseScpEcg(good.subarray(0, cut)))).toMatch(/CORRUPT_FILE|UNSUPPORTED_FORMAT/);
    }
  });
});
