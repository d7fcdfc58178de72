/**
 * Issue 14's export and delete on the new core (component/features/userdata, issue 8 S11) over a temp SQLite
 * store with schema 2000 and the offline core `cardlink export-user` / `delete-user` use (runtime/offline.ts with
 * component/features.ts userDataWiring(): the real cards/exchange kinds, the binding path, the features'
 * `account.deleting` handlers). The world is seeded through the real services (cards' storeCard, exchange's
 * ExchangeService, the accounts part's upsertDevice, push's repo) plus a few runtime rows by SQL.
 */
import { expect } from "chai";
import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { pino } from "pino";
import { storeCard } from "../../component/features/cards/service.js";
import { setShare } from "../../component/features/exchange/contacts.js";
import { ExchangeService } from "../../component/features/exchange/service.js";
import { pushRepo } from "../../component/features/push/repo.js";
import {
  buildExport,
  deleteAccount,
  isEmptyExport,
  type ExportDoc,
} from "../../component/features/userdata/api.js";
import { USER_TABLES } from "../../component/features/userdata/tables.js";
import { moduleMigrations, userDataWiring } from "../../component/features.js";
import { cli, type Io } from "../../component/runtime/ctl.js";
import { adminModule } from "../../component/features/admin/index.js";
import { userdataModule } from "../../component/features/userdata/index.js";
import type { Command, CommandStep } from "../../component/runtime/adhoc.js";
import { StanzaBudget } from "../../component/runtime/budget.js";
import type { Runtime } from "../../component/runtime/context.js";
import type { Uow } from "../../component/runtime/uow.js";
import type { AccountId as Id } from "../../storage/store.js";
import { parseJid } from "../../component/runtime/jid.js";
import { formElement, parseForm } from "../../stanzas/dataforms.js";
import { jobsRepo } from "../../component/runtime/queue/jobs-repo.js";
import { xml } from "../../stanzas/xml.js";
import * as inspect from "../../component/runtime/inspect.js";
import { offlineCore, type OfflineCore } from "../../component/runtime/offline.js";
import { normalizeCard, type Card } from "../../stanzas/model/card.js";
import { SCHEMA_2000 } from "../../storage/sqlite/schema-2000.js";
import { SqliteStore } from "../../storage/sqlite/store.js";
import type { AccountId, DeviceKey, Store } from "../../storage/store.js";

const A = "alice@a.example";
const B = "bob@a.example";
const C = "carol@a.example";
const D = "dave@a.example"; // A's pending request goes to D
const E = "erin@a.example"; // blocked by A
const F = "frank@a.example"; // unbound from A earlier; the notice still waits
const G = "gina@a.example"; // blocks A (G's data: stays)
const H = "hugo@a.example"; // requests A (incoming, pending)

const TOKEN = "apns-SECRET-token-0123456789abcdef"; // the last 6 characters are shown
const PUSH_KEY = "push-key-SECRET-material";
const NODE_SECRET = "node-secret-SECRET";

const card = (fn: string): Card =>
  normalizeCard({
    fn,
    nickname: [],
    tel: [{ key: "", types: ["work"], uri: "tel:+44-20-0001" }],
    email: [{ key: "", types: ["home"], value: `${fn.toLowerCase()}@home.example` }],
    adr: [],
    url: [],
    impp: [],
    categories: [],
  });

interface World {
  store: Store;
  core: OfflineCore;
  svc: ExchangeService;
  clock: { t: number };
  dir: string;
}

async function world(): Promise<World> {
  const dir = mkdtempSync(path.join(os.tmpdir(), "cardlink-userdata-2000-"));
  const clock = { t: 1_700_000_000_000 };
  const store = new SqliteStore(path.join(dir, "store.sqlite"), {
    legacy: false,
    clock: () => clock.t,
    log: pino({ level: "silent" }),
  });
  await store.migrate([SCHEMA_2000, ...moduleMigrations()]);
  const core = offlineCore(store, userDataWiring());
  const svc = new ExchangeService({
    uow: core.uow,
    read: core.read,
    servedHosts: ["a.example"],
    requestTtlMs: 7 * 86_400_000,
    codeTtlMs: 300_000,
    maxPendingPerUser: 50,
    codesPerUser: 10,
    blocksPerUser: 1000,
    redeem: { failuresPerUser: 10, failuresPerHost: 200, windowMs: 600_000, maxKeys: 1000 },
    clock: () => clock.t,
  });
  return { store, core, svc, clock, dir };
}

