/**
 * The groups rules (issue 10, first part; docs/REDESIGN.md §3.6): groups, roles, invitations by JID and the
 * `group` audience path. Every operation is ONE unit of work: its checks, its writes and its notices commit or
 * roll back together, so a refused request writes nothing (it throws inside the unit of work). Changes of one
 * group are serialized by an UPDATE of its row (`touch`: a row lock to COMMIT on PostgreSQL; SQLite has one
 * writer), taken before the checks that count members or invitations.
 *
 * Cost per member: joining is O(1) statements plus the fan-out rows (the member row, `opened` — one tombstone
 * DELETE and one `card` append over the co-member list —, one `appendSelect` of the co-members' cards into the
 * newcomer's lane, one tombstone DELETE the other way, one notice `appendSelect`); leaving is the same shape
 * through `audience.closedSet`. No statement runs per member.
 *
 * Privacy (as exchange requests): an invitation to a JID that never used cardlink ensures a placeholder account,
 * so the rows and the answer are the same whether that user exists; an invitation to a user who blocks the
 * inviter is stored hidden — the inviter sees a pending invitation that is never answered, exactly like one the
 * invitee ignores, and the invitee never sees it.
 */
import { randomUUID } from "node:crypto";
import { StanzaError, badRequest, conflict, forbidden, notFound, quote } from "../../../stanzas/errors.js";
import type { SharePolicy } from "../../../stanzas/model/policy.js";
import { xml, type Element } from "../../../stanzas/xml.js";
import type { AccountId } from "../../../storage/store.js";
import type { BareJid } from "../../runtime/accounts/api.js";
import { userJid } from "../../runtime/jid.js";
import type { Reader, UnitOfWork, Uow } from "../../runtime/uow.js";
import type { StanzaBudget } from "../../runtime/budget.js";
import { cardFor, getCard, type Format } from "../cards/api.js";
import { blocks, newCode, normalizeCode } from "../exchange/api.js";
import { RateLimiter, retryText } from "../../runtime/ratelimit.js";
import {
  GROUP_KINDS,
  KIND_GONE,
  KIND_GROUP,
  KIND_INVITATION,
  KIND_MEMBER,
  groupElement,
  type GoneNotice,
  type MemberNotice,
} from "./render.js";
import {
  CLEAR_NEWCOMER_TOMBSTONES,
  CLEAR_PULLERS_TOMBSTONES,
  coMemberCards,
  deletedMembers,
  groupToMembers,
  groupsRepo,
  leaverPairs,
  noticeToMembers,
  type GroupRow,
  type GroupSyncRow,
  type InvitationRow,
  type InviteRule,
  type MemberRow,
  type Membership,
  type Role,
} from "./repo.js";

declare module "../../runtime/events.js" {
  interface DomainEvents {
    "group.member-added": { group: string; member: AccountId };
    "group.member-removed": { group: string; member: AccountId };
    "group.deleted": { group: string };
  }
}

export const NAME_MAX = 100;
export const DESCRIPTION_MAX = 1000;

export interface GroupsOptions {
  uow: Uow;
  read: Reader;
  servedHosts: readonly string[];
  maxMembers: number;
  ownedPerUser: number;
  joinedPerUser: number;
  pendingInvitationsPerGroup: number;
  invitationTtlMs: number;
  exemptionsPerUser: number;
  /** Bounds of a member's polling interval (`groups.pollMinSeconds`, `groups.pollMaxSeconds`). */
  pollMinSeconds: number;
  pollMaxSeconds: number;
  /** Group codes: lifetime, unused ones per creator, and the redeem limits (config.limits, as exchange codes). */
  codeTtlMs: number;
  codesPerUser: number;
  redeem: {
    failuresPerUser: number;
    failuresPerHost: number;
    windowMs: number;
    maxKeys: number;
    onLimited?: () => void;
  };
  clock?: () => number;
}

/** How a member takes a group's cards: pushed (null) or pulled every `pollSeconds` (PROTOCOL §21.10). */
export type Delivery = { pollSeconds: number | null };

export interface GroupChanges {
  name?: string;
  description?: string;
  invite?: InviteRule;
}
export interface InvitationCreated {
  id: string;
  group: string;
  jid: BareJid;
  expiresAt: number;
}
export interface ListedMember {
  jid: BareJid;
  role: Role;
  joinedAt: number;
}
export interface ListedExemption {
  jid: BareJid;
  createdAt: number;
}
export interface ListedInvitation {
  id: string;
  group: GroupRow;
  from: BareJid;
  createdAt: number;
  expiresAt: number;
}

/** Group names and descriptions: trimmed, bounded, no control characters. */
export function checkName(v: string): string {
  const s = v.trim();
  if (s === "" || [...s].length > NAME_MAX || hasControl(s, false))
    throw badRequest(`a group name is 1 to ${NAME_MAX} characters without control characters`);
  return s;
}
export function checkDescription(v: string): string {
  const s = v.trim();
  if ([...s].length > DESCRIPTION_MAX || hasControl(s, true))
    throw badRequest(
      `a group description is at most ${DESCRIPTION_MAX} characters without control characters`,
    );
  return s;
}
/** C0/C1 control characters (a description may hold line breaks and tabs). */
function hasControl(s: string, lines: boolean): boolean {
  for (const ch of s) {
    const c = ch.codePointAt(0) ?? 0;
    if (lines && (c === 0x0a || c === 0x09)) continue;
    if (c < 0x20 || (c >= 0x7f && c <= 0x9f)) return true;
  }
  return false;
}

