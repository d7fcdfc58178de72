/**
 * The push feature module (docs/REDESIGN.md §1.2, §3.6, §4.3; the legacy component/push.ts's successor, S11):
 * channel `push` (channel.ts), observer `push-scan` (scan.ts), the XEP-0357 app server (app-server.ts),
 * and its migrations range (migrations.ts; empty, 2000 creates its tables).
 *
 * The channel and the observer are registered in attach, not declared as properties: both need the runtime
 * (the providers come from config.push, online-ness from presence). What the runtime cannot give a feature —
 * runtime/metrics.ts's bucket values and the registry's list of wake kinds — its creator passes in.
 */
import { NS } from "../../../stanzas/ns.js";
import { createSenders, type Senders } from "../../../push/senders.js";
import type { FeatureModule, Runtime } from "../../runtime/context.js";
import { AppServer } from "./app-server.js";
import { PROVIDER, PushChannel, type PushBuckets } from "./channel.js";
import { PUSH_CHANNEL } from "./payload.js";
import { PUSH_MIGRATIONS } from "./migrations.js";
import { Refs } from "./payload.js";
import { announce, pushScan, type ScanOptions } from "./scan.js";
import type { UnitOfWork } from "../../runtime/uow.js";
import type { TxHandler } from "../../runtime/events.js";
import { pushRepo } from "./repo.js";
import type { AccountId } from "../../../storage/store.js";

export interface PushModuleOptions {
  readonly buckets: PushBuckets;
  /** The registered kinds with wake = true (KindRegistry.wakeKinds()), read at attach. */
  readonly wakeKinds: () => readonly string[];
  /** runtime/metrics.ts cachedRead (the scrape-time cache of queue gauges), a value a feature cannot import. */
  readonly cachedRead: <T>(read: () => Promise<T>) => () => Promise<T>;
}

export interface PushModule extends FeatureModule {
  /** announcePending (§2.3.7): in the caller's unit of work, wake the lane's devices for whatever waits. */
  announcePending(u: UnitOfWork, lane: AccountId): Promise<number>;
}

/** Issue 14's delete-user, in its unit of work: the account's budget log and nodes (jobs go with the runtime's rows). */
export const erasePushRows: TxHandler<"account.deleting"> = async (u, e) => {
  await pushRepo(u.tx).deleteAccountRows(e.account);
};

export function pushModule(o: PushModuleOptions): PushModule {
  let senders: Senders = {};
  let scan: ScanOptions | undefined;
  const hasProvider = (p: "ios" | "android"): boolean => senders[p] !== undefined;
  return {
    name: "push",
    migrations: PUSH_MIGRATIONS,
    discoFeatures: () => (Object.keys(senders).length > 0 ? [NS.PUSH] : []),
    onAccountDeleting: erasePushRows,
    attach(rt: Runtime) {
      const p = rt.config.push;
      senders = createSenders(p);
      const refs = new Refs();
      rt.queue.registerChannel(
        new PushChannel({ senders, config: p, log: rt.log, metrics: rt.metrics, buckets: o.buckets }),
      );
      scan = {
        isOnline: (a) => rt.presence.available(a),
        onlineAmong: (u, accounts) => rt.presence.onlineAmong(u.tx, accounts),
        wakeKinds: o.wakeKinds(),
        policy: p.policy,
        text: p.alertText,
        ttlSeconds: p.ttlSeconds,
        hasProvider,
        refs,
        metrics: rt.metrics,
      };
      rt.queue.registerObserver(pushScan(scan));
      watchPushQueue(rt, o.cachedRead);
      const app = new AppServer({
        uow: rt.uow,
        domain: rt.config.domain,
        policy: p.policy,
        messageText: p.messageText,
        ttlSeconds: p.ttlSeconds,
        hasProvider,
        refs,
        metrics: rt.metrics,
        log: rt.log,
      });
      rt.router.iq("set", NS.CARDLINK, "push-node", (c) => app.registerNode(c.user, c.payload));
      rt.router.iq("set", NS.PUBSUB, "pubsub", (c) => app.publish(c.from.domain, c.from.local, c.payload), {
        allowServer: true,
      });
    },
    announcePending(u, lane) {
      if (!scan) throw new Error("push: announcePending before attach");
      return announce(u, scan, lane);
    },
    async stop() {
      await Promise.all(Object.values(senders).map((s) => s.close()));
    },
  };
}

/**
 * The push-depth gauges' one query: the channel's jobs grouped per device on the covering index jobs_device
 * (channel, device, created_at), in group order, then each device's platform by its primary key — one probe per
 * device with notices waiting, never one per notice, and no temp b-tree (grouping by platform in SQL would sort;
 * the providers are summed in rows() below). test/integration/queue-metrics.test.ts checks the plan.
 */
export const PUSH_DEPTH_SQL = `
SELECT d.platform AS platform, j.n AS n, j.oldest AS oldest
  FROM (SELECT device, COUNT(*) AS n, MIN(created_at) AS oldest FROM jobs
         WHERE channel = '${PUSH_CHANNEL}' AND device IS NOT NULL GROUP BY device) j
  JOIN devices d ON d.id = j.device`;

/**
 * The push queue's depth and oldest notice's age per provider (today's cardlink_push_queue_* names), read at
 * scrape time by one grouped query over the channel's jobs (cached: SCRAPE_CACHE_MS). Both providers are always
 * reported, 0 when none waits.
 */
function watchPushQueue(rt: Runtime, cachedRead: PushModuleOptions["cachedRead"]): void {
  const depth = cachedRead(() =>
    rt.read("metrics.push-depth", (r) =>
      r.read.all<{ platform: string; n: number; oldest: number }>(PUSH_DEPTH_SQL),
    ),
  );
  const rows = async (
    value: (d: { n: number; oldest: number }, now: number) => number,
  ): Promise<Array<{ labels: { provider: string }; value: number }>> => {
    const by = new Map<string, { n: number; oldest: number }>();
    for (const p of Object.values(PROVIDER)) by.set(p, { n: 0, oldest: Infinity });
    for (const d of await depth()) {
      const p = PROVIDER[d.platform as keyof typeof PROVIDER] ?? d.platform;
      const cur = by.get(p) ?? { n: 0, oldest: Infinity };
      by.set(p, { n: cur.n + Number(d.n), oldest: Math.min(cur.oldest, Number(d.oldest)) });
    }
    const now = Date.now();
    return [...by].map(([provider, d]) => ({ labels: { provider }, value: d.n === 0 ? 0 : value(d, now) }));
  };
  rt.metrics.gaugeRows(
    "cardlink_push_queue_notices",
    ["provider"],
    () => rows((d) => d.n),
    "push notices queued (waiting, retrying or over budget), per provider",
  );
  rt.metrics.gaugeRows(
    "cardlink_push_queue_oldest_notice_age_seconds",
    ["provider"],
    () => rows((d, now) => Math.max(0, now - d.oldest) / 1000),
    "age of the oldest queued push notice, per provider (0 when none waits)",
  );
}
