/** SQLite implementations of the repositories. Each public method is one transaction. */
import type { Card } from "../../stanzas/model/card.js";
import type { SharePolicy } from "../../stanzas/model/policy.js";
import type {
  BindResult,
  Binding,
  CardRepo,
  CardSetResult,
  Device,
  DeviceRepo,
  ExchangeCode,
  ExchangeRepo,
  ExchangeRequest,
  OutboxEntry,
  OutboxItem,
  OutboxRepo,
  PresenceRepo,
  QueueBacklog,
  QueueDepth,
  QueueKindStats,
  StoredCard,
  SyncEntry,
  SyncResult,
} from "../store.js";
import type { Db } from "./db.js";

type Row = Record<string, unknown>;
type EntryKey = Pick<OutboxEntry, "recipient" | "kind" | "subject" | "seq">;

const str = (v: unknown): string | undefined => (v === null || v === undefined ? undefined : String(v));

/** Allocates the next global sequence number (sync tokens, outbox order). Call inside a transaction. */
export function nextSeq(db: Db): number {
  const r = db
    .prepare("UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'seq' RETURNING value")
    .get() as {
    value: string | number;
  };
  return Number(r.value);
}

function currentSeq(db: Db): number {
  return Number((db.prepare("SELECT value FROM meta WHERE key = 'seq'").get() as { value: string }).value);
}

/**
 * The outbox gauges' one query: a scan of the covering index outbox_kind (kind, created_at), in group order, so
 * no table rows and no temp b-tree (test/integration/queue-metrics.test.ts checks the plan).
 */
export const OUTBOX_DEPTH_SQL =
  "SELECT kind, COUNT(*) AS n, MIN(created_at) AS oldest FROM outbox GROUP BY kind";

export class SqliteOutbox implements OutboxRepo {
  private readonly insert;
  private readonly dueStmt;
  private readonly ackStmt;
  private readonly retryStmt;
  private readonly depthStmt;

  constructor(private readonly db: Db) {
    this.insert = db.prepare(
      `INSERT INTO outbox (recipient, kind, subject, version, payload, seq, attempts, next_at, created_at)
       VALUES (@recipient, @kind, @subject, @version, @payload, @seq, 0, 0, @now)
       ON CONFLICT (recipient, kind, subject) DO UPDATE SET
         version = excluded.version, payload = excluded.payload, seq = excluded.seq, attempts = 0, next_at = 0`,
    );
    this.dueStmt = db.prepare(
      "SELECT * FROM outbox WHERE recipient = ? AND next_at <= ? ORDER BY seq LIMIT ?",
    );
    this.ackStmt = db.prepare(
      "DELETE FROM outbox WHERE recipient = ? AND kind = ? AND subject = ? AND seq = ?",
    );
    this.retryStmt = db.prepare(
      "UPDATE outbox SET attempts = attempts + 1, next_at = ? WHERE recipient = ? AND kind = ? AND subject = ? AND seq = ?",
    );
    this.depthStmt = db.prepare(OUTBOX_DEPTH_SQL);
  }

  /** Inside a caller's transaction: enqueue with one seq for the whole batch. */
  enqueueTx(items: OutboxItem[], seq = nextSeq(this.db)): number {
    const now = Date.now();
    for (const it of items) {
      this.insert.run({ ...it, payload: it.payload ?? null, seq, now });
    }
    return seq;
  }

  async enqueue(items: OutboxItem[]): Promise<number> {
    return this.db.transaction(() => this.enqueueTx(items))();
  }

  async due(recipient: string, now: number, limit: number): Promise<OutboxEntry[]> {
    return (this.dueStmt.all(recipient, now, limit) as Row[]).map(toEntry);
  }

  async ack(entries: EntryKey[]): Promise<number> {
    return this.db.transaction(() => {
      let n = 0;
      for (const e of entries) n += this.ackStmt.run(e.recipient, e.kind, e.subject, e.seq).changes;
      return n;
    })();
  }

