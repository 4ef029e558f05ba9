export interface ShortCacheOptions<V> {
  /** How long a value is served after it was loaded. */
  ttlMs: number;
  /** Bound on the total weight of the entries kept; the oldest go first. */
  maxWeight: number;
  /** An entry's weight (default 1: `maxWeight` counts entries). */
  weigh?: (value: V) => number;
  /** The clock, in milliseconds; tests fake it. */
  now?: () => number;
}

export interface ShortCache<K, V> {
  /**
   * The value kept for `key`, or `load()`'s. Concurrent misses on one key share one load. `undefined` is never
   * kept, so a miss (an unknown key) is looked up again next time. `ttlOf` can shorten an entry's life below
   * `ttlMs` (a key that expires sooner).
   */
  get(key: K, load: () => Promise<V | undefined>, ttlOf?: (value: V) => number): Promise<V | undefined>;
  /**
   * Forgets every entry. A load already running when this is called still answers its callers, but its value
   * is not kept and later callers do not join it: it may have read the rows from before the change.
   */
  invalidate(): void;
  readonly size: number;
}

/** A small in-process read-through cache with a TTL, a weight bound and whole-cache invalidation. */
export function createShortCache<K, V>(options: ShortCacheOptions<V>): ShortCache<K, V> {
  const now = options.now ?? Date.now;
  const weigh = options.weigh ?? (() => 1);
  const entries = new Map<K, { value: V; until: number; weight: number }>();
  const loading = new Map<K, { generation: number; promise: Promise<V | undefined> }>();
  let generation = 0;
  let weight = 0;

  function drop(key: K): void {
    const entry = entries.get(key);
    if (!entry) return;
    entries.delete(key);
    weight -= entry.weight;
  }

  function keep(key: K, value: V, ttl: number): void {
    const w = weigh(value);
    if (ttl <= 0 || w > options.maxWeight) return;
    drop(key);
    // Map iteration is insertion order: the oldest entries go first.
    for (const old of entries.keys()) {
      if (weight + w <= options.maxWeight) break;
      drop(old);
    }
    entries.set(key, { value, until: now() + ttl, weight: w });
    weight += w;
  }

  return {
    get(key, load, ttlOf) {
      const hit = entries.get(key);
      if (hit) {
        if (hit.until > now()) return Promise.resolve(hit.value);
        drop(key);
      }
      const running = loading.get(key);
      if (running && running.generation === generation) return running.promise;
      const started = generation;
      const settle = () => {
        if (loading.get(key)?.promise === promise) loading.delete(key);
      };
      const promise: Promise<V | undefined> = load().then(
        (value) => {
          settle();
          if (value !== undefined && started === generation) {
            keep(key, value, ttlOf ? Math.min(options.ttlMs, ttlOf(value)) : options.ttlMs);
          }
          return value;
        },
        (err: unknown) => {
          settle();
          throw err;
        },
      );
      loading.set(key, { generation: started, promise });
      return promise;
    },
    invalidate() {
      generation++;
      entries.clear();
      loading.clear();
      weight = 0;
    },
    get size() {
      return entries.size;
    },
  };
}
