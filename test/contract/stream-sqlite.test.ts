/**
 * The stream contract (stream.contract.ts, docs/REDESIGN.md §4.5 cases 21–34) on SQLite: a real file in a temp
 * dir per case, schema 2000 applied through Store.migrate; cases 31–32 open a second SqliteStore on the same file.
 */
import Database from "better-sqlite3";
import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { SCHEMA_2000 } from "../../storage/sqlite/schema-2000.js";
import { SqliteStore } from "../../storage/sqlite/store.js";
import { describeStream } from "./stream.contract.js";
import type { StoreFactory } from "./uow.contract.js";

const dirs: string[] = [];

const sqlite: StoreFactory = {
  async create() {
    const dir = mkdtempSync(path.join(os.tmpdir(), "cardlink-stream-"));
    dirs.push(dir);
    const file = path.join(dir, "store.sqlite");
    return {
      open: async (o = {}) => new SqliteStore(file, { ...o, legacy: false }),
      lockFromOutside: async () => {
        const other = new Database(file);
        other.exec("BEGIN IMMEDIATE");
        return async () => {
          other.exec("ROLLBACK");
          other.close();
        };
      },
    };
  },
  async cleanup() {
    for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
  },
};

describeStream("sqlite", sqlite, [SCHEMA_2000]);
