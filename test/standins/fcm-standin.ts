/**
 * A local stand-in for Firebase Cloud Messaging (HTTP v1) and Google's OAuth2 token endpoint, on 127.0.0.1.
 *
 * One TLS listener serves both hosts (fcm.googleapis.com and oauth2.googleapis.com; the certificate, issued by a
 * test CA generated with the openssl CLI at start, names both plus localhost). ALPN picks the protocol:
 * - h2: FCM `POST /v1/projects/<project>/messages:send`, as firebase-admin's `sendEach()` speaks it.
 * - http/1.1: the OAuth2 token endpoint `POST /token` (jwt-bearer grant), as google-auth-library speaks it.
 *
 * Why the h2 side is not a plain `http2.createSecureServer`: firebase-admin 13.x sends the pseudo-header
 * `:scheme: https:` (with the colon: it copies `URL.protocol`). Google's front ends accept that; nghttp2 inside
 * Node rejects the stream with PROTOCOL_ERROR before any JS sees it, and Node exposes no option to relax that
 * check (`nghttp2_option_set_no_http_messaging` is never called). So the stand-in terminates TLS itself, decodes
 * each client HEADERS block (HPACK, RFC 7541), normalises `:scheme` to `https` (passing the raw value on in a
 * private header, so it is still recorded), re-encodes the block without dynamic-table references and relays
 * the byte stream over loopback TCP to an ordinary plaintext `node:http2` server. Every other frame passes
 * through untouched; the server-to-client direction is not touched at all.
 */
import { createPublicKey, randomBytes, verify, type KeyObject } from "node:crypto";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import http, { type IncomingMessage, type ServerResponse } from "node:http";
import http2 from "node:http2";
import net, { type AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import tls, { type TLSSocket } from "node:tls";
import { b64urlJson, issueServerCert, makeTestCa, openssl, writeServerExt } from "./tls-fixtures.js";

export const FCM_HOST = "fcm.googleapis.com";
export const OAUTH_HOST = "oauth2.googleapis.com";
/** The audience google-auth-library puts in the assertion, and the token_uri of a real service-account file. */
export const TOKEN_URI = `https://${OAUTH_HOST}/token`;
const JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer";
const FCM_SCOPE = "https://www.googleapis.com/auth/firebase.messaging";
const FCM_ERROR_TYPE = "type.googleapis.com/google.firebase.fcm.v1.FcmError";

/** Failures the stand-in can be told to produce for a device token. */
export type FcmFailure =
  | "UNREGISTERED"
  | "INVALID_ARGUMENT"
  | "QUOTA_EXCEEDED"
  | "UNAVAILABLE"
  | "INTERNAL"
  | "SENDER_ID_MISMATCH"
  | "THIRD_PARTY_AUTH_ERROR"
  /** RST_STREAM (INTERNAL_ERROR) instead of an answer: a transport failure. */
  | "RESET"
  /** Never answer: the stream stays open until the client gives up or the stand-in stops. */
  | "HANG"
  /** Drop the whole connection (every stream on it) without an answer: a network failure mid-batch. */
  | "DROP";

export interface FailOptions {
  /** Fail only the next N requests for the token; omitted = every request. */
  times?: number;
  /** Retry-After (seconds) on QUOTA_EXCEEDED / UNAVAILABLE / INTERNAL answers. */
  retryAfterSec?: number;
}

export interface RecordedFcmRequest {
  time: number;
  /** Sequence number of the TLS connection (firebase-admin opens one per `sendEach()` call). */
  connection: number;
  streamId: number;
  method: string;
  path: string;
  authority: string;
  /** `:scheme` exactly as the client sent it, before the stand-in normalised it. */
  scheme: string;
  /** Request headers, lower-case names, pseudo-headers included (`:scheme` normalised). */
  headers: Record<string, string>;
  /** Parsed JSON body, or undefined when it was not JSON. */
  body: unknown;
  /** `message.token` from the body ("" when absent). */
  token: string;
  status: number | "hang" | "reset" | "dropped";
  /** FcmError errorCode (or google.rpc status when FCM sends no FcmError) of an error answer. */
  errorCode?: string;
  /** `name` of a successful answer. */
  messageName?: string;
}

export interface RecordedTokenRequest {
  time: number;
  connection: number;
  path: string;
  headers: Record<string, string>;
  grantType: string;
  /** True when the assertion was a well-formed RS256 JWT signed by the service account's key with valid claims. */
  verified: boolean;
  /** Why verification failed. */
  error?: string;
  jwtHeader?: Record<string, unknown>;
  claims?: Record<string, unknown>;
  /** The access token issued (verified requests only). */
  accessToken?: string;
}

export interface FcmStandinOptions {
  projectId?: string;
  /**
   * SETTINGS_MAX_CONCURRENT_STREAMS advertised to clients. firebase-admin assumes 100 ("to respect backend
   * limit") before the server's SETTINGS arrive, so 100 is the default here too.
   */
  maxConcurrentStreams?: number;
  /** Keep every request for assertions (default true); the benchmark turns it off. */
  record?: boolean;
  /** Lifetime of issued access tokens, seconds (default 3599, as Google answers). */
  tokenLifetimeSec?: number;
}

/** The service-account JSON fields a Google key file has (and the Admin SDK reads). */
export interface ServiceAccountJson {
  type: "service_account";
  project_id: string;
  private_key_id: string;
  private_key: string;
  client_email: string;
  client_id: string;
  auth_uri: string;
  token_uri: string;
  auth_provider_x509_cert_url: string;
  client_x509_cert_url: string;
  universe_domain: string;
}

interface Rule {
  failure: FcmFailure;
  retryAfterSec?: number;
  /** Remaining uses; undefined = always. */
  remaining?: number;
}

/**
 * Headers the rewriter adds to every request it hands to the inner h2 server, so the handler knows the client
 * connection and the `:scheme` as sent. They are removed before a request is recorded.
 */
const CONN_HEADER = "x-fcm-standin-connection";
const RAW_SCHEME_HEADER = "x-fcm-standin-raw-scheme";

function isRecord(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === "object" && !Array.isArray(v);
}

function headerRecord(h: http2.IncomingHttpHeaders | http.IncomingHttpHeaders): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(h)) {
    if (v !== undefined) out[k] = Array.isArray(v) ? v.join(", ") : String(v);
  }
  return out;
}

