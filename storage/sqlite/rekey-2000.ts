/**
 * Migration 2000 for an EXISTING database (docs/REDESIGN.md §2.8.2): today's JID-keyed schema (legacy versions
 * 1/100/200, and the index-only 300) copied once into the account-keyed schema of §2.6, in rebuild mode (§2.8.1:
 * foreign keys off, one transaction, `foreign_key_check` empty and the row counts of `check()` before COMMIT). A
 * failure anywhere rolls everything back: the database stays at 200/300, never between.
 *
 * How the copy keeps the result identical to a fresh install: the old tables are renamed to `_old_<name>` (their
 * indexes dropped first, the names are reused), then §2.6's DDL is run verbatim from schema-2000.ts (all but
 * `meta`, which is kept with its secrets), then every row is copied across with JIDs mapped to account ids, and
 * the `_old_` tables are dropped. test/unit/rekey-2000.test.ts compares the resulting schema with a fresh
 * install's, statement by statement.
 *
 * `migrations2000(state)` picks the fresh-install DDL (empty database) or this copy (a legacy database) by the
 * database's current version. Not registered with the running app: the switch (REDESIGN S11) does that.
 */
import type { MigrationModule } from "../migrate.js";
import { flattenModules } from "../migrate.js";
import type { Migration, Tx } from "../store.js";
import { LEGACY } from "./legacy.js";
import { SCHEMA_2000, SCHEMA_2000_DDL } from "./schema-2000.js";

/** Where the §2.8 copy writes what it dropped on purpose (read it for the `migrated` log line, S11). */
export const REKEY_META_KEY = "migration:2000";

// §2.6 without `meta`: the legacy table is the same (key TEXT PRIMARY KEY, value TEXT NOT NULL) and is kept.
const META_LINE = /^CREATE TABLE meta \(key TEXT PRIMARY KEY, value TEXT NOT NULL\);.*$/m;
if (!META_LINE.test(SCHEMA_2000_DDL)) {
  // A changed §2.6 must be looked at here: the copy below writes every one of its tables.
  throw new Error("rekey-2000: schema-2000.ts no longer creates meta as the legacy schema does");
}
const DDL_WITHOUT_META = SCHEMA_2000_DDL.replace(META_LINE, "");

/** The legacy tables the copy renames, reads and drops (meta and schema_migrations stay). */
const OLD_TABLES = [
  "devices",
  "cards",
  "bindings",
  "shares",
  "tombstones",
  "blocks",
  "exchange_requests",
  "exchange_codes",
  "outbox",
  "resources",
  "subscribers",
  "push_queue",
  "push_sent",
  "push_nodes",
] as const;

/** Every legacy index (300's two may be missing on a database at 200). Their names are reused by §2.6. */
const OLD_INDEXES = [
  "devices_token",
  "shares_holder",
  "shares_binding",
  "exchange_requests_to",
  "outbox_order",
  "outbox_next",
  "outbox_kind",
  "resources_bare",
  "push_queue_next",
  "push_queue_platform",
  "push_sent_token",
];

/**
 * The push notices (queue rows) that become jobs: the device still exists, and no newer notice for the same device
 * and collapse id replaces it (a token change can leave both; jobs coalesce per device). Over today's table names
 * for the count of step 1, over the renamed ones for the copy of step 6.
 */
const pushQueueKept = (queue: string, devices: string): string => `
  SELECT q.*, ROW_NUMBER() OVER (PARTITION BY q.owner, q.device_id, q.collapse_id
                                 ORDER BY q.created_at DESC, q.id DESC) AS nth
    FROM ${queue} q
   WHERE EXISTS (SELECT 1 FROM ${devices} d WHERE d.owner = q.owner AND d.device_id = q.device_id)`;

/**
 * The copy (§2.8.2 steps 1–8). Runs as one script inside the runner's transaction. Times written by the copy
 * (accounts, identifiers, cursors, blocks) are one reading of SQLite's clock taken at the start: the runner
 * executes migration SQL without parameters, and a one-time upgrade's "now" needs no test clock.
 */
