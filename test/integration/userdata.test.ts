import { expect } from "chai";
import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, statSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import type { Cardlink } from "../../component/runtime/app.js";
import { SqliteStore } from "../../storage/sqlite/store.js";
import { NS } from "../../stanzas/ns.js";
import { startInProcess, testConfig } from "../harness/cardlink.js";
import { cardClient, type CardClient } from "../harness/cardclient.js";
import { errorOf, xml, type Element } from "../harness/clients.js";
import * as look from "../harness/look.js";
import { legacyBind, legacyCard, legacyDevice, legacyDropRecipient } from "../harness/legacy-seed.js";
import { waitFor } from "../harness/ports.js";
import { ProsodyServer } from "../harness/prosody.js";

function field(form: Element | undefined, name: string): string[] {
  return (
    form
      ?.getChildren("field")
      .find((f) => f.attrs.var === name)
      ?.getChildren("value") ?? []
  ).map((v) => v.getText());
}

function submit(values: Record<string, string | string[]>): Element {
  return xml(
    "x",
    { xmlns: NS.DATA, type: "submit" },
    ...Object.entries(values).map(([k, v]) =>
      xml("field", { var: k }, ...(Array.isArray(v) ? v : [v]).map((x) => xml("value", {}, x))),
    ),
  );
}

const commandRaw = (c: CardClient, node: string, sessionid?: string, form?: Element): Promise<Element> =>
  c.iqRaw(
    "set",
    c.comp,
    xml("command", { xmlns: NS.COMMANDS, node, action: sessionid ? "complete" : "execute", sessionid }, form),
  );

async function command(c: CardClient, node: string, sessionid?: string, form?: Element): Promise<Element> {
  const r = await commandRaw(c, node, sessionid, form);
  if (r.attrs.type !== "result") throw new Error(`command ${node} failed: ${JSON.stringify(errorOf(r))}`);
  return r.getChild("command", NS.COMMANDS) as Element;
}

/** Runs a two-step command: execute, then submit `values`. */
async function twoStep(
  c: CardClient,
  node: string,
  values: Record<string, string | string[]>,
): Promise<Element> {
  const first = await command(c, node);
  expect(first.attrs.status).to.equal("executing");
  return command(c, node, String(first.attrs.sessionid), submit(values));
}

interface ExportPage {
  rows: Array<{ table: string; row: Record<string, unknown> }>;
  vcf: Array<{ owner: string; mine: boolean; text: string }>;
  last?: string;
  count: number;
}

async function exportPage(c: CardClient, max?: number, after?: string): Promise<ExportPage> {
  const set =
    max !== undefined
      ? xml(
          "set",
          { xmlns: NS.RSM },
          xml("max", {}, String(max)),
          after !== undefined ? xml("after", {}, after) : null,
        )
      : null;
  const r = (await c.cardlink("get", "export", {}, ...(set ? [set] : []))).getChild("export", NS.CARDLINK)!;
  expect(r.attrs.format).to.equal("urn:cardlink:export:0");
  const s = r.getChild("set", NS.RSM);
  return {
    rows: r.getChildren("row").map((x) => ({
      table: String(x.attrs.table),
      row: JSON.parse(x.getText()) as Record<string, unknown>,
    })),
    vcf: r.getChildren("vcf").map((x) => ({
      owner: String(x.attrs.owner),
      mine: x.attrs.mine === "true",
      text: x.getText(),
    })),
    ...(s?.getChildText("last") ? { last: s.getChildText("last") as string } : {}),
    count: Number(s?.getChildText("count")),
  };
}

/** The whole export through every page. */
async function exportAll(c: CardClient, max?: number): Promise<ExportPage & { pages: number }> {
  const all: ExportPage & { pages: number } = { rows: [], vcf: [], count: 0, pages: 0 };
  let after: string | undefined;
  for (;;) {
    const p = await exportPage(c, max, after);
    all.pages++;
    all.rows.push(...p.rows);
    all.vcf.push(...p.vcf);
    all.count = p.count;
    if (!p.last || all.rows.length + all.vcf.length >= p.count) return all;
    after = p.last;
    if (max === undefined) max = 1000;
  }
}

