/**
 * XEP-0054 vcard-temp ↔ the Card model (stanzas/model/card.ts), for legacy clients. The mapping follows
 * XEP-0292 §11; docs/VCARD.md has the tables and what each direction drops.
 */
import { quote as clip } from "./errors.js";
import { NS } from "./ns.js";
import {
  ADR_PARTS,
  CardError,
  N_PARTS,
  checkCount,
  checkSize,
  cleanLine,
  finishCard,
  normalizeCard,
  sniffImage,
  splitDataUri,
  type Card,
  type CardAdr,
  type CardFormatNames,
  type CardItemBase,
  type CardLimits,
  type FieldName,
} from "./model/card.js";
import { childElements, xml, type Element } from "./xml.js";

const FIELD: Record<FieldName, string> = {
  fn: "FN",
  n: "N",
  nickname: "NICKNAME",
  org: "ORG",
  title: "TITLE",
  role: "ROLE",
  tel: "TEL",
  email: "EMAIL",
  adr: "ADR",
  url: "URL",
  impp: "JABBERID",
  note: "NOTE",
  bday: "BDAY",
  photo: "PHOTO",
  categories: "CATEGORIES",
};

const N_ELEMENTS: Record<(typeof N_PARTS)[number], string> = {
  surname: "FAMILY",
  given: "GIVEN",
  additional: "MIDDLE",
  prefix: "PREFIX",
  suffix: "SUFFIX",
};

const ADR_ELEMENTS: Record<(typeof ADR_PARTS)[number], string> = {
  pobox: "POBOX",
  ext: "EXTADD",
  street: "STREET",
  locality: "LOCALITY",
  region: "REGION",
  code: "PCODE",
  country: "CTRY",
};

const PART: Record<string, string> = {
  ...N_ELEMENTS,
  ...ADR_ELEMENTS,
  orgname: "ORGNAME",
  orgunit: "ORGUNIT",
};

const VT: CardFormatNames = {
  prefix: "vcard-temp",
  field: (f) => `<${FIELD[f]}>`,
  part: (p) => `<${PART[p] ?? p.toUpperCase()}>`,
};

/**
 * Flag element → vCard4 TYPE. `null`: a vCard3-only type XEP-0292 §11.3 says vCard4 removed, dropped on
 * input. Order here is the order flags are written on output.
 */
const TEL_FLAGS: Record<string, string | null> = {
  HOME: "home",
  WORK: "work",
  VOICE: "voice",
  FAX: "fax",
  PAGER: "pager",
  // vCard3 MSG ("has messaging") has no vCard4 twin; "text" (accepts text messages) is the nearest.
  MSG: "text",
  CELL: "cell",
  VIDEO: "video",
  BBS: null,
  MODEM: null,
  ISDN: null,
  PCS: null,
};
const EMAIL_FLAGS: Record<string, string | null> = { HOME: "home", WORK: "work", INTERNET: null, X400: null };
const ADR_FLAGS: Record<string, string | null> = {
  HOME: "home",
  WORK: "work",
  POSTAL: null,
  PARCEL: null,
  DOM: null,
  INTL: null,
};

const KNOWN = new Set([
  "FN",
  "N",
  "NICKNAME",
  "PHOTO",
  "BDAY",
  "ADR",
  "TEL",
  "EMAIL",
  "JABBERID",
  "TITLE",
  "ROLE",
  "ORG",
  "CATEGORIES",
  "NOTE",
  "DESC",
  "URL",
]);

function kids(el: Element, name?: string): Element[] {
  return childElements(el).filter(
    (c) => c.getNS() === NS.VCARD_TEMP && (name === undefined || c.getName() === name),
  );
}

function childText(el: Element, name: string): string {
  return kids(el, name)[0]?.getText() ?? "";
}

function readFlags(el: Element, table: Record<string, string | null>): { types: string[]; pref?: number } {
  const types: string[] = [];
  let pref: number | undefined;
  for (const c of kids(el)) {
    const name = c.getName();
    // vcard-temp PREF is a yes/no flag; 1 is the vCard4 value that means "most preferred".
    if (name === "PREF") pref = 1;
    // hasOwn: element names are the sender's, and <constructor/> must not find Object.prototype's.
    const t = Object.hasOwn(table, name) ? table[name] : undefined;
    if (t) types.push(t);
  }
  return pref === undefined ? { types } : { types, pref };
}

