/**
 * The exchange feature's migrations, range 2200–2299 (docs/REDESIGN.md §1.2). Empty: migration 2000
 * (storage/sqlite/schema-2000.ts) creates bindings, shares, blocks, exchange_requests and exchange_codes.
 */
import type { Migration } from "../../../storage/store.js";

export const EXCHANGE_MIGRATIONS: readonly Migration[] = [];
