/**
 * The stream's SQL (docs/REDESIGN.md §2.3.2–2.3.5, §2.6, §2.7): stream_entries (one entry per recipient lane),
 * stream_cursors (one per consumer: 0 = the shared cursor, else a declared device), payloads (stored once).
 * Plain functions over `Sql`, in the portable subset of §2.1, so both backends run every text unchanged:
 *
 * - Texts are module constants, or built once per dialect (the two that need `jsonIds`) and memoized, so the
 *   statement caches see a fixed set of texts.
 * - Parameters in a SELECT list carry an explicit CAST: PostgreSQL types an untyped parameter there as text,
 *   which an INSERT … SELECT into a BIGINT column refuses. In a WHERE they are typed by the column they meet.
 * - Every INSERT … SELECT … ON CONFLICT has a WHERE in its SELECT and DISTINCT rows (§2.1).
 *
 * The lane horizon: entries at or below the lowest **active** cursor's pos are acknowledged by every consumer
 * that holds the lane, so they are garbage (GC) and not pending. A lane whose cursors are all dormant has no
 * horizon: nothing holds its entries, every returning consumer jumps to the floor (docs/DECISIONS.md).
 */
import type { AccountId, Dialect, Params, Seq, Sql } from "../../../storage/store.js";
import type { Json, PayloadId, PendingEntry } from "./api.js";
import { LEASE_FREE } from "./jobs-repo.js";

/**
 * Who sees an owner's card when no path registry is given (the binding path alone: the contract suite's stream
 * cases). The running core passes runtime/audience `audienceHoldersSql(paths)`, every registered path (issue 10:
 * the fan-out had stayed fixed to this text, so a card change never reached a second path's holders).
 */
export const AUDIENCE_HOLDERS_SQL = "SELECT s.holder AS holder FROM shares s WHERE s.owner = :owner";

/** Stands for "no cursor holds the lane": above every seq (a JS-safe integer, a valid BIGINT). */
const NO_HORIZON = Number.MAX_SAFE_INTEGER;
/** A payload body is a notice's content, never a collection: bounded so a bug cannot store megabytes per entry. */
export const MAX_PAYLOAD_BYTES = 64 * 1024;

const COLUMNS = "(account_id, seq, ord, kind, subject, subject_account, payload_id, created_at)";
const VALUES = `CAST(:seq AS BIGINT), CAST(:ord AS BIGINT), CAST(:kind AS TEXT), CAST(:subject AS TEXT),
       CAST(:subject_account AS BIGINT), CAST(:payload AS BIGINT), CAST(:now AS BIGINT)`;
/**
 * `replace` coalescing: one entry per (lane, kind, subject), moved to the newest (seq, ord) in place (a rowid
 * table: the row keeps its id). created_at is kept, as today's outbox keeps it: it dates the oldest change the
 * lane has not acknowledged (the queue-age gauge).
 */
const ON_REPLACE = `ON CONFLICT (account_id, kind, subject) DO UPDATE
   SET seq = excluded.seq, ord = excluded.ord, payload_id = excluded.payload_id`;

export type Coalesce = "replace" | "keep";

/** One append's values; seq and ord are the unit of work's (§2.3.2). */
export interface EntryValues {
  seq: Seq;
  ord: number;
  kind: string;
  subject: string;
  subjectAccount?: AccountId;
  payload?: PayloadId;
  now: number;
}

const memo = new Map<string, string>();
/** A text that depends on the dialect, built once per (name, backend). */
function text(d: Dialect, name: string, build: (d: Dialect) => string): string {
  const key = `${name}:${d.backend}`;
  let t = memo.get(key);
  if (t === undefined) {
    t = build(d);
    memo.set(key, t);
  }
  return t;
}

const appendSql = (d: Dialect, mode: Coalesce): string =>
  text(
    d,
    `append-${mode}`,
    () => `INSERT INTO stream_entries ${COLUMNS}
SELECT a.id, ${VALUES}
  FROM accounts a WHERE a.id IN (${d.jsonIds("lanes")})
${mode === "replace" ? ON_REPLACE : ""}
RETURNING account_id`,
  );

