/**
 * A local APNs stand-in: an HTTP/2 TLS server on 127.0.0.1 that validates requests the way Apple's provider API
 * does (path, method, ES256 provider JWT or client certificate, apns-* headers, payload size) and answers what a
 * test tells it to. Keys and certificates are generated with the openssl CLI at start into a temp dir, so a sender
 * reaches it through the same settings a deployment uses (address, port, CA).
 */
import { createPublicKey, randomBytes, randomUUID, verify, type KeyObject } from "node:crypto";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import http2 from "node:http2";
import { connect, createServer, type AddressInfo, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { TLSSocket } from "node:tls";
import { b64urlJson, makeTestCa, openssl, writeServerExt } from "./tls-fixtures.js";

/** What the stand-in answers for a token once the request passed validation. */
export type StandinReply =
  | { status: 200 }
  | { status: 400; reason: string }
  | { status: 403; reason?: string }
  | { status: 410; reason?: string; timestamp?: number }
  | { status: 429; reason?: string; retryAfterSec?: number }
  | { status: 500 | 503; reason?: string }
  /** Never answer: the stream stays open until the client gives up or the stand-in stops. */
  | { hang: true };

export interface RecordedRequest {
  /** Date.now() when the request headers arrived. */
  time: number;
  method: string;
  path: string;
  /** The device token from /3/device/<token>, or "" when the path did not match. */
  token: string;
  /** Request headers, lower-case names, pseudo-headers included. */
  headers: Record<string, string>;
  /** Parsed JSON body, or undefined when empty or not JSON. */
  body: unknown;
  bodyBytes: number;
  /** Decoded (and verified, if status is not 403) provider JWT. */
  jwt?: { header: Record<string, unknown>; claims: Record<string, unknown> };
  /** Subject of a client certificate that the test CA signed, when the client presented one. */
  clientCertSubject?: string;
  /** Why a presented client certificate was not trusted (e.g. self-signed). */
  clientCertError?: string;
  /** What the stand-in answered ("hang" = nothing). */
  status: number | "hang";
  reason?: string;
}

export interface ApnsStandinOptions {
  keyId?: string;
  teamId?: string;
  /** Real APNs advertises a limit of this order; clients must queue above it. */
  maxConcurrentStreams?: number;
  /** Keep every request for assertions (default true); the benchmark turns it off to measure the client. */
  record?: boolean;
}

export interface ClientCert {
  certPath: string;
  keyPath: string;
}

interface Rule {
  reply: StandinReply;
  /** Remaining uses; undefined = always. */
  remaining?: number;
}

const MAX_PAYLOAD = 4096;
const PUSH_TYPES = new Set([
  "alert",
  "background",
  "voip",
  "complication",
  "fileprovider",
  "mdm",
  "location",
  "liveactivity",
  "pushtotalk",
  "widgets",
]);
const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const TOKEN_RE = /^[0-9a-f]{64,200}$/i;

export class ApnsStandin {
  readonly requests: RecordedRequest[] = [];
  /** Host name the server certificate is valid for (and that resolves to 127.0.0.1). */
  readonly address = "localhost";
  port = 0;
  /** PEM path of the test CA: give it to the sender as `ca`. */
  caPath = "";
  /** Provider token key (.p8, PKCS#8 PEM) and its ids: give them to the sender as `token`. */
  tokenKeyPath = "";
  readonly keyId: string;
  readonly teamId: string;
  /** A client certificate (with Apple's sandbox push extension) that the test CA signed, for certificate auth. */
  clientCert: ClientCert = { certPath: "", keyPath: "" };

  private dir = "";
  private caKeyPath = "";
  private publicKey: KeyObject | undefined;
  private server: http2.Http2SecureServer | undefined;
  private readonly sessions = new Set<http2.ServerHttp2Session>();
  private readonly rules = new Map<string, Rule[]>();
  private defaultRule: Rule = { reply: { status: 200 } };
  /** Verified JWTs: APNs itself verifies a token once per connection, not per request. */
  private readonly jwtCache = new Map<
    string,
    { header: Record<string, unknown>; claims: Record<string, unknown> }
  >();
  private readonly record: boolean;
  private readonly certInfo = new WeakMap<http2.Http2Session, { subject?: string; error?: string }>();
  private readonly maxConcurrentStreams: number;

  constructor(opts: ApnsStandinOptions = {}) {
    this.keyId = opts.keyId ?? "KEY1234567";
    this.teamId = opts.teamId ?? "TEAM123456";
    this.record = opts.record ?? true;
    this.maxConcurrentStreams = opts.maxConcurrentStreams ?? 1000;
  }

  async start(): Promise<this> {
    this.dir = await mkdtemp(join(tmpdir(), "apns-standin-"));
    const d = this.dir;
    this.caPath = join(d, "ca.pem");
    this.caKeyPath = join(d, "ca.key");
    await makeTestCa(d, "cardlink test APNs CA");
    await writeServerExt(d, ["DNS:localhost", "IP:127.0.0.1"]);
    await this.issue("server", "/CN=localhost", "server.ext", "ec");
    // Apple's .p8 is a PKCS#8 PEM P-256 key, which is what genpkey writes.
    this.tokenKeyPath = join(d, `AuthKey_${this.keyId}.p8`);
    await openssl(d, [
      "genpkey",
      "-algorithm",
      "EC",
      "-pkeyopt",
      "ec_paramgen_curve:P-256",
      "-out",
      this.tokenKeyPath,
    ]);
    await openssl(d, ["pkey", "-in", this.tokenKeyPath, "-pubout", "-out", "token-pub.pem"]);
    this.publicKey = createPublicKey(await readFile(join(d, "token-pub.pem")));
    this.clientCert = await this.issueClientCert(true);

    const server = http2.createSecureServer({
      key: await readFile(join(d, "server.key")),
      cert: await readFile(join(d, "server.pem")),
      ca: await readFile(this.caPath),
      // Certificate auth: ask for a client certificate but let token-auth clients in without one.
      requestCert: true,
      rejectUnauthorized: false,
      settings: { maxConcurrentStreams: this.maxConcurrentStreams },
    });
    server.on("session", (s) => {
      this.sessions.add(s);
      s.on("close", () => this.sessions.delete(s));
      s.on("error", () => undefined);
    });
    server.on("stream", (stream, headers) => this.onStream(stream, headers));
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(0, "127.0.0.1", () => resolve());
    });
    this.server = server;
    this.port = (server.address() as AddressInfo).port;
    return this;
  }

  /**
   * Issues a client certificate: trusted = signed by the test CA, otherwise self-signed. RSA with Apple's
   * sandbox push extension, like a real APNs certificate, so node-apn's own certificate checks accept it.
   */
  async issueClientCert(trusted: boolean): Promise<ClientCert> {
    const name = `client-${trusted ? "trusted" : "untrusted"}-${randomBytes(4).toString("hex")}`;
    const ext = join(this.dir, `${name}.ext`);
    await writeFile(
      ext,
      "basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n1.2.840.113635.100.6.3.1=ASN1:NULL\n",
    );
    const subj = "/UID=com.example.cardlink/CN=Apple Development IOS Push Services: com.example.cardlink";
    if (trusted) {
      await this.issue(name, subj, ext, "rsa");
    } else {
      await openssl(this.dir, [
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        `${name}.key`,
        "-out",
        `${name}.pem`,
        "-days",
        "2",
        "-subj",
        subj,
        "-addext",
        "1.2.840.113635.100.6.3.1=ASN1:NULL",
      ]);
    }
    return { certPath: join(this.dir, `${name}.pem`), keyPath: join(this.dir, `${name}.key`) };
  }

  private async issue(name: string, subj: string, extFile: string, alg: "ec" | "rsa"): Promise<void> {
    const keyArgs =
      alg === "ec" ? ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"] : ["-newkey", "rsa:2048"];
    await openssl(this.dir, [
      "req",
      ...keyArgs,
      "-nodes",
      "-keyout",
      `${name}.key`,
      "-out",
      `${name}.csr`,
      "-subj",
      subj,
    ]);
    await openssl(this.dir, [
      "x509",
      "-req",
      "-in",
      `${name}.csr`,
      "-CA",
      this.caPath,
      "-CAkey",
      this.caKeyPath,
      "-set_serial",
      `0x${randomBytes(8).toString("hex")}`,
      "-days",
      "2",
      "-extfile",
      extFile,
      "-out",
      `${name}.pem`,
    ]);
  }

  /** Answer `reply` for `token`: always, or for the next `times` requests (then the previous rules apply). */
  reply(token: string, reply: StandinReply, times?: number): void {
    const list = this.rules.get(token.toLowerCase()) ?? [];
    // Newest rule wins, so a "next N" rule can sit on top of an "always" rule.
    list.unshift({ reply, remaining: times });
    this.rules.set(token.toLowerCase(), list);
  }

  /** Answer for tokens without a rule (default 200). */
  replyDefault(reply: StandinReply): void {
    this.defaultRule = { reply };
  }

  /** Forget per-token rules, the default rule and the recorded requests. */
  reset(): void {
    this.rules.clear();
    this.defaultRule = { reply: { status: 200 } };
    this.requests.length = 0;
  }

  /** Requests recorded for one device token. */
  requestsFor(token: string): RecordedRequest[] {
    return this.requests.filter((r) => r.token === token.toLowerCase());
  }

  /** Number of HTTP/2 sessions currently open. */
  get sessionCount(): number {
    return this.sessions.size;
  }

  async stop(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    if (server) {
      for (const s of this.sessions) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
    if (this.dir) await rm(this.dir, { recursive: true, force: true });
  }

  /** The TLS client certificate is per connection: look it up once per session, not per request. */
  private clientCertOf(session: http2.Http2Session | undefined): { subject?: string; error?: string } {
    if (!session) return {};
    let info = this.certInfo.get(session);
    if (!info) {
      info = {};
      const socket = session.socket as TLSSocket;
      const peer = socket.getPeerCertificate();
      if (peer && Object.keys(peer).length > 0) {
        if (socket.authorized) {
          info.subject = Object.entries(peer.subject ?? {})
            .map(([k, v]) => `${k}=${String(v)}`)
            .join(",");
        } else {
          info.error = String(socket.authorizationError ?? "unauthorized");
        }
      }
      this.certInfo.set(session, info);
    }
    return info;
  }

  private takeReply(token: string): StandinReply {
    const list = this.rules.get(token);
    if (list) {
      for (let i = 0; i < list.length; i++) {
        const rule = list[i];
        if (!rule) continue;
        if (rule.remaining === undefined) return rule.reply;
        if (rule.remaining > 0) {
          rule.remaining -= 1;
          if (rule.remaining === 0) list.splice(i, 1);
          return rule.reply;
        }
      }
    }
    return this.defaultRule.reply;
  }

  private onStream(stream: http2.ServerHttp2Stream, raw: http2.IncomingHttpHeaders): void {
    const headers: Record<string, string> = {};
    for (const [k, v] of Object.entries(raw)) {
      if (v !== undefined) headers[k] = Array.isArray(v) ? v.join(",") : String(v);
    }
    const time = Date.now();
    const chunks: Buffer[] = [];
    let size = 0;
    stream.on("data", (c: Buffer) => {
      size += c.length;
      // Stop buffering far past the limit; the size is still counted for the 413.
      if (size <= MAX_PAYLOAD * 2) chunks.push(c);
    });
    stream.on("error", () => undefined);
    stream.on("end", () => {
      const rawBody = Buffer.concat(chunks);
      this.handle(stream, headers, rawBody, size, time);
    });
  }

  private handle(
    stream: http2.ServerHttp2Stream,
    headers: Record<string, string>,
    rawBody: Buffer,
    bodyBytes: number,
    time: number,
  ): void {
    const method = headers[":method"] ?? "";
    const path = headers[":path"] ?? "";
    const m = /^\/3\/device\/([^/?]*)$/.exec(path);
    const token = (m?.[1] ?? "").toLowerCase();
    let body: unknown;
    if (rawBody.length > 0) {
      try {
        body = JSON.parse(rawBody.toString("utf8"));
      } catch {
        body = undefined;
      }
    }
    const rec: RecordedRequest = { time, method, path, token, headers, body, bodyBytes, status: 200 };
    const cert = this.clientCertOf(stream.session);
    if (cert.subject !== undefined) rec.clientCertSubject = cert.subject;
    if (cert.error !== undefined) rec.clientCertError = cert.error;

    const error = this.validate(rec, rawBody);
    const apnsId = UUID_RE.test(headers["apns-id"] ?? "") ? (headers["apns-id"] as string) : randomUUID();
    if (error) {
      this.answer(stream, rec, apnsId, error.status, { reason: error.reason });
      return;
    }
    const reply = this.takeReply(token);
    if ("hang" in reply) {
      rec.status = "hang";
      if (this.record) this.requests.push(rec);
      return;
    }
    switch (reply.status) {
      case 200:
        this.answer(stream, rec, apnsId, 200, undefined);
        return;
      case 410:
        this.answer(stream, rec, apnsId, 410, {
          reason: reply.reason ?? "Unregistered",
          timestamp: reply.timestamp ?? Date.now(),
        });
        return;
      case 429:
        this.answer(
          stream,
          rec,
          apnsId,
          429,
          { reason: reply.reason ?? "TooManyRequests" },
          reply.retryAfterSec === undefined ? {} : { "retry-after": String(reply.retryAfterSec) },
        );
        return;
      case 400:
        this.answer(stream, rec, apnsId, 400, { reason: reply.reason });
        return;
      case 403:
        this.answer(stream, rec, apnsId, 403, { reason: reply.reason ?? "Forbidden" });
        return;
      default:
        this.answer(stream, rec, apnsId, reply.status, {
          reason: reply.reason ?? (reply.status === 500 ? "InternalServerError" : "ServiceUnavailable"),
        });
    }
  }

  private answer(
    stream: http2.ServerHttp2Stream,
    rec: RecordedRequest,
    apnsId: string,
    status: number,
    json: Record<string, unknown> | undefined,
    extra: Record<string, string> = {},
  ): void {
    rec.status = status;
    if (json && typeof json.reason === "string") rec.reason = json.reason;
    if (this.record) this.requests.push(rec);
    if (stream.destroyed || stream.closed) return;
    const head: http2.OutgoingHttpHeaders = { ":status": status, "apns-id": apnsId, ...extra };
    if (json === undefined) {
      stream.respond(head, { endStream: true });
    } else {
      stream.respond({ ...head, "content-type": "application/json" });
      stream.end(JSON.stringify(json));
    }
  }

  /** Apple's checks, in roughly Apple's order; returns the error APNs would answer. */
  private validate(rec: RecordedRequest, rawBody: Buffer): { status: number; reason: string } | undefined {
    const h = rec.headers;
    if (rec.method !== "POST") return { status: 405, reason: "MethodNotAllowed" };
    if (!/^\/3\/device\//.test(rec.path)) return { status: 404, reason: "BadPath" };
    if (rec.token === "") return { status: 400, reason: "MissingDeviceToken" };

    const auth = h["authorization"];
    if (auth !== undefined) {
      const jwtError = this.checkJwt(rec, auth);
      if (jwtError) return { status: 403, reason: jwtError };
      if (h["apns-topic"] === undefined || h["apns-topic"] === "")
        return { status: 400, reason: "MissingTopic" };
    } else if (rec.clientCertSubject === undefined) {
      return {
        status: 403,
        reason: rec.clientCertError === undefined ? "MissingProviderToken" : "BadCertificate",
      };
    }

    const pushType = h["apns-push-type"];
    if (pushType !== undefined && !PUSH_TYPES.has(pushType))
      return { status: 400, reason: "InvalidPushType" };
    const prio = h["apns-priority"];
    if (prio !== undefined && !["1", "5", "10"].includes(prio)) return { status: 400, reason: "BadPriority" };
    const exp = h["apns-expiration"];
    if (exp !== undefined && !/^\d+$/.test(exp)) return { status: 400, reason: "BadExpirationDate" };
    const collapse = h["apns-collapse-id"];
    if (collapse !== undefined && Buffer.byteLength(collapse) > 64)
      return { status: 400, reason: "BadCollapseId" };
    const id = h["apns-id"];
    if (id !== undefined && !UUID_RE.test(id)) return { status: 400, reason: "BadMessageId" };
    if (!TOKEN_RE.test(rec.token)) return { status: 400, reason: "BadDeviceToken" };

    if (rec.bodyBytes > MAX_PAYLOAD) return { status: 413, reason: "PayloadTooLarge" };
    if (rawBody.length === 0) return { status: 400, reason: "PayloadEmpty" };
    if (rec.body === undefined || typeof rec.body !== "object" || rec.body === null) {
      // Not one of Apple's documented reasons: APNs rejects malformed JSON, the exact reason is not specified.
      return { status: 400, reason: "BadPayload" };
    }
    return undefined;
  }

  private checkJwt(rec: RecordedRequest, auth: string): string | undefined {
    const m = /^bearer (.+)$/i.exec(auth);
    if (!m?.[1]) return "InvalidProviderToken";
    const jwt = m[1];
    let decoded = this.jwtCache.get(jwt);
    if (!decoded) {
      const [h, c, s] = jwt.split(".");
      if (h === undefined || c === undefined || s === undefined) return "InvalidProviderToken";
      const header = b64urlJson(h);
      const claims = b64urlJson(c);
      if (!header || !claims) return "InvalidProviderToken";
      rec.jwt = { header, claims };
      if (header.alg !== "ES256" || header.kid !== this.keyId || claims.iss !== this.teamId) {
        return "InvalidProviderToken";
      }
      if (!this.publicKey) return "InvalidProviderToken";
      // JWS ES256 signatures are raw r||s, not DER.
      const ok = verify(
        "sha256",
        Buffer.from(`${h}.${c}`),
        { key: this.publicKey, dsaEncoding: "ieee-p1363" },
        Buffer.from(s, "base64url"),
      );
      if (!ok) return "InvalidProviderToken";
      decoded = { header, claims };
      this.jwtCache.set(jwt, decoded);
    }
    rec.jwt = decoded;
    const iat = decoded.claims.iat;
    if (typeof iat !== "number") return "InvalidProviderToken";
    // APNs refuses tokens older than one hour.
    if (Date.now() / 1000 - iat > 3600) return "ExpiredProviderToken";
    return undefined;
  }
}

/** Starts a stand-in; stop it with `stop(standin)` or `standin.stop()`. */
export async function start(opts: ApnsStandinOptions = {}): Promise<ApnsStandin> {
  return new ApnsStandin(opts).start();
}

export async function stop(standin: ApnsStandin): Promise<void> {
  await standin.stop();
}

/**
 * A TCP forwarder in front of the stand-in that can go silent: `freeze()` stops moving bytes on the connections
 * open at that moment (no answers, no PING acks, no FIN), which is how a dead path looks to the client. New
 * connections made after the freeze work normally.
 */
export interface FreezableProxy {
  port: number;
  /** Connections accepted so far. */
  readonly accepted: number;
  freeze(): void;
  stop(): Promise<void>;
}

export async function startFreezableProxy(targetPort: number): Promise<FreezableProxy> {
  const pairs = new Set<[Socket, Socket]>();
  let accepted = 0;
  const server = createServer((client) => {
    accepted += 1;
    const upstream = connect(targetPort, "127.0.0.1");
    const pair: [Socket, Socket] = [client, upstream];
    pairs.add(pair);
    client.pipe(upstream);
    upstream.pipe(client);
    const drop = (): void => {
      pairs.delete(pair);
      client.destroy();
      upstream.destroy();
    };
    client.on("error", drop);
    upstream.on("error", drop);
    client.on("close", drop);
    upstream.on("close", drop);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", () => resolve()));
  return {
    port: (server.address() as AddressInfo).port,
    get accepted() {
      return accepted;
    },
    freeze() {
      for (const [a, b] of pairs) {
        a.unpipe(b);
        b.unpipe(a);
        a.pause();
        b.pause();
      }
    },
    async stop() {
      for (const [a, b] of pairs) {
        a.destroy();
        b.destroy();
      }
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