  async retry(entries: EntryKey[], nextAt: number): Promise<void> {
    this.db.transaction(() => {
      for (const e of entries) this.retryStmt.run(nextAt, e.recipient, e.kind, e.subject, e.seq);
    })();
  }

  async drop(entries: EntryKey[]): Promise<void> {
    await this.ack(entries);
  }

  async recipients(): Promise<string[]> {
    return (
      this.db.prepare("SELECT DISTINCT recipient FROM outbox").all() as Array<{ recipient: string }>
    ).map((r) => r.recipient);
  }

  async count(recipient?: string): Promise<number> {
    const r = recipient
      ? this.db.prepare("SELECT COUNT(*) AS n FROM outbox WHERE recipient = ?").get(recipient)
      : this.db.prepare("SELECT COUNT(*) AS n FROM outbox").get();
    return Number((r as { n: number }).n);
  }

  async nextRetryAt(recipient: string): Promise<number | undefined> {
    const r = this.db
      .prepare("SELECT MIN(next_at) AS t FROM outbox WHERE recipient = ? AND next_at > 0")
      .get(recipient) as {
      t: number | null;
    };
    return r.t ?? undefined;
  }

  async depthByKind(): Promise<Record<string, QueueBacklog>> {
    const out: Record<string, QueueBacklog> = {};
    for (const r of this.depthStmt.all() as Array<{ kind: string; n: number; oldest: number }>) {
      out[r.kind] = { entries: Number(r.n), oldestCreatedAt: Number(r.oldest) };
    }
    return out;
  }

  async overview(): Promise<QueueKindStats[]> {
    return queueOverview(this.db, OUTBOX_QUEUE);
  }

  async recipientStats(recipient: string): Promise<QueueDepth> {
    return queueOwnerDepth(this.db, OUTBOX_QUEUE, recipient);
  }

  async redeliver(recipient: string): Promise<number> {
    return queueRedeliver(this.db, OUTBOX_QUEUE, recipient);
  }

  async dropRecipient(recipient: string): Promise<number> {
    return queueDrop(this.db, OUTBOX_QUEUE, recipient);
  }
}

/**
 * The two old queues (outbox, push_queue) answer the admin commands with the same four statements; only the
 * table, the grouping column and the user column differ. Names are code constants, never input.
 */
export interface QueueTable {
  table: "outbox" | "push_queue";
  key: "kind" | "platform";
  who: "recipient" | "owner";
}
const OUTBOX_QUEUE: QueueTable = { table: "outbox", key: "kind", who: "recipient" };

/** Entries, users, retrying and oldest per kind (outbox) or platform (push queue). */
export function queueOverview(db: Db, q: QueueTable): QueueKindStats[] {
  return (
    db
      .prepare(
        `SELECT ${q.key} AS key, count(*) AS entries, count(DISTINCT ${q.who}) AS recipients,
                sum(attempts > 0) AS retrying, min(created_at) AS oldestAt
         FROM ${q.table} GROUP BY ${q.key} ORDER BY ${q.key}`,
      )
      .all() as QueueKindStats[]
  ).map((r) => ({ ...r, retrying: Number(r.retrying) }));
}

/** One user's entries in a queue. */
export function queueOwnerDepth(db: Db, q: QueueTable, who: string): QueueDepth {
  return queueDepth(
    db
      .prepare(
        `SELECT count(*) AS entries, coalesce(sum(attempts > 0), 0) AS retrying, min(created_at) AS oldestAt,
                coalesce(max(attempts), 0) AS maxAttempts FROM ${q.table} WHERE ${q.who} = ?`,
      )
      .get(who) as Row,
  );
}

/** Makes a user's entries due now with their attempts reset; returns how many. */
export function queueRedeliver(db: Db, q: QueueTable, who: string): number {
  return db.prepare(`UPDATE ${q.table} SET attempts = 0, next_at = 0 WHERE ${q.who} = ?`).run(who).changes;
}

/** Deletes a user's entries; returns how many. */
export function queueDrop(db: Db, q: QueueTable, who: string): number {
  return db.prepare(`DELETE FROM ${q.table} WHERE ${q.who} = ?`).run(who).changes;
}

