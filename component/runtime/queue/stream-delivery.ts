/**
 * Stream delivery (docs/REDESIGN.md §2.3.3–2.3.5, §4.2; step S7): a per-consumer scheduler that moves a lane's
 * entries to the consumer's resources as `<updates/>` IQs, written beside component/delivery.ts (the legacy
 * core's, deleted at S11) and keeping its rules:
 *
 * - single flight per consumer (in memory here; the cursor's lease across processes), a kick during a flight
 *   runs one more round after it;
 * - a batch goes to every resource of the consumer and the first IQ result acknowledges it for all (the shared
 *   cursor: today's per-user outbox); a resource that comes online while a batch waits gets that batch at once;
 * - batches are cut by the stanza budget (runtime/budget.ts) and by `batchSize`;
 * - errors and timeouts retry with backoff (attempts and next_at on the cursor), a client's refusal counts as
 *   delivered (it would refuse again), every resource gone releases the consumer until presence brings one back.
 *
 * What the cursor adds: an ack moves `pos` to a seq (never back) and collects what every active cursor passed;
 * moot entries (renderer returned null) are passed with the batch's ack, or at once without an IQ when the whole
 * batch was moot; a renderer that throws keeps the cursor where it is (logged, retried with backoff, never
 * skipped). The transport is a small interface (StreamTransport) so the scheduler runs against any sender: the
 * component link's IqCaller in the app (S11), an in-process one in the unit tests.
 */
import { randomBytes } from "node:crypto";
import type { Logger } from "pino";
import type { Element } from "../../../stanzas/xml.js";
import { resyncElement, updateElement, updatesElement } from "../../../stanzas/cardlink.js";
import type { AccountId, Seq } from "../../../storage/store.js";
import { backoffDelay } from "../backoff.js";
import type { StanzaBudget } from "../budget.js";
import type { Reader, UnitOfWork, Uow } from "../uow.js";
import type { RenderCache, RenderContext, StreamKind } from "./api.js";
import { updateId } from "./registry.js";
import { streamRepo, type LaneEntry } from "./stream-repo.js";

/** How one `<updates/>` IQ to one full JID ended. */
export type SendOutcome = { type: "result" } | { type: "error"; condition: string } | { type: "timeout" };

/** Sends one IQ of type set carrying `payload` to a full JID and reports how it ended (never throws for that). */
export interface StreamTransport {
  send(iq: { id: string; to: string; payload: Element; timeoutMs: number }): Promise<SendOutcome>;
}

/** Which resources serve which consumer: the in-memory presence (runtime/presence.ts at S11; a test's own). */
export interface DeliveryPresence {
  /** Consumers of the lane with at least one available resource (0 = the shared cursor, else a device id). */
  consumers(lane: AccountId): readonly number[];
  /** Available full JIDs of that consumer (shared: the resources that declared no device). */
  resources(lane: AccountId, consumer: number): readonly string[];
  /** The server said this resource is not there: forget it. */
  gone(lane: AccountId, full: string): void;
  /**
   * True when the consumer (a declared device) asked for the compact update form (PROTOCOL §10.8). Absent or
   * false: §10.1's form, byte for byte.
   */
  compact?(lane: AccountId, consumer: number): boolean;
}

/** The delivery.* keys this file reads (§3.7). */
export interface StreamDeliveryConfig {
  readonly ackTimeoutMs: number;
  readonly retryBaseMs: number;
  readonly retryMaxMs: number;
  readonly batchSize: number;
  /** batchSize for a consumer that asked for compact updates (PROTOCOL §10.8); absent: batchSize. */
  readonly compactBatchSize?: number;
  /**
   * A consumer sent to less than this long ago waits until then before its next round starts (an idle one sends
   * at once): changes arriving in a burst reach it in fewer, fuller IQs (§4.2 (3)). 0 or absent: no wait.
   */
  readonly coalesceWindowMs?: number;
  /**
   * Acks arriving within this many ms are written in one unit of work, and the claims one event-loop turn starts
   * in another (§4.2 (4)). 0 or absent: each is its own unit of work.
   */
  readonly ackBatchMs?: number;
  /** Consumers with a round in progress at once (each holds its slot until its page is acked); default 256. */
  readonly maxConcurrentConsumers?: number;
}

