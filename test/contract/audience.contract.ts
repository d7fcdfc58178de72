/**
 * The Store contract, audience part (docs/REDESIGN.md §4.5, cases 41–46; 47: lazy tombstones and closedAmong): the audience part of a unit of work
 * (component/runtime/audience/) over schema 2000, with two registered paths — the binding path (`shares`) and a
 * test-only path table with exemptions (`test_circle`, `test_exempt`), standing in for issue 10's groups. Uses
 * only Store, makeUow/makeReader and portable SQL, so a PostgreSQL factory runs the same file.
 *
 * Stream effects (opened/closed append and retract `card` entries) go through `u.queue`. Until the queue stream
 * (S4) is merged its part throws "not built yet"; the cases then run on STREAM_STAND_IN below, which writes the
 * same stream_entries rows with plain SQL. Once S4 is merged the real part is used and the stand-in is dead code
 * (delete it then). The assertions read only the tables, so they hold for both.
 */
import { expect } from "chai";
import type { AudiencePath } from "../../component/runtime/audience/api.js";
import { AudienceReader, AudienceSql, audienceHoldersSql } from "../../component/runtime/audience/compose.js";
import { audienceParts } from "../../component/runtime/audience/tx.js";
import { EventBus } from "../../component/runtime/events.js";
import type { StreamQueueTx } from "../../component/runtime/queue/api.js";
import { streamTx } from "../../component/runtime/queue/stream-tx.js";
import { makeReader, makeUow, type Part, type Reader, type Uow } from "../../component/runtime/uow.js";
import type { SharePolicy } from "../../stanzas/model/policy.js";
import { SCHEMA_2000 } from "../../storage/sqlite/schema-2000.js";
import type { AccountId, Seq, Store } from "../../storage/store.js";
import type { StoreFactory } from "./uow.contract.js";

const id = (n: number): AccountId => n as AccountId;

export const BINDING_PATH: AudiencePath = {
  name: "binding",
  from: "shares s",
  owner: "s.owner",
  holder: "s.holder",
  policy: "s.policy",
  seq: "s.seq",
};
/** Test-only second path: an owner's "circle" of members, each with the owner's policy, and exemptions. */
export const CIRCLE_PATH: AudiencePath = {
  name: "circle",
  from: "test_circle c",
  owner: "c.owner",
  holder: "c.member",
  policy: "c.policy",
  seq: "c.seq",
  where: "NOT EXISTS (SELECT 1 FROM test_exempt x WHERE x.owner = c.owner AND x.exempt = c.member)",
  // Lazy tombstones (case 47): every pair of a closed set's accounts lost the circle at the set's seq.
  tombstones: {
    from: "test_closed k1 JOIN test_closed k2 ON k2.set_id = k1.set_id",
    holder: "k1.account",
    owner: "k2.account",
    seq: "k1.seq",
  },
};
const PATHS = [BINDING_PATH, CIRCLE_PATH];
const CIRCLE_DDL = `
  CREATE TABLE test_circle (
    owner INTEGER NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    member INTEGER NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    policy TEXT, seq INTEGER NOT NULL, PRIMARY KEY (owner, member));
  CREATE INDEX test_circle_member ON test_circle (member, owner);
  CREATE TABLE test_exempt (owner INTEGER NOT NULL, exempt INTEGER NOT NULL, PRIMARY KEY (owner, exempt));
  CREATE TABLE test_closed (set_id TEXT NOT NULL, account INTEGER NOT NULL, seq INTEGER NOT NULL,
    PRIMARY KEY (set_id, account));
  CREATE INDEX test_closed_account ON test_closed (account, set_id);
`;

