/**
 * The linked-accounts feature's migrations, range 3200–3299 (docs/REDESIGN.md §1.2; PROTOCOL.md §22). Text ids
 * (random UUIDs), so both backends insert without an identity column.
 *
 * - `link_sets`: one person's set of linked accounts and the set's current profile values (the last change any
 *   member reported): nickname, status text, avatar (the bytes as sent, base64, never re-encoded; `avatar_id` is
 *   the SHA-1 of the bytes). Sync messages are rendered from these values when they are sent.
 * - `link_members`: an account in a set: an XMPP account (`account_id`) or an account of a configured service
 *   (`connector`, `external_id`: the service's account name — never a password). `settings` are the settings it
 *   takes part in; `recent` (echo guard) the hashes of the last values cardlink sent it, per setting; `published`
 *   the hashes cardlink published to its PEP (XEP-0356), so an unchanged avatar is not published again.
 * - `link_pending`: a link request to another XMPP account (`to_account`), or a service link waiting for its
 *   one-time code (`connector`, `external_id`, `code_hash` = SHA-256 of the code).
 */
import type { Migration } from "../../../storage/store.js";

const tables = (int: string): string => `
CREATE TABLE link_sets (
  id TEXT PRIMARY KEY,
  nickname TEXT,
  status TEXT,
  avatar_id TEXT,
  avatar_type TEXT,
  avatar_bytes ${int},
  avatar_width ${int},
  avatar_height ${int},
  avatar_data TEXT,
  created_at ${int} NOT NULL,
  updated_at ${int} NOT NULL);
CREATE TABLE link_members (
  id TEXT PRIMARY KEY,
  set_id TEXT NOT NULL REFERENCES link_sets (id) ON DELETE CASCADE,
  account_id ${int} REFERENCES accounts (id) ON DELETE CASCADE,
  connector TEXT,
  external_id TEXT,
  settings TEXT NOT NULL,
  recent TEXT NOT NULL DEFAULT '{}',
  published TEXT NOT NULL DEFAULT '{}',
  created_at ${int} NOT NULL,
  CHECK ((account_id IS NOT NULL AND connector IS NULL AND external_id IS NULL)
      OR (account_id IS NULL AND connector IS NOT NULL AND external_id IS NOT NULL)),
  UNIQUE (account_id),
  UNIQUE (connector, external_id));
CREATE INDEX link_members_set ON link_members (set_id);
CREATE TABLE link_pending (
  id TEXT PRIMARY KEY,
  from_account ${int} NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
  to_account ${int} REFERENCES accounts (id) ON DELETE CASCADE,
  connector TEXT,
  external_id TEXT,
  settings TEXT NOT NULL,
  code_hash TEXT,
  expires_at ${int} NOT NULL,
  created_at ${int} NOT NULL,
  CHECK ((to_account IS NOT NULL AND connector IS NULL AND external_id IS NULL AND code_hash IS NULL)
      OR (to_account IS NULL AND connector IS NOT NULL AND external_id IS NOT NULL AND code_hash IS NOT NULL)),
  UNIQUE (from_account, to_account),
  UNIQUE (from_account, connector, external_id));
CREATE INDEX link_pending_to ON link_pending (to_account);
CREATE INDEX link_pending_expiry ON link_pending (expires_at);
`;

export const LINKED_MIGRATIONS: readonly Migration[] = [
  {
    version: 3200,
    name: "linked: sets, members, pending requests and service verifications",
    sql: { sqlite: tables("INTEGER"), postgres: tables("BIGINT") },
  },
];
