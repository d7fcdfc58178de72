/** A test client that speaks cardlink's protocol: acks updates (recording them) and wraps the IQs. */
import { NS } from "../../stanzas/ns.js";
import { connectClient, xml, type Element, type TestClient } from "./clients.js";
import type { XmppServer } from "./server.js";
import { waitFor } from "./ports.js";

export interface ReceivedUpdate {
  id: string;
  kind: string;
  seq: number;
  content: Element;
  to: string;
  /** When it arrived (and was acknowledged, unless acks were off: then it is not recorded). */
  at: number;
}

export interface CardClient extends TestClient {
  updates: ReceivedUpdate[];
  comp: string;
  /**
   * Stop acking (updates then time out at cardlink and are retried): "ignore" drops what arrives unseen,
   * "hold" records it but never answers (a client that received an update and died before its ack).
   */
  setAck(mode: "ack" | "ignore" | "hold"): void;
  waitForUpdate(
    pred: (u: ReceivedUpdate) => boolean,
    what: string,
    timeoutMs?: number,
  ): Promise<ReceivedUpdate>;
  setCard(fn: string, extra?: Element[]): Promise<Element>;
  cardlink(
    type: "get" | "set",
    name: string,
    attrs?: Record<string, string>,
    ...children: Element[]
  ): Promise<Element>;
  cardlinkRaw(
    type: "get" | "set",
    name: string,
    attrs?: Record<string, string>,
    ...children: Element[]
  ): Promise<Element>;
}

export function vcard(fn: string, ...extra: Element[]): Element {
  return xml("vcard", { xmlns: NS.VCARD4 }, xml("fn", {}, xml("text", {}, fn)), ...extra);
}

export function tel(uri: string, ...types: string[]): Element {
  return xml(
    "tel",
    {},
    types.length ? xml("parameters", {}, xml("type", {}, ...types.map((t) => xml("text", {}, t)))) : null,
    xml("uri", {}, uri),
  );
}

export function email(value: string, ...types: string[]): Element {
  return xml(
    "email",
    {},
    types.length ? xml("parameters", {}, xml("type", {}, ...types.map((t) => xml("text", {}, t)))) : null,
    xml("text", {}, value),
  );
}

export async function cardClient(
  prosody: XmppServer,
  username: string,
  opts: { resource?: string; presence?: boolean; domain?: string } = {},
): Promise<CardClient> {
  const updates: ReceivedUpdate[] = [];
  let mode: "ack" | "ignore" | "hold" = "ack";
  const comp = prosody.componentDomain;
  const base = await connectClient({
    port: prosody.c2sPort,
    domain: opts.domain ?? prosody.host,
    username,
    password: `${username}pw`,
    resource: opts.resource ?? "phone",
    sendPresence: false,
    onIq: (iq) => {
      const u = iq.getChild("updates", NS.CARDLINK);
      if (!u) throw new Error("service-unavailable");
      if (mode === "ignore") return new Promise<undefined>(() => undefined);
      for (const up of u.getChildren("update")) {
        updates.push({
          id: String(up.attrs.id),
          kind: String(up.attrs.kind),
          seq: Number(up.attrs.seq),
          content: up.children.find((c) => typeof c !== "string") as Element,
          to: String(iq.attrs.to),
          at: Date.now(),
        });
      }
      if (mode === "hold") return new Promise<undefined>(() => undefined);
      return undefined;
    },
  });
  // Directed presence to cardlink: the component learns this resource is online (and offline, when it leaves).
  if (opts.presence !== false) await base.xmpp.send(xml("presence", { to: comp }));
  const cardlinkRaw = (
    type: "get" | "set",
    name: string,
    attrs: Record<string, string> = {},
    ...children: Element[]
  ) => base.iqRaw(type, comp, xml(name, { xmlns: NS.CARDLINK, ...attrs }, ...children));
  const cardlink = (
    type: "get" | "set",
    name: string,
    attrs: Record<string, string> = {},
    ...children: Element[]
  ) => base.iq(type, comp, xml(name, { xmlns: NS.CARDLINK, ...attrs }, ...children));
  return {
    ...base,
    updates,
    comp,
    setAck(m) {
      mode = m;
    },
    async waitForUpdate(pred, what, timeoutMs = 15_000) {
      let found: ReceivedUpdate | undefined;
      await waitFor(() => (found = updates.find(pred)) !== undefined, what, timeoutMs);
      return found as ReceivedUpdate;
    },
    setCard: (fn, extra = []) => cardlink("set", "card", {}, vcard(fn, ...extra)),
    cardlink,
    cardlinkRaw,
  };
}

/** Card content of a card update: fn text and tel uris (what most assertions need). */
export function cardSummary(cardEl: Element): {
  owner: string;
  version: number;
  fn: string;
  tels: string[];
  emails: string[];
} {
  const v = cardEl.getChild("vcard", NS.VCARD4);
  return {
    owner: String(cardEl.attrs.owner),
    version: Number(cardEl.attrs.version),
    fn: v?.getChild("fn")?.getChildText("text") ?? "",
    tels: (v?.getChildren("tel") ?? []).map((t) => t.getChildText("uri") ?? t.getChildText("text") ?? ""),
    emails: (v?.getChildren("email") ?? []).map((t) => t.getChildText("text") ?? ""),
  };
}
