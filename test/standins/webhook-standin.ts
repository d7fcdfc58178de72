/**
 * A local webhook receiver: HTTPS on 127.0.0.1 with a certificate from a test CA made at start (openssl CLI), so
 * cardlink reaches it through the settings a deployment uses (url, caFile). It verifies every request the way a
 * Standard Webhooks receiver does — with its own HMAC code, not cardlink's — records it, and answers what the
 * test scripted: fail the next N requests with a status (and Retry-After), or answer one status always.
 */
import { createHmac, timingSafeEqual } from "node:crypto";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import https from "node:https";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { issueServerCert, makeTestCa, writeServerExt } from "./tls-fixtures.js";

export interface WebhookRequest {
  /** Date.now() when the body had arrived. */
  time: number;
  path: string;
  id: string;
  timestamp: string;
  signature: string;
  contentType: string;
  /** The raw body text. */
  raw: string;
  /** The parsed JSON body, or undefined when it was not JSON. */
  body: unknown;
  /** The signature verified against the secret with the request's id, timestamp and exact body bytes. */
  verified: boolean;
  status: number;
}

export interface Answer {
  status: number;
  /** The Retry-After header's value, as written (seconds, or an HTTP-date). */
  retryAfter?: string;
  /** Answer only after this many ms (a receiver slower than the sender's timeout). */
  hangMs?: number;
}

/** A secret in the `whsec_` form with 32 random-looking bytes (fixed: tests are reproducible). */
export const TEST_SECRET = `whsec_${Buffer.alloc(32, 7).toString("base64")}`;

export class WebhookStandin {
  readonly requests: WebhookRequest[] = [];
  private server: https.Server | undefined;
  private dir = "";
  private readonly script: Answer[] = [];
  private fallback: Answer = { status: 204 };
  caFile = "";
  port = 0;

  /** @param record keep every request (the benchmark turns it off and only counts). */
  constructor(
    private readonly secret: string = TEST_SECRET,
    private readonly record = true,
  ) {}
  received = 0;

  get url(): string {
    return `https://127.0.0.1:${this.port}/hooks`;
  }

  async start(): Promise<void> {
    this.dir = await mkdtemp(join(tmpdir(), "webhook-standin-"));
    await makeTestCa(this.dir, "cardlink test webhook CA");
    await writeServerExt(this.dir, ["DNS:localhost", "IP:127.0.0.1"]);
    await issueServerCert(this.dir, "127.0.0.1");
    this.caFile = join(this.dir, "ca.pem");
    const key = await readFile(join(this.dir, "server.key"));
    const cert = await readFile(join(this.dir, "server.pem"));
    this.server = https.createServer({ key, cert }, (req, res) => {
      const chunks: Buffer[] = [];
      req.on("data", (d: Buffer) => chunks.push(d));
      req.on("end", () => {
        this.received++;
        const raw = Buffer.concat(chunks).toString("utf8");
        const h = (n: string): string => String(req.headers[n] ?? "");
        const answer = this.script.shift() ?? this.fallback;
        if (this.record) {
          let body: unknown;
          try {
            body = JSON.parse(raw);
          } catch {
            body = undefined;
          }
          this.requests.push({
            time: Date.now(),
            path: req.url ?? "",
            id: h("webhook-id"),
            timestamp: h("webhook-timestamp"),
            signature: h("webhook-signature"),
            contentType: h("content-type"),
            raw,
            body,
            verified: this.verify(h("webhook-id"), h("webhook-timestamp"), raw, h("webhook-signature")),
            status: answer.status,
          });
        }
        const reply = (): void => {
          if (res.destroyed) return;
          res.writeHead(answer.status, answer.retryAfter ? { "retry-after": answer.retryAfter } : {});
          res.end(answer.status >= 400 ? `scripted ${answer.status}` : "");
        };
        if (answer.hangMs) setTimeout(reply, answer.hangMs).unref();
        else reply();
      });
    });
    await new Promise<void>((resolve) => this.server?.listen(0, "127.0.0.1", resolve));
    this.port = (this.server.address() as AddressInfo).port;
  }

  /** Standard Webhooks verification, written independently of cardlink's signature.ts. */
  verify(id: string, timestamp: string, raw: string, header: string): boolean {
    const key = Buffer.from(this.secret.replace(/^whsec_/, ""), "base64");
    const expected = createHmac("sha256", key).update(`${id}.${timestamp}.${raw}`).digest();
    return header.split(" ").some((part) => {
      const [version, b64] = part.split(",");
      if (version !== "v1" || !b64) return false;
      const got = Buffer.from(b64, "base64");
      return got.length === expected.length && timingSafeEqual(got, expected);
    });
  }

  /** The next `n` requests get `a`; then the script's later entries, then the fallback. */
  failNext(n: number, a: Answer): void {
    for (let i = 0; i < n; i++) this.script.push(a);
  }

  /** What every request gets once the script is used up. */
  always(a: Answer): void {
    this.fallback = a;
  }

  /** Resolves when `pred` holds over the recorded requests (polls; the caller's test timeout bounds it). */
  async waitFor(pred: (r: readonly WebhookRequest[]) => boolean, what: string, ms = 30_000): Promise<void> {
    const until = Date.now() + ms;
    while (!pred(this.requests)) {
      if (Date.now() > until) throw new Error(`webhook stand-in: timed out waiting for ${what}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  async stop(): Promise<void> {
    const s = this.server;
    this.server = undefined;
    if (s) {
      s.closeAllConnections();
      await new Promise<void>((resolve) => s.close(() => resolve()));
    }
    if (this.dir) await rm(this.dir, { recursive: true, force: true });
  }
}