// The real FCM v1 error bodies (google.rpc.Status with an FcmError detail), by failure.
const FAILURES: Record<
  Exclude<FcmFailure, "RESET" | "HANG" | "DROP">,
  { http: number; status: string; message: string; withFcmError: boolean }
> = {
  UNREGISTERED: {
    http: 404,
    status: "NOT_FOUND",
    message: "Requested entity was not found.",
    withFcmError: true,
  },
  INVALID_ARGUMENT: {
    http: 400,
    status: "INVALID_ARGUMENT",
    message: "The registration token is not a valid FCM registration token",
    withFcmError: true,
  },
  QUOTA_EXCEEDED: {
    http: 429,
    status: "RESOURCE_EXHAUSTED",
    message: "Quota exceeded for quota metric 'Send requests' and limit 'Send requests per minute'.",
    withFcmError: true,
  },
  UNAVAILABLE: {
    http: 503,
    status: "UNAVAILABLE",
    message: "The service is currently unavailable.",
    withFcmError: true,
  },
  INTERNAL: { http: 500, status: "INTERNAL", message: "Internal error encountered.", withFcmError: true },
  SENDER_ID_MISMATCH: {
    http: 403,
    status: "PERMISSION_DENIED",
    message: "SenderId mismatch",
    withFcmError: true,
  },
  THIRD_PARTY_AUTH_ERROR: {
    http: 401,
    status: "UNAUTHENTICATED",
    message: "Auth error from APNS or Web Push Service",
    withFcmError: true,
  },
};

function errorBody(code: number, status: string, message: string, fcmErrorCode?: string): string {
  const details = fcmErrorCode ? [{ "@type": FCM_ERROR_TYPE, errorCode: fcmErrorCode }] : undefined;
  return JSON.stringify({ error: { code, message, status, ...(details ? { details } : {}) } });
}

const MESSAGE_KEYS = new Set([
  "name",
  "token",
  "topic",
  "condition",
  "data",
  "notification",
  "android",
  "apns",
  "webpush",
  "fcm_options",
]);
const ANDROID_KEYS = new Set([
  "collapse_key",
  "priority",
  "ttl",
  "restricted_package_name",
  "data",
  "notification",
  "fcm_options",
  "direct_boot_ok",
  "bandwidth_constrained_ok",
  "restricted_satellite_ok",
]);
const TTL_RE = /^\d+(\.\d{1,9})?s$/;

/** What real FCM rejects with INVALID_ARGUMENT in the parts cardlink uses; undefined when acceptable. */
function validateMessage(message: unknown): string | undefined {
  if (!isRecord(message)) return "message must be an object";
  for (const k of Object.keys(message)) if (!MESSAGE_KEYS.has(k)) return `Unknown name "${k}" at 'message'`;
  const targets = ["token", "topic", "condition"].filter((k) => message[k] !== undefined);
  if (targets.length !== 1) return "Exactly one of token, topic or condition must be set";
  if (typeof message.token !== "string" || message.token === "") return "message.token must be a string";
  if (message.data !== undefined) {
    if (!isRecord(message.data)) return "message.data must be a map";
    for (const [k, v] of Object.entries(message.data)) {
      if (typeof v !== "string") return `message.data.${k} must be a string`;
      if (k === "from" || k === "notification" || k === "message_type" || /^(google|gcm)/.test(k)) {
        return `Invalid data key "${k}"`;
      }
    }
  }
  if (message.notification !== undefined) {
    if (!isRecord(message.notification)) return "message.notification must be an object";
    for (const [k, v] of Object.entries(message.notification)) {
      if (!["title", "body", "image"].includes(k)) return `Unknown name "${k}" at 'message.notification'`;
      if (typeof v !== "string") return `message.notification.${k} must be a string`;
    }
  }
  const android = message.android;
  if (android !== undefined) {
    if (!isRecord(android)) return "message.android must be an object";
    for (const k of Object.keys(android))
      if (!ANDROID_KEYS.has(k)) return `Unknown name "${k}" at 'message.android'`;
    if (android.priority !== undefined && !/^(normal|high)$/i.test(String(android.priority))) {
      return `Invalid value at 'message.android.priority' (${String(android.priority)})`;
    }
    if (android.ttl !== undefined && (typeof android.ttl !== "string" || !TTL_RE.test(android.ttl))) {
      return "Invalid value at 'message.android.ttl'";
    }
    if (android.collapse_key !== undefined && typeof android.collapse_key !== "string") {
      return "message.android.collapse_key must be a string";
    }
    if (android.notification !== undefined && !isRecord(android.notification)) {
      return "message.android.notification must be an object";
    }
  }
  return undefined;
}

