import { createHmac, randomBytes } from 'node:crypto';
import { mkdir, readdir, readFile, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { AppError, isAppError } from '../errors.js';
import { deidentifyDicom } from '../formats/dicom/deidentify.js';

/** A UID under 2.25 derived from a keyed hash: the same original and secret always give the same replacement. */
export function derivedUid(secret: string, uid: string): string {
  const digest = createHmac('sha256', secret).update(uid).digest();
  // 2.25 takes a 128-bit integer (PS3.5 B.2); the first 16 bytes of the HMAC, as a decimal.
  return `2.25.${BigInt(`0x${digest.subarray(0, 16).toString('hex')}`).toString()}`;
}

/** A date shift of 1–3650 days back, derived from the secret, so every file of one run shifts alike. */
export function derivedDateShift(secret: string): number {
  const n = createHmac('sha256', secret).update('date-shift').digest().readUInt32BE(0);
  return -(1 + (n % 3650));
}

async function listFiles(p: string): Promise<string[]> {
  const s = await stat(p);
  if (s.isFile()) return [p];
  const out: string[] = [];
  for (const e of (await readdir(p, { withFileTypes: true })).sort((a, b) => a.name.localeCompare(b.name))) {
    const full = path.join(p, e.name);
    if (e.isDirectory()) out.push(...(await listFiles(full)));
    else if (e.isFile()) out.push(full);
  }
  return out;
}

/**
 * `teleread deidentify IN OUT`: PS3.15 Basic Application Level Confidentiality Profile with Retain Longitudinal
 * Temporal Information with Modified Dates and Clean Descriptors. IN and OUT are files, or folders (the tree is
 * mirrored). UIDs and the date shift derive from `--secret`: runs with the same secret give the same study the
 * same replacement UIDs. Without one, a random secret makes the run unlinkable.
 */
export async function deidentifyCommand(
  input: string,
  output: string,
  options: { secret?: string; pseudonym?: string },
): Promise<number> {
  const secret = options.secret ?? randomBytes(32).toString('hex');
  const pseudonym =
    options.pseudonym ?? `ANON-${createHmac('sha256', secret).update('patient').digest('hex').slice(0, 10)}`;
  const dateShiftDays = derivedDateShift(secret);
  const inputIsDir = (await stat(input)).isDirectory();
  let failed = 0;
  for (const file of await listFiles(input)) {
    const target = inputIsDir ? path.join(output, path.relative(input, file)) : output;
    try {
      const result = deidentifyDicom(new Uint8Array(await readFile(file)), {
        mapUid: (uid) => derivedUid(secret, uid),
        pseudonym: { patientName: pseudonym, patientId: pseudonym },
        dateShiftDays,
      });
      await mkdir(path.dirname(target), { recursive: true });
      await writeFile(target, result.bytes);
      console.log(JSON.stringify({ file, out: target, warnings: result.warnings }));
    } catch (err) {
      failed++;
      const e = isAppError(err)
        ? err
        : new AppError('INTERNAL', err instanceof Error ? err.message : String(err));
      console.log(JSON.stringify({ file, error: { code: e.code, message: e.message } }));
    }
  }
  return failed > 0 ? 1 : 0;
}