/** A count/sum/min/max row as a QueueDepth (min is NULL when there are no rows). */
export function queueDepth(r: Row): QueueDepth {
  return {
    entries: Number(r.entries),
    retrying: Number(r.retrying),
    ...(r.oldestAt !== null && r.oldestAt !== undefined ? { oldestAt: Number(r.oldestAt) } : {}),
    maxAttempts: Number(r.maxAttempts),
  };
}

function toEntry(r: Row): OutboxEntry {
  const payload = str(r.payload);
  return {
    recipient: String(r.recipient),
    kind: String(r.kind),
    subject: String(r.subject),
    version: Number(r.version),
    ...(payload !== undefined ? { payload } : {}),
    seq: Number(r.seq),
    attempts: Number(r.attempts),
    nextAt: Number(r.next_at),
    createdAt: Number(r.created_at),
  };
}

function toDevice(r: Row): Device {
  const d: Device = {
    owner: String(r.owner),
    deviceId: String(r.device_id),
    platform: String(r.platform) as Device["platform"],
    tokenState: String(r.token_state) as Device["tokenState"],
    createdAt: Number(r.created_at),
    updatedAt: Number(r.updated_at),
  };
  const name = str(r.name);
  const token = str(r.push_token);
  const topic = str(r.push_topic);
  const key = str(r.push_key);
  if (name !== undefined) d.name = name;
  if (token !== undefined) d.pushToken = token;
  if (topic !== undefined) d.pushTopic = topic;
  if (key !== undefined) d.pushKey = key;
  return d;
}

export class SqliteDevices implements DeviceRepo {
  constructor(private readonly db: Db) {}

  async upsert(
    d: Omit<Device, "createdAt" | "updatedAt" | "tokenState">,
    maxPerUser: number,
  ): Promise<Device> {
    return this.db.transaction(() => {
      const existing = this.db
        .prepare("SELECT 1 FROM devices WHERE owner = ? AND device_id = ?")
        .get(d.owner, d.deviceId);
      if (!existing) {
        const n = (
          this.db.prepare("SELECT COUNT(*) AS n FROM devices WHERE owner = ?").get(d.owner) as { n: number }
        ).n;
        if (n >= maxPerUser) throw new RangeError(`at most ${maxPerUser} devices per user`);
      }
      const now = Date.now();
      this.db
        .prepare(
          `INSERT INTO devices (owner, device_id, platform, name, push_token, push_topic, push_key, token_state, created_at, updated_at)
           VALUES (@owner, @deviceId, @platform, @name, @pushToken, @pushTopic, @pushKey, @state, @now, @now)
           ON CONFLICT (owner, device_id) DO UPDATE SET platform = excluded.platform, name = excluded.name,
             push_token = excluded.push_token, push_topic = excluded.push_topic, push_key = excluded.push_key,
             token_state = excluded.token_state, updated_at = excluded.updated_at`,
        )
        .run({
          owner: d.owner,
          deviceId: d.deviceId,
          platform: d.platform,
          name: d.name ?? null,
          pushToken: d.pushToken ?? null,
          pushTopic: d.pushTopic ?? null,
          pushKey: d.pushKey ?? null,
          state: d.pushToken ? "ok" : "none",
          now,
        });
      return toDevice(
        this.db
          .prepare("SELECT * FROM devices WHERE owner = ? AND device_id = ?")
          .get(d.owner, d.deviceId) as Row,
      );
    })();
  }

  async list(owner: string): Promise<Device[]> {
    return (
      this.db
        .prepare("SELECT * FROM devices WHERE owner = ? ORDER BY created_at, device_id")
        .all(owner) as Row[]
    ).map(toDevice);
  }

  async get(owner: string, deviceId: string): Promise<Device | undefined> {
    const r = this.db
      .prepare("SELECT * FROM devices WHERE owner = ? AND device_id = ?")
      .get(owner, deviceId) as Row | undefined;
    return r ? toDevice(r) : undefined;
  }

