/**
 * Query benchmark (docs/BENCHMARKS.md "queries", REDESIGN §7.1): the new store (schema 2000) on a large SQLite
 * database, p50/p99/max per operation, each operation called through the real runtime/feature functions in
 * process (unit of work, accounts, stream queue, audiences, features/cards, features/exchange; no XMPP).
 *
 *   node dist/bench/queries.js [--accounts N] [--db FILE] [--calls N] [--wal-autocheckpoint PAGES]
 *                              [--checkpoint-interval MS]
 *
 * Seed (not timed; reused when `--db FILE` exists): migration 2000 through `store.migrate`, then plain INSERTs in
 * transactions of 10,000 accounts: accounts + primary JIDs + shared cursors + small cards; account i bound to
 * i+1 … i+10 (mod N); one owner bound to 1,000 holders; 2 devices with device cursors for every tenth account.
 * Prints one JSON object on stdout; progress goes to stderr.
 */
import { existsSync, mkdtempSync, rmSync, statSync } from "node:fs";
import { pino } from "pino";
import os from "node:os";
import path from "node:path";
import { performance } from "node:perf_hooks";
import { cardVersions } from "../component/features/cards/api.js";
import { cardKind, CardRenderCache } from "../component/features/cards/render.js";
import { storeCard } from "../component/features/cards/service.js";
import { SYNC_PAGE, syncPage } from "../component/features/cards/sync.js";
import { contacts } from "../component/features/exchange/contacts.js";
import { EXCHANGE_KINDS } from "../component/features/exchange/render.js";
import { BINDING_PATH } from "../component/features/exchange/repo.js";
import { ExchangeService } from "../component/features/exchange/service.js";
import { accountsParts } from "../component/runtime/accounts/tx.js";
import { audienceParts } from "../component/runtime/audience/tx.js";
import { StanzaBudget } from "../component/runtime/budget.js";
import { EventBus } from "../component/runtime/events.js";
import type { StreamKind } from "../component/runtime/queue/api.js";
import { StreamDelivery } from "../component/runtime/queue/stream-delivery.js";
import { streamRepo } from "../component/runtime/queue/stream-repo.js";
import { streamTx } from "../component/runtime/queue/stream-tx.js";
import { makeReader, makeUow, type Reader, type Uow } from "../component/runtime/uow.js";
import { cardHash, normalizeCard, type Card } from "../stanzas/model/card.js";
import { SCHEMA_2000 } from "../storage/sqlite/schema-2000.js";
import type { CheckpointReport } from "../storage/sqlite/checkpointer.js";
import { SqliteStore } from "../storage/sqlite/store.js";
import type { AccountId, Store } from "../storage/store.js";
import { countingStore, median, note, round, runMain, systemCpu, type StatementCounter } from "./lib.js";

export interface QueriesOptions {
  /** Ordinary accounts (default 20,000: seeds in well under a minute here; §7.1's full size is 100,000). */
  accounts?: number;
  /** Reuse (or create and keep) this database file instead of a temporary one. */
  db?: string;
  /** Timed calls per cheap operation (default 5,000, after a tenth as many warm-up calls). */
  calls?: number;
  /**
   * PRAGMA wal_autocheckpoint for the timed part (default: the store's own, SQLite's 1,000 pages). 0 turns it
   * off (the WAL is still checkpointed between ops): shows how much of a write's tail is the checkpoint that
   * a commit now and then runs inline.
   */
  walAutocheckpoint?: number;
  /**
   * The store's checkpoint worker period (storage/sqlite/checkpointer.ts; default: the store's, 1,000 ms). 0: no
   * worker, SQLite's inline autocheckpoint (what the store did before the worker existed).
   */
  checkpointIntervalMs?: number;
}

const HOST = "localhost";
const K = 10; // bindings per ordinary account
const OWNER_HOLDERS = 1_000;
const OWNER_JID = `owner@${HOST}`;
const ujid = (i: number): string => `u${String(i).padStart(6, "0")}@${HOST}`;
const uid = (i: number): number => i + 1; // account id of ordinary user i (ids start at 1, in seeding order)

