/**
 * The groups feature module (issue 10, first part; docs/REDESIGN.md §3.6, PROTOCOL.md §21): groups, roles,
 * invitations by JID, the `group` audience path and its four stream kinds. Registers its IQ routes in the
 * cardlink namespace, an in-tx `exchange.blocked` handler (invitations from a blocked user are hidden) and the
 * `account.deleting` erase handler; sweeps expired invitations every 60 s.
 */
import { parseSharePolicy, requireAttr } from "../../../stanzas/cardlink.js";
import { badRequest, quote } from "../../../stanzas/errors.js";
import { NS } from "../../../stanzas/ns.js";
import { xml, type Element } from "../../../stanzas/xml.js";
import type { FeatureModule, Runtime } from "../../runtime/context.js";
import { detach } from "../../runtime/log.js";
import { pageList } from "../../runtime/paging.js";
import { groupCommands } from "./commands.js";
import { GROUP_MIGRATIONS } from "./migrations.js";
import { GROUP_KINDS, groupElement, invitationElement, memberElement } from "./render.js";
import { GROUP_PATH, INVITE_RULES, type InviteRule } from "./repo.js";
import {
  GroupsService,
  eraseGroupRows,
  hideBlockedInvitations,
  type Delivery,
  type GroupChanges,
} from "./service.js";
import { parseFormat } from "../cards/api.js";

export function groupsServiceFor(rt: Runtime): GroupsService {
  const c = rt.config.groups;
  return new GroupsService({
    uow: rt.uow,
    read: rt.read,
    servedHosts: rt.config.servedHosts,
    maxMembers: c.maxMembers,
    ownedPerUser: c.ownedPerUser,
    joinedPerUser: c.joinedPerUser,
    pendingInvitationsPerGroup: c.pendingInvitationsPerGroup,
    invitationTtlMs: c.invitationTtlSeconds * 1000,
    exemptionsPerUser: c.exemptionsPerUser,
    pollMinSeconds: c.pollMinSeconds,
    pollMaxSeconds: c.pollMaxSeconds,
    codeTtlMs: c.codeTtlSeconds * 1000,
    codesPerUser: c.codesPerUser,
    redeem: {
      failuresPerUser: rt.config.limits.redeemFailuresPerUser,
      failuresPerHost: rt.config.limits.redeemFailuresPerHost,
      windowMs: rt.config.limits.redeemWindowSeconds * 1000,
      maxKeys: rt.config.limits.rateLimiterKeys,
      onLimited: () => rt.metrics.inc("cardlink_rate_limited_total", { op: "group-redeem" }),
    },
  });
}

/** Items per `<group-sync/>` page at most (and the default), as card sync. */
const SYNC_MAX = 200;

function wholeNumber(v: string | undefined, name: string, max: number): number | undefined {
  if (v === undefined) return undefined;
  if (!/^[0-9]{1,16}$/.test(v) || Number(v) > max)
    throw badRequest(`'${name}' must be a whole number from 0 to ${max}`);
  return Number(v);
}

/**
 * `delivery='push|pull'` and `interval` (seconds, with pull): on accept both optional (push by default); on
 * `<group-delivery/>` `delivery` is required. The interval's bounds are the service's (config).
 */
function parseDelivery(el: Element, optional: boolean): Delivery {
  const d = el.attrs.delivery;
  const interval = el.attrs.interval;
  if (d === undefined && optional && interval === undefined) return { pollSeconds: null };
  if (d !== "push" && d !== "pull")
    throw badRequest(`delivery must be push or pull, not '${quote(d ?? "")}'`);
  if (d === "push") {
    if (interval !== undefined) throw badRequest("interval goes with delivery='pull' only");
    return { pollSeconds: null };
  }
  if (interval === undefined || !/^[0-9]{1,9}$/.test(interval))
    throw badRequest("delivery='pull' needs interval, a whole number of seconds");
  return { pollSeconds: Number(interval) };
}

