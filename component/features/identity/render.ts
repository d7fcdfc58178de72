/**
 * The `moved` stream kind (PROTOCOL §23.5): told to every holder and co-member of an account whose JID moved, and
 * to the account's own lane. It carries XEP-0283 0.2's `<moved xmlns='urn:xmpp:moved:1'/>` with the old and the
 * new JID. The payload holds the two JIDs as they were at the move: the old one is no longer any account's
 * current JID, so it cannot be rendered from an account id at delivery.
 *
 * | kind | coalesce | subject | wake | content |
 * | --- | --- | --- | --- | --- |
 * | `moved` | replace | move id (one entry per move) | yes | `<moved><old-jid/><new-jid/></moved>` |
 * | `service-updated` | replace | registration id | no | the registered service with its provider call's result |
 */
import { movedElement, serviceElement } from "../../../stanzas/identity.js";
import type { Element } from "../../../stanzas/xml.js";
import type { PendingEntry, RenderContext, StreamKind } from "../../runtime/queue/api.js";
import { identityRepo } from "./repo.js";

export const KIND_MOVED = "moved";
export const KIND_SERVICE = "service-updated";

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

/** The item as it stands (its result may have changed again since the entry): moot once deleted. */
async function renderService(r: RenderContext, e: PendingEntry): Promise<Element | null> {
  const s = await identityRepo(r.read).service(e.lane, e.subject);
  if (!s) return null;
  return serviceElement({
    ...s,
    ...(s.mode ? { mode: s.mode } : {}),
  });
}

export const SERVICE_KIND: StreamKind = {
  name: KIND_SERVICE,
  coalesce: "replace",
  subject: "entity",
  wake: false,
  render: renderService,
};
