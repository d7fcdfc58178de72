/**
 * Durable observers of the global stream (docs/REDESIGN.md §2.3.7): a reader of `stream_entries` in seq order
 * from its mark in `queue_marks`, whose batch runs in the unit of work that advances the mark, so what it writes
 * (push-scan: push jobs) and the mark commit together. A kill -9 after a change's commit leaves mark < seq, and
 * the next run (at start-up) sees the entry.
 *
 * One process runs an observer at a time: the mark row carries a lease, taken (or renewed) by every run in its
 * own unit of work, kept between runs (runs come every queue.observerPollMs, far inside queue.leaseMs) and
 * released at stop. A run that finds the lease held by a live other process does nothing.
 *
 * Batches hold whole seq groups: the entries of one change share a seq, and the mark moves to a seq only with
 * every entry of it, so a LIMIT never cuts a change in two (a change bigger than batchSize is read whole).
 *
 * The mark's SQL lives here, not in stream-repo.ts: queue_marks is the observers' table, and the entries are
 * only read (by the stream_seq index, §2.7 "observer").
 */
import { SingleFlight } from "./single-flight.js";
import type { Logger } from "pino";
import type { AccountId, Sql } from "../../../storage/store.js";
import type { Uow } from "../uow.js";
import type { Json, Observer, PendingEntry } from "./api.js";
import { LEASE_FREE } from "./jobs-repo.js";

const ENSURE_MARK =
  "INSERT INTO queue_marks (name, pos, lease_owner, lease_until) VALUES (:name, 0, NULL, 0) ON CONFLICT (name) DO NOTHING";
const LEASE_MARK = `
UPDATE queue_marks SET lease_owner = :me, lease_until = :until
 WHERE name = :name AND (lease_owner = :me OR ${LEASE_FREE})
RETURNING pos`;
const MOVE_MARK = "UPDATE queue_marks SET pos = :pos WHERE name = :name AND lease_owner = :me";
const RELEASE_MARK =
  "UPDATE queue_marks SET lease_owner = NULL, lease_until = 0 WHERE name = :name AND lease_owner = :me";
/** The last seq of the first `:n` entries above the mark: the batch ends at a whole change. */
const BATCH_END = `
SELECT MAX(t.seq) AS upto FROM (SELECT seq FROM stream_entries WHERE seq > :pos ORDER BY seq LIMIT :n) t`;
const ENTRIES = `
SELECT e.account_id, e.seq, e.ord, e.kind, e.subject, e.subject_account, p.body
  FROM stream_entries e LEFT JOIN payloads p ON p.id = e.payload_id
 WHERE e.seq > :pos AND e.seq <= :upto
 ORDER BY e.seq, e.ord, e.id`;

interface RawEntry {
  account_id: number;
  seq: number;
  ord: number;
  kind: string;
  subject: string;
  subject_account: number | null;
  body: string | null;
}

export const marksRepo = (q: Sql) => ({
  /** Leases the observer's mark to `me` (creating it at 0 if missing); its position, or undefined when held. */
  async lease(
    name: string,
    me: string,
    o: { now: number; until: number; alive: number },
  ): Promise<number | undefined> {
    await q.run(ENSURE_MARK, { name });
    const r = await q.get<{ pos: number }>(LEASE_MARK, { name, me, ...o });
    return r === undefined ? undefined : Number(r.pos);
  },
  async move(name: string, me: string, pos: number): Promise<void> {
    await q.run(MOVE_MARK, { name, me, pos });
  },
  async release(name: string, me: string): Promise<void> {
    await q.run(RELEASE_MARK, { name, me });
  },
  /** Whole seq groups above `pos`, about `n` entries (more when the last change is bigger); upto = the last seq. */
  async after(pos: number, n: number): Promise<{ upto: number; entries: PendingEntry[] } | undefined> {
    const end = await q.get<{ upto: number | null }>(BATCH_END, { pos, n });
    if (end?.upto === null || end?.upto === undefined) return undefined;
    const upto = Number(end.upto);
    const rows = await q.all<RawEntry>(ENTRIES, { pos, upto });
    return {
      upto,
      entries: rows.map((r) => ({
        lane: Number(r.account_id) as AccountId,
        seq: Number(r.seq),
        ord: Number(r.ord),
        kind: r.kind,
        subject: r.subject,
        ...(r.subject_account === null ? {} : { subjectAccount: Number(r.subject_account) as AccountId }),
        ...(r.body === null ? {} : { payload: JSON.parse(r.body) as Json }),
      })),
    };
  },
});

export interface ObserverRunnerOptions {
  readonly uow: Uow;
  readonly me: string;
  readonly leaseMs: number;
  /** Heartbeats older than this free their owner's leases (3 × queue.heartbeatMs). */
  readonly silentMs: number;
  readonly log: Logger;
}

/** What one run did: `held` = another live process has the lease; otherwise how far the mark moved. */
export type RunResult = { held: true } | { held: false; from: number; to: number; entries: number };

export class ObserverRunner {
  private stopped = false;

  constructor(
    readonly observer: Observer,
    private readonly o: ObserverRunnerOptions,
  ) {}

  /** One unit of work: lease, read a batch above the mark, run the observer's batch, move the mark. */
  runOnce(): Promise<RunResult> {
    const ob = this.observer;
    return this.o.uow(`observer.${ob.name}`, async (u): Promise<RunResult> => {
      const marks = marksRepo(u.tx);
      const pos = await marks.lease(ob.name, this.o.me, {
        now: u.now,
        until: u.now + this.o.leaseMs,
        alive: u.now - this.o.silentMs,
      });
      if (pos === undefined) return { held: true };
      const batch = await marks.after(pos, ob.batchSize);
      if (!batch) return { held: false, from: pos, to: pos, entries: 0 };
      const kinds = ob.kinds === undefined ? undefined : new Set(ob.kinds);
      const entries = kinds ? batch.entries.filter((e) => kinds.has(e.kind)) : batch.entries;
      // The mark advances past entries of other kinds too: they were examined, not skipped.
      if (entries.length > 0) await ob.batch(u, entries);
      await marks.move(ob.name, this.o.me, batch.upto);
      return { held: false, from: pos, to: batch.upto, entries: entries.length };
    });
  }

  /** Runs until caught up (single flight; a kick during a run runs again after it). */
  kick(): void {
    if (!this.stopped) this.flight.kick();
  }

  private readonly flight = new SingleFlight(() =>
    this.drain().catch((e: unknown) =>
      this.o.log.error(
        { event: "observer-failed", observer: this.observer.name, err: (e as Error).message },
        "observer batch failed; its mark stays, the poll retries",
      ),
    ),
  );

  private async drain(): Promise<void> {
    while (!this.stopped) {
      const r = await this.runOnce();
      if (r.held || r.to === r.from) return;
    }
  }

  async idle(): Promise<void> {
    await this.flight.idle();
  }

  /**
   * Stops running and gives the lease back, so another process can take over at once. A failed release is
   * logged, not thrown: the lease frees itself once this process's heartbeat is silent, and the shutdown that
   * called this must still close what follows (engine.ts stop).
   */
  async stop(): Promise<void> {
    this.stopped = true;
    await this.idle();
    try {
      await this.o.uow(`observer.${this.observer.name}.release`, (u) =>
        marksRepo(u.tx).release(this.observer.name, this.o.me),
      );
    } catch (e) {
      this.o.log.warn(
        { event: "observer-release-failed", observer: this.observer.name, err: (e as Error).message },
        "observer lease not given back at stop",
      );
    }
  }
}
