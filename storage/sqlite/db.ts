/** Opens the SQLite database (WAL, NORMAL sync, foreign keys) and applies versioned migrations exactly once. */
import { mkdirSync } from "node:fs";
import path from "node:path";
import Database from "better-sqlite3";
import { MIGRATIONS, type Migration } from "./migrations.js";

export type Db = Database.Database;

export function openDatabase(file: string): Db {
  if (file !== ":memory:") mkdirSync(path.dirname(path.resolve(file)), { recursive: true });
  const db = new Database(file);
  db.pragma("journal_mode = WAL");
  // NORMAL in WAL mode: a commit survives a process crash (SIGKILL); only an OS crash can lose the last commits.
  db.pragma("synchronous = NORMAL");
  db.pragma("foreign_keys = ON");
  db.pragma("busy_timeout = 5000");
  return db;
}

export interface MigrationReport {
  applied: number[];
  current: number;
}

/** Applies pending migrations, each in its own transaction, recording them in schema_migrations. */
export function migrate(db: Db, migrations: Migration[] = MIGRATIONS): MigrationReport {
  db.exec(`CREATE TABLE IF NOT EXISTS schema_migrations (
    version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL)`);
  const done = new Set(
    (db.prepare("SELECT version FROM schema_migrations").all() as Array<{ version: number }>).map(
      (r) => r.version,
    ),
  );
  const sorted = [...migrations].sort((a, b) => a.version - b.version);
  const current = sorted.length ? (sorted[sorted.length - 1] as Migration).version : 0;
  // Checked before anything is applied: a newer database must not be half-migrated by an older cardlink.
  const known = Math.max(0, ...done);
  if (known > current) {
    throw new Error(
      `database schema version ${known} is newer than this cardlink (${current}); refusing to start`,
    );
  }
  const applied: number[] = [];
  for (const m of sorted) {
    if (done.has(m.version)) continue;
    db.transaction(() => {
      db.exec(m.sql);
      db.prepare("INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)").run(
        m.version,
        m.name,
        Date.now(),
      );
    })();
    applied.push(m.version);
  }
  return { applied, current };
}

/**
 * Opens an existing database without changing it (no journal-mode switch, no migration): for the command-line
 * checks, stats and backups that may run beside a live cardlink.
 */
export function openReadOnly(file: string): Db {
  const db = new Database(file, { readonly: true, fileMustExist: true });
  db.pragma("busy_timeout = 5000");
  return db;
}

export interface SchemaState {
  /** Versions recorded in schema_migrations (none for a new or foreign file). */
  applied: number[];
  /** The highest version recorded, 0 when none. */
  version: number;
  /** The highest version this cardlink knows. */
  current: number;
  /** Migrations this cardlink would apply, in order. */
  pending: Migration[];
  /** The database was migrated by a newer cardlink: this one must not touch it. */
  newer: boolean;
}

/** Where a database stands against this build's migrations, read without writing anything. */
export function schemaState(db: Db, migrations: Migration[] = MIGRATIONS): SchemaState {
  const hasTable = db
    .prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'")
    .get();
  const applied = hasTable
    ? (
        db.prepare("SELECT version FROM schema_migrations ORDER BY version").all() as Array<{
          version: number;
        }>
      ).map((r) => r.version)
    : [];
  const done = new Set(applied);
  const sorted = [...migrations].sort((a, b) => a.version - b.version);
  const current = sorted.length ? (sorted[sorted.length - 1] as Migration).version : 0;
  const version = Math.max(0, ...applied);
  return {
    applied,
    version,
    current,
    pending: sorted.filter((m) => !done.has(m.version)),
    newer: version > current,
  };
}
