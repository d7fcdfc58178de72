import type { Config } from "../component/config.js";
import { SqliteStore } from "./sqlite/store.js";
import type { Store } from "./store.js";

/** Opens the configured backend. New backends are added here, behind the same Store interface. */
export function openStore(config: Config): Store & { migrations: { applied: number[]; current: number } } {
  switch (config.database.driver) {
    case "sqlite":
      return new SqliteStore(config.database.path);
  }
}
