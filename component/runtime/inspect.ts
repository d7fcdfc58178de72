/**
 * Read-only, JID-keyed views of what the store holds (docs/REDESIGN.md §1.2, §4.7): for tests, `cardlink stats`
 * and the admin commands. Each view is one `store.read` snapshot and goes straight to the rows, past the accounts
 * cache, so it shows what is committed, not what a process remembers.
 *
 * Accounts (S3), then stream, jobs and presence (S11a). Every view is keyed by JID the way the wire and today's
 * tests name users: internal ids are resolved inside the same snapshot, and an update id is rendered with the
 * subject's **current** JID (§2.8.3), exactly as delivery will render it. No view writes: a view's snapshot is
 * a read transaction, and its SQL is SELECTs only (the stream and jobs repos' reads, plus a few listings that
 * only admin views need, defined here).
 */
import type { AccountId, ReadTx, Seq, Store } from "../../storage/store.js";
import type { BareJid, Device } from "./accounts/api.js";
import {
  accountsRepo,
  JIDS_CHUNK,
  type AccountRow,
  type AccountState,
  type IdentifierRow,
} from "./accounts/repo.js";
import type { Json } from "./queue/api.js";
import { jobsRepo } from "./queue/jobs-repo.js";
import { updateId } from "./queue/registry.js";
import { streamRepo, type LaneEntry, type StreamCursor } from "./queue/stream-repo.js";

/** What a view needs of a store: a read snapshot (an AppContext's store, or a Store opened on a copy). */
export type Inspectable = Pick<Store, "read">;

export interface AccountView extends AccountRow {
  /** The primary JID (what the wire shows for this account). */
  jid: BareJid;
  /** Every identifier of the account, primary first. */
  identifiers: IdentifierRow[];
}

/** The account a JID identifies (in any identifier state: a held JID still shows whose it was). */
async function accountOf(r: ReadTx, jid: BareJid): Promise<AccountId | undefined> {
  return (await accountsRepo(r).identifier("jid", jid))?.account;
}

export function account(s: Inspectable, jid: BareJid): Promise<AccountView | undefined> {
  return s.read("inspect.account", async (r) => {
    const repo = accountsRepo(r);
    const id = await accountOf(r, jid);
    if (id === undefined) return undefined;
    const row = await repo.account(id);
    if (!row) return undefined;
    const identifiers = await repo.identifiers(id);
    const primary = identifiers.find((i) => i.primary && i.kind === "jid");
    return { ...row, jid: primary?.value ?? jid, identifiers };
  });
}

/** The JID's devices, oldest first; [] when the JID has no account. */
export function devices(s: Inspectable, jid: BareJid): Promise<Device[]> {
  return s.read("inspect.devices", async (r) => {
    const id = await accountOf(r, jid);
    return id === undefined ? [] : accountsRepo(r).devices(id);
  });
}

export function device(s: Inspectable, jid: BareJid, deviceId: string): Promise<Device | undefined> {
  return s.read("inspect.device", async (r) => {
    const id = await accountOf(r, jid);
    return id === undefined ? undefined : accountsRepo(r).device(id, deviceId);
  });
}

/** Accounts per state (every state present, 0 when none): `cardlink stats`. */
export function accountCounts(s: Inspectable): Promise<Record<AccountState, number>> {
  return s.read("inspect.account-counts", (r) => accountsRepo(r).countByState());
}

// ---------------------------------------------------------------------------------------------- stream

/** One pending entry of a lane, as a client will see its id. */
export interface PendingView {
  /** The wire id `kind:subject:seq`, the subject rendered with its current JID (§2.8.3). */
  id: string;
  kind: string;
  /** The wire subject: the subject account's primary JID, else the entity id. */
  subject: BareJid | string;
  /** The internal subject (String(account id) for account subjects). */
  internalSubject: string;
  subjectAccount?: AccountId;
  seq: Seq;
  ord: number;
  payload?: Json;
  /** When the oldest change this entry stands for was written (kept by coalescing, like the old outbox). */
  createdAt: number;
  /** The stream_entries row id (admin commands name it). */
  row: number;
}

/** A consumer's cursor on a lane, with the device it belongs to by its wire id. */
export interface CursorView extends StreamCursor {
  /** undefined for the shared cursor (consumer 0); else the device's client id. */
  deviceId?: string;
}

/** Everything about one account's lane: entries not yet acknowledged by every active cursor, and the cursors. */
export interface LaneView {
  jid: BareJid;
  account: AccountId;
  /** MIN(seq) − 1 of retained entries, or the current seq when the lane is empty (§2.3.3). */
  floor: Seq;
  pendingCount: number;
  pending: PendingView[];
  cursors: CursorView[];
}

