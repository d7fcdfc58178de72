/**
 * A local verification connector (docs/CONFIG.md `identity.verifierUrl`): the SMS/e-mail gateway cardlink POSTs
 * each verification code to, as a real HTTP server on 127.0.0.1. It checks the bearer token, records every message
 * and lets the test read the last code sent to an identifier — the test plays the person who received the SMS.
 * It can be told to fail (a gateway that is down), to check cardlink's answer when a code cannot be sent.
 */
import http from "node:http";
import type { AddressInfo } from "node:net";

export interface VerifierMessage {
  kind: string;
  to: string;
  code: string;
  purpose: string;
  expires: string;
  authorized: boolean;
}

export class VerifierStandin {
  readonly messages: VerifierMessage[] = [];
  private server: http.Server | undefined;
  private failing = 0;
  port = 0;

  constructor(readonly token = "verifier-test-token") {}

  get url(): string {
    return `http://127.0.0.1:${this.port}/codes`;
  }

  async start(): Promise<void> {
    this.server = http.createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on("data", (c: Buffer) => chunks.push(c));
      req.on("end", () => {
        if (this.failing > 0) {
          this.failing--;
          res.writeHead(503).end();
          return;
        }
        const authorized = req.headers.authorization === `Bearer ${this.token}`;
        try {
          const m = JSON.parse(Buffer.concat(chunks).toString("utf8")) as Omit<VerifierMessage, "authorized">;
          this.messages.push({ ...m, authorized });
          res.writeHead(authorized ? 202 : 401).end();
        } catch {
          res.writeHead(400).end();
        }
      });
    });
    await new Promise<void>((resolve) => this.server?.listen(0, "127.0.0.1", resolve));
    this.port = (this.server.address() as AddressInfo).port;
  }

  /** The next `n` POSTs are answered 503. */
  failNext(n: number): void {
    this.failing = n;
  }

  /** The last code sent to `to` (for `purpose`), as the person receiving it reads it. */
  codeFor(to: string, purpose = "add"): string {
    const m = [...this.messages].reverse().find((x) => x.to === to && x.purpose === purpose);
    if (!m) throw new Error(`verifier stand-in: no code was sent to ${to} (${purpose})`);
    return m.code;
  }

  async stop(): Promise<void> {
    await new Promise<void>((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
  }
}
