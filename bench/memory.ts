/**
 * Memory benchmark (docs/BENCHMARKS.md, "memory"): the resident size of a cardlink process whose database holds
 * 100,000 users with a card each and 1,000,000 bindings (2,000,000 directed shares), connected to a real
 * Prosody and serving a few real requests. The question it answers: does cardlink's memory grow with what is
 * stored? (It should not: everything lives in SQLite; the process keeps only online resources and in-flight
 * work.) Prints one JSON object on stdout; progress goes to stderr. Run: node dist/bench/memory.js
 */
import { randomUUID } from "node:crypto";
import { mkdtempSync, rmSync, statSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { performance } from "node:perf_hooks";
import { NS } from "../stanzas/ns.js";
import { cardHash, normalizeCard, type Card } from "../stanzas/model/card.js";
import { SqliteStore } from "../storage/sqlite/store.js";
import { CardlinkProcess } from "../test/harness/cardlink.js";
import { cardClient, cardSummary, tel, type CardClient } from "../test/harness/cardclient.js";
import { sleep, waitFor } from "../test/harness/ports.js";
import { ProsodyServer } from "../test/harness/prosody.js";
import { note, procMem, round, runMain } from "./lib.js";

export interface MemoryOptions {
  users?: number;
  /** Each user i is bound to users i+1 … i+k (mod users): users × k binding rows, twice as many shares. */
  bindingsPerUser?: number;
  /** Online holders of the user whose card changes (they ack the update). */
  onlineHolders?: number;
}

const HOST = "localhost";
const uname = (i: number): string => `u${String(i).padStart(6, "0")}`;
const ujid = (i: number): string => `${uname(i)}@${HOST}`;

/** A small but realistic card (~250 bytes of JSON): name, organisation, one phone number, one address. */
function smallCard(i: number): Card {
  return normalizeCard({
    fn: `User ${i}`,
    org: { name: "Example Corp", units: [] },
    nickname: [],
    tel: [{ key: "", types: ["cell"], uri: `tel:+1-555-${String(i).padStart(7, "0")}` }],
    email: [{ key: "", types: [], value: `${uname(i)}@example.org` }],
    adr: [],
    url: [],
    impp: [],
    categories: [],
  });
}

const fileMb = (f: string): number => {
  try {
    return statSync(f).size / 1048576;
  } catch {
    return 0;
  }
};

/**
 * Seeds through the real schema (SqliteStore runs the migrations) with plain INSERTs in large transactions:
 * going through bind() would also write 2 outbox rows and a seq bump per binding, which is not the state a
 * long-running server is in (its outbox drains). Same columns and formats as SqliteExchange.bind writes.
 */
function seed(file: string, users: number, k: number): { ms: number; bindings: number; shares: number } {
  const t0 = performance.now();
  const store = new SqliteStore(file);
  const db = store.db;
  // Seeding only (cardlink later opens its own connection with its own defaults): a big page cache keeps the
  // random-order index inserts (UUID keys, shares by holder) from thrashing.
  db.pragma("cache_size = -262144");
  const now = Date.now();
  const insCard = db.prepare(
    "INSERT INTO cards (owner, version, hash, card, seq, updated_at) VALUES (?, 1, ?, ?, 1, ?)",
  );
  const insBinding = db.prepare(
    "INSERT INTO bindings (id, a, b, a_devices, b_devices, via, created_at) VALUES (?, ?, ?, '[]', '[]', 'code', ?)",
  );
  const insShare = db.prepare(
    "INSERT INTO shares (owner, holder, binding_id, policy, seq) VALUES (?, ?, ?, NULL, 2)",
  );
  const chunk = 10_000;
  for (let start = 0; start < users; start += chunk) {
    db.transaction(() => {
      for (let i = start; i < Math.min(users, start + chunk); i++) {
        const c = smallCard(i);
        insCard.run(ujid(i), cardHash(c), JSON.stringify(c), now);
        for (let d = 1; d <= k; d++) {
          const x = ujid(i);
          const y = ujid((i + d) % users);
          // Bindings are stored with a < b (SqliteExchange's invariant); both directed shares reference it.
          const [a, b] = x < y ? [x, y] : [y, x];
          const id = randomUUID();
          insBinding.run(id, a, b, now);
          insShare.run(a, b, id);
          insShare.run(b, a, id);
        }
      }
    })();
    if ((start / chunk) % 10 === 9) note(`memory: seeded ${start + chunk} users`);
  }
  db.prepare("UPDATE meta SET value = '2' WHERE key = 'seq'").run();
  const count = (t: string): number =>
    (db.prepare(`SELECT COUNT(*) AS n FROM ${t}`).get() as { n: number }).n;
  const bindings = count("bindings");
  const shares = count("shares");
  db.pragma("wal_checkpoint(TRUNCATE)");
  db.close();
  return { ms: performance.now() - t0, bindings, shares };
}

export async function run(opts: MemoryOptions = {}): Promise<Record<string, unknown>> {
  const users = opts.users ?? 100_000;
  const k = opts.bindingsPerUser ?? 10;
  const online = Math.min(opts.onlineHolders ?? 5, 2 * k);
  const dir = mkdtempSync(path.join(os.tmpdir(), "cardlink-bench-memory-"));
  const dbFile = path.join(dir, "memory.sqlite");
  // smacks off for the same reason as in bench/fanout.ts (the bench client's stream-management counter).
  const prosody = new ProsodyServer({
    fastAuth: true,
    extraGlobal: [
      `log = { warn = ${JSON.stringify(path.join(dir, "prosody.log"))} }`,
      `modules_disabled = { "s2s", "dialback", "tls", "smacks" }`,
    ].join("\n"),
  });
  let proc: CardlinkProcess | undefined;
  const clients: CardClient[] = [];
  try {
    note(`memory: seeding ${users} users, ${users * k} bindings`);
    const seeded = seed(dbFile, users, k);
    const dbMb = fileMb(dbFile);
    note(`memory: seeded in ${round(seeded.ms)} ms, ${round(dbMb, 1)} MB`);

    await prosody.start();
    // User 0's holders are users 1…k and users-k…users-1 (the ring): those are the ones that log in.
    const holders = [
      ...Array.from({ length: k }, (_, d) => d + 1),
      ...Array.from({ length: k }, (_, d) => users - 1 - d),
    ];
    const accounts = [0, ...holders.slice(0, online)];
    prosody.createUsers(accounts.map((i) => ({ user: uname(i), password: `${uname(i)}pw` })));

    const t0 = performance.now();
    proc = CardlinkProcess.forProsody(prosody, dbFile, { CARDLINK_LOG_LEVEL: "info" });
    proc.start();
    await proc.waitForEvent("connected", 1, 30_000);
    const startMs = performance.now() - t0;
    const pid = proc.proc?.pid;
    await sleep(1000);
    const idle = procMem(pid);

    const owner = await cardClient(prosody, uname(0));
    clients.push(owner);
    for (const i of accounts.slice(1)) clients.push(await cardClient(prosody, uname(i)));
    const holderClients = clients.slice(1);
    // Real requests: a card change fanned out to 2k holders (the online ones ack), the owner's contact list
    // (2k bindings with both shares and each peer's card), a holder's full pull sync (2k cards).
    const reply = await owner.setCard(`User 0 changed ${Date.now()}`, [tel("tel:+1-555-0100", "work")]);
    const version = Number(reply.getChild("card", NS.CARDLINK)?.attrs.version);
    await waitFor(
      () =>
        holderClients.every((h) =>
          h.updates.some((u) => u.kind === "card" && cardSummary(u.content).version === version),
        ),
      "update at the online holders",
      30_000,
    );
    const contacts = await owner.cardlink("get", "contacts");
    const nContacts = contacts.getChild("contacts", NS.CARDLINK)?.getChildren("contact").length ?? 0;
    const sync = await (holderClients[0] as CardClient).cardlink("get", "sync", { since: "0" });
    const nSync = sync.getChild("sync", NS.CARDLINK)?.getChildren("card").length ?? 0;
    if (nContacts !== 2 * k || nSync !== 2 * k)
      throw new Error(`contacts ${nContacts}, sync ${nSync}: expected ${2 * k} each`);
    await sleep(1000);
    const after = procMem(pid);
    return {
      bench: "memory",
      users,
      bindings: seeded.bindings,
      shares: seeded.shares,
      cards: users,
      seed_ms: round(seeded.ms),
      db_mb: round(dbMb, 1),
      db_mb_after: round(fileMb(dbFile) + fileMb(`${dbFile}-wal`), 1),
      start_to_connected_ms: round(startMs),
      idle_rss_mb: idle?.rssMb ?? null,
      rss_mb: after?.rssMb ?? null,
      hwm_mb: after?.peakRssMb ?? null,
      requests: {
        card_update_holders: 2 * k,
        acked_by_online: online,
        contacts: nContacts,
        sync_cards: nSync,
      },
    };
  } finally {
    await Promise.all(clients.map((c) => c.stop()));
    await proc?.kill("SIGTERM");
    await prosody.stop();
    prosody.cleanup();
    rmSync(dir, { recursive: true, force: true });
  }
}

runMain(import.meta.url, "memory", () => run());
