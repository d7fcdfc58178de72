import { SqliteStore } from "./sqlite/store.js";
import type { Store } from "./store.js";

/**
 * The `database` section of the configuration. Declared here, not in component/runtime/config.ts, because
 * storage/ imports nothing above it (docs/ARCHITECTURE.md); config.ts uses this type for its section.
 */
export interface DatabaseConfig {
  driver: "sqlite";
  path: string;
}

/** Opens the configured backend. New backends are added here, behind the same Store interface. */
export function openStore(config: {
  database: DatabaseConfig;
}): Store & { migrations: { applied: number[]; current: number } } {
  switch (config.database.driver) {
    case "sqlite":
      return new SqliteStore(config.database.path);
  }
}