/** Primary JIDs of many accounts, in chunks of JIDS_CHUNK (the repo's bound per statement). */
async function jidsOf(r: ReadTx, ids: readonly AccountId[]): Promise<Map<AccountId, BareJid>> {
  const out = new Map<AccountId, BareJid>();
  const repo = accountsRepo(r);
  for (let i = 0; i < ids.length; i += JIDS_CHUNK) {
    for (const [k, v] of await repo.primaryJids(ids.slice(i, i + JIDS_CHUNK))) out.set(k, v);
  }
  return out;
}

/** Wire subject of an entry: the subject account's current primary JID; an entity id as stored. */
async function renderEntries(r: ReadTx, entries: readonly LaneEntry[]): Promise<PendingView[]> {
  const subjects = [
    ...new Set(entries.flatMap((e) => (e.subjectAccount === undefined ? [] : [e.subjectAccount]))),
  ];
  const jids = await jidsOf(r, subjects);
  return entries.map((e) => {
    // An account without a primary JID (deleted mid-flight) renders its internal subject: delivery skips it as moot.
    const subject = e.subjectAccount === undefined ? e.subject : (jids.get(e.subjectAccount) ?? e.subject);
    const v: PendingView = {
      id: updateId(e.kind, subject, e.seq),
      kind: e.kind,
      subject,
      internalSubject: e.subject,
      seq: e.seq,
      ord: e.ord,
      createdAt: e.createdAt,
      row: e.id,
    };
    if (e.subjectAccount !== undefined) v.subjectAccount = e.subjectAccount;
    if (e.payload !== undefined) v.payload = e.payload;
    return v;
  });
}

const DEVICE_IDS = "SELECT id, device_id FROM devices WHERE account_id = :id";

async function cursorViews(r: ReadTx, id: AccountId): Promise<CursorView[]> {
  const cursors = await streamRepo(r).cursors(id);
  const names = new Map(
    (await r.all<{ id: number; device_id: string }>(DEVICE_IDS, { id })).map((d) => [
      Number(d.id),
      d.device_id,
    ]),
  );
  return cursors.map((c) => {
    const name = c.consumer === 0 ? undefined : names.get(c.consumer);
    return name === undefined ? { ...c } : { ...c, deviceId: name };
  });
}

/** A lane's pending entries are at most this many per view (a lane has no cap of its own: views must). */
export const MAX_VIEW_ROWS = 1000;
const bounded = (n: number | undefined): number => Math.max(0, Math.min(n ?? MAX_VIEW_ROWS, MAX_VIEW_ROWS));

/**
 * Pending entries: of the JID's lane, or of every lane without a JID (`store.outbox.count(jid)` / `count()`).
 * A JID without an account has none.
 */
export function pendingCount(s: Inspectable, jid?: BareJid): Promise<number> {
  return s.read("inspect.pending-count", async (r) => {
    if (jid === undefined) return (await streamRepo(r).pendingCounts()).total;
    const id = await accountOf(r, jid);
    return id === undefined ? 0 : streamRepo(r).pendingCount(id);
  });
}

/** The JID's pending entries, oldest (seq, ord) first, with wire ids; [] when the JID has no account. */
export function pending(s: Inspectable, jid: BareJid, o: { limit?: number } = {}): Promise<PendingView[]> {
  return s.read("inspect.pending", async (r) => {
    const id = await accountOf(r, jid);
    if (id === undefined) return [];
    return renderEntries(r, await streamRepo(r).pending(id, bounded(o.limit)));
  });
}

/** The JID's cursors (shared first, then devices by key); [] when the JID has no account. */
export function cursors(s: Inspectable, jid: BareJid): Promise<CursorView[]> {
  return s.read("inspect.cursors", async (r) => {
    const id = await accountOf(r, jid);
    return id === undefined ? [] : cursorViews(r, id);
  });
}

/** The whole lane of the JID in one snapshot; undefined when the JID has no account. */
export function lane(
  s: Inspectable,
  jid: BareJid,
  o: { limit?: number } = {},
): Promise<LaneView | undefined> {
  return s.read("inspect.lane", async (r) => {
    const id = await accountOf(r, jid);
    if (id === undefined) return undefined;
    const repo = streamRepo(r);
    const primary = (await accountsRepo(r).primaryJid(id)) ?? jid;
    return {
      jid: primary,
      account: id,
      floor: await repo.floor(id),
      pendingCount: await repo.pendingCount(id),
      pending: await renderEntries(r, await repo.pending(id, bounded(o.limit))),
      cursors: await cursorViews(r, id),
    };
  });
}

