/**
 * Multi-card .vcf files (stanzas/vcf.ts cardsFromVcf / cardsToVcf; the address book's import and export):
 * Apple's and Google's exports (goldens in test/stanzas/golden/vcf-book/: grouped properties with X-ABLabel,
 * Apple's no-year birthdays, folded lines, vCard 3.0 TYPE spellings), per-card errors, and a round trip of a book
 * of several hundred cards.
 */
import { expect } from "chai";
import { readFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { DEFAULT_CARD_LIMITS, cardHash, normalizeCard, type Card } from "../../stanzas/model/card.js";
import { cardsFromVcf, cardsToVcf, labelTypes, splitVcf } from "../../stanzas/vcf.js";

const here = path.dirname(fileURLToPath(import.meta.url));
const golden = (f: string): string =>
  readFileSync(path.join(here, "../../../test/stanzas/golden/vcf-book", f), "utf8");
const cards = (text: string): Card[] =>
  cardsFromVcf(text, DEFAULT_CARD_LIMITS).map((i) => {
    if ("error" in i) throw new Error(i.error);
    return i.card;
  });

describe("multi-card .vcf (stanzas/vcf.ts)", () => {
  it("reads Apple's export: groups and X-ABLabel as types, no-year birthday, folded note", () => {
    const [john, acme] = cards(golden("apple.vcf"));
    expect(john?.fn).to.equal("Johnny Appleseed");
    expect(john?.email).to.deep.include({
      key: john?.email[0]?.key,
      types: [],
      pref: 1,
      value: "johnny@example.com",
    });
    expect(john?.tel.map((t) => [t.uri, t.types])).to.deep.equal([
      ["+1 555-0100", ["cell", "voice"]],
      ["+1 555-0101", ["x-holiday-home"]],
    ]);
    expect(john?.url[0]?.types).to.deep.equal(["home"]);
    expect(john?.bday).to.equal("--03-15");
    expect(john?.adr[0]?.locality).to.equal("Cupertino");
    expect(acme?.tel[0]?.types).to.deep.equal(["fax", "work"]);
    expect(acme?.note).to.equal(
      "A very long note that an iPhone folds at seventy-five octets when it writes the file out, with an escaped comma.",
    );
  });

  it("reads Google's export: TYPE=INTERNET dropped, custom labels, --MMDD birthdays, empty labels ignored", () => {
    const [grace, none] = cards(golden("google.vcf"));
    expect(grace?.email.map((e) => e.types)).to.deep.equal([["home"], []]);
    expect(grace?.adr[0]?.types).to.deep.equal(["x-office"]);
    expect(grace?.bday).to.equal("--12-09");
    expect(grace?.categories).to.deep.equal(["myContacts", "Friends"]);
    expect(grace?.photo?.uri).to.equal("https://lh3.googleusercontent.com/contacts/photo-grace");
    expect(none?.tel[0]?.types).to.deep.equal([]);
  });

  it("reports a bad card by index and line and reads the others; stray text and a missing END are errors", () => {
    const text =
      "junk before\r\nBEGIN:VCARD\r\nVERSION:3.0\r\nFN:ok\r\nEND:VCARD\r\n" +
      "BEGIN:VCARD\r\nVERSION:2.1\r\nFN:old\r\nEND:VCARD\r\nBEGIN:VCARD\r\nVERSION:4.0\r\nFN:cut";
    const items = cardsFromVcf(text, DEFAULT_CARD_LIMITS);
    expect(items.map((i) => ("error" in i ? [i.line, i.error] : [i.line, i.card.fn]))).to.deep.equal([
      [1, "vcf: text outside BEGIN:VCARD … END:VCARD"],
      [2, "ok"],
      [6, "vcf: vCard 2.1 is not supported (export as vCard 3.0 or 4.0)"],
      [10, "vcf: END:VCARD is missing"],
    ]);
    expect(splitVcf("\uFEFFBEGIN:VCARD\nFN:x\nEND:VCARD\n")).to.have.length(1);
  });

  it("maps labels to token types", () => {
    expect(labelTypes("_$!<Mobile>!$_")).to.deep.equal(["cell"]);
    expect(labelTypes("Ferienhaus Süd")).to.deep.equal(["x-ferienhaus-sud"]);
    expect(labelTypes("  ")).to.deep.equal([]);
  });

  it("round-trips a book of 600 cards, Apple- and Google-style ones among them, card for card", () => {
    const base = [...cards(golden("apple.vcf")), ...cards(golden("google.vcf"))];
    const book: Card[] = [];
    for (let i = 0; i < 600; i++) {
      const b = base[i % base.length] as Card;
      book.push(normalizeCard({ ...b, fn: `${b.fn} ${i}`, note: `entry ${i}: ${"ü".repeat(i % 90)}` }));
    }
    const text = cardsToVcf(book);
    const back = cards(text);
    expect(back.map(cardHash)).to.deep.equal(book.map(cardHash));
    expect(text.split("\r\n").every((l) => Buffer.byteLength(l) <= 75)).to.equal(true);
  });
});
