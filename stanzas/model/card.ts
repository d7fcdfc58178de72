/**
 * The business-card model cardlink stores and shares: the normalized `Card`, its limits and value rules,
 * normalization, keys and the content hash. No XML here (stanzas/vcard4.ts, vcard-temp.ts and vcf.ts are the
 * codecs; docs/ARCHITECTURE.md has the import rules).
 *
 * Every wire format (vCard4 XML, vcard-temp, RFC 6350 text) parses into the same normalized `Card`, so
 * hashing, sharing control and conversion never care where a card came from. docs/VCARD.md has the mapping
 * tables and the reasons behind what is dropped.
 */
import { createHash } from "node:crypto";

/**
 * Thrown for any card that cannot be accepted; the message says what is wrong and is safe to show to the
 * user.
 */
export class CardError extends Error {
  override name = "CardError";
}

export interface CardLimits {
  /** The whole card as received (serialized XML or .vcf text), in UTF-8 bytes. */
  maxBytes: number;
  /**
   * An inline photo, measured as the UTF-8 bytes of its data: URI (what is stored and sent, not the decoded
   * image).
   */
  maxPhotoBytes: number;
  /**
   * Elements of one property (e.g. <tel>), values of a list (nickname, categories, org units), types on one
   * item.
   */
  maxItemsPerField: number;
  /** Any single text value or non-data URI, in Unicode code points. */
  maxTextLength: number;
}

/**
 * Sized for a business card: generous for text, small enough that a stanza with a photo stays well under 256
 * KiB.
 */
export const DEFAULT_CARD_LIMITS: Readonly<CardLimits> = Object.freeze({
  maxBytes: 128 * 1024,
  maxPhotoBytes: 64 * 1024,
  maxItemsPerField: 50,
  maxTextLength: 4096,
});

export const FIELD_NAMES = [
  "fn",
  "n",
  "nickname",
  "org",
  "title",
  "role",
  "tel",
  "email",
  "adr",
  "url",
  "impp",
  "note",
  "bday",
  "photo",
  "categories",
] as const;
export type FieldName = (typeof FIELD_NAMES)[number];

/** Fields whose entries carry TYPE/PREF parameters and a per-entry `key`. */
export const ITEM_FIELDS = ["tel", "email", "adr", "url", "impp"] as const;
export type ItemField = (typeof ITEM_FIELDS)[number];

export interface CardName {
  surname: string;
  given: string;
  additional: string;
  prefix: string;
  suffix: string;
}

export interface CardOrg {
  name: string;
  units: string[];
}

export interface CardItemBase {
  /**
   * `<field>:<12 hex>` from a SHA-256 of the entry's value (not its types or pref), plus `~2`, `~3`… for
   * repeated values. Re-tagging a number keeps its key; changing the number gives a new one. Ignored on
   * input: recomputed by normalizeCard and every parser.
   */
  key: string;
  /** Lowercase TYPE parameter values, deduplicated and sorted (a set: order carries no meaning). */
  types: string[];
  /** PREF parameter, 1 (most preferred) to 100. */
  pref?: number;
}

export interface CardTel extends CardItemBase {
  /** A URI (normally tel:+1-555-0100) or free text when the client sent <text>. */
  uri: string;
}
export interface CardEmail extends CardItemBase {
  value: string;
}
export interface CardAdr extends CardItemBase {
  pobox: string;
  ext: string;
  street: string;
  locality: string;
  region: string;
  code: string;
  country: string;
}
export interface CardUrl extends CardItemBase {
  value: string;
}
export interface CardImpp extends CardItemBase {
  /** An IM URI, e.g. xmpp:user@example.org. */
  uri: string;
}
export interface CardPhoto {
  /** https:, http: or data:image/…;base64,… */
  uri: string;
}

/**
 * A normalized card: strings trimmed, empty optional fields absent (never `undefined`-valued), list fields
 * always present. Parsers return this shape; hand-built cards become it through normalizeCard.
 */
