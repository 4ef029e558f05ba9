import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { connect, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { addSite } from '../../src/cli/admin-commands.js';
import type { Context } from '../../src/context.js';
import { createPart10Header, isValidUid } from '../../src/dimse/create-part10-header.js';
import { createPduGuard } from '../../src/dimse/create-pdu-guard.js';
import { negotiatePresentationContext } from '../../src/dimse/negotiate-presentation-context.js';
import { type DimseServer, startDimseServer } from '../../src/dimse/start-dimse-server.js';
import { type DicomInstance, parseDicom } from '../../src/formats/dicom/parse-dicom.js';
import { getEncapsulatedFrame } from '../../src/formats/dicom/pixel-data.js';
import { type RunningWorkers, runWorkers } from '../../src/pipeline/run-worker.js';
import { corpusPath, hasCorpus, loadTruth } from '../corpus.js';
import { waitFor } from '../helpers/api-client.js';
import { imageElements, writeDicom } from '../helpers/dicom-writer.js';
import { createTestContext } from '../helpers/test-context.js';

const HOST = '127.0.0.1';
const MR_IMAGE_STORAGE = '1.2.840.10008.5.1.4.1.1.4';

let t: Awaited<ReturnType<typeof createTestContext>>;
let ctx: Context;
let workers: RunningWorkers;
let server: DimseServer;
let scratch: string;

beforeAll(async () => {
  t = await createTestContext();
  ctx = t.ctx;
  scratch = await mkdtemp(path.join(tmpdir(), 'teleread-dimse-'));
  await addSite(ctx.db, { id: 'clinic-a', jurisdiction: 'KE' });
  await addSite(ctx.db, { id: 'clinic-b', jurisdiction: 'KE' });
  // Set directly: the comparison is on trimmed titles, so a padded entry must still match.
  await ctx.db
    .updateTable('sites')
    .set({ ae_titles: ['CLINIC1'] })
    .where('id', '=', 'clinic-a')
    .execute();
  await ctx.db
    .updateTable('sites')
    .set({ ae_titles: ['  CLINICB  ', 'OTHER'] })
    .where('id', '=', 'clinic-b')
    .execute();
  workers = await runWorkers(ctx);
  server = await startDimseServer(ctx, { port: 0, host: HOST });
});

afterAll(async () => {
  await server?.close();
  await workers?.close();
  await t?.dispose();
  if (scratch) await rm(scratch, { recursive: true, force: true });
});

interface ToolResult {
  code: number | null;
  output: string;
}

/** Runs a dcmtk tool with a kill timer, so a hung association fails the test instead of stalling the suite. */
function runTool(cmd: string, args: string[], timeoutMs = 30_000): Promise<ToolResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (d: Buffer) => {
      output += d.toString();
    });
    child.stderr.on('data', (d: Buffer) => {
      output += d.toString();
    });
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code: signal ? null : code, output });
    });
  });
}

/** dcmtk's own timeouts too: connect, ACSE and DIMSE messages. */
const TIMEOUTS = ['-to', '10', '-ta', '10', '-td', '20'];

function echo(callingAe: string, calledAe = 'TELEREAD', port = server.port) {
  return runTool('echoscu', ['-v', ...TIMEOUTS, '-aet', callingAe, '-aec', calledAe, HOST, String(port)]);
}

/**
 * An association profile with one presentation context per (SOP class, transfer syntax) of the files, each
 * proposing only that syntax, so storescu sends every file as it is encoded (no conversion) in one association.
 */
async function ownSyntaxProfile(pairs: Array<{ sopClassUid: string; transferSyntaxUid: string }>) {
  const unique = [...new Map(pairs.map((p) => [`${p.sopClassUid}|${p.transferSyntaxUid}`, p])).values()];
  const lines = [
    '[[TransferSyntaxes]]',
    ...unique.flatMap((p, i) => [`[TS${i + 1}]`, `TransferSyntax1 = ${p.transferSyntaxUid}`]),
    '[[PresentationContexts]]',
    '[OwnSyntax]',
    ...unique.map((p, i) => `PresentationContext${i + 1} = ${p.sopClassUid}\\TS${i + 1}`),
    '[[Profiles]]',
    '[OwnSyntax]',
    'PresentationContexts = OwnSyntax',
    '',
  ];
  const file = path.join(scratch, `profile-${unique.length}-${Date.now()}.cfg`);
  await writeFile(file, lines.join('\n'));
  return ['-xf', file, 'OwnSyntax'];
}

