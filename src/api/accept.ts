/**
 * Reading an Accept header (RFC 9110 §12.5.1) as the DICOMweb routes need it: which media types it allows, and
 * for the multipart responses of PS3.18 §8.7.3, which transfer syntaxes.
 */
import { EXPLICIT_VR_LITTLE_ENDIAN } from '../formats/dicom/transfer-syntax.js';
import { type MediaType, parseMediaType } from './multipart-related.js';

/** Splits an Accept header at the commas between media ranges (not those inside quoted parameters). */
export function splitAccept(accept: string): string[] {
  const out: string[] = [];
  let current = '';
  let quoted = false;
  for (const ch of accept) {
    if (ch === '"') quoted = !quoted;
    if (ch === ',' && !quoted) {
      out.push(current);
      current = '';
    } else current += ch;
  }
  out.push(current);
  return out.map((r) => r.trim()).filter((r) => r !== '');
}

/** The media ranges of an Accept header that it does not refuse (q=0), parsed. */
export function mediaRanges(accept: string): MediaType[] {
  return splitAccept(accept)
    .map((r) => parseMediaType(r))
    .filter((m): m is MediaType => m !== null && Number(m.parameters.q ?? 1) > 0);
}

/** Whether Accept allows one of `types` (no Accept allows anything). */
export function acceptsMediaType(accept: string | undefined, ...types: string[]): boolean {
  if (!accept || accept.trim() === '') return true;
  return mediaRanges(accept).some((m) =>
    types.some((t) => m.type === '*/*' || m.type === `${t.split('/')[0]}/*` || m.type === t),
  );
}

/** The transfer syntaxes an Accept allows for a multipart/related of `partType` parts: `stored` when any may come
 * as stored (`transfer-syntax=*`), and the ones it names, Explicit VR Little Endian standing for a range that
 * names none (PS3.18's default). Undefined when it allows no such response. */
export interface AcceptedTransferSyntaxes {
  stored: boolean;
  named: Set<string>;
}

export function acceptedTransferSyntaxes(
  accept: string | undefined,
  partType: string,
): AcceptedTransferSyntaxes | undefined {
  if (!accept || accept.trim() === '') return { stored: false, named: new Set([EXPLICIT_VR_LITTLE_ENDIAN]) };
  let accepted: AcceptedTransferSyntaxes | undefined;
  for (const m of mediaRanges(accept)) {
    const type = m.parameters.type?.toLowerCase();
    const multipart = m.type === 'multipart/related' && (type === undefined || type === partType);
    if (!multipart && m.type !== '*/*' && m.type !== 'multipart/*') continue;
    accepted ??= { stored: false, named: new Set() };
    const ts = multipart ? m.parameters['transfer-syntax'] : undefined;
    if (ts === '*') accepted.stored = true;
    else accepted.named.add(ts ?? EXPLICIT_VR_LITTLE_ENDIAN);
  }
  return accepted;
}

/** Whether a response may be Explicit VR Little Endian: the default, named, or anything (`*`). */
export function allowsExplicitLittleEndian(accepted: AcceptedTransferSyntaxes): boolean {
  return accepted.stored || accepted.named.has(EXPLICIT_VR_LITTLE_ENDIAN);
}
