/**
 * Update requests' SQL on both backends (component/features/addressbook/request-repo.ts, migration 3010): every
 * statement of the repo against schema 2000 plus the book's migrations, the same cases on SQLite and PostgreSQL —
 * the partial unique index (one open request per pair; closed ones do not count; INSERT … ON CONFLICT DO NOTHING
 * reports the loser), close only from open, the counts (open sent/received, created since), the incoming list
 * (hidden and expired left out), expiry order and limit, pruning closed rows, ON DELETE CASCADE and the erase.
 */
import { expect } from "chai";
import { BOOK_MIGRATIONS } from "../../component/features/addressbook/migrations.js";
import { requestRepo, type RequestRow } from "../../component/features/addressbook/request-repo.js";
import type { AccountId, Migration, Store } from "../../storage/store.js";
import type { StoreFactory } from "./uow.contract.js";

const A = (n: number): AccountId => n as AccountId;
const T0 = 1_700_000_000_000;
const HOUR = 3_600_000;

export function describeBookRequests(
  name: string,
  factory: StoreFactory,
  schema: readonly Migration[],
): void {
  describe(`Store contract: update requests' SQL (${name})`, function () {
    this.timeout(60_000);
    let store: Store;

    beforeEach(async () => {
      store = await (await factory.create()).open({ clock: () => T0 });
      await store.migrate([...schema, ...BOOK_MIGRATIONS]);
      await store.tx("seed", async (tx) => {
        for (const id of [1, 2, 3, 4])
          await tx.run("INSERT INTO accounts (id, state, created_at) VALUES (:id, 'active', :now)", {
            id,
            now: T0,
          });
      });
    });
    afterEach(async () => {
      await store.close();
    });
    after(() => factory.cleanup());

    const req = (id: string, owner: number, target: number, o: Partial<RequestRow> = {}) => ({
      id,
      owner: A(owner),
      target: A(target),
      entry: `e-${id}`,
      form: "form" as const,
      hidden: false,
      createdAt: T0,
      expiresAt: T0 + HOUR,
      ...o,
    });
    const tx = <R>(fn: (r: ReturnType<typeof requestRepo>) => Promise<R>) =>
      store.tx("w", (t) => fn(requestRepo(t)));
    const read = <R>(fn: (r: ReturnType<typeof requestRepo>) => Promise<R>) =>
      store.read("r", (r) => fn(requestRepo(r)));

    it("insert and get round-trip every column; one open request per pair, a closed one does not count", async () => {
      expect(await tx((r) => r.insert(req("r1", 1, 2, { form: "pick", hidden: true })))).to.equal(true);
      expect(await read((r) => r.get("r1"))).to.deep.equal({
        id: "r1",
        owner: 1,
        target: 2,
        entry: "e-r1",
        form: "pick",
        state: "open",
        hidden: true,
        createdAt: T0,
        expiresAt: T0 + HOUR,
      });
      expect(await tx((r) => r.insert(req("r2", 1, 2)))).to.equal(false);
      expect(await read((r) => r.get("r2"))).to.equal(undefined);
      expect(await tx((r) => r.insert(req("r3", 2, 1)))).to.equal(true); // the other direction is its own pair
      expect((await read((r) => r.openBetween(A(1), A(2))))?.id).to.equal("r1");
      expect(await tx((r) => r.close("r1", "declined", T0 + 5))).to.equal(true);
      expect(await tx((r) => r.close("r1", "answered", T0 + 6))).to.equal(false); // only from open
      const closed = await read((r) => r.get("r1"));
      expect(closed?.state).to.equal("declined");
      expect(closed?.closedAt).to.equal(T0 + 5);
      expect(await read((r) => r.openBetween(A(1), A(2)))).to.equal(undefined);
      expect(await tx((r) => r.insert(req("r4", 1, 2)))).to.equal(true);
      await tx((r) => r.hide("r4"));
      expect((await read((r) => r.get("r4")))?.hidden).to.equal(true);
    });

    it("counts, lists, expiry order, entry lookup, pruning", async () => {
      await tx(async (r) => {
        await r.insert(req("a", 1, 2, { createdAt: T0 - 2 * HOUR, expiresAt: T0 - 10 }));
        await r.insert(req("b", 1, 3, { createdAt: T0 - 10, expiresAt: T0 + 100, entry: "shared" }));
        await r.insert(req("c", 4, 3, { createdAt: T0 - 5, expiresAt: T0 + 50, hidden: true }));
        await r.insert(req("d", 2, 3, { createdAt: T0 - 1, expiresAt: T0 - 1, entry: "shared" }));
      });
      expect(await read((r) => r.countOpenFrom(A(1)))).to.equal(2);
      expect(await read((r) => r.countOpenTo(A(3)))).to.equal(3);
      expect(await read((r) => r.countSince(A(1), T0 - HOUR))).to.equal(1);
      expect(await read((r) => r.oldestSince(A(1), T0 - HOUR))).to.equal(T0 - 10);
      expect(await read((r) => r.oldestSince(A(3), T0 - HOUR))).to.equal(undefined);
      // Incoming: open, not hidden, unexpired, oldest first.
      expect((await read((r) => r.incoming(A(3), T0))).map((q) => q.id)).to.deep.equal(["b"]);
      expect((await read((r) => r.outgoing(A(1)))).map((q) => q.id)).to.deep.equal(["a", "b"]);
      expect((await read((r) => r.expired(T0, 10))).map((q) => q.id)).to.deep.equal(["a", "d"]);
      expect((await read((r) => r.expired(T0, 1))).map((q) => q.id)).to.deep.equal(["a"]);
      expect((await read((r) => r.openForEntry("shared"))).map((q) => q.id).sort()).to.deep.equal(["b", "d"]);
      await tx(async (r) => {
        await r.close("a", "expired", T0 - HOUR);
        await r.close("d", "expired", T0);
      });
      expect(await read((r) => r.countSince(A(1), T0 - 3 * HOUR))).to.equal(2); // closed rows still count
      expect(await tx((r) => r.prune(T0 - HOUR))).to.equal(1);
      expect(await read((r) => r.get("a"))).to.equal(undefined);
      expect((await read((r) => r.get("d")))?.state).to.equal("expired");
    });

    it("erase takes rows either way; deleting an account cascades", async () => {
      await tx(async (r) => {
        await r.insert(req("x", 1, 2));
        await r.insert(req("y", 3, 1));
        await r.insert(req("z", 3, 4));
      });
      await tx((r) => r.erase(A(1)));
      expect(await read((r) => r.get("x"))).to.equal(undefined);
      expect(await read((r) => r.get("y"))).to.equal(undefined);
      expect((await read((r) => r.get("z")))?.id).to.equal("z");
      await store.tx("del", (t) => t.run("DELETE FROM accounts WHERE id = :id", { id: 4 }));
      expect(await read((r) => r.get("z"))).to.equal(undefined);
    });
  });
}
