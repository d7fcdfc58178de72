/**
 * Storage interfaces. Two generations live here side by side until the switch (docs/REDESIGN.md §6, S11):
 *
 * - The new core (§3.1): `Store` (units of work over portable SQL), `Tx`, `ReadTx`, `Sql`, `Dialect`,
 *   `Migration`. No feature types: features keep their SQL in their own repo modules.
 * - The old repositories (`Repos`: cards, devices, exchange, outbox, presence, push). Their methods are async and
 *   each one is atomic on its own (a change and the outbox entries it causes commit together). The SQLite backend
 *   runs them on the Store's writer connection, behind the same write lock as units of work
 *   (docs/DECISIONS.md "Old repositories share the writer connection").
 */
import type { Logger } from "pino";
import type { Card } from "../stanzas/model/card.js";
import type { SharePolicy } from "../stanzas/model/policy.js";
import type { CheckpointReport } from "./sqlite/checkpointer.js";

export type Platform = "ios" | "android" | "other";

export interface Device {
  owner: string;
  deviceId: string;
  platform: Platform;
  name?: string;
  pushToken?: string;
  /** APNs topic (bundle id) or FCM app id. */
  pushTopic?: string;
  /** Base64 AES-256-GCM key for end-to-end encrypted push payloads (optional). */
  pushKey?: string;
  /** ok: token usable; invalid: the provider said the token is dead (no further pushes); none: no token. */
  tokenState: "none" | "ok" | "invalid";
  createdAt: number;
  updatedAt: number;
}

export interface StoredCard {
  owner: string;
  version: number;
  hash: string;
  card: Card;
  seq: number;
  updatedAt: number;
}

export interface Binding {
  id: string;
  a: string;
  b: string;
  /** Device ids each side had registered when the binding was made. */
  aDevices: string[];
  bDevices: string[];
  createdAt: number;
  via: "request" | "code";
}

export interface ExchangeRequest {
  id: string;
  from: string;
  to: string;
  fromDevice?: string;
  createdAt: number;
  expiresAt: number;
}

export interface ExchangeCode {
  code: string;
  owner: string;
  deviceId?: string;
  createdAt: number;
  expiresAt: number;
}

/** A pending delivery. `kind` + `subject` identify what it is about; a newer entry for the same pair replaces it. */
export interface OutboxEntry {
  recipient: string;
  kind: string;
  subject: string;
  version: number;
  /** JSON for kinds whose content is not derivable from current state (requests, notices). */
  payload?: string;
  seq: number;
  attempts: number;
  nextAt: number;
  /**
   * Epoch ms when the pending entry for this (recipient, kind, subject) was first written. A newer change that
   * replaces a pending entry keeps it: it dates the oldest change the recipient has not acknowledged. Set by the
   * store on read.
   */
  createdAt?: number;
}

/** Pending entries of one kind (queue metrics): how many, and when the oldest was first written (epoch ms). */
export interface QueueBacklog {
  entries: number;
  oldestCreatedAt: number;
}

/** What to enqueue; seq is assigned by the store. */
export type OutboxItem = Pick<OutboxEntry, "recipient" | "kind" | "subject" | "version"> & {
  payload?: string;
};

export interface CardSetResult {
  changed: boolean;
  version: number;
  hash: string;
  seq: number;
  /** Holders that got an outbox entry. */
  recipients: string[];
}

/** One change a holder sees in pull sync: a card (new content or policy) or a removal (unbind), with its seq. */
export type SyncEntry =
  | { seq: number; owner: string; removed: false; version: number; card: Card; policy: SharePolicy | null }
  | { seq: number; owner: string; removed: true };

export interface SyncResult {
  /** The newest change seq in the store: the token when `entries` holds everything after `since`. */
  token: number;
  /**
   * Cards and removals changed after `since`, in one stream ordered by seq (each seq names at most one owner
   * for one holder, so "everything after the last entry's seq" is a correct continuation).
   */
  entries: SyncEntry[];
}

export interface BindResult {
  binding: Binding;
  recipients: string[];
}

export interface DeviceRepo {
  upsert(d: Omit<Device, "createdAt" | "updatedAt" | "tokenState">, maxPerUser: number): Promise<Device>;
  list(owner: string): Promise<Device[]>;
  get(owner: string, deviceId: string): Promise<Device | undefined>;
  remove(owner: string, deviceId: string): Promise<boolean>;
  /** Marks every device holding this token dead (provider said so); returns how many. */
  invalidateToken(token: string): Promise<number>;
}