/** Pending entries per lane, keyed by the lane's primary JID (lanes with none absent), and in total. */
export function streamDepth(s: Inspectable): Promise<{ total: number; lanes: Map<BareJid, number> }> {
  return s.read("inspect.stream-depth", async (r) => {
    const { total, lanes } = await streamRepo(r).pendingCounts();
    const jids = await jidsOf(r, [...lanes.keys()]);
    const byJid = new Map<BareJid, number>();
    for (const [id, n] of lanes) byJid.set(jids.get(id) ?? `a${id}`, n);
    return { total, lanes: byJid };
  });
}

// ------------------------------------------------------------------------------------------------ jobs

export interface JobView {
  id: number;
  channel: string;
  kind: string;
  target: string;
  /** The account the job is for, by its primary JID; undefined for jobs not about an account. */
  jid?: BareJid;
  account?: AccountId;
  /** The device's client id, for jobs bound to a device. */
  deviceId?: string;
  ckey?: string;
  body: Json;
  rev: number;
  uid: string;
  attempts: number;
  nextAt: number;
  expiresAt: number;
  leaseOwner?: string;
  leaseUntil: number;
  lastError?: string;
  createdAt: number;
}

export interface DeadLetterView {
  id: number;
  channel: string;
  kind: string;
  target: string;
  jid?: BareJid;
  account?: AccountId;
  body: Json;
  uid: string;
  attempts: number;
  lastError?: string;
  createdAt: number;
  diedAt: number;
}

/** One channel's jobs (of everyone, or of one account): what `cardlink stats` and the admin commands show. */
export interface JobStats {
  count: number;
  /** Claimable now (next_at reached). */
  due: number;
  deferred: number;
  /** Jobs that failed at least once and wait for their retry. */
  retrying: number;
  maxAttempts: number;
  /** created_at of the oldest job; undefined without jobs. */
  oldestAt?: number;
  /** Dead letters of the channel. */
  dead: number;
}

const JOB_SELECT = `SELECT j.id, j.channel, j.kind, j.target, j.account_id, d.device_id, j.ckey, j.body, j.rev, j.uid,
       j.attempts, j.next_at, j.expires_at, j.lease_owner, j.lease_until, j.last_error, j.created_at
  FROM jobs j LEFT JOIN devices d ON d.id = j.device`;
// Three fixed texts rather than optional filters: an untyped `:x IS NULL` does not plan (or type, on PostgreSQL).
const JOBS_OF_CHANNEL = `${JOB_SELECT} WHERE j.channel = :channel ORDER BY j.next_at, j.id LIMIT :n`;
const JOBS_OF_ACCOUNT = `${JOB_SELECT} WHERE j.channel = :channel AND j.account_id = :account
 ORDER BY j.next_at, j.id LIMIT :n`;
const JOBS_DUE = `${JOB_SELECT} WHERE j.channel = :channel AND j.next_at <= :now ORDER BY j.next_at, j.id LIMIT :n`;
const STATS_COLUMNS = `channel, COUNT(*) AS n,
       SUM(CASE WHEN next_at <= :now THEN 1 ELSE 0 END) AS due,
       SUM(CASE WHEN attempts > 0 THEN 1 ELSE 0 END) AS retrying,
       MAX(attempts) AS max_attempts, MIN(created_at) AS oldest`;
const JOB_STATS = `SELECT ${STATS_COLUMNS} FROM jobs GROUP BY channel`;
const JOB_STATS_OF = `SELECT ${STATS_COLUMNS} FROM jobs WHERE account_id = :account GROUP BY channel`;
const DEAD_COUNTS_OF =
  "SELECT channel, COUNT(*) AS n FROM dead_letters WHERE account_id = :account GROUP BY channel";
const DEAD_SELECT = `SELECT id, channel, kind, target, account_id, body, uid, attempts, last_error, created_at, died_at
  FROM dead_letters`;
const DEAD_OF_CHANNEL = `${DEAD_SELECT} WHERE channel = :channel ORDER BY died_at, id LIMIT :n`;
const DEAD_ALL = `${DEAD_SELECT} ORDER BY died_at, id LIMIT :n`;
const DEAD_OF_ACCOUNT = `${DEAD_SELECT} WHERE channel = :channel AND account_id = :account ORDER BY died_at, id LIMIT :n`;

