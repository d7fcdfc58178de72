/**
 * The address book's rules (component/features/addressbook, issue 9 part 1) over a temp SQLite store with schema
 * 2000 + migration 3000 and the real runtime parts: CRUD and its errors, optimistic concurrency, the caps, sync
 * tokens (including a page cut inside one seq), tombstone pruning and the reset, the `book-entry` kind, linked
 * entries following a card per field, unlink on unbind, and erasure.
 */
import { expect } from "chai";
import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { BOOK_MIGRATIONS } from "../../component/features/addressbook/migrations.js";
import { bookRepo } from "../../component/features/addressbook/repo.js";
import { bookChangedKind, entryKind } from "../../component/features/addressbook/render.js";
import {
  BookService,
  KIND_ENTRY,
  eraseBook,
  followCard,
  unlinkUnheld,
} from "../../component/features/addressbook/service.js";
import { bookSyncPage, parseToken, exportPage } from "../../component/features/addressbook/sync.js";
import { parseImport } from "../../component/features/addressbook/index.js";
import { cardKind } from "../../component/features/cards/render.js";
import { storeCard } from "../../component/features/cards/service.js";
import { accountsParts } from "../../component/runtime/accounts/tx.js";
import { audienceParts } from "../../component/runtime/audience/tx.js";
import { StanzaBudget } from "../../component/runtime/budget.js";
import { EventBus } from "../../component/runtime/events.js";
import type { StreamKind } from "../../component/runtime/queue/api.js";
import { streamTx } from "../../component/runtime/queue/stream-tx.js";
import { makeReader, makeUow } from "../../component/runtime/uow.js";
import { DEFAULT_CARD_LIMITS, normalizeCard, type Card } from "../../stanzas/model/card.js";
import { StanzaError } from "../../stanzas/errors.js";
import { SCHEMA_2000 } from "../../storage/sqlite/schema-2000.js";
import { SqliteStore } from "../../storage/sqlite/store.js";
import type { AccountId } from "../../storage/store.js";
import { BINDING_PATH, bind, unbind, type CardsWorld } from "../harness/seed-cards.js";

const A = "alice@a.example";
const B = "bob@a.example";
const LIMITS = DEFAULT_CARD_LIMITS;
const card = (fn: string, extra: Partial<Card> = {}): Card =>
  normalizeCard({
    fn,
    nickname: [],
    tel: [],
    email: [],
    adr: [],
    url: [],
    impp: [],
    categories: [],
    ...extra,
  });

async function world(book = { maxEntries: 50, maxBytes: 1024 * 1024 }) {
  const dir = mkdtempSync(path.join(os.tmpdir(), "cardlink-book-"));
  const store = new SqliteStore(path.join(dir, "store.sqlite"), { legacy: false });
  await store.migrate([SCHEMA_2000, ...BOOK_MIGRATIONS]);
  const events = new EventBus();
  const kinds = new Map<string, StreamKind>([
    ["card", cardKind()],
    [KIND_ENTRY, entryKind({ domain: "cards.a.example" })],
    [bookChangedKind.name, bookChangedKind],
  ]);
  const paths = [BINDING_PATH];
  const accounts = accountsParts({ cacheSize: 1000, cacheTtlMs: 60_000, events });
  const audience = audienceParts({ paths });
  const unused = (): never => {
    throw new Error("jobs are not used here");
  };
  const uow = makeUow(
    store,
    {
      accounts: accounts.tx,
      stream: streamTx({ kind: (n) => kinds.get(n), paths }),
      jobs: unused,
      audience: audience.tx,
    },
    events,
  );
  const read = makeReader(store, { accounts: accounts.read, audience: audience.read });
  events.onTx("card.updated", (u, e) => followCard(u, e.owner, { card: LIMITS, book }));
  events.onTx("binding.removed", (u, e) => unlinkUnheld(u, e.a, e.b));
  const svc = new BookService({ uow, read, card: LIMITS, book });
  const w = {
    store,
    uow,
    read,
    events,
    kind: kinds.get("card") as StreamKind,
    cache: undefined as never,
    close: async () => {
      await store.close();
      rmSync(dir, { recursive: true, force: true });
    },
  } as CardsWorld;
  return { w, svc, book, read, uow };
}

