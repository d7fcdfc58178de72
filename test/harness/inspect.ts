/**
 * The JID-keyed look into the database that integration tests use (docs/REDESIGN.md §4.7), over the 2000 schema.
 * Today's tests call the old repos (`app.ctx.store.outbox.count(jid)`, `store.presence.all()`, …); at the switch
 * (S11) each such accessor line becomes the call of the same name here and the assertion after it stays:
 *
 * | today                                        | here                                              |
 * | -------------------------------------------- | ------------------------------------------------- |
 * | `store.outbox.count(jid)` / `count()`         | `pendingCount(app, jid)` / `pendingCount(app)`    |
 * | `store.outbox.due(jid, t, n)`                 | `due(app, jid, n)` (the lane's pending entries)   |
 * | `store.outbox.recipientStats(jid)`            | `recipientStats(app, jid)` (same QueueDepth keys) |
 * | `store.presence.all()` / `isSubscriber(jid)`  | `resources(app)` / `isSubscriber(app, jid)`       |
 * | `store.cards.get(jid)` / `holders(jid)`       | `card(app, jid)` / `holders(app, jid)`            |
 * | `store.devices.get(jid, id)`                  | `device(app, jid, id)` (same `tokenState`)        |
 * | `store.push.count()` / `due(t, n)` / `node(n)`| `jobCount(app, "push")` / `jobsDue(app, "push", t, n)` / `pushNode(app, n)` |
 * | `store.exchange.binding/request/code/isBlocked` | `binding/request/code/isBlocked(app, …)`        |
 *
 * The runtime views (accounts, stream, jobs, presence) are component/runtime/inspect.ts, re-exported with a
 * handle adapter; the feature tables (cards, bindings, requests, codes, blocks, push nodes) are read here with
 * plain SELECTs, because their feature repos are not all built yet (exchange S10, push S8) and a test's look
 * must not depend on the feature under test. Every function takes an app (`{ ctx: { store } }`), a context
 * (`{ store }`) or a Store itself, so the crash test's out-of-process checks can open the file on their own.
 */
import * as rt from "../../component/runtime/inspect.js";
import type { Inspectable } from "../../component/runtime/inspect.js";
import type { BareJid, Device } from "../../component/runtime/accounts/api.js";
import { accountsRepo } from "../../component/runtime/accounts/repo.js";
import type { AudiencePath } from "../../component/runtime/audience/api.js";
import { audienceHoldersSql } from "../../component/runtime/audience/compose.js";
import type { Card } from "../../stanzas/model/card.js";
import type { AccountId, ReadTx, Seq } from "../../storage/store.js";

export type {
  AccountView,
  CursorView,
  DeadLetterView,
  Inspectable,
  JobStats,
  JobView,
  LaneView,
  PendingView,
  ResourceView,
} from "../../component/runtime/inspect.js";

/** What a test has in hand: the app, its context, or a store. */
export type Handle = Inspectable | { store: Inspectable } | { ctx: { store: Inspectable } };

export function storeOf(h: Handle): Inspectable {
  if ("ctx" in h) return h.ctx.store;
  if ("store" in h) return h.store;
  return h;
}

/** The binding path as features/exchange declares it (S10); the default audience of `holders`. */
export const BINDING_PATH: AudiencePath = {
  name: "binding",
  from: "shares s",
  owner: "s.owner",
  holder: "s.holder",
  policy: "s.policy",
  seq: "s.seq",
};

// ------------------------------------------------------------------------------------ runtime views

export const account = (h: Handle, jid: BareJid) => rt.account(storeOf(h), jid);
export const devices = (h: Handle, jid: BareJid) => rt.devices(storeOf(h), jid);
export const device = (h: Handle, jid: BareJid, id: string): Promise<Device | undefined> =>
  rt.device(storeOf(h), jid, id);
export const accountCounts = (h: Handle) => rt.accountCounts(storeOf(h));
export const pendingCount = (h: Handle, jid?: BareJid) => rt.pendingCount(storeOf(h), jid);
export const pending = (h: Handle, jid: BareJid, o?: { limit?: number }) => rt.pending(storeOf(h), jid, o);
export const cursors = (h: Handle, jid: BareJid) => rt.cursors(storeOf(h), jid);
export const lane = (h: Handle, jid: BareJid, o?: { limit?: number }) => rt.lane(storeOf(h), jid, o);
export const streamDepth = (h: Handle) => rt.streamDepth(storeOf(h));
export const jobStats = (h: Handle, jid?: BareJid) => rt.jobStats(storeOf(h), jid);
export const jobs = (h: Handle, channel: string, o?: { jid?: BareJid; limit?: number }) =>
  rt.jobs(storeOf(h), channel, o);
