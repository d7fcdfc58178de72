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
import {
  CardError,
  cardHash,
  filterCard,
  parseVCard4,
  serializeVCard4,
  type Card,
  type CardLimits,
} from "../stanzas/vcard4.js";
import { cardFromVcf, cardToVcf } from "../stanzas/vcf.js";
import { xml, childElements, type Element } from "../stanzas/xml.js";
import type { Binding, OutboxEntry, StoredCard } from "../storage/store.js";
import type { AppContext, Feature } from "./context.js";
import type { Delivery } from "./delivery.js";
import { optionalUserJid, requireUserJid } from "./jid.js";

const SYNC_PAGE = 200;

type Format = "vcard4" | "vcard-temp" | "vcf";

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
    router.iq("get", ns, "devices", async (c) =>
      xml("devices", { xmlns: ns }, ...(await app.store.devices.list(c.user)).map(deviceElement)),
    );
    router.iq("set", ns, "remove-device", async (c) => {
      const id = parseDeviceId(requireAttr(c.payload, "id")) as string;
      if (!(await app.store.devices.remove(c.user, id))) throw notFound(`you have no device '${quote(id)}'`);
    });
    router.iq("set", ns, "card", (c) => this.setCard(c.user, c.payload));
    router.iq("get", ns, "card", (c) => this.getCard(c.user, c.payload));
    router.iq("set", ns, "share", (c) => this.setShare(c.user, c.payload));
    router.iq("get", ns, "contacts", (c) => this.contacts(c.user));
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

  /** Stores a parsed card and notifies holders; shared by the IQ and the ad-hoc edit command. */
  async store(user: string, card: Card): Promise<Element> {
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

  private async contacts(user: string): Promise<Element> {
    const bindings = await this.app.store.exchange.bindings(user);
    const items: Element[] = [];
    for (const b of bindings) {
      const view = bindingView(b, user);
      const [mine, theirs, card] = await Promise.all([
        this.app.store.cards.share(user, view.peer),
        this.app.store.cards.share(view.peer, user),
        this.app.store.cards.get(view.peer),
      ]);
      items.push(
        xml(
          "contact",
          { jid: view.peer, version: card && theirs ? String(card.version) : undefined },
          bindingElement(view),
          sharePolicyElement(mine?.policy ?? null),
        ),
      );
    }
    return xml("contacts", { xmlns: NS.CARDLINK }, ...items);
  }

  private async sync(user: string, el: Element): Promise<Element> {
    const since = parseNonNegativeInt(el.attrs.since, "since") ?? 0;
    const max =
      Math.min(parseNonNegativeInt(el.attrs.max, "max", 10_000) ?? SYNC_PAGE, SYNC_PAGE) || SYNC_PAGE;
    const format = parseFormat(el.attrs.format);
    const r = await this.app.store.cards.sync(user, since, max);
    return xml(
      "sync",
      { xmlns: NS.CARDLINK, token: String(r.token), more: String(r.more) },
      ...r.cards.map((c) => {
        const card = c.policy ? filterCard(c.card, c.policy) : c.card;
        return cardElement(
          { owner: c.owner, version: c.version, hash: cardHash(card) },
          cardContent(card, format),
        );
      }),
      ...r.removed.map((owner) => xml("removed", { owner })),
    );
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
