/**
 * Delivery from the durable outbox. Each recipient's pending entries are sent in seq order, several per IQ
 * (<updates/>), to every available resource; the entries are deleted only when a resource answers with an
 * IQ result (the ack). Errors and timeouts retry with backoff. Delivery is at-least-once: every update carries
 * a stable id so clients drop duplicates. Features register a renderer per kind; a renderer returning null
 * means the entry is moot (e.g. the binding is gone) and it is dropped.
 */
import { detach } from "./runtime/log.js";
import { updateElement, updatesElement } from "../stanzas/cardlink.js";
import { xml, type Element } from "../stanzas/xml.js";
import type { OutboxEntry } from "../storage/store.js";
import { backoffDelay } from "./runtime/backoff.js";
import { cachedRead, LATENCY_BUCKETS } from "./runtime/metrics.js";
import type { AppContext, Feature } from "./runtime/context.js";
import { IqErrorReply, IqTimeoutError } from "./runtime/iq-caller.js";
import type { PresenceTracker } from "./presence.js";

export type Renderer = (entry: OutboxEntry) => Promise<Element | null>;

/** Conditions meaning "that resource is not there" (Prosody's answer for an IQ to an offline full JID). */
const GONE = new Set([
  "service-unavailable",
  "recipient-unavailable",
  "item-not-found",
  "remote-server-not-found",
]);
const MAX_CONCURRENT_FLUSHES = 256;

export const updateId = (e: Pick<OutboxEntry, "kind" | "subject" | "seq">): string =>
  `${e.kind}:${e.subject}:${e.seq}`;

export class Delivery implements Feature {
  readonly name = "delivery";
  private app!: AppContext;
  private readonly renderers = new Map<string, Renderer>();
  private readonly flushing = new Set<string>();
  private readonly running = new Set<Promise<void>>();
  private readonly again = new Set<string>();
  private readonly timers = new Map<string, NodeJS.Timeout>();
  private readonly waiting: Array<() => void> = [];
  /** Per recipient with a batch waiting for its ack: offers that batch to a resource that came online. */
  private readonly inflight = new Map<string, (full: string) => void>();
  private active = 0;
  private stopped = false;

  constructor(private readonly presence: PresenceTracker) {}

  register(kind: string, r: Renderer): void {
    this.renderers.set(kind, r);
  }

  attach(app: AppContext): void {
    this.app = app;
    this.watchQueue(app);
    app.events.on("outbox.enqueued", ({ recipients }) => {
      for (const r of recipients) this.kick(r, "newest");
    });
    app.events.on("presence.available", ({ bare, full }) => {
      this.inflight.get(bare)?.(full);
      this.kick(bare, "none");
    });
    // The last resource left with entries still waiting (e.g. unacknowledged): wake a device. While a flush runs
    // for this user, the flush itself reports the user offline.
    app.events.on("presence.unavailable", ({ bare }) => {
      if (!this.presence.isAvailable(bare) && !this.flushing.has(bare)) this.kick(bare, "all");
    });
  }

  /**
   * Delivery latency per kind (observed at each ack), and the outbox depth and oldest entry's age per kind,
   * read at scrape time by one query (cached: see SCRAPE_CACHE_MS). Every kind with a renderer is reported,
   * 0 when none waits, so an alert on a kind's depth does not see its series vanish when the queue drains.
   */
  private watchQueue(app: AppContext): void {
    app.metrics.histogram(
      "cardlink_delivery_latency_seconds",
      ["kind"],
      LATENCY_BUCKETS,
      "time from an outbox entry being written to the holder's ack, per update kind",
    );
    const depth = cachedRead(() => app.store.outbox.depthByKind());
    const rows = async (
      value: (d: { entries: number; oldestCreatedAt: number }, now: number) => number,
    ): Promise<Array<{ labels: { kind: string }; value: number }>> => {
      const byKind = await depth();
      const now = Date.now();
      const kinds = new Set([...this.renderers.keys(), ...Object.keys(byKind)]);
      return [...kinds].sort().map((kind) => {
        const d = byKind[kind];
        return { labels: { kind }, value: d ? value(d, now) : 0 };
      });
    };
    app.metrics.gaugeRows(
      "cardlink_outbox_entries",
      ["kind"],
      () => rows((d) => d.entries),
      "outbox entries waiting for a holder's ack, per update kind",
    );
    // The age is computed from the (possibly cached) oldest timestamp at each read, so it keeps growing
    // between two queries instead of standing still.
    app.metrics.gaugeRows(
      "cardlink_outbox_oldest_entry_age_seconds",
      ["kind"],
      () => rows((d, now) => Math.max(0, now - d.oldestCreatedAt) / 1000),
      "age of the oldest outbox entry not yet acknowledged, per update kind (0 when none waits)",
    );
  }

