/**
 * Fan-out benchmarks (docs/BENCHMARKS.md "fanout", docs/REDESIGN.md §7.2), on the new core (schema 2000):
 *  a. durable_10k: one card change of an owner with 10,000 holders through the real storeCard, i.e. one unit of
 *     work (card row + one INSERT … SELECT appending 10,000 stream entries; WAL, synchronous=NORMAL).
 *  b. single_change (the former deliver_1k): real Prosody, cardlink as a child process, 1,000 holders online;
 *     one owner changes; timed until every holder has the new version, and until every ack is written.
 *  c. many_owners: 100 owners × the same 1,000 holders; all owners change at once (100 IQs fired together);
 *     timed until every holder has all 100 new versions. updates_applied_per_s = 100,000 / time.
 *  d. prosody_pep: the anchor of b and c, same Prosody, same clients: the owners publish the same vCard to a PEP
 *     node and every contact (roster subscription both, +notify through XEP-0115 caps) receives the event.
 *  e. group (optional, --group N): N users all bound to each other (or, with --group-via group, all in one contact
 *     group: the `group` path of features/groups), every one changes once, against PEP with
 *     full-mesh rosters (docs/BENCHMARKS.md says why §7.2's 1,000 is not the default).
 * cardlink runs once per *variant* (a delivery.* config), each its own process, component domain and database
 * on the same Prosody, so knob settings are compared within one run and one minute.
 *
 *   node dist/bench/fanout.js [--owners N] [--holders N] [--rounds R] [--only single,many|group] [--skip-pep]
 *        [--skip-durable] [--variant NAME='{"delivery":{…}}' …] [--probe] [--group N [--group-rounds R] [--group-via bindings|group]]
 *        [--cardlink-cpu-prof DIR]
 *
 * A variant's JSON may carry `"declare": "vcf"`: its holders declare a device with the compact update form
 * (PROTOCOL §10.8), e.g. --variant default='{}' --variant compact='{"declare":"vcf"}'.
 *
 * --probe: after the rounds, a bare component of the bench's own prices <updates/> payload shapes in Prosody's
 * CPU. FANOUT_PROSODY_LOG=info logs Prosody at info (default warn) for diagnosis; CARDLINK_KEEP_PROSODY=1 keeps
 * its directory (the test harness's switch).
 * Prints one JSON object on stdout; progress goes to stderr.
 */
