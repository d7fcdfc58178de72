/**
 * WAL checkpoints off the request path: a worker thread (node:worker_threads) with its own better-sqlite3
 * connection to the store's file checkpoints the WAL, so no unit of work pays for it (docs/DECISIONS.md "WAL
 * checkpoints run on a worker thread", docs/BENCHMARKS.md "queries").
 *
 * Why a thread: SQLite's autocheckpoint runs inside the COMMIT that takes the WAL past 1,000 pages, on the writer
 * connection. better-sqlite3 is synchronous, so that unit of work, every write queued behind it and the event loop
 * wait while up to ~1,000 pages are copied into the database file and synced. A checkpoint on the writer
 * connection from a timer would hold the event loop the same way; a checkpoint on another thread holds nothing
 * of this process's but CPU and disk.
 *
 * What SQLite guarantees (https://sqlite.org/wal.html, c3ref/wal_checkpoint_v2.html, pragma wal_checkpoint):
 * - `PRAGMA wal_checkpoint(PASSIVE)` copies as many WAL frames into the database file as it can without waiting
 *   for any reader or writer (it never calls the busy handler) and answers one row (busy, log, checkpointed):
 *   `log` frames in the WAL, `checkpointed` of them now in the database file (both -1 when the file is not in WAL
 *   mode). It cannot copy a frame newer than the snapshot of the oldest open read transaction (that reader still
 *   needs the database page the frame would overwrite), so it may stop short; the next run goes on from there.
 * - The WAL starts over (its frames are overwritten from the start, the file keeps its size) at the first write
 *   after a checkpoint copied all of it, if no reader is still reading from it. Readers that overlap without a
 *   pause (another process's long reads, a backup) can keep that from happening: the copying goes on but the WAL
 *   only grows ("checkpoint starvation"). No checkpoint mode can pass a read transaction that stays open. A writer
 *   that never pauses does the same to a checkpoint on another connection: each run ends with newer frames behind
 *   it, so the WAL is never all copied when the next write begins.
 * - FULL, RESTART and TRUNCATE take the database's write lock and call the busy handler while they wait for it and
 *   for readers of older snapshots. RESTART then makes the next write start the WAL over; TRUNCATE also truncates
 *   the -wal file to 0 bytes (answering 0, 0, 0). `busy` = 1 when a reader or writer kept either from completing
 *   before the busy timeout.
 *
 * So the worker (one per store, started and stopped with it):
 * - every `intervalMs` runs wal_checkpoint(PASSIVE) and reports the row to the store (metrics, tests);
 * - when a PASSIVE run leaves `walLimitPages` frames or more in the WAL (a burst, a writer that never pauses, or
 *   readers that never let it start over), catches up with a few more PASSIVE runs (so that little is left to copy
 *   while writes wait), then asks for a forced RESTART. The store first takes its own write lock,
 *   so this process's units of work queue on the async mutex instead of in SQLite's busy handler (which would sleep
 *   on the event loop); then the worker runs wal_checkpoint(RESTART) with a busy timeout of `hardWaitMs`, and the
 *   store releases its lock. If a reader kept it from completing it is tried again after `hardRetryMs`, doubling up
 *   to a minute, and logged (`wal-checkpoint-starved`): a reader that never ends is beyond any checkpoint, but the
 *   WAL cannot grow unnoticed, and a write never waits more than `hardWaitMs` plus the copy for it. RESTART, not
 *   TRUNCATE: cutting a 20,000-frame -wal file to 0 bytes (and growing it again) took 30–40 ms here against
 *   1.5–3 ms for RESTART, all of it with writes waiting. The file keeps its size (SQLite's own habit: it is
 *   overwritten from the start), so it stays under the backstop's size below; only when readers made it grow past
 *   twice that (8 × walLimitPages frames) is the forced checkpoint a TRUNCATE, to give the disk back;
 * - on stop (the store's close, which holds the write lock, so no unit of work of this process is open) runs a last
 *   PASSIVE checkpoint and closes its connection. PASSIVE, not TRUNCATE: a store is also opened by commands that
 *   may run beside a live cardlink (export-user, delete-user), whose close must not take the server's write lock.
 *   When the store's connections are the file's last ones, SQLite's own close then finds nothing left to copy and
 *   deletes the WAL.
 * The forced checkpoint needs the store's event loop to turn (the lock is granted there). A synchronous loop of
 * writes never lets it (migrations at start-up; the benchmark's seeding grew a 4.6 GB WAL that way), so the store's
 * connections keep SQLite's own autocheckpoint, at 4 × `walLimitPages` (`backstopPages`) instead of 1,000: it never
 * fires while the worker keeps the WAL short, and bounds it when nothing else can run. At 2 × it still fired under
 * the benchmark's writes that never pause (~15,000 pages a second there: the WAL reached 20,000-24,000 frames
 * before the forced checkpoint, requested at the worker's next run after 10,000, got the lock). If the worker fails (it
 * throws, or its thread dies), the autocheckpoint goes back to SQLite's 1,000 pages, as before this file existed:
 * slower writes, never an unbounded WAL.
 */