function parseInvite(v: string | undefined): InviteRule | undefined {
  if (v === undefined) return undefined;
  if (!(INVITE_RULES as readonly string[]).includes(v))
    throw badRequest(`invite must be one of ${INVITE_RULES.join(", ")}, not '${quote(v)}'`);
  return v as InviteRule;
}
/** The optional `<share/>` child: absent = share everything (null). */
function parseShare(el: Element) {
  const s = el.getChild("share");
  return s ? parseSharePolicy(s) : null;
}
const descriptionOf = (el: Element): string | undefined => el.getChild("description")?.getText();

export function groupsModule(): FeatureModule {
  let sweeper: NodeJS.Timeout | undefined;
  return {
    name: "groups",
    migrations: GROUP_MIGRATIONS,
    kinds: GROUP_KINDS,
    audiencePaths: [GROUP_PATH],
    onAccountDeleting: eraseGroupRows,
    attach(rt) {
      const svc = groupsServiceFor(rt);
      const ns = NS.CARDLINK;
      const r = rt.router;
      rt.events.onTx("exchange.blocked", hideBlockedInvitations);
      r.iq("set", ns, "group-create", (c) =>
        svc.create(
          c.user,
          requireAttr(c.payload, "name"),
          descriptionOf(c.payload) ?? "",
          parseInvite(c.payload.attrs.invite) ?? "admins",
          parseShare(c.payload),
        ),
      );
      r.iq("set", ns, "group-update", (c) => {
        const changes: GroupChanges = {};
        const name = c.payload.attrs.name;
        const description = descriptionOf(c.payload);
        const invite = parseInvite(c.payload.attrs.invite);
        if (name !== undefined) changes.name = name;
        if (description !== undefined) changes.description = description;
        if (invite !== undefined) changes.invite = invite;
        if (Object.keys(changes).length === 0)
          throw badRequest("nothing to change: name, invite or <description/>");
        return svc.update(c.user, requireAttr(c.payload, "group"), changes);
      });
      r.iq("set", ns, "group-delete", (c) => svc.delete(c.user, requireAttr(c.payload, "group")));
      r.iq("set", ns, "group-leave", (c) => svc.leave(c.user, requireAttr(c.payload, "group")));
      r.iq("set", ns, "group-remove", (c) =>
        svc.remove(c.user, requireAttr(c.payload, "group"), requireAttr(c.payload, "jid")),
      );
      r.iq("set", ns, "group-role", (c) => {
        const role = requireAttr(c.payload, "role");
        if (role !== "admin" && role !== "member")
          throw badRequest(`role must be admin or member, not '${quote(role)}'`);
        return svc.setRole(c.user, requireAttr(c.payload, "group"), requireAttr(c.payload, "jid"), role);
      });
      r.iq("set", ns, "group-transfer", (c) =>
        svc.transfer(c.user, requireAttr(c.payload, "group"), requireAttr(c.payload, "jid")),
      );
      r.iq("set", ns, "group-invite", async (c) => {
        const i = await svc.invite(c.user, requireAttr(c.payload, "group"), requireAttr(c.payload, "jid"));
        return xml("group-invitation", {
          xmlns: ns,
          id: i.id,
          group: i.group,
          jid: i.jid,
          expires: new Date(i.expiresAt).toISOString(),
        });
      });
      r.iq("set", ns, "group-accept", (c) =>
        svc.accept(
          c.user,
          requireAttr(c.payload, "id"),
          parseShare(c.payload),
          parseDelivery(c.payload, true),
        ),
      );
      r.iq("set", ns, "group-delivery", (c) =>
        svc.setDelivery(c.user, requireAttr(c.payload, "group"), parseDelivery(c.payload, false)),
      );
      r.iq("set", ns, "group-code", async (c) => {
        const k = await svc.createCode(c.user, requireAttr(c.payload, "group"));
        return xml("group-code", {
          xmlns: ns,
          code: k.code,
          group: k.group,
          expires: new Date(k.expiresAt).toISOString(),
          uri: `xmpp:${rt.config.domain}?cardlink;group-code=${k.code}`,
        });
      });
      r.iq("set", ns, "group-redeem", (c) =>
        svc.redeemCode(
          c.user,
          requireAttr(c.payload, "code"),
          parseShare(c.payload),
          parseDelivery(c.payload, true),
        ),
      );
      r.iq("set", ns, "group-share", (c) => {
        const share = c.payload.getChild("share");
        if (!share) throw badRequest("<group-share/> needs a <share/> child (empty = the whole card)");
        return svc.setShare(c.user, requireAttr(c.payload, "group"), parseSharePolicy(share));
      });
      r.iq("get", ns, "group-sync", async (c) => {
        const group = requireAttr(c.payload, "group");
        const since = wholeNumber(c.payload.attrs.token, "token", Number.MAX_SAFE_INTEGER) ?? 0;
        const max = wholeNumber(c.payload.attrs.max, "max", 10_000) || SYNC_MAX;
        const s = await svc.sync(
          c.user,
          group,
          since,
          Math.min(max, SYNC_MAX),
          parseFormat(c.payload.attrs.format),
          rt.budget,
        );
        return xml(
          "group-sync",
          { xmlns: ns, group, token: String(s.token), more: String(s.more) },
          ...s.items,
        );
      });
      r.iq("set", ns, "group-decline", (c) => svc.decline(c.user, requireAttr(c.payload, "id")));
      r.iq("set", ns, "group-withdraw", (c) => svc.withdraw(c.user, requireAttr(c.payload, "id")));
      r.iq("set", ns, "group-exempt", (c) => {
        const w = c.payload.attrs.withdraw;
        if (w !== undefined && w !== "true" && w !== "false")
          throw badRequest(`withdraw must be true or false, not '${quote(w)}'`);
        return svc.exempt(
          c.user,
          requireAttr(c.payload, "group"),
          requireAttr(c.payload, "jid"),
          w === "true",
        );
      });
      r.iq("set", ns, "group-unexempt", (c) => svc.unexempt(c.user, requireAttr(c.payload, "jid")));
      r.iq("get", ns, "group-exemptions", async (c) => {
        const page = await pageList(
          c.payload,
          await svc.exemptions(c.user),
          (x) => x.jid,
          (x) => xml("exempt", { jid: x.jid, since: new Date(x.createdAt).toISOString() }),
          rt.budget,
        );
        return xml("group-exemptions", { xmlns: ns }, ...page.items, page.set);
      });
      r.iq("get", ns, "groups", async (c) => {
        const page = await pageList(
          c.payload,
          await svc.groups(c.user),
          (m) => m.group.id,
          (m) => groupElement(rt.accounts, m, { xmlns: false }),
          rt.budget,
        );
        return xml("groups", { xmlns: ns }, ...page.items, page.set);
      });
      r.iq("get", ns, "group-members", async (c) => {
        const group = requireAttr(c.payload, "group");
        const page = await pageList(
          c.payload,
          await svc.members(c.user, group),
          (m) => m.jid,
          (m) => memberElement(m.jid, m.role, m.joinedAt),
          rt.budget,
        );
        return xml("group-members", { xmlns: ns, group }, ...page.items, page.set);
      });
      r.iq("get", ns, "group-invitations", async (c) => {
        const page = await pageList(
          c.payload,
          await svc.invitations(c.user),
          (i) => `${String(i.createdAt).padStart(16, "0")}-${i.id}`,
          (i) => invitationElement({ id: i.id, expiresAt: i.expiresAt }, i.group, i.from, { xmlns: false }),
          rt.budget,
        );
        return xml("group-invitations", { xmlns: ns }, ...page.items, page.set);
      });
      for (const cmd of groupCommands({ svc, budget: rt.budget, domain: rt.config.domain }))
        rt.adhoc.register(cmd);
      sweeper = setInterval(() => detach(rt.log, "group-expire-failed", svc.expire()), 60_000);
      sweeper.unref();
    },
    async stop() {
      clearInterval(sweeper);
    },
  };
}
