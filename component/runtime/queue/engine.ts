/**
 * The queue engine (docs/REDESIGN.md §2.3.5–2.3.7, §3.3), skeleton of step S5: registries, this process's
 * identity and heartbeat, lease clearing at start (queue.exclusive), one JobLoop per channel, one
 * ObserverRunner per observer, their wake-ups (post-commit hints and safety-net polls) and depth() for the
 * metrics. Stream delivery is stream-delivery.ts (S7), handed in as `delivery`: kickLanes wakes its consumers
 * too, remoteAck applies an IQ result by the recorded IQ id, the queue.pollMs poll sweeps it for lanes a dead
 * process held, stop waits for its rounds.
 */
import { randomBytes } from "node:crypto";
import os from "node:os";
import type { Logger } from "pino";
import type { AccountId, Store } from "../../../storage/store.js";
import type { EventBus } from "../events.js";
import type { Uow } from "../uow.js";
import type { JobChannel, Observer, QueueEngine, StreamKind } from "./api.js";
import { jobsRepo } from "./jobs-repo.js";
import { JobLoop, type LoopEvent } from "./jobs.js";
import { ObserverRunner } from "./observers.js";
import type { StreamDelivery } from "./stream-delivery.js";
import { streamRepo } from "./stream-repo.js";

/** The queue.* config keys the engine reads (§3.7). */
export interface EngineConfig {
  readonly leaseMs: number;
  readonly heartbeatMs: number;
  readonly exclusive: boolean;
  readonly observerPollMs: number;
  readonly pollMs: number;
  readonly deadLetterDays: number;
}

export interface EngineOptions {
  readonly store: Pick<Store, "read">;
  readonly uow: Uow;
  readonly events: EventBus;
  readonly log: Logger;
  readonly config: EngineConfig;
  /** Lease owner id; default `<hostname>:<pid>:<8 random hex>` (§2.3.5). Two engines in one test get two. */
  readonly processId?: string;
  /** The store's clock, for timers that compare with stored times (tests pin both). */
  readonly clock?: () => number;
  readonly random?: () => number;
  readonly onJobEvent?: (channel: string, e: LoopEvent, n: number) => void;
  /** Stream delivery, built with this engine's process id as its lease owner (createCardlink, S11). */
  readonly delivery?: Pick<StreamDelivery, "kickLanes" | "remoteAck" | "stop" | "sweep">;
  /** The account of an IQ result's sender (a full JID), for remoteAck; the accounts directory in the app. */
  readonly laneOf?: (from: string) => Promise<AccountId | undefined>;
  /**
   * §2.3.4 dormancy (delivery.deviceIdleDays / sharedIdleDays): idle cursors stop holding their lanes. Swept
   * every DORMANCY_SWEEP_MS; omitted, no cursor ever goes dormant.
   */
  readonly dormancy?: { readonly deviceIdleMs: number; readonly sharedIdleMs: number };
}

/** Heartbeats a process may miss before its leases are free (§2.3.5). */
export const MISSED_BEATS = 3;
const DAY_MS = 86_400_000;
/** How often idle cursors are marked dormant: the idle limits are days, an hour late is nothing. */
export const DORMANCY_SWEEP_MS = DAY_MS / 24;
/** Cursors of each sort one dormancy statement marks; a sweep repeats it until a round marks none. */
const DORMANCY_BATCH = 500;

/** Every lease of every queue table: cleared at an exclusive start (kill -9 left them to a dead process). */
const CLEAR_LEASES = [
  "UPDATE jobs SET lease_owner = NULL, lease_until = 0 WHERE lease_owner IS NOT NULL",
  "UPDATE queue_marks SET lease_owner = NULL, lease_until = 0 WHERE lease_owner IS NOT NULL",
  "UPDATE stream_cursors SET lease_owner = NULL, lease_until = 0 WHERE lease_owner IS NOT NULL",
];
/** This process's leases, given back at stop so another process need not wait for them to expire. */
const RELEASE_MINE = [
  "UPDATE jobs SET lease_owner = NULL, lease_until = 0 WHERE lease_owner = :me",
  "UPDATE queue_marks SET lease_owner = NULL, lease_until = 0 WHERE lease_owner = :me",
  "UPDATE stream_cursors SET lease_owner = NULL, lease_until = 0 WHERE lease_owner = :me",
];
const FORGET_OTHERS = "DELETE FROM processes WHERE id <> :me";
const STREAM_DEPTH =
  "SELECT COUNT(*) AS entries, COUNT(DISTINCT account_id) AS lanes, MIN(created_at) AS oldest FROM stream_entries";

