/**
 * PostgresStore: the PostgreSQL backend of the new core (storage/store.ts §3.1; docs/REDESIGN.md §2.1, §2.4).
 * It runs units of work only: the old repositories stay SQLite-only until the redesign's switch (S11).
 *
 * - A unit of work (`tx`) is one pool client: `BEGIN ISOLATION LEVEL READ COMMITTED` + the shared writers' gate →
 *   await fn(tx) → `COMMIT` → release → commit observers and after-commit hooks; `ROLLBACK` on any throw. READ
 *   COMMITTED with explicit locks (docs/DECISIONS.md "PostgreSQL: READ COMMITTED with explicit locks"): `seq()`'s
 *   counter row lock, `lockAccount`'s advisory lock.
 * - `seq()` increments `counters('seq')` and keeps the row lock to COMMIT, so a second writer's seq() waits for the
 *   first to commit: seq order = commit order (§2.4). Within one process the commit observers and hooks of
 *   seq-taking units of work also run in seq order (a chain), so observers see commits in seq order too.
 * - The writers' gate: every unit of work takes a shared advisory transaction lock at BEGIN; `migrate()` holds it
 *   exclusively (session lock on its own connection), so no unit of work of any process interleaves with a schema
 *   change. It is PostgreSQL's counterpart of SQLite's database write lock: held from outside, a unit of work waits
 *   `busyTimeoutMs` (lock_timeout) and fails busy before fn runs.
 * - `read` is one pool client in `REPEATABLE READ READ ONLY`: one snapshot for all its statements; it never blocks
 *   and is never blocked by writers.
 * - Errors: classify() (storage/errors.ts) maps SQLSTATEs; connection failures without one (refused, reset,
 *   terminated) are busy too, except during COMMIT, whose outcome is then unknown (not retried, not "busy").
 */
import { AsyncLocalStorage } from "node:async_hooks";
import { createHash } from "node:crypto";
import pg from "pg";
import { pino } from "pino";
import { FramedTx, runAfterCommit, type Frame } from "../frame.js";
import type { Logger } from "pino";
import { StoreBusyError, StoreOutcomeUnknownError, classify } from "../errors.js";
import { runMigrations } from "../migrate.js";
import { bindValues, compileNamed, dialectOf } from "../sql.js";
import { startListener } from "./listener.js";
import type {
  AccountId,
  Dialect,
  ListenHandlers,
  Migration,
  MigrationReport,
  Params,
  ReadTx,
  Seq,
  Store,
  StoreOptions,
  Tx,
} from "../store.js";

/** Retries of a unit of work that met StoreBusyError (so at most 4 attempts), as on SQLite. */
const BUSY_RETRIES = 3;
/** The writers' gate's advisory lock key. Negative keys are cardlink's own locks; account ids (> 0) are the rest. */
export const WRITERS_GATE_KEY = -1;
const GATE_KEY = WRITERS_GATE_KEY;
/** How long a unit of work waits for a pool client (pool exhausted or connecting) before failing busy. */
const CONNECT_TIMEOUT_MS = 10_000;

const BEGIN_WRITE = `BEGIN ISOLATION LEVEL READ COMMITTED; SELECT pg_advisory_xact_lock_shared(${GATE_KEY})`;
const BEGIN_READ = "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY";
const SEQ_SQL = "UPDATE counters SET value = value + 1 WHERE name = 'seq' RETURNING value";

export interface PostgresConnection {
  /** A libpq connection URL; '' = libpq environment variables (PGHOST, PGPORT, PGDATABASE, PGUSER, …). */
  url: string;
  /** Most connections this store opens (units of work and reads each hold one while they run). */
  poolSize: number;
  /**
   * Named prepared statements (default true): each text is parsed and planned once per connection. false for a
   * pooler that does not carry them between transactions (PgBouncer in transaction mode before 1.21).
   */
  preparedStatements?: boolean;
}

/** int8 (COUNT(*), BIGINT columns) as a number, refusing values a double cannot hold exactly (§2.1). */
function parseInt8(text: string): number {
  const n = Number(text);
  if (!Number.isSafeInteger(n)) throw new Error(`int8 value ${text} is outside the safe integer range`);
  return n;
}
const TYPES: pg.CustomTypesConfig = {
  getTypeParser: ((oid: number, format?: "text" | "binary") =>
    oid === 20 && format !== "binary"
      ? parseInt8
      : pg.types.getTypeParser(oid, format)) as pg.CustomTypesConfig["getTypeParser"],
};

