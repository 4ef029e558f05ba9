import type { ByteSource } from '../formats/types.js';
import type { ObjectStore } from './object-store.js';

/**
 * A ByteSource over one stored object, so pure parsers can read a slide's headers by range without
 * downloading gigabytes. Small reads are rounded up to a block and the last block is kept, because TIFF
 * parsers make many tiny reads near one another.
 */
export function objectByteSource(
  store: ObjectStore,
  key: string,
  size: number,
  blockSize = 64 * 1024,
): ByteSource {
  let cached: { start: number; bytes: Uint8Array } | null = null;
  return {
    size,
    async read(offset, length) {
      if (offset >= size || length <= 0) return new Uint8Array(0);
      const end = Math.min(size, offset + length);
      if (cached && offset >= cached.start && end <= cached.start + cached.bytes.length) {
        return cached.bytes.subarray(offset - cached.start, end - cached.start);
      }
      if (end - offset >= blockSize) return store.getBytes(key, { start: offset, end: end - 1 });
      const blockEnd = Math.min(size, offset + blockSize);
      const bytes = await store.getBytes(key, { start: offset, end: blockEnd - 1 });
      cached = { start: offset, bytes };
      return bytes.subarray(0, end - offset);
    },
  };
}