const RANK: Record<Role, number> = { owner: 0, admin: 1, member: 2 };
/** The roles the invite rule lets invite. */
const mayInvite = (rule: InviteRule, role: Role): boolean =>
  rule === "members" || role === "owner" || (rule === "admins" && role === "admin");

export class GroupsService {
  private readonly redeemUser: RateLimiter;
  private readonly redeemHost: RateLimiter;

  constructor(private readonly o: GroupsOptions) {
    const { failuresPerUser, failuresPerHost, windowMs, maxKeys } = o.redeem;
    const now = o.clock ?? Date.now;
    this.redeemUser = new RateLimiter({ limit: failuresPerUser, windowMs, maxKeys, now });
    this.redeemHost = new RateLimiter({ limit: failuresPerHost, windowMs, maxKeys, now });
  }

  // ---- groups --------------------------------------------------------------------------------------------

  /** Creates a group; the creator is its owner and first member, sharing under `policy` (null = everything). */
  async create(
    user: BareJid,
    name: string,
    description: string,
    invite: InviteRule,
    policy: SharePolicy | null,
  ): Promise<Element> {
    const n = checkName(name);
    const d = checkDescription(description);
    return this.o.uow("group.create", async (u) => {
      const me = await u.accounts.ensure(user, { seen: true });
      const g = groupsRepo(u.tx);
      await u.tx.lockAccount(me);
      if ((await g.countOwned(me)) >= this.o.ownedPerUser)
        throw cap(`you own ${this.o.ownedPerUser} groups; delete one or pass its ownership on first`);
      if ((await g.countJoined(me)) >= this.o.joinedPerUser)
        throw cap(`you are in ${this.o.joinedPerUser} groups; leave one first`);
      const seq = await u.seq();
      const row: GroupRow = {
        id: randomUUID(),
        name: n,
        description: d,
        owner: me,
        invite,
        createdAt: u.now,
        seq,
      };
      await g.insertGroup(row);
      await g.insertMember(member(row.id, me, "owner", policy, seq, u.now, null));
      await u.queue.append(KIND_GROUP, [me], { subject: row.id });
      return groupElement(u.accounts, {
        group: row,
        role: "owner",
        pollSeconds: null,
        policy: storedPolicy(policy),
        members: 1,
      });
    });
  }

  /** Renames, re-describes or changes who may invite: name and description by owner or admins, invite by the owner. */
  async update(user: BareJid, id: string, c: GroupChanges): Promise<Element> {
    const name = c.name === undefined ? undefined : checkName(c.name);
    const description = c.description === undefined ? undefined : checkDescription(c.description);
    return this.o.uow("group.update", async (u) => {
      const { g, row, mine, seq } = await this.mine(u, user, id);
      if (mine.role === "member") throw forbidden("only the owner and admins may change the group");
      if (c.invite !== undefined && c.invite !== row.invite && mine.role !== "owner")
        throw forbidden("only the owner may change who may invite");
      const next = {
        id,
        name: name ?? row.name,
        description: description ?? row.description,
        invite: c.invite ?? row.invite,
      };
      await g.updateGroup(next, seq);
      await u.queue.appendSelect(KIND_GROUP, groupToMembers(id));
      return this.view(u, id, mine.account);
    });
  }

  /** Deletes the group (owner only): every member's path closes, every other member is told (`group-gone`). */
  async delete(user: BareJid, id: string): Promise<void> {
    await this.o.uow("group.delete", async (u) => {
      const { mine } = await this.mine(u, user, id);
      if (mine.role !== "owner") throw forbidden("only the owner may delete the group");
      await deleteGroup(u, id, mine.account);
    });
  }

  /** Leaves the group. The owner cannot (transfer ownership or delete the group). */
  async leave(user: BareJid, id: string): Promise<void> {
    await this.o.uow("group.leave", async (u) => {
      const { mine } = await this.mine(u, user, id);
      if (mine.role === "owner")
        throw new StanzaError(
          "not-allowed",
          "the owner cannot leave; transfer ownership or delete the group",
        );
      await removeMember(u, id, mine.account, "left");
    });
  }

  /** Removes a member: the owner removes anyone else, an admin removes members (not admins, not the owner). */
  async remove(user: BareJid, id: string, jidInput: string): Promise<void> {
    const jid = userJid(jidInput, "jid");
    await this.o.uow("group.remove", async (u) => {
      const { g, mine } = await this.mine(u, user, id);
      const target = await this.memberByJid(u, g, id, jid);
      if (target.account === mine.account)
        throw badRequest("you cannot remove yourself; leave the group instead");
      if (target.role === "owner") throw new StanzaError("not-allowed", "the owner cannot be removed");
      if (RANK[mine.role] >= RANK[target.role])
        throw forbidden(
          mine.role === "member"
            ? "only the owner and admins may remove members"
            : "admins may remove members only",
        );
      await removeMember(u, id, target.account, "removed");
    });
  }

