/**
 * The compact update form (PROTOCOL §10.8; issue 8): a real Prosody, real @xmpp/client sessions, cardlink in
 * process.
 *
 * Bob has three resources: `phone` declares bob-phone with `format='vcf'` (by IQ), `tablet` declares bob-tablet
 * without a format (by presence), `desk` declares nothing. Alice shares only her `work` entries with Bob. When she
 * changes her card each of Bob's consumers gets the same update (same id) in its own IQ, acknowledges it, and
 * the lane empties: the phone's `<card/>` carries one vCard text node, the others vCard4 XML, and the text is the
 * same filtered view (same hash). The tablet's `<updates/>` are byte for byte the desk's (the shared cursor's,
 * today's form): a device that does not opt in gets exactly today's bytes. Then the form follows the latest
 * declaration, and a bad `format` is refused (IQ) or ignored (presence).
 *
 * With CARDLINK_TEST_RAW=1 every stanza on cardlink's link is printed after the suite (PROTOCOL §10.8's
 * examples come from it).
 */
import { expect } from "chai";
import { pino } from "pino";
import { coreModules } from "../../component/features.js";
import { createCardlink, type Cardlink } from "../../component/runtime/app.js";
import { DEFAULT_CARD_LIMITS } from "../../stanzas/model/card.js";
import { NS } from "../../stanzas/ns.js";
import { parseVCard4 } from "../../stanzas/vcard4.js";
import { cardFromVcf } from "../../stanzas/vcf.js";
import { parseXml, type Element as CoreElement } from "../../stanzas/xml.js";
import { cardClient, email, tel, type CardClient, type ReceivedUpdate } from "../harness/cardclient.js";
import { testConfig } from "../harness/cardlink.js";
import { errorOf, xml, type Element } from "../harness/clients.js";
import * as inspect from "../harness/inspect.js";
import { waitFor } from "../harness/ports.js";
import { ProsodyServer } from "../harness/prosody.js";