const fanOutSql = (d: Dialect, mode: Coalesce, holders: string): string =>
  text(
    d,
    `fan-out-${mode}:${holders}`,
    () => `INSERT INTO stream_entries ${COLUMNS}
SELECT DISTINCT aud.holder, ${VALUES}
  FROM (${holders}) aud
 WHERE aud.holder <> :owner AND aud.holder NOT IN (${d.jsonIds("exclude")})
${mode === "replace" ? ON_REPLACE : ""}
RETURNING account_id`,
  );

/** A feature's SELECT of (lane, subject, subject_account, payload_id) rows, wrapped once per feature text. */
function appendSelectSql(select: string, mode: Coalesce): string {
  return `INSERT INTO stream_entries ${COLUMNS}
SELECT DISTINCT f.lane, CAST(:q_seq AS BIGINT), CAST(:q_ord AS BIGINT), CAST(:q_kind AS TEXT), f.subject,
       f.subject_account, f.payload_id, CAST(:q_now AS BIGINT)
  FROM (${select}) f WHERE true
${mode === "replace" ? ON_REPLACE : ""}
RETURNING account_id`;
}

const RETRACT_LANES = (d: Dialect): string =>
  text(
    d,
    "retract-lanes",
    () =>
      `DELETE FROM stream_entries WHERE account_id IN (${d.jsonIds("lanes")}) AND kind = :kind AND subject = :subject`,
  );
/** Without lanes, only for account subjects: the stream_subject_account index finds them (no scan). */
const RETRACT_ACCOUNT_SUBJECT =
  "DELETE FROM stream_entries WHERE subject_account = :subject_account AND kind = :kind AND subject = :subject";

const INSERT_PAYLOAD = `INSERT INTO payloads (kind, body, created_at)
VALUES (:kind, :body, :now) RETURNING id`;
/** Payloads no entry references any more (the sweeper; stream_payload makes each probe an index search). */
const SWEEP_PAYLOADS = `DELETE FROM payloads WHERE id IN (SELECT p.id FROM payloads p
 WHERE NOT EXISTS (SELECT 1 FROM stream_entries e WHERE e.payload_id = p.id) ORDER BY p.id LIMIT :n)`;

/** The lowest active cursor of a lane, or NO_HORIZON when none is active. */
const HORIZON = `COALESCE((SELECT MIN(c.pos) FROM stream_cursors c WHERE c.account_id = :lane AND c.state = 'active'),
  CAST(:no_horizon AS BIGINT))`;

const ENTRY_COLUMNS = `e.id, e.account_id, e.seq, e.ord, e.kind, e.subject, e.subject_account, e.payload_id,
       p.body AS payload_body, e.created_at`;
const READ_LANE = `SELECT ${ENTRY_COLUMNS} FROM stream_entries e LEFT JOIN payloads p ON p.id = e.payload_id
 WHERE e.account_id = :lane AND e.seq > :after ORDER BY e.seq, e.ord, e.id LIMIT :n`;
const READ_SEQ = `SELECT ${ENTRY_COLUMNS} FROM stream_entries e LEFT JOIN payloads p ON p.id = e.payload_id
 WHERE e.account_id = :lane AND e.seq = :seq ORDER BY e.ord, e.id`;
const PENDING = `SELECT ${ENTRY_COLUMNS} FROM stream_entries e LEFT JOIN payloads p ON p.id = e.payload_id
 WHERE e.account_id = :lane AND e.seq > ${HORIZON} ORDER BY e.seq, e.ord, e.id LIMIT :n`;
const PENDING_COUNT = `SELECT COUNT(*) AS n FROM stream_entries e WHERE e.account_id = :lane AND e.seq > ${HORIZON}`;
/** Every lane's pending count (admin views, depth): correlated per entry, O(entries). */
const PENDING_COUNTS = `SELECT e.account_id, COUNT(*) AS n FROM stream_entries e
 WHERE e.seq > COALESCE((SELECT MIN(c.pos) FROM stream_cursors c WHERE c.account_id = e.account_id AND c.state = 'active'),
   CAST(:no_horizon AS BIGINT))
 GROUP BY e.account_id`;

