/**
 * The `push` job channel (docs/REDESIGN.md §4.3): the outcome rules of component/push-dispatcher.ts on the
 * generic job loop (runtime/queue/jobs.ts), which claims, backs off, and drops exhausted jobs.
 *
 *   gate    the hourly per-token budget, over a read snapshot: a notice over budget waits until the oldest
 *           send leaves the window (no attempt counted; meanwhile newer notices coalesce into it) — `over-budget`
 *   send    per platform through push/senders.ts, concurrently; a provider outcome becomes a job outcome:
 *           sent → done; retry (429/5xx/timeout) → retry, afterMs = Retry-After; invalid-token / failed /
 *           no provider → drop (the reason's prefix names which, for settle)
 *   settle  in the loop's settle unit of work: sent → push_sends row (the budget's log); dead token → every
 *           device with it is marked invalid and its pending notices dropped; metrics after commit, with
 *           today's names and labels (cardlink_push_total{platform,outcome})
 */
import type { Logger } from "../../runtime/log.js";
import type { Metrics } from "../../runtime/metrics.js";
import type { ClaimedJob, JobChannel, JobId, JobOutcome } from "../../runtime/queue/api.js";
import type { UnitOfWork } from "../../runtime/uow.js";
import type { ReadTx } from "../../../storage/store.js";
import type { Senders } from "../../../push/senders.js";
import type { Platform, PushNotice, PushOutcome } from "../../../push/types.js";
import { PUSH_CHANNEL, type PushBody } from "./payload.js";
import { BUDGET_WINDOW_MS, pushRepo } from "./repo.js";

/** The provider behind each platform: the `provider` label of the latency metrics. */
export const PROVIDER = { ios: "apns", android: "fcm" } as const;
const providerOf = (platform: string): string =>
  (PROVIDER as Record<string, string | undefined>)[platform] ?? platform;

/** The push.* config keys the channel reads. */
export interface PushChannelConfig {
  readonly concurrency: number;
  readonly retryBaseMs: number;
  readonly retryMaxMs: number;
  readonly maxAttempts: number;
  readonly perDeviceHourlyBudget: number;
}

/** Drop reasons settle acts on: `<outcome>: <provider's reason>`. */
type DropKind = "invalid-token" | "failed" | "no-provider";
const dropOf = (reason: string): DropKind | undefined => {
  const k = reason.slice(0, reason.indexOf(":"));
  return k === "invalid-token" || k === "failed" || k === "no-provider" ? k : undefined;
};

/**
 * The histograms' buckets. runtime/metrics.ts's LATENCY_BUCKETS and PROVIDER_BUCKETS are values, and a feature
 * imports only types from metrics.ts (docs/ARCHITECTURE.md §2): the module's creator passes them in.
 */
export interface PushBuckets {
  readonly latency: number[];
  readonly provider: number[];
}

/** Metrics in the push channel's names (Metrics.histogram/describe are idempotent per name). */
export function describePushMetrics(metrics: Metrics, buckets: PushBuckets): void {
  metrics.describe("cardlink_push_total", "push notices by platform and outcome");
  metrics.histogram(
    "cardlink_push_latency_seconds",
    ["provider"],
    buckets.latency,
    "time from a notice being queued to its provider accepting it, per provider (retries and budget waits included)",
  );
  metrics.histogram(
    "cardlink_push_request_duration_seconds",
    ["provider"],
    buckets.provider,
    "time of one send to a provider (a batch of up to push.concurrency notices, sent concurrently), per provider",
  );
}

export interface PushChannelOptions {
  readonly senders: Senders;
  readonly config: PushChannelConfig;
  readonly log: Logger;
  readonly metrics: Metrics;
  readonly buckets: PushBuckets;
  /** The clock of the latency metric (the store's clock in tests that pin it). */
  readonly clock?: () => number;
}

export class PushChannel implements JobChannel {
  readonly name = PUSH_CHANNEL;
  readonly concurrency: number;
  readonly maxAttempts: number;
  readonly backoff: { baseMs: number; maxMs: number };
  readonly onExhausted = "drop" as const;

  private readonly senders: Senders;
  private readonly cfg: PushChannelConfig;
  private readonly log: Logger;
  private readonly metrics: Metrics;
  private readonly clock: () => number;

  constructor(o: PushChannelOptions) {
    ({ senders: this.senders, config: this.cfg, log: this.log, metrics: this.metrics } = o);
    this.clock = o.clock ?? Date.now;
    this.concurrency = o.config.concurrency;
    this.maxAttempts = o.config.maxAttempts;
    this.backoff = { baseMs: o.config.retryBaseMs, maxMs: o.config.retryMaxMs };
    describePushMetrics(o.metrics, o.buckets);
  }

  private count(platform: string, outcome: string): void {
    this.metrics.inc("cardlink_push_total", { platform, outcome });
  }