export interface CardRepo {
  get(owner: string): Promise<StoredCard | undefined>;
  /** Replaces the owner's card; unchanged content (same hash) is a no-op that notifies nobody. */
  set(owner: string, card: Card, hash: string): Promise<CardSetResult>;
  /** The share (owner → holder) with its policy, or undefined when holder does not hold owner's card. */
  share(
    owner: string,
    holder: string,
  ): Promise<{ policy: SharePolicy | null; bindingId: string } | undefined>;
  setPolicy(owner: string, holder: string, policy: SharePolicy | null): Promise<boolean>;
  /** At most `limit` changes the holder sees after `since` (a sync token), oldest first; more: there are others. */
  sync(holder: string, since: number, limit: number): Promise<SyncResult & { more: boolean }>;
  holders(owner: string): Promise<string[]>;
}

export interface ExchangeRepo {
  binding(a: string, b: string): Promise<Binding | undefined>;
  bindings(user: string): Promise<Binding[]>;
  isBlocked(owner: string, other: string): Promise<boolean>;
  /**
   * Blocks `other`; "full" (and nothing written) when `owner` already blocks `maxPerUser` others. Blocking an
   * already blocked JID is "blocked" and never counts against the cap.
   */
  block(owner: string, other: string, maxPerUser: number): Promise<"blocked" | "full">;
  unblock(owner: string, other: string): Promise<boolean>;
  blocked(owner: string): Promise<string[]>;
  /** Stores the request and its notice; "exists" when a request between the two (same direction) is stored. */
  createRequest(r: ExchangeRequest, notify: OutboxItem): Promise<"created" | "exists">;
  request(id: string): Promise<ExchangeRequest | undefined>;
  requestBetween(from: string, to: string): Promise<ExchangeRequest | undefined>;
  pendingFor(user: string, now: number): Promise<ExchangeRequest[]>;
  /** Requests `user` sent that are still waiting for an answer. */
  pendingFrom(user: string, now: number): Promise<ExchangeRequest[]>;
  countPendingFrom(user: string, now: number): Promise<number>;
  /** Deletes the request and enqueues `notify` (e.g. tell the requester it was declined) in one transaction. */
  closeRequest(id: string, notify: OutboxItem[]): Promise<boolean>;
  /** Stores the code unless the owner already has `maxOutstanding` unexpired ones ("full": nothing written). */
  createCode(c: ExchangeCode, maxOutstanding: number): Promise<"created" | "full">;
  /** Reads a code without using it up. */
  code(code: string): Promise<ExchangeCode | undefined>;
  /** Atomically takes (deletes) a code: a code binds at most once. */
  takeCode(code: string): Promise<ExchangeCode | undefined>;
  /**
   * Binds a and b (both shares, the binding record) and enqueues the binding record and each side's current
   * card for the other, in one transaction. Closes any request between them. Fails with "exists" if bound.
   */
  bind(
    b: Omit<Binding, "createdAt">,
    closeRequestId: string | undefined,
    now: number,
  ): Promise<BindResult | "exists">;
  /** Removes the binding and both shares, leaves sync tombstones, drops pending card entries, enqueues notices. */
  unbind(a: string, b: string, notify: OutboxItem[]): Promise<boolean>;
  expire(now: number): Promise<number>;
}

export interface OutboxRepo {
  enqueue(items: OutboxItem[]): Promise<number>;
  /** Due entries for one recipient, oldest first. */
  due(recipient: string, now: number, limit: number): Promise<OutboxEntry[]>;
  /** Deletes entries only if they were not replaced meanwhile (same seq): an ack for old content acks nothing new. */
  ack(entries: Array<Pick<OutboxEntry, "recipient" | "kind" | "subject" | "seq">>): Promise<number>;
  /** Records a failed attempt and when to try again. */
  retry(
    entries: Array<Pick<OutboxEntry, "recipient" | "kind" | "subject" | "seq">>,
    nextAt: number,
  ): Promise<void>;
  /** Drops entries that cannot be rendered any more (e.g. the binding is gone). */
  drop(entries: Array<Pick<OutboxEntry, "recipient" | "kind" | "subject" | "seq">>): Promise<void>;
  recipients(): Promise<string[]>;
  count(recipient?: string): Promise<number>;
  /** Earliest next_at of a recipient's entries waiting for a retry; undefined if none waits. */
  nextRetryAt(recipient: string): Promise<number | undefined>;
  /** Pending entries per kind (kinds with none are absent): one indexed query, for the queue gauges. */
  depthByKind(): Promise<Record<string, QueueBacklog>>;
  /** Per kind: entries, distinct recipients, entries waiting for a retry, oldest created_at (admin overview). */
  overview(): Promise<QueueKindStats[]>;
  /** One recipient's entries: how many, how many wait for a retry, the oldest created_at and most attempts. */
  recipientStats(recipient: string): Promise<QueueDepth>;
  /** Makes every entry of `recipient` due now with its attempt count reset; returns how many. */
  redeliver(recipient: string): Promise<number>;
  /** Deletes every entry of `recipient` (an admin dropping stuck entries); returns how many. */
  dropRecipient(recipient: string): Promise<number>;
}

