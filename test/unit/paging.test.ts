import { expect } from "chai";
import { measure, StanzaBudget } from "../../component/runtime/budget.js";
import { DEFAULT_PAGE_ITEMS, MAX_PAGE_ITEMS, pageList } from "../../component/runtime/paging.js";
import { StanzaError } from "../../stanzas/errors.js";
import { parseRsmResult } from "../../stanzas/rsm.js";
import { parseXml, xml } from "../../stanzas/xml.js";

const RSM = "http://jabber.org/protocol/rsm";
const req = (set = "") => parseXml(`<blocklist xmlns='urn:cardlink:0'>${set}</blocklist>`);
const item = (j: string) => xml("item", { jid: j });

describe("list paging (RSM, cut by count and by size)", () => {
  const budget = new StanzaBudget(64 * 1024);
  const jids = Array.from({ length: 250 }, (_, i) => `u${String(i).padStart(3, "0")}@example.org`).reverse();

  it("without <set/>: the whole list in UID order when it fits (DEFAULT_PAGE_ITEMS), with a <set/>", async () => {
    expect(DEFAULT_PAGE_ITEMS).to.equal(MAX_PAGE_ITEMS);
    const p = await pageList(req(), jids, (j) => j, item, budget);
    expect(p.items).to.have.length(250);
    expect(p.items[0]?.attrs.jid).to.equal("u000@example.org");
    expect(parseRsmResult(xml("x", {}, p.set))).to.deep.equal({
      first: { uid: "u000@example.org", index: 0 },
      last: "u249@example.org",
      count: 250,
    });
  });

  it("walking with <after/> returns every item exactly once, even when one is removed in between", async () => {
    const seen: string[] = [];
    let list = [...jids];
    let after: string | undefined;
    for (let round = 0; round < 10; round++) {
      const set = `<set xmlns='${RSM}'><max>70</max>${after ? `<after>${after}</after>` : ""}</set>`;
      const p = await pageList(req(set), list, (j) => j, item, budget);
      seen.push(...p.items.map((i) => String(i.attrs.jid)));
      const r = parseRsmResult(xml("x", {}, p.set));
      if (!r?.last) break;
      after = r.last;
      // The item the next page starts with disappears: `after` is compared by order, not looked up.
      if (round === 0) list = list.filter((j) => j !== "u070@example.org" && j !== after);
    }
    const expected = [...jids].sort().filter((j) => j !== "u070@example.org");
    expect(seen).to.deep.equal(expected);
  });

  it("cuts by size: a page of large items stays within the list budget", async () => {
    const big = Array.from(
      { length: 100 },
      (_, i) => `${String(i).padStart(3, "0")}${"x".repeat(1000)}@example.org`,
    );
    const p = await pageList(req(`<set xmlns='${RSM}'><max>1000</max></set>`), big, (j) => j, item, budget);
    const bytes = p.items.reduce((n, i) => n + measure(i), 0);
    expect(p.items.length).to.be.within(1, 99);
    expect(bytes).to.be.at.most(budget.listBudget);
    expect(bytes + measure(item(big[0] as string))).to.be.above(budget.listBudget);
    expect(measure(xml("blocklist", { xmlns: "urn:cardlink:0" }, ...p.items, p.set))).to.be.at.most(
      budget.payloadBudget,
    );
  });

  it("max=0 gives the count only; max over the cap is lowered; past the end is an empty page", async () => {
    const zero = await pageList(req(`<set xmlns='${RSM}'><max>0</max></set>`), jids, (j) => j, item, budget);
    expect(zero.items).to.have.length(0);
    expect(zero.set.toString()).to.equal(`<set xmlns="${RSM}"><count>250</count></set>`);
    const many = Array.from({ length: MAX_PAGE_ITEMS + 5 }, (_, i) => `${i}`);
    const capped = await pageList(
      req(`<set xmlns='${RSM}'><max>5000</max></set>`),
      many,
      (j) => j,
      (j) => xml("i", {}, j),
      new StanzaBudget(16 * 1024 * 1024),
    );
    expect(capped.items).to.have.length(MAX_PAGE_ITEMS);
    const end = await pageList(
      req(`<set xmlns='${RSM}'><after>zzz</after></set>`),
      jids,
      (j) => j,
      item,
      budget,
    );
    expect(end.items).to.have.length(0);
    expect(parseRsmResult(xml("x", {}, end.set))).to.deep.equal({ count: 250 });
  });

  it("an item larger than a whole stanza is refused with resource-constraint, not an endless empty page", async () => {
    const huge = ["a", "x".repeat(70 * 1024)];
    let err: unknown;
    try {
      await pageList(req(`<set xmlns='${RSM}'><after>a</after></set>`), huge, (j) => j, item, budget);
    } catch (e) {
      err = e;
    }
    expect(err).to.be.instanceOf(StanzaError);
    expect((err as StanzaError).condition).to.equal("resource-constraint");
  });
});
