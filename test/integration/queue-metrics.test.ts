/**
 * The queue and latency metrics under real load: real Prosody, real clients, the APNs and FCM stand-ins, a real
 * SQLite file. An online holder, two offline holders (iOS, Android) woken by push and coming back; the
 * exposition parsed by the strict parser in test/harness/promtext.ts at every step.
 */
import { expect } from "chai";
import { mkdtempSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import type { Cardlink } from "../../component/runtime/app.js";
import { openReadOnly } from "../../storage/sqlite/db.js";
import { startInProcess, testConfig } from "../harness/cardlink.js";
import * as look from "../harness/look.js";
import { cardClient, type CardClient } from "../harness/cardclient.js";
import { xml } from "../harness/clients.js";
import { freePort, waitFor } from "../harness/ports.js";
import { parsePrometheusText, sampleValue, type Family } from "../harness/promtext.js";
import { ProsodyServer } from "../harness/prosody.js";
import { start as startApns, type ApnsStandin } from "../standins/apns-standin.js";
import { installFcmRedirect, uninstallFcmRedirect } from "../standins/fcm-redirect.js";
import { FcmStandin } from "../standins/fcm-standin.js";

const TOPIC = "org.example.cardlink";
const IOS_TOKEN = "ab".repeat(32);
const ANDROID_TOKEN = "android-token-metrics-gina";

describe("queue and latency metrics: delivery, push, queue depth", function () {
  this.timeout(120_000);
  const prosody = new ProsodyServer();
  let apns: ApnsStandin;
  let fcm: FcmStandin;
  let app: Cardlink;
  let alice: CardClient;
  let metricsPort: number;
  const dbFile = path.join(mkdtempSync(path.join(os.tmpdir(), "cardlink-qm-")), "cardlink.sqlite");
  const jid = (u: string): string => `${u}@${prosody.host}`;

  const scrape = async (): Promise<Map<string, Family>> => {
    const res = await fetch(`http://127.0.0.1:${metricsPort}/metrics`);
    expect(res.status).to.equal(200);
    return parsePrometheusText(await res.text());
  };
  const value = async (name: string, labels: Record<string, string> = {}): Promise<number> =>
    sampleValue(await scrape(), name, labels) ?? NaN;
  /** Scrapes until `name{labels}` satisfies `ok` (the gauges' store reads are cached for up to 2 s). */
  const until = async (
    name: string,
    labels: Record<string, string>,
    ok: (v: number) => boolean,
    what: string,
  ): Promise<number> => {
    let v = NaN;
    await waitFor(
      async () => ok((v = await value(name, labels))),
      `${what} (last ${name}${JSON.stringify(labels)} = ${v})`,
      20_000,
    );
    return v;
  };

  before(async () => {
    apns = await startApns();
    fcm = await new FcmStandin().start();
    installFcmRedirect({ host: fcm.host, port: fcm.port, ca: fcm.caPem });
    await prosody.start();
    prosody.createUsers(["alice", "bob", "carol", "gina"].map((u) => ({ user: u, password: `${u}pw` })));
    metricsPort = await freePort();
    app = await startInProcess(
      testConfig(
        prosody,
        {
          metricsPort,
          push: {
            retryBaseMs: 200,
            retryMaxMs: 1000,
            perDeviceHourlyBudget: 100,
            // The APNs stand-in refuses for a while in one test: the notice must not run out of attempts.
            maxAttempts: 100,
            apns: {
              production: false,
              address: apns.address,
              port: apns.port,
              ca: apns.caPath,
              token: { key: apns.tokenKeyPath, keyId: apns.keyId, teamId: apns.teamId },
              defaultTopic: TOPIC,
              requestTimeoutMs: 3000,
            },
            fcm: { serviceAccount: fcm.serviceAccountPath, requestTimeoutMs: 5000 },
          },
        },
        dbFile,
      ),
    );
    alice = await cardClient(prosody, "alice");
    await alice.setCard("Alice", []);
  });
  after(async () => {
    await alice?.stop();
    await app?.stop();
    await prosody.stop();
    prosody.cleanup();
    await apns?.stop();
    uninstallFcmRedirect();
    await fcm?.stop();
  });

  /** Binds alice with `user` by exchange code (with a push device if `token`); the client stays connected. */
  const bound = async (
    user: string,
    device?: Record<string, string>,
    token?: string,
  ): Promise<CardClient> => {
    const c = await cardClient(prosody, user);
    if (device && token)
      await c.cardlink(
        "set",
        "device",
        device,
        xml("push", device.platform === "ios" ? { token, topic: TOPIC } : { token }),
      );
    const code = String((await alice.cardlink("set", "exchange-code")).getChild("exchange-code")?.attrs.code);
    await c.cardlink("set", "redeem", { code });
    await c.waitForUpdate((u) => u.kind === "card", `${user}: alice's card`);
    await alice.waitForUpdate((u) => u.kind === "binding" && u.content.attrs.peer === jid(user), "binding");
    // A client records an update before its ack reaches cardlink: wait for the acks to be processed (the
    // entries deleted; the histogram is observed right after), so a later scrape is not racing them.
    await waitFor(async () => (await look.pendingCount(app)) === 0, "acks processed");
    return c;
  };
  const offline = async (c: CardClient, user: string): Promise<void> => {
    await c.stop();
    await waitFor(
      async () => !(await look.resources(app)).some((r) => r.bare === jid(user)),
      `${user} offline`,
    );
  };

  it("the gauges' queries are one scan of a covering index each (EXPLAIN QUERY PLAN)", async () => {
    const q = await look.gaugeQueries(app);
    const db = openReadOnly(dbFile);
    try {
      const plan = (sql: string): string[] =>
        (db.prepare(`EXPLAIN QUERY PLAN ${sql}`).all() as Array<{ detail: string }>).map((r) => r.detail);
      // No table scan and no "USE TEMP B-TREE FOR GROUP BY": the index delivers the groups in order.
      expect(plan(q.outbox.sql)).to.deep.equal(q.outbox.plan);
      expect(plan(q.push.sql)).to.deep.equal(q.push.plan);
    } finally {
      db.close();
    }
  });

  it("types the new families and reports every kind and provider, 0 when nothing waits", async () => {
    const m = await scrape();
    const types: Record<string, string> = {
      cardlink_delivery_latency_seconds: "histogram",
      cardlink_push_latency_seconds: "histogram",
      cardlink_push_request_duration_seconds: "histogram",
      cardlink_outbox_entries: "gauge",
      cardlink_outbox_oldest_entry_age_seconds: "gauge",
      cardlink_push_queue_notices: "gauge",
      cardlink_push_queue_oldest_notice_age_seconds: "gauge",
    };
    for (const [name, type] of Object.entries(types)) expect(m.get(name)?.type, name).to.equal(type);
    for (const kind of ["card", "binding", "exchange-request"]) {
      expect(sampleValue(m, "cardlink_outbox_entries", { kind }), kind).to.equal(0);
      expect(sampleValue(m, "cardlink_outbox_oldest_entry_age_seconds", { kind }), kind).to.equal(0);
    }
    for (const provider of ["apns", "fcm"]) {
      expect(sampleValue(m, "cardlink_push_queue_notices", { provider }), provider).to.equal(0);
      expect(sampleValue(m, "cardlink_push_queue_oldest_notice_age_seconds", { provider })).to.equal(0);
    }
  });

  it("an online holder's ack moves the delivery histogram by exactly the entries acked", async () => {
    // No push device: carol's entry waits silently in the next test.
    const carol = await bound("carol");
    try {
      const before = await scrape();
      const count0 = sampleValue(before, "cardlink_delivery_latency_seconds_count", { kind: "card" }) ?? 0;
      const sum0 = sampleValue(before, "cardlink_delivery_latency_seconds_sum", { kind: "card" }) ?? 0;
      const acked0 = sampleValue(before, "cardlink_delivery_acked_total") as number;
      await alice.setCard("Alice", [xml("note", {}, xml("text", {}, "for carol"))]);
      await carol.waitForUpdate((u) => u.kind === "card" && u.content.toString().includes("for carol"), "v2");
      await waitFor(async () => (await value("cardlink_delivery_acked_total")) > acked0, "ack counted");
      const after = await scrape();
      expect(sampleValue(after, "cardlink_delivery_latency_seconds_count", { kind: "card" })).to.equal(
        count0 + 1,
      );
      expect(
        sampleValue(after, "cardlink_delivery_latency_seconds_bucket", { kind: "card", le: "+Inf" }),
      ).to.equal(count0 + 1);
      expect(sampleValue(after, "cardlink_delivery_latency_seconds_sum", { kind: "card" })).to.be.at.least(
        sum0,
      );
      // Every acked entry is observed once, whatever its kind.
      const counted = (m: Map<string, Family>): number =>
        (m.get("cardlink_delivery_latency_seconds")?.samples ?? [])
          .filter((s) => s.name.endsWith("_count"))
          .reduce((a, s) => a + s.value, 0);
      expect(counted(after) - counted(before)).to.equal(
        (sampleValue(after, "cardlink_delivery_acked_total") as number) - acked0,
      );
      // No push for an online holder: the push histograms did not move for fcm.
      expect(sampleValue(after, "cardlink_push_latency_seconds_count", { provider: "fcm" }) ?? 0).to.equal(
        sampleValue(before, "cardlink_push_latency_seconds_count", { provider: "fcm" }) ?? 0,
      );
    } finally {
      await carol.stop();
    }
  });

  it("offline holders: depth and age go up, pushes reach APNs and FCM (retry included), depth returns to 0 as they come back", async () => {
    const bob = await bound("bob", { id: "bob-iphone", platform: "ios" }, IOS_TOKEN);
    const gina = await bound("gina", { id: "gina-pixel", platform: "android" }, ANDROID_TOKEN);
    await offline(bob, "bob");
    await offline(gina, "gina");
    // carol (previous test) is offline too and holds alice's card: her entry waits as well.
    const before = await scrape();
    const h = (m: Map<string, Family>, name: string, provider: string): number =>
      sampleValue(m, name, { provider }) ?? 0;
    const cards0 = sampleValue(before, "cardlink_outbox_entries", { kind: "card" }) as number;
    expect(cards0).to.equal(0);

    // APNs is unavailable for bob's token at first: his notice stays queued and is retried.
    apns.reply(IOS_TOKEN, { status: 503, reason: "ServiceUnavailable" });
    await alice.setCard("Alice", [xml("note", {}, xml("text", {}, "while you were away"))]);

    await until("cardlink_outbox_entries", { kind: "card" }, (v) => v === 3, "three card entries waiting");
    const age1 = await until(
      "cardlink_outbox_oldest_entry_age_seconds",
      { kind: "card" },
      (v) => v > 0,
      "the oldest entry has an age",
    );
    // The age keeps growing while the entries wait (computed at each read, even from a cached query).
    await until("cardlink_outbox_oldest_entry_age_seconds", { kind: "card" }, (v) => v > age1, "age grows");

    await waitFor(() => apns.requestsFor(IOS_TOKEN).length >= 2, "APNs tried twice", 20_000);
    await until("cardlink_push_queue_notices", { provider: "apns" }, (v) => v >= 1, "apns notice queued");
    expect(
      await value("cardlink_push_queue_oldest_notice_age_seconds", { provider: "apns" }),
    ).to.be.greaterThan(0);
    const mid = await scrape();
    // Not accepted yet: no APNs latency observed, but every failed request was timed.
    expect(h(mid, "cardlink_push_latency_seconds_count", "apns")).to.equal(
      h(before, "cardlink_push_latency_seconds_count", "apns"),
    );
    expect(
      h(mid, "cardlink_push_request_duration_seconds_count", "apns") -
        h(before, "cardlink_push_request_duration_seconds_count", "apns"),
    ).to.be.at.least(2);

    // APNs recovers: the retry is accepted, the queue drains. bob's accepted notice waited at least the
    // backoff, so the APNs latency sum moves by more than nothing.
    apns.reply(IOS_TOKEN, { status: 200 });
    await until("cardlink_push_queue_notices", { provider: "apns" }, (v) => v === 0, "apns queue empty");
    await waitFor(() => fcm.fcmRequests.some((r) => r.token === ANDROID_TOKEN), "FCM request", 20_000);
    await until("cardlink_push_queue_notices", { provider: "fcm" }, (v) => v === 0, "fcm queue empty");
    const pushed = await scrape();
    for (const p of ["apns", "fcm"]) {
      expect(h(pushed, "cardlink_push_latency_seconds_count", p), p).to.equal(
        h(before, "cardlink_push_latency_seconds_count", p) + 1,
      );
      expect(h(pushed, "cardlink_push_latency_seconds_sum", p), p).to.be.at.least(
        h(before, "cardlink_push_latency_seconds_sum", p),
      );
      expect(sampleValue(pushed, "cardlink_push_queue_oldest_notice_age_seconds", { provider: p })).to.equal(
        0,
      );
    }
    expect(h(pushed, "cardlink_push_latency_seconds_sum", "apns")).to.be.greaterThan(
      h(before, "cardlink_push_latency_seconds_sum", "apns"),
    );
    // The waits are still there: pushes wake devices, they do not deliver.
    expect(sampleValue(pushed, "cardlink_outbox_entries", { kind: "card" })).to.equal(3);

    // The holders come back: each ack is a delivery latency observation, and the depth goes back to 0.
    const lat0 = sampleValue(pushed, "cardlink_delivery_latency_seconds_count", { kind: "card" }) as number;
    const backBob = await cardClient(prosody, "bob");
    await backBob.waitForUpdate((u) => u.kind === "card" && u.content.toString().includes("away"), "bob");
    await until("cardlink_outbox_entries", { kind: "card" }, (v) => v === 2, "bob's entry acked");
    const backGina = await cardClient(prosody, "gina");
    const backCarol = await cardClient(prosody, "carol");
    try {
      await backGina.waitForUpdate((u) => u.kind === "card" && u.content.toString().includes("away"), "gina");
      await backCarol.waitForUpdate(
        (u) => u.kind === "card" && u.content.toString().includes("away"),
        "carol",
      );
      await until("cardlink_outbox_entries", { kind: "card" }, (v) => v === 0, "all card entries acked");
      const done = await scrape();
      expect(sampleValue(done, "cardlink_outbox_oldest_entry_age_seconds", { kind: "card" })).to.equal(0);
      expect(sampleValue(done, "cardlink_delivery_latency_seconds_count", { kind: "card" })).to.equal(
        lat0 + 3,
      );
      // The offline holders' waits are in the sum: at least the age the oldest had reached while they were away.
      expect(
        (sampleValue(done, "cardlink_delivery_latency_seconds_sum", { kind: "card" }) as number) -
          (sampleValue(pushed, "cardlink_delivery_latency_seconds_sum", { kind: "card" }) as number),
      ).to.be.greaterThan(age1);
      // The admin stats command reads the gauges fresh from the store.
      await app.ctx.metrics.refresh();
      expect(app.ctx.metrics.snapshot()).to.include({
        'cardlink_outbox_entries{kind="card"}': 0,
        'cardlink_push_queue_notices{provider="apns"}': 0,
      });
    } finally {
      await backBob.stop();
      await backGina.stop();
      await backCarol.stop();
    }
  });
});
