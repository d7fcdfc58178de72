/**
 * Update requests over the wire (issue 9, second part; PROTOCOL §20.11–§20.17): a real Prosody, real @xmpp/client
 * sessions, cardlink in process. The three notice forms end to end — the pre-filled form answered by IQ, the
 * entry's address read and edited by a user who was offline (a JID that had never used cardlink) and gets the
 * notice on login, the pick form over the answerer's own card — with the owner's other resource receiving the
 * updated entry (`book-entry`) and the owner the result (`update-result`); decline; every abuse case with its
 * error (someone else's entry, a second open request, both caps, the hourly limit, a blocked requester dropped
 * silently); forged answers (another user, an answered request, an unknown field, a card for a form request)
 * refused with nothing written; the whole flow through ad-hoc commands; and, against a second Prosody with a
 * 3-second lifetime, expiry (the requester told, a late answer `gone`).
 *
 * With CARDLINK_TEST_RAW=1 every stanza on cardlink's link is printed after the suite (PROTOCOL §20's examples).
 */
import { expect } from "chai";
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { pino } from "pino";
import { coreModules, moduleMigrations } from "../../component/features.js";
import { createCardlink, type Cardlink } from "../../component/runtime/app.js";
import { NS } from "../../stanzas/ns.js";
import { PICK_FORM_TYPE, UPDATE_FORM_TYPE } from "../../stanzas/update-request.js";
import { cardClient, tel, vcard, type CardClient } from "../harness/cardclient.js";
import { testConfig } from "../harness/cardlink.js";
import { errorOf, xml, type Element } from "../harness/clients.js";
import { sleep, waitFor } from "../harness/ports.js";
import { ProsodyServer } from "../harness/prosody.js";

const RQ = NS.BOOK_REQUEST;
const run = promisify(execFile);
// Debian's python3-slixmpp installs for the system interpreter (test/integration/slixmpp.test.ts).
const PYTHON = "/usr/bin/python3";

/** A submitted form: FORM_TYPE then each field's values. */
const submit = (formType: string, fields: Record<string, string[]>): Element =>
  xml(
    "x",
    { xmlns: NS.DATA, type: "submit" },
    xml("field", { var: "FORM_TYPE" }, xml("value", {}, formType)),
    ...Object.entries(fields).map(([v, vals]) =>
      xml("field", { var: v }, ...vals.map((s) => xml("value", {}, s))),
    ),
  );
const fieldValues = (form: Element | undefined, v: string): string[] =>
  (
    form
      ?.getChildren("field")
      .find((f) => f.attrs.var === v)
      ?.getChildren("value") ?? []
  ).map((x) => x.getText());
const impp = (jid: string): Element => xml("impp", {}, xml("uri", {}, `xmpp:${jid}`));
const fnOf = (el: Element | undefined): string =>
  el?.getChild("vcard", NS.VCARD4)?.getChild("fn")?.getChildText("text") ?? "";

interface Env {
  prosody: ProsodyServer;
  app?: Cardlink;
  clients: CardClient[];
  logs: Array<Record<string, unknown>>;
}

async function startEnv(users: string[], book: object): Promise<Env> {
  const prosody = new ProsodyServer();
  await prosody.start();
  prosody.createUsers(users.map((u) => ({ user: u, password: `${u}pw` })));
  const logs: Array<Record<string, unknown>> = [];
  const config = testConfig(prosody, {
    log: { level: "trace", rawStream: true },
    delivery: { ackTimeoutMs: 2000, retryBaseMs: 200, retryMaxMs: 1000, batchSize: 20 },
    book,
  });
  const log = pino(
    { level: "trace" },
    { write: (line: string) => logs.push(JSON.parse(line) as Record<string, unknown>) },
  );
  const app = await createCardlink(config, { log, modules: coreModules, migrations: moduleMigrations() });
  await app.start();
  await waitFor(() => app.link.online, "cardlink online", 15_000);
  return { prosody, app, clients: [], logs };
}

