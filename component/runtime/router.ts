/**
 * Dispatches inbound stanzas. IQ get/set go to the handler registered for (type, payload namespace, payload
 * name) — the xmpp.js callee rules, made stricter: exactly one payload child, the sender's domain on the
 * allow-list, a size limit, and every IQ answered (result or RFC 6120 error with <text/>), even when a handler
 * crashes. Messages and presence go to listeners. IQ results/errors go to the IqCaller.
 */
import { StanzaError, errorReply, quote } from "../../stanzas/errors.js";
import { StoreBusyError, StoreOutcomeUnknownError } from "../../storage/errors.js";
import { JidUnavailableError } from "./accounts/tx.js";
import { xml, childElements, nestedDeeperThan, type Element } from "../../stanzas/xml.js";
import { MAX_IQ_ID_BYTES } from "./budget.js";
import type { IqCaller } from "./iq-caller.js";
import { parseJid, type Jid } from "./jid.js";
import type { Logger } from "./log.js";
import type { Metrics } from "./metrics.js";

export interface IqContext {
  stanza: Element;
  payload: Element;
  /** The sender, already checked to be on the allow-list. */
  from: Jid;
  /** Sender's bare JID; a user JID unless the route allows server JIDs. */
  user: string;
}

export type IqHandler = (ctx: IqContext) => Promise<Element | undefined | void> | Element | undefined | void;
export type StanzaListener = (stanza: Element, from: Jid) => void | Promise<void>;

interface Route {
  handler: IqHandler;
  /** Accept IQs from a server JID (no localpart), e.g. Prosody publishing push notifications. */
  allowServer: boolean;
}

export interface RouterOptions {
  domain: string;
  allowedDomains: string[];
  maxStanzaBytes: number;
  /** Deepest nesting accepted (limits.maxDepth); checked before anything walks the stanza recursively. */
  maxDepth: number;
  log: Logger;
  metrics: Metrics;
  send: (el: Element) => Promise<boolean>;
  iqCaller: IqCaller;
}

export class Router {
  private readonly routes = new Map<string, Route>();
  private readonly namespaces = new Set<string>();
  private readonly messageListeners: StanzaListener[] = [];
  private readonly presenceListeners: StanzaListener[] = [];
  private readonly requestListeners: Array<(from: Jid) => void> = [];
  private readonly unmatchedListeners: StanzaListener[] = [];
  private readonly inFlight = new Set<Promise<void>>();
  private accepting = true;

  constructor(private readonly opts: RouterOptions) {}

  /** Registers an IQ handler. `name` "*" matches any payload element in the namespace. */
  iq(
    type: "get" | "set",
    ns: string,
    name: string,
    handler: IqHandler,
    o: { allowServer?: boolean } = {},
  ): void {
    const k = `${type} ${ns} ${name}`;
    if (this.routes.has(k)) throw new Error(`route ${k} registered twice`);
    this.routes.set(k, { handler, allowServer: o.allowServer ?? false });
    this.namespaces.add(ns);
  }

  onMessage(l: StanzaListener): void {
    this.messageListeners.push(l);
  }

  onPresence(l: StanzaListener): void {
    this.presenceListeners.push(l);
  }

  /** Called for every routed IQ get/set, before its handler. */
  onRequest(l: (from: Jid) => void): void {
    this.requestListeners.push(l);
  }

  /**
   * Called for an IQ result/error addressed to cardlink that no request of this process was waiting for: with
   * several processes (issue 13) it may answer a delivery another process sent (runtime/wake.ts applies it).
   */
  onUnmatchedReply(l: StanzaListener): void {
    this.unmatchedListeners.push(l);
  }

  /** Namespaces with at least one route: what disco#info advertises. */
  features(): string[] {
    return [...this.namespaces];
  }

  /** Stops taking new IQs (they get wait/service-unavailable) and waits for handlers in flight. */
  async drain(timeoutMs: number): Promise<void> {
    this.accepting = false;
    const all = Promise.allSettled([...this.inFlight]);
    await Promise.race([all, new Promise((r) => setTimeout(r, timeoutMs))]);
  }

  handle(stanza: Element): void {
    const task = this.dispatch(stanza).catch((e: unknown) => {
      this.opts.log.error({ event: "dispatch-failed", err: (e as Error).message }, "stanza dispatch failed");
    });
    this.inFlight.add(task);
    void task.finally(() => this.inFlight.delete(task));
  }