export class FcmStandin {
  readonly projectId: string;
  readonly fcmRequests: RecordedFcmRequest[] = [];
  readonly tokenRequests: RecordedTokenRequest[] = [];
  port = 0;
  readonly host = "127.0.0.1";
  /** PEM of the test CA that issued the server certificate. */
  caPem = "";
  caPath = "";
  /** Path of the generated service-account JSON (what a deployment puts in `serviceAccount`). */
  serviceAccountPath = "";
  serviceAccount: ServiceAccountJson | undefined;
  /** Number of successful sends (counted even when recording is off). */
  sentCount = 0;

  private dir = "";
  private publicKey: KeyObject | undefined;
  private tlsServer: tls.Server | undefined;
  private readonly h2: http2.Http2Server;
  private readonly h1 = http.createServer();
  private readonly sockets = new Set<TLSSocket>();
  private readonly h2Sessions = new Set<http2.ServerHttp2Session>();
  private readonly connOfSocket = new WeakMap<object, number>();
  /** Plaintext listener of the inner h2 server (loopback, reached only through the TLS front). */
  private innerPort = 0;
  private connSeq = 0;
  private msgSeq = 0;
  private readonly rules = new Map<string, Rule>();
  /** Issued access tokens and their expiry (ms since epoch). */
  private readonly accessTokens = new Map<string, number>();
  private readonly record: boolean;
  private readonly maxConcurrentStreams: number;
  private readonly tokenLifetimeSec: number;

  constructor(opts: FcmStandinOptions = {}) {
    this.projectId = opts.projectId ?? "cardlink-test";
    this.record = opts.record ?? true;
    this.maxConcurrentStreams = opts.maxConcurrentStreams ?? 100;
    this.tokenLifetimeSec = opts.tokenLifetimeSec ?? 3599;
    this.h2 = http2.createServer({
      settings: { maxConcurrentStreams: this.maxConcurrentStreams, headerTableSize: 4096 },
    });
  }