export const REKEY_2000_SQL = `
-- 0. Guards and the one clock reading. A guard that fails aborts the script with its constraint's name.
CREATE TEMP TABLE _rekey (
  now INTEGER NOT NULL,
  old_seq INTEGER,
  legacy INTEGER NOT NULL CONSTRAINT "rekey 2000 needs a legacy database at schema 200 or later" CHECK (legacy = 1),
  fresh INTEGER NOT NULL CONSTRAINT "rekey 2000 on a database that already has accounts" CHECK (fresh = 0));
INSERT INTO _rekey (now, legacy, fresh) VALUES (
  CAST(ROUND((julianday('now') - 2440587.5) * 86400000.0) AS INTEGER),
  (SELECT COUNT(*) FROM schema_migrations WHERE version = 200),
  (SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name IN ('accounts', 'identifiers', 'counters')));
-- After the guards: on an empty database meta does not exist, and the guard's message is the clearer one.
UPDATE _rekey SET old_seq = (SELECT CAST(value AS INTEGER) FROM meta WHERE key = 'seq');

-- 1. What there was, counted before anything moves; check() compares the new tables with it.
CREATE TEMP TABLE _old_counts (t TEXT PRIMARY KEY, n INTEGER NOT NULL);
INSERT INTO _old_counts (t, n)
${OLD_TABLES.map((t) => `          SELECT '${t}', COUNT(*) FROM ${t}`).join("\nUNION ALL\n")}
UNION ALL SELECT 'meta', COUNT(*) FROM meta
UNION ALL SELECT 'outbox_payloads', COUNT(*) FROM outbox WHERE payload IS NOT NULL
UNION ALL SELECT 'push_queue_kept', COUNT(*) FROM (${pushQueueKept("push_queue", "devices")}) WHERE nth = 1
UNION ALL SELECT 'push_nodes_kept', COUNT(*) FROM push_nodes p
           WHERE EXISTS (SELECT 1 FROM devices d WHERE d.owner = p.owner AND d.device_id = p.device_id);

-- 2 (first half). Move today's tables aside; §2.6 reuses their names and their indexes' names.
${OLD_INDEXES.map((i) => `DROP INDEX IF EXISTS ${i};`).join("\n")}
${OLD_TABLES.map((t) => `ALTER TABLE ${t} RENAME TO _old_${t};`).join("\n")}

-- §2.6, verbatim but for meta (kept).
${DDL_WITHOUT_META}

-- 2. The change counter moves with its value: sync tokens and pending seqs stay valid.
INSERT INTO counters (name, value) SELECT 'seq', CAST(value AS INTEGER) FROM meta WHERE key = 'seq';
DELETE FROM meta WHERE key = 'seq';

-- 3. Every JID the database mentions, one account each, numbered in JID order (deterministic ids). "acted": the
-- JID did something itself (active); only named by others: a placeholder.
CREATE TEMP TABLE _ids (j TEXT PRIMARY KEY, id INTEGER NOT NULL UNIQUE, acted INTEGER NOT NULL) WITHOUT ROWID;
INSERT INTO _ids (j, id, acted)
SELECT j, ROW_NUMBER() OVER (ORDER BY j), MAX(acted) FROM (
  SELECT owner AS j, 1 AS acted FROM _old_devices UNION ALL SELECT owner, 1 FROM _old_cards
  UNION ALL SELECT a, 1 FROM _old_bindings UNION ALL SELECT b, 1 FROM _old_bindings
  UNION ALL SELECT owner, 1 FROM _old_blocks UNION ALL SELECT blocked, 0 FROM _old_blocks
  UNION ALL SELECT from_jid, 1 FROM _old_exchange_requests UNION ALL SELECT to_jid, 0 FROM _old_exchange_requests
  UNION ALL SELECT owner, 1 FROM _old_exchange_codes UNION ALL SELECT recipient, 0 FROM _old_outbox
  UNION ALL SELECT subject, 0 FROM _old_outbox WHERE kind IN ('card', 'unbound')
  UNION ALL SELECT owner, 0 FROM _old_shares UNION ALL SELECT holder, 0 FROM _old_shares
  UNION ALL SELECT holder, 0 FROM _old_tombstones UNION ALL SELECT owner, 0 FROM _old_tombstones
  UNION ALL SELECT bare, 1 FROM _old_resources UNION ALL SELECT bare, 1 FROM _old_subscribers
  UNION ALL SELECT owner, 1 FROM _old_push_queue UNION ALL SELECT owner, 1 FROM _old_push_nodes
  -- the decliner named only inside an exchange-declined payload (its request row is gone)
  UNION ALL SELECT json_extract(payload, '$.by'), 1 FROM _old_outbox
             WHERE kind = 'exchange-declined' AND payload IS NOT NULL)
WHERE j IS NOT NULL GROUP BY j;
-- Today's parser lower-cases JIDs; two that differ only by case would be one user with two accounts.
CREATE TEMP TABLE _rekey_case (
  ok INTEGER NOT NULL CONSTRAINT "rekey 2000 found JIDs that differ only by case" CHECK (ok = 1));
INSERT INTO _rekey_case (ok) SELECT COUNT(*) = COUNT(DISTINCT lower(j)) FROM _ids;
DROP TABLE _rekey_case;

INSERT INTO accounts (id, state, created_at, seen_at)
SELECT i.id, CASE WHEN i.acted = 1 THEN 'active' ELSE 'placeholder' END, r.now,
       CASE WHEN i.acted = 1 THEN r.now END
  FROM _ids i, _rekey r ORDER BY i.id;
INSERT INTO identifiers (kind, value, account_id, state, is_primary, verified_at, held_until, created_at)
SELECT 'jid', i.j, i.id, 'active', 1, r.now, NULL, r.now FROM _ids i, _rekey r ORDER BY i.j;

-- 4. The keyed tables, JIDs mapped through _ids.
INSERT INTO devices (id, account_id, device_id, platform, name, push_token, push_topic, push_key, token_state,
                     created_at, updated_at)
SELECT ROW_NUMBER() OVER (ORDER BY o.id, d.device_id), o.id, d.device_id, d.platform, d.name, d.push_token,
       d.push_topic, d.push_key, d.token_state, d.created_at, d.updated_at
  FROM _old_devices d JOIN _ids o ON o.j = d.owner;

INSERT INTO cards (account_id, version, hash, card, seq, updated_at)
SELECT o.id, c.version, c.hash, c.card, c.seq, c.updated_at FROM _old_cards c JOIN _ids o ON o.j = c.owner
 ORDER BY o.id;

-- a < b by account id: the smaller id goes first, and its devices with it.
INSERT INTO bindings (id, a, b, a_devices, b_devices, via, created_at)
SELECT x.id,
       CASE WHEN ia.id < ib.id THEN ia.id ELSE ib.id END,
       CASE WHEN ia.id < ib.id THEN ib.id ELSE ia.id END,
       CASE WHEN ia.id < ib.id THEN x.a_devices ELSE x.b_devices END,
       CASE WHEN ia.id < ib.id THEN x.b_devices ELSE x.a_devices END,
       x.via, x.created_at
  FROM _old_bindings x JOIN _ids ia ON ia.j = x.a JOIN _ids ib ON ib.j = x.b
 ORDER BY x.id;

INSERT INTO shares (owner, holder, binding_id, policy, seq)
SELECT o.id, h.id, s.binding_id, s.policy, s.seq
  FROM _old_shares s JOIN _ids o ON o.j = s.owner JOIN _ids h ON h.j = s.holder
 ORDER BY o.id, h.id;

INSERT INTO tombstones (holder, owner, seq)
SELECT h.id, o.id, t.seq FROM _old_tombstones t JOIN _ids h ON h.j = t.holder JOIN _ids o ON o.j = t.owner
 ORDER BY h.id, o.id;

-- Today's blocks have no time: the upgrade's.
INSERT INTO blocks (owner, blocked, created_at)
SELECT o.id, x.id, r.now FROM _old_blocks b JOIN _ids o ON o.j = b.owner JOIN _ids x ON x.j = b.blocked, _rekey r;

INSERT INTO exchange_requests (id, from_account, to_account, from_device, created_at, expires_at)
SELECT q.id, f.id, t.id, q.from_device, q.created_at, q.expires_at
  FROM _old_exchange_requests q JOIN _ids f ON f.j = q.from_jid JOIN _ids t ON t.j = q.to_jid;

INSERT INTO exchange_codes (code, owner, device_id, created_at, expires_at)
SELECT c.code, o.id, c.device_id, c.created_at, c.expires_at FROM _old_exchange_codes c JOIN _ids o ON o.j = c.owner;

INSERT INTO resources (full_jid, account_id, device, process, since)
SELECT x.full_jid, o.id, NULL, NULL, x.since FROM _old_resources x JOIN _ids o ON o.j = x.bare;

INSERT INTO subscribers (account_id, since)
SELECT o.id, s.since FROM _old_subscribers s JOIN _ids o ON o.j = s.bare;

-- 5. The outbox becomes stream entries with their seq kept. Payloads first: stored once, JIDs in them replaced
-- by account ids (exchange-declined's "by").
CREATE TEMP TABLE _payloads (recipient TEXT NOT NULL, kind TEXT NOT NULL, subject TEXT NOT NULL,
  id INTEGER NOT NULL, PRIMARY KEY (recipient, kind, subject)) WITHOUT ROWID;
INSERT INTO _payloads (recipient, kind, subject, id)
SELECT recipient, kind, subject, ROW_NUMBER() OVER (ORDER BY recipient, kind, subject)
  FROM _old_outbox WHERE payload IS NOT NULL;
INSERT INTO payloads (id, kind, body, created_at)
SELECT p.id, o.kind,
       CASE WHEN json_type(o.payload, '$.by') = 'text'
            THEN json_set(o.payload, '$.by', (SELECT b.id FROM _ids b WHERE b.j = json_extract(o.payload, '$.by')))
            ELSE o.payload END,
       o.created_at
  FROM _old_outbox o JOIN _payloads p ON p.recipient = o.recipient AND p.kind = o.kind AND p.subject = o.subject
 ORDER BY p.id;
-- subject: the subject's account id (decimal) for kinds about a user, the entity id otherwise; ord: the tie order
-- of today's outbox_order index (recipient, seq, then the key: kind, subject), so a binding still precedes its card.
INSERT INTO stream_entries (account_id, seq, ord, kind, subject, subject_account, payload_id, created_at)
SELECT r.id, o.seq, ROW_NUMBER() OVER (PARTITION BY o.recipient, o.seq ORDER BY o.kind, o.subject) - 1,
       o.kind, CASE WHEN s.id IS NULL THEN o.subject ELSE CAST(s.id AS TEXT) END, s.id, p.id, o.created_at
  FROM _old_outbox o
  JOIN _ids r ON r.j = o.recipient
  LEFT JOIN _ids s ON o.kind IN ('card', 'unbound') AND s.j = o.subject
  LEFT JOIN _payloads p ON p.recipient = o.recipient AND p.kind = o.kind AND p.subject = o.subject
 ORDER BY r.id, o.seq, o.kind, o.subject;
-- One shared cursor per account at 0: every retained entry is unacknowledged, as an outbox row was. attempts and
-- next_at are not carried over: start-up retries every lane anyway.
INSERT INTO stream_cursors (account_id, consumer, pos, seen_at)
SELECT a.id, 0, 0, r.now FROM accounts a, _rekey r ORDER BY a.id;

-- 6. The push queue becomes jobs: the old collapse id as ckey, the old notice id as uid (the apns-id/FCM id
-- stays). Dropped: notices whose device is gone, and older ones a newer notice for the same device and collapse
-- id replaces (a token change left both; jobs coalesce per device). Counted in meta '${REKEY_META_KEY}'.
INSERT INTO jobs (channel, kind, target, account_id, device, ckey, body, rev, uid, attempts, next_at, expires_at,
                  lease_owner, lease_until, last_error, created_at)
SELECT 'push', 'notice', CAST(d.id AS TEXT), d.account_id, d.id, q.collapse_id,
       json_object('platform', q.platform, 'token', q.token, 'topic', q.topic, 'kind', q.kind,
                   'collapseId', q.collapse_id, 'alert', json(q.alert), 'data', json(q.data)),
       1, q.id, q.attempts, q.next_at, q.expires_at, NULL, 0, NULL, q.created_at
  FROM (${pushQueueKept("_old_push_queue", "_old_devices")}) q
  JOIN _ids o ON o.j = q.owner
  JOIN devices d ON d.account_id = o.id AND d.device_id = q.device_id
 WHERE q.nth = 1
 ORDER BY q.created_at, q.id;
INSERT INTO push_sends (token, sent_at) SELECT token, sent_at FROM _old_push_sent ORDER BY rowid;
-- Nodes of removed devices answered item-not-found before, and do after: dropped.
INSERT INTO push_nodes (node, device, secret, created_at)
SELECT n.node, d.id, n.secret, n.created_at
  FROM _old_push_nodes n JOIN _ids o ON o.j = n.owner JOIN devices d ON d.account_id = o.id AND d.device_id = n.device_id;

-- 7. What was pending before the upgrade was announced (or not) by the old code: the push-scan observer starts
-- at the current seq, so a restart announces nothing new (today's rule).
INSERT INTO queue_marks (name, pos, lease_owner, lease_until)
SELECT 'push-scan', value, NULL, 0 FROM counters WHERE name = 'seq';

INSERT INTO meta (key, value)
SELECT '${REKEY_META_KEY}', json_object(
         'at', r.now,
         'accounts', (SELECT COUNT(*) FROM _ids),
         'droppedPushJobs', (SELECT n FROM _old_counts WHERE t = 'push_queue')
                          - (SELECT n FROM _old_counts WHERE t = 'push_queue_kept'),
         'droppedPushNodes', (SELECT n FROM _old_counts WHERE t = 'push_nodes')
                           - (SELECT n FROM _old_counts WHERE t = 'push_nodes_kept'))
  FROM _rekey r;

-- 8. Today's tables go (their indexes with them); check() then compares the counts and foreign_key_check runs.
${OLD_TABLES.map((t) => `DROP TABLE _old_${t};`).join("\n")}
DROP TABLE _payloads;
DROP TABLE _ids;
`;

