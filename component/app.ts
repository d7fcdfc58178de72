/** Composes one cardlink: config → store → link → router → features. start() connects; stop() is graceful. */
import type { Server } from "node:http";
import type { Element } from "../stanzas/xml.js";
import { openStore } from "../storage/index.js";
import { AdhocCommands } from "./adhoc.js";
import type { Config } from "./config.js";
import { XmppLink, type LinkStatus } from "./connection.js";
import type { AppContext, Feature } from "./context.js";
import { EventBus } from "./events.js";
import { IqCaller } from "./iq-caller.js";
import { createLogger, type Logger } from "./log.js";
import { Metrics, type Health } from "./metrics.js";
import { Router } from "./router.js";
import { attachService } from "./service.js";

const LINK_STATES: LinkStatus[] = ["offline", "connecting", "online", "stopping"];

export interface Cardlink {
  ctx: AppContext;
  link: XmppLink;
  start(): Promise<void>;
  stop(): Promise<void>;
}

export function createCardlink(config: Config, opts: { log?: Logger; features?: Feature[] } = {}): Cardlink {
  const log = opts.log ?? createLogger(config.log.level);
  const metrics = new Metrics();
  const store = openStore(config);
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
  });
  const send = (el: Element): Promise<boolean> => {
    if (!el.attrs.from) el.attrs.from = config.domain;
    return link.send(el);
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
  const ctx: AppContext = {
    config,
    log,
    metrics,
    store,
    router,
    adhoc,
    events,
    iq,
    send,
    online: () => link.online,
  };
  const features = opts.features ?? [];
  attachService(ctx);
  for (const f of features) f.attach(ctx);
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

  link.on("stanza", (el: Element) => router.handle(el));
  link.on("offline", () => iq.rejectAll("link to Prosody lost"));
  link.on("online", () => {
    for (const f of features) {
      Promise.resolve(f.online?.()).catch((e: unknown) =>
        log.error(
          { event: "feature-online-failed", feature: f.name, err: (e as Error).message },
          "feature start failed",
        ),
      );
    }
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
      for (const f of [...features].reverse()) {
        try {
          await f.stop?.();
        } catch (e) {
          log.error(
            { event: "feature-stop-failed", feature: f.name, err: (e as Error).message },
            "feature stop failed",
          );
        }
      }
      await link.stop();
      iq.rejectAll("shutting down");
      metricsServer?.close();
      metrics.close();
      await store.close();
      log.info({ event: "stopped" }, "cardlink stopped");
    },
  };
}
