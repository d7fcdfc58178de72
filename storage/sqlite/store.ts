import type { Store } from "../store.js";
import { migrate, openDatabase, type Db, type MigrationReport } from "./db.js";

export class SqliteStore implements Store {
  readonly db: Db;
  readonly migrations: MigrationReport;

  constructor(file: string) {
    this.db = openDatabase(file);
    this.migrations = migrate(this.db);
  }

  async schemaVersion(): Promise<number> {
    return this.migrations.current;
  }

  async close(): Promise<void> {
    if (this.db.open) this.db.close();
  }
}
