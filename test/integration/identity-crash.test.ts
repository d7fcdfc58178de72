/**
 * Durability of a JID move (issue 12; PROTOCOL.md §23.4): cardlink (its own process) is SIGKILLed in the middle of
 * the move's unit of work — after every row moved and every holder's notice was appended, before COMMIT — and the
 * move is then found not started (the old JID still primary, every binding still the old JID's, the offer still
 * open), can be accepted again after the restart, and completes. A second move is killed right after its COMMIT and
 * is found done, with the holders' notices delivered after the restart. 2,000 holders are seeded, so the unit of
 * work is a real fan-out, and one of them is online to see the notices.
 */
import { expect } from "chai";
import Database from "better-sqlite3";
import { mkdtempSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { cardHash, normalizeCard, type Card } from "../../stanzas/model/card.js";
import { NS } from "../../stanzas/ns.js";
import { SqliteStore } from "../../storage/sqlite/store.js";
import { CardlinkProcess } from "../harness/cardlink.js";
import { cardClient, type CardClient } from "../harness/cardclient.js";
import { xml } from "../harness/clients.js";
import { legacyBind, legacyCard } from "../harness/legacy-seed.js";
import { sleep, waitFor } from "../harness/ports.js";
import { newXmppServer } from "../harness/server.js";

const HOLDERS = 2000;

describe("durability: cardlink SIGKILLed in the middle of a JID move (2,000 holders)", function () {
  this.timeout(240_000);
  const prosody = newXmppServer();
  const dir = mkdtempSync(path.join(os.tmpdir(), "cardlink-move-crash-"));
  const db = path.join(dir, "cardlink.sqlite");
  const jid = (u: string): string => `${u}@${prosody.host}`;
  const clients: CardClient[] = [];
  let proc: CardlinkProcess | undefined;

  /**
   * The database as the dead process left it: per JID its state and whether it names the original account (the one
   * the bindings were seeded on), and how many holders each JID's account has.
   */
  function state(): { ids: Record<string, string>; holdersOf: Record<string, number>; offers: number } {
    const d = new Database(db, { readonly: true });
    try {
      const original = (
        d.prepare("SELECT owner AS id FROM shares GROUP BY owner ORDER BY COUNT(*) DESC LIMIT 1").get() as {
          id: number;
        }
      ).id;
      const rows = d
        .prepare(
          "SELECT value, state, is_primary, account_id FROM identifiers WHERE kind = 'jid' AND value LIKE 'mover%'",
        )
        .all() as Array<{ value: string; state: string; is_primary: number; account_id: number }>;
      const ids = Object.fromEntries(
        rows.map((i) => [
          i.value,
          `${i.state}${i.is_primary === 1 ? ":primary" : ""}:${i.account_id === original ? "original" : "own"}`,
        ]),
      );
      const holdersOf: Record<string, number> = {};
      for (const u of ["mover", "mover2", "mover3"]) {
        const r = d
          .prepare(
            `SELECT COUNT(*) AS n FROM shares s JOIN identifiers i ON i.account_id = s.owner
             WHERE i.kind = 'jid' AND i.value = ? AND i.state = 'active'`,
          )
          .get(jid(u)) as { n: number };
        holdersOf[u] = Number(r.n);
      }
      const offers = (
        d.prepare("SELECT COUNT(*) AS n FROM identity_moves WHERE state = 'offered'").get() as { n: number }
      ).n;
      return { ids, holdersOf, offers: Number(offers) };
    } finally {
      d.close();
    }
  }
  async function run(fault?: string): Promise<CardlinkProcess> {
    const p = CardlinkProcess.forProsody(prosody, db, fault ? { CARDLINK_TEST_FAULT: fault } : {});
    p.start();
    await p.waitForEvent("connected", 1, 30_000);
    proc = p;
    return p;
  }
  const connect = async (u: string): Promise<CardClient> => {
    const c = await cardClient(prosody, u, { resource: "phone" });
    clients.push(c);
    return c;
  };
  const identity = (c: CardClient, name: string, attrs: Record<string, string>) =>
    c.iqRaw("set", c.comp, xml(name, { xmlns: NS.IDENTITY, ...attrs }));

  before(async () => {
    await prosody.start();
    await prosody.createUsers(
      ["mover", "mover2", "mover3", "watcher"].map((u) => ({ user: u, password: `${u}pw` })),
    );
    const store = new SqliteStore(db);
    const v1: Card = normalizeCard({
      fn: "Mover",
      nickname: [],
      tel: [],
      email: [],
      adr: [],
      url: [],
      impp: [],
      categories: [],
    });
    legacyCard(store.db, jid("mover"), v1, cardHash(v1));
    const holders = [
      jid("watcher"),
      ...Array.from({ length: HOLDERS - 1 }, (_, i) => `h${i}@${prosody.host}`),
    ];
    holders.forEach((h, i) =>
      legacyBind(
        store.db,
        { id: `b${i}`, a: jid("mover"), b: h, aDevices: [], bDevices: [], via: "code" },
        Date.now(),
      ),
    );
    await store.close();
  });
  after(async () => {
    await Promise.allSettled(clients.map((c) => c.stop()));
    await proc?.kill("SIGKILL");
    await prosody.stop();
    prosody.cleanup();
  });

  it("killed before COMMIT: not started; accepted again after the restart: done, and the online holder is told", async () => {
    let p = await run("sigkill-during:identity.moved");
    const mover = await connect("mover");
    const mover2 = await connect("mover2");
    const watcher = await connect("watcher");
    const offered = await identity(mover, "move", { kind: "jid", to: jid("mover2") });
    expect(offered.attrs.type, offered.toString()).to.equal("result");
    expect(state().holdersOf.mover).to.equal(HOLDERS);
    // The accept's unit of work kills the process before COMMIT: no answer comes.
    const exited = new Promise<number | null>((r) => p.proc?.once("exit", (code) => r(code)));
    void identity(mover2, "move-accept", { from: jid("mover") }).catch(() => undefined);
    await exited;
    expect(p.events().some((e) => e.event === "fault-armed")).to.equal(true);
    const s = state();
    // Not started: the old JID is still the original account's; the new JID's own (empty) account is untouched.
    expect(s.ids).to.deep.equal({
      [jid("mover")]: "active:primary:original",
      [jid("mover2")]: "active:primary:own",
    });
    expect(s.holdersOf).to.deep.equal({ mover: HOLDERS, mover2: 0, mover3: 0 });
    expect(s.offers).to.equal(1);
    expect(watcher.updates.filter((u) => u.kind === "moved")).to.deep.equal([]);

    p = await run();
    // The clients reconnect their presence to the new process by any request; the offer is still open.
    await sleep(500);
    await watcher.xmpp.send(xml("presence", { to: watcher.comp }));
    const done = await identity(mover2, "move-accept", { from: jid("mover") });
    expect(done.attrs.type, done.toString()).to.equal("result");
    const s2 = state();
    // Done: the new JID is the original account's primary (its own empty account absorbed), the old one held.
    expect(s2.ids).to.deep.equal({
      [jid("mover")]: "held:original",
      [jid("mover2")]: "active:primary:original",
    });
    expect(s2.holdersOf).to.deep.equal({ mover: 0, mover2: HOLDERS, mover3: 0 });
    const moved = await watcher.waitForUpdate((u) => u.kind === "moved", "moved at the watcher", 60_000);
    expect(moved.content.getChildText("new-jid")).to.equal(jid("mover2"));
  });

  it("killed right after COMMIT: done; the holder's notice arrives after the restart", async () => {
    const mover2 = clients.find((c) => c.jid.startsWith(`${jid("mover2")}/`)) as CardClient;
    const watcher = clients.find((c) => c.jid.startsWith(`${jid("watcher")}/`)) as CardClient;
    await proc?.kill("SIGKILL");
    let p = await run("sigkill-after-commit:identity.move");
    await sleep(500);
    const mover3 = await connect("mover3");
    await watcher.xmpp.send(xml("presence", { to: watcher.comp }));
    const offered = await identity(mover2, "move", { kind: "jid", to: jid("mover3") });
    expect(offered.attrs.type, offered.toString()).to.equal("result");
    const before = watcher.updates.length;
    const exited = new Promise<number | null>((r) => p.proc?.once("exit", (code) => r(code)));
    void identity(mover3, "move-accept", { from: jid("mover2") }).catch(() => undefined);
    await exited;
    const s = state();
    expect(s.ids).to.deep.equal({
      [jid("mover")]: "held:original",
      [jid("mover2")]: "held:original",
      [jid("mover3")]: "active:primary:original",
    });
    expect(s.holdersOf).to.deep.equal({ mover: 0, mover2: 0, mover3: HOLDERS });
    expect(watcher.updates.slice(before).filter((u) => u.kind === "moved")).to.deep.equal([]);
    p = await run();
    await sleep(500);
    await watcher.xmpp.send(xml("presence", { to: watcher.comp }));
    const moved = await watcher.waitForUpdate(
      (u) => u.kind === "moved" && u.content.getChildText("new-jid") === jid("mover3"),
      "moved at the watcher after the restart",
      60_000,
    );
    expect(moved.content.getChildText("old-jid")).to.equal(jid("mover2"));
    await waitFor(() => p.events().some((e) => e.event === "connected"), "still up");
  });
});
