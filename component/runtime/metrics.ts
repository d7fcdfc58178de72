/**
 * Metrics on prom-client, exposed as Prometheus text on /metrics (and to the admin ad-hoc command), beside
 * /healthz. The small API (inc / gauge / describe / snapshot / serve) is what features call; each cardlink has
 * its own prom-client Registry, so several instances in one process (the tests) never share a series.
 *
 * Types: inc() makes a counter, gauge() a gauge read at scrape time, counterFrom() a counter read from a
 * monotonic value another object keeps (the link's connection counts), observe()/timer() a histogram (buckets
 * DURATION_BUCKETS unless histogram() declared others), gaugeRows() labelled gauges read by one async query at
 * scrape time (the queue depths; see cachedRead()).
 */
import http from "node:http";
import { monitorEventLoopDelay, type IntervalHistogram } from "node:perf_hooks";
import { Counter, Gauge, Histogram, Registry } from "prom-client";

type Labels = Record<string, string>;

function key(name: string, labels?: Labels): string {
  if (!labels || Object.keys(labels).length === 0) return name;
  const parts = Object.keys(labels)
    .sort()
    .map((k) => `${k}="${String(labels[k]).replace(/["\\\n]/g, "_")}"`);
  return `${name}{${parts.join(",")}}`;
}

/**
 * Seconds. Most IQ handlers answer in well under a millisecond (one SQLite transaction); the long tail is a
 * large sync page or a busy database (busy_timeout is 5 s).
 */
export const DURATION_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5];

/**
 * Seconds, for waits that include a recipient being offline: an update to an online holder is acked in a few
 * ms, one to a phone that is off for the weekend in days. The buckets go from 2.5 ms to a week (21 of them), so
 * both ends are resolved and histogram_quantile() stays meaningful for "how stale are holders' copies".
 */
export const LATENCY_BUCKETS = [
  0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 10_800, 43_200,
  86_400, 604_800,
];

/**
 * Seconds, for one request to a push provider (APNs, FCM over HTTP/2): tens of ms normally; the top buckets
 * catch a provider that answers only near the request timeout (push.*.requestTimeoutMs).
 */
export const PROVIDER_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];

/**
 * How long a gaugeRows() reader's result is reused: a scrape storm (several Prometheus servers, a dashboard
 * polling /metrics, an admin re-running the stats command) then costs one store query per interval. The
 * SQLite driver is synchronous, so each query holds the event loop (≈ 60 ms for 1 M outbox rows); ordinary
 * scrape intervals (15–60 s) never see a cached value.
 */
export const SCRAPE_CACHE_MS = 2000;

/**
 * Wraps an async read so that calls within `ttlMs` of the last completed read share its result, and calls
 * while one is running share that one (single flight). A failed read is not cached.
 */
export function cachedRead<T>(read: () => Promise<T>, ttlMs = SCRAPE_CACHE_MS): () => Promise<T> {
  let last: { at: number; value: T } | undefined;
  let running: Promise<T> | undefined;
  return () => {
    if (last && Date.now() - last.at < ttlMs) return Promise.resolve(last.value);
    running ??= read().then(
      (value) => {
        last = { at: Date.now(), value };
        running = undefined;
        return value;
      },
      (e: unknown) => {
        running = undefined;
        throw e;
      },
    );
    return running;
  };
}

/** One series of a gaugeRows() gauge. */
export interface GaugeRow {
  labels: Labels;
  value: number;
}

