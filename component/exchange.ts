/**
 * Card exchange and bindings: (a) A asks B by JID, B accepts or declines; (b) in person: A makes a short-lived
 * one-time code (what a QR code carries), B redeems it. Acceptance binds both sides (bare JID + the devices
 * each had registered) and, in the same transaction, queues the binding record and each other's card for
 * both. Either side can unbind; both are told. Blocks stop requests.
 */
import { detach } from "./runtime/log.js";
import { randomBytes, randomUUID } from "node:crypto";
import { StanzaError, badRequest, conflict, notFound, quote } from "../stanzas/errors.js";
import { bindingElement, parseBool, parseDeviceId, requireAttr } from "../stanzas/cardlink.js";
import { NS } from "../stanzas/ns.js";
import { xml, type Element } from "../stanzas/xml.js";
import type { BindResult, OutboxEntry, OutboxItem } from "../storage/store.js";
import { bindingView } from "./cards.js";
import type { AppContext, Feature } from "./runtime/context.js";
import type { Delivery } from "./delivery.js";
import { requireUserJid, userJid } from "./runtime/jid.js";
import { RateLimiter, retryText } from "./runtime/ratelimit.js";
import { pageList } from "./runtime/paging.js";

// Crockford-style alphabet without 0/O, 1/I/L, U: easy to read aloud and type from a card.
const CODE_ALPHABET = "ABCDEFGHJKMNPQRSTVWXYZ23456789";
const CODE_LENGTH = 10;
/** Requests and codes a user may create per hour (spam brake on top of maxPendingPerUser). */
const CREATE_PER_HOUR = 60;

/**
 * The RSM UID of a pending request: oldest first (the order clients have always seen), the id breaking ties.
 * Opaque to clients; zero-padded so that string order is time order.
 */
export const requestUid = (r: { createdAt: number; id: string }): string =>
  `${String(r.createdAt).padStart(16, "0")}-${r.id}`;

export function newCode(): string {
  const bytes = randomBytes(CODE_LENGTH);
  let s = "";
  for (const b of bytes) s += CODE_ALPHABET[b % CODE_ALPHABET.length];
  return `${s.slice(0, 5)}-${s.slice(5)}`;
}

export function normalizeCode(input: string): string | undefined {
  const s = input.toUpperCase().replace(/[\s-]/g, "");
  if (s.length !== CODE_LENGTH || [...s].some((c) => !CODE_ALPHABET.includes(c))) return undefined;
  return `${s.slice(0, 5)}-${s.slice(5)}`;
}

export class Exchange implements Feature {
  readonly name = "exchange";
  private app!: AppContext;
  private readonly created = new Map<string, number[]>();
  private sweeper: NodeJS.Timeout | undefined;
  /** Failed redeems (no such code, expired) per user and per sending domain: codes are guessable input. */
  private redeemUser!: RateLimiter;
  private redeemHost!: RateLimiter;

  constructor(private readonly delivery: Delivery) {}

  attach(app: AppContext): void {
    this.app = app;
    const l = app.config.limits;
    const windowMs = l.redeemWindowSeconds * 1000;
    this.redeemUser = new RateLimiter({
      limit: l.redeemFailuresPerUser,
      windowMs,
      maxKeys: l.rateLimiterKeys,
    });
    this.redeemHost = new RateLimiter({
      limit: l.redeemFailuresPerHost,
      windowMs,
      maxKeys: l.rateLimiterKeys,
    });
    const ns = NS.CARDLINK;
    const r = app.router;
    r.iq("set", ns, "exchange-request", (c) => this.request(c.user, c.payload));
    r.iq("get", ns, "exchange-requests", (c) => this.pending(c.user, c.payload));
    r.iq("set", ns, "exchange-cancel", (c) => this.cancel(c.user, c.payload));
    r.iq("set", ns, "exchange-answer", (c) => this.answer(c.user, c.payload));
    r.iq("set", ns, "exchange-code", (c) => this.code(c.user, c.payload));
    r.iq("set", ns, "redeem", (c) => this.redeem(c.user, c.payload));
    r.iq("set", ns, "unbind", (c) => this.unbind(c.user, c.payload));
    r.iq("set", ns, "block", (c) => this.block(c.user, c.payload, true));
    r.iq("set", ns, "unblock", (c) => this.block(c.user, c.payload, false));
    r.iq("get", ns, "blocklist", async (c) => {
      const page = await pageList(
        c.payload,
        await app.store.exchange.blocked(c.user),
        (j) => j,
        (j) => xml("item", { jid: j }),
        app.budget,
      );
      return xml("blocklist", { xmlns: ns }, ...page.items, page.set);
    });
    const d = this.delivery;
    d.register("binding", (e) => this.renderBinding(e));
    d.register("exchange-request", (e) => this.renderRequest(e));
    d.register("exchange-declined", async (e) => xml("exchange-declined", { xmlns: ns, ...this.payload(e) }));
    d.register("unbound", async (e) => xml("unbound", { xmlns: ns, peer: e.subject }));
    this.sweeper = setInterval(() => {
      detach(app.log, "expire-failed", app.store.exchange.expire(Date.now()));
      // The rate-limit memory only needs the last hour.
      const hourAgo = Date.now() - 3_600_000;
      for (const [user, times] of this.created)
        if ((times[times.length - 1] ?? 0) < hourAgo) this.created.delete(user);
      this.redeemUser.prune();
      this.redeemHost.prune();
    }, 60_000);
    this.sweeper.unref();
  }

