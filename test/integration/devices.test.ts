/**
 * Per-device delivery on the new core (issue 8 S12; docs/REDESIGN.md §4.6 and §5.2; PROTOCOL §10.7): a real
 * Prosody, real @xmpp/client sessions, cardlink in process.
 *
 * Bob has three resources: `phone` declares his registered device bob-phone by IQ, `tablet` declares bob-tablet
 * as a child of its directed presence, `desk` declares nothing. Each declared device has its own cursor over
 * Bob's stream: it gets its own `<updates/>` IQ and acknowledges for itself; `desk` keeps today's semantics (the
 * shared cursor: one batch to every undeclared resource, the first result acknowledges it). An entry is
 * collected once every active cursor passed it. The tablet goes offline, Alice changes her card, the others
 * ack, the tablet comes back, declares, and gets exactly that update with the same id. Then every error of
 * §10.7, the presence child that names no device (no reply, logged), and a dormant device told to resync.
 *
 * Raw stanzas are captured from cardlink's own link (log.rawStream at trace level, into memory): that is how
 * the answer to an IQ from a bare JID (which Prosody does not pass on to a client) is read, and with
 * CARDLINK_TEST_RAW=1 every stanza is printed after the suite (the examples of PROTOCOL §10.7 come from it).
 */
import { expect } from "chai";
import { pino } from "pino";
import { coreModules } from "../../component/features.js";
import { createCardlink, type Cardlink } from "../../component/runtime/app.js";
import { streamRepo } from "../../component/runtime/queue/stream-repo.js";
import { NS } from "../../stanzas/ns.js";
import { parseXml, type Element as CoreElement } from "../../stanzas/xml.js";
import { cardClient, cardSummary, type CardClient } from "../harness/cardclient.js";
import { testConfig } from "../harness/cardlink.js";
import { errorOf, xml, type Element } from "../harness/clients.js";
import * as inspect from "../harness/inspect.js";
import { waitFor } from "../harness/ports.js";
import { ProsodyServer } from "../harness/prosody.js";

const DAY_MS = 86_400_000;

