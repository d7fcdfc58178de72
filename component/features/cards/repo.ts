/**
 * The cards table (docs/REDESIGN.md §2.6, §3.2): one row per account, the stored card as canonical JSON with its
 * hash and version, and the seq of its last change (sync reads it through the audience's composed queries).
 * Portable SQL only (§2.1): the same text runs on SQLite and PostgreSQL; each constant is a statement-cache key.
 */
import type { Card } from "../../../stanzas/model/card.js";
import type { AccountId, Dialect, Seq, Sql } from "../../../storage/store.js";

export interface StoredCard {
  owner: AccountId;
  version: number;
  hash: string;
  card: Card;
  seq: Seq;
  updatedAt: number;
}

interface CardRow {
  account_id: number;
  version: number;
  hash: string;
  card: string;
  seq: number;
  updated_at: number;
}

const GET = "SELECT account_id, version, hash, card, seq, updated_at FROM cards WHERE account_id = :owner";
const VERSION = "SELECT version, hash FROM cards WHERE account_id = :owner";
const getManySql = (d: Dialect): string =>
  `SELECT account_id, version, hash, card, seq, updated_at FROM cards WHERE account_id IN (${d.jsonIds("owners")})`;
/** Owners per `versions` statement: keeps the JSON parameter and the IN list small on both backends. */
export const VERSIONS_CHUNK = 500;
const versionsSql = (d: Dialect): string =>
  `SELECT account_id, version FROM cards WHERE account_id IN (${d.jsonIds("owners")})`;
const PUT = `INSERT INTO cards (account_id, version, hash, card, seq, updated_at)
  VALUES (:owner, :version, :hash, :card, :seq, :now)
  ON CONFLICT (account_id) DO UPDATE SET version = excluded.version, hash = excluded.hash,
    card = excluded.card, seq = excluded.seq, updated_at = excluded.updated_at`;

const DELETE = "DELETE FROM cards WHERE account_id = :owner";

function toCard(r: CardRow | undefined): StoredCard | undefined {
  if (!r) return undefined;
  return {
    owner: Number(r.account_id) as AccountId,
    version: Number(r.version),
    hash: r.hash,
    card: JSON.parse(r.card) as Card,
    seq: Number(r.seq),
    updatedAt: Number(r.updated_at),
  };
}

export type CardsRepo = ReturnType<typeof cardsRepo>;

/** Plain functions over one connection (a unit of work's tx or a read snapshot). */
export const cardsRepo = (q: Sql) => ({
  get: async (owner: AccountId): Promise<StoredCard | undefined> =>
    toCard(await q.get<CardRow>(GET, { owner })),
  /** Many owners' cards in one statement (at most VERSIONS_CHUNK owners: the caller chunks); absent: no card. */
  getMany: async (owners: readonly AccountId[]): Promise<Map<AccountId, StoredCard>> => {
    const out = new Map<AccountId, StoredCard>();
    if (owners.length === 0) return out;
    const rows = await q.all<CardRow>(getManySql(q.dialect), { owners: JSON.stringify(owners) });
    for (const r of rows) {
      const c = toCard(r);
      if (c) out.set(Number(r.account_id) as AccountId, c);
    }
    return out;
  },
  /** Versions of many owners' cards in one statement (at most VERSIONS_CHUNK owners: the caller chunks). */
  versions: async (owners: readonly AccountId[]): Promise<Map<AccountId, number>> => {
    const rows = await q.all<{ account_id: number; version: number }>(versionsSql(q.dialect), {
      owners: JSON.stringify(owners),
    });
    return new Map(rows.map((r) => [Number(r.account_id) as AccountId, Number(r.version)]));
  },
  version: async (owner: AccountId): Promise<{ version: number; hash: string } | undefined> => {
    const r = await q.get<{ version: number; hash: string }>(VERSION, { owner });
    return r ? { version: Number(r.version), hash: r.hash } : undefined;
  },
  delete: async (owner: AccountId): Promise<number> => (await q.run(DELETE, { owner })).changes,
  put: (owner: AccountId, c: { version: number; hash: string; card: Card; seq: Seq }, now: number) =>
    q.run(PUT, { owner, version: c.version, hash: c.hash, card: JSON.stringify(c.card), seq: c.seq, now }),
});
