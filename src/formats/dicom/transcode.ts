/**
 * Rewriting an instance in Explicit VR Little Endian (1.2.840.10008.1.2.1): the transfer syntax every DICOM reader
 * accepts, and the one a DICOMweb retrieve that names none must get (PS3.18 §8.7.3.5.2, since 2016c).
 *
 * The data set is read as a tree (data-set-tree.ts) and written again with explicit VRs (from the data dictionary
 * where it had none) and little-endian values (big-endian ones are swapped by VR). Native pixel data is carried
 * over, swapped where it was big endian. Encapsulated pixel data cannot be converted here: it must be decoded
 * first, so the caller decodes the frames (src/imaging/transcode-dicom.ts) and passes what they turned out as
 * (`DecodedPixels`); this module gives the bytes around them and the attributes decoding changed:
 * - PhotometricInterpretation as decoded: a JPEG's colour transform is undone (YBR_FULL_422 and YBR_FULL become
 *   RGB), JPEG 2000's YBR_ICT and YBR_RCT become RGB;
 * - PlanarConfiguration 0, since decoded frames are pixel-interleaved;
 * - LossyImageCompression 01 (and the method) for the JPEG lossy processes when the file did not say so: the
 *   pixels keep the loss (PS3.3 C.7.6.1.1.5);
 * - no Extended Offset Table, which indexes fragments that are gone, and no compressed icon (see below).
 * The SOP Instance UID stays: the pixels are those the sender's instance holds.
 */
import { AppError } from '../../errors.js';
import { implicitVrOf } from './attributes.js';
import {
  ascii,
  ByteSink,
  type DataElement,
  EXPLICIT_LE,
  fileMeta,
  formatTag,
  guard,
  type Item,
  locateDataSet,
  padText,
  Reader,
  readFileMeta,
  readUs,
  TAG_PIXEL_DATA,
  tryRead,
  writeElements,
  writeHeader,
} from './data-set-tree.js';
import { hasDicmPrefix, latin1, trimValue } from './parse-dicom.js';
import { describeTransferSyntax, EXPLICIT_VR_LITTLE_ENDIAN } from './transfer-syntax.js';
import { littleEndianValue, VRS } from './vr.js';

const TAG_SOP_CLASS_UID = 0x00080016;
const TAG_SOP_INSTANCE_UID = 0x00080018;
const TAG_PHOTOMETRIC_INTERPRETATION = 0x00280004;
const TAG_PLANAR_CONFIGURATION = 0x00280006;
const TAG_BITS_ALLOCATED = 0x00280100;
const TAG_PIXEL_REPRESENTATION = 0x00280103;
const TAG_LOSSY_IMAGE_COMPRESSION = 0x00282110;
const TAG_LOSSY_IMAGE_COMPRESSION_METHOD = 0x00282114;
const TAG_SAMPLES_PER_PIXEL = 0x00280002;
const TAG_EXTENDED_OFFSET_TABLE = 0x7fe00001;
const TAG_EXTENDED_OFFSET_TABLE_LENGTHS = 0x7fe00002;
const TAG_FLOAT_PIXEL_DATA = 0x7fe00008;
const TAG_DOUBLE_FLOAT_PIXEL_DATA = 0x7fe00009;

/** The JPEG processes that are lossy whatever the file says, and the method PS3.3 C.7.6.1.1.5.1 names for them. */
const LOSSY_METHOD: Record<string, string> = {
  '1.2.840.10008.1.2.4.50': 'ISO_10918_1',
  '1.2.840.10008.1.2.4.51': 'ISO_10918_1',
};

/** What the decoded frames of an encapsulated instance are, as DecodedPixels gives them to be written. */
export interface DecodedPixels {
  photometricInterpretation: string;
  bitsAllocated: number;
  pixelRepresentation: number;
  /** The whole native value: every frame, before the pad byte to even length. */
  byteLength: number;
}

/** The instance in Explicit VR Little Endian, in three runs so that decoded frames can be streamed between. */
export interface ExplicitLittleEndianCopy {
  /** File meta, every element before the pixel data, and the pixel data's element header. */
  head: Uint8Array[];
  /** The pixel data value for native input; undefined when the caller writes the decoded frames (the rest of
   * `length`). */
  pixels: Uint8Array[] | undefined;
  /** Whatever follows the pixel data (trailing padding, signatures). */
  tail: Uint8Array[];
  /** Total bytes of the copy. */
  length: number;
}

