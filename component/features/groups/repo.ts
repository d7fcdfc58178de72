/**
 * The groups feature's SQL (migration 3100): groups, group_members (the `group` audience path), invitations and
 * exemptions, keyed by account ids. Portable subset (docs/REDESIGN.md §2.1): texts are module constants, a
 * parameter in a SELECT list carries a CAST, every fan-out is one statement over the group (never one per member).
 * No rule lives here: the checks, their order and the notices are service.ts's.
 */
import type { AccountId, Params, Sql } from "../../../storage/store.js";
import type { AudiencePath } from "../../runtime/audience/api.js";

/**
 * The `group` audience path (§2.5.1, §3.6): m1 (the owner of a card) shows it to m2 (a co-member) under m1's
 * policy for that group; a holder in several groups with the owner has one row per group (the union of views).
 * The `where` clause is the exemptions': X (`owner`) exempting Y (`exempt`) hides X's card from Y on every group
 * they share (service.ts `exempt`).
 */
/**
 * A deleted group's pair (d1 holder, d2 owner) counts as a tombstone only while the two have not been put in a
 * group together since (a membership of a live group they share whose row changed after the deletion): `opened`
 * deletes explicit tombstones of a re-opened pair, and this is the same for the lazy ones. A pair re-connected by
 * a binding is visible (sync drops its tombstone anyway) or, if that closed too, has a newer explicit tombstone.
 */
const DELETED_PAIR_LIVE = `NOT EXISTS (SELECT 1 FROM group_members r1 JOIN group_members r2
    ON r2.group_id = r1.group_id AND r2.account_id = d2.account_id
  WHERE r1.account_id = d1.account_id AND (r1.seq > d1.seq OR r2.seq > d1.seq))`;

export const GROUP_PATH: AudiencePath = {
  name: "group",
  from: "group_members m1 JOIN group_members m2 ON m2.group_id = m1.group_id AND m2.account_id <> m1.account_id",
  owner: "m1.account_id",
  holder: "m2.account_id",
  policy: "m1.policy",
  seq: "CASE WHEN m1.seq > m2.seq THEN m1.seq ELSE m2.seq END",
  where:
    "NOT EXISTS (SELECT 1 FROM group_exemptions x WHERE x.owner = m1.account_id AND x.exempt = m2.account_id)",
  // A member who pulls (poll_seconds set) gets no `card` entries through the group path (PROTOCOL §21.10).
  push: "m2.poll_seconds IS NULL",
  tombstones: {
    // A deleted group's members (migration 3102): every pair of them lost the path at the deletion's seq.
    from: "group_deleted_members d1 JOIN group_deleted_members d2 ON d2.group_id = d1.group_id",
    holder: "d1.account_id",
    owner: "d2.account_id",
    seq: "d1.seq",
    where: DELETED_PAIR_LIVE,
  },
};

export type Role = "owner" | "admin" | "member";
export type InviteRule = "owner" | "admins" | "members";
export const ROLES: readonly Role[] = ["owner", "admin", "member"];
export const INVITE_RULES: readonly InviteRule[] = ["owner", "admins", "members"];

export interface GroupRow {
  id: string;
  name: string;
  description: string;
  owner: AccountId;
  invite: InviteRule;
  createdAt: number;
  seq: number;
}
export interface MemberRow {
  group: string;
  account: AccountId;
  role: Role;
  policy: string | null;
  /** The member's polling interval for the group; null = push. */
  pollSeconds: number | null;
  seq: number;
  joinedAt: number;
}
export interface InvitationRow {
  id: string;
  group: string;
  invitee: AccountId;
  inviter: AccountId;
  hidden: boolean;
  createdAt: number;
  expiresAt: number;
}

interface GroupDb {
  id: string;
  name: string;
  description: string;
  owner: number;
  invite: string;
  created_at: number;
  seq: number;
}
interface MemberDb {
  group_id: string;
  account_id: number;
  role: string;
  policy: string | null;
  poll_seconds: number | null;
  seq: number;
  joined_at: number;
}
interface InvitationDb {
  id: string;
  group_id: string;
  invitee: number;
  inviter: number;
  hidden: number;
  created_at: number;
  expires_at: number;
}

