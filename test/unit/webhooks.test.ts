/**
 * The webhook channel (component/runtime/webhooks/): Standard Webhooks signatures against the spec's published
 * vector, Retry-After parsing, and the channel driven by the real queue engine (runtime/queue/) over a real
 * SqliteStore against the local HTTPS stand-in (test/standins/webhook-standin.ts), which verifies every
 * signature with its own code. The engine's clock is pinned and moved by the test (no waiting for backoffs);
 * the HTTP exchanges are real. The dead-letter CLI (`cardlink dead-letters`, `replay-dead-letter`) runs
 * in-process over the same database file.
 */
import { expect } from "chai";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { pino } from "pino";
import { loadConfig } from "../../component/runtime/config.js";
import { cli, type Io } from "../../component/runtime/ctl.js";
import { EventBus } from "../../component/runtime/events.js";
import { LATENCY_BUCKETS, Metrics, PROVIDER_BUCKETS } from "../../component/runtime/metrics.js";
import type { JobChannel } from "../../component/runtime/queue/api.js";
import { Engine } from "../../component/runtime/queue/engine.js";
import { jobsTx } from "../../component/runtime/queue/jobs-tx.js";
import { makeUow, type Uow } from "../../component/runtime/uow.js";
import { WEBHOOK_CHANNEL, webhookJob } from "../../component/runtime/webhooks/api.js";
import { WebhookChannel } from "../../component/runtime/webhooks/channel.js";
import { resolveConnectors } from "../../component/runtime/webhooks/connectors.js";
import { MAX_RETRY_AFTER_MS, parseRetryAfter } from "../../component/runtime/webhooks/sender.js";
import { secretKey, signature, verifySignature } from "../../component/runtime/webhooks/signature.js";
import { SqliteStore } from "../../storage/sqlite/store.js";
import { TEST_SECRET, WebhookStandin } from "../standins/webhook-standin.js";

const T0 = 1_700_000_000_000; // whole seconds: an HTTP-date round-trips exactly
const unused = (): never => {
  throw new Error("part not used here");
};

describe("webhooks: Standard Webhooks signing", () => {
  it("signs the spec's published example exactly (standard-webhooks spec, 'Signature scheme')", () => {
    const key = secretKey("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw");
    const sig = signature(key, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, '{"test": 2432232314}');
    expect(sig).to.equal("v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    expect(
      verifySignature(key, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, '{"test": 2432232314}', `v1,x ${sig}`),
    ).to.equal(true);
    expect(
      verifySignature(key, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265331, '{"test": 2432232314}', sig),
    ).to.equal(false);
  });

  it("refuses secrets that are not whsec_<base64 of 24–64 bytes>", () => {
    expect(() => secretKey("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")).to.throw(/whsec_/);
    expect(() => secretKey("whsec_not base64!")).to.throw(/base64/);
    expect(() => secretKey(`whsec_${Buffer.alloc(8).toString("base64")}`)).to.throw(/24–64 bytes \(has 8\)/);
    expect(secretKey(TEST_SECRET)).to.have.length(32);
  });

  it("reads Retry-After as seconds or an HTTP-date, capped; unreadable is absent", () => {
    expect(parseRetryAfter("120", T0)).to.equal(120_000);
    expect(parseRetryAfter(new Date(T0 + 90_000).toUTCString(), T0)).to.equal(90_000);
    expect(parseRetryAfter(new Date(T0 - 5_000).toUTCString(), T0)).to.equal(0);
    expect(parseRetryAfter("999999999", T0)).to.equal(MAX_RETRY_AFTER_MS);
    expect(parseRetryAfter("soon", T0)).to.equal(undefined);
    expect(parseRetryAfter(undefined, T0)).to.equal(undefined);
  });

  it("a connector's configuration is checked at load: https only, whsec_ secret, unique names", () => {
    const base = { name: "chat", url: "https://127.0.0.1:1/x", secret: TEST_SECRET };
    const load = (connectors: unknown[]) =>
      loadConfig({ env: {}, overrides: { secret: "s", webhooks: { connectors } } });
    expect(load([base]).webhooks.connectors[0]?.settings).to.deep.equal(["nickname", "avatar", "status"]);
    expect(() => load([{ ...base, url: "http://127.0.0.1/x" }])).to.throw(/connectors\[0\]\.url .* https/);
    expect(() => load([{ ...base, secret: "abc" }])).to.throw(
      /connectors\[0\]\.secret must start with 'whsec_'/,
    );
    expect(() => load([base, base])).to.throw(/'chat' is used twice/);
    expect(() => load([{ ...base, settings: ["mood"] }])).to.throw(/settings\[0\]/);
    expect(() =>
      resolveConnectors([{ ...base, settings: [], timeoutMs: 1000, caFile: "/nonexistent" }]),
    ).to.throw(/connectors\[0\]\.caFile/);
  });
});

