/**
 * The new push feature (component/features/push/, docs/REDESIGN.md §4.3) on the new core: a real SqliteStore
 * with schema 2000, the real accounts part, the real queue engine (jobs half, observers), and the provider
 * senders built by push/senders.ts exactly as production builds them, against the APNs and FCM stand-ins (real
 * HTTP/2 servers). The channel cases are test/push/dispatcher.test.ts's assertions (deleted at S11), ported; the scan cases check
 * the push-scan observer's rules over the stream.
 */
import { expect } from "chai";
import { createDecipheriv, createHmac } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { pino } from "pino";
import { accountsParts } from "../../component/runtime/accounts/tx.js";
import type { Device } from "../../component/runtime/accounts/api.js";
import { EventBus } from "../../component/runtime/events.js";
import { LATENCY_BUCKETS, Metrics, PROVIDER_BUCKETS } from "../../component/runtime/metrics.js";
import type { JobChannel, StreamKind } from "../../component/runtime/queue/api.js";
import { Engine } from "../../component/runtime/queue/engine.js";
import { jobsTx } from "../../component/runtime/queue/jobs-tx.js";
import { ObserverRunner } from "../../component/runtime/queue/observers.js";
import { KindRegistry } from "../../component/runtime/queue/registry.js";
import { streamTx } from "../../component/runtime/queue/stream-tx.js";
import { makeUow, type Uow } from "../../component/runtime/uow.js";
import { Presence } from "../../component/runtime/presence.js";
import { AppServer } from "../../component/features/push/app-server.js";
import { PushChannel } from "../../component/features/push/channel.js";
import {
  encryptPayload,
  noticeJob,
  Refs,
  REF_SECRET,
  type PushBody,
} from "../../component/features/push/payload.js";
import { pushRepo } from "../../component/features/push/repo.js";
import { pushScan, type ScanOptions } from "../../component/features/push/scan.js";
import { StanzaError } from "../../stanzas/errors.js";
import { NS } from "../../stanzas/ns.js";
import { xml } from "../../stanzas/xml.js";
import { createSenders, type Senders } from "../../push/senders.js";
import { SCHEMA_2000 } from "../../storage/sqlite/schema-2000.js";
import { SqliteStore } from "../../storage/sqlite/store.js";
import type { AccountId } from "../../storage/store.js";
import { sleep, waitFor } from "../harness/ports.js";
import { start as startApns, type ApnsStandin } from "../standins/apns-standin.js";
import { installFcmRedirect, uninstallFcmRedirect } from "../standins/fcm-redirect.js";
import { FcmStandin } from "../standins/fcm-standin.js";

const token = (n: number): string => n.toString(16).padStart(64, "0");
const TEXT = { title: "Contacts", body: "A contact card was updated.", locKey: "card-update" };
const never = (): never => {
  throw new Error("part not used here");
};
const ENGINE = {
  leaseMs: 30_000,
  heartbeatMs: 5_000,
  exclusive: true,
  observerPollMs: 60_000,
  pollMs: 60_000,
  deadLetterDays: 30,
};

interface Rig {
  dir: string;
  store: SqliteStore;
  uow: Uow;
  channels: Map<string, JobChannel>;
  kinds: KindRegistry;
}

async function rig(): Promise<Rig> {
  const dir = mkdtempSync(path.join(tmpdir(), "cardlink-fpush-"));
  const store = new SqliteStore(path.join(dir, "cardlink.sqlite"), { legacy: false });
  await store.migrate([SCHEMA_2000]);
  const events = new EventBus();
  const channels = new Map<string, JobChannel>();
  const kinds = new KindRegistry();
  const uow = makeUow(
    store,
    {
      accounts: accountsParts({ cacheSize: 100, cacheTtlMs: 60_000, events }).tx,
      audience: never,
      stream: streamTx({ kind: (n) => kinds.get(n), paths: [] }),
      jobs: jobsTx({ channel: (n) => channels.get(n) }),
    },
    events,
  );
  return { dir, store, uow, channels, kinds };
}