  async start(): Promise<this> {
    this.dir = await mkdtemp(join(tmpdir(), "fcm-standin-"));
    const d = this.dir;
    await makeTestCa(d, "cardlink test Google CA");
    await writeServerExt(d, [`DNS:${FCM_HOST}`, `DNS:${OAUTH_HOST}`, "DNS:localhost", "IP:127.0.0.1"]);
    await issueServerCert(d, FCM_HOST);
    // Google service-account keys are 2048-bit RSA in PKCS#8 PEM, which is what genpkey writes.
    await openssl(d, ["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", "sa.key"]);
    await openssl(d, ["pkey", "-in", "sa.key", "-pubout", "-out", "sa-pub.pem"]);
    this.publicKey = createPublicKey(await readFile(join(d, "sa-pub.pem")));
    this.caPath = join(d, "ca.pem");
    this.caPem = await readFile(this.caPath, "utf8");

    const email = `cardlink-push@${this.projectId}.iam.gserviceaccount.com`;
    this.serviceAccount = {
      type: "service_account",
      project_id: this.projectId,
      private_key_id: randomBytes(20).toString("hex"),
      private_key: await readFile(join(d, "sa.key"), "utf8"),
      client_email: email,
      client_id: String(100000000000000000000n + BigInt(randomBytes(6).readUIntBE(0, 6))),
      auth_uri: "https://accounts.google.com/o/oauth2/auth",
      token_uri: TOKEN_URI,
      auth_provider_x509_cert_url: "https://www.googleapis.com/oauth2/v1/certs",
      client_x509_cert_url: `https://www.googleapis.com/robot/v1/metadata/x509/${encodeURIComponent(email)}`,
      universe_domain: "googleapis.com",
    };
    this.serviceAccountPath = join(d, "service-account.json");
    await writeFile(this.serviceAccountPath, JSON.stringify(this.serviceAccount, null, 2));

    this.h2.on("session", (s) => {
      this.h2Sessions.add(s);
      s.on("close", () => this.h2Sessions.delete(s));
      s.on("error", () => undefined);
    });
    this.h2.on("stream", (stream, headers) => this.onFcmStream(stream, headers));
    this.h1.keepAliveTimeout = 30_000;
    this.h1.on("request", (req, res) => this.onHttp1(req, res));
    await new Promise<void>((resolve, reject) => {
      this.h2.once("error", reject);
      this.h2.listen(0, "127.0.0.1", () => {
        this.h2.off("error", reject);
        resolve();
      });
    });
    this.innerPort = (this.h2.address() as AddressInfo).port;

    const server = tls.createServer({
      key: await readFile(join(d, "server.key")),
      cert: await readFile(join(d, "server.pem")),
      ALPNProtocols: ["h2", "http/1.1"],
      // Without it small answers wait for the client's delayed ACK (≈40 ms per round trip on loopback).
      noDelay: true,
    });
    server.on("secureConnection", (sock) => this.onTls(sock));
    server.on("tlsClientError", () => undefined);
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(0, this.host, () => {
        server.off("error", reject);
        resolve();
      });
    });
    this.tlsServer = server;
    this.port = (server.address() as AddressInfo).port;
    return this;
  }

  async stop(): Promise<void> {
    const server = this.tlsServer;
    this.tlsServer = undefined;
    const closed = server ? new Promise<void>((resolve) => server.close(() => resolve())) : Promise.resolve();
    // GOAWAY first, so clients see an orderly shutdown; whatever is still open (hung streams) is cut shortly after.
    for (const s of this.h2Sessions) s.close();
    this.h1.closeIdleConnections();
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([closed, new Promise<void>((resolve) => (timer = setTimeout(resolve, 250)))]);
    clearTimeout(timer);
    for (const s of this.h2Sessions) s.destroy();
    for (const s of this.sockets) s.destroy();
    this.h1.closeAllConnections();
    await closed;
    if (this.h2.listening) await new Promise<void>((resolve) => this.h2.close(() => resolve()));
    if (this.dir) await rm(this.dir, { recursive: true, force: true });
    this.dir = "";
  }

  /** Makes requests for `token` fail with `failure`, always or for the next `opts.times` requests. */
  failToken(token: string, failure: FcmFailure, opts: FailOptions = {}): void {
    this.rules.set(token, { failure, retryAfterSec: opts.retryAfterSec, remaining: opts.times });
  }

  clearFailures(): void {
    this.rules.clear();
  }

  /** Forgets recorded requests (not issued tokens or failure rules). */
  clearRecords(): void {
    this.fcmRequests.length = 0;
    this.tokenRequests.length = 0;
  }

  /** Access tokens the token endpoint issued, newest last. */
  issuedTokens(): string[] {
    return [...this.accessTokens.keys()];
  }

  /** Makes every issued access token invalid (FCM then answers 401), e.g. to test a credential refresh. */
  revokeAccessTokens(): void {
    this.accessTokens.clear();
  }

  private onTls(sock: TLSSocket): void {
    this.sockets.add(sock);
    sock.on("close", () => this.sockets.delete(sock));
    sock.on("error", () => undefined);
    const id = ++this.connSeq;
    if (sock.alpnProtocol === "h2") {
      proxyWithRewrite(sock, id, this.innerPort);
    } else {
      this.connOfSocket.set(sock, id);
      this.h1.emit("connection", sock);
    }
  }

  private onFcmStream(stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders): void {
    const streamId = stream.id ?? 0;
    const connection = Number(headers[CONN_HEADER] ?? 0);
    const rawScheme = String(headers[RAW_SCHEME_HEADER] ?? headers[":scheme"] ?? "");
    delete headers[CONN_HEADER];
    delete headers[RAW_SCHEME_HEADER];
    const chunks: Buffer[] = [];
    stream.on("data", (c: Buffer) => chunks.push(c));
    stream.on("error", () => undefined);
    stream.on("end", () => {
      const raw = Buffer.concat(chunks).toString("utf8");
      let body: unknown;
      try {
        body = raw === "" ? undefined : JSON.parse(raw);
      } catch {
        body = undefined;
      }
      const message = isRecord(body) && isRecord(body.message) ? body.message : undefined;
      const rec: RecordedFcmRequest = {
        time: Date.now(),
        connection,
        streamId,
        method: String(headers[":method"] ?? ""),
        path: String(headers[":path"] ?? ""),
        authority: String(headers[":authority"] ?? headers.host ?? ""),
        scheme: rawScheme,
        headers: this.record ? headerRecord(headers) : {},
        body,
        token: message && typeof message.token === "string" ? message.token : "",
        status: 0,
      };
      if (this.record) this.fcmRequests.push(rec);
      this.answerFcm(stream, headers, rec, raw, message);
    });
  }

  private answerFcm(
    stream: http2.ServerHttp2Stream,
    headers: http2.IncomingHttpHeaders,
    rec: RecordedFcmRequest,
    raw: string,
    message: Record<string, unknown> | undefined,
  ): void {
    const reply = (status: number, json: string, extra: Record<string, string> = {}): void => {
      rec.status = status;
      if (stream.destroyed) return;
      stream.respond({ ":status": status, "content-type": "application/json; charset=UTF-8", ...extra });
      stream.end(json);
    };
    const fail = (
      status: number,
      rpc: string,
      msg: string,
      fcmCode?: string,
      extra?: Record<string, string>,
    ) => {
      rec.errorCode = fcmCode ?? rpc;
      reply(status, errorBody(status, rpc, msg, fcmCode), extra);
    };

    // Node's http2 client sends the default port in :authority ("fcm.googleapis.com:443").
    if (rec.authority.replace(/:443$/, "") !== FCM_HOST)
      return fail(404, "NOT_FOUND", `Unknown host ${rec.authority}`);
    const m = /^\/v1\/projects\/([^/]+)\/messages:send$/.exec(rec.path);
    if (!m) return fail(404, "NOT_FOUND", `Unknown path ${rec.path}`);
    if (rec.method !== "POST") return fail(405, "INVALID_ARGUMENT", "Method not allowed");
    const auth = /^Bearer (.+)$/.exec(String(headers.authorization ?? ""));
    const expiry = auth?.[1] ? this.accessTokens.get(auth[1]) : undefined;
    if (expiry === undefined || expiry < Date.now()) {
      // What FCM answers for a missing, unknown or expired OAuth token (no FcmError detail).
      return fail(
        401,
        "UNAUTHENTICATED",
        "Request is missing required authentication credential. Expected OAuth 2 access token, login cookie or " +
          "other valid authentication credential.",
        undefined,
        { "www-authenticate": 'Bearer realm="https://accounts.google.com/"' },
      );
    }
    if (m[1] !== this.projectId) {
      return fail(403, "PERMISSION_DENIED", `Permission denied for project ${m[1]}`, "SENDER_ID_MISMATCH");
    }
    if (!/^application\/json/i.test(String(headers["content-type"] ?? "")) || rec.body === undefined) {
      return fail(400, "INVALID_ARGUMENT", `Invalid JSON payload received: ${raw.slice(0, 80)}`);
    }
    if (!message)
      return fail(400, "INVALID_ARGUMENT", "Invalid JSON payload received. 'message' is required.");
    const invalid = validateMessage(message);
    if (invalid) return fail(400, "INVALID_ARGUMENT", invalid, "INVALID_ARGUMENT");

    const rule = this.rules.get(rec.token);
    if (rule) {
      if (rule.remaining !== undefined) {
        rule.remaining -= 1;
        if (rule.remaining <= 0) this.rules.delete(rec.token);
      }
      if (rule.failure === "HANG") {
        rec.status = "hang";
        return;
      }
      if (rule.failure === "DROP") {
        rec.status = "dropped";
        stream.session?.destroy();
        return;
      }
      if (rule.failure === "RESET") {
        rec.status = "reset";
        stream.close(http2.constants.NGHTTP2_INTERNAL_ERROR);
        return;
      }
      const f = FAILURES[rule.failure];
      const extra: Record<string, string> = {};
      if (rule.retryAfterSec !== undefined) extra["retry-after"] = String(rule.retryAfterSec);
      return fail(f.http, f.status, f.message, f.withFcmError ? rule.failure : undefined, extra);
    }
    const seq = ++this.msgSeq;
    const name = `projects/${this.projectId}/messages/0:${Date.now()}%${seq.toString(16).padStart(16, "0")}`;
    rec.messageName = name;
    this.sentCount += 1;
    reply(200, JSON.stringify({ name }));
  }

  private onHttp1(req: IncomingMessage, res: ServerResponse): void {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const host = (req.headers.host ?? "").replace(/:\d+$/, "");
      const send = (status: number, json: unknown): void => {
        res.writeHead(status, { "content-type": "application/json; charset=utf-8" });
        res.end(JSON.stringify(json));
      };
      if (host !== OAUTH_HOST || req.url !== "/token" || req.method !== "POST") {
        // Only the token endpoint speaks HTTP/1.1 here; FCM sends go over h2.
        return send(404, { error: "not_found", error_description: `${req.method} ${host}${req.url}` });
      }
      const form = new URLSearchParams(Buffer.concat(chunks).toString("utf8"));
      const rec: RecordedTokenRequest = {
        time: Date.now(),
        connection: this.connOfSocket.get(req.socket) ?? 0,
        path: req.url,
        headers: headerRecord(req.headers),
        grantType: form.get("grant_type") ?? "",
        verified: false,
      };
      if (this.record) this.tokenRequests.push(rec);
      if (!/^application\/x-www-form-urlencoded/i.test(req.headers["content-type"] ?? "")) {
        rec.error = "content-type is not application/x-www-form-urlencoded";
        return send(400, { error: "invalid_request", error_description: rec.error });
      }
      if (rec.grantType !== JWT_BEARER) {
        rec.error = `unsupported grant_type ${rec.grantType}`;
        return send(400, { error: "unsupported_grant_type", error_description: "Invalid grant_type: " });
      }
      const problem = this.verifyAssertion(form.get("assertion") ?? "", rec);
      if (problem) {
        rec.error = problem;
        return send(400, { error: "invalid_grant", error_description: problem });
      }
      const accessToken = `ya29.standin-${randomBytes(24).toString("base64url")}`;
      this.accessTokens.set(accessToken, Date.now() + this.tokenLifetimeSec * 1000);
      rec.verified = true;
      rec.accessToken = accessToken;
      send(200, { access_token: accessToken, expires_in: this.tokenLifetimeSec, token_type: "Bearer" });
    });
  }

  /** Checks the jwt-bearer assertion the way Google's token endpoint does; returns the problem, if any. */
  private verifyAssertion(assertion: string, rec: RecordedTokenRequest): string | undefined {
    const parts = assertion.split(".");
    if (parts.length !== 3)
      return "Invalid JWT: Token must be a short-lived token and in a reasonable timeframe";
    const [h, c, s] = parts as [string, string, string];
    const header = b64urlJson(h);
    const claims = b64urlJson(c);
    rec.jwtHeader = header;
    rec.claims = claims;
    if (!header || !claims) return "Invalid JWT: malformed header or claims";
    if (header.alg !== "RS256") return `Invalid JWT: alg ${String(header.alg)} is not RS256`;
    if (
      !this.publicKey ||
      !verify("RSA-SHA256", Buffer.from(`${h}.${c}`), this.publicKey, Buffer.from(s, "base64url"))
    ) {
      return "Invalid JWT Signature.";
    }
    const sa = this.serviceAccount;
    if (header.kid !== undefined && header.kid !== sa?.private_key_id) return "Invalid JWT: unknown kid";
    if (claims.iss !== sa?.client_email)
      return `Invalid JWT: iss ${String(claims.iss)} is not the service account`;
    if (claims.aud !== TOKEN_URI) return `Invalid JWT: aud ${String(claims.aud)} is not ${TOKEN_URI}`;
    const now = Math.floor(Date.now() / 1000);
    const iat = Number(claims.iat);
    const exp = Number(claims.exp);
    // Google allows some clock skew and at most one hour of validity.
    if (!Number.isFinite(iat) || !Number.isFinite(exp) || exp <= now || iat > now + 300 || exp - iat > 3600) {
      return "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe.";
    }
    const scopes = typeof claims.scope === "string" ? claims.scope.split(" ") : [];
    if (!scopes.includes(FCM_SCOPE)) return `Invalid JWT: scope lacks ${FCM_SCOPE}`;
    return undefined;
  }
}

