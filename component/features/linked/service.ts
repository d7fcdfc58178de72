/**
 * The linked-accounts rules (issue 11; PROTOCOL.md §22). One person's accounts form a *set*: XMPP accounts (on a
 * served host or elsewhere) and accounts of configured services (webhook connectors). Every operation is one unit
 * of work; a refused request throws inside it and writes nothing.
 *
 * - Linking two XMPP accounts takes a request from one and an accept from the other, each authenticated by its own
 *   server (the request's `from`). A service account is verified by its connector: cardlink sends the service a
 *   one-time code (webhook `linked.verify`), the user types it back. No password of any service is ever stored.
 * - A change arrives as `<profile-changed/>` naming the account it was made on. It becomes the set's current
 *   value, and every other member that syncs that setting gets one sync message, rendered from the set's values
 *   when it is sent: XMPP accounts on served hosts through the `linked-xmpp` channel (XEP-0356 PEP publish where
 *   granted, else a `linked-profile` update to the account's clients), other XMPP accounts as that update, service
 *   accounts as a `linked.sync` webhook.
 * - Loops: cardlink learns changes only from explicit reports (not from PEP notifications: DECISIONS.md), and a
 *   report of a value cardlink itself recently sent that account (`recent`), or of the set's current value, is no
 *   change: it is answered and propagates nothing.
 */
import { createHash, randomInt, randomUUID, timingSafeEqual } from "node:crypto";
import { StanzaError, badRequest, conflict, notFound, quote } from "../../../stanzas/errors.js";
import type { AccountRef, Avatar, ProfileChange, Setting } from "../../../stanzas/linked.js";
import type { AccountId, ReadTx } from "../../../storage/store.js";
import type { Json } from "../../runtime/queue/api.js";
import type { BareJid } from "../../runtime/accounts/api.js";
import { userJid } from "../../runtime/jid.js";
import { RateLimiter, retryText } from "../../runtime/ratelimit.js";
import type { Reader, UnitOfWork, Uow } from "../../runtime/uow.js";
import { WEBHOOK_CHANNEL, webhookJob } from "../../runtime/webhooks/api.js";
import { checkAvatar } from "./avatar.js";
import { KIND_LINKS, KIND_PROFILE, KIND_REQUEST } from "./render.js";
import { linkedRepo, type MemberRow, type PendingRow, type SetRow } from "./repo.js";

export const LINKED_CHANNEL = "linked-xmpp";
/** The webhook event types this feature sends (PROTOCOL §22.7). */
export const EVENT_VERIFY = "linked.verify";
export const EVENT_SYNC = "linked.sync";
export const EVENT_UNLINKED = "linked.unlinked";

/** How many recently sent values per setting and account the echo guard remembers. */
const RECENT = 3;
/** PEP can carry these; the status text reaches clients as an update only (PROTOCOL §22.6). */
export const PEP_SETTINGS: readonly Setting[] = ["nickname", "avatar"];

export interface LinkedOptions {
  readonly uow: Uow;
  readonly read: Reader;
  readonly servedHosts: readonly string[];
  /** The configured connectors: name → the settings its service takes. */
  readonly services: ReadonlyMap<string, readonly Setting[]>;
  readonly maxAccounts: number;
  readonly pendingPerUser: number;
  readonly requestTtlMs: number;
  readonly codeTtlMs: number;
  readonly codeFailures: RateLimiter;
  readonly maxNicknameLength: number;
  readonly maxStatusLength: number;
  readonly maxAvatarBytes: number;
}

/** The job body of a sync message to an XMPP account on a served host (channel.ts renders it when it is sent). */
export interface SyncBody {
  [k: string]: Json;
  member: string;
  from: { [k: string]: string };
}

/** A member as the `<links/>` list shows it. */
export interface MemberView {
  ref: AccountRef;
  settings: Setting[];
  self: boolean;
}
export interface PendingView {
  ref: AccountRef;
  direction: "out" | "in";
  settings: Setting[];
  expiresAt: number;
}
export interface LinksView {
  members: MemberView[];
  pending: PendingView[];
}

/** The value's hash as the echo guard and `published` compare it: the avatar by its id. */
export function valueHash(s: Setting, v: string | Avatar): string {
  return typeof v === "string" ? createHash("sha1").update(`${s}\u0000${v}`).digest("hex") : `avatar:${v.id}`;
}