async function stopEnv(env: Env | undefined): Promise<void> {
  if (!env) return;
  for (const c of env.clients) await c.stop();
  await env.app?.stop();
  await env.prosody.stop();
  env.prosody.cleanup();
  if (process.env.CARDLINK_TEST_RAW === "1") {
    for (const l of env.logs) {
      if (typeof l.in === "string") console.log(`IN  ${l.in}`);
      if (typeof l.out === "string") console.log(`OUT ${l.out}`);
    }
  }
}

/** The helpers a suite uses over its environment. */
function helpers(get: () => Env) {
  const comp = (): string => get().prosody.componentDomain;
  const jid = (u: string): string => `${u}@${get().prosody.host}`;
  const connect = async (user: string, resource = "phone"): Promise<CardClient> => {
    const c = await cardClient(get().prosody, user, { resource });
    get().clients.push(c);
    return c;
  };
  const raw = (
    c: CardClient,
    type: "get" | "set",
    ns: string,
    name: string,
    attrs = {},
    ...children: Element[]
  ) => c.iqRaw(type, comp(), xml(name, { xmlns: ns, ...attrs }, ...children));
  const ok = async (
    c: CardClient,
    type: "get" | "set",
    ns: string,
    name: string,
    attrs: Record<string, string> = {},
    ...children: Element[]
  ): Promise<Element | undefined> => {
    const r = await raw(c, type, ns, name, attrs, ...children);
    if (r.attrs.type !== "result") throw new Error(`${name}: ${JSON.stringify(errorOf(r))}`);
    return r.getChild(name, ns);
  };
  const expectError = async (
    reply: Promise<Element>,
    condition: string,
    type: string,
    text: string | RegExp,
  ) => {
    const e = errorOf(await reply);
    expect(e.condition, e.text).to.equal(condition);
    expect(e.type).to.equal(type);
    if (typeof text === "string") expect(e.text).to.equal(text);
    else expect(e.text).to.match(text);
  };
  /** Creates an entry in c's book; answers its id. */
  const entry = async (c: CardClient, fn: string, ...extra: Element[]): Promise<string> =>
    String((await ok(c, "set", NS.BOOK, "entry", {}, vcard(fn, ...extra)))?.attrs.id);
  const request = async (c: CardClient, attrs: Record<string, string>) =>
    (await ok(c, "set", RQ, "update-request", attrs)) as Element;
  const getEntry = async (c: CardClient, id: string) =>
    (await ok(c, "get", NS.BOOK, "entry", { id })) as Element;
  return { comp, jid, connect, raw, ok, expectError, entry, request, getEntry };
}

