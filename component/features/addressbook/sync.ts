/**
 * Reading a whole book under the stanza budget (PROTOCOL §20.6, §20.7): incremental sync with a token, the RSM
 * list, and the paged `.vcf` export.
 *
 * Sync token: the global seq, as for cards (`<sync/>`, §11). A page never silently ends inside a seq: when the
 * budget or `max` cuts between two entries of one seq (an import writes hundreds at one seq), the token is
 * `<seq>:<last id>` and the next page continues after that id. The order (seq, id) is total and seq order is
 * commit order, so no change is skipped or repeated.
 */
import { StanzaError, badRequest, quote } from "../../../stanzas/errors.js";
import type { Card } from "../../../stanzas/model/card.js";
import { NS } from "../../../stanzas/ns.js";
import { cardToVcf } from "../../../stanzas/vcf.js";
import { xml, type Element } from "../../../stanzas/xml.js";
import type { AccountId, Seq } from "../../../storage/store.js";
import type { BareJid } from "../../runtime/accounts/api.js";
import { measure, type StanzaBudget } from "../../runtime/budget.js";
import type { ReadContext } from "../../runtime/uow.js";
import type { Format } from "../cards/api.js";
import { bookRepo } from "./repo.js";
import { renderRow } from "./render.js";

/** Items per sync page at most (and the default), as card sync. */
export const BOOK_SYNC_PAGE = 200;
/** Cards per `.vcf` export page at most (the byte budget usually cuts first). */
export const EXPORT_PAGE = 500;

export interface Token {
  seq: Seq;
  /** The last id seen at `seq`; PAST_ALL when every entry at `seq` was seen (a plain seq token). */
  after: string;
}

/** Sorts after every entry id (32 hex digits) in any collation: a plain token has seen all of its seq. */
export const PAST_ALL = "g";

export function parseToken(v: string | undefined): Token {
  if (v === undefined || v === "") return { seq: 0, after: PAST_ALL };
  const m = /^(\d{1,16})(?::([0-9a-f]{32}))?$/.exec(v);
  const seq = m ? Number(m[1]) : NaN;
  if (!m || !Number.isSafeInteger(seq)) {
    throw badRequest(`'since' must be a token from an earlier answer (a seq, or seq:id), not '${quote(v)}'`);
  }
  return { seq, after: m[2] ?? PAST_ALL };
}

export interface BookSyncPage {
  token: string;
  more: boolean;
  reset: boolean;
  items: Element[];
}

export async function bookSyncPage(
  r: ReadContext,
  o: { user: BareJid; since: Token; max: number; format: Format; budget: StanzaBudget; domain: string },
): Promise<BookSyncPage> {
  const me = await r.accounts.resolve(o.user);
  if (me === undefined) return { token: String(o.since.seq), more: false, reset: false, items: [] };
  const repo = bookRepo(r.read);
  let since = o.since;
  // Tombstones older than the horizon were pruned: a client behind it may have missed a deletion.
  const reset = since.seq > 0 && since.seq < (await repo.horizon(me));
  if (reset) since = { seq: 0, after: PAST_ALL };
  const rows = await repo.changes(me, since.seq, since.after, o.max + 1);
  const page = o.budget.page(o.max);
  let taken = 0;
  for (const row of rows.slice(0, o.max)) {
    if (!page.add(await renderRow(r.accounts, o.domain, row, o.format))) break;
    taken++;
  }
  if (rows.length > 0 && taken === 0) {
    // An entry is at most card.maxBytes in any rendering, which the start-up check fits into one page.
    throw new StanzaError("resource-constraint", "an entry is too large to send; this was logged");
  }
  const more = taken < rows.length;
  const last = rows[taken - 1];
  let token = String(since.seq);
  if (last) {
    const next = rows[taken];
    token = more && next && next.seq === last.seq ? `${last.seq}:${last.id}` : String(last.seq);
  }
  return { token, more, reset, items: page.items };
}

export function bookSyncElement(s: BookSyncPage): Element {
  return xml(
    "book-sync",
    { xmlns: NS.BOOK, token: s.token, more: String(s.more), reset: s.reset ? "true" : undefined },
    ...s.items,
  );
}

/** Live entry ids of the user's book, in id order (the RSM list's uids). */
export async function entryIds(r: ReadContext, user: BareJid): Promise<{ me?: AccountId; ids: string[] }> {
  const me = await r.accounts.resolve(user);
  return me === undefined ? { ids: [] } : { me, ids: await bookRepo(r.read).listIds(me) };
}

/** UTF-8 bytes a text takes as XML character data. */
const textBytes = (s: string): number => measure(xml("c", {}, s)) - "<c></c>".length;

/**
 * One page of the book as `.vcf` text (vCard 4.0, one card after another), in entry id order after `after`, cut
 * by the budget. Concatenating the pages gives the whole book as one file.
 */
export async function exportPage(
  r: ReadContext,
  o: { user: BareJid; after: string; budget: StanzaBudget },
): Promise<Element> {
  const me = await r.accounts.resolve(o.user);
  const repo = bookRepo(r.read);
  const total = me === undefined ? 0 : (await repo.usage(me)).entries;
  const rows = me === undefined ? [] : await repo.page(me, o.after, EXPORT_PAGE + 1);
  const room = o.budget.listBudget;
  let bytes = 0;
  const parts: string[] = [];
  let last: string | undefined;
  for (const row of rows.slice(0, EXPORT_PAGE)) {
    const text = cardToVcf(row.card as Card);
    const n = textBytes(text);
    if (bytes + n > room) break;
    bytes += n;
    parts.push(text);
    last = row.id;
  }
  if (rows.length > 0 && parts.length === 0) {
    throw new StanzaError("resource-constraint", "an entry is too large to send; this was logged");
  }
  const more = parts.length < rows.length;
  return xml(
    "vcf-export",
    { xmlns: NS.BOOK, count: String(total), more: String(more), last },
    parts.join(""),
  );
}