  /** Makes a member an admin or an admin a member (owner only). */
  async setRole(user: BareJid, id: string, jidInput: string, role: "admin" | "member"): Promise<void> {
    const jid = userJid(jidInput, "jid");
    await this.o.uow("group.role", async (u) => {
      const { g, mine } = await this.mine(u, user, id);
      if (mine.role !== "owner") throw forbidden("only the owner may change roles");
      const target = await this.memberByJid(u, g, id, jid);
      if (target.role === "owner")
        throw new StanzaError("not-allowed", "the owner's role changes only by a transfer of ownership");
      await g.setRole(id, target.account, role);
      await u.queue.append(KIND_GROUP, [target.account], { subject: id });
    });
  }

  /** Passes ownership to another member (owner only); the former owner becomes an admin. */
  async transfer(user: BareJid, id: string, jidInput: string): Promise<Element> {
    const jid = userJid(jidInput, "jid");
    return this.o.uow("group.transfer", async (u) => {
      const { g, mine, seq } = await this.mine(u, user, id);
      if (mine.role !== "owner") throw forbidden("only the owner may transfer ownership");
      const target = await this.memberByJid(u, g, id, jid);
      if (target.account === mine.account) throw badRequest("you already own this group");
      await u.tx.lockAccount(target.account);
      if ((await g.countOwned(target.account)) >= this.o.ownedPerUser)
        throw cap(`${jid} already owns ${this.o.ownedPerUser} groups`);
      await g.setRole(id, mine.account, "admin");
      await g.setRole(id, target.account, "owner");
      await g.setOwner(id, target.account, seq);
      await u.queue.appendSelect(KIND_GROUP, groupToMembers(id));
      return this.view(u, id, mine.account);
    });
  }

  // ---- invitations ---------------------------------------------------------------------------------------

  async invite(user: BareJid, id: string, jidInput: string): Promise<InvitationCreated> {
    const jid = this.servedJid(jidInput);
    if (jid === user) throw badRequest("you cannot invite yourself");
    return this.o.uow("group.invite", async (u) => {
      const { g, row, mine } = await this.mine(u, user, id);
      if (!mayInvite(row.invite, mine.role))
        throw forbidden(
          row.invite === "owner"
            ? "only the owner may invite to this group"
            : "only the owner and admins may invite to this group",
        );
      // A placeholder for an unknown JID: the same rows as for a known one (§2.2).
      const invitee = await u.accounts.ensure(jid);
      if (await g.member(id, invitee)) throw conflict(`${jid} is already a member`);
      const existing = await g.invitationOf(id, invitee);
      if (existing && existing.expiresAt > u.now)
        throw conflict(`${jid} is already invited (invitation ${existing.id})`);
      if ((await g.countMembers(id)) >= this.o.maxMembers)
        throw cap(`the group has ${this.o.maxMembers} members, the most a group may have`);
      if ((await g.countPending(id, u.now)) >= this.o.pendingInvitationsPerGroup)
        throw cap(
          `the group has ${this.o.pendingInvitationsPerGroup} unanswered invitations; wait for answers or withdraw some`,
          "wait",
        );
      if (existing) await dropInvitation(u, existing); // an expired leftover
      const inv: InvitationRow = {
        id: randomUUID(),
        group: id,
        invitee,
        inviter: mine.account,
        hidden: await blocks(u.tx, invitee, mine.account),
        createdAt: u.now,
        expiresAt: u.now + this.o.invitationTtlMs,
      };
      if (!(await g.insertInvitation(inv))) throw conflict(`${jid} is already invited`);
      if (!inv.hidden) await u.queue.append(KIND_INVITATION, [invitee], { subject: inv.id });
      return { id: inv.id, group: id, jid, expiresAt: inv.expiresAt };
    });
  }

  /**
   * Accepts an invitation: one unit of work joins the group and opens the path both ways — the newcomer's card to
   * every co-member, every co-member's card to the newcomer — with O(1) statements plus the fan-out rows.
   */
  async accept(
    user: BareJid,
    invId: string,
    policy: SharePolicy | null,
    delivery: Delivery = { pollSeconds: null },
  ): Promise<Element> {
    this.checkPoll(delivery.pollSeconds);
    const r = await this.o.uow("group.accept", async (u): Promise<Element | "expired"> => {
      const me = await u.accounts.resolve(user);
      const g = groupsRepo(u.tx);
      const inv = me === undefined ? undefined : await g.invitation(invId);
      if (!inv || inv.invitee !== me || inv.hidden)
        throw notFound(`no group invitation '${quote(invId)}' for you`);
      if (inv.expiresAt <= u.now) {
        await dropInvitation(u, inv);
        return "expired"; // committed, then refused below
      }
      await u.accounts.ensure(user, { seen: true });
      return this.join(u, inv.group, me, policy, delivery, () => dropInvitation(u, inv));
    });
    if (r === "expired") throw new StanzaError("gone", `group invitation ${invId} expired`);
    return r;
  }