/** HELP texts of the metrics features increment without describing them (docs/OPERATIONS.md §4 has them all). */
const HELP: Record<string, string> = {
  cardlink_iq_total: "routed requests by namespace, element, type and outcome",
  cardlink_stanza_errors_total: "error replies sent, by RFC 6120 condition",
  cardlink_iq_unmatched_replies_total: "IQ replies that matched no request cardlink sent",
  cardlink_stanzas_rejected_total: "stanzas refused before routing, by reason",
  cardlink_card_updates_total: "card changes",
  cardlink_fanout_entries_total: "outbox entries written by card changes",
  cardlink_exchange_requests_total: "exchange requests created",
  cardlink_bindings_created_total: "exchanges completed",
  cardlink_delivery_acked_total: "outbox entries acknowledged by a client",
  cardlink_delivery_retry_total: "outbox entries scheduled for a retry",
  cardlink_delivery_recipient_gone_total: "deliveries that found every resource of the user gone",
  cardlink_delivery_offline_total: "times entries waited for a user with no available resource",
  cardlink_push_app_server_total: "XEP-0357 publishes accepted",
  cardlink_iq_duration_seconds: "time from routing a request to its answer being sent, per route",
};

export interface Health {
  ok: boolean;
  checks: Record<string, boolean | string>;
}

export interface ServeOptions {
  /** Address to listen on; loopback unless configured otherwise (metrics name no JIDs, but counts do leak). */
  host?: string;
  /** What /healthz reports; without it /healthz answers 200 as long as the process serves HTTP. */
  health?: () => Promise<Health>;
}

export class Metrics {
  readonly registry = new Registry();
  /** Mirror of counter values, so get() and snapshot() stay synchronous (prom-client's get() is async). */
  private readonly values = new Map<string, number>();
  private readonly counters = new Map<string, Counter>();
  private readonly histograms = new Map<string, Histogram>();
  private readonly histogramSeries = new Map<string, { count: number; sum: number }>();
  private readonly gauges = new Map<string, () => number>();
  private readonly help = new Map<string, string>(Object.entries(HELP));
  private readonly gaugeSets = new Map<string, { label: string; read: () => Record<string, number> }>();
  /** gaugeRows() series as of their last read, for snapshot() (which stays synchronous). */
  private readonly rowsLast = new Map<string, GaugeRow[]>();
  private readonly rowReaders = new Map<string, () => Promise<GaugeRow[]>>();
  private loop: IntervalHistogram | undefined;

  inc(name: string, labels?: Labels, by = 1): void {
    const c = this.counter(name, labels);
    const l = this.fit(c, labels);
    c.inc(l, by);
    const k = key(name, l);
    this.values.set(k, (this.values.get(k) ?? 0) + by);
  }

  get(name: string, labels?: Labels): number {
    return this.values.get(key(name, labels)) ?? 0;
  }

  /** A gauge read when scraped. A second call for the same name replaces the reader. */
  gauge(name: string, read: () => number, help?: string): void {
    if (help) this.help.set(name, help);
    const first = !this.gauges.has(name);
    this.gauges.set(name, read);
    if (!first) return;
    const readers = this.gauges;
    new Gauge({
      name,
      help: this.help.get(name) ?? name,
      registers: [this.registry],
      collect() {
        this.set((readers.get(name) as () => number)());
      },
    });
  }

  /** A counter whose value another object keeps (it only grows): typed as a counter, read when scraped. */
  counterFrom(name: string, read: () => number, help?: string): void {
    if (help) this.help.set(name, help);
    new Counter({
      name,
      help: this.help.get(name) ?? name,
      registers: [this.registry],
      collect() {
        this.reset();
        const v = read();
        if (v > 0) this.inc(v);
      },
    });
    // snapshot() reads it at call time too.
    this.gauges.set(name, read);
  }

  /** A gauge with one label, its series read when scraped (e.g. the link state, one-hot). */
  gaugeSet(name: string, label: string, read: () => Record<string, number>, help?: string): void {
    if (help) this.help.set(name, help);
    new Gauge({
      name,
      help: this.help.get(name) ?? name,
      labelNames: [label],
      registers: [this.registry],
      collect() {
        for (const [v, n] of Object.entries(read())) this.set({ [label]: v }, n);
      },
    });
    this.gaugeSets.set(name, { label, read });
  }

