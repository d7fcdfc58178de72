/**
 * Address-book benchmark (issue 9, docs/BENCHMARKS.md "addressbook"): one book of 10,000 entries.
 *
 * In process, over a temporary SQLite file, through the feature's own functions (as bench/queries.ts does: the
 * real unit of work, accounts, stream queue and audience parts; no XMPP):
 *   seed              a 10,000-card `.vcf` (vCard 3.0, Apple- and Google-style cards alternating) read by
 *                     parseImport and stored by BookService.importCards: one unit of work, as `<vcf-import/>` does.
 *                     The book's cap is set to the entry count (book.maxEntries, default 5,000, allows 1–100,000).
 *   full_sync         every `<book-sync/>` page from token 0 (max 200, vCard 4), each page read in its own read
 *                     context, built and serialized as the router would send it
 *   incremental_sync  10 entries changed through BookService.update (untimed, one unit of work each), then
 *                     `<book-sync/>` from the token before them until `more='false'` (10 entries expected)
 *   export            every `<vcf-export/>` page (after = last), built and serialized
 *   import_1k         a 1,000-card `.vcf` into a fresh account's book: parseImport + importCards
 * Cases alternate in rounds (bench/lib.ts runRounds); each gives the median, p99 (of all runs) and every run, the
 * CPU the process spent per run (same process: CPU ≈ wall unless GC threads or I/O waits show), and others_cores.
 *
 * Over XMPP (--no-xmpp skips it): a real Prosody (fastAuth, log warn) and cardlink as a child process (log warn,
 * book.maxEntries set to the entry count), one @xmpp/client connection. The same book is imported by
 * `<vcf-import/>` IQs of ≤ 200 KB each (timed: xmpp_import); the one `book-changed` notice the import sends the
 * client (PROTOCOL §20.9; it used to be 10,000 `book-entry` deliveries) is awaited and timed, and the sync it asks
 * for (every page from the token before the import) is timed once; then:
 *   xmpp_full_sync    every `<book-sync/>` page from 0, one IQ at a time (max 200, vCard 4)
 *   prosody_roster    jabber:iq:roster get of a 10,000-item roster Prosody reads from its own file storage
 *                     (written before it starts; one reply stanza, no paging): the nearest thing Prosody does
 *   update_request_latency   a second user B online (directed presence, acking): `--requests` update requests
 *                     (default 200, after 5 warm-up) from the bench user about one entry, each timed from the
 *                     `<update-request/>` IQ to B's client holding the notice; B declines each before the next
 * with CPU per run for Prosody, cardlink and the client.
 *
 *   node dist/bench/addressbook.js [--entries N] [--rounds R] [--requests N] [--no-xmpp]   (from the repository root)
 *     → one JSON object on stdout; progress on stderr
 */
