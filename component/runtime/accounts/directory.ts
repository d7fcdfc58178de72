/**
 * The process-wide JID ↔ account-id directory (docs/REDESIGN.md §2.2): a bounded LRU over `identifiers`, so the
 * request path's `ensure(user)` and the renderers' `jidOf(id)` skip their SELECT.
 *
 * What may enter the cache, and when it leaves:
 * - Only committed rows. A unit of work's lookups and new accounts are cached by an afterCommit hook, never
 *   before COMMIT: a rolled-back `ensure` leaves no id behind that names no account. A read snapshot's rows are
 *   committed already and are cached at once.
 * - Only hits: "no account" is never cached (the next request may create it).
 * - An identifier change (`identifier.changed`) or an account deletion (`account.deleting`) removes the entries
 *   twice: inside the unit of work (so it reads its own change, not the cache) and after its commit (so an entry
 *   a concurrent reader cached from its older snapshot meanwhile does not outlive the change). Each removal bumps
 *   an epoch; a fill carries the epoch its part saw when it was built, and a fill from before a removal is dropped.
 * - Every entry expires after `cacheTtlMs` (0: nothing is cached): the bound on staleness across processes, which
 *   see no in-process event (issue 13 may replace it with LISTEN/NOTIFY).
 *
 * `Directory` is the cache (one per process); `Lookups` is one unit of work's or snapshot's view through it onto
 * repo.ts (resolve, jidOf, jidsOf); tx.ts adds ensure and the devices on top.
 */
import type { AccountId } from "../../../storage/store.js";
import type { BareJid } from "./api.js";
import { JIDS_CHUNK, type AccountsRepo } from "./repo.js";

/** §2.2: ensure(…, {seen: true}) writes seen_at at most this often per account (in-memory throttle). */
export const SEEN_EVERY_MS = 3_600_000;

interface Entry<V> {
  value: V;
  at: number;
}

/** A Map in recency order: a hit moves the key to the end, an insert beyond `max` drops the first (oldest). */
export class Lru<K, V> {
  private readonly map = new Map<K, Entry<V>>();

  constructor(
    private readonly max: number,
    private readonly ttlMs: number,
    private readonly clock: () => number,
  ) {}

  get size(): number {
    return this.map.size;
  }

  get(k: K): V | undefined {
    const e = this.map.get(k);
    if (e === undefined) return undefined;
    if (this.clock() - e.at >= this.ttlMs) {
      this.map.delete(k);
      return undefined;
    }
    this.map.delete(k);
    this.map.set(k, e);
    return e.value;
  }

  set(k: K, value: V): void {
    if (this.max <= 0 || this.ttlMs <= 0) return;
    this.map.delete(k);
    this.map.set(k, { value, at: this.clock() });
    while (this.map.size > this.max) {
      const oldest = this.map.keys().next();
      if (oldest.done) break;
      this.map.delete(oldest.value);
    }
  }

  delete(k: K): void {
    this.map.delete(k);
  }

  clear(): void {
    this.map.clear();
  }
}

export interface DirectoryOptions {
  /** Entries kept in all (a JID → id and an id → JID entry count one each). */
  readonly cacheSize: number;
  readonly cacheTtlMs: number;
  readonly clock?: () => number;
}

/** What an invalidation names: the account, and any JID values that pointed at it before or after. */
export interface Forget {
  readonly account?: AccountId;
  readonly jids?: readonly string[];
}

export class Directory {
  // One LRU for both directions, so `cacheSize` bounds the whole cache: keys "j:<jid>" and "i:<id>".
  private readonly entries: Lru<string, AccountId | BareJid>;
  // When this process last wrote seen_at per account (the ensure-with-seen throttle). Same bound; no TTL use.
  private readonly seen: Lru<AccountId, number>;
  private generation = 0;
  readonly clock: () => number;

  constructor(o: DirectoryOptions) {
    this.clock = o.clock ?? Date.now;
    this.entries = new Lru(o.cacheSize, o.cacheTtlMs, this.clock);
    this.seen = new Lru(o.cacheSize, SEEN_EVERY_MS, this.clock);
  }

  /** Bumped by every invalidation; a part records it when built and fills only while it is unchanged. */
  get epoch(): number {
    return this.generation;
  }

  get size(): number {
    return this.entries.size;
  }

  idOf(jid: BareJid): AccountId | undefined {
    return this.entries.get(`j:${jid}`) as AccountId | undefined;
  }

  jidOf(id: AccountId): BareJid | undefined {
    return this.entries.get(`i:${id}`) as BareJid | undefined;
  }