  /**
   * Declares a histogram with its label names and buckets before its first observe(), so that its family is
   * in the exposition (HELP and TYPE) from the start; without it observe() makes one with DURATION_BUCKETS
   * and the labels of its first call. A second declaration of the same name changes nothing (prom-client fixes
   * a histogram's labels and buckets at creation).
   */
  histogram(name: string, labelNames: string[], buckets: number[], help?: string): void {
    if (help) this.help.set(name, help);
    if (this.histograms.has(name)) return;
    this.histograms.set(
      name,
      new Histogram({
        name,
        help: this.help.get(name) ?? name,
        labelNames: [...labelNames].sort(),
        buckets,
        registers: [this.registry],
      }),
    );
  }

  /**
   * A gauge whose series come from one async read at scrape time (a store query), e.g. queue depth per kind.
   * The series are replaced at every read, so a label value that is gone disappears; readers that want a 0
   * instead return it. A failing read leaves the family empty for that scrape instead of failing /metrics
   * (the link and the other metrics stay visible; /healthz reports the store).
   */
  gaugeRows(name: string, labelNames: string[], read: () => Promise<GaugeRow[]>, help?: string): void {
    if (help) this.help.set(name, help);
    const first = !this.rowReaders.has(name);
    this.rowReaders.set(name, read);
    // A second call for the same name replaces the reader (a feature built again on the same Metrics).
    if (!first) return;
    const last = this.rowsLast;
    const readers = this.rowReaders;
    new Gauge({
      name,
      help: this.help.get(name) ?? name,
      labelNames,
      registers: [this.registry],
      async collect() {
        let rows: GaugeRow[];
        try {
          rows = await (readers.get(name) as () => Promise<GaugeRow[]>)();
        } catch {
          rows = [];
        }
        this.reset();
        for (const r of rows) this.set(r.labels, r.value);
        last.set(name, rows);
      },
    });
  }

  /** Re-reads every gaugeRows() gauge, so that the next snapshot() shows current values. */
  async refresh(): Promise<void> {
    await Promise.all(
      [...this.rowReaders].map(async ([name, read]) => {
        this.rowsLast.set(name, await read().catch(() => []));
      }),
    );
  }

  /** Records one observation (seconds, or whatever unit the name says) in a histogram. */
  observe(name: string, labels: Labels | undefined, value: number, help?: string): void {
    if (help) this.help.set(name, help);
    let h = this.histograms.get(name);
    if (!h) {
      h = new Histogram({
        name,
        help: this.help.get(name) ?? name,
        labelNames: Object.keys(labels ?? {}).sort(),
        buckets: DURATION_BUCKETS,
        registers: [this.registry],
      });
      this.histograms.set(name, h);
    }
    const l = this.fit(h, labels);
    h.observe(l, value);
    const k = key(name, l);
    const s = this.histogramSeries.get(k) ?? { count: 0, sum: 0 };
    s.count++;
    s.sum += value;
    this.histogramSeries.set(k, s);
  }

  /** Starts a stopwatch; calling the returned function records the elapsed seconds in histogram `name`. */
  timer(name: string, labels?: Labels, help?: string): () => void {
    const t0 = process.hrtime.bigint();
    return () => this.observe(name, labels, Number(process.hrtime.bigint() - t0) / 1e9, help);
  }

  describe(name: string, help: string): void {
    this.help.set(name, help);
  }

  /**
   * Every counter and gauge by series key (`name{label="v"}`), histograms as `<name>_count` and `<name>_sum`
   * per series: what the admin stats command shows. gaugeRows() gauges as of their last read (refresh()).
   */
  snapshot(): Record<string, number> {
    const out: Record<string, number> = {};
    for (const [k, v] of this.values) out[k] = v;
    for (const [k, read] of this.gauges) out[k] = read();
    for (const [name, g] of this.gaugeSets) {
      for (const [v, n] of Object.entries(g.read())) out[key(name, { [g.label]: v })] = n;
    }
    for (const [name, rows] of this.rowsLast) for (const r of rows) out[key(name, r.labels)] = r.value;
    for (const [k, s] of this.histogramSeries) {
      const brace = k.indexOf("{");
      const [base, rest] = brace < 0 ? [k, ""] : [k.slice(0, brace), k.slice(brace)];
      out[`${base}_count${rest}`] = s.count;
      out[`${base}_sum${rest}`] = s.sum;
    }
    return out;
  }

