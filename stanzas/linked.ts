/**
 * Linked accounts (cardlink, docs/PROTOCOL.md §22) and the PEP publishes cardlink makes for them:
 * XEP-0172 User Nickname 1.1 (https://xmpp.org/extensions/xep-0172.html), XEP-0084 User Avatar 1.1.4
 * (https://xmpp.org/extensions/xep-0084.html), wrapped for XEP-0356 Privileged Entity 0.4
 * (https://xmpp.org/extensions/xep-0356.html) IQ permission. Pure builders and parsers: no store, no I/O.
 */
import { badRequest, quote } from "./errors.js";
import { NS } from "./ns.js";
import { xml, type Element } from "./xml.js";

/** The settings a linked account may sync (config.ts SYNC_SETTINGS is the same list). */
export const SETTINGS = ["nickname", "avatar", "status"] as const;
export type Setting = (typeof SETTINGS)[number];

/** An avatar as cardlink keeps it: the bytes as sent (base64), never re-encoded; `id` = SHA-1 hex of the bytes. */
export interface Avatar {
  id: string;
  type: string;
  bytes: number;
  width?: number;
  height?: number;
  data: string; // base64
}

/** A profile change as a client reports it: only what changed. */
export interface ProfileChange {
  nickname?: string;
  status?: string;
  /** base64 text and the declared type; checked (size, type by magic bytes, SHA-1) by the feature. */
  avatar?: { type: string; data: string };
}

/** An account of a linked set on the wire: an XMPP account (`jid`) or an account of a service. */
export type AccountRef = { jid: string } | { service: string; account: string };

/** `settings='nickname avatar'`: a space-separated, non-empty subset of SETTINGS, no repeats. */
export function parseSettings(v: string | undefined, what = "settings"): Setting[] {
  if (v === undefined || v.trim() === "")
    throw badRequest(`${what} must name at least one of ${SETTINGS.join(", ")}`);
  const out: Setting[] = [];
  for (const s of v.trim().split(/\s+/)) {
    if (!(SETTINGS as readonly string[]).includes(s))
      throw badRequest(`'${quote(s)}' is not a setting (${SETTINGS.join(", ")})`);
    if (!out.includes(s as Setting)) out.push(s as Setting);
  }
  return SETTINGS.filter((s) => out.includes(s));
}

export const settingsText = (s: readonly Setting[]): string => s.join(" ");

/** The account an element names: `jid='…'`, or `service='…' account='…'` (exactly one of the two forms). */
export function parseAccountRef(el: Element): AccountRef {
  const { jid, service, account } = el.attrs;
  if (jid !== undefined && service === undefined && account === undefined) return { jid };
  if (jid === undefined && service !== undefined && account !== undefined) {
    if (account === "" || account.length > 256) throw badRequest("account must be 1–256 characters");
    return { service, account };
  }
  throw badRequest("name the account with jid='…', or with service='…' and account='…'");
}

export const accountAttrs = (r: AccountRef): Record<string, string> =>
  "jid" in r ? { jid: r.jid } : { service: r.service, account: r.account };

/** `<profile-changed/>`'s children: `<nickname/>`, `<status/>`, `<avatar type='…'>base64</avatar>`; at least one. */
export function parseProfileChange(el: Element): ProfileChange {
  const out: ProfileChange = {};
  for (const c of el.children) {
    if (typeof c === "string") continue;
    if (c.attrs.xmlns !== undefined && c.attrs.xmlns !== NS.LINKED)
      throw badRequest(`unknown child <${c.name}/>`);
    const key = c.name as Setting;
    if (!(SETTINGS as readonly string[]).includes(key)) throw badRequest(`unknown child <${quote(c.name)}/>`);
    if (out[key] !== undefined) throw badRequest(`<${key}/> given twice`);
    if (key === "avatar") {
      const type = c.attrs.type;
      if (!type) throw badRequest("<avatar/> needs type='image/…'");
      out.avatar = { type, data: c.getText().replace(/\s+/g, "") };
    } else out[key] = c.getText();
  }
  if (Object.keys(out).length === 0) throw badRequest("nothing changed: <nickname/>, <avatar/> or <status/>");
  return out;
}

