import { PostgresStore } from "./postgres/store.js";
import { SqliteStore } from "./sqlite/store.js";
import { migrations2000 } from "./sqlite/rekey-2000.js";
import type { Migration, Store, StoreOptions } from "./store.js";

/**
 * The `database` section of the configuration. Declared here, not in component/runtime/config.ts, because
 * storage/ imports nothing above it (docs/ARCHITECTURE.md); config.ts uses this type for its section. One flat
 * shape for both drivers: each reads its own keys (sqlite: path; postgres: url, poolSize) and ignores the rest.
 */
export interface DatabaseConfig {
  driver: "sqlite" | "postgres";
  path: string;
  /** PostgreSQL connection URL; '' = the libpq environment variables (PGHOST, PGPORT, PGDATABASE, PGUSER, …). */
  url: string;
  /** Most PostgreSQL connections one process opens (each running unit of work or read holds one). */
  poolSize: number;
  /** PostgreSQL: named prepared statements (optional: default true; false behind PgBouncer's transaction mode < 1.21). */
  preparedStatements?: boolean;
  /** How long a unit of work waits for another connection's lock before it fails busy (SQLite busy_timeout,
   *  PostgreSQL lock_timeout). */
  busyTimeoutMs: number;
  /** A unit of work that holds the write lock longer than this is logged as `slow-unit-of-work`. */
  txWarnMs: number;
  /**
   * SQLite: how often the checkpoint worker runs a PASSIVE WAL checkpoint (ms); 0 = SQLite's inline autocheckpoint.
   * Optional here (the config always sets it) so that a hand-made DatabaseConfig gets the checkpointer's default.
   */
  checkpointIntervalMs?: number;
  /** SQLite: WAL length (pages) at which the checkpoint worker forces a TRUNCATE checkpoint (optional: as above). */
  walLimitPages?: number;
}

/** A Store migrated at open, with what the migration did (the running app logs it). */
export type MigratedStore = Store & { migrations: { applied: number[]; current: number } };

/** The SQLite checkpointer's settings (sqlite/checkpointer.ts) from the `database` section; unset: its defaults. */
const checkpointOf = (db: DatabaseConfig) => ({
  checkpoint: {
    ...(db.checkpointIntervalMs !== undefined ? { intervalMs: db.checkpointIntervalMs } : {}),
    ...(db.walLimitPages !== undefined ? { walLimitPages: db.walLimitPages } : {}),
  },
});

/**
 * The new core's Store on the configured backend, no migrations applied (the caller runs its modules through
 * `migrate`). SQLite: the file as it is; PostgreSQL: a pool of `poolSize` connections.
 */
export async function openStore(db: DatabaseConfig, o: StoreOptions): Promise<Store> {
  const common = {
    ...o,
    busyTimeoutMs: o.busyTimeoutMs ?? db.busyTimeoutMs,
    txWarnMs: o.txWarnMs ?? db.txWarnMs,
  };
  switch (db.driver) {
    case "sqlite":
      return new SqliteStore(db.path, { ...common, ...checkpointOf(db), legacy: false });
    case "postgres": {
      const store = new PostgresStore({
        ...common,
        connection: {
          url: db.url,
          poolSize: db.poolSize,
          ...(db.preparedStatements !== undefined ? { preparedStatements: db.preparedStatements } : {}),
        },
      });
      try {
        await store.ping(); // fail at open, not at the first unit of work, when the server is not there
      } catch (e) {
        await store.close();
        throw e;
      }
      return store;
    }
  }
}

/**
 * The new core's store (docs/REDESIGN.md §2.8, step S11), migrated: an empty database gets the 2000 schema; a
 * database the old code wrote (versions 1–300) gets the legacy versions it lacks and then the rekey copy to 2000
 * in one transaction each; one at 2000 or later is left as it is. `extra` are the feature modules' own
 * migrations (versions above 2000). SQLite and PostgreSQL alike (PostgreSQL has no legacy databases).
 */
export async function openCoreStore(
  db: DatabaseConfig,
  o: StoreOptions,
  extra: readonly Migration[] = [],
): Promise<MigratedStore> {
  const store = await openStore(db, o);
  try {
    const report = await store.migrate(await coreMigrations(store, extra));
    return Object.assign(store, { migrations: { applied: report.applied, current: report.current } });
  } catch (e) {
    await store.close();
    throw e;
  }
}

/**
 * The migration list openCoreStore applies to this store: what `cardlink migrate` applies (or, dry, lists), so
 * the command and a start do the same thing to a database. It depends on where the database stands (a legacy
 * file gets the legacy versions it lacks and the rekey; an empty one the fresh 2000 DDL).
 */
export async function coreMigrations(
  store: Pick<Store, "schemaVersion">,
  extra: readonly Migration[] = [],
): Promise<Migration[]> {
  const version = await store.schemaVersion();
  return [...migrations2000({ version }), ...extra];
}