/** Whether an instance in this transfer syntax has encapsulated pixel data, which must be decoded to go native. */
export function needsDecoding(transferSyntaxUid: string): boolean {
  return describeTransferSyntax(transferSyntaxUid).encapsulated;
}

/** A Part 10 file whose file meta says Explicit VR Little Endian: nothing to rewrite. */
export function isPart10ExplicitLittleEndian(bytes: Uint8Array): boolean {
  if (!hasDicmPrefix(bytes)) return false;
  const meta = tryRead(() => readFileMeta(new Reader(bytes, 'file meta'), 132));
  return meta?.transferSyntaxUid === EXPLICIT_VR_LITTLE_ENDIAN;
}

type VrLookup = (tag: number) => string | undefined;

/** Values of a big-endian tree made little endian, sequence by sequence. Items of a UN sequence are implicit VR
 * little endian already (CP-246), so they are kept as read. */
function toLittleEndian(elements: DataElement[], vrOf: VrLookup): DataElement[] {
  return elements.map((el) => {
    if (el.sequence) {
      if (el.sequence.encoding.littleEndian) return el;
      const items: Item[] = el.sequence.items.map((item) => ({
        ...item,
        elements: toLittleEndian(item.elements, vrOf),
      }));
      return { ...el, sequence: { ...el.sequence, items, encoding: EXPLICIT_LE } };
    }
    return el.value ? { ...el, value: littleEndianValue(el.value, el.vr ?? vrOf(el.tag) ?? '', false) } : el;
  });
}

/** Whether a sequence holds encapsulated data at any depth. */
function holdsEncapsulated(el: DataElement): boolean {
  return (
    el.sequence?.items.some((item) => item.elements.some((e) => e.encapsulated || holdsEncapsulated(e))) ??
    false
  );
}

function us(tag: number, value: number): DataElement {
  const bytes = new Uint8Array(2);
  new DataView(bytes.buffer).setUint16(0, value, true);
  return { tag, vr: 'US', offset: -1, value: bytes };
}

function cs(tag: number, value: string): DataElement {
  return { tag, vr: 'CS', offset: -1, value: padText(ascii(value), 'CS') };
}

function textOf(elements: DataElement[], tag: number): string | undefined {
  const value = elements.find((e) => e.tag === tag)?.value;
  return value ? trimValue(latin1.decode(value)) || undefined : undefined;
}

/** Replaces (or adds) top-level elements, keeping the data set in tag order. */
function withElements(elements: DataElement[], set: DataElement[], drop: number[] = []): DataElement[] {
  const replaced = new Set([...set.map((e) => e.tag), ...drop]);
  return [...elements.filter((e) => !replaced.has(e.tag)), ...set].sort((a, b) => a.tag - b.tag);
}

function isPixelData(tag: number): boolean {
  return tag === TAG_PIXEL_DATA || tag === TAG_FLOAT_PIXEL_DATA || tag === TAG_DOUBLE_FLOAT_PIXEL_DATA;
}

/**
 * The instance in Explicit VR Little Endian. `decoded` must be given for encapsulated pixel data (see
 * needsDecoding) and is ignored otherwise. Throws CORRUPT_FILE or UNSUPPORTED_FORMAT as the other readers do.
 */
