/**
 * cardlink update requests (docs/PROTOCOL.md §20.11–§20.17, namespace urn:cardlink:book:request:0): the XEP-0004
 * data forms (https://xmpp.org/extensions/xep-0004.html, 2.13) a request carries or offers, and their validation.
 * Pure: builders and parsers over the card model, no store. Every refusal is StanzaError(bad-request) with a text
 * naming the field.
 *
 * Two forms, each with a hidden FORM_TYPE:
 * - `urn:cardlink:0:update-request` — the entry's fields pre-filled (notice form `form`, and the ad-hoc command's
 *   answer step for `address` requests): typed fields, `fn` required.
 * - `urn:cardlink:0:update-pick` — one `list-multi` field `items`, an option per detail of the answerer's own
 *   card (notice form `pick`): the answerer picks which to send.
 */
import { badRequest, quote } from "./errors.js";
import { formElement, type FieldType, type Form, type FormField } from "./dataforms.js";
import {
  finishCard,
  normalizeCard,
  type Card,
  type CardFormatNames,
  type CardItemBase,
  type CardLimits,
  type FieldName,
} from "./model/card.js";
import { NS } from "./ns.js";
import { xml, type Element } from "./xml.js";

export const UPDATE_FORM_TYPE = "urn:cardlink:0:update-request";
export const PICK_FORM_TYPE = "urn:cardlink:0:update-pick";

/** How the notice to the answerer carries the request (PROTOCOL §20.11). */
export const REQUEST_FORMS = ["form", "address", "pick"] as const;
export type RequestForm = (typeof REQUEST_FORMS)[number];

export function parseRequestForm(v: string | undefined): RequestForm {
  if (v === undefined || v === "") return "form";
  if (!(REQUEST_FORMS as readonly string[]).includes(v))
    throw badRequest(`'form' must be form, address or pick, not '${quote(v)}'`);
  return v as RequestForm;
}

/** A field of a form this module defines: every field has a var and a type. */
export interface FieldDef extends FormField {
  var: string;
  type: FieldType;
}

/** The fields of the update form, in display order. `jid` becomes the entry's `xmpp:` IMPP address. */
export const UPDATE_FIELDS: readonly FieldDef[] = [
  {
    var: "jid",
    type: "jid-single",
    label: "Your address",
    desc: "The XMPP address this entry is for; change it if you have moved",
  },
  { var: "fn", type: "text-single", label: "Full name", required: true },
  { var: "org", type: "text-single", label: "Organisation" },
  { var: "title", type: "text-single", label: "Job title" },
  { var: "tel", type: "text-multi", label: "Phone numbers", desc: "One number per line" },
  { var: "email", type: "text-multi", label: "E-mail addresses", desc: "One address per line" },
  { var: "url", type: "text-multi", label: "Web sites", desc: "One address per line" },
  { var: "bday", type: "text-single", label: "Birthday", desc: "YYYY-MM-DD, or --MM-DD without the year" },
  { var: "note", type: "text-multi", label: "Note" },
];

/** The card fields an update form writes (the `jid` field writes `impp`). */
export const UPDATE_CARD_FIELDS: readonly FieldName[] = [
  "fn",
  "org",
  "title",
  "tel",
  "email",
  "url",
  "bday",
  "note",
  "impp",
];

