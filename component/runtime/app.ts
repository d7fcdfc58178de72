/** Composes one cardlink: config → store → link → router → features. start() connects; stop() is graceful. */
import type { Server } from "node:http";
import type { Element } from "../../stanzas/xml.js";
import type { Migration, Store } from "../../storage/store.js";
import { openCoreStore, type MigratedStore } from "../../storage/index.js";
import { NS } from "../../stanzas/ns.js";
import { errorElement, StanzaError } from "../../stanzas/errors.js";
import { xml } from "../../stanzas/xml.js";
import { AdhocCommands } from "./adhoc.js";
import { StanzaBudget } from "./budget.js";
import type { Config } from "./config.js";
import { XmppLink, type LinkStatus } from "./connection.js";
import type { AppContext, FeatureModule, Runtime } from "./context.js";
import { buildCore, type Core } from "./runtime.js";
import { EventBus, type EventName } from "./events.js";
import { IqCaller } from "./iq-caller.js";
import { createLogger, type Logger } from "./log.js";
import { DURATION_BUCKETS, Metrics, type Health } from "./metrics.js";
import { Router } from "./router.js";
import { attachService } from "./service.js";

const LINK_STATES: LinkStatus[] = ["offline", "connecting", "online", "stopping"];

export interface Cardlink {
  ctx: AppContext;
  link: XmppLink;
  /**
   * The core's runtime. Tests seed through its feature services, so a seeded binding or block follows the real
   * rules and its after-commit kicks reach this app's engine.
   */
  rt: Runtime;
  start(): Promise<void>;
  stop(): Promise<void>;
}

