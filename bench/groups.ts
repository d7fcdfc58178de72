/**
 * Groups benchmark (docs/BENCHMARKS.md "groups", issue 10's Performance section): the groups feature's units of
 * work on a SQLite file, through its real service functions in process (GroupsService, storeCard, the real
 * accounts/stream/audience parts and every module's kinds and paths, the address book's in-tx `card.updated`
 * handler as the running app registers it; no XMPP, no delivery).
 *
 *   node dist/bench/groups.js [--rounds R] [--adds N] [--changes N] [--leaves N] [--delete-sizes 250,1000,5000]
 *                              [--db-dir DIR]
 *
 * Cases, each op timed alone (p50/p99/max of its wall time, own-process CPU per op, statements per op counted by a
 * wrapper over the unit of work's Sql — run/get/all/seq/lockAccount, as test/unit/features-groups.test.ts counts
 * them — and the rows those statements changed):
 *
 * - `add_100`, `add_1000`, `add_5000`: one invitee accepts an invitation (`GroupsService.accept`, the unit of work
 *   that joins and fans out both ways) into a group of that many members; the invitation is sent untimed just
 *   before. Rounds alternate the three sizes. Each group grows by one per add.
 * - `card_change_5000`: one member of the 5,000-member group stores a changed card (`storeCard`, the `card.set`
 *   unit of work): the time until its COMMIT returned (durable in the WAL; synchronous=NORMAL) and the `card`
 *   entries it wrote (one per other member).
 * - `leave_5000`: one member leaves the 5,000-member group (`GroupsService.leave`).
 * - `delete_<n>`: the owner deletes a group of n members (`GroupsService.delete`): rows written — since migration
 *   3102 one `group_deleted_members` row per member and no tombstone (before it: a tombstone per ordered pair of
 *   former members, n(n-1)).
 *
 * Seed (not timed): migration 2000 and the modules' migrations through `store.migrate`, then plain INSERTs:
 * accounts + primary JIDs + shared cursors + small cards for every member and newcomer, the groups, their member
 * rows. Between timed ops (not timed) the stream is emptied (`DELETE FROM stream_entries`, then payloads): every
 * lane drained, as when members are online and ack; and the WAL is checkpointed, so no op inherits another's WAL.
 * Prints one JSON object on stdout; progress goes to stderr.
 */