describe("webhooks: the channel through the queue engine, against the HTTPS stand-in", function () {
  this.timeout(60_000);
  let standin: WebhookStandin;
  let dir: string;
  let dbPath: string;
  let cfgPath: string;
  let store: SqliteStore;
  let now: number;
  let uow: Uow;
  let engine: Engine;
  let channel: WebhookChannel;
  let metrics: Metrics;

  before(async () => {
    standin = new WebhookStandin();
    await standin.start();
  });
  after(async () => {
    await standin.stop();
  });

  const capture = (): Io & { lines: string[]; errs: string[] } => {
    const lines: string[] = [];
    const errs: string[] = [];
    return { lines, errs, out: (l) => lines.push(l), err: (l) => errs.push(l) };
  };

  beforeEach(async () => {
    dir = mkdtempSync(path.join(tmpdir(), "cardlink-webhooks-"));
    dbPath = path.join(dir, "cardlink.sqlite");
    cfgPath = path.join(dir, "cardlink.json");
    writeFileSync(cfgPath, JSON.stringify({ secret: "s", database: { path: dbPath } }));
    // The schema the service runs (2000 and every module's migrations), made by the real `cardlink migrate`.
    const io = capture();
    expect(await cli(["migrate", "-c", cfgPath], io), io.errs.join("\n")).to.equal(0);
    now = T0;
    store = new SqliteStore(dbPath, { legacy: false, clock: () => now });
    const events = new EventBus();
    const channels = new Map<string, JobChannel>();
    uow = makeUow(
      store,
      {
        accounts: unused,
        audience: unused,
        stream: unused,
        jobs: jobsTx({ channel: (n) => channels.get(n) }),
      },
      events,
    );
    metrics = new Metrics();
    channel = new WebhookChannel({
      connectors: resolveConnectors([
        {
          name: "chat",
          url: standin.url,
          secret: TEST_SECRET,
          settings: [],
          timeoutMs: 2000,
          caFile: standin.caFile,
        },
        {
          name: "slow",
          url: standin.url,
          secret: TEST_SECRET,
          settings: [],
          timeoutMs: 300,
          caFile: standin.caFile,
        },
      ]),
      config: { concurrency: 8, maxAttempts: 3, retryBaseMs: 1000, retryMaxMs: 60_000 },
      log: pino({ level: "silent" }),
      metrics,
      buckets: { latency: LATENCY_BUCKETS, request: PROVIDER_BUCKETS },
      clock: () => now,
    });
    channels.set(WEBHOOK_CHANNEL, channel);
    engine = new Engine({
      store,
      uow,
      events,
      log: pino({ level: "silent" }),
      config: {
        leaseMs: 30_000,
        heartbeatMs: 5_000,
        exclusive: true,
        observerPollMs: 60_000,
        pollMs: 60_000,
        deadLetterDays: 30,
      },
      processId: "test:1:webhooks",
      clock: () => now,
      random: () => 1, // backoff = its ceiling: base · 2^attempts
    });
    engine.registerChannel(channel);
    await engine.start();
    standin.requests.length = 0;
    standin.always({ status: 204 });
  });
  afterEach(async () => {
    await engine.stop();
    channel.close();
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const send = async (connector: string, data: Record<string, string>, type = "profile.changed") => {
    await uow("enqueue", (u) =>
      u.queue.job(WEBHOOK_CHANNEL, webhookJob(connector, type, data, { now: u.now })),
    );
    await engine.idle();
  };
  const jobs = () =>
    store.read("rows", (r) =>
      r.all<{ attempts: number; next_at: number; uid: string; last_error: string }>(
        "SELECT attempts, next_at, uid, last_error FROM jobs ORDER BY id",
      ),
    );
  const dead = () =>
    store.read("dead", (r) =>
      r.all<{ id: number; uid: string; attempts: number; last_error: string }>(
        "SELECT id, uid, attempts, last_error FROM dead_letters ORDER BY id",
      ),
    );
  const later = async (ms: number) => {
    now += ms;
    engine.kickChannel(WEBHOOK_CHANNEL);
    await engine.idle();
  };

  it("posts the envelope as JSON with webhook-id/-timestamp/-signature the receiver verifies", async () => {
    await send("chat", { nickname: "Ann" });
    expect(standin.requests).to.have.length(1);
    const r = standin.requests[0];
    expect(r?.verified, "signature").to.equal(true);
    expect(r?.contentType).to.equal("application/json");
    expect(r?.timestamp).to.equal(String(T0 / 1000));
    expect(r?.id).to.match(/^[0-9a-f-]{36}$/);
    expect(r?.body).to.deep.equal({
      type: "profile.changed",
      timestamp: new Date(T0).toISOString(),
      data: { nickname: "Ann" },
    });
    expect(await jobs()).to.deep.equal([]);
    expect(metrics.get("cardlink_webhook_total", { connector: "chat", outcome: "delivered" })).to.equal(1);
  });

  it("retries 503 after Retry-After (seconds), 429 after an HTTP-date, 408 and a timeout after the backoff — same webhook-id", async () => {
    standin.failNext(1, { status: 503, retryAfter: "30" });
    standin.failNext(1, { status: 429, retryAfter: new Date(T0 + 30_000 + 90_000).toUTCString() });
    await send("chat", { nickname: "Ann" });
    let [j] = await jobs();
    // The backoff would be 1 s (attempt 0); the receiver's 30 s wins.
    expect([j?.attempts, j?.next_at]).to.deep.equal([1, T0 + 30_000]);
    expect(j?.last_error).to.match(/^HTTP 503/);
    await later(29_999);
    expect(standin.requests).to.have.length(1);
    await later(1);
    [j] = await jobs();
    expect([j?.attempts, j?.next_at]).to.deep.equal([2, T0 + 30_000 + 90_000]);
    await later(90_000);
    expect(await jobs()).to.deep.equal([]);
    const ids = standin.requests.map((r) => r.id);
    expect(ids).to.have.length(3);
    expect(new Set(ids).size, "one idempotency id across retries").to.equal(1);
    expect(standin.requests.map((r) => [r.status, r.verified, r.timestamp])).to.deep.equal([
      [503, true, String(T0 / 1000)],
      [429, true, String((T0 + 30_000) / 1000)],
      [204, true, String((T0 + 120_000) / 1000)],
    ]);
    // Same bytes every time: only the timestamp header and the signature change.
    expect(new Set(standin.requests.map((r) => r.raw)).size).to.equal(1);

    standin.requests.length = 0;
    standin.failNext(1, { status: 408 });
    await send("chat", { nickname: "Bo" });
    [j] = await jobs();
    expect([j?.attempts, (j?.next_at ?? 0) - now, j?.last_error]).to.deep.equal([
      1,
      1000,
      "HTTP 408: scripted 408",
    ]);
    await later(1000);
    expect(await jobs()).to.deep.equal([]);

    standin.failNext(1, { status: 204, hangMs: 1500 });
    await send("slow", { nickname: "Cy" });
    [j] = await jobs();
    expect([j?.attempts, j?.last_error]).to.deep.equal([1, "no answer within 300 ms"]);
    await later(1000);
    expect(await jobs()).to.deep.equal([]);
    const cy = standin.requests.filter(
      (r) => (r.body as { data: { nickname: string } }).data.nickname === "Cy",
    );
    expect(cy.map((r) => r.id)).to.have.length(2);
    expect(cy[0]?.id).to.equal(cy[1]?.id);
  });

  it("verifies the receiver's certificate: without the connector's caFile the stand-in's private CA is refused", async () => {
    const [strict] = resolveConnectors([
      { name: "strict", url: standin.url, secret: TEST_SECRET, settings: [], timeoutMs: 2000 },
    ]);
    const { WebhookSender } = await import("../../component/runtime/webhooks/sender.js");
    const sender = new WebhookSender(2);
    try {
      const r = await sender.post(strict as NonNullable<typeof strict>, "id-1", "{}");
      expect(r.status).to.equal("retry");
      expect(r.status === "retry" ? r.reason : "").to.match(/certificate/);
      expect(standin.requests).to.deep.equal([]);
    } finally {
      sender.close();
    }
  });

  it("a 4xx other than 408/429 and an unknown connector are dead letters at once; nothing is retried", async () => {
    standin.failNext(1, { status: 410 });
    await send("chat", { nickname: "Ann" });
    await send("gone", { nickname: "Ann" });
    expect(await jobs()).to.deep.equal([]);
    const d = await dead();
    expect(d.map((x) => [x.attempts, x.last_error])).to.deep.equal([
      [1, "HTTP 410: scripted 410"],
      [1, "unknown connector 'gone'"],
    ]);
    await later(3_600_000);
    expect(standin.requests).to.have.length(1);
    expect(metrics.get("cardlink_webhook_total", { connector: "chat", outcome: "dead-letter" })).to.equal(1);
    expect(metrics.get("cardlink_webhook_total", { connector: "unknown", outcome: "dead-letter" })).to.equal(
      1,
    );
  });

  it("a failing endpoint is retried with growing backoff, dead-lettered after maxAttempts, listed and replayed (CLI and engine) with the same webhook-id", async () => {
    standin.always({ status: 500 });
    await send("chat", { nickname: "Ann" });
    let [j] = await jobs();
    expect((j?.next_at ?? 0) - now).to.equal(1000);
    await later(1000);
    [j] = await jobs();
    expect((j?.next_at ?? 0) - now).to.equal(2000);
    await later(2000);
    expect(await jobs()).to.deep.equal([]);
    const [letter] = await dead();
    expect([letter?.attempts, letter?.last_error]).to.deep.equal([3, "HTTP 500: scripted 500"]);
    const uid = letter?.uid;
    expect(standin.requests.map((r) => r.id)).to.deep.equal([uid, uid, uid]);

    // The administrator's view: `cardlink dead-letters` (text and JSON).
    let io = capture();
    expect(await cli(["dead-letters", "-c", cfgPath], io)).to.equal(0);
    expect(io.lines.join("\n")).to.include(`webhook/profile.changed → chat  3 attempt(s)  id ${uid}`);
    expect(io.lines.join("\n")).to.include("HTTP 500: scripted 500");
    io = capture();
    expect(await cli(["dead-letters", "--json", "--channel", "webhook", "-c", cfgPath], io)).to.equal(0);
    const listed = JSON.parse(io.lines.join("\n")) as Array<{ id: number; uid: string; target: string }>;
    expect(listed.map((x) => [x.id, x.uid, x.target])).to.deep.equal([[letter?.id, uid, "chat"]]);
    io = capture();
    expect(await cli(["replay-dead-letter", "all", "-c", cfgPath], io)).to.equal(2);
    expect(io.errs.join()).to.match(/needs --channel/);
    io = capture();
    expect(await cli(["replay-dead-letter", "999", "-c", cfgPath], io)).to.equal(1);

    // The receiver is fixed; the replay goes out with the id the receiver may already have seen.
    standin.always({ status: 204 });
    io = capture();
    expect(await cli(["replay-dead-letter", String(letter?.id), "-c", cfgPath], io), io.errs.join()).to.equal(
      0,
    );
    expect(io.lines).to.deep.equal(["replayed 1 dead letter(s) into webhook"]);
    expect(await dead()).to.deep.equal([]);
    // The CLI's store runs on the wall clock: move the pinned one past it. The service's poll (queue.pollMs)
    // would find the job; here the test kicks.
    now = Date.now() + 1000;
    await later(0);
    expect(await jobs()).to.deep.equal([]);
    expect(standin.requests.map((r) => [r.id, r.status])).to.deep.equal([
      [uid, 500],
      [uid, 500],
      [uid, 500],
      [uid, 204],
    ]);

    // The engine's replay (the admin ad-hoc command's path): by channel, kicked after the commit.
    standin.always({ status: 400 });
    await send("chat", { nickname: "Bo" });
    standin.always({ status: 204 });
    expect(await engine.replayDeadLetters({ channel: "push" })).to.equal(0);
    expect(await engine.replayDeadLetters({ channel: WEBHOOK_CHANNEL })).to.equal(1);
    await engine.idle();
    expect(await dead()).to.deep.equal([]);
    const bo = standin.requests.filter(
      (r) => (r.body as { data: { nickname: string } }).data.nickname === "Bo",
    );
    expect(bo.map((r) => r.status)).to.deep.equal([400, 204]);
    expect(bo[0]?.id).to.equal(bo[1]?.id);
  });
});