const device = (
  r: Rig,
  jid: string,
  deviceId: string,
  platform: "ios" | "android",
  t?: string,
  key?: string,
) =>
  r.uow("seed.device", async (u) => {
    const a = await u.accounts.ensure(jid);
    const d = await u.accounts.upsertDevice(
      a,
      {
        deviceId,
        platform,
        ...(t ? { pushToken: t } : {}),
        ...(platform === "ios" ? { pushTopic: "org.example.cardlink" } : {}),
        ...(key ? { pushKey: key } : {}),
      },
      10,
    );
    if (d === "over-limit") throw new Error("over limit");
    return d;
  });

const jobRows = (r: Rig) =>
  r.store.read("rows", (q) =>
    q.all<{ target: string; ckey: string; body: string; rev: number; next_at: number; attempts: number }>(
      "SELECT target, ckey, body, rev, next_at, attempts FROM jobs ORDER BY id",
    ),
  );

describe("features/push channel (ported push dispatcher assertions; APNs and FCM stand-ins)", function () {
  this.timeout(30_000);
  let apns: ApnsStandin;
  let r: Rig;
  let engine: Engine;
  let metrics: Metrics;
  let senders: Senders;

  const enqueue = (d: Device, ref: string, extra: Record<string, string> = {}) =>
    r.uow("enqueue", async (u) => {
      const spec = noticeJob(d, "alert", ref, TEXT, {}, { ttlSeconds: 3600, now: u.now, extra });
      if (!spec) throw new Error("device not pushable");
      return u.queue.job("push", spec);
    });
  const outcome = (platform: string, o: string) =>
    metrics.get("cardlink_push_total", { platform, outcome: o });

  before(async () => {
    apns = await startApns();
  });
  after(async () => {
    await apns.stop();
  });
  beforeEach(async () => {
    r = await rig();
    metrics = new Metrics();
    senders = createSenders({
      apns: {
        production: false,
        address: apns.address,
        port: apns.port,
        ca: apns.caPath,
        token: { key: apns.tokenKeyPath, keyId: apns.keyId, teamId: apns.teamId },
        requestTimeoutMs: 3000,
      },
    });
    const channel = new PushChannel({
      senders,
      config: {
        concurrency: 16,
        retryBaseMs: 100,
        retryMaxMs: 1000,
        maxAttempts: 3,
        perDeviceHourlyBudget: 2,
      },
      log: pino({ level: "silent" }),
      metrics,
      buckets: { latency: LATENCY_BUCKETS, provider: PROVIDER_BUCKETS },
    });
    r.channels.set("push", channel);
    engine = new Engine({
      store: r.store,
      uow: r.uow,
      events: new EventBus(),
      log: pino({ level: "silent" }),
      config: ENGINE,
    });
    engine.registerChannel(channel);
  });
  afterEach(async () => {
    await engine.stop();
    await Promise.all(Object.values(senders).map((s) => s.close()));
    await r.store.close();
    rmSync(r.dir, { recursive: true, force: true });
  });

  it("coalesces: two notices with one ref for one device → one request, the newer content, one uid", async () => {
    const t = token(100);
    const d = await device(r, "u@localhost", "d1", "ios", t);
    const first = await enqueue(d, "card-a", { n: "1" });
    const second = await enqueue(d, "card-a", { n: "2" });
    expect([first.replaced, second.replaced, second.id]).to.deep.equal([false, true, first.id]);
    expect(await jobRows(r)).to.have.length(1);
    await engine.start();
    await waitFor(() => apns.requestsFor(t).length === 1, "one request");
    await engine.idle();
    await sleep(200);
    expect(apns.requestsFor(t)).to.have.length(1);
    const req = apns.requestsFor(t)[0]!;
    expect((req.body as { n: string; ref: string }).n).to.equal("2");
    expect(req.headers["apns-collapse-id"]).to.equal("card-a");
    expect(await jobRows(r)).to.deep.equal([]);
    expect(outcome("ios", "sent")).to.equal(1);
    // The budget's log got the send.
    const since = await r.store.read("sends", (q) => pushRepo(q).sentSince(t, 0));
    expect(since.n).to.equal(1);
  });

  it("per-device hourly budget: over budget, a notice waits instead of being sent", async () => {
    const t = token(101);
    const d = await device(r, "u@localhost", "d1", "ios", t);
    for (const ref of ["a", "b", "c"]) await enqueue(d, ref);
    await engine.start();
    await waitFor(() => apns.requestsFor(t).length === 2, "two sent");
    await waitFor(() => outcome("ios", "over-budget") === 1, "deferred");
    await engine.idle();
    await sleep(300);
    expect(apns.requestsFor(t)).to.have.length(2);
    const left = await jobRows(r);
    expect(left).to.have.length(1);
    expect(left[0]?.next_at).to.be.greaterThan(Date.now() + 3_500_000);
    expect(left[0]?.attempts).to.equal(0); // a budget wait is no attempt
  });

  it("gives up after maxAttempts of transient failures (500), leaving nothing queued", async () => {
    const t = token(102);
    apns.reply(t, { status: 500, reason: "InternalServerError" });
    const d = await device(r, "u@localhost", "d1", "ios", t);
    await enqueue(d, "x");
    await engine.start();
    await waitFor(() => outcome("ios", "gave-up") === 1, "gave up", 10_000);
    await engine.idle();
    expect(apns.requestsFor(t)).to.have.length(3);
    expect(outcome("ios", "retry")).to.equal(3);
    expect(await jobRows(r)).to.deep.equal([]);
    // The same notice each time: apns-id is the job's uid, stable across retries.
    expect(new Set(apns.requestsFor(t).map((q) => q.headers["apns-id"])).size).to.equal(1);
  });

  it("a permanent failure (400 BadTopic) is dropped at once", async () => {
    const t = token(103);
    apns.reply(t, { status: 400, reason: "BadTopic" });
    const d = await device(r, "u@localhost", "d1", "ios", t);
    await enqueue(d, "x");
    await engine.start();
    await waitFor(() => outcome("ios", "failed") === 1, "failed");
    await engine.idle();
    expect(await jobRows(r)).to.deep.equal([]);
    expect(apns.requestsFor(t)).to.have.length(1);
  });

  it("429 with Retry-After: retried not before the provider's delay", async () => {
    const t = token(104);
    apns.reply(t, { status: 429, reason: "TooManyRequests", retryAfterSec: 120 }, 1);
    const d = await device(r, "u@localhost", "d1", "ios", t);
    await enqueue(d, "x");
    const before = Date.now();
    await engine.start();
    await waitFor(() => outcome("ios", "retry") === 1, "retry");
    await engine.idle();
    const [row] = await jobRows(r);
    expect(row?.attempts).to.equal(1);
    // Backoff alone would be ≤ 1 s (retryMaxMs); Retry-After's 120 s wins.
    expect(row?.next_at).to.be.at.least(before + 120_000);
  });

  it("a dead token (410) invalidates every device holding it and drops its notices; other devices untouched", async () => {
    const dead = token(105);
    const alive = token(106);
    apns.reply(dead, { status: 410, reason: "Unregistered" });
    const d1 = await device(r, "u@localhost", "d1", "ios", dead);
    const d2 = await device(r, "u@localhost", "d2", "ios", alive);
    await enqueue(d1, "a");
    await enqueue(d2, "a");
    await engine.start();
    await waitFor(() => outcome("ios", "invalid-token") === 1, "invalid");
    await engine.idle();
    const states = await r.store.read("states", (q) =>
      q.all<{ device_id: string; token_state: string }>(
        "SELECT device_id, token_state FROM devices ORDER BY device_id",
      ),
    );
    expect(states.map((s) => [s.device_id, s.token_state])).to.deep.equal([
      ["d1", "invalid"],
      ["d2", "ok"],
    ]);
    expect(apns.requestsFor(alive)).to.have.length(1);
    expect(await jobRows(r)).to.deep.equal([]);
  });

  it("encrypts the optional payload with the device's AES-256-GCM key", () => {
    const key = Buffer.alloc(32, 7).toString("base64");
    expect(JSON.parse(decrypt(key, encryptPayload(key, JSON.stringify({ kinds: ["card"] }))))).to.deep.equal({
      kinds: ["card"],
    });
  });

  describe("FCM (firebase-admin against the FCM stand-in)", () => {
    let fcm: FcmStandin;
    before(async () => {
      fcm = await new FcmStandin({ projectId: "cardlink-test" }).start();
      installFcmRedirect({ host: fcm.host, port: fcm.port, ca: fcm.caPem });
    });
    after(async () => {
      uninstallFcmRedirect();
      await fcm.stop();
    });

    it("sends an Android notice; UNREGISTERED invalidates the token", async () => {
      const fsenders = createSenders({ fcm: { serviceAccount: fcm.serviceAccountPath } });
      const channel = new PushChannel({
        senders: fsenders,
        config: {
          concurrency: 16,
          retryBaseMs: 100,
          retryMaxMs: 1000,
          maxAttempts: 3,
          perDeviceHourlyBudget: 2,
        },
        log: pino({ level: "silent" }),
        metrics,
        buckets: { latency: LATENCY_BUCKETS, provider: PROVIDER_BUCKETS },
      });
      r.channels.set("push", channel);
      const e = new Engine({
        store: r.store,
        uow: r.uow,
        events: new EventBus(),
        log: pino({ level: "silent" }),
        config: ENGINE,
      });
      e.registerChannel(channel);
      try {
        fcm.failToken("tok-dead", "UNREGISTERED");
        const ok = await device(r, "a@localhost", "p1", "android", "tok-ok");
        const gone = await device(r, "a@localhost", "p2", "android", "tok-dead");
        await enqueue(ok, "r1");
        await enqueue(gone, "r1");
        await e.start();
        await waitFor(
          () => outcome("android", "invalid-token") === 1 && outcome("android", "sent") === 1,
          "both",
        );
        await e.idle();
        const sent = fcm.fcmRequests.filter((q) => q.token === "tok-ok");
        expect(sent).to.have.length(1);
        const msg = (sent[0]!.body as { message: { data: Record<string, string> } }).message;
        expect(msg.data.ref).to.equal("r1");
        expect(await jobRows(r)).to.deep.equal([]);
      } finally {
        await e.stop();
        await Promise.all(Object.values(fsenders).map((s) => s.close()));
      }
    });
  });
});

