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
import { compileNamed, bindValues } from "../../storage/sql.js";
import { SCHEMA_2000 } from "../../storage/sqlite/schema-2000.js";
import { SqliteStore } from "../../storage/sqlite/store.js";
import { describeAudience } from "./audience.contract.js";
import { describeGroups } from "./groups.contract.js";
import { describeLinked } from "./linked.contract.js";
import { describeBook } from "./book.contract.js";
import { describeBookRequests } from "./book-requests.contract.js";
import { describeIdentity } from "./identity.contract.js";
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
describeGroups("sqlite", sqlite);
describeLinked("sqlite", sqlite);
describeStream("sqlite", sqlite, [SCHEMA_2000]);
describeJobs("sqlite", sqlite, [SCHEMA_2000]);
describeBook("sqlite", sqlite, [SCHEMA_2000]);
describeBookRequests("sqlite", sqlite, [SCHEMA_2000]);
describeIdentity("sqlite", sqlite, [SCHEMA_2000]);

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

describe("SqliteStore: a unit of work's tx", function () {
  this.timeout(30_000);
  let store: SqliteStore;

  beforeEach(() => {
    store = new SqliteStore(tempFile(), { legacy: false });
  });
  afterEach(() => store.close());
  after(() => sqlite.cleanup());

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