  /**
   * `me` joins group `g` (an accepted invitation or a redeemed code): the group row touched, the caps under the
   * account lock, the member row, `consume` (the invitation or code is used up in the same unit of work), and the
   * path opened both ways — a fixed number of statements whatever the group's size.
   */
  private async join(
    u: UnitOfWork,
    group: string,
    me: AccountId,
    policy: SharePolicy | null,
    delivery: Delivery,
    consume: () => Promise<void>,
  ): Promise<Element> {
    const g = groupsRepo(u.tx);
    const seq = await u.seq();
    await g.touch(group, seq);
    await u.tx.lockAccount(me);
    if ((await g.countJoined(me)) >= this.o.joinedPerUser)
      throw cap(`you are in ${this.o.joinedPerUser} groups; leave one first`);
    if ((await g.countMembers(group)) >= this.o.maxMembers)
      throw cap(`the group has ${this.o.maxMembers} members, the most a group may have`, "cancel");
    await g.insertMember(member(group, me, "member", policy, seq, u.now, delivery.pollSeconds));
    await consume();
    await u.queue.retract(KIND_GONE, group, [me]);
    // The path opens both ways: a fixed number of statements whatever the group's size.
    // Members who pull get the newcomer's card by <group-sync/>, not pushed; a newcomer who pulls likewise.
    await u.audience.opened(me, await g.pushedIds(group, me));
    await u.tx.run(CLEAR_PULLERS_TOMBSTONES, { me, g: group });
    await u.tx.run(CLEAR_NEWCOMER_TOMBSTONES, { me, g: group });
    if (delivery.pollSeconds === null) await u.queue.appendSelect("card", coMemberCards(group, me));
    await notifyMembers(u, group, me, "joined");
    await u.queue.append(KIND_GROUP, [me], { subject: group });
    await u.emit("group.member-added", { group, member: me });
    return this.view(u, group, me);
  }

  // ---- group codes (PROTOCOL §21.13) ---------------------------------------------------------------------

  /** A one-time code that joins `id` (whoever may invite may make one). No seq: nothing is delivered. */
  async createCode(user: BareJid, id: string): Promise<{ code: string; group: string; expiresAt: number }> {
    return this.o.uow("group.code", async (u) => {
      const me = await u.accounts.resolve(user);
      const g = groupsRepo(u.tx);
      const mine = me === undefined ? undefined : await g.member(id, me);
      const row = mine ? await g.group(id) : undefined;
      if (!mine || !row) throw notFound(`you are not in a group '${quote(id)}'`);
      if (!mayInvite(row.invite, mine.role))
        throw forbidden(
          row.invite === "owner"
            ? "only the owner may invite to this group"
            : "only the owner and admins may invite to this group",
        );
      await u.tx.lockAccount(mine.account);
      if ((await g.countCodes(mine.account, u.now)) >= this.o.codesPerUser)
        throw cap(
          `you have ${this.o.codesPerUser} unused group codes; use one or wait until one expires`,
          "wait",
        );
      const c = {
        code: newCode(),
        group: id,
        creator: mine.account,
        createdAt: u.now,
        expiresAt: u.now + this.o.codeTtlMs,
      };
      await g.insertCode(c);
      return { code: c.code, group: id, expiresAt: c.expiresAt };
    });
  }

  /**
   * Redeems a group code: joins its group as accepting an invitation does, in one unit of work that also uses the
   * code up. Refusals other than expiry leave the code usable. Failed attempts (no such code, expired) count
   * against the redeemer and their domain (`limits.redeemFailuresPerUser` / `PerHost`, as exchange codes; their own
   * counters), so guessing is bounded.
   */
  async redeemCode(
    user: BareJid,
    input: string,
    policy: SharePolicy | null,
    delivery: Delivery = { pollSeconds: null },
  ): Promise<Element> {
    const code = normalizeCode(input);
    if (!code)
      throw badRequest(`'${quote(input)}' is not a group code (10 letters and digits, e.g. ABCDE-FGH23)`);
    this.checkPoll(delivery.pollSeconds);
    const host = user.slice(user.indexOf("@") + 1);
    const wait = Math.max(this.redeemUser.retryAfter(user), this.redeemHost.retryAfter(host));
    if (wait > 0) {
      this.o.redeem.onLimited?.();
      const who = this.redeemUser.retryAfter(user) > 0 ? "from you" : `from ${host}`;
      throw new StanzaError(
        "policy-violation",
        `too many failed redeem attempts ${who}; retry in ${retryText(wait)}`,
        {
          type: "wait",
        },
      );
    }
    const r = await this.o.uow("group.redeem", async (u): Promise<Element | "missing" | "expired"> => {
      const g = groupsRepo(u.tx);
      const c = await g.code(code);
      if (!c) return "missing";
      if (c.expiresAt <= u.now) {
        await g.takeCode(code);
        return "expired"; // committed, then refused below
      }
      const me = await u.accounts.ensure(user, { seen: true });
      if (await g.member(c.group, me)) throw conflict("you are already a member of this group");
      if (await blocks(u.tx, c.creator, me))
        throw forbidden(`${await u.accounts.jidOf(c.creator)} does not accept you in groups`);
      return this.join(u, c.group, me, policy, delivery, async () => {
        if (!(await g.takeCode(code))) throw notFound("no such group code (it was used just now)");
        const pending = await g.invitationOf(c.group, me);
        if (pending) await dropInvitation(u, pending); // joined by the code: the invitation is moot
      });
    });
    if (r === "missing" || r === "expired") {
      this.redeemUser.hit(user);
      this.redeemHost.hit(host);
      if (r === "missing") throw notFound("no such group code (it may have been used already)");
      throw new StanzaError("gone", "this group code has expired; ask for a new one");
    }
    return r;
  }

