/**
 * Who is online, as far as cardlink can know, keyed by account (docs/REDESIGN.md §3.6 `PresenceView`, the
 * stream delivery's `DeliveryPresence`): the new core's replacement of component/presence.ts, whose rules it
 * keeps exactly. Users send cardlink directed presence, or grant it a presence subscription (then cardlink is a
 * contact like a transport, and Prosody tells it of every login); any request from a full JID proves that
 * resource is connected too. Available resources are persisted (`resources`, schema 2000) so a restarted
 * cardlink can try them at once; an error reply prunes a stale one (`gone`). Subscriptions are `subscribers`.
 *
 * Memory is the truth for delivery: it changes first, and a failed write is logged (or, for a stanza, fails the
 * listener, which the router logs) without undoing it — as the old tracker did.
 *
 * A presence or request from a user who has no account yet creates it (`ensure(jid, {seen: true})`): a resource
 * and a subscription row both reference `accounts(id)`, and the old code wrote its presence rows lazily for any
 * user of an allowed domain (the router already refused the others). A new resource of a placeholder account
 * activates it (§2.2: a presence is the JID acting). Nothing creates an account for an unavailable,
 * unsubscribe(d) or probe: they need no row (an account with no row has none to clear).
 *
 * The callbacks (onAvailable, onUnavailable) run after the write's commit; a write that failed announces
 * nothing (the old events were emitted after the store call too), the next kick of the lane still finds the
 * resource in memory.
 *
 * Device declarations (`<active-device/>`, PROTOCOL §10.7, REDESIGN §5.2, issue 8 S12): a resource that
 * declared a registered device is served by that device's cursor (consumer = devices.id) instead of the shared
 * one, until it goes unavailable (its entry and row go; a new session starts undeclared). The declaration is
 * applied in the resource's own chain, in the task that records the resource (an IQ's onRequest ran it just
 * before; a presence carries it as a child), so it can never be applied after a later unavailable. Its unit of
 * work creates the device's cursor at the lane's floor on the first declaration (§2.3.3) and writes
 * `resources.device`, which restore() reads back after a restart (the resource did not go unavailable).
 *
 * The compact update form (`<active-device format='vcf'/>`, PROTOCOL §10.8) is a property of the device's
 * consumer, held in memory only: the latest declaration of the device sets it (one without `format` sets it
 * back), and it ends with the device's last declared resource or the device. It is not in `resources` (that
 * would take a migration): after a restart a restored declaration gets §10.1's form until the client declares
 * again, which §10.8 allows (a compact client accepts both forms).
 */
import {
  parseActiveDeviceDeclaration,
  type ActiveDevice,
  type UpdateFormat,
} from "../../stanzas/cardlink.js";
import { StanzaError } from "../../stanzas/errors.js";
import { NS } from "../../stanzas/ns.js";
import { xml, type Element } from "../../stanzas/xml.js";
import type { AccountId, DeviceKey, Sql } from "../../storage/store.js";
import type { PresenceView } from "./context.js";
import type { Jid } from "./jid.js";
import { detach, type Logger } from "./log.js";
import type { Metrics } from "./metrics.js";
import type { DeliveryPresence } from "./queue/stream-delivery.js";
import { streamRepo } from "./queue/stream-repo.js";
import type { Router } from "./router.js";
import type { Reader, UnitOfWork, Uow } from "./uow.js";

export interface PresenceOptions {
  uow: Uow;
  read: Reader;
  /** Sends a stanza if the link is up; false otherwise (the app's `send`). */
  send(el: Element): Promise<boolean>;
  /** The component's domain: the `from` of every presence cardlink sends. */
  domain: string;
  /** limits.resourcesPerUser: resources tracked per account, least recently seen evicted first. */
  resourcesPerUser: number;
  metrics: Metrics;
  log: Logger;
  /**
   * Several processes on one database (queue.exclusive false, issue 13; runtime/wake.ts): rows carry this
   * process's id in `resources.process`, restore() adopts only rows no live process owns, adopt() takes over
   * the rows of processes whose heartbeat went silent, reconcile() forgets resources whose row another process
   * took, handOver() gives this process's rows back at shutdown. Absent: one process, every row is its own.
   */
  shared?: { me: string; silentMs: number };
}

