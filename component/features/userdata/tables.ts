/**
 * Every row the 2000 schema holds about one account, table by table (the export), and the rows that erasure
 * takes from the runtime's tables (accounts part, queue, presence) once every feature's `account.deleting`
 * handler has taken its own. Listed in one place, as storage/sqlite/userdata.ts does for the legacy schema: a
 * new table that names accounts must be added to USER_TABLES (test/unit/userdata-2000.test.ts scans every table
 * of the schema for the deleted account's id, so a forgotten one fails it).
 *
 * Portable SQL (docs/REDESIGN.md §2.1): one text for both backends, `:me` the account id.
 */
import type { AccountId, Sql } from "../../../storage/store.js";

type Row = Record<string, unknown>;

export interface UserTable {
  readonly name: string;
  /** The rows exported (`SELECT …`, ordered so that two exports of the same data are equal). */
  readonly rows: string;
  /**
   * The rows erasure removes, counted before and after (`SELECT COUNT(*) AS n …`); absent = the same rows as
   * `rows`. What erasure keeps on purpose is left out here: the account's skeleton (below) and the holders'
   * `unbound` entries about the account (they are written by the deletion itself).
   */
  readonly erased?: string;
}

const OWN_DEVICE_TOKENS = "SELECT push_token FROM devices WHERE account_id = :me AND push_token IS NOT NULL";