export interface Card {
  fn: string;
  n?: CardName;
  nickname: string[];
  org?: CardOrg;
  title?: string;
  role?: string;
  tel: CardTel[];
  email: CardEmail[];
  adr: CardAdr[];
  url: CardUrl[];
  impp: CardImpp[];
  note?: string;
  /** RFC 7095 (jCard) date forms: YYYY-MM-DD, YYYY-MM, YYYY, --MM-DD, --MM or ---DD. */
  bday?: string;
  photo?: CardPhoto;
  categories: string[];
}

export const N_PARTS = ["surname", "given", "additional", "prefix", "suffix"] as const;
export const ADR_PARTS = ["pobox", "ext", "street", "locality", "region", "code", "country"] as const;
type AdrParts = Pick<CardAdr, (typeof ADR_PARTS)[number]>;

// -----------------------------------------------------------------------------------------------------------
// Shared by the three wire formats (stanzas/vcard4.ts, vcard-temp.ts and vcf.ts import these), so limits
// and messages agree.
// -----------------------------------------------------------------------------------------------------------

/** How one wire format names things in error messages. */
export interface CardFormatNames {
  /** Message prefix: "vcard", "vcard-temp", "vcf". */
  prefix: string;
  /** A field as the format spells it: "<tel>", "<TEL>", "TEL". */
  field(f: FieldName): string;
  /** A component of n/adr, or "orgname"/"orgunit", as the format spells it. */
  part(p: string): string;
}

/** 1536 → "1.5 KiB"; rounds up so a value just over a limit never prints as equal to it. */
export function formatSize(bytes: number): string {
  if (bytes < 1024) return `${bytes} bytes`;
  const kib = Math.ceil((bytes / 1024) * 10) / 10;
  return `${Number.isInteger(kib) ? kib.toFixed(0) : kib.toFixed(1)} KiB`;
}

/** Keeps user-controlled text in error messages short and on one line. */
export function quote(s: string): string {
  const flat = s.replace(/\s+/g, " ");
  return JSON.stringify(flat.length > 40 ? `${flat.slice(0, 40)}…` : flat);
}

export function checkSize(names: CardFormatNames, bytes: number, limits: CardLimits): void {
  if (bytes > limits.maxBytes) {
    throw new CardError(
      `${names.prefix}: card is ${formatSize(bytes)}, limit ${formatSize(limits.maxBytes)}`,
    );
  }
}

/**
 * Run before looking inside the elements, so an oversized list fails fast with a count rather than a detail.
 */
export function checkCount(
  names: CardFormatNames,
  label: string,
  count: number,
  limits: CardLimits,
  noun: string,
): void {
  if (count > limits.maxItemsPerField) {
    throw new CardError(`${names.prefix}: ${count} ${label} ${noun}, limit ${limits.maxItemsPerField}`);
  }
}

/** Parses a PREF value as it appears on the wire; the 1–100 range is checked by validation. */
export function parsePref(raw: string, names: CardFormatNames, label: string): number {
  const t = raw.trim();
  if (!/^\d{1,3}$/.test(t)) {
    throw new CardError(`${names.prefix}: ${label} pref must be an integer from 1 to 100, got ${quote(t)}`);
  }
  return Number(t);
}

const MONTH_DAYS = [31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];

function validDay(month: number, day: number, year?: number): boolean {
  if (month < 1 || month > 12 || day < 1) return false;
  if (month === 2 && year !== undefined && day === 29) {
    return (year % 4 === 0 && year % 100 !== 0) || year % 400 === 0;
  }
  return day <= (MONTH_DAYS[month - 1] ?? 0);
}

/**
 * Normalizes a birthday to the RFC 7095 (jCard) form. Accepts RFC 6350 basic (19660806, --0806), extended
 * (1966-08-06, --08-06) and date-times, whose time part is dropped: a birthday's hour is not business-card
 * data. Returns undefined for anything that is not a date.
 */
