/**
 * The Store contract on PostgreSQL (issue 13): the same cases as on SQLite (uow.contract.ts, migrate.contract.ts)
 * and every other contract file (audience, accounts, stream, jobs: the same files as on SQLite, on migration
 * 2000's PostgreSQL baseline) against a throwaway cluster started for this file (test/harness/postgres.ts), one
 * fresh database per case; cases that need two instances open a second PostgresStore (its own pool). Plus
 * what only this backend has: seq order under two processes' worth of connections, busy classification of a
 * lost connection, the int8 parser.
 */
import { expect } from "chai";
import Database from "better-sqlite3";
import pg from "pg";
import { pino } from "pino";
import { openStore } from "../../storage/index.js";
import { StoreBusyError } from "../../storage/errors.js";
import { PostgresStore, WRITERS_GATE_KEY } from "../../storage/postgres/store.js";
import { SCHEMA_2000, SCHEMA_2000_DDL } from "../../storage/sqlite/schema-2000.js";
import { startPostgres, type PostgresServer } from "../harness/postgres.js";
import { describeAccounts } from "./accounts.contract.js";
import { describeAudience } from "./audience.contract.js";
import { describeGroups } from "./groups.contract.js";
import { describeLinked } from "./linked.contract.js";
import { describeBook } from "./book.contract.js";
import { describeBookRequests } from "./book-requests.contract.js";
import { describeIdentity } from "./identity.contract.js";
import { describeJobs } from "./jobs.contract.js";
import { describeMigrations } from "./migrate.contract.js";
import { describeStream } from "./stream.contract.js";
import { CONTRACT_SCHEMA, describeStore, type StoreFactory } from "./uow.contract.js";

let server: PostgresServer | undefined;
const cluster = async (): Promise<PostgresServer> => (server ??= await startPostgres());

const open = (url: string, o: Partial<ConstructorParameters<typeof PostgresStore>[0]> = {}) =>
  new PostgresStore({ ...o, connection: { url, poolSize: 10 } });

const postgres: StoreFactory = {
  async create() {
    const url = await (await cluster()).createDatabase();
    return {
      open: async (o = {}) => open(url, o),
      // The writers' gate held exclusively by another session: what a migration of another process does.
      lockFromOutside: async () => {
        const other = new pg.Client({ connectionString: url });
        await other.connect();
        await other.query(`SELECT pg_advisory_lock(${WRITERS_GATE_KEY})`);
        return async () => {
          await other.end();
        };
      },
    };
  },
  async cleanup() {
    await server?.dropDatabases();
  },
};