/** New table ← the _old_counts entry it must equal (null: exactly one row). */
const EXPECTED: ReadonlyArray<[table: string, old: string | null]> = [
  ["devices", "devices"],
  ["cards", "cards"],
  ["bindings", "bindings"],
  ["shares", "shares"],
  ["tombstones", "tombstones"],
  ["blocks", "blocks"],
  ["exchange_requests", "exchange_requests"],
  ["exchange_codes", "exchange_codes"],
  ["resources", "resources"],
  ["subscribers", "subscribers"],
  ["stream_entries", "outbox"],
  ["payloads", "outbox_payloads"],
  ["push_sends", "push_sent"],
  ["jobs", "push_queue_kept"],
  ["push_nodes", "push_nodes_kept"],
  // 'seq' moved to counters, the copy's own record came in.
  ["meta", "meta"],
  ["counters", null],
  ["queue_marks", null],
];

/** The rows a rekeyed database holds that no old table did, one per account (so equal to each other). */
const PER_ACCOUNT = ["identifiers", "stream_cursors"];

/**
 * §2.8.2 step 8's comparison, inside the transaction (the runner rolls back on a throw): every new table holds
 * exactly what its old table held (the logged push drops aside), one identifier and one shared cursor per
 * account, the counter and the push-scan mark at the old seq, no old table left. Then the copy's temp tables go.
 */