import { appleCard, googleCard } from "../test/harness/vcf-exports.js";
import { mkdirSync, mkdtempSync, rmSync, statSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { performance } from "node:perf_hooks";
import { xml as xxml } from "@xmpp/client";
import type { Element as XElement } from "@xmpp/xml";
import { parseImport } from "../component/features/addressbook/index.js";
import { BOOK_MIGRATIONS } from "../component/features/addressbook/migrations.js";
import { bookRepo } from "../component/features/addressbook/repo.js";
import { bookChangedKind, entryKind } from "../component/features/addressbook/render.js";
import { BookService, KIND_ENTRY } from "../component/features/addressbook/service.js";
import {
  bookSyncElement,
  bookSyncPage,
  exportPage,
  parseToken,
} from "../component/features/addressbook/sync.js";
import { cardKind } from "../component/features/cards/render.js";
import { BINDING_PATH } from "../component/features/exchange/repo.js";
import { accountsParts } from "../component/runtime/accounts/tx.js";
import { audienceParts } from "../component/runtime/audience/tx.js";
import { StanzaBudget } from "../component/runtime/budget.js";
import { defaultConfig } from "../component/runtime/config.js";
import { EventBus } from "../component/runtime/events.js";
import type { StreamKind } from "../component/runtime/queue/api.js";
import { streamTx } from "../component/runtime/queue/stream-tx.js";
import { makeReader, makeUow } from "../component/runtime/uow.js";
import type { Card } from "../stanzas/model/card.js";
import { NS } from "../stanzas/ns.js";
import { SCHEMA_2000 } from "../storage/sqlite/schema-2000.js";
import { SqliteStore } from "../storage/sqlite/store.js";
import { CardlinkProcess } from "../test/harness/cardlink.js";
import { sleep } from "../test/harness/ports.js";
import { benchProsody, connect, once, stopCardlink, type FullClient } from "./iq.js";
import {
  cpuDiff,
  findPid,
  median,
  note,
  procCpu,
  procMem,
  round,
  runMain,
  runRounds,
  systemCpu,
  type ProcCpu,
} from "./lib.js";

export interface AddressbookOptions {
  /** Entries in the book (default 10,000). */
  entries?: number;
  /** Rounds of the in-process cases and of the XMPP cases (default 5). */
  rounds?: number;
  /** Update requests timed for the request → notice latency (default 200). */
  requests?: number;
  /** Cards in the imported file of import_1k (default 1,000). */
  importCards?: number;
  /** Run the XMPP part (default true). */
  xmpp?: boolean;
}

const HOST = "localhost";
const DOMAIN = "cards.localhost";
const OWNER = `bookowner@${HOST}`;
const SYNC_MAX = 200;
const CHANGES = 10;
/** Incremental syncs per round (each after its own 10 changes): they are cheap, so several per round. */
const INCREMENTAL_PER_ROUND = 10;
/** Bytes of `.vcf` text per `<vcf-import/>` IQ over XMPP: below Prosody's and cardlink's 256 KiB inbound limit. */
const IMPORT_CHUNK_BYTES = 200_000;
const PASSWORD = "bench-pw"; // what iq.ts's connect() logs in with
const USER = "bookbench";
/** The user the latency case asks for updates (B). */
const PEER = "bookpeer";

const vcfCard = (i: number): string => (i % 2 ? googleCard(i, 5) : appleCard(i, 5));
const vcfFile = (from: number, n: number): string =>
  Array.from({ length: n }, (_, k) => vcfCard(from + k)).join("");

/** Deterministic picks (mulberry32). */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const pct = (xs: readonly number[], p: number): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))] as number;
};

interface Sample {
  ms: number;
  cpuMs: number;
  othersCores: number | null;
  extra: Record<string, number>;
}

/** Times fn (wall, this process's CPU, other processes' cores meanwhile); fn returns its own counts. */
async function timed(fn: () => Promise<Record<string, number>>): Promise<Sample> {
  const s0 = systemCpu();
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  const extra = await fn();
  const ms = performance.now() - t0;
  const c = process.cpuUsage(c0);
  const s1 = systemCpu();
  const cpuMs = (c.user + c.system) / 1000;
  return {
    ms,
    cpuMs,
    othersCores: s0 && s1 ? round(Math.max(0, s1.busyMs - s0.busyMs - cpuMs) / ms, 2) : null,
    extra,
  };
}

function summary(samples: readonly Sample[]): Record<string, unknown> {
  const ms = samples.map((s) => s.ms);
  const out: Record<string, unknown> = {
    runs: samples.length,
    median_ms: round(median(ms), 2),
    p99_ms: round(pct(ms, 99), 2),
    runs_ms: ms.map((x) => round(x, 2)),
    cpu_ms_median: round(median(samples.map((s) => s.cpuMs)), 1),
    others_cores: samples.map((s) => s.othersCores),
  };
  for (const k of Object.keys(samples[0]?.extra ?? {})) {
    const vs = samples.map((s) => s.extra[k] as number);
    out[k] = vs.every((v) => v === vs[0]) ? vs[0] : vs;
  }
  return out;
}

// ------------------------------------------------------------------------------------------------------------
// In process
// ------------------------------------------------------------------------------------------------------------

