/**
 * The stream's statements (component/runtime/queue/stream-repo.ts) on schema 2000 in SQLite: each hot one is
 * planned on an index (docs/REDESIGN.md §2.7), never by a full scan of a table. Plans do not depend on the data
 * here, so an empty database suffices; a scan of json_each (an id-list parameter) or of a constant row reads
 * no table.
 */
import { expect } from "chai";
import Database from "better-sqlite3";
import { streamStatements } from "../../component/runtime/queue/stream-repo.js";
import { STREAM_DEPTH_SQL } from "../../component/runtime/runtime.js";
import { PUSH_DEPTH_SQL } from "../../component/features/push/index.js";
import { compileNamed } from "../../storage/sql.js";
import { dialectOf } from "../../storage/sql.js";
import { SCHEMA_2000 } from "../../storage/sqlite/schema-2000.js";

/** Statements that scan by design, and why. */
const SCANS: Record<string, RegExp> = {
  // The sweeper walks payloads (few, bounded by LIMIT); each probe of stream_entries is an index search.
  "sweep payloads": /^SCAN p$/,
  // The heartbeat rule (jobs-repo.ts LEASE_FREE) lists the live processes once per statement: one row a process.
  "claim alive": /^SCAN p$/,
  "stale leases": /^SCAN p$/,
};

describe("stream statements: planned on indexes (§2.7)", () => {
  const db = new Database(":memory:");
  db.exec(SCHEMA_2000.sql.sqlite ?? "");
  after(() => db.close());

  for (const [name, sql] of Object.entries(streamStatements(dialectOf("sqlite")))) {
    it(`${name}: no table scan`, () => {
      const c = compileNamed(sql, "?");
      const lines = (
        db.prepare(`EXPLAIN QUERY PLAN ${c.text}`).all(...c.names.map(() => null)) as Array<{
          detail: string;
        }>
      ).map((r) => r.detail);
      const scans = lines.filter(
        (l) => /^SCAN /.test(l) && !/VIRTUAL TABLE|json_each|CONSTANT ROW/.test(l) && !SCANS[name]?.test(l),
      );
      expect(scans, `${name}:\n${lines.join("\n")}`).to.deep.equal([]);
    });
  }

  it("the lane read and GC use stream_lane; retract without lanes uses stream_subject_account", () => {
    const s = streamStatements(dialectOf("sqlite"));
    const plan = (sql: string) => {
      const c = compileNamed(sql, "?");
      return (
        db.prepare(`EXPLAIN QUERY PLAN ${c.text}`).all(...c.names.map(() => null)) as Array<{
          detail: string;
        }>
      )
        .map((r) => r.detail)
        .join("\n");
    };
    expect(plan(s["lane read"] as string)).to.match(/stream_lane/);
    expect(plan(s.gc as string)).to.match(/stream_lane/);
    expect(plan(s["retract by subject account"] as string)).to.match(/stream_subject_account/);
    expect(plan(s["fan-out"] as string)).to.match(/SEARCH s USING PRIMARY KEY \(owner=\?\)/);
    // The delivery sweep (one statement per queue.pollMs) reads only leased cursors, by their partial index,
    // and probes each one's lane for an entry after pos on stream_lane.
    const stale = plan(s["stale leases"] as string);
    expect(stale).to.match(/SEARCH c USING INDEX stream_cursors_lease/);
    expect(stale).to.match(/SEARCH e EXISTS USING COVERING INDEX stream_lane \(account_id=\? AND seq>\?\)/);
    expect(stale).not.to.match(/SCAN c\b/);
  });

  it("the queue gauges read covering indexes in group order: no table rows, no temp b-tree", () => {
    const plan = (sql: string) =>
      (db.prepare(`EXPLAIN QUERY PLAN ${sql}`).all() as Array<{ detail: string }>).map((r) => r.detail);
    expect(plan(STREAM_DEPTH_SQL)).to.deep.equal(["SCAN stream_entries USING COVERING INDEX stream_kind"]);
    // Per device on jobs_device, then one primary-key probe per device for its platform ("SCAN j" reads the
    // co-routine's rows, not a table).
    expect(plan(PUSH_DEPTH_SQL)).to.deep.equal([
      "CO-ROUTINE j",
      "SEARCH jobs USING COVERING INDEX jobs_device (channel=? AND device>?)",
      "SCAN j",
      "SEARCH d USING INTEGER PRIMARY KEY (rowid=?)",
    ]);
  });
});