export const codeHash = (code: string): string => createHash("sha256").update(code).digest("hex");

const codePoints = (s: string): number => [...s].length;
const hostOf = (jid: string): string => jid.slice(jid.indexOf("@") + 1);

/** The set's current value of a setting, or null when the set has none yet. */
export function currentValue(set: SetRow, s: Setting): string | Avatar | null {
  return s === "avatar" ? set.avatar : s === "nickname" ? set.nickname : set.status;
}

export class LinkedService {
  constructor(private readonly o: LinkedOptions) {}

  private served(jid: string): boolean {
    return this.o.servedHosts.includes(hostOf(jid));
  }

  private serviceSettings(service: string): readonly Setting[] {
    const s = this.o.services.get(service);
    if (!s) {
      const known = [...this.o.services.keys()];
      throw new StanzaError(
        "feature-not-implemented",
        `service '${quote(service)}' is not supported here` +
          (known.length ? ` (supported: ${known.join(", ")})` : " (no service is configured)"),
      );
    }
    return s;
  }

  private checkServiceSettings(service: string, settings: readonly Setting[]): void {
    const allowed = this.serviceSettings(service);
    const extra = settings.filter((s) => !allowed.includes(s));
    if (extra.length)
      throw new StanzaError(
        "not-acceptable",
        `service '${quote(service)}' syncs ${allowed.join(", ") || "nothing"}; not ${extra.join(", ")}`,
      );
  }

  /** The caller's member row, or undefined when it is in no set. */
  private async me(u: UnitOfWork, user: BareJid): Promise<{ id: AccountId; member?: MemberRow }> {
    const id = await u.accounts.ensure(user, { seen: true });
    const member = await linkedRepo(u.tx).memberOfAccount(id);
    return member ? { id, member } : { id };
  }

  private async roomFor(u: UnitOfWork, setId: string | undefined, adding: number): Promise<void> {
    const n = setId === undefined ? 1 : (await linkedRepo(u.tx).members(setId)).length;
    if (n + adding > this.o.maxAccounts)
      throw new StanzaError(
        "resource-constraint",
        `a linked set holds at most ${this.o.maxAccounts} accounts; unlink one first`,
        { type: "cancel" },
      );
  }

  private async pendingRoom(u: UnitOfWork, me: AccountId): Promise<void> {
    if ((await linkedRepo(u.tx).countPendingFrom(me, u.now)) >= this.o.pendingPerUser)
      throw new StanzaError(
        "policy-violation",
        `at most ${this.o.pendingPerUser} link requests may wait at once; withdraw one (unlink) or wait`,
        { type: "wait" },
      );
  }

  /** §22.2: ask the XMPP account `to` to join my set. */
  async request(user: BareJid, toJid: string, settings: readonly Setting[]): Promise<PendingRow> {
    const to = userJid(toJid, "jid");
    if (to === user) throw badRequest("an account cannot link itself");
    return this.o.uow("linked.request", async (u) => {
      const me = await this.me(u, user);
      const peer = await u.accounts.ensure(to);
      const repo = linkedRepo(u.tx);
      const theirs = await repo.memberOfAccount(peer);
      if (me.member && theirs?.setId === me.member.setId) throw conflict(`${to} is already linked`);
      await this.roomFor(u, me.member?.setId, 1);
      // A request already waiting is renewed (new settings, new expiry), not doubled.
      const old = await repo.request(me.id, peer, u.now);
      if (old) await repo.deletePending(old.id);
      else await this.pendingRoom(u, me.id);
      await repo.deleteExpired(u.now);
      const row: PendingRow = {
        id: randomUUID(),
        from: me.id,
        to: peer,
        settings: [...settings],
        expiresAt: u.now + this.o.requestTtlMs,
        createdAt: u.now,
      };
      await repo.addPending(row, u.now);
      // The other account's clients are told (delivered when they are online; any client can also list it).
      await u.queue.append(KIND_REQUEST, [peer], { subject: row.id });
      return row;
    });
  }