import { statSync } from "node:fs";
import path from "node:path";
import { Worker, isMainThread, parentPort, workerData, type MessagePort } from "node:worker_threads";
import Database from "better-sqlite3";
import type { Logger } from "pino";

export interface CheckpointOptions {
  /** How often the worker runs a PASSIVE checkpoint (ms). 0: no worker, SQLite's inline autocheckpoint. */
  intervalMs: number;
  /** WAL frames (pages) left after a PASSIVE run at which the worker forces a RESTART (or TRUNCATE) checkpoint. */
  walLimitPages: number;
  /** The forced checkpoint's busy timeout: how long it waits for readers of older snapshots (ms). */
  hardWaitMs: number;
  /** First pause before a forced checkpoint that a reader kept from completing is tried again (ms; doubles). */
  hardRetryMs: number;
}

export const CHECKPOINT_DEFAULTS: Readonly<CheckpointOptions> = {
  intervalMs: 1_000,
  walLimitPages: 10_000,
  hardWaitMs: 100,
  hardRetryMs: 5_000,
};

/** Bytes before each page in the -wal file (https://sqlite.org/fileformat.html, "WAL file format"). */
const WAL_FRAME_HEADER = 24;
/** PASSIVE runs at most before a forced checkpoint, until one copies fewer than CATCH_UP_PAGES. */
const CATCH_UP_RUNS = 3;
const CATCH_UP_PAGES = 256;
/** The longest pause between two forced checkpoints while readers keep defeating them. */
const HARD_RETRY_MAX_MS = 60_000;
/** SQLite's default wal_autocheckpoint (pages): what the store falls back to when the worker fails. */
const SQLITE_AUTOCHECKPOINT = 1_000;

/** One checkpoint the worker ran: PRAGMA wal_checkpoint's row, and what it was for. */
export interface CheckpointReport {
  mode: "passive" | "restart" | "truncate";
  /** Why it ran, when not the timer: the WAL reached walLimitPages (RESTART/TRUNCATE), or the store is closing. */
  reason?: "limit" | "close";
  /** SQLite's busy column: a forced one did not complete (a reader of an older snapshot outlasted hardWaitMs). */
  busy: boolean;
  /** Frames in the WAL when the checkpoint ended (0 after a TRUNCATE that completed; -1: not in WAL mode). */
  walPages: number;
  /** Of those, frames already copied into the database file. */
  checkpointedPages: number;
  /** Nothing to copy: the WAL was fully checkpointed and unchanged since the worker's previous run. */
  idle: boolean;
  /** How long the pragma took on the worker's thread (ms). */
  ms: number;
  /** When it ended (epoch ms): reports reach the store only when its event loop turns, possibly late. */
  at: number;
}

