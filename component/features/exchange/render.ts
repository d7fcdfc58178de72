/**
 * What the exchange feature puts on the wire: the four stream kinds' renderers (run at delivery, outside any
 * unit of work, reading current state: §2.3.2) and the IQ result elements. Byte-identical to component/exchange.ts
 * (checked by test/unit/features-exchange.test.ts against the old renderers); the difference is only where the
 * JIDs come from: rows hold account ids, the accounts part turns them into current JIDs here.
 */
import { bindingElement } from "../../../stanzas/cardlink.js";
import { NS } from "../../../stanzas/ns.js";
import { xml, type Element } from "../../../stanzas/xml.js";
import type { AccountId } from "../../../storage/store.js";
import type { AccountsRead, BareJid } from "../../runtime/accounts/api.js";
import type { PendingEntry, RenderContext, StreamKind } from "../../runtime/queue/api.js";
import { exchangeRepo, type BindingRow, type RequestRow } from "./repo.js";

export const KIND_BINDING = "binding";
export const KIND_UNBOUND = "unbound";
export const KIND_REQUEST = "exchange-request";
export const KIND_DECLINED = "exchange-declined";

/** The binding as `me` sees it: the same element for both sides but for `peer`. */
export async function bindingFor(accounts: AccountsRead, b: BindingRow, me: AccountId): Promise<Element> {
  return bindingWith(await accounts.jidsOf([b.a, b.b]), b, me);
}

/** The binding as `me` sees it, with the JIDs of both sides already read (a list reads them all at once). */
export function bindingWith(jids: ReadonlyMap<AccountId, BareJid>, b: BindingRow, me: AccountId): Element {
  const jid = (id: AccountId): BareJid => {
    const j = jids.get(id);
    if (j === undefined) throw new Error(`exchange: account ${id} of binding ${b.id} has no JID`);
    return j;
  };
  return bindingElement({
    id: b.id,
    peer: jid(b.a === me ? b.b : b.a),
    createdAt: b.createdAt,
    via: b.via,
    devices: [
      { jid: jid(b.a), ids: b.aDevices },
      { jid: jid(b.b), ids: b.bDevices },
    ],
  });
}

/** The `exchange-request` element of a delivered notice and of the incoming list (`from`). */
export const requestNotice = (r: RequestRow, from: BareJid): Element =>
  xml("exchange-request", {
    xmlns: NS.CARDLINK,
    id: r.id,
    from,
    expires: new Date(r.expiresAt).toISOString(),
  });

/** The body of an `exchange-declined` payload: account ids, never JIDs (§2.3.2). */
export interface DeclinedBody {
  id: string;
  by: number;
}

const isDeclined = (p: unknown): p is DeclinedBody =>
  typeof p === "object" &&
  p !== null &&
  typeof (p as DeclinedBody).id === "string" &&
  typeof (p as DeclinedBody).by === "number";

/** Subject = binding id; moot once the binding is gone or when the lane is not one of its sides. */
async function renderBinding(r: RenderContext, e: PendingEntry): Promise<Element | null> {
  const b = await exchangeRepo(r.read).bindingById(e.subject);
  if (!b || (b.a !== e.lane && b.b !== e.lane)) return null;
  return bindingFor(r.accounts, b, e.lane);
}

/** Subject = request id; moot once answered, withdrawn, blocked or expired. */
async function renderRequest(r: RenderContext, e: PendingEntry): Promise<Element | null> {
  const req = await exchangeRepo(r.read).request(e.subject);
  if (!req || req.expiresAt <= r.read.now) return null;
  return requestNotice(req, await r.accounts.jidOf(req.from));
}

/** Subject = request id; the payload says who declined (attribute order id, by: as the old JSON payload). */
async function renderDeclined(r: RenderContext, e: PendingEntry): Promise<Element | null> {
  if (!isDeclined(e.payload)) return null;
  return xml("exchange-declined", {
    xmlns: NS.CARDLINK,
    id: e.payload.id,
    by: await r.accounts.jidOf(e.payload.by as AccountId),
  });
}

/** Subject = the former peer's account: its current JID. */
async function renderUnbound(r: RenderContext, e: PendingEntry): Promise<Element | null> {
  if (e.subjectAccount === undefined) return null;
  return xml("unbound", { xmlns: NS.CARDLINK, peer: await r.accounts.jidOf(e.subjectAccount) });
}

/** The four kinds (§2.3.2): all `replace`, today's (recipient, kind, subject) rule; all wake offline devices. */
export const EXCHANGE_KINDS: readonly StreamKind[] = [
  { name: KIND_BINDING, coalesce: "replace", subject: "entity", wake: true, render: renderBinding },
  { name: KIND_UNBOUND, coalesce: "replace", subject: "account", wake: true, render: renderUnbound },
  { name: KIND_REQUEST, coalesce: "replace", subject: "entity", wake: true, render: renderRequest },
  { name: KIND_DECLINED, coalesce: "replace", subject: "entity", wake: true, render: renderDeclined },
];
