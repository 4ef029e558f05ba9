import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { addSite } from '../../src/cli/admin-commands.js';
import type { Db } from '../../src/db/database.js';
import { createUuidDerivedUid, getOrCreateReplacementUids, getOriginalUid } from '../../src/db/uid-remaps.js';
import { isAppError } from '../../src/errors.js';
import { collectUids, deidentifyDicom } from '../../src/formats/dicom/deidentify.js';
import { CONFIDENTIALITY_PROFILE, resolveProfileAction } from '../../src/formats/dicom/deidentify-profile.js';
import { corpusPath, hasCorpus, loadTruth } from '../corpus.js';
import { imageElements, writeDicom } from '../helpers/dicom-writer.js';
import { createTestContext } from '../helpers/test-context.js';

function onPath(tool: string): boolean {
  return (process.env.PATH ?? '')
    .split(path.delimiter)
    .some((dir) => dir !== '' && existsSync(path.join(dir, tool)));
}

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs a tool to the end whatever its exit status; output is read as latin1 so that value bytes compare as
 * bytes whatever the file's character set. */
function run(tool: string, args: string[]): Promise<Run> {
  return new Promise((resolve) => {
    execFile(
      tool,
      args,
      { encoding: 'latin1', maxBuffer: 64 << 20, timeout: 120_000 },
      (err, stdout, stderr) => {
        const code = err ? (typeof err.code === 'number' ? err.code : 1) : 0;
        resolve({ code, stdout, stderr });
      },
    );
  });
}

interface DumpEntry {
  tag: number;
  vr: string;
  value: string;
  /** The line as dcmdump printed it, for sequences ("(Sequence with undefined length #=0)"). */
  line: string;
  /** 0 for the top level; dcmdump indents two spaces per level. */
  depth: number;
}

/** dcmdump lines → entries at every depth. Values in [] are unwrapped; "(no value available)" is empty. */
function parseDump(dump: string): DumpEntry[] {
  const entries: DumpEntry[] = [];
  for (const line of dump.split('\n')) {
    const m = /^\s*\(([0-9a-f]{4}),([0-9a-f]{4})\) (\S\S) (.*)$/.exec(line);
    if (!m) continue;
    const rest = m[4]!;
    const comment = rest.lastIndexOf(' #');
    let value = (comment >= 0 ? rest.slice(0, comment) : rest).trim();
    if (value.startsWith('[') && value.endsWith(']')) value = value.slice(1, -1);
    else if (value === '(no value available)') value = '';
    const depth = (line.length - line.trimStart().length) / 2;
    entries.push({ tag: Number.parseInt(`${m[1]}${m[2]}`, 16), vr: m[3]!, value, line, depth });
  }
  return entries;
}

async function dump(file: string): Promise<Run> {
  // -M leaves Pixel Data unloaded; +uc shows values stored as UN with their real VR, in input and output alike.
  return run('dcmdump', ['-M', '+L', '-Un', '+uc', file]);
}

/** dciodvfy's errors, with values taken out so that a replaced UID or shifted date does not read as new. */
async function verifierErrors(file: string): Promise<string[]> {
  const { stdout, stderr } = await run('dciodvfy', [file]);
  const lines = `${stdout}\n${stderr}`.split('\n').filter((l) => /^Error|Assertion/.test(l));
  const normalised = lines.map((l) =>
    l
      .replace(/\[[^\]]*\]/g, '')
      .replace(/= <[^>]*>/g, '')
      .replace(/<[0-9.]+>/g, '<UID>')
      // A UID quoted bare, as in "… but have IMAGE ReferencedSOPInstanceUID 2.25.…".
      .replace(/UID [0-9.]+/g, 'UID <UID>')
      .trim(),
  );
  return [...new Set(normalised)].sort();
}

function shiftDa(yyyymmdd: string, days: number): string | undefined {
  if (!/^\d{8}$/.test(yyyymmdd)) return undefined;
  const d = new Date(`${yyyymmdd.slice(0, 4)}-${yyyymmdd.slice(4, 6)}-${yyyymmdd.slice(6, 8)}T00:00:00Z`);
  if (Number.isNaN(d.getTime())) return undefined;
  d.setUTCDate(d.getUTCDate() + days);
  return d.toISOString().slice(0, 10).replace(/-/g, '');
}

