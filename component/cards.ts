/**
 * My card (XEP-0292 vCard4 shape, plus vcard-temp and .vcf import/export), devices, sharing control, contacts
 * and pull sync. A card change is written with one outbox entry per holder in the same transaction; holders'
 * copies are rendered at delivery time through their current share policy, so a withdrawn field disappears.
 */
import { StanzaError, badRequest, notFound, quote } from "../stanzas/errors.js";
import {
  bindingElement,
  deviceElement,
  parseDevice,
  parseDeviceId,
  parseNonNegativeInt,
  parseSharePolicy,
  requireAttr,
  sharePolicyElement,
} from "../stanzas/cardlink.js";
import { NS } from "../stanzas/ns.js";
import { cardFromVCardTemp, cardToVCardTemp } from "../stanzas/vcard-temp.js";
import { CardError, cardHash, formatSize, type Card, type CardLimits } from "../stanzas/model/card.js";
import { filterCard } from "../stanzas/model/policy.js";
import { parseVCard4, serializeVCard4 } from "../stanzas/vcard4.js";
import { cardFromVcf, cardToVcf } from "../stanzas/vcf.js";
import { xml, childElements, type Element } from "../stanzas/xml.js";
import { measure } from "./runtime/budget.js";
import { pageList } from "./runtime/paging.js";
import type { Binding, OutboxEntry, StoredCard } from "../storage/store.js";
import type { AppContext, Feature } from "./runtime/context.js";
import type { Delivery } from "./delivery.js";
import { optionalUserJid, requireUserJid } from "./runtime/jid.js";

const SYNC_PAGE = 200;

type Format = "vcard4" | "vcard-temp" | "vcf";
const FORMATS: readonly Format[] = ["vcard4", "vcard-temp", "vcf"];

function parseFormat(v: string | undefined): Format {
  const f = v ?? "vcard4";
  if (f !== "vcard4" && f !== "vcard-temp" && f !== "vcf")
    throw badRequest(`format must be vcard4, vcard-temp or vcf, not '${quote(f)}'`);
  return f;
}

/** Card content in the requested format, as the child of a <card/> element. */
export function cardContent(card: Card, format: Format): Element | string {
  if (format === "vcard-temp") return cardToVCardTemp(card);
  if (format === "vcf") return cardToVcf(card);
  return serializeVCard4(card);
}

/** Bytes a card's content takes on the wire in `format` (the .vcf text XML-escaped, as inside <card/>). */
export function renderedBytes(card: Card, format: Format): number {
  const content = cardContent(card, format);
  return typeof content === "string" ? measure(xml("c", {}, content)) - "<c></c>".length : measure(content);
}

export function cardElement(
  attrs: { owner: string; version: number; hash: string },
  content: Element | string | null,
): Element {
  return xml(
    "card",
    { xmlns: NS.CARDLINK, owner: attrs.owner, version: String(attrs.version), hash: attrs.hash },
    content,
  );
}

/** The peer-side view of a binding, for one of its two users. */
export function bindingView(b: Binding, me: string): Parameters<typeof bindingElement>[0] {
  return {
    id: b.id,
    peer: b.a === me ? b.b : b.a,
    createdAt: b.createdAt,
    via: b.via,
    devices: [
      { jid: b.a, ids: b.aDevices },
      { jid: b.b, ids: b.bDevices },
    ],
  };
}

export class Cards implements Feature {
  readonly name = "cards";
  private app!: AppContext;
  private limits!: CardLimits;

  constructor(private readonly delivery: Delivery) {}

  attach(app: AppContext): void {
    this.app = app;
    this.limits = app.config.card;
    const { router } = app;
    const ns = NS.CARDLINK;
    router.iq("set", ns, "device", (c) => this.registerDevice(c.user, c.payload));
    router.iq("get", ns, "devices", async (c) => {
      const page = await pageList(
        c.payload,
        await app.store.devices.list(c.user),
        (d) => d.deviceId,
        deviceElement,
        app.budget,
      );
      return xml("devices", { xmlns: ns }, ...page.items, page.set);
    });
    router.iq("set", ns, "remove-device", async (c) => {
      const id = parseDeviceId(requireAttr(c.payload, "id")) as string;
      if (!(await app.store.devices.remove(c.user, id))) throw notFound(`you have no device '${quote(id)}'`);
    });
    router.iq("set", ns, "card", (c) => this.setCard(c.user, c.payload));
    router.iq("get", ns, "card", (c) => this.getCard(c.user, c.payload));
    router.iq("set", ns, "share", (c) => this.setShare(c.user, c.payload));
    router.iq("get", ns, "contacts", (c) => this.contacts(c.user, c.payload));
    router.iq("get", ns, "sync", (c) => this.sync(c.user, c.payload));
    this.delivery.register("card", (e) => this.renderCard(e));
  }