/** The consumer of resources that declared no device: the shared cursor (stream_cursors.consumer = 0). */
export const SHARED_CONSUMER = 0;

/** :device is NULL for a resource that declared nothing (the shared cursor), else the declared devices.id. */
const UPSERT_RESOURCE = `INSERT INTO resources (full_jid, account_id, device, process, since)
VALUES (:full, :account, :device, :process, :since)
ON CONFLICT (full_jid) DO UPDATE SET account_id = excluded.account_id, device = excluded.device,
  process = excluded.process, since = excluded.since`;
/**
 * Shared mode: the rows of no live process — given back at a clean shutdown (NULL), or owned by a process whose
 * heartbeat is older than :alive (killed) — become this process's, each row by exactly one adopter (the UPDATE
 * locks it; a second adopter re-checks the WHERE on the committed row and skips it).
 */
const ADOPT = `UPDATE resources SET process = :me
WHERE process IS NULL OR (process <> :me
  AND process NOT IN (SELECT p.id FROM processes p WHERE p.heartbeat_at >= :alive))
RETURNING full_jid, account_id, device, since`;
const MINE = "SELECT full_jid FROM resources WHERE process = :me";
const HAND_OVER = "UPDATE resources SET process = NULL WHERE process = :me";
const DELETE_RESOURCE = "DELETE FROM resources WHERE full_jid = :full";
const DELETE_ACCOUNT_RESOURCES = "DELETE FROM resources WHERE account_id = :account";
/** Oldest first; full_jid breaks ties portably (the old `since, rowid`: PostgreSQL has no rowid). */
const ALL_RESOURCES = "SELECT full_jid, account_id, device FROM resources ORDER BY since, full_jid";
const ADD_SUBSCRIBER = `INSERT INTO subscribers (account_id, since) VALUES (:account, :now)
ON CONFLICT (account_id) DO NOTHING`;
const REMOVE_SUBSCRIBER = "DELETE FROM subscribers WHERE account_id = :account";
/**
 * Who restore() probes: subscribers with something waiting for them — the old `outbox.recipients()` filtered by
 * `isSubscriber`. "Waiting" is an entry of the lane above any of its cursors' pos (dormant ones included: a
 * returning consumer starts at the floor, so it gets those entries). The stream_lane index answers each EXISTS.
 */
const PROBE_ACCOUNTS = `SELECT s.account_id FROM subscribers s
WHERE EXISTS (SELECT 1 FROM stream_cursors c WHERE c.account_id = s.account_id
  AND EXISTS (SELECT 1 FROM stream_entries e WHERE e.account_id = c.account_id AND e.seq > c.pos))
ORDER BY s.account_id`;

/** What a declaration came to: applied, or the user has no device of that id (nothing changed). */
export type Declaration = "declared" | "no-device";

export class Presence implements PresenceView, DeliveryPresence {
  /**
   * Per account: its available full JIDs → the consumer each serves (SHARED_CONSUMER, or the devices.id the
   * resource declared with <active-device/>). Map order = least recently seen first.
   */
  private readonly avail = new Map<AccountId, Map<string, number>>();
  /**
   * Per bare JID, the tail of its stanzas' processing: resolving the account is async, so without this an
   * available followed by an unavailable could be applied in the other order. Transient (an entry goes when its
   * chain is idle), so the state itself stays keyed by account.
   */
  private readonly chains = new Map<string, Promise<void>>();
  /** `since` of the last row this process wrote: strictly increasing, so "oldest first" survives same-ms writes. */
  private lastSince = 0;
  /** Device consumers (devices.id, unique across accounts) whose latest declaration asked for 'vcf' (§10.8). */
  private readonly compactDevices = new Set<number>();
  /**
   * Shared mode: when each full JID in memory was last confirmed as this process's (recorded, restored,
   * adopted). reconcile() forgets only entries confirmed before its read began, so a row being written by a
   * presence that is still in its unit of work is not mistaken for one another process took.
   */
  private readonly confirmed = new Map<string, number>();

