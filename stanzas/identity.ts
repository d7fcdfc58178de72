/**
 * cardlink identifiers, moves and registered services (`urn:cardlink:identity:0`, docs/PROTOCOL.md §23), and the
 * XEP-0283 (Moved, 0.2.0, https://xmpp.org/extensions/xep-0283.html) `<moved xmlns='urn:xmpp:moved:1'/>` element
 * the move notice carries. Pure builders and parsers: no store, no clock (times are passed in).
 */
import { formElement, parseForm, type Form } from "./dataforms.js";
import { badRequest, quote } from "./errors.js";
import { NS } from "./ns.js";
import { xml, type Element } from "./xml.js";

export type IdentifierKind = "jid" | "tel" | "email";
export const IDENTIFIER_KINDS: readonly IdentifierKind[] = ["jid", "tel", "email"];

/** E.164: '+', a country code that does not start with 0, at most 15 digits in all (ITU-T E.164 §6). */
const E164 = /^\+[1-9]\d{6,14}$/;

/**
 * A phone number as written by a person → E.164. Spaces, dots, dashes, slashes and parentheses are dropped;
 * a leading international prefix `00` becomes `+`. A national number (no country code) is refused: cardlink cannot
 * know the country, and two spellings of one number must not become two identifiers.
 */
export function normalizeTel(input: string): string {
  let s = input.trim().replace(/[\s.\-/()]/g, "");
  if (s.startsWith("00")) s = `+${s.slice(2)}`;
  if (!E164.test(s))
    throw badRequest(
      `'${quote(input)}' is not a phone number in international form (E.164: + country code, at most 15 digits)`,
    );
  return s;
}

