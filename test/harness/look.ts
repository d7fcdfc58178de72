/**
 * Dual accessors for integration tests while both cores run (issue 8 S11): each function reads the new core's
 * tables through inspect.ts when the app's store is on schema ≥ 2000 (CARDLINK_CORE=2000), and the old
 * repositories otherwise, so one test file proves both cores and main stays green on the legacy default. The
 * shapes are the old ones (inspect.ts keeps them). Deleted with the legacy core: then the tests call inspect.ts.
 */
import type { Cardlink } from "../../component/runtime/app.js";
import type { BareJid } from "../../component/runtime/accounts/api.js";
import { accountsRepo } from "../../component/runtime/accounts/repo.js";
import { exchangeRepo } from "../../component/features/exchange/repo.js";
import { serviceFor } from "../../component/features/exchange/index.js";
import type { ExchangeService } from "../../component/features/exchange/service.js";
import type { AccountId } from "../../storage/store.js";
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

// ---- delivery

/** Old `store.presence.isSubscriber(jid)`: the user granted cardlink a presence subscription. */
export async function isSubscriber(app: App, jid: BareJid): Promise<boolean> {
  return (await isCore(app)) ? inspect.isSubscriber(app, jid) : app.ctx.store.presence.isSubscriber(jid);
}

/** Old `store.cards.holders(jid)`: the JIDs that hold the owner's card, sorted. */
export async function holders(app: App, jid: BareJid): Promise<BareJid[]> {
  return (await isCore(app)) ? inspect.holders(app, jid) : app.ctx.store.cards.holders(jid);
}

/** The exchange rules of the running app's new core (look.ts seeds through them, not around them). */
function exchangeOf(app: App & Pick<Cardlink, "rt">): ExchangeService {
  if (!app.rt) throw new Error("look: the app runs the new core but exposes no runtime");
  return serviceFor(app.rt);
}

/**
 * Binds a and b directly, bypassing the protocol: the old `exchange.bind(binding, undefined, now)`, which writes
 * the binding and enqueues the `binding` record to both and each one's card to the other. On the new core the
 * same writes come from the exchange service's own rules: `a` creates a code and `b` redeems it (one unit of
 * work each, in the running app, so its after-commit kicks happen as for a real redeem). The binding's id is the
 * service's (a UUID), not `b.id`: no test reads it back by id.
 */
export async function seedBind(
  app: App & Pick<Cardlink, "rt">,
  b: { id: string; a: BareJid; b: BareJid; aDevices: string[]; bDevices: string[]; via: "request" | "code" },
  now: number,
): Promise<void> {
  if (!(await isCore(app))) {
    await app.ctx.store.exchange.bind(b, undefined, now);
    return;
  }
  const svc = exchangeOf(app);
  const { code } = await svc.createCode(b.a);
  await svc.redeemCode(b.b, code);
}

/**
 * Blocks `other` for `owner` directly, bypassing the protocol: the old `exchange.block(owner, other, max)`. On the
 * new core through the exchange service (its limit is `limits.blocksPerUser`, 1,000 by default like the `max`
 * the tests pass).
 */
export async function seedBlock(
  app: App & Pick<Cardlink, "rt">,
  owner: BareJid,
  other: BareJid,
  max: number,
): Promise<void> {
  if (!(await isCore(app))) {
    await app.ctx.store.exchange.block(owner, other, max);
    return;
  }
  await exchangeOf(app).block(owner, other);
}

/** Old `store.exchange.isBlocked(owner, other)`. */
export async function isBlocked(app: App, owner: BareJid, other: BareJid): Promise<boolean> {
  return (await isCore(app))
    ? inspect.isBlocked(app, owner, other)
    : app.ctx.store.exchange.isBlocked(owner, other);
}