/** §2.3.3: after an ack, what every active cursor passed goes (a lane with none active: everything). */
const GC = `DELETE FROM stream_entries WHERE account_id = :lane AND seq <= ${HORIZON}`;
/** The lane's floor: MIN(seq) − 1 of retained entries, or the current seq when the lane is empty (§2.3.3). */
const FLOOR = `SELECT COALESCE((SELECT MIN(seq) - 1 FROM stream_entries WHERE account_id = :lane),
  (SELECT value FROM counters WHERE name = 'seq'), 0) AS floor`;

const CURSOR_COLUMNS =
  "id, account_id, consumer, pos, state, attempts, next_at, lease_owner, lease_until, inflight_iq, inflight_upto, seen_at";
const CURSOR = `SELECT ${CURSOR_COLUMNS} FROM stream_cursors WHERE account_id = :lane AND consumer = :consumer`;
const CURSOR_BY_ID = `SELECT ${CURSOR_COLUMNS} FROM stream_cursors WHERE id = :id`;
const CURSORS_OF = `SELECT ${CURSOR_COLUMNS} FROM stream_cursors WHERE account_id = :lane ORDER BY consumer`;
/** A new cursor starts at the floor: it receives every retained entry (§2.3.3). */
const INSERT_CURSOR = `INSERT INTO stream_cursors (account_id, consumer, pos, seen_at)
VALUES (:lane, :consumer, :pos, :now) ON CONFLICT (account_id, consumer) DO NOTHING`;
const DELETE_CURSOR = "DELETE FROM stream_cursors WHERE account_id = :lane AND consumer = :consumer";

/**
 * §2.3.5: one conditional UPDATE; a cursor leased by another owner and not expired is not returned. With
 * `:alive` (the engine's heartbeat rule, jobs-repo.ts LEASE_FREE) a lease of a process silent for 3 beats is
 * free too; without it (no engine, the contract tests) only expiry frees a lease.
 */
const claimSql = (d: Dialect, heartbeats = false): string =>
  text(
    d,
    heartbeats ? "claim alive" : "claim",
    () => `UPDATE stream_cursors SET lease_owner = :me, lease_until = :until
 WHERE id IN (${d.jsonIds("cursors")})
   AND (lease_owner = :me OR ${heartbeats ? LEASE_FREE : "lease_owner IS NULL OR lease_until < :now"})
RETURNING id, account_id, consumer, pos, attempts, state`,
  );
/**
 * The safety-net sweep (docs/DECISIONS.md): consumers leased by another process whose lease ran out or whose
 * owner went silent, with entries after pos. No other process will kick them (the owner is gone, a kick here
 * was refused while the lease held). Planned on stream_cursors_lease (the partial index of leased cursors: few
 * rows) and stream_lane for the EXISTS probe.
 */
const STALE_LEASES = `SELECT c.account_id, c.consumer FROM stream_cursors c
 WHERE c.lease_owner IS NOT NULL AND c.lease_owner <> :me
   AND (c.lease_until < :now OR c.lease_owner NOT IN (SELECT p.id FROM processes p WHERE p.heartbeat_at >= :alive))
   AND EXISTS (SELECT 1 FROM stream_entries e WHERE e.account_id = c.account_id AND e.seq > c.pos)
 LIMIT :n`;
const releaseSql = (d: Dialect): string =>
  text(
    d,
    "release",
    () => `UPDATE stream_cursors SET lease_owner = NULL, lease_until = 0, inflight_iq = NULL, inflight_upto = NULL
 WHERE id IN (${d.jsonIds("cursors")}) AND lease_owner = :me`,
  );
/** With queue.persistInflight: the IQ in flight, so another process can apply its result (§2.3.5). */
const INFLIGHT = `UPDATE stream_cursors SET inflight_iq = :iq, inflight_upto = :upto
 WHERE id = :id AND lease_owner = :me`;
