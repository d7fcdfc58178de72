/**
 * Cards' domain rules (docs/REDESIGN.md §3.2, §4.1): parse and validate a submitted card outside any unit of
 * work, then store it in one ("card.set"): an unchanged card takes no seq and notifies nobody; a change bumps
 * the version, appends one `card` entry to every holder's lane (every audience path, one statement) and emits
 * `card.updated` in the same transaction, so the change and its notifications commit together.
 */
import { CardError, cardHash, formatSize, type Card, type CardLimits } from "../../../stanzas/model/card.js";
import { StanzaError, badRequest, notFound, quote } from "../../../stanzas/errors.js";
import { NS } from "../../../stanzas/ns.js";
import { cardFromVCardTemp } from "../../../stanzas/vcard-temp.js";
import { parseVCard4, serializeVCard4 } from "../../../stanzas/vcard4.js";
import { cardFromVcf } from "../../../stanzas/vcf.js";
import { childElements, type Element } from "../../../stanzas/xml.js";
import type { AccountId } from "../../../storage/store.js";
import type { BareJid } from "../../runtime/accounts/api.js";
import type { ReadContext, Reader, Uow } from "../../runtime/uow.js";
import { cardsRepo } from "./repo.js";
import { FORMATS, cardFor, renderedBytes, type Format } from "./render.js";

export function parseFormat(v: string | undefined): Format {
  const f = v ?? "vcard4";
  if (f !== "vcard4" && f !== "vcard-temp" && f !== "vcf")
    throw badRequest(`format must be vcard4, vcard-temp or vcf, not '${quote(f)}'`);
  return f;
}

/** Parses a submitted <card/> in any accepted format; CardError becomes bad-request with its message. */
export function parseSubmitted(el: Element, limits: CardLimits): Card {
  const format = parseFormat(el.attrs.format);
  try {
    if (format === "vcf") {
      const text = el.getText();
      if (Buffer.byteLength(text) > limits.maxBytes) {
        throw new CardError(`vcf: card is ${Buffer.byteLength(text)} bytes, limit ${limits.maxBytes}`);
      }
      return cardFromVcf(text, limits);
    }
    const kids = childElements(el);
    const want = format === "vcard-temp" ? ["vCard", NS.VCARD_TEMP] : ["vcard", NS.VCARD4];
    const card = kids.find((k) => k.name === want[0] && k.getNS() === want[1]);
    if (!card || kids.length !== 1)
      throw new CardError(`<card format='${format}'> must hold exactly one <${want[0]} xmlns='${want[1]}'/>`);
    return format === "vcard-temp" ? cardFromVCardTemp(card, limits) : parseVCard4(card, limits);
  } catch (e) {
    if (e instanceof CardError) throw badRequest(e.message);
    throw e;
  }
}

/** A card built by other means (the ad-hoc form) goes through the vCard4 parser: the same rules and messages. */
export function validateCard(card: Card, limits: CardLimits): Card {
  try {
    return parseVCard4(serializeVCard4(card), limits);
  } catch (e) {
    if (e instanceof CardError) throw badRequest(e.message);
    throw e;
  }
}

/**
 * card.maxBytes bounds every rendering (formats differ in size), measured before anything is written: this is
 * what lets the start-up check guarantee that any stored card fits in one stanza. A policy only removes fields.
 */
export function checkRenderings(card: Card, limits: CardLimits): void {
  for (const format of FORMATS) {
    const bytes = renderedBytes(card, format);
    if (bytes > limits.maxBytes) {
      throw badRequest(
        `${format}: card is ${formatSize(bytes)} in that format, limit ${formatSize(limits.maxBytes)}`,
      );
    }
  }
}

export interface CardStored {
  owner: AccountId;
  changed: boolean;
  version: number;
  hash: string;
  /** Lanes that got a `card` entry (empty when unchanged). */
  holders: AccountId[];
}

/** Stores a checked card for `user` (§3.2). The caller has parsed and checked it: no lock is held for that. */
export async function storeCard(rt: { uow: Uow }, user: BareJid, card: Card): Promise<CardStored> {
  const hash = cardHash(card);
  return rt.uow("card.set", async (u) => {
    const me = await u.accounts.ensure(user, { seen: true });
    const cards = cardsRepo(u.tx);
    const cur = await cards.version(me);
    if (cur?.hash === hash) return { owner: me, changed: false, version: cur.version, hash, holders: [] };
    const seq = await u.seq();
    const version = (cur?.version ?? 0) + 1;
    await cards.put(me, { version, hash, card, seq }, u.now);
    const holders = await u.queue.appendToAudience("card", me, { subject: String(me), subjectAccount: me });
    await u.emit("card.updated", { owner: me, version, seq });
    return { owner: me, changed: true, version, hash, holders };
  });
}

/**
 * `get card`: the own card unfiltered, or someone else's as the caller sees it through every path. Not visible
 * and no such card answer alike, so the answer does not reveal whether a card exists. Reads only: an unknown
 * caller or owner is not created.
 */
export async function cardForViewer(
  r: ReadContext,
  user: BareJid,
  owner: BareJid,
  format: Format,
): Promise<Element> {
  const self = owner === user;
  const hidden = (): StanzaError => notFound(self ? "you have no card yet" : `you hold no card of ${owner}`);
  const ownerId = await r.accounts.resolve(owner);
  if (ownerId === undefined) throw hidden();
  let viewer: "owner" | Awaited<ReturnType<typeof r.audience.policies>> = "owner";
  if (!self) {
    const me = await r.accounts.resolve(user);
    if (me === undefined) throw hidden();
    viewer = await r.audience.policies(ownerId, me);
    if (viewer.length === 0) throw hidden();
  }
  const stored = await cardsRepo(r.read).get(ownerId);
  if (!stored) throw hidden();
  return cardFor(stored, owner, viewer, format);
}

export function getCard(
  rt: { read: Reader },
  user: BareJid,
  owner: BareJid,
  format: Format,
): Promise<Element> {
  return rt.read("card.get", (r) => cardForViewer(r, user, owner, format));
}