function readPhoto(el: Element): string | undefined {
  const ext = cleanLine(childText(el, "EXTVAL"));
  if (ext !== "") return ext;
  const bin = childText(el, "BINVAL").replace(/\s+/g, "");
  // An empty <PHOTO/> carries no image: no photo, rather than an error.
  if (bin === "") return undefined;
  let mime = cleanLine(childText(el, "TYPE")).toLowerCase();
  // vCard3 writes the bare format ("JPEG") here; accept it from vcard-temp too.
  if (mime !== "" && !mime.includes("/")) mime = `image/${mime}`;
  if (mime === "") mime = sniffImage(bin) ?? "";
  if (mime === "") {
    throw new CardError(
      "vcard-temp: <PHOTO> has <BINVAL> but no <TYPE>, and the data is not PNG, JPEG, GIF or WebP",
    );
  }
  return `data:${mime};base64,${bin}`;
}

/**
 * Parses a `<vCard xmlns='vcard-temp'>`. More lenient than parseVCard4 because the format is older and
 * looser: a missing or empty <FN> is derived from <N>, <NICKNAME> or <ORGNAME>; entries with an empty
 * <NUMBER>, <USERID>, <URL>, <JABBERID> or address are skipped (XEP-0054's own example has them); elements
 * outside the model are ignored.
 */
export function cardFromVCardTemp(el: Element, limits: CardLimits): Card {
  checkSize(VT, Buffer.byteLength(el.toString(), "utf8"), limits);
  // XEP-0054 spells it vCard; the namespace is what identifies the format, so the case of the name is not
  // checked.
  if (el.getName().toLowerCase() !== "vcard" || el.getNS() !== NS.VCARD_TEMP) {
    throw new CardError(
      `vcard-temp: expected <vCard xmlns='${NS.VCARD_TEMP}'>, ` +
        `got <${clip(el.getName())} xmlns='${clip(el.getNS())}'>`,
    );
  }
  if (childElements(el).length === 0) {
    throw new CardError("vcard-temp: <vCard/> is empty (no card published)");
  }

  const props = new Map<string, Element[]>();
  for (const c of kids(el)) {
    const name = c.getName();
    if (KNOWN.has(name)) props.set(name, [...(props.get(name) ?? []), c]);
  }
  for (const [name, list] of props) checkCount(VT, `<${name}>`, list.length, limits, "elements");
  const all = (name: string): Element[] => props.get(name) ?? [];
  const first = (name: string): Element | undefined => all(name)[0];

  const card: Card = {
    fn: first("FN")?.getText() ?? "",
    nickname: all("NICKNAME").map((e) => e.getText()),
    tel: [],
    email: [],
    adr: [],
    url: [],
    impp: [],
    categories: all("CATEGORIES").flatMap((e) => kids(e, "KEYWORD").map((k) => k.getText())),
  };

  const nEl = first("N");
  if (nEl) {
    const part = (p: (typeof N_PARTS)[number]): string => childText(nEl, N_ELEMENTS[p]);
    card.n = {
      surname: part("surname"),
      given: part("given"),
      additional: part("additional"),
      prefix: part("prefix"),
      suffix: part("suffix"),
    };
  }
  const orgEl = first("ORG");
  if (orgEl) {
    card.org = { name: childText(orgEl, "ORGNAME"), units: kids(orgEl, "ORGUNIT").map((u) => u.getText()) };
  }

  if (cleanLine(card.fn) === "") {
    const n = card.n;
    const fromN = n ? cleanLine([n.prefix, n.given, n.additional, n.surname, n.suffix].join(" ")) : "";
    const derived = fromN || cleanLine(card.nickname[0] ?? "") || cleanLine(card.org?.name ?? "");
    if (derived === "") {
      throw new CardError(
        "vcard-temp: <FN> is missing and there is no <N>, <NICKNAME> or <ORGNAME> to derive it from",
      );
    }
    card.fn = derived;
  }

  const title = first("TITLE")?.getText();
  if (title !== undefined) card.title = title;
  const role = first("ROLE")?.getText();
  if (role !== undefined) card.role = role;
  // XEP-0292 §11.1.1 maps DESC to NOTE; a card with both keeps NOTE.
  const note = [first("NOTE"), first("DESC")].map((e) => e?.getText() ?? "").find((t) => cleanLine(t) !== "");
  if (note) card.note = note;
  const bday = first("BDAY")?.getText();
  if (bday !== undefined) card.bday = bday;
  const photoEl = first("PHOTO");
  const photo = photoEl && readPhoto(photoEl);
  if (photo !== undefined) card.photo = { uri: photo };

  card.tel = all("TEL")
    .map((e) => ({ key: "", ...readFlags(e, TEL_FLAGS), uri: childText(e, "NUMBER") }))
    .filter((t) => cleanLine(t.uri) !== "");
  card.email = all("EMAIL")
    .map((e) => ({ key: "", ...readFlags(e, EMAIL_FLAGS), value: childText(e, "USERID") }))
    .filter((t) => cleanLine(t.value) !== "");
  card.adr = all("ADR")
    .map((e) => {
      const adr = { key: "", ...readFlags(e, ADR_FLAGS) } as CardAdr;
      for (const p of ADR_PARTS) {
        // CTRY is the DTD's name; some old clients wrote COUNTRY.
        adr[p] = childText(e, ADR_ELEMENTS[p]) || (p === "country" ? childText(e, "COUNTRY") : "");
      }
      return adr;
    })
    .filter((a) => ADR_PARTS.some((p) => cleanLine(a[p]) !== ""));
  card.url = all("URL")
    .map((e) => ({ key: "", types: [], value: e.getText() }))
    .filter((u) => cleanLine(u.value) !== "");
  card.impp = all("JABBERID")
    .map((e) => cleanLine(e.getText()))
    .filter((jid) => jid !== "")
    .map((jid) => ({ key: "", types: [], uri: `xmpp:${jid}` }));

  return finishCard(card, limits, VT);
}

