/**
 * The redesign's schema (storage/sqlite/schema-2000.ts, docs/REDESIGN.md §2.6) on a real SQLite file: it loads
 * with foreign keys on, a seeded data set passes foreign_key_check, the coalescing and lease statements of
 * §2.3/§2.5.2 behave as described, and every hot query of §2.7 is planned on the index §2.7 names, never by a
 * full scan of a table.
 */
import { expect } from "chai";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import Database from "better-sqlite3";
import { SCHEMA_2000_POSTGRES_DDL } from "../../storage/postgres/schema-2000.js";
import { SCHEMA_2000, SCHEMA_2000_DDL } from "../../storage/sqlite/schema-2000.js";

type Db = Database.Database;

// Sizes of the seeded set: enough rows that a scan and an index probe are different plans, small enough for a unit test.
const ACCOUNTS = 2000;
const BIG_OWNER = 1; // holds the fan-out case: shares to HOLDERS accounts
const HOLDERS = 500;
const NOW = 1_700_000_000_000;

const jid = (i: number): string => `user${String(i).padStart(5, "0")}@example.com`;

/** §2.5.2's fan-out with the one path that exists today (binding): one INSERT … SELECT for every holder. */
const FAN_OUT = `
INSERT INTO stream_entries (account_id, seq, ord, kind, subject, subject_account, payload_id, created_at)
SELECT DISTINCT aud.holder, :seq, :ord, :kind, :subject, :subject_account, :payload, :now
  FROM (SELECT s.holder AS holder FROM shares s WHERE s.owner = :owner) aud
 WHERE aud.holder <> :owner
ON CONFLICT (account_id, kind, subject) DO UPDATE
   SET seq = excluded.seq, ord = excluded.ord, payload_id = excluded.payload_id, created_at = excluded.created_at
RETURNING account_id`;

/** §2.3.5's claim, with SQLite's jsonIds (§2.1). */
const CLAIM_CURSORS = `
UPDATE stream_cursors SET lease_owner = :me, lease_until = :until
 WHERE id IN (SELECT value FROM json_each(:cursors))
   AND (lease_owner IS NULL OR lease_until < :now OR lease_owner = :me)
RETURNING id, account_id, consumer, pos, attempts, state`;

/** §2.3.5: acks always apply, never move pos back; the lease is cleared only if it is still ours. */
const ACK = `
UPDATE stream_cursors SET pos = CASE WHEN pos > :upto THEN pos ELSE :upto END, seen_at = :now,
       lease_owner = CASE WHEN lease_owner = :me THEN NULL ELSE lease_owner END,
       lease_until = CASE WHEN lease_owner = :me THEN 0 ELSE lease_until END
 WHERE id = :id`;

/** §2.3.3's GC after an ack. */
const GC = `
DELETE FROM stream_entries WHERE account_id = :a AND seq <= (SELECT MIN(pos) FROM stream_cursors
 WHERE account_id = :a AND state = 'active')`;

/** §2.3.6's replacing job upsert (attempts and next_at kept; rev bumped). */
const JOB_UPSERT = `
INSERT INTO jobs (channel, kind, target, account_id, device, ckey, body, uid, next_at, expires_at, created_at)
VALUES (:channel, :kind, :target, :account, :device, :ckey, :body, :uid, :next_at, :expires_at, :now)
ON CONFLICT (channel, target, ckey) WHERE ckey IS NOT NULL DO UPDATE
   SET body = excluded.body, expires_at = excluded.expires_at, rev = jobs.rev + 1
RETURNING id, rev`;

/** §2.3.6's job claim (SQLite: skipLocked is ''). */
const JOB_CLAIM = `
UPDATE jobs SET lease_owner = :me, lease_until = :until WHERE id IN (SELECT id FROM jobs WHERE channel = :c
   AND next_at <= :now AND (lease_owner IS NULL OR lease_until < :now) ORDER BY next_at, id LIMIT :n)
RETURNING *`;