interface JobDbRow {
  id: number;
  channel: string;
  kind: string;
  target: string;
  account_id: number | null;
  device_id: string | null;
  ckey: string | null;
  body: string;
  rev: number;
  uid: string;
  attempts: number;
  next_at: number;
  expires_at: number;
  lease_owner: string | null;
  lease_until: number;
  last_error: string | null;
  created_at: number;
}
interface DeadDbRow {
  id: number;
  channel: string;
  kind: string;
  target: string;
  account_id: number | null;
  body: string;
  uid: string;
  attempts: number;
  last_error: string | null;
  created_at: number;
  died_at: number;
}
interface StatsDbRow {
  channel: string;
  n: number;
  due: number;
  retrying: number;
  max_attempts: number;
  oldest: number | null;
}

/** The current JIDs of the accounts a set of job or dead-letter rows name (one query for all of them). */
function accountJids(
  r: ReadTx,
  rows: ReadonlyArray<{ account_id: number | null }>,
): Promise<Map<AccountId, string>> {
  return jidsOf(r, [
    ...new Set(rows.flatMap((j) => (j.account_id === null ? [] : [Number(j.account_id) as AccountId]))),
  ]);
}

async function jobViews(r: ReadTx, rows: readonly JobDbRow[]): Promise<JobView[]> {
  const jids = await accountJids(r, rows);
  return rows.map((j) => {
    const v: JobView = {
      id: Number(j.id),
      channel: j.channel,
      kind: j.kind,
      target: j.target,
      body: JSON.parse(j.body) as Json,
      rev: Number(j.rev),
      uid: j.uid,
      attempts: Number(j.attempts),
      nextAt: Number(j.next_at),
      expiresAt: Number(j.expires_at),
      leaseUntil: Number(j.lease_until),
      createdAt: Number(j.created_at),
    };
    if (j.account_id !== null) {
      v.account = Number(j.account_id) as AccountId;
      const jid = jids.get(v.account);
      if (jid !== undefined) v.jid = jid;
    }
    if (j.device_id !== null) v.deviceId = j.device_id;
    if (j.ckey !== null) v.ckey = j.ckey;
    if (j.lease_owner !== null) v.leaseOwner = j.lease_owner;
    if (j.last_error !== null) v.lastError = j.last_error;
    return v;
  });
}

async function deadViews(r: ReadTx, rows: readonly DeadDbRow[]): Promise<DeadLetterView[]> {
  const jids = await accountJids(r, rows);
  return rows.map((d) => {
    const v: DeadLetterView = {
      id: Number(d.id),
      channel: d.channel,
      kind: d.kind,
      target: d.target,
      body: JSON.parse(d.body) as Json,
      uid: d.uid,
      attempts: Number(d.attempts),
      createdAt: Number(d.created_at),
      diedAt: Number(d.died_at),
    };
    if (d.account_id !== null) {
      v.account = Number(d.account_id) as AccountId;
      const jid = jids.get(v.account);
      if (jid !== undefined) v.jid = jid;
    }
    if (d.last_error !== null) v.lastError = d.last_error;
    return v;
  });
}

function statsOf(
  rows: readonly StatsDbRow[],
  dead: ReadonlyArray<{ channel: string; n: number }>,
): Map<string, JobStats> {
  const out = new Map<string, JobStats>();
  const empty = (): JobStats => ({ count: 0, due: 0, deferred: 0, retrying: 0, maxAttempts: 0, dead: 0 });
  for (const r of rows) {
    const st: JobStats = {
      count: Number(r.n),
      due: Number(r.due),
      deferred: Number(r.n) - Number(r.due),
      retrying: Number(r.retrying),
      maxAttempts: Number(r.max_attempts),
      dead: 0,
    };
    if (r.oldest !== null) st.oldestAt = Number(r.oldest);
    out.set(r.channel, st);
  }
  for (const d of dead) out.set(d.channel, { ...(out.get(d.channel) ?? empty()), dead: Number(d.n) });
  return out;
}

/**
 * Per channel (every channel with a job or a dead letter): counts, oldest, attempts, dead letters; of one JID's
 * account with `jid` (a JID without an account: an empty map). "Due" is measured against the snapshot's clock.
 */
export function jobStats(s: Inspectable, jid?: BareJid): Promise<Map<string, JobStats>> {
  return s.read("inspect.job-stats", async (r) => {
    if (jid === undefined) {
      const dead = [...(await jobsRepo(r).depth(r.now))].map(([channel, d]) => ({ channel, n: d.dead }));
      return statsOf(await r.all<StatsDbRow>(JOB_STATS, { now: r.now }), dead);
    }
    const account = await accountOf(r, jid);
    if (account === undefined) return new Map();
    return statsOf(
      await r.all<StatsDbRow>(JOB_STATS_OF, { now: r.now, account }),
      await r.all<{ channel: string; n: number }>(DEAD_COUNTS_OF, { account }),
    );
  });
}