const toGroup = (r: GroupDb): GroupRow => ({
  id: r.id,
  name: r.name,
  description: r.description,
  owner: Number(r.owner) as AccountId,
  invite: r.invite as InviteRule,
  createdAt: Number(r.created_at),
  seq: Number(r.seq),
});
const toMember = (r: MemberDb): MemberRow => ({
  group: r.group_id,
  account: Number(r.account_id) as AccountId,
  role: r.role as Role,
  policy: r.policy,
  pollSeconds: r.poll_seconds === null || r.poll_seconds === undefined ? null : Number(r.poll_seconds),
  seq: Number(r.seq),
  joinedAt: Number(r.joined_at),
});
const toInvitation = (r: InvitationDb): InvitationRow => ({
  id: r.id,
  group: r.group_id,
  invitee: Number(r.invitee) as AccountId,
  inviter: Number(r.inviter) as AccountId,
  hidden: Number(r.hidden) === 1,
  createdAt: Number(r.created_at),
  expiresAt: Number(r.expires_at),
});

const GROUP = "SELECT * FROM groups WHERE id = :id";
const INSERT_GROUP = `INSERT INTO groups (id, name, description, owner, invite, created_at, seq)
VALUES (:id, :name, :description, :owner, :invite, :now, :seq)`;
/** The row lock that serializes one group's changes on PostgreSQL (SQLite has one writer anyway). */
const TOUCH_GROUP = "UPDATE groups SET seq = :seq WHERE id = :id";
const UPDATE_GROUP =
  "UPDATE groups SET name = :name, description = :description, invite = :invite, seq = :seq WHERE id = :id";
const SET_OWNER = "UPDATE groups SET owner = :owner, seq = :seq WHERE id = :id";
const DELETE_GROUP = "DELETE FROM groups WHERE id = :id";
const COUNT_OWNED = "SELECT COUNT(*) AS n FROM groups WHERE owner = :me";

const MEMBER = "SELECT * FROM group_members WHERE group_id = :g AND account_id = :me";
const MEMBERS = "SELECT * FROM group_members WHERE group_id = :g ORDER BY joined_at, account_id";
/** The members of a group but me who take pushed cards (poll_seconds NULL). */
const MEMBER_IDS =
  "SELECT account_id FROM group_members WHERE group_id = :g AND account_id <> :me AND poll_seconds IS NULL";
const COUNT_MEMBERS = "SELECT COUNT(*) AS n FROM group_members WHERE group_id = :g";
const COUNT_JOINED = "SELECT COUNT(*) AS n FROM group_members WHERE account_id = :me";
const MEMBERSHIPS = `SELECT g.*, m.role AS my_role, m.policy AS my_policy, m.poll_seconds AS my_poll,
  (SELECT COUNT(*) FROM group_members c WHERE c.group_id = g.id) AS members
  FROM group_members m JOIN groups g ON g.id = m.group_id WHERE m.account_id = :me ORDER BY g.created_at, g.id`;
const INSERT_MEMBER = `INSERT INTO group_members (group_id, account_id, role, policy, poll_seconds, seq, joined_at)
VALUES (:g, :me, :role, :policy, :poll, :seq, :now)`;
const SET_POLL = "UPDATE group_members SET poll_seconds = :poll WHERE group_id = :g AND account_id = :me";
const UPSERT_DEPARTURE = `INSERT INTO group_departures (group_id, account_id, seq) VALUES (:g, :me, :seq)
  ON CONFLICT (group_id, account_id) DO UPDATE SET seq = excluded.seq`;
const DELETE_DEPARTURES_OF = "DELETE FROM group_departures WHERE account_id = :me";
const SET_ROLE = "UPDATE group_members SET role = :role WHERE group_id = :g AND account_id = :me";
const SET_POLICY =
  "UPDATE group_members SET policy = :policy, seq = :seq WHERE group_id = :g AND account_id = :me";
const DELETE_MEMBER = "DELETE FROM group_members WHERE group_id = :g AND account_id = :me";
const DELETE_MEMBERS = "DELETE FROM group_members WHERE group_id = :g";
/** Who takes over a group its owner leaves for good: the longest-standing admin, else member. */
const SUCCESSOR = `SELECT account_id FROM group_members WHERE group_id = :g AND account_id <> :me
  ORDER BY CASE WHEN role = 'admin' THEN 0 ELSE 1 END, joined_at, account_id LIMIT 1`;