import { createHash } from "node:crypto";
import { Component } from "@xmpp/component-core";
import { copyFileSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { performance } from "node:perf_hooks";
import Database from "better-sqlite3";
import { cardKind, CardRenderCache } from "../component/features/cards/render.js";
import { storeCard } from "../component/features/cards/service.js";
import { BINDING_PATH } from "../component/features/exchange/repo.js";
import { moduleMigrations } from "../component/features.js";
import { accountsParts } from "../component/runtime/accounts/tx.js";
import { audienceParts } from "../component/runtime/audience/tx.js";
import { EventBus } from "../component/runtime/events.js";
import { streamTx } from "../component/runtime/queue/stream-tx.js";
import { makeUow } from "../component/runtime/uow.js";
import { generateProsodyConfig } from "../scripts/prosody-config.js";
import type { UpdateFormat } from "../stanzas/cardlink.js";
import { NS } from "../stanzas/ns.js";
import { cardHash, DEFAULT_CARD_LIMITS, normalizeCard, type Card } from "../stanzas/model/card.js";
import { parseVCard4, serializeVCard4 } from "../stanzas/vcard4.js";
import { cardToVcf } from "../stanzas/vcf.js";
import { SCHEMA_2000 } from "../storage/sqlite/schema-2000.js";
import { SqliteStore } from "../storage/sqlite/store.js";
import { CardlinkProcess } from "../test/harness/cardlink.js";
import { connectClient, xml, type Element, type TestClient } from "../test/harness/clients.js";
import { freePort, sleep, waitFor } from "../test/harness/ports.js";
import { ProsodyServer } from "../test/harness/prosody.js";
import {
  cpuDiff,
  findPid,
  isMain,
  median,
  note,
  printJson,
  procCpu,
  procMem,
  round,
  runRounds,
  systemCpu,
  type ProcCpu,
} from "./lib.js";

/** A cardlink configuration measured side by side with the others (its own process and component domain). */
export interface Variant {
  name: string;
  /** Merged into cardlink's JSON config file (e.g. `{delivery: {coalesceWindowMs: 100}}`). */
  config: Record<string, unknown>;
  /**
   * Holders declare a registered device to this variant (`<active-device id='bench' format?/>` in their directed
   * presence, PROTOCOL §10.7/§10.8): 'vcf' asks for the compact update form, 'vcard4' declares without it.
   * Absent: they declare nothing (the shared cursor, what the other variants measure). The variant's database
   * copy gets each holder's device and its cursor, and the holders' shared cursors dormant (a user whose only
   * client declares; otherwise the shared cursor would hold every entry).
   */
  declare?: UpdateFormat;
}

export interface FanoutOptions {
  /** Holders of the owner in the durable (store-only) case. */
  durableHolders?: number;
  durableRuns?: number;
  skipDurable?: boolean;
  /** Owners that change at once in many_owners (the first one is single_change's owner). */
  owners?: number;
  /** Online holders of every owner (and PEP contacts). */
  holders?: number;
  rounds?: number;
  /** Concurrent logins while connecting the clients. */
  loginBatch?: number;
  skipDelivery?: boolean;
  skipPep?: boolean;
  /** Which delivery cases run (default both). */
  only?: ReadonlyArray<"single" | "many">;
  /** cardlink configurations (default: one, the shipped defaults). */
  variants?: readonly Variant[];
  /** Members of the all-pairs group case (default 0: not run). */
  group?: number;
  groupRounds?: number;
  /** How the group case's users are connected: all pairs bound (default, as before) or one contact group. */
  groupVia?: "bindings" | "group";
  /** Run the cardlink children under `node --cpu-prof`, profiles written into this directory when they stop. */
  cardlinkCpuProf?: string;
  /**
   * After the rounds, a component of the bench's own (no cardlink) sends every holder `<updates/>` IQs of fixed
   * shapes (1 or 20 updates; the card as vCard4 XML or as one vCard text), rounds of each: Prosody's CPU per IQ
   * and per update by shape, i.e. what the payload's form costs Prosody apart from cardlink.
   */
  probe?: boolean;
}

const PEP_NODE = "urn:cardlink:bench:card";
const CAPS_NODE = "https://cardlink.example/bench";
const IDENTITY = { category: "client", type: "pc", name: "cardlink-bench" };
const FEATURES = [NS.DISCO_INFO, "http://jabber.org/protocol/caps", `${PEP_NODE}+notify`].sort();
/** XEP-0115 ver: with the right hash Prosody asks a few clients and caches the answer for the others. */
const CAPS_VER = createHash("sha1")
  .update(`${IDENTITY.category}/${IDENTITY.type}//${IDENTITY.name}<${FEATURES.map((f) => `${f}<`).join("")}`)
  .digest("base64");
/** The device id every holder registers in a declaring variant (Variant.declare). */
const BENCH_DEVICE = "bench";
/** Every how many-th `<updates/>` IQ a holder serializes to measure bytes per IQ (serializing all costs CPU). */
const BYTES_SAMPLE = 16;

/** A realistic small card as XML (~500 bytes): the same payload goes through cardlink and through PEP. */
function vcardXml(fn: string, text: string): Element {
  const t = (name: string, v: string): Element => xml(name, {}, xml("text", {}, v));
  return xml(
    "vcard",
    { xmlns: NS.VCARD4 },
    t("fn", fn),
    xml("org", {}, xml("text", {}, "Example Corp")),
    t("title", "Head of Benchmarks"),
    xml(
      "tel",
      {},
      xml("parameters", {}, xml("type", {}, xml("text", {}, "work"))),
      xml("uri", {}, "tel:+1-555-0100"),
    ),
    xml("tel", {}, xml("uri", {}, "tel:+1-555-0199")),
    t("email", "owner@example.org"),
    xml("url", {}, xml("uri", {}, "https://example.org/owner")),
    t("note", text),
  );
}

const smallCard = (fn: string): Card =>
  normalizeCard({
    fn,
    org: { name: "Example Corp", units: [] },
    nickname: [],
    tel: [{ key: "", types: ["work"], uri: "tel:+1-555-0100" }],
    email: [{ key: "", types: [], value: "owner@example.org" }],
    adr: [],
    url: [],
    impp: [],
    categories: [],
  });

const cpuTotal = (c: ProcCpu | null): number => (c ? c.userMs + c.systemMs : -1);

// ---------------------------------------------------------------------------------------------------------
// Seeding schema 2000 directly (the steady state of a running server: accounts, cursors, bindings, no backlog)

interface SeedSpec {
  /** Bare JIDs; account id = index + 1. */
  users: readonly string[];
  /** Indexes of users that have a card (version 1). */
  withCard: readonly number[];
  /** Bound pairs (both directions shared, policy NULL = the whole card). */
  pairs: () => Iterable<readonly [number, number]>;
  /** Members of one contact group (features/groups: the `group` path, policy NULL), instead of bindings. */
  group?: readonly number[];
}

async function seedStore(file: string, spec: SeedSpec): Promise<{ ms: number; bindings: number }> {
  const t0 = performance.now();
  const store = new SqliteStore(file, { legacy: false });
  try {
    // The modules' migrations too (the group tables; cardlink would apply them at start anyway).
    await store.migrate([SCHEMA_2000, ...moduleMigrations()]);
    const db = store.db;
    db.pragma("cache_size = -262144"); // seeding only: random-order index inserts stay in memory
    const now = Date.now();
    const insAccount = db.prepare(
      "INSERT INTO accounts (id, state, created_at, seen_at) VALUES (?, 'active', ?, ?)",
    );
    const insJid = db.prepare(
      "INSERT INTO identifiers (kind, value, account_id, state, is_primary, verified_at, created_at) VALUES ('jid', ?, ?, 'active', 1, ?, ?)",
    );
    const insCursor = db.prepare(
      "INSERT INTO stream_cursors (account_id, consumer, pos, seen_at) VALUES (?, 0, 0, ?)",
    );
    const insCard = db.prepare(
      "INSERT INTO cards (account_id, version, hash, card, seq, updated_at) VALUES (?, 1, ?, ?, 1, ?)",
    );
    const insBinding = db.prepare(
      "INSERT INTO bindings (id, a, b, a_devices, b_devices, via, created_at) VALUES (?, ?, ?, '[]', '[]', 'code', ?)",
    );
    const insShare = db.prepare(
      "INSERT INTO shares (owner, holder, binding_id, policy, seq) VALUES (?, ?, ?, NULL, 2)",
    );
    db.transaction(() => {
      spec.users.forEach((jid, i) => {
        insAccount.run(i + 1, now, now);
        insJid.run(jid, i + 1, now, now);
        insCursor.run(i + 1, now);
      });
      for (const i of spec.withCard) {
        const card = smallCard(`${spec.users[i]} initial`);
        insCard.run(i + 1, cardHash(card), JSON.stringify(card), now);
      }
    })();
    if (spec.group) {
      const members = spec.group;
      db.transaction(() => {
        db.prepare(
          "INSERT INTO groups (id, name, description, owner, invite, created_at, seq) VALUES ('bench', 'bench', '', ?, 'members', ?, 2)",
        ).run((members[0] as number) + 1, now);
        const insMember = db.prepare(
          "INSERT INTO group_members (group_id, account_id, role, policy, seq, joined_at) VALUES ('bench', ?, ?, NULL, 2, ?)",
        );
        members.forEach((m, i) => insMember.run(m + 1, i === 0 ? "owner" : "member", now));
      })();
      db.prepare("UPDATE counters SET value = 2 WHERE name = 'seq'").run();
      db.pragma("wal_checkpoint(TRUNCATE)");
      return { ms: performance.now() - t0, bindings: 0 };
    }
    let bindings = 0;
    let batch: Array<readonly [number, number]> = [];
    const flush = db.transaction((pairs: Array<readonly [number, number]>) => {
      for (const [x, y] of pairs) {
        const [a, b] = x < y ? [x + 1, y + 1] : [y + 1, x + 1];
        const id = `b-${a}-${b}`;
        insBinding.run(id, a, b, now);
        insShare.run(a, b, id);
        insShare.run(b, a, id);
      }
    });
    for (const p of spec.pairs()) {
      batch.push(p);
      if (batch.length >= 50_000) {
        flush(batch);
        bindings += batch.length;
        batch = [];
      }
    }
    flush(batch);
    bindings += batch.length;
    db.prepare("UPDATE counters SET value = 2 WHERE name = 'seq'").run();
    db.pragma("wal_checkpoint(TRUNCATE)");
    return { ms: performance.now() - t0, bindings };
  } finally {
    await store.close();
  }
}

// ---------------------------------------------------------------------------------------------------------
// a. durable fan-out in the store alone

async function durable(dir: string, holders: number, runs: number): Promise<Record<string, unknown>> {
  const file = path.join(dir, "durable.sqlite");
  const owner = "owner@localhost";
  const users = [owner, ...Array.from({ length: holders }, (_, i) => `h${i}@localhost`)];
  const seeded = await seedStore(file, {
    users,
    withCard: [0],
    pairs: function* () {
      for (let i = 1; i <= holders; i++) yield [0, i] as const;
    },
  });
  const store = new SqliteStore(file, { legacy: false });
  try {
    await store.migrate([SCHEMA_2000]);
    const events = new EventBus();
    const kinds = new Map([cardKind(new CardRenderCache())].map((k) => [k.name, k]));
    const paths = [BINDING_PATH];
    const unused = (): never => {
      throw new Error("fanout bench: the jobs half is not used");
    };
    const uow = makeUow(
      store,
      {
        accounts: accountsParts({ cacheSize: 1000, cacheTtlMs: 60_000, events }).tx,
        stream: streamTx({ kind: (k) => kinds.get(k), paths }),
        jobs: unused,
        audience: audienceParts({ paths }).tx,
      },
      events,
    );
    const entries = store.db.prepare("SELECT COUNT(*) AS n FROM stream_entries");
    const times: number[] = [];
    for (let r = 0; r < runs; r++) {
      // Every run starts with empty lanes and a truncated WAL: each measures inserts of fresh entries (lanes
      // without a pending card of this owner), not the cheaper in-place coalescing of a previous run's rows.
      store.db.exec("DELETE FROM stream_entries");
      store.db.pragma("wal_checkpoint(TRUNCATE)");
      const card = smallCard(`Owner run ${r} ${Date.now()}`);
      const t = performance.now();
      const res = await storeCard({ uow }, owner, card);
      times.push(performance.now() - t);
      const queued = (entries.get() as { n: number }).n;
      if (!res.changed || res.holders.length !== holders || queued !== holders)
        throw new Error(`run ${r}: ${res.holders.length} holders, ${queued} stream entries`);
    }
    const m = median(times);
    return {
      holders,
      median_ms: round(m, 1),
      runs: times.map((x) => round(x, 1)),
      entries_per_s: round(holders / (m / 1000)),
      seed_ms: round(seeded.ms),
    };
  } finally {
    await store.close();
  }
}

// ---------------------------------------------------------------------------------------------------------
// b–e. delivery through Prosody

/** What the current round counts (one at a time; the holders' handlers read it). */
interface Track {
  mode: "card" | "pep" | "idle" | "closing";
  /** card rounds: which variant's updates count. */
  variant: number;
  /** Per owner index: the version (card) or item number (PEP) every holder must reach; 0 = not in this round. */
  target: Int32Array;
  need: number;
  got: number;
  allAt: number;
  /** `<updates/>` IQs the holders received from the variant this round, update elements in them, bytes sampled. */
  iqs: number;
  updates: number;
  sampledIqs: number;
  sampledBytes: number;
  discoQueries: number;
  /** IQ errors the holders sent (should stay 0: each one makes cardlink drop that resource as gone). */
  clientErrors: number;
  lastClientError: string;
  /** Holder streams that ended during the run (each one's updates then wait, and the round cannot finish). */
  dropped: number;
}

interface Deployment {
  variant: Variant;
  domain: string;
  secret: string;
  dbFile: string;
  proc: CardlinkProcess;
  pid: number | undefined;
  reader: Database.Database;
  /** Next version each owner's card gets here (the seeded version is 1). */
  versions: Int32Array;
  metricsPort: number;
  /** Stops the process (SIGTERM: a graceful stop, which also writes a --cpu-prof profile). */
  quit(): Promise<unknown>;
}

const COUNTERS = [
  "cardlink_delivery_acked_total",
  "cardlink_delivery_retry_total",
  "cardlink_delivery_batches_cut_total",
  "cardlink_delivery_recipient_gone_total",
] as const;

/** cardlink's delivery counters (Prometheus text; a counter never seen yet reads 0). */
async function counters(port: number): Promise<Record<string, number>> {
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  const out: Record<string, number> = {};
  for (const name of COUNTERS) {
    const line = text.split("\n").find((l) => l.startsWith(`${name} `));
    out[name] = line ? Number(line.slice(name.length + 1)) : 0;
  }
  return out;
}

/** Prosody's internal storage path for a host (the same encoding ProsodyServer.createUsers uses). */
const storeDir = (prosody: ProsodyServer, kind: string): string =>
  path.join(prosody.runDir, "data", encodeURIComponent(prosody.host).replace(/\./g, "%2e"), kind);

/**
 * Rosters written as Prosody 0.12's internal storage (data/<host>/roster/<user>.dat, a Lua table that
 * core/rostermanager reads: `[false]` holds the metadata, each other key is a contact JID). Mutual "both"
 * subscriptions without a subscription handshake per pair over XMPP.
 */
function writeRosters(
  prosody: ProsodyServer,
  contacts: (user: string) => readonly string[],
  users: readonly string[],
): void {
  const dir = storeDir(prosody, "roster");
  mkdirSync(dir, { recursive: true });
  const jid = (u: string): string => `${u}@${prosody.host}`;
  const item = (u: string): string =>
    `\t[${JSON.stringify(jid(u))}] = { ["subscription"] = "both"; ["groups"] = {}; ["name"] = ${JSON.stringify(u)}; };\n`;
  for (const u of users) {
    writeFileSync(
      path.join(dir, `${u}.dat`),
      `return {\n\t[false] = { ["version"] = 1; ["pending"] = {}; };\n${contacts(u).map(item).join("")}};\n`,
    );
  }
}

interface Topology {
  /** Prosody user names of the owners (their cards change) and of the holders (online, receive). */
  owners: readonly string[];
  holders: readonly string[];
  /** Whether owner o is bound to holder h (all pairs but the self pair, here). */
  bound: (o: number, h: number) => boolean;
}

async function connectHolder(
  prosody: ProsodyServer,
  user: string,
  topo: { ownerIndex: Map<string, number>; owners: number; variants: Map<string, number> },
  track: Track,
  domains: readonly string[],
  /** Per domain: what the holder declares there (Variant.declare). */
  declares: ReadonlyArray<UpdateFormat | undefined>,
  /** Receives this holder's presence announcement, sent once every client is logged in (see deliver). */
  announce: Array<() => Promise<void>>,
): Promise<TestClient> {
  // What this holder has seen: per (variant, owner) the newest card version, per owner the newest PEP item.
  const seenCard = new Int32Array(topo.variants.size * topo.owners);
  const seenPep = new Int32Array(topo.owners);
  const self = topo.ownerIndex.get(`${user}@${prosody.host}`);
  const reached = (target: number, before: number, now: number): void => {
    if (target > 0 && before < target && now >= target && ++track.got === track.need)
      track.allAt = performance.now();
  };
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
        const vi = topo.variants.get(String(iq.attrs.from));
        if (vi === undefined) return undefined;
        const counting = track.mode === "card" && track.variant === vi;
        const list = updates.getChildren("update");
        if (counting) {
          if (track.iqs++ % BYTES_SAMPLE === 0) {
            track.sampledIqs++;
            track.sampledBytes += Buffer.byteLength(iq.toString(), "utf8");
          }
          track.updates += list.length;
        }
        for (const u of list) {
          const card = u.getChild("card", NS.CARDLINK);
          if (u.attrs.kind !== "card" || !card) continue;
          const oi = topo.ownerIndex.get(String(card.attrs.owner));
          if (oi === undefined) continue;
          const v = Number(card.attrs.version);
          const k = vi * topo.owners + oi;
          const before = seenCard[k] as number;
          if (v <= before) continue;
          seenCard[k] = v;
          if (counting) reached(track.target[oi] as number, before, v);
        }
        return undefined; // the IQ result is cardlink's ack
      }
      const q = iq.getChild("query", NS.DISCO_INFO);
      if (iq.attrs.type === "get" && q) {
        // Prosody's mod_pep asks for the caps node to learn which nodes this client wants (+notify).
        track.discoQueries++;
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
  let ended = false;
  const end = (why: string): void => {
    if (ended || track.mode === "closing") return;
    ended = true;
    if (++track.dropped <= 5) note(`fanout: holder ${user}'s stream ended (${why})`);
  };
  client.xmpp.on("error", (e: Error) => end(`error: ${e.message}`));
  client.xmpp.on("disconnect", (d: { reason?: unknown } | undefined) =>
    end(`disconnect: ${String(d?.reason)}`),
  );
  client.xmpp.on("send", (el: Element) => {
    if (el.is("iq") && el.attrs.type === "error") {
      track.clientErrors++;
      track.lastClientError = el.toString().slice(0, 300);
    }
  });
  client.xmpp.on("stanza", (el: Element) => {
    if (!el.is("message")) return;
    const id = el
      .getChild("event", "http://jabber.org/protocol/pubsub#event")
      ?.getChild("items")
      ?.getChild("item")?.attrs.id as string | undefined;
    const oi = topo.ownerIndex.get(String(el.attrs.from));
    // A publisher's own resource gets its event too (the group case): not a delivery to count.
    if (id === undefined || oi === undefined || oi === self || !id.startsWith("i")) return;
    const n = Number(id.slice(1));
    const before = seenPep[oi] as number;
    if (!(n > before)) return;
    seenPep[oi] = n;
    if (track.mode === "pep") reached(track.target[oi] as number, before, n);
  });
  // Broadcast presence with caps (reaches the owners' bare JIDs, where mod_pep records +notify interest), then
  // directed presence to every cardlink (how each learns this resource is online).
  announce.push(async () => {
    await client.xmpp.send(
      xml(
        "presence",
        {},
        xml("c", { xmlns: "http://jabber.org/protocol/caps", hash: "sha-1", node: CAPS_NODE, ver: CAPS_VER }),
      ),
    );
    for (const [i, d] of domains.entries()) {
      const f = declares[i];
      const declaration =
        f === undefined
          ? undefined
          : xml("active-device", {
              xmlns: NS.CARDLINK,
              id: BENCH_DEVICE,
              format: f === "vcf" ? f : undefined,
            });
      await client.xmpp.send(xml("presence", { to: d }, declaration));
    }
  });
  return client;
}

let longIqs = 0;
/**
 * An IQ set and its result with a long timeout: Prosody answers a PEP publish only after its broadcast, so with
 * 100 owners publishing at once the last answer comes after ~100,000 notifications (tens of seconds), past the
 * test harness's 20 s.
 */
function longIq(c: TestClient, to: string, payload: Element, timeoutMs = 300_000): Promise<Element> {
  const id = `fo${++longIqs}`;
  return new Promise<Element>((resolve, reject) => {
    const timer = setTimeout(() => {
      c.xmpp.removeListener("stanza", onStanza);
      reject(new Error(`no reply to IQ ${id} to ${to} within ${timeoutMs} ms`));
    }, timeoutMs);
    const onStanza = (el: Element): void => {
      if (!el.is("iq") || el.attrs.id !== id) return;
      clearTimeout(timer);
      c.xmpp.removeListener("stanza", onStanza);
      if (el.attrs.type === "result") resolve(el);
      else reject(new Error(`IQ ${id} to ${to}: ${el.toString().slice(0, 300)}`));
    };
    c.xmpp.on("stanza", onStanza);
    c.xmpp.send(xml("iq", { type: "set", to, id }, payload)).catch((e: unknown) => {
      clearTimeout(timer);
      c.xmpp.removeListener("stanza", onStanza);
      reject(e instanceof Error ? e : new Error(String(e)));
    });
  });
}

type RoundOut = Record<string, number>;

/** Medians of one case's rounds, with every run's value where it matters for reading the median. */
function summarize(runs: RoundOut[], updates: number): Record<string, unknown> {
  const med = (k: string): number => median(runs.map((r) => r[k] as number));
  const all = med("all_ms");
  const out: Record<string, unknown> = {
    median_ms: round(all, 1),
    runs: runs.map((r) => round(r.all_ms as number, 1)),
    updates_applied: updates,
    updates_applied_per_s: round(updates / (all / 1000)),
    reply_median_ms: round(med("reply_ms"), 1),
    prosody_cpu_ms: runs.map((r) => r.prosody_cpu_ms),
    prosody_cpu_us_per_update: round((med("prosody_cpu_ms") * 1000) / updates, 1),
    bench_cpu_ms: runs.map((r) => round(r.bench_cpu_ms as number)),
    others_cores: runs.map((r) => round(r.others_cores as number, 2)),
  };
  if (runs[0]?.cardlink_cpu_ms !== undefined) {
    const iqs = med("iqs");
    Object.assign(out, {
      empty_median_ms: round(med("empty_ms"), 1),
      cardlink_cpu_ms: runs.map((r) => r.cardlink_cpu_ms),
      cardlink_cpu_us_per_update: round((med("cardlink_cpu_ms") * 1000) / updates, 1),
      server_cpu_us_per_update: round(
        (median(runs.map((r) => (r.prosody_cpu_ms as number) + (r.cardlink_cpu_ms as number))) * 1000) /
          updates,
        1,
      ),
      iqs_to_holders: iqs,
      iqs_runs: runs.map((r) => r.iqs),
      retries_runs: runs.map((r) => r.retries),
      updates_per_iq: round(med("updates_received") / iqs, 2),
      bytes_per_iq: round(med("bytes_per_iq")),
      prosody_cpu_us_per_iq: round((med("prosody_cpu_ms") * 1000) / iqs, 1),
    });
  }
  return out;
}

interface DeliveryPlan {
  label: string;
  topo: Topology;
  /** The cases: which owners change in each (single: [0]; many: all). */
  cases: ReadonlyArray<{ name: string; owners: readonly number[] }>;
  rounds: number;
  /** The path that connects owners and holders: bindings (default), or one contact group of all users. */
  via?: "bindings" | "group";
}

async function deliver(
  dir: string,
  plan: DeliveryPlan,
  variants: readonly Variant[],
  batch: number,
  withPep: boolean,
  cpuProf?: string,
  probe = false,
): Promise<Record<string, unknown>> {
  const { topo } = plan;
  const O = topo.owners.length;
  const H = topo.holders.length;
  const prosody = new ProsodyServer({ fastAuth: true });
  // Extra component domains, one per variant after the first (the harness's own domain).
  const deployments: Deployment[] = [];
  const clients: TestClient[] = [];
  const secrets = variants.map((_, i) => (i === 0 ? prosody.secret : `${prosody.secret}-${i}`));
  const domains = variants.map((_, i) => (i === 0 ? prosody.componentDomain : `cards${i}.${prosody.host}`));
  const track: Track = {
    mode: "idle",
    variant: 0,
    target: new Int32Array(O),
    need: 0,
    got: 0,
    allAt: 0,
    iqs: 0,
    updates: 0,
    sampledIqs: 0,
    sampledBytes: 0,
    discoQueries: 0,
    clientErrors: 0,
    lastClientError: "",
    dropped: 0,
  };
  try {
    // The config is written here (the harness keeps it when the ports are set): log at warn (the harness logs
    // every stanza at debug, which multiplies Prosody's cost per stanza), one Component per variant, and
    // mod_smacks off — @xmpp/client 0.14 resets its inbound counter when it handles <enabled/>, after it may
    // already have counted (and acked) stanzas of the same read; its next <a/> is then lower and Prosody drops
    // the session, bouncing the updates in flight (the bench client's bug; it dropped ~10–40 % of 1,000).
    prosody.c2sPort = await freePort();
    prosody.componentPort = await freePort();
    const probeDomain = `probe.${prosody.host}`;
    const probeSecret = `${prosody.secret}-probe`;
    const extra = [
      ...domains.slice(1).map((d, i) => [d, secrets[i + 1] as string] as const),
      ...(probe ? [[probeDomain, probeSecret] as const] : []),
    ]
      .map(([d, sec]) => `Component ${JSON.stringify(d)}\n\tcomponent_secret = ${JSON.stringify(sec)}\n`)
      .join("\n");
    writeFileSync(
      prosody.configFile,
      generateProsodyConfig({
        template: path.resolve("prosody.cfg.lua"),
        runDir: prosody.runDir,
        host: prosody.host,
        componentDomain: prosody.componentDomain,
        secret: prosody.secret,
        c2sPort: prosody.c2sPort,
        componentPort: prosody.componentPort,
        fastAuth: true,
        logLevel: (process.env.FANOUT_PROSODY_LOG as "warn" | "info" | undefined) ?? "warn",
        disableModules: ["smacks"],
      }) +
        "\n" +
        extra,
    );
    await prosody.start();
    const everyone = [...new Set([...topo.owners, ...topo.holders])];
    prosody.createUsers(everyone.map((u) => ({ user: u, password: `${u}pw` })));
    const ownerIdx = new Map(topo.owners.map((u, i) => [u, i]));
    const holderIdx = new Map(topo.holders.map((u, i) => [u, i]));
    // Each user's contacts: everyone they are bound to, in either role.
    writeRosters(
      prosody,
      (u) => {
        const out = new Set<string>();
        const oi = ownerIdx.get(u);
        const hi = holderIdx.get(u);
        if (oi !== undefined) topo.holders.forEach((h, j) => topo.bound(oi, j) && h !== u && out.add(h));
        if (hi !== undefined) topo.owners.forEach((o, j) => topo.bound(j, hi) && o !== u && out.add(o));
        return [...out];
      },
      everyone,
    );
    const jid = (u: string): string => `${u}@${prosody.host}`;

    // One seeded database, copied per variant (the same bindings everywhere).
    const seedFile = path.join(dir, `${plan.label}-seed.sqlite`);
    const userIndex = new Map(everyone.map((u, i) => [u, i]));
    const seeded = await seedStore(seedFile, {
      users: everyone.map(jid),
      withCard: topo.owners.map((o) => userIndex.get(o) as number),
      ...(plan.via === "group" ? { group: everyone.map((_, i) => i) } : {}),
      pairs: function* () {
        const seen = new Set<string>();
        for (let o = 0; o < O; o++) {
          for (let h = 0; h < H; h++) {
            if (!topo.bound(o, h)) continue;
            const a = userIndex.get(topo.owners[o] as string) as number;
            const b = userIndex.get(topo.holders[h] as string) as number;
            if (a === b) continue;
            const key = a < b ? `${a}:${b}` : `${b}:${a}`;
            if (seen.has(key)) continue;
            seen.add(key);
            yield [a, b] as const;
          }
        }
      },
    });
    note(
      `fanout ${plan.label}: seeded ${plan.via === "group" ? `one group of ${everyone.length}` : `${seeded.bindings} bindings`} in ${round(seeded.ms)} ms`,
    );

    for (let i = 0; i < variants.length; i++) {
      const v = variants[i] as Variant;
      const dbFile = path.join(dir, `${plan.label}-${i}.sqlite`);
      copyFileSync(seedFile, dbFile);
      if (v.declare) {
        // Each holder's device and its cursor (what a registration and a first declaration write), and the
        // shared cursor dormant: the holder's only client declares.
        const db = new Database(dbFile);
        const now = Date.now();
        const insDevice = db.prepare(
          "INSERT INTO devices (account_id, device_id, platform, created_at, updated_at) VALUES (?, ?, 'other', ?, ?)",
        );
        const insCursor = db.prepare(
          "INSERT INTO stream_cursors (account_id, consumer, pos, seen_at) VALUES (?, ?, 0, ?)",
        );
        const dormant = db.prepare(
          "UPDATE stream_cursors SET state = 'dormant' WHERE account_id = ? AND consumer = 0",
        );
        db.transaction(() => {
          for (const h of topo.holders) {
            const account = (userIndex.get(h) as number) + 1;
            const key = Number(insDevice.run(account, BENCH_DEVICE, now, now).lastInsertRowid);
            insCursor.run(account, key, now);
            dormant.run(account);
          }
        })();
        db.pragma("wal_checkpoint(TRUNCATE)");
        db.close();
      }
      const configFile = path.join(dir, `${plan.label}-${i}.json`);
      writeFileSync(configFile, JSON.stringify(v.config));
      const metricsPort = await freePort();
      const proc = new CardlinkProcess({
        CARDLINK_METRICS_PORT: String(metricsPort),
        CARDLINK_CONFIG: configFile,
        CARDLINK_CORE: "2000",
        CARDLINK_DOMAIN: domains[i] as string,
        CARDLINK_SECRET: secrets[i] as string,
        CARDLINK_SERVICE: prosody.service,
        CARDLINK_SERVED_HOSTS: prosody.host,
        CARDLINK_DB: dbFile,
        CARDLINK_DATA_DIR: dir,
        CARDLINK_LOG_LEVEL: "info",
      });
      proc.start(
        cpuProf
          ? [
              "--cpu-prof",
              `--cpu-prof-dir=${path.resolve(cpuProf)}`,
              `--cpu-prof-name=${plan.label}-${v.name}.cpuprofile`,
            ]
          : [],
      );
      let stopping = false;
      proc.proc?.once("exit", (code, signal) => {
        if (!stopping)
          note(`fanout: cardlink ${v.name} exited (${code ?? signal}): ${proc.output.slice(-3000)}`);
      });
      await proc.waitForEvent("connected", 1, 20_000);
      deployments.push({
        variant: v,
        domain: domains[i] as string,
        secret: secrets[i] as string,
        dbFile,
        proc,
        pid: proc.proc?.pid,
        reader: new Database(dbFile, { readonly: true, fileMustExist: true }),
        versions: new Int32Array(O).fill(1),
        metricsPort,
        quit: () => {
          stopping = true;
          return proc.kill("SIGTERM");
        },
      });
    }

    const tLogin = performance.now();
    // Owners first, then holders, whose presence with caps reaches the owners' bare JIDs (mod_pep records the
    // +notify interest there). A user who is both (group) logs in once, as a holder.
    const owners: TestClient[] = new Array<TestClient>(O);
    const holderUsers = new Set(topo.holders);
    const hTopo = {
      ownerIndex: new Map(topo.owners.map((u, i) => [jid(u), i])),
      owners: O,
      variants: new Map(domains.map((d, i) => [d, i])),
    };
    /** Logs `list` in, `size` at a time, in order; a login that times out (a loaded machine) is tried again. */
    const login = async (
      list: readonly string[],
      size: number,
      one: (u: string) => Promise<TestClient>,
    ): Promise<TestClient[]> => {
      const out: TestClient[] = [];
      const withRetry = async (u: string): Promise<TestClient> => {
        for (let attempt = 1; ; attempt++) {
          try {
            const c = await one(u);
            // Kept at once, so the finally below closes it even when another login fails.
            clients.push(c);
            return c;
          } catch (e) {
            if (attempt >= 3)
              throw new Error(`login of ${u} failed ${attempt} times: ${String(e)}`, { cause: e });
            await sleep(500 * attempt);
          }
        }
      };
      for (let i = 0; i < list.length; i += size)
        out.push(...(await Promise.all(list.slice(i, i + size).map(withRetry))));
      return out;
    };
    const pureOwners = topo.owners.filter((u) => !holderUsers.has(u));
    // No initial presence from owners: it would send a probe to each of their 1,000 contacts (which timed out
    // logins here), and mod_pep records a contact's +notify from the presence reaching the owner's bare JID,
    // whether or not the owner is online. Publishing and cardlink's IQs need no presence.
    const ownerClients = await login(pureOwners, batch, (u) =>
      connectClient({
        port: prosody.c2sPort,
        domain: prosody.host,
        username: u,
        password: `${u}pw`,
        resource: "desk",
        sendPresence: false,
      }),
    );
    pureOwners.forEach((u, i) => {
      const c = ownerClients[i] as TestClient;
      owners[ownerIdx.get(u) as number] = c;
      let ended = false;
      const end = (why: string): void => {
        if (ended || track.mode === "closing") return;
        ended = true;
        if (++track.dropped <= 5) note(`fanout: owner ${u}'s stream ended (${why})`);
      };
      c.xmpp.on("error", (e: Error) => end(`error: ${e.message}`));
      c.xmpp.on("disconnect", (d: { reason?: unknown } | undefined) =>
        end(`disconnect: ${String(d?.reason)}`),
      );
    });
    const announcements: Array<() => Promise<void>> = [];
    const holderClients = await login(topo.holders, batch, (u) =>
      connectHolder(
        prosody,
        u,
        hTopo,
        track,
        domains,
        variants.map((v) => v.declare),
        announcements,
      ),
    );
    topo.holders.forEach((u, i) => {
      const oi = ownerIdx.get(u);
      if (oi !== undefined) owners[oi] = holderClients[i] as TestClient;
    });
    // Presence only once everyone is logged in, a batch at a time: with full-mesh rosters (the group case) each
    // presence fans out to every online member, and that flood arriving during logins timed their stream opens out.
    for (let i = 0; i < announcements.length; i += batch) {
      await Promise.all(announcements.slice(i, i + batch).map((f) => f()));
      await sleep(100);
    }
    // A declaring variant serves the holders only once their declarations are applied (else the warm-up would
    // reactivate their dormant shared cursors).
    for (const dep of deployments) {
      if (!dep.variant.declare) continue;
      const declared = dep.reader.prepare("SELECT COUNT(*) AS n FROM resources WHERE device IS NOT NULL");
      await waitFor(
        () => (declared.get() as { n: number }).n >= H,
        `${dep.variant.name}: ${H} declarations`,
        120_000,
      );
    }
    const loginMs = performance.now() - tLogin;
    note(`fanout ${plan.label}: ${clients.length} clients connected in ${round(loginMs)} ms`);
    // Login traffic (presence broadcasts and probes) is not what is measured: let it drain.
    await sleep(2000);
    const forget = (): void => {
      for (const c of clients) c.received.length = 0;
    };
    forget();

    const prosodyPid = findPid(prosody.configFile);
    const pids = (): Array<number | undefined> => [prosodyPid, ...deployments.map((d) => d.pid)];
    const measure = async (
      body: () => Promise<void>,
    ): Promise<{ cpu: number[]; bench: number; others: number }> => {
      const c0 = pids().map(procCpu);
      const sys0 = systemCpu();
      const self0 = process.cpuUsage();
      const t0 = performance.now();
      await body();
      const wall = performance.now() - t0;
      const self = process.cpuUsage(self0);
      const c1 = pids().map(procCpu);
      const sys1 = systemCpu();
      const cpu = c0.map((c, i) => cpuTotal(cpuDiff(c, c1[i] ?? null)));
      const bench = (self.user + self.system) / 1000;
      const ours = cpu.reduce((a, b) => a + Math.max(0, b), 0) + bench;
      const others = sys0 && sys1 ? Math.max(0, sys1.busyMs - sys0.busyMs - ours) / wall : -1;
      return { cpu, bench, others };
    };

    /** One cardlink round: the owners' card IQs fired together → every holder has every new version → acks written. */
    const cardRound = async (d: number, owned: readonly number[], label: string): Promise<RoundOut> => {
      const dep = deployments[d] as Deployment;
      Object.assign(track, {
        mode: "card",
        variant: d,
        got: 0,
        allAt: 0,
        iqs: 0,
        updates: 0,
        sampledIqs: 0,
        sampledBytes: 0,
      });
      track.target.fill(0);
      let need = 0;
      for (const o of owned) {
        track.target[o] = (dep.versions[o] as number) + 1;
        for (let h = 0; h < H; h++) if (topo.bound(o, h) && topo.holders[h] !== topo.owners[o]) need++;
      }
      track.need = need;
      const empty = dep.reader.prepare("SELECT EXISTS (SELECT 1 FROM stream_entries) AS x");
      const t: Record<string, number> = {};
      const k0 = await counters(dep.metricsPort);
      const m = await measure(async () => {
        const t0 = performance.now();
        const replies = await Promise.all(
          owned.map((o) =>
            longIq(
              owners[o] as TestClient,
              dep.domain,
              xml(
                "card",
                { xmlns: NS.CARDLINK },
                vcardXml(`${topo.owners[o]} ${label}`, `${label} ${Date.now()}`),
              ),
            ),
          ),
        );
        t.reply_ms = performance.now() - t0;
        replies.forEach((reply, i) => {
          const o = owned[i] as number;
          const got = Number(reply.getChild("card", NS.CARDLINK)?.attrs.version);
          if (got !== track.target[o])
            throw new Error(
              `${topo.owners[o]}: card IQ answered version ${got}, expected ${track.target[o]}`,
            );
          dep.versions[o] = got;
        });
        await waitFor(() => track.got >= need, `${label}: ${need} updates at the holders`, 300_000).catch(
          (e: unknown) => {
            const complaints = dep.proc
              .events()
              .filter((x) => Number(x.level) >= 40)
              .slice(-10)
              .map((x) => JSON.stringify(x));
            throw new Error(
              `${(e as Error).message} (${track.got} arrived; client errors ${track.clientErrors}: ${track.lastClientError}; holder streams ended: ${track.dropped}; cardlink's last warnings: ${complaints.join("\n")}; Prosody's log: ${prosody.logTail(10)})`,
            );
          },
        );
        t.all_ms = track.allAt - t0;
        // Acks travel back after the last holder received: the lanes empty shortly after.
        await waitFor(() => (empty.get() as { x: number }).x === 0, `${label}: lanes empty`, 120_000);
        t.empty_ms = performance.now() - t0;
      });
      track.mode = "idle";
      const k1 = await counters(dep.metricsPort);
      return {
        ...t,
        retries: (k1.cardlink_delivery_retry_total ?? 0) - (k0.cardlink_delivery_retry_total ?? 0),
        pages_cut:
          (k1.cardlink_delivery_batches_cut_total ?? 0) - (k0.cardlink_delivery_batches_cut_total ?? 0),
        gone:
          (k1.cardlink_delivery_recipient_gone_total ?? 0) - (k0.cardlink_delivery_recipient_gone_total ?? 0),
        prosody_cpu_ms: m.cpu[0] as number,
        cardlink_cpu_ms: m.cpu[d + 1] as number,
        bench_cpu_ms: m.bench,
        others_cores: m.others,
        iqs: track.iqs,
        updates_received: track.updates,
        bytes_per_iq: track.sampledIqs ? track.sampledBytes / track.sampledIqs : 0,
      };
    };

    let items = 0;
    const pepRound = async (owned: readonly number[], label: string): Promise<RoundOut> => {
      const item = ++items;
      Object.assign(track, { mode: "pep", got: 0, allAt: 0 });
      track.target.fill(0);
      let need = 0;
      for (const o of owned) {
        track.target[o] = item;
        for (let h = 0; h < H; h++) if (topo.bound(o, h) && topo.holders[h] !== topo.owners[o]) need++;
      }
      track.need = need;
      const t: Record<string, number> = {};
      const m = await measure(async () => {
        const t0 = performance.now();
        await Promise.all(
          owned.map((o) =>
            longIq(
              owners[o] as TestClient,
              jid(topo.owners[o] as string),
              xml(
                "pubsub",
                { xmlns: NS.PUBSUB },
                xml(
                  "publish",
                  { node: PEP_NODE },
                  xml(
                    "item",
                    { id: `i${item}` },
                    vcardXml(`${topo.owners[o]} ${label}`, `${label} ${Date.now()}`),
                  ),
                ),
              ),
            ),
          ),
        );
        t.reply_ms = performance.now() - t0;
        await waitFor(() => track.got >= need, `${label}: ${need} PEP notifications`, 300_000).catch(
          (e: unknown) => {
            throw new Error(
              `${(e as Error).message} (${track.got} arrived; disco queries ${track.discoQueries}; holder streams ended: ${track.dropped}; Prosody's log: ${prosody.logTail(10)})`,
            );
          },
        );
        t.all_ms = track.allAt - t0;
      });
      track.mode = "idle";
      return { ...t, prosody_cpu_ms: m.cpu[0] as number, bench_cpu_ms: m.bench, others_cores: m.others };
    };

    // Warm-up, and the check that every path reaches everyone before anything is timed (a PEP setup that
    // silently notifies nobody would otherwise look infinitely fast). cardlink warms up with one owner (every
    // holder reached; a many-owner warm-up per variant would cost a minute each at full size), PEP with every
    // owner: the first publish creates each owner's node.
    const widest = plan.cases.reduce((a, b) => (b.owners.length > a.owners.length ? b : a));
    for (let d = 0; d < deployments.length; d++) {
      const w = await cardRound(d, [0], `warm-up ${deployments[d]?.variant.name}`);
      note(`fanout ${plan.label}: warm-up ${deployments[d]?.variant.name}: ${round(w.all_ms as number)} ms`);
    }
    let pepSkip: string | undefined = withPep ? undefined : "disabled by option";
    if (withPep) {
      try {
        const w = await pepRound(widest.owners, "warm-up pep");
        note(`fanout ${plan.label}: warm-up pep: ${round(w.all_ms as number)} ms`);
      } catch (e) {
        pepSkip = `PEP warm-up reached ${track.got} of ${track.need} (${(e as Error).message})`;
      }
    }
    forget();

    type Key = string;
    const keys: Key[] = [];
    for (const c of plan.cases) {
      for (const dep of deployments) keys.push(`${c.name}:${dep.variant.name}`);
      if (!pepSkip) keys.push(`${c.name}:pep`);
    }
    const caseOf = new Map(plan.cases.map((c) => [c.name, c]));
    const results = await runRounds(plan.rounds, keys, async (k, r) => {
      await sleep(500); // let the previous round's trailing traffic (acks, presence) settle
      const [cname, vname] = k.split(":") as [string, string];
      const c = caseOf.get(cname) as { name: string; owners: readonly number[] };
      const label = `${k} round ${r}`;
      const out =
        vname === "pep"
          ? await pepRound(c.owners, label)
          : await cardRound(
              deployments.findIndex((d) => d.variant.name === vname),
              c.owners,
              label,
            );
      forget();
      note(
        `fanout ${plan.label}: ${label}: ${JSON.stringify(Object.fromEntries(Object.entries(out).map(([x, v]) => [x, round(v, 1)])))}`,
      );
      return out;
    });

    const out: Record<string, unknown> = {
      owners: O,
      holders: H,
      bindings: seeded.bindings,
      login_ms: round(loginMs),
    };
    for (const c of plan.cases) {
      let updates = 0;
      for (const o of c.owners)
        for (let h = 0; h < H; h++) if (topo.bound(o, h) && topo.holders[h] !== topo.owners[o]) updates++;
      const res: Record<string, unknown> = { owners_changing: c.owners.length, updates };
      const pep = pepSkip ? undefined : summarize(results[`${c.name}:pep`] as RoundOut[], updates);
      res.prosody_pep = pep ?? { skipped: pepSkip };
      for (const dep of deployments) {
        const s = summarize(results[`${c.name}:${dep.variant.name}`] as RoundOut[], updates);
        if (pep) {
          s.ratio_rate_vs_pep = round(
            (s.updates_applied_per_s as number) / (pep.updates_applied_per_s as number),
            3,
          );
          s.ratio_server_cpu_vs_pep = round(
            (s.server_cpu_us_per_update as number) / (pep.prosody_cpu_us_per_update as number),
            2,
          );
        }
        res[`cardlink_${dep.variant.name}`] = {
          config: dep.variant.config,
          ...(dep.variant.declare ? { declare: dep.variant.declare } : {}),
          ...s,
        };
      }
      out[c.name] = res;
    }
    if (probe) {
      out.payload_probe = await probePayloads({
        service: prosody.service,
        domain: probeDomain,
        secret: probeSecret,
        to: topo.holders.map((h) => `${jid(h)}/phone`),
        owner: jid(topo.owners[0] as string),
        prosodyPid,
        rounds: plan.rounds,
      });
    }
    out.disco_queries = track.discoQueries;
    out.client_iq_errors = track.clientErrors;
    out.holder_streams_ended = track.dropped;
    out.memory = {
      prosody: procMem(prosodyPid),
      ...Object.fromEntries(deployments.map((d) => [`cardlink_${d.variant.name}`, procMem(d.pid)])),
      bench: { rssMb: round(process.memoryUsage().rss / 1048576, 1) },
    };
    return out;
  } finally {
    track.mode = "closing";
    for (const d of deployments) d.reader.close();
    // Closing 1,000 streams at once is fine for Prosody; batches keep the bench's own event loop responsive.
    for (let i = 0; i < clients.length; i += 100)
      await Promise.all(clients.slice(i, i + 100).map((c) => c.stop()));
    for (const d of deployments) await d.quit();
    await prosody.stop();
    prosody.cleanup();
  }
}

/**
 * Prosody's cost of an `<updates/>` IQ by the form of its payload, without cardlink: a bare XEP-0114 component of
 * the bench sends each holder one IQ per shape (pre-serialized, ≤ 256 in flight), the holders answer each with a
 * result, and Prosody's CPU over the shape's run is divided by the IQs and the updates they carried. The card is
 * the one the cardlink cases send (parsed and normalized as cardlink stores it): as cardlink's vCard4 XML, or as
 * one vCard text node (what a `vcf` rendering of the same card would put in `<card/>`).
 */
async function probePayloads(o: {
  service: string;
  domain: string;
  secret: string;
  to: readonly string[];
  owner: string;
  prosodyPid: number | undefined;
  rounds: number;
}): Promise<Record<string, unknown>> {
  const card = normalizeCard(parseVCard4(vcardXml("Owner probe", "probe note"), DEFAULT_CARD_LIMITS));
  const hash = cardHash(card);
  const update = (i: number, form: "vcard4" | "vcf"): Element =>
    xml(
      "update",
      { id: `card:${o.owner}:${1000 + i}`, kind: "card", seq: String(1000 + i) },
      xml(
        "card",
        { xmlns: NS.CARDLINK, owner: o.owner, version: String(2 + i), hash },
        form === "vcard4" ? serializeVCard4(card) : cardToVcf(card),
      ),
    );
  const shapes = {
    vcard4_x1: { n: 1, form: "vcard4" },
    vcard4_x20: { n: 20, form: "vcard4" },
    vcf_x1: { n: 1, form: "vcf" },
    vcf_x20: { n: 20, form: "vcf" },
  } as const;
  type Shape = keyof typeof shapes;
  const payloads = Object.fromEntries(
    Object.entries(shapes).map(([k, v]) => [
      k,
      xml(
        "updates",
        { xmlns: NS.CARDLINK },
        ...Array.from({ length: v.n }, (_, i) => update(i, v.form)),
      ).toString(),
    ]),
  ) as Record<Shape, string>;
  const entity = new Component({ service: o.service, domain: o.domain });
  entity.on("error", () => undefined);
  let waiting = new Map<string, () => void>();
  entity.on("stanza", (el: Element) => {
    if (el.is("iq") && (el.attrs.type === "result" || el.attrs.type === "error"))
      waiting.get(String(el.attrs.id))?.();
  });
  await entity.connect(o.service);
  const header = await entity.open({ domain: o.domain });
  await entity.authenticate(String(header.attrs.id ?? ""), o.secret);
  let n = 0;
  try {
    const one = async (shape: Shape): Promise<{ cpu_ms: number; ms: number }> => {
      waiting = new Map();
      const c0 = procCpu(o.prosodyPid);
      const t0 = performance.now();
      let next = 0;
      // ≤ 256 IQs in flight (cardlink's bound on consumers delivering at once).
      const lane = async (): Promise<void> => {
        while (next < o.to.length) {
          const to = o.to[next++] as string;
          const id = `p${++n}`;
          const answered = new Promise<void>((r) => waiting.set(id, r));
          await entity.write(
            `<iq type='set' id='${id}' to='${to}' from='${o.domain}'>${payloads[shape]}</iq>`,
          );
          await answered;
        }
      };
      await Promise.all(Array.from({ length: Math.min(256, o.to.length) }, lane));
      return { cpu_ms: cpuTotal(cpuDiff(c0, procCpu(o.prosodyPid))), ms: performance.now() - t0 };
    };
    await one("vcard4_x1"); // warm-up
    const res = await runRounds(o.rounds, Object.keys(shapes) as Shape[], (shape) => one(shape));
    const out: Record<string, unknown> = { iqs_per_run: o.to.length };
    for (const [k, v] of Object.entries(shapes)) {
      const runs = res[k as Shape];
      const cpu = median(runs.map((r) => r.cpu_ms));
      out[k] = {
        bytes_per_iq: Buffer.byteLength(payloads[k as Shape], "utf8") + 80,
        prosody_cpu_ms: runs.map((r) => r.cpu_ms),
        prosody_cpu_us_per_iq: round((cpu * 1000) / o.to.length, 1),
        prosody_cpu_us_per_update: round((cpu * 1000) / (o.to.length * v.n), 1),
      };
    }
    return out;
  } finally {
    entity.removeAllListeners("disconnect");
    await Promise.race([entity.stop().catch(() => undefined), sleep(2000)]);
  }
}

const pad = (p: string, i: number, w: number): string => `${p}${String(i).padStart(w, "0")}`;

export async function run(opts: FanoutOptions = {}): Promise<Record<string, unknown>> {
  const dir = mkdtempSync(path.join(os.tmpdir(), "cardlink-bench-fanout-"));
  try {
    const out: Record<string, unknown> = { bench: "fanout", core: "2000" };
    if (!opts.skipDurable) {
      note("fanout: durable 10k");
      out.durable_10k = await durable(dir, opts.durableHolders ?? 10_000, opts.durableRuns ?? 5);
    }
    const variants = opts.variants?.length ? opts.variants : [{ name: "default", config: {} }];
    if (!opts.skipDelivery) {
      const O = opts.owners ?? 100;
      const H = opts.holders ?? 1000;
      const only = opts.only ?? ["single", "many"];
      const all = Array.from({ length: O }, (_, i) => i);
      note(`fanout: delivery through Prosody, ${O} owners × ${H} holders`);
      Object.assign(
        out,
        await deliver(
          dir,
          {
            label: "owners",
            topo: {
              owners: all.map((i) => pad("o", i, 3)),
              holders: Array.from({ length: H }, (_, i) => pad("h", i, 4)),
              bound: () => true,
            },
            cases: [
              ...(only.includes("single") ? [{ name: "single_change", owners: [0] }] : []),
              ...(only.includes("many") ? [{ name: "many_owners", owners: all }] : []),
            ],
            rounds: opts.rounds ?? 3,
          },
          variants,
          opts.loginBatch ?? 50,
          !opts.skipPep,
          opts.cardlinkCpuProf,
          opts.probe,
        ),
      );
    }
    if (opts.group && opts.group > 1) {
      const n = opts.group;
      const members = Array.from({ length: n }, (_, i) => pad("g", i, 4));
      const via = opts.groupVia ?? "bindings";
      note(`fanout: group of ${n}, ${via === "group" ? "one contact group" : "all pairs bound"}`);
      out.group = await deliver(
        dir,
        {
          label: "group",
          topo: { owners: members, holders: members, bound: (o, h) => o !== h },
          cases: [{ name: `group_${n}`, owners: members.map((_, i) => i) }],
          rounds: opts.groupRounds ?? 1,
          via,
        },
        variants,
        opts.loginBatch ?? 50,
        !opts.skipPep,
        opts.cardlinkCpuProf,
      );
    }
    return out;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

function argNumber(flag: string): number | undefined {
  const i = process.argv.indexOf(flag);
  const v = i >= 0 ? Number(process.argv[i + 1]) : NaN;
  return Number.isFinite(v) && v >= 0 ? v : undefined;
}

/**
 * `--variant NAME='{"delivery":{…}}'`, repeatable. A top-level `"declare": "vcf" | "vcard4"` is the bench's own
 * (Variant.declare), not cardlink config.
 */
function argVariants(): Variant[] {
  const out: Variant[] = [];
  process.argv.forEach((a, i) => {
    if (a !== "--variant") return;
    const v = process.argv[i + 1] ?? "";
    const eq = v.indexOf("=");
    if (eq <= 0) throw new Error(`--variant needs NAME=JSON, got ${v}`);
    const { declare, ...config } = JSON.parse(v.slice(eq + 1)) as Record<string, unknown>;
    if (declare !== undefined && declare !== "vcf" && declare !== "vcard4")
      throw new Error(`--variant ${v}: declare must be "vcf" or "vcard4"`);
    out.push({ name: v.slice(0, eq), config, ...(declare ? { declare } : {}) });
  });
  return out;
}

if (isMain(import.meta.url)) {
  // A client whose login or stream is cut while the servers are torn down rejects a promise nobody awaits
  // (inside xmpp.js): logged, so the error that started the teardown is the one reported.
  process.on("unhandledRejection", (e: unknown) => note(`fanout: stray rejection: ${String(e)}`));
  // @xmpp/connection 0.14 throws from a socket 'data' handler when data arrives after its stream ended (parser
  // already detached): one dead client must not take the whole run (and its cleanup) down.
  process.on("uncaughtException", (e: Error) =>
    note(`fanout: uncaught in a client: ${e.stack ?? String(e)}`),
  );
  const only = process.argv.includes("--only")
    ? (process.argv[process.argv.indexOf("--only") + 1] ?? "").split(",")
    : undefined;
  const num = (f: string): number | undefined => argNumber(f);
  const opts: FanoutOptions = {
    skipDurable: process.argv.includes("--skip-durable"),
    skipPep: process.argv.includes("--skip-pep"),
    variants: argVariants(),
  };
  if (only) opts.only = only.filter((x): x is "single" | "many" => x === "single" || x === "many");
  const owners = num("--owners");
  const holders = num("--holders");
  const rounds = num("--rounds");
  const group = num("--group");
  const groupRounds = num("--group-rounds");
  if (owners) opts.owners = owners;
  if (holders) opts.holders = holders;
  if (rounds) opts.rounds = rounds;
  if (group !== undefined) opts.group = group;
  if (groupRounds) opts.groupRounds = groupRounds;
  const via = process.argv.indexOf("--group-via");
  if (via >= 0) {
    const v = process.argv[via + 1];
    if (v !== "group" && v !== "bindings") throw new Error("--group-via group|bindings");
    opts.groupVia = v;
  }
  const prof = process.argv.indexOf("--cardlink-cpu-prof");
  if (prof >= 0) opts.cardlinkCpuProf = process.argv[prof + 1] as string;
  if (process.argv.includes("--probe")) opts.probe = true;
  if (only?.length === 0 || (only && opts.only?.length === 0)) opts.skipDelivery = true;
  run(opts).then(
    (r) => {
      printJson(r);
      process.exit(0);
    },
    (e: unknown) => {
      process.stderr.write(`fanout: ${(e as Error).stack ?? String(e)}\n`);
      process.exit(1);
    },
  );
}
