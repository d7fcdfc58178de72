/**
 * features/groups on both backends (issue 10): migration 3100's two texts and the feature's SQL — the `group`
 * audience path composed with bindings, the set-based joins (appendSelect, CAST parameters), closedSet on a leave
 * and on a deleted group (pairs over a JSON id list: `jsonIds`), and the erase handler — through the real
 * GroupsService on the offline core's parts.
 */
import { expect } from "chai";
import { pino } from "pino";
import { storeCard } from "../../component/features/cards/service.js";
import { GroupsService } from "../../component/features/groups/service.js";
import { deleteAccount } from "../../component/features/userdata/export.js";
import { moduleMigrations, userDataWiring } from "../../component/features.js";
import { offlineCore, type OfflineCore } from "../../component/runtime/offline.js";
import { normalizeCard } from "../../stanzas/model/card.js";
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
      expect(await count("SELECT COUNT(*) AS n FROM tombstones")).to.equal(6);
      expect(await count("SELECT COUNT(*) AS n FROM group_invitations")).to.equal(0);
      expect(await core.read("t.p", (r) => r.audience.policies(a, b))).to.deep.equal([]);
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