const INVITATION = "SELECT * FROM group_invitations WHERE id = :id";
const INVITATION_OF = "SELECT * FROM group_invitations WHERE group_id = :g AND invitee = :invitee";
const INSERT_INVITATION = `INSERT INTO group_invitations (id, group_id, invitee, inviter, hidden, created_at, expires_at)
VALUES (:id, :g, :invitee, :inviter, :hidden, :now, :expires) ON CONFLICT (group_id, invitee) DO NOTHING`;
const DELETE_INVITATION = "DELETE FROM group_invitations WHERE id = :id";
const COUNT_PENDING = "SELECT COUNT(*) AS n FROM group_invitations WHERE group_id = :g AND expires_at > :now";
const PENDING_FOR = `SELECT * FROM group_invitations WHERE invitee = :me AND hidden = 0 AND expires_at > :now
  ORDER BY created_at, id`;
const PENDING_OF_GROUP = `SELECT * FROM group_invitations WHERE group_id = :g AND expires_at > :now
  ORDER BY created_at, id`;
const INVITATIONS_OF = "SELECT * FROM group_invitations WHERE invitee = :me OR inviter = :me";
const INVITATIONS_IN = "SELECT * FROM group_invitations WHERE group_id = :g";
const EXPIRED = "SELECT * FROM group_invitations WHERE expires_at <= :now ORDER BY expires_at LIMIT :n";
const HIDE_FROM = `UPDATE group_invitations SET hidden = 1 WHERE inviter = :inviter AND invitee = :invitee
  AND hidden = 0 RETURNING id`;
const INSERT_CODE = `INSERT INTO group_codes (code, group_id, creator, created_at, expires_at)
  VALUES (:code, :g, :me, :now, :expires)`;
const CODE = "SELECT * FROM group_codes WHERE code = :code";
const TAKE_CODE = "DELETE FROM group_codes WHERE code = :code";
const COUNT_CODES = "SELECT COUNT(*) AS n FROM group_codes WHERE creator = :me AND expires_at > :now";
const DELETE_EXPIRED_CODES = "DELETE FROM group_codes WHERE expires_at <= :now";
const DELETE_CODES_OF = "DELETE FROM group_codes WHERE creator = :me";

export interface CodeRow {
  code: string;
  group: string;
  creator: AccountId;
  createdAt: number;
  expiresAt: number;
}

/** A group about to be deleted records its members (the lazy pair tombstones, migration 3102). */
const RECORD_DELETED_MEMBERS = `INSERT INTO group_deleted_members (group_id, account_id, seq)
  SELECT m.group_id, m.account_id, CAST(:seq AS BIGINT) FROM group_members m WHERE m.group_id = :g`;
const DELETE_DELETED_MEMBERS_OF = "DELETE FROM group_deleted_members WHERE account_id = :me";
const DELETE_EXEMPTIONS = "DELETE FROM group_exemptions WHERE owner = :me OR exempt = :me";
const EXEMPTION = "SELECT created_at FROM group_exemptions WHERE owner = :me AND exempt = :other";
const INSERT_EXEMPTION = `INSERT INTO group_exemptions (owner, exempt, created_at) VALUES (:me, :other, :now)
  ON CONFLICT (owner, exempt) DO NOTHING`;
const DELETE_EXEMPTION = "DELETE FROM group_exemptions WHERE owner = :me AND exempt = :other";
const COUNT_EXEMPTIONS = "SELECT COUNT(*) AS n FROM group_exemptions WHERE owner = :me";
const EXEMPTIONS_OF = "SELECT exempt, created_at FROM group_exemptions WHERE owner = :me";

/**
 * My tombstones (`:me` the holder), explicit and the group path's lazy ones (deleted groups), the newest per owner:
 * what audience sync reads for me (runtime/audience/compose.ts tombstonesOfHolderSql), narrowed to this path.
 */