export function normalizeDate(s: string): string | undefined {
  const t = s.trim();
  const d = t.includes("T") ? t.slice(0, t.indexOf("T")) : t;
  let m: RegExpExecArray | null;
  if ((m = /^(\d{4})-?(\d{2})-?(\d{2})$/.exec(d)) && m[1] && m[2] && m[3]) {
    // One separator without the other (1966-0806) is not a date form anywhere.
    if (d.length !== 8 && d.length !== 10) return undefined;
    const [y, mo, da] = [Number(m[1]), Number(m[2]), Number(m[3])];
    return validDay(mo, da, y) ? `${m[1]}-${m[2]}-${m[3]}` : undefined;
  }
  if ((m = /^(\d{4})-(\d{2})$/.exec(d)) && m[1] && m[2]) {
    const mo = Number(m[2]);
    return mo >= 1 && mo <= 12 ? d : undefined;
  }
  if (/^\d{4}$/.test(d)) return d;
  if ((m = /^--(\d{2})-?(\d{2})$/.exec(d)) && m[1] && m[2]) {
    return validDay(Number(m[1]), Number(m[2])) ? `--${m[1]}-${m[2]}` : undefined;
  }
  if ((m = /^--(\d{2})$/.exec(d)) && m[1]) {
    const mo = Number(m[1]);
    return mo >= 1 && mo <= 12 ? d : undefined;
  }
  if ((m = /^---(\d{2})$/.exec(d)) && m[1]) {
    const da = Number(m[1]);
    return da >= 1 && da <= 31 ? d : undefined;
  }
  return undefined;
}

const DATA_URI = /^data:image\/[a-z0-9.+-]+(?:;[a-z0-9-]+=[a-z0-9._+-]*)*;base64,[A-Za-z0-9+/]*={0,2}$/;
// Host, then optionally a path/query/fragment: shaped so a near-miss cannot backtrack quadratically.
const HTTP_URI = /^https?:\/\/[^\s/?#]+(?:[/?#]\S*)?$/i;
const URI_SCHEME = /^[a-z][a-z0-9+.-]*:\S/i;
const TYPE_TOKEN = /^[a-z0-9][a-z0-9-]*$/;
// XML 1.0 cannot carry these, and a .vcf may: rejecting them here keeps every stored card serializable as a
// stanza.
// eslint-disable-next-line no-control-regex
const CONTROL_CHAR = /[\u0000-\u0008\u000B\u000C\u000E-\u001F\u007F\uFFFE\uFFFF]/;
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

/** Mime type and base64 payload of a data: image URI, or undefined if `uri` is not one. */
export function splitDataUri(uri: string): { mime: string; base64: string } | undefined {
  if (!DATA_URI.test(uri)) return undefined;
  const comma = uri.indexOf(",");
  const header = uri.slice(5, comma);
  const semi = header.indexOf(";");
  return { mime: header.slice(0, semi), base64: uri.slice(comma + 1) };
}

/** Whether a tel value is a URI (vCard4 <uri>, .vcf VALUE=uri) rather than free text (vCard4 <text>). */
export function isUri(value: string): boolean {
  return URI_SCHEME.test(value);
}

const PNG_MAGIC = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
const JPEG_MAGIC = Buffer.from([0xff, 0xd8, 0xff]);

/** Magic numbers of the formats clients actually publish, for inline photos sent without a media type. */
export function sniffImage(base64: string): string | undefined {
  const head = Buffer.from(base64.slice(0, 24), "base64");
  const ascii = (from: number, to: number): string => head.subarray(from, to).toString("latin1");
  if (head.subarray(0, 8).equals(PNG_MAGIC)) return "image/png";
  if (head.subarray(0, 3).equals(JPEG_MAGIC)) return "image/jpeg";
  if (ascii(0, 4) === "GIF8") return "image/gif";
  if (ascii(0, 4) === "RIFF" && ascii(8, 12) === "WEBP") return "image/webp";
  return undefined;
}

function codePoints(s: string): number {
  let n = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0xd800 || c > 0xdbff) n++;
  }
  return n;
}

