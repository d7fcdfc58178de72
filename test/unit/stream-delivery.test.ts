/**
 * Stream delivery (component/runtime/queue/stream-delivery.ts, docs/REDESIGN.md §4.2) over a real SqliteStore with
 * the 2000 schema, real accounts (ensure writes the shared cursor) and the real stream half of the unit of work,
 * against an in-process transport of our own: it records every IQ (id, to, payload) and leaves it open until the
 * test answers it (result, error, timeout), as a client on the far side of Prosody would. The clock is pinned; no
 * assertion depends on wall-clock time.
 */
import { expect } from "chai";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { pino } from "pino";
import { accountsParts } from "../../component/runtime/accounts/tx.js";
import { StanzaBudget } from "../../component/runtime/budget.js";
import { EventBus } from "../../component/runtime/events.js";
import type { Json, StreamKind } from "../../component/runtime/queue/api.js";
import { Engine } from "../../component/runtime/queue/engine.js";
import { jobsRepo } from "../../component/runtime/queue/jobs-repo.js";
import { KindRegistry } from "../../component/runtime/queue/registry.js";
import {
  StreamDelivery,
  type DeliveryPresence,
  type SendOutcome,
  type StreamTransport,
} from "../../component/runtime/queue/stream-delivery.js";
import { streamRepo } from "../../component/runtime/queue/stream-repo.js";
import { streamTx } from "../../component/runtime/queue/stream-tx.js";
import { makeReader, makeUow, type Uow } from "../../component/runtime/uow.js";
import { SCHEMA_2000 } from "../../storage/sqlite/schema-2000.js";
import { SqliteStore } from "../../storage/sqlite/store.js";
import type { AccountId } from "../../storage/store.js";
import { xml, type Element } from "../../stanzas/xml.js";

const T0 = 1_700_000_000_000;
const unused = (): never => {
  throw new Error("part not used here");
};

/** One IQ as the far side sees it, open until answered. */
interface Sent {
  id: string;
  to: string;
  payload: Element;
  answer(o: SendOutcome): void;
  answered: boolean;
}

/** The far side of the link: every IQ waits for the test's answer. */
class InProcessTransport implements StreamTransport {
  readonly sent: Sent[] = [];
  send(iq: { id: string; to: string; payload: Element; timeoutMs: number }): Promise<SendOutcome> {
    return new Promise((resolve) => {
      const s: Sent = {
        ...iq,
        answered: false,
        answer: (o) => {
          if (s.answered) throw new Error(`IQ ${iq.id} to ${iq.to} answered twice`);
          s.answered = true;
          resolve(o);
        },
      };
      this.sent.push(s);
    });
  }
  open(): Sent[] {
    return this.sent.filter((s) => !s.answered);
  }
}

/** Available resources per (lane, consumer), as runtime/presence.ts will keep them. */
class Presence implements DeliveryPresence {
  readonly map = new Map<AccountId, Map<number, Set<string>>>();
  add(lane: AccountId, consumer: number, full: string): void {
    let byConsumer = this.map.get(lane);
    if (!byConsumer) this.map.set(lane, (byConsumer = new Map()));
    let set = byConsumer.get(consumer);
    if (!set) byConsumer.set(consumer, (set = new Set()));
    set.add(full);
  }
  consumers(lane: AccountId): readonly number[] {
    return [...(this.map.get(lane)?.entries() ?? [])].filter(([, s]) => s.size > 0).map(([c]) => c);
  }
  resources(lane: AccountId, consumer: number): readonly string[] {
    return [...(this.map.get(lane)?.get(consumer) ?? [])];
  }
  gone(lane: AccountId, full: string): void {
    for (const s of this.map.get(lane)?.values() ?? []) s.delete(full);
  }
}

/** `note`: an entity kind whose content is its payload's text; `{moot}` renders null, `{boom}` throws. */
const NOTE: StreamKind = {
  name: "note",
  coalesce: "keep",
  subject: "entity",
  wake: false,
  async render(_r, e) {
    const p = e.payload as { text?: string; moot?: boolean; boom?: boolean };
    if (p.boom) throw new Error("renderer bug");
    if (p.moot) return null;
    return xml("note", { xmlns: "urn:test:0" }, p.text ?? "");
  },
};
/** `hello`: about an account, so its wire subject is that account's current JID. */
const HELLO: StreamKind = {
  name: "hello",
  coalesce: "replace",
  subject: "account",
  wake: false,
  async render() {
    return xml("hello", { xmlns: "urn:test:0" });
  },
};

/** Lets the scheduler's promise chains run until `cond` holds (no timers: a bounded number of turns). */
async function until(cond: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 2000; i++) {
    if (cond()) return;
    await new Promise((r) => setImmediate(r));
  }
  throw new Error(`never happened: ${what}`);
}

/** Like until, for what a timer of the code under test does (the engine's sweep): polls, bounded, no assertion on time. */
async function eventually(cond: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 1000; i++) {
    if (cond()) return;
    await new Promise((r) => setTimeout(r, 10));
  }
  throw new Error(`never happened: ${what}`);
}

/** Like eventually, for a condition read from the store. */
async function settled(cond: () => Promise<boolean>, what: string): Promise<void> {
  for (let i = 0; i < 1000; i++) {
    if (await cond()) return;
    await new Promise((r) => setTimeout(r, 10));
  }
  throw new Error(`never happened: ${what}`);
}

