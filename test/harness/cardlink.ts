/** Starts cardlink against a test Prosody: in-process (most tests) or as a child process (kill/restart tests). */
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { createCardlink, type Cardlink } from "../../component/runtime/app.js";
import { loadConfig, type Config } from "../../component/runtime/config.js";
import { coreModules, moduleMigrations } from "../../component/features.js";
import { createLogger } from "../../component/runtime/log.js";
import type { XmppServer } from "./server.js";
import { waitFor } from "./ports.js";

export function testConfig(prosody: XmppServer, overrides: object = {}, dbFile?: string): Config {
  const dir = mkdtempSync(path.join(os.tmpdir(), "cardlink-data-"));
  return loadConfig({
    env: {},
    overrides: {
      domain: prosody.componentDomain,
      secret: prosody.secret,
      service: prosody.service,
      servedHosts: [prosody.host],
      dataDir: dir,
      database: { driver: "sqlite", path: dbFile ?? path.join(dir, "cardlink.sqlite") },
      log: {
        level: process.env.CARDLINK_TEST_LOG ?? "silent",
        rawStream: process.env.CARDLINK_TEST_RAW === "1",
      },
      reconnect: { initialDelayMs: 100, maxDelayMs: 2000 },
      ...overrides,
    },
  });
}

export async function startInProcess(config: Config): Promise<Cardlink> {
  const app = await createCardlink(config, {
    log: createLogger(config.log.level),
    modules: coreModules,
    migrations: moduleMigrations(),
  });
  await app.start();
  await waitFor(() => app.link.online, "cardlink online", 15_000);
  return app;
}

/** cardlink as its own process, configured only through the environment (as a deployment would be). */
export class CardlinkProcess {
  proc: ChildProcess | null = null;
  output = "";

  constructor(private readonly env: Record<string, string>) {}

  static forProsody(
    prosody: XmppServer,
    dbFile: string,
    extra: Record<string, string> = {},
  ): CardlinkProcess {
    return new CardlinkProcess({
      CARDLINK_DOMAIN: prosody.componentDomain,
      CARDLINK_SECRET: prosody.secret,
      CARDLINK_SERVICE: prosody.service,
      CARDLINK_SERVED_HOSTS: prosody.host,
      CARDLINK_DB: dbFile,
      CARDLINK_LOG_LEVEL: "info",
      ...extra,
    });
  }

  /** `nodeArgs` go before the script (e.g. the iq benchmark's --cpu-prof, which NODE_OPTIONS does not accept). */
  start(nodeArgs: readonly string[] = []): void {
    this.output = "";
    const proc = spawn(process.execPath, [...nodeArgs, path.resolve("dist/component/main.js")], {
      env: { PATH: process.env.PATH ?? "", ...this.env },
      stdio: ["ignore", "pipe", "pipe"],
    });
    proc.stdout?.on("data", (d: Buffer) => (this.output += d.toString()));
    proc.stderr?.on("data", (d: Buffer) => (this.output += d.toString()));
    this.proc = proc;
  }

  /** Log lines (pino JSON) parsed. */
  events(): Array<Record<string, unknown>> {
    return this.output
      .split("\n")
      .filter((l) => l.startsWith("{"))
      .map((l) => JSON.parse(l) as Record<string, unknown>);
  }

  async waitForEvent(event: string, count = 1, timeoutMs = 15_000): Promise<void> {
    await waitFor(
      () => this.events().filter((e) => e.event === event).length >= count,
      `cardlink event ${event}`,
      timeoutMs,
    );
  }

  async kill(signal: NodeJS.Signals = "SIGKILL"): Promise<number | null> {
    const proc = this.proc;
    // A process ended by a signal has exitCode null and signalCode set: it will not emit 'exit' again.
    if (!proc || proc.exitCode !== null || proc.signalCode !== null) return proc?.exitCode ?? null;
    const exited = new Promise<number | null>((r) => proc.once("exit", (code) => r(code)));
    proc.kill(signal);
    return exited;
  }
}
