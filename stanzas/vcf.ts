/**
 * RFC 6350 vCard text (.vcf) ↔ the Card model (stanzas/model/card.ts), for import/export and address-book
 * apps. Lexing, unfolding, escaping and folding are ical.js's; this module only maps its jCard (RFC 7095)
 * arrays.
 */
import ICAL from "ical.js";
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
  quote,
  sniffImage,
  type Card,
  type CardAdr,
  type CardFormatNames,
  type CardItemBase,
  type CardLimits,
} from "./model/card.js";

const VCF: CardFormatNames = {
  prefix: "vcf",
  field: (f) => f.toUpperCase(),
  part: (p) => (p === "orgname" ? "name" : p === "orgunit" ? "unit" : p),
};

/** A jCard property: [name, parameters, value type, ...values]. */
type JProp = [string, Record<string, unknown>, string, ...unknown[]];

/**
 * vCard3 (RFC 2426) types vCard4 dropped, per property (XEP-0292 §11.3 lists the TEL and ADR ones); `null`
 * drops the type. "pref" is handled separately because vCard3 spells PREF as a TYPE.
 */
const LEGACY_TYPES: Record<string, Record<string, string | null>> = {
  tel: { msg: "text", bbs: null, modem: null, isdn: null, pcs: null },
  email: { internet: null, x400: null },
  adr: { dom: null, intl: null, postal: null, parcel: null },
};

// Every card field, plus vCard 3.0's X-JABBER (read as impp) counted next to IMPP.
const COUNTED: readonly string[] = FIELD_NAMES.flatMap((f) => (f === "impp" ? [f, "x-jabber"] : [f]));

function isJProp(v: unknown): v is JProp {
  return (
    Array.isArray(v) &&
    v.length >= 3 &&
    typeof v[0] === "string" &&
    typeof v[1] === "object" &&
    v[1] !== null &&
    typeof v[2] === "string"
  );
}

function isComponent(v: unknown): v is [string, unknown[], unknown[]] {
  return Array.isArray(v) && typeof v[0] === "string" && Array.isArray(v[1]);
}

/**
 * A single value as text; jCard gives strings, arrays for multi-values, and numbers/booleans for some types.
 */
function str(v: unknown): string {
  if (typeof v === "string") return v;
  if (Array.isArray(v)) return v.map(str).join(",");
  if (typeof v === "number" || typeof v === "boolean") return String(v);
  return "";
}

/**
 * The value of a property that is not structured (everything but N, ADR, ORG). ical.js undoes \\, \, and \n
 * here but not \; (see kewisch/ical.js#173), which vCard 3 requires and vCard 4 allows, so real exports
 * contain it. Only a literal backslash right before a bare semicolon is misread by this, which is rarer than
 * every escaped semicolon being kept with its backslash.
 */
function plain(v: unknown): string {
  return str(v).replace(/\\;/g, ";");
}

/** Component `i` of a structured value (N, ADR, ORG); a multi-valued component is joined with `sep`. */
function component(value: unknown, i: number, sep: string): string {
  if (!Array.isArray(value)) return i === 0 ? str(value) : "";
  const c: unknown = value[i];
  return Array.isArray(c) ? c.map(str).join(sep) : str(c);
}

function paramList(p: JProp, name: string): string[] {
  const v = p[1][name];
  const list = Array.isArray(v) ? v : v === undefined ? [] : [v];
  return list.flatMap((x) => str(x).split(","));
}

function readParams(p: JProp, field: string, label: string): { types: string[]; pref?: number } {
  const legacy = LEGACY_TYPES[field] ?? {};
  let pref: number | undefined;
  const types: string[] = [];
  for (const raw of paramList(p, "type")) {
    const t = raw.trim().toLowerCase();
    if (t === "pref") {
      pref = 1;
      continue;
    }
    // hasOwn, not `in`: a TYPE of "constructor" must not find Object.prototype's.
    const mapped = Object.hasOwn(legacy, t) ? legacy[t] : t;
    if (mapped) types.push(mapped);
  }
  const prefParam = paramList(p, "pref")[0];
  if (prefParam !== undefined) pref = parsePref(prefParam, VCF, label);
  return pref === undefined ? { types } : { types, pref };
}

