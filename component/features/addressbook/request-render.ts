/**
 * The update requests' stream kinds (PROTOCOL §20.13, §20.16), rendered at delivery from current state:
 *
 * | kind | coalesce | subject | wake | lane | content |
 * | --- | --- | --- | --- | --- | --- |
 * | `update-request` | keep | request id | yes | B | the request as B sees it now; moot once closed, hidden, expired or its entry gone |
 * | `update-result` | keep | request id | yes | A | answered / declined / expired (payload: ids only) |
 *
 * `keep`: one notice per request, never folded into another request's (DECISIONS.md, issue 9 requests).
 */
import { requestElement, resultElement, type RequestStatus } from "../../../stanzas/update-request.js";
import type { Element } from "../../../stanzas/xml.js";
import type { AccountId } from "../../../storage/store.js";
import type { PendingEntry, RenderContext, StreamKind } from "../../runtime/queue/api.js";
import { requestRepo } from "./request-repo.js";
import { KIND_REQUEST, KIND_RESULT, incomingView, type IncomingRequest } from "./request-service.js";

/** B's `<update-request/>` (notice and list line). */
export const incomingElement = (v: IncomingRequest): Element =>
  requestElement(
    { id: v.id, from: v.from, name: v.name, form: v.form, uri: v.uri, expires: v.expiresAt },
    ...(v.formElement ? [v.formElement] : []),
  );

const STATUSES: readonly string[] = ["answered", "declined", "expired"];

export function requestKinds(site: { readonly domain: string }): StreamKind[] {
  return [
    {
      name: KIND_REQUEST,
      coalesce: "keep",
      subject: "entity",
      wake: true,
      async render(r: RenderContext, e: PendingEntry): Promise<Element | null> {
        const req = await requestRepo(r.read).get(e.subject);
        if (!req) return null;
        const v = await incomingView(r, site.domain, req, e.lane, r.read.now);
        return v ? incomingElement(v) : null;
      },
    },
    {
      name: KIND_RESULT,
      coalesce: "keep",
      subject: "entity",
      wake: true,
      async render(r: RenderContext, e: PendingEntry): Promise<Element | null> {
        const p = e.payload;
        if (typeof p !== "object" || p === null || Array.isArray(p)) return null;
        const { id, entry, to, status } = p;
        if (typeof id !== "string" || typeof entry !== "string" || typeof to !== "number") return null;
        if (typeof status !== "string" || !STATUSES.includes(status)) return null;
        return resultElement({
          id,
          entry,
          to: await r.accounts.jidOf(to as AccountId),
          status: status as RequestStatus,
        });
      },
    },
  ];
}
