/**
 * The stream half of QueueTx (docs/REDESIGN.md §2.3.2, §3.3): append, appendToAudience, appendSelect, retract,
 * payload, pending — the writes a feature's unit of work makes to recipients' lanes. The SQL is stream-repo.ts;
 * this file holds the per-unit-of-work rules:
 *
 * - every append takes the unit of work's seq (§2.4) and the next `ord` (one per append call, so entries written
 *   by one change keep the order the feature wrote them in: `binding` before `card` on a bind);
 * - the kind's registered coalescing rule picks the statement (`replace`: upsert; `keep`: plain insert, whose
 *   unique violation fails the unit of work — a second append of one `keep` subject is a bug);
 * - each unit of work that appended announces its lanes once, after commit (`queue.appended`: the engine kicks
 *   delivery and the observers).
 *
 * Claims, acks, GC and dormancy are the delivery engine's units of work (S7), on stream-repo.ts directly.
 */
import type { AccountId, Params } from "../../../storage/store.js";
import type { AudiencePath } from "../audience/api.js";
import { audienceHoldersSql } from "../audience/compose.js";
import type { Part, UnitOfWork } from "../uow.js";
import type { AppendSpec, Json, PayloadId, PendingEntry, StreamKind, StreamQueueTx } from "./api.js";
import { AUDIENCE_HOLDERS_SQL, streamRepo, type Coalesce, type EntryValues } from "./stream-repo.js";

/** Built once per process by createCardlink from the registries (§3.6). */
export interface StreamTxOptions {
  /** The registered kind of that name (coalescing rule), or undefined: appending an unknown kind is a bug. */
  readonly kind: (name: string) => StreamKind | undefined;
  /** The registered audience paths, for appendToAudience (S4 starts with the binding path's fixed SQL). */
  readonly paths: readonly AudiencePath[];
  /**
   * Several processes on one PostgreSQL (queue.exclusive false, issue 13): every append also sends
   * `pg_notify(wakeChannel, lanes)` inside the unit of work, so the process that holds those users' presence
   * is woken at COMMIT (wake.ts). Absent (SQLite, one process): the post-commit kick alone.
   */
  readonly wakeChannel?: string;
}

/**
 * pg_notify's payload limit is 8000 bytes: a longer lane list is sent as "*" (re-scan every lane with a
 * resource), which costs the listeners one pass over their own presence, not a query per lane.
 */
export const WAKE_PAYLOAD_MAX = 7_900;

/** The NOTIFY payload for these lanes: decimal ids joined by ',' or "*" when they do not fit. */
export function wakePayload(lanes: readonly AccountId[]): string {
  const s = lanes.join(",");
  return s.length > WAKE_PAYLOAD_MAX ? "*" : s;
}

export function streamTx(o: StreamTxOptions): Part<StreamQueueTx> {
  // Composed once per process (cached per path list): every registered path's holders, in one statement. An
  // empty registry keeps the binding path's fixed text (the stream contract cases fan out over `shares` alone).
  const holders = o.paths.length === 0 ? AUDIENCE_HOLDERS_SQL : audienceHoldersSql(o.paths);
  return (u) => new StreamTx(u, o, holders);
}

class StreamTx implements StreamQueueTx {
  private readonly repo;
  /** The next ord of this unit of work (§2.3.2). */
  private ord = 0;
  /** Lanes this unit of work appended to, announced once after commit; undefined until the first append. */
  private appended: { lanes: AccountId[]; seq: number } | undefined;

  constructor(
    private readonly u: UnitOfWork,
    private readonly o: StreamTxOptions,
    private readonly holders: string,
  ) {
    this.repo = streamRepo(u.tx);
  }

  private rule(kind: string): StreamKind {
    const k = this.o.kind(kind);
    if (!k) throw new Error(`queue stream: unknown kind '${kind}' (not registered)`);
    return k;
  }

