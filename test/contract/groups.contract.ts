/**
 * features/groups on both backends (issue 10): migration 3100's two texts and the feature's SQL — the `group`
 * audience path composed with bindings, the set-based joins (appendSelect, CAST parameters), closedSet on a leave
 * and on a deleted group (pairs over a JSON id list: `jsonIds`), the erase handler, and `<group-sync/>`'s SQL
 * (GROUP_SYNC and GROUP_SYNC_AT: a UNION ALL under a seq filter, CASE over BIGINT seqs, typed parameters) —
 * through the real GroupsService on the offline core's parts.
 */
import { expect } from "chai";
import { pino } from "pino";
import { storeCard } from "../../component/features/cards/service.js";
import { ExchangeService } from "../../component/features/exchange/service.js";
import { GroupsService } from "../../component/features/groups/service.js";
import { StanzaBudget } from "../../component/runtime/budget.js";
import { deleteAccount } from "../../component/features/userdata/export.js";
import { moduleMigrations, userDataWiring } from "../../component/features.js";
import { offlineCore, type OfflineCore } from "../../component/runtime/offline.js";
import { normalizeCard } from "../../stanzas/model/card.js";
import type { Element } from "../../stanzas/xml.js";
import { SCHEMA_2000 } from "../../storage/sqlite/schema-2000.js";
import type { AccountId, Store } from "../../storage/store.js";
import type { StoreFactory } from "./uow.contract.js";

const [A, B, C, D] = ["ann@a.example", "ben@a.example", "cat@a.example", "dan@a.example"];
const card = (fn: string) =>
  normalizeCard({
    fn,
    nickname: [],
    tel: [{ key: "", types: ["work"], uri: "tel:+44-20-0001" }],
    email: [],
    adr: [],
    url: [],
    impp: [],
    categories: [],
  });

