/**
 * The address-book feature module (issue 9, first part; docs/PROTOCOL.md §20): a server-side book of entries per
 * account in `urn:cardlink:book:0` — owner-only create/read/update/remove with optimistic concurrency, incremental
 * sync with a token, an RSM list, `.vcf` import and paged export, entries that follow a card the owner holds —
 * and the `book-entry` stream kind that brings every change to the owner's other resources and devices.
 * Migrations 3000–3009 are the book's. Update requests (the second part; PROTOCOL §20.11–§20.17, migrations
 * 3010–3099) live in this folder too (request-*.ts): an answer writes the entry through the book's own rules
 * (rewrite, caps, the linked/edited merge) in the same unit of work, which another feature could not reach.
 */
import { parseNonNegativeInt } from "../../../stanzas/cardlink.js";
import { StanzaError, badRequest } from "../../../stanzas/errors.js";
import { CardError, type Card, type CardLimits } from "../../../stanzas/model/card.js";
import { NS } from "../../../stanzas/ns.js";
import { cardsFromVcf } from "../../../stanzas/vcf.js";
import { childElements, xml, type Element } from "../../../stanzas/xml.js";
import type { FeatureModule, Runtime } from "../../runtime/context.js";
import { userJid } from "../../runtime/jid.js";
import { pageList } from "../../runtime/paging.js";
import { cardContent, checkRenderings, parseFormat } from "../cards/api.js";
import { entryCard } from "./entry-card.js";
import { detach } from "../../runtime/log.js";
import { requestCommands } from "./request-commands.js";
import { requestRepo } from "./request-repo.js";
import { requestKinds } from "./request-render.js";
import { attachRequestRoutes } from "./request-routes.js";
import { RequestService, hideBlocked } from "./request-service.js";
import { BOOK_MIGRATIONS } from "./migrations.js";
import { bookRepo } from "./repo.js";
import { bookChangedKind, entryAttrs, entryKind, renderRow } from "./render.js";
import {
  BookService,
  eraseBook,
  followCard,
  parseEntryId,
  relinkMoved,
  unlinkUnheld,
  type EntryWritten,
} from "./service.js";
import { BOOK_SYNC_PAGE, bookSyncElement, bookSyncPage, entryIds, exportPage, parseToken } from "./sync.js";

/** Per-card errors an import answer lists at most (the counts are always complete). */
export const IMPORT_ERRORS_LISTED = 100;

export { entryCard } from "./entry-card.js";

/** `link`: absent = unchanged, '' = unlink, a JID = follow that user's card. */
function parseLink(el: Element): string | null | undefined {
  const v = el.attrs.link as string | undefined;
  if (v === undefined) return undefined;
  if (v === "") return null;
  return userJid(v, "link");
}

/**
 * Parses a `.vcf` import, card by card: what can be stored, and what could not be read (index, line, why). Text
 * with no `BEGIN:VCARD` line at all is not a `.vcf` file: refused whole (`bad-request`), not answered as one
 * unreadable card.
 */
export function parseImport(
  text: string,
  limits: CardLimits,
): { cards: Card[]; errors: Array<{ index: number; line: number; error: string }> } {
  if (!/^[ \t]*BEGIN:VCARD[ \t]*\r?$/im.test(text)) throw badRequest("vcf: no BEGIN:VCARD found");
  const cards: Card[] = [];
  const errors: Array<{ index: number; line: number; error: string }> = [];
  let items: ReturnType<typeof cardsFromVcf>;
  try {
    items = cardsFromVcf(text, limits);
  } catch (e) {
    if (e instanceof CardError) throw badRequest(e.message);
    throw e;
  }
  for (const item of items) {
    if ("error" in item) {
      errors.push(item);
      continue;
    }
    try {
      checkRenderings(item.card, limits);
      cards.push(item.card);
    } catch (e) {
      if (!(e instanceof StanzaError)) throw e;
      errors.push({ index: item.index, line: item.line, error: e.message });
    }
  }
  return { cards, errors };
}

