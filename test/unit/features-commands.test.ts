/**
 * The ad-hoc commands of component/features/cards/commands.ts and features/exchange/commands.ts (issue 8) over a
 * temp SqliteStore with schema 2000 and the real runtime parts (accounts, stream queue with the card and exchange
 * kinds, audiences with the binding path): each command's form, a successful submit and a refused one. The forms
 * and notes are compared with today's component/card-commands.ts run over the legacy store with the same facts:
 * golden files (test/golden/legacy-core/commands/, README.md there), captured before issue 8 S11 deleted it.
 */
import { expect } from "chai";
import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { cardCommands } from "../../component/features/cards/commands.js";
import { cardKind, CardRenderCache } from "../../component/features/cards/render.js";
import { storeCard } from "../../component/features/cards/service.js";
import { exchangeCommands } from "../../component/features/exchange/commands.js";
import { EXCHANGE_KINDS } from "../../component/features/exchange/render.js";
import { BINDING_PATH } from "../../component/features/exchange/repo.js";
import { ExchangeService } from "../../component/features/exchange/service.js";
import { accountsParts } from "../../component/runtime/accounts/tx.js";
import type { Command, CommandStep } from "../../component/runtime/adhoc.js";
import { audienceParts } from "../../component/runtime/audience/tx.js";
import { StanzaBudget } from "../../component/runtime/budget.js";
import { defaultConfig } from "../../component/runtime/config.js";
import { EventBus } from "../../component/runtime/events.js";
import { parseJid } from "../../component/runtime/jid.js";
import { streamTx } from "../../component/runtime/queue/stream-tx.js";
import type { IqContext } from "../../component/runtime/router.js";
import { makeReader, makeUow, type Reader, type Uow } from "../../component/runtime/uow.js";
import { formElement } from "../../stanzas/dataforms.js";
import { StanzaError } from "../../stanzas/errors.js";
import { normalizeCard, type Card } from "../../stanzas/model/card.js";
import { xml } from "../../stanzas/xml.js";
import { SCHEMA_2000 } from "../../storage/sqlite/schema-2000.js";
import { SqliteStore } from "../../storage/sqlite/store.js";
import type { Store } from "../../storage/store.js";
import { legacyJson, legacyOutput } from "../harness/legacy-golden.js";

const A = "alice@a.example";
const B = "bob@a.example";
const C = "carol@a.example";
const limits = defaultConfig().card;
const budget = new StanzaBudget(256 * 1024);
const CODE_TTL_SECONDS = 300;

const card = (fn: string): Card =>
  normalizeCard({
    fn,
    nickname: [],
    org: { name: "Engines", units: [] },
    title: "Countess",
    tel: [{ key: "", types: ["work", "voice"], uri: "tel:+44-1" }],
    email: [{ key: "", types: [], value: `${fn.toLowerCase()}@mail.example` }],
    adr: [],
    url: [],
    impp: [],
    note: "line one\nline two",
    categories: [],
  });

const ctx = (user: string): IqContext => {
  const from = parseJid(`${user}/res`);
  if (!from) throw new Error(user);
  return { stanza: xml("iq"), payload: xml("command"), from, user };
};
const submit = (fields: Record<string, string | string[]>) => ({
  node: "n",
  action: "complete" as const,
  form: formElement({
    type: "submit",
    fields: Object.entries(fields).map(([k, v]) => ({ var: k, values: Array.isArray(v) ? v : [v] })),
  }),
});
const exec = { node: "n", action: "execute" as const };
/** A step as text: the form rendered and the notes, which is what the client receives. */
const shown = (s: CommandStep): string =>
  JSON.stringify({ status: s.status, form: s.form?.toString(), notes: s.notes, state: s.state });
const byNode = (cmds: Command[], n: string): Command => {
  const c = cmds.find((x) => x.node === `urn:cardlink:cmd:${n}`);
  if (!c) throw new Error(n);
  return c;
};
const failure = async (p: Promise<unknown> | unknown): Promise<StanzaError> => {
  const err = await Promise.resolve(p).then(
    () => undefined,
    (x: unknown) => x,
  );
  expect(err, "expected a refusal").to.be.instanceOf(StanzaError);
  return err as StanzaError;
};

interface Env {
  store: Store;
  uow: Uow;
  read: Reader;
  svc: ExchangeService;
  cmds: Command[];
  dir: string;
}

