/**
 * Which presentation contexts the C-STORE SCP accepts. Teleread stores the bytes it receives as they are and
 * decodes them later, so any syntax a renderer can decode is storable; nothing is transcoded on the wire.
 */
import {
  EXPLICIT_VR_BIG_ENDIAN,
  EXPLICIT_VR_LITTLE_ENDIAN,
  IMPLICIT_VR_LITTLE_ENDIAN,
  isStorableTransferSyntax,
} from '../formats/dicom/transfer-syntax.js';

export const VERIFICATION_SOP_CLASS = '1.2.840.10008.1.1';

/** Every Storage SOP Class of PS3.4 Annex B (images, waveforms, SR, encapsulated documents …) sits under this
 * root; the Query/Retrieve and other services live elsewhere under 1.2.840.10008.5.1.4.1. */
const STORAGE_SOP_CLASS_ROOT = '1.2.840.10008.5.1.4.1.1.';

/** Verification carries no data set; the uncompressed syntaxes are all it may use. */
const VERIFICATION_TRANSFER_SYNTAXES: ReadonlySet<string> = new Set([
  IMPLICIT_VR_LITTLE_ENDIAN,
  EXPLICIT_VR_LITTLE_ENDIAN,
  EXPLICIT_VR_BIG_ENDIAN,
]);

export function isStorageSopClass(uid: string): boolean {
  return uid.startsWith(STORAGE_SOP_CLASS_ROOT) && uid.length > STORAGE_SOP_CLASS_ROOT.length;
}

export type PresentationContextDecision =
  | { result: 'accept'; transferSyntaxUid: string }
  | { result: 'reject-abstract-syntax' }
  | { result: 'reject-transfer-syntaxes' };

/**
 * Accepts the first proposed transfer syntax Teleread can store, in the proposer's order (its order is its
 * preference, and for storescu -R the first is the file's own syntax, so the bytes arrive as written).
 * UIDs from the wire may carry a trailing NUL or space pad.
 */
export function negotiatePresentationContext(
  abstractSyntaxUid: string,
  proposedTransferSyntaxUids: readonly string[],
): PresentationContextDecision {
  const abstract = cleanUid(abstractSyntaxUid);
  let acceptable: (uid: string) => boolean;
  if (abstract === VERIFICATION_SOP_CLASS) acceptable = (uid) => VERIFICATION_TRANSFER_SYNTAXES.has(uid);
  else if (isStorageSopClass(abstract)) acceptable = isStorableTransferSyntax;
  else return { result: 'reject-abstract-syntax' };
  for (const proposed of proposedTransferSyntaxUids) {
    const uid = cleanUid(proposed);
    if (acceptable(uid)) return { result: 'accept', transferSyntaxUid: uid };
  }
  return { result: 'reject-transfer-syntaxes' };
}

export function cleanUid(uid: string): string {
  return uid.replace(/[\0 ]+$/, '');
}