// ---------------------------------------------------------------------------------------------------------------
// The client-to-server h2 byte stream rewriter.

/**
 * Relays one client TLS connection to the inner plaintext h2 server over loopback TCP, rewriting the client's
 * HEADERS blocks on the way in. A real socket (rather than handing node:http2 a JS Duplex, which it wraps in a
 * slow JSStreamSocket) keeps the stand-in cheap enough not to dominate the benchmark.
 */
function proxyWithRewrite(sock: TLSSocket, connection: number, innerPort: number): void {
  const fixer = new HeadersRewriter(connection);
  const up = net.connect({ host: "127.0.0.1", port: innerPort, noDelay: true });
  up.on("error", () => sock.destroy());
  sock.on("close", () => up.destroy());
  up.on("close", () => sock.destroy());
  up.pipe(sock);
  sock.on("data", (d: Buffer) => {
    let out: Buffer[];
    try {
      out = fixer.push(d);
    } catch {
      sock.destroy();
      return;
    }
    let ok = true;
    for (const b of out) ok = up.write(b) && ok;
    if (!ok) {
      sock.pause();
      up.once("drain", () => sock.resume());
    }
  });
  sock.on("end", () => up.end());
}

const PREFACE = Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", "latin1");
const FRAME_HEADERS = 0x1;
const FRAME_CONTINUATION = 0x9;
const FLAG_END_STREAM = 0x1;
const FLAG_END_HEADERS = 0x4;
const FLAG_PADDED = 0x8;
const FLAG_PRIORITY = 0x20;
/** SETTINGS_MAX_FRAME_SIZE default: the server never raises it here, so re-encoded blocks are split at this. */
const MAX_FRAME = 16384;