function storescu(callingAe: string, options: string[], files: string[], port = server.port) {
  return runTool('storescu', [
    '-v',
    ...TIMEOUTS,
    ...options,
    '-aet',
    callingAe,
    '-aec',
    'TELEREAD',
    HOST,
    String(port),
    ...files,
  ]);
}

function countMatches(text: string, pattern: RegExp): number {
  return text.match(new RegExp(pattern.source, 'g'))?.length ?? 0;
}

/** The value bytes of Pixel Data (for encapsulated syntaxes: the item sequence, fragments and all). */
function pixelDataSha256(instance: DicomInstance): string | null {
  const el = instance.dataSet.elements.x7fe00010;
  if (!el) return null;
  const bytes = instance.dataSet.byteArray.subarray(el.dataOffset, el.dataOffset + el.length);
  return createHash('sha256').update(bytes).digest('hex');
}

/** The bytes after the file meta (group 0002 length at offset 140), i.e. the data set as it went over the wire. */
function dataSetSha256(file: Uint8Array): string {
  const metaEnd = 144 + new DataView(file.buffer, file.byteOffset).getUint32(140, true);
  return createHash('sha256').update(file.subarray(metaEnd)).digest('hex');
}

/** The value dcmtk reads for one attribute, as an independent check of what Teleread stored. */
async function dcmdumpValue(file: string, tag: string): Promise<string | undefined> {
  const r = await runTool('dcmdump', ['-q', '-s', '-Un', '+P', tag, file]);
  expect(r.code, r.output).toBe(0);
  return /\[([^\]]*)\]/.exec(r.output)?.[1];
}

async function filesOfUpload(uploadId: string) {
  return ctx.db
    .selectFrom('files')
    .selectAll()
    .where('upload_id', '=', uploadId)
    .orderBy('received_at')
    .execute();
}

async function latestUploadOf(siteId: string) {
  return ctx.db
    .selectFrom('uploads')
    .selectAll()
    .where('site_id', '=', siteId)
    .orderBy('created_at', 'desc')
    .executeTakeFirst();
}

async function countRows(table: 'files' | 'uploads') {
  const row = await ctx.db
    .selectFrom(table)
    .select((eb) => eb.fn.countAll<string>().as('n'))
    .executeTakeFirstOrThrow();
  return Number(row.n);
}

function tinyInstance(sopInstanceUid: string, transferSyntaxUid?: string): Uint8Array {
  const pixels = new Uint8Array(64).map((_, i) => i * 4);
  const elements = imageElements({
    rows: 8,
    columns: 8,
    bitsAllocated: 8,
    pixelData: transferSyntaxUid ? { fragments: [pixels] } : pixels,
    extra: [
      { tag: 0x00080018, vr: 'UI', value: sopInstanceUid },
      { tag: 0x0020000d, vr: 'UI', value: `${sopInstanceUid}.1` },
    ],
  });
  return writeDicom(elements, transferSyntaxUid ? { transferSyntaxUid } : {});
}

/** Every file under the storage folder, temporary ones included. */
async function listObjects(dir = t.env.storageDir): Promise<string[]> {
  const out: string[] = [];
  const entries = await readdir(dir, { withFileTypes: true }).catch(() => []);
  for (const e of entries) {
    const full = path.join(dir, e.name);
    if (e.isDirectory()) out.push(...(await listObjects(full)));
    else out.push(full);
  }
  return out.sort();
}

/**
 * Just enough of PS3.8 to play a misbehaving SCU: an A-ASSOCIATE-RQ, P-DATA-TF PDVs and a C-STORE-RQ command
 * (implicit VR little endian), so the tests can cut an association mid-instance or send a hostile PDU.
 */