async function refused(p: Promise<unknown>, condition: string, text?: RegExp): Promise<StanzaError> {
  try {
    await p;
  } catch (e) {
    expect(e).to.be.instanceOf(StanzaError);
    expect((e as StanzaError).condition).to.equal(condition);
    if (text) expect((e as StanzaError).message).to.match(text);
    return e as StanzaError;
  }
  throw new Error(`expected ${condition}`);
}

const budget = new StanzaBudget(512 * 1024);
const sync = (x: Awaited<ReturnType<typeof world>>, since: string, max = 200) =>
  x.read("t", (r) =>
    bookSyncPage(r, {
      user: A,
      since: parseToken(since),
      max,
      format: "vcard4",
      budget,
      domain: "cards.a.example",
    }),
  );
const laneEntries = (x: Awaited<ReturnType<typeof world>>, lane: AccountId) =>
  x.read("t", (r) =>
    r.read.all<{ kind: string; subject: string }>(
      "SELECT kind, subject FROM stream_entries WHERE account_id = :lane ORDER BY seq, id",
      { lane },
    ),
  );

describe("address book (features/addressbook)", () => {
  it("create, get, update at the right version, conflict on a stale one, remove; nothing written when refused", async () => {
    const x = await world();
    try {
      const c = await x.svc.create(A, { card: card("Bob Example") });
      expect(c.row.version).to.equal(1);
      expect(c.row.id).to.match(/^[0-9a-f]{32}$/);
      const u = await x.svc.update(A, c.row.id, 1, { card: card("Bob E.") });
      expect(u.changed).to.equal(true);
      expect(u.row.version).to.equal(2);
      const same = await x.svc.update(A, c.row.id, 2, { card: card("Bob E.") });
      expect(same.changed).to.equal(false);
      const before = await x.read("t", (r) => bookRepo(r.read).get(c.row.id));
      await refused(x.svc.update(A, c.row.id, 1, { card: card("stale") }), "conflict", /at version 2, not 1/);
      await refused(x.svc.update(B, c.row.id, 2, { card: card("not mine") }), "item-not-found");
      await refused(x.svc.remove(B, c.row.id), "item-not-found");
      await refused(x.svc.remove(A, c.row.id, 1), "conflict");
      expect(await x.read("t", (r) => bookRepo(r.read).get(c.row.id))).to.deep.equal(before);
      expect((await x.svc.get(A, c.row.id)).row.card.fn).to.equal("Bob E.");
      await x.svc.remove(A, c.row.id, 2);
      await refused(x.svc.get(A, c.row.id), "item-not-found");
      await refused(x.svc.update(A, c.row.id, 3, { card: card("gone") }), "item-not-found");
      const me = (await x.read("t", (r) => r.accounts.resolve(A))) as AccountId;
      // Every change reached the owner's lane as one coalesced book-entry entry.
      expect(await laneEntries(x, me)).to.deep.equal([{ kind: KIND_ENTRY, subject: c.row.id }]);
    } finally {
      await x.w.close();
    }
  });

  it("the entry cap and the byte budget refuse a create or an import whole", async () => {
    const x = await world({ maxEntries: 3, maxBytes: 64 * 1024 });
    try {
      await x.svc.importCards(A, [card("one"), card("two")]);
      await refused(x.svc.importCards(A, [card("three"), card("four")]), "resource-constraint", /limit of 3/);
      await x.svc.create(A, { card: card("three") });
      await refused(x.svc.create(A, { card: card("four") }), "resource-constraint");
      const me = (await x.read("t", (r) => r.accounts.resolve(A))) as AccountId;
      expect((await x.read("t", (r) => bookRepo(r.read).usage(me))).entries).to.equal(3);
      const big = card("big", { note: "x".repeat(4000) });
      const y = await world({ maxEntries: 100, maxBytes: 64 * 1024 });
      try {
        await refused(
          y.svc.importCards(
            A,
            Array.from({ length: 20 }, () => big),
          ),
          "resource-constraint",
          /bytes/,
        );
      } finally {
        await y.w.close();
      }
    } finally {
      await x.w.close();
    }
  });

  it("sync: changes after a token, tombstones, pages cut inside one seq resume exactly", async () => {
    const x = await world({ maxEntries: 1000, maxBytes: 8 * 1024 * 1024 });
    try {
      const r = await x.svc.importCards(
        A,
        Array.from({ length: 25 }, (_, i) => card(`p${i}`)),
      );
      const seen = new Set<string>();
      let token = "0";
      let pages = 0;
      for (;;) {
        const p = await sync(x, token, 10);
        pages++;
        for (const el of p.items) seen.add(el.attrs.id as string);
        token = p.token;
        if (!p.more) break;
      }
      expect(pages).to.equal(3);
      expect(seen.size).to.equal(25);
      expect(token).to.equal(String(r.seq));
      const first = r.ids[0] as string;
      await x.svc.remove(A, first);
      const after = await sync(x, token);
      expect(after.items.map((e) => [e.name, e.attrs.id])).to.deep.equal([["removed", first]]);
      expect((await sync(x, after.token)).items).to.have.length(0);
      await refused(
        x.read("t", async () => parseToken("x1")),
        "bad-request",
      );
    } finally {
      await x.w.close();
    }
  });

  it("tombstones beyond the cap are pruned; a token behind the horizon gets a full reload with reset", async () => {
    const x = await world({ maxEntries: 2, maxBytes: 1024 * 1024 });
    try {
      const old = (await sync(x, "0")).token;
      for (let i = 0; i < 4; i++) {
        const c = await x.svc.create(A, { card: card(`t${i}`) });
        await x.svc.remove(A, c.row.id);
      }
      const me = (await x.read("t", (r) => r.accounts.resolve(A))) as AccountId;
      const stale = await x.read("t", (r) => bookRepo(r.read).horizon(me));
      expect(stale).to.be.greaterThan(0);
      const p = await sync(x, String(stale - 1));
      expect(p.reset).to.equal(true);
      expect(p.items.every((e) => e.name === "removed")).to.equal(true);
      expect(p.items).to.have.length(2);
      expect((await sync(x, String(stale))).reset).to.equal(false);
      expect(old).to.equal("0");
    } finally {
      await x.w.close();
    }
  });

  it("a linked entry follows the card per field; the owner's edited fields stay; unbind unlinks", async () => {
    const x = await world();
    try {
      await storeCard(x, B, card("Bob", { title: "Engineer", note: "card note" }));
      await refused(x.svc.create(A, { link: B }), "item-not-found", /you hold no card of bob/);
      await bind(x.w, A, B);
      const c = await x.svc.create(A, { link: B });
      expect(c.row.card?.title).to.equal("Engineer");
      expect(c.row.linkedOwner).to.be.a("number");
      // The owner makes the note theirs.
      const e = await x.svc.update(A, c.row.id, 1, {
        card: { ...(c.row.card as Card), note: "met at FOSDEM" },
      });
      expect(e.row.edited).to.deep.equal(["note"]);
      await storeCard(x, B, card("Bob", { title: "CTO", note: "new card note" }));
      const now = (await x.svc.get(A, c.row.id)).row;
      expect(now.card.title).to.equal("CTO");
      expect(now.card.note).to.equal("met at FOSDEM");
      expect(now.version).to.equal(3);
      await unbind(x.w, A, B);
      const a = (await x.read("t", (r) => r.accounts.resolve(A))) as AccountId;
      const b = (await x.read("t", (r) => r.accounts.resolve(B))) as AccountId;
      await x.uow("t", (u) => u.emit("binding.removed", { binding: "b", a, b }));
      const un = (await x.svc.get(A, c.row.id)).row;
      expect(un.linkedOwner).to.equal(undefined);
      expect(un.card.title).to.equal("CTO");
      await storeCard(x, B, card("Bob", { title: "CEO" }));
      expect((await x.svc.get(A, c.row.id)).row.card.title).to.equal("CTO");
    } finally {
      await x.w.close();
    }
  });

  it("the book-entry kind renders the entry, <removed/> once deleted, and nothing for another lane", async () => {
    const x = await world();
    try {
      const c = await x.svc.create(A, { card: card("Carol") });
      const kind = entryKind({ domain: "cards.a.example" });
      const me = (await x.read("t", (r) => r.accounts.resolve(A))) as AccountId;
      const render = (lane: AccountId) =>
        x.read("t", (r) =>
          kind.render(
            {
              ...r,
              budget,
              cache: { get: (_k: string, _key: string, load: () => Promise<unknown>) => load() },
            } as never,
            {
              lane,
              seq: 1,
              ord: 0,
              kind: KIND_ENTRY,
              subject: c.row.id,
            },
          ),
        );
      const el = await render(me);
      expect(el?.attrs.uri).to.equal(`xmpp:cards.a.example?cardlink;entry=${c.row.id}`);
      expect(await render((me + 1000) as AccountId)).to.equal(null);
      await x.svc.remove(A, c.row.id);
      expect((await render(me))?.name).to.equal("removed");
    } finally {
      await x.w.close();
    }
  });

  it("erasure takes the book and unlinks others' entries that followed the account", async () => {
    const x = await world();
    try {
      await storeCard(x, B, card("Bob"));
      await bind(x.w, A, B);
      const c = await x.svc.create(A, { link: B });
      await x.svc.create(B, { card: card("B's friend") });
      const b = (await x.read("t", (r) => r.accounts.resolve(B))) as AccountId;
      await x.uow("t", (u) => eraseBook(u, b));
      expect(await x.read("t", (r) => bookRepo(r.read).listIds(b))).to.deep.equal([]);
      expect((await x.svc.get(A, c.row.id)).row.linkedOwner).to.equal(undefined);
    } finally {
      await x.w.close();
    }
  });

  it("imports report per-card errors; export pages concatenate to the whole book", async () => {
    const x = await world({ maxEntries: 1000, maxBytes: 8 * 1024 * 1024 });
    try {
      const text =
        "BEGIN:VCARD\r\nVERSION:3.0\r\nFN:Good One\r\nEND:VCARD\r\n" +
        "BEGIN:VCARD\r\nVERSION:3.0\r\nN:No;Fn;;;\r\nEND:VCARD\r\n" +
        "BEGIN:VCARD\r\nVERSION:4.0\r\nFN:Good Two\r\nEND:VCARD\r\n";
      const p = parseImport(text, LIMITS);
      expect(p.cards.map((c) => c.fn)).to.deep.equal(["Good One", "Good Two"]);
      expect(p.errors).to.deep.equal([{ index: 1, line: 5, error: "vcf: FN is required" }]);
      // Text with no BEGIN:VCARD is no .vcf file: refused whole, not one unreadable card (it was answered
      // imported='0' failed='1' until the integration test sent it).
      for (const junk of ["", "hello", "hello\r\nFN:x\r\nEND:VCARD\r\n", "X-BEGIN:VCARD\r\n"]) {
        expect(() => parseImport(junk, LIMITS), junk)
          .to.throw(StanzaError, "vcf: no BEGIN:VCARD found")
          .with.property("condition", "bad-request");
      }
      expect(
        parseImport("junk\r\nbegin:vcard\r\nVERSION:4.0\r\nFN:x\r\nend:vcard\r\n", LIMITS).errors,
      ).to.deep.equal([{ index: 0, line: 1, error: "vcf: text outside BEGIN:VCARD … END:VCARD" }]);
      await x.svc.importCards(
        A,
        Array.from({ length: 300 }, (_, i) => card(`E${i}`, { note: "n".repeat(2000) })),
      );
      const small = new StanzaBudget(64 * 1024);
      let after = "";
      let all = "";
      let pages = 0;
      for (;;) {
        const el = await x.read("t", (r) => exportPage(r, { user: A, after, budget: small }));
        pages++;
        all += el.getText();
        if (el.attrs.more !== "true") break;
        after = el.attrs.last as string;
      }
      expect(pages).to.be.greaterThan(1);
      expect(parseImport(all, LIMITS).cards).to.have.length(300);
    } finally {
      await x.w.close();
    }
  });
});