  private async registerDevice(user: string, el: Element): Promise<Element> {
    const d = parseDevice(el);
    const max = this.app.config.limits.devicesPerUser;
    try {
      const saved = await this.app.store.devices.upsert(
        {
          owner: user,
          deviceId: d.deviceId,
          platform: d.platform,
          ...(d.name ? { name: d.name } : {}),
          ...(d.push ? { pushToken: d.push.token } : {}),
          ...(d.push?.topic ? { pushTopic: d.push.topic } : {}),
          ...(d.push?.key ? { pushKey: d.push.key } : {}),
        },
        max,
      );
      return deviceElement(saved);
    } catch (e) {
      if (e instanceof RangeError) {
        throw new StanzaError("resource-constraint", `you already have ${max} devices; remove one first`, {
          type: "cancel",
        });
      }
      throw e;
    }
  }

  /** Parses a submitted card in any accepted format; CardError becomes bad-request with its message. */
  parseSubmitted(el: Element): Card {
    const format = parseFormat(el.attrs.format);
    try {
      if (format === "vcf") {
        const text = el.getText();
        if (Buffer.byteLength(text) > this.limits.maxBytes) {
          throw new CardError(`vcf: card is ${Buffer.byteLength(text)} bytes, limit ${this.limits.maxBytes}`);
        }
        return cardFromVcf(text, this.limits);
      }
      const kids = childElements(el);
      const want = format === "vcard-temp" ? ["vCard", NS.VCARD_TEMP] : ["vcard", NS.VCARD4];
      const card = kids.find((k) => k.name === want[0] && k.getNS() === want[1]);
      if (!card || kids.length !== 1)
        throw new CardError(
          `<card format='${format}'> must hold exactly one <${want[0]} xmlns='${want[1]}'/>`,
        );
      return format === "vcard-temp" ? cardFromVCardTemp(card, this.limits) : parseVCard4(card, this.limits);
    } catch (e) {
      if (e instanceof CardError) throw badRequest(e.message);
      throw e;
    }
  }

  async setCard(user: string, el: Element): Promise<Element> {
    // Compared normalized, like every user attribute: Alice@Localhost is alice@localhost.
    const owner = optionalUserJid(el, "owner");
    if (owner && owner !== user) throw new StanzaError("forbidden", "you can only change your own card");
    const card = this.parseSubmitted(el);
    return this.store(user, card);
  }

  /**
   * Checks a card built by other means than the parsers (the ad-hoc form) against the same limits: it goes
   * through the vCard4 parser, so every rule and message is the one a client sending XML would get.
   */
  validate(card: Card): Card {
    try {
      return parseVCard4(serializeVCard4(card), this.limits);
    } catch (e) {
      if (e instanceof CardError) throw badRequest(e.message);
      throw e;
    }
  }

  /**
   * A holder may fetch a card in any format, and the formats differ in size (vcard-temp's markup is heavier, a
   * .vcf with `&` grows fivefold once escaped inside XML): so card.maxBytes bounds every rendering, measured
   * here before anything is written. This is what lets the start-up check (card.maxBytes vs the link budget)
   * guarantee that any stored card fits in one stanza. A share policy only removes fields, so a filtered copy
   * is never larger.
   */
  private checkRenderings(card: Card): void {
    for (const format of FORMATS) {
      const bytes = renderedBytes(card, format);
      if (bytes > this.limits.maxBytes) {
        throw badRequest(
          `${format}: card is ${formatSize(bytes)} in that format, limit ${formatSize(this.limits.maxBytes)}`,
        );
      }
    }
  }

  /** Stores a parsed card and notifies holders; shared by the IQ and the ad-hoc edit command. */
  async store(user: string, card: Card): Promise<Element> {
    this.checkRenderings(card);
    const r = await this.app.store.cards.set(user, card, cardHash(card));
    if (r.changed) {
      this.app.metrics.inc("cardlink_card_updates_total");
      this.app.metrics.inc("cardlink_fanout_entries_total", undefined, r.recipients.length);
      this.app.log.info(
        { event: "card-updated", owner: user, version: r.version, holders: r.recipients.length },
        "card updated",
      );
      if (r.recipients.length) this.app.events.emit("outbox.enqueued", { recipients: r.recipients });
    }
    return xml("card", {
      xmlns: NS.CARDLINK,
      owner: user,
      version: String(r.version),
      hash: r.hash,
      changed: String(r.changed),
    });
  }