  stop(): void {
    clearInterval(this.sweeper);
  }

  private payload(e: OutboxEntry): Record<string, string> {
    return e.payload ? (JSON.parse(e.payload) as Record<string, string>) : {};
  }

  private rateLimit(user: string): void {
    const now = Date.now();
    const recent = (this.created.get(user) ?? []).filter((t) => t > now - 3_600_000);
    if (recent.length >= CREATE_PER_HOUR) {
      throw new StanzaError(
        "policy-violation",
        `at most ${CREATE_PER_HOUR} exchange requests and codes per hour; try later`,
        {
          type: "wait",
        },
      );
    }
    recent.push(now);
    this.created.set(user, recent);
  }

  private peerJid(v: string, what: string): string {
    const j = userJid(v, what);
    const domain = j.slice(j.indexOf("@") + 1);
    if (!this.app.config.servedHosts.includes(domain)) {
      throw new StanzaError(
        "not-acceptable",
        `cardlink exchanges cards between users of ${this.app.config.servedHosts.join(", ")} only`,
      );
    }
    return j;
  }

  private async deviceIds(user: string): Promise<string[]> {
    return (await this.app.store.devices.list(user)).map((d) => d.deviceId);
  }

  private async request(user: string, el: Element): Promise<Element> {
    return this.requestExchange(user, requireAttr(el, "to"), parseDeviceId(el.attrs.device));
  }

  /** Asks `toInput` to exchange cards with `user`; shared by the IQ and the ad-hoc command. */
  async requestExchange(user: string, toInput: string, device?: string): Promise<Element> {
    const to = this.peerJid(toInput, "to");
    const ex = this.app.store.exchange;
    const now = Date.now();
    if (to === user) throw badRequest("you cannot exchange cards with yourself");
    if (await ex.isBlocked(to, user))
      throw new StanzaError("forbidden", `${to} does not accept exchange requests from you`);
    if (await ex.binding(user, to)) throw conflict(`you and ${to} have already exchanged cards`);
    const existing = await ex.requestBetween(user, to);
    if (existing && existing.expiresAt > now)
      throw conflict(`you already asked ${to} (request ${existing.id})`);
    const reverse = await ex.requestBetween(to, user);
    if (reverse && reverse.expiresAt > now) {
      throw conflict(`${to} has already asked you: answer request ${reverse.id} instead`);
    }
    if ((await ex.countPendingFrom(user, now)) >= this.app.config.exchange.maxPendingPerUser) {
      throw new StanzaError(
        "policy-violation",
        `you have ${this.app.config.exchange.maxPendingPerUser} unanswered requests; wait for answers`,
        {
          type: "wait",
        },
      );
    }
    this.rateLimit(user);
    if (existing) await ex.closeRequest(existing.id, []); // expired leftover
    const id = randomUUID();
    const expiresAt = now + this.app.config.exchange.requestTtlSeconds * 1000;
    const created = await ex.createRequest(
      { id, from: user, to, ...(device ? { fromDevice: device } : {}), createdAt: now, expiresAt },
      { recipient: to, kind: "exchange-request", subject: id, version: 1 },
    );
    // Two identical requests at the same moment: the store's uniqueness decides, and the loser is told.
    if (created === "exists") throw conflict(`you already asked ${to}`);
    this.app.metrics.inc("cardlink_exchange_requests_total");
    this.app.events.emit("outbox.enqueued", { recipients: [to] });
    return xml("exchange-request", {
      xmlns: NS.CARDLINK,
      id,
      to,
      expires: new Date(expiresAt).toISOString(),
    });
  }