async function env(): Promise<Env> {
  const dir = mkdtempSync(path.join(os.tmpdir(), "cardlink-commands-"));
  const store = new SqliteStore(path.join(dir, "store.sqlite"), { legacy: false });
  await store.migrate([SCHEMA_2000]);
  const events = new EventBus();
  const accounts = accountsParts({ cacheSize: 1000, cacheTtlMs: 60_000, events });
  const paths = [BINDING_PATH];
  const audience = audienceParts({ paths });
  const kinds = new Map([...EXCHANGE_KINDS, cardKind(new CardRenderCache())].map((k) => [k.name, k]));
  const unused = (): never => {
    throw new Error("the jobs half is not used by the commands");
  };
  const uow = makeUow(
    store,
    {
      accounts: accounts.tx,
      audience: audience.tx,
      stream: streamTx({ kind: (n) => kinds.get(n), paths }),
      jobs: unused,
    },
    events,
  );
  const read = makeReader(store, { accounts: accounts.read, audience: audience.read });
  const svc = new ExchangeService({
    uow,
    read,
    servedHosts: ["a.example"],
    requestTtlMs: 7 * 86_400_000,
    codeTtlMs: CODE_TTL_SECONDS * 1000,
    maxPendingPerUser: 50,
    codesPerUser: 10,
    blocksPerUser: 1000,
    redeem: { failuresPerUser: 10, failuresPerHost: 200, windowMs: 600_000, maxKeys: 1000 },
  });
  const cmds = [
    ...cardCommands({ uow, read, limits }),
    ...exchangeCommands({ svc, read, budget, codeTtlSeconds: CODE_TTL_SECONDS }),
  ];
  return { store, uow, read, svc, cmds, dir };
}

/**
 * What today's commands answered over a real legacy store holding `facts` (only their form stages and reads were
 * run): the captured `shown()` of the step. A `{{request}}` in the facts is the live request's id (`vars`).
 */
interface Facts {
  cards?: Record<string, Card>;
  requests?: Array<{ id: string; from: string; to: string }>;
  bindings?: Array<{ id: string; a: string; b: string }>;
}
const oldStep = (name: string, node: string, user: string, facts: Facts, vars: Record<string, string> = {}) =>
  JSON.stringify(JSON.parse(legacyOutput("commands", name, "json", { node, user, facts }, vars)));

