import { open } from 'node:fs/promises';
import type { ByteSource } from '../formats/types.js';

/** A ByteSource over a local file, read by range (the CLI inspects slides without loading them). */
export async function fileByteSource(filePath: string): Promise<ByteSource & { close(): Promise<void> }> {
  const handle = await open(filePath, 'r');
  const { size } = await handle.stat();
  return {
    size,
    async read(offset, length) {
      const len = Math.max(0, Math.min(length, size - offset));
      const buf = Buffer.alloc(len);
      let done = 0;
      while (done < len) {
        const { bytesRead } = await handle.read(buf, done, len - done, offset + done);
        if (bytesRead === 0) break;
        done += bytesRead;
      }
      return new Uint8Array(buf.buffer, buf.byteOffset, done);
    },
    close: () => handle.close(),
  };
}
