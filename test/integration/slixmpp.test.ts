import { expect } from "chai";
import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import { promisify } from "node:util";
import { NS } from "../../stanzas/ns.js";
import { cardClient } from "../harness/cardclient.js";
import { waitFor } from "../harness/ports.js";
import * as look from "../harness/look.js";
import { useServers } from "../harness/suite.js";

const run = promisify(execFile);
// Debian's python3-slixmpp installs for the system interpreter, not for a pyenv one that may come first in PATH.
const PYTHON = "/usr/bin/python3";

describe("independent client: slixmpp", function () {
  this.timeout(60_000);
  before(function () {
    if (!existsSync(PYTHON)) throw new Error(`${PYTHON} missing: install python3-slixmpp (.ci/run does)`);
  });
  const servers = useServers(["carol", "alice"]);
  const prosody = servers.prosody;

  it("discovers cardlink, reads its version, pings it and gets a proper error for an unknown namespace", async () => {
    const { stdout } = await run(PYTHON, [
      "test/slixmpp/probe.py",
      `carol@${prosody.host}/slix`,
      "carolpw",
      String(prosody.c2sPort),
      prosody.componentDomain,
    ]);
    const r = JSON.parse(stdout.trim().split("\n").pop() as string) as Record<string, unknown>;
    expect(r.error, String(r.error)).to.equal(undefined);
    expect(r.identities).to.include("component/generic");
    expect(r.features).to.include.members([NS.PING, NS.VERSION, NS.COMMANDS]);
    expect(r.version).to.equal("cardlink");
    expect(r.ping).to.equal(true);
    expect(r.unknown).to.equal("service-unavailable");
    expect(String(r.unknown_text)).to.match(/urn:example:unknown/);
  });

  it("holds a card: redeems a code, receives and acknowledges <updates/> (an independent client speaking urn:cardlink:0)", async () => {
    const alice = await cardClient(prosody, "alice");
    try {
      await alice.setCard("Alice Slix");
      const code = String(
        (await alice.cardlink("set", "exchange-code")).getChild("exchange-code")?.attrs.code,
      );
      const holder = run(PYTHON, [
        "test/slixmpp/cardholder.py",
        `carol@${prosody.host}/slix`,
        "carolpw",
        String(prosody.c2sPort),
        prosody.componentDomain,
        code,
        "2",
      ]);
      // Once carol holds alice's card, a change reaches her too.
      await waitFor(
        async () => (await look.holders(servers.app(), servers.jid("alice"))).length === 1,
        "bound",
      );
      await waitFor(
        async () => (await look.pendingCount(servers.app(), servers.jid("carol"))) === 0,
        "first acks",
      );
      await alice.setCard("Alice Slix v2");
      const { stdout } = await holder;
      const r = JSON.parse(stdout.trim().split("\n").pop() as string) as {
        error?: string;
        redeemed_peer?: string;
        updates: Array<{ id: string; kind: string }>;
        cards: Array<{ owner: string; fn: string }>;
      };
      expect(r.error, String(r.error)).to.equal(undefined);
      expect(r.redeemed_peer).to.equal(servers.jid("alice"));
      expect(r.updates.map((u) => u.kind)).to.include.members(["binding", "card"]);
      expect(r.cards.map((c) => c.fn)).to.deep.equal(["Alice Slix", "Alice Slix v2"]);
      // Every update was acknowledged: nothing is left for carol.
      await waitFor(
        async () => (await look.pendingCount(servers.app(), servers.jid("carol"))) === 0,
        "all acked",
      );
    } finally {
      await alice.stop();
    }
  });
  it("is a group member: creates a group and invites, accepts an invitation, is told of a join, leaves (PROTOCOL §21)", async () => {
    const alice = await cardClient(prosody, "alice");
    try {
      await alice.setCard("Alice Groups");
      const g1 = String(
        (await alice.cardlink("set", "group-create", { name: "Alice's group" })).getChild("group")?.attrs.id,
      );
      await alice.cardlink("set", "group-invite", { group: g1, jid: servers.jid("carol") });
      const invitation = alice.waitForUpdate(
        (u) => u.kind === "group-invitation" && u.content.attrs.from === servers.jid("carol"),
        "carol's invitation",
      );
      const left = alice.waitForUpdate(
        (u) =>
          u.kind === "group-member" &&
          u.content.attrs.group === g1 &&
          u.content.attrs.jid === servers.jid("carol") &&
          u.content.attrs.status === "left",
        "carol left",
      );
      const member = run(PYTHON, [
        "test/slixmpp/groupmember.py",
        `carol@${prosody.host}/slix`,
        "carolpw",
        String(prosody.c2sPort),
        prosody.componentDomain,
        servers.jid("alice"),
      ]);
      // Alice accepts the invitation carol's client sent (from carol's new group).
      const inv = await invitation;
      const g2 = String(inv.content.attrs.group);
      await alice.cardlink("set", "group-accept", { id: String(inv.content.attrs.id) });
      const { stdout } = await member;
      const r = JSON.parse(stdout.trim().split("\n").pop() as string) as {
        error?: string;
        created?: { id: string; role: string };
        invited?: string;
        accepted?: { id: string; name: string; members: string };
        left?: string;
        cards: Array<{ owner: string; fn: string }>;
        members: Array<{ jid: string; status: string }>;
      };
      expect(r.error, String(r.error)).to.equal(undefined);
      expect(r.created).to.deep.equal({ id: g2, role: "owner" });
      expect(r.invited).to.equal(servers.jid("alice"));
      expect(r.accepted).to.deep.equal({ id: g1, name: "Alice's group", members: "2" });
      expect(r.members).to.deep.include({ jid: servers.jid("alice"), status: "joined" });
      expect(r.cards.filter((c) => c.owner === servers.jid("alice")).map((c) => c.fn)).to.include(
        "Alice Groups",
      );
      expect(r.left).to.equal(g1);
      await left;
      const jids = async (g: string): Promise<string[]> =>
        (
          (await alice.cardlink("get", "group-members", { group: g }))
            .getChild("group-members")
            ?.getChildren("member") ?? []
        )
          .map((m) => String(m.attrs.jid))
          .sort();
      expect(await jids(g1)).to.deep.equal([servers.jid("alice")]);
      expect(await jids(g2)).to.deep.equal([servers.jid("alice"), servers.jid("carol")].sort());
      await waitFor(
        async () => (await look.pendingCount(servers.app(), servers.jid("carol"))) === 0,
        "carol acked everything",
      );
    } finally {
      await alice.stop();
    }
  });
});
