/**
 * The linked-accounts feature module (issue 11; PROTOCOL.md §22): IQ routes in urn:cardlink:linked:0, the
 * ad-hoc commands, three stream kinds, the `linked-xmpp` job channel (XEP-0356 PEP publishes), and the
 * `account.deleting` erase handler. Non-XMPP services are the runtime's webhook connectors (webhooks.connectors).
 */
import { badRequest } from "../../../stanzas/errors.js";
import {
  accountAttrs,
  parseAccountRef,
  parseProfileChange,
  parseSettings,
  type Setting,
} from "../../../stanzas/linked.js";
import { NS } from "../../../stanzas/ns.js";
import { xml } from "../../../stanzas/xml.js";
import type { FeatureModule, Runtime } from "../../runtime/context.js";
import type { TxHandler } from "../../runtime/events.js";
import { RateLimiter } from "../../runtime/ratelimit.js";
import { LinkedXmppChannel } from "./channel.js";
import { linkedCommands } from "./commands.js";
import { LINKED_MIGRATIONS } from "./migrations.js";
import { LINKED_KINDS, KIND_LINKS, linksElement } from "./render.js";
import { linkedRepo } from "./repo.js";
import { LinkedService, dropSyncs } from "./service.js";

const iso = (t: number): string => new Date(t).toISOString();

/**
 * Deletion of an account (PROTOCOL §18.2): it leaves its set (a set left with one account, or none on XMPP,
 * dissolves), its requests both ways go, and so do the sync messages waiting for the members that go. Plain SQL
 * and stream appends only: the CLI's link-less core runs this too, and it has no job channel.
 */
export const eraseLinkedRows: TxHandler<"account.deleting"> = async (u, e) => {
  const repo = linkedRepo(u.tx);
  await repo.deletePendingOf(e.account);
  const m = await repo.memberOfAccount(e.account);
  if (!m) return;
  await dropSyncs(u, m);
  await repo.removeMember(m.id);
  const rest = await repo.members(m.setId);
  if (rest.length < 2 || !rest.some((r) => r.account !== undefined)) {
    for (const r of rest) await dropSyncs(u, r);
    await repo.deleteSet(m.setId);
  }
  const lanes = rest.flatMap((r) => (r.account === undefined ? [] : [r.account]));
  if (lanes.length) await u.queue.append(KIND_LINKS, lanes, { subject: "links" });
};

export function linkedServiceFor(rt: Runtime): LinkedService {
  const c = rt.config.linked;
  return new LinkedService({
    uow: rt.uow,
    read: rt.read,
    servedHosts: rt.config.servedHosts,
    services: new Map(rt.config.webhooks.connectors.map((k) => [k.name, k.settings as Setting[]])),
    maxAccounts: c.maxAccounts,
    pendingPerUser: c.pendingPerUser,
    requestTtlMs: c.requestTtlSeconds * 1000,
    codeTtlMs: c.codeTtlSeconds * 1000,
    codeFailures: new RateLimiter({
      limit: c.codeFailuresPerUser,
      windowMs: c.codeWindowSeconds * 1000,
      maxKeys: rt.limits.rateLimiterKeys,
    }),
    maxNicknameLength: c.maxNicknameLength,
    maxStatusLength: c.maxStatusLength,
    // A synced avatar travels base64 in one stanza (an update, a PEP publish): never above what fits.
    maxAvatarBytes: Math.min(c.maxAvatarBytes, Math.floor((rt.config.link.stanzaLimitBytes - 4096) / 4) * 3),
  });
}

export function linkedModule(): FeatureModule {
  return {
    name: "linked",
    migrations: LINKED_MIGRATIONS,
    kinds: LINKED_KINDS,
    onAccountDeleting: eraseLinkedRows,
    discoFeatures: () => [NS.LINKED],
    attach(rt) {
      const svc = linkedServiceFor(rt);
      const c = rt.config.linked;
      rt.queue.registerChannel(
        new LinkedXmppChannel({
          read: rt.read,
          request: (iq, ms) => rt.iq.request(iq, ms),
          domain: rt.config.domain,
          timeoutMs: c.privilegedTimeoutMs,
          concurrency: c.concurrency,
          maxAttempts: c.maxAttempts,
          log: rt.log,
          metrics: rt.metrics,
        }),
      );
      const ns = NS.LINKED;
      const r = rt.router;
      const settings = (v: string | undefined) => parseSettings(v);
      const links = async (user: string) => linksElement(await svc.list(user));
      r.iq("set", ns, "link-request", async (ctx) => {
        const jid = ctx.payload.attrs.jid;
        if (!jid) throw badRequest("link-request needs jid='…'");
        const p = await svc.request(ctx.user, jid, settings(ctx.payload.attrs.settings));
        return xml("link-request", { xmlns: ns, jid, expires: iso(p.expiresAt) });
      });
      r.iq("set", ns, "link-accept", async (ctx) => {
        const jid = ctx.payload.attrs.jid;
        if (!jid) throw badRequest("link-accept needs jid='…'");
        await svc.accept(ctx.user, jid, settings(ctx.payload.attrs.settings));
        return links(ctx.user);
      });
      r.iq("set", ns, "link-service", async (ctx) => {
        const ref = parseAccountRef(ctx.payload);
        if ("jid" in ref) throw badRequest("link-service names service='…' and account='…'");
        const p = await svc.linkService(
          ctx.user,
          ref.service,
          ref.account,
          settings(ctx.payload.attrs.settings),
        );
        return xml("link-service", { xmlns: ns, ...accountAttrs(ref), expires: iso(p.expiresAt) });
      });
      r.iq("set", ns, "link-confirm", async (ctx) => {
        const ref = parseAccountRef(ctx.payload);
        const code = ctx.payload.attrs.code;
        if ("jid" in ref || !code)
          throw badRequest("link-confirm names service='…', account='…' and code='…'");
        await svc.confirm(ctx.user, ref.service, ref.account, code);
        return links(ctx.user);
      });
      r.iq("set", ns, "unlink", async (ctx) => {
        await svc.unlink(ctx.user, parseAccountRef(ctx.payload));
        return links(ctx.user);
      });
      r.iq("set", ns, "link-settings", async (ctx) => {
        await svc.setSettings(ctx.user, parseAccountRef(ctx.payload), settings(ctx.payload.attrs.settings));
        return links(ctx.user);
      });
      r.iq("get", ns, "links", (ctx) => links(ctx.user));
      r.iq("set", ns, "profile-changed", async (ctx) => {
        const ref = parseAccountRef(ctx.payload);
        const res = await svc.profileChanged(ctx.user, ref, parseProfileChange(ctx.payload));
        return xml("profile-changed", {
          xmlns: ns,
          ...accountAttrs(ref),
          targets: String(res.targets),
          ...(res.ignored.length ? { unchanged: res.ignored.join(" ") } : {}),
        });
      });
      for (const cmd of linkedCommands(svc)) rt.adhoc.register(cmd);
    },
  };
}
