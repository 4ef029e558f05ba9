/**
 * Specific Character Set (0008,0005) → text (PS3.3 C.12.1.1.2, PS3.5 section 6.1 and annexes H, I, J, K).
 *
 * Only PN, SH, LO, ST, LT, UT and UC are affected; every other string VR is the default repertoire. Sets without
 * code extensions (a single-byte set, ISO_IR 192, GB18030, GBK) decode the whole value at once. Everything else
 * runs an ISO 2022 state machine: escape sequences designate G0 or G1, and each run of bytes is transcoded to the
 * packed form a WHATWG decoder knows (JIS X 0208/0212 and half-width katakana → EUC-JP, KS X 1001 → EUC-KR,
 * GB 2312 → GBK). Bad bytes become U+FFFD and a warning; nothing here throws.
 */

/** The VRs whose values are decoded with the Specific Character Set (PS3.5 6.1.2.3). */
export const CHARSET_VRS: ReadonlySet<string> = new Set(['PN', 'SH', 'LO', 'ST', 'LT', 'UT', 'UC']);

export interface DecodeTextOptions {
  /** The value's VR: it decides which delimiters reset the code extension state (PS3.5 6.1.2.5.3). Defaults to
   * LO. */
  vr?: string | undefined;
  /** Called for each oddity met while decoding. Messages describe bytes and offsets, never the text. */
  onWarning?: ((message: string) => void) | undefined;
}

type G0 = 'ascii' | 'jis-x-0201-romaji' | 'jis-x-0208' | 'jis-x-0212';
/** A G1 set, named by the decoder that reads its bytes (with the high bit set) or by a set of our own. */
type G1 =
  | 'none'
  | 'iso-8859-1'
  | 'iso-8859-2'
  | 'iso-8859-3'
  | 'iso-8859-4'
  | 'iso-8859-5'
  | 'iso-8859-6'
  | 'iso-8859-7'
  | 'iso-8859-8'
  | 'iso-8859-9'
  | 'iso-8859-15'
  | 'tis-620'
  | 'jis-x-0201-katakana'
  | 'ks-x-1001'
  | 'gb2312';

interface Repertoire {
  readonly name: string;
  readonly g0?: G0;
  readonly g1?: G1;
  /** Multi-byte sets without code extensions: the whole value goes to this decoder. */
  readonly whole?: string;
}

/** Keyed by the normalised Defined Term (see termKey): 'ISO_IR 100' and 'ISO 2022 IR 100' are one entry because
 * they differ only in whether extensions may follow. */
const REPERTOIRES: Readonly<Record<string, Repertoire>> = {
  IR6: { name: 'ISO_IR 6', g0: 'ascii' },
  IR100: { name: 'ISO_IR 100', g1: 'iso-8859-1' },
  IR101: { name: 'ISO_IR 101', g1: 'iso-8859-2' },
  IR109: { name: 'ISO_IR 109', g1: 'iso-8859-3' },
  IR110: { name: 'ISO_IR 110', g1: 'iso-8859-4' },
  IR144: { name: 'ISO_IR 144', g1: 'iso-8859-5' },
  IR127: { name: 'ISO_IR 127', g1: 'iso-8859-6' },
  IR126: { name: 'ISO_IR 126', g1: 'iso-8859-7' },
  IR138: { name: 'ISO_IR 138', g1: 'iso-8859-8' },
  IR148: { name: 'ISO_IR 148', g1: 'iso-8859-9' },
  IR203: { name: 'ISO_IR 203', g1: 'iso-8859-15' },
  IR166: { name: 'ISO_IR 166', g1: 'tis-620' },
  IR13: { name: 'ISO_IR 13', g0: 'jis-x-0201-romaji', g1: 'jis-x-0201-katakana' },
  IR87: { name: 'ISO 2022 IR 87', g0: 'jis-x-0208' },
  IR159: { name: 'ISO 2022 IR 159', g0: 'jis-x-0212' },
  IR149: { name: 'ISO 2022 IR 149', g1: 'ks-x-1001' },
  IR58: { name: 'ISO 2022 IR 58', g1: 'gb2312' },
  IR192: { name: 'ISO_IR 192', whole: 'utf-8' },
  GB18030: { name: 'GB18030', whole: 'gb18030' },
  GBK: { name: 'GBK', whole: 'gbk' },
};

/** Spellings met in files that are not Defined Terms but whose meaning is plain. */
const ALIASES: Readonly<Record<string, string>> = {
  'UTF-8': 'IR192',
  UTF8: 'IR192',
  GB2312: 'IR58',
  'ISO-8859-1': 'IR100',
  ISO_8859_1: 'IR100',
};