  async gate(r: ReadTx, jobs: readonly ClaimedJob[], now: number): Promise<Map<JobId, number>> {
    const repo = pushRepo(r);
    const deferred = new Map<JobId, number>();
    const inBatch = new Map<string, number>();
    for (const j of jobs) {
      const b = j.body as unknown as PushBody;
      if (!this.senders[b.platform]) continue; // send drops it (no-provider): no budget to spend
      const recent = await repo.sentSince(b.token, now - BUDGET_WINDOW_MS);
      const planned = inBatch.get(b.token) ?? 0;
      if (recent.n + planned >= this.cfg.perDeviceHourlyBudget) {
        // Wait until the oldest send leaves the window; meanwhile newer notices coalesce into this one.
        deferred.set(j.id, (recent.oldest ?? now) + BUDGET_WINDOW_MS + 1);
        this.count(b.platform, "over-budget");
        continue;
      }
      inBatch.set(b.token, planned + 1);
    }
    return deferred;
  }

  async send(jobs: readonly ClaimedJob[]): Promise<JobOutcome[]> {
    const out: JobOutcome[] = jobs.map(() => ({ status: "retry", reason: "no outcome" }));
    const byPlatform = new Map<Platform, number[]>();
    jobs.forEach((j, i) => {
      const p = (j.body as unknown as PushBody).platform;
      if (!this.senders[p]) out[i] = { status: "drop", reason: `no-provider: ${p}` };
      else byPlatform.set(p, [...(byPlatform.get(p) ?? []), i]);
    });
    await Promise.all(
      [...byPlatform].map(async ([platform, idx]) => {
        const sender = this.senders[platform];
        if (!sender) return;
        const notices = idx.map((i) => notice(jobs[i] as ClaimedJob, platform));
        const done = this.metrics.timer("cardlink_push_request_duration_seconds", {
          provider: providerOf(platform),
        });
        let results: PushOutcome[];
        try {
          results = await sender.send(notices);
        } catch (e) {
          results = notices.map(() => ({ status: "retry", reason: (e as Error).message }));
        } finally {
          done();
        }
        idx.forEach((i, k) => {
          out[i] = outcomeOf(results[k] ?? { status: "retry", reason: "no outcome" });
        });
      }),
    );
    return out;
  }

  async settle(u: UnitOfWork, jobs: readonly ClaimedJob[], outcomes: readonly JobOutcome[]): Promise<void> {
    const repo = pushRepo(u.tx);
    const counted: Array<[string, string]> = [];
    const latencies: Array<[string, number]> = [];
    const sentTokens: string[] = [];
    const deadTokens = new Set<string>();
    for (let i = 0; i < jobs.length; i++) {
      const j = jobs[i] as ClaimedJob;
      const b = j.body as unknown as PushBody;
      const o = outcomes[i] ?? { status: "retry", reason: "no outcome" };
      switch (o.status) {
        case "done":
          counted.push([b.platform, "sent"]);
          sentTokens.push(b.token);
          latencies.push([providerOf(b.platform), Math.max(0, this.clock() - b.queuedAt) / 1000]);
          break;
        case "retry":
          counted.push([b.platform, "retry"]);
          if (j.attempts + 1 >= this.maxAttempts) {
            counted.push([b.platform, "gave-up"]);
            u.afterCommit(() =>
              this.log.warn(
                { event: "push-gave-up", platform: b.platform, attempts: j.attempts + 1, reason: o.reason },
                "push notice dropped after retries",
              ),
            );
          }
          break;
        case "drop":
        case "dead": {
          const kind = dropOf(o.reason) ?? "failed";
          counted.push([b.platform, kind]);
          if (kind === "invalid-token" && !deadTokens.has(b.token)) {
            deadTokens.add(b.token);
            // Every device holding the dead token (the owner's other devices are untouched), then its notices.
            const devices = await u.accounts.invalidateToken(b.token);
            const dropped = await u.queue.dropJobs(PUSH_CHANNEL, { token: b.token });
            u.afterCommit(() =>
              this.log.info(
                { event: "push-token-invalid", platform: b.platform, devices, dropped, reason: o.reason },
                "provider says the token is dead",
              ),
            );
          } else if (kind === "failed")
            u.afterCommit(() =>
              this.log.warn(
                { event: "push-failed", platform: b.platform, reason: o.reason },
                "push notice refused permanently",
              ),
            );
          break;
        }
      }
    }
    await repo.recordSends(sentTokens, u.now);
    // Counted once, after commit: the store may run this unit of work again on a busy retry.
    u.afterCommit(() => {
      for (const [platform, outcome] of counted) this.count(platform, outcome);
      for (const [provider, s] of latencies)
        this.metrics.observe("cardlink_push_latency_seconds", { provider }, s);
    });
  }
}

function notice(j: ClaimedJob, platform: Platform): PushNotice {
  const b = j.body as unknown as PushBody;
  return {
    // The job's uid: stable across retries and replacements (apns-id), §2.3.6.
    id: j.uid,
    platform,
    token: b.token,
    ...(b.topic ? { topic: b.topic } : {}),
    kind: b.kind,
    collapseId: b.collapseId,
    expiresAt: b.expiresAt,
    ...(b.alert ? { alert: b.alert } : {}),
    data: b.data,
  };
}

function outcomeOf(r: PushOutcome): JobOutcome {
  switch (r.status) {
    case "sent":
      return { status: "done" };
    case "retry":
      return r.retryAfterMs === undefined
        ? { status: "retry", reason: r.reason }
        : { status: "retry", reason: r.reason, afterMs: r.retryAfterMs };
    case "invalid-token":
      return { status: "drop", reason: `invalid-token: ${r.reason}` };
    case "failed":
      return { status: "drop", reason: `failed: ${r.reason}` };
  }
}