/** The profile values a linked account is told (the `linked-profile` update, PROTOCOL §22.6). */
export function profileElement(
  from: AccountRef,
  p: { nickname?: string | null; status?: string | null; avatar?: Avatar | null },
): Element {
  const children: Element[] = [];
  if (p.nickname !== undefined && p.nickname !== null) children.push(xml("nickname", {}, p.nickname));
  if (p.avatar !== undefined && p.avatar !== null)
    children.push(
      xml(
        "avatar",
        {
          id: p.avatar.id,
          type: p.avatar.type,
          bytes: String(p.avatar.bytes),
          ...(p.avatar.width !== undefined ? { width: String(p.avatar.width) } : {}),
          ...(p.avatar.height !== undefined ? { height: String(p.avatar.height) } : {}),
        },
        p.avatar.data,
      ),
    );
  if (p.status !== undefined && p.status !== null) children.push(xml("status", {}, p.status));
  const f =
    "jid" in from ? { "from-jid": from.jid } : { "from-service": from.service, "from-account": from.account };
  return xml("profile", { xmlns: NS.LINKED, ...f }, ...children);
}

// ------------------------------------------------------------------------------------- PEP (XEP-0172/0084)

/** `<pubsub><publish node>` with one item: the payload of a PEP publish. */
function publish(node: string, itemId: string | undefined, payload: Element): Element {
  return xml(
    "pubsub",
    { xmlns: NS.PUBSUB },
    xml("publish", { node }, xml("item", itemId === undefined ? {} : { id: itemId }, payload)),
  );
}

/** XEP-0172 §4.4: the nickname published to the user's own PEP node (item id `current`, as clients do). */
export const nickPublish = (nick: string): Element =>
  publish(NS.NICK, "current", xml("nick", { xmlns: NS.NICK }, nick));

/** XEP-0084 §4.1: the image data, item id = SHA-1 of the bytes. */
export const avatarDataPublish = (a: Avatar): Element =>
  publish(NS.AVATAR_DATA, a.id, xml("data", { xmlns: NS.AVATAR_DATA }, a.data));

/** XEP-0084 §4.2: the metadata, published after the data (§4.3), same item id. */
export const avatarMetadataPublish = (a: Avatar): Element =>
  publish(
    NS.AVATAR_METADATA,
    a.id,
    xml(
      "metadata",
      { xmlns: NS.AVATAR_METADATA },
      xml("info", {
        bytes: String(a.bytes),
        id: a.id,
        type: a.type,
        ...(a.width !== undefined ? { width: String(a.width) } : {}),
        ...(a.height !== undefined ? { height: String(a.height) } : {}),
      }),
    ),
  );

/**
 * XEP-0356 §4.3 (0.4, IQ permission): `<iq type='set' to='user@host'><privileged_iq><iq xmlns='jabber:client'
 * type='set' id=…>payload</iq></privileged_iq></iq>`. The server runs the wrapped IQ as if the user sent it
 * (the user's own PEP service: no `to`), and answers with the user's result inside `<privilege><forwarded/>`.
 */
export function privilegedIq(from: string, user: string, id: string, payload: Element): Element {
  return xml(
    "iq",
    { type: "set", from, to: user, id },
    xml(
      "privileged_iq",
      { xmlns: NS.PRIVILEGE },
      xml("iq", { xmlns: NS.CLIENT, type: "set", id: `${id}-w` }, payload),
    ),
  );
}

/**
 * The wrapped answer of a privileged IQ's result: "result" when the user's server accepted the publish, "error"
 * (with its condition) when the wrapped IQ failed, undefined when the result carries no forwarded answer.
 */
export function privilegedOutcome(
  result: Element,
): { type: "result" } | { type: "error"; condition: string } | undefined {
  const inner = result.getChild("privilege", NS.PRIVILEGE)?.getChild("forwarded", NS.FORWARD)?.getChild("iq");
  if (!inner) return undefined;
  if (inner.attrs.type === "result") return { type: "result" };
  const cond = inner.getChild("error")?.children.find((c): c is Element => typeof c !== "string")?.name;
  return { type: "error", condition: cond ?? "undefined-condition" };
}
