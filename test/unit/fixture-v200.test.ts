/**
 * test/fixtures/v200.sqlite, the pre-redesign database REDESIGN S2b's migration test starts from: the current
 * code opens a copy and reads back, through its own store, exactly what scripts/make-fixture-v200.ts wrote;
 * and the script is deterministic (a second run gives the same rows).
 */
import { execFileSync } from "node:child_process";
import { copyFileSync, mkdtempSync, rmSync, statSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { expect } from "chai";
import Database from "better-sqlite3";
import { cardHash } from "../../stanzas/model/card.js";
import { LEGACY } from "../../storage/sqlite/legacy.js";
import { SqliteStore } from "../../storage/sqlite/store.js";
import {
  BINDINGS,
  BLOCKS,
  CODES,
  DECLINED_REQUEST,
  DEVICES,
  FAR_FUTURE,
  FIXTURE_CLOCK,
  JID,
  PENDING_REQUESTS,
  POLICIES,
  PUSH_JOBS,
  PUSH_NODES,
  PUSH_REF_KEY,
  RESOURCE,
  SCHEMA_VERSION,
  SENT_JOB,
  SUBSCRIBER,
  UNBOUND,
  dumpRows,
  fixtureCard,
  type RowDump,
} from "../../scripts/make-fixture-v200.js";

// Tests run from dist/test/…; the fixture lives in the source tree, and mocha is started from the project root.
const FIXTURE = path.resolve(process.cwd(), "test", "fixtures", "v200.sqlite");
const SCRIPT = path.resolve(process.cwd(), "dist", "scripts", "make-fixture-v200.js");

/** The dump with every reading of the fixture's clock (within a day of FIXTURE_CLOCK) replaced by "T". */
function masked(d: RowDump): Record<string, string[]> {
  const out: Record<string, string[]> = {};
  for (const [t, rows] of Object.entries(d)) {
    out[t] = rows
      .map((r) =>
        JSON.stringify(r, (_k, v: unknown) =>
          typeof v === "number" && Math.abs(v - FIXTURE_CLOCK) < 86_400_000 ? "T" : v,
        ),
      )
      .sort();
  }
  return out;
}

function dumpFile(file: string): RowDump {
  const db = new Database(file, { readonly: true, fileMustExist: true });
  try {
    return dumpRows(db);
  } finally {
    db.close();
  }
}

describe("fixture v200 (the pre-redesign database)", () => {
  let dir: string;
  let store: SqliteStore;
  let written: RowDump;

  before(() => {
    dir = mkdtempSync(path.join(os.tmpdir(), "cardlink-fixture-"));
    const copy = path.join(dir, "copy.sqlite");
    copyFileSync(FIXTURE, copy);
    written = dumpFile(copy);
    store = new SqliteStore(copy);
  });

  after(async () => {
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it("is small and at schema version 200: opening it applies only the later legacy versions, indexes only", async () => {
    expect(statSync(FIXTURE).size).to.be.below(200 * 1024);
    expect(written.schema_migrations?.map((r) => r.version)).to.deep.equal([1, 100, 200]);
    const later = LEGACY.migrations.filter((m) => m.version > SCHEMA_VERSION);
    expect(store.migrations.applied).to.deep.equal(later.map((m) => m.version));
    expect(await store.schemaVersion()).to.equal(later.at(-1)?.version ?? SCHEMA_VERSION);
    // What the reads below rely on: nothing after 200 changes a table or a row, it only adds indexes.
    for (const m of later) {
      const statements = (m.sql.sqlite ?? "")
        .replace(/--.*$/gm, "")
        .split(";")
        .map((x) => x.trim())
        .filter(Boolean);
      for (const st of statements) expect(st, `migration ${m.version}`).to.match(/^CREATE INDEX /);
    }
  });

  it("reads back every card, with its version and hash", async () => {
    for (const name of ["alice", "carol", "dave"] as const) {
      const got = await store.cards.get(JID[name]);
      const card = fixtureCard(name);
      expect(got?.card, name).to.deep.equal(card);
      expect(got?.version, name).to.equal(1);
      expect(got?.hash, name).to.equal(cardHash(card));
    }
    const bob = await store.cards.get(JID.bob);
    expect(bob?.card).to.deep.equal(fixtureCard("bob2"));
    expect(bob?.version).to.equal(2);
    expect((await store.cards.get(JID.alice))?.card.photo?.uri).to.match(/^data:image\/png;base64,/);
    expect(await store.cards.get(JID.erin)).to.equal(undefined);
  });

  it("reads back devices, the dead token and the push key", async () => {
    for (const owner of [JID.alice, JID.bob, JID.carol, JID.dave]) {
      const got = (await store.devices.list(owner)).map(
        ({ createdAt: _c, updatedAt: _u, tokenState: _t, ...d }) => d,
      );
      expect(got, owner).to.deep.equal(DEVICES.filter((d) => d.owner === owner));
    }
    const states = Object.fromEntries(
      (written.devices ?? []).map((d) => [String(d.device_id), String(d.token_state)]),
    );
    expect(states).to.deep.equal({
      "alice-iphone": "ok",
      "alice-pixel": "ok",
      "bob-phone": "invalid",
      "carol-laptop": "none",
      "dave-iphone": "ok",
    });
  });

  it("reads back bindings, share policies, blocks and the unbind's tombstones", async () => {
    for (const b of BINDINGS) {
      const got = await store.exchange.binding(b.a, b.b);
      expect(got?.id, b.id).to.equal(b.id);
      expect(got?.via, b.id).to.equal(b.via);
      expect(got?.createdAt, b.id).to.be.at.least(FIXTURE_CLOCK);
      const devices = { [got?.a ?? ""]: got?.aDevices, [got?.b ?? ""]: got?.bDevices };
      expect(devices, b.id).to.deep.equal({ [b.a]: b.aDevices, [b.b]: b.bDevices });
    }
    expect((await store.exchange.bindings(JID.dave)).map((b) => b.id).sort()).to.deep.equal([
      "b-bob-dave",
      "b-carol-dave",
    ]);
    expect(await store.exchange.binding(UNBOUND.a, UNBOUND.b)).to.equal(undefined);
    for (const p of POLICIES)
      expect((await store.cards.share(p.owner, p.holder))?.policy).to.deep.equal(p.policy);
    expect((await store.cards.share(JID.bob, JID.alice))?.policy).to.equal(null);
    for (const [owner, blocked] of BLOCKS)
      expect(await store.exchange.isBlocked(owner, blocked)).to.equal(true);
    // erin lost dave's card (and dave erin's, who has none): pull sync reports the removal.
    const sync = await store.cards.sync(JID.erin, 0, 100);
    expect(sync.entries).to.deep.equal([{ seq: sync.entries[0]?.seq, owner: JID.dave, removed: true }]);
    // dave's sync holds carol's card filtered by carol's policy.
    const daveSync = await store.cards.sync(JID.dave, 0, 100);
    const fromCarol = daveSync.entries.find((e) => e.owner === JID.carol);
    expect(fromCarol && !fromCarol.removed && fromCarol.policy).to.deep.equal({ fields: ["fn", "email"] });
  });

  it("reads back pending requests and codes: live, expired, and the used one gone", async () => {
    const now = Date.now();
    expect(await store.exchange.pendingFor(JID.alice, now)).to.deep.equal([PENDING_REQUESTS[0]]);
    expect(await store.exchange.pendingFor(JID.dave, now)).to.deep.equal([PENDING_REQUESTS[1]]);
    expect(await store.exchange.request(DECLINED_REQUEST.id)).to.equal(undefined);
    expect(await store.exchange.code(CODES.live.code)).to.deep.equal(CODES.live);
    expect(await store.exchange.code(CODES.expired.code)).to.deep.equal(CODES.expired);
    expect(CODES.expired.expiresAt).to.be.below(now);
    expect(await store.exchange.code(CODES.used.code)).to.equal(undefined);
  });

  it("holds an outbox entry of every kind pending for the offline user, and nothing for alice", async () => {
    const due = await store.outbox.due(JID.dave, FAR_FUTURE, 100);
    expect(due.map((e) => `${e.kind} ${e.subject} v${e.version}`).sort()).to.deep.equal([
      "binding b-bob-dave v1",
      "binding b-carol-dave v1",
      "card bob@example.org v2",
      "card carol@example.org v1",
      "exchange-declined r-dave-mallory v1",
      "exchange-request r-erin-dave v1",
      "unbound erin@example.org v1",
    ]);
    const declined = due.find((e) => e.kind === "exchange-declined");
    expect(JSON.parse(declined?.payload ?? "{}")).to.deep.equal({ id: DECLINED_REQUEST.id, by: JID.mallory });
    expect(await store.outbox.count(JID.alice)).to.equal(0);
    expect(await store.outbox.count()).to.equal(17);
  });

  it("reads back push nodes, the queued notices, the budget log and the installation secret", async () => {
    for (const n of PUSH_NODES) expect(await store.push.node(n.node)).to.deep.equal(n);
    const byId = (a: { id: string }, b: { id: string }): number => a.id.localeCompare(b.id);
    const due = (await store.push.due(FAR_FUTURE, 100)).sort(byId);
    // createdAt is the fixed clock's reading when queued (the script does not choose it).
    for (const j of due) expect(j.createdAt, j.id).to.be.at.least(FIXTURE_CLOCK);
    expect(due.map(({ createdAt: _c, ...j }) => j)).to.deep.equal(
      [...PUSH_JOBS].sort(byId).map((j) => ({ ...j, attempts: 0, nextAt: 0 })),
    );
    expect(await store.push.sentSince(SENT_JOB.token, 0)).to.have.length(1);
    expect(await store.push.secret("push-ref-key")).to.equal(PUSH_REF_KEY);
  });

  it("reads back the persisted resource and the presence subscriber", async () => {
    expect(await store.presence.all()).to.deep.equal([RESOURCE]);
    expect(await store.presence.isSubscriber(SUBSCRIBER)).to.equal(true);
  });

  it("the reads changed nothing, and the script writes the same rows again", () => {
    // The reads wrote nothing: every row is as committed, but for the later legacy versions' own records.
    const now = dumpRows(store.db);
    now.schema_migrations = (now.schema_migrations ?? []).filter((r) => Number(r.version) <= SCHEMA_VERSION);
    expect(now).to.deep.equal(written);
    // The script is deterministic: two runs of this code write the same rows...
    const [one, two] = ["again-1.sqlite", "again-2.sqlite"].map((f) => {
      const out = path.join(dir, f);
      execFileSync(process.execPath, [SCRIPT, out], { stdio: "pipe" });
      return dumpFile(out);
    }) as [RowDump, RowDump];
    expect(Object.keys(one)).to.have.length.above(10);
    expect(one).to.deep.equal(two);
    // ...and the same data as the committed file. Only the fixed clock's readings may differ: the clock steps
    // once per Date.now() call, and code changes since the fixture was made read it a different number of times.
    expect(masked(one)).to.deep.equal(masked(written));
  });
});
