/**
 * Writes WFDB records (header text + signal files) from digital sample values, straight from the format
 * descriptions in signal(5), so tests can round-trip every format through the decoder.
 */

export type WfdbTestFormat = 8 | 16 | 24 | 32 | 61 | 80 | 160 | 212 | 310 | 311;

export const WFDB_TEST_FORMATS: readonly WfdbTestFormat[] = [8, 16, 24, 32, 61, 80, 160, 212, 310, 311];

/** Smallest and largest value each format stores (the smallest is also its invalid-sample code, except 8). */
export const FORMAT_RANGE: Record<WfdbTestFormat, [number, number]> = {
  8: [-2_000_000, 2_000_000], // differences are 8-bit, values are not
  16: [-32768, 32767],
  24: [-8388608, 8388607],
  32: [-2147483648, 2147483647],
  61: [-32768, 32767],
  80: [-128, 127],
  160: [-32768, 32767],
  212: [-2048, 2047],
  310: [-512, 511],
  311: [-512, 511],
};

/**
 * Encodes an interleaved stream of digital samples. For format 8 `initialValues[k]` is the initial value of the
 * signal that owns stream position k (differences are per signal).
 */
export function encodeSamples(
  format: WfdbTestFormat,
  stream: number[],
  signalOf: (k: number) => number,
  initialValues: number[],
): Uint8Array {
  const n = stream.length;
  switch (format) {
    case 8: {
      const out = new Uint8Array(n);
      const previous = [...initialValues];
      stream.forEach((value, k) => {
        const signal = signalOf(k);
        const difference = value - previous[signal]!;
        if (difference < -128 || difference > 127)
          throw new Error(`format 8 difference ${difference} out of range`);
        out[k] = difference & 0xff;
        previous[signal] = value;
      });
      return out;
    }
    case 80:
      return Uint8Array.from(stream, (v) => (v + 128) & 0xff);
    case 16:
    case 61:
    case 160: {
      const out = new Uint8Array(n * 2);
      const view = new DataView(out.buffer);
      stream.forEach((v, k) => {
        if (format === 160) view.setUint16(2 * k, v + 32768, true);
        else view.setInt16(2 * k, v, format === 16);
      });
      return out;
    }
    case 24: {
      const out = new Uint8Array(n * 3);
      stream.forEach((v, k) => {
        out[3 * k] = v & 0xff;
        out[3 * k + 1] = (v >> 8) & 0xff;
        out[3 * k + 2] = (v >> 16) & 0xff;
      });
      return out;
    }
    case 32: {
      const out = new Uint8Array(n * 4);
      const view = new DataView(out.buffer);
      stream.forEach((v, k) => {
        view.setInt32(4 * k, v, true);
      });
      return out;
    }
    case 212: {
      // Sample pairs in byte triplets: low 8 bits of the first, its high nibble + the second's high nibble,
      // low 8 bits of the second. An odd last sample takes two bytes.
      const out = new Uint8Array(Math.floor(n / 2) * 3 + (n % 2 ? 2 : 0));
      for (let k = 0; k < n; k += 2) {
        const a = stream[k]! & 0xfff;
        const b = k + 1 < n ? stream[k + 1]! & 0xfff : 0;
        const at = (k / 2) * 3;
        out[at] = a & 0xff;
        out[at + 1] = ((a >> 8) & 0x0f) | (k + 1 < n ? ((b >> 8) & 0x0f) << 4 : 0);
        if (k + 1 < n) out[at + 2] = b & 0xff;
      }
      return out;
    }
    case 310: {
      // Two little-endian words per three samples: bits 1–10 of word 0 and word 1 hold samples 0 and 1;
      // bits 11–15 of word 0 / word 1 hold the low / high five bits of sample 2.
      const rest = n % 3;
      const out = new Uint8Array(Math.floor(n / 3) * 4 + [0, 2, 4][rest]!);
      const view = new DataView(out.buffer);
      for (let k = 0; k < n; k += 3) {
        const s0 = stream[k]! & 0x3ff;
        const s1 = k + 1 < n ? stream[k + 1]! & 0x3ff : 0;
        const s2 = k + 2 < n ? stream[k + 2]! & 0x3ff : 0;
        const at = (k / 3) * 4;
        view.setUint16(at, (s0 << 1) | ((s2 & 0x1f) << 11), true);
        if (k + 1 < n) view.setUint16(at + 2, (s1 << 1) | ((s2 >> 5) << 11), true);
      }
      return out;
    }
    case 311: {
      // One little-endian 32-bit word per three samples, 10 bits each from bit 0.
      const rest = n % 3;
      const out = new Uint8Array(Math.floor(n / 3) * 4 + [0, 2, 3][rest]!);
      for (let k = 0; k < n; k += 3) {
        const word =
          (stream[k]! & 0x3ff) |
          ((k + 1 < n ? stream[k + 1]! & 0x3ff : 0) << 10) |
          ((k + 2 < n ? stream[k + 2]! & 0x3ff : 0) << 20);
        const at = (k / 3) * 4;
        for (let b = 0; b < 4 && at + b < out.length; b++) out[at + b] = (word >>> (8 * b)) & 0xff;
      }
      return out;
    }
  }
}

