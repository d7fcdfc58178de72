/**
 * The generic job loop (component/runtime/queue/jobs.ts) driven by the engine (engine.ts) over a real
 * SqliteStore with the 2000 schema, against an in-process receiver channel of our own: a webhook-like endpoint
 * that records every delivery (uid, body) and answers from a per-test script (accept, 429 + Retry-After, 503,
 * hold the request open). The clock is pinned and moved by the test; nothing waits for wall-clock time.
 */
import { expect } from "chai";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { pino } from "pino";
import { EventBus } from "../../component/runtime/events.js";
import type { ClaimedJob, JobChannel, JobId, JobOutcome } from "../../component/runtime/queue/api.js";
import { Engine, type EngineConfig } from "../../component/runtime/queue/engine.js";
import { jobsTx } from "../../component/runtime/queue/jobs-tx.js";
import type { LoopEvent } from "../../component/runtime/queue/jobs.js";
import { makeUow, type Uow } from "../../component/runtime/uow.js";
import { SCHEMA_2000 } from "../../storage/sqlite/schema-2000.js";
import { SqliteStore } from "../../storage/sqlite/store.js";
import type { AccountId } from "../../storage/store.js";

const T0 = 1_700_000_000_000;
const unused = (): never => {
  throw new Error("part not used here");
};
const CONFIG: EngineConfig = {
  leaseMs: 30_000,
  heartbeatMs: 5_000,
  exclusive: true,
  observerPollMs: 60_000,
  pollMs: 60_000,
  deadLetterDays: 30,
};

type Answer = JobOutcome | { hold: Promise<JobOutcome> };

/** The receiving end: what a webhook endpoint would see, and how it answers. */
class Receiver implements JobChannel {
  readonly deliveries: Array<{ uid: string; target: string; body: unknown; attempt: number }> = [];
  concurrency = 10;
  maxAttempts = 3;
  backoff = { baseMs: 1000, maxMs: 8000 };
  onExhausted: "drop" | "dead-letter" = "drop";
  gate?: JobChannel["gate"];
  private readonly script: Answer[] = [];
  settled: Array<[string, string]> = [];

  constructor(
    readonly name: string,
    private readonly fallback: JobOutcome = { status: "done" },
  ) {}

  answer(...a: Answer[]): void {
    this.script.push(...a);
  }

  async send(jobs: readonly ClaimedJob[]): Promise<JobOutcome[]> {
    return Promise.all(
      jobs.map(async (j) => {
        this.deliveries.push({ uid: j.uid, target: j.target, body: j.body, attempt: j.attempts });
        const a = this.script.shift() ?? this.fallback;
        return "hold" in a ? a.hold : a;
      }),
    );
  }

  async settle(_u: unknown, jobs: readonly ClaimedJob[], outcomes: readonly JobOutcome[]): Promise<void> {
    jobs.forEach((j, i) => this.settled.push([j.target, outcomes[i]?.status ?? "?"]));
  }
}