/** Writes the rows a stream append/retract writes (§2.3.2), for as long as S4's part is not merged. */
const STREAM_STAND_IN: Part<StreamQueueTx> = (u) => {
  let ord = 0;
  const no = (): never => {
    throw new Error("stream stand-in: not used by the audience cases");
  };
  return {
    async append(kind, lanes, e) {
      const seq = await u.seq();
      for (const lane of lanes) {
        await u.tx.run(
          `INSERT INTO stream_entries (account_id, seq, ord, kind, subject, subject_account, payload_id, created_at)
           VALUES (:lane, :seq, :ord, :kind, :subject, :sa, NULL, :now)
           ON CONFLICT (account_id, kind, subject) DO UPDATE SET seq = excluded.seq, ord = excluded.ord`,
          { lane, seq, ord: ord++, kind, subject: e.subject, sa: e.subjectAccount ?? null, now: u.now },
        );
      }
      return [...lanes];
    },
    async retract(kind, subject, lanes) {
      let n = 0;
      for (const lane of lanes ?? []) {
        n += (
          await u.tx.run(
            "DELETE FROM stream_entries WHERE account_id = :lane AND kind = :kind AND subject = :subject",
            { lane, kind, subject },
          )
        ).changes;
      }
      return n;
    },
    appendToAudience: no,
    appendSelect: no,
    payload: no,
    pending: no,
  };
};

const CARD_KIND = {
  name: "card",
  coalesce: "replace" as const,
  subject: "account" as const,
  wake: true,
  render: async () => null,
};

let usedStandIn = false;
function streamPart(): Part<StreamQueueTx> {
  const real = streamTx({ kind: (n) => (n === "card" ? CARD_KIND : undefined), paths: PATHS });
  return (u) => {
    try {
      return real(u);
    } catch (e) {
      if (!/not built yet/.test((e as Error).message)) throw e;
      usedStandIn = true;
      return STREAM_STAND_IN(u);
    }
  };
}

