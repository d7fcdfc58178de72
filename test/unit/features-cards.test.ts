/**
 * component/features/cards and devices (issue 8 S9) on the new core, over a temp SqliteStore with schema 2000 and
 * the real runtime parts (test/harness/seed-cards.ts): the domain rules of storeCard (an unchanged card takes no
 * seq and notifies nobody; a change reaches every holder and nobody else), renderings byte-identical to the old
 * component/cards.ts for the same card and policy, the render cache, sync pages against seeded data (including
 * tombstones and a budget cut that must not end inside a seq), and the device routes on the accounts part.
 *
 * The old renderings are golden files (test/golden/legacy-core/cards/, README.md there): what component/cards.ts
 * `cardElement(meta, cardContent(view, format))` produced for the same inputs, captured before issue 8 S11
 * deleted it.
 */
import { expect } from "chai";
import { cardVersion, getCard as apiGetCard } from "../../component/features/cards/api.js";
import type { StoredCard } from "../../component/features/cards/repo.js";
import { CardRenderCache, cardFor, FORMATS, type Format } from "../../component/features/cards/render.js";
import { cardForViewer, storeCard } from "../../component/features/cards/service.js";
import { syncPage, type SyncResult } from "../../component/features/cards/sync.js";
import { listDevices, registerDevice, removeDevice } from "../../component/features/devices/index.js";
import { ENVELOPE_RESERVE, LIST_RESERVE, StanzaBudget, measure } from "../../component/runtime/budget.js";
import type { PendingEntry, RenderCache } from "../../component/runtime/queue/api.js";
import { StanzaError } from "../../stanzas/errors.js";
import { cardHash, normalizeCard, type Card } from "../../stanzas/model/card.js";
import { filterCard, type SharePolicy } from "../../stanzas/model/policy.js";
import { xml } from "../../stanzas/xml.js";
import type { AccountId, Seq } from "../../storage/store.js";
import {
  account,
  bind,
  bindMany,
  cardsWorld,
  currentSeq,
  setShare,
  streamEntries,
  unbind,
  type CardsWorld,
} from "../harness/seed-cards.js";
import { legacyOutput } from "../harness/legacy-golden.js";

const D = "localhost";
const jid = (n: string): string => `${n}@${D}`;

function sampleCard(fn: string): Card {
  return normalizeCard({
    fn,
    n: { surname: fn, given: "Ada", additional: "", prefix: "", suffix: "" },
    nickname: ["Ada"],
    org: { name: "Analytical Engines", units: ["Research"] },
    title: "Countess",
    tel: [
      { key: "", types: ["work"], uri: "tel:+44-20-0001" },
      { key: "", types: ["home"], uri: "tel:+44-20-0002" },
    ],
    email: [
      { key: "", types: ["home"], value: "ada@home.example" },
      { key: "", types: ["work"], value: "ada@work.example" },
    ],
    adr: [],
    url: [{ key: "", types: ["work"], value: "https://engines.example" }],
    impp: [],
    note: "Notes on the engine & <more>",
    bday: "1815-12-10",
    categories: ["math"],
  });
}

const POLICIES: Array<SharePolicy | null> = [
  null,
  {},
  { fields: ["tel"] },
  { types: ["work"] },
  { fields: ["email", "note"], types: ["home"] },
  { fields: [] },
];

const budget = new StanzaBudget(256 * 1024);
/** The old component/cards.ts rendering `cardElement(meta, cardContent(card, format))`, captured (golden `name`). */
const oldRendering = (
  name: string,
  meta: { owner: string; version: number; hash: string },
  card: Card,
  format: Format,
): string => legacyOutput("cards", name, "xml", { meta, card, format });
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

