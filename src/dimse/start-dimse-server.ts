import { createServer } from 'node:net';
import dimse from 'dcmjs-dimse';
import { sql } from 'kysely';
import type { Context } from '../context.js';
import {
  TELEREAD_IMPLEMENTATION_CLASS_UID,
  TELEREAD_IMPLEMENTATION_VERSION_NAME,
} from './create-part10-header.js';
import { MAX_PDU_LENGTH, StoreScp } from './store-scp.js';

export interface DimseServerOptions {
  /** Defaults to DICOM_PORT; 0 picks a free port (reported back as `port`). */
  port?: number;
  /** Defaults to HOST. */
  host?: string;
  /** How long close() lets open associations finish before aborting them (default 10 s). */
  shutdownGraceMs?: number;
  /** Associations served at once; more are rejected as "local limit exceeded" (default 64). */
  maxAssociations?: number;
}

export interface DimseServer {
  port: number;
  close(): Promise<void>;
}

/** dcmjs-dimse keeps its logger and implementation identity process-wide; Teleread is its only user here. */
function configureLibrary(): void {
  // The library logs every PDU to the console at trace level by default; Teleread logs through pino instead.
  dimse.log.setLevel('silent');
  dimse.Implementation.setImplementationClassUid(TELEREAD_IMPLEMENTATION_CLASS_UID);
  dimse.Implementation.setImplementationVersion(TELEREAD_IMPLEMENTATION_VERSION_NAME);
  dimse.Implementation.setMaxPduLength(MAX_PDU_LENGTH);
}

/**
 * The DIMSE door: a C-ECHO / C-STORE SCP on DICOM_PORT answering to DICOM_AE_TITLE. Each calling AE title maps
 * to the site that lists it in `ae_titles`; instances go through the same receive path as HTTP uploads.
 */
export async function startDimseServer(ctx: Context, opts: DimseServerOptions = {}): Promise<DimseServer> {
  configureLibrary();
  const host = opts.host ?? ctx.config.host;
  const log = ctx.log.child({ component: 'dimse' });
  const maxAssociations = opts.maxAssociations ?? 64;
  const associations = new Set<StoreScp>();
  let closing = false;

  const siteForCallingAe = async (callingAe: string): Promise<string | null> => {
    if (callingAe === '') return null;
    const rows = await ctx.db
      .selectFrom('sites')
      .select('id')
      .where(sql<boolean>`exists (select 1 from unnest(ae_titles) as t(ae) where btrim(t.ae) = ${callingAe})`)
      .orderBy('id')
      .execute();
    if (rows.length > 1) {
      // Sending a modality's studies to the wrong clinic would be a breach; refuse until the sites are fixed.
      log.error(
        { callingAe, sites: rows.map((r) => r.id) },
        'calling AE title is listed by more than one site; rejecting it',
      );
      return null;
    }
    return rows[0]?.id ?? null;
  };

  const server = createServer((socket) => {
    if (closing) {
      socket.destroy();
      return;
    }
    const scp = new StoreScp(socket, {
      ctx,
      log,
      siteForCallingAe,
      refuseNewAssociation: () => (closing ? 'closing' : associations.size > maxAssociations ? 'busy' : null),
    });
    associations.add(scp);
    void scp.settled.then(() => associations.delete(scp));
  });
  server.on('error', (err) => log.error({ err }, 'DIMSE listener error'));

  await new Promise<void>((resolve, reject) => {
    const onError = (err: Error) => reject(err);
    server.once('error', onError);
    server.listen(opts.port ?? ctx.config.dicomPort, host, () => {
      server.off('error', onError);
      resolve();
    });
  });
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : 0;
  log.info({ host, port, aeTitle: ctx.config.dicomAeTitle }, 'DIMSE listener started');

  let closed: Promise<void> | null = null;
  return {
    port,
    close() {
      closed ??= (async () => {
        closing = true;
        const stopped = new Promise<void>((resolve) => server.close(() => resolve()));
        const graceMs = opts.shutdownGraceMs ?? 10_000;
        let timer: NodeJS.Timeout | undefined;
        const drained = Promise.all([...associations].map((a) => a.settled));
        const timedOut = await Promise.race([
          drained.then(() => false),
          new Promise<boolean>((resolve) => {
            timer = setTimeout(() => resolve(true), graceMs);
          }),
        ]);
        clearTimeout(timer);
        if (timedOut) for (const a of associations) a.abortForShutdown();
        await Promise.all([...associations].map((a) => a.settled));
        await stopped;
        log.info({ abortedAfterGrace: timedOut }, 'DIMSE listener stopped');
      })();
      return closed;
    },
  };
}