  async remove(owner: string, deviceId: string): Promise<boolean> {
    return this.db.transaction(() => {
      // A removed device gets nothing more: its XEP-0357 nodes and queued notices go with it.
      this.db.prepare("DELETE FROM push_nodes WHERE owner = ? AND device_id = ?").run(owner, deviceId);
      this.db.prepare("DELETE FROM push_queue WHERE owner = ? AND device_id = ?").run(owner, deviceId);
      return (
        this.db.prepare("DELETE FROM devices WHERE owner = ? AND device_id = ?").run(owner, deviceId)
          .changes > 0
      );
    })();
  }

  async invalidateToken(token: string): Promise<number> {
    return this.db
      .prepare(
        "UPDATE devices SET token_state = 'invalid', updated_at = ? WHERE push_token = ? AND token_state != 'invalid'",
      )
      .run(Date.now(), token).changes;
  }
}

function parsePolicy(v: unknown): SharePolicy | null {
  return v === null || v === undefined ? null : (JSON.parse(String(v)) as SharePolicy);
}

function toStoredCard(r: Row): StoredCard {
  return {
    owner: String(r.owner),
    version: Number(r.version),
    hash: String(r.hash),
    card: JSON.parse(String(r.card)) as Card,
    seq: Number(r.seq),
    updatedAt: Number(r.updated_at),
  };
}

export class SqliteCards implements CardRepo {
  private readonly fanout;
  // Prepared once: get and share run on every card get and every card delivery, and compiling the statement
  // each time (better-sqlite3 does not cache prepare) was ~8 % of cardlink's CPU in the iq benchmark's card cases.
  private readonly getStmt;
  private readonly shareStmt;

  constructor(
    private readonly db: Db,
    private readonly outbox: SqliteOutbox,
  ) {
    // One statement writes every holder's outbox entry: the fan-out costs one transaction, not one per holder.
    this.fanout = db.prepare(
      `INSERT INTO outbox (recipient, kind, subject, version, payload, seq, attempts, next_at, created_at)
       SELECT holder, 'card', owner, @version, NULL, @seq, 0, 0, @now FROM shares WHERE owner = @owner
       ON CONFLICT (recipient, kind, subject) DO UPDATE SET
         version = excluded.version, payload = NULL, seq = excluded.seq, attempts = 0, next_at = 0`,
    );
    this.getStmt = db.prepare("SELECT * FROM cards WHERE owner = ?");
    this.shareStmt = db.prepare("SELECT policy, binding_id FROM shares WHERE owner = ? AND holder = ?");
  }

  async get(owner: string): Promise<StoredCard | undefined> {
    const r = this.getStmt.get(owner) as Row | undefined;
    return r ? toStoredCard(r) : undefined;
  }

  async set(owner: string, card: Card, hash: string): Promise<CardSetResult> {
    return this.db.transaction((): CardSetResult => {
      const cur = this.db.prepare("SELECT version, hash, seq FROM cards WHERE owner = ?").get(owner) as
        { version: number; hash: string; seq: number } | undefined;
      if (cur && cur.hash === hash) {
        return { changed: false, version: cur.version, hash, seq: cur.seq, recipients: [] };
      }
      const version = (cur?.version ?? 0) + 1;
      const seq = nextSeq(this.db);
      const now = Date.now();
      this.db
        .prepare(
          `INSERT INTO cards (owner, version, hash, card, seq, updated_at) VALUES (?, ?, ?, ?, ?, ?)
           ON CONFLICT (owner) DO UPDATE SET version = excluded.version, hash = excluded.hash, card = excluded.card,
             seq = excluded.seq, updated_at = excluded.updated_at`,
        )
        .run(owner, version, hash, JSON.stringify(card), seq, now);
      this.fanout.run({ owner, version, seq, now });
      const recipients = (
        this.db.prepare("SELECT holder FROM shares WHERE owner = ?").all(owner) as Array<{ holder: string }>
      ).map((r) => r.holder);
      return { changed: true, version, hash, seq, recipients };
    })();
  }

