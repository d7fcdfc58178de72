/**
 * The Store contract, accounts part (docs/REDESIGN.md §4.5, cases 15–20), plus the directory's cache rules
 * (§2.2). Backend-neutral: only `Store`, `makeUow`/`makeReader`, the accounts part and its repo, and portable SQL
 * for seeding, so a PostgreSQL factory (issue 13) runs the same file. Each case gets a fresh database from the
 * factory with migration 2000 applied through `store.migrate`.
 */
import { expect } from "chai";
import type { AccountId, DeviceKey, Store, StoreOptions } from "../../storage/store.js";
import { StoreConflictError } from "../../storage/errors.js";
import { SCHEMA_2000 } from "../../storage/sqlite/schema-2000.js";
import type { DeviceInput } from "../../component/runtime/accounts/api.js";
import { accountsRepo } from "../../component/runtime/accounts/repo.js";
import {
  accountsParts,
  JidUnavailableError,
  type AccountsParts,
} from "../../component/runtime/accounts/tx.js";
import { EventBus, type DomainEvents, type EventName } from "../../component/runtime/events.js";
import * as inspect from "../../component/runtime/inspect.js";
import { makeReader, makeUow, type Reader, type Uow } from "../../component/runtime/uow.js";
import type { StoreBackend, StoreFactory } from "./uow.contract.js";

const unused = (): never => {
  throw new Error("part not used by the accounts contract");
};

/** One process's runtime pieces over a store: its own event bus, accounts directory, uow and reader. */
interface Proc {
  store: Store;
  events: EventBus;
  parts: AccountsParts;
  uow: Uow;
  read: Reader;
  /** Post-commit events heard, in order, as [name, payload]. */
  heard: Array<[EventName, unknown]>;
  now: { t: number };
}

/** The case's clock: the stores' (u.now, seen_at) and the directories' (TTL, seen throttle) at once. */
const clock = { t: 1_000_000 };

function proc(store: Store, o: { cacheSize?: number; cacheTtlMs?: number } = {}): Proc {
  const events = new EventBus();
  const now = clock;
  const parts = accountsParts({
    cacheSize: o.cacheSize ?? 1000,
    cacheTtlMs: o.cacheTtlMs ?? 60_000,
    events,
    clock: () => now.t,
  });
  const heard: Array<[EventName, unknown]> = [];
  const names: EventName[] = [
    "account.created",
    "account.activated",
    "device.registered",
    "device.removed",
    "identifier.changed",
  ];
  for (const n of names) events.on(n, (e: DomainEvents[EventName]) => heard.push([n, e]));
  return {
    store,
    events,
    parts,
    uow: makeUow(store, { accounts: parts.tx, stream: unused, jobs: unused, audience: unused }, events),
    read: makeReader(store, { accounts: parts.read, audience: unused }),
    heard,
    now,
  };
}

const ids = (p: Proc, name: EventName): unknown[] => p.heard.filter(([n]) => n === name).map(([, e]) => e);

async function count(s: Store, sql: string, params: Record<string, string | number> = {}): Promise<number> {
  const r = await s.read("contract.count", (t) => t.get<{ n: number }>(sql, params));
  return Number(r?.n);
}

const device = (deviceId: string, extra: Partial<DeviceInput> = {}): DeviceInput => ({
  deviceId,
  platform: "ios",
  ...extra,
});

async function failure(p: Promise<unknown>): Promise<Error> {
  try {
    await p;
  } catch (e) {
    return e as Error;
  }
  throw new Error("expected a failure");
}

