/**
 * Several cardlink processes on one PostgreSQL behind one ejabberd (issue 13): real child processes
 * (CardlinkProcess, as crash.test.ts starts one), each configured only by a JSON config file as a deployment
 * would be, with queue.exclusive false and queue.persistInflight true. ejabberd balances the component domain
 * over their connections (`domain_balancing` bare_source with component_number = N: ejabberd.ts's
 * DomainBalancing says why the number is needed).
 */
import { writeFileSync, mkdtempSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import pg from "pg";
import { CardlinkProcess } from "./cardlink.js";
import type { XmppServer } from "./server.js";

export interface ClusterOptions {
  server: XmppServer;
  pgUrl: string;
  /** Config keys merged over the cluster's defaults (queue and delivery timings for tests). */
  overrides?: Record<string, unknown>;
}

/** The timings the scale tests use: a silent process is noticed after 3 s, a lease lasts 8 s. */
export const CLUSTER_TIMINGS = {
  queue: { exclusive: false, persistInflight: true, heartbeatMs: 1000, pollMs: 500, leaseMs: 8000 },
  delivery: { ackTimeoutMs: 3000, retryBaseMs: 200, retryMaxMs: 2000 },
};

export class CardlinkCluster {
  readonly procs: CardlinkProcess[] = [];
  readonly configFile: string;
  readonly config: Record<string, unknown>;

  constructor(private readonly o: ClusterOptions) {
    const dir = mkdtempSync(path.join(os.tmpdir(), "cardlink-cluster-"));
    this.configFile = path.join(dir, "cardlink.json");
    this.config = {
      domain: o.server.componentDomain,
      secret: o.server.secret,
      service: o.server.service,
      servedHosts: [o.server.host],
      dataDir: dir,
      database: { driver: "postgres", url: o.pgUrl, poolSize: 8 },
      reconnect: { initialDelayMs: 100, maxDelayMs: 2000 },
      ...CLUSTER_TIMINGS,
      ...(o.overrides ?? {}),
    };
    writeFileSync(this.configFile, JSON.stringify(this.config, null, 2));
  }

  /** Starts one more process; resolves once its component link is up. */
  async add(timeoutMs = 30_000): Promise<CardlinkProcess> {
    const p = new CardlinkProcess({ CARDLINK_CONFIG: this.configFile, CARDLINK_LOG_LEVEL: "info" });
    p.start();
    this.procs.push(p);
    await p.waitForEvent("connected", 1, timeoutMs);
    return p;
  }

  async start(n: number): Promise<void> {
    for (let i = 0; i < n; i++) await this.add();
  }

  /** The live processes (not exited). */
  live(): CardlinkProcess[] {
    return this.procs.filter(
      (p) => p.proc !== null && p.proc.exitCode === null && p.proc.signalCode === null,
    );
  }

  async stop(): Promise<void> {
    await Promise.all(this.live().map((p) => p.kill("SIGTERM")));
  }

  async kill(): Promise<void> {
    await Promise.all(this.live().map((p) => p.kill("SIGKILL")));
  }
}

/** One query on the shared database (the tests look at resources, cursors and entries directly). */
export async function pgQuery<R extends object>(
  url: string,
  sql: string,
  params: unknown[] = [],
): Promise<R[]> {
  const c = new pg.Client({ connectionString: url });
  c.on("error", () => undefined);
  await c.connect();
  try {
    return (await c.query(sql, params)).rows as R[];
  } finally {
    await c.end();
  }
}
