/**
 * The outgoing stanza budget. Prosody closes the component stream — for every user at once — when cardlink sends
 * a stanza larger than `component_stanza_size_limit` (ejabberd: the service listener's `max_stanza_size`). So
 * every stanza cardlink builds from user data is built against one byte budget derived from that limit
 * (config `link.stanzaLimitBytes`), computed here and nowhere else: lists, sync pages and <updates/> batches are
 * cut with a Page, and the send path refuses (and logs) anything over the limit as a last guard.
 */
import type { Element } from "../../stanzas/xml.js";

/**
 * Bytes kept for the stanza around a payload: `<iq type='result' id='…' to='…' from='…'>…</iq>`. `to` is a full
 * JID (at most 3071 bytes; its resource may need XML escaping, up to 6 bytes per character: ~8.2 KiB worst case),
 * `id` is echoed from the request (the router refuses ids over MAX_IQ_ID_BYTES: at most 6 KiB escaped), `from` is
 * cardlink's own domain.
 */
export const ENVELOPE_RESERVE = 16 * 1024;
/** Longest IQ id the router accepts; the envelope reserve is sized for it. */
export const MAX_IQ_ID_BYTES = 1024;
/**
 * Bytes kept for the wrapper of one card in a list: `<update id='card:OWNER:SEQ' kind='card' seq='…'>` around
 * `<card xmlns='urn:cardlink:0' owner='…' version='…' hash='…'>`; OWNER is a bare JID (at most 2047 bytes, no
 * characters that need escaping), named twice.
 */
export const ITEM_RESERVE = 8 * 1024;
/** Bytes kept for a list's own element and its paging marks (<sync token more>, <set/> with first/last/count). */
export const LIST_RESERVE = 8 * 1024;

export const LINK_LIMIT_MIN = 16 * 1024;
export const LINK_LIMIT_MAX = 16 * 1024 * 1024;

/** Serialized size in bytes (UTF-8), as it goes on the wire. */
export function measure(el: Element | string): number {
  return Buffer.byteLength(typeof el === "string" ? el : el.toString(), "utf8");
}

export class StanzaBudget {
  /** The link's limit: no stanza cardlink writes may be larger. */
  readonly limitBytes: number;
  /** Largest payload (the one child of <iq>, or of <message>) that fits in any envelope. */
  readonly payloadBudget: number;
  /** Largest list items may total: the payload budget less the list's own wrapper and paging marks. */
  readonly listBudget: number;

  constructor(limitBytes: number) {
    if (!Number.isInteger(limitBytes) || limitBytes < LINK_LIMIT_MIN)
      throw new RangeError(`stanza limit must be at least ${LINK_LIMIT_MIN} bytes`);
    this.limitBytes = limitBytes;
    this.payloadBudget = limitBytes - ENVELOPE_RESERVE;
    this.listBudget = this.payloadBudget - LIST_RESERVE;
  }

  measure(el: Element | string): number {
    return measure(el);
  }

  /** True if a payload of `bytes` fits in any envelope. */
  fits(bytes: number): boolean {
    return bytes <= this.payloadBudget;
  }

  /** True if a whole stanza of `bytes` may be written to the link. */
  allows(bytes: number): boolean {
    return bytes <= this.limitBytes;
  }

  /** Largest card (in any rendering) one list item can carry. */
  get maxCardBytes(): number {
    return this.listBudget - ITEM_RESERVE;
  }

  /** A page of at most `maxItems` items whose serializations total at most the list budget. */
  page(maxItems: number): Page {
    return new Page(this.listBudget, maxItems);
  }
}

/**
 * Collects items in order while they fit. The first item that does not fit (by size or by count) closes the
 * page: later items are not tried, so a page is always a prefix of the ordered list and a continuation token
 * (the last included item) loses nothing.
 */
export class Page {
  readonly items: Element[] = [];
  bytes = 0;
  /** Set once an item was refused: there is more than this page holds. */
  full = false;

  constructor(
    readonly budgetBytes: number,
    readonly maxItems: number,
  ) {}

  /** Adds `el` if it fits (measured here, or `bytes` if the caller measured it); false closes the page. */
  add(el: Element, bytes = measure(el)): boolean {
    if (this.full) return false;
    if (this.items.length >= this.maxItems || this.bytes + bytes > this.budgetBytes) {
      this.full = true;
      return false;
    }
    this.items.push(el);
    this.bytes += bytes;
    return true;
  }
}
