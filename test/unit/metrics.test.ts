/**
 * The pieces of the queue metrics that need no server: the scrape cache (single flight, reuse within its
 * interval, failures not cached), gaugeRows() (series replaced at each read, a failing read not failing the
 * exposition) and declared histogram buckets, all through a real prom-client Registry and the strict parser.
 */
import { expect } from "chai";
import { cachedRead, LATENCY_BUCKETS, Metrics } from "../../component/runtime/metrics.js";
import { parsePrometheusText, sampleValue } from "../harness/promtext.js";

describe("metrics: scrape cache, store-read gauges, declared histograms", () => {
  it("cachedRead: concurrent calls share one read, later calls reuse it within the interval", async () => {
    let reads = 0;
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const read = cachedRead(async () => {
      reads++;
      await gate;
      return reads;
    }, 60_000);
    const storm = Array.from({ length: 20 }, () => read());
    release();
    expect(await Promise.all(storm)).to.deep.equal(Array(20).fill(1));
    expect(await read()).to.equal(1);
    expect(reads).to.equal(1);
  });

  it("cachedRead: with no interval every call reads; a failed read is not kept", async () => {
    let reads = 0;
    let fail = true;
    const read = cachedRead(async () => {
      reads++;
      if (fail) throw new Error("store gone");
      return reads;
    }, 60_000);
    let err: unknown;
    await read().catch((e: unknown) => (err = e));
    expect((err as Error).message).to.equal("store gone");
    fail = false;
    expect(await read()).to.equal(2);
    const fresh = cachedRead(async () => ++reads, 0);
    expect(await fresh()).to.equal(3);
    expect(await fresh()).to.equal(4);
  });

  it("gaugeRows: series replaced at each read; a failing read empties the family, the rest still scrapes", async () => {
    const m = new Metrics();
    let rows = [
      { labels: { kind: "card" }, value: 3 },
      { labels: { kind: "binding" }, value: 0 },
    ];
    let broken = false;
    m.gaugeRows("q_entries", ["kind"], async () => {
      if (broken) throw new Error("no database");
      return rows;
    });
    m.inc("other_total");
    let f = parsePrometheusText(await m.text());
    expect(f.get("q_entries")?.type).to.equal("gauge");
    expect(sampleValue(f, "q_entries", { kind: "card" })).to.equal(3);
    expect(sampleValue(f, "q_entries", { kind: "binding" })).to.equal(0);
    rows = [{ labels: { kind: "binding" }, value: 1 }];
    f = parsePrometheusText(await m.text());
    expect(sampleValue(f, "q_entries", { kind: "card" })).to.equal(undefined);
    expect(sampleValue(f, "q_entries", { kind: "binding" })).to.equal(1);
    expect(m.snapshot()).to.include({ 'q_entries{kind="binding"}': 1, other_total: 1 });
    broken = true;
    f = parsePrometheusText(await m.text());
    expect(f.get("q_entries")?.samples).to.deep.equal([]);
    expect(sampleValue(f, "other_total")).to.equal(1);
    // refresh() reads again for snapshot(), also without a scrape.
    broken = false;
    rows = [{ labels: { kind: "card" }, value: 7 }];
    await m.refresh();
    expect(m.snapshot()).to.include({ 'q_entries{kind="card"}': 7 });
  });

  it("histogram(): declared buckets and labels, the family typed before the first observation", async () => {
    const m = new Metrics();
    m.histogram("wait_seconds", ["kind"], LATENCY_BUCKETS, "a wait");
    let f = parsePrometheusText(await m.text());
    expect(f.get("wait_seconds")?.type).to.equal("histogram");
    expect(f.get("wait_seconds")?.samples).to.deep.equal([]);
    m.observe("wait_seconds", { kind: "card" }, 0.001);
    m.observe("wait_seconds", { kind: "card" }, 7200);
    f = parsePrometheusText(await m.text());
    const bucket = (le: string): number | undefined =>
      sampleValue(f, "wait_seconds_bucket", { kind: "card", le });
    expect(bucket("0.0025")).to.equal(1);
    expect(bucket("3600")).to.equal(1);
    expect(bucket("10800")).to.equal(2);
    expect(bucket("+Inf")).to.equal(2);
    expect(sampleValue(f, "wait_seconds_sum", { kind: "card" })).to.equal(7200.001);
    // Undeclared histograms keep the IQ duration buckets (0.5 ms … 5 s).
    m.observe("other_seconds", undefined, 0.2);
    f = parsePrometheusText(await m.text());
    expect(sampleValue(f, "other_seconds_bucket", { le: "5" })).to.equal(1);
    expect(sampleValue(f, "other_seconds_bucket", { le: "3600" })).to.equal(undefined);
  });
});
