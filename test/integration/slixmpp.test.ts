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
});
