/**
 * The backend-neutral migration runner (docs/REDESIGN.md §2.8.1). Migrations come in modules, each owning a
 * version range (legacy 1–999, accounts 2000–2099, a feature's hundred, …); the runner checks the modules
 * statically, refuses a database newer than the newest known version before applying anything, lists what it
 * would apply (dry run), and hands each pending migration to the backend, which applies it and records its
 * version in one transaction (SQLite's rebuild mode included: storage/sqlite/store.ts).
 */
import type { Migration, MigrationReport } from "./store.js";

export interface MigrationModule {
  name: string;
  /** Inclusive version range this module's migrations must lie in. */
  range: readonly [number, number];
  migrations: readonly Migration[];
}

/** What a backend provides to the runner. */
export interface MigrationTarget {
  /** Versions recorded in schema_migrations (created if missing). */
  applied(): Promise<number[]>;
  /** Applies one migration and records it, in one transaction; throws (and records nothing) on failure. */
  apply(m: Migration): Promise<void>;
}

/**
 * The modules' migrations in order, after checking that ranges are disjoint, every version lies in its module's
 * range, and versions are unique and ascending within each module. Throws naming the first problem.
 */
export function flattenModules(modules: readonly MigrationModule[]): Migration[] {
  const byStart = [...modules].sort((a, b) => a.range[0] - b.range[0]);
  for (let i = 0; i < byStart.length; i++) {
    const m = byStart[i] as MigrationModule;
    if (m.range[0] > m.range[1])
      throw new Error(`migration module ${m.name}: empty range ${m.range.join("–")}`);
    const next = byStart[i + 1];
    if (next && next.range[0] <= m.range[1]) {
      throw new Error(
        `migration modules ${m.name} (${m.range.join("–")}) and ${next.name} (${next.range.join("–")}) overlap`,
      );
    }
    let last = -Infinity;
    for (const x of m.migrations) {
      if (x.version < m.range[0] || x.version > m.range[1]) {
        throw new Error(`migration ${x.version} ${x.name} is outside ${m.name}'s range ${m.range.join("–")}`);
      }
      if (x.version <= last)
        throw new Error(`migration module ${m.name}: versions not ascending at ${x.version}`);
      last = x.version;
    }
  }
  return byStart.flatMap((m) => [...m.migrations]);
}

/** Brings the target up to the newest of `migrations` (see the module comment). */
export async function runMigrations(
  target: MigrationTarget,
  migrations: readonly Migration[],
  o: { dryRun?: boolean } = {},
): Promise<MigrationReport> {
  const sorted = [...migrations].sort((a, b) => a.version - b.version);
  for (let i = 1; i < sorted.length; i++) {
    if ((sorted[i] as Migration).version === (sorted[i - 1] as Migration).version) {
      throw new Error(`migration version ${(sorted[i] as Migration).version} is defined twice`);
    }
  }
  const done = new Set(await target.applied());
  const newest = sorted.length ? (sorted[sorted.length - 1] as Migration).version : 0;
  const known = Math.max(0, ...done);
  // Checked before anything is applied: a newer database must not be half-migrated by an older cardlink.
  if (known > newest) {
    throw new Error(
      `database schema version ${known} is newer than this cardlink (${newest}); refusing to start`,
    );
  }
  const pending = sorted.filter((m) => !done.has(m.version));
  if (o.dryRun) return { applied: [], current: known, pending: pending.map((m) => m.version) };
  const applied: number[] = [];
  for (const m of pending) {
    await target.apply(m);
    applied.push(m.version);
  }
  return { applied, current: Math.max(known, ...applied), pending: [] };
}
