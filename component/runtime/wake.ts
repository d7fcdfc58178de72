/**
 * Several cardlink processes on one PostgreSQL behind ejabberd (issue 13; docs/DECISIONS.md "Several processes
 * behind ejabberd"). Built by runtime.ts when queue.exclusive is false and the store can LISTEN (PostgreSQL).
 *
 * - Wake-ups: every unit of work that appends to lanes sends `NOTIFY cardlink_wake, '<lane ids>'` inside its
 *   transaction (queue/stream-tx.ts), so it reaches every process at COMMIT. Each process kicks those lanes;
 *   its delivery only starts rounds for consumers whose resources it knows (its users: ejabberd's bare_source
 *   bucket sends a user's presence and requests to one process), so the right process delivers. "*" (a lane list
 *   over pg_notify's size) and a LISTEN connection restored after a loss (notifications meanwhile are lost)
 *   re-scan every lane this process has a resource of. The queue.pollMs sweep stays the safety net.
 * - Replies: a delivery's IQ result that reached this process but answers another's request is applied by the
 *   IQ id recorded on the cursor (queue.persistInflight); a bounce saying the resource is gone deletes its row.
 * - Take-over: every queue.pollMs, once this process has beaten for silentMs itself (so a database outage it
 *   just came back from is not mistaken for its peers' death), it adopts the resource rows of processes whose
 *   heartbeat is silent, and rows given back at a peer's shutdown, and kicks those lanes — when the `processes`
 *   table shows a peer went silent or left since the last poll. Every 10 heartbeat periods it forgets resources
 *   whose row another process took or deleted (presence.reconcile()).
 * - Shutdown: after the engine released its leases, this process's resource rows are given back (NULL), so a
 *   survivor adopts them at its next poll instead of after the silence.
 */
import type { AccountId, Store } from "../../storage/store.js";
import type { Logger } from "./log.js";
import type { Metrics } from "./metrics.js";
import type { Engine } from "./queue/engine.js";
import type { StreamDelivery } from "./queue/stream-delivery.js";
import type { Presence } from "./presence.js";
import type { Router } from "./router.js";

/** The NOTIFY channel of lane wake-ups (an SQL identifier: LISTEN takes no parameter). */
export const WAKE_CHANNEL = "cardlink_wake";
/** The prefix of delivery IQ ids (stream-delivery.ts `cls-<tag>-<n>`): only those are another process's. */
const DELIVERY_IQ = /^cls-[0-9a-f]{8}-/;
/** Heartbeat periods between two reconcile() scans. */
const RECONCILE_BEATS = 10;
/** Bounces that mean "that resource is not there" (stream-delivery.ts GONE). */
const GONE = new Set(["service-unavailable", "recipient-unavailable", "item-not-found"]);

export interface WakeOptions {
  store: Pick<Store, "listen" | "read">;
  engine: Pick<Engine, "remoteAck" | "beatingFor" | "silentMs">;
  delivery: Pick<StreamDelivery, "kickLanes">;
  presence: Pick<Presence, "adopt" | "reconcile" | "handOver" | "lanes" | "goneElsewhere">;
  log: Logger;
  metrics: Metrics;
  pollMs: number;
  heartbeatMs: number;
}

export class ScaleOut {
  private stopListening: (() => Promise<void>) | undefined;
  private readonly timers: NodeJS.Timeout[] = [];
  private ticking = false;
  private stopped = false;
  private lastReconcile = 0;
  /** The processes alive at the last poll; undefined before the first (which adopts unconditionally). */
  private lastAlive: Set<string> | undefined;

  constructor(private readonly o: WakeOptions) {
    o.metrics.describe(
      "cardlink_wake_notifications_total",
      "lane wake-ups received over LISTEN (several processes on PostgreSQL)",
    );
    o.metrics.describe(
      "cardlink_wake_rescans_total",
      're-scans of every local lane ("*" or a LISTEN restored)',
    );
  }