describe("features/cards on the new core (S9)", function () {
  this.timeout(30_000);
  let w: CardsWorld;
  beforeEach(async () => {
    w = await cardsWorld();
  });
  afterEach(() => w.close());

  async function sync(user: string, since: Seq, max: number, b = budget, format: Format = "vcard4") {
    return w.read("t.sync", (r) => syncPage(r, { user, since, max, format, budget: b }));
  }
  const owners = (s: SyncResult): string[] =>
    s.items.map((i) => `${i.name}:${String(i.attrs.owner).split("@")[0]}`);

  describe("storeCard", () => {
    it("an unchanged card takes no seq, writes nothing and notifies nobody", async () => {
      await bind(w, jid("alice"), jid("bob"));
      const heard: string[] = [];
      w.events.onTx("card.updated", (_u, e) => void heard.push(`tx:${e.version}`));
      w.events.on("card.updated", (e) => heard.push(`after:${e.version}`));
      const first = await storeCard(w, jid("alice"), sampleCard("Lovelace"));
      expect(first).to.include({ changed: true, version: 1 });
      expect(heard).to.deep.equal(["tx:1", "after:1"]);
      const seq = await currentSeq(w);
      const entries = await streamEntries(w);
      const again = await storeCard(w, jid("alice"), sampleCard("Lovelace"));
      expect(again).to.deep.include({ changed: false, version: 1, hash: first.hash, holders: [] });
      expect(await currentSeq(w), "no seq taken").to.equal(seq);
      expect(await streamEntries(w), "no entry written").to.deep.equal(entries);
      expect(heard, "no event").to.have.length(2);
      // A real change does bump it.
      const third = await storeCard(w, jid("alice"), sampleCard("Byron"));
      expect(third).to.include({ changed: true, version: 2 });
      expect(await currentSeq(w)).to.be.greaterThan(seq);
    });

    it("a change appends one `card` entry to every holder's lane and to nobody else, at the change's seq", async () => {
      await bind(w, jid("alice"), jid("bob"));
      await bind(w, jid("carol"), jid("alice"));
      await bind(w, jid("dave"), jid("erin")); // not alice's audience
      const alice = await account(w, jid("alice"));
      const bob = await account(w, jid("bob"));
      const carol = await account(w, jid("carol"));
      const seqs: number[] = [];
      w.events.onTx("card.updated", (_u, e) => void seqs.push(e.seq));
      const r = await storeCard(w, jid("alice"), sampleCard("Lovelace"));
      expect([...r.holders].sort()).to.deep.equal([bob, carol].sort());
      const cardEntries = (await streamEntries(w)).filter((e) => e.kind === "card");
      expect(cardEntries).to.deep.equal(
        [bob, carol].sort().map((lane) => ({ lane, kind: "card", subject: String(alice), seq: seqs[0] })),
      );
      const stored = await w.store.read("t", (q) => apiGetCard(q, alice));
      expect(stored).to.include({ version: 1, seq: seqs[0], hash: cardHash(sampleCard("Lovelace")) });
      expect(await w.store.read("t", (q) => cardVersion(q, alice))).to.deep.equal({
        version: 1,
        hash: r.hash,
      });
    });

    it("a failing in-tx handler rolls the card and every entry back", async () => {
      await bind(w, jid("alice"), jid("bob"));
      const before = { seq: await currentSeq(w), entries: await streamEntries(w) };
      w.events.onTx("card.updated", () => {
        throw new Error("handler refuses");
      });
      let err: unknown;
      await storeCard(w, jid("alice"), sampleCard("Lovelace")).catch((e: unknown) => (err = e));
      expect((err as Error).message).to.equal("handler refuses");
      expect(await currentSeq(w)).to.equal(before.seq);
      expect(await streamEntries(w)).to.deep.equal(before.entries);
      expect(await w.store.read("t", (q) => cardVersion(q, 1 as AccountId))).to.equal(undefined);
    });
  });

  describe("render", () => {
    it("is byte-identical to component/cards.ts for the owner and for each policy, in every format", async () => {
      const owner = jid("alice");
      const card = sampleCard("Lovelace");
      await storeCard(w, owner, card);
      const stored = await w.store.read("t", async (q) => apiGetCard(q, 1 as AccountId));
      if (!stored) throw new Error("no card stored");
      for (const format of FORMATS) {
        // Owner: the old getCard's own-card path (stored hash, unfiltered content).
        const old = oldRendering(
          `render-owner-${format}`,
          { owner, version: 1, hash: stored.hash },
          stored.card,
          format,
        );
        expect(cardFor(stored, owner, "owner", format, w.cache).toString()).to.equal(old);
        for (const [i, p] of POLICIES.entries()) {
          const view = p ? filterCard(stored.card, p) : stored.card;
          const want = oldRendering(
            `render-policy${i}-${format}`,
            { owner, version: 1, hash: cardHash(view) },
            view,
            format,
          );
          const got = cardFor(stored, owner, [p], format, w.cache);
          expect(got.toString(), `${format} ${JSON.stringify(p)}`).to.equal(want);
        }
      }
    });

    it("the `card` kind renders each holder's current view, like the old renderer; no path = moot", async () => {
      await bind(w, jid("alice"), jid("bob"), { aPolicy: { fields: ["tel"], types: ["work"] } });
      await bind(w, jid("alice"), jid("carol"));
      await storeCard(w, jid("alice"), sampleCard("Lovelace"));
      const card = sampleCard("Lovelace");
      const render = (lane: number) =>
        w.read("t.render", (r) => {
          const e: PendingEntry = {
            lane: lane as AccountId,
            seq: 0,
            ord: 0,
            kind: "card",
            subject: "1",
            subjectAccount: 1 as AccountId,
          };
          return w.kind.render({ ...r, read: r.read, budget, cache: roundCache() }, e);
        });
      const filtered = filterCard(card, { fields: ["tel"], types: ["work"] });
      const oldBob = oldRendering(
        "kind-bob",
        { owner: jid("alice"), version: 1, hash: cardHash(filtered) },
        filtered,
        "vcard4",
      );
      const oldCarol = oldRendering(
        "kind-carol",
        { owner: jid("alice"), version: 1, hash: cardHash(card) },
        card,
        "vcard4",
      );
      expect((await render(2))?.toString()).to.equal(oldBob);
      expect((await render(3))?.toString()).to.equal(oldCarol);
      await unbind(w, jid("alice"), jid("bob"));
      expect(await render(2), "bob no longer sees it").to.equal(null);
    });

    it("get card: own card, a holder's view, and not-visible answered like no card", async () => {
      await bind(w, jid("alice"), jid("bob"), { aPolicy: { fields: [] } });
      await account(w, jid("mallory"));
      await storeCard(w, jid("alice"), sampleCard("Lovelace"));
      const get = (user: string, owner: string, f: Format = "vcard4") =>
        w.read("t.get", (r) => cardForViewer(r, jid(user), jid(owner), f));
      const card = sampleCard("Lovelace");
      const onlyFn = filterCard(card, { fields: [] });
      expect((await get("bob", "alice", "vcf")).toString()).to.equal(
        oldRendering(
          "get-bob-alice-vcf",
          { owner: jid("alice"), version: 1, hash: cardHash(onlyFn) },
          onlyFn,
          "vcf",
        ),
      );
      expect((await get("alice", "alice")).attrs.hash).to.equal(cardHash(card));
      for (const [user, owner, text] of [
        ["mallory", "alice", "you hold no card of alice@localhost"],
        ["nobody", "alice", "you hold no card of alice@localhost"],
        ["alice", "bob", "you hold no card of bob@localhost"],
        ["bob", "bob", "you have no card yet"],
      ] as const) {
        const err = await get(user, owner).then(
          () => undefined,
          (e: unknown) => e,
        );
        expect(err, `${user} → ${owner}`).to.be.instanceOf(StanzaError);
        expect((err as StanzaError).condition).to.equal("item-not-found");
        expect((err as StanzaError).message).to.equal(text);
      }
    });

    it("a rendering never outlives its content: the same (owner, version) with another card renders anew", () => {
      // An account deleted and reactivated in place starts its card at version 1 again, and two stores in one
      // process number their accounts alike: (owner, version) alone would serve the old card's rendering.
      const cache = new CardRenderCache();
      const stored = (fn: string): StoredCard => {
        const card = sampleCard(fn);
        return { owner: 1 as AccountId, version: 1, hash: cardHash(card), card, seq: 1, updatedAt: 0 };
      };
      const before = cardFor(stored("Before"), jid("o1"), [null], "vcard4", cache).toString();
      const after = cardFor(stored("After"), jid("o1"), [null], "vcard4", cache).toString();
      expect(before).to.contain("Before").and.not.contain("After");
      expect(after).to.contain("After").and.not.contain("Before");
      expect({ misses: cache.misses, hits: cache.hits }).to.deep.equal({ misses: 2, hits: 0 });
    });

    it("the render cache is keyed (owner, version, hash, policy hash): equal views share one rendering", async () => {
      await bindMany(w, [
        [jid("alice"), jid("bob"), { aPolicy: { types: ["work"] } }],
        [jid("alice"), jid("carol"), { aPolicy: { types: ["work"] } }],
        [jid("alice"), jid("dave"), { aPolicy: { types: ["home"] } }],
        [jid("alice"), jid("erin")],
      ]);
      await storeCard(w, jid("alice"), sampleCard("Lovelace"));
      const renderAll = () =>
        w.read("t.render", async (r) => {
          const out: string[] = [];
          for (const lane of [2, 3, 4, 5]) {
            const e: PendingEntry = {
              lane: lane as AccountId,
              seq: 0,
              ord: 0,
              kind: "card",
              subject: "1",
              subjectAccount: 1 as AccountId,
            };
            out.push(
              String(
                (await w.kind.render({ ...r, read: r.read, budget, cache: roundCache() }, e))?.toString(),
              ),
            );
          }
          return out;
        });
      const first = await renderAll();
      expect({ misses: w.cache.misses, hits: w.cache.hits }).to.deep.equal({ misses: 3, hits: 1 });
      expect(first[0]).to.equal(first[1]);
      expect(first[0]).to.not.equal(first[2]);
      await renderAll();
      expect({ misses: w.cache.misses, hits: w.cache.hits }).to.deep.equal({ misses: 3, hits: 5 });
      await storeCard(w, jid("alice"), sampleCard("Byron"));
      const third = await renderAll();
      expect(w.cache.misses, "a new version renders again").to.equal(6);
      expect(third[3]).to.contain("Byron");
    });
  });

  describe("sync", () => {
    it("pages the holder's changes in seq order against seeded data; a full page gets the newest seq", async () => {
      const names = ["o1", "o2", "o3", "o4", "o5", "o6", "o7"];
      for (const n of names) await storeCard(w, jid(n), sampleCard(n.toUpperCase()));
      for (const n of names)
        await bind(w, jid(n), jid("holder"), { aPolicy: n === "o3" ? { fields: [] } : null });
      await storeCard(w, jid("o2"), sampleCard("O2 again")); // o2 moves to the end
      await storeCard(w, jid("stranger"), sampleCard("X")); // not visible to holder
      const seen: string[] = [];
      let since = 0;
      const tokens: number[] = [];
      for (;;) {
        const p = await sync(jid("holder"), since, 3);
        seen.push(...owners(p));
        tokens.push(p.token);
        if (!p.more) break;
        expect(p.items).to.have.length(3);
        since = p.token;
      }
      expect(seen).to.deep.equal(["o1", "o3", "o4", "o5", "o6", "o7", "o2"].map((n) => `card:${n}`));
      expect(tokens).to.have.length(3);
      expect(tokens[2]).to.equal(await currentSeq(w));
      for (let i = 1; i < tokens.length; i++) expect(tokens[i]).to.be.greaterThan(tokens[i - 1] as number);
      // Each item is the holder's view, byte for byte what the old code rendered (o3 shares only fn).
      const all = await sync(jid("holder"), 0, 200);
      const o3 = all.items.find((i) => i.attrs.owner === jid("o3"));
      const v = filterCard(sampleCard("O3"), { fields: [] });
      expect(o3?.toString()).to.equal(
        oldRendering("sync-o3", { owner: jid("o3"), version: 1, hash: cardHash(v) }, v, "vcard4"),
      );
      expect(all.more).to.equal(false);
      // Nothing new: an empty page at the same token.
      const none = await sync(jid("holder"), all.token, 200);
      expect(none).to.deep.equal({ token: all.token, more: false, items: [] });
      // An unbind shows as <removed/>; a narrowed share as a refreshed card.
      await unbind(w, jid("o4"), jid("holder"));
      await setShare(w, jid("o5"), jid("holder"), { fields: [] });
      const later = await sync(jid("holder"), all.token, 200);
      expect(owners(later)).to.deep.equal(["removed:o4", "card:o5"]);
      expect(later.items[0]?.toString()).to.equal(xml("removed", { owner: jid("o4") }).toString());
      // An unknown holder: nothing, at the newest token; nothing is created for it.
      const unknown = await sync(jid("nobody"), 0, 200);
      expect(unknown).to.deep.equal({ token: await currentSeq(w), more: false, items: [] });
    });

    it("a seq naming more owners than max (a group join) comes back whole, not refused", async () => {
      for (const n of ["o1", "o2", "o3"]) await storeCard(w, jid(n), sampleCard(n.toUpperCase()));
      const s = await bindMany(w, [
        [jid("o1"), jid("holder")],
        [jid("o2"), jid("holder")],
        [jid("o3"), jid("holder")],
      ]);
      const p = await sync(jid("holder"), 0, 1);
      expect(owners(p)).to.deep.equal(["card:o1", "card:o2", "card:o3"]);
      expect(p.token).to.equal(s);
    });

    it("is cut by the stanza budget, and a cut never ends inside a seq", async () => {
      for (const n of ["o1", "o2", "o3"]) await storeCard(w, jid(n), sampleCard(n.toUpperCase()));
      const s1 = await bind(w, jid("o1"), jid("holder"));
      // o2 and o3 become visible at one seq (what a group join does).
      const s2 = await bindMany(w, [
        [jid("o2"), jid("holder")],
        [jid("o3"), jid("holder")],
      ]);
      const one = (await sync(jid("holder"), 0, 200)).items.map((i) => measure(i));
      const max = Math.max(...one);
      // A list budget for two items but not three.
      const tight = new StanzaBudget(ENVELOPE_RESERVE + LIST_RESERVE + 2 * max + Math.floor(max / 2));
      const p1 = await sync(jid("holder"), 0, 200, tight);
      expect(owners(p1)).to.deep.equal(["card:o1"]); // o1+o2 fit, but o2 shares s2 with o3: the page stops at s1
      expect(p1).to.include({ token: s1, more: true });
      const p2 = await sync(jid("holder"), p1.token, 200, tight);
      expect(owners(p2)).to.deep.equal(["card:o2", "card:o3"]);
      expect(p2).to.include({ token: await currentSeq(w), more: false });
      expect(s2).to.be.greaterThan(s1);
      // One seq's items that cannot fit in one page are refused, not cut (the page could never advance).
      const tiny = new StanzaBudget(ENVELOPE_RESERVE + LIST_RESERVE + max + Math.floor(max / 2));
      const err = await sync(jid("holder"), s1, 200, tiny).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect((err as StanzaError).condition).to.equal("resource-constraint");
    });
  });
});