export function toExplicitLittleEndian(bytes: Uint8Array, decoded?: DecodedPixels): ExplicitLittleEndianCopy {
  return guard(() => {
    const located = locateDataSet(bytes, []);
    const source = located.transferSyntaxUid;
    // The reader takes an unknown VR with a 16-bit length, as dicom-parser does; written out it would make a
    // file no reader can parse, so such a data set (a misplaced start, usually) is refused instead.
    const stray = located.elements.find((e) => e.vr !== undefined && !VRS.has(e.vr));
    if (stray) {
      throw new AppError(
        'CORRUPT_FILE',
        `${formatTag(stray.tag)} at offset ${stray.offset} has VR ${JSON.stringify(stray.vr)}, which is not a VR; the data set cannot be rewritten`,
        { retryable: false, details: { offset: stray.offset, tag: formatTag(stray.tag) } },
      );
    }
    const pixelRepresentation = readUs(located.elements, TAG_PIXEL_REPRESENTATION, located.encoding);
    const dictionary: VrLookup = (tag) => implicitVrOf(tag, pixelRepresentation);
    let elements = located.encoding.littleEndian
      ? located.elements
      : toLittleEndian(located.elements, dictionary);
    // A compressed instance's icon (Icon Image Sequence, 0088,0200) is compressed too, and encapsulated data is
    // not allowed in Explicit VR Little Endian. The icon is optional (Type 3): it goes, as the full image
    // stays.
    elements = elements.filter((e) => !holdsEncapsulated(e));
    const pixel = elements.find((e) => isPixelData(e.tag));

    let pixelVr: string;
    let pixels: Uint8Array[] | undefined;
    let valueLength: number;
    if (pixel?.encapsulated) {
      if (!decoded) {
        throw new AppError(
          'INTERNAL',
          'encapsulated pixel data must be decoded before it is written native',
          {
            retryable: false,
          },
        );
      }
      const samples = readUs(elements, TAG_SAMPLES_PER_PIXEL, EXPLICIT_LE) ?? 1;
      const set = [cs(TAG_PHOTOMETRIC_INTERPRETATION, decoded.photometricInterpretation)];
      if (samples > 1) set.push(us(TAG_PLANAR_CONFIGURATION, 0));
      if (readUs(elements, TAG_BITS_ALLOCATED, EXPLICIT_LE) !== decoded.bitsAllocated)
        set.push(us(TAG_BITS_ALLOCATED, decoded.bitsAllocated));
      if (readUs(elements, TAG_PIXEL_REPRESENTATION, EXPLICIT_LE) !== decoded.pixelRepresentation)
        set.push(us(TAG_PIXEL_REPRESENTATION, decoded.pixelRepresentation));
      const method = LOSSY_METHOD[source];
      if (method && textOf(elements, TAG_LOSSY_IMAGE_COMPRESSION) !== '01') {
        set.push(cs(TAG_LOSSY_IMAGE_COMPRESSION, '01'));
        if (!textOf(elements, TAG_LOSSY_IMAGE_COMPRESSION_METHOD))
          set.push(cs(TAG_LOSSY_IMAGE_COMPRESSION_METHOD, method));
      }
      elements = withElements(elements, set, [TAG_EXTENDED_OFFSET_TABLE, TAG_EXTENDED_OFFSET_TABLE_LENGTHS]);
      pixelVr = decoded.bitsAllocated <= 8 ? 'OB' : 'OW';
      valueLength = decoded.byteLength;
    } else {
      const value = pixel?.value ?? new Uint8Array(0);
      pixels = [value];
      valueLength = value.length;
      pixelVr = pixel?.vr ?? dictionary(pixel?.tag ?? TAG_PIXEL_DATA) ?? 'OW';
      // An implicit VR data set gives Pixel Data no VR; PS3.5 A.2 has OB for samples of 8 bits or fewer.
      if (pixel && pixel.vr === undefined && pixel.tag === TAG_PIXEL_DATA) {
        pixelVr = (readUs(elements, TAG_BITS_ALLOCATED, EXPLICIT_LE) ?? 16) <= 8 ? 'OB' : 'OW';
      }
    }
    const pad = valueLength % 2;
    if (pad && pixels) pixels.push(new Uint8Array(1));

    const meta = fileMeta(
      textOf(elements, TAG_SOP_CLASS_UID) ?? located.meta?.sopClassUid,
      textOf(elements, TAG_SOP_INSTANCE_UID) ?? located.meta?.sopInstanceUid,
      EXPLICIT_VR_LITTLE_ENDIAN,
    );
    // An implicit VR data set is written with the dictionary's VRs (UN for a tag it does not know).
    const vrOf = located.encoding.explicitVr ? undefined : dictionary;
    const before = new ByteSink();
    writeElements(
      before,
      elements.filter((e) => !pixel || e.tag < pixel.tag),
      EXPLICIT_LE,
      vrOf,
    );
    if (pixel) writeHeader(before, pixel, valueLength + pad, EXPLICIT_LE, pixelVr);
    const after = new ByteSink();
    writeElements(
      after,
      elements.filter((e) => pixel && e.tag > pixel.tag),
      EXPLICIT_LE,
      vrOf,
    );
    const head = [meta, ...before.parts()];
    const tail = after.parts();
    const sum = (parts: Uint8Array[]) => parts.reduce((n, p) => n + p.length, 0);
    return {
      head,
      pixels,
      tail,
      length: sum(head) + (pixel ? valueLength + pad : 0) + sum(tail),
    };
  });
}
