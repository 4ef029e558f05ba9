import { Redis } from 'ioredis';
import type { Config } from './config.js';
import { createDatabase, type Db, migrateToLatest } from './db/database.js';
import { closeDecodePool } from './imaging/decode-pool.js';
import { createLogger, type Logger } from './log.js';
import { createQueues, type Queues } from './pipeline/queues.js';
import { createObjectStore } from './storage/create-object-store.js';
import type { ObjectStore } from './storage/object-store.js';

/**
 * Everything a process needs to talk to the outside world, created once and passed as an argument
 * (no DI container, no module singletons). `close()` releases it all in reverse order.
 */
export interface Context {
  config: Config;
  log: Logger;
  db: Db;
  storage: ObjectStore;
  redis: Redis;
  queues: Queues;
  close(): Promise<void>;
}

export async function createContext(
  config: Config,
  options: { log?: Logger; migrate?: boolean } = {},
): Promise<Context> {
  const log = options.log ?? createLogger(config.logLevel);
  const db = createDatabase(config.databaseUrl);
  if (options.migrate ?? config.migrateOnStart) {
    const applied = await migrateToLatest(db);
    if (applied.length > 0) log.info({ applied }, 'database migrated');
  }
  const storage = createObjectStore(config.storageUrl);
  // BullMQ workers need maxRetriesPerRequest: null (blocking commands must not give up).
  const redis = new Redis(config.redisUrl, { maxRetriesPerRequest: null, lazyConnect: false });
  redis.on('error', (err) => log.warn({ err: err.message }, 'redis connection error'));
  const queues = createQueues(redis, config.queuePrefix);
  return {
    config,
    log,
    db,
    storage,
    redis,
    queues,
    async close() {
      await Promise.allSettled(Object.values(queues).map((q) => q.close()));
      await redis.quit().catch(() => redis.disconnect());
      await storage.close();
      await db.destroy();
      // Decode threads start lazily on the first large compressed frame; ending them lets the process exit.
      await closeDecodePool();
    },
  };
}