/**
 * §2.3.5: an ack always applies (the client has the content, whoever sent it) and never moves pos back; the
 * lease and the in-flight IQ are cleared only if still ours / covered. attempts and next_at reset: it worked.
 */
const ACK = `UPDATE stream_cursors SET pos = CASE WHEN pos > :upto THEN pos ELSE :upto END, seen_at = :now,
       attempts = 0, next_at = 0,
       inflight_iq = CASE WHEN inflight_upto IS NOT NULL AND inflight_upto <= :upto THEN NULL ELSE inflight_iq END,
       inflight_upto = CASE WHEN inflight_upto IS NOT NULL AND inflight_upto <= :upto THEN NULL ELSE inflight_upto END,
       lease_until = CASE WHEN lease_owner = :me THEN 0 ELSE lease_until END,
       lease_owner = CASE WHEN lease_owner = :me THEN NULL ELSE lease_owner END
 WHERE id = :id
RETURNING account_id`;
/** An IQ result that reached another process than the sender: applied by the recorded IQ id (§2.3.5). */
const REMOTE_ACK = `UPDATE stream_cursors SET pos = CASE WHEN pos > inflight_upto THEN pos ELSE inflight_upto END,
       seen_at = :now, attempts = 0, next_at = 0, inflight_iq = NULL, inflight_upto = NULL,
       lease_owner = NULL, lease_until = 0
 WHERE account_id = :lane AND inflight_iq = :iq AND inflight_upto IS NOT NULL
RETURNING id`;
/**
 * A failed delivery: try again at next_at, and the lease is released — only while the cursor is still leased
 * to us. A timeout that comes after the batch's result reached another process (remote ack cleared the lease
 * and the in-flight IQ) or after another process took the lease over is late: it counts no attempt.
 */
const RETRY = `UPDATE stream_cursors SET attempts = attempts + 1, next_at = :next_at, lease_until = 0, lease_owner = NULL
 WHERE id = :id AND lease_owner = :me`;

/**
 * §2.3.4 dormancy, in bounded batches: device cursors idle `deviceIdleMs`; then shared cursors idle
 * `sharedIdleMs` of accounts that still have an active device cursor (an account without device cursors never
 * has a dormant shared cursor). The device statement runs first, so a shared cursor is kept when the devices
 * that would have excused it went dormant in the same sweep.
 */
const SWEEP_DEVICES = `UPDATE stream_cursors SET state = 'dormant'
 WHERE id IN (SELECT id FROM stream_cursors WHERE consumer <> 0 AND state = 'active' AND seen_at < :before
              ORDER BY id LIMIT :n)
RETURNING account_id`;
const SWEEP_SHARED = `UPDATE stream_cursors SET state = 'dormant'
 WHERE id IN (SELECT c.id FROM stream_cursors c WHERE c.consumer = 0 AND c.state = 'active' AND c.seen_at < :before
                AND EXISTS (SELECT 1 FROM stream_cursors d WHERE d.account_id = c.account_id AND d.consumer <> 0
                              AND d.state = 'active')
              ORDER BY c.id LIMIT :n)
RETURNING account_id`;
const REACTIVATE = `UPDATE stream_cursors SET state = 'active', pos = :pos, seen_at = :now
 WHERE id = :id AND state = 'dormant'`;

export interface LaneEntry extends PendingEntry {
  /** The row id: the tie-break after (seq, ord), and what admin views name. */
  id: number;
  createdAt: number;
}

export interface StreamCursor {
  id: number;
  lane: AccountId;
  /** 0 = the shared cursor; else devices.id. */
  consumer: number;
  pos: Seq;
  state: "active" | "dormant";
  attempts: number;
  nextAt: number;
  leaseOwner?: string;
  leaseUntil: number;
  inflightIq?: string;
  inflightUpto?: Seq;
  seenAt: number;
}

export interface ClaimedCursor {
  id: number;
  lane: AccountId;
  consumer: number;
  pos: Seq;
  attempts: number;
  state: "active" | "dormant";
}

