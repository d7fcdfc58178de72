/**
 * The XMPP server a test run uses: Prosody (default) or ejabberd, chosen once per run by the environment
 * (CARDLINK_TEST_SERVER=ejabberd). Suites build their server with newXmppServer() and use only XmppServer, so the
 * same suite proves cardlink on both. A test that depends on one server's own behaviour calls onlyOn(), which
 * skips it on the other server with the reason printed (never silently).
 */
import { EjabberdServer } from "./ejabberd.js";
import { ProsodyServer, type ProsodyOptions } from "./prosody.js";

export type ServerKind = "prosody" | "ejabberd";

/** What the suites use of a test server; ProsodyServer and EjabberdServer both implement it. */
export interface XmppServer {
  readonly kind: ServerKind;
  /** The users' domain (a VirtualHost on Prosody, a `hosts` entry on ejabberd). */
  readonly host: string;
  /** The XEP-0114 component domain cardlink connects as. */
  readonly componentDomain: string;
  readonly secret: string;
  c2sPort: number;
  componentPort: number;
  /** cardlink's `service` (xmpp://127.0.0.1:<componentPort>). */
  readonly service: string;
  start(): Promise<void>;
  stop(): Promise<void>;
  /** Stops and starts again on the same ports with the same accounts and stored data. */
  restart(): Promise<void>;
  /** Creates accounts (fast path; each server's own mechanism). */
  createUsers(users: Array<{ user: string; password: string }>): void | Promise<void>;
  logTail(lines?: number): string;
  /** Removes the run directory (unless kept for debugging). */
  cleanup(): void;
}

/** Options both servers understand; `disableModules` uses Prosody's module names (mapped for ejabberd). */
export type ServerOptions = Pick<ProsodyOptions, "host" | "componentDomain" | "disableModules">;

export function testServerKind(): ServerKind {
  const v = process.env.CARDLINK_TEST_SERVER ?? "prosody";
  if (v !== "prosody" && v !== "ejabberd")
    throw new Error(`CARDLINK_TEST_SERVER must be prosody or ejabberd, not ${JSON.stringify(v)}`);
  return v;
}

/** The run's test server (not started yet). */
export function newXmppServer(opts: ServerOptions = {}): XmppServer {
  return testServerKind() === "ejabberd" ? new EjabberdServer(opts) : new ProsodyServer(opts);
}

/** "real Prosody" / "real ejabberd", for suite titles. */
export const serverLabel = (): string => `real ${testServerKind() === "ejabberd" ? "ejabberd" : "Prosody"}`;

const printed = new Set<string>();

/**
 * Skips the calling test or suite (`ctx` is mocha's `this`) unless the run's server is `kind`, printing why.
 * Use it only for behaviour that belongs to one server (a Prosody module, Prosody's vCard), not to hide a bug.
 */
export function onlyOn(kind: ServerKind, ctx: Mocha.Context, reason: string): void {
  const current = testServerKind();
  if (current === kind) return;
  const title = ctx.currentTest?.fullTitle() ?? ctx.test?.fullTitle() ?? "(suite)";
  const line = `skipped on ${current}: ${title}: ${reason}`;
  if (!printed.has(line)) {
    printed.add(line);
    process.stderr.write(`  [${line}]\n`);
  }
  ctx.skip();
}
