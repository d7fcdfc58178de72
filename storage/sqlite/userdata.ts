/**
 * A user's own data in the SQLite backend: every row that names one bare JID (export), and its erasure in one
 * transaction (delete). Kept in its own file, beside the repositories, so that the tables a user appears in are
 * listed in one place: a new table that names users must be added here (the integration test scans every table
 * of the database for the JID after a deletion, so a forgotten one fails it).
 */
import type { DeleteUserResult, OutboxItem, UserRows } from "../store.js";
import type { Db } from "./db.js";
import { nextSeq, type SqliteOutbox } from "./repos.js";

type Row = Record<string, unknown>;

/**
 * The rows about `jid`, per table. Others' blocks of `jid` are not included: a block list is its owner's data,
 * and telling a user who blocks them would undo what blocking is for.
 */
export function userRows(db: Db, jid: string): UserRows {
  return db.transaction((): UserRows => {
    const all = (sql: string, ...p: unknown[]): Row[] => db.prepare(sql).all(...p) as Row[];
    const tokens = myTokens(db, jid);
    const tokenList = [...tokens];
    return {
      cards: all("SELECT * FROM cards WHERE owner = ?", jid),
      devices: all("SELECT * FROM devices WHERE owner = ? ORDER BY created_at, device_id", jid),
      bindings: all("SELECT * FROM bindings WHERE a = ? OR b = ? ORDER BY created_at", jid, jid),
      shares: all("SELECT * FROM shares WHERE owner = ? OR holder = ? ORDER BY owner, holder", jid, jid),
      tombstones: all("SELECT * FROM tombstones WHERE owner = ? OR holder = ? ORDER BY seq", jid, jid),
      blocks: all("SELECT * FROM blocks WHERE owner = ? ORDER BY blocked", jid),
      exchange_requests: all(
        "SELECT * FROM exchange_requests WHERE from_jid = ? OR to_jid = ? ORDER BY created_at",
        jid,
        jid,
      ),
      exchange_codes: all("SELECT * FROM exchange_codes WHERE owner = ? ORDER BY created_at", jid),
      outbox: all(
        `SELECT * FROM outbox WHERE recipient = ? OR subject = ? OR instr(payload, ?) > 0 ORDER BY seq`,
        jid,
        jid,
        JSON.stringify(jid),
      ),
      resources: all("SELECT * FROM resources WHERE bare = ? ORDER BY since", jid),
      subscribers: all("SELECT * FROM subscribers WHERE bare = ?", jid),
      push_nodes: all("SELECT * FROM push_nodes WHERE owner = ? ORDER BY created_at", jid),
      push_queue: all("SELECT * FROM push_queue WHERE owner = ? ORDER BY created_at", jid),
      push_sent: tokenList.length
        ? all(
            `SELECT * FROM push_sent WHERE token IN (${tokenList.map(() => "?").join(",")}) ORDER BY sent_at`,
            ...tokenList,
          )
        : [],
    };
  })();
}

/** Push tokens of the user's devices and queued notices (the push budget log is keyed by token). */
function myTokens(db: Db, jid: string): Set<string> {
  const rows = db
    .prepare(
      `SELECT push_token AS t FROM devices WHERE owner = ? AND push_token IS NOT NULL
       UNION SELECT token FROM push_queue WHERE owner = ?`,
    )
    .all(jid, jid) as Array<{ t: string }>;
  return new Set(rows.map((r) => r.t));
}

/**
 * Erases every row about `jid` and enqueues `notify(peers)` (the unbind notices for everyone who held the card
 * or had a pending unbind notice about it), all in one transaction: a failure anywhere writes nothing.
 * What is left afterwards that names `jid`: those notices (until each peer acknowledges it) and others' blocks
 * of `jid` (their data; see userRows).
 */
export function deleteUser(
  db: Db,
  outbox: SqliteOutbox,
  jid: string,
  notify: (peers: string[]) => OutboxItem[],
): DeleteUserResult {
  return db.transaction((): DeleteUserResult => {
    const rows: Record<string, number> = {};
    const run = (table: string, sql: string, ...p: unknown[]): void => {
      rows[table] = (rows[table] ?? 0) + db.prepare(sql).run(...p).changes;
    };
    const col = <T>(sql: string, ...p: unknown[]): T[] =>
      (db.prepare(sql).all(...p) as Array<{ v: T }>).map((r) => r.v);

    const bindings = col<string>("SELECT id AS v FROM bindings WHERE a = ? OR b = ?", jid, jid);
    const peers = new Set(
      col<string>(
        `SELECT CASE WHEN a = ? THEN b ELSE a END AS v FROM bindings WHERE a = ? OR b = ?`,
        jid,
        jid,
        jid,
      ),
    );
    // An earlier unbind's notice still waiting for a peer is re-sent below rather than lost with the rest.
    for (const p of col<string>(
      "SELECT recipient AS v FROM outbox WHERE kind = 'unbound' AND subject = ? AND recipient != ?",
      jid,
      jid,
    ))
      peers.add(p);
    const requests = col<string>(
      "SELECT id AS v FROM exchange_requests WHERE from_jid = ? OR to_jid = ?",
      jid,
      jid,
    );
    const tokens = [...myTokens(db, jid)];

    // Outbox first, while the binding and request ids that name the entries are still known.
    const subjects = [jid, ...bindings, ...requests];
    // Peers' pending unbind notices about the user stay (they are re-written below, not counted as deleted).
    run(
      "outbox",
      `DELETE FROM outbox WHERE (recipient = ? OR subject IN (${subjects.map(() => "?").join(",")})
         OR instr(payload, ?) > 0) AND NOT (kind = 'unbound' AND subject = ? AND recipient != ?)`,
      jid,
      ...subjects,
      JSON.stringify(jid),
      jid,
      jid,
    );
    run("shares", "DELETE FROM shares WHERE owner = ? OR holder = ?", jid, jid);
    run("bindings", "DELETE FROM bindings WHERE a = ? OR b = ?", jid, jid);
    // Sync tombstones name the user forever: none is kept (peers learn of the removal from the notice).
    run("tombstones", "DELETE FROM tombstones WHERE owner = ? OR holder = ?", jid, jid);
    run("cards", "DELETE FROM cards WHERE owner = ?", jid);
    run("blocks", "DELETE FROM blocks WHERE owner = ?", jid);
    run("exchange_requests", "DELETE FROM exchange_requests WHERE from_jid = ? OR to_jid = ?", jid, jid);
    run("exchange_codes", "DELETE FROM exchange_codes WHERE owner = ?", jid);
    run("push_nodes", "DELETE FROM push_nodes WHERE owner = ?", jid);
    run("push_queue", "DELETE FROM push_queue WHERE owner = ?", jid);
    for (const t of tokens) run("push_sent", "DELETE FROM push_sent WHERE token = ?", t);
    run("devices", "DELETE FROM devices WHERE owner = ?", jid);
    run("resources", "DELETE FROM resources WHERE bare = ?", jid);
    run("subscribers", "DELETE FROM subscribers WHERE bare = ?", jid);

    const told = [...peers].sort();
    const items = notify(told);
    if (items.length) outbox.enqueueTx(items, nextSeq(db));
    const deleted = Object.values(rows).reduce((a, b) => a + b, 0);
    return { deleted, rows, peers: told };
  })();
}
