/**
 * test/fixtures/v200.sqlite, the pre-redesign database the migration tests start from (rekey-2000.test.ts reads
 * back, on schema 2000, what scripts/make-fixture-v200.ts's data set says). Here: the file is what it claims to
 * be, and the legacy versions after 200 that opening it applies add indexes only. The read-back through the old
 * repositories and the writer's determinism check went with them (issue 8 S11; the writer runs at 73d7e7d).
 */
import { copyFileSync, mkdtempSync, rmSync, statSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { expect } from "chai";
import Database from "better-sqlite3";
import { LEGACY } from "../../storage/sqlite/legacy.js";
import { SqliteStore } from "../../storage/sqlite/store.js";
import { SCHEMA_VERSION, dumpRows, type RowDump } from "../../scripts/make-fixture-v200.js";

// Tests run from dist/test/…; the fixture lives in the source tree, and mocha is started from the project root.
const FIXTURE = path.resolve(process.cwd(), "test", "fixtures", "v200.sqlite");

function dumpFile(file: string): RowDump {
  const db = new Database(file, { readonly: true, fileMustExist: true });
  try {
    return dumpRows(db);
  } finally {
    db.close();
  }
}

describe("fixture v200 (the pre-redesign database)", () => {
  let dir: string;
  let store: SqliteStore;
  let written: RowDump;

  before(() => {
    dir = mkdtempSync(path.join(os.tmpdir(), "cardlink-fixture-"));
    const copy = path.join(dir, "copy.sqlite");
    copyFileSync(FIXTURE, copy);
    written = dumpFile(copy);
    store = new SqliteStore(copy);
  });

  after(async () => {
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it("is small and at schema version 200: opening it applies only the later legacy versions, indexes only", async () => {
    expect(statSync(FIXTURE).size).to.be.below(200 * 1024);
    expect(written.schema_migrations?.map((r) => r.version)).to.deep.equal([1, 100, 200]);
    const later = LEGACY.migrations.filter((m) => m.version > SCHEMA_VERSION);
    expect(store.migrations.applied).to.deep.equal(later.map((m) => m.version));
    expect(await store.schemaVersion()).to.equal(later.at(-1)?.version ?? SCHEMA_VERSION);
    // What the reads below rely on: nothing after 200 changes a table or a row, it only adds indexes.
    for (const m of later) {
      const statements = (m.sql.sqlite ?? "")
        .replace(/--.*$/gm, "")
        .split(";")
        .map((x) => x.trim())
        .filter(Boolean);
      for (const st of statements) expect(st, `migration ${m.version}`).to.match(/^CREATE INDEX /);
    }
  });

  it("opening it changed no row but for the later legacy versions' own records", () => {
    const now = dumpRows(store.db);
    now.schema_migrations = (now.schema_migrations ?? []).filter((r) => Number(r.version) <= SCHEMA_VERSION);
    expect(now).to.deep.equal(written);
  });
});
