/**
 * SQL of the job half of the queue (docs/REDESIGN.md §2.3.6, §2.6): `jobs`, `dead_letters`, and the lease
 * bookkeeping every queue table shares (`processes` heartbeats). Plain functions over `Sql`, in the portable
 * subset of §2.1 (named parameters, `ON CONFLICT … WHERE`, `RETURNING`, `CASE` instead of two-argument MAX), so
 * the PostgreSQL executor (issue 13) runs the same texts. Texts that depend on the dialect (`skipLocked`) are
 * built once per dialect, so the statement cache key stays stable.
 *
 * Times are epoch milliseconds, `expires_at` included (0 = never); bodies are JSON text parsed here.
 */
import type { AccountId, DeviceKey, Dialect, Sql } from "../../../storage/store.js";
import type { ClaimedJob, JobId, JobSpec, Json } from "./api.js";

/** A claimed row as the loop needs it: the public ClaimedJob plus what a dead letter copies. */
export interface JobRow extends ClaimedJob {
  channel: string;
  createdAt: number;
  nextAt: number;
}

interface RawJob {
  id: number;
  channel: string;
  kind: string;
  target: string;
  account_id: number | null;
  device: number | null;
  body: string;
  rev: number;
  uid: string;
  attempts: number;
  next_at: number;
  expires_at: number;
  created_at: number;
}

const toRow = (r: RawJob): JobRow => ({
  id: Number(r.id) as JobId,
  channel: r.channel,
  rev: Number(r.rev),
  uid: r.uid,
  kind: r.kind,
  target: r.target,
  body: JSON.parse(r.body) as Json,
  attempts: Number(r.attempts),
  expiresAt: Number(r.expires_at),
  nextAt: Number(r.next_at),
  createdAt: Number(r.created_at),
  ...(r.account_id === null ? {} : { account: Number(r.account_id) as AccountId }),
  ...(r.device === null ? {} : { device: Number(r.device) as DeviceKey }),
});

const JOB_COLUMNS =
  "id, channel, kind, target, account_id, device, body, rev, uid, attempts, next_at, expires_at, created_at";

/**
 * §2.3.6's replacing upsert. A NULL ckey never conflicts (NULLs are distinct in a unique index), so one text
 * serves both rules: with a ckey the body and expiry are replaced and rev bumped, attempts, next_at and uid kept
 * (a notice deferred by a budget stays deferred while it coalesces; the receiver's idempotency id is stable);
 * without one every job is its own row. A new row has rev 1, so `rev > 1` after the statement means "replaced".
 */
const UPSERT = `
INSERT INTO jobs (channel, kind, target, account_id, device, ckey, body, uid, next_at, expires_at, created_at)
VALUES (:channel, :kind, :target, :account, :device, :ckey, :body, :uid, :next_at, :expires_at, :now)
ON CONFLICT (channel, target, ckey) WHERE ckey IS NOT NULL DO UPDATE
   SET body = excluded.body, kind = excluded.kind, expires_at = excluded.expires_at, rev = jobs.rev + 1
RETURNING id, rev`;

/**
 * A lease is free when it was never taken, has run out, or belongs to a process whose heartbeat is older than
 * `:alive` (§2.3.5: 3 missed beats). `NULL NOT IN (…)` is never true, hence the explicit IS NULL.
 */
export const LEASE_FREE = `(lease_owner IS NULL OR lease_until < :now
   OR lease_owner NOT IN (SELECT p.id FROM processes p WHERE p.heartbeat_at >= :alive))`;

/** Expired jobs go at claim (§4.5 case 39), before they could be sent; only ones no live process holds. */
const DROP_EXPIRED = `
DELETE FROM jobs WHERE channel = :channel AND expires_at > 0 AND expires_at <= :now AND next_at <= :now
   AND ${LEASE_FREE}`;

const claimSql = memo(
  (d: Dialect) => `
UPDATE jobs SET lease_owner = :me, lease_until = :until
 WHERE id IN (SELECT id FROM jobs WHERE channel = :channel AND next_at <= :now AND ${LEASE_FREE}
               ORDER BY next_at, id LIMIT :n ${d.skipLocked})
RETURNING ${JOB_COLUMNS}`,
);

/**
 * Settle `done`: only the content that was sent goes; a body replaced in flight (rev bumped) stays. Every settle
 * statement also names the lease: a job deleted while in flight (a feature dropped it) can leave its id to a new
 * row (SQLite reuses the highest rowid), and that row — unleased — must not be deleted or retried in its place.
 */
const DELETE_REV = "DELETE FROM jobs WHERE id = :id AND rev = :rev AND lease_owner = :me";
/** A replaced row that survived its settle: lease cleared, due at once (the newer body goes out next). */
const RELEASE_REPLACED = `
UPDATE jobs SET lease_owner = NULL, lease_until = 0, next_at = :now WHERE id = :id AND lease_owner = :me`;
const RETRY = `
UPDATE jobs SET attempts = attempts + 1, next_at = :next_at, last_error = :error, lease_owner = NULL, lease_until = 0
 WHERE id = :id AND lease_owner = :me`;
