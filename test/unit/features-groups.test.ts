/**
 * component/features/groups/ (issue 10, first part) over a real temp SQLite store with schema 2000 + migration
 * 3100 and the real runtime parts wired as the CLI's offline core wires them (every module's kinds, paths and
 * erase handlers): the rules of service.ts, the `group` audience path with the card fan-out, closing with
 * tombstones, the union with a direct binding, account deletion and export, and the statements an accept costs
 * (counted by a wrapper around the store's transactions) for groups of 10 and 1,000 members.
 */
import { expect } from "chai";
import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { pino } from "pino";
import { cardForViewer, storeCard } from "../../component/features/cards/service.js";
import { ExchangeService } from "../../component/features/exchange/service.js";
import { GroupsService, hideBlockedInvitations } from "../../component/features/groups/service.js";
import { buildExport, deleteAccount } from "../../component/features/userdata/export.js";
import { moduleMigrations, userDataWiring } from "../../component/features.js";
import { offlineCore, type OfflineCore } from "../../component/runtime/offline.js";
import { StanzaBudget } from "../../component/runtime/budget.js";
import { StanzaError } from "../../stanzas/errors.js";
import { normalizeCard, type Card } from "../../stanzas/model/card.js";
import type { SharePolicy } from "../../stanzas/model/policy.js";
import type { Element } from "../../stanzas/xml.js";
import { SCHEMA_2000 } from "../../storage/sqlite/schema-2000.js";
import { SqliteStore } from "../../storage/sqlite/store.js";
import type { AccountId, Store, Tx } from "../../storage/store.js";

const A = "alice@a.example";
const B = "bob@a.example";
const C = "carol@a.example";
const D = "dave@a.example";
const X = "xavier@a.example"; // never used cardlink

const card = (fn: string): Card =>
  normalizeCard({
    fn,
    nickname: [],
    tel: [{ key: "", types: ["work"], uri: `tel:+44-20-${fn.length}` }],
    email: [{ key: "", types: ["home"], value: `${fn.toLowerCase()}@home.example` }],
    adr: [],
    url: [],
    impp: [],
    categories: [],
  });

interface World {
  store: Store;
  core: OfflineCore;
  groups: GroupsService;
  exchange: ExchangeService;
  clock: { t: number };
  /** Statements run by units of work since the last reset (run/get/all/seq through the counting wrapper). */
  counter: { n: number; on: boolean };
  dir: string;
}

const OPTS = {
  servedHosts: ["a.example"],
  maxMembers: 5000,
  ownedPerUser: 3,
  joinedPerUser: 4,
  pendingInvitationsPerGroup: 3,
  invitationTtlMs: 86_400_000,
  exemptionsPerUser: 2,
  pollMinSeconds: 60,
  pollMaxSeconds: 86_400,
  codeTtlMs: 86_400_000,
  codesPerUser: 2,
  redeem: { failuresPerUser: 3, failuresPerHost: 100, windowMs: 600_000, maxKeys: 1000 },
};

/** Counts the statements a unit of work runs: a Proxy over its Tx. */
function counting(tx: Tx, c: { n: number; on: boolean }): Tx {
  return new Proxy(tx, {
    get(t, k) {
      const v: unknown = Reflect.get(t, k, t);
      if (typeof v !== "function") return v;
      const f = v as (...a: unknown[]) => unknown;
      if (k === "run" || k === "get" || k === "all" || k === "seq" || k === "lockAccount")
        return (...a: unknown[]) => {
          if (c.on) c.n++;
          if (c.on && process.env.GROUPS_TRACE)
            console.log(String(k), String(a[0]).slice(0, 80).replace(/\s+/g, " "));
          return f.apply(t, a);
        };
      return f.bind(t);
    },
  });
}

