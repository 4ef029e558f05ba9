/**
 * dcmjs-dimse buffers each PDU whole before parsing it, trusting the 32-bit length in its header, so one peer
 * could make it hold gigabytes. The guard reads the same byte stream, follows PDU boundaries (6-byte header:
 * type, reserved, big-endian length) and reports the first PDU that breaks the limit, before its body arrives.
 */

const PDU_TYPES = new Set([0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07]);

/** Returns a function to call with every chunk read from the socket; it returns a problem, or null. */
export function createPduGuard(maxPduLength: number): (chunk: Uint8Array) => string | null {
  const header = new Uint8Array(6);
  const view = new DataView(header.buffer);
  let headerFill = 0;
  /** Body bytes of the current PDU still to skip. */
  let remaining = 0;
  let failed: string | null = null;

  return (chunk) => {
    if (failed) return failed;
    let offset = 0;
    // Each pass consumes at least one byte, so the loop is bounded by the chunk length.
    while (offset < chunk.length) {
      if (remaining > 0) {
        const skip = Math.min(remaining, chunk.length - offset);
        remaining -= skip;
        offset += skip;
        continue;
      }
      header[headerFill++] = chunk[offset++]!;
      if (headerFill < 6) continue;
      headerFill = 0;
      const type = header[0]!;
      const length = view.getUint32(2, false);
      const name = `0x${type.toString(16).padStart(2, '0')}`;
      if (!PDU_TYPES.has(type)) {
        failed = `unknown PDU type ${name}`;
        return failed;
      }
      if (length > maxPduLength) {
        failed = `PDU type ${name} of ${length} bytes exceeds the limit of ${maxPduLength}`;
        return failed;
      }
      remaining = length;
    }
    return null;
  };
}
