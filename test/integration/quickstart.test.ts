import { expect } from "chai";
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { NS } from "../../stanzas/ns.js";
import { connectClient, xml } from "../harness/clients.js";
import { canConnect, freePort, waitFor } from "../harness/ports.js";

/** The README's first command, for real: scripts/quickstart.sh on free ports, a demo user, then Ctrl-C. */
describe("quick start (scripts/quickstart.sh)", function () {
  this.timeout(120_000);
  let proc: ChildProcess | undefined;
  const runDir = mkdtempSync(path.join(os.tmpdir(), "cardlink-quickstart-"));
  let output = "";

  after(() => {
    if (proc && proc.exitCode === null && proc.pid) process.kill(-proc.pid, "SIGKILL");
    rmSync(runDir, { recursive: true, force: true });
  });

  it("starts Prosody and cardlink with demo users, serves a client, and stops both on Ctrl-C", async () => {
    const c2s = await freePort();
    const component = await freePort();
    const metrics = await freePort();
    // detached: its own process group, so SIGINT reaches it the way Ctrl-C in a terminal does.
    proc = spawn("bash", ["scripts/quickstart.sh"], {
      detached: true,
      stdio: ["ignore", "pipe", "pipe"],
      env: {
        ...process.env,
        C2S_PORT: String(c2s),
        COMPONENT_PORT: String(component),
        METRICS_PORT: String(metrics),
        RUN_DIR: runDir,
        QUICKSTART_SKIP_BUILD: "1",
      },
    });
    proc.stdout?.on("data", (d: Buffer) => (output += d.toString()));
    proc.stderr?.on("data", (d: Buffer) => (output += d.toString()));
    await waitFor(
      () => output.includes("cardlink is running"),
      `quick start ready; output:\n${output}`,
      60_000,
    );
    expect(output).to.include(`127.0.0.1:${c2s}`);
    expect(output).to.include('password "cardlink-demo"');

    const alice = await connectClient({
      port: c2s,
      domain: "localhost",
      username: "alice",
      password: "cardlink-demo",
    });
    try {
      const v = await alice.iq("get", "cards.localhost", xml("query", { xmlns: NS.VERSION }));
      expect(v.getChild("query")?.getChildText("name")).to.equal("cardlink");
      // alice is the demo admin: the stats command is hers.
      const s = await alice.iq(
        "set",
        "cards.localhost",
        xml("command", { xmlns: NS.COMMANDS, node: "urn:cardlink:cmd:stats", action: "execute" }),
      );
      expect(s.getChild("command")?.attrs.status).to.equal("completed");
    } finally {
      await alice.stop();
    }
    const text = await (await fetch(`http://127.0.0.1:${metrics}/metrics`)).text();
    expect(text).to.match(/^cardlink_link_up 1$/m);

    const exited = new Promise<number | null>((r) => proc?.once("exit", (code) => r(code)));
    process.kill(-(proc.pid as number), "SIGINT");
    await exited;
    expect(output).to.include("==> stopping");
    await waitFor(
      async () => !(await canConnect(c2s)) && !(await canConnect(component)),
      "both stopped",
      15_000,
    );
    // cardlink shut down gracefully (drain, close the database), not killed.
    expect(readFileSync(path.join(runDir, "cardlink.log"), "utf8")).to.match(/"event":"stopped"/);
  });
});