  /** Requests waiting for my answer (default), or with direction='outgoing' the ones I sent. */
  private async pending(user: string, el: Element): Promise<Element> {
    const direction = el.attrs.direction ?? "incoming";
    if (direction !== "incoming" && direction !== "outgoing") {
      throw badRequest(`direction must be incoming or outgoing, not '${quote(direction)}'`);
    }
    const now = Date.now();
    const ex = this.app.store.exchange;
    const reqs = direction === "incoming" ? await ex.pendingFor(user, now) : await ex.pendingFrom(user, now);
    const page = await pageList(
      el,
      reqs,
      requestUid,
      (r) =>
        xml("exchange-request", {
          id: r.id,
          ...(direction === "incoming" ? { from: r.from } : { to: r.to }),
          expires: new Date(r.expiresAt).toISOString(),
        }),
      this.app.budget,
    );
    return xml("exchange-requests", { xmlns: NS.CARDLINK, direction }, ...page.items, page.set);
  }

  /** Withdraws a request I sent: it disappears, with its notice if still undelivered. */
  private async cancel(user: string, el: Element): Promise<void> {
    const id = requireAttr(el, "id");
    const req = await this.app.store.exchange.request(id);
    if (!req || req.from !== user) throw notFound(`you have no pending exchange request '${quote(id)}'`);
    await this.app.store.exchange.closeRequest(id, []);
  }

  /** Accepts or declines request `id` as `user`; shared by the IQ and the ad-hoc command. */
  async answerRequest(
    user: string,
    id: string,
    accept: boolean,
    device?: string,
  ): Promise<BindResult | undefined> {
    const ex = this.app.store.exchange;
    const req = await ex.request(id);
    if (!req || req.to !== user) throw notFound(`no exchange request '${quote(id)}' for you`);
    if (req.expiresAt <= Date.now()) {
      await ex.closeRequest(id, []);
      throw new StanzaError("gone", `exchange request ${id} expired`);
    }
    if (!accept) {
      const notice: OutboxItem = {
        recipient: req.from,
        kind: "exchange-declined",
        subject: id,
        version: 1,
        payload: JSON.stringify({ id, by: user }),
      };
      await ex.closeRequest(id, [notice]);
      this.app.events.emit("outbox.enqueued", { recipients: [req.from] });
      return undefined;
    }
    return this.bind(req.from, req.fromDevice, user, device, "request", id);
  }

  private async answer(user: string, el: Element): Promise<Element | undefined> {
    const id = requireAttr(el, "id");
    const accept = parseBool(el.attrs.accept, "accept");
    const device = parseDeviceId(el.attrs.device);
    const r = await this.answerRequest(user, id, accept, device);
    return r ? bindingElement(bindingView(r.binding, user)) : undefined;
  }

  private async bind(
    a: string,
    aDevice: string | undefined,
    b: string,
    bDevice: string | undefined,
    via: "request" | "code",
    requestId?: string,
  ): Promise<BindResult> {
    const withDevice = (ids: string[], d: string | undefined): string[] =>
      d && !ids.includes(d) ? [...ids, d] : ids;
    const r = await this.app.store.exchange.bind(
      {
        id: randomUUID(),
        a,
        b,
        aDevices: withDevice(await this.deviceIds(a), aDevice),
        bDevices: withDevice(await this.deviceIds(b), bDevice),
        via,
      },
      requestId,
      Date.now(),
    );
    if (r === "exists") throw conflict(`${a} and ${b} have already exchanged cards`);
    this.app.metrics.inc("cardlink_bindings_created_total");
    this.app.log.info({ event: "bound", a, b, via }, "cards exchanged");
    this.app.events.emit("outbox.enqueued", { recipients: r.recipients });
    return r;
  }

  private async code(user: string, el: Element): Promise<Element> {
    return this.createCode(user, parseDeviceId(el.attrs.device));
  }

  /** Creates a one-time exchange code; shared by the IQ and the ad-hoc command. */
  async createCode(user: string, device?: string): Promise<Element> {
    this.rateLimit(user);
    const now = Date.now();
    const code = newCode();
    const expiresAt = now + this.app.config.exchange.codeTtlSeconds * 1000;
    const max = this.app.config.limits.codesPerUser;
    const created = await this.app.store.exchange.createCode(
      { code, owner: user, ...(device ? { deviceId: device } : {}), createdAt: now, expiresAt },
      max,
    );
    if (created === "full") {
      this.created.get(user)?.pop(); // a refused code does not count against the hourly brake
      // wait: the oldest code expires within codeTtlSeconds, and then a new one can be made.
      throw new StanzaError(
        "resource-constraint",
        `you have ${max} unused exchange codes; use one or wait until one expires`,
        { type: "wait" },
      );
    }
    return xml("exchange-code", {
      xmlns: NS.CARDLINK,
      code,
      expires: new Date(expiresAt).toISOString(),
      uri: `xmpp:${this.app.config.domain}?cardlink;code=${code}`,
    });
  }

