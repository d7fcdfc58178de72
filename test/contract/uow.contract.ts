/**
 * The Store contract, unit-of-work part (docs/REDESIGN.md §4.5, cases 1–9). Backend-neutral: the cases use only
 * the Store interface and portable SQL, so a PostgreSQL factory (issue 13) runs the same file. Each case gets a
 * fresh, empty database from the factory and creates its own small schema through Store.migrate.
 */
import { expect } from "chai";
import { StoreBusyError, StoreConflictError } from "../../storage/errors.js";
import type { AccountId, Migration, Store, StoreOptions, Tx } from "../../storage/store.js";

export interface StoreBackend {
  /** Opens (another) Store on this case's database. */
  open(o?: Partial<StoreOptions>): Promise<Store>;
  /** Takes the database's write lock from a connection outside any Store; resolves with its release. */
  lockFromOutside(): Promise<() => Promise<void>>;
}

export interface StoreFactory {
  /** A fresh, empty database for one case. */
  create(): Promise<StoreBackend>;
  cleanup(): Promise<void>;
}

const SCHEMA = `
  CREATE TABLE counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
  INSERT INTO counters (name, value) VALUES ('seq', 0);
  CREATE TABLE kv (k TEXT PRIMARY KEY, v INTEGER NOT NULL);
  CREATE TABLE entries (seq INTEGER NOT NULL, note TEXT NOT NULL);
  CREATE UNIQUE INDEX entries_note ON entries (note);
`;
export const CONTRACT_SCHEMA: Migration[] = [
  { version: 1, name: "contract tables", sql: { sqlite: SCHEMA, postgres: SCHEMA } },
];

const tick = () => new Promise((r) => setTimeout(r, 1));

async function kv(s: Store, k: string): Promise<number | undefined> {
  const r = await s.read("kv", (t) => t.get<{ v: number }>("SELECT v FROM kv WHERE k = :k", { k }));
  return r === undefined ? undefined : Number(r.v);
}

async function count(s: Store, table: "kv" | "entries"): Promise<number> {
  const r = await s.read("count", (t) => t.get<{ n: number }>(`SELECT COUNT(*) AS n FROM ${table}`));
  return Number(r?.n);
}

const put = (tx: Tx, k: string, v: number) =>
  tx.run("INSERT INTO kv (k, v) VALUES (:k, :v) ON CONFLICT (k) DO UPDATE SET v = excluded.v", { k, v });

