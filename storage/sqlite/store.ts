/**
 * SqliteStore: the SQLite backend of the Store (storage/store.ts).
 *
 * - Units of work (`tx`) run on one writer connection behind an async FIFO mutex: acquire → BEGIN IMMEDIATE →
 *   await fn(tx) → COMMIT → release → commit observers and after-commit hooks; ROLLBACK on any throw. The mutex
 *   is the database write lock of this process, so fn must await only the store (no network I/O).
 *   better-sqlite3's db.transaction() cannot wrap an async function, hence the explicit statements.
 * - `read` runs on a second, read-only connection in BEGIN … COMMIT (a WAL snapshot), behind its own mutex.
 */
import { AsyncLocalStorage } from "node:async_hooks";
import { pino } from "pino";
import { FramedTx, runAfterCommit, type Frame } from "../frame.js";
import type { Logger } from "pino";
import { StoreBusyError, classify, type UniqueIndexLookup } from "../errors.js";
import { Mutex } from "../mutex.js";
import { runMigrations } from "../migrate.js";
import { StatementCache, bindValues, compileNamed, dialectOf } from "../sql.js";
import type {
  AccountId,
  Dialect,
  Migration,
  MigrationReport,
  Params,
  ReadTx,
  Seq,
  Store,
  StoreOptions,
  Tx,
} from "../store.js";
import { migrate, openDatabase, type Db, type MigrationReport as LegacyReport } from "./db.js";
import {
  startCheckpointer,
  type Checkpointer,
  type CheckpointOptions,
  type CheckpointReport,
} from "./checkpointer.js";
import Database from "better-sqlite3";

type Statement = Database.Statement<unknown[], unknown>;

/** Retries of a unit of work that met StoreBusyError (so at most 4 attempts). */
const BUSY_RETRIES = 3;

export interface SqliteStoreOptions extends Partial<StoreOptions> {
  /**
   * Apply the legacy migrations 1/100/200/300 at open (default true): a database as the pre-redesign cardlink
   * wrote it, which tests and benches seed to exercise the upgrade to 2000. False opens the file as it is, for
   * `migrate()` with the new core's list (storage/index.ts openCoreStore, the contract suite).
   */
  legacy?: boolean;
  /** WAL checkpoints on a worker thread (checkpointer.ts; defaults CHECKPOINT_DEFAULTS, `intervalMs: 0` = none). */
  checkpoint?: Partial<CheckpointOptions>;
}

/** One connection, its statement cache and its error classification. */
class Conn {
  readonly stmts: StatementCache<Statement>;
  private readonly lookup: UniqueIndexLookup;

  constructor(readonly db: Db) {
    this.stmts = new StatementCache((text) => db.prepare(text));
    this.lookup = (table, columns) => uniqueIndex(db, table, columns);
  }

  private prepared(sql: string, params: Params | undefined): [Statement, unknown[]] {
    const c = compileNamed(sql, "?");
    return [this.stmts.get(c.text), bindValues(c, params)];
  }

  get<R>(sql: string, params?: Params): R | undefined {
    try {
      const [s, v] = this.prepared(sql, params);
      return s.get(...v) as R | undefined;
    } catch (e) {
      throw classify(e, this.lookup);
    }
  }

  all<R>(sql: string, params?: Params): R[] {
    try {
      const [s, v] = this.prepared(sql, params);
      return s.all(...v) as R[];
    } catch (e) {
      throw classify(e, this.lookup);
    }
  }

  run(sql: string, params?: Params): { changes: number } {
    try {
      const [s, v] = this.prepared(sql, params);
      return { changes: s.run(...v).changes };
    } catch (e) {
      throw classify(e, this.lookup);
    }
  }

  exec(sql: string): void {
    try {
      this.db.exec(sql);
    } catch (e) {
      throw classify(e, this.lookup);
    }
  }
}