const NET_CODES = new Set([
  "ECONNREFUSED",
  "ECONNRESET",
  "EPIPE",
  "ETIMEDOUT",
  "EHOSTUNREACH",
  "ENETUNREACH",
]);
const NET_MESSAGE =
  /Connection terminated|connection error|timeout exceeded when trying to connect|not queryable/i;

/** True for an error the server sent (it carries a five-character SQLSTATE). */
function hasSqlState(e: unknown): boolean {
  const code = (e as { code?: unknown } | null)?.code;
  return typeof code === "string" && /^[0-9A-Z]{5}$/.test(code);
}

/** classify(), plus node-pg's connection failures (no SQLSTATE) as busy: nothing of the unit of work was kept. */
export function classifyPg(e: unknown): unknown {
  const c = classify(e);
  if (c !== e || !(e instanceof Error) || hasSqlState(e)) return c;
  const code = (e as { code?: unknown }).code;
  if ((typeof code === "string" && NET_CODES.has(code)) || NET_MESSAGE.test(e.message)) {
    return new StoreBusyError(`database connection failed: ${e.message}`, "08006");
  }
  return e;
}

/** What a ReadTx/Tx runs its statements on. */
type Queryable = Pick<pg.ClientBase, "query">;

/**
 * Statement names by text: node-postgres prepares a named statement once per connection (Parse) and afterwards
 * only binds and executes it, so PostgreSQL neither parses nor re-plans cardlink's constant texts on every call
 * (the composed audience queries are long). The name is a hash of the text, so equal texts share it on every
 * connection. Capped like compileNamed's cache: texts are module-level constants, and one built per call would
 * only stop being named, never grow the map (or a connection's prepared set) without end.
 */
const NAMES_CAP = 2000;
const names = new Map<string, string>();
function statementName(text: string): string | undefined {
  const hit = names.get(text);
  if (hit !== undefined || names.size >= NAMES_CAP) return hit;
  const name = `cl_${createHash("sha1").update(text).digest("hex").slice(0, 24)}`;
  names.set(text, name);
  return name;
}

async function query(
  c: Queryable,
  sql: string,
  params: Params | undefined,
  prepared: boolean,
): Promise<pg.QueryResult> {
  const compiled = compileNamed(sql, "$");
  const values = bindValues(compiled, params);
  const name = prepared ? statementName(compiled.text) : undefined;
  try {
    return await c.query(
      name === undefined ? { text: compiled.text, values } : { name, text: compiled.text, values },
    );
  } catch (e) {
    throw classifyPg(e);
  }
}

class PgRead extends FramedTx implements ReadTx {
  constructor(
    protected readonly client: Queryable,
    dialect: Dialect,
    clock: () => number,
    frame: Frame,
    /** PostgresConnection.preparedStatements. */
    protected readonly prepared: boolean,
  ) {
    super(dialect, clock, frame);
  }

  async get<R extends object>(sql: string, params?: Params): Promise<R | undefined> {
    this.live();
    return (await query(this.client, sql, params, this.prepared)).rows[0] as R | undefined;
  }

  async all<R extends object>(sql: string, params?: Params): Promise<R[]> {
    this.live();
    return (await query(this.client, sql, params, this.prepared)).rows as R[];
  }

  async run(sql: string, params?: Params): Promise<{ changes: number }> {
    this.live();
    return { changes: (await query(this.client, sql, params, this.prepared)).rowCount ?? 0 };
  }
}

/** The in-process order of seq-taking commits: `done` resolves once this one's (and every earlier one's) hooks ran. */
interface SeqTurn {
  prev: Promise<void>;
  done: () => void;
}

class PgTx extends PgRead implements Tx {
  private allocated: Seq | undefined;
  private allocating: Promise<Seq> | undefined;
  readonly hooks: Array<() => void> = [];
  turn: SeqTurn | undefined;

  constructor(
    client: Queryable,
    dialect: Dialect,
    clock: () => number,
    frame: Frame,
    prepared: boolean,
    private readonly takeTurn: () => SeqTurn,
  ) {
    super(client, dialect, clock, frame, prepared);
  }