async function inProcess(
  entries: number,
  rounds: number,
  importCards: number,
): Promise<Record<string, unknown>> {
  const tmp = mkdtempSync(path.join(os.tmpdir(), "cardlink-bench-book-"));
  const file = path.join(tmp, "book.sqlite");
  const store = new SqliteStore(file, { legacy: false });
  try {
    await store.migrate([SCHEMA_2000, ...BOOK_MIGRATIONS]);
    const config = defaultConfig({});
    const events = new EventBus();
    const kinds = new Map<string, StreamKind>([
      ["card", cardKind()],
      [KIND_ENTRY, entryKind({ domain: DOMAIN })],
      [bookChangedKind.name, bookChangedKind],
    ]);
    const paths = [BINDING_PATH];
    const accounts = accountsParts({ cacheSize: 10_000, cacheTtlMs: 60_000, events });
    const audience = audienceParts({ paths });
    const unused = (): never => {
      throw new Error("addressbook bench: the jobs half is not used");
    };
    const uow = makeUow(
      store,
      {
        accounts: accounts.tx,
        stream: streamTx({ kind: (n) => kinds.get(n), paths }),
        jobs: unused,
        audience: audience.tx,
      },
      events,
    );
    const read = makeReader(store, { accounts: accounts.read, audience: audience.read });
    const book = { maxEntries: Math.max(entries, importCards), maxBytes: config.book.maxBytes };
    const svc = new BookService({ uow, read, card: config.card, book });
    const budget = new StanzaBudget(config.link.stanzaLimitBytes);

    // Seed through the real import.
    const seedText = vcfFile(0, entries);
    note(`addressbook: importing ${entries} cards (${seedText.length} bytes of .vcf)`);
    let t0 = performance.now();
    const parsed = parseImport(seedText, config.card);
    const parseMs = performance.now() - t0;
    if (parsed.errors.length > 0 || parsed.cards.length !== entries) {
      throw new Error(`seed: ${parsed.errors.length} cards not read: ${JSON.stringify(parsed.errors[0])}`);
    }
    t0 = performance.now();
    const imported = await svc.importCards(OWNER, parsed.cards);
    const storeMs = performance.now() - t0;
    if (imported.ids.length !== entries) throw new Error(`seed: ${imported.ids.length} imported`);
    const ids = imported.ids;
    const owner = await read("bench.owner", (r) => r.accounts.resolve(OWNER));
    const bookBytes = (await read("bench.usage", (r) => bookRepo(r.read).usage(owner!))).bytes;

    /** The whole sync from `since` as the router would answer it, page by page. */
    const syncAll = async (
      since: string,
    ): Promise<{ token: string; pages: number; items: number; bytes: number }> => {
      let token = since;
      let pages = 0;
      let items = 0;
      let bytes = 0;
      for (;;) {
        const page = await read("bench.book.sync", (r) =>
          bookSyncPage(r, {
            user: OWNER,
            since: parseToken(token),
            max: SYNC_MAX,
            format: "vcard4",
            budget,
            domain: DOMAIN,
          }),
        );
        bytes += Buffer.byteLength(bookSyncElement(page).toString(), "utf8");
        pages++;
        items += page.items.length;
        token = page.token;
        if (!page.more) return { token, pages, items, bytes };
        if (pages > entries) throw new Error("sync did not end");
      }
    };
    let token = (await syncAll("0")).token; // warm-up, and the token incremental syncs start from
    const rnd = prng(9);
    let variant = 0;
    const updateMs: number[] = [];
    const change = async (): Promise<void> => {
      for (let k = 0; k < CHANGES; k++) {
        const id = ids[Math.floor(rnd() * ids.length)] as string;
        const got = await svc.get(OWNER, id);
        const card: Card = { ...got.row.card, note: `changed ${++variant}` } as Card;
        const s = performance.now();
        await svc.update(OWNER, id, got.row.version, { card });
        updateMs.push(performance.now() - s);
      }
    };
    const exportAll = async (): Promise<{
      pages: number;
      bytes: number;
      stanza_bytes: number;
      cards: number;
    }> => {
      let after = "";
      let pages = 0;
      let bytes = 0;
      let stanzaBytes = 0;
      let cards = 0;
      for (;;) {
        const el = await read("bench.book.export", (r) => exportPage(r, { user: OWNER, after, budget }));
        stanzaBytes += Buffer.byteLength(el.toString(), "utf8");
        const text = el.getText();
        bytes += Buffer.byteLength(text, "utf8");
        cards += (text.match(/^BEGIN:VCARD\r?$/gm) ?? []).length;
        pages++;
        if (el.attrs.more !== "true") return { pages, bytes, stanza_bytes: stanzaBytes, cards };
        after = String(el.attrs.last);
      }
    };
    const importText = vcfFile(1_000_000, importCards);
    let importer = 0;
    const importParse: number[] = [];
    const importStore: number[] = [];
    await exportAll(); // warm-up

    type Case = "full_sync" | "incremental_sync" | "export" | "import_1k";
    const samples = await runRounds<Case, Sample[]>(
      rounds,
      ["full_sync", "incremental_sync", "export", "import_1k"],
      async (c, r) => {
        let out: Sample[];
        if (c === "full_sync") {
          out = [
            await timed(async () => {
              const s = await syncAll("0");
              if (s.items !== entries) throw new Error(`full sync: ${s.items} entries, expected ${entries}`);
              return { pages: s.pages, entries: s.items, bytes: s.bytes };
            }),
          ];
        } else if (c === "incremental_sync") {
          out = [];
          for (let k = 0; k < INCREMENTAL_PER_ROUND; k++) {
            await change();
            const since = token;
            out.push(
              await timed(async () => {
                const s = await syncAll(since);
                token = s.token;
                // Ten random picks may repeat an entry: the sync names each changed entry once.
                if (s.items < 1 || s.items > CHANGES) throw new Error(`incremental sync: ${s.items} entries`);
                return { pages: s.pages };
              }),
            );
          }
        } else if (c === "export") {
          out = [
            await timed(async () => {
              const e = await exportAll();
              if (e.cards !== entries) throw new Error(`export: ${e.cards} cards, expected ${entries}`);
              return e;
            }),
          ];
        } else {
          const user = `importer${++importer}@${HOST}`;
          out = [
            await timed(async () => {
              let s = performance.now();
              const p = parseImport(importText, config.card);
              importParse.push(performance.now() - s);
              s = performance.now();
              const done = await svc.importCards(user, p.cards);
              importStore.push(performance.now() - s);
              if (done.ids.length !== importCards) throw new Error(`import: ${done.ids.length} stored`);
              return { cards: done.ids.length, vcf_bytes: importText.length };
            }),
          ];
        }
        note(`addressbook: round ${r + 1}/${rounds} ${c}: ${round(median(out.map((s) => s.ms)), 1)} ms`);
        return out;
      },
    );
    const flat = (c: Case): Sample[] => samples[c].flat();
    return {
      seed: {
        entries,
        vcf_bytes: seedText.length,
        parse_ms: round(parseMs),
        import_store_ms: round(storeMs),
        book_json_bytes: bookBytes,
        db_mb: round(statSync(file).size / 1048576, 1),
        book_max_entries: book.maxEntries,
      },
      full_sync: summary(flat("full_sync")),
      incremental_sync: {
        changes: CHANGES,
        ...summary(flat("incremental_sync")),
        update_p50_ms: round(pct(updateMs, 50), 2),
        update_p99_ms: round(pct(updateMs, 99), 2),
        updates: updateMs.length,
      },
      export: summary(flat("export")),
      import_1k: {
        ...summary(flat("import_1k")),
        parse_median_ms: round(median(importParse), 1),
        store_median_ms: round(median(importStore), 1),
      },
      stanza_limit_bytes: config.link.stanzaLimitBytes,
    };
  } finally {
    await store.close();
    rmSync(tmp, { recursive: true, force: true });
  }
}

