/**
 * The push-scan observer (docs/REDESIGN.md §2.3.7, §4.3): the durable push intent. It reads the global stream
 * from its mark (runtime/queue/observers.ts) and, in the unit of work that moves the mark, turns the pending
 * entries of `wake` kinds of offline accounts into push jobs — so a kill -9 after a change's commit leaves
 * mark < seq and the restart still sends the wake-up.
 *
 * Per lane (a recipient account) with no available resource (the presence predicate; online lanes are
 * delivery's), per change (one seq): its subjects become refs — ≤ 3 distinct subjects: one ref each, more:
 * one `*` ("several updates") — and each pushable device gets one job per ref, ckey = ref, so a second change
 * about the same subject replaces the pending notice instead of adding one (today's component/push.ts rules:
 * policy per platform, alert text, `enc` of `{kinds, subjects}` with wire subjects).
 *
 * `announce` is the same per-lane step over a lane's pending entries, for the triggers that are not a new
 * entry (the last resource left with entries waiting; a delivery found every resource gone).
 */
import type { Metrics } from "../../runtime/metrics.js";
import type { Observer, PendingEntry } from "../../runtime/queue/api.js";
import type { UnitOfWork } from "../../runtime/uow.js";
import type { AccountId } from "../../../storage/store.js";
import {
  noticeJob,
  pushable,
  PUSH_CHANNEL,
  refInput,
  subjectRef,
  type NoticeKind,
  type NoticeText,
  type Refs,
} from "./payload.js";

export const SCAN_OBSERVER = "push-scan";
/** Past this many distinct subjects in one change, one notice says "several updates". */
export const MAX_REFS = 3;

export interface ScanOptions {
  /** True while the account has an available resource: delivery serves it, no push. */
  readonly isOnline: (account: AccountId) => boolean;
  /**
   * When given, used instead of isOnline for a scan batch's lanes (one query): with several processes the
   * scanning process does not hold every user's presence (runtime PresenceView.onlineAmong).
   */
  readonly onlineAmong?: (u: UnitOfWork, accounts: readonly AccountId[]) => Promise<Set<AccountId>>;
  /** The registered kinds with wake = true. */
  readonly wakeKinds: readonly string[];
  readonly policy: { readonly ios: NoticeKind | "none"; readonly android: NoticeKind | "none" };
  readonly text: NoticeText;
  readonly ttlSeconds: number;
  /** A provider is configured for the platform (push/senders.ts built one). */
  readonly hasProvider: (platform: "ios" | "android") => boolean;
  readonly refs: Refs;
  readonly metrics: Metrics;
  /** Entries per observer batch (§4.3: ≤ 5,000). */
  readonly batchSize?: number;
}

export function pushScan(o: ScanOptions): Observer {
  return {
    name: SCAN_OBSERVER,
    kinds: o.wakeKinds,
    batchSize: o.batchSize ?? 5_000,
    async batch(u, entries) {
      const lanes = new Map<AccountId, PendingEntry[]>();
      for (const e of entries) lanes.set(e.lane, [...(lanes.get(e.lane) ?? []), e]);
      const online = o.onlineAmong ? await o.onlineAmong(u, [...lanes.keys()]) : undefined;
      for (const [lane, es] of lanes) {
        if (online ? online.has(lane) : o.isOnline(lane)) continue;
        await notify(u, o, lane, es);
      }
    },
  };
}

/** The jobs for one offline lane's pending entries (announcePending): whatever waits gets one wake-up per ref. */
export async function announce(
  u: UnitOfWork,
  o: ScanOptions,
  lane: AccountId,
  limit = 5_000,
): Promise<number> {
  const wake = new Set(o.wakeKinds);
  const es = (await u.queue.pending(lane, limit)).filter((e) => wake.has(e.kind));
  return notify(u, o, lane, es);
}

/** Jobs for one lane's entries, one seq group (one change) at a time; returns how many jobs were written. */
async function notify(
  u: UnitOfWork,
  o: ScanOptions,
  lane: AccountId,
  es: readonly PendingEntry[],
): Promise<number> {
  if (es.length === 0) return 0;
  const devices = (await u.accounts.devices(lane)).flatMap((d) => {
    const platform = pushable(d);
    const kind = platform ? o.policy[platform] : "none";
    return platform && kind !== "none" ? [{ d, platform, kind }] : [];
  });
  const reachable = devices.filter((x) => o.hasProvider(x.platform));
  const unserved = devices.filter((x) => !o.hasProvider(x.platform));
  if (unserved.length > 0)
    u.afterCommit(() => {
      for (const x of unserved)
        o.metrics.inc("cardlink_push_total", { platform: x.platform, outcome: "no-provider" });
    });
  if (reachable.length === 0) return 0;
  const changes = new Map<number, PendingEntry[]>();
  for (const e of es) changes.set(e.seq, [...(changes.get(e.seq) ?? []), e]);
  let written = 0;
  for (const change of changes.values()) {
    const subjects = [...new Set(change.map(subjectRef))];
    const refs = await Promise.all(
      (subjects.length <= MAX_REFS ? subjects : ["*"]).map((s) => o.refs.ref(u.tx, refInput(lane, s))),
    );
    // What `enc` reveals to the device's own key: the kinds and the wire subjects (JIDs for account subjects).
    const secret = {
      kinds: [...new Set(change.map((e) => e.kind))],
      subjects: [
        ...new Set(
          await Promise.all(
            change.map((e) =>
              e.subjectAccount !== undefined ? u.accounts.jidOf(e.subjectAccount) : e.subject,
            ),
          ),
        ),
      ],
    };
    for (const { d, kind } of reachable)
      for (const ref of refs) {
        const spec = noticeJob(d, kind, ref, o.text, secret, { ttlSeconds: o.ttlSeconds, now: u.now });
        if (!spec) continue;
        await u.queue.job(PUSH_CHANNEL, spec);
        written++;
      }
  }
  return written;
}