function decrypt(keyB64: string, b64: string): string {
  const blob = Buffer.from(b64, "base64");
  const d = createDecipheriv("aes-256-gcm", Buffer.from(keyB64, "base64"), blob.subarray(0, 12));
  d.setAuthTag(blob.subarray(blob.length - 16));
  return Buffer.concat([d.update(blob.subarray(12, blob.length - 16)), d.final()]).toString("utf8");
}

describe("features/push scan observer (push-scan over the stream, schema 2000)", function () {
  this.timeout(30_000);
  let r: Rig;
  let online: Set<AccountId>;
  let metrics: Metrics;
  let opts: ScanOptions;
  let runner: ObserverRunner;
  const card: StreamKind = {
    name: "card",
    coalesce: "replace",
    subject: "account",
    wake: true,
    render: async () => null,
  };
  const quiet: StreamKind = { ...card, name: "binding", subject: "entity", wake: false };

  const account = (jid: string) => r.uow("seed.account", (u) => u.accounts.ensure(jid));
  /** One change (one seq): a card entry about each subject on the lane. */
  const change = (lane: AccountId, subjects: AccountId[]) =>
    r.uow("change", async (u) => {
      for (const s of subjects)
        await u.queue.append("card", [lane], { subject: String(s), subjectAccount: s });
      return u.seq();
    });
  const mark = () =>
    r.store.read("mark", async (q) =>
      Number((await q.get<{ pos: number }>("SELECT pos FROM queue_marks WHERE name = 'push-scan'"))?.pos),
    );
  const refKey = async () =>
    Buffer.from(
      await r.store.read("key", async (q) =>
        String(
          (
            await q.get<{ value: string }>("SELECT value FROM meta WHERE key = :k", {
              k: `secret:${REF_SECRET}`,
            })
          )?.value,
        ),
      ),
      "base64",
    );
  const hmac = (key: Buffer, s: string) =>
    createHmac("sha256", key).update(s).digest("base64url").slice(0, 22);

  beforeEach(async () => {
    r = await rig();
    r.kinds.register(card);
    r.kinds.register(quiet);
    r.channels.set("push", { name: "push" } as JobChannel); // jobs are only written here, never sent
    online = new Set();
    metrics = new Metrics();
    opts = {
      isOnline: (a) => online.has(a),
      wakeKinds: ["card"],
      policy: { ios: "alert", android: "background" },
      text: TEXT,
      ttlSeconds: 3600,
      hasProvider: () => true,
      refs: new Refs(),
      metrics,
    };
    runner = new ObserverRunner(pushScan(opts), {
      uow: r.uow,
      me: "test:1:aaaa",
      leaseMs: 30_000,
      silentMs: 15_000,
      log: pino({ level: "silent" }),
    });
  });
  afterEach(async () => {
    await r.store.close();
    rmSync(r.dir, { recursive: true, force: true });
  });

  it("an online account is skipped (delivery serves it); the mark still moves past its entries", async () => {
    const me = await account("me@localhost");
    const bob = await account("bob@localhost");
    await device(r, "me@localhost", "d1", "ios", token(1));
    online.add(me);
    const seq = await change(me, [bob]);
    expect(await runner.runOnce()).to.deep.include({ held: false, to: seq, entries: 1 });
    expect(await jobRows(r)).to.deep.equal([]);
    expect(await mark()).to.equal(seq);
  });

  it("several processes: an account online at another process (its resources row) is skipped; one process ignores rows", async () => {
    const me = await account("me@localhost");
    const bob = await account("bob@localhost");
    await device(r, "me@localhost", "d1", "ios", token(1));
    // me's resource was recorded by another process: only the row says it is online.
    await r.uow("seed.resource", (u) =>
      u.tx.run(
        "INSERT INTO resources (full_jid, account_id, device, process, since) VALUES (:f, :a, NULL, 'p2', 1)",
        {
          f: "me@localhost/phone",
          a: me,
        },
      ),
    );
    const presence = (shared: boolean) =>
      new Presence({
        uow: r.uow,
        read: () => Promise.reject(new Error("not used")),
        send: () => Promise.resolve(true),
        domain: "cards.localhost",
        resourcesPerUser: 5,
        metrics,
        log: pino({ level: "silent" }),
        ...(shared ? { shared: { me: "p1", silentMs: 15_000 } } : {}),
      });
    const run = async (shared: boolean) => {
      const p = presence(shared);
      const o: ScanOptions = { ...opts, onlineAmong: (u, a) => p.onlineAmong(u.tx, a) };
      return new ObserverRunner(pushScan(o), {
        uow: r.uow,
        me: "test:1:aaaa",
        leaseMs: 30_000,
        silentMs: 15_000,
        log: pino({ level: "silent" }),
      }).runOnce();
    };
    const seq = await change(me, [bob]);
    await run(true);
    expect(await jobRows(r)).to.deep.equal([]);
    expect(await mark()).to.equal(seq);
    await change(me, [bob]);
    await run(false);
    expect(await jobRows(r)).to.have.length(1);
  });

  it("≤ 3 subjects in one change → one ref each, one job per (device, ref), refs over internal ids", async () => {
    const me = await account("me@localhost");
    const subs = [await account("a@localhost"), await account("b@localhost"), await account("c@localhost")];
    const key = Buffer.alloc(32, 9).toString("base64");
    await device(r, "me@localhost", "d1", "ios", token(1), key);
    await device(r, "me@localhost", "d2", "android", "fcm-tok");
    await device(r, "me@localhost", "d3", "ios"); // no token: not pushable
    await change(me, subs);
    await runner.runOnce();
    const rows = await jobRows(r);
    expect(rows).to.have.length(6);
    const k = await refKey();
    const want = subs.map((s) => hmac(k, `a${me}|a${s}`)).sort();
    const bodies = rows.map((x) => JSON.parse(x.body) as PushBody);
    for (const platform of ["ios", "android"])
      expect(
        bodies
          .filter((b) => b.platform === platform)
          .map((b) => b.data.ref)
          .sort(),
      ).to.deep.equal(want);
    expect(rows.every((x) => x.ckey === (JSON.parse(x.body) as PushBody).data.ref)).to.equal(true);
    const ios = bodies.find((b) => b.platform === "ios")!;
    expect([ios.kind, ios.alert?.body, ios.data.v]).to.deep.equal(["alert", TEXT.body, "1"]);
    expect(JSON.parse(decrypt(key, ios.data.enc!))).to.deep.equal({
      kinds: ["card"],
      subjects: ["a@localhost", "b@localhost", "c@localhost"],
    });
    const android = bodies.find((b) => b.platform === "android")!;
    expect([android.kind, android.alert, android.data.enc]).to.deep.equal([
      "background",
      undefined,
      undefined,
    ]);
  });

  it("more than 3 subjects → one '*' notice per device; a second change coalesces into it", async () => {
    const me = await account("me@localhost");
    const subs: AccountId[] = [];
    for (const n of ["a", "b", "c", "d"]) subs.push(await account(`${n}@localhost`));
    await device(r, "me@localhost", "d1", "ios", token(1));
    await change(me, subs);
    await runner.runOnce();
    const k = await refKey();
    let rows = await jobRows(r);
    expect(rows.map((x) => [x.ckey, x.rev])).to.deep.equal([[hmac(k, `a${me}|*`), 1]]);
    await change(me, [...subs].reverse());
    await runner.runOnce();
    rows = await jobRows(r);
    expect(rows.map((x) => [x.ckey, x.rev])).to.deep.equal([[hmac(k, `a${me}|*`), 2]]);
  });

  it("entries of kinds without wake make no job", async () => {
    const me = await account("me@localhost");
    await device(r, "me@localhost", "d1", "ios", token(1));
    const seq = await r.uow("quiet", async (u) => {
      await u.queue.append("binding", [me], { subject: "b-uuid-1" });
      return u.seq();
    });
    await runner.runOnce();
    expect(await jobRows(r)).to.deep.equal([]);
    expect(await mark()).to.equal(seq);
  });

  it("the mark and the jobs commit together: a failing batch writes neither; the next run writes both", async () => {
    const me = await account("me@localhost");
    const bob = await account("bob@localhost");
    await device(r, "me@localhost", "d1", "ios", token(1));
    const seq = await change(me, [bob]);
    const scan = pushScan(opts);
    let fail = true;
    const flaky = new ObserverRunner(
      {
        ...scan,
        batch: async (u, es) => {
          await scan.batch(u, es);
          expect((await u.tx.all("SELECT id FROM jobs")).length).to.equal(1); // written in this unit of work
          if (fail) throw new Error("crash after the jobs, before the mark");
        },
      },
      { uow: r.uow, me: "test:1:aaaa", leaseMs: 30_000, silentMs: 15_000, log: pino({ level: "silent" }) },
    );
    await flaky.runOnce().then(
      () => expect.fail("the batch should have failed"),
      (e: Error) => expect(e.message).to.match(/crash after the jobs/),
    );
    expect(await jobRows(r)).to.deep.equal([]);
    expect(await mark()).to.equal(0);
    fail = false;
    await flaky.runOnce();
    expect(await jobRows(r)).to.have.length(1);
    expect(await mark()).to.equal(seq);
  });
});