const TOKEN = "a".repeat(58) + "c0ffee";

describe("a user's own data: export and delete, by the user and by an admin", function () {
  this.timeout(90_000);
  const prosody = new ProsodyServer();
  let app: Cardlink;
  let dbFile: string;
  const users = ["alice", "bob", "carol", "erin", "root", "frank"];
  const c: Record<string, CardClient> = {};
  const jid = (u: string): string => `${u}@${prosody.host}`;
  const get = (u: string): CardClient => {
    const x = c[u];
    if (!x) throw new Error(`${u} is not connected`);
    return x;
  };

  before(async () => {
    await prosody.start();
    prosody.createUsers(users.map((u) => ({ user: u, password: `${u}pw` })));
    const config = testConfig(prosody, { admins: [jid("root")] });
    dbFile = config.database.path;
    app = await startInProcess(config);
    for (const u of ["alice", "bob", "carol", "erin", "root"]) c[u] = await cardClient(prosody, u);
  });
  after(async () => {
    for (const k of Object.values(c)) await k.stop();
    await app?.stop();
    await prosody.stop();
    prosody.cleanup();
  });

  /** Binds two users through an exchange code. */
  const bind = async (a: CardClient, b: CardClient): Promise<void> => {
    const code = String((await a.cardlink("set", "exchange-code")).getChild("exchange-code")?.attrs.code);
    await b.cardlink("set", "redeem", { code });
  };

  it("exports every row about me (tokens redacted), my card and my book as .vcf; pages cover it all", async () => {
    const alice = get("alice");
    const bob = get("bob");
    const carol = get("carol");
    const erin = get("erin");
    await alice.setCard("Alice Export");
    await bob.setCard("Bob Holder");
    await alice.cardlink(
      "set",
      "device",
      { id: "alice-phone", platform: "ios", name: "Alice's phone" },
      xml("push", { token: TOKEN, topic: "org.example.cardlink" }),
    );
    await bind(alice, bob);
    await alice.cardlink(
      "set",
      "share",
      { holder: jid("bob") },
      xml("fields", {}, xml("field", { name: "fn" })),
    );
    await alice.cardlink("set", "block", { jid: jid("frank") });
    await erin.cardlink("set", "exchange-request", { to: jid("alice") });
    await alice.cardlink("set", "exchange-code");
    // Someone else's block of alice: their data, kept and not shown to alice.
    await carol.cardlink("set", "block", { jid: jid("alice") });

    const all = await exportAll(alice);
    expect(all.pages).to.equal(1);
    const tables = (t: string): Array<Record<string, unknown>> =>
      all.rows.filter((r) => r.table === t).map((r) => r.row);
    expect(tables("cards")).to.have.length(1);
    expect((tables("cards")[0]?.card as { fn: string }).fn).to.equal("Alice Export");
    const dev = tables("devices");
    expect(dev).to.have.length(1);
    expect(dev[0]?.device_id).to.equal("alice-phone");
    expect(dev[0]?.push_token).to.match(/^…c0ffee \(64 chars, redacted\)$/);
    expect(JSON.stringify(all.rows)).to.not.include(TOKEN);
    expect(tables("bindings")).to.have.length(1);
    expect(tables("shares")).to.have.length(2);
    expect(tables("blocks")).to.deep.equal([await look.exportedBlock(app, jid("alice"), jid("frank"))]);
    expect(tables("exchange_requests").map((r) => r.from_jid)).to.deep.equal([jid("erin")]);
    expect(tables("exchange_codes").length).to.be.at.least(1);
    expect(String(tables("exchange_codes")[0]?.expires_at)).to.match(/^\d{4}-\d\d-\d\dT/);
    const mine = all.vcf.find((v) => v.mine);
    expect(mine?.text)
      .to.match(/^BEGIN:VCARD/)
      .and.match(/FN:Alice Export/);
    expect(all.vcf.find((v) => v.owner === jid("bob"))?.text).to.match(/FN:Bob Holder/);

    // One row at a time: the same items, in pages that continue with <after/>.
    const paged = await exportAll(alice, 1);
    expect(paged.pages).to.equal(paged.count);
    expect(paged.rows).to.deep.equal(all.rows);
    expect(paged.vcf.map((v) => v.owner)).to.deep.equal(all.vcf.map((v) => v.owner));

    // The ad-hoc command: the same document in one form.
    const cmd = await command(alice, "urn:cardlink:cmd:export-data");
    expect(cmd.attrs.status).to.equal("completed");
    const form = cmd.getChild("x", NS.DATA);
    expect(field(form, "FORM_TYPE")).to.deep.equal(["urn:cardlink:export:0"]);
    const doc = JSON.parse(field(form, "json").join("\n")) as {
      jid: string;
      tables: Record<string, unknown[]>;
    };
    expect(doc.jid).to.equal(jid("alice"));
    expect(doc.tables.devices).to.deep.equal(dev);
    expect(field(form, "vcf").join("\n"))
      .to.match(/FN:Alice Export/)
      .and.match(/FN:Bob Holder/);
  });

  it("an export over the stanza budget pages in the IQ and is refused with a note in the ad-hoc command", async () => {
    const erin = get("erin");
    // 1000 blocks of long JIDs (the cap): over 900 KB of rows, well over the 512 KiB link limit.
    for (let i = 0; i < 1000; i++) {
      const other = `${"x".repeat(900)}${String(i).padStart(4, "0")}@${prosody.host}`;
      expect(await look.seedBlock(app, jid("erin"), other, 1000)).to.equal("blocked");
    }
    const all = await exportAll(erin);
    expect(all.pages).to.be.at.least(2);
    expect(all.rows.filter((r) => r.table === "blocks")).to.have.length(1000);
    const cmd = await command(erin, "urn:cardlink:cmd:export-data");
    expect(cmd.attrs.status).to.equal("completed");
    expect(cmd.getChild("x", NS.DATA)).to.equal(undefined);
    const note = cmd.getChild("note");
    expect(note?.attrs.type).to.equal("error");
    expect(note?.getText())
      .to.match(/more than one answer can carry/)
      .and.match(/<export\/> request/);
  });

  it("delete-account needs confirm='my JID'; then every row goes in one step and my holder gets the unbind", async () => {
    const alice = get("alice");
    const bob = get("bob");
    const before = look.rowsNaming(dbFile, jid("alice")).length;
    const stray = errorOf(await alice.cardlinkRaw("set", "delete-account"));
    expect(stray).to.deep.include({ condition: "bad-request", type: "modify" });
    expect(stray.text).to.match(/needs confirm='alice@/);
    const wrong = errorOf(await alice.cardlinkRaw("set", "delete-account", { confirm: jid("bob") }));
    expect(wrong.condition).to.equal("not-acceptable");
    expect(wrong.text).to.match(/nothing was deleted/);
    expect(look.rowsNaming(dbFile, jid("alice")).length).to.equal(before);

    const r = (
      await alice.cardlink("set", "delete-account", { confirm: jid("alice").toUpperCase() })
    ).getChild("delete-account")!;
    expect(r.attrs.jid).to.equal(jid("alice"));
    expect(Number(r.attrs.deleted)).to.be.above(5);
    expect(r.attrs.notified).to.equal("1");
    const u = await bob.waitForUpdate(
      (x) => x.kind === "unbound" && x.content.attrs.peer === jid("alice"),
      "bob told alice is gone",
    );
    expect(u.content.name).to.equal("unbound");
    // Once bob acknowledged it, only carol's own block of alice names alice.
    await waitFor(async () => (await look.pendingCount(app, jid("bob"))) === 0, "bob's notice acked");
    expect(look.rowsNaming(dbFile, jid("alice"))).to.deep.equal([
      { table: "blocks", row: { owner: jid("carol"), blocked: jid("alice") } },
    ]);
    // Bob's view agrees: no contact, nothing to sync.
    const contacts = (await bob.cardlink("get", "contacts")).getChild("contacts")!;
    expect(contacts.getChildren("binding")).to.have.length(0);
    // Nothing left to export.
    const after = await exportAll(alice);
    expect(await look.beyondSkeleton(app, jid("alice"), after.rows)).to.have.length(0);
    expect(after.vcf).to.have.length(0);
  });

  it("the delete command asks to type my address; a wrong answer deletes nothing", async () => {
    const erin = get("erin");
    await erin.setCard("Erin Gone");
    const no = await twoStep(erin, "urn:cardlink:cmd:delete-data", { confirm: "yes" });
    expect(no.getChildText("note")).to.match(/Nothing deleted/);
    expect(await look.card(app, jid("erin"))).to.not.equal(undefined);
    const yes = await twoStep(erin, "urn:cardlink:cmd:delete-data", { confirm: jid("erin") });
    expect(yes.getChildText("note")).to.match(/^Deleted \d+ records; 0 contact\(s\) are told/);
    expect(look.rowsNaming(dbFile, jid("erin"))).to.deep.equal([]);
  });

  it("admin commands: only admins; look up, queues, re-deliver and drop, export and delete a user", async () => {
    const bob = get("bob");
    const carol = get("carol");
    const root = get("root");
    // Not listed for a non-admin, and refused with a text when run anyway.
    const items = (
      (await bob.iq("get", bob.comp, xml("query", { xmlns: NS.DISCO_ITEMS, node: NS.COMMANDS })))
        .getChild("query")
        ?.getChildren("item") ?? []
    ).map((i) => String(i.attrs.node));
    expect(items).to.include("urn:cardlink:cmd:export-data");
    expect(items.filter((n) => n.includes("admin"))).to.deep.equal([]);
    for (const node of ["user", "export-user", "delete-user", "queues", "stuck"]) {
      const e = errorOf(await commandRaw(bob, `urn:cardlink:cmd:admin-${node}`));
      expect(e.condition, node).to.equal("forbidden");
      expect(e.text, node).to.match(/is for cardlink administrators/);
    }

    // Stuck entries: bob asks frank (never online) to exchange; one failed attempt recorded.
    await bob.cardlink("set", "exchange-request", { to: jid("frank") });
    await look.failOnce(app, jid("frank"), Date.now() + 3_600_000);

    const lookUp = await twoStep(root, "urn:cardlink:cmd:admin-user", { accountjid: jid("frank") });
    const lf = lookUp.getChild("x", NS.DATA);
    expect(field(lf, "outbox")[0]).to.match(/^1 waiting, 1 retrying \(most attempts 1\), oldest \d+ s$/);
    expect(field(lf, "card")).to.deep.equal(["none"]);
    const lookBob = await twoStep(root, "urn:cardlink:cmd:admin-user", { accountjid: jid("bob") });
    expect(field(lookBob.getChild("x", NS.DATA), "card")[0]).to.match(/^version \d+, Bob Holder$/);
    expect(field(lookBob.getChild("x", NS.DATA), "bindings")).to.deep.equal(["0"]);

    const q = await command(root, "urn:cardlink:cmd:admin-queues");
    const outboxLines = field(q.getChild("x", NS.DATA), "outbox");
    expect(outboxLines).to.include.members([
      "exchange-request: 1 entries for 1 users, 1 retrying, oldest 0 s",
    ]);
    expect(field(q.getChild("x", NS.DATA), "push")).to.deep.equal(["empty"]);

    const redo = await twoStep(root, "urn:cardlink:cmd:admin-stuck", {
      accountjid: jid("frank"),
      action: "redeliver",
      queues: ["outbox", "push"],
    });
    expect(redo.getChildText("note")).to.equal(
      `Re-delivering 1 outbox entries and 0 push notices of ${jid("frank")}.`,
    );
    expect((await look.recipientStats(app, jid("frank"))).retrying).to.equal(0);
    const drop = await twoStep(root, "urn:cardlink:cmd:admin-stuck", {
      accountjid: jid("frank"),
      action: "drop",
      queues: "outbox",
    });
    expect(drop.getChildText("note")).to.match(/^Dropped 1 outbox entries/);
    expect(await look.pendingCount(app, jid("frank"))).to.equal(0);
    const bad = await command(root, "urn:cardlink:cmd:admin-user");
    const badJid = errorOf(
      await commandRaw(
        root,
        "urn:cardlink:cmd:admin-user",
        String(bad.attrs.sessionid),
        submit({ accountjid: "no@" }),
      ),
    );
    expect(badJid.condition).to.equal("jid-malformed");

    // Export and delete carol as the admin; bob held carol's card.
    await carol.setCard("Carol Admin");
    await bind(carol, bob);
    const ex = await twoStep(root, "urn:cardlink:cmd:admin-export-user", { accountjid: jid("carol") });
    const doc = JSON.parse(field(ex.getChild("x", NS.DATA), "json").join("\n")) as {
      jid: string;
      tables: Record<string, unknown[]>;
    };
    expect(doc.jid).to.equal(jid("carol"));
    expect(doc.tables.bindings).to.have.length(1);
    const notConfirmed = await twoStep(root, "urn:cardlink:cmd:admin-delete-user", {
      accountjid: jid("carol"),
      confirm: "0",
    });
    expect(notConfirmed.getChildText("note")).to.match(/Nothing deleted/);
    const del = await twoStep(root, "urn:cardlink:cmd:admin-delete-user", {
      accountjid: jid("carol"),
      confirm: "1",
    });
    expect(del.getChildText("note")).to.match(/^Deleted \d+ records of carol@.*; 1 holder\(s\) are told/);
    await bob.waitForUpdate((x) => x.kind === "unbound" && x.content.attrs.peer === jid("carol"), "bob told");
    await waitFor(async () => (await look.pendingCount(app, jid("bob"))) === 0, "acked");
    expect(look.rowsNaming(dbFile, jid("carol"))).to.deep.equal([]);
  });
});

// ------------------------------------------------------------------------------------------------ the CLI

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

function cardlink(args: string[], env: Record<string, string>): Promise<Run> {
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, [path.resolve("dist/component/cli.js"), ...args], {
      env: { PATH: process.env.PATH ?? "", ...env },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    p.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
    p.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
    const t = setTimeout(() => {
      p.kill("SIGKILL");
      reject(new Error(`cardlink ${args.join(" ")} did not exit; ${stdout} ${stderr}`));
    }, 30_000);
    p.once("exit", (code) => {
      clearTimeout(t);
      resolve({ code, stdout, stderr });
    });
  });
}

