/**
 * WFDB FLAC signal files (formats 508, 516 and 524 of signal(5)): each file is a FLAC stream whose channels are
 * the file's signals, in header order, holding the raw ADC values at 8, 16 or 24 bits. Every signal of a FLAC
 * file has the same samples per frame, and each channel carries that many samples per WFDB frame.
 *
 * The decoder is asynchronous (WASM), while the readers in wfdb.ts are synchronous. Rather than fork them, the
 * FLAC files are decoded here and rewritten as the plain format with the same width and the same invalid-sample
 * code (508→80, 516→16, 524→24), so `parseWfdbRecord` / `parseWfdbMultiSegment` read them unchanged.
 */
import type { FLACDecodedAudio } from '@wasm-audio-decoders/flac';
import { AppError } from '../../errors.js';
import { corrupt, unsupported } from './ecg-input.js';
import { MAX_WFDB_SAMPLES, type WfdbHeader, type WfdbSignalSpec } from './wfdb.js';

/** FLAC format → the plain format with the same sample width and invalid code. */
const PLAIN_FORMAT: Record<number, number> = { 508: 80, 516: 16, 524: 24 };

/** FLAC streams hold at most 8 channels. */
const MAX_FLAC_CHANNELS = 8;

/** Input is fed to the decoder in slices this small so that a stream of tiny frames that each expand to 65535
 * samples (a decompression bomb) is stopped after at most a few tens of megabytes, not after it has all
 * been decoded. */
const DECODE_CHUNK_BYTES = 4096;

export function isWfdbFlacFormat(format: number): boolean {
  return PLAIN_FORMAT[format] !== undefined;
}

/** True when a single-segment header stores any signal in a FLAC file. */
export function usesWfdbFlac(header: WfdbHeader): boolean {
  return header.signals.some((s) => s.file !== '~' && isWfdbFlacFormat(s.format));
}

interface FlacGroup {
  file: string;
  bits: number;
  samplesPerFrame: number;
  maxSkew: number;
  signals: WfdbSignalSpec[];
}

function flacGroups(header: WfdbHeader): FlacGroup[] {
  const groups = new Map<string, FlacGroup>();
  for (const signal of header.signals) {
    if (signal.file === '~' || !isWfdbFlacFormat(signal.format)) continue;
    const group = groups.get(signal.file);
    if (!group) {
      groups.set(signal.file, {
        file: signal.file,
        bits: signal.format - 500,
        samplesPerFrame: signal.samplesPerFrame,
        maxSkew: signal.skew,
        signals: [signal],
      });
      continue;
    }
    if (group.bits !== signal.format - 500) {
      throw unsupported(
        `WFDB signal file ${signal.file} mixes formats ${group.bits + 500} and ${signal.format}`,
      );
    }
    if (group.samplesPerFrame !== signal.samplesPerFrame) {
      throw corrupt(`WFDB FLAC signal file ${signal.file}: its signals have different samples per frame`, {
        file: signal.file,
      });
    }
    group.maxSkew = Math.max(group.maxSkew, signal.skew);
    group.signals.push(signal);
  }
  for (const group of groups.values()) {
    if (group.signals.length > MAX_FLAC_CHANNELS) {
      throw corrupt(
        `WFDB FLAC signal file ${group.file} is given ${group.signals.length} signals; FLAC holds at most ${MAX_FLAC_CHANNELS}`,
        { file: group.file },
      );
    }
    // The reference library counts a FLAC file's '+offset' in samples, not bytes; no known record uses it.
    if (group.signals.some((s) => s.byteOffset !== 0)) {
      throw unsupported(`WFDB FLAC signal file ${group.file} has a start offset, which is not supported`, {
        file: group.file,
      });
    }
  }
  return [...groups.values()];
}

