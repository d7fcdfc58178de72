import { expect } from "chai";
import type { Cardlink } from "../../component/runtime/app.js";
import { NS } from "../../stanzas/ns.js";
import { startInProcess, testConfig } from "../harness/cardlink.js";
import * as look from "../harness/look.js";
import { cardClient, cardSummary, email, tel, vcard, type CardClient } from "../harness/cardclient.js";
import { errorOf, xml } from "../harness/clients.js";
import { sleep, waitFor } from "../harness/ports.js";
import { newXmppServer, serverLabel } from "../harness/server.js";

describe(`cards, exchange and bindings (${serverLabel()}, real clients)`, function () {
  this.timeout(60_000);
  const prosody = newXmppServer();
  let app: Cardlink;
  const clients: CardClient[] = [];
  const users = ["alice", "bob", "carol", "dave", "erin", "frank", "mallory"];

  const connect = async (u: string, resource = "phone", presence = true): Promise<CardClient> => {
    const c = await cardClient(prosody, u, { resource, presence });
    clients.push(c);
    return c;
  };
  const jid = (u: string): string => `${u}@${prosody.host}`;

  before(async () => {
    await prosody.start();
    await prosody.createUsers(users.map((u) => ({ user: u, password: `${u}pw` })));
    app = await startInProcess(
      testConfig(prosody, {
        delivery: { ackTimeoutMs: 2000, retryBaseMs: 200, retryMaxMs: 1000, batchSize: 20 },
      }),
    );
  });
  after(async () => {
    for (const c of clients) await c.stop();
    await app?.stop();
    await prosody.stop();
    prosody.cleanup();
  });

  it("exchange by JID: request, accept; both get the binding and each other's card", async () => {
    const alice = await connect("alice");
    const bob = await connect("bob");
    await alice.cardlink("set", "device", { id: "alice-iphone", platform: "ios" });
    await bob.cardlink("set", "device", { id: "bob-pixel", platform: "android" });
    await alice.setCard("Alice Example", [tel("tel:+1-555-0100", "work")]);
    await bob.setCard("Bob Example");
    const req = await alice.cardlink("set", "exchange-request", { to: jid("bob"), device: "alice-iphone" });
    const id = String(req.getChild("exchange-request")?.attrs.id);
    const notice = await bob.waitForUpdate((u) => u.kind === "exchange-request", "request notice at bob");
    expect(notice.content.attrs.from).to.equal(jid("alice"));
    expect(notice.content.attrs.id).to.equal(id);
    const pending = await bob.cardlink("get", "exchange-requests");
    expect(
      pending
        .getChild("exchange-requests")
        ?.getChildren("exchange-request")
        .map((r) => r.attrs.id),
    ).to.deep.equal([id]);
    const ans = await bob.cardlink("set", "exchange-answer", { id, accept: "true", device: "bob-pixel" });
    const binding = ans.getChild("binding");
    expect(binding?.attrs.peer).to.equal(jid("alice"));
    const devs = binding
      ?.getChildren("devices")
      .map((d) => [d.attrs.jid, d.getChildren("device").map((x) => x.attrs.id)]);
    expect(devs).to.deep.include.members([
      [jid("alice"), ["alice-iphone"]],
      [jid("bob"), ["bob-pixel"]],
    ]);
    const aCard = await bob.waitForUpdate(
      (u) => u.kind === "card" && u.content.attrs.owner === jid("alice"),
      "alice's card at bob",
    );
    expect(cardSummary(aCard.content).fn).to.equal("Alice Example");
    const bCard = await alice.waitForUpdate(
      (u) => u.kind === "card" && u.content.attrs.owner === jid("bob"),
      "bob's card at alice",
    );
    expect(cardSummary(bCard.content).fn).to.equal("Bob Example");
    await alice.waitForUpdate(
      (u) => u.kind === "binding" && u.content.attrs.peer === jid("bob"),
      "binding at alice",
    );
    await bob.waitForUpdate(
      (u) => u.kind === "binding" && u.content.attrs.peer === jid("alice"),
      "binding at bob",
    );
  });

  it("exchange by one-time code; a used code cannot be used again", async () => {
    const carol = await connect("carol");
    const dave = await connect("dave");
    await carol.setCard("Carol");
    const r = await carol.cardlink("set", "exchange-code", { device: "carol-1" });
    const code = String(r.getChild("exchange-code")?.attrs.code);
    expect(code).to.match(/^[A-Z2-9]{5}-[A-Z2-9]{5}$/);
    const red = await dave.cardlink("set", "redeem", { code: code.toLowerCase().replace("-", " ") });
    expect(red.getChild("binding")?.attrs.peer).to.equal(jid("carol"));
    const got = await dave.waitForUpdate(
      (u) => u.kind === "card" && u.content.attrs.owner === jid("carol"),
      "carol's card at dave",
    );
    expect(cardSummary(got.content).fn).to.equal("Carol");
    await carol.waitForUpdate((u) => u.kind === "binding", "binding at carol");
    const again = errorOf(await (await connect("erin")).cardlinkRaw("set", "redeem", { code }));
    expect(again.condition).to.equal("item-not-found");
  });

  it("an update reaches an online holder on every connected resource", async () => {
    const alice = clients[0] as CardClient;
    const bobTablet = await connect("bob", "tablet");
    // The tablet's presence and alice's update travel on different c2s streams: wait until cardlink knows it.
    await waitFor(
      async () => (await look.resources(app)).some((r) => r.full === bobTablet.jid),
      "tablet known",
    );
    await alice.setCard("Alice Example", [tel("tel:+1-555-0199", "work")]);
    const bobPhone = clients[1] as CardClient;
    for (const c of [bobPhone, bobTablet]) {
      const u = await c.waitForUpdate(
        (x) => x.kind === "card" && cardSummary(x.content).tels.includes("tel:+1-555-0199"),
        `new tel at ${c.jid}`,
      );
      expect(u.to).to.equal(c.jid);
    }
  });

  it("setting an unchanged card is a no-op that notifies nobody", async () => {
    const alice = clients[0] as CardClient;
    const bob = clients[1] as CardClient;
    const before = bob.updates.length;
    const r = await alice.setCard("Alice Example", [tel("tel:+1-555-0199", "work")]);
    expect(r.getChild("card")?.attrs.changed).to.equal("false");
    await sleep(500);
    expect(bob.updates.length).to.equal(before);
  });

  it("an offline holder gets every pending update, newest version only, on next login", async () => {
    const carol = clients.find((c) => c.jid.startsWith("carol")) as CardClient;
    const dave = clients.find((c) => c.jid.startsWith("dave")) as CardClient;
    await dave.stop();
    await waitFor(
      async () => !(await look.resources(app)).some((r) => r.bare === jid("dave")),
      "dave offline at cardlink",
    );
    for (let i = 1; i <= 5; i++) await carol.setCard(`Carol v${i}`);
    expect(await look.pendingCount(app, jid("dave"))).to.equal(1); // coalesced
    const dave2 = await connect("dave", "phone");
    const u = await dave2.waitForUpdate((x) => x.kind === "card", "pending card at dave");
    expect(cardSummary(u.content).fn).to.equal("Carol v5");
    await sleep(300);
    expect(dave2.updates.filter((x) => x.kind === "card")).to.have.length(1);
    await waitFor(async () => (await look.pendingCount(app, jid("dave"))) === 0, "outbox emptied after ack");
  });

  it("an unacknowledged update stays in the outbox and is retried with the same id", async () => {
    const carol = clients.find((c) => c.jid.startsWith("carol")) as CardClient;
    const dave = clients.filter((c) => c.jid.startsWith("dave")).pop() as CardClient;
    dave.setAck("ignore");
    await carol.setCard("Carol unacked");
    await sleep(2500); // > ackTimeoutMs: the first attempt timed out
    expect(await look.pendingCount(app, jid("dave"))).to.equal(1);
    dave.setAck("ack");
    const u = await dave.waitForUpdate(
      (x) => x.kind === "card" && cardSummary(x.content).fn === "Carol unacked",
      "retried update",
    );
    expect(u.id).to.match(/^card:carol@/);
    await waitFor(async () => (await look.pendingCount(app, jid("dave"))) === 0, "acked after retry");
  });

  it("sharing control: work-only hides fields, and withdrawing a field updates the holder's copy", async () => {
    const alice = clients[0] as CardClient;
    const bob = clients[1] as CardClient;
    await alice.setCard("Alice Example", [
      tel("tel:+1-555-0100", "work"),
      tel("tel:+1-555-0111", "home"),
      email("a@home.example", "home"),
    ]);
    await bob.waitForUpdate(
      (u) => u.kind === "card" && cardSummary(u.content).tels.length === 2,
      "full card at bob",
    );
    await alice.cardlink("set", "share", { holder: jid("bob") }, xml("type", {}, "work"));
    const w = await bob.waitForUpdate(
      (u) => u.kind === "card" && cardSummary(u.content).tels.length === 1,
      "work-only card at bob",
    );
    expect(cardSummary(w.content).tels).to.deep.equal(["tel:+1-555-0100"]);
    expect(cardSummary(w.content).emails).to.deep.equal([]);
    const direct = await bob.cardlink("get", "card", { owner: jid("alice") });
    expect(cardSummary(direct.getChild("card")!).tels).to.deep.equal(["tel:+1-555-0100"]);
    // Withdraw telephone numbers entirely: only fn is left.
    await alice.cardlink(
      "set",
      "share",
      { holder: jid("bob") },
      xml("field", {}, "fn"),
      xml("field", {}, "email"),
    );
    await bob.waitForUpdate(
      (u) => u.kind === "card" && cardSummary(u.content).tels.length === 0,
      "tel withdrawn at bob",
    );
  });

  it("pull sync returns changes since a token, and a new token", async () => {
    const bob = clients[1] as CardClient;
    const first = (await bob.cardlink("get", "sync", { since: "0" })).getChild("sync")!;
    const owners = first.getChildren("card").map((c) => c.attrs.owner);
    expect(owners).to.include(jid("alice"));
    const token = String(first.attrs.token);
    const none = (await bob.cardlink("get", "sync", { since: token })).getChild("sync")!;
    expect(none.getChildren("card")).to.have.length(0);
    await (clients[0] as CardClient).setCard("Alice Renamed");
    const next = (await bob.cardlink("get", "sync", { since: token })).getChild("sync")!;
    expect(next.getChildren("card").map((c) => cardSummary(c).fn)).to.deep.equal(["Alice Renamed"]);
    expect(Number(next.attrs.token)).to.be.greaterThan(Number(token));
  });

  it("unbind: the other side is told, and can no longer read the card", async () => {
    const carol = clients.find((c) => c.jid.startsWith("carol")) as CardClient;
    const dave = clients.filter((c) => c.jid.startsWith("dave")).pop() as CardClient;
    await dave.cardlink("set", "unbind", { peer: jid("carol") });
    const u = await carol.waitForUpdate((x) => x.kind === "unbound", "unbound at carol");
    expect(u.content.attrs.peer).to.equal(jid("dave"));
    const e = errorOf(await dave.cardlinkRaw("get", "card", { owner: jid("carol") }));
    expect(e.condition).to.equal("item-not-found");
    const sync = (await carol.cardlink("get", "sync", { since: "0" })).getChild("sync")!;
    expect(sync.getChildren("removed").map((r) => r.attrs.owner)).to.include(jid("dave"));
  });

  it("bad requests get their errors, with text", async () => {
    const erin = clients.find((c) => c.jid.startsWith("erin")) as CardClient;
    const cases: Array<
      [string, "get" | "set", string, Record<string, string>, ReturnType<typeof xml>[], string]
    > = [
      ["self exchange", "set", "exchange-request", { to: jid("erin") }, [], "bad-request"],
      ["malformed jid", "set", "exchange-request", { to: "not a jid" }, [], "jid-malformed"],
      ["remote domain", "set", "exchange-request", { to: "x@elsewhere.example" }, [], "not-acceptable"],
      ["missing to", "set", "exchange-request", {}, [], "bad-request"],
      ["bad code", "set", "redeem", { code: "!!" }, [], "bad-request"],
      ["unknown code", "set", "redeem", { code: "ABCDE-FGHJK" }, [], "item-not-found"],
      ["unknown request", "set", "exchange-answer", { id: "nope", accept: "true" }, [], "item-not-found"],
      ["bad accept", "set", "exchange-answer", { id: "x", accept: "maybe" }, [], "bad-request"],
      ["card without vcard", "set", "card", {}, [], "bad-request"],
      ["card without fn", "set", "card", {}, [xml("vcard", { xmlns: NS.VCARD4 })], "bad-request"],
      ["bad format", "set", "card", { format: "pdf" }, [], "bad-request"],
      ["bad device id", "set", "device", { id: "has space" }, [], "bad-request"],
      ["bad platform", "set", "device", { id: "d1", platform: "palm" }, [], "bad-request"],
      [
        "unknown share field",
        "set",
        "share",
        { holder: jid("bob") },
        [xml("field", {}, "ssn")],
        "bad-request",
      ],
      ["share with non-holder", "set", "share", { holder: jid("bob") }, [], "item-not-found"],
      ["unbind stranger", "set", "unbind", { peer: jid("bob") }, [], "item-not-found"],
      ["remove unknown device", "set", "remove-device", { id: "nope" }, [], "item-not-found"],
      ["bad sync token", "get", "sync", { since: "-1" }, [], "bad-request"],
      ["unknown element", "set", "frobnicate", {}, [], "feature-not-implemented"],
    ];
    for (const [what, type, name, attrs, kids, cond] of cases) {
      const e = errorOf(await erin.cardlinkRaw(type, name, attrs, ...kids));
      expect(e.condition, what).to.equal(cond);
      expect(e.text, `${what} has a text`).to.not.equal("");
    }
    // Oversized card: a photo over the photo limit.
    const big = xml("photo", {}, xml("uri", {}, "data:image/png;base64," + "A".repeat(80 * 1024)));
    const e = errorOf(await erin.cardlinkRaw("set", "card", {}, vcard("Erin", big)));
    expect(e.condition).to.equal("bad-request");
    expect(e.text).to.match(/photo/);
    // Nothing was written by any of the refused requests.
    expect(await look.card(app, jid("erin"))).to.equal(undefined);
  });

  it("duplicate requests, requests to a user who blocked you, and duplicate bindings are refused", async () => {
    const erin = clients.find((c) => c.jid.startsWith("erin")) as CardClient;
    const frank = await connect("frank");
    const mallory = await connect("mallory");
    await erin.cardlink("set", "exchange-request", { to: jid("frank") });
    expect(
      errorOf(await erin.cardlinkRaw("set", "exchange-request", { to: jid("frank") })).condition,
    ).to.equal("conflict");
    expect(
      errorOf(await frank.cardlinkRaw("set", "exchange-request", { to: jid("erin") })).condition,
    ).to.equal("conflict");
    await frank.cardlink("set", "block", { jid: jid("mallory") });
    const blocked = errorOf(await mallory.cardlinkRaw("set", "exchange-request", { to: jid("frank") }));
    expect(blocked.condition).to.equal("forbidden");
    const bob = clients[1] as CardClient;
    expect(
      errorOf(await bob.cardlinkRaw("set", "exchange-request", { to: jid("alice") })).condition,
    ).to.equal("conflict");
    // Decline: the requester is told.
    const pending = (await frank.cardlink("get", "exchange-requests")).getChild("exchange-requests")!;
    const id = String(pending.getChildren("exchange-request")[0]?.attrs.id);
    await frank.cardlink("set", "exchange-answer", { id, accept: "false" });
    const d = await erin.waitForUpdate((u) => u.kind === "exchange-declined", "decline notice at erin");
    expect(d.content.attrs.by).to.equal(jid("frank"));
  });

  it("expired codes and expired requests are refused with gone, and leave nothing behind", async () => {
    const erin = clients.find((c) => c.jid.startsWith("erin")) as CardClient;
    const past = Date.now() - 1000;
    await look.seedCode(app, {
      code: "ZZZZZ-22222",
      owner: jid("mallory"),
      createdAt: past - 60_000,
      expiresAt: past,
    });
    const e = errorOf(await erin.cardlinkRaw("set", "redeem", { code: "ZZZZZ-22222" }));
    expect(e.condition).to.equal("gone");
    expect(e.text).to.match(/expired/);
    expect(await look.binding(app, jid("erin"), jid("mallory"))).to.equal(undefined);
    await look.seedRequest(app, {
      id: "old-request",
      from: jid("mallory"),
      to: jid("erin"),
      createdAt: past - 60_000,
      expiresAt: past,
    });
    const r = errorOf(
      await erin.cardlinkRaw("set", "exchange-answer", { id: "old-request", accept: "true" }),
    );
    expect(r.condition).to.equal("gone");
    expect(await look.request(app, "old-request")).to.equal(undefined);
    expect(await look.binding(app, jid("erin"), jid("mallory"))).to.equal(undefined);
  });

  it("a refused redeem does not use up the code; a withdrawn request disappears; outgoing requests are listed", async () => {
    const erin = clients.find((c) => c.jid.startsWith("erin")) as CardClient;
    const mallory = clients.find((c) => c.jid.startsWith("mallory")) as CardClient;
    const code = String((await erin.cardlink("set", "exchange-code")).getChild("exchange-code")?.attrs.code);
    expect(errorOf(await erin.cardlinkRaw("set", "redeem", { code })).condition).to.equal("bad-request"); // own code
    expect(await look.code(app, code)).to.not.equal(undefined);
    const req = await mallory.cardlink("set", "exchange-request", { to: jid("erin") });
    const id = String(req.getChild("exchange-request")?.attrs.id);
    const out = (await mallory.cardlink("get", "exchange-requests", { direction: "outgoing" })).getChild(
      "exchange-requests",
    )!;
    expect(out.getChildren("exchange-request").map((r) => [r.attrs.id, r.attrs.to])).to.deep.equal([
      [id, jid("erin")],
    ]);
    expect(errorOf(await erin.cardlinkRaw("set", "exchange-cancel", { id })).condition).to.equal(
      "item-not-found",
    );
    await mallory.cardlink("set", "exchange-cancel", { id });
    const incoming = (await erin.cardlink("get", "exchange-requests")).getChild("exchange-requests")!;
    expect(incoming.getChildren("exchange-request").map((r) => r.attrs.id)).to.not.include(id);
    expect(
      errorOf(await erin.cardlinkRaw("set", "exchange-answer", { id, accept: "true" })).condition,
    ).to.equal("item-not-found");
    const bad = errorOf(await mallory.cardlinkRaw("get", "exchange-requests", { direction: "sideways" }));
    expect(bad.condition).to.equal("bad-request");
  });

  it("push registration needs a configured provider (this suite has none) and a phone", async () => {
    const erin = clients.find((c) => c.jid.startsWith("erin")) as CardClient;
    await erin.cardlink(
      "set",
      "device",
      { id: "erin-phone", platform: "ios" },
      xml("push", { token: "f".repeat(64), topic: "org.example.app" }),
    );
    const e = errorOf(await erin.cardlinkRaw("set", "push-node", { device: "erin-phone" }));
    expect(e.condition).to.equal("feature-not-implemented");
    expect(e.text).to.match(/no push provider for ios/);
    await erin.cardlink("set", "device", { id: "erin-desk", platform: "other" });
    expect(errorOf(await erin.cardlinkRaw("set", "push-node", { device: "erin-desk" })).condition).to.equal(
      "not-acceptable",
    );
    const info = (await erin.iq("get", erin.comp, xml("query", { xmlns: NS.DISCO_INFO }))).getChild("query")!;
    expect(info.getChildren("feature").map((f) => f.attrs.var)).to.not.include(NS.PUSH);
  });

  it("a user can never read or change another user's card or bindings without an exchange", async () => {
    const mallory = clients.find((c) => c.jid.startsWith("mallory")) as CardClient;
    expect(errorOf(await mallory.cardlinkRaw("get", "card", { owner: jid("alice") })).condition).to.equal(
      "item-not-found",
    );
    expect(
      errorOf(await mallory.cardlinkRaw("set", "card", { owner: jid("alice") }, vcard("Evil"))).condition,
    ).to.equal("forbidden");
    const contacts = (await mallory.cardlink("get", "contacts")).getChild("contacts")!;
    expect(contacts.getChildren("contact")).to.have.length(0);
    expect(errorOf(await mallory.cardlinkRaw("set", "unbind", { peer: jid("alice") })).condition).to.equal(
      "item-not-found",
    );
    expect(errorOf(await mallory.cardlinkRaw("set", "share", { holder: jid("bob") })).condition).to.equal(
      "item-not-found",
    );
    const sync = (await mallory.cardlink("get", "sync", { since: "0" })).getChild("sync")!;
    expect(sync.getChildren("card")).to.have.length(0);
    const alice = clients[0] as CardClient;
    const mine = (await alice.cardlink("get", "card")).getChild("card")!;
    expect(cardSummary(mine).fn).to.equal("Alice Renamed");
  });
});
