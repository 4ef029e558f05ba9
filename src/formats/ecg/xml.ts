/**
 * The XML reading the ECG XML formats (HL7 aECG, GE MUSE, Philips Sierra) share: bytes → text (BOM, UTF-16,
 * the declared encoding) → a small element tree with namespace prefixes dropped. Pure.
 *
 * Safety: entity expansion is off and any document type declaration with an internal subset is refused, so a
 * billion-laughs document or an external entity (file:///etc/passwd, http://…) can neither expand nor be
 * fetched. A bare `<!DOCTYPE RestingECG SYSTEM "restecg.dtd">` (MUSE writes one) is allowed: nothing reads the
 * DTD it names.
 */
import { corrupt, unsupported } from './ecg-input.js';

export interface XmlElement {
  /** Local name, namespace prefix removed ('xsi:type' attributes keep only 'type'). */
  name: string;
  attributes: Record<string, string>;
  children: XmlElement[];
  /** The element's own character data (not its descendants'), entities decoded, untrimmed. */
  text: string;
}

/** XML documents larger than this are refused before parsing: no ECG XML comes near it. */
export const MAX_XML_BYTES = 64 * 1024 * 1024;

/** Decodes XML bytes to text: BOM first, then UTF-16 without BOM (a NUL beside '<'), then the encoding the
 * declaration names (ISO-8859-1 and windows-1252 are common from older carts), UTF-8 otherwise. */
export function decodeXmlText(bytes: Uint8Array): string {
  if (bytes.length >= 2 && bytes[0] === 0xff && bytes[1] === 0xfe) {
    return new TextDecoder('utf-16le').decode(bytes.subarray(2));
  }
  if (bytes.length >= 2 && bytes[0] === 0xfe && bytes[1] === 0xff) {
    return new TextDecoder('utf-16be').decode(bytes.subarray(2));
  }
  if (bytes.length >= 3 && bytes[0] === 0xef && bytes[1] === 0xbb && bytes[2] === 0xbf) {
    return new TextDecoder('utf-8').decode(bytes.subarray(3));
  }
  if (bytes.length >= 2 && bytes[0] === 0x3c && bytes[1] === 0)
    return new TextDecoder('utf-16le').decode(bytes);
  if (bytes.length >= 2 && bytes[0] === 0 && bytes[1] === 0x3c)
    return new TextDecoder('utf-16be').decode(bytes);
  const head = new TextDecoder('latin1').decode(bytes.subarray(0, 200));
  const declared = /^\s*<\?xml[^>]*encoding\s*=\s*["']([\w.:-]+)["']/i.exec(head)?.[1]?.toLowerCase();
  if (declared && /^(iso-?8859-1|latin-?1|windows-1252|cp1252|us-ascii|ascii)$/.test(declared)) {
    return new TextDecoder('windows-1252').decode(bytes);
  }
  return new TextDecoder('utf-8').decode(bytes);
}

const PREDEFINED_ENTITIES: Record<string, string> = { amp: '&', lt: '<', gt: '>', quot: '"', apos: "'" };

/** Decodes the five predefined entities and numeric character references, nothing else: with no DTD there are
 * no other entities, and an unknown one is left as written. Single pass, so '&amp;lt;' stays '&lt;'. */
function decodeEntities(text: string): string {
  if (!text.includes('&')) return text;
  return text.replace(/&(#x[0-9a-fA-F]{1,6}|#\d{1,7}|[a-zA-Z]+);/g, (whole, ref: string) => {
    if (ref.startsWith('#')) {
      const code = ref[1] === 'x' ? Number.parseInt(ref.slice(2), 16) : Number.parseInt(ref.slice(1), 10);
      return code > 0 && code <= 0x10ffff ? String.fromCodePoint(code) : whole;
    }
    return PREDEFINED_ENTITIES[ref] ?? whole;
  });
}

const NAME_RE = /[^\s/>]+/y;
const ATTRIBUTE_RE = /\s*([^\s=/>]+)\s*=\s*(?:"([^"]*)"|'([^']*)')/y;
const TAG_CLOSE_RE = /\s*(\/?)>/y;

function localName(name: string): string {
  const colon = name.indexOf(':');
  return colon < 0 ? name : name.slice(colon + 1);
}

/**
 * A small non-validating XML scanner: elements, attributes, character data, CDATA; comments and processing
 * instructions skipped. Written here rather than taken from a library because the ECG documents are mostly
 * base64 or digit text, which this reads several times faster than general parsers, and because it has no DTD
 * or entity machinery at all to misconfigure. Every loop advances `pos`, so it ends within the text length;
 * nesting is tracked on an explicit stack, so depth cannot overflow the call stack.
 */