export function smallCard(i: number, variant = 0): Card {
  return normalizeCard({
    fn: variant ? `User ${i} v${variant}` : `User ${i}`,
    org: { name: "Example Corp", units: [] },
    nickname: [],
    tel: [{ key: "", types: ["cell"], uri: `tel:+1-555-${String(i).padStart(7, "0")}` }],
    email: [{ key: "", types: [], value: `u${i}@example.org` }],
    adr: [],
    url: [],
    impp: [],
    categories: [],
  });
}

/** Deterministic arguments (mulberry32): the same run picks the same users. */
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

interface SeedInfo {
  accounts: number;
  bindings: number;
  shares: number;
  devices: number;
  cursors: number;
  seed_ms: number | null; // null: reused file
  db_mb: number;
}

function count(store: SqliteStore, t: string): number {
  return (store.db.prepare(`SELECT COUNT(*) AS n FROM ${t}`).get() as { n: number }).n;
}

/** Direct INSERTs (not the services): the steady state of a long-running server, drained lanes, no backlog. */
function seed(store: SqliteStore, n: number): number {
  const t0 = performance.now();
  const db = store.db;
  db.pragma("cache_size = -262144"); // seeding only: random-order index inserts (shares by holder) stay in memory
  const now = Date.now();
  const insAccount = db.prepare(
    "INSERT INTO accounts (id, state, created_at, seen_at) VALUES (?, 'active', ?, ?)",
  );
  const insJid = db.prepare(
    "INSERT INTO identifiers (kind, value, account_id, state, is_primary, verified_at, created_at) VALUES ('jid', ?, ?, 'active', 1, ?, ?)",
  );
  const insCursor = db.prepare(
    "INSERT INTO stream_cursors (account_id, consumer, pos, seen_at) VALUES (?, ?, 0, ?)",
  );
  const insDevice = db.prepare(
    "INSERT INTO devices (account_id, device_id, platform, created_at, updated_at) VALUES (?, ?, 'ios', ?, ?) RETURNING id",
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
  const account = (id: number, jid: string, card: Card, devices: boolean): void => {
    insAccount.run(id, now, now);
    insJid.run(jid, id, now, now);
    insCursor.run(id, 0, now);
    insCard.run(id, cardHash(card), JSON.stringify(card), now);
    if (devices) {
      for (const d of ["phone", "tablet"]) {
        const dev = insDevice.get(id, d, now, now) as { id: number };
        insCursor.run(id, dev.id, now);
      }
    }
  };
  const bindPair = (x: number, y: number): void => {
    const [a, b] = x < y ? [x, y] : [y, x];
    const id = `b-${a}-${b}`;
    insBinding.run(id, a, b, now);
    insShare.run(a, b, id);
    insShare.run(b, a, id);
  };
  const chunk = 10_000;
  for (let start = 0; start < n; start += chunk) {
    db.transaction(() => {
      for (let i = start; i < Math.min(n, start + chunk); i++)
        account(uid(i), ujid(i), smallCard(i), i % 10 === 0);
    })();
  }
  for (let start = 0; start < n; start += chunk) {
    db.transaction(() => {
      for (let i = start; i < Math.min(n, start + chunk); i++)
        for (let d = 1; d <= K; d++) bindPair(uid(i), uid((i + d) % n));
    })();
    note(`queries: seeded bindings of ${Math.min(n, start + chunk)} accounts`);
  }
  db.transaction(() => {
    const owner = uid(n);
    account(owner, OWNER_JID, smallCard(n), false);
    // Holders spread over the id range (their lanes are not one contiguous run of the index), offset so that a
    // tenth of them have devices like everyone else.
    const holders = new Set<number>();
    for (let h = 0; h < Math.min(OWNER_HOLDERS, n); h++) {
      let i = (Math.floor((h * n) / OWNER_HOLDERS) + (h % 10)) % n;
      while (holders.has(i)) i = (i + 1) % n;
      holders.add(i);
      bindPair(owner, uid(i));
    }
  })();
  db.prepare("UPDATE counters SET value = 2 WHERE name = 'seq'").run();
  db.pragma("wal_checkpoint(TRUNCATE)");
  db.pragma("cache_size = -2000"); // back to SQLite's default for the timed part
  return performance.now() - t0;
}

export interface Runtime {
  uow: Uow;
  read: Reader;
  /** A reader whose accounts cache holds nothing: every resolve reads the store. */
  coldRead: Reader;
  svc: ExchangeService;
  kinds: ReadonlyMap<string, StreamKind>;
}

/**
 * The running app's parts for these ops (accounts, stream, audience over the binding path, the cards kind, the
 * exchange service), over a store that counts every statement into `counter`. Any backend: bench/postgres.ts runs
 * the same ops on PostgreSQL.
 */
export function runtime(base: Pick<Store, "tx" | "read">, counter: StatementCounter): Runtime {
  const store = countingStore(base, counter);
  const events = new EventBus();
  const cache = new CardRenderCache();
  const paths = [BINDING_PATH];
  const kinds = new Map([...EXCHANGE_KINDS, cardKind(cache)].map((k) => [k.name, k]));
  const accounts = accountsParts({ cacheSize: 10_000, cacheTtlMs: 60_000, events });
  const cold = accountsParts({ cacheSize: 0, cacheTtlMs: 0, events });
  const audience = audienceParts({ paths });
  const unused = (): never => {
    throw new Error("queries bench: the jobs half is not used");
  };
  const uow = makeUow(
    store,
    {
      accounts: accounts.tx,
      stream: streamTx({ kind: (k) => kinds.get(k), paths }),
      jobs: unused,
      audience: audience.tx,
    },
    events,
  );
  const read = makeReader(store, { accounts: accounts.read, audience: audience.read });
  const coldRead = makeReader(store, { accounts: cold.read, audience: audience.read });
  const svc = new ExchangeService({
    uow,
    read,
    servedHosts: [HOST],
    requestTtlMs: 7 * 86_400_000,
    codeTtlMs: 300_000,
    maxPendingPerUser: 50,
    codesPerUser: 10,
    blocksPerUser: 1000,
    redeem: { failuresPerUser: 10, failuresPerHost: 200, windowMs: 600_000, maxKeys: 1000 },
  });
  return { uow, read, coldRead, svc, kinds };
}

interface OpResult {
  calls: number;
  warmup: number;
  p50_ms: number;
  p99_ms: number;
  max_ms: number;
  /** Cores (of 2) busy with other processes while this op ran: a slow op next to a high value was crowded out. */
  others_cores: number | null;
  /** Statements per timed call (units of work and reads alike); null where the samples come from inside a call. */
  statements: { median: number; min: number; max: number } | null;
}

const pct = (sorted: readonly number[], p: number): number =>
  sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)] as number;