export async function createCardlink(
  config: Config,
  opts: {
    log?: Logger;
    /** The feature modules (component/features.ts coreModules in production; tests may pass fewer). */
    modules: (o: { wakeKinds: () => readonly string[] }) => FeatureModule[];
    /**
     * The modules' own migrations (versions above 2000), applied after the core's at open. Absent = the migrations
     * the given modules declare, so a module's tables always exist where its paths and kinds are registered.
     */
    migrations?: readonly Migration[];
  },
): Promise<Cardlink> {
  const log = opts.log ?? createLogger(config.log.level);
  const metrics = new Metrics();
  const migrations =
    opts.migrations ?? opts.modules({ wakeKinds: () => [] }).flatMap((m) => m.migrations ?? []);
  const store = await openCoreStore(config.database, { log }, migrations);
  metrics.describe(
    "cardlink_uow_duration_seconds",
    "time a unit of work held the database write lock (BEGIN to COMMIT), by name",
  );
  store.onCommit((name, ms) => metrics.observe("cardlink_uow_duration_seconds", { name }, ms / 1000));
  observeCheckpoints(store, metrics);
  armFault(store, process.env.CARDLINK_TEST_FAULT, log);
  if (store.migrations.applied.length > 0) {
    log.info(
      { event: "migrated", applied: store.migrations.applied, version: store.migrations.current },
      "database migrated",
    );
  }
  const link = new XmppLink({
    service: config.service,
    domain: config.domain,
    secret: config.secret,
    initialDelayMs: config.reconnect.initialDelayMs,
    maxDelayMs: config.reconnect.maxDelayMs,
    rawStream: config.log.rawStream,
    log,
    corkWrites: config.link.corkWrites,
  });
  const budget = new StanzaBudget(config.link.stanzaLimitBytes);
  let largestSent = 0;
  // The last guard of the link: Prosody drops the whole component stream (every user) on a stanza over its limit.
  // Lists, pages and batches are cut to the budget before they get here, so this only fires on a bug: the stanza
  // is not written, the bug is logged and counted, and a requester waiting for a result is told instead.
  const send = async (el: Element): Promise<boolean> => {
    if (!el.attrs.from) el.attrs.from = config.domain;
    const serialized = el.toString();
    const bytes = Buffer.byteLength(serialized, "utf8");
    if (!budget.allows(bytes)) {
      metrics.inc("cardlink_stanza_over_budget_total", { kind: el.name });
      log.error(
        {
          event: "stanza-over-budget",
          kind: el.name,
          type: el.attrs.type,
          payload: el.getChildElements()[0]?.name,
          size: bytes,
          limit: budget.limitBytes,
          to: el.attrs.to,
        },
        "a stanza over link.stanzaLimitBytes was not sent (it would drop the component link): this is a bug",
      );
      if (el.name === "iq" && el.attrs.type === "result") {
        const err = new StanzaError(
          "resource-constraint",
          `the answer is ${bytes} bytes, over the ${budget.limitBytes}-byte link limit; it was not sent (logged)`,
        );
        return link
          .send(
            xml(
              "iq",
              { type: "error", id: el.attrs.id, to: el.attrs.to, from: el.attrs.from },
              errorElement(err),
            ),
          )
          .then(() => false);
      }
      return false;
    }
    if (bytes > largestSent) largestSent = bytes;
    return link.send(el, serialized);
  };
  const iq = new IqCaller(send, {
    timeoutMs: config.iqTimeoutMs,
    maxPending: config.limits.pendingIqs,
    maxPendingPerRecipient: config.limits.pendingIqsPerUser,
  });
  const router = new Router({
    domain: config.domain,
    allowedDomains: config.allowedDomains,
    maxStanzaBytes: config.maxStanzaBytes,
    maxDepth: config.limits.maxDepth,
    log,
    metrics,
    send,
    iqCaller: iq,
  });
  const adhoc = new AdhocCommands(config.domain, new Set(config.admins), {
    maxSessions: config.limits.adhocSessions,
    maxSessionsPerUser: config.limits.adhocSessionsPerUser,
  });
  const events = new EventBus();
  armTxFault(events, process.env.CARDLINK_TEST_FAULT, log);
  const ctx: AppContext = {
    config,
    log,
    metrics,
    store,
    router,
    adhoc,
    events,
    iq,
    budget,
    send,
    online: () => link.online,
  };
  attachService(ctx);
  const coreRt: Core = buildCore(
    { config, log, metrics, router, adhoc, events, iq, budget, send, online: () => link.online },
    store,
    opts.modules,
  );
  ctx.pushAppServer = coreRt.discoFeatures().includes(NS.PUSH);
  ctx.moduleFeatures = coreRt.discoFeatures;
  adhoc.attach(router);

  metrics.gauge("cardlink_link_up", () => (link.online ? 1 : 0), "1 while connected to Prosody");
  metrics.gaugeSet(
    "cardlink_link_state",
    "state",
    () => Object.fromEntries(LINK_STATES.map((s) => [s, link.status === s ? 1 : 0])),
    "the component link's state (one series is 1)",
  );
  metrics.counterFrom(
    "cardlink_link_connects_total",
    () => link.counters.connects,
    "successful handshakes since start",
  );
  metrics.counterFrom(
    "cardlink_link_conflicts_total",
    () => link.counters.conflicts,
    "connection attempts refused with <conflict/>",
  );
  metrics.counterFrom(
    "cardlink_link_failures_total",
    () => link.counters.failures,
    "failed connection attempts",
  );
  metrics.gauge("cardlink_iq_in_flight", () => iq.inFlight, "IQs cardlink sent and waits a reply for");
  metrics.gauge(
    "cardlink_link_largest_stanza_bytes",
    () => largestSent,
    "largest stanza written to the link since start (must stay under link.stanzaLimitBytes)",
  );
  metrics.describe(
    "cardlink_stanza_over_budget_total",
    "stanzas refused by the send path's size guard (bugs)",
  );

  link.on("stanza", (el: Element) => router.handle(el));
  link.on("offline", () => iq.rejectAll("link to Prosody lost"));
  link.on("online", () => {
    coreRt
      .online()
      .catch((e: unknown) =>
        log.error({ event: "core-online-failed", err: (e as Error).message }, "core start failed"),
      );
  });

  /** /healthz: serving means the link is up and the database answers. */
  const health = async (): Promise<Health> => {
    let storeOk: boolean | string = true;
    try {
      await store.ping();
    } catch (e) {
      storeOk = (e as Error).message;
    }
    return { ok: link.online && storeOk === true, checks: { link: link.status, store: storeOk } };
  };

  let metricsServer: Server | undefined;
  let stopped = false;
  return {
    ctx,
    link,
    rt: coreRt.rt,
    async start() {
      if (config.metricsPort) {
        metrics.watchEventLoop();
        metricsServer = await metrics.serve(config.metricsPort, { host: config.metricsAddress, health });
      }
      link.start();
    },
    async stop() {
      if (stopped) return;
      stopped = true;
      log.info({ event: "stopping" }, "shutting down: no new work, finishing in-flight requests");
      await router.drain(config.shutdownGraceMs);
      // Replies to updates in flight can no longer be waited for: fail them now so the outbox records a retry
      // while the database is still open (the entries stay and are delivered after the restart).
      iq.rejectAll("shutting down");
      await coreRt.stop();
      await link.stop();
      iq.rejectAll("shutting down");
      metricsServer?.close();
      metrics.close();
      await store.close();
      log.info({ event: "stopped" }, "cardlink stopped");
    },
  };
}

