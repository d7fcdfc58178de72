/**
 * Shared helpers for the benchmarks in bench/: statistics, rounds that alternate cases, JSON output, and
 * Linux /proc readings of other processes (Prosody, cardlink as a child) so CPU and memory can be attributed
 * to the process that spent them rather than to the benchmark's own.
 */
import { execFileSync } from "node:child_process";
import { readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { isMainThread, parentPort, Worker, workerData } from "node:worker_threads";
import type { Store } from "../storage/store.js";

export function median(xs: readonly number[]): number {
  if (xs.length === 0) return Number.NaN;
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? (s[mid] as number) : ((s[mid - 1] as number) + (s[mid] as number)) / 2;
}

export function round(x: number, digits = 0): number {
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}

/** One JSON object per line on stdout: the only thing a benchmark writes there (progress goes to stderr). */
export function printJson(obj: unknown): void {
  process.stdout.write(JSON.stringify(obj) + "\n");
}

/** Progress for the person watching; stderr, so stdout stays one parseable JSON object. */
export function note(msg: string): void {
  process.stderr.write(msg + "\n");
}

/** True when the module with this import.meta.url is the script node was started with. */
export function isMain(metaUrl: string): boolean {
  const argv1 = process.argv[1];
  return argv1 !== undefined && path.resolve(argv1) === fileURLToPath(metaUrl);
}

/**
 * Runs every case once per round and collects each case's results in order. The starting case rotates from
 * round to round, so no case always runs first (cold) or right after the same neighbour: on a small, noisy
 * machine slow drifts then spread over all cases instead of biasing one.
 */
export async function runRounds<K extends string, T>(
  rounds: number,
  cases: readonly K[],
  fn: (c: K, round: number) => Promise<T>,
): Promise<Record<K, T[]>> {
  const out = {} as Record<K, T[]>;
  for (const c of cases) out[c] = [];
  for (let r = 0; r < rounds; r++) {
    for (let i = 0; i < cases.length; i++) {
      const c = cases[(i + r) % cases.length] as K;
      out[c].push(await fn(c, r));
    }
  }
  return out;
}

let clockTicks: number | undefined;
/** Kernel clock ticks per second (/proc/<pid>/stat counts CPU time in them); 100 on every usual Linux. */
function ticksPerSecond(): number {
  if (clockTicks === undefined) {
    try {
      clockTicks = Number(execFileSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).trim()) || 100;
    } catch {
      clockTicks = 100;
    }
  }
  return clockTicks;
}

export interface ProcCpu {
  userMs: number;
  systemMs: number;
}

/** CPU time a process has used so far (10 ms resolution), or null when it is gone or /proc is absent. */
export function procCpu(pid: number | undefined): ProcCpu | null {
  if (pid === undefined) return null;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    // The command name (field 2) may contain spaces and parentheses: fields are counted after its last ")".
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    const tick = 1000 / ticksPerSecond();
    // After the name, state is index 0, so utime (field 14) is index 11 and stime (field 15) index 12.
    return { userMs: Number(fields[11]) * tick, systemMs: Number(fields[12]) * tick };
  } catch {
    return null;
  }
}

export function cpuDiff(a: ProcCpu | null, b: ProcCpu | null): ProcCpu | null {
  return a && b ? { userMs: b.userMs - a.userMs, systemMs: b.systemMs - a.systemMs } : null;
}

export interface ProcMem {
  rssMb: number;
  /** Peak RSS since the process started (VmHWM). */
  peakRssMb: number;
}

export function procMem(pid: number | undefined): ProcMem | null {
  if (pid === undefined) return null;
  try {
    const status = readFileSync(`/proc/${pid}/status`, "utf8");
    const kb = (key: string): number =>
      Number(new RegExp(`^${key}:\\s+(\\d+)`, "m").exec(status)?.[1] ?? NaN);
    return { rssMb: round(kb("VmRSS") / 1024, 1), peakRssMb: round(kb("VmHWM") / 1024, 1) };
  } catch {
    return null;
  }
}

/**
 * The pid of a process whose command line contains `marker` (e.g. a unique temporary config path), for
 * processes started by helpers that do not expose their ChildProcess. Only our own child can carry a fresh
 * temporary path, so the first match is it.
 */
export function findPid(marker: string): number | undefined {
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry) || Number(entry) === process.pid) continue;
    try {
      if (readFileSync(`/proc/${entry}/cmdline`, "utf8").includes(marker)) return Number(entry);
    } catch {
      // exited while we looked, or not ours to read
    }
  }
  return undefined;
}