describe("cardlink export-user and delete-user", function () {
  this.timeout(90_000);
  const prosody = new ProsodyServer();
  let dir: string;
  let file: string;
  const jid = (u: string): string => `${u}@${prosody.host}`;
  const env = (): Record<string, string> => ({ CARDLINK_SECRET: "s", CARDLINK_DB: file });

  before(async () => {
    await prosody.start();
    prosody.createUsers(["ann", "ben"].map((u) => ({ user: u, password: `${u}pw` })));
    dir = mkdtempSync(path.join(os.tmpdir(), "cardlink-userdata-"));
    file = path.join(dir, "cardlink.sqlite");
    // The data as a stopped cardlink left it: two bound users, ann with a device.
    const store = new SqliteStore(file);
    const card = (fn: string) => ({
      fn,
      nickname: [],
      tel: [],
      email: [],
      adr: [],
      url: [],
      impp: [],
      categories: [],
    });
    // An old (schema 300) file, migrated to 2000 below as the first start would.
    legacyCard(store.db, jid("ann"), card("Ann Cli"), "h1");
    legacyCard(store.db, jid("ben"), card("Ben Cli"), "h2");
    legacyDevice(store.db, {
      owner: jid("ann"),
      deviceId: "ann-phone",
      platform: "android",
      pushToken: "tok-ann-123456",
    });
    legacyBind(
      store.db,
      { id: "b1", a: jid("ann"), b: jid("ben"), aDevices: ["ann-phone"], bDevices: [], via: "code" },
      Date.now(),
    );
    // Delivered long ago: nothing waits in the outbox.
    legacyDropRecipient(store.db, jid("ann"));
    legacyDropRecipient(store.db, jid("ben"));
    await store.close();
    await look.toCoreSchema(file);
  });
  after(async () => {
    await prosody.stop();
    prosody.cleanup();
  });

  it("export-user: JSON on stdout or into a new owner-only file; failures exit 1 or 2 with a message", async () => {
    const out = await cardlink(["export-user", jid("ann")], env());
    expect(out.stderr).to.equal("");
    expect(out.code).to.equal(0);
    const doc = JSON.parse(out.stdout) as {
      format: string;
      tables: Record<string, Array<Record<string, unknown>>>;
      vcf: { card: string; book: Array<{ owner: string; vcf: string }> };
    };
    expect(doc.format).to.equal("urn:cardlink:export:0");
    expect(doc.tables.devices?.[0]?.push_token).to.equal("…123456 (14 chars, redacted)");
    expect(doc.tables.bindings).to.have.length(1);
    expect(doc.vcf.card).to.match(/FN:Ann Cli/);
    expect(doc.vcf.book.map((b) => b.owner)).to.deep.equal([jid("ben")]);

    const target = path.join(dir, "ann.json");
    const f = await cardlink(["export-user", jid("ann"), "-o", target], env());
    expect(f.code).to.equal(0);
    expect(f.stdout).to.match(/^exported ann@.* to .*ann\.json \(\d+ rows, 1 held cards\)\n$/);
    expect(statSync(target).mode & 0o777).to.equal(0o600);
    expect((JSON.parse(readFileSync(target, "utf8")) as { jid: string }).jid).to.equal(jid("ann"));
    const again = await cardlink(["export-user", jid("ann"), "-o", target], env());
    expect(again.code).to.equal(1);
    expect(again.stderr).to.match(/exists; refusing to overwrite it/);

    const nobody = await cardlink(["export-user", jid("nobody")], env());
    expect(nobody.code).to.equal(1);
    expect(nobody.stderr).to.equal(`cardlink: nothing is stored about ${jid("nobody")}\n`);
    const bad = await cardlink(["export-user", "not a jid"], env());
    expect(bad.code).to.equal(2);
    expect(bad.stderr)
      .to.match(/'not a jid' is not a bare user JID/)
      .and.match(/usage: cardlink/);
    const none = await cardlink(["export-user"], env());
    expect(none.code).to.equal(2);
    const missing = await cardlink(["export-user", jid("ann")], {
      CARDLINK_SECRET: "s",
      CARDLINK_DB: path.join(dir, "no.sqlite"),
    });
    expect(missing.code).to.equal(1);
    expect(missing.stderr).to.match(/does not exist/);
    expect(existsSync(path.join(dir, "no.sqlite"))).to.equal(false);
  });

  it("delete-user: refused without --yes off a terminal; with it, all rows go and the holder is told at the next start", async () => {
    const refused = await cardlink(["delete-user", jid("ann")], env());
    expect(refused.code).to.equal(2);
    expect(refused.stderr).to.match(/needs --yes when not run on a terminal; nothing deleted/);
    expect(look.rowsNaming(file, jid("ann")).length).to.be.above(3);

    const del = await cardlink(["delete-user", jid("ann"), "--yes"], env());
    expect(del.stderr).to.equal("");
    expect(del.code).to.equal(0);
    expect(del.stdout).to.match(/^deleted \d+ rows about ann@\S+ \(.*cards 1.*devices 1.*\)$/m);
    expect(del.stdout).to.match(/^1 holder\(s\) get an unbind notice/m);
    // Only ben's pending notice names ann now.
    expect(
      look.rowsNaming(file, jid("ann")).map((r) => [r.table, r.row.recipient, r.row.kind]),
    ).to.deep.equal([["outbox", jid("ben"), "unbound"]]);
    const twice = await cardlink(["delete-user", jid("ann"), "--yes"], env());
    expect(twice.code).to.equal(1);
    expect(twice.stderr).to.match(/nothing is stored about ann@.*; nothing deleted/);

    // The service starts on that database; ben comes online and is told.
    const app = await startInProcess(testConfig(prosody, {}, file));
    const ben = await cardClient(prosody, "ben");
    try {
      await ben.waitForUpdate((u) => u.kind === "unbound" && u.content.attrs.peer === jid("ann"), "ben told");
      await waitFor(async () => (await look.pendingCount(app, jid("ben"))) === 0, "acked");
      expect(look.rowsNaming(file, jid("ann"))).to.deep.equal([]);
    } finally {
      await ben.stop();
      await app.stop();
    }
  });
});