const SETTLE_DONE = "DELETE FROM jobs WHERE id = :id AND rev = :rev";

/** Every table §2.6 creates, so a DDL that silently stopped half-way is caught. */
const TABLES = [
  "accounts",
  "bindings",
  "blocks",
  "cards",
  "counters",
  "dead_letters",
  "devices",
  "exchange_codes",
  "exchange_requests",
  "identifiers",
  "jobs",
  "meta",
  "payloads",
  "processes",
  "push_nodes",
  "push_sends",
  "queue_marks",
  "resources",
  "shares",
  "stream_cursors",
  "stream_entries",
  "subscribers",
  "tombstones",
];

function open(dir: string): Db {
  const db = new Database(path.join(dir, "cardlink.sqlite"));
  db.pragma("journal_mode = WAL");
  db.pragma("foreign_keys = ON");
  return db;
}

/**
 * A small but complete data set: every account with a JID, a device and a shared cursor; a ring of bindings
 * (each account bound to its next 3), the big owner bound to HOLDERS accounts; a card per account; one row in
 * every other table.
 */
function seed(db: Db): void {
  const ins = {
    account: db.prepare("INSERT INTO accounts (id, state, created_at, seen_at) VALUES (?, 'active', ?, ?)"),
    ident: db.prepare(
      "INSERT INTO identifiers (kind, value, account_id, is_primary, verified_at, created_at) VALUES ('jid', ?, ?, 1, ?, ?)",
    ),
    device: db.prepare(
      "INSERT INTO devices (id, account_id, device_id, platform, push_token, token_state, created_at, updated_at) VALUES (?, ?, 'phone', 'ios', ?, 'ok', ?, ?)",
    ),
    cursor: db.prepare("INSERT INTO stream_cursors (account_id, consumer, pos, seen_at) VALUES (?, 0, 0, ?)"),
    card: db.prepare(
      "INSERT INTO cards (account_id, version, hash, card, seq, updated_at) VALUES (?, 1, ?, '{}', ?, ?)",
    ),
    binding: db.prepare(
      "INSERT OR IGNORE INTO bindings (id, a, b, a_devices, b_devices, via, created_at) VALUES (?, ?, ?, '[]', '[]', 'code', ?)",
    ),
    share: db.prepare(
      "INSERT OR IGNORE INTO shares (owner, holder, binding_id, policy, seq) VALUES (?, ?, ?, NULL, ?)",
    ),
  };
  const bind = (x: number, y: number, seq: number): void => {
    const [a, b] = x < y ? [x, y] : [y, x];
    const id = `b-${a}-${b}`;
    if (ins.binding.run(id, a, b, NOW).changes === 0) return;
    ins.share.run(a, b, id, seq);
    ins.share.run(b, a, id, seq);
  };
  db.transaction(() => {
    for (let i = 1; i <= ACCOUNTS; i++) {
      ins.account.run(i, NOW, NOW);
      ins.ident.run(jid(i), i, NOW, NOW);
      ins.device.run(i, i, `token-${i}`, NOW, NOW);
      ins.cursor.run(i, NOW);
      ins.card.run(i, `h${i}`, i, NOW);
    }
    let seq = ACCOUNTS;
    for (let i = 1; i <= ACCOUNTS; i++)
      for (let k = 1; k <= 3; k++) bind(i, ((i + k - 1) % ACCOUNTS) + 1, ++seq);
    for (let h = 2; h <= HOLDERS + 1; h++) bind(BIG_OWNER, h, ++seq);
    db.prepare("UPDATE counters SET value = ? WHERE name = 'seq'").run(seq);
    db.prepare("INSERT INTO meta (key, value) VALUES ('secret:push-ref-key', 'x')").run();
    db.prepare("INSERT INTO processes (id, started_at, heartbeat_at) VALUES ('h:1:abcd', ?, ?)").run(
      NOW,
      NOW,
    );
    db.prepare(
      "INSERT INTO resources (full_jid, account_id, device, process, since) VALUES (?, 2, 2, NULL, ?)",
    ).run(`${jid(2)}/phone`, NOW);
    db.prepare("INSERT INTO subscribers (account_id, since) VALUES (2, ?)").run(NOW);
    db.prepare("INSERT INTO blocks (owner, blocked, created_at) VALUES (3, 4, ?), (3, 5, ?)").run(NOW, NOW);
    db.prepare(
      "INSERT INTO exchange_requests (id, from_account, to_account, from_device, created_at, expires_at) VALUES ('r1', 6, 7, 'phone', ?, ?)",
    ).run(NOW, NOW + 1000);
    db.prepare(
      "INSERT INTO exchange_codes (code, owner, device_id, created_at, expires_at) VALUES ('ABCD', 8, NULL, ?, ?)",
    ).run(NOW, NOW + 1000);
    db.prepare("INSERT INTO push_nodes (node, device, secret, created_at) VALUES ('n1', 9, 's', ?)").run(NOW);
    db.prepare("INSERT INTO push_sends (token, sent_at) VALUES ('token-9', ?)").run(NOW);
    db.prepare("INSERT INTO tombstones (holder, owner, seq) VALUES (10, 99999, 5)").run(); // owner: no FK (§2.6)
    const payload = db
      .prepare(
        "INSERT INTO payloads (kind, body, created_at) VALUES ('exchange-declined', ?, ?) RETURNING id",
      )
      .get('{"id":"r0","by":7}', NOW) as { id: number };
    db.prepare(
      "INSERT INTO stream_entries (account_id, seq, ord, kind, subject, payload_id, created_at) VALUES (6, 1, 0, 'exchange-declined', 'r0', ?, ?)",
    ).run(payload.id, NOW);
    db.prepare(
      "INSERT INTO dead_letters (channel, kind, target, account_id, body, uid, attempts, created_at, died_at) VALUES ('webhook', 'n', 't', 1, '{}', 'u', 9, ?, ?)",
    ).run(NOW, NOW);
  })();
}

