/**
 * The XEP-0114 link to Prosody: connect, handshake, and come back by itself.
 *
 * Why not @xmpp/component's factory: its reconnect plugin retries every 1 s forever (a spin against `kick_new`
 * conflicts) and its IQ callee answers every IQ it has no handler for, which would race cardlink's router.
 * So cardlink uses @xmpp/component-core's Component (connection + handshake) and owns reconnect and routing.
 */
import { EventEmitter } from "node:events";
import type { Socket } from "node:net";
import { Component } from "@xmpp/component-core";
import type { Element } from "../../stanzas/xml.js";
import { backoffDelay } from "./backoff.js";
import type { Logger } from "./log.js";

export interface LinkOptions {
  service: string;
  domain: string;
  secret: string;
  initialDelayMs: number;
  maxDelayMs: number;
  rawStream: boolean;
  log: Logger;
  /** link.corkWrites: the stanzas written in one event-loop turn leave in one socket write (see send). */
  corkWrites?: boolean;
}

export type LinkStatus = "offline" | "connecting" | "online" | "stopping";

/** Events: "online" (after each successful handshake), "offline", "stanza" (Element). */
export class XmppLink extends EventEmitter {
  private entity: Component | null = null;
  private attempt = 0;
  private timer: NodeJS.Timeout | null = null;
  private stopping = false;
  status: LinkStatus = "offline";
  /** connects: handshakes that succeeded; drops: online streams that ended without stop(). */
  readonly counters = { connects: 0, failures: 0, conflicts: 0, drops: 0 };
  /**
   * TCP_NODELAY on the component socket. cardlink often writes two stanzas back to back (an IQ result, then the
   * update it caused); with Nagle's algorithm the second write waits for the peer's delayed ACK (~40 ms on
   * Linux). Always on in production; the latency benchmark turns it off to show the difference.
   */
  noDelay = true;
  /** link.corkWrites (the latency benchmark switches it per sample to compare). */
  corkWrites: boolean;
  /** The socket corked for the current event-loop turn (corkWrites), or null. */
  private corked: Socket | null = null;

  constructor(private readonly opts: LinkOptions) {
    super();
    this.corkWrites = opts.corkWrites ?? false;
  }

  /**
   * A burst (e.g. one <updates/> IQ to each of 256 holders after a card change) is written in one turn of the
   * event loop: with TCP_NODELAY each write is its own packet and Prosody's read of each its own wake-up. Corked,
   * the turn's writes leave together when the socket is uncorked after the turn (setImmediate runs after every
   * promise continuation of the turn), so Prosody reads them in a few large reads. A lone stanza waits for the end
   * of its turn only.
   */
  private corkTurn(socket: Socket | null | undefined): void {
    if (!socket || this.corked === socket) return;
    socket.cork();
    this.corked = socket;
    setImmediate(() => {
      if (this.corked === socket) this.corked = null;
      socket.uncork();
    });
  }

  start(): void {
    this.stopping = false;
    void this.connectOnce();
  }