  /** Caches a committed JID ↔ id pair read (or written) at `epoch`; dropped if anything was forgotten since. */
  fill(epoch: number, pair: { jid: BareJid; id: AccountId; primary: boolean }): void {
    if (epoch !== this.generation) return;
    this.entries.set(`j:${pair.jid}`, pair.id);
    // Only the primary JID is what jidOf answers; a resolvable non-primary JID (issue 12) maps one way only.
    if (pair.primary) this.entries.set(`i:${pair.id}`, pair.jid);
  }

  fillJid(epoch: number, id: AccountId, jid: BareJid): void {
    if (epoch !== this.generation) return;
    this.entries.set(`i:${id}`, jid);
  }

  forget(f: Forget): void {
    this.generation++;
    if (f.account !== undefined) {
      const jid = this.entries.get(`i:${f.account}`) as BareJid | undefined;
      if (jid !== undefined) this.entries.delete(`j:${jid}`);
      this.entries.delete(`i:${f.account}`);
      this.seen.delete(f.account);
    }
    for (const j of f.jids ?? []) this.entries.delete(`j:${j}`);
  }

  /** Whether this process wrote seen_at for `id` less than SEEN_EVERY_MS ago. */
  seenRecently(id: AccountId): boolean {
    return this.seen.get(id) !== undefined;
  }

  markSeen(id: AccountId): void {
    this.seen.set(id, this.clock());
  }

  clear(): void {
    this.generation++;
    this.entries.clear();
    this.seen.clear();
  }
}

/**
 * resolve / jidOf / jidsOf for one unit of work or read snapshot. `later` decides when a cache fill happens:
 * at once for a snapshot (its rows are committed), after COMMIT for a unit of work (its rows may roll back).
 * Accounts this unit of work created are remembered in `own` (they are not in the cache before COMMIT).
 */
export class Lookups {
  readonly epoch: number;
  private readonly ownIds = new Map<BareJid, AccountId>();
  private readonly ownJids = new Map<AccountId, BareJid>();

  constructor(
    readonly dir: Directory,
    readonly repo: AccountsRepo,
    private readonly later: (fill: () => void) => void,
  ) {
    this.epoch = dir.epoch;
  }

  /** Records an account this unit of work created, and caches it once the unit of work has committed. */
  created(jid: BareJid, id: AccountId): void {
    this.ownIds.set(jid, id);
    this.ownJids.set(id, jid);
    this.later(() => this.dir.fill(this.epoch, { jid, id, primary: true }));
  }

  /** Drops what this unit of work remembered of `f` (its own identifier change, read back within it). */
  forget(f: Forget): void {
    if (f.account !== undefined) {
      const jid = this.ownJids.get(f.account);
      if (jid !== undefined) this.ownIds.delete(jid);
      this.ownJids.delete(f.account);
    }
    for (const j of f.jids ?? []) this.ownIds.delete(j);
  }

  async resolve(jid: BareJid): Promise<AccountId | undefined> {
    const hit = this.ownIds.get(jid) ?? this.dir.idOf(jid);
    if (hit !== undefined) return hit;
    const id = await this.repo.resolve(jid);
    if (id !== undefined) {
      // Whether jid is the primary one is unknown here: cache the JID → id direction only.
      this.later(() => this.dir.fill(this.epoch, { jid, id, primary: false }));
    }
    return id;
  }

  async jidOf(id: AccountId): Promise<BareJid> {
    const hit = this.ownJids.get(id) ?? this.dir.jidOf(id);
    if (hit !== undefined) return hit;
    const jid = await this.repo.primaryJid(id);
    // An account always has a primary JID (ensure creates both; a placeholder has one too): a bug otherwise.
    if (jid === undefined) throw new Error(`accounts: account ${id} has no primary JID`);
    this.later(() => this.dir.fillJid(this.epoch, id, jid));
    return jid;
  }

  /** Ids with no primary JID (no such account) are absent from the map. */
  async jidsOf(ids: readonly AccountId[]): Promise<Map<AccountId, BareJid>> {
    const out = new Map<AccountId, BareJid>();
    const missing: AccountId[] = [];
    for (const id of new Set(ids)) {
      const hit = this.ownJids.get(id) ?? this.dir.jidOf(id);
      if (hit !== undefined) out.set(id, hit);
      else missing.push(id);
    }
    for (let i = 0; i < missing.length; i += JIDS_CHUNK) {
      const found = await this.repo.primaryJids(missing.slice(i, i + JIDS_CHUNK));
      for (const [id, jid] of found) out.set(id, jid);
      if (found.size > 0) {
        this.later(() => {
          for (const [id, jid] of found) this.dir.fillJid(this.epoch, id, jid);
        });
      }
    }
    return out;
  }
}
