/**
 * The redesign's schema (docs/REDESIGN.md §2.6), SQLite DDL, copied verbatim: every table keyed by account id,
 * the per-account stream with its cursors, the jobs table, tombstones, and the features' tables.
 *
 * Not registered with the running app: it keeps the legacy migrations (1, 100, 200) until the switch (issue 8
 * S11). This is the fresh-install path for the new code (the runner's `allMigrationsV2()`, S2a's migrate.ts
 * half); S2b's rekey-2000.ts is the upgrade path, which builds the same tables from a version-200 database.
 * test/unit/schema-2000.test.ts loads it and checks its constraints and the hot queries' plans (§2.7).
 * SCHEMA_2000 below also carries the PostgreSQL baseline (storage/postgres/schema-2000.ts, issue 13), which
 * test/contract/postgres.test.ts checks against this DDL's catalogue.
 */
import { SCHEMA_2000_POSTGRES_DDL } from "../postgres/schema-2000.js";
import type { Migration } from "../store.js";

/** §2.6 exactly as written there (statements separated by `;`, SQL comments kept). */
export const SCHEMA_2000_DDL = `
-- runtime ---------------------------------------------------------------------------------------------------------
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);       -- kept: 'secret:push-ref-key' and other secrets
CREATE TABLE counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL); -- 'seq': the global change number (§2.4)
CREATE TABLE processes (id TEXT PRIMARY KEY, started_at INTEGER NOT NULL, heartbeat_at INTEGER NOT NULL);

CREATE TABLE accounts (
  id INTEGER PRIMARY KEY,
  state TEXT NOT NULL DEFAULT 'active' CHECK (state IN ('active', 'placeholder', 'deleted')),
  created_at INTEGER NOT NULL,
  seen_at INTEGER);                                                  -- last request; NULL for placeholders
CREATE TABLE identifiers (
  kind TEXT NOT NULL CHECK (kind IN ('jid', 'tel', 'email')),
  value TEXT NOT NULL,
  account_id INTEGER NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
  state TEXT NOT NULL DEFAULT 'active' CHECK (state IN ('active', 'pending', 'held')),
  is_primary INTEGER NOT NULL DEFAULT 0,
  verified_at INTEGER, held_until INTEGER, created_at INTEGER NOT NULL,
  PRIMARY KEY (kind, value)) WITHOUT ROWID;
CREATE INDEX identifiers_account ON identifiers (account_id);
CREATE UNIQUE INDEX identifiers_primary ON identifiers (account_id) WHERE is_primary = 1;

CREATE TABLE devices (
  id INTEGER PRIMARY KEY,                                            -- internal device key (cursors, jobs, nodes)
  account_id INTEGER NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
  device_id TEXT NOT NULL,                                           -- the client's id, on the wire
  platform TEXT NOT NULL, name TEXT, push_token TEXT, push_topic TEXT, push_key TEXT,
  token_state TEXT NOT NULL DEFAULT 'none', created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL,
  UNIQUE (account_id, device_id));
CREATE INDEX devices_token ON devices (push_token) WHERE push_token IS NOT NULL;

CREATE TABLE resources (                                             -- last known available resources
  full_jid TEXT PRIMARY KEY,
  account_id INTEGER NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
  device INTEGER REFERENCES devices (id) ON DELETE SET NULL,         -- set by <active-device/>
  process TEXT, since INTEGER NOT NULL);
CREATE INDEX resources_account ON resources (account_id);
CREATE TABLE subscribers (account_id INTEGER PRIMARY KEY REFERENCES accounts (id) ON DELETE CASCADE,
  since INTEGER NOT NULL);

-- runtime/queue ---------------------------------------------------------------------------------------------------
CREATE TABLE payloads (id INTEGER PRIMARY KEY, kind TEXT NOT NULL, body TEXT NOT NULL, created_at INTEGER NOT NULL);
CREATE TABLE stream_entries (
  id INTEGER PRIMARY KEY,                       -- rowid table: an upsert moves (seq, ord) without moving the row
  account_id INTEGER NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,   -- the lane
  seq INTEGER NOT NULL, ord INTEGER NOT NULL,
  kind TEXT NOT NULL, subject TEXT NOT NULL, subject_account INTEGER,
  payload_id INTEGER REFERENCES payloads (id), created_at INTEGER NOT NULL);
CREATE INDEX stream_lane ON stream_entries (account_id, seq, ord, id);            -- delivery reads, GC
CREATE UNIQUE INDEX stream_coalesce ON stream_entries (account_id, kind, subject); -- coalescing, retract
CREATE INDEX stream_seq ON stream_entries (seq);                                   -- observers (push-scan)
CREATE INDEX stream_subject_account ON stream_entries (subject_account) WHERE subject_account IS NOT NULL;
CREATE INDEX stream_payload ON stream_entries (payload_id) WHERE payload_id IS NOT NULL;
CREATE INDEX stream_kind ON stream_entries (kind, created_at);                   -- depth gauges (runtime.ts)
CREATE TABLE stream_cursors (
  id INTEGER PRIMARY KEY,                       -- handle for batched claims/acks (jsonIds)
  account_id INTEGER NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
  consumer INTEGER NOT NULL,                    -- 0 = shared cursor; else devices.id (deleted with the device, in-tx)
  pos INTEGER NOT NULL,
  state TEXT NOT NULL DEFAULT 'active' CHECK (state IN ('active', 'dormant')),
  attempts INTEGER NOT NULL DEFAULT 0, next_at INTEGER NOT NULL DEFAULT 0,
  lease_owner TEXT, lease_until INTEGER NOT NULL DEFAULT 0,
  inflight_iq TEXT, inflight_upto INTEGER,
  seen_at INTEGER NOT NULL,                     -- last ack: dormancy
  UNIQUE (account_id, consumer));
CREATE INDEX stream_cursors_retry ON stream_cursors (next_at) WHERE next_at > 0;
CREATE INDEX stream_cursors_lease ON stream_cursors (lease_owner) WHERE lease_owner IS NOT NULL;
CREATE TABLE jobs (
  id INTEGER PRIMARY KEY, channel TEXT NOT NULL, kind TEXT NOT NULL, target TEXT NOT NULL,
  account_id INTEGER REFERENCES accounts (id) ON DELETE CASCADE,
  device INTEGER REFERENCES devices (id) ON DELETE CASCADE,
  ckey TEXT, body TEXT NOT NULL, rev INTEGER NOT NULL DEFAULT 1, uid TEXT NOT NULL,
  attempts INTEGER NOT NULL DEFAULT 0, next_at INTEGER NOT NULL DEFAULT 0, expires_at INTEGER NOT NULL DEFAULT 0,
  lease_owner TEXT, lease_until INTEGER NOT NULL DEFAULT 0, last_error TEXT, created_at INTEGER NOT NULL);
CREATE UNIQUE INDEX jobs_coalesce ON jobs (channel, target, ckey) WHERE ckey IS NOT NULL;
CREATE INDEX jobs_due ON jobs (channel, next_at);
CREATE INDEX jobs_account ON jobs (account_id) WHERE account_id IS NOT NULL;
CREATE INDEX jobs_device ON jobs (channel, device, created_at);  -- push depth gauges, dropJobs by device/token
CREATE TABLE dead_letters (
  id INTEGER PRIMARY KEY, channel TEXT NOT NULL, kind TEXT NOT NULL, target TEXT NOT NULL, account_id INTEGER,
  body TEXT NOT NULL, uid TEXT NOT NULL, attempts INTEGER NOT NULL, last_error TEXT,
  created_at INTEGER NOT NULL, died_at INTEGER NOT NULL);
CREATE INDEX dead_letters_channel ON dead_letters (channel, died_at);
CREATE TABLE queue_marks (name TEXT PRIMARY KEY, pos INTEGER NOT NULL, lease_owner TEXT,
  lease_until INTEGER NOT NULL DEFAULT 0);

-- runtime/audience ------------------------------------------------------------------------------------------------
CREATE TABLE tombstones (                       -- holder stopped seeing owner at seq (every path closed)
  holder INTEGER NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
  owner INTEGER NOT NULL,                       -- no FK: outlives a deleted owner until retention (issue 14)
  seq INTEGER NOT NULL, PRIMARY KEY (holder, owner)) WITHOUT ROWID;
CREATE INDEX tombstones_seq ON tombstones (holder, seq);

-- features/cards --------------------------------------------------------------------------------------------------
CREATE TABLE cards (
  account_id INTEGER PRIMARY KEY REFERENCES accounts (id) ON DELETE CASCADE,
  version INTEGER NOT NULL, hash TEXT NOT NULL, card TEXT NOT NULL, seq INTEGER NOT NULL, updated_at INTEGER NOT NULL);

-- features/exchange -----------------------------------------------------------------------------------------------
CREATE TABLE bindings (
  id TEXT PRIMARY KEY,
  a INTEGER NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
  b INTEGER NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
  a_devices TEXT NOT NULL, b_devices TEXT NOT NULL,                  -- device ids (wire strings) at binding time
  via TEXT NOT NULL, created_at INTEGER NOT NULL,
  CHECK (a < b), UNIQUE (a, b));
CREATE INDEX bindings_b ON bindings (b, a);                          -- the index issue 8 found missing
CREATE TABLE shares (                                                -- the \`binding\` audience path, directed
  owner INTEGER NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
  holder INTEGER NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
  binding_id TEXT NOT NULL REFERENCES bindings (id) ON DELETE CASCADE,
  policy TEXT, seq INTEGER NOT NULL,
  PRIMARY KEY (owner, holder)) WITHOUT ROWID;
CREATE INDEX shares_holder ON shares (holder, owner);
CREATE INDEX shares_binding ON shares (binding_id);
CREATE TABLE blocks (
  owner INTEGER NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
  blocked INTEGER NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
  created_at INTEGER NOT NULL, PRIMARY KEY (owner, blocked)) WITHOUT ROWID;
CREATE TABLE exchange_requests (
  id TEXT PRIMARY KEY,
  from_account INTEGER NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
  to_account INTEGER NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
  from_device TEXT, created_at INTEGER NOT NULL, expires_at INTEGER NOT NULL,
  UNIQUE (from_account, to_account));
CREATE INDEX exchange_requests_to ON exchange_requests (to_account, created_at);
CREATE INDEX exchange_requests_expiry ON exchange_requests (expires_at);
CREATE TABLE exchange_codes (
  code TEXT PRIMARY KEY, owner INTEGER NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
  device_id TEXT, created_at INTEGER NOT NULL, expires_at INTEGER NOT NULL);
CREATE INDEX exchange_codes_owner ON exchange_codes (owner);
CREATE INDEX exchange_codes_expiry ON exchange_codes (expires_at);

-- features/push ---------------------------------------------------------------------------------------------------
CREATE TABLE push_nodes (
  node TEXT PRIMARY KEY,
  device INTEGER NOT NULL UNIQUE REFERENCES devices (id) ON DELETE CASCADE,   -- one node per device
  secret TEXT NOT NULL, created_at INTEGER NOT NULL);
CREATE TABLE push_sends (token TEXT NOT NULL, sent_at INTEGER NOT NULL);     -- hourly budget per token
CREATE INDEX push_sends_token ON push_sends (token, sent_at);
`;

/**
 * The rows a fresh install needs that §2.6's DDL does not create: the seq counter (u.seq() is an UPDATE of this
 * row, §2.4) and the push-scan observer's mark (§2.3.7), both at 0 — an empty database has no change yet. The
 * upgrade path (§2.8.2 steps 2 and 7) writes the same two rows from the old database's values instead.
 */
export const SCHEMA_2000_FRESH_ROWS = `
INSERT INTO counters (name, value) VALUES ('seq', 0);
INSERT INTO queue_marks (name, pos, lease_owner, lease_until) VALUES ('push-scan', 0, NULL, 0);
`;

/**
 * Migration 2000 for a new database, on both backends: one Migration per version, one text per backend. The
 * PostgreSQL text (issue 13's baseline) is §2.6 translated by §2.1's rules (storage/postgres/schema-2000.ts); the
 * fresh rows are portable SQL.
 */
export const SCHEMA_2000: Migration = {
  version: 2000,
  name: "accounts: every table keyed by account id",
  sql: {
    sqlite: SCHEMA_2000_DDL + SCHEMA_2000_FRESH_ROWS,
    postgres: SCHEMA_2000_POSTGRES_DDL + SCHEMA_2000_FRESH_ROWS,
  },
};
