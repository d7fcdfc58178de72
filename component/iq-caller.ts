/**
 * IQs cardlink sends (update deliveries, pings). Replies are matched on both `from` and `id` (an id alone can be
 * forged by any entity that guesses it), pending requests are bounded, and each one times out.
 */
import { randomUUID } from "node:crypto";
import { parseError } from "../stanzas/errors.js";
import type { Element } from "../stanzas/xml.js";

export class IqTimeoutError extends Error {
  constructor(to: string) {
    super(`no reply from ${to}`);
    this.name = "IqTimeoutError";
  }
}

export class IqErrorReply extends Error {
  constructor(
    readonly condition: string,
    readonly type: string,
    readonly reply: Element,
    text?: string,
  ) {
    super(text ? `${condition}: ${text}` : condition);
    this.name = "IqErrorReply";
  }
}

interface Pending {
  resolve: (el: Element) => void;
  reject: (e: Error) => void;
  timer: NodeJS.Timeout;
}

export class IqCaller {
  private readonly pending = new Map<string, Pending>();

  constructor(
    private readonly send: (el: Element) => Promise<boolean>,
    private readonly opts: { timeoutMs: number; maxPending: number },
  ) {}

  get inFlight(): number {
    return this.pending.size;
  }

  /** Sends an IQ get/set and resolves with the result stanza; rejects with IqErrorReply / IqTimeoutError. */
  async request(iq: Element, timeoutMs = this.opts.timeoutMs): Promise<Element> {
    if (this.pending.size >= this.opts.maxPending) throw new Error("too many IQs in flight");
    const id = iq.attrs.id ?? randomUUID();
    iq.attrs.id = id;
    const to = iq.attrs.to ?? "";
    const key = `${to}\u0000${id}`;
    const reply = new Promise<Element>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(key);
        reject(new IqTimeoutError(to));
      }, timeoutMs);
      this.pending.set(key, { resolve, reject, timer });
    });
    const sent = await this.send(iq);
    if (!sent) {
      this.settle(key)?.reject(new Error("not connected"));
    }
    return reply;
  }

  private settle(key: string): Pending | undefined {
    const p = this.pending.get(key);
    if (!p) return undefined;
    clearTimeout(p.timer);
    this.pending.delete(key);
    return p;
  }

  /** Feeds an IQ result/error; returns true when it answered one of ours. */
  handleReply(stanza: Element): boolean {
    const key = `${stanza.attrs.from ?? ""}\u0000${stanza.attrs.id ?? ""}`;
    const p = this.settle(key);
    if (!p) return false;
    if (stanza.attrs.type === "result") p.resolve(stanza);
    else {
      const e = parseError(stanza);
      p.reject(new IqErrorReply(e?.condition ?? "undefined-condition", e?.type ?? "cancel", stanza, e?.text));
    }
    return true;
  }

  /** Fails every pending request (link lost: replies can no longer arrive). */
  rejectAll(reason: string): void {
    for (const [key, p] of this.pending) {
      clearTimeout(p.timer);
      this.pending.delete(key);
      p.reject(new Error(reason));
    }
  }
}
