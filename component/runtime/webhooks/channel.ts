/**
 * The `webhook` job channel (docs/ARCHITECTURE.md §6): one job = one POST to the connector named by the job's
 * target (webhooks.connectors). Outcomes for the job loop: delivered → done; retry (timeout, 408, 429, 5xx) →
 * retry after max(backoff, Retry-After); refused for good (other 3xx/4xx) or an unknown connector → dead letter
 * at once; attempts exhausted → dead letter (onExhausted). Feature-independent: it reads nothing but the job.
 */
import type { Logger } from "pino";
import type { Metrics } from "../metrics.js";
import type { ClaimedJob, JobChannel, JobOutcome } from "../queue/api.js";
import type { UnitOfWork } from "../uow.js";
import { WEBHOOK_CHANNEL, type WebhookEnvelope } from "./api.js";
import { WebhookSender, type Connector, type PostResult } from "./sender.js";

export interface WebhookChannelConfig {
  readonly concurrency: number;
  readonly maxAttempts: number;
  readonly retryBaseMs: number;
  readonly retryMaxMs: number;
}

export interface WebhookBuckets {
  readonly latency: number[];
  readonly request: number[];
}

export interface WebhookChannelOptions {
  readonly connectors: readonly Connector[];
  readonly config: WebhookChannelConfig;
  readonly log: Logger;
  readonly metrics: Metrics;
  readonly buckets: WebhookBuckets;
  /** The clock of the signature timestamp and the latency metric (tests pin it). */
  readonly clock?: () => number;
}

export class WebhookChannel implements JobChannel {
  readonly name = WEBHOOK_CHANNEL;
  readonly concurrency: number;
  readonly maxAttempts: number;
  readonly backoff: { baseMs: number; maxMs: number };
  readonly onExhausted = "dead-letter" as const;

  private readonly connectors: Map<string, Connector>;
  private readonly sender: WebhookSender;
  private readonly clock: () => number;

  constructor(private readonly o: WebhookChannelOptions) {
    this.concurrency = o.config.concurrency;
    this.maxAttempts = o.config.maxAttempts;
    this.backoff = { baseMs: o.config.retryBaseMs, maxMs: o.config.retryMaxMs };
    this.connectors = new Map(o.connectors.map((c) => [c.name, c]));
    this.clock = o.clock ?? Date.now;
    this.sender = new WebhookSender(o.config.concurrency, this.clock);
    o.metrics.describe("cardlink_webhook_total", "webhook attempts by connector and outcome");
    o.metrics.histogram(
      "cardlink_webhook_request_duration_seconds",
      ["connector"],
      o.buckets.request,
      "time of one webhook POST until its answer (or timeout), per connector",
    );
    o.metrics.histogram(
      "cardlink_webhook_latency_seconds",
      ["connector"],
      o.buckets.latency,
      "time from a webhook's event to the receiver's 2xx, per connector (retries included)",
    );
  }

  /** The configured connector names (features refuse accounts on services no connector serves). */
  names(): string[] {
    return [...this.connectors.keys()];
  }

  async send(jobs: readonly ClaimedJob[]): Promise<JobOutcome[]> {
    return Promise.all(jobs.map((j) => this.one(j)));
  }

  private async one(j: ClaimedJob): Promise<JobOutcome> {
    const c = this.connectors.get(j.target);
    // Removed from the configuration while the job waited: nothing will ever deliver it; the admin decides.
    if (!c) return { status: "dead", reason: `unknown connector '${j.target}'` };
    const done = this.o.metrics.timer("cardlink_webhook_request_duration_seconds", { connector: c.name });
    let r: PostResult;
    try {
      r = await this.sender.post(c, j.uid, JSON.stringify(j.body));
    } finally {
      done();
    }
    switch (r.status) {
      case "delivered":
        return { status: "done" };
      case "retry":
        return r.retryAfterMs === undefined
          ? { status: "retry", reason: r.reason }
          : { status: "retry", reason: r.reason, afterMs: r.retryAfterMs };
      case "failed":
        return { status: "dead", reason: r.reason };
    }
  }

  async settle(u: UnitOfWork, jobs: readonly ClaimedJob[], outcomes: readonly JobOutcome[]): Promise<void> {
    const counted: Array<[string, string]> = [];
    const latencies: Array<[string, number]> = [];
    const dead: Array<{ connector: string; type: string; uid: string; reason: string }> = [];
    jobs.forEach((j, i) => {
      const o = outcomes[i] ?? { status: "retry", reason: "no outcome" };
      const connector = this.connectors.has(j.target) ? j.target : "unknown";
      switch (o.status) {
        case "done": {
          counted.push([connector, "delivered"]);
          const at = Date.parse((j.body as WebhookEnvelope).timestamp);
          if (!Number.isNaN(at)) latencies.push([connector, Math.max(0, this.clock() - at) / 1000]);
          break;
        }
        case "retry":
          if (j.attempts + 1 >= this.maxAttempts) {
            counted.push([connector, "dead-letter"]);
            dead.push({ connector: j.target, type: j.kind, uid: j.uid, reason: o.reason });
          } else counted.push([connector, "retry"]);
          break;
        case "drop":
        case "dead":
          counted.push([connector, "dead-letter"]);
          dead.push({ connector: j.target, type: j.kind, uid: j.uid, reason: o.reason });
          break;
      }
    });
    // After commit: the store may run this unit of work again on a busy retry.
    u.afterCommit(() => {
      for (const [connector, outcome] of counted)
        this.o.metrics.inc("cardlink_webhook_total", { connector, outcome });
      for (const [connector, s] of latencies)
        this.o.metrics.observe("cardlink_webhook_latency_seconds", { connector }, s);
      for (const d of dead)
        this.o.log.warn(
          { event: "webhook-dead-letter", ...d },
          "webhook dead-lettered (see cardlink dead-letters)",
        );
    });
  }

  close(): void {
    this.sender.close();
  }
}
