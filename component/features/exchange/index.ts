/**
 * The exchange feature module on the new core (docs/REDESIGN.md §1.2, §3.6): stream kinds binding, unbound,
 * exchange-request, exchange-declined; the `binding` audience path; the IQ routes of the legacy
 * component/exchange.ts (and the contacts/share routes of component/cards.ts), with the same payloads and
 * results, and its ad-hoc commands (commands.ts), registered after cards' as today.
 */
import {
  parseBool,
  parseDeviceId,
  parseSharePolicy,
  requireAttr,
  sharePolicyElement,
} from "../../../stanzas/cardlink.js";
import { badRequest, quote } from "../../../stanzas/errors.js";
import { NS } from "../../../stanzas/ns.js";
import { xml, type Element } from "../../../stanzas/xml.js";
import type { FeatureModule, Runtime } from "../../runtime/context.js";
import { requireUserJid } from "../../runtime/jid.js";
import { detach } from "../../runtime/log.js";
import { pageList } from "../../runtime/paging.js";
import { exchangeCommands } from "./commands.js";
import { contacts, setShare, type CardVersions } from "./contacts.js";
import { EXCHANGE_MIGRATIONS } from "./migrations.js";
import { EXCHANGE_KINDS } from "./render.js";
import { BINDING_PATH } from "./repo.js";
import { ExchangeService, eraseExchangeRows, type ListedRequest } from "./service.js";

/** The RSM UID of a pending request (as today): oldest first, the id breaking ties; zero-padded. */
export const requestUid = (r: { createdAt: number; id: string }): string =>
  `${String(r.createdAt).padStart(16, "0")}-${r.id}`;

export function serviceFor(rt: Runtime): ExchangeService {
  const l = rt.limits;
  const x = rt.config.exchange;
  return new ExchangeService({
    uow: rt.uow,
    read: rt.read,
    servedHosts: rt.config.servedHosts,
    requestTtlMs: x.requestTtlSeconds * 1000,
    codeTtlMs: x.codeTtlSeconds * 1000,
    maxPendingPerUser: x.maxPendingPerUser,
    codesPerUser: l.codesPerUser,
    blocksPerUser: l.blocksPerUser,
    redeem: {
      failuresPerUser: l.redeemFailuresPerUser,
      failuresPerHost: l.redeemFailuresPerHost,
      windowMs: l.redeemWindowSeconds * 1000,
      maxKeys: l.rateLimiterKeys,
      onLimited: () => rt.metrics.inc("cardlink_rate_limited_total", { op: "redeem" }),
    },
  });
}

