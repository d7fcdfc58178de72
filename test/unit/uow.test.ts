/**
 * makeUow/emit (component/runtime/uow.ts) on a real SqliteStore over a temp file: in-tx handlers run inside the
 * unit of work (their writes commit or roll back with it), post-commit listeners run only after COMMIT and
 * never after a rollback, and the scaffolding parts fail loudly only when a unit of work uses them.
 */
import { expect } from "chai";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { accountsParts } from "../../component/runtime/accounts/tx.js";
import { audienceParts } from "../../component/runtime/audience/tx.js";
import { EventBus } from "../../component/runtime/events.js";
import { jobsTx } from "../../component/runtime/queue/jobs-tx.js";
import { streamTx } from "../../component/runtime/queue/stream-tx.js";
import { MAX_EVENT_DEPTH, makeReader, makeUow, type Uow } from "../../component/runtime/uow.js";
import { SCHEMA_2000 } from "../../storage/sqlite/schema-2000.js";
import { SqliteStore } from "../../storage/sqlite/store.js";
import type { AccountId } from "../../storage/store.js";

const account = (n: number): AccountId => n as AccountId;
const unused = (): never => {
  throw new Error("unused");
};
/** Parts for units of work that touch none (the scaffolding ones are tested below). */
const UNUSED_PARTS = { accounts: unused, audience: unused, stream: unused, jobs: unused };

