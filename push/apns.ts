/**
 * APNs sender on @parse/node-apn (HTTP/2 provider API). It classifies provider answers into PushOutcomes and
 * never retries by itself: node-apn's retry is switched off and cardlink's dispatcher owns retries.
 */
import {
  MultiProvider,
  Notification,
  type MultiProviderOptions,
  type ResponseFailure,
} from "@parse/node-apn";
import type {
  ClientHttp2Session,
  ClientHttp2Stream,
  IncomingHttpHeaders,
  OutgoingHttpHeaders,
} from "node:http2";
import type { PushNotice, PushOutcome, PushSender } from "./types.js";

export interface ApnsConfig {
  /** Token auth (preferred): key is a path to the .p8 file or its PEM text. */
  token?: { key: string; keyId: string; teamId: string };
  /** Certificate auth: client certificate and key (paths or PEM text), used only when `token` is absent. */
  cert?: string;
  key?: string;
  passphrase?: string;
  /** Picks api.push.apple.com (true) or api.sandbox.push.apple.com (false) unless `address` is set. */
  production: boolean;
  /** Host to connect to (also the TLS server name); overrides the production/sandbox choice. */
  address?: string;
  port?: number;
  /** Extra trusted CA (path or PEM text), e.g. a test stand-in's CA. */
  ca?: string;
  /** HTTP/2 sessions to open (default 2). */
  connections?: number;
  /** Per-request deadline, in ms (default 10000). */
  requestTimeoutMs?: number;
  /** apns-topic (bundle id) for notices without a topic. */
  defaultTopic?: string;
}

/** The apns-* headers of one request, as sent. */
export interface ApnsHeaders {
  "apns-push-type": "alert" | "background";
  "apns-priority": 10 | 5;
  "apns-expiration": number;
  "apns-topic"?: string;
  "apns-collapse-id"?: string;
  "apns-id"?: string;
}

export type ApnsRequest =
  | { ok: true; headers: ApnsHeaders; payload: Record<string, unknown>; body: string }
  | { ok: false; outcome: PushOutcome };

const MAX_PAYLOAD_BYTES = 4096;
const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const HEX_RE = /^[0-9a-f]+$/i;
const INVALID_TOKEN_REASONS = new Set(["Unregistered", "BadDeviceToken", "DeviceTokenNotForTopic"]);

type ApnsPlan =
  { ok: true; headers: ApnsHeaders; payload: Record<string, unknown> } | { ok: false; outcome: PushOutcome };

/**
 * Maps a notice to the APNs request (headers + JSON payload). Problems APNs would reject anyway (oversized
 * payload, long collapse id, malformed token, no topic under token auth) are answered here without a round trip,
 * with the reason APNs would give.
 */
export function buildApnsRequest(
  notice: PushNotice,
  defaultTopic: string | undefined,
  requireTopic = true,
): ApnsRequest {
  const plan = planApnsRequest(notice, defaultTopic, requireTopic);
  if (!plan.ok) return plan;
  const body = JSON.stringify(plan.payload);
  if (Buffer.byteLength(body) > MAX_PAYLOAD_BYTES) {
    return { ok: false, outcome: { status: "failed", reason: "PayloadTooLarge" } };
  }
  return { ...plan, body };
}

