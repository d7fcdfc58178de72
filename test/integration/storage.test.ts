/**
 * The unit-of-work core seen from a client: a card set is the unit of work `card.set` (its duration is in
 * /metrics), and a database held locked by another connection past database.busyTimeoutMs gives the client
 * wait/internal-server-error ("storage is busy; retry shortly") with nothing written; the retry then succeeds.
 * The WAL checkpoint worker (storage/sqlite/checkpointer.ts) runs beside it and reports to /metrics.
 */
import { expect } from "chai";
import Database from "better-sqlite3";
import { cardClient, vcard, type CardClient } from "../harness/cardclient.js";
import { errorOf } from "../harness/clients.js";
import * as look from "../harness/look.js";
import { useServers } from "../harness/suite.js";
import type { Element } from "../../stanzas/xml.js";

describe("storage: units of work over the real component (real Prosody, real SQLite)", function () {
  this.timeout(60_000);
  const s = useServers(["ulla"], () => ({ database: { busyTimeoutMs: 20 } }));
  const clients: CardClient[] = [];
  after(async () => {
    for (const c of clients) await c.stop();
  });

  const cardVersion = async (): Promise<number | undefined> =>
    (await look.storedCard(s.app(), s.jid("ulla")))?.version;

  it("a card set is the unit of work card.set and moves cardlink_uow_duration_seconds", async () => {
    const ulla = await cardClient(s.prosody, "ulla", { resource: "phone", presence: false });
    clients.push(ulla);
    const metrics = s.app().ctx.metrics;
    const count = (): number =>
      metrics.snapshot()['cardlink_uow_duration_seconds_count{name="card.set"}'] ?? 0;
    expect(count()).to.equal(0);
    await ulla.setCard("Ulla One");
    expect(count()).to.equal(1);
    const text = await metrics.registry.metrics();
    expect(text).to.match(/cardlink_uow_duration_seconds_bucket\{le="[^"]+",name="card\.set"\} 1/);
    expect(await cardVersion()).to.equal(1);
  });

  it("the database locked by another connection: wait/internal-server-error, nothing written, then a retry works", async () => {
    const ulla = clients[0] as CardClient;
    const other = new Database(s.app().ctx.config.database.path);
    other.exec("BEGIN IMMEDIATE");
    let reply: Element;
    try {
      reply = await ulla.cardlinkRaw("set", "card", {}, vcard("Ulla Two"));
    } finally {
      other.exec("ROLLBACK");
      other.close();
    }
    expect(errorOf(reply)).to.deep.equal({
      condition: "internal-server-error",
      type: "wait",
      text: "storage is busy; retry shortly",
    });
    expect(await cardVersion()).to.equal(1);
    await ulla.setCard("Ulla Two");
    expect(await cardVersion()).to.equal(2);
  });

  it("the checkpoint worker copies the WAL off the request path: its runs and the WAL's size are in /metrics", async () => {
    const ulla = clients[0] as CardClient;
    await ulla.setCard("Ulla Three");
    const metrics = s.app().ctx.metrics;
    const passive = (): number =>
      Object.entries(metrics.snapshot())
        .filter(([k]) => k.startsWith("cardlink_sqlite_checkpoint_duration_seconds_count{"))
        .filter(([k]) => k.includes('mode="passive"') && k.includes('outcome="done"'))
        .reduce((n, [, v]) => n + v, 0);
    // The worker runs every database.checkpointIntervalMs (1 s by default): wait for its first run that copied.
    while (passive() === 0) await new Promise((r) => setTimeout(r, 50));
    expect(metrics.snapshot()).to.have.property("cardlink_sqlite_wal_pages");
    const text = await metrics.registry.metrics();
    expect(text).to.include("# TYPE cardlink_sqlite_checkpoint_duration_seconds histogram");
    expect(text).to.include("# TYPE cardlink_sqlite_wal_pages gauge");
  });
});
