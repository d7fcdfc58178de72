/** In-process counters and gauges, exposed as Prometheus text (and to the admin ad-hoc command). */
import http from "node:http";

type Labels = Record<string, string>;

function key(name: string, labels?: Labels): string {
  if (!labels) return name;
  const parts = Object.keys(labels)
    .sort()
    .map((k) => `${k}="${String(labels[k]).replace(/["\\\n]/g, "_")}"`);
  return `${name}{${parts.join(",")}}`;
}

export class Metrics {
  private readonly counters = new Map<string, number>();
  private readonly gauges = new Map<string, () => number>();
  private readonly help = new Map<string, string>();

  inc(name: string, labels?: Labels, by = 1): void {
    const k = key(name, labels);
    this.counters.set(k, (this.counters.get(k) ?? 0) + by);
  }

  get(name: string, labels?: Labels): number {
    return this.counters.get(key(name, labels)) ?? 0;
  }

  gauge(name: string, read: () => number, help?: string): void {
    this.gauges.set(name, read);
    if (help) this.help.set(name, help);
  }

  describe(name: string, help: string): void {
    this.help.set(name, help);
  }

  snapshot(): Record<string, number> {
    const out: Record<string, number> = {};
    for (const [k, v] of this.counters) out[k] = v;
    for (const [k, read] of this.gauges) out[k] = read();
    return out;
  }

  text(): string {
    const lines: string[] = [];
    const seen = new Set<string>();
    const snap = this.snapshot();
    for (const k of Object.keys(snap).sort()) {
      const base = k.split("{")[0] as string;
      if (!seen.has(base)) {
        seen.add(base);
        const h = this.help.get(base);
        if (h) lines.push(`# HELP ${base} ${h}`);
        lines.push(`# TYPE ${base} ${this.gauges.has(base) ? "gauge" : "counter"}`);
      }
      lines.push(`${k} ${snap[k]}`);
    }
    return lines.join("\n") + "\n";
  }

  /** Serves /metrics on loopback only: metrics name JIDs' counts, not for the open internet. */
  serve(port: number): Promise<http.Server> {
    const server = http.createServer((req, res) => {
      if (req.url === "/metrics") {
        res.writeHead(200, { "content-type": "text/plain; version=0.0.4" });
        res.end(this.text());
      } else {
        res.writeHead(404).end();
      }
    });
    return new Promise((resolve, reject) => {
      server.once("error", reject);
      server.listen(port, "127.0.0.1", () => resolve(server));
    });
  }
}
