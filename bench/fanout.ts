/**
 * Fan-out benchmarks (docs/BENCHMARKS.md, "fanout"):
 *  a. durable_10k: one card change of an owner with 10,000 holders through the real SqliteCards.set, i.e. one
 *     SQLite transaction (WAL, synchronous=NORMAL) writing the card and 10,000 outbox rows, until it returns.
 *  b. deliver_1k: the same path end to end: real Prosody, cardlink as a child process, 1,000 holders online;
 *     time from the owner's card IQ until every holder got the update, and until the outbox is empty (acks).
 *  c. prosody_pep: the anchor, same Prosody, same 1,000 clients: the owner publishes to a PEP node and every
 *     contact (roster subscription both, +notify through XEP-0115 caps) receives the event. Prosody's own
 *     fan-out is what cardlink competes with, so the ratio says how much the component route costs on top.
 * Prints one JSON object on stdout; progress goes to stderr. Run: node dist/bench/fanout.js
 */
import { createHash } from "node:crypto";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { performance } from "node:perf_hooks";
import Database from "better-sqlite3";
import { NS } from "../stanzas/ns.js";
import { normalizeCard, type Card } from "../stanzas/model/card.js";
import { SqliteStore } from "../storage/sqlite/store.js";
import { coreMigrations } from "../storage/index.js";
import { moduleMigrations, userDataWiring } from "../component/features.js";
import { storeCard } from "../component/features/cards/service.js";
import { offlineCore } from "../component/runtime/offline.js";
import { legacyBind } from "../test/harness/legacy-seed.js";
import { CardlinkProcess } from "../test/harness/cardlink.js";
import { connectClient, xml, type Element, type TestClient } from "../test/harness/clients.js";
import { freePort, sleep, waitFor } from "../test/harness/ports.js";
import { ProsodyServer } from "../test/harness/prosody.js";
import { cpuDiff, findPid, median, note, procCpu, round, runMain, runRounds } from "./lib.js";

export interface FanoutOptions {
  /** Holders of the owner in the durable (store-only) case. */
  durableHolders?: number;
  durableRuns?: number;
  /** Online holders (and PEP contacts) in the delivery cases. */
  onlineHolders?: number;
  rounds?: number;
  /** Concurrent logins while connecting the holders. */
  loginBatch?: number;
  skipDelivery?: boolean;
  skipPep?: boolean;
}

interface Timing {
  median_ms: number;
  runs: number[];
  per_s: number;
}

const PEP_NODE = "urn:cardlink:bench:card";
const CAPS_NODE = "https://cardlink.example/bench";
const IDENTITY = { category: "client", type: "pc", name: "cardlink-bench" };
const FEATURES = [NS.DISCO_INFO, "http://jabber.org/protocol/caps", `${PEP_NODE}+notify`].sort();
/** XEP-0115 ver: with the right hash Prosody asks one client and caches the answer for the other 999. */
const CAPS_VER = createHash("sha1")
  .update(`${IDENTITY.category}/${IDENTITY.type}//${IDENTITY.name}<${FEATURES.map((f) => `${f}<`).join("")}`)
  .digest("base64");

const emptyCard = (fn: string): Card =>
  normalizeCard({ fn, nickname: [], tel: [], email: [], adr: [], url: [], impp: [], categories: [] });

/** A realistic small card as XML (~500 bytes): the same payload goes through cardlink and through PEP. */
function vcardXml(fn: string, note: string): Element {
  const text = (name: string, v: string): Element => xml(name, {}, xml("text", {}, v));
  return xml(
    "vcard",
    { xmlns: NS.VCARD4 },
    text("fn", fn),
    xml("org", {}, xml("text", {}, "Example Corp")),
    text("title", "Head of Benchmarks"),
    xml(
      "tel",
      {},
      xml("parameters", {}, xml("type", {}, xml("text", {}, "work"))),
      xml("uri", {}, "tel:+1-555-0100"),
    ),
    xml("tel", {}, xml("uri", {}, "tel:+1-555-0199")),
    text("email", "owner@example.org"),
    xml("url", {}, xml("uri", {}, "https://example.org/owner")),
    text("note", note),
  );
}