describe("PostgreSQL backend", function () {
  this.timeout(60_000);
  before(async () => {
    await cluster();
  });
  after(async () => {
    await server?.stop();
    server = undefined;
  });

  describeStore("postgres", postgres);
  describeMigrations("postgres", postgres);
  describeAudience("postgres", postgres);
  describeAccounts("postgres", postgres);
  describeGroups("postgres", postgres);
  describeLinked("postgres", postgres);
  describeStream("postgres", postgres, [SCHEMA_2000]);
  describeJobs("postgres", postgres, [SCHEMA_2000]);
  describeBook("postgres", postgres, [SCHEMA_2000]);
  describeBookRequests("postgres", postgres, [SCHEMA_2000]);
  describeIdentity("postgres", postgres, [SCHEMA_2000]);

  describe("migration 2000: the PostgreSQL baseline against the SQLite DDL", () => {
    after(() => postgres.cleanup());

    /** One table's catalogue, backend-neutral: what portable SQL and StoreConflictError depend on. */
    interface Catalogue {
      columns: Record<string, string[]>;
      indexes: string[]; // "name table unique|plain (cols) [partial]"
      fks: string[]; // "table.col -> parent ON DELETE rule"
    }

    const sqliteCatalogue = (): Catalogue => {
      const db = new Database(":memory:");
      try {
        db.exec(SCHEMA_2000_DDL);
        const tables = (
          db.prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name").all() as Array<{
            name: string;
          }>
        ).map((r) => r.name);
        const c: Catalogue = { columns: {}, indexes: [], fks: [] };
        for (const t of tables) {
          c.columns[t] = (db.pragma(`table_info(${t})`) as Array<{ name: string }>).map((x) => x.name).sort();
          const list = db.pragma(`index_list(${t})`) as Array<{
            name: string;
            unique: number;
            origin: string;
            partial: number;
          }>;
          for (const ix of list.filter((x) => x.origin === "c")) {
            const cols = (db.pragma(`index_info(${ix.name})`) as Array<{ name: string }>).map((x) => x.name);
            c.indexes.push(
              `${ix.name} ${t} ${ix.unique ? "unique" : "plain"} (${cols.join(", ")})${ix.partial ? " partial" : ""}`,
            );
          }
          for (const fk of db.pragma(`foreign_key_list(${t})`) as Array<{
            table: string;
            from: string;
            on_delete: string;
          }>) {
            c.fks.push(`${t}.${fk.from} -> ${fk.table} ON DELETE ${fk.on_delete}`);
          }
        }
        c.indexes.sort();
        c.fks.sort();
        return c;
      } finally {
        db.close();
      }
    };

    it("same tables, columns, index names (unique, columns, partial) and foreign keys with the same ON DELETE", async () => {
      const url = await (await cluster()).createDatabase();
      const s = open(url);
      try {
        expect((await s.migrate([SCHEMA_2000])).applied).to.deep.equal([2000]);
        const pgc = await s.read("catalogue", async (t) => {
          const c: Catalogue = { columns: {}, indexes: [], fks: [] };
          const cols = await t.all<{ t: string; c: string }>(
            `SELECT table_name AS t, column_name AS c FROM information_schema.columns
             WHERE table_schema = 'public' AND table_name <> 'schema_migrations' ORDER BY table_name, column_name`,
          );
          for (const r of cols) (c.columns[r.t] ??= []).push(r.c);
          for (const k of Object.keys(c.columns)) c.columns[k]?.sort();
          const ix = await t.all<{ name: string; t: string; def: string }>(
            `SELECT indexname AS name, tablename AS t, indexdef AS def FROM pg_indexes
             WHERE schemaname = 'public' AND tablename <> 'schema_migrations'
               AND indexname !~ '_(pkey|key)$'`,
          );
          for (const r of ix) {
            const m = /^CREATE (UNIQUE )?INDEX \S+ ON \S+ USING btree \(([^)]*)\)( WHERE .*)?$/.exec(r.def);
            expect(m, r.def).to.not.equal(null);
            c.indexes.push(
              `${r.name} ${r.t} ${m?.[1] ? "unique" : "plain"} (${m?.[2]})${m?.[3] ? " partial" : ""}`,
            );
          }
          const fks = await t.all<{ t: string; col: string; parent: string; del: string }>(
            `SELECT CAST(c.conrelid::regclass AS TEXT) AS t, a.attname AS col,
                    CAST(c.confrelid::regclass AS TEXT) AS parent, CAST(c.confdeltype AS TEXT) AS del
             FROM pg_constraint c JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = c.conkey[1]
             WHERE c.contype = 'f'`,
          );
          const rule: Record<string, string> = { c: "CASCADE", n: "SET NULL", a: "NO ACTION", r: "RESTRICT" };
          for (const r of fks) c.fks.push(`${r.t}.${r.col} -> ${r.parent} ON DELETE ${rule[r.del] ?? r.del}`);
          c.indexes.sort();
          c.fks.sort();
          return c;
        });
        const lite = sqliteCatalogue();
        expect(Object.keys(pgc.columns).sort()).to.deep.equal(Object.keys(lite.columns).sort());
        expect(pgc.columns).to.deep.equal(lite.columns);
        expect(pgc.indexes).to.deep.equal(lite.indexes);
        expect(pgc.fks).to.deep.equal(lite.fks);
        // The fresh rows (portable SQL, the same text on both).
        const rows = await s.read("rows", async (t) => ({
          seq: await t.get("SELECT value FROM counters WHERE name = 'seq'"),
          mark: await t.get("SELECT pos FROM queue_marks WHERE name = 'push-scan'"),
        }));
        expect(rows).to.deep.equal({ seq: { value: 0 }, mark: { pos: 0 } });
      } finally {
        await s.close();
      }
    });

    it("ids come from identities that start at 1; every integer column is BIGINT (numbers back, not strings)", async () => {
      const url = await (await cluster()).createDatabase();
      const s = open(url);
      try {
        await s.migrate([SCHEMA_2000]);
        const types = await s.read("types", (t) =>
          t.all<{ data_type: string }>(
            `SELECT DISTINCT data_type FROM information_schema.columns
             WHERE table_schema = 'public' AND table_name <> 'schema_migrations' ORDER BY data_type`,
          ),
        );
        expect(types.map((r) => r.data_type)).to.deep.equal(["bigint", "text"]);
        const ids = await s.tx("ids", async (tx) => {
          const a = await tx.get<{ id: number }>(
            "INSERT INTO accounts (state, created_at) VALUES ('active', 0) RETURNING id",
          );
          const b = await tx.get<{ id: number }>(
            "INSERT INTO accounts (state, created_at) VALUES ('active', 0) RETURNING id",
          );
          return [a?.id, b?.id];
        });
        expect(ids).to.deep.equal([1, 2]);
      } finally {
        await s.close();
      }
    });
  });

  describe("PostgresStore: what only this backend has", () => {
    let url: string;
    const stores: PostgresStore[] = [];
    const mk = (o: Partial<ConstructorParameters<typeof PostgresStore>[0]> = {}) => {
      const s = open(url, o);
      stores.push(s);
      return s;
    };
    beforeEach(async () => {
      url = await (await cluster()).createDatabase();
      await mk().migrate(CONTRACT_SCHEMA);
    });
    afterEach(async () => {
      for (const s of stores.splice(0)) await s.close();
      await postgres.cleanup();
    });

    it("two stores (two processes' pools): the second seq() waits for the first commit; seq order = commit order", async () => {
      const a = mk();
      const b = mk();
      const events: string[] = [];
      let release!: () => void;
      const held = new Promise<void>((r) => (release = r));
      let aHasSeq!: () => void;
      const aSeq = new Promise<void>((r) => (aHasSeq = r));
      const first = a.tx("a", async (tx) => {
        const s = await tx.seq();
        events.push(`a:seq ${s}`);
        aHasSeq();
        await held; // a keeps the counter row locked until this resolves
        await tx.run("INSERT INTO entries (seq, note) VALUES (:s, 'a')", { s });
      });
      await aSeq;
      const second = b.tx("b", async (tx) => {
        const s = await tx.seq();
        events.push(`b:seq ${s}`);
        await tx.run("INSERT INTO entries (seq, note) VALUES (:s, 'b')", { s });
      });
      // b's UPDATE is waiting on a's row lock: visible in pg_locks as an ungranted lock.
      const probe = mk();
      for (let i = 0; i < 200; i++) {
        const w = await probe.read("locks", (t) =>
          t.get<{ n: number }>("SELECT COUNT(*) AS n FROM pg_locks WHERE NOT granted"),
        );
        if (Number(w?.n) > 0) break;
        await new Promise((r) => setTimeout(r, 10));
      }
      expect(events).to.deep.equal(["a:seq 1"]);
      release();
      await Promise.all([first, second]);
      expect(events).to.deep.equal(["a:seq 1", "b:seq 2"]);
      const rows = await probe.read("rows", (t) =>
        t.all<{ seq: number; note: string }>("SELECT seq, note FROM entries ORDER BY seq"),
      );
      expect(rows).to.deep.equal([
        { seq: 1, note: "a" },
        { seq: 2, note: "b" },
      ]);
    });

    it("a connection the server ends is StoreBusyError (retried), not a crash; the pool recovers", async () => {
      const s = mk();
      await s.tx("warm", (tx) => tx.run("INSERT INTO kv (k, v) VALUES ('w', 1)"));
      let attempts = 0;
      const v = await s.tx("killed once", async (tx) => {
        attempts++;
        if (attempts === 1) {
          // This unit of work's own backend is terminated (57P01 / connection lost): nothing of it is kept.
          await tx.run("INSERT INTO kv (k, v) VALUES ('gone', 1)");
          await tx.get("SELECT pg_terminate_backend(pg_backend_pid())");
        }
        await tx.run("INSERT INTO kv (k, v) VALUES ('kept', :a)", { a: attempts });
        return attempts;
      });
      expect(v).to.equal(2);
      const rows = await s.read("kv", (t) =>
        t.all<{ k: string; v: number }>("SELECT k, v FROM kv ORDER BY k"),
      );
      expect(rows).to.deep.equal([
        { k: "kept", v: 2 },
        { k: "w", v: 1 },
      ]);
      const refused = new PostgresStore({
        connection: { url: "postgresql://postgres@127.0.0.1:1/x", poolSize: 1 },
      });
      stores.push(refused);
      const err = await refused.tx("nowhere", async () => undefined).catch((e: unknown) => e);
      expect(err).to.be.instanceOf(StoreBusyError);
    });

    it("openStore with driver postgres gives the Store (no old repositories); a server that is not there fails the open", async () => {
      const db = {
        driver: "postgres" as const,
        path: "",
        url,
        poolSize: 2,
        busyTimeoutMs: 1000,
        txWarnMs: 50,
      };
      const s = await openStore(db, { log: pino({ level: "silent" }) });
      try {
        expect(s).to.be.instanceOf(PostgresStore);
        expect(s.backend).to.equal("postgres");
        expect(await s.schemaVersion()).to.equal(1); // CONTRACT_SCHEMA, applied in beforeEach
        expect("cards" in s, "no old repositories on PostgreSQL").to.equal(false);
      } finally {
        await s.close();
      }
      const down = await openStore(
        { ...db, url: "postgresql://postgres@127.0.0.1:1/x" },
        { log: pino({ level: "silent" }) },
      ).catch((e: unknown) => e);
      expect(down, "a server that is not there fails the open").to.be.instanceOf(StoreBusyError);
    });

    it("int8 comes back as a number; one above 2^53 is refused, not rounded", async () => {
      const s = mk();
      const r = await s.read("int8", (t) =>
        t.get<{ n: number; big: number }>(
          "SELECT COUNT(*) AS n, CAST(9007199254740991 AS bigint) AS big FROM kv",
        ),
      );
      expect(r).to.deep.equal({ n: 0, big: 9007199254740991 });
      const err = await s
        .read("too big", (t) => t.get("SELECT CAST(9007199254740993 AS bigint) AS x"))
        .catch((e: unknown) => e);
      expect((err as Error).message).to.match(/outside the safe integer range/);
    });

    it("a statement error fn catches still rolls the unit of work back, and says so", async () => {
      const s = mk();
      const err = await s
        .tx("swallows", async (tx) => {
          await tx.run("INSERT INTO kv (k, v) VALUES ('x', 1)");
          await tx.run("INSERT INTO nowhere VALUES (1)").catch(() => undefined);
        })
        .catch((e: unknown) => e);
      expect((err as Error).message).to.match(/rolled back: a statement failed inside it/);
      expect(await s.read("x", (t) => t.get("SELECT v FROM kv WHERE k = 'x'"))).to.equal(undefined);
    });
  });
});