  /** §22.3: accept `fromJid`'s request; the two sets (or single accounts) become one. */
  async accept(user: BareJid, fromJid: string, settings: readonly Setting[]): Promise<void> {
    const from = userJid(fromJid, "jid");
    await this.o.uow("linked.accept", async (u) => {
      const me = await this.me(u, user);
      const repo = linkedRepo(u.tx);
      const requester = await u.accounts.resolve(from);
      const req = requester === undefined ? undefined : await repo.request(requester, me.id, u.now);
      if (!req || requester === undefined) throw notFound(`no link request from ${from} is waiting`);
      const theirs = await repo.memberOfAccount(requester);
      if (me.member && theirs && me.member.setId !== theirs.setId)
        throw conflict("both accounts are already in different linked sets; unlink one of them first");
      await repo.deletePending(req.id);
      if (me.member && theirs) return; // already together (a duplicate accept)
      const setId = theirs?.setId ?? me.member?.setId;
      await this.roomFor(u, setId, 1);
      let target = setId;
      if (target === undefined) {
        target = randomUUID();
        await repo.createSet(target, u.now);
      } else await repo.touchSet(target, u.now);
      if (!theirs)
        await repo.addMember({
          id: randomUUID(),
          setId: target,
          account: requester,
          settings: req.settings,
          now: u.now,
        });
      if (!me.member)
        await repo.addMember({
          id: randomUUID(),
          setId: target,
          account: me.id,
          settings: [...settings],
          now: u.now,
        });
      await this.announce(u, target);
    });
  }

  /** §22.4: start linking an account of a service; its connector gets the one-time code. */
  async linkService(
    user: BareJid,
    service: string,
    account: string,
    settings: readonly Setting[],
  ): Promise<PendingRow> {
    this.checkServiceSettings(service, settings);
    return this.o.uow("linked.service", async (u) => {
      const me = await this.me(u, user);
      const repo = linkedRepo(u.tx);
      const taken = await repo.memberOfService(service, account);
      if (taken)
        throw conflict(
          taken.setId === me.member?.setId
            ? `${service} account '${quote(account)}' is already linked`
            : `${service} account '${quote(account)}' is linked to other accounts; unlink it there first`,
        );
      await this.roomFor(u, me.member?.setId, 1);
      const old = await repo.verification(me.id, service, account, u.now);
      if (old) await repo.deletePending(old.id);
      else await this.pendingRoom(u, me.id);
      await repo.deleteExpired(u.now);
      // Six digits from the CSPRNG: guessing is bounded by codeFailuresPerUser per window.
      const code = String(randomInt(0, 1_000_000)).padStart(6, "0");
      const row: PendingRow = {
        id: randomUUID(),
        from: me.id,
        connector: service,
        externalId: account,
        settings: [...settings],
        codeHash: codeHash(code),
        expiresAt: u.now + this.o.codeTtlMs,
        createdAt: u.now,
      };
      await repo.addPending(row, u.now);
      await u.queue.job(
        WEBHOOK_CHANNEL,
        webhookJob(
          service,
          EVENT_VERIFY,
          { account, code, expires: new Date(row.expiresAt).toISOString() },
          { now: u.now, account: me.id },
        ),
      );
      return row;
    });
  }

  /** §22.4: the code the service showed; right → the service account joins my set. */
  async confirm(user: BareJid, service: string, account: string, code: string): Promise<void> {
    this.serviceSettings(service);
    const wait = this.o.codeFailures.retryAfter(user);
    if (wait > 0)
      throw new StanzaError("policy-violation", `too many wrong codes; try again in ${retryText(wait)}`, {
        type: "wait",
      });
    const ok = await this.o.uow("linked.confirm", async (u) => {
      const me = await this.me(u, user);
      const repo = linkedRepo(u.tx);
      const v = await repo.verification(me.id, service, account, u.now);
      if (!v || !v.codeHash)
        throw notFound(`no verification of ${service} account '${quote(account)}' is waiting`);
      const a = Buffer.from(codeHash(code.trim()));
      if (!timingSafeEqual(a, Buffer.from(v.codeHash))) return false;
      if (await repo.memberOfService(service, account))
        throw conflict(`${service} account '${quote(account)}' is already linked`);
      await this.roomFor(u, me.member?.setId, me.member ? 1 : 2);
      await repo.deletePending(v.id);
      let setId = me.member?.setId;
      if (setId === undefined) {
        setId = randomUUID();
        await repo.createSet(setId, u.now);
        await repo.addMember({ id: randomUUID(), setId, account: me.id, settings: v.settings, now: u.now });
      } else await repo.touchSet(setId, u.now);
      await repo.addMember({
        id: randomUUID(),
        setId,
        connector: service,
        externalId: account,
        settings: v.settings,
        now: u.now,
      });
      await this.announce(u, setId);
      return true;
    });
    if (!ok) {
      // Counted outside the unit of work: the refusal writes nothing.
      this.o.codeFailures.hit(user);
      throw new StanzaError("not-authorized", "wrong code");
    }
  }

