/**
 * The address book's migrations, range 3000–3099 (docs/REDESIGN.md §1.2, §8 issue 9). 3000 creates the book:
 * `book_entries` (an entry per row: the stored card as canonical JSON with its version, hash and the seq of its
 * last change; a deleted entry stays as a tombstone row with `card` NULL until the book prunes it; `linked_owner`
 * names the account whose card the entry follows, `edited` the fields the owner made their own) and `books` (one
 * row per book that has pruned tombstones: its sync horizon). 3010 adds update requests (the issue's second part,
 * request-*.ts; PROTOCOL §20.11): `book_requests`, one row per request — open until answered, declined, expired or
 * withdrawn, then kept closed for an hour (the hourly rate limit counts stored rows; a late answer to a closed
 * request is told what happened to it) and pruned by the sweep. At most one open request per (owner, target): a
 * partial unique index, so two concurrent requests cannot both commit. Versions 3010–3099 are the requests'.
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

const REQUESTS_SQLITE = `
CREATE TABLE book_requests (
  id TEXT PRIMARY KEY,
  owner INTEGER NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,   -- A: whose book
  target INTEGER NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,  -- B: who is asked
  entry TEXT NOT NULL,                            -- book_entries.id of A's entry
  form TEXT NOT NULL,                             -- form | address | pick
  state TEXT NOT NULL,                            -- open | answered | declined | expired | withdrawn
  hidden INTEGER NOT NULL,                        -- 1: B blocks A; never shown to B
  created_at INTEGER NOT NULL, expires_at INTEGER NOT NULL,
  closed_at INTEGER);                             -- NULL while open
CREATE UNIQUE INDEX book_requests_open ON book_requests (owner, target) WHERE state = 'open';
CREATE INDEX book_requests_target ON book_requests (target, created_at);
CREATE INDEX book_requests_owner ON book_requests (owner, created_at);
CREATE INDEX book_requests_expiry ON book_requests (expires_at) WHERE state = 'open';
CREATE INDEX book_requests_closed ON book_requests (closed_at) WHERE closed_at IS NOT NULL;
CREATE INDEX book_requests_entry ON book_requests (entry);
`;

const REQUESTS_POSTGRES = `
CREATE TABLE book_requests (
  id TEXT PRIMARY KEY,
  owner BIGINT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
  target BIGINT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
  entry TEXT NOT NULL,
  form TEXT NOT NULL,
  state TEXT NOT NULL,
  hidden INTEGER NOT NULL,
  created_at BIGINT NOT NULL, expires_at BIGINT NOT NULL,
  closed_at BIGINT);
CREATE UNIQUE INDEX book_requests_open ON book_requests (owner, target) WHERE state = 'open';
CREATE INDEX book_requests_target ON book_requests (target, created_at);
CREATE INDEX book_requests_owner ON book_requests (owner, created_at);
CREATE INDEX book_requests_expiry ON book_requests (expires_at) WHERE state = 'open';
CREATE INDEX book_requests_closed ON book_requests (closed_at) WHERE closed_at IS NOT NULL;
CREATE INDEX book_requests_entry ON book_requests (entry);
`;

export const BOOK_MIGRATIONS: readonly Migration[] = [
  { version: 3000, name: "address book entries", sql: { sqlite: SQLITE, postgres: POSTGRES } },
  {
    version: 3010,
    name: "address book update requests",
    sql: { sqlite: REQUESTS_SQLITE, postgres: REQUESTS_POSTGRES },
  },
];