const BARE_JID = /^[^\s@/<>'"&]{1,1023}@[^\s@/<>'"&]{1,1023}$/;

/** The JID an entry names for its person: the first `xmpp:` IMPP address, if any. */
export function cardJid(card: Card): string | undefined {
  for (const i of card.impp) {
    const m = /^xmpp:([^?;#]+)/i.exec(i.uri);
    if (m?.[1] && BARE_JID.test(m[1])) return m[1].toLowerCase();
  }
  return undefined;
}

/** The update form's values for `card` (var → values), `jid` the address the request went to. */
export function updateValues(card: Card, jid: string): Map<string, string[]> {
  const v = new Map<string, string[]>();
  v.set("jid", [jid]);
  v.set("fn", [card.fn]);
  v.set("org", card.org ? [card.org.name] : []);
  v.set("title", card.title ? [card.title] : []);
  v.set(
    "tel",
    card.tel.map((t) => t.uri),
  );
  v.set(
    "email",
    card.email.map((e) => e.value),
  );
  v.set(
    "url",
    card.url.map((u) => u.value),
  );
  v.set("bday", card.bday ? [card.bday] : []);
  // text-multi: one <value/> per line (XEP-0004 §3.3).
  v.set("note", card.note ? card.note.split("\n") : []);
  return v;
}

/** The pre-filled update form (type `form`). */
export function updateForm(
  values: ReadonlyMap<string, readonly string[]>,
  o: { title: string; instructions?: string },
): Element {
  const form: Form = {
    type: "form",
    formType: UPDATE_FORM_TYPE,
    title: o.title,
    ...(o.instructions ? { instructions: o.instructions } : {}),
    fields: UPDATE_FIELDS.map((f) => ({ ...f, values: [...(values.get(f.var) ?? [])] })),
  };
  return formElement(form);
}

/** One detail of the answerer's card offered by the pick form. */
export interface PickItem {
  value: string;
  label: string;
}

const typesText = (i: CardItemBase): string => (i.types.length > 0 ? ` (${i.types.join(", ")})` : "");

/** Every detail of `card` the pick form offers, in card order: scalar fields by name, list items by key. */
export function pickItems(card: Card): PickItem[] {
  const out: PickItem[] = [{ value: "fn", label: `Name: ${card.fn}` }];
  if (card.org) out.push({ value: "org", label: `Organisation: ${card.org.name}` });
  if (card.title) out.push({ value: "title", label: `Job title: ${card.title}` });
  for (const t of card.tel) out.push({ value: t.key, label: `Phone${typesText(t)}: ${t.uri}` });
  for (const e of card.email) out.push({ value: e.key, label: `E-mail${typesText(e)}: ${e.value}` });
  for (const u of card.url) out.push({ value: u.key, label: `Web${typesText(u)}: ${u.value}` });
  for (const a of card.adr) {
    const text = [a.street, a.locality, a.code, a.country].filter((p) => p !== "").join(", ");
    out.push({ value: a.key, label: `Address${typesText(a)}: ${text.replace(/\n/g, ", ")}` });
  }
  for (const i of card.impp) out.push({ value: i.key, label: `Chat${typesText(i)}: ${i.uri}` });
  if (card.bday) out.push({ value: "bday", label: `Birthday: ${card.bday}` });
  if (card.note) out.push({ value: "note", label: `Note: ${card.note.replace(/\n/g, " ")}` });
  return out;
}

/** The pick form's single field over `items` (none selected). */
export function pickFields(items: readonly PickItem[]): FieldDef[] {
  return [
    {
      var: "items",
      type: "list-multi",
      label: "Details to send",
      desc: "Pick the details of your card to put in the requester's entry for you",
      required: true,
      options: items.map((i) => ({ label: i.label, value: i.value })),
    },
  ];
}

export function pickForm(items: readonly PickItem[], o: { title: string; instructions?: string }): Element {
  return formElement({
    type: "form",
    formType: PICK_FORM_TYPE,
    title: o.title,
    ...(o.instructions ? { instructions: o.instructions } : {}),
    fields: pickFields(items),
  });
}

const named = (f: FieldDef): string => (f.label ? `field '${f.var}' (${f.label})` : `field '${f.var}'`);

/**
 * Validates a submitted form against `defs` (XEP-0004 §3.3 field types): `<x type='submit'/>` in jabber:x:data,
 * FORM_TYPE equal to `formType`, every field known and given once, single-valued types with at most one value,
 * jid fields bare user JIDs, list values among the options, booleans 0/1/true/false, required fields present and
 * non-empty. Answers var → values of the fields the submission carries (FORM_TYPE left out).
 */
export function validateSubmission(
  x: Element | undefined,
  formType: string,
  defs: readonly FieldDef[],
): Map<string, string[]> {
  if (!x || !x.is("x", NS.DATA)) throw badRequest("the answer needs a jabber:x:data form");
  if (x.attrs.type !== "submit")
    throw badRequest(`the form must be of type 'submit', not '${quote(x.attrs.type ?? "")}'`);
  const typeField = x.getChildren("field").find((f) => f.attrs.var === "FORM_TYPE");
  const seenType = typeField?.getChildText("value") ?? undefined;
  // FORM_TYPE first: a form of another type is refused as such, not for its first unknown field.
  if (seenType !== formType)
    throw badRequest(`FORM_TYPE must be '${formType}', not '${quote(seenType ?? "")}'`);
  const byVar = new Map(defs.map((d) => [d.var, d]));
  const out = new Map<string, string[]>();
  for (const f of x.getChildren("field")) {
    const name = f.attrs.var as string | undefined;
    if (name === undefined || name === "") throw badRequest("every field of the form needs a 'var'");
    const values = f.getChildren("value").map((v) => v.getText());
    if (name === "FORM_TYPE") continue;
    const def = byVar.get(name);
    if (!def) throw badRequest(`field '${quote(name)}' is not part of this form`);
    if (out.has(name)) throw badRequest(`${named(def)} is given twice`);
    const single = !["text-multi", "list-multi", "jid-multi"].includes(def.type);
    if (single && values.length > 1) throw badRequest(`${named(def)} takes one value, not ${values.length}`);
    for (const v of values) {
      if ((def.type === "jid-single" || def.type === "jid-multi") && v !== "" && !BARE_JID.test(v.trim()))
        throw badRequest(`${named(def)}: '${quote(v)}' is not a bare JID (user@server)`);
      if (def.type === "boolean" && !["0", "1", "true", "false"].includes(v))
        throw badRequest(`${named(def)}: '${quote(v)}' is not a boolean (0, 1, true or false)`);
      if (
        (def.type === "list-single" || def.type === "list-multi") &&
        !def.options?.some((o) => o.value === v)
      )
        throw badRequest(`${named(def)}: '${quote(v)}' is not one of its options`);
    }
    if (def.type === "list-multi" && new Set(values).size !== values.length)
      throw badRequest(`${named(def)} names an option twice`);
    out.set(name, values);
  }
  for (const d of defs) {
    if (!d.required) continue;
    const v = out.get(d.var);
    if (!v || v.every((s) => s.trim() === "")) throw badRequest(`${named(d)} is required`);
  }
  return out;
}

const FORM_NAMES: CardFormatNames = {
  prefix: "form",
  field: (f) => `field '${f === "impp" ? "jid" : f}'`,
  part: (p) => p,
};

const one = (v: readonly string[] | undefined): string | undefined => {
  const s = v?.[0]?.trim();
  return s === undefined || s === "" ? undefined : s;
};
const lines = (v: readonly string[]): string[] =>
  v
    .flatMap((s) => s.split(/\r\n|\r|\n/))
    .map((s) => s.trim())
    .filter((s) => s !== "");

/** Keeps the types and pref of an item whose value stays; a new value gets none (a flat form has no types). */
function items<T extends CardItemBase>(
  old: readonly T[],
  values: readonly string[],
  get: (i: T) => string,
  make: (v: string) => T,
): T[] {
  return values.map((v) => {
    const kept = old.find((i) => get(i) === v);
    return kept ? structuredClone(kept) : make(v);
  });
}

/**
 * `entry` with the submitted update form's fields written into it (validateSubmission's output): a field the
 * submission carries replaces the entry's (empty = cleared); a field it leaves out is unchanged; fields the
 * form does not have (n, adr, photo, …) are never touched. The result is normalized and checked against the
 * card limits (errors name the form field).
 */
export function applyUpdate(
  entry: Card,
  values: ReadonlyMap<string, readonly string[]>,
  limits: CardLimits,
): Card {
  const c = structuredClone(entry);
  const has = (k: string): boolean => values.has(k);
  const get = (k: string): readonly string[] => values.get(k) ?? [];
  if (has("fn")) c.fn = one(get("fn")) ?? "";
  if (has("org")) {
    const org = one(get("org"));
    if (org === undefined) delete c.org;
    else c.org = { name: org, units: c.org?.name === org ? c.org.units : [] };
  }
  if (has("title")) {
    const t = one(get("title"));
    if (t === undefined) delete c.title;
    else c.title = t;
  }
  if (has("bday")) {
    const b = one(get("bday"));
    if (b === undefined) delete c.bday;
    else c.bday = b;
  }
  if (has("note")) {
    const n = get("note").join("\n").trim();
    if (n === "") delete c.note;
    else c.note = n;
  }
  if (has("tel"))
    c.tel = items(
      c.tel,
      lines(get("tel")),
      (i) => i.uri,
      (uri) => ({ key: "", types: [], uri }),
    );
  if (has("email"))
    c.email = items(
      c.email,
      lines(get("email")),
      (i) => i.value,
      (value) => ({ key: "", types: [], value }),
    );
  if (has("url"))
    c.url = items(
      c.url,
      lines(get("url")),
      (i) => i.value,
      (value) => ({ key: "", types: [], value }),
    );
  if (has("jid")) {
    // The entry's xmpp: address is the first one; other IM addresses stay as they are.
    const jid = one(get("jid"))?.toLowerCase();
    const others = c.impp.filter((i) => !/^xmpp:/i.test(i.uri));
    const kept = c.impp.find((i) => /^xmpp:/i.test(i.uri));
    c.impp =
      jid === undefined
        ? others
        : [{ ...(kept ? structuredClone(kept) : { key: "", types: [] }), uri: `xmpp:${jid}` }, ...others];
  }
  return finishCard(normalizeCard(c), limits, FORM_NAMES);
}

/**
 * `entry` with the picked details of `source` (the answerer's own card) written into it: a scalar field takes the
 * source's value; a list item replaces the entry's item with the same value (its types) or is added.
 */
export function applyPicked(entry: Card, source: Card, picked: readonly string[], limits: CardLimits): Card {
  const c = structuredClone(entry);
  for (const p of picked) {
    if (p === "fn") c.fn = source.fn;
    else if (p === "org" && source.org) c.org = structuredClone(source.org);
    else if (p === "title" && source.title) c.title = source.title;
    else if (p === "bday" && source.bday) c.bday = source.bday;
    else if (p === "note" && source.note) c.note = source.note;
    else {
      const field = p.slice(0, p.indexOf(":"));
      if (field !== "tel" && field !== "email" && field !== "url" && field !== "adr" && field !== "impp") {
        throw badRequest(`field 'items': '${quote(p)}' is not one of its options`);
      }
      const list = c[field] as CardItemBase[];
      const item = (source[field] as CardItemBase[]).find((i) => i.key === p);
      if (!item) throw badRequest(`field 'items': '${quote(p)}' is not one of its options`);
      // Keys derive from the value only, so the same key in the entry is the same value: replace (types).
      const at = list.findIndex((i) => i.key.replace(/~\d+$/, "") === p.replace(/~\d+$/, ""));
      if (at >= 0) list[at] = structuredClone(item);
      else list.push(structuredClone(item));
    }
  }
  return finishCard(normalizeCard(c), limits, FORM_NAMES);
}

// ---- elements of urn:cardlink:book:request:0 ------------------------------------------------------------

export type RequestStatus = "answered" | "declined" | "expired";

export interface RequestAttrs {
  id: string;
  entry?: string;
  to?: string;
  from?: string;
  name?: string;
  form: RequestForm;
  uri?: string;
  expires: number;
}

/** `<update-request/>`: A's result, B's notice (with the form, when `form`), a line of the lists. */
export function requestElement(r: RequestAttrs, ...children: Element[]): Element {
  return xml(
    "update-request",
    {
      xmlns: NS.BOOK_REQUEST,
      id: r.id,
      entry: r.entry,
      to: r.to,
      from: r.from,
      name: r.name,
      form: r.form,
      uri: r.uri,
      expires: new Date(r.expires).toISOString(),
    },
    ...children,
  );
}

/** `<update-result/>`: the requester's notice that a request was answered, declined or expired. */
export function resultElement(r: { id: string; entry: string; to: string; status: RequestStatus }): Element {
  return xml("update-result", {
    xmlns: NS.BOOK_REQUEST,
    id: r.id,
    entry: r.entry,
    to: r.to,
    status: r.status,
  });
}
