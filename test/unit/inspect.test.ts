/**
 * component/runtime/inspect.ts and test/harness/inspect.ts (issue 8 S11a) over a temp SqliteStore with schema
 * 2000, seeded through the real runtime parts (accountsParts, streamTx with the real `card` kind, jobsTx,
 * audienceParts with the binding path) and the real cards service: every view returns what was seeded, keyed
 * by JID, with update ids rendered as delivery renders them; and no view writes (every table's rows, compared
 * before and after all views ran, are identical). Tables whose feature writers are not built yet (resources,
 * subscribers, exchange requests/codes, blocks, push nodes: S7/S8/S10) are seeded with plain INSERTs in a unit of
 * work, as the contract suites seed.
 */
import { expect } from "chai";
import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { CardRenderCache, cardKind } from "../../component/features/cards/render.js";
import { storeCard } from "../../component/features/cards/service.js";
import * as rt from "../../component/runtime/inspect.js";
import { accountsParts } from "../../component/runtime/accounts/tx.js";
import { audienceParts } from "../../component/runtime/audience/tx.js";
import { EventBus } from "../../component/runtime/events.js";
import type { JobChannel, StreamKind } from "../../component/runtime/queue/api.js";
import { jobsRepo } from "../../component/runtime/queue/jobs-repo.js";
import { jobsTx } from "../../component/runtime/queue/jobs-tx.js";
import { parseUpdateId } from "../../component/runtime/queue/registry.js";
import { streamRepo } from "../../component/runtime/queue/stream-repo.js";
import { streamTx } from "../../component/runtime/queue/stream-tx.js";
import { makeReader, makeUow, type Uow } from "../../component/runtime/uow.js";
import { normalizeCard, type Card } from "../../stanzas/model/card.js";
import { SCHEMA_2000 } from "../../storage/sqlite/schema-2000.js";
import { SqliteStore } from "../../storage/sqlite/store.js";
import type { AccountId, DeviceKey, Seq, Store } from "../../storage/store.js";
import * as inspect from "../harness/inspect.js";
import { bind, type CardsWorld } from "../harness/seed-cards.js";

const T0 = 1_700_000_000_000;
const HOUR = 3_600_000;
const D = "localhost";
const jid = (n: string): string => `${n}@${D}`;

/** A `keep` kind about an entity (an exchange request's id), carrying a payload: the other sort of subject. */
const requestKind: StreamKind = {
  name: "exchange-request",
  coalesce: "keep",
  subject: "entity",
  wake: true,
  render: () => Promise.resolve(null),
};
/** Registered so jobsTx accepts `push` jobs; nothing here claims or sends (the engine is not started). */
const pushChannel: JobChannel = {
  name: "push",
  concurrency: 1,
  maxAttempts: 3,
  backoff: { baseMs: 1000, maxMs: 8000 },
  onExhausted: "dead-letter",
  send: () => Promise.reject(new Error("inspect test: nothing sends")),
};

function card(fn: string): Card {
  return normalizeCard({
    fn,
    n: { surname: fn, given: "", additional: "", prefix: "", suffix: "" },
    nickname: [],
    org: { name: "", units: [] },
    title: "",
    tel: [{ key: "", types: ["work"], uri: "tel:+44-20-0001" }],
    email: [],
    adr: [],
    url: [],
    impp: [],
    note: "",
    bday: "",
    categories: [],
  });
}

/** Every row of every table, in a fixed order: two dumps are equal iff nothing was written in between. */
async function dump(s: Store): Promise<Record<string, unknown[]>> {
  return s.read("t.dump", async (r) => {
    const tables = await r.all<{ name: string }>(
      "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name",
    );
    const out: Record<string, unknown[]> = {};
    for (const { name } of tables) {
      out[name] = await r.all(`SELECT * FROM "${name}" ORDER BY 1, 2`);
    }
    return out;
  });
}