  async share(
    owner: string,
    holder: string,
  ): Promise<{ policy: SharePolicy | null; bindingId: string } | undefined> {
    const r = this.shareStmt.get(owner, holder) as Row | undefined;
    return r ? { policy: parsePolicy(r.policy), bindingId: String(r.binding_id) } : undefined;
  }

  async setPolicy(owner: string, holder: string, policy: SharePolicy | null): Promise<boolean> {
    return this.db.transaction(() => {
      const seq = nextSeq(this.db);
      const n = this.db
        .prepare("UPDATE shares SET policy = ?, seq = ? WHERE owner = ? AND holder = ?")
        .run(policy ? JSON.stringify(policy) : null, seq, owner, holder).changes;
      if (n === 0) return false;
      const card = this.db.prepare("SELECT version FROM cards WHERE owner = ?").get(owner) as
        { version: number } | undefined;
      if (card)
        this.outbox.enqueueTx(
          [{ recipient: holder, kind: "card", subject: owner, version: card.version }],
          seq,
        );
      return true;
    })();
  }

  async sync(holder: string, since: number, limit: number): Promise<SyncResult & { more: boolean }> {
    return this.db.transaction(() => {
      const token = currentSeq(this.db);
      // Cards and tombstones in one stream by seq, so that a page cut anywhere (by count here, by size in the
      // caller) continues correctly from the seq of its last entry.
      const rows = this.db
        .prepare(
          `SELECT c.owner AS owner, c.version AS version, c.card AS card, s.policy AS policy,
                  MAX(c.seq, s.seq) AS changed, 0 AS removed
           FROM shares s JOIN cards c ON c.owner = s.owner
           WHERE s.holder = ? AND (c.seq > ? OR s.seq > ?)
           UNION ALL
           SELECT owner, NULL, NULL, NULL, seq, 1 FROM tombstones WHERE holder = ? AND seq > ?
           ORDER BY changed LIMIT ?`,
        )
        .all(holder, since, since, holder, since, limit + 1) as Row[];
      const more = rows.length > limit;
      const page = rows.slice(0, limit);
      return {
        token,
        more,
        entries: page.map((r): SyncEntry => {
          const seq = Number(r.changed);
          const owner = String(r.owner);
          if (Number(r.removed) === 1) return { seq, owner, removed: true };
          return {
            seq,
            owner,
            removed: false,
            version: Number(r.version),
            card: JSON.parse(String(r.card)) as Card,
            policy: parsePolicy(r.policy),
          };
        }),
      };
    })();
  }

  async holders(owner: string): Promise<string[]> {
    return (
      this.db.prepare("SELECT holder FROM shares WHERE owner = ? ORDER BY holder").all(owner) as Array<{
        holder: string;
      }>
    ).map((r) => r.holder);
  }
}

function toBinding(r: Row): Binding {
  return {
    id: String(r.id),
    a: String(r.a),
    b: String(r.b),
    aDevices: JSON.parse(String(r.a_devices)) as string[],
    bDevices: JSON.parse(String(r.b_devices)) as string[],
    via: String(r.via) as Binding["via"],
    createdAt: Number(r.created_at),
  };
}

function toCode(r: Row): ExchangeCode {
  const dev = str(r.device_id);
  return {
    code: String(r.code),
    owner: String(r.owner),
    ...(dev !== undefined ? { deviceId: dev } : {}),
    createdAt: Number(r.created_at),
    expiresAt: Number(r.expires_at),
  };
}

function toRequest(r: Row): ExchangeRequest {
  const dev = str(r.from_device);
  return {
    id: String(r.id),
    from: String(r.from_jid),
    to: String(r.to_jid),
    ...(dev !== undefined ? { fromDevice: dev } : {}),
    createdAt: Number(r.created_at),
    expiresAt: Number(r.expires_at),
  };
}

/** Bindings are stored with a < b so each pair has one row. */
const ordered = (x: string, y: string): [string, string] => (x < y ? [x, y] : [y, x]);

export class SqliteExchange implements ExchangeRepo {
  constructor(
    private readonly db: Db,
    private readonly outbox: SqliteOutbox,
  ) {}

