import { flattenModules } from "./migrate.js";
import { LEGACY } from "./sqlite/legacy.js";
import { SqliteStore } from "./sqlite/store.js";
import type { Repos, Store, StoreOptions } from "./store.js";

/**
 * The `database` section of the configuration. Declared here, not in component/runtime/config.ts, because
 * storage/ imports nothing above it (docs/ARCHITECTURE.md); config.ts uses this type for its section.
 */
export interface DatabaseConfig {
  driver: "sqlite";
  path: string;
  /** How long a connection waits for another one's write lock before the unit of work fails busy (SQLite). */
  busyTimeoutMs: number;
  /** A unit of work that holds the write lock longer than this is logged as `slow-unit-of-work`. */
  txWarnMs: number;
}

/** A Store that also carries the old repositories (until the switch, S11), as the running app uses it. */
export type AppStore = Store & Repos & { migrations: { applied: number[]; current: number } };

/**
 * Opens the configured backend and applies the legacy migrations (storage/sqlite/legacy.ts). Async because the PostgreSQL backend
 * (issue 13) connects and migrates asynchronously; new backends are added here, behind the same interfaces.
 */
export async function openStore(db: DatabaseConfig, o: StoreOptions): Promise<AppStore> {
  switch (db.driver) {
    case "sqlite": {
      const store = new SqliteStore(db.path, {
        ...o,
        legacy: false,
        busyTimeoutMs: o.busyTimeoutMs ?? db.busyTimeoutMs,
        txWarnMs: o.txWarnMs ?? db.txWarnMs,
      });
      try {
        // The legacy versions 1/100/200 through the backend-neutral runner (the same SQL as db.ts migrate()).
        await store.migrate(flattenModules([LEGACY]));
      } catch (e) {
        await store.close();
        throw e;
      }
      return store;
    }
  }
}