/** A gate's deferral: a later not-before, no attempt counted. */
const DEFER = `
UPDATE jobs SET next_at = :next_at, lease_owner = NULL, lease_until = 0 WHERE id = :id AND lease_owner = :me`;
const DEAD_LETTER = `
INSERT INTO dead_letters (channel, kind, target, account_id, body, uid, attempts, last_error, created_at, died_at)
VALUES (:channel, :kind, :target, :account, :body, :uid, :attempts, :error, :created_at, :now)`;
/** A dead letter replays as a new job (no ckey: it is one concrete delivery) with the same uid (§4.5 case 38). */
const REPLAY = `
INSERT INTO jobs (channel, kind, target, account_id, body, uid, next_at, created_at)
SELECT channel, kind, target, account_id, body, uid, :now, :now
  FROM dead_letters WHERE id = :id
RETURNING id`;
const DELETE_DEAD = "DELETE FROM dead_letters WHERE id = :id";
const DEAD_IDS_OF_CHANNEL = "SELECT id FROM dead_letters WHERE channel = :channel ORDER BY died_at, id";
const DEAD_CHANNEL = "SELECT channel FROM dead_letters WHERE id = :id";
const PURGE_DEAD = "DELETE FROM dead_letters WHERE died_at < :before";

/**
 * The next time a job of the channel becomes claimable by its next_at (leases held by other processes are the
 * poll's business). Walks jobs_due in order and stops at the first unleased row: leased rows are few.
 */
const NEXT_AT = `
SELECT next_at FROM jobs WHERE channel = :channel AND lease_owner IS NULL ORDER BY next_at LIMIT 1`;

const DEPTH = `
SELECT channel,
       SUM(CASE WHEN next_at <= :now THEN 1 ELSE 0 END) AS due,
       SUM(CASE WHEN next_at > :now THEN 1 ELSE 0 END) AS deferred,
       MIN(created_at) AS oldest
  FROM jobs GROUP BY channel`;
const DEAD_DEPTH = "SELECT channel, COUNT(*) AS n FROM dead_letters GROUP BY channel";

const DROP_BY = {
  device: "DELETE FROM jobs WHERE channel = :channel AND device = :device",
  target: "DELETE FROM jobs WHERE channel = :channel AND target = :target",
  token: `DELETE FROM jobs WHERE channel = :channel
           AND device IN (SELECT d.id FROM devices d WHERE d.push_token = :token)`,
} as const;

const HEARTBEAT = `
INSERT INTO processes (id, started_at, heartbeat_at) VALUES (:id, :now, :now)
ON CONFLICT (id) DO UPDATE SET heartbeat_at = excluded.heartbeat_at`;
const FORGET_PROCESS = "DELETE FROM processes WHERE id = :id";
/** Rows of processes silent for long (kill -9 leaves one behind); their leases are free already. */
const FORGET_SILENT = "DELETE FROM processes WHERE heartbeat_at < :before";

/** deleted: settled; kept: a newer body replaced it in flight (released for it); gone: no longer this lease's row. */
export type Settled = "deleted" | "kept" | "gone";

