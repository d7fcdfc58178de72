/**
 * Drives the real ApnsSender (node-apn, real HTTP/2 over real TLS) against the local APNs stand-in.
 */
import { expect } from "chai";
import { randomUUID } from "node:crypto";
import { createServer } from "node:net";
import { ApnsSender, buildApnsRequest, parseRetryAfter, type ApnsConfig } from "../../push/apns.js";
import type { PushNotice } from "../../push/types.js";
import { start, startFreezableProxy, stop, type ApnsStandin } from "../standins/apns-standin.js";

const TOPIC = "com.example.cardlink";
const EXPIRES = 2_000_000_000;

let tokenSeq = 0;
function tok(): string {
  tokenSeq += 1;
  return (tokenSeq.toString(16).padStart(8, "0") + "c0ffee".repeat(10)).slice(0, 64);
}

function alert(token: string, extra: Partial<PushNotice> = {}): PushNotice {
  return {
    id: randomUUID(),
    platform: "ios",
    token,
    kind: "alert",
    collapseId: "card-42",
    expiresAt: EXPIRES,
    alert: { title: "Cardlink", body: "A contact card was updated" },
    data: { ref: "opaque-ref-1" },
    ...extra,
  };
}

function background(token: string): PushNotice {
  return {
    id: randomUUID(),
    platform: "ios",
    token,
    kind: "background",
    expiresAt: EXPIRES,
    data: { ref: "r2" },
  };
}

async function freePort(): Promise<number> {
  const srv = createServer();
  await new Promise<void>((resolve) => srv.listen(0, "127.0.0.1", () => resolve()));
  const addr = srv.address();
  await new Promise<void>((resolve) => srv.close(() => resolve()));
  if (addr === null || typeof addr === "string") throw new Error("no port");
  return addr.port;
}

