import { expect } from "chai";
import { NS } from "../../stanzas/ns.js";
import { xml } from "../harness/clients.js";
import { freePort } from "../harness/ports.js";
import { parsePrometheusText, sampleValue, type Family } from "../harness/promtext.js";
import { useServers } from "../harness/suite.js";

describe("metrics on prom-client: types, histograms, /healthz", function () {
  this.timeout(60_000);
  const servers = useServers(["alice"], async () => ({ metricsPort: await freePort() }));
  const base = (): string => `http://127.0.0.1:${servers.app().ctx.config.metricsPort}`;
  const scrape = async (): Promise<Map<string, Family>> => {
    const res = await fetch(`${base()}/metrics`);
    expect(res.status).to.equal(200);
    expect(res.headers.get("content-type")).to.match(/^text\/plain; version=0\.0\.4/);
    return parsePrometheusText(await res.text());
  };
  const ping = { ns: NS.PING, name: "ping", type: "get" };

  it("the parser refuses what Prometheus would refuse", () => {
    // The test's own parser must be able to fail: otherwise "it parses" proves nothing.
    expect(() => parsePrometheusText("x_total 1\n")).to.throw(/without a declared family/);
    expect(() => parsePrometheusText("# TYPE a counter\na -1\n")).to.throw(/negative/);
    expect(() => parsePrometheusText('# TYPE a gauge\na{b="1} 2\n')).to.throw(/unterminated/);
    expect(() =>
      parsePrometheusText(
        '# TYPE h histogram\nh_bucket{le="1"} 2\nh_bucket{le="+Inf"} 1\nh_sum 1\nh_count 1\n',
      ),
    ).to.throw(/not cumulative/);
  });

  it("types counters as counters, gauges as gauges, and the IQ histogram moves under load", async () => {
    const alice = await servers.login("alice");
    try {
      await alice.iq("get", servers.prosody.componentDomain, xml("ping", { xmlns: NS.PING }));
      const before = await scrape();
      const types: Record<string, string> = {
        cardlink_link_connects_total: "counter",
        cardlink_link_failures_total: "counter",
        cardlink_link_conflicts_total: "counter",
        cardlink_iq_total: "counter",
        cardlink_iq_duration_seconds: "histogram",
        cardlink_link_up: "gauge",
        cardlink_link_state: "gauge",
        cardlink_iq_in_flight: "gauge",
        cardlink_users_available: "gauge",
        cardlink_event_loop_lag_seconds: "gauge",
      };
      for (const [name, type] of Object.entries(types)) {
        expect(before.get(name)?.type, name).to.equal(type);
      }
      expect(sampleValue(before, "cardlink_link_connects_total")).to.equal(1);
      expect(sampleValue(before, "cardlink_link_state", { state: "online" })).to.equal(1);
      expect(sampleValue(before, "cardlink_link_state", { state: "offline" })).to.equal(0);
      const count0 = sampleValue(before, "cardlink_iq_duration_seconds_count", ping) as number;
      expect(count0).to.be.at.least(1);

      // Load: 200 pings, 20 at a time.
      const n = 200;
      for (let i = 0; i < n; i += 20) {
        await Promise.all(
          Array.from({ length: 20 }, () =>
            alice.iq("get", servers.prosody.componentDomain, xml("ping", { xmlns: NS.PING })),
          ),
        );
      }
      const after = await scrape();
      expect(sampleValue(after, "cardlink_iq_duration_seconds_count", ping)).to.equal(count0 + n);
      expect(sampleValue(after, "cardlink_iq_duration_seconds_bucket", { ...ping, le: "+Inf" })).to.equal(
        count0 + n,
      );
      expect(sampleValue(after, "cardlink_iq_duration_seconds_sum", ping)).to.be.greaterThan(
        sampleValue(before, "cardlink_iq_duration_seconds_sum", ping) as number,
      );
      expect(sampleValue(after, "cardlink_iq_total", { ...ping, outcome: "result" })).to.equal(count0 + n);
      const lag = sampleValue(after, "cardlink_event_loop_lag_seconds", { quantile: "0.99" });
      expect(lag).to.be.a("number").and.at.least(0);
      // The admin stats command sees the histogram too.
      expect(servers.app().ctx.metrics.snapshot()).to.have.property(
        `cardlink_iq_duration_seconds_count{name="ping",ns="${NS.PING}",type="get"}`,
        count0 + n,
      );
    } finally {
      await alice.stop();
    }
  });

  it("/healthz answers 200 with the link up and the store reachable, 503 once the link is down", async () => {
    const ok = await fetch(`${base()}/healthz`);
    expect(ok.status).to.equal(200);
    expect(await ok.json()).to.deep.equal({ status: "ok", link: "online", store: true });
    await servers.app().link.stop();
    const down = await fetch(`${base()}/healthz`);
    expect(down.status).to.equal(503);
    expect(await down.json()).to.deep.equal({ status: "unavailable", link: "offline", store: true });
    const m = await scrape();
    expect(sampleValue(m, "cardlink_link_up")).to.equal(0);
    expect(sampleValue(m, "cardlink_link_state", { state: "offline" })).to.equal(1);
    expect((await fetch(`${base()}/other`)).status).to.equal(404);
  });

  it("/healthz answers 503 naming the store's error when the database is gone", async () => {
    await servers.app().ctx.store.close();
    const res = await fetch(`${base()}/healthz`);
    expect(res.status).to.equal(503);
    const body = (await res.json()) as { store: unknown };
    expect(body.store)
      .to.be.a("string")
      .and.match(/not open/);
  });
});
