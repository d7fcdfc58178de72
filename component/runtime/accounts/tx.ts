/**
 * The accounts part of a unit of work (AccountsTx) and of a read context (AccountsRead), docs/REDESIGN.md §2.2
 * and §3.2. One Directory (the JID ↔ id cache, directory.ts) per process is shared by both halves, so a JID
 * resolved by a read is cached for the writes that follow; the SQL is repo.ts.
 */
import type { AccountId } from "../../../storage/store.js";
import type { EventBus } from "../events.js";
import { parseBareUserJid } from "../jid.js";
import type { Part, ReadPart, UnitOfWork } from "../uow.js";
import type { AccountsRead, AccountsTx, BareJid, Device, DeviceInput, Identifier } from "./api.js";
import { Directory, Lookups, type Forget } from "./directory.js";
import { accountsRepo, type AccountsRepo } from "./repo.js";

/** Built once per process by createCardlink; S3 may add what its directory needs. */
export interface AccountsOptions {
  /** accounts.cacheSize (§3.7): JID ↔ id entries kept. */
  readonly cacheSize: number;
  /** accounts.cacheTtlMs (§3.7): how long a cached entry is trusted across processes. */
  readonly cacheTtlMs: number;
  /** For the post-commit `identifier.changed` cache invalidation. */
  readonly events: EventBus;
  /** The cache's clock (TTL and the seen_at throttle); Date.now unless a test pins it. */
  readonly clock?: () => number;
}

/**
 * `ensure(jid)` found the JID taken by an identifier that does not resolve: one `pending` or `held` (issue 12: an
 * old JID in cooldown still points at its former account, so nobody can claim it). Nothing was written.
 */
export class JidUnavailableError extends Error {
  constructor(readonly jid: BareJid) {
    super(`accounts: '${jid}' is held by an identifier that is not active`);
    this.name = "JidUnavailableError";
  }
}

/** The parts, plus the process's directory (inspect.ts and tests read its size; nothing else needs it). */
export interface AccountsParts {
  tx: Part<AccountsTx>;
  read: ReadPart<AccountsRead>;
  directory: Directory;
}

/** One process-wide directory (cache) shared by both halves, so a JID resolved in a read is cached for writes. */
export function accountsParts(o: AccountsOptions): AccountsParts {
  const dir = new Directory(o);
  const open = new WeakMap<UnitOfWork, TxAccounts>();
  const forgetOf = (e: { account: AccountId; kind: string; from?: string; to: string }): Forget => ({
    account: e.account,
    jids: e.kind === "jid" ? [e.to, ...(e.from === undefined ? [] : [e.from])] : [],
  });
  // Inside the changing unit of work: it must read its own change, not the cache (nor what it created itself).
  o.events.onTx("identifier.changed", (u, e) => {
    dir.forget(forgetOf(e));
    open.get(u)?.lookups.forget(forgetOf(e));
  });
  o.events.onTx("account.deleting", (u, e) => {
    dir.forget({ account: e.account });
    open.get(u)?.lookups.forget({ account: e.account });
  });
  // After its commit: drops what a concurrent snapshot cached from before the change meanwhile.
  o.events.on("identifier.changed", (e) => dir.forget(forgetOf(e)));
  o.events.on("account.deleting", (e) => dir.forget({ account: e.account }));
  return {
    tx: (u) => {
      const part = new TxAccounts(u, dir);
      open.set(u, part);
      return part;
    },
    read: (r) => new ReadAccounts(new Lookups(dir, accountsRepo(r), (fill) => fill())),
    directory: dir,
  };
}

class ReadAccounts implements AccountsRead {
  protected readonly repo: AccountsRepo;

  constructor(readonly lookups: Lookups) {
    this.repo = lookups.repo;
  }

  resolve(jid: BareJid): Promise<AccountId | undefined> {
    return this.lookups.resolve(jid);
  }

  jidOf(id: AccountId): Promise<BareJid> {
    return this.lookups.jidOf(id);
  }

  jidsOf(ids: readonly AccountId[]): Promise<Map<AccountId, BareJid>> {
    return this.lookups.jidsOf(ids);
  }

  devices(id: AccountId): Promise<Device[]> {
    return this.repo.devices(id);
  }

  device(id: AccountId, deviceId: string): Promise<Device | undefined> {
    return this.repo.device(id, deviceId);
  }
}