describe("job loop and queue engine (docs/REDESIGN.md §2.3.6, §4.3) with an in-process receiver", function () {
  this.timeout(30_000);
  let dir: string;
  let store: SqliteStore;
  let now: number;
  let events: EventBus;
  let channels: Map<string, JobChannel>;
  let uow: Uow;
  let engines: Engine[];
  let counted: Array<[string, LoopEvent, number]>;

  const engine = (o: Partial<EngineConfig> = {}, processId = "test:1:aaaa"): Engine => {
    const e = new Engine({
      store,
      uow,
      events,
      log: pino({ level: "silent" }),
      config: { ...CONFIG, ...o },
      processId,
      clock: () => now,
      random: () => 1, // backoff = its ceiling: base · 2^attempts, capped
      onJobEvent: (c, ev, n) => counted.push([c, ev, n]),
    });
    engines.push(e);
    return e;
  };
  const withChannel = (e: Engine, c: Receiver): Receiver => {
    e.registerChannel(c);
    channels.set(c.name, c);
    return c;
  };
  const rows = () =>
    store.read("rows", (r) =>
      r.all<{
        id: number;
        body: string;
        rev: number;
        attempts: number;
        next_at: number;
        lease_owner: string | null;
      }>("SELECT id, body, rev, attempts, next_at, lease_owner FROM jobs ORDER BY id"),
    );
  const enqueue = (channel: string, target: string, body: Record<string, number>, ckey?: string) =>
    uow("enqueue", (u) => u.queue.job(channel, { kind: "change", target, body, ...(ckey ? { ckey } : {}) }));

  beforeEach(async () => {
    dir = mkdtempSync(path.join(tmpdir(), "cardlink-jobs-loop-"));
    now = T0;
    store = new SqliteStore(path.join(dir, "cardlink.sqlite"), { legacy: false, clock: () => now });
    await store.migrate([SCHEMA_2000]);
    events = new EventBus();
    channels = new Map();
    engines = [];
    counted = [];
    uow = makeUow(
      store,
      {
        accounts: unused,
        audience: unused,
        stream: unused,
        jobs: jobsTx({ channel: (n) => channels.get(n) }),
      },
      events,
    );
  });
  afterEach(async () => {
    for (const e of engines) await e.stop();
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it("honours Retry-After: not sent again before it, sent at it, with the same uid", async () => {
    const e = engine();
    const hook = withChannel(e, new Receiver("webhook"));
    hook.answer({ status: "retry", reason: "429", afterMs: 120_000 });
    await e.start();
    await enqueue("webhook", "c:1", { v: 1 }); // jobs.enqueued after commit kicks the channel
    await e.idle();
    expect(hook.deliveries).to.have.length(1);
    const [r] = await rows();
    // The backoff would be 1 s (attempt 0, base 1000); the receiver's 120 s wins.
    expect([r?.attempts, r?.next_at, r?.lease_owner]).to.deep.equal([1, T0 + 120_000, null]);
    now = T0 + 119_999;
    e.kickChannel("webhook");
    await e.idle();
    expect(hook.deliveries).to.have.length(1);
    now = T0 + 120_000;
    e.kickChannel("webhook");
    await e.idle();
    expect(hook.deliveries.map((d) => [d.uid, d.attempt])).to.deep.equal([
      [hook.deliveries[0]?.uid, 0],
      [hook.deliveries[0]?.uid, 1],
    ]);
    expect(await rows()).to.deep.equal([]);
    expect(hook.settled).to.deep.equal([
      ["c:1", "retry"],
      ["c:1", "done"],
    ]);
  });

  it("exhaustion: backoff grows per attempt; the last failure drops (push) or dead-letters (webhook)", async () => {
    const e = engine();
    const push = withChannel(e, new Receiver("push", { status: "retry", reason: "503" }));
    const hook = withChannel(e, new Receiver("webhook", { status: "retry", reason: "503" }));
    hook.onExhausted = "dead-letter";
    // A throwing send counts as a retry of every job it was given.
    hook.send = async (jobs) => {
      hook.deliveries.push(
        ...jobs.map((j) => ({ uid: j.uid, target: j.target, body: j.body, attempt: j.attempts })),
      );
      throw new Error("connection refused");
    };
    await e.start();
    await enqueue("push", "dev:1", { v: 1 }, "ref");
    await enqueue("webhook", "c:1", { v: 1 });
    await e.idle();
    const gaps: number[] = [];
    for (let round = 1; round < 3; round++) {
      const due = Math.min(...(await rows()).map((r) => r.next_at));
      gaps.push(due - now);
      now = due;
      e.kickChannel("push");
      e.kickChannel("webhook");
      await e.idle();
    }
    expect(gaps).to.deep.equal([1000, 2000]);
    expect(push.deliveries.map((d) => d.attempt)).to.deep.equal([0, 1, 2]);
    expect(hook.deliveries.map((d) => d.attempt)).to.deep.equal([0, 1, 2]);
    expect(await rows()).to.deep.equal([]);
    const letters = await store.read("letters", (r) =>
      r.all<{ channel: string; attempts: number; last_error: string }>(
        "SELECT channel, attempts, last_error FROM dead_letters",
      ),
    );
    expect(letters).to.deep.equal([{ channel: "webhook", attempts: 3, last_error: "connection refused" }]);
    expect(counted.filter(([, ev]) => ev === "exhausted" || ev === "dead-letter").sort()).to.deep.equal([
      ["push", "exhausted", 1],
      ["webhook", "dead-letter", 1],
      ["webhook", "exhausted", 1],
    ]);
    expect((await e.depth()).jobs).to.deep.equal({
      push: { due: 0, deferred: 0, oldestMs: 0, dead: 0 },
      webhook: { due: 0, deferred: 0, oldestMs: 0, dead: 1 },
    });
  });

  it("replace while sending: the sent body's ack does not delete the newer one, which goes out next (same uid)", async () => {
    const e = engine();
    const push = withChannel(e, new Receiver("push"));
    let release!: (o: JobOutcome) => void;
    push.answer({ hold: new Promise<JobOutcome>((r) => (release = r)) });
    await e.start();
    await enqueue("push", "dev:1", { v: 1 }, "ref");
    // The send of v1 is open (the loop waits for the provider); a newer change replaces the body meanwhile.
    while (push.deliveries.length === 0) await new Promise((r) => setImmediate(r));
    const replaced = await enqueue("push", "dev:1", { v: 2 }, "ref");
    expect(replaced.replaced).to.equal(true);
    const [inFlight] = await rows();
    expect([inFlight?.rev, inFlight?.lease_owner]).to.deep.equal([2, "test:1:aaaa"]);
    release({ status: "done" });
    await e.idle();
    expect(push.deliveries.map((d) => [d.body, d.uid])).to.deep.equal([
      [{ v: 1 }, push.deliveries[0]?.uid],
      [{ v: 2 }, push.deliveries[0]?.uid],
    ]);
    expect(await rows()).to.deep.equal([]);
    expect(counted).to.deep.include(["push", "replaced-in-flight", 1]);
  });

  it("a gate defers jobs without counting an attempt; they keep coalescing while deferred", async () => {
    const e = engine();
    const push = withChannel(e, new Receiver("push"));
    push.gate = async (_r, jobs, at) =>
      new Map(jobs.filter((j) => j.target === "busy").map((j) => [j.id, at + 3_600_000]));
    await e.start();
    await enqueue("push", "busy", { v: 1 }, "ref");
    await enqueue("push", "free", { v: 1 }, "ref");
    await e.idle();
    expect(push.deliveries.map((d) => d.target)).to.deep.equal(["free"]);
    await enqueue("push", "busy", { v: 2 }, "ref");
    await e.idle();
    const [r] = await rows();
    expect([JSON.parse(r?.body ?? "null"), r?.rev, r?.attempts, r?.next_at]).to.deep.equal([
      { v: 2 },
      2,
      0,
      T0 + 3_600_000,
    ]);
    expect((await e.depth()).jobs.push).to.deep.equal({ due: 0, deferred: 1, oldestMs: 0, dead: 0 });
    now = T0 + 3_600_000;
    push.gate = undefined;
    e.kickChannel("push");
    await e.idle();
    expect(push.deliveries.map((d) => [d.target, d.body])).to.deep.equal([
      ["free", { v: 1 }],
      ["busy", { v: 2 }],
    ]);
  });

  it("start: exclusive clears a dead process's leases; shared mode waits for its silence; stop gives leases back", async () => {
    const dead = "host:99:dead";
    channels.set("push", new Receiver("push")); // so the job is accepted before any engine exists
    const { id } = await enqueue("push", "dev:1", { v: 1 });
    await store.tx("dead lease", async (tx) => {
      await tx.run("INSERT INTO processes (id, started_at, heartbeat_at) VALUES (:p, :now, :now)", {
        p: dead,
        now,
      });
      await tx.run("UPDATE jobs SET lease_owner = :p, lease_until = :until WHERE id = :id", {
        p: dead,
        until: now + 600_000,
        id,
      });
    });
    // Shared mode: the lease stands while its owner's heartbeat is fresh.
    const shared = engine({ exclusive: false }, "test:2:bbbb");
    const push = withChannel(shared, new Receiver("push"));
    await shared.start();
    await shared.idle();
    expect(push.deliveries).to.have.length(0);
    now += 3 * CONFIG.heartbeatMs; // exactly 3 beats: still alive
    shared.kickChannel("push");
    await shared.idle();
    expect(push.deliveries).to.have.length(0);
    now += 1; // silent for more than 3 beats: free before its lease_until
    shared.kickChannel("push");
    await shared.idle();
    expect(push.deliveries).to.have.length(1);
    await shared.stop();
    // Exclusive start with another dead lease: cleared at once.
    const again = await enqueue("push", "dev:2", { v: 1 });
    await store.tx("dead lease 2", (tx) =>
      tx.run("UPDATE jobs SET lease_owner = :p, lease_until = :until WHERE id = :id", {
        p: "host:98:gone",
        until: now + 600_000,
        id: again.id,
      }),
    );
    await store.tx("beat", (tx) =>
      tx.run("INSERT INTO processes (id, started_at, heartbeat_at) VALUES ('host:98:gone', :now, :now)", {
        now,
      }),
    );
    const excl = engine({ exclusive: true }, "test:3:cccc");
    let hold!: (o: JobOutcome) => void;
    const p2 = withChannel(excl, new Receiver("push"));
    p2.answer({ hold: new Promise<JobOutcome>((r) => (hold = r)) });
    await excl.start();
    while (p2.deliveries.length === 0) await new Promise((r) => setImmediate(r));
    expect((await rows()).map((r) => r.lease_owner)).to.deep.equal(["test:3:cccc"]);
    hold({ status: "retry", reason: "503" });
    await excl.idle();
    await excl.stop();
    const procs = await store.read("procs", (r) =>
      r.all<{ id: string }>("SELECT id FROM processes ORDER BY id"),
    );
    // Stopped engines removed their rows; an exclusive start forgets every other process.
    expect(procs.map((p) => p.id)).to.deep.equal([]);
    expect((await rows()).map((r) => [r.id as JobId, r.lease_owner, r.attempts])).to.deep.equal([
      [again.id, null, 1],
    ]);
  });

  it("observers: run at start from their mark; a queue.appended hint wakes them; their jobs reach the channel", async () => {
    const e = engine();
    const push = withChannel(e, new Receiver("push"));
    const seen: number[] = [];
    e.registerObserver({
      name: "push-scan",
      kinds: ["card"],
      batchSize: 100,
      async batch(u, entries) {
        for (const en of entries) {
          seen.push(en.seq);
          await u.queue.job("push", {
            kind: "wake",
            target: String(en.lane),
            ckey: "ref",
            body: { seq: en.seq },
          });
        }
      },
    });
    const append = (seq: number) =>
      store.tx("append", async (tx) => {
        await tx.run(
          "INSERT INTO accounts (id, state, created_at) VALUES (:id, 'active', :now) ON CONFLICT (id) DO NOTHING",
          { id: 1, now },
        );
        await tx.run(
          `INSERT INTO stream_entries (account_id, seq, ord, kind, subject, created_at)
           VALUES (1, :seq, 0, 'card', :subject, :now)`,
          { seq, subject: String(seq), now },
        );
      });
    // Committed before the engine ran (a kill -9 between the change and the scan): found at start.
    await append(1);
    await e.start();
    await e.idle();
    expect(seen).to.deep.equal([1]);
    await append(2);
    expect(seen).to.deep.equal([1]); // no hint yet, and the poll is a minute away
    events.emit("queue.appended", { lanes: [1 as AccountId], seq: 2 });
    await e.idle();
    expect(seen).to.deep.equal([1, 2]);
    // The observer's jobs were enqueued in its unit of work and sent after its commit (the jobs.enqueued hint).
    expect(push.deliveries.map((d) => d.body)).to.deep.equal([{ seq: 1 }, { seq: 2 }]);
    const mark = await store.read("mark", (r) =>
      r.get<{ pos: number; lease_owner: string }>(
        "SELECT pos, lease_owner FROM queue_marks WHERE name = 'push-scan'",
      ),
    );
    expect(mark).to.deep.equal({ pos: 2, lease_owner: "test:1:aaaa" });
  });

  it("stop with the store gone resolves: the leases' give-back fails, is logged, and the shutdown goes on", async () => {
    const logged: Array<{ event?: string }> = [];
    const e = new Engine({
      store,
      uow,
      events,
      log: pino({ level: "warn" }, { write: (line: string) => logged.push(JSON.parse(line) as never) }),
      config: CONFIG,
      processId: "test:1:aaaa",
      clock: () => now,
    });
    engines.push(e);
    withChannel(e, new Receiver("push"));
    e.registerObserver({ name: "push-scan", kinds: ["card"], batchSize: 100, batch: async () => {} });
    await e.start();
    await e.idle();
    // The database closed under the running engine (cardlink's /healthz test does this to the app).
    await store.close();
    await e.stop();
    expect(logged.map((l) => l.event)).to.deep.equal(["observer-release-failed", "queue-release-failed"]);
  });
});
