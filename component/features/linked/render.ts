/**
 * What the linked-accounts feature puts on the wire (PROTOCOL.md §22): the `<links/>` view and its three stream
 * kinds, rendered at delivery from current state (docs/REDESIGN.md §2.3.2):
 *
 * | kind | coalesce | subject | wake | content |
 * | --- | --- | --- | --- | --- |
 * | `link-request` | replace | request id | yes | a request to link the lane's account; moot once answered, withdrawn or expired |
 * | `links` | replace | `links` | no | the lane's set as it is now (empty: the lane is in no set any more) |
 * | `linked-profile` | replace | the setting | no | the set's current value of the setting, for the lane's clients to apply; moot once unlinked or no longer synced |
 */
import {
  accountAttrs,
  profileElement,
  settingsText,
  type AccountRef,
  type Setting,
} from "../../../stanzas/linked.js";
import { NS } from "../../../stanzas/ns.js";
import { xml, type Element } from "../../../stanzas/xml.js";
import type { PendingEntry, RenderContext, StreamKind } from "../../runtime/queue/api.js";
import { linkedRepo } from "./repo.js";
import { currentValue, linksView, type LinksView } from "./service.js";

export const KIND_REQUEST = "link-request";
export const KIND_LINKS = "links";
export const KIND_PROFILE = "linked-profile";

const iso = (t: number): string => new Date(t).toISOString();

/** `<links/>`: the IQ result of `<links/>` and the `links` update. */
export function linksElement(v: LinksView): Element {
  return xml(
    "links",
    { xmlns: NS.LINKED },
    ...v.members.map((m) =>
      xml("account", {
        ...accountAttrs(m.ref),
        settings: settingsText(m.settings),
        ...(m.self ? { self: "true" } : {}),
      }),
    ),
    ...v.pending.map((p) =>
      xml("pending", {
        ...accountAttrs(p.ref),
        direction: p.direction,
        settings: settingsText(p.settings),
        expires: iso(p.expiresAt),
      }),
    ),
  );
}

async function renderRequest(r: RenderContext, e: PendingEntry): Promise<Element | null> {
  const p = (await linkedRepo(r.read).pendingOf(e.lane, r.read.now)).find((x) => x.id === e.subject);
  if (!p || p.to !== e.lane) return null;
  return xml("link-request", {
    xmlns: NS.LINKED,
    jid: await r.accounts.jidOf(p.from),
    settings: settingsText(p.settings),
    expires: iso(p.expiresAt),
  });
}

async function renderLinks(r: RenderContext, e: PendingEntry): Promise<Element | null> {
  return linksElement(await linksView(r.read, r.accounts, e.lane));
}

const isFrom = (p: unknown): p is { from: { jid?: string; service?: string; account?: string } } =>
  typeof p === "object" && p !== null && typeof (p as { from?: unknown }).from === "object";

async function renderProfile(r: RenderContext, e: PendingEntry): Promise<Element | null> {
  const repo = linkedRepo(r.read);
  const m = await repo.memberOfAccount(e.lane);
  const s = e.subject as Setting;
  if (!m || !m.settings.includes(s) || !isFrom(e.payload)) return null;
  const set = await repo.set(m.setId);
  const v = set ? currentValue(set, s) : null;
  if (v === null) return null;
  const f = e.payload.from;
  const from: AccountRef =
    f.jid !== undefined ? { jid: f.jid } : { service: f.service ?? "", account: f.account ?? "" };
  return profileElement(from, { [s]: v });
}

export const LINKED_KINDS: readonly StreamKind[] = [
  { name: KIND_REQUEST, coalesce: "replace", subject: "entity", wake: true, render: renderRequest },
  { name: KIND_LINKS, coalesce: "replace", subject: "entity", wake: false, render: renderLinks },
  { name: KIND_PROFILE, coalesce: "replace", subject: "entity", wake: false, render: renderProfile },
];
