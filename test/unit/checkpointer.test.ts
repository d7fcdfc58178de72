/**
 * WAL checkpoints on a worker thread (storage/sqlite/checkpointer.ts) with real files: the store's connections do
 * not checkpoint (their wal_autocheckpoint is only a backstop far away), the worker's timer does, so the WAL stays
 * bounded under a write loop; a synchronous write loop is bounded by the backstop; close leaves a checkpointed
 * file; a reader holding a snapshot is never disturbed, and the WAL it pins is truncated once it ends; a worker
 * that dies gives the connections SQLite's autocheckpoint back.
 *
 * No wall-clock assertion: the tests wait for the worker's reports and look at the files. "The worker copied
 * everything up to the last commit" is seen on disk: each test row appends new pages, so the main file reaches
 * page_count × page_size only once a checkpoint has copied the WAL through the last commit (nothing else
 * checkpoints: autocheckpoint is off).
 */
import { expect } from "chai";
import { copyFileSync, existsSync, mkdtempSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import type { Worker } from "node:worker_threads";
import Database from "better-sqlite3";
import { pino } from "pino";
import { loadConfig } from "../../component/runtime/config.js";
import { openStore } from "../../storage/index.js";
import {
  backstopPages,
  type CheckpointOptions,
  type CheckpointReport,
} from "../../storage/sqlite/checkpointer.js";
import { SqliteStore } from "../../storage/sqlite/store.js";

/** Bytes per row: a blob over several pages (4 KiB), so every row appends pages to the file. */
const ROW_BYTES = 16_000;

describe("WAL checkpoints on a worker thread (storage/sqlite/checkpointer.ts)", () => {
  let dir: string;
  let file: string;
  const stores: SqliteStore[] = [];

  beforeEach(() => {
    dir = mkdtempSync(path.join(tmpdir(), "cardlink-checkpointer-"));
    file = path.join(dir, "cardlink.sqlite");
  });
  afterEach(async () => {
    for (const s of stores.splice(0)) await s.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const open = (o: Partial<CheckpointOptions>, log = pino({ level: "silent" })): SqliteStore => {
    const s = new SqliteStore(file, { legacy: false, checkpoint: o, log });
    stores.push(s);
    return s;
  };
  const create = (s: SqliteStore) =>
    s.tx("test.create", async (tx) => {
      await tx.run("CREATE TABLE blobs (id INTEGER PRIMARY KEY, b BLOB NOT NULL)");
    });
  const write = async (s: SqliteStore, rows: number): Promise<void> => {
    for (let i = 0; i < rows; i++) {
      await s.tx("test.write", async (tx) => {
        await tx.run("INSERT INTO blobs (b) VALUES (randomblob(:n))", { n: ROW_BYTES });
      });
    }
  };
  const walBytes = (): number => (existsSync(`${file}-wal`) ? statSync(`${file}-wal`).size : 0);
  const pageSize = (s: SqliteStore) => s.db.pragma("page_size", { simple: true }) as number;
  /** WAL frames that hold `pages` pages: a 32-byte header, then 24 bytes of frame header per page. */
  const walFor = (s: SqliteStore, pages: number) => 32 + pages * (pageSize(s) + 24);
  const rowCount = (db: Database.Database) =>
    (db.prepare("SELECT COUNT(*) AS n FROM blobs").get() as { n: number }).n;
  /** Rows in a copy of the database file alone (no -wal): what a checkpoint has put there; undefined: no table. */
  const mainFileRows = (): number | undefined => {
    const copy = path.join(dir, "main-only.sqlite");
    copyFileSync(file, copy);
    const db = new Database(copy, { readonly: true });
    try {
      const has = db.prepare("SELECT 1 FROM sqlite_master WHERE name = 'blobs'").get();
      return has ? rowCount(db) : undefined;
    } finally {
      db.close();
      rmSync(copy);
    }
  };
  /** Waits for worker reports until the main file holds every page of the last commit (see the file comment). */
  const checkpointed = async (s: SqliteStore): Promise<void> => {
    const need = (s.db.pragma("page_count", { simple: true }) as number) * pageSize(s);
    while (statSync(file).size < need)
      await (s.checkpointer as NonNullable<SqliteStore["checkpointer"]>).next();
  };
  /** Worker reports until one matches. */
  const until = async (s: SqliteStore, f: (r: CheckpointReport) => boolean): Promise<CheckpointReport> => {
    const cp = s.checkpointer as NonNullable<SqliteStore["checkpointer"]>;
    for (;;) {
      const r = await cp.next();
      if (f(r)) return r;
    }
  };

  it("moves SQLite's autocheckpoint out of the way (the backstop); the worker's timer checkpoints the WAL", async () => {
    const s = open({ intervalMs: 10 });
    expect(s.checkpointer).to.not.equal(undefined);
    expect(s.db.pragma("wal_autocheckpoint", { simple: true })).to.equal(40_000); // 4 × walLimitPages
    await create(s);
    await write(s, 20);
    const before = statSync(file).size;
    await checkpointed(s);
    expect(statSync(file).size).to.be.greaterThan(before);
    const r = await until(s, (x) => x.mode === "passive" && x.walPages > 0);
    expect(r.busy).to.equal(false);
    expect(r.checkpointedPages).to.equal(r.walPages); // nothing held it back: every frame copied
  });

  it("keeps the WAL bounded under a write loop (the same loop without the worker grows it past the bound)", async () => {
    const batches = 15;
    const perBatch = 10;
    const s = open({ intervalMs: 10 });
    await create(s);
    for (let b = 0; b < batches; b++) {
      await write(s, perBatch);
      await checkpointed(s); // the timer's checkpoint has copied this batch: the next write starts the WAL over
    }
    expect(rowCount(s.db)).to.equal(batches * perBatch);
    const rowPages = Math.ceil(ROW_BYTES / pageSize(s)) + 2; // overflow pages + the table's own + slack
    const bound = walFor(s, 2 * perBatch * rowPages);
    const bounded = walBytes();
    expect(bounded).to.be.at.most(bound);
    await s.close();

    // Control: autocheckpoint off and no worker, the same writes: the WAL holds all of them.
    rmSync(dir, { recursive: true, force: true });
    const off = open({ intervalMs: 0 });
    expect(off.checkpointer).to.equal(undefined);
    off.db.pragma("wal_autocheckpoint = 0");
    await create(off);
    await write(off, batches * perBatch);
    expect(walBytes()).to.be.greaterThan(bound);
    expect(walBytes()).to.be.greaterThan(4 * bounded);
  });

  it("a synchronous write loop (the event loop never turns for the forced checkpoint): the backstop bounds the WAL", async () => {
    const s = open({ intervalMs: 60_000, walLimitPages: 20 }); // the timer never fires here
    expect(s.db.pragma("wal_autocheckpoint", { simple: true })).to.equal(
      backstopPages({ walLimitPages: 20 }),
    );
    await create(s);
    const insert = s.db.prepare("INSERT INTO blobs (b) VALUES (randomblob(?))");
    for (let i = 0; i < 300; i++) insert.run(ROW_BYTES); // one transaction each, no await: nothing else runs
    expect(rowCount(s.db)).to.equal(300);
    const rowPages = Math.ceil(ROW_BYTES / pageSize(s)) + 2;
    // SQLite's own checkpoint at 80 frames: the WAL never held much more than that (300 rows are ~1,500 pages).
    expect(walBytes()).to.be.at.most(walFor(s, 80 + 2 * rowPages));
  });

  it("close stops the worker after a last checkpoint: the database file alone holds everything", async () => {
    const s = open({ intervalMs: 60_000 }); // the timer never fires here: only close checkpoints
    await create(s);
    await write(s, 30);
    expect(walBytes()).to.be.greaterThan(walFor(s, 30));
    // Another connection on the file (as `cardlink stats` would hold one): SQLite's own checkpoint at the last
    // connection's close does not happen, so what the main file holds is the worker's doing.
    const other = new Database(file, { readonly: true });
    try {
      expect(rowCount(other)).to.equal(30); // a read: the connection now holds the file open in WAL mode
      const seen: CheckpointReport[] = [];
      s.onCheckpoint((r) => seen.push(r));
      await s.close();
      expect(seen.map((r) => [r.mode, r.reason, r.busy])).to.deep.equal([["passive", "close", false]]);
      const last = seen[0] as CheckpointReport;
      expect(last.walPages).to.be.greaterThan(30);
      expect(last.checkpointedPages).to.equal(last.walPages);
      expect(mainFileRows()).to.equal(30);
    } finally {
      other.close();
    }

    // Control: without the worker (SQLite's autocheckpoint, 1,000 pages, not reached) the frames stay in the WAL.
    rmSync(dir, { recursive: true, force: true });
    const off = open({ intervalMs: 0 });
    await create(off);
    await write(off, 30);
    const other2 = new Database(file, { readonly: true });
    try {
      expect(rowCount(other2)).to.equal(30);
      await off.close();
      expect(mainFileRows()).to.equal(undefined); // not even the table: its creation is still in the WAL
    } finally {
      other2.close();
    }
  });

  /**
   * A reader holding a snapshot while `rows` rows are written (walLimitPages 50): every checkpoint stops at its
   * snapshot; the forced one waits hardWaitMs, gives up and says so; the reader's view and the writes are untouched.
   * Then the reader ends and the next forced checkpoint completes. Returns it.
   */
  const pinned = async (rows: number): Promise<{ s: SqliteStore; done: CheckpointReport }> => {
    const lines: Array<{ event?: string }> = [];
    const log = pino(
      { level: "info" },
      { write: (l: string) => void lines.push(JSON.parse(l) as { event?: string }) },
    );
    const s = open({ intervalMs: 10, walLimitPages: 50, hardWaitMs: 20, hardRetryMs: 20 }, log);
    await create(s);
    await write(s, 5);
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    let held!: () => void;
    const holding = new Promise<void>((r) => (held = r));
    const seen = s.read("test.snapshot", async (r) => {
      const first = (await r.get<{ n: number }>("SELECT COUNT(*) AS n FROM blobs"))?.n;
      held();
      await gate; // the snapshot stays open while the writes below go on
      const again = (await r.get<{ n: number }>("SELECT COUNT(*) AS n FROM blobs"))?.n;
      return [first, again];
    });
    await holding;
    await write(s, rows); // past walLimitPages: every PASSIVE run stops at the reader's snapshot
    const starved = await until(s, (r) => r.reason === "limit");
    expect(starved.busy, "the forced checkpoint cannot pass the open snapshot").to.equal(true);
    expect(lines.some((l) => l.event === "wal-checkpoint-starved")).to.equal(true);
    await write(s, 5); // units of work still commit (the forced checkpoints take the write lock only briefly)
    expect(rowCount(s.db)).to.equal(rows + 10);
    release();
    expect(await seen).to.deep.equal([5, 5]);
    const done = await until(s, (r) => r.reason === "limit" && !r.busy);
    expect(lines.some((l) => l.event === "wal-checkpoint-forced")).to.equal(true);
    return { s, done };
  };

  it("a reader holding a snapshot, a WAL grown past 8 × walLimitPages: untouched; TRUNCATE once the reader ends", async () => {
    const { s, done } = await pinned(110); // ~560 pages: the -wal file over 8 × walLimitPages
    expect([done.mode, done.walPages, done.checkpointedPages]).to.deep.equal(["truncate", 0, 0]);
    expect(walBytes()).to.equal(0);
    expect(s.db.pragma("integrity_check", { simple: true })).to.equal("ok");
    expect(
      await s.read(
        "test.count",
        async (r) => (await r.get<{ n: number }>("SELECT COUNT(*) AS n FROM blobs"))?.n,
      ),
    ).to.equal(120);
  });

  it("a reader holding a snapshot, a shorter WAL: untouched; RESTART once it ends, the next write starts the WAL over", async () => {
    const { s, done } = await pinned(12); // ~60 pages: over walLimitPages, the -wal file under 8 × walLimitPages
    expect(done.mode).to.equal("restart");
    expect(done.checkpointedPages).to.equal(done.walPages);
    const size = walBytes();
    await write(s, 1);
    const after = await until(s, (r) => r.mode === "passive" && r.walPages < 50);
    expect(after.walPages).to.be.at.most(10); // one row's frames, from the start of the file
    expect(walBytes()).to.equal(size); // RESTART keeps the file (it is overwritten from the start)
    expect(s.db.pragma("integrity_check", { simple: true })).to.equal("ok");
    expect(rowCount(s.db)).to.equal(23);
  });

  it("a worker that dies gives the connections SQLite's autocheckpoint back, logged", async () => {
    const lines: Array<{ event?: string }> = [];
    const log = pino(
      { level: "info" },
      { write: (l: string) => void lines.push(JSON.parse(l) as { event?: string }) },
    );
    const s = open({ intervalMs: 10 }, log);
    await create(s);
    expect(s.db.pragma("wal_autocheckpoint", { simple: true })).to.equal(40_000);
    const cp = s.checkpointer as NonNullable<SqliteStore["checkpointer"]>;
    // Reaches into the private worker: the only way to make a healthy thread die from outside.
    await (cp as unknown as { worker: Worker }).worker.terminate();
    while (!cp.fellBack) await new Promise((r) => setImmediate(r));
    expect(s.db.pragma("wal_autocheckpoint", { simple: true })).to.equal(1000);
    expect(lines.some((l) => l.event === "wal-checkpointer-failed")).to.equal(true);
    expect(await cp.next().catch((e: unknown) => e)).to.be.instanceOf(Error);
    await write(s, 3); // the store still works; close does not wait for the dead worker
    await s.close();
    const after = new Database(file, { readonly: true });
    try {
      expect(rowCount(after)).to.equal(3);
    } finally {
      after.close();
    }
  });

  it("database.checkpointIntervalMs / walLimitPages reach the store; 0 leaves SQLite's autocheckpoint on", async () => {
    const config = loadConfig({ env: { CARDLINK_SECRET: "s", CARDLINK_DB: file } });
    expect([config.database.checkpointIntervalMs, config.database.walLimitPages]).to.deep.equal([
      1000, 10000,
    ]);
    const log = pino({ level: "silent" });
    const on = (await openStore({ ...config.database, walLimitPages: 2000 }, { log })) as SqliteStore;
    try {
      expect(on.checkpointer?.options).to.include({ intervalMs: 1000, walLimitPages: 2000 });
      expect(on.db.pragma("wal_autocheckpoint", { simple: true })).to.equal(8000);
    } finally {
      await on.close();
    }
    const off = (await openStore({ ...config.database, checkpointIntervalMs: 0 }, { log })) as SqliteStore;
    try {
      expect(off.checkpointer).to.equal(undefined);
      expect(off.db.pragma("wal_autocheckpoint", { simple: true })).to.equal(1000);
    } finally {
      await off.close();
    }
  });
});