function scan(text: string, what: string): XmlElement {
  const fail = (message: string, at: number): never => {
    throw corrupt(`${what}: not well-formed XML at character ${at}: ${message}`);
  };
  const stack: XmlElement[] = [];
  let root: XmlElement | undefined;
  let pos = 0;
  const length = text.length;
  while (pos < length) {
    const lt = text.indexOf('<', pos);
    const textEnd = lt < 0 ? length : lt;
    if (textEnd > pos) {
      const top = stack[stack.length - 1];
      if (top) top.text += decodeEntities(text.slice(pos, textEnd));
      else if (text.slice(pos, textEnd).trim() !== '') fail('text outside the root element', pos);
    }
    if (lt < 0) break;
    pos = lt;
    if (text.startsWith('<!--', pos)) {
      const end = text.indexOf('-->', pos + 4);
      if (end < 0) fail('unterminated comment', pos);
      pos = end + 3;
    } else if (text.startsWith('<![CDATA[', pos)) {
      const end = text.indexOf(']]>', pos + 9);
      if (end < 0) fail('unterminated CDATA section', pos);
      const top = stack[stack.length - 1];
      if (!top) fail('CDATA outside the root element', pos);
      top!.text += text.slice(pos + 9, end);
      pos = end + 3;
    } else if (text.startsWith('<?', pos)) {
      const end = text.indexOf('?>', pos + 2);
      if (end < 0) fail('unterminated processing instruction', pos);
      pos = end + 2;
    } else if (text.startsWith('<!', pos)) {
      // Only a DOCTYPE without an internal subset gets here (parseXmlDocument refuses the others).
      if (!/^<!DOCTYPE\b/i.test(text.slice(pos, pos + 10))) fail('unexpected markup declaration', pos);
      const end = text.indexOf('>', pos);
      if (end < 0) fail('unterminated DOCTYPE', pos);
      pos = end + 1;
    } else if (text.startsWith('</', pos)) {
      const end = text.indexOf('>', pos);
      if (end < 0) fail('unterminated end tag', pos);
      const name = text.slice(pos + 2, end).trim();
      const open = stack.pop();
      if (!open || open.name !== localName(name)) {
        fail(`end tag </${name}> does not close <${open?.name ?? 'nothing'}>`, pos);
      }
      pos = end + 1;
    } else {
      NAME_RE.lastIndex = pos + 1;
      const nameMatch = NAME_RE.exec(text);
      if (!nameMatch) fail('empty tag name', pos);
      const element: XmlElement = { name: localName(nameMatch![0]), attributes: {}, children: [], text: '' };
      let at = NAME_RE.lastIndex;
      for (;;) {
        TAG_CLOSE_RE.lastIndex = at;
        const close = TAG_CLOSE_RE.exec(text);
        if (close) {
          at = TAG_CLOSE_RE.lastIndex;
          const parent = stack[stack.length - 1];
          if (parent) parent.children.push(element);
          else if (root) fail('a second root element', pos);
          else root = element;
          if (close[1] !== '/') stack.push(element);
          break;
        }
        ATTRIBUTE_RE.lastIndex = at;
        const attribute = ATTRIBUTE_RE.exec(text);
        if (!attribute) fail(`bad attribute in <${element.name}>`, at);
        element.attributes[localName(attribute![1]!)] = decodeEntities(attribute![2] ?? attribute![3] ?? '');
        at = ATTRIBUTE_RE.lastIndex;
      }
      pos = at;
    }
  }
  if (stack.length > 0) fail(`<${stack[stack.length - 1]!.name}> is never closed (file truncated?)`, length);
  if (!root) fail('no root element', 0);
  return root!;
}

/**
 * Parses an XML document into its root element. `what` names the format in error messages.
 * Refuses DTD internal subsets (entity declarations) with UNSUPPORTED_FORMAT; malformed XML is CORRUPT_FILE.
 */
export function parseXmlDocument(bytes: Uint8Array, what: string): XmlElement {
  if (bytes.length > MAX_XML_BYTES) {
    throw unsupported(`${what}: ${bytes.length} bytes is larger than the ${MAX_XML_BYTES}-byte XML limit`);
  }
  const text = decodeXmlText(bytes);
  const doctype = /<!DOCTYPE\b[^[>]*(\[)?/i.exec(text);
  if (doctype?.[1] !== undefined || /<!ENTITY\b/i.test(text)) {
    throw unsupported(
      `${what}: the document declares a DTD internal subset or entities; they are refused (XXE and entity-expansion protection)`,
    );
  }
  return scan(text, what);
}

/** First child element with this local name. */
export function child(element: XmlElement | undefined, name: string): XmlElement | undefined {
  return element?.children.find((c) => c.name === name);
}

/** All child elements with this local name. */
export function children(element: XmlElement | undefined, name: string): XmlElement[] {
  return element ? element.children.filter((c) => c.name === name) : [];
}

/** Follows a path of child names ('a/b/c'), first match at each step. */
export function path(element: XmlElement | undefined, names: string): XmlElement | undefined {
  let current = element;
  for (const name of names.split('/')) current = child(current, name);
  return current;
}

/** The trimmed text of the element at `names` below `element`, or undefined when absent or empty. */
export function textAt(element: XmlElement | undefined, names: string): string | undefined {
  const found = path(element, names);
  const text = found?.text.trim();
  return text ? text : undefined;
}

/** Every descendant (depth-first, document order) with this local name. Iterative, bounded by the tree size. */
export function descendants(element: XmlElement, name: string): XmlElement[] {
  const found: XmlElement[] = [];
  const stack: XmlElement[] = [element];
  while (stack.length > 0) {
    const current = stack.pop()!;
    if (current !== element && current.name === name) found.push(current);
    for (let i = current.children.length - 1; i >= 0; i--) stack.push(current.children[i]!);
  }
  return found;
}
