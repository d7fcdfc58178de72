/**
 * The admin commands' queue statements on schema 2000 (PROTOCOL.md §19): the overview per stream kind and per
 * push platform, and a user's re-deliver / drop. The legacy queues were two tables with per-row attempts; here
 * the stream keeps attempts per cursor (a lane retries as a whole) and push notices are `push` jobs, so
 * "retrying" counts the pending entries of lanes whose cursor failed at least once, and the push platform is the
 * job's device's. Portable SQL (docs/REDESIGN.md §2.1).
 */
import type { AccountId, Sql } from "../../../storage/store.js";

/** As storage/store.ts QueueKindStats (the legacy admin shape): one line of the queue overview. */
export interface KindStats {
  key: string;
  entries: number;
  recipients: number;
  retrying: number;
  oldestAt: number;
}

/** As storage/store.ts QueueDepth: one user's part of a queue. */
export interface Depth {
  entries: number;
  retrying: number;
  maxAttempts: number;
  oldestAt?: number;
}

/** The lane's horizon: the lowest active cursor (a lane without one has nothing pending: stream-repo.ts). */
const HORIZON = (lane: string): string =>
  `COALESCE((SELECT MIN(c.pos) FROM stream_cursors c WHERE c.account_id = ${lane} AND c.state = 'active'),
     CAST(:no_horizon AS BIGINT))`;
const RETRYING = (lane: string): string =>
  `EXISTS (SELECT 1 FROM stream_cursors c WHERE c.account_id = ${lane} AND c.state = 'active' AND c.attempts > 0)`;
const NO_HORIZON = Number.MAX_SAFE_INTEGER;

const STREAM_OVERVIEW = `SELECT e.kind AS k, COUNT(*) AS n, COUNT(DISTINCT e.account_id) AS r,
    SUM(CASE WHEN ${RETRYING("e.account_id")} THEN 1 ELSE 0 END) AS retrying, MIN(e.created_at) AS t
  FROM stream_entries e WHERE e.seq > ${HORIZON("e.account_id")} GROUP BY e.kind ORDER BY e.kind`;
const LANE_DEPTH = `SELECT COUNT(*) AS n, MIN(e.created_at) AS t FROM stream_entries e
  WHERE e.account_id = :me AND e.seq > ${HORIZON(":me")}`;
const LANE_ATTEMPTS = `SELECT MAX(attempts) AS m FROM stream_cursors WHERE account_id = :me AND state = 'active'`;
const LANE_RESET = `UPDATE stream_cursors SET attempts = 0, next_at = 0 WHERE account_id = :me`;
const LANE_DROP = `DELETE FROM stream_entries WHERE account_id = :me AND seq > ${HORIZON(":me")}`;

const PUSH_OVERVIEW = `SELECT COALESCE(d.platform, 'other') AS k, COUNT(*) AS n, COUNT(DISTINCT j.account_id) AS r,
    SUM(CASE WHEN j.attempts > 0 THEN 1 ELSE 0 END) AS retrying, MIN(j.created_at) AS t
  FROM jobs j LEFT JOIN devices d ON d.id = j.device WHERE j.channel = 'push'
  GROUP BY COALESCE(d.platform, 'other') ORDER BY k`;
const PUSH_DEPTH = `SELECT COUNT(*) AS n, SUM(CASE WHEN attempts > 0 THEN 1 ELSE 0 END) AS retrying,
    MAX(attempts) AS m, MIN(created_at) AS t FROM jobs WHERE channel = 'push' AND account_id = :me`;
const PUSH_RESET = `UPDATE jobs SET attempts = 0, next_at = 0 WHERE channel = 'push' AND account_id = :me`;
const PUSH_DROP = `DELETE FROM jobs WHERE channel = 'push' AND account_id = :me`;

interface StatsRow {
  k: string;
  n: number;
  r: number;
  retrying: number | null;
  t: number;
}
const stats = (rows: StatsRow[]): KindStats[] =>
  rows.map((x) => ({
    key: x.k,
    entries: Number(x.n),
    recipients: Number(x.r),
    retrying: Number(x.retrying ?? 0),
    oldestAt: Number(x.t),
  }));

export const adminRepo = (q: Sql) => ({
  streamOverview: async (): Promise<KindStats[]> =>
    stats(await q.all<StatsRow>(STREAM_OVERVIEW, { no_horizon: NO_HORIZON })),
  pushOverview: async (): Promise<KindStats[]> => stats(await q.all<StatsRow>(PUSH_OVERVIEW)),

  async laneDepth(me: AccountId): Promise<Depth> {
    const d = await q.get<{ n: number; t: number | null }>(LANE_DEPTH, { me, no_horizon: NO_HORIZON });
    const a = await q.get<{ m: number | null }>(LANE_ATTEMPTS, { me });
    const entries = Number(d?.n ?? 0);
    const maxAttempts = Number(a?.m ?? 0);
    const out: Depth = { entries, retrying: maxAttempts > 0 ? entries : 0, maxAttempts };
    if (d?.t !== null && d?.t !== undefined && entries > 0) out.oldestAt = Number(d.t);
    return out;
  },
  async pushDepth(me: AccountId): Promise<Depth> {
    const d = await q.get<{ n: number; retrying: number | null; m: number | null; t: number | null }>(
      PUSH_DEPTH,
      { me },
    );
    const out: Depth = {
      entries: Number(d?.n ?? 0),
      retrying: Number(d?.retrying ?? 0),
      maxAttempts: Number(d?.m ?? 0),
    };
    if (d?.t !== null && d?.t !== undefined) out.oldestAt = Number(d.t);
    return out;
  },

  /** Resets the lane's cursors' backoff; returns the pending entries that will be offered again now. */
  async redeliverLane(me: AccountId): Promise<number> {
    const d = await q.get<{ n: number }>(LANE_DEPTH, { me, no_horizon: NO_HORIZON });
    await q.run(LANE_RESET, { me });
    return Number(d?.n ?? 0);
  },
  /** Drops the lane's pending entries (what no active cursor acknowledged yet) and resets the cursors' backoff. */
  async dropLane(me: AccountId): Promise<number> {
    const n = (await q.run(LANE_DROP, { me, no_horizon: NO_HORIZON })).changes;
    await q.run(LANE_RESET, { me });
    return n;
  },
  redeliverPush: async (me: AccountId): Promise<number> => (await q.run(PUSH_RESET, { me })).changes,
  dropPush: async (me: AccountId): Promise<number> => (await q.run(PUSH_DROP, { me })).changes,
});
