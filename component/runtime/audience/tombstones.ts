/**
 * Opening and closing audience paths (docs/REDESIGN.md §2.5.3), called by the feature that changed a path, in
 * its unit of work, after it wrote or deleted the path's rows:
 *
 * - `opened(owner, holders)`: the holders see the owner again — their tombstones go, and each gets the owner's
 *   card (a `card` stream entry) if there is one.
 * - `closed(pairs)`: for each pair no path shows any more, a tombstone at this unit of work's seq and the pending
 *   `card` entry retracted; for a pair another path still shows, a `card` refresh (the view may have narrowed)
 *   and the seq kept as the pair's view change, so pull sync refreshes it too (DECISIONS.md "Audience close
 *   marks"). Returns the pairs that lost sight.
 */
import type { AccountId, Params } from "../../../storage/store.js";
import type { UnitOfWork } from "../uow.js";
import type { AudienceSql } from "./compose.js";

/** The stream kind that carries an owner's card to a holder (registered by features/cards). */
export const CARD_KIND = "card";

const UPSERT_TOMBSTONE =
  "INSERT INTO tombstones (holder, owner, seq) VALUES (:holder, :owner, :seq) " +
  "ON CONFLICT (holder, owner) DO UPDATE SET seq = excluded.seq";
const HAS_CARD = "SELECT 1 AS one FROM cards WHERE account_id = :owner";

type Pairs = readonly [AccountId, AccountId][] | { sql: string; params: Params };

export async function opened(u: UnitOfWork, owner: AccountId, holders: readonly AccountId[]): Promise<void> {
  const lanes = distinct(holders.filter((h) => h !== owner));
  if (lanes.length === 0) return;
  await u.tx.run(
    `DELETE FROM tombstones WHERE owner = :owner AND holder IN (${u.tx.dialect.jsonIds("holders")})`,
    { owner, holders: JSON.stringify(lanes) },
  );
  if (await u.tx.get(HAS_CARD, { owner })) {
    await u.queue.append(CARD_KIND, lanes, { subject: String(owner), subjectAccount: owner });
  }
}

export async function closed(
  u: UnitOfWork,
  q: AudienceSql,
  pairs: Pairs,
): Promise<Array<[AccountId, AccountId]>> {
  const list = await materialize(u, pairs);
  if (list.length === 0) return [];
  // Typed parameters: visible() starts with `:owner <> :holder`, which PostgreSQL would type as text (two untyped
  // parameters) and then refuse to compare with the BIGINT path columns. A no-op on SQLite.
  const visible = `SELECT 1 AS one WHERE ${q.visible("CAST(:owner AS BIGINT)", "CAST(:holder AS BIGINT)")}`;
  const seq = await u.seq();
  const lost = new Map<AccountId, AccountId[]>();
  const kept = new Map<AccountId, AccountId[]>();
  const out: Array<[AccountId, AccountId]> = [];
  for (const [owner, holder] of list) {
    const still = (await u.tx.get(visible, { owner, holder })) !== undefined;
    // Written either way: a tombstone when the pair lost sight, the view's change seq when it did not.
    await u.tx.run(UPSERT_TOMBSTONE, { holder, owner, seq });
    push(still ? kept : lost, owner, holder);
    if (!still) out.push([owner, holder]);
  }
  for (const [owner, lanes] of lost) await u.queue.retract(CARD_KIND, String(owner), lanes);
  for (const [owner, lanes] of kept) {
    if (await u.tx.get(HAS_CARD, { owner })) {
      await u.queue.append(CARD_KIND, lanes, { subject: String(owner), subjectAccount: owner });
    }
  }
  return out;
}

/**
 * `closed` for a set of pairs given as a SELECT (owner, holder), in a fixed number of statements whatever its size
 * (issue 10: a member leaving a group of 5,000 closes 10,000 pairs): tombstones (or view marks) for every pair,
 * pending `card` entries of pairs no path shows retracted, a `card` refresh for pairs another path still shows.
 * The same outcome as `closed` pair by pair; returns how many pairs the SELECT named (owner ≠ holder).
 */