export function newProcessId(): string {
  return `${os.hostname()}:${process.pid}:${randomBytes(4).toString("hex")}`;
}

export class Engine implements QueueEngine {
  readonly me: string;
  private readonly kinds = new Map<string, StreamKind>();
  private readonly channels = new Map<string, JobChannel>();
  private readonly loops = new Map<string, JobLoop>();
  private readonly observers = new Map<string, ObserverRunner>();
  private readonly timers: NodeJS.Timeout[] = [];
  private started = false;
  private stopped = false;
  /**
   * Since when every heartbeat succeeded (undefined: the last one failed, or none ran yet). A process that could
   * not reach the database cannot tell a silent peer from its own outage: it takes nothing over until it has
   * beaten for silentMs (runtime/wake.ts).
   */
  private beatingSince: number | undefined;
  private readonly clock: () => number;

  constructor(private readonly o: EngineOptions) {
    this.me = o.processId ?? newProcessId();
    this.clock = o.clock ?? Date.now;
    // Post-commit hints (§3.5). EventBus has no `off`: a stopped engine ignores them.
    o.events.on("jobs.enqueued", (e) => this.kickChannel(e.channel));
    o.events.on("queue.appended", (e) => this.kickLanes(e.lanes));
  }

  /** How long this process's heartbeats have all succeeded, in ms (0 after a failed one, or before start). */
  beatingFor(): number {
    return this.beatingSince === undefined ? 0 : Math.max(0, this.clock() - this.beatingSince);
  }

  /** Heartbeats older than this free their owner's leases (StreamDelivery's `silentMs` is this one). */
  get silentMs(): number {
    return MISSED_BEATS * this.o.config.heartbeatMs;
  }

  registerKind(k: StreamKind): void {
    if (this.kinds.has(k.name)) throw new Error(`stream kind '${k.name}' registered twice`);
    this.kinds.set(k.name, k);
  }

  kind(name: string): StreamKind | undefined {
    return this.kinds.get(name);
  }

  registerChannel(c: JobChannel): void {
    if (this.channels.has(c.name)) throw new Error(`job channel '${c.name}' registered twice`);
    if (this.started) throw new Error(`job channel '${c.name}' registered after start`);
    this.channels.set(c.name, c);
    this.loops.set(
      c.name,
      new JobLoop(c, {
        store: this.o.store,
        uow: this.o.uow,
        me: this.me,
        leaseMs: this.o.config.leaseMs,
        silentMs: this.silentMs,
        log: this.o.log,
        clock: this.clock,
        ...(this.o.random ? { random: this.o.random } : {}),
        ...(this.o.onJobEvent ? { onEvent: this.o.onJobEvent } : {}),
      }),
    );
  }

  /** For jobsTx's `channel` lookup (createCardlink wires `name => engine.channel(name)`). */
  channel(name: string): JobChannel | undefined {
    return this.channels.get(name);
  }

  registerObserver(ob: Observer): void {
    if (this.observers.has(ob.name)) throw new Error(`observer '${ob.name}' registered twice`);
    if (this.started) throw new Error(`observer '${ob.name}' registered after start`);
    this.observers.set(
      ob.name,
      new ObserverRunner(ob, {
        uow: this.o.uow,
        me: this.me,
        leaseMs: this.o.config.leaseMs,
        silentMs: this.silentMs,
        log: this.o.log,
      }),
    );
  }