class HeadersRewriter {
  private buf: Buffer = Buffer.alloc(0);
  private prefaceDone = false;
  private readonly decoder = new HpackDecoder(4096);
  private pending:
    { streamId: number; flags: number; priority: Buffer | undefined; frags: Buffer[] } | undefined;

  constructor(private readonly connection: number) {}

  push(chunk: Buffer): Buffer[] {
    this.buf = this.buf.length === 0 ? chunk : Buffer.concat([this.buf, chunk]);
    const out: Buffer[] = [];
    if (!this.prefaceDone) {
      if (this.buf.length < PREFACE.length) return out;
      if (!this.buf.subarray(0, PREFACE.length).equals(PREFACE)) throw new Error("bad h2 preface");
      out.push(PREFACE);
      this.buf = this.buf.subarray(PREFACE.length);
      this.prefaceDone = true;
    }
    let passStart = 0;
    let pos = 0;
    while (this.buf.length - pos >= 9) {
      const len = this.buf.readUIntBE(pos, 3);
      if (this.buf.length - pos < 9 + len) break;
      const type = this.buf[pos + 3] ?? 0;
      if (type === FRAME_HEADERS || type === FRAME_CONTINUATION) {
        if (pos > passStart) out.push(this.buf.subarray(passStart, pos));
        const flags = this.buf[pos + 4] ?? 0;
        const streamId = this.buf.readUInt32BE(pos + 5) & 0x7fffffff;
        const payload = this.buf.subarray(pos + 9, pos + 9 + len);
        const rewritten = this.onHeaderFrame(type, flags, streamId, payload);
        if (rewritten) out.push(rewritten);
        passStart = pos + 9 + len;
      }
      pos += 9 + len;
    }
    if (pos > passStart) out.push(this.buf.subarray(passStart, pos));
    // Copy the remainder so the (possibly large) chunk it points into is not retained.
    this.buf = pos === this.buf.length ? Buffer.alloc(0) : Buffer.from(this.buf.subarray(pos));
    return out;
  }

  private onHeaderFrame(type: number, flags: number, streamId: number, payload: Buffer): Buffer | undefined {
    if (type === FRAME_HEADERS) {
      let p = 0;
      let end = payload.length;
      if (flags & FLAG_PADDED) {
        end -= payload[0] ?? 0;
        p = 1;
      }
      let priority: Buffer | undefined;
      if (flags & FLAG_PRIORITY) {
        priority = Buffer.from(payload.subarray(p, p + 5));
        p += 5;
      }
      this.pending = { streamId, flags, priority, frags: [Buffer.from(payload.subarray(p, end))] };
    } else {
      if (!this.pending || this.pending.streamId !== streamId) throw new Error("unexpected CONTINUATION");
      this.pending.frags.push(Buffer.from(payload));
    }
    if (!(flags & FLAG_END_HEADERS)) return undefined;
    const { priority, frags } = this.pending;
    const firstFlags = this.pending.flags;
    this.pending = undefined;
    const fields = this.decoder.decode(Buffer.concat(frags));
    for (const f of fields) {
      if (f[0] === ":scheme") {
        fields.push([RAW_SCHEME_HEADER, f[1]], [CONN_HEADER, String(this.connection)]);
        f[1] = f[1].replace(/:$/, "");
        break;
      }
    }
    return encodeHeaderFrames(streamId, firstFlags & FLAG_END_STREAM, priority, encodeBlock(fields));
  }
}

function encodeHeaderFrames(
  streamId: number,
  endStream: number,
  priority: Buffer | undefined,
  block: Buffer,
): Buffer {
  const frames: Buffer[] = [];
  const firstRoom = MAX_FRAME - (priority ? 5 : 0);
  let offset = 0;
  let first = true;
  do {
    const room = first ? firstRoom : MAX_FRAME;
    const piece = block.subarray(offset, offset + room);
    offset += piece.length;
    const last = offset >= block.length;
    const head = Buffer.alloc(9);
    const payloadLen = piece.length + (first && priority ? 5 : 0);
    head.writeUIntBE(payloadLen, 0, 3);
    head[3] = first ? FRAME_HEADERS : FRAME_CONTINUATION;
    head[4] = (last ? FLAG_END_HEADERS : 0) | (first ? endStream | (priority ? FLAG_PRIORITY : 0) : 0);
    head.writeUInt32BE(streamId, 5);
    frames.push(head);
    if (first && priority) frames.push(priority);
    frames.push(piece);
    first = false;
  } while (offset < block.length);
  return Buffer.concat(frames);
}

