/**
 * The address book's migrations, range 3000–3099 (docs/REDESIGN.md §1.2, §8 issue 9). 3000 creates the book:
 * `book_entries` (an entry per row: the stored card as canonical JSON with its version, hash and the seq of its
 * last change; a deleted entry stays as a tombstone row with `card` NULL until the book prunes it; `linked_owner`
 * names the account whose card the entry follows, `edited` the fields the owner made their own) and `books` (one
 * row per book that has pruned tombstones: its sync horizon). Update requests (the second part) add their
 * own table in a later migration of this range.
 */
import type { Migration } from "../../../storage/store.js";

const SQLITE = `
CREATE TABLE book_entries (
  id TEXT PRIMARY KEY,
  owner INTEGER NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
  version INTEGER NOT NULL,
  hash TEXT,                                      -- NULL for a tombstone
  card TEXT,                                      -- canonical JSON; NULL = deleted (tombstone)
  bytes INTEGER NOT NULL,                         -- UTF-8 bytes of card (0 for a tombstone): book.maxBytes
  linked_owner INTEGER REFERENCES accounts (id) ON DELETE SET NULL,
  edited TEXT NOT NULL,                           -- JSON array of field names the owner edited (linked entries)
  seq INTEGER NOT NULL,
  created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL);
CREATE INDEX book_entries_sync ON book_entries (owner, seq, id);
CREATE INDEX book_entries_list ON book_entries (owner, id);
CREATE INDEX book_entries_linked ON book_entries (linked_owner) WHERE linked_owner IS NOT NULL;
CREATE TABLE books (
  owner INTEGER PRIMARY KEY REFERENCES accounts (id) ON DELETE CASCADE,
  horizon INTEGER NOT NULL);                      -- highest seq of a pruned tombstone
`;

const POSTGRES = `
CREATE TABLE book_entries (
  id TEXT PRIMARY KEY,
  owner BIGINT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
  version BIGINT NOT NULL,
  hash TEXT,
  card TEXT,
  bytes BIGINT NOT NULL,
  linked_owner BIGINT REFERENCES accounts (id) ON DELETE SET NULL,
  edited TEXT NOT NULL,
  seq BIGINT NOT NULL,
  created_at BIGINT NOT NULL, updated_at BIGINT NOT NULL);
CREATE INDEX book_entries_sync ON book_entries (owner, seq, id);
CREATE INDEX book_entries_list ON book_entries (owner, id);
CREATE INDEX book_entries_linked ON book_entries (linked_owner) WHERE linked_owner IS NOT NULL;
CREATE TABLE books (
  owner BIGINT PRIMARY KEY REFERENCES accounts (id) ON DELETE CASCADE,
  horizon BIGINT NOT NULL);
`;

export const BOOK_MIGRATIONS: readonly Migration[] = [
  { version: 3000, name: "address book entries", sql: { sqlite: SQLITE, postgres: POSTGRES } },
];
