/**
 * Small pieces every ECG parser needs: its two error kinds, the decoded-sample cap, and number and text
 * readers that never throw on junk. Pure.
 */
import { AppError } from '../../errors.js';

/** Leads × samples any parser may decode (80 MB of Float32), whatever the file claims: 15 leads × 15 min at
 * 1 kHz, or 3 leads × 24 h at 250 Hz. Bigger inputs are refused, not truncated. */
export const MAX_ECG_SAMPLES = 24_000_000;

export function corrupt(message: string, details?: Record<string, unknown>): AppError {
  return new AppError('CORRUPT_FILE', message, { retryable: false, details });
}

export function unsupported(message: string, details?: Record<string, unknown>): AppError {
  return new AppError('UNSUPPORTED_FORMAT', message, { retryable: false, details });
}

/** Throws before allocating when `leads × samples` passes MAX_ECG_SAMPLES. */
export function assertSampleBudget(leads: number, samples: number, what: string): void {
  if (!Number.isFinite(samples) || samples < 0 || leads * samples > MAX_ECG_SAMPLES) {
    throw unsupported(
      `${what}: ${leads} leads × ${samples} samples is more than the ${MAX_ECG_SAMPLES}-sample limit`,
      { leads, samples },
    );
  }
}

/** A finite number from text, or undefined ('', 'abc', 'NaN', '1e999' all give undefined). */
export function toNumber(text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  const trimmed = text.trim();
  if (trimmed === '') return undefined;
  const value = Number(trimmed);
  return Number.isFinite(value) ? value : undefined;
}

/** Strict base64 decode (whitespace allowed). Node's decoder silently skips junk, so the alphabet is checked
 * first: a damaged payload must not decode to plausible-looking samples. */
export function decodeBase64(text: string, what: string): Uint8Array {
  const clean = text.replace(/\s+/g, '');
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(clean) || clean.length % 4 === 1) {
    throw corrupt(`${what}: the base64 data contains invalid characters or is cut short`);
  }
  const buffer = Buffer.from(clean, 'base64');
  return new Uint8Array(buffer.buffer, buffer.byteOffset, buffer.byteLength);
}

/** 'YYYYMMDDhhmmss[.fff]' (HL7 TS) → ISO local date-time; date alone when there is no time. */
export function hl7TimestampToIso(value: string | undefined): string | undefined {
  const m = value ? /^(\d{4})(\d{2})(\d{2})(?:(\d{2})(\d{2})(\d{2})?(\.\d+)?)?/.exec(value.trim()) : null;
  if (!m) return undefined;
  const date = `${m[1]}-${m[2]}-${m[3]}`;
  if (m[4] === undefined) return date;
  return `${date}T${m[4]}:${m[5]}:${m[6] ?? '00'}${m[7] ?? ''}`;
}

/** Distinct lead names: a second 'V1' becomes 'V1 2', so no lead is lost and lookups by name stay exact. */
export function uniqueNames(names: string[]): string[] {
  const seen = new Map<string, number>();
  return names.map((name) => {
    const count = (seen.get(name) ?? 0) + 1;
    seen.set(name, count);
    return count === 1 ? name : `${name} ${count}`;
  });
}