  /** Set by the runtime after StreamDelivery exists: a resource became available (again = re-announced). */
  onAvailable?: (lane: AccountId, consumer: number, full: string, again: boolean) => void;
  /** A resource went unavailable by presence (`last`: the account has none left). Not called by gone(). */
  onUnavailable?: (lane: AccountId, full: string, last: boolean) => void;
  /**
   * The same, inside the unit of work that deletes the resource's row (before onUnavailable, which runs after
   * its commit): REDESIGN §2.3.7's durable trigger — push's `announcePending(u, lane)` when `last` writes its
   * jobs in this transaction, so a crash cannot lose the wake-up. A throw rolls the row back (memory stays
   * forgotten) and fails the stanza's listener (logged). The store may run it more than once (retries).
   */
  onUnavailableTx?: (u: UnitOfWork, lane: AccountId, full: string, last: boolean) => Promise<void>;
  /**
   * Awaited before that unit of work when the account has no resource left (memory already forgets it, so no
   * new round starts): the runtime lets the lane's delivery rounds finish, so an ack that arrived just before the
   * unavailable is committed before push reads what still waits. Bounded by the runtime.
   */
  beforeLastGone?: (lane: AccountId) => Promise<void>;

  constructor(private readonly o: PresenceOptions) {
    o.metrics.gauge(
      "cardlink_users_available",
      () => this.avail.size,
      "users with at least one known available resource",
    );
  }

  /** router.onPresence + router.onRequest (a Router; tests pass a stand-in with the two methods). */
  attach(router: Pick<Router, "onPresence" | "onRequest">): void {
    router.onPresence((stanza, from) => this.serial(from.bare, () => this.onPresence(stanza, from)));
    // A request from a full JID proves that resource is connected: updates can flow to clients that never
    // send presence to cardlink. If it disconnects unannounced, the next delivery's error prunes it.
    router.onRequest((from) => {
      if (!from.local || !from.resource) return;
      detach(
        this.o.log,
        "presence-failed",
        this.serial(from.bare, () => this.seen(from.bare, from.full, false)),
      );
    });
  }

  /** Available full JIDs of the account; with a consumer, only those serving it (0: no device declared). */
  resources(account: AccountId, consumer?: number): readonly string[] {
    const m = this.avail.get(account);
    if (!m) return [];
    if (consumer === undefined) return [...m.keys()];
    const out: string[] = [];
    for (const [full, c] of m) if (c === consumer) out.push(full);
    return out;
  }

  available(account: AccountId): boolean {
    return (this.avail.get(account)?.size ?? 0) > 0;
  }

  /** True when the consumer is a declared device that asked for the compact update form (PROTOCOL §10.8). */
  compact(_lane: AccountId, consumer: number): boolean {
    return consumer !== SHARED_CONSUMER && this.compactDevices.has(consumer);
  }

  async onlineAmong(tx: Sql, accounts: readonly AccountId[]): Promise<Set<AccountId>> {
    const out = new Set(accounts.filter((a) => this.available(a)));
    if (!this.o.shared) return out;
    // Users of other processes: their rows (the live owners', and rows waiting to be adopted: a user whose
    // process died is still connected to the XMPP server and is delivered to after the take-over, not pushed).
    const rest = accounts.filter((a) => !out.has(a));
    if (rest.length === 0) return out;
    const rows = await tx.all<{ account_id: number }>(
      `SELECT DISTINCT account_id FROM resources WHERE account_id IN (${tx.dialect.jsonIds("ids")})`,
      { ids: JSON.stringify(rest) },
    );
    for (const r of rows) out.add(Number(r.account_id) as AccountId);
    return out;
  }

