/**
 * IQs cardlink sends (update deliveries, pings). Replies are matched on both `from` and `id` (an id alone can be
 * forged by any entity that guesses it), pending requests are bounded, and each one times out.
 */
import { randomUUID } from "node:crypto";
import { parseError } from "../../stanzas/errors.js";
import type { Element } from "../../stanzas/xml.js";

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

/** Thrown when the global cap or the recipient's share of pending IQs is used up; the caller retries later. */
export class IqBusyError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "IqBusyError";
  }
}

/**
 * The same IQ (id) was sent to the same full JID again before the first got its reply: the replies of the two
 * cannot be told apart, so the newer request takes the reply and the older one ends with this error.
 */
export class IqSupersededError extends Error {
  constructor(to: string) {
    super(`sent to ${to} again with the same id`);
    this.name = "IqSupersededError";
  }
}

/** The bare JID an IQ goes to: one user's resources share one budget. */
function bareOf(to: string): string {
  const slash = to.indexOf("/");
  return (slash >= 0 ? to.slice(0, slash) : to).toLowerCase();
}

interface Pending {
  bare: string;
  resolve: (el: Element) => void;
  reject: (e: Error) => void;
  timer: NodeJS.Timeout;
}

export class IqCaller {
  private readonly pending = new Map<string, Pending>();
  /** Pending IQs per recipient bare JID: one recipient that never answers cannot hold the global pool. */
  private readonly perRecipient = new Map<string, number>();

  constructor(
    private readonly send: (el: Element) => Promise<boolean>,
    private readonly opts: { timeoutMs: number; maxPending: number; maxPendingPerRecipient: number },
  ) {}

  /** IQs pending for one recipient (bare JID). */
  pendingFor(bare: string): number {
    return this.perRecipient.get(bare.toLowerCase()) ?? 0;
  }

  get inFlight(): number {
    return this.pending.size;
  }

  /** Sends an IQ get/set and resolves with the result stanza; rejects with IqErrorReply / IqTimeoutError. */
  async request(iq: Element, timeoutMs = this.opts.timeoutMs): Promise<Element> {
    const to = iq.attrs.to ?? "";
    // Stream delivery re-offers a page under its id to a client that reconnected under the same resource. The
    // older request must end here and give its place back: overwriting its entry leaked one place of the
    // recipient's share per re-offer (after limits.pendingIqsPerUser of them every delivery to that user was
    // refused as busy) and left the older promise unsettled.
    if (iq.attrs.id !== undefined)
      this.settle(`${to}\u0000${iq.attrs.id}`)?.reject(new IqSupersededError(to));
    if (this.pending.size >= this.opts.maxPending) throw new IqBusyError("too many IQs in flight");
    const bare = bareOf(to);
    const mine = this.perRecipient.get(bare) ?? 0;
    if (mine >= this.opts.maxPendingPerRecipient) {
      throw new IqBusyError(`too many IQs in flight to ${bare}`);
    }
    const id = iq.attrs.id ?? randomUUID();
    iq.attrs.id = id;
    const key = `${to}\u0000${id}`;
    this.perRecipient.set(bare, mine + 1);
    const reply = new Promise<Element>((resolve, reject) => {
      const timer = setTimeout(() => {
        if (this.settle(key)) reject(new IqTimeoutError(to));
      }, timeoutMs);
      this.pending.set(key, { bare, resolve, reject, timer });
    });
    // The timer can fire while the write below still waits for the socket (a deep send queue to a busy server):
    // until the caller holds `reply`, its rejection is handled here, or it would be an unhandled rejection and
    // end the process. The caller still gets the rejection.
    reply.catch(() => undefined);
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
    this.release(p.bare);
    return p;
  }

  private release(bare: string): void {
    const n = (this.perRecipient.get(bare) ?? 1) - 1;
    if (n <= 0) this.perRecipient.delete(bare);
    else this.perRecipient.set(bare, n);
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
    this.perRecipient.clear();
  }
}