import { mkdtempSync, rmSync, statSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { performance } from "node:perf_hooks";
import { followCard } from "../component/features/addressbook/service.js";
import { storeCard } from "../component/features/cards/service.js";
import { GroupsService, hideBlockedInvitations } from "../component/features/groups/service.js";
import { moduleMigrations, userDataWiring } from "../component/features.js";
import { accountsParts } from "../component/runtime/accounts/tx.js";
import { audienceParts } from "../component/runtime/audience/tx.js";
import { defaultConfig } from "../component/runtime/config.js";
import { EventBus } from "../component/runtime/events.js";
import { streamTx } from "../component/runtime/queue/stream-tx.js";
import { makeReader, makeUow, type Reader, type Uow } from "../component/runtime/uow.js";
import { cardHash, normalizeCard, type Card } from "../stanzas/model/card.js";
import { SCHEMA_2000 } from "../storage/sqlite/schema-2000.js";
import { SqliteStore } from "../storage/sqlite/store.js";
import type { Store, Tx } from "../storage/store.js";
import { median, note, round, runMain, runRounds, systemCpu } from "./lib.js";

export interface GroupsOptions {
  /** Rounds alternating the three add sizes (default 3). */
  rounds?: number;
  /** Timed adds per size per round (default 20, after 2 warm-up adds per size). */
  adds?: number;
  /** Timed card changes in the 5,000-member group (default 30, after 3 warm-up). */
  changes?: number;
  /** Timed leaves of the 5,000-member group (default 20, after 2 warm-up). */
  leaves?: number;
  /** Sizes of the deleted groups, each deleted once per round (default 250, 1000, 5000). */
  deleteSizes?: number[];
  /** Where the temporary database goes (default the OS temp directory); removed at the end. */
  dbDir?: string;
}

const HOST = "localhost";
const ADD_SIZES = [100, 1_000, 5_000] as const;
const BIG = 5_000;

const jidOf = (tag: string, i: number): string => `${tag}${String(i).padStart(5, "0")}@${HOST}`;

function smallCard(i: number, variant = 0): Card {
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

/** What one unit of work ran: statements through its Sql. */
interface Counter {
  on: boolean;
  statements: number;
}

/** Counts a unit of work's statements: a Proxy over its Tx (as test/unit/features-groups.test.ts). */
function counting(tx: Tx, c: Counter): Tx {
  return new Proxy(tx, {
    get(t, k) {
      const v: unknown = Reflect.get(t, k, t);
      if (typeof v !== "function") return v;
      const f = v as (...a: unknown[]) => unknown;
      if (k === "run" || k === "get" || k === "all" || k === "seq" || k === "lockAccount")
        return (...a: unknown[]) => {
          if (c.on) c.statements++;
          return f.apply(t, a);
        };
      return f.bind(t);
    },
  });
}

interface Runtime {
  uow: Uow;
  read: Reader;
  svc: GroupsService;
}

/** The running app's parts for these units of work (component/runtime/runtime.ts buildCore), over the counter. */
function runtime(store: SqliteStore, counter: Counter, maxMembers: number): Runtime {
  const config = defaultConfig();
  const events = new EventBus();
  const wiring = userDataWiring();
  const kinds = new Map(wiring.kinds.map((k) => [k.name, k]));
  const accounts = accountsParts({
    cacheSize: config.accounts.cacheSize,
    cacheTtlMs: config.accounts.cacheTtlMs,
    events,
  });
  const audience = audienceParts({ paths: wiring.paths });
  const unused = (): never => {
    throw new Error("groups bench: the jobs half is not used");
  };
  const counted: Pick<Store, "tx" | "read"> = {
    tx: (name, fn) => store.tx(name, (tx) => fn(counting(tx, counter))),
    read: (name, fn) => store.read(name, fn),
  };
  const uow = makeUow(
    counted,
    {
      accounts: accounts.tx,
      stream: streamTx({ kind: (k) => kinds.get(k), paths: wiring.paths }),
      jobs: unused,
      audience: audience.tx,
    },
    events,
  );
  const read = makeReader(counted, { accounts: accounts.read, audience: audience.read });
  // The in-tx handlers the running app registers on these units of work (addressbook and groups attach).
  events.onTx("card.updated", (u, e) => followCard(u, e.owner, { card: config.card, book: config.book }));
  events.onTx("exchange.blocked", hideBlockedInvitations);
  for (const h of wiring.onAccountDeleting) events.onTx("account.deleting", h);
  const g = config.groups;
  const svc = new GroupsService({
    uow,
    read,
    servedHosts: [HOST],
    // Above the default 5,000: the 5,000-member group takes the timed adds on top.
    maxMembers,
    ownedPerUser: g.ownedPerUser,
    joinedPerUser: g.joinedPerUser,
    pendingInvitationsPerGroup: g.pendingInvitationsPerGroup,
    invitationTtlMs: g.invitationTtlSeconds * 1000,
    exemptionsPerUser: g.exemptionsPerUser,
    pollMinSeconds: g.pollMinSeconds,
    pollMaxSeconds: g.pollMaxSeconds,
    codeTtlMs: g.codeTtlSeconds * 1000,
    codesPerUser: g.codesPerUser,
    redeem: {
      failuresPerUser: config.limits.redeemFailuresPerUser,
      failuresPerHost: config.limits.redeemFailuresPerHost,
      windowMs: config.limits.redeemWindowSeconds * 1000,
      maxKeys: config.limits.rateLimiterKeys,
    },
  });
  return { uow, read, svc };
}

interface Seeder {
  /** Accounts (with a JID, a shared cursor and a card) for these JIDs; returns their ids. */
  accounts(jids: readonly string[]): number[];
  /** A group owned by members[0] with these members (policy NULL, push delivery). */
  group(id: string, members: readonly number[]): void;
}

function seeder(store: SqliteStore): Seeder {
  const db = store.db;
  const now = Date.now();
  let next = (db.prepare("SELECT COALESCE(MAX(id), 0) AS m FROM accounts").get() as { m: number }).m + 1;
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
  const insGroup = db.prepare(
    "INSERT INTO groups (id, name, description, owner, invite, created_at, seq) VALUES (?, ?, '', ?, 'members', ?, 1)",
  );
  const insMember = db.prepare(
    "INSERT INTO group_members (group_id, account_id, role, policy, poll_seconds, seq, joined_at) VALUES (?, ?, ?, NULL, NULL, 1, ?)",
  );
  return {
    accounts: (jids) =>
      db.transaction(() => {
        const ids: number[] = [];
        for (const j of jids) {
          const id = next++;
          const c = smallCard(id);
          insAccount.run(id, now, now);
          insJid.run(j, id, now, now);
          insCursor.run(id, now);
          insCard.run(id, cardHash(c), JSON.stringify(c), now);
          ids.push(id);
        }
        return ids;
      })(),
    group: (id, members) =>
      db.transaction(() => {
        insGroup.run(id, `group ${id}`, members[0], now);
        members.forEach((m, i) => insMember.run(id, m, i === 0 ? "owner" : "member", now + i));
      })(),
  };
}

interface OpResult {
  calls: number;
  warmup: number;
  p50_ms: number;
  p99_ms: number;
  max_ms: number;
  /** This process's CPU (user + system) per op, median: the op runs on this thread alone. */
  cpu_ms_p50: number;
  statements: { median: number; min: number; max: number };
  /** Stream entries present right after the op (every lane was emptied before it): what it queued, median. */
  entries_written_median: number;
  /** Rows the op added to `tombstones` (net: a join also deletes some), median. */
  tombstones_added_median: number;
  /** Rows the op added to `group_deleted_members` (a deleted group's members), median. */
  deleted_member_rows_median: number;
  /** Cores (of 2) busy with other processes while the case ran: a slow case next to a high value was crowded out. */
  others_cores: number | null;
  [extra: string]: unknown;
}

interface Sample {
  ms: number;
  cpuMs: number;
  statements: number;
  entries: number;
  tombstones: number;
  deletedMembers: number;
}

const pct = (sorted: readonly number[], p: number): number =>
  sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)] as number;