/** 'ISO_IR 100', 'ISO-IR 100', 'ISO_IR100' and 'ISO 2022 IR 100' → 'IR100'. */
function termKey(term: string): string {
  const trimmed = term.trim().toUpperCase();
  const ir = /^ISO[ _-]?(?:2022[ _-]?)?IR[ _-]?(\d+)$/.exec(trimmed);
  if (ir) return `IR${Number(ir[1])}`;
  return ALIASES[trimmed] ?? trimmed;
}

interface CharacterSet {
  /** The set value 1 names (the default repertoire when value 1 is empty). */
  readonly initial: Repertoire;
  readonly unknownTerms: readonly string[];
  /** True when value 1 is a set with no code extensions but more values follow. */
  readonly ignoredExtensions: boolean;
}

const DEFAULT_SET: CharacterSet = {
  initial: REPERTOIRES.IR6!,
  unknownTerms: [],
  ignoredExtensions: false,
};

const parsedSets = new Map<string, CharacterSet>();
const MAX_CACHED_SETS = 64;

function parseCharacterSet(specificCharacterSet: string | undefined): CharacterSet {
  if (!specificCharacterSet?.trim()) return DEFAULT_SET;
  const cached = parsedSets.get(specificCharacterSet);
  if (cached) return cached;
  const terms = specificCharacterSet.split('\\').map((t) => t.trim());
  const unknownTerms = terms.filter((t) => t.length > 0 && REPERTOIRES[termKey(t)] === undefined);
  const first = terms[0] ? REPERTOIRES[termKey(terms[0])] : undefined;
  const set: CharacterSet = {
    initial: first ?? REPERTOIRES.IR6!,
    unknownTerms,
    ignoredExtensions: first?.whole !== undefined && terms.length > 1,
  };
  // Values come from files, so the cache is bounded; real archives use a handful of distinct values.
  if (parsedSets.size >= MAX_CACHED_SETS) parsedSets.clear();
  parsedSets.set(specificCharacterSet, set);
  return set;
}

/** WHATWG labels of the sets value 1 can name, for text written without escape sequences. ISO 8859-1 is
 * 'latin1' (windows-1252 to WHATWG, which differs only in the C1 controls). */
const VALUE_1_LABEL: Readonly<Record<string, string>> = {
  'iso-8859-1': 'latin1',
  'tis-620': 'windows-874',
  'iso-8859-9': 'windows-1254',
};

/**
 * The WHATWG label of the character set that text may be written in without escape sequences (the set value 1
 * names), for writers such as de-identification. A default value 1 gives 'latin1' when alone (files without a
 * set often hold Latin-1), 'iso-2022-jp' when Japanese extensions follow, and 'us-ascii' when others follow:
 * only ASCII is safe there.
 */
export function decoderLabelForCharset(specificCharacterSet: string | undefined): string {
  const set = parseCharacterSet(specificCharacterSet);
  const initial = set.initial;
  if (initial.whole) return initial.whole;
  if (initial.g1 === 'jis-x-0201-katakana') return 'shift_jis';
  if (initial.g1 && initial.g1 !== 'none') return VALUE_1_LABEL[initial.g1] ?? initial.g1;
  const terms = (specificCharacterSet ?? '').split('\\').map(termKey);
  if (terms.length < 2) return 'latin1';
  return terms.includes('IR87') || terms.includes('IR159') ? 'iso-2022-jp' : 'us-ascii';
}

type Decoder = InstanceType<typeof TextDecoder>;

const strictDecoders = new Map<string, Decoder>();
const lenientDecoders = new Map<string, Decoder>();

function decoderFor(label: string, fatal: boolean): Decoder {
  const cache = fatal ? strictDecoders : lenientDecoders;
  let decoder = cache.get(label);
  if (!decoder) {
    decoder = new TextDecoder(label, { fatal });
    cache.set(label, decoder);
  }
  return decoder;
}

/** WHATWG's 'latin1' is windows-1252, which reads 0x80–0x9F as printable characters; ISO 8859-1 has C1
 * controls there, so it is decoded by code point. */
function decodeLatin1(bytes: Uint8Array): string {
  let out = '';
  for (let i = 0; i < bytes.length; i += 8192) {
    out += String.fromCharCode(...bytes.subarray(i, Math.min(bytes.length, i + 8192)));
  }
  return out;
}

interface Sink {
  warn(message: string): void;
}

function decodeWith(label: string, bytes: Uint8Array, sink: Sink, at: number): string {
  if (label === 'iso-8859-1') return decodeLatin1(bytes);
  try {
    return decoderFor(label, true).decode(bytes);
  } catch {
    sink.warn(`bytes ${at}–${at + bytes.length - 1} are not valid ${label}; replaced with U+FFFD`);
    return decoderFor(label, false).decode(bytes);
  }
}