  /** Consumers of the lane with at least one available resource, ascending. */
  consumers(lane: AccountId): readonly number[] {
    const m = this.avail.get(lane);
    if (!m) return [];
    return [...new Set(m.values())].sort((a, b) => a - b);
  }

  /** Accounts with an available resource (the runtime kicks their lanes when the link comes online). */
  lanes(): AccountId[] {
    return [...this.avail.keys()];
  }

  /**
   * Resolves when every presence and request seen so far has been applied and every gone() row deleted (tests;
   * a stop that wants its writes done). Never rejects: failures were logged (or went to the router).
   */
  async idle(): Promise<void> {
    while (this.chains.size) await Promise.allSettled([...this.chains.values()]);
  }

  /**
   * Delivery saw the resource is not there: forgotten in memory now, its row deleted in the background (a
   * failure is logged; the row would only be tried, and pruned, again after a restart). No onUnavailable: the
   * delivery that called this decides what an all-gone consumer means (its onAllGone).
   */
  gone(lane: AccountId, full: string): void {
    this.forget(lane, full);
    // On the user's chain, so a presence that brings the resource back right after writes its row after this
    // delete, not before it (the full JID is one this tracker stored: its bare part is the chain's key).
    const slash = full.indexOf("/");
    const bare = slash < 0 ? full : full.slice(0, slash);
    detach(
      this.o.log,
      "presence-gone-failed",
      this.serial(bare, () =>
        this.o.uow("presence.gone", (u) => u.tx.run(DELETE_RESOURCE, { full })).then(() => undefined),
      ),
    );
  }

  /**
   * After (re)connecting: resources known before are tried (rows oldest first; a lowered cap keeps each
   * account's newest and deletes the rest), and subscribers with something waiting are probed (Prosody answers
   * for them with their presence). Resources already in memory stay; nothing is announced: the runtime kicks
   * lanes() itself.
   */
  async restore(): Promise<void> {
    const cap = this.o.resourcesPerUser;
    // Shared: only the rows no live process owns (adopted in their own unit of work); the others' users reach
    // their own processes (ejabberd's bare_source buckets).
    const adopted = this.o.shared ? await this.adoptRows(Date.now() - this.o.shared.silentMs) : undefined;
    if (adopted?.length) this.adopted(adopted.length, new Set(adopted.map((r) => r.account_id)).size);
    const { rows, probe } = await this.o.read("presence.restore", async (r) => {
      const rows =
        adopted ??
        (await r.read.all<{ full_jid: string; account_id: number; device: number | null }>(ALL_RESOURCES));
      const ids = (await r.read.all<{ account_id: number }>(PROBE_ACCOUNTS)).map(
        (x) => Number(x.account_id) as AccountId,
      );
      const jids = await r.accounts.jidsOf(ids);
      return { rows, probe: ids.map((id) => jids.get(id)).filter((j): j is string => j !== undefined) };
    });
    const dropped: string[] = [];
    for (const row of rows) {
      const account = Number(row.account_id) as AccountId;
      const m = this.resourcesOf(account);
      // A declaration lasts until the resource goes unavailable, and a restart is not that (a removed device's
      // rows were set NULL by the foreign key: those resources are back on the shared cursor).
      if (!m.has(row.full_jid))
        m.set(row.full_jid, row.device === null ? SHARED_CONSUMER : Number(row.device));
      if (this.o.shared) this.confirmed.set(row.full_jid, Date.now());
      for (const old of m.keys()) {
        if (m.size <= cap) break;
        m.delete(old);
        this.confirmed.delete(old);
        dropped.push(old);
      }
    }
    if (dropped.length) await this.o.uow("presence.restore", (u) => deleteRows(u.tx, dropped));
    for (const bare of probe) await this.send("probe", bare);
  }

