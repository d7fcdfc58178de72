/**
 * The Store contract, jobs and observers part (docs/REDESIGN.md §4.5, cases 35–40). Backend-neutral: the cases
 * use only Store, makeUow's UnitOfWork, the queue's repos (jobs-repo.ts, observers.ts) and portable SQL for
 * seeding, so a PostgreSQL factory (issue 13) runs the same file with its own schema. Each case gets a fresh
 * database from the factory, migrated with the given schema (the 2000 tables), and a pinned clock.
 */
import { expect } from "chai";
import { pino } from "pino";
import { EventBus } from "../../component/runtime/events.js";
import type {
  ClaimedJob,
  JobChannel,
  JobOutcome,
  Observer,
  PendingEntry,
} from "../../component/runtime/queue/api.js";
import { jobsRepo } from "../../component/runtime/queue/jobs-repo.js";
import { jobsTx } from "../../component/runtime/queue/jobs-tx.js";
import { JobLoop } from "../../component/runtime/queue/jobs.js";
import { ObserverRunner } from "../../component/runtime/queue/observers.js";
import { makeUow, type Uow } from "../../component/runtime/uow.js";
import type { AccountId, DeviceKey, Migration, Store, Tx } from "../../storage/store.js";
import type { StoreFactory } from "./uow.contract.js";

const T0 = 1_700_000_000_000;
const LEASE_MS = 30_000;
const SILENT_MS = 15_000;
const silent = pino({ level: "silent" });
const unused = (): never => {
  throw new Error("part not used by the jobs contract");
};

const A1 = 1 as AccountId;
const A2 = 2 as AccountId;
const D1 = 1 as DeviceKey;

/** Two accounts with one device each, and (for observers) nothing else: plain, portable SQL. */
async function seed(tx: Tx): Promise<void> {
  for (const id of [1, 2]) {
    await tx.run("INSERT INTO accounts (id, state, created_at) VALUES (:id, 'active', :now)", {
      id,
      now: T0,
    });
    await tx.run(
      `INSERT INTO devices (id, account_id, device_id, platform, push_token, token_state, created_at, updated_at)
       VALUES (:id, :id, 'phone', 'ios', :token, 'ok', :now, :now)`,
      { id, token: `token-${id}`, now: T0 },
    );
  }
}

interface JobRowView {
  id: number;
  target: string;
  ckey: string | null;
  body: string;
  rev: number;
  uid: string;
  attempts: number;
  next_at: number;
  lease_owner: string | null;
  last_error: string | null;
}
const jobRows = (s: Store): Promise<JobRowView[]> =>
  s.read("jobs.rows", (r) =>
    r.all<JobRowView>(
      "SELECT id, target, ckey, body, rev, uid, attempts, next_at, lease_owner, last_error FROM jobs ORDER BY id",
    ),
  );

/** A channel whose send answers from a script, recording what it was given. */
function scripted(
  name: string,
  o: Partial<JobChannel> & { outcomes: (j: ClaimedJob) => JobOutcome },
): JobChannel & { sent: ClaimedJob[] } {
  const sent: ClaimedJob[] = [];
  return {
    name,
    concurrency: 10,
    maxAttempts: 3,
    backoff: { baseMs: 1000, maxMs: 8000 },
    onExhausted: "drop",
    ...o,
    sent,
    async send(jobs) {
      sent.push(...jobs);
      return jobs.map(o.outcomes);
    },
  };
}

