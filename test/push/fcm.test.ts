/**
 * FcmSender against the local FCM stand-in: real firebase-admin, real service-account credential (RS256 assertion
 * to the stand-in's OAuth2 endpoint), real HTTP/2 sendEach. The only test seam is fcm-redirect.ts (tls.connect
 * for the two Google host names goes to 127.0.0.1).
 */
import { generateKeyPairSync } from "node:crypto";
import { writeFile, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { expect } from "chai";
import { classifyFcmError, FcmSender } from "../../push/fcm.js";
import type { PushNotice, PushOutcome } from "../../push/types.js";
import { installFcmRedirect, redirectStats, uninstallFcmRedirect } from "../standins/fcm-redirect.js";
import { FcmStandin, TOKEN_URI, type RecordedFcmRequest } from "../standins/fcm-standin.js";

const FCM_SCOPE = "https://www.googleapis.com/auth/firebase.messaging";

function notice(i: number, over: Partial<PushNotice> = {}): PushNotice {
  return {
    id: `n-${i}`,
    platform: "android",
    token: `tok-${i}`,
    kind: "background",
    expiresAt: Math.floor(Date.now() / 1000) + 3600,
    data: { ref: `r-${i}` },
    ...over,
  };
}

function asRecord(v: unknown): Record<string, unknown> {
  expect(v).to.be.an("object");
  return v as Record<string, unknown>;
}

function messageOf(req: RecordedFcmRequest): Record<string, unknown> {
  return asRecord(asRecord(req.body).message);
}

describe("FcmSender (firebase-admin) against the FCM stand-in", function () {
  let standin: FcmStandin;
  let sender: FcmSender;

  before(async function () {
    standin = await new FcmStandin({ projectId: "cardlink-test" }).start();
    installFcmRedirect({ host: standin.host, port: standin.port, ca: standin.caPem });
    sender = new FcmSender({ serviceAccount: standin.serviceAccountPath });
  });

  after(async function () {
    await sender?.close();
    uninstallFcmRedirect();
    await standin?.stop();
  });

  beforeEach(function () {
    standin.clearRecords();
    standin.clearFailures();
  });

  function requestsFor(token: string): RecordedFcmRequest[] {
    return standin.fcmRequests.filter((r) => r.token === token);
  }

  it("gets an OAuth2 token with a verified RS256 assertion and sends with it as Bearer", async function () {
    const fresh = new FcmSender({ serviceAccount: standin.serviceAccountPath });
    try {
      const [out] = await fresh.send([notice(1)]);
      expect(out?.status).to.equal("sent");
    } finally {
      await fresh.close();
    }
    expect(standin.tokenRequests).to.have.length(1);
    const tr = standin.tokenRequests[0]!;
    expect(tr.error).to.equal(undefined);
    expect(tr.verified).to.equal(true);
    expect(tr.grantType).to.equal("urn:ietf:params:oauth:grant-type:jwt-bearer");
    expect(tr.jwtHeader?.alg).to.equal("RS256");
    expect(tr.claims?.iss).to.equal(standin.serviceAccount?.client_email);
    expect(tr.claims?.aud).to.equal(TOKEN_URI);
    expect(String(tr.claims?.scope).split(" ")).to.include(FCM_SCOPE);
    expect(standin.fcmRequests).to.have.length(1);
    const req = standin.fcmRequests[0]!;
    expect(req.headers.authorization).to.equal(`Bearer ${tr.accessToken}`);
    expect(req.method).to.equal("POST");
    expect(req.path).to.equal("/v1/projects/cardlink-test/messages:send");
    // firebase-admin 13.x sends ":scheme: https:" (URL.protocol); the stand-in records what arrived.
    expect(req.scheme).to.be.oneOf(["https:", "https"]);
    const stats = redirectStats();
    expect(stats.byHost["oauth2.googleapis.com"]).to.be.greaterThan(0);
    expect(stats.byHost["fcm.googleapis.com"]).to.be.greaterThan(0);
  });

  it("background: data-only, priority normal, collapse_key and ttl, no notification, nothing but ref + id", async function () {
    const expiresAt = Math.floor(Date.now() / 1000) + 3600;
    const [out] = await sender.send([
      notice(2, { kind: "background", collapseId: "card-42", expiresAt, data: { ref: "opaque-7" } }),
    ]);
    expect(standin.fcmRequests).to.have.length(1);
    const req = standin.fcmRequests[0]!;
    expect(out).to.deep.equal({ status: "sent", providerId: req.messageName });
    const msg = messageOf(req);
    expect(Object.keys(msg).sort()).to.deep.equal(["android", "data", "token"]);
    expect(msg.token).to.equal("tok-2");
    expect(msg.data).to.deep.equal({ ref: "opaque-7", id: "n-2" });
    const android = asRecord(msg.android);
    expect(Object.keys(android).sort()).to.deep.equal(["collapse_key", "priority", "ttl"]);
    expect(android.priority).to.equal("normal");
    expect(android.collapse_key).to.equal("card-42");
    const ttlSec = Number(/^(\d+(?:\.\d+)?)s$/.exec(String(android.ttl))?.[1]);
    expect(ttlSec).to.be.within(3500, 3600);
    expect(JSON.stringify(req.body)).not.to.match(/notification|title|body/);
  });

  it("alert: notification {title, body}, priority high, notification tag from collapseId", async function () {
    const [out] = await sender.send([
      notice(3, {
        kind: "alert",
        collapseId: "card-9",
        alert: { title: "Contacts", body: "A card was updated" },
        data: { ref: "opaque-9" },
      }),
    ]);
    const req = standin.fcmRequests[0]!;
    expect(out).to.deep.equal({ status: "sent", providerId: req.messageName });
    const msg = messageOf(req);
    expect(msg.notification).to.deep.equal({ title: "Contacts", body: "A card was updated" });
    expect(msg.data).to.deep.equal({ ref: "opaque-9", id: "n-3" });
    const android = asRecord(msg.android);
    expect(android.priority).to.equal("high");
    expect(android.collapse_key).to.equal("card-9");
    expect(asRecord(android.notification).tag).to.equal("card-9");
  });

  it("expiresAt 0 (now or never) becomes ttl 0s", async function () {
    await sender.send([notice(4, { expiresAt: 0 })]);
    expect(asRecord(messageOf(standin.fcmRequests[0]!).android).ttl).to.equal("0s");
  });

  it("UNREGISTERED (404) → invalid-token", async function () {
    standin.failToken("tok-5", "UNREGISTERED");
    const [out] = await sender.send([notice(5)]);
    expect(out?.status).to.equal("invalid-token");
    expect((out as { reason: string }).reason).to.match(/registration-token-not-registered/);
    expect(requestsFor("tok-5").map((r) => r.status)).to.deep.equal([404]);
  });

  it("INVALID_ARGUMENT (400) → failed", async function () {
    standin.failToken("tok-6", "INVALID_ARGUMENT");
    const [out] = await sender.send([notice(6)]);
    expect(out?.status).to.equal("failed");
    expect((out as { reason: string }).reason).to.match(/messaging\/invalid-argument/);
  });

  it("QUOTA_EXCEEDED (429 + Retry-After) → retry; the library does not expose Retry-After", async function () {
    standin.failToken("tok-7", "QUOTA_EXCEEDED", { retryAfterSec: 30 });
    const [out] = await sender.send([notice(7)]);
    expect(out?.status).to.equal("retry");
    expect((out as { reason: string }).reason).to.match(/messaging\/message-rate-exceeded/);
    // firebase-admin 13.x keeps only code and message of the HTTP answer, so there is nothing to read it from.
    expect(out).not.to.have.property("retryAfterMs");
    const reqs = requestsFor("tok-7");
    expect(reqs.map((r) => [r.status, r.errorCode])).to.deep.equal([[429, "QUOTA_EXCEEDED"]]);
  });

  it("UNAVAILABLE (503) with Retry-After above the library's 60 s cap → retry after one request", async function () {
    standin.failToken("tok-8", "UNAVAILABLE", { retryAfterSec: 120 });
    const [out] = await sender.send([notice(8)]);
    expect(out?.status).to.equal("retry");
    expect((out as { reason: string }).reason).to.match(/messaging\/server-unavailable/);
    expect(requestsFor("tok-8").map((r) => r.status)).to.deep.equal([503]);
  });

  it("a single 503 is retried inside firebase-admin and ends as sent (2 requests seen)", async function () {
    standin.failToken("tok-9", "UNAVAILABLE", { times: 1 });
    const [out] = await sender.send([notice(9)]);
    expect(out?.status).to.equal("sent");
    expect(requestsFor("tok-9").map((r) => r.status)).to.deep.equal([503, 200]);
  });

  it("503 on every attempt: firebase-admin tries 5 times (0/1/2/4 s back-off) before it reports → retry", async function () {
    this.timeout(30_000);
    standin.failToken("tok-19", "UNAVAILABLE");
    const [out] = await sender.send([notice(19)]);
    expect(out?.status).to.equal("retry");
    expect((out as { reason: string }).reason).to.match(/messaging\/server-unavailable/);
    expect(requestsFor("tok-19").map((r) => r.status)).to.deep.equal([503, 503, 503, 503, 503]);
  });

  it("INTERNAL (500) → retry", async function () {
    standin.failToken("tok-10", "INTERNAL");
    const [out] = await sender.send([notice(10)]);
    expect(out?.status).to.equal("retry");
    expect((out as { reason: string }).reason).to.match(/messaging\/internal-error/);
  });

  it("a reset stream (transport failure) → retry", async function () {
    standin.failToken("tok-11", "RESET");
    const [ok, out] = await sender.send([notice(12), notice(11)]);
    expect(ok?.status).to.equal("sent");
    expect(out?.status).to.equal("retry");
    expect((out as { reason: string }).reason).to.match(/app\/network-error/);
  });

  it("a connection dropped mid-batch → retry (session error), outcomes still index-aligned", async function () {
    const notices = Array.from({ length: 6 }, (_, i) => notice(40 + i));
    standin.failToken("tok-45", "DROP");
    const out = await sender.send(notices);
    expect(out).to.have.length(6);
    expect(out[5]?.status).to.equal("retry");
    // Reported as the session failure (GOAWAY), not left to the batch deadline.
    expect((out[5] as { reason: string }).reason).to.match(/app\/network-error/);
    const byToken = new Map(standin.fcmRequests.map((r) => [r.token, r]));
    out.forEach((o, i) => {
      expect(o.status).to.be.oneOf(["sent", "retry"]);
      if (o.status === "sent") expect(o.providerId).to.equal(byToken.get(notices[i]!.token)?.messageName);
    });
    expect(byToken.get("tok-45")?.status).to.equal("dropped");
  });

  it("SENDER_ID_MISMATCH (403) → failed", async function () {
    standin.failToken("tok-13", "SENDER_ID_MISMATCH");
    const [out] = await sender.send([notice(13)]);
    expect(out?.status).to.equal("failed");
    expect((out as { reason: string }).reason).to.match(/messaging\/mismatched-credential/);
  });

  it("a batch that does not finish before requestTimeoutMs → retry 'timeout' for its notices", async function () {
    const quick = new FcmSender({ serviceAccount: standin.serviceAccountPath, requestTimeoutMs: 300 });
    standin.failToken("tok-14", "HANG");
    try {
      const out = await quick.send([notice(14), notice(15)]);
      expect(out).to.deep.equal([
        { status: "retry", reason: "timeout" },
        { status: "retry", reason: "timeout" },
      ]);
      expect(requestsFor("tok-14").map((r) => r.status)).to.deep.equal(["hang"]);
    } finally {
      await quick.close();
    }
  });

  it("1,200 notices go out in sendEach batches of ≤ 500 and every outcome is index-aligned", async function () {
    const n = 1200;
    const notices = Array.from({ length: n }, (_, i) => notice(1000 + i));
    const expected = new Map<string, PushOutcome["status"]>();
    notices.forEach((x, i) => {
      if (i % 7 === 3) {
        standin.failToken(x.token, "UNREGISTERED");
        expected.set(x.token, "invalid-token");
      } else if (i % 11 === 5) {
        standin.failToken(x.token, "INVALID_ARGUMENT");
        expected.set(x.token, "failed");
      } else if (i % 13 === 8) {
        standin.failToken(x.token, "QUOTA_EXCEEDED");
        expected.set(x.token, "retry");
      } else {
        expected.set(x.token, "sent");
      }
    });
    const outcomes = await sender.send(notices);
    expect(outcomes).to.have.length(n);
    expect(standin.fcmRequests).to.have.length(n);

    const byToken = new Map(standin.fcmRequests.map((r) => [r.token, r]));
    notices.forEach((x, i) => {
      const out = outcomes[i]!;
      const req = byToken.get(x.token);
      expect(req, x.token).to.not.equal(undefined);
      expect(asRecord(messageOf(req!).data).id, x.token).to.equal(x.id);
      expect(out.status, `${i} ${x.token}`).to.equal(expected.get(x.token));
      if (out.status === "sent") expect(out.providerId).to.equal(req!.messageName);
    });
    const counts = { sent: 0, "invalid-token": 0, failed: 0, retry: 0 };
    for (const o of outcomes) counts[o.status] += 1;
    expect(counts["invalid-token"]).to.be.greaterThan(100);
    expect(counts.failed).to.be.greaterThan(50);
    expect(counts.retry).to.be.greaterThan(50);

    // firebase-admin opens one HTTP/2 connection per sendEach() call, so connections show the batches.
    const batches = new Map<number, number[]>();
    const indexOf = new Map(notices.map((x, i) => [x.token, i]));
    for (const r of standin.fcmRequests) {
      const list = batches.get(r.connection) ?? [];
      list.push(indexOf.get(r.token)!);
      batches.set(r.connection, list);
    }
    const ranges = [...batches.values()]
      .map((idx) => [Math.min(...idx), Math.max(...idx), idx.length])
      .sort((a, b) => a[0]! - b[0]!);
    expect(ranges).to.deep.equal([
      [0, 499, 500],
      [500, 999, 500],
      [1000, 1199, 200],
    ]);
  });

  it("a smaller batchSize splits accordingly", async function () {
    const small = new FcmSender({
      serviceAccount: standin.serviceAccountPath,
      batchSize: 3,
      parallelBatches: 2,
    });
    try {
      const out = await small.send(Array.from({ length: 7 }, (_, i) => notice(3000 + i)));
      expect(out.map((o) => o.status)).to.deep.equal(Array(7).fill("sent"));
    } finally {
      await small.close();
    }
    const sizes = new Map<number, number>();
    for (const r of standin.fcmRequests) sizes.set(r.connection, (sizes.get(r.connection) ?? 0) + 1);
    expect([...sizes.values()].sort()).to.deep.equal([1, 3, 3]);
  });

  it("an iOS notice is failed without a request", async function () {
    const out = await sender.send([notice(20, { platform: "ios" }), notice(21)]);
    expect(out[0]?.status).to.equal("failed");
    expect(out[1]?.status).to.equal("sent");
    expect(standin.fcmRequests.map((r) => r.token)).to.deep.equal(["tok-21"]);
  });

  it("a service account whose key Google does not know → invalid_grant → failed, nothing sent", async function () {
    const dir = await mkdtemp(join(tmpdir(), "fcm-badkey-"));
    const forged = new FcmSender({
      serviceAccount: await (async () => {
        const { privateKey } = generateKeyPairSync("rsa", { modulusLength: 2048 });
        const path = join(dir, "sa.json");
        const pem = privateKey.export({ type: "pkcs8", format: "pem" }).toString();
        await writeFile(path, JSON.stringify({ ...standin.serviceAccount, private_key: pem }));
        return path;
      })(),
    });
    try {
      const [out] = await forged.send([notice(22)]);
      expect(out?.status).to.equal("failed");
      expect((out as { reason: string }).reason).to.match(/app\/invalid-credential.*invalid_grant/);
    } finally {
      await forged.close();
      await rm(dir, { recursive: true, force: true });
    }
    expect(standin.tokenRequests.map((t) => [t.verified, t.error])).to.deep.equal([
      [false, "Invalid JWT Signature."],
    ]);
    expect(standin.fcmRequests).to.have.length(0);
  });

  it("after close(), send() answers retry without sending", async function () {
    const s = new FcmSender({ serviceAccount: standin.serviceAccountPath });
    await s.close();
    const out = await s.send([notice(23)]);
    expect(out).to.deep.equal([{ status: "retry", reason: "FCM sender closed" }]);
    expect(standin.fcmRequests).to.have.length(0);
  });

  it("classifies the library's error codes", function () {
    const err = (code: string, message = "x") => Object.assign(new Error(message), { code });
    expect(classifyFcmError(err("messaging/invalid-registration-token")).status).to.equal("invalid-token");
    expect(classifyFcmError(err("app/network-timeout")).status).to.equal("retry");
    expect(classifyFcmError(err("messaging/unknown-error")).status).to.equal("retry");
    expect(classifyFcmError(err("messaging/third-party-auth-error")).status).to.equal("failed");
    expect(classifyFcmError(err("messaging/payload-size-limit-exceeded")).status).to.equal("failed");
    expect(classifyFcmError(err("app/invalid-credential", "ECONNREFUSED")).status).to.equal("retry");
    expect(classifyFcmError(err("messaging/app/network-error", "GOAWAY")).status).to.equal("retry");
    expect(classifyFcmError(new Error("socket hang up")).status).to.equal("retry");
  });
});