/** The module; `cardVersions` is features/cards' api (contacts' `version` attribute), given by the feature list. */
export function exchangeModule(o: { cardVersions?: CardVersions } = {}): FeatureModule {
  let sweeper: NodeJS.Timeout | undefined;
  return {
    name: "exchange",
    migrations: EXCHANGE_MIGRATIONS,
    kinds: EXCHANGE_KINDS,
    audiencePaths: [BINDING_PATH],
    onAccountDeleting: eraseExchangeRows,
    attach(rt) {
      const svc = serviceFor(rt);
      const ns = NS.CARDLINK;
      // Counted and logged after COMMIT from the event, so the IQ routes and the ad-hoc commands (answer-requests,
      // redeem-code) report a binding alike, as the old core's Exchange.bind did for both.
      rt.events.on("binding.created", (e) => {
        rt.metrics.inc("cardlink_bindings_created_total");
        void rt.accounts.jidsOf([e.a, e.b]).then(
          (j) => rt.log.info({ event: "bound", a: j.get(e.a), b: j.get(e.b), via: e.via }, "cards exchanged"),
          (err: unknown) => rt.log.warn({ event: "bound-log-failed", err: (err as Error).message }, "bound"),
        );
      });
      const r = rt.router;
      r.iq("set", ns, "exchange-request", async (c) => {
        const q = await svc.requestExchange(
          c.user,
          requireAttr(c.payload, "to"),
          parseDeviceId(c.payload.attrs.device),
        );
        rt.metrics.inc("cardlink_exchange_requests_total");
        return xml("exchange-request", {
          xmlns: ns,
          id: q.id,
          to: q.to,
          expires: new Date(q.expiresAt).toISOString(),
        });
      });
      r.iq("get", ns, "exchange-requests", async (c) => {
        const direction = c.payload.attrs.direction ?? "incoming";
        if (direction !== "incoming" && direction !== "outgoing") {
          throw badRequest(`direction must be incoming or outgoing, not '${quote(direction)}'`);
        }
        const page = await pageList(
          c.payload,
          await svc.listRequests(c.user, direction),
          requestUid,
          (q: ListedRequest) =>
            xml("exchange-request", {
              id: q.id,
              ...(direction === "incoming" ? { from: q.peer } : { to: q.peer }),
              expires: new Date(q.expiresAt).toISOString(),
            }),
          rt.budget,
        );
        return xml("exchange-requests", { xmlns: ns, direction }, ...page.items, page.set);
      });
      r.iq("set", ns, "exchange-cancel", (c) => svc.cancel(c.user, requireAttr(c.payload, "id")));
      r.iq("set", ns, "exchange-answer", async (c) => {
        const id = requireAttr(c.payload, "id");
        const accept = parseBool(c.payload.attrs.accept, "accept");
        const b = await svc.answerRequest(c.user, id, accept, parseDeviceId(c.payload.attrs.device));
        return b?.element;
      });
      r.iq("set", ns, "exchange-code", async (c) => {
        const k = await svc.createCode(c.user, parseDeviceId(c.payload.attrs.device));
        return xml("exchange-code", {
          xmlns: ns,
          code: k.code,
          expires: new Date(k.expiresAt).toISOString(),
          uri: `xmpp:${rt.config.domain}?cardlink;code=${k.code}`,
        });
      });
      r.iq("set", ns, "redeem", async (c) => {
        const b = await svc.redeemCode(
          c.user,
          requireAttr(c.payload, "code"),
          parseDeviceId(c.payload.attrs.device),
        );
        return b.element;
      });
      r.iq("set", ns, "unbind", async (c) => {
        const peer = await svc.unbind(c.user, requireAttr(c.payload, "peer"));
        rt.log.info({ event: "unbound", a: c.user, b: peer }, "binding removed");
      });
      r.iq("set", ns, "block", (c) => svc.block(c.user, requireAttr(c.payload, "jid")));
      r.iq("set", ns, "unblock", (c) => svc.unblock(c.user, requireAttr(c.payload, "jid")));
      r.iq("get", ns, "blocklist", async (c) => {
        const page = await pageList(
          c.payload,
          await svc.blocklist(c.user),
          (j) => j,
          (j) => xml("item", { jid: j }),
          rt.budget,
        );
        return xml("blocklist", { xmlns: ns }, ...page.items, page.set);
      });
      r.iq("set", ns, "share", (c) =>
        // The holder is checked before the policy, as today.
        setShare(rt.uow, c.user, requireUserJid(c.payload, "holder"), parseSharePolicy(c.payload)),
      );
      r.iq("get", ns, "contacts", async (c) => {
        const page = await pageList(
          c.payload,
          await contacts(rt.read, c.user, o.cardVersions),
          (k) => k.peer,
          (k): Element =>
            xml(
              "contact",
              { jid: k.peer, version: k.version === undefined ? undefined : String(k.version) },
              k.binding,
              sharePolicyElement(k.policy),
            ),
          rt.budget,
        );
        return xml("contacts", { xmlns: ns }, ...page.items, page.set);
      });
      for (const cmd of exchangeCommands({
        svc,
        read: rt.read,
        budget: rt.budget,
        codeTtlSeconds: rt.config.exchange.codeTtlSeconds,
      }))
        rt.adhoc.register(cmd);
      sweeper = setInterval(() => {
        detach(rt.log, "expire-failed", svc.expire());
        svc.prune();
      }, 60_000);
      sweeper.unref();
    },
    async stop() {
      clearInterval(sweeper);
    },
  };
}
