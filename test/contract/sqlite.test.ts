/**
 * The Store contract on SQLite (real files in temp dirs; every contract file: unit of work, migrations, audience,
 * accounts, stream, jobs — cases that need two instances open a second SqliteStore on the same file), plus what only the SQLite backend has: the old
 * repositories sharing the writer connection, the card set path as a unit of work, the slow-unit-of-work log, the
 * named-parameter rewrite.
 */
import { expect } from "chai";
import Database from "better-sqlite3";
import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { Writable } from "node:stream";
import { pino } from "pino";
import { cardHash, normalizeCard, type Card } from "../../stanzas/model/card.js";
import { compileNamed, bindValues } from "../../storage/sql.js";
import { SCHEMA_2000 } from "../../storage/sqlite/schema-2000.js";
import { SqliteStore } from "../../storage/sqlite/store.js";
import { describeAudience } from "./audience.contract.js";
import { describeAccounts } from "./accounts.contract.js";
import { describeJobs } from "./jobs.contract.js";
import { describeMigrations } from "./migrate.contract.js";
import { describeStream } from "./stream.contract.js";
import { describeStore, type StoreFactory } from "./uow.contract.js";

const dirs: string[] = [];
const tempFile = (): string => {
  const dir = mkdtempSync(path.join(os.tmpdir(), "cardlink-contract-"));
  dirs.push(dir);
  return path.join(dir, "store.sqlite");
};

const sqlite: StoreFactory = {
  async create() {
    const file = tempFile();
    return {
      open: async (o = {}) => new SqliteStore(file, { ...o, legacy: false }),
      lockFromOutside: async () => {
        const other = new Database(file);
        other.exec("BEGIN IMMEDIATE");
        return async () => {
          other.exec("ROLLBACK");
          other.close();
        };
      },
    };
  },
  async cleanup() {
    for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
  },
};

describeStore("sqlite", sqlite);
describeMigrations("sqlite", sqlite);
describeAudience("sqlite", sqlite);
describeAccounts("sqlite", sqlite);
describeStream("sqlite", sqlite, [SCHEMA_2000]);
describeJobs("sqlite", sqlite, [SCHEMA_2000]);

describe("SqliteStore: rebuild-mode migrations", () => {
  after(() => sqlite.cleanup());

  it("runs with foreign keys off, refuses a result with broken foreign keys (naming the table), restores them", async () => {
    const store = new SqliteStore(tempFile(), { legacy: false });
    try {
      await store.migrate([
        {
          version: 1,
          name: "parents",
          sql: {
            sqlite: `CREATE TABLE p (id INTEGER PRIMARY KEY);
                     CREATE TABLE k (p INTEGER NOT NULL REFERENCES p (id));
                     INSERT INTO p VALUES (1); INSERT INTO k VALUES (1);`,
          },
        },
      ]);
      // A table rebuild (copy, drop, rename) that keeps every child's parent passes.
      const rebuild = {
        version: 2,
        name: "rebuild p",
        rebuild: true,
        sql: {
          sqlite: `CREATE TABLE p2 (id INTEGER PRIMARY KEY, note TEXT);
                   INSERT INTO p2 (id) SELECT id FROM p; DROP TABLE p; ALTER TABLE p2 RENAME TO p;`,
        },
      };
      expect((await store.migrate([rebuild])).applied).to.deep.equal([2]);
      const orphaning = {
        version: 3,
        name: "drops a parent",
        rebuild: true,
        sql: { sqlite: "DELETE FROM p WHERE id = 1;" },
      };
      const err = (await store.migrate([orphaning]).catch((e: unknown) => e)) as Error;
      expect(err.message).to.match(/foreign keys broken in k/);
      expect(await store.schemaVersion()).to.equal(2);
      expect(store.db.prepare("SELECT COUNT(*) AS n FROM p").get()).to.deep.equal({ n: 1 });
      expect(store.db.pragma("foreign_keys", { simple: true })).to.equal(1);
    } finally {
      await store.close();
    }
  });
});

const tick = () => new Promise((r) => setTimeout(r, 1));
const emptyCard = (fn: string): Card =>
  normalizeCard({ fn, nickname: [], tel: [], email: [], adr: [], url: [], impp: [], categories: [] });