/** vCard4 has a URI (often data:); vCard3 inlines base64 with ENCODING=b and the format in TYPE ("JPEG"). */
function readPhoto(p: JProp): string {
  const value = plain(p[3]).trim();
  // Google's vCard 3.0 export writes `PHOTO:https://…` without VALUE=uri, which vCard 3 types as binary.
  if (/^https?:\/\//i.test(value)) return value;
  const encoding = paramList(p, "encoding")[0]?.toLowerCase();
  if (p[2] !== "binary" && encoding !== "b" && encoding !== "base64") return value;
  const base64 = value.replace(/\s+/g, "");
  const declared = (paramList(p, "mediatype")[0] ?? paramList(p, "type")[0] ?? "").trim().toLowerCase();
  const mime = declared === "" ? sniffImage(base64) : declared.includes("/") ? declared : `image/${declared}`;
  if (mime === undefined) {
    throw new CardError(
      "vcf: PHOTO is inline binary without a TYPE, and the data is not PNG, JPEG, GIF or WebP",
    );
  }
  return `data:${mime};base64,${base64}`;
}

/**
 * Apple's "no year" birthday: iOS and macOS write `BDAY;X-APPLE-OMIT-YEAR=1604:1604-03-15` (year 1604 as a
 * placeholder). The model's form for a birthday without a year is `--MM-DD`.
 */
function readBday(p: JProp): string {
  const v = str(p[3]).trim();
  const omit = paramList(p, "x-apple-omit-year")[0];
  const m = /^(\d{4})-?(\d{2})-?(\d{2})/.exec(v);
  if (omit !== undefined && m && m[1] === omit.trim()) return `--${m[2]}-${m[3]}`;
  return v;
}

/** Apple's built-in X-ABLabel values (`_$!<Mobile>!$_`), as TYPE values. */
const APPLE_LABELS: Record<string, string[]> = {
  mobile: ["cell"],
  iphone: ["cell"],
  home: ["home"],
  work: ["work"],
  main: ["main"],
  other: [],
  homepage: ["home"],
  homefax: ["home", "fax"],
  workfax: ["work", "fax"],
  otherfax: ["fax"],
  pager: ["pager"],
  school: ["school"],
};

/**
 * An X-ABLabel value as TYPE values: Apple's built-in labels (`_$!<HomeFAX>!$_`) map to the RFC 6350 types; a
 * custom label (Apple's and Google's "item1.X-ABLabel:Holiday home") becomes one `x-` type made of its letters
 * and digits (`x-holiday-home`): the model has no free-text label, and a TYPE must be a token. A label with no
 * usable character is dropped.
 */
export function labelTypes(label: string): string[] {
  const t = label.trim();
  const apple = /^_\$!<(.*)>!\$_$/.exec(t);
  if (apple) {
    const known = APPLE_LABELS[(apple[1] ?? "").toLowerCase()];
    if (known) return known;
  }
  const token = (apple ? (apple[1] ?? "") : t)
    .normalize("NFKD")
    .replace(/\p{M}/gu, "")
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, "-")
    .replace(/^-+|-+$/g, "")
    .slice(0, 40)
    .replace(/-+$/, "");
  return token === "" ? [] : [`x-${token}`];
}

/**
 * Grouped properties (RFC 6350 §3.3 `item1.TEL`): Apple and Google attach a label to a property by putting an
 * `X-ABLabel` in the same group. The label becomes TYPE values of every property of its group (labelTypes); the
 * label properties themselves and the group names are dropped (the model has no groups).
 */