function summarize(samples: Sample[], warmup: number, othersCores: number | null): OpResult {
  const ms = samples.map((s) => s.ms).sort((a, b) => a - b);
  const st = samples.map((s) => s.statements);
  return {
    calls: samples.length,
    warmup,
    p50_ms: round(pct(ms, 50), 3),
    p99_ms: round(pct(ms, 99), 3),
    max_ms: round(ms[ms.length - 1] as number, 3),
    cpu_ms_p50: round(median(samples.map((s) => s.cpuMs)), 2),
    statements: { median: median(st), min: Math.min(...st), max: Math.max(...st) },
    entries_written_median: median(samples.map((s) => s.entries)),
    tombstones_added_median: median(samples.map((s) => s.tombstones)),
    deleted_member_rows_median: median(samples.map((s) => s.deletedMembers)),
    others_cores: othersCores,
  };
}

/** Cores used by other processes over an interval, from machine-wide counters minus this process's CPU. */
function othersMeter(): () => number | null {
  const sys0 = systemCpu();
  const own0 = process.cpuUsage();
  const t0 = performance.now();
  return () => {
    const sys1 = systemCpu();
    const own = process.cpuUsage(own0);
    const wall = performance.now() - t0;
    return sys0 && sys1
      ? round(Math.max(0, sys1.busyMs - sys0.busyMs - (own.user + own.system) / 1000) / wall, 2)
      : null;
  };
}

