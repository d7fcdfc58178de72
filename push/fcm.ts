/**
 * FCM sender on firebase-admin (HTTP v1, `sendEach()` over HTTP/2).
 *
 * A sender classifies, it does not retry (push/types.ts). One caveat the library imposes: its HTTP/2 client
 * retries a 503 (and ECONNRESET/ETIMEDOUT) by itself, up to 4 times with 0/1/2/4 s back-off, or after the
 * server's Retry-After when that is ≤ 60 s. Nothing in its public API turns that off, so a 503 can hold a batch
 * for seconds; the per-batch timeout bounds it.
 */
import { randomUUID } from "node:crypto";
import { cert, deleteApp, initializeApp, type App } from "firebase-admin/app";
import {
  getMessaging,
  type BatchResponse,
  type Message,
  type Messaging,
  type SendResponse,
} from "firebase-admin/messaging";
import type { PushNotice, PushOutcome, PushSender } from "./types.js";

export interface FcmConfig {
  /** Path to the Google service-account JSON key file. */
  serviceAccount: string;
  /** Firebase project id; defaults to `project_id` of the service account. */
  projectId?: string;
  /** Messages per `sendEach()` call: 1..500 (FCM's limit), default 500. */
  batchSize?: number;
  /** `sendEach()` calls in flight at once, default 4. Each call is its own HTTP/2 connection. */
  parallelBatches?: number;
  /** Deadline for one `sendEach()` call, ms (default 30000); on expiry its notices come back `retry` "timeout". */
  requestTimeoutMs?: number;
  /**
   * Background notices are always data-only (no `notification` block): Android then hands them to the app
   * instead of drawing anything. The key only exists so a config file can state it; `false` is not allowed.
   */
  dataOnlyForBackground?: true;
}

const FCM_MAX_BATCH = 500;
const DEFAULT_TIMEOUT_MS = 30_000;
/** How long to wait for per-message results after the HTTP/2 session of a batch failed. */
const SESSION_ERROR_GRACE_MS = 2_000;

/** The library's error codes (`<service>/<code>`) that mean: this token is dead, forget it. */
const INVALID_TOKEN_CODES = new Set([
  "messaging/registration-token-not-registered",
  "messaging/invalid-registration-token",
]);

/**
 * Transient codes. firebase-admin 13.x maps FCM QUOTA_EXCEEDED / RESOURCE_EXHAUSTED (HTTP 429) to
 * `messaging/message-rate-exceeded` and UNAVAILABLE (503) to `messaging/server-unavailable`;
 * `messaging/quota-exceeded` and `messaging/unavailable` do not exist in 13.x but are kept in case a later
 * version names them so. `messaging/unknown-error` is what the library reports for a non-JSON answer with an
 * unexpected status (a 502/504 from a front end) and for FCM's UNSPECIFIED_ERROR: treated as transient because
 * the dispatcher bounds retries, whereas dropping a notice on a proxy hiccup loses it for good.
 */
const RETRY_CODES = new Set([
  "messaging/message-rate-exceeded",
  "messaging/device-message-rate-exceeded",
  "messaging/topics-message-rate-exceeded",
  "messaging/quota-exceeded",
  "messaging/server-unavailable",
  "messaging/unavailable",
  "messaging/internal-error",
  "messaging/unknown-error",
  "app/network-error",
  "app/network-timeout",
]);

/** OAuth2 error codes (RFC 6749 §5.2) that a token-endpoint failure message carries when the key itself is bad. */
const PERMANENT_OAUTH =
  /\b(invalid_grant|invalid_client|unauthorized_client|unsupported_grant_type|invalid_scope)\b/;

let appSeq = 0;

function errorCode(err: unknown): string {
  if (err !== null && typeof err === "object" && "code" in err && typeof err.code === "string")
    return err.code;
  return "";
}

function errorMessage(err: unknown): string {
  const raw = err instanceof Error ? err.message : String(err);
  // The library's messages can run to paragraphs; the reason is for logs, keep it readable.
  return raw.length > 300 ? `${raw.slice(0, 300)}…` : raw;
}

