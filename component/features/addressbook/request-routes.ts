/**
 * The update requests' IQ routes (PROTOCOL §20.11–§20.17, namespace urn:cardlink:book:request:0). Parsing happens
 * here, outside any unit of work; every rule is request-service.ts.
 */
import { parseNonNegativeInt, requireAttr } from "../../../stanzas/cardlink.js";
import { badRequest, quote } from "../../../stanzas/errors.js";
import { NS } from "../../../stanzas/ns.js";
import { parseRequestForm, requestElement } from "../../../stanzas/update-request.js";
import { xml } from "../../../stanzas/xml.js";
import type { Runtime } from "../../runtime/context.js";
import { pageList } from "../../runtime/paging.js";
import { cardContent } from "../cards/api.js";
import { entryCard } from "./entry-card.js";
import { incomingElement } from "./request-render.js";
import type { RequestService } from "./request-service.js";
import { entryUri, parseEntryId } from "./service.js";

/** The RSM uid of a listed request: expiry order (= creation order: one ttl), the id breaking ties. */
const uid = (r: { expiresAt: number; id: string }): string =>
  `${String(r.expiresAt).padStart(16, "0")}-${r.id}`;

/** The entry id of an entry's address (`xmpp:<component>?cardlink;entry=<id>`, §20.1), or of a bare id. */
export function parseEntryAddress(domain: string, v: string | undefined): string {
  if (v === undefined) throw badRequest("'uri' is required: the entry's address from the notice");
  const prefix = `xmpp:${domain}?cardlink;entry=`;
  if (!v.startsWith(prefix)) throw badRequest(`'${quote(v)}' is not an entry address of ${domain}`);
  return parseEntryId(v.slice(prefix.length));
}

export function attachRequestRoutes(rt: Runtime, svc: RequestService): void {
  const ns = NS.BOOK_REQUEST;
  const domain = rt.config.domain;
  const r = rt.router;
  r.iq("set", ns, "update-request", async (c) => {
    const entry = parseEntryId(requireAttr(c.payload, "entry"));
    const form = parseRequestForm(c.payload.attrs.form);
    const jid = c.payload.attrs.jid as string | undefined;
    const made = await svc.create(c.user, entry, jid === "" ? undefined : jid, form);
    rt.log.info(
      { event: "book-request", user: c.user, to: made.to, id: made.id, form },
      "update request sent",
    );
    return requestElement({ id: made.id, entry, to: made.to, form, expires: made.expiresAt });
  });
  r.iq("get", ns, "update-requests", async (c) => {
    const direction = c.payload.attrs.direction ?? "incoming";
    if (direction === "incoming") {
      const page = await pageList(c.payload, await svc.incoming(c.user), uid, incomingElement, rt.budget);
      return xml("update-requests", { xmlns: ns, direction }, ...page.items, page.set);
    }
    if (direction !== "outgoing")
      throw badRequest(`direction must be incoming or outgoing, not '${quote(direction)}'`);
    const page = await pageList(
      c.payload,
      await svc.outgoing(c.user),
      uid,
      (q) => requestElement({ id: q.id, entry: q.entry, to: q.to, form: q.form, expires: q.expiresAt }),
      rt.budget,
    );
    return xml("update-requests", { xmlns: ns, direction }, ...page.items, page.set);
  });
  r.iq("get", ns, "pick-form", async (c) => {
    const id = requireAttr(c.payload, "id");
    return xml("pick-form", { xmlns: ns, id }, await svc.pickForm(c.user, id));
  });
  r.iq("get", ns, "requested-entry", async (c) => {
    const entry = parseEntryAddress(domain, c.payload.attrs.uri);
    const { req, row } = await svc.requestedEntry(c.user, entry);
    // The card and its version only: nothing of the owner's book (no link, no edited fields).
    return xml(
      "requested-entry",
      { xmlns: ns, request: req.id, uri: entryUri(domain, entry), version: String(row.version) },
      cardContent(row.card, "vcard4"),
    );
  });
  r.iq("set", ns, "answer", async (c) => {
    const id = requireAttr(c.payload, "id");
    const form = c.payload.getChild("x", NS.DATA);
    let res;
    if (form) res = await svc.answer(c.user, id, { form });
    else {
      const card = entryCard(c.payload, rt.config.card);
      if (!card) throw badRequest("an answer carries a submitted form (jabber:x:data) or a card");
      const version = parseNonNegativeInt(c.payload.attrs.version, "version");
      res = await svc.answer(c.user, id, { card, ...(version === undefined ? {} : { version }) });
    }
    rt.log.info(
      { event: "book-request-answered", user: c.user, id, changed: res.changed },
      "update answered",
    );
    return xml("answer", { xmlns: ns, id, changed: String(res.changed) });
  });
  r.iq("set", ns, "decline", async (c) => {
    const id = requireAttr(c.payload, "id");
    await svc.decline(c.user, id);
    rt.log.info({ event: "book-request-declined", user: c.user, id }, "update request declined");
  });
}