  seq(): Promise<Seq> {
    this.live();
    if (this.allocated !== undefined) return Promise.resolve(this.allocated);
    // Two calls in parallel share the one UPDATE (a second UPDATE would allocate twice).
    this.allocating ??= (async () => {
      // Blocks while another unit of work holds the row (until it commits); the lock is then ours to COMMIT.
      const r = (await query(this.client, SEQ_SQL, undefined, this.prepared)).rows[0] as
        { value: number | string } | undefined;
      if (!r) throw new Error("the seq counter row counters('seq') is missing");
      this.turn = this.takeTurn();
      this.allocated = Number(r.value);
      return this.allocated;
    })();
    return this.allocating;
  }

  async lockAccount(id: AccountId): Promise<void> {
    this.live();
    if (!Number.isSafeInteger(id) || id <= 0) throw new Error(`lockAccount: ${id} is not an account id`);
    // An advisory transaction lock, not a row lock: it needs no accounts row (it can guard creating one) and
    // ends with the transaction like the row lock would. Keys > 0 are account ids (GATE_KEY and kin are < 0).
    await query(this.client, "SELECT pg_advisory_xact_lock(CAST(:id AS bigint))", { id }, this.prepared);
  }

  afterCommit(fn: () => void): void {
    this.live();
    this.hooks.push(fn);
  }

  async notify(channel: string, payload: string): Promise<void> {
    this.live();
    // Delivered at COMMIT (never for a rollback); identical notifications of one transaction are sent once.
    await query(this.client, "SELECT pg_notify(:c, :p)", { c: channel, p: payload }, this.prepared);
  }
}

export interface PostgresStoreOptions extends Partial<StoreOptions> {
  connection: PostgresConnection;
}

/**
 * The logger of a store opened without one. One per module, made at import: creating a pino logger reads the
 * clock, which scripts/make-fixture-v200.ts fixes while it writes the fixture (one call per store shifted every
 * timestamp it writes).
 */
const SILENT = pino({ level: "silent" });

export class PostgresStore implements Store {
  readonly backend = "postgres" as const;
  private readonly pool: pg.Pool;
  private readonly frames = new AsyncLocalStorage<Frame>();
  private readonly commitObservers: Array<(name: string, ms: number) => void> = [];
  private readonly dialect = dialectOf("postgres");
  private readonly log: Logger;
  private readonly clock: () => number;
  private readonly txWarnMs: number;
  private readonly prepared: boolean;
  private readonly clientConfig: pg.ClientConfig;
  /** The last seq-taking unit of work's turn (see SeqTurn). */
  private lastTurn: Promise<void> = Promise.resolve();

  constructor(o: PostgresStoreOptions) {
    this.log = o.log ?? SILENT;
    this.clock = o.clock ?? Date.now;
    this.txWarnMs = o.txWarnMs ?? 50;
    this.prepared = o.connection.preparedStatements ?? true;
    // PostgreSQL's lock_timeout 0 means "wait forever"; SQLite's busy timeout 0 means "do not wait".
    const lockTimeout = Math.max(1, Math.floor(o.busyTimeoutMs ?? 5000));
    this.clientConfig = {
      ...(o.connection.url ? { connectionString: o.connection.url } : {}),
      application_name: "cardlink",
      lock_timeout: lockTimeout,
      types: TYPES,
    };
    this.pool = new pg.Pool({
      ...this.clientConfig,
      max: o.connection.poolSize,
      connectionTimeoutMillis: CONNECT_TIMEOUT_MS,
    });
    // An idle client's connection dying (server restart) is reported here; without a listener it would crash.
    this.pool.on("error", (e) =>
      this.log.warn({ event: "store-connection-lost", err: e.message }, "an idle database connection failed"),
    );
    // A checked-out client's connection dying is reported to its query too (classified there); this listener
    // only keeps the client's own 'error' event from being an uncaught exception.
    this.pool.on("connect", (client) => client.on("error", () => undefined));
  }

  private async connect(): Promise<pg.PoolClient> {
    try {
      return await this.pool.connect();
    } catch (e) {
      const c = classifyPg(e);
      // Could not get a connection at all (refused, DNS, auth): nothing was written; busy only if transient.
      throw c;
    }
  }

  // ---------------------------------------------------------------------------------------- units of work