/** Decodes one FLAC stream into integer channels, stopping once more than `limit` samples per channel come out. */
async function decodeFlac(
  file: string,
  bytes: Uint8Array,
  bits: number,
  limit: number,
): Promise<Int32Array[]> {
  // Imported on first use: its WebAssembly costs every process that loads inspect.ts about 9 MB otherwise.
  const { FLACDecoder } = await import('@wasm-audio-decoders/flac');
  const decoder = new FLACDecoder();
  const parts: Float32Array[][] = [];
  let decoded = 0;
  let bitDepth = 0;
  const take = (out: FLACDecodedAudio): void => {
    if (out.errors.length > 0) {
      throw corrupt(`WFDB FLAC signal file ${file} does not decode: ${out.errors[0]?.message ?? 'error'}`, {
        file,
      });
    }
    if (out.samplesDecoded > 0) {
      parts.push(out.channelData);
      decoded += out.samplesDecoded;
      bitDepth = out.bitDepth;
    }
    if (decoded > limit) {
      throw corrupt(
        `WFDB FLAC signal file ${file} holds more than the ${limit} samples per signal expected`,
        {
          file,
        },
      );
    }
  };
  try {
    await decoder.ready;
    for (let offset = 0; offset < bytes.byteLength; offset += DECODE_CHUNK_BYTES) {
      take(await decoder.decode(bytes.subarray(offset, offset + DECODE_CHUNK_BYTES)));
    }
    // codec-parser only emits a frame once it sees the next frame's sync, and drops the final frame at flush
    // when that frame happens to contain a sync-like byte pair. A copy of the first frame header after the end
    // confirms the final frame; the copy itself is never decoded (nothing follows it).
    const sentinel = firstFrameHeader(bytes);
    if (sentinel) take(await decoder.decode(sentinel));
  } catch (err) {
    if (err instanceof AppError) throw err;
    throw new AppError('CORRUPT_FILE', `WFDB FLAC signal file ${file} does not decode`, {
      retryable: false,
      cause: err,
      details: { file },
    });
  } finally {
    decoder.free();
  }
  if (decoded === 0) throw corrupt(`WFDB FLAC signal file ${file} holds no FLAC samples`, { file });
  // A FLAC writer may store fewer bits than the format allows (the reference library accepts that), never more.
  if (!(bitDepth === 8 || bitDepth === 16 || bitDepth === 24) || bitDepth > bits) {
    throw corrupt(
      `WFDB FLAC signal file ${file} stores ${bitDepth}-bit samples; format ${bits + 500} allows ${bits}`,
      {
        file,
      },
    );
  }
  const channelCount = parts[0]?.length ?? 0;
  if (parts.some((p) => p.length !== channelCount)) {
    throw corrupt(`WFDB FLAC signal file ${file} changes its channel count mid-stream`, { file });
  }
  // The decoder hands out x / (2^(bitDepth-1) - 1) rounded to float32: the relative error is at most 2^-24, so
  // rounding x' = f × scale recovers x (off by at most 0.25 at 24 bits). A larger miss means the decoder's
  // scaling is not what we assume, and the values would be wrong.
  const scale = 2 ** (bitDepth - 1) - 1;
  const channels = Array.from({ length: channelCount }, () => new Int32Array(decoded));
  let at = 0;
  for (const part of parts) {
    for (let c = 0; c < channelCount; c++) {
      const source = part[c]!;
      const target = channels[c]!;
      for (let i = 0; i < source.length; i++) {
        const scaled = source[i]! * scale;
        const value = Math.round(scaled);
        if (!(Math.abs(value - scaled) <= Math.max(Math.abs(value), 1) * 2 ** -23)) {
          throw corrupt(`WFDB FLAC signal file ${file}: decoded sample ${at + i} is not an integer`, {
            file,
          });
        }
        target[at + i] = value;
      }
    }
    at += part[0]?.length ?? 0;
  }
  return channels;
}

/** The first frame header (16 bytes from the first frame) after the metadata blocks, or undefined when the
 * stream is not 'fLaC' + metadata + a frame. */
function firstFrameHeader(bytes: Uint8Array): Uint8Array | undefined {
  if (bytes.byteLength < 4 || String.fromCharCode(...bytes.subarray(0, 4)) !== 'fLaC') return undefined;
  let offset = 4;
  while (offset + 4 <= bytes.byteLength) {
    const last = (bytes[offset]! & 0x80) !== 0;
    offset += 4 + ((bytes[offset + 1]! << 16) | (bytes[offset + 2]! << 8) | bytes[offset + 3]!);
    if (last) break;
  }
  if (offset + 16 > bytes.byteLength || bytes[offset] !== 0xff || (bytes[offset + 1]! & 0xfe) !== 0xf8) {
    return undefined;
  }
  return bytes.slice(offset, offset + 16);
}

/**
 * Decodes the FLAC signal files of a single-segment header: for each file name, one Int32Array of ADC values per
 * signal (FLAC channel) in header order, `samplesPerFrame` values per frame. CORRUPT_FILE when a file is missing,
 * does not decode, or has a channel count or length that does not match the header.
 */
