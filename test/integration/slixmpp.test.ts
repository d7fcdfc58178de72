import { expect } from "chai";
import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import { promisify } from "node:util";
import { NS } from "../../stanzas/ns.js";
import { useServers } from "../harness/suite.js";

const run = promisify(execFile);
// Debian's python3-slixmpp installs for the system interpreter, not for a pyenv one that may come first in PATH.
const PYTHON = "/usr/bin/python3";

describe("independent client: slixmpp", function () {
  this.timeout(60_000);
  before(function () {
    if (!existsSync(PYTHON)) throw new Error(`${PYTHON} missing: install python3-slixmpp (.ci/run does)`);
  });
  const servers = useServers(["carol"]);
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
});
