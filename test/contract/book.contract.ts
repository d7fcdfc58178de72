/**
 * The address book's SQL on both backends (component/features/addressbook/repo.ts; issue 9): every statement of
 * the repo run against migration 2000 plus the book's migration 3000, the same cases on SQLite and PostgreSQL —
 * the (seq, id) sync order with its `seq:id` and plain tokens (the PAST_ALL sentinel compares above every hex id
 * under PostgreSQL's collation as under SQLite's binary one), the horizon upsert, usage sums, the id-ordered
 * pages, the linked-entry lookups, ON DELETE SET NULL / CASCADE, and the erase.
 */
import { expect } from "chai";
import { BOOK_MIGRATIONS } from "../../component/features/addressbook/migrations.js";
import { bookRepo, type EntryWrite } from "../../component/features/addressbook/repo.js";
import { PAST_ALL } from "../../component/features/addressbook/sync.js";
import type { Card } from "../../stanzas/model/card.js";
import type { AccountId, Migration, Store } from "../../storage/store.js";
import type { StoreFactory } from "./uow.contract.js";

const A = (n: number): AccountId => n as AccountId;
const T0 = 1_700_000_000_000;
/** 32 hex digits whose order is the order of n. */
const hexId = (n: number): string => n.toString(16).padStart(32, "0");
const card = (fn: string): Card => ({ fn }) as Card;

