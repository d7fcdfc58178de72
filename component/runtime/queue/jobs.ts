/**
 * The generic job loop, one per channel (docs/REDESIGN.md §2.3.6, §4.3): what component/push-dispatcher.ts does
 * for push, for any JobChannel.
 *
 *   uow "jobs.claim"  drop expired jobs; lease up to `concurrency` due jobs to this process
 *   read "jobs.gate"  the channel may defer some (push: hourly budget) → uow "jobs.defer" (no attempt counted)
 *   send              outside any unit of work (network I/O never holds the write lock)
 *   uow "jobs.settle" per outcome: done/drop → delete if rev unchanged, else release for the newer body;
 *                     retry → attempts + 1, next_at = now + max(backoff, afterMs); exhausted → drop or dead
 *                     letter (channel.onExhausted); dead → dead letter; then the channel's own settle
 *
 * Single flight per channel in this process (a kick while draining runs one more round); across processes the
 * lease keeps claims disjoint. After a drain a timer is armed for the next due job; the engine's poll
 * (queue.pollMs) is the safety net for everything a timer cannot know (other processes' expired leases).
 */
import { SingleFlight } from "./single-flight.js";
import type { Logger } from "pino";
import { backoffDelay } from "../backoff.js";
import type { DomainEvents } from "../events.js";
import type { Uow } from "../uow.js";
import type { Store } from "../../../storage/store.js";
import type { ClaimedJob, JobChannel, JobOutcome } from "./api.js";
import { jobsRepo, type JobRow } from "./jobs-repo.js";

/** What happened to jobs beside the channel's own outcomes, for metrics (the channel counts its outcomes). */
export type LoopEvent = "expired" | "deferred" | "exhausted" | "dead-letter" | "replaced-in-flight";

export interface JobLoopOptions {
  readonly store: Pick<Store, "read">;
  readonly uow: Uow;
  /** This process's lease owner id (`<hostname>:<pid>:<8 hex>`). */
  readonly me: string;
  readonly leaseMs: number;
  /** Heartbeats older than this many ms free their owner's leases (3 × queue.heartbeatMs). */
  readonly silentMs: number;
  readonly log: Logger;
  /** The clock the timers compare next_at with; the store's clock (tests pin both). */
  readonly clock?: () => number;
  /** Backoff jitter (tests pin it). */
  readonly random?: () => number;
  readonly onEvent?: (channel: string, e: LoopEvent, n: number) => void;
}

/** The fallback outcome when a channel returns fewer outcomes than jobs (a bug in the channel, not the job). */
const MISSING: JobOutcome = { status: "retry", reason: "no outcome" };

export class JobLoop {
  private timer: NodeJS.Timeout | null = null;
  private stopped = false;
  private readonly clock: () => number;

  constructor(
    readonly channel: JobChannel,
    private readonly o: JobLoopOptions,
  ) {
    this.clock = o.clock ?? Date.now;
  }

  /** Drains the channel now (new jobs, start, poll). A kick during a drain runs one more round after it. */
  kick(): void {
    if (!this.stopped) this.flight.kick();
  }

  private readonly flight = new SingleFlight(() =>
    this.drain()
      .catch((e: unknown) =>
        this.o.log.error(
          { event: "jobs-drain-failed", channel: this.channel.name, err: (e as Error).message },
          "job loop failed; the poll retries",
        ),
      )
      .then(() => this.arm())
      .catch((e: unknown) =>
        this.o.log.error(
          { event: "jobs-arm-failed", channel: this.channel.name, err: (e as Error).message },
          "could not arm the job timer; the poll retries",
        ),
      ),
  );

  /** Resolves when the current drain (if any) and the ones it queued have ended. For tests and stop(). */
  async idle(): Promise<void> {
    await this.flight.idle();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    await this.idle();
  }

  private async arm(): Promise<void> {
    if (this.stopped) return;
    const next = await this.o.store.read("jobs.next", (r) => jobsRepo(r).nextAt(this.channel.name));
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    if (next === undefined || this.stopped) return;
    this.timer = setTimeout(() => this.kick(), Math.max(5, next - this.clock()));
    this.timer.unref();
  }

  private async drain(): Promise<void> {
    while (!this.stopped) {
      const claimed = await this.claim();
      if (claimed.length === 0) return;
      const ready = await this.gate(claimed);
      if (ready.length === 0) continue;
      let outcomes: JobOutcome[];
      try {
        outcomes = await this.channel.send(ready);
      } catch (e) {
        // §3.3: a throwing send is every job's retry (a transport failure, not one job's fault).
        const reason = (e as Error).message;
        outcomes = ready.map(() => ({ status: "retry", reason }));
      }
      await this.settle(ready, outcomes);
    }
  }

