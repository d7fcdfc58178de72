/**
 * The address book over the wire (issue 9; PROTOCOL §20): a real Prosody, real @xmpp/client sessions, cardlink
 * in process. Every IQ of §20 is sent by a client and its answer read as the client receives it: create, read,
 * update and remove with versions (stale → conflict; another user's entry → answered like a missing one), the RSM
 * list and `<book-sync/>` paging with tokens (`seq:id` inside an import, `<removed/>`, `reset`), a `.vcf` of
 * several hundred Apple- and Google-style cards imported, exported page by page and imported again, two resources
 * of the owner (the change one makes reaches the other as a `book-entry` update, acknowledged), an entry linked
 * to a card held after a real exchange following that card's change, every error of §20.10 with its condition
 * and text, the entry and byte caps (set low here), and nothing written for a refused request.
 *
 * With CARDLINK_TEST_RAW=1 every stanza on cardlink's link is printed after the suite (PROTOCOL §20's examples).
 */
import { appleCard, googleCard } from "../harness/vcf-exports.js";
import { expect } from "chai";
import { pino } from "pino";
import { coreModules, moduleMigrations } from "../../component/features.js";
import { createCardlink, type Cardlink } from "../../component/runtime/app.js";
import type { Config } from "../../component/runtime/config.js";
import { NS } from "../../stanzas/ns.js";
import { cardsFromVcf } from "../../stanzas/vcf.js";
import { cardClient, email, tel, vcard, type CardClient } from "../harness/cardclient.js";
import { testConfig } from "../harness/cardlink.js";
import { errorOf, xml, type Element } from "../harness/clients.js";
import * as inspect from "../harness/inspect.js";
import { waitFor } from "../harness/ports.js";
import { ProsodyServer } from "../harness/prosody.js";

/** Low caps so the suite reaches them: a book of a few hundred entries, a quarter MiB. */
const MAX_ENTRIES = 310;
const MAX_BYTES = 256 * 1024;
const IMPORTED = 300;

const fnOf = (entry: Element | undefined): string =>
  entry?.getChild("vcard", NS.VCARD4)?.getChild("fn")?.getChildText("text") ?? "";

