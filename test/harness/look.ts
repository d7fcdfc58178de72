/**
 * Dual accessors for integration tests while both cores run (issue 8 S11): each function reads the new core's
 * tables through inspect.ts when the app's store is on schema ≥ 2000 (CARDLINK_CORE=2000), and the old
 * repositories otherwise, so one test file proves both cores and main stays green on the legacy default. The
 * shapes are the old ones (inspect.ts keeps them). Deleted with the legacy core: then the tests call inspect.ts.
 */
import { expect } from "chai";
import Database from "better-sqlite3";
import { coreChoice, type Cardlink } from "../../component/runtime/app.js";
import type { BareJid } from "../../component/runtime/accounts/api.js";
import { accountsRepo } from "../../component/runtime/accounts/repo.js";
import { exchangeRepo } from "../../component/features/exchange/repo.js";
import { userDataWiring } from "../../component/features.js";
import { loadConfig } from "../../component/runtime/config.js";
import { createLogger } from "../../component/runtime/log.js";
import { offlineCore, type OfflineCore } from "../../component/runtime/offline.js";
import { openCoreStore } from "../../storage/index.js";
import type { AccountId, Store } from "../../storage/store.js";
import * as inspect from "./inspect.js";

type App = Pick<Cardlink, "ctx">;
type AppStore = Cardlink["ctx"]["store"];

// One schema read per store: the version does not change while an app runs.
const onCore = new WeakMap<AppStore, Promise<boolean>>();
/** Whether the app runs the new core (schema 2000). */
export function isCore(app: App): Promise<boolean> {
  const s = app.ctx.store;
  let v = onCore.get(s);
  if (!v) {
    v = s.schemaVersion().then((n) => n >= 2000);
    onCore.set(s, v);
  }
  return v;
}

/** Old `store.presence.all()`: `{ bare, full }` per available resource. */
export async function resources(app: App): Promise<Array<{ bare: string; full: string }>> {
  return (await isCore(app)) ? inspect.resources(app) : app.ctx.store.presence.all();
}

/** Old `store.outbox.count(jid)`: pending deliveries to `jid` (all of them without a JID). */
export async function pendingCount(app: App, jid?: BareJid): Promise<number> {
  if (await isCore(app)) return inspect.pendingCount(app, jid);
  return jid === undefined ? app.ctx.store.outbox.count() : app.ctx.store.outbox.count(jid);
}

/** Old `store.cards.get(jid)`: the stored card (undefined when the user has none). */
export async function card(app: App, jid: BareJid): Promise<unknown> {
  return (await isCore(app)) ? inspect.card(app, jid) : app.ctx.store.cards.get(jid);
}

/** Old `store.exchange.binding(x, y)`. */
export async function binding(app: App, x: BareJid, y: BareJid): Promise<unknown> {
  return (await isCore(app)) ? inspect.binding(app, x, y) : app.ctx.store.exchange.binding(x, y);
}

/** Old `store.exchange.request(id)`. */
export async function request(app: App, id: string): Promise<unknown> {
  return (await isCore(app)) ? inspect.request(app, id) : app.ctx.store.exchange.request(id);
}

/** Old `store.exchange.code(code)`. */
export async function code(app: App, value: string): Promise<unknown> {
  return (await isCore(app)) ? inspect.code(app, value) : app.ctx.store.exchange.code(value);
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
  if (!(await isCore(app))) {
    await app.ctx.store.exchange.createCode(c, 10);
    return;
  }
  const owner = await idOf(app, c.owner);
  await app.ctx.store.tx("look.seed-code", (tx) =>
    exchangeRepo(tx).insertCode({ code: c.code, owner, createdAt: c.createdAt, expiresAt: c.expiresAt }),
  );
}

/**
 * Stores a request as is (expired ones too), bypassing the feature: the old `exchange.createRequest` with its
 * `exchange-request` notice to `to`. The new core writes the row only: the seeded request exists to be refused.
 */
export async function seedRequest(
  app: App,
  r: { id: string; from: BareJid; to: BareJid; createdAt: number; expiresAt: number },
): Promise<void> {
  if (!(await isCore(app))) {
    await app.ctx.store.exchange.createRequest(r, {
      recipient: r.to,
      kind: "exchange-request",
      subject: r.id,
      version: 1,
    });
    return;
  }
  const from = await idOf(app, r.from);
  const to = await idOf(app, r.to);
  await app.ctx.store.tx("look.seed-request", (tx) =>
    exchangeRepo(tx).insertRequest({ id: r.id, from, to, createdAt: r.createdAt, expiresAt: r.expiresAt }),
  );
}