  private async connectOnce(): Promise<void> {
    if (this.stopping) return;
    const { log } = this.opts;
    this.status = "connecting";
    const entity = new Component({ service: this.opts.service, domain: this.opts.domain });
    this.entity = entity;
    let conflict = false;
    let lastError: string | undefined;
    let streamError: { condition: string; text?: string } | undefined;
    entity.on("error", (err: Error & { condition?: string; text?: string }) => {
      if (err.condition === "conflict") conflict = true;
      lastError = err.condition ?? err.message;
      // A stream error once online is Prosody's verdict on something cardlink sent: kept for the diagnosis.
      if (err.condition && this.entity === entity && this.status === "online") {
        streamError = { condition: err.condition, ...(err.text ? { text: err.text } : {}) };
      }
    });
    if (this.opts.rawStream) {
      entity.on("input", (s: string) => log.trace({ in: s }, "raw"));
      entity.on("output", (s: string) => log.trace({ out: s }, "raw"));
    }
    entity.on("stanza", (el: Element) => this.emit("stanza", el));
    try {
      await entity.connect(this.opts.service);
      (entity.socket as Socket | null)?.setNoDelay(this.noDelay);
      const opened = entity.open({ domain: this.opts.domain });
      const header = await opened;
      await entity.authenticate(String(header.attrs.id ?? ""), this.opts.secret);
    } catch (e) {
      this.counters.failures++;
      if (conflict) this.counters.conflicts++;
      const reason = conflict ? "conflict" : (lastError ?? (e as Error).message);
      await this.teardown(entity);
      if (this.stopping) return;
      this.scheduleRetry(reason);
      return;
    }
    // Listen for the end only once online: failures before this point are handled above.
    entity.on("disconnect", () =>
      this.onDisconnect(entity, conflict ? "conflict" : (lastError ?? "closed"), streamError),
    );
    this.attempt = 0;
    this.counters.connects++;
    this.status = "online";
    log.info(
      { event: "connected", service: this.opts.service, domain: this.opts.domain },
      "component online",
    );
    this.emit("online");
  }

  private onDisconnect(
    entity: Component,
    reason: string,
    streamError: { condition: string; text?: string } | undefined,
  ): void {
    if (this.entity !== entity) return;
    this.entity = null;
    const wasOnline = this.status === "online";
    this.status = this.stopping ? "stopping" : "offline";
    if (wasOnline) {
      this.counters.drops++;
      if (streamError) {
        this.opts.log.error(
          { event: "stream-error", condition: streamError.condition, text: streamError.text },
          streamErrorMessage(streamError.condition, streamError.text),
        );
      }
      this.opts.log.warn(
        { event: "disconnected", reason, condition: streamError?.condition, text: streamError?.text },
        "component link lost",
      );
      this.emit("offline");
    }
    if (!this.stopping) this.scheduleRetry(reason, wasOnline ? "online" : "handshake");
  }

  private scheduleRetry(reason: string, phase: "handshake" | "online" = "handshake"): void {
    const delay = backoffDelay(this.attempt++, this.opts.initialDelayMs, this.opts.maxDelayMs);
    this.status = "offline";
    this.opts.log.warn(
      { event: "reconnect-scheduled", reason, phase, attempt: this.attempt, delayMs: delay },
      phase === "online" ? `link to Prosody lost (${reason}); reconnecting` : retryMessage(reason),
    );
    this.timer = setTimeout(() => {
      this.timer = null;
      void this.connectOnce();
    }, delay);
  }

  private async teardown(entity: Component): Promise<void> {
    entity.removeAllListeners("disconnect");
    try {
      if (entity.status !== "offline" && entity.status !== "disconnect") await entity.disconnect(1000);
    } catch {
      // already gone
    }
    if (this.entity === entity) this.entity = null;
  }

  /** Changes TCP_NODELAY, now (on the live socket) and for later connections. */
  setNoDelay(on: boolean): void {
    this.noDelay = on;
    (this.entity?.socket as Socket | null | undefined)?.setNoDelay(on);
  }

  get online(): boolean {
    return this.status === "online";
  }

  /**
   * Sends a stanza. Returns false when not online: callers own durability (the outbox), not this link.
   * `serialized` (el.toString(), already measured by the caller's size guard) is written as is, so a large
   * stanza is not serialized twice.
   */
  async send(el: Element, serialized?: string): Promise<boolean> {
    const entity = this.entity;
    if (!entity || this.status !== "online") return false;
    try {
      if (this.corkWrites) this.corkTurn(entity.socket as Socket | null);
      if (serialized === undefined) await entity.send(el);
      else {
        await entity.write(serialized);
        entity.emit("send", el);
      }
      return true;
    } catch (e) {
      this.opts.log.warn({ event: "send-failed", err: (e as Error).message }, "send failed");
      return false;
    }
  }