  /**
   * §22.5: remove an account from my set (either side, any member), or withdraw / decline a request between me
   * and that XMPP account, or drop a service verification. Pending sync messages to a removed account are
   * deleted in the same unit of work: propagation to it stops at once.
   */
  async unlink(user: BareJid, ref: AccountRef): Promise<void> {
    await this.o.uow("linked.unlink", async (u) => {
      const me = await this.me(u, user);
      const repo = linkedRepo(u.tx);
      let done = 0;
      if ("jid" in ref) {
        const jid = userJid(ref.jid, "jid");
        const other = await u.accounts.resolve(jid);
        if (other !== undefined) {
          if (other !== me.id) done += await repo.deleteRequestsBetween(me.id, other);
          const m = await repo.memberOfAccount(other);
          if (m && me.member && m.setId === me.member.setId) {
            await this.remove(u, m);
            done++;
          }
        }
        if (!done) throw notFound(`${jid} is not linked with you and no request is waiting`);
        return;
      }
      const v = await repo.verification(me.id, ref.service, ref.account, u.now);
      if (v) {
        await repo.deletePending(v.id);
        done++;
      }
      const m = await repo.memberOfService(ref.service, ref.account);
      if (m && me.member && m.setId === me.member.setId) {
        await this.remove(u, m);
        done++;
      }
      if (!done) throw notFound(`${ref.service} account '${quote(ref.account)}' is not linked with you`);
    });
  }

  /** Removes a member and what waits for it; a set left with one account, or with no XMPP account, dissolves. */
  private async remove(u: UnitOfWork, m: MemberRow): Promise<void> {
    const repo = linkedRepo(u.tx);
    await repo.touchSet(m.setId, u.now);
    await dropSyncs(u, m);
    await repo.removeMember(m.id);
    const rest = await repo.members(m.setId);
    if (m.connector !== undefined)
      // The service is told its account left (so it stops expecting syncs); never a secret in it.
      await u.queue.job(
        WEBHOOK_CHANNEL,
        webhookJob(m.connector, EVENT_UNLINKED, { account: m.externalId ?? "" }, { now: u.now }),
      );
    if (rest.length < 2 || !rest.some((r) => r.account !== undefined)) {
      for (const r of rest) {
        await dropSyncs(u, r);
        if (r.connector !== undefined)
          await u.queue.job(
            WEBHOOK_CHANNEL,
            webhookJob(r.connector, EVENT_UNLINKED, { account: r.externalId ?? "" }, { now: u.now }),
          );
      }
      await repo.deleteSet(m.setId);
      const lanes = [m, ...rest].flatMap((r) => (r.account === undefined ? [] : [r.account]));
      if (lanes.length) await u.queue.append(KIND_LINKS, lanes, { subject: "links" });
      return;
    }
    const lanes = [m, ...rest].flatMap((r) => (r.account === undefined ? [] : [r.account]));
    await u.queue.append(KIND_LINKS, lanes, { subject: "links" });
  }

  /** Every XMPP member's clients get the set as it is now (the `links` kind). */
  private async announce(u: UnitOfWork, setId: string): Promise<void> {
    const lanes = (await linkedRepo(u.tx).members(setId)).flatMap((m) =>
      m.account === undefined ? [] : [m.account],
    );
    await u.queue.append(KIND_LINKS, lanes, { subject: "links" });
  }

  /** §22.3: change which settings one account of my set takes part in. */
  async setSettings(user: BareJid, ref: AccountRef, settings: readonly Setting[]): Promise<void> {
    if (!("jid" in ref)) this.checkServiceSettings(ref.service, settings);
    await this.o.uow("linked.settings", async (u) => {
      const me = await this.me(u, user);
      const m = await this.memberOf(u, me.member, ref);
      await linkedRepo(u.tx).setSettings(m.id, settings);
      await this.announce(u, m.setId);
    });
  }