describe("update requests: urn:cardlink:book:request:0 over the wire (real Prosody, real clients)", function () {
  this.timeout(300_000);
  let env: Env | undefined;
  const h = helpers(() => env as Env);
  let alice: CardClient;
  let aliceTablet: CardClient;
  let bob: CardClient;
  let carol: CardClient;

  before(async () => {
    env = await startEnv(["alice", "bob", "carol", "dave", "erin", "frank", "mallory", "trent", "sam"], {
      requestsPerHour: 4,
      maxOpenRequestsSent: 2,
      maxOpenRequestsReceived: 2,
    });
    alice = await h.connect("alice", "phone");
    aliceTablet = await h.connect("alice", "tablet");
    bob = await h.connect("bob");
    carol = await h.connect("carol");
  });
  after(() => stopEnv(env));

  it("form: B gets one notice with the pre-filled form, answers it; A's other device gets the entry, A the result", async () => {
    await alice.setCard("Alice Example"); // B holds no card of A: the notice names A by JID only
    const id = await h.entry(alice, "Bob", impp(h.jid("bob")));
    const made = await h.request(alice, { entry: id });
    expect(made.attrs).to.include({ entry: id, to: h.jid("bob"), form: "form" });
    const notice = await bob.waitForUpdate(
      (u) => u.kind === "update-request" && u.content.attrs.id === made.attrs.id,
      "bob's update notice",
    );
    expect(notice.content.attrs).to.include({ from: h.jid("alice"), form: "form" });
    expect(notice.content.attrs.name).to.equal(undefined);
    const form = notice.content.getChild("x", NS.DATA);
    expect(fieldValues(form, "FORM_TYPE")).to.deep.equal([UPDATE_FORM_TYPE]);
    expect(fieldValues(form, "fn")).to.deep.equal(["Bob"]);
    expect(fieldValues(form, "jid")).to.deep.equal([h.jid("bob")]);
    const answered = await h.ok(
      bob,
      "set",
      RQ,
      "answer",
      { id: String(made.attrs.id) },
      submit(UPDATE_FORM_TYPE, { fn: ["Robert Example"], tel: ["tel:+1-555-0100"], jid: [h.jid("bob")] }),
    );
    expect(answered?.attrs.changed).to.equal("true");
    const up = await aliceTablet.waitForUpdate(
      (u) => u.kind === "book-entry" && u.content.attrs.id === id && u.content.attrs.version === "2",
      "alice's tablet gets the updated entry",
    );
    expect(fnOf(up.content)).to.equal("Robert Example");
    const result = await alice.waitForUpdate(
      (u) => u.kind === "update-result" && u.content.attrs.id === made.attrs.id,
      "alice's result",
    );
    expect(result.content.attrs).to.include({ status: "answered", entry: id, to: h.jid("bob") });
    // The answer is visible only to A: B got the notice and nothing else.
    await sleep(300);
    expect(bob.updates.filter((u) => u.kind.startsWith("update-")).map((u) => u.kind)).to.deep.equal([
      "update-request",
    ]);
    // Forged answers: refused, nothing written.
    const before = (await h.getEntry(alice, id)).attrs.version;
    await h.expectError(
      h.raw(
        bob,
        "set",
        RQ,
        "answer",
        { id: String(made.attrs.id) },
        submit(UPDATE_FORM_TYPE, { fn: ["Again"] }),
      ),
      "conflict",
      "cancel",
      `update request ${made.attrs.id} was already answered`,
    );
    await h.expectError(
      h.raw(
        carol,
        "set",
        RQ,
        "answer",
        { id: String(made.attrs.id) },
        submit(UPDATE_FORM_TYPE, { fn: ["Forged"] }),
      ),
      "item-not-found",
      "cancel",
      `no update request '${made.attrs.id}' for you`,
    );
    expect((await h.getEntry(alice, id)).attrs.version).to.equal(before);
  });

  it("address: a user who never used cardlink gets the notice on login, reads the entry at its address and edits it", async () => {
    const id = await h.entry(alice, "Erin", impp(h.jid("erin")));
    const made = await h.request(alice, { entry: id, form: "address" });
    expect(made.attrs.to).to.equal(h.jid("erin"));
    const erin = await h.connect("erin");
    const notice = await erin.waitForUpdate((u) => u.kind === "update-request", "erin's notice on login");
    const uri = String(notice.content.attrs.uri);
    expect(uri).to.equal(`xmpp:${h.comp()}?cardlink;entry=${id}`);
    expect(notice.content.getChild("x", NS.DATA)).to.equal(undefined);
    const read = (await h.ok(erin, "get", RQ, "requested-entry", { uri })) as Element;
    expect(read.attrs).to.include({ request: made.attrs.id, version: "1" });
    expect(fnOf(read)).to.equal("Erin");
    // Someone else reading that address learns nothing.
    await h.expectError(
      h.raw(carol, "get", RQ, "requested-entry", { uri }),
      "item-not-found",
      "cancel",
      `no update request of yours is about entry ${id}`,
    );
    // A form answer to an address request is fine for ad-hoc clients; a stale version is not.
    await h.expectError(
      h.raw(erin, "set", RQ, "answer", { id: String(made.attrs.id), version: "9" }, vcard("Erin E.")),
      "conflict",
      "cancel",
      "the entry is at version 1, not 9; read it again and redo the change",
    );
    await h.ok(
      erin,
      "set",
      RQ,
      "answer",
      { id: String(made.attrs.id), version: "1" },
      vcard("Erin Example", tel("tel:+1-555-0177", "cell"), impp(h.jid("erin"))),
    );
    const up = await aliceTablet.waitForUpdate(
      (u) => u.kind === "book-entry" && u.content.attrs.id === id && u.content.attrs.version === "2",
      "alice's tablet gets erin's entry",
    );
    expect(fnOf(up.content)).to.equal("Erin Example");
    await alice.waitForUpdate(
      (u) =>
        u.kind === "update-result" &&
        u.content.attrs.id === made.attrs.id &&
        u.content.attrs.status === "answered",
      "alice's result for erin",
    );
  });

  it("pick: B asks for the pick form over B's own card and sends the picked details", async () => {
    await carol.setCard("Carol Card", [
      tel("tel:+1-555-0300", "work"),
      xml("title", {}, xml("text", {}, "CFO")),
    ]);
    const id = await h.entry(alice, "C.", impp(h.jid("carol")));
    const made = await h.request(alice, { entry: id, form: "pick" });
    const notice = await carol.waitForUpdate(
      (u) => u.kind === "update-request" && u.content.attrs.id === made.attrs.id,
      "carol's pick notice",
    );
    expect(notice.content.attrs.form).to.equal("pick");
    const pick = (await h.ok(carol, "get", RQ, "pick-form", { id: String(made.attrs.id) })) as Element;
    const form = pick.getChild("x", NS.DATA) as Element;
    expect(fieldValues(form, "FORM_TYPE")).to.deep.equal([PICK_FORM_TYPE]);
    const items = form.getChildren("field").find((f) => f.attrs.var === "items") as Element;
    expect(items.attrs.type).to.equal("list-multi");
    const options = items
      .getChildren("option")
      .map((o): [string, string] => [String(o.attrs.label), o.getChildText("value") ?? ""]);
    const telOption = options.find(([l]) => l.includes("555-0300"))?.[1] as string;
    expect(options.map(([, v]) => v)).to.include.members(["fn", "title", telOption]);
    await h.expectError(
      h.raw(
        carol,
        "set",
        RQ,
        "answer",
        { id: String(made.attrs.id) },
        submit(PICK_FORM_TYPE, { items: ["note"] }),
      ),
      "bad-request",
      "modify",
      "field 'items' (Details to send): 'note' is not one of its options",
    );
    await h.ok(
      carol,
      "set",
      RQ,
      "answer",
      { id: String(made.attrs.id) },
      submit(PICK_FORM_TYPE, { items: ["fn", telOption] }),
    );
    const up = await aliceTablet.waitForUpdate(
      (u) => u.kind === "book-entry" && u.content.attrs.id === id && u.content.attrs.version === "2",
      "alice's tablet gets carol's picks",
    );
    expect(fnOf(up.content)).to.equal("Carol Card");
    expect(up.content.toString()).to.contain("tel:+1-555-0300");
    expect(up.content.toString()).to.not.contain("CFO");
  });

  it("decline: A is told, B's second decline is a conflict; abuse cases answer their errors and write nothing", async () => {
    const dave = await h.connect("dave");
    const id = await h.entry(alice, "Dave", impp(h.jid("dave")));
    const made = await h.request(alice, { entry: id });
    await dave.waitForUpdate((u) => u.kind === "update-request", "dave's notice");
    await h.ok(dave, "set", RQ, "decline", { id: String(made.attrs.id) });
    await alice.waitForUpdate(
      (u) =>
        u.kind === "update-result" &&
        u.content.attrs.id === made.attrs.id &&
        u.content.attrs.status === "declined",
      "alice told of the decline",
    );
    await h.expectError(
      h.raw(dave, "set", RQ, "decline", { id: String(made.attrs.id) }),
      "conflict",
      "cancel",
      `update request ${made.attrs.id} was already declined`,
    );

    // Abuse, from mallory (her own limits: 2 open sent, 4 per hour; 2 open received per target).
    const mallory = await h.connect("mallory");
    const mine = async (who: string) => h.entry(mallory, who, impp(h.jid(who)));
    await h.expectError(
      h.raw(mallory, "set", RQ, "update-request", { entry: id }),
      "item-not-found",
      "cancel",
      `your address book has no entry ${id}`,
    );
    const toFrank = await mine("frank");
    const first = await h.request(mallory, { entry: toFrank });
    await h.expectError(
      h.raw(mallory, "set", RQ, "update-request", { entry: toFrank, form: "pick" }),
      "conflict",
      "cancel",
      `you already asked ${h.jid("frank")} (update request ${first.attrs.id}); wait for its answer or expiry`,
    );
    await h.request(mallory, { entry: await mine("trent") });
    await h.expectError(
      h.raw(mallory, "set", RQ, "update-request", { entry: await mine("dave") }),
      "resource-constraint",
      "wait",
      "you have 2 open update requests; wait for answers",
    );
    // Frank is waiting for two (mallory's and carol's): a third sender is told to try later.
    const carolToFrank = await h.entry(carol, "Frank", impp(h.jid("frank")));
    await h.request(carol, { entry: carolToFrank });
    const trent = await h.connect("trent");
    await h.expectError(
      h.raw(trent, "set", RQ, "update-request", {
        entry: await h.entry(trent, "Frank"),
        jid: h.jid("frank"),
      }),
      "resource-constraint",
      "wait",
      `${h.jid("frank")} cannot take more update requests now; try later`,
    );
    // Frank declines what waits for him (mallory's and carol's): the pair and the counts are free again.
    const frankDesk = await h.connect("frank", "desk");
    const waiting = (await h.ok(frankDesk, "get", RQ, "update-requests", {})) as Element;
    expect(waiting.getChildren("update-request").map((q) => q.attrs.from)).to.have.members([
      h.jid("mallory"),
      h.jid("carol"),
    ]);
    for (const q of waiting.getChildren("update-request"))
      await h.ok(frankDesk, "set", RQ, "decline", { id: String(q.attrs.id) });
    // Bob blocks mallory: her request is accepted like any other and never reaches bob.
    await bob.cardlink("set", "block", { jid: h.jid("mallory") });
    const trentReq = (await h.ok(trent, "get", RQ, "update-requests", { direction: "incoming" })) as Element;
    for (const q of trentReq.getChildren("update-request"))
      await h.ok(trent, "set", RQ, "decline", { id: String(q.attrs.id) });
    const toBob = await mine("bob");
    const silent = await h.request(mallory, { entry: toBob });
    expect(silent.attrs.to).to.equal(h.jid("bob"));
    // The hourly limit: 4 sent within the hour (declined ones count), checked before the open caps.
    await h.request(mallory, { entry: await mine("carol") });
    await h.expectError(
      h.raw(mallory, "set", RQ, "update-request", { entry: await mine("erin") }),
      "policy-violation",
      "wait",
      /^at most 4 update requests per hour; try again in \d+ min$/,
    );
    // A later notice to bob arrives; mallory's, queued before it on the same lane, never did.
    // (from carol: alice has used her four of the hour above)
    const again = await h.entry(carol, "Bob 2");
    const marker = await h.request(carol, { entry: again, jid: h.jid("bob") });
    await bob.waitForUpdate(
      (u) => u.kind === "update-request" && u.content.attrs.id === marker.attrs.id,
      "marker",
    );
    expect(bob.updates.some((u) => u.content.attrs.id === silent.attrs.id)).to.equal(false);
    const incoming = (await h.ok(bob, "get", RQ, "update-requests", { direction: "incoming" })) as Element;
    expect(incoming.getChildren("update-request").map((q) => q.attrs.from)).to.deep.equal([h.jid("carol")]);
    const out = (await h.ok(mallory, "get", RQ, "update-requests", { direction: "outgoing" })) as Element;
    expect(out.getChildren("update-request").map((q) => q.attrs.to)).to.include(h.jid("bob"));
    // Forged: an unknown field, a card for a form request — nothing written.
    const v = (await h.getEntry(carol, again)).attrs.version;
    await h.expectError(
      h.raw(
        bob,
        "set",
        RQ,
        "answer",
        { id: String(marker.attrs.id) },
        submit(UPDATE_FORM_TYPE, { fn: ["B"], salary: ["1"] }),
      ),
      "bad-request",
      "modify",
      "field 'salary' is not part of this form",
    );
    await h.expectError(
      h.raw(bob, "set", RQ, "answer", { id: String(marker.attrs.id) }, vcard("Bob as card")),
      "bad-request",
      "modify",
      `update request ${marker.attrs.id} asks for a submitted form, not a card`,
    );
    await h.expectError(
      h.raw(
        bob,
        "set",
        RQ,
        "answer",
        { id: String(marker.attrs.id) },
        submit(UPDATE_FORM_TYPE, { org: ["x"] }),
      ),
      "bad-request",
      "modify",
      "field 'fn' (Full name) is required",
    );
    expect((await h.getEntry(carol, again)).attrs.version).to.equal(v);
    await h.ok(bob, "set", RQ, "decline", { id: String(marker.attrs.id) });
  });

  it("slixmpp as B: offline when asked, gets the notice on login, submits the pre-filled form; A's tablet gets the entry", async () => {
    const id = await h.entry(carol, "Sam", impp(h.jid("sam")), tel("tel:+1-555-0400", "work"));
    const made = await h.request(carol, { entry: id });
    const carolTablet = await h.connect("carol", "tablet");
    const { stdout } = await run(PYTHON, [
      "test/slixmpp/update_answerer.py",
      `${h.jid("sam")}/slix`,
      "sampw",
      String((env as Env).prosody.c2sPort),
      h.comp(),
      "Samuel Slix",
      "tel:+1-555-0401",
    ]);
    const r = JSON.parse(stdout.trim().split("\n").pop() as string) as {
      error?: string;
      notice?: Record<string, string>;
      fields?: Array<{ var: string; type: string; label?: string; required: boolean; values: string[] }>;
      changed?: string;
    };
    expect(r.error, String(r.error)).to.equal(undefined);
    expect(r.notice).to.include({ id: made.attrs.id, from: h.jid("carol"), form: "form" });
    const byVar = new Map((r.fields ?? []).map((f) => [f.var, f]));
    expect(byVar.get("FORM_TYPE")).to.deep.include({ type: "hidden", values: [UPDATE_FORM_TYPE] });
    expect(byVar.get("fn")).to.deep.include({ type: "text-single", required: true, values: ["Sam"] });
    expect(byVar.get("tel")).to.deep.include({ type: "text-multi", values: ["tel:+1-555-0400"] });
    expect(byVar.get("jid")).to.deep.include({ type: "jid-single", values: [h.jid("sam")] });
    expect(r.changed).to.equal("true");
    const up = await carolTablet.waitForUpdate(
      (u) => u.kind === "book-entry" && u.content.attrs.id === id && u.content.attrs.version === "2",
      "carol's tablet gets sam's answer",
    );
    expect(fnOf(up.content)).to.equal("Samuel Slix");
    expect(up.content.toString()).to.contain("tel:+1-555-0400").and.contain("tel:+1-555-0401");
    await carol.waitForUpdate(
      (u) =>
        u.kind === "update-result" &&
        u.content.attrs.id === made.attrs.id &&
        u.content.attrs.status === "answered",
      "carol's result",
    );
  });

  it("ad-hoc commands: A makes a request, B answers it with the pre-filled form", async () => {
    const command = async (c: CardClient, node: string, sessionid?: string, form?: Element) => {
      const r = await c.iqRaw(
        "set",
        h.comp(),
        xml(
          "command",
          { xmlns: NS.COMMANDS, node, action: sessionid ? "complete" : "execute", sessionid },
          form,
        ),
      );
      if (r.attrs.type !== "result") throw new Error(`${node}: ${JSON.stringify(errorOf(r))}`);
      return r.getChild("command", NS.COMMANDS) as Element;
    };
    const frank = await h.connect("frank");
    const id = await h.entry(carol, "Frank F.");
    const step1 = await command(carol, "urn:cardlink:cmd:request-update");
    const f1 = step1.getChild("x", NS.DATA) as Element;
    expect(fieldValues(f1, "FORM_TYPE")).to.deep.equal(["urn:cardlink:0:update-request-make"]);
    const made = await command(
      carol,
      "urn:cardlink:cmd:request-update",
      String(step1.attrs.sessionid),
      submit("urn:cardlink:0:update-request-make", { entry: [id], jid: [h.jid("frank")], form: ["address"] }),
    );
    expect(made.attrs.status).to.equal("completed");
    expect(made.getChild("note")?.getText()).to.match(new RegExp(`^Asked ${h.jid("frank")} \\(request `));
    await frank.waitForUpdate(
      (u) => u.kind === "update-request" && u.content.attrs.from === h.jid("carol"),
      "frank's notice",
    );
    const list = await command(frank, "urn:cardlink:cmd:update-requests");
    const lf = list.getChild("x", NS.DATA) as Element;
    const reqId = fieldValues(lf, "request")[0] ?? "";
    const options =
      lf
        .getChildren("field")
        .find((f) => f.attrs.var === "request")
        ?.getChildren("option") ?? [];
    const chosen = options
      .find((o) => String(o.attrs.label).includes(h.jid("carol")))
      ?.getChildText("value") as string;
    expect(reqId).to.equal("");
    const step2 = await command(
      frank,
      "urn:cardlink:cmd:update-requests",
      String(list.attrs.sessionid),
      submit("urn:cardlink:0:update-request-choose", { request: [chosen], action: ["answer"] }),
    );
    expect(step2.attrs.status).to.equal("executing");
    const f2 = step2.getChild("x", NS.DATA) as Element;
    expect(fieldValues(f2, "fn")).to.deep.equal(["Frank F."]);
    const done = await command(
      frank,
      "urn:cardlink:cmd:update-requests",
      String(step2.attrs.sessionid),
      submit(UPDATE_FORM_TYPE, { fn: ["Frank Fuller"], email: ["frank@example.net"] }),
    );
    expect(done.getChild("note")?.getText()).to.equal("Sent: the requester's entry is updated.");
    const e = await h.getEntry(carol, id);
    expect(fnOf(e)).to.equal("Frank Fuller");
    expect(e.toString()).to.contain("frank@example.net");
  });
});

