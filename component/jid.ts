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
