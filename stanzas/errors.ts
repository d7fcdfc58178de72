/**
 * RFC 6120 §8.3 stanza errors. Handlers throw StanzaError; the router turns it into the error reply.
 * Every error carries a human-readable <text/> so a client author can see what went wrong.
 */
import { NS } from "./ns.js";
import { xml, type Element } from "./xml.js";

export type ErrorType = "auth" | "cancel" | "continue" | "modify" | "wait";

export type ErrorCondition =
  | "bad-request"
  | "conflict"
  | "feature-not-implemented"
  | "forbidden"
  | "gone"
  | "internal-server-error"
  | "item-not-found"
  | "jid-malformed"
  | "not-acceptable"
  | "not-allowed"
  | "not-authorized"
  | "policy-violation"
  | "recipient-unavailable"
  | "redirect"
  | "registration-required"
  | "remote-server-not-found"
  | "remote-server-timeout"
  | "resource-constraint"
  | "service-unavailable"
  | "subscription-required"
  | "undefined-condition"
  | "unexpected-request";

/** The type RFC 6120 §8.3.3 suggests for each condition; handlers may override. */
const DEFAULT_TYPE: Record<ErrorCondition, ErrorType> = {
  "bad-request": "modify",
  conflict: "cancel",
  "feature-not-implemented": "cancel",
  forbidden: "auth",
  gone: "cancel",
  "internal-server-error": "cancel",
  "item-not-found": "cancel",
  "jid-malformed": "modify",
  "not-acceptable": "modify",
  "not-allowed": "cancel",
  "not-authorized": "auth",
  "policy-violation": "modify",
  "recipient-unavailable": "wait",
  redirect: "modify",
  "registration-required": "auth",
  "remote-server-not-found": "cancel",
  "remote-server-timeout": "wait",
  "resource-constraint": "wait",
  "service-unavailable": "cancel",
  "subscription-required": "auth",
  "undefined-condition": "cancel",
  "unexpected-request": "wait",
};

/** Longest client input an error text quotes; longer input is cut and marked with "…". */
export const QUOTE_MAX = 64;
/** Hard cap on any <text/>: the safety net for a message that embeds input without quote(). */
export const TEXT_MAX = 512;

/** Cuts `s` to at most `max` UTF-16 units without splitting a surrogate pair. */
function cut(s: string, max: number): string {
  if (s.length <= max) return s;
  let end = max;
  const last = s.charCodeAt(end - 1);
  if (last >= 0xd800 && last <= 0xdbff) end -= 1;
  return `${s.slice(0, end)}…`;
}

/**
 * Client input as an error text may quote it: at most QUOTE_MAX characters, then "…". Every message that
 * embeds something a client sent goes through this, so a 100 kB attribute never comes back in a <text/>.
 */
export function quote(v: string | undefined): string {
  return cut(v ?? "", QUOTE_MAX);
}

export class StanzaError extends Error {
  readonly condition: ErrorCondition;
  readonly type: ErrorType;
  /** Application-specific condition element (e.g. <bad-sessionid xmlns='http://jabber.org/protocol/commands'/>). */
  readonly appCondition?: string;
  /** Its namespace; cardlink's own (urn:cardlink:0) unless given. */
  readonly appNs?: string;

  constructor(
    condition: ErrorCondition,
    text: string,
    opts: { type?: ErrorType; appCondition?: string; appNs?: string } = {},
  ) {
    super(cut(text, TEXT_MAX));
    this.name = "StanzaError";
    this.condition = condition;
    this.type = opts.type ?? DEFAULT_TYPE[condition];
    if (opts.appCondition !== undefined) this.appCondition = opts.appCondition;
    if (opts.appNs !== undefined) this.appNs = opts.appNs;
  }
}

export const badRequest = (text: string): StanzaError => new StanzaError("bad-request", text);
export const forbidden = (text: string): StanzaError => new StanzaError("forbidden", text);
export const notFound = (text: string): StanzaError => new StanzaError("item-not-found", text);
export const conflict = (text: string): StanzaError => new StanzaError("conflict", text);

/** The <error/> child of an error stanza. */
export function errorElement(err: StanzaError): Element {
  return xml(
    "error",
    { type: err.type },
    xml(err.condition, { xmlns: NS.STANZAS }),
    xml("text", { xmlns: NS.STANZAS, "xml:lang": "en" }, err.message),
    err.appCondition ? xml(err.appCondition, { xmlns: err.appNs ?? NS.CARDLINK }) : null,
  );
}

/**
 * An error reply to `stanza`: addresses swapped, same id and name, and (RFC 6120 §8.2) the original payload
 * is not echoed back, so a too-large request is not mirrored.
 */
export function errorReply(stanza: Element, err: StanzaError): Element {
  return xml(
    stanza.name,
    { type: "error", id: stanza.attrs.id, to: stanza.attrs.from, from: stanza.attrs.to },
    errorElement(err),
  );
}

/** Reads an error stanza's condition, type and text (for replies cardlink receives). */
export function parseError(stanza: Element): { condition: string; type: string; text?: string } | undefined {
  const e = stanza.getChild("error");
  if (!e) return undefined;
  const cond = e.getChildElements().find((c) => c.getNS() === NS.STANZAS && c.name !== "text");
  const text = e.getChildText("text", NS.STANZAS);
  return {
    condition: cond?.name ?? "undefined-condition",
    type: e.attrs.type ?? "cancel",
    ...(text ? { text } : {}),
  };
}
