/**
 * The pre-redesign schema, versions 1, 100 and 200 (storage/sqlite/migrations.ts), as a module of the
 * backend-neutral runner (storage/migrate.ts). Frozen forever: the SQL is the same text, so a database migrated
 * by either runner is the same database, recorded the same way in schema_migrations.
 */
import type { MigrationModule } from "../migrate.js";
import { MIGRATIONS } from "./migrations.js";

export const LEGACY: MigrationModule = {
  name: "legacy",
  range: [1, 1999],
  migrations: MIGRATIONS.map((m) => ({ version: m.version, name: m.name, sql: { sqlite: m.sql } })),
};