const MY_TOMBSTONES = `SELECT t0.owner AS owner, MAX(t0.seq) AS seq FROM (
    SELECT tx.owner AS owner, tx.seq AS seq FROM tombstones tx WHERE tx.holder = :me
    UNION ALL
    SELECT d2.account_id AS owner, d1.seq AS seq FROM group_deleted_members d1
      JOIN group_deleted_members d2 ON d2.group_id = d1.group_id
     WHERE d1.account_id = :me AND d2.account_id <> d1.account_id AND ${DELETED_PAIR_LIVE}) t0
  GROUP BY t0.owner`;

const max2 = (a: string, b: string): string => `CASE WHEN ${a} >= ${b} THEN ${a} ELSE ${b} END`;
/**
 * `<group-sync/>` (PROTOCOL §21.10) for member `:me` of group `:g` after `:since`: co-members with a card whose card,
 * membership (theirs or mine: a join, a share-policy change) or view of them (the mark closed paths and lifted
 * exemptions leave in tombstones) changed — not those who exempt me —, and tombstones of mine whose owner departed
 * from the group or is still in it (an exemption with withdraw). The removed rows are candidates: the service keeps
 * those no path shows any more. Seq-ordered; one statement.
 */
const GROUP_SYNC_ALL = `SELECT m1.account_id AS owner,
    ${max2(max2("c.seq", "m1.seq"), max2("m2.seq", "COALESCE(t.seq, 0)"))} AS changed, 0 AS removed
   FROM group_members m1 JOIN group_members m2 ON m2.group_id = m1.group_id AND m2.account_id = :me
   JOIN cards c ON c.account_id = m1.account_id
   LEFT JOIN (${MY_TOMBSTONES}) t ON t.owner = m1.account_id
  WHERE m1.group_id = :g AND m1.account_id <> :me
    AND NOT EXISTS (SELECT 1 FROM group_exemptions x WHERE x.owner = m1.account_id AND x.exempt = :me)
  UNION ALL
 SELECT t.owner AS owner, t.seq AS changed, 1 AS removed FROM (${MY_TOMBSTONES}) t
  WHERE (
    EXISTS (SELECT 1 FROM group_departures d WHERE d.group_id = :g AND d.account_id = t.owner)
    OR EXISTS (SELECT 1 FROM group_exemptions x JOIN group_members o ON o.account_id = x.owner AND o.group_id = :g
               WHERE x.owner = t.owner AND x.exempt = :me))`;
const GROUP_SYNC = `SELECT s.owner AS owner, s.changed AS changed, s.removed AS removed FROM (${GROUP_SYNC_ALL}) s
  WHERE s.changed > :since ORDER BY s.changed, s.owner, s.removed LIMIT :limit`;
const GROUP_SYNC_AT = `SELECT s.owner AS owner, s.changed AS changed, s.removed AS removed FROM (${GROUP_SYNC_ALL}) s
  WHERE s.changed = :at ORDER BY s.owner, s.removed`;

export interface GroupSyncRow {
  owner: AccountId;
  seq: number;
  removed: boolean;
}

/** A membership row of mine with its group (the `groups` list). */
export interface Membership {
  group: GroupRow;
  role: Role;
  policy: string | null;
  pollSeconds: number | null;
  members: number;
}

const count = async (q: Sql, sql: string, p: Params): Promise<number> =>
  Number((await q.get<{ n: number }>(sql, p))?.n ?? 0);

