/**
 * XEP-0059 Result Set Management (https://xmpp.org/extensions/xep-0059.html, 1.0). Pure parser and builder.
 *
 * cardlink pages forward only: a request may carry <max/> and <after/>; <before/> and <index/> (backward and
 * random-access paging) are refused with feature-not-implemented. `after` is compared by order, not looked up,
 * so an item deleted between two pages does not break the walk.
 */
import { StanzaError, badRequest } from "./errors.js";
import { NS } from "./ns.js";
import { xml, type Element } from "./xml.js";

export interface RsmRequest {
  /** Items wanted; 0 asks for the count only (XEP-0059 §2.7). */
  max: number;
  /** Continue after this item UID (the <last/> of the previous page). */
  after?: string;
}

export interface RsmResult {
  /** UID of the first item in this page and its position in the whole set; absent for an empty page. */
  first?: { uid: string; index: number };
  last?: string;
  count: number;
}

/** Longest UID cardlink accepts in <after/> (UIDs it hands out are JIDs or ids, at most 3071 bytes). */
export const MAX_UID_BYTES = 4096;

/**
 * Reads the <set/> inside a request payload. No <set/>: the default page (`defaultMax` items). `max` above
 * `maxMax` is lowered to it (XEP-0059 lets the responder return fewer items than asked).
 */
export function parseRsmRequest(payload: Element, defaultMax: number, maxMax: number): RsmRequest {
  const set = payload.getChild("set", NS.RSM);
  if (!set) return { max: defaultMax };
  if (set.getChild("before") || set.getChild("index")) {
    throw new StanzaError(
      "feature-not-implemented",
      "cardlink pages forward only: use <max/> and <after/> (the <last/> of the previous page)",
    );
  }
  const maxText = set.getChildText("max");
  let max = defaultMax;
  if (maxText !== null) {
    const t = maxText.trim();
    if (!/^\d{1,9}$/.test(t)) throw badRequest("<max/> in <set/> must be a whole number");
    max = Math.min(Number(t), maxMax);
  }
  const afterEl = set.getChild("after");
  if (!afterEl) return { max };
  const after = afterEl.getText();
  if (after === "") throw badRequest("<after/> in <set/> must name the last item of the previous page");
  if (Buffer.byteLength(after) > MAX_UID_BYTES)
    throw badRequest(`<after/> in <set/> is longer than ${MAX_UID_BYTES} bytes`);
  return { max, after };
}

/** The <set/> a responder appends to a (possibly partial) page. */
export function rsmSetElement(r: RsmResult): Element {
  return xml(
    "set",
    { xmlns: NS.RSM },
    r.first ? xml("first", { index: String(r.first.index) }, r.first.uid) : null,
    r.last !== undefined ? xml("last", {}, r.last) : null,
    xml("count", {}, String(r.count)),
  );
}

/** Reads a responder's <set/> (for clients and tests); undefined when absent. */
export function parseRsmResult(payload: Element): RsmResult | undefined {
  const set = payload.getChild("set", NS.RSM);
  if (!set) return undefined;
  const first = set.getChild("first");
  const last = set.getChildText("last");
  const count = Number(set.getChildText("count") ?? "NaN");
  if (!Number.isInteger(count) || count < 0) throw badRequest("<set/> has no valid <count/>");
  return {
    ...(first ? { first: { uid: first.getText(), index: Number(first.attrs.index ?? "0") } } : {}),
    ...(last !== null ? { last } : {}),
    count,
  };
}