  /** The router's unmatched replies: a result acknowledges another process's batch; a bounce prunes the row. */
  attach(router: Pick<Router, "onUnmatchedReply">): void {
    router.onUnmatchedReply(async (stanza, from) => {
      const id = stanza.attrs.id ?? "";
      if (!DELIVERY_IQ.test(id) || !from.resource) return;
      if (stanza.attrs.type === "result") {
        if (await this.o.engine.remoteAck(from.full, id)) {
          this.o.log.debug({ event: "remote-ack", from: from.full, id }, "applied another process's ack");
        }
        return;
      }
      const condition = stanza.getChild("error")?.getChildElements()[0]?.name;
      if (condition !== undefined && GONE.has(condition)) await this.o.presence.goneElsewhere(from.full);
    });
  }

  /** After the engine started (first link online): LISTEN, and the take-over poll. */
  start(): void {
    if (this.stopListening || this.stopped) return;
    const listen = this.o.store.listen;
    if (!listen) return;
    this.stopListening = listen.call(this.o.store, WAKE_CHANNEL, {
      onMessage: (payload) => this.onWake(payload),
      onConnected: (first) => {
        // Notifications sent while the connection was down are lost: every local lane gets a round.
        if (!first) this.rescan();
      },
    });
    const t = setInterval(() => void this.tick(), this.o.pollMs);
    t.unref();
    this.timers.push(t);
  }

  private onWake(payload: string): void {
    if (this.stopped) return;
    this.o.metrics.inc("cardlink_wake_notifications_total");
    if (payload === "*") return this.rescan();
    const lanes: AccountId[] = [];
    for (const x of payload.split(",")) {
      const n = Number(x);
      if (Number.isSafeInteger(n) && n > 0) lanes.push(n as AccountId);
    }
    // Kicks only consumers with a resource here (delivery.kickLanes asks presence): not this process's users
    // cost nothing.
    this.o.delivery.kickLanes(lanes);
  }

  private rescan(): void {
    if (this.stopped) return;
    this.o.metrics.inc("cardlink_wake_rescans_total");
    this.o.delivery.kickLanes(this.o.presence.lanes());
  }

  /** One take-over poll: adopt the resources of silent peers (kick them), now and then forget what moved away. */
  async tick(): Promise<void> {
    if (this.ticking || this.stopped) return;
    this.ticking = true;
    try {
      const silent = this.o.engine.silentMs;
      if (this.o.engine.beatingFor() >= silent) {
        // The adoption UPDATE scans `resources`: it runs only when a process went silent or left (its
        // heartbeat row is older than silentMs, or deleted at its clean stop) since the last poll — the tiny
        // `processes` table says so — and on the first poll (rows given back before this process started).
        const since = Date.now() - silent;
        const rows = await this.o.store.read("wake.processes", (r) =>
          r.all<{ id: string }>("SELECT id FROM processes WHERE heartbeat_at >= :since", { since }),
        );
        const alive = new Set(rows.map((r) => r.id));
        const left = this.lastAlive === undefined || [...this.lastAlive].some((id) => !alive.has(id));
        if (left) {
          const lanes = await this.o.presence.adopt(since);
          if (lanes.length > 0) this.o.delivery.kickLanes(lanes);
        }
        // Only after a successful adoption: a failed one is tried again at the next poll.
        this.lastAlive = alive;
      }
      // Forgetting what another process took or deleted is a scan of this process's rows: every 10 heartbeats.
      if (Date.now() - this.lastReconcile >= RECONCILE_BEATS * this.o.heartbeatMs) {
        this.lastReconcile = Date.now();
        await this.o.presence.reconcile();
      }
    } catch (e) {
      this.o.log.warn({ event: "take-over-poll-failed", err: (e as Error).message }, "take-over poll failed");
    } finally {
      this.ticking = false;
    }
  }

  /** After the engine stopped (its leases released): rows given back, LISTEN closed. */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    for (const t of this.timers.splice(0)) clearInterval(t);
    await this.stopListening?.();
    try {
      const n = await this.o.presence.handOver();
      if (n > 0) this.o.log.info({ event: "resources-handed-over", n }, "available resources given back");
    } catch (e) {
      this.o.log.warn(
        { event: "hand-over-failed", err: (e as Error).message },
        "resources not given back; a survivor adopts them once this process's heartbeat is silent",
      );
    }
  }
}