/** The named unique index of `table` over exactly `columns`; undefined for SQLite's automatic ones. */
function uniqueIndex(db: Db, table: string, columns: string[]): string | undefined {
  try {
    const list = db.pragma(`index_list("${table.replace(/"/g, '""')}")`) as Array<{
      name: string;
      unique: number;
      origin: string;
    }>;
    for (const ix of list) {
      if (!ix.unique || ix.origin !== "c") continue; // "c": CREATE INDEX; "u"/"pk": automatic
      const cols = (db.pragma(`index_info("${ix.name.replace(/"/g, '""')}")`) as Array<{ name: string }>).map(
        (c) => c.name,
      );
      if (cols.length === columns.length && cols.every((c, i) => c === columns[i])) return ix.name;
    }
  } catch {
    // The lookup only improves the name; the default names are still right for automatic indexes.
  }
  return undefined;
}

class SqliteRead extends FramedTx implements ReadTx {
  constructor(
    protected readonly conn: Conn,
    dialect: Dialect,
    clock: () => number,
    frame: Frame,
  ) {
    super(dialect, clock, frame);
  }

  async get<R extends object>(sql: string, params?: Params): Promise<R | undefined> {
    this.live();
    return this.conn.get<R>(sql, params);
  }

  async all<R extends object>(sql: string, params?: Params): Promise<R[]> {
    this.live();
    return this.conn.all<R>(sql, params);
  }

  async run(sql: string, params?: Params): Promise<{ changes: number }> {
    this.live();
    return this.conn.run(sql, params);
  }
}

class SqliteTx extends SqliteRead implements Tx {
  private allocated: Seq | undefined;
  readonly hooks: Array<() => void> = [];

  constructor(
    conn: Conn,
    dialect: Dialect,
    clock: () => number,
    frame: Frame,
    private readonly seqSql: () => string,
  ) {
    super(conn, dialect, clock, frame);
  }

  async seq(): Promise<Seq> {
    this.live();
    // The write lock is held from BEGIN IMMEDIATE to COMMIT, so allocation order is commit order (§2.4).
    if (this.allocated === undefined) {
      const r = this.conn.get<{ value: number | string }>(this.seqSql());
      if (!r) throw new Error("the seq counter row is missing");
      this.allocated = Number(r.value);
    }
    return this.allocated;
  }

  async lockAccount(_id: AccountId): Promise<void> {
    this.live(); // SQLite: the write lock already serializes every writer.
  }

  afterCommit(fn: () => void): void {
    this.live();
    this.hooks.push(fn);
  }
}

const COUNTERS_SEQ = "UPDATE counters SET value = value + 1 WHERE name = 'seq' RETURNING value";
const META_SEQ = "UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'seq' RETURNING value";

/**
 * The logger of a store opened without one. One per module, made at import: creating a pino logger reads the
 * clock, which scripts/make-fixture-v200.ts fixes while it writes the fixture (one call per store shifted every
 * timestamp it writes).
 */
const SILENT = pino({ level: "silent" });

export class SqliteStore implements Store {
  readonly backend = "sqlite" as const;
  /** The writer connection. */
  readonly db: Db;
  /** The migrations applied at open (`legacy: true`), or by the last migrate(). */
  migrations: LegacyReport;

  private readonly writer: Conn;
  private readonly reader: Conn | undefined;
  private readonly writeLock = new Mutex();
  private readonly readLock = new Mutex();
  private readonly frames = new AsyncLocalStorage<Frame>();
  private readonly commitObservers: Array<(name: string, ms: number) => void> = [];
  private readonly dialect = dialectOf("sqlite");
  private readonly log: Logger;
  private readonly clock: () => number;
  private readonly txWarnMs: number;
  private seqStatement: string | undefined;
  /** The WAL checkpointer (checkpointer.ts); undefined for :memory: or with `checkpoint.intervalMs` 0. */
  readonly checkpointer: Checkpointer | undefined;

