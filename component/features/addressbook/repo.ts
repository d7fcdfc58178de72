/**
 * The address book's SQL (docs/REDESIGN.md §2.1: one portable text for SQLite and PostgreSQL; each constant is a
 * statement-cache key). Entry ids are 32 lowercase hex digits, so `id > :after` orders the same under SQLite's
 * binary collation and any PostgreSQL collation.
 */
import type { Card, FieldName } from "../../../stanzas/model/card.js";
import type { AccountId, Seq, Sql } from "../../../storage/store.js";

export interface EntryRow {
  id: string;
  owner: AccountId;
  version: number;
  /** undefined for a tombstone (the entry was deleted at `seq`). */
  hash?: string;
  card?: Card;
  bytes: number;
  linkedOwner?: AccountId;
  edited: FieldName[];
  seq: Seq;
  createdAt: number;
  updatedAt: number;
}

interface Raw {
  id: string;
  owner: number;
  version: number;
  hash: string | null;
  card: string | null;
  bytes: number;
  linked_owner: number | null;
  edited: string;
  seq: number;
  created_at: number;
  updated_at: number;
}

const COLS = "id, owner, version, hash, card, bytes, linked_owner, edited, seq, created_at, updated_at";

function toRow(r: Raw): EntryRow {
  return {
    id: r.id,
    owner: Number(r.owner) as AccountId,
    version: Number(r.version),
    ...(r.hash === null ? {} : { hash: r.hash }),
    ...(r.card === null ? {} : { card: JSON.parse(r.card) as Card }),
    bytes: Number(r.bytes),
    ...(r.linked_owner === null ? {} : { linkedOwner: Number(r.linked_owner) as AccountId }),
    edited: JSON.parse(r.edited) as FieldName[],
    seq: Number(r.seq),
    createdAt: Number(r.created_at),
    updatedAt: Number(r.updated_at),
  };
}

const GET = `SELECT ${COLS} FROM book_entries WHERE id = :id`;
const INSERT = `INSERT INTO book_entries (${COLS})
  VALUES (:id, :owner, :version, :hash, :card, :bytes, :linked, :edited, :seq, :now, :now)`;
const UPDATE = `UPDATE book_entries SET version = :version, hash = :hash, card = :card, bytes = :bytes,
  linked_owner = :linked, edited = :edited, seq = :seq, updated_at = :now WHERE id = :id`;
const USAGE = `SELECT COUNT(*) AS n, COALESCE(SUM(bytes), 0) AS bytes FROM book_entries
  WHERE owner = :owner AND card IS NOT NULL`;
const TOMBSTONES = "SELECT COUNT(*) AS n FROM book_entries WHERE owner = :owner AND card IS NULL";
const OLDEST_TOMBSTONES = `SELECT id, seq FROM book_entries WHERE owner = :owner AND card IS NULL
  ORDER BY seq, id LIMIT :n`;
const DELETE_ID = "DELETE FROM book_entries WHERE id = :id";
const HORIZON = "SELECT horizon FROM books WHERE owner = :owner";
const SET_HORIZON = `INSERT INTO books (owner, horizon) VALUES (:owner, :horizon)
  ON CONFLICT (owner) DO UPDATE SET horizon = excluded.horizon`;
const SYNC = `SELECT ${COLS} FROM book_entries
  WHERE owner = :owner AND (seq > :seq OR (seq = :seq AND id > :after)) ORDER BY seq, id LIMIT :n`;
const LIST_IDS = "SELECT id FROM book_entries WHERE owner = :owner AND card IS NOT NULL ORDER BY id";
const PAGE = `SELECT ${COLS} FROM book_entries WHERE owner = :owner AND card IS NOT NULL AND id > :after
  ORDER BY id LIMIT :n`;
const MAX_SEQ = "SELECT MAX(seq) AS s FROM book_entries WHERE owner = :owner";
const LINKED_TO = `SELECT ${COLS} FROM book_entries WHERE linked_owner = :linked AND card IS NOT NULL
  ORDER BY owner, id`;
const LINKED_BETWEEN = `SELECT ${COLS} FROM book_entries
  WHERE owner = :owner AND linked_owner = :linked AND card IS NOT NULL ORDER BY id`;