const ESC = 0x1b;

/** Escape sequences (the bytes after ESC) of PS3.3 tables C.12-3 and C.12-4, plus ESC $ @ (JIS C 6226-1978,
 * which JIS X 0208 superseded and ISO-2022-JP writers still emit). */
const G0_ESCAPES: ReadonlyArray<readonly [string, G0]> = [
  ['(B', 'ascii'],
  ['(J', 'jis-x-0201-romaji'],
  ['$B', 'jis-x-0208'],
  ['$@', 'jis-x-0208'],
  ['$(D', 'jis-x-0212'],
];
const G1_ESCAPES: ReadonlyArray<readonly [string, G1]> = [
  [')I', 'jis-x-0201-katakana'],
  ['$)C', 'ks-x-1001'],
  ['$)A', 'gb2312'],
  ['-A', 'iso-8859-1'],
  ['-B', 'iso-8859-2'],
  ['-C', 'iso-8859-3'],
  ['-D', 'iso-8859-4'],
  ['-L', 'iso-8859-5'],
  ['-G', 'iso-8859-6'],
  ['-F', 'iso-8859-7'],
  ['-H', 'iso-8859-8'],
  ['-M', 'iso-8859-9'],
  ['-T', 'tis-620'],
  ['-b', 'iso-8859-15'],
];

function matchEscape(bytes: Uint8Array, at: number): { length: number; g0?: G0; g1?: G1 } | undefined {
  const matches = (seq: string) => {
    if (at + 1 + seq.length > bytes.length) return false;
    for (let k = 0; k < seq.length; k++) if (bytes[at + 1 + k] !== seq.charCodeAt(k)) return false;
    return true;
  };
  for (const [seq, g0] of G0_ESCAPES) if (matches(seq)) return { length: 1 + seq.length, g0 };
  for (const [seq, g1] of G1_ESCAPES) if (matches(seq)) return { length: 1 + seq.length, g1 };
  return undefined;
}

/** Bytes before which the value 1 set is active again (PS3.5 6.1.2.5.3): every control character but ESC, the
 * value delimiter for multi-valued VRs, and the component and group delimiters of PN. */
function isResetByte(byte: number, vr: string): boolean {
  if (byte < 0x20) return byte !== ESC;
  if (byte === 0x5c) return vr !== 'ST' && vr !== 'LT' && vr !== 'UT';
  if (byte === 0x5e || byte === 0x3d) return vr === 'PN';
  return false;
}

const isGraphic94 = (byte: number | undefined) => byte !== undefined && byte >= 0x21 && byte <= 0x7e;

/** The WHATWG decoder for bytes of a G1 set as they stand (high bit set); EUC-KR and GBK are exactly
 * ASCII + KS X 1001 or GB 2312 in G1. Katakana is not here: it needs EUC-JP's 0x8E prefix. */
function g1Label(g1: G1): string {
  switch (g1) {
    case 'ks-x-1001':
      return 'euc-kr';
    case 'gb2312':
      return 'gbk';
    case 'tis-620':
      return 'windows-874';
    default:
      return g1;
  }
}

class RunDecoder {
  private out = '';
  private label = 'iso-8859-1';
  private bytes: number[] = [];
  private start = 0;

  constructor(private readonly sink: Sink) {}

  /** ASCII is the same in every decoder used here, so it joins whatever run is open. */
  ascii(byte: number, at: number): void {
    if (this.bytes.length === 0) this.start = at;
    this.bytes.push(byte);
  }

  push(label: string, at: number, ...bytes: number[]): void {
    if (label !== this.label) {
      this.flush();
      this.label = label;
    }
    if (this.bytes.length === 0) this.start = at;
    this.bytes.push(...bytes);
  }

  text(s: string): void {
    this.flush();
    this.out += s;
  }

  flush(): void {
    if (this.bytes.length === 0) return;
    this.out += decodeWith(this.label, Uint8Array.from(this.bytes), this.sink, this.start);
    this.bytes = [];
  }

  result(): string {
    this.flush();
    return this.out;
  }
}

