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
import type { AccountId } from "../../storage/store.js";
import { STREAM_DEPTH_SQL } from "../../component/runtime/runtime.js";
import { PUSH_DEPTH_SQL as CORE_PUSH_DEPTH_SQL } from "../../component/features/push/index.js";
import { PUSH_DEPTH_SQL } from "../../storage/sqlite/push.js";
import { OUTBOX_DEPTH_SQL } from "../../storage/sqlite/repos.js";
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

// ---- metrics and storage

/** Old `store.cards.get(jid)` with its StoredCard shape typed (`card` above answers unknown). */
export async function storedCard(
  app: App,
  jid: BareJid,
): Promise<{ version: number; hash: string; seq: number; updatedAt: number } | undefined> {
  return (await isCore(app)) ? inspect.card(app, jid) : app.ctx.store.cards.get(jid);
}

/** A queue gauge's one statement and the plan EXPLAIN QUERY PLAN must give for it on this core. */
export interface GaugeQuery {
  sql: string;
  plan: string[];
}

/**
 * The queue gauges' statements (old `OUTBOX_DEPTH_SQL`, `PUSH_DEPTH_SQL`) with the plans that mean "one scan of a
 * covering index each, in group order: no table rows, no USE TEMP B-TREE FOR GROUP BY". On the new core the
 * outbox is stream_entries (one covering scan of stream_kind, as outbox_kind); the push queue is the `push`
 * channel's jobs, grouped per device on the covering index jobs_device, with each waiting device's platform read
 * by its primary key (jobs carry no platform; a probe per device, never per notice). "SCAN j" there is the
 * co-routine's rows, not a table.
 */
export async function gaugeQueries(app: App): Promise<{ outbox: GaugeQuery; push: GaugeQuery }> {
  if (await isCore(app))
    return {
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
    };
  return {
    outbox: { sql: OUTBOX_DEPTH_SQL, plan: ["SCAN outbox USING COVERING INDEX outbox_kind"] },
    push: { sql: PUSH_DEPTH_SQL, plan: ["SCAN push_queue USING COVERING INDEX push_queue_platform"] },
  };
}
