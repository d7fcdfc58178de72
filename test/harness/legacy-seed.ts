/**
 * Rows written into a database at the legacy schema (versions 1–300, `new SqliteStore(file)` applies them) with
 * the SQL the pre-redesign repositories ran (storage/sqlite/repos.ts until issue 8 S11), so a test can start from
 * an old file as an upgraded installation has it: the first start (or `cardlink migrate`) rekeys it to 2000.
 * Each function writes what the old method wrote, outbox entries included, in one transaction.
 */
import type { Db } from "../../storage/sqlite/db.js";

/** The old global change counter (meta 'seq'): sync tokens and outbox order. */
function nextSeq(db: Db): number {
  const r = db
    .prepare("UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'seq' RETURNING value")
    .get() as { value: string | number };
  return Number(r.value);
}

export interface LegacyItem {
  recipient: string;
  kind: string;
  subject: string;
  version: number;
  payload?: string;
}

function enqueueAt(db: Db, items: readonly LegacyItem[], seq: number, now: number): void {
  const put = db.prepare(
    `INSERT INTO outbox (recipient, kind, subject, version, payload, seq, attempts, next_at, created_at)
     VALUES (?, ?, ?, ?, ?, ?, 0, 0, ?)
     ON CONFLICT (recipient, kind, subject) DO UPDATE SET
       version = excluded.version, payload = excluded.payload, seq = excluded.seq, attempts = 0, next_at = 0`,
  );
  for (const i of items) put.run(i.recipient, i.kind, i.subject, i.version, i.payload ?? null, seq, now);
}

/** The old `outbox.enqueue(items)`: one seq for the batch. */
export function legacyEnqueue(db: Db, items: readonly LegacyItem[]): void {
  db.transaction(() => enqueueAt(db, items, nextSeq(db), Date.now()))();
}

/** The old `cards.set(owner, card, hash)` of a new or changed card: the row and a `card` entry per holder. */
export function legacyCard(db: Db, owner: string, card: object, hash: string): void {
  db.transaction(() => {
    const cur = db.prepare("SELECT version FROM cards WHERE owner = ?").get(owner) as
      { version: number } | undefined;
    const version = (cur?.version ?? 0) + 1;
    const seq = nextSeq(db);
    const now = Date.now();
    db.prepare(
      `INSERT INTO cards (owner, version, hash, card, seq, updated_at) VALUES (?, ?, ?, ?, ?, ?)
       ON CONFLICT (owner) DO UPDATE SET version = excluded.version, hash = excluded.hash, card = excluded.card,
         seq = excluded.seq, updated_at = excluded.updated_at`,
    ).run(owner, version, hash, JSON.stringify(card), seq, now);
    db.prepare(
      `INSERT INTO outbox (recipient, kind, subject, version, payload, seq, attempts, next_at, created_at)
       SELECT holder, 'card', owner, ?, NULL, ?, 0, 0, ? FROM shares WHERE owner = ?
       ON CONFLICT (recipient, kind, subject) DO UPDATE SET
         version = excluded.version, payload = NULL, seq = excluded.seq, attempts = 0, next_at = 0`,
    ).run(version, seq, now, owner);
  })();
}

/**
 * The old `exchange.bind(b, undefined, now)`: the binding (a < b), both shares, and for each side the `binding`
 * record and the other's card (when it has one) in its outbox.
 */
export function legacyBind(
  db: Db,
  b: { id: string; a: string; b: string; aDevices: string[]; bDevices: string[]; via: "request" | "code" },
  now: number,
): void {
  db.transaction(() => {
    const swapped = b.b < b.a;
    const [a, bb] = swapped ? [b.b, b.a] : [b.a, b.b];
    db.prepare(
      "INSERT INTO bindings (id, a, b, a_devices, b_devices, via, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
    ).run(
      b.id,
      a,
      bb,
      JSON.stringify(swapped ? b.bDevices : b.aDevices),
      JSON.stringify(swapped ? b.aDevices : b.bDevices),
      b.via,
      now,
    );
    const seq = nextSeq(db);
    const share = db.prepare(
      "INSERT INTO shares (owner, holder, binding_id, policy, seq) VALUES (?, ?, ?, NULL, ?)",
    );
    share.run(a, bb, b.id, seq);
    share.run(bb, a, b.id, seq);
    const items: LegacyItem[] = [];
    for (const [me, peer] of [
      [a, bb],
      [bb, a],
    ] as const) {
      items.push({ recipient: me, kind: "binding", subject: b.id, version: 1 });
      const card = db.prepare("SELECT version FROM cards WHERE owner = ?").get(peer) as
        { version: number } | undefined;
      if (card) items.push({ recipient: me, kind: "card", subject: peer, version: card.version });
    }
    enqueueAt(db, items, seq, Date.now());
  })();
}

/** The old `exchange.block(owner, other, …)` under its cap. */
export function legacyBlock(db: Db, owner: string, other: string): void {
  db.prepare("INSERT OR IGNORE INTO blocks (owner, blocked) VALUES (?, ?)").run(owner, other);
}

/** The old `devices.upsert(d, …)` of a new device (token state `ok` with a token, `none` without). */
export function legacyDevice(
  db: Db,
  d: { owner: string; deviceId: string; platform: "ios" | "android" | "other"; pushToken?: string },
): void {
  const now = Date.now();
  db.prepare(
    `INSERT INTO devices (owner, device_id, platform, name, push_token, push_topic, push_key, token_state,
       created_at, updated_at) VALUES (?, ?, ?, NULL, ?, NULL, NULL, ?, ?, ?)`,
  ).run(d.owner, d.deviceId, d.platform, d.pushToken ?? null, d.pushToken ? "ok" : "none", now, now);
}

/** The old `outbox.dropRecipient(jid)`. */
export function legacyDropRecipient(db: Db, jid: string): void {
  db.prepare("DELETE FROM outbox WHERE recipient = ?").run(jid);
}
