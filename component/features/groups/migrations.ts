/**
 * The groups feature's migrations, range 3100–3199 (docs/REDESIGN.md §1.2, §3.6). 3100 creates the group tables;
 * each text runs on its own backend (storage/sqlite/schema-2000.ts and storage/postgres/schema-2000.ts show the
 * dialect rules: SQLite `WITHOUT ROWID` and INTEGER; PostgreSQL BIGINT).
 *
 * - `groups`: one row per group; `owner` is also a member row with role 'owner'; `invite` says who may invite;
 *   `seq` is the last change of the group row (and the row UPDATE that serializes one group's changes).
 * - `group_members`: the `group` audience path (owner m1 → holder m2 over one group); `policy` is the member's
 *   share policy for the group (JSON SharePolicy, NULL = everything), `seq` when it last changed.
 * - `group_invitations`: pending invitations by JID; `hidden` = the invitee blocks the inviter: kept so the
 *   inviter sees an invitation that is never answered (PROTOCOL §21.4), never shown to the invitee.
 * - `group_exemptions`: X (`owner`) exempts Y (`exempt`) from receiving X's card through groups. Read by the path's
 *   `where` clause; written by the exemption requests (issue 10's next part).
 */
import type { Migration } from "../../../storage/store.js";

const SQLITE_3100 = `
CREATE TABLE groups (
  id TEXT PRIMARY KEY,
  name TEXT NOT NULL,
  description TEXT NOT NULL DEFAULT '',
  owner INTEGER NOT NULL REFERENCES accounts (id),
  invite TEXT NOT NULL DEFAULT 'admins' CHECK (invite IN ('owner', 'admins', 'members')),
  created_at INTEGER NOT NULL,
  seq INTEGER NOT NULL);
CREATE INDEX groups_owner ON groups (owner);
CREATE TABLE group_members (
  group_id TEXT NOT NULL REFERENCES groups (id) ON DELETE CASCADE,
  account_id INTEGER NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
  role TEXT NOT NULL CHECK (role IN ('owner', 'admin', 'member')),
  policy TEXT,
  seq INTEGER NOT NULL,
  joined_at INTEGER NOT NULL,
  PRIMARY KEY (group_id, account_id)) WITHOUT ROWID;
CREATE INDEX group_members_account ON group_members (account_id, group_id);
CREATE TABLE group_invitations (
  id TEXT PRIMARY KEY,
  group_id TEXT NOT NULL REFERENCES groups (id) ON DELETE CASCADE,
  invitee INTEGER NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
  inviter INTEGER NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
  hidden INTEGER NOT NULL DEFAULT 0 CHECK (hidden IN (0, 1)),
  created_at INTEGER NOT NULL,
  expires_at INTEGER NOT NULL,
  UNIQUE (group_id, invitee));
CREATE INDEX group_invitations_invitee ON group_invitations (invitee, created_at);
CREATE INDEX group_invitations_inviter ON group_invitations (inviter);
CREATE INDEX group_invitations_expiry ON group_invitations (expires_at);
CREATE TABLE group_exemptions (
  owner INTEGER NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
  exempt INTEGER NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
  created_at INTEGER NOT NULL,
  PRIMARY KEY (owner, exempt)) WITHOUT ROWID;
CREATE INDEX group_exemptions_exempt ON group_exemptions (exempt);
`;

const POSTGRES_3100 = `
CREATE TABLE groups (
  id TEXT PRIMARY KEY,
  name TEXT NOT NULL,
  description TEXT NOT NULL DEFAULT '',
  owner BIGINT NOT NULL REFERENCES accounts (id),
  invite TEXT NOT NULL DEFAULT 'admins' CHECK (invite IN ('owner', 'admins', 'members')),
  created_at BIGINT NOT NULL,
  seq BIGINT NOT NULL);
CREATE INDEX groups_owner ON groups (owner);
CREATE TABLE group_members (
  group_id TEXT NOT NULL REFERENCES groups (id) ON DELETE CASCADE,
  account_id BIGINT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
  role TEXT NOT NULL CHECK (role IN ('owner', 'admin', 'member')),
  policy TEXT,
  seq BIGINT NOT NULL,
  joined_at BIGINT NOT NULL,
  PRIMARY KEY (group_id, account_id));
CREATE INDEX group_members_account ON group_members (account_id, group_id);
CREATE TABLE group_invitations (
  id TEXT PRIMARY KEY,
  group_id TEXT NOT NULL REFERENCES groups (id) ON DELETE CASCADE,
  invitee BIGINT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
  inviter BIGINT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
  hidden INTEGER NOT NULL DEFAULT 0 CHECK (hidden IN (0, 1)),
  created_at BIGINT NOT NULL,
  expires_at BIGINT NOT NULL,
  UNIQUE (group_id, invitee));
CREATE INDEX group_invitations_invitee ON group_invitations (invitee, created_at);
CREATE INDEX group_invitations_inviter ON group_invitations (inviter);
CREATE INDEX group_invitations_expiry ON group_invitations (expires_at);
CREATE TABLE group_exemptions (
  owner BIGINT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
  exempt BIGINT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
  created_at BIGINT NOT NULL,
  PRIMARY KEY (owner, exempt));
CREATE INDEX group_exemptions_exempt ON group_exemptions (exempt);
`;

