/**
 * A real Prosody per test run: generated config from the shipped prosody.cfg.lua, free loopback ports, a
 * temporary data dir, users created in its storage, and teardown even when tests fail.
 */
import { spawn, execFileSync, type ChildProcess } from "node:child_process";
import { mkdtempSync, writeFileSync, mkdirSync, rmSync, readFileSync, existsSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { generateProsodyConfig } from "../../scripts/prosody-config.js";
import { canConnect, freePort, waitFor } from "./ports.js";

export interface ProsodyOptions {
  host?: string;
  componentDomain?: string;
  extraGlobal?: string;
  fastAuth?: boolean;
  disableModules?: string[];
  /** A second VirtualHost, optionally granting the component XEP-0356 privileges on it (scripts/prosody-config). */
  secondHost?: { host: string; privileged?: boolean };
}

export class ProsodyServer {
  readonly kind = "prosody" as const;
  readonly host: string;
  readonly componentDomain: string;
  readonly secret = "test-secret-" + Math.random().toString(36).slice(2);
  readonly runDir: string;
  readonly configFile: string;
  c2sPort = 0;
  componentPort = 0;
  private proc: ChildProcess | null = null;

  constructor(private readonly opts: ProsodyOptions = {}) {
    this.host = opts.host ?? "localhost";
    this.componentDomain = opts.componentDomain ?? `cards.${this.host}`;
    this.runDir = mkdtempSync(path.join(os.tmpdir(), "cardlink-prosody-"));
    this.configFile = path.join(this.runDir, "prosody.cfg.lua");
  }

  get service(): string {
    return `xmpp://127.0.0.1:${this.componentPort}`;
  }

  /**
   * Starts Prosody. A port found free can be taken by another process before Prosody binds it (other test or
   * benchmark runs on this machine): then new ports are chosen and it tries again, up to three times.
   */
  async start(): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      try {
        await this.startOnce();
        return;
      } catch (e) {
        if (attempt >= 3 || this.restarting) throw e;
        this.c2sPort = 0;
      }
    }
  }

  private restarting = false;

  private async startOnce(): Promise<void> {
    if (!this.c2sPort) {
      this.c2sPort = await freePort();
      this.componentPort = await freePort();
      writeFileSync(
        this.configFile,
        generateProsodyConfig({
          template: path.resolve("prosody.cfg.lua"),
          runDir: this.runDir,
          host: this.host,
          componentDomain: this.componentDomain,
          secret: this.secret,
          c2sPort: this.c2sPort,
          componentPort: this.componentPort,
          fastAuth: this.opts.fastAuth ?? true,
          logLevel: "debug",
          ...(this.opts.extraGlobal ? { extraGlobal: this.opts.extraGlobal } : {}),
          ...(this.opts.disableModules ? { disableModules: this.opts.disableModules } : {}),
          ...(this.opts.secondHost ? { secondHost: this.opts.secondHost } : {}),
        }),
      );
    }
    // Foreground + our own process handle: with -D and the root refusal Prosody can hang instead of exiting.
    const proc = spawn("prosody", ["--config", this.configFile, "-F"], { stdio: ["ignore", "pipe", "pipe"] });
    this.proc = proc;
    let output = "";
    proc.stdout?.on("data", (d: Buffer) => (output += d.toString()));
    proc.stderr?.on("data", (d: Buffer) => (output += d.toString()));
    let exited = false;
    proc.once("exit", () => (exited = true));
    try {
      await waitFor(
        async () => {
          if (exited) throw new Error(`prosody exited at start: ${output}\n${this.logTail()}`);
          return (await canConnect(this.c2sPort)) && (await canConnect(this.componentPort));
        },
        "prosody ports",
        20_000,
      );
    } catch (e) {
      proc.kill("SIGKILL");
      throw e;
    }
  }

  /** Stops Prosody (SIGTERM, then SIGKILL after 5 s). */
  async stop(): Promise<void> {
    const proc = this.proc;
    this.proc = null;
    if (!proc || proc.exitCode !== null) return;
    const exited = new Promise((r) => proc.once("exit", r));
    proc.kill("SIGTERM");
    const t = setTimeout(() => proc.kill("SIGKILL"), 5000);
    await exited;
    clearTimeout(t);
  }

  /** Restarts on the same ports (clients and cardlink reconnect to them). */
  async restart(): Promise<void> {
    await this.stop();
    this.restarting = true;
    try {
      await this.start();
    } finally {
      this.restarting = false;
    }
  }

  /**
   * Creates accounts by writing Prosody's internal_plain account files directly: one file per user, the format
   * mod_auth_internal_plain reads (`return { ["password"] = "..." };`). prosodyctl costs ~0.3 s per user; this
   * makes suites with hundreds of users practical. registerWithProsodyctl() below is the documented path.
   */
  createUsers(users: Array<{ user: string; password: string }>, host = this.host): void {
    const dir = path.join(this.runDir, "data", encodeURIComponent(host).replace(/\./g, "%2e"), "accounts");
    mkdirSync(dir, { recursive: true });
    for (const u of users) {
      writeFileSync(
        path.join(dir, `${u.user}.dat`),
        `return {\n\t["password"] = ${JSON.stringify(u.password)};\n};\n`,
      );
    }
  }

  registerWithProsodyctl(user: string, password: string): void {
    execFileSync("prosodyctl", ["--config", this.configFile, "register", user, this.host, password], {
      stdio: "pipe",
    });
  }

  /**
   * Runs one line of Lua inside the running Prosody through mod_admin_shell (`prosodyctl shell "> …"`, the
   * admin socket in runDir): for stanzas no client can send, e.g. an IQ from a bare JID (Prosody stamps a
   * client's full JID). Returns the shell's output ("Result: …" last).
   */
  shell(lua: string): string {
    return execFileSync("prosodyctl", ["--config", this.configFile, "shell", `> ${lua}`], {
      encoding: "utf8",
      stdio: "pipe",
      timeout: 30_000,
    });
  }

  logTail(lines = 40): string {
    const f = path.join(this.runDir, "prosody.log");
    if (!existsSync(f)) return "";
    return readFileSync(f, "utf8").split("\n").slice(-lines).join("\n");
  }

  cleanup(): void {
    if (process.env.CARDLINK_KEEP_PROSODY === "1") return; // keep logs for debugging
    rmSync(this.runDir, { recursive: true, force: true });
  }
}
