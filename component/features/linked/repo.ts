/**
 * The linked-accounts SQL (PROTOCOL.md §22; tables in migrations.ts), portable between SQLite and PostgreSQL
 * (docs/REDESIGN.md §2.1: named parameters, no dialect-only syntax).
 */
import type { AccountId, Sql } from "../../../storage/store.js";
import type { Avatar, Setting } from "../../../stanzas/linked.js";

export interface SetRow {
  id: string;
  nickname: string | null;
  status: string | null;
  avatar: Avatar | null;
  createdAt: number;
  updatedAt: number;
}

export interface MemberRow {
  id: string;
  setId: string;
  account?: AccountId;
  connector?: string;
  externalId?: string;
  settings: Setting[];
  /** setting → the hashes of the last values cardlink sent this account (newest last). */
  recent: Record<string, string[]>;
  /** setting → the hash cardlink last published to this account's PEP. */
  published: Record<string, string>;
  createdAt: number;
}

export interface PendingRow {
  id: string;
  from: AccountId;
  to?: AccountId;
  connector?: string;
  externalId?: string;
  settings: Setting[];
  codeHash?: string;
  expiresAt: number;
  createdAt: number;
}

interface RawSet {
  id: string;
  nickname: string | null;
  status: string | null;
  avatar_id: string | null;
  avatar_type: string | null;
  avatar_bytes: number | null;
  avatar_width: number | null;
  avatar_height: number | null;
  avatar_data: string | null;
  created_at: number;
  updated_at: number;
}
interface RawMember {
  id: string;
  set_id: string;
  account_id: number | null;
  connector: string | null;
  external_id: string | null;
  settings: string;
  recent: string;
  published: string;
  created_at: number;
}
interface RawPending {
  id: string;
  from_account: number;
  to_account: number | null;
  connector: string | null;
  external_id: string | null;
  settings: string;
  code_hash: string | null;
  expires_at: number;
  created_at: number;
}

const settingsOf = (s: string): Setting[] => (s === "" ? [] : (s.split(" ") as Setting[]));

const toSet = (r: RawSet): SetRow => ({
  id: r.id,
  nickname: r.nickname,
  status: r.status,
  avatar:
    r.avatar_id === null || r.avatar_data === null
      ? null
      : {
          id: r.avatar_id,
          type: r.avatar_type ?? "",
          bytes: Number(r.avatar_bytes),
          ...(r.avatar_width === null ? {} : { width: Number(r.avatar_width) }),
          ...(r.avatar_height === null ? {} : { height: Number(r.avatar_height) }),
          data: r.avatar_data,
        },
  createdAt: Number(r.created_at),
  updatedAt: Number(r.updated_at),
});

const toMember = (r: RawMember): MemberRow => ({
  id: r.id,
  setId: r.set_id,
  ...(r.account_id === null ? {} : { account: Number(r.account_id) as AccountId }),
  ...(r.connector === null ? {} : { connector: r.connector }),
  ...(r.external_id === null ? {} : { externalId: r.external_id }),
  settings: settingsOf(r.settings),
  recent: JSON.parse(r.recent) as Record<string, string[]>,
  published: JSON.parse(r.published) as Record<string, string>,
  createdAt: Number(r.created_at),
});

const toPending = (r: RawPending): PendingRow => ({
  id: r.id,
  from: Number(r.from_account) as AccountId,
  ...(r.to_account === null ? {} : { to: Number(r.to_account) as AccountId }),
  ...(r.connector === null ? {} : { connector: r.connector }),
  ...(r.external_id === null ? {} : { externalId: r.external_id }),
  settings: settingsOf(r.settings),
  ...(r.code_hash === null ? {} : { codeHash: r.code_hash }),
  expiresAt: Number(r.expires_at),
  createdAt: Number(r.created_at),
});

const MEMBER = "SELECT * FROM link_members";
const PENDING = "SELECT * FROM link_pending";

