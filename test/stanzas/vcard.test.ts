import { expect } from "chai";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { cardFromVCardTemp, cardToVCardTemp } from "../../stanzas/vcard-temp.js";
import {
  CardError,
  DEFAULT_CARD_LIMITS,
  FIELD_NAMES,
  cardHash,
  canonicalCardString,
  formatSize,
  normalizeCard,
  normalizeDate,
  type Card,
  type CardLimits,
} from "../../stanzas/model/card.js";
import { filterCard } from "../../stanzas/model/policy.js";
import { parseVCard4, serializeVCard4 } from "../../stanzas/vcard4.js";
import { cardFromVcf, cardToVcf } from "../../stanzas/vcf.js";
import { parseXml } from "../../stanzas/xml.js";

// Tests run from dist/test/…, golden files live in the source tree; mocha is started from the project root.
const GOLDEN = path.resolve(process.cwd(), "test", "golden");
const LIMITS: CardLimits = { ...DEFAULT_CARD_LIMITS };
const V4 = "urn:ietf:params:xml:ns:vcard-4.0";

interface Codec {
  dir: string;
  ext: string;
  parse(text: string, limits?: CardLimits): Card;
  serialize(card: Card): string;
}

const CODECS: Codec[] = [
  {
    dir: "vcard4",
    ext: ".xml",
    parse: (s, l = LIMITS) => parseVCard4(parseXml(s), l),
    serialize: (c) => serializeVCard4(c).toString(),
  },
  {
    dir: "vcard-temp",
    ext: ".xml",
    parse: (s, l = LIMITS) => cardFromVCardTemp(parseXml(s), l),
    serialize: (c) => cardToVCardTemp(c).toString(),
  },
  { dir: "vcf", ext: ".vcf", parse: (s, l = LIMITS) => cardFromVcf(s, l), serialize: (c) => cardToVcf(c) },
];

function codec(dir: string): Codec {
  const c = CODECS.find((x) => x.dir === dir);
  if (!c) throw new Error(`no codec ${dir}`);
  return c;
}

function golden(dir: string, file: string): string {
  return readFileSync(path.join(GOLDEN, dir, file), "utf8");
}

function goldenCard(dir: string, name: string): Card {
  return JSON.parse(golden(dir, `${name}.json`)) as Card;
}

function errorOf(fn: () => unknown): CardError {
  try {
    fn();
  } catch (e) {
    if (e instanceof CardError) return e;
    throw e;
  }
  throw new Error("expected a CardError, nothing was thrown");
}

function v4(inner: string): string {
  return `<vcard xmlns='${V4}'>${inner}</vcard>`;
}

function blankCard(fn: string): Card {
  return { fn, nickname: [], tel: [], email: [], adr: [], url: [], impp: [], categories: [] };
}