describe("features/push app server (XEP-0357 on the unit of work)", function () {
  this.timeout(30_000);
  let r: Rig;
  let app: AppServer;
  let metrics: Metrics;
  const publishEl = (node: string, secret?: string) =>
    xml(
      "pubsub",
      { xmlns: NS.PUBSUB },
      xml(
        "publish",
        { node },
        xml(
          "item",
          {},
          xml(
            "notification",
            { xmlns: NS.PUSH },
            xml(
              "x",
              { xmlns: NS.DATA, type: "submit" },
              xml("field", { var: "message-count" }, xml("value", {}, "4")),
            ),
          ),
        ),
      ),
      ...(secret === undefined
        ? []
        : [
            xml(
              "publish-options",
              {},
              xml(
                "x",
                { xmlns: NS.DATA, type: "submit" },
                xml("field", { var: "secret" }, xml("value", {}, secret)),
              ),
            ),
          ]),
    );
  const errorOf = (p: Promise<unknown>) =>
    p.then(
      () => expect.fail("should have failed"),
      (e: StanzaError) => [e.condition, e.type],
    );

  beforeEach(async () => {
    r = await rig();
    r.channels.set("push", { name: "push" } as JobChannel);
    metrics = new Metrics();
    app = new AppServer({
      uow: r.uow,
      domain: "cardlink.localhost",
      policy: { ios: "alert", android: "background" },
      messageText: { title: "Messages", body: "You have a new message.", locKey: "message" },
      ttlSeconds: 3600,
      hasProvider: (p) => p === "ios",
      refs: new Refs(),
      metrics,
      log: pino({ level: "silent" }),
    });
  });
  afterEach(async () => {
    await r.store.close();
    rmSync(r.dir, { recursive: true, force: true });
  });

  it("registers a node for a push device and queues one message notice per authenticated publish", async () => {
    await device(r, "u@localhost", "d1", "ios", token(7));
    const el = await app.registerNode("u@localhost", xml("push-node", { xmlns: NS.CARDLINK, device: "d1" }));
    const node = String(el.attrs.node);
    const secret = String(el.attrs.secret);
    expect([el.attrs.jid, node.length]).to.deep.equal(["cardlink.localhost", 32]);
    expect(await errorOf(app.publish("localhost", "", publishEl(node, "wrong")))).to.deep.equal([
      "forbidden",
      "auth",
    ]);
    expect(await errorOf(app.publish("other.example", "", publishEl(node, secret)))).to.deep.equal([
      "forbidden",
      "auth",
    ]);
    expect(await errorOf(app.publish("localhost", "mallory", publishEl(node, secret)))).to.deep.equal([
      "forbidden",
      "auth",
    ]);
    expect(await jobRows(r)).to.deep.equal([]);
    await app.publish("localhost", "", publishEl(node, secret));
    await app.publish("localhost", "", publishEl(node, secret)); // same node ref: coalesces
    const rows = await jobRows(r);
    expect(rows.map((x) => x.rev)).to.deep.equal([2]);
    const body = JSON.parse(rows[0]!.body) as PushBody;
    expect([body.kind, body.data.type, body.alert?.body]).to.deep.equal([
      "alert",
      "message",
      "You have a new message.",
    ]);
    expect(metrics.get("cardlink_push_app_server_total")).to.equal(2);
  });

  it("refuses a node for a device without token or provider, and an unknown device", async () => {
    await device(r, "u@localhost", "d1", "ios");
    await device(r, "u@localhost", "a1", "android", "fcm-tok");
    const ask = (d: string) =>
      errorOf(app.registerNode("u@localhost", xml("push-node", { xmlns: NS.CARDLINK, device: d })));
    expect(await ask("d1")).to.deep.equal(["not-acceptable", "modify"]);
    expect(await ask("a1")).to.deep.equal(["feature-not-implemented", "cancel"]);
    expect(await ask("nope")).to.deep.equal(["item-not-found", "cancel"]);
    expect(await errorOf(app.publish("localhost", "", publishEl("0".repeat(32), "x")))).to.deep.equal([
      "item-not-found",
      "cancel",
    ]);
  });
});
