/**
 * PostgreSQL with and without named prepared statements (`database.preparedStatements`), in one run on one
 * database: the same ops through two stores of one connection each, alternated round by round, with the CPU the
 * PostgreSQL backend of each connection spent per call (/proc of the backend's pid) beside this process's and the
 * wall time. Unnamed statements are what node-postgres sends by default: PostgreSQL parses and plans every call.
 *
 * The ops are bench/queries.ts's, through the same runtime parts (accounts, stream, audience, cards kind, exchange
 * service): an owner bound to PEERS peers (seeded through the exchange service's real codes), then
 *   - `contacts`: the owner's contact list (PEERS contacts);
 *   - `sync_full`: the owner's full pull sync (PEERS cards, one page);
 *   - `card_change`: the owner stores a changed card (fan-out to PEERS lanes, coalescing);
 *   - `bind`: a code created (untimed) and redeemed by a fresh account (binding, shares, entries).
 *
 *   node dist/bench/postgres.js [--calls N] [--rounds R] [--peers N]   (JSON on stdout; starts its own PostgreSQL)
 */
import { pino } from "pino";
import { contacts } from "../component/features/exchange/contacts.js";
import { cardVersions } from "../component/features/cards/api.js";
import { storeCard } from "../component/features/cards/service.js";
import { SYNC_PAGE, syncPage } from "../component/features/cards/sync.js";
import { moduleMigrations } from "../component/features.js";
import { StanzaBudget } from "../component/runtime/budget.js";
import { openCoreStore } from "../storage/index.js";
import type { Store } from "../storage/store.js";
import { startPostgres } from "../test/harness/postgres.js";
import { median, note, procCpu, round, runMain, type StatementCounter } from "./lib.js";
import { runtime, smallCard, type Runtime } from "./queries.js";

const HOST = "localhost";
const jid = (name: string): string => `${name}@${HOST}`;

interface Side {
  prepared: boolean;
  store: Store;
  rt: Runtime;
  /** The pid of the store's one backend (poolSize 1: every statement runs there). */
  backend: number;
}

interface Sample {
  wallMs: number[];
  backendCpuMs: number;
  ownCpuMs: number;
  calls: number;
}

const cpuMs = (pid: number): number => {
  const c = procCpu(pid);
  return c ? c.userMs + c.systemMs : 0;
};

async function timed(side: Side, calls: number, fn: (i: number) => Promise<unknown>): Promise<Sample> {
  const wallMs: number[] = [];
  const b0 = cpuMs(side.backend);
  const o0 = process.cpuUsage();
  for (let i = 0; i < calls; i++) {
    const t0 = performance.now();
    await fn(i);
    wallMs.push(performance.now() - t0);
  }
  const o = process.cpuUsage(o0);
  return { wallMs, backendCpuMs: cpuMs(side.backend) - b0, ownCpuMs: (o.user + o.system) / 1000, calls };
}

