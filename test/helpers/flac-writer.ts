/**
 * Test fixture writer: a minimal FLAC stream (STREAMINFO + fixed-blocksize frames of VERBATIM subframes,
 * independent channels), enough to make WFDB 508/516/524 signal files. No compression: the point is to know
 * exactly which integers went in.
 */

class BitWriter {
  readonly bytes: number[] = [];
  private current = 0;
  private filled = 0;

  /** Writes the low `count` bits of `value` (two's complement for negatives), most significant first. */
  write(value: number, count: number): void {
    for (let bit = count - 1; bit >= 0; bit--) {
      const b = bit >= 32 ? Math.floor(value / 2 ** bit) & 1 : (value >>> bit) & 1;
      this.current = (this.current << 1) | b;
      if (++this.filled === 8) {
        this.bytes.push(this.current);
        this.current = 0;
        this.filled = 0;
      }
    }
  }

  alignToByte(): void {
    if (this.filled > 0) this.write(0, 8 - this.filled);
  }
}

function crc8(bytes: number[]): number {
  let crc = 0;
  for (const byte of bytes) {
    crc ^= byte;
    for (let i = 0; i < 8; i++) crc = crc & 0x80 ? ((crc << 1) ^ 0x07) & 0xff : (crc << 1) & 0xff;
  }
  return crc;
}

function crc16(bytes: number[]): number {
  let crc = 0;
  for (const byte of bytes) {
    crc ^= byte << 8;
    for (let i = 0; i < 8; i++) crc = crc & 0x8000 ? ((crc << 1) ^ 0x8005) & 0xffff : (crc << 1) & 0xffff;
  }
  return crc;
}

/** FLAC's UTF-8-like frame number coding, for numbers below 2^16. */
function codedNumber(n: number): number[] {
  if (n < 0x80) return [n];
  if (n < 0x800) return [0xc0 | (n >> 6), 0x80 | (n & 0x3f)];
  if (n < 0x10000) return [0xe0 | (n >> 12), 0x80 | ((n >> 6) & 0x3f), 0x80 | (n & 0x3f)];
  throw new Error('frame number too large for the test writer');
}

const SAMPLE_SIZE_CODE: Record<number, number> = { 8: 0b001, 12: 0b010, 16: 0b100, 20: 0b101, 24: 0b110 };

/**
 * Encodes `channels` (1–8 equal-length integer arrays, each value within `bitsPerSample` signed bits) as a FLAC
 * stream with `blockSize` samples per frame.
 */
export function writeFlac(
  channels: ArrayLike<number>[],
  bitsPerSample: 8 | 12 | 16 | 20 | 24,
  options: { sampleRate?: number; blockSize?: number } = {},
): Uint8Array {
  const sampleRate = options.sampleRate ?? 500;
  if (!(sampleRate > 0 && sampleRate < 65536))
    throw new Error('the test writer needs a sample rate below 65536 Hz');
  const blockSize = options.blockSize ?? 1152;
  const total = channels[0]?.length ?? 0;
  if (channels.length < 1 || channels.length > 8) throw new Error('FLAC holds 1 to 8 channels');

  const head = new BitWriter();
  for (const c of 'fLaC') head.write(c.charCodeAt(0), 8);
  head.write(1, 1); // last metadata block
  head.write(0, 7); // STREAMINFO
  head.write(34, 24);
  head.write(Math.min(blockSize, Math.max(total, 16)), 16);
  head.write(blockSize, 16);
  head.write(0, 24); // frame sizes unknown
  head.write(0, 24);
  head.write(sampleRate, 20);
  head.write(channels.length - 1, 3);
  head.write(bitsPerSample - 1, 5);
  head.write(total, 36);
  for (let i = 0; i < 16; i++) head.write(0, 8); // MD5 unknown
  const out = [...head.bytes];

  for (let start = 0, frame = 0; start < total; start += blockSize, frame++) {
    const size = Math.min(blockSize, total - start);
    const w = new BitWriter();
    w.write(0b11111111111110, 14);
    w.write(0, 1);
    w.write(0, 1); // fixed block size
    w.write(0b0111, 4); // block size - 1 follows as 16 bits
    // Sample rate spelled out (16-bit Hz): the decoder sees frames without the STREAMINFO block.
    w.write(0b1101, 4);
    w.write(channels.length - 1, 4); // independent channels
    w.write(SAMPLE_SIZE_CODE[bitsPerSample]!, 3);
    w.write(0, 1);
    for (const byte of codedNumber(frame)) w.write(byte, 8);
    w.write(size - 1, 16);
    w.write(sampleRate, 16);
    w.write(crc8(w.bytes), 8);
    for (const channel of channels) {
      w.write(0, 1);
      w.write(0b000001, 6); // VERBATIM
      w.write(0, 1); // no wasted bits
      for (let i = start; i < start + size; i++) w.write(channel[i]!, bitsPerSample);
    }
    w.alignToByte();
    w.write(crc16(w.bytes), 16);
    out.push(...w.bytes);
  }
  return Uint8Array.from(out);
}