describe("features/devices on the new core (S9)", function () {
  this.timeout(30_000);
  let w: CardsWorld;
  beforeEach(async () => {
    w = await cardsWorld();
  });
  afterEach(() => w.close());
  const rt = () => ({ uow: w.uow, read: w.read, budget });
  const dev = (id: string, o: Record<string, string> = {}) =>
    xml("device", { xmlns: "urn:cardlink:0", id, platform: "ios", ...o });

  it("registers, updates, lists and removes devices on the accounts part, within the per-user limit", async () => {
    const a = await registerDevice(rt(), jid("alice"), dev("phone", { name: "Phone" }), 2);
    expect(a.attrs).to.include({ id: "phone", platform: "ios", name: "Phone", "push-state": "none" });
    await registerDevice(rt(), jid("alice"), dev("phone", { name: "Renamed" }), 2);
    await registerDevice(rt(), jid("alice"), dev("tablet"), 2);
    const over = await registerDevice(rt(), jid("alice"), dev("watch"), 2).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect((over as StanzaError).condition).to.equal("resource-constraint");
    expect((over as StanzaError).message).to.equal("you already have 2 devices; remove one first");
    const list = await listDevices(rt(), jid("alice"), xml("devices", { xmlns: "urn:cardlink:0" }));
    expect(list.getChildren("device").map((d) => [d.attrs.id, d.attrs.name])).to.deep.equal([
      ["phone", "Renamed"],
      ["tablet", undefined],
    ]);
    await removeDevice(rt(), jid("alice"), xml("remove-device", { id: "phone" }));
    const gone = await removeDevice(rt(), jid("alice"), xml("remove-device", { id: "phone" })).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect((gone as StanzaError).condition).to.equal("item-not-found");
    const after = await listDevices(rt(), jid("alice"), xml("devices", { xmlns: "urn:cardlink:0" }));
    expect(after.getChildren("device").map((d) => d.attrs.id)).to.deep.equal(["tablet"]);
    // An unknown user lists nothing and removes nothing; no account is created for either.
    const none = await listDevices(rt(), jid("nobody"), xml("devices", { xmlns: "urn:cardlink:0" }));
    expect(none.getChildren("device")).to.have.length(0);
    const n = await w.store.read("t", (q) => q.get<{ n: number }>("SELECT COUNT(*) AS n FROM accounts"));
    expect(Number(n?.n)).to.equal(1);
  });
});