/** Everything but the payload size check, which needs the encoded body. */
function planApnsRequest(
  notice: PushNotice,
  defaultTopic: string | undefined,
  requireTopic: boolean,
): ApnsPlan {
  if (notice.platform !== "ios") {
    return { ok: false, outcome: { status: "failed", reason: `platform ${notice.platform} sent to APNs` } };
  }
  if (notice.token === "" || !HEX_RE.test(notice.token)) {
    return { ok: false, outcome: { status: "invalid-token", reason: "BadDeviceToken" } };
  }
  const topic = notice.topic ?? defaultTopic;
  if (requireTopic && (topic === undefined || topic === "")) {
    return { ok: false, outcome: { status: "failed", reason: "MissingTopic" } };
  }
  if (notice.collapseId !== undefined && Buffer.byteLength(notice.collapseId) > 64) {
    return { ok: false, outcome: { status: "failed", reason: "BadCollapseId" } };
  }

  let aps: Record<string, unknown>;
  if (notice.kind === "alert") {
    const a = notice.alert;
    if (!a) return { ok: false, outcome: { status: "failed", reason: "alert notice without alert text" } };
    const alert: Record<string, unknown> = {};
    if (a.title !== undefined) alert.title = a.title;
    if (a.locKey !== undefined) {
      alert["loc-key"] = a.locKey;
      if (a.locArgs !== undefined) alert["loc-args"] = a.locArgs;
    } else {
      alert.body = a.body;
    }
    aps = { alert };
  } else {
    // A background push must carry nothing the system would display.
    aps = { "content-available": 1 };
  }
  const payload: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(notice.data)) {
    // "aps" belongs to Apple; app data must not shadow it.
    if (k !== "aps") payload[k] = v;
  }
  payload.aps = aps;

  const headers: ApnsHeaders = {
    "apns-push-type": notice.kind,
    "apns-priority": notice.kind === "alert" ? 10 : 5,
    // 0 = deliver now or never; a past or invalid time means the same.
    "apns-expiration":
      Number.isFinite(notice.expiresAt) && notice.expiresAt > 0 ? Math.floor(notice.expiresAt) : 0,
  };
  if (topic !== undefined && topic !== "") headers["apns-topic"] = topic;
  if (notice.collapseId !== undefined && notice.collapseId !== "")
    headers["apns-collapse-id"] = notice.collapseId;
  if (UUID_RE.test(notice.id)) headers["apns-id"] = notice.id.toLowerCase();
  return { ok: true, headers, payload };
}

/** Retry-After is seconds or an HTTP date. */
export function parseRetryAfter(value: string | undefined, now = Date.now()): number | undefined {
  if (value === undefined) return undefined;
  const v = value.trim();
  if (/^\d+$/.test(v)) return Number(v) * 1000;
  const at = Date.parse(v);
  return Number.isNaN(at) ? undefined : Math.max(0, at - now);
}

/** node-apn's failure objects also carry the response's apns-id (lib/client.js createHeaderObject). */
type Failure = ResponseFailure & { "apns-id"?: string };

function statusOf(f: Failure): number | undefined {
  if (typeof f.status === "number") return f.status;
  // An error answer without a body loses its status field; node-apn keeps it only in the message.
  const m = /with status (\d{3})/.exec(f.error?.message ?? "");
  return m?.[1] ? Number(m[1]) : undefined;
}

function reasonOf(f: Failure, status: number | undefined): string {
  if (f.response?.reason) return f.response.reason;
  const msg = f.error?.message ?? "";
  // node-apn replaces a 500's body with its own message; the reason APNs sent is always this one.
  if (status === 500 && msg.startsWith("Error 500")) return "InternalServerError";
  if (status === 403 && msg === "ExpiredProviderToken") return msg;
  if (status !== undefined) return `HTTP ${status}`;
  if (msg === "apn write timeout") return "timeout";
  if (/client (is destroyed|session is either closed or destroyed)/.test(msg)) return "closed";
  return msg === "" ? "connection error" : `connection: ${msg}`;
}

export function classifyFailure(f: Failure, retryAfterMs?: number): PushOutcome {
  const status = statusOf(f);
  const reason = reasonOf(f, status);
  if (status === 410 || INVALID_TOKEN_REASONS.has(reason)) return { status: "invalid-token", reason };
  if (status === undefined || status === 408 || status === 429 || status >= 500) {
    return retryAfterMs === undefined
      ? { status: "retry", reason }
      : { status: "retry", reason, retryAfterMs };
  }
  // node-apn has already minted a fresh JWT by the time this comes back, so a resend can succeed.
  if (status === 403 && reason === "ExpiredProviderToken") return { status: "retry", reason };
  if (status >= 400) return { status: "failed", reason };
  return { status: "retry", reason: `unexpected HTTP ${status}` };
}

/** The parts of node-apn 8.1's internal Client (lib/client.js) this file touches. */
interface InternalClient {
  session?: ClientHttp2Session;
}

function isObject(v: unknown): v is object {
  return typeof v === "object" && v !== null;
}

/** node-apn's Client objects behind a (Multi)Provider; empty if the internals changed. */
function internalClients(provider: MultiProvider): InternalClient[] {
  const client: unknown = (provider as { client?: unknown }).client;
  if (!isObject(client)) return [];
  const clients: unknown = (client as { clients?: unknown }).clients;
  if (Array.isArray(clients)) return clients.filter(isObject) as InternalClient[];
  return [client as InternalClient];
}