const rawPdu = {
  header(type: number, length: number): Buffer {
    const b = Buffer.alloc(6);
    b[0] = type;
    b.writeUInt32BE(length, 2);
    return b;
  },
  item(type: number, body: Buffer): Buffer {
    const b = Buffer.alloc(4);
    b[0] = type;
    b.writeUInt16BE(body.length, 2);
    return Buffer.concat([b, body]);
  },
  associateRq(callingAe: string, calledAe: string, abstractSyntax: string, transferSyntax: string): Buffer {
    const fixed = Buffer.alloc(68, 0);
    fixed.writeUInt16BE(1, 0);
    fixed.write(calledAe.padEnd(16), 4, 'ascii');
    fixed.write(callingAe.padEnd(16), 20, 'ascii');
    const maxLength = Buffer.alloc(4);
    maxLength.writeUInt32BE(16384);
    const body = Buffer.concat([
      fixed,
      rawPdu.item(0x10, Buffer.from('1.2.840.10008.3.1.1.1')),
      rawPdu.item(
        0x20,
        Buffer.concat([
          Buffer.from([1, 0, 0, 0]),
          rawPdu.item(0x30, Buffer.from(abstractSyntax)),
          rawPdu.item(0x40, Buffer.from(transferSyntax)),
        ]),
      ),
      rawPdu.item(
        0x50,
        Buffer.concat([rawPdu.item(0x51, maxLength), rawPdu.item(0x52, Buffer.from('2.25.1'))]),
      ),
    ]);
    return Buffer.concat([rawPdu.header(0x01, body.length), body]);
  },
  pData(command: boolean, last: boolean, data: Buffer): Buffer {
    const pdv = Buffer.alloc(6);
    pdv.writeUInt32BE(data.length + 2, 0);
    pdv[4] = 1;
    pdv[5] = (command ? 1 : 0) | (last ? 2 : 0);
    return Buffer.concat([rawPdu.header(0x04, pdv.length + data.length), pdv, data]);
  },
  cStoreRq(sopClassUid: string, sopInstanceUid: string): Buffer {
    const element = (tag: number, value: Buffer) => {
      const head = Buffer.alloc(8);
      head.writeUInt16LE(0, 0);
      head.writeUInt16LE(tag, 2);
      head.writeUInt32LE(value.length, 4);
      return Buffer.concat([head, value]);
    };
    const uid = (v: string) => Buffer.from(v.length % 2 ? `${v}\0` : v, 'ascii');
    const us = (v: number) => {
      const b = Buffer.alloc(2);
      b.writeUInt16LE(v);
      return b;
    };
    const body = Buffer.concat([
      element(0x0002, uid(sopClassUid)),
      element(0x0100, us(0x0001)),
      element(0x0110, us(1)),
      element(0x0700, us(0)),
      element(0x0800, us(0x0000)),
      element(0x1000, uid(sopInstanceUid)),
    ]);
    const length = Buffer.alloc(4);
    length.writeUInt32LE(body.length);
    return Buffer.concat([element(0x0000, length), body]);
  },
};

/** Connects, sends an A-ASSOCIATE-RQ and resolves with the socket once the A-ASSOCIATE-AC has arrived. */
async function rawAssociation(port: number) {
  const socket = connect(port, HOST);
  socket.on('error', () => undefined);
  const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', resolve);
    socket.once('error', reject);
  });
  const firstPdu = new Promise<number>((resolve) => socket.once('data', (d: Buffer) => resolve(d[0]!)));
  socket.write(rawPdu.associateRq('CLINIC1', 'TELEREAD', MR_IMAGE_STORAGE, '1.2.840.10008.1.2.1'));
  expect(await firstPdu).toBe(0x02);
  return { socket, closed };
}