  constructor(file: string, o: SqliteStoreOptions = {}) {
    this.log = o.log ?? SILENT;
    this.clock = o.clock ?? Date.now;
    this.txWarnMs = o.txWarnMs ?? 50;
    const busyTimeoutMs = o.busyTimeoutMs ?? 5000;
    this.db = openDatabase(file);
    this.db.pragma(`busy_timeout = ${Math.floor(busyTimeoutMs)}`);
    this.migrations =
      o.legacy === false ? { applied: [], current: currentVersion(this.db) } : migrate(this.db);
    this.writer = new Conn(this.db);
    if (file !== ":memory:" && file !== "") {
      // Opened after the writer set WAL mode, so the snapshot reads never block it.
      const r = new Database(file, { readonly: true, fileMustExist: true });
      r.pragma(`busy_timeout = ${Math.floor(busyTimeoutMs)}`);
      this.reader = new Conn(r);
    }
    this.checkpointer = startCheckpointer(
      file,
      [this.db, ...(this.reader ? [this.reader.db] : [])],
      o.checkpoint,
      {
        log: this.log,
        // A forced checkpoint takes the write lock: this process's units of work wait on the mutex, not in SQLite.
        lockWrites: () => this.writeLock.acquire(),
      },
    );
  }

  // ---------------------------------------------------------------------------------------- units of work

  async tx<T>(name: string, fn: (tx: Tx) => Promise<T>): Promise<T> {
    this.refuseNested(name);
    for (let attempt = 0; ; attempt++) {
      try {
        return await this.attempt(name, fn);
      } catch (e) {
        if (!(e instanceof StoreBusyError) || attempt >= BUSY_RETRIES) throw e;
        this.log.warn({ event: "store-busy-retry", name, attempt: attempt + 1 }, "database busy; retrying");
        // Jittered, growing pause: two processes that collided do not collide again in step.
        await new Promise((r) => setTimeout(r, (attempt + 1) * (5 + Math.random() * 20)));
      }
    }
  }

  private refuseNested(name: string): void {
    const outer = this.frames.getStore();
    if (outer?.open && outer.kind === "tx") {
      throw new Error(
        `unit of work "${name}" started inside unit of work "${outer.name}": use the outer one's tx ` +
          "(a nested one would wait for the write lock its caller holds)",
      );
    }
  }

  private async attempt<T>(name: string, fn: (tx: Tx) => Promise<T>): Promise<T> {
    const release = await this.writeLock.acquire();
    const frame: Frame = { kind: "tx", name, open: true };
    let tx: SqliteTx;
    let result: T;
    let t0: bigint;
    try {
      this.writer.exec("BEGIN IMMEDIATE");
      t0 = process.hrtime.bigint();
      tx = new SqliteTx(this.writer, this.dialect, this.clock, frame, () => this.seqSql());
      try {
        result = await this.frames.run(frame, () => fn(tx));
        this.writer.exec("COMMIT");
      } catch (e) {
        if (this.db.inTransaction) {
          try {
            this.db.exec("ROLLBACK");
          } catch {
            // Already rolled back by SQLite (some errors end the transaction themselves).
          }
        }
        throw classify(e);
      } finally {
        frame.open = false;
      }
    } finally {
      release();
    }
    const ms = Number(process.hrtime.bigint() - t0) / 1e6;
    if (ms > this.txWarnMs) {
      this.log.warn(
        { event: "slow-unit-of-work", name, ms: Math.round(ms * 10) / 10, limitMs: this.txWarnMs },
        "a unit of work held the write lock longer than database.txWarnMs",
      );
    }
    runAfterCommit(this.frames, this.log, this.commitObservers, tx.hooks, name, ms);
    return result;
  }

  async read<T>(name: string, fn: (tx: ReadTx) => Promise<T>): Promise<T> {
    const outer = this.frames.getStore();
    if (outer?.open && (outer.kind === "read" || !this.reader)) {
      throw new Error(`read "${name}" started inside ${outer.kind} "${outer.name}": use the outer one`);
    }
    // A :memory: database has one connection: its reads take the write lock.
    const conn = this.reader ?? this.writer;
    const release = await (this.reader ? this.readLock : this.writeLock).acquire();
    const frame: Frame = { kind: "read", name, open: true };
    try {
      conn.exec("BEGIN");
      try {
        return await this.frames.run(frame, () => fn(new SqliteRead(conn, this.dialect, this.clock, frame)));
      } finally {
        frame.open = false;
        if (conn.db.inTransaction) conn.db.exec("COMMIT");
      }
    } finally {
      release();
    }
  }

