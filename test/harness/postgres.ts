/**
 * A throwaway PostgreSQL 15 cluster per test run (Debian's binaries in /usr/lib/postgresql/15/bin): initdb into a
 * temp dir, the postmaster in the foreground as our child on a free loopback port (its unix socket in the run dir,
 * never /var/run/postgresql), trust auth on loopback, fsync off. `stop()` ends it and removes the dir; a process
 * exit handler does the same when a run ends without reaching it.
 *
 * Why this shape (observed here):
 * - PostgreSQL refuses to run as root. As root, initdb and postgres run as the `postgres` user with
 *   `runuser -u postgres --` and the run dir is chowned to it (like ejabberd in ejabberd.ts).
 * - The postmaster's pid comes from postmaster.pid (runuser sits between us and it), so stop signals it directly:
 *   SIGINT (fast shutdown), SIGQUIT if it is still there after a few seconds.
 * - CARDLINK_TEST_PG_URL (a superuser URL of an existing server) is used instead when set: databases are created
 *   and dropped in it, nothing is started.
 */
import { spawn, execFileSync, type ChildProcess } from "node:child_process";
import { chownSync, existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import pg from "pg";
import { freePort, sleep, waitFor } from "./ports.js";

export const PG_BIN = process.env.CARDLINK_TEST_PG_BIN ?? "/usr/lib/postgresql/15/bin";
const USER = "postgres";

export interface PostgresServer {
  /** A URL for `database` on this server (superuser, loopback). */
  url(database: string): string;
  /** Creates an empty database and returns its URL. */
  createDatabase(): Promise<string>;
  /** Drops every database createDatabase made (connections to them are cut). */
  dropDatabases(): Promise<void>;
  /**
   * `pg_ctl restart -m fast` of the throwaway cluster (same port, data kept): every connection is cut and the
   * server is away for a moment. Not available with CARDLINK_TEST_PG_URL (not our server).
   */
  restart(o?: { downMs?: number }): Promise<void>;
  /** The postmaster's pid (benchmarks read its and its backends' CPU); undefined for an external server. */
  pid(): number | undefined;
  stop(): Promise<void>;
}

let counter = 0;

/** Starts a cluster (or attaches to CARDLINK_TEST_PG_URL). */
export async function startPostgres(): Promise<PostgresServer> {
  const external = process.env.CARDLINK_TEST_PG_URL;
  if (external)
    return attach(
      new URL(external),
      async () => undefined,
      async () => {
        throw new Error("restart() needs the harness's own cluster (CARDLINK_TEST_PG_URL is set)");
      },
    );
  if (!existsSync(path.join(PG_BIN, "postgres"))) {
    throw new Error(
      `PostgreSQL binaries not found in ${PG_BIN} (apt-get install postgresql, or set CARDLINK_TEST_PG_URL)`,
    );
  }
  const root = process.getuid?.() === 0;
  const dir = mkdtempSync(path.join(os.tmpdir(), "cardlink-pg-"));
  const data = path.join(dir, "data");
  if (root) {
    const uid = Number(execFileSync("id", ["-u", USER]).toString().trim());
    const gid = Number(execFileSync("id", ["-g", USER]).toString().trim());
    chownSync(dir, uid, gid);
  }
  const as = (cmd: string, args: string[]): [string, string[]] =>
    root ? ["runuser", ["-u", USER, "--", cmd, ...args]] : [cmd, args];
  let child: ChildProcess | undefined;
  let pid: number | undefined;
  const output: string[] = [];
  const kill = (signal: NodeJS.Signals) => {
    try {
      if (pid) process.kill(pid, signal);
    } catch {
      // already gone
    }
  };
  // The run ends (or mocha --exit) without stop(): do not leave a postmaster or its dir behind.
  const onExit = () => {
    kill("SIGQUIT");
    rmSync(dir, { recursive: true, force: true });
  };
  process.on("exit", onExit);
  const stopCluster = async () => {
    process.off("exit", onExit);
    if (pid) {
      kill("SIGINT");
      const gone = () => {
        try {
          process.kill(pid as number, 0);
          return false;
        } catch {
          return true;
        }
      };
      for (let i = 0; i < 200 && !gone(); i++) await sleep(25);
      if (!gone()) kill("SIGQUIT");
      for (let i = 0; i < 200 && !gone(); i++) await sleep(25);
    }
    child?.kill("SIGKILL");
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    const [cmd, args] = as(path.join(PG_BIN, "initdb"), [
      "-D",
      data,
      "-U",
      USER,
      "--auth=trust",
      "-E",
      "UTF8",
      "--locale=C",
      "--no-sync",
    ]);
    execFileSync(cmd, args, { stdio: "pipe" });
    const port = await freePort();
    const [pcmd, pargs] = as(path.join(PG_BIN, "postgres"), [
      "-D",
      data,
      "-p",
      String(port),
      "-k",
      dir,
      "-c",
      "listen_addresses=127.0.0.1",
      // A throwaway cluster: durability buys nothing here and costs the shared disk.
      "-c",
      "fsync=off",
      "-c",
      "synchronous_commit=off",
      "-c",
      "full_page_writes=off",
      "-c",
      "max_connections=200",
      "-c",
      "shared_buffers=32MB",
    ]);
    child = spawn(pcmd, pargs, { stdio: ["ignore", "pipe", "pipe"] });
    const keep = (b: Buffer) => {
      output.push(b.toString());
      if (output.length > 200) output.shift();
    };
    child.stdout?.on("data", keep);
    child.stderr?.on("data", keep);
    const base = new URL(`postgresql://${USER}@127.0.0.1:${port}/postgres`);
    await waitFor(
      async () => {
        if (child?.exitCode !== null) throw new Error(`postgres exited: ${output.join("")}`);
        const c = new pg.Client({ connectionString: base.href });
        c.on("error", () => undefined);
        try {
          await c.connect();
          await c.end();
          return true;
        } catch {
          return false;
        }
      },
      "PostgreSQL to accept connections",
      30_000,
    );
    pid = Number(readFileSync(path.join(data, "postmaster.pid"), "utf8").split("\n")[0]);
    const ctl = (args: string[]): void => {
      const [c, a] = as(path.join(PG_BIN, "pg_ctl"), ["-D", data, "-w", "-t", "60", ...args]);
      execFileSync(c, a, { stdio: "pipe" });
    };
    const restart = async (o: { downMs?: number } = {}): Promise<void> => {
      if (o.downMs) {
        // Down for a while (a restart that outlasts a unit of work's retries): stop, wait, start with the
        // options of the first start (postmaster.opts is only read by `restart`).
        ctl(["-m", "fast", "stop"]);
        await sleep(o.downMs);
        const opts = pargs.slice(pargs.indexOf(data) + 1).join(" ");
        ctl(["-l", path.join(dir, "restart.log"), "-o", opts, "start"]);
        pid = Number(readFileSync(path.join(data, "postmaster.pid"), "utf8").split("\n")[0]);
        return;
      }
      // pg_ctl reads the options the postmaster was started with from postmaster.opts; the new postmaster is
      // pg_ctl's child, not ours: its pid is read again for stop().
      const [rcmd, rargs] = as(path.join(PG_BIN, "pg_ctl"), [
        "-D",
        data,
        "-m",
        "fast",
        "-w",
        "-t",
        "60",
        "-l",
        path.join(dir, "restart.log"),
        "restart",
      ]);
      execFileSync(rcmd, rargs, { stdio: "pipe" });
      pid = Number(readFileSync(path.join(data, "postmaster.pid"), "utf8").split("\n")[0]);
    };
    return Object.assign(attach(base, stopCluster, restart), { pid: () => pid });
  } catch (e) {
    await stopCluster();
    throw e;
  }
}

function attach(
  base: URL,
  stopServer: () => Promise<void>,
  restartServer: () => Promise<void>,
): PostgresServer {
  const made: string[] = [];
  const url = (database: string) => {
    const u = new URL(base.href);
    u.pathname = `/${database}`;
    return u.href;
  };
  const admin = async <T>(f: (c: pg.Client) => Promise<T>): Promise<T> => {
    const c = new pg.Client({ connectionString: url(base.pathname.slice(1) || "postgres") });
    await c.connect();
    try {
      return await f(c);
    } finally {
      await c.end();
    }
  };
  return {
    url,
    pid: () => undefined,
    async createDatabase() {
      const name = `cardlink_test_${process.pid}_${++counter}`;
      // template0: nothing a previous test (or the server's owner) added to template1 leaks in.
      await admin((c) => c.query(`CREATE DATABASE ${name} TEMPLATE template0`));
      made.push(name);
      return url(name);
    },
    async dropDatabases() {
      const names = made.splice(0);
      if (names.length === 0) return;
      await admin(async (c) => {
        for (const n of names) await c.query(`DROP DATABASE IF EXISTS ${n} WITH (FORCE)`);
      });
    },
    restart: restartServer,
    async stop() {
      try {
        await this.dropDatabases();
      } finally {
        await stopServer();
      }
    },
  };
}