describe("per-device delivery: <active-device/> (new core, real Prosody, real clients)", function () {
  this.timeout(120_000);
  const prosody = new ProsodyServer();
  let app: Cardlink;
  const clients: CardClient[] = [];
  /** cardlink's log lines (pino objects), raw link traffic included. */
  const logs: Array<Record<string, unknown>> = [];
  const jid = (u: string): string => `${u}@${prosody.host}`;
  const comp = (): string => prosody.componentDomain;

  const connect = async (user: string, resource: string, presence = true): Promise<CardClient> => {
    const c = await cardClient(prosody, user, { resource, presence });
    clients.push(c);
    return c;
  };
  /** The `<updates/>` IQs a client received, in order. */
  const updateIqs = (c: CardClient): Element[] =>
    c.received.filter((el) => el.is("iq") && el.attrs.type === "set" && el.getChild("updates", NS.CARDLINK));
  /** Waits until cardlink serves `full` from the device `deviceId` (undefined: the shared cursor). */
  const served = (full: string, deviceId: string | undefined): Promise<void> =>
    waitFor(
      async () => (await inspect.resources(app)).some((r) => r.full === full && r.deviceId === deviceId),
      `${full} served as ${deviceId ?? "undeclared"}`,
      15_000,
    );
  const pending = (): Promise<number> => inspect.pendingCount(app, jid("bob"));
  const lanePositions = async (): Promise<Record<string, number>> =>
    Object.fromEntries(
      (await inspect.cursors(app, jid("bob"))).map((c) => [c.deviceId ?? "shared", c.pos] as const),
    );
  /** The updates (id, fn) a client received carrying Alice's card with this fn. */
  const cardUpdates = (c: CardClient, fn: string) =>
    c.updates.filter(
      (u) => u.kind === "card" && u.content.attrs.owner === jid("alice") && cardSummary(u.content).fn === fn,
    );
  /** Stanzas cardlink wrote to its link (raw XML), parsed. */
  const sent = (): CoreElement[] => {
    const out: CoreElement[] = [];
    for (const l of logs) {
      if (typeof l.out !== "string") continue;
      try {
        out.push(parseXml(l.out));
      } catch {
        // the stream header and other writes that are not one whole stanza
      }
    }
    return out;
  };
  /** The update ids an IQ carried (read off the IQ: a client that does not ack records nothing). */
  const idsIn = (iq: Element | undefined): string[] =>
    (iq?.getChild("updates", NS.CARDLINK)?.getChildren("update") ?? []).map((u) => String(u.attrs.id));

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

  let phone: CardClient;
  let tablet: CardClient;
  let desk: CardClient;
  let alice: CardClient;

  it("disco#info advertises urn:cardlink:0:device-delivery", async () => {
    alice = await connect("alice", "phone");
    const info = (await alice.iq("get", comp(), xml("query", { xmlns: NS.DISCO_INFO }))).getChild("query");
    expect(info?.getChildren("feature").map((f) => f.attrs.var)).to.include("urn:cardlink:0:device-delivery");
  });

  it("declared by IQ (the result echoes it) and by a directed presence child; undeclared resources stay shared", async () => {
    phone = await connect("bob", "phone");
    await phone.cardlink("set", "device", { id: "bob-phone", platform: "ios" });
    await phone.cardlink("set", "device", { id: "bob-tablet", platform: "android" });
    const r = await phone.cardlink("set", "active-device", { id: "bob-phone" });
    expect(r.attrs.type).to.equal("result");
    const echoed = r.getChild("active-device", NS.CARDLINK);
    expect(echoed?.attrs.id).to.equal("bob-phone");
    tablet = await connect("bob", "tablet", false);
    await tablet.xmpp.send(
      xml("presence", { to: comp() }, xml("active-device", { xmlns: NS.CARDLINK, id: "bob-tablet" })),
    );
    desk = await connect("bob", "desk");
    await served(phone.jid, "bob-phone");
    await served(tablet.jid, "bob-tablet");
    await served(desk.jid, undefined);
    // A presence gets no reply: the tablet received nothing from cardlink for its declaration.
    expect(tablet.received.filter((el) => el.attrs.from === comp())).to.deep.equal([]);
    // Each declared device has its own cursor now, beside the shared one.
    expect(Object.keys(await lanePositions()).sort()).to.deep.equal(["bob-phone", "bob-tablet", "shared"]);

    // Alice and Bob exchange (the desk redeems Alice's code): every consumer of Bob's gets the binding and
    // Alice's card, and acks it; the lane is empty afterwards.
    await alice.setCard("Alice v1");
    const code = String(
      (await alice.cardlink("set", "exchange-code", {})).getChild("exchange-code")?.attrs.code,
    );
    await desk.cardlink("set", "redeem", { code });
    for (const c of [phone, tablet, desk])
      await c.waitForUpdate((u) => u.kind === "binding", `binding at ${c.jid}`);
    await waitFor(async () => (await pending()) === 0, "bob's lane empty after the exchange", 15_000);
  });

  it("§4.6: two devices each get their own IQ and ack; the lane empties; an offline device gets what it missed, same id", async () => {
    const before = new Map([phone, tablet, desk].map((c) => [c, updateIqs(c).length]));
    await alice.setCard("Alice v2");
    for (const c of [phone, tablet, desk]) {
      await waitFor(() => cardUpdates(c, "Alice v2").length > 0, `Alice v2 at ${c.jid}`, 15_000);
    }
    const v2 = cardUpdates(phone, "Alice v2")[0]?.id as string;
    expect(v2).to.match(new RegExp(`^card:${jid("alice")}:\\d+$`));
    await waitFor(
      async () => (await pending()) === 0,
      "bob's lane empty after both devices and the desk acked",
    );
    const iqIds: string[] = [];
    for (const c of [phone, tablet, desk]) {
      // Exactly one update of that change per resource, in one IQ of its own (a declared device does not also
      // get the shared batch).
      expect(cardUpdates(c, "Alice v2").map((u) => u.id)).to.deep.equal([v2]);
      const iqs = updateIqs(c).slice(before.get(c));
      expect(iqs).to.have.length(1);
      iqIds.push(String(iqs[0]?.attrs.id));
    }
    expect(new Set(iqIds).size).to.equal(3);
    const seq2 = Number(v2.split(":").at(-1));
    expect(await lanePositions()).to.deep.equal({ shared: seq2, "bob-phone": seq2, "bob-tablet": seq2 });

    // The tablet goes offline (Prosody tells cardlink: it sent directed presence); Alice changes again.
    await tablet.stop();
    await waitFor(
      async () => !(await inspect.resources(app)).some((r) => r.full === tablet.jid),
      "tablet unavailable",
      15_000,
    );
    await alice.setCard("Alice v3");
    for (const c of [phone, desk]) {
      await waitFor(() => cardUpdates(c, "Alice v3").length > 0, `Alice v3 at ${c.jid}`, 15_000);
    }
    const v3 = cardUpdates(phone, "Alice v3")[0]?.id as string;
    const seq3 = Number(v3.split(":").at(-1));
    // The phone's and the desk's acks do not pass it for the tablet: the entry stays for the tablet's cursor.
    await waitFor(
      async () => (await lanePositions())["bob-phone"] === seq3 && (await lanePositions()).shared === seq3,
      "phone and desk acked",
    );
    expect(await lanePositions()).to.deep.equal({ shared: seq3, "bob-phone": seq3, "bob-tablet": seq2 });
    expect(await pending()).to.equal(1);

    // The tablet reconnects (no presence this time), declares by IQ, and gets exactly that update, same id.
    tablet = await connect("bob", "tablet", false);
    await tablet.cardlink("set", "active-device", { id: "bob-tablet" });
    await waitFor(() => tablet.updates.length > 0, "the missed update at the tablet", 15_000);
    await waitFor(async () => (await pending()) === 0, "bob's lane empty after the tablet's ack");
    expect(tablet.updates.map((u) => u.id)).to.deep.equal([v3]);
    expect(cardSummary(tablet.updates[0]?.content as Element).fn).to.equal("Alice v3");
    expect(updateIqs(tablet)).to.have.length(1);
    expect(await lanePositions()).to.deep.equal({ shared: seq3, "bob-phone": seq3, "bob-tablet": seq3 });
  });

  it("undeclared resources keep the shared cursor's semantics: one batch to all of them, one ack for all", async () => {
    const laptop = await connect("bob", "laptop");
    await served(laptop.jid, undefined);
    laptop.setAck("ignore");
    const before = new Map([phone, tablet, desk, laptop].map((c) => [c, updateIqs(c).length]));
    await alice.setCard("Alice v4");
    for (const c of [phone, tablet, desk, laptop]) {
      await waitFor(() => updateIqs(c).length > (before.get(c) as number), `Alice v4 at ${c.jid}`, 15_000);
    }
    // The laptop never answers, the desk does: that one result acknowledges the batch for the shared cursor.
    await waitFor(async () => (await pending()) === 0, "bob's lane empty without the laptop's ack");
    const iq = (c: CardClient): string => String(updateIqs(c).slice(before.get(c))[0]?.attrs.id);
    expect(iq(desk)).to.equal(iq(laptop));
    expect(new Set([iq(phone), iq(tablet), iq(desk)]).size).to.equal(3);
    const v4 = cardUpdates(desk, "Alice v4")[0]?.id as string;
    for (const c of [phone, tablet, laptop])
      expect(idsIn(updateIqs(c).slice(before.get(c))[0])).to.deep.equal([v4]);
    await laptop.stop();
  });

  it("every error of §10.7 is an RFC 6120 error with a short text; nothing is declared by them", async () => {
    const cases: Array<[Record<string, string>, string, string, string]> = [
      [{}, "modify", "bad-request", "<active-device/> needs a 'id' attribute"],
      [{ id: "" }, "modify", "bad-request", "<active-device/> needs a 'id' attribute"],
      [
        { id: "bob phone" },
        "modify",
        "bad-request",
        "device id must be 1–128 characters of A–Z a–z 0–9 . _ : -",
      ],
      [{ id: "nope" }, "cancel", "item-not-found", "you have no device 'nope'; register it first"],
    ];
    const other = await connect("bob", "other", false);
    for (const [attrs, type, condition, text] of cases) {
      const reply = await other.cardlinkRaw("set", "active-device", attrs);
      expect(reply.attrs.type).to.equal("error");
      expect(errorOf(reply)).to.deep.equal({ condition, type, text });
    }
    // The IQs made the resource known (any request does), undeclared.
    await served(other.jid, undefined);

    // From a bare JID: Prosody stamps a client's full JID, so the IQ is posted inside Prosody (its admin
    // shell) as the server would route one from bob's bare JID; cardlink's answer is read off its link.
    prosody.shell(
      `local st = require "util.stanza"; prosody.core_post_stanza(prosody.hosts["${prosody.host}"], ` +
        `st.iq({type="set", from="${jid("bob")}", to="${comp()}", id="bare-ad1"})` +
        `:tag("active-device", {xmlns="urn:cardlink:0", id="bob-phone"}))`,
    );
    await waitFor(() => sent().some((s) => s.attrs.id === "bare-ad1"), "cardlink's answer to the bare JID");
    const answer = sent().find((s) => s.attrs.id === "bare-ad1") as CoreElement;
    expect(answer.attrs.type).to.equal("error");
    expect(answer.attrs.to).to.equal(jid("bob"));
    const err = answer.getChild("error");
    expect(err?.attrs.type).to.equal("modify");
    expect(err?.getChild("bad-request", NS.STANZAS)).to.exist;
    expect(err?.getChildText("text", NS.STANZAS)).to.equal(
      "<active-device/> must come from the resource it names",
    );
    expect(err?.getChildren("active-device")).to.deep.equal([]); // the payload is not echoed
  });

  it("a presence child naming no device, or no valid id, is ignored (no reply) and logged", async () => {
    const c = await connect("bob", "old", false);
    await c.xmpp.send(
      xml("presence", { to: comp() }, xml("active-device", { xmlns: NS.CARDLINK, id: "nope" })),
    );
    await c.xmpp.send(xml("presence", { to: comp() }, xml("active-device", { xmlns: NS.CARDLINK })));
    await waitFor(
      () => logs.filter((l) => l.event === "active-device-ignored" && l.from === c.jid).length === 2,
      "both ignored and logged",
    );
    await served(c.jid, undefined);
    const ignored = logs.filter((l) => l.event === "active-device-ignored" && l.from === c.jid);
    expect(ignored.map((l) => l.reason)).to.deep.equal([
      "no-device",
      "<active-device/> needs a 'id' attribute",
    ]);
    expect(c.received.filter((el) => el.attrs.from === comp())).to.deep.equal([]);
    await c.stop();
  });

  it("a device dormant past delivery.deviceIdleDays whose missed updates were collected is told to resync", async () => {
    // This tablet session sent no presence (it declared by IQ): cardlink learns it left when the next delivery
    // to it is refused (PROTOCOL §10.6), here Alice's next change.
    await tablet.stop();
    await alice.setCard("Alice v5");
    await waitFor(() => cardUpdates(phone, "Alice v5").length > 0, "Alice v5 at the phone", 15_000);
    await waitFor(
      async () => !(await inspect.resources(app)).some((r) => r.full === tablet.jid),
      "tablet pruned by the refused delivery",
      15_000,
    );
    await waitFor(async () => (await pending()) === 1, "held for the tablet only");
    // "1 pending" is also what the count says while the phone's ack of Alice v5 is still on its way: wait until
    // every active cursor but the tablet's is past it, so what the sweep below collects is the tablet's alone.
    const v5 = Number(cardUpdates(phone, "Alice v5")[0]?.seq);
    await waitFor(
      async () =>
        (await inspect.cursors(app, jid("bob"))).every(
          (c) => c.deviceId === "bob-tablet" || c.state !== "active" || c.pos >= v5,
        ),
      "every other cursor past Alice v5",
    );
    // Seeding 30 idle days: the tablet's cursor last acked long ago; the engine's dormancy sweep (the same repo
    // call, hourly in production) marks it dormant and collects what only it held.
    const swept = await app.ctx.store.tx("test.dormant", async (tx) => {
      const cursors = await inspect.cursors(app, jid("bob"));
      const t = cursors.find((x) => x.deviceId === "bob-tablet");
      await tx.run("UPDATE stream_cursors SET seen_at = 0 WHERE id = :id", { id: t?.id ?? -1 });
      return streamRepo(tx).sweepDormant(tx.now, {
        deviceIdleMs: 30 * DAY_MS,
        sharedIdleMs: 2 * DAY_MS,
        limit: 10,
      });
    });
    expect(swept.dormant).to.equal(1);
    expect(await pending()).to.equal(0);
    const t = (await inspect.cursors(app, jid("bob"))).find((x) => x.deviceId === "bob-tablet");
    expect(t?.state).to.equal("dormant");

    tablet = await connect("bob", "tablet", false);
    await tablet.xmpp.send(
      xml("presence", { to: comp() }, xml("active-device", { xmlns: NS.CARDLINK, id: "bob-tablet" })),
    );
    await waitFor(() => tablet.updates.length > 0, "the resync at the tablet", 15_000);
    const [u] = tablet.updates;
    expect(u?.kind).to.equal("resync");
    expect(u?.id).to.equal(`resync:bob-tablet:${u?.seq}`);
    expect(u?.content.is("resync", NS.CARDLINK)).to.equal(true);
    expect(u?.content.attrs.reason).to.equal("idle");
    await waitFor(
      async () =>
        (await inspect.cursors(app, jid("bob"))).find((x) => x.deviceId === "bob-tablet")?.state === "active",
      "the tablet's cursor active again after its ack",
    );
    const after = (await inspect.cursors(app, jid("bob"))).find((x) => x.deviceId === "bob-tablet");
    expect(after?.pos).to.equal(u?.seq);
    expect(tablet.updates).to.have.length(1);
    expect(await pending()).to.equal(0);
  });

  it("removing a declared device drops its cursor and what only it held, at once; its resource goes back to shared", async () => {
    phone.setAck("ignore");
    const before = updateIqs(phone).length;
    await alice.setCard("Alice v6");
    await waitFor(() => updateIqs(phone).length > before, "Alice v6 at the (silent) phone", 15_000);
    await waitFor(async () => (await pending()) === 1, "held for the phone only", 15_000);
    // As above: "1 pending" also holds while another cursor's ack of Alice v6 is on its way.
    // (The silent phone does not record what it ignores: the seq is read off the IQ it got.)
    const v6 = Number(
      updateIqs(phone).at(-1)?.getChild("updates", NS.CARDLINK)?.getChildren("update").at(-1)?.attrs.seq,
    );
    await waitFor(
      async () =>
        (await inspect.cursors(app, jid("bob"))).every(
          (c) => c.deviceId === "bob-phone" || c.state !== "active" || c.pos >= v6,
        ),
      "every other cursor past Alice v6",
    );
    await desk.cardlink("set", "remove-device", { id: "bob-phone" });
    // In the unit of work of the removal: the cursor is gone and the lane collected.
    expect(await pending()).to.equal(0);
    expect(Object.keys(await lanePositions()).sort()).to.deep.equal(["bob-tablet", "shared"]);
    await served(phone.jid, undefined);
    phone.setAck("ack");
  });
});