export interface StreamDeliveryOptions {
  readonly uow: Uow;
  readonly read: Reader;
  readonly kind: (name: string) => StreamKind | undefined;
  readonly transport: StreamTransport;
  readonly presence: DeliveryPresence;
  readonly budget: StanzaBudget;
  readonly log: Logger;
  readonly config: StreamDeliveryConfig;
  readonly leaseMs: number;
  /** Lease owner: the engine's process id. */
  readonly me: string;
  /**
   * The engine's heartbeat rule (Engine.silentMs: 3 missed beats): a lease of a process silent this long is
   * free to claim, as jobs' and observers' are (jobs-repo.ts LEASE_FREE). Omitted: only expiry frees a lease.
   */
  readonly silentMs?: number;
  /** queue.persistInflight: record each IQ's id on the cursor so another process can apply its result. */
  readonly persistInflight?: boolean;
  /**
   * Several processes (runtime/wake.ts): a remote ack notifies the lane on this channel in its unit of work, so
   * the process holding the user's resources sends the next page (its own timeout would only end in a retry).
   */
  readonly wakeChannel?: string;
  readonly random?: () => number;
  /** Every resource of the consumer turned out to be gone (push announces what waits: S8's seam). */
  readonly onAllGone?: (lane: AccountId, consumer: number) => void;
  /** Outcome counters for the metrics (createCardlink: today's cardlink_delivery_* series). */
  readonly hooks?: DeliveryHooks;
  /** Wall clock of the coalescing window (tests pin it); default Date.now. */
  readonly clock?: () => number;
}

/** Told what each page's delivery came to; never throws back into the round. */
export interface DeliveryHooks {
  /** A page was acknowledged: its entries, with when each was written (the latency histogram's start). */
  acked?(entries: ReadonlyArray<{ kind: string; createdAt: number }>): void;
  /** A page was not acknowledged (timeout, link down): `n` entries wait for the retry. */
  retried?(n: number): void;
  /** Every resource of the consumer turned out to be gone. */
  gone?(): void;
  /** A read was cut into several pages by the stanza budget or batchSize: `n` cuts. */
  cut?(n: number): void;
}

/** Today's bound on consumers delivering at once (component/delivery.ts MAX_CONCURRENT_FLUSHES). */
export const MAX_CONCURRENT_CONSUMERS = 256;
/** Conditions meaning "that resource is not there" (Prosody's answer for an IQ to an offline full JID). */
const GONE = new Set([
  "service-unavailable",
  "recipient-unavailable",
  "item-not-found",
  "remote-server-not-found",
]);

type Outcome = "acked" | "gone" | "retry";
interface Page {
  payload: Element;
  /** The rendered entries it carries (metrics: kind and write time). */
  entries: LaneEntry[];
  /** What an ack of this page lets the cursor move to (a seq every entry of which is covered), or undefined. */
  upto: Seq | undefined;
}

const key = (lane: AccountId, consumer: number): string => `${lane}:${consumer}`;

/** A claimed cursor; `resync`: a dormant device below the floor, owed `<update kind='resync'/>` first (§2.3.4). */
interface Claimed {
  id: number;
  pos: Seq;
  attempts: number;
  resync?: { seq: Seq; device: string };
}
type ClaimResult = { wait: number } | { skip: string } | { claimed: Claimed };
interface Pending<A, R> {
  arg: A;
  resolve: (r: R) => void;
  reject: (e: unknown) => void;
}

/**
 * Gathers calls made within a short span and runs them in one unit of work (`run` gets every argument, in
 * order, and returns one result per argument). When that unit of work fails, each call is tried again alone, so
 * one bad call costs the others a retry, never their outcome.
 */
class Batcher<A, R> {
  private queue: Array<Pending<A, R>> = [];
  private armed = false;

  constructor(
    private readonly delayMs: number,
    private readonly run: (args: readonly A[]) => Promise<R[]>,
  ) {}

  call(arg: A): Promise<R> {
    return new Promise<R>((resolve, reject) => {
      this.queue.push({ arg, resolve, reject });
      if (this.armed) return;
      this.armed = true;
      // 0: the end of this event-loop turn (setImmediate runs after every promise continuation of the turn).
      if (this.delayMs > 0) setTimeout(() => void this.flush(), this.delayMs);
      else setImmediate(() => void this.flush());
    });
  }

