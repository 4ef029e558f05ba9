/**
 * A least-recently-used cache of tiles bounded by bytes, not entries: a decoded 512² RGB source tile costs
 * 768 kB and an encoded DZI tile 20 kB, and one budget has to hold either. Concurrent requests for the same
 * missing key share one computation, so a viewer opening a slide (dozens of tiles at once, most needing the
 * same source tiles) decodes each source tile once.
 */

export interface TileCacheOptions<V> {
  /** Upper bound of the summed `sizeOf` of the entries kept. */
  maxBytes: number;
  sizeOf: (value: V) => number;
}

export interface TileCacheStats {
  entries: number;
  bytes: number;
  hits: number;
  misses: number;
}

export class TileCache<V> {
  private readonly entries = new Map<string, { value: V; size: number }>();
  private readonly pending = new Map<string, Promise<V>>();
  private bytes = 0;
  private hits = 0;
  private misses = 0;

  constructor(private readonly options: TileCacheOptions<V>) {}

  get(key: string): V | undefined {
    const entry = this.entries.get(key);
    if (!entry) return undefined;
    // Map keeps insertion order; re-inserting makes this the most recently used.
    this.entries.delete(key);
    this.entries.set(key, entry);
    return entry.value;
  }

  set(key: string, value: V): void {
    const size = Math.max(1, this.options.sizeOf(value));
    const old = this.entries.get(key);
    if (old) {
      this.entries.delete(key);
      this.bytes -= old.size;
    }
    // An entry larger than the whole budget would evict everything and then be evicted itself.
    if (size > this.options.maxBytes) return;
    this.entries.set(key, { value, size });
    this.bytes += size;
    for (const [oldest, entry] of this.entries) {
      if (this.bytes <= this.options.maxBytes) break;
      this.entries.delete(oldest);
      this.bytes -= entry.size;
    }
  }

  /** The cached value, or the one `make` produces (cached when it resolves; failures are not cached). */
  async getOrCreate(key: string, make: () => Promise<V>): Promise<V> {
    const cached = this.get(key);
    if (cached !== undefined) {
      this.hits++;
      return cached;
    }
    const inFlight = this.pending.get(key);
    if (inFlight) {
      this.hits++;
      return inFlight;
    }
    this.misses++;
    const promise = make().then(
      (value) => {
        this.pending.delete(key);
        this.set(key, value);
        return value;
      },
      (err: unknown) => {
        this.pending.delete(key);
        throw err;
      },
    );
    this.pending.set(key, promise);
    return promise;
  }

  delete(key: string): void {
    const entry = this.entries.get(key);
    if (!entry) return;
    this.entries.delete(key);
    this.bytes -= entry.size;
  }

  /** Drops every entry whose key starts with `prefix` (a slide that was replaced or deleted). */
  deletePrefix(prefix: string): void {
    for (const key of [...this.entries.keys()]) if (key.startsWith(prefix)) this.delete(key);
  }

  clear(): void {
    this.entries.clear();
    this.bytes = 0;
  }

  stats(): TileCacheStats {
    return { entries: this.entries.size, bytes: this.bytes, hits: this.hits, misses: this.misses };
  }
}