describe("stream delivery (docs/REDESIGN.md §4.2) with an in-process transport", function () {
  this.timeout(30_000);
  let dir: string;
  let store: SqliteStore;
  let now: number;
  let uow: Uow;
  let transport: InProcessTransport;
  let presence: Presence;
  let delivery: StreamDelivery;
  let alice: AccountId;
  let bob: AccountId;
  let noteN: number;
  const logged: string[] = [];

  let events: EventBus;
  const silent = pino({ level: "silent" });

  /** One process's unit of work over `st` (the second process of a test opens its own store on the file). */
  const parts = (st: SqliteStore) => {
    const ev = new EventBus();
    const accounts = accountsParts({ cacheSize: 100, cacheTtlMs: 60_000, events: ev, clock: () => now });
    const registry = new KindRegistry();
    registry.register(NOTE);
    registry.register(HELLO);
    const u = makeUow(
      st,
      {
        accounts: accounts.tx,
        audience: unused,
        jobs: unused,
        stream: streamTx({ kind: (n) => registry.get(n), paths: [] }),
      },
      ev,
    );
    return { events: ev, uow: u, accounts, registry };
  };

  const make = (
    o: {
      limitBytes?: number;
      persistInflight?: boolean;
      store?: SqliteStore;
      transport?: InProcessTransport;
      me?: string;
      silentMs?: number;
      /** S15's batching knobs (absent: 0, each claim and ack its own unit of work, no window). */
      coalesceWindowMs?: number;
      ackBatchMs?: number;
      batchSize?: number;
      /** Records the name of every unit of work the delivery runs. */
      uowNames?: string[];
      /** Fails the delivery's next unit of work of this name once (before it writes anything). */
      failOnce?: { name: string };
    } = {},
  ): StreamDelivery => {
    const p = parts(o.store ?? store);
    if (!o.store) ({ events, uow } = p);
    const failOnce = o.failOnce;
    const spied: Uow = (name, fn) => {
      o.uowNames?.push(name);
      if (failOnce?.name === name) {
        failOnce.name = "";
        return Promise.reject(new Error(`${name} failed (test)`));
      }
      return p.uow(name, fn);
    };
    const { accounts, registry } = p;
    const log = pino(
      { level: "debug" },
      {
        write: (line: string) => {
          logged.push((JSON.parse(line) as { event?: string }).event ?? "");
        },
      },
    );
    return new StreamDelivery({
      uow: spied,
      read: makeReader(o.store ?? store, { accounts: accounts.read, audience: unused }),
      kind: (n) => registry.get(n),
      transport: o.transport ?? transport,
      presence,
      budget: new StanzaBudget(o.limitBytes ?? 256 * 1024),
      log,
      config: {
        ackTimeoutMs: 15_000,
        retryBaseMs: 60_000,
        retryMaxMs: 600_000,
        batchSize: o.batchSize ?? 20,
        ...(o.coalesceWindowMs !== undefined ? { coalesceWindowMs: o.coalesceWindowMs } : {}),
        ...(o.ackBatchMs !== undefined ? { ackBatchMs: o.ackBatchMs } : {}),
      },
      clock: () => now,
      leaseMs: 30_000,
      me: o.me ?? "test:1:aaaa",
      random: () => 1, // backoff = its ceiling
      ...(o.persistInflight ? { persistInflight: true } : {}),
      ...(o.silentMs !== undefined ? { silentMs: o.silentMs } : {}),
    });
  };

  /** One unit of work appending notes (one seq) to `lane`; returns that seq. */
  const notes = async (lane: AccountId, ...bodies: Json[]): Promise<number> =>
    uow("notes", async (u) => {
      for (const body of bodies) {
        const payload = await u.queue.payload("note", body);
        await u.queue.append("note", [lane], { subject: `n${++noteN}`, payload });
      }
      return u.seq();
    });
  const cursor = () =>
    store.read("cursor", (r) =>
      r.get<{ pos: number; attempts: number; next_at: number; lease_owner: string | null }>(
        "SELECT pos, attempts, next_at, lease_owner FROM stream_cursors WHERE account_id = :a AND consumer = 0",
        { a: alice },
      ),
    );
  const entries = () =>
    store.read("entries", (r) =>
      r.all<{ subject: string }>("SELECT subject FROM stream_entries WHERE account_id = :a ORDER BY id", {
        a: alice,
      }),
    );
  /** The update ids an IQ carried. */
  const ids = (s: Sent | undefined): string[] =>
    (s?.payload.getChildren("update") ?? []).map((u) => String(u.attrs.id));

  beforeEach(async () => {
    dir = mkdtempSync(path.join(tmpdir(), "cardlink-stream-delivery-"));
    now = T0;
    noteN = 0;
    logged.length = 0;
    store = new SqliteStore(path.join(dir, "cardlink.sqlite"), { legacy: false, clock: () => now });
    await store.migrate([SCHEMA_2000]);
    transport = new InProcessTransport();
    presence = new Presence();
    delivery = make();
    [alice, bob] = await uow("accounts", async (u) => [
      await u.accounts.ensure("alice@example.test", { seen: true }),
      await u.accounts.ensure("bob@example.test", { seen: true }),
    ]);
  });
  afterEach(async () => {
    for (const s of transport.open()) s.answer({ type: "timeout" });
    await delivery.stop();
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it("single flight per consumer: entries written during a flight go together in the next IQ", async () => {
    presence.add(alice, 0, "alice@example.test/phone");
    const s1 = await notes(alice, { text: "one" });
    delivery.kickLanes([alice]);
    await until(() => transport.sent.length === 1, "first IQ");
    const s2 = await notes(alice, { text: "two" });
    const s3 = await notes(alice, { text: "three" });
    delivery.kickLanes([alice]);
    delivery.kickLanes([alice]);
    // Let the kicks run: still one IQ in flight, nothing else sent.
    for (let i = 0; i < 50; i++) await new Promise((r) => setImmediate(r));
    expect(transport.sent).to.have.length(1);
    expect(ids(transport.sent[0])).to.deep.equal([`note:n1:${s1}`]);
    transport.sent[0]?.answer({ type: "result" });
    await until(() => transport.sent.length === 2, "second IQ");
    expect(ids(transport.sent[1])).to.deep.equal([`note:n2:${s2}`, `note:n3:${s3}`]);
    expect((await cursor())?.pos).to.equal(s1);
    transport.sent[1]?.answer({ type: "result" });
    await delivery.idle();
    expect(transport.sent).to.have.length(2);
    expect(await cursor()).to.deep.include({ pos: s3, attempts: 0, lease_owner: null });
    expect(await entries()).to.deep.equal([]); // the shared cursor is the only one: collected at the ack
  });

  it("settled(lane): resolves once the lane's round has written its ack, or at the bound while an IQ waits", async () => {
    presence.add(alice, 0, "alice@example.test/phone");
    const s1 = await notes(alice, { text: "one" });
    delivery.kickLanes([alice]);
    await until(() => transport.sent.length === 1, "IQ");
    // Nothing answers: settled gives up at its bound, and the page is still unacknowledged.
    await delivery.settled(alice, 50);
    expect((await cursor())?.pos).to.not.equal(s1);
    // The result arrives; settled resolves only after the round wrote the ack (the presence path relies on it).
    transport.sent[0]?.answer({ type: "result" });
    await delivery.settled(alice, 10_000);
    expect((await cursor())?.pos).to.equal(s1);
    // A lane with no round running is settled at once.
    await delivery.settled(alice, 10_000);
    await delivery.settled(bob, 10_000);
  });

  it("a resource that comes online while a batch waits gets the same IQ at once; its result acks it", async () => {
    presence.add(alice, 0, "alice@example.test/old");
    const s1 = await notes(alice, { text: "one" });
    delivery.kickLanes([alice]);
    await until(() => transport.sent.length === 1, "IQ to the old resource");
    presence.add(alice, 0, "alice@example.test/new");
    delivery.available(alice, 0, "alice@example.test/new");
    await until(() => transport.sent.length === 2, "re-offer");
    const [old, fresh] = transport.sent;
    expect(fresh?.to).to.equal("alice@example.test/new");
    expect(fresh?.id).to.equal(old?.id);
    expect(fresh?.payload.toString()).to.equal(old?.payload.toString());
    fresh?.answer({ type: "result" });
    await delivery.idle();
    expect((await cursor())?.pos).to.equal(s1);
    // The stale resource's timeout comes after the ack: nothing is retried.
    old?.answer({ type: "timeout" });
    await delivery.idle();
    expect(await cursor()).to.deep.include({ pos: s1, attempts: 0, next_at: 0 });
    expect(delivery.waitingRetry(alice, 0)).to.equal(false);
    expect(transport.sent).to.have.length(2);
  });

  it("shared cursor: the batch goes to every resource, the first result acks it for all", async () => {
    for (const r of ["a", "b", "c"]) presence.add(alice, 0, `alice@example.test/${r}`);
    const s1 = await notes(alice, { text: "one" });
    delivery.kickLanes([alice]);
    await until(() => transport.sent.length === 3, "IQ to every resource");
    const to = (r: string): Sent | undefined =>
      transport.sent.find((s) => s.to === `alice@example.test/${r}`);
    // One resource's timeout does not fail the batch while others may still answer.
    to("a")?.answer({ type: "timeout" });
    for (let i = 0; i < 50; i++) await new Promise((r) => setImmediate(r));
    expect(await cursor()).to.deep.include({ pos: 0, attempts: 0 });
    to("b")?.answer({ type: "result" });
    await delivery.idle();
    expect(await cursor()).to.deep.include({ pos: s1, attempts: 0, lease_owner: null });
    // A later failure of the last one changes nothing: the batch was acked.
    to("c")?.answer({ type: "error", condition: "internal-server-error" });
    await delivery.idle();
    expect(await cursor()).to.deep.include({ pos: s1, attempts: 0, next_at: 0 });
    expect(transport.sent).to.have.length(3);
    expect(delivery.waitingRetry(alice, 0)).to.equal(false);
  });

  it("cuts a lane by the stanza budget into several IQs; pos moves only past whole seqs", async () => {
    await delivery.stop();
    delivery = make({ limitBytes: 40 * 1024 }); // list budget 16 KiB: two 6 KB notes per IQ
    presence.add(alice, 0, "alice@example.test/phone");
    const big = (c: string): Json => ({ text: c.repeat(6000) });
    const s1 = await notes(alice, big("a"), big("b"), big("c"));
    const s2 = await notes(alice, big("d"), big("e"));
    delivery.kickLanes([alice]);
    const pages: string[][] = [];
    const positions: number[] = [];
    for (let i = 0; i < 3; i++) {
      await until(() => transport.sent.length === i + 1, `IQ ${i + 1}`);
      const s = transport.sent[i];
      expect(Buffer.byteLength(String(s?.payload))).to.be.at.most(24 * 1024);
      pages.push(ids(s));
      positions.push((await cursor())?.pos ?? -1);
      s?.answer({ type: "result" });
    }
    await delivery.idle();
    positions.push((await cursor())?.pos ?? -1);
    expect(pages).to.deep.equal([
      [`note:n1:${s1}`, `note:n2:${s1}`],
      [`note:n3:${s1}`, `note:n4:${s2}`],
      [`note:n5:${s2}`],
    ]);
    // After IQ 1 seq s1 is not whole (n3 is in IQ 2): pos stays; after IQ 2 it passes s1; after IQ 3, s2.
    expect(positions).to.deep.equal([0, 0, s1, s2]);
    expect(await entries()).to.deep.equal([]);
  });

  it("a renderer that throws keeps the cursor: no IQ, logged, retried with backoff", async () => {
    presence.add(alice, 0, "alice@example.test/phone");
    await notes(alice, { text: "fine" });
    await notes(alice, { boom: true });
    delivery.kickLanes([alice]);
    await delivery.idle();
    expect(transport.sent).to.have.length(0);
    expect(logged).to.include("stream-render-failed");
    expect(await cursor()).to.deep.equal({ pos: 0, attempts: 1, next_at: T0 + 60_000, lease_owner: null });
    expect((await entries()).map((e) => e.subject)).to.deep.equal(["n1", "n2"]);
    expect(delivery.waitingRetry(alice, 0)).to.equal(true);
  });

  it("retries after an error or timeout with backoff, with the same update ids; a result resets attempts", async () => {
    presence.add(alice, 0, "alice@example.test/phone");
    const s1 = await notes(alice, { text: "one" });
    delivery.kickLanes([alice]);
    await until(() => transport.sent.length === 1, "first IQ");
    transport.sent[0]?.answer({ type: "timeout" });
    await delivery.idle();
    expect(await cursor()).to.deep.equal({ pos: 0, attempts: 1, next_at: T0 + 60_000, lease_owner: null });
    // A kick before next_at (a new append's hint) does not send: the cursor waits for its retry.
    delivery.kickLanes([alice]);
    await delivery.idle();
    expect(transport.sent).to.have.length(1);
    now = T0 + 60_000;
    delivery.kickLanes([alice]);
    await until(() => transport.sent.length === 2, "retry IQ");
    expect(ids(transport.sent[1])).to.deep.equal(ids(transport.sent[0]));
    expect(ids(transport.sent[1])).to.deep.equal([`note:n1:${s1}`]);
    transport.sent[1]?.answer({ type: "result" });
    await delivery.idle();
    expect(await cursor()).to.deep.include({ pos: s1, attempts: 0, next_at: 0 });
  });

  it("moot-only batches pass without an IQ; moot entries among others pass with the batch's ack", async () => {
    presence.add(alice, 0, "alice@example.test/phone");
    const s1 = await notes(alice, { moot: true }, { moot: true });
    delivery.kickLanes([alice]);
    await delivery.idle();
    expect(transport.sent).to.have.length(0);
    expect(await cursor()).to.deep.include({ pos: s1, lease_owner: null });
    expect(await entries()).to.deep.equal([]);
    const s2 = await notes(alice, { text: "x" }, { moot: true });
    delivery.kickLanes([alice]);
    await until(() => transport.sent.length === 1, "IQ");
    expect(ids(transport.sent[0])).to.deep.equal([`note:n3:${s2}`]);
    transport.sent[0]?.answer({ type: "result" });
    await delivery.idle();
    expect(await cursor()).to.deep.include({ pos: s2 });
    expect(await entries()).to.deep.equal([]);
  });

  it("an account kind's update id carries the subject's current JID; every resource gone releases the cursor", async () => {
    presence.add(alice, 0, "alice@example.test/phone");
    const s1 = await uow("hello", (u) =>
      u.queue.append("hello", [alice], { subject: String(bob), subjectAccount: bob }).then(() => u.seq()),
    );
    delivery.kickLanes([alice]);
    await until(() => transport.sent.length === 1, "IQ");
    expect(ids(transport.sent[0])).to.deep.equal([`hello:bob@example.test:${s1}`]);
    transport.sent[0]?.answer({ type: "error", condition: "service-unavailable" });
    await delivery.idle();
    expect(presence.resources(alice, 0)).to.deep.equal([]);
    // Not an attempt: nobody was there. The entry waits for a resource (or push-scan).
    expect(await cursor()).to.deep.equal({ pos: 0, attempts: 0, next_at: 0, lease_owner: null });
    presence.add(alice, 0, "alice@example.test/laptop");
    delivery.available(alice, 0, "alice@example.test/laptop");
    await until(() => transport.sent.length === 2, "IQ to the new resource");
    transport.sent[1]?.answer({ type: "result" });
    await delivery.idle();
    expect((await cursor())?.pos).to.equal(s1);
  });

  // ---- per-device delivery (issue 8 S12, PROTOCOL §10.7, REDESIGN §2.3.3–2.3.4)

  /** Registers `ids` as alice's devices and makes each one's cursor (as a first declaration does). */
  const aliceDevices = (...names: string[]): Promise<number[]> =>
    uow("devices", async (u) => {
      const keys: number[] = [];
      for (const deviceId of names) {
        const d = await u.accounts.upsertDevice(alice, { deviceId, platform: "other" }, 20);
        if (d === "over-limit") throw new Error("over limit");
        await streamRepo(u.tx).ensureCursor(alice, d.key, u.now);
        keys.push(d.key);
      }
      return keys;
    });
  const cursorOf = (consumer: number) =>
    store.read("cursor-of", (r) =>
      r.get<{ pos: number; state: string; attempts: number }>(
        "SELECT pos, state, attempts FROM stream_cursors WHERE account_id = :a AND consumer = :c",
        { a: alice, c: consumer },
      ),
    );

  it("per device: each declared device gets its own IQ and acks for itself; an entry goes once every active cursor passed it", async () => {
    const [p, t] = (await aliceDevices("alice-p", "alice-t")) as [number, number];
    presence.add(alice, p, "alice@example.test/p");
    presence.add(alice, t, "alice@example.test/t");
    presence.add(alice, 0, "alice@example.test/d");
    const s1 = await notes(alice, { text: "one" });
    delivery.kickLanes([alice]);
    await until(() => transport.sent.length === 3, "one IQ per consumer");
    const to = (r: string): Sent | undefined =>
      transport.sent.find((x) => x.to === `alice@example.test/${r}`);
    // Three IQs (one per consumer, distinct IQ ids), each carrying the same update.
    expect(new Set(transport.sent.map((x) => x.id)).size).to.equal(3);
    for (const r of ["p", "t", "d"]) expect(ids(to(r))).to.deep.equal([`note:n1:${s1}`]);
    // p's ack moves p only; the shared consumer's moves the shared cursor only; t still holds the entry.
    to("p")?.answer({ type: "result" });
    await settled(async () => (await cursorOf(p))?.pos === s1, "p acked");
    expect(await cursorOf(t)).to.deep.include({ pos: 0 });
    expect(await cursor()).to.deep.include({ pos: 0 });
    to("d")?.answer({ type: "result" });
    await settled(async () => (await cursor())?.pos === s1, "shared acked");
    expect(await cursorOf(t)).to.deep.include({ pos: 0 });
    expect((await entries()).map((e) => e.subject)).to.deep.equal(["n1"]);
    to("t")?.answer({ type: "result" });
    await delivery.idle();
    expect(await cursorOf(p)).to.deep.include({ pos: s1 });
    expect(await cursorOf(t)).to.deep.include({ pos: s1 });
    expect(await cursor()).to.deep.include({ pos: s1 });
    expect(await entries()).to.deep.equal([]);

    // t goes offline; the others ack the next entry, which stays for t; t comes back and gets exactly it.
    presence.gone(alice, "alice@example.test/t");
    const s2 = await notes(alice, { text: "two" });
    delivery.kickLanes([alice]);
    await until(() => transport.sent.length === 5, "IQs to p and d");
    for (const x of transport.open()) x.answer({ type: "result" });
    await delivery.idle();
    expect((await entries()).map((e) => e.subject)).to.deep.equal(["n2"]);
    expect(await cursorOf(t)).to.deep.include({ pos: s1 });
    presence.add(alice, t, "alice@example.test/t2");
    delivery.available(alice, t, "alice@example.test/t2");
    await until(() => transport.sent.length === 6, "IQ to t's new resource");
    const back = transport.sent[5] as Sent;
    expect(back.to).to.equal("alice@example.test/t2");
    expect(ids(back)).to.deep.equal([`note:n2:${s2}`]);
    back.answer({ type: "result" });
    await delivery.idle();
    expect(await entries()).to.deep.equal([]);
    expect(transport.sent).to.have.length(6);
  });

  it("a compact consumer (PROTOCOL §10.8): rendered with compact set, cut at compactBatchSize; the others as before", async () => {
    const [p] = (await aliceDevices("alice-p")) as [number];
    presence.add(alice, p, "alice@example.test/p");
    presence.add(alice, 0, "alice@example.test/d");
    // Which form each render was asked for, per consumer (the kind sees only the flag).
    const forms: boolean[] = [];
    const registry = new KindRegistry();
    registry.register({
      ...NOTE,
      render: (r, e) => {
        forms.push(r.compact === true);
        return NOTE.render(r, e);
      },
    });
    const own = parts(store);
    const d = new StreamDelivery({
      uow: own.uow,
      read: makeReader(store, { accounts: own.accounts.read, audience: unused }),
      kind: (n) => registry.get(n),
      transport,
      presence: {
        consumers: (l) => presence.consumers(l),
        resources: (l, c) => presence.resources(l, c),
        gone: (l, f) => presence.gone(l, f),
        compact: (l, c) => l === alice && c === p,
      },
      budget: new StanzaBudget(256 * 1024),
      log: silent,
      config: {
        ackTimeoutMs: 15_000,
        retryBaseMs: 60_000,
        retryMaxMs: 600_000,
        batchSize: 2,
        compactBatchSize: 3,
      },
      clock: () => now,
      leaseMs: 30_000,
      me: "test:1:aaaa",
      random: () => 1,
    });
    for (const text of ["1", "2", "3", "4", "5"]) await notes(alice, { text });
    d.kickLanes([alice]);
    const to = (r: string): Sent[] => transport.sent.filter((x) => x.to === `alice@example.test/${r}`);
    const sizes = (r: string): number[] => to(r).map((x) => ids(x).length);
    // Every IQ answered as it comes, until both consumers' lanes are through (5 IQs in all, see below).
    let answered = 0;
    while (answered < 5) {
      await until(() => transport.open().length > 0, `IQ ${answered + 1}`);
      for (const x of transport.open()) {
        x.answer({ type: "result" });
        answered++;
      }
    }
    await d.idle();
    expect(sizes("p"), "the compact device: 3 + 2").to.deep.equal([3, 2]);
    expect(sizes("d"), "the shared consumer: 2 + 2 + 1").to.deep.equal([2, 2, 1]);
    expect(forms.filter((f) => f)).to.have.length(5);
    expect(forms.filter((f) => !f)).to.have.length(5);
    expect(await entries()).to.deep.equal([]);
    await d.stop();
  });

  it("a dormant device below the floor is sent one resync update first, again if lost; its ack reactivates it at the floor", async () => {
    const [t] = (await aliceDevices("alice-t")) as [number];
    presence.add(alice, 0, "alice@example.test/d");
    await notes(alice, { text: "missed" });
    delivery.kickLanes([alice]);
    await until(() => transport.sent.length === 1, "shared IQ");
    transport.sent[0]?.answer({ type: "result" });
    await delivery.idle();
    presence.gone(alice, "alice@example.test/d");
    // 31 days later t has not acked: the engine's sweep makes it dormant and what only it held is collected.
    const engine = new Engine({
      store,
      uow,
      events,
      log: silent,
      config: {
        leaseMs: 30_000,
        heartbeatMs: 5_000,
        exclusive: true,
        observerPollMs: 60_000,
        pollMs: 60_000,
        deadLetterDays: 30,
      },
      processId: "test:1:aaaa",
      clock: () => now,
      dormancy: { deviceIdleMs: 30 * 86_400_000, sharedIdleMs: 2 * 86_400_000 },
    });
    now += 31 * 86_400_000;
    // Only t: the shared cursor is idle too, but a shared cursor goes dormant only beside an active device
    // cursor, and the sweep marks devices first.
    expect(await engine.sweepDormant()).to.equal(1);
    expect(await cursorOf(t)).to.deep.include({ state: "dormant", pos: 0 });
    expect(await entries()).to.deep.equal([]);
    const s2 = await notes(alice, { text: "after" });
    const floor = await store.read("floor", (r) => streamRepo(r).floor(alice));
    expect(floor).to.be.greaterThan(0);
    presence.add(alice, t, "alice@example.test/t");
    delivery.available(alice, t, "alice@example.test/t");
    await until(() => transport.sent.length === 2, "resync IQ");
    const first = transport.sent[1] as Sent;
    expect(first.payload.toString()).to.equal(
      `<updates xmlns="urn:cardlink:0"><update id="resync:alice-t:${floor}" kind="resync" seq="${floor}">` +
        '<resync xmlns="urn:cardlink:0" reason="idle"/></update></updates>',
    );
    // Lost: the cursor stays dormant (nothing skipped) and waits for its retry; a new resource gets it again.
    first.answer({ type: "timeout" });
    await delivery.idle();
    expect(await cursorOf(t)).to.deep.include({ state: "dormant", pos: 0, attempts: 1 });
    delivery.available(alice, t, "alice@example.test/t");
    await until(() => transport.sent.length === 3, "resync again");
    expect(transport.sent[2]?.payload.toString()).to.equal(first.payload.toString());
    transport.sent[2]?.answer({ type: "result" });
    await until(() => transport.sent.length === 4, "the entries after the floor");
    expect(await cursorOf(t)).to.deep.include({ state: "active", pos: floor });
    expect(ids(transport.sent[3])).to.deep.equal([`note:n2:${s2}`]);
    transport.sent[3]?.answer({ type: "result" });
    await delivery.idle();
    expect(await cursorOf(t)).to.deep.include({ state: "active", pos: s2, attempts: 0 });
    await engine.stop();
  });

  it("the engine wires it: an append's hint delivers; a result that reached another process applies by IQ id", async () => {
    await delivery.stop();
    delivery = make({ persistInflight: true });
    const engine = new Engine({
      store,
      uow,
      events,
      log: silent,
      config: {
        leaseMs: 30_000,
        heartbeatMs: 5_000,
        exclusive: true,
        observerPollMs: 60_000,
        pollMs: 60_000,
        deadLetterDays: 30,
      },
      processId: "test:1:aaaa",
      clock: () => now,
      delivery,
      laneOf: async (from) => (from.startsWith("alice@example.test/") ? alice : undefined),
    });
    try {
      await engine.start();
      presence.add(alice, 0, "alice@example.test/phone");
      const s1 = await notes(alice, { text: "one" }); // queue.appended after commit → engine.kickLanes
      await until(() => transport.sent.length === 1, "IQ from the post-commit hint");
      const id = transport.sent[0]?.id as string;
      const inflight = await store.read("inflight", (r) =>
        r.get<{ inflight_iq: string | null; inflight_upto: number | null }>(
          "SELECT inflight_iq, inflight_upto FROM stream_cursors WHERE account_id = :a AND consumer = 0",
          { a: alice },
        ),
      );
      expect(inflight).to.deep.equal({ inflight_iq: id, inflight_upto: s1 });
      expect(await engine.remoteAck("alice@example.test/phone", "not-ours")).to.equal(false);
      expect(await engine.remoteAck("bob@example.test/phone", id)).to.equal(false);
      expect(await engine.remoteAck("alice@example.test/phone", id)).to.equal(true);
      expect(await cursor()).to.deep.include({ pos: s1, lease_owner: null });
      expect(await entries()).to.deep.equal([]);
      // The sender's own copy of the result comes too: applying it again changes nothing.
      transport.sent[0]?.answer({ type: "result" });
      await delivery.idle();
      expect(await cursor()).to.deep.include({ pos: s1, attempts: 0 });
      expect(transport.sent).to.have.length(1);
    } finally {
      await engine.stop();
    }
  });

  const engineConfig = (o: { heartbeatMs: number; pollMs: number; exclusive: boolean }) => ({
    leaseMs: 30_000,
    observerPollMs: 600_000,
    deadLetterDays: 30,
    ...o,
  });

  for (const how of ["its heartbeats stop", "its lease expires"] as const) {
    it(`a process dies holding a lease: another process's sweep delivers once ${how}`, async () => {
      await delivery.stop();
      // Process 1: its heartbeat interval is an hour, so after start it never beats again in this test — the
      // process "dies" without releasing (no stop, its IQ never answered).
      delivery = make({ silentMs: 15_000 });
      const engine1 = new Engine({
        store,
        uow,
        events,
        log: silent,
        config: engineConfig({ heartbeatMs: 3_600_000, pollMs: 3_600_000, exclusive: false }),
        processId: "test:1:aaaa",
        clock: () => now,
        delivery,
      });
      // Process 2: its own store on the same file; heartbeat 5 s (silent after 15 s), a short poll = sweep.
      const store2 = new SqliteStore(path.join(dir, "cardlink.sqlite"), { legacy: false, clock: () => now });
      await store2.migrate([SCHEMA_2000]);
      const transport2 = new InProcessTransport();
      const delivery2 = make({ store: store2, transport: transport2, me: "test:2:bbbb", silentMs: 15_000 });
      const engine2 = new Engine({
        store: store2,
        uow: parts(store2).uow,
        events: new EventBus(),
        log: silent,
        config: engineConfig({ heartbeatMs: 5_000, pollMs: 20, exclusive: false }),
        processId: "test:2:bbbb",
        clock: () => now,
        delivery: delivery2,
      });
      try {
        await engine1.start();
        await engine2.start();
        presence.add(alice, 0, "alice@example.test/phone");
        const s1 = await notes(alice, { text: "one" });
        await until(() => transport.sent.length === 1, "process 1's IQ");
        expect((await cursor())?.lease_owner).to.equal("test:1:aaaa");
        // While process 1 is alive and its lease holds, process 2 neither sweeps nor claims it.
        expect(await delivery2.sweep()).to.equal(0);
        delivery2.kickLanes([alice]);
        await delivery2.idle();
        expect(transport2.sent).to.have.length(0);
        expect(delivery2.waitingRetry(alice, 0)).to.equal(false); // the gap: no timer for a held lease

        if (how === "its heartbeats stop")
          now = T0 + 16_000; // 3 beats missed, the lease (30 s) still runs
        else {
          now = T0 + 31_000;
          // Process 1 still beats (hung on that lane, say): only the expired lease frees the cursor.
          await store.tx("beat", (tx) => jobsRepo(tx).heartbeat("test:1:aaaa", now));
        }
        await eventually(() => transport2.sent.length === 1, "process 2's sweep delivers");
        expect(ids(transport2.sent[0])).to.deep.equal([`note:n1:${s1}`]);
        expect(ids(transport2.sent[0])).to.deep.equal(ids(transport.sent[0]));
        transport2.sent[0]?.answer({ type: "result" });
        await delivery2.idle();
        expect(await cursor()).to.deep.include({ pos: s1, attempts: 0, lease_owner: null });
        expect(await entries()).to.deep.equal([]);
        // The dead process's IQ times out late: the cursor is no longer its, nothing is counted or retried.
        transport.sent[0]?.answer({ type: "timeout" });
        await delivery.idle();
        expect(await cursor()).to.deep.include({ pos: s1, attempts: 0, next_at: 0, lease_owner: null });
        expect(delivery.waitingRetry(alice, 0)).to.equal(false);
        expect(await delivery2.sweep()).to.equal(0); // nothing pending any more
        expect(transport2.sent).to.have.length(1);
      } finally {
        await engine2.stop();
        await engine1.stop();
        await store2.close();
      }
    });
  }

  it("a timeout after the batch's result reached another process counts no attempt", async () => {
    await delivery.stop();
    delivery = make({ persistInflight: true, silentMs: 15_000 });
    const engine = new Engine({
      store,
      uow,
      events,
      log: silent,
      config: engineConfig({ heartbeatMs: 5_000, pollMs: 60_000, exclusive: true }),
      processId: "test:1:aaaa",
      clock: () => now,
      delivery,
      laneOf: async (from) => (from.startsWith("alice@example.test/") ? alice : undefined),
    });
    try {
      await engine.start();
      presence.add(alice, 0, "alice@example.test/phone");
      const s1 = await notes(alice, { text: "one" });
      await until(() => transport.sent.length === 1, "IQ");
      expect(await engine.remoteAck("alice@example.test/phone", transport.sent[0]?.id as string)).to.equal(
        true,
      );
      expect(await cursor()).to.deep.include({ pos: s1, lease_owner: null });
      // The sender's own wait for that IQ now times out (late: the batch was acknowledged).
      transport.sent[0]?.answer({ type: "timeout" });
      await delivery.idle();
      expect(await cursor()).to.deep.include({ pos: s1, attempts: 0, next_at: 0, lease_owner: null });
      expect(delivery.waitingRetry(alice, 0)).to.equal(false);
      expect(transport.sent).to.have.length(1);
      expect(logged).to.include("stream-retry-late");
    } finally {
      await engine.stop();
    }
  });
  describe("batching (S15: coalescing window, batched claims and acks, reads that stop when the lane is drained)", () => {
    const bobCursor = () =>
      store.read("cursor", (r) =>
        r.get<{ pos: number; lease_owner: string | null }>(
          "SELECT pos, lease_owner FROM stream_cursors WHERE account_id = :a AND consumer = 0",
          { a: bob },
        ),
      );
    /** Appends notes to `lane` alone (the lane-generic form of `notes`). */
    const notesTo = (lane: AccountId, text: string): Promise<number> =>
      uow("notes", async (u) => {
        const payload = await u.queue.payload("note", { text });
        await u.queue.append("note", [lane], { subject: `n${++noteN}`, payload });
        return u.seq();
      });

    it("an idle consumer is sent to at once; one sent to within the window waits, then gets what came meanwhile in one IQ", async () => {
      await delivery.stop();
      delivery = make({ coalesceWindowMs: 50 });
      presence.add(alice, 0, "alice@example.test/phone");
      const s1 = await notes(alice, { text: "one" });
      delivery.kickLanes([alice]);
      await until(() => transport.sent.length === 1, "first IQ, no wait");
      transport.sent[0]?.answer({ type: "result" });
      await delivery.idle();
      expect(delivery.waitingWindow(alice, 0)).to.equal(false);
      // 10 ms later (the pinned clock) two changes come: the consumer was sent to 10 ms ago, so it waits.
      now = T0 + 10;
      const s2 = await notes(alice, { text: "two" });
      delivery.kickLanes([alice]);
      const s3 = await notes(alice, { text: "three" });
      delivery.kickLanes([alice]);
      for (let i = 0; i < 50; i++) await new Promise((r) => setImmediate(r));
      expect(transport.sent).to.have.length(1);
      expect(delivery.waitingWindow(alice, 0)).to.equal(true);
      // The window closes (clock at the send + 50 ms): its timer runs the round, one IQ carries both.
      now = T0 + 50;
      await eventually(() => transport.sent.length === 2, "the IQ after the window");
      expect(ids(transport.sent[1])).to.deep.equal([`note:n2:${s2}`, `note:n3:${s3}`]);
      transport.sent[1]?.answer({ type: "result" });
      await delivery.idle();
      expect(await cursor()).to.deep.include({ pos: s3, lease_owner: null });
      expect(transport.sent).to.have.length(2);
      expect((await cursor())?.pos).to.be.greaterThan(s1);
    });

    it("a resource coming online does not wait for the window", async () => {
      await delivery.stop();
      delivery = make({ coalesceWindowMs: 1000 });
      presence.add(alice, 0, "alice@example.test/phone");
      await notes(alice, { text: "one" });
      delivery.kickLanes([alice]);
      await until(() => transport.sent.length === 1, "first IQ");
      transport.sent[0]?.answer({ type: "result" });
      await delivery.idle();
      const s2 = await notes(alice, { text: "two" });
      delivery.kickLanes([alice]);
      await delivery.idle();
      expect(delivery.waitingWindow(alice, 0)).to.equal(true);
      presence.add(alice, 0, "alice@example.test/laptop");
      delivery.available(alice, 0, "alice@example.test/laptop");
      await until(() => transport.sent.length >= 2, "IQ at once");
      expect(ids(transport.sent[1])).to.deep.equal([`note:n2:${s2}`]);
    });

    it("claims started in one turn share a unit of work, and acks within ackBatchMs another", async () => {
      await delivery.stop();
      const names: string[] = [];
      delivery = make({ ackBatchMs: 5, uowNames: names });
      presence.add(alice, 0, "alice@example.test/phone");
      presence.add(bob, 0, "bob@example.test/phone");
      const sa = await notesTo(alice, "for alice");
      const sb = await notesTo(bob, "for bob");
      delivery.kickLanes([alice, bob]);
      await until(() => transport.sent.length === 2, "an IQ to each");
      expect(names.filter((n) => n === "queue.claim")).to.have.length(1);
      for (const s of transport.sent) s.answer({ type: "result" });
      await delivery.idle();
      expect(names.filter((n) => n === "queue.ack")).to.have.length(1);
      expect(await cursor()).to.deep.include({ pos: sa, lease_owner: null });
      expect(await bobCursor()).to.deep.equal({ pos: sb, lease_owner: null });
      // A read that did not fill batchSize drained the lane: no second claim, no release.
      expect(names).to.deep.equal(["queue.claim", "queue.ack"]);
      expect(await entries()).to.deep.equal([]);
    });

    it("when a shared ack unit of work fails, each ack is written alone: none is lost", async () => {
      await delivery.stop();
      const names: string[] = [];
      delivery = make({ ackBatchMs: 5, uowNames: names, failOnce: { name: "queue.ack" } });
      presence.add(alice, 0, "alice@example.test/phone");
      presence.add(bob, 0, "bob@example.test/phone");
      const sa = await notesTo(alice, "for alice");
      const sb = await notesTo(bob, "for bob");
      delivery.kickLanes([alice, bob]);
      await until(() => transport.sent.length === 2, "an IQ to each");
      for (const s of transport.sent) s.answer({ type: "result" });
      await delivery.idle();
      expect(names.filter((n) => n === "queue.ack")).to.have.length(3); // the failed one, then one each
      expect(await cursor()).to.deep.include({ pos: sa, lease_owner: null });
      expect(await bobCursor()).to.deep.equal({ pos: sb, lease_owner: null });
      expect(transport.sent).to.have.length(2);
    });

    it("a read that fills batchSize is followed by another in the same round", async () => {
      await delivery.stop();
      const names: string[] = [];
      delivery = make({ batchSize: 2, uowNames: names });
      presence.add(alice, 0, "alice@example.test/phone");
      await notes(alice, { text: "1" });
      await notes(alice, { text: "2" });
      const s3 = await notes(alice, { text: "3" });
      delivery.kickLanes([alice]);
      await until(() => transport.sent.length === 1, "first page");
      expect(ids(transport.sent[0])).to.have.length(2);
      transport.sent[0]?.answer({ type: "result" });
      await until(() => transport.sent.length === 2, "second read, same round");
      expect(ids(transport.sent[1])).to.deep.equal([`note:n3:${s3}`]);
      transport.sent[1]?.answer({ type: "result" });
      await delivery.idle();
      expect(await cursor()).to.deep.include({ pos: s3, lease_owner: null });
      expect(names).to.deep.equal(["queue.claim", "queue.ack", "queue.claim", "queue.ack"]);
    });
  });
});