export function describeAccounts(name: string, factory: StoreFactory): void {
  describe(`Store contract: accounts (${name})`, function () {
    this.timeout(30_000);
    let backend: StoreBackend;
    let store: Store;
    let p: Proc;
    const opened: Store[] = [];
    const open = async (o?: Partial<StoreOptions>) => {
      const s = await backend.open({ clock: () => clock.t, ...o });
      opened.push(s);
      return s;
    };
    /**
     * A second Store on the same database, for races between connections. SQLite in one Node process cannot race
     * two connections: the second one's BEGIN IMMEDIATE waits in SQLite's synchronous busy handler, blocking the
     * event loop the first one needs to reach COMMIT. There the race is between units of work on one Store, whose
     * mutex is the database write lock, the same serialization two processes get from the file lock.
     */
    const peer = async (): Promise<Store> => (store.backend === "sqlite" ? store : open());

    beforeEach(async () => {
      clock.t = 1_000_000;
      backend = await factory.create();
      store = await open();
      await store.migrate([SCHEMA_2000]);
      p = proc(store);
    });
    afterEach(async () => {
      for (const s of opened.splice(0)) await s.close();
    });
    after(() => factory.cleanup());

    it("15. ensure is idempotent; concurrent ensures of one JID give one account and one shared cursor", async () => {
      const [a1, a2] = await p.uow("t.ensure", async (u) => [
        await u.accounts.ensure("alice@example.com", { seen: true }),
        await u.accounts.ensure("alice@example.com", { seen: true }),
      ]);
      expect(a1).to.equal(a2);
      // Created as active: seen_at is the creation's, and a seen ensure within the hour does not write it again.
      const seenAt = (await inspect.account(store, "alice@example.com"))?.seenAt;
      expect(seenAt).to.equal(clock.t);
      clock.t += 10;
      await p.uow("t.seen", (u) => u.accounts.ensure("alice@example.com", { seen: true }));
      expect((await inspect.account(store, "alice@example.com"))?.seenAt).to.equal(seenAt);
      expect(await p.uow("t.again", (u) => u.accounts.ensure("alice@example.com"))).to.equal(a1);
      // A second process (its own cache) finds the same account in the database.
      const q = proc(store);
      expect(await q.uow("t.other", (u) => u.accounts.ensure("alice@example.com"))).to.equal(a1);
      expect(await count(store, "SELECT COUNT(*) AS n FROM accounts")).to.equal(1);
      expect(await count(store, "SELECT COUNT(*) AS n FROM identifiers WHERE is_primary = 1")).to.equal(1);
      const cursors = await store.read("t.cursors", (r) =>
        r.all<{ consumer: number; pos: number }>(
          "SELECT consumer, pos FROM stream_cursors WHERE account_id = :a",
          { a: a1 },
        ),
      );
      expect(cursors.map((c) => [Number(c.consumer), Number(c.pos)])).to.deep.equal([[0, 0]]);
      expect(ids(p, "account.created")).to.deep.equal([
        { account: a1, jid: "alice@example.com", placeholder: false },
      ]);

      // Concurrent: 12 units of work over two Stores (two connections where the backend can race them).
      const other = proc(await peer());
      const racing = await Promise.all(
        Array.from({ length: 12 }, (_, i) =>
          (i % 2 ? other : p).uow("t.race", (u) => u.accounts.ensure("carol@example.com", { seen: i === 0 })),
        ),
      );
      expect(new Set(racing).size).to.equal(1);
      const carol = racing[0] as AccountId;
      expect(
        await count(store, "SELECT COUNT(*) AS n FROM identifiers WHERE value = 'carol@example.com'"),
      ).to.equal(1);
      expect(await count(store, "SELECT COUNT(*) AS n FROM accounts")).to.equal(2);
      expect(
        await count(store, "SELECT COUNT(*) AS n FROM stream_cursors WHERE account_id = :a", { a: carol }),
      ).to.equal(1);
    });

    it("15. ensure without seen makes a placeholder; the first seen ensure activates it once", async () => {
      const b = await p.uow("t.name", (u) => u.accounts.ensure("bob@example.com"));
      expect((await inspect.account(store, "bob@example.com"))?.state).to.equal("placeholder");
      expect((await inspect.account(store, "bob@example.com"))?.seenAt).to.equal(undefined);
      p.now.t += 10;
      await p.uow("t.act", (u) => u.accounts.ensure("bob@example.com", { seen: true }));
      await p.uow("t.act2", (u) => u.accounts.ensure("bob@example.com", { seen: true }));
      const view = await inspect.account(store, "bob@example.com");
      expect(view?.state).to.equal("active");
      expect(view?.seenAt).to.be.a("number");
      expect(ids(p, "account.created")).to.deep.equal([
        { account: b, jid: "bob@example.com", placeholder: true },
      ]);
      expect(ids(p, "account.activated")).to.deep.equal([{ account: b }]);
      // seen_at is written at most once an hour per account: the second seen ensure wrote nothing.
      const seenAt = view?.seenAt;
      p.now.t += 60_000;
      await p.uow("t.act3", (u) => u.accounts.ensure("bob@example.com", { seen: true }));
      expect((await inspect.account(store, "bob@example.com"))?.seenAt).to.equal(seenAt);
      p.now.t += 3_600_000;
      await p.uow("t.act4", (u) => u.accounts.ensure("bob@example.com", { seen: true }));
      expect((await inspect.account(store, "bob@example.com"))?.seenAt).to.not.equal(seenAt);
    });

    it("15. a rolled-back ensure leaves no row and nothing cached; a non-normalised JID is refused", async () => {
      const err = await failure(
        p.uow("t.rollback", async (u) => {
          await u.accounts.ensure("dave@example.com", { seen: true });
          throw new Error("refused");
        }),
      );
      expect(err.message).to.equal("refused");
      expect(await count(store, "SELECT COUNT(*) AS n FROM accounts")).to.equal(0);
      expect(await count(store, "SELECT COUNT(*) AS n FROM stream_cursors")).to.equal(0);
      expect(await p.read("t.resolve", (r) => r.accounts.resolve("dave@example.com"))).to.equal(undefined);
      expect(await p.uow("t.resolve-tx", (u) => u.accounts.resolve("dave@example.com"))).to.equal(undefined);
      expect(p.heard).to.deep.equal([]);
      const bad = await failure(p.uow("t.upper", (u) => u.accounts.ensure("Dave@Example.com")));
      expect(bad.message).to.match(/not a normalised bare user JID/);
      expect(await count(store, "SELECT COUNT(*) AS n FROM accounts")).to.equal(0);
    });

    it("16. resolve ignores held and pending identifiers; an identifier belongs to one account", async () => {
      const a = await p.uow("t.a", (u) => u.accounts.ensure("a@example.com", { seen: true }));
      const b = await p.uow("t.b", (u) => u.accounts.ensure("b@example.com", { seen: true }));
      await p.uow("t.seed", async (u) => {
        const repo = accountsRepo(u.tx);
        await repo.insertIdentifier(
          {
            kind: "jid",
            value: "old-a@example.com",
            account: a,
            state: "held",
            primary: false,
            heldUntil: 5,
          },
          u.now,
        );
        await repo.insertIdentifier(
          { kind: "jid", value: "new-a@example.com", account: a, state: "pending", primary: false },
          u.now,
        );
        await repo.insertIdentifier(
          { kind: "tel", value: "+15550100", account: a, state: "active", primary: false },
          u.now,
        );
      });
      for (const jid of ["old-a@example.com", "new-a@example.com"]) {
        expect(await p.read("t.r", (r) => r.accounts.resolve(jid)), jid).to.equal(undefined);
        expect(await p.uow("t.r", (u) => u.accounts.resolve(jid)), jid).to.equal(undefined);
      }
      expect(await p.read("t.r", (r) => r.accounts.resolve("a@example.com"))).to.equal(a);
      // A tel identifier is not a JID: it does not resolve as one.
      expect(await p.read("t.r", (r) => r.accounts.resolve("+15550100"))).to.equal(undefined);
      // Nobody can claim a held JID: ensure fails and leaves nothing.
      const held = await failure(p.uow("t.claim", (u) => u.accounts.ensure("old-a@example.com")));
      expect(held).to.be.instanceOf(JidUnavailableError);
      expect(await count(store, "SELECT COUNT(*) AS n FROM accounts")).to.equal(2);
      // Also when the caller catches it and commits: the failed attempt's account row is gone.
      const caught = await p.uow("t.claim-caught", async (u) => {
        const e = await failure(u.accounts.ensure("old-a@example.com", { seen: true }));
        return e instanceof JidUnavailableError;
      });
      expect(caught).to.equal(true);
      expect(await count(store, "SELECT COUNT(*) AS n FROM accounts")).to.equal(2);
      // The same (kind, value) for a second account is a conflict, whatever its state; another kind is not.
      for (const value of ["a@example.com", "old-a@example.com"]) {
        const e = await failure(
          p.uow("t.dup", (u) =>
            accountsRepo(u.tx).insertIdentifier(
              { kind: "jid", value, account: b, state: "active", primary: false },
              u.now,
            ),
          ),
        );
        expect(e, value).to.be.instanceOf(StoreConflictError);
        expect((e as StoreConflictError).constraint).to.equal("identifiers_pkey");
      }
      await p.uow("t.email", (u) =>
        accountsRepo(u.tx).insertIdentifier(
          { kind: "email", value: "a@example.com", account: b, state: "active", primary: false },
          u.now,
        ),
      );
      expect(await p.read("t.r", (r) => r.accounts.resolve("a@example.com"))).to.equal(a);
    });

    it("17. jidOf answers the primary JID; a second primary for one account is refused", async () => {
      const a = await p.uow("t.a", (u) => u.accounts.ensure("a@example.com", { seen: true }));
      const b = await p.uow("t.b", (u) => u.accounts.ensure("b@example.com"));
      await p.uow("t.alias", (u) =>
        accountsRepo(u.tx).insertIdentifier(
          { kind: "jid", value: "alias-a@example.com", account: a, state: "active", primary: false },
          u.now,
        ),
      );
      // A fresh process: nothing cached, every answer from the rows.
      const q = proc(store);
      expect(await q.read("t.r", (r) => r.accounts.resolve("alias-a@example.com"))).to.equal(a);
      expect(await q.read("t.r", (r) => r.accounts.jidOf(a))).to.equal("a@example.com");
      expect(await q.uow("t.r", (u) => u.accounts.jidOf(b))).to.equal("b@example.com");
      const missing = 1_000_000 as AccountId;
      const all = await q.read("t.r", (r) => r.accounts.jidsOf([b, a, missing, a]));
      expect([...all.entries()].sort()).to.deep.equal([
        [a, "a@example.com"],
        [b, "b@example.com"],
      ]);
      expect((await failure(q.read("t.r", (r) => r.accounts.jidOf(missing)))).message).to.match(
        /has no primary JID/,
      );
      const e = await failure(
        p.uow("t.second", (u) =>
          accountsRepo(u.tx).insertIdentifier(
            { kind: "jid", value: "other-a@example.com", account: a, state: "active", primary: true },
            u.now,
          ),
        ),
      );
      expect(e).to.be.instanceOf(StoreConflictError);
      expect((e as StoreConflictError).constraint).to.equal("identifiers_primary");
      expect(await q.read("t.r", (r) => r.accounts.jidOf(a))).to.equal("a@example.com");
    });

    it("17. jidsOf over more ids than one query takes", async () => {
      const made = await p.uow("t.many", async (u) => {
        const out: AccountId[] = [];
        for (let i = 0; i < 1_200; i++) out.push(await u.accounts.ensure(`u${i}@example.com`));
        return out;
      });
      const q = proc(store);
      const got = await q.read("t.r", (r) => r.accounts.jidsOf(made));
      expect(got.size).to.equal(1_200);
      expect(got.get(made[1_199] as AccountId)).to.equal("u1199@example.com");
    });

    it("18. the device cap holds under 20 concurrent registrations of new ids", async () => {
      const u1 = await p.uow("t.u", (u) => u.accounts.ensure("phone@example.com", { seen: true }));
      const other = proc(await peer());
      const results = await Promise.all(
        Array.from({ length: 20 }, (_, i) =>
          (i % 2 ? other : p).uow("t.register", (u) =>
            u.accounts.upsertDevice(u1, device(`d${i}`, { pushToken: `tok${i}` }), 5),
          ),
        ),
      );
      const made = results.filter((r) => r !== "over-limit");
      expect(made).to.have.length(5);
      expect(results.filter((r) => r === "over-limit")).to.have.length(15);
      expect(
        await count(store, "SELECT COUNT(*) AS n FROM devices WHERE account_id = :a", { a: u1 }),
      ).to.equal(5);
      expect(ids(p, "device.registered").length + ids(other, "device.registered").length).to.equal(5);
      // At the cap, an existing device still re-registers (an update, not a new device), keeping created_at.
      const first = made[0];
      if (first === undefined) throw new Error("no device made");
      p.now.t += 5;
      const again = await p.uow("t.update", (u) =>
        u.accounts.upsertDevice(u1, device(first.deviceId, { platform: "android", name: "Pixel" }), 5),
      );
      expect(again).to.include({
        key: first.key,
        deviceId: first.deviceId,
        platform: "android",
        name: "Pixel",
      });
      if (again === "over-limit") throw new Error("update refused");
      expect(again.createdAt).to.equal(first.createdAt);
      expect(again.tokenState).to.equal("none");
      expect(again.pushToken).to.equal(undefined);
      expect(await p.read("t.list", (r) => r.accounts.devices(u1))).to.have.length(5);
      expect(await inspect.device(store, "phone@example.com", first.deviceId)).to.deep.equal(again);
      // A new id at the cap is refused, and nothing is written.
      expect(await p.uow("t.over", (u) => u.accounts.upsertDevice(u1, device("d-new"), 5))).to.equal(
        "over-limit",
      );
      expect(await inspect.devices(store, "phone@example.com")).to.have.length(5);
    });

    it("19. removing a device deletes its cursor, its push node and its push jobs, nothing else", async () => {
      const u1 = await p.uow("t.u", (u) => u.accounts.ensure("u@example.com", { seen: true }));
      const v1 = await p.uow("t.v", (u) => u.accounts.ensure("v@example.com", { seen: true }));
      const reg = (id: AccountId, d: string) =>
        p.uow("t.reg", async (u) => {
          const r = await u.accounts.upsertDevice(id, device(d, { pushToken: `t-${d}` }), 20);
          if (r === "over-limit") throw new Error("over");
          return r.key;
        });
      const d1 = await reg(u1, "d1");
      const d2 = await reg(u1, "d2");
      const e1 = await reg(v1, "e1");
      await p.uow("t.seed", async (u) => {
        for (const [acct, key] of [
          [u1, d1],
          [u1, d2],
          [v1, e1],
        ] as Array<[AccountId, DeviceKey]>) {
          await u.tx.run(
            "INSERT INTO stream_cursors (account_id, consumer, pos, seen_at) VALUES (:a, :k, 0, :now)",
            { a: acct, k: key, now: u.now },
          );
          await u.tx.run(
            "INSERT INTO push_nodes (node, device, secret, created_at) VALUES (:n, :k, 's', :now)",
            { n: `node-${key}`, k: key, now: u.now },
          );
          for (const j of [1, 2]) {
            await u.tx.run(
              `INSERT INTO jobs (channel, kind, target, account_id, device, body, uid, created_at)
               VALUES ('push', 'alert', :t, :a, :k, '{}', :uid, :now)`,
              { t: `tok-${key}`, a: acct, k: key, uid: `uid-${key}-${j}`, now: u.now },
            );
          }
        }
        // An account-level job (no device) and a resource that declared d1.
        await u.tx.run(
          `INSERT INTO jobs (channel, kind, target, account_id, device, body, uid, created_at)
           VALUES ('webhook', 'x', 'http://h', :a, NULL, '{}', 'uid-acct', :now)`,
          { a: u1, now: u.now },
        );
        await u.tx.run(
          "INSERT INTO resources (full_jid, account_id, device, since) VALUES ('u@example.com/r', :a, :k, :now)",
          { a: u1, k: d1, now: u.now },
        );
      });
      const snapshot = async () => ({
        cursors: await count(store, "SELECT COUNT(*) AS n FROM stream_cursors"),
        nodes: await count(store, "SELECT COUNT(*) AS n FROM push_nodes"),
        jobs: await count(store, "SELECT COUNT(*) AS n FROM jobs"),
        devices: await count(store, "SELECT COUNT(*) AS n FROM devices"),
        resources: await count(store, "SELECT COUNT(*) AS n FROM resources"),
      });
      const before = await snapshot();
      expect(before).to.deep.equal({ cursors: 5, nodes: 3, jobs: 7, devices: 3, resources: 1 });

      // Rolled back: all of it stays.
      await failure(
        p.uow("t.remove-rollback", async (u) => {
          expect(await u.accounts.removeDevice(u1, "d1")).to.equal(true);
          throw new Error("refused");
        }),
      );
      expect(await snapshot()).to.deep.equal(before);

      expect(await p.uow("t.remove", (u) => u.accounts.removeDevice(u1, "d1"))).to.equal(true);
      expect(await snapshot()).to.deep.equal({ cursors: 4, nodes: 2, jobs: 5, devices: 2, resources: 1 });
      const of = (sql: string, k: number) => count(store, sql, { k });
      expect(await of("SELECT COUNT(*) AS n FROM stream_cursors WHERE consumer = :k", d1)).to.equal(0);
      expect(await of("SELECT COUNT(*) AS n FROM push_nodes WHERE device = :k", d1)).to.equal(0);
      expect(await of("SELECT COUNT(*) AS n FROM jobs WHERE device = :k", d1)).to.equal(0);
      // Nothing else: the shared cursors, d2's and e1's rows, the account-level job, the resource (undeclared).
      expect(await count(store, "SELECT COUNT(*) AS n FROM stream_cursors WHERE consumer = 0")).to.equal(2);
      for (const k of [d2, e1]) {
        expect(await of("SELECT COUNT(*) AS n FROM stream_cursors WHERE consumer = :k", k)).to.equal(1);
        expect(await of("SELECT COUNT(*) AS n FROM push_nodes WHERE device = :k", k)).to.equal(1);
        expect(await of("SELECT COUNT(*) AS n FROM jobs WHERE device = :k", k)).to.equal(2);
      }
      expect(await count(store, "SELECT COUNT(*) AS n FROM jobs WHERE uid = 'uid-acct'")).to.equal(1);
      expect(
        await count(store, "SELECT COUNT(*) AS n FROM resources WHERE account_id = :a AND device IS NULL", {
          a: u1,
        }),
      ).to.equal(1);
      expect(ids(p, "device.removed")).to.deep.equal([{ account: u1, device: d1 }]);
      expect(await p.uow("t.remove-again", (u) => u.accounts.removeDevice(u1, "d1"))).to.equal(false);
      // Another account's device id of the same name is not this account's.
      expect(await p.uow("t.remove-other", (u) => u.accounts.removeDevice(u1, "e1"))).to.equal(false);
      expect(await p.read("t.d", (r) => r.accounts.device(v1, "e1"))).to.include({ key: e1 });
    });

    it("invalidateToken marks every device holding the token dead, once", async () => {
      const a = await p.uow("t.a", (u) => u.accounts.ensure("a@example.com", { seen: true }));
      const b = await p.uow("t.b", (u) => u.accounts.ensure("b@example.com", { seen: true }));
      await p.uow("t.reg", async (u) => {
        await u.accounts.upsertDevice(a, device("x", { pushToken: "shared" }), 20);
        await u.accounts.upsertDevice(b, device("y", { pushToken: "shared" }), 20);
        await u.accounts.upsertDevice(b, device("z", { pushToken: "own" }), 20);
      });
      expect(await p.uow("t.inv", (u) => u.accounts.invalidateToken("shared"))).to.equal(2);
      expect(await p.uow("t.inv", (u) => u.accounts.invalidateToken("shared"))).to.equal(0);
      expect((await inspect.device(store, "a@example.com", "x"))?.tokenState).to.equal("invalid");
      expect((await inspect.device(store, "b@example.com", "y"))?.tokenState).to.equal("invalid");
      expect((await inspect.device(store, "b@example.com", "z"))?.tokenState).to.equal("ok");
      // Re-registering with the token makes it usable again (the client says it is current).
      await p.uow("t.rereg", (u) => u.accounts.upsertDevice(a, device("x", { pushToken: "shared" }), 20));
      expect((await inspect.device(store, "a@example.com", "x"))?.tokenState).to.equal("ok");
    });

    it("20. deleting an account cascades to every table but tombstones.owner", async () => {
      const [x, y, z] = await p.uow("t.accounts", async (u) => [
        await u.accounts.ensure("x@example.com", { seen: true }),
        await u.accounts.ensure("y@example.com", { seen: true }),
        await u.accounts.ensure("z@example.com", { seen: true }),
      ]);
      const keyOf = async (acct: AccountId, d: string): Promise<DeviceKey> =>
        p.uow("t.reg", async (u) => {
          const r = await u.accounts.upsertDevice(acct, device(d, { pushToken: `t-${d}` }), 20);
          if (r === "over-limit") throw new Error("over");
          return r.key;
        });
      // The same rows for x and for y, each against z: afterwards x's are gone and y's are all there.
      for (const [me, tag] of [
        [x, "x"],
        [y, "y"],
      ] as Array<[AccountId, string]>) {
        const key = await keyOf(me, `dev-${tag}`);
        await p.uow("t.seed", async (u) => {
          const run = (sql: string, extra: Record<string, string | number> = {}) =>
            u.tx.run(sql, { me, z, key, tag, now: u.now, ...extra });
          const [lo, hi] = me < z ? [me, z] : [z, me];
          await run(
            "INSERT INTO identifiers (kind, value, account_id, state, is_primary, created_at) VALUES ('tel', :tag, :me, 'active', 0, :now)",
          );
          await run(
            "INSERT INTO resources (full_jid, account_id, device, since) VALUES (:tag, :me, :key, :now)",
          );
          await run("INSERT INTO subscribers (account_id, since) VALUES (:me, :now)");
          await run(
            `INSERT INTO stream_entries (account_id, seq, ord, kind, subject, subject_account, created_at)
                     VALUES (:me, 1, 0, 'card', :zs, :z, :now)`,
            { zs: String(z) },
          );
          // An entry in z's lane about `me`: no foreign key on subject_account (see below).
          await run(
            `INSERT INTO stream_entries (account_id, seq, ord, kind, subject, subject_account, created_at)
                     VALUES (:z, 1, 0, 'card', :mes, :me, :now)`,
            { mes: String(me) },
          );
          await run(
            "INSERT INTO stream_cursors (account_id, consumer, pos, seen_at) VALUES (:me, :key, 0, :now)",
          );
          await run(`INSERT INTO jobs (channel, kind, target, account_id, device, body, uid, created_at)
                     VALUES ('push', 'alert', :tag, :me, :key, '{}', :tag, :now)`);
          await run(`INSERT INTO jobs (channel, kind, target, account_id, device, body, uid, created_at)
                     VALUES ('push', 'alert', :tag, :z, :key, '{}', :tag, :now)`); // z's job on me's device
          await run(`INSERT INTO dead_letters (channel, kind, target, account_id, body, uid, attempts, created_at, died_at)
                     VALUES ('push', 'alert', :tag, :me, '{}', :tag, 3, :now, :now)`);
          await run("INSERT INTO tombstones (holder, owner, seq) VALUES (:me, :z, 1)");
          await run("INSERT INTO tombstones (holder, owner, seq) VALUES (:z, :me, 1)");
          await run(
            "INSERT INTO cards (account_id, version, hash, card, seq, updated_at) VALUES (:me, 1, 'h', '{}', 1, :now)",
          );
          await run(
            `INSERT INTO bindings (id, a, b, a_devices, b_devices, via, created_at)
                     VALUES (:tag, :lo, :hi, '[]', '[]', 'code', :now)`,
            { lo, hi },
          );
          await run(
            "INSERT INTO shares (owner, holder, binding_id, policy, seq) VALUES (:me, :z, :tag, NULL, 1)",
          );
          await run(
            "INSERT INTO shares (owner, holder, binding_id, policy, seq) VALUES (:z, :me, :tag, NULL, 1)",
          );
          await run("INSERT INTO blocks (owner, blocked, created_at) VALUES (:me, :z, :now)");
          await run("INSERT INTO blocks (owner, blocked, created_at) VALUES (:z, :me, :now)");
          await run(
            `INSERT INTO exchange_requests (id, from_account, to_account, created_at, expires_at)
                     VALUES (:r1, :me, :z, :now, :now)`,
            { r1: `${tag}-out` },
          );
          await run(
            `INSERT INTO exchange_requests (id, from_account, to_account, created_at, expires_at)
                     VALUES (:r2, :z, :me, :now, :now)`,
            { r2: `${tag}-in` },
          );
          await run(
            "INSERT INTO exchange_codes (code, owner, created_at, expires_at) VALUES (:tag, :me, :now, :now)",
          );
          await run(
            "INSERT INTO push_nodes (node, device, secret, created_at) VALUES (:tag, :key, 's', :now)",
          );
        });
      }
      // Rows naming an account, per table and column (every FK to accounts, directly or through devices/bindings).
      const naming: Array<[string, string]> = [
        ["accounts", "id = :a"],
        ["identifiers", "account_id = :a"],
        ["devices", "account_id = :a"],
        ["resources", "account_id = :a"],
        ["subscribers", "account_id = :a"],
        ["stream_entries", "account_id = :a"],
        ["stream_cursors", "account_id = :a"],
        ["jobs", "account_id = :a OR device IN (SELECT id FROM devices WHERE account_id = :a)"],
        ["tombstones", "holder = :a"],
        ["cards", "account_id = :a"],
        ["bindings", "a = :a OR b = :a"],
        ["shares", "owner = :a OR holder = :a"],
        ["blocks", "owner = :a OR blocked = :a"],
        ["exchange_requests", "from_account = :a OR to_account = :a"],
        ["exchange_codes", "owner = :a"],
        ["push_nodes", "device IN (SELECT id FROM devices WHERE account_id = :a)"],
      ];
      const tally = async (a: AccountId) => {
        const out: Record<string, number> = {};
        for (const [t, where] of naming)
          out[t] = await count(store, `SELECT COUNT(*) AS n FROM ${t} WHERE ${where}`, { a });
        return out;
      };
      const yBefore = await tally(y);
      const xBefore = await tally(x);
      for (const [t] of naming) expect(xBefore[t], `x has ${t} rows`).to.be.greaterThan(0);
      const xDevice = (await inspect.device(store, "x@example.com", "dev-x"))?.key;
      expect(xDevice).to.be.a("number");

      expect(await p.uow("t.delete", (u) => accountsRepo(u.tx).deleteAccount(x))).to.equal(true);

      const xAfter = await tally(x);
      for (const [t] of naming) expect(xAfter[t], `x's ${t} rows`).to.equal(0);
      // Rows reachable only through x's device (the subselects above find no device of x any more).
      const k = Number(xDevice);
      expect(await count(store, "SELECT COUNT(*) AS n FROM jobs WHERE device = :k", { k })).to.equal(0);
      expect(await count(store, "SELECT COUNT(*) AS n FROM push_nodes WHERE device = :k", { k })).to.equal(0);
      // y's rows (all of them against z, none against x) are untouched.
      expect(await tally(y)).to.deep.equal(yBefore);
      // Kept on purpose: z's tombstone for x (it outlives x until retention, issue 14). Kept because no foreign
      // key names x there: the dead letter's account_id, and the entry in z's lane about x (subject_account).
      expect(await count(store, "SELECT COUNT(*) AS n FROM tombstones WHERE owner = :a", { a: x })).to.equal(
        1,
      );
      expect(
        await count(store, "SELECT COUNT(*) AS n FROM dead_letters WHERE account_id = :a", { a: x }),
      ).to.equal(1);
      expect(
        await count(store, "SELECT COUNT(*) AS n FROM stream_entries WHERE subject_account = :a", { a: x }),
      ).to.equal(1);
      expect(await inspect.account(store, "x@example.com")).to.equal(undefined);
      expect(await inspect.accountCounts(store)).to.deep.equal({ active: 2, placeholder: 0, deleted: 0 });
    });

    describe("the directory (JID ↔ id cache)", () => {
      /** Deletes an identifier behind the cache's back (no event): what a cached answer would still show. */
      const dropIdentifier = (jid: string) =>
        store.tx("t.drop", (tx) =>
          tx.run("DELETE FROM identifiers WHERE kind = 'jid' AND value = :jid", { jid }),
        );

      it("serves repeated lookups from the cache until the TTL runs out", async () => {
        const a = await p.uow("t.a", (u) => u.accounts.ensure("a@example.com", { seen: true }));
        await dropIdentifier("a@example.com");
        // Cached at commit by the ensure: both halves answer from it.
        expect(await p.read("t.r", (r) => r.accounts.resolve("a@example.com"))).to.equal(a);
        expect(await p.uow("t.r", (u) => u.accounts.jidOf(a))).to.equal("a@example.com");
        p.now.t += 60_000;
        expect(await p.read("t.r", (r) => r.accounts.resolve("a@example.com"))).to.equal(undefined);
      });

      it("identifier.changed drops the entries, inside the changing unit of work and after its commit", async () => {
        const a = await p.uow("t.a", (u) => u.accounts.ensure("a@example.com", { seen: true }));
        expect(await p.read("t.r", (r) => r.accounts.jidOf(a))).to.equal("a@example.com");
        const inside = await p.uow("t.change", async (u) => {
          await u.tx.run("UPDATE identifiers SET value = 'a2@example.com' WHERE account_id = :a", { a });
          await u.emit("identifier.changed", {
            account: a,
            kind: "jid",
            from: "a@example.com",
            to: "a2@example.com",
          });
          return [await u.accounts.resolve("a@example.com"), await u.accounts.jidOf(a)];
        });
        expect(inside).to.deep.equal([undefined, "a2@example.com"]);
        expect(await p.read("t.r", (r) => r.accounts.resolve("a@example.com"))).to.equal(undefined);
        expect(await p.read("t.r", (r) => r.accounts.resolve("a2@example.com"))).to.equal(a);
        expect(await p.read("t.r", (r) => r.accounts.jidOf(a))).to.equal("a2@example.com");
      });

      it("a rolled-back lookup caches nothing, and a fill from before an invalidation is dropped", async () => {
        const a = await p.uow("t.a", (u) => u.accounts.ensure("a@example.com"));
        const q = proc(store); // empty cache
        await failure(
          q.uow("t.rb", async (u) => {
            expect(await u.accounts.resolve("a@example.com")).to.equal(a);
            throw new Error("refused");
          }),
        );
        await dropIdentifier("a@example.com");
        expect(await q.read("t.r", (r) => r.accounts.resolve("a@example.com"))).to.equal(undefined);
        // A unit of work that read the mapping, while another one changed it and committed first: its fill is
        // stale and must not land.
        const b = await q.uow("t.b", (u) => u.accounts.ensure("b@example.com"));
        const r = proc(store);
        await r.uow("t.stale", async (u) => {
          expect(await u.accounts.resolve("b@example.com")).to.equal(b);
          r.events.emit("identifier.changed", {
            account: b,
            kind: "jid",
            from: "b@example.com",
            to: "b2@example.com",
          });
        });
        await dropIdentifier("b@example.com");
        expect(await r.read("t.r", (x) => x.accounts.resolve("b@example.com"))).to.equal(undefined);
      });

      it("holds at most cacheSize entries, dropping the least recently used", async () => {
        const q = proc(store, { cacheSize: 2 });
        const [a, b, c] = await p.uow("t.abc", async (u) => [
          await u.accounts.ensure("a@example.com"),
          await u.accounts.ensure("b@example.com"),
          await u.accounts.ensure("c@example.com"),
        ]);
        for (const jid of ["a@example.com", "b@example.com", "a@example.com", "c@example.com"]) {
          await q.read("t.fill", (r) => r.accounts.resolve(jid));
        }
        expect(q.parts.directory.size).to.equal(2);
        for (const jid of ["a@example.com", "b@example.com", "c@example.com"]) await dropIdentifier(jid);
        // a was used after b, so b went when c came in.
        expect(await q.read("t.r", (r) => r.accounts.resolve("a@example.com"))).to.equal(a);
        expect(await q.read("t.r", (r) => r.accounts.resolve("c@example.com"))).to.equal(c);
        expect(await q.read("t.r", (r) => r.accounts.resolve("b@example.com"))).to.equal(undefined);
        void b;
      });
    });
  });
}