describe('negotiation and encoding rules', () => {
  test.each([
    [
      'CT storage, explicit LE first',
      '1.2.840.10008.5.1.4.1.1.2',
      ['1.2.840.10008.1.2.1', '1.2.840.10008.1.2'],
      '1.2.840.10008.1.2.1',
    ],
    [
      'the first storable syntax wins',
      MR_IMAGE_STORAGE,
      ['1.2.840.10008.1.2.4.100', '1.2.840.10008.1.2.4.90', '1.2.840.10008.1.2'],
      '1.2.840.10008.1.2.4.90',
    ],
    ['HTJ2K', '1.2.840.10008.5.1.4.1.1.7', ['1.2.840.10008.1.2.4.203'], '1.2.840.10008.1.2.4.203'],
    ['RLE', '1.2.840.10008.5.1.4.1.1.6.1', ['1.2.840.10008.1.2.5'], '1.2.840.10008.1.2.5'],
    ['JPEG 2000 Part 2', '1.2.840.10008.5.1.4.1.1.2', ['1.2.840.10008.1.2.4.93'], '1.2.840.10008.1.2.4.93'],
    [
      'deflated image frames',
      '1.2.840.10008.5.1.4.1.1.2',
      ['1.2.840.10008.1.2.8.1'],
      '1.2.840.10008.1.2.8.1',
    ],
    [
      'encapsulated uncompressed',
      '1.2.840.10008.5.1.4.1.1.2',
      ['1.2.840.10008.1.2.1.98'],
      '1.2.840.10008.1.2.1.98',
    ],
    ['deflated SR', '1.2.840.10008.5.1.4.1.1.88.22', ['1.2.840.10008.1.2.1.99'], '1.2.840.10008.1.2.1.99'],
    ['ECG waveform', '1.2.840.10008.5.1.4.1.1.9.1.1', ['1.2.840.10008.1.2'], '1.2.840.10008.1.2'],
    [
      'NUL-padded UIDs from the wire',
      `${MR_IMAGE_STORAGE}\0`,
      ['1.2.840.10008.1.2.1\0'],
      '1.2.840.10008.1.2.1',
    ],
    ['verification', '1.2.840.10008.1.1', ['1.2.840.10008.1.2'], '1.2.840.10008.1.2'],
  ])('accepts %s', (_name, abstract, proposed, expected) => {
    expect(negotiatePresentationContext(abstract, proposed)).toEqual({
      result: 'accept',
      transferSyntaxUid: expected,
    });
  });

  test.each([
    ['MPEG-2 video', MR_IMAGE_STORAGE, ['1.2.840.10008.1.2.4.100'], 'reject-transfer-syntaxes'],
    ['JPEG XL', MR_IMAGE_STORAGE, ['1.2.840.10008.1.2.4.110'], 'reject-transfer-syntaxes'],
    [
      'verification with a compressed syntax',
      '1.2.840.10008.1.1',
      ['1.2.840.10008.1.2.4.50'],
      'reject-transfer-syntaxes',
    ],
    ['nothing proposed', MR_IMAGE_STORAGE, [], 'reject-transfer-syntaxes'],
    ['study root C-FIND', '1.2.840.10008.5.1.4.1.2.2.1', ['1.2.840.10008.1.2'], 'reject-abstract-syntax'],
    ['the storage root itself', '1.2.840.10008.5.1.4.1.1', ['1.2.840.10008.1.2'], 'reject-abstract-syntax'],
    ['a private SOP class', '1.3.46.670589.5.0.1.1', ['1.2.840.10008.1.2'], 'reject-abstract-syntax'],
  ])('rejects %s', (_name, abstract, proposed, expected) => {
    expect(negotiatePresentationContext(abstract, proposed).result).toBe(expected);
  });

  test('the Part 10 header is a file meta dcmtk and Teleread both read', async () => {
    const header = createPart10Header({
      sopClassUid: MR_IMAGE_STORAGE,
      sopInstanceUid: '2.25.123',
      transferSyntaxUid: '1.2.840.10008.1.2',
      sourceAeTitle: 'CLINIC1',
    });
    const dataSet = writeDicom(
      imageElements({ rows: 2, columns: 2, bitsAllocated: 8, pixelData: [1, 2, 3, 4] }),
      {
        encoding: 'implicit-le',
        preamble: false,
        meta: false,
      },
    );
    const file = path.join(scratch, 'header.dcm');
    await writeFile(file, Buffer.concat([header, dataSet]));
    const parsed = parseDicom(new Uint8Array(await readFile(file)));
    expect(parsed.hasFileMeta).toBe(true);
    expect(parsed.transferSyntaxUid).toBe('1.2.840.10008.1.2');
    expect(parsed.rows).toBe(2);
    expect(await dcmdumpValue(file, '0002,0003')).toBe('2.25.123');
    expect(await dcmdumpValue(file, '0002,0016')).toBe('CLINIC1');
    expect(await dcmdumpValue(file, '0002,0012')).toMatch(/^2\.25\.\d+$/);
  });

  test.each([
    ['2.25.123', true],
    ['1.2.840.10008.5.1.4.1.1.4', true],
    ['', false],
    ['1.02.3', false],
    ['1..2', false],
    ['1.2.', false],
    ['1.2.abc', false],
    [`1.${'2'.repeat(64)}`, false],
  ])('isValidUid(%j) is %s', (uid, valid) => {
    expect(isValidUid(uid)).toBe(valid);
  });

  test('the PDU guard follows PDU boundaries across chunks and stops oversized or unknown PDUs', () => {
    const pdu = (type: number, length: number) => {
      const b = new Uint8Array(6 + length);
      b[0] = type;
      new DataView(b.buffer).setUint32(2, length, false);
      return b;
    };
    const guard = createPduGuard(100);
    const stream = Buffer.concat([pdu(0x01, 80), pdu(0x04, 100), pdu(0x05, 4)]);
    // Fed one byte at a time: headers split anywhere must still be read whole.
    for (const byte of stream) expect(guard(Uint8Array.of(byte))).toBeNull();
    expect(guard(pdu(0x04, 101).subarray(0, 6))).toMatch(/exceeds the limit of 100/);
    expect(guard(pdu(0x01, 1))).toMatch(/exceeds/);
    expect(createPduGuard(100)(pdu(0x47, 3))).toMatch(/unknown PDU type 0x47/);
  });
});