// ------------------------------------------------------------------------------------------------------------
// Over XMPP
// ------------------------------------------------------------------------------------------------------------

/** Prosody's internal file storage of a roster (mod_storage_internal: a Lua table per user). */
function rosterFile(n: number): string {
  const lines = ["return {", '\t[false] = { ["version"] = 1; ["pending"] = {}; };'];
  for (let i = 0; i < n; i++) {
    const j = `contact${String(i).padStart(5, "0")}@example.org`;
    const name = i % 2 ? `Grace Hopper ${i}` : `Johnny Appleseed ${i}`;
    lines.push(
      `\t["${j}"] = { ["subscription"] = "both"; ["groups"] = { ["Friends"] = true; }; ["name"] = "${name}"; };`,
    );
  }
  lines.push("};", "");
  return lines.join("\n");
}

/**
 * Request → notice latency with B online: A (the bench user) asks B (PEER, connected, directed presence to
 * cardlink, acking its updates) about one entry of A's book, `requests` times; each sample is from sending the
 * `<update-request/>` IQ to B's client holding the `update-request` notice. B declines each before the next (one
 * open request per pair). Median and p99 of the samples.
 */
async function requestLatency(
  port: number,
  host: string,
  comp: string,
  iqA: (type: "get" | "set", payload: XElement, timeoutMs?: number) => Promise<XElement>,
  requests: number,
): Promise<Record<string, unknown>> {
  const waiting = new Map<string, () => void>();
  const seen = new Map<string, number>();
  const b = await connect(port, host, PEER, (u) => {
    for (const up of u.getChildren("update")) {
      if (up.attrs.kind !== "update-request") continue;
      const id = String(up.getChild("update-request", NS.BOOK_REQUEST)?.attrs.id);
      seen.set(id, performance.now());
      waiting.get(id)?.();
    }
  });
  try {
    await b.send(xxml("presence", { to: comp }));
    const iqB = async (type: "get" | "set", payload: XElement): Promise<XElement> => {
      const reply = await once(b, xxml("iq", { type, to: comp }, payload), 60_000);
      if (reply.attrs.type !== "result")
        throw new Error(`${payload.name}: ${reply.toString().slice(0, 500)}`);
      return reply;
    };
    await iqB("get", xxml("ping", { xmlns: "urn:xmpp:ping" }));
    const peer = `${PEER}@${host}`;
    const created = await iqA(
      "set",
      xxml(
        "entry",
        { xmlns: NS.BOOK },
        xxml(
          "vcard",
          { xmlns: NS.VCARD4 },
          xxml("fn", {}, xxml("text", {}, "Book Peer")),
          xxml("impp", {}, xxml("uri", {}, `xmpp:${peer}`)),
        ),
      ),
    );
    const entry = String(created.getChild("entry", NS.BOOK)?.attrs.id);
    const samples: number[] = [];
    for (let i = 0; i < requests + 5; i++) {
      const t0 = performance.now();
      let arrived = (): void => undefined;
      const got = new Promise<void>((resolve) => (arrived = resolve));
      const r = await iqA("set", xxml("update-request", { xmlns: NS.BOOK_REQUEST, entry }));
      const id = String(r.getChild("update-request", NS.BOOK_REQUEST)?.attrs.id);
      if (!seen.has(id)) {
        waiting.set(id, arrived);
        await Promise.race([
          got,
          sleep(30_000).then(() => {
            throw new Error(`update notice ${id} did not arrive`);
          }),
        ]);
        waiting.delete(id);
      }
      const ms = (seen.get(id) as number) - t0;
      if (i >= 5) samples.push(ms); // the first five warm up
      await iqB("set", xxml("decline", { xmlns: NS.BOOK_REQUEST, id }));
    }
    const sorted = [...samples].sort((x, y) => x - y);
    return {
      requests: samples.length,
      median_ms: round(median(samples), 2),
      p99_ms: round(sorted[Math.min(sorted.length - 1, Math.ceil(sorted.length * 0.99) - 1)] ?? 0, 2),
      max_ms: round(sorted[sorted.length - 1] ?? 0, 2),
      what: "update-request IQ sent by A → B's client holds the update-request notice (B online, acking)",
    };
  } finally {
    await b.stop().catch(() => undefined);
  }
}

