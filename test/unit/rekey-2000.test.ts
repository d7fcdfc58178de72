/**
 * Migration 2000 on an existing database (storage/sqlite/rekey-2000.ts, docs/REDESIGN.md §2.8.2): contract case
 * 14 of §4.5 on a copy of test/fixtures/v200.sqlite, every row read back through the new keys and compared with
 * the old row; what a failure leaves (nothing: the database stays at 200/300, row for row and table for table);
 * and which migration migrations2000() picks for a fresh install, a legacy database and a migrated one.
 * SQLite only: the fixture is a SQLite file, and PostgreSQL never had the legacy schema (issue 13).
 */
import { copyFileSync, mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { expect } from "chai";
import Database from "better-sqlite3";
import {
  BINDINGS,
  DECLINED_REQUEST,
  DEVICES,
  JID,
  PUSH_JOBS,
  PUSH_REF_KEY,
  dumpRows,
  type RowDump,
} from "../../scripts/make-fixture-v200.js";
import { flattenModules } from "../../storage/migrate.js";
import { LEGACY } from "../../storage/sqlite/legacy.js";
import {
  REKEY_2000,
  REKEY_2000_SQL,
  REKEY_META_KEY,
  accountsModule,
  migrations2000,
} from "../../storage/sqlite/rekey-2000.js";
import { SCHEMA_2000 } from "../../storage/sqlite/schema-2000.js";
import { SqliteStore } from "../../storage/sqlite/store.js";
import type { Migration } from "../../storage/store.js";

const FIXTURE = path.resolve(process.cwd(), "test", "fixtures", "v200.sqlite");

/**
 * The update id on the wire (PROTOCOL.md), as the pre-redesign component/delivery.ts renders it from an outbox row.
 * Written out here because that file goes at the switch (S11) and this test must outlive it.
 */
const updateId = (e: { kind: string; subject: string; seq: number }): string =>
  `${e.kind}:${e.subject}:${e.seq}`;

type Row = Record<string, unknown>;

let dir: string;
let n = 0;
/** A fresh copy of the fixture, optionally changed with plain SQL first (foreign keys off, as a repair would). */
function fixtureCopy(plant?: string): string {
  const file = path.join(dir, `copy-${n++}.sqlite`);
  copyFileSync(FIXTURE, file);
  if (plant) {
    const db = new Database(file);
    db.pragma("foreign_keys = OFF");
    db.exec(plant);
    db.close();
  }
  return file;
}

/** Rows of every table and the schema (type, name, table, SQL) of every object: equal means untouched. */
function snapshot(db: Database.Database): { rows: RowDump; schema: Row[] } {
  return {
    rows: dumpRows(db),
    // Whitespace collapsed: schema_migrations is created by db.ts's runner (the fixture) or the new one.
    schema: (
      db.prepare("SELECT type, name, tbl_name, sql FROM sqlite_master ORDER BY type, name").all() as Row[]
    ).map((r) => ({ ...r, sql: typeof r.sql === "string" ? r.sql.replace(/\s+/g, " ") : r.sql })),
  };
}

const sortRows = (rows: Row[]): string[] => rows.map((r) => JSON.stringify(r)).sort();

/** The legacy database's rows, read before the migration with today's column names. */
function oldRows(file: string): RowDump {
  const db = new Database(file, { readonly: true });
  try {
    return dumpRows(db);
  } finally {
    db.close();
  }
}

describe("migration 2000 on an existing database (rekey-2000.ts)", function () {
  this.timeout(30_000);
  before(() => {
    dir = mkdtempSync(path.join(os.tmpdir(), "cardlink-rekey-"));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  describe("14. on test/fixtures/v200.sqlite", () => {
    let file: string;
    let old: RowDump;
    let store: SqliteStore;
    let db: Database.Database;
    let report: Awaited<ReturnType<SqliteStore["migrate"]>>;
    const all = (sql: string): Row[] => db.prepare(sql).all() as Row[];

    before(async () => {
      file = fixtureCopy();
      old = oldRows(file);
      store = new SqliteStore(file, { legacy: false });
      report = await store.migrate(migrations2000({ version: await store.schemaVersion() }));
      db = store.db;
    });
    after(async () => {
      await store.close();
    });

    it("applies the index-only 300, then 2000, and records both", async () => {
      expect(old.schema_migrations?.map((r) => r.version)).to.deep.equal([1, 100, 200]);
      expect(report).to.deep.equal({ applied: [300, 2000], current: 2000, pending: [] });
      expect(await store.schemaVersion()).to.equal(2000);
      expect(all("SELECT version, name FROM schema_migrations WHERE version = 2000")).to.deep.equal([
        { version: 2000, name: SCHEMA_2000.name },
      ]);
    });

    it("leaves exactly a fresh install's schema, object for object, and no old or temp table", async () => {
      const fresh = new SqliteStore(path.join(dir, "fresh.sqlite"), { legacy: false });
      try {
        await fresh.migrate(migrations2000({ version: 0 }));
        expect(snapshot(db).schema).to.deep.equal(snapshot(fresh.db).schema);
      } finally {
        await fresh.close();
      }
      expect(all("SELECT name FROM sqlite_temp_master")).to.deep.equal([]);
      for (const t of ["outbox", "push_queue", "push_sent"])
        expect(all(`SELECT name FROM sqlite_master WHERE name = '${t}'`), t).to.deep.equal([]);
    });

    it("row counts: every old row is there under its new key", () => {
      const count = (t: string): number =>
        Number((db.prepare(`SELECT COUNT(*) AS n FROM ${t}`).get() as Row).n);
      const len = (t: string): number => old[t]?.length ?? -1;
      const pairs: Array<[string, string]> = [
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
        ["jobs", "push_queue"],
        ["push_nodes", "push_nodes"],
        ["push_sends", "push_sent"],
      ];
      for (const [now, was] of pairs) {
        expect(len(was), was).to.be.above(0); // the fixture has rows in every table
        expect(count(now), `${now} ← ${was}`).to.equal(len(was));
      }
      expect(count("devices")).to.equal(DEVICES.length);
      expect(count("bindings")).to.equal(BINDINGS.length);
      expect(count("stream_entries")).to.equal(17);
      expect(count("payloads")).to.equal(1);
      expect(count("jobs")).to.equal(PUSH_JOBS.length);
    });

    it("maps every JID to one account, numbered in JID order, with one primary jid identifier", () => {
      const jids = Object.values(JID).sort();
      expect(
        all("SELECT value, account_id, kind, state, is_primary FROM identifiers ORDER BY account_id"),
      ).to.deep.equal(
        jids.map((j, i) => ({ value: j, account_id: i + 1, kind: "jid", state: "active", is_primary: 1 })),
      );
      // Everyone in the fixture acted: mallory declined dave's request (named only inside the notice's payload).
      expect(all("SELECT id, state FROM accounts ORDER BY id")).to.deep.equal(
        jids.map((_, i) => ({ id: i + 1, state: "active" })),
      );
      expect(
        all("SELECT COUNT(*) AS n FROM accounts WHERE seen_at IS NULL OR created_at IS NULL"),
      ).to.deep.equal([{ n: 0 }]);
    });

    it("every keyed table reads back, through identifiers, as the old rows", () => {
      // The JID of an account id column of the outer row (always qualified: x.<col>, or d.<col> for nodes).
      const J = (col: string): string => `(SELECT i.value FROM identifiers i WHERE i.account_id = ${col})`;
      const back: Record<string, string> = {
        devices: `SELECT ${J("x.account_id")} AS owner, device_id, platform, name, push_token, push_topic, push_key,
                  token_state, created_at, updated_at FROM devices x`,
        cards: `SELECT ${J("x.account_id")} AS owner, version, hash, card, seq, updated_at FROM cards x`,
        shares: `SELECT ${J("x.owner")} AS owner, ${J("x.holder")} AS holder, binding_id, policy, seq FROM shares x`,
        tombstones: `SELECT ${J("x.holder")} AS holder, ${J("x.owner")} AS owner, seq FROM tombstones x`,
        blocks: `SELECT ${J("x.owner")} AS owner, ${J("x.blocked")} AS blocked FROM blocks x`,
        exchange_requests: `SELECT id, ${J("x.from_account")} AS from_jid, ${J("x.to_account")} AS to_jid,
                            from_device, created_at, expires_at FROM exchange_requests x`,
        exchange_codes: `SELECT code, ${J("x.owner")} AS owner, device_id, created_at, expires_at FROM exchange_codes x`,
        resources: `SELECT full_jid, ${J("x.account_id")} AS bare, since FROM resources x`,
        subscribers: `SELECT ${J("x.account_id")} AS bare, since FROM subscribers x`,
        push_sent: "SELECT token, sent_at FROM push_sends",
        push_nodes: `SELECT node, ${J("d.account_id")} AS owner, d.device_id, secret, n.created_at
                     FROM push_nodes n JOIN devices d ON d.id = n.device`,
      };
      for (const [was, sql] of Object.entries(back))
        expect(sortRows(all(sql)), was).to.deep.equal(sortRows(old[was] ?? []));
      expect(
        all("SELECT COUNT(*) AS n FROM resources WHERE device IS NOT NULL OR process IS NOT NULL"),
      ).to.deep.equal([{ n: 0 }]);
    });

    it("bindings: a < b by account id, each side's devices with it", () => {
      const rows =
        all(`SELECT b.id, b.a, b.b, ia.value AS ja, ib.value AS jb, a_devices, b_devices, via, b.created_at
                          FROM bindings b JOIN identifiers ia ON ia.account_id = b.a
                          JOIN identifiers ib ON ib.account_id = b.b`);
      expect(rows).to.have.length(BINDINGS.length);
      for (const r of rows) {
        expect(Number(r.a), String(r.id)).to.be.below(Number(r.b));
        const was = old.bindings?.find((o) => o.id === r.id);
        const devicesOf = (o: Row | undefined, j: unknown): unknown =>
          o === undefined ? "missing" : o.a === j ? o.a_devices : o.b === j ? o.b_devices : "missing";
        expect(r.a_devices, String(r.id)).to.equal(devicesOf(was, r.ja));
        expect(r.b_devices, String(r.id)).to.equal(devicesOf(was, r.jb));
        expect([r.via, r.created_at]).to.deep.equal([was?.via, was?.created_at]);
      }
      // The swap itself (a pair whose JID order and account order differ) is planted below.
    });

    it("the seq counter is kept; the push-scan mark starts there; meta keeps its secret and records the copy", () => {
      const oldSeq = Number(old.meta?.find((r) => r.key === "seq")?.value);
      expect(oldSeq).to.equal(19);
      expect(all("SELECT name, value FROM counters")).to.deep.equal([{ name: "seq", value: oldSeq }]);
      expect(all("SELECT name, pos, lease_owner, lease_until FROM queue_marks")).to.deep.equal([
        { name: "push-scan", pos: oldSeq, lease_owner: null, lease_until: 0 },
      ]);
      const meta = Object.fromEntries(all("SELECT key, value FROM meta").map((r) => [r.key, r.value]));
      expect(Object.keys(meta).sort()).to.deep.equal([REKEY_META_KEY, "secret:push-ref-key"]);
      expect(meta["secret:push-ref-key"]).to.equal(PUSH_REF_KEY);
      const record = JSON.parse(String(meta[REKEY_META_KEY])) as Row;
      expect({ ...record, at: typeof record.at }).to.deep.equal({
        at: "number",
        accounts: 6,
        droppedPushJobs: 0,
        droppedPushNodes: 0,
      });
    });

    it("every pending outbox row is a stream entry with the same seq and the same wire id, in the old order", () => {
      const entries = all(`
        SELECT e.id, r.value AS recipient, e.seq, e.ord, e.kind, e.subject, e.subject_account, e.created_at,
               s.value AS subject_jid, p.body
          FROM stream_entries e JOIN identifiers r ON r.account_id = e.account_id
          LEFT JOIN identifiers s ON s.account_id = e.subject_account
          LEFT JOIN payloads p ON p.id = e.payload_id`);
      // The wire subject as §2.8.3 renders it: the subject account's primary JID, else the entity id.
      const wire = (e: Row): string =>
        updateId({ kind: String(e.kind), subject: String(e.subject_jid ?? e.subject), seq: Number(e.seq) });
      const oldId = (o: Row): string =>
        updateId({ kind: String(o.kind), subject: String(o.subject), seq: Number(o.seq) });
      const oldIds = (old.outbox ?? []).map(oldId);
      expect(oldIds).to.have.length(17);
      expect(entries.map(wire).sort()).to.deep.equal(oldIds.sort());
      for (const o of old.outbox ?? []) {
        const e = entries.find((x) => x.recipient === o.recipient && wire(x) === oldId(o));
        const about = String(o.kind) === "card" || String(o.kind) === "unbound";
        expect(e?.created_at, wire(o)).to.equal(o.created_at);
        // Kinds about a user: the subject is that account's id in decimal, and subject_account holds it.
        expect(e?.subject, wire(o)).to.equal(about ? String(e?.subject_account) : o.subject);
        expect(e?.subject_account === null, wire(o)).to.equal(!about);
      }
      // Per lane, (seq, ord, id) gives today's delivery order (outbox_order: recipient, seq, then kind, subject).
      for (const r of Object.values(JID)) {
        const now = entries
          .filter((e) => e.recipient === r)
          .sort(
            (x, y) =>
              Number(x.seq) - Number(y.seq) || Number(x.ord) - Number(y.ord) || Number(x.id) - Number(y.id),
          )
          .map(wire);
        const then = (old.outbox ?? [])
          .filter((o) => o.recipient === r)
          .sort(
            (x, y) =>
              Number(x.seq) - Number(y.seq) ||
              String(x.kind).localeCompare(String(y.kind)) ||
              String(x.subject).localeCompare(String(y.subject)),
          )
          .map((o) => oldId(o));
        expect(now, r).to.deep.equal(then);
      }
      // dave's seq 9: binding b-bob-dave before bob's card (ord 0, 1).
      expect(
        entries
          .filter((e) => e.recipient === JID.dave && e.seq === 9)
          .map((e) => [e.kind, e.ord])
          .sort(),
      ).to.deep.equal([["binding", 0]]);
      expect(
        entries
          .filter((e) => e.recipient === JID.bob && e.seq === 9)
          .map((e) => [e.kind, e.ord])
          .sort(),
      ).to.deep.equal([
        ["binding", 0],
        ["card", 1],
      ]);
      // The declined notice's payload is stored once, its JID replaced by the decliner's account id.
      const declined = entries.find((e) => e.kind === "exchange-declined");
      const mallory = all(`SELECT account_id FROM identifiers WHERE value = '${JID.mallory}'`)[0]?.account_id;
      expect(JSON.parse(String(declined?.body))).to.deep.equal({ id: DECLINED_REQUEST.id, by: mallory });
      expect(all("SELECT kind FROM payloads")).to.deep.equal([{ kind: "exchange-declined" }]);
    });

    it("one shared cursor per account, at 0", () => {
      expect(
        all("SELECT account_id, consumer, pos, state, attempts, next_at, lease_owner FROM stream_cursors"),
      ).to.deep.equal(
        all("SELECT id FROM accounts ORDER BY id").map((a) => ({
          account_id: a.id,
          consumer: 0,
          pos: 0,
          state: "active",
          attempts: 0,
          next_at: 0,
          lease_owner: null,
        })),
      );
    });

    it("push notices are push jobs with the old collapse ids as ckey and the old notice ids as uid", () => {
      const jobs = all(`SELECT j.*, i.value AS owner, d.device_id AS device_name FROM jobs j
                          JOIN devices d ON d.id = j.device JOIN identifiers i ON i.account_id = j.account_id`);
      expect(jobs).to.have.length(PUSH_JOBS.length);
      for (const q of old.push_queue ?? []) {
        const j = jobs.find((x) => x.uid === q.id);
        expect(j, String(q.id)).to.not.equal(undefined);
        expect(
          {
            channel: j?.channel,
            kind: j?.kind,
            ckey: j?.ckey,
            owner: j?.owner,
            device: j?.device_name,
            target: j?.target,
            attempts: j?.attempts,
            next_at: j?.next_at,
            expires_at: j?.expires_at,
            created_at: j?.created_at,
            rev: j?.rev,
            lease_owner: j?.lease_owner,
          },
          String(q.id),
        ).to.deep.equal({
          channel: "push",
          kind: "notice",
          ckey: q.collapse_id,
          owner: q.owner,
          device: q.device_id,
          target: String(j?.device),
          attempts: q.attempts,
          next_at: q.next_at,
          expires_at: q.expires_at,
          created_at: q.created_at,
          rev: 1,
          lease_owner: null,
        });
        expect(JSON.parse(String(j?.body)), String(q.id)).to.deep.equal({
          platform: q.platform,
          token: q.token,
          topic: q.topic,
          kind: q.kind,
          collapseId: q.collapse_id,
          alert: q.alert === null ? null : JSON.parse(String(q.alert)),
          data: JSON.parse(String(q.data)),
        });
      }
      expect(jobs.map((j) => j.uid).sort()).to.deep.equal(PUSH_JOBS.map((p) => p.id).sort());
    });

    it("foreign_key_check is empty, integrity holds, foreign keys are on again, and seq() continues", async () => {
      expect(all("PRAGMA foreign_key_check")).to.deep.equal([]);
      expect(all("PRAGMA integrity_check")).to.deep.equal([{ integrity_check: "ok" }]);
      expect(db.pragma("foreign_keys", { simple: true })).to.equal(1);
      expect(await store.tx("next", (tx) => tx.seq())).to.equal(20);
      // Cascades work on the copied keys: deleting dave's account takes his devices, jobs, nodes and lanes.
      db.exec("SAVEPOINT probe");
      db.prepare(`DELETE FROM accounts WHERE id = (SELECT account_id FROM identifiers WHERE value = ?)`).run(
        JID.dave,
      );
      expect(all("SELECT COUNT(*) AS n FROM jobs")).to.deep.equal([{ n: 0 }]);
      expect(all("SELECT node FROM push_nodes")).to.deep.equal([{ node: "node-alice-iphone" }]);
      db.exec("ROLLBACK TO probe; RELEASE probe");
    });
  });

  describe("planted rows: the swap, placeholders, and what is dropped on purpose", () => {
    it("swaps a pair stored in JID order against account order; drops orphan and superseded notices, counts them", async () => {
      const file = fixtureCopy(`
        -- a binding whose JID order (mallory > carol) is against the account order it gets: stored b-side first
        INSERT INTO bindings (id, a, b, a_devices, b_devices, via, created_at)
          VALUES ('b-planted', '${JID.mallory}', '${JID.carol}', '["m-phone"]', '["carol-laptop"]', 'code', 1);
        -- only named by someone else: a placeholder
        INSERT INTO blocks (owner, blocked) VALUES ('${JID.carol}', 'zed@example.org');
        -- a notice whose device is gone, and an older one the fixture's p-dave-wake replaces (old token)
        INSERT INTO push_queue (id, owner, device_id, platform, token, topic, kind, collapse_id, alert, data,
                                expires_at, created_at)
          VALUES ('p-gone', '${JID.bob}', 'bob-old-phone', 'android', 'fcm:old', NULL, 'background',
                  'cardlink-sync', NULL, '{}', 4102444800000, 1),
                 ('p-old-token', '${JID.dave}', 'dave-iphone', 'ios', 'old-token', NULL, 'background',
                  'cardlink-sync', NULL, '{}', 4102444800000, 2);
        INSERT INTO push_nodes (node, owner, device_id, secret, created_at)
          VALUES ('node-gone', '${JID.bob}', 'bob-old-phone', 's', 1);
      `);
      const store = new SqliteStore(file, { legacy: false });
      try {
        await store.migrate(migrations2000({ version: await store.schemaVersion() }));
        const db = store.db;
        const id = (j: string): number =>
          Number((db.prepare("SELECT account_id FROM identifiers WHERE value = ?").get(j) as Row).account_id);
        expect(id(JID.carol)).to.be.below(id(JID.mallory));
        expect(
          db.prepare("SELECT a, b, a_devices, b_devices FROM bindings WHERE id = 'b-planted'").get(),
        ).to.deep.equal({
          a: id(JID.carol),
          b: id(JID.mallory),
          a_devices: '["carol-laptop"]',
          b_devices: '["m-phone"]',
        });
        expect(
          db.prepare("SELECT state, seen_at FROM accounts WHERE id = ?").get(id("zed@example.org")),
        ).to.deep.equal({ state: "placeholder", seen_at: null });
        expect(
          db
            .prepare("SELECT consumer, pos FROM stream_cursors WHERE account_id = ?")
            .all(id("zed@example.org")),
        ).to.deep.equal([{ consumer: 0, pos: 0 }]);
        expect(
          (db.prepare("SELECT uid FROM jobs ORDER BY uid").all() as Row[]).map((r) => r.uid),
        ).to.deep.equal(PUSH_JOBS.map((p) => p.id).sort());
        expect(
          db.prepare("SELECT COUNT(*) AS n FROM push_nodes WHERE node = 'node-gone'").get(),
        ).to.deep.equal({
          n: 0,
        });
        const record = JSON.parse(
          String((db.prepare("SELECT value FROM meta WHERE key = ?").get(REKEY_META_KEY) as Row).value),
        ) as Row;
        expect([record.accounts, record.droppedPushJobs, record.droppedPushNodes]).to.deep.equal([7, 2, 1]);
        expect(db.prepare("PRAGMA foreign_key_check").all()).to.deep.equal([]);
      } finally {
        await store.close();
      }
    });
  });

  describe("a failure leaves the database at 200/300, untouched", () => {
    /** Brings a copy to 300 with the legacy module, snapshots it, runs `m`, and returns the error and both snapshots. */
    async function failing(m: Migration, plant?: string) {
      const store = new SqliteStore(fixtureCopy(plant), { legacy: false });
      try {
        await store.migrate(flattenModules([LEGACY]));
        const before = snapshot(store.db);
        const err = (await store.migrate([...flattenModules([LEGACY]), m]).catch((e: unknown) => e)) as Error;
        const after = snapshot(store.db);
        const version = await store.schemaVersion();
        const temp = store.db.prepare("SELECT name FROM sqlite_temp_master").all();
        const fk = store.db.pragma("foreign_keys", { simple: true });
        // The same store then migrates for real: the failed attempt left nothing behind that is in the way.
        const retry = plant ? undefined : await store.migrate([...flattenModules([LEGACY]), REKEY_2000]);
        return { err, before, after, version, temp, fk, retry };
      } finally {
        await store.close();
      }
    }

    it("a post-condition that fails (a row lost in the copy) rolls everything back", async () => {
      const lossy: Migration = {
        ...REKEY_2000,
        sql: { sqlite: `${REKEY_2000_SQL}\nDELETE FROM stream_entries WHERE kind = 'unbound';` },
      };
      const r = await failing(lossy);
      expect(r.err).to.be.instanceOf(Error);
      expect(r.err.message).to.match(/post-conditions failed: stream_entries has 15 rows, expected 17/);
      expect(r.version).to.equal(300);
      expect(r.after).to.deep.equal(r.before);
      expect(r.temp).to.deep.equal([]);
      expect(r.fk).to.equal(1);
      expect(r.retry).to.deep.equal({ applied: [2000], current: 2000, pending: [] });
    });

    it("a broken foreign key (a share of a binding that is gone) rolls back, naming the table", async () => {
      const r = await failing(
        REKEY_2000,
        `INSERT INTO shares (owner, holder, binding_id, policy, seq)
           VALUES ('${JID.erin}', '${JID.alice}', 'b-missing', NULL, 1);`,
      );
      expect(r.err.message).to.match(/foreign keys broken in shares/);
      expect(r.version).to.equal(300);
      expect(r.after).to.deep.equal(r.before);
      expect(r.temp).to.deep.equal([]);
      expect(r.fk).to.equal(1);
    });

    it("two JIDs that differ only by case are refused (one user, two accounts otherwise)", async () => {
      const r = await failing(
        REKEY_2000,
        `INSERT INTO subscribers (bare, since) VALUES ('Alice@example.org', 1);`,
      );
      expect(r.err.message).to.match(/differ only by case/);
      expect(r.version).to.equal(300);
      expect(r.after).to.deep.equal(r.before);
    });
  });

  describe("migrations2000(state): fresh-install DDL or the rekey, by the current version", () => {
    it("picks the DDL for an empty database, legacy + rekey for 1–1999, and only names 2000 after it", () => {
      expect(migrations2000({ version: 0 })).to.deep.equal([SCHEMA_2000]);
      for (const v of [1, 100, 200, 300]) {
        const list = migrations2000({ version: v });
        expect(
          list.map((m) => m.version),
          String(v),
        ).to.deep.equal([1, 100, 200, 300, 2000]);
        expect(list.at(-1), String(v)).to.equal(REKEY_2000);
      }
      expect(migrations2000({ version: 2000 })).to.deep.equal([SCHEMA_2000]);
      expect(accountsModule({ version: 300 }).range).to.deep.equal([2000, 2099]);
      expect(REKEY_2000.rebuild).to.equal(true);
      expect([REKEY_2000.version, REKEY_2000.name]).to.deep.equal([SCHEMA_2000.version, SCHEMA_2000.name]);
    });

    it("a fresh install gets the fresh DDL; the rekey itself is refused there, before it creates anything", async () => {
      const fresh = new SqliteStore(path.join(dir, "fresh-2.sqlite"), { legacy: false });
      try {
        const err = (await fresh.migrate([REKEY_2000]).catch((e: unknown) => e)) as Error;
        expect(err.message).to.match(/rekey 2000 needs a legacy database at schema 200 or later/);
        expect(await fresh.schemaVersion()).to.equal(0);
        expect(fresh.db.prepare("SELECT name FROM sqlite_master").all()).to.deep.equal([
          { name: "schema_migrations" },
        ]);
        expect(await fresh.migrate(migrations2000({ version: await fresh.schemaVersion() }))).to.deep.equal({
          applied: [2000],
          current: 2000,
          pending: [],
        });
        expect(fresh.db.prepare("SELECT name, value FROM counters").all()).to.deep.equal([
          { name: "seq", value: 0 },
        ]);
        // Already at 2000: nothing is applied again, whichever of the two the list names.
        expect(await fresh.migrate(migrations2000({ version: 2000 }))).to.deep.equal({
          applied: [],
          current: 2000,
          pending: [],
        });
      } finally {
        await fresh.close();
      }
    });

    it("the rekey is refused on a database that already has the account tables", async () => {
      const store = new SqliteStore(path.join(dir, "fresh-3.sqlite"), { legacy: false });
      try {
        await store.migrate([SCHEMA_2000]);
        // Pretend a legacy history: the guard, not the version bookkeeping, is what refuses.
        store.db.exec("INSERT INTO schema_migrations (version, name, applied_at) VALUES (200, 'x', 0)");
        store.db.exec("DELETE FROM schema_migrations WHERE version = 2000");
        const err = (await store.migrate([REKEY_2000]).catch((e: unknown) => e)) as Error;
        expect(err.message).to.match(/already has accounts/);
      } finally {
        await store.close();
      }
    });
  });
});
