/**
 * Philips Sierra ECG XML (PageWriter, HeartStart; document versions 1.03, 1.04, 1.04.01) into the canonical
 * Ecg. Pure.
 *
 * The waveform is one base64 payload of XLI chunks, one chunk per lead. A chunk is an 8-byte header (int32 LE
 * compressed size, int16 unused, int16 first delta) then LZW with 10-bit codes; the LZW output holds 16-bit
 * delta codes with all high bytes first and all low bytes second; deltas are a second-order prediction with a
 * bias of 64. Leads III, aVR, aVL and aVF are stored as residuals from I and II and rebuilt after decoding.
 */
import type { PatientInfo } from '../types.js';
import { type Ecg, type EcgMeasurementName, normalizeLeadName, STANDARD_LEADS } from './ecg.js';
import {
  assertSampleBudget,
  corrupt,
  decodeBase64,
  toNumber,
  uniqueNames,
  unsupported,
} from './ecg-input.js';
import { child, parseXmlDocument, path, textAt, type XmlElement } from './xml.js';

const WHAT = 'Philips XML';
const LZW_BITS = 10;
const LZW_MAX_CODE = (1 << LZW_BITS) - 2;

/**
 * LZW decoder of the XLI variant: 10-bit codes read most significant bit first, a 256-entry initial
 * dictionary, no clear code, the dictionary frozen when full, code 1023 ends the stream. Output is capped at
 * `maxOutput` bytes; a code that is not yet defined (beyond the next free one) is corrupt data.
 */
export function lzwDecompress(input: Uint8Array, maxOutput: number, where: string): Uint8Array {
  const prefix = new Int16Array(LZW_MAX_CODE + 1);
  const suffix = new Uint8Array(LZW_MAX_CODE + 1);
  const lengths = new Uint16Array(LZW_MAX_CODE + 1);
  for (let i = 0; i < 256; i++) {
    prefix[i] = -1;
    suffix[i] = i;
    lengths[i] = 1;
  }
  let out = new Uint8Array(Math.min(maxOutput, Math.max(1024, input.length * 4)));
  let outLength = 0;
  let nextCode = 256;
  let previous = -1;
  let buffer = 0;
  let bitCount = 0;
  let offset = 0;
  const firstByte = (code: number): number => {
    let c = code;
    // Chains are at most LZW_MAX_CODE long: each entry's prefix is an older entry.
    while (prefix[c]! >= 0) c = prefix[c]!;
    return suffix[c]!;
  };
  for (;;) {
    while (bitCount <= 24 && offset < input.length) {
      buffer = (buffer | (input[offset++]! << (24 - bitCount))) >>> 0;
      bitCount += 8;
    }
    if (bitCount < LZW_BITS) break;
    const code = buffer >>> (32 - LZW_BITS);
    buffer = (buffer << LZW_BITS) >>> 0;
    bitCount -= LZW_BITS;
    if (code > LZW_MAX_CODE) break;
    if (code > nextCode || (code === nextCode && previous < 0)) {
      throw corrupt(`${where}: LZW code ${code} before it is defined (next is ${nextCode})`);
    }
    if (code === nextCode) {
      // The string is the previous one plus its own first byte (the KwKwK case).
      prefix[nextCode] = previous;
      suffix[nextCode] = firstByte(previous);
      lengths[nextCode] = lengths[previous]! + 1;
      nextCode++;
    } else if (previous >= 0 && nextCode <= LZW_MAX_CODE) {
      prefix[nextCode] = previous;
      suffix[nextCode] = firstByte(code);
      lengths[nextCode] = lengths[previous]! + 1;
      nextCode++;
    }
    const length = lengths[code]!;
    if (outLength + length > out.length) {
      if (outLength + length > maxOutput) {
        throw corrupt(`${where}: decompresses to more than the ${maxOutput} bytes a lead can hold`);
      }
      const grown = new Uint8Array(Math.min(maxOutput, Math.max(out.length * 2, outLength + length)));
      grown.set(out.subarray(0, outLength));
      out = grown;
    }
    let c = code;
    for (let i = outLength + length - 1; i >= outLength; i--) {
      out[i] = suffix[c]!;
      c = prefix[c]!;
    }
    outLength += length;
    previous = code;
  }
  return out.subarray(0, outLength);
}

/** One XLI lead chunk's bytes → sample values (digital units). */
function decodeXliChunk(
  bytes: Uint8Array,
  firstDelta: number,
  maxSamples: number,
  where: string,
): Int32Array {
  const output = lzwDecompress(bytes, maxSamples * 2 + 2, where);
  const count = output.length >> 1;
  const values = new Int32Array(count);
  for (let i = 0; i < count; i++) values[i] = (((output[i]! << 8) | output[i + count]!) << 16) >> 16;
  if (count < 2) return values;
  let x = values[0]!;
  let y = values[1]!;
  let last = firstDelta;
  for (let i = 2; i < count; i++) {
    const z = 2 * y - x - last;
    last = values[i]! - 64;
    values[i] = z;
    x = y;
    y = z;
  }
  return values;
}