  private async flush(): Promise<void> {
    this.armed = false;
    const batch = this.queue;
    this.queue = [];
    try {
      const results = await this.run(batch.map((p) => p.arg));
      batch.forEach((p, i) => p.resolve(results[i] as R));
    } catch (e) {
      if (batch.length === 1) {
        batch[0]?.reject(e);
        return;
      }
      for (const p of batch) await this.run([p.arg]).then(([r]) => p.resolve(r as R), p.reject);
    }
  }
}

class RoundCache implements RenderCache {
  private readonly m = new Map<string, Promise<unknown>>();
  get<T>(kind: string, k: string, load: () => Promise<T>): Promise<T> {
    const id = `${kind}\u0000${k}`;
    let p = this.m.get(id) as Promise<T> | undefined;
    if (!p) {
      p = load();
      this.m.set(id, p);
    }
    return p;
  }
}

export class StreamDelivery {
  private readonly flying = new Set<string>();
  private readonly again = new Map<string, boolean>();
  private readonly running = new Set<Promise<void>>();
  /** The rounds of each lane still running (settled() waits for them). */
  private readonly laneRounds = new Map<AccountId, Set<Promise<void>>>();
  private readonly timers = new Map<string, NodeJS.Timeout>();
  /** Consumers whose next round waits for the coalescing window (kicks meanwhile add nothing). */
  private readonly windowTimers = new Map<string, NodeJS.Timeout>();
  /** When each consumer was last sent an IQ (the coalescing window); pruned as it grows. */
  private readonly lastSent = new Map<string, number>();
  private lastSentPruneAt = 1024;
  private readonly clock: () => number;
  private readonly claims:
    Batcher<{ lane: AccountId; consumer: number; ignoreRetry: boolean }, ClaimResult> | undefined;
  private readonly acks: Batcher<{ cursor: number; upto: Seq; keep: boolean }, undefined> | undefined;
  /** Per consumer with a page waiting for its ack: offers that page to a resource that came online. */
  private readonly inflight = new Map<string, (full: string) => void>();
  private readonly waiting: Array<() => void> = [];
  private active = 0;
  private stopped = false;
  private iqs = 0;
  /** IQ ids are `<this instance's random tag>-<counter>`: unique across processes and restarts. */
  private readonly tag = randomBytes(4).toString("hex");

  constructor(private readonly o: StreamDeliveryOptions) {
    this.clock = o.clock ?? Date.now;
    // Without ack batching every claim and every ack is its own unit of work, as before S15.
    if ((o.config.ackBatchMs ?? 0) > 0) {
      this.claims = new Batcher(0, (args) =>
        this.o.uow("queue.claim", (u) => sequence(args, (a) => this.claimIn(u, a))),
      );
      this.acks = new Batcher(o.config.ackBatchMs ?? 0, (args) =>
        this.o.uow("queue.ack", async (u) => {
          const repo = streamRepo(u.tx);
          await repo.ack(
            this.o.me,
            args.map((a) => ({ cursor: a.cursor, upto: a.upto })),
            u.now,
          );
          const keep = args.filter((a) => a.keep).map((a) => a.cursor);
          if (keep.length > 0) await repo.claim(this.o.me, keep, u.now, u.now + this.o.leaseMs);
          return args.map(() => undefined);
        }),
      );
    }
  }

  /** Post-commit hint: deliver to every consumer of these lanes that has a resource (none: push-scan's). */
  kickLanes(lanes: readonly AccountId[]): void {
    for (const lane of lanes) for (const c of this.o.presence.consumers(lane)) this.kick(lane, c, false);
  }

  /**
   * A resource of the consumer became available: it gets the page in flight at once (today's re-offer), and a
   * round runs now even if the cursor waits for a retry (the failure was another resource's).
   */
  available(lane: AccountId, consumer: number, full: string): void {
    this.inflight.get(key(lane, consumer))?.(full);
    this.kick(lane, consumer, true);
  }