/** The detail lines of EXPLAIN QUERY PLAN for a statement. */
function plan(db: Db, sql: string, params: Record<string, unknown>): string[] {
  const rows = db.prepare(`EXPLAIN QUERY PLAN ${sql}`).all(params) as Array<{ detail: string }>;
  return rows.map((r) => r.detail);
}

describe("schema 2000 (docs/REDESIGN.md §2.6) on SQLite", () => {
  let dir: string;
  let db: Db;

  before(() => {
    dir = mkdtempSync(path.join(tmpdir(), "cardlink-schema2000-"));
    db = open(dir);
    db.exec(SCHEMA_2000.sql.sqlite ?? "");
    seed(db);
  });
  after(() => {
    db.close();
    rmSync(dir, { recursive: true, force: true });
  });

  describe("loading", () => {
    it("is migration 2000 (with its PostgreSQL baseline beside it), and loads every table with foreign keys on", () => {
      expect(SCHEMA_2000.version).to.equal(2000);
      // The PostgreSQL text is checked against this catalogue in test/contract/postgres.test.ts.
      expect(SCHEMA_2000.sql.postgres?.startsWith(SCHEMA_2000_POSTGRES_DDL)).to.equal(true);
      expect(SCHEMA_2000.sql.sqlite?.startsWith(SCHEMA_2000_DDL)).to.equal(true);
      expect(db.pragma("foreign_keys", { simple: true })).to.equal(1);
      const tables = (
        db.prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name").all() as Array<{
          name: string;
        }>
      ).map((r) => r.name);
      expect(tables).to.deep.equal(TABLES);
    });

    it("a fresh install starts the seq counter and the push-scan mark at 0", () => {
      const fresh = new Database(path.join(dir, "fresh.sqlite"));
      try {
        fresh.pragma("foreign_keys = ON");
        fresh.exec(SCHEMA_2000.sql.sqlite ?? "");
        expect(fresh.prepare("SELECT name, value FROM counters").all()).to.deep.equal([
          { name: "seq", value: 0 },
        ]);
        expect(fresh.prepare("SELECT name, pos FROM queue_marks").all()).to.deep.equal([
          { name: "push-scan", pos: 0 },
        ]);
      } finally {
        fresh.close();
      }
    });

    it("the seeded data set passes foreign_key_check", () => {
      expect(db.prepare("SELECT COUNT(*) AS n FROM shares").get()).to.deep.equal({
        n: 2 * (3 * ACCOUNTS + HOLDERS - 3),
      });
      expect(db.pragma("foreign_key_check")).to.deep.equal([]);
    });

    it("foreign keys are enforced: a share of an unknown account, a job of an unknown device fail", () => {
      expect(() =>
        db
          .prepare("INSERT INTO shares (owner, holder, binding_id, seq) VALUES (1, 999999, 'b-1-2', 1)")
          .run(),
      ).to.throw(/FOREIGN KEY constraint failed/);
      expect(() =>
        db
          .prepare(
            "INSERT INTO jobs (channel, kind, target, device, body, uid, created_at) VALUES ('push', 'n', 't', 999999, '{}', 'u', 0)",
          )
          .run(),
      ).to.throw(/FOREIGN KEY constraint failed/);
    });
  });

  describe("identity constraints (§2.2)", () => {
    it("an identifier belongs to one account; an account has one primary JID", () => {
      expect(() =>
        db
          .prepare(
            "INSERT INTO identifiers (kind, value, account_id, is_primary, created_at) VALUES ('jid', ?, 2, 0, 0)",
          )
          .run(jid(1)),
      ).to.throw(/UNIQUE constraint failed: identifiers.kind, identifiers.value/);
      expect(() =>
        db
          .prepare(
            "INSERT INTO identifiers (kind, value, account_id, is_primary, created_at) VALUES ('jid', 'other@example.com', 2, 1, 0)",
          )
          .run(),
      ).to.throw(/UNIQUE constraint failed: identifiers.account_id/);
      // A second, non-primary identifier is fine (issue 12's phone numbers, held JIDs).
      const r = db
        .prepare(
          "INSERT INTO identifiers (kind, value, account_id, created_at) VALUES ('tel', '+15550100', 2, 0)",
        )
        .run();
      expect(r.changes).to.equal(1);
      db.prepare("DELETE FROM identifiers WHERE kind = 'tel'").run();
    });

    it("a binding is stored once, smaller account id first", () => {
      expect(() =>
        db
          .prepare(
            "INSERT INTO bindings (id, a, b, a_devices, b_devices, via, created_at) VALUES ('x', 5, 4, '[]', '[]', 'code', 0)",
          )
          .run(),
      ).to.throw(/CHECK constraint failed/);
      expect(() =>
        db
          .prepare(
            "INSERT INTO bindings (id, a, b, a_devices, b_devices, via, created_at) VALUES ('x', 1, 2, '[]', '[]', 'code', 0)",
          )
          .run(),
      ).to.throw(/UNIQUE constraint failed: bindings.a, bindings.b/);
    });
  });

  describe("the queue's statements (§2.3, §2.5.2)", () => {
    const lane = (a: number): Array<{ id: number; seq: number; ord: number }> =>
      db
        .prepare("SELECT id, seq, ord FROM stream_entries WHERE account_id = ? AND kind = 'card'")
        .all(a) as Array<{
        id: number;
        seq: number;
        ord: number;
      }>;

    it("the fan-out upsert writes one entry per holder, then coalesces onto the same rows at the newest seq", () => {
      const fan = db.prepare(FAN_OUT);
      const args = (seq: number) => ({
        seq,
        ord: 0,
        kind: "card",
        subject: String(BIG_OWNER),
        subject_account: BIG_OWNER,
        payload: null,
        now: NOW,
        owner: BIG_OWNER,
      });
      const holders = (
        db.prepare("SELECT holder FROM shares WHERE owner = ?").all(BIG_OWNER) as Array<{ holder: number }>
      )
        .map((r) => r.holder)
        .sort((x, y) => x - y);
      expect(holders.length).to.be.greaterThan(HOLDERS);
      const first = (fan.all(args(10_001)) as Array<{ account_id: number }>).map((r) => r.account_id);
      expect([...first].sort((x, y) => x - y)).to.deep.equal(holders);
      const before = lane(2);
      expect(before).to.have.length(1);
      expect(before[0]?.seq).to.equal(10_001);
      // The second change to the same owner: every holder still has the first pending, so every row is updated
      // in place (same id: a rowid table moves (seq, ord) without moving the row), and RETURNING lists them all.
      const second = (fan.all(args(10_002)) as Array<{ account_id: number }>).map((r) => r.account_id);
      expect([...second].sort((x, y) => x - y)).to.deep.equal(holders);
      expect(lane(2)).to.deep.equal([{ id: before[0]?.id, seq: 10_002, ord: 0 }]);
      const n = db
        .prepare("SELECT COUNT(*) AS n FROM stream_entries WHERE kind = 'card' AND subject = ?")
        .get("1");
      expect(n).to.deep.equal({ n: holders.length });
    });

    it("a `keep` kind's second append of the same subject is a unique violation (a bug, §2.3.2)", () => {
      const ins = db.prepare(
        "INSERT INTO stream_entries (account_id, seq, ord, kind, subject, created_at) VALUES (3, 20, 0, 'group-invitation', 'inv-1', 0)",
      );
      ins.run();
      expect(() => ins.run()).to.throw(
        /UNIQUE constraint failed: stream_entries.account_id, stream_entries.kind, stream_entries.subject/,
      );
      db.prepare("DELETE FROM stream_entries WHERE kind = 'group-invitation'").run();
    });

    it("a claim leases free cursors once; another owner gets nothing until the lease expires", () => {
      const ids = (
        db.prepare("SELECT id FROM stream_cursors WHERE account_id IN (2, 3, 4) ORDER BY id").all() as Array<{
          id: number;
        }>
      ).map((r) => r.id);
      const claim = db.prepare(CLAIM_CURSORS);
      const cursors = JSON.stringify(ids);
      const a = claim.all({ me: "A", until: NOW + 30_000, cursors, now: NOW }) as Array<{
        id: number;
        pos: number;
      }>;
      expect(a.map((r) => r.id).sort((x, y) => x - y)).to.deep.equal(ids);
      expect(claim.all({ me: "B", until: NOW + 30_000, cursors, now: NOW + 1 })).to.deep.equal([]);
      // The holder may renew its own claim; after lease_until anyone may take it.
      expect(claim.all({ me: "A", until: NOW + 40_000, cursors, now: NOW + 2 })).to.have.length(3);
      expect(claim.all({ me: "B", until: NOW + 90_000, cursors, now: NOW + 40_001 })).to.have.length(3);
    });

    it("an ack always applies, never moves pos back, and GC deletes what every active cursor passed", () => {
      const cur = db
        .prepare("SELECT id, pos, lease_owner FROM stream_cursors WHERE account_id = 2 AND consumer = 0")
        .get() as {
        id: number;
        pos: number;
        lease_owner: string | null;
      };
      expect(cur.lease_owner).to.equal("B");
      const ack = db.prepare(ACK);
      ack.run({ id: cur.id, upto: 10_002, now: NOW, me: "A" }); // A's late ack: applies, B's lease stays
      expect(
        db.prepare("SELECT pos, lease_owner FROM stream_cursors WHERE id = ?").get(cur.id),
      ).to.deep.equal({
        pos: 10_002,
        lease_owner: "B",
      });
      ack.run({ id: cur.id, upto: 10_001, now: NOW, me: "B" }); // an older ack: pos stays, B's lease cleared
      expect(
        db.prepare("SELECT pos, lease_owner FROM stream_cursors WHERE id = ?").get(cur.id),
      ).to.deep.equal({
        pos: 10_002,
        lease_owner: null,
      });
      expect(lane(2)).to.have.length(1);
      expect(db.prepare(GC).run({ a: 2 }).changes).to.equal(1);
      expect(lane(2)).to.deep.equal([]);
      expect(lane(3)).to.have.length(1); // another lane is untouched
    });

    it("the job upsert replaces the body of a pending job (rev+1, attempts and next_at kept); no ckey keeps each", () => {
      const up = db.prepare(JOB_UPSERT);
      const job = (body: string, ckey: string | null, nextAt = 0) => ({
        channel: "push",
        kind: "notice",
        target: "9",
        account: 9,
        device: 9,
        ckey,
        body,
        uid: `uid-${body}`,
        next_at: nextAt,
        expires_at: NOW + 1000,
        now: NOW,
      });
      const first = up.get(job("v1", "ref-1")) as { id: number; rev: number };
      expect(first.rev).to.equal(1);
      db.prepare("UPDATE jobs SET attempts = 2, next_at = ? WHERE id = ?").run(NOW + 500, first.id); // deferred
      const second = up.get(job("v2", "ref-1")) as { id: number; rev: number };
      expect(second).to.deep.equal({ id: first.id, rev: 2 });
      expect(
        db.prepare("SELECT body, uid, attempts, next_at FROM jobs WHERE id = ?").get(first.id),
      ).to.deep.equal({
        body: "v2",
        uid: "uid-v1", // the idempotency id stays across replacements
        attempts: 2,
        next_at: NOW + 500,
      });
      const k1 = up.get(job("k1", null)) as { id: number };
      const k2 = up.get(job("k2", null)) as { id: number };
      expect(k1.id).to.not.equal(k2.id);
      // Settling the rev that was sent leaves a row replaced meanwhile (§2.3.6); the current rev deletes it.
      const settle = db.prepare(SETTLE_DONE);
      expect(settle.run({ id: first.id, rev: 1 }).changes).to.equal(0);
      expect(settle.run({ id: first.id, rev: 2 }).changes).to.equal(1);
    });

    it("the job claim takes due, unleased jobs of one channel, oldest first, once", () => {
      const claim = db.prepare(JOB_CLAIM);
      const got = claim.all({ me: "A", until: NOW + 30_000, c: "push", now: NOW, n: 10 }) as Array<{
        body: string;
      }>;
      expect(got.map((j) => j.body).sort()).to.deep.equal(["k1", "k2"]);
      expect(claim.all({ me: "B", until: NOW + 30_000, c: "push", now: NOW + 1, n: 10 })).to.deep.equal([]);
      expect(claim.all({ me: "B", until: NOW + 30_000, c: "webhook", now: NOW + 1, n: 10 })).to.deep.equal(
        [],
      );
    });
  });

  describe("hot query plans (§2.7)", () => {
    // Each statement with the index (or primary key) §2.7 names for it; a SCAN of any table fails the test.
    const HOT: Array<{ name: string; sql: string; params: Record<string, unknown>; uses: RegExp[] }> = [
      {
        name: "JID → account",
        sql: "SELECT account_id FROM identifiers WHERE kind = 'jid' AND value = :jid AND state = 'active'",
        params: { jid: jid(5) },
        uses: [/SEARCH identifiers USING PRIMARY KEY \(kind=\? AND value=\?\)/],
      },
      {
        name: "account → JID",
        sql: "SELECT value FROM identifiers WHERE account_id = :id AND is_primary = 1",
        params: { id: 5 },
        uses: [/SEARCH identifiers USING COVERING INDEX identifiers_primary \(account_id=\?\)/],
      },
      {
        name: "contacts",
        sql: "SELECT id, b AS peer FROM bindings WHERE a = :me UNION ALL SELECT id, a FROM bindings WHERE b = :me",
        params: { me: 5 },
        uses: [
          /SEARCH bindings USING INDEX sqlite_autoindex_bindings_\d \(a=\?\)/,
          /SEARCH bindings USING (COVERING )?INDEX bindings_b \(b=\?\)/,
        ],
      },
      {
        name: "sync page",
        sql: `SELECT s.owner, c.version, s.policy, CASE WHEN c.seq > s.seq THEN c.seq ELSE s.seq END AS changed
                FROM shares s JOIN cards c ON c.account_id = s.owner
               WHERE s.holder = :h AND (c.seq > :since OR s.seq > :since) ORDER BY changed LIMIT :n`,
        params: { h: 2, since: 0, n: 100 },
        uses: [
          /SEARCH s USING (COVERING )?INDEX shares_holder \(holder=\?\)/,
          /SEARCH c USING INTEGER PRIMARY KEY \(rowid=\?\)/,
        ],
      },
      {
        name: "fan-out",
        sql: FAN_OUT,
        params: {
          seq: 1,
          ord: 0,
          kind: "card",
          subject: "1",
          subject_account: 1,
          payload: null,
          now: NOW,
          owner: 1,
        },
        uses: [/SEARCH s USING PRIMARY KEY \(owner=\?\)/],
      },
      {
        name: "lane read",
        sql: "SELECT seq, ord, kind, subject FROM stream_entries WHERE account_id = :a AND seq > :pos ORDER BY seq, ord, id LIMIT 200",
        params: { a: 3, pos: 0 },
        uses: [/SEARCH stream_entries USING INDEX stream_lane \(account_id=\? AND seq>\?\)/],
      },
      {
        name: "GC after ack",
        sql: GC,
        params: { a: 3 },
        uses: [
          /SEARCH stream_entries USING (COVERING )?INDEX stream_lane \(account_id=\? AND seq<\?\)/,
          /SEARCH stream_cursors USING INDEX sqlite_autoindex_stream_cursors_\d \(account_id=\?\)/,
        ],
      },
      {
        name: "observer",
        sql: "SELECT account_id, seq, ord, kind, subject FROM stream_entries WHERE seq > :mark ORDER BY seq LIMIT 5000",
        params: { mark: 0 },
        uses: [/SEARCH stream_entries USING INDEX stream_seq \(seq>\?\)/],
      },
      {
        name: "jobs due (the claim's sub-select)",
        sql: JOB_CLAIM,
        params: { me: "A", until: 0, c: "push", now: NOW, n: 10 },
        uses: [/SEARCH jobs USING INDEX jobs_due \(channel=\? AND next_at<\?\)/],
      },
      {
        name: "cursor claim",
        sql: CLAIM_CURSORS,
        params: { me: "A", until: 0, cursors: "[1,2]", now: NOW },
        uses: [/SEARCH stream_cursors USING INTEGER PRIMARY KEY \(rowid=\?\)/],
      },
      {
        name: "blocklist page",
        sql: `SELECT i.value FROM blocks b JOIN identifiers i ON i.account_id = b.blocked AND i.is_primary = 1
               WHERE b.owner = :owner ORDER BY i.value LIMIT 100`,
        params: { owner: 3 },
        uses: [
          /SEARCH b USING PRIMARY KEY \(owner=\?\)/,
          /SEARCH i USING COVERING INDEX identifiers_primary \(account_id=\?\)/,
        ],
      },
    ];

    for (const q of HOT) {
      it(`${q.name}: ${q.uses.length === 1 ? "its index" : "its indexes"}, no table scan`, () => {
        const lines = plan(db, q.sql, q.params);
        for (const re of q.uses)
          expect(
            lines.some((l) => re.test(l)),
            `${re} in\n${lines.join("\n")}`,
          ).to.equal(true);
        // A scan of json_each (the claim's id list) reads the parameter, not a table; temp b-trees are sorts.
        const scans = lines.filter((l) => /^SCAN /.test(l) && !/VIRTUAL TABLE/.test(l));
        expect(scans, lines.join("\n")).to.deep.equal([]);
      });
    }
  });
});