export function describeStore(name: string, factory: StoreFactory): void {
  describe(`Store contract: units of work (${name})`, function () {
    this.timeout(30_000);
    let backend: StoreBackend;
    let store: Store;
    const opened: Store[] = [];
    const open = async (o?: Partial<StoreOptions>) => {
      const s = await backend.open(o);
      opened.push(s);
      return s;
    };

    beforeEach(async () => {
      backend = await factory.create();
      store = await open();
      await store.migrate(CONTRACT_SCHEMA);
    });
    afterEach(async () => {
      for (const s of opened.splice(0)) await s.close();
    });
    after(() => factory.cleanup());

    it("1. a committed unit of work's writes are all visible; a throw leaves nothing in any table", async () => {
      const r = await store.tx("both", async (tx) => {
        await put(tx, "a", 1);
        await tx.run("INSERT INTO entries (seq, note) VALUES (:s, :n)", { s: await tx.seq(), n: "one" });
        return "done";
      });
      expect(r).to.equal("done");
      expect(await kv(store, "a")).to.equal(1);
      expect(await count(store, "entries")).to.equal(1);
      const boom = new Error("boom");
      const err = await store
        .tx("fails", async (tx) => {
          await put(tx, "a", 2);
          await put(tx, "b", 3);
          await tx.run("INSERT INTO entries (seq, note) VALUES (:s, :n)", { s: await tx.seq(), n: "two" });
          await tick(); // the rollback must also cover writes made before an await
          throw boom;
        })
        .catch((e: unknown) => e);
      expect(err).to.equal(boom);
      expect(await kv(store, "a")).to.equal(1);
      expect(await kv(store, "b")).to.equal(undefined);
      expect(await count(store, "entries")).to.equal(1);
    });

    it("2. afterCommit hooks run after commit, in order, never after rollback; a throwing hook undoes nothing", async () => {
      const seen: string[] = [];
      await store.tx("hooks", async (tx) => {
        tx.afterCommit(() => seen.push("first"));
        tx.afterCommit(() => {
          throw new Error("hook fails");
        });
        tx.afterCommit(() => seen.push("third"));
        await put(tx, "h", 1);
        seen.push("in-tx");
      });
      expect(seen).to.deep.equal(["in-tx", "first", "third"]);
      expect(await kv(store, "h")).to.equal(1);
      // A hook sees the committed state, and may start the next unit of work.
      let inHook: number | undefined;
      await store.tx("hook reads", async (tx) => {
        await put(tx, "h", 2);
        tx.afterCommit(() => {
          void kv(store, "h").then((v) => (inHook = v));
        });
      });
      for (let i = 0; i < 100 && inHook === undefined; i++) await tick();
      expect(inHook).to.equal(2);
      const rolledBack: string[] = [];
      await store
        .tx("rollback", async (tx) => {
          tx.afterCommit(() => rolledBack.push("never"));
          throw new Error("no");
        })
        .catch(() => undefined);
      expect(rolledBack).to.deep.equal([]);
    });

    it("3. writes by code the unit of work calls (an in-tx handler) commit and roll back with it", async () => {
      // The Store half of in-transaction events: a handler gets the emitter's tx and writes through it.
      const handler = async (tx: Tx, note: string) =>
        tx.run("INSERT INTO entries (seq, note) VALUES (:s, :n)", { s: await tx.seq(), n: note });
      await store.tx("emit ok", async (tx) => {
        await put(tx, "e", 1);
        await handler(tx, "handled");
      });
      expect(await count(store, "entries")).to.equal(1);
      await store
        .tx("emit then fail", async (tx) => {
          await put(tx, "e", 2);
          await handler(tx, "handled twice");
          throw new Error("emitter fails after the handler ran");
        })
        .catch(() => undefined);
      await store
        .tx("handler fails", async (tx) => {
          await put(tx, "e", 3);
          await handler(tx, "handled"); // unique violation: the emitter's write goes too
        })
        .catch(() => undefined);
      expect(await kv(store, "e")).to.equal(1);
      expect(await count(store, "entries")).to.equal(1);
    });

    it("4. seq() is one value per unit of work, increasing across commits; a rolled-back number is reused", async () => {
      const [a, b] = await store.tx("twice", async (tx) => [await tx.seq(), await tx.seq()]);
      expect(a).to.equal(b);
      const c = await store.tx("next", (tx) => tx.seq());
      expect(c).to.be.greaterThan(a as number);
      let lost: number | undefined;
      await store
        .tx("rolled back", async (tx) => {
          lost = await tx.seq();
          throw new Error("no");
        })
        .catch(() => undefined);
      expect(lost).to.equal(c + 1);
      expect(await store.tx("reuses", (tx) => tx.seq())).to.equal(lost);
      // A unit of work that never calls seq() takes no number.
      await store.tx("no seq", (tx) => put(tx, "x", 1));
      expect(await store.tx("after", (tx) => tx.seq())).to.equal((lost as number) + 1);
    });

    it("5. commit order = seq order, and a reader never sees seq N+1 without N", async () => {
      const committed: string[] = [];
      store.onCommit((n) => committed.push(n));
      const seqs = new Map<string, number>();
      let reading = true;
      const snapshots: number[][] = [];
      const reader = (async () => {
        while (reading) {
          snapshots.push(
            await store.read("scan", async (t) =>
              (await t.all<{ seq: number }>("SELECT seq FROM entries ORDER BY seq")).map((r) =>
                Number(r.seq),
              ),
            ),
          );
          await tick();
        }
      })();
      await Promise.all(
        Array.from({ length: 20 }, (_, i) =>
          store.tx(`u${i}`, async (tx) => {
            await tick(); // overlap: every unit of work is started before the first commits
            const s = await tx.seq();
            seqs.set(`u${i}`, s);
            await tick();
            await tx.run("INSERT INTO entries (seq, note) VALUES (:s, :n)", { s, n: `u${i}` });
          }),
        ),
      );
      reading = false;
      await reader;
      const order = committed.filter((n) => seqs.has(n));
      expect(order.map((n) => seqs.get(n))).to.deep.equal([...seqs.values()].sort((x, y) => x - y));
      expect(snapshots.length).to.be.greaterThan(0);
      for (const snap of snapshots) {
        snap.forEach((s, i) => expect(s, `snapshot ${JSON.stringify(snap)}`).to.equal(i + 1));
      }
    });

    it("6. 50 concurrent units of work incrementing one row (read, then write, under lockAccount) lose no update", async () => {
      await store.tx("init", (tx) => put(tx, "n", 0));
      await Promise.all(
        Array.from({ length: 50 }, (_, i) =>
          store.tx(`inc${i}`, async (tx) => {
            // Read-then-write takes the explicit lock (a no-op on SQLite, whose write lock serializes every
            // writer; PostgreSQL's READ COMMITTED would lose updates without it).
            await tx.lockAccount(1 as AccountId);
            const r = await tx.get<{ v: number }>("SELECT v FROM kv WHERE k = 'n'");
            await tick();
            await put(tx, "n", Number(r?.v) + 1);
          }),
        ),
      );
      expect(await kv(store, "n")).to.equal(50);
    });

    it("7. read() is a snapshot: a commit during a read is not half-visible", async () => {
      await store.tx("init", async (tx) => {
        await put(tx, "left", 50);
        await put(tx, "right", 50);
      });
      const seen = await store.read("transfer view", async (t) => {
        const left = Number((await t.get<{ v: number }>("SELECT v FROM kv WHERE k = 'left'"))?.v);
        // A transfer commits between the two reads.
        await store.tx("transfer", async (tx) => {
          await put(tx, "left", 20);
          await put(tx, "right", 80);
        });
        const right = Number((await t.get<{ v: number }>("SELECT v FROM kv WHERE k = 'right'"))?.v);
        return { left, right };
      });
      expect(seen).to.deep.equal({ left: 50, right: 50 });
      expect([await kv(store, "left"), await kv(store, "right")]).to.deep.equal([20, 80]);
    });

    it("8. a nested store.tx inside fn throws at once instead of deadlocking", async () => {
      let nested: unknown;
      await store.tx("outer", async (tx) => {
        await put(tx, "o", 1);
        nested = await store.tx("inner", (t) => put(t, "i", 1)).catch((e: unknown) => e);
      });
      expect(nested).to.be.instanceOf(Error);
      expect((nested as Error).message).to.match(/"inner".*inside.*"outer"/);
      expect(await kv(store, "o")).to.equal(1);
      expect(await kv(store, "i")).to.equal(undefined);
      // Work left behind by a finished unit of work is not "inside" it any more.
      let later: Promise<unknown> | undefined;
      await store.tx("leaves work", async () => {
        later = new Promise((r) => setTimeout(r, 5)).then(() => store.tx("later", (t) => put(t, "l", 1)));
      });
      await later;
      expect(await kv(store, "l")).to.equal(1);
    });

    it("9. a writer held past busyTimeoutMs → StoreBusyError; a unique violation → StoreConflictError with its index", async () => {
      const quick = await open({ busyTimeoutMs: 20 });
      const release = await backend.lockFromOutside();
      let attempts = 0;
      const err = await quick
        .tx("blocked", async (tx) => {
          attempts++;
          await put(tx, "b", 1);
        })
        .catch((e: unknown) => e);
      await release();
      expect(err).to.be.instanceOf(StoreBusyError);
      expect(attempts, "fn never ran: the lock was refused before it").to.equal(0);
      await quick.tx("free again", (tx) => put(tx, "b", 2));
      expect(await kv(store, "b")).to.equal(2);

      await store.tx("first", (tx) => tx.run("INSERT INTO entries (seq, note) VALUES (1, 'same')"));
      const dup = await store
        .tx("second", (tx) => tx.run("INSERT INTO entries (seq, note) VALUES (2, 'same')"))
        .catch((e: unknown) => e);
      expect(dup).to.be.instanceOf(StoreConflictError);
      expect((dup as StoreConflictError).constraint).to.equal("entries_note");
      const pk = await store
        .tx("pk", async (tx) => {
          await tx.run("INSERT INTO kv (k, v) VALUES ('p', 1)");
          await tx.run("INSERT INTO kv (k, v) VALUES ('p', 2)");
        })
        .catch((e: unknown) => e);
      expect(pk).to.be.instanceOf(StoreConflictError);
      expect((pk as StoreConflictError).constraint).to.equal("kv_pkey");
      expect(await kv(store, "p")).to.equal(undefined);
    });
  });
}