export async function checkRekey2000(tx: Tx): Promise<void> {
  const count = async (sql: string): Promise<number> =>
    Number((await tx.get<{ n: number }>(sql))?.n ?? Number.NaN);
  const old = new Map(
    (await tx.all<{ t: string; n: number }>("SELECT t, n FROM temp._old_counts")).map((r) => [
      r.t,
      Number(r.n),
    ]),
  );
  const n = (t: string): number => {
    const v = old.get(t);
    if (v === undefined) throw new Error(`rekey 2000: no old count for ${t}`);
    return v;
  };
  const problems: string[] = [];
  for (const [table, from] of EXPECTED) {
    const want = from === null ? 1 : n(from);
    const got = await count(`SELECT COUNT(*) AS n FROM main.${table}`);
    if (got !== want) problems.push(`${table} has ${got} rows, expected ${want}`);
  }
  const accounts = await count("SELECT COUNT(*) AS n FROM main.accounts");
  for (const table of PER_ACCOUNT) {
    const got = await count(`SELECT COUNT(*) AS n FROM main.${table}`);
    if (got !== accounts) problems.push(`${table} has ${got} rows for ${accounts} accounts`);
  }
  const shared = await count("SELECT COUNT(*) AS n FROM stream_cursors WHERE consumer = 0 AND pos = 0");
  if (shared !== accounts) problems.push(`${shared} shared cursors at 0 for ${accounts} accounts`);
  const clock = await tx.get<{ old_seq: number | null }>("SELECT old_seq FROM temp._rekey");
  const seq = await tx.get<{ v: number }>("SELECT value AS v FROM counters WHERE name = 'seq'");
  const mark = await tx.get<{ v: number }>("SELECT pos AS v FROM queue_marks WHERE name = 'push-scan'");
  if (clock?.old_seq === null || clock?.old_seq === undefined) problems.push("the old database had no seq");
  else {
    if (Number(seq?.v) !== Number(clock.old_seq)) problems.push(`seq is ${seq?.v}, was ${clock.old_seq}`);
    if (Number(mark?.v) !== Number(clock.old_seq))
      problems.push(`push-scan mark is ${mark?.v}, expected the seq`);
  }
  const leftovers = await tx.all<{ name: string }>(
    "SELECT name FROM sqlite_master WHERE name LIKE '\\_old\\_%' ESCAPE '\\' OR name IN ('outbox', 'push_queue', 'push_sent')",
  );
  if (leftovers.length > 0) problems.push(`old tables left: ${leftovers.map((r) => r.name).join(", ")}`);
  if (problems.length > 0)
    throw new Error(`migration 2000 (rekey) post-conditions failed: ${problems.join("; ")}`);
  // Temp tables live as long as the connection: not beyond the migration.
  await tx.run("DROP TABLE temp._old_counts");
  await tx.run("DROP TABLE temp._rekey");
}