  private async memberOf(u: UnitOfWork, mine: MemberRow | undefined, ref: AccountRef): Promise<MemberRow> {
    const repo = linkedRepo(u.tx);
    let m: MemberRow | undefined;
    if ("jid" in ref) {
      const id = await u.accounts.resolve(userJid(ref.jid, "jid"));
      m = id === undefined ? undefined : await repo.memberOfAccount(id);
    } else m = await repo.memberOfService(ref.service, ref.account);
    if (!mine || !m || m.setId !== mine.setId)
      throw notFound(
        `${"jid" in ref ? ref.jid : `${ref.service} account '${quote(ref.account)}'`} is not linked with you`,
      );
    return m;
  }

  async list(user: BareJid): Promise<LinksView> {
    return this.o.read("linked.list", async (r) => {
      const id = await r.accounts.resolve(user);
      if (id === undefined) return { members: [], pending: [] };
      return linksView(r.read, r.accounts, id);
    });
  }

  /**
   * §22.6: a change made on `ref` (an account of the caller's set). Returns how many accounts get a sync message
   * (0: nothing changed, or an echo of what cardlink sent that account).
   */
  async profileChanged(
    user: BareJid,
    ref: AccountRef,
    change: ProfileChange,
  ): Promise<{ targets: number; ignored: Setting[] }> {
    const values = this.checkChange(change);
    return this.o.uow("linked.profile", async (u) => {
      const me = await this.me(u, user);
      const source = await this.memberOf(u, me.member, ref);
      const repo = linkedRepo(u.tx);
      await repo.touchSet(source.setId, u.now);
      const set = await repo.set(source.setId);
      if (!set) throw new Error(`linked: set ${source.setId} vanished`);
      const changed: Setting[] = [];
      const ignored: Setting[] = [];
      const next: { nickname?: string; status?: string; avatar?: Avatar } = {};
      for (const [s, v] of Object.entries(values) as Array<[Setting, string | Avatar]>) {
        const h = valueHash(s, v);
        const cur = currentValue(set, s);
        // Not a change: a setting this account does not sync, the value already current, or one cardlink sent it.
        if (
          !source.settings.includes(s) ||
          (cur !== null && valueHash(s, cur) === h) ||
          (source.recent[s] ?? []).includes(h)
        ) {
          ignored.push(s);
          continue;
        }
        changed.push(s);
        if (s === "avatar") next.avatar = v as Avatar;
        else next[s] = v as string;
      }
      if (changed.length === 0) return { targets: 0, ignored };
      await repo.setValues(set.id, next, u.now);
      const fresh = (await repo.set(set.id)) as SetRow;
      let targets = 0;
      for (const m of await repo.members(set.id)) {
        if (m.id === source.id) continue;
        const mine = changed.filter((s) => m.settings.includes(s));
        if (mine.length === 0) continue;
        targets++;
        await this.syncTo(u, fresh, m, ref, mine);
      }
      return { targets, ignored };
    });
  }

  private checkChange(c: ProfileChange): Partial<Record<Setting, string | Avatar>> {
    const out: Partial<Record<Setting, string | Avatar>> = {};
    if (c.nickname !== undefined) {
      const n = c.nickname.trim();
      if (n === "") throw badRequest("<nickname/> is empty");
      if (codePoints(n) > this.o.maxNicknameLength)
        throw new StanzaError(
          "not-acceptable",
          `a nickname has at most ${this.o.maxNicknameLength} characters`,
        );
      out.nickname = n;
    }
    if (c.status !== undefined) {
      if (codePoints(c.status) > this.o.maxStatusLength)
        throw new StanzaError(
          "not-acceptable",
          `a status text has at most ${this.o.maxStatusLength} characters`,
        );
      out.status = c.status;
    }
    if (c.avatar !== undefined) out.avatar = checkAvatar(c.avatar, this.o.maxAvatarBytes);
    return out;
  }