  /**
   * Redeems a code as `user`; shared by the IQ and the ad-hoc command. Codes are guessable, so failed attempts
   * (no such code, expired) are limited per user and per sending domain — the only "source" a component sees:
   * Prosody hides client addresses. The domain's budget is larger than one user's, so one user cannot exhaust
   * it for the others of their server; many accounts of one server together can, and then wait like anyone.
   */
  async redeemCode(user: string, input: string, device?: string): Promise<BindResult> {
    const code = normalizeCode(input);
    if (!code)
      throw badRequest(`'${quote(input)}' is not an exchange code (10 letters and digits, e.g. ABCDE-FGH23)`);
    const host = user.slice(user.indexOf("@") + 1);
    const wait = Math.max(this.redeemUser.retryAfter(user), this.redeemHost.retryAfter(host));
    if (wait > 0) {
      this.app.metrics.inc("cardlink_rate_limited_total", { op: "redeem" });
      const who = this.redeemUser.retryAfter(user) > 0 ? "from you" : `from ${host}`;
      throw new StanzaError(
        "policy-violation",
        `too many failed redeem attempts ${who}; retry in ${retryText(wait)}`,
        { type: "wait" },
      );
    }
    const failed = (): void => {
      this.redeemUser.hit(user);
      this.redeemHost.hit(host);
    };
    const ex = this.app.store.exchange;
    // Every refusal but expiry leaves the code usable: a wrong person trying it must not burn it.
    const c = await ex.code(code);
    if (!c) {
      failed();
      throw notFound("no such exchange code (it may have been used already)");
    }
    if (c.expiresAt <= Date.now()) {
      failed();
      await ex.takeCode(code);
      throw new StanzaError("gone", "this exchange code has expired; ask for a new one");
    }
    if (c.owner === user) throw badRequest("you cannot redeem your own code");
    if (await ex.isBlocked(c.owner, user)) {
      throw new StanzaError("forbidden", `${c.owner} does not accept exchanges from you`);
    }
    if (await ex.binding(c.owner, user)) throw conflict(`you and ${c.owner} have already exchanged cards`);
    if (!(await ex.takeCode(code))) throw notFound("no such exchange code (it was used just now)");
    return this.bind(c.owner, c.deviceId, user, device, "code");
  }

  private async redeem(user: string, el: Element): Promise<Element> {
    const r = await this.redeemCode(user, requireAttr(el, "code"), parseDeviceId(el.attrs.device));
    return bindingElement(bindingView(r.binding, user));
  }

  private async unbind(user: string, el: Element): Promise<void> {
    const peer = requireUserJid(el, "peer");
    const notify: OutboxItem[] = [
      { recipient: peer, kind: "unbound", subject: user, version: 1 },
      { recipient: user, kind: "unbound", subject: peer, version: 1 },
    ];
    if (!(await this.app.store.exchange.unbind(user, peer, notify)))
      throw notFound(`you have not exchanged cards with ${peer}`);
    this.app.log.info({ event: "unbound", a: user, b: peer }, "binding removed");
    this.app.events.emit("outbox.enqueued", { recipients: [peer, user] });
  }

  private async block(user: string, el: Element, on: boolean): Promise<void> {
    const other = requireUserJid(el, "jid");
    if (on) {
      const max = this.app.config.limits.blocksPerUser;
      if ((await this.app.store.exchange.block(user, other, max)) === "full") {
        // cancel: the list does not shrink by waiting; the user must unblock someone.
        throw new StanzaError("resource-constraint", `you already block ${max} accounts; unblock one first`, {
          type: "cancel",
        });
      }
    } else if (!(await this.app.store.exchange.unblock(user, other)))
      throw notFound(`${other} is not blocked`);
  }

  private async renderBinding(e: OutboxEntry): Promise<Element | null> {
    const bindings = await this.app.store.exchange.bindings(e.recipient);
    const b = bindings.find((x) => x.id === e.subject);
    return b ? bindingElement(bindingView(b, e.recipient)) : null;
  }

  private async renderRequest(e: OutboxEntry): Promise<Element | null> {
    const r = await this.app.store.exchange.request(e.subject);
    if (!r || r.expiresAt <= Date.now()) return null;
    return xml("exchange-request", {
      xmlns: NS.CARDLINK,
      id: r.id,
      from: r.from,
      expires: new Date(r.expiresAt).toISOString(),
    });
  }
}