  /**
   * Runs a delivery round for (lane, consumer) unless one is running (then one more follows it). `now` = ignore
   * the cursor's retry time.
   */
  kick(lane: AccountId, consumer: number, now: boolean): void {
    if (this.stopped) return;
    const k = key(lane, consumer);
    if (this.flying.has(k)) {
      this.again.set(k, (this.again.get(k) ?? false) || now);
      return;
    }
    // The coalescing window: a consumer sent to moments ago waits for the rest of the window, so what arrives
    // meanwhile goes in the same IQ. A resource coming online (`now`) does not wait.
    if (!now && this.holdForWindow(lane, consumer, k)) return;
    this.flying.add(k);
    const task = this.round(lane, consumer, now)
      .catch((e: unknown) =>
        this.o.log.error(
          { event: "stream-round-failed", lane, consumer, err: (e as Error).message },
          "stream delivery round failed",
        ),
      )
      .finally(() => {
        this.running.delete(task);
        const rounds = this.laneRounds.get(lane);
        rounds?.delete(task);
        if (rounds?.size === 0) this.laneRounds.delete(lane);
        this.flying.delete(k);
        const next = this.again.get(k);
        if (next !== undefined) {
          this.again.delete(k);
          this.kick(lane, consumer, next);
        }
      });
    this.running.add(task);
    let rounds = this.laneRounds.get(lane);
    if (!rounds) this.laneRounds.set(lane, (rounds = new Set()));
    rounds.add(task);
  }

  /** An IQ result that reached this process for a batch another process sent (by the recorded IQ id). */
  async remoteAck(lane: AccountId, iqId: string): Promise<boolean> {
    const applied = await this.o.uow("queue.remote-ack", async (u) => {
      const ok = await streamRepo(u.tx).remoteAck(lane, iqId, u.now);
      if (ok && this.o.wakeChannel !== undefined) await u.tx.notify?.(this.o.wakeChannel, String(lane));
      return ok;
    });
    if (applied) this.kickLanes([lane]);
    return applied;
  }

  /**
   * The safety net for a lane another process held when it died (docs/DECISIONS.md): a kick while its lease
   * held was refused and set no timer, so without this the lane would wait for the next append or presence
   * change. One indexed statement finds consumers with entries after pos whose lease ran out or whose owner
   * went silent; those with an available resource here get a round. Returns how many were kicked.
   */
  async sweep(): Promise<number> {
    if (this.stopped) return 0;
    const stale = await this.o.read("queue.sweep", (r) =>
      streamRepo(r.read).staleLeases(this.o.me, r.read.now, this.alive(r.read.now), MAX_CONCURRENT_CONSUMERS),
    );
    let kicked = 0;
    for (const s of stale) {
      if (this.o.presence.resources(s.lane, s.consumer).length === 0) continue;
      this.kick(s.lane, s.consumer, false);
      kicked++;
    }
    return kicked;
  }

  /** Heartbeats at or after this keep their owner's leases (no silentMs: every lease until it expires). */
  private alive(now: number): number {
    return this.o.silentMs === undefined ? Number.MIN_SAFE_INTEGER : now - this.o.silentMs;
  }

