import { expect } from "chai";
import { mkdtempSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import type { Cardlink } from "../../component/runtime/app.js";
import { NS } from "../../stanzas/ns.js";
import { CardlinkProcess, startInProcess, testConfig } from "../harness/cardlink.js";
import { connectClient, errorOf, xml, type TestClient } from "../harness/clients.js";
import { freePort, waitFor, sleep } from "../harness/ports.js";
import { useServers } from "../harness/suite.js";
import { newXmppServer, onlyOn, serverLabel } from "../harness/server.js";
import { openDatabase, migrate } from "../../storage/sqlite/db.js";

describe(`foundation: cardlink on a ${serverLabel()}`, function () {
  this.timeout(60_000);
  const prosody = newXmppServer();
  let app: Cardlink;
  let alice: TestClient;
  const comp = (): string => prosody.componentDomain;

  before(async () => {
    await prosody.start();
    await prosody.createUsers([
      { user: "alice", password: "alicepw" },
      { user: "bob", password: "bobpw" },
    ]);
    app = await startInProcess(testConfig(prosody, { maxStanzaBytes: 64 * 1024 }));
    alice = await connectClient({
      port: prosody.c2sPort,
      domain: prosody.host,
      username: "alice",
      password: "alicepw",
    });
  });

  after(async () => {
    await alice?.stop();
    await app?.stop();
    await prosody.stop();
    prosody.cleanup();
  });

  it("answers disco#info with an identity and every feature it routes", async () => {
    const r = await alice.iq("get", comp(), xml("query", { xmlns: NS.DISCO_INFO }));
    const q = r.getChild("query", NS.DISCO_INFO);
    const identities = q?.getChildren("identity").map((i) => `${i.attrs.category}/${i.attrs.type}`) ?? [];
    expect(identities).to.include("component/generic");
    const features = q?.getChildren("feature").map((f) => f.attrs.var) ?? [];
    for (const f of [NS.DISCO_INFO, NS.DISCO_ITEMS, NS.VERSION, NS.PING, NS.COMMANDS, NS.RSM])
      expect(features).to.include(f);
  });

  it("answers disco#items, and lists ad-hoc commands (admin ones hidden from users)", async () => {
    const r = await alice.iq("get", comp(), xml("query", { xmlns: NS.DISCO_ITEMS }));
    expect(r.getChild("query", NS.DISCO_ITEMS)).to.exist;
    const c = await alice.iq("get", comp(), xml("query", { xmlns: NS.DISCO_ITEMS, node: NS.COMMANDS }));
    const nodes =
      c
        .getChild("query")
        ?.getChildren("item")
        .map((i) => i.attrs.node) ?? [];
    expect(nodes).to.not.include("urn:cardlink:cmd:stats");
  });

  it("answers version and ping", async () => {
    const v = await alice.iq("get", comp(), xml("query", { xmlns: NS.VERSION }));
    expect(v.getChild("query")?.getChildText("name")).to.equal("cardlink");
    const p = await alice.iq("get", comp(), xml("ping", { xmlns: NS.PING }));
    expect(p.attrs.type).to.equal("result");
  });

  it("unknown namespace → service-unavailable with text", async () => {
    const r = await alice.iqRaw("get", comp(), xml("query", { xmlns: "urn:example:nothing" }));
    const e = errorOf(r);
    expect(e.condition).to.equal("service-unavailable");
    expect(e.text).to.match(/urn:example:nothing/);
  });

  it("known namespace, unknown element → feature-not-implemented", async () => {
    const r = await alice.iqRaw("set", comp(), xml("frobnicate", { xmlns: NS.PING }));
    expect(errorOf(r).condition).to.equal("feature-not-implemented");
    const r2 = await alice.iqRaw("set", comp(), xml("query", { xmlns: NS.VERSION }));
    expect(errorOf(r2).condition).to.equal("feature-not-implemented");
  });

  it("IQ with no payload or two payloads → bad-request that says so", async () => {
    // Prosody itself refuses an IQ without a payload before routing it; either way the client gets bad-request.
    const none = errorOf(await alice.iqRaw("get", comp(), null));
    expect(none.condition).to.equal("bad-request");
    expect(none.text).to.not.equal("");
    const two = errorOf(
      await alice.iqRaw("get", comp(), [xml("ping", { xmlns: NS.PING }), xml("ping", { xmlns: NS.PING })]),
    );
    expect(two.condition).to.equal("bad-request");
    expect(two.text).to.not.equal("");
  });

  it("oversized request → policy-violation, and the component keeps serving", async () => {
    // Below Prosody's own c2s limit (256 KiB, which would close alice's stream), above cardlink's (64 KiB here).
    const big = "x".repeat(100 * 1024);
    const r = await alice.iqRaw("get", comp(), xml("ping", { xmlns: NS.PING }, big));
    expect(errorOf(r).condition).to.equal("policy-violation");
    const p = await alice.iq("get", comp(), xml("ping", { xmlns: NS.PING }));
    expect(p.attrs.type).to.equal("result");
  });

  it("a crashing handler → internal-server-error, and the component stays up", async () => {
    app.ctx.router.iq("get", "urn:cardlink:test:crash", "boom", () => {
      throw new Error("deliberate test crash");
    });
    const r = await alice.iqRaw("get", comp(), xml("boom", { xmlns: "urn:cardlink:test:crash" }));
    expect(errorOf(r).condition).to.equal("internal-server-error");
    expect(errorOf(r).text).to.not.match(/deliberate/); // internals are logged, not sent
    const p = await alice.iq("get", comp(), xml("ping", { xmlns: NS.PING }));
    expect(p.attrs.type).to.equal("result");
  });

  it("unknown ad-hoc command → item-not-found; admin command forbidden to a user", async () => {
    const r = await alice.iqRaw(
      "set",
      comp(),
      xml("command", { xmlns: NS.COMMANDS, node: "nope", action: "execute" }),
    );
    expect(errorOf(r).condition).to.equal("item-not-found");
    const s = await alice.iqRaw(
      "set",
      comp(),
      xml("command", { xmlns: NS.COMMANDS, node: "urn:cardlink:cmd:stats", action: "execute" }),
    );
    expect(errorOf(s).condition).to.equal("forbidden");
  });
});

describe("foundation: metrics endpoint", function () {
  this.timeout(60_000);
  const servers = useServers(["alice"], async () => ({ metricsPort: await freePort() }));

  it("serves Prometheus text on loopback with link state and per-outcome IQ counters", async () => {
    const { prosody } = servers;
    const alice = await servers.login("alice");
    try {
      await alice.iq("get", prosody.componentDomain, xml("ping", { xmlns: NS.PING }));
      await alice.iqRaw("get", prosody.componentDomain, xml("query", { xmlns: "urn:example:x" }));
    } finally {
      await alice.stop();
    }
    const port = servers.app().ctx.config.metricsPort;
    const res = await fetch(`http://127.0.0.1:${port}/metrics`);
    expect(res.status).to.equal(200);
    const text = await res.text();
    expect(text).to.match(/^cardlink_link_up 1$/m);
    expect(text).to.match(
      /^cardlink_iq_total\{name="ping",ns="urn:xmpp:ping",outcome="result",type="get"\} 1$/m,
    );
    expect(text).to.match(/outcome="unrouted"/);
    expect(text).to.match(/^cardlink_stanza_errors_total\{condition="service-unavailable"\} 1$/m);
    expect((await fetch(`http://127.0.0.1:${port}/other`)).status).to.equal(404);
  });
});

describe("foundation: domain allow-list", function () {
  this.timeout(60_000);
  // cardlink configured to serve a different host: alice@localhost is not on its allow-list.
  const servers = useServers(["alice"], () => ({ servedHosts: ["example.org"], admins: [] }));

  it("a stanza from a domain not on the allow-list gets forbidden", async () => {
    const alice = await servers.login("alice");
    try {
      const r = await alice.iqRaw("get", servers.prosody.componentDomain, xml("ping", { xmlns: NS.PING }));
      const e = errorOf(r);
      expect(e.condition).to.equal("forbidden");
      expect(e.text).to.match(/example\.org/);
    } finally {
      await alice.stop();
    }
  });
});

describe("foundation: lifecycle (cardlink as a process)", function () {
  this.timeout(120_000);
  const prosody = newXmppServer();
  const dir = mkdtempSync(path.join(os.tmpdir(), "cardlink-life-"));
  const db = path.join(dir, "cardlink.sqlite");
  let alice: TestClient;
  const procs: CardlinkProcess[] = [];

  const ping = async (): Promise<boolean> => {
    const r = await alice.iqRaw("get", prosody.componentDomain, xml("ping", { xmlns: NS.PING }));
    return r.attrs.type === "result";
  };

  before(async () => {
    await prosody.start();
    await prosody.createUsers([{ user: "alice", password: "alicepw" }]);
    alice = await connectClient({
      port: prosody.c2sPort,
      domain: prosody.host,
      username: "alice",
      password: "alicepw",
    });
  });
  after(async () => {
    for (const p of procs) await p.kill("SIGKILL");
    await alice?.stop();
    await prosody.stop();
    prosody.cleanup();
  });

  it("SIGKILLed cardlink restarted reconnects and serves; migrations are not re-applied", async function () {
    onlyOn(
      "prosody",
      this,
      "on ejabberd 23.01 the first IQ after a SIGKILLed component reconnects was dropped in 2 of ~10 loaded runs " +
        "(no reply, no bounce) — open in issue 13, see docs/OPERATIONS.md §10",
    );
    const a = CardlinkProcess.forProsody(prosody, db);
    procs.push(a);
    a.start();
    await a.waitForEvent("connected");
    expect(a.events().find((e) => e.event === "migrated")).to.exist;
    expect(await ping()).to.equal(true);
    await a.kill("SIGKILL");
    // While it is down, Prosody bounces: that is the documented behaviour clients must expect.
    const down = await alice.iqRaw("get", prosody.componentDomain, xml("ping", { xmlns: NS.PING }));
    expect(down.attrs.type).to.equal("error");
    a.start();
    await a.waitForEvent("connected");
    expect(await ping()).to.equal(true);
    expect(
      a.events().find((e) => e.event === "migrated"),
      "no migration on restart",
    ).to.not.exist;
    await a.kill("SIGTERM");
  });

  it("SIGTERM stops gracefully with exit code 0", async () => {
    const a = CardlinkProcess.forProsody(prosody, db);
    procs.push(a);
    a.start();
    await a.waitForEvent("connected");
    const code = await a.kill("SIGTERM");
    expect(code).to.equal(0);
    expect(a.events().map((e) => e.event)).to.include.members(["stopping", "stopped"]);
  });

  it("reconnects by itself after Prosody restarts", async () => {
    const a = CardlinkProcess.forProsody(prosody, db);
    procs.push(a);
    a.start();
    await a.waitForEvent("connected");
    await alice.stop();
    await prosody.restart();
    await a.waitForEvent("disconnected");
    await a.waitForEvent("connected", 2, 30_000);
    alice = await connectClient({
      port: prosody.c2sPort,
      domain: prosody.host,
      username: "alice",
      password: "alicepw",
    });
    await waitFor(ping, "ping after Prosody restart", 10_000);
    await a.kill("SIGTERM");
  });

  it("a second cardlink gets conflict, backs off, and does not spin", async function () {
    onlyOn(
      "prosody",
      this,
      "ejabberd accepts several connections for one component domain and balances between them (domain_balancing); see the next test",
    );
    const first = CardlinkProcess.forProsody(prosody, db);
    procs.push(first);
    first.start();
    await first.waitForEvent("connected");
    const second = CardlinkProcess.forProsody(prosody, path.join(dir, "second.sqlite"));
    procs.push(second);
    second.start();
    await second.waitForEvent("reconnect-scheduled", 3, 30_000);
    await sleep(3000);
    const retries = second.events().filter((e) => e.event === "reconnect-scheduled");
    // Backoff (max 30 s by default) allows only a handful of attempts in this window; a spin would make hundreds.
    expect(retries.length).to.be.lessThan(12);
    expect(retries.some((e) => e.reason === "conflict")).to.equal(true);
    const delays = retries.map((e) => Number(e.delayMs));
    expect(Math.max(...delays)).to.be.greaterThan(Math.min(...delays));
    expect(second.events().find((e) => e.event === "connected")).to.not.exist;
    // The first one is unaffected.
    expect(await ping()).to.equal(true);
    await second.kill("SIGTERM");
    await first.kill("SIGTERM");
  });

  it("on ejabberd a second cardlink is accepted for the same domain, and the first keeps serving", async function () {
    onlyOn("ejabberd", this, "Prosody allows one connection per component (the previous test)");
    const first = CardlinkProcess.forProsody(prosody, db);
    procs.push(first);
    first.start();
    await first.waitForEvent("connected");
    const second = CardlinkProcess.forProsody(prosody, path.join(dir, "second.sqlite"));
    procs.push(second);
    second.start();
    // ejabberd_service registers one route per authenticated connection: no conflict, no retry.
    await second.waitForEvent("connected");
    expect(second.events().find((e) => e.event === "reconnect-scheduled")).to.not.exist;
    await second.kill("SIGTERM");
    expect(await ping()).to.equal(true);
    await first.kill("SIGTERM");
  });
});

describe("storage: migrations", () => {
  it("apply once and are idempotent on reopen", () => {
    const file = path.join(mkdtempSync(path.join(os.tmpdir(), "cardlink-mig-")), "m.sqlite");
    const db1 = openDatabase(file);
    const r1 = migrate(db1);
    expect(r1.applied.length).to.be.greaterThan(0);
    expect(r1.applied).to.deep.equal([...r1.applied].sort((a, b) => a - b));
    db1.close();
    const db2 = openDatabase(file);
    const r2 = migrate(db2);
    expect(r2.applied).to.deep.equal([]);
    expect(r2.current).to.equal(r1.current);
    const rows = db2.prepare("SELECT COUNT(*) AS n FROM schema_migrations").get() as { n: number };
    expect(rows.n).to.equal(r1.applied.length);
    expect(db2.pragma("journal_mode", { simple: true })).to.equal("wal");
    db2.close();
  });

  it("refuse a database from a newer cardlink", () => {
    const db = openDatabase(":memory:");
    migrate(db);
    db.prepare("INSERT INTO schema_migrations (version, name, applied_at) VALUES (99999, 'future', 0)").run();
    expect(() => migrate(db)).to.throw(/newer/);
    db.close();
  });
});
