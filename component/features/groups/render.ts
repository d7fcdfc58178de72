/**
 * What the groups feature puts on the wire (PROTOCOL.md §21): the IQ result elements and its four stream kinds,
 * rendered at delivery from current state (docs/REDESIGN.md §2.3.2):
 *
 * | kind | coalesce | subject | wake | content |
 * | --- | --- | --- | --- | --- |
 * | `group-invitation` | keep | invitation id | yes | the invitation; moot once answered, withdrawn, hidden or expired |
 * | `group` | replace | group id | no | the group as the lane's member sees it now; moot once not a member |
 * | `group-member` | replace | `<group>/<account>` | no | a co-member joined, left or was removed (payload) |
 * | `group-gone` | replace | group id | yes | the lane's membership ended: removed, or the group deleted (payload) |
 */
import { sharePolicyElement } from "../../../stanzas/cardlink.js";
import { NS } from "../../../stanzas/ns.js";
import type { SharePolicy } from "../../../stanzas/model/policy.js";
import { xml, type Element } from "../../../stanzas/xml.js";
import type { AccountId } from "../../../storage/store.js";
import type { AccountsRead, BareJid } from "../../runtime/accounts/api.js";
import type { PendingEntry, RenderContext, StreamKind } from "../../runtime/queue/api.js";
import { groupsRepo, type GroupRow, type InvitationRow, type Membership, type Role } from "./repo.js";

export const KIND_INVITATION = "group-invitation";
export const KIND_GROUP = "group";
export const KIND_MEMBER = "group-member";
export const KIND_GONE = "group-gone";

const iso = (t: number): string => new Date(t).toISOString();

/** The policy stored in group_members (JSON text, NULL = everything). */
export const parseStoredPolicy = (p: string | null): SharePolicy | null =>
  p === null ? null : (JSON.parse(p) as SharePolicy);

/** A group as one of its members sees it (IQ results, the `groups` list, the `group` kind). */
export async function groupElement(
  accounts: AccountsRead,
  m: Membership,
  o: { xmlns?: boolean } = {},
): Promise<Element> {
  const g = m.group;
  return xml(
    "group",
    {
      xmlns: o.xmlns === false ? undefined : NS.CARDLINK,
      id: g.id,
      name: g.name,
      owner: await accounts.jidOf(g.owner),
      role: m.role,
      invite: g.invite,
      members: String(m.members),
      created: iso(g.createdAt),
      delivery: m.pollSeconds === null ? "push" : "pull",
      interval: m.pollSeconds === null ? undefined : String(m.pollSeconds),
    },
    ...(g.description ? [xml("description", {}, g.description)] : []),
    sharePolicyElement(parseStoredPolicy(m.policy)),
  );
}

/** An invitation as its invitee sees it (the notice and the `group-invitations` list). */
export const invitationElement = (
  i: Pick<InvitationRow, "id" | "expiresAt">,
  g: GroupRow,
  from: BareJid,
  o: { xmlns?: boolean } = {},
): Element =>
  xml("group-invitation", {
    xmlns: o.xmlns === false ? undefined : NS.CARDLINK,
    id: i.id,
    group: g.id,
    name: g.name,
    from,
    expires: iso(i.expiresAt),
  });

/** The body of a `group-member` payload: account ids, never JIDs (§2.3.2). */
export interface MemberNotice {
  group: string;
  member: number;
  status: "joined" | "left" | "removed";
}
/** The body of a `group-gone` payload: the group's name as it was (the row may be gone). */
export interface GoneNotice {
  group: string;
  name: string;
  reason: "removed" | "deleted";
}

const isObject = (p: unknown): p is Record<string, unknown> => typeof p === "object" && p !== null;

async function renderInvitation(r: RenderContext, e: PendingEntry): Promise<Element | null> {
  const repo = groupsRepo(r.read);
  const i = await repo.invitation(e.subject);
  if (!i || i.hidden || i.invitee !== e.lane || i.expiresAt <= r.read.now) return null;
  const g = await repo.group(i.group);
  if (!g) return null;
  return invitationElement(i, g, await r.accounts.jidOf(i.inviter));
}

async function renderGroup(r: RenderContext, e: PendingEntry): Promise<Element | null> {
  const m = (await groupsRepo(r.read).memberships(e.lane)).find((x) => x.group.id === e.subject);
  return m ? groupElement(r.accounts, m) : null;
}

async function renderMember(r: RenderContext, e: PendingEntry): Promise<Element | null> {
  const p = e.payload;
  if (!isObject(p) || typeof p.group !== "string" || typeof p.member !== "number") return null;
  // Moot for a lane that is no longer in the group (it got `group-gone` instead).
  if (!(await groupsRepo(r.read).member(p.group, e.lane))) return null;
  return xml("group-member", {
    xmlns: NS.CARDLINK,
    group: p.group,
    jid: await r.accounts.jidOf(p.member as AccountId),
    status: String(p.status),
  });
}

async function renderGone(r: RenderContext, e: PendingEntry): Promise<Element | null> {
  const p = e.payload;
  if (!isObject(p) || typeof p.group !== "string") return null;
  // Moot if the lane is a member again (re-invited and accepted before delivery).
  if (await groupsRepo(r.read).member(p.group, e.lane)) return null;
  return xml("group-gone", {
    xmlns: NS.CARDLINK,
    group: p.group,
    name: String(p.name),
    reason: String(p.reason),
  });
}

/** Coalescing (DECISIONS.md "Groups: stream kinds"): invitations keep, state notices replace. */
export const GROUP_KINDS: readonly StreamKind[] = [
  { name: KIND_INVITATION, coalesce: "keep", subject: "entity", wake: true, render: renderInvitation },
  { name: KIND_GROUP, coalesce: "replace", subject: "entity", wake: false, render: renderGroup },
  { name: KIND_MEMBER, coalesce: "replace", subject: "entity", wake: false, render: renderMember },
  { name: KIND_GONE, coalesce: "replace", subject: "entity", wake: true, render: renderGone },
];

/** A member of the `group-members` list. */
export const memberElement = (jid: BareJid, role: Role, joinedAt: number): Element =>
  xml("member", { jid, role, joined: iso(joinedAt) });
