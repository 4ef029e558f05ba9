import { connect, createServer, type Server, type Socket } from 'node:net';

/**
 * A TCP proxy on 127.0.0.1 that stands for a poor link between a client and the API: it forwards bytes both
 * ways, counts them, and on request cuts connections, resets them (TCP RST), or stalls them.
 *
 * Faults are measured in client→server bytes, counted over all connections since the fault was set:
 * - `cut` every N bytes: the connection carrying byte N, 2N, 3N … is closed right after forwarding it;
 * - `reset` every N bytes: the same, with an RST instead of a FIN (the peer sees ECONNRESET);
 * - `stall` after N bytes: forwarding stops for `ms` (both directions of that connection), once.
 * The counters only count bytes actually written to the other side, so they say what crossed the "link".
 */
export type Fault =
  | { kind: 'none' }
  | { kind: 'cut'; everyBytes: number }
  | { kind: 'reset'; everyBytes: number }
  | { kind: 'stall'; afterBytes: number; ms: number };

export interface FaultProxy {
  /** `http://127.0.0.1:<port>` */
  url: string;
  port: number;
  /** Client → server bytes forwarded since start or the last `resetCounters()`. */
  readonly upstreamBytes: number;
  /** Server → client bytes forwarded. */
  readonly downstreamBytes: number;
  readonly connections: number;
  /** Connections cut or reset by a fault. */
  readonly faults: number;
  setFault(fault: Fault): void;
  resetCounters(): void;
  close(): Promise<void>;
}

export async function startFaultProxy(target: { host?: string; port: number }): Promise<FaultProxy> {
  let fault: Fault = { kind: 'none' };
  // Client → server bytes since the fault was set, across connections: what `everyBytes` is measured in.
  let faultBytes = 0;
  let stallDone = false;
  let upstreamBytes = 0;
  let downstreamBytes = 0;
  let connections = 0;
  let faults = 0;
  const sockets = new Set<Socket>();

  const server: Server = createServer((client) => {
    connections++;
    const upstream = connect({ host: target.host ?? '127.0.0.1', port: target.port });
    sockets.add(client);
    sockets.add(upstream);
    let stalledUntil = 0;
    const kill = (how: 'cut' | 'reset') => {
      faults++;
      if (how === 'reset') {
        for (const s of [client, upstream]) {
          if (s.destroyed) continue;
          try {
            s.resetAndDestroy();
          } catch {
            s.destroy();
          }
        }
      } else {
        client.destroy();
        upstream.destroy();
      }
    };
    const closeBoth = () => {
      client.destroy();
      upstream.destroy();
      sockets.delete(client);
      sockets.delete(upstream);
    };
    client.on('error', closeBoth);
    upstream.on('error', closeBoth);
    client.on('close', closeBoth);
    upstream.on('close', closeBoth);

    /** Writes `chunk` to `to`, pausing `from` until it drains; resolves once written or the socket is gone. */
    const forward = (from: Socket, to: Socket, chunk: Buffer, count: (n: number) => void) => {
      if (to.destroyed) return;
      count(chunk.length);
      if (!to.write(chunk)) {
        from.pause();
        to.once('drain', () => from.resume());
      }
    };

    const pump = (from: Socket, to: Socket, onChunk: (chunk: Buffer) => void) => {
      from.on('data', (chunk: Buffer) => {
        const wait = stalledUntil - Date.now();
        if (wait > 0) {
          from.pause();
          setTimeout(() => {
            from.resume();
            onChunk(chunk);
          }, wait);
          return;
        }
        onChunk(chunk);
      });
      from.on('end', () => to.end());
    };

    pump(client, upstream, (chunk) => {
      let rest = chunk;
      // Bounded by the chunk: each pass forwards at least one byte or ends the connection.
      while (rest.length > 0 && !upstream.destroyed) {
        const f = fault;
        if (f.kind === 'cut' || f.kind === 'reset') {
          const untilFault = f.everyBytes - (faultBytes % f.everyBytes);
          if (rest.length >= untilFault) {
            const piece = rest.subarray(0, untilFault);
            upstreamBytes += piece.length;
            faultBytes += piece.length;
            client.pause();
            // The bytes before the fault leave first (the write callback runs once they are handed to the
            // kernel), as on a link that drops mid-stream; the rest of the chunk is lost with the connection.
            const how = f.kind;
            upstream.write(piece, () => kill(how));
            return;
          }
        } else if (f.kind === 'stall' && !stallDone && faultBytes + rest.length >= f.afterBytes) {
          const before = Math.max(0, f.afterBytes - faultBytes);
          forward(client, upstream, rest.subarray(0, before), (n) => {
            upstreamBytes += n;
            faultBytes += n;
          });
          stallDone = true;
          stalledUntil = Date.now() + f.ms;
          const remaining = rest.subarray(before);
          client.pause();
          setTimeout(() => {
            client.resume();
            forward(client, upstream, remaining, (n) => {
              upstreamBytes += n;
              faultBytes += n;
            });
          }, f.ms);
          return;
        }
        forward(client, upstream, rest, (n) => {
          upstreamBytes += n;
          faultBytes += n;
        });
        rest = Buffer.alloc(0);
      }
    });
    pump(upstream, client, (chunk) => forward(upstream, client, chunk, (n) => (downstreamBytes += n)));
  });

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const address = server.address();
  if (typeof address !== 'object' || address === null) throw new Error('proxy has no address');
  const port = address.port;

  return {
    url: `http://127.0.0.1:${port}`,
    port,
    get upstreamBytes() {
      return upstreamBytes;
    },
    get downstreamBytes() {
      return downstreamBytes;
    },
    get connections() {
      return connections;
    },
    get faults() {
      return faults;
    },
    setFault(next) {
      fault = next;
      faultBytes = 0;
      stallDone = false;
    },
    resetCounters() {
      upstreamBytes = 0;
      downstreamBytes = 0;
      connections = 0;
      faults = 0;
    },
    async close() {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