class TxAccounts extends ReadAccounts implements AccountsTx {
  /** Accounts whose seen_at this unit of work already wrote (or created as active). */
  private readonly seenHere = new Set<AccountId>();

  constructor(
    private readonly u: UnitOfWork,
    private readonly dir: Directory,
  ) {
    super(new Lookups(dir, accountsRepo(u.tx), (fill) => u.afterCommit(fill)));
  }

  async ensure(jid: BareJid, o: { seen?: boolean } = {}): Promise<AccountId> {
    // Two spellings of one JID would be two accounts: the caller normalises (runtime/jid.ts), this refuses a miss.
    if (parseBareUserJid(jid) !== jid)
      throw new Error(`accounts: '${jid}' is not a normalised bare user JID`);
    const seen = o.seen === true;
    let id = await this.lookups.resolve(jid);
    if (id === undefined) {
      const made = await this.create(jid, seen);
      if (made.created) return made.id;
      id = made.id;
    }
    if (seen) await this.markSeen(id);
    return id;
  }

  /** A new account with its primary JID and shared cursor, or the one a concurrent ensure committed first. */
  private async create(jid: BareJid, seen: boolean): Promise<{ id: AccountId; created: boolean }> {
    const now = this.u.now;
    const id = await this.repo.insertAccount(seen ? "active" : "placeholder", now);
    if (await this.repo.claimJid(jid, id, now)) {
      await this.repo.insertSharedCursor(id, now);
      this.lookups.created(jid, id);
      if (seen) {
        this.seenHere.add(id);
        this.u.afterCommit(() => this.dir.markSeen(id));
      }
      await this.u.emit("account.created", { account: id, jid, placeholder: !seen });
      return { id, created: true };
    }
    // The JID is taken: by a concurrent ensure that committed first (PostgreSQL), or by an identifier that does
    // not resolve. Our row goes; nothing of this attempt stays.
    await this.repo.deleteAccount(id);
    const other = await this.lookups.resolve(jid);
    if (other === undefined) throw new JidUnavailableError(jid);
    return { id: other, created: false };
  }

  /** seen_at at most once per SEEN_EVERY_MS per account and process; a placeholder's first act activates it. */
  private async markSeen(id: AccountId): Promise<void> {
    if (this.seenHere.has(id) || this.dir.seenRecently(id)) return;
    this.seenHere.add(id);
    if (await this.repo.activate(id, this.u.now)) {
      await this.u.emit("account.activated", { account: id });
    } else {
      await this.repo.touchSeen(id, this.u.now);
    }
    // After COMMIT only: a rolled-back write of seen_at must not suppress the next one for an hour.
    this.u.afterCommit(() => this.dir.markSeen(id));
  }

  identifierOf(kind: Identifier["kind"], value: string): Promise<Identifier | undefined> {
    return this.repo.identifier(kind, value);
  }

  async addIdentifier(
    id: AccountId,
    i: { kind: Identifier["kind"]; value: string; primary?: boolean; verifiedAt: number },
  ): Promise<void> {
    await this.repo.insertIdentifier(
      {
        kind: i.kind,
        value: i.value,
        account: id,
        state: "active",
        primary: i.primary === true,
        verifiedAt: i.verifiedAt,
      },
      this.u.now,
    );
  }

  async deleteAccount(id: AccountId): Promise<void> {
    // The caches forget it through the `account.deleting` the caller emitted first.
    await this.repo.deleteAccount(id);
  }

  async upsertDevice(id: AccountId, d: DeviceInput, maxPerUser: number): Promise<Device | "over-limit"> {
    // Count-then-insert: the account's row lock serializes two registrations of one user (PostgreSQL).
    await this.u.tx.lockAccount(id);
    const existing = await this.repo.deviceKey(id, d.deviceId);
    if (existing === undefined && (await this.repo.countDevices(id)) >= maxPerUser) return "over-limit";
    const device = await this.repo.upsertDevice(id, d, this.u.now);
    if (existing === undefined) await this.u.emit("device.registered", { account: id, device: device.key });
    return device;
  }

  async removeDevice(id: AccountId, deviceId: string): Promise<boolean> {
    const key = await this.repo.deviceKey(id, deviceId);
    if (key === undefined) return false;
    await this.repo.deleteDevice(id, key);
    await this.u.emit("device.removed", { account: id, device: key });
    return true;
  }

  invalidateToken(token: string): Promise<number> {
    return this.repo.invalidateToken(token, this.u.now);
  }
}