function applyGroupLabels(props: readonly JProp[]): JProp[] {
  const labels = new Map<string, string[]>();
  for (const p of props) {
    const group = p[1]["group"];
    if (p[0] === "x-ablabel" && typeof group === "string") {
      labels.set(group.toLowerCase(), [...(labels.get(group.toLowerCase()) ?? []), ...labelTypes(str(p[3]))]);
    }
  }
  if (labels.size === 0) return [...props];
  return props.map((p) => {
    const group = p[1]["group"];
    const extra = typeof group === "string" ? labels.get(group.toLowerCase()) : undefined;
    if (!extra || extra.length === 0 || p[0] === "x-ablabel") return p;
    const have = p[1]["type"];
    const types = Array.isArray(have) ? have.map(str) : have === undefined ? [] : [str(have)];
    return [p[0], { ...p[1], type: [...types, ...extra] }, p[2], ...p.slice(3)] as JProp;
  });
}

function parseFailure(input: string, e: unknown): CardError {
  if (/^VERSION:2\.1\s*$/im.test(input)) {
    return new CardError("vcf: vCard 2.1 is not supported (export as vCard 3.0 or 4.0)");
  }
  const msg = e instanceof Error ? e.message : String(e);
  return new CardError(`vcf: not a vCard: ${msg.length > 120 ? `${msg.slice(0, 120)}…` : msg}`);
}

/**
 * Parses one vCard 3.0 or 4.0 (.vcf text). Properties outside the model are ignored; vCard3 spellings
 * (TYPE=pref, ENCODING=b photos, X-JABBER) are mapped. A file with several cards is rejected rather than
 * silently truncated.
 */
export function cardFromVcf(text: string, limits: CardLimits): Card {
  checkSize(VCF, Buffer.byteLength(text, "utf8"), limits);
  // A UTF-8 byte-order mark makes ical.js fail on the BEGIN line with a TypeError, so it is skipped.
  const input = text.replace(/^\uFEFF/, "");
  let parsed: unknown;
  try {
    parsed = ICAL.parse(input);
  } catch (e) {
    // ical.js throws ParserError for bad lines and TypeError for some mismatched BEGIN/END: both mean "not a
    // vCard".
    throw parseFailure(input, e);
  }
  const comps: unknown[] = isComponent(parsed) ? [parsed] : Array.isArray(parsed) ? parsed : [];
  if (comps.length === 0) throw new CardError("vcf: no BEGIN:VCARD found");
  if (comps.length > 1) throw new CardError(`vcf: expected one vCard, found ${comps.length}`);
  const jcal = comps[0];
  if (!isComponent(jcal)) throw new CardError("vcf: no BEGIN:VCARD found");
  if (jcal[0] !== "vcard") {
    throw new CardError(`vcf: expected BEGIN:VCARD, found BEGIN:${jcal[0].toUpperCase()}`);
  }

  const byName = new Map<string, JProp[]>();
  try {
    const props: JProp[] = [];
    for (const prop of new ICAL.Component(jcal).getAllProperties()) {
      const raw: unknown = prop.jCal;
      if (isJProp(raw)) props.push(raw);
    }
    for (const raw of applyGroupLabels(props)) byName.set(raw[0], [...(byName.get(raw[0]) ?? []), raw]);
  } catch (e) {
    // Hydrating ical.js's own parse output should not fail; if it does, the input was still not a usable
    // vCard.
    throw parseFailure(input, e);
  }
  const all = (name: string): JProp[] => byName.get(name) ?? [];
  const first = (name: string): JProp | undefined => all(name)[0];

  const version = str(first("version")?.[3]).trim();
  if (version === "") throw new CardError("vcf: VERSION is missing (expected 3.0 or 4.0)");
  if (version === "2.1") throw new CardError("vcf: vCard 2.1 is not supported (export as vCard 3.0 or 4.0)");
  if (version !== "3.0" && version !== "4.0") {
    throw new CardError(`vcf: VERSION ${quote(version)} is not supported (expected 3.0 or 4.0)`);
  }
  for (const name of COUNTED) checkCount(VCF, name.toUpperCase(), all(name).length, limits, "properties");

  const fn = first("fn");
  if (!fn) throw new CardError("vcf: FN is required");
  const values = (p: JProp): string[] => p.slice(3).map(plain);

  const card: Card = {
    fn: plain(fn[3]),
    nickname: all("nickname").flatMap(values),
    tel: [],
    email: [],
    adr: [],
    url: [],
    impp: [],
    categories: all("categories").flatMap(values),
  };

  const n = first("n");
  if (n) {
    // Repeated values inside one component (two middle names) become one space-separated string in the model.
    const part = (i: number): string => component(n[3], i, " ");
    card.n = { surname: part(0), given: part(1), additional: part(2), prefix: part(3), suffix: part(4) };
  }
  const org = first("org");
  if (org) {
    const parts = Array.isArray(org[3]) ? org[3].map(str) : [str(org[3])];
    card.org = { name: parts[0] ?? "", units: parts.slice(1) };
  }
  for (const single of ["title", "role", "note"] as const) {
    const p = first(single);
    if (p) card[single] = plain(p[3]);
  }
  const bday = first("bday");
  if (bday) card.bday = readBday(bday);
  const photo = first("photo");
  if (photo) card.photo = { uri: readPhoto(photo) };

  const items = <T>(name: string, read: (p: JProp, label: string) => T): T[] =>
    all(name).map((p, i) => read(p, `${name.toUpperCase()} #${i + 1}`));
  const value = (p: JProp, label: string): string => {
    const v = plain(p[3]).trim();
    if (v === "") throw new CardError(`vcf: ${label} is empty`);
    return v;
  };
  card.tel = items("tel", (p, l) => ({ key: "", ...readParams(p, "tel", l), uri: value(p, l) }));
  card.email = items("email", (p, l) => ({ key: "", ...readParams(p, "email", l), value: value(p, l) }));
  card.url = items("url", (p, l) => ({ key: "", ...readParams(p, "url", l), value: value(p, l) }));
  card.impp = [
    ...items("impp", (p, l) => ({ key: "", ...readParams(p, "impp", l), uri: value(p, l) })),
    // vCard 3 exports may carry a JID as X-JABBER, without a scheme.
    ...items("x-jabber", (p, l) => ({ key: "", ...readParams(p, "impp", l), uri: `xmpp:${value(p, l)}` })),
  ];
  card.adr = items("adr", (p, l) => {
    const adr = { key: "", ...readParams(p, "adr", l) } as CardAdr;
    ADR_PARTS.forEach((part, i) => (adr[part] = component(p[3], i, ", ")));
    if (ADR_PARTS.every((part) => adr[part].trim() === "")) {
      throw new CardError(`vcf: ${l} has no address components`);
    }
    return adr;
  });

  return finishCard(card, limits, VCF);
}

