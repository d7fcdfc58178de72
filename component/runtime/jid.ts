import { requireAttr } from "../../stanzas/cardlink.js";
import { StanzaError, quote } from "../../stanzas/errors.js";
import type { Element } from "../../stanzas/xml.js";

/** Minimal JID handling for addresses Prosody has already validated and normalised (RFC 7622). */
export interface Jid {
  local: string;
  domain: string;
  resource: string;
  bare: string;
  full: string;
}

export function parseJid(s: string): Jid | undefined {
  if (!s || s.length > 3071) return undefined;
  const slash = s.indexOf("/");
  const bareStr = slash >= 0 ? s.slice(0, slash) : s;
  const resource = slash >= 0 ? s.slice(slash + 1) : "";
  const at = bareStr.indexOf("@");
  const local = at >= 0 ? bareStr.slice(0, at) : "";
  const domain = (at >= 0 ? bareStr.slice(at + 1) : bareStr).toLowerCase();
  if (!domain || (at >= 0 && !local) || (slash >= 0 && !resource)) return undefined;
  if (/[\s"&'/:<>@]/.test(local) || /[\s/@]/.test(domain)) return undefined;
  const bare = local ? `${local.toLowerCase()}@${domain}` : domain;
  return {
    local: local.toLowerCase(),
    domain,
    resource,
    bare,
    full: resource ? `${bare}/${resource}` : bare,
  };
}

/** Parses a bare JID given by a user in a payload; undefined if it is not a bare user JID. */
export function parseBareUserJid(s: string): string | undefined {
  const j = parseJid(s.trim());
  if (!j || !j.local || j.resource) return undefined;
  return j.bare;
}

/**
 * The one normalization for every JID a client names in a payload (owner, holder, peer, to, jid, form fields):
 * trimmed, lower-cased localpart and domain, a bare JID with a localpart (parseBareUserJid). Anything else is
 * `jid-malformed`, quoting at most a short prefix of the input. `what` names the attribute or field.
 */
export function userJid(value: string, what: string): string {
  const j = parseBareUserJid(value);
  if (!j) throw new StanzaError("jid-malformed", `${what} '${quote(value)}' is not a bare user JID`);
  return j;
}

/** A required attribute naming a user, normalized (see userJid). */
export function requireUserJid(el: Element, attr: string): string {
  return userJid(requireAttr(el, attr), attr);
}

/** An optional attribute naming a user, normalized; undefined when absent or empty. */
export function optionalUserJid(el: Element, attr: string): string | undefined {
  const v = el.attrs[attr];
  return v === undefined || v === "" ? undefined : userJid(v, attr);
}