describe('C-ECHO and association rules', () => {
  test('a known calling AE title gets C-ECHO success', async () => {
    const r = await echo('CLINIC1');
    expect(r.code, r.output).toBe(0);
    expect(r.output).toMatch(/Received Echo Response \(Success\)/);
  });

  test('a calling AE title is matched after trimming the site list', async () => {
    const r = await echo('CLINICB');
    expect(r.code, r.output).toBe(0);
  });

  test('an unknown calling AE title is rejected as not recognised', async () => {
    const r = await echo('STRANGER');
    expect(r.code).not.toBe(0);
    expect(r.output).toMatch(/Association Rejected/);
    expect(r.output).toMatch(/Rejected Permanent, Source: Service User/);
    expect(r.output).toMatch(/Calling AE Title Not Recognized/);
  });

  test('a wrong called AE title is rejected as not recognised', async () => {
    const r = await echo('CLINIC1', 'SOMEONE_ELSE');
    expect(r.code).not.toBe(0);
    expect(r.output).toMatch(/Called AE Title Not Recognized/);
  });

  test('a calling AE title listed by two sites is rejected rather than guessed', async () => {
    for (const id of ['clinic-c', 'clinic-d']) {
      await addSite(ctx.db, { id, jurisdiction: 'KE' });
      await ctx.db
        .updateTable('sites')
        .set({ ae_titles: ['SHARED'] })
        .where('id', '=', id)
        .execute();
    }
    const r = await echo('SHARED');
    expect(r.code).not.toBe(0);
    expect(r.output).toMatch(/Calling AE Title Not Recognized/);
  });

  test('echo creates no upload', async () => {
    expect(await countRows('uploads')).toBe(0);
  });
});

// The next two groups compare the whole storage folder before and after, so they run before anything is stored
// (the pipeline's workers write artifacts in the background once instances arrive).
describe('instances the SCP cannot take', () => {
  test('a transfer syntax Teleread cannot store is refused at negotiation and nothing is recorded', async () => {
    const file = path.join(scratch, 'mpeg2.dcm');
    await writeFile(file, tinyInstance('2.25.9001', '1.2.840.10008.1.2.4.100'));
    const files = await countRows('files');
    const uploads = await countRows('uploads');
    // -xm: storescu proposes MPEG-2 Main Profile only, for every storage SOP class.
    const r = await storescu('CLINIC1', ['-xm'], [file]);
    expect(r.code).not.toBe(0);
    expect(r.output).toMatch(/No Acceptable Presentation Contexts/);
    expect(await countRows('files')).toBe(files);
    expect(await countRows('uploads')).toBe(uploads);
  });

  test('a storage failure answers 0xA700, records nothing and leaves no object behind', async () => {
    // The same context with a 1 KB byte budget per instance: the store fails part-way through the body.
    const small = await startDimseServer(
      { ...ctx, config: { ...ctx.config, maxUploadBytes: 1024 } },
      { port: 0, host: HOST },
    );
    try {
      const file = path.join(scratch, 'big.dcm');
      const bytes = writeDicom(
        imageElements({
          rows: 64,
          columns: 64,
          bitsAllocated: 8,
          pixelData: new Uint8Array(4096).fill(9),
          extra: [{ tag: 0x00080018, vr: 'UI', value: '2.25.9002' }],
        }),
      );
      await writeFile(file, bytes);
      const files = await countRows('files');
      const uploads = await countRows('uploads');
      const objectsBefore = await listObjects();
      const r = await storescu('CLINIC1', ['-R'], [file], small.port);
      expect(r.code).not.toBe(0);
      expect(r.output).toMatch(/Received Store Response \(Refused: OutOfResources\)/);
      expect(await countRows('files')).toBe(files);
      expect(await countRows('uploads')).toBe(uploads);
      expect(await listObjects()).toEqual(objectsBefore);
    } finally {
      await small.close();
    }
  });
});

