import { expect } from "chai";
import { createDecipheriv } from "node:crypto";
import { mkdtempSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { createLogger } from "../../component/runtime/log.js";
import { Metrics } from "../../component/runtime/metrics.js";
import { encryptPayload } from "../../component/push.js";
import { ApnsSender } from "../../push/apns.js";
import { PushDispatcher } from "../../component/push-dispatcher.js";
import { SqliteStore } from "../../storage/sqlite/store.js";
import type { PushJob } from "../../storage/store.js";
import { waitFor, sleep } from "../harness/ports.js";
import { start as startApns, type ApnsStandin } from "../standins/apns-standin.js";

const token = (n: number): string => n.toString(16).padStart(64, "0");

describe("push dispatcher (real SQLite queue, real node-apn, APNs stand-in)", function () {
  this.timeout(30_000);
  let apns: ApnsStandin;
  let store: SqliteStore;
  let dispatcher: PushDispatcher;
  let metrics: Metrics;

  const job = (t: string, collapseId: string, id: string): Omit<PushJob, "attempts" | "nextAt"> => ({
    id,
    owner: "u@localhost",
    deviceId: "d1",
    platform: "ios",
    token: t,
    topic: "org.example.cardlink",
    kind: "alert",
    collapseId,
    alert: { body: "A contact card was updated." },
    data: { ref: collapseId, v: "1" },
    expiresAt: Math.floor(Date.now() / 1000) + 3600,
  });

  before(async () => {
    apns = await startApns();
  });
  after(async () => {
    await apns.stop();
  });
  beforeEach(() => {
    store = new SqliteStore(path.join(mkdtempSync(path.join(os.tmpdir(), "cardlink-disp-")), "db.sqlite"));
    metrics = new Metrics();
    const sender = new ApnsSender({
      production: false,
      address: apns.address,
      port: apns.port,
      ca: apns.caPath,
      token: { key: apns.tokenKeyPath, keyId: apns.keyId, teamId: apns.teamId },
      requestTimeoutMs: 3000,
    });
    dispatcher = new PushDispatcher(
      store,
      { ios: sender },
      { concurrency: 16, retryBaseMs: 100, retryMaxMs: 1000, maxAttempts: 3, perDeviceHourlyBudget: 2 },
      createLogger("silent"),
      metrics,
    );
  });
  afterEach(async () => {
    await dispatcher.stop();
    await store.close();
  });

  it("coalesces: two notices with one collapse id for one token → one request, the newer content", async () => {
    const t = token(100);
    await store.push.enqueue([job(t, "card-a", "n1")]);
    await store.push.enqueue([{ ...job(t, "card-a", "n2"), data: { ref: "card-a", v: "2" } }]);
    expect(await store.push.count()).to.equal(1);
    dispatcher.kick();
    await waitFor(() => apns.requestsFor(t).length === 1, "one request");
    await sleep(200);
    expect(apns.requestsFor(t)).to.have.length(1);
    expect((apns.requestsFor(t)[0]!.body as { v: string }).v).to.equal("2");
    await waitFor(async () => (await store.push.count()) === 0, "queue empty");
  });

  it("per-device hourly budget: over budget, a notice waits instead of being sent", async () => {
    const t = token(101);
    await store.push.enqueue([job(t, "a", "b1"), job(t, "b", "b2"), job(t, "c", "b3")]);
    dispatcher.kick();
    await waitFor(() => apns.requestsFor(t).length === 2, "two sent");
    await waitFor(
      () => metrics.get("cardlink_push_total", { platform: "ios", outcome: "over-budget" }) === 1,
      "deferred",
    );
    await sleep(300);
    expect(apns.requestsFor(t)).to.have.length(2);
    const [left] = await store.push.due(Date.now() + 2 * 3_600_000, 10);
    expect(left?.nextAt).to.be.greaterThan(Date.now() + 3_500_000);
  });

  it("gives up after maxAttempts of transient failures (500), leaving nothing queued", async () => {
    const t = token(102);
    apns.reply(t, { status: 500, reason: "InternalServerError" });
    await store.push.enqueue([job(t, "x", "g1")]);
    dispatcher.kick();
    await waitFor(
      () => metrics.get("cardlink_push_total", { platform: "ios", outcome: "gave-up" }) === 1,
      "gave up",
      10_000,
    );
    expect(apns.requestsFor(t)).to.have.length(3);
    expect(await store.push.count()).to.equal(0);
  });

  it("a permanent failure (400 BadTopic) is dropped at once", async () => {
    const t = token(103);
    apns.reply(t, { status: 400, reason: "BadTopic" });
    await store.push.enqueue([job(t, "x", "f1")]);
    dispatcher.kick();
    await waitFor(async () => (await store.push.count()) === 0, "dropped");
    expect(apns.requestsFor(t)).to.have.length(1);
    expect(metrics.get("cardlink_push_total", { platform: "ios", outcome: "failed" })).to.equal(1);
  });

  it("encrypts the optional payload with the device's AES-256-GCM key", () => {
    const key = Buffer.alloc(32, 7).toString("base64");
    const blob = Buffer.from(encryptPayload(key, JSON.stringify({ kinds: ["card"] })), "base64");
    const iv = blob.subarray(0, 12);
    const tag = blob.subarray(blob.length - 16);
    const d = createDecipheriv("aes-256-gcm", Buffer.from(key, "base64"), iv);
    d.setAuthTag(tag);
    const plain = Buffer.concat([d.update(blob.subarray(12, blob.length - 16)), d.final()]).toString("utf8");
    expect(JSON.parse(plain)).to.deep.equal({ kinds: ["card"] });
  });
});
