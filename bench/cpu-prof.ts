/**
 * Summarizes V8 CPU profiles (`node --cpu-prof`, e.g. from `bench/iq.js --cardlink-cpu-prof DIR`): the functions
 * with the most self time, and self time per source area (cardlink's own folders, each package under
 * node_modules, Node's internals), so a hot path can be read without a profiler UI.
 *
 *   node dist/bench/cpu-prof.js <file.cpuprofile | DIR> [--top N] [--callers NAME]
 *     → a text report on stdout; a DIR summarizes every .cpuprofile in it, one after another. --callers adds
 *       where the self time of the functions named NAME comes from (their three nearest callers).
 *
 * Self time of a sample is the time until the next sample (timeDeltas[i + 1]), as Chrome's DevTools count it.
 * Percentages are of the profile's busy time: "(idle)" is left out of them (it is printed apart), while
 * "(program)" (native work outside JavaScript frames: the event loop, I/O syscalls) and "(garbage collector)"
 * stay in, since they are work the process did.
 */
import { readdirSync, readFileSync, statSync } from "node:fs";
import path from "node:path";
import { isMain } from "./lib.js";

interface CallFrame {
  functionName: string;
  url: string;
  lineNumber: number;
  columnNumber: number;
}
interface ProfileNode {
  id: number;
  callFrame: CallFrame;
  children?: number[];
}
export interface CpuProfile {
  nodes: ProfileNode[];
  startTime: number;
  endTime: number;
  samples: number[];
  timeDeltas: number[];
}

export interface SelfTime {
  name: string;
  /** Microseconds. */
  selfUs: number;
}

export interface Summary {
  totalUs: number;
  idleUs: number;
  busyUs: number;
  functions: SelfTime[];
  areas: SelfTime[];
}

/** Where a frame's code lives: a cardlink folder, a package, Node itself, or V8's pseudo-frames. */
export function areaOf(url: string, functionName: string): string {
  if (!url) return functionName.startsWith("(") ? functionName : "(native)";
  if (url.startsWith("node:")) return "node:internal";
  const nm = url.lastIndexOf("/node_modules/");
  if (nm >= 0) {
    const rest = url.slice(nm + "/node_modules/".length).split("/");
    return `npm:${rest[0]?.startsWith("@") ? `${rest[0]}/${rest[1] ?? ""}` : (rest[0] ?? "")}`;
  }
  const dist = url.indexOf("/dist/");
  if (dist >= 0) {
    const rest = url.slice(dist + "/dist/".length).split("/");
    return rest.length > 2 ? `${rest[0] ?? ""}/${rest[1] ?? ""}` : (rest[0] ?? "");
  }
  return url;
}

function frameName(f: CallFrame): string {
  if (!f.url) return f.functionName || "(anonymous)";
  const file = f.url.replace(/^file:\/\//, "");
  const nm = file.lastIndexOf("/node_modules/");
  const dist = file.indexOf("/dist/");
  const short = nm >= 0 ? file.slice(nm + 1) : dist >= 0 ? file.slice(dist + 1) : file;
  return `${f.functionName || "(anonymous)"} ${short}:${f.lineNumber + 1}`;
}

export function summarize(profile: CpuProfile): Summary {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const fn = new Map<string, number>();
  const area = new Map<string, number>();
  let total = 0;
  let idle = 0;
  for (let i = 0; i < profile.samples.length; i++) {
    const us = profile.timeDeltas[i + 1] ?? 0;
    const node = byId.get(profile.samples[i] as number);
    if (!node) continue;
    total += us;
    if (node.callFrame.functionName === "(idle)") {
      idle += us;
      continue;
    }
    const name = frameName(node.callFrame);
    fn.set(name, (fn.get(name) ?? 0) + us);
    const a = areaOf(node.callFrame.url, node.callFrame.functionName);
    area.set(a, (area.get(a) ?? 0) + us);
  }
  const sorted = (m: Map<string, number>): SelfTime[] =>
    [...m].map(([name, selfUs]) => ({ name, selfUs })).sort((a, b) => b.selfUs - a.selfUs);
  return { totalUs: total, idleUs: idle, busyUs: total - idle, functions: sorted(fn), areas: sorted(area) };
}

/** Self time of the functions called `name`, by their nearest `depth` callers (innermost first). */
export function callers(profile: CpuProfile, name: string, depth = 3): SelfTime[] {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const out = new Map<string, number>();
  for (let i = 0; i < profile.samples.length; i++) {
    const id = profile.samples[i] as number;
    if (byId.get(id)?.callFrame.functionName !== name) continue;
    const chain: string[] = [];
    for (let p = parent.get(id); p !== undefined && chain.length < depth; p = parent.get(p)) {
      chain.push(frameName((byId.get(p) as ProfileNode).callFrame));
    }
    const key = chain.join(" ← ");
    out.set(key, (out.get(key) ?? 0) + (profile.timeDeltas[i + 1] ?? 0));
  }
  return [...out].map(([n, selfUs]) => ({ name: n, selfUs })).sort((a, b) => b.selfUs - a.selfUs);
}

export function report(file: string, s: Summary, top: number): string {
  const ms = (us: number): string => (us / 1000).toFixed(1).padStart(9);
  const pct = (us: number): string => `${((100 * us) / (s.busyUs || 1)).toFixed(1).padStart(5)} %`;
  const lines = [
    `${file}`,
    `  sampled ${(s.totalUs / 1e6).toFixed(2)} s: busy ${(s.busyUs / 1e6).toFixed(2)} s, idle ${(s.idleUs / 1e6).toFixed(2)} s`,
    `  self time by area (ms, % of busy):`,
    ...s.areas.slice(0, top).map((a) => `  ${ms(a.selfUs)} ${pct(a.selfUs)}  ${a.name}`),
    `  top ${top} functions by self time (ms, % of busy):`,
    ...s.functions.slice(0, top).map((f) => `  ${ms(f.selfUs)} ${pct(f.selfUs)}  ${f.name}`),
  ];
  return lines.join("\n");
}

function profileFiles(target: string): string[] {
  if (!statSync(target).isDirectory()) return [target];
  return readdirSync(target)
    .filter((f) => f.endsWith(".cpuprofile"))
    .sort()
    .map((f) => path.join(target, f));
}

if (isMain(import.meta.url)) {
  const args = process.argv.slice(2);
  const topAt = args.indexOf("--top");
  const top = topAt >= 0 ? Number(args[topAt + 1]) || 25 : 25;
  const callersAt = args.indexOf("--callers");
  const callersOf = callersAt >= 0 ? args[callersAt + 1] : undefined;
  const target = args.find(
    (a, i) => !a.startsWith("--") && (topAt < 0 || i !== topAt + 1) && (callersAt < 0 || i !== callersAt + 1),
  );
  if (!target) {
    process.stderr.write("usage: node dist/bench/cpu-prof.js <file.cpuprofile | DIR> [--top N]\n");
    process.exit(2);
  }
  const files = profileFiles(target);
  if (files.length === 0) {
    process.stderr.write(`no .cpuprofile in ${target}\n`);
    process.exit(1);
  }
  for (const f of files) {
    const profile = JSON.parse(readFileSync(f, "utf8")) as CpuProfile;
    process.stdout.write(`${report(f, summarize(profile), top)}\n`);
    if (callersOf) {
      process.stdout.write(`  self time of ${callersOf} by caller (ms):\n`);
      for (const c of callers(profile, callersOf).slice(0, top)) {
        process.stdout.write(`  ${(c.selfUs / 1000).toFixed(1).padStart(9)}  ${c.name}\n`);
      }
    }
    process.stdout.write("\n");
  }
}