describe('misbehaving peers', () => {
  test('an association cut mid-instance records nothing and leaves no temporary object', async () => {
    const files = await countRows('files');
    const uploads = await countRows('uploads');
    const objectsBefore = await listObjects();
    const { socket, closed } = await rawAssociation(server.port);
    socket.write(rawPdu.pData(true, true, rawPdu.cStoreRq(MR_IMAGE_STORAGE, '2.25.9005')));
    // Half a data set, then the connection drops.
    for (let i = 0; i < 8; i++) socket.write(rawPdu.pData(false, false, Buffer.alloc(16_000, i)));
    await waitFor('a temporary object', async () =>
      (await listObjects()).length > objectsBefore.length ? true : undefined,
    );
    socket.destroy();
    await closed;
    await waitFor('the temporary object to go', async () =>
      (await listObjects()).length === objectsBefore.length ? true : undefined,
    );
    expect(await listObjects()).toEqual(objectsBefore);
    expect(await countRows('files')).toBe(files);
    expect(await countRows('uploads')).toBe(uploads);
  });

  test('a PDU longer than the limit closes the connection before its body is read', async () => {
    const { socket, closed } = await rawAssociation(server.port);
    socket.write(rawPdu.header(0x04, 512 * 1024 * 1024));
    socket.write(Buffer.alloc(1024));
    await closed;
    expect(socket.destroyed).toBe(true);
  });

  test('an unknown PDU type closes the connection', async () => {
    const { socket, closed } = await rawAssociation(server.port);
    socket.write(Buffer.from([0x99, 0, 0, 0, 0, 4, 1, 2, 3, 4]));
    await closed;
    expect(socket.destroyed).toBe(true);
  });
});

