/**
 * The compact update form (PROTOCOL §10.8; issue 8): the `<active-device format/>` parser and builder, the
 * prerendered element (a rendering serialized once), and the `card` kind's compact rendering against golden
 * files (test/golden/compact/): the same view, the same hash, one vCard text node instead of vCard4 XML.
 * The golden files are the exact bytes cardlink writes; CARDLINK_GOLDEN_WRITE=1 rewrites them (review the diff).
 */
import { expect } from "chai";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { CardRenderCache, cardElement, cardFor } from "../../component/features/cards/render.js";
import { storeCard } from "../../component/features/cards/service.js";
import { StanzaBudget, measure } from "../../component/runtime/budget.js";
import type { PendingEntry, RenderCache } from "../../component/runtime/queue/api.js";
import {
  activeDeviceElement,
  parseActiveDevice,
  parseActiveDeviceDeclaration,
  updateElement,
  updatesElement,
} from "../../stanzas/cardlink.js";
import { StanzaError } from "../../stanzas/errors.js";
import { cardHash, DEFAULT_CARD_LIMITS, normalizeCard, type Card } from "../../stanzas/model/card.js";
import { filterCard } from "../../stanzas/model/policy.js";
import { parseVCard4 } from "../../stanzas/vcard4.js";
import { cardFromVcf, cardToVcf } from "../../stanzas/vcf.js";
import { parseXml, prerendered, xml, type Element } from "../../stanzas/xml.js";
import type { AccountId } from "../../storage/store.js";
import { bind, cardsWorld, type CardsWorld } from "../harness/seed-cards.js";

const GOLDEN = path.resolve(process.cwd(), "test", "golden", "compact");
/** The golden file's bytes; with CARDLINK_GOLDEN_WRITE=1 (re)written from `actual` first. */
function golden(name: string, actual: string): string {
  const file = path.join(GOLDEN, name);
  if (process.env.CARDLINK_GOLDEN_WRITE === "1" || !existsSync(file)) {
    if (process.env.CARDLINK_GOLDEN_WRITE !== "1") throw new Error(`golden file ${file} is missing`);
    mkdirSync(GOLDEN, { recursive: true });
    writeFileSync(file, actual);
  }
  return readFileSync(file, "utf8");
}

const el = (s: string): Element => parseXml(s);
const refused = (f: () => unknown): string => {
  try {
    f();
  } catch (e) {
    if (e instanceof StanzaError && e.condition === "bad-request") return e.message;
    throw e;
  }
  throw new Error("not refused");
};

function sampleCard(fn: string): Card {
  return normalizeCard({
    fn,
    nickname: [],
    org: { name: "Analytical Engines", units: [] },
    tel: [
      { key: "", types: ["work"], uri: "tel:+44-20-0001" },
      { key: "", types: ["home"], uri: "tel:+44-20-0002" },
    ],
    email: [{ key: "", types: ["work"], value: "ada@work.example" }],
    adr: [],
    url: [],
    impp: [],
    note: 'Notes on the engine & <more>, "quoted"',
    categories: [],
  });
}