  async decline(user: BareJid, invId: string): Promise<void> {
    await this.o.uow("group.decline", async (u) => {
      const me = await u.accounts.resolve(user);
      const inv = me === undefined ? undefined : await groupsRepo(u.tx).invitation(invId);
      if (!inv || inv.invitee !== me || inv.hidden)
        throw notFound(`no group invitation '${quote(invId)}' for you`);
      await dropInvitation(u, inv);
    });
  }

  /** Withdraws an invitation: its inviter, or the group's owner or an admin. */
  async withdraw(user: BareJid, invId: string): Promise<void> {
    await this.o.uow("group.withdraw", async (u) => {
      const me = await u.accounts.resolve(user);
      const g = groupsRepo(u.tx);
      const inv = me === undefined ? undefined : await g.invitation(invId);
      const mine = inv && me !== undefined ? await g.member(inv.group, me) : undefined;
      if (!inv || !mine) throw notFound(`no group invitation '${quote(invId)}' you can withdraw`);
      if (inv.inviter !== me && mine.role === "member")
        throw forbidden("only its inviter, the owner and admins may withdraw an invitation");
      await dropInvitation(u, inv);
    });
  }

  // ---- delivery and pull --------------------------------------------------------------------------------

  /** Sets how I take this group's cards: pushed (`pollSeconds` null) or pulled at that interval. */
  async setDelivery(user: BareJid, id: string, delivery: Delivery): Promise<Element> {
    this.checkPoll(delivery.pollSeconds);
    return this.o.uow("group.delivery", async (u) => {
      const { g, mine } = await this.mine(u, user, id);
      await g.setPoll(id, mine.account, delivery.pollSeconds);
      return this.view(u, id, mine.account);
    });
  }

  /**
   * Changes my share policy for this group (PROTOCOL §21.12): the member row's policy and seq (so pull sync lists my
   * card as changed for every co-member, through the path's seq), and my card, re-filtered, queued for every
   * co-member who pushes (one statement; the renderer applies the union of paths and drops it for those I exempt).
   */
  async setShare(user: BareJid, id: string, policy: SharePolicy | null): Promise<Element> {
    return this.o.uow("group.share", async (u) => {
      const { g, mine, seq } = await this.mine(u, user, id);
      await g.setPolicy(id, mine.account, storedPolicy(policy), seq);
      if (await u.tx.get(HAS_CARD, { owner: mine.account }))
        await u.queue.appendSelect("card", {
          sql: `SELECT m.account_id AS lane, CAST(:subj AS TEXT) AS subject, CAST(:me AS BIGINT) AS subject_account,
                  CAST(NULL AS BIGINT) AS payload_id
             FROM group_members m WHERE m.group_id = :g AND m.account_id <> :me AND m.poll_seconds IS NULL`,
          params: { g: id, me: mine.account, subj: String(mine.account) },
        });
      return this.view(u, id, mine.account);
    });
  }

