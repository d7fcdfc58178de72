/**
 * Contact groups (issue 10, first part; PROTOCOL.md §21) with a real Prosody and real @xmpp/client clients:
 * create, invite, accept with cards reaching both sides, a card change reaching every member, leave with
 * tombstones (pull sync reports the removal), decline, withdraw, and one refusal of each kind. With
 * GROUPS_CAPTURE=FILE the requests, answers and notices are written to FILE (PROTOCOL.md's examples).
 */
import { expect } from "chai";
import { writeFileSync } from "node:fs";
import type { Cardlink } from "../../component/runtime/app.js";
import { NS } from "../../stanzas/ns.js";
import { startInProcess, testConfig } from "../harness/cardlink.js";
import { cardClient, cardSummary, email, tel, type CardClient } from "../harness/cardclient.js";
import { errorOf, xml, type Element } from "../harness/clients.js";
import { newXmppServer, serverLabel } from "../harness/server.js";

describe(`contact groups (${serverLabel()}, real clients)`, function () {
  this.timeout(60_000);
  const prosody = newXmppServer();
  let app: Cardlink;
  const clients: CardClient[] = [];
  const users = ["alice", "bob", "carol", "dave", "erin"];
  const captured: string[] = [];

  const connect = async (u: string): Promise<CardClient> => {
    const c = await cardClient(prosody, u, { resource: "phone" });
    clients.push(c);
    return c;
  };
  const jid = (u: string): string => `${u}@${prosody.host}`;
  /** One request and its raw answer, recorded for PROTOCOL.md. */
  async function ask(
    c: CardClient,
    type: "get" | "set",
    name: string,
    attrs: Record<string, string> = {},
    ...children: Element[]
  ): Promise<Element> {
    const reply = await c.cardlinkRaw(type, name, attrs, ...children);
    captured.push(
      `--- ${c.jid} ${type} ${name}\n${xml(name, { xmlns: NS.CARDLINK, ...attrs }, ...children).toString()}\n${reply.toString()}`,
    );
    return reply;
  }
  async function ok(
    c: CardClient,
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
    c: CardClient,
    condition: string,
    type: "get" | "set",
    name: string,
    attrs: Record<string, string> = {},
    ...children: Element[]
  ): Promise<void> {
    const r = await ask(c, type, name, attrs, ...children);
    expect(r.attrs.type).to.equal("error");
    const e = errorOf(r);
    expect(e.condition, e.text).to.equal(condition);
    expect(e.text).to.not.equal("");
  }
  const note = (what: string, u: { content: Element }): void => {
    captured.push(`--- notice ${what}\n${u.content.toString()}`);
  };

  before(async () => {
    await prosody.start();
    await prosody.createUsers(users.map((u) => ({ user: u, password: `${u}pw` })));
    app = await startInProcess(
      testConfig(prosody, {
        delivery: { ackTimeoutMs: 2000, retryBaseMs: 200, retryMaxMs: 1000, batchSize: 20 },
        groups: { maxMembers: 3 },
      }),
    );
  });
  after(async () => {
    for (const c of clients) await c.stop();
    await app?.stop();
    await prosody.stop();
    prosody.cleanup();
    if (process.env.GROUPS_CAPTURE) writeFileSync(process.env.GROUPS_CAPTURE, captured.join("\n\n") + "\n");
  });

  it("create, invite, accept: cards both ways; a card change reaches every member; leave leaves tombstones", async () => {
    const alice = await connect("alice");
    const bob = await connect("bob");
    const carol = await connect("carol");
    await alice.setCard("Alice Example", [
      tel("tel:+1-555-0100", "work"),
      email("alice@home.example", "home"),
    ]);
    await bob.setCard("Bob Example", [tel("tel:+1-555-0101", "cell")]);
    await carol.setCard("Carol Example");

    const created = await ok(
      alice,
      "set",
      "group-create",
      { name: "Climbing club", invite: "members" },
      xml("description", {}, "Tuesday evenings"),
    );
    const group = created.getChild("group", NS.CARDLINK) as Element;
    const g = String(group.attrs.id);
    expect(group.attrs).to.include({ role: "owner", owner: jid("alice"), members: "1", invite: "members" });

    const inv = (await ok(alice, "set", "group-invite", { group: g, jid: jid("bob") })).getChild(
      "group-invitation",
    );
    const invId = String(inv?.attrs.id);
    const notice = await bob.waitForUpdate((u) => u.kind === "group-invitation", "invitation at bob");
    note("group-invitation", notice);
    expect(notice.content.attrs).to.include({
      id: invId,
      group: g,
      from: jid("alice"),
      name: "Climbing club",
    });
    const listed = await ok(bob, "get", "group-invitations");
    expect(
      listed
        .getChild("group-invitations")
        ?.getChildren("group-invitation")
        .map((i) => i.attrs.id),
    ).to.deep.equal([invId]);

    // Bob shares only his tel with the group.
    const accepted = await ok(
      bob,
      "set",
      "group-accept",
      { id: invId },
      xml("share", {}, xml("field", {}, "tel")),
    );
    expect(accepted.getChild("group")?.attrs).to.include({ role: "member", members: "2" });
    const aliceAtBob = await bob.waitForUpdate(
      (u) => u.kind === "card" && u.content.attrs.owner === jid("alice"),
      "alice's card at bob",
    );
    expect(cardSummary(aliceAtBob.content).emails).to.deep.equal(["alice@home.example"]);
    const bobAtAlice = await alice.waitForUpdate(
      (u) => u.kind === "card" && u.content.attrs.owner === jid("bob"),
      "bob's card at alice",
    );
    expect(cardSummary(bobAtAlice.content).tels).to.deep.equal(["tel:+1-555-0101"]);
    const joined = await alice.waitForUpdate((u) => u.kind === "group-member", "bob joined, at alice");
    note("group-member", joined);
    expect(joined.content.attrs).to.include({ group: g, jid: jid("bob"), status: "joined" });

    // Bob (a member; invite=members) invites carol.
    const inv2 = (await ok(bob, "set", "group-invite", { group: g, jid: jid("carol") })).getChild(
      "group-invitation",
    );
    await carol.waitForUpdate((u) => u.kind === "group-invitation", "invitation at carol");
    await ok(carol, "set", "group-accept", { id: String(inv2?.attrs.id) });
    await carol.waitForUpdate(
      (u) => u.kind === "card" && u.content.attrs.owner === jid("alice"),
      "alice's card at carol",
    );
    await carol.waitForUpdate(
      (u) => u.kind === "card" && u.content.attrs.owner === jid("bob"),
      "bob's at carol",
    );
    await alice.waitForUpdate(
      (u) => u.kind === "card" && u.content.attrs.owner === jid("carol"),
      "carol's at alice",
    );

    const members = await ok(alice, "get", "group-members", { group: g });
    expect(
      members
        .getChild("group-members")
        ?.getChildren("member")
        .map((m) => [m.attrs.jid, m.attrs.role]),
    ).to.deep.equal([
      [jid("alice"), "owner"],
      [jid("bob"), "member"],
      [jid("carol"), "member"],
    ]);
    const mine = await ok(carol, "get", "groups");
    expect(
      mine
        .getChild("groups")
        ?.getChildren("group")
        .map((x) => x.attrs.id),
    ).to.deep.equal([g]);

    // Alice changes her card: both members get it.
    await alice.setCard("Alice Changed", [tel("tel:+1-555-0100", "work")]);
    for (const c of [bob, carol])
      await c.waitForUpdate(
        (u) => u.kind === "card" && cardSummary(u.content).fn === "Alice Changed",
        `alice's change at ${c.jid}`,
      );

    // Rename: every member gets the `group` notice.
    await ok(alice, "set", "group-update", { group: g, name: "Climbers" });
    const renamed = await carol.waitForUpdate(
      (u) => u.kind === "group" && u.content.attrs.name === "Climbers",
      "rename at carol",
    );
    note("group", renamed);

    // Carol leaves: alice and bob are told, and pull sync reports carol's card removed (tombstone).
    const tokenAtBob = String((await ok(bob, "get", "sync", { since: "0" })).getChild("sync")?.attrs.token);
    await ok(carol, "set", "group-leave", { group: g });
    const left = await bob.waitForUpdate(
      (u) => u.kind === "group-member" && u.content.attrs.status === "left",
      "carol left, at bob",
    );
    note("group-member left", left);
    expect(left.content.attrs.jid).to.equal(jid("carol"));
    const sync = (await ok(bob, "get", "sync", { since: tokenAtBob })).getChild("sync") as Element;
    captured.push(`--- bob's sync after carol left\n${sync.toString()}`);
    const removed = sync.getChildren("removed").map((r) => r.attrs.owner ?? r.attrs.jid);
    expect(removed).to.include(jid("carol"));
    const hidden = await ask(carol, "get", "card", { owner: jid("alice") });
    expect(errorOf(hidden).condition).to.equal("item-not-found");

    // Removal by the owner: dave joins, alice removes him; he gets group-gone.
    const dave = await connect("dave");
    const inv3 = (await ok(alice, "set", "group-invite", { group: g, jid: jid("dave") })).getChild(
      "group-invitation",
    );
    await ok(dave, "set", "group-accept", { id: String(inv3?.attrs.id) });
    await ok(alice, "set", "group-remove", { group: g, jid: jid("dave") });
    const gone = await dave.waitForUpdate((u) => u.kind === "group-gone", "group-gone at dave");
    note("group-gone", gone);
    expect(gone.content.attrs).to.include({ group: g, reason: "removed" });
  });

  it("decline and withdraw; a refusal of each kind, each with its text", async () => {
    const alice = clients.find((c) => c.jid.startsWith(jid("alice"))) ?? (await connect("alice"));
    const bob = clients.find((c) => c.jid.startsWith(jid("bob"))) ?? (await connect("bob"));
    const erin = await connect("erin");
    const g = String(
      (await ok(alice, "set", "group-create", { name: "Book club", invite: "owner" })).getChild("group")
        ?.attrs.id,
    );
    const i1 = String(
      (await ok(alice, "set", "group-invite", { group: g, jid: jid("erin") })).getChild("group-invitation")
        ?.attrs.id,
    );
    await erin.waitForUpdate(
      (u) => u.kind === "group-invitation" && u.content.attrs.id === i1,
      "invitation at erin",
    );
    await ok(erin, "set", "group-decline", { id: i1 });
    await refused(erin, "item-not-found", "set", "group-accept", { id: i1 });
    const i2 = String(
      (await ok(alice, "set", "group-invite", { group: g, jid: jid("erin") })).getChild("group-invitation")
        ?.attrs.id,
    );
    await ok(alice, "set", "group-withdraw", { id: i2 });
    await refused(erin, "item-not-found", "set", "group-accept", { id: i2 });
    const invites = await ok(erin, "get", "group-invitations");
    expect(invites.getChild("group-invitations")?.getChildren("group-invitation")).to.deep.equal([]);

    // Each kind of refusal.
    await refused(alice, "bad-request", "set", "group-create", { name: "   " });
    await refused(alice, "bad-request", "set", "group-invite", { group: g, jid: jid("alice") });
    await refused(alice, "not-acceptable", "set", "group-invite", {
      group: g,
      jid: "someone@elsewhere.example",
    });
    await refused(bob, "item-not-found", "get", "group-members", { group: g });
    const i3 = String(
      (await ok(alice, "set", "group-invite", { group: g, jid: jid("bob") })).getChild("group-invitation")
        ?.attrs.id,
    );
    await refused(alice, "conflict", "set", "group-invite", { group: g, jid: jid("bob") });
    await ok(bob, "set", "group-accept", { id: i3 });
    await refused(bob, "forbidden", "set", "group-invite", { group: g, jid: jid("erin") });
    await refused(bob, "forbidden", "set", "group-delete", { group: g });
    await refused(alice, "not-allowed", "set", "group-leave", { group: g });
    await ok(alice, "set", "group-update", { group: g, invite: "members" });
    await ok(alice, "set", "group-invite", { group: g, jid: jid("carol") });
    // maxMembers is 3 here: a third member's acceptance fits, a fourth invitation does not.
    const carol = clients.find((c) => c.jid.startsWith(jid("carol"))) as CardClient;
    const pend = await ok(carol, "get", "group-invitations");
    const i4 = String(
      pend
        .getChild("group-invitations")
        ?.getChildren("group-invitation")
        .find((x) => x.attrs.group === g)?.attrs.id,
    );
    await ok(carol, "set", "group-accept", { id: i4 });
    await refused(alice, "resource-constraint", "set", "group-invite", { group: g, jid: jid("erin") });
    await ok(alice, "set", "group-delete", { group: g });
    const gone = await bob.waitForUpdate(
      (u) => u.kind === "group-gone" && u.content.attrs.group === g,
      "group-gone (deleted) at bob",
    );
    note("group-gone deleted", gone);
    expect(gone.content.attrs.reason).to.equal("deleted");
  });

  it("exemptions: without withdraw changes stop; with withdraw the copy goes; lifting sends the card; only the exempter sees them", async () => {
    const alice = clients.find((c) => c.jid.startsWith(jid("alice"))) as CardClient;
    const bob = clients.find((c) => c.jid.startsWith(jid("bob"))) as CardClient;
    const carol = clients.find((c) => c.jid.startsWith(jid("carol"))) as CardClient;
    const g = String(
      (await ok(alice, "set", "group-create", { name: "Hikers", invite: "owner" })).getChild("group")?.attrs
        .id,
    );
    for (const u of [bob, carol]) {
      const i = (
        await ok(alice, "set", "group-invite", { group: g, jid: u.jid.split("/")[0] as string })
      ).getChild("group-invitation")?.attrs.id;
      await ok(u, "set", "group-accept", { id: String(i) });
    }
    await carol.waitForUpdate(
      (u) => u.kind === "card" && u.content.attrs.owner === jid("alice"),
      "alice's card at carol (Hikers)",
    );
    const tokenOf = async (c: CardClient): Promise<string> =>
      String((await ok(c, "get", "sync", { since: "0" })).getChild("sync")?.attrs.token);
    const bobToken = await tokenOf(bob);
    const carolToken = await tokenOf(carol);

    // Alice exempts bob (his copy stays) and carol (withdrawn).
    await ok(alice, "set", "group-exempt", { group: g, jid: jid("bob") });
    await ok(alice, "set", "group-exempt", { group: g, jid: jid("carol"), withdraw: "true" });
    const list = await ok(alice, "get", "group-exemptions");
    expect(
      list
        .getChild("group-exemptions")
        ?.getChildren("exempt")
        .map((x) => x.attrs.jid),
    ).to.deep.equal([jid("bob"), jid("carol")]);
    const bobsList = await ok(bob, "get", "group-exemptions");
    expect(bobsList.getChild("group-exemptions")?.getChildren("exempt")).to.deep.equal([]);
    const bobsMembers = await ok(bob, "get", "group-members", { group: g });
    expect(
      bobsMembers
        .getChild("group-members")
        ?.getChildren("member")
        .map((m) => Object.keys(m.attrs).sort()),
    ).to.deep.equal([
      ["jid", "joined", "role"],
      ["jid", "joined", "role"],
      ["jid", "joined", "role"],
    ]);

    await alice.setCard("Alice Exempting", [tel("tel:+1-555-0100", "work")]);
    const bobSync = (await ok(bob, "get", "sync", { since: bobToken })).getChild("sync") as Element;
    expect(bobSync.getChildren("card").map((c) => c.attrs.owner)).to.not.include(jid("alice"));
    expect(bobSync.getChildren("removed")).to.deep.equal([]);
    const carolSync = (await ok(carol, "get", "sync", { since: carolToken })).getChild("sync") as Element;
    captured.push(`--- carol's sync after alice exempted her with withdraw='true'\n${carolSync.toString()}`);
    expect(carolSync.getChildren("removed").map((r) => r.attrs.owner)).to.deep.equal([jid("alice")]);
    expect(errorOf(await ask(carol, "get", "card", { owner: jid("alice") })).condition).to.equal(
      "item-not-found",
    );

    // Refusals.
    await refused(alice, "conflict", "set", "group-exempt", { group: g, jid: jid("bob") });
    await refused(alice, "bad-request", "set", "group-exempt", { group: g, jid: jid("alice") });
    await refused(alice, "bad-request", "set", "group-exempt", {
      group: g,
      jid: jid("bob"),
      withdraw: "yes",
    });
    await refused(alice, "item-not-found", "set", "group-exempt", { group: g, jid: jid("erin") });
    await refused(alice, "item-not-found", "set", "group-unexempt", { jid: jid("erin") });

    // Lifting carol's: she gets alice's current card at once.
    await ok(alice, "set", "group-unexempt", { jid: jid("carol") });
    const back = await carol.waitForUpdate(
      (u) => u.kind === "card" && cardSummary(u.content).fn === "Alice Exempting",
      "alice's current card at carol after the exemption is lifted",
    );
    expect(back.content.attrs.owner).to.equal(jid("alice"));
    await ok(alice, "set", "group-unexempt", { jid: jid("bob") });
    await bob.waitForUpdate(
      (u) => u.kind === "card" && cardSummary(u.content).fn === "Alice Exempting",
      "alice's current card at bob after the exemption is lifted",
    );
    await ok(alice, "set", "group-delete", { group: g });
  });

  it("a member offline during a change gets it on login; pull: <group-sync/> with a token, the interval", async () => {
    const alice = clients.find((c) => c.jid.startsWith(jid("alice"))) as CardClient;
    let dave = clients.find((c) => c.jid.startsWith(jid("dave"))) as CardClient;
    const erin = clients.find((c) => c.jid.startsWith(jid("erin"))) as CardClient;
    await erin.setCard("Erin Example");
    await dave.setCard("Dave Example");
    const g = String(
      (await ok(alice, "set", "group-create", { name: "Runners", invite: "owner" })).getChild("group")?.attrs
        .id,
    );
    const invite = async (who: string): Promise<string> =>
      String(
        (await ok(alice, "set", "group-invite", { group: g, jid: jid(who) })).getChild("group-invitation")
          ?.attrs.id,
      );
    await ok(dave, "set", "group-accept", { id: await invite("dave") });
    const accepted = await ok(erin, "set", "group-accept", {
      id: await invite("erin"),
      delivery: "pull",
      interval: "3600",
    });
    expect(accepted.getChild("group")?.attrs).to.include({ delivery: "pull", interval: "3600" });
    await dave.waitForUpdate(
      (u) => u.kind === "card" && u.content.attrs.owner === jid("alice"),
      "alice's card at dave (Runners)",
    );

    // Dave goes offline; alice changes her card; dave logs in again and gets it.
    await dave.stop();
    clients.splice(clients.indexOf(dave), 1);
    await alice.setCard("Alice While Dave Was Away");
    dave = await connect("dave");
    await dave.waitForUpdate(
      (u) => u.kind === "card" && cardSummary(u.content).fn === "Alice While Dave Was Away",
      "alice's change at dave after login",
    );

    // Erin pulls: everything, then only what changed since the token.
    const first = (await ok(erin, "get", "group-sync", { group: g })).getChild("group-sync") as Element;
    expect(first.attrs.more).to.equal("false");
    expect(
      first
        .getChildren("card")
        .map((c) => c.attrs.owner)
        .sort(),
    ).to.deep.equal([jid("alice"), jid("dave")].sort());
    await alice.setCard("Alice Pulled", [tel("tel:+1-555-0100", "work")]);
    const next = await ok(erin, "get", "group-sync", { group: g, token: String(first.attrs.token) });
    const page = next.getChild("group-sync") as Element;
    expect(page.getChildren("card").map((c) => [c.attrs.owner, cardSummary(c).fn])).to.deep.equal([
      [jid("alice"), "Alice Pulled"],
    ]);
    await ok(alice, "set", "group-remove", { group: g, jid: jid("dave") });
    const after = (
      await ok(erin, "get", "group-sync", { group: g, token: String(page.attrs.token) })
    ).getChild("group-sync") as Element;
    expect(after.getChildren("removed").map((r) => r.attrs.owner)).to.deep.equal([jid("dave")]);
    // Erin pulls, so no card update was pushed to her for this group.
    expect(
      erin.updates.filter((u) => u.kind === "card" && u.content.attrs.owner === jid("alice")),
    ).to.deep.equal([]);
    await ok(erin, "set", "group-delivery", { group: g, delivery: "push" });
    await refused(erin, "bad-request", "set", "group-delivery", {
      group: g,
      delivery: "pull",
      interval: "5",
    });
    await refused(erin, "bad-request", "set", "group-delivery", { group: g, delivery: "sometimes" });
    await refused(dave, "item-not-found", "get", "group-sync", { group: g });
    await refused(erin, "bad-request", "get", "group-sync", { group: g, token: "x" });
    await ok(alice, "set", "group-delete", { group: g });
  });
});