  onCommit(fn: (name: string, ms: number) => void): void {
    this.commitObservers.push(fn);
  }

  onCheckpoint(fn: (r: CheckpointReport) => void): void {
    this.checkpointer?.onReport(fn);
  }

  private seqSql(): string {
    if (this.seqStatement === undefined) {
      const has = (t: string) =>
        this.db.prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?").get(t) !== undefined;
      // The redesign's counter row (§2.6) once migration 2000 made it; the legacy meta row until then.
      if (has("counters")) this.seqStatement = COUNTERS_SEQ;
      else if (has("meta")) this.seqStatement = META_SEQ;
      else throw new Error("no seq counter: neither counters('seq') nor meta('seq') exists");
    }
    return this.seqStatement;
  }

  // ------------------------------------------------------------------------------------------- migrations

  async migrate(migrations: readonly Migration[], o: { dryRun?: boolean } = {}): Promise<MigrationReport> {
    const report = await runMigrations(
      {
        applied: async () => {
          this.writer.exec(`CREATE TABLE IF NOT EXISTS schema_migrations (
            version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL)`);
          return this.writer
            .all<{ version: number }>("SELECT version FROM schema_migrations")
            .map((r) => r.version);
        },
        apply: (m) => this.applyMigration(m),
      },
      migrations,
      o,
    );
    if (!o.dryRun) this.migrations = { applied: report.applied, current: report.current };
    return report;
  }

  /**
   * One migration and its schema_migrations row in one unit of work. Rebuild mode (§2.8.1): SQLite cannot change
   * foreign_keys inside a transaction, so it is switched off around it, and foreign_key_check must come back
   * empty before the COMMIT (else the whole migration rolls back, naming the table).
   */
  private async applyMigration(m: Migration): Promise<void> {
    const sql = m.sql.sqlite;
    if (sql === undefined) throw new Error(`migration ${m.version} ${m.name} has no SQLite variant`);
    if (m.rebuild) this.db.pragma("foreign_keys = OFF");
    try {
      await this.tx(`migrate.${m.version}`, async (tx) => {
        this.writer.exec(sql);
        if (m.rebuild) {
          const bad = this.writer.all<{ table: string }>("PRAGMA foreign_key_check");
          if (bad.length > 0) {
            throw new Error(
              `migration ${m.version} ${m.name}: foreign keys broken in ${[...new Set(bad.map((r) => r.table))].join(", ")}`,
            );
          }
        }
        await m.check?.(tx);
        await tx.run("INSERT INTO schema_migrations (version, name, applied_at) VALUES (:v, :n, :t)", {
          v: m.version,
          n: m.name,
          t: tx.now,
        });
      });
    } finally {
      if (m.rebuild) this.db.pragma("foreign_keys = ON");
      this.seqStatement = undefined; // the counter table may have changed
    }
  }

  async schemaVersion(): Promise<number> {
    return currentVersion(this.db);
  }

  async ping(): Promise<void> {
    (this.reader ?? this.writer).db.prepare("SELECT count(*) FROM schema_migrations").get();
  }

  async close(): Promise<void> {
    // Wait for a unit of work in progress: closing under it would fail its COMMIT.
    const release = await this.writeLock.acquire();
    try {
      await this.checkpointer?.stop(); // its last checkpoint, before the connections close
      if (this.reader?.db.open) this.reader.db.close();
      if (this.db.open) this.db.close();
    } finally {
      release();
    }
  }
}

function currentVersion(db: Db): number {
  const has = db
    .prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'")
    .get();
  if (!has) return 0;
  const r = db.prepare("SELECT MAX(version) AS v FROM schema_migrations").get() as { v: number | null };
  return r.v ?? 0;
}
