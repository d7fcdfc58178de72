/**
 * The unit of work features use (docs/REDESIGN.md §3.2): one store transaction plus the runtime's parts over it
 * (accounts, queue, audience) and in-transaction domain events. `rt.uow(name, fn)` is `makeUow(...)`; `rt.read`
 * is `makeReader(...)`.
 *
 * The parts are built lazily, on first use in a unit of work: most units of work touch one or two of them, and a
 * part's factory may read per-unit state (the clock, the transaction) when it is built. Each factory lives in
 * its own file (accounts/tx.ts, queue/stream-tx.ts, queue/jobs-tx.ts, audience/tx.ts), so the steps that build
 * them edit no shared file.
 */
import type { AccountId, ReadTx, Seq, Store, Tx } from "../../storage/store.js";
import type { AccountsRead, AccountsTx } from "./accounts/api.js";
import type { AudienceRead, AudienceTx } from "./audience/api.js";
import type { DomainEvents, EventBus, EventName } from "./events.js";
import type { JobsQueueTx, QueueTx, StreamQueueTx } from "./queue/api.js";

export interface UnitOfWork {
  readonly tx: Tx; // the feature's own repo runs on this
  readonly now: number;
  seq(): Promise<Seq>;
  readonly accounts: AccountsTx;
  readonly queue: QueueTx;
  readonly audience: AudienceTx;
  /** In-transaction domain event: onTx handlers run now, in this unit of work; `on` listeners after commit. */
  emit<K extends EventName>(name: K, e: DomainEvents[K]): Promise<void>;
  afterCommit(fn: () => void): void;
}
export type Uow = <T>(name: string, fn: (u: UnitOfWork) => Promise<T>) => Promise<T>; // rt.uow
export type Reader = <T>(name: string, fn: (r: ReadContext) => Promise<T>) => Promise<T>; // rt.read
export interface ReadContext {
  readonly read: ReadTx;
  readonly accounts: AccountsRead;
  readonly audience: AudienceRead;
}

/** Builds one part of a unit of work; called at most once per unit of work, on first use. */
export type Part<P> = (u: UnitOfWork) => P;
/** Builds one part of a read context over its snapshot. */
export type ReadPart<P> = (r: ReadTx) => P;

/** The factories makeUow wires into every unit of work (createCardlink builds them once per process). */
export interface UowParts {
  readonly accounts: Part<AccountsTx>;
  readonly stream: Part<StreamQueueTx>;
  readonly jobs: Part<JobsQueueTx>;
  readonly audience: Part<AudienceTx>;
}
export interface ReadParts {
  readonly accounts: ReadPart<AccountsRead>;
  readonly audience: ReadPart<AudienceRead>;
}

/** In-tx handlers may emit further events, to this depth (§3.5): a cycle fails the unit of work, not the process. */
export const MAX_EVENT_DEPTH = 8;

/** `rt.uow`: every call is one `store.tx`, with a fresh UnitOfWork per attempt (the store may retry `fn`). */
export function makeUow(store: Pick<Store, "tx">, parts: UowParts, events: EventBus): Uow {
  return (name, fn) => store.tx(name, (tx) => fn(new Work(tx, parts, events)));
}

/** `rt.read`: one consistent snapshot with the read halves of accounts and audience. */
export function makeReader(store: Pick<Store, "read">, parts: ReadParts): Reader {
  return (name, fn) =>
    store.read(name, (read) => {
      let accounts: AccountsRead | undefined;
      let audience: AudienceRead | undefined;
      return fn({
        read,
        get accounts() {
          return (accounts ??= parts.accounts(read));
        },
        get audience() {
          return (audience ??= parts.audience(read));
        },
      });
    });
}

class Work implements UnitOfWork {
  private depth = 0;
  private accountsPart: AccountsTx | undefined;
  private streamPart: StreamQueueTx | undefined;
  private jobsPart: JobsQueueTx | undefined;
  private audiencePart: AudienceTx | undefined;
  readonly queue: QueueTx;

  constructor(
    readonly tx: Tx,
    private readonly parts: UowParts,
    private readonly events: EventBus,
  ) {
    // Each method goes to its half, built on first use: a unit of work that only appends never builds the jobs half.
    const s = (): StreamQueueTx => (this.streamPart ??= this.parts.stream(this));
    const j = (): JobsQueueTx => (this.jobsPart ??= this.parts.jobs(this));
    this.queue = {
      append: (kind, lanes, e) => s().append(kind, lanes, e),
      appendToAudience: (kind, owner: AccountId, e, o) => s().appendToAudience(kind, owner, e, o),
      appendSelect: (kind, select) => s().appendSelect(kind, select),
      retract: (kind, subject, lanes) => s().retract(kind, subject, lanes),
      payload: (kind, body) => s().payload(kind, body),
      pending: (lane, limit) => s().pending(lane, limit),
      job: (channel, spec) => j().job(channel, spec),
      dropJobs: (channel, where) => j().dropJobs(channel, where),
    };
  }

  get now(): number {
    return this.tx.now;
  }

  seq(): Promise<Seq> {
    return this.tx.seq();
  }

  get accounts(): AccountsTx {
    return (this.accountsPart ??= this.parts.accounts(this));
  }

  get audience(): AudienceTx {
    return (this.audiencePart ??= this.parts.audience(this));
  }

  afterCommit(fn: () => void): void {
    this.tx.afterCommit(fn);
  }

  async emit<K extends EventName>(name: K, e: DomainEvents[K]): Promise<void> {
    if (this.depth >= MAX_EVENT_DEPTH) {
      throw new Error(
        `event '${name}' emitted at depth ${this.depth + 1}: in-tx handlers loop (limit ${MAX_EVENT_DEPTH})`,
      );
    }
    // Registered before the handlers run, so post-commit listeners see events in the order they were emitted
    // (an event emitted by a handler comes after the event that caused it). Dropped with the rest on rollback.
    this.tx.afterCommit(() => this.events.emit(name, e));
    this.depth++;
    try {
      await this.events.runTx(this, name, e);
    } finally {
      this.depth--;
    }
  }
}
