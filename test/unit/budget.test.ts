import { expect } from "chai";
import {
  ENVELOPE_RESERVE,
  ITEM_RESERVE,
  LIST_RESERVE,
  MAX_IQ_ID_BYTES,
  measure,
  Page,
  StanzaBudget,
} from "../../component/runtime/budget.js";
import { xml } from "../../stanzas/xml.js";

describe("stanza budget", () => {
  it("derives the payload and list budgets from the link limit in one place", () => {
    const b = new StanzaBudget(512 * 1024);
    expect(b.limitBytes).to.equal(524_288);
    expect(b.payloadBudget).to.equal(524_288 - ENVELOPE_RESERVE);
    expect(b.listBudget).to.equal(524_288 - ENVELOPE_RESERVE - LIST_RESERVE);
    expect(b.maxCardBytes).to.equal(b.listBudget - ITEM_RESERVE);
    expect(b.fits(b.payloadBudget)).to.equal(true);
    expect(b.fits(b.payloadBudget + 1)).to.equal(false);
    expect(b.allows(524_288)).to.equal(true);
    expect(b.allows(524_289)).to.equal(false);
    expect(() => new StanzaBudget(1000)).to.throw(RangeError);
  });

  it("the envelope reserve holds the largest result envelope cardlink can send", () => {
    // A 3071-byte full JID whose 1023-byte resource is all characters that need escaping, and the longest id the
    // router accepts, also all escaped: the worst case the reserve is sized for.
    const to = `${"l".repeat(1023)}@${"d".repeat(1023)}/${"'".repeat(1023)}`;
    const id = '"'.repeat(MAX_IQ_ID_BYTES);
    const iq = xml("iq", { type: "result", id, to, from: `cards.${"d".repeat(1017)}` });
    expect(Buffer.byteLength(to)).to.equal(3071);
    expect(measure(iq)).to.be.below(ENVELOPE_RESERVE);
  });

  it("the item reserve holds the <update><card> wrapper of a card from the longest bare JID", () => {
    const owner = `${"l".repeat(1023)}@${"d".repeat(1023)}`;
    const card = xml("card", {
      xmlns: "urn:cardlink:0",
      owner,
      version: "9007199254740991",
      hash: "f".repeat(64),
      format: "vcard-temp",
    });
    const update = xml(
      "update",
      { id: `card:${owner}:9007199254740991`, kind: "card", seq: "9007199254740991" },
      card,
    );
    expect(measure(update)).to.be.below(ITEM_RESERVE);
  });

  it("measures UTF-8 bytes of the serialization, escapes included", () => {
    expect(measure(xml("a", {}, "é&"))).to.equal("<a>é&amp;</a>".length + 1);
    expect(measure("ü")).to.equal(2);
  });

  it("a page takes a prefix while it fits, by size and by count, and never more", () => {
    const item = (n: number) => xml("item", { jid: "x".repeat(n) });
    const size = measure(item(90)); // 100 bytes
    const p = new Page(size * 3, 10);
    expect(p.add(item(90))).to.equal(true);
    expect(p.add(item(90))).to.equal(true);
    expect(p.add(item(91))).to.equal(false); // would be 301 bytes
    expect(p.full).to.equal(true);
    // Closed: a smaller item after a refused one is not taken (the page stays a prefix).
    expect(p.add(item(1))).to.equal(false);
    expect(p.items).to.have.length(2);
    expect(p.bytes).to.equal(2 * size);

    const byCount = new StanzaBudget(64 * 1024).page(2);
    expect(byCount.add(item(1)) && byCount.add(item(1))).to.equal(true);
    expect(byCount.add(item(1))).to.equal(false);
    expect(byCount.full).to.equal(true);

    const bySize = new StanzaBudget(64 * 1024).page(1000);
    let n = 0;
    while (bySize.add(item(1000))) n++;
    expect(bySize.bytes).to.be.at.most(64 * 1024 - ENVELOPE_RESERVE - LIST_RESERVE);
    expect(n).to.equal(Math.floor((64 * 1024 - ENVELOPE_RESERVE - LIST_RESERVE) / measure(item(1000))));
  });
});
