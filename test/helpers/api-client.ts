import { setTimeout as sleep } from 'node:timers/promises';

/** A tiny JSON client for the API under test. */
export function apiClient(baseUrl: string) {
  return async function call<T = Record<string, unknown>>(
    key: string | null,
    path: string,
    init: RequestInit = {},
  ): Promise<{ status: number; body: T; headers: Headers }> {
    const headers = new Headers(init.headers);
    if (key) headers.set('authorization', `Bearer ${key}`);
    const res = await fetch(new URL(path, baseUrl), { ...init, headers });
    const type = res.headers.get('content-type') ?? '';
    const body = (type.includes('json') ? await res.json() : new Uint8Array(await res.arrayBuffer())) as T;
    return { status: res.status, body, headers: res.headers };
  };
}

/** Polls `check` until it returns a value (not undefined), or fails after `timeoutMs` with the last state. */
export async function waitFor<T>(
  what: string,
  check: () => Promise<T | undefined>,
  timeoutMs = 60_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await check();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(100);
  }
}