async function overXmpp(entries: number, rounds: number, requests: number): Promise<Record<string, unknown>> {
  const prosody = await benchProsody("warn");
  const dataDir = mkdtempSync(path.join(os.tmpdir(), "cardlink-bench-book-xmpp-"));
  let cardlink: CardlinkProcess | null = null;
  let xmpp: FullClient | null = null;
  try {
    // The roster before Prosody starts: it reads it from this file at the first roster get.
    const rosterDir = path.join(
      prosody.runDir,
      "data",
      encodeURIComponent(prosody.host).replace(/\./g, "%2e"),
      "roster",
    );
    mkdirSync(rosterDir, { recursive: true });
    writeFileSync(path.join(rosterDir, `${USER}.dat`), rosterFile(entries));
    await prosody.start();
    prosody.createUsers([
      { user: USER, password: PASSWORD },
      { user: PEER, password: PASSWORD },
    ]);
    const prosodyPid = findPid(prosody.configFile);
    const cfgFile = path.join(dataDir, "config.json");
    // Update requests: the hourly brake opened for the latency case (one request per round trip, ≥ 100).
    writeFileSync(cfgFile, JSON.stringify({ book: { maxEntries: entries + 1, requestsPerHour: 10_000 } }));
    cardlink = CardlinkProcess.forProsody(prosody, path.join(dataDir, "cardlink.sqlite"), {
      CARDLINK_LOG_LEVEL: "warn",
      CARDLINK_DATA_DIR: dataDir,
      CARDLINK_CONFIG: cfgFile,
    });
    cardlink.start();
    const cardlinkPid = cardlink.proc?.pid;
    const comp = prosody.componentDomain;
    let delivered = 0;
    let changedAt = 0;
    xmpp = await connect(prosody.c2sPort, prosody.host, USER, (u) => {
      for (const up of u.getChildren("update")) {
        if (up.attrs.kind === KIND_ENTRY) delivered++;
        if (up.attrs.kind === "book-changed") changedAt = performance.now();
      }
    });
    const client = xmpp;
    const iq = async (type: "get" | "set", payload: XElement, timeoutMs = 60_000): Promise<XElement> => {
      const reply = await once(client, xxml("iq", { type, to: comp }, payload), timeoutMs);
      if (reply.attrs.type !== "result")
        throw new Error(`${payload.name}: ${reply.toString().slice(0, 500)}`);
      return reply;
    };
    const deadline = Date.now() + 15_000;
    for (;;) {
      const r = await once(
        client,
        xxml("iq", { type: "get", to: comp }, xxml("ping", { xmlns: "urn:xmpp:ping" })),
        1000,
      ).catch(() => null);
      if (r?.attrs.type === "result") break;
      if (Date.now() > deadline || cardlink.proc?.exitCode != null) {
        throw new Error(`cardlink did not answer pings: ${cardlink.output.slice(-2000)}`);
      }
      await sleep(100);
    }

    // The book, imported over the wire in files of ≤ IMPORT_CHUNK_BYTES.
    const chunks: string[] = [];
    let cur = "";
    for (let i = 0; i < entries; i++) {
      const c = vcfCard(i);
      if (cur.length + c.length > IMPORT_CHUNK_BYTES) {
        chunks.push(cur);
        cur = "";
      }
      cur += c;
    }
    if (cur) chunks.push(cur);
    note(`addressbook: xmpp: importing ${entries} cards in ${chunks.length} <vcf-import/> IQs`);
    let lastImportSent = 0;
    const imp = await cpuRun(prosodyPid, cardlinkPid, async () => {
      let n = 0;
      for (const text of chunks) {
        lastImportSent = performance.now();
        const r = await iq("set", xxml("vcf-import", { xmlns: NS.BOOK }, text));
        n += Number(r.getChild("vcf-import", NS.BOOK)?.attrs.imported ?? 0);
      }
      if (n !== entries) throw new Error(`xmpp import: ${n} imported`);
      return {};
    });
    // The import tells this resource once to sync (`book-changed`, PROTOCOL §20.9); before that change every
    // entry came as its own `book-entry` (10,000 deliveries, 34–47 s here). Timed: from sending the last import
    // IQ to the notice (it can arrive before that IQ's answer), then the sync the notice asks for.
    const quietBy = Date.now() + 300_000;
    const waitNotice = async (): Promise<void> => {
      while (changedAt < lastImportSent) {
        if (Date.now() > quietBy) throw new Error("no book-changed after the import");
        await sleep(20);
      }
    };
    const noticeMs = (): number => changedAt - lastImportSent;
    await sleep(1000);

    const syncAll = async (): Promise<Record<string, number>> => {
      let token = "0";
      let pages = 0;
      let items = 0;
      for (;;) {
        const r = await iq("get", xxml("book-sync", { xmlns: NS.BOOK, since: token, max: String(SYNC_MAX) }));
        const s = r.getChild("book-sync", NS.BOOK) as XElement;
        pages++;
        items += s.getChildren("entry").length;
        token = String(s.attrs.token);
        if (s.attrs.more !== "true") break;
      }
      if (items !== entries) throw new Error(`xmpp full sync: ${items} entries, expected ${entries}`);
      return { pages, entries: items };
    };
    const rosterGet = async (): Promise<Record<string, number>> => {
      const reply = await once(
        client,
        xxml("iq", { type: "get" }, xxml("query", { xmlns: "jabber:iq:roster" })),
        60_000,
      );
      const items = reply.getChild("query", "jabber:iq:roster")?.getChildren("item").length ?? 0;
      if (reply.attrs.type !== "result" || items !== entries) {
        throw new Error(`roster get: ${String(reply.attrs.type)}, ${items} items`);
      }
      return { items, reply_bytes: Buffer.byteLength(reply.toString(), "utf8") };
    };
    // Catch-up, as the "before" run measured its 10,000 deliveries: from the import's end until this resource
    // holds every entry — the notice, then the sync it asks for (from token 0: the book was empty before).
    const afterNotice = await cpuRun(prosodyPid, cardlinkPid, async () => {
      await waitNotice();
      return syncAll();
    });
    const deliveryMs = noticeMs();
    if (delivered !== 0) throw new Error(`${delivered} book-entry deliveries after an import`);
    await rosterGet();
    type Case = "xmpp_full_sync" | "prosody_roster";
    const samples = await runRounds<Case, XSample>(
      rounds,
      ["xmpp_full_sync", "prosody_roster"],
      async (c, r) => {
        const s = await cpuRun(prosodyPid, cardlinkPid, c === "xmpp_full_sync" ? syncAll : rosterGet);
        note(`addressbook: round ${r + 1}/${rounds} ${c}: ${round(s.ms, 1)} ms`);
        return s;
      },
    );
    const xsum = (xs: XSample[]): Record<string, unknown> => ({
      runs: xs.length,
      median_ms: round(median(xs.map((s) => s.ms)), 1),
      runs_ms: xs.map((s) => round(s.ms, 1)),
      cpu_ms_median: {
        prosody: medOrNull(xs.map((s) => s.prosodyMs)),
        cardlink: medOrNull(xs.map((s) => s.cardlinkMs)),
        client: round(median(xs.map((s) => s.clientMs)), 1),
      },
      others_cores: xs.map((s) => s.othersCores),
      ...xs[0]?.extra,
    });
    return {
      import: {
        iqs: chunks.length,
        ms: round(imp.ms),
        cpu_ms: { prosody: imp.prosodyMs, cardlink: imp.cardlinkMs, client: round(imp.clientMs) },
        others_cores: imp.othersCores,
        book_changed_notice_ms_from_last_import_iq: round(deliveryMs),
        book_entry_deliveries_after_import: delivered,
        catch_up: {
          what: "import end → book-changed → full <book-sync/> done",
          ms: round(afterNotice.ms),
          prosody_cpu_ms: afterNotice.prosodyMs,
          cardlink_cpu_ms: afterNotice.cardlinkMs,
          client_cpu_ms: round(afterNotice.clientMs),
        },
      },
      update_request_latency: await requestLatency(prosody.c2sPort, prosody.host, comp, iq, requests),
      xmpp_full_sync: xsum(samples.xmpp_full_sync),
      prosody_roster: xsum(samples.prosody_roster),
      ratio_full_sync_vs_roster: round(
        median(samples.xmpp_full_sync.map((s) => s.ms)) / median(samples.prosody_roster.map((s) => s.ms)),
        2,
      ),
      memory: { cardlink: procMem(cardlinkPid), prosody: procMem(prosodyPid) },
      setup:
        "Prosody 'warn', fastAuth; cardlink child, log warn, SQLite, book.maxEntries = entries; one @xmpp/client",
    };
  } finally {
    if (xmpp) await xmpp.stop().catch(() => undefined);
    if (cardlink) await stopCardlink(cardlink).catch(() => undefined);
    await prosody.stop().catch(() => undefined);
    prosody.cleanup();
    rmSync(dataDir, { recursive: true, force: true });
  }
}