  private async dispatch(stanza: Element): Promise<void> {
    const { log, metrics } = this.opts;
    const type = stanza.attrs.type;
    // First, before anything can walk the tree recursively (ltx's toString for the size check, the payload
    // parsers, getText): a few thousand levels overflow the stack and the request would go unanswered.
    if (nestedDeeperThan(stanza, this.opts.maxDepth)) {
      metrics.inc("cardlink_stanzas_rejected_total", { reason: "depth" });
      log.info(
        { event: "too-deep", from: stanza.attrs.from, kind: stanza.name },
        "stanza nested too deep refused",
      );
      // Replies and presence are never answered with an error (RFC 6120 §8.3.1); a too-deep reply is dropped.
      if (type === "error" || type === "result" || stanza.name === "presence") return;
      if (!parseJid(stanza.attrs.from ?? "")) return;
      return this.reply(
        stanza,
        new StanzaError("bad-request", `XML nested deeper than ${this.opts.maxDepth} levels`),
      );
    }
    const to = stanza.attrs.to === undefined ? undefined : parseJid(stanza.attrs.to);
    // RFC 6120 §10.5.3: cardlink is only its domain. anything@cards.<domain> and cards.<domain>/resource do not
    // exist (cardlink never sends from them, so no reply of ours can be addressed there).
    const toMe =
      stanza.attrs.to === undefined ||
      (to !== undefined && !to.local && !to.resource && to.domain === this.opts.domain);
    if (stanza.name === "iq" && (type === "result" || type === "error")) {
      if (toMe && this.opts.iqCaller.handleReply(stanza)) return;
      metrics.inc("cardlink_iq_unmatched_replies_total");
      const from = parseJid(stanza.attrs.from ?? "");
      if (!toMe || !from) return;
      for (const l of this.unmatchedListeners) {
        try {
          await l(stanza, from);
        } catch (e) {
          log.warn(
            { event: "unmatched-reply-failed", from: from.full, err: (e as Error).message },
            "handling a reply to another process's request failed",
          );
        }
      }
      return;
    }
    if (type === "error") return; // never answer an error with an error (RFC 6120 §8.3.1)
    const from = parseJid(stanza.attrs.from ?? "");
    if (!from) {
      // Prosody always stamps a valid from; a stanza without one cannot be answered.
      log.warn({ event: "bad-from", from: stanza.attrs.from }, "stanza without a valid from dropped");
      return;
    }
    if (!this.opts.allowedDomains.includes(from.domain)) {
      metrics.inc("cardlink_stanzas_rejected_total", { reason: "domain" });
      log.info(
        { event: "forbidden-domain", from: from.full, kind: stanza.name },
        "stanza from a domain not allowed",
      );
      if (stanza.name !== "presence") {
        await this.reply(
          stanza,
          new StanzaError("forbidden", `cardlink serves only ${this.opts.allowedDomains.join(", ")}`),
        );
      }
      return;
    }
    if (!toMe) {
      metrics.inc("cardlink_stanzas_rejected_total", { reason: "no-such-entity" });
      // §10.5.3.1/.2: an IQ or message to a nonexistent entity gets service-unavailable; presence is ignored.
      if (stanza.name === "presence") return;
      return this.reply(
        stanza,
        new StanzaError(
          "service-unavailable",
          `'${quote(stanza.attrs.to)}' does not exist; cardlink is ${this.opts.domain}`,
        ),
      );
    }
    if (stanza.name === "iq") return this.dispatchIq(stanza, from);
    const listeners = stanza.name === "message" ? this.messageListeners : this.presenceListeners;
    for (const l of listeners) {
      try {
        await l(stanza, from);
      } catch (e) {
        log.error(
          { event: "listener-failed", kind: stanza.name, err: (e as Error).message },
          "listener failed",
        );
      }
    }
  }

