import type { Context } from '../context.js';
import { isAppError } from '../errors.js';
import { type DicomInstance, parseDicom } from '../formats/dicom/parse-dicom.js';
import { readInstanceByRange } from '../formats/dicom/read-frame-by-range.js';
import { pixelIdentity, pixelIdentityOf } from '../formats/inspect.js';
import { objectByteSource } from '../storage/object-byte-source.js';

/** The first read for a header: a slice's fits, and its pixels are not needed. */
const FIRST_READ_BYTES = 16 * 1024;
/** The second, for longer headers (enhanced multi-frame); parseDicom tolerates cut pixel data. */
const HEADER_BYTES = 512 * 1024;

/**
 * Whether an instance's pixels may show who the patient is: a slide label or overview, or burned-in text. Read
 * from the flags ingest keeps in the row's metadata, or from the header for a row ingested before they were kept.
 */
export async function showsIdentity(
  ctx: Context,
  file: { object_key: string; bytes: string; metadata?: unknown },
): Promise<boolean> {
  const known = pixelIdentityOf(file.metadata);
  const flags = known ?? pixelIdentity(await readHeaderOf(ctx, file));
  return flags.burnedInAnnotation || flags.identifyingImage;
}

/** A stored instance's header: its first 16 KiB when they hold it up to the pixel data, else its head, or read on
 * by range when the header is longer still. */
export async function readHeaderOf(
  ctx: Context,
  file: { object_key: string; bytes: string },
): Promise<DicomInstance> {
  const size = Number(file.bytes);
  if (size > FIRST_READ_BYTES) {
    try {
      const head = parseDicom(
        await ctx.storage.getBytes(file.object_key, { start: 0, end: FIRST_READ_BYTES - 1 }),
      );
      // Cut inside the pixel data: everything before it was read. Without pixel data the cut may have fallen on
      // an element boundary with more to come, so a longer read decides.
      if (head.pixelDataTruncated) return head;
    } catch (err) {
      if (!isAppError(err)) throw err; // cut inside the header: read on
    }
  }
  try {
    return parseDicom(
      await ctx.storage.getBytes(file.object_key, { start: 0, end: Math.min(size, HEADER_BYTES) - 1 }),
    );
  } catch (err) {
    if (!isAppError(err) || size <= HEADER_BYTES) throw err;
    // A header longer than that: read on by range (a large instance is not read whole for its header).
    return readInstanceByRange(objectByteSource(ctx.storage, file.object_key, size));
  }
}