  /** Resolves when no round runs (tests; rounds a finishing round starts included). */
  /**
   * Resolves once the lane's running rounds have ended — an acknowledged page's ack is committed before its round
   * ends — or after `maxMs`, whichever is first. The presence path calls it when a user's last resource goes, so
   * that an ack which reached cardlink just before the unavailable presence is written before push looks at what
   * is still waiting (else the device is woken for an update it already has).
   */
  async settled(lane: AccountId, maxMs: number): Promise<void> {
    const rounds = this.laneRounds.get(lane);
    if (!rounds || rounds.size === 0) return;
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      Promise.allSettled([...rounds]),
      new Promise<void>((r) => {
        timer = setTimeout(r, maxMs);
      }),
    ]);
    clearTimeout(timer);
  }

  async idle(): Promise<void> {
    while (this.running.size > 0) await Promise.allSettled([...this.running]);
  }

  /** Stops new rounds and waits for the ones in flight to record their outcome. */
  async stop(): Promise<void> {
    this.stopped = true;
    for (const t of this.timers.values()) clearTimeout(t);
    this.timers.clear();
    for (const t of this.windowTimers.values()) clearTimeout(t);
    this.windowTimers.clear();
    await this.idle();
  }

  /** True (and a timer armed, unless one is) while the consumer's coalescing window is open. */
  private holdForWindow(lane: AccountId, consumer: number, k: string): boolean {
    const windowMs = this.o.config.coalesceWindowMs ?? 0;
    if (windowMs <= 0) return false;
    if (this.windowTimers.has(k)) return true;
    const sent = this.lastSent.get(k);
    if (sent === undefined) return false;
    const wait = sent + windowMs - this.clock();
    if (wait <= 0) {
      this.lastSent.delete(k);
      return false;
    }
    const t = setTimeout(() => {
      this.windowTimers.delete(k);
      this.kick(lane, consumer, false);
    }, wait);
    t.unref();
    this.windowTimers.set(k, t);
    return true;
  }

  /** Notes a send for the window; drops the entries whose window closed once the map has doubled. */
  private noteSent(k: string): void {
    const windowMs = this.o.config.coalesceWindowMs ?? 0;
    if (windowMs <= 0) return;
    const now = this.clock();
    this.lastSent.set(k, now);
    if (this.lastSent.size < this.lastSentPruneAt) return;
    for (const [x, at] of this.lastSent) if (at + windowMs <= now) this.lastSent.delete(x);
    this.lastSentPruneAt = Math.max(1024, 2 * this.lastSent.size);
  }

  /** True while a coalescing-window timer holds the consumer's next round (tests). */
  waitingWindow(lane: AccountId, consumer: number): boolean {
    return this.windowTimers.has(key(lane, consumer));
  }

  private async slot(): Promise<() => void> {
    const max = this.o.config.maxConcurrentConsumers ?? MAX_CONCURRENT_CONSUMERS;
    if (this.active >= max) await new Promise<void>((r) => this.waiting.push(r));
    else this.active++;
    return () => {
      const next = this.waiting.shift();
      if (next) next();
      else this.active--;
    };
  }

  private async round(lane: AccountId, consumer: number, ignoreRetry: boolean): Promise<void> {
    const release = await this.slot();
    try {
      while (!this.stopped) {
        if (this.o.presence.resources(lane, consumer).length === 0) return;
        const claimed = await this.claim(lane, consumer, ignoreRetry);
        if (!claimed) return;
        const more = await this.deliver(lane, consumer, claimed);
        if (!more) return;
        ignoreRetry = false;
      }
    } finally {
      release();
    }
  }

  /**
   * Claim uow: the consumer's cursor, leased to this process (undefined: no cursor, leased elsewhere, or waiting
   * for a retry — then a timer is armed). A dormant cursor is reactivated: the consumer showed up; a dormant
   * device below the floor is claimed as it is, with the resync it owes (S12).
   */
  private async claim(lane: AccountId, consumer: number, ignoreRetry: boolean): Promise<Claimed | undefined> {
    // Claims that start in the same event-loop turn share a unit of work (with ack batching on).
    const a = { lane, consumer, ignoreRetry };
    const r = this.claims
      ? await this.claims.call(a)
      : await this.o.uow("queue.claim", (u) => this.claimIn(u, a));
    if ("wait" in r) {
      this.schedule(lane, consumer, r.wait);
      return undefined;
    }
    if ("skip" in r) {
      this.o.log.debug({ event: `stream-claim-${r.skip}`, lane, consumer });
      return undefined;
    }
    return r.claimed;
  }

  /** One consumer's claim inside a claim unit of work (one of a batch). */
  private async claimIn(
    u: UnitOfWork,
    a: { lane: AccountId; consumer: number; ignoreRetry: boolean },
  ): Promise<ClaimResult> {
    const { lane, consumer, ignoreRetry } = a;
    const repo = streamRepo(u.tx);
    const c = await repo.cursor(lane, consumer);
    if (!c) return { skip: "no-cursor" };
    if (!ignoreRetry && c.nextAt > u.now) return { wait: c.nextAt - u.now };
    const [got] = await repo.claim(
      this.o.me,
      [c.id],
      u.now,
      u.now + this.o.leaseMs,
      this.o.silentMs === undefined ? undefined : this.alive(u.now),
    );
    if (!got) return { skip: "leased" };
    if (got.state === "dormant") {
      // A device whose missed entries were collected is told to resync first; its cursor stays dormant until
      // that update is acknowledged (deliver), so a resync lost with its IQ is sent again, never skipped.
      const floor = consumer === 0 ? 0 : await repo.floor(lane);
      if (consumer !== 0 && got.pos < floor) {
        const device = (await u.accounts.devices(lane)).find((d) => d.key === consumer);
        const resync = { seq: floor, device: device?.deviceId ?? String(consumer) };
        return { claimed: { id: got.id, pos: got.pos, attempts: got.attempts, resync } };
      }
      await repo.reactivate(got.id, u.now);
      const again = await repo.cursorById(got.id);
      return { claimed: { id: got.id, pos: again?.pos ?? got.pos, attempts: got.attempts } };
    }
    return { claimed: { id: got.id, pos: got.pos, attempts: got.attempts } };
  }

  /**
   * Reads the lane from pos, renders, cuts into pages, sends them one after another (each: first result wins)
   * and acks. True when the lane may hold more (the read hit batchSize): the caller claims again. Entries written
   * after the read come with their own kick, which a running round turns into one more round.
   */
  private async deliver(lane: AccountId, consumer: number, cur: Claimed): Promise<boolean> {
    if (cur.resync) return this.resync(lane, consumer, cur, cur.resync);
    let rendered: { pages: Page[]; upto: Seq; read: number; more: boolean };
    try {
      // The form is read when the page is rendered: a declaration that changes it applies from the next page (a
      // page in flight is re-offered as it was; PROTOCOL §10.8 tells a compact client to accept both forms).
      rendered = await this.render(lane, cur.pos, this.o.presence.compact?.(lane, consumer) ?? false);
    } catch (e) {
      // The cursor stays: the entry is not skipped, it is tried again after the backoff.
      this.o.log.error(
        { event: "stream-render-failed", lane, consumer, err: (e as Error).message },
        "a renderer threw; the cursor keeps its position",
      );
      await this.retry(lane, consumer, cur);
      return false;
    }
    if (rendered.read === 0) {
      await this.o.uow("queue.release", (u) => streamRepo(u.tx).release(this.o.me, [cur.id]));
      return false;
    }
    if (rendered.pages.length === 0) {
      // Every entry was moot: the cursor passes them without an IQ.
      await this.ack(cur.id, rendered.upto, false);
      return rendered.more;
    }
    if (rendered.pages.length > 1) this.o.hooks?.cut?.(rendered.pages.length - 1);
    for (let i = 0; i < rendered.pages.length; i++) {
      const page = rendered.pages[i] as Page;
      const last = i === rendered.pages.length - 1;
      const outcome = await this.sendToAll(lane, consumer, cur.id, page);
      if (outcome === "gone") {
        this.o.hooks?.gone?.();
        await this.o.uow("queue.release", (u) => streamRepo(u.tx).release(this.o.me, [cur.id]));
        this.o.onAllGone?.(lane, consumer);
        return false;
      }
      if (outcome === "retry") {
        this.o.hooks?.retried?.(page.entries.length);
        await this.retry(lane, consumer, cur);
        return false;
      }
      this.o.hooks?.acked?.(page.entries);
      // An earlier page's ack moves pos to the last seq it covered whole (if any) and keeps the lease for the
      // next page; the last page's passes the whole read.
      if (page.upto !== undefined) await this.ack(cur.id, page.upto, !last);
    }
    return rendered.more;
  }

  /**
   * §2.3.4 / PROTOCOL §10.1 `resync`: one synthesized update (not a stream entry; id `resync:<device>:<floor>`)
   * sent like any page. Its ack reactivates the cursor at the lane's floor as it is then (anything collected
   * meanwhile is covered by the pull sync the client now runs), and the round goes on from there.
   */
  private async resync(
    lane: AccountId,
    consumer: number,
    cur: Claimed,
    r: { seq: Seq; device: string },
  ): Promise<boolean> {
    const update = updateElement(
      { id: updateId("resync", r.device, r.seq), kind: "resync", seq: r.seq },
      resyncElement("idle"),
    );
    const page: Page = { payload: updatesElement([update]), entries: [], upto: undefined };
    const outcome = await this.sendToAll(lane, consumer, cur.id, page);
    if (outcome === "gone") {
      // As a page's: released without an attempt; the cursor stays dormant, the resync waits for a resource.
      this.o.hooks?.gone?.();
      await this.o.uow("queue.release", (u) => streamRepo(u.tx).release(this.o.me, [cur.id]));
      this.o.onAllGone?.(lane, consumer);
      return false;
    }
    if (outcome === "retry") {
      await this.retry(lane, consumer, cur);
      return false;
    }
    await this.o.uow("queue.resync", async (u) => {
      const repo = streamRepo(u.tx);
      await repo.reactivate(cur.id, u.now);
      // An acknowledgement like any other: attempts and the retry time reset, the lease is given back (pos is
      // the floor already: an ack up to 0 never moves it).
      await repo.ack(this.o.me, [{ cursor: cur.id, upto: 0 }], u.now);
    });
    this.o.log.info({ event: "stream-resync-sent", lane, consumer, seq: r.seq }, "device told to resync");
    return true;
  }

  /** One read snapshot: the lane after pos, rendered with one round cache, cut by the budget and batchSize. */
  private async render(
    lane: AccountId,
    pos: Seq,
    compact: boolean,
  ): Promise<{ pages: Page[]; upto: Seq; read: number; more: boolean }> {
    const size = compact
      ? (this.o.config.compactBatchSize ?? this.o.config.batchSize)
      : this.o.config.batchSize;
    return this.o.read("queue.render", async (r) => {
      const batch = await streamRepo(r.read).read(lane, pos, size);
      const cache = new RoundCache();
      const budget = this.o.budget;
      const ctx: RenderContext = {
        get read() {
          return r.read;
        },
        get accounts() {
          return r.accounts;
        },
        get audience() {
          return r.audience;
        },
        budget,
        cache,
        compact,
      };
      const pages: Page[] = [];
      let page = budget.page(size);
      let pageEntries: LaneEntry[] = [];
      const close = (nextSeq: Seq | undefined): void => {
        if (page.items.length === 0) return;
        const lastSeq = pageEntries.at(-1)?.seq as Seq;
        // The page covers its last seq whole unless the next page starts inside it.
        const whole = nextSeq === undefined || nextSeq !== lastSeq;
        const upto = whole ? lastSeq : seqBefore(pageEntries, lastSeq);
        pages.push({ payload: updatesElement(page.items), entries: pageEntries, upto });
        page = budget.page(size);
        pageEntries = [];
      };
      for (const e of batch.entries) {
        const kind = this.o.kind(e.kind);
        if (!kind) {
          this.o.log.error({ event: "no-renderer", kind: e.kind }, "stream entry of unknown kind passed");
          continue;
        }
        const content = await kind.render(ctx, e);
        if (!content) continue;
        const wire =
          kind.subject === "account" && e.subjectAccount !== undefined
            ? await cache.get("jid", String(e.subjectAccount), () =>
                ctx.accounts.jidOf(e.subjectAccount as AccountId),
              )
            : e.subject;
        const update = updateElement(
          { id: updateId(e.kind, wire, e.seq), kind: e.kind, seq: e.seq },
          content,
        );
        if (!page.add(update)) {
          if (page.items.length === 0) {
            // A single update over the budget cannot exist (card.maxBytes is checked against it); the send
            // path's guard refuses it if a bug made one.
            page.items.push(update);
          } else {
            close(e.seq);
            page.add(update);
          }
        }
        pageEntries.push(e);
      }
      close(undefined);
      // The last page's ack passes the whole read, trailing moot entries included.
      const tail = pages.at(-1);
      if (tail) tail.upto = batch.upto;
      return { pages, upto: batch.upto, read: batch.entries.length, more: batch.more };
    });
  }

  /**
   * Ack uow: pos moves (never back), GC runs; `keep` re-takes the lease in the same transaction. With ack
   * batching, the acks of ackBatchMs share one unit of work.
   */
  private async ack(cursor: number, upto: Seq, keep: boolean): Promise<void> {
    if (this.acks) {
      await this.acks.call({ cursor, upto, keep });
      return;
    }
    await this.o.uow("queue.ack", async (u) => {
      const repo = streamRepo(u.tx);
      await repo.ack(this.o.me, [{ cursor, upto }], u.now);
      if (keep) await repo.claim(this.o.me, [cursor], u.now, u.now + this.o.leaseMs);
    });
  }

  private async retry(
    lane: AccountId,
    consumer: number,
    cur: { id: number; attempts: number },
  ): Promise<void> {
    const delay = backoffDelay(
      cur.attempts,
      this.o.config.retryBaseMs,
      this.o.config.retryMaxMs,
      this.o.random,
    );
    const counted = await this.o.uow("queue.retry", (u) =>
      streamRepo(u.tx).retry(this.o.me, cur.id, u.now + delay),
    );
    // Not counted: the cursor is no longer ours (the result reached another process, or another process took
    // the lease over); whoever has it now delivers, no timer here.
    if (counted) this.schedule(lane, consumer, delay);
    else this.o.log.debug({ event: "stream-retry-late", lane, consumer });
  }

  private schedule(lane: AccountId, consumer: number, delay: number): void {
    if (this.stopped) return;
    const k = key(lane, consumer);
    clearTimeout(this.timers.get(k));
    const t = setTimeout(
      () => {
        this.timers.delete(k);
        this.kick(lane, consumer, false);
      },
      Math.max(10, delay),
    );
    t.unref();
    this.timers.set(k, t);
  }

  /** True while a retry timer is armed for the consumer (tests). */
  waitingRetry(lane: AccountId, consumer: number): boolean {
    return this.timers.has(key(lane, consumer));
  }

  /**
   * Sends one page to every resource of the consumer and settles on the first result (or refusal): a live phone
   * is not held up by a stale resource that will only time out. While it waits, a resource that comes online
   * gets it at once. "gone" when every resource turned out to be gone, "retry" when none acked.
   */
  private sendToAll(lane: AccountId, consumer: number, cursor: number, page: Page): Promise<Outcome> {
    const k = key(lane, consumer);
    const resources = this.o.presence.resources(lane, consumer);
    if (resources.length === 0) return Promise.resolve("gone");
    const id = `cls-${this.tag}-${(++this.iqs).toString(36)}`;
    return new Promise((resolve, reject) => {
      let open = 0;
      let done = false;
      let allGone = true;
      const finish = (r: Outcome): void => {
        if (done) return;
        done = true;
        this.inflight.delete(k);
        resolve(r);
      };
      const attempt = (to: string): void => {
        open++;
        const settle = (r: SendOutcome): void => {
          open--;
          if (r.type === "result") return finish("acked");
          if (r.type === "error" && GONE.has(r.condition)) this.o.presence.gone(lane, to);
          else if (r.type === "error") {
            // A live client that refuses an update will refuse it again: log it, count it as delivered.
            this.o.log.warn(
              { event: "update-refused", to, condition: r.condition },
              "client refused an update",
            );
            return finish("acked");
          } else allGone = false;
          if (open === 0) finish(allGone ? "gone" : "retry");
        };
        this.o.transport
          .send({ id, to, payload: page.payload, timeoutMs: this.o.config.ackTimeoutMs })
          .then(settle, (e: unknown) => {
            // A transport that throws failed this attempt; the page is retried, not lost.
            this.o.log.debug({ event: "update-send-failed", to, err: (e as Error).message });
            settle({ type: "timeout" });
          });
      };
      const go = (): void => {
        this.noteSent(k);
        // Single flight per consumer: at most one page in flight to re-offer.
        this.inflight.set(k, (full) => {
          if (!done) attempt(full);
        });
        for (const to of resources) attempt(to);
      };
      if (this.o.persistInflight && page.upto !== undefined) {
        this.o
          .uow("queue.inflight", (u) => streamRepo(u.tx).inflight(this.o.me, cursor, id, page.upto as Seq))
          .then(go, reject);
      } else go();
    });
  }
}

/** Runs `fn` over `xs` one after another (inside one unit of work: its statements must not interleave). */
async function sequence<A, R>(xs: readonly A[], fn: (x: A) => Promise<R>): Promise<R[]> {
  const out: R[] = [];
  for (const x of xs) out.push(await fn(x));
  return out;
}

/** The highest seq below `seq` among the page's entries (the last one it holds whole), or undefined. */
function seqBefore(entries: readonly LaneEntry[], seq: Seq): Seq | undefined {
  let best: Seq | undefined;
  for (const e of entries) if (e.seq < seq) best = e.seq;
  return best;
}