export function describeJobs(name: string, factory: StoreFactory, schema: readonly Migration[]): void {
  describe(`Store contract: jobs and observers (${name})`, function () {
    this.timeout(30_000);
    let now: number;
    const clock = (): number => now;
    let store: Store;
    let events: EventBus;
    let channels: Map<string, JobChannel>;
    let uow: Uow;
    let opened: Store[];
    let open: () => Promise<Store>;
    const uowOn = (s: Store): Uow =>
      makeUow(
        s,
        {
          accounts: unused,
          audience: unused,
          stream: unused,
          jobs: jobsTx({ channel: (c) => channels.get(c) }),
        },
        events,
      );
    const beat = (s: Store, me: string) => s.tx("beat", (tx) => jobsRepo(tx).heartbeat(me, tx.now));
    const claim = (s: Store, me: string, n: number) =>
      s.tx("claim", (tx) =>
        jobsRepo(tx).claim("push", me, {
          now: tx.now,
          until: tx.now + LEASE_MS,
          alive: tx.now - SILENT_MS,
          n,
        }),
      );

    beforeEach(async () => {
      now = T0;
      opened = [];
      const backend = await factory.create();
      open = async () => {
        const s = await backend.open({ clock });
        opened.push(s);
        return s;
      };
      store = await open();
      await store.migrate(schema);
      await store.tx("seed", seed);
      events = new EventBus();
      channels = new Map();
      for (const c of ["push", "webhook"])
        channels.set(c, scripted(c, { outcomes: () => ({ status: "done" }) }));
      uow = uowOn(store);
    });
    afterEach(async () => {
      for (const s of opened.splice(0)) await s.close();
    });
    after(() => factory.cleanup());

    it("35. a ckey upsert replaces the body, bumps rev, keeps attempts/next_at/uid; without a ckey each is kept", async () => {
      const heard: string[] = [];
      events.on("jobs.enqueued", (e) => heard.push(e.channel));
      const first = await uow("enqueue", async (u) => {
        const r = await u.queue.job("push", {
          kind: "wake",
          target: "1",
          ckey: "ref-a",
          body: { v: 1 },
          device: D1,
        });
        // A second job in the same unit of work: still one hint for the channel.
        await u.queue.job("push", { kind: "wake", target: "1", ckey: "ref-b", body: { v: 1 }, device: D1 });
        return r;
      });
      expect(first.replaced).to.equal(false);
      expect(heard).to.deep.equal(["push"]);
      // A failed attempt and a deferral the replacement must keep.
      await beat(store, "A");
      expect((await claim(store, "A", 1)).map((j) => j.id)).to.deep.equal([first.id]);
      await store.tx("retry", (tx) => jobsRepo(tx).retry(first.id, "A", T0 + 5000, "timeout"));
      const before = (await jobRows(store)).find((r) => r.id === first.id);
      const second = await uow("replace", (u) =>
        u.queue.job("push", { kind: "wake", target: "1", ckey: "ref-a", body: { v: 2 }, device: D1 }),
      );
      expect(second).to.deep.equal({ id: first.id, replaced: true });
      const after = (await jobRows(store)).find((r) => r.id === first.id);
      expect(JSON.parse(after?.body ?? "null")).to.deep.equal({ v: 2 });
      expect(after?.rev).to.equal(2);
      expect(after?.attempts).to.equal(1);
      expect(after?.next_at).to.equal(T0 + 5000);
      expect(after?.uid).to.equal(before?.uid);
      // The same ckey for another target, or on another channel, is another job.
      await uow("other", async (u) => {
        await u.queue.job("push", { kind: "wake", target: "2", ckey: "ref-a", body: { v: 3 } });
        await u.queue.job("webhook", { kind: "sync", target: "1", ckey: "ref-a", body: { v: 3 } });
      });
      // Without a ckey: every job is its own row, with its own uid.
      await uow("keep", async (u) => {
        for (let i = 0; i < 2; i++)
          await u.queue.job("webhook", { kind: "change", target: "c:1", body: { i } });
      });
      const rows = await jobRows(store);
      expect(rows).to.have.length(6);
      const kept = rows.filter((r) => r.ckey === null);
      expect(kept.map((r) => JSON.parse(r.body))).to.deep.equal([{ i: 0 }, { i: 1 }]);
      expect(new Set(rows.map((r) => r.uid)).size).to.equal(6);
      expect(heard).to.deep.equal(["push", "push", "push", "webhook", "webhook"]);
      // A job for an unregistered channel fails its unit of work: nothing of it is written.
      const err = await uow("unknown", async (u) => {
        await u.queue.job("push", { kind: "wake", target: "9", body: {} });
        await u.queue.job("carrier-pigeon", { kind: "x", target: "1", body: {} });
      }).catch((e: unknown) => e);
      expect((err as Error).message).to.match(/no channel 'carrier-pigeon' is registered/);
      expect(await jobRows(store)).to.have.length(6);
    });

    it("36. two instances claim disjoint sets; a leased job is not re-claimed before expiry (or its owner's silence)", async () => {
      const other = await open();
      await uow("ten", async (u) => {
        for (let i = 0; i < 10; i++)
          await u.queue.job("push", { kind: "wake", target: String(i), body: { i } });
      });
      await beat(store, "A");
      await beat(other, "B");
      const a = await claim(store, "A", 4);
      const b = await claim(other, "B", 4);
      expect(a).to.have.length(4);
      expect(b).to.have.length(4);
      const ids = (js: ClaimedJob[]) => js.map((j) => j.id);
      expect(ids(a).filter((id) => ids(b).includes(id))).to.deep.equal([]);
      // Only the two unleased ones are left, for anyone (the claimer's own leases are not re-claimed either).
      const a2 = await claim(store, "A", 10);
      expect(a2).to.have.length(2);
      expect(await claim(other, "B", 10)).to.have.length(0);
      // Both owners keep beating; a while later nothing is free yet.
      now += 5000;
      await beat(store, "A");
      await beat(other, "B");
      expect(await claim(other, "B", 10)).to.have.length(0);
      // A falls silent for more than 3 beats: its 6 leases are free before their lease_until; B's are not.
      now += SILENT_MS + 1;
      await beat(other, "B");
      const taken = await claim(other, "B", 10);
      expect(taken).to.have.length(6);
      expect(ids(taken).sort()).to.deep.equal([...ids(a), ...ids(a2)].sort());
      // After lease expiry every job is claimable again, B's own included.
      now += LEASE_MS + 1;
      await beat(store, "A");
      expect(await claim(store, "A", 20)).to.have.length(10);
    });

    it("37. settle done with a stale rev keeps the replaced row and clears the lease; the newer body goes next", async () => {
      await beat(store, "A");
      const { id } = await uow("enqueue", (u) =>
        u.queue.job("push", { kind: "wake", target: "1", ckey: "ref", body: { v: 1 } }),
      );
      const [claimed] = await claim(store, "A", 1);
      expect(claimed?.rev).to.equal(1);
      // While it is being sent, a newer change replaces the body.
      await uow("replace", (u) =>
        u.queue.job("push", { kind: "wake", target: "1", ckey: "ref", body: { v: 2 } }),
      );
      expect(await store.tx("settle", (tx) => jobsRepo(tx).settleFinal(id, 1, "A", tx.now))).to.equal("kept");
      const [row] = await jobRows(store);
      expect(row?.lease_owner).to.equal(null);
      expect(JSON.parse(row?.body ?? "null")).to.deep.equal({ v: 2 });
      const [again] = await claim(store, "A", 1);
      expect(again?.id).to.equal(id);
      expect(again?.rev).to.equal(2);
      expect(again?.body).to.deep.equal({ v: 2 });
      expect(await store.tx("settle", (tx) => jobsRepo(tx).settleFinal(id, 2, "A", tx.now))).to.equal(
        "deleted",
      );
      expect(await jobRows(store)).to.deep.equal([]);
    });

    it("37b. a job deleted in flight whose id a new job takes: the old settle neither deletes nor retries the new one", async () => {
      await beat(store, "A");
      const { id } = await uow("enqueue", (u) =>
        u.queue.job("push", { kind: "wake", target: "1", body: { v: 1 } }),
      );
      const [claimed] = await claim(store, "A", 1);
      // A feature drops it while it is being sent; the next job takes the freed id (SQLite reuses the highest rowid).
      await store.tx("drop", (tx) => tx.run("DELETE FROM jobs WHERE id = :id", { id }));
      const next = await uow("enqueue", (u) =>
        u.queue.job("push", { kind: "wake", target: "1", body: { v: 2 } }),
      );
      const reused = next.id === id;
      expect(
        await store.tx("settle", (tx) => jobsRepo(tx).settleFinal(id, claimed?.rev ?? 1, "A", tx.now)),
      ).to.equal("gone");
      await store.tx("retry", (tx) => jobsRepo(tx).retry(id, "A", T0 + 3_600_000, "503"));
      const [row] = await jobRows(store);
      expect([
        row?.id === next.id,
        row?.attempts,
        row?.next_at,
        JSON.parse(row?.body ?? "null"),
      ]).to.deep.equal([true, 0, 0, { v: 2 }]);
      // On SQLite the id is reused (the case this guards); PostgreSQL's identity never reuses one.
      expect(reused).to.equal(name === "sqlite");
    });

    it("38. retry honours afterMs over the backoff; exhaustion drops or dead-letters per channel; a dead letter replays with its uid", async () => {
      await beat(store, "A");
      const answers: JobOutcome[] = [{ status: "retry", reason: "429", afterMs: 60_000 }];
      const push = scripted("push", {
        maxAttempts: 2,
        onExhausted: "drop",
        outcomes: () => answers.shift() ?? { status: "retry", reason: "503" },
      });
      const hook = scripted("webhook", {
        maxAttempts: 1,
        onExhausted: "dead-letter",
        outcomes: () => ({ status: "retry", reason: "503" }),
      });
      channels.set("push", push);
      channels.set("webhook", hook);
      const loop = (c: JobChannel) =>
        new JobLoop(c, {
          store,
          uow,
          me: "A",
          leaseMs: LEASE_MS,
          silentMs: SILENT_MS,
          log: silent,
          clock,
          random: () => 1,
        });
      const pushLoop = loop(push);
      const hookLoop = loop(hook);
      try {
        await uow("enqueue", async (u) => {
          await u.queue.job("push", { kind: "wake", target: "1", ckey: "ref", body: { v: 1 } });
          await u.queue.job("webhook", { kind: "change", target: "c:1", body: { v: 1 } });
        });
        const uid = (await jobRows(store)).find((r) => r.target === "c:1")?.uid;
        pushLoop.kick();
        await pushLoop.idle();
        // Backoff with random 1 would be baseMs (1000); Retry-After's 60 s is larger and wins.
        let [row] = (await jobRows(store)).filter((r) => r.target === "1");
        expect(row?.attempts).to.equal(1);
        expect(row?.next_at).to.equal(T0 + 60_000);
        expect(row?.last_error).to.equal("429");
        expect(row?.lease_owner).to.equal(null);
        // Due again: the second failure is the last attempt (maxAttempts 2) → dropped, no dead letter.
        now = T0 + 60_000;
        pushLoop.kick();
        await pushLoop.idle();
        expect(push.sent).to.have.length(2);
        [row] = (await jobRows(store)).filter((r) => r.target === "1");
        expect(row).to.equal(undefined);
        hookLoop.kick();
        await hookLoop.idle();
        const letters = await store.read("letters", (r) =>
          r.all<{
            id: number;
            channel: string;
            uid: string;
            attempts: number;
            last_error: string;
            body: string;
          }>("SELECT id, channel, uid, attempts, last_error, body FROM dead_letters"),
        );
        expect(
          letters.map((l) => [l.channel, l.uid, l.attempts, l.last_error, JSON.parse(l.body)]),
        ).to.deep.equal([["webhook", uid, 1, "503", { v: 1 }]]);
        expect(await jobRows(store)).to.deep.equal([]);
        const replayed = await store.tx("replay", (tx) =>
          jobsRepo(tx).replay(Number(letters[0]?.id), tx.now),
        );
        const rows = await jobRows(store);
        expect(rows.map((r) => [r.id, r.uid, r.attempts, r.next_at])).to.deep.equal([
          [replayed, uid, 0, now],
        ]);
        expect(
          await store.read("n", (r) => r.get<{ n: number }>("SELECT COUNT(*) AS n FROM dead_letters")),
        ).to.deep.equal({ n: 0 });
      } finally {
        await pushLoop.stop();
        await hookLoop.stop();
      }
    });

    it("39. expired jobs are dropped at claim; deleting a device or an account cascades to its jobs", async () => {
      await beat(store, "A");
      await uow("enqueue", async (u) => {
        await u.queue.job("push", { kind: "wake", target: "1", body: { e: 1 }, expiresAt: T0 + 1000 });
        await u.queue.job("push", { kind: "wake", target: "1", body: { e: 0 } });
        await u.queue.job("push", { kind: "wake", target: "dev", body: {}, device: D1, account: A1 });
        await u.queue.job("push", { kind: "wake", target: "acct", body: {}, account: A2 });
      });
      now = T0 + 2000;
      const expired = await store.tx("expire", (tx) =>
        jobsRepo(tx).dropExpired("push", tx.now, tx.now - SILENT_MS),
      );
      expect(expired).to.equal(1);
      expect((await jobRows(store)).map((r) => JSON.parse(r.body))).to.deep.equal([{ e: 0 }, {}, {}]);
      // Through the claim path too: an expired job is never handed out.
      await uow("enqueue", (u) =>
        u.queue.job("push", { kind: "wake", target: "1", body: { e: 2 }, expiresAt: now }),
      );
      const claimed = await store.tx("claim", async (tx) => {
        const repo = jobsRepo(tx);
        await repo.dropExpired("push", tx.now, tx.now - SILENT_MS);
        return repo.claim("push", "A", {
          now: tx.now,
          until: tx.now + LEASE_MS,
          alive: tx.now - SILENT_MS,
          n: 10,
        });
      });
      expect(claimed.map((j) => j.body)).to.deep.equal([{ e: 0 }, {}, {}]);
      await store.tx("rm device", (tx) => tx.run("DELETE FROM devices WHERE id = 1"));
      expect((await jobRows(store)).map((r) => r.target)).to.deep.equal(["1", "acct"]);
      await store.tx("rm account", (tx) => tx.run("DELETE FROM accounts WHERE id = 2"));
      expect((await jobRows(store)).map((r) => r.target)).to.deep.equal(["1"]);
    });

    it("40. an observer reads in seq order from its mark; its writes and the mark commit together; one instance at a time", async () => {
      const other = await open();
      await beat(store, "A");
      await beat(other, "B");
      // Entries at seqs 1..4, seq 2 with two lanes and a payload; inserted out of seq order.
      await store.tx("entries", async (tx) => {
        await tx.run("INSERT INTO payloads (id, kind, body, created_at) VALUES (1, 'notice', :b, :now)", {
          b: JSON.stringify({ by: 2 }),
          now: T0,
        });
        const e = (lane: number, seq: number, kind: string, subject: string, payload: number | null) =>
          tx.run(
            `INSERT INTO stream_entries (account_id, seq, ord, kind, subject, payload_id, created_at)
             VALUES (:lane, :seq, 0, :kind, :subject, :payload, :now)`,
            { lane, seq, kind, subject, payload, now: T0 },
          );
        await e(1, 3, "card", "2", null);
        await e(1, 2, "notice", "p1", 1);
        await e(2, 2, "notice", "p1", 1);
        await e(2, 1, "card", "1", null);
        await e(1, 4, "quiet", "x", null);
      });
      const seen: PendingEntry[][] = [];
      let fail = false;
      const ob: Observer = {
        name: "test-scan",
        kinds: ["card", "notice"],
        batchSize: 2,
        async batch(u, entries) {
          seen.push([...entries]);
          // Its write: a job per entry, in the unit of work that moves the mark.
          for (const en of entries)
            await u.queue.job("push", {
              kind: en.kind,
              target: `${en.lane}:${en.seq}`,
              body: { s: en.subject },
            });
          if (fail) throw new Error("observer batch failed");
        },
      };
      const runner = (s: Store, me: string) =>
        new ObserverRunner(ob, { uow: uowOn(s), me, leaseMs: LEASE_MS, silentMs: SILENT_MS, log: silent });
      const a = runner(store, "A");
      const b = runner(other, "B");
      const mark = async () =>
        await store.read("mark", (r) =>
          r.get<{ pos: number; lease_owner: string | null }>(
            "SELECT pos, lease_owner FROM queue_marks WHERE name = 'test-scan'",
          ),
        );
      // batchSize 2 reaches into seq 2, which is read whole (both lanes): seqs 1–2 in the first batch.
      expect(await a.runOnce()).to.deep.equal({ held: false, from: 0, to: 2, entries: 3 });
      expect(seen[0]?.map((e) => [e.seq, e.lane, e.kind, e.payload ?? null])).to.deep.equal([
        [1, 2, "card", null],
        [2, 1, "notice", { by: 2 }],
        [2, 2, "notice", { by: 2 }],
      ]);
      expect(await mark()).to.deep.equal({ pos: 2, lease_owner: "A" });
      // While A holds the lease, B cannot run the observer.
      expect(await b.runOnce()).to.deep.equal({ held: true });
      // A failing batch: neither its jobs nor the mark move.
      fail = true;
      const err = await a.runOnce().catch((e: unknown) => e);
      expect((err as Error).message).to.equal("observer batch failed");
      expect(await mark()).to.deep.equal({ pos: 2, lease_owner: "A" });
      expect(await jobRows(store)).to.have.length(3);
      fail = false;
      // Seqs 3–4: the 'quiet' entry is not passed, but the mark moves past it.
      expect(await a.runOnce()).to.deep.equal({ held: false, from: 2, to: 4, entries: 1 });
      expect(seen.at(-1)?.map((e) => e.seq)).to.deep.equal([3]);
      expect((await jobRows(store)).map((r) => r.target)).to.deep.equal(["2:1", "1:2", "2:2", "1:3"]);
      expect(await a.runOnce()).to.deep.equal({ held: false, from: 4, to: 4, entries: 0 });
      // A stops and gives the lease back: B resumes from the mark, not from 0.
      await a.stop();
      expect(await mark()).to.deep.equal({ pos: 4, lease_owner: null });
      await store.tx("more", (tx) =>
        tx.run(
          "INSERT INTO stream_entries (account_id, seq, ord, kind, subject, created_at) VALUES (1, 5, 0, 'card', '5', :now)",
          { now: T0 },
        ),
      );
      expect(await b.runOnce()).to.deep.equal({ held: false, from: 4, to: 5, entries: 1 });
      expect(await mark()).to.deep.equal({ pos: 5, lease_owner: "B" });
      await b.stop();
    });
  });
}