  async online(): Promise<void> {
    const recipients = await this.app.store.outbox.recipients();
    await this.presence.restore(recipients);
    for (const r of recipients) this.kick(r, "none");
  }

  /** Stops new deliveries and waits for the flushes in flight to record their outcome. */
  async stop(): Promise<void> {
    this.stopped = true;
    for (const t of this.timers.values()) clearTimeout(t);
    this.timers.clear();
    await Promise.allSettled([...this.running]);
  }

  /**
   * Tries to deliver to `recipient` now. If the recipient is offline, `wake` says which waiting entries a push
   * should announce: "newest" (the ones just written, so earlier ones are not announced twice), "all" (the last
   * resource just left), or "none" (a retry or a restart: nothing new to announce).
   */
  kick(recipient: string, wake: "newest" | "all" | "none"): void {
    if (this.stopped) return;
    if (this.flushing.has(recipient)) {
      this.again.add(recipient);
      return;
    }
    if (!this.presence.isAvailable(recipient)) {
      if (wake !== "none")
        detach(this.app.log, "push-trigger-failed", this.offline(recipient, wake === "newest"));
      return;
    }
    this.flushing.add(recipient);
    const task = this.flush(recipient)
      .catch((e: unknown) =>
        this.app.log.error(
          { event: "flush-failed", recipient, err: (e as Error).message },
          "delivery flush failed",
        ),
      )
      .finally(() => {
        this.running.delete(task);
        this.flushing.delete(recipient);
        if (this.again.delete(recipient)) this.kick(recipient, "none");
      });
    this.running.add(task);
  }

  private async offline(recipient: string, onlyNewest: boolean): Promise<void> {
    let entries = await this.app.store.outbox.due(recipient, Number.MAX_SAFE_INTEGER, 200);
    if (entries.length === 0) return;
    if (onlyNewest) {
      // One change writes its entries under one seq: announce those, not what earlier pushes announced.
      const newest = Math.max(...entries.map((e) => e.seq));
      entries = entries.filter((e) => e.seq === newest);
    }
    this.app.metrics.inc("cardlink_delivery_offline_total");
    this.app.events.emit("delivery.recipient-offline", {
      recipient,
      kinds: [...new Set(entries.map((e) => e.kind))],
      subjects: [...new Set(entries.map((e) => e.subject))],
    });
  }

  /** A bounded number of flushes run at once; a finished one hands its slot straight to the next waiter. */
  private async slot(): Promise<() => void> {
    if (this.active >= MAX_CONCURRENT_FLUSHES) await new Promise<void>((r) => this.waiting.push(r));
    else this.active++;
    return () => {
      const next = this.waiting.shift();
      if (next) next();
      else this.active--;
    };
  }