const timing = (runs: number[], items: number): Timing => {
  const m = median(runs);
  return { median_ms: round(m, 1), runs: runs.map((r) => round(r, 1)), per_s: round(items / (m / 1000)) };
};

// ---------------------------------------------------------------------------------------------------------
// a. durable fan-out in the store alone

async function durable(dir: string, holders: number, runs: number): Promise<Record<string, unknown>> {
  const file = path.join(dir, "durable.sqlite");
  const owner = "owner@localhost";
  const t0 = performance.now();
  // The bindings as an upgraded installation has them: the old bind()'s rows (test/harness/legacy-seed.ts), in
  // one transaction, then the rekey to schema 2000 a first start applies.
  const old = new SqliteStore(file);
  old.db.transaction(() => {
    for (let i = 0; i < holders; i++) {
      legacyBind(
        old.db,
        { id: `b${i}`, a: owner, b: `h${i}@localhost`, aDevices: [], bDevices: [], via: "code" },
        Date.now(),
      );
    }
  })();
  await old.close();
  const store = new SqliteStore(file, { legacy: false });
  try {
    await store.migrate(await coreMigrations(store, moduleMigrations()));
    const core = offlineCore(store, userDataWiring());
    const shares = (
      store.db
        .prepare(
          "SELECT COUNT(*) AS n FROM shares s JOIN identifiers i ON i.account_id = s.owner AND i.value = ?",
        )
        .get(owner) as { n: number }
    ).n;
    if (shares !== holders) throw new Error(`seeded ${shares} shares, wanted ${holders}`);
    const seedMs = performance.now() - t0;
    const times: number[] = [];
    for (let r = 0; r < runs; r++) {
      // Every run starts from an empty stream and a truncated WAL: each measures inserts of fresh rows (holders
      // without a pending entry), not the cheaper in-place replace of a previous run's rows.
      store.db.exec("DELETE FROM stream_entries");
      store.db.pragma("wal_checkpoint(TRUNCATE)");
      const card = emptyCard(`Owner run ${r} ${Date.now()}`);
      const t = performance.now();
      // The card set unit of work of the running service (features/cards storeCard): the row and one stream
      // entry per holder, durable at COMMIT.
      const res = await storeCard(core, owner, card);
      times.push(performance.now() - t);
      const queued = (store.db.prepare("SELECT COUNT(*) AS n FROM stream_entries").get() as { n: number }).n;
      if (!res.changed || res.holders.length !== holders || queued !== holders)
        throw new Error(`run ${r}: ${res.holders.length} holders, ${queued} stream entries`);
    }
    const m = median(times);
    return {
      holders,
      median_ms: round(m, 1),
      runs: times.map((x) => round(x, 1)),
      entries_per_s: round(holders / (m / 1000)),
      seed_ms: round(seedMs),
    };
  } finally {
    await store.close();
  }
}

// ---------------------------------------------------------------------------------------------------------
// b + c. delivery through Prosody

interface Progress {
  /** Holders that must receive each update / event. */
  expected: number;
  /** cardlink round: card version every holder must reach. */
  version: number;
  cardGot: number;
  cardAllAt: number;
  /** PEP round: item id every contact must receive. */
  item: string;
  pepGot: number;
  pepAllAt: number;
  discoQueries: number;
  /** IQ errors the holders sent (should stay 0: each one makes cardlink drop that resource as gone). */
  clientErrors: number;
  lastClientError: string;
}

const name = (i: number): string => `h${String(i).padStart(4, "0")}`;

/** Prosody's internal storage path for a host (the same encoding ProsodyServer.createUsers uses). */
const storeDir = (prosody: ProsodyServer, kind: string): string =>
  path.join(prosody.runDir, "data", encodeURIComponent(prosody.host).replace(/\./g, "%2e"), kind);