  private async dispatchIq(stanza: Element, from: Jid): Promise<void> {
    const { log, metrics } = this.opts;
    const type = stanza.attrs.type;
    if (type !== "get" && type !== "set") {
      return this.reply(
        stanza,
        new StanzaError("bad-request", `iq type must be get, set, result or error, not '${quote(type)}'`),
      );
    }
    const children = childElements(stanza).filter((c) => c.name !== "error");
    if (children.length !== 1) {
      return this.reply(
        stanza,
        new StanzaError(
          "bad-request",
          `an iq ${type} must carry exactly one payload element, not ${children.length}`,
        ),
      );
    }
    const payload = children[0] as Element;
    const ns = payload.getNS() ?? "";
    const route = this.routes.get(`${type} ${ns} ${payload.name}`) ?? this.routes.get(`${type} ${ns} *`);
    const label = { ns, name: payload.name, type };
    if (!route) {
      // Labels from unrouted requests are client-chosen: fold them so nobody can grow the metrics without bound.
      metrics.inc("cardlink_iq_total", {
        ns: this.namespaces.has(ns) ? ns : "other",
        name: "other",
        type,
        outcome: "unrouted",
      });
      const err = this.namespaces.has(ns)
        ? new StanzaError(
            "feature-not-implemented",
            `cardlink does not implement <${quote(payload.name)}/> ${type} in ${quote(ns)}`,
          )
        : new StanzaError("service-unavailable", `cardlink does not serve the namespace '${quote(ns)}'`);
      return this.reply(stanza, err);
    }
    if (!this.accepting) {
      return this.reply(
        stanza,
        new StanzaError("service-unavailable", "cardlink is shutting down; retry shortly", { type: "wait" }),
      );
    }
    if (!from.local && !route.allowServer) {
      return this.reply(stanza, new StanzaError("forbidden", "this request must come from a user account"));
    }
    const size = Buffer.byteLength(stanza.toString());
    if (size > this.opts.maxStanzaBytes) {
      metrics.inc("cardlink_iq_total", { ...label, outcome: "too-large" });
      return this.reply(
        stanza,
        new StanzaError(
          "policy-violation",
          `request is ${size} bytes; the limit is ${this.opts.maxStanzaBytes}`,
        ),
      );
    }
    // The result echoes the id: the outgoing budget's envelope reserve is sized for ids up to this length.
    const idBytes = Buffer.byteLength(stanza.attrs.id ?? "");
    if (idBytes > MAX_IQ_ID_BYTES) {
      metrics.inc("cardlink_iq_total", { ...label, outcome: "bad-request" });
      return this.reply(
        stanza,
        new StanzaError("bad-request", `iq id is ${idBytes} bytes; at most ${MAX_IQ_ID_BYTES} are accepted`),
      );
    }
    for (const l of this.requestListeners) l(from);
    // Handling time per route, until the answer is handed to the link (errors included: `finally`).
    const done = metrics.timer("cardlink_iq_duration_seconds", label);
    try {
      const result = await route.handler({ stanza, payload, from, user: from.bare });
      metrics.inc("cardlink_iq_total", { ...label, outcome: "result" });
      await this.opts.send(
        xml(
          "iq",
          { type: "result", id: stanza.attrs.id, to: stanza.attrs.from, from: stanza.attrs.to },
          result ?? null,
        ),
      );
    } catch (thrown) {
      // A JID held after a move (issue 12, PROTOCOL §23.4) cannot get an account until its hold ends: refused.
      const e =
        thrown instanceof JidUnavailableError
          ? new StanzaError("forbidden", `${thrown.jid} moved to another JID and cannot be used here for now`)
          : thrown;
      if (e instanceof StanzaError) {
        metrics.inc("cardlink_iq_total", { ...label, outcome: e.condition });
        log.info(
          {
            event: "iq-error",
            from: from.full,
            ns,
            name: payload.name,
            condition: e.condition,
            text: e.message,
          },
          "request refused",
        );
        return await this.reply(stanza, e);
      }
      metrics.inc("cardlink_iq_total", { ...label, outcome: "internal-server-error" });
      if (e instanceof StoreBusyError) {
        // Transient and already retried by the store: nothing was written, the client may retry (§14.1).
        log.warn({ event: "store-busy", ns, name: payload.name, err: e.message }, "storage busy");
        return await this.reply(
          stanza,
          new StanzaError("internal-server-error", "storage is busy; retry shortly", { type: "wait" }),
        );
      }
      if (e instanceof StoreOutcomeUnknownError) {
        // The connection died with COMMIT sent (PostgreSQL restarting): applied or not, a retry is safe (§14.1).
        log.warn(
          { event: "store-outcome-unknown", ns, name: payload.name, err: e.message },
          "commit outcome unknown",
        );
        return await this.reply(
          stanza,
          new StanzaError(
            "internal-server-error",
            "the database connection failed while committing; the request may have been applied: retry it",
            { type: "wait" },
          ),
        );
      }
      log.error(
        {
          event: "handler-crashed",
          ns,
          name: payload.name,
          err: (e as Error).message,
          stack: (e as Error).stack,
        },
        "handler crashed",
      );
      return await this.reply(
        stanza,
        new StanzaError("internal-server-error", "cardlink failed to process this request; it was logged"),
      );
    } finally {
      done();
    }
  }

  private async reply(stanza: Element, err: StanzaError): Promise<void> {
    // Every error reply, including those refused before routing (type, payload count, domain, shutdown).
    this.opts.metrics.inc("cardlink_stanza_errors_total", { condition: err.condition });
    await this.opts.send(errorReply(stanza, err));
  }
}