describe("runtime/inspect + test/harness/inspect over schema 2000 (S11a)", function () {
  this.timeout(30_000);
  let dir: string;
  let store: Store;
  let uow: Uow;
  let now: number;
  const ids: Record<string, AccountId> = {};
  const id = (n: string): AccountId => {
    const v = ids[n];
    if (v === undefined) throw new Error(`no account seeded for ${n}`);
    return v;
  };
  let phoneStart: Seq;
  let phone: DeviceKey;
  let cardSeq: Seq;
  let requestSeq: Seq;
  let code: string;

  before(async () => {
    now = T0;
    dir = mkdtempSync(path.join(os.tmpdir(), "cardlink-inspect-"));
    store = new SqliteStore(path.join(dir, "store.sqlite"), { legacy: false, clock: () => now });
    await store.migrate([SCHEMA_2000]);
    const events = new EventBus();
    const cache = new CardRenderCache();
    const kinds = new Map<string, StreamKind>([
      ["card", cardKind(cache)],
      [requestKind.name, requestKind],
    ]);
    const paths = [inspect.BINDING_PATH];
    const accounts = accountsParts({ cacheSize: 100, cacheTtlMs: 60_000, events });
    const audience = audienceParts({ paths });
    uow = makeUow(
      store,
      {
        accounts: accounts.tx,
        stream: streamTx({ kind: (n) => kinds.get(n), paths }),
        jobs: jobsTx({ channel: (c) => (c === "push" ? pushChannel : undefined) }),
        audience: audience.tx,
      },
      events,
    );
    const read = makeReader(store, { accounts: accounts.read, audience: audience.read });
    const world: CardsWorld = {
      store,
      uow,
      read,
      events,
      kind: kinds.get("card") as StreamKind,
      cache,
      close: () => Promise.resolve(),
    };

    // alice shares with bob and carol; bob has a phone; dave exists and has nothing.
    await bind(world, jid("alice"), jid("bob"));
    await bind(world, jid("alice"), jid("carol"));
    for (const n of ["alice", "bob", "carol", "dave"]) {
      ids[n] = await uow("t.ensure", (u) => u.accounts.ensure(jid(n), { seen: true }));
    }
    phone = await uow("t.device", async (u) => {
      const d = await u.accounts.upsertDevice(
        id("bob"),
        { deviceId: "phone", platform: "ios", pushToken: "tok-bob", pushTopic: "app.bob" },
        20,
      );
      if (d === "over-limit") throw new Error("device over limit");
      // The device's cursor, as delivery creates it on the device's first declaration (§2.3.3).
      phoneStart = (await streamRepo(u.tx).ensureCursor(d.account, d.key, u.now)).pos;
      return d.key;
    });

    // alice's card: the real fan-out to bob and carol.
    now = T0 + 1000;
    const stored = await storeCard({ uow }, jid("alice"), card("Alice"));
    expect(stored.changed).to.equal(true);
    cardSeq = await store.read("t.seq", async (r) =>
      Number((await r.get<{ seq: number }>("SELECT seq FROM cards"))?.seq),
    );

    // A keep entry with a payload for bob only, about an entity.
    now = T0 + 2000;
    requestSeq = await uow("t.request", async (u) => {
      const payload = await u.queue.payload(requestKind.name, { from: jid("carol"), note: "hi" });
      await u.queue.append(requestKind.name, [id("bob")], { subject: "req-1", payload });
      await u.tx.run(
        `INSERT INTO exchange_requests (id, from_account, to_account, from_device, created_at, expires_at)
         VALUES ('req-1', :from, :to, 'tablet', :now, :exp)`,
        { from: id("carol"), to: id("bob"), now: u.now, exp: u.now + HOUR },
      );
      return u.seq();
    });

    // The shared cursor of bob acknowledges everything; his phone's cursor has not.
    await store.tx("t.ack", async (tx) => {
      const shared = await streamRepo(tx).cursor(id("bob"), 0);
      await streamRepo(tx).ack("t", [{ cursor: shared?.id as number, upto: requestSeq }], tx.now);
    });

    // Jobs: two for bob's phone (one failed once), one deferred for carol, one dead letter for bob.
    now = T0 + 3000;
    await uow("t.jobs", async (u) => {
      await u.queue.job("push", {
        kind: "alert",
        target: "tok-bob",
        ckey: "c1",
        body: { n: 1 },
        account: id("bob"),
        device: phone,
      });
      await u.queue.job("push", {
        kind: "background",
        target: "tok-bob",
        ckey: "c2",
        body: { n: 2 },
        account: id("bob"),
        device: phone,
      });
      await u.queue.job("push", {
        kind: "alert",
        target: "tok-carol",
        body: { n: 3 },
        account: id("carol"),
        notBefore: T0 + HOUR,
      });
    });
    await store.tx("t.retry-and-dead", async (tx) => {
      const repo = jobsRepo(tx);
      const [first] = await repo.claim("push", "t", { now: tx.now, until: tx.now + 1, alive: 0, n: 1 });
      if (!first) throw new Error("no job claimed");
      await repo.retry(first.id, "t", T0 + 3000, "503 Service Unavailable");
      await repo.deadLetter(
        { ...first, channel: "push", kind: "alert", target: "tok-old", body: { n: 0 }, attempts: 2 },
        "410 Unregistered",
        tx.now,
      );
    });

    // Tables whose writers come later (presence S7, exchange S10, push S8): plain rows.
    code = "CODE-1";
    await uow("t.rest", async (u) => {
      await u.tx.run(
        "INSERT INTO resources (full_jid, account_id, device, process, since) VALUES (:f, :a, :d, NULL, :s)",
        { f: `${jid("bob")}/phone`, a: id("bob"), d: phone, s: T0 + 10 },
      );
      await u.tx.run(
        "INSERT INTO resources (full_jid, account_id, device, process, since) VALUES (:f, :a, NULL, NULL, :s)",
        { f: `${jid("carol")}/web`, a: id("carol"), s: T0 + 20 },
      );
      await u.tx.run("INSERT INTO subscribers (account_id, since) VALUES (:a, :s)", {
        a: id("carol"),
        s: T0,
      });
      await u.tx.run(
        "INSERT INTO exchange_codes (code, owner, device_id, created_at, expires_at) VALUES (:c, :o, NULL, :n, :e)",
        { c: code, o: id("alice"), n: u.now, e: u.now + HOUR },
      );
      await u.tx.run("INSERT INTO blocks (owner, blocked, created_at) VALUES (:o, :b, :n)", {
        o: id("dave"),
        b: id("carol"),
        n: u.now,
      });
      await u.tx.run(
        "INSERT INTO push_nodes (node, device, secret, created_at) VALUES ('node-1', :d, 's3', :n)",
        {
          d: phone,
          n: u.now,
        },
      );
    });
    now = T0 + 5000;
  });

  after(async () => {
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  });

  describe("stream", () => {
    it("pending entries per account carry wire ids rendered with the subject's JID", async () => {
      const bob = await rt.pending(store, jid("bob"));
      expect(bob.map((e) => e.id)).to.deep.equal([
        `card:${jid("alice")}:${cardSeq}`,
        `exchange-request:req-1:${requestSeq}`,
      ]);
      const [c, q] = bob;
      expect(c?.internalSubject).to.equal(String(id("alice")));
      expect(c?.subjectAccount).to.equal(id("alice"));
      expect(c?.createdAt).to.equal(T0 + 1000);
      expect(q?.payload).to.deep.equal({ from: jid("carol"), note: "hi" });
      expect(q?.subjectAccount).to.equal(undefined);
      for (const e of bob)
        expect(parseUpdateId(e.id)).to.deep.equal({ kind: e.kind, subject: e.subject, seq: e.seq });
      expect((await rt.pending(store, jid("carol"))).map((e) => e.id)).to.deep.equal([
        `card:${jid("alice")}:${cardSeq}`,
      ]);
      expect(await rt.pending(store, jid("alice"))).to.deep.equal([]);
      expect(await rt.pending(store, jid("nobody"))).to.deep.equal([]);
      expect(await rt.pending(store, jid("bob"), { limit: 1 })).to.have.length(1);
    });

    it("counts per account and in total, and depth keyed by JID", async () => {
      expect(await inspect.pendingCount(store, jid("bob"))).to.equal(2);
      expect(await inspect.pendingCount({ store }, jid("carol"))).to.equal(1);
      expect(await inspect.pendingCount({ ctx: { store } }, jid("dave"))).to.equal(0);
      expect(await inspect.pendingCount(store, jid("nobody"))).to.equal(0);
      expect(await inspect.pendingCount(store)).to.equal(3);
      const depth = await rt.streamDepth(store);
      expect(depth.total).to.equal(3);
      expect([...depth.lanes].sort()).to.deep.equal([
        [jid("bob"), 2],
        [jid("carol"), 1],
      ]);
    });

    it("cursors and positions: the shared cursor acked, the phone's where it started", async () => {
      // The phone's cursor started before alice's card: it still holds both entries (they are pending).
      expect(phoneStart).to.be.below(cardSeq);
      const cs = await rt.cursors(store, jid("bob"));
      expect(cs.map((c) => [c.consumer, c.deviceId, c.pos, c.state])).to.deep.equal([
        [0, undefined, requestSeq, "active"],
        [phone, "phone", phoneStart, "active"],
      ]);
      const lane = await inspect.lane(store, jid("bob"));
      expect(lane?.jid).to.equal(jid("bob"));
      expect(lane?.account).to.equal(id("bob"));
      expect(lane?.pendingCount).to.equal(2);
      expect(lane?.floor).to.equal(cardSeq - 1);
      expect(lane?.pending.map((e) => e.seq)).to.deep.equal([cardSeq, requestSeq]);
      expect(lane?.cursors).to.deep.equal(cs);
      expect(await inspect.lane(store, jid("nobody"))).to.equal(undefined);
      // The old recipientStats keys: nothing retrying while no cursor failed.
      expect(await inspect.recipientStats(store, jid("bob"))).to.deep.equal({
        entries: 2,
        retrying: 0,
        maxAttempts: 0,
        oldestAt: T0 + 1000,
      });
      expect((await inspect.due(store, jid("bob"), 10)).map((e) => e.kind)).to.deep.equal([
        "card",
        "exchange-request",
      ]);
    });
  });

  describe("jobs", () => {
    it("per channel: count, due, deferred, retrying, attempts, oldest, dead letters", async () => {
      expect(await rt.jobStats(store)).to.deep.equal(
        new Map([
          [
            "push",
            { count: 3, due: 2, deferred: 1, retrying: 1, maxAttempts: 1, oldestAt: T0 + 3000, dead: 1 },
          ],
        ]),
      );
      expect(await inspect.jobCount(store, "push")).to.equal(3);
      expect(await inspect.jobCount(store, "webhook")).to.equal(0);
    });

    it("per account", async () => {
      const bob = await rt.jobStats(store, jid("bob"));
      expect(bob.get("push")).to.deep.include({ count: 2, due: 2, deferred: 0, dead: 1 });
      const carol = await rt.jobStats(store, jid("carol"));
      expect(carol.get("push")).to.deep.include({ count: 1, due: 0, deferred: 1, retrying: 0, dead: 0 });
      expect(await rt.jobStats(store, jid("dave"))).to.deep.equal(new Map());
      expect(await rt.jobStats(store, jid("nobody"))).to.deep.equal(new Map());
      expect(await inspect.jobCount(store, "push", jid("bob"))).to.equal(2);
    });

    it("listings by JID and device id; due; dead letters", async () => {
      const bob = await rt.jobs(store, "push", { jid: jid("bob") });
      expect(bob.map((j) => [j.jid, j.deviceId, j.ckey, j.body])).to.have.deep.members([
        [jid("bob"), "phone", "c1", { n: 1 }],
        [jid("bob"), "phone", "c2", { n: 2 }],
      ]);
      const retried = bob.find((j) => j.attempts === 1);
      expect(retried?.lastError).to.equal("503 Service Unavailable");
      expect(retried?.leaseOwner).to.equal(undefined);
      const all = await inspect.jobs(store, "push");
      expect(all.map((j) => j.target)).to.deep.equal(["tok-bob", "tok-bob", "tok-carol"]);
      expect(all[2]).to.deep.include({ jid: jid("carol"), nextAt: T0 + HOUR, rev: 1 });
      expect(all[2]?.deviceId).to.equal(undefined);
      expect((await inspect.jobsDue(store, "push", T0 + 5000, 10)).map((j) => j.target)).to.deep.equal([
        "tok-bob",
        "tok-bob",
      ]);
      expect(await inspect.jobsDue(store, "push", T0 + 2 * HOUR, 10)).to.have.length(3);
      const dead = await rt.deadLetters(store, "push");
      expect(dead.map((d) => [d.jid, d.target, d.attempts, d.lastError, d.body])).to.deep.equal([
        [jid("bob"), "tok-old", 3, "410 Unregistered", { n: 0 }],
      ]);
      expect(await rt.deadLetters(store, "push", { jid: jid("carol") })).to.deep.equal([]);
      expect(await rt.deadLetters(store, "push", { jid: jid("bob") })).to.deep.equal(dead);
    });
  });

  describe("presence, accounts and feature tables (the harness)", () => {
    it("resources in the old {bare, full} shape and order; subscribers", async () => {
      const rs = await inspect.resources({ ctx: { store } });
      expect(rs.map((r) => ({ bare: r.bare, full: r.full }))).to.deep.equal([
        { bare: jid("bob"), full: `${jid("bob")}/phone` },
        { bare: jid("carol"), full: `${jid("carol")}/web` },
      ]);
      expect(rs[0]?.deviceId).to.equal("phone");
      expect(await inspect.isSubscriber(store, jid("carol"))).to.equal(true);
      expect(await inspect.isSubscriber(store, jid("bob"))).to.equal(false);
      expect(await inspect.isSubscriber(store, jid("nobody"))).to.equal(false);
    });

    it("card, holders, binding, request, code, block, device, push node", async () => {
      const c = await inspect.card(store, jid("alice"));
      expect(c?.owner).to.equal(jid("alice"));
      expect(c?.card.fn).to.equal("Alice");
      expect(c?.seq).to.equal(cardSeq);
      expect(await inspect.card(store, jid("bob"))).to.equal(undefined);
      expect(await inspect.holders(store, jid("alice"))).to.deep.equal([jid("bob"), jid("carol")]);
      expect(await inspect.holders(store, jid("bob"))).to.deep.equal([jid("alice")]);
      expect(await inspect.holders(store, jid("dave"))).to.deep.equal([]);
      const b = await inspect.binding(store, jid("bob"), jid("alice"));
      expect([b?.a, b?.b].sort()).to.deep.equal([jid("alice"), jid("bob")]);
      expect(await inspect.binding(store, jid("alice"), jid("bob"))).to.deep.equal(b);
      expect(await inspect.binding(store, jid("bob"), jid("carol"))).to.equal(undefined);
      expect(await inspect.request(store, "req-1")).to.deep.equal({
        id: "req-1",
        from: jid("carol"),
        to: jid("bob"),
        fromDevice: "tablet",
        createdAt: T0 + 2000,
        expiresAt: T0 + 2000 + HOUR,
      });
      expect(await inspect.request(store, "req-2")).to.equal(undefined);
      expect(await inspect.code(store, code)).to.deep.include({ code, owner: jid("alice") });
      expect(await inspect.code(store, "nope")).to.equal(undefined);
      expect(await inspect.isBlocked(store, jid("dave"), jid("carol"))).to.equal(true);
      expect(await inspect.isBlocked(store, jid("carol"), jid("dave"))).to.equal(false);
      expect((await inspect.device(store, jid("bob"), "phone"))?.tokenState).to.equal("ok");
      expect(await inspect.pushNode(store, "node-1")).to.deep.include({
        node: "node-1",
        owner: jid("bob"),
        deviceId: "phone",
        secret: "s3",
      });
      expect(await inspect.pushNode(store, "node-2")).to.equal(undefined);
      expect((await inspect.account(store, jid("dave")))?.jid).to.equal(jid("dave"));
      expect((await inspect.accountCounts(store)).active).to.equal(4);
    });
  });

  describe("writes", () => {
    it("no view writes: every table is byte-for-byte the same after all of them ran", async () => {
      const before = await dump(store);
      const h = { ctx: { store } };
      for (const who of ["alice", "bob", "carol", "dave", "nobody"].map(jid)) {
        await inspect.pendingCount(h, who);
        await inspect.pending(h, who);
        await inspect.cursors(h, who);
        await inspect.lane(h, who);
        await inspect.recipientStats(h, who);
        await inspect.due(h, who, 10);
        await inspect.jobStats(h, who);
        await inspect.jobs(h, "push", { jid: who });
        await inspect.deadLetters(h, "push", { jid: who });
        await inspect.isSubscriber(h, who);
        await inspect.card(h, who);
        await inspect.holders(h, who);
        await inspect.binding(h, who, jid("alice"));
        await inspect.isBlocked(h, who, jid("carol"));
        await inspect.account(h, who);
        await inspect.devices(h, who);
        await inspect.device(h, who, "phone");
      }
      await inspect.pendingCount(h);
      await inspect.streamDepth(h);
      await inspect.jobStats(h);
      await inspect.jobs(h, "push");
      await inspect.jobsDue(h, "push", T0 + 2 * HOUR, 10);
      await inspect.jobCount(h, "push");
      await inspect.deadLetters(h, "push");
      await inspect.resources(h);
      await inspect.request(h, "req-1");
      await inspect.code(h, code);
      await inspect.pushNode(h, "node-1");
      await inspect.accountCounts(h);
      const after = await dump(store);
      expect(Object.keys(after)).to.include.members(["stream_entries", "stream_cursors", "jobs", "counters"]);
      expect(after).to.deep.equal(before);
      // And a write is seen by the same dump: the comparison can fail.
      await store.tx("t.touch", (tx) =>
        tx.run("UPDATE accounts SET seen_at = :n WHERE id = :id", { n: 1, id: id("dave") }),
      );
      expect(await dump(store)).to.not.deep.equal(before);
    });
    it("an id renders the subject's current JID, read from the rows (no cache): a JID change shows at once", async () => {
      // Issue 12's move is not built: its identifier change, as plain SQL (the re-sequencing is its business).
      await store.tx("t.move", (tx) =>
        tx.run("UPDATE identifiers SET value = :to WHERE kind = 'jid' AND value = :from", {
          from: jid("alice"),
          to: jid("alice2"),
        }),
      );
      expect((await inspect.pending(store, jid("bob")))[0]?.id).to.equal(`card:${jid("alice2")}:${cardSeq}`);
      expect(await inspect.holders(store, jid("alice2"))).to.deep.equal([jid("bob"), jid("carol")]);
      expect(await inspect.card(store, jid("alice"))).to.equal(undefined);
    });
  });
});
