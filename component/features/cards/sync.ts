/**
 * Pull sync (docs/REDESIGN.md §1.2 features/cards/sync.ts; PROTOCOL.md `<sync/>`): one page of the holder's
 * changes — owners whose card, path or view changed after `since` and owners who left sight (tombstones) — from
 * the audience's composed sync query over every path, rendered through each owner's current view of the card,
 * and cut where the next item would not fit in the stanza budget (or at `max`), as component/cards.ts does.
 *
 * One seq may name several owners (a group join opens many pairs at one seq), so a page never ends inside a seq:
 * a budget cut falling there retreats to the previous seq. The token of a cut page is the seq of its last item;
 * a page holding everything up to now gets the store's newest seq.
 */
import { StanzaError } from "../../../stanzas/errors.js";
import { NS } from "../../../stanzas/ns.js";
import { xml, type Element } from "../../../stanzas/xml.js";
import type { AccountId, Seq } from "../../../storage/store.js";
import type { BareJid } from "../../runtime/accounts/api.js";
import type { StanzaBudget } from "../../runtime/budget.js";
import type { Logger } from "../../runtime/log.js";
import type { ReadContext, Reader } from "../../runtime/uow.js";
import type { SharePolicy } from "../../../stanzas/model/policy.js";
import { cardsRepo, VERSIONS_CHUNK, type StoredCard } from "./repo.js";
import { cardFor, type Format } from "./render.js";

/** Items per page at most (and the default), as today. */
export const SYNC_PAGE = 200;

/** Account ids start at 1: an unknown holder reads the pages of id 0, which sees nothing (and gets the token). */
const NOBODY = 0 as AccountId;

export interface SyncResult {
  token: Seq;
  more: boolean;
  items: Element[];
}

export async function syncPage(
  r: ReadContext,
  o: { user: BareJid; since: Seq; max: number; format: Format; budget: StanzaBudget; log?: Logger },
): Promise<SyncResult> {
  const holder = (await r.accounts.resolve(o.user)) ?? NOBODY;
  const pg = await r.audience.syncPage(holder, o.since, o.max);
  const owners = [...new Set(pg.changes.map((c) => c.owner))];
  const jids = await r.accounts.jidsOf(owners);
  // The page's cards and policies in one statement each per 500 owners, not two per card: on PostgreSQL every
  // statement is a round trip (bench/queries.ts counts a sync page's statements).
  const shown = [...new Set(pg.changes.filter((c) => !c.removed).map((c) => c.owner))];
  const cards = new Map<AccountId, StoredCard>();
  const policiesOf = new Map<AccountId, Array<SharePolicy | null>>();
  for (let i = 0; i < shown.length; i += VERSIONS_CHUNK) {
    const chunk = shown.slice(i, i + VERSIONS_CHUNK);
    for (const [k, v] of await cardsRepo(r.read).getMany(chunk)) cards.set(k, v);
    for (const [k, v] of await r.audience.policiesOf(chunk, holder)) policiesOf.set(k, v);
  }
  // A seq that names more owners than `max` (a group join) comes back whole from the audience (a page never ends
  // inside a seq): `max` bounds what the query reads, the byte budget still bounds what is sent.
  const page = o.budget.page(Math.max(o.max, pg.changes.length));
  const items: Array<{ el: Element; seq: Seq }> = [];
  let cutAt: Seq | undefined;
  for (const c of pg.changes) {
    const owner = jids.get(c.owner);
    if (owner === undefined) continue; // no JID left (a deleted owner's tombstone): nothing to name
    let el: Element;
    if (c.removed) el = xml("removed", { owner });
    else {
      const stored = cards.get(c.owner);
      const policies = policiesOf.get(c.owner) ?? [];
      if (!stored || policies.length === 0) continue; // the composed query joins both: unreachable in one snapshot
      el = cardFor(stored, owner, policies, o.format);
    }
    if (!page.add(el)) {
      cutAt = c.seq;
      break;
    }
    items.push({ el, seq: c.seq });
  }
  if (cutAt === undefined) return { token: pg.token, more: pg.more, items: items.map((i) => i.el) };
  const kept = items.filter((i) => i.seq < (cutAt as Seq));
  const last = kept[kept.length - 1];
  if (!last) {
    // One seq's items do not fit in one page. A single card cannot get here (card.maxBytes is checked against
    // the budget at start-up and every rendering at store time); refusing beats a page that never advances.
    o.log?.error({ event: "sync-item-over-budget", holder: o.user, seq: cutAt });
    throw new StanzaError("resource-constraint", "a change is too large to send; this was logged");
  }
  return { token: last.seq, more: true, items: kept.map((i) => i.el) };
}

export function syncElement(s: SyncResult): Element {
  return xml("sync", { xmlns: NS.CARDLINK, token: String(s.token), more: String(s.more) }, ...s.items);
}

export async function sync(
  rt: { read: Reader; budget: StanzaBudget; log?: Logger },
  o: { user: BareJid; since: Seq; max: number; format: Format },
): Promise<Element> {
  const s = await rt.read("card.sync", (r) => syncPage(r, { ...o, budget: rt.budget, log: rt.log }));
  return syncElement(s);
}