  /**
   * Heartbeat first (so this process's leases are never "silent"), then, exclusive: every lease cleared at once
   * (a restart after kill -9 resumes without waiting out the dead process's leases). Then every channel and
   * observer runs, and the timers start. Called again on a link reconnect it only kicks.
   */
  async start(): Promise<void> {
    if (this.stopped) throw new Error("queue engine: start after stop");
    if (!this.started) {
      this.started = true;
      await this.o.uow("queue.start", async (u) => {
        const repo = jobsRepo(u.tx);
        if (this.o.config.exclusive) {
          for (const s of CLEAR_LEASES) await u.tx.run(s);
          // One process per database: any other row is a process that is gone (kill -9 leaves one behind).
          await u.tx.run(FORGET_OTHERS, { me: this.me });
        } else await repo.forgetSilent(u.now - this.silentMs);
        await repo.heartbeat(this.me, u.now);
      });
      this.beatingSince = this.clock();
      this.every(this.o.config.heartbeatMs, () => this.beat());
      this.every(this.o.config.pollMs, () => {
        for (const l of this.loops.values()) l.kick();
        this.sweepStream();
      });
      this.every(this.o.config.observerPollMs, () => {
        for (const r of this.observers.values()) r.kick();
      });
      this.every(DAY_MS / 24, () => this.purgeDeadLetters());
      if (this.o.dormancy) {
        this.every(DORMANCY_SWEEP_MS, () => {
          this.sweepDormant().catch((e: unknown) =>
            this.o.log.warn({ event: "dormancy-sweep-failed", err: (e as Error).message }, "sweep failed"),
          );
        });
      }
    }
    for (const r of this.observers.values()) r.kick();
    for (const l of this.loops.values()) l.kick();
  }

