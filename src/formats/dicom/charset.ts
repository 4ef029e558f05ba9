/**
 * Specific Character Set (0008,0005) → text decoding (PS3.3 C.12.1.1.2, PS3.5 section 6.1). Single-byte and
 * UTF-8/GB18030/GBK sets are decoded here; ISO 2022 code extensions with escape sequences are decoded with the
 * closest WHATWG decoder (iso-2022-jp for the Japanese sets) and are otherwise left to a later revision.
 */

const DECODER_LABEL: Readonly<Record<string, string>> = {
  IR6: 'latin1',
  IR100: 'latin1',
  IR101: 'iso-8859-2',
  IR109: 'iso-8859-3',
  IR110: 'iso-8859-4',
  IR144: 'iso-8859-5',
  IR127: 'iso-8859-6',
  IR126: 'iso-8859-7',
  IR138: 'iso-8859-8',
  IR148: 'windows-1254',
  IR203: 'iso-8859-15',
  IR13: 'shift_jis',
  IR166: 'windows-874',
  IR192: 'utf-8',
  GB18030: 'gb18030',
  GBK: 'gbk',
};

type Decoder = InstanceType<typeof TextDecoder>;

const decoders = new Map<string, Decoder>();

function decoderFor(label: string): Decoder {
  let decoder = decoders.get(label);
  if (!decoder) {
    decoder = new TextDecoder(label);
    decoders.set(label, decoder);
  }
  return decoder;
}

/** Normalises a Defined Term: 'ISO_IR 100', 'ISO-IR 100' (a common misspelling) and 'ISO 2022 IR 100' → 'IR100'. */
function termKey(term: string): string {
  const trimmed = term.trim().toUpperCase();
  const ir = /IR[ _-]?(\d+)$/.exec(trimmed);
  if (ir) return `IR${ir[1]}`;
  return trimmed;
}

/** The WHATWG decoder label for a Specific Character Set value (its terms separated by backslashes). */
export function decoderLabelForCharset(specificCharacterSet: string | undefined): string {
  if (!specificCharacterSet) return 'latin1';
  const terms = specificCharacterSet.split('\\').map(termKey);
  // A first value that is empty means "default repertoire" with extensions in the further values.
  const first = terms.find((t) => t.length > 0) ?? 'IR6';
  if (terms.length > 1 && terms.includes('IR87')) return 'iso-2022-jp';
  return DECODER_LABEL[first] ?? 'latin1';
}

/** Decodes a text value. Trailing padding (space, NUL) is removed; leading spaces are kept (they matter in
 * ST/LT/UT). */
export function decodeDicomText(bytes: Uint8Array, specificCharacterSet: string | undefined): string {
  const label = decoderLabelForCharset(specificCharacterSet);
  const text = decoderFor(label).decode(bytes);
  return text.replace(/[\s\0]+$/, '');
}