export const groupsRepo = (q: Sql) => ({
  group: async (id: string): Promise<GroupRow | undefined> => {
    const r = await q.get<GroupDb>(GROUP, { id });
    return r ? toGroup(r) : undefined;
  },
  insertGroup: async (g: GroupRow): Promise<void> => {
    await q.run(INSERT_GROUP, {
      id: g.id,
      name: g.name,
      description: g.description,
      owner: g.owner,
      invite: g.invite,
      now: g.createdAt,
      seq: g.seq,
    });
  },
  touch: async (id: string, seq: number): Promise<void> => {
    await q.run(TOUCH_GROUP, { id, seq });
  },
  updateGroup: async (g: Pick<GroupRow, "id" | "name" | "description" | "invite">, seq: number) => {
    await q.run(UPDATE_GROUP, { ...g, seq });
  },
  setOwner: async (id: string, owner: AccountId, seq: number): Promise<void> => {
    await q.run(SET_OWNER, { id, owner, seq });
  },
  deleteGroup: async (id: string): Promise<void> => {
    await q.run(DELETE_MEMBERS, { g: id });
    await q.run(DELETE_GROUP, { id });
  },
  countOwned: (me: AccountId): Promise<number> => count(q, COUNT_OWNED, { me }),

  member: async (g: string, me: AccountId): Promise<MemberRow | undefined> => {
    const r = await q.get<MemberDb>(MEMBER, { g, me });
    return r ? toMember(r) : undefined;
  },
  members: async (g: string): Promise<MemberRow[]> => (await q.all<MemberDb>(MEMBERS, { g })).map(toMember),
  /** The members of `g` but `me` who take pushed cards (ids only): what `opened` needs for a newcomer. */
  pushedIds: async (g: string, me: AccountId): Promise<AccountId[]> =>
    (await q.all<{ account_id: number }>(MEMBER_IDS, { g, me })).map(
      (r) => Number(r.account_id) as AccountId,
    ),
  countMembers: (g: string): Promise<number> => count(q, COUNT_MEMBERS, { g }),
  countJoined: (me: AccountId): Promise<number> => count(q, COUNT_JOINED, { me }),
  memberships: async (me: AccountId): Promise<Membership[]> => {
    const rows = await q.all<
      GroupDb & { my_role: string; my_policy: string | null; my_poll: number | null; members: number }
    >(MEMBERSHIPS, { me });
    return rows.map((r) => ({
      group: toGroup(r),
      role: r.my_role as Role,
      policy: r.my_policy,
      pollSeconds: r.my_poll === null || r.my_poll === undefined ? null : Number(r.my_poll),
      members: Number(r.members),
    }));
  },
  insertMember: async (m: MemberRow): Promise<void> => {
    await q.run(INSERT_MEMBER, {
      g: m.group,
      me: m.account,
      role: m.role,
      policy: m.policy,
      poll: m.pollSeconds,
      seq: m.seq,
      now: m.joinedAt,
    });
  },
  /** The newest committed change number: the token of a complete `<group-sync/>` page (as card sync's). */
  currentSeq: async (): Promise<number> =>
    Number((await q.get<{ value: number }>("SELECT value FROM counters WHERE name = 'seq'"))?.value ?? 0),
  setPoll: async (g: string, me: AccountId, poll: number | null): Promise<void> => {
    await q.run(SET_POLL, { g, me, poll });
  },
  departed: async (g: string, me: AccountId, seq: number): Promise<void> => {
    await q.run(UPSERT_DEPARTURE, { g, me, seq });
  },
  insertCode: async (c: CodeRow): Promise<void> => {
    await q.run(INSERT_CODE, {
      code: c.code,
      g: c.group,
      me: c.creator,
      now: c.createdAt,
      expires: c.expiresAt,
    });
  },
  code: async (code: string): Promise<CodeRow | undefined> => {
    const r = await q.get<{
      code: string;
      group_id: string;
      creator: number;
      created_at: number;
      expires_at: number;
    }>(CODE, { code });
    return r
      ? {
          code: r.code,
          group: r.group_id,
          creator: Number(r.creator) as AccountId,
          createdAt: Number(r.created_at),
          expiresAt: Number(r.expires_at),
        }
      : undefined;
  },
  /** False when another redeem took it first. */
  takeCode: async (code: string): Promise<boolean> => (await q.run(TAKE_CODE, { code })).changes === 1,
  countCodes: (me: AccountId, now: number): Promise<number> => count(q, COUNT_CODES, { me, now }),
  deleteExpiredCodes: async (now: number): Promise<number> =>
    (await q.run(DELETE_EXPIRED_CODES, { now })).changes,
  deleteCodesOf: async (me: AccountId): Promise<void> => {
    await q.run(DELETE_CODES_OF, { me });
  },
  /** Records the members of `g` as a deleted group's (before its rows go): one row per member. */
  recordDeleted: async (g: string, seq: number): Promise<number> =>
    (await q.run(RECORD_DELETED_MEMBERS, { g, seq })).changes,
  deleteDeletedMembersOf: async (me: AccountId): Promise<void> => {
    await q.run(DELETE_DELETED_MEMBERS_OF, { me });
  },
  deleteDeparturesOf: async (me: AccountId): Promise<void> => {
    await q.run(DELETE_DEPARTURES_OF, { me });
  },
  /** One `<group-sync/>` page's rows (PROTOCOL §21.10): see GROUP_SYNC. */
  syncRows: async (g: string, me: AccountId, since: number, limit: number): Promise<GroupSyncRow[]> =>
    (
      await q.all<{ owner: number; changed: number; removed: number }>(GROUP_SYNC, { g, me, since, limit })
    ).map((r) => ({
      owner: Number(r.owner) as AccountId,
      seq: Number(r.changed),
      removed: Number(r.removed) === 1,
    })),
  syncRowsAt: async (g: string, me: AccountId, at: number): Promise<GroupSyncRow[]> =>
    (await q.all<{ owner: number; changed: number; removed: number }>(GROUP_SYNC_AT, { g, me, at })).map(
      (r) => ({
        owner: Number(r.owner) as AccountId,
        seq: Number(r.changed),
        removed: Number(r.removed) === 1,
      }),
    ),
  setRole: async (g: string, me: AccountId, role: Role): Promise<void> => {
    await q.run(SET_ROLE, { g, me, role });
  },
  setPolicy: async (g: string, me: AccountId, policy: string | null, seq: number): Promise<void> => {
    await q.run(SET_POLICY, { g, me, policy, seq });
  },
  deleteMember: async (g: string, me: AccountId): Promise<boolean> =>
    (await q.run(DELETE_MEMBER, { g, me })).changes === 1,
  successor: async (g: string, me: AccountId): Promise<AccountId | undefined> => {
    const r = await q.get<{ account_id: number }>(SUCCESSOR, { g, me });
    return r ? (Number(r.account_id) as AccountId) : undefined;
  },

  invitation: async (id: string): Promise<InvitationRow | undefined> => {
    const r = await q.get<InvitationDb>(INVITATION, { id });
    return r ? toInvitation(r) : undefined;
  },
  invitationOf: async (g: string, invitee: AccountId): Promise<InvitationRow | undefined> => {
    const r = await q.get<InvitationDb>(INVITATION_OF, { g, invitee });
    return r ? toInvitation(r) : undefined;
  },
  /** False when (group, invitee) already has one (a concurrent invite won). */
  insertInvitation: async (i: InvitationRow): Promise<boolean> =>
    (
      await q.run(INSERT_INVITATION, {
        id: i.id,
        g: i.group,
        invitee: i.invitee,
        inviter: i.inviter,
        hidden: i.hidden ? 1 : 0,
        now: i.createdAt,
        expires: i.expiresAt,
      })
    ).changes === 1,
  deleteInvitation: async (id: string): Promise<void> => {
    await q.run(DELETE_INVITATION, { id });
  },
  countPending: (g: string, now: number): Promise<number> => count(q, COUNT_PENDING, { g, now }),
  pendingFor: async (me: AccountId, now: number): Promise<InvitationRow[]> =>
    (await q.all<InvitationDb>(PENDING_FOR, { me, now })).map(toInvitation),
  pendingOfGroup: async (g: string, now: number): Promise<InvitationRow[]> =>
    (await q.all<InvitationDb>(PENDING_OF_GROUP, { g, now })).map(toInvitation),
  invitationsOf: async (me: AccountId): Promise<InvitationRow[]> =>
    (await q.all<InvitationDb>(INVITATIONS_OF, { me })).map(toInvitation),
  invitationsIn: async (g: string): Promise<InvitationRow[]> =>
    (await q.all<InvitationDb>(INVITATIONS_IN, { g })).map(toInvitation),
  expired: async (now: number, n: number): Promise<InvitationRow[]> =>
    (await q.all<InvitationDb>(EXPIRED, { now, n })).map(toInvitation),
  /** Invitations from `inviter` to `invitee` become hidden (the invitee blocked the inviter); their ids. */
  hideFrom: async (inviter: AccountId, invitee: AccountId): Promise<string[]> =>
    (await q.all<{ id: string }>(HIDE_FROM, { inviter, invitee })).map((r) => r.id),
  deleteExemptionsOf: async (me: AccountId): Promise<void> => {
    await q.run(DELETE_EXEMPTIONS, { me });
  },
  /** `me` exempts `other` (from receiving my card through groups) since this time, or undefined. */
  exemption: async (me: AccountId, other: AccountId): Promise<number | undefined> => {
    const r = await q.get<{ created_at: number }>(EXEMPTION, { me, other });
    return r ? Number(r.created_at) : undefined;
  },
  /** False when the row was already there (a concurrent exemption won). */
  insertExemption: async (me: AccountId, other: AccountId, now: number): Promise<boolean> =>
    (await q.run(INSERT_EXEMPTION, { me, other, now })).changes === 1,
  deleteExemption: async (me: AccountId, other: AccountId): Promise<boolean> =>
    (await q.run(DELETE_EXEMPTION, { me, other })).changes === 1,
  countExemptions: (me: AccountId): Promise<number> => count(q, COUNT_EXEMPTIONS, { me }),
  exemptionsOf: async (me: AccountId): Promise<Array<{ exempt: AccountId; createdAt: number }>> =>
    (await q.all<{ exempt: number; created_at: number }>(EXEMPTIONS_OF, { me })).map((r) => ({
      exempt: Number(r.exempt) as AccountId,
      createdAt: Number(r.created_at),
    })),
});

