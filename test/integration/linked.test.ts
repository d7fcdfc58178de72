/**
 * Linked accounts (issue 11; PROTOCOL.md §22) with a real Prosody serving two VirtualHosts — `localhost` without
 * privileges and `second.localhost` where mod_privilege (prosody-modules) grants cardlink XEP-0356 pubsub IQ set —,
 * real @xmpp/client clients on both, and the HTTPS webhook stand-in as a non-XMPP service. With
 * LINKED_CAPTURE=FILE the requests, answers and notices are written to FILE (PROTOCOL.md's examples).
 *
 * alice@localhost and bob@second.localhost are one person; carol (localhost) is someone else.
 */
import { expect } from "chai";
import { writeFileSync } from "node:fs";
import type { Cardlink } from "../../component/runtime/app.js";
import * as inspect from "../../component/runtime/inspect.js";
import { NS } from "../../stanzas/ns.js";
import { startInProcess, testConfig } from "../harness/cardlink.js";
import { cardClient, type CardClient } from "../harness/cardclient.js";
import { connectClient, errorOf, xml, type Element, type TestClient } from "../harness/clients.js";
import { waitFor } from "../harness/ports.js";
import { ProsodyServer } from "../harness/prosody.js";
import { TEST_SECRET, WebhookStandin } from "../standins/webhook-standin.js";

const SECOND = "second.localhost";
/** A real 1×1 PNG (70 bytes); its SHA-1 is the avatar id every receiver computes. */
export const PNG_1X1 =
  "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==";

