/**
 * Test accessors named after what the tests read before the redesign (issue 8 S11): each reads or seeds the new
 * core's tables (mostly through inspect.ts) and answers in the old shapes the assertions name (inspect.ts keeps
 * them). They were dual (old repositories or the new core) while both cores ran; the legacy core is gone.
 */
import { expect } from "chai";
import Database from "better-sqlite3";
import type { Cardlink } from "../../component/runtime/app.js";
import type { BareJid } from "../../component/runtime/accounts/api.js";
import { accountsRepo } from "../../component/runtime/accounts/repo.js";
import { exchangeRepo, ordered } from "../../component/features/exchange/repo.js";
import { moduleMigrations, userDataWiring } from "../../component/features.js";
import { loadConfig } from "../../component/runtime/config.js";
import { createLogger } from "../../component/runtime/log.js";
import { offlineCore, type OfflineCore } from "../../component/runtime/offline.js";
import { openCoreStore } from "../../storage/index.js";
import { SqliteStore } from "../../storage/sqlite/store.js";
import type { AccountId, ReadTx } from "../../storage/store.js";
import { serviceFor } from "../../component/features/exchange/index.js";
import type { ExchangeService } from "../../component/features/exchange/service.js";
import { STREAM_DEPTH_SQL } from "../../component/runtime/runtime.js";
import { PUSH_DEPTH_SQL as CORE_PUSH_DEPTH_SQL } from "../../component/features/push/index.js";
import * as inspect from "./inspect.js";

type App = Pick<Cardlink, "ctx">;
type AppStore = Cardlink["ctx"]["store"];

/**
 * The old Device shape (owner by JID) that `device` answers in: the legacy repositories' row, kept here for the
 * assertions that compare with it.
 */
export interface LegacyDevice {
  owner: string;
  deviceId: string;
  platform: "ios" | "android" | "other";
  name?: string;
  pushToken?: string;
  pushTopic?: string;
  pushKey?: string;
  tokenState: "none" | "ok" | "invalid";
  createdAt: number;
  updatedAt: number;
}

/** The old Binding shape `seedBind` takes (a and b by JID, device ids each side had). */
export interface Binding {
  id: string;
  a: string;
  b: string;
  aDevices: string[];
  bDevices: string[];
  createdAt: number;
  via: "request" | "code";
}

/** Old `store.presence.all()`: `{ bare, full }` per available resource. */
export async function resources(app: App): Promise<Array<{ bare: string; full: string }>> {
  return inspect.resources(app);
}

/** Old `store.outbox.count(jid)`: pending deliveries to `jid` (all of them without a JID). */
export async function pendingCount(app: App, jid?: BareJid): Promise<number> {
  return inspect.pendingCount(app, jid);
}

/** Old `store.cards.get(jid)`: the stored card (undefined when the user has none). */
export async function card(app: App, jid: BareJid): Promise<unknown> {
  return inspect.card(app, jid);
}

/** Old `store.exchange.binding(x, y)`. */
export async function binding(app: App, x: BareJid, y: BareJid): Promise<unknown> {
  return inspect.binding(app, x, y);
}

/** Old `store.exchange.request(id)`. */
export async function request(app: App, id: string): Promise<unknown> {
  return inspect.request(app, id);
}

/** Old `store.exchange.code(code)`. */
export async function code(app: App, value: string): Promise<unknown> {
  return inspect.code(app, value);
}

// ------------------------------------------------------------------------------------ setup (writes)

async function idOf(app: App, jid: BareJid): Promise<AccountId> {
  const id = await app.ctx.store.read("look.id", (r) => accountsRepo(r).resolve(jid));
  if (id === undefined) throw new Error(`look: no account for ${jid} (has the user sent anything yet?)`);
  return id;
}

/** Stores a code as is (expired ones too), bypassing the feature: the old `exchange.createCode(c, 10)`. */
export async function seedCode(
  app: App,
  c: { code: string; owner: BareJid; createdAt: number; expiresAt: number },
): Promise<void> {
  const owner = await idOf(app, c.owner);
  await app.ctx.store.tx("look.seed-code", (tx) =>
    exchangeRepo(tx).insertCode({ code: c.code, owner, createdAt: c.createdAt, expiresAt: c.expiresAt }),
  );
}

