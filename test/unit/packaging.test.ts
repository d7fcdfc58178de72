import { expect } from "chai";
import { existsSync, readFileSync } from "node:fs";

describe("packaging: the systemd unit in scripts/", () => {
  const unit = readFileSync("scripts/cardlink.service", "utf8");
  const directives = new Map<string, string[]>();
  for (const line of unit.split("\n")) {
    const m = /^([A-Za-z]+)=(.*)$/.exec(line);
    if (m) directives.set(m[1] as string, [...(directives.get(m[1] as string) ?? []), m[2] as string]);
  }
  const one = (k: string): string | undefined => directives.get(k)?.[0];

  it("runs the cardlink command's `run` from the built tree, with reload on SIGHUP", () => {
    const exec = one("ExecStart") as string;
    expect(exec).to.match(/\/dist\/component\/cli\.js run --config \/etc\/cardlink\/config\.json$/);
    expect(existsSync("dist/component/cli.js"), "the entry ExecStart names is built").to.equal(true);
    expect(one("ExecReload")).to.equal("/bin/kill -HUP $MAINPID");
  });

  it("is hardened and does not restart on a configuration error", () => {
    expect(one("ProtectSystem")).to.equal("strict");
    expect(one("StateDirectory")).to.equal("cardlink");
    expect(one("RestartPreventExitStatus")).to.equal("2");
    expect(one("Restart")).to.equal("on-failure");
    for (const k of ["NoNewPrivileges", "PrivateTmp", "ProtectHome", "PrivateDevices", "RestrictSUIDSGID"]) {
      expect(one(k), k).to.equal("true");
    }
    expect(one("CapabilityBoundingSet")).to.equal("");
    // Node's JIT needs writable+executable memory: the one protection that must stay off.
    expect(one("MemoryDenyWriteExecute")).to.equal("false");
  });
});