export const linkedRepo = (q: Sql) => ({
  async set(id: string): Promise<SetRow | undefined> {
    const r = await q.get<RawSet>("SELECT * FROM link_sets WHERE id = :id", { id });
    return r && toSet(r);
  },
  async createSet(id: string, now: number): Promise<void> {
    await q.run("INSERT INTO link_sets (id, created_at, updated_at) VALUES (:id, :now, :now)", { id, now });
  },
  /** Serializes changes of one set (PostgreSQL: the row lock to COMMIT; SQLite has one writer anyway). */
  async touchSet(id: string, now: number): Promise<boolean> {
    return (await q.run("UPDATE link_sets SET updated_at = :now WHERE id = :id", { id, now })).changes > 0;
  },
  async deleteSet(id: string): Promise<void> {
    await q.run("DELETE FROM link_members WHERE set_id = :id", { id });
    await q.run("DELETE FROM link_sets WHERE id = :id", { id });
  },
  async setValues(
    id: string,
    v: { nickname?: string; status?: string; avatar?: Avatar },
    now: number,
  ): Promise<void> {
    if (v.nickname !== undefined)
      await q.run("UPDATE link_sets SET nickname = :v WHERE id = :id", { id, v: v.nickname });
    if (v.status !== undefined)
      await q.run("UPDATE link_sets SET status = :v WHERE id = :id", { id, v: v.status });
    if (v.avatar !== undefined)
      await q.run(
        `UPDATE link_sets SET avatar_id = :aid, avatar_type = :type, avatar_bytes = :bytes, avatar_width = :w,
           avatar_height = :h, avatar_data = :data WHERE id = :id`,
        {
          id,
          aid: v.avatar.id,
          type: v.avatar.type,
          bytes: v.avatar.bytes,
          w: v.avatar.width ?? null,
          h: v.avatar.height ?? null,
          data: v.avatar.data,
        },
      );
    await q.run("UPDATE link_sets SET updated_at = :now WHERE id = :id", { id, now });
  },

  async memberOfAccount(account: AccountId): Promise<MemberRow | undefined> {
    const r = await q.get<RawMember>(`${MEMBER} WHERE account_id = :account`, { account });
    return r && toMember(r);
  },
  async memberOfService(connector: string, externalId: string): Promise<MemberRow | undefined> {
    const r = await q.get<RawMember>(`${MEMBER} WHERE connector = :connector AND external_id = :ext`, {
      connector,
      ext: externalId,
    });
    return r && toMember(r);
  },
  async member(id: string): Promise<MemberRow | undefined> {
    const r = await q.get<RawMember>(`${MEMBER} WHERE id = :id`, { id });
    return r && toMember(r);
  },
  async members(setId: string): Promise<MemberRow[]> {
    return (await q.all<RawMember>(`${MEMBER} WHERE set_id = :setId ORDER BY created_at, id`, { setId })).map(
      toMember,
    );
  },
  async addMember(m: {
    id: string;
    setId: string;
    account?: AccountId;
    connector?: string;
    externalId?: string;
    settings: readonly Setting[];
    now: number;
  }): Promise<void> {
    await q.run(
      `INSERT INTO link_members (id, set_id, account_id, connector, external_id, settings, created_at)
       VALUES (:id, :set_id, :account, :connector, :ext, :settings, :now)`,
      {
        id: m.id,
        set_id: m.setId,
        account: m.account ?? null,
        connector: m.connector ?? null,
        ext: m.externalId ?? null,
        settings: m.settings.join(" "),
        now: m.now,
      },
    );
  },
  async setSettings(id: string, settings: readonly Setting[]): Promise<void> {
    await q.run("UPDATE link_members SET settings = :s WHERE id = :id", { id, s: settings.join(" ") });
  },
  async removeMember(id: string): Promise<void> {
    await q.run("DELETE FROM link_members WHERE id = :id", { id });
  },
  async setRecent(id: string, recent: Record<string, string[]>): Promise<void> {
    await q.run("UPDATE link_members SET recent = :r WHERE id = :id", { id, r: JSON.stringify(recent) });
  },
  async setPublished(id: string, published: Record<string, string>): Promise<void> {
    await q.run("UPDATE link_members SET published = :p WHERE id = :id", {
      id,
      p: JSON.stringify(published),
    });
  },

  async addPending(p: Omit<PendingRow, "createdAt">, now: number): Promise<void> {
    await q.run(
      `INSERT INTO link_pending (id, from_account, to_account, connector, external_id, settings, code_hash,
         expires_at, created_at)
       VALUES (:id, :from, :to, :connector, :ext, :settings, :code, :expires, :now)`,
      {
        id: p.id,
        from: p.from,
        to: p.to ?? null,
        connector: p.connector ?? null,
        ext: p.externalId ?? null,
        settings: p.settings.join(" "),
        code: p.codeHash ?? null,
        expires: p.expiresAt,
        now,
      },
    );
  },
  /** The unexpired request from `from` to the XMPP account `to`. */
  async request(from: AccountId, to: AccountId, now: number): Promise<PendingRow | undefined> {
    const r = await q.get<RawPending>(
      `${PENDING} WHERE from_account = :from AND to_account = :to AND expires_at > :now`,
      { from, to, now },
    );
    return r && toPending(r);
  },
  async verification(
    from: AccountId,
    connector: string,
    externalId: string,
    now: number,
  ): Promise<PendingRow | undefined> {
    const r = await q.get<RawPending>(
      `${PENDING} WHERE from_account = :from AND connector = :connector AND external_id = :ext
         AND expires_at > :now`,
      { from, connector, ext: externalId, now },
    );
    return r && toPending(r);
  },
  /** Unexpired requests and verifications from or to the account, oldest first. */
  async pendingOf(account: AccountId, now: number): Promise<PendingRow[]> {
    return (
      await q.all<RawPending>(
        `${PENDING} WHERE (from_account = :a OR to_account = :a) AND expires_at > :now ORDER BY created_at, id`,
        { a: account, now },
      )
    ).map(toPending);
  },
  async countPendingFrom(from: AccountId, now: number): Promise<number> {
    const r = await q.get<{ n: number }>(
      "SELECT COUNT(*) AS n FROM link_pending WHERE from_account = :from AND expires_at > :now",
      { from, now },
    );
    return Number(r?.n ?? 0);
  },
  async deletePending(id: string): Promise<void> {
    await q.run("DELETE FROM link_pending WHERE id = :id", { id });
  },
  /** Both directions between two XMPP accounts; returns how many went. */
  async deleteRequestsBetween(a: AccountId, b: AccountId): Promise<number> {
    return (
      await q.run(
        `DELETE FROM link_pending WHERE (from_account = :a AND to_account = :b) OR (from_account = :b AND to_account = :a)`,
        { a, b },
      )
    ).changes;
  },
  async deleteExpired(now: number): Promise<number> {
    return (await q.run("DELETE FROM link_pending WHERE expires_at <= :now", { now })).changes;
  },
  async deletePendingOf(account: AccountId): Promise<number> {
    return (
      await q.run("DELETE FROM link_pending WHERE from_account = :a OR to_account = :a", { a: account })
    ).changes;
  },
});

export type LinkedRepo = ReturnType<typeof linkedRepo>;