// ---- set-based statements (one each, whatever the group's size) ----------------------------------------------

/** Every co-member's card into the newcomer's lane (appendSelect of `card`): one statement. */
export const coMemberCards = (g: string, me: AccountId): { sql: string; params: Params } => ({
  sql: `SELECT CAST(:me AS BIGINT) AS lane, CAST(m.account_id AS TEXT) AS subject, m.account_id AS subject_account,
          CAST(NULL AS BIGINT) AS payload_id
     FROM group_members m JOIN cards c ON c.account_id = m.account_id
    WHERE m.group_id = :g AND m.account_id <> :me`,
  params: { g, me },
});

/** Tombstones co-members who pull held of the newcomer go (opened() clears those of the members it pushes to). */
export const CLEAR_PULLERS_TOMBSTONES = `DELETE FROM tombstones WHERE owner = :me
  AND holder IN (SELECT account_id FROM group_members WHERE group_id = :g AND account_id <> :me
                 AND poll_seconds IS NOT NULL)`;

/** Tombstones the newcomer held for co-members go (opened() clears only the newcomer-as-owner side). */
export const CLEAR_NEWCOMER_TOMBSTONES = `DELETE FROM tombstones WHERE holder = :me
  AND owner IN (SELECT account_id FROM group_members WHERE group_id = :g AND account_id <> :me)`;

