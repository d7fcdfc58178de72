/**
 * cardlink itself on PostgreSQL (issue 13 on issue 8's new core): the whole app — router, features, units of work,
 * stream delivery, presence — on a throwaway PostgreSQL 15 cluster (test/harness/postgres.ts, run as the
 * `postgres` user), behind a real Prosody with real clients. The Store contract suite shows the backend keeps its
 * promises statement by statement; this shows the features' units of work run on it end to end: an exchange by
 * code, a card change reaching an online holder, an offline holder getting the newest version when they come back
 * (after a restart of cardlink on the same database), and the lane empty once acknowledged.
 */
import { expect } from "chai";
import { coreModules } from "../../component/features.js";
import { createCardlink, type Cardlink } from "../../component/runtime/app.js";
import type { Config } from "../../component/runtime/config.js";
import { createLogger } from "../../component/runtime/log.js";
import { cardClient, cardSummary, type CardClient } from "../harness/cardclient.js";
import { testConfig } from "../harness/cardlink.js";
import * as inspect from "../harness/inspect.js";
import { waitFor } from "../harness/ports.js";
import { startPostgres, type PostgresServer } from "../harness/postgres.js";
import { ProsodyServer } from "../harness/prosody.js";

describe("cardlink on PostgreSQL, new core (real Prosody, real PostgreSQL, real clients)", function () {
  this.timeout(90_000);
  const prosody = new ProsodyServer();
  let pg: PostgresServer;
  let config: Config;
  let app: Cardlink | undefined;
  const clients: CardClient[] = [];
  const jid = (u: string): string => `${u}@${prosody.host}`;

  const start = async (): Promise<Cardlink> => {
    const a = await createCardlink(config, {
      log: createLogger(config.log.level),
      modules: coreModules,
    });
    await a.start();
    await waitFor(() => a.link.online, "cardlink online", 15_000);
    return a;
  };
  const connect = async (u: string): Promise<CardClient> => {
    const c = await cardClient(prosody, u, { resource: "phone", presence: true });
    clients.push(c);
    return c;
  };

  before(async () => {
    pg = await startPostgres();
    const url = await pg.createDatabase();
    await prosody.start();
    prosody.createUsers(["alice", "bob"].map((u) => ({ user: u, password: `${u}pw` })));
    config = testConfig(prosody, {
      database: { driver: "postgres", url, poolSize: 4 },
      delivery: { ackTimeoutMs: 2000, retryBaseMs: 200, retryMaxMs: 1000, batchSize: 20 },
    });
    app = await start();
  });
  after(async () => {
    for (const c of clients) await c.stop();
    await app?.stop();
    await prosody.stop();
    prosody.cleanup();
    await pg?.dropDatabases();
    await pg?.stop();
  });

  it("exchange by code; a change reaches the online holder; an offline one gets the newest after a restart", async () => {
    const alice = await connect("alice");
    let bob = await connect("bob");
    await alice.setCard("Alice One");
    const r = await alice.cardlink("set", "exchange-code", {});
    const code = String(r.getChild("exchange-code")?.attrs.code);
    const red = await bob.cardlink("set", "redeem", { code });
    expect(red.getChild("binding")?.attrs.peer).to.equal(jid("alice"));
    const first = await bob.waitForUpdate(
      (u) => u.kind === "card" && u.content.attrs.owner === jid("alice"),
      "alice's card at bob",
    );
    expect(cardSummary(first.content).fn).to.equal("Alice One");

    await alice.setCard("Alice Two");
    const second = await bob.waitForUpdate(
      (u) => u.kind === "card" && cardSummary(u.content).fn === "Alice Two",
      "alice's change at bob",
    );
    expect(second.seq).to.be.greaterThan(first.seq);

    // Bob goes offline; two more changes coalesce into one pending entry; cardlink restarts on the same database.
    await bob.stop();
    clients.splice(clients.indexOf(bob), 1);
    await alice.setCard("Alice Three");
    await alice.setCard("Alice Four");
    const a = app as Cardlink;
    await waitFor(
      async () => (await inspect.pendingCount(a, jid("bob"))) === 1,
      "one coalesced entry waits for bob",
      10_000,
    );
    await a.stop();
    app = await start();
    bob = await connect("bob");
    const latest = await bob.waitForUpdate((u) => u.kind === "card", "alice's newest card at bob", 20_000);
    expect(cardSummary(latest.content).fn).to.equal("Alice Four");
    expect(bob.updates.filter((u) => u.kind === "card")).to.have.length(1);
    const b = app;
    await waitFor(
      async () => (await inspect.pendingCount(b, jid("bob"))) === 0,
      "bob's lane empty after his ack",
      10_000,
    );
  });
});
