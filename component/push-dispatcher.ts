/**
 * The push dispatcher: drains the durable push queue through the provider senders. A notice leaves the queue
 * only when its provider answered (sent, dead token, or permanent failure) or its attempts ran out; transient
 * failures retry with exponential backoff, honouring Retry-After. A dead token is marked on the device (the
 * owner's other devices are untouched) and its queued notices are dropped. A per-device hourly budget keeps
 * iOS from throttling: over budget, a notice waits (and keeps coalescing) instead of being sent.
 */
import { detach } from "./runtime/log.js";
import { backoffDelay } from "./runtime/backoff.js";
import type { Logger } from "./runtime/log.js";
import type { Metrics } from "./runtime/metrics.js";
import type { PushJob, Repos } from "../storage/store.js";
import type { Senders } from "../push/senders.js";
import type { PushNotice, PushOutcome } from "../push/types.js";

export interface DispatcherOptions {
  concurrency: number;
  retryBaseMs: number;
  retryMaxMs: number;
  maxAttempts: number;
  perDeviceHourlyBudget: number;
}

export class PushDispatcher {
  private timer: NodeJS.Timeout | null = null;
  private running = false;
  private again = false;
  private stopped = false;
  private inFlight: Promise<void> | null = null;
  private queued = 0;

  constructor(
    private readonly store: Repos,
    private readonly senders: Senders,
    private readonly opts: DispatcherOptions,
    private readonly log: Logger,
    private readonly metrics: Metrics,
  ) {
    metrics.describe("cardlink_push_total", "push notices by platform and outcome");
    metrics.gauge(
      "cardlink_push_queue",
      () => this.queued,
      "push notices waiting (as of the last queue run)",
    );
  }

  /** Runs the queue now (new notices, restart). */
  kick(): void {
    if (this.stopped) return;
    if (this.running) {
      this.again = true;
      return;
    }
    this.running = true;
    this.inFlight = this.drain()
      .catch((e: unknown) =>
        this.log.error({ event: "push-drain-failed", err: (e as Error).message }, "push dispatcher failed"),
      )
      .finally(() => {
        this.running = false;
        this.inFlight = null;
        if (this.again) {
          this.again = false;
          this.kick();
        } else detach(this.log, "push-arm-failed", this.arm());
      });
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    await this.inFlight;
    await Promise.all(Object.values(this.senders).map((s) => s.close()));
  }

  private async arm(): Promise<void> {
    if (this.stopped) return;
    this.queued = await this.store.push.count();
    const next = await this.store.push.nextAt();
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    if (next === undefined) return;
    this.timer = setTimeout(() => this.kick(), Math.max(5, next - Date.now()));
    this.timer.unref();
  }

  private async drain(): Promise<void> {
    for (;;) {
      if (this.stopped) return;
      const now = Date.now();
      const jobs = await this.store.push.due(now, this.opts.concurrency);
      if (jobs.length === 0) return;
      const ready: PushJob[] = [];
      const inBatch = new Map<string, number>();
      for (const j of jobs) {
        if (j.expiresAt > 0 && j.expiresAt * 1000 < now) {
          await this.store.push.remove([j.id]);
          this.metrics.inc("cardlink_push_total", { platform: j.platform, outcome: "expired" });
          continue;
        }
        const sender = this.senders[j.platform];
        if (!sender) {
          await this.store.push.remove([j.id]);
          this.metrics.inc("cardlink_push_total", { platform: j.platform, outcome: "no-provider" });
          continue;
        }
        const recent = await this.store.push.sentSince(j.token, now - 3_600_000);
        const planned = inBatch.get(j.token) ?? 0;
        if (recent.length + planned >= this.opts.perDeviceHourlyBudget) {
          // Wait until the oldest send leaves the window; meanwhile newer notices coalesce into this one.
          await this.store.push.defer(j.id, (recent[0] ?? now) + 3_600_000 + 1);
          this.metrics.inc("cardlink_push_total", { platform: j.platform, outcome: "over-budget" });
          continue;
        }
        inBatch.set(j.token, planned + 1);
        ready.push(j);
      }
      await Promise.all(
        (["ios", "android"] as const).map((p) =>
          this.sendPlatform(
            p,
            ready.filter((j) => j.platform === p),
          ),
        ),
      );
    }
  }

  private async sendPlatform(platform: "ios" | "android", jobs: PushJob[]): Promise<void> {
    const sender = this.senders[platform];
    if (!sender || jobs.length === 0) return;
    const notices: PushNotice[] = jobs.map((j) => ({
      id: j.id,
      platform,
      token: j.token,
      ...(j.topic ? { topic: j.topic } : {}),
      kind: j.kind,
      collapseId: j.collapseId,
      expiresAt: j.expiresAt,
      ...(j.alert ? { alert: j.alert } : {}),
      data: j.data,
    }));
    let outcomes: PushOutcome[];
    try {
      outcomes = await sender.send(notices);
    } catch (e) {
      outcomes = notices.map(() => ({ status: "retry", reason: (e as Error).message }));
    }
    const now = Date.now();
    const sent: PushJob[] = [];
    for (let i = 0; i < jobs.length; i++) {
      const job = jobs[i] as PushJob;
      const out = outcomes[i] ?? { status: "retry" as const, reason: "no outcome" };
      this.metrics.inc("cardlink_push_total", { platform, outcome: out.status });
      switch (out.status) {
        case "sent":
          sent.push(job);
          break;
        case "invalid-token": {
          const devices = await this.store.devices.invalidateToken(job.token);
          const dropped = await this.store.push.dropToken(job.token);
          this.log.info(
            { event: "push-token-invalid", platform, devices, dropped, reason: out.reason },
            "provider says the token is dead",
          );
          break;
        }
        case "failed":
          await this.store.push.remove([job.id]);
          this.log.warn(
            { event: "push-failed", platform, reason: out.reason },
            "push notice refused permanently",
          );
          break;
        case "retry": {
          if (job.attempts + 1 >= this.opts.maxAttempts) {
            await this.store.push.remove([job.id]);
            this.metrics.inc("cardlink_push_total", { platform, outcome: "gave-up" });
            this.log.warn(
              { event: "push-gave-up", platform, attempts: job.attempts + 1, reason: out.reason },
              "push notice dropped after retries",
            );
            break;
          }
          const backoff = backoffDelay(job.attempts, this.opts.retryBaseMs, this.opts.retryMaxMs);
          await this.store.push.retry(job.id, now + Math.max(backoff, out.retryAfterMs ?? 0));
          break;
        }
      }
    }
    if (sent.length)
      await this.store.push.sent(
        sent.map((j) => j.id),
        sent.map((j) => j.token),
        now,
      );
  }
}