function summarize(
  samples: number[],
  warmup: number,
  othersCores: number | null,
  statements: readonly number[] = [],
): OpResult {
  const s = [...samples].sort((a, b) => a - b);
  return {
    calls: s.length,
    warmup,
    p50_ms: round(pct(s, 50), 3),
    p99_ms: round(pct(s, 99), 3),
    max_ms: round(s[s.length - 1] as number, 3),
    others_cores: othersCores,
    statements:
      statements.length === 0
        ? null
        : { median: median(statements), min: Math.min(...statements), max: Math.max(...statements) },
  };
}

interface Timed {
  samples: number[];
  /** Statements each timed call ran (the counter is on only around the call). */
  statements: number[];
  othersCores: number | null;
  from: number;
  to: number;
}

/** Times `fn` around each call and counts its statements; `prep` and `after` (untimed, uncounted) run around it. */
async function timeOp<A>(
  counter: StatementCounter,
  calls: number,
  warmup: number,
  prep: (i: number) => Promise<A> | A,
  fn: (a: A) => Promise<unknown>,
  after?: (a: A) => Promise<void>,
): Promise<Timed> {
  const samples: number[] = [];
  const statements: number[] = [];
  const from = Date.now();
  const sys0 = systemCpu();
  const own0 = process.cpuUsage();
  const t0 = performance.now();
  for (let i = 0; i < warmup + calls; i++) {
    const a = await prep(i);
    counter.statements = 0;
    counter.on = true;
    const s = process.hrtime.bigint();
    await fn(a);
    const e = process.hrtime.bigint();
    counter.on = false;
    if (i >= warmup) {
      samples.push(Number(e - s) / 1e6);
      statements.push(counter.statements);
    }
    if (after) await after(a);
    // A server's event loop turns between requests: let it here too (untimed), so that what the store does on it
    // between units of work (the checkpoint worker's reports and forced checkpoints) happens as it would there.
    await new Promise((r) => setImmediate(r));
  }
  const wall = performance.now() - t0;
  const sys1 = systemCpu();
  const own = process.cpuUsage(own0);
  const othersCores =
    sys0 && sys1
      ? round(Math.max(0, sys1.busyMs - sys0.busyMs - (own.user + own.system) / 1000) / wall, 2)
      : null;
  return { samples, statements, othersCores, from, to: Date.now() };
}