/** A lane read: entries in (seq, ord, id) order and the seq an ack of all of them moves the cursor to. */
export interface LaneBatch {
  entries: LaneEntry[];
  /** The last seq read (every entry of it is in `entries`), or `after` when there was nothing. */
  upto: Seq;
  /** The lane held more than the read took (it hit its limit): whoever acks `upto` should read again. */
  more: boolean;
}

/** What reactivating a dormant cursor did (§2.3.4). */
export type Reactivation =
  | "active" // it was not dormant
  | "reactivated" // dormant, nothing it had not acknowledged was collected
  | "resync" // a device cursor below the floor: send <update kind='resync'/> first; pos jumped to the floor
  | "jumped"; // the shared cursor below the floor: pos jumped silently (legacy clients pull-sync at login)

interface EntryRow {
  id: number;
  account_id: number;
  seq: number;
  ord: number;
  kind: string;
  subject: string;
  subject_account: number | null;
  payload_id: number | null;
  payload_body: string | null;
  created_at: number;
}

interface CursorRow {
  id: number;
  account_id: number;
  consumer: number;
  pos: number;
  state: "active" | "dormant";
  attempts: number;
  next_at: number;
  lease_owner: string | null;
  lease_until: number;
  inflight_iq: string | null;
  inflight_upto: number | null;
  seen_at: number;
}

function toEntry(r: EntryRow): LaneEntry {
  const e: LaneEntry = {
    id: Number(r.id),
    lane: Number(r.account_id) as AccountId,
    seq: Number(r.seq),
    ord: Number(r.ord),
    kind: r.kind,
    subject: r.subject,
    createdAt: Number(r.created_at),
  };
  if (r.subject_account !== null) e.subjectAccount = Number(r.subject_account) as AccountId;
  if (r.payload_body !== null) e.payload = JSON.parse(r.payload_body) as Json;
  return e;
}

function toCursor(r: CursorRow): StreamCursor {
  const c: StreamCursor = {
    id: Number(r.id),
    lane: Number(r.account_id) as AccountId,
    consumer: Number(r.consumer),
    pos: Number(r.pos),
    state: r.state,
    attempts: Number(r.attempts),
    nextAt: Number(r.next_at),
    leaseUntil: Number(r.lease_until),
    seenAt: Number(r.seen_at),
  };
  if (r.lease_owner !== null) c.leaseOwner = r.lease_owner;
  if (r.inflight_iq !== null) c.inflightIq = r.inflight_iq;
  if (r.inflight_upto !== null) c.inflightUpto = Number(r.inflight_upto);
  return c;
}

const ids = (xs: readonly number[]): string => JSON.stringify(xs.map((x) => Math.trunc(Number(x))));
const lanesOf = (rows: Array<{ account_id: number }>): AccountId[] => [
  ...new Set(rows.map((r) => Number(r.account_id) as AccountId)),
];
const entryParams = (v: EntryValues): Params => ({
  seq: v.seq,
  ord: v.ord,
  kind: v.kind,
  subject: v.subject,
  subject_account: v.subjectAccount ?? null,
  payload: v.payload ?? null,
  now: v.now,
});

/** The names appendSelect adds to a feature's parameters. */
const RESERVED = /^q_/;

