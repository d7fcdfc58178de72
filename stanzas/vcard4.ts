/**
 * The XEP-0292 (RFC 6351 xCard) XML mapping of the card model (stanzas/model/card.ts). docs/VCARD.md has the
 * mapping tables and the reasons behind what is dropped.
 */
import { quote as clip } from "./errors.js";
import { NS } from "./ns.js";
import { childElements, xml, type Element } from "./xml.js";
import {
  ADR_PARTS,
  CardError,
  FIELD_NAMES,
  N_PARTS,
  checkCount,
  checkSize,
  finishCard,
  isUri,
  normalizeCard,
  parsePref,
  type Card,
  type CardAdr,
  type CardFormatNames,
  type CardItemBase,
  type CardLimits,
  type ItemField,
} from "./model/card.js";

// -----------------------------------------------------------------------------------------------------------
// XEP-0292 / RFC 6351 XML
// -----------------------------------------------------------------------------------------------------------

const V4: CardFormatNames = {
  prefix: "vcard",
  field: (f) => `<${f}>`,
  part: (p) => (p === "orgname" ? "name" : p === "orgunit" ? "unit" : `<${p}>`),
};

const FIELD_SET: ReadonlySet<string> = new Set(FIELD_NAMES);

function kids(el: Element, name?: string): Element[] {
  return childElements(el).filter(
    (c) => c.getNS() === NS.VCARD4 && (name === undefined || c.getName() === name),
  );
}

function kid(el: Element, name: string): Element | undefined {
  return kids(el, name)[0];
}

function firstOf(el: Element, names: readonly string[]): Element | undefined {
  return kids(el).find((c) => names.includes(c.getName()));
}

function readParams(prop: Element, label: string): { types: string[]; pref?: number } {
  const params = kid(prop, "parameters");
  if (!params) return { types: [] };
  // Some clients pack "work,voice" into one <text>; RFC 6351 wants one <text> each. Both mean the same set.
  const types = kids(params, "type").flatMap((t) => kids(t, "text").flatMap((x) => x.getText().split(",")));
  const prefEl = kid(params, "pref");
  if (!prefEl) return { types };
  // XEP-0292's own example writes <pref>1</pref>; RFC 6351 wants <pref><integer>1</integer></pref>.
  return { types, pref: parsePref((kid(prefEl, "integer") ?? prefEl).getText(), V4, label) };
}

function requiredValue(prop: Element, kinds: readonly string[], label: string): string {
  const v = firstOf(prop, kinds);
  if (!v) throw new CardError(`vcard: ${label} has no ${kinds.map((k) => `<${k}>`).join(" or ")}`);
  const text = v.getText().trim();
  if (text === "") throw new CardError(`vcard: ${label} is empty`);
  return text;
}

function singleText(props: Map<string, Element[]>, name: "title" | "role" | "note"): string | undefined {
  const el = props.get(name)?.[0];
  if (!el) return undefined;
  const t = kid(el, "text");
  if (!t) throw new CardError(`vcard: <${name}> has no <text>`);
  return t.getText();
}

function textList(props: Map<string, Element[]>, name: "nickname" | "categories"): string[] {
  return (props.get(name) ?? []).flatMap((el, i) => {
    const texts = kids(el, "text");
    if (texts.length === 0) throw new CardError(`vcard: <${name}> #${i + 1} has no <text>`);
    return texts.map((t) => t.getText());
  });
}

/**
 * Parses a `<vcard xmlns='urn:ietf:params:xml:ns:vcard-4.0'>` element. Properties outside the model (geo,
 * gender, lang, key, tz, kind, x-…) and elements in other namespaces are ignored, not rejected: real clients
 * send them and a card is still useful without them. Properties inside <group> are read as if ungrouped.
 */
