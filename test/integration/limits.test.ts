/**
 * Quotas, rate limits, fairness and input hygiene through a real Prosody with real @xmpp/client sessions: each
 * limit answers its documented error with a short text, writes nothing (read back from the SQLite file), and
 * another user's request at the same moment is unaffected.
 */
import { expect } from "chai";
import { NS } from "../../stanzas/ns.js";
import { cardClient, type CardClient } from "../harness/cardclient.js";
import * as look from "../harness/look.js";
import { errorOf, xml, type Element } from "../harness/clients.js";
import { waitFor } from "../harness/ports.js";
import { useServers } from "../harness/suite.js";

const LIMITS = {
  adhocSessionsPerUser: 3,
  blocksPerUser: 3,
  codesPerUser: 2,
  devicesPerUser: 2,
  resourcesPerUser: 2,
  pendingIqsPerUser: 4,
  redeemFailuresPerUser: 3,
  redeemFailuresPerHost: 5,
};

describe("quotas, rate limits and input hygiene", function () {
  this.timeout(90_000);
  const s = useServers(["alice", "bob", "carol", "dave", "erin", "frank", "gina"], () => ({
    limits: LIMITS,
  }));
  const clients: CardClient[] = [];
  const connect = async (user: string, resource = "phone"): Promise<CardClient> => {
    const c = await cardClient(s.prosody, user, { resource });
    clients.push(c);
    return c;
  };

  after(async () => {
    await Promise.all(clients.map((c) => c.stop()));
  });

  /** Short texts: no error quotes more than a short prefix of what the client sent. */
  const short = (text: string): void => {
    expect(text.length).to.be.greaterThan(5);
    expect(text.length).to.be.below(200);
  };

  it("answers XML nested as deep as Prosody lets through (36,000 levels) with bad-request", async () => {
    // Prosody has no depth limit of its own: its c2s stanza size limit (256 KiB) is what stops deeper XML
    // (50,000 levels of <a> is ~350 kB and Prosody closes the sender's stream instead).
    const alice = await connect("alice", "deep");
    const bob = await connect("bob");
    const n = 36_000;
    const id = "deep1";
    const raw =
      `<iq type='get' id='${id}' to='${alice.comp}'><ping xmlns='urn:xmpp:ping'>` +
      `${"<a>".repeat(n)}${"</a>".repeat(n)}</ping></iq>`;
    // Written as text: xmpp.js's own serializer is recursive and would overflow in the test client.
    await (alice.xmpp as unknown as { write(s: string): Promise<void> }).write(raw);
    const reply = await alice.waitForStanza((el) => el.attrs.id === id, "reply to the deep IQ");
    const e = errorOf(reply);
    expect(e).to.deep.include({ condition: "bad-request", type: "modify" });
    expect(e.text).to.equal(`XML nested deeper than ${s.app().ctx.config.limits.maxDepth} levels`);
    // The process and the link are fine: the next request (another user) is answered at once.
    const pong = await bob.iqRaw("get", bob.comp, xml("ping", { xmlns: NS.PING }));
    expect(pong.attrs.type).to.equal("result");
  });

  it("IQs and messages to anything@cards.<domain> or a resource of it get service-unavailable", async () => {
    const alice = await connect("alice", "nobody");
    const domain = alice.comp;
    for (const to of [`x@${domain}`, `alice@${domain}`, `${domain}/something`]) {
      const r = await alice.iqRaw("get", to, xml("ping", { xmlns: NS.PING }));
      expect(r.attrs.type, to).to.equal("error");
      const e = errorOf(r);
      expect(e.condition, to).to.equal("service-unavailable");
      expect(e.text, to).to.match(/does not exist/);
    }
    const id = "msg-nobody";
    await alice.xmpp.send(xml("message", { to: `x@${domain}`, id, type: "chat" }, xml("body", {}, "hi")));
    const m = await alice.waitForStanza((el) => el.is("message") && el.attrs.id === id, "message error");
    expect(m.attrs.type).to.equal("error");
    expect(errorOf(m).condition).to.equal("service-unavailable");
    // The component itself answers as before.
    const ok = await alice.iqRaw("get", domain, xml("ping", { xmlns: NS.PING }));
    expect(ok.attrs.type).to.equal("result");
  });

  it("ad-hoc sessions: a user at the per-user cap gets resource-constraint; another user opens one at once", async () => {
    const alice = await connect("alice", "adhoc");
    const bob = await connect("bob", "adhoc");
    const open = (c: CardClient): Promise<Element> =>
      c.iqRaw("set", c.comp, xml("command", { xmlns: NS.COMMANDS, node: "urn:cardlink:cmd:edit-card" }));
    const ids: string[] = [];
    for (let i = 0; i < LIMITS.adhocSessionsPerUser; i++) {
      const r = await open(alice);
      expect(r.attrs.type).to.equal("result");
      ids.push(String(r.getChild("command", NS.COMMANDS)?.attrs.sessionid));
    }
    const [refused, other] = await Promise.all([open(alice), open(bob)]);
    const e = errorOf(refused);
    expect(e).to.deep.include({ condition: "resource-constraint", type: "wait" });
    expect(e.text).to.match(/3 open command sessions/);
    expect(other.attrs.type).to.equal("result");
    // Cancelling one frees a place.
    const cancel = await alice.iqRaw(
      "set",
      alice.comp,
      xml("command", {
        xmlns: NS.COMMANDS,
        node: "urn:cardlink:cmd:edit-card",
        sessionid: ids[0],
        action: "cancel",
      }),
    );
    expect(cancel.attrs.type).to.equal("result");
    expect((await open(alice)).attrs.type).to.equal("result");
  });

  it("blocks: the cap answers resource-constraint, writes nothing, and another user blocks at the same moment", async () => {
    const carol = await connect("carol");
    const dave = await connect("dave");
    const host = s.prosody.host;
    for (let i = 0; i < LIMITS.blocksPerUser; i++)
      await carol.cardlink("set", "block", { jid: `spam${i}@${host}` });
    // Blocking one already blocked is not a new entry and is accepted.
    await carol.cardlink("set", "block", { jid: `SPAM0@${host}` });
    const [refused, other] = await Promise.all([
      carol.cardlinkRaw("set", "block", { jid: `one-more@${host}` }),
      dave.cardlinkRaw("set", "block", { jid: `one-more@${host}` }),
    ]);
    const e = errorOf(refused);
    expect(e).to.deep.include({ condition: "resource-constraint", type: "cancel" });
    expect(e.text).to.match(/already block 3 accounts/);
    expect(other.attrs.type).to.equal("result");
    expect(await look.blocksBy(s.app(), s.jid("carol"))).to.equal(3);
    expect(await look.blocksOf(s.app(), `one-more@${host}`)).to.equal(1);
  });

  it("exchange codes: outstanding codes are capped per user (resource-constraint wait), nothing written", async () => {
    const erin = await connect("erin");
    const frank = await connect("frank");
    for (let i = 0; i < LIMITS.codesPerUser; i++) await erin.cardlink("set", "exchange-code");
    const [refused, other] = await Promise.all([
      erin.cardlinkRaw("set", "exchange-code"),
      frank.cardlinkRaw("set", "exchange-code"),
    ]);
    const e = errorOf(refused);
    expect(e).to.deep.include({ condition: "resource-constraint", type: "wait" });
    expect(e.text).to.match(/2 unused exchange codes/);
    expect(other.attrs.type).to.equal("result");
    expect(await look.codeCount(s.app(), s.jid("erin"))).to.equal(2);
  });

  it("devices: the per-user cap comes from limits.devicesPerUser", async () => {
    const gina = await connect("gina");
    const reg = (c: CardClient, id: string): Promise<Element> =>
      c.cardlinkRaw("set", "device", { id, platform: "other" });
    for (let i = 0; i < LIMITS.devicesPerUser; i++)
      expect((await reg(gina, `d${i}`)).attrs.type).to.equal("result");
    const [refused, other] = await Promise.all([
      reg(gina, "d-extra"),
      reg(await connect("frank", "dev"), "d0"),
    ]);
    expect(errorOf(refused)).to.deep.include({ condition: "resource-constraint", type: "cancel" });
    short(errorOf(refused).text);
    expect(other.attrs.type).to.equal("result");
    expect(await look.deviceCount(s.app(), s.jid("gina"))).to.equal(2);
  });

  it("push keys: anything but 32 bytes of strict base64 is refused and the device is not written", async () => {
    const c = clients.find((x) => x.jid.startsWith("gina@")) as CardClient;
    const key32 = Buffer.alloc(32, 0xfb);
    const bad = [
      Buffer.alloc(16).toString("base64"),
      `${key32.toString("base64")}AAAA`,
      `${key32.toString("base64").slice(0, 20)}*${key32.toString("base64").slice(21)}`,
      "x".repeat(100_000),
    ];
    for (const key of bad) {
      const r = await c.cardlinkRaw(
        "set",
        "device",
        { id: "d0", platform: "ios" },
        xml("push", { token: "tok-new", key }),
      );
      const e = errorOf(r);
      expect(e.condition).to.equal("bad-request");
      expect(e.text).to.match(/push key must be 32 bytes/);
      short(e.text);
    }
    const d0 = await look.device(s.app(), s.jid("gina"), "d0");
    expect(d0?.platform).to.equal("other");
    expect(d0?.pushToken).to.equal(undefined);
    // base64url (unpadded) is accepted and stored in standard base64.
    await c.cardlink(
      "set",
      "device",
      { id: "d0", platform: "ios" },
      xml("push", { token: "tok-new", key: key32.toString("base64url") }),
    );
    expect((await look.device(s.app(), s.jid("gina"), "d0"))?.pushKey).to.equal(key32.toString("base64"));
  });

  it("a 100 kB input comes back as a short text in every error", async () => {
    const bob = await connect("bob", "huge");
    const huge = "Q".repeat(100_000);
    const cases: Array<[string, Record<string, string>]> = [
      ["redeem", { code: huge }],
      ["block", { jid: huge }],
      ["exchange-request", { to: `${huge}@${s.prosody.host}x/y` }],
      ["exchange-cancel", { id: huge }],
      ["exchange-requests", { direction: huge }],
      ["card", { owner: huge }],
    ];
    for (const [name, attrs] of cases) {
      const type = name === "exchange-requests" || name === "card" ? "get" : "set";
      const e = errorOf(await bob.cardlinkRaw(type, name, attrs));
      expect(e.condition, name).to.not.equal("");
      short(e.text);
      expect(e.text, name).to.include("…");
    }
    // Unknown namespace and element names are client input too.
    const r = await bob.iqRaw("get", bob.comp, xml(`x${"y".repeat(50_000)}`, { xmlns: `urn:${huge}` }));
    short(errorOf(r).text);
  });

  it("the card owner attribute is compared normalized (mixed case accepted)", async () => {
    const dave = clients.find((c) => c.jid.startsWith("dave@")) as CardClient;
    const mixed = s.jid("dave").toUpperCase();
    const r = await dave.cardlink(
      "set",
      "card",
      { owner: mixed },
      xml("vcard", { xmlns: NS.VCARD4 }, xml("fn", {}, xml("text", {}, "Dave"))),
    );
    expect(r.getChild("card")?.attrs.owner).to.equal(s.jid("dave"));
    const got = await dave.cardlink("get", "card", { owner: ` ${mixed} ` });
    expect(got.getChild("card")?.attrs.owner).to.equal(s.jid("dave"));
    // Someone else's JID in any case is still refused.
    const e = errorOf(
      await dave.cardlinkRaw(
        "set",
        "card",
        { owner: s.jid("bob").toUpperCase() },
        xml("vcard", { xmlns: NS.VCARD4 }, xml("fn", {}, xml("text", {}, "Not Bob"))),
      ),
    );
    expect(e.condition).to.equal("forbidden");
  });

  it("a request to an account that does not exist is answered exactly like one to an account that does", async () => {
    const frank = clients.find((c) => c.jid.startsWith("frank@")) as CardClient;
    const real = await frank.cardlinkRaw("set", "exchange-request", { to: s.jid("bob") });
    const ghost = await frank.cardlinkRaw("set", "exchange-request", { to: s.jid("ghost-nobody") });
    const shape = (r: Element): Record<string, unknown> => {
      const p = r.getChild("exchange-request", NS.CARDLINK) as Element;
      return {
        type: r.attrs.type,
        attrs: Object.keys(p.attrs).sort(),
        ttl: Math.round((Date.parse(String(p.attrs.expires)) - Date.now()) / 60_000),
      };
    };
    expect(shape(ghost)).to.deep.equal(shape(real));
    // Held like any request: it counts against the sender's cap and is listed as outgoing.
    const out = await frank.cardlink("get", "exchange-requests", { direction: "outgoing" });
    const to = (out.getChild("exchange-requests")?.getChildren("exchange-request") ?? []).map(
      (x) => x.attrs.to,
    );
    expect(to).to.include.members([s.jid("bob"), s.jid("ghost-nobody")]);
  });

  it("redeem: failures are limited per user (policy-violation wait, retry time), another user redeems meanwhile", async () => {
    const carol = clients.find((c) => c.jid.startsWith("carol@")) as CardClient;
    const dave = clients.find((c) => c.jid.startsWith("dave@")) as CardClient;
    for (let i = 0; i < LIMITS.redeemFailuresPerUser; i++) {
      const e = errorOf(await carol.cardlinkRaw("set", "redeem", { code: `ABCDE-FGH${22 + i}` }));
      expect(e.condition).to.equal("item-not-found");
    }
    // Even a real code is refused now, and stays usable for someone else (one of erin's, from the codes test).
    const { code } = (await look.anyCode(s.app(), s.jid("erin"))) as {
      code: string;
    };
    const [limited, other] = await Promise.all([
      carol.cardlinkRaw("set", "redeem", { code }),
      dave.cardlinkRaw("set", "redeem", { code }),
    ]);
    const e = errorOf(limited);
    expect(e).to.deep.include({ condition: "policy-violation", type: "wait" });
    expect(e.text).to.match(/too many failed redeem attempts from you; retry in \d+ (s|min)/);
    expect(other.attrs.type).to.equal("result");
    expect(await look.binding(s.app(), s.jid("carol"), s.jid("erin"))).to.equal(undefined);
    expect(await look.binding(s.app(), s.jid("dave"), s.jid("erin"))).to.not.equal(undefined);
  });

  it("redeem: the sending domain's failure budget is above one user's, and when many users exhaust it they wait", async () => {
    // carol used 3 of the host's 5; one more user's two failures use up the rest.
    const frank = clients.find((c) => c.jid.startsWith("frank@")) as CardClient;
    const bob = clients.find((c) => c.jid.startsWith("bob@")) as CardClient;
    for (let i = 0; i < 2; i++)
      expect(
        errorOf(await frank.cardlinkRaw("set", "redeem", { code: `ZZZZZ-ZZZ${22 + i}` })).condition,
      ).to.equal("item-not-found");
    const e = errorOf(await bob.cardlinkRaw("set", "redeem", { code: "ZZZZZ-ZZZ99" }));
    expect(e).to.deep.include({ condition: "policy-violation", type: "wait" });
    expect(e.text).to.match(new RegExp(`from ${s.prosody.host}; retry in`));
    // Other requests of the same users are unaffected.
    expect((await bob.iqRaw("get", bob.comp, xml("ping", { xmlns: NS.PING }))).attrs.type).to.equal("result");
  });

  it("presence: at most limits.resourcesPerUser resources are tracked per user, the most recent ones", async () => {
    for (const r of ["r1", "r2", "r3"]) await connect("alice", r);
    const presence = (): Promise<string[]> => look.resourcesOf(s.app(), s.jid("alice"));
    await waitFor(async () => (await presence()).includes(`${s.jid("alice")}/r3`), "r3 tracked");
    expect(await presence()).to.have.length(2);
    expect(await presence()).to.deep.equal([`${s.jid("alice")}/r2`, `${s.jid("alice")}/r3`]);
  });
});
