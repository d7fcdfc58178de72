/**
 * The new core's composition (docs/REDESIGN.md §3.6, step S11): from the shared services createCardlink builds
 * (config, log, metrics, router, adhoc, events, iq, budget, send) and a migrated Store, it builds the parts of a
 * unit of work (accounts, stream, jobs, audience), the reader, the queue engine with its stream delivery, the
 * presence, and attaches the feature modules in order. Registries are filled before anything runs: kinds and
 * audience paths are module properties (needed to build the units of work), channels and observers are
 * registered by the modules' attach (they need the runtime), and the engine refuses late registrations.
 */
import type { Element } from "../../stanzas/xml.js";
import { xml } from "../../stanzas/xml.js";
import type { AccountId, Store } from "../../storage/store.js";
import { accountsParts } from "./accounts/tx.js";
import type { AdhocCommands } from "./adhoc.js";
import { audienceParts } from "./audience/tx.js";
import type { StanzaBudget } from "./budget.js";
import type { Config } from "./config.js";
import type { FeatureModule, Runtime } from "./context.js";
import type { EventBus } from "./events.js";
import { IqErrorReply, IqSupersededError, IqTimeoutError, type IqCaller } from "./iq-caller.js";
import type { Logger } from "./log.js";
import { cachedRead, LATENCY_BUCKETS, PROVIDER_BUCKETS, type Metrics } from "./metrics.js";
import { Presence } from "./presence.js";
import { Engine, MISSED_BEATS, newProcessId } from "./queue/engine.js";
import { jobsTx } from "./queue/jobs-tx.js";
import { KindRegistry } from "./queue/registry.js";
import { StreamDelivery, type SendOutcome, type StreamTransport } from "./queue/stream-delivery.js";
import { streamRepo } from "./queue/stream-repo.js";
import { streamTx } from "./queue/stream-tx.js";
import type { Router } from "./router.js";
import { makeReader, makeUow, type UnitOfWork } from "./uow.js";
import { parseJid } from "./jid.js";
import { ScaleOut, WAKE_CHANNEL } from "./wake.js";
import { WebhookChannel } from "./webhooks/channel.js";
import { resolveConnectors } from "./webhooks/connectors.js";

/** How long a last-resource unavailable waits for the lane's running delivery rounds (their acks) to end. */
const LAST_GONE_SETTLE_MS = 1000;

/** What createCardlink has built before the core: the services every module shares. */

export interface CoreServices {
  config: Config;
  log: Logger;
  metrics: Metrics;
  router: Router;
  adhoc: AdhocCommands;
  events: EventBus;
  iq: IqCaller;
  budget: StanzaBudget;
  send(el: Element): Promise<boolean>;
  online(): boolean;
}

export interface Core {
  rt: Runtime;
  engine: Engine;
  delivery: StreamDelivery;
  presence: Presence;
  kinds: KindRegistry;
  modules: readonly FeatureModule[];
  /** disco#info features the modules add (push only while a provider is configured). */
  discoFeatures(): string[];
  /** Link (re)connected: presence restored, engine started (or kicked), modules told, lanes with resources kicked. */
  online(): Promise<void>;
  /** Modules stopped (reverse order), then the engine (rounds settle, leases given back). */
  stop(): Promise<void>;
}

const DAY_MS = 86_400_000;

/** The component link as a stream transport: one IQ set per resource, its reply or timeout as the outcome. */
export function iqTransport(iq: IqCaller, domain: string): StreamTransport {
  return {
    async send(o): Promise<SendOutcome> {
      try {
        await iq.request(
          xml("iq", { type: "set", id: o.id, to: o.to, from: domain }, o.payload),
          o.timeoutMs,
        );
        return { type: "result" };
      } catch (e) {
        if (e instanceof IqErrorReply) return { type: "error", condition: e.condition };
        // A re-offer to the same full JID took this IQ's reply (iq-caller.ts): the newer attempt settles it.
        if (e instanceof IqSupersededError) return { type: "timeout" };
        // A timeout, the link going down or the per-recipient bound: retried with backoff, never lost.
        if (!(e instanceof IqTimeoutError)) throw e;
        return { type: "timeout" };
      }
    },
  };
}