// ---- userdata

/** Old `store.outbox.recipientStats(jid)` (same keys; retries are the lane's cursors' on the new core). */
export async function recipientStats(
  app: App,
  jid: BareJid,
): Promise<{ entries: number; retrying: number; oldestAt?: number; maxAttempts: number }> {
  return (await isCore(app)) ? inspect.recipientStats(app, jid) : app.ctx.store.outbox.recipientStats(jid);
}

// One offline core per store (the accounts part's ensure: placeholders as the features make them).
const offline = new WeakMap<AppStore, OfflineCore>();
function offlineOf(app: App): OfflineCore {
  let c = offline.get(app.ctx.store);
  if (!c) {
    c = offlineCore(app.ctx.store as unknown as Store, userDataWiring());
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
  if (!(await isCore(app))) return app.ctx.store.exchange.block(owner, other, cap);
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
  if (!(await isCore(app))) {
    const [entry] = await app.ctx.store.outbox.due(jid, Number.MAX_SAFE_INTEGER, 10);
    if (!entry) throw new Error(`look.failOnce: nothing due for ${jid}`);
    await app.ctx.store.outbox.retry([entry], nextAt);
    return;
  }
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
 * The export row of `owner`'s block of `blocked` (docs/PROTOCOL.md §18.1). Legacy: the old table's columns, JIDs.
 * Schema 2000 (a documented compatible change): the stored row — account ids, each followed by its JID, and the
 * time in ISO 8601 — read from the store, so the export is compared with what is stored.
 */
export async function exportedBlock(
  app: App,
  owner: BareJid,
  blocked: BareJid,
): Promise<Record<string, unknown>> {
  if (!(await isCore(app))) return { owner, blocked };
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
 * An export's rows without the account's skeleton. Legacy: all of them (a deleted user has none). Schema 2000
 * (docs/PROTOCOL.md §18.2, DECISIONS "A user's own data … on the new core"): a deleted account keeps — and its
 * export shows — its `accounts` row, its primary JID and its shared stream cursor; those three are checked to be
 * exactly that (no second identifier, no device cursor) and left out, so "nothing left to export" keeps its
 * meaning: no row of the user's data.
 */
export async function beyondSkeleton<T extends { table: string; row: Record<string, unknown> }>(
  app: App,
  jid: BareJid,
  rows: readonly T[],
): Promise<T[]> {
  if (!(await isCore(app))) return [...rows];
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
 * When the tests run the new core (CARDLINK_CORE=2000), migrates a database seeded through the old repositories
 * to schema 2000 (the rekey, as the service does at its first start on it): "the data as a stopped cardlink left
 * it" is then a 2000 database, and the `cardlink` commands spawned on it run their schema-2000 paths (they choose
 * by the file's recorded version, not by the variable). Legacy: nothing.
 */
export async function toCoreSchema(file: string): Promise<void> {
  if (coreChoice() !== "2000") return;
  const { database } = loadConfig({
    env: {},
    overrides: { secret: "s", database: { driver: "sqlite", path: file } },
  });
  const store = await openCoreStore(database, { log: createLogger("silent") });
  await store.close();
}

type Found = Array<{ table: string; row: Record<string, unknown> }>;

/**
 * Every row of the SQLite file about `jid`, read from the file itself (the service may be running on it).
 *
 * Legacy (schema ≤ 300): every row of every table in which some column's text contains the JID.
 *
 * Schema 2000 — the same question where users are account ids: every row in which an account-id column
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
    if (version >= 2000) return rowsNaming2000(db, tables, jid);
    expect(tables).to.include.members(["cards", "devices", "outbox", "push_queue", "push_nodes"]);
    const found: Found = [];
    for (const table of tables) {
      for (const row of db.prepare(`SELECT * FROM "${table}"`).all() as Array<Record<string, unknown>>) {
        if (Object.values(row).some((v) => v !== null && String(v).includes(jid))) found.push({ table, row });
      }
    }
    return found;
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