export function describeGroups(name: string, factory: StoreFactory): void {
  describe(`Store contract: groups (${name})`, function () {
    this.timeout(30_000);
    let store: Store;
    let core: OfflineCore;
    let svc: GroupsService;
    const id = async (j: string): Promise<AccountId> =>
      (await core.read("t.id", (r) => r.accounts.resolve(j))) as AccountId;
    const count = async (sql: string, p: Record<string, string | number> = {}): Promise<number> =>
      Number((await store.read("t.n", (r) => r.get<{ n: number }>(sql, p)))?.n);

    beforeEach(async () => {
      store = await (await factory.create()).open({ log: pino({ level: "silent" }) });
      await store.migrate([SCHEMA_2000, ...moduleMigrations()]);
      core = offlineCore(store, userDataWiring());
      svc = new GroupsService({
        uow: core.uow,
        read: core.read,
        servedHosts: ["a.example"],
        maxMembers: 100,
        ownedPerUser: 10,
        joinedPerUser: 10,
        pendingInvitationsPerGroup: 10,
        invitationTtlMs: 86_400_000,
        exemptionsPerUser: 1000,
        pollMinSeconds: 60,
        pollMaxSeconds: 86_400,
        codeTtlMs: 86_400_000,
        codesPerUser: 10,
        redeem: { failuresPerUser: 10, failuresPerHost: 100, windowMs: 600_000, maxKeys: 100 },
      });
      for (const j of [A, B, C]) await storeCard(core, j, card(j));
    });
    afterEach(() => store.close());
    after(() => factory.cleanup());

    it("join opens the path both ways, a card change fans out to members, leave and delete close it", async () => {
      const g = String((await svc.create(A, "g", "", "members", null)).attrs.id);
      for (const j of [B, C]) {
        const inv = await svc.invite(A, g, j);
        await svc.accept(j, inv.id, { fields: ["tel"] });
      }
      const [a, b, c] = [await id(A), await id(B), await id(C)];
      const cards = "SELECT COUNT(*) AS n FROM stream_entries WHERE kind = 'card' AND account_id = :l";
      expect(await count(cards, { l: c })).to.equal(2);
      const changed = await storeCard(core, A, card("Ann 2"));
      expect([...changed.holders].sort((x, y) => x - y)).to.deep.equal([b, c].sort((x, y) => x - y));
      expect(await core.read("t.p", (r) => r.audience.policies(c, a))).to.deep.equal([{ fields: ["tel"] }]);
      await svc.invite(B, g, D); // a placeholder invitee
      await svc.leave(C, g);
      expect(
        await count("SELECT COUNT(*) AS n FROM tombstones WHERE owner = :c OR holder = :c", { c }),
      ).to.equal(4);
      expect(await count(cards, { l: c })).to.equal(0);
      await svc.delete(A, g);
      // The deletion writes no pair tombstone: one group_deleted_members row per member (A, B; C had left).
      expect(await count("SELECT COUNT(*) AS n FROM tombstones")).to.equal(4);
      expect(await count("SELECT COUNT(*) AS n FROM group_deleted_members")).to.equal(2);
      expect(await count("SELECT COUNT(*) AS n FROM group_invitations")).to.equal(0);
      expect(await core.read("t.p", (r) => r.audience.policies(a, b))).to.deep.equal([]);
    });

    it("<group-sync/>: a token returns only what changed since; departures and withdrawn cards come as removed; pages never end inside a seq", async () => {
      const budget = new StanzaBudget(65_536);
      const g = String((await svc.create(A, "g", "", "members", null)).attrs.id);
      const pull = (who: string, since: number, max = 200) => svc.sync(who, g, since, max, "vcard4", budget);
      const owners = (items: Element[]) => items.map((e) => `${e.name}:${String(e.attrs.owner)}`);
      for (const j of [B, C]) await svc.accept(j, (await svc.invite(A, g, j)).id, null);
      const all = await pull(B, 0);
      expect(owners(all.items).sort()).to.deep.equal([`card:${A}`, `card:${C}`].sort());
      expect(all.more).to.equal(false);
      expect(all.token).to.be.a("number").greaterThan(0);
      expect((await pull(B, all.token)).items).to.deep.equal([]);
      await storeCard(core, A, card("Ann 2"));
      const s1 = await pull(B, all.token);
      expect(owners(s1.items)).to.deep.equal([`card:${A}`]);
      expect(s1.items[0]?.toString()).to.include("Ann 2");
      await svc.leave(C, g);
      const s2 = await pull(B, s1.token);
      expect(owners(s2.items)).to.deep.equal([`removed:${C}`]);
      // Exempted without withdraw: A's later change is not listed for B; C rejoins (listed again), then exempts B
      // with withdraw (removed), then lifts it (listed again).
      await svc.exempt(A, g, B, false);
      await storeCard(core, A, card("Ann 3"));
      const s3 = await pull(B, s2.token);
      expect(s3.items).to.deep.equal([]);
      await svc.accept(C, (await svc.invite(A, g, C)).id, null);
      const s4 = await pull(B, s3.token);
      expect(owners(s4.items)).to.deep.equal([`card:${C}`]);
      await svc.exempt(C, g, B, true);
      const s5 = await pull(B, s4.token);
      expect(owners(s5.items)).to.deep.equal([`removed:${C}`]);
      await svc.unexempt(C, B);
      expect(owners((await pull(B, s5.token)).items)).to.deep.equal([`card:${C}`]);
      // C's rejoin put A and B at one seq for C: with max=1 that seq comes whole (GROUP_SYNC_AT), and the
      // tokens chain to the same set as one page.
      const whole = await pull(C, 0);
      expect(owners(whole.items).sort()).to.deep.equal([`card:${A}`, `card:${B}`].sort());
      const first = await pull(C, 0, 1);
      expect(first.items).to.have.length(2);
      const paged: Element[] = [...first.items];
      for (let p = first, i = 0; p.more && i < 10; i++) {
        p = await pull(C, p.token, 1);
        paged.push(...p.items);
      }
      expect(owners(paged).sort()).to.deep.equal(owners(whole.items).sort());
      // A member who pulls: no pushed card entries through the group, and the sync lists the change.
      const c = await id(C);
      await svc.setDelivery(C, g, { pollSeconds: 600 });
      const cEntries = "SELECT COUNT(*) AS n FROM stream_entries WHERE kind = 'card' AND account_id = :c";
      const before = await count(cEntries, { c });
      const t0 = (await pull(C, 0)).token;
      await storeCard(core, B, card("Ben 2"));
      expect(await count(cEntries, { c })).to.equal(before);
      const s6 = await pull(C, t0);
      expect(owners(s6.items)).to.deep.equal([`card:${B}`]);
      expect(s6.items[0]?.toString()).to.include("Ben 2");
      // Someone not in the group gets the one answer for "no such group" and "not yours".
      const err = await svc.sync(D, g, 0, 10, "vcard4", budget).catch((e: Error) => e);
      expect((err as Error & { condition?: string }).condition).to.equal("item-not-found");
    });

    it("deleting a group writes one row per member, and every member's copies of the others are withdrawn (sync, queued entries, bindings, later groups)", async () => {
      await storeCard(core, D, card(D));
      const [a, b, c, d] = [await id(A), await id(B), await id(C), await id(D)];
      const sync = (h: AccountId, since: number) =>
        core.read("t.s", (r) => r.audience.syncPage(h, since, 100));
      const removedOf = async (h: AccountId, since: number) =>
        (await sync(h, since)).changes
          .filter((x) => x.removed)
          .map((x) => x.owner)
          .sort((x, y) => x - y);
      const changedOf = async (h: AccountId, since: number) =>
        (await sync(h, since)).changes
          .filter((x) => !x.removed)
          .map((x) => x.owner)
          .sort((x, y) => x - y);
      const cardLanes = async (owner: AccountId) =>
        (
          await store.read("t.e", (r) =>
            r.all<{ l: number }>(
              "SELECT account_id AS l FROM stream_entries WHERE kind = 'card' AND subject_account = :o ORDER BY account_id",
              { o: owner },
            ),
          )
        ).map((x) => Number(x.l));
      // B and C are bound directly (B shows C its tel only); A and B also share a second group.
      const exchange = new ExchangeService({
        uow: core.uow,
        read: core.read,
        servedHosts: ["a.example"],
        requestTtlMs: 86_400_000,
        codeTtlMs: 300_000,
        maxPendingPerUser: 50,
        codesPerUser: 10,
        blocksPerUser: 100,
        redeem: { failuresPerUser: 10, failuresPerHost: 100, windowMs: 600_000, maxKeys: 100 },
      });
      await exchange.redeemCode(C, (await exchange.createCode(B)).code);
      const g = String((await svc.create(A, "g", "", "members", null)).attrs.id);
      for (const j of [B, C, D]) await svc.accept(j, (await svc.invite(A, g, j)).id, null);
      const g2 = String((await svc.create(A, "g2", "", "members", null)).attrs.id);
      await svc.accept(B, (await svc.invite(A, g2, B)).id, { fields: ["tel"] });
      const t0 = (await sync(d, 0)).token;
      const g2t0 = (await svc.sync(B, g2, 0, 100, "vcard4", new StanzaBudget(65_536))).token;
      // D is offline: the others' cards wait in its lane; so does C's for B (the group join queued it).
      expect(
        await store.read("t.q", (r) =>
          r.get<{ n: number }>(
            "SELECT COUNT(*) AS n FROM stream_entries WHERE kind = 'card' AND account_id = :d",
            { d },
          ),
        ),
      ).to.deep.include({ n: 3 });
      const tombs = await count("SELECT COUNT(*) AS n FROM tombstones");
      await svc.delete(A, g);
      expect(await count("SELECT COUNT(*) AS n FROM tombstones")).to.equal(tombs);
      expect(
        await count("SELECT COUNT(*) AS n FROM group_deleted_members WHERE group_id = :g", { g }),
      ).to.equal(4);
      // Queued cards between former members that no path shows are retracted; B–C (binding) and A→B (g2) are
      // refreshed (the view may have narrowed), and nothing else is queued.
      expect(await cardLanes(a)).to.deep.equal([b]);
      expect(await cardLanes(d)).to.deep.equal([]);
      expect(await cardLanes(c)).to.deep.equal([b]);
      expect((await cardLanes(b)).sort((x, y) => x - y)).to.deep.equal([a, c].sort((x, y) => x - y));
      expect(await core.read("t.p", (r) => r.audience.policies(c, b))).to.deep.equal([null]);
      expect(await core.read("t.p", (r) => r.audience.policies(b, c))).to.deep.equal([null]);
      expect(await core.read("t.p", (r) => r.audience.policies(a, d))).to.deep.equal([]);
      // Pull sync: D loses A, B, C; C loses A and D but keeps B (bound), listed as a view change.
      expect(await removedOf(d, t0)).to.deep.equal([a, b, c].sort((x, y) => x - y));
      expect(await removedOf(c, t0)).to.deep.equal([a, d].sort((x, y) => x - y));
      expect(await changedOf(c, t0)).to.deep.equal([b]);
      expect(await removedOf(b, t0)).to.deep.equal([d]);
      expect(await changedOf(b, t0)).to.deep.equal([a, c].sort((x, y) => x - y));
      const after = (await sync(d, t0)).token;
      expect(await removedOf(d, after)).to.deep.equal([]);
      // <group-sync/> of the group A and B still share lists A's view change for B.
      const gs = await svc.sync(B, g2, g2t0, 100, "vcard4", new StanzaBudget(65_536));
      expect(gs.items.map((e) => `${e.name}:${String(e.attrs.owner)}`)).to.deep.equal([`card:${A}`]);
      // D meets A again in a new group: A is visible, not removed, for D (from any token before or after); then
      // A exempts D without withdraw: D keeps its copy — the old deletion's removal does not come back.
      const g3 = String((await svc.create(A, "g3", "", "members", null)).attrs.id);
      await svc.accept(D, (await svc.invite(A, g3, D)).id, null);
      expect(await removedOf(d, t0)).to.deep.equal([b, c].sort((x, y) => x - y));
      expect(await changedOf(d, t0)).to.deep.equal([a]);
      await svc.exempt(A, g3, D, false);
      expect(await removedOf(d, t0)).to.deep.equal([b, c].sort((x, y) => x - y));
      expect(await changedOf(d, t0)).to.deep.equal([]);
      // Erasing D takes its rows of the deleted group.
      await deleteAccount(core.uow, D);
      expect(
        await count("SELECT COUNT(*) AS n FROM group_deleted_members WHERE group_id = :g", { g }),
      ).to.equal(3);
    });

    it("a member changes their share policy: co-members who push get the re-filtered card, pullers see it in sync", async () => {
      const g = String((await svc.create(A, "g", "", "members", null)).attrs.id);
      await svc.accept(B, (await svc.invite(A, g, B)).id, null);
      await svc.accept(C, (await svc.invite(A, g, C)).id, null, { pollSeconds: 600 });
      const [a, b] = [await id(A), await id(B)];
      const budget = new StanzaBudget(65_536);
      const t = (await svc.sync(C, g, 0, 100, "vcard4", budget)).token;
      await store.tx("t.drain", (tx) => tx.run("DELETE FROM stream_entries"));
      const el = await svc.setShare(A, g, { fields: ["fn"] });
      expect(
        el
          .getChild("share")
          ?.getChildren("field")
          .map((f) => f.getText()),
      ).to.deep.equal(["fn"]);
      const lanes = await store.read("t.l", (r) =>
        r.all<{ l: number }>(
          "SELECT account_id AS l FROM stream_entries WHERE kind = 'card' AND subject_account = :a",
          { a },
        ),
      );
      expect(lanes.map((x) => Number(x.l))).to.deep.equal([b]);
      expect(await core.read("t.p", (r) => r.audience.policies(a, b))).to.deep.equal([{ fields: ["fn"] }]);
      const pulled = await svc.sync(C, g, t, 100, "vcard4", budget);
      expect(pulled.items.map((e) => `${e.name}:${String(e.attrs.owner)}`)).to.deep.equal([`card:${A}`]);
      expect(pulled.items[0]?.toString()).to.not.include("tel:");
      const synced = await core.read("t.s", (r) => r.audience.syncPage(b, t, 100));
      expect(synced.changes.map((x) => x.owner)).to.deep.equal([a]);
    });

    it("group codes: created under the creator's cap, redeemed once (joining), swept when expired, erased with the creator", async () => {
      const g = String((await svc.create(A, "g", "", "members", null)).attrs.id);
      await svc.accept(B, (await svc.invite(A, g, B)).id, null);
      const k = await svc.createCode(B, g);
      const el = await svc.redeemCode(C, k.code, null);
      expect(el.attrs.members).to.equal("3");
      expect(await count("SELECT COUNT(*) AS n FROM group_codes")).to.equal(0);
      const err = await svc.redeemCode(D, k.code, null).catch((e: Error & { condition?: string }) => e);
      expect((err as Error & { condition?: string }).condition).to.equal("item-not-found");
      await svc.createCode(B, g);
      await svc.createCode(A, g);
      expect(
        await count("SELECT COUNT(*) AS n FROM group_codes WHERE expires_at > :now", { now: Date.now() }),
      ).to.equal(2);
      const aId = Number(await id(A));
      await store.tx("t.age", (tx) =>
        tx.run("UPDATE group_codes SET expires_at = 1 WHERE creator = :a", { a: aId }),
      );
      expect(await svc.expire()).to.equal(1);
      await deleteAccount(core.uow, B);
      expect(await count("SELECT COUNT(*) AS n FROM group_codes")).to.equal(0);
    });

    it("account deletion passes ownership on and erases the account's group rows", async () => {
      const g = String((await svc.create(A, "g", "", "admins", null)).attrs.id);
      await svc.accept(B, (await svc.invite(A, g, B)).id, null);
      await svc.invite(A, g, C);
      await deleteAccount(core.uow, A);
      const b = await id(B);
      expect(await count("SELECT COUNT(*) AS n FROM groups WHERE owner = :b", { b })).to.equal(1);
      expect(await count("SELECT COUNT(*) AS n FROM group_members")).to.equal(1);
      expect(await count("SELECT COUNT(*) AS n FROM group_invitations")).to.equal(0);
    });
  });
}