describe("unit of work: makeUow and in-transaction events (docs/REDESIGN.md §3.2, §3.5)", () => {
  let dir: string;
  let store: SqliteStore;
  let events: EventBus;
  let uow: Uow;
  /** Post-commit deliveries of account.activated, in order. */
  let heard: number[];

  const rows = async (): Promise<string[]> =>
    (await store.read("probe.read", (r) => r.all<{ k: string }>("SELECT k FROM uow_probe ORDER BY k"))).map(
      (r) => r.k,
    );

  before(async () => {
    dir = mkdtempSync(path.join(tmpdir(), "cardlink-uow-"));
    store = new SqliteStore(path.join(dir, "cardlink.sqlite"));
    await store.tx("probe.create", async (tx) => {
      await tx.run("CREATE TABLE uow_probe (k TEXT PRIMARY KEY)");
    });
    events = new EventBus();
    const accounts = accountsParts({ cacheSize: 10, cacheTtlMs: 1000, events });
    const audience = audienceParts({ paths: [] });
    uow = makeUow(
      store,
      {
        accounts: accounts.tx,
        audience: audience.tx,
        stream: streamTx({ kind: () => undefined, paths: [] }),
        jobs: jobsTx({ channel: () => undefined }),
      },
      events,
    );
    heard = [];
    // In-tx: writes a row named after the event, inside the emitting unit of work.
    events.onTx("account.activated", async (u, e) => {
      await u.tx.run("INSERT INTO uow_probe (k) VALUES (:k)", { k: `handler-${e.account}` });
    });
    events.on("account.activated", (e) => heard.push(e.account));
  });
  after(async () => {
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  });
  beforeEach(async () => {
    heard.length = 0;
    await store.tx("probe.clear", async (tx) => {
      await tx.run("DELETE FROM uow_probe");
    });
  });

  it("an in-tx handler runs inside the unit of work; the listener runs once, after COMMIT", async () => {
    const seenInside = await uow("probe.commit", async (u) => {
      await u.tx.run("INSERT INTO uow_probe (k) VALUES ('fn')");
      await u.emit("account.activated", { account: account(1) });
      // The handler's row is visible in this transaction, and no listener ran yet (the commit has not happened).
      const inside = await u.tx.all<{ k: string }>("SELECT k FROM uow_probe ORDER BY k");
      expect(heard).to.deep.equal([]);
      return inside.map((r) => r.k);
    });
    expect(seenInside).to.deep.equal(["fn", "handler-1"]);
    expect(heard).to.deep.equal([1]);
    expect(await rows()).to.deep.equal(["fn", "handler-1"]);
  });

  it("a throw after emit rolls the handler's write back, and the listener never runs", async () => {
    let err: unknown;
    try {
      await uow("probe.rollback", async (u) => {
        await u.emit("account.activated", { account: account(2) });
        throw new Error("refused");
      });
    } catch (e) {
      err = e;
    }
    expect((err as Error).message).to.equal("refused");
    expect(await rows()).to.deep.equal([]);
    expect(heard).to.deep.equal([]);
  });

  it("a throwing in-tx handler fails the unit of work: the emitter's own writes roll back too", async () => {
    const bus = new EventBus();
    const failing = makeUow(store, UNUSED_PARTS, bus);
    let listened = 0;
    bus.onTx("account.deleting", () => {
      throw new Error("handler says no");
    });
    bus.on("account.deleting", () => listened++);
    let err: unknown;
    try {
      await failing("probe.handler-throws", async (u) => {
        await u.tx.run("INSERT INTO uow_probe (k) VALUES ('fn')");
        await u.emit("account.deleting", { account: account(3) });
      });
    } catch (e) {
      err = e;
    }
    expect((err as Error).message).to.equal("handler says no");
    expect(await rows()).to.deep.equal([]);
    expect(listened).to.equal(0);
  });

  it("handlers may emit further events, and post-commit listeners hear them in emission order", async () => {
    const bus = new EventBus();
    const order: string[] = [];
    const chained = makeUow(store, UNUSED_PARTS, bus);
    bus.onTx("account.activated", (u, e) =>
      u.emit("device.registered", { account: e.account, device: 7 as never }),
    );
    bus.onTx("device.registered", async (u) => {
      await u.tx.run("INSERT INTO uow_probe (k) VALUES ('nested')");
    });
    bus.on("account.activated", () => order.push("account.activated"));
    bus.on("device.registered", () => order.push("device.registered"));
    await chained("probe.chain", (u) => u.emit("account.activated", { account: account(4) }));
    expect(order).to.deep.equal(["account.activated", "device.registered"]);
    expect(await rows()).to.deep.equal(["nested"]);
  });

  it(`an in-tx event loop fails at depth ${MAX_EVENT_DEPTH + 1} and rolls back, not the process`, async () => {
    const bus = new EventBus();
    let handled = 0;
    const looping = makeUow(store, UNUSED_PARTS, bus);
    bus.onTx("account.activated", async (u, e) => {
      handled++;
      await u.tx.run("INSERT OR IGNORE INTO uow_probe (k) VALUES ('loop')");
      await u.emit("account.activated", e);
    });
    let err: unknown;
    try {
      await looping("probe.loop", (u) => u.emit("account.activated", { account: account(5) }));
    } catch (e) {
      err = e;
    }
    expect((err as Error).message).to.match(/depth 9: in-tx handlers loop \(limit 8\)/);
    expect(handled).to.equal(MAX_EVENT_DEPTH);
    expect(await rows()).to.deep.equal([]);
  });

  it("scaffolding parts throw 'not built yet' (built parts their own errors) only when a unit of work uses them", async () => {
    // Not touching a part: the unit of work commits.
    expect(await uow("probe.no-parts", async (u) => u.now > 0)).to.equal(true);
    const fails = async (f: Parameters<Uow>[1]): Promise<string> => {
      try {
        await uow("probe.parts", f);
        return "no error";
      } catch (e) {
        return (e as Error).message;
      }
    };
    // The stream half is built (S4): with no kinds registered, it refuses the unknown kind when used.
    expect(await fails(async (u) => u.queue.retract("card", "1"))).to.equal(
      "queue stream: unknown kind 'card' (not registered)",
    );
    expect(await fails(async (u) => u.queue.dropJobs("push", { target: "x" }))).to.equal(
      "queue: no channel 'push' is registered", // built (S5): the part refuses an unregistered channel
    );
    // The audience part is built (S6): with no path registered, nobody sees anybody.
    expect(await uow("probe.audience", (u) => u.audience.holders(account(1)))).to.deep.equal([]);
    const read = makeReader(store, {
      accounts: accountsParts({ cacheSize: 10, cacheTtlMs: 1000, events }).read,
      audience: audienceParts({ paths: [] }).read,
    });
    expect(await read("probe.read-ok", async (r) => (await r.read.all("SELECT 1 AS one")).length)).to.equal(
      1,
    );
  });
});

describe("schema 2000 through the migration runner: the new code's fresh install", () => {
  it("a new file reaches 2000, and a unit of work takes its seq from counters('seq')", async () => {
    const dir = mkdtempSync(path.join(tmpdir(), "cardlink-fresh2000-"));
    const store = new SqliteStore(path.join(dir, "cardlink.sqlite"), { legacy: false });
    try {
      const report = await store.migrate([SCHEMA_2000]);
      expect(report.applied).to.deep.equal([2000]);
      expect(await store.schemaVersion()).to.equal(2000);
      expect((await store.migrate([SCHEMA_2000])).applied).to.deep.equal([]);
      const never = (): never => {
        throw new Error("unused");
      };
      const uow = makeUow(
        store,
        { accounts: never, audience: never, stream: never, jobs: never },
        new EventBus(),
      );
      const seqs = [];
      for (let i = 0; i < 2; i++)
        seqs.push(await uow("probe.seq", async (u) => [await u.seq(), await u.seq()]));
      expect(seqs).to.deep.equal([
        [1, 1],
        [2, 2],
      ]);
      const counter = await store.read("probe.counter", (r) =>
        r.get<{ value: number }>("SELECT value FROM counters WHERE name = 'seq'"),
      );
      expect(counter).to.deep.equal({ value: 2 });
    } finally {
      await store.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