describe("features cards/exchange ad-hoc commands (issue 8) on schema 2000", function () {
  this.timeout(30_000);
  let e: Env;
  beforeEach(async () => {
    e = await env();
  });
  afterEach(async () => {
    await e.store.close();
    rmSync(e.dir, { recursive: true, force: true });
  });
  /** The new command's first step, and today's (golden `name`) over the legacy store holding `facts`. */
  const both = async (name: string, n: string, user: string, facts: Facts = {}, vars = {}) => {
    const mine = await byNode(e.cmds, n).run(ctx(user), exec, undefined);
    const theirs = oldStep(name, n, user, facts, vars);
    return { mine, theirs };
  };

  it("registers the same nodes and names as today, in the same order", () => {
    expect(e.cmds.map((c) => `${c.node} ${c.name}`)).to.deep.equal(
      legacyJson<string[]>("commands", "nodes", undefined),
    );
  });

  describe("show-card and edit-card", () => {
    it("without a card: the same note and the same empty edit form as today", async () => {
      const s = await both("show-card-none", "show-card", A);
      expect(shown(s.mine)).to.equal(s.theirs);
      expect(s.mine.notes?.[0]?.text).to.match(/^You have no card yet/);
      const f = await both("edit-card-none", "edit-card", A);
      expect(shown(f.mine)).to.equal(f.theirs);
      expect(f.mine.status).to.equal("executing");
    });

    it("with a card: the same result form and prefilled edit form as today", async () => {
      await storeCard(e, A, card("Ada"));
      const facts: Facts = { cards: { [A]: card("Ada") } };
      const s = await both("show-card-ada", "show-card", A, facts);
      expect(s.mine.form?.toString()).to.contain("Your card (version 1)").and.contain("line two");
      expect(shown(s.mine)).to.equal(s.theirs);
      const f = await both("edit-card-ada", "edit-card", A, facts);
      expect(shown(f.mine)).to.equal(f.theirs);
    });

    it("a submit stores the card (version, then nothing changed); a form without a name is refused", async () => {
      const edit = byNode(e.cmds, "edit-card");
      const fields = { fn: "Ada Lovelace", "tel-cell": "+44-2", note: ["a", "b"] };
      const r1 = await edit.run(ctx(A), submit(fields), { stage: 1 });
      expect(r1.notes?.[0]?.text).to.equal("Saved as version 1; your contacts will be updated.");
      const s = await byNode(e.cmds, "show-card").run(ctx(A), exec, undefined);
      expect(s.form?.toString()).to.contain("Ada Lovelace").and.contain("+44-2");
      const r2 = await edit.run(ctx(A), submit(fields), { stage: 1 });
      expect(r2.notes?.[0]?.text).to.equal("Nothing changed.");
      const err = await failure(edit.run(ctx(A), submit({ fn: "", title: "x" }), { stage: 1 }));
      expect(err.condition).to.equal("bad-request");
      expect(err.message).to.equal("the full name is required");
      const after = await byNode(e.cmds, "show-card").run(ctx(A), exec, undefined);
      expect(after.form?.toString(), "nothing written").to.equal(s.form?.toString());
    });
  });

  describe("request-exchange and answer-requests", () => {
    it("the same forms and empty note as today", async () => {
      const f = await both("request-exchange", "request-exchange", A);
      expect(shown(f.mine)).to.equal(f.theirs);
      const none = await both("answer-requests-none", "answer-requests", A);
      expect(shown(none.mine)).to.equal(none.theirs);
      expect(none.mine.notes?.[0]?.text).to.equal("No pending exchange requests.");
    });

    it("a request shows in the answer form as today; accept binds, a bad answer is refused", async () => {
      const ask = byNode(e.cmds, "request-exchange");
      const r = await ask.run(ctx(B), submit({ jid: "Alice@A.example" }), { stage: 1 });
      expect(r.notes?.[0]?.text).to.equal(
        `Asked ${A}. You will both get each other's card once ${A} accepts.`,
      );
      const err = await failure(ask.run(ctx(B), submit({ jid: A }), { stage: 1 }));
      expect(err.condition).to.equal("conflict");

      const [q] = await e.svc.listRequests(A, "incoming");
      if (!q) throw new Error("no request");
      const f = await both(
        "answer-requests-one",
        "answer-requests",
        A,
        { requests: [{ id: "{{request}}", from: B, to: A }] },
        { request: q.id },
      );
      expect(f.mine.form?.toString()).to.contain(q.id).and.contain(B);
      expect(shown(f.mine)).to.equal(f.theirs);

      const answer = byNode(e.cmds, "answer-requests");
      const bad = await failure(answer.run(ctx(A), submit({ request: q.id, answer: "maybe" }), { stage: 1 }));
      expect(bad.condition).to.equal("bad-request");
      expect(bad.message).to.equal("choose a request and accept or decline");
      const ok = await answer.run(ctx(A), submit({ request: q.id, answer: "accept" }), { stage: 1 });
      expect(ok.notes?.[0]?.text).to.equal(`Cards exchanged with ${B}.`);
      const gone = await failure(
        answer.run(ctx(A), submit({ request: q.id, answer: "accept" }), { stage: 1 }),
      );
      expect(gone.condition).to.equal("item-not-found");
    });

    it("decline answers Declined.", async () => {
      await e.svc.requestExchange(C, A);
      const [q] = await e.svc.listRequests(A, "incoming");
      const r = await byNode(e.cmds, "answer-requests").run(
        ctx(A),
        submit({ request: q?.id ?? "", answer: "decline" }),
        { stage: 1 },
      );
      expect(r.notes?.[0]?.text).to.equal("Declined.");
      expect(await e.svc.listRequests(A, "incoming")).to.deep.equal([]);
    });
  });

  describe("exchange-code, redeem-code, contacts", () => {
    it("a code is made and redeemed; the contacts list matches today's; a used code is refused", async () => {
      const f = await both("redeem-code", "redeem-code", B);
      expect(shown(f.mine)).to.equal(f.theirs);
      const empty = await both("contacts-none", "contacts", A);
      expect(shown(empty.mine)).to.equal(empty.theirs);
      expect(empty.mine.notes?.[0]?.text).to.equal("You have not exchanged cards with anyone yet.");

      const made = await byNode(e.cmds, "exchange-code").run(ctx(A), exec, undefined);
      const m = /^Your code: (\S+) \(valid 5 min, once\)\. Give it to the person you meet\.$/.exec(
        made.notes?.[0]?.text ?? "",
      );
      expect(m, made.notes?.[0]?.text).to.not.equal(null);
      const code = m?.[1] ?? "";
      const redeem = byNode(e.cmds, "redeem-code");
      const own = await failure(redeem.run(ctx(A), submit({ code }), { stage: 1 }));
      expect(own.message).to.equal("you cannot redeem your own code");
      const ok = await redeem.run(ctx(B), submit({ code: code.toLowerCase() }), { stage: 1 });
      expect(ok.notes?.[0]?.text).to.equal(`Cards exchanged with ${A}.`);
      const again = await failure(redeem.run(ctx(C), submit({ code }), { stage: 1 }));
      expect(again.condition).to.equal("item-not-found");
      const missing = await failure(redeem.run(ctx(C), submit({}), { stage: 1 }));
      expect(missing.message).to.equal("Code is required");

      // A and B bound, B has a card; A also bound to C (no card): the same list as today over the same facts.
      await storeCard(e, B, card("Bob"));
      const c2 = await e.svc.createCode(A);
      await e.svc.redeemCode(C, c2.code);
      const list = await both("contacts-two", "contacts", A, {
        cards: { [B]: card("Bob") },
        bindings: [
          { id: "b1", a: A, b: B },
          { id: "b2", a: A, b: C },
        ],
      });
      expect(list.mine.form?.toString())
        .to.contain(`Bob &lt;${B}&gt; (v1)`)
        .and.contain(`&lt;${C}&gt; (no card yet)`)
        .and.contain("2 contact(s)");
      expect(shown(list.mine)).to.equal(list.theirs);
    });
  });
});