export interface SystemCpu {
  /** CPU time all processes spent, summed over cores (user, nice, system, irq, softirq). */
  busyMs: number;
  /** Time the hypervisor gave this VM's cores to someone else. */
  stealMs: number;
}

/**
 * Machine-wide CPU counters from /proc/stat. Minus what the benchmark's own processes used over the same
 * interval, this is the work of everything else: on a 2-core machine shared with other jobs, the honest
 * companion of a throughput number.
 */
export function systemCpu(): SystemCpu | null {
  try {
    const line = readFileSync("/proc/stat", "utf8").split("\n", 1)[0] ?? "";
    const [, user, nice, system, , , irq, softirq, steal] = line.trim().split(/\s+/).map(Number);
    const tick = 1000 / ticksPerSecond();
    return {
      busyMs: ((user ?? 0) + (nice ?? 0) + (system ?? 0) + (irq ?? 0) + (softirq ?? 0)) * tick,
      stealMs: (steal ?? 0) * tick,
    };
  } catch {
    return null;
  }
}

/** A service a benchmark runs beside itself (a stand-in): what clients need to reach it, and how to stop it. */
export interface Service<I> {
  info: I;
  stop(): Promise<void>;
}

/**
 * Runs this module again in a worker thread with `role` set, so a stand-in does not share the measured
 * client's event loop; resolves with the info the worker posts (see serveFromWorker).
 */
export async function startInWorker<I>(moduleUrl: string, role: string): Promise<Service<I>> {
  const worker = new Worker(fileURLToPath(moduleUrl), { workerData: { role } });
  const info = await new Promise<I>((resolve, reject) => {
    worker.once("message", (m: I) => resolve(m));
    worker.once("error", reject);
  });
  return {
    info,
    stop: async () => {
      const exited = new Promise<void>((resolve) => worker.once("exit", () => resolve()));
      worker.postMessage("stop");
      await exited;
    },
  };
}

/** Inside such a worker: starts the service, posts its info, and stops it (then exits) when told. */
export async function serveFromWorker<I>(start: () => Promise<Service<I>>): Promise<void> {
  const s = await start();
  parentPort?.postMessage(s.info);
  parentPort?.once("message", () => {
    void s.stop().then(() => process.exit(0));
  });
}

/** The role this module was started with by startInWorker, or undefined on the main thread. */
export function workerRole(): string | undefined {
  return isMainThread ? undefined : (workerData as { role?: string } | null)?.role;
}

/** Entry point of a benchmark run directly: prints its JSON, or the error on stderr with exit code 1. */
export function runMain(metaUrl: string, name: string, run: () => Promise<unknown>): void {
  if (!isMain(metaUrl)) return;
  run().then(
    (r) => {
      printJson(r);
      process.exit(0);
    },
    (e: unknown) => {
      process.stderr.write(`${name}: ${(e as Error).stack ?? String(e)}\n`);
      process.exit(1);
    },
  );
}

/** Statements run through a counted store (below) while `on`: what one op costs in round trips to the database. */
export interface StatementCounter {
  on: boolean;
  statements: number;
}

/** The Sql methods that reach the database (run/get/all, the seq counter, the account lock). */
const STATEMENTS = new Set<PropertyKey>(["run", "get", "all", "seq", "lockAccount"]);

function countingSql<T extends object>(sql: T, c: StatementCounter): T {
  return new Proxy(sql, {
    get(t, k) {
      const v: unknown = Reflect.get(t, k, t);
      if (typeof v !== "function") return v;
      const f = v as (...a: unknown[]) => unknown;
      if (!STATEMENTS.has(k)) return f.bind(t);
      return (...a: unknown[]) => {
        if (c.on) c.statements++;
        return f.apply(t, a);
      };
    },
  });
}

/**
 * A store whose units of work and reads count their statements into `c` (wrap it before makeUow/makeReader): the
 * per-op statement counts of bench/queries.ts, as test/unit/features-groups.test.ts counts a group add's.
 */
export function countingStore(
  store: Pick<Store, "tx" | "read">,
  c: StatementCounter,
): Pick<Store, "tx" | "read"> {
  return {
    tx: (name, fn) => store.tx(name, (tx) => fn(countingSql(tx, c))),
    read: (name, fn) => store.read(name, (r) => fn(countingSql(r, c))),
  };
}