  private claim(): Promise<JobRow[]> {
    const c = this.channel;
    return this.o.uow("jobs.claim", async (u) => {
      const repo = jobsRepo(u.tx);
      const alive = u.now - this.o.silentMs;
      const expired = await repo.dropExpired(c.name, u.now, alive);
      if (expired > 0) this.o.onEvent?.(c.name, "expired", expired);
      return repo.claim(c.name, this.o.me, {
        now: u.now,
        until: u.now + this.o.leaseMs,
        alive,
        n: c.concurrency,
      });
    });
  }

  /** The channel's gate over a read snapshot; deferred jobs get their not-before and leave this round. */
  private async gate(claimed: JobRow[]): Promise<JobRow[]> {
    const gate = this.channel.gate?.bind(this.channel);
    if (!gate) return claimed;
    const deferred = await this.o.store.read("jobs.gate", (r) => gate(r, claimed, r.now));
    if (deferred.size === 0) return claimed;
    await this.o.uow("jobs.defer", async (u) => {
      const repo = jobsRepo(u.tx);
      for (const [id, notBefore] of deferred) await repo.defer(id, this.o.me, notBefore);
    });
    this.o.onEvent?.(this.channel.name, "deferred", deferred.size);
    return claimed.filter((j) => !deferred.has(j.id));
  }

  private async settle(jobs: JobRow[], outcomes: readonly JobOutcome[]): Promise<void> {
    const c = this.channel;
    const counts = new Map<LoopEvent, number>();
    const count = (e: LoopEvent): void => void counts.set(e, (counts.get(e) ?? 0) + 1);
    const aligned = jobs.map((_, i) => outcomes[i] ?? MISSING);
    await this.o.uow("jobs.settle", async (u) => {
      counts.clear(); // the store may retry this function: count the attempt that commits
      const repo = jobsRepo(u.tx);
      const final = async (j: JobRow): Promise<void> => {
        if ((await repo.settleFinal(j.id, j.rev, this.o.me, u.now)) === "kept") count("replaced-in-flight");
      };
      const dead = async (j: JobRow, reason: string): Promise<void> => {
        // The letter keeps what was tried; a body that replaced it in flight stays queued (final's rev check).
        await repo.deadLetter(j, reason, u.now);
        count("dead-letter");
        await final(j);
      };
      for (let i = 0; i < jobs.length; i++) {
        const j = jobs[i] as JobRow;
        const out = aligned[i] as JobOutcome;
        let settled: DomainEvents["job.settled"]["outcome"];
        switch (out.status) {
          case "done":
          case "drop":
            await final(j);
            settled = out.status === "done" ? "done" : "dropped";
            break;
          case "dead":
            await dead(j, out.reason);
            settled = "dead";
            break;
          case "retry":
            if (j.attempts + 1 >= c.maxAttempts) {
              count("exhausted");
              if (c.onExhausted === "dead-letter") await dead(j, out.reason);
              else await final(j);
              settled = c.onExhausted === "dead-letter" ? "dead" : "dropped";
              break;
            }
            await repo.retry(j.id, this.o.me, u.now + this.retryDelay(j, out.afterMs), out.reason);
            settled = "retry";
            break;
        }
        await u.emit("job.settled", {
          channel: c.name,
          kind: j.kind,
          uid: j.uid,
          ...(j.account === undefined ? {} : { account: j.account }),
          outcome: settled,
          ...("reason" in out ? { reason: out.reason } : {}),
          attempts: j.attempts + 1,
        });
      }
      await c.settle?.(u, jobs as readonly ClaimedJob[], aligned);
    });
    for (const [e, n] of counts) this.o.onEvent?.(c.name, e, n);
    if (counts.has("exhausted"))
      this.o.log.warn(
        {
          event: "jobs-exhausted",
          channel: c.name,
          jobs: counts.get("exhausted"),
          onExhausted: c.onExhausted,
        },
        "jobs gave up after their last attempt",
      );
  }

  /** Full-jitter backoff on the attempts so far, never before the receiver's Retry-After. */
  private retryDelay(j: JobRow, afterMs: number | undefined): number {
    const { baseMs, maxMs } = this.channel.backoff;
    const backoff = backoffDelay(j.attempts, baseMs, maxMs, this.o.random);
    return afterMs !== undefined && afterMs > backoff ? afterMs : backoff;
  }
}