  /** The kind, the change's seq and the next ord: what every append needs. */
  private async values(kind: string, e?: AppendSpec): Promise<{ mode: Coalesce; v: EntryValues }> {
    const k = this.rule(kind);
    if (e) {
      if (typeof e.subject !== "string" || e.subject === "") {
        throw new Error(`queue stream: kind '${kind}' appended without a subject`);
      }
      // §2.3.2: subject_account is set iff the kind is about a user, and then the subject is that id in decimal.
      if (
        k.subject === "account" &&
        (e.subjectAccount === undefined || e.subject !== String(e.subjectAccount))
      ) {
        throw new Error(
          `queue stream: kind '${kind}' is about an account: subject must be String(subjectAccount)`,
        );
      }
      if (k.subject === "entity" && e.subjectAccount !== undefined) {
        throw new Error(`queue stream: kind '${kind}' has entity subjects: no subjectAccount`);
      }
    }
    const seq = await this.u.seq();
    const v: EntryValues = { seq, ord: this.ord++, kind, subject: e?.subject ?? "", now: this.u.now };
    if (e?.subjectAccount !== undefined) v.subjectAccount = e.subjectAccount;
    if (e?.payload !== undefined) v.payload = e.payload;
    return { mode: k.coalesce, v };
  }

  private async announce(lanes: readonly AccountId[], seq: number): Promise<void> {
    if (lanes.length === 0) return;
    if (this.o.wakeChannel !== undefined && this.u.tx.notify) {
      await this.u.tx.notify(this.o.wakeChannel, wakePayload(lanes));
    }
    if (this.appended) {
      for (const l of lanes) if (!this.appended.lanes.includes(l)) this.appended.lanes.push(l);
      return;
    }
    // One event per unit of work: emit queues its post-commit delivery now, with this object, which later
    // appends of the same unit of work complete. `queue.appended` is post-commit only (events.ts): no onTx
    // handler sees it half-filled.
    this.appended = { lanes: [...new Set(lanes)], seq };
    await this.u.emit("queue.appended", this.appended);
  }

  async append(kind: string, lanes: readonly AccountId[], e: AppendSpec): Promise<AccountId[]> {
    const want = [...new Set(lanes)];
    if (want.length === 0) {
      this.rule(kind);
      return [];
    }
    const { mode, v } = await this.values(kind, e);
    const got = await this.repo.append(mode, want, v);
    if (got.length !== want.length) {
      const missing = want.filter((l) => !got.includes(l));
      // Throwing rolls back what the statement wrote: a lane that is no account is a caller's bug.
      throw new Error(`queue stream: append of '${kind}' to unknown accounts ${missing.join(", ")}`);
    }
    await this.announce(got, v.seq);
    return got;
  }

  async appendToAudience(
    kind: string,
    owner: AccountId,
    e: AppendSpec,
    o?: { exclude?: readonly AccountId[] },
  ): Promise<AccountId[]> {
    const { mode, v } = await this.values(kind, e);
    const got = await this.repo.fanOut(mode, owner, o?.exclude ?? [], v, this.holders);
    await this.announce(got, v.seq);
    return got;
  }

  async appendSelect(kind: string, select: { sql: string; params: Params }): Promise<AccountId[]> {
    const { mode, v } = await this.values(kind);
    const got = await this.repo.appendSelect(mode, select, v);
    await this.announce(got, v.seq);
    return got;
  }

  async retract(kind: string, subject: string, lanes?: readonly AccountId[]): Promise<number> {
    const k = this.rule(kind);
    if (lanes !== undefined) return lanes.length === 0 ? 0 : this.repo.retractIn(kind, subject, lanes);
    // Without lanes only an account subject has an index to find its entries by (stream_subject_account); an
    // entity subject would scan every lane, so its feature names the lanes (it knows them: the request's
    // recipient, the group's members).
    if (k.subject !== "account") {
      throw new Error(`queue stream: retract of entity kind '${kind}' needs its lanes`);
    }
    const id = Number(subject);
    if (!Number.isSafeInteger(id) || String(id) !== subject) {
      throw new Error(`queue stream: kind '${kind}' is about an account: subject '${subject}' is not an id`);
    }
    return this.repo.retractAccountSubject(kind, subject, id as AccountId);
  }

  async payload(kind: string, body: Json): Promise<PayloadId> {
    this.rule(kind);
    return this.repo.payload(kind, body, this.u.now);
  }

  async pending(lane: AccountId, limit: number): Promise<PendingEntry[]> {
    const rows = await this.repo.pending(lane, limit);
    return rows.map((r) => {
      const p: PendingEntry = { lane: r.lane, seq: r.seq, ord: r.ord, kind: r.kind, subject: r.subject };
      if (r.subjectAccount !== undefined) p.subjectAccount = r.subjectAccount;
      if (r.payload !== undefined) p.payload = r.payload;
      return p;
    });
  }
}
