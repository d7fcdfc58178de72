/**
 * Identifier change (issue 12; PROTOCOL.md §23) with a real Prosody, real @xmpp/client clients, a slixmpp holder,
 * a local verification connector (test/standins/verifier-standin.ts, real HTTP) and local webhook receivers (real
 * HTTPS, Standard Webhooks signatures checked by the stand-in's own code):
 *
 * - phone numbers proven by a code; wrong codes spend attempts; an expired code is refused; the per-user cap;
 * - a JID move refused without the old account's offer, then offered by the old JID and accepted by the new one:
 *   the binding, the group (ownership included) and another user's book entry move, holders and co-members are
 *   told (`moved` + the card under the new JID), the slixmpp holder too; the old JID is held;
 * - a recycled phone number: held for the cooldown, refused to another account during it, free after it;
 * - registered services: synced (deduplicated), classified by type rule and by provider list, confirmed with the
 *   XEP-0004 form with one item deselected, providers called through the webhook channel (one failing once and
 *   retried, one refusing), results recorded, the manual list returned with contact details and marked done.
 *
 * With IDENTITY_CAPTURE=FILE the requests, answers and notices are written to FILE (PROTOCOL.md's examples).
 */
import { expect } from "chai";
import { execFile } from "node:child_process";
import { writeFileSync } from "node:fs";
import { promisify } from "node:util";
import type { Cardlink } from "../../component/runtime/app.js";
import { NS } from "../../stanzas/ns.js";
import { SERVICES_FORM_TYPE } from "../../stanzas/identity.js";
import { startInProcess, testConfig } from "../harness/cardlink.js";
import { cardClient, type CardClient } from "../harness/cardclient.js";
import { errorOf, xml, type Element } from "../harness/clients.js";
import * as look from "../harness/look.js";
import { sleep, waitFor } from "../harness/ports.js";
import { newXmppServer } from "../harness/server.js";
import { VerifierStandin } from "../standins/verifier-standin.js";
import { TEST_SECRET, WebhookStandin } from "../standins/webhook-standin.js";

const run = promisify(execFile);
const PYTHON = "/usr/bin/python3";
const COOLDOWN_S = 4;

