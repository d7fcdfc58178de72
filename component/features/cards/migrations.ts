/**
 * Cards' migrations, range 2100–2199 (docs/REDESIGN.md §1.2). Empty: schema 2000 creates the cards table
 * (storage/sqlite/schema-2000.ts); the first change to it after the redesign is 2100.
 */
import type { Migration } from "../../../storage/store.js";

export const CARD_MIGRATIONS: readonly Migration[] = [];
