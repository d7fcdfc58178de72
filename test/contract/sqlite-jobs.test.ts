/**
 * The jobs and observers contract (jobs.contract.ts, cases 35–40) on SQLite: real files in temp dirs with the
 * 2000 schema; the two-instance cases open a second SqliteStore on the same file.
 */
import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { SCHEMA_2000 } from "../../storage/sqlite/schema-2000.js";
import { SqliteStore } from "../../storage/sqlite/store.js";
import { describeJobs } from "./jobs.contract.js";
import type { StoreFactory } from "./uow.contract.js";

const dirs: string[] = [];

const sqlite: StoreFactory = {
  async create() {
    const dir = mkdtempSync(path.join(os.tmpdir(), "cardlink-jobs-"));
    dirs.push(dir);
    const file = path.join(dir, "store.sqlite");
    return {
      open: async (o = {}) => new SqliteStore(file, { ...o, legacy: false }),
      lockFromOutside: () => Promise.reject(new Error("not used by the jobs contract")),
    };
  },
  async cleanup() {
    for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
  },
};

describeJobs("sqlite", sqlite, [SCHEMA_2000]);