describe("identifier change: verification, moves, cooldown, registered services (real clients)", function () {
  this.timeout(120_000);
  const prosody = newXmppServer();
  const verifier = new VerifierStandin();
  const hooks = new WebhookStandin(); // chatco, shopco
  const flaky = new WebhookStandin(); // forumco: fails once
  const refusing = new WebhookStandin(); // gameco: 403
  let app: Cardlink;
  const clients: CardClient[] = [];
  const captured: string[] = [];
  const users = ["alice", "alice2", "bob", "carol", "dave", "erin", "frank"];
  const jid = (u: string): string => `${u}@${prosody.host}`;

  const connect = async (u: string): Promise<CardClient> => {
    const c = await cardClient(prosody, u, { resource: "phone" });
    clients.push(c);
    return c;
  };
  async function ask(
    c: CardClient,
    type: "get" | "set",
    name: string,
    attrs: Record<string, string> = {},
    ...children: Element[]
  ) {
    const req = xml(name, { xmlns: NS.IDENTITY, ...attrs }, ...children);
    const reply = await c.iqRaw(type, c.comp, req);
    captured.push(`--- ${c.jid} ${type} ${name}\n${req.toString()}\n${reply.toString()}`);
    return reply;
  }
  async function ok(
    c: CardClient,
    type: "get" | "set",
    name: string,
    attrs: Record<string, string> = {},
    ...children: Element[]
  ) {
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
  ): Promise<string> {
    const r = await ask(c, type, name, attrs, ...children);
    expect(r.attrs.type, r.toString()).to.equal("error");
    const e = errorOf(r);
    expect(e.condition, e.text).to.equal(condition);
    expect(e.text).to.not.equal("");
    return e.text;
  }
  const note = (what: string, el: Element): void =>
    void captured.push(`--- notice ${what}\n${el.toString()}`);
  /** Proves `number` for `c` through the stand-in, as a person reading the SMS would. */
  async function proveTel(c: CardClient, number: string): Promise<void> {
    await ok(c, "set", "add-identifier", { kind: "tel", value: number });
    await ok(c, "set", "verify-identifier", { kind: "tel", value: number, code: verifier.codeFor(number) });
  }
  const connector = (name: string, s: WebhookStandin) => ({
    name,
    url: `${s.url}/${name}`,
    secret: TEST_SECRET,
    caFile: s.caFile,
  });

  before(async () => {
    await prosody.start();
    await prosody.createUsers(users.map((u) => ({ user: u, password: `${u}pw` })));
    await verifier.start();
    await hooks.start();
    await flaky.start();
    await refusing.start();
    app = await startInProcess(
      testConfig(prosody, {
        delivery: { ackTimeoutMs: 2000, retryBaseMs: 200, retryMaxMs: 1000, batchSize: 20 },
        identity: {
          verifierUrl: verifier.url,
          verifierToken: verifier.token,
          cooldownSeconds: COOLDOWN_S,
          maxIdentifiers: 3,
          codeAttempts: 3,
          serviceRules: [
            { remark: "payment", mode: "manual" },
            { remark: "forum", mode: "automatic" },
          ],
          providers: [
            { name: "Example Bank", automatic: false, contact: "+49 30 1234 (hotline)" },
            { name: "chatco", automatic: true, connector: "chatco" },
            { name: "shopco", automatic: true, connector: "shopco", contact: "support@shop.example" },
            { name: "forumco", automatic: false, connector: "forumco" },
            { name: "gameco", automatic: true, connector: "gameco", contact: "help@game.example" },
          ],
        },
        webhooks: {
          retryBaseMs: 200,
          retryMaxMs: 1000,
          maxAttempts: 4,
          connectors: [
            connector("chatco", hooks),
            connector("shopco", hooks),
            connector("forumco", flaky),
            connector("gameco", refusing),
          ],
        },
        queue: { pollMs: 200 },
      }),
    );
  });
  after(async () => {
    for (const c of clients) await c.stop();
    await app?.stop();
    await prosody.stop();
    prosody.cleanup();
    await verifier.stop();
    await hooks.stop();
    await flaky.stop();
    await refusing.stop();
    if (process.env.IDENTITY_CAPTURE)
      writeFileSync(process.env.IDENTITY_CAPTURE, captured.join("\n\n") + "\n");
  });

  it("a phone number is proven by a code: normalised, wrong codes spend attempts, expiry, the cap, a gateway down", async () => {
    const erin = await connect("erin");
    const added = await ok(erin, "set", "add-identifier", { kind: "tel", value: "+49 (170) 555-0101" });
    expect(added.getChild("add-identifier")?.attrs.value).to.equal("+491705550101");
    const sent = verifier.messages.at(-1);
    expect(sent).to.include({ kind: "tel", to: "+491705550101", purpose: "add", authorized: true });
    await refused(erin, "bad-request", "set", "add-identifier", { kind: "tel", value: "0170 5550101" });
    const wrong = sent?.code === "000000" ? "111111" : "000000";
    expect(
      await refused(erin, "not-authorized", "set", "verify-identifier", {
        kind: "tel",
        value: "+491705550101",
        code: wrong,
      }),
    ).to.match(/2 attempts left/);
    const listed = await ok(erin, "get", "identifiers");
    const pending = listed
      .getChild("identifiers")
      ?.getChildren("identifier")
      .find((i) => i.attrs.state === "pending");
    expect(pending?.attrs).to.include({ kind: "tel", value: "+491705550101", "attempts-left": "2" });
    await refused(erin, "not-authorized", "set", "verify-identifier", {
      kind: "tel",
      value: "+491705550101",
      code: wrong,
    });
    expect(
      await refused(erin, "not-authorized", "set", "verify-identifier", {
        kind: "tel",
        value: "+491705550101",
        code: wrong,
      }),
    ).to.match(/no attempts left/);
    // The right code no longer helps: the verification was dropped with the last attempt.
    await refused(erin, "item-not-found", "set", "verify-identifier", {
      kind: "tel",
      value: "+491705550101",
      code: String(sent?.code),
    });
    // An expired code is refused (its expiry moved into the past, as the clock would).
    await ok(erin, "set", "add-identifier", { kind: "tel", value: "+491705550101" });
    await app.ctx.store.tx("test.expire", (tx) =>
      tx.run("UPDATE identity_codes SET expires_at = 1 WHERE value = '+491705550101'"),
    );
    await refused(erin, "item-not-found", "set", "verify-identifier", {
      kind: "tel",
      value: "+491705550101",
      code: verifier.codeFor("+491705550101"),
    });
    await proveTel(erin, "+491705550101");
    const mine = await ok(erin, "get", "identifiers");
    expect(
      mine
        .getChild("identifiers")
        ?.getChildren("identifier")
        .map((i) => `${i.attrs.kind}:${i.attrs.value}:${i.attrs.state}`),
    ).to.deep.equal([`jid:${jid("erin")}:active`, "tel:+491705550101:active"]);
    await refused(erin, "conflict", "set", "add-identifier", { kind: "tel", value: "+491705550101" });
    // The gateway is down: the request is answered 'wait' and no verification is left open.
    verifier.failNext(1);
    const r = await ask(erin, "set", "add-identifier", { kind: "email", value: "Erin@Example.org" });
    expect(errorOf(r)).to.include({ condition: "service-unavailable", type: "wait" });
    const after = await ok(erin, "get", "identifiers");
    expect(
      after
        .getChild("identifiers")
        ?.getChildren("identifier")
        .some((i) => i.attrs.state === "pending"),
    ).to.equal(false);
    // Per-user cap (identity.maxIdentifiers = 3 phone numbers and e-mail addresses).
    await ok(erin, "set", "add-identifier", { kind: "email", value: "Erin@Example.org" });
    await ok(erin, "set", "verify-identifier", {
      kind: "email",
      value: "erin@example.org",
      code: verifier.codeFor("erin@example.org"),
    });
    await proveTel(erin, "+491705550102");
    expect(
      await refused(erin, "resource-constraint", "set", "add-identifier", {
        kind: "tel",
        value: "+491705550103",
      }),
    ).to.match(/3 phone numbers/);
  });

  it("a JID move: refused without the old account's offer; confirmed, it moves bindings, groups and book entries and tells holders (one of them slixmpp)", async () => {
    const alice = await connect("alice");
    const bob = await connect("bob");
    const dave = await connect("dave");
    await alice.setCard("Alice Mover");
    // bob holds alice's card and keeps a book entry following it.
    const code1 = String(
      (await alice.cardlink("set", "exchange-code")).getChild("exchange-code")?.attrs.code,
    );
    await bob.cardlink("set", "redeem", { code: code1 });
    await waitFor(
      async () => (await look.holders(app, jid("alice"))).includes(jid("bob")),
      "bob holds alice",
    );
    const entry = await bob.iq("set", bob.comp, xml("entry", { xmlns: NS.BOOK, link: jid("alice") }));
    const entryId = String(entry.getChild("entry")?.attrs.id);
    // carol (slixmpp) holds alice's card too, and stays online waiting for the move.
    const code2 = String(
      (await alice.cardlink("set", "exchange-code")).getChild("exchange-code")?.attrs.code,
    );
    const holder = run(PYTHON, [
      "test/slixmpp/moveholder.py",
      `carol@${prosody.host}/slix`,
      "carolpw",
      String(prosody.c2sPort),
      prosody.componentDomain,
      code2,
      jid("alice2"),
    ]);
    await waitFor(
      async () => (await look.holders(app, jid("alice"))).includes(jid("carol")),
      "carol holds alice",
    );
    // dave is an admin of alice's group.
    const g = String(
      (await alice.cardlink("set", "group-create", { name: "Movers" })).getChild("group")?.attrs.id,
    );
    await alice.cardlink("set", "group-invite", { group: g, jid: jid("dave") });
    const inv = await dave.waitForUpdate((u) => u.kind === "group-invitation", "dave invited");
    await dave.cardlink("set", "group-accept", { id: String(inv.content.attrs.id) });
    await alice.cardlink("set", "group-role", { group: g, jid: jid("dave"), role: "admin" });

    // The new JID logs in, but the old account has not vouched for it: refused, nothing moves.
    const alice2 = await connect("alice2");
    expect(await refused(alice2, "not-authorized", "set", "move-accept", { from: jid("alice") })).to.match(
      /has not confirmed/,
    );
    // Nor may anyone else's offer be taken: erin offers a move to alice2, alice2 names alice.
    const erin = await connect("erin");
    await ok(erin, "set", "move", { kind: "jid", to: jid("alice2") });
    await refused(alice2, "not-authorized", "set", "move-accept", { from: jid("alice") });
    await ok(erin, "set", "move-withdraw", { kind: "jid" });
    expect(await look.holders(app, jid("alice"))).to.have.members([jid("bob"), jid("carol")]);

    // The old account offers (XEP-0283: the old one vouches), the new one accepts.
    const offer = await ok(alice, "set", "move", { kind: "jid", to: jid("alice2") });
    expect(offer.getChild("move")?.attrs).to.include({
      state: "offered",
      from: jid("alice"),
      to: jid("alice2"),
    });
    const done = await ok(alice2, "set", "move-accept", { from: jid("alice") });
    expect(done.getChild("move")?.attrs).to.include({ state: "done", from: jid("alice"), to: jid("alice2") });

    // Bindings moved: bob and carol hold alice2's card; the old JID holds nothing.
    expect(await look.holders(app, jid("alice2"))).to.have.members([jid("bob"), jid("carol")]);
    // The old JID no longer resolves: its identifier row is held (still naming the account, so nobody claims it).
    const rows = await app.ctx.store.read("test.ids", (r) =>
      r.all<{ value: string; state: string; is_primary: number }>(
        "SELECT value, state, is_primary FROM identifiers WHERE kind = 'jid' AND value IN (:a, :b) ORDER BY value",
        { a: jid("alice"), b: jid("alice2") },
      ),
    );
    expect(rows.map((x) => `${x.value}:${x.state}:${Number(x.is_primary)}`)).to.have.members([
      `${jid("alice")}:held:0`,
      `${jid("alice2")}:active:1`,
    ]);
    // bob is told: the moved notice and the card under the new JID; his book entry follows.
    const moved = await bob.waitForUpdate((u) => u.kind === "moved", "moved at bob");
    note("moved", moved.content);
    expect(moved.content.is("moved", NS.MOVED)).to.equal(true);
    expect(moved.content.getChildText("old-jid")).to.equal(jid("alice"));
    expect(moved.content.getChildText("new-jid")).to.equal(jid("alice2"));
    await bob.waitForUpdate(
      (u) => u.kind === "card" && u.content.attrs.owner === jid("alice2"),
      "card at bob",
    );
    const be = await bob.waitForUpdate(
      (u) => u.kind === "book-entry" && u.content.attrs.linked === jid("alice2"),
      "book entry relinked",
    );
    note("book-entry", be.content);
    const got = await bob.iq("get", bob.comp, xml("entry", { xmlns: NS.BOOK, id: entryId }));
    expect(got.getChild("entry")?.attrs.linked).to.equal(jid("alice2"));
    // dave (co-member) is told, and the group's owner is now alice2 with dave still admin.
    await dave.waitForUpdate((u) => u.kind === "moved", "moved at dave");
    const members = await dave.cardlink("get", "group-members", { group: g });
    const listed = (members.getChild("group-members")?.getChildren("member") ?? []).map(
      (m) => `${m.attrs.jid}:${m.attrs.role}`,
    );
    expect(listed).to.have.members([`${jid("alice2")}:owner`, `${jid("dave")}:admin`]);
    // The slixmpp holder saw the notice and the card under the new JID.
    const { stdout } = await holder;
    const r = JSON.parse(stdout.trim().split("\n").pop() as string) as {
      error?: string;
      moved?: { old: string; new: string };
      owners: string[];
    };
    expect(r.error, String(r.error)).to.equal(undefined);
    expect(r.moved).to.deep.equal({ old: jid("alice"), new: jid("alice2") });
    expect(r.owners).to.include(jid("alice2"));
    // The account is the same: alice2 reads the card alice wrote; the old JID is held.
    const card = await alice2.cardlink("get", "card");
    expect(card.toString()).to.contain("Alice Mover");
    const ids = await ok(alice2, "get", "identifiers");
    const held = ids
      .getChild("identifiers")
      ?.getChildren("identifier")
      .find((i) => i.attrs.value === jid("alice"));
    expect(held?.attrs.state).to.equal("held");
    // The old JID, still logged in, is held: a request that would need its account is refused, not crashed.
    const stale = await alice.iqRaw(
      "set",
      alice.comp,
      xml(
        "card",
        { xmlns: NS.CARDLINK },
        xml("vcard", { xmlns: NS.VCARD4 }, xml("fn", {}, xml("text", {}, "x"))),
      ),
    );
    expect(errorOf(stale).condition, stale.toString()).to.equal("forbidden");
    // The new JID had its own account with data? Refused: dave cannot move into bob (bob has a card).
    await bob.setCard("Bob");
    await ok(dave, "set", "move", { kind: "jid", to: jid("bob") });
    expect(await refused(bob, "conflict", "set", "move-accept", { from: jid("dave") })).to.match(
      /not merged/,
    );
  });

  it("a recycled phone number is held for the cooldown: no other account can claim it until it ends", async () => {
    const frank = await connect("frank");
    const bob = clients.find((c) => c.jid.startsWith(`${jid("bob")}/`)) as CardClient;
    await proveTel(frank, "+441632960001");
    const removed = await ok(frank, "set", "remove-identifier", { kind: "tel", value: "+441632960001" });
    const until = Date.parse(String(removed.getChild("remove-identifier")?.attrs["held-until"]));
    expect(until).to.be.greaterThan(Date.now());
    // The number's new owner (bob) proves it, and is refused while it is held.
    await ok(bob, "set", "add-identifier", { kind: "tel", value: "+441632960001" });
    expect(
      await refused(bob, "conflict", "set", "verify-identifier", {
        kind: "tel",
        value: "+441632960001",
        code: verifier.codeFor("+441632960001"),
      }),
    ).to.match(/held until/);
    while (Date.now() <= until) await sleep(250);
    await proveTel(bob, "+441632960001");
    const ids = await ok(bob, "get", "identifiers");
    expect(
      ids
        .getChild("identifiers")
        ?.getChildren("identifier")
        .map((i) => i.attrs.value),
    ).to.include("+441632960001");
    // frank's old hold is gone with the claim.
    const fids = await ok(frank, "get", "identifiers");
    expect(
      fids
        .getChild("identifiers")
        ?.getChildren("identifier")
        .map((i) => i.attrs.value),
    ).to.not.include("+441632960001");
  });

  it("a phone number move is confirmed by a code sent to the old number", async () => {
    const frank = clients.find((c) => c.jid.startsWith(`${jid("frank")}/`)) as CardClient;
    await proveTel(frank, "+441632960010");
    await proveTel(frank, "+441632960011");
    const m = await ok(frank, "set", "move", { kind: "tel", from: "+441632960010", to: "+441632960011" });
    const id = String(m.getChild("move")?.attrs.id);
    expect(m.getChild("move")?.attrs.state).to.equal("confirming");
    const done = await ok(frank, "set", "move-confirm", {
      id,
      code: verifier.codeFor("+441632960010", "move"),
    });
    expect(done.getChild("move")?.attrs.state).to.equal("done");
    const ids = await ok(frank, "get", "identifiers");
    const byValue = new Map(
      (ids.getChild("identifiers")?.getChildren("identifier") ?? []).map((i) => [
        i.attrs.value,
        i.attrs.state,
      ]),
    );
    expect(byValue.get("+441632960010")).to.equal("held");
    expect(byValue.get("+441632960011")).to.equal("active");
  });

  it("registered services: synced, classified, confirmed with a deselected item, providers called (one retried, one refusing), manual list", async () => {
    const frank = clients.find((c) => c.jid.startsWith(`${jid("frank")}/`)) as CardClient;
    const old = "+441632960011";
    const svc = (service: string, provider: string, remark = "") =>
      xml("service", {
        kind: "tel",
        identifier: old,
        service,
        provider,
        remark,
        received: "2026-12-01T10:00:00Z",
      });
    const synced = await ok(
      frank,
      "set",
      "services-sync",
      {},
      svc("Example Bank account", "Example Bank", "payment"),
      svc("Chat", "chatco", "social"),
      svc("Shop", "shopco"),
      svc("Forum", "forumco", "forum"),
      svc("Games", "gameco"),
      svc("Old newsletter", "mystery"),
    );
    expect(synced.getChild("services-sync")?.attrs).to.include({ added: "6", updated: "0" });
    // Deduplicated: the same message again adds nothing.
    const again = await ok(frank, "set", "services-sync", {}, svc("Chat", "chatco", "social"));
    expect(again.getChild("services-sync")?.attrs).to.include({ added: "0", updated: "0" });
    // Only the user's identifiers count.
    await refused(
      frank,
      "bad-request",
      "set",
      "services-sync",
      {},
      xml("service", { kind: "tel", identifier: "+15555550000", service: "X" }),
    );
    const listed = await ok(frank, "get", "services");
    expect(listed.getChild("services")?.getChildren("service")).to.have.length(6);
    // Deletable.
    await ok(frank, "set", "services-sync", {}, svc("Spam", "mystery"));
    const spam = (await ok(frank, "get", "services"))
      .getChild("services")
      ?.getChildren("service")
      .find((s) => s.attrs.service === "Spam");
    await ok(frank, "set", "remove-service", { id: String(spam?.attrs.id) });
    expect((await ok(frank, "get", "services")).getChild("services")?.getChildren("service")).to.have.length(
      6,
    );

    // The number changes: the update request classifies and asks for confirmation with a form.
    await proveTel(frank, "+441632960012");
    const up = await ok(frank, "set", "update-services", { kind: "tel", from: old, to: "+441632960012" });
    const u = up.getChild("update-services") as Element;
    const form = u.getChild("x", NS.DATA) as Element;
    const field = form.getChildren("field").find((f) => f.attrs.var === "automatic") as Element;
    const options = new Map(
      field.getChildren("option").map((o) => [String(o.attrs.label), String(o.getChildText("value"))]),
    );
    // By provider list: chatco, shopco, gameco; by type rule 'forum' (forumco itself is not on the automatic list).
    expect([...options.keys()]).to.have.members([
      "Chat (chatco)",
      "Shop (shopco)",
      "Forum (forumco)",
      "Games (gameco)",
    ]);
    const fixed = form
      .getChildren("field")
      .filter((f) => f.attrs.type === "fixed")
      .map((f) => f.getChildText("value"));
    // By type rule 'payment' (manual), and an unknown provider.
    expect(fixed).to.have.members([
      "Update yourself: Example Bank account (Example Bank)",
      "Update yourself: Old newsletter (mystery)",
    ]);
    // Confirm with Shop deselected.
    const submit = xml(
      "x",
      { xmlns: NS.DATA, type: "submit" },
      xml("field", { var: "FORM_TYPE", type: "hidden" }, xml("value", {}, SERVICES_FORM_TYPE)),
      xml("field", { var: "update" }, xml("value", {}, String(u.attrs.id))),
      xml(
        "field",
        { var: "automatic" },
        ...["Chat (chatco)", "Forum (forumco)", "Games (gameco)"].map((l) =>
          xml("value", {}, String(options.get(l))),
        ),
      ),
    );
    flaky.failNext(1, { status: 503 });
    refusing.always({ status: 403 });
    const confirmed = await ok(frank, "set", "confirm-services", {}, submit);
    const c = confirmed.getChild("confirm-services") as Element;
    expect(c.getChildren("service").map((s) => [s.attrs.service, s.attrs.status])).to.have.deep.members([
      ["Chat", "selected"],
      ["Forum", "selected"],
      ["Games", "selected"],
    ]);
    const manual = (c.getChild("manual")?.getChildren("service") ?? []).map((s) => ({
      service: s.attrs.service,
      reason: s.attrs.reason,
      contact: s.getChildText("contact"),
    }));
    expect(manual).to.have.deep.members([
      {
        service: "Example Bank account",
        reason: "type 'payment' is updated by hand",
        contact: "+49 30 1234 (hotline)",
      },
      { service: "Old newsletter", reason: "unknown provider", contact: null },
      { service: "Shop", reason: "deselected", contact: "support@shop.example" },
    ]);
    // The providers are called through the webhook channel, signed; forumco fails once and is retried.
    await hooks.waitFor((rs) => rs.length >= 1, "chatco called");
    await flaky.waitFor((rs) => rs.filter((x) => x.status === 204).length >= 1, "forumco called twice");
    await refusing.waitFor((rs) => rs.length >= 1, "gameco called");
    for (const s of [hooks, flaky, refusing])
      for (const q of s.requests) expect(q.verified, q.raw).to.equal(true);
    expect(hooks.requests.map((q) => q.path)).to.deep.equal(["/hooks/chatco"]); // never the deselected shopco
    expect(hooks.requests[0]?.body).to.deep.include({ type: "identity.identifier-changed" });
    expect((hooks.requests[0]?.body as { data: unknown }).data).to.deep.include({
      service: "Chat",
      provider: "chatco",
      kind: "tel",
      old,
      new: "+441632960012",
    });
    expect(flaky.requests.map((q) => q.status)).to.deep.equal([503, 204]);
    expect(new Set(flaky.requests.map((q) => q.id)).size).to.equal(1); // one webhook-id across the retry
    // Results recorded.
    const status = async (): Promise<Map<string, string>> =>
      new Map(
        ((await ok(frank, "get", "services")).getChild("services")?.getChildren("service") ?? []).map((s) => [
          String(s.attrs.service),
          String(s.attrs.status),
        ]),
      );
    await waitFor(async () => {
      const s = await status();
      return s.get("Chat") === "updated" && s.get("Forum") === "updated" && s.get("Games") === "refused";
    }, "results recorded");
    const gameNotice = await frank.waitForUpdate(
      (x) => x.kind === "service-updated" && x.content.attrs.service === "Games",
      "service-updated at frank",
    );
    note("service-updated", gameNotice.content);
    // The manual list: everything not updated automatically (the refused one too), marked done one by one.
    const ml = await ok(frank, "get", "manual-services");
    const items = ml.getChild("manual-services")?.getChildren("service") ?? [];
    expect(items.map((s) => s.attrs.service)).to.have.members([
      "Example Bank account",
      "Old newsletter",
      "Shop",
      "Games",
    ]);
    const bank = items.find((s) => s.attrs.service === "Example Bank account") as Element;
    const d = await ok(frank, "set", "service-done", { id: String(bank.attrs.id) });
    expect(d.getChild("service-done")?.getChild("service")?.attrs.status).to.equal("done");
    const ml2 = await ok(frank, "get", "manual-services");
    expect(
      ml2
        .getChild("manual-services")
        ?.getChildren("service")
        .map((s) => s.attrs.service),
    ).to.not.include("Example Bank account");
    await refused(frank, "bad-request", "set", "service-done", { id: String(bank.attrs.id) });
  });

  it("ad-hoc commands: the update request, its confirmation form and the manual list for a generic client", async () => {
    const frank = clients.find((c) => c.jid.startsWith(`${jid("frank")}/`)) as CardClient;
    const cmd = (attrs: Record<string, string>, form?: Element) =>
      frank.iqRaw(
        "set",
        frank.comp,
        xml(
          "command",
          { xmlns: NS.COMMANDS, node: "urn:cardlink:cmd:update-services", ...attrs },
          form ?? null,
        ),
      );
    const field = (v: string, ...values: string[]) =>
      xml("field", { var: v }, ...values.map((x) => xml("value", {}, x)));
    const first = await cmd({ action: "execute" });
    const c1 = first.getChild("command", NS.COMMANDS) as Element;
    expect(c1.attrs.status, first.toString()).to.equal("executing");
    const sessionid = String(c1.attrs.sessionid);
    // Stage 1: which identifier changed. The items still open under it: Shop and Games (automatic), the newsletter.
    const second = await cmd(
      { sessionid, action: "next" },
      xml(
        "x",
        { xmlns: NS.DATA, type: "submit" },
        field("kind", "tel"),
        field("from", "+441632960011"),
        field("to", "+441632960012"),
      ),
    );
    const c2 = second.getChild("command", NS.COMMANDS) as Element;
    captured.push(`--- ad-hoc update-services, stage 2\n${second.toString()}`);
    const form = c2.getChild("x", NS.DATA) as Element;
    const update = form
      .getChildren("field")
      .find((f) => f.attrs.var === "update")
      ?.getChildText("value");
    const options = (
      form
        .getChildren("field")
        .find((f) => f.attrs.var === "automatic")
        ?.getChildren("option") ?? []
    ).map((o) => String(o.attrs.label));
    expect(options).to.have.members(["Shop (shopco)", "Games (gameco)"]);
    // Stage 2: everything deselected: all of it becomes the manual list.
    const third = await cmd(
      { sessionid, action: "complete" },
      xml(
        "x",
        { xmlns: NS.DATA, type: "submit" },
        field("FORM_TYPE", SERVICES_FORM_TYPE),
        field("update", String(update)),
        field("automatic"),
      ),
    );
    const c3 = third.getChild("command", NS.COMMANDS) as Element;
    captured.push(`--- ad-hoc update-services, completed\n${third.toString()}`);
    expect(c3.attrs.status, third.toString()).to.equal("completed");
    const lines = (c3.getChild("x", NS.DATA)?.getChildren("field") ?? [])
      .filter((f) => f.attrs.type === "fixed")
      .map((f) => String(f.getChildText("value")));
    expect(lines).to.have.length(3);
    expect(lines.some((l) => l.startsWith("Shop (shopco) contact: support@shop.example"))).to.equal(true);
    expect(
      lines.some((l) => l.startsWith("Games (gameco) contact: help@game.example (deselected)")),
    ).to.equal(true);
    // The manual-list command shows the same list.
    const ml = await frank.iqRaw(
      "set",
      frank.comp,
      xml("command", { xmlns: NS.COMMANDS, node: "urn:cardlink:cmd:manual-services", action: "execute" }),
    );
    const mlLines = (
      ml.getChild("command", NS.COMMANDS)?.getChild("x", NS.DATA)?.getChildren("field") ?? []
    ).filter((f) => f.attrs.type === "fixed");
    expect(mlLines).to.have.length(3);
  });
});