/** Queue statistics for one outbox kind or push platform. */
export interface QueueKindStats {
  /** Outbox kind or push platform. */
  key: string;
  entries: number;
  recipients: number;
  retrying: number;
  /** created_at of the oldest entry (ms since the epoch). */
  oldestAt: number;
}

export interface QueueDepth {
  entries: number;
  retrying: number;
  oldestAt?: number;
  maxAttempts: number;
}

export interface PresenceRepo {
  /** Resources last known available: tried after a restart (an error reply prunes them). */
  add(bare: string, full: string): Promise<void>;
  remove(full: string): Promise<void>;
  /** Oldest first (by when each became available). */
  all(): Promise<Array<{ bare: string; full: string }>>;
  /** Users who granted cardlink a presence subscription: probed after a restart. */
  addSubscriber(bare: string): Promise<void>;
  removeSubscriber(bare: string): Promise<void>;
  isSubscriber(bare: string): Promise<boolean>;
}

/** A queued push notice (see push/types.ts PushNotice, plus where it goes and its retry state). */
export interface PushJob {
  id: string;
  owner: string;
  deviceId: string;
  platform: "ios" | "android";
  token: string;
  topic?: string;
  kind: "alert" | "background";
  collapseId: string;
  alert?: { title?: string; body: string; locKey?: string };
  data: Record<string, string>;
  expiresAt: number;
  attempts: number;
  nextAt: number;
  /** Epoch ms when the notice was queued (a coalesced newer notice keeps it). Set by the store on read. */
  createdAt?: number;
}

export interface PushNode {
  node: string;
  owner: string;
  deviceId: string;
  secret: string;
  createdAt: number;
}

export interface PushRepo {
  /** Queues notices; one per (token, collapseId): a newer one replaces the pending one. */
  enqueue(jobs: Array<Omit<PushJob, "attempts" | "nextAt">>): Promise<number>;
  due(now: number, limit: number): Promise<PushJob[]>;
  nextAt(): Promise<number | undefined>;
  /** Deletes sent notices and records the sends for the per-device budget. */
  sent(ids: string[], tokens: string[], now: number): Promise<void>;
  remove(ids: string[]): Promise<void>;
  retry(id: string, nextAt: number): Promise<void>;
  /** Postpones without counting an attempt (budget exhausted). */
  defer(id: string, nextAt: number): Promise<void>;
  dropToken(token: string): Promise<number>;
  sentSince(token: string, since: number): Promise<number[]>;
  count(): Promise<number>;
  /** Queued notices per platform (platforms with none are absent): one indexed query, for the queue gauges. */
  depthByPlatform(): Promise<Record<string, QueueBacklog>>;
  createNode(n: PushNode): Promise<PushNode>;
  /** A per-installation random secret (base64), created on first use and kept in the database. */
  secret(name: string): Promise<string>;
  node(node: string): Promise<PushNode | undefined>;
  /** Per platform: notices, distinct owners, notices waiting for a retry, oldest created_at (admin overview). */
  overview(): Promise<QueueKindStats[]>;
  /** One owner's queued notices (by the user whose devices they wake). */
  ownerStats(owner: string): Promise<QueueDepth>;
  /** Makes every notice for `owner` due now with its attempt count reset; returns how many. */
  redeliver(owner: string): Promise<number>;
  /** Deletes every queued notice for `owner`; returns how many. */
  dropOwner(owner: string): Promise<number>;
}

/**
 * Every stored row that names one user, per table, with the columns as stored (storage/sqlite/userdata.ts says
 * which rows count). The export of a user's own data is built from it.
 */
export type UserRows = Record<string, Array<Record<string, unknown>>>;

export interface DeleteUserResult {
  /** Rows deleted in all. */
  deleted: number;
  /** Rows deleted per table. */
  rows: Record<string, number>;
  /** Users who held the card (or had an unbind notice about it pending) and were given the notices. */
  peers: string[];
}

