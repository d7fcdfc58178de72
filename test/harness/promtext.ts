/**
 * A strict parser for the Prometheus text exposition format 0.0.4, for tests: any line that a Prometheus server
 * would reject (or that breaks the format's rules for a declared type) throws, naming the line. prom-client
 * ships no parser, so this one checks the rules itself: names and label syntax, one TYPE per family declared
 * before its samples, sample names allowed for the type (histograms: _bucket with le, _sum, _count), no series
 * twice, cumulative buckets ending in +Inf equal to _count, counters never negative.
 */
export type MetricType = "counter" | "gauge" | "histogram" | "summary" | "untyped";

export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

export interface Family {
  name: string;
  type: MetricType;
  help?: string;
  samples: Sample[];
}

const NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL = /^[a-zA-Z_][a-zA-Z0-9_]*$/;

function parseValue(s: string, line: string): number {
  if (s === "+Inf") return Infinity;
  if (s === "-Inf") return -Infinity;
  if (s === "NaN") return NaN;
  if (!/^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$/.test(s)) throw new Error(`bad value '${s}' in: ${line}`);
  return Number(s);
}

function parseLabels(s: string, line: string): Record<string, string> {
  const out: Record<string, string> = {};
  let i = 0;
  while (i < s.length) {
    const eq = s.indexOf("=", i);
    if (eq < 0) throw new Error(`bad labels in: ${line}`);
    const name = s.slice(i, eq);
    if (!LABEL.test(name)) throw new Error(`bad label name '${name}' in: ${line}`);
    if (name in out) throw new Error(`label '${name}' twice in: ${line}`);
    if (s[eq + 1] !== '"') throw new Error(`unquoted label value in: ${line}`);
    let j = eq + 2;
    let v = "";
    for (;;) {
      const c = s[j];
      if (c === undefined) throw new Error(`unterminated label value in: ${line}`);
      if (c === "\\") {
        const n = s[j + 1];
        if (n === "n") v += "\n";
        else if (n === "\\" || n === '"') v += n;
        else throw new Error(`bad escape in: ${line}`);
        j += 2;
      } else if (c === '"') {
        j++;
        break;
      } else {
        v += c;
        j++;
      }
    }
    out[name] = v;
    if (j === s.length) break;
    if (s[j] !== ",") throw new Error(`expected ',' in labels of: ${line}`);
    i = j + 1;
  }
  return out;
}

function familyOf(sample: string, families: Map<string, Family>): Family | undefined {
  const f = families.get(sample);
  if (f) return f;
  for (const suffix of ["_bucket", "_sum", "_count"]) {
    if (sample.endsWith(suffix)) {
      const base = families.get(sample.slice(0, -suffix.length));
      if (base && (base.type === "histogram" || base.type === "summary")) return base;
    }
  }
  return undefined;
}

export function parsePrometheusText(text: string): Map<string, Family> {
  const families = new Map<string, Family>();
  const series = new Set<string>();
  const done = new Set<string>();
  let current: Family | undefined;
  for (const line of text.split("\n")) {
    if (line === "") continue;
    if (line.startsWith("#")) {
      const m = /^# (HELP|TYPE) (\S+)(?: (.*))?$/.exec(line);
      if (!m) {
        if (/^# (HELP|TYPE)/.test(line)) throw new Error(`malformed comment: ${line}`);
        continue;
      }
      const [, kind, name, rest] = m as unknown as [string, string, string, string | undefined];
      if (!NAME.test(name)) throw new Error(`bad metric name in: ${line}`);
      if (done.has(name)) throw new Error(`family ${name} split in two: ${line}`);
      let f = families.get(name);
      if (!f) {
        f = { name, type: "untyped", samples: [] };
        families.set(name, f);
      }
      if (current && current !== f) done.add(current.name);
      current = f;
      if (kind === "TYPE") {
        if (f.samples.length) throw new Error(`TYPE after samples: ${line}`);
        if (!["counter", "gauge", "histogram", "summary", "untyped"].includes(rest ?? "")) {
          throw new Error(`unknown type in: ${line}`);
        }
        f.type = rest as MetricType;
      } else f.help = rest ?? "";
      continue;
    }
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)(?: (-?\d+))?$/.exec(line);
    if (!m) throw new Error(`malformed sample: ${line}`);
    const [, name, labelText, valueText] = m as unknown as [string, string, string | undefined, string];
    const f = familyOf(name, families);
    if (!f) throw new Error(`sample without a declared family: ${line}`);
    if (done.has(f.name)) throw new Error(`family ${f.name} split in two: ${line}`);
    if (current && current !== f) done.add(current.name);
    current = f;
    const labels = labelText ? parseLabels(labelText, line) : {};
    const value = parseValue(valueText, line);
    if (f.type === "histogram") {
      if (name === f.name) throw new Error(`histogram sample without a suffix: ${line}`);
      if (name.endsWith("_bucket") !== "le" in labels) throw new Error(`le only on _bucket: ${line}`);
    }
    if ((f.type === "counter" || f.type === "gauge") && name !== f.name) {
      throw new Error(`sample name does not match ${f.type} ${f.name}: ${line}`);
    }
    if (f.type === "counter" && !(value >= 0)) throw new Error(`negative or NaN counter: ${line}`);
    const k = `${name}{${Object.keys(labels)
      .sort()
      .map((l) => `${l}=${JSON.stringify(labels[l])}`)
      .join(",")}}`;
    if (series.has(k)) throw new Error(`series twice: ${line}`);
    series.add(k);
    f.samples.push({ name, labels, value });
  }
  for (const f of families.values()) if (f.type === "histogram") checkHistogram(f);
  return families;
}

function checkHistogram(f: Family): void {
  const groups = new Map<string, { buckets: Array<[number, number]>; count?: number; sum?: number }>();
  for (const s of f.samples) {
    const rest = Object.entries(s.labels)
      .filter(([k]) => k !== "le")
      .sort()
      .map(([k, v]) => `${k}=${v}`)
      .join(",");
    const g = groups.get(rest) ?? { buckets: [] };
    groups.set(rest, g);
    if (s.name.endsWith("_bucket")) g.buckets.push([parseValue(s.labels.le as string, s.name), s.value]);
    else if (s.name.endsWith("_count")) g.count = s.value;
    else g.sum = s.value;
  }
  for (const [k, g] of groups) {
    if (g.count === undefined || g.sum === undefined) throw new Error(`${f.name}{${k}} lacks _count or _sum`);
    const sorted = [...g.buckets].sort((a, b) => a[0] - b[0]);
    for (let i = 1; i < sorted.length; i++) {
      if ((sorted[i] as [number, number])[1] < (sorted[i - 1] as [number, number])[1]) {
        throw new Error(`${f.name}{${k}} buckets are not cumulative`);
      }
    }
    const last = sorted[sorted.length - 1];
    if (!last || last[0] !== Infinity) throw new Error(`${f.name}{${k}} has no +Inf bucket`);
    if (last[1] !== g.count) throw new Error(`${f.name}{${k}}: +Inf bucket ${last[1]} ≠ _count ${g.count}`);
  }
}

/** The value of one series (labels must match exactly), or undefined. */
export function sampleValue(
  families: Map<string, Family>,
  name: string,
  labels: Record<string, string> = {},
): number | undefined {
  for (const f of families.values()) {
    for (const s of f.samples) {
      if (s.name !== name) continue;
      const keys = Object.keys(s.labels);
      if (keys.length === Object.keys(labels).length && keys.every((k) => s.labels[k] === labels[k])) {
        return s.value;
      }
    }
  }
  return undefined;
}