export async function decodeWfdbFlacFiles(
  header: WfdbHeader,
  files: Record<string, Uint8Array>,
): Promise<Record<string, Int32Array[]>> {
  const result: Record<string, Int32Array[]> = {};
  const known = header.sampleCount ? header.sampleCount : undefined;
  for (const group of flacGroups(header)) {
    const bytes = files[group.file];
    if (!bytes) throw corrupt(`WFDB signal file ${group.file} is missing`, { file: group.file });
    const channelCount = group.signals.length;
    const limit =
      known === undefined
        ? Math.floor(MAX_WFDB_SAMPLES / channelCount)
        : (known + group.maxSkew) * group.samplesPerFrame;
    if (limit > MAX_WFDB_SAMPLES / channelCount) {
      throw corrupt(`WFDB record too large: ${group.file} needs more than ${MAX_WFDB_SAMPLES} samples`, {
        file: group.file,
      });
    }
    const channels = await decodeFlac(group.file, bytes, group.bits, limit);
    if (channels.length !== channelCount) {
      throw corrupt(
        `WFDB FLAC signal file ${group.file} has ${channels.length} channels; the header gives it ${channelCount} signals`,
        { file: group.file, channels: channels.length, signals: channelCount },
      );
    }
    const length = channels[0]!.length;
    if (length % group.samplesPerFrame !== 0) {
      throw corrupt(`WFDB FLAC signal file ${group.file} ends in the middle of a frame`, {
        file: group.file,
      });
    }
    if (known !== undefined && length < known * group.samplesPerFrame) {
      throw corrupt(
        `WFDB FLAC signal file ${group.file} is truncated: ${known} frames need ${known * group.samplesPerFrame} samples per signal, the file has ${length}`,
        { file: group.file, expectedSamples: known * group.samplesPerFrame, actualSamples: length },
      );
    }
    result[group.file] = channels;
  }
  return result;
}

/** Interleaves decoded channels frame by frame into the bytes of `format` (80, 16 or 24, little-endian). */
function encodePlain(channels: Int32Array[], samplesPerFrame: number, format: number): Uint8Array {
  const perSample = format === 80 ? 1 : format === 16 ? 2 : 3;
  const total = channels.length * (channels[0]?.length ?? 0);
  const out = new Uint8Array(total * perSample);
  const frames = (channels[0]?.length ?? 0) / samplesPerFrame;
  let position = 0;
  for (let frame = 0; frame < frames; frame++) {
    for (const channel of channels) {
      for (let j = 0; j < samplesPerFrame; j++) {
        const value = channel[frame * samplesPerFrame + j]!;
        if (format === 80) {
          out[position++] = value + 128;
        } else {
          out[position++] = value & 0xff;
          out[position++] = (value >> 8) & 0xff;
          if (format === 24) out[position++] = (value >> 16) & 0xff;
        }
      }
    }
  }
  return out;
}

/**
 * Returns the header and files with every FLAC signal file decoded and rewritten in the plain format of the
 * same width (508→80, 516→16, 524→24), ready for the synchronous readers of wfdb.ts. Other files pass through.
 */
export async function transcodeWfdbFlac(
  header: WfdbHeader,
  files: Record<string, Uint8Array>,
): Promise<{ header: WfdbHeader; files: Record<string, Uint8Array> }> {
  const decoded = await decodeWfdbFlacFiles(header, files);
  const plainFiles = { ...files };
  const samplesPerFrame = new Map(header.signals.map((s) => [s.file, s.samplesPerFrame]));
  const formats = new Map(header.signals.map((s) => [s.file, s.format]));
  for (const [file, channels] of Object.entries(decoded)) {
    plainFiles[file] = encodePlain(channels, samplesPerFrame.get(file)!, PLAIN_FORMAT[formats.get(file)!]!);
  }
  const signals = header.signals.map((s) =>
    s.file !== '~' && isWfdbFlacFormat(s.format) ? { ...s, format: PLAIN_FORMAT[s.format]! } : s,
  );
  return { header: { ...header, signals }, files: plainFiles };
}

/** The `acquisition.wfdbFormats` value for the given (original) headers, so a transcoded record still reports
 * the formats it was stored in. */
export function wfdbFormatList(headers: WfdbHeader[]): string {
  return [...new Set(headers.flatMap((h) => h.signals.map((s) => s.format)))].join(',');
}