  /**
   * Marks a full JID available (presence, or any request from it). At most resourcesPerUser are tracked per
   * account (least recently seen first): a newer one replaces the oldest, so one user's deliveries never fan out
   * to an unbounded number of IQs. `presence` is true for an available presence stanza: from a resource already
   * known it may be a client that reconnected under the same resource (its old session, and any update in
   * flight to it, gone), so it is announced again. A known resource costs no write.
   */
  private async seen(
    bare: string,
    full: string,
    presence: boolean,
    declaration?: ActiveDevice,
  ): Promise<Declaration | undefined> {
    const deviceId = declaration?.deviceId;
    const account = await this.accountFor(bare);
    if (account === undefined) return undefined;
    const m = this.resourcesOf(account);
    const known = m.get(full);
    if (known !== undefined) {
      m.delete(full);
      m.set(full, known);
      if (deviceId === undefined) {
        if (presence) this.onAvailable?.(account, known, full, true);
        return undefined;
      }
    }
    const evicted: string[] = [];
    if (known === undefined) {
      const cap = this.o.resourcesPerUser;
      for (const old of m.keys()) {
        if (m.size < cap) break;
        m.delete(old);
        this.confirmed.delete(old);
        evicted.push(old);
      }
      m.set(full, SHARED_CONSUMER);
      if (evicted.length) {
        this.o.metrics.inc("cardlink_presence_resources_evicted_total", undefined, evicted.length);
        this.o.log.debug(
          { event: "resource-evicted", bare, evicted },
          "least recently seen resource forgotten",
        );
      }
    }
    // Shared mode: pending until the row's COMMIT (a reconcile() reading before it must not forget the entry),
    // then confirmed at a time after that commit.
    if (this.o.shared) this.confirmed.set(full, Number.MAX_SAFE_INTEGER);
    const device = await this.o
      .uow(
        deviceId === undefined ? "presence.available" : "presence.declare",
        async (u): Promise<DeviceKey | null | undefined> => {
          // A presence is the JID acting (§2.2): a placeholder becomes active, seen_at moves (throttled per hour
          // by the directory, so mostly no SQL). The id is the one resolved above (the directory's cache).
          if (known === undefined) {
            await u.accounts.ensure(bare, { seen: true });
            await deleteRows(u.tx, evicted);
          }
          const d = deviceId === undefined ? undefined : await u.accounts.device(account, deviceId);
          if (deviceId !== undefined && d === undefined) {
            // No such device: a new resource is recorded undeclared; a known one keeps what it served.
            if (known === undefined) await this.upsert(u.tx, full, account, null, u.now);
            return null;
          }
          // The device's cursor on its first declaration, at the lane's floor (§2.3.3); a dormant one stays as it
          // is: delivery reactivates it (and sends the resync it may owe, §2.3.4).
          if (d) await streamRepo(u.tx).ensureCursor(account, d.key, u.now);
          await this.upsert(
            u.tx,
            full,
            account,
            d ? d.key : known === undefined ? null : nullable(known),
            u.now,
          );
          return d?.key;
        },
      )
      .finally(() => {
        if (this.o.shared && m.has(full)) this.confirmed.set(full, Date.now());
      });
    // gone() may have forgotten the resource meanwhile (a delivery's error): then it is not brought back here.
    const declared = device !== undefined && device !== null && m.has(full);
    if (declared) {
      m.set(full, device);
      // Applied with the declaration, in the resource's chain: the device's next page is rendered in this form.
      if (declaration?.format === "vcf") this.compactDevices.add(device);
      else this.compactDevices.delete(device);
    }
    const consumer = m.get(full) ?? SHARED_CONSUMER;
    // Announced when it is new, re-announced, or now served by another consumer (that one's round starts).
    if (known === undefined || presence || (declared && device !== known)) {
      this.onAvailable?.(account, consumer, full, known !== undefined && presence);
    }
    if (deviceId === undefined) return undefined;
    return device === null ? "no-device" : "declared";
  }

  private async upsert(
    tx: Sql,
    full: string,
    account: AccountId,
    device: DeviceKey | null,
    now: number,
  ): Promise<void> {
    await tx.run(UPSERT_RESOURCE, {
      full,
      account,
      device,
      process: this.o.shared?.me ?? null,
      since: this.since(now),
    });
  }