  /**
   * One `<group-sync/>` page for a member (PROTOCOL §21.10): co-members' cards that changed after `since` as the
   * member sees them (the union of every path's view, as card sync renders them; those who exempt the member are not
   * listed), and `<removed/>` for departed co-members (and those who withdrew their card by an exemption) whose card
   * no path shows any more. Seq-ordered; a page never ends inside a seq; cut at `max` and at the stanza budget.
   */
  async sync(
    user: BareJid,
    id: string,
    since: number,
    max: number,
    format: Format,
    budget: StanzaBudget,
  ): Promise<{ token: number; more: boolean; items: Element[] }> {
    return this.o.read("group.sync", async (r) => {
      const me = await r.accounts.resolve(user);
      const g = groupsRepo(r.read);
      if (me === undefined || !(await g.member(id, me)))
        throw notFound(`you are not in a group '${quote(id)}'`);
      const rows = await g.syncRows(id, me, since, max + 1);
      let pageRows = rows;
      const more = rows.length > max;
      if (more) {
        const next = rows[max] as GroupSyncRow;
        pageRows = rows.slice(0, max);
        if (pageRows[pageRows.length - 1]?.seq === next.seq) {
          const before = pageRows.filter((x) => x.seq < next.seq);
          pageRows = before.length > 0 ? before : await g.syncRowsAt(id, me, next.seq);
        }
      }
      const jids = await r.accounts.jidsOf([...new Set(pageRows.map((x) => x.owner))]);
      // A seq larger than `max` comes whole (never cut inside a seq): then only the budget cuts.
      const page = budget.page(Math.max(max, pageRows.length));
      const items: Array<{ el: Element; seq: number }> = [];
      let cutAt: number | undefined;
      for (const c of pageRows) {
        const owner = jids.get(c.owner);
        if (owner === undefined) continue;
        const policies = await r.audience.policies(c.owner, me);
        let el: Element;
        if (c.removed) {
          if (policies.length > 0) continue; // another path still shows the card: not a removal
          el = xml("removed", { owner });
        } else {
          const stored = await getCard(r.read, c.owner);
          if (!stored || policies.length === 0) continue;
          el = cardFor(stored, owner, policies, format);
        }
        if (!page.add(el)) {
          cutAt = c.seq;
          break;
        }
        items.push({ el, seq: c.seq });
      }
      if (cutAt === undefined) {
        const last = pageRows[pageRows.length - 1];
        const token = more && last ? last.seq : await g.currentSeq();
        return { token, more, items: items.map((i) => i.el) };
      }
      const kept = items.filter((i) => i.seq < (cutAt as number));
      const last = kept[kept.length - 1];
      if (!last)
        throw new StanzaError("resource-constraint", "a change is too large to send; this was logged");
      return { token: last.seq, more: true, items: kept.map((i) => i.el) };
    });
  }

  private checkPoll(p: number | null): void {
    if (p === null) return;
    if (!Number.isInteger(p) || p < this.o.pollMinSeconds || p > this.o.pollMaxSeconds)
      throw badRequest(
        `interval must be a whole number of seconds from ${this.o.pollMinSeconds} to ${this.o.pollMaxSeconds}`,
      );
  }

  // ---- exemptions ----------------------------------------------------------------------------------------

  /**
   * I exempt co-member `jid` (named through a group we share) from receiving my card through groups, on every
   * group we share, from now on: the row hides the pair from the `group` path (its `where`), so the card fan-out,
   * the renderer and sync stop showing me to them through groups; a pending `card` entry of mine renders under
   * what is left (a binding's view) or not at all. With `withdraw`, their copy of my card is withdrawn as a closed
   * path withdraws it (tombstone and retraction, or a refresh narrowed to a binding's view that still shows it).
   * Nothing tells them: an exemption is visible to me only. O(1) statements.
   */
  async exempt(user: BareJid, id: string, jidInput: string, withdraw: boolean): Promise<void> {
    const jid = userJid(jidInput, "jid");
    if (jid === user) throw badRequest("you cannot exempt yourself");
    await this.o.uow("group.exempt", async (u) => {
      const { g, mine } = await this.mine(u, user, id);
      const other = (await this.memberByJid(u, g, id, jid)).account;
      await u.tx.lockAccount(mine.account);
      if ((await g.exemption(mine.account, other)) !== undefined) throw conflict(`you already exempt ${jid}`);
      if ((await g.countExemptions(mine.account)) >= this.o.exemptionsPerUser)
        throw cap(`you exempt ${this.o.exemptionsPerUser} members, the most you may; lift one first`);
      if (!(await g.insertExemption(mine.account, other, u.now))) throw conflict(`you already exempt ${jid}`);
      if (withdraw) await u.audience.closed([[mine.account, other]]);
    });
  }

  /**
   * Lifts my exemption of `jid` (whether or not we still share a group): if a path shows them my card now, they
   * get it (a `card` entry) and their pull sync lists it (the view-change mark in tombstones, as a narrowed path
   * leaves one). O(1) statements.
   */
  async unexempt(user: BareJid, jidInput: string): Promise<void> {
    const jid = userJid(jidInput, "jid");
    await this.o.uow("group.unexempt", async (u) => {
      const me = await u.accounts.resolve(user);
      const other = await u.accounts.resolve(jid);
      const g = groupsRepo(u.tx);
      if (me === undefined || other === undefined || !(await g.deleteExemption(me, other)))
        throw notFound(`you do not exempt ${jid}`);
      if ((await u.audience.policies(me, other)).length === 0) return;
      const seq = await u.seq();
      await u.tx.run(MARK_VIEW, { holder: other, owner: me, seq });
      if (await u.tx.get(HAS_CARD, { owner: me }))
        await u.queue.append("card", [other], { subject: String(me), subjectAccount: me });
    });
  }

  /** The members I exempt (visible to me only), by JID. */
  async exemptions(user: BareJid): Promise<ListedExemption[]> {
    return this.o.read("group.exemptions", async (r) => {
      const me = await r.accounts.resolve(user);
      if (me === undefined) return [];
      const rows = await groupsRepo(r.read).exemptionsOf(me);
      const jids = await r.accounts.jidsOf(rows.map((x) => x.exempt));
      return rows
        .map((x) => ({ jid: jids.get(x.exempt) ?? "", createdAt: x.createdAt }))
        .filter((x) => x.jid !== "")
        .sort((a, b) => (a.jid < b.jid ? -1 : a.jid > b.jid ? 1 : 0));
    });
  }