/**
 * Stores a request as is (expired ones too), bypassing the feature: the old `exchange.createRequest`, without
 * its `exchange-request` notice to `to` (the row only: the seeded request exists to be refused).
 */
export async function seedRequest(
  app: App,
  r: { id: string; from: BareJid; to: BareJid; createdAt: number; expiresAt: number },
): Promise<void> {
  const from = await idOf(app, r.from);
  const to = await idOf(app, r.to);
  await app.ctx.store.tx("look.seed-request", (tx) =>
    exchangeRepo(tx).insertRequest({ id: r.id, from, to, createdAt: r.createdAt, expiresAt: r.expiresAt }),
  );
}

// ---- limits

/**
 * Reads with one query, `:who` bound to the JID's account id, on the store's read connection (a committed
 * snapshot of the database file, like a reader of its own). A JID with no account has no rows: `none`.
 */
async function readWho<T>(
  app: App,
  name: string,
  who: BareJid,
  sql: string,
  fn: (r: ReadTx, sql: string, who: number) => Promise<T>,
  none: T,
): Promise<T> {
  return app.ctx.store.read(name, async (r) => {
    const id = await accountsRepo(r).resolve(who);
    return id === undefined ? none : fn(r, sql, id);
  });
}

const countOf = async (r: ReadTx, sql: string, who: number): Promise<number> =>
  Number((await r.get<{ n: number }>(sql, { who }))?.n ?? 0);

/** Old `SELECT COUNT(*) FROM blocks WHERE owner = ?`: how many accounts `owner` blocks. */
export function blocksBy(app: App, owner: BareJid): Promise<number> {
  const sql = "SELECT COUNT(*) AS n FROM blocks WHERE owner = :who";
  return readWho(app, "look.blocks-by", owner, sql, countOf, 0);
}

/** Old `SELECT COUNT(*) FROM blocks WHERE blocked = ?`: how many users block `blocked`. */
export function blocksOf(app: App, blocked: BareJid): Promise<number> {
  const sql = "SELECT COUNT(*) AS n FROM blocks WHERE blocked = :who";
  return readWho(app, "look.blocks-of", blocked, sql, countOf, 0);
}

/** Old `SELECT COUNT(*) FROM exchange_codes WHERE owner = ?`: stored codes of `owner` (expired ones too). */
export function codeCount(app: App, owner: BareJid): Promise<number> {
  const sql = "SELECT COUNT(*) AS n FROM exchange_codes WHERE owner = :who";
  return readWho(app, "look.code-count", owner, sql, countOf, 0);
}

/** Old `SELECT code FROM exchange_codes WHERE owner = ? LIMIT 1`: one stored code of `owner`, or undefined. */
export function anyCode(app: App, owner: BareJid): Promise<{ code: string } | undefined> {
  const sql = "SELECT code FROM exchange_codes WHERE owner = :who LIMIT 1";
  return readWho(
    app,
    "look.any-code",
    owner,
    sql,
    (r, q, who) => r.get<{ code: string }>(q, { who }),
    undefined,
  );
}

/** Old `SELECT COUNT(*) FROM devices WHERE owner = ?`: registered devices of `owner`. */
export function deviceCount(app: App, owner: BareJid): Promise<number> {
  return readWho(
    app,
    "look.device-count",
    owner,
    "SELECT COUNT(*) AS n FROM devices WHERE account_id = :who",
    countOf,
    0,
  );
}

// ---- push and limits (device is used by both)

/** Old `store.devices.get(jid, id)`, in the old Device shape (owner by JID). */
export async function device(app: App, owner: BareJid, deviceId: string): Promise<LegacyDevice | undefined> {
  const d = await inspect.device(app, owner, deviceId);
  if (d === undefined) return undefined;
  const { key: _key, account: _account, ...rest } = d;
  return { owner, ...rest };
}

/** Old `store.push.count()`: push notices waiting to be sent (the new core: the `push` channel's job rows). */
export async function pushCount(app: App): Promise<number> {
  return inspect.jobCount(app, "push");
}

/**
 * Old `new SqliteStore(file).push.count()`: the queued push notices (the `push` channel's jobs) in a database
 * file no app has open (after a stop), opened as it is.
 */
export async function pushCountAt(file: string): Promise<number> {
  const s = new SqliteStore(file, { legacy: false });
  try {
    return await inspect.jobCount(s, "push");
  } finally {
    await s.close();
  }
}