  /**
   * Shared mode: takes over the resource rows of processes silent since before `alive` (and rows given back),
   * adds them to memory (each account's cap kept) and returns their accounts, whose lanes the caller kicks. A
   * survivor learns who is online this way: the rows are what the dead process knew.
   */
  async adopt(alive: number): Promise<AccountId[]> {
    if (!this.o.shared) return [];
    const rows = await this.adoptRows(alive);
    const lanes = new Set<AccountId>();
    for (const row of rows) {
      const account = Number(row.account_id) as AccountId;
      const m = this.resourcesOf(account);
      if (!m.has(row.full_jid) && m.size < this.o.resourcesPerUser) {
        m.set(row.full_jid, row.device === null ? SHARED_CONSUMER : Number(row.device));
      }
      if (m.size === 0) this.avail.delete(account);
      this.confirmed.set(row.full_jid, Date.now());
      lanes.add(account);
    }
    if (rows.length > 0) this.adopted(rows.length, lanes.size);
    return [...lanes];
  }

  private adopted(n: number, accounts: number): void {
    this.o.metrics.inc("cardlink_presence_resources_adopted_total", undefined, n);
    this.o.log.info(
      { event: "resources-adopted", n, accounts },
      "took over the available resources of a process that stopped or went silent",
    );
  }

  private async adoptRows(
    alive: number,
  ): Promise<Array<{ full_jid: string; account_id: number; device: number | null }>> {
    const me = this.o.shared?.me as string;
    const rows = await this.o.uow("presence.adopt", (u) =>
      u.tx.all<{ full_jid: string; account_id: number; device: number | null; since: number }>(ADOPT, {
        me,
        alive,
      }),
    );
    // Oldest first, as restore() reads them (a cap keeps each account's newest).
    return rows.sort((a, b) => Number(a.since) - Number(b.since) || (a.full_jid < b.full_jid ? -1 : 1));
  }

  /**
   * Shared mode: forgets resources whose row is no longer this process's (another process adopted it, or
   * deleted it on an unavailable presence or a bounce it received). Entries confirmed after the read began
   * stay. Returns how many were forgotten.
   */
  async reconcile(): Promise<number> {
    if (!this.o.shared) return 0;
    const t0 = Date.now();
    const me = this.o.shared.me;
    const mine = new Set(
      (await this.o.read("presence.reconcile", (r) => r.read.all<{ full_jid: string }>(MINE, { me }))).map(
        (r) => r.full_jid,
      ),
    );
    let n = 0;
    for (const [account, m] of [...this.avail]) {
      for (const full of [...m.keys()]) {
        if (mine.has(full) || (this.confirmed.get(full) ?? 0) >= t0) continue;
        this.forget(account, full);
        n++;
      }
    }
    if (n > 0)
      this.o.log.debug({ event: "resources-reconciled", n }, "resources now owned elsewhere forgotten");
    return n;
  }

  /** Shared mode, at shutdown: this process's rows are given back (process NULL), for a survivor to adopt now. */
  async handOver(): Promise<number> {
    if (!this.o.shared) return 0;
    const me = this.o.shared.me;
    const r = await this.o.uow("presence.hand-over", (u) => u.tx.run(HAND_OVER, { me }));
    return r.changes;
  }

  /**
   * An IQ bounce (service-unavailable, …) for a delivery another process sent reached this one (ejabberd routes
   * it by the user's bare JID): the resource is gone, its row is deleted so its sender's reconcile() forgets it.
   */
  async goneElsewhere(full: string): Promise<void> {
    const slash = full.indexOf("/");
    if (slash < 0) return;
    const bare = full.slice(0, slash);
    const account = await this.existing(bare);
    if (account === undefined) return;
    this.gone(account, full);
  }