/** HPACK literal-without-indexing, new name, no Huffman: leaves the server's dynamic table empty. */
function encodeBlock(fields: [string, string][]): Buffer {
  // Worst case per field: 1 flag byte + 2 × (5-byte length prefix + bytes). Latin-1 is one byte per char.
  let max = 0;
  for (const [name, value] of fields) max += 11 + name.length + value.length;
  const out = Buffer.allocUnsafe(max);
  let pos = 0;
  for (const [name, value] of fields) {
    out[pos++] = 0x00;
    pos = writeString(out, pos, name);
    pos = writeString(out, pos, value);
  }
  return out.subarray(0, pos);
}

function writeString(out: Buffer, pos: number, s: string): number {
  let p = writeInt(out, pos, s.length, 7);
  p += out.write(s, p, "latin1");
  return p;
}

/** An HPACK integer with a prefix of `prefixBits` bits (flag bits above it zero). */
function writeInt(out: Buffer, pos: number, value: number, prefixBits: number): number {
  const max = (1 << prefixBits) - 1;
  if (value < max) {
    out[pos++] = value;
    return pos;
  }
  out[pos++] = max;
  let rest = value - max;
  while (rest >= 128) {
    out[pos++] = (rest & 0x7f) | 0x80;
    rest = Math.floor(rest / 128);
  }
  out[pos++] = rest;
  return pos;
}

// RFC 7541 Appendix A.
const STATIC_TABLE: ReadonlyArray<readonly [string, string]> = [
  [":authority", ""],
  [":method", "GET"],
  [":method", "POST"],
  [":path", "/"],
  [":path", "/index.html"],
  [":scheme", "http"],
  [":scheme", "https"],
  [":status", "200"],
  [":status", "204"],
  [":status", "206"],
  [":status", "304"],
  [":status", "400"],
  [":status", "404"],
  [":status", "500"],
  ["accept-charset", ""],
  ["accept-encoding", "gzip, deflate"],
  ["accept-language", ""],
  ["accept-ranges", ""],
  ["accept", ""],
  ["access-control-allow-origin", ""],
  ["age", ""],
  ["allow", ""],
  ["authorization", ""],
  ["cache-control", ""],
  ["content-disposition", ""],
  ["content-encoding", ""],
  ["content-language", ""],
  ["content-length", ""],
  ["content-location", ""],
  ["content-range", ""],
  ["content-type", ""],
  ["cookie", ""],
  ["date", ""],
  ["etag", ""],
  ["expect", ""],
  ["expires", ""],
  ["from", ""],
  ["host", ""],
  ["if-match", ""],
  ["if-modified-since", ""],
  ["if-none-match", ""],
  ["if-range", ""],
  ["if-unmodified-since", ""],
  ["last-modified", ""],
  ["link", ""],
  ["location", ""],
  ["max-forwards", ""],
  ["proxy-authenticate", ""],
  ["proxy-authorization", ""],
  ["range", ""],
  ["referer", ""],
  ["refresh", ""],
  ["retry-after", ""],
  ["server", ""],
  ["set-cookie", ""],
  ["strict-transport-security", ""],
  ["transfer-encoding", ""],
  ["user-agent", ""],
  ["vary", ""],
  ["via", ""],
  ["www-authenticate", ""],
];

// RFC 7541 Appendix B code lengths for symbols 0..255, then EOS (256). The code is canonical, so the codes
// themselves follow from the lengths (checked: ' ' = 0x14/6, ':' = 0x5c/7, EOS = 0x3fffffff/30).
// prettier-ignore
const HUFFMAN_LENGTHS: readonly number[] = [
  13, 23, 28, 28, 28, 28, 28, 28, 28, 24, 30, 28, 28, 30, 28, 28,
  28, 28, 28, 28, 28, 28, 30, 28, 28, 28, 28, 28, 28, 28, 28, 28,
  6, 10, 10, 12, 13, 6, 8, 11, 10, 10, 8, 11, 8, 6, 6, 6,
  5, 5, 5, 6, 6, 6, 6, 6, 6, 6, 7, 8, 15, 6, 12, 10,
  13, 6, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7,
  7, 7, 7, 7, 7, 7, 7, 7, 8, 7, 8, 13, 19, 13, 14, 6,
  15, 5, 6, 5, 6, 5, 6, 6, 6, 5, 7, 7, 6, 6, 6, 5,
  6, 7, 6, 5, 5, 6, 7, 7, 7, 7, 7, 15, 11, 14, 13, 28,
  20, 22, 20, 20, 22, 22, 22, 23, 22, 23, 23, 23, 23, 23, 24, 23,
  24, 24, 22, 23, 24, 23, 23, 23, 23, 21, 22, 23, 22, 23, 23, 24,
  22, 21, 20, 22, 22, 23, 23, 21, 23, 22, 22, 24, 21, 22, 23, 23,
  21, 21, 22, 21, 23, 22, 23, 23, 20, 22, 22, 22, 23, 22, 22, 23,
  26, 26, 20, 19, 22, 23, 22, 25, 26, 26, 26, 27, 27, 26, 24, 25,
  19, 21, 26, 27, 27, 26, 27, 24, 21, 21, 26, 26, 28, 27, 27, 27,
  20, 24, 20, 21, 22, 21, 21, 23, 22, 22, 25, 25, 24, 24, 26, 23,
  26, 27, 26, 26, 27, 27, 27, 27, 27, 28, 27, 27, 27, 27, 27, 26,
  30,
];