/**
 * Rosters written as Prosody 0.12's internal storage (data/<host>/roster/<user>.dat, a Lua table that
 * core/rostermanager reads: `[false]` holds the metadata, each other key is a contact JID). Mutual "both"
 * subscriptions without 2,000 subscription handshakes over XMPP.
 */
function writeRosters(prosody: ProsodyServer, owner: string, holders: string[]): void {
  const dir = storeDir(prosody, "roster");
  mkdirSync(dir, { recursive: true });
  const jid = (u: string): string => `${u}@${prosody.host}`;
  const item = (u: string): string =>
    `\t[${JSON.stringify(jid(u))}] = { ["subscription"] = "both"; ["groups"] = {}; ["name"] = ${JSON.stringify(u)}; };\n`;
  const file = (items: string[]): string =>
    `return {\n\t[false] = { ["version"] = 1; ["pending"] = {}; };\n${items.join("")}};\n`;
  writeFileSync(path.join(dir, `${owner}.dat`), file(holders.map(item)));
  for (const h of holders) writeFileSync(path.join(dir, `${h}.dat`), file([item(owner)]));
}

async function connectHolder(
  prosody: ProsodyServer,
  user: string,
  ownerJid: string,
  progress: Progress,
): Promise<TestClient> {
  // What this holder has seen: the newest card version and the PEP item ids (duplicates do not count twice).
  const seen = { version: 0, items: new Set<string>() };
  const client = await connectClient({
    port: prosody.c2sPort,
    domain: prosody.host,
    username: user,
    password: `${user}pw`,
    resource: "phone",
    sendPresence: false,
    onIq: (iq) => {
      const updates = iq.getChild("updates", NS.CARDLINK);
      if (updates) {
        for (const u of updates.getChildren("update")) {
          const card = u.getChild("card", NS.CARDLINK);
          if (u.attrs.kind !== "card" || card?.attrs.owner !== ownerJid) continue;
          const v = Number(card.attrs.version);
          if (v > seen.version) {
            seen.version = v;
            if (v >= progress.version && ++progress.cardGot === progress.expected)
              progress.cardAllAt = performance.now();
          }
        }
        return undefined; // the IQ result is cardlink's ack
      }
      const q = iq.getChild("query", NS.DISCO_INFO);
      if (iq.attrs.type === "get" && q) {
        // Prosody's mod_pep asks for the caps node to learn which nodes this client wants (+notify).
        progress.discoQueries++;
        return xml(
          "query",
          { xmlns: NS.DISCO_INFO, node: q.attrs.node },
          xml("identity", IDENTITY),
          ...FEATURES.map((f) => xml("feature", { var: f })),
        );
      }
      throw new Error("service-unavailable");
    },
  });
  client.xmpp.on("send", (el: Element) => {
    if (el.is("iq") && el.attrs.type === "error") {
      progress.clientErrors++;
      progress.lastClientError = el.toString().slice(0, 300);
    }
  });
  client.xmpp.on("stanza", (el: Element) => {
    if (!el.is("message")) return;
    const id = el
      .getChild("event", "http://jabber.org/protocol/pubsub#event")
      ?.getChild("items")
      ?.getChild("item")?.attrs.id as string | undefined;
    if (id === undefined || seen.items.has(id)) return;
    seen.items.add(id);
    if (id === progress.item && ++progress.pepGot === progress.expected)
      progress.pepAllAt = performance.now();
  });
  // Broadcast presence with caps (reaches the owner's bare JID, where mod_pep records +notify interest), then
  // directed presence to cardlink (how it learns this resource is online).
  await client.xmpp.send(
    xml(
      "presence",
      {},
      xml("c", { xmlns: "http://jabber.org/protocol/caps", hash: "sha-1", node: CAPS_NODE, ver: CAPS_VER }),
    ),
  );
  await client.xmpp.send(xml("presence", { to: prosody.componentDomain }));
  return client;
}