/** Migration 2000 for a legacy database: the same version and name as the fresh install's (schema-2000.ts). */
export const REKEY_2000: Migration = {
  version: SCHEMA_2000.version,
  name: SCHEMA_2000.name,
  sql: { sqlite: REKEY_2000_SQL },
  rebuild: true,
  check: checkRekey2000,
};

/** The accounts module (versions 2000–2099, §2.8.1) for a database at `version`. */
export function accountsModule(state: { version: number }): MigrationModule {
  return {
    name: "accounts",
    range: [2000, 2099],
    migrations: [state.version > 0 && state.version < SCHEMA_2000.version ? REKEY_2000 : SCHEMA_2000],
  };
}

/**
 * What brings a database at `state.version` (schemaVersion(), or db.ts's schemaState()) to 2000:
 * - 0, an empty database: the fresh-install DDL (schema-2000.ts);
 * - a legacy version (1–1999): the legacy migrations it lacks (300's indexes on a database at 200), then the
 *   rekey copy of this file;
 * - 2000 or later: nothing to do for 2000 (recorded), the list only names it so the runner knows the version.
 * Not registered with the running app (REDESIGN S11 does that).
 */
export function migrations2000(state: { version: number }): Migration[] {
  const legacy = state.version > 0 && state.version < SCHEMA_2000.version;
  return flattenModules(legacy ? [LEGACY, accountsModule(state)] : [accountsModule(state)]);
}