/**
 * Old `new SqliteStore(file).outbox.count()`: pending deliveries in a database file no process has open (after a
 * kill), opened as it is.
 */
export async function pendingCountAt(file: string): Promise<number> {
  const s = new SqliteStore(file, { legacy: false });
  try {
    return await inspect.pendingCount(s);
  } finally {
    await s.close();
  }
}

/** Old `store.push.node(node)` (owner by JID, device by client id). */
export async function pushNode(app: App, node: string): Promise<unknown> {
  return inspect.pushNode(app, node);
}

/**
 * Old `store.exchange.bind(b, undefined, now)`: binds a and b in the store, bypassing the feature, "as an
 * exchange made earlier would have". The new core writes the binding and both shares (the `binding` audience
 * path, sharing everything) and clears the pair's tombstones, but appends no `binding`/`card` entries: on the
 * new core a pending stream entry of an offline account is itself a push intent (the push-scan observer turns it
 * into a notice), so seeded entries would send a wake-up no real change caused. The earlier exchange's notices
 * count as delivered; later changes reach both sides over the shares as for any binding.
 */
export async function seedBind(app: App, b: Omit<Binding, "createdAt">, now: number): Promise<void> {
  const x = await idOf(app, b.a);
  const y = await idOf(app, b.b);
  const [a, bb] = ordered(x, y);
  const swapped = a !== x;
  await app.ctx.store.tx("look.seed-bind", async (tx) => {
    const seq = await tx.seq();
    const row = {
      id: b.id,
      a,
      b: bb,
      aDevices: swapped ? b.bDevices : b.aDevices,
      bDevices: swapped ? b.aDevices : b.bDevices,
      via: b.via,
      createdAt: now,
    };
    // Already bound: nothing written, as the old bind's "exists".
    if (!(await exchangeRepo(tx).insertBinding(row, seq))) return;
    await tx.run(
      "DELETE FROM tombstones WHERE (holder = :a AND owner = :b) OR (holder = :b AND owner = :a)",
      { a, b: bb },
    );
  });
}

/** Old `SELECT full_jid FROM resources WHERE bare = ? ORDER BY full_jid`: the tracked resources of one user. */
export function resourcesOf(app: App, bare: BareJid): Promise<string[]> {
  return readWho(
    app,
    "look.resources-of",
    bare,
    "SELECT full_jid FROM resources WHERE account_id = :who ORDER BY full_jid",
    async (r, q, who) => (await r.all<{ full_jid: string }>(q, { who })).map((x) => x.full_jid),
    [],
  );
}

// ---- userdata

/** Old `store.outbox.recipientStats(jid)` (same keys; retries are the lane's cursors' on the new core). */
export async function recipientStats(
  app: App,
  jid: BareJid,
): Promise<{ entries: number; retrying: number; oldestAt?: number; maxAttempts: number }> {
  return inspect.recipientStats(app, jid);
}

// One offline core per store (the accounts part's ensure: placeholders as the features make them).
const offline = new WeakMap<AppStore, OfflineCore>();
function offlineOf(app: App): OfflineCore {
  let c = offline.get(app.ctx.store);
  if (!c) {
    c = offlineCore(app.ctx.store, userDataWiring());
    offline.set(app.ctx.store, c);
  }
  return c;
}

/**
 * Old `store.exchange.block(owner, other, cap)`: stores a block bypassing the feature ("full" at the cap). The
 * new core ensures both accounts (a placeholder for an unknown JID, as exchange's block does) in one unit of work.
 */
export async function seedBlock(
  app: App,
  owner: BareJid,
  other: BareJid,
  cap: number,
): Promise<"blocked" | "full"> {
  return offlineOf(app).uow("look.seed-block", async (u) => {
    const me = await u.accounts.ensure(owner, { seen: true });
    const x = await u.accounts.ensure(other);
    const ex = exchangeRepo(u.tx);
    if (!(await ex.isBlocked(me, x)) && (await ex.countBlocks(me)) >= cap) return "full";
    await ex.block(me, x, u.now);
    return "blocked";
  });
}