describe("linked accounts (real Prosody with two VirtualHosts and mod_privilege, real clients, webhook stand-in)", function () {
  this.timeout(90_000);
  const prosody = new ProsodyServer({ secondHost: { host: SECOND, privileged: true } });
  const chat = new WebhookStandin();
  const broken = new WebhookStandin();
  let app: Cardlink;
  let alice: CardClient;
  let bob: CardClient;
  let carol: CardClient;
  let bobPlain: TestClient;
  const captured: string[] = [];
  const A = "alice@localhost";
  const B = `bob@${SECOND}`;
  const C = "carol@localhost";

  before(async () => {
    await Promise.all([chat.start(), broken.start()]);
    await prosody.start();
    prosody.createUsers([
      { user: "alice", password: "alicepw" },
      { user: "carol", password: "carolpw" },
    ]);
    prosody.createUsers([{ user: "bob", password: "bobpw" }], SECOND);
    app = await startInProcess(
      testConfig(prosody, {
        servedHosts: ["localhost", SECOND],
        webhooks: {
          retryBaseMs: 100,
          retryMaxMs: 1000,
          maxAttempts: 3,
          connectors: [
            {
              name: "chat",
              url: chat.url,
              secret: TEST_SECRET,
              settings: ["nickname", "avatar"],
              caFile: chat.caFile,
            },
            { name: "broken", url: broken.url, secret: TEST_SECRET, caFile: broken.caFile },
          ],
        },
      }),
    );
    alice = await cardClient(prosody, "alice");
    bob = await cardClient(prosody, "bob", { domain: SECOND });
    carol = await cardClient(prosody, "carol");
    bobPlain = await connectClient({
      port: prosody.c2sPort,
      domain: SECOND,
      username: "bob",
      password: "bobpw",
      resource: "plain",
    });
  });
  after(async () => {
    for (const c of [alice, bob, carol, bobPlain]) await c?.stop();
    await app?.stop();
    await prosody.stop();
    prosody.cleanup();
    await chat.stop();
    await broken.stop();
    if (process.env.LINKED_CAPTURE) writeFileSync(process.env.LINKED_CAPTURE, captured.join("\n\n") + "\n");
  });

  /** One request in urn:cardlink:linked:0 and its raw answer, recorded for PROTOCOL.md. */
  async function ask(
    c: TestClient,
    type: "get" | "set",
    name: string,
    attrs: Record<string, string> = {},
    ...children: Element[]
  ): Promise<Element> {
    const payload = xml(name, { xmlns: NS.LINKED, ...attrs }, ...children);
    const reply = await c.iqRaw(type, prosody.componentDomain, payload);
    captured.push(`--- ${c.jid} ${type} ${name}\n${payload.toString()}\n${reply.toString()}`);
    return reply;
  }
  async function ok(
    c: TestClient,
    type: "get" | "set",
    name: string,
    attrs: Record<string, string> = {},
    ...children: Element[]
  ): Promise<Element> {
    const r = await ask(c, type, name, attrs, ...children);
    expect(r.attrs.type, `${name}: ${r.toString()}`).to.equal("result");
    return r;
  }
  async function refused(
    c: TestClient,
    condition: string,
    text: RegExp,
    name: string,
    attrs: Record<string, string> = {},
    ...children: Element[]
  ): Promise<void> {
    const r = await ask(c, "set", name, attrs, ...children);
    expect(r.attrs.type, r.toString()).to.equal("error");
    const e = errorOf(r);
    expect(e.condition, r.toString()).to.equal(condition);
    expect(e.text).to.match(text);
  }
  const accountsOf = (r: Element): string[] =>
    (r.getChild("links", NS.LINKED)?.getChildren("account") ?? []).map(
      (a) => a.attrs.jid ?? `${a.attrs.service}:${a.attrs.account}`,
    );

  /** Reads a node of the user's own PEP with a plain client (what any client of that account sees). */
  async function pepItem(c: TestClient, node: string): Promise<Element | undefined> {
    const r = await c.iqRaw(
      "get",
      c.jid.split("/")[0] as string,
      xml("pubsub", { xmlns: NS.PUBSUB }, xml("items", { node })),
    );
    if (r.attrs.type !== "result") return undefined;
    return r.getChild("pubsub", NS.PUBSUB)?.getChild("items")?.getChildren("item")[0];
  }
  const capture = (what: string, el: Element): void => void captured.push(`--- ${what}\n${el.toString()}`);

  it("links two XMPP accounts only with a request from one and an accept from the other", async () => {
    await refused(
      alice,
      "item-not-found",
      /no link request from bob@second\.localhost is waiting/,
      "link-accept",
      { jid: B, settings: "nickname" },
    );
    await refused(alice, "bad-request", /'mood' is not a setting/, "link-request", {
      jid: B,
      settings: "nickname mood",
    });
    await refused(alice, "bad-request", /cannot link itself/, "link-request", {
      jid: A,
      settings: "nickname",
    });
    const req = await ok(alice, "set", "link-request", { jid: B, settings: "nickname avatar status" });
    expect(req.getChild("link-request", NS.LINKED)?.attrs.expires).to.match(/^\d{4}-/);
    // bob's clients are told; carol, whom nobody asked, cannot accept.
    const notice = await bob.waitForUpdate((u) => u.kind === "link-request", "bob's link-request notice");
    capture(`update to ${B}`, notice.content);
    expect(notice.content.attrs).to.include({ jid: A, settings: "nickname avatar status" });
    await refused(carol, "item-not-found", /no link request from alice@localhost/, "link-accept", {
      jid: A,
      settings: "nickname",
    });
    // A link is nothing until accepted: alice's list shows only the request.
    const before = await ok(alice, "get", "links");
    expect(accountsOf(before)).to.deep.equal([]);
    expect(before.getChild("links", NS.LINKED)?.getChild("pending")?.attrs).to.include({
      jid: B,
      direction: "out",
    });
    const acc = await ok(bob, "set", "link-accept", { jid: A, settings: "nickname avatar status" });
    expect(accountsOf(acc)).to.deep.equal([B, A]);
    expect(accountsOf(await ok(alice, "get", "links"))).to.deep.equal([A, B]);
    const told = await alice.waitForUpdate((u) => u.kind === "links", "alice's links update");
    capture(`update to ${A}`, told.content);
    // A second accept finds nothing (the request was used).
    await refused(bob, "item-not-found", /no link request/, "link-accept", { jid: A, settings: "nickname" });
  });

  it("refuses an unsupported service with a clear error, and settings a service does not sync", async () => {
    await refused(
      alice,
      "feature-not-implemented",
      /service 'mastodon' is not supported here \(supported: chat, broken\)/,
      "link-service",
      { service: "mastodon", account: "ann", settings: "nickname" },
    );
    await refused(
      alice,
      "not-acceptable",
      /service 'chat' syncs nickname, avatar; not status/,
      "link-service",
      { service: "chat", account: "ann", settings: "nickname status" },
    );
  });

  it("a nickname and an avatar set on alice reach bob's PEP server-side (XEP-0356), checked by a plain client", async () => {
    const r = await ok(
      alice,
      "set",
      "profile-changed",
      { jid: A },
      xml("nickname", {}, "Alice Liddell"),
      xml("avatar", { type: "image/png" }, PNG_1X1),
    );
    expect(r.getChild("profile-changed", NS.LINKED)?.attrs.targets).to.equal("1");
    let nick: Element | undefined;
    await waitFor(
      async () =>
        (nick = await pepItem(bobPlain, NS.NICK))?.getChildText("nick", NS.NICK) === "Alice Liddell",
      "bob's PEP nick",
    );
    capture(`${B}'s PEP nick, read by a plain client`, nick as Element);
    // The avatar is published after the nickname (data, then metadata: XEP-0084 §4.3).
    let meta: Element | undefined;
    await waitFor(
      async () => (meta = await pepItem(bobPlain, NS.AVATAR_METADATA)) !== undefined,
      "bob's PEP avatar",
    );
    const info = meta?.getChild("metadata", NS.AVATAR_METADATA)?.getChild("info");
    const sha1 = (await import("node:crypto"))
      .createHash("sha1")
      .update(Buffer.from(PNG_1X1, "base64"))
      .digest("hex");
    expect(info?.attrs).to.deep.include({
      id: sha1,
      type: "image/png",
      bytes: "70",
      width: "1",
      height: "1",
    });
    expect(meta?.attrs.id).to.equal(sha1);
    const data = await pepItem(bobPlain, NS.AVATAR_DATA);
    expect(data?.attrs.id).to.equal(sha1);
    expect(data?.getChildText("data", NS.AVATAR_DATA)).to.equal(PNG_1X1); // the bytes as sent, not re-encoded
    // Applied server-side: bob's cardlink client got no nickname/avatar update to apply.
    expect(bob.updates.filter((u) => u.kind === "linked-profile")).to.deep.equal([]);
    expect(app.ctx.metrics.get("cardlink_linked_sync_total", { path: "pep", outcome: "applied" })).to.equal(
      1,
    );
  });

  it("status text (no PEP home) and changes to alice's host (no privilege granted) reach the clients as updates", async () => {
    await ok(alice, "set", "profile-changed", { jid: A }, xml("status", {}, "In Wonderland"));
    const st = await bob.waitForUpdate(
      (u) => u.kind === "linked-profile" && u.content.getChildText("status") === "In Wonderland",
      "bob's status update",
    );
    capture(`update to ${B}`, st.content);
    expect(st.content.attrs["from-jid"]).to.equal(A);
    await ok(bob, "set", "profile-changed", { jid: B }, xml("nickname", {}, "Bob the Builder"));
    const up = await alice.waitForUpdate(
      (u) => u.kind === "linked-profile" && u.content.getChildText("nickname") === "Bob the Builder",
      "alice's nickname update",
    );
    capture(`update to ${A}`, up.content);
    expect(up.content.attrs["from-jid"]).to.equal(B);
    await waitFor(
      () => app.ctx.metrics.get("cardlink_linked_sync_total", { path: "client", outcome: "fallback" }) === 1,
      "fallback counted",
    );
  });

  it("no loop: an account reporting the value cardlink applied to it propagates nothing", async () => {
    const jobsBefore = await inspect.jobCount(app.ctx.store, "linked-xmpp");
    // bob's client sees its PEP nick change (applied by cardlink) and reports it; alice's client applies the update
    // it got and reports it. Neither is a change: answered, nothing sent anywhere.
    const echoB = await ok(bob, "set", "profile-changed", { jid: B }, xml("nickname", {}, "Alice Liddell"));
    expect(echoB.getChild("profile-changed", NS.LINKED)?.attrs).to.include({
      targets: "0",
      unchanged: "nickname",
    });
    const echoA = await ok(
      alice,
      "set",
      "profile-changed",
      { jid: A },
      xml("nickname", {}, "Bob the Builder"),
    );
    expect(echoA.getChild("profile-changed", NS.LINKED)?.attrs).to.include({
      targets: "0",
      unchanged: "nickname",
    });
    expect(await inspect.jobCount(app.ctx.store, "linked-xmpp")).to.equal(jobsBefore);
    expect(await inspect.pendingCount(app.ctx.store, A)).to.equal(0);
    // The set's value stayed the last real change, and bob's PEP still holds what cardlink put there last.
    expect((await pepItem(bobPlain, NS.NICK))?.getChildText("nick", NS.NICK)).to.equal("Alice Liddell");
  });

  it("a service account is verified by its connector's one-time code, then gets signed sync webhooks", async () => {
    const r = await ok(alice, "set", "link-service", {
      service: "chat",
      account: "ann",
      settings: "nickname avatar",
    });
    expect(r.getChild("link-service", NS.LINKED)?.attrs).to.include({ service: "chat", account: "ann" });
    await chat.waitFor(
      (rs) => rs.some((x) => (x.body as { type?: string }).type === "linked.verify"),
      "verify webhook",
    );
    const verify = chat.requests.find((x) => (x.body as { type?: string }).type === "linked.verify");
    expect(verify?.verified).to.equal(true);
    captured.push(`--- webhook to chat\n${verify?.raw ?? ""}`);
    const data = (verify?.body as { data: { account: string; code: string } }).data;
    expect(data.account).to.equal("ann");
    expect(data.code).to.match(/^\d{6}$/);
    const wrong = data.code === "000000" ? "000001" : "000000";
    await refused(alice, "not-authorized", /wrong code/, "link-confirm", {
      service: "chat",
      account: "ann",
      code: wrong,
    });
    await refused(bob, "item-not-found", /no verification of chat account 'ann'/, "link-confirm", {
      service: "chat",
      account: "ann",
      code: data.code,
    });
    const done = await ok(alice, "set", "link-confirm", { service: "chat", account: "ann", code: data.code });
    expect(accountsOf(done)).to.deep.equal([A, B, "chat:ann"]);
    await ok(bob, "set", "profile-changed", { jid: B }, xml("nickname", {}, "Robert"));
    await chat.waitFor(
      (rs) => rs.some((x) => (x.body as { type?: string }).type === "linked.sync"),
      "sync webhook",
    );
    const sync = chat.requests.find((x) => (x.body as { type?: string }).type === "linked.sync");
    captured.push(`--- webhook to chat\n${sync?.raw ?? ""}`);
    expect(sync?.verified).to.equal(true);
    const body = sync?.body as {
      data: {
        account: string;
        changed: string[];
        changedOn: { jid: string };
        profile: { nickname: string; avatar: { id: string } };
      };
    };
    expect(body.data).to.deep.include({ account: "ann", changed: ["nickname"], changedOn: { jid: B } });
    expect(body.data.profile.nickname).to.equal("Robert");
    expect(body.data.profile.avatar.id).to.have.length(40);
    // alice's client gets it too (no privilege on localhost); bob's PEP keeps its own value (bob made the change).
    await alice.waitForUpdate(
      (u) => u.kind === "linked-profile" && u.content.getChildText("nickname") === "Robert",
      "alice gets Robert",
    );
  });

  it("a failing endpoint is retried, then dead-lettered; a replay delivers it with the same webhook-id", async () => {
    broken.always({ status: 503 });
    await ok(carol, "set", "link-service", { service: "broken", account: "cee", settings: "nickname" });
    await waitFor(
      async () => (await inspect.deadLetters(app.ctx.store, "webhook")).length === 1,
      "dead letter",
      30_000,
    );
    const [letter] = await inspect.deadLetters(app.ctx.store, "webhook");
    expect(letter).to.deep.include({
      kind: "linked.verify",
      target: "broken",
      attempts: 3,
      lastError: "HTTP 503: scripted 503",
      jid: C,
    });
    expect(broken.requests.map((x) => [x.id, x.status, x.verified])).to.deep.equal([
      [letter?.uid, 503, true],
      [letter?.uid, 503, true],
      [letter?.uid, 503, true],
    ]);
    broken.always({ status: 204 });
    expect(await app.rt.queue.replayDeadLetters({ ids: [letter?.id as number] })).to.equal(1);
    await broken.waitFor((rs) => rs.some((x) => x.status === 204), "replayed webhook");
    expect(broken.requests.at(-1)?.id).to.equal(letter?.uid);
    expect(await inspect.deadLetters(app.ctx.store, "webhook")).to.deep.equal([]);
  });

  it("unlink from either side stops propagation at once, pending sync messages included", async () => {
    const syncJobs = async (): Promise<number> =>
      Number(
        (
          await app.ctx.store.read("test.sync-jobs", (r) =>
            r.get<{ n: number }>("SELECT COUNT(*) AS n FROM jobs WHERE kind = 'linked.sync'"),
          )
        )?.n ?? 0,
      );
    // chat is down: a sync to ann waits an hour for its retry (Retry-After); unlinking ann deletes it with the link.
    chat.always({ status: 503, retryAfter: "3600" });
    const before = chat.requests.length;
    await ok(alice, "set", "profile-changed", { jid: A }, xml("nickname", {}, "Alice again"));
    await chat.waitFor((rs) => rs.length > before, "the failing sync attempt");
    await waitFor(async () => (await syncJobs()) === 1, "the sync waiting for its retry");
    chat.always({ status: 204 });
    const un = await ok(bob, "set", "unlink", { service: "chat", account: "ann" });
    expect(accountsOf(un)).to.deep.equal([B, A]);
    expect(await syncJobs()).to.equal(0);
    await chat
      .waitFor(
        (rs) => rs.some((x) => (x.body as { type?: string }).type === "linked.unlinked"),
        "unlinked webhook",
      )
      .catch(async (e: Error) => {
        const jobs = await app.ctx.store.read("t.dump", (r) => r.all("SELECT * FROM jobs"));
        const dead = await app.ctx.store.read("t.dump", (r) => r.all("SELECT * FROM dead_letters"));
        throw new Error(
          `${e.message}; jobs ${JSON.stringify(jobs)}; dead ${JSON.stringify(dead)}; requests ${JSON.stringify(chat.requests.slice(before).map((x) => [x.status, x.raw.slice(0, 40)]))}`,
        );
      });
    expect(chat.requests.slice(before).map((x) => (x.body as { type: string }).type)).to.deep.equal([
      "linked.sync",
      "linked.unlinked",
    ]);
    // bob got alice's change server-side meanwhile (nickname: PEP).
    await waitFor(
      async () => (await pepItem(bobPlain, NS.NICK))?.getChildText("nick", NS.NICK) === "Alice again",
      "bob's PEP",
    );
    // bob unlinks alice (the side that accepted): alice's next change has nowhere to go, bob's PEP stays.
    await ok(bob, "set", "unlink", { jid: A });
    await refused(
      alice,
      "item-not-found",
      /alice@localhost is not linked with you/,
      "profile-changed",
      { jid: A },
      xml("nickname", {}, "Alice alone"),
    );
    expect((await pepItem(bobPlain, NS.NICK))?.getChildText("nick", NS.NICK)).to.equal("Alice again");
    expect(accountsOf(await ok(alice, "get", "links"))).to.deep.equal([]);
    expect(await inspect.jobCount(app.ctx.store, "linked-xmpp")).to.equal(0);
  });
});