export async function closedSet(
  u: UnitOfWork,
  q: AudienceSql,
  pairs: { sql: string; params: Params },
): Promise<number> {
  const p = pairs.sql;
  const seq = await u.seq();
  const params = { ...pairs.params, aud_seq: seq };
  const n = await u.tx.run(
    `INSERT INTO tombstones (holder, owner, seq)
     SELECT DISTINCT aud_q.holder, aud_q.owner, CAST(:aud_seq AS BIGINT) FROM (${p}) aud_q
      WHERE aud_q.owner <> aud_q.holder
     ON CONFLICT (holder, owner) DO UPDATE SET seq = excluded.seq`,
    params,
  );
  await u.tx.run(
    `DELETE FROM stream_entries WHERE id IN (
       SELECT aud_e.id FROM (${p}) aud_q
         JOIN stream_entries aud_e ON aud_e.account_id = aud_q.holder AND aud_e.kind = '${CARD_KIND}'
              AND aud_e.subject_account = aud_q.owner
        WHERE NOT ${q.visible("aud_q.owner", "aud_q.holder")})`,
    pairs.params,
  );
  await u.queue.appendSelect(CARD_KIND, {
    sql: `SELECT aud_q.holder AS lane, CAST(aud_q.owner AS TEXT) AS subject, aud_q.owner AS subject_account,
            CAST(NULL AS BIGINT) AS payload_id
       FROM (${p}) aud_q JOIN cards aud_c ON aud_c.account_id = aud_q.owner
      WHERE ${q.visible("aud_q.owner", "aud_q.holder")}`,
    params: pairs.params,
  });
  return n.changes;
}

/**
 * Every pair of the accounts `accounts` (a SELECT yielding `account`) lost a path whose feature recorded the loss in
 * its lazy tombstones (AudiencePath.tombstones; issue 10: a deleted group's members, one row each). No pair row is
 * written: pending `card` entries between two of them that no path shows any more are retracted (read from the
 * lanes' entries, so the work follows what is pending), and every pair another path still shows — found through
 * the paths themselves, so the work follows the connections that remain — gets a `card` refresh, since its view
 * may have narrowed (pull sync sees the change through the lazy tombstone's seq, the view-change mark). Three
 * statements whatever the set's size. Returns the lanes refreshed (with repeats: one per lane written).
 */
export async function closedAmong(
  u: UnitOfWork,
  q: AudienceSql,
  accounts: { sql: string; params: Params },
): Promise<number> {
  const inSet = (alias: string): string => `SELECT ${alias}.account FROM (${accounts.sql}) ${alias}`;
  await u.seq();
  await u.tx.run(
    `DELETE FROM stream_entries WHERE id IN (
       SELECT aud_e.id FROM stream_entries aud_e
        WHERE aud_e.kind = '${CARD_KIND}' AND aud_e.account_id IN (${inSet("aud_a")})
          AND aud_e.subject_account IN (${inSet("aud_b")})
          AND NOT ${q.visible("aud_e.subject_account", "aud_e.account_id")})`,
    accounts.params,
  );
  if (q.paths.length === 0) return 0;
  const branches = q.paths.map((p) => {
    const c = `${p.owner} IN (${inSet("aud_o")}) AND ${p.holder} IN (${inSet("aud_h")})`;
    return `SELECT ${p.owner} AS owner, ${p.holder} AS holder FROM ${p.from} WHERE ${p.where ? `${c} AND (${p.where})` : c}`;
  });
  const lanes = await u.queue.appendSelect(CARD_KIND, {
    sql: `SELECT aud_v.holder AS lane, CAST(aud_v.owner AS TEXT) AS subject, aud_v.owner AS subject_account,
            CAST(NULL AS BIGINT) AS payload_id
       FROM (${branches.join(" UNION ALL ")}) aud_v JOIN cards aud_c ON aud_c.account_id = aud_v.owner
      WHERE aud_v.owner <> aud_v.holder`,
    params: accounts.params,
  });
  return lanes.length;
}

/** The pairs as a list: a feature's SELECT runs once, here, after the feature removed the path rows. */
async function materialize(u: UnitOfWork, pairs: Pairs): Promise<Array<[AccountId, AccountId]>> {
  let raw: Array<[number, number]>;
  if ("sql" in pairs) {
    const rows = await u.tx.all<{ owner: number; holder: number }>(
      `SELECT aud_q.owner AS owner, aud_q.holder AS holder FROM (${pairs.sql}) aud_q`,
      pairs.params,
    );
    raw = rows.map((r) => [Number(r.owner), Number(r.holder)]);
  } else {
    raw = pairs.map(([o, h]) => [Number(o), Number(h)]);
  }
  const seen = new Set<string>();
  const out: Array<[AccountId, AccountId]> = [];
  for (const [o, h] of raw) {
    const k = `${o}:${h}`;
    if (o === h || seen.has(k)) continue;
    seen.add(k);
    out.push([o as AccountId, h as AccountId]);
  }
  return out;
}

function distinct(ids: readonly AccountId[]): AccountId[] {
  return [...new Set(ids)];
}

function push(m: Map<AccountId, AccountId[]>, k: AccountId, v: AccountId): void {
  const l = m.get(k);
  if (l) l.push(v);
  else m.set(k, [v]);
}
