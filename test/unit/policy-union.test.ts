/**
 * unionView (stanzas/model/policy.ts, docs/REDESIGN.md §2.5.4): what a holder sees through several audience paths.
 * One policy must be filterCard exactly (same object shape, same hash), so today's holders see no change.
 */
import { expect } from "chai";
import { cardHash, canonicalCardString, normalizeCard, type Card } from "../../stanzas/model/card.js";
import { filterCard, unionView, type SharePolicy } from "../../stanzas/model/policy.js";

const card: Card = normalizeCard({
  fn: "Ada Lovelace",
  n: { surname: "Lovelace", given: "Ada", additional: "", prefix: "", suffix: "" },
  nickname: ["Ada"],
  org: { name: "Analytical Engines", units: ["Research"] },
  title: "Countess",
  role: "Programmer",
  tel: [
    { key: "", types: ["work"], uri: "tel:+44-20-0001" },
    { key: "", types: ["home"], uri: "tel:+44-20-0002" },
    { key: "", types: [], uri: "tel:+44-20-0003" },
  ],
  email: [
    { key: "", types: ["home"], value: "ada@home.example" },
    { key: "", types: ["work"], value: "ada@work.example" },
  ],
  adr: [],
  url: [{ key: "", types: ["work"], value: "https://engines.example" }],
  impp: [],
  note: "Notes on the engine",
  bday: "1815-12-10",
  photo: { uri: "https://engines.example/ada.png" },
  categories: ["math"],
});

const POLICIES: Array<SharePolicy | null> = [
  null,
  {},
  { fields: ["tel"] },
  { types: ["work"] },
  { fields: ["email", "note"], types: ["home"] },
  { fields: [] },
  { fields: ["photo", "categories", "bday", "n", "org"] },
];

describe("unionView: the union of several paths' views", () => {
  it("one policy is filterCard exactly: same content, same hash, same key order", () => {
    for (const p of POLICIES) {
      const u = unionView(card, [p]);
      const f = p === null ? card : filterCard(card, p);
      expect(u, JSON.stringify(p)).to.deep.equal(f);
      expect(JSON.stringify(u)).to.equal(JSON.stringify(f));
      expect(cardHash(u)).to.equal(cardHash(f));
    }
  });

  it("a null policy among others shows the whole card", () => {
    expect(unionView(card, [{ fields: [] }, null])).to.deep.equal(card);
    expect(cardHash(unionView(card, [null, { types: ["home"] }]))).to.equal(cardHash(card));
  });

  it("a field is present if any policy shows it; an entry if any policy shows that entry, in the card's order", () => {
    const u = unionView(card, [
      { fields: ["tel"], types: ["home"] },
      { fields: ["email", "tel"], types: ["work"] },
    ]);
    expect(u.fn).to.equal("Ada Lovelace");
    expect(u.tel.map((t) => t.uri)).to.deep.equal(["tel:+44-20-0001", "tel:+44-20-0002"]); // untagged: by neither
    expect(u.email.map((e) => e.value)).to.deep.equal(["ada@work.example"]);
    expect(u.url).to.deep.equal([]);
    expect(u.note).to.equal(undefined);
    expect(u.nickname).to.deep.equal([]);

    const v = unionView(card, [{ fields: ["note"] }, { fields: ["nickname", "photo"], types: ["home"] }]);
    expect(v.note).to.equal(card.note);
    expect(v.nickname).to.deep.equal(["Ada"]);
    expect(v.photo).to.deep.equal(card.photo);
    expect(v.tel).to.deep.equal([]);
    expect(v.title).to.equal(undefined);
  });

  it("does not depend on the order of the policies, and is at least each single view", () => {
    const ps: SharePolicy[] = [
      { fields: ["tel", "note"], types: ["home"] },
      { types: ["work"] },
      { fields: ["bday"] },
    ];
    const u = unionView(card, ps);
    expect(canonicalCardString(unionView(card, [...ps].reverse()))).to.equal(canonicalCardString(u));
    for (const p of ps) {
      const f = filterCard(card, p);
      for (const field of ["tel", "email", "url"] as const) {
        const keys = new Set(u[field].map((i) => i.key));
        for (const item of f[field]) expect(keys.has(item.key), `${field} ${item.key}`).to.equal(true);
      }
      for (const k of ["n", "org", "title", "role", "note", "bday", "photo"] as const) {
        if (f[k] !== undefined) expect(u[k], k).to.deep.equal(f[k]);
      }
    }
    // The union of two disjoint type filters equals one policy with both types.
    expect(unionView(card, [{ types: ["work"] }, { types: ["home"] }])).to.deep.equal(
      filterCard(card, { types: ["work", "home"] }),
    );
  });

  it("no policy is a caller bug (the holder does not see the card), not an empty card", () => {
    expect(() => unionView(card, [])).to.throw(/no policy/);
  });

  it("never shares the input's objects (the result may be mutated by a renderer)", () => {
    const u = unionView(card, [{ types: ["work"] }, { types: ["home"] }]);
    u.tel[0]!.uri = "changed";
    u.nickname.push("x");
    expect(card.tel[0]?.uri).to.equal("tel:+44-20-0001");
    expect(card.nickname).to.deep.equal(["Ada"]);
  });
});
