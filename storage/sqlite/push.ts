/** SQLite push queue, budget log and XEP-0357 node registry. */
import { randomBytes } from "node:crypto";
import type { PushJob, PushNode, PushRepo, QueueBacklog, QueueDepth, QueueKindStats } from "../store.js";
import type { Db } from "./db.js";
import { queueDrop, queueOverview, queueOwnerDepth, queueRedeliver, type QueueTable } from "./repos.js";

const PUSH_QUEUE: QueueTable = { table: "push_queue", key: "platform", who: "owner" };

type Row = Record<string, unknown>;

function toJob(r: Row): PushJob {
  const job: PushJob = {
    id: String(r.id),
    owner: String(r.owner),
    deviceId: String(r.device_id),
    platform: String(r.platform) as PushJob["platform"],
    token: String(r.token),
    kind: String(r.kind) as PushJob["kind"],
    collapseId: String(r.collapse_id),
    data: JSON.parse(String(r.data)) as Record<string, string>,
    expiresAt: Number(r.expires_at),
    attempts: Number(r.attempts),
    nextAt: Number(r.next_at),
    createdAt: Number(r.created_at),
  };
  if (r.topic !== null && r.topic !== undefined) job.topic = String(r.topic);
  if (r.alert !== null && r.alert !== undefined)
    job.alert = JSON.parse(String(r.alert)) as NonNullable<PushJob["alert"]>;
  return job;
}

/** The push-queue gauges' one query: a scan of the covering index push_queue_platform (see OUTBOX_DEPTH_SQL). */
export const PUSH_DEPTH_SQL =
  "SELECT platform, COUNT(*) AS n, MIN(created_at) AS oldest FROM push_queue GROUP BY platform";

export class SqlitePush implements PushRepo {
  constructor(private readonly db: Db) {}

  async enqueue(jobs: Array<Omit<PushJob, "attempts" | "nextAt">>): Promise<number> {
    const stmt = this.db.prepare(
      `INSERT INTO push_queue (id, owner, device_id, platform, token, topic, kind, collapse_id, alert, data, expires_at, created_at)
       VALUES (@id, @owner, @deviceId, @platform, @token, @topic, @kind, @collapseId, @alert, @data, @expiresAt, @now)
       ON CONFLICT (token, collapse_id) DO UPDATE SET kind = excluded.kind, alert = excluded.alert, data = excluded.data,
         expires_at = excluded.expires_at, topic = excluded.topic`,
    );
    return this.db.transaction(() => {
      const now = Date.now();
      let n = 0;
      for (const j of jobs) {
        n += stmt.run({
          ...j,
          topic: j.topic ?? null,
          alert: j.alert ? JSON.stringify(j.alert) : null,
          data: JSON.stringify(j.data),
          now,
        }).changes;
      }
      return n;
    })();
  }

  async due(now: number, limit: number): Promise<PushJob[]> {
    return (
      this.db
        .prepare("SELECT * FROM push_queue WHERE next_at <= ? ORDER BY next_at, created_at LIMIT ?")
        .all(now, limit) as Row[]
    ).map(toJob);
  }

  async nextAt(): Promise<number | undefined> {
    const r = this.db.prepare("SELECT MIN(next_at) AS t FROM push_queue").get() as { t: number | null };
    return r.t ?? undefined;
  }

  async sent(ids: string[], tokens: string[], now: number): Promise<void> {
    this.db.transaction(() => {
      const del = this.db.prepare("DELETE FROM push_queue WHERE id = ?");
      for (const id of ids) del.run(id);
      const log = this.db.prepare("INSERT INTO push_sent (token, sent_at) VALUES (?, ?)");
      for (const t of tokens) log.run(t, now);
      this.db.prepare("DELETE FROM push_sent WHERE sent_at < ?").run(now - 3_600_000);
    })();
  }

  async remove(ids: string[]): Promise<void> {
    this.db.transaction(() => {
      const del = this.db.prepare("DELETE FROM push_queue WHERE id = ?");
      for (const id of ids) del.run(id);
    })();
  }

  async retry(id: string, nextAt: number): Promise<void> {
    this.db
      .prepare("UPDATE push_queue SET attempts = attempts + 1, next_at = ? WHERE id = ?")
      .run(nextAt, id);
  }

  async defer(id: string, nextAt: number): Promise<void> {
    this.db.prepare("UPDATE push_queue SET next_at = ? WHERE id = ?").run(nextAt, id);
  }

  async dropToken(token: string): Promise<number> {
    return this.db.prepare("DELETE FROM push_queue WHERE token = ?").run(token).changes;
  }

  async sentSince(token: string, since: number): Promise<number[]> {
    return (
      this.db
        .prepare("SELECT sent_at FROM push_sent WHERE token = ? AND sent_at >= ? ORDER BY sent_at")
        .all(token, since) as Array<{
        sent_at: number;
      }>
    ).map((r) => r.sent_at);
  }

  async count(): Promise<number> {
    return Number((this.db.prepare("SELECT COUNT(*) AS n FROM push_queue").get() as { n: number }).n);
  }

  async depthByPlatform(): Promise<Record<string, QueueBacklog>> {
    const rows = this.db.prepare(PUSH_DEPTH_SQL).all() as Array<{
      platform: string;
      n: number;
      oldest: number;
    }>;
    const out: Record<string, QueueBacklog> = {};
    for (const r of rows) out[r.platform] = { entries: Number(r.n), oldestCreatedAt: Number(r.oldest) };
    return out;
  }

  async secret(name: string): Promise<string> {
    const key = `secret:${name}`;
    this.db
      .prepare("INSERT OR IGNORE INTO meta (key, value) VALUES (?, ?)")
      .run(key, randomBytes(32).toString("base64"));
    return String(
      (this.db.prepare("SELECT value FROM meta WHERE key = ?").get(key) as { value: string }).value,
    );
  }

  async createNode(n: PushNode): Promise<PushNode> {
    this.db
      .prepare(
        `INSERT INTO push_nodes (node, owner, device_id, secret, created_at) VALUES (@node, @owner, @deviceId, @secret, @createdAt)
         ON CONFLICT (owner, device_id) DO UPDATE SET node = excluded.node, secret = excluded.secret, created_at = excluded.created_at`,
      )
      .run(n);
    return n;
  }

  async node(node: string): Promise<PushNode | undefined> {
    const r = this.db.prepare("SELECT * FROM push_nodes WHERE node = ?").get(node) as Row | undefined;
    return r
      ? {
          node: String(r.node),
          owner: String(r.owner),
          deviceId: String(r.device_id),
          secret: String(r.secret),
          createdAt: Number(r.created_at),
        }
      : undefined;
  }

  async overview(): Promise<QueueKindStats[]> {
    return queueOverview(this.db, PUSH_QUEUE);
  }

  async ownerStats(owner: string): Promise<QueueDepth> {
    return queueOwnerDepth(this.db, PUSH_QUEUE, owner);
  }

  async redeliver(owner: string): Promise<number> {
    return queueRedeliver(this.db, PUSH_QUEUE, owner);
  }

  async dropOwner(owner: string): Promise<number> {
    return queueDrop(this.db, PUSH_QUEUE, owner);
  }
}