/**
 * One failed delivery attempt to `jid`, retried at `nextAt`: the old `outbox.due(jid, …)` + `outbox.retry([first],
 * nextAt)`. Retries are a cursor's on the new core (docs/REDESIGN.md §2.3.5): the lane's shared cursor counts the
 * attempt and waits, as the stream's RETRY does after a timeout (the lane must have a pending entry, as `due`'s
 * first entry had to exist).
 */
export async function failOnce(app: App, jid: BareJid, nextAt: number): Promise<void> {
  if ((await inspect.pendingCount(app, jid)) === 0)
    throw new Error(`look.failOnce: nothing pending for ${jid}`);
  const lane = await idOf(app, jid);
  await app.ctx.store.tx("look.fail-once", (tx) =>
    tx.run(
      `UPDATE stream_cursors SET attempts = attempts + 1, next_at = :next_at, lease_until = 0, lease_owner = NULL
        WHERE account_id = :lane AND consumer = 0`,
      { lane, next_at: nextAt },
    ),
  );
}

/**
 * The export row of `owner`'s block of `blocked` (docs/PROTOCOL.md §18.1). Schema 2000 (a documented compatible
 * change from the old table's `{owner, blocked}` JIDs): the stored row — account ids, each followed by its JID, and the
 * time in ISO 8601 — read from the store, so the export is compared with what is stored.
 */
export async function exportedBlock(
  app: App,
  owner: BareJid,
  blocked: BareJid,
): Promise<Record<string, unknown>> {
  const o = await idOf(app, owner);
  const b = await idOf(app, blocked);
  const row = await app.ctx.store.read("look.block", (r) =>
    r.get<{ created_at: number }>("SELECT created_at FROM blocks WHERE owner = :o AND blocked = :b", {
      o,
      b,
    }),
  );
  if (!row) throw new Error(`look.exportedBlock: ${owner} does not block ${blocked}`);
  return {
    owner: o,
    owner_jid: owner,
    blocked: b,
    blocked_jid: blocked,
    created_at: new Date(Number(row.created_at)).toISOString(),
  };
}

/**
 * An export's rows without the account's skeleton (before the redesign a deleted user had no rows; schema 2000,
 * docs/PROTOCOL.md §18.2, DECISIONS "A user's own data … on the new core"): a deleted account keeps — and its
 * export shows — its `accounts` row, its primary JID and its shared stream cursor; those three are checked to be
 * exactly that (no second identifier, no device cursor) and left out, so "nothing left to export" keeps its
 * meaning: no row of the user's data.
 */
export async function beyondSkeleton<T extends { table: string; row: Record<string, unknown> }>(
  app: App,
  jid: BareJid,
  rows: readonly T[],
): Promise<T[]> {
  const me = await idOf(app, jid);
  const skeleton = (t: T): boolean =>
    (t.table === "accounts" && t.row.id === me && t.row.jid === jid) ||
    (t.table === "identifiers" && t.row.account_id === me && t.row.value === jid && t.row.is_primary === 1) ||
    (t.table === "stream_cursors" && t.row.account_id === me && t.row.consumer === 0);
  const kept = rows.filter(skeleton).map((t) => t.table);
  if (kept.length > 0 && kept.join() !== "accounts,identifiers,stream_cursors") {
    throw new Error(`look.beyondSkeleton: ${jid}'s skeleton is not the documented one: ${kept.join()}`);
  }
  return rows.filter((t) => !skeleton(t));
}

/**
 * Migrates a database file to schema 2000 (from an old one: the rekey, as the service does at its first start on
 * it): "the data as a stopped cardlink left it" is then a 2000 database.
 */
export async function toCoreSchema(file: string): Promise<void> {
  const { database } = loadConfig({
    env: {},
    overrides: { secret: "s", database: { driver: "sqlite", path: file } },
  });
  // The feature modules' migrations too, as the first start (component/runtime/app.ts) applies them.
  const store = await openCoreStore(database, { log: createLogger("silent") }, moduleMigrations());
  await store.close();
}

type Found = Array<{ table: string; row: Record<string, unknown> }>;