export function describeAudience(name: string, factory: StoreFactory): void {
  describe(`Store contract: audience (${name})`, function () {
    this.timeout(30_000);
    let store: Store;
    let uow: Uow;
    let read: Reader;

    const unused = (): never => {
      throw new Error("unused part");
    };

    beforeEach(async () => {
      const backend = await factory.create();
      store = await backend.open();
      await store.migrate([SCHEMA_2000]);
      await store.tx("test.circle", async (tx) => {
        for (const stmt of CIRCLE_DDL.split(";").filter((s) => s.trim() !== "")) await tx.run(stmt);
        for (let i = 1; i <= 12; i++) {
          await tx.run("INSERT INTO accounts (id, created_at) VALUES (:i, 0)", { i });
        }
      });
      const parts = audienceParts({ paths: PATHS });
      uow = makeUow(
        store,
        { accounts: unused, jobs: unused, stream: streamPart(), audience: parts.tx },
        new EventBus(),
      );
      read = makeReader(store, { accounts: unused, audience: parts.read });
    });
    afterEach(() => store.close());
    after(() => factory.cleanup());
    after(() => {
      if (usedStandIn)
        console.log("    (audience cases ran on the stream stand-in: queue stream S4 not merged)");
    });

    // ---- seeds: each is one unit of work with its own seq, like the features that will write these rows.
    const bind = (a: number, b: number, ab: SharePolicy | null = null, ba: SharePolicy | null = null) =>
      uow("test.bind", async (u) => {
        const seq = await u.seq();
        const [x, y] = a < b ? [a, b] : [b, a];
        const bid = `b${x}-${y}`;
        await u.tx.run(
          "INSERT INTO bindings (id, a, b, a_devices, b_devices, via, created_at) VALUES (:bid, :x, :y, '[]', '[]', 'code', 0)",
          { bid, x, y },
        );
        const share =
          "INSERT INTO shares (owner, holder, binding_id, policy, seq) VALUES (:o, :h, :bid, :p, :seq)";
        await u.tx.run(share, { o: a, h: b, bid, p: ab && JSON.stringify(ab), seq });
        await u.tx.run(share, { o: b, h: a, bid, p: ba && JSON.stringify(ba), seq });
        return seq;
      });
    const circle = (owner: number, members: number[], policy: SharePolicy | null = null) =>
      uow("test.circle", async (u) => {
        const seq = await u.seq();
        for (const m of members) {
          await u.tx.run(
            "INSERT INTO test_circle (owner, member, policy, seq) VALUES (:owner, :m, :p, :seq) " +
              "ON CONFLICT (owner, member) DO UPDATE SET policy = excluded.policy, seq = excluded.seq",
            { owner, m, p: policy && JSON.stringify(policy), seq },
          );
        }
        return seq;
      });
    const setCard = (owner: number, fn: string) =>
      uow("test.card", async (u) => {
        const seq = await u.seq();
        await u.tx.run(
          `INSERT INTO cards (account_id, version, hash, card, seq, updated_at) VALUES (:owner, 1, :fn, :card, :seq, 0)
           ON CONFLICT (account_id) DO UPDATE SET version = cards.version + 1, hash = excluded.hash,
             card = excluded.card, seq = excluded.seq`,
          { owner, fn, card: JSON.stringify({ fn }), seq },
        );
        return seq;
      });
    const cardEntries = (): Promise<Array<{ lane: number; subject: string; seq: number }>> =>
      store.read("test.entries", (r) =>
        r.all<{ lane: number; subject: string; seq: number }>(
          "SELECT account_id AS lane, subject, seq FROM stream_entries WHERE kind = 'card' ORDER BY account_id, subject",
        ),
      );
    const tombstones = (): Promise<Array<{ holder: number; owner: number; seq: number }>> =>
      store.read("test.tombstones", (r) =>
        r.all<{ holder: number; owner: number; seq: number }>(
          "SELECT holder, owner, seq FROM tombstones ORDER BY holder, owner",
        ),
      );
    const sync = (holder: number, since: Seq, limit = 100) =>
      store.read("test.sync", (r) =>
        new AudienceReader(new AudienceSql(PATHS), r).syncPage(id(holder), since, limit),
      );
    const changes = async (holder: number, since: Seq) =>
      (await sync(holder, since)).changes.map((c) => [c.owner, c.seq, c.removed ? "removed" : "card"]);

    it("41. forward audience over two paths: DISTINCT holders, never the owner; one composed statement", async () => {
      await bind(1, 2);
      await bind(1, 3);
      await circle(1, [3, 4]);
      await circle(5, [1]); // 1 sees 5: not 5's holder set of 1
      await uow("test.self", (u) =>
        u.tx.run("INSERT INTO test_circle (owner, member, policy, seq) VALUES (1, 1, NULL, 1)"),
      );
      expect(await uow("t", (u) => u.audience.holders(id(1)))).to.deep.equal([2, 3, 4]);
      expect(await read("t", (r) => r.audience.holders(id(1)))).to.deep.equal([2, 3, 4]);
      expect(await read("t", (r) => r.audience.holders(id(5)))).to.deep.equal([1]);
      expect(await read("t", (r) => r.audience.holders(id(6)))).to.deep.equal([]);
      // S4's fan-out embeds the text as one INSERT … SELECT; each holder exactly once.
      const sql = audienceHoldersSql(PATHS, "o");
      expect(audienceHoldersSql(PATHS, "o")).to.equal(sql); // cached text
      expect(sql.match(/UNION ALL/g)?.length).to.equal(1);
      const inserted = await uow("t", async (u) => {
        await u.tx.run("CREATE TEMP TABLE fanout_probe (holder INTEGER NOT NULL)");
        const r = await u.tx.run(`INSERT INTO fanout_probe (holder) SELECT aud.holder FROM (${sql}) aud`, {
          o: 1,
        });
        const rows = await u.tx.all<{ holder: number }>("SELECT holder FROM fanout_probe ORDER BY holder");
        await u.tx.run("DROP TABLE fanout_probe");
        return { n: r.changes, rows: rows.map((x) => Number(x.holder)) };
      });
      expect(inserted).to.deep.equal({ n: 3, rows: [2, 3, 4] });
      // An empty registry composes to a query with no rows.
      const none = audienceParts({ paths: [] });
      const empty = makeReader(store, { accounts: unused, audience: none.read });
      expect(await empty("t", (r) => r.audience.holders(id(1)))).to.deep.equal([]);
      expect(await empty("t", (r) => r.audience.policies(id(1), id(2)))).to.deep.equal([]);
      // A bad registry fails when built, not on a request.
      expect(() => audienceParts({ paths: [BINDING_PATH, BINDING_PATH] })).to.throw(/registered twice/);
      expect(() => audienceParts({ paths: [{ ...CIRCLE_PATH, where: "1; DROP TABLE x" }] })).to.throw(
        /one SQL expression/,
      );
    });

    it("42. policies(owner, holder): one per path, in registration order; [] when not visible", async () => {
      const work: SharePolicy = { types: ["work"] };
      const tel: SharePolicy = { fields: ["tel"] };
      await bind(1, 3, work, null);
      await circle(1, [3, 4], tel);
      await bind(1, 2);
      const policies = (o: number, h: number) => read("t", (r) => r.audience.policies(id(o), id(h)));
      expect(await policies(1, 3)).to.deep.equal([work, tel]);
      expect(await policies(3, 1)).to.deep.equal([null]);
      expect(await policies(1, 4)).to.deep.equal([tel]);
      expect(await policies(1, 2)).to.deep.equal([null]);
      expect(await policies(4, 1)).to.deep.equal([]);
      expect(await policies(1, 9)).to.deep.equal([]);
      expect(await policies(1, 1)).to.deep.equal([]);
      // The same inside a unit of work (the renderer's and `card get owner=`'s question).
      expect(await uow("t", (u) => u.audience.policies(id(1), id(3)))).to.deep.equal([work, tel]);
      // policiesOf: the same answers for many owners in one statement (a sync page's); unseen owners and the
      // holder itself absent.
      const many = async (owners: number[], h: number) =>
        Object.fromEntries(await read("t", (r) => r.audience.policiesOf(owners.map(id), id(h))));
      expect(await many([1, 2, 4, 9], 3)).to.deep.equal({ 1: [work, tel] });
      expect(await many([3, 4, 1, 2], 1)).to.deep.equal({ 2: [null], 3: [null] });
      expect(await many([1], 4)).to.deep.equal({ 1: [tel] });
      expect(await many([], 4)).to.deep.equal({});
      for (const [o, h] of [
        [1, 3],
        [3, 1],
        [1, 4],
        [1, 2],
        [4, 1],
        [1, 9],
        [1, 1],
      ] as const) {
        expect((await many([o], h))[o] ?? [], `policiesOf ${o} → ${h}`).to.deep.equal(await policies(o, h));
      }
    });

    it("43. closed: no remaining path → tombstone + pending card retracted; a remaining path → card refresh", async () => {
      await setCard(1, "One");
      await setCard(3, "Three");
      await bind(1, 2);
      await bind(1, 3);
      await circle(1, [3]); // 3 keeps seeing 1 through the circle
      await uow("test.pending", (u) =>
        u.queue.append("card", [id(2), id(3)], { subject: "1", subjectAccount: id(1) }),
      );
      await uow("test.pending", (u) =>
        u.queue.append("card", [id(1)], { subject: "3", subjectAccount: id(3) }),
      );
      const before = await sync(3, 0);
      const closedAt = await uow("test.unbind", async (u) => {
        await u.tx.run("DELETE FROM bindings WHERE id IN ('b1-2', 'b1-3')"); // shares cascade
        const lost = await u.audience.closed([
          [id(1), id(2)],
          [id(2), id(1)],
          [id(1), id(3)],
          [id(3), id(1)],
          [id(1), id(3)], // a duplicate counts once
        ]);
        return { lost, seq: await u.seq() };
      });
      expect(closedAt.lost).to.deep.equal([
        [1, 2],
        [2, 1],
        [3, 1],
      ]);
      const s = closedAt.seq;
      // 2 lost 1, 1 lost 2 and 3; 3 still sees 1 through the circle (a view change, not a removal).
      expect(await tombstones()).to.deep.equal([
        { holder: 1, owner: 2, seq: s },
        { holder: 1, owner: 3, seq: s },
        { holder: 2, owner: 1, seq: s },
        { holder: 3, owner: 1, seq: s },
      ]);
      // Lane 2's pending card of 1 retracted, lane 1's card of 3 retracted; lane 3 has 1's card refreshed at s.
      expect(await cardEntries()).to.deep.equal([{ lane: 3, subject: "1", seq: s }]);
      // Pull sync agrees: 2 gets a removal; 3 gets 1's card as changed at s; 1 gets two removals.
      expect(await changes(2, before.token)).to.deep.equal([[1, s, "removed"]]);
      expect(await changes(3, before.token)).to.deep.equal([[1, s, "card"]]);
      expect(await changes(1, before.token)).to.deep.equal([
        [2, s, "removed"],
        [3, s, "removed"],
      ]);
      // The SELECT form: pairs the feature computes in SQL; a pair still visible is not returned.
      const lost = await uow("test.circle-close", async (u) => {
        await u.tx.run("DELETE FROM test_circle WHERE owner = 1");
        return u.audience.closed({
          sql: "SELECT a.id AS holder, :o AS owner FROM accounts a WHERE a.id IN (3, 4)",
          params: { o: 1 },
        });
      });
      expect(lost).to.deep.equal([
        [1, 3],
        [1, 4],
      ]);
      expect(await cardEntries()).to.deep.equal([]);
      // A unit of work that fails after closed() leaves no tombstone and no retraction behind.
      await bind(5, 6);
      await setCard(5, "Five");
      await uow("test.pending", (u) =>
        u.queue.append("card", [id(6)], { subject: "5", subjectAccount: id(5) }),
      );
      const err = await uow("test.fails", async (u) => {
        await u.tx.run("DELETE FROM bindings WHERE id = 'b5-6'");
        await u.audience.closed([[id(5), id(6)]]);
        throw new Error("refused");
      }).catch((e: unknown) => e);
      expect((err as Error).message).to.equal("refused");
      expect((await tombstones()).filter((t) => t.holder === 6)).to.deep.equal([]);
      expect((await cardEntries()).map((e) => e.lane)).to.deep.equal([6]);
    });

    it("47. closedAmong: a set closed lazily (no tombstone rows) — retracted, refreshed where another path shows, removed in sync, newest tombstone wins", async () => {
      for (const [n, fn] of [
        [1, "One"],
        [2, "Two"],
        [3, "Three"],
      ] as const)
        await setCard(n, fn);
      await circle(1, [2, 3]);
      await circle(2, [1, 3]);
      await circle(3, [1, 2]);
      await bind(2, 3); // 2 and 3 keep each other through the binding
      await uow("test.pending", async (u) => {
        await u.queue.append("card", [id(2), id(3)], { subject: "1", subjectAccount: id(1) });
        await u.queue.append("card", [id(1)], { subject: "2", subjectAccount: id(2) });
        await u.queue.append("card", [id(1)], { subject: "3", subjectAccount: id(3) });
      });
      const t0 = (await sync(1, 0)).token;
      const s = await uow("test.close-set", async (u) => {
        const seq = await u.seq();
        await u.tx.run("DELETE FROM test_circle WHERE owner IN (1, 2, 3)");
        for (const a of [1, 2, 3])
          await u.tx.run("INSERT INTO test_closed (set_id, account, seq) VALUES ('s', :a, :seq)", { a, seq });
        await u.audience.closedAmong({
          sql: "SELECT k.account AS account FROM test_closed k WHERE k.set_id = :set",
          params: { set: "s" },
        });
        return seq;
      });
      expect(await tombstones()).to.deep.equal([]);
      // Pending cards between 1 and the others retracted; 2 and 3 refreshed with each other's card at s.
      expect(await cardEntries()).to.deep.equal([
        { lane: 2, subject: "3", seq: s },
        { lane: 3, subject: "2", seq: s },
      ]);
      expect(await changes(1, t0)).to.deep.equal([
        [2, s, "removed"],
        [3, s, "removed"],
      ]);
      expect(await changes(2, t0)).to.deep.equal([
        [1, s, "removed"],
        [3, s, "card"],
      ]);
      expect(await changes(1, s)).to.deep.equal([]);
      // A newer explicit tombstone of the same pair wins; a pair visible again is never removed.
      await bind(1, 2);
      const u2 = await uow("test.unbind", async (u) => {
        await u.tx.run("DELETE FROM bindings WHERE id = 'b1-2'");
        await u.audience.closed([[id(2), id(1)]]);
        return u.seq();
      });
      expect(await changes(1, t0)).to.deep.equal([
        [3, s, "removed"],
        [2, u2, "removed"],
      ]);
      await bind(1, 3);
      expect((await changes(1, t0)).filter((c) => c[0] === 3).map((c) => c[2])).to.deep.equal(["card"]);
    });

    it("44. opened clears the tombstone and appends the owner's card (only an owner with a card)", async () => {
      await setCard(1, "One");
      await bind(1, 2);
      await uow("test.unbind", async (u) => {
        await u.tx.run("DELETE FROM bindings WHERE id = 'b1-2'");
        await u.audience.closed([
          [id(1), id(2)],
          [id(2), id(1)],
        ]);
      });
      expect((await tombstones()).length).to.equal(2);
      const closedToken = (await sync(2, 0)).token;
      const s = await uow("test.rebind", async (u) => {
        const seq = await u.seq();
        await u.tx.run(
          "INSERT INTO bindings (id, a, b, a_devices, b_devices, via, created_at) VALUES ('b1-2', 1, 2, '[]', '[]', 'code', 0)",
        );
        const pairs: Array<[number, number]> = [
          [1, 2],
          [2, 1],
        ];
        for (const [o, h] of pairs) {
          await u.tx.run(
            "INSERT INTO shares (owner, holder, binding_id, policy, seq) VALUES (:o, :h, 'b1-2', NULL, :seq)",
            { o, h, seq },
          );
        }
        await u.audience.opened(id(1), [id(2), id(2), id(1)]); // duplicates and the owner itself are ignored
        await u.audience.opened(id(2), [id(1)]);
        return seq;
      });
      expect(await tombstones()).to.deep.equal([]);
      // 1 has a card: lane 2 gets it; 2 has none: lane 1 gets nothing.
      expect(await cardEntries()).to.deep.equal([{ lane: 2, subject: "1", seq: s }]);
      expect(await changes(2, closedToken)).to.deep.equal([[1, s, "card"]]);
      expect(await changes(1, closedToken)).to.deep.equal([]); // 2 has no card to sync
      await uow("t", (u) => u.audience.opened(id(3), [])); // nothing to do is fine
    });

    it("45. sync: since=0 is everything visible + token; since=T only later changes; tombstones by seq; page cuts", async () => {
      const H = 9;
      const c1 = await setCard(1, "One");
      await setCard(2, "Two");
      await setCard(3, "Three");
      await setCard(4, "Four");
      const b1 = await bind(1, H);
      const b2 = await bind(2, H);
      const c3 = await circle(3, [H]);
      await bind(4, 5); // not the holder's
      await circle(8, [H]); // 8 has no card: nothing to sync
      expect(c1).to.be.below(b1);
      const full = await sync(H, 0);
      expect(full.more).to.equal(false);
      expect(full.token).to.equal(c3 + 2); // the newest committed seq (bind(4,5) and circle(8) came after)
      expect(full.changes.map((c) => [c.owner, c.seq, c.removed])).to.deep.equal([
        [1, b1, false],
        [2, b2, false],
        [3, c3, false],
      ]);
      const T = full.token;
      expect(await changes(H, T)).to.deep.equal([]);
      // A card change, a policy change on a path, a removal: each after T, in seq order.
      const c2 = await setCard(2, "Two again");
      const p1 = await uow("test.policy", async (u) => {
        const seq = await u.seq();
        await u.tx.run("UPDATE shares SET policy = :p, seq = :seq WHERE owner = 1 AND holder = :h", {
          p: JSON.stringify({ fields: ["tel"] }),
          seq,
          h: H,
        });
        return seq;
      });
      const gone = await uow("test.circle-close", async (u) => {
        await u.tx.run("DELETE FROM test_circle WHERE owner = 3");
        await u.audience.closed([[id(3), id(H)]]);
        return u.seq();
      });
      expect(await changes(H, T)).to.deep.equal([
        [2, c2, "card"],
        [1, p1, "card"],
        [3, gone, "removed"],
      ]);
      expect(await read("t", (r) => r.audience.changedFor(id(H), T, 10))).to.deep.equal([
        { owner: 2, changed: c2 },
        { owner: 1, changed: p1 },
      ]);
      // since=0 after a removal: the visible cards and the removal, interleaved by seq.
      expect(await changes(H, 0)).to.deep.equal([
        [2, c2, "card"],
        [1, p1, "card"],
        [3, gone, "removed"],
      ]);
      // Page cuts: limit 1 → more, token = the last included change; following the tokens yields everything once.
      const seen: Array<[number, number]> = [];
      let token = 0;
      let page = await sync(H, token, 1);
      expect(page.more).to.equal(true);
      expect(page.token).to.equal(c2);
      seen.push(...page.changes.map((c): [number, number] => [c.owner, c.seq]));
      token = page.token;
      // A commit between two pages appears on a later page: its seq is above the token.
      const c4 = await uow("test.join", async (u) => {
        const seq = await u.seq();
        await u.tx.run("INSERT INTO test_circle (owner, member, policy, seq) VALUES (4, :h, NULL, :seq)", {
          h: H,
          seq,
        });
        await u.audience.opened(id(4), [id(H)]);
        return seq;
      });
      for (let i = 0; i < 10 && page.more; i++) {
        page = await sync(H, token, 1);
        seen.push(...page.changes.map((c): [number, number] => [c.owner, c.seq]));
        token = page.token;
      }
      expect(page.more).to.equal(false);
      expect(seen).to.deep.equal([
        [2, c2],
        [1, p1],
        [3, gone],
        [4, c4],
      ]);
      expect(token).to.equal(c4);
      // One seq naming several owners (a join to many): a page never ends inside it.
      await setCard(6, "Six");
      await setCard(7, "Seven");
      await setCard(10, "Ten");
      const join = await uow("test.join-many", async (u) => {
        const seq = await u.seq();
        for (const o of [6, 7, 10]) {
          await u.tx.run("INSERT INTO test_circle (owner, member, policy, seq) VALUES (:o, :h, NULL, :seq)", {
            o,
            h: H,
            seq,
          });
        }
        return seq;
      });
      const cut = await sync(H, c4, 2); // three changes at one seq, limit 2: all three, so the token is safe
      expect(cut.changes.map((c) => [c.owner, c.seq])).to.deep.equal([
        [6, join],
        [7, join],
        [10, join],
      ]);
      const before = await sync(H, p1, 3); // 3 removal + 4 + (6, 7, 10): the page stops before the shared seq
      expect(before.changes.map((c) => c.owner)).to.deep.equal([3, 4]);
      expect(before).to.include({ more: true, token: c4 });
    });

    it("46. exemptions on the test path exclude the holder from the forward audience and from policies", async () => {
      await setCard(1, "One");
      await circle(1, [3, 4], { fields: ["email"] });
      await uow("test.exempt", (u) => u.tx.run("INSERT INTO test_exempt (owner, exempt) VALUES (1, 4)"));
      expect(await read("t", (r) => r.audience.holders(id(1)))).to.deep.equal([3]);
      expect(await read("t", (r) => r.audience.policies(id(1), id(4)))).to.deep.equal([]);
      expect(await read("t", (r) => r.audience.policiesOf([id(1)], id(4)))).to.deep.equal(new Map());
      expect(await read("t", (r) => r.audience.policies(id(1), id(3)))).to.deep.equal([
        { fields: ["email"] },
      ]);
      expect(await read("t", (r) => r.audience.changedFor(id(4), 0, 10))).to.deep.equal([]);
      expect((await read("t", (r) => r.audience.changedFor(id(3), 0, 10))).map((c) => c.owner)).to.deep.equal(
        [1],
      );
      // Exempting is closing that pair: the exempted holder loses sight (tombstone), the others keep it.
      const lost = await uow("test.exempt-close", async (u) => {
        await u.tx.run("INSERT INTO test_exempt (owner, exempt) VALUES (1, 3)");
        return u.audience.closed([
          [id(1), id(3)],
          [id(1), id(4)],
        ]);
      });
      expect(lost).to.deep.equal([
        [1, 3],
        [1, 4],
      ]);
      expect(await read("t", (r) => r.audience.holders(id(1)))).to.deep.equal([]);
      // A binding next to an exempted circle membership still shows the card: exemptions are per path.
      await bind(1, 3);
      expect(await read("t", (r) => r.audience.policies(id(1), id(3)))).to.deep.equal([null]);
      expect(await read("t", (r) => r.audience.holders(id(1)))).to.deep.equal([3]);
    });
  });
}
