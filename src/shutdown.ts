import type { Logger } from './log.js';

/**
 * Runs `close` once on SIGTERM or SIGINT, then exits. A second signal exits at once (an operator pressing
 * Ctrl-C twice means it). `close` should drain: workers finish active jobs, the API stops accepting.
 */
export function onShutdown(log: Logger, close: () => Promise<void>, graceMs = 30_000): void {
  let closing = false;
  const handler = (signal: NodeJS.Signals) => {
    if (closing) {
      log.warn({ signal }, 'second signal, exiting now');
      process.exit(1);
    }
    closing = true;
    log.info({ signal }, 'shutting down');
    const timer = setTimeout(() => {
      log.error('shutdown took too long, exiting');
      process.exit(1);
    }, graceMs);
    timer.unref();
    close().then(
      () => process.exit(0),
      (err) => {
        log.error({ err }, 'error during shutdown');
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', handler);
  process.on('SIGINT', handler);
}