/** A notice to every member of `g` but `me` (appendSelect; entity subject, one shared payload). */
export const noticeToMembers = (
  g: string,
  me: AccountId,
  subject: string,
  payload: number,
): { sql: string; params: Params } => ({
  sql: `SELECT m.account_id AS lane, CAST(:subject AS TEXT) AS subject, CAST(NULL AS BIGINT) AS subject_account,
          CAST(:payload AS BIGINT) AS payload_id
     FROM group_members m WHERE m.group_id = :g AND m.account_id <> :me`,
  params: { g, me, subject, payload },
});

/** The `group` kind to every member of `g` (subject = group id, no payload). */
export const groupToMembers = (g: string): { sql: string; params: Params } => ({
  sql: `SELECT m.account_id AS lane, CAST(:g AS TEXT) AS subject, CAST(NULL AS BIGINT) AS subject_account,
          CAST(NULL AS BIGINT) AS payload_id
     FROM group_members m WHERE m.group_id = :g`,
  params: { g },
});

/**
 * The pairs a member leaving `g` closes, both ways, after its row went: (me, m) and (m, me) for every remaining
 * member m (audience closedSet).
 */
export const leaverPairs = (g: string, me: AccountId): { sql: string; params: Params } => ({
  sql: `SELECT CAST(:me AS BIGINT) AS owner, m.account_id AS holder FROM group_members m WHERE m.group_id = :g
        UNION ALL
        SELECT m.account_id AS owner, CAST(:me AS BIGINT) AS holder FROM group_members m WHERE m.group_id = :g`,
  params: { g, me },
});

/** A deleted group's former members (audience closedAmong): their rows in group_deleted_members. */
export const deletedMembers = (g: string): { sql: string; params: Params } => ({
  sql: "SELECT dm.account_id AS account FROM group_deleted_members dm WHERE dm.group_id = :grp_deleted",
  params: { grp_deleted: g },
});
