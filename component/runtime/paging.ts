/**
 * Paging of the per-user lists (<devices/>, <contacts/>, <exchange-requests/>, <blocklist/>) with XEP-0059
 * Result Set Management, cut by count and by the stanza budget. The order is the items' UIDs (plain string
 * order), so `after` continues where the last page ended even when items were added or removed in between.
 */
import { StanzaError } from "../../stanzas/errors.js";
import { parseRsmRequest, rsmSetElement } from "../../stanzas/rsm.js";
import type { Element } from "../../stanzas/xml.js";
import type { StanzaBudget } from "./budget.js";

/**
 * Items per page when the request has no <set/> or no <max/>: as many as MAX_PAGE_ITEMS, so a client that does not
 * page keeps getting the whole list whenever it fits in one stanza (what it got before paging existed); only the
 * byte budget, or a list longer than 1000, cuts it.
 */
export const DEFAULT_PAGE_ITEMS = 1000;
/** Most items one page carries whatever <max/> asks (the byte budget may cut earlier). */
export const MAX_PAGE_ITEMS = 1000;

export interface ListPage {
  items: Element[];
  /** The <set/> to append to the answer: always there, so a client without RSM can still see there is more. */
  set: Element;
}

/**
 * One page of `all` for the request `payload`. `uid` names an item (unique within the list); `render` builds
 * its element (called only for the items tried, so a page of a long list costs one page of rendering).
 */
export async function pageList<T>(
  payload: Element,
  all: readonly T[],
  uid: (t: T) => string,
  render: (t: T) => Element | Promise<Element>,
  budget: StanzaBudget,
): Promise<ListPage> {
  const req = parseRsmRequest(payload, DEFAULT_PAGE_ITEMS, MAX_PAGE_ITEMS);
  const keyed = all.map((t) => ({ t, uid: uid(t) }));
  keyed.sort((a, b) => (a.uid < b.uid ? -1 : a.uid > b.uid ? 1 : 0));
  const after = req.after;
  const start = after === undefined ? 0 : keyed.findIndex((k) => k.uid > after);
  const from = start === -1 ? keyed.length : start;
  const page = budget.page(req.max);
  const uids: string[] = [];
  for (let i = from; i < keyed.length && !page.full; i++) {
    const k = keyed[i] as (typeof keyed)[number];
    if (page.add(await render(k.t))) uids.push(k.uid);
  }
  if (uids.length === 0 && req.max > 0 && from < keyed.length) {
    // One item larger than a whole stanza: impossible for the lists cardlink keeps (each item is a few KiB at
    // most), so this is a bug; refusing is better than a page that can never advance.
    throw new StanzaError(
      "resource-constraint",
      "an item of this list is too large to send; this was logged",
    );
  }
  const first = uids[0];
  return {
    items: page.items,
    set: rsmSetElement({
      ...(first !== undefined ? { first: { uid: first, index: from } } : {}),
      ...(uids.length ? { last: uids[uids.length - 1] as string } : {}),
      count: keyed.length,
    }),
  };
}