describe("stanzas/vcard", () => {
  describe("golden files", () => {
    for (const c of CODECS) {
      it(`${c.dir}: every <name>${c.ext} matches <name>.json both ways, or fails with <name>.error`, () => {
        const dir = path.join(GOLDEN, c.dir);
        const files = readdirSync(dir);
        const inputs = files.filter((f) => f.endsWith(c.ext)).sort();
        const failures: string[] = [];
        let pairs = 0;
        let errors = 0;
        for (const file of inputs) {
          const name = file.slice(0, -c.ext.length);
          const text = golden(c.dir, file);
          const jsonFile = path.join(dir, `${name}.json`);
          const errorFile = path.join(dir, `${name}.error`);
          if (existsSync(errorFile)) {
            errors++;
            const want = readFileSync(errorFile, "utf8").trim();
            try {
              c.parse(text);
              failures.push(`${file}: parsed, expected CardError ${JSON.stringify(want)}`);
            } catch (e) {
              if (!(e instanceof CardError)) failures.push(`${file}: threw non-CardError ${String(e)}`);
              else if (e.message !== want)
                failures.push(`${file}: got ${JSON.stringify(e.message)}, want ${JSON.stringify(want)}`);
            }
            continue;
          }
          if (!existsSync(jsonFile)) {
            failures.push(`${file}: no ${name}.json or ${name}.error next to it`);
            continue;
          }
          pairs++;
          const expected = JSON.parse(readFileSync(jsonFile, "utf8")) as Card;
          try {
            expect(c.parse(text), `${file} → model`).to.deep.equal(expected);
            const written = c.serialize(expected);
            expect(c.parse(written), `${name}.json → ${c.dir} → model`).to.deep.equal(expected);
            expect(c.serialize(c.parse(written)), `${name}: serializing is stable`).to.equal(written);
          } catch (e) {
            failures.push(e instanceof Error ? e.message : String(e));
          }
        }
        for (const f of files.filter((x) => x.endsWith(".json") || x.endsWith(".error"))) {
          const name = f.slice(0, f.lastIndexOf("."));
          if (!inputs.includes(`${name}${c.ext}`)) failures.push(`${f}: no ${name}${c.ext} next to it`);
        }
        expect(failures, failures.join("\n")).to.deep.equal([]);
        expect(pairs, "golden pairs found").to.be.greaterThan(4);
        expect(errors, "golden error cases found").to.be.greaterThan(4);
      });
    }

    it("the same business card reads identically from vCard4 XML and from .vcf", () => {
      expect(goldenCard("vcf", "business-full")).to.deep.equal(goldenCard("vcard4", "business-full"));
    });
  });

  describe("parseVCard4", () => {
    it("reads the minimal card", () => {
      expect(parseVCard4(parseXml(v4("<fn><text>Ada</text></fn>")), LIMITS)).to.deep.equal(blankCard("Ada"));
    });

    it("accepts an element built in memory (no string round trip)", () => {
      const card = goldenCard("vcard4", "business-full");
      expect(parseVCard4(serializeVCard4(card), LIMITS)).to.deep.equal(card);
    });

    it("returns the normalized shape: normalizeCard of a parsed card changes nothing", () => {
      const card = goldenCard("vcard4", "xep0292-example");
      expect(normalizeCard(card)).to.deep.equal(card);
      expect(normalizeCard(normalizeCard(card))).to.deep.equal(card);
    });

    describe("limits", () => {
      const big: CardLimits = {
        maxBytes: 4 * 1024 * 1024,
        maxPhotoBytes: 64 * 1024,
        maxItemsPerField: 50,
        maxTextLength: 4096,
      };

      it("maxBytes: the whole card", () => {
        const xml = v4(`<fn><text>Big</text></fn><note><text>${"x".repeat(3000)}</text></note>`);
        const e = errorOf(() => parseVCard4(parseXml(xml), { ...big, maxBytes: 1024 }));
        expect(e.message).to.match(/^vcard: card is 3\.\d KiB, limit 1 KiB$/);
      });

      it("maxPhotoBytes: an inline photo", () => {
        const prefix = "data:image/png;base64,";
        const uri = prefix + "A".repeat(210 * 1024 - prefix.length);
        const xml = v4(`<fn><text>P</text></fn><photo><uri>${uri}</uri></photo>`);
        const e = errorOf(() => parseVCard4(parseXml(xml), big));
        expect(e.message).to.equal("vcard: photo data URI is 210 KiB, limit 64 KiB");
      });

      it("maxPhotoBytes: an inline photo within the limit is kept as is", () => {
        const uri = "data:image/jpeg;base64," + "A".repeat(1000);
        const card = parseVCard4(
          parseXml(v4(`<fn><text>P</text></fn><photo><uri>${uri}</uri></photo>`)),
          big,
        );
        expect(card.photo).to.deep.equal({ uri });
      });

      it("maxItemsPerField: elements of one property", () => {
        const emails = Array.from({ length: 513 }, (_, i) => `<email><text>u${i}@example.com</text></email>`);
        const e = errorOf(() => parseVCard4(parseXml(v4(`<fn><text>M</text></fn>${emails.join("")}`)), big));
        expect(e.message).to.equal("vcard: 513 <email> elements, limit 50");
      });

      it("maxItemsPerField: values inside one list property", () => {
        const texts = Array.from({ length: 60 }, (_, i) => `<text>n${i}</text>`).join("");
        const e = errorOf(() =>
          parseVCard4(parseXml(v4(`<fn><text>M</text></fn><nickname>${texts}</nickname>`)), big),
        );
        expect(e.message).to.equal("vcard: 60 <nickname> values, limit 50");
      });

      it("maxItemsPerField: types on one entry", () => {
        const types = Array.from({ length: 51 }, (_, i) => `<text>t${i}</text>`).join("");
        const xml = v4(
          `<fn><text>M</text></fn><tel><parameters><type>${types}</type></parameters><uri>tel:1</uri></tel>`,
        );
        expect(errorOf(() => parseVCard4(parseXml(xml), big)).message).to.equal(
          "vcard: <tel> #1 has 51 types, limit 50",
        );
      });

      it("maxTextLength: one value, counted in characters not bytes", () => {
        const e = errorOf(() =>
          parseVCard4(
            parseXml(v4(`<fn><text>T</text></fn><note><text>${"é".repeat(5000)}</text></note>`)),
            big,
          ),
        );
        expect(e.message).to.equal("vcard: <note> is 5000 characters, limit 4096");
        const ok = parseVCard4(parseXml(v4(`<fn><text>${"😀".repeat(4096)}</text></fn>`)), big);
        expect(ok.fn).to.have.length(8192); // UTF-16 units; 4096 code points is within the limit
      });

      it("maxTextLength: names the entry and component", () => {
        const xml = v4(`<fn><text>T</text></fn><adr><street>${"s".repeat(100)}</street></adr>`);
        const e = errorOf(() => parseVCard4(parseXml(xml), { ...big, maxTextLength: 64 }));
        expect(e.message).to.equal("vcard: <adr> #1 <street> is 100 characters, limit 64");
      });
    });
  });

  describe("serializeVCard4", () => {
    it("writes the canonical form", () => {
      const card: Card = {
        ...blankCard("  Ada   Lovelace "),
        tel: [{ key: "", types: ["WORK", "voice", "work"], pref: 1, uri: "tel:+44-20-7946-0000" }],
        bday: "18151210",
      };
      expect(serializeVCard4(card).toString()).to.equal(
        `<vcard xmlns="${V4}"><fn><text>Ada Lovelace</text></fn>` +
          "<tel><parameters><type><text>voice</text><text>work</text></type>" +
          "<pref><integer>1</integer></pref></parameters><uri>tel:+44-20-7946-0000</uri></tel>" +
          "<bday><date>1815-12-10</date></bday></vcard>",
      );
    });

    it("writes a free-text number as <text> and a URI as <uri>", () => {
      const card: Card = {
        ...blankCard("T"),
        tel: [
          { key: "", types: [], uri: "+1 555 0100" },
          { key: "", types: [], uri: "sip:alice@example.com" },
        ],
      };
      const xml = serializeVCard4(card).toString();
      expect(xml).to.contain("<text>+1 555 0100</text>").and.contain("<uri>sip:alice@example.com</uri>");
    });
  });

  describe("keys", () => {
    it("derive from the value only: re-tagging keeps the key, a new number gets a new one", () => {
      const a = normalizeCard({
        ...blankCard("K"),
        tel: [{ key: "", types: ["home"], uri: "tel:+1-555-0100" }],
      });
      const b = normalizeCard({
        ...blankCard("K"),
        tel: [{ key: "x", types: ["work"], pref: 1, uri: "tel:+1-555-0100" }],
      });
      const c = normalizeCard({
        ...blankCard("K"),
        tel: [{ key: "", types: ["home"], uri: "tel:+1-555-0101" }],
      });
      expect(a.tel[0]?.key).to.match(/^tel:[0-9a-f]{12}$/);
      expect(b.tel[0]?.key).to.equal(a.tel[0]?.key);
      expect(c.tel[0]?.key).to.not.equal(a.tel[0]?.key);
    });

    it("survive reordering and are unique within a field", () => {
      const card = goldenCard("vcard4", "multiple-tels");
      const keys = card.tel.map((t) => t.key);
      expect(new Set(keys).size).to.equal(keys.length);
      const reversed = normalizeCard({ ...card, tel: [...card.tel].reverse() });
      expect(reversed.tel.find((t) => t.uri === "tel:+44-20-7946-0002")?.key).to.equal(
        card.tel.find((t) => t.uri === "tel:+44-20-7946-0002")?.key,
      );
    });
  });

  describe("cardHash / canonicalCardString", () => {
    const compact = v4(
      "<fn><text>Hash Me</text></fn>" +
        "<email><parameters><type><text>work</text><text>home</text></type></parameters>" +
        "<text>h@example.com</text></email><tel><uri>tel:+1</uri></tel>",
    );
    const pretty = `<vcard xml:lang="en" xmlns="${V4}">
      <tel>
        <uri> tel:+1 </uri>
      </tel>
      <fn><text>
        Hash   Me
      </text></fn>
      <x-ignored><text>not in the model</text></x-ignored>
      <email>
        <parameters><type><text>HOME</text><text>work</text><text>work</text></type></parameters>
        <text>h@example.com</text>
      </email>
    </vcard>`;

    it("ignores whitespace, element and attribute order, TYPE order and case, and ignored elements", () => {
      const a = parseVCard4(parseXml(compact), LIMITS);
      const b = parseVCard4(parseXml(pretty), LIMITS);
      expect(b).to.deep.equal(a);
      expect(canonicalCardString(b)).to.equal(canonicalCardString(a));
      expect(cardHash(b)).to.equal(cardHash(a));
      expect(cardHash(a)).to.match(/^[0-9a-f]{64}$/);
    });

    it("is the same for a parsed card and its serialized-and-reparsed self, and ignores keys", () => {
      const card = goldenCard("vcard4", "business-full");
      const again = parseVCard4(parseXml(serializeVCard4(card).toString()), LIMITS);
      expect(cardHash(again)).to.equal(cardHash(card));
      const rekeyed = { ...card, tel: card.tel.map((t) => ({ ...t, key: "bogus" })) };
      expect(cardHash(rekeyed)).to.equal(cardHash(card));
    });

    it("is the same whatever format the card arrived in", () => {
      expect(cardHash(goldenCard("vcf", "business-full"))).to.equal(
        cardHash(goldenCard("vcard4", "business-full")),
      );
    });

    it("is NFC-normalized: decomposed and composed accents hash alike", () => {
      expect(cardHash(blankCard("Zoe\u0308"))).to.equal(cardHash(blankCard("Zo\u00eb")));
    });

    it("changes when content changes, including the order of entries within a field", () => {
      const card = goldenCard("vcard4", "business-full");
      const base = cardHash(card);
      expect(cardHash({ ...card, title: "Commodore" })).to.not.equal(base);
      expect(cardHash({ ...card, tel: [...card.tel].reverse() })).to.not.equal(base);
      const { photo: _photo, ...noPhoto } = card;
      expect(cardHash(noPhoto)).to.not.equal(base);
    });
  });

  describe("filterCard", () => {
    const card = goldenCard("vcard4", "xep0292-example");

    it("keeps only the listed fields, and always fn", () => {
      const out = filterCard(card, { fields: ["email", "title"] });
      expect(out).to.deep.equal({
        ...blankCard(card.fn),
        title: card.title,
        email: card.email,
      });
      expect(filterCard(card, { fields: [] })).to.deep.equal(blankCard(card.fn));
    });

    it("keeps everything without a policy", () => {
      expect(filterCard(card, {})).to.deep.equal(card);
      expect(filterCard(card, { fields: [...FIELD_NAMES] })).to.deep.equal(card);
    });

    it("keeps only entries carrying one of the types; untyped entries go; single-valued fields stay", () => {
      const out = filterCard(card, { types: ["WORK"] });
      expect(out.tel.map((t) => t.uri)).to.deep.equal(["tel:+1-303-308-3282", "tel:+1-303-308-3219"]);
      expect(out.email.map((e) => e.value)).to.deep.equal(["psaintan@cisco.com"]);
      expect(out.adr.map((a) => a.code)).to.deep.equal(["80202"]);
      expect(out.impp.map((i) => i.uri)).to.deep.equal(["xmpp:psaintan@cisco.com"]);
      expect(out.url, "the url has no TYPE").to.deep.equal([]);
      expect(out.nickname).to.deep.equal(card.nickname);
      expect(out.note).to.equal(card.note);
      expect(out.tel.map((t) => t.key)).to.deep.equal(card.tel.slice(0, 2).map((t) => t.key));
    });

    it("combines fields and types, and an empty type list keeps no typed entries", () => {
      const out = filterCard(card, { fields: ["tel", "impp"], types: ["home"] });
      expect(out).to.deep.equal({
        ...blankCard(card.fn),
        tel: [card.tel[2]],
        impp: [card.impp[1]],
      });
      expect(filterCard(card, { types: [] }).tel).to.deep.equal([]);
    });

    it("returns a copy: mutating the result leaves the card alone", () => {
      const before = structuredClone(card);
      const out = filterCard(card, {});
      out.tel[0]?.types.push("mutated");
      out.nickname.push("mutated");
      expect(card).to.deep.equal(before);
    });
  });

  describe("normalizeDate", () => {
    const cases: Array<[string, string | undefined]> = [
      ["1966-08-06", "1966-08-06"],
      ["19660806", "1966-08-06"],
      ["1966-08", "1966-08"],
      ["1966", "1966"],
      ["--0806", "--08-06"],
      ["--08-06", "--08-06"],
      ["--0229", "--02-29"],
      ["--08", "--08"],
      ["---06", "---06"],
      ["19531015T231000Z", "1953-10-15"],
      ["2000-02-29", "2000-02-29"],
      ["1900-02-29", undefined],
      ["1966-13-01", undefined],
      ["1966-0806", undefined],
      ["T102200", undefined],
      ["06/08/1966", undefined],
    ];
    for (const [input, want] of cases) {
      it(`${input} → ${String(want)}`, () => expect(normalizeDate(input)).to.equal(want));
    }
  });

  it("formatSize rounds up so an overflow never prints as equal to its limit", () => {
    expect(formatSize(500)).to.equal("500 bytes");
    expect(formatSize(64 * 1024)).to.equal("64 KiB");
    expect(formatSize(64 * 1024 + 1)).to.equal("64.1 KiB");
    expect(formatSize(210 * 1024)).to.equal("210 KiB");
  });

  describe("vcard-temp", () => {
    it("round-trips the XEP-0054 example: vcard-temp → model → vcard-temp → same model", () => {
      const card = goldenCard("vcard-temp", "xep0054-example");
      const el = cardToVCardTemp(card);
      expect(el.getName()).to.equal("vCard");
      expect(el.getNS()).to.equal("vcard-temp");
      expect(cardFromVCardTemp(parseXml(el.toString()), LIMITS)).to.deep.equal(card);
    });

    it("writes flags, INTERNET, PREF, plain NUMBER, JID, TYPE+BINVAL and both NOTE and DESC", () => {
      const xml = cardToVCardTemp({
        ...blankCard("W"),
        tel: [{ key: "", types: ["work", "text", "textphone"], pref: 1, uri: "tel:+1-555-0100" }],
        email: [{ key: "", types: ["home"], pref: 2, value: "w@example.com" }],
        impp: [
          { key: "", types: [], uri: "xmpp:w@example.com?message" },
          { key: "", types: [], uri: "sip:w@example.com" },
        ],
        note: "hello",
        photo: { uri: "data:image/png;base64,iVBORw0KGgo=" },
      }).toString();
      expect(xml).to.contain("<TEL><WORK/><MSG/><PREF/><NUMBER>+1-555-0100</NUMBER></TEL>");
      expect(xml).to.contain("<EMAIL><INTERNET/><HOME/><USERID>w@example.com</USERID></EMAIL>");
      expect(xml).to.contain("<JABBERID>w@example.com</JABBERID>").and.not.contain("sip:");
      expect(xml).to.contain("<PHOTO><TYPE>image/png</TYPE><BINVAL>iVBORw0KGgo=</BINVAL></PHOTO>");
      expect(xml).to.contain("<NOTE>hello</NOTE>").and.contain("<DESC>hello</DESC>");
    });

    it("vCard4 → vcard-temp → model loses exactly what vcard-temp cannot say", () => {
      const card = goldenCard("vcard4", "xep0292-example");
      const back = cardFromVCardTemp(parseXml(cardToVCardTemp(card).toString()), LIMITS);
      const expected = normalizeCard({
        ...card,
        // NUMBER is plain text: the tel: scheme goes.
        tel: card.tel.map((t) => ({ ...t, uri: t.uri.replace(/^tel:/, "") })),
        // ADR flags are only HOME/WORK: "voice" on an address goes.
        adr: card.adr.map((a) => ({ ...a, types: a.types.filter((t) => t === "home" || t === "work") })),
        // URL and JABBERID have no flags.
        url: card.url.map((u) => ({ ...u, types: [] })),
        impp: card.impp.map((i) => ({ ...i, types: [] })),
      });
      expect(back).to.deep.equal(expected);
    });
  });

  describe("vcf", () => {
    it("writes vCard 4.0 with CRLF, folded at 75 octets without splitting a character", () => {
      const card: Card = {
        ...blankCard("Zoë Łukasiewicz-Ørsted 😀 " + "日本語テキスト".repeat(12)),
        note: "Ünïcödé 😀😀😀 ".repeat(20),
        org: { name: "Société Générale; Fils, Cie", units: ["R&D"] },
      };
      const text = cardToVcf(card);
      expect(text.startsWith("BEGIN:VCARD\r\nVERSION:4.0\r\n")).to.equal(true);
      expect(text.endsWith("END:VCARD\r\n")).to.equal(true);
      expect(text.replace(/\r\n/g, "")).to.not.match(/[\r\n]/);
      const lines = text.split("\r\n").slice(0, -1);
      expect(
        lines.some((l) => l.startsWith(" ")),
        "something was folded",
      ).to.equal(true);
      for (const line of lines) {
        expect(Buffer.byteLength(line, "utf8"), line).to.be.at.most(75);
        expect(line, "no lone surrogate at a fold").to.not.match(/^ ?[\uDC00-\uDFFF]|[\uD800-\uDBFF]$/);
      }
      expect(cardFromVcf(text, LIMITS)).to.deep.equal(normalizeCard(card));
    });

    it("round-trips every vCard4 golden card through .vcf unchanged", () => {
      for (const name of ["business-full", "xep0292-example", "multiple-tels", "non-ascii", "photo-inline"]) {
        const card = goldenCard("vcard4", name);
        expect(cardFromVcf(cardToVcf(card), LIMITS), name).to.deep.equal(card);
      }
    });

    it("reads an escaped semicolon in a plain text value as a semicolon", () => {
      const text = "BEGIN:VCARD\r\nVERSION:3.0\r\nFN:A\\; B\r\nNOTE:x\\;y\\,z\\\\w\r\nEND:VCARD\r\n";
      const card = cardFromVcf(text, LIMITS);
      expect(card.fn).to.equal("A; B");
      expect(card.note).to.equal("x;y,z\\w");
    });

    it("applies the same limits as the XML formats", () => {
      const many = Array.from({ length: 51 }, (_, i) => `EMAIL:u${i}@example.com\r\n`).join("");
      const text = `BEGIN:VCARD\r\nVERSION:4.0\r\nFN:M\r\n${many}END:VCARD\r\n`;
      expect(errorOf(() => cardFromVcf(text, LIMITS)).message).to.equal("vcf: 51 EMAIL properties, limit 50");
      expect(errorOf(() => cardFromVcf(text, { ...LIMITS, maxBytes: 100 })).message).to.match(
        /^vcf: card is 1\.\d KiB, limit 100 bytes$/,
      );
    });

    it("turns garbage into a CardError, never another exception", () => {
      const inputs = [
        "\u0000\u0001\u0002",
        "BEGIN:VCARD\r\nEND:VEVENT\r\n",
        ":::",
        "BEGIN:VCARD\r\nFN;:x\r\nEND:VCARD",
        "{}",
      ];
      for (const input of inputs) {
        expect(errorOf(() => cardFromVcf(input, LIMITS)).message, JSON.stringify(input)).to.match(/^vcf: /);
      }
    });
  });

  it("element and TYPE names that exist on Object.prototype are not mistaken for known flags", () => {
    const vt =
      "<vCard xmlns='vcard-temp'><FN>P</FN>" +
      "<TEL><constructor/><toString/><WORK/><NUMBER>1</NUMBER></TEL></vCard>";
    expect(cardFromVCardTemp(parseXml(vt), LIMITS).tel[0]?.types).to.deep.equal(["work"]);
    const vcf =
      "BEGIN:VCARD\r\nVERSION:3.0\r\nFN:P\r\nTEL;TYPE=constructor,hasOwnProperty:1\r\nEND:VCARD\r\n";
    expect(cardFromVcf(vcf, LIMITS).tel[0]?.types).to.deep.equal(["constructor", "hasownproperty"]);
  });

  describe("damaged input only ever yields a Card or a CardError", () => {
    function only(parse: () => Card, what: string): void {
      try {
        parse();
      } catch (e) {
        if (!(e instanceof CardError)) throw new Error(`${what}: ${String(e)}`, { cause: e });
      }
    }

    for (const [dir, file] of [
      ["vcard4", "xep0292-example.xml"],
      ["vcard4", "business-full.xml"],
      ["vcard-temp", "xep0054-example.xml"],
      ["vcard-temp", "all-flags.xml"],
    ] as const) {
      it(`${dir}/${file} with any one element removed`, () => {
        const parse = codec(dir).parse;
        const count = (
          parseXml(golden(dir, file))
            .toString()
            .match(/<[^/!?]/g) ?? []
        ).length;
        for (let victim = 1; victim < count; victim++) {
          const root = parseXml(golden(dir, file));
          let seen = 0;
          const prune = (el: ReturnType<typeof parseXml>): void => {
            el.children = el.children.filter((c) => typeof c === "string" || ++seen !== victim);
            for (const c of el.children) if (typeof c !== "string") prune(c);
          };
          prune(root);
          only(() => parse(root.toString()), `${file} without element #${victim}`);
        }
      });
    }

    it("vcf golden files truncated or with a byte changed", () => {
      let seed = 42;
      const rand = (n: number): number => {
        seed = (seed * 1103515245 + 12345) % 2 ** 31;
        return seed % n;
      };
      for (const file of readdirSync(path.join(GOLDEN, "vcf")).filter((f) => f.endsWith(".vcf"))) {
        const text = golden("vcf", file);
        for (let cut = 0; cut < text.length; cut += 5)
          only(() => cardFromVcf(text.slice(0, cut), LIMITS), file);
        for (let i = 0; i < 200 && text.length > 0; i++) {
          const at = rand(text.length);
          const junk = String.fromCharCode(rand(128));
          only(() => cardFromVcf(text.slice(0, at) + junk + text.slice(at + 1), LIMITS), `${file} @${at}`);
        }
      }
    });
  });

  it("every codec rejects a card over maxBytes before looking inside", () => {
    const tiny: CardLimits = { ...LIMITS, maxBytes: 10 };
    for (const c of CODECS) {
      const input = golden(c.dir, `minimal${c.ext}`);
      expect(errorOf(() => c.parse(input, tiny)).message, c.dir).to.match(
        /^(vcard|vcard-temp|vcf): card is \d+ bytes, limit 10 bytes$/,
      );
    }
  });
});