describe("update requests: expiry (a 3-second lifetime)", function () {
  this.timeout(120_000);
  let env: Env | undefined;
  const h = helpers(() => env as Env);

  before(async () => {
    env = await startEnv(["alice", "bob"], { requestTtlSeconds: 3 });
  });
  after(() => stopEnv(env));

  it("an unanswered request expires: A is told by the sweep, B's late answer is `gone` and writes nothing", async () => {
    const alice = await h.connect("alice");
    const bob = await h.connect("bob");
    const id = await h.entry(alice, "Bob", impp(h.jid("bob")));
    const made = await h.request(alice, { entry: id });
    await bob.waitForUpdate((u) => u.kind === "update-request", "bob's notice");
    await alice.waitForUpdate(
      (u) =>
        u.kind === "update-result" &&
        u.content.attrs.id === made.attrs.id &&
        u.content.attrs.status === "expired",
      "alice told of the expiry",
      30_000,
    );
    await h.expectError(
      h.raw(
        bob,
        "set",
        RQ,
        "answer",
        { id: String(made.attrs.id) },
        submit(UPDATE_FORM_TYPE, { fn: ["Late"] }),
      ),
      "gone",
      "cancel",
      `update request ${made.attrs.id} expired`,
    );
    expect((await h.getEntry(alice, id)).attrs.version).to.equal("1");
    // The pair is free again.
    const next = await h.request(alice, { entry: id });
    expect(next.attrs.id).to.not.equal(made.attrs.id);
  });
});
