/** Helpers for the oversized-stanza tests: full-size cards and a recorder of every stanza cardlink writes. */
import { randomBytes } from "node:crypto";
import type { Cardlink } from "../../component/runtime/app.js";
import { NS } from "../../stanzas/ns.js";
import { xml, type Element } from "./clients.js";

/**
 * A card near the default limits: a ~63 KiB inline photo (card.maxPhotoBytes is 64 KiB) and 19 long URLs, about
 * 86 KiB as vCard4 (card.maxBytes is 96 KiB). Seven of them are more than Prosody's 512 KiB stanza limit.
 */
export function bigVcard(fn: string): Element {
  const photo = `data:image/jpeg;base64,${randomBytes(47_000).toString("base64")}`;
  const urls = Array.from({ length: 19 }, (_, i) =>
    xml("url", {}, xml("uri", {}, `https://example.org/${i}/${"p".repeat(990)}`)),
  );
  return xml(
    "vcard",
    { xmlns: NS.VCARD4 },
    xml("fn", {}, xml("text", {}, fn)),
    xml("photo", {}, xml("uri", {}, photo)),
    xml("note", {}, xml("text", {}, "n".repeat(1000))),
    ...urls,
  );
}

export interface SentStanza {
  name: string;
  type: string;
  payload: string;
  bytes: number;
  el: Element;
}

/** Records every stanza written to the link (after the send path's guard), with its size on the wire. */
export function recordSent(app: Cardlink): { sent: SentStanza[]; stop(): void } {
  const link = app.link;
  const original = link.send.bind(link);
  const sent: SentStanza[] = [];
  link.send = async (el: Element, serialized?: string): Promise<boolean> => {
    sent.push({
      name: el.name,
      type: String(el.attrs.type ?? ""),
      payload: el.getChildElements()[0]?.name ?? "",
      bytes: Buffer.byteLength(serialized ?? el.toString()),
      el,
    });
    return original(el, serialized);
  };
  return { sent, stop: () => (link.send = original) };
}