  /** Stops claiming, waits for the rounds in flight to settle, gives this process's leases back. */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    for (const t of this.timers.splice(0)) clearInterval(t);
    await this.o.delivery?.stop();
    await Promise.all([...this.loops.values()].map((l) => l.stop()));
    await Promise.all([...this.observers.values()].map((r) => r.stop()));
    if (!this.started) return;
    // Giving the leases back only saves the next process the wait: a lease whose owner stops beating is free
    // after MISSED_BEATS, and an exclusive start clears them all. So a store that fails now (closed, locked past
    // its timeout, the server gone) is logged, and the caller's shutdown goes on to close the link and the port.
    try {
      await this.o.uow("queue.stop", async (u) => {
        for (const s of RELEASE_MINE) await u.tx.run(s, { me: this.me });
        await jobsRepo(u.tx).forgetProcess(this.me);
      });
    } catch (e) {
      this.o.log.warn(
        { event: "queue-release-failed", err: (e as Error).message },
        "leases not given back at stop; they free themselves once this process's heartbeat is silent",
      );
    }
  }

  /** A lane hint: its consumers with a resource get a delivery round, the observers read what was appended. */
  kickLanes(lanes: readonly AccountId[]): void {
    if (this.stopped || !this.started || lanes.length === 0) return;
    this.o.delivery?.kickLanes(lanes);
    for (const r of this.observers.values()) r.kick();
  }

  kickChannel(name: string): void {
    if (this.stopped || !this.started) return;
    this.loops.get(name)?.kick();
  }

  /** An IQ result no request of this process matched: applied by inflight_iq if it was a batch's (§2.3.5). */
  async remoteAck(from: string, iqId: string): Promise<boolean> {
    if (this.stopped || !this.o.delivery || !this.o.laneOf) return false;
    const lane = await this.o.laneOf(from);
    return lane === undefined ? false : this.o.delivery.remoteAck(lane, iqId);
  }

  /**
   * §2.3.4: marks cursors idle past delivery.deviceIdleDays (device) / sharedIdleDays (shared, only beside an
   * active device cursor) dormant, in bounded units of work, and collects what they stopped holding. A dormant
   * consumer that shows up again is reactivated by its next delivery round (a device below the floor is sent
   * `resync` first). Returns how many went dormant; 0 without the `dormancy` option.
   */
  async sweepDormant(): Promise<number> {
    const d = this.o.dormancy;
    if (!d || this.stopped) return 0;
    let total = 0;
    for (;;) {
      const r = await this.o.uow("queue.dormancy", (u) =>
        streamRepo(u.tx).sweepDormant(u.now, { ...d, limit: DORMANCY_BATCH }),
      );
      total += r.dormant;
      if (r.dormant === 0 || this.stopped) break;
    }
    if (total > 0) this.o.log.info({ event: "cursors-dormant", n: total }, "idle cursors went dormant");
    return total;
  }

  /** Resolves when every loop and observer is idle (tests; a drain's own kicks included). */
  async idle(): Promise<void> {
    await Promise.all([...this.loops.values()].map((l) => l.idle()));
    await Promise.all([...this.observers.values()].map((r) => r.idle()));
  }

  async replayDeadLetters(which: { ids: readonly number[] } | { channel: string }): Promise<number> {
    const r = await this.o.uow("queue.dead-letters.replay", (u) => jobsRepo(u.tx).replayMany(which, u.now));
    for (const c of r.channels) if (this.channels.has(c)) this.kickChannel(c);
    return r.n;
  }

  async depth(): Promise<{
    stream: { entries: number; lanes: number; oldestMs: number };
    jobs: Record<string, { due: number; deferred: number; oldestMs: number; dead: number }>;
  }> {
    return this.o.store.read("queue.depth", async (r) => {
      const s = await r.get<{ entries: number; lanes: number; oldest: number | null }>(STREAM_DEPTH);
      const byChannel = await jobsRepo(r).depth(r.now);
      const jobs: Record<string, { due: number; deferred: number; oldestMs: number; dead: number }> = {};
      // Every registered channel is reported, 0 when empty, so a gauge's series never vanishes.
      for (const name of new Set([...this.channels.keys(), ...byChannel.keys()])) {
        const d = byChannel.get(name);
        jobs[name] = {
          due: d?.due ?? 0,
          deferred: d?.deferred ?? 0,
          oldestMs: d && d.due + d.deferred > 0 ? Math.max(0, r.now - d.oldestAt) : 0,
          dead: d?.dead ?? 0,
        };
      }
      const entries = Number(s?.entries ?? 0);
      return {
        stream: {
          entries,
          lanes: Number(s?.lanes ?? 0),
          oldestMs: entries > 0 && s?.oldest != null ? Math.max(0, r.now - Number(s.oldest)) : 0,
        },
        jobs,
      };
    });
  }

  private every(ms: number, fn: () => void): void {
    const t = setInterval(fn, ms);
    t.unref();
    this.timers.push(t);
  }

  private beat(): void {
    if (this.stopped) return;
    this.o
      .uow("queue.heartbeat", (u) => jobsRepo(u.tx).heartbeat(this.me, u.now))
      .then(() => {
        this.beatingSince ??= this.clock();
      })
      .catch((e: unknown) => {
        this.beatingSince = undefined;
        this.o.log.warn(
          { event: "heartbeat-failed", err: (e as Error).message },
          "could not write the heartbeat; leases may be taken over after 3 beats",
        );
      });
  }

  /** queue.pollMs's safety net for stream lanes a dead process held (StreamDelivery.sweep: one query). */
  private sweepStream(): void {
    if (this.stopped || !this.o.delivery) return;
    this.o.delivery
      .sweep()
      .catch((e: unknown) =>
        this.o.log.warn({ event: "stream-sweep-failed", err: (e as Error).message }, "stream sweep failed"),
      );
  }

  private purgeDeadLetters(): void {
    if (this.stopped) return;
    this.o
      .uow("queue.dead-letters.purge", (u) =>
        jobsRepo(u.tx).purgeDeadLetters(u.now - this.o.config.deadLetterDays * DAY_MS),
      )
      .catch((e: unknown) =>
        this.o.log.warn({ event: "dead-letter-purge-failed", err: (e as Error).message }, "purge failed"),
      );
  }
}