export const jobsRepo = (q: Sql) => ({
  async upsert(
    channel: string,
    j: JobSpec,
    uid: string,
    now: number,
  ): Promise<{ id: JobId; rev: number; replaced: boolean }> {
    const r = await q.get<{ id: number; rev: number }>(UPSERT, {
      channel,
      kind: j.kind,
      target: j.target,
      account: j.account ?? null,
      device: j.device ?? null,
      ckey: j.ckey ?? null,
      body: JSON.stringify(j.body),
      uid,
      next_at: j.notBefore ?? 0,
      expires_at: j.expiresAt ?? 0,
      now,
    });
    if (!r) throw new Error("jobs upsert returned no row");
    return { id: Number(r.id) as JobId, rev: Number(r.rev), replaced: Number(r.rev) > 1 };
  },

  /** Deletes the channel's expired, unleased jobs; returns how many. */
  async dropExpired(channel: string, now: number, alive: number): Promise<number> {
    return (await q.run(DROP_EXPIRED, { channel, now, alive })).changes;
  },

  /** Leases up to n due jobs of the channel to `me` until `until`, oldest next_at first. */
  async claim(
    channel: string,
    me: string,
    o: { now: number; until: number; alive: number; n: number },
  ): Promise<JobRow[]> {
    const rows = await q.all<RawJob>(claimSql(q.dialect), { channel, me, ...o });
    // RETURNING order is unspecified: restore the claim order, so sends go oldest first.
    return rows.map(toRow).sort((a, b) => a.nextAt - b.nextAt || a.id - b.id);
  },

  /** Deletes the job if its rev is still `rev`; otherwise releases it for its newer body. */
  async settleFinal(id: JobId, rev: number, me: string, now: number): Promise<Settled> {
    if ((await q.run(DELETE_REV, { id, rev, me })).changes > 0) return "deleted";
    return (await q.run(RELEASE_REPLACED, { id, me, now })).changes > 0 ? "kept" : "gone";
  },

  /** A failed attempt of the job `me` holds; a row that is no longer this lease's is left alone. */
  async retry(id: JobId, me: string, nextAt: number, error: string): Promise<void> {
    await q.run(RETRY, { id, me, next_at: nextAt, error });
  },

  async defer(id: JobId, me: string, nextAt: number): Promise<void> {
    await q.run(DEFER, { id, me, next_at: nextAt });
  },

  async deadLetter(j: JobRow, error: string, now: number): Promise<void> {
    await q.run(DEAD_LETTER, {
      channel: j.channel,
      kind: j.kind,
      target: j.target,
      account: j.account ?? null,
      body: JSON.stringify(j.body),
      uid: j.uid,
      attempts: j.attempts + 1,
      error,
      created_at: j.createdAt,
      now,
    });
  },

  /** Turns a dead letter back into a due job with the same uid; undefined when there is no such letter. */
  async replay(deadLetter: number, now: number): Promise<JobId | undefined> {
    const r = await q.get<{ id: number }>(REPLAY, { id: deadLetter, now });
    if (!r) return undefined;
    await q.run(DELETE_DEAD, { id: deadLetter });
    return Number(r.id) as JobId;
  },

  /** Replays the letters (ids, or every letter of `channel`); returns the channels that got jobs back. */
  async replayMany(
    which: { ids: readonly number[] } | { channel: string },
    now: number,
  ): Promise<{ n: number; channels: Set<string> }> {
    const ids =
      "ids" in which
        ? which.ids
        : (await q.all<{ id: number }>(DEAD_IDS_OF_CHANNEL, { channel: which.channel })).map((r) =>
            Number(r.id),
          );
    const channels = new Set<string>();
    let n = 0;
    for (const id of ids) {
      const c = await q.get<{ channel: string }>(DEAD_CHANNEL, { id });
      if (c === undefined) continue;
      if ((await this.replay(id, now)) !== undefined) {
        n++;
        channels.add(c.channel);
      }
    }
    return { n, channels };
  },

  async purgeDeadLetters(before: number): Promise<number> {
    return (await q.run(PURGE_DEAD, { before })).changes;
  },

  async nextAt(channel: string): Promise<number | undefined> {
    const r = await q.get<{ next_at: number }>(NEXT_AT, { channel });
    return r === undefined ? undefined : Number(r.next_at);
  },

  async dropBy(
    channel: string,
    where: { device?: DeviceKey; target?: string; token?: string },
  ): Promise<number> {
    // One filter per call: combining them would silently narrow (AND) or widen (OR) what a caller meant.
    const keys = (["device", "target", "token"] as const).filter((k) => where[k] !== undefined);
    if (keys.length !== 1)
      throw new Error(`dropJobs: exactly one of device, target, token (got ${keys.length})`);
    const k = keys[0] as "device" | "target" | "token";
    return (await q.run(DROP_BY[k], { channel, [k]: where[k] ?? null })).changes;
  },

  async depth(
    now: number,
  ): Promise<Map<string, { due: number; deferred: number; oldestAt: number; dead: number }>> {
    const out = new Map<string, { due: number; deferred: number; oldestAt: number; dead: number }>();
    for (const r of await q.all<{ channel: string; due: number; deferred: number; oldest: number }>(DEPTH, {
      now,
    }))
      out.set(r.channel, {
        due: Number(r.due),
        deferred: Number(r.deferred),
        oldestAt: Number(r.oldest),
        dead: 0,
      });
    for (const r of await q.all<{ channel: string; n: number }>(DEAD_DEPTH)) {
      const d = out.get(r.channel) ?? { due: 0, deferred: 0, oldestAt: 0, dead: 0 };
      out.set(r.channel, { ...d, dead: Number(r.n) });
    }
    return out;
  },

  async heartbeat(id: string, now: number): Promise<void> {
    await q.run(HEARTBEAT, { id, now });
  },

  async forgetProcess(id: string): Promise<void> {
    await q.run(FORGET_PROCESS, { id });
  },

  async forgetSilent(before: number): Promise<number> {
    return (await q.run(FORGET_SILENT, { before })).changes;
  },
});

export type JobsRepo = ReturnType<typeof jobsRepo>;

/** One SQL text per dialect (there are two), so each is a stable statement-cache key. */
function memo(build: (d: Dialect) => string): (d: Dialect) => string {
  const cache = new Map<string, string>();
  return (d) => {
    let s = cache.get(d.backend);
    if (s === undefined) cache.set(d.backend, (s = build(d)));
    return s;
  };
}
