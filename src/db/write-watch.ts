import type {
  CompiledQuery,
  DatabaseConnection,
  Dialect,
  Driver,
  QueryCompiler,
  QueryResult,
  TransactionSettings,
} from 'kysely';

/**
 * Tells in-process caches that rows they were built from have changed: every committed write made through one
 * database handle, by any code path (a route, a CLI command run in-process, a worker sharing the context, a test
 * writing rows directly). Writes by other processes are not seen here; caches bound those by their TTL.
 */
export interface WriteWatch {
  /** Calls `listener` after each committed statement or transaction that wrote one of `tables`; returns the
   * unsubscribe function. */
  subscribe(tables: readonly string[], listener: () => void): () => void;
}

interface Notifier extends WriteWatch {
  notify(tables: Iterable<string>): void;
}

export function createWriteWatch(): Notifier {
  const listeners = new Set<{ tables: ReadonlySet<string>; listener: () => void }>();
  return {
    subscribe(tables, listener) {
      const entry = { tables: new Set(tables), listener };
      listeners.add(entry);
      return () => void listeners.delete(entry);
    },
    notify(tables) {
      const written = [...tables];
      for (const { tables: watched, listener } of listeners) {
        if (!written.some((t) => watched.has(t))) continue;
        try {
          listener();
        } catch {
          // A cache that fails to clear must not fail the write that already committed.
        }
      }
    },
  };
}

// Read from the SQL text, so raw `sql` statements count too. False positives (`FOR UPDATE OF`, `DO UPDATE SET`)
// name no table and only cost an extra invalidation; a missed write would serve stale data, so the match is wide.
const WRITE =
  /\b(?:insert\s+into|update|delete\s+from|truncate(?:\s+table)?|merge\s+into)\s+(?:only\s+)?(?:"?\w+"?\.)?"?(\w+)/gi;
const MAYBE_WRITE = /insert|update|delete|truncate|merge/i;

/** The tables a statement may write, lower-cased (triggers aside: subscribers list the tables those change). */
export function tablesWrittenBy(sqlText: string): string[] {
  if (!MAYBE_WRITE.test(sqlText)) return [];
  return [...sqlText.matchAll(WRITE)].map((m) => m[1]!.toLowerCase());
}

class WatchedConnection implements DatabaseConnection {
  inTransaction = false;
  /** Tables written in the open transaction: announced on COMMIT, forgotten on ROLLBACK. */
  readonly pending = new Set<string>();

  constructor(
    readonly inner: DatabaseConnection,
    private readonly watch: Notifier,
  ) {}

  async executeQuery<R>(query: CompiledQuery): Promise<QueryResult<R>> {
    const result = await this.inner.executeQuery<R>(query);
    this.wrote(tablesWrittenBy(query.sql));
    return result;
  }

  async *streamQuery<R>(query: CompiledQuery, chunkSize?: number): AsyncIterableIterator<QueryResult<R>> {
    try {
      yield* this.inner.streamQuery<R>(query, chunkSize);
    } finally {
      this.wrote(tablesWrittenBy(query.sql));
    }
  }

  private wrote(tables: string[]): void {
    if (tables.length === 0) return;
    if (this.inTransaction) for (const t of tables) this.pending.add(t);
    else this.watch.notify(tables);
  }
}

/**
 * Wraps a driver so that writes are announced once they are visible to other connections: an autocommit
 * statement when it completes, a transaction's statements when its COMMIT does. Announcing earlier would let a
 * cache refill from the old rows between the write and its commit. Only transactions the driver opens
 * (`db.transaction()`, `db.startTransaction()`) are known as such; a raw `BEGIN` sent as a statement is not.
 */
class WatchedDriver implements Driver {
  readonly #connections = new WeakMap<DatabaseConnection, WatchedConnection>();

  constructor(
    private readonly inner: Driver,
    private readonly watch: Notifier,
  ) {}

  init(): Promise<void> {
    return this.inner.init();
  }

  async acquireConnection(): Promise<DatabaseConnection> {
    const connection = await this.inner.acquireConnection();
    let watched = this.#connections.get(connection);
    if (!watched) {
      watched = new WatchedConnection(connection, this.watch);
      this.#connections.set(connection, watched);
    }
    return watched;
  }

  async beginTransaction(connection: DatabaseConnection, settings: TransactionSettings): Promise<void> {
    const c = connection as WatchedConnection;
    await this.inner.beginTransaction(c.inner, settings);
    c.pending.clear();
    c.inTransaction = true;
  }

  async commitTransaction(connection: DatabaseConnection): Promise<void> {
    const c = connection as WatchedConnection;
    try {
      await this.inner.commitTransaction(c.inner);
    } finally {
      // Announced even when the COMMIT failed: a needless invalidation is harmless, a missed one is not.
      c.inTransaction = false;
      const written = [...c.pending];
      c.pending.clear();
      if (written.length > 0) this.watch.notify(written);
    }
  }

  async rollbackTransaction(connection: DatabaseConnection): Promise<void> {
    const c = connection as WatchedConnection;
    try {
      await this.inner.rollbackTransaction(c.inner);
    } finally {
      c.inTransaction = false;
      c.pending.clear();
    }
  }

  savepoint(
    connection: DatabaseConnection,
    name: string,
    compileQuery: QueryCompiler['compileQuery'],
  ): Promise<void> {
    if (!this.inner.savepoint) throw new Error('the database driver has no savepoints');
    return this.inner.savepoint((connection as WatchedConnection).inner, name, compileQuery);
  }

  rollbackToSavepoint(
    connection: DatabaseConnection,
    name: string,
    compileQuery: QueryCompiler['compileQuery'],
  ): Promise<void> {
    if (!this.inner.rollbackToSavepoint) throw new Error('the database driver has no savepoints');
    // The tables written since the savepoint stay pending: announcing them at COMMIT costs one needless
    // invalidation at worst.
    return this.inner.rollbackToSavepoint((connection as WatchedConnection).inner, name, compileQuery);
  }

  releaseSavepoint(
    connection: DatabaseConnection,
    name: string,
    compileQuery: QueryCompiler['compileQuery'],
  ): Promise<void> {
    if (!this.inner.releaseSavepoint) throw new Error('the database driver has no savepoints');
    return this.inner.releaseSavepoint((connection as WatchedConnection).inner, name, compileQuery);
  }

  releaseConnection(connection: DatabaseConnection): Promise<void> {
    const c = connection as WatchedConnection;
    // A connection handed back inside a transaction (an error path) starts clean for its next user.
    c.inTransaction = false;
    c.pending.clear();
    return this.inner.releaseConnection(c.inner);
  }

  destroy(): Promise<void> {
    return this.inner.destroy();
  }
}

/** The dialect with its driver wrapped, so every write through the handle reaches `watch`. */
export function watchWrites(dialect: Dialect, watch: Notifier): Dialect {
  return {
    createDriver: () => new WatchedDriver(dialect.createDriver(), watch),
    createQueryCompiler: () => dialect.createQueryCompiler(),
    createAdapter: () => dialect.createAdapter(),
    createIntrospector: (db) => dialect.createIntrospector(db),
  };
}