function checkText(names: CardFormatNames, label: string, value: string, limits: CardLimits): void {
  const control = CONTROL_CHAR.exec(value);
  const lone = LONE_SURROGATE.exec(value);
  const bad = control ?? lone;
  if (bad) {
    const code = bad[0].charCodeAt(0).toString(16).toUpperCase().padStart(4, "0");
    const what = control ? "a control character" : "an unpaired surrogate";
    throw new CardError(`${names.prefix}: ${label} contains ${what} (U+${code})`);
  }
  const len = codePoints(value);
  if (len > limits.maxTextLength) {
    throw new CardError(`${names.prefix}: ${label} is ${len} characters, limit ${limits.maxTextLength}`);
  }
}

function checkPhoto(names: CardFormatNames, uri: string, limits: CardLimits): void {
  if (/^data:/i.test(uri)) {
    const bytes = Buffer.byteLength(uri, "utf8");
    if (bytes > limits.maxPhotoBytes) {
      throw new CardError(
        `${names.prefix}: photo data URI is ${formatSize(bytes)}, limit ${formatSize(limits.maxPhotoBytes)}`,
      );
    }
    // The pattern admits only ASCII, so no separate character check is needed.
    if (!DATA_URI.test(uri)) {
      throw new CardError(
        `${names.prefix}: photo data URI must be data:image/<type>;base64,<data>, got ${quote(uri)}`,
      );
    }
    return;
  }
  checkText(names, names.field("photo"), uri, limits);
  if (!HTTP_URI.test(uri)) {
    throw new CardError(
      `${names.prefix}: photo must be an https:, http: or data:image URI, got ${quote(uri)}`,
    );
  }
}

function itemValues(field: ItemField, item: CardItemBase): Array<[part: string | undefined, value: string]> {
  switch (field) {
    case "tel":
    case "impp":
      return [[undefined, (item as CardTel | CardImpp).uri]];
    case "email":
    case "url":
      return [[undefined, (item as CardEmail | CardUrl).value]];
    case "adr":
      return ADR_PARTS.map((p) => [p, (item as CardAdr)[p]]);
  }
}

/**
 * Validates a normalized card against the limits and value rules shared by every format. Parsers call it
 * after their own structural checks, so messages name things the way the sender's format does.
 */
export function validateCard(card: Card, limits: CardLimits, names: CardFormatNames): void {
  const { prefix } = names;
  const f = (x: FieldName): string => names.field(x);
  if (card.fn === "") throw new CardError(`${prefix}: ${f("fn")} is empty`);
  checkText(names, f("fn"), card.fn, limits);

  if (card.n) {
    for (const p of N_PARTS) checkText(names, `${f("n")} ${names.part(p)}`, card.n[p], limits);
  }
  for (const list of ["nickname", "categories"] as const) {
    checkCount(names, f(list), card[list].length, limits, "values");
    card[list].forEach((v, i) => checkText(names, `${f(list)} #${i + 1}`, v, limits));
  }
  if (card.org) {
    checkText(names, `${f("org")} ${names.part("orgname")}`, card.org.name, limits);
    checkCount(names, `${f("org")} ${names.part("orgunit")}`, card.org.units.length, limits, "values");
    card.org.units.forEach((u, i) =>
      checkText(names, `${f("org")} ${names.part("orgunit")} #${i + 1}`, u, limits),
    );
  }
  for (const single of ["title", "role", "note"] as const) {
    const v = card[single];
    if (v !== undefined) checkText(names, f(single), v, limits);
  }

  for (const field of ITEM_FIELDS) {
    const items: CardItemBase[] = card[field];
    checkCount(names, f(field), items.length, limits, "values");
    items.forEach((item, i) => {
      const label = `${f(field)} #${i + 1}`;
      if (item.types.length > limits.maxItemsPerField) {
        throw new CardError(
          `${prefix}: ${label} has ${item.types.length} types, limit ${limits.maxItemsPerField}`,
        );
      }
      for (const t of item.types) {
        if (!TYPE_TOKEN.test(t)) throw new CardError(`${prefix}: ${label} type ${quote(t)} is not a token`);
      }
      if (item.pref !== undefined && !(Number.isInteger(item.pref) && item.pref >= 1 && item.pref <= 100)) {
        throw new CardError(`${prefix}: ${label} pref must be an integer from 1 to 100, got ${item.pref}`);
      }
      for (const [part, value] of itemValues(field, item)) {
        checkText(names, part === undefined ? label : `${label} ${names.part(part)}`, value, limits);
      }
      if (field === "impp" && !URI_SCHEME.test((item as CardImpp).uri)) {
        throw new CardError(
          `${prefix}: ${label} ${quote((item as CardImpp).uri)} is not a URI ` +
            "(expected e.g. xmpp:user@example.org)",
        );
      }
    });
  }

  if (card.bday !== undefined && normalizeDate(card.bday) !== card.bday) {
    throw new CardError(
      `${prefix}: ${f("bday")} ${quote(card.bday)} is not a date ` +
        "(expected YYYY-MM-DD, YYYYMMDD, --MM-DD, YYYY-MM or YYYY)",
    );
  }
  if (card.photo) checkPhoto(names, card.photo.uri, limits);
}

