/**
 * Update requests over a temp store (component/features/addressbook/request-*.ts; PROTOCOL §20.11–§20.17): the
 * real unit of work, accounts, stream and audience parts, a pinned clock. Making a request (target from `jid`, the
 * linked card, the entry's xmpp: address; placeholder targets), every abuse rule with its error and nothing written
 * (own entries only, one open per pair, both caps, the hourly limit, blocked → hidden), the three answers (form,
 * address card, pick) writing A's entry and a result to A only, decline, expiry through the sweep, forged answers
 * (wrong user, answered, expired, unknown field, wrong kind) refused with nothing written, a removed entry
 * withdrawing its request, the linked-entry rule, the notice's renderer, and erasure.
 */
import { expect } from "chai";
import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { BOOK_MIGRATIONS } from "../../component/features/addressbook/migrations.js";
import { bookRepo } from "../../component/features/addressbook/repo.js";
import { bookChangedKind, entryKind } from "../../component/features/addressbook/render.js";
import { requestKinds } from "../../component/features/addressbook/request-render.js";
import { requestRepo } from "../../component/features/addressbook/request-repo.js";
import {
  KIND_REQUEST,
  KIND_RESULT,
  RequestService,
  hideBlocked,
} from "../../component/features/addressbook/request-service.js";
import { BookService, KIND_ENTRY, eraseBook } from "../../component/features/addressbook/service.js";
import { cardKind } from "../../component/features/cards/render.js";
import { storeCard } from "../../component/features/cards/service.js";
import { accountsParts } from "../../component/runtime/accounts/tx.js";
import { audienceParts } from "../../component/runtime/audience/tx.js";
import { StanzaBudget } from "../../component/runtime/budget.js";
import { EventBus } from "../../component/runtime/events.js";
import type { StreamKind } from "../../component/runtime/queue/api.js";
import { streamTx } from "../../component/runtime/queue/stream-tx.js";
import { makeReader, makeUow } from "../../component/runtime/uow.js";
import { StanzaError } from "../../stanzas/errors.js";
import { DEFAULT_CARD_LIMITS, normalizeCard, type Card } from "../../stanzas/model/card.js";
import { NS } from "../../stanzas/ns.js";
import { PICK_FORM_TYPE, UPDATE_FORM_TYPE, pickItems } from "../../stanzas/update-request.js";
import { parseXml, type Element } from "../../stanzas/xml.js";
import { SCHEMA_2000 } from "../../storage/sqlite/schema-2000.js";
import { SqliteStore } from "../../storage/sqlite/store.js";
import type { AccountId } from "../../storage/store.js";
import { BINDING_PATH, bind } from "../harness/seed-cards.js";

const A = "alice@a.example";
const B = "bob@a.example";
const C = "carol@a.example";
const GHOST = "ghost@a.example";
const DOMAIN = "cards.a.example";
const T0 = 1_800_000_000_000;
const TTL = 3600;

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
const xmpp = (jid: string) => [{ key: "", types: [], uri: `xmpp:${jid}` }];

