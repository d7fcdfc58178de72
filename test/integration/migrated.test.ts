/**
 * A database the old code wrote, served by the new core (docs/REDESIGN.md §4.6, issue 8 S11): the committed
 * fixture test/fixtures/v200.sqlite (scripts/make-fixture-v200.ts: schema 200, written by the old store with a
 * fixed clock) is copied, cardlink starts on it with the 2000 core — which runs the legacy migration it lacks
 * and the rekey to schema 2000 — and dave, the fixture's offline user, logs in for real. He must receive every
 * update the old outbox held for him, with the ids the old code would have rendered (`<kind>:<subject>:<seq>`,
 * read from the fixture's own outbox table before the migration), and his lane must be empty once he acked.
 */
import { copyFileSync, existsSync, mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import Database from "better-sqlite3";
import { expect } from "chai";
import { coreModules } from "../../component/features.js";
import { createCardlink, type Cardlink } from "../../component/runtime/app.js";
import { createLogger } from "../../component/runtime/log.js";
import { cardClient, cardSummary, type CardClient } from "../harness/cardclient.js";
import { testConfig } from "../harness/cardlink.js";
import * as inspect from "../harness/inspect.js";
import { waitFor } from "../harness/ports.js";
import { ProsodyServer } from "../harness/prosody.js";

const FIXTURE = path.resolve("test/fixtures/v200.sqlite");

describe("a database written by the old code, on the new core (real Prosody, real client)", function () {
  this.timeout(60_000);
  // The fixture's users live on example.org: this Prosody serves that host on loopback.
  const prosody = new ProsodyServer({ host: "example.org" });
  let dir: string;
  let app: Cardlink | undefined;
  let dave: CardClient | undefined;
  let oldIds: string[];

  before(async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), "cardlink-migrated-"));
    const db = path.join(dir, "cardlink.sqlite");
    // The fixture is a WAL database: its -wal and -shm files are part of it.
    for (const ext of ["", "-wal", "-shm"]) {
      if (existsSync(FIXTURE + ext)) copyFileSync(FIXTURE + ext, db + ext);
    }
    const old = new Database(db, { readonly: true });
    try {
      oldIds = old
        .prepare("SELECT kind, subject, seq FROM outbox WHERE recipient = ? ORDER BY seq")
        .all("dave@example.org")
        .map((r) => {
          const o = r as { kind: string; subject: string; seq: number };
          return `${o.kind}:${o.subject}:${o.seq}`;
        });
      const version = (old.prepare("SELECT MAX(version) AS v FROM schema_migrations").get() as { v: number })
        .v;
      expect(version).to.equal(200);
    } finally {
      old.close();
    }
    expect(oldIds.length).to.be.greaterThan(4); // the fixture holds every kind for dave
    await prosody.start();
    prosody.createUsers([{ user: "dave", password: "davepw" }]);
    const config = testConfig(prosody, {}, db);
    app = await createCardlink(config, {
      log: createLogger(config.log.level),
      modules: coreModules,
    });
    await app.start();
    await waitFor(() => app?.link.online ?? false, "cardlink online", 15_000);
  });
  after(async () => {
    await dave?.stop();
    await app?.stop();
    await prosody.stop();
    prosody.cleanup();
    rmSync(dir, { recursive: true, force: true });
  });

  it("migrates at start and delivers dave's pending updates with the ids the old code rendered", async () => {
    const a = app as Cardlink;
    expect(await inspect.pendingCount(a, "dave@example.org")).to.equal(oldIds.length);
    dave = await cardClient(prosody, "dave", { resource: "phone", presence: true });
    const c = dave;
    await waitFor(() => c.updates.length >= oldIds.length, "dave's pending updates", 20_000);
    expect(c.updates.map((u) => u.id).sort()).to.deep.equal([...oldIds].sort());
    // Delivered in seq order, as §10.3 says.
    const seqs = c.updates.map((u) => u.seq);
    expect(seqs).to.deep.equal([...seqs].sort((x, y) => x - y));
    const bob = c.updates.find((u) => u.kind === "card" && u.content.attrs.owner === "bob@example.org");
    expect(bob && cardSummary(bob.content).fn)
      .to.be.a("string")
      .and.not.equal("");
    await waitFor(
      async () => (await inspect.pendingCount(a, "dave@example.org")) === 0,
      "dave's lane empty after his acks",
      10_000,
    );
  });
});