/** normalizeCard then validateCard: the last step of every parser. */
export function finishCard(raw: Card, limits: CardLimits, names: CardFormatNames): Card {
  const card = normalizeCard(raw);
  validateCard(card, limits, names);
  return card;
}

// -----------------------------------------------------------------------------------------------------------
// Normalization, keys, hashing (filtering by share policy: policy.ts)
// -----------------------------------------------------------------------------------------------------------

function sha256(s: string): string {
  return createHash("sha256").update(s, "utf8").digest("hex");
}

/**
 * Whitespace in a one-line value is layout, not content (pretty-printers and line-wrapping clients add it),
 * and NFC makes a name typed on macOS (decomposed) equal to the same name typed elsewhere.
 */
export function cleanLine(s: string): string {
  return s.normalize("NFC").replace(/\s+/g, " ").trim();
}

/** Notes and street lines keep their line breaks; indentation from pretty-printed XML is dropped per line. */
export function cleanLines(s: string): string {
  return s
    .normalize("NFC")
    .split(/\r\n|\r|\n/)
    .map((line) => line.replace(/\s+/g, " ").trim())
    .join("\n")
    .trim();
}

function cleanList(list: readonly string[]): string[] {
  return list.map(cleanLine).filter((s) => s !== "");
}

function cleanTypes(types: readonly string[]): string[] {
  return [...new Set(types.map((t) => t.trim().toLowerCase()).filter((t) => t !== ""))].sort();
}

function cleanPhotoUri(uri: string): string {
  const t = uri.trim();
  if (!/^data:/i.test(t)) return t;
  // Clients wrap base64 at 76 columns and capitalise mime types; neither is content.
  const comma = t.indexOf(",");
  if (comma < 0) return t;
  return `${t.slice(0, comma).replace(/\s+/g, "").toLowerCase()},${t.slice(comma + 1).replace(/\s+/g, "")}`;
}

function base(item: CardItemBase): CardItemBase {
  const out: CardItemBase = { key: "", types: cleanTypes(item.types) };
  if (item.pref !== undefined) out.pref = item.pref;
  return out;
}

function assignKeys(field: ItemField, items: CardItemBase[]): void {
  const seen = new Map<string, number>();
  for (const item of items) {
    const identity = itemValues(field, item).map(([, v]) => v);
    const k = `${field}:${sha256(JSON.stringify(identity)).slice(0, 12)}`;
    const n = (seen.get(k) ?? 0) + 1;
    seen.set(k, n);
    item.key = n === 1 ? k : `${k}~${n}`;
  }
}

