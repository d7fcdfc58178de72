import { expect } from "chai";
import type { Cardlink } from "../../component/runtime/app.js";
import { NS } from "../../stanzas/ns.js";
import { startInProcess, testConfig } from "../harness/cardlink.js";
import { cardClient, cardSummary, type CardClient } from "../harness/cardclient.js";
import { errorOf, xml, type Element } from "../harness/clients.js";
import { waitFor } from "../harness/ports.js";
import * as look from "../harness/look.js";
import { newXmppServer, serverLabel } from "../harness/server.js";

function field(form: Element | undefined, name: string): string[] {
  return (
    form
      ?.getChildren("field")
      .find((f) => f.attrs.var === name)
      ?.getChildren("value") ?? []
  ).map((v) => v.getText());
}

function submit(values: Record<string, string | string[]>): Element {
  return xml(
    "x",
    { xmlns: NS.DATA, type: "submit" },
    ...Object.entries(values).map(([k, v]) =>
      xml("field", { var: k }, ...(Array.isArray(v) ? v : [v]).map((x) => xml("value", {}, x))),
    ),
  );
}

describe(`ad-hoc commands for the core flows, card formats, presence subscription (${serverLabel()})`, function () {
  this.timeout(60_000);
  const prosody = newXmppServer();
  let app: Cardlink;
  let alice: CardClient;
  let bob: CardClient;
  const jid = (u: string): string => `${u}@${prosody.host}`;

  /** The raw reply (result or error) to one command step; execute without a session, complete with one. */
  const commandRaw = (c: CardClient, node: string, sessionid?: string, form?: Element): Promise<Element> =>
    c.iqRaw(
      "set",
      c.comp,
      xml(
        "command",
        { xmlns: NS.COMMANDS, node, action: sessionid ? "complete" : "execute", sessionid },
        form,
      ),
    );

  const command = async (
    c: CardClient,
    node: string,
    sessionid?: string,
    form?: Element,
  ): Promise<Element> => {
    const r = await commandRaw(c, node, sessionid, form);
    if (r.attrs.type !== "result") throw new Error(`command ${node} failed: ${JSON.stringify(errorOf(r))}`);
    return r.getChild("command", NS.COMMANDS) as Element;
  };

  before(async () => {
    await prosody.start();
    await prosody.createUsers(["alice", "bob", "carol"].map((u) => ({ user: u, password: `${u}pw` })));
    app = await startInProcess(testConfig(prosody, { admins: [`alice@${prosody.host}`] }));
    alice = await cardClient(prosody, "alice");
    bob = await cardClient(prosody, "bob");
  });
  after(async () => {
    await alice?.stop();
    await bob?.stop();
    await app?.stop();
    await prosody.stop();
    prosody.cleanup();
  });

  it("lists the commands (admin command only to admins)", async () => {
    const list = async (c: CardClient): Promise<string[]> =>
      (
        (await c.iq("get", c.comp, xml("query", { xmlns: NS.DISCO_ITEMS, node: NS.COMMANDS })))
          .getChild("query")
          ?.getChildren("item") ?? []
      ).map((i) => String(i.attrs.node));
    const a = await list(alice);
    const b = await list(bob);
    expect(a).to.include.members([
      "urn:cardlink:cmd:edit-card",
      "urn:cardlink:cmd:show-card",
      "urn:cardlink:cmd:stats",
    ]);
    expect(b).to.include("urn:cardlink:cmd:contacts");
    expect(b).to.not.include("urn:cardlink:cmd:stats");
    const stats = await command(alice, "urn:cardlink:cmd:stats");
    expect(stats.attrs.status).to.equal("completed");
    expect(field(stats.getChild("x", NS.DATA), "cardlink_link_up")).to.deep.equal(["1"]);
  });

  it("edit my card with a form, then show it", async () => {
    const first = await command(alice, "urn:cardlink:cmd:edit-card");
    expect(first.attrs.status).to.equal("executing");
    const form = first.getChild("x", NS.DATA);
    expect(field(form, "FORM_TYPE")).to.deep.equal(["urn:cardlink:form:card"]);
    const done = await command(
      alice,
      "urn:cardlink:cmd:edit-card",
      String(first.attrs.sessionid),
      submit({
        FORM_TYPE: "urn:cardlink:form:card",
        fn: "Alice Adhoc",
        org: "Example Inc",
        "tel-work": "+1-555-0100",
      }),
    );
    expect(done.attrs.status).to.equal("completed");
    const mine = (await alice.cardlink("get", "card")).getChild("card")!;
    expect(cardSummary(mine).fn).to.equal("Alice Adhoc");
    expect(cardSummary(mine).tels).to.deep.equal(["tel:+1-555-0100"]);
    const shown = await command(alice, "urn:cardlink:cmd:show-card");
    expect(field(shown.getChild("x", NS.DATA), "org")).to.deep.equal(["Example Inc"]);
    // Prefilled on the next edit.
    const again = await command(alice, "urn:cardlink:cmd:edit-card");
    expect(field(again.getChild("x", NS.DATA), "fn")).to.deep.equal(["Alice Adhoc"]);
  });

  it("the edit form is held to the same card limits as XML (a note over the text limit is refused)", async () => {
    const first = await command(alice, "urn:cardlink:cmd:edit-card");
    const r = await commandRaw(
      alice,
      "urn:cardlink:cmd:edit-card",
      String(first.attrs.sessionid),
      submit({ fn: "Alice Adhoc", note: "x".repeat(5000) }),
    );
    const e = errorOf(r);
    expect(e.condition).to.equal("bad-request");
    expect(e.text).to.match(/note/);
    expect(cardSummary((await alice.cardlink("get", "card")).getChild("card")!).fn).to.equal("Alice Adhoc");
  });

  it("a stale or foreign session id is refused", async () => {
    const first = await command(alice, "urn:cardlink:cmd:edit-card");
    const r = await commandRaw(
      bob,
      "urn:cardlink:cmd:edit-card",
      String(first.attrs.sessionid),
      submit({ fn: "Hijack" }),
    );
    expect(errorOf(r).condition).to.equal("bad-request");
    // XEP-0050 §4.6: the specific condition is in the commands namespace.
    expect(r.getChild("error")?.getChild("bad-sessionid", NS.COMMANDS)).to.exist;
  });

  it("request an exchange, answer it, list contacts — all through commands", async () => {
    const f = await command(bob, "urn:cardlink:cmd:request-exchange");
    await command(
      bob,
      "urn:cardlink:cmd:request-exchange",
      String(f.attrs.sessionid),
      submit({ jid: jid("alice") }),
    );
    const a = await command(alice, "urn:cardlink:cmd:answer-requests");
    const form = a.getChild("x", NS.DATA);
    const reqId = field(form, "request")[0] as string;
    const ok = await command(
      alice,
      "urn:cardlink:cmd:answer-requests",
      String(a.attrs.sessionid),
      submit({ request: reqId, answer: "accept" }),
    );
    expect(ok.getChildText("note")).to.match(/exchanged with bob@/);
    await bob.waitForUpdate(
      (u) => u.kind === "card" && cardSummary(u.content).fn === "Alice Adhoc",
      "alice's card at bob",
    );
    const contacts = await command(bob, "urn:cardlink:cmd:contacts");
    expect(field(contacts.getChild("x", NS.DATA), "contacts").join("\n")).to.match(/Alice Adhoc <alice@/);
  });

  it("exchange code through commands", async () => {
    const carol = await cardClient(prosody, "carol");
    try {
      const c = await command(alice, "urn:cardlink:cmd:exchange-code");
      const code = /code: ([A-Z2-9-]+)/.exec(c.getChildText("note") ?? "")?.[1] as string;
      const f = await command(carol, "urn:cardlink:cmd:redeem-code");
      const r = await command(
        carol,
        "urn:cardlink:cmd:redeem-code",
        String(f.attrs.sessionid),
        submit({ code }),
      );
      expect(r.getChildText("note")).to.match(/exchanged with alice@/);
    } finally {
      await carol.stop();
    }
  });

  it("vcard-temp and .vcf import/export through the card IQ", async () => {
    await bob.cardlink(
      "set",
      "card",
      { format: "vcard-temp" },
      xml(
        "vCard",
        { xmlns: NS.VCARD_TEMP },
        xml("FN", {}, "Bob Temp"),
        xml("TEL", {}, xml("WORK"), xml("VOICE"), xml("NUMBER", {}, "+1-555-0142")),
      ),
    );
    const v4 = (await bob.cardlink("get", "card")).getChild("card")!;
    expect(cardSummary(v4).fn).to.equal("Bob Temp");
    const vcf = (await bob.cardlink("get", "card", { format: "vcf" })).getChild("card")!.getText();
    // XML normalizes CRLF to LF in transit (XML 1.0 §2.11); the importer accepts both.
    expect(vcf).to.match(/^BEGIN:VCARD\r?\nVERSION:4.0\r?\n/);
    expect(vcf).to.match(/FN:Bob Temp/);
    const r = await bob.iq(
      "set",
      bob.comp,
      xml("card", { xmlns: NS.CARDLINK, format: "vcf" }, vcf.replace("Bob Temp", "Bob Vcf")),
    );
    expect(r.getChild("card")?.attrs.changed).to.equal("true");
    const temp = (await bob.cardlink("get", "card", { format: "vcard-temp" })).getChild("card")!;
    expect(temp.getChild("vCard", NS.VCARD_TEMP)?.getChildText("FN")).to.equal("Bob Vcf");
    const bad = errorOf(
      await bob.iqRaw("set", bob.comp, xml("card", { xmlns: NS.CARDLINK, format: "vcf" }, "not a vcard")),
    );
    expect(bad.condition).to.equal("bad-request");
  });

  it("a presence subscription granted to cardlink makes it track the user without directed presence", async () => {
    const carol = await cardClient(prosody, "carol", { resource: "desk", presence: false });
    try {
      // Initial (broadcast) presence first: Prosody delivers subscription answers only to available resources.
      await carol.xmpp.send(xml("presence"));
      // Roster-style subscription: cardlink accepts and subscribes back (like a transport).
      await carol.xmpp.send(xml("presence", { to: carol.comp, type: "subscribe" }));
      // (Prosody turns cardlink's 'subscribed' into a roster push, not a presence stanza to the client.)
      const sub = await carol.waitForStanza(
        (s) => s.is("presence") && s.attrs.type === "subscribe",
        "subscribe back",
      );
      await carol.xmpp.send(xml("presence", { to: sub.attrs.from, type: "subscribed" }));
      await carol.xmpp.send(xml("presence")); // broadcast: Prosody now delivers it to cardlink
      await waitFor(
        async () => (await look.resources(app)).some((r) => r.full === carol.jid),
        "carol/desk tracked",
      );
      expect(await look.isSubscriber(app, jid("carol"))).to.equal(true);
      await alice.setCard("Alice Subscribed");
      await carol.waitForUpdate(
        (u) => u.kind === "card" && cardSummary(u.content).fn === "Alice Subscribed",
        "update via subscription",
      );
    } finally {
      await carol.stop();
    }
  });
});