function params(item: CardItemBase): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {};
  if (item.types.length > 0) out["type"] = item.types;
  if (item.pref !== undefined) out["pref"] = String(item.pref);
  return out;
}

/**
 * ical.js folds 75 octets of content and then prefixes the continuation space, giving 76-octet lines; RFC
 * 6350 §3.2 counts that space. Folding one octet earlier keeps every line within 75. Set and restored
 * synchronously, so no other ical.js caller can observe it.
 */
function stringifyFolded(comp: InstanceType<typeof ICAL.Component>): string {
  const saved = ICAL.foldLength;
  ICAL.foldLength = saved - 1;
  try {
    return comp.toString();
  } finally {
    ICAL.foldLength = saved;
  }
}

/** The card as vCard 4.0 text: CRLF line ends, lines folded at 75 octets without splitting a character. */
export function cardToVcf(card: Card): string {
  const c = normalizeCard(card);
  const props: JProp[] = [
    ["version", {}, "text", "4.0"],
    ["fn", {}, "text", c.fn],
  ];
  const n = c.n;
  if (n) props.push(["n", {}, "text", N_PARTS.map((p) => n[p])]);
  if (c.nickname.length > 0) props.push(["nickname", {}, "text", ...c.nickname]);
  if (c.org) props.push(["org", {}, "text", [c.org.name, ...c.org.units]]);
  if (c.title !== undefined) props.push(["title", {}, "text", c.title]);
  if (c.role !== undefined) props.push(["role", {}, "text", c.role]);
  for (const t of c.tel) props.push(["tel", params(t), isUri(t.uri) ? "uri" : "text", t.uri]);
  for (const e of c.email) props.push(["email", params(e), "text", e.value]);
  for (const a of c.adr) props.push(["adr", params(a), "text", ADR_PARTS.map((p) => a[p])]);
  for (const u of c.url) props.push(["url", params(u), "uri", u.value]);
  for (const i of c.impp) props.push(["impp", params(i), "uri", i.uri]);
  if (c.note !== undefined) props.push(["note", {}, "text", c.note]);
  if (c.bday !== undefined) props.push(["bday", {}, "date-and-or-time", c.bday]);
  if (c.photo) props.push(["photo", {}, "uri", c.photo.uri]);
  if (c.categories.length > 0) props.push(["categories", {}, "text", ...c.categories]);
  return `${stringifyFolded(new ICAL.Component(["vcard", props, []]))}\r\n`;
}