/** The channel's jobs (of one JID's account with `jid`), next due first; at most MAX_VIEW_ROWS. */
export function jobs(
  s: Inspectable,
  channel: string,
  o: { jid?: BareJid; limit?: number } = {},
): Promise<JobView[]> {
  return s.read("inspect.jobs", async (r) => {
    const n = bounded(o.limit);
    if (o.jid === undefined) return jobViews(r, await r.all<JobDbRow>(JOBS_OF_CHANNEL, { channel, n }));
    const account = await accountOf(r, o.jid);
    if (account === undefined) return [];
    return jobViews(r, await r.all<JobDbRow>(JOBS_OF_ACCOUNT, { channel, account, n }));
  });
}

/** The channel's jobs whose next_at ≤ now (the old `push.due(now, n)`), next due first. */
export function jobsDue(s: Inspectable, channel: string, now: number, limit: number): Promise<JobView[]> {
  return s.read("inspect.jobs-due", async (r) =>
    jobViews(r, await r.all<JobDbRow>(JOBS_DUE, { channel, now, n: bounded(limit) })),
  );
}

/** How many jobs the channel holds (of one JID's account with `jid`); dead letters not counted. */
export async function jobCount(s: Inspectable, channel: string, jid?: BareJid): Promise<number> {
  return (await jobStats(s, jid)).get(channel)?.count ?? 0;
}

/** The channel's dead letters (of one JID's account with `jid`), oldest death first. */
export function deadLetters(
  s: Inspectable,
  channel: string,
  o: { jid?: BareJid; limit?: number } = {},
): Promise<DeadLetterView[]> {
  return s.read("inspect.dead-letters", async (r) => {
    const n = bounded(o.limit);
    if (o.jid === undefined) return deadViews(r, await r.all<DeadDbRow>(DEAD_OF_CHANNEL, { channel, n }));
    const account = await accountOf(r, o.jid);
    if (account === undefined) return [];
    return deadViews(r, await r.all<DeadDbRow>(DEAD_OF_ACCOUNT, { channel, account, n }));
  });
}

/** Every channel's dead letters (or one channel's), oldest death first: `cardlink dead-letters`, the admin. */
export function deadLetterList(
  s: Inspectable,
  o: { channel?: string; limit?: number } = {},
): Promise<DeadLetterView[]> {
  if (o.channel !== undefined) return deadLetters(s, o.channel, { ...(o.limit ? { limit: o.limit } : {}) });
  return s.read("inspect.dead-letters", async (r) =>
    deadViews(r, await r.all<DeadDbRow>(DEAD_ALL, { n: bounded(o.limit) })),
  );
}

// -------------------------------------------------------------------------------------------- presence

export interface ResourceView {
  /** The account's primary JID (the old `presence.all()` `bare`). */
  bare: BareJid;
  full: string;
  /** The device the resource declared with `<active-device/>` (S12), by its client id. */
  deviceId?: string;
  since: number;
}

const RESOURCES = `SELECT r.full_jid, r.account_id, d.device_id, r.since FROM resources r
  LEFT JOIN devices d ON d.id = r.device ORDER BY r.since, r.full_jid`;
const IS_SUBSCRIBER = "SELECT 1 AS yes FROM subscribers WHERE account_id = :id";

/** Resources last known available, oldest first (the old `presence.all()`, same `{bare, full}` shape and order). */
export function resources(s: Inspectable): Promise<ResourceView[]> {
  return s.read("inspect.resources", async (r) => {
    const rows = await r.all<{
      full_jid: string;
      account_id: number;
      device_id: string | null;
      since: number;
    }>(RESOURCES);
    const jids = await jidsOf(r, [...new Set(rows.map((x) => Number(x.account_id) as AccountId))]);
    return rows.map((x) => {
      const bare = jids.get(Number(x.account_id) as AccountId) ?? x.full_jid.split("/")[0] ?? x.full_jid;
      const v: ResourceView = { bare, full: x.full_jid, since: Number(x.since) };
      if (x.device_id !== null) v.deviceId = x.device_id;
      return v;
    });
  });
}

/** Whether the JID's account subscribed to the component's presence (the old `presence.isSubscriber`). */
export function isSubscriber(s: Inspectable, jid: BareJid): Promise<boolean> {
  return s.read("inspect.is-subscriber", async (r) => {
    const id = await accountOf(r, jid);
    return id !== undefined && (await r.get(IS_SUBSCRIBER, { id })) !== undefined;
  });
}
