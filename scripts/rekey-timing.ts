/**
 * How long migration 2000 (storage/sqlite/rekey-2000.ts) takes on a large legacy database: seeds a file at the
 * legacy schema with plain SQL (users with a card and a device, user i bound to i+1 … i+k as bench/memory.ts
 * does, a pending outbox entry and a queued push notice per user, some tombstones), then times
 * `store.migrate(migrations2000(...))` on it and prints one JSON object. The numbers go to docs/OPERATIONS.md.
 *
 *   npm run build && node dist/scripts/rekey-timing.js [users=10000] [k=10] [file]
 *
 * The file is scratch (100,000 users × 10 is about 700 MB): it is deleted at the end unless a path was given.
 */
import { randomUUID } from "node:crypto";
import { mkdtempSync, rmSync, statSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { migrations2000 } from "../storage/sqlite/rekey-2000.js";
import { SqliteStore } from "../storage/sqlite/store.js";

const jid = (i: number): string => `user${i}@example.org`;

/** Writes the legacy database (schema 300) to `file`; returns the milliseconds it took. */
export function seed(file: string, users: number, k: number): number {
  const t0 = Date.now();
  const store = new SqliteStore(file); // the legacy migrations 1/100/200/300
  const db = store.db;
  db.pragma("cache_size = -200000");
  const now = Date.UTC(2026, 0, 15);
  const card = (i: number): string =>
    JSON.stringify({
      fn: `User ${i}`,
      org: ["Example Ltd"],
      tel: [{ uri: `tel:+1-555-${String(i).padStart(7, "0")}`, types: ["work"] }],
      email: [{ value: `user${i}@example.com`, types: ["work"] }],
    });
  const ins = {
    card: db.prepare(
      "INSERT INTO cards (owner, version, hash, card, seq, updated_at) VALUES (?, 1, ?, ?, 1, ?)",
    ),
    device: db.prepare(
      `INSERT INTO devices (owner, device_id, platform, push_token, push_topic, token_state, created_at, updated_at)
       VALUES (?, ?, 'ios', ?, 'org.example.cardlink', 'ok', ?, ?)`,
    ),
    binding: db.prepare(
      "INSERT INTO bindings (id, a, b, a_devices, b_devices, via, created_at) VALUES (?, ?, ?, ?, '[]', 'code', ?)",
    ),
    share: db.prepare(
      "INSERT INTO shares (owner, holder, binding_id, policy, seq) VALUES (?, ?, ?, NULL, 2)",
    ),
    outbox: db.prepare(
      `INSERT INTO outbox (recipient, kind, subject, version, payload, seq, created_at)
       VALUES (?, 'card', ?, 1, NULL, ?, ?)`,
    ),
    push: db.prepare(
      `INSERT INTO push_queue (id, owner, device_id, platform, token, topic, kind, collapse_id, alert, data,
                               expires_at, created_at)
       VALUES (?, ?, ?, 'ios', ?, 'org.example.cardlink', 'background', 'cardlink-sync', NULL, '{"ref":"r"}', ?, ?)`,
    ),
    tomb: db.prepare("INSERT INTO tombstones (holder, owner, seq) VALUES (?, ?, 3)"),
  };
  const batch = 10_000;
  for (let start = 0; start < users; start += batch) {
    db.transaction(() => {
      for (let i = start; i < Math.min(users, start + batch); i++) {
        const me = jid(i);
        ins.card.run(me, `h${i}`, card(i), now);
        ins.device.run(me, `d${i}`, `tok${i}`, now, now);
        for (let d = 1; d <= k; d++) {
          const other = jid((i + d) % users);
          const [a, b] = me < other ? [me, other] : [other, me];
          const id = randomUUID();
          ins.binding.run(id, a, b, a === me ? `["d${i}"]` : "[]", now);
          ins.share.run(me, other, id);
          ins.share.run(other, me, id);
        }
        ins.outbox.run(me, jid((i + 1) % users), 4 + i, now);
        if (i % 10 === 0) ins.push.run(`p${i}`, me, `d${i}`, `tok${i}`, now + 86_400_000, now);
        if (i % 10 === 5) ins.tomb.run(me, `gone${i}@example.org`);
      }
    })();
  }
  db.prepare("UPDATE meta SET value = ? WHERE key = 'seq'").run(String(4 + users));
  db.pragma("wal_checkpoint(TRUNCATE)");
  void store.close();
  return Date.now() - t0;
}

async function main(): Promise<void> {
  const users = Number(process.argv[2] ?? 10_000);
  const k = Number(process.argv[3] ?? 10);
  const given = process.argv[4];
  const dir = given ? undefined : mkdtempSync(path.join(os.tmpdir(), "cardlink-rekey-timing-"));
  const file = given ?? path.join(dir as string, "v200.sqlite");
  try {
    const seedMs = seed(file, users, k);
    const before = statSync(file).size;
    const store = new SqliteStore(file, { legacy: false });
    const t0 = process.hrtime.bigint();
    const report = await store.migrate(migrations2000({ version: await store.schemaVersion() }));
    const ms = Number(process.hrtime.bigint() - t0) / 1e6;
    // The whole copy is one transaction: the WAL holds every new page until the checkpoint.
    const walBytes = statSync(`${file}-wal`, { throwIfNoEntry: false })?.size ?? 0;
    const count = (t: string): number =>
      Number((store.db.prepare(`SELECT COUNT(*) AS n FROM ${t}`).get() as { n: number }).n);
    store.db.pragma("wal_checkpoint(TRUNCATE)");
    const out = {
      users,
      bindings: count("bindings"),
      shares: count("shares"),
      stream_entries: count("stream_entries"),
      jobs: count("jobs"),
      accounts: count("accounts"),
      seed_ms: seedMs,
      migrate_ms: Math.round(ms),
      applied: report.applied,
      db_mb_before: Math.round(before / 1e5) / 10,
      wal_mb_after_commit: Math.round(walBytes / 1e5) / 10,
      db_mb_after: Math.round(statSync(file).size / 1e5) / 10,
    };
    await store.close();
    process.stdout.write(`${JSON.stringify(out)}\n`);
  } finally {
    if (dir) rmSync(dir, { recursive: true, force: true });
  }
}

if (process.argv[1] && import.meta.url.endsWith(path.basename(process.argv[1]))) {
  main().catch((e: unknown) => {
    process.stderr.write(`rekey-timing: ${(e as Error).stack ?? String(e)}\n`);
    process.exitCode = 1;
  });
}