  private async flush(recipient: string): Promise<void> {
    const release = await this.slot();
    try {
      for (;;) {
        if (this.stopped || !this.app.online()) return;
        const entries = await this.app.store.outbox.due(
          recipient,
          Date.now(),
          this.app.config.delivery.batchSize,
        );
        if (entries.length === 0) {
          // Entries waiting for a retry keep a timer (a timer may also fire a millisecond before next_at).
          const next = await this.app.store.outbox.nextRetryAt(recipient);
          if (next !== undefined) this.schedule(recipient, Math.max(10, next - Date.now()));
          return;
        }
        // The batch is cut by size as well as by count: updates are added in seq order until the next one would
        // take the <updates/> IQ over the stanza budget; the rest stay due and go in the next IQ once this one
        // is acked (the loop continues). A batch always carries at least one update: a single update over the
        // budget cannot exist (card.maxBytes is checked against it at start-up and on every card stored), and if
        // a bug made one, the send path's guard refuses it and it is retried with backoff, never spun on.
        const page = this.app.budget.page(this.app.config.delivery.batchSize);
        const sendable: OutboxEntry[] = [];
        const moot: OutboxEntry[] = [];
        for (const e of entries) {
          const r = this.renderers.get(e.kind);
          const content = r ? await r(e) : null;
          if (!r)
            this.app.log.error(
              { event: "no-renderer", kind: e.kind },
              "outbox entry of unknown kind dropped",
            );
          if (!content) {
            moot.push(e);
            continue;
          }
          const update = updateElement({ id: updateId(e), kind: e.kind, seq: e.seq }, content);
          if (!page.add(update)) {
            if (page.items.length === 0) page.items.push(update);
            else break;
          }
          sendable.push(e);
        }
        if (moot.length) await this.app.store.outbox.drop(moot);
        if (sendable.length === 0) continue;
        if (page.full) this.app.metrics.inc("cardlink_delivery_batches_cut_total");
        const outcome = await this.sendToAll(recipient, updatesElement(page.items));
        if (outcome === "acked") {
          await this.app.store.outbox.ack(sendable);
          this.app.metrics.inc("cardlink_delivery_acked_total", undefined, sendable.length);
          const now = Date.now();
          for (const e of sendable) {
            // createdAt dates the oldest change the holder had not acked (a coalesced newer one keeps it).
            if (e.createdAt !== undefined)
              this.app.metrics.observe(
                "cardlink_delivery_latency_seconds",
                { kind: e.kind },
                Math.max(0, now - e.createdAt) / 1000,
              );
          }
          continue;
        }
        if (outcome === "offline") {
          this.app.metrics.inc("cardlink_delivery_recipient_gone_total");
          await this.offline(recipient, false);
          return;
        }
        const attempts = Math.max(...sendable.map((e) => e.attempts));
        const delay = backoffDelay(
          attempts,
          this.app.config.delivery.retryBaseMs,
          this.app.config.delivery.retryMaxMs,
        );
        await this.app.store.outbox.retry(sendable, Date.now() + delay);
        this.app.metrics.inc("cardlink_delivery_retry_total", undefined, sendable.length);
        // The user went offline while this batch waited for its ack (the unavailable presence was skipped
        // because a flush was running): announce what is waiting, as the presence handler would have.
        if (!this.presence.isAvailable(recipient)) await this.offline(recipient, false);
        this.schedule(recipient, delay);
        return;
      }
    } finally {
      release();
    }
  }

  private schedule(recipient: string, delay: number): void {
    if (this.stopped) return;
    clearTimeout(this.timers.get(recipient));
    this.timers.set(
      recipient,
      setTimeout(() => {
        this.timers.delete(recipient);
        this.kick(recipient, "none");
      }, delay),
    );
  }

  /**
   * Sends one <updates/> to every available resource and settles on the first result (the ack): a live phone
   * is not held up by a stale resource that will only time out. While the batch waits, a resource that comes
   * (back) online gets it at once too, instead of after the previous IQ's ack timeout. "offline" when every
   * resource turned out to be gone, "retry" when none acked.
   */
  private sendToAll(recipient: string, payload: Element): Promise<"acked" | "offline" | "retry"> {
    const resources = this.presence.resources(recipient);
    if (resources.length === 0) return Promise.resolve("offline");
    return new Promise((resolve) => {
      let open = 0;
      let done = false;
      let allGone = true;
      const finish = (outcome: "acked" | "offline" | "retry"): void => {
        if (done) return;
        done = true;
        this.inflight.delete(recipient);
        resolve(outcome);
      };
      const attempt = (full: string): void => {
        open++;
        void this.sendOne(recipient, full, payload).then((r) => {
          open--;
          if (r === "acked") return finish("acked");
          if (r !== "gone") allGone = false;
          if (open === 0) finish(allGone ? "offline" : "retry");
        });
      };
      // Flushes are single-flight per recipient, so there is at most one batch in flight to re-offer.
      this.inflight.set(recipient, (full) => {
        if (!done) attempt(full);
      });
      for (const full of resources) attempt(full);
    });
  }

  private async sendOne(
    recipient: string,
    full: string,
    payload: Element,
  ): Promise<"acked" | "gone" | "failed"> {
    const iq = xml("iq", { type: "set", to: full, from: this.app.config.domain }, payload);
    try {
      await this.app.iq.request(iq, this.app.config.delivery.ackTimeoutMs);
      return "acked";
    } catch (e) {
      if (e instanceof IqErrorReply && GONE.has(e.condition)) {
        await this.presence.unavailable(recipient, full);
        return "gone";
      }
      if (e instanceof IqErrorReply) {
        // A live client that refuses an update will refuse it again: log it, count it as delivered.
        this.app.log.warn(
          { event: "update-refused", to: full, condition: e.condition },
          "client refused an update",
        );
        return "acked";
      }
      if (!(e instanceof IqTimeoutError))
        this.app.log.debug({ event: "update-send-failed", to: full, err: (e as Error).message });
      return "failed";
    }
  }
}