export const jobsDue = (h: Handle, channel: string, now: number, limit: number) =>
  rt.jobsDue(storeOf(h), channel, now, limit);
export const jobCount = (h: Handle, channel: string, jid?: BareJid) => rt.jobCount(storeOf(h), channel, jid);
export const deadLetters = (h: Handle, channel: string, o?: { jid?: BareJid; limit?: number }) =>
  rt.deadLetters(storeOf(h), channel, o);
export const resources = (h: Handle) => rt.resources(storeOf(h));
export const isSubscriber = (h: Handle, jid: BareJid) => rt.isSubscriber(storeOf(h), jid);

/** The old `outbox.due(jid, t, n)`: the lane's pending entries (the lane has no per-entry due time any more). */
export const due = (h: Handle, jid: BareJid, limit: number) => rt.pending(storeOf(h), jid, { limit });

/**
 * The old `outbox.recipientStats(jid)` keys. Retries are a cursor's now, not an entry's (§2.3.5): `retrying` is
 * the pending count while some active cursor of the lane waits for a retry, else 0; `maxAttempts` the highest
 * attempt count of the lane's cursors.
 */
export async function recipientStats(
  h: Handle,
  jid: BareJid,
): Promise<{ entries: number; retrying: number; oldestAt?: number; maxAttempts: number }> {
  const l = await rt.lane(storeOf(h), jid);
  if (!l) return { entries: 0, retrying: 0, maxAttempts: 0 };
  const active = l.cursors.filter((c) => c.state === "active");
  const maxAttempts = Math.max(0, ...active.map((c) => c.attempts));
  const out: { entries: number; retrying: number; oldestAt?: number; maxAttempts: number } = {
    entries: l.pendingCount,
    retrying: maxAttempts > 0 ? l.pendingCount : 0,
    maxAttempts,
  };
  if (l.pending.length > 0) out.oldestAt = Math.min(...l.pending.map((e) => e.createdAt));
  return out;
}

// ------------------------------------------------------------------------------------ feature tables

/** In any identifier state, like runtime/inspect.ts: a held JID still shows whose it was. */
const JID_ACCOUNT = "SELECT account_id FROM identifiers WHERE kind = 'jid' AND value = :jid";
async function idOf(r: ReadTx, jid: BareJid): Promise<AccountId | undefined> {
  const row = await r.get<{ account_id: number }>(JID_ACCOUNT, { jid });
  return row === undefined ? undefined : (Number(row.account_id) as AccountId);
}
async function jidOf(r: ReadTx, id: number): Promise<BareJid> {
  return (await accountsRepo(r).primaryJid(id as AccountId)) ?? `a${id}`;
}

/** The old StoredCard, owner by JID. */
export interface CardView {
  owner: BareJid;
  version: number;
  hash: string;
  card: Card;
  seq: Seq;
  updatedAt: number;
}

const CARD = "SELECT version, hash, card, seq, updated_at FROM cards WHERE account_id = :id";
export function card(h: Handle, jid: BareJid): Promise<CardView | undefined> {
  return storeOf(h).read("inspect.card", async (r) => {
    const id = await idOf(r, jid);
    if (id === undefined) return undefined;
    const c = await r.get<{ version: number; hash: string; card: string; seq: number; updated_at: number }>(
      CARD,
      { id },
    );
    if (!c) return undefined;
    return {
      owner: await jidOf(r, id),
      version: Number(c.version),
      hash: c.hash,
      card: JSON.parse(c.card) as Card,
      seq: Number(c.seq),
      updatedAt: Number(c.updated_at),
    };
  });
}

/** JIDs that see the owner's card over the given audience paths (default: bindings), sorted. */
export function holders(
  h: Handle,
  jid: BareJid,
  paths: readonly AudiencePath[] = DEFAULT_PATHS,
): Promise<BareJid[]> {
  return storeOf(h).read("inspect.holders", async (r) => {
    const owner = await idOf(r, jid);
    if (owner === undefined) return [];
    const rows = await r.all<{ holder: number }>(audienceHoldersSql(paths), { owner });
    const out: BareJid[] = [];
    for (const row of rows) out.push(await jidOf(r, Number(row.holder)));
    return out.sort();
  });
}
// One array for the default, so audienceHoldersSql's per-registry cache sees one key.
const DEFAULT_PATHS: readonly AudiencePath[] = [BINDING_PATH];

/** The old Binding; `a` is the side with the lower account id (the 2000 schema's CHECK (a < b)). */
export interface BindingView {
  id: string;
  a: BareJid;
  b: BareJid;
  aDevices: string[];
  bDevices: string[];
  createdAt: number;
  via: "request" | "code";
}