export class ApnsSender implements PushSender {
  readonly platform = "ios" as const;
  private readonly provider: MultiProvider;
  private readonly timeoutMs: number;
  private readonly defaultTopic: string | undefined;
  private readonly tokenAuth: boolean;
  private closed = false;
  /** Live HTTP/2 sessions, so close() can destroy one that never drains. */
  private readonly sessions = new Set<ClientHttp2Session>();
  /** Retry-After values seen on error answers, keyed by response apns-id (or device token). */
  private readonly retryAfter = new Map<string, number>();
  private probing = false;

  constructor(config: ApnsConfig) {
    if (!config.token && !config.cert) throw new Error("ApnsConfig needs token (preferred) or cert + key");
    this.timeoutMs = config.requestTimeoutMs ?? 10_000;
    this.defaultTopic = config.defaultTopic;
    this.tokenAuth = config.token !== undefined;
    const opts: MultiProviderOptions = {
      production: config.production,
      // node-apn's retry reads "Retry-After" where HTTP/2 delivers "retry-after" and so re-sends a 429 at once.
      connectionRetryLimit: 0,
      requestTimeout: this.timeoutMs,
      clientCount: config.connections ?? 2,
    };
    // node-apn warns about keys that are present but undefined, so only set what is configured.
    if (config.address !== undefined) opts.address = config.address;
    if (config.port !== undefined) opts.port = config.port;
    if (config.ca !== undefined) opts.ca = [config.ca];
    if (config.token) {
      opts.token = { key: config.token.key, keyId: config.token.keyId, teamId: config.token.teamId };
    } else {
      opts.cert = config.cert;
      if (config.key !== undefined) opts.key = config.key;
      if (config.passphrase !== undefined) opts.passphrase = config.passphrase;
    }
    this.provider = new MultiProvider(opts);
    for (const client of internalClients(this.provider)) this.watchSessions(client);
  }

  async send(notices: PushNotice[]): Promise<PushOutcome[]> {
    const results = new Array<PushOutcome | undefined>(notices.length);
    if (this.closed) return notices.map(() => ({ status: "retry", reason: "closed" }));
    return new Promise<PushOutcome[]>((resolve) => {
      let pending = 0;
      let done = false;
      // One deadline for the whole batch: every request is handed to HTTP/2 in this same tick. node-apn has its
      // own stream timeout, but one send was observed never to settle, so this one does not depend on it.
      const timer = setTimeout(() => {
        finish();
        this.probeSessions();
      }, this.timeoutMs);
      const finish = (): void => {
        done = true;
        clearTimeout(timer);
        // Array.from, not map: map skips the holes, which are exactly the unsettled notices.
        resolve(Array.from(results, (r) => r ?? { status: "retry", reason: "timeout" }));
      };
      for (let i = 0; i < notices.length; i++) {
        const notice = notices[i] as PushNotice;
        const req = planApnsRequest(notice, this.defaultTopic, this.tokenAuth);
        if (!req.ok) {
          results[i] = req.outcome;
          continue;
        }
        const n = new Notification();
        n.pushType = req.headers["apns-push-type"];
        n.priority = req.headers["apns-priority"];
        n.expiry = req.headers["apns-expiration"];
        if (req.headers["apns-topic"] !== undefined) n.topic = req.headers["apns-topic"];
        if (req.headers["apns-collapse-id"] !== undefined) n.collapseId = req.headers["apns-collapse-id"];
        if (req.headers["apns-id"] !== undefined) n.id = req.headers["apns-id"];
        n.rawPayload = req.payload;
        // compile() encodes the payload once and node-apn reuses that encoding for the request body. It is
        // public in node-apn's JS ("Compilation is final") but missing from its .d.ts, hence the cast.
        if (Buffer.byteLength((n as Notification & { compile(): string }).compile()) > MAX_PAYLOAD_BYTES) {
          results[i] = { status: "failed", reason: "PayloadTooLarge" };
          continue;
        }
        pending++;
        this.provider.send(n, notice.token).then(
          (r) => {
            if (done) return;
            const sent = r.sent[0] as { "apns-id"?: string } | undefined;
            const failed = r.failed[0] as Failure | undefined;
            if (failed) {
              results[i] = classifyFailure(failed, this.takeRetryAfter(failed, notice.token));
            } else {
              results[i] = sent?.["apns-id"]
                ? { status: "sent", providerId: sent["apns-id"] }
                : { status: "sent" };
            }
            if (--pending === 0) finish();
          },
          (err: unknown) => {
            if (done) return;
            results[i] = {
              status: "retry",
              reason: `node-apn: ${err instanceof Error ? err.message : String(err)}`,
            };
            if (--pending === 0) finish();
          },
        );
      }
      if (pending === 0) finish();
    });
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    // Shutdown waits for open streams to drain; a session that never answers must not hold close() forever.
    await new Promise<void>((resolve) => {
      const t = setTimeout(resolve, this.timeoutMs + 1000);
      void this.provider.shutdown(() => {
        clearTimeout(t);
        resolve();
      });
    });
    for (const s of this.sessions) s.destroy();
    this.sessions.clear();
  }