export const streamRepo = (q: Sql) => ({
  /** One statement: the entry in every named lane (accounts that do not exist are not written). */
  async append(mode: Coalesce, lanes: readonly AccountId[], v: EntryValues): Promise<AccountId[]> {
    const rows = await q.all<{ account_id: number }>(appendSql(q.dialect, mode), {
      ...entryParams(v),
      lanes: ids(lanes),
    });
    return lanesOf(rows);
  },

  /** One statement for every holder of `owner` (§2.5.2), coalesced ones included, `exclude` left out. */
  async fanOut(
    mode: Coalesce,
    owner: AccountId,
    exclude: readonly AccountId[],
    v: EntryValues,
    holders: string = AUDIENCE_HOLDERS_SQL,
  ): Promise<AccountId[]> {
    const rows = await q.all<{ account_id: number }>(fanOutSql(q.dialect, mode, holders), {
      ...entryParams(v),
      owner,
      exclude: ids(exclude),
    });
    return lanesOf(rows);
  },

  /** One statement over a feature's SELECT of (lane, subject, subject_account, payload_id). */
  async appendSelect(
    mode: Coalesce,
    select: { sql: string; params: Params },
    v: Pick<EntryValues, "seq" | "ord" | "kind" | "now">,
  ): Promise<AccountId[]> {
    for (const k of Object.keys(select.params)) {
      if (RESERVED.test(k)) throw new Error(`appendSelect: parameter :${k} is reserved (q_*)`);
    }
    const rows = await q.all<{ account_id: number }>(appendSelectSql(select.sql, mode), {
      ...select.params,
      q_seq: v.seq,
      q_ord: v.ord,
      q_kind: v.kind,
      q_now: v.now,
    });
    return lanesOf(rows);
  },

  async retractIn(kind: string, subject: string, lanes: readonly AccountId[]): Promise<number> {
    return (await q.run(RETRACT_LANES(q.dialect), { lanes: ids(lanes), kind, subject })).changes;
  },

  async retractAccountSubject(kind: string, subject: string, subjectAccount: AccountId): Promise<number> {
    return (await q.run(RETRACT_ACCOUNT_SUBJECT, { kind, subject, subject_account: subjectAccount })).changes;
  },

  async payload(kind: string, body: Json, now: number): Promise<PayloadId> {
    const text = JSON.stringify(body);
    if (Buffer.byteLength(text) > MAX_PAYLOAD_BYTES) {
      throw new Error(
        `payload of kind '${kind}' is ${Buffer.byteLength(text)} bytes (limit ${MAX_PAYLOAD_BYTES})`,
      );
    }
    const r = await q.get<{ id: number }>(INSERT_PAYLOAD, { kind, body: text, now });
    if (!r) throw new Error("payload insert returned no id");
    return Number(r.id) as PayloadId;
  },

  /** Deletes up to `limit` payloads no entry references; returns how many. */
  async sweepPayloads(limit: number): Promise<number> {
    return (await q.run(SWEEP_PAYLOADS, { n: limit })).changes;
  },

  /**
   * Entries after `after`, at most `limit` — but a read never splits one seq: acking moves pos to a seq, so a
   * batch ends at the last seq it holds whole. When the first seq alone has more than `limit` entries (one unit
   * of work wrote them all to this lane, e.g. a group's cards for a newcomer), it comes whole; the caller cuts
   * it into IQs and acks after the last.
   */
  async read(lane: AccountId, after: Seq, limit: number): Promise<LaneBatch> {
    const rows = (await q.all<EntryRow>(READ_LANE, { lane, after, n: limit + 1 })).map(toEntry);
    if (rows.length <= limit) return { entries: rows, upto: rows.at(-1)?.seq ?? after, more: false };
    const cut = rows[limit]?.seq as Seq;
    let entries = rows.slice(0, limit);
    if (entries.at(-1)?.seq === cut) entries = entries.filter((e) => e.seq !== cut);
    if (entries.length === 0) {
      entries = (await q.all<EntryRow>(READ_SEQ, { lane, seq: cut })).map(toEntry);
    }
    return { entries, upto: entries.at(-1)?.seq ?? after, more: true };
  },

  /** The lane's entries above its horizon (not yet acknowledged by every active cursor), oldest first. */
  async pending(lane: AccountId, limit: number): Promise<LaneEntry[]> {
    return (await q.all<EntryRow>(PENDING, { lane, n: limit, no_horizon: NO_HORIZON })).map(toEntry);
  },

  async pendingCount(lane: AccountId): Promise<number> {
    const r = await q.get<{ n: number }>(PENDING_COUNT, { lane, no_horizon: NO_HORIZON });
    return Number(r?.n ?? 0);
  },

  /** Pending entries per lane (lanes with none absent) and in total. */
  async pendingCounts(): Promise<{ total: number; lanes: Map<AccountId, number> }> {
    const rows = await q.all<{ account_id: number; n: number }>(PENDING_COUNTS, { no_horizon: NO_HORIZON });
    const lanes = new Map(rows.map((r) => [Number(r.account_id) as AccountId, Number(r.n)]));
    let total = 0;
    for (const n of lanes.values()) total += n;
    return { total, lanes };
  },

  /** Deletes what every active cursor of the lane passed; returns how many. */
  async gc(lane: AccountId): Promise<number> {
    return (await q.run(GC, { lane, no_horizon: NO_HORIZON })).changes;
  },

  async floor(lane: AccountId): Promise<Seq> {
    const r = await q.get<{ floor: number }>(FLOOR, { lane });
    return Number(r?.floor ?? 0);
  },

  async cursor(lane: AccountId, consumer: number): Promise<StreamCursor | undefined> {
    const r = await q.get<CursorRow>(CURSOR, { lane, consumer });
    return r && toCursor(r);
  },

  async cursorById(id: number): Promise<StreamCursor | undefined> {
    const r = await q.get<CursorRow>(CURSOR_BY_ID, { id });
    return r && toCursor(r);
  },

  async cursors(lane: AccountId): Promise<StreamCursor[]> {
    return (await q.all<CursorRow>(CURSORS_OF, { lane })).map(toCursor);
  },

  /** The consumer's cursor, created at the lane's floor if missing (a device's first declaration, §2.3.3). */
  async ensureCursor(lane: AccountId, consumer: number, now: number): Promise<StreamCursor> {
    const have = await this.cursor(lane, consumer);
    if (have) return have;
    await q.run(INSERT_CURSOR, { lane, consumer, pos: await this.floor(lane), now });
    const made = await this.cursor(lane, consumer);
    if (!made) throw new Error(`cursor (${lane}, ${consumer}) was not created`);
    return made;
  },

  /** A removed device's cursor goes; what only it held is collected at once. */
  async dropCursor(lane: AccountId, consumer: number): Promise<boolean> {
    const gone = (await q.run(DELETE_CURSOR, { lane, consumer })).changes > 0;
    if (gone) await this.gc(lane);
    return gone;
  },

  /** Leases the free (or own, or expired) cursors among `cursors` to `me` until `until`; returns those. */
  /** `alive`: heartbeats older than this free their owner's leases (the engine's rule; omitted: expiry only). */
  async claim(
    me: string,
    cursors: readonly number[],
    now: number,
    until: number,
    alive?: number,
  ): Promise<ClaimedCursor[]> {
    if (cursors.length === 0) return [];
    const rows = await q.all<{
      id: number;
      account_id: number;
      consumer: number;
      pos: number;
      attempts: number;
      state: "active" | "dormant";
    }>(claimSql(q.dialect, alive !== undefined), {
      me,
      until,
      now,
      cursors: ids(cursors),
      ...(alive !== undefined ? { alive } : {}),
    });
    return rows.map((r) => ({
      id: Number(r.id),
      lane: Number(r.account_id) as AccountId,
      consumer: Number(r.consumer),
      pos: Number(r.pos),
      attempts: Number(r.attempts),
      state: r.state,
    }));
  },

  async release(me: string, cursors: readonly number[]): Promise<number> {
    if (cursors.length === 0) return 0;
    return (await q.run(releaseSql(q.dialect), { me, cursors: ids(cursors) })).changes;
  },

  /** Records the IQ carrying entries up to `upto`, if the cursor is still leased to `me`. */
  async inflight(me: string, cursor: number, iq: string, upto: Seq): Promise<boolean> {
    return (await q.run(INFLIGHT, { me, id: cursor, iq, upto })).changes > 0;
  },

  /** Applies acks (pos = max(pos, upto)), then collects each acked lane once; returns the lanes. */
  async ack(
    me: string,
    acks: ReadonlyArray<{ cursor: number; upto: Seq }>,
    now: number,
  ): Promise<AccountId[]> {
    const lanes = new Set<AccountId>();
    for (const a of acks) {
      const r = await q.get<{ account_id: number }>(ACK, { me, id: a.cursor, upto: a.upto, now });
      if (r) lanes.add(Number(r.account_id) as AccountId);
    }
    for (const lane of lanes) await this.gc(lane);
    return [...lanes];
  },

  /** Applies the IQ result `iq` of the lane's in-flight batch, whoever leased it; false if none matches. */
  async remoteAck(lane: AccountId, iq: string, now: number): Promise<boolean> {
    const rows = await q.all<{ id: number }>(REMOTE_ACK, { lane, iq, now });
    if (rows.length === 0) return false;
    await this.gc(lane);
    return true;
  },

  /** False when the cursor is no longer leased to `me` (a late failure: nothing counted). */
  async retry(me: string, cursor: number, nextAt: number): Promise<boolean> {
    return (await q.run(RETRY, { me, id: cursor, next_at: nextAt })).changes > 0;
  },

  /** Up to `limit` consumers with entries after pos whose lease (not `me`'s) ran out or whose owner is silent. */
  async staleLeases(
    me: string,
    now: number,
    alive: number,
    limit: number,
  ): Promise<Array<{ lane: AccountId; consumer: number }>> {
    const rows = await q.all<{ account_id: number; consumer: number }>(STALE_LEASES, {
      me,
      now,
      alive,
      n: limit,
    });
    return rows.map((r) => ({ lane: Number(r.account_id) as AccountId, consumer: Number(r.consumer) }));
  },

  /**
   * Marks idle cursors dormant (at most `limit` of each sort per call) and collects the lanes they stopped
   * holding; returns how many went dormant and which lanes.
   */
  async sweepDormant(
    now: number,
    o: { deviceIdleMs: number; sharedIdleMs: number; limit: number },
  ): Promise<{ dormant: number; lanes: AccountId[] }> {
    const devices = await q.all<{ account_id: number }>(SWEEP_DEVICES, {
      before: now - o.deviceIdleMs,
      n: o.limit,
    });
    const shared = await q.all<{ account_id: number }>(SWEEP_SHARED, {
      before: now - o.sharedIdleMs,
      n: o.limit,
    });
    const lanes = lanesOf([...devices, ...shared]);
    for (const lane of lanes) await this.gc(lane);
    return { dormant: devices.length + shared.length, lanes };
  },

  /**
   * A dormant consumer showed up (§2.3.4): active again; if entries it had not acknowledged were collected
   * (pos below the floor), pos jumps to the floor and a device consumer must be told to resync.
   */
  async reactivate(cursor: number, now: number): Promise<Reactivation> {
    const c = await this.cursorById(cursor);
    if (!c) throw new Error(`no stream cursor ${cursor}`);
    if (c.state === "active") return "active";
    const floor = await this.floor(c.lane);
    const below = c.pos < floor;
    await q.run(REACTIVATE, { id: c.id, pos: below ? floor : c.pos, now });
    if (!below) return "reactivated";
    return c.consumer === 0 ? "jumped" : "resync";
  },
});

export type StreamRepo = ReturnType<typeof streamRepo>;

/**
 * The hot statements by name, for the plans tests (test/unit/stream-plans.test.ts, later S14's plans.test.ts):
 * each must be planned on an index, never by a table scan.
 */
export function streamStatements(d: Dialect): Record<string, string> {
  return {
    "append replace": appendSql(d, "replace"),
    "append keep": appendSql(d, "keep"),
    "fan-out": fanOutSql(d, "replace", AUDIENCE_HOLDERS_SQL),
    "retract in lanes": RETRACT_LANES(d),
    "retract by subject account": RETRACT_ACCOUNT_SUBJECT,
    "lane read": READ_LANE,
    "lane read of one seq": READ_SEQ,
    pending: PENDING,
    "pending count": PENDING_COUNT,
    gc: GC,
    floor: FLOOR,
    cursor: CURSOR,
    claim: claimSql(d),
    "claim alive": claimSql(d, true),
    release: releaseSql(d),
    ack: ACK,
    "remote ack": REMOTE_ACK,
    retry: RETRY,
    "stale leases": STALE_LEASES,
    "sweep payloads": SWEEP_PAYLOADS,
  };
}