  async binding(x: string, y: string): Promise<Binding | undefined> {
    const [a, b] = ordered(x, y);
    const r = this.db.prepare("SELECT * FROM bindings WHERE a = ? AND b = ?").get(a, b) as Row | undefined;
    return r ? toBinding(r) : undefined;
  }

  async bindings(user: string): Promise<Binding[]> {
    return (
      this.db
        .prepare("SELECT * FROM bindings WHERE a = ? UNION ALL SELECT * FROM bindings WHERE b = ?")
        .all(user, user) as Row[]
    ).map(toBinding);
  }

  async isBlocked(owner: string, other: string): Promise<boolean> {
    return (
      this.db.prepare("SELECT 1 FROM blocks WHERE owner = ? AND blocked = ?").get(owner, other) !== undefined
    );
  }

  async block(owner: string, other: string, maxPerUser: number): Promise<"blocked" | "full"> {
    return this.db.transaction((): "blocked" | "full" => {
      const already = this.db
        .prepare("SELECT 1 FROM blocks WHERE owner = ? AND blocked = ?")
        .get(owner, other);
      if (!already) {
        const n = (
          this.db.prepare("SELECT COUNT(*) AS n FROM blocks WHERE owner = ?").get(owner) as { n: number }
        ).n;
        if (n >= maxPerUser) return "full";
      }
      this.db.prepare("INSERT OR IGNORE INTO blocks (owner, blocked) VALUES (?, ?)").run(owner, other);
      // A blocked user's pending request disappears with its notice.
      const req = this.db
        .prepare("SELECT id FROM exchange_requests WHERE from_jid = ? AND to_jid = ?")
        .get(other, owner) as { id: string } | undefined;
      if (req) {
        this.db.prepare("DELETE FROM exchange_requests WHERE id = ?").run(req.id);
        this.db
          .prepare("DELETE FROM outbox WHERE recipient = ? AND kind = 'exchange-request' AND subject = ?")
          .run(owner, req.id);
      }
      return "blocked";
    })();
  }

  async unblock(owner: string, other: string): Promise<boolean> {
    return (
      this.db.prepare("DELETE FROM blocks WHERE owner = ? AND blocked = ?").run(owner, other).changes > 0
    );
  }

  async blocked(owner: string): Promise<string[]> {
    return (
      this.db.prepare("SELECT blocked FROM blocks WHERE owner = ? ORDER BY blocked").all(owner) as Array<{
        blocked: string;
      }>
    ).map((r) => r.blocked);
  }

  async createRequest(r: ExchangeRequest, notify: OutboxItem): Promise<"created" | "exists"> {
    return this.db.transaction((): "created" | "exists" => {
      const inserted = this.db
        .prepare(
          `INSERT INTO exchange_requests (id, from_jid, to_jid, from_device, created_at, expires_at)
           VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (from_jid, to_jid) DO NOTHING`,
        )
        .run(r.id, r.from, r.to, r.fromDevice ?? null, r.createdAt, r.expiresAt).changes;
      if (inserted === 0) return "exists";
      this.outbox.enqueueTx([notify]);
      return "created";
    })();
  }

  async request(id: string): Promise<ExchangeRequest | undefined> {
    const r = this.db.prepare("SELECT * FROM exchange_requests WHERE id = ?").get(id) as Row | undefined;
    return r ? toRequest(r) : undefined;
  }

  async requestBetween(from: string, to: string): Promise<ExchangeRequest | undefined> {
    const r = this.db
      .prepare("SELECT * FROM exchange_requests WHERE from_jid = ? AND to_jid = ?")
      .get(from, to) as Row | undefined;
    return r ? toRequest(r) : undefined;
  }

  async pendingFor(user: string, now: number): Promise<ExchangeRequest[]> {
    return this.pending("to_jid", user, now);
  }

  async pendingFrom(user: string, now: number): Promise<ExchangeRequest[]> {
    return this.pending("from_jid", user, now);
  }

