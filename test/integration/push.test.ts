import { expect } from "chai";
import { mkdtempSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import type { Cardlink } from "../../component/runtime/app.js";
import { NS } from "../../stanzas/ns.js";
import { startInProcess, testConfig } from "../harness/cardlink.js";
import * as look from "../harness/look.js";
import { cardClient, cardSummary, type CardClient } from "../harness/cardclient.js";
import { connectClient, errorOf, xml } from "../harness/clients.js";
import { sleep, waitFor } from "../harness/ports.js";
import { newXmppServer, serverLabel } from "../harness/server.js";
import { start as startApns, type ApnsStandin } from "../standins/apns-standin.js";
import { installFcmRedirect, uninstallFcmRedirect } from "../standins/fcm-redirect.js";
import { FcmStandin } from "../standins/fcm-standin.js";

const TOPIC = "org.example.cardlink";
const hexToken = (n: number): string => n.toString(16).padStart(64, "0");

describe(`push: APNs for offline iOS holders, and the XEP-0357 app server (${serverLabel()}: mod_cloud_notify / mod_push)`, function () {
  this.timeout(90_000);
  // Prosody's mod_cloud_notify or ejabberd's mod_push (test/harness/ejabberd.ts loads it) publishes to cardlink.
  const prosody = newXmppServer();
  let apns: ApnsStandin;
  let fcm: FcmStandin;
  let app: Cardlink;
  let alice: CardClient;
  const dbDir = mkdtempSync(path.join(os.tmpdir(), "cardlink-push-"));
  const jid = (u: string): string => `${u}@${prosody.host}`;

  const pushConfig = (): object => ({
    push: {
      retryBaseMs: 200,
      retryMaxMs: 2000,
      // bob's device gets one alert per card change in this suite; the hourly budget is not what is tested here.
      perDeviceHourlyBudget: 100,
      apns: {
        production: false,
        address: apns.address,
        port: apns.port,
        ca: apns.caPath,
        token: { key: apns.tokenKeyPath, keyId: apns.keyId, teamId: apns.teamId },
        defaultTopic: TOPIC,
        requestTimeoutMs: 3000,
      },
      // The production setting: only the service-account file. The test reaches the stand-in through the
      // seam in test/standins/fcm-redirect.ts (docs/PUSH-FCM.md).
      fcm: { serviceAccount: fcm.serviceAccountPath, requestTimeoutMs: 5000 },
    },
  });
  const config = () => testConfig(prosody, pushConfig(), path.join(dbDir, "cardlink.sqlite"));

  before(async () => {
    apns = await startApns();
    fcm = await new FcmStandin().start();
    installFcmRedirect({ host: fcm.host, port: fcm.port, ca: fcm.caPem });
    await prosody.start();
    await prosody.createUsers(
      ["alice", "bob", "carol", "dave", "erin", "frank", "gina", "hank", "ivan", "judy", "kate"].map((u) => ({
        user: u,
        password: `${u}pw`,
      })),
    );
    app = await startInProcess(config());
    alice = await cardClient(prosody, "alice");
    await alice.setCard("Alice Secret-Name", []);
  });
  after(async () => {
    await alice?.stop();
    await app?.stop();
    await prosody.stop();
    prosody.cleanup();
    await apns?.stop();
    uninstallFcmRedirect();
    await fcm?.stop();
  });

  /** Binds alice with `user` (exchange code), registers an iOS device for `user`, then disconnects `user`. */
  const offlineIosHolder = async (user: string, token: string): Promise<void> => {
    const c = await cardClient(prosody, user);
    await c.cardlink(
      "set",
      "device",
      { id: `${user}-iphone`, platform: "ios" },
      xml("push", { token, topic: TOPIC }),
    );
    const code = String((await alice.cardlink("set", "exchange-code")).getChild("exchange-code")?.attrs.code);
    await c.cardlink("set", "redeem", { code });
    await c.waitForUpdate((u) => u.kind === "card", "card before going offline");
    await alice.waitForUpdate(
      (u) => u.kind === "binding" && u.content.attrs.peer === jid(user),
      "binding at alice",
    );
    await c.stop();
    await waitFor(
      async () => !(await look.resources(app)).some((r) => r.bare === jid(user)),
      `${user} offline`,
    );
  };

  it("offline iOS holder → exactly one APNs alert with the right headers and no card content", async () => {
    const token = hexToken(1);
    await offlineIosHolder("bob", token);
    const before = apns.requestsFor(token).length;
    await alice.setCard("Alice Secret-Name", [xml("note", {}, xml("text", {}, "v2"))]);
    await waitFor(() => apns.requestsFor(token).length > before, "APNs request", 15_000);
    await sleep(500);
    const reqs = apns.requestsFor(token).slice(before);
    expect(reqs).to.have.length(1);
    const r = reqs[0]!;
    expect(r.status).to.equal(200);
    expect(r.headers["apns-push-type"]).to.equal("alert");
    expect(r.headers["apns-priority"]).to.equal("10");
    expect(r.headers["apns-topic"]).to.equal(TOPIC);
    expect(r.headers["apns-collapse-id"]).to.be.a("string").and.not.equal("");
    expect(Number(r.headers["apns-expiration"])).to.be.greaterThan(Date.now() / 1000);
    const body = JSON.stringify(r.body);
    expect(body).to.not.include("Secret-Name");
    expect(body).to.not.include("alice");
    expect(body).to.not.include("@");
    expect(r.jwt?.claims.iss).to.equal(apns.teamId);
  });

  it("offline Android holder → FCM data message (no content), and the update itself arrives on next login", async () => {
    const token = "android-token-gina";
    const gina = await cardClient(prosody, "gina");
    await gina.cardlink("set", "device", { id: "gina-pixel", platform: "android" }, xml("push", { token }));
    const code = String((await alice.cardlink("set", "exchange-code")).getChild("exchange-code")?.attrs.code);
    await gina.cardlink("set", "redeem", { code });
    await gina.waitForUpdate((u) => u.kind === "card", "card before going offline");
    await gina.stop();
    await waitFor(
      async () => !(await look.resources(app)).some((r) => r.bare === jid("gina")),
      "gina offline",
    );
    await alice.setCard("Alice Secret-Name", [xml("note", {}, xml("text", {}, "for gina"))]);
    await waitFor(() => fcm.fcmRequests.some((r) => r.token === token), "FCM request", 15_000);
    await sleep(300);
    const reqs = fcm.fcmRequests.filter((r) => r.token === token);
    expect(reqs).to.have.length(1);
    const msg = (reqs[0]!.body as { message: Record<string, unknown> }).message;
    expect(msg.notification).to.equal(undefined); // data-only wake-up
    const android = msg.android as { priority?: string; collapse_key?: string; ttl?: string };
    expect(android.priority?.toLowerCase()).to.equal("normal");
    expect(android.collapse_key).to.be.a("string");
    expect(JSON.stringify(msg)).to.not.include("Secret-Name");
    expect(JSON.stringify(msg)).to.not.include("alice");
    expect(fcm.tokenRequests.length).to.be.at.least(1); // real OAuth2 token exchange with the service account
    const back = await cardClient(prosody, "gina");
    const u = await back.waitForUpdate(
      (x) => x.kind === "card" && cardSummary(x.content).fn === "Alice Secret-Name",
      "update on login",
    );
    expect(u.content.getChild("vcard", NS.VCARD4)?.getChild("note")?.getChildText("text")).to.equal(
      "for gina",
    );
    await back.stop();
  });

  it("each change announces only itself: a second owner's update does not re-announce the first", async () => {
    const token = hexToken(11);
    await offlineIosHolder("ivan", token); // bound to alice
    const judy = await cardClient(prosody, "judy");
    await judy.setCard("Judy", []);
    // ivan is offline: bind him to judy in the store, as an exchange made earlier would have.
    await look.seedBind(
      app,
      { id: "b-ivan-judy", a: jid("ivan"), b: jid("judy"), aDevices: [], bDevices: [], via: "code" },
      Date.now(),
    );
    const before = apns.requestsFor(token).length;
    await alice.setCard("Alice Secret-Name", [xml("note", {}, xml("text", {}, "for ivan 1"))]);
    await waitFor(() => apns.requestsFor(token).length === before + 1, "push for alice's change");
    await judy.setCard("Judy v2", []);
    await waitFor(() => apns.requestsFor(token).length === before + 2, "push for judy's change");
    await sleep(500);
    const reqs = apns.requestsFor(token).slice(before);
    expect(reqs).to.have.length(2);
    // Two different cards: two different collapse ids (one pending notice per card per device).
    expect(reqs[0]!.headers["apns-collapse-id"]).to.not.equal(reqs[1]!.headers["apns-collapse-id"]);
    await judy.stop();
  });

  it("an update request to an offline user wakes the device like a card update (PROTOCOL §20.14)", async () => {
    const token = hexToken(13);
    const kate = await cardClient(prosody, "kate");
    await kate.cardlink(
      "set",
      "device",
      { id: "kate-iphone", platform: "ios" },
      xml("push", { token, topic: TOPIC }),
    );
    await kate.stop();
    await waitFor(
      async () => !(await look.resources(app)).some((r) => r.bare === jid("kate")),
      "kate offline",
    );
    const entry = await alice.iq(
      "set",
      alice.comp,
      xml(
        "entry",
        { xmlns: NS.BOOK },
        xml("vcard", { xmlns: NS.VCARD4 }, xml("fn", {}, xml("text", {}, "Kate"))),
      ),
    );
    const id = String(entry.getChild("entry", NS.BOOK)?.attrs.id);
    const made = await alice.iq(
      "set",
      alice.comp,
      xml("update-request", { xmlns: NS.BOOK_REQUEST, entry: id, jid: jid("kate") }),
    );
    await waitFor(() => apns.requestsFor(token).length > 0, "APNs wake-up for the update request", 15_000);
    await sleep(500);
    const reqs = apns.requestsFor(token);
    expect(reqs).to.have.length(1);
    expect(JSON.stringify(reqs[0]!.body)).to.not.include("alice").and.not.include("Kate");
    const back = await cardClient(prosody, "kate");
    const u = await back.waitForUpdate((x) => x.kind === "update-request", "the notice on login");
    expect(u.content.attrs.id).to.equal(made.getChild("update-request", NS.BOOK_REQUEST)?.attrs.id);
    await back.stop();
  });

  it("online holder → no push; the update itself arrives", async () => {
    const token = hexToken(2);
    const carol = await cardClient(prosody, "carol");
    await carol.cardlink(
      "set",
      "device",
      { id: "carol-iphone", platform: "ios" },
      xml("push", { token, topic: TOPIC }),
    );
    const code = String((await alice.cardlink("set", "exchange-code")).getChild("exchange-code")?.attrs.code);
    await carol.cardlink("set", "redeem", { code });
    await alice.setCard("Alice Secret-Name", [xml("note", {}, xml("text", {}, "v3"))]);
    await carol.waitForUpdate(
      (u) => u.kind === "card" && cardSummary(u.content).fn !== "",
      "update at online carol",
    );
    await sleep(800);
    expect(apns.requestsFor(token)).to.have.length(0);
    await carol.stop();
  });

  it("410 Unregistered → token marked dead, no further pushes to it; other devices untouched", async () => {
    const dead = hexToken(3);
    const alive = hexToken(4);
    const dave = await cardClient(prosody, "dave");
    await dave.cardlink(
      "set",
      "device",
      { id: "dave-old", platform: "ios" },
      xml("push", { token: dead, topic: TOPIC }),
    );
    await dave.cardlink(
      "set",
      "device",
      { id: "dave-new", platform: "ios" },
      xml("push", { token: alive, topic: TOPIC }),
    );
    const code = String((await alice.cardlink("set", "exchange-code")).getChild("exchange-code")?.attrs.code);
    await dave.cardlink("set", "redeem", { code });
    await dave.waitForUpdate((u) => u.kind === "card", "card");
    await dave.stop();
    await waitFor(
      async () => !(await look.resources(app)).some((r) => r.bare === jid("dave")),
      "dave offline",
    );
    apns.reply(dead, { status: 410, reason: "Unregistered", timestamp: Date.now() });
    await alice.setCard("Alice Secret-Name", [xml("note", {}, xml("text", {}, "v4"))]);
    await waitFor(
      async () => (await look.device(app, jid("dave"), "dave-old"))?.tokenState === "invalid",
      "token invalidated",
    );
    expect((await look.device(app, jid("dave"), "dave-new"))?.tokenState).to.equal("ok");
    await waitFor(() => apns.requestsFor(alive).length === 1, "push to the live device");
    await alice.setCard("Alice Secret-Name", [xml("note", {}, xml("text", {}, "v5"))]);
    await waitFor(() => apns.requestsFor(alive).length === 2, "second push to the live device");
    expect(apns.requestsFor(dead)).to.have.length(1);
  });

  it("429 with Retry-After → retried later, once", async () => {
    const token = hexToken(5);
    await offlineIosHolder("erin", token);
    apns.reply(token, { status: 429, reason: "TooManyRequests", retryAfterSec: 1 }, 1);
    const t0 = Date.now();
    await alice.setCard("Alice Secret-Name", [xml("note", {}, xml("text", {}, "v6"))]);
    await waitFor(
      () => apns.requestsFor(token).filter((r) => r.status === 200).length === 1,
      "retried push",
      15_000,
    );
    const reqs = apns.requestsFor(token);
    expect(reqs.map((r) => r.status)).to.deep.equal([429, 200]);
    // Retry-After (1 s) was honoured: the retry came no sooner.
    expect((reqs[1] as { time: number }).time - (reqs[0] as { time: number }).time).to.be.at.least(900);
    expect(reqs[0]!.time).to.be.at.least(t0);
    await sleep(500);
    expect(apns.requestsFor(token)).to.have.length(2);
  });

  it("cardlink restarted with pushes queued → each sent once", async () => {
    const token = hexToken(1); // bob, offline since the first test
    apns.reply(token, { status: 503, reason: "ServiceUnavailable" });
    const before = apns.requestsFor(token).length;
    await alice.setCard("Alice Secret-Name", [xml("note", {}, xml("text", {}, "v7"))]);
    await waitFor(() => apns.requestsFor(token).length > before, "first failing attempt");
    await app.stop();
    expect(await countQueued()).to.equal(1);
    apns.reply(token, { status: 200 });
    const okBefore = apns.requestsFor(token).filter((r) => r.status === 200).length;
    app = await startInProcess(config());
    alice = await cardClient(prosody, "alice", { resource: "phone2" });
    await waitFor(
      () => apns.requestsFor(token).filter((r) => r.status === 200).length === okBefore + 1,
      "sent after restart",
      15_000,
    );
    await sleep(1000);
    expect(apns.requestsFor(token).filter((r) => r.status === 200).length).to.equal(okBefore + 1);
    expect(await look.pushCount(app)).to.equal(0);
  });

  const countQueued = (): Promise<number> => look.pushCountAt(path.join(dbDir, "cardlink.sqlite"));

  it("XEP-0357 app server: the server's push module publishes for a disconnected client, APNs gets the notice", async () => {
    const token = hexToken(9);
    const carol = await connectClient({
      port: prosody.c2sPort,
      domain: prosody.host,
      username: "carol",
      password: "carolpw",
      resource: "mobile",
    });
    const comp = prosody.componentDomain;
    await carol.iq(
      "set",
      comp,
      xml(
        "device",
        { xmlns: NS.CARDLINK, id: "carol-ios", platform: "ios" },
        xml("push", { token, topic: TOPIC }),
      ),
    );
    const reg = (
      await carol.iq("set", comp, xml("push-node", { xmlns: NS.CARDLINK, device: "carol-ios" }))
    ).getChild("push-node")!;
    const info = (await carol.iq("get", comp, xml("query", { xmlns: NS.DISCO_INFO }))).getChild("query")!;
    expect(info.getChildren("feature").map((f) => f.attrs.var)).to.include(NS.PUSH);
    expect(info.getChildren("identity").map((i) => `${i.attrs.category}/${i.attrs.type}`)).to.include(
      "pubsub/push",
    );
    expect(reg.attrs.jid).to.equal(comp);
    await carol.iq(
      "set",
      `carol@${prosody.host}`,
      xml(
        "enable",
        { xmlns: NS.PUSH, jid: comp, node: String(reg.attrs.node) },
        xml(
          "x",
          { xmlns: NS.DATA, type: "submit" },
          xml("field", { var: "FORM_TYPE" }, xml("value", {}, NS.PUBSUB_PUBLISH_OPTIONS)),
          xml("field", { var: "secret" }, xml("value", {}, String(reg.attrs.secret))),
        ),
      ),
    );
    // Drop the TCP connection without closing the stream, as a phone going out of coverage does.
    (carol.xmpp.socket as { destroy(): void }).destroy();
    // Prosody must notice the drop (the session then hibernates under XEP-0198) before the message comes.
    await sleep(1500);
    const dave = await connectClient({
      port: prosody.c2sPort,
      domain: prosody.host,
      username: "dave",
      password: "davepw",
    });
    await dave.xmpp.send(
      xml("message", { to: `carol@${prosody.host}`, type: "chat" }, xml("body", {}, "top secret message")),
    );
    await waitFor(() => apns.requestsFor(token).length >= 1, "APNs notice via mod_cloud_notify", 20_000);
    const r = apns.requestsFor(token)[0]!;
    expect(r.headers["apns-push-type"]).to.equal("alert");
    expect(JSON.stringify(r.body)).to.not.include("top secret");
    expect(JSON.stringify(r.body)).to.not.include("dave");
    await dave.stop();
  });

  it("removing a device removes its push node", async () => {
    const frank = await cardClient(prosody, "frank", { resource: "rm" });
    const token = hexToken(12);
    await frank.cardlink(
      "set",
      "device",
      { id: "frank-old", platform: "ios" },
      xml("push", { token, topic: TOPIC }),
    );
    const node = (await frank.cardlink("set", "push-node", { device: "frank-old" })).getChild("push-node")!;
    expect(await look.pushNode(app, String(node.attrs.node))).to.not.equal(undefined);
    await frank.cardlink("set", "remove-device", { id: "frank-old" });
    expect(await look.pushNode(app, String(node.attrs.node))).to.equal(undefined);
    expect(errorOf(await frank.cardlinkRaw("set", "push-node", { device: "frank-old" })).condition).to.equal(
      "item-not-found",
    );
    await frank.stop();
  });

  it("app server errors through the server's push module: wrong secret → forbidden, unknown node → item-not-found", async () => {
    const token = hexToken(10);
    const comp = prosody.componentDomain;
    const metric = (cond: string): number =>
      app.ctx.metrics.get("cardlink_iq_total", { ns: NS.PUBSUB, name: "pubsub", type: "set", outcome: cond });
    const enable = async (user: string, node: string, secret: string): Promise<void> => {
      const c = await connectClient({
        port: prosody.c2sPort,
        domain: prosody.host,
        username: user,
        password: `${user}pw`,
        resource: "m",
      });
      await c.iq(
        "set",
        comp,
        xml(
          "device",
          { xmlns: NS.CARDLINK, id: `${user}-x`, platform: "ios" },
          xml("push", { token, topic: TOPIC }),
        ),
      );
      const reg = (
        await c.iq("set", comp, xml("push-node", { xmlns: NS.CARDLINK, device: `${user}-x` }))
      ).getChild("push-node")!;
      await c.iq(
        "set",
        `${user}@${prosody.host}`,
        xml(
          "enable",
          { xmlns: NS.PUSH, jid: comp, node: node || String(reg.attrs.node) },
          xml(
            "x",
            { xmlns: NS.DATA, type: "submit" },
            xml("field", { var: "FORM_TYPE" }, xml("value", {}, NS.PUBSUB_PUBLISH_OPTIONS)),
            xml("field", { var: "secret" }, xml("value", {}, secret || String(reg.attrs.secret))),
          ),
        ),
      );
      (c.xmpp.socket as { destroy(): void }).destroy();
      // Prosody must have noticed the dropped connection, or the message is delivered instead of pushed.
      await sleep(1000);
    };
    const forbiddenBefore = metric("forbidden");
    const notFoundBefore = metric("item-not-found");
    // frank and hank hold no cards: nothing but these publishes could push to their token.
    await enable("frank", "", "wrong-secret");
    await enable("hank", "no-such-node", "whatever");
    const sender = await connectClient({
      port: prosody.c2sPort,
      domain: prosody.host,
      username: "alice",
      password: "alicepw",
      resource: "chat",
    });
    await sender.xmpp.send(
      xml("message", { to: `frank@${prosody.host}`, type: "chat" }, xml("body", {}, "hi")),
    );
    await sender.xmpp.send(
      xml("message", { to: `hank@${prosody.host}`, type: "chat" }, xml("body", {}, "hi")),
    );
    await waitFor(
      () => metric("forbidden") > forbiddenBefore && metric("item-not-found") > notFoundBefore,
      "both refusals",
    );
    expect(apns.requestsFor(token)).to.have.length(0);
    // A user cannot publish to the app server directly.
    const e = errorOf(
      await sender.iqRaw(
        "set",
        comp,
        xml("pubsub", { xmlns: NS.PUBSUB }, xml("publish", { node: "x" }, xml("item"))),
      ),
    );
    expect(e.condition).to.equal("forbidden");
    await sender.stop();
  });
});