  async tx<T>(name: string, fn: (tx: Tx) => Promise<T>): Promise<T> {
    const outer = this.frames.getStore();
    if (outer?.open && outer.kind === "tx") {
      throw new Error(
        `unit of work "${name}" started inside unit of work "${outer.name}": use the outer one's tx ` +
          "(a nested one would wait for the locks its caller holds)",
      );
    }
    for (let attempt = 0; ; attempt++) {
      try {
        return await this.attempt(name, fn);
      } catch (e) {
        if (!(e instanceof StoreBusyError) || attempt >= BUSY_RETRIES) throw e;
        this.log.warn(
          { event: "store-busy-retry", name, attempt: attempt + 1, code: e.code },
          "database busy; retrying",
        );
        // Jittered, growing pause: two units of work that collided do not collide again in step.
        await new Promise((r) => setTimeout(r, (attempt + 1) * (5 + Math.random() * 20)));
      }
    }
  }

  private takeTurn = (): SeqTurn => {
    const prev = this.lastTurn;
    let done!: () => void;
    this.lastTurn = new Promise<void>((r) => (done = r));
    return { prev, done };
  };

  private async attempt<T>(name: string, fn: (tx: Tx) => Promise<T>): Promise<T> {
    const client = await this.connect();
    const frame: Frame = { kind: "tx", name, open: true };
    let broken: Error | undefined;
    let tx: PgTx | undefined;
    let result!: T;
    let t0!: bigint;
    try {
      try {
        await client.query(BEGIN_WRITE);
        t0 = process.hrtime.bigint();
        const t = new PgTx(client, this.dialect, this.clock, frame, this.prepared, this.takeTurn);
        tx = t;
        result = await this.frames.run(frame, () => fn(t));
      } catch (e) {
        frame.open = false;
        broken = await rollback(client);
        throw classifyPg(e);
      }
      frame.open = false;
      let commit: pg.QueryResult;
      try {
        commit = await client.query("COMMIT");
      } catch (e) {
        if (hasSqlState(e)) throw classifyPg(e); // the server refused the COMMIT: rolled back
        broken = e as Error;
        // The connection failed after COMMIT was sent: it may have committed. Not busy (that promises nothing
        // was written), and not retried (fn would run twice).
        throw new StoreOutcomeUnknownError(
          `unit of work "${name}": the database connection failed during COMMIT; whether it committed is unknown ` +
            `(${(e as Error).message})`,
          { cause: e },
        );
      }
      // COMMIT of a transaction an earlier (caught) statement error aborted answers ROLLBACK, not an error.
      if (commit.command === "ROLLBACK") {
        throw new Error(
          `unit of work "${name}" was rolled back: a statement failed inside it and fn went on (PostgreSQL aborts ` +
            "the whole transaction at the first error)",
        );
      }
    } catch (e) {
      if (tx?.turn) {
        const turn = tx.turn;
        void turn.prev.then(turn.done);
      }
      throw e;
    } finally {
      frame.open = false;
      client.release(broken);
    }
    const ms = Number(process.hrtime.bigint() - t0) / 1e6;
    if (ms > this.txWarnMs) {
      this.log.warn(
        { event: "slow-unit-of-work", name, ms: Math.round(ms * 10) / 10, limitMs: this.txWarnMs },
        "a unit of work ran longer than database.txWarnMs",
      );
    }
    const done = (tx as PgTx).hooks;
    const turn = (tx as PgTx).turn;
    // Seq-taking commits notify in seq order: wait for the previous one's observers and hooks (in this process).
    if (turn) await turn.prev;
    runAfterCommit(this.frames, this.log, this.commitObservers, done, name, ms);
    turn?.done();
    return result;
  }

  async read<T>(name: string, fn: (tx: ReadTx) => Promise<T>): Promise<T> {
    const outer = this.frames.getStore();
    if (outer?.open && outer.kind === "read") {
      throw new Error(`read "${name}" started inside ${outer.kind} "${outer.name}": use the outer one`);
    }
    const client = await this.connect();
    const frame: Frame = { kind: "read", name, open: true };
    let broken: Error | undefined;
    try {
      try {
        await client.query(BEGIN_READ);
        const result = await this.frames.run(frame, () =>
          fn(new PgRead(client, this.dialect, this.clock, frame, this.prepared)),
        );
        frame.open = false;
        await client.query("COMMIT");
        return result;
      } catch (e) {
        frame.open = false;
        broken = await rollback(client);
        throw classifyPg(e);
      }
    } finally {
      frame.open = false;
      client.release(broken);
    }
  }