const SHIFT = -37;
const PSEUDONYM = { patientName: 'CASE^0007', patientId: 'TR-0007' };
const DUMMIES = new Set(['ANONYMIZED', 'ANONYMIZED^', PSEUDONYM.patientName, PSEUDONYM.patientId]);
const TEXT_VRS = new Set(['PN', 'LO', 'SH', 'ST', 'LT', 'UT', 'UC']);
const IDENTIFYING_VRS = new Set([...TEXT_VRS, 'UI', 'DA', 'DT', 'AE', 'CS']);
const PATIENT_NAME = 0x00100010;
const PATIENT_ID = 0x00100020;

const hasTools = onPath('dcmdump') && onPath('dciodvfy');

describe.runIf(hasCorpus && hasTools)('corpus files de-identified, checked with dcmdump and dciodvfy', () => {
  const truth = loadTruth();
  const files = Object.keys(truth)
    .filter((rel) => truth[rel]?.kind === 'dicom')
    .sort();
  let dir: string;
  const outcome = { deidentified: 0, refused: 0 };

  beforeAll(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'teleread-deid-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  test.each(files)('%s', async (rel) => {
    const input = corpusPath(rel);
    const bytes = new Uint8Array(await readFile(input));
    const before = await dump(input);
    const inputEntries = parseDump(before.stdout);
    const hasSopInstanceUid = inputEntries.some(
      (e) => (e.tag === 0x00080018 || e.tag === 0x00020003) && e.value,
    );
    const mapping = new Map<string, string>();
    const mapUid = (uid: string) => {
      let replacement = mapping.get(uid);
      if (!replacement) {
        replacement = createUuidDerivedUid();
        mapping.set(uid, replacement);
      }
      return replacement;
    };

    let result: ReturnType<typeof deidentifyDicom>;
    try {
      result = deidentifyDicom(bytes, { mapUid, pseudonym: PSEUDONYM, dateShiftDays: SHIFT });
    } catch (err) {
      // Refusing is right only for what DCMTK cannot read either, or what has no SOP Instance UID to link back.
      expect(isAppError(err) ? err.code : err).toBe('CORRUPT_FILE');
      expect(before.code !== 0 || !hasSopInstanceUid).toBe(true);
      outcome.refused++;
      return;
    }
    outcome.deidentified++;
    const output = path.join(dir, rel.replace(/\//g, '__'));
    await writeFile(output, result.bytes);

    const after = await dump(output);
    expect(after.code).toBe(0);
    expect(after.stderr).not.toMatch(/^E:/m);
    const outputEntries = parseDump(after.stdout);

    // Nothing private survives, and the de-identification is declared.
    expect(outputEntries.filter((e) => (e.tag >>> 16) % 2 === 1).map((e) => e.tag.toString(16))).toEqual([]);
    expect(outputEntries.find((e) => e.tag === PATIENT_NAME)?.value).toBe(PSEUDONYM.patientName);
    expect(outputEntries.find((e) => e.tag === 0x00120062)?.value).toBe('YES');
    expect(outputEntries.find((e) => e.tag === 0x00280303)?.value).toBe('MODIFIED');

    // The values that only identifying attributes hold must be gone from the whole output.
    const keptValues = new Set(
      inputEntries
        .filter((e) => !resolveProfileAction(e.tag) && e.tag !== PATIENT_NAME && e.tag !== PATIENT_ID)
        .map((e) => e.value),
    );
    const identifying = new Set(
      inputEntries
        .filter((e) => {
          // Sequence and binary lines show dcmdump's description or bytes, not a value that could identify.
          if (!IDENTIFYING_VRS.has(e.vr)) return false;
          if (e.tag === PATIENT_NAME || e.tag === PATIENT_ID) return true;
          const action = resolveProfileAction(e.tag);
          return (
            action?.attribute !== undefined &&
            ['remove', 'empty', 'dummy', 'replaceUid'].includes(action.operation)
          );
        })
        .map((e) => e.value)
        .filter((v) => v.length >= 4 && !DUMMIES.has(v) && ![...keptValues].some((kept) => kept.includes(v))),
    );
    for (const e of outputEntries) {
      for (const v of identifying) {
        const leaked = e.value === v || (TEXT_VRS.has(e.vr) && v.length >= 6 && e.value.includes(v));
        expect(leaked, `${e.line.trim()} holds an identifying value`).toBe(false);
      }
    }

    // Each row of Table E.1-1 present in the input, checked by its action.
    const isDirectory = inputEntries.some((e) => e.tag === 0x00041220);
    for (const row of CONFIDENTIALITY_PROFILE) {
      const inValues = inputEntries.filter((e) => e.tag === row.tag);
      if (inValues.length === 0 || row.tag === PATIENT_NAME || row.tag === PATIENT_ID || row.tag >>> 16 === 2)
        continue;
      const outValues = outputEntries.filter((e) => e.tag === row.tag);
      const action = resolveProfileAction(row.tag)!;
      const label = `${row.keyword} (${action.operation})`;
      const originals = new Set(inValues.map((e) => e.value).filter((v) => v !== '' && !DUMMIES.has(v)));
      switch (action.operation) {
        case 'remove':
          expect(outValues, label).toEqual([]);
          break;
        case 'empty':
          for (const e of outValues) {
            if (e.vr === 'SQ') expect(e.line, label).toMatch(/#=0\)/);
            // A DICOMDIR's records hold Type 1 keys, where Z gives a dummy (PS3.15 allows either).
            else if (isDirectory) expect(e.value === '' || !originals.has(e.value), label).toBe(true);
            else expect(e.value, label).toBe('');
          }
          break;
        case 'dummy':
        case 'replaceUid':
          if (row.vr !== 'SQ') for (const e of outValues) expect(originals.has(e.value), label).toBe(false);
          break;
        case 'shiftDates':
          if (row.vr === 'DA' || row.vr === 'DT') {
            // ACR-NEMA dates (1997.03.18) come out in the current form.
            const expected = new Set(
              [...originals].map((v) => shiftDa(v.replace(/\./g, '').slice(0, 8), SHIFT)),
            );
            for (const e of outValues.filter((o) => o.value !== '')) {
              expect(expected.has(e.value.slice(0, 8)), `${label}: ${e.value}`).toBe(true);
            }
            // A valid date at the top level is never lost on the way.
            const top = inValues.find((e) => e.depth === 0);
            const shifted = top && shiftDa(top.value.replace(/\./g, '').slice(0, 8), SHIFT);
            if (shifted) {
              expect(outValues.find((e) => e.depth === 0)?.value.slice(0, 8), label).toBe(shifted);
            }
          }
          break;
        case 'clean':
          if (row.vr !== 'SQ')
            for (const e of outValues)
              for (const v of identifying) expect(e.value.includes(v), label).toBe(false);
          break;
        case 'keepReplaceUids':
          break;
      }
    }

    // No new dciodvfy error.
    const errorsBefore = await verifierErrors(input);
    const errorsAfter = await verifierErrors(output);
    expect(errorsAfter.filter((e) => !errorsBefore.includes(e))).toEqual([]);
  });

  // Runs after the files (tests run in order): refusing is allowed per file, so make sure it stayed the exception.
  test('most of the corpus is de-identified, not refused', () => {
    expect(outcome.deidentified + outcome.refused).toBe(files.length);
    expect(outcome.deidentified).toBeGreaterThan(files.length * 0.9);
  });
});

describe('uid_remaps in PostgreSQL', () => {
  let t: Awaited<ReturnType<typeof createTestContext>>;
  let db: Db;

  beforeAll(async () => {
    t = await createTestContext();
    db = t.ctx.db;
    await addSite(db, { id: 'deid-site', jurisdiction: 'KE' });
  });
  afterAll(async () => {
    await t?.dispose();
  });

  async function newCase(studyInstanceUid: string): Promise<string> {
    const row = await db
      .insertInto('cases')
      .values({
        site_id: 'deid-site',
        kind: 'imaging',
        priority: 'routine',
        study_instance_uid: studyInstanceUid,
        metadata: {},
      })
      .returning('id')
      .executeTakeFirstOrThrow();
    return row.id;
  }

  test('one replacement per original UID and case, under 2.25, stable across calls', async () => {
    const caseId = await newCase('1.2.3.4');
    const first = await getOrCreateReplacementUids(db, caseId, ['1.2.3.4', '1.2.3.5', '1.2.3.4']);
    expect([...first.keys()].sort()).toEqual(['1.2.3.4', '1.2.3.5']);
    for (const replacement of first.values()) {
      expect(replacement).toMatch(/^2\.25\.\d+$/);
      expect(replacement.length).toBeLessThanOrEqual(64);
    }
    expect(new Set(first.values()).size).toBe(2);
    const again = await getOrCreateReplacementUids(db, caseId, ['1.2.3.5', '1.2.3.6']);
    expect(again.get('1.2.3.5')).toBe(first.get('1.2.3.5'));
    expect(again.get('1.2.3.6')).toMatch(/^2\.25\./);
    // Another case gets its own replacements for the same originals.
    const other = await getOrCreateReplacementUids(db, await newCase('1.2.3.4.1'), ['1.2.3.4']);
    expect(other.get('1.2.3.4')).not.toBe(first.get('1.2.3.4'));
    expect(await getOrCreateReplacementUids(db, caseId, [])).toEqual(new Map());
  });

  test('workers racing on one study agree on every mapping', async () => {
    const caseId = await newCase('9.8.7');
    const uids = Array.from({ length: 40 }, (_, i) => `9.8.7.${i}`);
    const results = await Promise.all(
      Array.from({ length: 8 }, (_, k) =>
        getOrCreateReplacementUids(db, caseId, uids.slice(k * 3, k * 3 + 20)),
      ),
    );
    const merged = new Map<string, string>();
    for (const result of results) {
      for (const [original, replacement] of result) {
        expect(merged.get(original) ?? replacement).toBe(replacement);
        merged.set(original, replacement);
      }
    }
    const stored = await db.selectFrom('uid_remaps').selectAll().where('case_id', '=', caseId).execute();
    expect(stored).toHaveLength(merged.size);
    for (const row of stored) expect(merged.get(row.original_uid)).toBe(row.replacement_uid);
  });

  test('batches larger than one statement', async () => {
    const caseId = await newCase('5.5');
    const uids = Array.from({ length: 12_001 }, (_, i) => `5.5.${i}`);
    const result = await getOrCreateReplacementUids(db, caseId, uids);
    expect(result.size).toBe(uids.length);
    expect(new Set(result.values()).size).toBe(uids.length);
  });

  test('a de-identified study links back to its original case', async () => {
    const study = '1.2.826.0.1.3680043.2.1125.7.1';
    const caseId = await newCase(study);
    const instances = [1, 2].map((n) =>
      writeDicom(
        imageElements({
          rows: 1,
          columns: 1,
          bitsAllocated: 8,
          extra: [
            { tag: 0x00080018, vr: 'UI', value: `${study}.${n}` },
            { tag: 0x0020000d, vr: 'UI', value: study },
            { tag: 0x0020000e, vr: 'UI', value: `${study}.100` },
            { tag: 0x00100010, vr: 'PN', value: 'ORIGINAL^PATIENT' },
          ],
        }),
      ),
    );
    const studyUids = new Set<string>();
    for (const bytes of instances) {
      // As the pipeline does it: create the mappings in one round trip, then de-identify synchronously.
      const mapping = await getOrCreateReplacementUids(db, caseId, collectUids(bytes));
      const result = deidentifyDicom(bytes, {
        mapUid: (uid) => mapping.get(uid) ?? '',
        pseudonym: PSEUDONYM,
        dateShiftDays: SHIFT,
      });
      studyUids.add(result.replacedUids[study]!);
    }
    expect(studyUids.size).toBe(1);
    const [replacementStudy] = [...studyUids];
    expect(await getOriginalUid(db, replacementStudy!)).toEqual({ caseId, originalUid: study });
    expect(await getOriginalUid(db, '2.25.1')).toBeUndefined();
  });
});