async function deliver(
  dir: string,
  n: number,
  rounds: number,
  batch: number,
  withPep: boolean,
): Promise<Record<string, unknown>> {
  const logFile = path.join(dir, "prosody.log");
  // The harness logs at debug (every stanza), which would multiply Prosody's cost per stanza: warn only here.
  // mod_smacks off: @xmpp/client 0.14 resets its inbound counter when it handles <enabled/>, after it may
  // already have counted (and acked, on an <r/>) stanzas that arrived in the same read; its next <a/> is then
  // lower and Prosody drops the session ("Client acknowledged less stanzas than already acknowledged"),
  // bouncing cardlink's updates in flight. That is the bench client's bug; it disconnected ~10-40% of 1,000.
  const prosody = new ProsodyServer({
    fastAuth: true,
    extraGlobal: [
      `log = { warn = ${JSON.stringify(logFile)} }`,
      `modules_disabled = { "s2s", "dialback", "tls", "smacks" }`,
    ].join("\n"),
  });
  const dbFile = path.join(dir, "deliver.sqlite");
  let proc: CardlinkProcess | undefined;
  const clients: TestClient[] = [];
  let reader: Database.Database | undefined;
  try {
    await prosody.start();
    const users = Array.from({ length: n }, (_, i) => name(i));
    prosody.createUsers([
      { user: "owner", password: "ownerpw" },
      ...users.map((u) => ({ user: u, password: `${u}pw` })),
    ]);
    writeRosters(prosody, "owner", users);
    const ownerJid = `owner@${prosody.host}`;

    // The bindings as an upgraded installation has them (the old bind()'s rows, one transaction): cardlink
    // rekeys the file to schema 2000 at start; the pending rows are then its stream entries.
    const store = new SqliteStore(dbFile);
    store.db.transaction(() => {
      for (let i = 0; i < n; i++)
        legacyBind(
          store.db,
          {
            id: `b${i}`,
            a: ownerJid,
            b: `${name(i)}@${prosody.host}`,
            aDevices: [],
            bDevices: [],
            via: "code",
          },
          Date.now(),
        );
    })();
    // The binding notices bind() queued are not what is measured: start with an empty outbox.
    store.db.exec("DELETE FROM outbox");
    await store.close();

    const metricsPort = await freePort();
    proc = CardlinkProcess.forProsody(prosody, dbFile, { CARDLINK_METRICS_PORT: String(metricsPort) });
    proc.start();
    await proc.waitForEvent("connected", 1, 15_000);

    const progress: Progress = {
      expected: n,
      version: Number.MAX_SAFE_INTEGER,
      cardGot: 0,
      cardAllAt: 0,
      item: "",
      pepGot: 0,
      pepAllAt: 0,
      discoQueries: 0,
      clientErrors: 0,
      lastClientError: "",
    };
    const owner = await connectClient({
      port: prosody.c2sPort,
      domain: prosody.host,
      username: "owner",
      password: "ownerpw",
      resource: "desk",
    });
    clients.push(owner);
    const tLogin = performance.now();
    for (let i = 0; i < n; i += batch) {
      const part = await Promise.allSettled(
        users.slice(i, i + batch).map((u) => connectHolder(prosody, u, ownerJid, progress)),
      );
      // Keep every client that did connect, so the finally below closes it even when another login failed.
      for (const r of part) if (r.status === "fulfilled") clients.push(r.value);
      const failed = part.find((r) => r.status === "rejected");
      if (failed) throw new Error(`holder login failed: ${String((failed as PromiseRejectedResult).reason)}`);
    }
    const loginMs = performance.now() - tLogin;
    note(`fanout: ${n} holders connected in ${round(loginMs)} ms`);

    const prosodyPid = findPid(prosody.configFile);
    const cardlinkPid = proc.proc?.pid;
    reader = new Database(dbFile, { readonly: true, fileMustExist: true });
    const outboxCount = reader.prepare("SELECT COUNT(*) AS n FROM stream_entries");
    const outboxSize = (): number => (outboxCount.get() as { n: number }).n;

    let version = 0;
    /** One cardlink round: card IQ → every holder has the new version → outbox empty. */
    const cardRound = async (label: string): Promise<Record<string, number>> => {
      version++;
      Object.assign(progress, { version, cardGot: 0, cardAllAt: 0 });
      const cpu0 = [procCpu(prosodyPid), procCpu(cardlinkPid)];
      const self0 = process.cpuUsage();
      const t0 = performance.now();
      const reply = await owner.iq(
        "set",
        prosody.componentDomain,
        xml("card", { xmlns: NS.CARDLINK }, vcardXml(`Owner ${label}`, `${label} ${Date.now()}`)),
      );
      const tReply = performance.now();
      const got = Number(reply.getChild("card", NS.CARDLINK)?.attrs.version);
      if (got !== version) throw new Error(`card IQ answered version ${got}, expected ${version}`);
      await waitFor(() => progress.cardGot >= n, `card v${version} at all ${n} holders`, 120_000);
      // Acks travel back after the last holder received: the outbox empties shortly after.
      await waitFor(() => outboxSize() === 0, "outbox empty", 60_000).catch(async (e: unknown) => {
        const left = reader?.prepare(`SELECT * FROM stream_entries LIMIT 5`).all();
        const m = await metrics(metricsPort);
        throw new Error(
          `${(e as Error).message}: ${outboxSize()} left, e.g. ${JSON.stringify(left)}; ${m}; client errors ${progress.clientErrors}: ${progress.lastClientError}`,
        );
      });
      const tEmpty = performance.now();
      const cpu1 = [procCpu(prosodyPid), procCpu(cardlinkPid)];
      const self = process.cpuUsage(self0);
      return {
        reply_ms: tReply - t0,
        all_ms: progress.cardAllAt - t0,
        empty_ms: tEmpty - t0,
        prosody_cpu_ms: cpuTotal(cpuDiff(cpu0[0] ?? null, cpu1[0] ?? null)),
        cardlink_cpu_ms: cpuTotal(cpuDiff(cpu0[1] ?? null, cpu1[1] ?? null)),
        bench_cpu_ms: (self.user + self.system) / 1000,
      };
    };
    let items = 0;
    const pepRound = async (label: string): Promise<Record<string, number>> => {
      const item = `i${++items}`;
      Object.assign(progress, { item, pepGot: 0, pepAllAt: 0 });
      const cpu0 = procCpu(prosodyPid);
      const self0 = process.cpuUsage();
      const t0 = performance.now();
      await owner.iq(
        "set",
        ownerJid,
        xml(
          "pubsub",
          { xmlns: NS.PUBSUB },
          xml(
            "publish",
            { node: PEP_NODE },
            xml("item", { id: item }, vcardXml(`Owner ${label}`, `${label} ${Date.now()}`)),
          ),
        ),
      );
      const tReply = performance.now();
      await waitFor(() => progress.pepGot >= n, `PEP item ${item} at all ${n} contacts`, 60_000);
      const self = process.cpuUsage(self0);
      return {
        reply_ms: tReply - t0,
        all_ms: progress.pepAllAt - t0,
        prosody_cpu_ms: cpuTotal(cpuDiff(cpu0, procCpu(prosodyPid))),
        bench_cpu_ms: (self.user + self.system) / 1000,
      };
    };

    // Warm-up, and the check that both paths reach everyone before anything is timed (a PEP setup that
    // silently notifies nobody would otherwise look infinitely fast).
    await cardRound("warm-up");
    let pepSkip: string | undefined;
    if (withPep) {
      try {
        await pepRound("warm-up");
      } catch (e) {
        const got = progress.pepGot;
        pepSkip = `PEP warm-up reached ${got} of ${n} contacts (${(e as Error).message}); disco queries seen: ${progress.discoQueries}`;
      }
    } else pepSkip = "disabled by option";
    const cases = pepSkip ? (["cardlink"] as const) : (["cardlink", "pep"] as const);
    const results = await runRounds(rounds, cases, async (c, r) => {
      await sleep(500); // let the previous round's trailing traffic (acks, presence) settle
      const out = c === "cardlink" ? await cardRound(`round ${r}`) : await pepRound(`round ${r}`);
      note(
        `fanout: ${c} round ${r}: ${JSON.stringify(Object.fromEntries(Object.entries(out).map(([k, v]) => [k, round(v, 1)])))}`,
      );
      return out;
    });
    const card = results.cardlink;
    const cardlink = {
      ...timing(
        card.map((x) => x.all_ms as number),
        n,
      ),
      reply_median_ms: round(median(card.map((x) => x.reply_ms as number)), 1),
      outbox_empty_median_ms: round(median(card.map((x) => x.empty_ms as number)), 1),
      prosody_cpu_ms: card.map((x) => x.prosody_cpu_ms as number),
      cardlink_cpu_ms: card.map((x) => x.cardlink_cpu_ms as number),
      bench_cpu_ms: card.map((x) => round(x.bench_cpu_ms as number)),
    };
    let pep: Record<string, unknown> = { skipped: pepSkip };
    let ratio: Record<string, number> = {};
    if (!pepSkip && "pep" in results) {
      const p = (results as Record<"pep", Array<Record<string, number>>>).pep;
      const t = timing(
        p.map((x) => x.all_ms as number),
        n,
      );
      pep = {
        node: PEP_NODE,
        ...t,
        reply_median_ms: round(median(p.map((x) => x.reply_ms as number)), 1),
        prosody_cpu_ms: p.map((x) => x.prosody_cpu_ms as number),
        bench_cpu_ms: p.map((x) => round(x.bench_cpu_ms as number)),
        disco_queries: progress.discoQueries,
      };
      // CPU is less noisy than wall time on a shared 2-core machine: server-side CPU per 1,000 deliveries
      // (Prosody + cardlink) against Prosody's alone for the PEP broadcast.
      const serverCpu = median(card.map((x) => (x.prosody_cpu_ms as number) + (x.cardlink_cpu_ms as number)));
      ratio = {
        ratio_rate_cardlink_vs_pep: round(cardlink.per_s / t.per_s, 3),
        ratio_time_cardlink_vs_pep: round(cardlink.median_ms / t.median_ms, 2),
        ratio_server_cpu_cardlink_vs_pep: round(
          serverCpu / median(p.map((x) => x.prosody_cpu_ms as number)),
          2,
        ),
      };
    }
    return {
      holders: n,
      login_ms: round(loginMs),
      cardlink,
      prosody_pep: pep,
      ...ratio,
      client_iq_errors: progress.clientErrors,
    };
  } finally {
    reader?.close();
    // Closing 1,000 streams at once is fine for Prosody; batches keep the bench's own event loop responsive.
    for (let i = 0; i < clients.length; i += 100)
      await Promise.all(clients.slice(i, i + 100).map((c) => c.stop()));
    await proc?.kill("SIGTERM");
    await prosody.stop();
    prosody.cleanup();
  }
}

