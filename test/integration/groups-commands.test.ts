/**
 * The groups feature's XEP-0050 ad-hoc commands (PROTOCOL.md §21.11) with a real Prosody and real @xmpp/client
 * clients: create, invite, answer (accept and decline), list members, exempt and lift, each checked against the
 * IQ API's state; a refusal answered with the IQ's error and nothing written; and a form over more groups than fit
 * one stanza (link.stanzaLimitBytes 48 KiB) cut to the budget with a note; and `<group-share/>` (a member's policy
 * for the group changed after joining, PROTOCOL §21.12) and group codes (§21.13). With GROUPS_CAPTURE=FILE the
 * command stanzas are written to FILE (PROTOCOL.md's examples).
 */
import { expect } from "chai";
import { writeFileSync } from "node:fs";
import type { Cardlink } from "../../component/runtime/app.js";
import { NS } from "../../stanzas/ns.js";
import { startInProcess, testConfig } from "../harness/cardlink.js";
import { cardClient, tel, type CardClient } from "../harness/cardclient.js";
import { errorOf, xml, type Element } from "../harness/clients.js";
import { newXmppServer, serverLabel } from "../harness/server.js";

const NODE = (n: string): string => `urn:cardlink:cmd:${n}`;
const LIMIT = 48 * 1024;

function field(form: Element | undefined, name: string): Element | undefined {
  return form?.getChildren("field").find((f) => f.attrs.var === name);
}
const values = (f: Element | undefined): string[] => (f?.getChildren("value") ?? []).map((v) => v.getText());
const options = (f: Element | undefined): string[] =>
  (f?.getChildren("option") ?? []).map((o) => o.getChild("value")?.getText() ?? "");
const noteText = (c: Element): string => c.getChild("note")?.getText() ?? "";

function submit(v: Record<string, string | string[]>): Element {
  return xml(
    "x",
    { xmlns: NS.DATA, type: "submit" },
    ...Object.entries(v).map(([k, x]) =>
      xml("field", { var: k }, ...(Array.isArray(x) ? x : [x]).map((y) => xml("value", {}, y))),
    ),
  );
}