export function describeBook(name: string, factory: StoreFactory, schema: readonly Migration[]): void {
  describe(`Store contract: the address book's SQL (${name})`, function () {
    this.timeout(60_000);
    let store: Store;

    beforeEach(async () => {
      store = await (await factory.create()).open({ clock: () => T0 });
      await store.migrate([...schema, ...BOOK_MIGRATIONS]);
      await store.tx("seed", async (tx) => {
        for (const id of [1, 2, 3])
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

    const write = (w: Partial<EntryWrite> & { id: string; seq: number }, owner = A(1)) =>
      store.tx("w", (tx) =>
        bookRepo(tx).insert(
          {
            owner,
            version: 1,
            hash: "h",
            card: card(`E ${w.id.slice(-4)}`),
            edited: [],
            ...w,
          },
          T0,
        ),
      );
    const read = <R>(fn: (r: ReturnType<typeof bookRepo>) => Promise<R>) =>
      store.read("r", (r) => fn(bookRepo(r)));

    it("insert, get, update round-trip every column; a tombstone has no card, hash or bytes", async () => {
      await write({ id: hexId(1), seq: 5, linked: A(2), edited: ["note", "tel"] });
      const row = await read((b) => b.get(hexId(1)));
      expect(row).to.deep.equal({
        id: hexId(1),
        owner: 1,
        version: 1,
        hash: "h",
        card: card("E 0001"),
        bytes: JSON.stringify(card("E 0001")).length,
        linkedOwner: 2,
        edited: ["note", "tel"],
        seq: 5,
        createdAt: T0,
        updatedAt: T0,
      });
      await store.tx("u", (tx) =>
        bookRepo(tx).update(
          { id: hexId(1), owner: A(1), version: 2, hash: null, card: null, edited: [], seq: 6 },
          T0 + 1,
        ),
      );
      const dead = await read((b) => b.get(hexId(1)));
      expect(dead).to.deep.equal({
        id: hexId(1),
        owner: 1,
        version: 2,
        bytes: 0,
        edited: [],
        seq: 6,
        createdAt: T0,
        updatedAt: T0 + 1,
      });
      expect(await read((b) => b.get(hexId(9)))).to.equal(undefined);
    });

    it("changes: (seq, id) order after a position; a plain token (PAST_ALL) has seen its whole seq", async () => {
      for (let i = 1; i <= 5; i++) await write({ id: hexId(0xf0 + i), seq: 10 });
      await write({ id: hexId(1), seq: 11 });
      await write({ id: hexId(2), seq: 9 });
      await write({ id: hexId(3), seq: 12 }, A(2));
      const ids = async (seq: number, after: string, n = 100) =>
        (await read((b) => b.changes(A(1), seq, after, n))).map((r) => [r.seq, r.id.slice(-2)]);
      expect(await ids(0, PAST_ALL)).to.deep.equal([
        [9, "02"],
        [10, "f1"],
        [10, "f2"],
        [10, "f3"],
        [10, "f4"],
        [10, "f5"],
        [11, "01"],
      ]);
      expect(await ids(10, hexId(0xf2), 2)).to.deep.equal([
        [10, "f3"],
        [10, "f4"],
      ]);
      expect(await ids(10, PAST_ALL)).to.deep.equal([[11, "01"]]);
      expect(await ids(11, PAST_ALL)).to.deep.equal([]);
      expect(await read((b) => b.maxSeq(A(1)))).to.equal(11);
      expect(await read((b) => b.maxSeq(A(3)))).to.equal(0);
    });

    it("usage, listIds and page count live entries only, in id order", async () => {
      await write({ id: hexId(3), seq: 1 });
      await write({ id: hexId(1), seq: 1 });
      await write({ id: hexId(2), seq: 2, card: null, hash: null });
      await write({ id: hexId(4), seq: 1 }, A(2));
      const u = await read((b) => b.usage(A(1)));
      expect(u.entries).to.equal(2);
      expect(u.bytes).to.equal(2 * JSON.stringify(card("E 0001")).length);
      expect(await read((b) => b.usage(A(3)))).to.deep.equal({ entries: 0, bytes: 0 });
      expect(await read((b) => b.listIds(A(1)))).to.deep.equal([hexId(1), hexId(3)]);
      expect((await read((b) => b.page(A(1), "", 10))).map((r) => r.id)).to.deep.equal([hexId(1), hexId(3)]);
      expect((await read((b) => b.page(A(1), hexId(1), 10))).map((r) => r.id)).to.deep.equal([hexId(3)]);
      expect(await read((b) => b.page(A(1), hexId(1), 0))).to.deep.equal([]);
    });

    it("pruneTombstones keeps the newest, drops the oldest by (seq, id) and moves the horizon (upsert)", async () => {
      for (let i = 1; i <= 5; i++) await write({ id: hexId(i), seq: 20 + i, card: null, hash: null });
      await write({ id: hexId(9), seq: 30 });
      expect(await read((b) => b.horizon(A(1)))).to.equal(0);
      expect(await store.tx("p", (tx) => bookRepo(tx).pruneTombstones(A(1), 3))).to.equal(2);
      expect(await read((b) => b.horizon(A(1)))).to.equal(22);
      expect((await read((b) => b.changes(A(1), 0, PAST_ALL, 100))).map((r) => r.seq)).to.deep.equal([
        23, 24, 25, 30,
      ]);
      expect(await store.tx("p", (tx) => bookRepo(tx).pruneTombstones(A(1), 3))).to.equal(0);
      expect(await store.tx("p", (tx) => bookRepo(tx).pruneTombstones(A(1), 1))).to.equal(2);
      expect(await read((b) => b.horizon(A(1)))).to.equal(24);
    });

    it("linkedTo and linkedBetween find live linked entries; deleting the linked account nulls the link", async () => {
      await write({ id: hexId(1), seq: 1, linked: A(3) });
      await write({ id: hexId(2), seq: 1, linked: A(3) }, A(2));
      await write({ id: hexId(3), seq: 1, linked: A(3), card: null, hash: null });
      await write({ id: hexId(4), seq: 1, linked: A(2) });
      expect((await read((b) => b.linkedTo(A(3)))).map((r) => [r.owner, r.id])).to.deep.equal([
        [1, hexId(1)],
        [2, hexId(2)],
      ]);
      expect((await read((b) => b.linkedBetween(A(1), A(2)))).map((r) => r.id)).to.deep.equal([hexId(4)]);
      await store.tx("d", (tx) => tx.run("DELETE FROM accounts WHERE id = 3"));
      expect((await read((b) => b.get(hexId(1))))?.linkedOwner).to.equal(undefined);
      expect(await read((b) => b.linkedTo(A(3)))).to.deep.equal([]);
    });

    it("erase removes one account's book and horizon; deleting an account cascades", async () => {
      await write({ id: hexId(1), seq: 1, card: null, hash: null });
      await write({ id: hexId(2), seq: 2 });
      await write({ id: hexId(3), seq: 2 }, A(2));
      await store.tx("p", (tx) => bookRepo(tx).pruneTombstones(A(1), 0));
      expect(await read((b) => b.horizon(A(1)))).to.equal(1);
      await store.tx("e", (tx) => bookRepo(tx).erase(A(1)));
      expect(await read((b) => b.listIds(A(1)))).to.deep.equal([]);
      expect(await read((b) => b.horizon(A(1)))).to.equal(0);
      expect(await read((b) => b.listIds(A(2)))).to.deep.equal([hexId(3)]);
      await store.tx("d", (tx) => tx.run("DELETE FROM accounts WHERE id = 2"));
      expect(await read((b) => b.get(hexId(3)))).to.equal(undefined);
    });
  });
}
