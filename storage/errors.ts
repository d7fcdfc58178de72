/**
 * The two storage failures a caller may act on (docs/REDESIGN.md §3.1), independent of the backend. Everything
 * else a backend throws is a bug or an outage and passes through unchanged.
 */

/**
 * Transient: the database was locked past its busy timeout (SQLITE_BUSY/LOCKED), or (PostgreSQL) a serialization
 * failure, deadlock or lost connection. Nothing of the unit of work was written; `Store.tx` has already retried.
 * The router answers `internal-server-error` of type `wait` ("storage is busy; retry shortly").
 */
export class StoreBusyError extends Error {
  constructor(
    message: string,
    readonly code?: string,
  ) {
    super(message);
    this.name = "StoreBusyError";
  }
}

/**
 * The connection to the database failed after COMMIT was sent (PostgreSQL: a restart, a network cut): the unit of
 * work may or may not have committed. Not busy (that promises nothing was written) and not retried by the store
 * (fn would run twice). The router answers `internal-server-error` of type `wait` saying the request may have been
 * applied: cardlink's requests are safe to repeat (a card set again is `unchanged`, a repeated block or removal
 * changes nothing).
 */
export class StoreOutcomeUnknownError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "StoreOutcomeUnknownError";
  }
}

/**
 * A unique or foreign-key violation. `constraint` names what was violated, so a feature can map it (e.g. to
 * `conflict`): the index name for a named unique index (`CREATE UNIQUE INDEX name …`, the same on both backends),
 * PostgreSQL's default names otherwise (`<table>_pkey`, `<table>_<col>[_<col>…]_key`), `foreign_key` for a
 * foreign-key violation (SQLite does not say which one).
 */
export class StoreConflictError extends Error {
  constructor(
    readonly constraint: string,
    message: string,
  ) {
    super(message);
    this.name = "StoreConflictError";
  }
}

/** Finds the name of the unique index over `columns` of `table` (SQLite says only which columns clashed). */
export type UniqueIndexLookup = (table: string, columns: string[]) => string | undefined;

const BUSY = /^SQLITE_(BUSY|LOCKED)/;
const UNIQUE = new Set(["SQLITE_CONSTRAINT_UNIQUE", "SQLITE_CONSTRAINT_PRIMARYKEY"]);
// PostgreSQL (issue 13): serialization_failure, deadlock_detected, connection exceptions, admin/crash shutdown,
// and lock_not_available (55P03: lock_timeout = database.busyTimeoutMs ran out, SQLITE_BUSY's counterpart).
const PG_BUSY = /^(40001|40P01|08...|57P0[123]|55P03)$/;

/**
 * Maps a backend error to StoreBusyError / StoreConflictError, or returns it unchanged. Idempotent: an error
 * already classified is returned as it is.
 */
export function classify(err: unknown, lookup?: UniqueIndexLookup): unknown {
  if (err instanceof StoreBusyError || err instanceof StoreConflictError) return err;
  if (!(err instanceof Error)) return err;
  const code = (err as Error & { code?: unknown }).code;
  if (typeof code !== "string") return err;
  if (BUSY.test(code) || PG_BUSY.test(code)) return new StoreBusyError(err.message, code);
  if (UNIQUE.has(code)) {
    // "UNIQUE constraint failed: t.a, t.b"
    const m = /constraint failed: (.*)$/.exec(err.message);
    const cols = (m?.[1] ?? "").split(",").map((s) => s.trim());
    const table = cols[0]?.split(".")[0] ?? "";
    const names = cols.map((c) => c.slice(c.indexOf(".") + 1));
    const found = lookup?.(table, names);
    const name =
      found ??
      (code === "SQLITE_CONSTRAINT_PRIMARYKEY" ? `${table}_pkey` : `${table}_${names.join("_")}_key`);
    return new StoreConflictError(name, err.message);
  }
  if (code === "SQLITE_CONSTRAINT_FOREIGNKEY") return new StoreConflictError("foreign_key", err.message);
  // PostgreSQL: unique_violation / foreign_key_violation carry the constraint's name.
  if (code === "23505" || code === "23503") {
    const c = (err as Error & { constraint?: unknown }).constraint;
    return new StoreConflictError(typeof c === "string" ? c : "unknown", err.message);
  }
  return err;
}