describe.runIf(hasCorpus)('C-STORE of corpus files in their own transfer syntaxes', () => {
  // One file per transfer syntax dcmtk 3.6.7 can send (it does not know HTJ2K, tested with dcmjs-dimse below).
  const FILES = [
    'dicom/pydicom/CT_small.dcm', // explicit VR little endian
    'dicom/pydicom/MR_small_implicit.dcm', // implicit VR little endian
    'dicom/pydicom/MR_small_bigendian.dcm', // explicit VR big endian
    'dicom/pydicom/image_dfl.dcm', // deflated explicit VR little endian
    'dicom/pydicom/MR_small_RLE.dcm', // RLE lossless
    'dicom/pydicom/SC_rgb_jpeg_dcmtk.dcm', // JPEG baseline
    'dicom/nema-wg04/MR3_JPLY', // JPEG extended
    'dicom/nema-wg04/CT1_JPLL', // JPEG lossless SV1
    'dicom/pydicom/MR_small_jpeg_ls_lossless.dcm', // JPEG-LS lossless
    'dicom/nema-wg04/NM1_JLSN', // JPEG-LS near-lossless
    'dicom/pydicom/MR_small_jp2klossless.dcm', // JPEG 2000 lossless
    'dicom/nema-wg04/CT2_J2KI', // JPEG 2000
  ];
  const truth = loadTruth();
  const sent = FILES.map((rel) => {
    const entry = truth[rel];
    return {
      rel,
      path: corpusPath(rel),
      sopClassUid: String(entry?.SOPClassUID),
      transferSyntaxUid: String(entry?.TransferSyntaxUID),
    };
  });

  test('every file arrives in its own syntax with identical pixel data, in one association and one upload, grouped by study', async () => {
    expect(new Set(sent.map((s) => s.transferSyntaxUid)).size).toBe(FILES.length);
    const r = await storescu(
      'CLINIC1',
      await ownSyntaxProfile(sent),
      sent.map((s) => s.path),
    );
    expect(r.code, r.output).toBe(0);
    expect(countMatches(r.output, /Association Accepted/)).toBe(1);
    expect(countMatches(r.output, /Received Store Response \(Success\)/)).toBe(FILES.length);
    // storescu re-encodes only when the accepted syntax differs; here every file must go as it is.
    for (const line of r.output.split('\n').filter((l) => l.includes('Converting transfer syntax'))) {
      const [from, to] = line.replace(/.*Converting transfer syntax: /, '').split(' -> ');
      expect(from, line).toBe(to);
    }

    const upload = await latestUploadOf('clinic-a');
    expect(upload).toBeDefined();
    const rows = await filesOfUpload(upload!.id);
    expect(rows).toHaveLength(FILES.length);
    expect(await countRows('uploads')).toBe(1);

    const studyOf = new Map<string, string>();
    for (const [i, row] of rows.entries()) {
      // storescu sends in order and each instance is committed before its answer, so row order is send order.
      const original = sent[i]!;
      expect(row.site_id).toBe('clinic-a');
      const bytes = await ctx.storage.getBytes(row.object_key);
      expect(createHash('sha256').update(bytes).digest('hex')).toBe(row.sha256);
      expect(Number(row.bytes)).toBe(bytes.length);

      const storedFile = path.join(scratch, `stored-${i}.dcm`);
      await writeFile(storedFile, bytes);
      expect(await dcmdumpValue(storedFile, '0002,0010'), original.rel).toBe(original.transferSyntaxUid);
      expect(await dcmdumpValue(storedFile, '0002,0002')).toBe(original.sopClassUid);

      const stored = parseDicom(bytes);
      const source = parseDicom(new Uint8Array(await readFile(original.path)));
      expect(stored.transferSyntaxUid, original.rel).toBe(original.transferSyntaxUid);
      expect(stored.sopInstanceUid).toBe(source.sopInstanceUid);
      expect(await dcmdumpValue(storedFile, '0002,0003')).toBe(source.sopInstanceUid);
      expect(stored.studyInstanceUid).toBe(source.studyInstanceUid);
      expect(stored.rows).toBe(source.rows);
      expect(stored.numberOfFrames).toBe(source.numberOfFrames);
      expect(pixelDataSha256(stored), original.rel).toBe(pixelDataSha256(source));
      expect(pixelDataSha256(stored)).not.toBeNull();
      studyOf.set(row.id, source.studyInstanceUid!);
    }

    const ingested = await waitFor('ingest of every stored instance', async () => {
      const now = await filesOfUpload(upload!.id);
      return now.every((f) => f.case_id !== null) ? now : undefined;
    });
    const caseOfStudy = new Map<string, string>();
    for (const f of ingested) {
      const study = studyOf.get(f.id)!;
      const known = caseOfStudy.get(study);
      if (known) expect(f.case_id, `study ${study}`).toBe(known);
      else caseOfStudy.set(study, f.case_id!);
    }
    const cases = await ctx.db
      .selectFrom('cases')
      .select(['id', 'site_id', 'study_instance_uid'])
      .where('id', 'in', [...caseOfStudy.values()])
      .execute();
    expect(cases).toHaveLength(new Set(studyOf.values()).size);
    for (const c of cases) {
      expect(c.site_id).toBe('clinic-a');
      expect(caseOfStudy.get(c.study_instance_uid!)).toBe(c.id);
    }

    const audit = await ctx.db
      .selectFrom('audit_events')
      .select(['action', 'request_id'])
      .where('request_id', '=', upload!.request_id)
      .where('action', 'like', 'upload.%')
      .execute();
    expect(audit).toHaveLength(FILES.length);
    expect(audit.filter((a) => a.action === 'upload.received')).toHaveLength(1);
  });

  test('the calling AE title decides the site', async () => {
    const file = sent[0]!;
    const r = await storescu('CLINICB', await ownSyntaxProfile([file]), [file.path]);
    expect(r.code, r.output).toBe(0);
    const upload = await latestUploadOf('clinic-b');
    const rows = await filesOfUpload(upload!.id);
    expect(rows.map((f) => f.site_id)).toEqual(['clinic-b']);
  });

  test('HTJ2K from another SCU (dcmjs-dimse) is accepted in its own syntax', async () => {
    const rel = 'dicom/pydicom-data/HTJ2K_08_RGB.dcm';
    const { default: dimse } = await import('dcmjs-dimse');
    const before = await countRows('files');
    const status = await new Promise<number | undefined>((resolve, reject) => {
      const client = new dimse.Client();
      const request = new dimse.requests.CStoreRequest(corpusPath(rel));
      let answered: number | undefined;
      request.on('response', (response: InstanceType<typeof dimse.responses.CStoreResponse>) => {
        answered = response.getStatus();
      });
      client.addRequest(request);
      client.on('networkError', (err: Error) => reject(err));
      client.on('closed', () => resolve(answered));
      client.send(HOST, server.port, 'CLINIC1', 'TELEREAD');
    });
    expect(status).toBe(0);
    expect(await countRows('files')).toBe(before + 1);
    const upload = await latestUploadOf('clinic-a');
    const [row] = await filesOfUpload(upload!.id);
    const stored = parseDicom(await ctx.storage.getBytes(row!.object_key));
    const source = parseDicom(new Uint8Array(await readFile(corpusPath(rel))));
    expect(stored.transferSyntaxUid).toBe('1.2.840.10008.1.2.4.203');
    expect(stored.sopInstanceUid).toBe(source.sopInstanceUid);
    // dcmjs re-encodes the data set it sends (its Basic Offset Table is empty where the file has one entry),
    // so the compressed frame is compared rather than the whole Pixel Data element.
    const frame = (instance: DicomInstance) =>
      createHash('sha256').update(getEncapsulatedFrame(instance, 0)).digest('hex');
    expect(frame(stored)).toBe(frame(source));
  });
});

