/**
 * Dual accessors for integration tests while both cores run (issue 8 S11): each function reads the new core's
 * tables through inspect.ts when the app's store is on schema ≥ 2000 (CARDLINK_CORE=2000), and the old
 * repositories otherwise, so one test file proves both cores and main stays green on the legacy default. The
 * shapes are the old ones (inspect.ts keeps them). Deleted with the legacy core: then the tests call inspect.ts.
 */
import type { Cardlink } from "../../component/runtime/app.js";
import type { BareJid } from "../../component/runtime/accounts/api.js";
import { accountsRepo } from "../../component/runtime/accounts/repo.js";
import { exchangeRepo, ordered } from "../../component/features/exchange/repo.js";
import { SqliteStore } from "../../storage/sqlite/store.js";
import type { AccountId, Binding, Device as LegacyDevice, ReadTx } from "../../storage/store.js";
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

// ---- limits

/**
 * Reads with one query per core, `:who` bound to the JID on the legacy core and to its account id on 2000, on the
 * store's read connection (a committed snapshot of the database file, like a reader of its own). On 2000 a JID
 * with no account has no rows: `none`.
 */
async function readWho<T>(
  app: App,
  name: string,
  who: BareJid,
  sql: { legacy: string; core: string },
  fn: (r: ReadTx, sql: string, who: string | number) => Promise<T>,
  none: T,
): Promise<T> {
  const core = await isCore(app);
  return app.ctx.store.read(name, async (r) => {
    if (!core) return fn(r, sql.legacy, who);
    const id = await accountsRepo(r).resolve(who);
    return id === undefined ? none : fn(r, sql.core, id);
  });
}

const countOf = async (r: ReadTx, sql: string, who: string | number): Promise<number> =>
  Number((await r.get<{ n: number }>(sql, { who }))?.n ?? 0);

/** Old `SELECT COUNT(*) FROM blocks WHERE owner = ?`: how many accounts `owner` blocks. */
export function blocksBy(app: App, owner: BareJid): Promise<number> {
  const sql = "SELECT COUNT(*) AS n FROM blocks WHERE owner = :who";
  return readWho(app, "look.blocks-by", owner, { legacy: sql, core: sql }, countOf, 0);
}

/** Old `SELECT COUNT(*) FROM blocks WHERE blocked = ?`: how many users block `blocked`. */
export function blocksOf(app: App, blocked: BareJid): Promise<number> {
  const sql = "SELECT COUNT(*) AS n FROM blocks WHERE blocked = :who";
  return readWho(app, "look.blocks-of", blocked, { legacy: sql, core: sql }, countOf, 0);
}

/** Old `SELECT COUNT(*) FROM exchange_codes WHERE owner = ?`: stored codes of `owner` (expired ones too). */
export function codeCount(app: App, owner: BareJid): Promise<number> {
  const sql = "SELECT COUNT(*) AS n FROM exchange_codes WHERE owner = :who";
  return readWho(app, "look.code-count", owner, { legacy: sql, core: sql }, countOf, 0);
}

/** Old `SELECT code FROM exchange_codes WHERE owner = ? LIMIT 1`: one stored code of `owner`, or undefined. */
export function anyCode(app: App, owner: BareJid): Promise<{ code: string } | undefined> {
  const sql = "SELECT code FROM exchange_codes WHERE owner = :who LIMIT 1";
  return readWho(
    app,
    "look.any-code",
    owner,
    { legacy: sql, core: sql },
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
    {
      legacy: "SELECT COUNT(*) AS n FROM devices WHERE owner = :who",
      core: "SELECT COUNT(*) AS n FROM devices WHERE account_id = :who",
    },
    countOf,
    0,
  );
}

// ---- push and limits (device is used by both)

/** Old `store.devices.get(jid, id)`, in the old Device shape (owner by JID). */
export async function device(app: App, owner: BareJid, deviceId: string): Promise<LegacyDevice | undefined> {
  if (!(await isCore(app))) return app.ctx.store.devices.get(owner, deviceId);
  const d = await inspect.device(app, owner, deviceId);
  if (d === undefined) return undefined;
  const { key: _key, account: _account, ...rest } = d;
  return { owner, ...rest };
}

/** Old `store.push.count()`: push notices waiting to be sent (the new core: the `push` channel's job rows). */
export async function pushCount(app: App): Promise<number> {
  return (await isCore(app)) ? inspect.jobCount(app, "push") : app.ctx.store.push.count();
}

/**
 * Old `new SqliteStore(file).push.count()`: the queued push notices in a database file no app has open (after a
 * stop). The schema is read first, so a file the new core wrote is opened as it is (the old constructor would
 * refuse it as newer than itself) and its `push` jobs counted; a legacy file is opened the old way.
 */
export async function pushCountAt(file: string): Promise<number> {
  const s = new SqliteStore(file, { legacy: false });
  try {
    if ((await s.schemaVersion()) >= 2000) return await inspect.jobCount(s, "push");
  } finally {
    await s.close();
  }
  const old = new SqliteStore(file);
  try {
    return await old.push.count();
  } finally {
    await old.close();
  }
}

/** Old `store.push.node(node)` (owner by JID, device by client id). */
export async function pushNode(app: App, node: string): Promise<unknown> {
  return (await isCore(app)) ? inspect.pushNode(app, node) : app.ctx.store.push.node(node);
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
  if (!(await isCore(app))) {
    await app.ctx.store.exchange.bind(b, undefined, now);
    return;
  }
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
    {
      legacy: "SELECT full_jid FROM resources WHERE bare = :who ORDER BY full_jid",
      core: "SELECT full_jid FROM resources WHERE account_id = :who ORDER BY full_jid",
    },
    async (r, q, who) => (await r.all<{ full_jid: string }>(q, { who })).map((x) => x.full_jid),
    [],
  );
}