  onCommit(fn: (name: string, ms: number) => void): void {
    this.commitObservers.push(fn);
  }

  /** LISTEN on its own connection (listener.ts), outside the pool; stopped by the returned function. */
  listen(channel: string, h: ListenHandlers): () => Promise<void> {
    const stop = startListener(this.clientConfig, channel, h, this.log);
    this.listeners.add(stop);
    return async () => {
      this.listeners.delete(stop);
      await stop();
    };
  }

  private readonly listeners = new Set<() => Promise<void>>();

  // ------------------------------------------------------------------------------------------- migrations

  /**
   * Runs on its own connection (not the pool) holding the writers' gate exclusively for the whole run: units of
   * work of every process wait (and fail busy after busyTimeoutMs) while the schema changes, and two processes
   * starting at once migrate one after the other. A dry run takes no lock and writes nothing.
   */
  async migrate(migrations: readonly Migration[], o: { dryRun?: boolean } = {}): Promise<MigrationReport> {
    const client = new pg.Client({ ...this.clientConfig, lock_timeout: 0 });
    client.on("error", () => undefined); // reported by the failing query
    try {
      await client.connect();
    } catch (e) {
      throw classifyPg(e);
    }
    try {
      if (!o.dryRun) await client.query(`SELECT pg_advisory_lock(${GATE_KEY})`);
      return await runMigrations(
        {
          applied: async () => {
            if (o.dryRun) {
              const t = await client.query("SELECT to_regclass('schema_migrations') AS t");
              if ((t.rows[0] as { t: string | null }).t === null) return [];
            } else {
              await client.query(`CREATE TABLE IF NOT EXISTS schema_migrations (
                version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at BIGINT NOT NULL)`);
            }
            const r = await client.query("SELECT version FROM schema_migrations");
            return (r.rows as Array<{ version: number }>).map((x) => x.version);
          },
          apply: (m) => this.applyMigration(client, m),
        },
        migrations,
        o,
      );
    } finally {
      // Ending the session releases the advisory lock.
      await client.end().catch(() => undefined);
    }
  }

  /** One migration and its schema_migrations row in one transaction (PostgreSQL's DDL is transactional). */
  private async applyMigration(client: pg.Client, m: Migration): Promise<void> {
    const sql = m.sql.postgres;
    if (sql === undefined) throw new Error(`migration ${m.version} ${m.name} has no PostgreSQL variant`);
    const frame: Frame = { kind: "tx", name: `migrate.${m.version}`, open: true };
    await client.query("BEGIN");
    try {
      // The simple query protocol (no parameters): a migration may hold several statements.
      await client.query(sql);
      // Unnamed statements while the schema changes under them (a cached plan could not follow a changed type).
      const tx = new PgTx(client, this.dialect, this.clock, frame, false, () => ({
        prev: Promise.resolve(),
        done: () => undefined,
      }));
      await m.check?.(tx);
      await query(
        client,
        "INSERT INTO schema_migrations (version, name, applied_at) VALUES (:v, :n, :t)",
        { v: m.version, n: m.name, t: tx.now },
        false,
      );
      await client.query("COMMIT");
    } catch (e) {
      await client.query("ROLLBACK").catch(() => undefined);
      throw classifyPg(e);
    } finally {
      frame.open = false;
    }
  }

  async schemaVersion(): Promise<number> {
    const client = await this.connect();
    try {
      const t = await client.query("SELECT to_regclass('schema_migrations') AS t");
      if ((t.rows[0] as { t: string | null }).t === null) return 0;
      const r = await client.query("SELECT MAX(version) AS v FROM schema_migrations");
      return Number((r.rows[0] as { v: number | null }).v ?? 0);
    } catch (e) {
      throw classifyPg(e);
    } finally {
      client.release();
    }
  }

  /** Resolves when the database answers a query now (health checks); rejects with the reason otherwise. */
  async ping(): Promise<void> {
    try {
      await this.pool.query("SELECT 1");
    } catch (e) {
      throw classifyPg(e);
    }
  }

  private closed = false;

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await Promise.all([...this.listeners].map((stop) => stop()));
    await this.pool.end();
  }
}

/** ROLLBACK after a failure; returns the error to destroy the client with when even that failed. */
async function rollback(client: pg.PoolClient): Promise<Error | undefined> {
  try {
    await client.query("ROLLBACK");
    return undefined;
  } catch (e) {
    return e as Error;
  }
}