/** The tables in export order (and RSM uid order: the position is part of each `<row/>`'s uid). */
export const USER_TABLES: readonly UserTable[] = [
  {
    name: "accounts",
    rows: "SELECT * FROM accounts WHERE id = :me",
    erased: "SELECT 0 AS n", // kept (state 'deleted'): see ERASE_RUNTIME
  },
  {
    name: "identifiers",
    rows: "SELECT * FROM identifiers WHERE account_id = :me ORDER BY is_primary DESC, kind, value",
    erased: "SELECT COUNT(*) AS n FROM identifiers WHERE account_id = :me AND is_primary = 0",
  },
  { name: "devices", rows: "SELECT * FROM devices WHERE account_id = :me ORDER BY created_at, device_id" },
  { name: "resources", rows: "SELECT * FROM resources WHERE account_id = :me ORDER BY since, full_jid" },
  { name: "subscribers", rows: "SELECT * FROM subscribers WHERE account_id = :me" },
  { name: "cards", rows: "SELECT * FROM cards WHERE account_id = :me" },
  { name: "bindings", rows: "SELECT * FROM bindings WHERE a = :me OR b = :me ORDER BY created_at, id" },
  { name: "shares", rows: "SELECT * FROM shares WHERE owner = :me OR holder = :me ORDER BY owner, holder" },
  {
    name: "tombstones",
    rows: "SELECT * FROM tombstones WHERE holder = :me OR owner = :me ORDER BY seq, holder, owner",
  },
  // Others' blocks of the user are theirs (telling a user who blocks them would undo blocking), as today.
  { name: "blocks", rows: "SELECT * FROM blocks WHERE owner = :me ORDER BY blocked" },
  {
    name: "exchange_requests",
    rows: `SELECT * FROM exchange_requests WHERE from_account = :me OR to_account = :me
      ORDER BY created_at, id`,
  },
  {
    name: "exchange_codes",
    rows: "SELECT * FROM exchange_codes WHERE owner = :me ORDER BY created_at, code",
  },
  // The user's own address book (features/addressbook). Entries in others' books that follow the user's card are
  // those users' data: not exported; erasure unlinks them (their owners keep the entries).
  {
    name: "book_entries",
    rows: "SELECT * FROM book_entries WHERE owner = :me ORDER BY seq, id",
    erased: "SELECT COUNT(*) AS n FROM book_entries WHERE owner = :me OR linked_owner = :me",
  },
  { name: "books", rows: "SELECT * FROM books WHERE owner = :me" },
  // Update requests the user sent or was sent (features/addressbook, PROTOCOL §20.11), open and recently closed.
  {
    name: "book_requests",
    rows: "SELECT * FROM book_requests WHERE owner = :me OR target = :me ORDER BY created_at, id",
  },
  // features/groups: the groups the user owns, the user's memberships, invitations to and from the user, the
  // user's exemptions and others' exemptions of the user (erasure takes them all: the account leaves every group).
  { name: "groups", rows: "SELECT * FROM groups WHERE owner = :me ORDER BY created_at, id" },
  {
    name: "group_members",
    rows: "SELECT * FROM group_members WHERE account_id = :me ORDER BY joined_at, group_id",
  },
  {
    name: "group_invitations",
    rows: `SELECT * FROM group_invitations WHERE invitee = :me OR inviter = :me ORDER BY created_at, id`,
  },
  {
    name: "group_exemptions",
    // Only the user's own exemptions: others' exemptions of the user are visible to them only (PROTOCOL §21.9).
    rows: "SELECT * FROM group_exemptions WHERE owner = :me ORDER BY owner, exempt",
  },
  {
    name: "group_departures",
    rows: "SELECT * FROM group_departures WHERE account_id = :me ORDER BY group_id",
  },
  // features/identity (issue 12): open verifications (code hashes only), moves, registered services and update
  // requests — all the user's own.
  {
    name: "identity_codes",
    rows: "SELECT * FROM identity_codes WHERE account_id = :me ORDER BY created_at, kind, value, purpose",
  },
  {
    name: "identity_moves",
    rows: "SELECT * FROM identity_moves WHERE account_id = :me ORDER BY created_at, id",
  },
  {
    name: "service_registrations",
    rows: "SELECT * FROM service_registrations WHERE account_id = :me ORDER BY created_at, id",
  },
  {
    name: "service_updates",
    rows: "SELECT * FROM service_updates WHERE account_id = :me ORDER BY created_at, id",
  },
  {
    name: "group_codes",
    rows: "SELECT * FROM group_codes WHERE creator = :me ORDER BY created_at, code",
  },
  {
    // The deleted groups the user was in (their members' pair tombstones, one row per member).
    name: "group_deleted_members",
    rows: "SELECT * FROM group_deleted_members WHERE account_id = :me ORDER BY seq, group_id",
  },
  // features/linked: the person's set (its current profile values), every account in it (the user's own other
  // accounts and service accounts), and link requests and verifications from or to the user. Erasure takes the
  // user's membership and requests; the set and the other members stay while another XMPP account holds them
  // (the handler dissolves a set that would be left with one account or none on XMPP).
  {
    name: "link_sets",
    rows: "SELECT * FROM link_sets WHERE id IN (SELECT set_id FROM link_members WHERE account_id = :me)",
    erased: "SELECT 0 AS n",
  },
  {
    name: "link_members",
    rows: `SELECT * FROM link_members WHERE set_id IN (SELECT set_id FROM link_members WHERE account_id = :me)
      ORDER BY created_at, id`,
    erased: "SELECT COUNT(*) AS n FROM link_members WHERE account_id = :me",
  },
  {
    name: "link_pending",
    rows: "SELECT * FROM link_pending WHERE from_account = :me OR to_account = :me ORDER BY created_at, id",
  },
  {
    // The user's lane, and entries on others' lanes about the user (as the old outbox rows with subject = JID);
    // the payload inline (payloads are stored once per append, not per account).
    name: "stream_entries",
    rows: `SELECT e.id, e.account_id, e.seq, e.ord, e.kind, e.subject, e.subject_account, p.body AS payload,
        e.created_at
      FROM stream_entries e LEFT JOIN payloads p ON p.id = e.payload_id
      WHERE e.account_id = :me OR e.subject_account = :me ORDER BY e.seq, e.ord, e.id`,
    erased: `SELECT COUNT(*) AS n FROM stream_entries
      WHERE account_id = :me OR (subject_account = :me AND kind <> 'unbound')`,
  },
  {
    name: "stream_cursors",
    rows: "SELECT * FROM stream_cursors WHERE account_id = :me ORDER BY consumer",
    erased: "SELECT COUNT(*) AS n FROM stream_cursors WHERE account_id = :me AND consumer <> 0",
  },
  { name: "jobs", rows: "SELECT * FROM jobs WHERE account_id = :me ORDER BY created_at, id" },
  { name: "dead_letters", rows: "SELECT * FROM dead_letters WHERE account_id = :me ORDER BY died_at, id" },
  {
    name: "push_nodes",
    rows: `SELECT n.* FROM push_nodes n JOIN devices d ON d.id = n.device WHERE d.account_id = :me
      ORDER BY n.created_at, n.node`,
  },
  {
    name: "push_sends",
    rows: `SELECT * FROM push_sends WHERE token IN (${OWN_DEVICE_TOKENS}) ORDER BY sent_at, token`,
  },
];