  private pending(column: "to_jid" | "from_jid", user: string, now: number): ExchangeRequest[] {
    return (
      this.db
        .prepare(`SELECT * FROM exchange_requests WHERE ${column} = ? AND expires_at > ? ORDER BY created_at`)
        .all(user, now) as Row[]
    ).map(toRequest);
  }

  async countPendingFrom(user: string, now: number): Promise<number> {
    return Number(
      (
        this.db
          .prepare("SELECT COUNT(*) AS n FROM exchange_requests WHERE from_jid = ? AND expires_at > ?")
          .get(user, now) as {
          n: number;
        }
      ).n,
    );
  }

  async closeRequest(id: string, notify: OutboxItem[]): Promise<boolean> {
    return this.db.transaction(() => {
      const req = this.db.prepare("SELECT to_jid FROM exchange_requests WHERE id = ?").get(id) as
        { to_jid: string } | undefined;
      if (!req) return false;
      this.db.prepare("DELETE FROM exchange_requests WHERE id = ?").run(id);
      // The request notice may still wait in the recipient's outbox: it is moot now.
      this.db
        .prepare("DELETE FROM outbox WHERE recipient = ? AND kind = 'exchange-request' AND subject = ?")
        .run(req.to_jid, id);
      if (notify.length) this.outbox.enqueueTx(notify);
      return true;
    })();
  }

  async createCode(c: ExchangeCode, maxOutstanding: number): Promise<"created" | "full"> {
    return this.db.transaction((): "created" | "full" => {
      const n = (
        this.db
          .prepare("SELECT COUNT(*) AS n FROM exchange_codes WHERE owner = ? AND expires_at > ?")
          .get(c.owner, c.createdAt) as { n: number }
      ).n;
      if (n >= maxOutstanding) return "full";
      this.db
        .prepare(
          "INSERT INTO exchange_codes (code, owner, device_id, created_at, expires_at) VALUES (?, ?, ?, ?, ?)",
        )
        .run(c.code, c.owner, c.deviceId ?? null, c.createdAt, c.expiresAt);
      return "created";
    })();
  }

  async code(code: string): Promise<ExchangeCode | undefined> {
    const r = this.db.prepare("SELECT * FROM exchange_codes WHERE code = ?").get(code) as Row | undefined;
    return r ? toCode(r) : undefined;
  }

  async takeCode(code: string): Promise<ExchangeCode | undefined> {
    const r = this.db.prepare("DELETE FROM exchange_codes WHERE code = ? RETURNING *").get(code) as
      Row | undefined;
    return r ? toCode(r) : undefined;
  }

  async bind(
    b: Omit<Binding, "createdAt">,
    closeRequestId: string | undefined,
    now: number,
  ): Promise<BindResult | "exists"> {
    return this.db.transaction((): BindResult | "exists" => {
      const [a, bb] = ordered(b.a, b.b);
      const swapped = a !== b.a;
      if (this.db.prepare("SELECT 1 FROM bindings WHERE a = ? AND b = ?").get(a, bb)) return "exists";
      const binding: Binding = {
        id: b.id,
        a,
        b: bb,
        aDevices: swapped ? b.bDevices : b.aDevices,
        bDevices: swapped ? b.aDevices : b.bDevices,
        via: b.via,
        createdAt: now,
      };
      this.db
        .prepare(
          "INSERT INTO bindings (id, a, b, a_devices, b_devices, via, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
        )
        .run(
          binding.id,
          a,
          bb,
          JSON.stringify(binding.aDevices),
          JSON.stringify(binding.bDevices),
          binding.via,
          now,
        );
      const seq = nextSeq(this.db);
      const share = this.db.prepare(
        "INSERT INTO shares (owner, holder, binding_id, policy, seq) VALUES (?, ?, ?, NULL, ?)",
      );
      share.run(a, bb, binding.id, seq);
      share.run(bb, a, binding.id, seq);
      this.db
        .prepare("DELETE FROM tombstones WHERE (holder = ? AND owner = ?) OR (holder = ? AND owner = ?)")
        .run(a, bb, bb, a);
      if (closeRequestId) this.db.prepare("DELETE FROM exchange_requests WHERE id = ?").run(closeRequestId);
      // Requests either way are settled by the binding.
      this.db
        .prepare(
          "DELETE FROM exchange_requests WHERE (from_jid = ? AND to_jid = ?) OR (from_jid = ? AND to_jid = ?)",
        )
        .run(a, bb, bb, a);
      const items: OutboxItem[] = [];
      for (const [me, peer] of [
        [a, bb],
        [bb, a],
      ] as const) {
        items.push({ recipient: me, kind: "binding", subject: binding.id, version: 1 });
        const card = this.db.prepare("SELECT version FROM cards WHERE owner = ?").get(peer) as
          { version: number } | undefined;
        if (card) items.push({ recipient: me, kind: "card", subject: peer, version: card.version });
      }
      this.outbox.enqueueTx(items, seq);
      return { binding, recipients: [a, bb] };
    })();
  }