/** Maps a library error (per message or for the whole call) to an outcome. Exported for the dispatcher's tests. */
export function classifyFcmError(err: unknown): PushOutcome {
  // A session failure arrives as a FirebaseMessagingSessionError wrapping an app error: "messaging/app/...".
  const code = errorCode(err).replace(/^messaging\/(?=app\/)/, "");
  const reason = code ? `${code}: ${errorMessage(err)}` : errorMessage(err);
  if (INVALID_TOKEN_CODES.has(code)) return { status: "invalid-token", reason };
  if (RETRY_CODES.has(code)) return { status: "retry", reason };
  if (code === "app/invalid-credential") {
    // The OAuth token request failed: a bad or revoked key is permanent, a network failure is not.
    return PERMANENT_OAUTH.test(errorMessage(err))
      ? { status: "failed", reason }
      : { status: "retry", reason };
  }
  if (code === "") {
    // Not a Firebase error at all (e.g. a socket error surfacing raw): transport trouble.
    return { status: "retry", reason };
  }
  // invalid-argument, invalid-payload, mismatched-credential, third-party-auth-error, authentication-error,
  // invalid-package-name, payload-size-limit-exceeded, ...: retrying the same message cannot help.
  return { status: "failed", reason };
}

/** The FCM HTTP v1 message for one notice (firebase-admin's camelCase form). */
export function fcmMessage(notice: PushNotice, nowMs: number): Message {
  const ttl = Math.max(0, Math.round(notice.expiresAt * 1000 - nowMs));
  // `id` last so a notice's data cannot shadow the queue id the app acknowledges with.
  const data = { ...notice.data, id: notice.id };
  const collapse = notice.collapseId !== undefined ? { collapseKey: notice.collapseId } : {};
  if (notice.kind === "alert" && notice.alert) {
    const a = notice.alert;
    const androidNotification = {
      ...(notice.collapseId !== undefined ? { tag: notice.collapseId } : {}),
      ...(a.locKey !== undefined ? { bodyLocKey: a.locKey } : {}),
      ...(a.locArgs !== undefined ? { bodyLocArgs: a.locArgs } : {}),
    };
    return {
      token: notice.token,
      notification: { ...(a.title !== undefined ? { title: a.title } : {}), body: a.body },
      data,
      android: { priority: "high", ttl, ...collapse, notification: androidNotification },
    };
  }
  // Background, and an alert without text: data-only, so the app (not the system tray) decides what to show.
  // An alert keeps high priority so it is not held back by Doze.
  return {
    token: notice.token,
    data,
    android: { priority: notice.kind === "alert" ? "high" : "normal", ttl, ...collapse },
  };
}

type BatchResult =
  { kind: "done"; batch: BatchResponse } | { kind: "timeout" } | { kind: "error"; error: unknown };

export class FcmSender implements PushSender {
  readonly platform = "android" as const;
  private readonly app: App;
  private readonly messaging: Messaging;
  private readonly batchSize: number;
  private readonly parallelBatches: number;
  private readonly timeoutMs: number;
  /** sendEach() calls still running (including ones whose batch already timed out). */
  private readonly inFlight = new Set<Promise<unknown>>();
  private closed = false;

  constructor(config: FcmConfig) {
    const batchSize = config.batchSize ?? FCM_MAX_BATCH;
    if (!Number.isInteger(batchSize) || batchSize < 1 || batchSize > FCM_MAX_BATCH) {
      throw new RangeError(`FcmConfig.batchSize must be an integer in 1..${FCM_MAX_BATCH}`);
    }
    const parallel = config.parallelBatches ?? 4;
    if (!Number.isInteger(parallel) || parallel < 1)
      throw new RangeError("FcmConfig.parallelBatches must be ≥ 1");
    const timeout = config.requestTimeoutMs ?? DEFAULT_TIMEOUT_MS;
    if (!(timeout > 0)) throw new RangeError("FcmConfig.requestTimeoutMs must be > 0");
    if (config.dataOnlyForBackground !== undefined && config.dataOnlyForBackground !== true) {
      throw new RangeError("FcmConfig.dataOnlyForBackground can only be true");
    }
    this.batchSize = batchSize;
    this.parallelBatches = parallel;
    this.timeoutMs = timeout;
    // A named app per sender: the default app is a process-wide singleton and would clash with other senders.
    const name = `cardlink-fcm-${++appSeq}-${randomUUID().slice(0, 8)}`;
    this.app = initializeApp(
      {
        credential: cert(config.serviceAccount),
        ...(config.projectId !== undefined ? { projectId: config.projectId } : {}),
      },
      name,
    );
    this.messaging = getMessaging(this.app);
  }

