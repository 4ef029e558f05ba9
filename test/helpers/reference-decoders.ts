/**
 * The JPEG 2000 and HTJ2K reference decoders (OpenJPEG's opj_decompress, OpenJPH's ojph_expand) as judges of a
 * codestream Teleread calls corrupt: DCMTK's build decodes neither, so the corpus truth cannot say whether a
 * frame is broken. A refusal is justified when the reference decoder refuses the same bytes too.
 */
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import type { DicomInstance } from '../../src/formats/dicom/parse-dicom.js';
import { getEncapsulatedFrame } from '../../src/formats/dicom/pixel-data.js';
import { describeTransferSyntax } from '../../src/formats/dicom/transfer-syntax.js';
import { onPath } from './dcmtk.js';

const run = promisify(execFile);

/** The decoder that judges a syntax's codestreams, when it is on PATH, and the file it writes. OpenJPEG writes
 * raw samples, each component's in turn, little endian; OpenJPH writes PNM (its raw writer refuses colour, and it
 * takes .pgm or .ppm, not .pnm), which holds no sign. */
function referenceDecoder(instance: DicomInstance) {
  const codec = describeTransferSyntax(instance.transferSyntaxUid).codec;
  if (codec === 'jpeg-2000' && onPath('opj_decompress'))
    return { tool: 'opj_decompress', input: 'frame.j2k', output: 'frame.rawl', pnm: false };
  if (codec === 'htj2k' && onPath('ojph_expand')) {
    const output = (instance.samplesPerPixel ?? 1) === 3 ? 'frame.ppm' : 'frame.pgm';
    return { tool: 'ojph_expand', input: 'frame.j2c', output, pnm: true };
  }
  return undefined;
}

/** Frame `frameIndex` through the syntax's reference decoder: its output file, 'refused' when it exits with an
 * error, or undefined when the syntax has no reference decoder here. */
async function runReferenceDecoder(
  instance: DicomInstance,
  frameIndex: number,
): Promise<{ file: Buffer; pnm: boolean } | 'refused' | undefined> {
  const decoder = referenceDecoder(instance);
  if (!decoder) return undefined;
  const dir = await mkdtemp(path.join(tmpdir(), 'teleread-refdec-'));
  try {
    const input = path.join(dir, decoder.input);
    const output = path.join(dir, decoder.output);
    await writeFile(input, getEncapsulatedFrame(instance, frameIndex));
    await run(decoder.tool, ['-i', input, '-o', output], { timeout: 60_000 });
    return { file: await readFile(output), pnm: decoder.pnm };
  } catch {
    return 'refused';
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** Whether the reference decoder for the instance's syntax refuses frame `frameIndex` (0-based): true when it
 * exits with an error, false when it decodes it or there is no such decoder for the syntax. */
export async function referenceDecoderRefuses(instance: DicomInstance, frameIndex: number): Promise<boolean> {
  return (await runReferenceDecoder(instance, frameIndex)) === 'refused';
}

/**
 * Frame `frameIndex` as the syntax's reference decoder decodes it, pixel-interleaved like Teleread's decoded
 * frames, or undefined when there is no reference decoder for the syntax, it refuses the codestream, or its
 * output cannot hold the samples (OpenJPH's PNM and signed data).
 */
export async function referenceDecode(
  instance: DicomInstance,
  frameIndex: number,
  layout: { samplesPerPixel: number; bitsAllocated: number; signed: boolean },
): Promise<Int32Array | undefined> {
  if (layout.signed && referenceDecoder(instance)?.pnm) return undefined;
  const decoded = await runReferenceDecoder(instance, frameIndex);
  if (decoded === undefined || decoded === 'refused') return undefined;
  return decoded.pnm
    ? readPnm(decoded.file)
    : readPlanarRaw(decoded.file, layout.samplesPerPixel, layout.bitsAllocated > 8, layout.signed);
}

/** Component planes, little endian, into interleaved samples. */
function readPlanarRaw(raw: Buffer, spp: number, wide: boolean, signed: boolean): Int32Array {
  const width = wide ? 2 : 1;
  const perComponent = raw.length / width / spp;
  const out = new Int32Array(perComponent * spp);
  for (let c = 0; c < spp; c++) {
    for (let i = 0; i < perComponent; i++) {
      const at = (c * perComponent + i) * width;
      out[i * spp + c] = wide
        ? signed
          ? raw.readInt16LE(at)
          : raw.readUInt16LE(at)
        : signed
          ? raw.readInt8(at)
          : raw.readUInt8(at);
    }
  }
  return out;
}

/** Binary PGM or PPM (P5/P6): interleaved samples, big endian above a maximum of 255. */
function readPnm(file: Buffer): Int32Array {
  const header = /^P[56]\s+(\d+)\s+(\d+)\s+(\d+)\s/.exec(file.subarray(0, 64).toString('latin1'));
  if (!header) throw new Error('not a binary PNM');
  const wide = Number(header[3]) > 255;
  const data = file.subarray(header[0].length);
  const out = new Int32Array(data.length / (wide ? 2 : 1));
  for (let i = 0; i < out.length; i++) out[i] = wide ? data.readUInt16BE(2 * i) : data[i]!;
  return out;
}
