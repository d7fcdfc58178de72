/**
 * The `moved` stream kind (PROTOCOL §23.5): told to every holder and co-member of an account whose JID moved, and
 * to the account's own lane. It carries XEP-0283 0.2's `<moved xmlns='urn:xmpp:moved:1'/>` with the old and the
 * new JID. The payload holds the two JIDs as they were at the move: the old one is no longer any account's
 * current JID, so it cannot be rendered from an account id at delivery.
 *
 * | kind | coalesce | subject | wake | content |
 * | --- | --- | --- | --- | --- |
 * | `moved` | replace | move id (one entry per move) | yes | `<moved><old-jid/><new-jid/></moved>` |
 */
import { movedElement } from "../../../stanzas/identity.js";
import type { Element } from "../../../stanzas/xml.js";
import type { PendingEntry, RenderContext, StreamKind } from "../../runtime/queue/api.js";

export const KIND_MOVED = "moved";

export type MovedBody = { old: string; new: string };

const isMoved = (p: unknown): p is MovedBody =>
  typeof p === "object" &&
  p !== null &&
  typeof (p as MovedBody).old === "string" &&
  typeof (p as MovedBody).new === "string";

function renderMoved(_r: RenderContext, e: PendingEntry): Promise<Element | null> {
  return Promise.resolve(isMoved(e.payload) ? movedElement(e.payload.old, e.payload.new) : null);
}

export const MOVED_KIND: StreamKind = {
  name: KIND_MOVED,
  coalesce: "replace",
  subject: "entity",
  wake: true,
  render: renderMoved,
};
