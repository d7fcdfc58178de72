/** Real XMPP clients (@xmpp/client, ESM 0.14) for tests, with a few helpers for talking to cardlink. */
import { client, xml, type Client } from "@xmpp/client";
import type { Element } from "@xmpp/xml";
import { waitFor } from "./ports.js";

export { xml };
export type { Element };

export interface TestClient {
  xmpp: Client;
  jid: string;
  /** Every stanza received, in order. */
  received: Element[];
  /** Sends an IQ to `to` and returns the result stanza (rejects with the error stanza's condition). */
  iq(type: "get" | "set", to: string, payload: Element): Promise<Element>;
  /** Sends an IQ and returns the raw reply, result or error (for error-case tests). */
  iqRaw(type: "get" | "set", to: string, payload: Element | Element[] | null, id?: string): Promise<Element>;
  waitForStanza(pred: (el: Element) => boolean, what: string, timeoutMs?: number): Promise<Element>;
  stop(): Promise<void>;
}

export async function connectClient(opts: {
  port: number;
  domain: string;
  username: string;
  password: string;
  resource?: string;
  /** Called for IQ set/get from others; return the result payload, or throw to answer an error. */
  onIq?: (stanza: Element) => Element | undefined | Promise<Element | undefined>;
  sendPresence?: boolean;
  /**
   * Negotiate XEP-0198 stream management (default false). @xmpp/client 0.14 miscounts inbound stanzas around
   * <enabled/> (it resets its counter in a continuation that can run before or after stanzas from the same
   * read are counted); Prosody then closes the stream with "Client acknowledged more (or less) stanzas than
   * sent by server". How often depends on how Prosody's writes are split into reads, so test clients leave it
   * off unless a test needs it. Prosody still offers it (real clients use it).
   */
  streamManagement?: boolean;
}): Promise<TestClient> {
  const xmpp = client({
    service: `xmpp://127.0.0.1:${opts.port}`,
    domain: opts.domain,
    // xmpp.js will not pick PLAIN on an unencrypted stream by itself; loopback test servers offer only PLAIN
    // (SCRAM costs ~0.6 s of CPU per login), so the mechanism is chosen here explicitly.
    credentials: (authenticate, mechanisms) =>
      authenticate(
        { username: opts.username, password: opts.password },
        mechanisms.includes("PLAIN") ? "PLAIN" : (mechanisms[0] as string),
      ),
    resource: opts.resource ?? "test",
  });
  xmpp.reconnect.stop();
  // @xmpp/connection 0.14 drops its parser when the stream closes but keeps the socket's data listener until the
  // socket closes: bytes the server sent just before its </stream:stream> (an update to 1,000 holders being
  // stopped at once) then hit `this.parser.write` on null, an uncaught TypeError in a socket callback that mocha
  // pins on whatever hook runs next. Data after the stream closed means nothing to a stopped client: ignore it.
  // (Socket listeners are bound when the socket is attached, so overriding the instance's method here is enough.)
  const conn = xmpp as unknown as { _onData(data: Buffer): void; parser: unknown };
  const onData = conn._onData.bind(xmpp);
  conn._onData = (data: Buffer) => {
    if (conn.parser) onData(data);
  };
  if (!opts.streamManagement) {
    // Runs before xmpp.js's middleware (registered when the client was built): the offer is gone by then.
    xmpp.prependListener("element", (el: Element) => {
      if (el.is("features", "http://etherx.jabber.org/streams")) {
        const sm = el.getChild("sm", "urn:xmpp:sm:3");
        if (sm) el.children = el.children.filter((c) => c !== sm);
      }
    });
  }
  const received: Element[] = [];
  let counter = 0;
  const pending = new Map<string, (el: Element) => void>();
  xmpp.on("error", () => {
    // connection errors surface through start() or the tests' own waits
  });
  xmpp.on("stanza", (el: Element) => {
    received.push(el);
    const id = el.attrs.id as string | undefined;
    if (el.is("iq") && (el.attrs.type === "result" || el.attrs.type === "error") && id && pending.has(id)) {
      const fn = pending.get(id) as (e: Element) => void;
      pending.delete(id);
      fn(el);
    }
  });
  if (opts.onIq) {
    const handler = opts.onIq;
    // xmpp.js's IQ callee answers service-unavailable when no route returns a reply; this middleware sits behind
    // it and returns the reply (an element, `true` for an empty result, or an <error/> element).
    xmpp.middleware.use(async (ctx: { stanza: Element }, next: () => Promise<unknown>) => {
      const el = ctx.stanza;
      if (!el.is("iq") || (el.attrs.type !== "set" && el.attrs.type !== "get")) return next();
      try {
        return (await handler(el)) ?? true;
      } catch (e) {
        return xml(
          "error",
          { type: "cancel" },
          xml(String((e as Error).message || "undefined-condition"), {
            xmlns: "urn:ietf:params:xml:ns:xmpp-stanzas",
          }),
        );
      }
    });
  }
  const jid = await xmpp.start();
  if (opts.sendPresence !== false) await xmpp.send(xml("presence"));
  const iqRaw = (
    type: "get" | "set",
    to: string,
    payload: Element | Element[] | null,
    id?: string,
  ): Promise<Element> => {
    const myId = id ?? `t${++counter}-${Math.random().toString(36).slice(2, 8)}`;
    const p = new Promise<Element>((resolve, reject) => {
      const timer = setTimeout(() => {
        pending.delete(myId);
        reject(new Error(`no reply to iq ${myId}`));
      }, 20_000);
      pending.set(myId, (el) => {
        clearTimeout(timer);
        resolve(el);
      });
    });
    const children = payload === null ? [] : Array.isArray(payload) ? payload : [payload];
    void xmpp.send(xml("iq", { type, to, id: myId }, ...children));
    return p;
  };
  return {
    xmpp,
    jid: jid.toString(),
    received,
    iqRaw,
    async iq(type, to, payload) {
      const r = await iqRaw(type, to, payload);
      if (r.attrs.type === "error") {
        const e = r.getChild("error");
        const cond = e?.children.find((c) => typeof c !== "string" && c.name !== "text") as
          Element | undefined;
        throw Object.assign(new Error(`${cond?.name ?? "error"}: ${e?.getChildText("text") ?? ""}`), {
          stanza: r,
        });
      }
      return r;
    },
    async waitForStanza(pred, what, timeoutMs = 15_000) {
      let found: Element | undefined;
      await waitFor(
        () => {
          found = received.find(pred);
          return found !== undefined;
        },
        what,
        timeoutMs,
      );
      return found as Element;
    },
    async stop() {
      try {
        await xmpp.stop();
      } catch {
        // already closed
      }
    },
  };
}

/** Reads an error reply: condition, type, text. */
export function errorOf(reply: Element): { condition: string; type: string; text: string } {
  const e = reply.getChild("error");
  const cond = e?.children.find((c) => typeof c !== "string" && c.name !== "text") as Element | undefined;
  return {
    condition: cond?.name ?? "",
    type: String(e?.attrs.type ?? ""),
    text: e?.getChildText("text") ?? "",
  };
}