const ERASE = ["DELETE FROM book_entries WHERE owner = :owner", "DELETE FROM books WHERE owner = :owner"];

export interface EntryWrite {
  id: string;
  owner: AccountId;
  version: number;
  hash: string | null;
  card: Card | null;
  linked?: AccountId | undefined;
  edited: readonly FieldName[];
  seq: Seq;
}

function params(w: EntryWrite, now: number): Record<string, string | number | null> {
  const card = w.card === null ? null : JSON.stringify(w.card);
  return {
    id: w.id,
    owner: w.owner,
    version: w.version,
    hash: w.hash,
    card,
    bytes: card === null ? 0 : Buffer.byteLength(card, "utf8"),
    linked: w.linked ?? null,
    edited: JSON.stringify(w.edited),
    seq: w.seq,
    now,
  };
}

/** Bytes an entry counts against book.maxBytes: its stored JSON. */
export const storedBytes = (card: Card): number => Buffer.byteLength(JSON.stringify(card), "utf8");

export const bookRepo = (q: Sql) => ({
  get: async (id: string): Promise<EntryRow | undefined> => {
    const r = await q.get<Raw>(GET, { id });
    return r ? toRow(r) : undefined;
  },
  insert: (w: EntryWrite, now: number) => q.run(INSERT, { owner: w.owner, ...params(w, now) }),
  update: (w: EntryWrite, now: number) => {
    const { owner: _owner, ...p } = params(w, now);
    return q.run(UPDATE, p);
  },
  usage: async (owner: AccountId): Promise<{ entries: number; bytes: number }> => {
    const r = await q.get<{ n: number; bytes: number }>(USAGE, { owner });
    return { entries: Number(r?.n ?? 0), bytes: Number(r?.bytes ?? 0) };
  },
  /** Drops the oldest tombstones beyond `keep` and moves the horizon past them; returns how many went. */
  pruneTombstones: async (owner: AccountId, keep: number): Promise<number> => {
    const n = Number((await q.get<{ n: number }>(TOMBSTONES, { owner }))?.n ?? 0);
    if (n <= keep) return 0;
    const old = await q.all<{ id: string; seq: number }>(OLDEST_TOMBSTONES, { owner, n: n - keep });
    let horizon = 0;
    for (const t of old) {
      await q.run(DELETE_ID, { id: t.id });
      horizon = Math.max(horizon, Number(t.seq));
    }
    const cur = Number((await q.get<{ horizon: number }>(HORIZON, { owner }))?.horizon ?? 0);
    await q.run(SET_HORIZON, { owner, horizon: Math.max(cur, horizon) });
    return old.length;
  },
  horizon: async (owner: AccountId): Promise<Seq> =>
    Number((await q.get<{ horizon: number }>(HORIZON, { owner }))?.horizon ?? 0),
  /** Rows (entries and tombstones) after the position (seq, id), in (seq, id) order. */
  changes: async (owner: AccountId, seq: Seq, after: string, n: number): Promise<EntryRow[]> =>
    (await q.all<Raw>(SYNC, { owner, seq, after, n })).map(toRow),
  maxSeq: async (owner: AccountId): Promise<Seq> =>
    Number((await q.get<{ s: number | null }>(MAX_SEQ, { owner }))?.s ?? 0),
  listIds: async (owner: AccountId): Promise<string[]> =>
    (await q.all<{ id: string }>(LIST_IDS, { owner })).map((r) => r.id),
  /** Live entries after `after` in id order. */
  page: async (owner: AccountId, after: string, n: number): Promise<EntryRow[]> =>
    (await q.all<Raw>(PAGE, { owner, after, n })).map(toRow),
  linkedTo: async (linked: AccountId): Promise<EntryRow[]> =>
    (await q.all<Raw>(LINKED_TO, { linked })).map(toRow),
  linkedBetween: async (owner: AccountId, linked: AccountId): Promise<EntryRow[]> =>
    (await q.all<Raw>(LINKED_BETWEEN, { owner, linked })).map(toRow),
  erase: async (owner: AccountId): Promise<void> => {
    for (const sql of ERASE) await q.run(sql, { owner });
  },
});