describe("SqliteStore: the old repositories on the writer connection", function () {
  this.timeout(30_000);
  let store: SqliteStore;
  let lines: Array<Record<string, unknown>>;

  beforeEach(() => {
    lines = [];
    const sink = new Writable({
      write(chunk: Buffer, _enc, cb) {
        for (const l of chunk.toString().split("\n")) if (l.trim()) lines.push(JSON.parse(l));
        cb();
      },
    });
    store = new SqliteStore(tempFile(), { log: pino({ level: "info" }, sink), txWarnMs: 0 });
  });
  afterEach(() => store.close());
  after(() => sqlite.cleanup());

  const resources = (): number =>
    Number((store.db.prepare("SELECT COUNT(*) AS n FROM resources").get() as { n: number }).n);

  it("an old-repo write made while a unit of work is open waits for it and never joins its transaction", async () => {
    let insideCount: number | undefined;
    // Another request's old-repo write: its async chain starts outside the unit of work (registered before it),
    // and is let go while the unit of work is open, awaiting mid-transaction.
    let go!: () => void;
    const queued = new Promise<void>((r) => (go = r)).then(() =>
      store.presence.add("a@localhost", "a@localhost/r"),
    );
    const err = await store
      .tx("rolls back", async (tx) => {
        await tx.run("INSERT INTO meta (key, value) VALUES ('uow', '1')");
        go();
        await tick();
        await tick();
        insideCount = Number((await tx.get<{ n: number }>("SELECT COUNT(*) AS n FROM resources"))?.n);
        throw new Error("roll this unit of work back");
      })
      .catch((e: unknown) => e);
    expect((err as Error).message).to.equal("roll this unit of work back");
    expect(insideCount, "the queued write ran inside the open transaction").to.equal(0);
    await queued;
    // The old write committed on its own; the unit of work's write is gone.
    expect(resources()).to.equal(1);
    expect(store.db.prepare("SELECT 1 FROM meta WHERE key = 'uow'").get()).to.equal(undefined);
  });

  it("an old-repo call from inside a unit of work throws at once (it would wait for itself)", async () => {
    const err = await store
      .tx("misuse", async () => {
        await store.presence.add("b@localhost", "b@localhost/r");
      })
      .catch((e: unknown) => e);
    expect((err as Error).message).to.match(/presence|add\(\).*inside unit of work "misuse"/);
    expect(resources()).to.equal(0);
  });

  it("with no unit of work open, an old-repo call runs synchronously, as before (seeds in an outer transaction)", () => {
    const pending: Array<Promise<unknown>> = [];
    store.db.transaction(() => {
      pending.push(store.presence.add("c@localhost", "c@localhost/r"));
      pending.push(store.presence.add("d@localhost", "d@localhost/r"));
    })();
    expect(resources()).to.equal(2); // visible before any await
    return Promise.all(pending);
  });

  it("card set is the unit of work card.set: observed on commit, its seq from the legacy counter, logged when slow", async () => {
    const observed: string[] = [];
    store.onCommit((name, ms) => {
      expect(ms).to.be.a("number").and.at.least(0);
      observed.push(name);
    });
    const card = emptyCard("Owner");
    const r = await store.cards.set("owner@localhost", card, cardHash(card));
    expect(r.changed).to.equal(true);
    expect(observed).to.deep.equal(["card.set"]);
    // The old repos and Tx.seq() share one counter: the next unit of work's number follows the card's.
    expect(await store.tx("next", (tx) => tx.seq())).to.equal(r.seq + 1);
    const again = await store.cards.set("owner@localhost", card, cardHash(card));
    expect(again.changed).to.equal(false);
    expect(observed).to.deep.equal(["card.set", "next", "card.set"]);
    // txWarnMs 0: every unit of work is "slow", with its name.
    expect(lines.filter((l) => l.event === "slow-unit-of-work").map((l) => l.name)).to.include("card.set");
  });

  it("a unit of work's tx cannot be used after it ended", async () => {
    let kept: { get: (s: string) => Promise<unknown> } | undefined;
    await store.tx("ends", async (tx) => {
      kept = tx;
    });
    const err = await kept?.get("SELECT 1").catch((e: unknown) => e);
    expect((err as Error).message).to.match(/already ended/);
  });
});

describe("storage/sql.ts: named parameters", () => {
  it("rewrites :name outside literals, comments and :: casts; ? repeats, $n numbers each name once", () => {
    const sql = "SELECT ':no', \"a:b\", x::int -- :no\n FROM t WHERE a = :a AND b = :b /* :no */ OR a = :a";
    expect(compileNamed(sql, "?")).to.deep.equal({
      text: "SELECT ':no', \"a:b\", x::int -- :no\n FROM t WHERE a = ? AND b = ? /* :no */ OR a = ?",
      names: ["a", "b", "a"],
    });
    expect(compileNamed(sql, "$").text).to.match(/a = \$1 AND b = \$2 .* OR a = \$1$/);
    expect(compileNamed(sql, "$").names).to.deep.equal(["a", "b"]);
  });

  it("a missing parameter is an error naming it; extra ones are ignored", () => {
    const c = compileNamed("SELECT :a, :b", "?");
    expect(bindValues(c, { a: 1, b: null, c: "x" })).to.deep.equal([1, null]);
    expect(() => bindValues(c, { a: 1 })).to.throw(/:b has no value/);
  });
});
