import { expect } from "chai";
import { mkdtempSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import Database from "better-sqlite3";
import { SqliteStore } from "../../storage/sqlite/store.js";
import type { OutboxItem } from "../../storage/store.js";

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

/** Row count of every table: the whole database's state, compared before and after. */
function counts(file: string): Record<string, number> {
  const db = new Database(file, { readonly: true });
  try {
    const out: Record<string, number> = {};
    for (const { name } of db.prepare("SELECT name FROM sqlite_master WHERE type = 'table'").all() as Array<{
      name: string;
    }>)
      out[name] = (db.prepare(`SELECT count(*) AS n FROM "${name}"`).get() as { n: number }).n;
    return out;
  } finally {
    db.close();
  }
}

describe("Store.deleteUser is one transaction", () => {
  let file: string;
  let store: SqliteStore;
  beforeEach(async () => {
    file = path.join(mkdtempSync(path.join(os.tmpdir(), "cardlink-unit-")), "db.sqlite");
    store = new SqliteStore(file);
    await store.cards.set("a@x", card("A"), "ha");
    await store.cards.set("b@x", card("B"), "hb");
    await store.devices.upsert({ owner: "a@x", deviceId: "d1", platform: "ios", pushToken: "t1" }, 20);
    await store.exchange.bind(
      { id: "b1", a: "a@x", b: "b@x", aDevices: ["d1"], bDevices: [], via: "code" },
      undefined,
      1,
    );
    await store.exchange.block("a@x", "c@x", 10);
  });
  afterEach(() => store.close());

  it("a failure while writing the notices (the last step) leaves every table as it was", async () => {
    const before = counts(file);
    expect(before.cards).to.equal(2);
    // A notice the outbox cannot hold (recipient NOT NULL): the enqueue fails after every DELETE ran.
    const broken = (): OutboxItem[] => [
      { recipient: null as unknown as string, kind: "unbound", subject: "a@x", version: 1 },
    ];
    let failed: unknown;
    await store.deleteUser("a@x", broken).catch((e: unknown) => (failed = e));
    expect(String(failed)).to.match(/NOT NULL/);
    expect(counts(file)).to.deep.equal(before);
    expect(await store.cards.get("a@x")).to.not.equal(undefined);
    expect(await store.exchange.binding("a@x", "b@x")).to.not.equal(undefined);
  });

  it("a notify callback that throws writes nothing either", async () => {
    const before = counts(file);
    let peersSeen: string[] = [];
    await store
      .deleteUser("a@x", (peers) => {
        peersSeen = peers;
        throw new Error("no");
      })
      .catch(() => undefined);
    expect(peersSeen).to.deep.equal(["b@x"]);
    expect(counts(file)).to.deep.equal(before);
    const r = await store.deleteUser("a@x", (peers) =>
      peers.map((p) => ({ recipient: p, kind: "unbound", subject: "a@x", version: 1 })),
    );
    expect(r.peers).to.deep.equal(["b@x"]);
    expect(r.rows).to.include({ cards: 1, devices: 1, bindings: 1, shares: 2, blocks: 1 });
    expect(await store.outbox.count("b@x")).to.equal(1);
  });
});
