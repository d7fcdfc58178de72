/**
 * The Store contract, stream part (docs/REDESIGN.md §4.5, cases 21–34): the stream half of QueueTx
 * (component/runtime/queue/stream-tx.ts) through makeUow, and the delivery engine's statements
 * (component/runtime/queue/stream-repo.ts: lane reads, claims, acks, GC, dormancy) in units of work. Backend-neutral:
 * only Store, makeUow and the repo, with accounts, bindings and cursors seeded by plain portable SQL (the accounts
 * part lands in parallel), so a PostgreSQL factory (issue 13) runs the same file with its own schema.
 */
import { expect } from "chai";
import { EventBus } from "../../component/runtime/events.js";
import type { PendingEntry, StreamKind } from "../../component/runtime/queue/api.js";
import { KindRegistry } from "../../component/runtime/queue/registry.js";
import { streamRepo, type LaneEntry } from "../../component/runtime/queue/stream-repo.js";
import { streamTx } from "../../component/runtime/queue/stream-tx.js";
import { makeUow, type UnitOfWork, type Uow } from "../../component/runtime/uow.js";
import { StoreConflictError } from "../../storage/errors.js";
import type { AccountId, Migration, Params, Store, StoreOptions, Tx } from "../../storage/store.js";
import type { StoreFactory } from "./uow.contract.js";

const T0 = 1_700_000_000_000;
const DAY = 86_400_000;
const IDLE = { deviceIdleMs: 30 * DAY, sharedIdleMs: 2 * DAY, limit: 100 };
const A = (n: number): AccountId => n as AccountId;
const OWNER = A(1);
const HOLDERS = 1000;

const kind = (name: string, coalesce: "replace" | "keep", subject: "account" | "entity"): StreamKind => ({
  name,
  coalesce,
  subject,
  wake: true,
  render: async () => null,
});
const KINDS = [
  kind("card", "replace", "account"),
  kind("binding", "replace", "entity"),
  kind("exchange-declined", "replace", "entity"),
  kind("note", "keep", "entity"),
];
const card = (owner: number) => ({ subject: String(owner), subjectAccount: A(owner) });

const never = (): never => {
  throw new Error("this contract uses only the stream part");
};

/** A Tx that counts the statements its user issues (case 23: one statement per fan-out). */
function counting(tx: Tx, counter: { n: number }): Tx {
  return {
    get dialect() {
      return tx.dialect;
    },
    get now() {
      return tx.now;
    },
    get: <R extends object>(sql: string, params?: Params) => {
      counter.n++;
      return tx.get<R>(sql, params);
    },
    all: <R extends object>(sql: string, params?: Params) => {
      counter.n++;
      return tx.all<R>(sql, params);
    },
    run: (sql: string, params?: Params) => {
      counter.n++;
      return tx.run(sql, params);
    },
    seq: () => tx.seq(),
    lockAccount: (id) => tx.lockAccount(id),
    afterCommit: (fn) => tx.afterCommit(fn),
  };
}

/** Accounts lo..hi, each with its shared cursor at 0 (what accounts.ensure makes, §2.2). */
async function seedAccounts(store: Store, lo: number, hi: number): Promise<void> {
  await store.tx("seed.accounts", async (tx) => {
    await tx.run(
      `WITH RECURSIVE n(i) AS (SELECT CAST(:lo AS BIGINT) UNION ALL SELECT i + 1 FROM n WHERE i < :hi)
       INSERT INTO accounts (id, state, created_at) SELECT i, 'active', :now FROM n`,
      { lo, hi, now: tx.now },
    );
    await tx.run(
      `INSERT INTO stream_cursors (account_id, consumer, pos, seen_at)
       SELECT id, 0, 0, :now FROM accounts WHERE id BETWEEN :lo AND :hi`,
      { lo, hi, now: tx.now },
    );
  });
}