  // ---- lists ---------------------------------------------------------------------------------------------

  async groups(user: BareJid): Promise<Membership[]> {
    return this.o.read("group.list", async (r) => {
      const me = await r.accounts.resolve(user);
      return me === undefined ? [] : groupsRepo(r.read).memberships(me);
    });
  }

  async members(user: BareJid, id: string): Promise<ListedMember[]> {
    return this.o.read("group.members", async (r) => {
      const me = await r.accounts.resolve(user);
      const g = groupsRepo(r.read);
      if (me === undefined || !(await g.member(id, me)))
        throw notFound(`you are not in a group '${quote(id)}'`);
      const rows = await g.members(id);
      const jids = await r.accounts.jidsOf(rows.map((m) => m.account));
      return rows.map((m) => ({ jid: jids.get(m.account) ?? "", role: m.role, joinedAt: m.joinedAt }));
    });
  }

  /** Invitations waiting for my answer (hidden ones never), oldest first. */
  async invitations(user: BareJid): Promise<ListedInvitation[]> {
    return this.o.read("group.invitations", async (r) => {
      const me = await r.accounts.resolve(user);
      if (me === undefined) return [];
      const g = groupsRepo(r.read);
      const out: ListedInvitation[] = [];
      const rows = await g.pendingFor(me, r.read.now);
      const jids = await r.accounts.jidsOf(rows.map((i) => i.inviter));
      for (const i of rows) {
        const group = await g.group(i.group);
        if (group)
          out.push({
            id: i.id,
            group,
            from: jids.get(i.inviter) ?? "",
            createdAt: i.createdAt,
            expiresAt: i.expiresAt,
          });
      }
      return out;
    });
  }

  /** The sweeper's step: expired invitations go with their undelivered notices (bounded batch). */
  async expire(limit = 500): Promise<number> {
    return this.o.uow("group.expire", async (u) => {
      const rows = await groupsRepo(u.tx).expired(u.now, limit);
      for (const i of rows) await dropInvitation(u, i);
      return rows.length + (await groupsRepo(u.tx).deleteExpiredCodes(u.now));
    });
  }

  // ---- helpers -------------------------------------------------------------------------------------------

  /** My membership of group `id`, with the group row locked (touched) at this unit of work's seq. */
  private async mine(u: UnitOfWork, user: BareJid, id: string) {
    const me = await u.accounts.resolve(user);
    const g = groupsRepo(u.tx);
    const mine = me === undefined ? undefined : await g.member(id, me);
    const row = mine ? await g.group(id) : undefined;
    // One answer for "no such group" and "not yours": a non-member learns nothing about a group id.
    if (!mine || !row) throw notFound(`you are not in a group '${quote(id)}'`);
    await u.accounts.ensure(user, { seen: true });
    const seq = await u.seq();
    await g.touch(id, seq);
    return { g, row, mine, seq };
  }

  private async memberByJid(
    u: UnitOfWork,
    g: ReturnType<typeof groupsRepo>,
    id: string,
    jid: BareJid,
  ): Promise<MemberRow> {
    const acc = await u.accounts.resolve(jid);
    const m = acc === undefined ? undefined : await g.member(id, acc);
    if (!m) throw notFound(`${jid} is not a member of this group`);
    return m;
  }

  private async view(u: UnitOfWork, id: string, me: AccountId): Promise<Element> {
    const m = (await groupsRepo(u.tx).memberships(me)).find((x) => x.group.id === id);
    if (!m) throw new Error(`groups: ${me} is not in ${id} after its own change`);
    return groupElement(u.accounts, m);
  }

  private servedJid(v: string): BareJid {
    const j = userJid(v, "jid");
    const domain = j.slice(j.indexOf("@") + 1);
    if (!this.o.servedHosts.includes(domain))
      throw new StanzaError("not-acceptable", `groups hold users of ${this.o.servedHosts.join(", ")} only`);
    return j;
  }
}

// ---- in-unit-of-work steps shared with the event handlers ---------------------------------------------------

/** The view-change mark (audience/tombstones.ts): a tombstone row of a pair a path shows means "view changed". */
const MARK_VIEW =
  "INSERT INTO tombstones (holder, owner, seq) VALUES (:holder, :owner, :seq) " +
  "ON CONFLICT (holder, owner) DO UPDATE SET seq = excluded.seq";
const HAS_CARD = "SELECT 1 AS one FROM cards WHERE account_id = :owner";

const storedPolicy = (p: SharePolicy | null): string | null => (p ? JSON.stringify(p) : null);
const member = (
  group: string,
  account: AccountId,
  role: Role,
  policy: SharePolicy | null,
  seq: number,
  now: number,
  pollSeconds: number | null,
): MemberRow => ({ group, account, role, policy: storedPolicy(policy), pollSeconds, seq, joinedAt: now });