export interface TestSignal {
  description: string;
  /** Digital values at the signal's own rate: frames × samplesPerFrame. */
  samples: number[];
  samplesPerFrame?: number;
  skew?: number;
  gain?: number;
  baseline?: number;
  units?: string;
  /** Defaults to `${record}.dat`. Signals sharing a file are interleaved frame by frame. */
  file?: string;
}

export interface TestRecord {
  name: string;
  format: WfdbTestFormat;
  samplingFrequency: number;
  signals: TestSignal[];
  /** Bytes of zeros written before sample 0 of every file (header '+offset'). */
  byteOffset?: number;
  /** Leave the sample count out of the record line, as 100-no-len.hea does. */
  omitSampleCount?: boolean;
  baseTime?: string;
  baseDate?: string;
  comments?: string[];
}

/** 16-bit checksum as WFDB writes it: the sum of all samples, as a signed 16-bit value. */
export function wfdbChecksum(samples: readonly number[]): number {
  let sum = 0;
  for (const v of samples) sum = (sum + v) % 65536;
  return ((sum + 65536 + 32768) % 65536) - 32768;
}

/** Builds the header text and the signal files of a record. Every signal must have the same frame count. */
export function writeWfdbRecord(record: TestRecord): { header: string; files: Record<string, Uint8Array> } {
  const spf = (s: TestSignal): number => s.samplesPerFrame ?? 1;
  const frames =
    record.signals.length === 0 ? 0 : record.signals[0]!.samples.length / spf(record.signals[0]!);
  const byFile = new Map<string, number[]>();
  record.signals.forEach((signal, i) => {
    if (signal.samples.length !== frames * spf(signal)) throw new Error('signals differ in frame count');
    const file = signal.file ?? `${record.name}.dat`;
    byFile.set(file, [...(byFile.get(file) ?? []), i]);
  });

  // A skewed signal is stored `skew` frames late: frame f of the file holds its sample f - skew.
  const storedBySignal = record.signals.map((signal) => {
    const skew = signal.skew ?? 0;
    const per = spf(signal);
    return Array.from({ length: frames * per }, (_, k) => {
      const source = k - skew * per;
      return source >= 0 ? signal.samples[source]! : signal.samples[0]!;
    });
  });
  const files: Record<string, Uint8Array> = {};
  for (const [file, members] of byFile) {
    const stored = members.map((i) => storedBySignal[i]!);
    const stream: number[] = [];
    const owner: number[] = [];
    for (let f = 0; f < frames; f++) {
      members.forEach((i, m) => {
        const per = spf(record.signals[i]!);
        for (let j = 0; j < per; j++) {
          stream.push(stored[m]![f * per + j]!);
          owner.push(m);
        }
      });
    }
    const initial = stored.map((values) => values[0] ?? 0);
    const body = encodeSamples(record.format, stream, (k) => owner[k]!, initial);
    const offset = record.byteOffset ?? 0;
    const bytes = new Uint8Array(offset + body.length);
    bytes.set(body, offset);
    files[file] = bytes;
  }

  const recordLine = [record.name, record.signals.length, record.samplingFrequency];
  if (!record.omitSampleCount) recordLine.push(frames);
  if (record.baseTime) recordLine.push(record.baseTime);
  if (record.baseDate) recordLine.push(record.baseDate);
  const lines = [recordLine.join(' ')];
  record.signals.forEach((signal, i) => {
    const file = signal.file ?? `${record.name}.dat`;
    let format = String(record.format);
    if (spf(signal) > 1) format += `x${spf(signal)}`;
    if (signal.skew) format += `:${signal.skew}`;
    if (record.byteOffset) format += `+${record.byteOffset}`;
    let gain = String(signal.gain ?? 200);
    if (signal.baseline !== undefined) gain += `(${signal.baseline})`;
    if (signal.units) gain += `/${signal.units}`;
    const stored = storedBySignal[i]!;
    lines.push(
      [file, format, gain, 12, 0, stored[0] ?? 0, wfdbChecksum(stored), 0, signal.description].join(' '),
    );
  });
  for (const comment of record.comments ?? []) lines.push(`# ${comment}`);
  return { header: `${lines.join('\n')}\n`, files };
}