/** cardlink's delivery counters (Prometheus text), for the error message when a round does not complete. */
async function metrics(port: number): Promise<string> {
  try {
    const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
    return text
      .split("\n")
      .filter((l) => /^cardlink_(delivery|iq|fanout|users)/.test(l))
      .join("; ");
  } catch (e) {
    return `metrics unavailable: ${(e as Error).message}`;
  }
}

const cpuTotal = (c: { userMs: number; systemMs: number } | null): number => (c ? c.userMs + c.systemMs : -1);

export async function run(opts: FanoutOptions = {}): Promise<Record<string, unknown>> {
  const dir = mkdtempSync(path.join(os.tmpdir(), "cardlink-bench-fanout-"));
  try {
    const out: Record<string, unknown> = { bench: "fanout" };
    note("fanout: durable 10k");
    out.durable_10k = await durable(dir, opts.durableHolders ?? 10_000, opts.durableRuns ?? 5);
    if (!opts.skipDelivery) {
      note("fanout: delivery through Prosody");
      out.deliver_1k = await deliver(
        dir,
        opts.onlineHolders ?? 1000,
        opts.rounds ?? 3,
        opts.loginBatch ?? 50,
        !opts.skipPep,
      );
    }
    return out;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

runMain(import.meta.url, "fanout", () => run());