interface WorkerData {
  kind: "cardlink-checkpointer";
  file: string;
  options: CheckpointOptions;
}

type ToWorker = { t: "hard-go" } | { t: "stop" };
type ToMain =
  | { t: "report"; report: CheckpointReport }
  | { t: "hard" }
  | { t: "stopped"; report: CheckpointReport }
  | { t: "failed"; message: string };

/**
 * SQLite's inline autocheckpoint while the worker runs: far past where the worker forces a checkpoint, so it fires
 * only when the store's event loop did not turn to let the forced one in (see the module comment).
 */
export function backstopPages(o: Pick<CheckpointOptions, "walLimitPages">): number {
  return 4 * o.walLimitPages;
}

/** The connections' inline autocheckpoint: the backstop while the worker runs, SQLite's default if it fails. */
function setAutocheckpoint(conns: readonly Database.Database[], pages: number): void {
  for (const db of conns) if (db.open) db.pragma(`wal_autocheckpoint = ${pages}`);
}

/**
 * Starts the checkpointer of a store's file, or returns undefined when there is none to run (an in-memory
 * database, or `intervalMs` 0: then the connections keep SQLite's own autocheckpoint). `conns` are the store's
 * connections, whose autocheckpoint moves to the backstop here.
 */
export function startCheckpointer(
  file: string,
  conns: readonly Database.Database[],
  o: Partial<CheckpointOptions> | undefined,
  hooks: { log: Logger; lockWrites: () => Promise<() => void> },
): Checkpointer | undefined {
  const options = { ...CHECKPOINT_DEFAULTS, ...o };
  if (file === ":memory:" || file === "" || !(options.intervalMs > 0)) return undefined;
  setAutocheckpoint(conns, backstopPages(options));
  return new Checkpointer(path.resolve(file), conns, options, hooks);
}

/** The store's side of the worker: its reports, the forced checkpoint's lock, stop and failure. */
export class Checkpointer {
  /** The worker's latest report. */
  last: CheckpointReport | undefined;
  private readonly worker: Worker;
  private readonly observers: Array<(r: CheckpointReport) => void> = [];
  private waiters: Array<{ resolve: (r: CheckpointReport) => void; reject: (e: Error) => void }> = [];
  /** The store's write lock while a forced checkpoint runs. */
  private holding: (() => void) | undefined;
  private final: CheckpointReport | undefined;
  private stopping: Promise<CheckpointReport | undefined> | undefined;
  private exited = false;
  private onExit: (() => void) | undefined;
  private failed = false;

  constructor(
    file: string,
    private readonly conns: readonly Database.Database[],
    readonly options: Readonly<CheckpointOptions>,
    private readonly hooks: { log: Logger; lockWrites: () => Promise<() => void> },
  ) {
    const data: WorkerData = { kind: "cardlink-checkpointer", file, options: { ...options } };
    this.worker = new Worker(new URL(import.meta.url), { workerData: data });
    // A store that is never closed must not keep the process alive; stop() holds it while the last checkpoint runs.
    this.worker.unref();
    this.worker.on("message", (m: ToMain) => this.receive(m));
    this.worker.on("error", (e) => this.fail(e));
    this.worker.on("exit", (code) => {
      this.exited = true;
      if (!this.stopping) this.fail(new Error(`the checkpoint worker exited (code ${code})`));
      this.onExit?.();
    });
  }

  /** Calls fn after every checkpoint the worker runs (metrics). */
  onReport(fn: (r: CheckpointReport) => void): void {
    this.observers.push(fn);
  }

  /** The next checkpoint the worker finishes (tests); rejects if the worker fails first. */
  next(): Promise<CheckpointReport> {
    return new Promise((resolve, reject) => {
      if (this.failed || this.stopping) reject(new Error("the checkpointer is not running"));
      else this.waiters.push({ resolve, reject });
    });
  }