const idOf = async (w: World, jid: string): Promise<AccountId> =>
  (await w.core.read("test.id", (r) => r.accounts.resolve(jid))) as AccountId;
const all = <R extends object>(
  w: World,
  sql: string,
  p: Record<string, string | number> = {},
): Promise<R[]> => w.store.read("test.rows", (r) => r.all<R>(sql, p));

/** Everything A can have: a card, a device with token/key, its node and budget log, a job, presence, exchanges. */
async function seed(w: World): Promise<void> {
  for (const [jid, fn] of [
    [A, "Alice"],
    [B, "Bob"],
    [C, "Carol"],
    [F, "Frank"],
  ] as const) {
    await storeCard(w.core, jid, card(fn));
  }
  // A ↔ B by code, A ↔ C by request, A ↔ F then unbound (F's `unbound` about A waits, undelivered).
  const code = await w.svc.createCode(A);
  await w.svc.redeemCode(B, code.code);
  const q = await w.svc.requestExchange(A, C);
  await w.svc.answerRequest(C, q.id, true);
  const q2 = await w.svc.requestExchange(F, A);
  await w.svc.answerRequest(A, q2.id, true);
  await w.svc.unbind(A, F);
  // Pending both ways, a live code, A's block, G's block of A.
  await w.svc.requestExchange(A, D);
  await w.svc.requestExchange(H, A);
  await w.svc.createCode(A);
  await w.svc.block(A, E);
  await w.svc.block(G, A);
  await setShare(w.core.uow, A, B, { fields: ["fn", "tel"] });

  await w.core.uow("test.device", async (u) => {
    const a = await u.accounts.ensure(A, { seen: true });
    const d = await u.accounts.upsertDevice(
      a,
      { deviceId: "phone", platform: "ios", name: "Alice's phone", pushToken: TOKEN, pushKey: PUSH_KEY },
      10,
    );
    if (d === "over-limit") throw new Error("unreachable");
    await pushRepo(u.tx).upsertNode({ node: "node-a", device: d.key, secret: NODE_SECRET }, u.now);
    await pushRepo(u.tx).recordSends([TOKEN], u.now);
    await insertJob(u.tx, a, d.key, u.now);
    await u.tx.run(
      "INSERT INTO resources (full_jid, account_id, device, process, since) VALUES (:f, :a, NULL, 'p1', :now)",
      { f: `${A}/phone`, a, now: u.now },
    );
    await u.tx.run("INSERT INTO subscribers (account_id, since) VALUES (:a, :now)", { a, now: u.now });
    // Update requests (PROTOCOL §20.11): A asked D (open), H asked A (declined).
    const dave = await u.accounts.ensure(D);
    const hugo = await u.accounts.ensure(H);
    const rq = `INSERT INTO book_requests (id, owner, target, entry, form, state, hidden, created_at, expires_at,
      closed_at) VALUES (:id, :o, :t, 'e', 'form', :state, 0, :now, :now, :closed)`;
    await u.tx.run(rq, { id: "rq-1", o: a, t: dave, state: "open", now: u.now, closed: null });
    await u.tx.run(rq, { id: "rq-2", o: hugo, t: a, state: "declined", now: u.now, closed: u.now });
  });
}

async function insertJob(
  tx: { run(sql: string, p: Record<string, string | number>): Promise<unknown> },
  a: AccountId,
  device: DeviceKey,
  now: number,
): Promise<void> {
  await tx.run(
    `INSERT INTO jobs (channel, kind, target, account_id, device, ckey, body, uid, created_at)
     VALUES ('push', 'silent', :target, :a, :d, 'ref-1', :body, 'uid-1', :now)`,
    {
      target: `device:${device}`,
      a,
      d: device,
      body: JSON.stringify({ platform: "ios", token: TOKEN, kind: "silent", data: { ref: "ref-1" } }),
      now,
    },
  );
}

/** Row count of every table: the whole database's state, compared before and after. */
async function counts(w: World): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  for (const { name } of await all<{ name: string }>(
    w,
    "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name",
  ))
    out[name] = Number((await all<{ n: number }>(w, `SELECT count(*) AS n FROM "${name}"`))[0]?.n);
  return out;
}

