/**
 * Several processes (issue 13): fan-out and request rates of cardlink on SQLite and on PostgreSQL with one
 * process, and on PostgreSQL with two processes behind one ejabberd (domain_balancing bare_source,
 * component_number 2), all in one run, all on ejabberd 23.01 (Prosody takes one connection per component), with
 * the CPU each part spent per delivery and per request: cardlink (its processes), the XMPP server (the beam) and
 * PostgreSQL (the postmaster and its backends).
 *
 * Each scenario gets a fresh ejabberd, database and seeding: HOLDERS holders bound to one owner (seeded through
 * the exchange service before cardlink starts), all online with a directed presence; the owner changes the card
 * ROUNDS times, each time waiting until every holder has that version (deliveries = HOLDERS × ROUNDS); then
 * CLIENTS clients each send REQUESTS card gets one after another. The anchor is the SQLite scenario of the same
 * run: ratios, not absolute times, are what compares (2 shared cores).
 *
 *   node dist/bench/scale.js        (JSON on stdout; needs root for ejabberd and PostgreSQL)
 */
import { mkdtempSync, readFileSync, readdirSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { coreModules } from "../component/features.js";
import { createCardlink } from "../component/runtime/app.js";
import { createLogger } from "../component/runtime/log.js";
import { cardClient, cardSummary, type CardClient } from "../test/harness/cardclient.js";
import { testConfig } from "../test/harness/cardlink.js";
import { CardlinkCluster, CLUSTER_TIMINGS } from "../test/harness/cluster.js";
import { EjabberdServer } from "../test/harness/ejabberd.js";
import * as look from "../test/harness/look.js";
import { waitFor } from "../test/harness/ports.js";
import { startPostgres, type PostgresServer } from "../test/harness/postgres.js";
import { note, procCpu, round, runMain, type ProcCpu } from "./lib.js";

const HOLDERS = Number(process.env.SCALE_HOLDERS ?? 200);
const ROUNDS = Number(process.env.SCALE_ROUNDS ?? 10);
const CLIENTS = 20;
const REQUESTS = 50;

type Scenario = { name: string; backend: "sqlite" | "postgres"; processes: number };
const SCENARIOS: Scenario[] = [
  { name: "sqlite_1", backend: "sqlite", processes: 1 },
  { name: "postgres_1", backend: "postgres", processes: 1 },
  { name: "postgres_2", backend: "postgres", processes: 2 },
];

const ms = (c: ProcCpu | null): number => (c ? c.userMs + c.systemMs : 0);

/** CPU of a process tree: the process and its direct children (the postmaster's backends). */
function treeCpu(pid: number | undefined): number {
  if (pid === undefined) return 0;
  let total = ms(procCpu(pid));
  for (const e of readdirSync("/proc")) {
    if (!/^\d+$/.test(e)) continue;
    try {
      const stat = readFileSync(`/proc/${e}/stat`, "utf8");
      const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
      if (ppid === pid) total += ms(procCpu(Number(e)));
    } catch {
      // gone meanwhile
    }
  }
  return total;
}

interface Cpu {
  cardlink: number;
  xmpp: number;
  postgres: number;
}

async function scenario(s: Scenario, pgs: PostgresServer): Promise<Record<string, unknown>> {
  const server = new EjabberdServer({
    disableModules: ["smacks"],
    ...(s.processes > 1 ? { balancing: { type: "bare_source" as const, componentNumber: s.processes } } : {}),
  });
  const name = (i: number): string => `h${String(i).padStart(4, "0")}`;
  const jid = (u: string): string => `${u}@${server.host}`;
  const clients: CardClient[] = [];
  let cluster: CardlinkCluster | undefined;
  try {
    await server.start();
    await server.createUsers(
      ["owner", ...Array.from({ length: HOLDERS }, (_, i) => name(i))].map((u) => ({
        user: u,
        password: `${u}pw`,
      })),
    );
    const dir = mkdtempSync(path.join(os.tmpdir(), "cardlink-bench-scale-"));
    const database =
      s.backend === "sqlite"
        ? { driver: "sqlite", path: path.join(dir, "cardlink.sqlite") }
        : { driver: "postgres", url: await pgs.createDatabase(), poolSize: 8 };
    // One process: the defaults a single-process deployment runs with (exclusive, no inflight ids); several:
    // shared mode (NOTIFY wake-ups, inflight ids, adoption), as OPERATIONS.md §12 configures it.
    const queue =
      s.processes === 1
        ? { ...CLUSTER_TIMINGS.queue, exclusive: true, persistInflight: false }
        : CLUSTER_TIMINGS.queue;
    // Seeded before cardlink starts (one writer on the SQLite file at a time).
    const seeder = await createCardlink(
      testConfig(server, { database, queue, delivery: CLUSTER_TIMINGS.delivery }),
      {
        log: createLogger("silent"),
        modules: coreModules,
      },
    );
    for (let i = 0; i < HOLDERS; i++) {
      await look.bindLive(
        seeder,
        { id: `b${i}`, a: jid("owner"), b: jid(name(i)), aDevices: [], bDevices: [], via: "code" },
        Date.now(),
      );
    }
    await seeder.stop();
    cluster = new CardlinkCluster({ server, pgUrl: "", overrides: { database, queue } });
    await cluster.start(s.processes);
    const owner = await cardClient(server, "owner", { presence: true });
    clients.push(owner);
    for (let i = 0; i < HOLDERS; i += 50) {
      clients.push(
        ...(await Promise.all(
          Array.from({ length: Math.min(50, HOLDERS - i) }, (_, k) => cardClient(server, name(i + k))),
        )),
      );
    }
    const holders = clients.slice(1);
    const has = (c: CardClient, fn: string): boolean =>
      c.updates.some((u) => u.kind === "card" && cardSummary(u.content).fn === fn);
    // Warm-up: the bindings' first deliveries.
    await owner.setCard("v0");
    await waitFor(() => holders.every((h) => has(h, "v0")), "v0 everywhere", 120_000);

    const beam = Number(readFileSync(path.join(server.runDir, "ejabberd.pid"), "utf8").trim());
    const postmaster = s.backend === "postgres" ? pgs.pid() : undefined;
    const cpu = (): Cpu => ({
      cardlink: cluster?.procs.reduce((a, p) => a + ms(procCpu(p.proc?.pid)), 0) ?? 0,
      xmpp: ms(procCpu(beam)),
      postgres: treeCpu(postmaster),
    });
    const diff = (a: Cpu, b: Cpu): Cpu => ({
      cardlink: b.cardlink - a.cardlink,
      xmpp: b.xmpp - a.xmpp,
      postgres: b.postgres - a.postgres,
    });
    const per = (c: Cpu, n: number): Record<string, number> => ({
      cardlink_us: round((c.cardlink * 1000) / n),
      xmpp_us: round((c.xmpp * 1000) / n),
      postgres_us: round((c.postgres * 1000) / n),
    });

    // Fan-out.
    let c0 = cpu();
    let t0 = performance.now();
    for (let r = 1; r <= ROUNDS; r++) {
      await owner.setCard(`v${r}`);
      await waitFor(() => holders.every((h) => has(h, `v${r}`)), `v${r} everywhere`, 120_000);
    }
    let wall = performance.now() - t0;
    const deliveries = HOLDERS * ROUNDS;
    const fanout = {
      deliveries,
      deliveries_per_s: round(deliveries / (wall / 1000)),
      cpu_per_delivery: per(diff(c0, cpu()), deliveries),
    };

    // Requests.
    const askers = holders.slice(0, CLIENTS);
    c0 = cpu();
    t0 = performance.now();
    await Promise.all(
      askers.map(async (c) => {
        for (let i = 0; i < REQUESTS; i++) await c.cardlink("get", "card", { owner: jid("owner") });
      }),
    );
    wall = performance.now() - t0;
    const n = CLIENTS * REQUESTS;
    const requests = {
      requests: n,
      requests_per_s: round(n / (wall / 1000)),
      cpu_per_request: per(diff(c0, cpu()), n),
    };
    note(`${s.name}: ${fanout.deliveries_per_s} deliveries/s, ${requests.requests_per_s} requests/s`);
    return { scenario: s.name, backend: s.backend, processes: s.processes, fanout, requests };
  } finally {
    const logs = process.env.CARDLINK_TEST_LOGS;
    if (logs) cluster?.procs.forEach((p, i) => writeFileSync(`${logs}/bench-${s.name}-${i}.log`, p.output));
    await Promise.allSettled(clients.map((c) => c.stop()));
    await cluster?.kill();
    await server.stop();
    server.cleanup();
    await pgs.dropDatabases();
  }
}

export async function run(): Promise<Record<string, unknown>> {
  const pgs = await startPostgres();
  try {
    const results: Array<Record<string, unknown>> = [];
    // SCALE_ONLY=a,b: those scenarios, in that order (the first is the anchor of the ratios).
    const only = process.env.SCALE_ONLY?.split(",");
    const list = only
      ? only.map((n) => SCENARIOS.find((s) => s.name === n)).filter((s) => s !== undefined)
      : SCENARIOS;
    for (const s of list) results.push(await scenario(s, pgs));
    const rate = (r: Record<string, unknown> | undefined, k: "fanout" | "requests"): number => {
      const x = r?.[k] as { deliveries_per_s?: number; requests_per_s?: number } | undefined;
      return x?.deliveries_per_s ?? x?.requests_per_s ?? 0;
    };
    const anchor = results[0];
    const ratios = Object.fromEntries(
      results.slice(1).map((r) => [
        r.scenario as string,
        {
          [`fanout_vs_${String(anchor?.scenario)}`]: round(rate(r, "fanout") / rate(anchor, "fanout"), 2),
          [`requests_vs_${String(anchor?.scenario)}`]: round(
            rate(r, "requests") / rate(anchor, "requests"),
            2,
          ),
        },
      ]),
    );
    return {
      bench: "scale",
      server: "ejabberd 23.01",
      holders: HOLDERS,
      rounds: ROUNDS,
      clients: CLIENTS,
      requests_per_client: REQUESTS,
      cores: os.cpus().length,
      results,
      ratios,
    };
  } finally {
    await pgs.stop();
  }
}

runMain(import.meta.url, "scale", run);