  /**
   * `<active-device/>` as an IQ from `full` (PROTOCOL §10.7): on the user's chain, after the onRequest that
   * recorded the resource (the router runs that listener and the handler in one turn, so a caller that calls
   * this before its first await is ordered right after it). "no-device": the user has no device of that id.
   */
  declare(bare: string, full: string, deviceId: string, format?: UpdateFormat): Promise<Declaration> {
    const declaration: ActiveDevice = format === undefined ? { deviceId } : { deviceId, format };
    return this.serial(bare, async () => (await this.seen(bare, full, false, declaration)) ?? "no-device");
  }

  /**
   * A device was removed (post-commit of device.removed): resources that declared it are served by the shared
   * cursor again (their rows' device went NULL by the foreign key, its cursor with the device), and the shared
   * consumer's round starts for them.
   */
  undeclareDevice(account: AccountId, device: number): void {
    const m = this.avail.get(account);
    this.compactDevices.delete(device);
    if (!m) return;
    for (const [full, c] of m) {
      if (c !== device) continue;
      m.set(full, SHARED_CONSUMER);
      this.onAvailable?.(account, SHARED_CONSUMER, full, false);
    }
  }

  /** One resource went unavailable (known or not: its row goes either way, as before). */
  private async unavailable(account: AccountId, full: string): Promise<void> {
    this.forget(account, full);
    const last = !this.available(account);
    if (last) await this.beforeLastGone?.(account);
    await this.o.uow("presence.unavailable", async (u) => {
      await u.tx.run(DELETE_RESOURCE, { full });
      await this.onUnavailableTx?.(u, account, full, last);
    });
    this.onUnavailable?.(account, full, last);
  }

  /** Unavailable from the bare JID: every resource of the account, rows included, in one unit of work. */
  private async allUnavailable(account: AccountId): Promise<void> {
    const gone = this.resources(account);
    for (const c of this.avail.get(account)?.values() ?? []) this.compactDevices.delete(c);
    this.avail.delete(account);
    for (const full of gone) this.confirmed.delete(full);
    if (gone.length > 0) await this.beforeLastGone?.(account);
    await this.o.uow("presence.unavailable", async (u) => {
      await u.tx.run(DELETE_ACCOUNT_RESOURCES, { account });
      for (const [i, full] of gone.entries())
        await this.onUnavailableTx?.(u, account, full, i === gone.length - 1);
    });
    gone.forEach((full, i) => this.onUnavailable?.(account, full, i === gone.length - 1));
  }

  private async onPresence(stanza: Element, from: Jid): Promise<void> {
    const type = stanza.attrs.type;
    switch (type) {
      case undefined:
        if (from.resource && from.local) {
          const declaration = this.declaredIn(stanza, from);
          const r = await this.seen(from.bare, from.full, true, declaration);
          if (r === "no-device") {
            this.o.log.info(
              {
                event: "active-device-ignored",
                from: from.full,
                device: declaration?.deviceId,
                reason: "no-device",
              },
              "<active-device/> in presence names no device of the user; ignored",
            );
          }
        }
        return;
      case "unavailable": {
        // A server JID (no localpart) has no account, hence no resources.
        const account = from.local ? await this.existing(from.bare) : undefined;
        if (account === undefined) return;
        if (from.resource) await this.unavailable(account, from.full);
        else await this.allUnavailable(account);
        return;
      }
      case "subscribe":
        // cardlink accepts every subscription from a served user and asks for theirs in return, so it learns
        // when they log in without the client having to send directed presence.
        await this.subscriber(from, true);
        await this.send("subscribed", from.bare);
        await this.send("subscribe", from.bare);
        await this.send(undefined, from.bare);
        return;
      case "subscribed":
        await this.subscriber(from, true);
        return;
      case "unsubscribe":
      case "unsubscribed":
        await this.subscriber(from, false);
        if (type === "unsubscribe") await this.send("unsubscribed", from.bare);
        return;
      case "probe":
        await this.send(undefined, from.bare);
        return;
      default:
        return;
    }
  }

