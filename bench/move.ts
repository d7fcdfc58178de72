/**
 * A JID move of an account with 10,000 holders (issue 12; PROTOCOL.md §23.4): cardlink as its own process next to
 * a real Prosody, the holders seeded into SQLite (bindings as the exchange writes them), `ONLINE` of them logged in
 * over XMPP with directed presence to cardlink. Per round, the account moves to a fresh JID (offer by the old JID,
 * accept by the new one) and we measure
 *   - commit_ms: from sending `<move-accept/>` to its result (cardlink answers after COMMIT), and
 *   - told_ms: from sending it until every online holder has received the `moved` notice,
 * next to the anchor measured in the same run on the same account and holders: a card change (`<card/>` set), the
 * same audience fan-out without the identifier rewrite. Medians of the rounds; compare the ratios.
 *
 * usage: node dist/bench/move.js [--holders 10000] [--online 300] [--rounds 3]
 */
import { mkdtempSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { performance } from "node:perf_hooks";
import { xml, type Element } from "@xmpp/xml";
import { cardHash, normalizeCard } from "../stanzas/model/card.js";
import { NS } from "../stanzas/ns.js";
import { SCHEMA_2000 } from "../storage/sqlite/schema-2000.js";
import { SqliteStore } from "../storage/sqlite/store.js";
import { CardlinkProcess } from "../test/harness/cardlink.js";
import { sleep } from "../test/harness/ports.js";
import { benchProsody, connect, once, stopCardlink, type FullClient } from "./iq.js";
import { median, note, round, runMain } from "./lib.js";

const PASSWORD = "bench-pw";

export interface MoveBenchOptions {
  holders?: number;
  online?: number;
  rounds?: number;
}

function seed(db: SqliteStore["db"], host: string, holders: number): void {
  const now = Date.now();
  const ins = {
    account: db.prepare("INSERT INTO accounts (id, state, created_at, seen_at) VALUES (?, 'active', ?, ?)"),
    jid: db.prepare(
      "INSERT INTO identifiers (kind, value, account_id, state, is_primary, verified_at, created_at) VALUES ('jid', ?, ?, 'active', 1, ?, ?)",
    ),
    cursor: db.prepare("INSERT INTO stream_cursors (account_id, consumer, pos, seen_at) VALUES (?, 0, 0, ?)"),
    card: db.prepare(
      "INSERT INTO cards (account_id, version, hash, card, seq, updated_at) VALUES (1, 1, ?, ?, 1, ?)",
    ),
    binding: db.prepare(
      "INSERT INTO bindings (id, a, b, a_devices, b_devices, via, created_at) VALUES (?, 1, ?, '[]', '[]', 'code', ?)",
    ),
    share: db.prepare(
      "INSERT INTO shares (owner, holder, binding_id, policy, seq) VALUES (?, ?, ?, NULL, 2)",
    ),
  };
  const card = normalizeCard({
    fn: "Mover",
    nickname: [],
    tel: [],
    email: [],
    adr: [],
    url: [],
    impp: [],
    categories: [],
  });
  db.transaction(() => {
    for (let i = 0; i <= holders; i++) {
      const id = i + 1;
      ins.account.run(id, now, now);
      ins.jid.run(i === 0 ? `mover0@${host}` : `h${i}@${host}`, id, now, now);
      ins.cursor.run(id, now);
      if (i > 0) {
        ins.binding.run(`b${id}`, id, now);
        ins.share.run(1, id, `b${id}`);
        ins.share.run(id, 1, `b${id}`);
      }
    }
    ins.card.run(cardHash(card), JSON.stringify(card), now);
    db.prepare("UPDATE counters SET value = 2 WHERE name = 'seq'").run();
  })();
}

export async function run(opts: MoveBenchOptions = {}): Promise<Record<string, unknown>> {
  const holders = opts.holders ?? 10_000;
  const online = Math.min(opts.online ?? 300, holders);
  const rounds = opts.rounds ?? 3;
  const prosody = await benchProsody("warn");
  const dir = mkdtempSync(path.join(os.tmpdir(), "cardlink-bench-move-"));
  const db = path.join(dir, "cardlink.sqlite");
  let cardlink: CardlinkProcess | null = null;
  const clients: FullClient[] = [];
  try {
    {
      const store = new SqliteStore(db, { legacy: false });
      await store.migrate([SCHEMA_2000]);
      seed(store.db, prosody.host, holders);
      await store.close();
    }
    await prosody.start();
    prosody.createUsers(
      [
        ...Array.from({ length: rounds + 1 }, (_, r) => `mover${r}`),
        ...Array.from({ length: online }, (_, i) => `h${i + 1}`),
      ].map((user) => ({ user, password: PASSWORD })),
    );
    cardlink = CardlinkProcess.forProsody(prosody, db, {
      CARDLINK_LOG_LEVEL: "warn",
      CARDLINK_DATA_DIR: dir,
    });
    cardlink.start();
    const comp = prosody.componentDomain;
    // Per round, which online holders saw the notice (or the anchor's card) and when the last one did.
    const seen = { moved: new Set<number>(), card: new Set<number>(), lastAt: 0, want: "" };
    const movers: FullClient[] = [];
    for (let r = 0; r <= rounds; r++) {
      movers.push(await connect(prosody.c2sPort, prosody.host, `mover${r}`));
    }
    // cardlink answers pings once it is up.
    for (const deadline = Date.now() + 30_000; ;) {
      const p = await once(
        movers[0] as FullClient,
        xml("iq", { type: "get", to: comp }, xml("ping", { xmlns: "urn:xmpp:ping" })),
        1000,
      ).catch(() => null);
      if (p?.attrs.type === "result") break;
      if (Date.now() > deadline) throw new Error(`cardlink did not start: ${cardlink.output.slice(-2000)}`);
      await sleep(200);
    }
    note(`move: ${holders} holders seeded; logging in ${online} of them`);
    for (let i = 0; i < online; i += 50) {
      const batch = await Promise.all(
        Array.from({ length: Math.min(50, online - i) }, (_, k) => {
          const n = i + k + 1;
          return connect(prosody.c2sPort, prosody.host, `h${n}`, (u: Element) => {
            for (const up of u.getChildren("update")) {
              if (
                up.attrs.kind === "moved" &&
                up.getChild("moved", NS.MOVED)?.getChildText("new-jid") === seen.want
              ) {
                if (!seen.moved.has(n)) {
                  seen.moved.add(n);
                  seen.lastAt = performance.now();
                }
              }
              if (
                up.attrs.kind === "card" &&
                up.getChild("card", NS.CARDLINK)?.toString().includes(seen.want)
              ) {
                if (!seen.card.has(n)) {
                  seen.card.add(n);
                  seen.lastAt = performance.now();
                }
              }
            }
          });
        }),
      );
      for (const c of batch) await c.send(xml("presence", { to: comp }));
      clients.push(...batch);
    }
    await sleep(2000); // presences recorded
    const iq = async (
      c: FullClient,
      name: string,
      attrs: Record<string, string>,
      ns: string = NS.IDENTITY,
      children: Element[] = [],
    ) => {
      const r = await once(
        c,
        xml("iq", { type: "set", to: comp }, xml(name, { xmlns: ns, ...attrs }, ...children)),
        300_000,
      );
      if (r.attrs.type !== "result") throw new Error(`${name}: ${r.toString().slice(0, 400)}`);
      return r;
    };
    const waitAll = async (set: Set<number>, what: string): Promise<void> => {
      const deadline = Date.now() + 600_000;
      while (set.size < online) {
        if (Date.now() > deadline) throw new Error(`${what}: ${set.size}/${online} online holders told`);
        await sleep(20);
      }
    };
    const move: Array<{ commit: number; told: number }> = [];
    const card: Array<{ commit: number; told: number }> = [];
    for (let r = 0; r < rounds; r++) {
      const from = movers[r] as FullClient;
      const to = movers[r + 1] as FullClient;
      // Anchor: a card change of the account (as its current JID), to the same holders.
      seen.card.clear();
      seen.want = `Mover v${r + 2}`;
      let t0 = performance.now();
      await iq(from, "card", {}, NS.CARDLINK, [
        xml("vcard", { xmlns: NS.VCARD4 }, xml("fn", {}, xml("text", {}, seen.want))),
      ]);
      const cardCommit = performance.now() - t0;
      await waitAll(seen.card, "card");
      card.push({ commit: cardCommit, told: seen.lastAt - t0 });
      // The move.
      await iq(from, "move", { kind: "jid", to: `mover${r + 1}@${prosody.host}` });
      seen.moved.clear();
      seen.want = `mover${r + 1}@${prosody.host}`;
      t0 = performance.now();
      await iq(to, "move-accept", { from: `mover${r}@${prosody.host}` });
      const commit = performance.now() - t0;
      await waitAll(seen.moved, "moved");
      move.push({ commit, told: seen.lastAt - t0 });
      note(
        `move: round ${r + 1}: move commit ${round(commit)} ms, told ${round(seen.lastAt - t0)} ms; card ${round(cardCommit)} / ${round(card.at(-1)?.told ?? 0)} ms`,
      );
    }
    const m = { commit: median(move.map((x) => x.commit)), told: median(move.map((x) => x.told)) };
    const c = { commit: median(card.map((x) => x.commit)), told: median(card.map((x) => x.told)) };
    return {
      holders,
      online_holders: online,
      rounds,
      move_commit_ms_p50: round(m.commit, 1),
      move_all_online_told_ms_p50: round(m.told, 1),
      anchor_card_change_commit_ms_p50: round(c.commit, 1),
      anchor_card_change_all_online_told_ms_p50: round(c.told, 1),
      ratio_move_vs_card_commit: round(m.commit / c.commit, 2),
      ratio_move_vs_card_told: round(m.told / c.told, 2),
      rounds_raw: { move, card },
    };
  } finally {
    await Promise.allSettled(clients.map((c) => c.stop()));
    if (cardlink) await stopCardlink(cardlink);
    await prosody.stop();
  }
}

function arg(flag: string): number | undefined {
  const i = process.argv.indexOf(flag);
  return i >= 0 ? Number(process.argv[i + 1]) : undefined;
}

runMain(import.meta.url, "move", () => {
  const o: MoveBenchOptions = {};
  const h = arg("--holders");
  const on = arg("--online");
  const r = arg("--rounds");
  if (h !== undefined) o.holders = h;
  if (on !== undefined) o.online = on;
  if (r !== undefined) o.rounds = r;
  return run(o);
});