/**
 * Every row of the SQLite file about `jid`, read from the file itself (the service may be running on it).
 *
 * Before the redesign this was every row of every table in which some column's text contains the JID. Schema
 * 2000 asks the same question where users are account ids: every row in which an account-id column
 * (docs/PROTOCOL.md §18.1's list, and `accounts.id`) is the user's account, a `device` column one of its devices,
 * a push_sends `token` one of its devices' tokens, or some text contains the JID; except the account's skeleton,
 * which a deletion keeps on purpose (its `accounts` row, its primary JID, its shared cursor: §18.2). The rows a
 * deletion leaves are shown in the old shapes the assertions name: a block as `{owner, blocked}` (JIDs), a stream
 * entry as table `outbox` with `{recipient, kind, subject}` (the lane's and the subject's JIDs); any other row is
 * shown as stored under its own table, so an unexpected one fails the assertion visibly.
 */
export function rowsNaming(file: string, jid: string): Found {
  const db = new Database(file, { readonly: true });
  try {
    const tables = (
      db.prepare("SELECT name FROM sqlite_master WHERE type = 'table'").all() as Array<{ name: string }>
    ).map((t) => t.name);
    const version = tables.includes("schema_migrations")
      ? Number(
          (db.prepare("SELECT MAX(version) AS v FROM schema_migrations").get() as { v: number | null }).v ??
            0,
        )
      : 0;
    expect(version).to.be.at.least(2000);
    return rowsNaming2000(db, tables, jid);
  } finally {
    db.close();
  }
}

/** docs/PROTOCOL.md §18.1: the columns that hold an account id on schema 2000 (plus `accounts.id`). */
const ACCOUNT_COLUMNS = new Set([
  "account_id",
  "a",
  "b",
  "owner",
  "holder",
  "blocked",
  "from_account",
  "to_account",
  "subject_account",
]);

function rowsNaming2000(db: Database.Database, tables: string[], jid: string): Found {
  expect(tables).to.include.members([
    "accounts",
    "identifiers",
    "cards",
    "devices",
    "stream_entries",
    "jobs",
  ]);
  expect(tables).to.include.members(["push_nodes", "push_sends", "blocks"]);
  // Any identifier state: a deleted account's primary JID is kept; a held one still says whose it was.
  const acct = db
    .prepare("SELECT account_id AS id FROM identifiers WHERE kind = 'jid' AND value = ?")
    .get(jid) as { id: number } | undefined;
  const me = acct === undefined ? undefined : Number(acct.id);
  const devices = new Set<number>();
  const tokens = new Set<string>();
  if (me !== undefined) {
    for (const d of db.prepare("SELECT id, push_token FROM devices WHERE account_id = ?").all(me) as Array<{
      id: number;
      push_token: string | null;
    }>) {
      devices.add(Number(d.id));
      if (d.push_token !== null) tokens.add(d.push_token);
    }
  }
  const jidOf = (id: unknown): string | null => {
    const r = db
      .prepare("SELECT value FROM identifiers WHERE account_id = ? AND is_primary = 1 AND kind = 'jid'")
      .get(Number(id)) as { value: string } | undefined;
    return r?.value ?? null;
  };
  const skeleton = (table: string, row: Record<string, unknown>): boolean =>
    (table === "accounts" && Number(row.id) === me) ||
    (table === "identifiers" && Number(row.account_id) === me && Number(row.is_primary) === 1) ||
    (table === "stream_cursors" && Number(row.account_id) === me && Number(row.consumer) === 0);
  const names = (table: string, row: Record<string, unknown>): boolean =>
    Object.entries(row).some(([k, v]) => {
      if (v === null || v === undefined) return false;
      if (me !== undefined && (ACCOUNT_COLUMNS.has(k) || (table === "accounts" && k === "id"))) {
        if (Number(v) === me) return true;
      }
      if (k === "device" && devices.has(Number(v))) return true;
      if (table === "push_sends" && k === "token" && tokens.has(String(v))) return true;
      return String(v).includes(jid);
    });
  const found: Found = [];
  for (const table of tables) {
    for (const row of db.prepare(`SELECT * FROM "${table}"`).all() as Array<Record<string, unknown>>) {
      if (!names(table, row) || skeleton(table, row)) continue;
      if (table === "blocks") {
        found.push({ table, row: { owner: jidOf(row.owner), blocked: jidOf(row.blocked) } });
      } else if (table === "stream_entries") {
        const subject = row.subject_account === null ? row.subject : jidOf(row.subject_account);
        found.push({ table: "outbox", row: { recipient: jidOf(row.account_id), kind: row.kind, subject } });
      } else {
        found.push({ table, row });
      }
    }
  }
  return found;
}