  /** One sync message to `m` about `settings` (all of which it syncs), in the caller's unit of work. */
  private async syncTo(
    u: UnitOfWork,
    set: SetRow,
    m: MemberRow,
    from: AccountRef,
    settings: Setting[],
  ): Promise<void> {
    const recent = { ...m.recent };
    for (const s of settings) {
      const v = currentValue(set, s);
      if (v !== null) recent[s] = [...(recent[s] ?? []), valueHash(s, v)].slice(-RECENT);
    }
    await linkedRepo(u.tx).setRecent(m.id, recent);
    const fromJson: { [k: string]: string } =
      "jid" in from ? { jid: from.jid } : { service: from.service, account: from.account };
    if (m.account !== undefined) {
      const jid = await u.accounts.jidOf(m.account);
      const pep = this.served(jid) ? settings.filter((s) => PEP_SETTINGS.includes(s)) : [];
      if (pep.length) {
        // One message per account, replacing a pending one (its body names the account; values are read at send).
        const body: SyncBody = { member: m.id, from: fromJson };
        await u.queue.job(LINKED_CHANNEL, {
          kind: "sync",
          target: `m:${m.id}`,
          ckey: "sync",
          body,
          account: m.account,
        });
      }
      const toClients = settings.filter((s) => !pep.includes(s));
      for (const s of toClients) {
        const payload = await u.queue.payload(KIND_PROFILE, { from: fromJson });
        await u.queue.append(KIND_PROFILE, [m.account], { subject: s, payload });
      }
      return;
    }
    const connector = m.connector as string;
    const allowed = this.o.services.get(connector) ?? [];
    const profile: { [k: string]: Json } = {};
    for (const s of m.settings.filter((x) => allowed.includes(x))) {
      const v = currentValue(set, s);
      if (v === null) continue;
      profile[s] =
        typeof v === "string"
          ? v
          : {
              id: v.id,
              type: v.type,
              bytes: v.bytes,
              ...(v.width !== undefined ? { width: v.width, height: v.height ?? 0 } : {}),
              data: v.data,
            };
    }
    await u.queue.job(
      WEBHOOK_CHANNEL,
      webhookJob(
        connector,
        EVENT_SYNC,
        { account: m.externalId ?? "", changed: settings, changedOn: fromJson, profile },
        { now: u.now, ckey: `linked:${m.id}` },
      ),
    );
  }
}

/** Pending sync messages to a member that leaves (SQL: this also runs in the CLI's link-less core). */
export async function dropSyncs(u: Pick<UnitOfWork, "tx">, m: MemberRow): Promise<void> {
  if (m.account !== undefined)
    await u.tx.run("DELETE FROM jobs WHERE channel = :c AND target = :t", {
      c: LINKED_CHANNEL,
      t: `m:${m.id}`,
    });
  if (m.connector !== undefined)
    await u.tx.run("DELETE FROM jobs WHERE channel = :c AND target = :t AND ckey = :k", {
      c: WEBHOOK_CHANNEL,
      t: m.connector,
      k: `linked:${m.id}`,
    });
}

/** The `<links/>` view of an account: its set (itself first) and its pending requests and verifications. */
export async function linksView(
  q: ReadTx,
  accounts: { jidOf(id: AccountId): Promise<BareJid> },
  me: AccountId,
): Promise<LinksView> {
  const repo = linkedRepo(q);
  const mine = await repo.memberOfAccount(me);
  const refOf = async (m: {
    account?: AccountId;
    connector?: string;
    externalId?: string;
  }): Promise<AccountRef> =>
    m.account !== undefined
      ? { jid: await accounts.jidOf(m.account) }
      : { service: m.connector ?? "", account: m.externalId ?? "" };
  const members: MemberView[] = [];
  if (mine) {
    for (const m of await repo.members(mine.setId))
      members.push({ ref: await refOf(m), settings: m.settings, self: m.id === mine.id });
    // A stable order for clients: this account, the other XMPP accounts, then service accounts, each by name.
    const key = (v: MemberView): string =>
      `${v.self ? 0 : "jid" in v.ref ? 1 : 2}\u0000${"jid" in v.ref ? v.ref.jid : `${v.ref.service}\u0000${v.ref.account}`}`;
    members.sort((a, b) => (key(a) < key(b) ? -1 : key(a) > key(b) ? 1 : 0));
  }
  const pending: PendingView[] = [];
  for (const p of await repo.pendingOf(me, q.now)) {
    const out = p.from === me;
    const ref: AccountRef =
      p.connector !== undefined
        ? { service: p.connector, account: p.externalId ?? "" }
        : { jid: await accounts.jidOf(out ? (p.to as AccountId) : p.from) };
    pending.push({ ref, direction: out ? "out" : "in", settings: p.settings, expiresAt: p.expiresAt });
  }
  return { members, pending };
}
