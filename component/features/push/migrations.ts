/**
 * The push feature's migration range, 2300–2399 (docs/REDESIGN.md §1.2). Empty: migration 2000 creates
 * push_nodes and push_sends (storage/sqlite/schema-2000.ts). A later change to these tables is a new entry here.
 */
import type { Migration } from "../../../storage/store.js";

export const PUSH_MIGRATIONS: readonly Migration[] = [];