  async send(notices: PushNotice[]): Promise<PushOutcome[]> {
    const outcomes = new Array<PushOutcome>(notices.length);
    if (this.closed) {
      outcomes.fill({ status: "retry", reason: "FCM sender closed" });
      return outcomes;
    }
    let next = 0;
    const worker = async (): Promise<void> => {
      while (next < notices.length) {
        const start = next;
        next += this.batchSize;
        const slice = notices.slice(start, start + this.batchSize);
        const results = await this.sendBatch(slice);
        for (let i = 0; i < results.length; i++) outcomes[start + i] = results[i] as PushOutcome;
      }
    };
    const workers = Math.min(this.parallelBatches, Math.ceil(notices.length / this.batchSize));
    await Promise.all(Array.from({ length: workers }, worker));
    return outcomes;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    // Let running calls settle (each is bounded by the library's own 15 s request timeout and retries), but do
    // not hold shutdown longer than one batch deadline.
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      Promise.allSettled([...this.inFlight]),
      new Promise<void>((resolve) => {
        timer = setTimeout(resolve, this.timeoutMs);
      }),
    ]);
    clearTimeout(timer);
    await deleteApp(this.app);
  }

  private async sendBatch(notices: PushNotice[]): Promise<PushOutcome[]> {
    const outcomes = new Array<PushOutcome>(notices.length);
    const messages: Message[] = [];
    const slots: number[] = [];
    const now = Date.now();
    notices.forEach((n, i) => {
      if (n.platform !== "android") {
        outcomes[i] = { status: "failed", reason: `FCM sender got a ${n.platform} notice` };
        return;
      }
      messages.push(fcmMessage(n, now));
      slots.push(i);
    });
    if (messages.length === 0) return outcomes;

    const result = await this.callWithDeadline(messages);
    if (result.kind === "done") {
      slots.forEach((slot, j) => {
        outcomes[slot] = this.mapResponse(result.batch.responses[j]);
      });
    } else {
      const whole: PushOutcome =
        result.kind === "timeout" ? { status: "retry", reason: "timeout" } : classifyFcmError(result.error);
      for (const slot of slots) outcomes[slot] = whole;
    }
    return outcomes;
  }

  private mapResponse(r: SendResponse | undefined): PushOutcome {
    if (!r) return { status: "retry", reason: "FCM returned no response for this message" };
    if (r.success) {
      return { status: "sent", ...(r.messageId !== undefined ? { providerId: r.messageId } : {}) };
    }
    return classifyFcmError(r.error);
  }

  private async callWithDeadline(messages: Message[]): Promise<BatchResult> {
    const call: Promise<BatchResult> = Promise.resolve()
      .then(() => this.messaging.sendEach(messages))
      .then(
        (batch): BatchResult => ({ kind: "done", batch }),
        async (error: unknown): Promise<BatchResult> => {
          // A failed HTTP/2 session (GOAWAY, socket error) rejects the call with a FirebaseMessagingSessionError
          // (not exported by the library) whose pendingBatchResponse resolves with every message's own result
          // once all of them settle. Observed with 13.10: a stream the server cancels (RST_STREAM CANCEL, which
          // is what a dropped connection does to open streams) never settles, so neither does that promise.
          // Wait briefly for it, then report the session error for the whole batch.
          const pending =
            error !== null && typeof error === "object" && "pendingBatchResponse" in error
              ? (error.pendingBatchResponse as Promise<BatchResponse> | undefined)
              : undefined;
          if (pending) {
            let grace: NodeJS.Timeout | undefined;
            const batch = await Promise.race([
              pending.catch(() => undefined),
              new Promise<undefined>((resolve) => {
                grace = setTimeout(
                  () => resolve(undefined),
                  Math.min(SESSION_ERROR_GRACE_MS, this.timeoutMs),
                );
              }),
            ]);
            clearTimeout(grace);
            if (batch) return { kind: "done", batch };
          }
          return { kind: "error", error };
        },
      );
    this.inFlight.add(call);
    void call.finally(() => this.inFlight.delete(call));
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<BatchResult>((resolve) => {
      timer = setTimeout(() => resolve({ kind: "timeout" }), this.timeoutMs);
    });
    try {
      return await Promise.race([call, deadline]);
    } finally {
      clearTimeout(timer);
    }
  }
}