export function buildCore(
  s: CoreServices,
  store: Store,
  makeModules: (o: { wakeKinds: () => readonly string[] }) => readonly FeatureModule[],
): Core {
  const { config, log, metrics, events } = s;
  const kinds = new KindRegistry();
  // wakeKinds is read by push at attach, after every module's kinds are registered below.
  const modules = makeModules({ wakeKinds: () => kinds.waking() });
  for (const m of modules) for (const k of m.kinds ?? []) kinds.register(k);
  const paths = modules.flatMap((m) => m.audiencePaths ?? []);
  const accounts = accountsParts({
    cacheSize: config.accounts.cacheSize,
    cacheTtlMs: config.accounts.cacheTtlMs,
    events,
  });
  const audience = audienceParts({ paths });
  // Several processes on one PostgreSQL (issue 13, wake.ts): lane wake-ups over NOTIFY, shared presence rows.
  const shared = !config.queue.exclusive && store.listen !== undefined;
  const me = newProcessId();
  // The engine is built after the unit of work (it needs it); jobsTx looks channels up through it at call time.
  const uow = makeUow(
    store,
    {
      accounts: accounts.tx,
      stream: streamTx({
        kind: (n) => kinds.get(n),
        paths,
        ...(shared ? { wakeChannel: WAKE_CHANNEL } : {}),
      }),
      jobs: jobsTx({ channel: (name) => engine.channel(name) }),
      audience: audience.tx,
    },
    events,
  );
  const read = makeReader(store, { accounts: accounts.read, audience: audience.read });
  const presence = new Presence({
    uow,
    read,
    send: s.send,
    domain: config.domain,
    resourcesPerUser: config.limits.resourcesPerUser,
    metrics,
    log,
    ...(shared ? { shared: { me, silentMs: MISSED_BEATS * config.queue.heartbeatMs } } : {}),
  });
  metrics.histogram(
    "cardlink_delivery_latency_seconds",
    ["kind"],
    LATENCY_BUCKETS,
    "time from an outbox entry being written to the holder's ack, per update kind",
  );
  // Assigned once the modules are attached: delivery's all-gone hook asks push to announce what waits.
  let onAllGone: ((lane: AccountId) => void) | undefined;
  const delivery = new StreamDelivery({
    uow,
    read,
    kind: (n) => kinds.get(n),
    transport: iqTransport(s.iq, config.domain),
    presence,
    budget: s.budget,
    log,
    config: config.delivery,
    leaseMs: config.queue.leaseMs,
    // The engine's process id is the lease owner of cursors and jobs alike.
    me,
    silentMs: MISSED_BEATS * config.queue.heartbeatMs,
    persistInflight: config.queue.persistInflight,
    ...(shared ? { wakeChannel: WAKE_CHANNEL } : {}),
    // A consumer's resources all gone wakes the account's devices only when it has no resource left at all: a
    // declared device going away while another resource is online is not "offline" (§10.6: no push while a
    // resource counts as available). Without declarations the shared consumer's resources are all of them.
    onAllGone: (lane) => {
      if (!presence.available(lane)) onAllGone?.(lane);
    },
    hooks: {
      acked: (entries) => {
        metrics.inc("cardlink_delivery_acked_total", undefined, entries.length);
        const now = Date.now();
        for (const e of entries) {
          metrics.observe(
            "cardlink_delivery_latency_seconds",
            { kind: e.kind },
            Math.max(0, now - e.createdAt) / 1000,
          );
        }
      },
      retried: (n) => metrics.inc("cardlink_delivery_retry_total", undefined, n),
      gone: () => metrics.inc("cardlink_delivery_recipient_gone_total"),
      cut: (n) => metrics.inc("cardlink_delivery_batches_cut_total", undefined, n),
    },
  });
  const engine = new Engine({
    store,
    uow,
    events,
    log,
    config: config.queue,
    processId: me,
    delivery,
    dormancy: {
      deviceIdleMs: config.delivery.deviceIdleDays * DAY_MS,
      sharedIdleMs: config.delivery.sharedIdleDays * DAY_MS,
    },
    laneOf: async (from) => {
      const bare = parseJid(from)?.bare;
      return bare === undefined ? undefined : read("queue.lane-of", (r) => r.accounts.resolve(bare));
    },
  });
  // The webhook channel is the runtime's, not a feature's: any feature enqueues to it (webhooks/api.ts), and it
  // is registered even without connectors, so a job naming a connector that was removed is dead-lettered, not lost.
  const webhooks = new WebhookChannel({
    connectors: resolveConnectors(config.webhooks.connectors),
    config: config.webhooks,
    log,
    metrics,
    buckets: { latency: LATENCY_BUCKETS, request: PROVIDER_BUCKETS },
  });
  engine.registerChannel(webhooks);
  presence.onAvailable = (lane, consumer, full) => delivery.available(lane, consumer, full);
  const scale = shared
    ? new ScaleOut({
        store,
        engine,
        delivery,
        presence,
        log,
        metrics,
        pollMs: config.queue.pollMs,
        heartbeatMs: config.queue.heartbeatMs,
      })
    : undefined;
  scale?.attach(s.router);
  // A removed device's cursor goes with it (accounts repo, in its unit of work); what only that cursor held is
  // collected in the same unit of work (§2.3.3 GC), and resources that declared it fall back to the shared
  // cursor after the commit.
  events.onTx("device.removed", async (u, e) => {
    await streamRepo(u.tx).gc(e.account);
  });
  events.on("device.removed", (e) => presence.undeclareDevice(e.account, e.device));

  const rt: Runtime = {
    config,
    log,
    metrics,
    budget: s.budget,
    limits: config.limits,
    router: s.router,
    adhoc: s.adhoc,
    events,
    iq: s.iq,
    uow,
    read,
    // Outside a unit of work: each call is its own read snapshot (the directory cache answers most).
    accounts: {
      resolve: (jid) => read("accounts.resolve", (r) => r.accounts.resolve(jid)),
      jidOf: (id) => read("accounts.jid-of", (r) => r.accounts.jidOf(id)),
      jidsOf: (ids) => read("accounts.jids-of", (r) => r.accounts.jidsOf(ids)),
      devices: (id) => read("accounts.devices", (r) => r.accounts.devices(id)),
      device: (id, d) => read("accounts.device", (r) => r.accounts.device(id, d)),
    },
    queue: engine,
    presence,
    send: s.send,
    online: s.online,
  };
  presence.attach(s.router);
  for (const m of modules) if (m.onAccountDeleting) events.onTx("account.deleting", m.onAccountDeleting);
  for (const m of modules) m.attach(rt);
  watchStream(metrics, store, kinds);
  const push = modules.find((m): m is FeatureModule & PushAnnounce => "announcePending" in m);
  if (push) {
    // The last resource left with entries still waiting (e.g. unacknowledged): wake a device, as today — in the
    // unit of work that deletes the resource row, so a crash cannot keep the row gone and the wake-up unwritten.
    // An ack on its way in (one round trip) is written before the announce reads the lane; bounded, so a client
    // that never answered does not hold its own wake-up back for longer than that.
    presence.beforeLastGone = (lane) => delivery.settled(lane, LAST_GONE_SETTLE_MS);
    presence.onUnavailableTx = async (u, lane, _full, last) => {
      if (last) {
        metrics.inc("cardlink_delivery_offline_total");
        await push.announcePending(u, lane);
      }
    };
    onAllGone = (lane) => {
      metrics.inc("cardlink_delivery_offline_total");
      void uow("push.announce-all-gone", (u) => push.announcePending(u, lane)).catch((e: unknown) =>
        log.error({ event: "push-announce-failed", lane, err: (e as Error).message }, "push announce failed"),
      );
    };
  }
  const eng = engine;
  return {
    rt,
    engine: eng,
    delivery,
    presence,
    kinds,
    modules,
    discoFeatures: () => modules.flatMap((m) => [...(m.discoFeatures?.(rt) ?? [])]),
    async online() {
      await presence.restore();
      await eng.start();
      scale?.start();
      for (const m of modules) await m.online?.();
      eng.kickLanes(presence.lanes());
    },
    async stop() {
      for (const m of [...modules].reverse()) {
        try {
          await m.stop?.();
        } catch (e) {
          log.error(
            { event: "feature-stop-failed", feature: m.name, err: (e as Error).message },
            "feature stop failed",
          );
        }
      }
      await eng.stop();
      await scale?.stop();
      webhooks.close();
    },
  };
}