describe("compact updates: <active-device format='vcf'/> (PROTOCOL §10.8, real Prosody, real clients)", function () {
  this.timeout(120_000);
  const prosody = new ProsodyServer();
  let app: Cardlink;
  const clients: CardClient[] = [];
  const logs: Array<Record<string, unknown>> = [];
  const jid = (u: string): string => `${u}@${prosody.host}`;
  const comp = (): string => prosody.componentDomain;

  const connect = async (user: string, resource: string, presence = true): Promise<CardClient> => {
    const c = await cardClient(prosody, user, { resource, presence });
    clients.push(c);
    return c;
  };
  const served = (full: string, deviceId: string | undefined): Promise<void> =>
    waitFor(
      async () => (await inspect.resources(app)).some((r) => r.full === full && r.deviceId === deviceId),
      `${full} served as ${deviceId ?? "undeclared"}`,
      15_000,
    );
  const pending = (): Promise<number> => inspect.pendingCount(app, jid("bob"));
  /** The card updates of Alice's a client received whose card has `version`. */
  const aliceAt = (c: CardClient, version: number): ReceivedUpdate[] =>
    c.updates.filter(
      (u) =>
        u.kind === "card" &&
        u.content.attrs.owner === jid("alice") &&
        Number(u.content.attrs.version) === version,
    );
  const waitAll = async (version: number, cs: readonly CardClient[]): Promise<ReceivedUpdate[]> => {
    for (const c of cs)
      await waitFor(() => aliceAt(c, version).length > 0, `v${version} at ${c.jid}`, 15_000);
    await waitFor(async () => (await pending()) === 0, `bob's lane empty after v${version}`, 15_000);
    return cs.map((c) => aliceAt(c, version)[0] as ReceivedUpdate);
  };
  /** The `<updates/>` cardlink wrote to `to` carrying update `id`, as serialized on the link. */
  const wireUpdates = (to: string, id: string): string => {
    for (const l of logs) {
      if (typeof l.out !== "string" || !l.out.startsWith("<iq")) continue;
      let iq: CoreElement;
      try {
        iq = parseXml(l.out);
      } catch {
        continue;
      }
      const u = iq.getChild("updates", NS.CARDLINK);
      if (iq.attrs.to !== to || !u?.getChildren("update").some((x) => x.attrs.id === id)) continue;
      const start = l.out.indexOf("<updates");
      return l.out.slice(start, l.out.lastIndexOf("</iq>"));
    }
    throw new Error(`no <updates/> with ${id} to ${to} on the link`);
  };
  /** The one child of a received `<card/>`: element children and non-blank text, apart. */
  const parts = (card: Element): { elements: Element[]; text: string } => ({
    elements: card.children.filter((c): c is Element => typeof c !== "string"),
    text: card.children.filter((c): c is string => typeof c === "string").join(""),
  });

  before(async () => {
    await prosody.start();
    prosody.createUsers(["alice", "bob"].map((u) => ({ user: u, password: `${u}pw` })));
    const config = testConfig(prosody, {
      log: { level: "trace", rawStream: true },
      delivery: { ackTimeoutMs: 2000, retryBaseMs: 200, retryMaxMs: 1000, batchSize: 20 },
    });
    const log = pino(
      { level: "trace" },
      { write: (line: string) => logs.push(JSON.parse(line) as Record<string, unknown>) },
    );
    app = await createCardlink(config, { log, modules: coreModules });
    await app.start();
    await waitFor(() => app.link.online, "cardlink online", 15_000);
  });
  after(async () => {
    for (const c of clients) await c.stop();
    await app?.stop();
    await prosody.stop();
    prosody.cleanup();
    if (process.env.CARDLINK_TEST_RAW === "1") {
      for (const l of logs) {
        if (typeof l.in === "string") console.log(`IN  ${l.in}`);
        if (typeof l.out === "string") console.log(`OUT ${l.out}`);
      }
    }
  });

  let alice: CardClient;
  let phone: CardClient;
  let tablet: CardClient;
  let desk: CardClient;
  /** Alice's card: work and home entries (Bob sees the work ones) and characters XML must escape. */
  const aliceCard = (): Element[] => [
    tel("tel:+1-555-0100", "work"),
    tel("tel:+1-555-0111", "home"),
    email("alice@work.example", "work"),
    xml("note", {}, xml("text", {}, 'R&D <lab>, "east" wing')),
  ];

  it("disco#info advertises urn:cardlink:0:update-format", async () => {
    alice = await connect("alice", "phone");
    const info = (await alice.iq("get", comp(), xml("query", { xmlns: NS.DISCO_INFO }))).getChild("query");
    expect(info?.getChildren("feature").map((f) => f.attrs.var)).to.include("urn:cardlink:0:update-format");
  });

  it("declared with format='vcf' by IQ (echoed), without a format by presence; the exchange reaches all three", async () => {
    phone = await connect("bob", "phone");
    await phone.cardlink("set", "device", { id: "bob-phone", platform: "ios" });
    await phone.cardlink("set", "device", { id: "bob-tablet", platform: "android" });
    const r = await phone.cardlink("set", "active-device", { id: "bob-phone", format: "vcf" });
    // The result echoes the element (attributes: Prosody re-serializes, so their order is its own).
    expect(r.getChild("active-device", NS.CARDLINK)?.attrs).to.deep.equal({
      xmlns: NS.CARDLINK,
      id: "bob-phone",
      format: "vcf",
    });
    tablet = await connect("bob", "tablet", false);
    await tablet.xmpp.send(
      xml("presence", { to: comp() }, xml("active-device", { xmlns: NS.CARDLINK, id: "bob-tablet" })),
    );
    desk = await connect("bob", "desk");
    await served(phone.jid, "bob-phone");
    await served(tablet.jid, "bob-tablet");
    await served(desk.jid, undefined);

    await alice.setCard("Alice & Co v1", aliceCard());
    const code = String(
      (await alice.cardlink("set", "exchange-code", {})).getChild("exchange-code")?.attrs.code,
    );
    await desk.cardlink("set", "redeem", { code });
    await alice.cardlink("set", "share", { holder: jid("bob") }, xml("type", {}, "work"));
    await waitAll(1, [phone, tablet, desk]);
  });

  it("one change: the compact device and the classic device get the same update in their own forms and both ack", async () => {
    await alice.setCard("Alice & Co v2", aliceCard());
    const got = await waitAll(2, [phone, tablet, desk]);
    const pu = got[0] as ReceivedUpdate;
    const tu = got[1] as ReceivedUpdate;
    const du = got[2] as ReceivedUpdate;
    // The same update (id, seq) and the same card attributes: the hash is the hash of the view Bob may see.
    expect(new Set([pu.id, tu.id, du.id]).size).to.equal(1);
    for (const a of ["owner", "version", "hash"]) {
      expect(pu.content.attrs[a]).to.equal(tu.content.attrs[a]);
      expect(du.content.attrs[a]).to.equal(tu.content.attrs[a]);
    }
    // The phone: one text node, a vCard 4.0; the tablet: one <vcard/> element, no text.
    const compact = parts(pu.content);
    expect(compact.elements).to.deep.equal([]);
    expect(compact.text).to.match(/^BEGIN:VCARD\nVERSION:4\.0\n[\s\S]*END:VCARD\n$/);
    const classic = parts(tu.content);
    expect(classic.elements.map((e) => `${e.name} ${e.attrs.xmlns}`)).to.deep.equal([`vcard ${NS.VCARD4}`]);
    expect(classic.text.trim()).to.equal("");
    // The same filtered view: the home entries are in neither, the work ones in both.
    const fromText = cardFromVcf(compact.text, DEFAULT_CARD_LIMITS);
    const fromXml = parseVCard4(classic.elements[0] as CoreElement, DEFAULT_CARD_LIMITS);
    expect(fromText).to.deep.equal(fromXml);
    expect(fromText.fn).to.equal("Alice & Co v2");
    expect(fromText.tel.map((x) => x.uri)).to.deep.equal(["tel:+1-555-0100"]);
    expect(fromText.note).to.equal('R&D <lab>, "east" wing');
    // Each in an IQ of its own, each acknowledged (the lane emptied in waitAll), every cursor at the same seq.
    const positions = (await inspect.cursors(app, jid("bob"))).map((c) => c.pos);
    expect(new Set(positions)).to.deep.equal(new Set([pu.seq]));
  });

  it("a device that does not opt in gets exactly today's bytes: the tablet's <updates/> is the desk's", async () => {
    const id = aliceAt(tablet, 2)[0]?.id as string;
    const ofTablet = wireUpdates(tablet.jid, id);
    expect(ofTablet).to.equal(wireUpdates(desk.jid, id));
    expect(ofTablet).to.include(`<vcard xmlns="${NS.VCARD4}">`);
    expect(wireUpdates(phone.jid, id)).to.not.include("<vcard");
    expect(wireUpdates(phone.jid, id)).to.include("FN:Alice &amp; Co v2");
  });

  it("the form follows the latest declaration of the device: declaring again without format is vCard4 again", async () => {
    const r = await phone.cardlink("set", "active-device", { id: "bob-phone" });
    expect(r.getChild("active-device", NS.CARDLINK)?.attrs).to.deep.equal({
      xmlns: NS.CARDLINK,
      id: "bob-phone",
    });
    await alice.setCard("Alice & Co v3", aliceCard());
    const [p, t] = await waitAll(3, [phone, tablet, desk]);
    expect(parts((p as ReceivedUpdate).content).elements.map((e) => e.name)).to.deep.equal(["vcard"]);
    expect((p as ReceivedUpdate).content.toString()).to.equal((t as ReceivedUpdate).content.toString());

    // And the presence child asks for it as well (the tablet now). Its unit of work rewrites the resource's row
    // (`since` moves): then the declaration is applied.
    const sinceOf = async (): Promise<number | undefined> =>
      (await inspect.resources(app)).find((x) => x.full === tablet.jid)?.since;
    const since = await sinceOf();
    await tablet.xmpp.send(
      xml(
        "presence",
        { to: comp() },
        xml("active-device", { xmlns: NS.CARDLINK, id: "bob-tablet", format: "vcf" }),
      ),
    );
    await waitFor(async () => (await sinceOf()) !== since, "the tablet's declaration applied", 15_000);
    await alice.setCard("Alice & Co v4", aliceCard());
    const [p4, t4, d4] = await waitAll(4, [phone, tablet, desk]);
    expect(parts((t4 as ReceivedUpdate).content).elements).to.deep.equal([]);
    expect(cardFromVcf(parts((t4 as ReceivedUpdate).content).text, DEFAULT_CARD_LIMITS).fn).to.equal(
      "Alice & Co v4",
    );
    expect(parts((p4 as ReceivedUpdate).content).elements.map((e) => e.name)).to.deep.equal(["vcard"]);
    expect(parts((d4 as ReceivedUpdate).content).elements.map((e) => e.name)).to.deep.equal(["vcard"]);
  });

  it("a bad format: the IQ is refused with bad-request and changes nothing; in presence it is ignored", async () => {
    const before = (await inspect.resources(app)).filter((r) => r.full.startsWith(jid("bob")));
    for (const bad of ["vcard-temp", "", "VCF"]) {
      const r = await phone.cardlinkRaw("set", "active-device", { id: "bob-phone", format: bad });
      const e = errorOf(r);
      expect([e.type, e.condition, e.text]).to.deep.equal([
        "modify",
        "bad-request",
        `format must be one of vcard4, vcf, not '${bad}'`,
      ]);
    }
    // The id is checked first.
    const r = await phone.cardlinkRaw("set", "active-device", { format: "nope" });
    expect(errorOf(r).text).to.equal("<active-device/> needs a 'id' attribute");
    const logged = logs.length;
    await tablet.xmpp.send(
      xml(
        "presence",
        { to: comp() },
        xml("active-device", { xmlns: NS.CARDLINK, id: "bob-tablet", format: "xml" }),
      ),
    );
    await waitFor(
      () => logs.slice(logged).some((l) => l.event === "active-device-ignored"),
      "the bad presence child logged",
    );
    expect((await inspect.resources(app)).filter((r) => r.full.startsWith(jid("bob")))).to.deep.equal(before);
  });
});