/** One card of a multi-card .vcf file: where it starts, and the card or why it was refused. */
export type VcfBookItem =
  { index: number; line: number; card: Card } | { index: number; line: number; error: string };

/** Most cards one .vcf file may hold (a bound on parsing work; the address book's own cap is lower). */
export const MAX_VCF_CARDS = 100_000;

/**
 * Splits a .vcf file holding several vCards (RFC 6350 §3.1: "one or more vCards") into the text of each, with
 * the 1-based line it begins on. A card runs from a `BEGIN:VCARD` line to the next `END:VCARD` line (case-
 * insensitive; folded continuation lines start with white space, so they never look like either). Text between
 * cards that is not blank is reported as an item of its own, so nothing in the file is skipped silently.
 */
export function splitVcf(text: string): Array<{ line: number; text: string; stray?: true }> {
  const lines = text.replace(/^\uFEFF/, "").split(/\r\n|\n|\r/);
  const out: Array<{ line: number; text: string; stray?: true }> = [];
  let start = -1;
  let stray = -1;
  for (let i = 0; i < lines.length; i++) {
    const l = (lines[i] as string).trimEnd();
    if (start < 0) {
      if (/^BEGIN:VCARD$/i.test(l)) {
        if (stray >= 0) out.push({ line: stray + 1, text: lines.slice(stray, i).join("\r\n"), stray: true });
        stray = -1;
        start = i;
      } else if (l.trim() !== "" && stray < 0) stray = i;
      continue;
    }
    if (/^END:VCARD$/i.test(l)) {
      out.push({ line: start + 1, text: `${lines.slice(start, i + 1).join("\r\n")}\r\n` });
      start = -1;
    }
  }
  if (start >= 0) out.push({ line: start + 1, text: lines.slice(start).join("\r\n") });
  if (stray >= 0) out.push({ line: stray + 1, text: lines.slice(stray).join("\r\n"), stray: true });
  return out;
}

/**
 * Parses a .vcf file of several cards (vCard 3.0 and 4.0, Apple's and Google's exports): every card is parsed
 * and validated on its own by cardFromVcf, so one bad card is reported (with its index and line) and the others
 * are still read. A card without END:VCARD and stray text between cards are reported as errors too.
 */
export function cardsFromVcf(text: string, limits: CardLimits): VcfBookItem[] {
  const parts = splitVcf(text);
  if (parts.length > MAX_VCF_CARDS) {
    throw new CardError(`vcf: the file holds ${parts.length} cards, at most ${MAX_VCF_CARDS} are read`);
  }
  return parts.map((p, index) => {
    if (p.stray) return { index, line: p.line, error: "vcf: text outside BEGIN:VCARD … END:VCARD" };
    if (!/^END:VCARD\s*$/im.test(p.text)) return { index, line: p.line, error: "vcf: END:VCARD is missing" };
    try {
      return { index, line: p.line, card: cardFromVcf(p.text, limits) };
    } catch (e) {
      if (e instanceof CardError) return { index, line: p.line, error: e.message };
      throw e;
    }
  });
}

/** Several cards as one vCard 4.0 file (each as cardToVcf writes it, one after another). */
export function cardsToVcf(cards: readonly Card[]): string {
  return cards.map(cardToVcf).join("");
}