async function world(
  limits: Partial<{ perHour: number; sent: number; received: number; maxBytes: number }> = {},
) {
  const dir = mkdtempSync(path.join(os.tmpdir(), "cardlink-requests-"));
  const clock = { now: T0 };
  const store = new SqliteStore(path.join(dir, "store.sqlite"), { legacy: false, clock: () => clock.now });
  await store.migrate([SCHEMA_2000, ...BOOK_MIGRATIONS]);
  const events = new EventBus();
  const site = { domain: DOMAIN };
  const kinds = new Map<string, StreamKind>(
    [cardKind(), entryKind(site), bookChangedKind, ...requestKinds(site)].map((k) => [k.name, k]),
  );
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
  events.onTx("exchange.blocked", (u, e) => hideBlocked(u, e.owner, e.blocked));
  const bookLimits = {
    maxEntries: 100,
    maxBytes: limits.maxBytes ?? 1024 * 1024,
    requestTtlSeconds: TTL,
    requestsPerHour: limits.perHour ?? 20,
    maxOpenRequestsSent: limits.sent ?? 50,
    maxOpenRequestsReceived: limits.received ?? 50,
  };
  const book = new BookService({ uow, read, card: DEFAULT_CARD_LIMITS, book: bookLimits });
  const svc = new RequestService({
    uow,
    read,
    domain: DOMAIN,
    servedHosts: ["a.example"],
    card: DEFAULT_CARD_LIMITS,
    book: bookLimits,
  });
  const id = (jid: string) => read("t", async (r) => (await r.accounts.resolve(jid)) as AccountId);
  const lane = async (jid: string) =>
    read("t", async (r) =>
      r.read.all<{ kind: string; subject: string }>(
        "SELECT kind, subject FROM stream_entries WHERE account_id = :lane ORDER BY seq, id",
        { lane: (await r.accounts.resolve(jid)) as number },
      ),
    );
  /** Everything a refused call must leave as it was. */
  const snapshot = () =>
    read("t", async (r) => ({
      requests: await r.read.all("SELECT * FROM book_requests ORDER BY id"),
      entries: await r.read.all("SELECT * FROM book_entries ORDER BY id"),
      stream: await r.read.all("SELECT account_id, kind, subject FROM stream_entries ORDER BY id"),
    }));
  const render = async (kind: string, jid: string, subject: string, payload?: unknown) => {
    const laneId = await id(jid);
    return read("t", async (r) =>
      (kinds.get(kind) as StreamKind).render(
        { ...r, budget: new StanzaBudget(512 * 1024), cache: undefined as never },
        {
          lane: laneId,
          seq: 0,
          ord: 0,
          kind,
          subject,
          ...(payload === undefined ? {} : { payload: payload as never }),
        },
      ),
    );
  };
  const payloadOf = (lanejid: string, kind: string) =>
    read("t", async (r) => {
      const row = await r.read.get<{ body: string }>(
        `SELECT p.body FROM stream_entries e JOIN payloads p ON p.id = e.payload_id
          WHERE e.account_id = :lane AND e.kind = :kind ORDER BY e.seq DESC LIMIT 1`,
        { lane: (await r.accounts.resolve(lanejid)) as number, kind },
      );
      return row ? (JSON.parse(row.body) as Record<string, unknown>) : undefined;
    });
  return {
    store,
    clock,
    uow,
    read,
    book,
    svc,
    events,
    id,
    lane,
    snapshot,
    render,
    payloadOf,
    close: async () => {
      await store.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
type World = Awaited<ReturnType<typeof world>>;

async function refused(p: Promise<unknown>, condition: string, text?: string | RegExp): Promise<void> {
  try {
    await p;
  } catch (e) {
    expect(e).to.be.instanceOf(StanzaError);
    expect((e as StanzaError).condition, (e as Error).message).to.equal(condition);
    if (typeof text === "string") expect((e as StanzaError).message).to.equal(text);
    else if (text) expect((e as StanzaError).message).to.match(text);
    return;
  }
  throw new Error(`expected ${condition}`);
}
/** Refused, and nothing in the store changed. */
async function refusedClean(x: World, p: () => Promise<unknown>, condition: string, text?: string | RegExp) {
  const before = await x.snapshot();
  await refused(p(), condition, text);
  expect(await x.snapshot()).to.deep.equal(before);
}

const submit = (formType: string, fields: Array<[string, string[]]>): Element =>
  parseXml(
    `<x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE'><value>${formType}</value></field>` +
      fields
        .map(([v, vals]) => `<field var='${v}'>${vals.map((s) => `<value>${s}</value>`).join("")}</field>`)
        .join("") +
      "</x>",
  );

describe("update requests (features/addressbook request-*)", () => {
  it("a request reaches B as one notice carrying the pre-filled form; B's answer writes A's entry and tells A only", async () => {
    const x = await world();
    try {
      const e = await x.book.create(A, { card: card("Bob", { impp: xmpp(B), note: "old" }) });
      const made = await x.svc.create(A, e.row.id, undefined, "form");
      expect(made.to).to.equal(B);
      expect(made.expiresAt).to.equal(T0 + TTL * 1000);
      expect(await x.lane(B)).to.deep.equal([{ kind: KIND_REQUEST, subject: made.id }]);
      const notice = (await x.render(KIND_REQUEST, B, made.id)) as Element;
      expect(notice.attrs).to.include({ xmlns: NS.BOOK_REQUEST, id: made.id, from: A, form: "form" });
      expect(notice.attrs.name).to.equal(undefined); // B holds no card of A
      const form = notice.getChild("x", NS.DATA) as Element;
      const fn = form.getChildren("field").find((f) => f.attrs.var === "fn");
      expect(fn?.getChildText("value")).to.equal("Bob");
      // Another lane renders nothing (moot).
      expect(await x.render(KIND_REQUEST, C, made.id)).to.equal(null);

      const r = await x.svc.answer(B, made.id, {
        form: submit(UPDATE_FORM_TYPE, [
          ["fn", ["Robert Example"]],
          ["tel", ["tel:+1-555-0100"]],
        ]),
      });
      expect(r).to.deep.equal({ changed: true, version: 2 });
      const row = await x.read("t", (q) => bookRepo(q.read).get(e.row.id));
      expect(row?.card?.fn).to.equal("Robert Example");
      expect(row?.card?.tel.map((t) => t.uri)).to.deep.equal(["tel:+1-555-0100"]);
      expect(row?.card?.note).to.equal("old"); // not in the submission: unchanged
      // A: the updated entry and the result; B: nothing more (the answer is visible only to A).
      expect(await x.lane(A)).to.deep.equal([
        { kind: KIND_ENTRY, subject: e.row.id },
        { kind: KIND_RESULT, subject: made.id },
      ]);
      const result = (await x.render(KIND_RESULT, A, made.id, await x.payloadOf(A, KIND_RESULT))) as Element;
      expect(result.toString()).to.equal(
        `<update-result xmlns="${NS.BOOK_REQUEST}" id="${made.id}" entry="${e.row.id}" to="${B}" status="answered"/>`,
      );
      expect(await x.lane(B)).to.deep.equal([{ kind: KIND_REQUEST, subject: made.id }]);
      expect(await x.render(KIND_REQUEST, B, made.id)).to.equal(null); // answered: moot
      // A forged second answer: refused, nothing written.
      await refusedClean(
        x,
        () => x.svc.answer(B, made.id, { form: submit(UPDATE_FORM_TYPE, [["fn", ["again"]]]) }),
        "conflict",
        `update request ${made.id} was already answered`,
      );
    } finally {
      await x.close();
    }
  });

  it("the target: explicit jid, else the linked card's owner, else the entry's xmpp: address, else refused", async () => {
    const x = await world();
    try {
      await storeCard(x, B, card("Bob B."));
      await bind(
        {
          ...x,
          kind: undefined as never,
          cache: undefined as never,
          close: x.close,
          events: x.events,
        } as never,
        A,
        B,
      );
      const linked = await x.book.create(A, { link: B });
      expect((await x.svc.create(A, linked.row.id, undefined, "form")).to).to.equal(B);
      const plain = await x.book.create(A, { card: card("Carol") });
      await refusedClean(
        x,
        () => x.svc.create(A, plain.row.id, undefined, "form"),
        "bad-request",
        `entry ${plain.row.id} names no XMPP address: give the 'jid' to ask`,
      );
      expect((await x.svc.create(A, plain.row.id, C, "pick")).to).to.equal(C);
      await refusedClean(
        x,
        () => x.svc.create(A, plain.row.id, A, "form"),
        "bad-request",
        "you cannot ask yourself to update an entry",
      );
      await refusedClean(
        x,
        () => x.svc.create(A, plain.row.id, "dave@elsewhere.example", "form"),
        "not-acceptable",
        "cardlink sends update requests to users of a.example only",
      );
      await refusedClean(x, () => x.svc.create(A, plain.row.id, "not a jid", "form"), "jid-malformed");
      // Someone else's entry is not found, as a missing one.
      await refusedClean(
        x,
        () => x.svc.create(C, plain.row.id, B, "form"),
        "item-not-found",
        `your address book has no entry ${plain.row.id}`,
      );
      // B holds A's card now (bound): the notice names A by A's card.
      await storeCard(x, A, card("Alice Example"));
      const out = await x.svc.outgoing(A);
      const toB = out.find((q) => q.to === B) as { id: string };
      expect(((await x.render(KIND_REQUEST, B, toB.id)) as Element).attrs.name).to.equal("Alice Example");
      // One open request per (A, B): a second, even for another entry, is a conflict naming the first.
      const other = await x.book.create(A, { card: card("Bob again", { impp: xmpp(B) }) });
      await refusedClean(
        x,
        () => x.svc.create(A, other.row.id, undefined, "address"),
        "conflict",
        `you already asked ${B} (update request ${toB.id}); wait for its answer or expiry`,
      );
    } finally {
      await x.close();
    }
  });

  it("caps: open requests sent, open requests received, the hourly limit — each refused with nothing written", async () => {
    const x = await world({ sent: 2, received: 1, perHour: 3 });
    try {
      const mk = async (user: string, fn: string) => (await x.book.create(user, { card: card(fn) })).row.id;
      const e1 = await mk(A, "one");
      const e2 = await mk(A, "two");
      const e3 = await mk(A, "three");
      await x.svc.create(A, e1, "u1@a.example", "form");
      await x.svc.create(A, e2, "u2@a.example", "form");
      await refusedClean(
        x,
        () => x.svc.create(A, e3, "u3@a.example", "form"),
        "resource-constraint",
        "you have 2 open update requests; wait for answers",
      );
      const c1 = await mk(C, "c1");
      await refusedClean(
        x,
        () => x.svc.create(C, c1, "u1@a.example", "form"),
        "resource-constraint",
        "u1@a.example cannot take more update requests now; try later",
      );
      // The hourly limit counts what was sent, answered or not: decline both, then a third goes, a fourth not.
      for (const q of await x.svc.outgoing(A)) {
        const target = q.to;
        await x.svc.decline(target, q.id).catch(async () => {
          // placeholders resolve too: they were ensured by the request
          throw new Error(`decline as ${target} failed`);
        });
      }
      await x.svc.create(A, e3, "u3@a.example", "form");
      const e4 = await mk(A, "four");
      await refusedClean(
        x,
        () => x.svc.create(A, e4, "u4@a.example", "form"),
        "policy-violation",
        "at most 3 update requests per hour; try again in 60 min",
      );
      x.clock.now += 3_600_001;
      await x.svc.create(A, e4, "u4@a.example", "form");
    } finally {
      await x.close();
    }
  });

  it("a JID that never used cardlink: a placeholder holds the request and its notice, same answer as for a user", async () => {
    const x = await world();
    try {
      const e = await x.book.create(A, { card: card("Ghost", { impp: xmpp(GHOST) }) });
      const made = await x.svc.create(A, e.row.id, undefined, "address");
      const state = await x.read("t", async (r) =>
        r.read.get<{ state: string }>("SELECT state FROM accounts WHERE id = :id", {
          id: (await r.accounts.resolve(GHOST)) as number,
        }),
      );
      expect(state?.state).to.equal("placeholder");
      expect(await x.lane(GHOST)).to.deep.equal([{ kind: KIND_REQUEST, subject: made.id }]);
      // The account appears and reads the entry at its address, then answers with a card.
      const entry = await x.svc.requestedEntry(GHOST, e.row.id);
      expect(entry.row.card.fn).to.equal("Ghost");
      const notice = (await x.render(KIND_REQUEST, GHOST, made.id)) as Element;
      expect(notice.attrs.uri).to.equal(`xmpp:${DOMAIN}?cardlink;entry=${e.row.id}`);
      await refusedClean(
        x,
        () => x.svc.answer(GHOST, made.id, { card: card("G. Host"), version: 7 }),
        "conflict",
        "the entry is at version 1, not 7; read it again and redo the change",
      );
      await refusedClean(
        x,
        () =>
          x.svc.answer(GHOST, made.id, {
            form: submit(UPDATE_FORM_TYPE, [
              ["fn", ["x"]],
              ["salary", ["1"]],
            ]),
          }),
        "bad-request",
        "field 'salary' is not part of this form",
      );
      const r = await x.svc.answer(GHOST, made.id, {
        card: card("G. Host", { impp: xmpp(GHOST) }),
        version: 1,
      });
      expect(r.changed).to.equal(true);
      // After the answer, the address reads nothing more.
      await refused(x.svc.requestedEntry(GHOST, e.row.id), "item-not-found");
    } finally {
      await x.close();
    }
  });

  it("forged answers are refused with nothing written: another user, an expired request, the wrong kind of answer", async () => {
    const x = await world();
    try {
      const e = await x.book.create(A, { card: card("Bob", { impp: xmpp(B) }) });
      const made = await x.svc.create(A, e.row.id, undefined, "form");
      const form = submit(UPDATE_FORM_TYPE, [["fn", ["forged"]]]);
      await refusedClean(
        x,
        () => x.svc.answer(C, made.id, { form }),
        "item-not-found",
        `no update request '${made.id}' for you`,
      );
      await refusedClean(x, () => x.svc.answer(A, made.id, { form }), "item-not-found");
      await refusedClean(x, () => x.svc.answer(B, "nope", { form }), "item-not-found");
      await refusedClean(x, () => x.svc.decline(C, made.id), "item-not-found");
      await refusedClean(
        x,
        () => x.svc.answer(B, made.id, { card: card("as a card") }),
        "bad-request",
        `update request ${made.id} asks for a submitted form, not a card`,
      );
      await refusedClean(
        x,
        () => x.svc.answer(B, made.id, { form: submit(PICK_FORM_TYPE, [["items", ["fn"]]]) }),
        "bad-request",
        `FORM_TYPE must be '${UPDATE_FORM_TYPE}', not '${PICK_FORM_TYPE}'`,
      );
      x.clock.now = T0 + TTL * 1000;
      await refusedClean(
        x,
        () => x.svc.answer(B, made.id, { form }),
        "gone",
        `update request ${made.id} expired`,
      );
      expect(await x.render(KIND_REQUEST, B, made.id)).to.equal(null);
      // The sweep closes it and tells A.
      expect(await x.svc.expire()).to.equal(1);
      expect(await x.payloadOf(A, KIND_RESULT)).to.deep.include({ id: made.id, status: "expired" });
      await refusedClean(x, () => x.svc.answer(B, made.id, { form }), "gone");
      expect(await x.svc.expire()).to.equal(0);
      // An hour after closing, the sweep prunes the row.
      x.clock.now += 3_600_000;
      await x.svc.expire();
      expect(await x.read("t", (r) => requestRepo(r.read).get(made.id))).to.equal(undefined);
    } finally {
      await x.close();
    }
  });

  it("decline tells A only; a pick answer takes the picked details of B's own card", async () => {
    const x = await world();
    try {
      const e = await x.book.create(A, { card: card("Bob", { impp: xmpp(B) }) });
      const first = await x.svc.create(A, e.row.id, undefined, "pick");
      await refused(
        x.svc.pickForm(B, first.id),
        "item-not-found",
        "you have no card to pick from: set your card first",
      );
      await x.svc.decline(B, first.id);
      expect(await x.payloadOf(A, KIND_RESULT)).to.deep.include({ id: first.id, status: "declined" });
      expect((await x.lane(B)).map((l) => l.kind)).to.deep.equal([KIND_REQUEST]);
      await storeCard(
        x,
        B,
        card("Robert", { title: "CTO", tel: [{ key: "", types: ["cell"], uri: "tel:+1-555-0123" }] }),
      );
      const second = await x.svc.create(A, e.row.id, undefined, "pick");
      const form = await x.svc.pickForm(B, second.id);
      const values = form
        .getChildren("field")
        .flatMap((f) => f.getChildren("option").map((o) => o.getChildText("value")));
      const tel = pickItems(card("Robert", { tel: [{ key: "", types: [], uri: "tel:+1-555-0123" }] }))[1]
        ?.value as string;
      expect(values).to.deep.equal(["fn", "title", tel]);
      await refusedClean(
        x,
        () => x.svc.answer(B, second.id, { form: submit(PICK_FORM_TYPE, [["items", ["note"]]]) }),
        "bad-request",
        "field 'items' (Details to send): 'note' is not one of its options",
      );
      await x.svc.answer(B, second.id, { form: submit(PICK_FORM_TYPE, [["items", [tel]]]) });
      const row = await x.read("t", (r) => bookRepo(r.read).get(e.row.id));
      expect(row?.card?.fn).to.equal("Bob"); // not picked
      expect(row?.card?.tel.map((t) => [t.uri, t.types])).to.deep.equal([["tel:+1-555-0123", ["cell"]]]);
      expect(row?.card?.title).to.equal(undefined);
    } finally {
      await x.close();
    }
  });

  it("B blocks A: a new request is stored hidden (A cannot tell), an open one is hidden and its notice retracted", async () => {
    const x = await world();
    try {
      const e = await x.book.create(A, { card: card("Bob", { impp: xmpp(B) }) });
      const open = await x.svc.create(A, e.row.id, undefined, "form");
      await x.uow("block", async (u) => {
        const [b, a] = [await u.accounts.ensure(B), await u.accounts.ensure(A)];
        await u.tx.run("INSERT INTO blocks (owner, blocked, created_at) VALUES (:b, :a, :now)", {
          b,
          a,
          now: u.now,
        });
        await u.emit("exchange.blocked", { owner: b, blocked: a });
      });
      expect(await x.lane(B)).to.deep.equal([]);
      expect(await x.svc.incoming(B)).to.deep.equal([]);
      await refused(
        x.svc.answer(B, open.id, { form: submit(UPDATE_FORM_TYPE, [["fn", ["x"]]]) }),
        "item-not-found",
      );
      x.clock.now = T0 + TTL * 1000 + 1;
      await x.svc.expire();
      const again = await x.svc.create(A, e.row.id, undefined, "form");
      expect(again.to).to.equal(B); // the same answer as for anyone
      expect(await x.lane(B)).to.deep.equal([]);
      expect((await x.svc.outgoing(A)).map((q) => q.id)).to.deep.equal([again.id]);
    } finally {
      await x.close();
    }
  });

  it("an answer on a linked entry: fields equal to the card keep following, differing ones become the owner's", async () => {
    const x = await world();
    try {
      await storeCard(x, B, card("Bob Card", { title: "CTO" }));
      await bind({ ...x, kind: undefined as never, cache: undefined as never } as never, A, B);
      const e = await x.book.create(A, { link: B });
      const made = await x.svc.create(A, e.row.id, undefined, "form");
      await x.svc.answer(B, made.id, {
        form: submit(UPDATE_FORM_TYPE, [
          ["fn", ["Bob Card"]],
          ["tel", ["tel:+1-555-0142"]],
        ]),
      });
      const row = await x.read("t", (r) => bookRepo(r.read).get(e.row.id));
      expect(row?.linkedOwner).to.equal(await x.id(B));
      expect(row?.edited).to.deep.equal(["tel"]);
      expect(row?.card?.title).to.equal("CTO");
    } finally {
      await x.close();
    }
  });

  it("an answer that would pass A's byte cap is refused without telling B A's usage; nothing written", async () => {
    const x = await world({ maxBytes: 400 });
    try {
      const e = await x.book.create(A, { card: card("Bob", { impp: xmpp(B) }) });
      const made = await x.svc.create(A, e.row.id, undefined, "form");
      await refusedClean(
        x,
        () =>
          x.svc.answer(B, made.id, {
            form: submit(UPDATE_FORM_TYPE, [
              ["fn", ["Bob"]],
              ["note", ["n".repeat(600)]],
            ]),
          }),
        "resource-constraint",
        `${A}'s address book has no room for this answer`,
      );
    } finally {
      await x.close();
    }
  });

  it("removing the entry withdraws its request (no result); erasing either account takes the rows", async () => {
    const x = await world();
    try {
      const e = await x.book.create(A, { card: card("Bob", { impp: xmpp(B) }) });
      const made = await x.svc.create(A, e.row.id, undefined, "form");
      await x.book.remove(A, e.row.id);
      expect((await x.read("t", (r) => requestRepo(r.read).get(made.id)))?.state).to.equal("withdrawn");
      expect((await x.lane(A)).map((l) => l.kind)).to.not.include(KIND_RESULT);
      expect(await x.render(KIND_REQUEST, B, made.id)).to.equal(null);
      const e2 = await x.book.create(A, { card: card("Bob", { impp: xmpp(B) }) });
      await x.svc.create(A, e2.row.id, undefined, "form");
      const b = await x.id(B);
      await x.uow("erase", async (u) => {
        await requestRepo(u.tx).erase(b);
        await eraseBook(u, b);
      });
      expect(await x.read("t", (r) => r.read.all("SELECT * FROM book_requests"))).to.deep.equal([]);
    } finally {
      await x.close();
    }
  });
});