/** Canonical Huffman codes from the lengths: [code, length] per symbol. */
export function huffmanCodes(): Array<[number, number]> {
  const order = HUFFMAN_LENGTHS.map((len, sym) => ({ len, sym })).sort(
    (a, b) => a.len - b.len || a.sym - b.sym,
  );
  const codes: Array<[number, number]> = new Array<[number, number]>(HUFFMAN_LENGTHS.length);
  let code = 0;
  let prevLen = order[0]?.len ?? 0;
  for (const { len, sym } of order) {
    code *= 2 ** (len - prevLen);
    prevLen = len;
    codes[sym] = [code, len];
    code += 1;
  }
  return codes;
}

/** Binary decoding tree: child[2*node + bit]; leafSym[node] >= 0 at leaves. */
const HUFF_TREE = (() => {
  const child = new Int32Array(2 * 600).fill(-1);
  const leafSym = new Int32Array(600).fill(-1);
  let nodes = 1;
  for (const [sym, [code, len]] of huffmanCodes().entries()) {
    let n = 0;
    for (let i = len - 1; i >= 0; i--) {
      const bit = Math.floor(code / 2 ** i) % 2;
      let next = child[2 * n + bit] ?? -1;
      if (next < 0) {
        next = nodes++;
        child[2 * n + bit] = next;
      }
      n = next;
    }
    leafSym[n] = sym;
  }
  return { child, leafSym };
})();

export function huffmanDecode(bytes: Buffer): string {
  const out: number[] = [];
  let n = 0;
  let depth = 0;
  let allOnes = true;
  for (const byte of bytes) {
    for (let i = 7; i >= 0; i--) {
      const bit = (byte >> i) & 1;
      n = HUFF_TREE.child[2 * n + bit] ?? -1;
      if (n < 0) throw new Error("bad huffman code");
      depth += 1;
      allOnes &&= bit === 1;
      const sym = HUFF_TREE.leafSym[n] ?? -1;
      if (sym >= 0) {
        if (sym === 256) throw new Error("EOS in huffman string");
        out.push(sym);
        n = 0;
        depth = 0;
        allOnes = true;
      }
    }
  }
  // Padding must be a prefix of EOS (all ones) and shorter than a byte.
  if (depth > 7 || !allOnes) throw new Error("bad huffman padding");
  return Buffer.from(out).toString("latin1");
}

/** HPACK decoder mirroring the client's encoder state for one connection. */
export class HpackDecoder {
  /** Newest first. */
  private readonly table: Array<[string, string]> = [];
  private size = 0;
  private maxSize: number;

  constructor(private readonly settingsMax: number) {
    this.maxSize = settingsMax;
  }

  decode(block: Buffer): [string, string][] {
    const fields: [string, string][] = [];
    const st = { pos: 0 };
    while (st.pos < block.length) {
      const b = block[st.pos] ?? 0;
      if (b & 0x80) {
        fields.push([...this.entry(this.int(block, st, 7))]);
      } else if (b & 0x40) {
        const f = this.literal(block, st, 6);
        fields.push(f);
        this.add(f);
      } else if (b & 0x20) {
        const size = this.int(block, st, 5);
        if (size > this.settingsMax) throw new Error("table size update above SETTINGS_HEADER_TABLE_SIZE");
        this.maxSize = size;
        this.evict(0);
      } else {
        fields.push(this.literal(block, st, 4));
      }
    }
    return fields;
  }

  private literal(block: Buffer, st: { pos: number }, prefix: number): [string, string] {
    const idx = this.int(block, st, prefix);
    const name = idx === 0 ? this.str(block, st) : this.entry(idx)[0];
    return [name, this.str(block, st)];
  }

  private entry(idx: number): readonly [string, string] {
    if (idx === 0) throw new Error("index 0");
    const e = idx <= STATIC_TABLE.length ? STATIC_TABLE[idx - 1] : this.table[idx - STATIC_TABLE.length - 1];
    if (!e) throw new Error(`bad index ${idx}`);
    return e;
  }

  private add(f: [string, string]): void {
    const sz = f[0].length + f[1].length + 32;
    this.evict(sz);
    if (sz <= this.maxSize) {
      this.table.unshift([f[0], f[1]]);
      this.size += sz;
    }
  }

  private evict(room: number): void {
    while (this.table.length > 0 && this.size + room > this.maxSize) {
      const old = this.table.pop();
      if (old) this.size -= old[0].length + old[1].length + 32;
    }
  }

  private int(block: Buffer, st: { pos: number }, prefix: number): number {
    const mask = (1 << prefix) - 1;
    let v = (block[st.pos++] ?? 0) & mask;
    if (v < mask) return v;
    let m = 1;
    for (;;) {
      if (st.pos >= block.length) throw new Error("truncated integer");
      const b = block[st.pos++] ?? 0;
      v += (b & 0x7f) * m;
      m *= 128;
      if (!(b & 0x80)) return v;
      if (m > 2 ** 28) throw new Error("integer too large");
    }
  }

  private str(block: Buffer, st: { pos: number }): string {
    const huff = ((block[st.pos] ?? 0) & 0x80) !== 0;
    const len = this.int(block, st, 7);
    if (st.pos + len > block.length) throw new Error("truncated string");
    const bytes = block.subarray(st.pos, st.pos + len);
    st.pos += len;
    return huff ? huffmanDecode(bytes) : bytes.toString("latin1");
  }
}
