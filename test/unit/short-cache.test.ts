import { describe, expect, test } from 'vitest';
import { createShortCache } from '../../src/api/short-cache.js';

/** A cache on a clock the test moves by hand, and a loader that counts its calls. */
function setup(options: { ttlMs?: number; maxWeight?: number; weigh?: (v: string) => number } = {}) {
  let clock = 1_000_000;
  const cache = createShortCache<string, string>({
    ttlMs: options.ttlMs ?? 1000,
    maxWeight: options.maxWeight ?? 100,
    ...(options.weigh ? { weigh: options.weigh } : {}),
    now: () => clock,
  });
  const calls: string[] = [];
  // `loader(key)` loads `key#<call number>`; `loader(key, value)` loads `value`, undefined included.
  const loader = (key: string, ...value: [string | undefined] | []) => {
    return async () => {
      calls.push(key);
      return value.length > 0 ? value[0] : `${key}#${calls.length}`;
    };
  };
  return {
    cache,
    calls,
    loader,
    advance: (ms: number) => {
      clock += ms;
    },
  };
}

/** A load the test finishes by hand. */
function deferred<T>() {
  let resolve!: (v: T) => void;
  let reject!: (e: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

describe('createShortCache', () => {
  test('serves a loaded value until its TTL ends, then loads again', async () => {
    const { cache, calls, loader, advance } = setup({ ttlMs: 1000 });
    expect(await cache.get('a', loader('a'))).toBe('a#1');
    advance(999);
    expect(await cache.get('a', loader('a'))).toBe('a#1');
    advance(1);
    expect(await cache.get('a', loader('a'))).toBe('a#2');
    expect(calls).toEqual(['a', 'a']);
  });

  test('concurrent misses on one key share one load; other keys load on their own', async () => {
    const { cache } = setup();
    const slow = deferred<string>();
    let loads = 0;
    const load = () => {
      loads++;
      return slow.promise;
    };
    const waiting = [cache.get('a', load), cache.get('a', load), cache.get('a', load)];
    expect(await cache.get('b', async () => 'b')).toBe('b');
    slow.resolve('a');
    expect(await Promise.all(waiting)).toEqual(['a', 'a', 'a']);
    expect(loads).toBe(1);
    expect(await cache.get('a', load)).toBe('a');
    expect(loads).toBe(1);
  });

  test('keeps neither a miss (undefined) nor a failure', async () => {
    const { cache, calls, loader } = setup();
    expect(await cache.get('gone', loader('gone', undefined))).toBeUndefined();
    expect(await cache.get('gone', loader('gone', undefined))).toBeUndefined();
    expect(calls).toEqual(['gone', 'gone']);
    await expect(
      cache.get('bad', async () => {
        throw new Error('database down');
      }),
    ).rejects.toThrow('database down');
    expect(await cache.get('bad', async () => 'fine')).toBe('fine');
  });

  test('invalidate() forgets every entry', async () => {
    const { cache, loader } = setup();
    await cache.get('a', loader('a'));
    await cache.get('b', loader('b'));
    expect(cache.size).toBe(2);
    cache.invalidate();
    expect(cache.size).toBe(0);
    expect(await cache.get('a', loader('a'))).toBe('a#3');
  });

  test('a load that overlaps invalidate() answers its callers but is not kept, and nobody joins it later', async () => {
    const { cache } = setup();
    const before = deferred<string>();
    const first = cache.get('a', () => before.promise);
    // The rows change (a claim commits) while the first load is still reading the old ones.
    cache.invalidate();
    const second = cache.get('a', async () => 'after');
    before.resolve('before');
    expect(await first).toBe('before');
    expect(await second).toBe('after');
    expect(await cache.get('a', async () => 'reloaded')).toBe('after');
  });

  test('ttlOf shortens an entry below the TTL (a key that expires sooner)', async () => {
    const { cache, advance } = setup({ ttlMs: 5000 });
    expect(
      await cache.get(
        'a',
        async () => 'one',
        () => 100,
      ),
    ).toBe('one');
    advance(100);
    expect(
      await cache.get(
        'a',
        async () => 'two',
        () => 100,
      ),
    ).toBe('two');
    expect(
      await cache.get(
        'b',
        async () => 'never kept',
        () => 0,
      ),
    ).toBe('never kept');
    expect(
      await cache.get(
        'b',
        async () => 'looked up again',
        () => 0,
      ),
    ).toBe('looked up again');
  });

  test('stays within maxWeight by dropping the oldest entries; a value heavier than the bound is not kept', async () => {
    const { cache, calls, loader } = setup({ maxWeight: 10, weigh: (v) => v.length });
    await cache.get('a', loader('a', 'aaaa'));
    await cache.get('b', loader('b', 'bbbb'));
    await cache.get('c', loader('c', 'cccc'));
    expect(cache.size).toBe(2);
    await cache.get('b', loader('b'));
    await cache.get('c', loader('c'));
    expect(calls).toEqual(['a', 'b', 'c']);
    await cache.get('a', loader('a', 'aaaa'));
    expect(calls).toEqual(['a', 'b', 'c', 'a']);
    await cache.get('huge', loader('huge', 'x'.repeat(11)));
    await cache.get('huge', loader('huge', 'x'.repeat(11)));
    expect(calls.filter((k) => k === 'huge')).toHaveLength(2);
  });
});