function cap(text: string, type: "wait" | "cancel" = "cancel"): StanzaError {
  return new StanzaError("resource-constraint", text, { type });
}

/** Deletes an invitation and retracts its undelivered notice. */
async function dropInvitation(u: UnitOfWork, i: InvitationRow): Promise<void> {
  await groupsRepo(u.tx).deleteInvitation(i.id);
  await u.queue.retract(KIND_INVITATION, i.id, [i.invitee]);
}

/** `group-member` to every member of `g` but `who` (one payload, one statement). */
async function notifyMembers(u: UnitOfWork, g: string, who: AccountId, status: MemberNotice["status"]) {
  const body: MemberNotice = { group: g, member: who, status };
  const payload = await u.queue.payload(KIND_MEMBER, { ...body });
  await u.queue.appendSelect(KIND_MEMBER, noticeToMembers(g, who, `${g}/${who}`, payload));
}

/**
 * Takes `who` out of group `g`: the row goes, the others are told (`group-member`), the path closes both ways
 * (tombstones and retraction where no other path still connects the pair, a refreshed `card` where one does), and
 * a removed member is told (`group-gone`).
 */
export async function removeMember(
  u: UnitOfWork,
  g: string,
  who: AccountId,
  status: "left" | "removed",
): Promise<void> {
  const repo = groupsRepo(u.tx);
  const row = await repo.group(g);
  await repo.deleteMember(g, who);
  await repo.departed(g, who, await u.seq());
  await notifyMembers(u, g, who, status);
  await u.audience.closedSet(leaverPairs(g, who));
  await u.queue.retract(KIND_GROUP, g, [who]);
  if (status === "removed" && row) {
    const body: GoneNotice = { group: g, name: row.name, reason: "removed" };
    const payload = await u.queue.payload(KIND_GONE, { ...body });
    await u.queue.append(KIND_GONE, [who], { subject: g, payload });
  }
  await u.emit("group.member-removed", { group: g, member: who });
}

/** Deletes group `g` (its invitations with their notices): every pair of former members closes; `by` is not told. */
export async function deleteGroup(u: UnitOfWork, g: string, by: AccountId | undefined): Promise<void> {
  const repo = groupsRepo(u.tx);
  const row = await repo.group(g);
  if (!row) return;
  const ids = (await repo.members(g)).map((m) => m.account);
  for (const i of await repo.invitationsIn(g)) await dropInvitation(u, i);
  // One row per member, not one tombstone per pair (members², DECISIONS.md "Group deletion without pair
  // tombstones"): sync reads every pair of them as closed at this seq (GROUP_PATH.tombstones).
  if (ids.length > 1) await repo.recordDeleted(g, await u.seq());
  await repo.deleteGroup(g);
  if (ids.length > 1) await u.audience.closedAmong(deletedMembers(g));
  const told = ids.filter((m) => m !== by);
  await u.queue.retract(KIND_GROUP, g, ids);
  if (told.length > 0) {
    const body: GoneNotice = { group: g, name: row.name, reason: "deleted" };
    const payload = await u.queue.payload(KIND_GONE, { ...body });
    await u.queue.append(KIND_GONE, told, { subject: g, payload });
  }
  await u.emit("group.deleted", { group: g });
}

/**
 * `account.deleting`: the account leaves every group — a group it owns passes to its longest-standing admin
 * (else member), and is deleted when it has no other member —; its invitations (sent and received) and
 * exemptions go.
 */
export async function eraseGroupRows(u: UnitOfWork, e: { account: AccountId }): Promise<void> {
  const me = e.account;
  const repo = groupsRepo(u.tx);
  for (const i of await repo.invitationsOf(me)) await dropInvitation(u, i);
  for (const m of await repo.memberships(me)) {
    const g = m.group.id;
    const seq = await u.seq();
    await repo.touch(g, seq);
    if (m.role === "owner") {
      const next = await repo.successor(g, me);
      if (next === undefined) {
        await deleteGroup(u, g, me);
        continue;
      }
      await repo.setRole(g, next, "owner");
      await repo.setOwner(g, next, seq);
    }
    await removeMember(u, g, me, "left");
    await u.queue.appendSelect(KIND_GROUP, groupToMembers(g));
  }
  await repo.deleteExemptionsOf(me);
  await repo.deleteDeparturesOf(me);
  await repo.deleteDeletedMembersOf(me);
  await repo.deleteCodesOf(me);
}

/**
 * `exchange.blocked`: the blocker's pending invitations from the blocked user become hidden — their notices are
 * retracted, the invitee no longer sees or can accept them, and the inviter still sees them pending until they
 * expire (as one that is ignored).
 */
export async function hideBlockedInvitations(
  u: UnitOfWork,
  e: { owner: AccountId; blocked: AccountId },
): Promise<void> {
  for (const id of await groupsRepo(u.tx).hideFrom(e.blocked, e.owner))
    await u.queue.retract(KIND_INVITATION, id, [e.owner]);
}

export { GROUP_KINDS };