/** Splits the payload into its chunks and decodes each. Bounded: every chunk advances by at least 8 bytes. */
export function decodeXli(payload: Uint8Array, maxLeads: number, maxSamples: number): Int32Array[] {
  const view = new DataView(payload.buffer, payload.byteOffset, payload.byteLength);
  const leads: Int32Array[] = [];
  let offset = 0;
  while (offset < payload.length && leads.length < maxLeads) {
    const where = `${WHAT}: XLI chunk ${leads.length} at byte ${offset}`;
    if (offset + 8 > payload.length) throw corrupt(`${where}: chunk header is cut short`);
    const size = view.getInt32(offset, true);
    const firstDelta = view.getInt16(offset + 6, true);
    if (size < 0 || offset + 8 + size > payload.length) {
      throw corrupt(`${where}: chunk size ${size} runs past the end of the data (${payload.length} bytes)`);
    }
    leads.push(
      decodeXliChunk(payload.subarray(offset + 8, offset + 8 + size), firstDelta, maxSamples, where),
    );
    offset += 8 + size;
  }
  return leads;
}

/** The device stores III, aVR, aVL and aVF as residuals of what I and II predict (integer arithmetic as the
 * device does it); this rebuilds them in place. */
function rebuildLimbLeads(leads: Int32Array[]): void {
  const [i, ii, iii, avr, avl, avf] = leads;
  if (!i || !ii || !iii || !avr || !avl || !avf) return;
  const n = Math.min(i.length, ii.length, iii.length, avr.length, avl.length, avf.length);
  for (let s = 0; s < n; s++) {
    iii[s] = ii[s]! - i[s]! - iii[s]!;
    avr[s] = -avr[s]! - Math.floor((i[s]! + ii[s]!) / 2);
    avl[s] = Math.floor((i[s]! - iii[s]!) / 2) - avl[s]!;
    avf[s] = Math.floor((ii[s]! + iii[s]!) / 2) - avf[s]!;
  }
}

const MEASUREMENTS: [string, EcgMeasurementName][] = [
  ['heartrate', 'ventricularRate'],
  ['atrialrate', 'atrialRate'],
  ['rrint', 'rrInterval'],
  ['ppint', 'ppInterval'],
  ['print', 'prInterval'],
  ['qrsdur', 'qrsDuration'],
  ['qtint', 'qtInterval'],
  ['qtcb', 'qtcInterval'],
  ['pfrontaxis', 'pAxis'],
  ['qrsfrontaxis', 'qrsAxis'],
  ['tfrontaxis', 'tAxis'],
];

function readPatient(root: XmlElement): PatientInfo {
  const general = path(root, 'patient/generalpatientdata');
  const patient: PatientInfo = {};
  const id = textAt(general, 'patientid');
  const name = [textAt(general, 'name/lastname'), textAt(general, 'name/firstname')]
    .filter(Boolean)
    .join('^');
  const birthDate = textAt(general, 'age/dateofbirth');
  const sex = textAt(general, 'sex');
  if (id) patient.id = id;
  if (name) patient.name = name;
  if (birthDate) patient.birthDate = birthDate;
  if (sex) patient.sex = /^m/i.test(sex) ? 'M' : /^f/i.test(sex) ? 'F' : sex;
  return patient;
}

/**
 * Parses a Philips Sierra ECG XML document (restingecgdata). Versions other than 1.03 / 1.04 / 1.04.xx and
 * waveforms not XLI-compressed base64 are UNSUPPORTED_FORMAT; a payload that decodes to fewer samples than
 * durationperchannel says is CORRUPT_FILE.
 */