// ---- metrics and storage

/** Old `store.cards.get(jid)` with its StoredCard shape typed (`card` above answers unknown). */
export async function storedCard(
  app: App,
  jid: BareJid,
): Promise<{ version: number; hash: string; seq: number; updatedAt: number } | undefined> {
  return inspect.card(app, jid);
}

/** A queue gauge's one statement and the plan EXPLAIN QUERY PLAN must give for it on this core. */
export interface GaugeQuery {
  sql: string;
  plan: string[];
}

/**
 * The queue gauges' statements (the old outbox and push-queue depth queries' successors) with the plans that mean
 * "one scan of a covering index each, in group order: no table rows, no USE TEMP B-TREE FOR GROUP BY". The
 * outbox is stream_entries (one covering scan of stream_kind, as outbox_kind); the push queue is the `push`
 * channel's jobs, grouped per device on the covering index jobs_device, with each waiting device's platform read
 * by its primary key (jobs carry no platform; a probe per device, never per notice). "SCAN j" there is the
 * co-routine's rows, not a table.
 */
export function gaugeQueries(_app: App): Promise<{ outbox: GaugeQuery; push: GaugeQuery }> {
  return Promise.resolve({
    outbox: {
      sql: STREAM_DEPTH_SQL,
      plan: ["SCAN stream_entries USING COVERING INDEX stream_kind"],
    },
    push: {
      sql: CORE_PUSH_DEPTH_SQL,
      plan: [
        "CO-ROUTINE j",
        "SEARCH jobs USING COVERING INDEX jobs_device (channel=? AND device>?)",
        "SCAN j",
        "SEARCH d USING INTEGER PRIMARY KEY (rowid=?)",
      ],
    },
  });
}

// ---- delivery

/** Old `store.presence.isSubscriber(jid)`: the user granted cardlink a presence subscription. */
export async function isSubscriber(app: App, jid: BareJid): Promise<boolean> {
  return inspect.isSubscriber(app, jid);
}

/** Old `store.cards.holders(jid)`: the JIDs that hold the owner's card, sorted. */
export async function holders(app: App, jid: BareJid): Promise<BareJid[]> {
  return inspect.holders(app, jid);
}

/** The exchange rules of the running app's new core (look.ts seeds through them, not around them). */
function exchangeOf(app: App & Pick<Cardlink, "rt">): ExchangeService {
  if (!app.rt) throw new Error("look: the app exposes no runtime");
  return serviceFor(app.rt);
}

/**
 * Binds a and b directly, bypassing the protocol (unlike `seedBind`, with the notices and kicks of a real bind): the old `exchange.bind(binding, undefined, now)`, which writes
 * the binding and enqueues the `binding` record to both and each one's card to the other. On the new core the
 * same writes come from the exchange service's own rules: `a` creates a code and `b` redeems it (one unit of
 * work each, in the running app, so its after-commit kicks happen as for a real redeem). The binding's id is the
 * service's (a UUID), not `b.id`: no test reads it back by id.
 */
export async function bindLive(
  app: App & Pick<Cardlink, "rt">,
  b: { id: string; a: BareJid; b: BareJid; aDevices: string[]; bDevices: string[]; via: "request" | "code" },
  _now: number, // the old bind's time; the service reads its own clock
): Promise<void> {
  const svc = exchangeOf(app);
  const { code } = await svc.createCode(b.a);
  await svc.redeemCode(b.b, code);
}

/**
 * Blocks `other` for `owner` directly, bypassing the protocol (through the service, unlike `seedBlock`): the old `exchange.block(owner, other, max)`. On the
 * new core through the exchange service (its limit is `limits.blocksPerUser`, 1,000 by default like the `max`
 * the tests pass).
 */
export async function blockLive(
  app: App & Pick<Cardlink, "rt">,
  owner: BareJid,
  other: BareJid,
  _max: number, // the old cap; the service applies limits.blocksPerUser
): Promise<void> {
  await exchangeOf(app).block(owner, other);
}

/** Old `store.exchange.isBlocked(owner, other)`. */
export async function isBlocked(app: App, owner: BareJid, other: BareJid): Promise<boolean> {
  return inspect.isBlocked(app, owner, other);
}