describe('large instances', () => {
  test('a multi-megabyte instance streams through many PDUs and its data set is stored byte for byte', async () => {
    const frames = 6;
    const pixels = new Uint16Array(1024 * 1024 * frames).map((_, i) => (i * 2654435761) >>> 20);
    const bytes = writeDicom(
      imageElements({
        rows: 1024,
        columns: 1024,
        bitsAllocated: 16,
        bitsStored: 12,
        numberOfFrames: frames,
        pixelData: pixels,
        extra: [
          { tag: 0x00080018, vr: 'UI', value: '2.25.9004' },
          { tag: 0x0020000d, vr: 'UI', value: '2.25.9004.1' },
        ],
      }),
    );
    const file = path.join(scratch, 'large.dcm');
    await writeFile(file, bytes);
    const before = (await latestUploadOf('clinic-a'))?.id;
    const r = await storescu('CLINIC1', ['-R', '-xe'], [file], server.port);
    expect(r.code, r.output).toBe(0);
    const upload = await latestUploadOf('clinic-a');
    expect(upload?.id).not.toBe(before);
    const [row] = await filesOfUpload(upload!.id);
    const stored = await ctx.storage.getBytes(row!.object_key);
    expect(stored.length).toBeGreaterThan(12 * 1024 * 1024);
    expect(dataSetSha256(stored)).toBe(dataSetSha256(bytes));
  });
});

describe('shutdown', () => {
  test('close() lets a running association finish, refuses new ones, and releases the port', async () => {
    const own = await startDimseServer(ctx, { port: 0, host: HOST, shutdownGraceMs: 30_000 });
    const file = path.join(scratch, 'repeat.dcm');
    await writeFile(file, tinyInstance('2.25.9003'));
    const repeats = 40;
    const before = (await latestUploadOf('clinic-a'))?.id;
    const running = storescu('CLINIC1', ['-R', '--repeat', String(repeats)], [file], own.port);
    const upload = await waitFor('the first instance', async () => {
      const u = await latestUploadOf('clinic-a');
      return u && u.id !== before ? u : undefined;
    });
    const closing = own.close();
    // The listening socket is closed at once: a new association cannot start.
    const refused = await echo('CLINIC1', 'TELEREAD', own.port);
    expect(refused.code).not.toBe(0);
    const r = await running;
    await closing;
    expect(r.code, r.output).toBe(0);
    expect(countMatches(r.output, /Received Store Response \(Success\)/)).toBe(repeats);
    expect(await filesOfUpload(upload.id)).toHaveLength(repeats);
    await expectPortFree(own.port);
  });

  test('close() aborts an association that outlives the grace period', async () => {
    const own = await startDimseServer(ctx, { port: 0, host: HOST, shutdownGraceMs: 200 });
    const socket = connect(own.port, HOST);
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', resolve);
      socket.once('error', reject);
    });
    const socketClosed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
    socket.on('error', () => undefined);
    const started = Date.now();
    await own.close();
    await socketClosed;
    expect(Date.now() - started).toBeLessThan(5_000);
    await expectPortFree(own.port);
  });
});

async function expectPortFree(port: number): Promise<void> {
  const probe = createServer();
  await new Promise<void>((resolve, reject) => {
    probe.once('error', reject);
    probe.listen(port, HOST, () => resolve());
  });
  await new Promise<void>((resolve) => probe.close(() => resolve()));
}
