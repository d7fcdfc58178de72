import { expect } from "chai";
import { StanzaError } from "../../stanzas/errors.js";
import { parseRsmRequest, parseRsmResult, rsmSetElement } from "../../stanzas/rsm.js";
import { parseXml } from "../../stanzas/xml.js";

const RSM = "http://jabber.org/protocol/rsm";
const req = (set: string) => parseXml(`<blocklist xmlns='urn:cardlink:0'>${set}</blocklist>`);
const refusal = (f: () => unknown): StanzaError => {
  try {
    f();
  } catch (e) {
    expect(e).to.be.instanceOf(StanzaError);
    return e as StanzaError;
  }
  throw new Error("expected a StanzaError");
};

describe("stanzas/rsm (XEP-0059 Result Set Management)", () => {
  it("no <set/>: the default page; <max/> and <after/> as given; max capped, never raised", () => {
    expect(parseRsmRequest(req(""), 100, 1000)).to.deep.equal({ max: 100 });
    expect(parseRsmRequest(req(`<set xmlns='${RSM}'><max>10</max></set>`), 100, 1000)).to.deep.equal({
      max: 10,
    });
    expect(
      parseRsmRequest(req(`<set xmlns='${RSM}'><max>5000</max><after>b@x</after></set>`), 100, 1000),
    ).to.deep.equal({ max: 1000, after: "b@x" });
    expect(parseRsmRequest(req(`<set xmlns='${RSM}'><max>0</max></set>`), 100, 1000)).to.deep.equal({
      max: 0,
    });
    // A <set/> in another namespace is not RSM.
    expect(parseRsmRequest(req("<set xmlns='urn:other'><max>1</max></set>"), 100, 1000)).to.deep.equal({
      max: 100,
    });
  });

  it("refuses malformed paging with bad-request, backward paging with feature-not-implemented", () => {
    for (const bad of ["<max>-1</max>", "<max>ten</max>", "<max>1e3</max>", "<after/>"]) {
      const e = refusal(() => parseRsmRequest(req(`<set xmlns='${RSM}'>${bad}</set>`), 100, 1000));
      expect(e.condition, bad).to.equal("bad-request");
      expect(e.message).to.match(/<(max|after)\/> in <set\/>/);
    }
    const long = refusal(() =>
      parseRsmRequest(req(`<set xmlns='${RSM}'><after>${"a".repeat(5000)}</after></set>`), 100, 1000),
    );
    expect(long.condition).to.equal("bad-request");
    expect(long.message.length).to.be.below(100);
    for (const back of ["<before/>", "<before>x</before>", "<index>3</index>"]) {
      const e = refusal(() => parseRsmRequest(req(`<set xmlns='${RSM}'>${back}</set>`), 100, 1000));
      expect(e.condition).to.equal("feature-not-implemented");
      expect(e.message).to.match(/forward only/);
    }
  });

  it("builds the answer's <set/> (golden) and reads it back", () => {
    const full = rsmSetElement({ first: { uid: "a@x", index: 0 }, last: "c@x", count: 800 });
    expect(full.toString()).to.equal(
      `<set xmlns="${RSM}"><first index="0">a@x</first><last>c@x</last><count>800</count></set>`,
    );
    const empty = rsmSetElement({ count: 3 });
    expect(empty.toString()).to.equal(`<set xmlns="${RSM}"><count>3</count></set>`);
    const wrap = (s: string) => parseXml(`<blocklist xmlns='urn:cardlink:0'>${s}</blocklist>`);
    expect(parseRsmResult(wrap(full.toString()))).to.deep.equal({
      first: { uid: "a@x", index: 0 },
      last: "c@x",
      count: 800,
    });
    expect(parseRsmResult(wrap(empty.toString()))).to.deep.equal({ count: 3 });
    expect(parseRsmResult(wrap(""))).to.equal(undefined);
    // Escaping round-trips: UIDs are opaque strings.
    const odd = rsmSetElement({ first: { uid: "a&b<c", index: 7 }, last: "a&b<c", count: 8 });
    expect(parseRsmResult(wrap(odd.toString()))?.first).to.deep.equal({ uid: "a&b<c", index: 7 });
  });
});