async function world(o: Partial<typeof OPTS> = {}): Promise<World> {
  const dir = mkdtempSync(path.join(os.tmpdir(), "cardlink-groups-"));
  const clock = { t: 1_700_000_000_000 };
  const store = new SqliteStore(path.join(dir, "store.sqlite"), {
    legacy: false,
    clock: () => clock.t,
    log: pino({ level: "silent" }),
  });
  await store.migrate([SCHEMA_2000, ...moduleMigrations()]);
  const counter = { n: 0, on: false };
  const wrapped: Pick<Store, "tx" | "read"> = {
    tx: (name, fn) => store.tx(name, (tx) => fn(counting(tx, counter))),
    read: (name, fn) => store.read(name, fn),
  };
  const core = offlineCore(wrapped, userDataWiring());
  core.events.onTx("exchange.blocked", hideBlockedInvitations);
  const groups = new GroupsService({ uow: core.uow, read: core.read, ...OPTS, ...o, clock: () => clock.t });
  const exchange = new ExchangeService({
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
  return { store, core, groups, exchange, clock, counter, dir };
}

const rows = <R extends object>(
  w: World,
  sql: string,
  p: Record<string, string | number> = {},
): Promise<R[]> => w.store.read("test.rows", (r) => r.all<R>(sql, p));
const idOf = async (w: World, jid: string): Promise<AccountId> =>
  (await w.core.read("test.id", (r) => r.accounts.resolve(jid))) as AccountId;
/** Every table's row count: a refused request must leave all of them as they were. */
async function snapshot(w: World): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  for (const t of [
    "accounts",
    "groups",
    "group_members",
    "group_invitations",
    "stream_entries",
    "tombstones",
    "payloads",
    "group_exemptions",
    "group_codes",
    "group_deleted_members",
  ]) {
    out[t] = Number((await rows<{ n: number }>(w, `SELECT COUNT(*) AS n FROM ${t}`))[0]?.n);
  }
  out.seq = Number(
    (await rows<{ v: number }>(w, "SELECT value AS v FROM counters WHERE name = 'seq'"))[0]?.v,
  );
  return out;
}
async function refused(
  w: World,
  p: Promise<unknown>,
  condition: string,
  type?: string,
): Promise<StanzaError> {
  const before = await snapshot(w);
  try {
    await p;
  } catch (e) {
    expect(e, String(e)).to.be.instanceOf(StanzaError);
    const err = e as StanzaError;
    expect(err.condition, err.message).to.equal(condition);
    if (type) expect(err.type).to.equal(type);
    expect(err.message).to.not.equal("");
    expect(await snapshot(w), "a refused request writes nothing").to.deep.equal(before);
    return err;
  }
  throw new Error(`expected ${condition}`);
}
const entries = (w: World, jid: string, kind?: string) =>
  idOf(w, jid).then((id) =>
    rows<{ kind: string; subject: string; subject_account: number | null }>(
      w,
      `SELECT kind, subject, subject_account FROM stream_entries WHERE account_id = :id ${kind ? "AND kind = :kind" : ""} ORDER BY seq, ord`,
      kind ? { id, kind } : { id },
    ),
  );
const groupId = (el: Element): string => el.attrs.id as string;
async function join(w: World, g: string, by: string, who: string, policy: SharePolicy | null = null) {
  const inv = await w.groups.invite(by, g, who);
  return w.groups.accept(who, inv.id, policy);
}

describe("features/groups", () => {
  let w: World;
  afterEach(async () => {
    await w.store.close();
    rmSync(w.dir, { recursive: true, force: true });
  });

  describe("groups, roles and caps", () => {
    beforeEach(async () => {
      w = await world();
    });

    it("create makes the creator the owner and only member; names are checked", async () => {
      const el = await w.groups.create(A, "  Family  ", "the Smiths", "admins", null);
      expect(el.name).to.equal("group");
      expect(el.attrs).to.include({
        name: "Family",
        role: "owner",
        owner: A,
        invite: "admins",
        members: "1",
      });
      expect(el.getChildText("description")).to.equal("the Smiths");
      const m = await rows<{ role: string }>(w, "SELECT role FROM group_members WHERE group_id = :g", {
        g: groupId(el),
      });
      expect(m).to.deep.equal([{ role: "owner" }]);
      await refused(w, w.groups.create(A, "   ", "", "admins", null), "bad-request");
      await refused(w, w.groups.create(A, "x".repeat(101), "", "admins", null), "bad-request");
      await refused(w, w.groups.create(A, "a\u0007b", "", "admins", null), "bad-request");
    });

    it("caps: groups owned and joined per user, members per group, pending invitations per group", async () => {
      for (let i = 0; i < 3; i++) await w.groups.create(A, `g${i}`, "", "admins", null);
      const e1 = await refused(
        w,
        w.groups.create(A, "g3", "", "admins", null),
        "resource-constraint",
        "cancel",
      );
      expect(e1.message).to.match(/own 3 groups/);
      // B joins A's three groups and creates one: four joined, the cap.
      const gs = (await w.groups.groups(A)).map((m) => m.group.id);
      for (const g of gs) await join(w, g, A, B);
      await w.groups.create(B, "b0", "", "admins", null);
      const e2 = await refused(
        w,
        w.groups.create(B, "b1", "", "admins", null),
        "resource-constraint",
        "cancel",
      );
      expect(e2.message).to.match(/in 4 groups/);
      const g5 = (await w.groups.groups(B)).find((m) => m.group.name === "b0")?.group.id as string;
      const inv = await w.groups.invite(B, g5, C);
      await w.groups.invite(B, g5, D);
      await w.groups.invite(B, g5, X);
      await refused(w, w.groups.invite(B, g5, "erin@a.example"), "resource-constraint", "wait");
      // C is at the joined cap: accepting is refused and the invitation stays.
      for (let i = 0; i < 4; i++)
        await w.groups.create(C, `c${i}`, "", "admins", null).catch(() => undefined);
      const cg = await w.groups.groups(C);
      expect(cg.length).to.equal(3); // C owns 3 (its owned cap), joined 3
      const g6 =
        (await w.groups.groups(D)).length === 0
          ? (await w.groups.create(D, "d", "", "admins", null)).attrs.id
          : "";
      await join(w, g6 as string, D, C);
      await refused(w, w.groups.accept(C, inv.id, null), "resource-constraint", "cancel");
    });

    it("members per group: an invitation or an acceptance past maxMembers is refused", async () => {
      w = await world({ maxMembers: 2 });
      const g = groupId(await w.groups.create(A, "pair", "", "members", null));
      const invC = await w.groups.invite(A, g, C);
      await join(w, g, A, B);
      await refused(w, w.groups.invite(A, g, D), "resource-constraint", "cancel");
      await refused(w, w.groups.accept(C, invC.id, null), "resource-constraint", "cancel");
    });

    it("who may invite: owner / admins / members; roles; remove; transfer; leave; delete", async () => {
      const g = groupId(await w.groups.create(A, "club", "", "owner", null));
      await join(w, g, A, B);
      await refused(w, w.groups.invite(B, g, C), "forbidden");
      await w.groups.update(A, g, { invite: "admins" });
      await refused(w, w.groups.invite(B, g, C), "forbidden");
      await w.groups.setRole(A, g, B, "admin");
      await join(w, g, B, C);
      await refused(w, w.groups.invite(C, g, D), "forbidden");
      await refused(w, w.groups.update(B, g, { invite: "members" }), "forbidden");
      await refused(w, w.groups.update(C, g, { name: "mine" }), "forbidden");
      const renamed = await w.groups.update(B, g, { name: "Club", description: "weekly" });
      expect(renamed.attrs).to.include({ name: "Club", role: "admin" });
      await w.groups.update(A, g, { invite: "members" });
      await join(w, g, C, D);
      // Removal: a member may not, an admin may remove members only, nobody removes the owner.
      await refused(w, w.groups.remove(C, g, D), "forbidden");
      await refused(w, w.groups.remove(B, g, A), "not-allowed");
      await w.groups.setRole(A, g, C, "admin");
      await refused(w, w.groups.remove(B, g, C), "forbidden");
      await refused(w, w.groups.setRole(B, g, D, "admin"), "forbidden");
      await w.groups.remove(B, g, D);
      expect((await entries(w, D, "group-gone")).map((e) => e.subject)).to.deep.equal([g]);
      // Outsiders learn nothing about a group id.
      await refused(w, w.groups.members(D, g), "item-not-found");
      await refused(w, w.groups.invite(D, g, X), "item-not-found");
      await refused(w, w.groups.delete(D, "no-such-group"), "item-not-found");
      // The owner cannot leave; transfer; then the former owner (now admin) may.
      await refused(w, w.groups.leave(A, g), "not-allowed");
      await refused(w, w.groups.delete(B, g), "forbidden");
      await refused(w, w.groups.transfer(B, g, C), "forbidden");
      const t = await w.groups.transfer(A, g, C);
      expect(t.attrs).to.include({ owner: C, role: "admin" });
      await w.groups.leave(A, g);
      const list = await w.groups.members(C, g);
      expect(list.map((m) => [m.jid, m.role])).to.deep.equal([
        [B, "admin"],
        [C, "owner"],
      ]);
      await w.groups.delete(C, g);
      expect(await rows(w, "SELECT * FROM groups")).to.deep.equal([]);
      expect((await entries(w, B, "group-gone")).map((e) => e.subject)).to.deep.equal([g]);
      expect(await entries(w, C, "group-gone")).to.deep.equal([]);
    });
  });

  describe("invitations", () => {
    beforeEach(async () => {
      w = await world();
    });

    it("an invitation to a JID that never used cardlink answers alike and waits on a placeholder", async () => {
      await w.groups.create(C, "warm-up", "", "admins", null); // C exists
      const g = groupId(await w.groups.create(A, "g", "", "admins", null));
      const known = await w.groups.invite(A, g, C);
      const unknown = await w.groups.invite(A, g, X);
      expect(Object.keys(unknown)).to.deep.equal(Object.keys(known));
      expect(unknown.expiresAt).to.equal(known.expiresAt);
      const [acc] = await rows<{ state: string }>(
        w,
        "SELECT a.state FROM accounts a JOIN identifiers i ON i.account_id = a.id WHERE i.value = :j",
        { j: X },
      );
      expect(acc?.state).to.equal("placeholder");
      expect(await entries(w, X, "group-invitation")).to.have.length(1);
      // X arrives and sees it.
      const list = await w.groups.invitations(X);
      expect(list.map((i) => [i.id, i.from, i.group.name])).to.deep.equal([[unknown.id, A, "g"]]);
    });

    it("decline and withdraw remove the invitation and its undelivered notice; expiry answers gone", async () => {
      const g = groupId(await w.groups.create(A, "g", "", "members", null));
      await join(w, g, A, B);
      const i1 = await w.groups.invite(A, g, C);
      await refused(w, w.groups.decline(D, i1.id), "item-not-found");
      await w.groups.decline(C, i1.id);
      expect(await entries(w, C, "group-invitation")).to.deep.equal([]);
      await refused(w, w.groups.accept(C, i1.id, null), "item-not-found");
      const i2 = await w.groups.invite(B, g, C);
      await w.groups.create(D, "other", "", "admins", null);
      await refused(w, w.groups.withdraw(D, i2.id), "item-not-found");
      await w.groups.withdraw(A, i2.id); // the owner withdraws B's invitation
      expect(await rows(w, "SELECT * FROM group_invitations")).to.deep.equal([]);
      expect(await entries(w, C, "group-invitation")).to.deep.equal([]);
      await refused(w, w.groups.invite(A, g, B), "conflict");
      const i3 = await w.groups.invite(A, g, C);
      await refused(w, w.groups.invite(B, g, C), "conflict");
      w.clock.t += OPTS.invitationTtlMs + 1;
      try {
        await w.groups.accept(C, i3.id, null);
        expect.fail("accepted an expired invitation");
      } catch (e) {
        expect((e as StanzaError).condition).to.equal("gone");
      }
      expect(await rows(w, "SELECT * FROM group_invitations")).to.deep.equal([]);
      const i4 = await w.groups.invite(A, g, D);
      w.clock.t += OPTS.invitationTtlMs + 1;
      expect(await w.groups.expire()).to.equal(1);
      expect(await entries(w, D, "group-invitation")).to.deep.equal([]);
      expect(i4.id).to.be.a("string");
    });

    it("a user who blocks the inviter is never invited, and the inviter cannot tell", async () => {
      const g = groupId(await w.groups.create(A, "g", "", "members", null));
      await w.exchange.block(C, A);
      const hidden = await w.groups.invite(A, g, C);
      const plain = await w.groups.invite(A, g, D);
      expect(Object.keys(hidden)).to.deep.equal(Object.keys(plain));
      expect(await entries(w, C, "group-invitation")).to.deep.equal([]);
      expect(await w.groups.invitations(C)).to.deep.equal([]);
      await refused(w, w.groups.accept(C, hidden.id, null), "item-not-found");
      await refused(w, w.groups.invite(A, g, C), "conflict"); // still pending, as far as A can tell
      // Blocking after the invitation hides it and retracts its notice.
      expect(await entries(w, D, "group-invitation")).to.have.length(1);
      await w.exchange.block(D, A);
      expect(await entries(w, D, "group-invitation")).to.deep.equal([]);
      await refused(w, w.groups.accept(D, plain.id, null), "item-not-found");
    });
  });

  describe("the group audience path", () => {
    beforeEach(async () => {
      w = await world();
      for (const [j, n] of [
        [A, "Alice"],
        [B, "Bob"],
        [C, "Carol"],
      ] as const)
        await storeCard(w.core, j, card(n));
    });

    it("accept: cards both ways in one unit of work, notices to the others; a card change reaches every member", async () => {
      const g = groupId(await w.groups.create(A, "g", "", "members", null));
      await join(w, g, A, B);
      const [a, b, c] = [await idOf(w, A), await idOf(w, B), await idOf(w, C)];
      expect((await entries(w, B, "card")).map((e) => e.subject_account)).to.deep.equal([a]);
      expect((await entries(w, A, "card")).map((e) => e.subject_account)).to.deep.equal([b]);
      const inv = await w.groups.invite(B, g, C);
      const before = Number(
        (await rows<{ v: number }>(w, "SELECT value AS v FROM counters WHERE name = 'seq'"))[0]?.v,
      );
      const el = await w.groups.accept(C, inv.id, { fields: ["tel"] });
      expect(el.attrs).to.include({ role: "member", members: "3" });
      const seqs = await rows<{ seq: number }>(
        w,
        "SELECT DISTINCT seq FROM stream_entries WHERE seq > :s AND kind = 'card'",
        { s: before },
      );
      expect(seqs).to.have.length(1); // one unit of work
      expect((await entries(w, C, "card")).map((e) => e.subject_account).sort()).to.deep.equal([a, b].sort());
      expect((await entries(w, A, "card")).map((e) => e.subject_account).sort()).to.deep.equal([b, c].sort());
      expect((await entries(w, A, "group-member")).map((e) => e.subject)).to.deep.equal([
        `${g}/${b}`,
        `${g}/${c}`,
      ]);
      expect(await entries(w, C, "group-invitation")).to.deep.equal([]);
      // C's policy for the group: A sees C's tel only.
      const seen = await w.core.read("t", (r) => cardForViewer(r, A, C, "vcard4"));
      expect(seen.toString()).to.include("tel:");
      expect(seen.toString()).to.not.include("carol@home.example");
      // A later card change of B reaches A and C through the card fan-out.
      const stored = await storeCard(w.core, B, card("Bobby"));
      expect([...stored.holders].sort()).to.deep.equal([a, c].sort());
    });

    it("leave: tombstones and retraction both ways; the others are told", async () => {
      const g = groupId(await w.groups.create(A, "g", "", "members", null));
      await join(w, g, A, B);
      await join(w, g, A, C);
      const [a, b, c] = [await idOf(w, A), await idOf(w, B), await idOf(w, C)];
      await w.groups.leave(C, g);
      const t = await rows<{ holder: number; owner: number }>(
        w,
        "SELECT holder, owner FROM tombstones ORDER BY holder, owner",
      );
      const want = [
        [a, c],
        [b, c],
        [c, a],
        [c, b],
      ].sort((x, y) => x[0]! - y[0]! || x[1]! - y[1]!);
      expect(t.map((r) => [Number(r.holder), Number(r.owner)])).to.deep.equal(want);
      expect((await entries(w, C, "card")).length).to.equal(0);
      expect((await entries(w, A, "card")).map((e) => e.subject_account)).to.deep.equal([b]);
      expect((await entries(w, B, "group-member")).map((e) => e.subject)).to.include(`${g}/${c}`);
      const gone = await w.core
        .read("t", (r) => cardForViewer(r, A, C, "vcard4"))
        .catch((e: StanzaError) => e);
      expect((gone as StanzaError).condition).to.equal("item-not-found");
      // Rejoining opens the path again: tombstones both ways go.
      await join(w, g, A, C);
      expect(await rows(w, "SELECT * FROM tombstones WHERE holder = :c OR owner = :c", { c })).to.deep.equal(
        [],
      );
    });

    it("a holder on both a binding and a group sees the union of both views; leaving keeps the binding's", async () => {
      // A ↔ B bound, A shares tel only with B; in the group A shares email only.
      const code = await w.exchange.createCode(A);
      await w.exchange.redeemCode(B, code.code);
      await w.core.uow("t.share", async (u) => {
        const [a, b] = [await idOf(w, A), await idOf(w, B)];
        await u.tx.run("UPDATE shares SET policy = :p WHERE owner = :a AND holder = :b", {
          p: JSON.stringify({ fields: ["tel"] }),
          a,
          b,
        });
      });
      const g = groupId(await w.groups.create(A, "g", "", "members", { fields: ["email"] }));
      const viaBinding = (await w.core.read("t", (r) => cardForViewer(r, B, A, "vcard4"))).toString();
      expect(viaBinding).to.include("tel:").and.not.include("alice@home.example");
      await join(w, g, A, B);
      const both = (await w.core.read("t", (r) => cardForViewer(r, B, A, "vcard4"))).toString();
      expect(both).to.include("tel:").and.include("alice@home.example");
      const [a, b] = [await idOf(w, A), await idOf(w, B)];
      await w.groups.leave(B, g);
      // No tombstone hides A from B (the binding still shows it): B gets a refreshed card, narrowed to tel.
      const mark = await rows<{ seq: number }>(
        w,
        "SELECT seq FROM tombstones WHERE holder = :b AND owner = :a",
        {
          a,
          b,
        },
      );
      expect(mark).to.have.length(1); // the view-change mark closedSet writes for a pair still visible
      expect((await entries(w, B, "card")).map((e) => e.subject_account)).to.include(a);
      const after = (await w.core.read("t", (r) => cardForViewer(r, B, A, "vcard4"))).toString();
      expect(after).to.include("tel:").and.not.include("alice@home.example");
      const sync = await w.core.read("t", (r) => r.audience.syncPage(b, 0, 100));
      expect(sync.changes.filter((x) => x.owner === a).map((x) => x.removed)).to.deep.equal([false]);
    });
  });

  describe("exemptions", () => {
    let g: string;
    let a: AccountId, b: AccountId, c: AccountId;
    beforeEach(async () => {
      w = await world();
      for (const [j, n] of [
        [A, "Alice"],
        [B, "Bob"],
        [C, "Carol"],
        [D, "Dave"],
      ] as const)
        await storeCard(w.core, j, card(n));
      g = groupId(await w.groups.create(A, "g", "", "members", null));
      await join(w, g, A, B);
      await join(w, g, A, C);
      [a, b, c] = [await idOf(w, A), await idOf(w, B), await idOf(w, C)];
    });
    const token = () =>
      rows<{ v: number }>(w, "SELECT value AS v FROM counters WHERE name = 'seq'").then((r) =>
        Number(r[0]?.v),
      );
    const sees = (holder: string, owner: string) =>
      w.core
        .read("t", (r) => cardForViewer(r, holder, owner, "vcard4"))
        .then((el) => el.toString())
        .catch((e: StanzaError) => e.condition);

    it("a newcomer is not affected by tombstones a withdrawn (and lifted) exemption left; a re-joining exempt member stays exempt", async () => {
      await w.groups.exempt(A, g, B, true); // B's copy of A withdrawn: tombstone (B, A)
      const d = await idOf(w, D);
      const sync = (h: AccountId) => w.core.read("t", (r) => r.audience.syncPage(h, 0, 100));
      // D joins: every co-member's card, pushed and listed, nothing removed; A's card reaches everyone but B.
      await join(w, g, A, D);
      expect((await entries(w, D, "card")).map((e) => e.subject_account).sort()).to.deep.equal(
        [a, b, c].sort(),
      );
      expect((await sync(d)).changes.map((x) => [x.owner, x.removed])).to.have.deep.members([
        [a, false],
        [b, false],
        [c, false],
      ]);
      expect(await sees(D, A)).to.include("Alice");
      expect(await sees(B, D)).to.include("Dave");
      expect(await sees(B, A)).to.equal("item-not-found");
      // B leaves and re-joins while still exempt: A's card does not come back to B (no policy: not rendered, not
      // listed), and D is unaffected.
      await w.groups.leave(B, g);
      await join(w, g, A, B);
      expect(await sees(B, A)).to.equal("item-not-found");
      expect((await sync(b)).changes.filter((x) => x.owner === a && !x.removed)).to.deep.equal([]);
      expect(await sees(B, D)).to.include("Dave");
      // A lifts it with B out of the group (the tombstone stays), then B, as a newcomer again, gets A's card.
      await w.groups.leave(B, g);
      await w.groups.unexempt(A, B);
      expect((await sync(b)).changes.filter((x) => x.owner === a).map((x) => x.removed)).to.deep.equal([
        true,
      ]);
      await join(w, g, A, B);
      expect(await sees(B, A)).to.include("Alice");
      expect((await entries(w, B, "card")).map((e) => e.subject_account)).to.include(a);
      expect((await sync(b)).changes.filter((x) => x.owner === a).map((x) => x.removed)).to.deep.equal([
        false,
      ]);
      expect((await sync(d)).changes.filter((x) => x.removed)).to.deep.equal([]);
    });

    it("without withdraw: the exempt member keeps their copy and stops receiving changes; only I see it", async () => {
      const t0 = await token();
      const laneBefore = await entries(w, B);
      await w.groups.exempt(A, g, B, false);
      // B's copy stays: no tombstone, the join's card entry is not retracted (it renders under no path: dropped).
      expect(await rows(w, "SELECT * FROM tombstones WHERE holder = :b", { b })).to.deep.equal([]);
      expect((await entries(w, B, "card")).map((e) => e.subject_account)).to.include(a);
      expect(await sees(B, A)).to.equal("item-not-found");
      expect(await sees(C, A)).to.include("Alice");
      expect(await sees(A, B)).to.include("Bob"); // one way only
      const stored = await storeCard(w.core, A, card("Alicia"));
      expect([...stored.holders]).to.deep.equal([c]);
      const sync = await w.core.read("t", (r) => r.audience.syncPage(b, t0, 100));
      expect(sync.changes.filter((x) => x.owner === a)).to.deep.equal([]);
      // Visible to A only: A's list names B; B's lists show nothing of it.
      expect((await w.groups.exemptions(A)).map((x) => x.jid)).to.deep.equal([B]);
      expect(await w.groups.exemptions(B)).to.deep.equal([]);
      expect((await w.groups.members(B, g)).map((m) => Object.keys(m).sort())).to.deep.equal([
        ["jid", "joinedAt", "role"],
        ["jid", "joinedAt", "role"],
        ["jid", "joinedAt", "role"],
      ]);
      // Nothing reached B's lane: no notice names the exemption.
      expect(await entries(w, B)).to.deep.equal(laneBefore);
    });

    it("with withdraw: the copy is withdrawn as a closed path; lifting sends the current card back", async () => {
      const t0 = await token();
      const before = await entries(w, B);
      await w.groups.exempt(A, g, B, true);
      const tomb = await rows<{ seq: number }>(
        w,
        "SELECT seq FROM tombstones WHERE holder = :b AND owner = :a",
        {
          a,
          b,
        },
      );
      expect(tomb).to.have.length(1);
      expect((await entries(w, B, "card")).map((e) => e.subject_account)).to.not.include(a);
      // Nothing but the retraction reached B's lane: no notice names the exemption.
      expect((await entries(w, B)).filter((e) => e.kind !== "card")).to.deep.equal(
        before.filter((e) => e.kind !== "card"),
      );
      const t1 = await token();
      const s1 = await w.core.read("t", (r) => r.audience.syncPage(b, t0, 100));
      expect(s1.changes.filter((x) => x.owner === a).map((x) => x.removed)).to.deep.equal([true]);
      // C is untouched.
      expect(await sees(C, A)).to.include("Alice");
      await w.groups.unexempt(A, B);
      expect(await w.groups.exemptions(A)).to.deep.equal([]);
      expect((await entries(w, B, "card")).map((e) => e.subject_account)).to.include(a);
      expect(await sees(B, A)).to.include("Alice");
      const s2 = await w.core.read("t", (r) => r.audience.syncPage(b, t1, 100));
      expect(s2.changes.filter((x) => x.owner === a).map((x) => x.removed)).to.deep.equal([false]);
      const stored = await storeCard(w.core, A, card("Alicia"));
      expect([...stored.holders].sort()).to.deep.equal([b, c].sort());
    });

    it("a binding's view stays: withdrawing narrows B's copy to what the binding shows", async () => {
      const code = await w.exchange.createCode(A);
      await w.exchange.redeemCode(B, code.code);
      await w.core.uow("t.share", async (u) => {
        await u.tx.run("UPDATE shares SET policy = :p WHERE owner = :a AND holder = :b", {
          p: JSON.stringify({ fields: ["tel"] }),
          a,
          b,
        });
      });
      expect(await sees(B, A)).to.include("alice@home.example"); // group (everything) ∪ binding (tel)
      const t0 = await token();
      await w.groups.exempt(A, g, B, true);
      const after = await sees(B, A);
      expect(after).to.include("tel:").and.not.include("alice@home.example");
      expect((await entries(w, B, "card")).map((e) => e.subject_account)).to.include(a); // the narrowed refresh
      const s = await w.core.read("t", (r) => r.audience.syncPage(b, t0, 100));
      expect(s.changes.filter((x) => x.owner === a).map((x) => x.removed)).to.deep.equal([false]);
      const stored = await storeCard(w.core, A, card("Alicia"));
      expect([...stored.holders].sort()).to.deep.equal([b, c].sort()); // through the binding
    });

    it("refusals write nothing: yourself, a non-member, twice, the cap, lifting what is not there", async () => {
      await w.groups.create(D, "other", "", "members", null);
      await refused(w, w.groups.exempt(A, g, A, false), "bad-request");
      await refused(w, w.groups.exempt(A, g, D, false), "item-not-found");
      await refused(w, w.groups.exempt(D, g, A, false), "item-not-found");
      await refused(w, w.groups.exempt(A, g, "nobody@a.example", true), "item-not-found");
      await refused(w, w.groups.unexempt(A, B), "item-not-found");
      await w.groups.exempt(A, g, B, false);
      const err = await refused(w, w.groups.exempt(A, g, B, true), "conflict");
      expect(err.message).to.equal(`you already exempt ${B}`);
      await join(w, g, A, D);
      await w.groups.exempt(A, g, C, false);
      const capped = await refused(w, w.groups.exempt(A, g, D, true), "resource-constraint", "cancel");
      expect(capped.message).to.equal("you exempt 2 members, the most you may; lift one first");
    });

    it("an exemption costs the same statements in groups of 3 and 300 members", async () => {
      const counts: number[] = [];
      for (const [size, owner] of [
        [3, C],
        [300, D],
      ] as const) {
        const big = size === 3 ? g : groupId(await w.groups.create(owner, "big", "", "members", null));
        if (size !== 3)
          await w.core.uow("t.seed", async (u) => {
            const seq = await u.seq();
            for (let i = 1; i < size - 1; i++) {
              const m = await u.accounts.ensure(`m${i}@a.example`, { seen: true });
              await u.tx.run(
                "INSERT INTO group_members (group_id, account_id, role, policy, seq, joined_at) VALUES (:g, :m, 'member', NULL, :seq, :now)",
                { g: big, m, seq, now: u.now },
              );
            }
          });
        if (size !== 3) await join(w, big, owner, B);
        w.counter.n = 0;
        w.counter.on = true;
        await w.groups.exempt(owner, big, B, true);
        w.counter.on = false;
        counts.push(w.counter.n);
      }
      expect(counts[0]).to.be.greaterThan(3);
      expect(counts[1], counts.join(" vs ")).to.equal(counts[0]);
    });
  });

  describe("pull: <group-sync/> and the polling interval", () => {
    let g: string;
    let a: AccountId, b: AccountId, c: AccountId;
    const budget = new StanzaBudget(65_536);
    const pull = (who: string, since: number, max = 200) =>
      w.groups.sync(who, g, since, max, "vcard4", budget);
    const owners = (items: Element[]) => items.map((e) => `${e.name}:${String(e.attrs.owner)}`);
    beforeEach(async () => {
      w = await world();
      for (const [j, n] of [
        [A, "Alice"],
        [B, "Bob"],
        [C, "Carol"],
        [D, "Dave"],
      ] as const)
        await storeCard(w.core, j, card(n));
      g = groupId(await w.groups.create(A, "g", "", "members", null));
      await join(w, g, A, B);
      await join(w, g, A, C);
      [a, b, c] = [await idOf(w, A), await idOf(w, B), await idOf(w, C)];
    });

    it("a token returns only what changed since: card changes, departures, exemptions", async () => {
      const all = await pull(B, 0);
      expect(owners(all.items).sort()).to.deep.equal([`card:${A}`, `card:${C}`]);
      expect(all.more).to.equal(false);
      expect((await pull(B, all.token)).items).to.deep.equal([]);
      await storeCard(w.core, A, card("Alicia"));
      const s1 = await pull(B, all.token);
      expect(owners(s1.items)).to.deep.equal([`card:${A}`]);
      expect(s1.items[0]?.toString()).to.include("Alicia");
      await w.groups.leave(C, g);
      const s2 = await pull(B, s1.token);
      expect(owners(s2.items)).to.deep.equal([`removed:${C}`]);
      // An exemption without withdraw: A's later changes are not listed for B; with withdraw (C's of B here,
      // after C rejoins): removed.
      await w.groups.exempt(A, g, B, false);
      await storeCard(w.core, A, card("Alice Again"));
      const s3 = await pull(B, s2.token);
      expect(s3.items).to.deep.equal([]);
      await join(w, g, A, C);
      const s4 = await pull(B, s3.token);
      expect(owners(s4.items)).to.deep.equal([`card:${C}`]);
      await w.groups.exempt(C, g, B, true);
      const s5 = await pull(B, s4.token);
      expect(owners(s5.items)).to.deep.equal([`removed:${C}`]);
      await w.groups.unexempt(C, B);
      expect(owners((await pull(B, s5.token)).items)).to.deep.equal([`card:${C}`]);
      // Pages of max=1: never inside a seq (C's rejoin put A and B at one seq for C: one page of two), and the
      // tokens chain to the same set as one page.
      const whole = await pull(C, 0);
      const paged: Element[] = [];
      let t = 0;
      for (let i = 0; i < 10; i++) {
        const p = await pull(C, t, 1);
        paged.push(...p.items);
        t = p.token;
        if (!p.more) break;
      }
      expect(owners(paged).sort()).to.deep.equal(owners(whole.items).sort());
      expect(owners(whole.items).sort()).to.deep.equal([`card:${A}`, `card:${B}`]);
    });

    it("a member who pulls gets no card entries through the group; the interval is stored and listed", async () => {
      const el = await w.groups.setDelivery(B, g, { pollSeconds: 3600 });
      expect(el.attrs).to.include({ delivery: "pull", interval: "3600" });
      const listed = (await w.groups.groups(B)).find((m) => m.group.id === g);
      expect(listed?.pollSeconds).to.equal(3600);
      const before = (await entries(w, B, "card")).length;
      const stored = await storeCard(w.core, A, card("Alicia"));
      expect([...stored.holders]).to.deep.equal([c]);
      expect((await entries(w, B, "card")).length).to.equal(before);
      expect(owners((await pull(B, 0)).items)).to.include(`card:${A}`);
      // A newcomer who pulls: no cards pushed to them, and theirs not pushed to B (who pulls); A and C get it.
      const d = await idOf(w, D);
      const inv = await w.groups.invite(A, g, D);
      await w.groups.accept(D, inv.id, null, { pollSeconds: 600 });
      expect(await entries(w, D, "card")).to.deep.equal([]);
      const got = await rows<{ account_id: number }>(
        w,
        "SELECT account_id FROM stream_entries WHERE kind = 'card' AND subject_account = :d ORDER BY account_id",
        { d },
      );
      expect(got.map((r) => Number(r.account_id))).to.deep.equal([a, c].sort((x, y) => x - y));
      expect(owners((await pull(D, 0)).items).sort()).to.deep.equal([`card:${A}`, `card:${B}`, `card:${C}`]);
      // Back to push.
      await w.groups.setDelivery(B, g, { pollSeconds: null });
      const again = await storeCard(w.core, A, card("Alice Pushed"));
      expect([...again.holders].sort()).to.deep.equal([b, c].sort());
    });

    it("refusals write nothing: an interval out of bounds, not a member", async () => {
      await refused(w, w.groups.setDelivery(B, g, { pollSeconds: 59 }), "bad-request");
      await refused(w, w.groups.setDelivery(B, g, { pollSeconds: 86_401 }), "bad-request");
      await refused(w, w.groups.setDelivery(D, g, { pollSeconds: 600 }), "item-not-found");
      const inv = await w.groups.invite(A, g, D);
      await refused(w, w.groups.accept(D, inv.id, null, { pollSeconds: 10 }), "bad-request");
      const err = await w.groups.sync(D, g, 0, 10, "vcard4", budget).catch((e: StanzaError) => e);
      expect((err as StanzaError).condition).to.equal("item-not-found");
    });
  });

  describe("group codes", () => {
    let g: string;
    beforeEach(async () => {
      w = await world();
      for (const [j, n] of [
        [A, "Alice"],
        [B, "Bob"],
        [C, "Carol"],
      ] as const)
        await storeCard(w.core, j, card(n));
      g = groupId(await w.groups.create(A, "g", "", "admins", null));
      await join(w, g, A, B);
    });

    it("a code joins its group once, as an accepted invitation does: cards both ways, a pending invitation dropped", async () => {
      const k = await w.groups.createCode(A, g);
      expect(k.code).to.match(/^[A-Z2-9]{5}-[A-Z2-9]{5}$/);
      await w.groups.invite(A, g, C); // C also has an invitation: redeeming makes it moot
      const el = await w.groups.redeemCode(C, k.code.toLowerCase().replace("-", " "), { fields: ["tel"] });
      expect([el.attrs.role, el.attrs.members]).to.deep.equal(["member", "3"]);
      const [a, b] = [await idOf(w, A), await idOf(w, B)];
      expect((await entries(w, C, "card")).map((e) => e.subject_account).sort()).to.deep.equal([a, b].sort());
      expect((await entries(w, A, "card")).map((e) => e.subject_account)).to.include(await idOf(w, C));
      expect(await rows(w, "SELECT * FROM group_invitations")).to.deep.equal([]);
      expect(await rows(w, "SELECT * FROM group_codes")).to.deep.equal([]);
      await refused(w, w.groups.redeemCode(D, k.code, null), "item-not-found");
    });

    it("refusals write nothing and keep the code: a member, the wrong role, the cap, a bad code; expiry answers gone", async () => {
      await refused(w, w.groups.createCode(B, g), "forbidden"); // invite='admins', B is a member
      await refused(w, w.groups.createCode(C, g), "item-not-found"); // not in the group
      const k = await w.groups.createCode(A, g);
      await w.groups.createCode(A, g);
      await refused(w, w.groups.createCode(A, g), "resource-constraint", "wait"); // codesPerUser 2
      await refused(w, w.groups.redeemCode(B, k.code, null), "conflict"); // already a member
      await refused(w, w.groups.redeemCode(C, "ABC", null), "bad-request");
      await w.groups.redeemCode(C, k.code, null); // still usable after the refusals
      const late = await w.groups.createCode(A, g);
      w.clock.t += 86_400_001;
      const before = await snapshot(w);
      const err = await w.groups.redeemCode(D, late.code, null).catch((e: StanzaError) => e);
      expect((err as StanzaError).condition).to.equal("gone");
      expect((await snapshot(w)).group_codes).to.equal(Number(before.group_codes) - 1); // the expired code is deleted
    });

    it("failed redeems are limited per user (guessing), and the limit passes with its window", async () => {
      const k = await w.groups.createCode(A, g);
      for (let i = 0; i < 3; i++)
        await refused(w, w.groups.redeemCode(C, "ABCDE-FGH23", null), "item-not-found");
      const err = await refused(w, w.groups.redeemCode(C, k.code, null), "policy-violation", "wait");
      expect(err.message).to.match(/^too many failed redeem attempts from you; retry in \d+ (s|min)$/);
      // Another user of the same domain still may (the host budget is 100 here).
      await refused(w, w.groups.redeemCode(D, "ABCDE-FGH23", null), "item-not-found");
      w.clock.t += 600_001;
      const el = await w.groups.redeemCode(C, k.code, null);
      expect(el.attrs.members).to.equal("3");
    });
  });

  describe("cost per added member", () => {
    it("an accept runs the same number of statements for groups of 10 and 1,000 members", async function () {
      this.timeout(120_000);
      w = await world({ joinedPerUser: 10 });
      const counts: number[] = [];
      for (const size of [10, 1000]) {
        const g = groupId(await w.groups.create(A, `g${size}`, "", "members", null));
        await w.core.uow("t.seed", async (u) => {
          const seq = await u.seq();
          for (let i = 1; i < size; i++) {
            const m = await u.accounts.ensure(`m${size}-${i}@a.example`, { seen: true });
            await u.tx.run(
              "INSERT INTO group_members (group_id, account_id, role, policy, seq, joined_at) VALUES (:g, :m, 'member', NULL, :seq, :now)",
              { g, m, seq, now: u.now },
            );
            if (i % 3 === 0)
              await u.tx.run(
                "INSERT INTO cards (account_id, version, hash, card, seq, updated_at) VALUES (:m, 1, 'h', :c, :seq, :now)",
                { m, c: JSON.stringify(card(`M${i}`)), seq, now: u.now },
              );
          }
        });
        const newcomer = `new${size}@a.example`;
        await storeCard(w.core, newcomer, card("Newcomer"));
        const inv = await w.groups.invite(A, g, newcomer);
        // Seeding 1,000 accounts evicted the owner from the 1,000-entry JID cache: warm it, so both runs count the
        // accept's own statements and not a cache miss.
        const owner = await idOf(w, A);
        await w.core.read("t.warm", (r) => r.accounts.jidOf(owner));
        w.counter.n = 0;
        w.counter.on = true;
        await w.groups.accept(newcomer, inv.id, null);
        w.counter.on = false;
        counts.push(w.counter.n);
        const nid = await idOf(w, newcomer);
        const got = await rows<{ n: number }>(
          w,
          "SELECT COUNT(*) AS n FROM stream_entries WHERE account_id = :nid AND kind = 'card'",
          { nid },
        );
        expect(Number(got[0]?.n)).to.equal(Math.floor((size - 1) / 3)); // every co-member with a card
        const them = await rows<{ n: number }>(
          w,
          "SELECT COUNT(*) AS n FROM stream_entries WHERE subject_account = :nid AND kind = 'card'",
          { nid },
        );
        expect(Number(them[0]?.n)).to.equal(size); // every member (the owner included) got the newcomer's
      }
      expect(counts[0]).to.be.greaterThan(5);
      expect(counts[1], `statements per accept: ${counts.join(" vs ")}`).to.equal(counts[0]);
    });
  });

  describe("account deletion and export", () => {
    beforeEach(async () => {
      w = await world();
    });

    it("the export lists memberships and invitations; deletion passes ownership or deletes the group", async () => {
      const g1 = groupId(await w.groups.create(A, "shared", "", "members", null));
      const g2 = groupId(await w.groups.create(A, "alone", "", "members", null));
      await join(w, g1, A, B);
      await join(w, g1, A, C);
      await w.groups.setRole(A, g1, C, "admin");
      await w.groups.invite(A, g1, D);
      const doc = await buildExport(w.core.read, A);
      expect(doc.tables.groups).to.have.length(2);
      expect(doc.tables.group_members).to.have.length(2);
      expect(doc.tables.group_invitations).to.have.length(1);
      expect((doc.tables.group_invitations as Array<Record<string, unknown>>)[0]?.invitee_jid).to.equal(D);
      await deleteAccount(w.core.uow, A);
      expect(await rows(w, "SELECT id FROM groups WHERE id = :g", { g: g2 })).to.deep.equal([]);
      const [g] = await rows<{ owner: number }>(w, "SELECT owner FROM groups WHERE id = :g", { g: g1 });
      expect(Number(g?.owner)).to.equal(await idOf(w, C)); // the admin took over
      expect((await w.groups.members(B, g1)).map((m) => [m.jid, m.role])).to.deep.equal([
        [B, "member"],
        [C, "owner"],
      ]);
      expect(await rows(w, "SELECT * FROM group_invitations")).to.deep.equal([]);
      const after = await buildExport(w.core.read, A);
      for (const t of ["groups", "group_members", "group_invitations", "group_exemptions"])
        expect(after.tables[t], t).to.deep.equal([]);
    });
  });
});