/** OWNER bound to holders lo..hi: a binding and both directed shares each (the binding audience path). */
async function seedBindings(store: Store, lo: number, hi: number): Promise<void> {
  await store.tx("seed.bindings", async (tx) => {
    const p = { lo, hi, owner: OWNER, now: tx.now };
    await tx.run(
      `INSERT INTO bindings (id, a, b, a_devices, b_devices, via, created_at)
       SELECT 'b-' || CAST(id AS TEXT), :owner, id, '[]', '[]', 'code', :now FROM accounts WHERE id BETWEEN :lo AND :hi`,
      p,
    );
    await tx.run(
      `INSERT INTO shares (owner, holder, binding_id, policy, seq)
       SELECT :owner, id, 'b-' || CAST(id AS TEXT), NULL, 0 FROM accounts WHERE id BETWEEN :lo AND :hi`,
      p,
    );
    await tx.run(
      `INSERT INTO shares (owner, holder, binding_id, policy, seq)
       SELECT id, :owner, 'b-' || CAST(id AS TEXT), NULL, 0 FROM accounts WHERE id BETWEEN :lo AND :hi`,
      p,
    );
  });
}

export function describeStream(name: string, factory: StoreFactory, schema: readonly Migration[]): void {
  describe(`Store contract: the stream (${name})`, function () {
    this.timeout(60_000);
    let now: number;
    let store: Store;
    let uow: Uow;
    let events: EventBus;
    const statements = { n: 0 };
    const opened: Store[] = [];
    const registry = new KindRegistry();
    for (const k of KINDS) registry.register(k);
    const parts = {
      accounts: never,
      audience: never,
      jobs: never,
      stream: streamTx({ kind: (n) => registry.get(n), paths: [] }),
    };
    const uowOn = (s: Store): Uow =>
      makeUow({ tx: (n, fn) => s.tx(n, (tx) => fn(counting(tx, statements))) }, parts, events);
    let backend: Awaited<ReturnType<StoreFactory["create"]>>;
    const open = async (): Promise<Store> => {
      const o: Partial<StoreOptions> = { clock: () => now };
      const s = await backend.open(o);
      opened.push(s);
      return s;
    };

    /** One lane's entries as (kind, subject, seq, ord), in delivery order. */
    const lane = async (l: number, s: Store = store) =>
      (
        await s.read("lane", (r) =>
          r.all<{ kind: string; subject: string; seq: number; ord: number }>(
            "SELECT kind, subject, seq, ord FROM stream_entries WHERE account_id = :l ORDER BY seq, ord, id",
            { l },
          ),
        )
      ).map((e) => ({ kind: e.kind, subject: e.subject, seq: Number(e.seq), ord: Number(e.ord) }));
    const count = async (sql: string, p: Params = {}): Promise<number> =>
      Number((await store.read("count", (r) => r.get<{ n: number }>(sql, p)))?.n);
    const sharedCursor = async (l: number, s: Store = store): Promise<number> => {
      const c = await s.read("cursor", (r) => streamRepo(r).cursor(A(l), 0));
      if (!c) throw new Error(`no shared cursor for ${l}`);
      return c.id;
    };
    /** A device cursor made by plain SQL (its devices row is S3's; consumer has no foreign key, §2.6). */
    const deviceCursor = async (l: number, consumer: number, pos: number, seenAt = now): Promise<number> =>
      store.tx("seed.cursor", async (tx) => {
        await tx.run(
          "INSERT INTO stream_cursors (account_id, consumer, pos, seen_at) VALUES (:l, :c, :pos, :seen)",
          { l, c: consumer, pos, seen: seenAt },
        );
        return (await streamRepo(tx).cursor(A(l), consumer))?.id as number;
      });
    /** One of the delivery engine's units of work (claim, ack, sweep…): the repo on the unit of work's tx. */
    const repoTx = <T>(f: (r: ReturnType<typeof streamRepo>, u: UnitOfWork) => Promise<T>, u: Uow = uow) =>
      u("stream.engine", (w) => f(streamRepo(w.tx), w));
    const append = (k: string, lanes: number[], e: { subject: string; subjectAccount?: AccountId }) =>
      uow("append", async (u) => ({ seq: await u.seq(), lanes: await u.queue.append(k, lanes.map(A), e) }));

    beforeEach(async () => {
      now = T0;
      events = new EventBus();
      backend = await factory.create();
      store = await open();
      await store.migrate(schema);
      uow = uowOn(store);
      await seedAccounts(store, 1, 20);
    });
    afterEach(async () => {
      for (const s of opened.splice(0)) await s.close();
    });
    after(() => factory.cleanup());

    it("21. a `replace` kind appended twice to a lane: one entry, at the newer seq/ord", async () => {
      const heard: Array<{ lanes: AccountId[]; seq: number }> = [];
      events.on("queue.appended", (e) => heard.push({ lanes: [...e.lanes].sort(), seq: e.seq }));
      const first = await append("card", [2, 3], card(1));
      expect(first.lanes.sort()).to.deep.equal([2, 3]);
      expect(await lane(2)).to.deep.equal([{ kind: "card", subject: "1", seq: first.seq, ord: 0 }]);
      // A later change, with another append before it in the same unit of work: the newer seq and ord.
      const second = await uow("again", async (u) => {
        await u.queue.append("binding", [A(2)], { subject: "b-2" });
        await u.queue.append("card", [A(2)], card(1));
        return u.seq();
      });
      expect(second).to.be.greaterThan(first.seq);
      expect(await lane(2)).to.deep.equal([
        { kind: "binding", subject: "b-2", seq: second, ord: 0 },
        { kind: "card", subject: "1", seq: second, ord: 1 },
      ]);
      expect(await lane(3)).to.deep.equal([{ kind: "card", subject: "1", seq: first.seq, ord: 0 }]);
      // One post-commit announcement per unit of work, with every lane it appended to.
      expect(heard).to.deep.equal([
        { lanes: [2, 3], seq: first.seq },
        { lanes: [2], seq: second },
      ]);
      // A rolled-back append announces nothing and leaves nothing.
      const err = await uow("rolls back", async (u) => {
        await u.queue.append("card", [A(4)], card(1));
        throw new Error("no");
      }).catch((e: unknown) => e);
      expect((err as Error).message).to.equal("no");
      expect(await lane(4)).to.deep.equal([]);
      expect(heard).to.have.length(2);
    });

    it("22. a `keep` kind: distinct subjects give distinct entries; the same subject twice fails the unit of work", async () => {
      await uow("notes", async (u) => {
        await u.queue.append("note", [A(2)], { subject: "n1" });
        await u.queue.append("note", [A(2)], { subject: "n2" });
      });
      expect((await lane(2)).map((e) => e.subject)).to.deep.equal(["n1", "n2"]);
      const err = await uow("twice", async (u) => {
        await u.queue.append("note", [A(2)], { subject: "n3" });
        await u.queue.append("note", [A(2)], { subject: "n1" });
      }).catch((e: unknown) => e);
      expect(err).to.be.instanceOf(StoreConflictError);
      expect((err as StoreConflictError).constraint).to.equal("stream_coalesce");
      // Nothing of the failed unit of work stays: n3 is gone with it.
      expect((await lane(2)).map((e) => e.subject)).to.deep.equal(["n1", "n2"]);
      // Misuse is refused before any write: an unknown kind, a lane that is no account, a wrong subject shape.
      const refuse = async (f: (u: UnitOfWork) => Promise<unknown>) =>
        ((await uow("misuse", f).catch((e: unknown) => e)) as Error).message;
      expect(await refuse((u) => u.queue.append("nope", [A(2)], { subject: "x" }))).to.match(
        /unknown kind 'nope'/,
      );
      expect(await refuse((u) => u.queue.append("note", [A(2), A(999)], { subject: "x" }))).to.match(
        /unknown accounts 999/,
      );
      expect(await refuse((u) => u.queue.append("card", [A(2)], { subject: "1" }))).to.match(
        /String\(subjectAccount\)/,
      );
      expect((await lane(2)).map((e) => e.subject)).to.deep.equal(["n1", "n2"]);
    });

    it("23. appendToAudience to 1,000 holders is one statement and returns every recipient, coalesced ones included", async () => {
      await seedAccounts(store, 21, HOLDERS + 21);
      await seedBindings(store, 21, HOLDERS + 20); // OWNER's holders: 21..1020; 1021 is not bound
      const holders = Array.from({ length: HOLDERS }, (_, i) => 21 + i);
      // Half the holders still have the owner's previous card pending: those rows coalesce.
      await append("card", holders.slice(0, HOLDERS / 2), card(1));
      const fan = async (exclude?: AccountId[]) =>
        uow("card.set", async (u) => {
          const seq = await u.seq();
          statements.n = 0;
          const got = await u.queue.appendToAudience(
            "card",
            OWNER,
            card(1),
            exclude ? { exclude } : undefined,
          );
          return { seq, got: [...got].sort((x, y) => x - y), statements: statements.n };
        });
      const r = await fan();
      expect(r.statements).to.equal(1);
      expect(r.got).to.deep.equal(holders);
      expect(
        await count("SELECT COUNT(*) AS n FROM stream_entries WHERE kind = 'card' AND subject = '1'"),
      ).to.equal(HOLDERS);
      expect(
        await count("SELECT COUNT(*) AS n FROM stream_entries WHERE kind = 'card' AND seq = :s", {
          s: r.seq,
        }),
      ).to.equal(HOLDERS);
      // Every holder coalesced now; `exclude` leaves lanes out (and untouched).
      const again = await fan([A(21), A(22)]);
      expect(again.statements).to.equal(1);
      expect(again.got).to.deep.equal(holders.slice(2));
      expect(await lane(21)).to.deep.equal([{ kind: "card", subject: "1", seq: r.seq, ord: 0 }]);
      expect(await lane(HOLDERS + 21)).to.deep.equal([]);
      expect(await lane(1)).to.deep.equal([]); // never the owner's own lane
    });

    it("24. lane reads come in (seq, ord, id) order from pos, limited, never splitting a seq", async () => {
      const a = await uow("bind", async (u) => {
        await u.queue.append("binding", [A(2)], { subject: "b-2" });
        await u.queue.append("card", [A(2)], card(3));
        return u.seq();
      });
      // One feature SELECT writing two entries to lane 2 with one (seq, ord): the tie goes by row id.
      const b = await uow("select", async (u) => {
        const payload = await u.queue.payload("exchange-declined", { id: "r1", by: 3 });
        await u.queue.appendSelect("exchange-declined", {
          sql: `SELECT a.id AS lane, CAST(:sub AS TEXT) AS subject, CAST(NULL AS BIGINT) AS subject_account,
                       CAST(:p AS BIGINT) AS payload_id FROM accounts a WHERE a.id = :l
                UNION ALL
                SELECT a.id, CAST(:sub2 AS TEXT), CAST(NULL AS BIGINT), CAST(:p AS BIGINT) FROM accounts a WHERE a.id = :l`,
          params: { sub: "r1", sub2: "r0", p: payload, l: 2 },
        });
        return u.seq();
      });
      const c = (await append("note", [2], { subject: "n1" })).seq;
      const read = (after: number, limit: number) => repoTx((r) => r.read(A(2), after, limit));
      const key = (e: LaneEntry) => `${e.kind}/${e.subject}@${e.seq}.${e.ord}`;
      const all = await read(0, 10);
      expect(all.entries.map((e) => key(e).replace(/r[01]@/, "r?@"))).to.deep.equal([
        `binding/b-2@${a}.0`,
        `card/3@${a}.1`,
        `exchange-declined/r?@${b}.0`,
        `exchange-declined/r?@${b}.0`,
        `note/n1@${c}.0`,
      ]);
      const [t1, t2] = [all.entries[2] as LaneEntry, all.entries[3] as LaneEntry];
      expect(t1.id).to.be.lessThan(t2.id); // the (seq, ord) tie, by row id
      expect([t1.subject, t2.subject].sort()).to.deep.equal(["r0", "r1"]);
      expect(all.upto).to.equal(c);
      expect(all.entries[2]?.payload).to.deep.equal({ id: "r1", by: 3 });
      expect(all.entries[1]?.subjectAccount).to.equal(3);
      // The limit cuts at a seq boundary; a seq larger than the limit comes whole.
      const three = await read(0, 3);
      expect(three.entries.map(key)).to.deep.equal([`binding/b-2@${a}.0`, `card/3@${a}.1`]);
      expect(three.upto).to.equal(a);
      expect(three.more, "a read cut by its limit says the lane holds more").to.equal(true);
      expect((await read(0, 1)).entries.map(key)).to.deep.equal([`binding/b-2@${a}.0`, `card/3@${a}.1`]);
      const next = await read(three.upto, 4);
      expect(next.entries.map((e) => e.id)).to.deep.equal(all.entries.slice(2).map((e) => e.id));
      expect(await read(c, 10)).to.deep.equal({ entries: [], upto: c, more: false });
    });

    it("25. an ack moves pos forward only; a late, older ack does not move it back", async () => {
      const cur = await sharedCursor(2);
      const pos = async () => (await store.read("pos", (r) => streamRepo(r).cursorById(cur)))?.pos;
      expect(await repoTx((r, u) => r.ack("me", [{ cursor: cur, upto: 10 }], u.now))).to.deep.equal([2]);
      expect(await pos()).to.equal(10);
      await repoTx((r, u) => r.ack("me", [{ cursor: cur, upto: 5 }], u.now));
      expect(await pos()).to.equal(10);
      await repoTx((r, u) => r.ack("other", [{ cursor: cur, upto: 12 }], u.now));
      expect(await pos()).to.equal(12);
    });

    it("26. GC deletes exactly the entries at or below the lowest active cursor; a dormant cursor does not hold them", async () => {
      const s1 = (await append("note", [3], { subject: "n1" })).seq;
      const s2 = (await append("note", [3], { subject: "n2" })).seq;
      const s3 = (await append("note", [3], { subject: "n3" })).seq;
      const device = await deviceCursor(3, 77, 0);
      await store.tx("dormant", (tx) =>
        tx.run("UPDATE stream_cursors SET state = 'dormant' WHERE id = :id", { id: device }),
      );
      const shared = await sharedCursor(3);
      await repoTx((r, u) => r.ack("me", [{ cursor: shared, upto: s2 }], u.now));
      expect((await lane(3)).map((e) => e.seq)).to.deep.equal([s3]);
      // Active again at 0, the device holds what is left.
      await store.tx("active", (tx) =>
        tx.run("UPDATE stream_cursors SET state = 'active' WHERE id = :id", { id: device }),
      );
      await repoTx((r, u) => r.ack("me", [{ cursor: shared, upto: s3 }], u.now));
      expect((await lane(3)).map((e) => e.seq)).to.deep.equal([s3]);
      await repoTx((r, u) => r.ack("me", [{ cursor: device, upto: s1 }], u.now)); // below s3: nothing to collect
      expect((await lane(3)).map((e) => e.seq)).to.deep.equal([s3]);
      // Other lanes are untouched; a lane whose cursors are all dormant is held by none.
      const s4 = (await append("note", [4], { subject: "n4" })).seq;
      await store.tx("all dormant", (tx) =>
        tx.run("UPDATE stream_cursors SET state = 'dormant' WHERE account_id = 4"),
      );
      expect((await lane(4)).map((e) => e.seq)).to.deep.equal([s4]);
      expect(await repoTx((r) => r.gc(A(4)))).to.equal(1);
      expect(await lane(4)).to.deep.equal([]);
    });

    it("27. shared + device cursor: an entry stays until both acknowledged it; then it is gone", async () => {
      const device = await deviceCursor(5, 42, 0);
      const shared = await sharedCursor(5);
      const s = (await append("card", [5], card(1))).seq;
      await repoTx((r, u) => r.ack("me", [{ cursor: shared, upto: s }], u.now));
      expect(await lane(5)).to.have.length(1);
      await repoTx((r, u) => r.ack("me", [{ cursor: device, upto: s }], u.now));
      expect(await lane(5)).to.deep.equal([]);
    });

    it("28. a device cursor created later starts at the floor and receives every retained entry", async () => {
      const holder = await deviceCursor(6, 1, 0); // an older device holds the lane
      const shared6 = await sharedCursor(6);
      const s1 = (await append("note", [6], { subject: "n1" })).seq;
      const s2 = (await append("note", [6], { subject: "n2" })).seq;
      await repoTx((r, u) =>
        r.ack(
          "me",
          [
            { cursor: holder, upto: s1 },
            { cursor: shared6, upto: s2 },
          ],
          u.now,
        ),
      );
      expect((await lane(6)).map((e) => e.seq)).to.deep.equal([s2]);
      const fresh = await repoTx((r, u) => r.ensureCursor(A(6), 2, u.now));
      expect(fresh.pos).to.equal(s2 - 1);
      expect((await repoTx((r) => r.read(A(6), fresh.pos, 10))).entries.map((e) => e.subject)).to.deep.equal([
        "n2",
      ]);
      // Ensuring again returns the same cursor; on an empty lane a new cursor starts at the current seq.
      expect((await repoTx((r, u) => r.ensureCursor(A(6), 2, u.now))).id).to.equal(fresh.id);
      const current = await uow("probe", (u) => u.seq());
      expect((await repoTx((r, u) => r.ensureCursor(A(7), 9, u.now))).pos).to.equal(current);
      // A removed device's cursor goes, and what only it held goes with it.
      expect(await repoTx((r) => r.dropCursor(A(6), 1))).to.equal(true);
      await repoTx((r, u) => r.ack("me", [{ cursor: fresh.id, upto: s2 }], u.now));
      expect(await lane(6)).to.deep.equal([]);
    });

    it("29. an entry replaced while its batch is in flight: the old batch's ack does not drop the newer version", async () => {
      const s1 = (await append("card", [8], card(1))).seq;
      const batch = await repoTx((r) => r.read(A(8), 0, 10));
      expect(batch.upto).to.equal(s1);
      const s2 = (await append("card", [8], card(1))).seq; // the card changed while the IQ was out
      const shared8 = await sharedCursor(8);
      await repoTx((r, u) => r.ack("me", [{ cursor: shared8, upto: batch.upto }], u.now));
      expect(await lane(8)).to.deep.equal([{ kind: "card", subject: "1", seq: s2, ord: 0 }]);
      expect((await repoTx((r) => r.read(A(8), batch.upto, 10))).entries.map((e) => e.seq)).to.deep.equal([
        s2,
      ]);
    });

    it("30. retract removes the entry from the named lanes only", async () => {
      await append("card", [2, 3, 4], card(1));
      await append("card", [2], card(5));
      await append("binding", [2, 3], { subject: "b-1" });
      expect(await uow("retract", (u) => u.queue.retract("card", "1", [A(2), A(3)]))).to.equal(2);
      expect((await lane(2)).map((e) => `${e.kind}/${e.subject}`)).to.deep.equal(["card/5", "binding/b-1"]);
      expect((await lane(4)).map((e) => `${e.kind}/${e.subject}`)).to.deep.equal(["card/1"]);
      // Without lanes: an account subject everywhere (by its index); an entity subject needs its lanes.
      expect(await uow("retract all", (u) => u.queue.retract("card", "1"))).to.equal(1);
      expect(await lane(4)).to.deep.equal([]);
      const err = await uow("retract entity", (u) => u.queue.retract("binding", "b-1")).catch(
        (e: unknown) => e,
      );
      expect((err as Error).message).to.match(/entity kind 'binding' needs its lanes/);
      expect(await uow("retract b", (u) => u.queue.retract("binding", "b-1", [A(3)]))).to.equal(1);
      expect((await lane(2)).map((e) => `${e.kind}/${e.subject}`)).to.deep.equal(["card/5", "binding/b-1"]);
    });

    it("31. claims across two Store instances on one database: leased until release or expiry; any ack applies", async () => {
      const other = await open();
      const uowB = uowOn(other);
      const c2 = await sharedCursor(2);
      const c3 = await sharedCursor(3);
      const claim = (u: Uow, me: string, ids: number[]) =>
        repoTx((r, w) => r.claim(me, ids, w.now, w.now + 30_000), u).then((rows) =>
          rows.map((x) => x.id).sort(),
        );
      expect(await claim(uow, "A", [c2, c3])).to.deep.equal([c2, c3].sort());
      now += 1;
      expect(await claim(uowB, "B", [c2, c3])).to.deep.equal([]);
      expect(await claim(uow, "A", [c2])).to.deep.equal([c2]); // the owner may renew
      expect(await repoTx((r) => r.release("A", [c2]))).to.equal(1);
      expect(await claim(uowB, "B", [c2, c3])).to.deep.equal([c2]);
      now = T0 + 30_001; // A's lease of c3 expired
      expect(await claim(uowB, "B", [c3])).to.deep.equal([c3]);
      expect(await claim(uow, "A", [c2, c3])).to.deep.equal([]);
      // A's late ack (it sent the batch before its lease ran out) still applies; B keeps its lease.
      const s = (await append("note", [3], { subject: "n1" })).seq;
      await repoTx((r, u) => r.ack("A", [{ cursor: c3, upto: s }], u.now));
      const after = await other.read("cursor", (r) => streamRepo(r).cursorById(c3));
      expect(after).to.include({ pos: s, leaseOwner: "B" });
      expect(await lane(3, other)).to.deep.equal([]);
    });

    it("32. a remote ack by inflight_iq from the other instance advances the cursor", async () => {
      const other = await open();
      const uowB = uowOn(other);
      const c = await sharedCursor(2);
      const s = (await append("card", [2], card(1))).seq;
      await repoTx(async (r, u) => {
        await r.claim("A", [c], u.now, u.now + 30_000);
        expect(await r.inflight("A", c, "iq-1", s)).to.equal(true);
      });
      expect(await repoTx((r) => r.inflight("B", c, "iq-x", s), uowB)).to.equal(false); // not B's lease
      expect(await repoTx((r, u) => r.remoteAck(A(3), "iq-1", u.now), uowB)).to.equal(false); // another lane
      expect(await repoTx((r, u) => r.remoteAck(A(2), "iq-1", u.now), uowB)).to.equal(true);
      const cur = await store.read("cursor", (r) => streamRepo(r).cursorById(c));
      expect(cur).to.include({ pos: s, leaseUntil: 0 });
      expect(cur?.leaseOwner).to.equal(undefined);
      expect(cur?.inflightIq).to.equal(undefined);
      expect(await lane(2)).to.deep.equal([]);
      expect(await repoTx((r, u) => r.remoteAck(A(2), "iq-1", u.now), uowB)).to.equal(false); // applied once
    });

    it("33. dormancy sweep and reactivation: pos below the floor → the consumer resyncs and jumps to the floor", async () => {
      // Lane 9: a device idle since T0, the shared cursor fresh. Lane 10: the shared cursor idle, a device fresh.
      // Lane 11: only a shared cursor, idle: never dormant. Lane 12: an idle device that missed nothing.
      const dev9 = await deviceCursor(9, 91, 0, T0);
      const dev10 = await deviceCursor(10, 101, 0, T0 + 31 * DAY);
      const s = (await append("note", [9, 10], { subject: "n" })).seq;
      const dev12 = await repoTx((r, u) => r.ensureCursor(A(12), 121, u.now));
      now = T0 + 31 * DAY;
      const shared9 = await sharedCursor(9);
      await repoTx((r, u) => r.ack("me", [{ cursor: shared9, upto: s }], u.now));
      await repoTx(async (r, u) => r.ack("me", [{ cursor: dev10, upto: s }], u.now));
      expect(await lane(9)).to.have.length(1); // held by the device
      expect(await lane(10)).to.have.length(1); // held by the shared cursor
      const swept = await repoTx((r, u) => r.sweepDormant(u.now, IDLE));
      expect(swept.dormant).to.equal(3); // dev9, dev12, lane 10's shared cursor
      expect([...swept.lanes].sort((x, y) => x - y)).to.deep.equal([9, 10, 12]);
      const state = async (id: number) => (await store.read("c", (r) => streamRepo(r).cursorById(id)))?.state;
      expect(await state(await sharedCursor(11))).to.equal("active");
      expect(await state(await sharedCursor(10))).to.equal("dormant");
      expect(await state(await sharedCursor(9))).to.equal("active"); // lane 9's devices all went dormant
      // The dormant cursors stopped holding: both lanes were collected by the sweep.
      expect(await lane(9)).to.deep.equal([]);
      expect(await lane(10)).to.deep.equal([]);
      const floor9 = await repoTx((r) => r.floor(A(9)));
      expect(await repoTx((r, u) => r.reactivate(dev9, u.now))).to.equal("resync");
      expect(await store.read("c", (r) => streamRepo(r).cursorById(dev9))).to.include({
        state: "active",
        pos: floor9,
      });
      const shared10 = await sharedCursor(10);
      expect(await repoTx((r, u) => r.reactivate(shared10, u.now))).to.equal("jumped");
      expect(await repoTx((r, u) => r.reactivate(dev12.id, u.now))).to.equal("reactivated");
      expect(await repoTx((r, u) => r.reactivate(dev9, u.now))).to.equal("active");
      // The next sweep: lane 12 has an active device again, so its idle shared cursor goes dormant now; the
      // reactivated cursors were seen just now and stay.
      const next = await repoTx((r, u) => r.sweepDormant(u.now, IDLE));
      expect(next).to.deep.equal({ dormant: 1, lanes: [12] });
      expect(await state(await sharedCursor(12))).to.equal("dormant");
    });

    it("34. pending counts per account and in total match the entries above the lowest active cursor", async () => {
      const s1 = (await append("note", [13, 14], { subject: "n1" })).seq;
      const s2 = (await append("note", [13, 15], { subject: "n2" })).seq;
      const s3 = (await append("note", [13, 14], { subject: "n3" })).seq;
      // Positions set without GC, so retained entries at or below a cursor exist and must not count.
      await store.tx("positions", async (tx) => {
        await tx.run("UPDATE stream_cursors SET pos = :p WHERE account_id = 13", { p: s1 });
        await tx.run("UPDATE stream_cursors SET pos = :p WHERE account_id = 14", { p: s3 });
        await tx.run("UPDATE stream_cursors SET state = 'dormant' WHERE account_id = 15");
      });
      await deviceCursor(14, 141, 0); // holds lane 14 from 0
      const counts = await store.read("counts", (r) => streamRepo(r).pendingCounts());
      expect([...counts.lanes.entries()].sort((x, y) => x[0] - y[0])).to.deep.equal([
        [13, 2],
        [14, 2],
      ]);
      expect(counts.total).to.equal(4);
      expect(await store.read("n", (r) => streamRepo(r).pendingCount(A(13)))).to.equal(2);
      expect(await store.read("n", (r) => streamRepo(r).pendingCount(A(15)))).to.equal(0);
      const pending = (l: number, limit: number) =>
        uow("pending", (u) => u.queue.pending(A(l), limit)).then((es: PendingEntry[]) =>
          es.map((e) => `${e.subject}@${e.seq}`),
        );
      expect(await pending(13, 10)).to.deep.equal([`n2@${s2}`, `n3@${s3}`]);
      expect(await pending(13, 1)).to.deep.equal([`n2@${s2}`]);
      expect(await pending(14, 10)).to.deep.equal([`n1@${s1}`, `n3@${s3}`]);
      expect(await pending(15, 10)).to.deep.equal([]);
      // Six entries are stored: lane 13's n1 is retained below its cursor, lane 15's n2 behind dormant cursors.
      expect(await count("SELECT COUNT(*) AS n FROM stream_entries")).to.equal(6);
    });

    it("payloads are stored once for every lane, bounded, and swept when no entry references them", async () => {
      const p = await uow("declined", async (u) => {
        const id = await u.queue.payload("exchange-declined", { id: "r9", by: 2 });
        await u.queue.append("exchange-declined", [A(16), A(17)], { subject: "r9", payload: id });
        return id;
      });
      expect(await count("SELECT COUNT(*) AS n FROM payloads")).to.equal(1);
      expect(await count("SELECT COUNT(*) AS n FROM stream_entries WHERE payload_id = :p", { p })).to.equal(
        2,
      );
      const big = await uow("big", (u) => u.queue.payload("exchange-declined", "x".repeat(70_000))).catch(
        (e: unknown) => e,
      );
      expect((big as Error).message).to.match(/limit 65536/);
      expect(await repoTx((r) => r.sweepPayloads(10))).to.equal(0);
      await uow("retract", (u) => u.queue.retract("exchange-declined", "r9", [A(16), A(17)]));
      expect(await repoTx((r) => r.sweepPayloads(10))).to.equal(1);
      expect(await count("SELECT COUNT(*) AS n FROM payloads")).to.equal(0);
    });
  });
}