function decodeIso2022(bytes: Uint8Array, set: CharacterSet, vr: string, sink: Sink): string {
  // A multi-byte G0 set (IR 87, IR 159) named as value 1 cannot be the default repertoire, or no delimiter could
  // be read; it is invoked only by its escape sequence.
  const initialG0: G0 = set.initial.g0 === 'jis-x-0201-romaji' ? 'jis-x-0201-romaji' : 'ascii';
  const initialG1: G1 = set.initial.g1 ?? 'none';
  let g0: G0 = initialG0;
  let g1: G1 = initialG1;
  const run = new RunDecoder(sink);
  let outsideRepertoire = false;
  let i = 0;
  while (i < bytes.length) {
    const byte = bytes[i]!;
    if (byte === ESC) {
      const designation = matchEscape(bytes, i);
      if (!designation) {
        sink.warn(`unknown escape sequence at byte ${i}; ignored`);
        i++;
        continue;
      }
      if (designation.g0) g0 = designation.g0;
      if (designation.g1) g1 = designation.g1;
      i += designation.length;
      continue;
    }
    const multiByteG0 = g0 === 'jis-x-0208' || g0 === 'jis-x-0212';
    if (multiByteG0 && isGraphic94(byte)) {
      const second = bytes[i + 1];
      if (isGraphic94(second)) {
        if (g0 === 'jis-x-0212') run.push('euc-jp', i, 0x8f, byte | 0x80, second! | 0x80);
        else run.push('euc-jp', i, byte | 0x80, second! | 0x80);
        i += 2;
        continue;
      }
      // A lone byte: the writer probably forgot to switch back before a delimiter.
      if (!isResetByte(byte, vr)) {
        sink.warn(`incomplete two-byte character at byte ${i}; replaced with U+FFFD`);
        run.text('\uFFFD');
        i++;
        continue;
      }
      sink.warn(`delimiter at byte ${i} inside a two-byte set; read as a delimiter`);
    }
    if (isResetByte(byte, vr)) {
      g0 = initialG0;
      // Conformant writers designate G1 again after each delimiter. Writers that do not still mean the set they
      // named last, so it is kept when value 1 has no G1 of its own.
      if (initialG1 !== 'none') g1 = initialG1;
      run.ascii(byte, i);
      i++;
      continue;
    }
    if (byte < 0x80) {
      run.ascii(byte, i);
      i++;
      continue;
    }
    if (g1 === 'none') {
      outsideRepertoire = true;
      run.push('iso-8859-1', i, byte);
    } else if (g1 === 'jis-x-0201-katakana') {
      if (byte >= 0xa1 && byte <= 0xdf) run.push('euc-jp', i, 0x8e, byte);
      else {
        sink.warn(`byte ${i} is not JIS X 0201 katakana; replaced with U+FFFD`);
        run.text('\uFFFD');
      }
    } else {
      run.push(g1Label(g1), i, byte);
    }
    i++;
  }
  if (outsideRepertoire) {
    sink.warn(`bytes above 0x7F with no G1 set designated by ${set.initial.name}; read as ISO 8859-1`);
  }
  return run.result();
}

function hasHighByte(bytes: Uint8Array): boolean {
  for (const b of bytes) if (b >= 0x80) return true;
  return false;
}

function hasEscape(bytes: Uint8Array): boolean {
  return bytes.includes(ESC);
}

/** The default repertoire is ASCII, yet many writers put UTF-8 or Latin-1 into files that declare no set.
 * Valid UTF-8 almost never arises by chance from Latin-1 text, so it is tried first. */
function decodeUndeclared(bytes: Uint8Array, sink: Sink): string {
  try {
    const text = decoderFor('utf-8', true).decode(bytes);
    sink.warn('bytes above 0x7F in the default repertoire; read as UTF-8');
    return text;
  } catch {
    sink.warn('bytes above 0x7F in the default repertoire; read as ISO 8859-1');
    return decodeLatin1(bytes);
  }
}

/**
 * Decodes a text value (all its values, backslashes kept) under a Specific Character Set value. Trailing padding
 * (spaces, NUL) is removed; leading spaces are kept because they matter in ST, LT and UT.
 */
export function decodeDicomText(
  bytes: Uint8Array,
  specificCharacterSet: string | undefined,
  options: DecodeTextOptions = {},
): string {
  const vr = options.vr ?? 'LO';
  const warned = new Set<string>();
  const sink: Sink = {
    warn(message) {
      if (warned.has(message) || !options.onWarning) return;
      warned.add(message);
      options.onWarning(message);
    },
  };
  const set = parseCharacterSet(specificCharacterSet);
  for (const term of set.unknownTerms) sink.warn(`unknown Specific Character Set term '${term}'`);
  if (set.ignoredExtensions) {
    sink.warn(`${set.initial.name} allows no code extensions; later Specific Character Set values ignored`);
  }
  let text: string;
  if (set.initial.whole) {
    text = decodeWith(set.initial.whole, bytes, sink, 0);
  } else if (!hasEscape(bytes)) {
    if (!hasHighByte(bytes)) text = decodeLatin1(bytes);
    else if (set.initial === REPERTOIRES.IR6) text = decodeUndeclared(bytes, sink);
    else text = decodeIso2022(bytes, set, vr, sink);
  } else {
    text = decodeIso2022(bytes, set, vr, sink);
  }
  return text.replace(/[ \0]+$/, '');
}