/** An e-mail address → lower-cased, trimmed; one '@', a domain with a dot, RFC 5321's 254-octet path limit. */
export function normalizeEmail(input: string): string {
  const s = input.trim().toLowerCase();
  const at = s.lastIndexOf("@");
  const ok =
    s.length <= 254 &&
    at > 0 &&
    at <= 64 &&
    s.indexOf("@") === at &&
    /^[^\s@<>()",;:\\[\]]+$/.test(s.slice(0, at)) &&
    /^[a-z0-9-]+(\.[a-z0-9-]+)+$/.test(s.slice(at + 1));
  if (!ok) throw badRequest(`'${quote(input)}' is not an e-mail address`);
  return s;
}

export function parseKind(v: string | undefined): IdentifierKind {
  if (v === "jid" || v === "tel" || v === "email") return v;
  throw badRequest(`'kind' must be jid, tel or email, not '${quote(v)}'`);
}

/** A verification code as typed: digits only, 4–10 of them. */
export function parseCode(v: string | undefined): string {
  const s = (v ?? "").trim();
  if (!/^\d{4,10}$/.test(s)) throw badRequest("'code' is the digits you received");
  return s;
}

const iso = (t: number): string => new Date(t).toISOString();

export interface IdentifierView {
  kind: IdentifierKind;
  value: string;
  state: "active" | "held" | "pending";
  primary?: boolean;
  verifiedAt?: number;
  heldUntil?: number;
  /** pending only: when the code expires and how many wrong codes are left. */
  expiresAt?: number;
  attemptsLeft?: number;
}

export const identifierElement = (i: IdentifierView): Element =>
  xml("identifier", {
    kind: i.kind,
    value: i.value,
    state: i.state,
    primary: i.primary ? "true" : undefined,
    verified: i.verifiedAt === undefined ? undefined : iso(i.verifiedAt),
    "held-until": i.heldUntil === undefined ? undefined : iso(i.heldUntil),
    expires: i.expiresAt === undefined ? undefined : iso(i.expiresAt),
    "attempts-left": i.attemptsLeft === undefined ? undefined : String(i.attemptsLeft),
  });

export const identifiersElement = (items: readonly IdentifierView[]): Element =>
  xml("identifiers", { xmlns: NS.IDENTITY }, ...items.map(identifierElement));

export interface MoveView {
  id: string;
  kind: IdentifierKind;
  from: string;
  to: string;
  state: "offered" | "confirming" | "done";
  expiresAt?: number;
  doneAt?: number;
}

export const moveElement = (m: MoveView): Element =>
  xml("move", {
    xmlns: NS.IDENTITY,
    id: m.id,
    kind: m.kind,
    from: m.from,
    to: m.to,
    state: m.state,
    expires: m.expiresAt === undefined ? undefined : iso(m.expiresAt),
    done: m.doneAt === undefined ? undefined : iso(m.doneAt),
  });

/** XEP-0283 0.2 `<moved/>`, as the move notice carries it: the old JID and the new one. */
export const movedElement = (oldJid: string, newJid: string): Element =>
  xml("moved", { xmlns: NS.MOVED }, xml("old-jid", {}, oldJid), xml("new-jid", {}, newJid));

export function parseMoved(el: Element): { oldJid: string; newJid: string } {
  if (!el.is("moved", NS.MOVED)) throw badRequest("expected <moved xmlns='urn:xmpp:moved:1'/>");
  const oldJid = el.getChildText("old-jid")?.trim() ?? "";
  const newJid = el.getChildText("new-jid")?.trim() ?? "";
  if (!oldJid || !newJid) throw badRequest("<moved/> names <old-jid/> and <new-jid/>");
  return { oldJid, newJid };
}

// ------------------------------------------------------------------------------------- registered services

export const SERVICE_TEXT_MAX = 128;
export const REMARK_MAX = 64;

/** One service registration message as a client syncs it. */
export interface ServiceInput {
  service: string;
  provider: string;
  remark: string;
}

function text(el: Element, attr: string, max: number, required: boolean): string {
  const v = ((el.attrs[attr] as string | undefined) ?? "").trim();
  if (required && v === "") throw badRequest(`<service/> needs '${attr}'`);
  if ([...v].length > max || [...v].some((ch) => (ch.codePointAt(0) ?? 0) < 0x20 || ch === "\u007f"))
    throw badRequest(`'${attr}' is at most ${max} characters without control characters`);
  return v;
}

/** `<service service='…' provider='…' remark='…'/>`: provider and remark may be empty; service may not. */
export function parseService(el: Element): ServiceInput {
  return {
    service: text(el, "service", SERVICE_TEXT_MAX, true),
    provider: text(el, "provider", SERVICE_TEXT_MAX, false),
    remark: text(el, "remark", REMARK_MAX, false),
  };
}

export type ServiceStatus = "registered" | "selected" | "updated" | "refused" | "failed" | "manual" | "done";

export interface ServiceView extends ServiceInput {
  id: string;
  kind: IdentifierKind;
  identifier: string;
  receivedAt: number;
  status: ServiceStatus;
  mode?: "automatic" | "manual";
  /** Set once an update request named a new identifier. */
  newIdentifier?: string;
  contact?: string;
  reason?: string;
}

export const serviceElement = (s: ServiceView): Element =>
  xml(
    "service",
    {
      id: s.id,
      kind: s.kind,
      identifier: s.identifier,
      service: s.service,
      provider: s.provider || undefined,
      remark: s.remark || undefined,
      received: iso(s.receivedAt),
      status: s.status,
      mode: s.mode,
      "new-identifier": s.newIdentifier,
      reason: s.reason,
    },
    ...(s.contact ? [xml("contact", {}, s.contact)] : []),
  );

// ---------------------------------------------------------------------------- the confirmation form (XEP-0004)

export const SERVICES_FORM_TYPE = "urn:cardlink:identity:0#services-update";
export const SELECTED_FIELD = "automatic";

/** An item the form lists: its id (the option's value) and how it reads to the user. */
export interface FormItem {
  id: string;
  service: string;
  provider: string;
}

const label = (i: FormItem): string => (i.provider ? `${i.service} (${i.provider})` : i.service);

/**
 * The form that asks the user to confirm an update: the automatic items as a list-multi, all selected by default
 * (each deselectable), the manual ones as fixed text, the update id hidden so a submission names its update.
 */
export function servicesForm(o: {
  update: string;
  from: string;
  to: string;
  automatic: readonly FormItem[];
  manual: readonly FormItem[];
}): Element {
  const form: Form = {
    type: "form",
    formType: SERVICES_FORM_TYPE,
    title: "Update your registered services",
    instructions:
      `Your identifier changes from ${o.from} to ${o.to}. The services selected below will be told the new ` +
      "identifier automatically; deselect any you want to update yourself. The manual ones are listed for you.",
    fields: [
      { var: "update", type: "hidden", values: [o.update] },
      {
        var: SELECTED_FIELD,
        type: "list-multi",
        label: "Update automatically",
        values: o.automatic.map((i) => i.id),
        options: o.automatic.map((i) => ({ label: label(i), value: i.id })),
      },
      ...o.manual.map((i, n) => ({
        var: `manual-${n}`,
        type: "fixed" as const,
        values: [`Update yourself: ${label(i)}`],
      })),
    ],
  };
  return formElement(form);
}

/** A submitted confirmation: which update, and the ids left selected (unknown ids are the caller's to refuse). */
export function parseServicesSubmit(x: Element): { update: string; selected: string[] } {
  const f = parseForm(x);
  if (f.type !== "submit") throw badRequest("the confirmation is a form of type 'submit'");
  if (f.formType !== SERVICES_FORM_TYPE) throw badRequest(`FORM_TYPE must be ${SERVICES_FORM_TYPE}`);
  const update = f.values.get("update")?.[0] ?? "";
  if (update === "") throw badRequest("the form names no 'update'");
  const selected = [...new Set((f.values.get(SELECTED_FIELD) ?? []).map((v) => v.trim()).filter(Boolean))];
  return { update, selected };
}

/** A result form of the manual list, for generic ad-hoc clients (one fixed line per item). */
export function manualListForm(items: readonly ServiceView[]): Element {
  return formElement({
    type: "result",
    formType: SERVICES_FORM_TYPE,
    title: "Update these services yourself",
    fields: items.map((s, n) => ({
      var: `item-${n}`,
      type: "fixed",
      label: s.id,
      values: [
        [label(s), s.contact ? `contact: ${s.contact}` : "", s.reason ? `(${s.reason})` : ""]
          .filter(Boolean)
          .join(" "),
      ],
    })),
  });
}