export function addressbookModule(): FeatureModule {
  // The component's domain names entries in their URIs; the kind is declared before attach gives the config.
  const site = { domain: "" };
  let sweeper: NodeJS.Timeout | undefined;
  return {
    name: "addressbook",
    migrations: BOOK_MIGRATIONS,
    kinds: [entryKind(site), bookChangedKind, ...requestKinds(site)],
    onAccountDeleting: async (u, e) => {
      await requestRepo(u.tx).erase(e.account);
      await eraseBook(u, e.account);
    },
    discoFeatures: () => [NS.BOOK, NS.BOOK_REQUEST],
    async stop() {
      clearInterval(sweeper);
    },
    attach(rt: Runtime): void {
      site.domain = rt.config.domain;
      const svc = new BookService({
        uow: rt.uow,
        read: rt.read,
        card: rt.config.card,
        book: rt.config.book,
        log: rt.log,
      });
      const ns = NS.BOOK;
      const domain = rt.config.domain;
      const written = (w: EntryWritten, linked?: string): Element =>
        xml("entry", { ...entryAttrs(domain, w.row, linked), changed: String(w.changed) });
      rt.events.onTx("card.updated", (u, e) =>
        followCard(u, e.owner, { card: rt.config.card, book: rt.config.book, log: rt.log }),
      );
      rt.events.onTx("binding.removed", (u, e) => unlinkUnheld(u, e.a, e.b));
      rt.events.onTx("exchange.blocked", (u, e) => hideBlocked(u, e.owner, e.blocked));

      const requests = new RequestService({
        uow: rt.uow,
        read: rt.read,
        domain,
        servedHosts: rt.config.servedHosts,
        card: rt.config.card,
        book: rt.config.book,
      });
      attachRequestRoutes(rt, requests);
      for (const cmd of requestCommands({ svc: requests, read: rt.read, budget: rt.budget, domain }))
        rt.adhoc.register(cmd);
      // Expiry: the sweep closes what passed its time and tells the requester; at least once a minute, and as
      // often as the configured lifetime when that is shorter (tests).
      sweeper = setInterval(
        () => detach(rt.log, "book-request-expire-failed", requests.expire()),
        Math.min(60_000, rt.config.book.requestTtlSeconds * 1000),
      );
      sweeper.unref();
      // A JID move (issue 12, PROTOCOL §23.5): entries following the moved card re-render their link.
      rt.events.onTx("identifier.changed", (u, e) =>
        e.kind === "jid" && e.from !== undefined && e.to !== "" ? relinkMoved(u, e.account) : undefined,
      );

      rt.router.iq("set", ns, "entry", async (c) => {
        const card = entryCard(c.payload, rt.config.card);
        const link = parseLink(c.payload);
        const id = c.payload.attrs.id as string | undefined;
        if (id === undefined) {
          if (c.payload.attrs.version !== undefined) throw badRequest("a new entry has no 'version'");
          if (link === null) throw badRequest("a new entry cannot unlink: leave 'link' out");
          const w = await svc.create(c.user, { ...(card ? { card } : {}), ...(link ? { link } : {}) });
          return written(w, link ?? undefined);
        }
        const entry = parseEntryId(id);
        const version = parseNonNegativeInt(c.payload.attrs.version, "version");
        if (version === undefined) throw badRequest("'version' is required: the version you edited");
        const w = await svc.update(c.user, entry, version, {
          ...(card ? { card } : {}),
          ...(link !== undefined ? { link } : {}),
        });
        const linked =
          w.row.linkedOwner === undefined ? undefined : await rt.accounts.jidOf(w.row.linkedOwner);
        return written(w, linked);
      });
      rt.router.iq("get", ns, "entry", async (c) => {
        const format = parseFormat(c.payload.attrs.format);
        const { row, linked } = await svc.get(c.user, parseEntryId(c.payload.attrs.id));
        return xml("entry", entryAttrs(domain, row, linked), cardContent(row.card, format));
      });
      rt.router.iq("set", ns, "remove-entry", async (c) => {
        const version = parseNonNegativeInt(c.payload.attrs.version, "version");
        await svc.remove(c.user, parseEntryId(c.payload.attrs.id), version);
      });
      rt.router.iq("get", ns, "entries", async (c) => {
        const format = parseFormat(c.payload.attrs.format);
        return rt.read("book.list", async (r) => {
          const { ids } = await entryIds(r, c.user);
          const repo = bookRepo(r.read);
          const page = await pageList(
            c.payload,
            ids,
            (id) => id,
            async (id) => renderRow(r.accounts, domain, (await repo.get(id))!, format),
            rt.budget,
          );
          return xml("entries", { xmlns: ns }, ...page.items, page.set);
        });
      });
      rt.router.iq("get", ns, "book-sync", async (c) => {
        const since = parseToken(c.payload.attrs.since);
        const max =
          Math.min(
            parseNonNegativeInt(c.payload.attrs.max, "max", 10_000) ?? BOOK_SYNC_PAGE,
            BOOK_SYNC_PAGE,
          ) || BOOK_SYNC_PAGE;
        const format = parseFormat(c.payload.attrs.format);
        const page = await rt.read("book.sync", (r) =>
          bookSyncPage(r, { user: c.user, since, max, format, budget: rt.budget, domain }),
        );
        return bookSyncElement(page);
      });
      rt.router.iq("get", ns, "vcf-export", async (c) => {
        const after = c.payload.attrs.after as string | undefined;
        return rt.read("book.export", (r) =>
          exportPage(r, {
            user: c.user,
            after: after === undefined ? "" : parseEntryId(after),
            budget: rt.budget,
          }),
        );
      });
      rt.router.iq("set", ns, "vcf-import", async (c) => {
        if (childElements(c.payload).length > 0)
          throw badRequest("<vcf-import/> carries .vcf text, not elements");
        const parsed = parseImport(c.payload.getText(), rt.config.card);
        const r = await svc.importCards(c.user, parsed.cards);
        rt.log.info(
          { event: "book-imported", user: c.user, imported: r.ids.length, failed: parsed.errors.length },
          "vcf imported",
        );
        return xml(
          "vcf-import",
          {
            xmlns: ns,
            imported: String(r.ids.length),
            failed: String(parsed.errors.length),
          },
          ...parsed.errors
            .slice(0, IMPORT_ERRORS_LISTED)
            .map((e) => xml("error", { index: String(e.index), line: String(e.line) }, e.error)),
        );
      });
    },
  };
}