  private takeRetryAfter(f: Failure, token: string): number | undefined {
    for (const key of [f["apns-id"], `/3/device/${token}`]) {
      if (key === undefined) continue;
      const ms = this.retryAfter.get(key);
      if (ms !== undefined) {
        this.retryAfter.delete(key);
        return ms;
      }
    }
    return undefined;
  }

  /**
   * node-apn drops response headers other than apns-id (and reads Retry-After under the wrong case), so
   * Retry-After cannot come from its failure object. Instead, each HTTP/2 session it creates is wrapped to note
   * Retry-After from error answers. This relies on node-apn 8.1 assigning `client.session`; if a later version
   * changes that, nothing breaks: retryAfterMs is just left undefined and close() falls back to its timeout.
   */
  private watchSessions(client: InternalClient): void {
    let current: ClientHttp2Session | undefined = client.session;
    Object.defineProperty(client, "session", {
      configurable: true,
      enumerable: true,
      // A destroyed session reads as absent: node-apn then reconnects as it would anyway, and its shutdown
      // does not wait forever on session.close(), which never calls back on an already destroyed session.
      get: () => (current?.destroyed ? undefined : current),
      set: (s: ClientHttp2Session | undefined) => {
        current = s;
        if (s && !this.sessions.has(s)) this.instrument(s);
      },
    });
  }

  private instrument(session: ClientHttp2Session): void {
    this.sessions.add(session);
    session.once("close", () => this.sessions.delete(session));
    const original = session.request;
    const onResponse = (h: IncomingHttpHeaders, path: unknown): void => {
      const ms = parseRetryAfter(typeof h["retry-after"] === "string" ? h["retry-after"] : undefined);
      if (ms === undefined) return;
      // Bounded: entries whose failure was never classified (batch timed out first) must not pile up.
      if (this.retryAfter.size > 10_000) this.retryAfter.clear();
      const id = h["apns-id"];
      this.retryAfter.set(typeof id === "string" ? id : String(path), ms);
    };
    session.request = function (this: ClientHttp2Session, headers?: OutgoingHttpHeaders, options?) {
      const stream: ClientHttp2Stream = original.call(this, headers, options);
      // "on", not "once": a stream has one response, and once() allocates a wrapper per stream.
      stream.on("response", (h) => onResponse(h, headers?.[":path"]));
      return stream;
    };
  }

  /**
   * After a timeout, find sessions that are dead rather than slow: one that does not answer a PING within the
   * request timeout is destroyed, so node-apn opens a new one for the next send.
   */
  private probeSessions(): void {
    if (this.probing || this.closed) return;
    this.probing = true;
    const checks = [...this.sessions].map(
      (s) =>
        new Promise<void>((resolve) => {
          if (s.destroyed || s.closed) return resolve();
          const t = setTimeout(() => {
            s.destroy(new Error("APNs session did not answer PING"));
            resolve();
          }, this.timeoutMs);
          const ok = s.ping((err) => {
            clearTimeout(t);
            if (err && !s.destroyed) s.destroy(err);
            resolve();
          });
          if (!ok) {
            clearTimeout(t);
            resolve();
          }
        }),
    );
    void Promise.all(checks).then(() => {
      this.probing = false;
    });
  }
}