/** Every user table's rows, as stored. */
export async function userRows(q: Sql, me: AccountId): Promise<Record<string, Row[]>> {
  const out: Record<string, Row[]> = {};
  for (const t of USER_TABLES) out[t.name] = await q.all<Row>(t.rows, { me });
  return out;
}

/** How many rows erasure would take from each table now. */
export async function erasableCounts(q: Sql, me: AccountId): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  for (const t of USER_TABLES) {
    const sql = t.erased ?? `SELECT COUNT(*) AS n FROM (${t.rows}) x`;
    out[t.name] = Number((await q.get<{ n: number }>(sql, { me }))?.n ?? 0);
  }
  return out;
}

/**
 * What is left of a deleted account (docs/REDESIGN.md §2.2, state `deleted`): the accounts row, its primary JID
 * and its shared cursor. Holders' `unbound` entries render the JID from them, and the JID resolves to the same
 * account when its user comes back (ensure reactivates it, accounts/repo.ts ACTIVATE).
 */
const ERASE_RUNTIME = [
  "DELETE FROM stream_entries WHERE account_id = :me",
  // Entries about the user left on others' lanes by a path that did not close (the card is gone): moot.
  "DELETE FROM stream_entries WHERE subject_account = :me AND kind <> 'unbound'",
  "DELETE FROM stream_cursors WHERE account_id = :me AND consumer <> 0",
  `UPDATE stream_cursors SET pos = :seq, attempts = 0, next_at = 0, lease_owner = NULL, lease_until = 0,
     inflight_iq = NULL, inflight_upto = NULL WHERE account_id = :me AND consumer = 0`,
  "DELETE FROM jobs WHERE account_id = :me",
  "DELETE FROM dead_letters WHERE account_id = :me",
  "DELETE FROM resources WHERE account_id = :me",
  "DELETE FROM subscribers WHERE account_id = :me",
  "DELETE FROM devices WHERE account_id = :me", // push nodes and device jobs go by foreign key
  // Sync tombstones name the user forever: none is kept (holders learn of the removal from `unbound`), as today.
  "DELETE FROM tombstones WHERE holder = :me OR owner = :me",
  "DELETE FROM identifiers WHERE account_id = :me AND is_primary = 0",
  "UPDATE accounts SET state = 'deleted', seen_at = NULL WHERE id = :me",
];

/** The runtime's rows of the account, after the features' handlers: see ERASE_RUNTIME. */
export async function eraseRuntimeRows(q: Sql, me: AccountId, seq: number): Promise<void> {
  for (const sql of ERASE_RUNTIME) await q.run(sql, sql.includes(":seq") ? { me, seq } : { me });
}

/** Lanes (other than the user's) that hold an undelivered `unbound` about the user (an earlier unbind's). */
export async function pendingUnboundLanes(q: Sql, me: AccountId): Promise<AccountId[]> {
  const rows = await q.all<{ a: number }>(
    `SELECT account_id AS a FROM stream_entries WHERE kind = 'unbound' AND subject_account = :me
       AND account_id <> :me`,
    { me },
  );
  return rows.map((r) => Number(r.a) as AccountId);
}