  async stop(): Promise<void> {
    this.stopping = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    const entity = this.entity;
    this.status = "stopping";
    if (entity) {
      entity.removeAllListeners("disconnect");
      try {
        await Promise.race([entity.stop(), new Promise((r) => setTimeout(r, 2000))]);
      } catch {
        // closing anyway
      }
    }
    this.entity = null;
    this.status = "offline";
  }
}

/**
 * What an operator should read when Prosody ends an online stream with a stream error. Prosody answers a stanza
 * over component_stanza_size_limit by closing the stream (with the condition logged here), which cuts off every
 * user: cardlink's own budget (link.stanzaLimitBytes) must not be above Prosody's limit.
 */
export function streamErrorMessage(condition: string, text?: string): string {
  const said = `Prosody closed the stream with <${condition}/>${text ? ` ("${text}")` : ""}`;
  if (
    condition === "not-well-formed" ||
    condition === "policy-violation" ||
    condition === "resource-constraint"
  ) {
    return `${said}: a stanza from cardlink may have exceeded component_stanza_size_limit (check that link.stanzaLimitBytes is not above it); reconnecting`;
  }
  if (condition === "conflict") return `${said}: another cardlink connected for this domain; reconnecting`;
  if (condition === "system-shutdown") return `${said}: Prosody is shutting down; reconnecting`;
  if (condition === "invalid-from" || condition === "improper-addressing")
    return `${said}: cardlink sent a stanza with an address Prosody refuses (a bug); reconnecting`;
  return `${said}; reconnecting`;
}

/** What an operator should read for each way a connection attempt (before online) ends. */
function retryMessage(reason: string): string {
  if (reason === "conflict") {
    return "Prosody refused the connection with <conflict/>: another cardlink holds this domain (component_conflict_resolve = kick_new); backing off";
  }
  if (reason === "not-authorized")
    return "Prosody refused the handshake: the secret does not match component_secret; backing off";
  if (
    reason === "host-unknown" ||
    reason === "improper-addressing" ||
    reason === "EPIPE" ||
    /EPIPE|ECONNRESET/.test(reason)
  ) {
    return `Prosody closed the stream (${reason}): is this domain declared as a Component with component_ports on this port? backing off`;
  }
  if (/ECONNREFUSED|ETIMEDOUT|EHOSTUNREACH/.test(reason))
    return `cannot reach Prosody's component port (${reason}); backing off`;
  return `connection to Prosody ended (${reason}); backing off`;
}

/** What `retryMessage` says about a failed attempt, without the retry part: for one-shot checks. */
export function describeLinkFailure(reason: string): string {
  return retryMessage(reason).replace(/;? backing off$/, "");
}

export type HandshakeProbe = { ok: true } | { ok: false; reason: string; message: string };

/**
 * One connection attempt, no retry: connect, open the stream, XEP-0114 handshake, close. Used by
 * `cardlink check-config` to find a wrong secret, an undeclared domain or an unreachable port before the service
 * starts (where XmppLink would only back off and log).
 */
export async function probeHandshake(o: {
  service: string;
  domain: string;
  secret: string;
  timeoutMs: number;
}): Promise<HandshakeProbe> {
  const entity = new Component({ service: o.service, domain: o.domain });
  let lastError: string | undefined;
  entity.on("error", (err: Error & { condition?: string }) => {
    lastError = err.condition ?? err.message;
  });
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer within ${o.timeoutMs} ms`)), o.timeoutMs);
  });
  try {
    await Promise.race([
      (async () => {
        await entity.connect(o.service);
        const header = await entity.open({ domain: o.domain });
        await entity.authenticate(String(header.attrs.id ?? ""), o.secret);
      })(),
      timeout,
    ]);
    return { ok: true };
  } catch (e) {
    const reason = lastError ?? (e as Error).message;
    return { ok: false, reason, message: describeLinkFailure(reason) };
  } finally {
    clearTimeout(timer);
    entity.removeAllListeners("disconnect");
    try {
      await Promise.race([entity.stop(), new Promise((r) => setTimeout(r, 1000))]);
    } catch {
      // closing anyway
    }
    (entity.socket as Socket | null)?.destroy();
  }
}