/** The old repositories, as one object (deleted at S11). */
export interface Repos {
  push: PushRepo;
  devices: DeviceRepo;
  cards: CardRepo;
  exchange: ExchangeRepo;
  outbox: OutboxRepo;
  presence: PresenceRepo;
  /** Every row about `jid` (its owner's view: others' blocks of `jid` are theirs), read in one transaction. */
  userRows(jid: string): Promise<UserRows>;
  /**
   * Erases every row about `jid` and enqueues `notify(peers)` for the users who held its card, in one
   * transaction (nothing is written if any part fails).
   */
  deleteUser(jid: string, notify: (peers: string[]) => OutboxItem[]): Promise<DeleteUserResult>;
  /** Schema version after migrations. */
  schemaVersion(): Promise<number>;
  /** Resolves when the database answers a query now (health checks); rejects with the reason otherwise. */
  ping(): Promise<void>;
  close(): Promise<void>;
}

// ------------------------------------------------------------------------------------ the new core (§3.1)

export type Backend = "sqlite" | "postgres";
export type AccountId = number & { readonly __brand: "AccountId" };
export type DeviceKey = number & { readonly __brand: "DeviceKey" }; // devices.id
export type Seq = number;
export type Param = string | number | bigint | null;
export type Params = Readonly<Record<string, Param>>;

/** Portable SQL (§2.1): named :params, the subset SQLite ≥ 3.35 and PostgreSQL ≥ 13 share. */
export interface Sql {
  get<R extends object>(sql: string, params?: Params): Promise<R | undefined>;
  all<R extends object>(sql: string, params?: Params): Promise<R[]>;
  run(sql: string, params?: Params): Promise<{ changes: number }>;
  readonly dialect: Dialect;
}

export interface Dialect {
  readonly backend: Backend;
  /** '' on SQLite (writers are serialized), 'FOR UPDATE SKIP LOCKED' on PostgreSQL. */
  readonly skipLocked: string;
  /** A sub-select yielding the integers of a JSON-array parameter. */
  jsonIds(param: string): string;
}

export interface ReadTx extends Sql {
  /** One clock reading per unit of work; tests pin it with StoreOptions.clock. */
  readonly now: number;
}

export interface Tx extends ReadTx {
  /** The unit of work's change number, allocated on first call (§2.4); the same value for every later call. */
  seq(): Promise<Seq>;
  /** Serializes writers of one account (PostgreSQL row lock; no-op on SQLite). Call before count-then-insert. */
  lockAccount(id: AccountId): Promise<void>;
  /** Runs after COMMIT, in registration order; dropped on rollback. A throwing hook is logged, not rethrown. */
  afterCommit(fn: () => void): void;
}

export interface Migration {
  version: number;
  name: string;
  /** Per backend; a module that has no PostgreSQL variant yet cannot run on PostgreSQL (checked at start-up). */
  sql: { sqlite?: string; postgres?: string };
  rebuild?: boolean; // SQLite: foreign_keys off + foreign_key_check (§2.8.1)
  check?(tx: Tx): Promise<void>; // post-conditions inside the transaction (row counts for 2000)
}

export interface MigrationReport {
  applied: number[];
  current: number;
  pending: number[];
}

export interface Store {
  readonly backend: Backend;
  /** One unit of work. Retries StoreBusyError/serialization failures up to 3 times (fn must be pure but for the store). */
  tx<T>(name: string, fn: (tx: Tx) => Promise<T>): Promise<T>;
  /** A consistent read snapshot (SQLite: the reader connection in BEGIN … COMMIT; PostgreSQL: REPEATABLE READ READ ONLY). */
  read<T>(name: string, fn: (tx: ReadTx) => Promise<T>): Promise<T>;
  migrate(migrations: readonly Migration[], o?: { dryRun?: boolean }): Promise<MigrationReport>;
  schemaVersion(): Promise<number>;
  /** Observes every commit by unit-of-work name: metrics, and the kill -9 fault hook (§4.6). */
  onCommit(fn: (name: string, ms: number) => void): void;
  /** SQLite: observes the WAL checkpoints run off the request path (sqlite/checkpointer.ts); absent elsewhere. */
  onCheckpoint?(fn: (r: CheckpointReport) => void): void;
  close(): Promise<void>;
}

export interface StoreOptions {
  log: Logger;
  clock?: () => number;
  busyTimeoutMs?: number;
  txWarnMs?: number;
}