export async function run(o: { calls?: number; rounds?: number; peers?: number } = {}): Promise<object> {
  const calls = o.calls ?? 500;
  const rounds = o.rounds ?? 3;
  const peers = o.peers ?? 20;
  const pg = await startPostgres();
  const sides: Side[] = [];
  try {
    const url = await pg.createDatabase();
    const counter: StatementCounter = { on: false, statements: 0 };
    for (const prepared of [true, false]) {
      const store = await openCoreStore(
        {
          driver: "postgres",
          url,
          path: "",
          poolSize: 1,
          busyTimeoutMs: 5000,
          txWarnMs: 1000,
          preparedStatements: prepared,
        },
        { log: pino({ level: "silent" }) },
        moduleMigrations(),
      );
      const backend = Number(
        (await store.read("bench.pid", (r) => r.get<{ pid: number }>("SELECT pg_backend_pid() AS pid")))?.pid,
      );
      sides.push({ prepared, store, rt: runtime(store, counter), backend });
    }
    const seed = sides[0] as Side;
    // The owner and its peers, bound through real codes (both directions share: each holds the other's card).
    await storeCard(seed.rt, jid("owner"), smallCard(0));
    for (let p = 1; p <= peers; p++) {
      await storeCard(seed.rt, jid(`peer${p}`), smallCard(p));
      const code = await seed.rt.svc.createCode(jid("owner"));
      await seed.rt.svc.redeemCode(jid(`peer${p}`), code.code);
    }
    const budget = new StanzaBudget(256 * 1024);
    let version = 1;
    let fresh = 0;
    const ops: Record<string, (s: Side) => (i: number) => Promise<unknown>> = {
      contacts: (s) => () => contacts(s.rt.read, jid("owner"), cardVersions),
      sync_full: (s) => () =>
        s.rt.read("bench.sync", (r) =>
          syncPage(r, { user: jid("owner"), since: 0, max: SYNC_PAGE, format: "vcard4", budget }),
        ),
      card_change: (s) => () => storeCard(s.rt, jid("owner"), smallCard(0, version++)),
      bind: (s) => async () => {
        const code = await s.rt.svc.createCode(jid(`fresh${++fresh}`));
        await s.rt.svc.redeemCode(jid(`fresh${++fresh}`), code.code);
      },
    };
    const samples: Record<string, Record<string, Sample[]>> = {};
    for (let round = 0; round < rounds; round++) {
      for (const [name, op] of Object.entries(ops)) {
        // Alternate which side goes first, so neither always runs on the warmer cache.
        const order = round % 2 === 0 ? sides : [...sides].reverse();
        for (const s of order) {
          await timed(s, Math.max(10, calls / 10), op(s)); // warm-up: statements prepared, caches filled
          const key = s.prepared ? "prepared" : "unnamed";
          ((samples[name] ??= {})[key] ??= []).push(await timed(s, calls, op(s)));
        }
      }
      note(`postgres: round ${round + 1}/${rounds} done`);
    }
    const summary = Object.fromEntries(
      Object.entries(samples).map(([name, bySide]) => {
        const per = Object.fromEntries(
          Object.entries(bySide).map(([k, runs]) => {
            const wall = runs.flatMap((r) => r.wallMs).sort((a, b) => a - b);
            return [
              k,
              {
                p50_ms: round(median(wall), 3),
                backend_cpu_us_per_call: round(median(runs.map((r) => (r.backendCpuMs * 1000) / r.calls))),
                cardlink_cpu_us_per_call: round(median(runs.map((r) => (r.ownCpuMs * 1000) / r.calls))),
                runs_backend_cpu_us: runs.map((r) => round((r.backendCpuMs * 1000) / r.calls)),
              },
            ];
          }),
        );
        const p = per.prepared as { backend_cpu_us_per_call: number; p50_ms: number } | undefined;
        const u = per.unnamed as { backend_cpu_us_per_call: number; p50_ms: number } | undefined;
        return [
          name,
          {
            ...per,
            ratio_backend_cpu_unnamed_vs_prepared:
              p && u ? round(u.backend_cpu_us_per_call / p.backend_cpu_us_per_call, 2) : null,
            ratio_p50_unnamed_vs_prepared: p && u ? round(u.p50_ms / p.p50_ms, 2) : null,
          },
        ];
      }),
    );
    return { bench: "postgres", peers, calls, rounds, ops: summary };
  } finally {
    for (const s of sides) await s.store.close();
    await pg.dropDatabases().catch(() => undefined);
    await pg.stop();
  }
}

function argv(name: string): number | undefined {
  const i = process.argv.indexOf(name);
  return i >= 0 ? Number(process.argv[i + 1]) : undefined;
}

runMain(import.meta.url, "postgres", () => {
  const calls = argv("--calls");
  const rounds = argv("--rounds");
  const peers = argv("--peers");
  return run({
    ...(calls ? { calls } : {}),
    ...(rounds ? { rounds } : {}),
    ...(peers ? { peers } : {}),
  });
});