  /** True once the worker failed and the connections went back to SQLite's autocheckpoint. */
  get fellBack(): boolean {
    return this.failed;
  }

  /**
   * Stops the worker after a last PASSIVE checkpoint (the caller holds the store's write lock, so no unit of work
   * of this process is open: it copies everything no other process's reader still needs) and waits for its thread
   * to end. Resolves with that checkpoint's report (undefined if the worker had already failed).
   */
  stop(): Promise<CheckpointReport | undefined> {
    if (!this.stopping) {
      this.stopping = new Promise((resolve) => {
        this.onExit = () => resolve(this.final);
        if (this.exited) {
          resolve(this.final);
          return;
        }
        this.worker.ref();
        this.worker.postMessage({ t: "stop" } satisfies ToWorker);
      });
      this.rejectWaiters(new Error("the checkpointer stopped"));
    }
    return this.stopping;
  }

  private receive(m: ToMain): void {
    switch (m.t) {
      case "report":
        this.reported(m.report);
        if (m.report.reason === "limit") {
          this.holding?.();
          this.holding = undefined;
          this.logForced(m.report);
        }
        return;
      case "hard":
        void this.hooks.lockWrites().then((release) => {
          if (this.stopping || this.failed) return release();
          this.holding = release;
          this.worker.postMessage({ t: "hard-go" } satisfies ToWorker);
        });
        return;
      case "stopped":
        this.final = m.report;
        this.reported(m.report);
        return;
      case "failed":
        this.fail(new Error(m.message));
        return;
    }
  }

  private reported(r: CheckpointReport): void {
    this.last = r;
    for (const fn of this.observers) {
      try {
        fn(r);
      } catch (e) {
        this.hooks.log.error({ event: "checkpoint-observer-failed", err: e }, "a checkpoint observer threw");
      }
    }
    const waiting = this.waiters;
    this.waiters = [];
    for (const w of waiting) w.resolve(r);
  }

  private logForced(r: CheckpointReport): void {
    const fields = { walPages: r.walPages, checkpointedPages: r.checkpointedPages, ms: Math.round(r.ms) };
    if (r.busy) {
      this.hooks.log.warn(
        { event: "wal-checkpoint-starved", ...fields, limitPages: this.options.walLimitPages },
        "the WAL reached database.walLimitPages and a reader of an older snapshot kept the forced checkpoint " +
          "from completing; retrying later (look for a long read: a backup, another process on the file)",
      );
    } else {
      this.hooks.log.info(
        { event: "wal-checkpoint-forced", ...fields, limitPages: this.options.walLimitPages },
        "the WAL reached database.walLimitPages: checkpointed it all, the next write starts it over",
      );
    }
  }

  private fail(e: Error): void {
    if (this.failed) return;
    this.failed = true;
    this.holding?.();
    this.holding = undefined;
    if (this.stopping) return; // a close under way: the store closes its connections next
    this.hooks.log.error(
      { event: "wal-checkpointer-failed", err: e },
      "the WAL checkpoint worker failed: SQLite's own autocheckpoint is back on (checkpoints run inside commits)",
    );
    setAutocheckpoint(this.conns, SQLITE_AUTOCHECKPOINT);
    this.rejectWaiters(e);
    void this.worker.terminate();
  }

  private rejectWaiters(e: Error): void {
    const waiting = this.waiters;
    this.waiters = [];
    for (const w of waiting) w.reject(e);
  }
}

// ------------------------------------------------------------------------------------------------ the worker

interface Row {
  busy: number;
  log: number;
  checkpointed: number;
}

function isWorkerData(d: unknown): d is WorkerData {
  return typeof d === "object" && d !== null && (d as { kind?: unknown }).kind === "cardlink-checkpointer";
}