  /**
   * The device id of an `<active-device/>` child of an available presence (PROTOCOL §10.7), or undefined. A
   * presence gets no reply: a child that is not valid is logged and the presence counts as a plain one.
   */
  private declaredIn(stanza: Element, from: Jid): ActiveDevice | undefined {
    const el = stanza.getChild("active-device", NS.CARDLINK);
    if (!el) return undefined;
    try {
      return parseActiveDeviceDeclaration(el);
    } catch (e) {
      if (!(e instanceof StanzaError)) throw e;
      this.o.log.info(
        { event: "active-device-ignored", from: from.full, reason: e.message },
        "<active-device/> in presence is not valid; ignored",
      );
      return undefined;
    }
  }

  /**
   * Records (or drops) the sender's subscription. A server JID (no localpart) has no account: the old tracker
   * stored it, but never probed it (it has no stream), so skipping the row changes nothing on the wire.
   */
  private async subscriber(from: Jid, add: boolean): Promise<void> {
    if (!from.local) return;
    if (add) {
      await this.o.uow("presence.subscribe", async (u) => {
        const account = await u.accounts.ensure(from.bare, { seen: true });
        await u.tx.run(ADD_SUBSCRIBER, { account, now: u.now });
      });
      return;
    }
    const account = await this.existing(from.bare);
    if (account === undefined) return;
    await this.o.uow("presence.unsubscribe", (u) => u.tx.run(REMOVE_SUBSCRIBER, { account }));
  }

  /** The account of a served user's bare JID, created if missing (see the file comment). */
  private async accountFor(bare: string): Promise<AccountId | undefined> {
    const known = await this.existing(bare);
    if (known !== undefined) return known;
    return this.o.uow("presence.account", (u) => u.accounts.ensure(bare, { seen: true }));
  }

  /** The account of a bare JID if it has one (the directory's cache answers most lookups without SQL). */
  private existing(bare: string): Promise<AccountId | undefined> {
    return this.o.read("presence.resolve", (r) => r.accounts.resolve(bare));
  }

  private resourcesOf(account: AccountId): Map<string, number> {
    let m = this.avail.get(account);
    if (!m) this.avail.set(account, (m = new Map()));
    return m;
  }

  private forget(account: AccountId, full: string): void {
    this.confirmed.delete(full);
    const m = this.avail.get(account);
    const consumer = m?.get(full);
    if (m?.delete(full) && m.size === 0) this.avail.delete(account);
    // The compact form ends with the device's last declared resource (the next declaration says it again).
    if (consumer !== undefined && consumer !== SHARED_CONSUMER && this.compactDevices.has(consumer)) {
      let still = false;
      for (const c of m?.values() ?? []) if (c === consumer) still = true;
      if (!still) this.compactDevices.delete(consumer);
    }
  }

  /** The unit of work's clock, bumped past the last row this process wrote (see lastSince). */
  private since(now: number): number {
    this.lastSince = Math.max(now, this.lastSince + 1);
    return this.lastSince;
  }

  /** Runs fn after every earlier task of the same bare JID (see `chains`); a failure does not break the chain. */
  private serial<T>(bare: string, fn: () => Promise<T>): Promise<T> {
    const prev = this.chains.get(bare) ?? Promise.resolve();
    const run = prev.then(fn);
    const tail = run.then(
      () => undefined,
      () => undefined,
    );
    this.chains.set(bare, tail);
    void tail.then(() => {
      if (this.chains.get(bare) === tail) this.chains.delete(bare);
    });
    return run;
  }

  private async send(type: string | undefined, to: string): Promise<void> {
    await this.o.send(xml("presence", { type, to, from: this.o.domain }));
  }
}

/** A consumer as `resources.device`: the shared cursor is NULL there. */
function nullable(consumer: number): DeviceKey | null {
  return consumer === SHARED_CONSUMER ? null : (consumer as DeviceKey);
}

async function deleteRows(tx: Sql, fulls: readonly string[]): Promise<void> {
  for (const full of fulls) await tx.run(DELETE_RESOURCE, { full });
}