  private async getCard(user: string, el: Element): Promise<Element> {
    const format = parseFormat(el.attrs.format);
    const owner = optionalUserJid(el, "owner") ?? user;
    // Someone else's card: only through an accepted exchange, and only what they share with you. Not bound
    // and no such card answer alike, so the answer does not reveal whether a card exists.
    let policy = null;
    if (owner !== user) {
      const share = await this.app.store.cards.share(owner, user);
      if (!share) throw notFound(`you hold no card of ${owner}`);
      policy = share.policy;
    }
    const stored = await this.app.store.cards.get(owner);
    if (!stored) throw notFound(owner === user ? "you have no card yet" : `you hold no card of ${owner}`);
    if (owner === user && format === "vcard4") {
      // The own card, unfiltered: the stored hash and the rendering cached per version (as for deliveries) are
      // exactly what filtering nothing and serializing again would give.
      return cardElement({ owner, version: stored.version, hash: stored.hash }, this.unfilteredVcard(stored));
    }
    const card = policy ? filterCard(stored.card, policy) : stored.card;
    return cardElement(
      { owner, version: stored.version, hash: owner === user ? stored.hash : cardHash(card) },
      cardContent(card, format),
    );
  }

  private async setShare(user: string, el: Element): Promise<Element | undefined> {
    const holder = requireUserJid(el, "holder");
    const policy = parseSharePolicy(el);
    if (!(await this.app.store.cards.setPolicy(user, holder, policy))) {
      throw notFound(`${holder} does not hold your card`);
    }
    this.app.events.emit("outbox.enqueued", { recipients: [holder] });
    return undefined;
  }

  private async contacts(user: string, el: Element): Promise<Element> {
    const bindings = await this.app.store.exchange.bindings(user);
    const page = await pageList(
      el,
      bindings.map((b) => bindingView(b, user)),
      (view) => view.peer,
      async (view) => {
        const [mine, theirs, card] = await Promise.all([
          this.app.store.cards.share(user, view.peer),
          this.app.store.cards.share(view.peer, user),
          this.app.store.cards.get(view.peer),
        ]);
        return xml(
          "contact",
          { jid: view.peer, version: card && theirs ? String(card.version) : undefined },
          bindingElement(view),
          sharePolicyElement(mine?.policy ?? null),
        );
      },
      this.app.budget,
    );
    return xml("contacts", { xmlns: NS.CARDLINK }, ...page.items, page.set);
  }

  /**
   * One page of pull sync: the store's ordered stream of changes, cut where the next card would not fit in the
   * stanza budget (or at `max`). The token is then the seq of the last entry included, so the next call
   * continues exactly after it; only a page holding everything up to now gets the store's newest seq.
   */
  private async sync(user: string, el: Element): Promise<Element> {
    const since = parseNonNegativeInt(el.attrs.since, "since") ?? 0;
    const max =
      Math.min(parseNonNegativeInt(el.attrs.max, "max", 10_000) ?? SYNC_PAGE, SYNC_PAGE) || SYNC_PAGE;
    const format = parseFormat(el.attrs.format);
    const r = await this.app.store.cards.sync(user, since, max);
    const page = this.app.budget.page(max);
    let last: number | undefined;
    for (const e of r.entries) {
      let item: Element;
      if (e.removed) item = xml("removed", { owner: e.owner });
      else {
        const card = e.policy ? filterCard(e.card, e.policy) : e.card;
        item = cardElement(
          { owner: e.owner, version: e.version, hash: cardHash(card) },
          cardContent(card, format),
        );
      }
      if (!page.add(item)) break;
      last = e.seq;
    }
    if (last === undefined && r.entries.length > 0) {
      // Unreachable by construction (card.maxBytes is checked against the budget at start-up and every
      // rendering at store time); refusing beats a page that can never advance.
      this.app.log.error({ event: "sync-item-over-budget", holder: user, owner: r.entries[0]?.owner });
      throw new StanzaError("resource-constraint", "a card is too large to send; this was logged");
    }
    const more = r.more || page.full;
    const token = more ? (last as number) : r.token;
    return xml("sync", { xmlns: NS.CARDLINK, token: String(token), more: String(more) }, ...page.items);
  }

  private async renderCard(e: OutboxEntry): Promise<Element | null> {
    const owner = e.subject;
    const [share, stored] = await Promise.all([
      this.app.store.cards.share(owner, e.recipient),
      this.app.store.cards.get(owner),
    ]);
    if (!share || !stored) return null;
    if (!share.policy) {
      // Unfiltered copies (the common case in a fan-out): serialize once per card version, not once per holder.
      return cardElement({ owner, version: stored.version, hash: stored.hash }, this.unfilteredVcard(stored));
    }
    const card = filterCard(stored.card, share.policy);
    return cardElement({ owner, version: stored.version, hash: cardHash(card) }, serializeVCard4(card));
  }

  private readonly rendered = new Map<string, { version: number; vcard: Element }>();

  private unfilteredVcard(stored: StoredCard): Element {
    const hit = this.rendered.get(stored.owner);
    if (hit && hit.version === stored.version) return hit.vcard;
    const vcard = serializeVCard4(stored.card);
    if (this.rendered.size >= 1000) this.rendered.delete(this.rendered.keys().next().value as string);
    this.rendered.set(stored.owner, { version: stored.version, vcard });
    return vcard;
  }
}