  /** Prometheus text exposition (version 0.0.4). */
  async text(): Promise<string> {
    return this.registry.metrics();
  }

  /**
   * Event-loop lag, sampled by perf_hooks (no timer of cardlink's own), as gauges over the time since the last
   * scrape: a stalled loop delays every stanza, so this is the first thing to look at when latency rises.
   */
  watchEventLoop(): void {
    if (this.loop) return;
    const loop = monitorEventLoopDelay({ resolution: 10 });
    loop.enable();
    this.loop = loop;
    const sec = (ns: number): number => (Number.isFinite(ns) ? ns / 1e9 : 0);
    const lag = new Gauge({
      name: "cardlink_event_loop_lag_seconds",
      help: "event-loop delay since the previous scrape, by quantile (0.5, 0.99, 1 = max)",
      labelNames: ["quantile"],
      registers: [this.registry],
      collect() {
        if (loop.count === 0) return;
        this.set({ quantile: "0.5" }, sec(loop.percentile(50)));
        this.set({ quantile: "0.99" }, sec(loop.percentile(99)));
        this.set({ quantile: "1" }, sec(loop.max));
        loop.reset();
      },
    });
    void lag;
  }

  /** Stops what watchEventLoop() started. */
  close(): void {
    this.loop?.disable();
    this.loop = undefined;
  }

  /** Serves /metrics and /healthz on `opts.host` (default 127.0.0.1); any other path is 404. */
  serve(port: number, opts: ServeOptions = {}): Promise<http.Server> {
    const server = http.createServer((req, res) => {
      const url = (req.url ?? "").split("?")[0];
      if (req.method !== "GET" && req.method !== "HEAD") {
        res.writeHead(405, { allow: "GET, HEAD" }).end();
      } else if (url === "/metrics") {
        this.text().then(
          (body) => {
            res.writeHead(200, { "content-type": this.registry.contentType });
            res.end(body);
          },
          (e: unknown) => {
            res.writeHead(500, { "content-type": "text/plain" });
            res.end(`metrics failed: ${(e as Error).message}\n`);
          },
        );
      } else if (url === "/healthz") {
        const health = opts.health ?? (async (): Promise<Health> => ({ ok: true, checks: {} }));
        health().then(
          (h) => {
            res.writeHead(h.ok ? 200 : 503, { "content-type": "application/json" });
            res.end(JSON.stringify({ status: h.ok ? "ok" : "unavailable", ...h.checks }) + "\n");
          },
          (e: unknown) => {
            res.writeHead(503, { "content-type": "application/json" });
            res.end(JSON.stringify({ status: "unavailable", error: (e as Error).message }) + "\n");
          },
        );
      } else {
        res.writeHead(404).end();
      }
    });
    return new Promise((resolve, reject) => {
      server.once("error", reject);
      server.listen(port, opts.host ?? "127.0.0.1", () => resolve(server));
    });
  }

  private counter(name: string, labels?: Labels): Counter {
    let c = this.counters.get(name);
    if (!c) {
      c = new Counter({
        name,
        help: this.help.get(name) ?? name,
        labelNames: Object.keys(labels ?? {}).sort(),
        registers: [this.registry],
      });
      this.counters.set(name, c);
    }
    return c;
  }

  /**
   * A metric's label names are fixed by its first use (prom-client requires it). A later call with other
   * names must not throw inside a request handler: unknown names are dropped, missing ones become "".
   */
  private fit(m: Counter | Histogram, labels?: Labels): Labels {
    const names = (m as unknown as { labelNames: string[] }).labelNames;
    const out: Labels = {};
    for (const n of names) out[n] = labels?.[n] ?? "";
    return out;
  }
}