/**
 * Brings any card (parsed or hand-built) to the normalized shape: trims, lowercases and sorts types, drops
 * empty optional fields and entries without a value, normalizes bday when it is a date, recomputes keys.
 * Never throws for a value of type Card (every list field present); values it cannot fix are left for
 * validateCard to reject. Idempotent.
 */
export function normalizeCard(card: Card): Card {
  let n: CardName | undefined;
  if (card.n) {
    const src = card.n;
    const parts = Object.fromEntries(N_PARTS.map((p) => [p, cleanLine(src[p])])) as Record<
      keyof CardName,
      string
    >;
    if (N_PARTS.some((p) => parts[p] !== "")) n = parts;
  }
  let org: CardOrg | undefined;
  if (card.org) {
    const o = { name: cleanLine(card.org.name), units: cleanList(card.org.units) };
    if (o.name !== "" || o.units.length > 0) org = o;
  }
  const title = card.title === undefined ? "" : cleanLine(card.title);
  const role = card.role === undefined ? "" : cleanLine(card.role);
  const note = card.note === undefined ? "" : cleanLines(card.note);
  const bday = card.bday === undefined ? "" : cleanLine(card.bday);
  const photo = card.photo ? cleanPhotoUri(card.photo.uri) : "";
  // Literal in FIELD_NAMES order so JSON dumps of a card read in a stable, familiar order.
  const out: Card = {
    fn: cleanLine(card.fn),
    ...(n ? { n } : {}),
    nickname: cleanList(card.nickname),
    ...(org ? { org } : {}),
    ...(title ? { title } : {}),
    ...(role ? { role } : {}),
    tel: card.tel.map((t) => ({ ...base(t), uri: cleanLine(t.uri) })).filter((t) => t.uri !== ""),
    email: card.email.map((e) => ({ ...base(e), value: cleanLine(e.value) })).filter((e) => e.value !== ""),
    adr: card.adr
      .map((a) => ({
        ...base(a),
        ...(Object.fromEntries(
          ADR_PARTS.map((p) => [p, p === "street" ? cleanLines(a[p]) : cleanLine(a[p])]),
        ) as AdrParts),
      }))
      .filter((a) => ADR_PARTS.some((p) => a[p] !== "")),
    url: card.url.map((u) => ({ ...base(u), value: cleanLine(u.value) })).filter((u) => u.value !== ""),
    impp: card.impp.map((i) => ({ ...base(i), uri: cleanLine(i.uri) })).filter((i) => i.uri !== ""),
    ...(note ? { note } : {}),
    ...(bday ? { bday: normalizeDate(bday) ?? bday } : {}),
    ...(photo ? { photo: { uri: photo } } : {}),
    categories: cleanList(card.categories),
  };
  for (const field of ITEM_FIELDS) assignKeys(field, out[field]);
  return out;
}

function withoutKey<T extends CardItemBase>(item: T): Omit<T, "key"> {
  const { key: _key, ...rest } = item;
  return rest;
}

/**
 * A deterministic string of the card's content: JSON of the normalized card in FIELD_NAMES order, without
 * keys (they derive from content anyway). Equal models give equal strings whatever the input's element order,
 * attribute order, whitespace or TYPE order; the order of entries within a field is content (display order).
 */
export function canonicalCardString(card: Card): string {
  const c = normalizeCard(card);
  const o: Record<string, unknown> = {};
  for (const f of FIELD_NAMES) {
    const v = c[f];
    if (v === undefined) continue;
    o[f] = (ITEM_FIELDS as readonly string[]).includes(f) ? (v as CardItemBase[]).map(withoutKey) : v;
  }
  return JSON.stringify(o);
}

/** SHA-256 hex of canonicalCardString: same content, same hash, so no-op updates can be skipped. */
export function cardHash(card: Card): string {
  return sha256(canonicalCardString(card));
}