export function parseVCard4(el: Element, limits: CardLimits): Card {
  checkSize(V4, Buffer.byteLength(el.toString(), "utf8"), limits);
  if (el.getName() !== "vcard" || el.getNS() !== NS.VCARD4) {
    throw new CardError(
      `vcard: expected <vcard xmlns='${NS.VCARD4}'>, got <${clip(el.getName())} xmlns='${clip(el.getNS())}'>`,
    );
  }
  if (childElements(el).length === 0) throw new CardError("vcard: <vcard/> is empty (no card published)");

  const props = new Map<string, Element[]>();
  const collect = (parent: Element, top: boolean): void => {
    for (const child of kids(parent)) {
      const name = child.getName();
      if (name === "group" && top) collect(child, false);
      else if (FIELD_SET.has(name)) props.set(name, [...(props.get(name) ?? []), child]);
    }
  };
  collect(el, true);
  for (const [name, list] of props) checkCount(V4, `<${name}>`, list.length, limits, "elements");

  const fnEl = props.get("fn")?.[0];
  if (!fnEl) throw new CardError("vcard: <fn> is required");
  const fnText = kid(fnEl, "text");
  if (!fnText) throw new CardError("vcard: <fn> has no <text>");

  const card: Card = {
    fn: fnText.getText(),
    nickname: textList(props, "nickname"),
    tel: [],
    email: [],
    adr: [],
    url: [],
    impp: [],
    categories: textList(props, "categories"),
  };

  const nEl = props.get("n")?.[0];
  if (nEl) {
    // Repeated components are RFC 6351's multi-value form (two middle names); the model keeps one string
    // each.
    const join = (names: string[]): string =>
      names
        .flatMap((nm) => kids(nEl, nm))
        .map((c) => c.getText().trim())
        .filter((s) => s !== "")
        .join(" ");
    card.n = {
      surname: join(["surname"]),
      given: join(["given"]),
      // XEP-0292's examples say <middle>; RFC 6351 says <additional>.
      additional: join(["additional", "middle"]),
      prefix: join(["prefix"]),
      suffix: join(["suffix"]),
    };
  }

  const orgEl = props.get("org")?.[0];
  if (orgEl) {
    const texts = kids(orgEl, "text").map((t) => t.getText());
    if (texts.length === 0) throw new CardError("vcard: <org> has no <text>");
    card.org = { name: texts[0] ?? "", units: texts.slice(1) };
  }

  const title = singleText(props, "title");
  if (title !== undefined) card.title = title;
  const role = singleText(props, "role");
  if (role !== undefined) card.role = role;
  const note = singleText(props, "note");
  if (note !== undefined) card.note = note;

  const items = <T>(name: ItemField, read: (el: Element, label: string) => T): T[] =>
    (props.get(name) ?? []).map((e, i) => read(e, `<${name}> #${i + 1}`));

  card.tel = items("tel", (e, label) => ({
    key: "",
    ...readParams(e, label),
    uri: requiredValue(e, ["uri", "text"], label),
  }));
  card.email = items("email", (e, label) => ({
    key: "",
    ...readParams(e, label),
    value: requiredValue(e, ["text"], label),
  }));
  card.url = items("url", (e, label) => ({
    key: "",
    ...readParams(e, label),
    value: requiredValue(e, ["uri"], label),
  }));
  card.impp = items("impp", (e, label) => ({
    key: "",
    ...readParams(e, label),
    uri: requiredValue(e, ["uri"], label),
  }));
  card.adr = items("adr", (e, label) => {
    const adr = { key: "", ...readParams(e, label) } as CardAdr;
    for (const p of ADR_PARTS) {
      adr[p] = kids(e, p)
        .map((c) => c.getText().trim())
        .filter((s) => s !== "")
        .join(", ");
    }
    if (ADR_PARTS.every((p) => adr[p] === "")) {
      throw new CardError(`vcard: ${label} has no address components`);
    }
    return adr;
  });

  const bdayEl = props.get("bday")?.[0];
  if (bdayEl) card.bday = requiredValue(bdayEl, ["date", "date-time", "date-and-or-time", "text"], "<bday>");
  const photoEl = props.get("photo")?.[0];
  if (photoEl) card.photo = { uri: requiredValue(photoEl, ["uri"], "<photo>") };

  return finishCard(card, limits, V4);
}

function paramsXml(item: CardItemBase): Element | undefined {
  if (item.types.length === 0 && item.pref === undefined) return undefined;
  return xml(
    "parameters",
    null,
    item.types.length > 0 && xml("type", null, ...item.types.map((t) => xml("text", null, t))),
    item.pref !== undefined && xml("pref", null, xml("integer", null, String(item.pref))),
  );
}

function textProp(name: string, value: string | undefined): Element | undefined {
  return value === undefined ? undefined : xml(name, null, xml("text", null, value));
}

/**
 * Canonical XEP-0292 XML of the normalized card: fixed property order, one <nickname>/<categories> with all
 * values.
 */
export function serializeVCard4(card: Card): Element {
  const c = normalizeCard(card);
  return xml(
    "vcard",
    { xmlns: NS.VCARD4 },
    textProp("fn", c.fn),
    c.n && xml("n", null, ...N_PARTS.map((p) => xml(p, null, c.n?.[p] ?? ""))),
    c.nickname.length > 0 && xml("nickname", null, ...c.nickname.map((t) => xml("text", null, t))),
    c.org && xml("org", null, ...[c.org.name, ...c.org.units].map((t) => xml("text", null, t))),
    textProp("title", c.title),
    textProp("role", c.role),
    ...c.tel.map((t) => xml("tel", null, paramsXml(t), xml(isUri(t.uri) ? "uri" : "text", null, t.uri))),
    ...c.email.map((e) => xml("email", null, paramsXml(e), xml("text", null, e.value))),
    ...c.adr.map((a) => xml("adr", null, paramsXml(a), ...ADR_PARTS.map((p) => xml(p, null, a[p])))),
    ...c.url.map((u) => xml("url", null, paramsXml(u), xml("uri", null, u.value))),
    ...c.impp.map((i) => xml("impp", null, paramsXml(i), xml("uri", null, i.uri))),
    textProp("note", c.note),
    c.bday !== undefined && xml("bday", null, xml("date", null, c.bday)),
    c.photo && xml("photo", null, xml("uri", null, c.photo.uri)),
    c.categories.length > 0 && xml("categories", null, ...c.categories.map((t) => xml("text", null, t))),
  );
}