  async unbind(x: string, y: string, notify: OutboxItem[]): Promise<boolean> {
    return this.db.transaction(() => {
      const [a, b] = ordered(x, y);
      const row = this.db.prepare("SELECT id FROM bindings WHERE a = ? AND b = ?").get(a, b) as
        { id: string } | undefined;
      if (!row) return false;
      const seq = nextSeq(this.db);
      this.db.prepare("DELETE FROM bindings WHERE id = ?").run(row.id); // shares go by ON DELETE CASCADE
      const tomb = this.db.prepare(
        "INSERT INTO tombstones (holder, owner, seq) VALUES (?, ?, ?) ON CONFLICT (holder, owner) DO UPDATE SET seq = excluded.seq",
      );
      tomb.run(a, b, seq);
      tomb.run(b, a, seq);
      const drop = this.db.prepare(
        "DELETE FROM outbox WHERE recipient = ? AND kind IN ('card', 'binding') AND subject IN (?, ?)",
      );
      drop.run(a, b, row.id);
      drop.run(b, a, row.id);
      this.outbox.enqueueTx(notify, seq);
      return true;
    })();
  }

  async expire(now: number): Promise<number> {
    return this.db.transaction(() => {
      const reqs = this.db
        .prepare("DELETE FROM exchange_requests WHERE expires_at <= ? RETURNING id, to_jid")
        .all(now) as Array<{
        id: string;
        to_jid: string;
      }>;
      const drop = this.db.prepare(
        "DELETE FROM outbox WHERE recipient = ? AND kind = 'exchange-request' AND subject = ?",
      );
      for (const r of reqs) drop.run(r.to_jid, r.id);
      const codes = this.db.prepare("DELETE FROM exchange_codes WHERE expires_at <= ?").run(now).changes;
      return reqs.length + codes;
    })();
  }
}

export class SqlitePresence implements PresenceRepo {
  constructor(private readonly db: Db) {}

  async add(bare: string, full: string): Promise<void> {
    this.db
      .prepare("INSERT OR REPLACE INTO resources (full_jid, bare, since) VALUES (?, ?, ?)")
      .run(full, bare, Date.now());
  }

  async remove(full: string): Promise<void> {
    this.db.prepare("DELETE FROM resources WHERE full_jid = ?").run(full);
  }

  async all(): Promise<Array<{ bare: string; full: string }>> {
    return (
      this.db.prepare("SELECT bare, full_jid FROM resources ORDER BY since, rowid").all() as Array<{
        bare: string;
        full_jid: string;
      }>
    ).map((r) => ({
      bare: r.bare,
      full: r.full_jid,
    }));
  }

  async addSubscriber(bare: string): Promise<void> {
    this.db.prepare("INSERT OR IGNORE INTO subscribers (bare, since) VALUES (?, ?)").run(bare, Date.now());
  }

  async removeSubscriber(bare: string): Promise<void> {
    this.db.prepare("DELETE FROM subscribers WHERE bare = ?").run(bare);
  }

  async isSubscriber(bare: string): Promise<boolean> {
    return this.db.prepare("SELECT 1 FROM subscribers WHERE bare = ?").get(bare) !== undefined;
  }
}
