/**
 * One webhook POST (Standard Webhooks, https://www.standardwebhooks.com/): HTTPS only, the JSON body exactly as
 * queued, `webhook-id` (the job's uid: the receiver's idempotency key, the same on every retry and replay),
 * `webhook-timestamp` (this attempt's time, seconds) and `webhook-signature`. The answer is classified, never
 * retried here: the job loop (runtime/queue/jobs.ts) owns retries, backoff and dead letters.
 *
 *   2xx                     delivered
 *   408, 429, 5xx           retry, after Retry-After when the receiver sent one (seconds or an HTTP-date)
 *   other 3xx / 4xx         failed: permanent (a redirect is not followed: the configured URL is wrong)
 *   no answer, a timeout    retry
 */
import https from "node:https";
import tls from "node:tls";
import { signature } from "./signature.js";

/** A configured receiver, resolved once at start (secret decoded, CA file read). */
export interface Connector {
  readonly name: string;
  readonly url: URL;
  readonly key: Buffer;
  readonly timeoutMs: number;
  /** Extra CA certificates to trust (a private CA; the tests' stand-in), beside the system's. */
  readonly ca?: Buffer;
}

export type PostResult =
  | { status: "delivered"; http: number }
  | { status: "retry"; reason: string; http?: number; retryAfterMs?: number }
  | { status: "failed"; reason: string; http: number };

/** The longest Retry-After honoured: a receiver asking for more is retried after this (then backs off). */
export const MAX_RETRY_AFTER_MS = 24 * 3600_000;
/** Of an error answer's body, this much is kept as the reason (dead letters show it). */
const REASON_BYTES = 200;

/**
 * Retry-After (RFC 9110 §10.2.3): delay-seconds or an HTTP-date; undefined when absent or unreadable. A date in
 * the past is 0 (retry at the backoff's time). Capped at MAX_RETRY_AFTER_MS.
 */
export function parseRetryAfter(value: string | undefined, now: number): number | undefined {
  if (value === undefined) return undefined;
  const v = value.trim();
  let ms: number;
  if (/^\d+$/.test(v)) ms = Number(v) * 1000;
  else {
    const t = Date.parse(v);
    if (Number.isNaN(t)) return undefined;
    ms = Math.max(0, t - now);
  }
  return Math.min(ms, MAX_RETRY_AFTER_MS);
}

/** One connection pool per connector: kept alive between rounds (a TLS handshake per webhook would dominate). */
export class WebhookSender {
  private readonly agents = new Map<string, https.Agent>();

  constructor(
    private readonly maxSockets: number,
    private readonly clock: () => number = Date.now,
  ) {}

  private agent(c: Connector): https.Agent {
    let a = this.agents.get(c.name);
    if (!a) {
      // The extra CA goes in as one secure context built here, not as the `ca` option: https.Agent makes its
      // pool key from `ca` (every root certificate's PEM, ~200 KB, joined per request) and would build a new
      // context from it per connection — measured at ~1.8 ms of CPU per webhook (BENCHMARKS.md "linked").
      const secureContext = c.ca
        ? tls.createSecureContext({ ca: [...tls.rootCertificates, c.ca] })
        : undefined;
      a = new https.Agent({
        keepAlive: true,
        maxSockets: this.maxSockets,
        ...(secureContext ? { secureContext } : {}),
      });
      this.agents.set(c.name, a);
    }
    return a;
  }

  /** Posts `body` (the queued JSON text) to the connector, signed; resolves with the classified answer. */
  post(c: Connector, id: string, body: string): Promise<PostResult> {
    const timestampSec = Math.floor(this.clock() / 1000);
    const bytes = Buffer.from(body, "utf8");
    return new Promise<PostResult>((resolve) => {
      let settled = false;
      const done = (r: PostResult): void => {
        if (!settled) {
          settled = true;
          resolve(r);
        }
      };
      const req = https.request(
        c.url,
        {
          method: "POST",
          agent: this.agent(c),
          timeout: c.timeoutMs,
          headers: {
            "content-type": "application/json",
            "content-length": String(bytes.length),
            "user-agent": "cardlink-webhooks",
            "webhook-id": id,
            "webhook-timestamp": String(timestampSec),
            "webhook-signature": signature(c.key, id, timestampSec, body),
          },
        },
        (res) => {
          const http = res.statusCode ?? 0;
          const chunks: Buffer[] = [];
          let kept = 0;
          res.on("data", (d: Buffer) => {
            // Read everything (the socket goes back to the pool), keep the start for the reason.
            if (kept < REASON_BYTES) {
              chunks.push(d);
              kept += d.length;
            }
          });
          res.on("error", (e) => done({ status: "retry", reason: `response: ${e.message}`, http }));
          res.on("end", () => {
            const text = Buffer.concat(chunks).toString("utf8").slice(0, REASON_BYTES).replace(/\s+/g, " ");
            const reason = `HTTP ${http}${text ? `: ${text}` : ""}`;
            if (http >= 200 && http < 300) return done({ status: "delivered", http });
            if (http === 408 || http === 429 || http >= 500) {
              const after = parseRetryAfter(headerOf(res.headers["retry-after"]), this.clock());
              return done({
                status: "retry",
                reason,
                http,
                ...(after === undefined ? {} : { retryAfterMs: after }),
              });
            }
            done({ status: "failed", reason, http });
          });
        },
      );
      req.on("timeout", () => req.destroy(new Error(`no answer within ${c.timeoutMs} ms`)));
      req.on("error", (e) => done({ status: "retry", reason: e.message }));
      req.end(bytes);
    });
  }

  close(): void {
    for (const a of this.agents.values()) a.destroy();
    this.agents.clear();
  }
}

function headerOf(v: string | string[] | undefined): string | undefined {
  return Array.isArray(v) ? v[0] : v;
}