/** What tells a kept row apart in the scan below. */
function label(table: string, row: Record<string, unknown>): string {
  const by: Record<string, unknown> = {
    accounts: row.state,
    identifiers: row.value,
    stream_cursors: row.consumer,
    stream_entries: row.kind,
  };
  return by[table] === undefined ? "" : String(by[table]);
}

describe("userdata on schema 2000 (features/userdata)", function () {
  let w: World;

  beforeEach(async () => {
    w = await world();
    await seed(w);
  });
  afterEach(async () => {
    await w.store.close();
    rmSync(w.dir, { recursive: true, force: true });
  });

  describe("buildExport", () => {
    let doc: ExportDoc;
    beforeEach(async () => {
      doc = await buildExport(w.core.read, A, Date.UTC(2026, 11, 2));
    });

    it("keeps the document's frame: format, jid, exportedAt, every table, vcf", () => {
      expect(doc.format).to.equal("urn:cardlink:export:0");
      expect(doc.jid).to.equal(A);
      expect(doc.exportedAt).to.equal("2026-12-02T00:00:00.000Z");
      expect(Object.keys(doc.tables)).to.deep.equal(USER_TABLES.map((t) => t.name));
      expect(isEmptyExport(doc)).to.equal(false);
    });

    it("holds the user's rows in every table, with JIDs next to account ids", async () => {
      const a = await idOf(w, A);
      const t = doc.tables;
      expect(t.accounts).to.have.length(1);
      expect(t.accounts?.[0]).to.include({ id: a, jid: A, state: "active" });
      expect(t.identifiers?.map((r) => r.value)).to.deep.equal([A]);
      expect(t.cards).to.have.length(1);
      expect((t.cards?.[0]?.card as Card).fn).to.equal("Alice");
      expect(t.cards?.[0]?.account_jid).to.equal(A);
      const peers = (t.bindings ?? []).map((r) => (r.a_jid === A ? r.b_jid : r.a_jid)).sort();
      expect(peers).to.deep.equal([B, C]);
      expect(t.bindings?.[0]?.a_devices).to.be.an("array");
      expect(t.shares).to.have.length(4);
      const toB = t.shares?.find((r) => r.owner_jid === A && r.holder_jid === B);
      expect(toB?.policy).to.deep.equal({ fields: ["fn", "tel"] });
      expect(t.blocks?.map((r) => r.blocked_jid)).to.deep.equal([E]); // not G's block of A
      expect(
        (t.exchange_requests ?? [])
          .map((r) => (r.from_jid === A ? `to ${String(r.to_jid)}` : `from ${String(r.from_jid)}`))
          .sort(),
      ).to.deep.equal([`from ${H}`, `to ${D}`]);
      expect(t.exchange_codes).to.have.length(1);
      expect(
        (t.book_requests ?? []).map(
          (r) => `${String(r.id)} ${String(r.owner_jid)} → ${String(r.target_jid)}`,
        ),
      ).to.deep.equal([`rq-1 ${A} → ${D}`, `rq-2 ${H} → ${A}`]);
      expect(t.devices).to.have.length(1);
      expect(t.resources?.map((r) => r.full_jid)).to.deep.equal([`${A}/phone`]);
      expect(t.subscribers).to.have.length(1);
      expect(t.stream_cursors?.map((r) => r.consumer)).to.deep.equal([0]);
      expect(t.jobs).to.have.length(1);
      expect(t.push_nodes).to.have.length(1);
      expect(t.push_sends).to.have.length(1);
      // F's undelivered `unbound` about A is about A: exported, with both JIDs readable.
      const unbound = t.stream_entries?.find((r) => r.kind === "unbound" && r.account_jid === F);
      expect(unbound?.subject_jid).to.equal(A);
      // Times as ISO 8601.
      expect(t.cards?.[0]?.updated_at).to.equal("2023-11-14T22:13:20.000Z");
    });

    it("redacts secrets: push token (device, budget log, job body), push key, node secret", () => {
      const text = JSON.stringify(doc);
      const leak = text.indexOf("SECRET");
      expect(leak, text.slice(Math.max(0, leak - 300), leak + 50)).to.equal(-1);
      const dev = doc.tables.devices?.[0];
      expect(dev?.push_token).to.equal(`…${TOKEN.slice(-6)} (${TOKEN.length} chars, redacted)`);
      expect(dev?.push_key).to.equal("(set, redacted)");
      expect(doc.tables.push_nodes?.[0]?.secret).to.equal("(set, redacted)");
      expect(doc.tables.push_sends?.[0]?.token).to.equal(dev?.push_token);
      const body = doc.tables.jobs?.[0]?.body as Record<string, unknown>;
      expect(body.token).to.equal(dev?.push_token);
      expect(body.platform).to.equal("ios");
    });

    it("carries the own card and the held cards as each is seen (.vcf)", () => {
      expect(doc.vcf.card).to.include("FN:Alice");
      expect(doc.vcf.book.map((b) => b.owner)).to.deep.equal([B, C]);
      expect(doc.vcf.book[0]?.vcf).to.include("FN:Bob");
    });

    it("an unknown JID exports every table empty", async () => {
      const none = await buildExport(w.core.read, "nobody@a.example");
      expect(isEmptyExport(none)).to.equal(true);
      expect(Object.values(none.tables).every((r) => r.length === 0)).to.equal(true);
    });
  });

  describe("deleteAccount", () => {
    it("removes every row of the user, counts them, and tells every holder with `unbound`", async () => {
      const a = await idOf(w, A);
      const before = await buildExport(w.core.read, A);
      const r = await deleteAccount(w.core.uow, A);
      expect(r.peers).to.deep.equal([B, C, F].sort());
      expect(r.rows).to.include({
        cards: 1,
        devices: 1,
        bindings: 2,
        shares: 4,
        blocks: 1,
        exchange_requests: 2,
        exchange_codes: 1,
        book_requests: 2,
        resources: 1,
        subscribers: 1,
        jobs: 1,
        push_nodes: 1,
        push_sends: 1,
        accounts: 0,
        identifiers: 0,
      });
      // Every row of the export but the skeleton and F's kept notice went, and the total is their sum.
      const kept = 1 + 1 + 1 + 1; // accounts, primary identifier, shared cursor, F's unbound
      const exported = Object.values(before.tables).reduce((n, t) => n + t.length, 0);
      expect(r.deleted).to.equal(Object.values(r.rows).reduce((n, x) => n + x, 0));
      expect(r.deleted).to.equal(exported - kept);

      // Holders B and C got an `unbound` about A, rendered with A's JID; F's earlier one is still there.
      for (const holder of [B, C, F]) {
        const pending = await inspect.pending(w.store, holder);
        const ub = pending.filter((p) => p.kind === "unbound" && p.subjectAccount === a);
        expect(ub, holder).to.have.length(1);
        expect(ub[0]?.subject).to.equal(A);
        expect(ub[0]?.id).to.match(new RegExp(`^unbound:${A}:\\d+$`));
        // No card or binding entry about A is left for them.
        expect(pending.filter((p) => p.kind === "card" && p.subjectAccount === a)).to.deep.equal([]);
      }
      // D's incoming request from A is withdrawn with its notice.
      expect((await inspect.pending(w.store, D)).filter((p) => p.kind === "exchange-request")).to.deep.equal(
        [],
      );
    });

    it("leaves no row naming the account in any table but the skeleton, holders' notices and G's block", async () => {
      const a = await idOf(w, A);
      await deleteAccount(w.core.uow, A);
      const tables = await all<{ name: string }>(
        w,
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name",
      );
      const refs = [
        "account_id",
        "a",
        "b",
        "owner",
        "holder",
        "blocked",
        "from_account",
        "to_account",
        "subject_account",
        "id",
      ];
      const found: string[] = [];
      for (const { name } of tables) {
        const cols = (await all<{ name: string }>(w, `SELECT name FROM pragma_table_info('${name}')`)).map(
          (c) => c.name,
        );
        for (const col of cols.filter((c) => refs.includes(c) && (c !== "id" || name === "accounts"))) {
          const rows = await all<Record<string, unknown>>(w, `SELECT * FROM ${name} WHERE ${col} = :a`, {
            a,
          });
          for (const row of rows) found.push(`${name}.${col}:${label(name, row)}`);
        }
      }
      expect(found.sort()).to.deep.equal(
        [
          "accounts.id:deleted",
          "blocks.blocked:", // G's block of A: G's data
          "identifiers.account_id:" + A,
          "stream_cursors.account_id:0",
          "stream_entries.subject_account:unbound",
          "stream_entries.subject_account:unbound",
          "stream_entries.subject_account:unbound",
        ].sort(),
      );
      // The push secrets went too: no budget log, no node.
      expect(await all(w, "SELECT * FROM push_sends")).to.deep.equal([]);
      expect(await all(w, "SELECT * FROM push_nodes")).to.deep.equal([]);
      // What remains exports as that: the skeleton and the holders' notices about the user (as the old outbox
      // rows with subject = JID were exported after a deletion).
      const left = await buildExport(w.core.read, A);
      const nonEmpty = Object.entries(left.tables).filter(([, rows]) => rows.length > 0);
      expect(nonEmpty.map(([t, rows]) => `${t} ${rows.length}`)).to.deep.equal([
        "accounts 1",
        "identifiers 1",
        "stream_entries 3",
        "stream_cursors 1",
      ]);
      expect(left.vcf).to.deep.equal({ card: null, book: [] });
    });

    it("a second deletion deletes nothing; the JID can come back and is reactivated in place", async () => {
      const a = await idOf(w, A);
      await deleteAccount(w.core.uow, A);
      const again = await deleteAccount(w.core.uow, A);
      expect(again.deleted).to.equal(0);
      // F's and B's/C's notices stay pending: still told.
      expect(again.peers).to.deep.equal([B, C, F].sort());
      expect((await inspect.account(w.store, A))?.state).to.equal("deleted");
      w.clock.t += 2 * 3_600_000; // past the seen_at throttle
      await storeCard(w.core, A, card("Alice Again"));
      const back = await inspect.account(w.store, A);
      expect(back?.id).to.equal(a);
      expect(back?.state).to.equal("active");
      expect((await buildExport(w.core.read, A)).tables.cards).to.have.length(1);
    });

    it("an unknown JID deletes nothing and tells nobody", async () => {
      const r = await deleteAccount(w.core.uow, "nobody@a.example");
      expect(r).to.deep.equal({ deleted: 0, rows: {}, peers: [] });
    });

    // Ported from test/unit/userdata.test.ts (legacy Store.deleteUser): a failure at the last step, after every
    // DELETE ran, leaves the whole database as it was. The legacy last step was writing the notices; here the unit
    // of work fails after deleteAccount's last statement (the features' rows, the `unbound` notices and the
    // runtime rows all written or deleted).
    it("a failure at the last step, after every DELETE ran, leaves every table as it was", async () => {
      const a = await idOf(w, A);
      const before = await counts(w);
      expect(before.cards).to.equal(4);
      const failing: Uow = (name, fn) =>
        w.core.uow(name, async (u) => {
          await fn(u);
          const left = await u.tx.all("SELECT account_id FROM cards WHERE account_id = :a", { a });
          expect(left, "the card was deleted in this unit of work").to.deep.equal([]);
          throw new Error("fails after the last step");
        });
      let failed: unknown;
      await deleteAccount(failing, A).catch((e: unknown) => (failed = e));
      expect(String(failed)).to.match(/fails after the last step/);
      expect(await counts(w)).to.deep.equal(before);
      const doc = await buildExport(w.core.read, A);
      expect(doc.tables.cards).to.have.length(1);
      expect((doc.tables.bindings ?? []).map((r) => (r.a_jid === A ? r.b_jid : r.a_jid))).to.include(B);
    });

    // Ported from test/unit/userdata.test.ts: a throwing in-tx step (there the notify callback, here an
    // `account.deleting` handler) writes nothing in any table; the retry then deletes and tells the holders.
    it("a handler that throws writes nothing in any table; the retry deletes and tells every holder", async () => {
      const a = await idOf(w, A);
      const before = await counts(w);
      let fail = true;
      let seen: AccountId | undefined;
      w.core.events.onTx("account.deleting", (_u, e) => {
        seen = e.account;
        if (fail) throw new Error("no");
      });
      await deleteAccount(w.core.uow, A).catch(() => undefined);
      expect(seen).to.equal(a);
      expect(await counts(w)).to.deep.equal(before);
      fail = false;
      const r = await deleteAccount(w.core.uow, A);
      expect(r.peers).to.deep.equal([B, C, F].sort());
      expect(r.rows).to.include({ cards: 1, devices: 1, bindings: 2, shares: 4, blocks: 1 });
      for (const holder of [B, C]) {
        const pending = await inspect.pending(w.store, holder);
        expect(
          pending.filter((p) => p.kind === "unbound" && p.subjectAccount === a),
          holder,
        ).to.have.length(1);
      }
    });

    it("rolls back entirely when a handler fails", async () => {
      w.core.events.onTx("account.deleting", () => {
        throw new Error("boom");
      });
      const before = await buildExport(w.core.read, A, 0);
      let failed = false;
      try {
        await deleteAccount(w.core.uow, A);
      } catch (e) {
        failed = (e as Error).message === "boom";
      }
      expect(failed).to.equal(true);
      expect(await buildExport(w.core.read, A, 0)).to.deep.equal(before);
    });
  });

  describe("cardlink stats / export-user / delete-user on a schema-2000 database (ctl.ts)", () => {
    const saved = { ...process.env };
    let out: string[];
    let err: string[];
    const io: Io = { out: (l) => out.push(l), err: (l) => err.push(l) };
    beforeEach(() => {
      out = [];
      err = [];
      process.env.CARDLINK_SECRET = "s";
      process.env.CARDLINK_DB = path.join(w.dir, "store.sqlite");
    });
    afterEach(() => {
      for (const k of ["CARDLINK_SECRET", "CARDLINK_DB"]) {
        if (saved[k] === undefined) delete process.env[k];
        else process.env[k] = saved[k];
      }
    });

    it("stats --json counts the new tables in the legacy shape", async () => {
      expect(await cli(["stats", "--json"], io), err.join("\n")).to.equal(0);
      const s = JSON.parse(out.join("\n")) as Record<string, unknown>;
      // The world's store carries the feature modules' migrations too (as a running cardlink's does).
      const schema = Math.max(SCHEMA_2000.version, ...moduleMigrations().map((m) => m.version));
      expect(s).to.include({ schema, usersWithCards: 4, bindings: 2, shares: 4, blocks: 2 });
      expect(s.devices).to.deep.equal({ ios: 1 });
      // Counted against the real clock: the world's requests and codes (seeded in 2023) expired long ago.
      expect(s).to.include({ exchangeRequestsPending: 0, exchangeCodesLive: 0 });
      expect(s.pushQueue).to.have.keys("ios");
      expect(Object.keys(s.outbox as object)).to.include.members([
        "card",
        "binding",
        "unbound",
        "exchange-request",
      ]);
      out = [];
      expect(await cli(["stats"], io)).to.equal(0);
      expect(out[0]).to.match(new RegExp(`^database {12}.*store\\.sqlite \\(schema ${schema}\\)$`));
    });

    it("export-user prints the document; delete-user --yes erases and names the holders told", async () => {
      expect(await cli(["export-user", A], io), err.join("\n")).to.equal(0);
      const doc = JSON.parse(out.join("\n")) as ExportDoc;
      expect(doc.jid).to.equal(A);
      expect(doc.tables.cards).to.have.length(1);
      out = [];
      expect(await cli(["delete-user", A, "--yes"], io), err.join("\n")).to.equal(0);
      expect(out[0]).to.match(new RegExp(`^deleted \\d+ rows about ${A} \\(.*cards 1.*\\)$`));
      expect(out[1]).to.match(/^3 holder\(s\) get an unbind notice/);
      expect((await inspect.account(w.store, A))?.state).to.equal("deleted");
      out = [];
      expect(await cli(["delete-user", "nobody@a.example", "--yes"], io)).to.equal(1);
      expect(err.at(-1)).to.equal("cardlink: nothing is stored about nobody@a.example; nothing deleted");
      expect(await cli(["export-user", "nobody@a.example"], io)).to.equal(1);
      expect(err.at(-1)).to.equal("cardlink: nothing is stored about nobody@a.example");
    });

    it("delete-user lists the tables in the legacy command's order, the new tables last", async () => {
      expect(await cli(["delete-user", A, "--yes"], io), err.join("\n")).to.equal(0);
      const per = /\((.*)\)$/.exec(out[0] ?? "")?.[1] ?? "";
      const tables = per.split(", ").map((x) => x.split(" ")[0]);
      // The 2000 counterparts of the old tables in the old order (outbox, shares, bindings, …, cards, …, devices,
      // resources, subscribers), then the tables the old schema lacked.
      expect(tables).to.deep.equal([
        "stream_entries",
        "shares",
        "bindings",
        "tombstones",
        "cards",
        "blocks",
        "exchange_requests",
        "exchange_codes",
        "push_nodes",
        "jobs",
        "push_sends",
        "devices",
        "resources",
        "subscribers",
        "book_requests",
      ]);
    });
  });

  describe("the modules' ad-hoc commands (userdata, admin)", () => {
    let cmds: Command[];
    let kicked: { lanes: Id[]; channels: string[] };
    beforeEach(() => {
      cmds = [];
      kicked = { lanes: [], channels: [] };
      // Just the parts of a Runtime these two modules use (attach registers commands, the commands read,
      // write, count and kick); the rest of the runtime is not built in a unit test.
      const rt = {
        uow: w.core.uow,
        read: w.core.read,
        budget: new StanzaBudget(256 * 1024),
        log: pino({ level: "silent" }),
        metrics: { describe: () => undefined, inc: () => undefined },
        router: { iq: () => undefined },
        adhoc: { register: (c: Command) => cmds.push(c) },
        queue: {
          kickLanes: (l: readonly Id[]) => kicked.lanes.push(...l),
          kickChannel: (c: string) => kicked.channels.push(c),
          // The engine's replay is this unit of work plus a kick; the kick is what this stub leaves out.
          replayDeadLetters: (which: { ids: readonly number[] } | { channel: string }) =>
            w.core.uow("replay", (u) => jobsRepo(u.tx).replayMany(which, u.now)).then((r) => r.n),
        },
      } as unknown as Runtime;
      userdataModule().attach(rt);
      adminModule().attach(rt);
    });
    const node = (n: string): Command => {
      const c = cmds.find((x) => x.node === `urn:cardlink:cmd:${n}`);
      if (!c) throw new Error(n);
      return c;
    };
    const ctx = (user: string) => {
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
    const run = (n: string, user: string, fields: Record<string, string | string[]>): Promise<CommandStep> =>
      Promise.resolve(node(n).run(ctx(user), submit(fields), { stage: 1 }));
    const field = (s: CommandStep, v: string): string[] =>
      s.form ? (parseForm(s.form).values.get(v) ?? []) : [];

    it("registers the same nodes as today", () => {
      expect(cmds.map((c) => c.node).sort()).to.deep.equal(
        [
          "urn:cardlink:cmd:export-data",
          "urn:cardlink:cmd:delete-data",
          ...["user", "export-user", "delete-user", "queues", "dead-letters", "stuck"].map(
            (n) => `urn:cardlink:cmd:admin-${n}`,
          ),
        ].sort(),
      );
    });

    it("admin-user shows the account from the new tables", async () => {
      const s = await run("admin-user", "admin@a.example", { accountjid: A });
      expect(field(s, "card")).to.deep.equal(["version 1, Alice"]);
      expect(field(s, "devices")).to.deep.equal([`phone ios "Alice's phone" push ok`]);
      expect(field(s, "bindings")).to.deep.equal(["2"]);
      expect(field(s, "holders")).to.deep.equal(["2"]);
      expect(field(s, "blocks")).to.deep.equal(["1"]);
      expect(field(s, "requests")).to.deep.equal(["1 / 1"]);
      expect(field(s, "resources")).to.deep.equal(["1"]);
      expect(field(s, "push")[0]).to.match(/^1 waiting, 0 retrying \(most attempts 0\), oldest /);
      const none = await run("admin-user", "admin@a.example", { accountjid: "nobody@a.example" });
      expect(field(none, "card")).to.deep.equal(["none"]);
      expect(field(none, "outbox")).to.deep.equal(["empty"]);
    });

    it("admin-stuck re-delivers (kicks) and drops a user's lane entries and push jobs", async () => {
      const f = await idOf(w, F);
      const re = await run("admin-stuck", "admin@a.example", {
        accountjid: F,
        action: "redeliver",
        queues: "outbox",
      });
      expect(re.notes?.[0]?.text).to.match(
        new RegExp(`^Re-delivering [1-9]\\d* outbox entries and 0 push notices of ${F}\\.$`),
      );
      expect(kicked.lanes).to.deep.equal([f]);
      const drop = await run("admin-stuck", "admin@a.example", {
        accountjid: A,
        action: "drop",
        queues: ["outbox", "push"],
      });
      expect(drop.notes?.[0]?.text).to.match(/ and 1 push notices of alice@a\.example\.$/);
      expect(await inspect.pendingCount(w.store, A)).to.equal(0);
      expect(await inspect.jobCount(w.store, "push", A)).to.equal(0);
    });

    it("admin-dead-letters lists dead letters and replays the chosen ones with their uid", async () => {
      const empty = await node("admin-dead-letters").run(
        ctx("admin@a.example"),
        { node: "n", action: "execute" },
        undefined,
      );
      expect(empty.notes?.[0]?.text).to.equal("No dead letters.");
      const a = await idOf(w, A);
      await w.store.tx("seed-dead", async (tx) => {
        for (const [uid, target] of [
          ["u-1", "chat"],
          ["u-2", "mail"],
        ] as const)
          await tx.run(
            `INSERT INTO dead_letters (channel, kind, target, account_id, body, uid, attempts, last_error, created_at, died_at)
             VALUES ('webhook', 'linked.sync', :target, :a, '{}', :uid, 8, 'HTTP 500: down', :now, :now)`,
            { target, a, uid, now: tx.now },
          );
      });
      const form = await node("admin-dead-letters").run(
        ctx("admin@a.example"),
        { node: "n", action: "execute" },
        undefined,
      );
      const lines = field(form, "letters");
      expect(lines).to.have.length(2);
      expect(lines[0]).to.match(
        /^#\d+ \d+ (s|min|h|d) ago webhook\/linked\.sync → chat \(alice@a\.example\), 8 attempt\(s\): HTTP 500: down$/,
      );
      const ids = form.form
        ?.getChildren("field")
        .find((f) => f.attrs.var === "replay")
        ?.getChildren("option")
        .map((o) => o.getChildText("value") ?? "");
      expect(ids).to.have.length(2);
      const none = await run("admin-dead-letters", "admin@a.example", {});
      expect(none.notes?.[0]?.text).to.equal("Nothing replayed: no letter was chosen.");
      const bad = await run("admin-dead-letters", "admin@a.example", { replay: ["x"] }).catch(
        (e: unknown) => e,
      );
      expect((bad as { condition?: string }).condition).to.equal("bad-request");
      const done = await run("admin-dead-letters", "admin@a.example", {
        replay: [ids?.[1] as string, "99999"],
      });
      expect(done.notes?.[0]?.text).to.equal("Replayed 1 dead letter(s) (1 were gone).");
      const left = await inspect.deadLetterList(w.store);
      expect(left.map((d) => d.uid)).to.deep.equal(["u-1"]);
      const jobs = await w.store.read("jobs", (r) =>
        r.all<{ uid: string; target: string }>("SELECT uid, target FROM jobs WHERE channel = 'webhook'"),
      );
      expect(jobs).to.deep.equal([{ uid: "u-2", target: "mail" }]);
    });

    it("admin-queues lists the stream per kind and push per platform", async () => {
      const s = await node("admin-queues").run(
        ctx("admin@a.example"),
        { node: "n", action: "execute" },
        undefined,
      );
      const outbox = field(s, "outbox");
      expect(outbox.join("\n")).to.match(/^unbound: 2 entries for 2 users, 0 retrying, oldest /m);
      expect(field(s, "push")).to.have.length(1);
      expect(field(s, "push")[0]).to.match(/^ios: 1 notices for 1 users, 0 retrying, oldest /);
    });

    it("delete-data (self) and admin-delete-user erase through the unit of work, with today's texts", async () => {
      const wrong = await run("delete-data", A, { confirm: B });
      expect(wrong.notes?.[0]).to.deep.equal({
        type: "warn",
        text: `Nothing deleted: the confirmation was not ${A}.`,
      });
      const ok = await run("delete-data", A, { confirm: ` ${A.toUpperCase()} ` });
      expect(ok.notes?.[0]?.text).to.match(
        /^Deleted \d+ records; 3 contact\(s\) are told you removed your card\.$/,
      );
      const unchecked = await run("admin-delete-user", "admin@a.example", { accountjid: B, confirm: "0" });
      expect(unchecked.notes?.[0]?.text).to.equal("Nothing deleted: confirm was not checked.");
      const admin = await run("admin-delete-user", "admin@a.example", { accountjid: B, confirm: "1" });
      expect(admin.notes?.[0]?.text).to.match(
        new RegExp(`^Deleted \\d+ records of ${B}; 0 holder\\(s\\) are told \\(unbind\\)\\.$`),
      );
      const none = await run("admin-delete-user", "admin@a.example", {
        accountjid: "nobody@a.example",
        confirm: "1",
      });
      expect(none.notes?.[0]?.text).to.equal(
        "cardlink held nothing about nobody@a.example; nothing deleted.",
      );
    });
  });
});
