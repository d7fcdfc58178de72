/**
 * What the address book puts on the wire (PROTOCOL §20): the `<entry/>` element, `<removed/>`, and the
 * `book-entry` stream kind: one entry per changed book entry on its owner's lane, coalesced to the newest change
 * (`replace`, subject = entry id), rendered at delivery from the current row.
 */
import { NS } from "../../../stanzas/ns.js";
import { xml, type Element } from "../../../stanzas/xml.js";
import type { AccountsRead, BareJid } from "../../runtime/accounts/api.js";
import type { PendingEntry, RenderContext, StreamKind } from "../../runtime/queue/api.js";
import { cardContent, type Format } from "../cards/api.js";
import { bookRepo, type EntryRow } from "./repo.js";
import { KIND_CHANGED, KIND_ENTRY, entryUri } from "./service.js";

/** The entry's attributes (the answer to a write carries these only). */
export function entryAttrs(
  domain: string,
  row: EntryRow,
  linked?: BareJid,
): Record<string, string | undefined> {
  return {
    xmlns: NS.BOOK,
    id: row.id,
    uri: entryUri(domain, row.id),
    version: String(row.version),
    hash: row.hash,
    linked,
    edited: linked !== undefined && row.edited.length > 0 ? row.edited.join(" ") : undefined,
  };
}

export function entryElement(domain: string, row: EntryRow, format: Format, linked?: BareJid): Element {
  return xml("entry", entryAttrs(domain, row, linked), row.card ? cardContent(row.card, format) : null);
}

export const removedElement = (id: string): Element => xml("removed", { xmlns: NS.BOOK, id });

/** An entry or a tombstone as sync and delivery send it. */
export async function renderRow(
  accounts: AccountsRead,
  domain: string,
  row: EntryRow,
  format: Format,
): Promise<Element> {
  if (!row.card) return removedElement(row.id);
  const linked = row.linkedOwner === undefined ? undefined : await accounts.jidOf(row.linkedOwner);
  return entryElement(domain, row, format, linked);
}

/**
 * `book-entry` (wake: false — see DECISIONS.md: the owner made the change themselves on another device, or a
 * followed card changed, and that card's own `card` entry already wakes them in the same seq). A row of another
 * lane is moot; a row gone or deleted renders `<removed/>`.
 */
export function entryKind(site: { readonly domain: string }): StreamKind {
  return {
    name: KIND_ENTRY,
    coalesce: "replace",
    subject: "entity",
    wake: false,
    async render(r: RenderContext, e: PendingEntry): Promise<Element | null> {
      const row = await bookRepo(r.read).get(e.subject);
      if (row && row.owner !== e.lane) return null;
      if (!row) return removedElement(e.subject);
      return renderRow(r.accounts, site.domain, row, "vcard4");
    },
  };
}

/**
 * `book-changed` (replace, wake: false): many entries of the owner's book changed at once (a `.vcf` import); the
 * owner's resources catch up with `<book-sync/>` from their token (PROTOCOL §20.9). Carries no entries.
 */
export const bookChangedKind: StreamKind = {
  name: KIND_CHANGED,
  coalesce: "replace",
  subject: "entity",
  wake: false,
  render: async () => xml("book-changed", { xmlns: NS.BOOK }),
};