describe(`contact groups: ad-hoc commands (${serverLabel()}, real clients)`, function () {
  this.timeout(60_000);
  const prosody = newXmppServer();
  let app: Cardlink;
  const clients: CardClient[] = [];
  const captured: string[] = [];
  const jid = (u: string): string => `${u}@${prosody.host}`;

  const raw = async (c: CardClient, node: string, sessionid?: string, form?: Element): Promise<Element> => {
    const req = xml(
      "command",
      { xmlns: NS.COMMANDS, node, action: sessionid ? "complete" : "execute", sessionid },
      form,
    );
    const r = await c.iqRaw("set", c.comp, req);
    captured.push(`--- ${c.jid} ${node}\n${req.toString()}\n${r.toString()}`);
    return r;
  };
  const step = async (c: CardClient, node: string, sessionid?: string, form?: Element): Promise<Element> => {
    const r = await raw(c, node, sessionid, form);
    expect(r.attrs.type, `${node}: ${r.toString()}`).to.equal("result");
    const cmd = r.getChild("command", NS.COMMANDS) as Element;
    // Every answer fits the link's limit (the budget is the limit minus the envelope).
    expect(Buffer.byteLength(r.toString())).to.be.at.most(LIMIT);
    return cmd;
  };
  /** Runs a two-stage command: execute, then submit `v` in its session; returns both steps. */
  const run2 = async (c: CardClient, node: string, v: Record<string, string | string[]>) => {
    const first = await step(c, node);
    expect(first.attrs.status, first.toString()).to.equal("executing");
    // As a client does: the form's defaults for what the user left alone.
    const defaults: Record<string, string[]> = {};
    for (const f of first.getChild("x", NS.DATA)?.getChildren("field") ?? [])
      if (f.attrs.var && values(f).length > 0) defaults[String(f.attrs.var)] = values(f);
    const last = await step(c, node, String(first.attrs.sessionid), submit({ ...defaults, ...v }));
    expect(last.attrs.status).to.equal("completed");
    return { first, last };
  };
  const connect = async (u: string): Promise<CardClient> => {
    const c = await cardClient(prosody, u, { resource: "desk" });
    clients.push(c);
    return c;
  };

  before(async () => {
    await prosody.start();
    await prosody.createUsers(["ann", "ben", "cat", "dan"].map((u) => ({ user: u, password: `${u}pw` })));
    app = await startInProcess(
      testConfig(prosody, {
        link: { stanzaLimitBytes: LIMIT },
        card: { maxBytes: 8192, maxPhotoBytes: 4096 },
        groups: { ownedPerUser: 400, joinedPerUser: 400 },
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

  it("create, invite, accept, decline, list members, exempt and lift — the same state as the IQ API", async () => {
    const ann = await connect("ann");
    const ben = await connect("ben");
    const cat = await connect("cat");
    await ann.setCard("Ann Example", [tel("tel:+1-555-0100", "work")]);
    await ben.setCard("Ben Example");

    const none = await step(ann, NODE("group-members"));
    expect(none.attrs.status).to.equal("completed");
    expect(noteText(none)).to.equal("You are in no group.");

    const created = await run2(ann, NODE("group-create"), {
      name: "Choir",
      description: "Thursdays",
      invite: "admins",
      share: ["tel"],
    });
    expect(options(field(created.first.getChild("x", NS.DATA), "share"))).to.include("tel");
    expect(noteText(created.last)).to.match(/^Created the group Choir\./);
    const groups = (await ann.cardlink("get", "groups")).getChild("groups")?.getChildren("group") ?? [];
    expect(groups.map((g) => [g.attrs.name, g.attrs.invite, g.attrs.role])).to.deep.equal([
      ["Choir", "admins", "owner"],
    ]);
    const g = String(groups[0]?.attrs.id);
    expect(
      groups[0]
        ?.getChild("share")
        ?.getChildren("field")
        .map((f) => f.getText()),
    ).to.deep.equal(["tel"]);

    const inv = await run2(ann, NODE("group-invite"), { group: g, jid: jid("ben") });
    expect(options(field(inv.first.getChild("x", NS.DATA), "group"))).to.deep.equal([g]);
    expect(noteText(inv.last)).to.match(new RegExp(`^Invited ${jid("ben")} to Choir`));
    await run2(ann, NODE("group-invite"), { group: g, jid: jid("cat") });

    // Ben accepts through the command (sharing everything) and gets Ann's card as a member.
    const card = ben.waitForUpdate(
      (u) => u.kind === "card" && u.content.attrs.owner === jid("ann"),
      "ann's card",
    );
    const acc = await run2(ben, NODE("group-invitations"), { answer: "accept" });
    expect(options(field(acc.first.getChild("x", NS.DATA), "invitation"))).to.have.length(1);
    expect(noteText(acc.last)).to.equal("You joined Choir (2 members).");
    expect((await card).content.toString()).to.include("tel:+1-555-0100");

    // Cat declines: no longer invited, not a member.
    const dec = await run2(cat, NODE("group-invitations"), { answer: "decline" });
    expect(noteText(dec.last)).to.equal("Declined.");
    expect(
      (await cat.cardlink("get", "group-invitations"))
        .getChild("group-invitations")
        ?.getChildren("group-invitation"),
    ).to.deep.equal([]);
    expect(noteText(await step(cat, NODE("group-invitations")))).to.equal("No group invitations.");

    const members = await run2(ann, NODE("group-members"), { group: g });
    const form = members.last.getChild("x", NS.DATA);
    expect(values(field(form, "members"))).to.deep.equal([`${jid("ann")} (owner)`, `${jid("ben")} (member)`]);

    // A refusal is the IQ's error (Ben may not invite: invite='admins'), and nothing is written.
    const first = await step(ben, NODE("group-invite"));
    const refused = await raw(
      ben,
      NODE("group-invite"),
      String(first.attrs.sessionid),
      submit({ group: g, jid: jid("dan") }),
    );
    expect(refused.attrs.type).to.equal("error");
    expect(errorOf(refused)).to.deep.include({
      condition: "forbidden",
      text: "only the owner and admins may invite to this group",
    });
    const dan = await connect("dan");
    expect(
      (await dan.cardlink("get", "group-invitations"))
        .getChild("group-invitations")
        ?.getChildren("group-invitation"),
    ).to.deep.equal([]);

    // Exempt Ben (withdrawing his copy), then lift it: the exemptions list follows.
    const ex = await run2(ann, NODE("group-exempt"), { group: g, jid: jid("ben"), withdraw: "1" });
    expect(noteText(ex.last)).to.include(jid("ben"));
    const listed = async (): Promise<string[]> =>
      (
        (await ann.cardlink("get", "group-exemptions")).getChild("group-exemptions")?.getChildren("exempt") ??
        []
      ).map((e) => String(e.attrs.jid));
    expect(await listed()).to.deep.equal([jid("ben")]);
    const back = ben.waitForUpdate(
      (u) => u.kind === "card" && u.content.attrs.owner === jid("ann"),
      "card back",
    );
    const un = await run2(ann, NODE("group-unexempt"), { jid: jid("ben") });
    expect(options(field(un.first.getChild("x", NS.DATA), "jid"))).to.deep.equal([jid("ben")]);
    expect(await listed()).to.deep.equal([]);
    expect((await back).content.toString()).to.include("tel:+1-555-0100");
    expect(noteText(await step(ann, NODE("group-unexempt")))).to.equal("You exempt no one.");
  });

  it("<group-share/>: a member narrows their policy for the group; co-members get the re-filtered card", async () => {
    const [ann, ben] = clients as [CardClient, CardClient];
    const g = String(
      ((await ann.cardlink("get", "groups")).getChild("groups")?.getChildren("group") ?? []).find(
        (x) => x.attrs.name === "Choir",
      )?.attrs.id,
    );
    const narrowed = ben.waitForUpdate(
      (u) =>
        u.kind === "card" && u.content.attrs.owner === jid("ann") && !u.content.toString().includes("tel:"),
      "ann's narrowed card",
    );
    const req = xml(
      "group-share",
      { xmlns: NS.CARDLINK, group: g },
      xml("share", {}, xml("field", {}, "fn")),
    );
    const r = await ann.iqRaw("set", ann.comp, req);
    captured.push(`--- ${ann.jid} group-share\n${req.toString()}\n${r.toString()}`);
    expect(r.attrs.type).to.equal("result");
    const share = r.getChild("group", NS.CARDLINK)?.getChild("share");
    expect(share?.getChildren("field").map((f) => f.getText())).to.deep.equal(["fn"]);
    const u = await narrowed;
    captured.push(`--- notice card\n${u.content.toString()}`);
    expect(u.content.toString()).to.include("Ann Example");
    const bad = await ann.iqRaw("set", ann.comp, xml("group-share", { xmlns: NS.CARDLINK, group: g }));
    expect(errorOf(bad)).to.deep.include({
      condition: "bad-request",
      text: "<group-share/> needs a <share/> child (empty = the whole card)",
    });
  });

  it("group codes: the owner makes one, another user redeems it and joins; a used or mistyped code is refused", async () => {
    const [ann, , cat] = clients as [CardClient, CardClient, CardClient];
    const dan = clients[3] as CardClient;
    const g = String(
      ((await ann.cardlink("get", "groups")).getChild("groups")?.getChildren("group") ?? []).find(
        (x) => x.attrs.name === "Choir",
      )?.attrs.id,
    );
    const ask = async (c: CardClient, el: Element): Promise<Element> => {
      const r = await c.iqRaw("set", c.comp, el);
      captured.push(`--- ${c.jid} ${el.name}\n${el.toString()}\n${r.toString()}`);
      return r;
    };
    const made = await ask(ann, xml("group-code", { xmlns: NS.CARDLINK, group: g }));
    const k = made.getChild("group-code", NS.CARDLINK) as Element;
    const code = String(k.attrs.code);
    expect(k.attrs.uri).to.equal(`xmpp:cards.${prosody.host}?cardlink;group-code=${code}`);
    const annCard = dan.waitForUpdate(
      (u) => u.kind === "card" && u.content.attrs.owner === jid("ann"),
      "ann's card for dan",
    );
    const joined = await ask(
      dan,
      xml(
        "group-redeem",
        { xmlns: NS.CARDLINK, code: code.toLowerCase() },
        xml("share", {}, xml("field", {}, "fn")),
      ),
    );
    expect(joined.attrs.type, joined.toString()).to.equal("result");
    expect(joined.getChild("group", NS.CARDLINK)?.attrs).to.deep.include({
      id: g,
      role: "member",
      members: "3",
    });
    expect((await annCard).content.toString()).to.include("Ann Example");
    const again = await ask(cat, xml("group-redeem", { xmlns: NS.CARDLINK, code }));
    expect(errorOf(again)).to.deep.include({
      condition: "item-not-found",
      text: "no such group code (it may have been used already)",
    });
    const bad = await ask(cat, xml("group-redeem", { xmlns: NS.CARDLINK, code: "!!" }));
    expect(errorOf(bad)).to.deep.include({
      condition: "bad-request",
      text: "'!!' is not a group code (10 letters and digits, e.g. ABCDE-FGH23)",
    });
    const members = (await ann.cardlink("get", "group-members", { group: g }))
      .getChild("group-members")
      ?.getChildren("member")
      .map((m) => String(m.attrs.jid));
    expect(members).to.include(jid("dan"));
  });

  it("group codes by command: make one for a group, another user joins with it", async () => {
    const [ann, , cat] = clients as [CardClient, CardClient, CardClient];
    const made = await run2(ann, NODE("group-code"), {});
    const text = noteText(made.last);
    const code = /: ([A-Z2-9]{5}-[A-Z2-9]{5}) \(once, until /.exec(text)?.[1];
    expect(code, text).to.be.a("string");
    expect(text).to.include(`Link: xmpp:cards.${prosody.host}?cardlink;group-code=${String(code)}`);
    const joined = await run2(cat, NODE("group-redeem"), { code: String(code).toLowerCase() });
    expect(noteText(joined.last)).to.match(/^You joined Choir \(\d+ members\)\.$/);
    const members = (
      await ann.cardlink("get", "group-members", {
        group: String(
          made.first.getChild("x", NS.DATA)?.getChildren("field")[0]?.getChild("value")?.getText(),
        ),
      })
    )
      .getChild("group-members")
      ?.getChildren("member")
      .map((m) => String(m.attrs.jid));
    expect(members).to.include(jid("cat"));
    const again = await step(cat, NODE("group-redeem"));
    const refused = await raw(
      cat,
      NODE("group-redeem"),
      String(again.attrs.sessionid),
      submit({ code: String(code) }),
    );
    expect(errorOf(refused)).to.deep.include({
      condition: "item-not-found",
      text: "no such group code (it may have been used already)",
    });
  });

  it("a form over more groups than fit one stanza is cut to the budget, with a note naming the IQ that pages", async () => {
    const ann = clients[0] as CardClient;
    const long = (i: number): string =>
      `${String(i).padStart(3, "0")} ${"a long group name ".repeat(5)}`.slice(0, 100);
    for (let i = 0; i < 200; i++) await ann.cardlink("set", "group-create", { name: long(i) });
    const first = await step(ann, NODE("group-members"));
    const shown = options(field(first.getChild("x", NS.DATA), "group"));
    expect(shown.length).to.be.greaterThan(10).and.lessThan(201);
    expect(noteText(first)).to.equal(
      `${201 - shown.length} more group(s) not shown (too many for one form); the IQ API pages them (<groups/> with <set/>).`,
    );
  });
});