/**
 * SQLite's WAL checkpoints, run by the store's worker thread (storage/sqlite/checkpointer.ts): how long each took,
 * and how many pages the WAL holds. Idle runs (nothing to copy) are not observed; the gauge appears with the
 * worker's first report (never on PostgreSQL, nor with database.checkpointIntervalMs 0).
 */
function observeCheckpoints(store: Pick<Store, "onCheckpoint">, metrics: Metrics): void {
  if (!store.onCheckpoint) return;
  metrics.histogram(
    "cardlink_sqlite_checkpoint_duration_seconds",
    ["mode", "outcome"],
    DURATION_BUCKETS,
    "time a WAL checkpoint took on the checkpoint worker's thread, by mode (passive, restart, truncate) and outcome",
  );
  let walPages: number | undefined;
  store.onCheckpoint((r) => {
    if (walPages === undefined) {
      metrics.gauge(
        "cardlink_sqlite_wal_pages",
        () => walPages ?? 0,
        "pages in the SQLite WAL at the last checkpoint",
      );
    }
    walPages = Math.max(0, r.walPages);
    if (r.idle) return;
    metrics.observe(
      "cardlink_sqlite_checkpoint_duration_seconds",
      { mode: r.mode, outcome: r.busy ? "busy" : "done" },
      r.ms / 1000,
    );
  });
}

/**
 * The durability tests' fault hook (docs/REDESIGN.md §4.6, S13), honoured only when CARDLINK_TEST_FAULT is set:
 * `sigkill-after-commit:<unit of work>` kills the process right after that unit of work's COMMIT, before any
 * after-commit hook (commit observers run first: storage/frame.ts), so the change is durable and nothing that
 * follows it in memory (kicks, sends) happens. `…:<unit>@<armed by>` arms it only once `<armed by>` committed
 * (the push-scan observer commits on every poll; the test wants the scan that follows a card change).
 */
/**
 * The other half of the fault hook: `sigkill-during:<event>` kills the process inside the unit of work that emits
 * that domain event, before its COMMIT (issue 12's crash-in-the-middle-of-a-move test: everything written, nothing
 * committed). Ignored unless CARDLINK_TEST_FAULT names it.
 */
function armTxFault(events: EventBus, spec: string | undefined, log: Logger): void {
  const m = spec === undefined ? null : /^sigkill-during:([\w.-]+)$/.exec(spec);
  if (!m) return;
  const name = m[1] as EventName;
  log.warn({ event: "fault-armed", during: name }, "test fault hook armed: this process will kill itself");
  events.onTx(name, () => {
    process.kill(process.pid, "SIGKILL");
  });
}

function armFault(store: Pick<MigratedStore, "onCommit">, spec: string | undefined, log: Logger): void {
  const m = spec === undefined ? null : /^sigkill-after-commit:([\w.-]+)(?:@([\w.-]+))?$/.exec(spec);
  if (!m) {
    if (spec && !spec.startsWith("sigkill-during:"))
      log.warn({ event: "fault-ignored", spec }, "CARDLINK_TEST_FAULT not understood; ignored");
    return;
  }
  const [, target, armedBy] = m;
  let armed = armedBy === undefined;
  log.warn({ event: "fault-armed", target, armedBy }, "test fault hook armed: this process will kill itself");
  store.onCommit((name) => {
    if (armed && name === target) process.kill(process.pid, "SIGKILL");
    if (name === armedBy) armed = true;
  });
}