describe("compact updates (PROTOCOL §10.8)", function () {
  this.timeout(30_000);

  describe("<active-device format/> (stanzas/cardlink.ts)", () => {
    it("parses the id and the optional format; refuses any other format with one text; the id comes first", () => {
      const p = (s: string) => parseActiveDeviceDeclaration(el(s));
      expect(p("<active-device xmlns='urn:cardlink:0' id='bob-phone'/>")).to.deep.equal({
        deviceId: "bob-phone",
      });
      expect(p("<active-device xmlns='urn:cardlink:0' id='bob-phone' format='vcf'/>")).to.deep.equal({
        deviceId: "bob-phone",
        format: "vcf",
      });
      expect(p("<active-device xmlns='urn:cardlink:0' id='bob-phone' format='vcard4'/>")).to.deep.equal({
        deviceId: "bob-phone",
        format: "vcard4",
      });
      for (const bad of ["", "VCF", "vcard-temp", "vcf ", "json"]) {
        expect(refused(() => p(`<active-device xmlns='urn:cardlink:0' id='x' format='${bad}'/>`))).to.equal(
          `format must be one of vcard4, vcf, not '${bad}'`,
        );
      }
      expect(refused(() => p("<active-device xmlns='urn:cardlink:0' format='nope'/>"))).to.equal(
        "<active-device/> needs a 'id' attribute",
      );
      expect(refused(() => p("<active-device xmlns='urn:cardlink:0' id='a b' format='vcf'/>"))).to.equal(
        "device id must be 1–128 characters of A–Z a–z 0–9 . _ : -",
      );
      // §10.7's parser still reads the id alone (the format is not its business).
      expect(parseActiveDevice(el("<active-device xmlns='urn:cardlink:0' id='d' format='vcf'/>"))).to.equal(
        "d",
      );
    });

    it("echoes the declaration byte for byte: the format only when it was asked for", () => {
      expect(activeDeviceElement("bob-phone", "vcf").toString()).to.equal(
        '<active-device xmlns="urn:cardlink:0" id="bob-phone" format="vcf"/>',
      );
      expect(activeDeviceElement("bob-phone", "vcard4").toString()).to.equal(
        '<active-device xmlns="urn:cardlink:0" id="bob-phone" format="vcard4"/>',
      );
      expect(activeDeviceElement("bob-phone").toString()).to.equal(
        '<active-device xmlns="urn:cardlink:0" id="bob-phone"/>',
      );
      for (const f of ["vcf", "vcard4"] as const)
        expect(parseActiveDeviceDeclaration(activeDeviceElement("d", f))).to.deep.equal({
          deviceId: "d",
          format: f,
        });
    });
  });

  describe("prerendered (stanzas/xml.ts)", () => {
    const source = (): Element =>
      xml(
        "card",
        { xmlns: "urn:cardlink:0", owner: "a@b", version: "1", hash: "h" },
        xml(
          "vcard",
          { xmlns: "urn:ietf:params:xml:ns:vcard-4.0" },
          xml("fn", {}, xml("text", {}, "A & <B> é")),
        ),
      );

    it("serializes as its source, alone and inside a parent, and reads as its source", () => {
      const src = source();
      const p = prerendered(src);
      expect(p.toString()).to.equal(src.toString());
      expect(p.serialized).to.equal(src.toString());
      expect(p.bytes).to.equal(Buffer.byteLength(src.toString(), "utf8"));
      expect(measure(p)).to.equal(p.bytes);
      const wrap = (c: Element): string =>
        updatesElement([updateElement({ id: "card:a@b:1", kind: "card", seq: 1 }, c)]).toString();
      expect(wrap(p)).to.equal(wrap(source()));
      expect(p.getChild("vcard")?.getChild("fn")?.getChildText("text")).to.equal("A & <B> é");
      expect(p.attrs.owner).to.equal("a@b");
      expect(p.is("card", "urn:cardlink:0")).to.equal(true);
      expect(prerendered(p), "a prerendered element is not wrapped again").to.equal(p);
    });

    it("keeps the serialization it was built with (it is built from renderings nobody changes)", () => {
      const src = source();
      const p = prerendered(src);
      const first = p.toString();
      src.attrs.version = "2";
      expect(p.toString()).to.equal(first);
    });
  });

  describe("the card kind's compact rendering (features/cards/render.ts)", () => {
    let w: CardsWorld;
    beforeEach(async () => {
      w = await cardsWorld();
    });
    afterEach(() => w.close());

    const roundCache = (): RenderCache => {
      const m = new Map<string, Promise<unknown>>();
      return {
        get<T>(kind: string, key: string, load: () => Promise<T>): Promise<T> {
          const k = `${kind}\u0000${key}`;
          if (!m.has(k)) m.set(k, load());
          return m.get(k) as Promise<T>;
        },
      };
    };
    const budget = new StanzaBudget(256 * 1024);
    const render = (lane: number, compact: boolean | undefined) =>
      w.read("t.render", (r) => {
        const e: PendingEntry = {
          lane: lane as AccountId,
          seq: 7,
          ord: 0,
          kind: "card",
          subject: "1",
          subjectAccount: 1 as AccountId,
        };
        return w.kind.render(
          { ...r, read: r.read, budget, cache: roundCache(), ...(compact === undefined ? {} : { compact }) },
          e,
        );
      });
    const page = (content: Element): string =>
      updatesElement([
        updateElement({ id: "card:alice@localhost:7", kind: "card", seq: 7 }, content),
      ]).toString();

    it("golden: the holder's filtered view as one vCard text node, same attributes as vCard4; not compact = today's bytes", async () => {
      await bind(w, "alice@localhost", "bob@localhost", { aPolicy: { types: ["work"] } });
      await bind(w, "alice@localhost", "carol@localhost");
      const card = sampleCard("Ada & Co");
      await storeCard(w, "alice@localhost", card);
      const view = filterCard(card, { types: ["work"] });
      const bobCompact = (await render(2, true)) as Element;
      const bobClassic = (await render(2, false)) as Element;
      expect(page(bobCompact)).to.equal(golden("updates-vcf-filtered.xml", page(bobCompact)));
      expect(page(bobClassic)).to.equal(golden("updates-vcard4-filtered.xml", page(bobClassic)));
      // Without the flag (a renderer context built before §10.8): exactly the vCard4 bytes.
      expect(page((await render(2, undefined)) as Element)).to.equal(page(bobClassic));
      // The compact card is §5.2's `vcf` rendering of the same view: same owner, version, hash.
      expect(bobCompact.toString()).to.equal(
        cardElement(
          { owner: "alice@localhost", version: 1, hash: cardHash(view) },
          cardToVcf(view),
        ).toString(),
      );
      expect(bobCompact.attrs).to.deep.equal(bobClassic.attrs);
      // What a client reads back from either form is the same card (the holder's view).
      const text = bobCompact.children.filter((c): c is string => typeof c === "string").join("");
      const vcard4 = bobClassic.getChild("vcard") as Element;
      expect(cardFromVcf(text, DEFAULT_CARD_LIMITS)).to.deep.equal(parseVCard4(vcard4, DEFAULT_CARD_LIMITS));
      expect(cardFromVcf(text, DEFAULT_CARD_LIMITS)).to.deep.equal(view);
      // Carol sees everything: the stored hash, the whole card.
      const carol = (await render(3, true)) as Element;
      expect(page(carol)).to.equal(golden("updates-vcf-all.xml", page(carol)));
      expect(carol.attrs.hash).to.equal(cardHash(card));
      // The compact form is smaller on the wire, which is its point (Prosody parses one text node).
      expect(measure(bobCompact)).to.be.lessThan(measure(bobClassic));
    });

    it("N holders with the same view share one rendering, serialized once; another JID or version renders anew", () => {
      const cache = new CardRenderCache();
      const card = sampleCard("Ada");
      const stored = { owner: 1 as AccountId, version: 3, hash: cardHash(card), card, seq: 9, updatedAt: 0 };
      const a = cardFor(stored, "alice@localhost", [null], "vcf", cache);
      const b = cardFor(stored, "alice@localhost", [null, { types: ["work"] }], "vcf", cache);
      expect(b, "the same element: one serialization for both holders").to.equal(a);
      expect({ misses: cache.misses, hits: cache.hits }).to.deep.equal({ misses: 1, hits: 1 });
      expect(cardFor(stored, "alice@localhost", [null], "vcard4", cache)).to.not.equal(a);
      const renamed = cardFor(stored, "ada@localhost", [null], "vcf", cache);
      expect(renamed.attrs.owner).to.equal("ada@localhost");
      expect(renamed.toString()).to.contain('owner="ada@localhost"');
      const next = { ...stored, version: 4 };
      expect(cardFor(next, "alice@localhost", [null], "vcf", cache).attrs.version).to.equal("4");
    });
  });
});