const BINDING = `SELECT id, a, b, a_devices, b_devices, via, created_at FROM bindings WHERE a = :lo AND b = :hi`;
export function binding(h: Handle, x: BareJid, y: BareJid): Promise<BindingView | undefined> {
  return storeOf(h).read("inspect.binding", async (r) => {
    const ix = await idOf(r, x);
    const iy = await idOf(r, y);
    if (ix === undefined || iy === undefined) return undefined;
    const [lo, hi] = ix < iy ? [ix, iy] : [iy, ix];
    const b = await r.get<{
      id: string;
      a: number;
      b: number;
      a_devices: string;
      b_devices: string;
      via: "request" | "code";
      created_at: number;
    }>(BINDING, { lo, hi });
    if (!b) return undefined;
    return {
      id: b.id,
      a: await jidOf(r, Number(b.a)),
      b: await jidOf(r, Number(b.b)),
      aDevices: JSON.parse(b.a_devices) as string[],
      bDevices: JSON.parse(b.b_devices) as string[],
      createdAt: Number(b.created_at),
      via: b.via,
    };
  });
}

const BLOCKED = "SELECT 1 AS yes FROM blocks WHERE owner = :owner AND blocked = :other";
/** Whether owner blocked other (the old `exchange.isBlocked`). */
export function isBlocked(h: Handle, owner: BareJid, other: BareJid): Promise<boolean> {
  return storeOf(h).read("inspect.is-blocked", async (r) => {
    const o = await idOf(r, owner);
    const x = await idOf(r, other);
    if (o === undefined || x === undefined) return false;
    return (await r.get(BLOCKED, { owner: o, other: x })) !== undefined;
  });
}

export interface RequestView {
  id: string;
  from: BareJid;
  to: BareJid;
  fromDevice?: string;
  createdAt: number;
  expiresAt: number;
}
const REQUEST = `SELECT id, from_account, to_account, from_device, created_at, expires_at
  FROM exchange_requests WHERE id = :id`;
export function request(h: Handle, id: string): Promise<RequestView | undefined> {
  return storeOf(h).read("inspect.request", async (r) => {
    const q = await r.get<{
      id: string;
      from_account: number;
      to_account: number;
      from_device: string | null;
      created_at: number;
      expires_at: number;
    }>(REQUEST, { id });
    if (!q) return undefined;
    const v: RequestView = {
      id: q.id,
      from: await jidOf(r, Number(q.from_account)),
      to: await jidOf(r, Number(q.to_account)),
      createdAt: Number(q.created_at),
      expiresAt: Number(q.expires_at),
    };
    if (q.from_device !== null) v.fromDevice = q.from_device;
    return v;
  });
}

export interface CodeView {
  code: string;
  owner: BareJid;
  deviceId?: string;
  createdAt: number;
  expiresAt: number;
}
const CODE = "SELECT code, owner, device_id, created_at, expires_at FROM exchange_codes WHERE code = :code";
export function code(h: Handle, value: string): Promise<CodeView | undefined> {
  return storeOf(h).read("inspect.code", async (r) => {
    const c = await r.get<{
      code: string;
      owner: number;
      device_id: string | null;
      created_at: number;
      expires_at: number;
    }>(CODE, { code: value });
    if (!c) return undefined;
    const v: CodeView = {
      code: c.code,
      owner: await jidOf(r, Number(c.owner)),
      createdAt: Number(c.created_at),
      expiresAt: Number(c.expires_at),
    };
    if (c.device_id !== null) v.deviceId = c.device_id;
    return v;
  });
}

/** The old PushNode: the node's owner by JID and its device by client id. */
export interface PushNodeView {
  node: string;
  owner: BareJid;
  deviceId: string;
  secret: string;
  createdAt: number;
}
const PUSH_NODE = `SELECT n.node, n.secret, n.created_at, d.account_id, d.device_id
  FROM push_nodes n JOIN devices d ON d.id = n.device WHERE n.node = :node`;
export function pushNode(h: Handle, node: string): Promise<PushNodeView | undefined> {
  return storeOf(h).read("inspect.push-node", async (r) => {
    const n = await r.get<{
      node: string;
      secret: string;
      created_at: number;
      account_id: number;
      device_id: string;
    }>(PUSH_NODE, { node });
    if (!n) return undefined;
    return {
      node: n.node,
      owner: await jidOf(r, Number(n.account_id)),
      deviceId: n.device_id,
      secret: n.secret,
      createdAt: Number(n.created_at),
    };
  });
}
