/**
 * Storage interfaces (docs/REDESIGN.md §3.1): `Store` (units of work over portable SQL), `Tx`, `ReadTx`, `Sql`,
 * `Dialect`, `Migration`. No feature types: features keep their SQL in their own repo modules.
 */
import type { Logger } from "pino";
import type { CheckpointReport } from "./sqlite/checkpointer.js";

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
  /**
   * PostgreSQL only (absent on SQLite): `pg_notify(channel, payload)` inside this transaction, so it reaches the
   * listeners of every process at COMMIT and never for a rollback (issue 13's cross-process wake-ups).
   */
  notify?(channel: string, payload: string): Promise<void>;
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
  /** Resolves when the database answers a query now (health checks); rejects with the reason otherwise. */
  ping(): Promise<void>;
  /** SQLite: observes the WAL checkpoints run off the request path (sqlite/checkpointer.ts); absent elsewhere. */
  onCheckpoint?(fn: (r: CheckpointReport) => void): void;
  /**
   * PostgreSQL only: LISTEN on a dedicated connection that reconnects by itself (capped backoff). `onConnected`
   * runs after every LISTEN took effect, `first` false after a reconnect: notifications sent while it was down
   * are lost, so the caller re-scans what they would have told it. Returns the stop function.
   */
  listen?(channel: string, h: ListenHandlers): () => Promise<void>;
  close(): Promise<void>;
}

export interface ListenHandlers {
  onMessage(payload: string): void;
  onConnected(first: boolean): void;
}

export interface StoreOptions {
  log: Logger;
  clock?: () => number;
  busyTimeoutMs?: number;
  txWarnMs?: number;
}