export function parsePhilipsXml(bytes: Uint8Array): Ecg {
  const root = parseXmlDocument(bytes, WHAT);
  if (root.name.toLowerCase() !== 'restingecgdata') {
    throw unsupported(`${WHAT}: root element is <${root.name}>, not <restingecgdata>`);
  }
  const version = textAt(root, 'documentinfo/documentversion') ?? '';
  if (!/^1\.0[34](\.\d+)?$/.test(version))
    throw unsupported(`${WHAT}: document version '${version}' is not supported`);
  const signal = path(root, 'dataacquisition/signalcharacteristics');
  const waveform = path(root, 'waveforms/parsedwaveforms');
  if (!waveform) throw corrupt(`${WHAT}: no waveforms/parsedwaveforms element`);
  const a = waveform.attributes;
  const compression =
    version === '1.03' ? (a.compressflag === 'True' ? a.compressmethod : 'none') : a.compression;
  if (a.dataencoding !== 'Base64' || compression !== 'XLI') {
    throw unsupported(
      `${WHAT}: waveform encoding '${a.dataencoding ?? ''}' with compression '${compression ?? ''}' is not supported (Base64 + XLI only)`,
    );
  }
  const samplingFrequency = toNumber(a.samplespersecond) ?? toNumber(textAt(signal, 'samplingrate'));
  const resolution =
    toNumber(a.resolution) ??
    toNumber(textAt(signal, 'signalresolution')) ??
    toNumber(textAt(signal, 'resolution'));
  const leadCount = toNumber(a.numberofleads) ?? toNumber(textAt(signal, 'numberchannelsvalid'));
  const durationMs = toNumber(a.durationperchannel);
  if (!samplingFrequency || !(samplingFrequency > 0)) throw corrupt(`${WHAT}: no sampling rate`);
  if (!resolution || !(resolution > 0)) throw corrupt(`${WHAT}: no signal resolution (µV per unit)`);
  if (!leadCount || !Number.isInteger(leadCount) || leadCount < 1 || leadCount > 64) {
    throw corrupt(
      `${WHAT}: lead count '${a.numberofleads ?? textAt(signal, 'numberchannelsvalid') ?? ''}' is not usable`,
    );
  }
  if (durationMs === undefined || !(durationMs > 0)) throw corrupt(`${WHAT}: no durationperchannel`);
  const sampleCount = Math.round((durationMs * samplingFrequency) / 1000);
  assertSampleBudget(leadCount, sampleCount, WHAT);

  const labels = a.leadlabels ? a.leadlabels.trim().split(/\s+/) : [...STANDARD_LEADS];
  const decoded = decodeXli(decodeBase64(waveform.text, `${WHAT} parsedwaveforms`), leadCount, sampleCount);
  if (decoded.length < leadCount) {
    throw corrupt(`${WHAT}: ${leadCount} leads announced, the payload holds ${decoded.length} XLI chunks`);
  }
  decoded.forEach((lead, i) => {
    if (lead.length < sampleCount) {
      throw corrupt(
        `${WHAT}: lead ${labels[i] ?? i} decodes to ${lead.length} samples, durationperchannel says ${sampleCount}`,
      );
    }
  });
  if (['III', 'aVR', 'aVL', 'aVF'].every((name, k) => normalizeLeadName(labels[k + 2] ?? '') === name)) {
    rebuildLimbLeads(decoded);
  }
  const names = uniqueNames(decoded.map((_, i) => normalizeLeadName(labels[i] ?? `Channel ${i + 1}`)));
  const leads = decoded.map((values, i) => {
    const samplesUv = new Float32Array(sampleCount);
    for (let s = 0; s < sampleCount; s++) samplesUv[s] = values[s]! * resolution;
    return { name: names[i]!, samplesUv };
  });

  const acquisition: Record<string, string | number> = { documentVersion: version, compression: 'XLI' };
  const acquisitionType = textAt(signal, 'acquisitiontype');
  if (acquisitionType) acquisition.acquisitionType = acquisitionType;
  const notch = toNumber(textAt(signal, 'acsetting'));
  if (notch) acquisition.mainsFrequency = notch;
  const hipass = toNumber(a.hipass);
  const lowpass = toNumber(a.lowpass);
  if (hipass !== undefined) acquisition.highPassFilterFrequency = hipass;
  if (lowpass !== undefined) acquisition.lowPassFilterFrequency = lowpass;

  const ecg: Ecg = {
    leads,
    samplingFrequency,
    sampleCount,
    durationSeconds: sampleCount / samplingFrequency,
    acquisition,
    patient: readPatient(root),
    source: { format: 'philips-xml' },
  };
  const acquired = child(root, 'dataacquisition');
  const date = acquired?.attributes.date;
  const time = acquired?.attributes.time;
  if (date && /^\d{4}-\d{2}-\d{2}$/.test(date)) ecg.startTime = time ? `${date}T${time}` : date;
  const machine = textAt(acquired, 'machine');
  ecg.device = machine ? `Philips ${machine}` : 'Philips';
  const global =
    path(root, 'measurements/globalmeasurements') ?? path(root, 'internalmeasurements/globalmeasurements');
  const measurements: Partial<Record<EcgMeasurementName, number>> = {};
  for (const [tag, name] of MEASUREMENTS) {
    const value = toNumber(textAt(global, tag));
    // Philips writes "Invalid" or out-of-range sentinels for measurements it could not make.
    if (value !== undefined && Math.abs(value) < 10000) measurements[name] = value;
  }
  if (Object.keys(measurements).length > 0) ecg.measurements = measurements;
  return ecg;
}
