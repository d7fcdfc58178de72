/**
 * Runs every benchmark and prints one JSON object: {"benchmarks": [...]}, one entry per benchmark in the list
 * below — its own result object, or {bench, skipped} when its module is not there, or {bench, error} when it
 * failed (the others still run; the exit code is then 1). Benchmarks run one after another, never together:
 * on 2 cores any overlap would measure the overlap.
 *
 *   npm run bench                    (build, then node dist/bench/run.js)
 *   node dist/bench/run.js iq        only the named ones
 */
import { existsSync } from "node:fs";
import os from "node:os";
import { performance } from "node:perf_hooks";
import { fileURLToPath } from "node:url";
import { note, printJson, round } from "./lib.js";

/**
 * Module names under bench/, each exporting run(): Promise<object>, in the order they run. Some are written
 * alongside this one, by others: a missing one is skipped with a note, not an error.
 */
const BENCHMARKS = [
  "iq",
  "latency",
  "push-apns",
  "push-fcm",
  "fanout",
  "memory",
  "queries",
  "addressbook",
  "groups",
  "postgres",
  "scale",
  "move",
  "linked",
] as const;

type BenchRun = (opts?: object) => Promise<object>;

async function runOne(name: string): Promise<object> {
  const url = new URL(`./${name}.js`, import.meta.url);
  // Checked before importing, so that "not written yet" is a skip while a module that exists but fails to load
  // (a missing dependency, a throw at top level) is reported as the error it is.
  if (!existsSync(fileURLToPath(url)))
    return { bench: name, skipped: `no module bench/${name}.ts (not built)` };
  const mod = (await import(url.href)) as { run?: unknown };
  if (typeof mod.run !== "function") return { bench: name, skipped: "module has no exported run()" };
  return await (mod.run as BenchRun)();
}

const wanted = process.argv.slice(2);
const unknown = wanted.filter((w) => !(BENCHMARKS as readonly string[]).includes(w));
if (unknown.length > 0) {
  process.stderr.write(`unknown benchmark(s): ${unknown.join(", ")}; known: ${BENCHMARKS.join(", ")}\n`);
  process.exit(2);
}
const selected = wanted.length > 0 ? BENCHMARKS.filter((b) => wanted.includes(b)) : BENCHMARKS;

const results: object[] = [];
for (const name of selected) {
  const t0 = performance.now();
  note(`bench: ${name} …`);
  try {
    results.push(await runOne(name));
  } catch (e) {
    results.push({ bench: name, error: (e as Error).stack ?? String(e) });
    process.exitCode = 1;
  }
  note(`bench: ${name} done in ${round((performance.now() - t0) / 1000, 1)} s`);
}
printJson({
  benchmarks: results,
  date: new Date().toISOString(),
  node: process.version,
  cpus: os.cpus().length,
  cpu_model: os.cpus()[0]?.model ?? "unknown",
});