interface XSample {
  ms: number;
  prosodyMs: number | null;
  cardlinkMs: number | null;
  clientMs: number;
  othersCores: number | null;
  extra: Record<string, number>;
}

const cpuMs = (c: ProcCpu | null): number | null => (c ? round(c.userMs + c.systemMs) : null);
const medOrNull = (xs: Array<number | null>): number | null =>
  xs.every((x): x is number => x !== null) ? round(median(xs), 1) : null;

/** Times fn with the CPU Prosody, cardlink and this process spent, and what everything else used meanwhile. */
async function cpuRun(
  prosodyPid: number | undefined,
  cardlinkPid: number | undefined,
  fn: () => Promise<Record<string, number>>,
): Promise<XSample> {
  const p0 = procCpu(prosodyPid);
  const k0 = procCpu(cardlinkPid);
  const s0 = systemCpu();
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  const extra = await fn();
  const ms = performance.now() - t0;
  const c = process.cpuUsage(c0);
  const s1 = systemCpu();
  const prosodyMs = cpuMs(cpuDiff(p0, procCpu(prosodyPid)));
  const cardlinkMs = cpuMs(cpuDiff(k0, procCpu(cardlinkPid)));
  const clientMs = (c.user + c.system) / 1000;
  const ours = clientMs + (prosodyMs ?? 0) + (cardlinkMs ?? 0);
  return {
    ms,
    prosodyMs,
    cardlinkMs,
    clientMs,
    othersCores: s0 && s1 ? round(Math.max(0, s1.busyMs - s0.busyMs - ours) / ms, 2) : null,
    extra,
  };
}

