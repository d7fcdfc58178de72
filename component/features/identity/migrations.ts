/**
 * The identity feature's migrations, range 3300–3399 (docs/REDESIGN.md §1.2, §8 issue 12). The identifiers
 * themselves are the core's `identifiers` table (states `active`, `pending`, `held`); 3300 adds:
 *
 * - `identity_codes`: an open verification (a new phone number or e-mail, or the re-verification of an old one for
 *   a move): the code's SHA-256 (never the code), the wrong attempts left, its expiry. Keyed per account, so a
 *   verification someone starts for a number they do not own blocks nobody else (`identifiers` gets the row only
 *   once the code proved it).
 * - `identity_moves`: a move old → new of one account's identifier: `offered` (the old account vouched, XEP-0283
 *   0.2), `confirming` (a phone number's old number being re-verified), `done` (history, capped).
 * - `service_registrations`: the service registration messages a user's client synced, per identifier;
 *   deduplicated by (account, kind, identifier, service, provider); `status`/`mode`/`update_id` follow an update.
 * - `service_updates`: an update request (old → new identifier) waiting for, or past, the user's confirmation.
 */
import type { Migration } from "../../../storage/store.js";

const SQLITE_3300 = `
CREATE TABLE identity_codes (
  account_id INTEGER NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
  kind TEXT NOT NULL CHECK (kind IN ('tel', 'email')),
  value TEXT NOT NULL,
  purpose TEXT NOT NULL CHECK (purpose IN ('add', 'move')),
  move_id TEXT,
  code_hash TEXT NOT NULL,
  attempts_left INTEGER NOT NULL,
  expires_at INTEGER NOT NULL,
  created_at INTEGER NOT NULL,
  PRIMARY KEY (account_id, kind, value, purpose)) WITHOUT ROWID;
CREATE INDEX identity_codes_expiry ON identity_codes (expires_at);
CREATE TABLE identity_moves (
  id TEXT PRIMARY KEY,
  account_id INTEGER NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
  kind TEXT NOT NULL CHECK (kind IN ('jid', 'tel', 'email')),
  old_value TEXT NOT NULL,
  new_value TEXT NOT NULL,
  state TEXT NOT NULL CHECK (state IN ('offered', 'confirming', 'done')),
  created_at INTEGER NOT NULL,
  expires_at INTEGER NOT NULL,
  done_at INTEGER,
  seq INTEGER);
CREATE INDEX identity_moves_account ON identity_moves (account_id, state, created_at);
CREATE INDEX identity_moves_new ON identity_moves (kind, new_value, state);
CREATE TABLE service_registrations (
  id TEXT PRIMARY KEY,
  account_id INTEGER NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
  kind TEXT NOT NULL CHECK (kind IN ('jid', 'tel', 'email')),
  identifier TEXT NOT NULL,
  service TEXT NOT NULL,
  provider TEXT NOT NULL,
  remark TEXT NOT NULL,
  received_at INTEGER NOT NULL,
  created_at INTEGER NOT NULL,
  status TEXT NOT NULL CHECK (status IN ('registered', 'selected', 'updated', 'refused', 'failed', 'manual', 'done')),
  mode TEXT CHECK (mode IN ('automatic', 'manual')),
  update_id TEXT,
  new_identifier TEXT,
  reason TEXT,
  job_uid TEXT,                                   -- the provider call's webhook job (its webhook-id)
  attempts INTEGER NOT NULL DEFAULT 0,            -- provider call attempts so far
  UNIQUE (account_id, kind, identifier, service, provider));
CREATE INDEX service_registrations_update ON service_registrations (update_id) WHERE update_id IS NOT NULL;
CREATE INDEX service_registrations_job ON service_registrations (job_uid) WHERE job_uid IS NOT NULL;
CREATE TABLE service_updates (
  id TEXT PRIMARY KEY,
  account_id INTEGER NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
  kind TEXT NOT NULL CHECK (kind IN ('jid', 'tel', 'email')),
  old_value TEXT NOT NULL,
  new_value TEXT NOT NULL,
  state TEXT NOT NULL CHECK (state IN ('confirming', 'confirmed')),
  created_at INTEGER NOT NULL,
  confirmed_at INTEGER);
CREATE INDEX service_updates_account ON service_updates (account_id, created_at);
`;

const POSTGRES_3300 = SQLITE_3300.replace(/ WITHOUT ROWID/g, "").replace(/INTEGER/g, "BIGINT");

export const IDENTITY_MIGRATIONS: readonly Migration[] = [
  {
    version: 3300,
    name: "identity: verification codes, moves, registered services",
    sql: { sqlite: SQLITE_3300, postgres: POSTGRES_3300 },
  },
];