describe("ApnsSender against the APNs stand-in", function () {
  let standin: ApnsStandin;
  let sender: ApnsSender;
  const extraSenders: ApnsSender[] = [];

  function config(over: Partial<ApnsConfig> = {}): ApnsConfig {
    return {
      token: { key: standin.tokenKeyPath, keyId: standin.keyId, teamId: standin.teamId },
      production: false,
      address: standin.address,
      port: standin.port,
      ca: standin.caPath,
      connections: 2,
      requestTimeoutMs: 5000,
      defaultTopic: TOPIC,
      ...over,
    };
  }

  function newSender(over: Partial<ApnsConfig> = {}): ApnsSender {
    const s = new ApnsSender(config(over));
    extraSenders.push(s);
    return s;
  }

  before(async function () {
    standin = await start();
    sender = new ApnsSender(config());
  });

  after(async function () {
    await sender.close();
    await stop(standin);
  });

  afterEach(async function () {
    standin.reset();
    await Promise.all(extraSenders.splice(0).map((s) => s.close()));
  });

  describe("request mapping", function () {
    it("sends an alert with push-type alert, priority 10, collapse-id, expiration, topic, apns-id and a valid JWT", async function () {
      const t = tok();
      const notice = alert(t, { topic: "com.example.other", id: randomUUID().toUpperCase() });
      const [out] = await sender.send([notice]);
      const [rec] = standin.requestsFor(t);
      expect(rec, "stand-in saw the request").to.not.equal(undefined);
      if (!rec) return;
      expect(rec.status).to.equal(200);
      expect(rec.method).to.equal("POST");
      expect(rec.path).to.equal(`/3/device/${t}`);
      expect(rec.headers["apns-push-type"]).to.equal("alert");
      expect(rec.headers["apns-priority"]).to.equal("10");
      expect(rec.headers["apns-collapse-id"]).to.equal("card-42");
      expect(rec.headers["apns-expiration"]).to.equal(String(EXPIRES));
      expect(rec.headers["apns-topic"]).to.equal("com.example.other");
      expect(rec.headers["apns-id"]).to.equal(notice.id.toLowerCase());
      // The stand-in verified the ES256 signature against the test key; these are the claims it saw.
      expect(rec.headers["authorization"]).to.match(/^bearer [\w-]+\.[\w-]+\.[\w-]+$/);
      expect(rec.jwt?.header).to.include({ alg: "ES256", kid: standin.keyId });
      expect(rec.jwt?.claims).to.include({ iss: standin.teamId });
      expect(rec.jwt?.claims.iat).to.be.a("number");
      // Exactly the notice's data plus aps: nothing else reaches Apple.
      expect(rec.body).to.deep.equal({
        ref: "opaque-ref-1",
        aps: { alert: { title: "Cardlink", body: "A contact card was updated" } },
      });
      expect(out).to.deep.equal({ status: "sent", providerId: notice.id.toLowerCase() });
    });

    it("uses defaultTopic, and lets APNs choose the apns-id when the notice id is not a UUID", async function () {
      const t = tok();
      const [out] = await sender.send([alert(t, { id: "queue-17", collapseId: undefined })]);
      const [rec] = standin.requestsFor(t);
      expect(rec?.headers["apns-topic"]).to.equal(TOPIC);
      expect(rec?.headers).to.not.have.property("apns-id");
      expect(rec?.headers).to.not.have.property("apns-collapse-id");
      expect(out?.status).to.equal("sent");
      // The stand-in, like APNs, generates an apns-id and returns it.
      expect(out)
        .to.have.property("providerId")
        .that.matches(/^[0-9a-f-]{36}$/);
    });

    it("sends a background push with push-type background, priority 5, content-available and no alert", async function () {
      const t = tok();
      const [out] = await sender.send([background(t)]);
      const [rec] = standin.requestsFor(t);
      expect(out?.status).to.equal("sent");
      expect(rec?.headers["apns-push-type"]).to.equal("background");
      expect(rec?.headers["apns-priority"]).to.equal("5");
      expect(rec?.body).to.deep.equal({ ref: "r2", aps: { "content-available": 1 } });
    });

    it("sends loc-key / loc-args for a localizable alert and sends expiration 0 for deliver-now-or-never", async function () {
      const t = tok();
      await sender.send([
        alert(t, { expiresAt: 0, alert: { body: "fallback", locKey: "CARD_UPDATED", locArgs: ["1"] } }),
      ]);
      const [rec] = standin.requestsFor(t);
      expect(rec?.headers["apns-expiration"]).to.equal("0");
      expect(rec?.body).to.deep.equal({
        ref: "opaque-ref-1",
        aps: { alert: { "loc-key": "CARD_UPDATED", "loc-args": ["1"] } },
      });
    });

    it("does not let notice data overwrite aps", async function () {
      const t = tok();
      await sender.send([alert(t, { data: { aps: "x", ref: "y" } })]);
      const [rec] = standin.requestsFor(t);
      expect(rec?.body).to.deep.equal({
        ref: "y",
        aps: { alert: { title: "Cardlink", body: "A contact card was updated" } },
      });
    });

    it("answers notices APNs would reject without sending them", async function () {
      const big = alert(tok(), { data: { blob: "x".repeat(5000) } });
      const android: PushNotice = { ...alert(tok()), platform: "android" };
      const badToken = alert("not-hex/../x");
      const longCollapse = alert(tok(), { collapseId: "c".repeat(65) });
      const noAlert = alert(tok(), { alert: undefined });
      const out = await sender.send([big, android, badToken, longCollapse, noAlert]);
      expect(out).to.deep.equal([
        { status: "failed", reason: "PayloadTooLarge" },
        { status: "failed", reason: "platform android sent to APNs" },
        { status: "invalid-token", reason: "BadDeviceToken" },
        { status: "failed", reason: "BadCollapseId" },
        { status: "failed", reason: "alert notice without alert text" },
      ]);
      expect(standin.requests).to.have.length(0);
    });

    it("fails MissingTopic under token auth when there is no topic at all", async function () {
      const s = newSender({ defaultTopic: undefined });
      const out = await s.send([alert(tok())]);
      expect(out).to.deep.equal([{ status: "failed", reason: "MissingTopic" }]);
      expect(standin.requests).to.have.length(0);
    });
  });

  describe("outcome mapping", function () {
    it("maps 410 Unregistered to invalid-token", async function () {
      const t = tok();
      standin.reply(t, { status: 410 });
      const out = await sender.send([alert(t)]);
      expect(out).to.deep.equal([{ status: "invalid-token", reason: "Unregistered" }]);
      expect(standin.requestsFor(t)[0]?.status).to.equal(410);
    });

    it("maps 400 BadDeviceToken and DeviceTokenNotForTopic to invalid-token", async function () {
      const a = tok();
      const b = tok();
      standin.reply(a, { status: 400, reason: "BadDeviceToken" });
      standin.reply(b, { status: 400, reason: "DeviceTokenNotForTopic" });
      const out = await sender.send([alert(a), alert(b)]);
      expect(out).to.deep.equal([
        { status: "invalid-token", reason: "BadDeviceToken" },
        { status: "invalid-token", reason: "DeviceTokenNotForTopic" },
      ]);
    });

    it("maps 429 to retry with retryAfterMs from Retry-After, and does not re-send it itself", async function () {
      const t = tok();
      standin.reply(t, { status: 429, retryAfterSec: 7 });
      const out = await sender.send([alert(t)]);
      expect(out).to.deep.equal([{ status: "retry", reason: "TooManyRequests", retryAfterMs: 7000 }]);
      // connectionRetryLimit 0: node-apn must not have re-sent the 429.
      expect(standin.requestsFor(t)).to.have.length(1);
    });

    it("maps 429 without Retry-After to retry without retryAfterMs", async function () {
      const t = tok();
      standin.reply(t, { status: 429 });
      const out = await sender.send([alert(t)]);
      expect(out).to.deep.equal([{ status: "retry", reason: "TooManyRequests" }]);
    });

    it("maps 500 and 503 to retry, once each", async function () {
      const a = tok();
      const b = tok();
      standin.reply(a, { status: 500 });
      standin.reply(b, { status: 503 });
      const out = await sender.send([alert(a), alert(b)]);
      expect(out).to.deep.equal([
        { status: "retry", reason: "InternalServerError" },
        { status: "retry", reason: "ServiceUnavailable" },
      ]);
      expect(standin.requestsFor(a)).to.have.length(1);
      expect(standin.requestsFor(b)).to.have.length(1);
    });

    it("maps 400 BadTopic to failed", async function () {
      const t = tok();
      standin.reply(t, { status: 400, reason: "BadTopic" });
      const out = await sender.send([alert(t)]);
      expect(out).to.deep.equal([{ status: "failed", reason: "BadTopic" }]);
    });

    it("maps 403 ExpiredProviderToken to retry", async function () {
      const t = tok();
      standin.reply(t, { status: 403, reason: "ExpiredProviderToken" });
      const out = await sender.send([alert(t)]);
      expect(out).to.deep.equal([{ status: "retry", reason: "ExpiredProviderToken" }]);
    });

    it("fails InvalidProviderToken when the JWT is signed under the wrong key id", async function () {
      const s = newSender({
        token: { key: standin.tokenKeyPath, keyId: "WRONGKEY00", teamId: standin.teamId },
      });
      const t = tok();
      const out = await s.send([alert(t)]);
      expect(out).to.deep.equal([{ status: "failed", reason: "InvalidProviderToken" }]);
      expect(standin.requestsFor(t)[0]?.jwt?.header.kid).to.equal("WRONGKEY00");
    });

    it("answers a rule for the next N requests, then the default", async function () {
      const t = tok();
      standin.reply(t, { status: 500 }, 1);
      const first = await sender.send([alert(t)]);
      const second = await sender.send([alert(t)]);
      expect(first[0]?.status).to.equal("retry");
      expect(second[0]?.status).to.equal("sent");
      expect(standin.requestsFor(t).map((r) => r.status)).to.deep.equal([500, 200]);
    });

    it("returns outcomes index-aligned with a mixed batch", async function () {
      const ts = [tok(), tok(), tok(), tok()];
      standin.reply(ts[1] as string, { status: 410 });
      standin.reply(ts[3] as string, { status: 400, reason: "BadTopic" });
      const out = await sender.send(ts.map((t) => alert(t)));
      expect(out.map((o) => o.status)).to.deep.equal(["sent", "invalid-token", "sent", "failed"]);
    });
  });

  describe("timeouts, connections and TLS", function () {
    it("maps a request the stand-in never answers to retry 'timeout', while the rest of the batch is sent", async function () {
      this.timeout(10_000);
      const s = newSender({ requestTimeoutMs: 300 });
      const hung = tok();
      const ok = tok();
      standin.reply(hung, { hang: true });
      const out = await s.send([alert(hung), alert(ok)]);
      expect(out).to.deep.equal([{ status: "retry", reason: "timeout" }, out[1]]);
      expect(out[1]?.status).to.equal("sent");
      expect(standin.requestsFor(hung)[0]?.status).to.equal("hang");
    });

    it("has every notice of a batch in flight at once", async function () {
      this.timeout(10_000);
      const s = newSender({ requestTimeoutMs: 2000 });
      standin.replyDefault({ hang: true });
      const notices = Array.from({ length: 50 }, () => alert(tok()));
      const pending = s.send(notices);
      // All 50 reach the stand-in although it has answered none of them.
      while (standin.requests.length < 50) await new Promise((r) => setTimeout(r, 10));
      expect(standin.requests.every((r) => r.status === "hang")).to.equal(true);
      const out = await pending;
      expect(out.every((o) => o.status === "retry" && o.reason === "timeout")).to.equal(true);
    });

    it("opens the configured number of HTTP/2 sessions", async function () {
      const before = standin.sessionCount;
      const s = newSender({ connections: 3 });
      const out = await s.send(Array.from({ length: 9 }, () => alert(tok())));
      expect(out.every((o) => o.status === "sent")).to.equal(true);
      expect(standin.sessionCount - before).to.equal(3);
    });

    it("maps a refused connection to retry", async function () {
      this.timeout(10_000);
      const s = newSender({ port: await freePort(), requestTimeoutMs: 2000 });
      const out = await s.send([alert(tok())]);
      expect(out[0]?.status).to.equal("retry");
    });

    it("passes ca to TLS: without it the stand-in's certificate is not trusted", async function () {
      this.timeout(10_000);
      const cfg = config({ requestTimeoutMs: 2000 });
      delete cfg.ca;
      const s = new ApnsSender(cfg);
      extraSenders.push(s);
      const out = await s.send([alert(tok())]);
      expect(out[0]?.status).to.equal("retry");
      expect(out[0]).to.have.property("reason").that.does.not.equal("timeout");
      expect(standin.requests).to.have.length(0);
    });

    it("replaces a session that went silent (no answers, no PING acks) after a timeout", async function () {
      this.timeout(20_000);
      const proxy = await startFreezableProxy(standin.port);
      try {
        const s = newSender({ port: proxy.port, connections: 1, requestTimeoutMs: 300 });
        expect((await s.send([alert(tok())]))[0]?.status).to.equal("sent");
        expect(proxy.accepted).to.equal(1);
        proxy.freeze();
        expect(await s.send([alert(tok())])).to.deep.equal([{ status: "retry", reason: "timeout" }]);
        // The PING probe needs one more timeout to declare the session dead; until then sends may still time out.
        let out = await s.send([alert(tok())]);
        for (let i = 0; i < 20 && out[0]?.status !== "sent"; i++) out = await s.send([alert(tok())]);
        expect(out[0]?.status).to.equal("sent");
        expect(proxy.accepted).to.equal(2);
      } finally {
        await proxy.stop();
      }
    });

    it("settles sends after close() with retry 'closed'", async function () {
      const s = newSender();
      await s.close();
      expect(await s.send([alert(tok())])).to.deep.equal([{ status: "retry", reason: "closed" }]);
    });
  });

  describe("certificate auth", function () {
    it("refuses a config with neither token nor certificate", function () {
      expect(() => new ApnsSender({ production: false })).to.throw(/token/);
    });

    it("is accepted with a client certificate the stand-in's CA signed", async function () {
      const s = newSender({
        token: undefined,
        cert: standin.clientCert.certPath,
        key: standin.clientCert.keyPath,
      });
      const t = tok();
      const out = await s.send([alert(t)]);
      expect(out[0]?.status).to.equal("sent");
      const [rec] = standin.requestsFor(t);
      expect(rec?.headers).to.not.have.property("authorization");
      expect(rec?.clientCertSubject).to.contain("com.example.cardlink");
    });

    it("is rejected (failed BadCertificate) with a self-signed client certificate", async function () {
      const untrusted = await standin.issueClientCert(false);
      const s = newSender({ token: undefined, cert: untrusted.certPath, key: untrusted.keyPath });
      const out = await s.send([alert(tok())]);
      expect(out).to.deep.equal([{ status: "failed", reason: "BadCertificate" }]);
    });
  });

  describe("helpers", function () {
    it("parses Retry-After as seconds or as an HTTP date", function () {
      expect(parseRetryAfter("120")).to.equal(120_000);
      expect(
        parseRetryAfter("Wed, 21 Oct 2015 07:28:10 GMT", Date.parse("Wed, 21 Oct 2015 07:28:00 GMT")),
      ).to.equal(10_000);
      expect(parseRetryAfter("soon")).to.equal(undefined);
      expect(parseRetryAfter(undefined)).to.equal(undefined);
    });

    it("builds the same request the sender sends (used by the benchmark's raw client)", function () {
      const n = background("ab".repeat(32));
      const req = buildApnsRequest(n, TOPIC);
      expect(req.ok).to.equal(true);
      if (!req.ok) return;
      expect(req.headers).to.deep.equal({
        "apns-push-type": "background",
        "apns-priority": 5,
        "apns-expiration": EXPIRES,
        "apns-topic": TOPIC,
        "apns-id": n.id,
      });
      expect(JSON.parse(req.body)).to.deep.equal(req.payload);
    });
  });
});