export async function run(opts: QueriesOptions = {}): Promise<Record<string, unknown>> {
  const n = opts.accounts ?? 20_000;
  const calls = opts.calls ?? 5_000;
  const warmup = Math.max(1, Math.floor(calls / 10));
  // The 1,000-holder ops cost ~100× a cheap one with their drains: a tenth of the calls.
  const heavyCalls = Math.max(10, Math.floor(calls / 10));
  const heavyWarmup = Math.max(1, Math.floor(heavyCalls / 10));
  const tmp = opts.db ? undefined : mkdtempSync(path.join(os.tmpdir(), "cardlink-bench-queries-"));
  const file = opts.db ?? path.join(tmp as string, "queries.sqlite");
  const reuse = existsSync(file);
  const store = new SqliteStore(file, {
    legacy: false,
    ...(opts.checkpointIntervalMs !== undefined
      ? { checkpoint: { intervalMs: opts.checkpointIntervalMs } }
      : {}),
  });
  // What the checkpoint worker did, per op (its reports carry their time: they arrive only when this thread yields).
  const reports: CheckpointReport[] = [];
  store.onCheckpoint((r) => reports.push(r));
  const windows: Record<string, { from: number; to: number }> = {};
  try {
    await store.migrate([SCHEMA_2000]);
    let seedMs: number | null = null;
    if (!reuse) {
      note(`queries: seeding ${n} accounts into ${file}`);
      seedMs = seed(store, n);
    } else note(`queries: reusing ${file}`);
    const accounts = count(store, "accounts") - 1;
    const info: SeedInfo = {
      accounts: accounts + 1,
      bindings: count(store, "bindings"),
      shares: count(store, "shares"),
      devices: count(store, "devices"),
      cursors: count(store, "stream_cursors"),
      seed_ms: seedMs === null ? null : Math.round(seedMs),
      db_mb: round(statSync(file).size / 1048576, 1),
    };
    if (opts.walAutocheckpoint !== undefined)
      store.db.pragma(`wal_autocheckpoint = ${Math.max(0, Math.floor(opts.walAutocheckpoint))}`);
    const walAutocheckpoint = store.db.pragma("wal_autocheckpoint", { simple: true }) as number;
    const owner = uid(accounts);
    const counter: StatementCounter = { on: false, statements: 0 };
    const rt = runtime(store, counter);
    const rnd = prng(8);
    const pick = (): number => Math.floor(rnd() * accounts);
    const budget = new StanzaBudget(256 * 1024);
    const checkpoint = (): void => void store.db.pragma("wal_checkpoint(TRUNCATE)");
    const seqNow = (): number =>
      (store.db.prepare("SELECT value FROM counters WHERE name = 'seq'").get() as { value: number }).value;
    const ops: Record<string, OpResult> = {};
    const record = (name: string, r: Timed, w: number): void => {
      ops[name] = summarize(r.samples, w, r.othersCores, r.statements);
      windows[name] = r;
      note(
        `queries: ${name} p50 ${ops[name].p50_ms} ms, p99 ${ops[name].p99_ms} ms, ${ops[name].statements?.median} statements`,
      );
    };

    checkpoint();
    record(
      "resolve",
      await timeOp(
        counter,
        calls,
        warmup,
        () => ujid(pick()),
        (j) => rt.coldRead("bench.resolve", (r) => r.accounts.resolve(j)),
      ),
      warmup,
    );
    checkpoint();
    record(
      "contacts",
      await timeOp(
        counter,
        calls,
        warmup,
        () => ujid(pick()),
        (j) => contacts(rt.read, j, cardVersions),
      ),
      warmup,
    );
    checkpoint();
    const sync = (user: string, since: number) =>
      rt.read("bench.sync", (r) => syncPage(r, { user, since, max: SYNC_PAGE, format: "vcard4", budget }));
    record(
      "sync_full",
      await timeOp(
        counter,
        calls,
        warmup,
        () => ujid(pick()),
        (j) => sync(j, 0),
      ),
      warmup,
    );

    // Drains the owner's 1,000 lanes through the real claim/ack units of work, 256 cursors per unit (the
    // delivery's batch size); full batches are the claim_batch_256 / ack_batch_256 samples.
    const ownerCursors = (
      store.db
        .prepare(
          "SELECT c.id FROM stream_cursors c JOIN shares s ON s.holder = c.account_id WHERE s.owner = ?",
        )
        .all(owner) as Array<{ id: number }>
    ).map((r) => r.id);
    const claimSamples: number[] = [];
    const ackSamples: number[] = [];
    const me = "bench-queries";
    const drain = async (): Promise<void> => {
      const upto = seqNow();
      for (let i = 0; i < ownerCursors.length; i += 256) {
        const batch = ownerCursors.slice(i, i + 256);
        let s = process.hrtime.bigint();
        await rt.uow("queue.claim", (u) => streamRepo(u.tx).claim(me, batch, u.now, u.now + 30_000));
        let e = process.hrtime.bigint();
        if (batch.length === 256) claimSamples.push(Number(e - s) / 1e6);
        s = process.hrtime.bigint();
        await rt.uow("queue.ack", (u) =>
          streamRepo(u.tx).ack(
            me,
            batch.map((cursor) => ({ cursor, upto })),
            u.now,
          ),
        );
        e = process.hrtime.bigint();
        if (batch.length === 256) ackSamples.push(Number(e - s) / 1e6);
      }
    };
    let variant = 1;
    checkpoint();
    record(
      "card_change_1k_drained",
      await timeOp(
        counter,
        heavyCalls,
        heavyWarmup,
        () => smallCard(accounts, variant++),
        (c) => storeCard(rt, OWNER_JID, c),
        drain,
      ),
      heavyWarmup,
    );
    const pendingEntries = (): number =>
      (store.db.prepare("SELECT COUNT(*) AS n FROM stream_entries").get() as { n: number }).n;
    const leftAfterDrain = pendingEntries();
    // The ack samples: drop the ones taken during warm-up calls (the first heavyWarmup drains).
    const perDrain = Math.floor(ownerCursors.length / 256);
    ops.claim_batch_256 = summarize(claimSamples.slice(heavyWarmup * perDrain), heavyWarmup * perDrain, null);
    ops.ack_batch_256 = summarize(ackSamples.slice(heavyWarmup * perDrain), heavyWarmup * perDrain, null);
    checkpoint();
    await storeCard(rt, OWNER_JID, smallCard(accounts, variant++)); // every holder now has one `card` pending
    record(
      "card_change_1k_pending",
      await timeOp(
        counter,
        heavyCalls,
        heavyWarmup,
        () => smallCard(accounts, variant++),
        (c) => storeCard(rt, OWNER_JID, c),
      ),
      heavyWarmup,
    );
    const pendingAfterCoalescing = pendingEntries();
    await drain();
    checkpoint();
    record(
      "card_change_20",
      await timeOp(
        counter,
        calls,
        warmup,
        () => {
          const i = pick();
          return { j: ujid(i), c: smallCard(i, variant++) };
        },
        (a) => storeCard(rt, a.j, a.c),
      ),
      warmup,
    );
    checkpoint();
    // sync_delta: an owner changes (untimed), then one of its holders syncs from the seq before the change.
    record(
      "sync_delta",
      await timeOp(
        counter,
        calls,
        warmup,
        async () => {
          const i = pick();
          const since = seqNow();
          await storeCard(rt, ujid(i), smallCard(i, variant++));
          return { holder: ujid((i + 1 + Math.floor(rnd() * K)) % accounts), since };
        },
        (a) => sync(a.holder, a.since),
      ),
      warmup,
    );
    checkpoint();
    // bind: a fresh code (untimed) from one user, redeemed by another at least K+1 apart (never bound before).
    const used = new Set<number>();
    const fresh = (): number => {
      for (;;) {
        const i = pick();
        if (!used.has(i)) {
          used.add(i);
          return i;
        }
      }
    };
    const bindCalls = Math.min(calls, Math.floor(accounts / 2) - 10);
    record(
      "bind",
      await timeOp(
        counter,
        bindCalls,
        Math.min(warmup, Math.floor(bindCalls / 10)),
        async () => {
          const x = fresh();
          let y = fresh();
          while (Math.abs(x - y) <= K || Math.abs(x - y) >= accounts - K) {
            used.delete(y);
            y = fresh();
          }
          const code = await rt.svc.createCode(ujid(x));
          return { redeemer: ujid(y), code: code.code };
        },
        (a) => rt.svc.redeemCode(a.redeemer, a.code),
      ),
      Math.min(warmup, Math.floor(bindCalls / 10)),
    );

    // binding_delivery: what a fresh binding costs the redeemer's lane to deliver — the real StreamDelivery's
    // claim → read and render (the `binding` record and the peer's `card`) → send → ack units of work, one round.
    // The transport is the one part not real: a client that acknowledges at once (no XMPP, as for every op here).
    // Before each call (untimed) the redeemer's lane is drained the same way, so the round carries only the bind's
    // entries (`binding_delivery_entries` checks it).
    let target: { lane: AccountId; full: string } | undefined;
    const ackedEntries: number[] = [];
    const delivery = new StreamDelivery({
      uow: rt.uow,
      read: rt.read,
      kind: (k) => rt.kinds.get(k),
      transport: { send: () => Promise.resolve({ type: "result" as const }) },
      presence: {
        consumers: (lane) => (target?.lane === lane ? [0] : []),
        resources: (lane, consumer) => (target?.lane === lane && consumer === 0 ? [target.full] : []),
        gone: () => undefined,
      },
      budget,
      log: pino({ level: "silent" }),
      config: { ackTimeoutMs: 15_000, retryBaseMs: 1_000, retryMaxMs: 60_000, batchSize: 20, ackBatchMs: 0 },
      leaseMs: 30_000,
      me,
      hooks: { acked: (entries) => ackedEntries.push(entries.length) },
    });
    const deliverLane = async (lane: AccountId, full: string): Promise<void> => {
      target = { lane, full };
      delivery.kickLanes([lane]);
      await delivery.idle();
    };
    const entriesPerCall: number[] = [];
    const bdCalls = Math.min(calls, Math.floor((accounts - used.size) / 2) - 10);
    const bdWarmup = Math.min(warmup, Math.floor(bdCalls / 10));
    checkpoint();
    record(
      "binding_delivery",
      await timeOp(
        counter,
        bdCalls,
        bdWarmup,
        async () => {
          const x = fresh();
          let y = fresh();
          while (Math.abs(x - y) <= K || Math.abs(x - y) >= accounts - K) {
            used.delete(y);
            y = fresh();
          }
          const lane = uid(y) as AccountId;
          const full = `${ujid(y)}/phone`;
          await deliverLane(lane, full);
          const code = await rt.svc.createCode(ujid(x));
          await rt.svc.redeemCode(ujid(y), code.code);
          ackedEntries.length = 0;
          return { lane, full };
        },
        (a) => deliverLane(a.lane, a.full),
        () => {
          entriesPerCall.push(ackedEntries.reduce((t, n) => t + n, 0));
          return Promise.resolve();
        },
      ),
      bdWarmup,
    );
    await delivery.stop();

    // The worker's reports are messages to this thread, which the timed loops never yield to: let them in.
    for (let i = 0; i < 3; i++) await new Promise((r) => setImmediate(r));
    const worked = (from: number, to: number) => {
      const rs = reports.filter((r) => !r.idle && r.at >= from && r.at <= to);
      return {
        runs: rs.length,
        forced: rs.filter((r) => r.reason === "limit").length,
        busy: rs.filter((r) => r.busy).length,
        max_wal_pages: Math.max(0, ...rs.map((r) => r.walPages)),
        total_ms: round(
          rs.reduce((t, r) => t + r.ms, 0),
          1,
        ),
        max_ms: round(Math.max(0, ...rs.map((r) => r.ms)), 1),
        // Each forced (RESTART/TRUNCATE) checkpoint: the writes of this process waited for it.
        forced_ms: rs.filter((r) => r.reason === "limit").map((r) => round(r.ms, 1)),
      };
    };
    return {
      bench: "queries",
      seed: info,
      wal_autocheckpoint: walAutocheckpoint,
      // Idle runs (nothing to copy) are not counted; `seed` is everything before the first op.
      checkpoint_worker: store.checkpointer
        ? {
            interval_ms: store.checkpointer.options.intervalMs,
            wal_limit_pages: store.checkpointer.options.walLimitPages,
            seed: worked(0, windows.resolve?.from ?? Infinity),
            ops: Object.fromEntries(Object.entries(windows).map(([k, w]) => [k, worked(w.from, w.to)])),
          }
        : null,
      ops,
      // Entries each binding_delivery round acknowledged (2: the binding record and the peer's card).
      binding_delivery_entries: entriesPerCall.length
        ? {
            median: median(entriesPerCall),
            min: Math.min(...entriesPerCall),
            max: Math.max(...entriesPerCall),
          }
        : null,
      coalescing: {
        entries_left_after_drain: leftAfterDrain,
        entries_pending_after_1k_pending: pendingAfterCoalescing,
      },
      not_measured: ["EXPLAIN QUERY PLAN per op"],
    };
  } finally {
    await store.close();
    if (tmp) rmSync(tmp, { recursive: true, force: true });
  }
}

function argv(name: string): string | undefined {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

runMain(import.meta.url, "queries", () => {
  const accounts = argv("--accounts");
  const calls = argv("--calls");
  const db = argv("--db");
  const wal = argv("--wal-autocheckpoint");
  const interval = argv("--checkpoint-interval");
  return run({
    ...(interval ? { checkpointIntervalMs: Number(interval) } : {}),
    ...(wal ? { walAutocheckpoint: Number(wal) } : {}),
    ...(accounts ? { accounts: Number(accounts) } : {}),
    ...(calls ? { calls: Number(calls) } : {}),
    ...(db ? { db } : {}),
  });
});