export async function run(opts: AddressbookOptions = {}): Promise<Record<string, unknown>> {
  const entries = Math.max(10, Math.floor(opts.entries ?? 10_000));
  const rounds = Math.max(1, Math.floor(opts.rounds ?? 5));
  const importCards = Math.max(1, Math.floor(opts.importCards ?? 1_000));
  const requests = Math.max(1, Math.floor(opts.requests ?? 200));
  const started = performance.now();
  const loadBefore = round(os.loadavg()[0] ?? 0, 2);
  const local = await inProcess(entries, rounds, importCards);
  const wire = (opts.xmpp ?? true) ? await overXmpp(entries, rounds, requests) : { skipped: "--no-xmpp" };
  return {
    bench: "addressbook",
    entries,
    rounds,
    in_process: local,
    xmpp: wire,
    node: process.version,
    cpus: os.cpus().length,
    loadavg_1m_before: loadBefore,
    loadavg_1m_after: round(os.loadavg()[0] ?? 0, 2),
    duration_s: round((performance.now() - started) / 1000, 1),
  };
}

function argv(name: string): string | undefined {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

runMain(import.meta.url, "addressbook", () => {
  const entries = argv("--entries");
  const rounds = argv("--rounds");
  const requests = argv("--requests");
  return run({
    ...(requests ? { requests: Number(requests) } : {}),
    ...(entries ? { entries: Number(entries) } : {}),
    ...(rounds ? { rounds: Number(rounds) } : {}),
    ...(process.argv.includes("--no-xmpp") ? { xmpp: false } : {}),
  });
});