export async function run(opts: GroupsOptions = {}): Promise<Record<string, unknown>> {
  const rounds = opts.rounds ?? 3;
  const adds = opts.adds ?? 20;
  const addWarmup = 2;
  const changes = opts.changes ?? 30;
  const changeWarmup = 3;
  const leaves = opts.leaves ?? 20;
  const leaveWarmup = 2;
  const deleteSizes = opts.deleteSizes ?? [250, 1_000, 5_000];
  const tmp = mkdtempSync(path.join(opts.dbDir ?? os.tmpdir(), "cardlink-bench-groups-"));
  const file = path.join(tmp, "groups.sqlite");
  const store = new SqliteStore(file, { legacy: false });
  const counter: Counter = { on: false, statements: 0 };
  try {
    const t0 = performance.now();
    await store.migrate([SCHEMA_2000, ...moduleMigrations()]);
    const seed = seeder(store);
    const maxMembers = BIG + rounds * (adds + addWarmup) + 10;
    const rt = runtime(store, counter, maxMembers);
    // Groups to add to: g<size>, members m<size>-*; newcomers n<size>-* (accounts with a card, in no group).
    const groups: Record<number, { id: string; owner: string; members: string[]; newcomers: string[] }> = {};
    for (const size of ADD_SIZES) {
      const members = Array.from({ length: size }, (_, i) => jidOf(`m${size}-`, i));
      const newcomers = Array.from({ length: rounds * (adds + addWarmup) }, (_, i) => jidOf(`n${size}-`, i));
      const ids = seed.accounts(members);
      seed.accounts(newcomers);
      seed.group(`g${size}`, ids);
      groups[size] = { id: `g${size}`, owner: members[0] as string, members, newcomers };
    }
    // Groups to delete: one per size per round, each with its own members.
    const doomed: Array<{ size: number; id: string; owner: string }> = [];
    for (let r = 0; r < rounds; r++)
      for (const size of deleteSizes) {
        const members = Array.from({ length: size }, (_, i) => jidOf(`d${size}r${r}-`, i));
        seed.group(`d${size}r${r}`, seed.accounts(members));
        doomed.push({ size, id: `d${size}r${r}`, owner: members[0] as string });
      }
    store.db.prepare("UPDATE counters SET value = 2 WHERE name = 'seq'").run();
    const drain = (): void => {
      store.db.prepare("DELETE FROM stream_entries").run();
      store.db.prepare("DELETE FROM payloads").run();
      store.db.pragma("wal_checkpoint(TRUNCATE)");
    };
    drain();
    const seedMs = performance.now() - t0;
    const n = (sql: string, ...p: unknown[]): number => (store.db.prepare(sql).get(...p) as { n: number }).n;
    const seedInfo = {
      accounts: n("SELECT COUNT(*) AS n FROM accounts"),
      group_members: n("SELECT COUNT(*) AS n FROM group_members"),
      seed_ms: Math.round(seedMs),
      db_mb: round(statSync(file).size / 1048576, 1),
    };
    note(`groups: seeded ${seedInfo.accounts} accounts, ${seedInfo.group_members} memberships`);

    /** One timed op: drained stream and checkpointed WAL before, the counter on around it only. */
    const timed = async (fn: () => Promise<unknown>): Promise<Sample> => {
      drain();
      const tomb0 = n("SELECT COUNT(*) AS n FROM tombstones");
      const dm0 = n("SELECT COUNT(*) AS n FROM group_deleted_members");
      counter.statements = 0;
      counter.on = true;
      const cpu0 = process.cpuUsage();
      const s = process.hrtime.bigint();
      try {
        await fn();
      } finally {
        counter.on = false;
      }
      const e = process.hrtime.bigint();
      const cpu = process.cpuUsage(cpu0);
      return {
        ms: Number(e - s) / 1e6,
        cpuMs: (cpu.user + cpu.system) / 1000,
        statements: counter.statements,
        entries: n("SELECT COUNT(*) AS n FROM stream_entries"),
        tombstones: n("SELECT COUNT(*) AS n FROM tombstones") - tomb0,
        deletedMembers: n("SELECT COUNT(*) AS n FROM group_deleted_members") - dm0,
      };
    };

    const ops: Record<string, OpResult> = {};

    // (a) adds, rounds alternating the sizes.
    const used: Record<number, number> = { 100: 0, 1000: 0, 5000: 0 };
    const addSamples: Record<number, Sample[]> = { 100: [], 1000: [], 5000: [] };
    const addCores: Record<number, number[]> = { 100: [], 1000: [], 5000: [] };
    const cardsToNewcomer: Record<number, number[]> = { 100: [], 1000: [], 5000: [] };
    const addCase = async (size: number): Promise<void> => {
      const g = groups[size] as (typeof groups)[number];
      const meter = othersMeter();
      for (let i = 0; i < adds + addWarmup; i++) {
        const who = g.newcomers[(used[size] = (used[size] ?? 0) + 1) - 1] as string;
        const inv = await rt.svc.invite(g.owner, g.id, who);
        const s = await timed(() => rt.svc.accept(who, inv.id, null));
        if (i >= addWarmup) {
          (addSamples[size] as Sample[]).push(s);
          // The fan-out rows this add left: co-members' cards into the newcomer's lane (the other direction
          // and the notices are counted in rows_changed).
          (cardsToNewcomer[size] as number[]).push(
            n(
              "SELECT COUNT(*) AS n FROM stream_entries e JOIN identifiers i ON i.account_id = e.account_id WHERE i.value = ? AND e.kind = 'card'",
              who,
            ),
          );
        }
      }
      (addCores[size] as number[]).push(meter() ?? Number.NaN);
    };
    await runRounds(
      rounds,
      ADD_SIZES.map((s) => String(s)),
      (c) => addCase(Number(c)),
    );
    for (const size of ADD_SIZES) {
      const key = `add_${size}`;
      const cores = (addCores[size] as number[]).filter((x) => !Number.isNaN(x));
      ops[key] = {
        ...summarize(addSamples[size] as Sample[], addWarmup * rounds, cores.length ? median(cores) : null),
        group_size_before: `${size}–${size + rounds * (adds + addWarmup) - 1}`,
        card_entries_to_newcomer_median: median(cardsToNewcomer[size] as number[]),
      };
      note(`groups: ${key} p50 ${ops[key].p50_ms} ms, statements ${ops[key].statements.median}`);
    }

    // (b) card change in the 5,000-member group (by a plain member).
    {
      const big = groups[BIG] as (typeof groups)[number];
      const who = big.members[1] as string;
      const samples: Sample[] = [];
      const entries: number[] = [];
      const meter = othersMeter();
      for (let i = 0; i < changes + changeWarmup; i++) {
        let holders = 0;
        const s = await timed(async () => {
          holders = (await storeCard(rt, who, smallCard(1, i + 1))).holders.length;
        });
        if (i >= changeWarmup) {
          samples.push(s);
          entries.push(holders);
        }
      }
      ops.card_change_5000 = {
        ...summarize(samples, changeWarmup, meter()),
        group_size: n("SELECT COUNT(*) AS n FROM group_members WHERE group_id = ?", big.id),
        card_entries_written_median: median(entries),
      };
      note(`groups: card_change_5000 p50 ${ops.card_change_5000.p50_ms} ms`);
    }

    // (c) leaves of the 5,000-member group (plain members, each once).
    {
      const big = groups[BIG] as (typeof groups)[number];
      const sizeBefore = n("SELECT COUNT(*) AS n FROM group_members WHERE group_id = ?", big.id);
      const samples: Sample[] = [];
      const meter = othersMeter();
      for (let i = 0; i < leaves + leaveWarmup; i++) {
        const who = big.members[10 + i] as string;
        const s = await timed(() => rt.svc.leave(who, big.id));
        if (i >= leaveWarmup) samples.push(s);
      }
      ops.leave_5000 = {
        ...summarize(samples, leaveWarmup, meter()),
        group_size_before: `${sizeBefore - leaveWarmup - leaves + 1}–${sizeBefore}`,
      };
      note(`groups: leave_5000 p50 ${ops.leave_5000.p50_ms} ms`);
    }

    // (c) group deletion, rounds alternating the sizes; one run per size per round, no warm-up (a group is
    // deleted once). Tombstones: new rows in the table (the pairs had none).
    {
      const samples: Record<number, Sample[]> = {};
      const cores: Record<number, number[]> = {};
      for (const s of deleteSizes) {
        samples[s] = [];
        cores[s] = [];
      }
      await runRounds(
        rounds,
        deleteSizes.map((s) => String(s)),
        async (c, r) => {
          const size = Number(c);
          const d = doomed.find((x) => x.size === size && x.id === `d${size}r${r}`);
          if (!d) throw new Error(`groups bench: no group of ${size} for round ${r}`);
          const meter = othersMeter();
          const s = await timed(() => rt.svc.delete(d.owner, d.id));
          (cores[size] as number[]).push(meter() ?? Number.NaN);
          (samples[size] as Sample[]).push(s);
          note(
            `groups: delete_${size} ${round(s.ms)} ms, ${s.tombstones} tombstones, ${s.deletedMembers} member rows`,
          );
        },
      );
      for (const size of deleteSizes) {
        const c = (cores[size] as number[]).filter((x) => !Number.isNaN(x));
        ops[`delete_${size}`] = {
          ...summarize(samples[size] as Sample[], 0, c.length ? median(c) : null),
          runs_ms: (samples[size] as Sample[]).map((s) => round(s.ms, 1)),
          tombstones_written: (samples[size] as Sample[]).map((s) => s.tombstones),
          deleted_member_rows_written: (samples[size] as Sample[]).map((s) => s.deletedMembers),
          pairs_n_times_n_minus_1: size * (size - 1),
        };
      }
    }

    return {
      bench: "groups",
      seed: seedInfo,
      db_mb_at_end: round(statSync(file).size / 1048576, 1),
      options: { rounds, adds, changes, leaves, delete_sizes: deleteSizes, max_members: maxMembers },
      ops,
    };
  } finally {
    await store.close();
    rmSync(tmp, { recursive: true, force: true });
  }
}

function argv(name: string): string | undefined {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

runMain(import.meta.url, "groups", () => {
  const num = (k: string): number | undefined => {
    const v = argv(k);
    return v === undefined ? undefined : Number(v);
  };
  const o: GroupsOptions = {};
  const rounds = num("--rounds");
  const adds = num("--adds");
  const changes = num("--changes");
  const leaves = num("--leaves");
  const sizes = argv("--delete-sizes");
  const dbDir = argv("--db-dir");
  if (rounds !== undefined) o.rounds = rounds;
  if (adds !== undefined) o.adds = adds;
  if (changes !== undefined) o.changes = changes;
  if (leaves !== undefined) o.leaves = leaves;
  if (sizes !== undefined) o.deleteSizes = sizes.split(",").map(Number);
  if (dbDir !== undefined) o.dbDir = dbDir;
  return run(o);
});