/**
 * The stream-depth gauges' one query: a scan of the covering index stream_kind (kind, created_at) in group order,
 * so no table rows and no temp b-tree (test/integration/queue-metrics.test.ts checks the plan).
 */
export const STREAM_DEPTH_SQL =
  "SELECT kind, COUNT(*) AS n, MIN(created_at) AS oldest FROM stream_entries GROUP BY kind";

/**
 * The stream's depth and oldest entry's age per kind, read at scrape time by one grouped query (cached:
 * SCRAPE_CACHE_MS), under today's names (cardlink_outbox_*). Every registered kind is reported, 0 when none
 * waits, so an alert on a kind's depth does not see its series vanish when the queue drains.
 */
function watchStream(metrics: Metrics, store: Store, kinds: KindRegistry): void {
  const depth = cachedRead(() =>
    store.read("metrics.stream-depth", (r) =>
      r.all<{ kind: string; n: number; oldest: number }>(STREAM_DEPTH_SQL),
    ),
  );
  const rows = async (
    value: (d: { n: number; oldest: number }, now: number) => number,
  ): Promise<Array<{ labels: { kind: string }; value: number }>> => {
    const byKind = new Map(
      (await depth()).map((d) => [d.kind, { n: Number(d.n), oldest: Number(d.oldest) }]),
    );
    const now = Date.now();
    const names = new Set([...kinds.list().map((k) => k.name), ...byKind.keys()]);
    return [...names].sort().map((kind) => {
      const d = byKind.get(kind);
      return { labels: { kind }, value: d ? value(d, now) : 0 };
    });
  };
  metrics.gaugeRows(
    "cardlink_outbox_entries",
    ["kind"],
    () => rows((d) => d.n),
    "outbox entries waiting for a holder's ack, per update kind",
  );
  // The age is computed from the (possibly cached) oldest timestamp at each read, so it keeps growing
  // between two queries instead of standing still.
  metrics.gaugeRows(
    "cardlink_outbox_oldest_entry_age_seconds",
    ["kind"],
    () => rows((d, now) => Math.max(0, now - d.oldest) / 1000),
    "age of the oldest outbox entry not yet acknowledged, per update kind (0 when none waits)",
  );
}

/** The push module's hook (features/push/index.ts PushModule), found by shape so runtime/ imports no feature. */
interface PushAnnounce {
  announcePending(u: UnitOfWork, lane: AccountId): Promise<number>;
}