function flagsXml(item: CardItemBase, table: Record<string, string | null>): Element[] {
  const out = Object.entries(table)
    .filter(([, type]) => type !== null && item.types.includes(type))
    .map(([flag]) => xml(flag));
  // Only pref=1 is "the preferred one"; vcard-temp cannot say "second choice".
  if (item.pref === 1) out.push(xml("PREF"));
  return out;
}

/**
 * The JID inside an xmpp: URI (RFC 5122), or undefined for other IM schemes, which vcard-temp cannot carry.
 */
function jidOf(uri: string): string | undefined {
  const m = /^xmpp:(?:\/\/[^/]*\/)?([^?#]+)/i.exec(uri);
  if (!m?.[1]) return undefined;
  try {
    return decodeURIComponent(m[1]);
  } catch {
    return m[1];
  }
}

/** The card as vcard-temp, in XEP-0054 DTD order, for clients that only speak XEP-0054. */
export function cardToVCardTemp(card: Card): Element {
  const c = normalizeCard(card);
  const text = (name: string, value: string | undefined): Element | undefined =>
    value === undefined ? undefined : xml(name, null, value);
  const photo = c.photo && splitDataUri(c.photo.uri);
  return xml(
    "vCard",
    { xmlns: NS.VCARD_TEMP },
    text("FN", c.fn),
    c.n && xml("N", null, ...N_PARTS.map((p) => xml(N_ELEMENTS[p], null, c.n?.[p] ?? ""))),
    ...c.nickname.map((nick) => xml("NICKNAME", null, nick)),
    c.photo &&
      (photo
        ? xml("PHOTO", null, xml("TYPE", null, photo.mime), xml("BINVAL", null, photo.base64))
        : xml("PHOTO", null, xml("EXTVAL", null, c.photo.uri))),
    text("BDAY", c.bday),
    ...c.adr.map((a) =>
      xml("ADR", null, ...flagsXml(a, ADR_FLAGS), ...ADR_PARTS.map((p) => xml(ADR_ELEMENTS[p], null, a[p]))),
    ),
    ...c.tel.map((t) =>
      // vcard-temp numbers are plain text; a tel: scheme would otherwise reach the user as part of the
      // number.
      xml("TEL", null, ...flagsXml(t, TEL_FLAGS), xml("NUMBER", null, t.uri.replace(/^tel:/i, ""))),
    ),
    // XEP-0054 marks Internet mail addresses with INTERNET; vCard4 has no such type to carry, so every one
    // gets it.
    ...c.email.map((e) =>
      xml("EMAIL", null, xml("INTERNET"), ...flagsXml(e, EMAIL_FLAGS), xml("USERID", null, e.value)),
    ),
    ...c.impp.map((i) => jidOf(i.uri)).map((jid) => jid !== undefined && xml("JABBERID", null, jid)),
    text("TITLE", c.title),
    text("ROLE", c.role),
    c.org &&
      xml("ORG", null, xml("ORGNAME", null, c.org.name), ...c.org.units.map((u) => xml("ORGUNIT", null, u))),
    c.categories.length > 0 && xml("CATEGORIES", null, ...c.categories.map((k) => xml("KEYWORD", null, k))),
    text("NOTE", c.note),
    ...c.url.map((u) => xml("URL", null, u.value)),
    // XEP-0292 §11.1.1 treats DESC as vcard-temp's spelling of NOTE and legacy clients differ in which one
    // they display; writing both costs bytes, not meaning (NOTE wins on read).
    text("DESC", c.note),
  );
}