function runWorker(port: MessagePort, d: WorkerData): void {
  const o = d.options;
  const db = new Database(d.file, { fileMustExist: true });
  // Only RESTART/TRUNCATE call the busy handler (PASSIVE never does): this bounds how long they wait for readers.
  db.pragma(`busy_timeout = ${Math.max(0, Math.floor(o.hardWaitMs))}`);
  const passive = db.prepare("PRAGMA wal_checkpoint(PASSIVE)");
  const statements = {
    passive: passive,
    restart: db.prepare("PRAGMA wal_checkpoint(RESTART)"),
    truncate: db.prepare("PRAGMA wal_checkpoint(TRUNCATE)"),
  };
  const pageSize = db.pragma("page_size", { simple: true }) as number;
  /** The -wal file's size in frames (it keeps its largest size until a TRUNCATE or the last close). */
  const walFileFrames = (): number => {
    try {
      return statSync(`${d.file}-wal`).size / (pageSize + WAL_FRAME_HEADER);
    } catch {
      return 0;
    }
  };
  let previous: Row | undefined;
  let timer: NodeJS.Timeout | undefined;
  let hardAsked = false;
  let nextHardAt = 0;
  let retryMs = o.hardRetryMs;

  const run = (mode: CheckpointReport["mode"], reason?: CheckpointReport["reason"]): CheckpointReport => {
    const t0 = performance.now();
    const row = statements[mode].get() as Row;
    const ms = performance.now() - t0;
    const idle =
      row.log === row.checkpointed &&
      previous !== undefined &&
      previous.log === row.log &&
      previous.checkpointed === row.checkpointed;
    previous = row;
    return {
      mode,
      ...(reason ? { reason } : {}),
      busy: row.busy !== 0,
      walPages: row.log,
      checkpointedPages: row.checkpointed,
      idle,
      ms,
      at: Date.now(),
    };
  };
  const send = (m: ToMain) => port.postMessage(m);
  const die = (e: unknown) => {
    if (timer) clearTimeout(timer);
    send({ t: "failed", message: e instanceof Error ? e.message : String(e) });
    if (db.open) db.close();
    port.close();
  };
  const tick = () => {
    timer = undefined;
    try {
      let r = run("passive");
      send({ t: "report", report: r });
      const due = () => !hardAsked && r.walPages >= o.walLimitPages && Date.now() >= nextHardAt;
      if (due()) {
        // Catch up first, beside the writes: the forced checkpoint holds them, so it should find only the frames
        // written since (a writer that never pauses adds frames while a PASSIVE run copies).
        for (let i = 0; i < CATCH_UP_RUNS; i++) {
          const before = r.checkpointedPages;
          r = run("passive");
          send({ t: "report", report: r });
          if (r.checkpointedPages - before < CATCH_UP_PAGES) break;
        }
        if (due()) {
          hardAsked = true; // the store takes its write lock, then answers hard-go
          send({ t: "hard" });
        }
      }
    } catch (e) {
      die(e);
      return;
    }
    timer = setTimeout(tick, o.intervalMs);
  };

  port.on("message", (m: ToWorker) => {
    try {
      if (m.t === "hard-go") {
        const r = run(walFileFrames() > 2 * backstopPages(o) ? "truncate" : "restart", "limit");
        hardAsked = false;
        if (r.busy) {
          nextHardAt = Date.now() + retryMs;
          retryMs = Math.min(retryMs * 2, HARD_RETRY_MAX_MS);
        } else retryMs = o.hardRetryMs;
        send({ t: "report", report: r });
      } else if (m.t === "stop") {
        if (timer) clearTimeout(timer);
        timer = undefined;
        const r = run("passive", "close");
        db.close();
        send({ t: "stopped", report: r });
        port.close();
      }
    } catch (e) {
      die(e);
    }
  });
  timer = setTimeout(tick, o.intervalMs);
}

// This module is also the worker's entry point: the Checkpointer starts it with its own URL and this marker.
if (!isMainThread && parentPort && isWorkerData(workerData)) runWorker(parentPort, workerData);
