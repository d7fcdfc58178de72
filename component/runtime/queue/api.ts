/**
 * Public types of the queue (docs/REDESIGN.md §3.3): stream kinds (XMPP updates, one entry per recipient
 * account, a cursor per consumer), job channels (push, webhooks: one row per target), durable observers, and
 * the engine that runs them. The two halves of QueueTx are built by queue/stream-tx.ts (step S4) and
 * queue/jobs-tx.ts (step S5); the engine by queue/engine.ts (step S5).
 */
import type { Element } from "../../../stanzas/xml.js";
import type { AccountId, DeviceKey, Params, ReadTx, Seq } from "../../../storage/store.js";
import type { StanzaBudget } from "../budget.js";
import type { ReadContext, UnitOfWork } from "../uow.js";

export type Json = null | boolean | number | string | Json[] | { [k: string]: Json };
export type PayloadId = number & { readonly __brand: "PayloadId" };
export type JobId = number & { readonly __brand: "JobId" };

export interface AppendSpec {
  subject: string; // internal subject (§2.3.2); String(accountId) for account subjects
  subjectAccount?: AccountId; // set iff the kind's subject is an account
  payload?: PayloadId; // from queue.payload(), shared by every lane of this append
}
export interface QueueTx {
  append(kind: string, lanes: readonly AccountId[], e: AppendSpec): Promise<AccountId[]>;
  appendToAudience(
    kind: string,
    owner: AccountId,
    e: AppendSpec,
    o?: { exclude?: readonly AccountId[] },
  ): Promise<AccountId[]>;
  /** INSERT … SELECT with a feature's SELECT yielding (lane, subject, subject_account, payload_id) rows. */
  appendSelect(kind: string, select: { sql: string; params: Params }): Promise<AccountId[]>;
  retract(kind: string, subject: string, lanes?: readonly AccountId[]): Promise<number>;
  payload(kind: string, body: Json): Promise<PayloadId>;
  job(channel: string, j: JobSpec): Promise<{ id: JobId; replaced: boolean }>;
  dropJobs(channel: string, where: { device?: DeviceKey; target?: string; token?: string }): Promise<number>;
  /** The lane's pending entries above its lowest active cursor (push's "announce everything waiting"). */
  pending(lane: AccountId, limit: number): Promise<PendingEntry[]>;
}
/**
 * Not in §3.3 by name: the two halves of QueueTx as §1.2 splits them ("stream-tx.ts / jobs-tx.ts"), so each
 * step fills one file. UnitOfWork.queue delegates every method to its half.
 */
export type StreamQueueTx = Pick<
  QueueTx,
  "append" | "appendToAudience" | "appendSelect" | "retract" | "payload" | "pending"
>;
export type JobsQueueTx = Pick<QueueTx, "job" | "dropJobs">;

export interface JobSpec {
  kind: string;
  target: string;
  body: Json;
  ckey?: string; // replace-newest key; absent = keep each
  account?: AccountId;
  device?: DeviceKey;
  expiresAt?: number;
  notBefore?: number;
}

/** A kind of XMPP update (an <update kind='…'/> child). */
export interface StreamKind {
  name: string; // the wire kind
  coalesce: "replace" | "keep";
  subject: "account" | "entity"; // how the wire subject of the update id renders
  wake: boolean; // offline recipients get a push for it
  /** Current content, or null = moot (skipped; the cursor passes it). Runs outside any unit of work. */
  render(r: RenderContext, e: PendingEntry): Promise<Element | null>;
}
export interface PendingEntry {
  lane: AccountId;
  seq: Seq;
  ord: number;
  kind: string;
  subject: string;
  subjectAccount?: AccountId;
  payload?: Json;
}
export interface RenderContext extends ReadContext {
  readonly budget: StanzaBudget; // budget branch
  readonly cache: RenderCache; // per (kind, key) memo for one delivery round: card versions, JIDs
  /**
   * The consumer declared the compact update form (PROTOCOL §10.8, `<active-device format='vcf'/>`): a kind
   * that has one renders it (the `card` kind: the card as one vCard text node); the others ignore it.
   */
  readonly compact?: boolean;
}
/**
 * Not spelled out in §3.3 (it names the type only): the per-round memo renderers share. `load` runs at most
 * once per (kind, key) in one delivery round; the round drops the cache when it ends.
 */
export interface RenderCache {
  get<T>(kind: string, key: string, load: () => Promise<T>): Promise<T>;
}

/** An outbound channel whose unit is a job (§2.3.6). */
export interface JobChannel {
  name: string; // 'push' | 'webhook' | 'xmpp-privileged' | …
  concurrency: number; // jobs claimed per round
  maxAttempts: number;
  backoff: { baseMs: number; maxMs: number };
  onExhausted: "drop" | "dead-letter";
  /** Defer jobs without counting an attempt (push: the hourly budget); returns jobId → not-before. */
  gate?(r: ReadTx, jobs: readonly ClaimedJob[], now: number): Promise<Map<JobId, number>>;
  /** Index-aligned outcomes; never throws for one job (a throw = every job `retry`). */
  send(jobs: readonly ClaimedJob[]): Promise<JobOutcome[]>;
  /** Runs in the settle unit of work: side effects of outcomes (dead token → devices; sent → push_sends) and metrics. */
  settle?(u: UnitOfWork, jobs: readonly ClaimedJob[], outcomes: readonly JobOutcome[]): Promise<void>;
}
export interface ClaimedJob {
  id: JobId;
  rev: number;
  uid: string;
  kind: string;
  target: string;
  body: Json;
  attempts: number;
  expiresAt: number;
  account?: AccountId;
  device?: DeviceKey;
}
export type JobOutcome =
  | { status: "done" }
  | { status: "retry"; reason: string; afterMs?: number }
  | { status: "drop"; reason: string } // permanent for this job; no dead letter
  | { status: "dead"; reason: string }; // straight to dead_letters

/** A durable reader of the global stream (§2.3.7). */
export interface Observer {
  name: string; // queue_marks.name
  kinds?: readonly string[]; // only entries of these kinds are passed (the mark still advances)
  batchSize: number;
  batch(u: UnitOfWork, entries: readonly PendingEntry[]): Promise<void>;
}

/**
 * §3.3 places this interface in runtime/queue/engine.ts; it is declared here instead because Runtime
 * (context.ts) names it and engine.ts is step S5's file: the engine class implements this type.
 */
export interface QueueEngine {
  registerKind(k: StreamKind): void;
  registerChannel(c: JobChannel): void;
  registerObserver(o: Observer): void;
  /** On link online: clear or expire leases, restore presence, kick lanes with pending entries, resume observers. */
  start(): Promise<void>;
  /** Stop claiming; wait for in-flight sends to settle (bounded by shutdownGraceMs); release leases. */
  stop(): Promise<void>;
  kickLanes(lanes: readonly AccountId[]): void; // hints; the durable state is in the store
  kickChannel(name: string): void;
  remoteAck(from: string, iqId: string): Promise<boolean>;
  /**
   * Dead letters back into their channel as due jobs with their uid (the receiver's idempotency id), by id or
   * every letter of a channel; returns how many were replayed. The channels are kicked after the commit.
   */
  replayDeadLetters(which: { ids: readonly number[] } | { channel: string }): Promise<number>;
  depth(): Promise<{
    stream: { entries: number; lanes: number; oldestMs: number };
    jobs: Record<string, { due: number; deferred: number; oldestMs: number; dead: number }>;
  }>;
}