/**
 * 3101 (issue 10, second part): `group_members.poll_seconds` — the member's chosen polling interval for the group
 * (NULL = push: card changes of co-members are queued and pushed; a number = pull: no `card` entries through the
 * group path, the member pulls `<group-sync/>` at that interval); `group_departures` — who left or was removed from
 * a group and at which seq, so `<group-sync/>` can name them `<removed/>` (one row per (group, account), replaced on
 * each departure; gone with the group or the account).
 */
const SQLITE_3101 = `
ALTER TABLE group_members ADD COLUMN poll_seconds INTEGER;
CREATE TABLE group_departures (
  group_id TEXT NOT NULL REFERENCES groups (id) ON DELETE CASCADE,
  account_id INTEGER NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
  seq INTEGER NOT NULL,
  PRIMARY KEY (group_id, account_id)) WITHOUT ROWID;
CREATE INDEX group_departures_account ON group_departures (account_id);
`;
const POSTGRES_3101 = `
ALTER TABLE group_members ADD COLUMN poll_seconds BIGINT;
CREATE TABLE group_departures (
  group_id TEXT NOT NULL REFERENCES groups (id) ON DELETE CASCADE,
  account_id BIGINT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
  seq BIGINT NOT NULL,
  PRIMARY KEY (group_id, account_id));
CREATE INDEX group_departures_account ON group_departures (account_id);
`;

/**
 * 3102 (issue 10, third part): `group_deleted_members` — the members a deleted group had, one row each, at the seq of
 * the deletion. Every pair of them lost the group path at that seq: the `group` path's tombstones in lazy form
 * (repo.ts GROUP_PATH.tombstones, read by sync as if they were rows of `tombstones`), so deleting a group writes
 * O(members) rows instead of the members² pair tombstones (DECISIONS.md "Group deletion without pair tombstones").
 * No foreign key to `groups`: the group row is gone; the id is a UUID, never reused.
 */
const SQLITE_3102 = `
CREATE TABLE group_deleted_members (
  group_id TEXT NOT NULL,
  account_id INTEGER NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
  seq INTEGER NOT NULL,
  PRIMARY KEY (group_id, account_id)) WITHOUT ROWID;
CREATE INDEX group_deleted_members_account ON group_deleted_members (account_id, group_id);
`;
const POSTGRES_3102 = `
CREATE TABLE group_deleted_members (
  group_id TEXT NOT NULL,
  account_id BIGINT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
  seq BIGINT NOT NULL,
  PRIMARY KEY (group_id, account_id));
CREATE INDEX group_deleted_members_account ON group_deleted_members (account_id, group_id);
`;

/**
 * 3103 (issue 10, third part): `group_codes` — one-time group codes (PROTOCOL §21.13): redeeming one joins its group
 * as accepting an invitation does. The code text and its alphabet are exchange codes' (features/exchange/code.ts).
 */
const SQLITE_3103 = `
CREATE TABLE group_codes (
  code TEXT PRIMARY KEY,
  group_id TEXT NOT NULL REFERENCES groups (id) ON DELETE CASCADE,
  creator INTEGER NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
  created_at INTEGER NOT NULL,
  expires_at INTEGER NOT NULL);
CREATE INDEX group_codes_group ON group_codes (group_id);
CREATE INDEX group_codes_creator ON group_codes (creator, expires_at);
CREATE INDEX group_codes_expiry ON group_codes (expires_at);
`;
const POSTGRES_3103 = `
CREATE TABLE group_codes (
  code TEXT PRIMARY KEY,
  group_id TEXT NOT NULL REFERENCES groups (id) ON DELETE CASCADE,
  creator BIGINT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
  created_at BIGINT NOT NULL,
  expires_at BIGINT NOT NULL);
CREATE INDEX group_codes_group ON group_codes (group_id);
CREATE INDEX group_codes_creator ON group_codes (creator, expires_at);
CREATE INDEX group_codes_expiry ON group_codes (expires_at);
`;

export const GROUP_MIGRATIONS: readonly Migration[] = [
  {
    version: 3100,
    name: "groups: groups, members, invitations, exemptions",
    sql: { sqlite: SQLITE_3100, postgres: POSTGRES_3100 },
  },
  {
    version: 3101,
    name: "groups: per-member polling interval, departures",
    sql: { sqlite: SQLITE_3101, postgres: POSTGRES_3101 },
  },
  {
    version: 3102,
    name: "groups: a deleted group's members (lazy pair tombstones)",
    sql: { sqlite: SQLITE_3102, postgres: POSTGRES_3102 },
  },
  {
    version: 3103,
    name: "groups: one-time group codes",
    sql: { sqlite: SQLITE_3103, postgres: POSTGRES_3103 },
  },
];