describe("address book: urn:cardlink:book:0 over the wire (real Prosody, real clients)", function () {
  this.timeout(300_000);
  const prosody = new ProsodyServer();
  let app: Cardlink;
  let cardLimits: Config["card"];
  const clients: CardClient[] = [];
  const logs: Array<Record<string, unknown>> = [];
  const jid = (u: string): string => `${u}@${prosody.host}`;
  const comp = (): string => prosody.componentDomain;

  const connect = async (user: string, resource: string, presence = true): Promise<CardClient> => {
    const c = await cardClient(prosody, user, { resource, presence });
    clients.push(c);
    return c;
  };
  /** Sends a book IQ; answers the raw reply (result or error). */
  const book = (
    c: CardClient,
    type: "get" | "set",
    name: string,
    attrs: Record<string, string> = {},
    ...children: Array<Element | string>
  ): Promise<Element> =>
    c.iqRaw(type, comp(), xml(name, { xmlns: NS.BOOK, ...attrs }, ...(children as Element[])));
  /** Sends a book IQ that must succeed; answers its payload (undefined for an empty result). */
  const ok = async (
    c: CardClient,
    type: "get" | "set",
    name: string,
    attrs: Record<string, string> = {},
    ...children: Array<Element | string>
  ): Promise<Element | undefined> => {
    const r = await book(c, type, name, attrs, ...children);
    if (r.attrs.type !== "result") throw new Error(`${name}: ${JSON.stringify(errorOf(r))}`);
    return r.getChild(name, NS.BOOK);
  };
  const expectError = async (
    reply: Promise<Element>,
    condition: string,
    type: string,
    text: string | RegExp,
  ): Promise<void> => {
    const e = errorOf(await reply);
    expect(e.condition, e.text).to.equal(condition);
    expect(e.type).to.equal(type);
    if (typeof text === "string") expect(e.text).to.equal(text);
    else expect(e.text).to.match(text);
  };

  /** The whole book by `<book-sync/>` from `since`: every page, its tokens, entries and removals. */
  const syncAll = async (
    c: CardClient,
    since: string,
    max = 100,
  ): Promise<{ token: string; tokens: string[]; entries: Element[]; removed: string[]; reset: boolean }> => {
    const tokens: string[] = [];
    const entries: Element[] = [];
    const removed: string[] = [];
    let token = since;
    let reset = false;
    for (let i = 0; i < 100; i++) {
      const s = (await ok(c, "get", "book-sync", { since: token, max: String(max) })) as Element;
      if (s.attrs.reset === "true") reset = true;
      entries.push(...s.getChildren("entry"));
      removed.push(...s.getChildren("removed").map((r) => String(r.attrs.id)));
      token = String(s.attrs.token);
      tokens.push(token);
      if (s.attrs.more !== "true") return { token, tokens, entries, removed, reset };
    }
    throw new Error("book-sync did not end");
  };
  /** The sender's live entry count and sync position (what a refused request must leave as it was). */
  const state = async (c: CardClient): Promise<{ count: string; token: string }> => {
    const ex = (await ok(c, "get", "vcf-export")) as Element;
    return { count: String(ex.attrs.count), token: (await syncAll(c, "0")).token };
  };

  before(async () => {
    await prosody.start();
    prosody.createUsers(
      ["alice", "bob", "carol", "dave", "erin", "frank"].map((u) => ({ user: u, password: `${u}pw` })),
    );
    const config = testConfig(prosody, {
      log: { level: "trace", rawStream: true },
      delivery: { ackTimeoutMs: 2000, retryBaseMs: 200, retryMaxMs: 1000, batchSize: 20 },
      book: { maxEntries: MAX_ENTRIES, maxBytes: MAX_BYTES },
    });
    cardLimits = config.card;
    const log = pino(
      { level: "trace" },
      { write: (line: string) => logs.push(JSON.parse(line) as Record<string, unknown>) },
    );
    app = await createCardlink(config, { log, modules: coreModules, migrations: moduleMigrations() });
    await app.start();
    await waitFor(() => app.link.online, "cardlink online", 15_000);
  });
  after(async () => {
    for (const c of clients) await c.stop();
    await app?.stop();
    await prosody.stop();
    prosody.cleanup();
    if (process.env.CARDLINK_TEST_RAW === "1") {
      for (const l of logs) {
        if (typeof l.in === "string") console.log(`IN  ${l.in}`);
        if (typeof l.out === "string") console.log(`OUT ${l.out}`);
      }
    }
  });

  let phone: CardClient;
  let tablet: CardClient;
  let carol: CardClient;

  it("disco#info advertises urn:cardlink:book:0", async () => {
    phone = await connect("bob", "phone");
    const info = (await phone.iq("get", comp(), xml("query", { xmlns: NS.DISCO_INFO }))).getChild("query");
    expect(info?.getChildren("feature").map((f) => f.attrs.var)).to.include(NS.BOOK);
  });

  it("create, read, update with versions, remove; another user's entry is answered like a missing one", async () => {
    tablet = await connect("bob", "tablet");
    carol = await connect("carol", "phone");
    await waitFor(
      async () => (await inspect.resources(app)).filter((r) => r.full.startsWith(jid("bob"))).length === 2,
      "both of bob's resources known",
    );
    const created = (await ok(
      phone,
      "set",
      "entry",
      {},
      vcard("Dana Example", tel("tel:+1-555-0142", "cell"), email("dana@example.net", "home")),
    )) as Element;
    const id = String(created.attrs.id);
    expect(id).to.match(/^[0-9a-f]{32}$/);
    expect(created.attrs).to.include({
      uri: `xmpp:${comp()}?cardlink;entry=${id}`,
      version: "1",
      changed: "true",
    });
    expect(String(created.attrs.hash)).to.match(/^[0-9a-f]{64}$/);
    expect(created.children).to.have.length(0);

    const read = (await ok(phone, "get", "entry", { id })) as Element;
    expect(read.attrs).to.include({ id, version: "1", hash: created.attrs.hash });
    expect(fnOf(read)).to.equal("Dana Example");
    const asVcf = (await ok(phone, "get", "entry", { id, format: "vcf" })) as Element;
    expect(asVcf.getText()).to.contain("FN:Dana Example");

    // The other resource receives the new entry as a book-entry update (and acknowledges it).
    const u1 = await tablet.waitForUpdate(
      (u) => u.kind === "book-entry" && u.content.attrs.id === id && u.content.attrs.version === "1",
      "new entry at the tablet",
    );
    expect(fnOf(u1.content)).to.equal("Dana Example");
    expect(u1.content.attrs.uri).to.equal(created.attrs.uri);

    const updated = (await ok(
      phone,
      "set",
      "entry",
      { id, version: "1" },
      vcard("Dana Q. Example"),
    )) as Element;
    expect(updated.attrs).to.include({ id, version: "2", changed: "true" });
    const u2 = await tablet.waitForUpdate(
      (u) => u.kind === "book-entry" && u.content.attrs.id === id && u.content.attrs.version === "2",
      "updated entry at the tablet",
    );
    expect(fnOf(u2.content)).to.equal("Dana Q. Example");
    // The phone made the change and receives it too (a lane cannot leave one resource out); both acked.
    await phone.waitForUpdate(
      (u) => u.kind === "book-entry" && u.content.attrs.id === id && u.content.attrs.version === "2",
      "updated entry at the phone",
    );
    await waitFor(async () => (await inspect.pendingCount(app, jid("bob"))) === 0, "bob's lane acked");

    // The same card again: nothing changes, the same version.
    const same = (await ok(phone, "set", "entry", { id, version: "2" }, vcard("Dana Q. Example"))) as Element;
    expect(same.attrs).to.include({ version: "2", changed: "false" });

    const before = await state(phone);
    await expectError(
      book(tablet, "set", "entry", { id, version: "1" }, vcard("Stale edit")),
      "conflict",
      "cancel",
      `entry ${id} is at version 2, not 1; read it again and redo the change`,
    );
    await expectError(
      book(phone, "set", "remove-entry", { id, version: "1" }),
      "conflict",
      "cancel",
      `entry ${id} is at version 2, not 1; read it again and redo the change`,
    );
    // Carol names Bob's entry: exactly the answer to an id that does not exist, for every request.
    const missing = `your address book has no entry ${id}`;
    await expectError(book(carol, "get", "entry", { id }), "item-not-found", "cancel", missing);
    await expectError(
      book(carol, "set", "entry", { id, version: "2" }, vcard("Mine now")),
      "item-not-found",
      "cancel",
      missing,
    );
    await expectError(book(carol, "set", "remove-entry", { id }), "item-not-found", "cancel", missing);
    const nobody = "0123456789abcdef0123456789abcdef";
    await expectError(
      book(phone, "get", "entry", { id: nobody }),
      "item-not-found",
      "cancel",
      `your address book has no entry ${nobody}`,
    );
    expect(await state(phone)).to.deep.equal(before);
    expect(fnOf(await ok(phone, "get", "entry", { id }))).to.equal("Dana Q. Example");

    expect(await ok(phone, "set", "remove-entry", { id, version: "2" })).to.equal(undefined);
    const gone = await tablet.waitForUpdate(
      (u) => u.kind === "book-entry" && u.content.name === "removed" && u.content.attrs.id === id,
      "removal at the tablet",
    );
    expect(gone.content.attrs.xmlns).to.equal(NS.BOOK);
    await expectError(book(phone, "get", "entry", { id }), "item-not-found", "cancel", missing);
    await expectError(book(phone, "set", "remove-entry", { id }), "item-not-found", "cancel", missing);
    await waitFor(async () => (await inspect.pendingCount(app, jid("bob"))) === 0, "bob's lane acked");
  });

  let importedIds: string[] = [];
  let afterImport = "";

  it(`imports a .vcf of ${IMPORTED} Apple and Google cards; lists and syncs it in pages; a removal syncs as <removed/>`, async () => {
    const { token: start } = await syncAll(phone, "0");
    const text =
      Array.from({ length: IMPORTED / 2 }, (_, i) => appleCard(i) + googleCard(i)).join("") +
      // One card the import cannot read: reported with its index and line, the rest is stored.
      "BEGIN:VCARD\r\nVERSION:3.0\r\nN:Nobody;;;;\r\nEND:VCARD\r\n";
    const r = (await ok(phone, "set", "vcf-import", {}, text)) as Element;
    expect(r.attrs).to.include({ imported: String(IMPORTED), failed: "1" });
    const errs = r.getChildren("error");
    expect(errs).to.have.length(1);
    expect(errs[0]?.attrs).to.include({ index: String(IMPORTED), line: String(IMPORTED * 13 + 1) });
    expect(errs[0]?.getText()).to.match(/FN/);
    // The other resource is told once to sync (`book-changed`, §20.9), not sent 300 entries.
    const entriesBefore = tablet.updates.filter((u) => u.kind === "book-entry").length;
    const changed = await tablet.waitForUpdate((u) => u.kind === "book-changed", "one book-changed");
    expect(changed.content.toString()).to.equal(`<book-changed xmlns="${NS.BOOK}"/>`);

    // The RSM list, 50 a page.
    const listed: string[] = [];
    let after: string | undefined;
    for (let i = 0; i < 20; i++) {
      const set = xml(
        "set",
        { xmlns: "http://jabber.org/protocol/rsm" },
        xml("max", {}, "50"),
        after === undefined ? null : xml("after", {}, after),
      );
      const page = (await ok(phone, "get", "entries", {}, set)) as Element;
      const items = page.getChildren("entry");
      listed.push(...items.map((e) => String(e.attrs.id)));
      const rsm = page.getChild("set", "http://jabber.org/protocol/rsm");
      expect(rsm?.getChildText("count")).to.equal(String(IMPORTED));
      if (items.length === 0 || listed.length >= IMPORTED) break;
      for (const e of items) expect(fnOf(e)).to.match(/^(Johnny Appleseed|Grace Hopper) \d+$/);
      after = rsm?.getChildText("last") ?? undefined;
    }
    expect(listed).to.have.length(IMPORTED);
    expect([...listed].sort()).to.deep.equal(listed);
    importedIds = listed;
    expect(tablet.updates.filter((u) => u.kind === "book-changed")).to.have.length(1);
    expect(tablet.updates.filter((u) => u.kind === "book-entry").length).to.equal(entriesBefore);

    // Sync from before the import, 100 a page: the import is one seq, so the first pages end inside it.
    const s = await syncAll(phone, start);
    expect(s.entries.map((e) => String(e.attrs.id)).sort()).to.deep.equal(listed);
    expect(s.removed).to.deep.equal([]);
    expect(s.tokens.slice(0, -1).every((t) => /^\d+:[0-9a-f]{32}$/.test(t))).to.equal(true);
    expect(s.token).to.match(/^\d+$/);
    const apple = s.entries.find((e) => fnOf(e) === "Johnny Appleseed 7") as Element;
    const v = apple.getChild("vcard", NS.VCARD4);
    expect(v?.getChild("bday")?.getChildText("date")).to.equal("--03-15");
    const google = s.entries.find((e) => fnOf(e) === "Grace Hopper 7") as Element;
    expect(google.getChild("vcard", NS.VCARD4)?.getChild("photo")?.getChildText("uri")).to.equal(
      "https://lh3.googleusercontent.com/contacts/photo-7",
    );
    afterImport = s.token;
    // Nothing since: the same token back, nothing in it.
    const none = (await ok(phone, "get", "book-sync", { since: afterImport })) as Element;
    expect(none.attrs).to.include({ token: afterImport, more: "false" });
    expect(none.children).to.have.length(0);

    const gone = listed[3] as string;
    await ok(phone, "set", "remove-entry", { id: gone });
    const d = await syncAll(phone, afterImport);
    expect(d.removed).to.deep.equal([gone]);
    expect(d.entries).to.have.length(0);
    importedIds = listed.filter((x) => x !== gone);
    afterImport = d.token;
  });

  it("exports the book as .vcf page by page; importing the export gives the same book", async () => {
    let text = "";
    let after: string | undefined;
    let pages = 0;
    for (;;) {
      const p = (await ok(phone, "get", "vcf-export", after === undefined ? {} : { after })) as Element;
      pages++;
      expect(p.attrs.count).to.equal(String(IMPORTED - 1));
      text += p.getText();
      if (p.attrs.more !== "true") break;
      after = String(p.attrs.last);
      expect(pages).to.be.below(50);
    }
    const cards = cardsFromVcf(text, cardLimits);
    expect(cards.filter((c) => "error" in c)).to.deep.equal([]);
    expect(cards).to.have.length(IMPORTED - 1);

    const dave = await connect("dave", "phone");
    const r = (await ok(dave, "set", "vcf-import", {}, text)) as Element;
    expect(r.attrs).to.include({ imported: String(IMPORTED - 1), failed: "0" });
    const mine = await syncAll(phone, "0");
    const his = await syncAll(dave, "0");
    const summary = (es: Element[]) =>
      es
        .map((e) => {
          const v = e.getChild("vcard", NS.VCARD4);
          return JSON.stringify([fnOf(e), v?.getChildren("tel").length, v?.getChildren("email").length]);
        })
        .sort();
    expect(summary(his.entries)).to.deep.equal(summary(mine.entries));
    expect(new Set(his.entries.map((e) => String(e.attrs.hash)))).to.deep.equal(
      new Set(mine.entries.map((e) => String(e.attrs.hash))),
    );
  });

  it("an entry linked to a card held after an exchange follows that card's change; the owner's field stays", async () => {
    const alice = await connect("alice", "phone");
    await alice.setCard("Alice Example", [tel("tel:+1-555-0100", "work")]);
    const code = String(
      (await alice.cardlink("set", "exchange-code", {})).getChild("exchange-code")?.attrs.code,
    );
    await phone.cardlink("set", "redeem", { code });
    await phone.waitForUpdate(
      (u) => u.kind === "card" && u.content.attrs.owner === jid("alice"),
      "alice's card",
    );

    await expectError(
      book(phone, "set", "entry", { link: jid("carol") }),
      "item-not-found",
      "cancel",
      `you hold no card of ${jid("carol")}`,
    );
    const e = (await ok(phone, "set", "entry", { link: jid("alice") })) as Element;
    const id = String(e.attrs.id);
    expect(e.attrs).to.include({ linked: jid("alice"), version: "1" });
    expect(e.attrs.edited).to.equal(undefined);
    // Bob makes the note his own.
    const read = (await ok(phone, "get", "entry", { id })) as Element;
    expect(fnOf(read)).to.equal("Alice Example");
    const mine = vcard(
      "Alice Example",
      tel("tel:+1-555-0100", "work"),
      xml("note", {}, xml("text", {}, "met at the conference")),
    );
    const edited = (await ok(phone, "set", "entry", { id, version: "1" }, mine)) as Element;
    expect(edited.attrs).to.include({ linked: jid("alice"), edited: "note", version: "2" });

    await alice.setCard("Alice Q. Example", [tel("tel:+1-555-0199", "work")]);
    const u = await tablet.waitForUpdate(
      (x) => x.kind === "book-entry" && x.content.attrs.id === id && x.content.attrs.version === "3",
      "the followed change at the tablet",
    );
    expect(u.content.attrs).to.include({ linked: jid("alice"), edited: "note" });
    const v = u.content.getChild("vcard", NS.VCARD4);
    expect(fnOf(u.content)).to.equal("Alice Q. Example");
    expect(v?.getChild("tel")?.getChildText("uri")).to.equal("tel:+1-555-0199");
    expect(v?.getChild("note")?.getChildText("text")).to.equal("met at the conference");

    // Unlink: the entry keeps its content and stops following.
    const un = (await ok(phone, "set", "entry", { id, version: "3", link: "" })) as Element;
    expect(un.attrs).to.include({ version: "4", changed: "true" });
    expect(un.attrs.linked).to.equal(undefined);
    await alice.setCard("Alice Z. Example");
    await phone.waitForUpdate(
      (x) => x.kind === "card" && x.content.attrs.owner === jid("alice") && x.content.attrs.version === "3",
      "alice's third card",
    );
    const after = (await ok(phone, "get", "entry", { id })) as Element;
    expect(after.attrs.version).to.equal("4");
    expect(fnOf(after)).to.equal("Alice Q. Example");
    await ok(phone, "set", "remove-entry", { id });
  });

  it("every error of §20.10, each with its condition and text, and none writes anything", async () => {
    const before = await state(phone);
    const id = importedIds[0] as string;
    const badReq = (
      name: string,
      type: "get" | "set",
      attrs: Record<string, string>,
      text: string | RegExp,
      ...children: Array<Element | string>
    ) => expectError(book(phone, type, name, attrs, ...children), "bad-request", "modify", text);
    await badReq("entry", "set", {}, "an entry needs a card or a 'link'");
    await badReq("entry", "set", { version: "1" }, "a new entry has no 'version'", vcard("X"));
    await badReq("entry", "set", { link: "" }, "a new entry cannot unlink: leave 'link' out", vcard("X"));
    await badReq("entry", "set", { id }, "'version' is required: the version you edited", vcard("X"));
    await badReq("entry", "set", { id, version: "1" }, "nothing to change: send a card, 'link' or both");
    await badReq("entry", "get", {}, "'id' is required");
    await badReq("entry", "get", { id: "ABC" }, "'id' must be an entry id (32 lowercase hex digits)");
    await badReq(
      "remove-entry",
      "set",
      { id: id.toUpperCase() },
      "'id' must be an entry id (32 lowercase hex digits)",
    );
    await badReq("vcf-export", "get", { after: "x" }, "'id' must be an entry id (32 lowercase hex digits)");
    await badReq(
      "book-sync",
      "get",
      { since: "yesterday" },
      "'since' must be a token from an earlier answer (a seq, or seq:id), not 'yesterday'",
    );
    await badReq("book-sync", "get", { max: "-1" }, "'max' must be a whole number from 0 to 10000");
    await badReq("entry", "get", { id, format: "jpeg" }, /^format must be/);
    await badReq(
      "entry",
      "set",
      { version: "1", id },
      /fn/i,
      xml("vcard", { xmlns: NS.VCARD4 }, tel("tel:+1")),
    );
    await badReq(
      "entry",
      "set",
      { version: "x", id },
      "'version' must be a whole number from 0 to 9007199254740991",
      vcard("X"),
    );
    await badReq("vcf-import", "set", {}, "<vcf-import/> carries .vcf text, not elements", vcard("X"));
    await badReq("vcf-import", "set", {}, "vcf: no BEGIN:VCARD found", "hello");
    await expectError(
      book(phone, "set", "entry", { link: "not a jid" }),
      "jid-malformed",
      "modify",
      "link 'not a jid' is not a bare user JID",
    );
    expect(await state(phone)).to.deep.equal(before);
  });

  it("book.maxEntries: an import over it is refused whole; a create at the cap is refused; nothing written", async () => {
    const { count, token } = await state(phone);
    const held = Number(count);
    const extra = MAX_ENTRIES - held + 1;
    const text = Array.from({ length: extra }, (_, i) => googleCard(1000 + i)).join("");
    await expectError(
      book(phone, "set", "vcf-import", {}, text),
      "resource-constraint",
      "cancel",
      `your address book holds ${held} entries; adding ${extra} would pass the limit of ${MAX_ENTRIES}`,
    );
    expect(await state(phone)).to.deep.equal({ count, token });
    const fill = Array.from({ length: extra - 1 }, (_, i) => googleCard(2000 + i)).join("");
    expect((await ok(phone, "set", "vcf-import", {}, fill))?.attrs.imported).to.equal(String(extra - 1));
    const full = await state(phone);
    expect(full.count).to.equal(String(MAX_ENTRIES));
    await expectError(
      book(phone, "set", "entry", {}, vcard("One too many")),
      "resource-constraint",
      "cancel",
      `your address book holds ${MAX_ENTRIES} entries; adding 1 would pass the limit of ${MAX_ENTRIES}`,
    );
    expect(await state(phone)).to.deep.equal(full);
  });

  it("book.maxBytes: the write that would pass it is refused and writes nothing", async () => {
    const frank = await connect("frank", "phone", false);
    // Twenty categories of a thousand characters: about 20 KB of stored JSON an entry.
    const big = (i: number) =>
      vcard(
        `Big ${i}`,
        xml(
          "categories",
          {},
          ...Array.from({ length: 20 }, (_, k) => xml("text", {}, `${k}${"x".repeat(1000)}`)),
        ),
      );
    let refused: Element | undefined;
    let stored = 0;
    for (let i = 0; i < 40 && !refused; i++) {
      const r = await book(frank, "set", "entry", {}, big(i));
      if (r.attrs.type === "result") stored++;
      else refused = r;
    }
    expect(stored).to.be.greaterThan(5);
    expect(refused, "a write over the byte cap").to.not.equal(undefined);
    const e = errorOf(refused as Element);
    expect(e).to.include({ condition: "resource-constraint", type: "cancel" });
    expect(e.text).to.match(
      new RegExp(`^your address book holds \\d+ bytes; this would pass the limit of ${MAX_BYTES}$`),
    );
    expect((await state(frank)).count).to.equal(String(stored));
  });

  it("a token behind pruned tombstones gets a full reload marked reset='true'", async () => {
    const erin = await connect("erin", "phone", false);
    const all = Array.from({ length: MAX_ENTRIES }, (_, i) => appleCard(i)).join("");
    const r = (await ok(erin, "set", "vcf-import", {}, all)) as Element;
    expect(r.attrs.imported).to.equal(String(MAX_ENTRIES));
    const first = await syncAll(erin, "0");
    const old = first.token;
    const ids = first.entries.map((e) => String(e.attrs.id));
    // MAX_ENTRIES removals keep MAX_ENTRIES tombstones; one more removal prunes the oldest.
    for (const id of ids) await ok(erin, "set", "remove-entry", { id });
    const mid = await syncAll(erin, old);
    expect(mid.reset).to.equal(false);
    expect(mid.removed).to.have.length(MAX_ENTRIES);
    const last = (await ok(erin, "set", "entry", {}, vcard("Last one"))) as Element;
    await ok(erin, "set", "remove-entry", { id: String(last.attrs.id) });
    const s = (await ok(erin, "get", "book-sync", { since: old })) as Element;
    expect(s.attrs.reset).to.equal("true");
    const reload = await syncAll(erin, old);
    expect(reload.reset).to.equal(true);
    expect(reload.entries).to.have.length(0);
    // A reload carries what is kept: the book is empty; the kept tombstones say what went.
    expect(reload.removed.length).to.equal(MAX_ENTRIES);
    // A current token is not reset.
    const now = await syncAll(erin, mid.token);
    expect(now.reset).to.equal(false);
  });
});
